import { bySeq, type StoredEvent } from '../../core/backend.js';
import { nonNegativeInt, positiveInt } from '../../core/validate.js';

/** Bounds of a {@link ReplayBuffer}. Every one has a default; none is unbounded. */
export interface ReplayBufferOptions {
  /** Events kept per stream. @defaultValue 100 */
  maxEventsPerStream?: number;
  /**
   * Bytes of frames kept per stream: its recent events and the keyed state
   * outside them together. Past it the oldest recent events go first, then
   * the least recently updated keys. @defaultValue 262144 (256 KiB)
   */
  maxBytesPerStream?: number;
  /**
   * Keys whose latest event is kept per stream (see `publish`'s `key`).
   * Past it the least recently updated key goes, and a resume from before
   * its trimmed events resyncs. @defaultValue 1000
   */
  maxKeysPerStream?: number;
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
  /** The tail: the stream's most recent events, a contiguous run of its sequence. */
  events: StoredEvent[] = [];
  head = 0;
  /** Bytes of the tail. */
  bytes = 0;
  /** Highest seq trimmed from the tail: every event of the stream after it is in the tail. */
  trimmedThrough = 0;
  /** Newest timestamp trimmed from the tail ('' when none). */
  trimmedAt = '';
  /**
   * Highest seq this stream has lost without cover: an unkeyed event trimmed
   * from the tail, or a key dropped from the state. A resume from before it
   * has a gap; a resume from after it is answered from the tail and the state.
   */
  gapThrough = 0;
  /** Newest timestamp lost without cover: a replay from a later time is complete. */
  gapAt = '';
  /** The latest event of each key, least recently updated first. Made on the first keyed event. */
  keys: Map<string, StoredEvent> | undefined;
  /** Bytes of keyed events that are no longer in the tail (the state holds them alone). */
  stateBytes = 0;
  stateCount = 0;
  lastSeq = 0;
  lastAt = '';
  touchedAt: number;

  constructor(now: number) {
    this.touchedAt = now;
  }

  get length(): number {
    return this.events.length - this.head;
  }

  /** Everything this stream holds: the tail and the state outside it. */
  get retainedBytes(): number {
    return this.bytes + this.stateBytes;
  }

  /** Appends to the tail; a keyed event replaces its key's previous one. True when a key was dropped past `maxKeys`. */
  push(event: StoredEvent, maxKeys: number): boolean {
    this.events.push(event);
    this.bytes += event.bytes;
    this.lastSeq = event.seq;
    if (event.event.timestamp > this.lastAt) this.lastAt = event.event.timestamp;
    const key = event.event.key;
    if (key === undefined) return false;
    const keys = (this.keys ??= new Map());
    const previous = keys.get(key);
    if (previous) {
      // Superseded: if the state held it alone, it goes now; a resume that missed it gets the newer one.
      keys.delete(key);
      if (previous.seq <= this.trimmedThrough) this.forget(previous);
    }
    keys.set(key, event);
    if (keys.size <= maxKeys) return false;
    this.dropKey(keys.keys().next().value as string);
    return true;
  }

  /** Trims the oldest event of the tail. A keyed event that is still its key's latest stays, in the state. */
  shift(): void {
    const event = this.events[this.head];
    if (!event) return;
    this.events[this.head] = undefined as unknown as StoredEvent;
    this.head++;
    this.bytes -= event.bytes;
    this.trimmedThrough = event.seq;
    if (event.event.timestamp > this.trimmedAt) this.trimmedAt = event.event.timestamp;
    const key = event.event.key;
    const latest = key === undefined ? undefined : this.keys?.get(key);
    if (latest === event) {
      this.stateBytes += event.bytes;
      this.stateCount++;
    } else if (!latest) {
      // Unkeyed (or its key was dropped): nothing newer stands for it.
      this.markGap(event.seq, event.event.timestamp);
    }
    // Compact once the dead prefix outweighs the live part: amortised O(1).
    if (this.head > 32 && this.head * 2 > this.events.length) {
      this.events = this.events.slice(this.head);
      this.head = 0;
    }
  }

  /** Drops the least recently updated key the state holds alone (freeing bytes). False when there is none. */
  dropStateKey(): boolean {
    if (!this.keys || this.stateCount === 0) return false;
    for (const [key, event] of this.keys) {
      if (event.seq > this.trimmedThrough) continue;
      this.dropKey(key);
      return true;
    }
    return false;
  }

  /** Events with seq > after, oldest first, the state's included. */
  after(after: number): StoredEvent[] {
    const out: StoredEvent[] = [];
    for (let i = this.events.length - 1; i >= this.head; i--) {
      const event = this.events[i] as StoredEvent;
      if (event.seq <= after) break;
      out.push(event);
    }
    return this.withState(out.reverse(), (event) => event.seq > after);
  }

