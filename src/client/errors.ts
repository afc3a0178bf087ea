/** Codes of {@link SseClientError}. */
export type SseClientErrorCode =
  /** The server answered with a status other than 200 (`status`, `serverMessage`); retried for 500, 502, 503, 504, 408, 425, 429, and a 401 once if `onUnauthorized` asks. */
  | 'ERR_HTTP_STATUS'
  /** The request failed or the stream broke (retried). */
  | 'ERR_NETWORK'
  /** No byte for `heartbeatTimeoutMs`: the connection was aborted (retried). */
  | 'ERR_STALE'
  /** A 200 that is not `text/event-stream` (final). */
  | 'ERR_CONTENT_TYPE'
  /** An event larger than `maxEventBytes` (final). */
  | 'ERR_EVENT_TOO_LARGE'
  /** An event's data could not be parsed as asked (`parse`); the event was skipped. */
  | 'ERR_PARSE'
  /** An event or status listener, or `onUnauthorized`, threw; the stream goes on. */
  | 'ERR_LISTENER'
  /** An async iterator fell `maxQueue` events behind and was ended. */
  | 'ERR_SLOW_CONSUMER';

export interface SseClientErrorDetails {
  status?: number | undefined;
  serverMessage?: string | undefined;
  willRetry?: boolean | undefined;
  lastEventId?: string | undefined;
  cause?: unknown;
}

/** What went wrong, in a form an app can show: `serverMessage` is the server's own explanation of a refusal. */
export class SseClientError extends Error {
  readonly code: SseClientErrorCode;
  /** The HTTP status, for `ERR_HTTP_STATUS` (and `ERR_CONTENT_TYPE`). */
  readonly status: number | undefined;
  /**
   * What to show a user about a refusal: the `message` of a JSON error body
   * (ssecast's refusals carry one) or a short text/plain line; otherwise
   * (a proxy's HTML page, a long or missing body) `HTTP 502 Bad Gateway`:
   * the status and its reason phrase, never the body.
   */
  readonly serverMessage: string | undefined;
  /** True when the client will try again by itself. */
  readonly willRetry: boolean;
  /** For `ERR_SLOW_CONSUMER`: the id of the last event the iterator took; resume from it and nothing is skipped. */
  readonly lastEventId: string | undefined;

  constructor(code: SseClientErrorCode, message: string, details: SseClientErrorDetails = {}) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.name = 'SseClientError';
    this.code = code;
    this.status = details.status;
    this.serverMessage = details.serverMessage;
    this.willRetry = details.willRetry ?? (code === 'ERR_NETWORK' || code === 'ERR_STALE');
    this.lastEventId = details.lastEventId;
  }
}
