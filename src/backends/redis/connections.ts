import type { Cluster, Redis, RedisOptions } from 'ioredis';

/** What the backend accepts: a single Redis (standalone or through Sentinel) or a Cluster. */
export type RedisSource = Redis | Cluster;

/** How one of the backend's own connections behaves (see `open` in index.ts for why). */
export interface ConnectionRole {
  connectionName: string;
  /** Commands wait in a queue while Redis is away (true) or fail at once (false). */
  enableOfflineQueue: boolean;
  autoResendUnfulfilledCommands: boolean;
  maxRetriesPerRequest: number | null;
  commandTimeout: number | undefined;
  socketTimeout?: number | undefined;
}

/**
 * A new connection of the source's kind with the role's settings: ioredis
 * duplicates a Redis with its options, and a Cluster with its startup nodes
 * and options, where per-node settings live under `redisOptions`.
 */
export function duplicateConnection(source: RedisSource, role: ConnectionRole): Redis {
  const perConnection: Partial<RedisOptions> = {
    keyPrefix: '',
    lazyConnect: false,
    connectionName: role.connectionName,
    autoResendUnfulfilledCommands: role.autoResendUnfulfilledCommands,
    maxRetriesPerRequest: role.maxRetriesPerRequest,
    commandTimeout: role.commandTimeout,
    socketTimeout: role.socketTimeout,
  };
  if (isCluster(source)) {
    const cluster = source.duplicate([], {
      enableOfflineQueue: role.enableOfflineQueue,
      keyPrefix: '',
      lazyConnect: false,
      redisOptions: { ...source.options.redisOptions, ...perConnection },
    });
    // The backend drives both kinds through the same commands; a Cluster routes them by key.
    return cluster as unknown as Redis;
  }
  return source.duplicate({ ...perConnection, enableOfflineQueue: role.enableOfflineQueue });
}

export function isCluster(source: RedisSource): source is Cluster {
  return (source as Cluster).isCluster === true;
}
