// The peer benchmark's orchestrator (bench/peers/PROTOCOL.md): for each
// contender, one server process (`server.mjs <contender>`) and one load-client
// process, both on 127.0.0.1 and both driven from here over IPC, so that the
// server's CPU and memory are its own and the client never shares its core.
//
// Per contender and per N connections on one stream:
//   (c) memory per open connection (RSS and heap, after gc, minus a baseline);
//   (a) paced latency: 200 events, one every 15 ms;
//   (b, d) burst: as many events as fast as they go, deliveries per second at the
//       clients and the server's CPU per delivered event; a burst whose events did
//       not all arrive gets no rate at all, only what was delivered;
// and once per contender:
//   (e) many streams: 10,000 connections over 1,000 streams, then over 10 streams,
//       the same 50,000 deliveries each, so the cost of the number of streams shows;
//   (f) churn: 100,000 connect/head/reset cycles, then the server's memory growth.
// Every contender has a time limit; one that fails or runs over is recorded and
// the run goes on with the next.
//
//   npm run build && node bench/peers/run.mjs [--quick] [--contenders raw,ssecast-node]
//     [--n 100,1000,10000] [--churn 100000] [--limit 360] [--server path] [--out path]
// Writes bench/results/peers.json, then peers.md and peers.svg (report.mjs); a partial run
// (--quick, --contenders, --n, --churn) writes peers-partial.* instead.
// The table goes to stdout as rows complete; progress to stderr.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { settle, startChild } from './child.mjs';
import { writeReport } from './report.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ALL_CONTENDERS = [
  'raw',
  'raw-coalesce',
  'raw-coalesce-ids',
  'better-sse',
  'sse-channel',
  'fastify-sse',
  'ssecast-node',
  'ssecast-fastify',
];

/** Event data size in bytes, the same in every phase. */
const SIZE = 100;
const PACED = { events: 200, intervalMs: 15, maxSample: 50 };
/** Burst events: at most 2,000, and about 2,000,000 deliveries at large N so 10,000 connections finish in seconds. */
const BURST = { maxEvents: 2000, deliveries: 2_000_000, yieldEvery: 20, sample: 20, timeoutMs: 120_000 };
/**
 * The burst is run twice: published in one go (the publisher never yields,
 * as a loop of `publish` calls does), and yielding to the event loop every
 * `BURST.yieldEvery` events (a publisher fed by I/O). The first is the
 * headline; the second shows what coalescing gains when a tick holds few events.
 */
const ONE_TICK = 0;
/** An unmeasured burst at the first N, so the first measured one is not also the JIT's warm-up. */
const WARMUP_EVENTS = 500;
/** Both layouts deliver 50,000 events: 5,000 publishes to 10 connections each, or 50 publishes to 1,000. */
const MANY_STREAMS = [
  { label: '1000 streams', connections: 10_000, streams: 1000, publishes: 5000 },
  { label: '10 streams', connections: 10_000, streams: 10, publishes: 50 },
];
const CHURN_CONCURRENCY = 100;
/** A wait that sees nothing arrive for this long stops early and reports what was delivered. */
const QUIET_MS = 15_000;

const round = (x, digits = 2) => (x === null || x === undefined || !Number.isFinite(x) ? null : Number(x.toFixed(digits)));
const runStarted = performance.now();
/** Progress, timestamped from the start of the run, on stderr so stdout stays a table. */
const say = (text) => process.stderr.write(`[${((performance.now() - runStarted) / 1000).toFixed(1).padStart(6)} s] ${text}\n`);

/** Command-line options over the defaults; `--quick` is a short run for checking the harness. */
function parseOptions(argv) {
  const options = {
    contenders: ALL_CONTENDERS,
    ns: [100, 1000, 10_000],
    churn: 100_000,
    limitSeconds: 360,
    server: path.join(HERE, 'server.mjs'),
    out: path.join(HERE, '..', 'results', 'peers.json'),
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
    if (name === '--quick') Object.assign(options, { quick: true, ns: [100, 1000], churn: 10_000 });
    else if (name === '--contenders') options.contenders = list(value());
    else if (name === '--n') options.ns = list(value()).map(Number);
    else if (name === '--churn') options.churn = Number(value());
    else if (name === '--limit') options.limitSeconds = Number(value());
    else if (name === '--server') options.server = path.resolve(value());
    else if (name === '--out') options.out = path.resolve(value());
    else throw new Error(`unknown option ${arg}`);
  }
  if (options.ns.some((n) => !(Number.isInteger(n) && n > 0))) throw new Error('--n takes positive integers');
  // A partial run must not overwrite the published results: it goes beside them (git ignores it).
  const partial = argv.some((arg) => /^--(quick|contenders|n|churn)\b/.test(arg));
  if (partial && !argv.some((arg) => arg.startsWith('--out'))) options.out = options.out.replace(/\.json$/, '-partial.json');
  return options;
}

