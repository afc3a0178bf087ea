import type { Hub } from '../core/hub.js';
import type { EventMapBase } from '../core/types.js';
import { reportFailure } from '../core/report.js';
import { heartbeatEventName, nonNegativeInt, positiveInt } from '../core/validate.js';
import { UnsentBudget } from './budget.js';
import type { ConnectionOptions } from './connection.js';
import type { CompressOption } from './compression.js';
import { reject, type Rejection } from './reject.js';
import { checkStreams, isRejection, parseRequestOptions } from './request-options.js';

export { reject, type Rejection } from './reject.js';
export { UnsentBudget } from './budget.js';

/** Who is asking, and which streams they may read. */
export interface Principal {
  id: string;
  streams: readonly string[] | '*';
  /**
   * When the credentials behind this principal stop being valid (a JWT's
   * `exp`, as a `Date` or epoch milliseconds). The stream ends cleanly then,
   * and the client must come back with fresh credentials: the reconnect is
   * authorized again, and what it resumes is checked against the principal
   * it has then. An expired principal gets 401.
   * @defaultValue never
   */
  expiresAt?: Date | number | undefined;
}

/** Options every adapter accepts. `Req` is the framework's request object. */
export interface SseHandlerOptions<Req> {
  /**
   * The streams a request follows.
   * @defaultValue every `stream` query parameter value
   */
  streams?: (req: Req) => readonly string[] | '*' | Promise<readonly string[] | '*'>;
  /**
   * Identifies the caller. Return null (401) when unauthenticated; a request
   * for a stream outside `principal.streams` gets 403.
   * @defaultValue none: every request is allowed and no per-principal limit applies
   */
  authorize?: (req: Req) => Principal | null | undefined | Promise<Principal | null | undefined>;
  /** Open connections per principal; one more gets 429. @defaultValue 10 */
  maxConnectionsPerPrincipal?: number;
  /**
   * Open connections of this handler in all; one more gets 503 with
   * `Retry-After`. `Infinity` lifts the cap.
   * @defaultValue 10000
   */
  maxConnections?: number;
  /**
   * Who an anonymous request (no `authorize` hook) comes from, for
   * `maxConnectionsPerClient`. Behind a proxy or load balancer every request
   * comes from the proxy's address: return the client's own address (from
   * a header your proxy sets and strips from requests) or a session id.
   * Return undefined to count a request against no client.
   * @defaultValue the peer's IP address (the fetch adapter has none: no per-client limit)
   */
  clientKey?: (req: Req) => string | undefined;
  /** Open anonymous connections per `clientKey`; one more gets 429. `Infinity` lifts it. @defaultValue 100 */
  maxConnectionsPerClient?: number;
  /**
   * Unsent bytes of every connection of this handler together (queued live
   * events, and what a full transport buffers; history not written yet is
   * not counted). Past it, the connections that are behind (a full transport
   * and 64 KiB or more unsent) are cut off as slow consumers, largest first,
   * when an event arrives or a request comes; a new request gets 503 only
   * when none can be. A crowd of slow readers cannot grow the process's
   * memory without bound even when each stays under `maxUnsentBytes`.
   * @defaultValue 268435456 (256 MiB)
   */
  maxTotalUnsentBytes?: number;
  /** Streams one connection may follow; more gets 400. @defaultValue 50 */
  maxStreamsPerConnection?: number;
  /**
   * The `retry:` reconnection hint sent first on every stream, in
   * milliseconds. A range `{ min, max }` draws a value per connection,
   * uniformly, so that clients dropped together (a deploy, a crash) do not
   * all come back in the same second.
   * @defaultValue 3000
   */
  retryMs?: number | RetryRange;
  /** Idle time before a heartbeat; 0 disables. @defaultValue the hub's `heartbeatMs` (30000) */
  heartbeatMs?: number;
  /**
   * Send heartbeats as an event of this type, `event: <name>` with an empty
   * `data:` line and no `id:`, instead of a `:heartbeat` comment. A browser
   * never shows a page a comment; an event it dispatches (with data `""`), so
   * a page can tell a quiet stream from a dead one with
   * `source.addEventListener(name, …)`. Having no id, it never moves the
   * browser's `lastEventId`. Not empty, not `message`, `error`, `open`, `resync` or `ssecast-position`, no CR, LF
   * or NUL. `false` sends the comment even when the hub names an event.
   * @defaultValue the hub's `heartbeatEvent` (none: a `:heartbeat` comment)
   * @see https://html.spec.whatwg.org/multipage/server-sent-events.html#dispatchMessage
   */
  heartbeatEvent?: string | false;
  /**
   * Ends each stream cleanly once it has been open this long, the way a hub
   * shutdown does: what was accepted for the client is sent, then the
   * response ends, and the client reconnects (after its `retry:`) with its
   * Last-Event-ID and misses nothing. It spreads long-lived connections over
   * instances added since they opened, and ends a response before a proxy,
   * load balancer or serverless platform that caps response duration cuts
   * it. A range `{ min, max }` draws an age per connection, uniformly, so
   * connections opened together do not all come back together. A connection
   * still sending its history when its age passes ends once that is sent.
   * Positive integers of milliseconds.
   * @defaultValue undefined (connections are not rotated)
   */
  maxConnectionAgeMs?: number | MsRange;
  /** Bytes a client may have unsent before it is cut off as a slow consumer. @defaultValue 1048576 (1 MiB) */
  maxUnsentBytes?: number;
  /** Events replayed per stream on a fresh connection. @defaultValue the hub's `replay` (10) */
  replay?: number;
  /**
   * Gzip the stream when the client's `Accept-Encoding` allows it, flushing
   * after every write so that no event waits in the compressor. Worth it for
   * verbose payloads such as command output; it costs zlib state per
   * connection and CPU per delivered event, since each connection compresses
   * its own copy (figures: docs/adapters.md, Compression). `true` uses the
   * {@link CompressOptions} defaults.
   * @defaultValue false
   */
  compress?: CompressOption;
  /**
   * Reports an exception thrown by a hook (`streams`, `authorize`,
   * `clientKey`; the request gets a 500 with a generic message, never the
   * exception's text) or by the transport while writing or tearing a stream
   * down (the stream ends; the others carry on).
   * @defaultValue logs with `console.error`
   */
  onError?: (error: unknown, req: Req) => void;
}

