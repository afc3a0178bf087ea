import type { EventMapBase, ResyncData } from '../core/types.js';
import { backoffDelay, checkBackoff, type Backoff, type BackoffOptions } from './backoff.js';
import { SseClientError } from './errors.js';
import { EventStreamParser, type ParsedEvent } from './parser.js';

/** `connecting` (first attempt), `open`, `reconnecting` (waiting or trying again), `closed` (for good). */
export type ClientStatus = 'connecting' | 'open' | 'reconnecting' | 'closed';

/** One event as the client received it. */
export interface ClientEvent<T = unknown, K extends string = string> {
  type: K;
  data: T;
  /**
   * The event's own `id:`; `undefined` when it has none or an empty one (a
   * `resync` with an empty id, which also resets `client.lastEventId`).
   */
  id: string | undefined;
}

/** What the server sends when it cannot continue from the client's id: refetch your state. */
export type ResyncEvent = ClientEvent<ResyncData, 'resync'>;

/** Every event an `EventMap` allows, plus the `resync` notice. */
export type ClientEventOf<M extends EventMapBase> = { [K in keyof M & string]: ClientEvent<M[K], K> }[keyof M & string] | ResyncEvent;

export type HeadersSource = HeadersInit | (() => HeadersInit | Promise<HeadersInit>);

/** What `onUnauthorized` is told about a 401. */
export interface UnauthorizedResponse {
  status: number;
  /** As on `SseClientError`: ssecast's message (such as "token expired"), or a neutral `HTTP 401 Unauthorized`. */
  serverMessage: string | undefined;
  /** The response headers, such as `WWW-Authenticate`. */
  headers: Headers;
}

export interface ClientOptions {
  /**
   * Request headers, such as `Authorization`. A function is called before
   * every connection attempt, so a reconnect can carry a refreshed token
   * (and a 401 can be retried with one: `onUnauthorized`).
   */
  headers?: HeadersSource | undefined;
  /**
   * Called on a 401: refresh the credentials that `headers` (or a cookie)
   * carries, and return `true` to try once more, at once, with `headers`
   * computed again; `false` (or a throw) closes the client with the 401.
   * `() => true` suits a `headers` function that refreshes by itself. A
   * second 401 before a connection proves healthy (see
   * `backoff.resetAfterMs`) closes the client without asking, so a token the
   * server keeps refusing cannot loop. A 403 is always final: the server
   * knows who you are and refuses.
   * @defaultValue none: a 401 closes the client
   */
  onUnauthorized?: ((response: UnauthorizedResponse) => boolean | Promise<boolean>) | undefined;
  /** Send cookies cross-origin (`credentials: 'include'`), as EventSource's `withCredentials`. @defaultValue false */
  withCredentials?: boolean | undefined;
  /** Closes the client when it aborts. */
  signal?: AbortSignal | undefined;
  /** The fetch to use (a polyfill, an instrumented one, a test double). @defaultValue globalThis.fetch */
  fetch?: typeof fetch | undefined;
  /**
   * Resume after this id on the first connection (sent as `Last-Event-ID`).
   * A `lastEventId` query parameter in `url` works too for ssecast servers;
   * the client drops it from later requests once the stream has set or reset
   * the id, so a reset is not undone by the URL.
   */
  lastEventId?: string | undefined;
  /**
   * Reconnect delays: exponential with full jitter, never under the server's
   * `retry:` or `Retry-After` (each capped at 10 × `maxMs`), starting over
   * once a connection proves healthy.
   */
  backoff?: BackoffOptions | undefined;
  /**
   * No byte for this long means the connection is stale (a silent proxy, a
   * dead network path): abort it and reconnect. Twice ssecast's default
   * heartbeat; `0` disables.
   * @defaultValue 60000
   */
  heartbeatTimeoutMs?: number | undefined;
  /**
   * The event type of the server's named heartbeats (the adapters'
   * `heartbeatEvent`). Events of this type are liveness only, like
   * `:heartbeat` comments: they keep the `heartbeatTimeoutMs` watchdog fed
   * and go to no listener or iterator (so an iterator yields only the
   * `EventMap`'s types, and `parse: 'json'` never sees their empty data).
   * Without it, a named heartbeat is an event like any other: listeners of
   * its type and iterators get it, with data `''` (`'auto'` and `'text'`;
   * `'json'` reports `ERR_PARSE` for it). It has no id either way, so it
   * never moves `lastEventId`.
   * @defaultValue none
   */
  heartbeatEvent?: string | undefined;
  /** The longest event data accepted, in UTF-16 code units (what the parser counts); a longer one closes the client with `ERR_EVENT_TOO_LARGE`. @defaultValue 4194304 */
  maxEventBytes?: number | undefined;
  /** Events an async iterator may hold unread before it fails with `ERR_SLOW_CONSUMER`. @defaultValue 1000 */
  maxQueue?: number | undefined;
  /**
   * How `data` becomes a payload. `auto`: JSON when it parses, else the text
   * (ssecast writes strings as they are, so a string payload such as `"42"`
   * comes back as the number 42: use `text` or a function for such types).
   * @defaultValue 'auto'
   */
  parse?: 'auto' | 'json' | 'text' | ((data: string, type: string) => unknown) | undefined;
}

