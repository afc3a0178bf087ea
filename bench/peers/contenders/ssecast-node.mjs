// Contender `ssecast-node`: ssecast's node:http handler (the built dist/) with
// the hub's defaults: ids, 100 events of history per stream, replay of the 10
// most recent on connect, 30 s heartbeats, a `retry:` line on connect.
// hub.publish with a string writes it as the data as is; the frame is encoded
// once per event and shared by every connection.
//
// The peer benchmark starts it without options. The reliability benches
// (bench/reliability/) pass some through server.mjs's second argument:
// - `maxUnsentBytes`, `maxConnectionsPerPrincipal`, `heartbeatMs`: handed to
//   createSseHandler as they are;
// - `authorize: true`: every request is its own principal's, named by its `p`
//   query parameter (`anonymous` without one), allowed every stream, so the
//   per-principal limit applies.
import http from 'node:http';
import { EventManager } from '../../../dist/index.js';
import { createSseHandler } from '../../../dist/adapters/node.js';
import { PATH, closeServer, listen, notFound, ssecastVersion, streamOf } from './lib/common.mjs';

export async function start(options = {}) {
  const hub = new EventManager();
  const handlerOptions = {
    // The load client opens every connection from 127.0.0.1.
    maxConnections: Infinity,
    maxConnectionsPerClient: Infinity,
    streams: (req) => [new URL(req.url, 'http://x').searchParams.get('stream')],
  };
  for (const key of ['maxUnsentBytes', 'maxConnectionsPerPrincipal', 'heartbeatMs']) {
    if (options[key] !== undefined) handlerOptions[key] = options[key];
  }
  if (options.authorize) {
    handlerOptions.authorize = (req) => ({ id: new URL(req.url, 'http://x').searchParams.get('p') ?? 'anonymous', streams: '*' });
  }
  const sse = createSseHandler(hub, handlerOptions);
  const server = http.createServer((req, res) => (streamOf(req.url) ? sse(req, res) : notFound(res)));
  const port = await listen(server);
  const heartbeatMs = options.heartbeatMs ?? hub.options.heartbeatMs;

  return {
    port,
    path: PATH,
    version: ssecastVersion(),
    publish: (stream, data) => hub.publish(stream, 'tick', data),
    connections: () => hub.stats().connections,
    stats: () => hub.stats(),
    /** The scheduler the connections use (the hub keeps one per interval; asking for it creates none that matters). */
    heartbeat: () => {
      if (heartbeatMs === 0) return { intervalMs: 0, running: false, size: 0 };
      const scheduler = hub.heartbeatScheduler(heartbeatMs);
      return { intervalMs: heartbeatMs, running: scheduler.running, size: scheduler.size };
    },
    /** The hub ends its connections (after delivering what was accepted), then the server stops. */
    async close() {
      await hub.close();
      await closeServer(server);
    },
  };
}
