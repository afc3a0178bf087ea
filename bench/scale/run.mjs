// The scale bench (issue 17): one server process holding N concurrent SSE
// connections (100,000 by default) on one stream, for ssecast (ssecast/node),
// raw node:http and better-sse, and per contender:
//   - memory per connection: RSS and heap after gc, minus the same before any
//     connection opened, divided by the connections open;
//   - one event to all: the time from publish to the last connection's arrival,
//     and the p50/p99 of every connection's arrival (several trials);
//   - the heartbeat's CPU: the server's process.cpuUsage() over a window in
//     which nothing but heartbeats is written, per round over all connections
//     and per connection.
// The connections come from several load-client processes, bound to several
// loopback source addresses so that no address runs out of ephemeral ports.
// Every connection is checked open before each measurement; those that failed
// or closed are counted and reported.
//
//   npm run build && node bench/scale/run.mjs [--connections 100000] [--quick]
//     [--contenders ssecast,raw,better-sse] [--clients 3] [--trials 3]
//     [--heartbeat-window 35] [--limit 600] [--contender-limit S] [--out path]
//
// Writes bench/results/scale.json and scale.md; a partial run (--quick, another
// --connections, fewer --contenders) writes scale-partial.* unless --out is given.
// As root it raises its own open-files limit (re-running itself under
// `ulimit -n`, so every child inherits it) and any sysctl that is too low for
// N, and puts the sysctls back when it ends, fails or is interrupted.
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { settle, startChild } from '../peers/child.mjs';
import { openFilesLimit } from './lib.mjs';
import { writeReport } from './report.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const SERVER = path.join(HERE, 'server.mjs');
const CLIENT = path.join(HERE, 'load-client.mjs');
const ALL_CONTENDERS = ['ssecast', 'raw', 'better-sse'];
const FULL_CONNECTIONS = 100_000;
const QUICK_CONNECTIONS = 10_000;

/** better-sse's default keep-alive, which its reused contender keeps: the other two are given the same interval. */
const HEARTBEAT_MS = 10_000;
const EVENT_BYTES = 100;
/** The listen backlog of every contender (bench/peers/contenders/lib/common.mjs). */
const LISTEN_BACKLOG = 4096;
/** Connects in flight per client process while opening. */
const WAVE = 200;
/** File descriptors a Node process holds besides its sockets (stdio, IPC, epoll, libuv, the listener), with room to spare. */
const FD_MARGIN = 256;
/**
 * Connections per source address: far under the ~28,000 ports of the default
 * ip_local_port_range. A socket bound to an address before connect() gets its
 * port from bind(), which scans for a free one (odd ports first): on this
 * bench's VM, 8,000 sockets on one address opened at 460/s, on ten addresses
 * at 2,000/s, as fast as unbound sockets.
 */
const MAX_PER_ADDRESS = 1000;
/** The window in which the server's CPU is read with no connection open. */
const IDLE_MS = 3000;
/** How long the heartbeat window waits for a pause in arrivals before it takes its edge anyway. */
const QUIET = { ms: 500, pollMs: 100, maxMs: 4000 };

const round = (x, digits = 2) => (x === null || x === undefined || !Number.isFinite(x) ? null : Number(x.toFixed(digits)));
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const runStarted = performance.now();
const say = (text) => process.stderr.write(`[${((performance.now() - runStarted) / 1000).toFixed(1).padStart(6)} s] ${text}\n`);

// ---------------------------------------------------------------------------
// Options.