type Listener = (event: ClientEvent) => void;

/** Why a connection ended: `retry` says whether to try again, `now` skips the backoff (a 401 with fresh credentials). */
interface Outcome {
  error?: SseClientError;
  retry?: boolean;
  retryAfterMs?: number;
  now?: boolean;
}

interface IteratorState {
  queue: ClientEvent[];
  /** The id of the last event this iterator took: where a resume after ERR_SLOW_CONSUMER starts. */
  consumed: string | undefined;
  wake: (() => void) | undefined;
  error: SseClientError | undefined;
  done: boolean;
}

// Retried: the server or the path may come back. Everything else is final: asking again will not help.
const RETRIED_STATUSES = new Set([408, 425, 429, 500, 502, 503, 504]);
/** The most of a refusal's body read: ssecast's JSON is far smaller; a text message worth showing, too. */
const MAX_JSON_BODY = 4096;
const MAX_TEXT_BODY = 1024;
const MAX_TEXT_MESSAGE = 200;
/** setTimeout fires at once for a longer delay. */
const MAX_TIMER_MS = 2 ** 31 - 1;
/** How often, and for how long without progress, an iterator over maxQueue is watched before it fails. */
const ITERATOR_POLL_MS = 10;
const ITERATOR_STALL_MS = 100;
const DEFAULTS = { heartbeatTimeoutMs: 60_000, maxEventBytes: 4 * 1024 * 1024, maxQueue: 1000 };

/**
 * An SSE client on fetch streams: headers (auth), resume by Last-Event-ID,
 * exponential backoff with full jitter, a heartbeat watchdog, typed events,
 * and an async iterator. It connects at once, like `EventSource`.
 */
export class SseClient<M extends EventMapBase = EventMapBase> implements AsyncIterable<ClientEventOf<M>> {
  readonly url: string;
  private readonly options: ClientOptions;
  private readonly fetchImpl: typeof fetch;
  private readonly backoff: Backoff;
  private readonly heartbeatTimeoutMs: number;
  private readonly heartbeatEvent: string | undefined;
  private readonly maxEventBytes: number;
  private readonly maxQueue: number;
  private readonly listeners = new Map<string, Set<Listener>>();
  private readonly statusListeners = new Set<(status: ClientStatus, error: SseClientError | undefined) => void>();
  private readonly errorListeners = new Set<(error: SseClientError) => void>();
  private readonly iterators = new Set<IteratorState>();
  private currentStatus: ClientStatus = 'connecting';
  private fatal: SseClientError | undefined;
  private last: string | undefined;
  /** The stream has set or reset the id: from now on it, not the URL's `lastEventId` query, says where to resume. */
  private idFromStream = false;
  /** The server's `retry:`, the floor of every reconnect delay. */
  private retryFloorMs = 0;
  /** The longest a server's `retry:` or `Retry-After` may make the client wait. */
  private readonly maxServerDelayMs: number;
  /** Failed attempts since the last healthy connection. */
  private attempt = 0;
  /** A 401 was retried with fresh credentials; a second one before a healthy connection is final. */
  private authRetried = false;
  private connection: AbortController | undefined;
  private lastByteAt = 0;
  private stale = false;
  private watchdog: ReturnType<typeof setTimeout> | undefined;
  private wait: { timer: ReturnType<typeof setTimeout>; resolve: () => void } | undefined;
  private readonly onAbort = () => this.close();

