import { formatEvent } from '../core/encoder.js';
import type { Hub } from '../core/hub.js';
import type { HeartbeatScheduler, HeartbeatTarget } from '../core/heartbeat.js';
import type { CloseReason, Delivery, Subscription, SubscriptionSink } from '../core/subscription.js';
import type { FlushScheduler } from '../core/flush-scheduler.js';
import { reportFailure } from '../core/report.js';
import type { EventMapBase } from '../core/types.js';
import { BEHIND_BYTES, type BudgetHolder, type UnsentBudget } from './budget.js';

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
  /**
   * True when `end()` hands everything over and nothing can tear the
   * response down later (a closed fetch body is the runtime's): no grace
   * timer is kept for it.
   */
  readonly handsOverOnEnd?: boolean;
  /** Tears the response down at once (slow consumer, error). */
  abort(): void;
}

/**
 * Why a connection ended: the subscription's reasons, and `rotated` (it reached its
 * `maxConnectionAgeMs`; a clean end that the hub sees as `closed`).
 */
export type ConnectionCloseReason = CloseReason | 'rotated';

export interface ConnectionOptions {
  streams: readonly string[] | '*';
  types?: readonly string[] | undefined;
  lastEventId?: string | undefined;
  /** Replay from this ISO time instead of the most recent events. */
  since?: string | undefined;
  replay?: number | undefined;
  /** `retry:` sent first. */
  retryMs: number;
  /** Idle time before a heartbeat; 0 disables heartbeats. */
  heartbeatMs: number;
  /** Heartbeats are events of this type (empty data, no id) instead of `:heartbeat` comments. */
  heartbeatEvent?: string | undefined;
  /** The stream ends cleanly this many milliseconds after it starts (once its history is written). */
  maxAgeMs?: number | undefined;
  /** Unsent bytes (queued here plus buffered in the transport) past which the client is cut off. */
  maxUnsentBytes: number;
  /** Epoch milliseconds at which the principal's credentials expire: the stream ends then. */
  expiresAt?: number | undefined;
  /** Unsent bytes shared by a handler's connections (`maxTotalUnsentBytes`). */
  budget?: UnsentBudget | undefined;
}

/** Reports a transport failure to `onError`, or logs it; never throws. */
export function reportTransportFailure(onError: ((error: unknown) => void) | undefined, error: unknown): void {
  reportFailure(onError, 'stream transport failed', error);
}

/**
 * Who hears how a connection ends: an object with methods rather than two
 * callbacks, so that an adapter's per-connection state (its transport, say)
 * can be the owner and no closure is kept per connection.
 */
export interface ConnectionOwner {
  /** Called once when the connection is finished, whoever ended it. */
  connectionClosed?(reason: ConnectionCloseReason): void;
  /** A transport call threw: the connection ends and the error is reported here (see `reportTransportFailure`); must not throw. */
  connectionFailed?(error: unknown): void;
}

const HEARTBEAT = ':heartbeat\n\n';
const EXPIRED = ': credentials expired\n\n';
// setTimeout's limit (about 24.8 days): a later expiry re-arms.
const MAX_TIMER_MS = 2 ** 31 - 1;
// A clean end waits this long for the client to take what was queued, then tears down:
// a client that stopped reading must not hold server.close() (or zlib's memory) open.
const END_GRACE_MS = 5000;
// Past this many queued bytes a connection is flushed at once instead of at
// the end of the tick: a publisher in a tight loop must not grow the queue
// towards the slow-consumer bound while the socket is ready to take it.
const EAGER_FLUSH_BYTES = 64 * 1024;

/**
 * The frames queued for connections in a tick. The subscribers of a stream
 * are offered the same frames in the same order, so they share one batch:
 * each connection keeps only how many of its frames are its own (`taken`).
 * A connection whose frames differ (a `types` filter, several streams)
 * copies what it shares into a batch of its own. The chunk is joined and
 * UTF-8-encoded once per batch and length, and the same bytes are written to
 * every socket: fan-out to thousands of connections costs little more than
 * the writes themselves, and no connection holds a queue of its own.
 */
class FrameBatch {
  readonly frames: string[];
  private encodedLength = 0;
  private encoded: Uint8Array | undefined;

  constructor(frames: string[]) {
    this.frames = frames;
  }

