import type { Cluster, Redis, RedisOptions } from 'ioredis';

/** What the backend accepts: a single Redis (standalone or through Sentinel) or a Cluster. */
export type RedisSource = Redis | Cluster;

/** How one of the backend's own connections behaves (see `open` in index.ts for why). */
export interface ConnectionRole {
  connectionName: string;
  /**
   * Commands wait in a queue while Redis is away (true) or fail at once (false). A Cluster always
   * queues for a node that is still connecting; the backend does not send while it is not ready.
   */
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
    // The Cluster connects at once (below); its node connections are ioredis's, made when first used.
    const { lazyConnect: _lazy, ...perNode } = perConnection;
    const cluster = source.duplicate([], {
      // The backend refuses to send while the Cluster is not ready (commands fail fast there), so
      // this queue only holds commands for a node that is still connecting. Without it the Cluster
      // fails them at once ("Connection is closed."), Redis being fine: the first publish after a
      // failover or a MOVED to a node it had not used yet.
      enableOfflineQueue: true,
      // A Cluster sends a command again, after this delay, when its connection closed before the
      // reply came, though it may have run: a script sent twice is an event stored twice. Its
      // nodes never reconnect, so this is the Cluster's own autoResendUnfulfilledCommands.
      ...(role.autoResendUnfulfilledCommands ? {} : { retryDelayOnFailover: 0 }),
      // Every check of the sequence is made against the master; a replica's copy may be behind.
      scaleReads: 'master',
      keyPrefix: '',
      lazyConnect: false,
      redisOptions: { ...source.options.redisOptions, ...perNode },
    });
    // The backend drives both kinds through the same commands; a Cluster routes them by key.
    return cluster as unknown as Redis;
  }
  return source.duplicate({ ...perConnection, enableOfflineQueue: role.enableOfflineQueue });
}

export function isCluster(source: RedisSource): source is Cluster {
  return (source as Cluster).isCluster === true;
}
