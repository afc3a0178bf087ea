// What the Redis backend costs, with two hub processes on one Redis: instance A
// (this process) publishes; instance B (this file again, forked with
// --instance-b) serves the node adapter on 127.0.0.1 and reads its own SSE
// endpoint with a raw HTTP request and eventsource-parser. Measured:
//   - publish rate: sequential `await hub.publish`, and 64, 256, 1,024 and 4,096 publishes in
//     flight (publishes issued together go to Redis as one script call: batched appends);
//   - end-to-end latency, publish on A to arrival at B's client, one event
//     every 5 ms (paced), then a burst of 20,000 events with 1,024 in flight
//     (deliveries per second at the client, latency);
//   - the memory backend in one process (publish rate, paced latency) for comparison.
// Events carry their publish time (performance.timeOrigin + performance.now(),
// a clock both processes share; the measured offset is printed). Every event is
// counted by its index: a missing one is reported as missing, never folded into a
// rate, and the run exits 1.
//   node bench/redis.mjs [pacedEvents=2000] [burstEvents=20000]
// Redis at REDIS_URL (default redis://127.0.0.1:6379); keys go under a fresh
// prefix, deleted at the end. Writes bench/results/redis.json.
import http from 'node:http';
import fs from 'node:fs';
import os from 'node:os';
import { fork } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { createParser } from 'eventsource-parser';
import { EventManager, POSITION_EVENT } from '../dist/index.js';
import { RedisBackend } from '../dist/backends/redis.js';
import { createSseHandler } from '../dist/adapters/node.js';

const REDIS_URL = process.env.REDIS_URL || 'redis://127.0.0.1:6379';
const STREAM = 'bench';
/** Publishes in flight in the burst. */
const WINDOW = 1024;
/** In-flight counts the publish rate is measured at (1: each awaited in turn). */
const WINDOWS = [1, 64, 256, 1024, 4096];
const PACED_INTERVAL_MS = 5;
/** How long each publish-rate measurement runs. */
const RATE_MS = 1500;
/** A collector that sees no new event for this long stops waiting and reports what is missing. */
const QUIET_MS = 3000;
/** The whole run; past it, everything is stopped and the run fails. */
const RUN_LIMIT_MS = 120_000;
/** A line of command output: what a typical event carries besides the timing fields. */
const LINE = 'src/backends/redis.ts(214,7): compiled 42 modules in 1.8s, 0 warnings, cache hit ratio 0.97';

/** Wall-clock milliseconds with sub-millisecond resolution, comparable across processes. */
const now = () => performance.timeOrigin + performance.now();
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** @param {number} i @param {number} t */
const payload = (i, t) => ({ i, t, line: LINE });

/**
 * @typedef {{ received: number, missing: number, duplicates: number, lastArrival: number, closed: boolean, latencies: number[] }} Collected
 * What a client saw of one phase: `latencies` (arrival - publish time, ms) in index order.
 */

/** An SSE endpoint for `hub` on 127.0.0.1, on a free port. */
async function serve(hub) {
  const server = http.createServer(
    createSseHandler(hub, { replay: 0, heartbeatMs: 0, maxConnectionsPerClient: Infinity, maxConnections: Infinity }),
  );
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return server;
}

/**
 * A raw HTTP request for `/?stream=bench`, parsed with eventsource-parser. The
 * event type names the phase; data is `{ i, t }`. Arrival is the time the chunk
 * that completed the event was read from the socket.
 * @param {number} port
 */
