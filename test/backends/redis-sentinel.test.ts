import { afterAll, beforeAll, describe, expect, it, type TestContext } from 'vitest';
import { Redis, type RedisOptions } from 'ioredis';
import { cleanupAfterEach, openStream } from '../support/helpers.js';
import {
  command,
  expectExact,
  expectResync,
  hasRedisServerBinary,
  lostFromRedis,
  vanishedFromRedis,
  pollUntil,
  publishThrough,
  startInstance,
  type OwnedNode,
  type Publisher,
  type Run,
} from '../support/redis-cluster.js';
import { MASTER_NAME, startSentinels, type TestSentinels } from '../support/redis-sentinel.js';

/**
 * RedisBackend on a Redis behind Sentinel (a master, a replica and three
 * sentinels of its own), with the master failing over while two hub
 * instances publish and clients follow them. The outcomes are in
 * docs/high-availability.md; SSECAST_HA_REPORT=1 prints the numbers.
 */

const DOWN_AFTER_MS = 1000;
const cleanups = cleanupAfterEach();
let counter = 0;
const report: string[] = [];

function uniquePrefix(): string {
  return `ha-sentinel-${process.pid}-${++counter}`;
}

/** The client the docs show: the sentinels and the master's name, the rest as given (ioredis's defaults otherwise). */
function sentinelClient(setup: TestSentinels, closers: (() => unknown)[], options: RedisOptions = {}): Redis {
  const client = new Redis({ sentinels: setup.addresses, name: MASTER_NAME, ...options });
  client.on('error', () => {});
  closers.push(() => client.disconnect());
  return client;
}

/** Which server is the master and which its replica, as the sentinels say. */
async function roles(setup: TestSentinels): Promise<{ master: OwnedNode; replica: OwnedNode }> {
  const port = await setup.currentMaster();
  return port === setup.master.port ? { master: setup.master, replica: setup.replica } : { master: setup.replica, replica: setup.master };
}

/**
 * Until every sentinel names `node` as the master. `askAgain`: between polls (at most every 3 s), for a
 * manual failover that Sentinel may have aborted on a starved machine. The sentinels' views go into a failure.
 */
async function promotedBySentinels(setup: TestSentinels, node: OwnedNode, askAgain?: () => Promise<void>): Promise<void> {
  let asked = Date.now();
  try {
    await pollUntil(
      async () => {
        if ((await setup.currentMaster().catch(() => undefined)) === node.port) return true;
        if (askAgain && Date.now() - asked > 3000) {
          asked = Date.now();
          await askAgain();
        }
        return (await setup.currentMaster()) === node.port;
      },
      45_000,
      'the sentinels to promote the replica',
    );
  } catch (error) {
    throw new Error(`${(error as Error).message}; the sentinels: ${await setup.describe()}`);
  }
}

/**
 * The old master back, as the new master's replica (what Sentinel would make it, once its INFO period
 * came round), so that the next test has a replica to fail over to.
 */
async function heal(setup: TestSentinels, old: OwnedNode, master: OwnedNode): Promise<void> {
  old.resume();
  if (!old.running) await old.start(['--replicaof', '127.0.0.1', String(master.port)]);
  await setup.settledOn(master, 30_000);
}

function summary(run: Run, lost: number): string {
  return `  acknowledged by Redis and lost from it: ${lost}; resyncs per client: ${[...run.verdicts.live, run.verdicts.moved].map((v) => v.resyncs).join('/')}`;
}

if (!hasRedisServerBinary) {
  console.warn('\n*** SKIPPING REDIS SENTINEL TESTS: redis-server is not installed (Debian: apt-get install redis-server). ***\n');
  describe('RedisBackend behind Redis Sentinel (SKIPPED: no redis-server binary)', () => {
    it.skip('needs redis-server (see the warning above)', () => {});
  });
}