  /** Events published at or after `iso` (timestamps are ISO strings, so they compare as text), oldest first, the state's included. */
  since(iso: string): StoredEvent[] {
    const out: StoredEvent[] = [];
    for (let i = this.events.length - 1; i >= this.head; i--) {
      const event = this.events[i] as StoredEvent;
      if (event.event.timestamp < iso) break;
      out.push(event);
    }
    return this.withState(out.reverse(), (event) => event.event.timestamp >= iso);
  }

  /** The last `count` events and the latest event of every key, oldest first. */
  recent(count: number): StoredEvent[] {
    return this.withState(this.tail(count), () => true);
  }

  /** The last `count` events of the tail alone. */
  tail(count: number): StoredEvent[] {
    return count <= 0 ? [] : this.events.slice(Math.max(this.head, this.events.length - count));
  }

  /**
   * Adds the state's events that `part` (a contiguous run ending at the
   * newest event) does not hold, in sequence order: every one of them is
   * older than `part`'s first.
   */
  private withState(part: StoredEvent[], include: (event: StoredEvent) => boolean): StoredEvent[] {
    if (!this.keys) return part;
    const first = part.length > 0 ? (part[0] as StoredEvent).seq : Number.POSITIVE_INFINITY;
    let older: StoredEvent[] | undefined;
    for (const event of this.keys.values()) if (event.seq < first && include(event)) (older ??= []).push(event);
    return older ? older.sort(bySeq).concat(part) : part;
  }

  private dropKey(key: string): void {
    const keys = this.keys as Map<string, StoredEvent>;
    const event = keys.get(key) as StoredEvent;
    keys.delete(key);
    // What stood for this key's trimmed events is gone: a resume from before them must resync.
    if (event.seq <= this.trimmedThrough) {
      this.forget(event);
      this.markGap(event.seq, event.event.timestamp);
    } else {
      this.markGap(this.trimmedThrough, this.trimmedAt);
    }
  }

  private forget(event: StoredEvent): void {
    this.stateBytes -= event.bytes;
    this.stateCount--;
  }

