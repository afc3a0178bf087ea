import type * as Zlib from 'node:zlib';
import type { Hub } from '../core/hub.js';
import type { EventMapBase } from '../core/types.js';
import { acceptsGzip, gzipSettings } from '../http/compression.js';
import { eventStream } from '../http/fetch-stream.js';
import { isGone, reject, SseGate, type SseHandlerOptions } from '../http/gate.js';
import { rejectionHeaders, streamHeaders, type Rejection } from '../http/reject.js';

export type { CompressOptions } from '../http/compression.js';
export type { MsRange, Principal, RetryRange, SseHandlerOptions } from '../http/gate.js';

/**
 * A Web-standard handler, `(request: Request) => Promise<Response>`, for Hono,
 * Next.js route handlers, Bun, Deno and anything else that speaks fetch.
 *
 * The body is a pull-based `ReadableStream`: the runtime's reads drive the
 * writes. The stream ends when `request.signal` aborts or the body is
 * cancelled. `compress` needs `node:zlib` (Node, Bun, Deno); where the
 * runtime has none, the stream is sent uncompressed.
 *
 * @example
 * const handler = createFetchHandler(hub, { streams: (req) => new URL(req.url).searchParams.getAll('agent_id') });
 * export const GET = handler; // Next.js app/api/sse/route.ts
 */
export function createFetchHandler<M extends EventMapBase = EventMapBase>(
  hub: Hub<M>,
  options: SseHandlerOptions<Request> = {},
): (request: Request) => Promise<Response> {
  const gate = new SseGate<Request, M>(hub, options);
  const gzip = gzipSettings(options.compress);
  return async (request) => {
    let outcome: Awaited<ReturnType<typeof gate.admit>> | undefined;
    try {
      outcome = await gate.admit(request, {
        method: request.method,
        target: request.url,
        header: (name) => request.headers.get(name) ?? undefined,
        gone: () => request.signal?.aborted === true,
      });
      if (isGone(outcome)) return rejectionResponse(reject(503, 'the client went away'));
      if (!outcome.ok) return rejectionResponse(outcome);
      const zlib = gzip && acceptsGzip(request.headers.get('accept-encoding') ?? undefined) ? nodeZlib() : undefined;
      const admission = outcome;
      const report = (error: unknown) => gate.report(error, request);
      const body = eventStream(hub, request, admission, zlib && gzip ? { zlib, settings: gzip } : undefined, report);
      return new Response(body, { status: 200, headers: streamHeaders(gzip !== null, zlib !== undefined) });
    } catch (error) {
      if (outcome?.ok) outcome.release();
      gate.report(error, request);
      return rejectionResponse(reject(500, 'the stream could not be opened'));
    }
  };
}

function rejectionResponse(rejection: Rejection): Response {
  const body = JSON.stringify(rejection.body);
  return new Response(body, { status: rejection.status, headers: rejectionHeaders(rejection, body) });
}

// Looked up at run time, not imported: a static `node:zlib` import would keep
// this entry from loading on runtimes without it (edge workers).
function nodeZlib(): typeof Zlib | undefined {
  const proc = (globalThis as { process?: { getBuiltinModule?: (id: string) => unknown } }).process;
  return proc?.getBuiltinModule?.('node:zlib') as typeof Zlib | undefined;
}
