import { describe, expect, it } from 'vitest';
import { run as storm } from '../../bench/reliability/storm.mjs';
import { RANGE, run as spread } from '../../bench/reliability/spread.mjs';
import { REDIS_URL, sharedClient, uniquePrefix } from '../support/redis.js';

/**
 * The reconnect storm and the spread of the herd, through the same modules
 * the benches run (bench/reliability/): hub-server processes on the built
 * package (`npm test` builds dist first), a thousand resuming clients in this
 * process, and a checker over every client's sequence. Nothing here asserts
 * on timing; the benches report it.
 */

type StormResult = Awaited<ReturnType<typeof storm>>;

/** What every storm must show: every event exactly once, in order, no resync, servers clean. */
function expectLossless(result: StormResult) {
  const f = result.figures;
  expect(f.problems, 'the checker found problems').toEqual([]);
  expect({
    lost: f.lost,
    duplicated: f.duplicated,
    outOfOrder: f.outOfOrder,
    idsOutOfOrder: f.idsOutOfOrder,
    resyncs: f.resyncs,
    complete: f.complete,
    deliveries: f.deliveries,
    published: f.eventsPublished,
  }).toEqual({
    lost: 0,
    duplicated: 0,
    outOfOrder: 0,
    idsOutOfOrder: 0,
    resyncs: 0,
    complete: f.clients,
    deliveries: f.expectedDeliveries,
    published: f.streams * f.eventsPerStream,
  });
  expect(f.serverFaults).toEqual({
    unhandledRejections: 0,
    uncaughtExceptions: 0,
    warnings: 0,
    writesAfterEnd: 0,
    responseErrors: {},
    missingReports: 0,
  });
  expect(
    f.serverExitCodes.every((code: number | null) => code === 0),
    `server exit codes ${f.serverExitCodes}`,
  ).toBe(true);
  // Everyone was connected before publishing began, so the first disruption hit every client it could.
  expect(f.disruptions[0].socketsAtServer).toBe(f.disruptions[0].affected);
  // Every client that lost its stream came back (how fast is the bench's business).
  expect(f.disruptions[0].affected).toBeGreaterThan(0);
  for (const disruption of f.disruptions) expect(disruption.reconnected).toBe(disruption.affected);
}

function failed(result: StormResult): string {
  return result.criteria
    .filter((c) => !c.ok)
    .map((c) => `${c.what}: ${c.value} (limit ${c.limit})`)
    .join('; ');
}

describe('reconnect storm', () => {
  it('memory, 1,000 clients on 100 streams, every connection dropped three times while publishing (the third during the reconnect wave): nothing lost, duplicated or reordered', async () => {
    const result = await storm({ backend: 'memory' });
    expect(result.figures.clients).toBe(1000);
    expect(result.figures.streams).toBe(100);
    expectLossless(result);
    expect(result.figures.disruptions[0].affected).toBe(1000);
  }, 90_000);

  if (!REDIS_URL) {
    it.skip('Redis storms need a Redis server (see the warning above: nothing on 127.0.0.1:6379 and no redis-server)', () => {});
  }

  describe.skipIf(!REDIS_URL)('Redis, two instances', () => {
    it('both drop every connection while both publish; each client resumes on the other instance', async () => {
      const prefix = uniquePrefix();
      const result = await storm({ quick: true, backend: 'redis', redisUrl: REDIS_URL as string, prefix });
      expectLossless(result);
      for (const disruption of result.figures.disruptions) expect(disruption.movedToOtherInstance).toBe(disruption.reconnected);
      expect(await sharedClient(REDIS_URL as string).keys(`{${prefix}}:*`)).toEqual([]);
    }, 90_000);

    it('SIGTERM on one instance mid-run: it ends its streams cleanly and exits 0; its clients resume on the other without loss', async () => {
      const prefix = uniquePrefix();
      const result = await storm({ quick: true, backend: 'redis', graceful: true, redisUrl: REDIS_URL as string, prefix });
      expectLossless(result);
      const [sigterm] = result.figures.disruptions;
      expect(sigterm.kind).toBe('sigterm');
      // Half the clients started on A: every one of them had its stream ended (not reset) and moved to B.
      expect(sigterm.affected).toBe(result.figures.clients / 2);
      expect(sigterm.endedCleanly).toBe(sigterm.affected);
      expect(sigterm.movedToOtherInstance).toBe(sigterm.affected);
      const [a] = result.figures.servers;
      expect(a.connectionsAtExit).toBe(0);
      expect(failed(result)).toBe('');
      expect(await sharedClient(REDIS_URL as string).keys(`{${prefix}}:*`)).toEqual([]);
    }, 90_000);
  });
});

describe('spread the herd', () => {
  it(`each of 1,000 connections gets its own retry: value in ${RANGE.min}..${RANGE.max}, spread over the range`, async () => {
    const result = await spread({ clients: 1000, fixed: false });
    const values = [...result.raw.range.retryValues, ...result.raw.range.retryValuesAfter];
    const first = result.raw.range.retryValues;
    expect(first).toHaveLength(1000);
    // After the drop every client came back and got a value again.
    expect(result.raw.range.reconnected).toBe(1000);
    expect(values.length).toBeGreaterThanOrEqual(2000);
    for (const value of values) {
      expect(Number.isInteger(value)).toBe(true);
      expect(value).toBeGreaterThanOrEqual(RANGE.min);
      expect(value).toBeLessThanOrEqual(RANGE.max);
    }
    expect(new Set(first).size).toBeGreaterThanOrEqual(100);
    const middle = (RANGE.min + RANGE.max) / 2;
    const lower = first.filter((value) => value < middle).length;
    // Uniform: about half in each half (binomial, sd 16 of 1,000; 350 is over nine sd away).
    expect(lower).toBeGreaterThan(350);
    expect(1000 - lower).toBeGreaterThan(350);
  }, 60_000);
});
