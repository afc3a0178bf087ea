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
  /** Push mode, instead of the three callbacks: one object that takes the deliveries (an HTTP connection). */
  sink?: SubscriptionSink | undefined;
  /** The backend's known position when the subscription joined (see `Backend.knownPosition`). */
  joinedAt?: EventCursor | undefined;
}

/**
 * @internal What a push subscription hands its deliveries to: the three
 * callbacks as methods of one object, so that an HTTP connection can take
 * them itself and no closure is kept per connection. Each is called as
 * `onEvent`, `onClose` and `onLive` would be, with the same isolation.
 */
export interface SubscriptionSink {
  receive(delivery: Delivery): void;
  subscriptionClosed(reason: CloseReason): void;
  subscriptionLive(): void;
}

/** Live events that arrive while history loads, and their bound; dropped once the subscription is live. */
class Loading {
  readonly events: StoredEvent[] = [];
  bytes = 0;
  /** Push mode: the bound in bytes; otherwise `maxEvents` events. */
  readonly maxBytes: number | undefined;
  readonly maxEvents: number;

  constructor(maxBytes: number | undefined, maxEvents: number) {
    this.maxBytes = maxBytes;
    this.maxEvents = maxEvents;
  }

  /** Holds an event; false when that would pass the bound. */
  hold(event: StoredEvent): boolean {
    const full = this.maxBytes === undefined ? this.events.length >= this.maxEvents : (this.bytes += event.bytes) > this.maxBytes;
    if (full) return false;
    this.events.push(event);
    return true;
  }
}

/**
 * What a subscription made by `subscribe()` needs besides `onEvent`: its `onClose` and `onLive`,
 * and for an iterator its queue and waiting consumer. An HTTP connection's subscription has a
 * sink instead and never makes one.
 */
class PublicState {
  queue: Delivery[] = [];
  waiter: ((result: IteratorResult<any>) => void) | undefined = undefined;
  waiterReject: ((error: unknown) => void) | undefined = undefined;
  readonly maxQueue: number;
  readonly onClose: ((reason: CloseReason) => void) | undefined;
  readonly onLive: (() => void) | undefined;

  constructor(init: SubscriptionInit) {
    this.maxQueue = init.maxQueue;
    this.onClose = init.onClose;
    this.onLive = init.onLive;
  }
}

/** The promises of `ready` and `closed`, and a history read's failure: made on first use, which most subscribers never have. */
class Settlement {
  ready: Promise<void> | undefined = undefined;
  resolveReady: (() => void) | undefined = undefined;
  closed: Promise<CloseReason> | undefined = undefined;
  resolveClosed: ((reason: CloseReason) => void) | undefined = undefined;
  failure: unknown = undefined;
}

/**
 * One subscriber. Either pushes each delivery to `onEvent` (what adapters
 * use: no promise per event) or queues them, bounded, for `for await`.
 *
 * Live events are accepted from the moment the subscription exists; while
 * history loads they wait in a bounded list, and everything is released in
 * sequence order with anything already delivered skipped, which is what makes
 * the switch from history to live free of gaps and duplicates.
 *
 * Ten thousand of these stay open on a busy server, so what only some need
 * (an iterator's queue, the promises, the list kept while history loads) is
 * kept in objects of its own, made only for those.
 */
export class Subscription<M extends EventMapBase = EventMapBase> implements AsyncIterable<SubscriptionEvent<M>> {
  readonly streams: ReadonlySet<string> | '*';
  readonly types: ReadonlySet<string> | null;

  private readonly owner: SubscriptionOwner;
  /** Push mode, an adapter's connection: where deliveries go. */
  private readonly sink: SubscriptionSink | undefined;
  /** Push mode, `subscribe({ onEvent })`: called as a method, with the subscription as `this`, as it always was. */
  private readonly onEvent: ((delivery: Delivery) => void) | undefined;
  /** Made by `subscribe()`: the other callbacks, and an iterator's queue. */
  private readonly state: PublicState | undefined;
  private lastSeq = 0;
  /** The sequence number of the client's cursor after the last push: what its next resume would send. */
  private cursorSeq: number | undefined = undefined;
  /** Where history was read (epoch and sequence number): everything of these streams up to it was delivered, filtered or left out of the replay on purpose. */
  private readEpoch: string | undefined = undefined;
  private readSeq = 0;
  /** The cursor of the last event the consumer received (popped from the iterator, or pushed to onEvent). */
  private lastId: string | undefined = undefined;
  /** Until history has been handed over: live events that arrived meanwhile. */
  private loading: Loading | null;
  private readonly joinedAt: EventCursor | undefined;
  private isLive = false;
  private closeReason: CloseReason | undefined = undefined;
  private settlement: Settlement | undefined = undefined;