/** What the figures were measured on; other work on the machine moves them, tail latencies most. */
function machine() {
  return {
    cpu: os.cpus()[0]?.model,
    cores: os.cpus().length,
    memoryGiB: round(os.totalmem() / 2 ** 30, 1),
    os: `${os.type()} ${os.release()} ${os.arch()}`,
    node: process.version,
    loadAverage1m: round(os.loadavg()[0], 2),
  };
}

// ---------------------------------------------------------------------------
// Phases. Each takes the contender's session ({ server, client, port, path }) and returns plain data.

/** Opens `count` connections (over `streams` streams) and waits until the server holds all that opened. */
async function openConnections(session, count, streams = 1) {
  const opened = await session.client.call('open', { port: session.port, path: session.path, count, streams }, 180_000);
  const seen = await settle(session.server, (c) => c >= opened.opened, `${opened.opened} open`);
  return { ...opened, serverConnections: seen.connections, settleMs: seen.ms };
}

/** Closes every client connection and waits until the server has let go of all of them. */
async function closeConnections(session) {
  await session.client.call('close');
  return settle(session.server, (c) => c === 0, '0 connections');
}

/** (c) RSS and heap per open connection: (after - baseline) / opened, both after three gc() runs. */
async function memoryPhase(session, n) {
  const before = await session.server.call('memory');
  const opened = await openConnections(session, n);
  const after = await session.server.call('memory');
  const per = (key) => (opened.opened > 0 ? round((after[key] - before[key]) / opened.opened / 1024, 2) : null);
  return {
    ...opened,
    rssPerConnectionKiB: per('rss'),
    heapPerConnectionKiB: per('heapUsed'),
    externalPerConnectionKiB: per('external'),
    baseline: pickMemory(before),
    after: pickMemory(after),
  };
}

const pickMemory = (m) => ({ rss: m.rss, heapUsed: m.heapUsed, external: m.external, arrayBuffers: m.arrayBuffers });

/** Runs every code path the measured phases use once at speed; only whether it completed is kept. */
async function warmupPhase(session) {
  await session.client.call('reset', { sample: BURST.sample });
  await session.server.call('burst', { stream: 's0', count: WARMUP_EVENTS, size: SIZE, yieldEvery: BURST.yieldEvery }, BURST.timeoutMs);
  const got = await session.client.call('wait', { expected: WARMUP_EVENTS, timeoutMs: 60_000, quietMs: QUIET_MS }, 75_000);
  return { events: WARMUP_EVENTS, complete: got.complete, elapsedMs: got.elapsedMs };
}

/** (a) Latency at a rate every contender keeps up with: it shows the cost of the path, not of queues. */
async function pacedPhase(session, n) {
  const sample = Math.min(n, PACED.maxSample);
  await session.client.call('reset', { sample });
  const published = await session.server.call(
    'paced',
    { stream: 's0', count: PACED.events, size: SIZE, intervalMs: PACED.intervalMs },
    120_000,
  );
  const got = await session.client.call('wait', { expected: PACED.events, timeoutMs: 30_000, quietMs: QUIET_MS }, 45_000);
  return {
    events: PACED.events,
    intervalMs: PACED.intervalMs,
    sample,
    ...judge(got, PACED.events),
    delivered: got.delivered,
    expectedDeliveries: got.connections * PACED.events,
    publishMs: round(published.publishMs, 1),
    latency: got.latency,
  };
}

/**
 * Whether a `wait` answer can be trusted as complete. The sampled connections
 * both count `data:` and parse: when the two disagree the counts are wrong for
 * this contender, so a "complete" is not believed either.
 */
