/** A request the gate turned away: the status and a JSON body that says why. */
export interface Rejection {
  ok: false;
  status: 400 | 401 | 403 | 405 | 429 | 500 | 503;
  body: { error: string; message: string };
  headers?: Record<string, string>;
}

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

/** Headers of a rejection's JSON answer. */
export function rejectionHeaders(rejection: Rejection, body: string): Record<string, string> {
  return {
    'content-type': 'application/json; charset=utf-8',
    'cache-control': 'no-store',
    'content-length': String(new TextEncoder().encode(body).byteLength),
    ...rejection.headers,
  };
}

/** The headers of every event stream. `Connection` is added by adapters that know the HTTP version. */
export const SSE_HEADERS: Readonly<Record<string, string>> = Object.freeze({
  'content-type': 'text/event-stream; charset=utf-8',
  // no-transform also keeps the `compression` middleware and proxies from buffering the stream.
  'cache-control': 'no-cache, no-transform',
  'x-accel-buffering': 'no',
});

/**
 * The headers of a 200 event stream: `vary` whenever compression is offered,
 * `content-encoding` when this response is gzipped.
 */
export function streamHeaders(compressOffered: boolean, gzipped: boolean): Record<string, string> {
  const headers: Record<string, string> = { ...SSE_HEADERS };
  if (compressOffered) headers.vary = 'accept-encoding';
  if (gzipped) headers['content-encoding'] = 'gzip';
  return headers;
}
