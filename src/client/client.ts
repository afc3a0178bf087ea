import { createParser, type EventSourceMessage } from 'eventsource-parser';
import type { EventMapBase, ResyncData } from '../core/types.js';
import { backoffDelay, checkBackoff, type Backoff, type BackoffOptions } from './backoff.js';
import { SseClientError } from './errors.js';

/** `connecting` (first attempt), `open`, `reconnecting` (waiting or trying again), `closed` (for good). */
export type ClientStatus = 'connecting' | 'open' | 'reconnecting' | 'closed';

/** One event as the client received it. */
export interface ClientEvent<T = unknown, K extends string = string> {
  type: K;
  data: T;
  /** The event's id; `undefined` for events without one (a `resync` notice). */
  id: string | undefined;
}

/** What the server sends when it cannot continue from the client's id: refetch your state. */
export type ResyncEvent = ClientEvent<ResyncData, 'resync'>;

/** Every event an `EventMap` allows, plus the `resync` notice. */
export type ClientEventOf<M extends EventMapBase> = { [K in keyof M & string]: ClientEvent<M[K], K> }[keyof M & string] | ResyncEvent;

export type HeadersSource = HeadersInit | (() => HeadersInit | Promise<HeadersInit>);

export interface ClientOptions {
  /**
   * Request headers, such as `Authorization`. A function is called before
   * every connection attempt, so a reconnect can carry a refreshed token.
   */
  headers?: HeadersSource | undefined;
  /** Send cookies cross-origin (`credentials: 'include'`), as EventSource's `withCredentials`. @defaultValue false */
  withCredentials?: boolean | undefined;
  /** Closes the client when it aborts. */
  signal?: AbortSignal | undefined;
  /** The fetch to use (a polyfill, an instrumented one, a test double). @defaultValue globalThis.fetch */
  fetch?: typeof fetch | undefined;
  /** Resume after this id on the first connection. */
  lastEventId?: string | undefined;
  /** Reconnect delays: exponential with full jitter, never under the server's `retry:`. */
  backoff?: BackoffOptions | undefined;
  /**
   * No byte for this long means the connection is stale (a silent proxy, a
   * dead network path): abort it and reconnect. Twice ssecast's default
   * heartbeat; `0` disables.
   * @defaultValue 60000
   */
  heartbeatTimeoutMs?: number | undefined;
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

interface IteratorState {
  queue: ClientEvent[];
  wake: (() => void) | undefined;
  error: SseClientError | undefined;
  done: boolean;
}

// Retried: the server or the path may come back. Everything else is final: asking again will not help.
const RETRIED_STATUSES = new Set([408, 425, 429, 500, 502, 503, 504]);
const MAX_ERROR_BODY = 4096;
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
  private readonly maxEventBytes: number;
  private readonly maxQueue: number;
  private readonly listeners = new Map<string, Set<Listener>>();
  private readonly statusListeners = new Set<(status: ClientStatus, error: SseClientError | undefined) => void>();
  private readonly errorListeners = new Set<(error: SseClientError) => void>();
  private readonly iterators = new Set<IteratorState>();
  private currentStatus: ClientStatus = 'connecting';
  private fatal: SseClientError | undefined;
  private last: string | undefined;
  /** The server's `retry:`, the floor of every reconnect delay. */
  private retryFloorMs = 0;
  private attempt = 0;
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
    this.heartbeatTimeoutMs = nonNegative(options.heartbeatTimeoutMs ?? DEFAULTS.heartbeatTimeoutMs, 'heartbeatTimeoutMs');
    this.maxEventBytes = nonNegative(options.maxEventBytes ?? DEFAULTS.maxEventBytes, 'maxEventBytes');
    this.maxQueue = nonNegative(options.maxQueue ?? DEFAULTS.maxQueue, 'maxQueue');
    const parse = options.parse ?? 'auto';
    if (typeof parse !== 'function' && !['auto', 'json', 'text'].includes(parse)) throw new TypeError(`parse must be 'auto', 'json', 'text' or a function, got ${String(parse)}`);
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
    const state: IteratorState = { queue: [], wake: undefined, error: undefined, done: this.currentStatus === 'closed' };
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
          if (event) return { value: event as ClientEventOf<M>, done: false };
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
      const delay = Math.max(backoffDelay(this.attempt, this.backoff, this.retryFloorMs), outcome.retryAfterMs ?? 0);
      this.attempt++;
      await this.sleep(delay);
    }
  }

  /** One connection, from request to end. Resolves with why it ended; never rejects. */
  private async connectOnce(): Promise<{ error?: SseClientError; retry?: boolean; retryAfterMs?: number }> {
    const controller = (this.connection = new AbortController());
    this.stale = false;
    this.touch();
    this.armWatchdog();
    try {
      const headers = new Headers(typeof this.options.headers === 'function' ? await this.options.headers() : this.options.headers);
      headers.set('accept', 'text/event-stream');
      if (this.last) headers.set('last-event-id', this.last);
      else headers.delete('last-event-id');
      const response = await this.fetchImpl(this.url, {
        method: 'GET',
        headers,
        credentials: this.options.withCredentials ? 'include' : 'same-origin',
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
        return { retry: false, error: new SseClientError('ERR_CONTENT_TYPE', `expected text/event-stream, got ${type || 'no content type'}`, { status: 200 }) };
      }
      if (!response.body) return { retry: true, error: new SseClientError('ERR_NETWORK', 'the response has no body') };
      this.attempt = 0;
      this.setStatus('open');
      return await this.read(response.body);
    } catch (error) {
      if (this.isClosed()) return {};
      if (this.stale) return { retry: true, error: this.staleError() };
      return { retry: true, error: new SseClientError('ERR_NETWORK', `the connection failed: ${(error as Error)?.message ?? String(error)}`, { cause: error }) };
    } finally {
      clearTimeout(this.watchdog);
      this.watchdog = undefined;
      if (this.connection === controller) this.connection = undefined;
      controller.abort();
    }
  }

  /** Reads the stream until it ends; events go to listeners and iterators as they are parsed. */
  private async read(body: ReadableStream<Uint8Array>): Promise<{ error?: SseClientError; retry?: boolean }> {
    let failure: SseClientError | undefined;
    const parser = createParser({
      maxBufferSize: this.maxEventBytes,
      onEvent: (message) => {
        if (failure) return;
        // The parser's limit only covers what it buffers across chunks: an event that arrives whole is checked here.
        if (message.data.length > this.maxEventBytes) {
          failure = new SseClientError('ERR_EVENT_TOO_LARGE', `an event exceeded maxEventBytes (${this.maxEventBytes})`);
          return;
        }
        this.dispatch(message);
      },
      onRetry: (ms) => (this.retryFloorMs = ms),
      onError: (error) => {
        // Unknown fields and bad retry values are ignored, as the spec says; only an oversized event is fatal.
        if (error.type === 'max-buffer-size-exceeded') {
          failure ??= new SseClientError('ERR_EVENT_TOO_LARGE', `an event exceeded maxEventBytes (${this.maxEventBytes})`);
        }
      },
    });
    const reader = body.getReader();
    const decoder = new TextDecoder();
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        this.touch();
        parser.feed(decoder.decode(value, { stream: true }));
        if (failure || this.isClosed()) break;
      }
    } finally {
      reader.cancel().catch(() => {});
    }
    if (failure) return { retry: false, error: failure };
    // The server ended the stream (a restart, a deploy, credentials that expired): reconnect and resume.
    return { retry: true };
  }

  /** A non-200 answer: retried for 5xx, 408, 425 and 429 (after `Retry-After`), final otherwise. */
  private async refused(response: Response): Promise<{ error: SseClientError; retry: boolean; retryAfterMs?: number }> {
    const message = await errorMessage(response);
    const retry = RETRIED_STATUSES.has(response.status);
    const error = new SseClientError('ERR_HTTP_STATUS', `the server answered ${response.status}${message ? `: ${message}` : ''}`, {
      status: response.status,
      serverMessage: message,
      willRetry: retry,
    });
    const retryAfter = Number(response.headers.get('retry-after'));
    return { error, retry, ...(retry && retryAfter > 0 ? { retryAfterMs: Math.min(retryAfter * 1000, 10 * this.backoff.maxMs) } : {}) };
  }

  private dispatch(message: EventSourceMessage): void {
    if (message.id !== undefined) this.last = message.id || undefined;
    const type = message.event || 'message';
    let data: unknown;
    try {
      data = type === 'resync' ? JSON.parse(message.data) : this.parse(message.data, type);
    } catch (error) {
      this.report(new SseClientError('ERR_PARSE', `the data of a ${type} event could not be parsed: ${(error as Error)?.message ?? String(error)}`, { cause: error }));
      return;
    }
    const event: ClientEvent = { type, data, id: message.id || undefined };
    const listeners = this.listeners.get(type);
    if (listeners) {
      for (const listener of [...listeners]) {
        try {
          listener(event);
        } catch (error) {
          this.report(new SseClientError('ERR_LISTENER', `a listener for ${type} threw: ${(error as Error)?.message ?? String(error)}`, { cause: error }));
        }
      }
    }
    for (const state of this.iterators) {
      if (state.queue.length >= this.maxQueue) {
        state.error = new SseClientError('ERR_SLOW_CONSUMER', `an iterator fell ${this.maxQueue} events behind; iterate again with lastEventId ${JSON.stringify(this.last ?? null)}`);
        state.queue.length = 0;
        this.iterators.delete(state);
      } else state.queue.push(event);
      state.wake?.();
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
    return new SseClientError('ERR_STALE', `no data for ${this.heartbeatTimeoutMs} ms: the connection is stale; reconnecting`, { willRetry: true });
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.wait = undefined;
        resolve();
      }, ms);
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
        this.report(new SseClientError('ERR_LISTENER', `a status listener threw: ${(thrown as Error)?.message ?? String(thrown)}`, { cause: thrown }));
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

/** The server's message from a refusal: ssecast answers `{"error","message"}`; other servers, text. Reads at most 4 KiB. */
async function errorMessage(response: Response): Promise<string | undefined> {
  if (!response.body) return undefined;
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let text = '';
  try {
    while (text.length < MAX_ERROR_BODY) {
      const { done, value } = await reader.read();
      if (done) break;
      text += decoder.decode(value, { stream: true });
    }
  } catch {
    // a body cut short: what arrived is enough
  } finally {
    reader.cancel().catch(() => {});
  }
  text = text.slice(0, MAX_ERROR_BODY).trim();
  if (!text) return undefined;
  try {
    const body = JSON.parse(text) as { message?: unknown };
    if (typeof body?.message === 'string') return body.message;
  } catch {
    // not JSON: the text itself
  }
  return text;
}

function nonNegative(value: number, name: string): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) throw new TypeError(`${name} must be a non-negative finite number, got ${String(value)}`);
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
