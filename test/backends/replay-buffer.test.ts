import { afterEach, describe, expect, it } from 'vitest';
import { MemoryBackend } from '../../src/backends/memory/index.js';
import type { EventDraft, StoredEvent } from '../../src/core/backend.js';
import { EXPIRED, ReplayBuffer } from '../../src/backends/memory/replay-buffer.js';

function ev(seq: number, stream: string, bytes = 10): StoredEvent {
  return { seq, event: { id: `e.${seq}`, stream, type: 't', data: null, timestamp: '' }, frame: 'x', bytes };
}

/** The seqs of a read, or EXPIRED, so assertions compare plain values. */
function seqs(result: StoredEvent[] | typeof EXPIRED): number[] | typeof EXPIRED {
  return result === EXPIRED ? EXPIRED : result.map((event) => event.seq);
}

/** Appends `ev(seq, stream)` for each [stream, seq] pair, in order. */
function fill(buffer: ReplayBuffer, pairs: Array<[string, number]>, bytes = 10): void {
  for (const [stream, seq] of pairs) buffer.append(ev(seq, stream, bytes));
}

describe('ReplayBuffer: per-stream bounds', () => {
  it('keeps 100 events per stream by default', () => {
    const buffer = new ReplayBuffer();
    expect(buffer.maxEventsPerStream).toBe(100);
    for (let seq = 1; seq <= 150; seq++) buffer.append(ev(seq, 's'));
    const kept = seqs(buffer.recent('s', 1_000));
    expect(kept).toEqual(Array.from({ length: 100 }, (_, i) => i + 51));
    expect(buffer.eventCount).toBe(100);
    expect(buffer.bytes).toBe(1_000);
  });

  it('keeps only the last 3 of 5 events with maxEventsPerStream 3', () => {
    const buffer = new ReplayBuffer({ maxEventsPerStream: 3 });
    for (let seq = 1; seq <= 5; seq++) buffer.append(ev(seq, 's'));
    expect(seqs(buffer.recent('s', 10))).toEqual([3, 4, 5]);
    expect(buffer.eventCount).toBe(3);
    expect(buffer.bytes).toBe(30);
  });

  it('reports a resume from before the trimmed events as EXPIRED', () => {
    const buffer = new ReplayBuffer({ maxEventsPerStream: 3 });
    for (let seq = 1; seq <= 5; seq++) buffer.append(ev(seq, 's'));
    expect(buffer.after('s', 0)).toBe(EXPIRED);
    expect(buffer.after('s', 1)).toBe(EXPIRED);
  });

  it('answers a resume from the last trimmed event with every event after it', () => {
    const buffer = new ReplayBuffer({ maxEventsPerStream: 3 });
    for (let seq = 1; seq <= 5; seq++) buffer.append(ev(seq, 's'));
    expect(seqs(buffer.after('s', 2))).toEqual([3, 4, 5]);
    expect(seqs(buffer.after('s', 3))).toEqual([4, 5]);
  });

  it('answers a resume from the newest event with an empty list', () => {
    const buffer = new ReplayBuffer({ maxEventsPerStream: 3 });
    for (let seq = 1; seq <= 5; seq++) buffer.append(ev(seq, 's'));
    expect(buffer.after('s', 5)).toEqual([]);
    expect(buffer.after('s', 99)).toEqual([]);
  });

  it('continues a resume across seqs that belong to other streams', () => {
    const buffer = new ReplayBuffer({ maxEventsPerStream: 2 });
    fill(buffer, [
      ['a', 1],
      ['b', 2],
      ['a', 3],
      ['b', 4],
      ['a', 5],
    ]);
    // a lost seq 1 only; a client that saw seq 2 (of b) or later has seen it.
    expect(seqs(buffer.after('a', 2))).toEqual([3, 5]);
    expect(seqs(buffer.after('a', 4))).toEqual([5]);
    expect(buffer.after('a', 0)).toBe(EXPIRED);
  });

  it('trims by bytes per stream', () => {
    const buffer = new ReplayBuffer({ maxBytesPerStream: 25 });
    for (let seq = 1; seq <= 4; seq++) buffer.append(ev(seq, 's'));
    expect(seqs(buffer.recent('s', 10))).toEqual([3, 4]);
    expect(buffer.bytes).toBe(20);
    expect(buffer.after('s', 1)).toBe(EXPIRED);
    expect(seqs(buffer.after('s', 2))).toEqual([3, 4]);
  });

  it('keeps the newest event even when it alone is over the per-stream byte cap', () => {
    const buffer = new ReplayBuffer({ maxBytesPerStream: 25 });
    buffer.append(ev(1, 's'));
    buffer.append(ev(2, 's', 100));
    expect(seqs(buffer.recent('s', 10))).toEqual([2]);
    expect(buffer.bytes).toBe(100);
    expect(buffer.after('s', 0)).toBe(EXPIRED);
  });

  it('keeps nothing with maxEventsPerStream 0 and reports every resume as EXPIRED', () => {
    const buffer = new ReplayBuffer({ maxEventsPerStream: 0 });
    buffer.append(ev(1, 's'));
    expect(buffer.streamCount).toBe(0);
    expect(buffer.bytes).toBe(0);
    expect(buffer.after('s', 0)).toBe(EXPIRED);
    expect(buffer.afterAll(0)).toBe(EXPIRED);
    expect(buffer.after('s', 1)).toEqual([]);
  });

  it('stays correct after trimming far past the internal compaction threshold', () => {
    const buffer = new ReplayBuffer({ maxEventsPerStream: 3 });
    for (let seq = 1; seq <= 500; seq++) {
      buffer.append(ev(seq, 's'));
      if (seq >= 3) expect(seqs(buffer.recent('s', 10))).toEqual([seq - 2, seq - 1, seq]);
    }
    expect(buffer.eventCount).toBe(3);
    expect(buffer.bytes).toBe(30);
    expect(seqs(buffer.after('s', 497))).toEqual([498, 499, 500]);
    expect(buffer.after('s', 496)).toBe(EXPIRED);
  });
});

