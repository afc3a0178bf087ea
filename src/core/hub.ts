import type { Backend, StoredEvent } from './backend.js';
import { assertEventName, dataLines, serializeData, utf8Length } from './encoder.js';
import { SsecastError } from './errors.js';
import { FlushScheduler } from './flush-scheduler.js';
import { HeartbeatScheduler } from './heartbeat.js';
import { reportFailure } from './report.js';
import { formatEventId, MAX_EVENT_ID_LENGTH, parseEventId } from './ids.js';
import { Subscription, type CloseReason, type Delivery, type SubscriptionOwner, type SubscriptionSink } from './subscription.js';
import { POSITION_EVENT, type EventMapBase, type PublishedEvent, type ResyncData, type ResyncEvent, type ResyncReason } from './types.js';
import { checkSchemas, EventValidationError, validatePayload, type EventSchemas, type StandardSchemaV1 } from './schema.js';
import { heartbeatEventName, nonNegativeInt, positiveInt } from './validate.js';

/** How long `close()` waits for accepted events to reach open streams. */
const CLOSE_DRAIN_MS = 2000;

/** Longest stream name accepted. Stream names come from query strings; keep them short. */
export const MAX_STREAM_NAME_LENGTH = 256;

// `any` by default, so options typed without an event map still fit a typed hub.
export interface HubOptions<M extends EventMapBase = any> {
  /** Where events are stored and how instances share them (`MemoryBackend`, `RedisBackend`, or your own). */
  backend: Backend;
  /** Events replayed per stream to a subscriber that has no Last-Event-ID. @defaultValue 10 */
  replay?: number;
  /** Idle time after which a connection gets a `:heartbeat` comment. @defaultValue 30000 */
  heartbeatMs?: number;
  /**
   * Send heartbeats as an event of this type (empty data, no `id:`, so they
   * never move a client's Last-Event-ID) instead of a `:heartbeat` comment,
   * which a browser's `EventSource` never shows a page. Adapters take it as
   * their default; their own `heartbeatEvent` option overrides it.
   * @defaultValue undefined (a comment)
   */
  heartbeatEvent?: string | undefined;
  /** Events an iterating subscriber (or one whose history is loading) may fall behind before it is cut off. @defaultValue 1000 */
  maxQueue?: number;
  /**
   * A Standard Schema validator (zod, valibot, arktype, …) per event type.
   * `publish` validates the payload first and rejects an invalid one with an
   * `EventValidationError` naming the type and the failing path; what is
   * stored and sent is the schema's output (its defaults and transforms
   * applied). With schemas, a type that has none is rejected too, unless
   * `allowUnvalidatedTypes`.
   * @defaultValue no validation
   */
  schemas?: EventSchemas<M>;
  /** With `schemas`, accept event types that have no schema, unvalidated. @defaultValue false */
  allowUnvalidatedTypes?: boolean;
  /**
   * The largest event accepted, in UTF-8 bytes of its `event:` and `data:`
   * lines. `publish` rejects a larger one (`ERR_EVENT_TOO_LARGE`) and stores
   * and sends nothing: one oversize event in history would otherwise cut off
   * every connection that replays it. An adapter refuses a `maxUnsentBytes`
   * that could not hold one such event.
   * @defaultValue 65536 (64 KiB)
   */
  maxEventBytes?: number;
  /**
   * Reports a failure that must not stop the hub: a subscriber's `onEvent`
   * or `onClose` that threw, a backend that failed to close. The subscriber
   * whose `onEvent` threw is ended (reason `error`); publish, the other
   * subscribers and `close()` carry on. Counted in `stats().hookErrors`.
   * @defaultValue logs with `console.error`
   */
  onError?: (error: unknown, context: HubErrorContext) => void;
}

/** The hub's settings, with their defaults applied. */
export interface HubSettings {
  replay: number;
  heartbeatMs: number;
  heartbeatEvent: string | undefined;
  maxQueue: number;
  maxEventBytes: number;
}

