import type { EventManager } from '../core/event-manager.js';
import type { EventMapBase } from '../core/types.js';
import { gzipSettings } from './compression.js';
import { reject, SseGate, type SseHandlerOptions } from './gate.js';
import { nodeRequestView, openNodeStream, sendRejection, type NodeRequest, type NodeResponse } from './node-stream.js';

export type { Principal, SseHandlerOptions } from './gate.js';
export type { CompressOptions } from './compression.js';
export type { NodeRequest, NodeResponse } from './node-stream.js';

/**
 * An SSE endpoint for `http.createServer`, `https` and the `node:http2`
 * compatibility API (`http2.createServer`, `http2.createSecureServer`).
 *
 * @example
 * const hub = new EventManager();
 * const sse = createSseHandler(hub, { streams: (req) => new URL(req.url!, 'http://x').searchParams.getAll('agent_id') });
 * http.createServer((req, res) => req.url?.startsWith('/events') ? sse(req, res) : res.end()).listen(8000);
 */
export function createSseHandler<M extends EventMapBase = EventMapBase, Req extends NodeRequest = NodeRequest>(
  hub: EventManager<M>,
  options: SseHandlerOptions<Req> = {},
): (req: Req, res: NodeResponse) => void {
  const gate = new SseGate<Req, M>(hub, options);
  const gzip = gzipSettings(options.compress);
  return (req, res) => {
    gate
      .admit(req, nodeRequestView(req))
      .then((outcome) => {
        if (!outcome.ok) return sendRejection(res, outcome);
        // The client may have left while authorize() was awaited.
        if (res.destroyed || req.destroyed) return outcome.release();
        try {
          openNodeStream(hub, req, res, outcome, gzip);
        } catch (error) {
          outcome.release();
          throw error;
        }
      })
      .catch((error: unknown) => {
        gate.report(error, req);
        if (!res.headersSent) sendRejection(res, reject(500, 'the stream could not be opened'));
        else res.destroy();
      });
  };
}