describe('ReplayBuffer: global bounds', () => {
  it('evicts the least recently used stream when over maxTotalBytes', () => {
    const buffer = new ReplayBuffer({ maxTotalBytes: 40 });
    // a is appended to again, so b becomes the least recently used stream.
    fill(buffer, [
      ['a', 1],
      ['b', 2],
      ['c', 3],
      ['a', 4],
    ]);
    expect(buffer.bytes).toBe(40);
    buffer.append(ev(5, 'd'));
    expect(buffer.bytes).toBe(40);
    expect(buffer.streamCount).toBe(3);
    expect(buffer.recent('b', 10)).toEqual([]);
    expect(seqs(buffer.recent('a', 10))).toEqual([1, 4]);
    expect(seqs(buffer.recent('c', 10))).toEqual([3]);
    expect(seqs(buffer.recent('d', 10))).toEqual([5]);
    expect(buffer.evictions).toBe(1);
  });

  it('skips pinned streams when evicting for maxTotalBytes', () => {
    const buffer = new ReplayBuffer({ maxTotalBytes: 40, isPinned: (stream) => stream === 'b' });
    fill(buffer, [
      ['a', 1],
      ['b', 2],
      ['c', 3],
      ['a', 4],
      ['d', 5],
    ]);
    expect(buffer.streamCount).toBe(3);
    expect(seqs(buffer.recent('b', 10))).toEqual([2]);
    expect(buffer.recent('c', 10)).toEqual([]);
    expect(buffer.bytes).toBe(40);
  });

  it('trims the oldest events of pinned streams when every stream is pinned, recording the gap', () => {
    const buffer = new ReplayBuffer({ maxTotalBytes: 30, isPinned: () => true });
    fill(buffer, [
      ['a', 1],
      ['a', 2],
      ['b', 3],
      ['b', 4],
    ]);
    expect(buffer.bytes).toBe(30);
    expect(buffer.streamCount).toBe(2);
    expect(seqs(buffer.recent('a', 10))).toEqual([2]);
    expect(seqs(buffer.recent('b', 10))).toEqual([3, 4]);
    expect(buffer.after('a', 0)).toBe(EXPIRED);
    expect(seqs(buffer.after('a', 1))).toEqual([2]);
  });

  it('evicts the least recently used stream without subscribers past maxStreams, keeping an older pinned one', () => {
    const buffer = new ReplayBuffer({ maxStreams: 2, isPinned: (stream) => stream === 'a' });
    fill(buffer, [
      ['a', 1],
      ['b', 2],
      ['c', 3],
    ]);
    expect(buffer.streamCount).toBe(2);
    expect(seqs(buffer.recent('a', 10))).toEqual([1]);
    expect(buffer.recent('b', 10)).toEqual([]);
    buffer.append(ev(4, 'd'));
    // c is newer than a, but a has subscribers.
    expect(buffer.streamCount).toBe(2);
    expect(seqs(buffer.recent('a', 10))).toEqual([1]);
    expect(buffer.recent('c', 10)).toEqual([]);
    expect(seqs(buffer.recent('d', 10))).toEqual([4]);
    expect(buffer.evictions).toBe(2);
  });

  it('evicts the oldest stream past maxStreams when nothing is pinned', () => {
    const buffer = new ReplayBuffer({ maxStreams: 2 });
    fill(buffer, [
      ['a', 1],
      ['b', 2],
      ['c', 3],
    ]);
    expect(buffer.recent('a', 10)).toEqual([]);
    expect(seqs(buffer.recent('b', 10))).toEqual([2]);
    expect(seqs(buffer.recent('c', 10))).toEqual([3]);
  });

  it('reports a resume on a whole evicted stream as EXPIRED, never an empty list', () => {
    const buffer = new ReplayBuffer({ maxStreams: 2 });
    fill(buffer, [
      ['a', 1],
      ['a', 2],
      ['b', 3],
      ['c', 4],
    ]);
    expect(buffer.recent('a', 10)).toEqual([]);
    expect(buffer.after('a', 0)).toBe(EXPIRED);
    expect(buffer.after('a', 1)).toBe(EXPIRED);
    expect(buffer.afterAll(0)).toBe(EXPIRED);
    expect(buffer.afterAll(1)).toBe(EXPIRED);
  });

  it('answers a resume from after everything evicted', () => {
    const buffer = new ReplayBuffer({ maxStreams: 2 });
    fill(buffer, [
      ['a', 1],
      ['a', 2],
      ['b', 3],
      ['c', 4],
    ]);
    expect(buffer.after('a', 2)).toEqual([]);
    expect(seqs(buffer.afterAll(2))).toEqual([3, 4]);
    expect(buffer.after('never-seen', 2)).toEqual([]);
  });

  it('keeps a stream it has never seen answerable as empty when nothing was evicted', () => {
    const buffer = new ReplayBuffer();
    fill(buffer, [['a', 1]]);
    expect(buffer.after('other', 0)).toEqual([]);
    expect(buffer.recent('other', 10)).toEqual([]);
  });

  // A stream dropped whole and then published to again must not forget what it lost.
  it('reports EXPIRED for a stream that was evicted and then published to again', () => {
    const buffer = new ReplayBuffer({ maxStreams: 1 });
    fill(buffer, [
      ['a', 1],
      ['a', 2],
      ['b', 3],
      ['a', 4],
    ]);
    // The client saw seq 1; seq 2 of stream a is gone, so an exact answer is impossible.
    expect(buffer.after('a', 1)).toBe(EXPIRED);
  });

  it('rejects invalid bounds with a TypeError', () => {
    for (const maxStreams of [0, -1, 1.5, Number.NaN, Number.POSITIVE_INFINITY]) {
      expect(() => new ReplayBuffer({ maxStreams })).toThrow(TypeError);
    }
    expect(() => new ReplayBuffer({ maxStreams: 0 })).toThrow(/maxStreams/);
    expect(() => new ReplayBuffer({ maxEventsPerStream: -1 })).toThrow(TypeError);
    expect(() => new ReplayBuffer({ maxEventsPerStream: 2.5 })).toThrow(TypeError);
    expect(() => new ReplayBuffer({ maxBytesPerStream: 0 })).toThrow(TypeError);
    expect(() => new ReplayBuffer({ maxTotalBytes: -5 })).toThrow(TypeError);
    expect(() => new ReplayBuffer({ idleTtlMs: 0 })).toThrow(TypeError);
    expect(new ReplayBuffer({ maxStreams: 1 }).maxStreams).toBe(1);
  });
});

