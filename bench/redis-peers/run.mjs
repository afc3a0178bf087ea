// The Redis peer bench: ssecast against socket.io 4 with its two Redis
// adapters, each as two server instances (separate processes) on one Redis,
// with the publisher on instance A and the clients split evenly over A and B.
//
//   npm run build && node bench/redis-peers/run.mjs [--quick] [--runs ssecast,socketio-pubsub/ws-raw]
//     [--clients 1000] [--client-procs 2] [--paced 200] [--interval 50] [--burst 1000] [--window 64]
//     [--windows 64,256,1024] [--limit 600] [--out path] [--dist path/to/dist]
//
// ssecast is loaded from dist/ (built by `npm run build`), or from the dist/ of
// another checkout given with --dist (e.g. a clone of one commit, when the work
// tree is being edited); the commit is read from the checkout that dist/ is in.
//
// A run is one contender read by one kind of client (clients.mjs): ssecast by a
// lean SSE reader; each socket.io setup by a lean raw WebSocket reader and by
// socket.io-client. For each run, with fresh Redis names:
//   1. memory per connection on A and on B: RSS and heap after gc, minus the
//      same before any client connected, divided by the connections it holds;
//   2. publish rate on A, to a room/stream nobody follows (the publish path,
//      not the delivery): one publish awaited at a time, then 64, 256, 1024 in
//      flight (what "awaited" means per contender: contenders.mjs);
//   3. paced: one event every `interval` ms; latency publish → arrival on the
//      clients of instance B, so every event crossed Redis;
//   4. burst: `burst` events, `window` publishes in flight; deliveries per
//      second until every client has every event, and per client whether it got
//      each exactly once and in order. A burst with anything missing gets no rate.
// Events carry their publish time (performance.timeOrigin + performance.now(),
// a clock all processes share; each offset is measured and taken off).
//
// Writes bench/results/redis-peers.json, then redis-peers.md and .svg (report.mjs);
// a partial run (--quick, --runs, --clients) writes redis-peers-partial.* instead.
// Exits 1 when any client missed, duplicated or reordered an event, a publish
// failed, or a run failed. Every child process is killed and every Redis key
// the run created is deleted at the end, on failure and at the time limit.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { startChild } from '../peers/child.mjs';
import { writeReport } from './report.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const REPO = path.join(HERE, '..', '..');
const REDIS_URL = process.env.REDIS_URL || 'redis://127.0.0.1:6379';

/** Every run, in the order they go. */
const ALL_RUNS = [
  { contender: 'ssecast', client: 'sse' },
  { contender: 'socketio-streams', client: 'ws-raw' },
  { contender: 'socketio-streams', client: 'socketio-client' },
  { contender: 'socketio-pubsub', client: 'ws-raw' },
  { contender: 'socketio-pubsub', client: 'socketio-client' },
];
const runLabel = (r) => `${r.contender}/${r.client}`;

/** A wait that sees nothing new arrive for this long stops and reports what is missing. */
const QUIET_MS = 10_000;
/** Warm-up events after every client is live, unmeasured: both ends' delivery code is compiled before the phases. */
const WARM_EVENTS = 100;
/** The longest one burst may take to arrive; past it the burst is reported incomplete. */
const BURST_TIMEOUT_MS = 120_000;

const round = (x, digits = 2) => (x === null || x === undefined || !Number.isFinite(x) ? null : Number(x.toFixed(digits)));
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const now = () => performance.timeOrigin + performance.now();
const runStarted = performance.now();
const say = (text) => process.stderr.write(`[${((performance.now() - runStarted) / 1000).toFixed(1).padStart(6)} s] ${text}\n`);

