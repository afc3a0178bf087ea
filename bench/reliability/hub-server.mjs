// One hub process for the reliability benches (storm.mjs, spread.mjs), on the
// BUILT package (run `npm run build` first):
//
//   node bench/reliability/hub-server.mjs [--backend memory|redis] [--redis-url URL]
//        [--prefix P] [--retry-min MS --retry-max MS | --retry MS] [--history N]
//        [--heartbeat MS] [--port 0]
//
// Every option can also come from the environment (HUB_BACKEND, REDIS_URL,
// HUB_PREFIX, HUB_RETRY_MIN, HUB_RETRY_MAX, HUB_HISTORY, HUB_HEARTBEAT_MS,
// HUB_PORT). The node adapter serves /events (every `stream` query value).
//
// Driven over IPC when forked (child_process.fork): it sends
// { type: 'ready', port, pid } once listening, then answers requests
// { id, cmd, ...args } with { type: 'done', id, ...result } or
// { type: 'error', id, message }:
//
//   publish  { streams, perStream, rate, from? }  starts a publisher loop (n = from[stream] ?? 1
//            .. perStream for each stream, round-robin, `rate` events/s in all, payload
//            { stream, n }, type 'tick'); answers { loop } at once
//   published { loop? }    waits for that loop (every loop when omitted) to finish:
//                          { published, errors, firstError, next }
//   stopPublishing         stops every loop after its current event: { next: { stream: n } }
//   drop                   socket.destroy() on every open SSE socket (what a crashed proxy
//                          does): { dropped, at } (at: Date.now() when dropped)
//   arrivals { since? }    Date.now() of every /events request that arrived (at or after `since`)
//   stats                  hub.stats() plus this process's fault counters
//
// On SIGTERM it shuts down gracefully: server.close(), then `await hub.close()`
// while its publisher is still running (a publish refused with ERR_HUB_CLOSED
// stops the loop at that event); then it sends { type: 'handoff', next }
// (per stream, the first n it did not store, so another instance can carry on
// with the same streams), waits for the sockets to close, sends
// { type: 'shutdown', ...stats } and exits 0 (1 if anything was written after
// a response ended, or a rejection or exception went unhandled).
import http from 'node:http';
import { parseArgs } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { monitorEventLoopDelay } from 'node:perf_hooks';

