import type { StoredEvent } from './backend.js';
import { utf8Length } from './encoder.js';
import { formatEventId, type EventCursor } from './ids.js';
import { POSITION_EVENT } from './types.js';
import { SsecastError } from './errors.js';
import type { EventMapBase, PositionEvent, PublishedEvent, ResyncEvent, SubscriptionEvent } from './types.js';

/** An event on its way to one subscriber, with its wire bytes. */
export interface Delivery<E = PublishedEvent | ResyncEvent | PositionEvent> {
  event: E;
  /** The SSE frame, shared by every subscriber of the event: write it as it is. */
  frame: string;
  /** UTF-8 length of `frame`. */
  bytes: number;
  /**
   * The id this delivery moves the client's cursor to: the event's id, or for
   * a `resync` the position its replay was read at (empty: the cursor resets).
   */
  cursor?: string | undefined;
  /** A control frame (the position marker): written to the wire, never yielded by the iterator. */
  control?: true | undefined;
}

/** @internal the position marker the hub offers after a replay, and when it is needed */
export interface PositionMarker {
  delivery: Delivery<PositionEvent>;
  /** Its sequence number. */
  seq: number;
  /** Sent when the cursor the replay leaves the client is below this. */
  gapThrough: number;
}

/**
 * Why a subscription ended. `interrupted`: the backend lost continuity (a
 * Redis that lost its data, or an instance that missed part of the fan-out);
 * the subscriber resumes with its Last-Event-ID and gets an exact
 * continuation or a `resync`. `expired`: the principal's credentials ran
 * out (adapters end the stream cleanly; the client reconnects with fresh
 * credentials and its Last-Event-ID).
 */
export type CloseReason = 'closed' | 'slow_consumer' | 'hub_closed' | 'error' | 'interrupted' | 'expired';

/** @internal what the hub needs back from a subscription */
export interface SubscriptionOwner {
  release(subscription: Subscription<any>, reason: CloseReason): void;
  /** A user callback threw: the owner reports it; the subscription carries on or ends. */
  hookFailed(error: unknown, hook: 'onEvent' | 'onClose' | 'onLive'): void;
}

export interface SubscriptionInit {
  streams: ReadonlySet<string> | '*';
  types: ReadonlySet<string> | null;
  /** Events buffered in iterator mode (and while history loads) before the subscriber counts as slow. */
  maxQueue: number;
  /** Push mode: bound the live events held while history loads by their bytes instead of by `maxQueue`. */
  maxLoadingBytes?: number | undefined;
  onEvent?: ((delivery: Delivery) => void) | undefined;
  onClose?: ((reason: CloseReason) => void) | undefined;
  /** Push mode: called once history (and what arrived while it loaded) has been handed to `onEvent`. */
  onLive?: (() => void) | undefined;
}

/**
 * One subscriber. Either pushes each delivery to `onEvent` (what adapters
 * use: no promise per event) or queues them, bounded, for `for await`.
 *
 * Live events are accepted from the moment the subscription exists; while
 * history loads they wait in a bounded list, and everything is released in
 * sequence order with anything already delivered skipped, which is what makes
 * the switch from history to live free of gaps and duplicates.
 */
export class Subscription<M extends EventMapBase = EventMapBase> implements AsyncIterable<SubscriptionEvent<M>> {
  readonly streams: ReadonlySet<string> | '*';
  readonly types: ReadonlySet<string> | null;

  private readonly owner: SubscriptionOwner;
  private readonly maxQueue: number;
  private readonly maxLoadingBytes: number | undefined;
  private loadingBytes = 0;
  private readonly onEvent: ((delivery: Delivery) => void) | undefined;
  private readonly onClose: ((reason: CloseReason) => void) | undefined;
  private readonly onLive: (() => void) | undefined;
  private lastSeq = 0;
  /** The sequence number of the client's cursor after the last push: what its next resume would send. */
  private cursorSeq: number | undefined;
  /** Where history was read: everything of these streams up to it was delivered, filtered or left out of the replay on purpose. */
  private readAt: EventCursor | undefined;
  /** The cursor of the last event the consumer received (popped from the iterator, or pushed to onEvent). */
  private lastId: string | undefined;
  private loading: StoredEvent[] | null = [];
  // Only an iterating subscriber queues; a push subscriber (every HTTP connection) never allocates it.
  private queue: Delivery[] | undefined;
  private isLive = false;
  // Made on first use: ten thousand connections need not carry two promises each that nobody awaits.
  private readyPromise: Promise<void> | undefined;
  private closedPromise: Promise<CloseReason> | undefined;
  private waiter: ((result: IteratorResult<SubscriptionEvent<M>>) => void) | undefined;
  private waiterReject: ((error: unknown) => void) | undefined;
  private closeReason: CloseReason | undefined;
  private failure: unknown;
  private resolveReady: (() => void) | undefined;
  private resolveClosed: ((reason: CloseReason) => void) | undefined;

