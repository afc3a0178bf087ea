// Contender `ssecast-fastify`: ssecast's Fastify 5 plugin (the built dist/) on
// the hub's defaults, as `ssecast-node` (ids, history 100, replay 10, 30 s
// heartbeats, `retry:` on connect). The plugin hijacks the reply and writes to
// the raw response, so Fastify's own cost is the routing of the request.
import Fastify from 'fastify';
import { EventManager } from '../../../dist/index.js';
import ssecastFastify from '../../../dist/adapters/fastify.js';
import { PATH, ssecastVersion } from './lib/common.mjs';

export async function start() {
  const hub = new EventManager();
  const app = Fastify();
  await app.register(ssecastFastify, {
    hub,
    path: '/events',
    // The load client opens every connection from 127.0.0.1.
    maxConnections: Infinity,
    maxConnectionsPerClient: Infinity,
    streams: (request) => [request.query.stream],
  });
  await app.listen({ port: 0, host: '127.0.0.1', backlog: 4096 });
  app.server.maxConnections = Infinity;

  return {
    port: app.server.address().port,
    path: PATH,
    version: ssecastVersion(),
    publish: (stream, data) => hub.publish(stream, 'tick', data),
    connections: () => hub.stats().connections,
    /** The plugin's preClose hook ends its streams; the hub is ours to close. */
    async close() {
      await app.close();
      await hub.close();
    },
  };
}
