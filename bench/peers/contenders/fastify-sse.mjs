// Contender `fastify-sse`: @fastify/sse (0.6) on Fastify 5. The plugin has no
// broadcast, so each stream keeps a Set of its connections' `reply.sse`
// contexts; publish calls sse.send({ event: 'tick', data }) on each.
//
// Route `{ sse: 'only' }`; the handler calls keepAlive() (else the plugin ends
// the response when the handler returns), sendHeaders() and flushes the head
// (headers are otherwise held until the first event). Options: only the
// `serializer`, which passes the data through (its default, JSON.stringify,
// would send the already-JSON string quoted and escaped). Defaults kept: the
// 30 s heartbeat (one setInterval per connection), Fastify without a logger.
// send() formats the event again for every connection and returns a promise;
// publish does not wait for them (a slow socket would hold up every stream),
// and on a socket that is not draining each send() adds a `drain` and an
// `error` listener until it drains (the leak warning that this would print is
// turned off per response; the listeners are the library's cost).
import Fastify from 'fastify';
import fastifySse from '@fastify/sse';
import { PATH, packageVersion } from './lib/common.mjs';

/** A send() on a context that closed meanwhile rejects; there is nobody to tell. */
function ignore() {}

export async function start() {
  /** @type {Map<string, Set<any>>} stream name → reply.sse contexts */
  const streams = new Map();
  let open = 0;

  /** Keeps the connection open and in its stream's Set until it closes. */
  async function serve(request, reply) {
    const name = request.query.stream;
    if (!name) return reply.code(400).send({ error: 'stream is required' });
    // Closed before the handler ran: onClose would never fire.
    if (reply.raw.destroyed) return;
    // send() waits for `drain` with a listener pair per pending send; Node would
    // print a MaxListenersExceededWarning for every backpressured connection.
    reply.raw.setMaxListeners(0);
    const sse = reply.sse;
    sse.keepAlive();
    sse.sendHeaders();
    reply.raw.flushHeaders();
    let set = streams.get(name);
    if (!set) streams.set(name, (set = new Set()));
    set.add(sse);
    open++;
    sse.onClose(() => {
      set.delete(sse);
      open--;
      if (set.size === 0 && streams.get(name) === set) streams.delete(name);
    });
  }

  const app = Fastify();
  await app.register(fastifySse, { serializer: (data) => data });
  app.get('/events', { sse: 'only' }, serve);
  await app.listen({ port: 0, host: '127.0.0.1', backlog: 4096 });
  app.server.maxConnections = Infinity;

  return {
    port: app.server.address().port,
    path: PATH,
    version: packageVersion('@fastify/sse'),
    publish(stream, data) {
      const set = streams.get(stream);
      if (!set) return;
      const message = { event: 'tick', data };
      for (const sse of set) sse.send(message).catch(ignore);
    },
    connections: () => open,
    /** Ends the open streams first: app.close() waits for responses in flight. */
    async close() {
      for (const set of streams.values()) for (const sse of [...set]) sse.close();
      await app.close();
    },
  };
}
