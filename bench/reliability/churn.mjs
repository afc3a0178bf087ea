// Reliability case "churn" (bench/peers infrastructure: one bench/peers/server.mjs
// process running the ssecast-node contender, one bench/peers/load-client.mjs
// process, both on 127.0.0.1, driven over IPC):
//
//   "Churn: 100,000 connect/disconnect cycles: heap back within 10 % of its
//    starting point, hub stats at zero, no MaxListenersExceededWarning."
//
// The server runs with `authorize` on: each cycle is one of PRINCIPALS
// principals, with maxConnectionsPerPrincipal at the churn's concurrency, so a
// principal slot that is never given back would, once enough leak, show as 429s
// during the churn. After it, every principal opens exactly its limit of
// connections (all must be 200: not one slot leaked) plus one more for the first
// principal (must be 429: the limit is in force).
//
// A cycle is the load client's churn: connect, send the GET, wait for the
// response head, close with a TCP reset (socket.resetAndDestroy()).
//
//   npm run build && node bench/reliability/churn.mjs [--quick]
// Prints the result as JSON: { name, passed, criteria: [{ what, value, limit, ok }], figures }.
// Also: import { run } from './churn.mjs'; await run({ quick }).
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { settle } from '../peers/child.mjs';
import { runFromCli } from './lib/cli.mjs';
import { withSession } from './slow-clients.mjs';

const FULL = { cycles: 100_000, warmup: 2000, concurrency: 100, principals: 10 };
const QUICK = { ...FULL, cycles: 10_000 };
const HEAP_TOLERANCE = 0.1;

const round = (x, digits = 2) => (x === null || x === undefined || !Number.isFinite(x) ? null : Number(x.toFixed(digits)));
const MiB = (bytes) => round(bytes / 2 ** 20, 2);
/** Progress lines: run({ log }) (bench/reliability/run.mjs passes one), else stderr. */
const toStderr = (text) => process.stderr.write(`[churn] ${text}\n`);
let say = toStderr;
const sameCounts = (a, b) => Object.keys({ ...a, ...b }).every((k) => (a[k] ?? 0) === (b[k] ?? 0));
const pick = (m) => ({ rss: m.rss, heapUsed: m.heapUsed, external: m.external, arrayBuffers: m.arrayBuffers });