function connectClient(port) {
  /** @type {Map<string, { lat: number[], received: number, duplicates: number, lastArrival: number }>} */
  const phases = new Map();
  const phase = (type) => {
    let p = phases.get(type);
    if (!p) phases.set(type, (p = { lat: [], received: 0, duplicates: 0, lastArrival: 0 }));
    return p;
  };
  let arrival = 0;
  let closed = false;
  const parser = createParser({
    onEvent(event) {
      // The position marker (a fresh connection's id) is no event to time.
      if (event.event === POSITION_EVENT) return;
      const { i, t } = JSON.parse(event.data);
      const p = phase(event.event ?? 'message');
      if (p.lat[i] !== undefined) {
        p.duplicates++;
        return;
      }
      p.lat[i] = arrival - t;
      p.received++;
      p.lastArrival = arrival;
    },
  });
  /** @type {http.ClientRequest} */
  let request;
  const opened = new Promise((resolve, reject) => {
    request = http.get({ host: '127.0.0.1', port, path: `/?stream=${STREAM}`, headers: { accept: 'text/event-stream' } }, (res) => {
      if (res.statusCode !== 200) return reject(new Error(`the SSE request got HTTP ${res.statusCode}`));
      res.setEncoding('utf8');
      res.on('data', (chunk) => {
        arrival = now();
        parser.feed(chunk);
      });
      res.on('close', () => (closed = true));
      resolve(undefined);
    });
    request.on('error', (error) => {
      closed = true;
      reject(error);
    });
  });
  return {
    opened,
    get closed() {
      return closed;
    },
    count: (type) => phase(type).received,
    /**
     * Waits until `expected` events of `type` came, or none came for QUIET_MS.
     * @returns {Promise<Collected>}
     */
    async collect(type, expected) {
      const p = phase(type);
      let seen = p.received;
      let changed = performance.now();
      while (p.received < expected && !closed && performance.now() - changed < QUIET_MS) {
        await sleep(2);
        if (p.received !== seen) [seen, changed] = [p.received, performance.now()];
      }
      const latencies = [];
      let missing = 0;
      for (let i = 0; i < expected; i++) {
        if (p.lat[i] === undefined) missing++;
        else latencies.push(p.lat[i]);
      }
      return { received: p.received, missing, duplicates: p.duplicates, lastArrival: p.lastArrival, closed, latencies };
    },
    destroy: () => request?.destroy(),
  };
}

/**
 * Publishes for `ms` with `window` publishes in flight (1: sequential awaits).
 * @param {EventManager} hub
 */
async function publishRate(hub, window, ms) {
  let done = 0;
  const started = performance.now();
  const deadline = started + ms;
  const worker = async () => {
    while (performance.now() < deadline) {
      await hub.publish('rate', 'rate', payload(done, now()));
      done++;
    }
  };
  await Promise.all(Array.from({ length: window }, worker));
  const seconds = (performance.now() - started) / 1000;
  return { events: done, seconds: round(seconds, 3), eventsPerSecond: Math.round(done / seconds) };
}

/** The publish rate at each of WINDOWS: `{ sequential, inFlight: { [window]: rate } }`. */
async function publishRates(hub) {
  const sequential = await publishRate(hub, 1, RATE_MS);
  const inFlight = {};
  for (const window of WINDOWS.slice(1)) inFlight[window] = await publishRate(hub, window, RATE_MS);
  return { sequential, inFlight };
}

/**
 * One event every `intervalMs` on its own schedule (a late publish does not delay the next).
 * @param {EventManager} hub
 */
async function publishPaced(hub, type, count, intervalMs) {
  const acks = [];
  const pending = [];
  let failed = 0;
  let firstError;
  const start = performance.now() + 10;
  for (let i = 0; i < count; i++) {
    const wait = start + i * intervalMs - performance.now();
    if (wait >= 1) await sleep(Math.floor(wait));
    const t = now();
    pending.push(
      hub.publish(STREAM, type, payload(i, t)).then(
        () => acks.push(now() - t),
        (error) => {
          failed++;
          firstError ??= error;
        },
      ),
    );
  }
  await Promise.all(pending);
  return { failed, firstError, ack: stats(acks) };
}

/**
 * `count` events with `window` publishes in flight.
 * @param {EventManager} hub
 */
async function publishBurst(hub, type, count, window) {
  let next = 0;
  let failed = 0;
  let firstError;
  const start = now();
  const worker = async () => {
    while (next < count) {
      const i = next++;
      try {
        await hub.publish(STREAM, type, payload(i, now()));
      } catch (error) {
        failed++;
        firstError ??= error;
      }
    }
  };
  await Promise.all(Array.from({ length: window }, worker));
  const seconds = (now() - start) / 1000;
  return { start, failed, firstError, publishSeconds: round(seconds, 3), publishedPerSecond: Math.round(count / seconds) };
}

/**
 * Until the client has an event of the phase, one every 10 ms (the subscription
 * goes live in the background); then a few hundred more to warm both ends up.
 * @param {EventManager} hub
 * @param {{ count(type: string): Promise<number> | number, collect(type: string, expected: number): Promise<Collected> }} sink
 */
