// Reliability case "slow clients" (bench/peers infrastructure: one
// bench/peers/server.mjs process running the ssecast-node contender, one
// bench/peers/load-client.mjs process, both on 127.0.0.1, driven over IPC):
//
//   "100 clients that never read beside 1,000 normal ones: the normal ones' p99
//    stays within 1.5x of a run without the slow ones, server memory stays under
//    (connections x per-connection cap) plus a fixed amount, the slow ones are cut
//    off and counted."
//
// Run A: NORMAL clients over STREAMS streams, a paced publisher (BATCH events of
// SIZE bytes every INTERVAL_MS, round-robin over the streams), maxUnsentBytes CAP.
// Run B: the same, in a fresh server, plus SLOW clients on the same streams that
// read their response head and then never read again (socket.pause()). Every
// stream gets enough bytes for a never-reading socket to fill the kernel's
// buffers on loopback (some MB: measured, `figures.cutOff`) and
// then cross CAP, so the slow ones are cut off within the run.
// The full run goes A B B A and compares the lower p99 of each kind (the run
// least disturbed by other load on a shared machine, which can move a p99
// several-fold from one run to the next; the means are reported too); --quick
// runs A B with fewer clients (200 + 20 over 4 streams).
//
// Memory: the bound is the issue's "(connections x per-connection cap) plus a
// fixed amount", the fixed amount being run A's peak RSS (the same server doing
// the same work for the same normal clients). Note that it is loose for this
// load: the subscribers of a stream share each tick's chunk (one Uint8Array
// written to all of them), so even slow clients that were never cut off would
// hold about streams x (bytes published past their kernel buffers), not
// clients x that; `figures.memoryMiB` has the peaks of RSS, heap and
// arrayBuffers of every run to compare directly.
//
//   npm run build && node bench/reliability/slow-clients.mjs [--quick]
// Prints the result as JSON: { name, passed, criteria: [{ what, value, limit, ok }], figures }.
// Also: import { run } from './slow-clients.mjs'; await run({ quick }).
import path from 'node:path';
import os from 'node:os';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { settle, startChild } from '../peers/child.mjs';
import { runFromCli } from './lib/cli.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const PEERS = path.join(HERE, '..', 'peers');
const CONTENDER = 'ssecast-node';

const FULL = {
  normal: 1000,
  slow: 100,
  streams: 10,
  cap: 64 * 1024,
  size: 1024,
  /** Events per stream: 5,000 frames of ~1.07 KB, about 5.1 MiB: past what a never-reading socket absorbs on loopback (about 3.9 MiB, measured) plus CAP. */
  eventsPerStream: 5000,
  /** Events published back to back every INTERVAL_MS, spread over the streams (16 per stream). */
  batch: 160,
  intervalMs: 40,
  sample: 20,
  /** 2: runs A B B A, the lower p99 of each kind compared; 1: A B. */
  repeats: 2,
};
const QUICK = { ...FULL, normal: 200, slow: 20, streams: 4, batch: 64, sample: 8, repeats: 1 };

const CRITERION_P99_RATIO = 1.5;
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const round = (x, digits = 2) => (x === null || x === undefined || !Number.isFinite(x) ? null : Number(x.toFixed(digits)));
const MiB = (bytes) => round(bytes / 2 ** 20, 1);
/** Progress lines: run({ log }) (bench/reliability/run.mjs passes one), else stderr. */
const toStderr = (text) => process.stderr.write(`[slow-clients] ${text}\n`);
let say = toStderr;

// ---------------------------------------------------------------------------
// Sessions: the peer bench's server and load client (bench/peers/PROTOCOL.md).
// withSession() is also used by churn.mjs.

/** A server (ssecast-node with `options`) and a load client; both are stopped when `body` settles. */
export async function withSession(options, body) {
  const server = startChild('server', path.join(PEERS, 'server.mjs'), [CONTENDER, JSON.stringify(options)], ['--expose-gc']);
  const client = startChild('client', path.join(PEERS, 'load-client.mjs'), [], []);
  try {
    const [ready] = await Promise.all([server.ready, client.ready]);
    return await body({ server, client, port: ready.port, path: ready.path, version: ready.version });
  } finally {
    await Promise.all([server.stop(), client.stop()]);
  }
}

// ---------------------------------------------------------------------------
// One run: open the clients, publish at a pace, wait for the normal ones, measure.