describe('ReplayBuffer: idle expiry', () => {
  it('drops a stream idle for longer than idleTtlMs on sweep', () => {
    let now = 0;
    const buffer = new ReplayBuffer({ idleTtlMs: 1_000, now: () => now });
    fill(buffer, [
      ['a', 1],
      ['a', 2],
    ]);
    now = 1_001;
    buffer.sweep();
    expect(buffer.streamCount).toBe(0);
    expect(buffer.bytes).toBe(0);
    expect(buffer.recent('a', 10)).toEqual([]);
    expect(buffer.after('a', 1)).toBe(EXPIRED);
    expect(buffer.after('a', 2)).toEqual([]);
  });

  it('keeps a stream idle for less than idleTtlMs', () => {
    let now = 0;
    const buffer = new ReplayBuffer({ idleTtlMs: 1_000, now: () => now });
    fill(buffer, [['a', 1]]);
    now = 999;
    buffer.sweep();
    expect(buffer.streamCount).toBe(1);
    expect(seqs(buffer.recent('a', 10))).toEqual([1]);
  });

  it('keeps a pinned stream on sweep while dropping an unpinned one', () => {
    let now = 0;
    const buffer = new ReplayBuffer({ idleTtlMs: 1_000, now: () => now, isPinned: (stream) => stream === 'a' });
    fill(buffer, [
      ['a', 1],
      ['b', 2],
      ['c', 3],
    ]);
    now = 1_001;
    buffer.sweep();
    expect(buffer.streamCount).toBe(1);
    expect(seqs(buffer.recent('a', 10))).toEqual([1]);
    expect(buffer.recent('b', 10)).toEqual([]);
    expect(buffer.recent('c', 10)).toEqual([]);
  });

  it('sweeps idle streams when a new event is appended', () => {
    let now = 0;
    const buffer = new ReplayBuffer({ idleTtlMs: 1_000, now: () => now });
    fill(buffer, [['a', 1]]);
    now = 1_500;
    buffer.append(ev(2, 'b'));
    expect(buffer.streamCount).toBe(1);
    expect(buffer.recent('a', 10)).toEqual([]);
    expect(seqs(buffer.recent('b', 10))).toEqual([2]);
  });

  it('counts idle time from the last touch, not the last append', () => {
    let now = 0;
    const buffer = new ReplayBuffer({ idleTtlMs: 1_000, now: () => now });
    fill(buffer, [
      ['a', 1],
      ['b', 2],
    ]);
    now = 900;
    buffer.touch(['a']);
    now = 1_500;
    buffer.sweep();
    expect(seqs(buffer.recent('a', 10))).toEqual([1]);
    expect(buffer.recent('b', 10)).toEqual([]);
  });
});