/** Bounds (inclusive, milliseconds) of a value drawn per connection: a `retry:` hint, a connection's age. */
export interface MsRange {
  min: number;
  max: number;
}

/** Bounds (inclusive, milliseconds) of a per-connection random `retry:` hint. */
export type RetryRange = MsRange;

/** The framework-neutral view of a request that the gate reads. */
export interface RequestView {
  method: string;
  /** The request target as received: origin form (`/events?stream=a`) or absolute. Parsed by the gate. */
  target: string;
  header(name: string): string | undefined;
  /** The peer's address, when the transport knows it. */
  remoteAddress?: string | undefined;
  /** True once the client has gone (checked after every await, so nothing is held for a client that left). */
  gone(): boolean;
}

/** The client left while the request was being admitted: nothing was taken, nothing is to be sent. */
export interface Gone {
  ok: false;
  gone: true;
}

export interface Admission {
  ok: true;
  connection: ConnectionOptions;
  principal: Principal | undefined;
  /** Gives back the connection's slots; call exactly once, when the connection ends. */
  release(): void;
}

const GONE: Gone = Object.freeze({ ok: false, gone: true });

/**
 * Decides what a request gets, in one place for every adapter: method,
 * streams, Last-Event-ID, authorization, connection limits. Holds the
 * per-principal connection counts of one handler.
 */
export class SseGate<Req, M extends EventMapBase = EventMapBase> {
  private readonly hub: Hub<M>;
  private readonly options: SseHandlerOptions<Req>;
  private readonly perPrincipal = new Map<string, number>();
  private readonly perClient = new Map<string, number>();
  private open = 0;
  private readonly maxPerPrincipal: number;
  private readonly maxPerClient: number;
  private readonly maxConnections: number;
  readonly budget: UnsentBudget;
  private readonly maxStreams: number;
  private readonly retryMs: MsRange;
  /** @internal */
  readonly heartbeatMs: number;
  /** @internal */
  readonly heartbeatEvent: string | undefined;
  private readonly maxAgeMs: MsRange | undefined;
  /** @internal */
  readonly maxUnsentBytes: number;

