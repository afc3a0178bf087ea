import { formatEvent } from '../core/encoder.js';
import type { EventManager } from '../core/event-manager.js';
import type { HeartbeatScheduler, HeartbeatTarget } from '../core/heartbeat.js';
import type { CloseReason, Delivery, Subscription } from '../core/subscription.js';
import type { EventMapBase } from '../core/types.js';

/**
 * What a framework's response becomes: the only surface the writer needs.
 * node:http, Express and Fastify wrap a `ServerResponse`; fetch wraps a
 * ReadableStream controller.
 */
export interface SseTransport {
  /**
   * Writes a chunk; false means the peer is full and `drained()` will be
   * called. Event chunks come as UTF-8 bytes shared by every connection that
   * gets them: never modify one.
   */
  write(chunk: string | Uint8Array): boolean;
  /** Bytes accepted by the transport that have not reached the peer yet. */
  readonly bufferedBytes: number;
  /** Ends the response cleanly (server-initiated close). */
  end(): void;
  /** Tears the response down at once (slow consumer, error). */
  abort(): void;
}

export interface ConnectionOptions {
  streams: readonly string[] | '*';
  types?: readonly string[] | undefined;
  lastEventId?: string | undefined;
  /** Replay from this ISO time instead of the most recent events. */
  since?: string | undefined;
  replay?: number | undefined;
  /** `retry:` sent first. */
  retryMs: number;
  /** Idle time before a `:heartbeat`; 0 disables heartbeats. */
  heartbeatMs: number;
  /** Unsent bytes (queued here plus buffered in the transport) past which the client is cut off. */
  maxUnsentBytes: number;
  /** Called once when the connection is finished, whoever ended it. */
  onClose?: ((reason: CloseReason) => void) | undefined;
}

const HEARTBEAT = ':heartbeat\n\n';
// Past this many queued bytes a connection is flushed at once instead of at
// the end of the tick: a publisher in a tight loop must not grow the queue
// towards the slow-consumer bound while the socket is ready to take it.
const EAGER_FLUSH_BYTES = 16 * 1024;

/**
 * Events published in one tick are written to each socket as one chunk. One
 * `setImmediate` serves every connection with something queued.
 */
const dirty = new Set<{ flush(): void }>();
let flushScheduled = false;

function scheduleFlush(connection: { flush(): void }): void {
  dirty.add(connection);
  if (flushScheduled) return;
  flushScheduled = true;
  setImmediate(flushDirty);
}

function flushDirty(): void {
  flushScheduled = false;
  const connections = [...dirty];
  dirty.clear();
  // One clock reading for the whole flush: heartbeats need milliseconds, not a call per socket.
  flushClock = Date.now();
  for (const connection of connections) connection.flush();
  flushClock = 0;
  lastFrames = undefined;
  lastChunk = undefined;
}

let flushClock = 0;

/**
 * The subscribers of a stream are queued the same frames in the same order,
 * and the shared flush visits them one after another: the chunk of one is
 * usually the chunk of the next. Joining and encoding it once, and writing
 * the same bytes to every socket, is what makes fan-out to thousands of
 * connections cost little more than the writes themselves.
 */
const utf8 = new TextEncoder();
let lastFrames: readonly string[] | undefined;
let lastChunk: Uint8Array | undefined;

function chunkOf(frames: readonly string[]): Uint8Array {
  const previous = lastFrames;
  if (previous && previous.length === frames.length && lastChunk) {
    let same = true;
    // Usually the very same string objects, so each comparison is a pointer check.
    for (let i = 0; i < frames.length; i++) if (frames[i] !== previous[i]) { same = false; break; }
    if (same) return lastChunk;
  }
  const chunk = utf8.encode(frames.length === 1 ? (frames[0] as string) : frames.join(''));
  // A copy: connections reuse their queue array once it is written.
  lastFrames = frames.slice();
  lastChunk = chunk;
  // Released at the end of the shared flush, so the cache never outlives a tick.
  if (!flushScheduled) {
    flushScheduled = true;
    setImmediate(flushDirty);
  }
  return chunk;
}

/**
 * The one writer every adapter uses: sends `retry:` first, subscribes,
 * coalesces each tick's events into one write, honours backpressure, cuts
 * off a client past its unsent-bytes bound, keeps idle connections alive
 * with heartbeats and, when anything ends the connection, removes every
 * subscription, timer registration and queue entry it made.
 */