  /** The first `count` frames as UTF-8 bytes, shared: never modify them. */
  chunk(count: number): Uint8Array {
    if (this.encoded && this.encodedLength === count) return this.encoded;
    const frames = this.frames;
    const text = count === 1 ? (frames[0] as string) : (count === frames.length ? frames : frames.slice(0, count)).join('');
    this.encoded = utf8.encode(text);
    this.encodedLength = count;
    return this.encoded;
  }
}

const utf8 = new TextEncoder();

/** The frames of `deliveries[from, to)` as one string. */
function framesOf(deliveries: readonly Delivery[], from: number, to: number): string {
  let text = '';
  for (let i = from; i < to; i++) text += (deliveries[i] as Delivery).frame;
  return text;
}

/** The history chunk encoded last, and the deliveries it is made of. */
let lastHistory: { deliveries: Delivery[]; bytes: Uint8Array } | undefined;

/**
 * The frames of `deliveries[from, to)` as UTF-8 bytes, shared with the last connection that wrote
 * the same deliveries: every fresh connection of a stream replays the same recent events until
 * the next publish, and writes the same bytes, as live events are written. A string each would
 * be flattened on the heap and copied into native memory per socket by node:http, which at ten
 * thousand connections opening shows in the process's RSS. One chunk (at most about 64 KiB) is
 * kept, with references to the events it holds.
 */
function historyChunk(deliveries: readonly Delivery[], from: number, to: number): Uint8Array {
  const last = lastHistory;
  if (last !== undefined && last.deliveries.length === to - from) {
    let same = true;
    for (let i = from; same && i < to; i++) same = last.deliveries[i - from] === deliveries[i];
    if (same) return last.bytes;
  }
  const bytes = utf8.encode(framesOf(deliveries, from, to));
  lastHistory = { deliveries: deliveries.slice(from, to), bytes };
  return bytes;
}

// The booleans of a connection, as bits of one field.
const SCHEDULED = 1;
const BLOCKED = 2;
const FINISHED = 4;
const TRANSPORT_GONE = 8;
const ROTATION_DUE = 16;
const ROTATING = 32;
const REPLAYING = 64;
const FLUSHING = 128;

/**
 * The history (replay or resume) not written yet, paced by the transport: written a chunk at a
 * time as the client takes it, so a large history is neither held to maxUnsentBytes (which
 * would cut off every new connection before its first byte) nor copied whole into the socket.
 * Live events wait in the batch behind it, held to maxUnsentBytes as usual.
 */
class Backlog {
  readonly deliveries: Delivery[] = [];
  /** The first delivery not written yet. */
  at = 0;
  /** Bytes not written yet. */
  bytes = 0;
}

/** The timers few connections have, and then only one or two of. */
class ConnectionTimers {
  deadline: ReturnType<typeof setTimeout> | undefined = undefined;
  rotateAt: number | undefined = undefined;
  endGrace: ReturnType<typeof setTimeout> | undefined = undefined;
}

const heartbeatFrames = new Map<string, string>();

/** A heartbeat's frame: the comment, or the named event, made once per name. */
function heartbeatFrame(event: string | undefined): string {
  if (event === undefined) return HEARTBEAT;
  let frame = heartbeatFrames.get(event);
  // An empty `data:` line, so that EventSource dispatches it (data ""); no `id:`, so that it never moves lastEventId.
  if (frame === undefined) heartbeatFrames.set(event, (frame = `event: ${event}\ndata:\n\n`));
  return frame;
}

/**
 * The one writer every adapter uses: sends `retry:` first, subscribes,
 * coalesces each tick's events into one write, honours backpressure, cuts
 * off a client past its unsent-bytes bound, keeps idle connections alive
 * with heartbeats and, when anything ends the connection, removes every
 * subscription, timer registration and queue entry it made.
 */
