import { utf8Length } from '../../core/encoder.js';
import {
  bySeq,
  frameFor,
  type Backend,
  type BackendContext,
  type EventDraft,
  type ReadQuery,
  type ReadResult,
  type StoredEvent,
} from '../../core/backend.js';
import { formatEventId, isValidEpoch, newEpoch } from '../../core/ids.js';
import { EXPIRED, ReplayBuffer, type ReplayBufferOptions } from './replay-buffer.js';

export interface MemoryBackendOptions extends Omit<ReplayBufferOptions, 'isPinned'> {
  /** Fixed epoch, for tests. @defaultValue a new one per backend */
  epoch?: string;
}

/**
 * The default backend: one process, history in a bounded {@link ReplayBuffer}.
 * A restart starts a new epoch, so ids from before it resync.
 */
export class MemoryBackend implements Backend {
  readonly epoch: string;
  private seq = 0;
  private readonly buffer: ReplayBuffer;
  private context: BackendContext | undefined;
  private sweepTimer: ReturnType<typeof setInterval> | undefined;

  constructor(options: MemoryBackendOptions = {}) {
    this.epoch = options.epoch ?? newEpoch();
    if (!isValidEpoch(this.epoch)) throw new TypeError(`epoch must be 1 to 24 characters of [0-9a-z], got ${JSON.stringify(this.epoch)}`);
    // Built now so that bad bounds throw at construction, not at first use.
    this.buffer = new ReplayBuffer({ ...options, isPinned: (stream) => this.context?.hasSubscribers(stream) ?? false });
  }

  async open(context: BackendContext): Promise<void> {
    this.context = context;
  }

  async append(draft: EventDraft): Promise<StoredEvent> {
    const buffer = this.requireOpen();
    const seq = ++this.seq;
    const id = formatEventId(this.epoch, seq);
    const frame = frameFor(id, draft.body);
    const stored: StoredEvent = {
      seq,
      event:
        draft.key === undefined
          ? { id, stream: draft.stream, type: draft.type, data: draft.data, timestamp: draft.timestamp }
          : { id, stream: draft.stream, type: draft.type, data: draft.data, timestamp: draft.timestamp, key: draft.key },
      frame,
      bytes: utf8Length(frame),
    };
    buffer.append(stored);
    this.ensureSweeper();
    (this.context as BackendContext).deliver(stored);
    return stored;
  }

  async read(query: ReadQuery): Promise<ReadResult> {
    const buffer = this.requireOpen();
    const { after, streams, recent, since } = query;
    const position = { epoch: this.epoch, seq: this.seq };
    if (streams !== '*') buffer.touch(streams);
    const gapThrough = buffer.gapThrough(streams);
    if (!after && since !== undefined) {
      const found = readSince(buffer, streams, since);
      return { events: found.events, position, gapThrough, ...(found.complete ? {} : { resync: 'expired' as const }) };
    }
    if (after) {
      const resync = after.epoch !== this.epoch ? 'foreign' : after.seq > this.seq ? 'unknown' : undefined;
      if (!resync) {
        const events = readAfter(buffer, streams, after.seq);
        if (events !== EXPIRED) return { events, position, gapThrough };
      }
      return { events: readRecent(buffer, streams, recent), resync: resync ?? 'expired', position, gapThrough };
    }
    return { events: readRecent(buffer, streams, recent), position, gapThrough };
  }

  stats(): Record<string, number> {
    return {
      retainedStreams: this.buffer.streamCount,
      retainedEvents: this.buffer.eventCount,
      retainedBytes: this.buffer.bytes,
      retainedKeys: this.buffer.keyCount,
      evictedStreams: this.buffer.evictions,
      evictedKeys: this.buffer.evictedKeys,
    };
  }

  async close(): Promise<void> {
    if (this.sweepTimer) clearInterval(this.sweepTimer);
    this.sweepTimer = undefined;
    this.buffer.clear();
  }

  private requireOpen(): ReplayBuffer {
    if (!this.context) throw new Error('MemoryBackend used before EventManager opened it');
    return this.buffer;
  }

  // Idle streams must expire even when nothing is published any more, but no
  // timer may run (or hold the process open) while there is nothing to expire.
  private ensureSweeper(): void {
    if (this.sweepTimer) return;
    const buffer = this.buffer;
    const period = Math.min(buffer.idleTtlMs, 60_000);
    this.sweepTimer = setInterval(() => {
      buffer.sweep();
      if (buffer.streamCount === 0 && this.sweepTimer) {
        clearInterval(this.sweepTimer);
        this.sweepTimer = undefined;
      }
    }, period);
    this.sweepTimer.unref?.();
  }
}

function readAfter(buffer: ReplayBuffer, streams: readonly string[] | '*', seq: number): StoredEvent[] | typeof EXPIRED {
  if (streams === '*') return buffer.afterAll(seq);
  const perStream: StoredEvent[][] = [];
  for (const stream of streams) {
    const events = buffer.after(stream, seq);
    if (events === EXPIRED) return EXPIRED;
    perStream.push(events);
  }
  return mergeBySeq(perStream);
}

function readSince(buffer: ReplayBuffer, streams: readonly string[] | '*', iso: string): { events: StoredEvent[]; complete: boolean } {
  if (streams === '*') return buffer.sinceAll(iso);
  const found = streams.map((stream) => buffer.since(stream, iso));
  return { events: mergeBySeq(found.map((f) => f.events)), complete: found.every((f) => f.complete) };
}

function readRecent(buffer: ReplayBuffer, streams: readonly string[] | '*', count: number): StoredEvent[] {
  if (streams === '*') return buffer.recentAll(count);
  return mergeBySeq(streams.map((stream) => buffer.recent(stream, count)));
}

/** One stream's events are already in order; several are merged into the hub's global order. */
function mergeBySeq(perStream: StoredEvent[][]): StoredEvent[] {
  if (perStream.length === 1) return perStream[0] as StoredEvent[];
  return perStream.flat().sort(bySeq);
}
