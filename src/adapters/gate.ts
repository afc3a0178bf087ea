import type { EventManager } from '../core/event-manager.js';
import type { EventMapBase } from '../core/types.js';
import { nonNegativeInt, positiveInt } from '../core/validate.js';
import type { ConnectionOptions } from './connection.js';
import type { CompressOption } from './compression.js';
import { reject, type Rejection } from './reject.js';
import { checkStreams, isRejection, parseRequestOptions } from './request-options.js';

export { reject, type Rejection } from './reject.js';

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
  /** Idle time before a `:heartbeat` comment; 0 disables. @defaultValue the hub's `heartbeatMs` (30000) */
  heartbeatMs?: number;
  /** Bytes a client may have unsent before it is cut off as a slow consumer. @defaultValue 1048576 (1 MiB) */
  maxUnsentBytes?: number;
  /** Events replayed per stream on a fresh connection. @defaultValue the hub's `replay` (10) */
  replay?: number;
  /**
   * Gzip the stream when the client's `Accept-Encoding` allows it, flushing
   * after every write so that no event waits in the compressor. Worth it for
   * verbose payloads: it saved 89 % of the bytes of command output in
   * `bench/compression.mjs`, for about 100 KiB of zlib state per connection
   * and twice the CPU per delivered event (each connection compresses its own
   * copy). `true` uses the {@link CompressOptions} defaults.
   * @defaultValue false
   */
  compress?: CompressOption;
  /**
   * Reports an exception thrown by a hook (`streams`, `authorize`); the
   * request gets a 500 with a generic message, never the exception's text.
   * @defaultValue logs with `console.error`
   */
  onError?: (error: unknown, req: Req) => void;
}

/** Bounds (inclusive, milliseconds) of a per-connection random `retry:` hint. */
export interface RetryRange {
  min: number;
  max: number;
}

/** The framework-neutral view of a request that the gate reads. */
export interface RequestView {
  method: string;
  url: URL;
  header(name: string): string | undefined;
}

export interface Admission {
  ok: true;
  connection: ConnectionOptions;
  principal: Principal | undefined;
  /** Gives back the principal's connection slot; call exactly once, when the connection ends. */
  release(): void;
}

/**
 * Decides what a request gets, in one place for every adapter: method,
 * streams, Last-Event-ID, authorization, connection limits. Holds the
 * per-principal connection counts of one handler.
 */
export class SseGate<Req, M extends EventMapBase = EventMapBase> {
  private readonly hub: EventManager<M>;
  private readonly options: SseHandlerOptions<Req>;
  private readonly perPrincipal = new Map<string, number>();
  private readonly maxPerPrincipal: number;
  private readonly maxStreams: number;
  private readonly retryMs: RetryRange;
  private readonly heartbeatMs: number;
  private readonly maxUnsentBytes: number;

  constructor(hub: EventManager<M>, options: SseHandlerOptions<Req> = {}) {
    this.hub = hub;
    this.options = options;
    this.maxPerPrincipal = positiveInt(options.maxConnectionsPerPrincipal ?? 10, 'maxConnectionsPerPrincipal');
    this.maxStreams = positiveInt(options.maxStreamsPerConnection ?? 50, 'maxStreamsPerConnection');
    this.retryMs = retryRange(options.retryMs ?? 3000);
    this.heartbeatMs = nonNegativeInt(options.heartbeatMs ?? hub.options.heartbeatMs, 'heartbeatMs');
    this.maxUnsentBytes = positiveInt(options.maxUnsentBytes ?? 1024 * 1024, 'maxUnsentBytes');
    if (options.replay !== undefined) nonNegativeInt(options.replay, 'replay');
  }

  /** Open connections counted against principals (for tests and metrics). */
  get principalConnections(): number {
    let total = 0;
    for (const count of this.perPrincipal.values()) total += count;
    return total;
  }