function judge(got, expected) {
  const mismatch =
    got.sampleCounted !== got.sampleParsed
      ? `the sampled connections counted ${got.sampleCounted} data: lines but parsed ${got.sampleParsed} events`
      : undefined;
  if (got.complete && !mismatch) return { complete: true };
  return { complete: false, reason: incompleteReason(got, expected, mismatch), ...(mismatch ? { countMismatch: mismatch } : {}) };
}

/** Why a phase is not complete, in words for the report. */
function incompleteReason(got, expected, mismatch) {
  const parts = [`${got.delivered} of ${got.connections * expected} deliveries arrived (fewest on a connection: ${got.minCount})`];
  if (mismatch) parts.push(mismatch);
  if (got.closed > 0) parts.push(`${got.closed} connections closed`);
  if (got.stoppedBecause === 'quiet') parts.push(`nothing arrived for ${QUIET_MS / 1000} s`);
  return parts.join('; ');
}

/** Burst events for N connections: ~2,000,000 deliveries, at most 2,000 events. */
const burstEvents = (n) => Math.min(BURST.maxEvents, Math.round(BURST.deliveries / n));

/** (b, d) Throughput and server CPU per delivery, with the sample's latency under load. */
async function burstPhase(session, n, yieldEvery) {
  const count = burstEvents(n);
  await session.client.call('reset', { sample: BURST.sample });
  const cpuBefore = await session.server.call('cpu');
  const published = await session.server.call(
    'burst',
    { stream: 's0', count, size: SIZE, yieldEvery: yieldEvery === ONE_TICK ? count : yieldEvery },
    BURST.timeoutMs + 30_000,
  );
  const got = await session.client.call(
    'wait',
    { expected: count, timeoutMs: BURST.timeoutMs, quietMs: QUIET_MS },
    BURST.timeoutMs + 15_000,
  );
  const cpuAfter = await session.server.call('cpu');
  const serverCpuMicros = cpuAfter.user - cpuBefore.user + (cpuAfter.system - cpuBefore.system);
  const deliveries = got.connections * count;
  const verdict = judge(got, count);
  const result = {
    events: count,
    connections: got.connections,
    ...verdict,
    delivered: got.delivered,
    expectedDeliveries: deliveries,
    elapsedMs: got.elapsedMs,
    publishMs: round(published.publishMs, 1),
    serverCpuMs: round(serverCpuMicros / 1000, 1),
    clientCpuMs: got.clientCpuMs,
    latency: got.latency,
  };
  if (!verdict.complete) return { ...result, deliveriesPerSecond: null, cpuMicrosPerDelivery: null };
  return {
    ...result,
    deliveriesPerSecond: Math.round((deliveries / got.elapsedMs) * 1000),
    cpuMicrosPerDelivery: round(serverCpuMicros / deliveries, 3),
    // Near 1, the load client may have been what limited the rate: it has one core, as the server has.
    clientCpuShare: round(got.clientCpuMs / got.elapsedMs, 2),
  };
}

/** (e) One layout of many streams: `publishes` events round-robin over the streams, each connection gets publishes/streams. */
async function spreadPhase(session, layout) {
  const opened = await openConnections(session, layout.connections, layout.streams);
  const expected = layout.publishes / layout.streams;
  await session.client.call('reset', { sample: BURST.sample });
  const cpuBefore = await session.server.call('cpu');
  const published = await session.server.call(
    'spread',
    { streams: layout.streams, count: layout.publishes, size: SIZE, yieldEvery: BURST.yieldEvery },
    BURST.timeoutMs + 30_000,
  );
  const got = await session.client.call('wait', { expected, timeoutMs: BURST.timeoutMs, quietMs: QUIET_MS }, BURST.timeoutMs + 15_000);
  const cpuAfter = await session.server.call('cpu');
  await closeConnections(session);
  const serverCpuMicros = cpuAfter.user - cpuBefore.user + (cpuAfter.system - cpuBefore.system);
  const deliveries = got.connections * expected;
  const verdict = judge(got, expected);
  const result = {
    streams: layout.streams,
    connectionsPerStream: layout.connections / layout.streams,
    opened: opened.opened,
    failed: opened.failed,
    publishes: layout.publishes,
    expectedPerConnection: expected,
    ...verdict,
    delivered: got.delivered,
    expectedDeliveries: deliveries,
    elapsedMs: got.elapsedMs,
    publishMs: round(published.publishMs, 1),
    serverCpuMs: round(serverCpuMicros / 1000, 1),
    latency: got.latency,
  };
  if (!verdict.complete) return { ...result, deliveriesPerSecond: null, cpuMicrosPerPublish: null, cpuMicrosPerDelivery: null };
  return {
    ...result,
    deliveriesPerSecond: Math.round((deliveries / got.elapsedMs) * 1000),
    cpuMicrosPerPublish: round(serverCpuMicros / layout.publishes, 2),
    cpuMicrosPerDelivery: round(serverCpuMicros / deliveries, 3),
  };
}

