// Reconnect storm: N clients on S streams; while publishing goes on, the
// server drops every connection (socket.destroy(), what a crashed proxy
// does), twice; every client reconnects with Last-Event-ID. A checker then
// goes over every client's sequence: nothing lost, nothing duplicated, order
// kept per stream, no resync.
//
//   node bench/reliability/storm.mjs [--quick] [--backend memory|redis] [--graceful]
//
// Memory: one hub-server process. Redis: two hub-server processes on one
// prefix, clients split across them, each instance publishing half of the
// streams (each stream has one publisher, so one order); both drop at once
// and every client reconnects to the OTHER instance. --graceful (Redis):
// instead of drops, instance A gets SIGTERM mid-run, while it publishes; it
// closes its hub (its publisher stops at the first publish refused with
// ERR_HUB_CLOSED), ends its streams cleanly and hands its streams over to B,
// which publishes the rest of them; A must exit 0 with no write after end and
// no unhandled rejection; its clients resume on B.
//
// Needs the built package (`npm run build`). Prints the result as JSON.
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { startHub } from './lib/hub-process.mjs';
import { startClients } from './lib/resuming-client.mjs';
import { check } from './lib/checker.mjs';
import { asciiHistogram, bucketize, maxBucket, percentile, round1 } from './lib/stats.mjs';

export const SIZES = {
  full: { clients: 1000, streams: 100, perStream: 40, publishMs: 8000 },
  quick: { clients: 200, streams: 20, perStream: 40, publishMs: 5000 },
};
/** Each connection's retry: hint is drawn from this range. */
export const RETRY = { min: 250, max: 1500 };
/** When the drops happen, as fractions of the publishing time. */
// The third comes while the second's reconnects are still arriving (a flapping proxy): it hits
// the clients that are back already, some of them with their history still loading.
const DROPS_AT = [0.3, 0.65, 0.72];
const GRACEFUL_AT = 0.4;
const BUCKET_MS = 250;
const HEARTBEAT_MS = 300;

/**
 * @typedef {object} Criterion
 * @property {string} what
 * @property {number | boolean | string} value
 * @property {number | boolean | string} limit
 * @property {boolean} ok
 */

/**
 * @typedef {object} StormResult
 * @property {string} name
 * @property {boolean} passed
 * @property {Criterion[]} criteria
 * @property {Record<string, any>} figures
 */

/**
 * Runs one storm.
 * @param {object} [options]
 * @param {boolean} [options.quick]  200 clients on 20 streams instead of 1,000 on 100
 * @param {'memory' | 'redis'} [options.backend]
 * @param {boolean} [options.graceful]  Redis only: SIGTERM one instance instead of dropping connections
 * @param {string} [options.redisUrl]  default: REDIS_URL or redis://127.0.0.1:6379
 * @param {string} [options.prefix]  Redis key prefix (default: a unique one); its keys are deleted afterwards
 * @param {Partial<typeof SIZES.full>} [options.size]  overrides of the size
 * @param {(line: string) => void} [options.log]
 * @returns {Promise<StormResult>}
 */
