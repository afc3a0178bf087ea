// Contender `ssecast-node`: ssecast's node:http handler (the built dist/) with
// the hub's defaults: ids, 100 events of history per stream, replay of the 10
// most recent on connect, 30 s heartbeats, a `retry:` line on connect.
// hub.publish with a string writes it as the data as is; the frame is encoded
// once per event and shared by every connection.
import http from 'node:http';
import { EventManager } from '../../../dist/index.js';
import { createSseHandler } from '../../../dist/adapters/node.js';
import { PATH, closeServer, listen, notFound, ssecastVersion, streamOf } from './lib/common.mjs';

export async function start() {
  const hub = new EventManager();
  const sse = createSseHandler(hub, {
    streams: (req) => [new URL(req.url, 'http://x').searchParams.get('stream')],
  });
  const server = http.createServer((req, res) => (streamOf(req.url) ? sse(req, res) : notFound(res)));
  const port = await listen(server);

  return {
    port,
    path: PATH,
    version: ssecastVersion(),
    publish: (stream, data) => hub.publish(stream, 'tick', data),
    connections: () => hub.stats().connections,
    /** The hub ends its connections (after delivering what was accepted), then the server stops. */
    async close() {
      await hub.close();
      await closeServer(server);
    },
  };
}
