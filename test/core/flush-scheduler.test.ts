import { describe, expect, it } from 'vitest';
import { EventManager, FlushScheduler } from '../../src/index.js';
import { createSseHandler } from '../../src/adapters/node.js';
import { cleanupAfterEach, openStream, startServer, waitUntil } from '../support/helpers.js';

const cleanups = cleanupAfterEach();

describe('FlushScheduler', () => {
  it('flushes every target once per tick, with one clock reading, and clears what the tick shared', async () => {
    const scheduler = new FlushScheduler();
    const seen: { name: string; clock: number; shared: unknown }[] = [];
    const target = (name: string) => ({
      flush: () => seen.push({ name, clock: scheduler.clock, shared: (scheduler.tickShared ??= name) }),
    });
    const a = target('a');
    const b = target('b');
    scheduler.schedule(a);
    scheduler.schedule(a);
    scheduler.schedule(b);
    expect(scheduler.size).toBe(2);
    await new Promise((resolve) => setImmediate(resolve));
    expect(seen.map((s) => s.name)).toEqual(['a', 'b']);
    expect(seen[0]?.clock).toBeGreaterThan(0);
    expect(seen[1]?.clock).toBe(seen[0]?.clock);
    expect(seen.map((s) => s.shared)).toEqual(['a', 'a']);
    expect([scheduler.clock, scheduler.tickShared, scheduler.size]).toEqual([0, undefined, 0]);
  });

  it('a target that throws is reported and does not stop the others; a cancelled target is not flushed', async () => {
    const errors: unknown[] = [];
    const scheduler = new FlushScheduler((error) => errors.push(error));
    const flushed: string[] = [];
    scheduler.schedule({
      flush: () => {
        throw new Error('bad target');
      },
    });
    const cancelled = { flush: () => flushed.push('cancelled') };
    scheduler.schedule(cancelled);
    scheduler.schedule({ flush: () => flushed.push('ok') });
    scheduler.cancel(cancelled);
    scheduler.flushNow();
    expect(flushed).toEqual(['ok']);
    expect(errors).toEqual([expect.objectContaining({ message: 'bad target' })]);
  });

  it('belongs to one hub: two hubs in a process each have their own, and both deliver', async () => {
    const one = new EventManager();
    const two = new EventManager();
    expect(one.flushScheduler()).toBe(one.flushScheduler());
    expect(one.flushScheduler()).not.toBe(two.flushScheduler());
    const servers = await Promise.all([startServer(createSseHandler(one)), startServer(createSseHandler(two))]);
    cleanups.push(
      ...servers.map((s) => () => s.close()),
      () => one.close(),
      () => two.close(),
    );
    const clients = await Promise.all(servers.map((s) => openStream(`${s.url}/?stream=a`)));
    cleanups.push(...clients.map((c) => () => c.close()));
    await waitUntil(() => one.stats().connections === 1 && two.stats().connections === 1);
    // The same payload in the same tick on both hubs: frames that look alike must not cross hubs.
    await Promise.all([one.publish('a', 'note', 'same'), two.publish('a', 'note', 'same')]);
    await Promise.all(clients.map((c) => c.waitFor((x) => x.events.length === 1)));
    expect(clients[0]?.events[0]?.id?.split('.')[0]).toBe((await one.publish('a', 'note', 'x')).id.split('.')[0]);
    expect(clients[1]?.events[0]?.id?.split('.')[0]).toBe((await two.publish('a', 'note', 'x')).id.split('.')[0]);
  });
});