describe('ReplayBuffer: reads', () => {
  it('returns recent(stream, n) as the last n events in seq order', () => {
    const buffer = new ReplayBuffer();
    fill(buffer, [
      ['a', 1],
      ['b', 2],
      ['a', 3],
      ['b', 4],
      ['a', 5],
    ]);
    expect(seqs(buffer.recent('a', 2))).toEqual([3, 5]);
    expect(seqs(buffer.recent('a', 10))).toEqual([1, 3, 5]);
    expect(buffer.recent('a', 0)).toEqual([]);
    expect(buffer.recent('a', -1)).toEqual([]);
  });

  it('returns recentAll(n) as the last n events of every stream in seq order', () => {
    const buffer = new ReplayBuffer();
    fill(buffer, [
      ['a', 1],
      ['b', 2],
      ['a', 3],
      ['b', 4],
      ['a', 5],
    ]);
    expect(seqs(buffer.recentAll(3))).toEqual([3, 4, 5]);
    expect(seqs(buffer.recentAll(10))).toEqual([1, 2, 3, 4, 5]);
    expect(buffer.recentAll(0)).toEqual([]);
  });

  it('returns recentAll in seq order even when stream recency differs from seq order', () => {
    const buffer = new ReplayBuffer();
    fill(buffer, [
      ['a', 1],
      ['b', 2],
      ['a', 3],
      ['b', 4],
    ]);
    buffer.touch(['a']);
    expect(seqs(buffer.recentAll(10))).toEqual([1, 2, 3, 4]);
    expect(seqs(buffer.afterAll(1))).toEqual([2, 3, 4]);
  });

  it('merges afterAll across streams in seq order', () => {
    const buffer = new ReplayBuffer();
    fill(buffer, [
      ['a', 1],
      ['b', 2],
      ['c', 3],
      ['a', 4],
      ['b', 5],
    ]);
    expect(seqs(buffer.afterAll(0))).toEqual([1, 2, 3, 4, 5]);
    expect(seqs(buffer.afterAll(2))).toEqual([3, 4, 5]);
    expect(buffer.afterAll(5)).toEqual([]);
  });

  it('reports afterAll as EXPIRED when any stream trimmed an event after the cursor', () => {
    const buffer = new ReplayBuffer({ maxEventsPerStream: 1 });
    fill(buffer, [
      ['a', 1],
      ['b', 2],
      ['a', 3],
    ]);
    expect(buffer.afterAll(0)).toBe(EXPIRED);
    expect(seqs(buffer.afterAll(1))).toEqual([2, 3]);
  });

  it('returns the stored event objects themselves', () => {
    const buffer = new ReplayBuffer();
    const stored = ev(1, 'a');
    buffer.append(stored);
    expect(buffer.recent('a', 1)[0]).toBe(stored);
  });

  it('moves a touched stream to most recently used so it survives eviction', () => {
    const buffer = new ReplayBuffer({ maxStreams: 2 });
    fill(buffer, [
      ['a', 1],
      ['b', 2],
    ]);
    buffer.touch(['a']);
    buffer.append(ev(3, 'c'));
    expect(seqs(buffer.recent('a', 10))).toEqual([1]);
    expect(buffer.recent('b', 10)).toEqual([]);
    expect(seqs(buffer.recent('c', 10))).toEqual([3]);
  });

  it('ignores touching a stream it does not hold', () => {
    const buffer = new ReplayBuffer({ maxStreams: 2 });
    fill(buffer, [
      ['a', 1],
      ['b', 2],
    ]);
    buffer.touch(['zzz']);
    expect(buffer.streamCount).toBe(2);
    buffer.append(ev(3, 'c'));
    expect(buffer.recent('a', 10)).toEqual([]);
  });

  it('clears everything and reports earlier cursors as EXPIRED afterwards', () => {
    const buffer = new ReplayBuffer();
    fill(buffer, [
      ['a', 1],
      ['b', 2],
    ]);
    buffer.clear();
    expect(buffer.streamCount).toBe(0);
    expect(buffer.bytes).toBe(0);
    expect(buffer.eventCount).toBe(0);
    expect(buffer.afterAll(1)).toBe(EXPIRED);
  });
});