export async function run({
  quick = false,
  backend = 'memory',
  graceful = false,
  redisUrl,
  prefix,
  size: sizeOverride,
  log = () => {},
} = {}) {
  if (backend !== 'memory' && backend !== 'redis') throw new TypeError(`backend must be 'memory' or 'redis', got ${backend}`);
  if (graceful && backend !== 'redis') throw new TypeError('the graceful variant needs the redis backend (two instances)');
  const size = { ...(quick ? SIZES.quick : SIZES.full), ...sizeOverride };
  const name = `storm ${backend}${backend === 'redis' ? (graceful ? ', two instances, SIGTERM one' : ', two instances') : ''}${quick ? ' (quick)' : ''}`;
  redisUrl ??= process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
  prefix ??= `ssecast-storm-${process.pid}-${randomBytes(4).toString('hex')}`;

  const streams = Array.from({ length: size.streams }, (_, i) => `s${i}`);
  const hubs = [];
  let clients = [];
  try {
    // ---- servers ----
    // Short heartbeats, so that the heartbeat timer is live on every connection when streams end.
    const hubOptions = {
      backend,
      redisUrl,
      prefix,
      retryMs: RETRY,
      historySize: Math.max(100, size.perStream * 2),
      heartbeatMs: HEARTBEAT_MS,
    };
    hubs.push(await startHub(hubOptions));
    if (backend === 'redis') hubs.push(await startHub(hubOptions));
    const [a, b] = hubs;
    log(`${name}: hubs on ${hubs.map((hub) => hub.port).join(', ')}`);

    // ---- clients: all connected before anything is published ----
    const refTime = Date.now();
    const rel = (time) => time - refTime;
    const specs = Array.from({ length: size.clients }, (_, i) => {
      const first = i % size.streams;
      const follows = [streams[first]];
      if (i % 5 === 0 && size.streams > 1) {
        let second = (first + Math.floor(size.streams / 2) + Math.floor(i / size.streams)) % size.streams;
        if (second === first) second = (first + 1) % size.streams;
        follows.push(streams[second]);
      }
      // Redis: half the clients start on A, half on B; each moves to the other on reconnect.
      const urls = hubs.length === 1 ? [a.url] : i % 2 === 0 ? [a.url, b.url] : [b.url, a.url];
      return { id: i, urls, streams: follows, refTime, defaultRetryMs: RETRY.max };
    });
    const connectStart = Date.now();
    clients = await startClients(specs);
    await waitFor(() => clients.every((client) => client.open), 30_000, 'every client to connect');
    await waitFor(async () => (await totalConnections(hubs)) === size.clients, 10_000, 'the servers to count every connection');
    const connectMs = Date.now() - connectStart;
    log(`${name}: ${size.clients} clients connected in ${connectMs} ms`);

    // ---- publishing, with the disruptions ----
    const totalRate = (size.streams * size.perStream * 1000) / size.publishMs;
    const owned = hubs.length === 1 ? [streams] : [streams.filter((_, i) => i % 2 === 0), streams.filter((_, i) => i % 2 === 1)];
    const publishStart = Date.now();
    await Promise.all(
      hubs.map((hub, i) => hub.request('publish', { streams: owned[i], perStream: size.perStream, rate: totalRate / hubs.length })),
    );

    /** @type {{ kind: string, at: number, sockets?: number }[]} */
    const disruptions = [];
    let terminated;
    let refusedWhileClosing;
    if (!graceful) {
      for (const fraction of DROPS_AT) {
        await sleepUntil(publishStart + fraction * size.publishMs);
        const answers = await Promise.all(hubs.map((hub) => hub.request('drop')));
        const at = Math.min(...answers.map((answer) => answer.at));
        disruptions.push({ kind: 'drop', at, sockets: answers.reduce((sum, answer) => sum + answer.dropped, 0) });
        log(`${name}: dropped ${disruptions.at(-1).sockets} sockets at +${at - publishStart} ms`);
      }
    } else {
      await sleepUntil(publishStart + GRACEFUL_AT * size.publishMs);
      const at = Date.now();
      const stats = await a.request('stats');
      disruptions.push({ kind: 'sigterm', at, sockets: stats.openSseSockets });
      const termination = a.terminate();
      // A stops publishing and says where it stopped; B carries on with A's streams.
      const handoff = await a.handoff;
      if (!handoff) throw new Error(`instance A exited without handing over its streams: ${a.stderr()}`);
      await b.request('publish', { streams: owned[0], perStream: size.perStream, rate: totalRate / 2, from: handoff.next });
      terminated = { handoff, ...(await termination) };
      refusedWhileClosing = handoff.refusedByClosedHub;
      log(`${name}: A exited with ${terminated.code} after SIGTERM at +${at - publishStart} ms`);
    }

    const live = graceful ? [b] : hubs;
    const publishResults = await Promise.all(live.map((hub) => hub.request('published')));
    const publishedTotal = publishResults.reduce((sum, result) => sum + result.published, 0) + (terminated?.handoff.published ?? 0);
    const publishErrors = publishResults.reduce((sum, result) => sum + result.errors, 0);
    const publishMs = Date.now() - publishStart;
    log(`${name}: published ${publishedTotal} events in ${publishMs} ms`);

    // ---- wait for every client to have everything (bounded) ----
    const needed = clients.map((client) => client.streams.length * size.perStream);
    const completeBy = Date.now() + 20_000;
    while (Date.now() < completeBy && !clients.every((client, i) => client.record.events.length >= needed[i])) await sleep(100);
    const settledMs = Date.now() - publishStart - publishMs;
    // A moment more, so that anything arriving late (a duplicate, say) is still recorded.
    await sleep(250);
    const stopRel = rel(Date.now());

    // ---- shut everything down, servers gracefully ----
    const serverStats = await Promise.all(live.map((hub) => hub.request('stats')));
    for (const client of clients) client.stop();
    const exits = await Promise.all(live.map((hub) => hub.terminate()));
    if (terminated) exits.unshift(terminated);

    // ---- check ----
    const records = clients.map((client) => client.record);
    const checked = check(records, () => size.perStream);
    const reconnects = disruptions.map((disruption, index) =>
      analyseDisruption(records, rel(disruption.at), disruptions[index + 1] ? rel(disruptions[index + 1].at) : stopRel, stopRel),
    );
    const reports = exits.map((exit) => exit.report);
    const faults = sumFaults(reports.map((report) => report?.faults));
    const totalConnectionsMade = records.reduce((sum, record) => sum + record.connections.length, 0);
    const failedAttempts = records.reduce((sum, record) => sum + record.connections.filter((c) => c.openedAt === undefined).length, 0);
    const retries = records.flatMap((record) => record.retries);
    const affected = reconnects.reduce((sum, r) => sum + r.affected, 0);

    const criteria = [
      criterion('events lost', checked.lost, 0),
      criterion('events duplicated', checked.duplicated, 0),
      criterion('events out of order (per stream)', checked.outOfOrder, 0),
      criterion('ids out of the one global order (per client)', checked.idsOutOfOrder, 0),
      criterion('unexpected events or unparsable frames', checked.unexpected + checked.parseErrors, 0),
      criterion('resync events', checked.resyncs, 0),
      criterion('clients complete', checked.complete, size.clients, checked.complete === size.clients),
      criterion('events published', publishedTotal, size.streams * size.perStream, publishedTotal === size.streams * size.perStream),
      criterion('publish errors', publishErrors, 0),
      criterion(
        graceful ? "instance A's clients when it got SIGTERM" : 'clients the first drop cut off',
        reconnects[0].affected,
        graceful ? disruptions[0].sockets : size.clients,
      ),
      criterion(
        graceful ? "A's clients that reconnected to B" : 'cut-off streams that were reconnected, over every drop',
        reconnects.reduce((sum, r) => sum + (graceful ? r.movedToOtherInstance : r.reconnected), 0),
        affected,
      ),
      ...(backend === 'redis' && !graceful
        ? [
            criterion(
              'reconnects that went to the other instance',
              reconnects.reduce((sum, r) => sum + r.movedToOtherInstance, 0),
              reconnects.reduce((sum, r) => sum + r.reconnected, 0),
            ),
          ]
        : []),
      ...(graceful
        ? [
            criterion(
              "A's streams ended cleanly (response end, not a reset)",
              reconnects[0].endedCleanly,
              reconnects[0].affected,
              reconnects[0].endedCleanly === reconnects[0].affected,
            ),
            criterion('instance A exit code after SIGTERM mid-run', terminated.code, 0, terminated.code === 0),
          ]
        : []),
      criterion('servers: unhandled rejections', faults.unhandledRejections, 0),
      criterion('servers: uncaught exceptions', faults.uncaughtExceptions, 0),
      criterion(
        'servers: writes after end (incl. ERR_STREAM_WRITE_AFTER_END)',
        faults.writesAfterEnd + (faults.responseErrors.ERR_STREAM_WRITE_AFTER_END ?? 0),
        0,
      ),
      criterion('servers: process warnings (e.g. MaxListenersExceededWarning)', faults.warnings, 0),
      criterion(
        'servers: exit code 0 on SIGTERM, report sent',
        exits.map((exit) => `${exit.code}${exit.report ? '' : ' (no report)'}`).join(', '),
        exits.map(() => '0').join(', '),
        exits.every((exit) => exit.code === 0 && exit.report),
      ),
    ];

    const figures = {
      backend,
      instances: hubs.length,
      clients: size.clients,
      streams: size.streams,
      eventsPerStream: size.perStream,
      clientsFollowingTwoStreams: records.filter((record) => record.streams.length === 2).length,
      retryRangeMs: RETRY,
      heartbeatMs: HEARTBEAT_MS,
      publishRatePerSecond: Math.round(totalRate),
      publishMs,
      eventsPublished: publishedTotal,
      ...(graceful ? { publishesRefusedByClosingHub: refusedWhileClosing, handedOverAt: terminated?.handoff.next } : {}),
      expectedDeliveries: checked.expected,
      deliveries: checked.events,
      lost: checked.lost,
      duplicated: checked.duplicated,
      outOfOrder: checked.outOfOrder,
      idsOutOfOrder: checked.idsOutOfOrder,
      resyncs: checked.resyncs,
      complete: checked.complete,
      problems: checked.examples,
      connectAllMs: connectMs,
      settledAfterPublishingMs: settledMs,
      disruptions: disruptions.map((disruption, i) => ({
        kind: disruption.kind,
        atMsIntoPublishing: disruption.at - publishStart,
        socketsAtServer: disruption.sockets,
        ...reconnects[i],
      })),
      connectionsMade: totalConnectionsMade,
      failedAttempts,
      retryValuesReceived: { count: retries.length, min: Math.min(...retries), max: Math.max(...retries), distinct: new Set(retries).size },
      serverFaults: faults,
      serverExitCodes: exits.map((exit) => exit.code),
      servers: reports.map((report) =>
        report
          ? {
              pid: report.pid,
              accepted: report.acceptedRequests,
              eventLoopDelayMs: report.eventLoopDelayMs,
              published: report.publishing.published,
              delivered: report.hub.delivered,
              slowConsumersDropped: report.hub.dropped,
              hubResyncs: report.hub.resyncs,
              connectionsAtExit: report.hub.connections,
              shutdown: report.shutdown,
              responseErrors: report.faults.responseErrors,
              socketErrors: report.faults.socketErrors,
              writesAfterDestroy: report.faults.writesAfterDestroy,
              firstProblem: report.faults.firstProblem,
            }
          : null,
      ),
      serverStatsBeforeExit: serverStats.map((s) => ({
        connections: s.hub.connections,
        delivered: s.hub.delivered,
        dropped: s.hub.dropped,
      })),
      ...(backend === 'redis' ? { prefix } : {}),
    };
    return { name, passed: criteria.every((c) => c.ok), criteria, figures };
  } finally {
    for (const client of clients) client.stop();
    await Promise.all(hubs.map((hub) => hub.terminate().catch(() => {})));
    if (backend === 'redis') await deleteKeys(redisUrl, prefix);
  }
}