  /** @internal created by `EventManager.subscribe` */
  constructor(owner: SubscriptionOwner, init: SubscriptionInit) {
    this.owner = owner;
    this.streams = init.streams;
    this.types = init.types;
    this.maxQueue = init.maxQueue;
    this.maxLoadingBytes = init.maxLoadingBytes;
    this.onEvent = init.onEvent;
    this.onClose = init.onClose;
    this.onLive = init.onLive;
  }

  /** Resolves once history has been delivered and the subscription is live (or it ended first). */
  get ready(): Promise<void> {
    if (!this.readyPromise) {
      this.readyPromise = this.isLive || this.closeReason ? Promise.resolve() : new Promise((resolve) => (this.resolveReady = resolve));
    }
    return this.readyPromise;
  }

  /** Resolves with the reason when the subscription ends. */
  get closed(): Promise<CloseReason> {
    if (!this.closedPromise) {
      const reason = this.closeReason;
      this.closedPromise = reason ? Promise.resolve(reason) : new Promise((resolve) => (this.resolveClosed = resolve));
    }
    return this.closedPromise;
  }

  /**
   * The id of the last event the consumer received: what a client would send
   * as Last-Event-ID. For an iterator, events still queued do not count, so a
   * resume from it after a `break` or `ERR_SLOW_CONSUMER` misses nothing.
   */
  get lastEventId(): string | undefined {
    return this.lastId;
  }

  get isClosed(): boolean {
    return this.closeReason !== undefined;
  }

  /** Ends the subscription. Safe to call more than once. */
  close(reason: CloseReason = 'closed'): void {
    if (this.closeReason) return;
    this.closeReason = reason;
    this.loading = null;
    this.owner.release(this, reason);
    this.resolveReady?.();
    this.resolveClosed?.(reason);
    if (this.waiter) this.settleWaiter();
    if (this.onClose) {
      try {
        this.onClose(reason);
      } catch (error) {
        this.owner.hookFailed(error, 'onClose');
      }
    }
  }

  /** @internal a live event from the hub's fan-out */
  offer(event: StoredEvent): boolean {
    if (this.closeReason) return false;
    if (this.loading) {
      const full =
        this.maxLoadingBytes === undefined
          ? this.loading.length >= this.maxQueue
          : (this.loadingBytes += event.bytes) > this.maxLoadingBytes;
      if (full) {
        this.close('slow_consumer');
        return false;
      }
      this.loading.push(event);
      return false;
    }
    return this.deliver(event);
  }

  /** @internal history has been read: release it, then what arrived meanwhile */
  goLive(
    history: readonly StoredEvent[],
    resync: Delivery | undefined,
    after: number,
    marker?: PositionMarker,
    readAt?: EventCursor,
  ): number {
    if (this.closeReason) return 0;
    let delivered = 0;
    this.lastSeq = after;
    this.readAt = readAt;
    // A resuming client's cursor is its id; a resync moves it to where the replay was read.
    this.cursorSeq = after > 0 ? after : undefined;
    if (resync) {
      this.cursorSeq = readAt?.seq;
      this.push(resync);
    }
    if (this.closeReason) return 0;
    for (const event of history) if (this.deliver(event)) delivered++;
    // The replay left the client's cursor behind a loss (an old keyed event last, or newer ones
    // filtered out): move it to where the replay was read, or its next reconnect resyncs again.
    if (marker && this.cursorSeq !== undefined && this.cursorSeq < marker.gapThrough && !this.closeReason) {
      this.cursorSeq = marker.seq;
      this.push(marker.delivery);
      if (marker.seq > this.lastSeq) this.lastSeq = marker.seq;
    }
    const pending = this.loading ?? [];
    this.loading = null;
    for (const event of pending) if (this.deliver(event)) delivered++;
    this.isLive = true;
    this.resolveReady?.();
    if (this.onLive && !this.closeReason) {
      try {
        this.onLive();
      } catch (error) {
        this.owner.hookFailed(error, 'onLive');
      }
    }
    return delivered;
  }

  /**
   * @internal The position marker a clean end sends (a rotation, an expiry, a
   * shutdown), when the client's cursor is behind where this subscription
   * has got to: the read position, or the newest event offered since
   * (delivered or filtered out). Without it, a client with no id yet would
   * reconnect as a fresh one and miss what was published meanwhile, and a
   * `types` filter would leave it behind a trimmed history and resync.
   */
  endMarker(): Delivery<PositionEvent> | undefined {
    const readAt = this.readAt;
    if (!readAt) return undefined;
    const seq = Math.max(readAt.seq, this.lastSeq);
    if (this.cursorSeq !== undefined && this.cursorSeq >= seq) return undefined;
    return positionDelivery(formatEventId(readAt.epoch, seq));
  }

  /** @internal history could not be read */
  fail(error: unknown): void {
    if (this.closeReason) return;
    this.failure = error;
    this.close('error');
  }