/** Where a failure reported to `onError` came from. */
export interface HubErrorContext {
  source: 'onEvent' | 'onClose' | 'onLive' | 'backend.read' | 'backend.close' | 'flush';
}

export interface PublishOptions {
  /**
   * Makes the event state: it supersedes every earlier event of the same
   * stream with the same key. Besides the stream's recent history, the
   * backend keeps the latest event of every key (bounded by
   * `maxKeysPerStream`), so a late joiner gets the current state however
   * long ago it was published, and a resume whose position was trimmed away
   * is brought up to date from it when every event it missed was keyed and
   * superseded (docs/resume.md, "Keyed events"). 1 to 256 characters.
   * @defaultValue none: the event is part of the stream's history only
   */
  key?: string | undefined;
}

/** Longest key accepted by `publish`. */
export const MAX_KEY_LENGTH = 256;

export interface SubscribeOptions<M extends EventMapBase = EventMapBase> {
  /** Streams to follow, or `'*'` for every stream. */
  streams: readonly string[] | '*';
  /** Resume after this id: exactly the later events of these streams, then live ones. */
  lastEventId?: string | undefined;
  /** Recent events per stream for a fresh subscriber. @defaultValue the hub's `replay` */
  replay?: number | undefined;
  /**
   * Instead of the `replay` most recent: every retained event of these streams
   * published at or after this time (a `Date`, epoch milliseconds or an ISO
   * 8601 string). Ignored when `lastEventId` is set: a reconnecting client
   * continues from its id. If history has lost events from that time, a
   * `resync` (reason `expired`) comes first.
   */
  since?: Date | number | string | undefined;
  /** Only these event types. @defaultValue every type */
  types?: readonly (keyof M & string)[] | undefined;
  /** @defaultValue the hub's `maxQueue` */
  maxQueue?: number | undefined;
  /**
   * Push mode: while history loads, hold live events up to this many bytes
   * instead of `maxQueue` events. Adapters pass their `maxUnsentBytes`, so a
   * burst during a slow history read (a Redis round trip) is bounded the way
   * the connection is, not cut off at 1000 events.
   */
  maxLoadingBytes?: number | undefined;
  /**
   * Push mode: called synchronously with every delivery (its frame is the
   * shared wire encoding). Adapters use this; a subscription with `onEvent`
   * cannot be iterated.
   */
  onEvent?: ((delivery: Delivery) => void) | undefined;
  /** Called once when the subscription ends, with the reason. */
  onClose?: ((reason: CloseReason) => void) | undefined;
  /**
   * Push mode: called once history (and what arrived while it loaded) has
   * been handed to `onEvent`; from then on only live events come. Adapters
   * hold history to the backend's bounds and live events to `maxUnsentBytes`.
   */
  onLive?: (() => void) | undefined;
}

export interface HubStats {
  /** Open subscriptions (each SSE connection is one). */
  connections: number;
  /** Streams with at least one subscriber (not counting `'*'`). */
  streams: number;
  /** Subscriptions following `'*'`. */
  wildcardConnections: number;
  /** Events accepted by `publish`. */
  published: number;
  /** Events handed to subscribers (one per subscriber per event). */
  delivered: number;
  /** Subscribers cut off for falling behind (slow consumers). */
  dropped: number;
  /** Resume requests answered with `resync`. */
  resyncs: number;
  /** Stream requests an HTTP handler refused before opening a stream (4xx/5xx: auth, limits, shutdown, bad requests). */
  rejected: number;
  /** Failures reported to `onError`: user callbacks that threw, history reads, backend teardown, flushes. */
  hookErrors: number;
  /** What the backend reports (retained streams, events and bytes for memory). */
  [backendStat: string]: number;
}

/**
 * The hub: publish to a stream, subscribe to streams, fan out.
 *
 * Fan-out touches only the subscribers of the event's stream (and `'*'`
 * subscribers), never every connection. Every event is encoded once.
 *
 * @example
 * type Events = { git_operation: { operation: string; progress: number } };
 * const hub = new Hub<Events>({ backend: new MemoryBackend() }); // or new EventManager<Events>()
 * await hub.publish('agent-1', 'git_operation', { operation: 'clone', progress: 45 });
 * for await (const event of hub.subscribe({ streams: ['agent-1'] })) console.log(event);
 */