  constructor(url: string | URL, options: ClientOptions = {}) {
    this.url = String(url);
    this.options = options;
    const fetchImpl = options.fetch ?? globalThis.fetch;
    if (typeof fetchImpl !== 'function') throw new TypeError('no fetch: pass options.fetch, or run where globalThis.fetch exists');
    // Called unbound: a browser's fetch throws "Illegal invocation" when `this` is not the window.
    this.fetchImpl = (input, init) => fetchImpl.call(globalThis, input, init);
    this.backoff = checkBackoff(options.backoff);
    this.maxServerDelayMs = Math.min(10 * this.backoff.maxMs, MAX_TIMER_MS);
    this.heartbeatTimeoutMs = nonNegative(options.heartbeatTimeoutMs ?? DEFAULTS.heartbeatTimeoutMs, 'heartbeatTimeoutMs');
    this.heartbeatEvent = options.heartbeatEvent === undefined ? undefined : heartbeatEventName(options.heartbeatEvent);
    this.maxEventBytes = nonNegative(options.maxEventBytes ?? DEFAULTS.maxEventBytes, 'maxEventBytes');
    this.maxQueue = nonNegative(options.maxQueue ?? DEFAULTS.maxQueue, 'maxQueue');
    const parse = options.parse ?? 'auto';
    if (typeof parse !== 'function' && !['auto', 'json', 'text'].includes(parse))
      throw new TypeError(`parse must be 'auto', 'json', 'text' or a function, got ${String(parse)}`);
    if (options.onUnauthorized !== undefined && typeof options.onUnauthorized !== 'function')
      throw new TypeError('onUnauthorized must be a function');
    if (/[\0\r\n]/.test(options.lastEventId ?? '')) throw new TypeError('lastEventId must not contain NUL, CR or LF');
    this.last = options.lastEventId || undefined;
    if (options.signal?.aborted) {
      this.currentStatus = 'closed';
      return;
    }
    options.signal?.addEventListener('abort', this.onAbort, { once: true });
    void this.run();
  }

  get status(): ClientStatus {
    return this.currentStatus;
  }

  /** The id of the last event received: what the next connection resumes after. */
  get lastEventId(): string | undefined {
    return this.last;
  }

  /**
   * `Date.now()` when the response or its bytes last arrived (0 before the
   * first response): events, comments and heartbeats of either kind all count. A page polls it to tell a quiet
   * stream from a dead one even with `heartbeatEvent` hiding the heartbeats.
   */
  get lastActivityAt(): number {
    return this.lastByteAt;
  }

  /** Why the client closed for good (a 401, a wrong content type, …); `undefined` while it runs or after `close()`. */
  get error(): SseClientError | undefined {
    return this.fatal;
  }

  /** Calls `listener` with every event of `type` (`'resync'` for the resync notice). Returns a function that removes it. */
  on<K extends keyof M & string>(type: K, listener: (event: ClientEvent<M[K], K>) => void): () => void;
  on(type: 'resync', listener: (event: ResyncEvent) => void): () => void;
  on(type: string, listener: (event: ClientEvent<never, never>) => void): () => void {
    let set = this.listeners.get(type);
    if (!set) this.listeners.set(type, (set = new Set()));
    set.add(listener as Listener);
    return () => {
      set.delete(listener as Listener);
      if (set.size === 0 && this.listeners.get(type) === set) this.listeners.delete(type);
    };
  }