/** (f) Connections that come and go: how fast, and whether the server keeps memory from them. */
async function churnPhase(session, cycles) {
  const before = await session.server.call('memory');
  const done = await session.client.call(
    'churn',
    { port: session.port, path: session.path, cycles, concurrency: CHURN_CONCURRENCY },
    300_000,
  );
  const drained = await settle(session.server, (c) => c === 0, '0 connections after churn');
  const after = await session.server.call('memory');
  return {
    cycles: done.cycles,
    concurrency: CHURN_CONCURRENCY,
    failed: done.failed,
    failures: done.failures,
    elapsedMs: done.elapsedMs,
    cyclesPerSecond: Math.round(((done.cycles - done.failed) / done.elapsedMs) * 1000),
    drainMs: drained.ms,
    rssGrowthMiB: round((after.rss - before.rss) / 2 ** 20, 2),
    heapGrowthMiB: round((after.heapUsed - before.heapUsed) / 2 ** 20, 2),
    baseline: pickMemory(before),
    after: pickMemory(after),
  };
}

// ---------------------------------------------------------------------------
// One contender.

/**
 * Runs every phase for `name` into `entry`, recording each failure and going on
 * where that still makes sense. `signal` is set when the time limit has passed.
 */
async function measureContender(name, entry, options, processes, signal) {
  const check = (phase) => {
    if (signal.aborted) throw new Error('time limit');
    entry.phase = phase;
    say(`${name}: ${phase}`);
  };
  /** Records a failure and goes on; after the time limit, what fails is only the run it stopped, so it is not recorded. */
  const fail = (error) => {
    if (signal.aborted) throw error;
    recordError(entry, error);
  };
  check('starting');
  const server = startChild(`${name} server`, options.server, [name], ['--expose-gc']);
  const client = startChild(`${name} client`, path.join(HERE, 'load-client.mjs'), [], []);
  processes.push(server, client);
  const [ready] = await Promise.all([server.ready, client.ready]);
  entry.version = ready.version ?? null;
  const session = { server, client, port: ready.port, path: ready.path };

  for (const n of options.ns) {
    const row = { n };
    entry.byN.push(row);
    try {
      check(`N=${n}: memory, opening ${n} connections`);
      row.memory = await memoryPhase(session, n);
      if (n === options.ns[0]) {
        check(`N=${n}: warm-up, ${WARMUP_EVENTS} events, not measured`);
        row.warmup = await warmupPhase(session);
      }
      check(`N=${n}: paced, ${PACED.events} events every ${PACED.intervalMs} ms`);
      row.paced = await pacedPhase(session, n);
      check(`N=${n}: burst, ${burstEvents(n)} events in one go`);
      row.burst = await burstPhase(session, n, ONE_TICK);
      check(`N=${n}: burst, ${burstEvents(n)} events yielding every ${BURST.yieldEvery}`);
      row.burstYielding = await burstPhase(session, n, BURST.yieldEvery);
    } catch (error) {
      fail(error);
      row.error = String(error.message ?? error);
    }
    printRow(name, entry.version, row);
    if (!alive(session)) return;
    check(`N=${n}: closing`);
    try {
      row.closeMs = (await closeConnections(session)).ms;
    } catch (error) {
      // Connections the server does not let go would spoil every later phase.
      fail(error);
      return;
    }
  }

  entry.manyStreams = [];
  for (const layout of MANY_STREAMS) {
    check(`many streams: ${layout.connections} connections over ${layout.streams} streams, ${layout.publishes} publishes`);
    try {
      entry.manyStreams.push(await spreadPhase(session, layout));
    } catch (error) {
      fail(error);
      entry.manyStreams.push({ streams: layout.streams, error: String(error.message ?? error) });
      if (!alive(session)) return;
      try {
        await closeConnections(session);
      } catch (closeError) {
        fail(closeError);
        return;
      }
    }
  }
  printManyStreams(name, entry.manyStreams);

  check(`churn: ${options.churn} cycles, ${CHURN_CONCURRENCY} in flight`);
  try {
    entry.churn = await churnPhase(session, options.churn);
  } catch (error) {
    fail(error);
    entry.churn = { error: String(error.message ?? error) };
  }
  printChurn(name, entry.churn);
}