describe('ReplayBuffer: memory stays flat', () => {
  it('holds at most 1,000 streams after one event on each of 100,000 streams', () => {
    const buffer = new ReplayBuffer({ maxStreams: 1_000 });
    const eventBytes = 10;
    for (let seq = 1; seq <= 100_000; seq++) {
      buffer.append(ev(seq, `stream-${seq}`, eventBytes));
      if (seq % 1_000 === 0) {
        expect(buffer.streamCount).toBeLessThanOrEqual(1_000);
        expect(buffer.bytes).toBeLessThanOrEqual(1_000 * eventBytes);
      }
    }
    expect(buffer.streamCount).toBe(1_000);
    expect(buffer.bytes).toBe(1_000 * eventBytes);
    expect(buffer.eventCount).toBe(1_000);
    expect(buffer.evictions).toBe(99_000);
    // The retained history is exactly the newest 1,000 events; older cursors are EXPIRED.
    expect(buffer.afterAll(98_999)).toBe(EXPIRED);
    const tail = seqs(buffer.afterAll(99_000));
    expect(tail).not.toBe(EXPIRED);
    expect((tail as number[]).length).toBe(1_000);
    expect((tail as number[])[0]).toBe(99_001);
    expect((tail as number[])[999]).toBe(100_000);
  });
});

