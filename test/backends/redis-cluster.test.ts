import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Cluster, type ClusterOptions } from 'ioredis';
import { cleanupAfterEach, openStream } from '../support/helpers.js';
import {
  command,
  expectExact,
  expectResync,
  follow,
  hasRedisServerBinary,
  lostFromRedis,
  vanishedFromRedis,
  judge,
  pollUntil,
  publishThrough,
  Publisher,
  startCluster,
  startInstance,
  startRelay,
  type OwnedNode,
  type Outcome,
  type Run,
  type TestCluster,
  type Verdict,
} from '../support/redis-cluster.js';

/**
 * RedisBackend on a Redis Cluster of its own (three masters, one replica
 * each), with the master that holds the hub's slot failing over while two
 * hub instances publish and clients follow them. What each failover does to
 * what clients get is docs/high-availability.md; these tests are where the
 * numbers there come from (SSECAST_HA_REPORT=1 prints them).
 */

const NODE_TIMEOUT_MS = 1000;
const cleanups = cleanupAfterEach();
let cluster: TestCluster;
let counter = 0;
const report: string[] = [];

function uniquePrefix(): string {
  return `ha-cluster-${process.pid}-${++counter}`;
}

function clusterClient(options: ClusterOptions = {}): Cluster {
  // Every node as a startup node: the client must find the cluster whichever node is down.
  const client = new Cluster(cluster.startupNodes, options);
  client.on('error', () => {});
  cleanups.push(() => client.disconnect());
  return client;
}

async function slotOf(prefix: string): Promise<number> {
  return Number(await command(cluster.startupNodes[0]!.port, 'CLUSTER', 'KEYSLOT', `{${prefix}}`));
}

async function onAllNodes(...args: string[]): Promise<void> {
  for (const node of cluster.nodes) if (node.running) await command(node.port, ...args);
}

/** Until `node` is a master with slots in every running node's view. */
async function promoted(node: OwnedNode): Promise<void> {
  await pollUntil(
    async () => {
      for (const other of cluster.nodes.filter((n) => n.running)) {
        const me = (await cluster.view(other.port)).find((n) => n.port === node.port);
        if (!me?.master || me.slots.length === 0) return false;
      }
      return true;
    },
    30_000,
    `node ${node.port} to be promoted`,
  );
}

/** The killed node back (as the new master's replica), the cluster whole again for the next test. */
async function heal(node: OwnedNode): Promise<void> {
  if (!node.running) await node.start();
  await cluster.settled(30_000);
}

/** A failover run (see publishThrough) on a fresh prefix; `failover` gets the shard that serves its slot. */
async function failoverRun(
  name: string,
  failover: (shard: { master: OwnedNode; replica: OwnedNode }, publisher: Publisher) => Promise<void>,
): Promise<Run & { slot: number; lost: number; vanished: number }> {
  const prefix = uniquePrefix();
  const slot = await slotOf(prefix);
  const shard = await cluster.shard(slot);
  const run = await publishThrough({ name, source: clusterClient(), prefix, cleanups, report }, (publisher) => failover(shard, publisher));
  // Acknowledged, and gone from the master that serves the slot now.
  const { port } = await cluster.masterOf(slot);
  const lost = await lostFromRedis(port, prefix, run.outcome);
  const vanished = await vanishedFromRedis(port, prefix, run);
  report.push(`  acknowledged by Redis and lost from it: ${lost}; delivered or acknowledged and gone from it: ${vanished}`);
  return { ...run, slot, lost, vanished };
}

/**
 * Instance A publishes X; the master acknowledges it, but its replica never gets it (stalled, link dropped) and
 * neither does B's reader (its link held by a relay), nor A's when `quietForA`. The master dies, the replica is
 * promoted, and B publishes first, so B's Y gets X's number. Then both publish a little; the verdicts of a
 * client of A and a client of B.
 */