export class SseConnection<M extends EventMapBase = EventMapBase> implements HeartbeatTarget {
  lastWriteAt = Date.now();
  private readonly transport: SseTransport;
  private readonly options: ConnectionOptions;
  private readonly hub: EventManager<M>;
  private subscription: Subscription<M> | undefined;
  private heartbeats: HeartbeatScheduler | undefined;
  private pending: string[] = [];
  private pendingBytes = 0;
  /** In the shared flush's set already: the per-event path skips the Set. */
  private scheduled = false;
  /**
   * The transport's buffered bytes as of the last write or drain. Between
   * writes it can only fall, so the bound checked against it is never too
   * lax, and the per-event path reads no stream state.
   */
  private bufferedAtWrite = 0;
  private readonly maxUnsentBytes: number;
  private blocked = false;
  private finished = false;
  private transportGone = false;

  constructor(hub: EventManager<M>, transport: SseTransport, options: ConnectionOptions) {
    this.hub = hub;
    this.transport = transport;
    this.options = options;
    this.maxUnsentBytes = options.maxUnsentBytes;
  }

  get isOpen(): boolean {
    return !this.finished;
  }

  /** Writes `retry:`, subscribes and registers for heartbeats. */
  start(): Subscription<M> | undefined {
    this.writeNow(formatEvent({ retry: this.options.retryMs }));
    if (this.hub.closed) {
      // Closed between admission and here: end cleanly, the client retries elsewhere.
      this.finish('hub_closed');
      return undefined;
    }
    this.subscription = this.hub.subscribe({
      streams: this.options.streams,
      types: this.options.types as (keyof M & string)[] | undefined,
      lastEventId: this.options.lastEventId,
      since: this.options.since,
      replay: this.options.replay,
      onEvent: (delivery) => this.enqueue(delivery),
      onClose: (reason) => this.finish(reason),
    });
    if (this.options.heartbeatMs > 0 && !this.finished) {
      this.heartbeats = this.hub.heartbeatScheduler(this.options.heartbeatMs);
      this.heartbeats.add(this);
    }
    return this.subscription;
  }

  /** The transport can take more: write what waited. */
  drained(): void {
    this.blocked = false;
    this.bufferedAtWrite = this.transport.bufferedBytes;
    if (this.pending.length > 0) this.flush();
  }

  /** The peer went away (socket closed, request aborted). */
  transportClosed(): void {
    this.transportGone = true;
    this.close('closed');
  }

  /** Ends the connection from the server side. */
  close(reason: CloseReason = 'closed'): void {
    if (this.subscription) this.subscription.close(reason);
    else this.finish(reason);
  }

  heartbeat(): void {
    if (this.finished || this.blocked) return;
    this.writeNow(HEARTBEAT);
  }

  /** @internal called by the shared flush */
  flush(): void {
    this.scheduled = false;
    if (this.finished || this.blocked || this.pending.length === 0) return;
    const chunk = chunkOf(this.pending);
    // Emptied in place: a new array per connection per tick is garbage the collector pays for at scale.
    this.pending.length = 0;
    this.pendingBytes = 0;
    this.writeNow(chunk);
  }

  private enqueue(delivery: Delivery): void {
    if (this.finished) return;
    this.pending.push(delivery.frame);
    const pendingBytes = (this.pendingBytes += delivery.bytes);
    if (pendingBytes + this.bufferedAtWrite > this.maxUnsentBytes) {
      // Cut off, counted by the hub; the client resumes from history with Last-Event-ID.
      this.subscription?.close('slow_consumer');
      return;
    }
    if (this.blocked) return;
    if (pendingBytes >= EAGER_FLUSH_BYTES) this.flush();
    else if (!this.scheduled) {
      this.scheduled = true;
      scheduleFlush(this);
    }
  }

  private writeNow(chunk: string | Uint8Array): void {
    this.lastWriteAt = flushClock || Date.now();
    if (!this.transport.write(chunk)) this.blocked = true;
    this.bufferedAtWrite = this.transport.bufferedBytes;
  }

  private finish(reason: CloseReason): void {
    if (this.finished) return;
    this.finished = true;
    dirty.delete(this);
    this.heartbeats?.delete(this);
    const unsent = this.pending;
    this.pending = [];
    this.pendingBytes = 0;
    if (!this.transportGone) {
      if (reason === 'hub_closed' || reason === 'closed' || reason === 'interrupted') {
        // A clean end delivers what was already accepted for this client.
        if (unsent.length > 0) this.transport.write(unsent.join(''));
        this.transport.end();
      } else this.transport.abort();
    }
    this.options.onClose?.(reason);
  }
}