  private deliver(event: StoredEvent): boolean {
    // A subscriber that closed itself from onEvent, in the middle of its history, gets no more.
    if (this.closeReason) return false;
    if (event.seq <= this.lastSeq) return false;
    this.lastSeq = event.seq;
    if (this.types && !this.types.has(event.event.type)) return false;
    this.cursorSeq = event.seq;
    return this.push(event);
  }

  private push(delivery: Delivery): boolean {
    if (this.onEvent) {
      try {
        this.onEvent(delivery);
      } catch (error) {
        // This subscriber could not take the event: it ends (and resumes from its cursor);
        // the publish and every other subscriber carry on.
        this.owner.hookFailed(error, 'onEvent');
        this.close('error');
        return false;
      }
      this.lastId = cursorOf(delivery, this.lastId);
      return !this.closeReason;
    }
    if (delivery.control && !this.queue?.length) {
      // The consumer has taken everything before it: the cursor moves now, with nothing to yield.
      this.lastId = cursorOf(delivery, this.lastId);
      return true;
    }
    if (this.waiter) {
      const resolve = this.waiter;
      this.waiter = undefined;
      this.waiterReject = undefined;
      this.lastId = cursorOf(delivery, this.lastId);
      resolve({ value: delivery.event as SubscriptionEvent<M>, done: false });
      return true;
    }
    const queue = (this.queue ??= []);
    // A control frame yields nothing and comes at most once per replay: it never makes a consumer slow.
    if (queue.length >= this.maxQueue && !delivery.control) {
      this.close('slow_consumer');
      return false;
    }
    queue.push(delivery);
    return true;
  }

  private settleWaiter(): void {
    const resolve = this.waiter;
    const reject = this.waiterReject;
    this.waiter = undefined;
    this.waiterReject = undefined;
    const error = this.terminalError();
    if (error) reject?.(error);
    else resolve?.({ value: undefined, done: true });
  }

  private terminalError(): Error | undefined {
    if (this.closeReason === 'slow_consumer') {
      return new SsecastError(
        'ERR_SLOW_CONSUMER',
        `subscriber fell more than ${this.maxQueue} events behind and was cut off; subscribe again with lastEventId ${JSON.stringify(this.lastId ?? null)} to resume`,
      );
    }
    if (this.closeReason === 'interrupted') {
      return new SsecastError(
        'ERR_BACKEND',
        `the backend lost continuity (Redis lost data or this instance missed events); subscribe again with lastEventId ${JSON.stringify(this.lastId ?? null)} to resume`,
      );
    }
    if (this.closeReason === 'error' && this.failure !== undefined) {
      return new SsecastError('ERR_BACKEND', 'the subscription could not read its history', { cause: this.failure });
    }
    return undefined;
  }

  [Symbol.asyncIterator](): AsyncIterator<SubscriptionEvent<M>> {
    if (this.onEvent) throw new TypeError('this subscription pushes to onEvent; it cannot also be iterated');
    return {
      next: () => {
        let delivery = this.queue?.shift();
        while (delivery?.control) {
          this.lastId = cursorOf(delivery, this.lastId);
          delivery = this.queue?.shift();
        }
        if (delivery) {
          this.lastId = cursorOf(delivery, this.lastId);
          // A control frame right behind it has nothing to yield: the consumer is past it too.
          while (this.queue?.[0]?.control) this.lastId = cursorOf(this.queue.shift() as Delivery, this.lastId);
          return Promise.resolve({ value: delivery.event as SubscriptionEvent<M>, done: false });
        }
        if (this.closeReason) {
          const error = this.terminalError();
          return error ? Promise.reject(error) : Promise.resolve({ value: undefined, done: true });
        }
        return new Promise((resolve, reject) => {
          this.waiter = resolve;
          this.waiterReject = reject;
        });
      },
      return: () => {
        this.close();
        return Promise.resolve({ value: undefined, done: true });
      },
    };
  }
}

/**
 * The position marker's frame (see `PositionEvent`): `event: ssecast-position`,
 * the cursor as its id, empty data. A control delivery: written to the wire,
 * never yielded by the iterator.
 */
export function positionDelivery(cursor: string): Delivery<PositionEvent> {
  const frame = `event: ${POSITION_EVENT}\nid: ${cursor}\ndata:\n\n`;
  const event: PositionEvent = { id: cursor, stream: null, type: POSITION_EVENT, data: '', timestamp: new Date().toISOString() };
  return { event, frame, bytes: utf8Length(frame), cursor, control: true };
}

/** Where a delivery leaves the consumer's cursor: stored events carry their id; a resync may move or reset it. */
function cursorOf(delivery: Delivery, previous: string | undefined): string | undefined {
  if (delivery.cursor !== undefined) return delivery.cursor === '' ? undefined : delivery.cursor;
  const id = (delivery.event as { id: string | null }).id;
  return id ?? previous;
}