async function numberHandedOutAgain(name: string, { quietForA }: { quietForA: boolean }): Promise<[Verdict, Verdict]> {
  const prefix = uniquePrefix();
  const { master, replica } = await cluster.shard(await slotOf(prefix));
  const relay = await startRelay(master.port);
  cleanups.push(() => relay.close());
  const throughRelay = () => clusterClient({ natMap: { [`127.0.0.1:${master.port}`]: { host: '127.0.0.1', port: relay.port } } });
  const a = await startInstance(quietForA ? throughRelay() : clusterClient(), prefix, cleanups);
  const b = await startInstance(throughRelay(), prefix, cleanups);
  const clients = [follow(a.server, cleanups), follow(b.server, cleanups)];
  await pollUntil(() => a.hub.stats().connections === 1 && b.hub.stats().connections === 1, 10_000, 'the clients to connect');
  const outcome: Outcome = { resolved: [], rejected: [] };
  try {
    for (let n = 0; n < 10; n++) outcome.resolved.push({ n, id: (await (n % 2 ? a : b).hub.publish('s', 'tick', { n })).id });
    await pollUntil(() => clients.every((c) => c.seen.length === 10), 10_000, 'ten events everywhere');
    // The readers (every connection of B's when A's reader stays in touch): A's commands must get through.
    relay.hold(quietForA ? 'ssecast-fanout' : '');
    replica.pause();
    await command(master.port, 'CLIENT', 'KILL', 'TYPE', 'replica');
    outcome.resolved.push({ n: 10, id: (await a.hub.publish('s', 'tick', { n: 10 })).id });
    if (!quietForA) await pollUntil(() => clients[0]!.seen.some((e) => e.n === 10), 10_000, "A's client to get X");
    await master.kill();
    replica.resume();
    await promoted(replica);
    const fromB = new Publisher([b.hub], 's', { firstN: 1000 });
    await fromB.resolvedMore(5, 30_000);
    const fromA = new Publisher([a.hub], 's', { firstN: 2000 });
    await fromA.resolvedMore(5, 30_000);
    await fromA.stop();
    const { last } = await fromB.finish(b.hub, 's');
    for (const more of [fromB.outcome, fromA.outcome]) outcome.resolved.push(...more.resolved), outcome.rejected.push(...more.rejected);
    await pollUntil(() => clients.every((c) => c.seen.some((e) => e.n === last)), 20_000, 'the last publish everywhere');
    const verdicts = clients.map((c) => judge(c.seen, outcome)) as [Verdict, Verdict];
    report.push(`known gap, ${name}: A's client lost ${verdicts[0].silent.length} silently, B's ${verdicts[1].silent.length}`);
    return verdicts;
  } finally {
    replica.resume();
    await heal(master);
  }
}

if (!hasRedisServerBinary) {
  console.warn('\n*** SKIPPING REDIS CLUSTER TESTS: redis-server is not installed (Debian: apt-get install redis-server). ***\n');
  describe('RedisBackend on a Redis Cluster (SKIPPED: no redis-server binary)', () => {
    it.skip('needs redis-server (see the warning above)', () => {});
  });
}