/** Whether both processes can still answer; after a crash the remaining phases are skipped, not failed one by one. */
const alive = (session) => !session.server.exited && !session.client.exited;

function recordError(entry, error) {
  const message = String(error?.message ?? error);
  entry.errors.push({ phase: entry.phase, message });
  say(`${entry.name}: ERROR in ${entry.phase}: ${message}`);
}

/** One contender under its time limit; whatever happens, both processes are gone when this returns. */
async function runContender(name, options) {
  const entry = { name, version: null, byN: [], manyStreams: null, churn: null, errors: [], runSeconds: null };
  const started = performance.now();
  const processes = [];
  const signal = { aborted: false };
  let timer;
  const limit = new Promise((_, reject) => {
    timer = setTimeout(() => {
      signal.aborted = true;
      reject(new Error(`time limit: still running after ${options.limitSeconds} s; killed`));
    }, options.limitSeconds * 1000);
  });
  try {
    await Promise.race([measureContender(name, entry, options, processes, signal), limit]);
  } catch (error) {
    recordError(entry, error);
    if (signal.aborted) {
      entry.timedOut = true;
      // The rows it did not finish say so, for the table and the report.
      for (const row of entry.byN) if (!row.burst && !row.error) row.error = error.message;
      console.log(`${name.padEnd(16)} ${String(error.message)} (${entry.phase})`);
    }
  } finally {
    clearTimeout(timer);
    if (signal.aborted) for (const p of processes) p.kill();
    await Promise.all(processes.map((p) => p.stop()));
  }
  delete entry.phase;
  entry.runSeconds = round((performance.now() - started) / 1000, 1);
  say(`${name}: done in ${entry.runSeconds} s${entry.errors.length ? `, ${entry.errors.length} error(s)` : ''}`);
  return entry;
}

// ---------------------------------------------------------------------------
// The table on stdout.

const COLUMNS = [
  ['contender', 16],
  ['N', 6],
  ['open', 6],
  ['fail', 5],
  ['RSS KiB/conn', 13],
  ['heap KiB/conn', 14],
  ['paced p50/p99/max ms', 22],
  ['burst deliveries/s', 19],
  ['µs CPU/delivery', 16],
  ['burst p50/p99 ms', 17],
];

function printHeader() {
  console.log(COLUMNS.map(([title, width], i) => (i === 0 ? title.padEnd(width) : title.padStart(width))).join(' '));
}

const fmt = (x, digits = 1) => (x === null || x === undefined ? '-' : Number(x).toFixed(digits));

function printRow(name, _version, row) {
  const m = row.memory ?? {};
  const p = row.paced;
  const b = row.burst;
  const paced = p ? `${fmt(p.latency.p50)}/${fmt(p.latency.p99)}/${fmt(p.latency.max)}${p.complete ? '' : ' INC'}` : '-';
  const rate = b
    ? b.complete
      ? b.deliveriesPerSecond.toLocaleString('en-US')
      : `INCOMPLETE ${b.delivered}/${b.expectedDeliveries}`
    : row.error
      ? 'ERROR'
      : '-';
  const cells = [
    name,
    row.n,
    m.opened ?? '-',
    m.failed ?? '-',
    fmt(m.rssPerConnectionKiB),
    fmt(m.heapPerConnectionKiB),
    paced,
    rate,
    fmt(b?.cpuMicrosPerDelivery, 2),
    b ? `${fmt(b.latency.p50)}/${fmt(b.latency.p99)}` : '-',
  ];
  console.log(cells.map((cell, i) => (i === 0 ? String(cell).padEnd(COLUMNS[i][1]) : String(cell).padStart(COLUMNS[i][1]))).join(' '));
}

