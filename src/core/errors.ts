/** Codes of {@link SsecastError}: runtime trouble, as opposed to misuse (a `TypeError`). */
export type SsecastErrorCode =
  /** The hub was closed; nothing more is published or delivered. */
  | 'ERR_HUB_CLOSED'
  /** A subscriber fell further behind than its bound and was cut off. */
  | 'ERR_SLOW_CONSUMER'
  /** The backend could not store or read events (e.g. Redis unreachable). */
  | 'ERR_BACKEND'
  /** An event larger than the hub's `maxEventBytes`: nothing was stored or sent. */
  | 'ERR_EVENT_TOO_LARGE';

export class SsecastError extends Error {
  readonly code: SsecastErrorCode;
  constructor(code: SsecastErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'SsecastError';
    this.code = code;
  }
}