const { values: args } = parseArgs({
  options: {
    backend: { type: 'string', default: process.env.HUB_BACKEND ?? 'memory' },
    'redis-url': { type: 'string', default: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379' },
    prefix: { type: 'string', default: process.env.HUB_PREFIX ?? `ssecast-reliability-${process.pid}` },
    retry: { type: 'string', default: process.env.HUB_RETRY },
    'retry-min': { type: 'string', default: process.env.HUB_RETRY_MIN },
    'retry-max': { type: 'string', default: process.env.HUB_RETRY_MAX },
    history: { type: 'string', default: process.env.HUB_HISTORY ?? '1000' },
    heartbeat: { type: 'string', default: process.env.HUB_HEARTBEAT_MS ?? '30000' },
    port: { type: 'string', default: process.env.HUB_PORT ?? '0' },
  },
});

// ---- fault counters: everything that must stay at zero ----

const faults = {
  unhandledRejections: 0,
  uncaughtExceptions: 0,
  warnings: 0,
  warningNames: {},
  /** 'error' events on SSE responses and sockets, by code. */
  responseErrors: {},
  socketErrors: {},
  /** res.write()/res.end() with data on a response that had already ended. */
  writesAfterEnd: 0,
  /** Writes to a response whose socket was already destroyed (benign: the bytes go nowhere). */
  writesAfterDestroy: 0,
  firstProblem: undefined,
};

function note(problem) {
  faults.firstProblem ??= String(problem?.stack ?? problem).slice(0, 2000);
}

process.on('unhandledRejection', (reason) => {
  faults.unhandledRejections++;
  note(reason);
  console.error('hub-server: unhandled rejection', reason);
});
process.on('uncaughtException', (error) => {
  faults.uncaughtExceptions++;
  note(error);
  console.error('hub-server: uncaught exception', error);
});
process.on('warning', (warning) => {
  faults.warnings++;
  faults.warningNames[warning.name] = (faults.warningNames[warning.name] ?? 0) + 1;
  note(warning);
});

const count = (table, error) => {
  const code = error?.code ?? error?.name ?? 'unknown';
  table[code] = (table[code] ?? 0) + 1;
};

// ---- the hub ----

/** Imports from dist, retrying for a while: dist may be being rebuilt (tsup cleans it first). */
async function importDist(path) {
  for (let attempt = 0; ; attempt++) {
    try {
      return await import(new URL(path, import.meta.url).href);
    } catch (error) {
      if (attempt >= 20) throw error;
      await sleep(500);
    }
  }
}

const { EventManager } = await importDist('../../dist/index.js');
const { createSseHandler } = await importDist('../../dist/adapters/node.js');

const historySize = Number(args.history);
let redis;
let backend;
if (args.backend === 'redis') {
  const { RedisBackend } = await importDist('../../dist/backends/redis.js');
  const { Redis } = await import('ioredis');
  redis = new Redis(args['redis-url'], { lazyConnect: true });
  backend = new RedisBackend({ redis, prefix: args.prefix, historySize });
} else if (args.backend !== 'memory') {
  throw new Error(`--backend must be memory or redis, got ${args.backend}`);
}

const retryMs =
  args['retry-min'] !== undefined || args['retry-max'] !== undefined
    ? { min: Number(args['retry-min'] ?? args['retry-max']), max: Number(args['retry-max'] ?? args['retry-min']) }
    : Number(args.retry ?? 3000);

const hub = new EventManager({
  ...(backend ? { backend } : { historySize }),
  heartbeatMs: Number(args.heartbeat),
});
const sse = createSseHandler(hub, {
  retryMs,
  // Every load client comes from 127.0.0.1: the per-client and total caps would count them as one.
  maxConnections: Infinity,
  maxConnectionsPerClient: Infinity,
  // Clients follow at most two streams; no per-principal limit without authorize.
  streams: (req) => new URL(req.url ?? '/', 'http://x').searchParams.getAll('stream'),
});

/** Open SSE sockets (for drop) and every /events arrival (for the spread). */
const sseSockets = new Set();
const arrivals = [];
let acceptedRequests = 0;

function watch(req, res) {
  acceptedRequests++;
  arrivals.push(Date.now());
  const socket = req.socket;
  sseSockets.add(socket);
  socket.once('close', () => sseSockets.delete(socket));
  socket.on('error', (error) => count(faults.socketErrors, error));
  res.on('error', (error) => {
    count(faults.responseErrors, error);
    if (error?.code === 'ERR_STREAM_WRITE_AFTER_END') note(error);
  });
  // What the adapter writes after it ended the response, counted at the call.
  const write = res.write;
  const end = res.end;
  res.write = function (...chunk) {
    if (res.writableEnded) {
      faults.writesAfterEnd++;
      note(new Error('write after end'));
    } else if (res.destroyed) faults.writesAfterDestroy++;
    return write.apply(this, chunk);
  };
  res.end = function (...chunk) {
    if (res.writableEnded && chunk.length > 0 && typeof chunk[0] !== 'function' && chunk[0] != null) {
      faults.writesAfterEnd++;
      note(new Error('end(data) after end'));
    }
    return end.apply(this, chunk);
  };
}

const server = http.createServer((req, res) => {
  const url = new URL(req.url ?? '/', 'http://x');
  if (url.pathname === '/events') {
    watch(req, res);
    return sse(req, res);
  }
  if (url.pathname === '/stats') {
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(stats()));
    return;
  }
  res.writeHead(404).end();
});
// A thousand clients reconnecting in the same second: keep the accept queue deep enough.
server.listen({ port: Number(args.port), host: '127.0.0.1', backlog: 4096 });
await new Promise((resolve) => server.once('listening', resolve));

// How long this process's event loop was held up: what delays accepting and answering reconnects.
const loopDelay = monitorEventLoopDelay({ resolution: 10 });
loopDelay.enable();
const ms = (ns) => Math.round(ns / 1e5) / 10;

function stats() {
  return {
    eventLoopDelayMs: { p50: ms(loopDelay.percentile(50)), p99: ms(loopDelay.percentile(99)), max: ms(loopDelay.max) },
    pid: process.pid,
    backend: args.backend,
    prefix: args.prefix,
    retryMs,
    hub: hub.stats(),
    openSseSockets: sseSockets.size,
    acceptedRequests,
    publishing: publishTotals(),
    faults: structuredClone(faults),
  };
}

// ---- the publisher ----

/** Running and finished publisher loops. */
const loops = [];

function publishTotals() {
  let published = 0;
  let errors = 0;
  for (const loop of loops) {
    published += loop.published;
    errors += loop.errors;
  }
  return { loops: loops.length, running: loops.filter((loop) => !loop.finished).length, published, errors };
}

/**
 * Publishes n = from[stream] .. perStream on each stream, round-robin (one
 * event per stream per round), `rate` events per second over all streams.
 * Each publish is awaited before the next, so a stream's events are stored in
 * order (and with Redis, every stream has this one publisher).
 */