describe('MemoryBackend', () => {
  const body = 'event: t\ndata: x\n';
  const draft = (stream: string, data: unknown = null, draftBody = body): EventDraft => ({
    stream,
    type: 't',
    data,
    timestamp: '2024-01-01T00:00:00.000Z',
    body: draftBody,
  });
  const ids = (events: StoredEvent[]) => events.map((event) => event.event.id);

  let backend: MemoryBackend | undefined;
  afterEach(async () => {
    await backend?.close();
    backend = undefined;
  });

  async function open(options: ConstructorParameters<typeof MemoryBackend>[0] = {}, hasSubscribers = (_s: string) => false) {
    const delivered: StoredEvent[] = [];
    const b = new MemoryBackend({ epoch: 'ep1', ...options });
    backend = b;
    await b.open({
      deliver: (event) => delivered.push(event),
      hasSubscribers,
      wants: () => true,
      subscribedStreams: () => [],
      interrupt: () => {},
    });
    return { b, delivered };
  }

  it('uses the epoch it is given', async () => {
    const { b } = await open();
    expect(b.epoch).toBe('ep1');
    await b.close();
  });

  it('assigns ids ep1.1, ep1.2, … strictly increasing across streams', async () => {
    const { b } = await open();
    const stored = [await b.append(draft('a')), await b.append(draft('b')), await b.append(draft('a'))];
    expect(stored.map((s) => s.event.id)).toEqual(['ep1.1', 'ep1.2', 'ep1.3']);
    expect(stored.map((s) => s.seq)).toEqual([1, 2, 3]);
    expect(stored.map((s) => s.event.stream)).toEqual(['a', 'b', 'a']);
    await b.close();
  });

  it('builds the frame as the id line, then the body, then a blank line', async () => {
    const { b } = await open();
    const stored = await b.append(draft('a', { n: 1 }));
    expect(stored.frame).toBe('id: ep1.1\nevent: t\ndata: x\n\n');
    expect(stored.event).toEqual({ id: 'ep1.1', stream: 'a', type: 't', data: { n: 1 }, timestamp: '2024-01-01T00:00:00.000Z' });
    await b.close();
  });

  it('records the UTF-8 byte length of the frame', async () => {
    const { b } = await open();
    const ascii = await b.append(draft('a'));
    expect(ascii.bytes).toBe(Buffer.byteLength(ascii.frame));
    expect(ascii.bytes).toBe(28);
    const wide = await b.append(draft('a', null, 'event: t\ndata: é€😀\n'));
    expect(wide.bytes).toBe(Buffer.byteLength(wide.frame));
    expect(wide.bytes).toBe(wide.frame.length + 1 + 2 + 2);
    await b.close();
  });

  it('calls deliver synchronously, in order, with the stored event', async () => {
    const { b, delivered } = await open();
    const first = b.append(draft('a'));
    expect(delivered).toHaveLength(1);
    const second = b.append(draft('b'));
    expect(delivered).toHaveLength(2);
    expect(delivered[0]).toBe(await first);
    expect(delivered[1]).toBe(await second);
    expect(ids(delivered)).toEqual(['ep1.1', 'ep1.2']);
    await b.close();
  });

  it('refuses to append before it is opened', async () => {
    const b = new MemoryBackend({ epoch: 'ep1' });
    await expect(b.append(draft('a'))).rejects.toThrow(/before/);
  });

  it('reads the last n events of a stream for a fresh subscriber', async () => {
    const { b } = await open();
    for (const stream of ['a', 'b', 'a', 'a', 'b']) await b.append(draft(stream));
    const result = await b.read({ streams: ['a'], after: null, recent: 2 });
    expect(ids(result.events)).toEqual(['ep1.3', 'ep1.4']);
    expect(result.resync).toBeUndefined();
    await b.close();
  });

  it('reads the last n events of each of several streams, merged in seq order', async () => {
    const { b } = await open();
    for (const stream of ['a', 'b', 'a', 'c', 'b', 'a']) await b.append(draft(stream));
    const result = await b.read({ streams: ['a', 'b'], after: null, recent: 1 });
    expect(ids(result.events)).toEqual(['ep1.5', 'ep1.6']);
    expect(result.resync).toBeUndefined();
    await b.close();
  });

  it('resyncs with reason foreign for a cursor from another epoch, then gives the recent events', async () => {
    const { b } = await open();
    for (const stream of ['a', 'a', 'a']) await b.append(draft(stream));
    const result = await b.read({ streams: ['a'], after: { epoch: 'other', seq: 1 }, recent: 2 });
    expect(result.resync).toBe('foreign');
    expect(ids(result.events)).toEqual(['ep1.2', 'ep1.3']);
    await b.close();
  });

  it('resyncs with reason unknown for a seq past the last one issued', async () => {
    const { b } = await open();
    for (const stream of ['a', 'a', 'a']) await b.append(draft(stream));
    const result = await b.read({ streams: ['a'], after: { epoch: 'ep1', seq: 4 }, recent: 2 });
    expect(result.resync).toBe('unknown');
    expect(ids(result.events)).toEqual(['ep1.2', 'ep1.3']);
    await b.close();
  });

  it('answers a cursor equal to the last seq issued with no events and no resync', async () => {
    const { b } = await open();
    for (const stream of ['a', 'a', 'a']) await b.append(draft(stream));
    const result = await b.read({ streams: ['a'], after: { epoch: 'ep1', seq: 3 }, recent: 2 });
    expect(result).toEqual({ events: [], position: { epoch: 'ep1', seq: 3 }, gapThrough: 0 });
    await b.close();
  });

  it('resyncs with reason expired for a seq older than the retained history', async () => {
    const { b } = await open({ maxEventsPerStream: 2 });
    for (const stream of ['a', 'a', 'a', 'a']) await b.append(draft(stream));
    const result = await b.read({ streams: ['a'], after: { epoch: 'ep1', seq: 1 }, recent: 10 });
    expect(result.resync).toBe('expired');
    expect(ids(result.events)).toEqual(['ep1.3', 'ep1.4']);
    const exact = await b.read({ streams: ['a'], after: { epoch: 'ep1', seq: 2 }, recent: 10 });
    expect(exact).toEqual({ events: [exact.events[0], exact.events[1]], position: { epoch: 'ep1', seq: 4 }, gapThrough: 2 });
    expect(ids(exact.events)).toEqual(['ep1.3', 'ep1.4']);
    await b.close();
  });

  it('resyncs with reason expired when a followed stream was evicted whole', async () => {
    const { b } = await open({ maxStreams: 1 });
    for (const stream of ['a', 'a', 'b']) await b.append(draft(stream));
    const result = await b.read({ streams: ['a'], after: { epoch: 'ep1', seq: 1 }, recent: 10 });
    expect(result.resync).toBe('expired');
    expect(result.events).toEqual([]);
    await b.close();
  });

  it('resumes several streams after a cursor, merged in seq order', async () => {
    const { b } = await open();
    for (const stream of ['a', 'b', 'c', 'a', 'b', 'c', 'b', 'a']) await b.append(draft(stream));
    const result = await b.read({ streams: ['a', 'b'], after: { epoch: 'ep1', seq: 2 }, recent: 0 });
    expect(result.resync).toBeUndefined();
    expect(ids(result.events)).toEqual(['ep1.4', 'ep1.5', 'ep1.7', 'ep1.8']);
    await b.close();
  });

  it('resumes "*" after a cursor with every stream, in seq order', async () => {
    const { b } = await open();
    for (const stream of ['a', 'b', 'c', 'a', 'b', 'c']) await b.append(draft(stream));
    const result = await b.read({ streams: '*', after: { epoch: 'ep1', seq: 2 }, recent: 0 });
    expect(result.resync).toBeUndefined();
    expect(ids(result.events)).toEqual(['ep1.3', 'ep1.4', 'ep1.5', 'ep1.6']);
    await b.close();
  });

  it('gives a fresh "*" subscriber the recent events of every stream, in seq order', async () => {
    const { b } = await open();
    for (const stream of ['a', 'b', 'c', 'a', 'b', 'c']) await b.append(draft(stream));
    const result = await b.read({ streams: '*', after: null, recent: 10 });
    expect(result.resync).toBeUndefined();
    expect(ids(result.events)).toEqual(['ep1.1', 'ep1.2', 'ep1.3', 'ep1.4', 'ep1.5', 'ep1.6']);
    await b.close();
  });

  it('keeps streams with subscribers when evicting', async () => {
    const { b } = await open({ maxStreams: 2 }, (stream) => stream === 'a');
    for (const stream of ['a', 'b', 'c', 'd']) await b.append(draft(stream));
    const a = await b.read({ streams: ['a'], after: null, recent: 10 });
    expect(ids(a.events)).toEqual(['ep1.1']);
    const c = await b.read({ streams: ['c'], after: null, recent: 10 });
    expect(c.events).toEqual([]);
    expect(b.stats()).toMatchObject({ retainedStreams: 2, retainedEvents: 2, evictedStreams: 2 });
    await b.close();
  });

  it('reports its retained history in stats', async () => {
    const { b } = await open();
    expect(b.stats()).toEqual({
      retainedStreams: 0,
      retainedEvents: 0,
      retainedBytes: 0,
      retainedKeys: 0,
      evictedStreams: 0,
      evictedKeys: 0,
    });
    await b.append(draft('a'));
    await b.append(draft('b'));
    expect(b.stats()).toEqual({
      retainedStreams: 2,
      retainedEvents: 2,
      retainedBytes: 56,
      retainedKeys: 0,
      evictedStreams: 0,
      evictedKeys: 0,
    });
    await b.close();
    expect(b.stats()).toMatchObject({ retainedStreams: 0, retainedEvents: 0, retainedBytes: 0 });
  });

  // ep1.2 is lost with the evicted history: a client that last saw ep1.1 must resync.
  it('resyncs with reason expired when a stream was evicted and then published to again', async () => {
    const { b } = await open({ maxStreams: 1 });
    for (const stream of ['a', 'a', 'b', 'a']) await b.append(draft(stream));
    const result = await b.read({ streams: ['a'], after: { epoch: 'ep1', seq: 1 }, recent: 10 });
    await b.close();
    expect(result.resync).toBe('expired');
  });
});