export class SseConnection<M extends EventMapBase = EventMapBase> implements HeartbeatTarget, BudgetHolder, SubscriptionSink {
  lastWriteAt = Date.now();
  private readonly transport: SseTransport;
  private readonly options: ConnectionOptions;
  private readonly owner: ConnectionOwner | undefined;
  private readonly hub: Hub<M>;
  private subscription: Subscription<M> | undefined = undefined;
  private heartbeats: HeartbeatScheduler | undefined = undefined;
  /** What is queued: the first `taken` frames of `batch`. */
  private batch: FrameBatch | undefined = undefined;
  private taken = 0;
  private pendingBytes = 0;
  /**
   * The transport's buffered bytes as of the last write or drain. Between
   * writes it can only fall, so the per-event path compares against it and
   * reads the stream's own count only when the bound seems crossed.
   */
  private bufferedAtWrite = 0;
  /** What this connection counts in the shared budget now. */
  private counted = 0;
  /** The booleans below, one bit each (SCHEDULED, …): ten thousand connections, eight fields fewer each. */
  private flags = REPLAYING;
  /** The history not written yet (see `Backlog`); none once it is. */
  private backlog: Backlog | undefined = undefined;
  /** Only for a connection that rotates, expires or is ending: its timers. */
  private timers: ConnectionTimers | undefined = undefined;

  constructor(hub: Hub<M>, transport: SseTransport, options: ConnectionOptions, owner?: ConnectionOwner) {
    this.hub = hub;
    this.transport = transport;
    this.options = options;
    this.owner = owner;
  }

  /** The hub's per-tick flush: events of one tick go out as one write per connection. */
  private get flusher(): FlushScheduler {
    return this.hub.flushScheduler();
  }

  private get maxUnsentBytes(): number {
    return this.options.maxUnsentBytes;
  }

  /** In the shared flush's set already: the per-event path skips the Set. */
  private get scheduled(): boolean {
    return (this.flags & SCHEDULED) !== 0;
  }
  private set scheduled(on: boolean) {
    this.flags = on ? this.flags | SCHEDULED : this.flags & ~SCHEDULED;
  }

  private get blocked(): boolean {
    return (this.flags & BLOCKED) !== 0;
  }
  private set blocked(on: boolean) {
    this.flags = on ? this.flags | BLOCKED : this.flags & ~BLOCKED;
  }

  private get finished(): boolean {
    return (this.flags & FINISHED) !== 0;
  }
  private set finished(on: boolean) {
    this.flags = on ? this.flags | FINISHED : this.flags & ~FINISHED;
  }

  private get transportGone(): boolean {
    return (this.flags & TRANSPORT_GONE) !== 0;
  }
  private set transportGone(on: boolean) {
    this.flags = on ? this.flags | TRANSPORT_GONE : this.flags & ~TRANSPORT_GONE;
  }

  /** The age has passed: the stream ends once its history is written. */
  private get rotationDue(): boolean {
    return (this.flags & ROTATION_DUE) !== 0;
  }
  private set rotationDue(on: boolean) {
    this.flags = on ? this.flags | ROTATION_DUE : this.flags & ~ROTATION_DUE;
  }

  /** close('rotated') is under way: the subscription reports it as `closed`. */
  private get rotating(): boolean {
    return (this.flags & ROTATING) !== 0;
  }
  private set rotating(on: boolean) {
    this.flags = on ? this.flags | ROTATING : this.flags & ~ROTATING;
  }

  /** History is being handed over: it goes to the backlog, not the batch. */
  private get replaying(): boolean {
    return (this.flags & REPLAYING) !== 0;
  }
  private set replaying(on: boolean) {
    this.flags = on ? this.flags | REPLAYING : this.flags & ~REPLAYING;
  }

  private get flushing(): boolean {
    return (this.flags & FLUSHING) !== 0;
  }
  private set flushing(on: boolean) {
    this.flags = on ? this.flags | FLUSHING : this.flags & ~FLUSHING;
  }

  /** One timer for the earlier of the credentials' expiry and the rotation; none when neither applies. */
  private get deadline(): ReturnType<typeof setTimeout> | undefined {
    return this.timers?.deadline;
  }
  private set deadline(timer: ReturnType<typeof setTimeout> | undefined) {
    if (timer !== undefined || this.timers) (this.timers ??= new ConnectionTimers()).deadline = timer;
  }

  /** Epoch milliseconds of the rotation, until the deadline timer has seen it pass. */
  private get rotateAt(): number | undefined {
    return this.timers?.rotateAt;
  }
  private set rotateAt(at: number | undefined) {
    if (at !== undefined || this.timers) (this.timers ??= new ConnectionTimers()).rotateAt = at;
  }

