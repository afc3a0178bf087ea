// One SSE server of the peer benchmark, driven by run.mjs over IPC as
// bench/peers/PROTOCOL.md describes:
//   node --expose-gc bench/peers/server.mjs <contender> [options as JSON]
//
// The optional second argument is a JSON object handed to the contender's
// start(options); contenders that take no options ignore it (the reliability
// benches pass e.g. `{"maxUnsentBytes":65536}` to ssecast-node).
//
// Loads ./contenders/<contender>.mjs. Beyond PROTOCOL.md's
// `start() => { port, path, publish(stream, data), close() }`, every contender's
// start() also returns:
// - `connections()`: the SSE responses open now, for the `connections` request
//   (each library counts its own: a Set, a channel's count, hub.stats());
// - `version`: the string sent in `ready`;
// and optionally (ssecast contenders) `stats()` (hub.stats()) and
// `heartbeat()` (the heartbeat scheduler's state), for the `stats` request.
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
async function load(contenderName, options) {
  let started;
  try {
    const module = await import(`./contenders/${contenderName}.mjs`);
    started = await module.start(options);
  } catch (error) {
    console.error(error);
    fail(`contender ${contenderName} could not start: ${error?.message ?? error}`);
  }
  for (const key of ['publish', 'close', 'connections']) {
    if (typeof started[key] !== 'function') fail(`contender ${contenderName}: start() returned no ${key}()`);
  }
  return started;
}

const commands = { connections, burst, paced, spread, cpu, memory, usage, stats, warnings, exit };
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

/**
 * One event every `intervalMs`, the first at once: a setTimeout chain, so the pace never catches up.
 * Optional (reliability benches): `batch` events per interval instead of one, published back to
 * back, and `streams`: event `i` goes to stream `s<i % streams>` instead of `stream`.
 */
async function paced({ stream, count, size, intervalMs, batch = 1, streams }) {
  requireCount(count, 'count');
  requireCount(size, 'size');
  if (!(intervalMs >= 0)) throw new Error(`intervalMs must be a number >= 0, got ${JSON.stringify(intervalMs)}`);
  if (!(Number.isInteger(batch) && batch >= 1)) throw new Error(`batch must be a positive integer, got ${JSON.stringify(batch)}`);
  let streamOf = () => stream;
  if (streams !== undefined) {
    if (!(Number.isInteger(streams) && streams >= 1)) throw new Error(`streams must be a positive integer, got ${JSON.stringify(streams)}`);
    const names = Array.from({ length: streams }, (_, i) => `s${i}`);
    streamOf = (i) => names[i % streams];
  }
  const start = performance.now();
  for (let i = 0; i < count; i++) {
    if (i > 0 && i % batch === 0) await sleep(intervalMs);
    const pending = publishEvent(streamOf(i), i, size);
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

/**
 * Memory as it is, without gc, plus the process's peak RSS (`maxRss`, from
 * getrusage) and the peaks of RSS, heapUsed and arrayBuffers seen by a sampler. `sampleMs`
 * starts (or restarts, peaks reset) sampling every that many ms until
 * `sampleMs: 0`; a run that never asks for it pays nothing.
 */
let sampler;
let peaks = { rss: 0, heapUsed: 0, arrayBuffers: 0, samples: 0 };
function usage({ sampleMs } = {}) {
  const now = process.memoryUsage();
  const result = {
    rss: now.rss,
    heapUsed: now.heapUsed,
    external: now.external,
    arrayBuffers: now.arrayBuffers,
    maxRss: process.resourceUsage().maxRSS * 1024,
    peakRss: Math.max(peaks.rss, now.rss),
    peakHeapUsed: Math.max(peaks.heapUsed, now.heapUsed),
    peakArrayBuffers: Math.max(peaks.arrayBuffers, now.arrayBuffers),
    samples: peaks.samples,
  };
  if (sampleMs !== undefined) {
    clearInterval(sampler);
    sampler = undefined;
    peaks = { rss: now.rss, heapUsed: now.heapUsed, arrayBuffers: now.arrayBuffers, samples: 0 };
    if (sampleMs > 0) {
      sampler = setInterval(() => {
        const m = process.memoryUsage();
        peaks.samples++;
        if (m.rss > peaks.rss) peaks.rss = m.rss;
        if (m.heapUsed > peaks.heapUsed) peaks.heapUsed = m.heapUsed;
        if (m.arrayBuffers > peaks.arrayBuffers) peaks.arrayBuffers = m.arrayBuffers;
      }, sampleMs);
      sampler.unref();
    }
  }
  return result;
}

/**
 * The contender's own counters (`stats()`: hub.stats() for ssecast, null for
 * contenders without one), its heartbeat scheduler's state when it exposes
 * one, and the process's active resources by type (timers, sockets, ...).
 */
function stats() {
  const resources = {};
  for (const type of process.getActiveResourcesInfo()) resources[type] = (resources[type] ?? 0) + 1;
  return {
    stats: typeof contender.stats === 'function' ? contender.stats() : null,
    heartbeat: typeof contender.heartbeat === 'function' ? contender.heartbeat() : null,
    resources,
  };
}

/** Process warnings (MaxListenersExceededWarning and any other) emitted since start. */
const warningLog = { count: 0, byName: {}, first: [] };
function warnings() {
  return structuredClone(warningLog);
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
  if (!name || !/^[\w-]+$/.test(name)) fail('usage: node --expose-gc bench/peers/server.mjs <contender> [options as JSON]');
  let options;
  try {
    options = process.argv[3] === undefined ? undefined : JSON.parse(process.argv[3]);
  } catch {
    fail(`the contender options must be JSON, got ${process.argv[3]}`);
  }
  // Counted from the start; Node still prints each warning to stderr as usual.
  process.on('warning', (warning) => {
    warningLog.count++;
    warningLog.byName[warning.name] = (warningLog.byName[warning.name] ?? 0) + 1;
    if (warningLog.first.length < 10) warningLog.first.push(`${warning.name}: ${warning.message}`);
  });
  // An orphan would keep its port and its CPU: leave when the runner goes.
  process.on('disconnect', () => process.exit(0));
  contender = await load(name, options);
  process.on('message', (message) => answer(message));
  process.send({ type: 'ready', port: contender.port, path: contender.path, contender: name, version: contender.version });
}

await main();