export class Hub<M extends EventMapBase = EventMapBase> implements SubscriptionOwner {
  readonly options: Readonly<HubSettings>;
  readonly backend: Backend;
  private readonly opened: Promise<void>;
  private isOpen = false;
  private readonly byStream = new Map<string, Set<Subscription<M>>>();
  /** The shared stream set of the single-stream subscribers of each stream (see `streamSet`). */
  private readonly singleStreams = new Map<string, ReadonlySet<string>>();
  private readonly wildcard = new Set<Subscription<M>>();
  private readonly subscriptions = new Set<Subscription<M>>();
  private readonly heartbeats = new Map<number, HeartbeatScheduler>();
  private flusher: FlushScheduler | undefined;
  private counters = { published: 0, delivered: 0, dropped: 0, resyncs: 0, rejected: 0, hookErrors: 0 };
  private readonly onError: ((error: unknown, context: HubErrorContext) => void) | undefined;
  private isClosed = false;
  /** Appends in flight: `close()` lets them finish, since their publish will resolve as accepted. */
  private appending = 0;
  private appendsSettled: (() => void) | undefined;
  private closing: Promise<void> | undefined;
  private readonly schemas: ReadonlyMap<string, StandardSchemaV1> | undefined;
  private readonly allowUnvalidatedTypes: boolean;

  constructor(options: HubOptions<M>) {
    if (!options || typeof options.backend?.open !== 'function') {
      throw new TypeError(
        'Hub needs { backend }: a MemoryBackend, a RedisBackend or your own (EventManager wires a MemoryBackend for you)',
      );
    }
    this.schemas = checkSchemas(options.schemas);
    this.allowUnvalidatedTypes = options.allowUnvalidatedTypes === true;
    this.options = {
      replay: nonNegativeInt(options.replay ?? 10, 'replay'),
      heartbeatMs: nonNegativeInt(options.heartbeatMs ?? 30_000, 'heartbeatMs'),
      heartbeatEvent: options.heartbeatEvent === undefined ? undefined : heartbeatEventName(options.heartbeatEvent),
      maxQueue: nonNegativeInt(options.maxQueue ?? 1000, 'maxQueue'),
      maxEventBytes: positiveInt(options.maxEventBytes ?? 64 * 1024, 'maxEventBytes'),
    };
    if (options.onError !== undefined && typeof options.onError !== 'function') throw new TypeError('onError must be a function');
    this.onError = options.onError;
    this.backend = options.backend;
    this.opened = this.backend.open({
      deliver: (event) => this.fanOut(event),
      hasSubscribers: (stream) => this.byStream.has(stream),
      wants: (stream) => this.wildcard.size > 0 || this.byStream.has(stream),
      subscribedStreams: () => this.byStream.keys(),
      interrupt: () => {
        for (const subscription of [...this.subscriptions]) subscription.close('interrupted');
      },
    });
    // Surfaced by publish/subscribe; never an unhandled rejection on its own.
    this.opened.then(
      () => (this.isOpen = true),
      () => (this.isOpen = true),
    );
  }

  /**
   * @internal Until the backend has opened: resolves when it has (or failed to). A shared
   * backend's fan-out only reaches a subscription registered after it knows where it starts, so
   * the HTTP layer starts no response before. Undefined once open.
   */
  whenOpen(): Promise<unknown> | undefined {
    return this.isOpen ? undefined : this.opened.catch(() => {});
  }

  get closed(): boolean {
    return this.isClosed;
  }