/**
 * How the clients came back after one disruption at `atRel` (ms after the
 * reference time): the clients whose open connection ended after it (and
 * before the next disruption), and when each had a new stream open.
 */
function analyseDisruption(records, atRel, nextRel, stopRel) {
  const delays = [];
  const sent = [];
  const toHeaders = [];
  let affected = 0;
  let endedCleanly = 0;
  let attempts = 0;
  let movedToOther = 0;
  for (const record of records) {
    const connections = record.connections;
    const index = connections.findIndex(
      (c) =>
        c.openedAt !== undefined &&
        c.openedAt <= atRel &&
        c.endedAt !== undefined &&
        c.endedAt >= atRel &&
        c.endedAt < Math.min(nextRel, stopRel),
    );
    if (index < 0) continue;
    affected++;
    if (connections[index].error === undefined) endedCleanly++;
    const next = connections.slice(index + 1).find((c) => c.openedAt !== undefined);
    attempts += connections.slice(index + 1).findIndex((c) => c.openedAt !== undefined) + 1;
    if (!next) continue;
    if (next.url !== connections[index].url) movedToOther++;
    delays.push(next.openedAt - atRel);
    sent.push(next.at - atRel);
    toHeaders.push(next.openedAt - next.at);
  }
  const buckets = bucketize(delays, BUCKET_MS, 0);
  return {
    affected,
    reconnected: delays.length,
    endedCleanly,
    movedToOtherInstance: movedToOther,
    attemptsPerReconnect: delays.length ? round1(attempts / delays.length) : undefined,
    everyClientBackMs: delays.length ? Math.max(...delays) : undefined,
    reconnectMs: {
      p50: percentile(delays, 50),
      p90: percentile(delays, 90),
      p99: percentile(delays, 99),
      max: delays.length ? Math.max(...delays) : undefined,
    },
    // When the client sent its request (the retry: wait plus its own timer lag), and how long the response headers took.
    requestSentMs: { p50: percentile(sent, 50), p99: percentile(sent, 99) },
    requestToHeadersMs: {
      p50: percentile(toHeaders, 50),
      p99: percentile(toHeaders, 99),
      max: toHeaders.length ? Math.max(...toHeaders) : undefined,
    },
    maxPer250ms: maxBucket(buckets).max,
    histogram: buckets.map((bucket) => ({ fromMs: bucket.from, count: bucket.count })),
    histogramText: asciiHistogram(buckets, { barWidth: 40 }),
  };
}

