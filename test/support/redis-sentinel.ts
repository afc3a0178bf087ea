/**
 * A Sentinel deployment of our own on loopback: a master, one replica and
 * three sentinels (`redis-server --sentinel`, which is what Debian's
 * `redis-sentinel` runs), on free ports with their own directories. Killed
 * after the file's tests and when the process exits (see redis-cluster.ts).
 */
import { command, infoFields, pollUntil, startOnFreePorts, type OwnedNode } from './redis-cluster.js';

export const MASTER_NAME = 'mymaster';

export interface SentinelOptions {
  /** `down-after-milliseconds`: how long a silent master goes before the sentinels call it down. @defaultValue 1000 */
  downAfterMs?: number;
  /** `failover-timeout`. @defaultValue 5000 */
  failoverTimeoutMs?: number;
}

export interface TestSentinels {
  master: OwnedNode;
  replica: OwnedNode;
  sentinels: OwnedNode[];
  /** host/port of every sentinel, for ioredis's `sentinels` option. */
  addresses: { host: string; port: number }[];
  /** The port every running sentinel names as the master. */
  currentMaster(): Promise<number>;
  /** Until every running sentinel names `node` as the master and lists the other server as its replica, whose link to it is up. */
  settledOn(node: OwnedNode, timeoutMs?: number): Promise<void>;
  /**
   * Asks the first sentinel for a failover again when it still names `old` as the master and has
   * none in progress: Sentinel does not retry a manual failover it aborted (a replica or sentinel
   * starved past `failover-timeout`, or TILT mode on a busy machine), since the master is up.
   */
  failoverAgainIfAborted(old: OwnedNode): Promise<void>;
  /** What each running sentinel says (master, flags, TILT), for a failure message. */
  describe(): Promise<string>;
  stop(): Promise<void>;
}

export async function startSentinels(options: SentinelOptions = {}): Promise<TestSentinels> {
  const downAfterMs = options.downAfterMs ?? 1000;
  const failoverTimeoutMs = options.failoverTimeoutMs ?? 5000;
  const common = ['--bind', '127.0.0.1', '--protected-mode', 'no', '--save', '', '--appendonly', 'no'];
  // A replica's first sync starts at once instead of after 5 s.
  const fastSync = ['--repl-diskless-sync-delay', '0'];
  const master = await startOnFreePorts(1, 'sentinel-master', ([port]) => ({ args: ['--port', String(port), ...common, ...fastSync] }));
  const replica = await startOnFreePorts(1, 'sentinel-replica', ([port]) => ({
    args: ['--port', String(port), ...common, ...fastSync, '--replicaof', '127.0.0.1', String(master.port)],
  }));
  const sentinels: OwnedNode[] = [];
  for (let i = 0; i < 3; i++) {
    const sentinel = await startOnFreePorts(1, 'sentinel', ([port]) => ({
      args: ['--sentinel'],
      // A file of its own: a sentinel rewrites its configuration as it learns the deployment.
      config: [
        `port ${port}`,
        'bind 127.0.0.1',
        'protected-mode no',
        `sentinel monitor ${MASTER_NAME} 127.0.0.1 ${master.port} 2`,
        `sentinel down-after-milliseconds ${MASTER_NAME} ${downAfterMs}`,
        `sentinel failover-timeout ${MASTER_NAME} ${failoverTimeoutMs}`,
        `sentinel parallel-syncs ${MASTER_NAME} 1`,
        '',
      ].join('\n'),
    }));
    sentinels.push(sentinel);
  }
  const running = () => sentinels.filter((s) => s.running);
  const setup: TestSentinels = {
    master,
    replica,
    sentinels,
    addresses: sentinels.map((s) => ({ host: '127.0.0.1', port: s.port })),
    async currentMaster() {
      const ports = new Set<number>();
      for (const sentinel of running()) {
        const [, port] = (await command(sentinel.port, 'SENTINEL', 'GET-MASTER-ADDR-BY-NAME', MASTER_NAME)) as [string, string];
        ports.add(Number(port));
      }
      if (ports.size !== 1) throw new Error(`the sentinels disagree on the master: ${[...ports].join(', ')}`);
      return [...ports][0] as number;
    },
    async settledOn(node: OwnedNode, timeoutMs = 30_000) {
      const other = node === master ? replica : master;
      await pollUntil(
        async () => {
          if ((await setup.currentMaster()) !== node.port) return false;
          for (const sentinel of running()) {
            const fields = pairs((await command(sentinel.port, 'SENTINEL', 'MASTER', MASTER_NAME)) as string[]);
            if (Number(fields['num-other-sentinels']) !== running().length - 1 || fields.flags !== 'master') return false;
            // The replica is known and answering (Sentinel's own view of its link lags by up to its 10 s INFO period).
            const replicas = ((await command(sentinel.port, 'SENTINEL', 'REPLICAS', MASTER_NAME)) as string[][]).map(pairs);
            if (!replicas.some((r) => Number(r.port) === other.port && r.flags === 'slave')) return false;
          }
          if (infoFields(await command(node.port, 'INFO', 'replication')).role !== 'master') return false;
          const link = infoFields(await command(other.port, 'INFO', 'replication'));
          return link.role === 'slave' && Number(link.master_port) === node.port && link.master_link_status === 'up';
        },
        timeoutMs,
        `the sentinels to settle on ${node.port} as the master, with ${other.port} its replica in sync`,
      );
    },
    async failoverAgainIfAborted(old: OwnedNode) {
      const first = sentinels[0] as OwnedNode;
      const [, port] = (await command(first.port, 'SENTINEL', 'GET-MASTER-ADDR-BY-NAME', MASTER_NAME)) as [string, string];
      if (Number(port) !== old.port) return;
      const { flags = '' } = pairs((await command(first.port, 'SENTINEL', 'MASTER', MASTER_NAME)) as string[]);
      if (flags.includes('failover_in_progress')) return;
      await command(first.port, 'SENTINEL', 'FAILOVER', MASTER_NAME).catch(() => {});
    },
    async describe() {
      const views: string[] = [];
      for (const sentinel of running()) {
        try {
          const [, port] = (await command(sentinel.port, 'SENTINEL', 'GET-MASTER-ADDR-BY-NAME', MASTER_NAME)) as [string, string];
          const { flags } = pairs((await command(sentinel.port, 'SENTINEL', 'MASTER', MASTER_NAME)) as string[]);
          const { sentinel_tilt: tilt } = infoFields(await command(sentinel.port, 'INFO', 'sentinel'));
          views.push(`${sentinel.port}: master ${port}, flags ${flags}, tilt ${tilt}`);
        } catch (error) {
          views.push(`${sentinel.port}: ${(error as Error).message}`);
        }
      }
      return views.join('; ');
    },
    async stop() {
      for (const node of [...sentinels, replica, master]) await node.kill();
    },
  };
  await setup.settledOn(master);
  return setup;
}

function pairs(flat: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (let i = 0; i + 1 < flat.length; i += 2) out[flat[i] as string] = flat[i + 1] as string;
  return out;
}