function startLoop({ streams, perStream, rate, from = {} }) {
  const next = Object.fromEntries(streams.map((stream) => [stream, from[stream] ?? 1]));
  const loop = {
    id: loops.length,
    streams,
    next,
    published: 0,
    errors: 0,
    refusedByClosedHub: 0,
    firstError: undefined,
    stopped: false,
    finished: false,
  };
  loops.push(loop);
  loop.done = (async () => {
    const started = performance.now();
    let sent = 0;
    for (;;) {
      let any = false;
      for (const stream of streams) {
        if (loop.stopped) break;
        const n = next[stream];
        if (n > perStream) continue;
        any = true;
        // Pace: event number `sent` is due at sent / rate seconds.
        const due = started + (sent * 1000) / rate;
        const wait = due - performance.now();
        if (wait >= 1) await sleep(wait);
        else if (sent % 20 === 0) await new Promise(setImmediate);
        if (loop.stopped) break;
        try {
          await hub.publish(stream, 'tick', { stream, n });
          loop.published++;
        } catch (error) {
          if (error?.code === 'ERR_HUB_CLOSED') {
            // Shutting down: this event was not accepted; whoever takes over publishes it (handoff).
            loop.refusedByClosedHub++;
            loop.stopped = true;
            break;
          }
          // Not retried: a publish that failed "may or may not have been stored". It shows as lost.
          loop.errors++;
          loop.firstError ??= String(error?.message ?? error);
        }
        next[stream] = n + 1;
        sent++;
      }
      if (!any || loop.stopped) break;
    }
    loop.finished = true;
  })();
  return loop;
}

function loopResult(selected) {
  const next = {};
  for (const loop of selected) Object.assign(next, loop.next);
  return {
    published: selected.reduce((sum, loop) => sum + loop.published, 0),
    errors: selected.reduce((sum, loop) => sum + loop.errors, 0),
    refusedByClosedHub: selected.reduce((sum, loop) => sum + loop.refusedByClosedHub, 0),
    firstError: selected.find((loop) => loop.firstError)?.firstError,
    next,
  };
}

async function stopPublishing() {
  for (const loop of loops) loop.stopped = true;
  await Promise.all(loops.map((loop) => loop.done));
  return loopResult(loops);
}

// ---- IPC ----

const commands = {
  publish: (message) => ({ loop: startLoop(message).id }),
  async published({ loop }) {
    const selected = loop === undefined ? loops : [loops[loop]].filter(Boolean);
    await Promise.all(selected.map((each) => each.done));
    return loopResult(selected);
  },
  stopPublishing,
  drop() {
    const at = Date.now();
    const sockets = [...sseSockets];
    for (const socket of sockets) socket.destroy();
    return { dropped: sockets.length, at };
  },
  arrivals: ({ since = 0 }) => ({ arrivals: arrivals.filter((time) => time >= since) }),
  stats,
};

process.on('message', async (message) => {
  const { id, cmd } = message ?? {};
  try {
    const handler = Object.hasOwn(commands, cmd) ? commands[cmd] : undefined;
    if (!handler) throw new Error(`unknown cmd ${JSON.stringify(cmd)}`);
    const result = await handler(message);
    process.send?.({ type: 'done', id, ...result });
  } catch (error) {
    process.send?.({ type: 'error', id, message: error instanceof Error ? error.message : String(error) });
  }
});

// ---- graceful shutdown ----

let shuttingDown = false;
process.on('SIGTERM', async () => {
  if (shuttingDown) return;
  shuttingDown = true;
  const began = Date.now();
  // What a deploy does: stop accepting connections, then close the hub while the publisher is
  // still running (requests in flight). hub.close() delivers what publish accepted, then ends
  // every stream cleanly; a publish after it started is refused (ERR_HUB_CLOSED) and the loop
  // stops there, so the handoff names the first event this instance did not store.
  const serverClosed = new Promise((resolve) => server.close(resolve));
  await hub.close();
  const closedStreams = Date.now() - began;
  const handoff = await stopPublishing();
  await sendAndWait({ type: 'handoff', next: handoff.next, published: handoff.published, refusedByClosedHub: handoff.refusedByClosedHub });
  // Every response has ended; the clients close their sockets. Bounded, in case one does not.
  const timedOut = await Promise.race([serverClosed.then(() => false), sleep(5000).then(() => true)]);
  if (timedOut) server.closeAllConnections();
  // Give late 'error' events (emitted on the next tick) a chance to be counted.
  await sleep(50);
  redis?.disconnect();
  const report = { ...stats(), shutdown: { hubCloseMs: closedStreams, totalMs: Date.now() - began, socketsLeftAfter5s: timedOut } };
  await sendAndWait({ type: 'shutdown', ...report });
  if (!process.send) console.log(JSON.stringify(report));
  const clean = faults.writesAfterEnd === 0 && faults.unhandledRejections === 0 && faults.uncaughtExceptions === 0;
  process.exit(clean ? 0 : 1);
});

// Forked and orphaned (the runner died): leave rather than linger with open sockets.
process.on('disconnect', () => {
  if (!shuttingDown) process.exit(0);
});

function sendAndWait(message) {
  if (!process.send || !process.connected) return Promise.resolve();
  return new Promise((resolve) => process.send(message, () => resolve()));
}

const ready = { type: 'ready', port: server.address().port, pid: process.pid };
if (process.send) process.send(ready);
else console.log(JSON.stringify(ready));