  /** A clean end's grace period (see END_GRACE_MS). */
  private get endGrace(): ReturnType<typeof setTimeout> | undefined {
    return this.timers?.endGrace;
  }
  private set endGrace(timer: ReturnType<typeof setTimeout> | undefined) {
    if (timer !== undefined || this.timers) (this.timers ??= new ConnectionTimers()).endGrace = timer;
  }

  get isOpen(): boolean {
    return !this.finished;
  }

  /** Writes `retry:`, subscribes and registers for heartbeats. */
  start(): Subscription<M> | undefined {
    this.writeNow(formatEvent({ retry: this.options.retryMs }));
    if (this.finished || this.transportGone) {
      this.finish('error');
      return undefined;
    }
    if (this.hub.closed) {
      // Closed between admission and here: end cleanly, the client retries elsewhere.
      this.finish('hub_closed');
      return undefined;
    }
    this.subscription = this.hub.subscribeSink(
      {
        streams: this.options.streams,
        types: this.options.types as (keyof M & string)[] | undefined,
        lastEventId: this.options.lastEventId,
        since: this.options.since,
        replay: this.options.replay,
        maxLoadingBytes: this.maxUnsentBytes,
      },
      this,
    );
    if (this.options.heartbeatMs > 0 && !this.finished) {
      this.heartbeats = this.hub.heartbeatScheduler(this.options.heartbeatMs);
      this.heartbeats.add(this);
    }
    if (this.options.maxAgeMs !== undefined) this.rotateAt = Date.now() + this.options.maxAgeMs;
    if (this.options.expiresAt !== undefined || this.rotateAt !== undefined) this.armDeadline();
    return this.subscription;
  }

  /** @internal SubscriptionSink: a delivery from the hub */
  receive(delivery: Delivery): void {
    this.enqueue(delivery);
  }

  /** @internal SubscriptionSink: the subscription ended, whoever ended it */
  subscriptionClosed(reason: CloseReason): void {
    this.finish(this.rotating && reason === 'closed' ? 'rotated' : reason);
  }

  /** @internal SubscriptionSink: history is written; only live events come now */
  subscriptionLive(): void {
    this.replaying = false;
    // Not from inside the hub's hand-over: the subscription is still switching to live.
    if (this.rotationDue) queueMicrotask(() => this.rotateIfCaughtUp());
  }

  /** The transport can take more: write what waited. */
  drained(): void {
    if (this.finished) return;
    this.blocked = false;
    this.bufferedAtWrite = this.readBuffered();
    if (this.taken > 0 || this.backlog) this.flush();
    else this.account();
  }

  /** The peer went away (socket closed, request aborted). */
  transportClosed(): void {
    this.transportGone = true;
    clearTimeout(this.endGrace);
    this.close('closed');
  }

  /** Ends the connection from the server side. */
  close(reason: ConnectionCloseReason = 'closed'): void {
    if (reason === 'rotated') this.rotating = true;
    if (this.subscription) this.subscription.close(reason === 'rotated' ? 'closed' : reason);
    else this.finish(reason);
  }

  /**
   * Ends the stream when the credentials run out (at once) or the connection reaches its age (once
   * its history is written), whichever comes first. Re-armed for what is left, so an expiry past
   * setTimeout's limit, or after the rotation, still comes.
   */
  private armDeadline(): void {
    this.deadline = undefined;
    if (this.finished) return;
    const now = Date.now();
    const { expiresAt } = this.options;
    if (expiresAt !== undefined && expiresAt <= now) return this.close('expired');
    if (this.rotateAt !== undefined && this.rotateAt <= now) {
      this.rotateAt = undefined;
      this.rotationDue = true;
      this.rotateIfCaughtUp();
      if (this.finished) return;
    }
    const next = Math.min(expiresAt ?? Infinity, this.rotateAt ?? Infinity);
    if (next === Infinity) return;
    this.deadline = setTimeout(() => this.armDeadline(), Math.min(next - now, MAX_TIMER_MS));
    // The open response holds the process anyway; finish() clears the timer on every close path.
    this.deadline.unref?.();
  }

  /**
   * Rotates once the history is written: a clean end in the middle of it drops what does not fit
   * maxUnsentBytes, the reconnect reads that again, and a history longer than one age allows
   * would be read over and over.
   */
  private rotateIfCaughtUp(): void {
    if (this.rotationDue && !this.finished && !this.replaying && !this.backlog) this.close('rotated');
  }