export async function run({ quick = false, overrides = {}, log } = {}) {
  say = typeof log === 'function' ? log : toStderr;
  const cfg = { ...(quick ? QUICK : FULL), ...overrides };
  const maxPerPrincipal = cfg.concurrency;
  const startedAt = performance.now();
  return withSession({ authorize: true, maxConnectionsPerPrincipal: maxPerPrincipal }, async (s) => {
    const churnPath = `${s.path}&p={principal}`;
    const churn = (cycles) =>
      s.client.call('churn', { port: s.port, path: churnPath, cycles, concurrency: cfg.concurrency, principals: cfg.principals }, 600_000);

    say(`warm-up: ${cfg.warmup} cycles`);
    const warm = await churn(cfg.warmup);
    await settle(s.server, (c) => c === 0, '0 connections after the warm-up');
    const before = await s.server.call('memory');
    const statsBefore = await s.server.call('stats');

    say(
      `churn: ${cfg.cycles} cycles, ${cfg.concurrency} in flight, ${cfg.principals} principals of at most ${maxPerPrincipal} connections`,
    );
    const done = await churn(cfg.cycles);
    const drainStarted = performance.now();
    await settle(s.server, (c) => c === 0, '0 connections after the churn');
    const drainMs = Math.round(performance.now() - drainStarted);
    const after = await s.server.call('memory');
    const statsAfter = await s.server.call('stats');

    // Leaked principal slots: each principal must still get its full limit, and not one more.
    say(`probe: ${cfg.principals} x ${maxPerPrincipal} connections, then one over the limit`);
    const probe = { opened: 0, failures: {} };
    for (let p = 0; p < cfg.principals; p++) {
      const r = await s.client.call('open', { port: s.port, path: `${s.path}&p=p${p}`, count: maxPerPrincipal }, 120_000);
      probe.opened += r.opened;
      for (const [reason, n] of Object.entries(r.failures)) probe.failures[reason] = (probe.failures[reason] ?? 0) + n;
    }
    const over = await s.client.call('open', { port: s.port, path: `${s.path}&p=p0`, count: 1 }, 30_000);
    const probeServerConnections = (await s.server.call('connections')).connections;
    await s.client.call('close');
    await settle(s.server, (c) => c === 0, '0 connections after the probe');
    const statsFinal = await s.server.call('stats');
    const { count: warningCount, byName, first } = await s.server.call('warnings');
    const warnings = { count: warningCount, byName, first };

    const heapChange = (after.heapUsed - before.heapUsed) / before.heapUsed;
    const hubAfter = statsAfter.stats;
    const hubFinal = statsFinal.stats;
    const heartbeat = statsFinal.heartbeat;
    const expectedProbe = cfg.principals * maxPerPrincipal;
    const criteria = [
      {
        what: 'heap after the churn vs before (after gc), change',
        value: `${round(heapChange * 100, 2)} %`,
        limit: `within ±${HEAP_TOLERANCE * 100} %`,
        ok: Math.abs(heapChange) <= HEAP_TOLERANCE,
      },
      { what: 'hub.stats().connections after the churn', value: hubAfter.connections, limit: '== 0', ok: hubAfter.connections === 0 },
      { what: 'hub.stats().streams after the churn', value: hubAfter.streams, limit: '== 0', ok: hubAfter.streams === 0 },
      {
        what: 'cycles that did not get a 200 head (429 = a principal slot not given back)',
        value: done.failed + warm.failed,
        limit: '== 0',
        ok: done.failed + warm.failed === 0,
      },
      {
        what: `principal slots after the churn: each of ${cfg.principals} principals opens its limit of ${maxPerPrincipal} (200), one more gets 429`,
        value: `${probe.opened} of ${expectedProbe} opened; the one over: ${over.opened === 1 ? '200' : Object.keys(over.failures).join(', ')}`,
        limit: `${expectedProbe} opened; status 429`,
        ok: probe.opened === expectedProbe && over.opened === 0 && over.failures['status 429'] === 1,
      },
      {
        what: 'hub.stats().connections and streams after the probe closed',
        value: `${hubFinal.connections}, ${hubFinal.streams}`,
        limit: '0, 0',
        ok: hubFinal.connections === 0 && hubFinal.streams === 0,
      },
      {
        what: 'heartbeat scheduler after the churn and after the probe (hub.heartbeatScheduler(): timer running, registered connections)',
        value: heartbeat
          ? `running ${statsAfter.heartbeat.running}, size ${statsAfter.heartbeat.size}; running ${heartbeat.running}, size ${heartbeat.size}`
          : 'not reachable: skipped',
        limit: 'running false, size 0',
        ok: heartbeat ? [statsAfter.heartbeat, heartbeat].every((h) => h.running === false && h.size === 0) : true,
      },
      {
        what: "server's active resources after the churn (process.getActiveResourcesInfo(): timers, sockets), same as before it",
        value: JSON.stringify(statsAfter.resources),
        limit: JSON.stringify(statsBefore.resources),
        ok: sameCounts(statsBefore.resources, statsAfter.resources),
      },
      {
        what: 'process warnings in the server (MaxListenersExceededWarning or any other)',
        value: warnings.count,
        limit: '== 0',
        ok: warnings.count === 0,
      },
    ];

    return {
      name: 'churn',
      passed: criteria.every((c) => c.ok),
      criteria,
      figures: {
        quick,
        settings: {
          ...cfg,
          maxConnectionsPerPrincipal: maxPerPrincipal,
          authorize: 'principal p<k % principals> for cycle k, every stream allowed',
        },
        machine: { cpu: os.cpus()[0]?.model, cores: os.cpus().length, node: process.version, loadAverage1m: round(os.loadavg()[0]) },
        contender: `ssecast-node ${s.version}`,
        cycles: done.cycles,
        failed: done.failed,
        failures: done.failures,
        elapsedMs: done.elapsedMs,
        cyclesPerSecond: Math.round(((done.cycles - done.failed) / done.elapsedMs) * 1000),
        drainMs,
        warmup: { cycles: warm.cycles, failed: warm.failed, elapsedMs: warm.elapsedMs },
        memory: {
          before: pick(before),
          after: pick(after),
          heapChangeMiB: MiB(after.heapUsed - before.heapUsed),
          heapChangePercent: round(heapChange * 100, 2),
          rssChangeMiB: MiB(after.rss - before.rss),
        },
        hub: { before: statsBefore.stats, afterChurn: hubAfter, afterProbe: hubFinal },
        heartbeat: { before: statsBefore.heartbeat, afterChurn: statsAfter.heartbeat, afterProbe: heartbeat },
        // process.getActiveResourcesInfo() by type: timers and sockets the server holds.
        activeResources: { before: statsBefore.resources, afterChurn: statsAfter.resources, afterProbe: statsFinal.resources },
        probe: {
          opened: probe.opened,
          failures: probe.failures,
          serverConnections: probeServerConnections,
          overLimit: { opened: over.opened, failures: over.failures },
        },
        warnings,
        runSeconds: round((performance.now() - startedAt) / 1000, 1),
      },
    };
  });
}

if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  await runFromCli(run, 'node bench/reliability/churn.mjs [--quick] [--cycles=N --warmup=N --concurrency=N --principals=N]');
}
