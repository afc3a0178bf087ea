// The three contenders of the Redis peer bench, one instance each per server
// process. Each start(config) returns
//   { port, path, version, publish(room, type, data) => Promise, connections(), close() }
// where `room` is 'all' (every client follows it) or 'rate' (nobody does: the
// publish-rate phase measures the publish path, not the delivery), and the
// promise is what "a publish was accepted" means for that contender:
//   - ssecast: hub.publish's own promise, resolved when Redis has stored the
//     event (the append script answered);
//   - socket.io: io.emit() is synchronous and returns before anything reaches
//     Redis, so the publish is followed by a PING on the same ioredis connection
//     the adapter wrote the event on. Redis answers one connection's commands in
//     order, so the PONG means Redis has answered the XADD (streams adapter) or
//     the PUBLISH (pub/sub adapter) that carried the event.
// config: { contender, redisUrl, name, distDir } where `name` is this
// contender's fresh Redis namespace (key prefix / stream name / channel prefix)
// and `distDir` the copy of ssecast's built dist/ that run.mjs took at its start.
import fs from 'node:fs';
import http from 'node:http';
import { pathToFileURL } from 'node:url';
import { Redis } from 'ioredis';

const repoRoot = new URL('../../', import.meta.url);

function packageVersion(name) {
  return JSON.parse(fs.readFileSync(new URL(`node_modules/${name}/package.json`, repoRoot), 'utf8')).version;
}

function listen(server) {
  server.maxConnections = Infinity;
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ port: 0, host: '127.0.0.1', backlog: 4096 }, () => {
      server.off('error', reject);
      resolve(server.address().port);
    });
  });
}

function closeServer(server) {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}

/** Resolves once the client is connected, so the first measured publish does not also pay for the connect. */
function connected(redis) {
  if (redis.status === 'ready') return Promise.resolve();
  return new Promise((resolve, reject) => {
    redis.once('ready', resolve);
    redis.once('end', () => reject(new Error('the Redis connection ended before it was ready')));
  });
}

export const CONTENDERS = {
  async ssecast({ redisUrl, name, distDir }) {
    const dist = pathToFileURL(`${distDir}/`);
    const { EventManager } = await import(new URL('index.js', dist).href);
    const { RedisBackend } = await import(new URL('backends/redis.js', dist).href);
    const { createSseHandler } = await import(new URL('adapters/node.js', dist).href);
    const redis = new Redis(redisUrl, { lazyConnect: true });
    const hub = new EventManager({ backend: new RedisBackend({ redis, prefix: name }) });
    const sse = createSseHandler(hub, {
      // Every load client connects from 127.0.0.1; the per-address limit (100) would refuse most of them.
      maxConnections: Infinity,
      maxConnectionsPerClient: Infinity,
    });
    const server = http.createServer((req, res) => {
      if (req.url?.startsWith('/events')) return sse(req, res);
      res.writeHead(404).end();
    });
    const port = await listen(server);
    return {
      port,
      path: '/events?stream=all',
      version: JSON.parse(fs.readFileSync(new URL('package.json', repoRoot), 'utf8')).version,
      publish: (room, type, data) => hub.publish(room, type, data),
      connections: () => hub.stats().connections,
      stats: () => {
        const s = hub.stats();
        return { published: s.published, delivered: s.delivered, dropped: s.dropped, redisErrors: s.redisErrors };
      },
      async close() {
        await hub.close();
        await closeServer(server);
        redis.disconnect();
      },
    };
  },

  'socketio-streams': (config) => startSocketIo(config, 'streams'),
  'socketio-pubsub': (config) => startSocketIo(config, 'pubsub'),
};

async function startSocketIo({ redisUrl, name }, kind) {
  const { Server } = await import('socket.io');
  const redis = new Redis(redisUrl);
  await connected(redis);
  /** @type {Redis | undefined} */
  let sub;
  let adapter;
  let adapterVersion;
  if (kind === 'streams') {
    const { createAdapter } = await import('@socket.io/redis-streams-adapter');
    adapter = createAdapter(redis, { streamName: `${name}:stream`, channelPrefix: name });
    adapterVersion = `@socket.io/redis-streams-adapter ${packageVersion('@socket.io/redis-streams-adapter')}`;
  } else {
    const { createAdapter } = await import('@socket.io/redis-adapter');
    sub = redis.duplicate();
    await connected(sub);
    adapter = createAdapter(redis, sub, { key: name });
    adapterVersion = `@socket.io/redis-adapter ${packageVersion('@socket.io/redis-adapter')}`;
  }
  const server = http.createServer((_req, res) => res.writeHead(404).end());
  const io = new Server(server, { serveClient: false, adapter });
  const port = await listen(server);
  const everyone = io.of('/');
  const nobody = io.to('rate');
  return {
    port,
    path: '/socket.io/',
    version: `socket.io ${packageVersion('socket.io')} + ${adapterVersion}`,
    publish(room, type, data) {
      (room === 'all' ? everyone : nobody).emit(type, data);
      return redis.ping();
    },
    connections: () => io.engine.clientsCount,
    stats: () => null,
    async close() {
      io.disconnectSockets(true);
      await new Promise((resolve) => io.close(() => resolve()));
      await closeServer(server).catch(() => {});
      sub?.disconnect();
      redis.disconnect();
    },
  };
}