async function warmUp(hub, sink) {
  let i = 0;
  const deadline = performance.now() + 10_000;
  while ((await sink.count('warm')) === 0) {
    if (performance.now() > deadline) throw new Error('the SSE client received nothing within 10 s');
    await hub.publish(STREAM, 'warm', payload(i++, now()));
    await sleep(10);
  }
  const more = i + 500;
  const worker = async () => {
    while (i < more) await hub.publish(STREAM, 'warm', payload(i++, now()));
  };
  await Promise.all(Array.from({ length: 16 }, worker));
  const warm = await sink.collect('warm', more);
  if (warm.missing) throw new Error(`warm-up: ${warm.missing} of ${more} events did not arrive`);
}

/** Latency summary of `values` (ms): nearest-rank percentiles. */
function stats(values) {
  if (values.length === 0) return { count: 0, p50: null, p99: null, max: null, mean: null };
  const sorted = Float64Array.from(values).sort();
  const rank = (q) => sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))];
  const mean = sorted.reduce((a, b) => a + b, 0) / sorted.length;
  return {
    count: sorted.length,
    p50: round(rank(0.5), 3),
    p99: round(rank(0.99), 3),
    max: round(sorted[sorted.length - 1], 3),
    mean: round(mean, 3),
  };
}

function round(value, digits) {
  return Number(value.toFixed(digits));
}

/** A latency run's figures from what was published and what the client saw. */
function latencyResult(expected, published, seen) {
  return {
    events: expected,
    received: seen.latencies.length,
    missing: seen.missing,
    duplicates: seen.duplicates,
    publishFailed: published.failed,
    clientConnectionClosed: seen.closed,
    latencyMs: stats(seen.latencies),
    publishAckMs: published.ack,
  };
}

function burstResult(expected, published, seen) {
  const seconds = (seen.lastArrival - published.start) / 1000;
  return {
    events: expected,
    window: WINDOW,
    received: seen.latencies.length,
    missing: seen.missing,
    duplicates: seen.duplicates,
    publishFailed: published.failed,
    clientConnectionClosed: seen.closed,
    publishSeconds: published.publishSeconds,
    publishedPerSecond: published.publishedPerSecond,
    // A rate only when every event arrived: a partial count would flatter it.
    deliverySeconds: seen.missing === 0 ? round(seconds, 3) : null,
    deliveriesPerSecond: seen.missing === 0 ? Math.round(expected / seconds) : null,
    latencyMs: stats(seen.latencies),
  };
}

// ---------------------------------------------------------------- instance B