  constructor(hub: Hub<M>, options: SseHandlerOptions<Req> = {}) {
    this.hub = hub;
    this.options = options;
    this.maxPerPrincipal = positiveInt(options.maxConnectionsPerPrincipal ?? 10, 'maxConnectionsPerPrincipal');
    this.maxStreams = positiveInt(options.maxStreamsPerConnection ?? 50, 'maxStreamsPerConnection');
    this.retryMs = msRange(options.retryMs ?? 3000, 'retryMs', nonNegativeInt);
    this.heartbeatMs = nonNegativeInt(options.heartbeatMs ?? hub.options.heartbeatMs, 'heartbeatMs');
    const heartbeatEvent = options.heartbeatEvent;
    this.heartbeatEvent =
      heartbeatEvent === undefined ? hub.options.heartbeatEvent : heartbeatEvent === false ? undefined : heartbeatEventName(heartbeatEvent);
    this.maxAgeMs =
      options.maxConnectionAgeMs === undefined ? undefined : msRange(options.maxConnectionAgeMs, 'maxConnectionAgeMs', positiveInt);
    this.maxUnsentBytes = positiveInt(options.maxUnsentBytes ?? 1024 * 1024, 'maxUnsentBytes');
    this.maxConnections = limit(options.maxConnections ?? 10_000, 'maxConnections');
    this.maxPerClient = limit(options.maxConnectionsPerClient ?? 100, 'maxConnectionsPerClient');
    this.budget = new UnsentBudget(limit(options.maxTotalUnsentBytes ?? 256 * 1024 * 1024, 'maxTotalUnsentBytes'));
    if (options.replay !== undefined) nonNegativeInt(options.replay, 'replay');
    // One event must fit what a connection may hold unsent (with its id and retry lines), or
    // every connection that gets it would be cut off at once, over and over.
    const needed = hub.options.maxEventBytes + FRAME_OVERHEAD;
    if (this.maxUnsentBytes < needed) {
      throw new TypeError(
        `maxUnsentBytes (${this.maxUnsentBytes}) must hold one event of the hub's maxEventBytes (${hub.options.maxEventBytes}) plus its id line: at least ${needed}`,
      );
    }
  }

  /** Open connections counted against principals (for tests and metrics). */
  get principalConnections(): number {
    let total = 0;
    for (const count of this.perPrincipal.values()) total += count;
    return total;
  }

  async admit(req: Req, view: RequestView): Promise<Rejection | Admission | Gone> {
    const outcome = await this.decide(req, view);
    // Counted here, once per refused request, so every adapter's refusals show in hub.stats().
    // A client that left while its hooks ran (GONE) was not refused.
    if (outcome !== GONE && isRejection(outcome)) this.hub.countRejected();
    return outcome;
  }

