import type * as Zlib from 'node:zlib';
import type { Hub } from '../core/hub.js';
import type { EventMapBase } from '../core/types.js';
import { acceptsGzip, gzipSettings, gzipTransport, type ByteSink } from '../http/compression.js';
import { SseConnection, type SseTransport } from '../http/connection.js';
import { isGone, reject, SseGate, type Admission, type SseHandlerOptions } from '../http/gate.js';
import { rejectionHeaders, streamHeaders, type Rejection } from '../http/reject.js';

export type { Principal, RetryRange, SseHandlerOptions } from '../http/gate.js';
export type { CompressOptions } from '../http/compression.js';

/**
 * Bytes the response body may hold before the writer waits for the runtime
 * to read them. Past it, events wait in the connection's bounded queue and,
 * past `maxUnsentBytes`, the client is cut off: nothing grows without bound.
 */
const BODY_HIGH_WATER_MARK = 64 * 1024;

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

function eventStream<M extends EventMapBase>(
  hub: Hub<M>,
  request: Request,
  admission: Admission,
  gzip: { zlib: typeof Zlib; settings: NonNullable<ReturnType<typeof gzipSettings>> } | undefined,
  report: (error: unknown) => void,
): ReadableStream<Uint8Array> {
  const encoder = new TextEncoder();
  let connection: SseConnection<M>;
  let resume: () => void = () => connection.drained();
  let destroy: () => void = () => {};
  let closeBody: () => void = () => {};
  // The runtime cancelled the body: it reads no more, so nothing is closed.
  const onCancel = () => {
    destroy();
    connection.transportClosed();
  };
  // The client went away: end the body too, so whoever holds a reader is not left waiting.
  const onAbort = () => {
    onCancel();
    closeBody();
  };
  return new ReadableStream<Uint8Array>(
    {
      start(controller) {
        const queued = () => Math.max(0, BODY_HIGH_WATER_MARK - (controller.desiredSize ?? 0));
        closeBody = () => {
          try {
            controller.close();
          } catch {
            // Already closed, errored or cancelled.
          }
        };
        const sink: ByteSink = {
          write(bytes) {
            try {
              controller.enqueue(bytes);
            } catch {
              // The runtime dropped the body without cancelling it; never throw into the hub's fan-out.
              queueMicrotask(onCancel);
              return false;
            }
            return (controller.desiredSize ?? 0) > 0;
          },
          get bufferedBytes() {
            return queued();
          },
          end: closeBody,
          // Erroring the body makes the runtime tear the response down.
          abort: () => {
            try {
              controller.error(new Error('ssecast: stream aborted (slow consumer or server error)'));
            } catch {
              // Already closed or cancelled: nothing left to tear down.
            }
          },
        };
        let transport: SseTransport = {
          // Event chunks are shared with other connections, and a runtime may transfer
          // (detach) what it reads from a body: each body gets its own copy.
          write: (chunk) => sink.write(typeof chunk === 'string' ? encoder.encode(chunk) : chunk.slice()),
          get bufferedBytes() {
            return sink.bufferedBytes;
          },
          end: sink.end,
          abort: sink.abort,
        };
        if (gzip) {
          const gz = gzipTransport(gzip.zlib, gzip.settings, sink, () => connection.drained());
          transport = gz;
          resume = () => gz.resume();
          destroy = () => gz.destroy();
        }
        connection = new SseConnection(hub, transport, {
          ...admission.connection,
          onClose: () => {
            request.signal?.removeEventListener('abort', onAbort);
            admission.release();
          },
          onError: report,
        });
        request.signal?.addEventListener('abort', onAbort, { once: true });
        connection.start();
        // The client may have left while authorize() was awaited.
        if (request.signal?.aborted) onAbort();
      },
      // The runtime wants more: what waited for room is written now.
      pull() {
        resume();
      },
      cancel() {
        onCancel();
      },
    },
    { highWaterMark: BODY_HIGH_WATER_MARK, size: (chunk) => chunk.byteLength },
  );
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