  /** Calls `listener` on every status change; a close for good comes with its error. */
  onStatus(listener: (status: ClientStatus, error: SseClientError | undefined) => void): () => void {
    this.statusListeners.add(listener);
    return () => this.statusListeners.delete(listener);
  }

  /**
   * Calls `listener` with every failure: those it retries (`willRetry`), the
   * one that closes it for good, and exceptions thrown by event listeners.
   * Without an error listener, listener exceptions go to `console.error`.
   */
  onError(listener: (error: SseClientError) => void): () => void {
    this.errorListeners.add(listener);
    return () => this.errorListeners.delete(listener);
  }

  /** Stops for good: aborts the connection, clears every timer, ends every iterator. Safe to call again. */
  close(): void {
    this.finish(undefined);
  }

  /**
   * Every event (and `resync` notice) from now on. Ends when the client
   * closes, or rejects with the error that closed it; rejects with
   * `ERR_SLOW_CONSUMER` if it falls `maxQueue` events behind. Leaving the
   * loop early stops this iterator, not the client.
   */
  [Symbol.asyncIterator](): AsyncIterator<ClientEventOf<M>> {
    const state: IteratorState = {
      queue: [],
      consumed: this.last,
      wake: undefined,
      error: undefined,
      done: this.currentStatus === 'closed',
    };
    if (state.done) state.error = this.fatal;
    else this.iterators.add(state);
    const end = () => {
      state.done = true;
      state.queue.length = 0;
      this.iterators.delete(state);
    };
    return {
      next: async () => {
        for (;;) {
          const event = state.queue.shift();
          if (event) {
            if (event.id !== undefined) state.consumed = event.id;
            return { value: event as ClientEventOf<M>, done: false };
          }
          if (state.error) {
            const error = state.error;
            end();
            throw error;
          }
          if (state.done) return { value: undefined, done: true };
          await new Promise<void>((resolve) => (state.wake = resolve));
          state.wake = undefined;
        }
      },
      return: async () => {
        end();
        return { value: undefined, done: true };
      },
    };
  }

  private async run(): Promise<void> {
    while (!this.isClosed()) {
      const outcome = await this.connectOnce();
      if (this.isClosed()) return;
      if (outcome.error && !outcome.retry) return this.finish(outcome.error);
      if (outcome.error) this.report(outcome.error);
      this.setStatus('reconnecting');
      if (outcome.now) continue;
      const delay = Math.max(backoffDelay(this.attempt, this.backoff, this.retryFloorMs), outcome.retryAfterMs ?? 0);
      this.attempt++;
      await this.sleep(delay);
    }
  }

  /** One connection, from request to end. Resolves with why it ended; never rejects. */
  private async connectOnce(): Promise<Outcome> {
    const controller = (this.connection = new AbortController());
    this.stale = false;
    this.touch();
    this.armWatchdog();
    try {
      // Raced against the attempt's signal: a headers() that never settles is cut off by the
      // watchdog (or close()) like a request that never answers.
      const headers = new Headers(
        typeof this.options.headers === 'function' ? await untilAborted(this.options.headers(), controller.signal) : this.options.headers,
      );
      headers.set('accept', 'text/event-stream');
      if (this.last) headers.set('last-event-id', headerValue(this.last));
      else headers.delete('last-event-id');
      const response = await this.fetchImpl(this.idFromStream ? withoutQueryParameter(this.url, 'lastEventId') : this.url, {
        method: 'GET',
        headers,
        credentials: this.options.withCredentials ? 'include' : 'same-origin',
        // A cached answer is an old stream: an HTTP cache or a service worker must not serve it.
        cache: 'no-store',
        signal: controller.signal,
      });
      if (this.isClosed()) {
        // close() came while the request was in flight, and this fetch answered anyway.
        await response.body?.cancel().catch(() => {});
        return {};
      }
      this.touch();
      if (response.status === 204) {
        // The server's way of saying "stop": not an error, but no reconnect either.
        await response.body?.cancel().catch(() => {});
        this.finish(undefined);
        return {};
      }
      if (response.status !== 200) return await this.refused(response);
      const type = response.headers.get('content-type') ?? '';
      if (!/^text\/event-stream\b/i.test(type)) {
        await response.body?.cancel().catch(() => {});
        return {
          retry: false,
          error: new SseClientError('ERR_CONTENT_TYPE', `expected text/event-stream, got ${type || 'no content type'}`, { status: 200 }),
        };
      }
      if (!response.body) return { retry: true, error: new SseClientError('ERR_NETWORK', 'the response has no body') };
      // Open is not yet healthy: the backoff starts over only once the stream proves it (read()).
      this.setStatus('open');
      return await this.read(response.body);
    } catch (error) {
      if (this.isClosed()) return {};
      if (this.stale) return { retry: true, error: this.staleError() };
      return {
        retry: true,
        error: new SseClientError('ERR_NETWORK', `the connection failed: ${(error as Error)?.message ?? String(error)}`, { cause: error }),
      };
    } finally {
      clearTimeout(this.watchdog);
      this.watchdog = undefined;
      if (this.connection === controller) this.connection = undefined;
      controller.abort();
    }
  }