async function oneRun(cfg, withSlow) {
  const label = withSlow ? 'B' : 'A';
  return withSession({ maxUnsentBytes: cfg.cap }, async (s) => {
    const count = cfg.eventsPerStream * cfg.streams;
    const normal = await s.client.call('open', { port: s.port, path: s.path, count: cfg.normal, streams: cfg.streams }, 120_000);
    const slow = withSlow
      ? await s.client.call('open', { port: s.port, path: s.path, count: cfg.slow, streams: cfg.streams, stalled: true }, 120_000)
      : { opened: 0, failed: 0 };
    if (normal.failed || slow.failed)
      throw new Error(`run ${label}: connections failed to open: ${JSON.stringify({ normal: normal.failures, slow: slow.failures })}`);
    const total = normal.opened + slow.opened;
    await settle(s.server, (c) => c >= total, `${total} open`);
    const before = await s.server.call('memory');
    await s.server.call('usage', { sampleMs: 20 });
    await s.client.call('reset', { sample: cfg.sample });
    const cpuBefore = await s.server.call('cpu');

    say(
      `run ${label}: ${normal.opened} normal + ${slow.opened} never-reading clients over ${cfg.streams} streams; ${count} events of ${cfg.size} B, ${cfg.batch} every ${cfg.intervalMs} ms`,
    );
    const started = performance.now();
    const publishing = s.server.call(
      'paced',
      { streams: cfg.streams, count, size: cfg.size, intervalMs: cfg.intervalMs, batch: cfg.batch },
      300_000,
    );
    // Poll the hub while publishing: when the slow ones were cut off, counted in published events.
    const timeline = [];
    let published = false;
    publishing.then(
      () => (published = true),
      () => (published = true),
    );
    while (!published) {
      const { stats } = await s.server.call('stats');
      timeline.push({
        ms: Math.round(performance.now() - started),
        published: stats.published,
        dropped: stats.dropped,
        connections: stats.connections,
      });
      await sleep(100);
    }
    const { publishMs } = await publishing;
    const got = await s.client.call('wait', { expected: cfg.eventsPerStream, timeoutMs: 60_000, quietMs: 15_000 }, 75_000);
    const cpuAfter = await s.server.call('cpu');
    const peak = await s.server.call('usage', { sampleMs: 0 });
    const { stats, heartbeat } = await s.server.call('stats');
    const after = await s.server.call('memory');
    const backlog = withSlow ? await s.client.call('drainStalled', { timeoutMs: 10_000 }, 20_000) : undefined;
    const warnings = await s.server.call('warnings');

    const firstDrop = timeline.find((t) => t.dropped > 0);
    const allDropped = timeline.find((t) => t.dropped >= cfg.slow);
    const perStream = (t) => (t ? Math.round(t.published / cfg.streams) : null);
    return {
      version: s.version,
      opened: { normal: normal.opened, slow: slow.opened },
      events: count,
      eventsPerConnection: cfg.eventsPerStream,
      publishMs: Math.round(publishMs),
      serverCpuMs: Math.round((cpuAfter.user - cpuBefore.user + cpuAfter.system - cpuBefore.system) / 1000),
      clientCpuMs: got.clientCpuMs,
      normalClients: {
        complete: got.complete,
        connections: got.connections,
        closed: got.closed,
        minCount: got.minCount,
        delivered: got.delivered,
        expectedDeliveries: got.connections * cfg.eventsPerStream,
        elapsedMs: got.elapsedMs,
        sampleCounted: got.sampleCounted,
        sampleParsed: got.sampleParsed,
        latency: got.latency,
      },
      hub: { connections: stats.connections, dropped: stats.dropped, published: stats.published, delivered: stats.delivered },
      // The memory backend's retained frames: their mean size is the bytes one event takes on the wire (before chunked framing).
      frameBytes: stats.retainedEvents > 0 ? Math.round(stats.retainedBytes / stats.retainedEvents) : null,
      heartbeat,
      warnings: warnings.count,
      memory: {
        before: pick(before),
        peakRss: peak.peakRss,
        peakHeapUsed: peak.peakHeapUsed,
        peakArrayBuffers: peak.peakArrayBuffers,
        maxRss: peak.maxRss,
        samples: peak.samples,
        after: pick(after),
      },
      ...(withSlow
        ? {
            cutOff: {
              firstAtMs: firstDrop?.ms ?? null,
              allAtMs: allDropped?.ms ?? null,
              // Events published per stream when the poll (every 100 ms) first saw them.
              firstAtEventsPerStream: perStream(firstDrop),
              allAtEventsPerStream: perStream(allDropped),
            },
            slowBacklog: backlog,
          }
        : {}),
    };
  });
}