  /**
   * Stores an event on `stream` and delivers it to that stream's subscribers.
   *
   * Rejects with a `TypeError` (`SseFormatError` for wire problems) for a bad
   * stream name, an event type with CR/LF/NUL or the reserved `resync`, or
   * data JSON cannot represent; with `EventValidationError` (a `TypeError`)
   * for a payload its schema rejects; with `SsecastError` when the hub is
   * closed or the backend fails. A rejected event is neither stored nor sent.
   */
  async publish<K extends keyof M & string>(
    stream: string,
    type: K,
    data: M[K],
    options?: PublishOptions,
  ): Promise<PublishedEvent<M[K], K>> {
    if (this.isClosed) throw new SsecastError('ERR_HUB_CLOSED', 'publish() on a closed EventManager');
    assertStreamName(stream);
    const key = options?.key;
    if (key !== undefined) assertKey(key);
    assertEventName(type);
    if (type === '' || type === 'resync' || type === POSITION_EVENT) {
      throw new TypeError(`event type ${JSON.stringify(type)} is ${type ? 'reserved for resume control events' : 'empty'}`);
    }
    if (this.schemas) data = (await this.validate(stream, type, data)) as M[K];
    const body = `event: ${type}\n${dataLines(serializeData(data))}`;
    const bytes = utf8Length(body);
    if (bytes > this.options.maxEventBytes) {
      throw new SsecastError(
        'ERR_EVENT_TOO_LARGE',
        `the ${type} event on ${JSON.stringify(stream)} is ${bytes} bytes encoded, over maxEventBytes (${this.options.maxEventBytes}); nothing was stored or sent`,
      );
    }
    await this.opened;
    if (this.isClosed) throw new SsecastError('ERR_HUB_CLOSED', 'publish() on a closed EventManager');
    let stored: StoredEvent;
    this.appending++;
    try {
      stored = await this.backend.append({ stream, type, data, timestamp: new Date().toISOString(), body, key });
    } catch (error) {
      if (error instanceof SsecastError) throw error;
      throw new SsecastError(
        'ERR_BACKEND',
        `the backend could not store the ${type} event on ${JSON.stringify(stream)}: ${(error as Error)?.message ?? String(error)}`,
        { cause: error },
      );
    } finally {
      if (--this.appending === 0) this.appendsSettled?.();
    }
    this.counters.published++;
    return stored.event as PublishedEvent<M[K], K>;
  }

  /**
   * Follows streams. Returns at once; history is read in the background and
   * delivered before any live event (`subscription.ready` tells when).
   *
   * With `lastEventId`, the subscriber gets exactly the events of its streams
   * published after that id, then live ones. An id that is malformed, from
   * another epoch, or older than the retained history first yields one
   * `resync` event, then the fresh-connect replay.
   */
  subscribe(options: SubscribeOptions<M>): Subscription<M> {
    return this.open(options, undefined);
  }

  /**
   * @internal Push mode for an adapter's connection: `sink`'s methods take
   * the deliveries, the end and the switch to live, as `onEvent`, `onClose`
   * and `onLive` would, without a closure per connection.
   */
  subscribeSink(options: Omit<SubscribeOptions<M>, 'onEvent' | 'onClose' | 'onLive'>, sink: SubscriptionSink): Subscription<M> {
    return this.open(options, sink);
  }

  private open(options: SubscribeOptions<M>, sink: SubscriptionSink | undefined): Subscription<M> {
    if (this.isClosed) throw new SsecastError('ERR_HUB_CLOSED', 'subscribe() on a closed EventManager');
    const streams = checkStreams(options.streams);
    const replay = nonNegativeInt(options.replay ?? this.options.replay, 'replay');
    const since = options.since === undefined ? undefined : toIsoTime(options.since);
    const types = options.types ? new Set<string>(options.types) : null;
    const maxQueue = nonNegativeInt(options.maxQueue ?? this.options.maxQueue, 'maxQueue');
    const maxLoadingBytes =
      options.maxLoadingBytes === undefined || !(sink || options.onEvent)
        ? undefined
        : nonNegativeInt(options.maxLoadingBytes, 'maxLoadingBytes');
    const subscription = new Subscription<M>(this, {
      streams: streams === '*' ? '*' : this.streamSet(streams),
      types,
      maxQueue,
      maxLoadingBytes,
      onEvent: options.onEvent,
      onClose: options.onClose,
      onLive: options.onLive,
      sink,
      joinedAt: this.backend.knownPosition?.(),
    });
    // Live first, history second: nothing published in between can be missed.
    this.subscriptions.add(subscription);
    if (streams === '*') this.wildcard.add(subscription);
    else
      for (const stream of subscription.streams as ReadonlySet<string>) {
        let set = this.byStream.get(stream);
        if (!set) this.byStream.set(stream, (set = new Set()));
        set.add(subscription);
      }
    void this.loadHistory(subscription, options.lastEventId, replay, since);
    return subscription;
  }

