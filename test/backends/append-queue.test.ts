/**
 * The append queue on its own (no Redis): what it holds, and for how long.
 * What it sends and how each append settles is tested on Redis in redis-batch.test.ts.
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { describe, expect, it } from 'vitest';
import { AppendQueue, type QueuedAppend } from '../../src/backends/redis/append-queue.js';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

describe('AppendQueue', () => {
  it('holds no append it already sent, though the queue never empties', async () => {
    const sent: WeakRef<object>[] = [];
    const queue = new AppendQueue<{ payload: number[] }, number>(
      async (batch: QueuedAppend<{ payload: number[] }, number>[]) => {
        await new Promise((resolve) => setImmediate(resolve));
        for (const append of batch) append.resolve(0);
      },
      { maxBatchEvents: 10, maxBatchBytes: 1e9, maxQueuedEvents: 1e6, maxQueuedBytes: 1e12 },
    );
    // 32 publishers in a loop: something always waits behind the batches in flight.
    let stop = false;
    const publishers = Array.from({ length: 32 }, async () => {
      while (!stop) {
        const item = { payload: new Array(1000).fill(1) };
        if (sent.length < 4000) sent.push(new WeakRef(item));
        await queue.push(item, 8000);
      }
    });
    while (sent.length < 4000) await new Promise((resolve) => setImmediate(resolve));
    for (let i = 0; i < 50; i++) await new Promise((resolve) => setImmediate(resolve));
    expect(queue.queued).toBeGreaterThan(0);
    gc();
    const alive = sent.filter((ref) => ref.deref() !== undefined).length;
    stop = true;
    await Promise.all(publishers);
    // Only what is queued or in flight now: at most the 32 publishers' current appends.
    expect(alive).toBeLessThanOrEqual(32);
  });

  it('refuses at once past its bounds, and settles what it refused as not stored', async () => {
    const queue = new AppendQueue<number, number>(
      async (batch) => {
        for (const append of batch) append.resolve(append.item);
      },
      { maxBatchEvents: 2, maxBatchBytes: 100, maxQueuedEvents: 3, maxQueuedBytes: 100 },
    );
    const results = await Promise.allSettled([1, 2, 3, 4].map((n) => queue.push(n, 10)));
    expect(results.map((result) => result.status)).toEqual(['fulfilled', 'fulfilled', 'fulfilled', 'rejected']);
    expect(((results[3] as PromiseRejectedResult).reason as Error).message).toMatch(/the event was not stored/);
    expect(queue.stats()).toMatchObject({ redisAppendBatches: 2, redisLargestBatch: 2, redisQueuedAppends: 0 });
  });
});