function parseOptions(argv) {
  const options = {
    connections: FULL_CONNECTIONS,
    contenders: ALL_CONTENDERS,
    clients: 3,
    trials: 3,
    heartbeatWindowS: 35,
    limitS: 600,
    /** null: each contender gets an equal share of the run's time still left, so time one leaves unused goes to the next. */
    contenderLimitS: null,
    out: path.join(HERE, '..', 'results', 'scale.json'),
    quick: false,
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const name = arg.split('=')[0];
    const value = () => {
      const v = arg.includes('=') ? arg.slice(arg.indexOf('=') + 1) : argv[++i];
      if (v === undefined) throw new Error(`${name} needs a value`);
      return v;
    };
    const positive = (v) => {
      const n = Number(v);
      if (!(Number.isInteger(n) && n > 0)) throw new Error(`${name} takes a positive integer, got ${v}`);
      return n;
    };
    if (name === '--quick') Object.assign(options, { quick: true, connections: QUICK_CONNECTIONS, heartbeatWindowS: 25 });
    else if (name === '--connections') options.connections = positive(value());
    else if (name === '--contenders') options.contenders = value().split(',').filter(Boolean);
    else if (name === '--clients') options.clients = positive(value());
    else if (name === '--trials') options.trials = positive(value());
    else if (name === '--heartbeat-window') options.heartbeatWindowS = positive(value());
    else if (name === '--limit') options.limitS = positive(value());
    else if (name === '--contender-limit') options.contenderLimitS = positive(value());
    else if (name === '--out') options.out = path.resolve(value());
    else throw new Error(`unknown option ${arg}`);
  }
  for (const c of options.contenders)
    if (!ALL_CONTENDERS.includes(c)) throw new Error(`unknown contender ${c} (${ALL_CONTENDERS.join(', ')})`);
  const partial = options.quick || options.connections !== FULL_CONNECTIONS || options.contenders.length !== ALL_CONTENDERS.length;
  if (partial && !argv.some((a) => a.startsWith('--out'))) options.out = options.out.replace(/\.json$/, '-partial.json');
  return options;
}

// ---------------------------------------------------------------------------
// Open-files limit: Node cannot call setrlimit, so the runner re-runs itself
// once under `ulimit -n`; the server and the clients are its children and
// inherit the limit.

const REEXEC_MARK = 'SSECAST_SCALE_ULIMIT';

/** The limit to ask for: as many as the kernel lets one process have. */
function wantedFdLimit() {
  try {
    return Number(fs.readFileSync('/proc/sys/fs/nr_open', 'utf8').trim());
  } catch {
    return 1_048_576;
  }
}

/**
 * Re-runs this script under a raised limit unless that was done already.
 * Without CAP_SYS_RESOURCE the hard limit cannot be raised; the soft one is
 * then raised to it, and the preflight says what that allows.
 */
async function reexecUnderUlimit() {
  if (process.env[REEXEC_MARK] === '1') return;
  const limit = openFilesLimit();
  const want = wantedFdLimit();
  if (limit === null || limit.soft >= want) return;
  const script = `ulimit -n ${want} 2>/dev/null || ulimit -n "$(ulimit -Hn)"; exec "$0" "$@"`;
  const child = spawn(
    'sh',
    ['-c', script, process.execPath, ...process.execArgv, fileURLToPath(import.meta.url), ...process.argv.slice(2)],
    {
      stdio: 'inherit',
      env: { ...process.env, [REEXEC_MARK]: '1', SSECAST_SCALE_FD_BEFORE: JSON.stringify(limit) },
    },
  );
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(signal, () => child.kill(signal));
  const code = await new Promise((resolve) => child.on('exit', (c, s) => resolve(c ?? (s ? 128 + os.constants.signals[s] : 1))));
  process.exit(code);
}

// ---------------------------------------------------------------------------
// Sysctls: read, raised when too low for N, put back at the end.

/** @type {Array<{ file: string, before: string }>} */
const changedSysctls = [];

function readSysctl(file) {
  try {
    return fs.readFileSync(file, 'utf8').trim();
  } catch {
    return null;
  }
}

function restoreSysctls() {
  while (changedSysctls.length > 0) {
    const { file, before } = changedSysctls.pop();
    try {
      fs.writeFileSync(file, before);
      say(`restored ${file} to ${before}`);
    } catch (error) {
      say(`could NOT restore ${file} to ${before}: ${error.message}; put it back by hand`);
    }
  }
}