  /**
   * Reads the stream until it ends; events go to listeners and iterators as
   * they are parsed. An event, an `id:`, or bytes for `resetAfterMs` make the
   * connection healthy; `retry:` and comments alone do not, as ssecast sends
   * them even when it is about to fail.
   */
  private async read(body: ReadableStream<Uint8Array>): Promise<Outcome> {
    const tooLarge = () => new SseClientError('ERR_EVENT_TOO_LARGE', `an event exceeded maxEventBytes (${this.maxEventBytes})`);
    let failure: SseClientError | undefined;
    const openedAt = Date.now();
    const parser = new EventStreamParser({
      onEvent: (event) => {
        // Liveness only, as a comment is: the read that brought it has fed the watchdog already.
        if (failure || this.isClosed() || event.type === this.heartbeatEvent) return;
        if (event.data.length > this.maxEventBytes) {
          failure = tooLarge();
          return;
        }
        this.healthy();
        // The hub's position marker only moves the cursor (onId has taken its id): nothing to show.
        if (event.type === 'ssecast-position') return;
        this.dispatch(event);
      },
      onId: (id) => {
        if (failure || this.isClosed()) return;
        this.last = id || undefined;
        this.idFromStream = true;
        this.healthy();
      },
      onRetry: (ms) => (this.retryFloorMs = Math.min(ms, this.maxServerDelayMs)),
    });
    const reader = body.getReader();
    const decoder = new TextDecoder();
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        this.touch();
        if (this.lastByteAt - openedAt >= this.backoff.resetAfterMs) this.healthy();
        parser.feed(decoder.decode(value, { stream: true }));
        if (!failure && parser.buffered > this.maxEventBytes) failure = tooLarge();
        if (failure || this.isClosed()) break;
        // One chunk can carry more than maxQueue events: an iterator gets its turn before it is judged.
        await this.letIteratorsCatchUp();
      }
    } finally {
      reader.cancel().catch(() => {});
    }
    if (failure) return { retry: false, error: failure };
    // The server ended the stream (a restart, a deploy, credentials that expired): reconnect and resume.
    return { retry: true };
  }

  /**
   * A non-200 answer: retried for 5xx, 408, 425 and 429 (after `Retry-After`),
   * a 401 once with fresh credentials (`onUnauthorized`), final otherwise.
   */
  private async refused(response: Response): Promise<Outcome> {
    const { status, statusText, headers } = response;
    const trusted = await refusalMessage(response);
    const serverMessage = trusted ?? `HTTP ${status} ${statusText}`.trim();
    const retry = RETRIED_STATUSES.has(status) || (status === 401 && (await this.retryUnauthorized({ status, serverMessage, headers })));
    const message = trusted ? `the server answered ${status}: ${trusted}` : `the server answered ${status} ${statusText}`.trim();
    const error = new SseClientError('ERR_HTTP_STATUS', message, { status, serverMessage, willRetry: retry });
    if (status === 401) return { error, retry, now: retry };
    return { error, retry, retryAfterMs: Math.min(retryAfterMs(headers.get('retry-after')), this.maxServerDelayMs) };
  }

  private async retryUnauthorized(response: UnauthorizedResponse): Promise<boolean> {
    const { onUnauthorized } = this.options;
    if (this.authRetried || !onUnauthorized) return false;
    let retry = false;
    try {
      retry = (await onUnauthorized(response)) === true;
    } catch (error) {
      this.report(
        new SseClientError('ERR_LISTENER', `onUnauthorized threw: ${(error as Error)?.message ?? String(error)}`, { cause: error }),
      );
    }
    this.authRetried = retry;
    return retry && !this.isClosed();
  }

  /** The connection proved it works: the next failure starts the backoff (and the 401 refresh) over. */
  private healthy(): void {
    this.attempt = 0;
    this.authRetried = false;
  }

  private dispatch(message: ParsedEvent): void {
    const { type, id } = message;
    let data: unknown;
    try {
      data = type === 'resync' ? JSON.parse(message.data) : this.parse(message.data, type);
    } catch (error) {
      this.report(
        new SseClientError('ERR_PARSE', `the data of a ${type} event could not be parsed: ${(error as Error)?.message ?? String(error)}`, {
          cause: error,
        }),
      );
      return;
    }
    const event: ClientEvent = { type, data, id: id || undefined };
    const listeners = this.listeners.get(type);
    if (listeners) {
      for (const listener of [...listeners]) {
        // A listener may close the client: nothing is delivered after close().
        if (this.isClosed()) return;
        try {
          listener(event);
        } catch (error) {
          this.report(
            new SseClientError('ERR_LISTENER', `a listener for ${type} threw: ${(error as Error)?.message ?? String(error)}`, {
              cause: error,
            }),
          );
        }
      }
    }
    // Queued whatever the count: the bound is judged between reads (letIteratorsCatchUp).
    for (const state of this.iterators) {
      state.queue.push(event);
      state.wake?.();
    }
  }

  /**
   * Reading waits while an iterator holds more than `maxQueue` events and is
   * working through them; one that takes nothing for `ITERATOR_STALL_MS`
   * fails with `ERR_SLOW_CONSUMER`, naming the last event it took.
   */
  private async letIteratorsCatchUp(): Promise<void> {
    let stalledFor = 0;
    for (;;) {
      const over = [...this.iterators].filter((state) => state.queue.length > this.maxQueue);
      if (over.length === 0 || this.isClosed()) return;
      const lengths = over.map((state) => state.queue.length);
      await new Promise((resolve) => setTimeout(resolve, ITERATOR_POLL_MS));
      const progressed = over.some((state, i) => state.queue.length < (lengths[i] as number));
      stalledFor = progressed ? 0 : stalledFor + ITERATOR_POLL_MS;
      if (stalledFor < ITERATOR_STALL_MS) continue;
      for (const state of over) {
        if (state.queue.length <= this.maxQueue) continue;
        const resumeFrom = state.consumed;
        state.error = new SseClientError(
          'ERR_SLOW_CONSUMER',
          `an iterator fell more than ${this.maxQueue} events behind and took none for ${ITERATOR_STALL_MS} ms; iterate again with lastEventId ${JSON.stringify(resumeFrom ?? null)}`,
          { lastEventId: resumeFrom },
        );
        state.queue.length = 0;
        this.iterators.delete(state);
        state.wake?.();
      }
      stalledFor = 0;
    }
  }

  private parse(data: string, type: string): unknown {
    const parse = this.options.parse ?? 'auto';
    if (typeof parse === 'function') return parse(data, type);
    if (parse === 'text') return data;
    if (parse === 'json') return JSON.parse(data);
    try {
      return JSON.parse(data);
    } catch {
      return data;
    }
  }

  // A method, so that TypeScript does not narrow the status across awaits and callbacks.
  private isClosed(): boolean {
    return this.currentStatus === 'closed';
  }

  private touch(): void {
    this.lastByteAt = Date.now();
  }

  /** One timer per connection, re-armed for the time left rather than reset on every chunk. */
  private armWatchdog(): void {
    if (this.heartbeatTimeoutMs === 0) return;
    const check = () => {
      const idle = Date.now() - this.lastByteAt;
      if (idle >= this.heartbeatTimeoutMs) {
        this.stale = true;
        this.connection?.abort();
      } else this.watchdog = setTimeout(check, this.heartbeatTimeoutMs - idle);
    };
    this.watchdog = setTimeout(check, this.heartbeatTimeoutMs);
  }

  private staleError(): SseClientError {
    return new SseClientError('ERR_STALE', `no data for ${this.heartbeatTimeoutMs} ms: the connection is stale; reconnecting`, {
      willRetry: true,
    });
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(
        () => {
          this.wait = undefined;
          resolve();
        },
        Math.min(ms, MAX_TIMER_MS),
      );
      this.wait = { timer, resolve };
    });
  }

  private setStatus(status: ClientStatus, error?: SseClientError): void {
    if (this.currentStatus === status) return;
    this.currentStatus = status;
    for (const listener of [...this.statusListeners]) {
      try {
        listener(status, error);
      } catch (thrown) {
        this.report(
          new SseClientError('ERR_LISTENER', `a status listener threw: ${(thrown as Error)?.message ?? String(thrown)}`, { cause: thrown }),
        );
      }
    }
  }

  private report(error: SseClientError): void {
    if (this.errorListeners.size === 0) {
      if (error.code === 'ERR_LISTENER') console.error('[ssecast/client]', error, error.cause);
      return;
    }
    for (const listener of [...this.errorListeners]) {
      try {
        listener(error);
      } catch (thrown) {
        console.error('[ssecast/client] an error listener threw:', thrown);
      }
    }
  }

  private finish(error: SseClientError | undefined): void {
    if (this.currentStatus === 'closed') return;
    this.fatal = error;
    this.options.signal?.removeEventListener('abort', this.onAbort);
    this.connection?.abort();
    clearTimeout(this.watchdog);
    if (this.wait) {
      clearTimeout(this.wait.timer);
      this.wait.resolve();
      this.wait = undefined;
    }
    for (const state of this.iterators) {
      state.done = true;
      state.error = error;
      state.wake?.();
    }
    this.iterators.clear();
    if (error) this.report(error);
    this.setStatus('closed', error);
    this.listeners.clear();
    this.statusListeners.clear();
    this.errorListeners.clear();
  }
}