const pick = (m) => ({ rss: m.rss, heapUsed: m.heapUsed, external: m.external, arrayBuffers: m.arrayBuffers });

// ---------------------------------------------------------------------------

const mean = (xs) => xs.reduce((a, b) => a + b, 0) / xs.length;
const peakOf = (r) => Math.max(r.memory.peakRss, r.memory.maxRss);
const memoryFigures = (r) => ({
  before: MiB(r.memory.before.rss),
  peak: MiB(peakOf(r)),
  after: MiB(r.memory.after.rss),
  heapBefore: MiB(r.memory.before.heapUsed),
  peakHeapUsed: MiB(r.memory.peakHeapUsed),
  heapAfter: MiB(r.memory.after.heapUsed),
  arrayBuffersBefore: MiB(r.memory.before.arrayBuffers),
  peakArrayBuffers: MiB(r.memory.peakArrayBuffers),
});

export async function run({ quick = false, overrides = {}, log } = {}) {
  say = typeof log === 'function' ? log : toStderr;
  const cfg = { ...(quick ? QUICK : FULL), ...overrides };
  if (cfg.batch % cfg.streams !== 0)
    throw new Error('batch must be a multiple of streams (every stream gets the same events per interval)');
  const startedAt = performance.now();
  // A B, or A B B A: drift on a shared machine (other load coming and going) hits both alike.
  const order = cfg.repeats >= 2 ? ['A', 'B', 'B', 'A'] : ['A', 'B'];
  const runs = { A: [], B: [] };
  for (const which of order) {
    const r = await oneRun(cfg, which === 'B');
    runs[which].push(r);
    say(
      `run ${which}: p50 ${r.normalClients.latency.p50} ms, p99 ${r.normalClients.latency.p99} ms, peak RSS ${MiB(peakOf(r))} MiB, publishing ${r.publishMs} ms, dropped ${r.hub.dropped}`,
    );
  }
  const { A: as, B: bs } = runs;

  const connections = cfg.normal + cfg.slow;
  const p99sA = as.map((r) => r.normalClients.latency.p99);
  const p99sB = bs.map((r) => r.normalClients.latency.p99);
  const p99A = Math.min(...p99sA);
  const p99B = Math.min(...p99sB);
  const ratio = p99A > 0 ? p99B / p99A : null;
  const meanRatio = mean(p99sA) > 0 ? mean(p99sB) / mean(p99sA) : null;
  // The fixed amount: the server's peak RSS doing the same work for the same normal clients without
  // the slow ones (run A; the lower one when there are two). The bound adds every connection's cap.
  const fixed = Math.min(...as.map(peakOf));
  const bound = fixed + connections * cfg.cap;
  const peakB = Math.max(...bs.map(peakOf));
  const everyEvent = (r) =>
    r.normalClients.complete &&
    r.normalClients.closed === 0 &&
    r.normalClients.minCount === cfg.eventsPerStream &&
    r.normalClients.sampleCounted === r.normalClients.sampleParsed &&
    r.normalClients.connections === cfg.normal;
  const list = (xs) => (xs.length === 1 ? xs[0] : xs);
  const warnings = [...as, ...bs].reduce((n, r) => n + r.warnings, 0);

  const criteria = [
    {
      what: `normal clients' p99 latency, run B (with ${cfg.slow} never-reading clients) / run A (without)${as.length > 1 ? `, the lower p99 of ${as.length} runs each` : ''}`,
      value: round(ratio, 3),
      limit: `<= ${CRITERION_P99_RATIO}`,
      ok: ratio !== null && ratio <= CRITERION_P99_RATIO,
    },
    {
      what: `server peak RSS in run B (MiB) <= run A's peak RSS (the fixed amount) + ${connections} connections x maxUnsentBytes ${cfg.cap / 1024} KiB`,
      value: MiB(peakB),
      limit: `<= ${MiB(bound)} (${MiB(fixed)} + ${MiB(connections * cfg.cap)})`,
      ok: peakB <= bound,
    },
    {
      what: 'hub.stats().dropped in run B: the never-reading clients cut off and counted',
      value: list(bs.map((r) => r.hub.dropped)),
      limit: `== ${cfg.slow}`,
      ok: bs.every((r) => r.hub.dropped === cfg.slow),
    },
    {
      what: 'never-reading clients that found their connection closed by the server when they finally read (run B)',
      value: list(bs.map((r) => r.slowBacklog?.closed ?? null)),
      limit: `== ${cfg.slow}`,
      ok: bs.every((r) => r.slowBacklog?.closed === cfg.slow),
    },
    {
      what: `run B: normal clients that got every event (${cfg.eventsPerStream} each), none closed or dropped`,
      value: list(
        bs.map((r) =>
          everyEvent(r) ? r.normalClients.connections : `incomplete: fewest ${r.normalClients.minCount}, ${r.normalClients.closed} closed`,
        ),
      ),
      limit: `== ${cfg.normal}`,
      ok: bs.every(everyEvent),
    },
    {
      what: 'run A (no slow clients): every normal client got every event; hub.stats().dropped',
      value: list(as.map((r) => r.hub.dropped)),
      limit: '== 0, all complete',
      ok: as.every((r) => everyEvent(r) && r.hub.dropped === 0),
    },
    { what: 'process warnings in the server (all runs)', value: warnings, limit: '== 0', ok: warnings === 0 },
  ];

  const b0 = bs[0];
  const backlog = b0.slowBacklog?.bytes;
  return {
    name: 'slow-clients',
    passed: criteria.every((c) => c.ok),
    criteria,
    figures: {
      quick,
      settings: { ...cfg, order: order.join(' ') },
      machine: { cpu: os.cpus()[0]?.model, cores: os.cpus().length, node: process.version, loadAverage1m: round(os.loadavg()[0]) },
      contender: `${CONTENDER} ${as[0].version}`,
      latencyMs: {
        a: as.map((r) => ({
          p50: r.normalClients.latency.p50,
          p99: r.normalClients.latency.p99,
          max: r.normalClients.latency.max,
          samples: r.normalClients.latency.count,
        })),
        b: bs.map((r) => ({
          p50: r.normalClients.latency.p50,
          p99: r.normalClients.latency.p99,
          max: r.normalClients.latency.max,
          samples: r.normalClients.latency.count,
        })),
        p99A: round(p99A, 3),
        p99B: round(p99B, 3),
        p99Ratio: round(ratio, 3),
        p99RatioOfMeans: round(meanRatio, 3),
      },
      memoryMiB: {
        a: as.map(memoryFigures),
        b: bs.map(memoryFigures),
        bound: MiB(bound),
        boundTerms: `run A's peak RSS ${MiB(fixed)} + ${connections} x ${cfg.cap / 1024} KiB`,
        peakBOverA: MiB(peakB - fixed),
      },
      cutOff: {
        // When the hub's dropped count moved (polled every 100 ms while publishing), as ms into the
        // publishing and events published per stream by then.
        ...b0.cutOff,
        frameBytes: b0.frameBytes,
        allAtMiBPerStream:
          b0.cutOff.allAtEventsPerStream === null || !b0.frameBytes ? null : MiB(b0.cutOff.allAtEventsPerStream * b0.frameBytes),
        // What a never-reading socket took before it was cut: the bytes that were waiting for it
        // (kernel buffers of both ends plus the client's 16 KiB read buffer), read by the client after the run.
        backlogPerSlowClientMiB: backlog ? { min: MiB(backlog.min), median: MiB(backlog.median), max: MiB(backlog.max) } : null,
        slowConnectionsClosedByServer: b0.slowBacklog?.closed ?? null,
        endings: b0.slowBacklog?.endings ?? null,
        publishedPerStreamMiB: b0.frameBytes ? MiB(cfg.eventsPerStream * b0.frameBytes) : null,
      },
      runs: { a: as, b: bs },
      runSeconds: round((performance.now() - startedAt) / 1000, 1),
    },
  };
}

// ---------------------------------------------------------------------------

if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  await runFromCli(
    run,
    'node bench/reliability/slow-clients.mjs [--quick] [--normal=N --slow=N --streams=N --cap=BYTES --eventsPerStream=N --batch=N --intervalMs=N --sample=N --repeats=1|2]',
  );
}