  private async decide(req: Req, view: RequestView): Promise<Rejection | Admission | Gone> {
    if (view.method !== 'GET')
      return reject(405, `${String(view.method).slice(0, 32)} is not allowed; open the stream with GET`, { allow: 'GET' });
    const unavailable = this.unavailable();
    if (unavailable) return unavailable;
    // Over the total budget: the connections that are behind go first; only when none can, a new
    // stream (which would only add to it) is refused.
    if (!this.budget.shed()) return reject(503, 'the server is holding too much unsent data; try again shortly', { 'retry-after': '10' });

    let url: URL;
    try {
      url = new URL(view.target, 'http://localhost');
    } catch {
      return reject(400, 'the request target could not be parsed as a URL');
    }
    const requestOptions = parseRequestOptions(url, view);
    if (isRejection(requestOptions)) return requestOptions;

    let requested: readonly string[] | '*';
    let principal: Principal | null | undefined;
    let expiresAt: number | undefined;
    let client: string | undefined;
    try {
      requested = this.options.streams ? await this.options.streams(req) : url.searchParams.getAll('stream');
      if (view.gone()) return GONE;
      if (this.options.authorize) {
        principal = await this.options.authorize(req);
        if (view.gone()) return GONE;
        if (!principal) return reject(401, 'authentication required');
        checkPrincipal(principal);
        expiresAt = expiryOf(principal);
      } else {
        // Without a limit per client there is nothing to count: node:http would cache the peer's
        // address on the socket for nothing.
        client = this.options.clientKey ? this.options.clientKey(req) : this.maxPerClient === Infinity ? undefined : view.remoteAddress;
        if (client !== undefined && typeof client !== 'string')
          throw new TypeError(`clientKey must return a string or undefined, got ${typeof client}`);
      }
    } catch (error) {
      this.hub.countHookError();
      this.report(error, req);
      // A client that left while the hook ran gets no answer, and is not a refusal either.
      if (view.gone()) return GONE;
      return reject(500, 'the stream could not be opened');
    }
    // A hub still opening (Redis: its fan-out not yet positioned) would miss what is published
    // before it is: the response starts once it has.
    const opening = this.hub.whenOpen();
    if (opening) {
      await opening;
      if (view.gone()) return GONE;
    }
    // Hooks may have taken a while: the hub and the cap are checked again before a slot is taken.
    const unavailableNow = this.unavailable();
    if (unavailableNow) return unavailableNow;

    if (expiresAt !== undefined && expiresAt <= Date.now()) return reject(401, 'the credentials have expired; sign in again');
    const streams = checkStreams(requested, this.maxStreams);
    if (isRejection(streams)) return streams;

    let counts: Map<string, number> | undefined;
    let key: string | undefined;
    if (principal) {
      const forbidden = firstForbidden(streams, principal.streams);
      if (forbidden !== undefined)
        return reject(
          403,
          forbidden === '*' ? 'not allowed to read every stream' : `not allowed to read stream ${JSON.stringify(forbidden)}`,
        );
      const open = this.perPrincipal.get(principal.id) ?? 0;
      if (open >= this.maxPerPrincipal) {
        return reject(429, `at most ${this.maxPerPrincipal} open streams per user; close one first`, { 'retry-after': '5' });
      }
      counts = this.perPrincipal;
      key = principal.id;
    } else if (client !== undefined) {
      const open = this.perClient.get(client) ?? 0;
      if (open >= this.maxPerClient) {
        return reject(429, `at most ${this.maxPerClient} open streams per client; close one first`, { 'retry-after': '5' });
      }
      counts = this.perClient;
      key = client;
    }
    if (counts && key !== undefined) counts.set(key, (counts.get(key) ?? 0) + 1);
    this.open++;

    const ticket = new Ticket(this, principal ?? undefined, counts, key);
    ticket.streams = streams;
    ticket.lastEventId = requestOptions.lastEventId;
    ticket.types = requestOptions.types;
    ticket.since = requestOptions.since;
    ticket.retryMs = draw(this.retryMs);
    ticket.maxAgeMs = this.maxAgeMs && draw(this.maxAgeMs);
    ticket.expiresAt = expiresAt;
    return ticket;
  }

  /** @internal the handler's `replay`, read when a connection subscribes */
  get replay(): number | undefined {
    return this.options.replay;
  }

  /** @internal a ticket gives its slots back */
  released(counts: Map<string, number> | undefined, key: string | undefined): void {
    this.open--;
    if (!counts || key === undefined) return;
    const left = (counts.get(key) ?? 1) - 1;
    if (left <= 0) counts.delete(key);
    else counts.set(key, left);
  }

  /** The 503 for a hub that is closing or a handler at `maxConnections`, or undefined. */
  private unavailable(): Rejection | undefined {
    if (this.hub.closed) return reject(503, 'the event hub is shutting down', { 'retry-after': '5' });
    if (this.open >= this.maxConnections)
      return reject(503, 'too many open streams on this server; try again shortly', { 'retry-after': '10' });
    return undefined;
  }

  /** Reports an error through `onError`, which must not itself take the server down. */
  report(error: unknown, req: Req): void {
    const onError = this.options.onError;
    reportFailure(onError && ((failure) => onError(failure, req)), 'hook failed', error);
  }
}

/**
 * An admitted request: what its connection is opened with, and its slots until `release()`.
 * A class, so that the release is a method and not a closure kept per connection.
 */