/**
 * Makes every sysctl the run depends on at least what N needs, and records
 * what each was and what it became. Only values that are too low are touched.
 */
function prepareSysctls(n, inFlight) {
  const checks = [
    { file: '/proc/sys/net/core/somaxconn', need: LISTEN_BACKLOG, why: 'the listen backlog (4096) is cut to it' },
    { file: '/proc/sys/net/ipv4/tcp_max_syn_backlog', need: inFlight * 2, why: 'connects in flight while opening' },
    { file: '/proc/sys/fs/file-max', need: 2 * n + 65_536, why: 'both ends of every connection are descriptors' },
    {
      file: '/proc/sys/net/netfilter/nf_conntrack_max',
      need: n + 65_536,
      why: 'a tracked loopback connection needs an entry; a full table drops SYNs',
    },
  ];
  const report = {};
  for (const check of checks) {
    const before = readSysctl(check.file);
    const key = check.file.replace('/proc/sys/', '').replaceAll('/', '.');
    if (before === null) {
      report[key] = { value: null, note: 'absent' };
      continue;
    }
    const entry = { value: Number(before), needed: check.need, why: check.why };
    if (Number(before) < check.need) {
      try {
        fs.writeFileSync(check.file, String(check.need));
        changedSysctls.push({ file: check.file, before });
        entry.changedTo = check.need;
        say(`raised ${key} from ${before} to ${check.need} (${check.why}); restored at the end`);
      } catch (error) {
        entry.changeFailed = error.message;
        say(`warning: ${key} is ${before}, below ${check.need} (${check.why}), and could not be raised: ${error.message}`);
      }
    }
    report[key] = entry;
  }
  const range = readSysctl('/proc/sys/net/ipv4/ip_local_port_range');
  report['net.ipv4.ip_local_port_range'] = {
    value: range?.replace(/\s+/, ' '),
    note: 'not changed: the connections are spread over source addresses instead',
  };
  return report;
}

// ---------------------------------------------------------------------------
// The layout: client processes and source addresses.

function portRange() {
  const [low, high] = (readSysctl('/proc/sys/net/ipv4/ip_local_port_range') ?? '32768 60999').split(/\s+/).map(Number);
  return high - low + 1;
}

/** Loopback address number `k` from 127.0.0.2 up (127.0.0.0/8 is all local on Linux). */
function loopback(k) {
  const v = k + 2;
  return `127.${(v >> 16) & 255}.${(v >> 8) & 255}.${v & 255}`;
}

function layout(options, fdLimit) {
  const n = options.connections;
  const perClientMax = fdLimit - FD_MARGIN;
  const clients = Math.max(options.clients, Math.ceil(n / perClientMax));
  const perAddress = Math.min(MAX_PER_ADDRESS, Math.floor(portRange() * 0.6));
  const addressCount = Math.ceil(n / perAddress);
  // Each contender gets addresses of its own, so ports the previous one's connections held are never in the way.
  const addressesFor = (contenderIndex) => Array.from({ length: addressCount }, (_, k) => loopback(contenderIndex * addressCount + k));
  const shares = Array.from({ length: clients }, (_, k) => Math.floor(n / clients) + (k < n % clients ? 1 : 0));
  return { clients, shares, perAddress, addressCount, addressesFor };
}

// ---------------------------------------------------------------------------
// One contender.

