// One SSE server of the peer benchmark, driven by run.mjs over IPC as
// bench/peers/PROTOCOL.md describes:
//   node --expose-gc bench/peers/server.mjs <contender>
//
// Loads ./contenders/<contender>.mjs. Beyond PROTOCOL.md's
// `start() => { port, path, publish(stream, data), close() }`, every contender's
// start() also returns:
// - `connections()`: the SSE responses open now, for the `connections` request
//   (each library counts its own: a Set, a channel's count, hub.stats());
// - `version`: the string sent in `ready`.
// The runner builds every payload and times every publish, so that the only
// thing that differs between contenders is the contender.
import { setTimeout as sleep } from 'node:timers/promises';
import { performance } from 'node:perf_hooks';

/** How long `exit` waits for a contender's close() before exiting anyway: below the 3 s run.mjs allows, so the answer still arrives. */
const CLOSE_TIMEOUT_MS = 2500;

function fail(message) {
  console.error(`server.mjs: ${message}`);
  process.exit(1);
}

/** Imports and starts a contender; a missing `connections()` would only show up mid-run. */
async function load(contenderName) {
  let started;
  try {
    const module = await import(`./contenders/${contenderName}.mjs`);
    started = await module.start();
  } catch (error) {
    console.error(error);
    fail(`contender ${contenderName} could not start: ${error?.message ?? error}`);
  }
  for (const key of ['publish', 'close', 'connections']) {
    if (typeof started[key] !== 'function') fail(`contender ${contenderName}: start() returned no ${key}()`);
  }
  return started;
}

const commands = { connections, burst, paced, spread, cpu, memory, exit };
let padding = '';
/** Set by main() before any request can arrive. */
let contender;
let name;

/** Runs one request and sends its answer; requests may overlap (e.g. `connections` during a `burst`). */
async function answer(message) {
  const { id, cmd } = message ?? {};
  try {
    const run = Object.hasOwn(commands, cmd) ? commands[cmd] : undefined;
    if (!run) throw new Error(`unknown cmd ${JSON.stringify(cmd)}`);
    const result = await run(message);
    if (cmd !== 'exit') process.send({ type: 'done', id, ...result });
  } catch (error) {
    process.send({ type: 'error', id, message: error instanceof Error ? error.message : String(error) });
  }
}

// ---- payloads ----

/**
 * The event data: `{"n":i,"t":<now>,"p":"xxx…"}` padded with `x` to `size`
 * bytes (longer when `size` is smaller than the JSON without padding). `t` is
 * read here, just before the caller publishes.
 */
function payload(n, size) {
  const head = `{"n":${n},"t":${performance.timeOrigin + performance.now()},"p":"`;
  const pad = size - head.length - 2;
  if (pad > padding.length) padding = 'x'.repeat(pad);
  return pad > 0 ? `${head}${padding.slice(0, pad)}"}` : `${head}"}`;
}

/**
 * Publishes event `n` on `stream`. Returns the contender's promise when it
 * returns one, else undefined, so that a synchronous contender is not charged
 * an await per event.
 */
function publishEvent(stream, n, size) {
  const result = contender.publish(stream, payload(n, size));
  return result !== null && typeof result?.then === 'function' ? result : undefined;
}

function yieldTurn() {
  return new Promise((resolve) => setImmediate(resolve));
}

/** `yieldEvery` absent or not positive: never yield. */
function yieldPeriod(yieldEvery) {
  return Number.isInteger(yieldEvery) && yieldEvery > 0 ? yieldEvery : Infinity;
}

function requireCount(value, field) {
  if (!Number.isInteger(value) || value < 0) throw new Error(`${field} must be a non-negative integer, got ${JSON.stringify(value)}`);
  return value;
}

// ---- commands ----

function connections() {
  return { connections: contender.connections() };
}

/**
 * Publishes `count` events back to back; after every `yieldEvery`-th event
 * (the last one included) it yields with setImmediate, which lets sockets
 * write and IPC requests in. `publishMs` covers the whole loop.
 */
async function burst({ stream, count, size, yieldEvery }) {
  return publishMany(() => stream, requireCount(count, 'count'), requireCount(size, 'size'), yieldPeriod(yieldEvery));
}

/** As `burst`, event `i` going to stream `s<i % streams>`. */
async function spread({ streams, count, size, yieldEvery }) {
  const names = Array.from({ length: requireCount(streams, 'streams') }, (_, i) => `s${i}`);
  if (names.length === 0) throw new Error('streams must be at least 1');
  return publishMany((i) => names[i % names.length], requireCount(count, 'count'), requireCount(size, 'size'), yieldPeriod(yieldEvery));
}

async function publishMany(streamOf, count, size, every) {
  const start = performance.now();
  for (let i = 0; i < count; i++) {
    const pending = publishEvent(streamOf(i), i, size);
    if (pending) await pending;
    if ((i + 1) % every === 0) await yieldTurn();
  }
  return { publishMs: performance.now() - start };
}

/** One event every `intervalMs`, the first at once: a setTimeout chain, so the pace never catches up. */
async function paced({ stream, count, size, intervalMs }) {
  requireCount(count, 'count');
  requireCount(size, 'size');
  if (!(intervalMs >= 0)) throw new Error(`intervalMs must be a number >= 0, got ${JSON.stringify(intervalMs)}`);
  const start = performance.now();
  for (let i = 0; i < count; i++) {
    if (i > 0) await sleep(intervalMs);
    const pending = publishEvent(stream, i, size);
    if (pending) await pending;
  }
  return { publishMs: performance.now() - start };
}

function cpu() {
  const { user, system } = process.cpuUsage();
  return { user, system };
}

/** Three collections, so that what is left is what the contender holds. */
function memory() {
  if (typeof global.gc !== 'function') throw new Error('memory needs gc(): start server.mjs with --expose-gc');
  for (let i = 0; i < 3; i++) global.gc();
  const { rss, heapUsed, external, arrayBuffers } = process.memoryUsage();
  return { rss, heapUsed, external, arrayBuffers };
}

/** Closes the contender (bounded: a stuck close must not keep the run waiting), answers, exits. */
async function exit({ id }) {
  let timer;
  const timeout = new Promise((resolve) => (timer = setTimeout(resolve, CLOSE_TIMEOUT_MS, 'timeout')));
  const closing = contender.close().then(
    () => 'closed',
    (error) => console.error(`server.mjs: ${name}: close() failed; exiting anyway`, error),
  );
  const outcome = await Promise.race([closing, timeout]);
  clearTimeout(timer);
  if (outcome === 'timeout') console.error(`server.mjs: ${name}: close() took over ${CLOSE_TIMEOUT_MS} ms; exiting anyway`);
  process.send({ type: 'done', id }, () => process.exit(0));
}

// ---- main ----

async function main() {
  name = process.argv[2];
  if (!process.send) fail('server.mjs talks over IPC: start it with child_process.fork');
  if (!name || !/^[\w-]+$/.test(name)) fail('usage: node --expose-gc bench/peers/server.mjs <contender>');
  // An orphan would keep its port and its CPU: leave when the runner goes.
  process.on('disconnect', () => process.exit(0));
  contender = await load(name);
  process.on('message', (message) => answer(message));
  process.send({ type: 'ready', port: contender.port, path: contender.path, contender: name, version: contender.version });
}

await main();