/**
 * The message of a refusal worth showing to a user: ssecast's JSON
 * (`{"error","message"}`), or a short line of text/plain. Anything else (a
 * proxy's HTML error page, a stack trace) is not read at all; what is read
 * stops at a bound, and the rest of the body is cancelled.
 */
async function refusalMessage(response: Response): Promise<string | undefined> {
  const type = response.headers.get('content-type')?.toLowerCase() ?? '';
  const json = /^application\/(?:[\w.-]+\+)?json\b/.test(type);
  const text = /^text\/plain\b/.test(type);
  if (!response.body || (!json && !text)) {
    await response.body?.cancel().catch(() => {});
    return undefined;
  }
  const body = (await readAtMost(response.body, json ? MAX_JSON_BODY : MAX_TEXT_BODY)).trim();
  if (json) {
    try {
      const message = (JSON.parse(body) as { message?: unknown } | null)?.message;
      return typeof message === 'string' && message.trim() ? message.trim() : undefined;
    } catch {
      return undefined;
    }
  }
  const line = body.replace(/\s+/g, ' ');
  return line && line.length <= MAX_TEXT_MESSAGE && !line.startsWith('<') ? line : undefined;
}

/** Up to `max` bytes of a body (one chunk more at worst: a reader cannot ask for less), then cancels it. */
async function readAtMost(body: ReadableStream<Uint8Array>, max: number): Promise<string> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let text = '';
  let bytes = 0;
  try {
    while (bytes < max) {
      const { done, value } = await reader.read();
      if (done) break;
      bytes += value.byteLength;
      text += decoder.decode(value, { stream: true });
    }
  } catch {
    // a body cut short: what arrived is enough
  } finally {
    reader.cancel().catch(() => {});
  }
  return text;
}