  private markGap(seq: number, at: string): void {
    if (seq > this.gapThrough) this.gapThrough = seq;
    if (at > this.gapAt) this.gapAt = at;
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
  readonly maxKeysPerStream: number;
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
  /**
   * What each recently dropped stream held (its newest seq and time), at most
   * `maxStreams` of them: a stream that was never dropped is not charged with
   * other streams' evictions, so a client following a stream with no history
   * yet does not resync because some other stream went.
   */
  private readonly dropped = new Map<string, { seq: number; at: string }>();
  /** The newest seq and time of drops that fell out of `dropped` (and of events kept by nothing at all). */
  private forgottenThrough = 0;
  private forgottenAt = '';
  evictions = 0;
  /** Keys dropped past `maxKeysPerStream` or the byte bounds (not counting whole streams). */
  evictedKeys = 0;

  constructor(options: ReplayBufferOptions = {}) {
    this.maxEventsPerStream = nonNegativeInt(options.maxEventsPerStream ?? 100, 'maxEventsPerStream');
    this.maxBytesPerStream = positiveInt(options.maxBytesPerStream ?? 256 * 1024, 'maxBytesPerStream');
    this.maxKeysPerStream = positiveInt(options.maxKeysPerStream ?? 1000, 'maxKeysPerStream');
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

  /** Events held: the tails and the keyed events outside them. */
  get eventCount(): number {
    let count = 0;
    for (const history of this.streams.values()) count += history.length + history.stateCount;
    return count;
  }

  /** Keys whose latest event is held, across every stream. */
  get keyCount(): number {
    let count = 0;
    for (const history of this.streams.values()) count += history.keys?.size ?? 0;
    return count;
  }

  append(event: StoredEvent): void {
    if (this.maxEventsPerStream === 0) {
      this.evictedThrough = this.forgottenThrough = event.seq;
      if (event.event.timestamp > this.evictedAt) this.evictedAt = this.forgottenAt = event.event.timestamp;
      return;
    }
    const now = this.now();
    const stream = event.event.stream;
    let history = this.streams.get(stream);
    if (!history) {
      history = new StreamHistory(now);
      // This stream may have been dropped whole before; what it held is gone,
      // so a resume from before the last drop must resync, not skip silently.
      const lost = this.lostWith(stream);
      history.trimmedThrough = history.gapThrough = lost.seq;
      history.trimmedAt = history.gapAt = lost.at;
      this.dropped.delete(stream);
    }
    history.touchedAt = now;
    this.moveToBack(stream, history);
    const before = history.retainedBytes;
    if (history.push(event, this.maxKeysPerStream)) this.evictedKeys++;
    while (history.length > 1 && (history.length > this.maxEventsPerStream || history.retainedBytes > this.maxBytesPerStream)) {
      history.shift();
    }
    while (history.retainedBytes > this.maxBytesPerStream && history.dropStateKey()) this.evictedKeys++;
    this.totalBytes += history.retainedBytes - before;
    this.sweep(now);
    this.enforceGlobalBounds(stream);
  }

  /**
   * Events of `stream` after `seq`, or EXPIRED when this stream has dropped an
   * event after `seq` (trimmed, evicted or expired) so the answer would have a gap.
   */
  after(stream: string, seq: number): StoredEvent[] | typeof EXPIRED {
    const history = this.streams.get(stream);
    if (!history) return this.lostWith(stream).seq > seq ? EXPIRED : [];
    if (history.gapThrough > seq) return EXPIRED;
    return history.after(seq);
  }

  /** Events of every stream after `seq`, in sequence order, or EXPIRED. */
  afterAll(seq: number): StoredEvent[] | typeof EXPIRED {
    if (this.evictedThrough > seq) return EXPIRED;
    const out: StoredEvent[] = [];
    for (const history of this.streams.values()) {
      if (history.gapThrough > seq) return EXPIRED;
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
    if (!history) return { events: [], complete: this.lostWith(stream).at < iso };
    return { events: history.since(iso), complete: history.gapAt < iso };
  }

  /** {@link since} across every stream, in sequence order. */
  sinceAll(iso: string): { events: StoredEvent[]; complete: boolean } {
    let complete = this.evictedAt < iso;
    const out: StoredEvent[] = [];
    for (const history of this.streams.values()) {
      if (history.gapAt >= iso) complete = false;
      for (const event of history.since(iso)) out.push(event);
    }
    return { events: out.sort(bySeq), complete };
  }

  recent(stream: string, count: number): StoredEvent[] {
    return this.streams.get(stream)?.recent(count) ?? [];
  }

  /** The last `count` events across every stream, and the latest event of every key. */
  recentAll(count: number): StoredEvent[] {
    const tail: StoredEvent[] = [];
    for (const history of this.streams.values()) for (const event of history.tail(count)) tail.push(event);
    const recent = tail.sort(bySeq).slice(-count);
    const seen = new Set(recent);
    const before = recent.length;
    for (const history of this.streams.values()) {
      if (history.keys) for (const event of history.keys.values()) if (!seen.has(event)) recent.push(event);
    }
    return recent.length === before ? recent : recent.sort(bySeq);
  }

  /** The highest seq `streams` have lost without cover (`'*'`: any stream): a resume from before it resyncs. */
  gapThrough(streams: readonly string[] | '*'): number {
    let gap = this.evictedThrough;
    if (streams === '*') {
      for (const history of this.streams.values()) if (history.gapThrough > gap) gap = history.gapThrough;
      return gap;
    }
    gap = 0;
    for (const stream of streams) {
      const history = this.streams.get(stream);
      const lost = history ? history.gapThrough : this.lostWith(stream).seq;
      if (lost > gap) gap = lost;
    }
    return gap;
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
    // Everything left is followed: trim the oldest events instead, then keys, recording the gap.
    for (const [stream, history] of this.streams) {
      if (this.streams.size <= this.maxStreams && this.totalBytes <= this.maxTotalBytes) return;
      const before = history.retainedBytes;
      while (history.length > 1 && this.totalBytes - before + history.retainedBytes > this.maxTotalBytes) history.shift();
      while (this.totalBytes - before + history.retainedBytes > this.maxTotalBytes && history.dropStateKey()) this.evictedKeys++;
      this.totalBytes += history.retainedBytes - before;
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
    this.totalBytes -= history.retainedBytes;
    if (history.lastSeq > this.evictedThrough) this.evictedThrough = history.lastSeq;
    if (history.lastAt > this.evictedAt) this.evictedAt = history.lastAt;
    this.evictions++;
    this.dropped.delete(stream);
    this.dropped.set(stream, { seq: history.lastSeq, at: history.lastAt });
    if (this.dropped.size > this.maxStreams) {
      const [oldest, lost] = this.dropped.entries().next().value as [string, { seq: number; at: string }];
      this.dropped.delete(oldest);
      if (lost.seq > this.forgottenThrough) this.forgottenThrough = lost.seq;
      if (lost.at > this.forgottenAt) this.forgottenAt = lost.at;
    }
  }

  /** What a stream that has no history now lost when it was dropped, as far as anyone remembers. */
  private lostWith(stream: string): { seq: number; at: string } {
    return this.dropped.get(stream) ?? { seq: this.forgottenThrough, at: this.forgottenAt };
  }
}