function parseOptions(argv) {
  const options = {
    runs: ALL_RUNS,
    clients: 1000,
    clientProcs: 2,
    // 20 events/s to 1,000 clients: a load every contender keeps up with, so latency is the path and not a queue.
    paced: { events: 200, intervalMs: 50 },
    // 1,000,000 deliveries: socket.io spends some 13 µs of server CPU on each, so a
    // larger burst would take minutes per socket.io run on a 2-core machine.
    burst: { events: 1000, window: 64 },
    rate: { ms: 1000, windows: [64, 256, 1024] },
    limitSeconds: 600,
    out: path.join(HERE, '..', 'results', 'redis-peers.json'),
    dist: path.join(REPO, 'dist'),
    quick: false,
  };
  const list = (value) =>
    value
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean);
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const value = () => {
      const v = arg.includes('=') ? arg.slice(arg.indexOf('=') + 1) : argv[++i];
      if (v === undefined) throw new Error(`${arg} needs a value`);
      return v;
    };
    const name = arg.split('=')[0];
    if (name === '--quick')
      Object.assign(options, {
        quick: true,
        clients: 100,
        paced: { events: 100, intervalMs: 20 },
        burst: { events: 500, window: 64 },
        rate: { ms: 500, windows: [64, 256, 1024] },
        limitSeconds: 180,
      });
    else if (name === '--runs') {
      const wanted = list(value());
      options.runs = ALL_RUNS.filter((r) => wanted.includes(runLabel(r)) || wanted.includes(r.contender));
      if (options.runs.length === 0) throw new Error(`--runs matches none of ${ALL_RUNS.map(runLabel).join(', ')}`);
    } else if (name === '--clients') options.clients = Number(value());
    else if (name === '--client-procs') options.clientProcs = Number(value());
    else if (name === '--paced') options.paced = { ...options.paced, events: Number(value()) };
    else if (name === '--interval') options.paced = { ...options.paced, intervalMs: Number(value()) };
    else if (name === '--burst') options.burst = { ...options.burst, events: Number(value()) };
    else if (name === '--window') options.burst = { ...options.burst, window: Number(value()) };
    else if (name === '--windows') options.rate = { ...options.rate, windows: list(value()).map(Number) };
    else if (name === '--limit') options.limitSeconds = Number(value());
    else if (name === '--out') options.out = path.resolve(value());
    else if (name === '--dist') options.dist = path.resolve(value());
    else throw new Error(`unknown option ${arg}`);
  }
  const positive = [options.clients, options.clientProcs, options.paced.events, options.burst.events, options.burst.window];
  if (!positive.every((n) => Number.isInteger(n) && n > 0) || options.clients % 2 !== 0)
    throw new Error('--clients (even), --client-procs, --paced, --burst and --window take positive integers');
  // A partial run must not overwrite the committed results: it goes beside them (git ignores *-partial.*).
  const partial = argv.some((arg) => /^--(quick|runs|clients)\b/.test(arg));
  if (partial && !argv.some((arg) => arg.startsWith('--out'))) options.out = options.out.replace(/\.json$/, '-partial.json');
  return options;
}

// ---------------------------------------------------------------- helpers

/** Nearest-rank percentiles of latencies (ms). */
function latencySummary(values) {
  if (values.length === 0) return { count: 0, p50: null, p99: null, max: null };
  const sorted = Float64Array.from(values).sort();
  const rank = (q) => sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))];
  return { count: sorted.length, p50: round(rank(0.5), 3), p99: round(rank(0.99), 3), max: round(sorted[sorted.length - 1], 3) };
}

/** The other process's clock minus ours, read at the shortest IPC round trip of a few. */
async function clockOffset(child) {
  let best = { rtt: Infinity, offset: 0 };
  for (let i = 0; i < 20; i++) {
    const t0 = now();
    const { now: theirs } = await child.call('clock');
    const t1 = now();
    if (t1 - t0 < best.rtt) best = { rtt: t1 - t0, offset: theirs - (t0 + t1) / 2 };
  }
  return { offsetMs: round(best.offset, 3), roundTripMs: round(best.rtt, 3) };
}