describe('ReplayBuffer: replay since a time', () => {
  function at(seq: number, stream: string, timestamp: string): StoredEvent {
    return { ...ev(seq, stream), event: { ...ev(seq, stream).event, timestamp } };
  }
  const T = (n: number) => `2026-01-01T00:00:0${n}.000Z`;

  it('returns the events at or after the time, complete while nothing that recent was dropped', () => {
    const buffer = new ReplayBuffer({ maxEventsPerStream: 3 });
    for (let n = 1; n <= 5; n++) buffer.append(at(n, 's', T(n)));
    expect(buffer.since('s', T(4))).toEqual({
      events: [expect.objectContaining({ seq: 4 }), expect.objectContaining({ seq: 5 })],
      complete: true,
    });
    // Events 1 and 2 were trimmed; a replay from T(2) would miss event 2.
    expect(buffer.since('s', T(2)).complete).toBe(false);
    expect(buffer.since('s', T(2)).events.map((e) => e.seq)).toEqual([3, 4, 5]);
    expect(buffer.since('s', T(3)).complete).toBe(true);
  });

  it('knows a stream dropped whole lost what it held, for that stream and for *', () => {
    const buffer = new ReplayBuffer({ maxStreams: 1 });
    buffer.append(at(1, 'old', T(1)));
    buffer.append(at(2, 'new', T(2)));
    expect(buffer.since('old', T(1))).toEqual({ events: [], complete: false });
    expect(buffer.since('old', T(2))).toEqual({ events: [], complete: true });
    expect(buffer.sinceAll(T(1)).complete).toBe(false);
    expect(buffer.sinceAll(T(2))).toEqual({ events: [expect.objectContaining({ seq: 2 })], complete: true });
  });
});