  /** @internal created by `EventManager.subscribe` */
  constructor(owner: SubscriptionOwner, init: SubscriptionInit) {
    this.owner = owner;
    this.streams = init.streams;
    this.types = init.types;
    this.sink = init.sink;
    this.onEvent = init.sink ? undefined : init.onEvent;
    this.state = init.sink ? undefined : new PublicState(init);
    this.loading = new Loading(this.pushes ? init.maxLoadingBytes : undefined, init.maxQueue);
    this.joinedAt = init.joinedAt;
  }

  private get pushes(): boolean {
    return this.sink !== undefined || this.onEvent !== undefined;
  }

  /** Resolves once history has been delivered and the subscription is live (or it ended first). */
  get ready(): Promise<void> {
    const settlement = (this.settlement ??= new Settlement());
    if (!settlement.ready) {
      settlement.ready =
        this.isLive || this.closeReason ? Promise.resolve() : new Promise((resolve) => (settlement.resolveReady = resolve));
    }
    return settlement.ready;
  }

  /** Resolves with the reason when the subscription ends. */
  get closed(): Promise<CloseReason> {
    const settlement = (this.settlement ??= new Settlement());
    if (!settlement.closed) {
      const reason = this.closeReason;
      settlement.closed = reason ? Promise.resolve(reason) : new Promise((resolve) => (settlement.resolveClosed = resolve));
    }
    return settlement.closed;
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
    this.settlement?.resolveReady?.();
    this.settlement?.resolveClosed?.(reason);
    const state = this.state;
    if (state?.waiter) this.settleWaiter(state);
    if (this.sink || state?.onClose) {
      try {
        if (this.sink) this.sink.subscriptionClosed(reason);
        else state?.onClose?.call(this, reason);
      } catch (error) {
        this.owner.hookFailed(error, 'onClose');
      }
    }
  }

  /** @internal a live event from the hub's fan-out */
  offer(event: StoredEvent): boolean {
    if (this.closeReason) return false;
    if (this.loading) {
      if (!this.loading.hold(event)) this.close('slow_consumer');
      return false;
    }
    return this.deliver(event);
  }