/** `Retry-After` in ms: delay-seconds or an HTTP date; 0 when absent or unreadable. */
function retryAfterMs(value: string | null): number {
  if (!value) return 0;
  const ms = /^\s*\d+\s*$/.test(value) ? Number(value) * 1000 : Date.parse(value) - Date.now();
  // NaN (an unreadable date) must not reach the delay: Math.max would keep it, and a NaN
  // timer fires at once, so the client would retry without any backoff.
  return Number.isFinite(ms) ? Math.max(ms, 0) : 0;
}

/**
 * EventSource sends the id UTF-8 encoded; fetch takes a header value as a
 * string of ISO-8859-1 characters, one per byte, and throws on anything
 * beyond: so an id such as `é✓` goes as its UTF-8 bytes.
 */
function headerValue(id: string): string {
  if (/^[\x20-\x7e]*$/.test(id)) return id;
  let value = '';
  for (const byte of new TextEncoder().encode(id)) value += String.fromCharCode(byte);
  return value;
}

/** `url` without the query parameter `name`; the rest of the URL (relative or not) as it was. */
function withoutQueryParameter(url: string, name: string): string {
  const match = /^([^?#]*)\?([^#]*)(.*)$/s.exec(url);
  if (!match) return url;
  const [, path, query, hash] = match as unknown as [string, string, string, string];
  const kept = query.split('&').filter((pair) => !new URLSearchParams(pair).has(name));
  return `${path}${kept.length ? `?${kept.join('&')}` : ''}${hash}`;
}

/**
 * What the server accepts as a heartbeatEvent (checked here, not imported: the client bundle imports
 * nothing). Hiding `message`, `error`, `open`, `resync` or `ssecast-position` would hide data, connection
 * handlers' events or control frames.
 */
const RESERVED_HEARTBEAT_NAMES = ['message', 'error', 'open', 'resync', 'ssecast-position'];

function heartbeatEventName(type: unknown): string {
  if (typeof type !== 'string' || type === '' || RESERVED_HEARTBEAT_NAMES.includes(type) || /[\r\n\0]/.test(type))
    throw new TypeError(
      `heartbeatEvent must be an event type without CR, LF or NUL, other than ${RESERVED_HEARTBEAT_NAMES.map((n) => `"${n}"`).join(', ')}; got ${String(type)}`,
    );
  return type;
}

function nonNegative(value: number, name: string): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0)
    throw new TypeError(`${name} must be a non-negative finite number, got ${String(value)}`);
  return value;
}

/**
 * Opens a typed, resumable SSE stream on fetch. It connects at once.
 *
 * @example
 * const client = createClient<AgentEvents>('/api/v1/sse?agent_id=a1', { headers: () => ({ authorization: `Bearer ${token()}` }) });
 * client.on('git_operation', ({ data }) => render(data.progress));
 * client.on('resync', () => refetchState());
 * client.onStatus((status, error) => showStatus(status, error?.serverMessage));
 */
export function createClient<M extends EventMapBase = EventMapBase>(url: string | URL, options?: ClientOptions): SseClient<M> {
  return new SseClient<M>(url, options);
}

/** Settles like `value`, or rejects once `signal` aborts, whichever comes first. */
function untilAborted<T>(value: T | Promise<T>, signal: AbortSignal): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason ?? new Error('aborted'));
    if (signal.aborted) return onAbort();
    signal.addEventListener('abort', onAbort, { once: true });
    Promise.resolve(value).then(
      (result) => {
        signal.removeEventListener('abort', onAbort);
        resolve(result);
      },
      (error: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(error);
      },
    );
  });
}
