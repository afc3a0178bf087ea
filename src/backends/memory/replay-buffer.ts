import { bySeq, type StoredEvent } from '../../core/backend.js';
import { nonNegativeInt, positiveInt } from '../../core/validate.js';

/** Bounds of a {@link ReplayBuffer}. Every one has a default; none is unbounded. */
export interface ReplayBufferOptions {
  /** Events kept per stream. @defaultValue 100 */
  maxEventsPerStream?: number;
  /** Bytes of frames kept per stream. @defaultValue 262144 (256 KiB) */
  maxBytesPerStream?: number;
  /** Bytes of frames kept across all streams. @defaultValue 67108864 (64 MiB) */
  maxTotalBytes?: number;
  /** Streams kept; past it the least recently used stream without subscribers goes. @defaultValue 10000 */
  maxStreams?: number;
  /** A stream nobody published to or read for this long is dropped. @defaultValue 3600000 (1 h) */
  idleTtlMs?: number;
  /** Streams for which this returns true are evicted last. */
  isPinned?: (stream: string) => boolean;
  /** Clock, for tests. */
  now?: () => number;
}

/** Why a read after a sequence number cannot be answered exactly. */
export const EXPIRED = Symbol('expired');

class StreamHistory {
  events: StoredEvent[] = [];
  head = 0;
  bytes = 0;
  /** Highest seq this stream has lost to trimming; a resume from before it has a gap. */
  droppedThrough = 0;
  /** Timestamp of the newest event this stream has lost ('' when none): a replay from a later time is complete. */
  droppedAt = '';
  lastSeq = 0;
  lastAt = '';
  touchedAt: number;

  constructor(now: number) {
    this.touchedAt = now;
  }

  get length(): number {
    return this.events.length - this.head;
  }

  push(event: StoredEvent): void {
    this.events.push(event);
    this.bytes += event.bytes;
    this.lastSeq = event.seq;
    if (event.event.timestamp > this.lastAt) this.lastAt = event.event.timestamp;
  }

  shift(): StoredEvent | undefined {
    const event = this.events[this.head];
    if (!event) return undefined;
    this.events[this.head] = undefined as unknown as StoredEvent;
    this.head++;
    this.bytes -= event.bytes;
    this.droppedThrough = event.seq;
    if (event.event.timestamp > this.droppedAt) this.droppedAt = event.event.timestamp;
    // Compact once the dead prefix outweighs the live part: amortised O(1).
    if (this.head > 32 && this.head * 2 > this.events.length) {
      this.events = this.events.slice(this.head);
      this.head = 0;
    }
    return event;
  }

  /** Events with seq > after, oldest first. */
  after(after: number): StoredEvent[] {
    const out: StoredEvent[] = [];
    for (let i = this.events.length - 1; i >= this.head; i--) {
      const event = this.events[i] as StoredEvent;
      if (event.seq <= after) break;
      out.push(event);
    }
    return out.reverse();
  }

  /** Events published at or after `iso` (timestamps are ISO strings, so they compare as text), oldest first. */
  since(iso: string): StoredEvent[] {
    const out: StoredEvent[] = [];
    for (let i = this.events.length - 1; i >= this.head; i--) {
      const event = this.events[i] as StoredEvent;
      if (event.event.timestamp < iso) break;
      out.push(event);
    }
    return out.reverse();
  }

  recent(count: number): StoredEvent[] {
    if (count <= 0) return [];
    return this.events.slice(Math.max(this.head, this.events.length - count));
  }
}

/**
 * Bounded per-stream history: by count and bytes per stream, by bytes and
 * number of streams overall, and by idle time. What it gives up is recorded,
 * so a resume that would cross a gap is reported as expired, never answered
 * with a silently shortened history.
 */
export class ReplayBuffer {
  readonly maxEventsPerStream: number;
  readonly maxBytesPerStream: number;
  readonly maxTotalBytes: number;
  readonly maxStreams: number;
  readonly idleTtlMs: number;
  private readonly isPinned: (stream: string) => boolean;
  private readonly now: () => number;
  // Map order is recency order: a touched stream is re-inserted at the end.
  private readonly streams = new Map<string, StreamHistory>();
  private totalBytes = 0;
  /** The stream last moved to the back of `streams` (the most recently used), if it is still there. */
  private newest: string | undefined;
  /** Highest seq held by any stream dropped whole (evicted or expired). */
  private evictedThrough = 0;
  /** Newest timestamp held by any stream dropped whole. */
  private evictedAt = '';
  evictions = 0;

  constructor(options: ReplayBufferOptions = {}) {
    this.maxEventsPerStream = nonNegativeInt(options.maxEventsPerStream ?? 100, 'maxEventsPerStream');
    this.maxBytesPerStream = positiveInt(options.maxBytesPerStream ?? 256 * 1024, 'maxBytesPerStream');
    this.maxTotalBytes = positiveInt(options.maxTotalBytes ?? 64 * 1024 * 1024, 'maxTotalBytes');
    this.maxStreams = positiveInt(options.maxStreams ?? 10_000, 'maxStreams');
    this.idleTtlMs = positiveInt(options.idleTtlMs ?? 60 * 60 * 1000, 'idleTtlMs');
    this.isPinned = options.isPinned ?? (() => false);
    this.now = options.now ?? Date.now;
  }

  get streamCount(): number {
    return this.streams.size;
  }

  get bytes(): number {
    return this.totalBytes;
  }

  get eventCount(): number {
    let count = 0;
    for (const history of this.streams.values()) count += history.length;
    return count;
  }