  async admit(req: Req, view: RequestView): Promise<Rejection | Admission> {
    if (view.method !== 'GET') return reject(405, `${view.method} is not allowed; open the stream with GET`, { allow: 'GET' });
    if (this.hub.closed) return reject(503, 'the event hub is shutting down');

    const requestOptions = parseRequestOptions(view.url, view.header);
    if (isRejection(requestOptions)) return requestOptions;

    let requested: readonly string[] | '*';
    let principal: Principal | null | undefined;
    let expiresAt: number | undefined;
    try {
      requested = this.options.streams ? await this.options.streams(req) : view.url.searchParams.getAll('stream');
      if (this.options.authorize) {
        principal = await this.options.authorize(req);
        if (!principal) return reject(401, 'authentication required');
        expiresAt = expiryOf(principal);
      }
    } catch (error) {
      this.report(error, req);
      return reject(500, 'the stream could not be opened');
    }

    if (expiresAt !== undefined && expiresAt <= Date.now()) return reject(401, 'the credentials have expired; sign in again');
    const streams = checkStreams(requested, this.maxStreams);
    if (isRejection(streams)) return streams;

    if (principal) {
      const forbidden = firstForbidden(streams, principal.streams);
      if (forbidden !== undefined) return reject(403, forbidden === '*' ? 'not allowed to read every stream' : `not allowed to read stream ${JSON.stringify(forbidden)}`);
      const open = this.perPrincipal.get(principal.id) ?? 0;
      if (open >= this.maxPerPrincipal) {
        return reject(429, `at most ${this.maxPerPrincipal} open streams per user; close one first`, { 'retry-after': '5' });
      }
      this.perPrincipal.set(principal.id, open + 1);
    }

    let released = false;
    const id = principal?.id;
    return {
      ok: true,
      principal: principal ?? undefined,
      connection: {
        streams,
        lastEventId: requestOptions.lastEventId,
        types: requestOptions.types,
        since: requestOptions.since,
        replay: this.options.replay,
        retryMs: drawRetry(this.retryMs),
        heartbeatMs: this.heartbeatMs,
        maxUnsentBytes: this.maxUnsentBytes,
        expiresAt,
      },
      release: () => {
        if (released || id === undefined) return;
        released = true;
        const left = (this.perPrincipal.get(id) ?? 1) - 1;
        if (left <= 0) this.perPrincipal.delete(id);
        else this.perPrincipal.set(id, left);
      },
    };
  }

  /** Reports an error through `onError`, which must not itself take the server down. */
  report(error: unknown, req: Req): void {
    try {
      if (this.options.onError) this.options.onError(error, req);
      else console.error('[ssecast] hook failed:', error);
    } catch (secondary) {
      console.error('[ssecast] onError threw while reporting:', secondary, 'original:', error);
    }
  }
}

function expiryOf(principal: Principal): number | undefined {
  const { expiresAt } = principal;
  if (expiresAt === undefined) return undefined;
  const time = expiresAt instanceof Date ? expiresAt.getTime() : expiresAt;
  // A bad value is a bug in authorize(): reported, and the request gets a 500 rather than a stream that never expires.
  if (typeof time !== 'number' || Number.isNaN(time)) throw new TypeError(`principal.expiresAt must be a Date or epoch milliseconds, got ${String(expiresAt)}`);
  return time;
}

function retryRange(option: number | RetryRange): RetryRange {
  if (typeof option === 'number') {
    const ms = nonNegativeInt(option, 'retryMs');
    return { min: ms, max: ms };
  }
  if (typeof option !== 'object' || option === null) throw new TypeError(`retryMs must be a number of milliseconds or { min, max }, got ${String(option)}`);
  const min = nonNegativeInt(option.min, 'retryMs.min');
  const max = nonNegativeInt(option.max, 'retryMs.max');
  if (min > max) throw new TypeError(`retryMs.min (${min}) must not exceed retryMs.max (${max})`);
  return { min, max };
}

function drawRetry({ min, max }: RetryRange): number {
  return min === max ? min : min + Math.floor(Math.random() * (max - min + 1));
}

function firstForbidden(streams: readonly string[] | '*', allowed: readonly string[] | '*'): string | undefined {
  if (allowed === '*') return undefined;
  if (streams === '*') return '*';
  const set = new Set(allowed);
  return streams.find((stream) => !set.has(stream));
}