/** The child: a Redis-backed hub behind node:http, and a client reading it; driven over IPC. */
async function instanceB() {
  process.on('disconnect', () => process.exit(1)); // the parent is gone: do not linger
  const hub = new EventManager({
    replay: 0,
    heartbeatMs: 0,
    backend: new RedisBackend({ redis: new Redis(REDIS_URL, { lazyConnect: true }), prefix: process.env.BENCH_PREFIX }),
  });
  const server = await serve(hub);
  const client = connectClient(server.address().port);
  await client.opened;
  const handlers = {
    clock: () => now(),
    count: (type) => client.count(type),
    collect: ({ type, expected }) => client.collect(type, expected),
    stats: () => hub.stats(),
    close: async () => {
      client.destroy();
      await hub.close();
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
  process.on('message', async ({ id, cmd, args }) => {
    try {
      const result = await handlers[cmd](args);
      process.send({ id, ok: true, result }, () => cmd === 'close' && process.disconnect());
    } catch (error) {
      process.send({ id, ok: false, error: String(error?.stack ?? error) });
    }
  });
  process.send({ ready: true });
}

// ---------------------------------------------------------------- instance A and the run

/** Calls into the child; rejects when it exits first. */
function connectChild(child) {
  let seq = 0;
  const waiting = new Map();
  let exited = false;
  child.on('message', (message) => {
    const entry = waiting.get(message.id);
    if (!entry) return;
    waiting.delete(message.id);
    message.ok ? entry.resolve(message.result) : entry.reject(new Error(`instance B: ${message.error}`));
  });
  child.on('exit', (code, signal) => {
    exited = true;
    for (const entry of waiting.values()) entry.reject(new Error(`instance B exited (${signal ?? code})`));
    waiting.clear();
  });
  return (cmd, args) =>
    new Promise((resolve, reject) => {
      if (exited) return reject(new Error('instance B has exited'));
      const id = ++seq;
      waiting.set(id, { resolve, reject });
      child.send({ id, cmd, args });
    });
}

/** Redis's own address for messages: host and port, never credentials. */
function redisAddress() {
  try {
    const url = new URL(REDIS_URL);
    return `${url.hostname}:${url.port || 6379}`;
  } catch {
    return 'REDIS_URL';
  }
}

/** Deletes every key of the prefix; returns how many went and how many are left. */
async function deleteKeys(admin, prefix) {
  const pattern = `{${prefix}}:*`;
  let deleted = 0;
  let cursor = '0';
  do {
    const [next, keys] = await admin.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
    cursor = next;
    if (keys.length) deleted += await admin.del(...keys);
  } while (cursor !== '0');
  const [, left] = await admin.scan('0', 'MATCH', pattern, 'COUNT', 100_000);
  return { deleted, left: left.length };
}

async function main() {
  const pacedEvents = Number(process.argv[2] ?? 2000);
  const burstEvents = Number(process.argv[3] ?? 20_000);
  const where = redisAddress();
  const prefix = `bench-${randomBytes(6).toString('hex')}`;

  // One connection of our own for the check, INFO and the clean-up; it never retries.
  const admin = new Redis(REDIS_URL, {
    lazyConnect: true,
    connectTimeout: 2000,
    commandTimeout: 2000,
    maxRetriesPerRequest: 0,
    enableOfflineQueue: false,
    retryStrategy: () => null,
  });
  /** @type {Error | undefined} */
  let connectionError;
  admin.on('error', (error) => (connectionError ??= error));
  let redisVersion;
  try {
    await Promise.race([admin.connect(), sleep(3000).then(() => Promise.reject(new Error('no answer within 3 s')))]);
    const info = await admin.info('server');
    redisVersion = /redis_version:(\S+)/.exec(info)?.[1] ?? 'unknown';
  } catch (error) {
    console.error(
      `bench/redis.mjs: Redis at ${where} does not answer (${connectionError?.message ?? error?.message ?? error}). Start redis-server, or point REDIS_URL at one.`,
    );
    admin.disconnect();
    process.exit(1);
  }

  /** @type {import('node:child_process').ChildProcess | undefined} */
  let child;
  /** @type {EventManager | undefined} */
  let hubA;
  /** @type {Promise<{ deleted: number, left: number } | { error: string }> | undefined} */
  let cleaning;
  let aborted = false;
  // Once, whoever asks first (the end of the run, a failure, the watchdog); everyone waits for the same.
  const cleanUp = () => (cleaning ??= cleanUpOnce());
  const cleanUpOnce = async () => {
    if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await hubA?.close().catch(() => {});
    const keys = await deleteKeys(admin, prefix).catch((error) => ({ error: String(error?.message ?? error) }));
    await admin.quit().catch(() => admin.disconnect());
    return keys;
  };
  const abort = (why) => {
    aborted = true;
    console.error(`bench/redis.mjs: ${why}; stopping`);
    void Promise.race([cleanUp(), sleep(5000)]).finally(() => process.exit(1));
  };
  const watchdog = setTimeout(() => abort(`still running after ${RUN_LIMIT_MS / 1000} s`), RUN_LIMIT_MS);
  watchdog.unref();
  process.once('SIGINT', () => abort('interrupted'));

  const runStarted = performance.now();
  const say = (text) => process.stderr.write(`[${((performance.now() - runStarted) / 1000).toFixed(1).padStart(5)} s] ${text}\n`);
  const result = {
    date: new Date().toISOString(),
    node: process.version,
    cpu: os.cpus()[0]?.model,
    cores: os.cpus().length,
    os: `${os.type()} ${os.release()} ${os.arch()}`,
    memoryGiB: round(os.totalmem() / 2 ** 30, 1),
    // Other work on the machine moves these figures, the tail latencies most.
    loadAverage1m: round(os.loadavg()[0], 2),
    redis: { version: redisVersion, address: where, keyPrefix: prefix },
    settings: {
      pacedEvents,
      pacedIntervalMs: PACED_INTERVAL_MS,
      burstEvents,
      window: WINDOW,
      windows: WINDOWS,
      rateSeconds: RATE_MS / 1000,
      dataBytes: Buffer.byteLength(JSON.stringify(payload(1999, now()))),
      layout: 'redis: A (publisher) and B (hub + node:http + SSE client) are separate processes; memory: one process',
    },
  };

  try {
    // Memory backend, one process: publisher, hub, server and client.
    say('memory backend: publish rate');
    const memory = {};
    {
      const hub = new EventManager({ replay: 0, heartbeatMs: 0 });
      await publishRate(hub, 1, 300); // warm-up
      memory.publish = await publishRates(hub);
      const server = await serve(hub);
      const client = connectClient(server.address().port);
      await client.opened;
      await warmUp(hub, client);
      say(`memory backend: paced latency, ${pacedEvents} events, one every ${PACED_INTERVAL_MS} ms`);
      const published = await publishPaced(hub, 'paced', pacedEvents, PACED_INTERVAL_MS);
      memory.paced = latencyResult(pacedEvents, published, await client.collect('paced', pacedEvents));
      client.destroy();
      await hub.close();
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
    result.memory = memory;

    // Redis backend, two processes.
    say(`redis backend: starting instance B (prefix ${prefix})`);
    child = fork(fileURLToPath(import.meta.url), ['--instance-b'], { env: { ...process.env, REDIS_URL, BENCH_PREFIX: prefix } });
    const callB = connectChild(child);
    await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('instance B did not start within 10 s')), 10_000);
      child.once('exit', (code, signal) => reject(new Error(`instance B exited while starting (${signal ?? code})`)));
      child.on('message', (message) => message?.ready && (clearTimeout(timer), resolve(undefined)));
    });
    hubA = new EventManager({
      replay: 0,
      heartbeatMs: 0,
      backend: new RedisBackend({ redis: new Redis(REDIS_URL, { lazyConnect: true }), prefix }),
    });

    // The clocks: B's reading minus the midpoint of the IPC round trip, at the shortest round trip.
    let best = { rtt: Infinity, offset: 0 };
    for (let i = 0; i < 50; i++) {
      const t0 = now();
      const tB = await callB('clock');
      const t1 = now();
      if (t1 - t0 < best.rtt) best = { rtt: t1 - t0, offset: tB - (t0 + t1) / 2 };
    }
    const clock = { offsetMs: round(best.offset, 3), ipcRoundTripMs: round(best.rtt, 3) };

    const sinkB = { count: (type) => callB('count', type), collect: (type, expected) => callB('collect', { type, expected }) };
    say('redis backend: warm-up');
    await warmUp(hubA, sinkB);
    say('redis backend: publish rate');
    await publishRate(hubA, 1, 300);
    const publish = await publishRates(hubA);
    const batching = hubA.stats();
    publish.batches = { calls: batching.redisAppendBatches, largest: batching.redisLargestBatch };

    say(`redis backend: paced latency, ${pacedEvents} events, one every ${PACED_INTERVAL_MS} ms`);
    const pacedPublished = await publishPaced(hubA, 'paced', pacedEvents, PACED_INTERVAL_MS);
    const paced = latencyResult(pacedEvents, pacedPublished, await sinkB.collect('paced', pacedEvents));

    say(`redis backend: burst, ${burstEvents} events with ${WINDOW} in flight`);
    const burstPublished = await publishBurst(hubA, 'burst', burstEvents, WINDOW);
    const burst = burstResult(burstEvents, burstPublished, await sinkB.collect('burst', burstEvents));

    const statsB = await callB('stats');
    const statsA = hubA.stats();
    await callB('close');
    await new Promise((resolve) =>
      child.exitCode !== null || child.signalCode !== null ? resolve(undefined) : child.once('exit', resolve),
    );
    await hubA.close();
    for (const error of [pacedPublished.firstError, burstPublished.firstError]) if (error) console.error('a publish failed:', error);
    const pick = (s) => ({
      published: s.published,
      delivered: s.delivered,
      dropped: s.dropped,
      redisInterruptions: s.redisInterruptions,
      redisErrors: s.redisErrors,
    });
    result.redisBackend = { clock, publish, paced, burst, instanceA: pick(statsA), instanceB: pick(statsB) };
  } catch (error) {
    // After the watchdog, what fails is only the run it stopped.
    if (!aborted) console.error('bench/redis.mjs failed:', error);
    await cleanUp();
    process.exit(1);
  }
  say('cleaning up');
  result.cleanup = await cleanUp();
  clearTimeout(watchdog);
  result.runSeconds = round((performance.now() - runStarted) / 1000, 1);

  print(result);
  fs.mkdirSync(new URL('./results/', import.meta.url), { recursive: true });
  fs.writeFileSync(new URL('./results/redis.json', import.meta.url), `${JSON.stringify(result, null, 2)}\n`);

  const lost = [result.memory.paced, result.redisBackend.paced, result.redisBackend.burst].reduce(
    (n, r) => n + r.missing + r.publishFailed,
    0,
  );
  if (lost > 0) {
    console.error(`bench/redis.mjs: ${lost} events were not delivered (see "missing" and "publish failed" above)`);
    process.exitCode = 1;
  }
}