function printManyStreams(_name, layouts) {
  const cell = (l) =>
    l.error
      ? `${l.streams} streams: ERROR`
      : `${l.streams} streams × ${l.connectionsPerStream}: ${l.complete ? `${l.deliveriesPerSecond.toLocaleString('en-US')}/s, ${fmt(l.cpuMicrosPerDelivery, 2)} µs/delivery, ${fmt(l.cpuMicrosPerPublish, 0)} µs/publish` : `INCOMPLETE ${l.delivered}/${l.expectedDeliveries}`}`;
  console.log(`${''.padEnd(16)}   many streams  ${layouts.map(cell).join('  |  ')}`);
}

function printChurn(_name, churn) {
  const text = churn.error
    ? 'ERROR'
    : `${churn.cycles.toLocaleString('en-US')} cycles in ${fmt(churn.elapsedMs / 1000)} s (${churn.cyclesPerSecond.toLocaleString('en-US')}/s), ${churn.failed} failed, RSS ${churn.rssGrowthMiB >= 0 ? '+' : ''}${fmt(churn.rssGrowthMiB)} MiB, heap ${churn.heapGrowthMiB >= 0 ? '+' : ''}${fmt(churn.heapGrowthMiB, 2)} MiB`;
  console.log(`${''.padEnd(16)}   churn         ${text}`);
}

// ---------------------------------------------------------------------------

async function main() {
  const options = parseOptions(process.argv.slice(2));
  if (!fs.existsSync(options.server)) {
    console.error(`bench/peers/run.mjs: ${options.server} does not exist`);
    process.exit(1);
  }
  if (!fs.existsSync(path.join(HERE, '..', '..', 'dist', 'index.js')))
    say('warning: dist/ is missing; run `npm run build` first (the ssecast contenders import it)');
  const result = {
    date: new Date().toISOString(),
    machine: machine(),
    settings: {
      contenders: options.contenders,
      ns: options.ns,
      quick: options.quick,
      eventDataBytes: SIZE,
      warmup: `${WARMUP_EVENTS} events in a burst after the memory phase of the first N, not measured`,
      paced: { events: PACED.events, intervalMs: PACED.intervalMs, sample: `min(N, ${PACED.maxSample})` },
      burst: {
        events: `min(${BURST.maxEvents}, round(${BURST.deliveries} / N))`,
        eventsByN: Object.fromEntries(options.ns.map((n) => [n, burstEvents(n)])),
        yieldEvery: BURST.yieldEvery,
        sample: BURST.sample,
        timeoutMs: BURST.timeoutMs,
        quietMs: QUIET_MS,
      },
      manyStreams: MANY_STREAMS,
      churn: { cycles: options.churn, concurrency: CHURN_CONCURRENCY },
      timeLimitPerContenderSeconds: options.limitSeconds,
      layout:
        'server and load client are separate processes on 127.0.0.1, driven over IPC; latency = arrival at the client - publish time (performance.timeOrigin + performance.now())',
    },
    contenders: [],
    runSeconds: null,
  };
  const save = () => {
    fs.mkdirSync(path.dirname(options.out), { recursive: true });
    fs.writeFileSync(options.out, `${JSON.stringify(result, null, 2)}\n`);
  };
  process.once('SIGINT', () => {
    say('interrupted');
    process.exit(130); // the children exit when their IPC channel closes
  });

  say(
    `contenders: ${options.contenders.join(', ')}; N: ${options.ns.join(', ')}; churn: ${options.churn}; limit ${options.limitSeconds} s each`,
  );
  printHeader();
  for (const name of options.contenders) {
    result.contenders.push(await runContender(name, options));
    result.runSeconds = round((performance.now() - runStarted) / 1000, 1);
    save(); // after each contender, so a run cut short still leaves its results
  }
  say(`run finished in ${result.runSeconds} s; wrote ${path.relative(process.cwd(), options.out)}`);
  try {
    const written = writeReport(options.out);
    say(`wrote ${written.map((file) => path.relative(process.cwd(), file)).join(', ')}`);
  } catch (error) {
    console.error('bench/peers/run.mjs: the report failed (the JSON is written; node bench/peers/report.mjs to retry):', error);
    process.exitCode = 1;
  }
  const failed = result.contenders.filter((c) => c.errors.length > 0).map((c) => c.name);
  if (failed.length > 0) {
    console.error(`bench/peers/run.mjs: errors in ${failed.join(', ')} (see "errors" in ${path.basename(options.out)})`);
    process.exitCode = 1;
  }
}

await main();