  /**
   * The streams of a subscription as a set. Most follow one stream, and theirs is one set per
   * stream, shared while the stream has subscribers: ten thousand connections on a stream would
   * otherwise hold ten thousand copies of the same one-entry set. It is read-only to them.
   */
  private streamSet(streams: readonly string[]): ReadonlySet<string> {
    if (streams.length !== 1) {
      const set = new Set(streams);
      if (set.size !== 1) return set;
    }
    const stream = streams[0] as string;
    let shared = this.singleStreams.get(stream);
    if (!shared) this.singleStreams.set(stream, (shared = new Set([stream])));
    return shared;
  }

  /** @internal an HTTP handler on this hub refused a stream request */
  countRejected(): void {
    this.counters.rejected++;
  }

  /** @internal a hook of an HTTP handler on this hub (`streams`, `authorize`, `clientKey`) threw */
  countHookError(): void {
    this.counters.hookErrors++;
  }

  /** Counters and gauges, cheap enough for every `/metrics` scrape. */
  stats(): HubStats {
    return {
      ...this.backend.stats(),
      connections: this.subscriptions.size,
      streams: this.byStream.size,
      wildcardConnections: this.wildcard.size,
      ...this.counters,
    };
  }

  /**
   * The heartbeat scheduler for an interval (the hub's `heartbeatMs` by
   * default): one timer per distinct interval, shared by every connection.
   */
  heartbeatScheduler(intervalMs = this.options.heartbeatMs): HeartbeatScheduler {
    let scheduler = this.heartbeats.get(intervalMs);
    if (!scheduler) this.heartbeats.set(intervalMs, (scheduler = new HeartbeatScheduler(intervalMs)));
    return scheduler;
  }

  /**
   * The hub's per-tick flush scheduler: the HTTP writer queues each
   * connection's events here and writes them as one chunk at the end of the
   * tick. Failures of a flush go to `onError` (source `flush`).
   */
  flushScheduler(): FlushScheduler {
    return (this.flusher ??= new FlushScheduler((error) => this.report(error, { source: 'flush' })));
  }

  /**
   * Ends every subscription (adapters end their responses) once what was
   * published has been delivered, stops timers, closes the backend. Called
   * again, it returns the same promise: every caller waits for the end.
   */
  close(): Promise<void> {
    if (!this.closing) {
      this.isClosed = true;
      this.closing = this.shutDown();
    }
    return this.closing;
  }

  private async shutDown(): Promise<void> {
    // What publish() accepted reaches the open streams before they end: appends
    // in flight finish, the backend's fan-out catches up, and histories still
    // loading are sent.
    // Bounded, so a backend that is away cannot hold close() up.
    const settled = this.appending === 0 ? Promise.resolve() : new Promise<void>((resolve) => (this.appendsSettled = resolve));
    const drained = Promise.all([this.opened, settled])
      .then(() => this.backend.flush?.())
      .then(() => Promise.all([...this.subscriptions].map((subscription) => subscription.ready)));
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([drained.catch(() => {}), new Promise((resolve) => (timer = setTimeout(resolve, CLOSE_DRAIN_MS)))]);
    clearTimeout(timer);
    // Each close is isolated (Subscription reports a throwing onClose): one bad hook cannot keep the others open.
    for (const subscription of [...this.subscriptions]) subscription.close('hub_closed');
    for (const scheduler of this.heartbeats.values()) scheduler.stop();
    this.heartbeats.clear();
    await this.opened.catch(() => {});
    try {
      await this.backend.close();
    } catch (error) {
      this.report(error, { source: 'backend.close' });
    }
  }