/** Rejects once `deadline` (performance.now() ms) has passed; every await of a phase races it. */
function deadlineRace(deadline, label) {
  let timer;
  const promise = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${label}: time limit reached`)), Math.max(0, deadline - performance.now()));
  });
  promise.catch(() => {});
  return { promise, clear: () => clearTimeout(timer) };
}

const remaining = (deadline) => Math.max(1000, Math.floor(deadline - performance.now()));

function percentile(sorted, q) {
  if (sorted.length === 0) return null;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))];
}

/** Every client's open count, summed; `expected` open connections are what the measurement needs. */
async function checkOpen(session, deadline) {
  const statuses = await Promise.all(session.clients.map((c) => c.call('status', {}, remaining(deadline))));
  const open = statuses.reduce((a, s) => a + s.open, 0);
  const closedBy = {};
  for (const s of statuses) for (const [k, v] of Object.entries(s.closedBy)) closedBy[k] = (closedBy[k] ?? 0) + v;
  const { connections } = await session.server.call('connections', {}, remaining(deadline));
  return { clientOpen: open, serverOpen: connections, closedSinceOpen: statuses.reduce((a, s) => a + s.closed, 0), closedBy };
}

async function openAll(session, plan, addresses, deadline) {
  const started = performance.now();
  let first = 0;
  const calls = session.clients.map((client, k) => {
    const share = plan.shares[k];
    const call = client.call(
      'open',
      { port: session.port, path: session.path, first, count: share, addresses, perAddress: plan.perAddress, wave: WAVE },
      remaining(deadline),
    );
    first += share;
    return call;
  });
  const results = await Promise.all(calls);
  const opened = results.reduce((a, r) => a + r.opened, 0);
  const failures = {};
  const byAddress = {};
  for (const r of results) {
    for (const [k, v] of Object.entries(r.failures)) failures[k] = (failures[k] ?? 0) + v;
    for (const [k, v] of Object.entries(r.byAddress)) byAddress[k] = (byAddress[k] ?? 0) + v;
  }
  const openMs = Math.round(performance.now() - started);
  // The server may not have run every handler yet (better-sse registers a session a tick after the head).
  const seen = await settle(session.server, (c) => c >= opened, `${opened} open`, Math.min(60_000, remaining(deadline)));
  return { opened, failed: plan.shares.reduce((a, b) => a + b, 0) - opened, failures, byAddress, openMs, settleMs: seen.ms };
}

/** One event to every connection: publish → each connection's first `data:` after the reset. */
async function deliverOnce(session, deadline) {
  // So that a collection of what earlier phases left does not land in the middle of one trial and not the others.
  await session.server.call('memory', {}, remaining(deadline));
  await Promise.all(session.clients.map((c) => c.call('reset', {}, remaining(deadline))));
  const cpu0 = await session.server.call('cpu', {}, remaining(deadline));
  const published = await session.server.call('publish', { stream: 's0', size: EVENT_BYTES }, remaining(deadline));
  const answers = await Promise.all(
    session.clients.map((c) =>
      c.call('wait', { t: published.t, timeoutMs: Math.min(60_000, remaining(deadline) - 500) }, remaining(deadline)),
    ),
  );
  const cpu1 = await session.server.call('cpu', {}, remaining(deadline));
  const all = new Float64Array(answers.reduce((a, r) => a + r.latencies.length, 0));
  let at = 0;
  for (const r of answers) {
    all.set(r.latencies, at);
    at += r.latencies.length;
  }
  all.sort();
  const received = all.length;
  return {
    received,
    missing: answers.reduce((a, r) => a + r.missing, 0),
    closed: answers.reduce((a, r) => a + r.closed, 0),
    duplicates: answers.reduce((a, r) => a + r.extra, 0),
    lastMs: round(all[received - 1] ?? null, 1),
    firstMs: round(all[0] ?? null, 2),
    p50Ms: round(percentile(all, 0.5), 1),
    p99Ms: round(percentile(all, 0.99), 1),
    publishMs: round(published.publishMs, 2),
    serverCpuMs: round((cpu1.user - cpu0.user + cpu1.system - cpu0.system) / 1000, 1),
    clientCpuMs: answers.reduce((a, r) => a + r.clientCpuMs, 0),
  };
}

/** Total heartbeats counted by every client since its reset. */
async function heartbeatTotals(session, deadline) {
  const answers = await Promise.all(session.clients.map((c) => c.call('heartbeats', {}, remaining(deadline))));
  return {
    total: answers.reduce((a, r) => a + r.total, 0),
    events: answers.reduce((a, r) => a + r.events, 0),
    open: answers.reduce((a, r) => a + r.open, 0),
    min: Math.min(...answers.map((r) => r.min)),
  };
}

/**
 * A window edge: waits (at most QUIET.maxMs) for a pause in heartbeat arrivals,
 * so that a round whose comments are still on their way is not cut in two
 * (ssecast's and raw's rounds come all at once; better-sse's sessions each have
 * a timer, so its heartbeats never pause and its edges cut only a few ms).
 * Then reads the server's CPU and the clients' counts together.
 */
async function windowEdge(session, deadline) {
  const started = performance.now();
  let last = await heartbeatTotals(session, deadline);
  let stillSince = performance.now();
  while (performance.now() - started < QUIET.maxMs) {
    await sleep(QUIET.pollMs);
    const now = await heartbeatTotals(session, deadline);
    if (now.total !== last.total) {
      last = now;
      stillSince = performance.now();
    } else if (performance.now() - stillSince >= QUIET.ms) break;
  }
  const quiet = performance.now() - stillSince >= QUIET.ms;
  const cpu = await session.server.call('cpu', {}, remaining(deadline));
  const counts = await heartbeatTotals(session, deadline);
  return { at: performance.now(), quiet, cpuMicros: cpu.user + cpu.system, ...counts };
}

async function heartbeatWindow(session, windowS, deadline) {
  // Garbage from the phases before would be collected in the window and charged to the heartbeats.
  await session.server.call('memory', {}, remaining(deadline));
  await Promise.all(session.clients.map((c) => c.call('reset', {}, remaining(deadline))));
  const start = await windowEdge(session, deadline);
  await sleep(windowS * 1000);
  const end = await windowEdge(session, deadline);
  const heartbeats = end.total - start.total;
  const cpuMicros = end.cpuMicros - start.cpuMicros;
  const rounds = end.open > 0 ? heartbeats / end.open : 0;
  return {
    windowMs: Math.round(end.at - start.at),
    heartbeats,
    connections: end.open,
    rounds: round(rounds, 2),
    fewestPerConnection: end.min,
    eventsInWindow: end.events - start.events,
    edgesQuiet: start.quiet && end.quiet,
    serverCpuMs: round(cpuMicros / 1000, 1),
    cpuMsPerRound: rounds > 0 ? round(cpuMicros / 1000 / rounds, 1) : null,
    cpuMicrosPerHeartbeat: heartbeats > 0 ? round(cpuMicros / heartbeats, 2) : null,
  };
}

const pickMemory = (m) => ({
  rss: m.rss,
  heapUsed: m.heapUsed,
  heapTotal: m.heapTotal,
  external: m.external,
  arrayBuffers: m.arrayBuffers,
});

async function measure(name, index, entry, options, plan, processes, deadline) {
  const phase = (text) => {
    entry.phase = text;
    say(`${name}: ${text}`);
  };
  phase('starting');
  const serverOptions = name === 'better-sse' ? {} : { heartbeatMs: HEARTBEAT_MS };
  const server = startChild(`${name} server`, SERVER, [name, JSON.stringify(serverOptions)], ['--expose-gc']);
  processes.push(server);
  const clients = plan.shares.map((_, k) => startChild(`${name} client ${k}`, CLIENT, [], []));
  processes.push(...clients);
  const [ready] = await Promise.all([server.ready, ...clients.map((c) => c.ready)]);
  entry.version = ready.version ?? null;
  const session = { server, clients, port: ready.port, path: ready.path };
  const resources = async () => {
    const { type: _type, id: _id, ...rest } = await server.call('resources', {}, remaining(deadline));
    return rest;
  };
  entry.serverResources = { atStart: await resources() };

  phase('one request first, not measured');
  // One request first: it fails the contender at once when the server cannot serve, and what a first request initialises lands in the baseline.
  const probe = await clients[0].call(
    'probe',
    { port: session.port, path: session.path, localAddress: plan.addressesFor(index)[0] },
    remaining(deadline),
  );
  if (!probe.ok)
    throw new Error(`the first connection failed (${probe.reason}${probe.body ? `: ${probe.body.trim()}` : ''}); not opening the others`);
  await settle(server, (c) => c === 0, 'the probe connection to close', Math.min(30_000, remaining(deadline)));

  phase('baseline memory, and CPU with no connection');
  const before = await server.call('memory', {}, remaining(deadline));
  // What the process burns with nothing to do (timers, the runtime), for comparison with the heartbeat window.
  const idle0 = await server.call('cpu', {}, remaining(deadline));
  const idleStarted = performance.now();
  await sleep(IDLE_MS);
  const idle1 = await server.call('cpu', {}, remaining(deadline));
  entry.idleCpuMsPerS = round((idle1.user - idle0.user + idle1.system - idle0.system) / (performance.now() - idleStarted), 2);

  const addresses = plan.addressesFor(index);
  phase(`opening ${options.connections.toLocaleString('en-US')} connections from ${addresses[0]}…${addresses.at(-1)}`);
  const opened = await openAll(session, plan, addresses, deadline);
  Object.assign(entry, {
    opened: opened.opened,
    failed: opened.failed,
    failures: opened.failures,
    byAddress: opened.byAddress,
    openMs: opened.openMs,
    settleMs: opened.settleMs,
  });
  say(
    `${name}: ${opened.opened} open, ${opened.failed} failed ${JSON.stringify(opened.failures)} in ${(opened.openMs / 1000).toFixed(1)} s`,
  );
  if (opened.opened === 0) throw new Error(`no connection opened: ${JSON.stringify(opened.failures)}`);
  entry.checks = { afterOpen: await checkOpen(session, deadline) };

  phase('memory with every connection open');
  const after = await server.call('memory', {}, remaining(deadline));
  entry.serverResources.afterOpen = await resources();
  const per = (key) => (opened.opened > 0 ? round((after[key] - before[key]) / opened.opened / 1024, 2) : null);
  entry.memory = {
    connections: opened.opened,
    rssPerConnectionKiB: per('rss'),
    heapPerConnectionKiB: per('heapUsed'),
    externalPerConnectionKiB: per('external'),
    baseline: pickMemory(before),
    after: pickMemory(after),
  };

  phase('warm-up: one event to all, not measured');
  entry.warmup = await deliverOnce(session, deadline);
  entry.delivery = { trials: [] };
  for (let k = 0; k < options.trials; k++) {
    await sleep(1000);
    entry.checks[`beforeTrial${k + 1}`] = await checkOpen(session, deadline);
    phase(`one event to all, trial ${k + 1} of ${options.trials}`);
    const trial = await deliverOnce(session, deadline);
    entry.delivery.trials.push(trial);
    say(`${name}: ${trial.received} received, ${trial.missing} missing; last ${trial.lastMs} ms, p50 ${trial.p50Ms}, p99 ${trial.p99Ms}`);
  }
  // The trial with the median deliver-to-all time speaks for the contender; all are kept.
  const complete = entry.delivery.trials.filter((t) => t.missing === 0 && t.closed === 0);
  const sorted = [...complete].sort((a, b) => a.lastMs - b.lastMs);
  entry.delivery.median = sorted.length > 0 ? sorted[Math.floor((sorted.length - 1) / 2)] : null;
  entry.delivery.completeTrials = complete.length;

  entry.checks.beforeHeartbeats = await checkOpen(session, deadline);
  phase(`heartbeats only, ${options.heartbeatWindowS} s`);
  entry.heartbeat = { intervalMs: HEARTBEAT_MS, ...(await heartbeatWindow(session, options.heartbeatWindowS, deadline)) };
  say(
    `${name}: ${entry.heartbeat.heartbeats} heartbeats (${entry.heartbeat.rounds} rounds) for ${entry.heartbeat.serverCpuMs} ms of server CPU: ${entry.heartbeat.cpuMsPerRound} ms per round`,
  );
  entry.stats = await server.call('stats', {}, remaining(deadline));
  entry.checks.atEnd = await checkOpen(session, deadline);

  // Every measurement above ran with every opened connection still open at both ends, or this says which did not.
  entry.verified = Object.values(entry.checks).every((c) => c.clientOpen === opened.opened && c.serverOpen === opened.opened);
  phase('closing');
  await Promise.all(clients.map((c) => c.call('close', {}, remaining(deadline))));
  entry.closeMs = (await settle(server, (c) => c === 0, '0 connections', Math.min(60_000, remaining(deadline)))).ms;
}

async function runContender(name, index, options, plan, runDeadline, contendersLeft) {
  const entry = { name, version: null, connections: options.connections, errors: [] };
  const started = performance.now();
  const share = options.contenderLimitS !== null ? options.contenderLimitS * 1000 : (runDeadline - started) / contendersLeft;
  const deadline = Math.min(runDeadline, started + share);
  entry.limitS = round((deadline - started) / 1000, 0);
  const processes = [];
  activeProcesses = processes;
  const limit = deadlineRace(deadline, name);
  try {
    await Promise.race([measure(name, index, entry, options, plan, processes, deadline), limit.promise]);
  } catch (error) {
    entry.errors.push({ phase: entry.phase, message: String(error?.message ?? error) });
    say(`${name}: ERROR in ${entry.phase}: ${error?.message ?? error}`);
    for (const p of processes) p.kill();
  } finally {
    limit.clear();
    await Promise.all(processes.map((p) => p.stop()));
    activeProcesses = [];
  }
  delete entry.phase;
  entry.runSeconds = round((performance.now() - started) / 1000, 1);
  say(`${name}: done in ${entry.runSeconds} s`);
  return entry;
}

// ---------------------------------------------------------------------------

let activeProcesses = [];

/** Which ssecast the run measured: dist/ is built from the working tree, which may hold uncommitted work. */
function source() {
  const git = (...args) => {
    try {
      return execFileSync('git', args, { cwd: path.join(HERE, '..', '..'), encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    } catch {
      return null;
    }
  };
  const distBuilt = fs.statSync(path.join(HERE, '..', '..', 'dist', 'adapters', 'node.js')).mtime.toISOString();
  const changed = git('status', '--porcelain', '--', 'src');
  return {
    commit: git('rev-parse', '--short', 'HEAD'),
    uncommittedInSrc: changed ? changed.split('\n').map((l) => l.trim()) : [],
    distBuilt,
  };
}

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

/** Ends the run at once: children killed, sysctls put back. */
let aborting = false;
function abort(code, why) {
  if (aborting) return;
  aborting = true;
  say(`${why}: killing ${activeProcesses.length} child process(es), restoring sysctls`);
  for (const p of activeProcesses) p.kill();
  restoreSysctls();
  process.exit(code);
}

async function main() {
  const options = parseOptions(process.argv.slice(2));
  await reexecUnderUlimit();
  // `on`, not `once`: the SIGINT of a Ctrl-C comes twice (the shell's and the one the pre-ulimit parent passes on), and a second one must not kill the run before it restores the sysctls.
  process.on('SIGINT', () => abort(130, 'interrupted'));
  process.on('SIGTERM', () => abort(143, 'terminated'));
  process.once('uncaughtException', (error) => {
    console.error(error);
    abort(1, 'uncaught exception');
  });

  const fdBefore = process.env.SSECAST_SCALE_FD_BEFORE ? JSON.parse(process.env.SSECAST_SCALE_FD_BEFORE) : openFilesLimit();
  const fd = openFilesLimit();
  const fdLimit = fd?.soft ?? 1024;
  const n = options.connections;
  if (n + FD_MARGIN > fdLimit) {
    console.error(
      `bench/scale/run.mjs: one server process cannot hold ${n.toLocaleString('en-US')} connections here: ` +
        `its open-files limit is ${fdLimit} (soft; hard ${fd?.hard}) and could not be raised` +
        `${fd && fd.hard < wantedFdLimit() ? ' (raising the hard limit needs CAP_SYS_RESOURCE, which this process does not have)' : ''}. ` +
        `The most this machine allows is --connections ${Math.max(0, fdLimit - FD_MARGIN)}; ` +
        `for ${n.toLocaleString('en-US')}, run where \`ulimit -n ${n + FD_MARGIN}\` works (or as a root that has CAP_SYS_RESOURCE).`,
    );
    process.exit(2);
  }
  if (!fs.existsSync(path.join(HERE, '..', '..', 'dist', 'adapters', 'node.js'))) {
    console.error('bench/scale/run.mjs: dist/ is missing; run `npm run build` first');
    process.exit(1);
  }
  const plan = layout(options, fdLimit);
  const sysctls = prepareSysctls(n, plan.clients * WAVE);
  process.on('exit', restoreSysctls);

  const result = {
    date: new Date().toISOString(),
    machine: machine(),
    source: source(),
    settings: {
      connections: n,
      contenders: options.contenders,
      quick: options.quick,
      stream: 'every connection on one stream (s0)',
      eventDataBytes: EVENT_BYTES,
      heartbeatMs: HEARTBEAT_MS,
      heartbeats: {
        ssecast: `heartbeatMs ${HEARTBEAT_MS}: one shared timer, a ':heartbeat' comment to each connection idle for ${HEARTBEAT_MS / 1000} s`,
        raw: `one setInterval every ${HEARTBEAT_MS / 1000} s writing ':heartbeat' to every response (bench/scale/contenders/raw-heartbeat.mjs)`,
        'better-sse': `its own default keep-alive: a ':' comment every ${HEARTBEAT_MS / 1000} s from one setInterval per session`,
      },
      trials: options.trials,
      heartbeatWindowS: options.heartbeatWindowS,
      clients: plan.clients,
      connectionsPerClient: plan.shares,
      sourceAddressesPerContender: plan.addressCount,
      connectionsPerAddress: plan.perAddress,
      connectsInFlightPerClient: WAVE,
      listenBacklog: LISTEN_BACKLOG,
      limitS: options.limitS,
      contenderLimitS: options.contenderLimitS,
    },
    system: {
      openFilesLimit: { before: fdBefore, during: fd },
      sysctls,
      changed: Object.entries(sysctls)
        .filter(([, v]) => v.changedTo !== undefined)
        .map(([k, v]) => `${k}: ${v.value} → ${v.changedTo}`),
    },
    contenders: [],
    runSeconds: null,
  };
  const save = () => {
    result.runSeconds = round((performance.now() - runStarted) / 1000, 1);
    fs.mkdirSync(path.dirname(options.out), { recursive: true });
    fs.writeFileSync(options.out, `${JSON.stringify(result, null, 2)}\n`);
  };

  say(
    `${n.toLocaleString('en-US')} connections per contender (${options.contenders.join(', ')}); ${plan.clients} client processes; ` +
      `${plan.addressCount} source address(es) each, ≤ ${plan.perAddress} connections per address; open-files limit ${fdLimit}`,
  );
  const runDeadline = runStarted + options.limitS * 1000;
  for (const [index, name] of options.contenders.entries()) {
    if (performance.now() > runDeadline - 10_000) {
      result.contenders.push({ name, skipped: `the run's ${options.limitS} s limit was reached`, errors: [] });
      continue;
    }
    result.contenders.push(await runContender(name, index, options, plan, runDeadline, options.contenders.length - index));
    save();
  }
  restoreSysctls();
  save();
  const written = writeReport(options.out);
  say(`run finished in ${result.runSeconds} s; wrote ${[options.out, ...written].map((f) => path.relative(process.cwd(), f)).join(', ')}`);
  const failed = result.contenders.filter((c) => c.errors.length > 0 || c.skipped);
  // A contender stopped by its time limit may leave a sleep of its own behind; nothing is left to wait for.
  process.exit(failed.length > 0 ? 1 : 0);
}

await main();
