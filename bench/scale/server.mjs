// One SSE server of the scale bench, forked by bench/scale/run.mjs and driven
// over IPC like the peer bench's server (bench/peers/PROTOCOL.md: a request
// carries an id, the answer is `done` or `error`, `ready` comes first):
//   node --expose-gc bench/scale/server.mjs <contender> [options as JSON]
//
// The contenders are the peer bench's own where they can be used as they are,
// so that the two benches measure the same servers:
// - `ssecast`: bench/peers/contenders/ssecast-node.mjs, given `heartbeatMs`;
// - `better-sse`: bench/peers/contenders/better-sse.mjs, unchanged: its
//   sessions keep themselves alive with their default 10 s keep-alive comment;
// - `raw`: ./contenders/raw-heartbeat.mjs, raw.mjs plus one heartbeat timer.
//
// Requests: `connections`, `memory` (gc three times first), `cpu`, `publish`
// (one event on `stream`, answered with the publish time stamped into it),
// `resources` (open file descriptors and their limit), `stats`, `exit`.
import fs from 'node:fs';
import { performance } from 'node:perf_hooks';
import v8 from 'node:v8';
import { openFilesLimit } from './lib.mjs';

const CONTENDERS = {
  ssecast: '../peers/contenders/ssecast-node.mjs',
  'better-sse': '../peers/contenders/better-sse.mjs',
  raw: './contenders/raw-heartbeat.mjs',
};
/** Below the runner's 3 s for `exit`, so the answer still arrives. */
const CLOSE_TIMEOUT_MS = 2500;

let contender;
let name;
let sequence = 0;

function fail(message) {
  console.error(`scale/server.mjs: ${message}`);
  process.exit(1);
}

const wallClock = () => performance.timeOrigin + performance.now();

/**
 * The peer bench's payload, `{"n":…,"t":<publish time>,"p":"xxx…"}` padded to
 * `size` bytes, so that a frame here is the same size as there.
 */
function payload(n, t, size) {
  const head = `{"n":${n},"t":${t},"p":"`;
  const pad = Math.max(0, size - head.length - 2);
  return `${head}${'x'.repeat(pad)}"}`;
}

const commands = {
  connections: () => ({ connections: contender.connections() }),
  cpu: () => {
    const { user, system } = process.cpuUsage();
    return { user, system };
  },
  memory: () => {
    if (typeof global.gc !== 'function') throw new Error('memory needs gc(): start with --expose-gc');
    for (let i = 0; i < 3; i++) global.gc();
    const { rss, heapUsed, heapTotal, external, arrayBuffers } = process.memoryUsage();
    return { rss, heapUsed, heapTotal, external, arrayBuffers };
  },
  /** `t` is read just before publish is called and travels in the data, as in the peer bench. */
  publish: async ({ stream = 's0', size = 100 }) => {
    const t = wallClock();
    const started = performance.now();
    const pending = contender.publish(stream, payload(sequence++, t, size));
    if (pending && typeof pending.then === 'function') await pending;
    return { t, publishMs: performance.now() - started };
  },
  resources: () => {
    let fds = null;
    try {
      fds = fs.readdirSync('/proc/self/fd').length;
    } catch {}
    return { fds, fdLimit: openFilesLimit(), heapSizeLimit: v8.getHeapStatistics().heap_size_limit };
  },
  stats: () => ({
    stats: typeof contender.stats === 'function' ? contender.stats() : null,
    heartbeat: typeof contender.heartbeat === 'function' ? contender.heartbeat() : null,
  }),
  exit: async ({ id }) => {
    let timer;
    const timeout = new Promise((resolve) => (timer = setTimeout(resolve, CLOSE_TIMEOUT_MS, 'timeout')));
    const closing = Promise.resolve(contender.close()).then(
      () => 'closed',
      (error) => console.error(`scale/server.mjs: ${name}: close() failed; exiting anyway`, error),
    );
    const outcome = await Promise.race([closing, timeout]);
    clearTimeout(timer);
    if (outcome === 'timeout') console.error(`scale/server.mjs: ${name}: close() took over ${CLOSE_TIMEOUT_MS} ms; exiting anyway`);
    process.send({ type: 'done', id }, () => process.exit(0));
    return undefined;
  },
};

async function answer(message) {
  const { id, cmd } = message ?? {};
  try {
    if (!Object.hasOwn(commands, cmd)) throw new Error(`unknown cmd ${JSON.stringify(cmd)}`);
    const result = await commands[cmd](message);
    if (cmd !== 'exit') process.send({ type: 'done', id, ...result });
  } catch (error) {
    process.send({ type: 'error', id, message: error instanceof Error ? error.message : String(error) });
  }
}

async function main() {
  name = process.argv[2];
  if (!process.send) fail('talks over IPC: start it with child_process.fork');
  if (!Object.hasOwn(CONTENDERS, name)) fail(`usage: server.mjs <${Object.keys(CONTENDERS).join('|')}> [options as JSON]`);
  const options = process.argv[3] === undefined ? {} : JSON.parse(process.argv[3]);
  // An orphan would keep 100,000 sockets and their memory: leave with the runner.
  process.on('disconnect', () => process.exit(0));
  try {
    const module = await import(new URL(CONTENDERS[name], import.meta.url).href);
    contender = await module.start(options);
  } catch (error) {
    console.error(error);
    fail(`contender ${name} could not start: ${error?.message ?? error}`);
  }
  process.on('message', (message) => answer(message));
  process.send({ type: 'ready', port: contender.port, path: contender.path, contender: name, version: contender.version });
}

await main();
