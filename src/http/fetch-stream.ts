import type * as Zlib from 'node:zlib';
import type { Hub } from '../core/hub.js';
import type { EventMapBase } from '../core/types.js';
import { gzipTransport, type ByteSink, type gzipSettings } from './compression.js';
import { reportTransportFailure, SseConnection, type SseTransport } from './connection.js';
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
        const sink = new BodySink(controller, onCancel);
        closeBody = () => sink.end();
        const body = new BodyTransport(sink);
        let transport: SseTransport = body;
        if (gzip) {
          const gz = gzipTransport(gzip.zlib, gzip.settings, sink, () => connection.drained());
          transport = gz;
          resume = () => gz.resume();
          destroy = () => gz.destroy();
        }
        connection = new SseConnection(hub, transport, admission.connection, {
          connectionClosed: () => {
            request.signal?.removeEventListener('abort', onAbort);
            admission.release();
          },
          connectionFailed: (error) => reportTransportFailure(report, error),
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

const encoder = new TextEncoder();

// Classes, not object literals with getters: V8 gives every object literal that defines an
// accessor with a fresh closure a hidden class (and descriptor array) of its own.

/** The body's controller as a `ByteSink`: where bytes go, gzipped or not. */
class BodySink implements ByteSink {
  private readonly controller: ReadableStreamDefaultController<Uint8Array>;
  private readonly onDropped: () => void;

  constructor(controller: ReadableStreamDefaultController<Uint8Array>, onDropped: () => void) {
    this.controller = controller;
    this.onDropped = onDropped;
  }

  write(bytes: Uint8Array): boolean {
    try {
      this.controller.enqueue(bytes);
    } catch {
      // The runtime dropped the body without cancelling it; never throw into the hub's fan-out.
      queueMicrotask(this.onDropped);
      return false;
    }
    return (this.controller.desiredSize ?? 0) > 0;
  }

  get bufferedBytes(): number {
    return Math.max(0, BODY_HIGH_WATER_MARK - (this.controller.desiredSize ?? 0));
  }

  end(): void {
    try {
      this.controller.close();
    } catch {
      // Already closed, errored or cancelled.
    }
  }

  // Erroring the body makes the runtime tear the response down.
  abort(): void {
    try {
      this.controller.error(new Error('ssecast: stream aborted (slow consumer or server error)'));
    } catch {
      // Already closed or cancelled: nothing left to tear down.
    }
  }
}

/** The uncompressed body as the connection's transport. */
class BodyTransport implements SseTransport {
  private readonly sink: BodySink;

  constructor(sink: BodySink) {
    this.sink = sink;
  }

  // Event chunks are shared with other connections, and a runtime may transfer
  // (detach) what it reads from a body: each body gets its own copy.
  write(chunk: string | Uint8Array): boolean {
    return this.sink.write(typeof chunk === 'string' ? encoder.encode(chunk) : chunk.slice());
  }

  get bufferedBytes(): number {
    return this.sink.bufferedBytes;
  }

  // A closed body is the runtime's: nothing can tear it down later, so no grace timer is kept.
  get handsOverOnEnd(): boolean {
    return true;
  }

  end(): void {
    this.sink.end();
  }

  abort(): void {
    this.sink.abort();
  }
}