  /** @internal a subscriber's callback threw */
  hookFailed(error: unknown, hook: 'onEvent' | 'onClose' | 'onLive'): void {
    this.report(error, { source: hook });
  }

  private report(error: unknown, context: HubErrorContext): void {
    this.counters.hookErrors++;
    const onError = this.onError;
    reportFailure(onError && ((failure) => onError(failure, context)), `${context.source} failed`, error);
  }

  private validate(stream: string, type: string, data: unknown): unknown {
    const schema = (this.schemas as ReadonlyMap<string, StandardSchemaV1>).get(type);
    if (schema) return validatePayload(schema, type, stream, data);
    if (this.allowUnvalidatedTypes) return data;
    throw new EventValidationError(
      type,
      stream,
      [],
      `no schema for event type ${JSON.stringify(type)} (stream ${JSON.stringify(stream)}); add one to schemas, or set allowUnvalidatedTypes`,
    );
  }

  /** @internal */
  release(subscription: Subscription<M>, reason: CloseReason): void {
    if (!this.subscriptions.delete(subscription)) return;
    if (reason === 'slow_consumer') this.counters.dropped++;
    if (subscription.streams === '*') {
      this.wildcard.delete(subscription);
      return;
    }
    for (const stream of subscription.streams) {
      const set = this.byStream.get(stream);
      if (!set) continue;
      set.delete(subscription);
      if (set.size === 0) {
        this.byStream.delete(stream);
        this.singleStreams.delete(stream);
      }
    }
  }

  private fanOut(event: StoredEvent): void {
    let delivered = 0;
    // offer() isolates the subscriber's own callback, so one subscriber cannot cost another the event.
    const set = this.byStream.get(event.event.stream);
    if (set) for (const subscription of set) if (subscription.offer(event)) delivered++;
    for (const subscription of this.wildcard) if (subscription.offer(event)) delivered++;
    this.counters.delivered += delivered;
  }

  private async loadHistory(
    subscription: Subscription<M>,
    lastEventId: string | undefined,
    replay: number,
    since: string | undefined,
  ): Promise<void> {
    try {
      await this.opened;
      const resuming = lastEventId !== undefined && lastEventId !== '';
      const cursor = resuming ? parseEventId(lastEventId) : null;
      let resync: ResyncReason | undefined = resuming && !cursor ? 'unknown' : undefined;
      const streams = subscription.streams === '*' ? '*' : [...subscription.streams];
      const result = await this.backend.read({ streams, after: cursor, recent: replay, since: resuming ? undefined : since });
      resync ??= result.resync;
      if (resync) this.counters.resyncs++;
      // A resync moves the client's cursor to where its replay was read (or clears it), so the
      // next reconnect resumes normally instead of resyncing again on a quiet stream.
      const resumeAt = resync && result.position ? formatEventId(result.position.epoch, result.position.seq) : '';
      const notice = !resync
        ? undefined
        : resuming
          ? resyncDelivery({ reason: resync, lastEventId: echoId(lastEventId) }, resumeAt)
          : resyncDelivery({ reason: 'expired', since: since as string }, resumeAt);
      // The marker's frame is made by the subscription, only when its cursor needs it: a fresh
      // connection never does, and every connection would otherwise make one to throw away.
      const gapThrough = result.position ? result.gapThrough : undefined;
      // A shared backend's own fan-out may not have brought what the read saw yet: wait (bounded)
      // until it has, so the events published since this subscription registered are all held
      // for it, and none arrives after it went live at or below its read position.
      let behind = false;
      if (result.position && this.backend.caughtUp && !subscription.isClosed) {
        const reached = this.backend.caughtUp(result.position);
        behind = !(reached === true || (await reached));
      }
      this.counters.delivered += subscription.goLive(
        result.events,
        notice,
        resync || !cursor ? 0 : cursor.seq,
        gapThrough,
        result.position,
        behind,
      );
    } catch (error) {
      // The subscriber ends ('error') and resumes with its id; the operator hears why.
      if (!subscription.isClosed) this.report(error, { source: 'backend.read' });
      subscription.fail(error);
    }
  }
}

