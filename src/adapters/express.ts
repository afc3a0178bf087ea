import type { Request, RequestHandler } from 'express';
import type { Hub } from '../core/hub.js';
import type { EventMapBase } from '../core/types.js';
import type { SseHandlerOptions } from '../http/gate.js';
import { nodeHandler } from '../http/node-stream.js';

export type { MsRange, Principal, RetryRange, SseHandlerOptions } from '../http/gate.js';
export type { CompressOptions } from '../http/compression.js';

/**
 * An Express (4 or 5) request handler that serves an event stream. Mount it
 * with `app.get(path, …)`, or with `app.use(path, …)` to answer other
 * methods with 405.
 *
 * Works under app-wide `compression()`: the stream is sent with
 * `Cache-Control: no-transform`, which that middleware honours, so no event
 * waits in its buffer. `compress: true` gzips the stream here instead, with
 * a flush after every write.
 *
 * @example
 * app.get('/api/v1/sse', sse(hub, { streams: (req) => [req.query.agent_id ?? []].flat().map(String) }));
 */
export function sse<M extends EventMapBase = EventMapBase>(hub: Hub<M>, options: SseHandlerOptions<Request> = {}): RequestHandler {
  // originalUrl is the URL as the client sent it, whatever routers have done to req.url.
  const handle = nodeHandler<M, Request>(hub, options, (req) => req.originalUrl ?? req.url);
  return (req, res) => handle(req, res);
}