  heartbeat(): void {
    if (this.finished || this.blocked) return;
    this.writeNow(heartbeatFrame(this.options.heartbeatEvent));
    this.account();
  }

  /** @internal called by the shared flush */
  flush(): void {
    this.scheduled = false;
    // A transport may call drained() from inside write() (a fetch body read at once): the flush
    // in progress carries on, and a nested one would write the same backlog chunk twice.
    if (this.finished || this.blocked || this.flushing) return;
    this.flushing = true;
    try {
      if (this.backlog) {
        if (!this.writeBacklog()) return;
        if (this.rotationDue) queueMicrotask(() => this.rotateIfCaughtUp());
      }
      if (this.taken === 0) return;
      const chunk = (this.batch as FrameBatch).chunk(this.taken);
      this.batch = undefined;
      this.taken = 0;
      this.pendingBytes = 0;
      this.writeNow(chunk);
      this.account();
    } finally {
      this.flushing = false;
    }
  }

  /** Writes the backlog a chunk at a time while the transport takes it; true once it is all written. */
  private writeBacklog(): boolean {
    const backlog = this.backlog as Backlog;
    const deliveries = backlog.deliveries;
    while (backlog.at < deliveries.length) {
      let bytes = 0;
      const start = backlog.at;
      while (backlog.at < deliveries.length && bytes < EAGER_FLUSH_BYTES) bytes += (deliveries[backlog.at++] as Delivery).bytes;
      backlog.bytes -= bytes;
      this.writeNow(historyChunk(deliveries, start, backlog.at));
      this.account();
      if (this.blocked || this.finished || this.transportGone) return false;
    }
    this.backlog = undefined;
    return true;
  }

  private enqueue(delivery: Delivery): void {
    if (this.finished) return;
    if (this.replaying) return this.enqueueHistory(delivery);
    this.queue(delivery.frame);
    const pendingBytes = (this.pendingBytes += delivery.bytes);
    if (pendingBytes + this.bufferedAtWrite > this.maxUnsentBytes) {
      // The count from the last write may be stale (node:http corks a response until the next
      // tick, so right after a write it holds the whole chunk): read it again before judging.
      this.bufferedAtWrite = this.readBuffered();
      if (pendingBytes + this.bufferedAtWrite > this.maxUnsentBytes) {
        // Cut off, counted by the hub; the client resumes from history with Last-Event-ID.
        this.subscription?.close('slow_consumer');
        return;
      }
    }
    if (this.overBudget()) return;
    if (this.blocked) return;
    if (pendingBytes >= EAGER_FLUSH_BYTES) this.flush();
    else this.schedule();
  }

  private enqueueHistory(delivery: Delivery): void {
    const backlog = (this.backlog ??= new Backlog());
    backlog.deliveries.push(delivery);
    backlog.bytes += delivery.bytes;
    if (this.overBudget()) return;
    if (!this.blocked) this.schedule();
  }

  /**
   * Over the handler's total budget, the connections that are behind go, largest first (this one
   * too if it is among them): true if this one went.
   */
  private overBudget(): boolean {
    const budget = this.options.budget;
    if (!budget) return false;
    this.account();
    if (!budget.exceeded) return false;
    budget.shed();
    return this.finished;
  }

  /** @internal BudgetHolder */
  budgetShare(): number {
    return this.counted;
  }

  /** @internal BudgetHolder: its transport is full and it holds 64 KiB or more (a fast reader with a burst queued is not behind). */
  isBehind(): boolean {
    return !this.finished && this.blocked && this.counted >= BEHIND_BYTES;
  }

  /** @internal BudgetHolder */
  shed(): void {
    this.subscription?.close('slow_consumer');
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    this.flusher.schedule(this);
  }

  /** Adds a frame to this connection's queue, sharing a batch with the connections that got the same frames. */
  private queue(frame: string): void {
    const batch = this.batch;
    const taken = this.taken;
    if (batch === undefined) {
      // Nothing queued: the other subscribers of this frame's stream likely just started a batch with it.
      // The batch started last in this tick (the hub's flush scheduler keeps it for the tick).
      const open = this.flusher.tickShared as FrameBatch | undefined;
      if (open !== undefined && open.frames[0] === frame) this.batch = open;
      else this.batch = this.flusher.tickShared = new FrameBatch([frame]);
    } else if (batch.frames.length === taken) batch.frames.push(frame);
    else if (batch.frames[taken] !== frame) this.batch = new FrameBatch([...batch.frames.slice(0, taken), frame]);
    this.taken = taken + 1;
  }