describe.skipIf(!hasRedisServerBinary)('RedisBackend on a Redis Cluster', () => {
  beforeAll(async () => {
    // AOF on every node (everysec), as a production cluster would have it; the restart tests lean on it.
    cluster = await startCluster({ nodeTimeoutMs: NODE_TIMEOUT_MS, appendfsync: 'everysec' });
  }, 60_000);
  afterAll(async () => {
    await cluster?.stop();
    if (process.env.SSECAST_HA_REPORT) console.info(`\nRedis Cluster failovers:\n${report.join('\n')}\n`);
  });

  it('keeps every key of a hub on one slot, and a client moves between two instances with Last-Event-ID', async () => {
    const prefix = uniquePrefix();
    const client = clusterClient();
    const a = await startInstance(client, prefix, cleanups);
    const b = await startInstance(client, prefix, cleanups);
    const first = await openStream(`${a.server.url}/?stream=x&stream=y`);
    cleanups.push(() => first.close());
    await pollUntil(() => a.hub.stats().connections === 1, 10_000, 'the client to connect');
    const ids: string[] = [];
    const publish = async (from: number, to: number) => {
      for (let n = from; n < to; n++) ids.push((await (n % 2 ? a : b).hub.publish(n % 3 ? 'x' : 'y', 'tick', { n })).id);
    };
    await publish(0, 15);
    await first.waitFor((c) => c.events.length >= 10, 10_000, 'ten events');
    first.close();
    await first.ended;
    // The position marker first (the instance's warm-up publish came before), then the ticks.
    expect(first.events[0]).toMatchObject({ event: 'ssecast-position', data: '' });
    const seenFirst = first.events.slice(1).map((e) => e.id);
    // Published while the client is away, and after it is back.
    await publish(15, 25);
    const second = await openStream(`${b.server.url}/?stream=x&stream=y`, { 'last-event-id': seenFirst.at(-1) as string });
    cleanups.push(() => second.close());
    await publish(25, 30);
    await second.waitFor((c) => c.events.some((e) => e.id === ids.at(-1)), 10_000, 'the rest on the other instance');
    expect([...seenFirst, ...second.events.map((e) => e.id)]).toEqual(ids);
    expect(second.events.some((e) => e.event === 'resync')).toBe(false);
    // All of it on the one master that serves the prefix's slot.
    const { master } = await cluster.shard(await slotOf(prefix));
    const keys = (await command(master.port, 'KEYS', `{${prefix}}:*`)) as string[];
    expect(keys.sort()).toEqual(
      [`{${prefix}}:meta`, `{${prefix}}:fanout`, `{${prefix}}:index`, `{${prefix}}:s:warm-up`, `{${prefix}}:s:x`, `{${prefix}}:s:y`].sort(),
    );
  });

  it('spreads hubs over shards by prefix: each prefix has its own sequence, and its ids are foreign to another hub', async () => {
    // Two prefixes whose slots two different masters serve.
    const first = uniquePrefix();
    const { master: firstMaster } = await cluster.shard(await slotOf(first));
    let second = uniquePrefix();
    while ((await cluster.shard(await slotOf(second))).master === firstMaster) second = uniquePrefix();
    const { master: secondMaster } = await cluster.shard(await slotOf(second));
    const client = clusterClient();
    const p = await startInstance(client, first, cleanups);
    const q = await startInstance(client, second, cleanups);
    const onP = await p.hub.publish('s', 'tick', { n: 1 });
    const onQ = await q.hub.publish('s', 'tick', { n: 2 });
    // One sequence per prefix (the warm-up publish took number 1 in each), on its own master.
    expect([onP.id.split('.')[1], onQ.id.split('.')[1]]).toEqual(['2', '2']);
    expect(onP.id.split('.')[0]).not.toBe(onQ.id.split('.')[0]);
    expect(await command(firstMaster.port, 'EXISTS', `{${first}}:meta`)).toBe(1);
    expect(await command(secondMaster.port, 'EXISTS', `{${second}}:meta`)).toBe(1);
    // A Last-Event-ID from one prefix, brought to the other's hub: a resync, never a resume from its number.
    const stray = await openStream(`${q.server.url}/?stream=s`, { 'last-event-id': onP.id });
    cleanups.push(() => stray.close());
    await stray.waitFor((c) => c.events.length >= 2, 10_000, 'the resync and the replay');
    expect(stray.events[0]?.event).toBe('resync');
    expect(JSON.parse(stray.events[0]?.data ?? '{}')).toEqual({ reason: 'foreign', lastEventId: onP.id });
    expect(stray.events.slice(1).map((e) => e.id)).toEqual([onQ.id]);
  });

  it('a publish whose reply is lost after Redis ran it rejects ("may or may not") and is stored once, never sent again', async () => {
    // Before connections.ts set retryDelayOnFailover to 0, the Cluster sent the script again after
    // "Connection is closed.": the publish resolved, and clients got the event twice under two ids.
    const prefix = uniquePrefix();
    const { master } = await cluster.shard(await slotOf(prefix));
    const relay = await startRelay(master.port);
    cleanups.push(() => relay.close());
    const client = clusterClient({ natMap: { [`127.0.0.1:${master.port}`]: { host: '127.0.0.1', port: relay.port } } });
    const a = await startInstance(client, prefix, cleanups);
    const onA = follow(a.server, cleanups);
    await pollUntil(() => a.hub.stats().connections === 1, 10_000, 'the client to connect');
    const before = await a.hub.publish('s', 'tick', { n: 1 });
    const cut = relay.cutNext('"n":424242');
    await expect(a.hub.publish('s', 'tick', { n: 424242 })).rejects.toThrow(/may or may not have been stored/);
    await cut;
    const after = await a.hub.publish('s', 'tick', { n: 3 });
    await pollUntil(() => onA.seen.some((e) => e.id === after.id), 10_000, 'the publish after the cut');
    expect(onA.seen.map((e) => e.n)).toEqual([1, 424242, 3]);
    expect(onA.seen[0]?.id).toBe(before.id);
  });

  it('graceful CLUSTER FAILOVER while publishing: every resolved publish arrives once, in order, and a client that moves resumes exactly', async () => {
    let replicaNode: OwnedNode | undefined;
    const run = await failoverRun('graceful CLUSTER FAILOVER', async ({ replica }) => {
      replicaNode = replica;
      await command(replica.port, 'CLUSTER', 'FAILOVER');
      await promoted(replica);
      await cluster.settled(30_000);
    });
    expectExact(run);
    expect(run.interruptions).toBe(0);
    // The replica serves the slot now; the old master follows it.
    const { master } = await cluster.shard(run.slot);
    expect(master).toBe(replicaNode);
  }, 60_000);

  it('master killed, its replica promoted by the cluster: no loss, or resync', async () => {
    let killed: OwnedNode | undefined;
    try {
      const run = await failoverRun('master SIGKILLed, replica in sync', async ({ master, replica }) => {
        killed = master;
        await master.kill();
        await promoted(replica);
      });
      // Replication is asynchronous: a write run in the last moment before the crash may not have reached the
      // replica. Usually none is lost (one epoch, no resync). Under load one is, now and then: often a publish in
      // flight, which rejected but was delivered; every client is told. Exact whenever the replica has it all.
      if (run.vanished > 0) expectResync(run);
      else expectExact(run);
      // Publishes in flight when the master died, or sent while the slot had no master, were refused, and said so.
      expect(run.outcome.rejected.length).toBeGreaterThan(0);
    } finally {
      if (killed) await heal(killed);
    }
  }, 60_000);

  it('master killed after acknowledging writes its replica never got: the instances see the rollback and every client gets resync', async () => {
    let killed: OwnedNode | undefined;
    let paused: OwnedNode | undefined;
    let unreplicated = 0;
    try {
      const run = await failoverRun('master SIGKILLed after writes its replica never got', async ({ master, replica }, publisher) => {
        killed = master;
        paused = replica;
        // The replica stops (a long pause) and the master drops its link: what it acknowledges now exists only on it.
        replica.pause();
        await command(master.port, 'CLIENT', 'KILL', 'TYPE', 'replica');
        const before = publisher.outcome.resolved.length;
        await publisher.resolvedMore(30);
        await master.kill();
        unreplicated = publisher.outcome.resolved.length - before;
        replica.resume();
        await promoted(replica);
      });
      report.push(`  (${unreplicated} publishes were acknowledged after the replica's link was cut)`);
      expect(run.lost).toBeGreaterThan(0);
      // The promoted replica hands out numbers that were given to other events: a new epoch, and a resync.
      expectResync(run);
      expect(run.interruptions).toBeGreaterThanOrEqual(2);
    } finally {
      paused?.resume();
      if (killed) await heal(killed);
    }
  }, 60_000);

  it('the same with min-replicas-to-write 1: the master refuses writes once it knows its replica is gone; no loss, or (writes acknowledged just before) resync', async () => {
    let killed: OwnedNode | undefined;
    let paused: OwnedNode | undefined;
    try {
      // A short lag: should the replica come back before it stalls, the master counts it as good only this long.
      await onAllNodes('CONFIG', 'SET', 'min-replicas-to-write', '1', 'min-replicas-max-lag', '2');
      const run = await failoverRun(
        'min-replicas-to-write 1, master SIGKILLed after its replica link broke',
        async ({ master, replica }, publisher) => {
          killed = master;
          paused = replica;
          await command(master.port, 'CLIENT', 'KILL', 'TYPE', 'replica');
          replica.pause();
          const refused = publisher.outcome.rejected.length;
          await pollUntil(
            () => publisher.outcome.rejected.slice(refused).filter(({ message }) => /NOREPLICAS/.test(message)).length >= 10,
            20_000,
            'the master to refuse publishes',
          );
          await master.kill();
          replica.resume();
          await promoted(replica);
          // The promoted replica has no replica of its own yet, so it refuses writes too, until the old master is back as one.
          const sincePromotion = publisher.outcome.rejected.length;
          await pollUntil(
            () => publisher.outcome.rejected.slice(sincePromotion).some(({ message }) => /NOREPLICAS/.test(message)),
            20_000,
            'the promoted replica to refuse writes',
          );
          await heal(master);
        },
      );
      // What the master acknowledged before it knew (the link was cut with replication bytes still on their way) can
      // be lost; then every client is told. After that, nothing is acknowledged, so nothing more is lost.
      if (run.vanished > 0) expectResync(run);
      else expectExact(run);
    } finally {
      paused?.resume();
      await onAllNodes('CONFIG', 'SET', 'min-replicas-to-write', '0');
      if (killed) await heal(killed);
    }
  }, 60_000);

  // A write the dead master acknowledged, that its replica never got, and whose number the promoted replica hands
  // out again to another event. The first case is closed (a rollback always starts a new epoch); the second is a
  // known gap (docs/high-availability.md#known-gaps), tested as it is: it.fails until the publishing instance
  // checks what its reader delivers under its own numbers.
  it('a lost write seen by one instance only: the other takes its number, and the rollback its reader then sees starts a new epoch (every client resyncs)', async () => {
    // B's link to the master goes quiet (from the master's side its bytes are sent), so B never sees X. A's reader
    // does. X's number goes to B's Y on the promoted replica; A's reader calls it a rollback and replaces the epoch,
    // though meta's seq is back up to what A knows, so every client resyncs.
    const [onA, onB] = await numberHandedOutAgain('rollback seen by one instance', { quietForA: false });
    expect(onA.silent).toEqual([]);
    expect(onB.silent).toEqual([]);
  }, 60_000);

  it.fails('KNOWN GAP (index.ts): a lost write no reader saw; its number goes to another event, and the instance that stored it never checks', async () => {
    // Both readers' links go quiet (the master's host died with their bytes in flight), A's X is acknowledged all
    // the same. B's Y takes X's number on the promoted replica; every reader sees a sequence that continues.
    const [onA, onB] = await numberHandedOutAgain('write no reader saw', { quietForA: true });
    expect(onA.silent).toEqual([]);
    expect(onB.silent).toEqual([]);
  }, 60_000);

  it.each(['everysec', 'always'])(
    'master killed and back before the cluster fails it over: with appendonly yes and appendfsync %s it keeps every acknowledged write',
    async (appendfsync) => {
      let killed: OwnedNode | undefined;
      try {
        // A node timeout far longer than a restart: the cluster waits for its master instead of promoting the replica.
        await onAllNodes('CONFIG', 'SET', 'cluster-node-timeout', '20000', 'appendfsync', appendfsync);
        const run = await failoverRun(
          `master SIGKILLed and restarted (AOF, appendfsync ${appendfsync}) before any failover`,
          async ({ master }) => {
            killed = master;
            await master.kill();
            // As it was: the command line says everysec, the test's CONFIG SET may have said otherwise.
            await master.start(['--appendfsync', appendfsync]);
            await cluster.settled(30_000);
          },
        );
        expectExact(run);
        const { master } = await cluster.shard(run.slot);
        expect(master).toBe(killed);
      } finally {
        await onAllNodes('CONFIG', 'SET', 'cluster-node-timeout', String(NODE_TIMEOUT_MS), 'appendfsync', 'everysec');
        if (killed) await heal(killed);
      }
    },
    60_000,
  );

  it('master killed and back before any failover without persistence: it comes back empty, a new epoch, and every client gets resync', async () => {
    let killed: OwnedNode | undefined;
    try {
      await onAllNodes('CONFIG', 'SET', 'cluster-node-timeout', '20000');
      const run = await failoverRun('master SIGKILLed and restarted with no AOF and no RDB before any failover', async ({ master }) => {
        killed = master;
        await master.kill();
        // No AOF, and an RDB file name that does not exist: what a node without persistence loads on a restart.
        await master.start(['--appendonly', 'no', '--dbfilename', 'never-written.rdb']);
        await cluster.settled(30_000);
      });
      expectResync(run);
    } finally {
      await onAllNodes('CONFIG', 'SET', 'cluster-node-timeout', String(NODE_TIMEOUT_MS));
      // It stays up without persistence: restarted with its AOF it would load the history from before, stale by now.
      if (killed) await heal(killed);
    }
  }, 60_000);
});