function print(r) {
  const { memory: m, redisBackend: x, settings: s } = r;
  const n = (v) => (v === null || v === undefined ? '-' : typeof v === 'number' ? v.toLocaleString('en-US') : String(v));
  const ms = (v) => (v === null || v === undefined ? '-' : v.toFixed(2));
  const received = (run) =>
    `${run.received}/${run.events}${run.missing ? ` (${run.missing} MISSING)` : ''}${run.publishFailed ? ` (${run.publishFailed} publish failed)` : ''}`;
  console.log(`ssecast Redis backend: redis ${r.redis.version} at ${r.redis.address}; ${r.cpu} x${r.cores}; node ${r.node}; ${r.os}`);
  console.log(
    `load average ${r.loadAverage1m} at start; event data ${s.dataBytes} bytes; A and B are separate processes (B: hub + node:http + SSE client); clock offset B-A ${x.clock.offsetMs} ms`,
  );
  console.log('');
  const rows = [
    ['publish, sequential await (events/s)', n(m.publish.sequential.eventsPerSecond), n(x.publish.sequential.eventsPerSecond)],
    ...s.windows
      .slice(1)
      .map((w) => [
        `publish, ${n(w)} in flight (events/s)`,
        n(m.publish.inFlight[w].eventsPerSecond),
        n(x.publish.inFlight[w].eventsPerSecond),
      ]),
    ['  script calls (batches), largest batch', '', `${n(x.publish.batches?.calls)}, ${n(x.publish.batches?.largest)}`],
    [`paced, 1 per ${s.pacedIntervalMs} ms: received`, received(m.paced), received(x.paced)],
    ['  latency p50 (ms)', ms(m.paced.latencyMs.p50), ms(x.paced.latencyMs.p50)],
    ['  latency p99 (ms)', ms(m.paced.latencyMs.p99), ms(x.paced.latencyMs.p99)],
    ['  latency max (ms)', ms(m.paced.latencyMs.max), ms(x.paced.latencyMs.max)],
    [
      '  publish resolved p50 / p99 (ms)',
      `${ms(m.paced.publishAckMs.p50)} / ${ms(m.paced.publishAckMs.p99)}`,
      `${ms(x.paced.publishAckMs.p50)} / ${ms(x.paced.publishAckMs.p99)}`,
    ],
    [`burst, ${n(s.burstEvents)} @ ${s.window} in flight: received`, '', received(x.burst)],
    ['  published (events/s)', '', n(x.burst.publishedPerSecond)],
    [
      '  deliveries at the client (/s)',
      '',
      x.burst.deliveriesPerSecond === null ? 'not computed: events missing' : n(x.burst.deliveriesPerSecond),
    ],
    ['  latency p50 / p99 (ms)', '', `${ms(x.burst.latencyMs.p50)} / ${ms(x.burst.latencyMs.p99)}`],
    ['  latency max (ms)', '', ms(x.burst.latencyMs.max)],
  ];
  console.log(''.padEnd(42), 'memory, 1 process'.padStart(20), 'redis, A -> B'.padStart(24));
  for (const [label, a, b] of rows) console.log(label.padEnd(42), a.padStart(20), b.padStart(24));
  console.log('');
  const issues = ['dropped', 'redisInterruptions', 'redisErrors'].map((k) => `${k} ${x.instanceB[k]}`).join(', ');
  console.log(
    `instance B: ${issues}; keys {${r.redis.keyPrefix}}:* ${r.cleanup?.deleted ?? '?'} deleted, ${r.cleanup?.left ?? '?'} left; run ${r.runSeconds} s`,
  );
}

if (process.argv[2] === '--instance-b') await instanceB();
else await main();