const cpuMicros = (before, after) => after.user - before.user + (after.system - before.system);

/**
 * Sums what every client process reports of one phase. `skews[k]` is client
 * process k's clock minus A's, taken off its latencies: a process's timeOrigin
 * is read at its start and can be a few ms off on a busy machine.
 */
function merge(parts, expectedPerClient, skews) {
  const sum = (key) => parts.reduce((n, p) => n + p[key], 0);
  const clients = sum('clients');
  return {
    clients,
    complete: sum('complete'),
    expectedDeliveries: expectedPerClient === undefined ? null : clients * expectedPerClient,
    received: sum('received'),
    missing: expectedPerClient === undefined ? null : sum('missing'),
    duplicates: sum('duplicates'),
    outOfOrder: sum('outOfOrder'),
    closedConnections: sum('closed'),
    stray: sum('stray'),
    lastArrival: Math.max(...parts.map((p, k) => p.lastArrival - skews[k])),
    latencyB: latencySummary(parts.flatMap((p, k) => p.latencies.map((v) => v - skews[k]))),
  };
}

/** Deletes every key holding `token`; returns how many went and how many are left. */
async function deleteKeys(admin, token) {
  const pattern = `*${token}*`;
  let deleted = 0;
  let cursor = '0';
  do {
    const [next, keys] = await admin.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
    cursor = next;
    if (keys.length) deleted += await admin.del(...keys);
  } while (cursor !== '0');
  let left = 0;
  cursor = '0';
  do {
    const [next, keys] = await admin.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
    cursor = next;
    left += keys.length;
  } while (cursor !== '0');
  return { deleted, left };
}

/**
 * The share of all cores busy over `ms` while this bench is idle (between runs):
 * the other work on the machine. The load average cannot tell it, as it still
 * holds the bench's own previous run. Null where there is no /proc/stat.
 */
async function otherWorkShare(ms) {
  const read = () => {
    const fields = fs.readFileSync('/proc/stat', 'utf8').split('\n', 1)[0].trim().split(/\s+/).slice(1).map(Number);
    const idle = fields[3] + (fields[4] ?? 0);
    return { total: fields.reduce((a, b) => a + b, 0), idle };
  };
  try {
    const before = read();
    await sleep(ms);
    const after = read();
    return round(1 - (after.idle - before.idle) / (after.total - before.total), 2);
  } catch {
    return null;
  }
}