function criterion(what, value, limit, ok = value === limit) {
  return { what, value, limit, ok };
}

function sumFaults(list) {
  const total = { unhandledRejections: 0, uncaughtExceptions: 0, warnings: 0, writesAfterEnd: 0, responseErrors: {}, missingReports: 0 };
  for (const faults of list) {
    if (!faults) {
      total.missingReports++;
      continue;
    }
    total.unhandledRejections += faults.unhandledRejections;
    total.uncaughtExceptions += faults.uncaughtExceptions;
    total.warnings += faults.warnings;
    total.writesAfterEnd += faults.writesAfterEnd;
    for (const [code, count] of Object.entries(faults.responseErrors))
      total.responseErrors[code] = (total.responseErrors[code] ?? 0) + count;
  }
  return total;
}

async function totalConnections(hubs) {
  const stats = await Promise.all(hubs.map((hub) => hub.request('stats')));
  return stats.reduce((sum, s) => sum + s.hub.connections, 0);
}

async function waitFor(condition, timeoutMs, what) {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(50);
  }
}

async function sleepUntil(time) {
  const wait = time - Date.now();
  if (wait > 0) await sleep(wait);
}

/** Deletes every `{prefix}:*` key (and only those). */
export async function deleteKeys(redisUrl, prefix) {
  const { Redis } = await import('ioredis');
  const redis = new Redis(redisUrl, { lazyConnect: true, maxRetriesPerRequest: 2 });
  try {
    await redis.connect();
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `{${prefix}}:*`, 'COUNT', 1000);
      cursor = next;
      if (keys.length) await redis.del(...keys);
    } while (cursor !== '0');
  } finally {
    redis.disconnect();
  }
}

/** Prints a result for a person: criteria, then the figures as JSON. */
export function summary(result) {
  const lines = [`${result.name}: ${result.passed ? 'PASSED' : 'FAILED'}`];
  for (const c of result.criteria) lines.push(`  ${c.ok ? 'ok  ' : 'FAIL'} ${c.what}: ${c.value} (limit ${c.limit})`);
  return lines.join('\n');
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { values } = parseArgs({
    options: {
      quick: { type: 'boolean', default: false },
      backend: { type: 'string', default: 'memory' },
      graceful: { type: 'boolean', default: false },
    },
  });
  const result = await run({
    quick: values.quick,
    backend: /** @type {'memory' | 'redis'} */ (values.backend),
    graceful: values.graceful,
    log: (line) => console.error(line),
  });
  console.error(summary(result));
  for (const disruption of result.figures.disruptions)
    console.error(
      `\n${disruption.kind} at +${disruption.atMsIntoPublishing} ms: reconnect time (ms after it)\n${disruption.histogramText}`,
    );
  console.log(JSON.stringify(result, null, 2));
  process.exitCode = result.passed ? 0 : 1;
}
