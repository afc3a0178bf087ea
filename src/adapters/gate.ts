import { isValidStreamName, MAX_STREAM_NAME_LENGTH, type EventManager } from '../core/event-manager.js';
import type { EventMapBase } from '../core/types.js';
import { nonNegativeInt, positiveInt } from '../core/validate.js';
import type { ConnectionOptions } from './connection.js';

/** Who is asking, and which streams they may read. */
export interface Principal {
  id: string;
  streams: readonly string[] | '*';
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
  /** The `retry:` reconnection hint sent first on every stream. @defaultValue 3000 */
  retryMs?: number;
  /** Idle time before a `:heartbeat` comment; 0 disables. @defaultValue the hub's `heartbeatMs` (30000) */
  heartbeatMs?: number;
  /** Bytes a client may have unsent before it is cut off as a slow consumer. @defaultValue 1048576 (1 MiB) */
  maxUnsentBytes?: number;
  /** Events replayed per stream on a fresh connection. @defaultValue the hub's `replay` (10) */
  replay?: number;
  /**
   * Reports an exception thrown by a hook (`streams`, `authorize`); the
   * request gets a 500 with a generic message, never the exception's text.
   * @defaultValue logs with `console.error`
   */
  onError?: (error: unknown, req: Req) => void;
}

/** The framework-neutral view of a request that the gate reads. */
export interface RequestView {
  method: string;
  url: URL;
  header(name: string): string | undefined;
}

export interface Rejection {
  ok: false;
  status: 400 | 401 | 403 | 405 | 429 | 500 | 503;
  body: { error: string; message: string };
  headers?: Record<string, string>;
}

export interface Admission {
  ok: true;
  connection: ConnectionOptions;
  principal: Principal | undefined;
  /** Gives back the principal's connection slot; call exactly once, when the connection ends. */
  release(): void;
}

/** A Last-Event-ID longer than this is not an id that anyone issued: 400. */
export const MAX_LAST_EVENT_ID_HEADER = 1024;

const STATUS_ERROR = {
  400: 'bad_request',
  401: 'unauthorized',
  403: 'forbidden',
  405: 'method_not_allowed',
  429: 'too_many_connections',
  500: 'internal_error',
  503: 'unavailable',
} as const;

export function reject(status: Rejection['status'], message: string, headers?: Record<string, string>): Rejection {
  return { ok: false, status, body: { error: STATUS_ERROR[status], message }, ...(headers ? { headers } : {}) };
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
  private readonly retryMs: number;
  private readonly heartbeatMs: number;
  private readonly maxUnsentBytes: number;

  constructor(hub: EventManager<M>, options: SseHandlerOptions<Req> = {}) {
    this.hub = hub;
    this.options = options;
    this.maxPerPrincipal = positiveInt(options.maxConnectionsPerPrincipal ?? 10, 'maxConnectionsPerPrincipal');
    this.maxStreams = positiveInt(options.maxStreamsPerConnection ?? 50, 'maxStreamsPerConnection');
    this.retryMs = nonNegativeInt(options.retryMs ?? 3000, 'retryMs');
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

    // An empty header is what a polyfill sends before it has an id: fall back to the query.
    const lastEventId = view.header('last-event-id') || view.url.searchParams.get('lastEventId') || undefined;
    if (lastEventId !== undefined && lastEventId.length > MAX_LAST_EVENT_ID_HEADER) {
      return reject(400, `Last-Event-ID is longer than ${MAX_LAST_EVENT_ID_HEADER} characters`);
    }

    let requested: readonly string[] | '*';
    let principal: Principal | null | undefined;
    try {
      requested = this.options.streams ? await this.options.streams(req) : view.url.searchParams.getAll('stream');
      if (this.options.authorize) {
        principal = await this.options.authorize(req);
        if (!principal) return reject(401, 'authentication required');
      }
    } catch (error) {
      this.report(error, req);
      return reject(500, 'the stream could not be opened');
    }

    const streams = this.checkStreams(requested);
    if (!Array.isArray(streams) && streams !== '*') return streams as Rejection;

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
        lastEventId,
        replay: this.options.replay,
        retryMs: this.retryMs,
        heartbeatMs: this.heartbeatMs,
        maxUnsentBytes: this.maxUnsentBytes,
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

  private checkStreams(requested: unknown): readonly string[] | '*' | Rejection {
    if (requested === '*') return '*';
    if (!Array.isArray(requested)) return reject(400, "streams must be a list of stream names or '*'");
    const unique = [...new Set(requested)];
    if (unique.length === 0) return reject(400, 'no stream requested; add ?stream=<name>');
    if (unique.length > this.maxStreams) return reject(400, `at most ${this.maxStreams} streams per connection, got ${unique.length}`);
    if (!unique.every(isValidStreamName)) return reject(400, `stream names must be 1 to ${MAX_STREAM_NAME_LENGTH} characters`);
    return unique as string[];
  }
}

function firstForbidden(streams: readonly string[] | '*', allowed: readonly string[] | '*'): string | undefined {
  if (allowed === '*') return undefined;
  if (streams === '*') return '*';
  const set = new Set(allowed);
  return streams.find((stream) => !set.has(stream));
}