describe('ReplayBuffer: a stream with no history is charged only with its own drops', () => {
  it('answers a stream never dropped with nothing missing, one dropped with EXPIRED, and forgets past maxStreams drops', () => {
    const buffer = new ReplayBuffer({ maxStreams: 2 });
    fill(buffer, [
      ['a', 1],
      ['x', 2],
      ['y', 3], // x goes (maxStreams 2)
      ['z', 4], // a goes
    ]);
    // b was never published: other streams' evictions are nothing it missed (a review finding: it resynced).
    expect(seqs(buffer.after('b', 1))).toEqual([]);
    expect(buffer.since('b', '2000-01-01T00:00:00.000Z').complete).toBe(true);
    // x was dropped holding seq 2: a resume from before that has a gap; from after it does not.
    expect(buffer.after('x', 1)).toBe(EXPIRED);
    expect(seqs(buffer.after('x', 2))).toEqual([]);
    // Published again, x still knows what it lost before.
    fill(buffer, [['x', 5]]);
    expect(buffer.after('x', 1)).toBe(EXPIRED);
    expect(seqs(buffer.after('x', 2))).toEqual([5]);
    // Past maxStreams remembered drops, the oldest are forgotten into one watermark that every absent stream is charged with.
    fill(buffer, [
      ['p', 6],
      ['q', 7],
      ['r', 8],
      ['s', 9],
    ]);
    expect(buffer.after('b', 1)).toBe(EXPIRED);
  });
});