  append(event: StoredEvent): void {
    if (this.maxEventsPerStream === 0) {
      this.evictedThrough = event.seq;
      if (event.event.timestamp > this.evictedAt) this.evictedAt = event.event.timestamp;
      return;
    }
    const now = this.now();
    const stream = event.event.stream;
    let history = this.streams.get(stream);
    if (!history) {
      history = new StreamHistory(now);
      // This stream may have been dropped whole before; what it held is gone,
      // so a resume from before the last drop must resync, not skip silently.
      history.droppedThrough = this.evictedThrough;
      history.droppedAt = this.evictedAt;
    }
    history.touchedAt = now;
    this.moveToBack(stream, history);
    history.push(event);
    this.totalBytes += event.bytes;
    while (history.length > 1 && (history.length > this.maxEventsPerStream || history.bytes > this.maxBytesPerStream)) {
      this.totalBytes -= (history.shift() as StoredEvent).bytes;
    }
    this.sweep(now);
    this.enforceGlobalBounds(stream);
  }

  /**
   * Events of `stream` after `seq`, or EXPIRED when this stream has dropped an
   * event after `seq` (trimmed, evicted or expired) so the answer would have a gap.
   */
  after(stream: string, seq: number): StoredEvent[] | typeof EXPIRED {
    const history = this.streams.get(stream);
    if (!history) return this.evictedThrough > seq ? EXPIRED : [];
    if (history.droppedThrough > seq) return EXPIRED;
    return history.after(seq);
  }

  /** Events of every stream after `seq`, in sequence order, or EXPIRED. */
  afterAll(seq: number): StoredEvent[] | typeof EXPIRED {
    if (this.evictedThrough > seq) return EXPIRED;
    const out: StoredEvent[] = [];
    for (const history of this.streams.values()) {
      if (history.droppedThrough > seq) return EXPIRED;
      for (const event of history.after(seq)) out.push(event);
    }
    return out.sort(bySeq);
  }

  /**
   * Events of `stream` published at or after the ISO time `iso`, and whether
   * that is all of them: false when the stream has lost an event that recent.
   */
  since(stream: string, iso: string): { events: StoredEvent[]; complete: boolean } {
    const history = this.streams.get(stream);
    if (!history) return { events: [], complete: this.evictedAt < iso };
    return { events: history.since(iso), complete: history.droppedAt < iso };
  }

  /** {@link since} across every stream, in sequence order. */
  sinceAll(iso: string): { events: StoredEvent[]; complete: boolean } {
    let complete = this.evictedAt < iso;
    const out: StoredEvent[] = [];
    for (const history of this.streams.values()) {
      if (history.droppedAt >= iso) complete = false;
      for (const event of history.since(iso)) out.push(event);
    }
    return { events: out.sort(bySeq), complete };
  }

  recent(stream: string, count: number): StoredEvent[] {
    return this.streams.get(stream)?.recent(count) ?? [];
  }

  /** The last `count` events across every stream. */
  recentAll(count: number): StoredEvent[] {
    if (count <= 0) return [];
    const out: StoredEvent[] = [];
    for (const history of this.streams.values()) for (const event of history.recent(count)) out.push(event);
    return out.sort(bySeq).slice(-count);
  }

  /** Marks streams as used so that reading them keeps them from eviction. */
  touch(streams: readonly string[]): void {
    const now = this.now();
    for (const stream of streams) {
      const history = this.streams.get(stream);
      if (!history) continue;
      history.touchedAt = now;
      this.moveToBack(stream, history);
    }
  }

  /** Drops streams idle past the TTL that nobody follows. Cheap: it stops at the first live one. */
  sweep(now = this.now()): void {
    for (const [stream, history] of this.streams) {
      if (now - history.touchedAt < this.idleTtlMs) break;
      if (this.isPinned(stream)) {
        // Followed streams stay; move it to the back so the sweep keeps going.
        history.touchedAt = now;
        this.moveToBack(stream, history);
        continue;
      }
      this.drop(stream, history);
    }
  }

  clear(): void {
    for (const [stream, history] of this.streams) this.drop(stream, history);
  }

  private enforceGlobalBounds(justAppended: string): void {
    if (this.streams.size <= this.maxStreams && this.totalBytes <= this.maxTotalBytes) return;
    // First pass: least recently used streams nobody follows.
    for (const [stream, history] of this.streams) {
      if (this.streams.size <= this.maxStreams && this.totalBytes <= this.maxTotalBytes) return;
      if (stream === justAppended || this.isPinned(stream)) continue;
      this.drop(stream, history);
    }
    // Everything left is followed: trim the oldest events instead, recording the gap.
    for (const [stream, history] of this.streams) {
      if (this.streams.size <= this.maxStreams && this.totalBytes <= this.maxTotalBytes) return;
      while (history.length > 1 && this.totalBytes > this.maxTotalBytes) {
        this.totalBytes -= (history.shift() as StoredEvent).bytes;
      }
      if (this.streams.size > this.maxStreams && stream !== justAppended) this.drop(stream, history);
    }
  }

  /**
   * Re-inserts a stream as the most recent. A publisher usually writes to the
   * same stream many times in a row, and deleting and re-adding a key of a
   * large Map each time is far from free (V8 keeps the holes until it
   * rehashes): the newest stream is left where it is.
   */
  private moveToBack(stream: string, history: StreamHistory): void {
    if (stream === this.newest) return;
    this.streams.delete(stream);
    this.streams.set(stream, history);
    this.newest = stream;
  }

  private drop(stream: string, history: StreamHistory): void {
    if (stream === this.newest) this.newest = undefined;
    this.streams.delete(stream);
    this.totalBytes -= history.bytes;
    if (history.lastSeq > this.evictedThrough) this.evictedThrough = history.lastSeq;
    if (history.lastAt > this.evictedAt) this.evictedAt = history.lastAt;
    this.evictions++;
  }
}