// Echo at most what an id can be; the rest of a hostile header stays out of the stream.
function echoId(lastEventId: string): string {
  return lastEventId.length > MAX_EVENT_ID_LENGTH ? lastEventId.slice(0, MAX_EVENT_ID_LENGTH) : lastEventId;
}

/** Normalises a `since` option to the ISO form timestamps are stored in, so they compare as text. */
export function toIsoTime(since: Date | number | string): string {
  const time = since instanceof Date ? since.getTime() : typeof since === 'number' ? since : Date.parse(since);
  if (typeof since === 'string' && !ISO_TIME.test(since)) {
    throw new TypeError(`since must be an ISO 8601 time such as 2026-01-31T12:00:00Z, got ${JSON.stringify(since.slice(0, 64))}`);
  }
  if (!Number.isFinite(time) || Math.abs(time) > 8.64e15) throw new TypeError(`since is not a valid time: ${String(since).slice(0, 64)}`);
  return new Date(time).toISOString();
}

// A date, optionally with a time and a zone: what Date.parse reads the same on every runtime.
const ISO_TIME = /^\d{4}-\d{2}-\d{2}(?:T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:Z|[+-]\d{2}:\d{2}))?$/;

function resyncDelivery(data: ResyncData, cursor: string): Delivery<ResyncEvent> {
  // formatEvent omits an empty id; an empty `id:` line is what resets a browser's Last-Event-ID.
  const frame = `event: resync\nid: ${cursor}\n${dataLines(serializeData(data))}\n`;
  return {
    event: { id: null, stream: null, type: 'resync', data, timestamp: new Date().toISOString() },
    frame,
    bytes: utf8Length(frame),
    cursor,
  };
}

function checkStreams(streams: readonly string[] | '*'): readonly string[] | '*' {
  if (streams === '*') return '*';
  if (!Array.isArray(streams) || streams.length === 0) {
    throw new TypeError("streams must be a non-empty array of stream names or '*'");
  }
  for (const stream of streams) assertStreamName(stream);
  return streams;
}

/** The one rule for stream names, shared by `publish`, `subscribe` and the adapters' 400. */
export function isValidStreamName(stream: unknown): stream is string {
  // Well-formed Unicode only: Redis stores UTF-8, where a lone surrogate becomes U+FFFD, so two
  // such names would share one history and the fan-out would name neither.
  return typeof stream === 'string' && stream.length > 0 && stream.length <= MAX_STREAM_NAME_LENGTH && !LONE_SURROGATE.test(stream);
}

function assertKey(key: unknown): asserts key is string {
  if (typeof key !== 'string' || key.length === 0 || key.length > MAX_KEY_LENGTH) {
    throw new TypeError(
      `key must be a non-empty string of at most ${MAX_KEY_LENGTH} characters, got ${typeof key === 'string' ? `${key.length} characters` : typeof key}`,
    );
  }
  // Redis stores UTF-8: two keys differing only in a lone surrogate would both become U+FFFD there and collide.
  if (LONE_SURROGATE.test(key)) throw new TypeError('key must be well-formed Unicode: it has a lone surrogate');
}

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

function assertStreamName(stream: unknown): asserts stream is string {
  if (!isValidStreamName(stream)) {
    if (typeof stream === 'string' && LONE_SURROGATE.test(stream)) {
      throw new TypeError('stream must be well-formed Unicode: it has a lone surrogate');
    }
    throw new TypeError(
      `stream must be a non-empty string of at most ${MAX_STREAM_NAME_LENGTH} characters, got ${typeof stream === 'string' ? `${stream.length} characters` : typeof stream}`,
    );
  }
}