function git(cwd, args) {
  try {
    return execFileSync('git', args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return null;
  }
}

// ---------------------------------------------------------------- one run

/** Every child started and not yet known to be gone, so any exit path can kill them. */
const children = new Set();

function start(label, file, args, execArgv = []) {
  const child = startChild(label, file, args, execArgv);
  children.add(child);
  return child;
}

async function stopAll(list) {
  await Promise.all(
    list.map(async (child) => {
      await child.stop().catch(() => child.kill());
      children.delete(child);
    }),
  );
}

async function runOne(spec, options, name, result) {
  const label = runLabel(spec);
  const half = options.clients / 2;
  const config = (instance) => JSON.stringify({ contender: spec.contender, redisUrl: REDIS_URL, name, instance, distDir: options.distDir });
  const serverFile = path.join(HERE, 'server.mjs');
  const a = start(`${label} A`, serverFile, [config('A')], ['--expose-gc']);
  const b = start(`${label} B`, serverFile, [config('B')], ['--expose-gc']);
  const procs = [];
  try {
    const [readyA, readyB] = await Promise.all([a.ready, b.ready]);
    result.version = readyA.version;

    // The publish path's code is compiled before the baseline, so the difference is the connections'.
    await a.call('rate', { window: 16, ms: 300 });
    const baseline = { A: await a.call('memory'), B: await b.call('memory') };

    say(`${label}: opening ${options.clients} clients (${half} on A, ${half} on B) from ${options.clientProcs} processes`);
    const perProc = (total, k) => Math.floor(total / options.clientProcs) + (k < total % options.clientProcs ? 1 : 0);
    for (let k = 0; k < options.clientProcs; k++) procs.push(start(`${label} clients${k}`, path.join(HERE, 'clients.mjs'), []));
    await Promise.all(procs.map((p) => p.ready));
    const opened = await Promise.all(
      procs.map((p, k) =>
        p.call(
          'open',
          {
            kind: spec.client,
            targets: [
              { instance: 'A', port: readyA.port, path: readyA.path, count: perProc(half, k) },
              { instance: 'B', port: readyB.port, path: readyB.path, count: perProc(half, k) },
            ],
          },
          60_000,
        ),
      ),
    );
    const failed = opened.reduce((n, o) => n + o.failed, 0);
    const failures = {};
    for (const o of opened) for (const [why, n] of Object.entries(o.failures)) failures[why] = (failures[why] ?? 0) + n;
    if (failed > 0) throw new Error(`${failed} of ${options.clients} clients did not connect (${JSON.stringify(failures)})`);
    const connections = { A: (await a.call('connections')).connections, B: (await b.call('connections')).connections };
    result.connections = connections;
    if (connections.A !== half || connections.B !== half)
      throw new Error(`the instances hold ${connections.A} and ${connections.B} connections, not ${half} each`);

    const clocks = {
      A: await clockOffset(a),
      B: await clockOffset(b),
      clients: await Promise.all(procs.map(clockOffset)),
    };
    result.clocks = clocks;
    const skews = clocks.clients.map((c) => c.offsetMs - clocks.A.offsetMs);

    // A client can be open before its subscription is live (ssecast subscribes after the response head,
    // the streams adapter reads from "$"): publish until every client has had an event.
    say(`${label}: warm-up`);
    await Promise.all(procs.map((p) => p.call('reset', { phase: 'warm' })));
    let warm = 0;
    const liveBy = performance.now() + 20_000;
    for (;;) {
      await a.call('warm', { from: warm, count: 1, window: 1 });
      warm++;
      const seen = await Promise.all(procs.map((p) => p.call('wait', { lastIndex: warm - 1, quietMs: 0, timeoutMs: 0 })));
      if (seen.every((s) => s.minCount > 0)) break;
      if (performance.now() > liveBy) throw new Error('warm-up: some clients received nothing within 20 s');
      await sleep(20);
    }
    await a.call('warm', { from: warm, count: WARM_EVENTS, window: 16 });
    warm += WARM_EVENTS;
    const warmed = await Promise.all(procs.map((p) => p.call('wait', { lastIndex: warm - 1, quietMs: QUIET_MS, timeoutMs: 60_000 })));
    if (warmed.some((w) => w.complete !== w.clients)) throw new Error('warm-up: not every client got the last warm-up event');

    say(`${label}: memory`);
    const after = { A: await a.call('memory'), B: await b.call('memory') };
    const perConnection = (instance) => ({
      rssKiB: round((after[instance].rss - baseline[instance].rss) / connections[instance] / 1024, 1),
      heapKiB: round((after[instance].heapUsed - baseline[instance].heapUsed) / connections[instance] / 1024, 1),
    });
    result.memory = {
      A: perConnection('A'),
      B: perConnection('B'),
      mean: {
        rssKiB: round((perConnection('A').rssKiB + perConnection('B').rssKiB) / 2, 1),
        heapKiB: round((perConnection('A').heapKiB + perConnection('B').heapKiB) / 2, 1),
      },
    };

    say(`${label}: publish rate, sequential and ${options.rate.windows.join(', ')} in flight`);
    result.publish = {};
    for (const window of [1, ...options.rate.windows]) {
      const r = await a.call('rate', { window, ms: options.rate.ms }, options.rate.ms + 30_000);
      result.publish[window] = { events: r.events, failed: r.failed, eventsPerSecond: Math.round(r.eventsPerSecond) };
    }

    const { events: pacedEvents, intervalMs } = options.paced;
    say(`${label}: paced, ${pacedEvents} events, one every ${intervalMs} ms`);
    await Promise.all(procs.map((p) => p.call('reset', { phase: 'paced', expected: pacedEvents, verify: true, latency: 'B' })));
    const pacedPublished = await a.call('paced', { count: pacedEvents, intervalMs }, pacedEvents * intervalMs + 60_000);
    const pacedSeen = merge(
      await Promise.all(procs.map((p) => p.call('wait', { expected: pacedEvents, quietMs: QUIET_MS, timeoutMs: 60_000 }, 120_000))),
      pacedEvents,
      skews,
    );
    result.paced = {
      ...pacedSeen,
      publishFailed: pacedPublished.failed,
      publishError: pacedPublished.firstError,
      publishResolvedMs: {
        p50: round(pacedPublished.ackMs.p50, 3),
        p99: round(pacedPublished.ackMs.p99, 3),
        max: round(pacedPublished.ackMs.max, 3),
      },
    };
    delete result.paced.lastArrival;

    const { events: burstEvents, window } = options.burst;
    say(`${label}: burst, ${burstEvents} events, ${window} in flight`);
    await Promise.all(procs.map((p) => p.call('reset', { phase: 'burst', expected: burstEvents, verify: true, latency: 'B-sample' })));
    const cpuBefore = { A: await a.call('cpu'), B: await b.call('cpu'), clients: await Promise.all(procs.map((p) => p.call('cpu'))) };
    const burstPublished = await a.call('burst', { count: burstEvents, window }, BURST_TIMEOUT_MS);
    const burstSeen = merge(
      await Promise.all(
        procs.map((p) =>
          p.call('wait', { expected: burstEvents, quietMs: QUIET_MS, timeoutMs: BURST_TIMEOUT_MS }, BURST_TIMEOUT_MS + 10_000),
        ),
      ),
      burstEvents,
      skews,
    );
    const cpuAfter = { A: await a.call('cpu'), B: await b.call('cpu'), clients: await Promise.all(procs.map((p) => p.call('cpu'))) };
    const elapsedMs = burstSeen.lastArrival - burstPublished.startedAt;
    const intact = burstSeen.missing === 0 && burstSeen.duplicates === 0 && burstSeen.outOfOrder === 0 && burstPublished.failed === 0;
    const serverCpu = cpuMicros(cpuBefore.A, cpuAfter.A) + cpuMicros(cpuBefore.B, cpuAfter.B);
    const clientCpu = cpuBefore.clients.map((c, k) => cpuMicros(c, cpuAfter.clients[k]));
    result.burst = {
      ...burstSeen,
      publishFailed: burstPublished.failed,
      publishError: burstPublished.firstError,
      publishSeconds: round((burstPublished.publishedAt - burstPublished.startedAt) / 1000, 3),
      publishedPerSecond: Math.round(burstEvents / ((burstPublished.publishedAt - burstPublished.startedAt) / 1000)),
      // A rate only when every client got every event once and in order: a partial count would flatter it.
      deliverySeconds: intact ? round(elapsedMs / 1000, 3) : null,
      deliveriesPerSecond: intact ? Math.round(burstSeen.expectedDeliveries / (elapsedMs / 1000)) : null,
      serverCpuMicrosPerDelivery: burstSeen.received ? round(serverCpu / burstSeen.received, 2) : null,
      serverCpuSeconds: { A: round(cpuMicros(cpuBefore.A, cpuAfter.A) / 1e6, 2), B: round(cpuMicros(cpuBefore.B, cpuAfter.B) / 1e6, 2) },
      // Each client process's CPU over the burst as a share of one core, to tell whether the readers limited it.
      clientCpuShare: clientCpu.map((us) => round(us / 1000 / elapsedMs, 2)),
    };
    delete result.burst.lastArrival;

    result.stats = { A: (await a.call('stats')).stats, B: (await b.call('stats')).stats };
  } finally {
    await stopAll([...procs, a, b]);
  }
}

// ---------------------------------------------------------------- main

/**
 * A copy of dist/ for this run: other people may rebuild dist/ in the same work
 * tree meanwhile, and a rebuild halfway through would change, or break, what the
 * later runs load. Returns the copy's path and when dist/ was built.
 */
function snapshotDist(dist) {
  const entry = path.join(dist, 'backends', 'redis.js');
  if (!fs.existsSync(entry)) {
    console.error(`bench/redis-peers: no ${entry}; run \`npm run build\` first (npm run bench:redis-peers does).`);
    process.exit(1);
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ssecast-redis-peers-'));
  fs.cpSync(dist, path.join(dir, 'dist'), { recursive: true });
  return { dir, distDir: path.join(dir, 'dist'), builtAt: fs.statSync(entry).mtime.toISOString() };
}

async function main() {
  const options = parseOptions(process.argv.slice(2));
  const snapshot = snapshotDist(options.dist);
  options.distDir = snapshot.distDir;
  process.once('exit', () => fs.rmSync(snapshot.dir, { recursive: true, force: true }));
  const token = `rp-${randomBytes(5).toString('hex')}`;
  const admin = new Redis(REDIS_URL, {
    lazyConnect: true,
    connectTimeout: 2000,
    commandTimeout: 5000,
    maxRetriesPerRequest: 0,
    enableOfflineQueue: false,
    retryStrategy: () => null,
  });
  let connectionError;
  admin.on('error', (error) => (connectionError ??= error));
  let redisVersion;
  try {
    await Promise.race([admin.connect(), sleep(3000).then(() => Promise.reject(new Error('no answer within 3 s')))]);
    redisVersion = /redis_version:(\S+)/.exec(await admin.info('server'))?.[1] ?? 'unknown';
  } catch (error) {
    console.error(
      `bench/redis-peers: Redis at ${new URL(REDIS_URL).host} does not answer (${connectionError?.message ?? error?.message ?? error}). Start redis-server, or point REDIS_URL at one.`,
    );
    admin.disconnect();
    process.exit(1);
  }

  let cleaning;
  const cleanUp = () =>
    (cleaning ??= (async () => {
      for (const child of children) child.kill();
      children.clear();
      const keys = await deleteKeys(admin, token).catch((error) => ({ error: String(error?.message ?? error) }));
      await admin.quit().catch(() => admin.disconnect());
      return keys;
    })());
  const abort = (why) => {
    console.error(`bench/redis-peers: ${why}; killing every child process and deleting the run's Redis keys`);
    void Promise.race([cleanUp(), sleep(5000)]).finally(() => process.exit(1));
  };
  const watchdog = setTimeout(() => abort(`still running after ${options.limitSeconds} s`), options.limitSeconds * 1000);
  watchdog.unref();
  process.once('SIGINT', () => abort('interrupted'));
  process.once('SIGTERM', () => abort('terminated'));
  // Whatever way this process ends, no child outlives it.
  process.once('exit', () => {
    for (const child of children) child.kill();
  });

  const checkout = path.dirname(options.dist);
  const srcChanges = git(checkout, ['status', '--porcelain', '--', 'src']);
  const result = {
    date: new Date().toISOString(),
    commit: git(checkout, ['rev-parse', '--short', 'HEAD']),
    // dist/ is built from the work tree: uncommitted changes under src/ are part of what was measured.
    srcUncommitted: srcChanges ? srcChanges.split('\n').map((line) => line.trim()) : [],
    distBuiltAt: snapshot.builtAt,
    machine: {
      node: process.version,
      cpu: os.cpus()[0]?.model,
      cores: os.cpus().length,
      os: `${os.type()} ${os.release()} ${os.arch()}`,
      memoryGiB: round(os.totalmem() / 2 ** 30, 1),
      // Other work on the machine moves these figures, the tail latencies most.
      loadAverage1m: round(os.loadavg()[0], 2),
    },
    redis: { version: redisVersion, address: new URL(REDIS_URL).host, token },
    settings: {
      quick: options.quick,
      clients: options.clients,
      clientsPerInstance: options.clients / 2,
      clientProcesses: options.clientProcs,
      paced: options.paced,
      burst: options.burst,
      rate: { seconds: options.rate.ms / 1000, windows: [1, ...options.rate.windows] },
      dataBytes: Buffer.byteLength(
        JSON.stringify({
          i: 4999,
          t: now(),
          line: 'src/backends/redis.ts(214,7): compiled 42 modules in 1.8s, 0 warnings, cache hit ratio 0.97',
        }),
      ),
    },
    runs: [],
  };

  for (const [k, spec] of options.runs.entries()) {
    const entry = {
      contender: spec.contender,
      client: spec.client,
      loadAverage1m: round(os.loadavg()[0], 2),
      otherWorkShare: await otherWorkShare(2000),
    };
    result.runs.push(entry);
    const name = `${token}-${k}`;
    try {
      await runOne(spec, options, name, entry);
    } catch (error) {
      entry.error = String(error?.message ?? error);
      say(`${runLabel(spec)} failed: ${entry.error}`);
    }
    entry.redisCleanup = await deleteKeys(admin, name).catch((error) => ({ error: String(error?.message ?? error) }));
    if (!entry.error) summarize(entry, result.settings);
  }

  say('cleaning up');
  result.cleanup = await cleanUp();
  clearTimeout(watchdog);
  result.runSeconds = round((performance.now() - runStarted) / 1000, 1);

  fs.mkdirSync(path.dirname(options.out), { recursive: true });
  fs.writeFileSync(options.out, `${JSON.stringify(result, null, 2)}\n`);
  const written = writeReport(options.out);
  for (const file of [options.out, ...written]) say(`wrote ${path.relative(process.cwd(), file)}`);

  const problems = [];
  for (const r of result.runs) {
    const label = runLabel(r);
    if (r.error) problems.push(`${label}: ${r.error}`);
    for (const phase of ['paced', 'burst']) {
      const x = r[phase];
      if (!x) continue;
      for (const key of ['missing', 'duplicates', 'outOfOrder', 'publishFailed'])
        if (x[key]) problems.push(`${label} ${phase}: ${x[key]} ${key === 'outOfOrder' ? 'out of order' : key}`);
    }
    const rateFailed = Object.values(r.publish ?? {}).reduce((n, x) => n + x.failed, 0);
    if (rateFailed) problems.push(`${label} publish rate: ${rateFailed} publishes failed`);
  }
  if (result.cleanup?.left) problems.push(`${result.cleanup.left} Redis keys of the run are left`);
  if (problems.length) {
    console.error(`bench/redis-peers: FAILED\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    process.exitCode = 1;
  }
}

/** One line per finished run on stdout, as the runs complete. */
function summarize(r, settings) {
  const rate = (w) => r.publish?.[w]?.eventsPerSecond?.toLocaleString('en-US') ?? '-';
  const l = r.paced.latencyB;
  const b = r.burst;
  console.log(
    [
      runLabel(r).padEnd(34),
      `paced B p50/p99/max ${l.p50}/${l.p99}/${l.max} ms`,
      `burst ${b.deliveriesPerSecond === null ? 'INCOMPLETE' : `${b.deliveriesPerSecond.toLocaleString('en-US')}/s`} (missing ${b.missing}, dup ${b.duplicates}, ooo ${b.outOfOrder})`,
      `publish ${settings.rate.windows.map(rate).join(' / ')} /s`,
      `mem ${r.memory.mean.rssKiB}/${r.memory.mean.heapKiB} KiB`,
    ].join(' | '),
  );
}

await main();