  /**
   * @internal History has been read (at `readAt`): release it, then what arrived meanwhile. When
   * the cursor the replay leaves the client is below `gapThrough`, a position marker at `readAt`
   * follows the replay. `behind`: this instance's fan-out had not brought everything up to
   * `readAt` when the wait for it ran out, so events at or below it may still come.
   */
  goLive(
    history: readonly StoredEvent[],
    resync: Delivery | undefined,
    after: number,
    gapThrough?: number,
    readAt?: EventCursor,
    behind = false,
  ): number {
    if (this.closeReason) return 0;
    let delivered = 0;
    this.lastSeq = after;
    this.readEpoch = readAt?.epoch;
    // Behind, the read position is ahead of what this subscription can vouch for: no marker may claim it.
    this.readSeq = behind ? 0 : (readAt?.seq ?? 0);
    // A resuming client's cursor is its id; a resync moves it to where the replay was read.
    this.cursorSeq = after > 0 ? after : undefined;
    if (resync) {
      this.cursorSeq = readAt?.seq;
      this.push(resync);
    }
    if (this.closeReason) return 0;
    const pending = this.loading?.events ?? [];
    this.loading = null;
    // What the fan-out brought while history loaded may have been published after this
    // subscription joined, though the read saw it too (on Redis the reader can be behind the
    // read). Up to the read position it goes with the history, in sequence order: a replay
    // window smaller than the lag would otherwise skip it. Only what the backend knew of when
    // the subscription joined is certainly older, and stays out like the rest of the history.
    let next = 0;
    if (readAt) {
      const floor = this.joinedAt?.epoch === readAt.epoch ? this.joinedAt.seq : 0;
      for (const event of history) {
        for (; next < pending.length && (pending[next] as StoredEvent).seq < event.seq; next++)
          if ((pending[next] as StoredEvent).seq > floor && this.deliver(pending[next] as StoredEvent)) delivered++;
        if (this.deliver(event)) delivered++;
      }
      for (; next < pending.length && (pending[next] as StoredEvent).seq <= readAt.seq; next++)
        if ((pending[next] as StoredEvent).seq > floor && this.deliver(pending[next] as StoredEvent)) delivered++;
    } else for (const event of history) if (this.deliver(event)) delivered++;
    // The replay left the client's cursor behind a loss (an old keyed event last, or newer ones
    // filtered out): move it to where the replay was read, or its next reconnect resyncs again.
    if (!behind && gapThrough && readAt && this.cursorSeq !== undefined && this.cursorSeq < gapThrough && !this.closeReason) {
      this.cursorSeq = readAt.seq;
      this.push(positionDelivery(formatEventId(readAt.epoch, readAt.seq)));
      if (readAt.seq > this.lastSeq) this.lastSeq = readAt.seq;
    }
    for (; next < pending.length; next++) if (this.deliver(pending[next] as StoredEvent)) delivered++;
    // A fresh client the replay gave nothing (a quiet stream, replay: 0, a filter) has no id:
    // if this connection dropped before its first event, it would come back as a new client and
    // silently miss what was published meanwhile. The marker gives it the read position. Not on
    // a hub that has published nothing yet: there is nothing before it to miss.
    const position = Math.max(this.readSeq, this.lastSeq);
    if (this.cursorSeq === undefined && !this.closeReason && position > 0) {
      const marker = this.endMarker();
      if (marker) {
        // The client is now at the read position; the fan-out has brought everything up to it
        // (the hub waited), so what comes next is above it.
        this.cursorSeq = this.lastSeq = position;
        this.push(marker);
      }
    }
    this.isLive = true;
    this.settlement?.resolveReady?.();
    if ((this.sink || this.state?.onLive) && !this.closeReason) {
      try {
        if (this.sink) this.sink.subscriptionLive();
        else this.state?.onLive?.call(this);
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
    const epoch = this.readEpoch;
    if (epoch == null) return undefined;
    const seq = Math.max(this.readSeq, this.lastSeq);
    if (this.cursorSeq !== undefined && this.cursorSeq >= seq) return undefined;
    return positionDelivery(formatEventId(epoch, seq));
  }

  /** @internal history could not be read */
  fail(error: unknown): void {
    if (this.closeReason) return;
    (this.settlement ??= new Settlement()).failure = error;
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
    const sink = this.sink;
    if (sink !== undefined || this.onEvent !== undefined) {
      try {
        if (sink !== undefined) sink.receive(delivery);
        else this.onEvent!(delivery);
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
    const iterator = this.state as PublicState;
    if (delivery.control && !iterator.queue.length) {
      // The consumer has taken everything before it: the cursor moves now, with nothing to yield.
      this.lastId = cursorOf(delivery, this.lastId);
      return true;
    }
    if (iterator.waiter) {
      const resolve = iterator.waiter;
      iterator.waiter = undefined;
      iterator.waiterReject = undefined;
      this.lastId = cursorOf(delivery, this.lastId);
      resolve({ value: delivery.event as SubscriptionEvent<M>, done: false });
      return true;
    }
    // A control frame yields nothing and comes at most once per replay: it never makes a consumer slow.
    if (iterator.queue.length >= iterator.maxQueue && !delivery.control) {
      this.close('slow_consumer');
      return false;
    }
    iterator.queue.push(delivery);
    return true;
  }

  private settleWaiter(iterator: PublicState): void {
    const resolve = iterator.waiter;
    const reject = iterator.waiterReject;
    iterator.waiter = undefined;
    iterator.waiterReject = undefined;
    const error = this.terminalError();
    if (error) reject?.(error);
    else resolve?.({ value: undefined, done: true });
  }

  private terminalError(): Error | undefined {
    if (this.closeReason === 'slow_consumer') {
      return new SsecastError(
        'ERR_SLOW_CONSUMER',
        `subscriber fell more than ${this.state?.maxQueue} events behind and was cut off; subscribe again with lastEventId ${JSON.stringify(this.lastId ?? null)} to resume`,
      );
    }
    if (this.closeReason === 'interrupted') {
      return new SsecastError(
        'ERR_BACKEND',
        `the backend lost continuity (Redis lost data or this instance missed events); subscribe again with lastEventId ${JSON.stringify(this.lastId ?? null)} to resume`,
      );
    }
    const failure = this.settlement?.failure;
    if (this.closeReason === 'error' && failure !== undefined) {
      return new SsecastError('ERR_BACKEND', 'the subscription could not read its history', { cause: failure });
    }
    return undefined;
  }

  [Symbol.asyncIterator](): AsyncIterator<SubscriptionEvent<M>> {
    const iterator = this.state;
    if (!iterator || this.pushes) throw new TypeError('this subscription pushes to onEvent; it cannot also be iterated');
    return {
      next: () => {
        const queue = iterator.queue;
        let delivery = queue.shift();
        while (delivery?.control) {
          this.lastId = cursorOf(delivery, this.lastId);
          delivery = queue.shift();
        }
        if (delivery) {
          this.lastId = cursorOf(delivery, this.lastId);
          // A control frame right behind it has nothing to yield: the consumer is past it too.
          while (queue[0]?.control) this.lastId = cursorOf(queue.shift() as Delivery, this.lastId);
          return Promise.resolve({ value: delivery.event as SubscriptionEvent<M>, done: false });
        }
        if (this.closeReason) {
          const error = this.terminalError();
          return error ? Promise.reject(error) : Promise.resolve({ value: undefined, done: true });
        }
        return new Promise((resolve, reject) => {
          iterator.waiter = resolve;
          iterator.waiterReject = reject;
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
