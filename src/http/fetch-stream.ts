import type * as Zlib from 'node:zlib';
import type { Hub } from '../core/hub.js';
import type { EventMapBase } from '../core/types.js';
import { gzipTransport, type ByteSink, type gzipSettings } from './compression.js';
import { SseConnection, type SseTransport } from './connection.js';
import type { Admission } from './gate.js';

/**
 * Bytes the response body may hold before the writer waits for the runtime
 * to read them. Past it, events wait in the connection's bounded queue and,
 * past `maxUnsentBytes`, the client is cut off: nothing grows without bound.
 */
const BODY_HIGH_WATER_MARK = 64 * 1024;

/**
 * The body of an admitted fetch request: a pull-based `ReadableStream` whose
 * reads drive the writes. It ends when `request.signal` aborts or the body is
 * cancelled; gzip when `gzip` is given.
 */
export function eventStream<M extends EventMapBase>(
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
          // A closed body is the runtime's: nothing can tear it down later, so no grace timer is kept.
          handsOverOnEnd: true,
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