class Ticket implements Admission, ConnectionOptions {
  readonly principal: Principal | undefined;
  private readonly gate: SseGate<any, any>;
  private readonly counts: Map<string, number> | undefined;
  private readonly key: string | undefined;
  private done = false;
  // What differs per connection; the rest is the handler's (the getters below).
  streams: readonly string[] | '*' = '*';
  lastEventId: string | undefined = undefined;
  types: readonly string[] | undefined = undefined;
  since: string | undefined = undefined;
  retryMs = 0;
  maxAgeMs: number | undefined = undefined;
  expiresAt: number | undefined = undefined;

  constructor(gate: SseGate<any, any>, principal: Principal | undefined, counts: Map<string, number> | undefined, key: string | undefined) {
    this.gate = gate;
    this.principal = principal;
    this.counts = counts;
    this.key = key;
  }

  get ok(): true {
    return true;
  }

  /** An admission is its own connection options: one object per connection, not two. */
  get connection(): ConnectionOptions {
    return this;
  }

  get replay(): number | undefined {
    return this.gate.replay;
  }

  get heartbeatMs(): number {
    return this.gate.heartbeatMs;
  }

  get heartbeatEvent(): string | undefined {
    return this.gate.heartbeatEvent;
  }

  get maxUnsentBytes(): number {
    return this.gate.maxUnsentBytes;
  }

  get budget(): UnsentBudget | undefined {
    return this.gate.budget;
  }

  release(): void {
    if (this.done) return;
    this.done = true;
    this.gate.released(this.counts, this.key);
  }
}

/** id line (`id: ` + the longest id + LF) and the `retry:` line a connection sends first. */
const FRAME_OVERHEAD = 128;

/** A positive integer, or Infinity for no limit. */
function limit(value: number, name: string): number {
  return value === Infinity ? value : positiveInt(value, name);
}

export function isGone(outcome: Rejection | Admission | Gone): outcome is Gone {
  return (outcome as Gone).gone === true;
}

/**
 * A principal from authorize() is trusted for access, so a malformed one is a bug to report (500),
 * not something to guess at: a single string for `streams` would read as its characters, and an
 * id that is not a string would escape the per-principal count.
 */
function checkPrincipal(principal: Principal): void {
  if (typeof principal !== 'object') throw new TypeError(`authorize must return a principal object or null, got ${typeof principal}`);
  if (typeof principal.id !== 'string' || principal.id === '') throw new TypeError('principal.id must be a non-empty string');
  const { streams } = principal;
  if (streams !== '*' && !(Array.isArray(streams) && streams.every((stream) => typeof stream === 'string'))) {
    throw new TypeError(
      `principal.streams must be '*' or an array of stream names, got ${typeof streams === 'string' ? JSON.stringify(streams) : typeof streams}`,
    );
  }
}

function expiryOf(principal: Principal): number | undefined {
  const { expiresAt } = principal;
  if (expiresAt === undefined) return undefined;
  const time = expiresAt instanceof Date ? expiresAt.getTime() : expiresAt;
  // A bad value is a bug in authorize(): reported, and the request gets a 500 rather than a stream that never expires.
  if (typeof time !== 'number' || Number.isNaN(time))
    throw new TypeError(`principal.expiresAt must be a Date or epoch milliseconds, got ${String(expiresAt)}`);
  return time;
}

/** A number of milliseconds, or `{ min, max }` to draw from per connection; `int` checks each bound. */
function msRange(option: unknown, name: string, int: (value: number, name: string) => number): MsRange {
  if (typeof option === 'number') {
    const ms = int(option, name);
    return { min: ms, max: ms };
  }
  if (typeof option !== 'object' || option === null)
    throw new TypeError(`${name} must be a number of milliseconds or { min, max }, got ${String(option)}`);
  const min = int((option as MsRange).min, `${name}.min`);
  const max = int((option as MsRange).max, `${name}.max`);
  if (min > max) throw new TypeError(`${name}.min (${min}) must not exceed ${name}.max (${max})`);
  return { min, max };
}

function draw({ min, max }: MsRange): number {
  return min === max ? min : min + Math.floor(Math.random() * (max - min + 1));
}

function firstForbidden(streams: readonly string[] | '*', allowed: readonly string[] | '*'): string | undefined {
  if (allowed === '*') return undefined;
  if (streams === '*') return '*';
  const set = new Set(allowed);
  return streams.find((stream) => !set.has(stream));
}
