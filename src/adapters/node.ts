import type { Hub } from '../core/hub.js';
import type { EventMapBase } from '../core/types.js';
import type { SseHandlerOptions } from '../http/gate.js';
import { nodeHandler, type NodeRequest, type NodeResponse } from '../http/node-stream.js';

export type { MsRange, Principal, RetryRange, SseHandlerOptions } from '../http/gate.js';
export type { CompressOptions } from '../http/compression.js';
export type { NodeRequest, NodeResponse } from '../http/node-stream.js';

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
  hub: Hub<M>,
  options: SseHandlerOptions<Req> = {},
): (req: Req, res: NodeResponse) => void {
  return nodeHandler(hub, options);
}