  private writeNow(chunk: string | Uint8Array): void {
    if (this.transportGone) return;
    this.lastWriteAt = this.flusher.clock || Date.now();
    let accepted: boolean;
    try {
      accepted = this.transport.write(chunk);
    } catch (error) {
      // A transport that throws (a destroyed TLS socket, a closed body) is gone for this client.
      return this.transportFailed(error);
    }
    if (!accepted) this.blocked = true;
    this.bufferedAtWrite = this.readBuffered();
  }

  private readBuffered(): number {
    try {
      const bytes = this.transport.bufferedBytes;
      return Number.isFinite(bytes) && bytes > 0 ? bytes : 0;
    } catch {
      return 0;
    }
  }

  /** Updates this connection's share of the handler's unsent-bytes budget. */
  private account(): void {
    const budget = this.options.budget;
    if (!budget) return;
    // What the transport holds counts only while it is over its high-water mark (blocked): below
    // it, the count from the last write goes stale as the socket drains, and would only inflate.
    // History not written yet is not counted: see UnsentBudget.
    const now = this.finished ? 0 : this.pendingBytes + (this.blocked ? this.bufferedAtWrite : 0);
    if (now === this.counted) return;
    budget.update(this, this.counted, now);
    this.counted = now;
  }

  private transportFailed(error: unknown): void {
    this.transportGone = true;
    this.report(error);
    // Deferred: a write can fail inside the hub's fan-out, which must finish its loop first.
    queueMicrotask(() => this.close('error'));
    this.safely(() => this.transport.abort());
  }

  private report(error: unknown): void {
    if (this.owner?.connectionFailed) this.owner.connectionFailed(error);
    else reportTransportFailure(undefined, error);
  }

  private safely(action: () => void): void {
    try {
      action();
    } catch (error) {
      this.report(error);
    }
  }

  private finish(reason: ConnectionCloseReason): void {
    if (this.finished) return;
    this.finished = true;
    this.flusher.cancel(this);
    this.heartbeats?.delete(this);
    clearTimeout(this.deadline);
    this.deadline = undefined;
    // What was accepted for this client is sent before a clean end, within what it may hold unsent:
    // a longer history is not copied into the socket at the end (the client resumes from its last
    // complete event), and the live events queued behind it wait for it too.
    let history = '';
    let deliverQueued = true;
    const backlog = this.backlog;
    if (backlog) {
      if (backlog.bytes + this.pendingBytes <= this.maxUnsentBytes)
        history = framesOf(backlog.deliveries, backlog.at, backlog.deliveries.length);
      else deliverQueued = false;
    }
    const unsent = this.taken > 0 && deliverQueued ? (this.batch as FrameBatch).chunk(this.taken) : undefined;
    // Everything accepted is going out: the client's cursor can move to where the subscription got
    // to, so a client with no id yet, or one whose types filter left it behind, resumes without a gap
    // or a resync. Not after an interruption: that client must resume from its own last event.
    const marker = deliverQueued && reason !== 'interrupted' ? this.subscription?.endMarker() : undefined;
    this.backlog = undefined;
    this.batch = undefined;
    this.taken = 0;
    this.pendingBytes = 0;
    this.account();
    if (!this.transportGone) {
      if (reason === 'hub_closed' || reason === 'closed' || reason === 'interrupted' || reason === 'expired' || reason === 'rotated') {
        // A clean end delivers what was already accepted for this client.
        this.safely(() => {
          if (history) this.transport.write(history);
          if (unsent) this.transport.write(unsent);
          if (marker) this.transport.write(marker.frame);
          if (reason === 'expired') this.transport.write(EXPIRED);
          this.transport.end();
        });
        if (!this.transport.handsOverOnEnd) {
          const grace = setTimeout(() => {
            if (!this.transportGone) this.safely(() => this.transport.abort());
          }, END_GRACE_MS);
          grace.unref?.();
          this.endGrace = grace;
        }
      } else this.safely(() => this.transport.abort());
    }
    const owner = this.owner;
    if (owner?.connectionClosed) this.safely(() => owner.connectionClosed?.(reason));
  }
}