describe.skipIf(!hasRedisServerBinary)('RedisBackend behind Redis Sentinel', () => {
  afterAll(() => {
    if (process.env.SSECAST_HA_REPORT) console.info(`\nRedis Sentinel failovers:\n${report.join('\n')}\n`);
  });

  describe('one deployment, one test after another', () => {
    let setup: TestSentinels;
    beforeAll(async () => {
      setup = await startSentinels({ downAfterMs: DOWN_AFTER_MS });
    }, 60_000);
    afterAll(() => setup?.stop());

    it('publishes through the master the sentinels name, and a client moves between two instances with Last-Event-ID', async () => {
      const prefix = uniquePrefix();
      const client = sentinelClient(setup, cleanups);
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
      const { master } = await roles(setup);
      expect(await command(master.port, 'EXISTS', `{${prefix}}:fanout`)).toBe(1);
    });

    it('master killed, the sentinels promote its replica: no loss, or resync', async () => {
      const { master, replica } = await roles(setup);
      const prefix = uniquePrefix();
      try {
        const run = await publishThrough(
          { name: 'master SIGKILLed, replica in sync', source: sentinelClient(setup, cleanups), prefix, cleanups, report },
          async () => {
            await master.kill();
            await promotedBySentinels(setup, replica);
          },
        );
        const lost = await lostFromRedis(replica.port, prefix, run.outcome);
        report.push(summary(run, lost));
        // Replication is asynchronous: a write run just before the crash (acknowledged, or in flight and delivered
        // though its publish rejected) may not have reached the replica. Then the instances see the rollback and every
        // client is told; exact whenever the replica has it all.
        if ((await vanishedFromRedis(replica.port, prefix, run)) > 0) expectResync(run);
        else expectExact(run);
      } finally {
        await heal(setup, master, replica);
      }
    }, 60_000);

    it('master killed after acknowledging writes its replica never got: a new epoch, and every client gets resync', async () => {
      const { master, replica } = await roles(setup);
      const prefix = uniquePrefix();
      try {
        const run = await publishThrough(
          {
            name: 'master SIGKILLed after writes its replica never got',
            source: sentinelClient(setup, cleanups),
            prefix,
            cleanups,
            report,
          },
          async (publisher: Publisher) => {
            // The replica stalls and the master drops its link: what the master acknowledges now exists only on it.
            replica.pause();
            await command(master.port, 'CLIENT', 'KILL', 'TYPE', 'replica');
            await publisher.resolvedMore(30);
            await master.kill();
            replica.resume();
            await promotedBySentinels(setup, replica);
          },
        );
        const lost = await lostFromRedis(replica.port, prefix, run.outcome);
        report.push(summary(run, lost));
        expect(lost).toBeGreaterThanOrEqual(30);
        expectResync(run);
      } finally {
        await heal(setup, master, replica);
      }
    }, 60_000);
  });

  // Each waits for Sentinel to turn the old master into a replica (its 10 s INFO period), so they run side by side,
  // each on a deployment of its own.
  describe.concurrent('SENTINEL FAILOVER while publishing, a deployment each', () => {
    // Concurrent tests: the hook must come from the test's own context, or it may run when another one finishes.
    async function manualFailover(
      onTestFinished: TestContext['onTestFinished'],
      name: string,
      clientOptions: RedisOptions,
      minReplicasToWrite: number,
    ) {
      const closers: (() => unknown)[] = [];
      onTestFinished(async () => {
        while (closers.length) await closers.pop()?.();
      });
      const setup = await startSentinels({ downAfterMs: DOWN_AFTER_MS });
      closers.push(() => setup.stop());
      const { master, replica } = await roles(setup);
      for (const node of [master, replica])
        await command(node.port, 'CONFIG', 'SET', 'min-replicas-to-write', String(minReplicasToWrite), 'min-replicas-max-lag', '10');
      const prefix = uniquePrefix();
      const run = await publishThrough(
        // Slower publishing: the failover takes about 11 s, and the client that moves must find its place in the history.
        { name, source: sentinelClient(setup, closers, clientOptions), prefix, cleanups: closers, report, pauseMs: 10 },
        async () => {
          await command(setup.sentinels[0]!.port, 'SENTINEL', 'FAILOVER', MASTER_NAME);
          await promotedBySentinels(setup, replica, () => setup.failoverAgainIfAborted(master));
          // Done when the old master follows the new one: until then it may take writes, which it then drops.
          await pollUntil(
            async () => String(await command(master.port, 'INFO', 'replication')).includes('master_link_status:up'),
            30_000,
            'the old master to follow the new one',
          );
        },
      );
      const lost = await lostFromRedis(replica.port, prefix, run.outcome);
      report.push(summary(run, lost));
      return { run, lost };
    }

    // Redis Sentinel promotes the replica first and demotes the old master later; a write the old master takes in
    // between is acknowledged and then dropped. What the options change is how long that window stays open.
    it('with ioredis defaults: the old master takes writes until Sentinel demotes it (seconds), and drops them; every client gets resync', async ({
      onTestFinished,
    }) => {
      const { run, lost } = await manualFailover(onTestFinished, 'SENTINEL FAILOVER, ioredis defaults', {}, 0);
      expect(lost).toBeGreaterThan(0);
      expectResync(run);
    }, 90_000);

    it('with failoverDetector: the instances move when the switch is announced; fewer writes lost, and then every client gets resync', async ({
      onTestFinished,
    }) => {
      const { run, lost } = await manualFailover(
        onTestFinished,
        'SENTINEL FAILOVER, failoverDetector: true',
        { failoverDetector: true },
        0,
      );
      if (lost > 0) expectResync(run);
      else expectExact(run);
    }, 90_000);

    it('with min-replicas-to-write 1: the old master refuses writes once its replica is gone; no loss, or (a write or two in the moment between) resync', async ({
      onTestFinished,
    }) => {
      const { run, lost } = await manualFailover(onTestFinished, 'SENTINEL FAILOVER, min-replicas-to-write 1', {}, 1);
      expect(run.outcome.rejected.some(({ message }) => /NOREPLICAS/.test(message))).toBe(true);
      // Only what was in flight when the replica let go of the old master, never the seconds of the defaults.
      expect(lost).toBeLessThanOrEqual(10);
      if (lost > 0) expectResync(run);
      else expectExact(run);
    }, 90_000);
  });
});
