// Spread the herd: every connection's `retry:` hint is drawn from a range,
// so that clients dropped together (a deploy, a crashed proxy) do not all
// come back in the same second. N clients connect, the server drops every
// socket, and they come back after the retry value each received. Run once
// with a fixed retryMs and once with a range; reported: the retry values
// received, and when the reconnects arrived at the server, per 250 ms.
//
//   node bench/reliability/spread.mjs [--quick]
//
// Needs the built package (`npm run build`). Prints the result as JSON.
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { startHub } from './lib/hub-process.mjs';
import { startClients } from './lib/resuming-client.mjs';
import { asciiHistogram, bucketize, maxBucket, percentile } from './lib/stats.mjs';

export const FIXED_MS = 2000;
export const RANGE = { min: 1000, max: 5000 };
/** With the range, no 250 ms bucket may hold this share of the reconnects or more. */
export const MAX_BUCKET_SHARE = 0.15;
const BUCKET_MS = 250;
const STREAMS = 100;

/**
 * @typedef {object} PhaseResult
 * @property {number | { min: number, max: number }} retryMs  what the server was configured with
 * @property {number} clients
 * @property {number} dropped  sockets the server destroyed
 * @property {number} reconnected  clients with a new stream open after the drop
 * @property {number[]} retryValues  the retry: value each client received on the connection that was dropped
 * @property {number[]} retryValuesAfter  the values received on the new connections
 * @property {number[]} arrivalsMs  when each reconnect reached the server, ms after the drop
 * @property {number[]} reconnectMs  when each client had its new stream open, ms after the drop (client side)
 */

/**
 * One phase: a hub with this retryMs, N clients, one drop, wait for all to come back.
 * @returns {Promise<PhaseResult>}
 */
async function phase(retryMs, clientCount) {
  const hub = await startHub({ backend: 'memory', retryMs });
  let clients = [];
  try {
    const refTime = Date.now();
    const specs = Array.from({ length: clientCount }, (_, i) => ({ id: i, urls: [hub.url], streams: [`s${i % STREAMS}`], refTime }));
    clients = await startClients(specs);
    await waitFor(
      () => clients.every((client) => client.open && client.record.connections[0].retry !== undefined),
      30_000,
      'every client to connect',
    );
    await waitFor(async () => (await hub.request('stats')).hub.connections === clientCount, 10_000, 'the server to count every connection');
    // Settle, so that the drop is the only thing going on.
    await sleep(200);
    const { dropped, at } = await hub.request('drop');
    const dropRel = at - refTime;
    const longest = typeof retryMs === 'number' ? retryMs : retryMs.max;
    const back = () =>
      clients.filter((client) => client.record.connections.some((c) => c.openedAt !== undefined && c.at >= dropRel)).length;
    const deadline = Date.now() + longest + 15_000;
    while (back() < clientCount && Date.now() < deadline) await sleep(50);
    const { arrivals } = await hub.request('arrivals', { since: at });
    const records = clients.map((client) => client.record);
    const retryValues = records.map((record) => record.connections[0].retry);
    const retryValuesAfter = records.flatMap((record) =>
      record.connections
        .slice(1)
        .map((c) => c.retry)
        .filter((retry) => retry !== undefined),
    );
    const reconnectMs = records.flatMap((record) => {
      const next = record.connections.find((c) => c.openedAt !== undefined && c.at >= dropRel);
      return next ? [next.openedAt - dropRel] : [];
    });
    return {
      retryMs,
      clients: clientCount,
      dropped,
      reconnected: reconnectMs.length,
      retryValues,
      retryValuesAfter,
      arrivalsMs: arrivals.map((time) => time - at),
      reconnectMs,
    };
  } finally {
    for (const client of clients) client.stop();
    await hub.terminate();
  }
}

function describe(result) {
  const { retryMs } = result;
  const min = typeof retryMs === 'number' ? retryMs : retryMs.min;
  const max = typeof retryMs === 'number' ? retryMs : retryMs.max;
  // The range is inclusive: a value of exactly `max` goes in the last bucket, not one of its own.
  const retryBuckets = bucketize(
    result.retryValues.map((value) => (value === max && max > min ? value - 1 : value)),
    BUCKET_MS,
    Math.floor(min / BUCKET_MS) * BUCKET_MS,
  );
  const arrivalBuckets = bucketize(result.arrivalsMs, BUCKET_MS, 0);
  const arrivalMax = maxBucket(arrivalBuckets);
  const sortedRetries = [...result.retryValues].sort((a, b) => a - b);
  return {
    retryMs,
    clients: result.clients,
    dropped: result.dropped,
    reconnected: result.reconnected,
    arrivalsAtServer: result.arrivalsMs.length,
    retryValues: {
      min: sortedRetries[0],
      max: sortedRetries.at(-1),
      distinct: new Set(result.retryValues).size,
      p50: percentile(result.retryValues, 50),
      histogram: retryBuckets.map((bucket) => ({ fromMs: bucket.from, count: bucket.count })),
    },
    arrivals: {
      maxPer250ms: arrivalMax.max,
      maxShare: Math.round(arrivalMax.share * 1000) / 1000,
      firstMs: Math.min(...result.arrivalsMs),
      lastMs: Math.max(...result.arrivalsMs),
      histogram: arrivalBuckets.map((bucket) => ({ fromMs: bucket.from, count: bucket.count })),
    },
    reconnectDelayMs: {
      p50: percentile(result.reconnectMs, 50),
      p99: percentile(result.reconnectMs, 99),
      max: Math.max(...result.reconnectMs),
    },
    retryHistogramText: asciiHistogram(retryBuckets, { barWidth: 40 }),
    arrivalHistogramText: asciiHistogram(arrivalBuckets, { barWidth: 40 }),
  };
}

/**
 * Runs both phases: fixed retryMs, then the range.
 * @param {{ quick?: boolean, clients?: number, fixed?: boolean, log?: (line: string) => void }} [options]
 *   `fixed: false` skips the fixed phase (the contrast), for a shorter run.
 * @returns {Promise<{ name: string, passed: boolean, criteria: { what: string, value: any, limit: any, ok: boolean }[], figures: Record<string, any>, raw: { fixed?: PhaseResult, range: PhaseResult } }>}
 */
export async function run({ quick = false, clients: clientCount, fixed: withFixed = true, log = () => {} } = {}) {
  clientCount ??= quick ? 200 : 1000;
  const name = `spread${quick ? ' (quick)' : ''}`;
  let fixed;
  if (withFixed) {
    fixed = await phase(FIXED_MS, clientCount);
    log(`${name}: fixed ${FIXED_MS} ms done, ${fixed.reconnected} of ${fixed.clients} back`);
  }
  const range = await phase(RANGE, clientCount);
  log(`${name}: range ${RANGE.min}..${RANGE.max} ms done, ${range.reconnected} of ${range.clients} back`);
  const rangeFigures = describe(range);
  const fixedFigures = fixed ? describe(fixed) : undefined;

  const inRange = range.retryValues.filter((value) => value >= RANGE.min && value <= RANGE.max).length;
  const allValues = [...range.retryValues, ...range.retryValuesAfter];
  const allInRange = allValues.every((value) => value >= RANGE.min && value <= RANGE.max);
  const middle = (RANGE.min + RANGE.max) / 2;
  const lowerHalf = range.retryValues.filter((value) => value < middle).length / range.retryValues.length;
  const minDistinct = Math.min(100, Math.floor(clientCount / 4));
  const criteria = [
    {
      what: `range: every retry value received in [${RANGE.min}, ${RANGE.max}] (all connections)`,
      value: `${inRange} of ${range.retryValues.length} first, ${allInRange ? 'all' : 'not all'} later`,
      limit: 'all',
      ok: inRange === range.retryValues.length && allInRange,
    },
    {
      what: 'range: distinct retry values among the first connections',
      value: rangeFigures.retryValues.distinct,
      limit: `>= ${minDistinct}`,
      ok: rangeFigures.retryValues.distinct >= minDistinct,
    },
    {
      what: 'range: share of retry values in the lower half of the range',
      value: Math.round(lowerHalf * 1000) / 1000,
      limit: '0.35 .. 0.65',
      ok: lowerHalf >= 0.35 && lowerHalf <= 0.65,
    },
    {
      what: 'range: largest share of reconnects arriving in one 250 ms bucket',
      value: rangeFigures.arrivals.maxShare,
      limit: `< ${MAX_BUCKET_SHARE}`,
      ok: rangeFigures.arrivals.maxShare < MAX_BUCKET_SHARE,
    },
    { what: 'range: clients back after the drop', value: range.reconnected, limit: clientCount, ok: range.reconnected === clientCount },
    ...(fixed
      ? [
          {
            what: `fixed: every retry value received is ${FIXED_MS}`,
            value: fixed.retryValues.every((value) => value === FIXED_MS),
            limit: true,
            ok: fixed.retryValues.every((value) => value === FIXED_MS),
          },
          {
            what: 'fixed: clients back after the drop',
            value: fixed.reconnected,
            limit: clientCount,
            ok: fixed.reconnected === clientCount,
          },
        ]
      : []),
  ];
  const figures = {
    clients: clientCount,
    bucketMs: BUCKET_MS,
    range: rangeFigures,
    ...(fixedFigures ? { fixed: fixedFigures } : {}),
    // The contrast (not a criterion): with one fixed value, the herd comes back in one bucket.
    contrast: fixedFigures
      ? {
          fixedMaxShare: fixedFigures.arrivals.maxShare,
          rangeMaxShare: rangeFigures.arrivals.maxShare,
          fixedSpanMs: fixedFigures.arrivals.lastMs - fixedFigures.arrivals.firstMs,
          rangeSpanMs: rangeFigures.arrivals.lastMs - rangeFigures.arrivals.firstMs,
        }
      : undefined,
    histogramText:
      (fixedFigures
        ? `fixed retryMs ${FIXED_MS}: reconnects arriving at the server, ms after the drop\n${fixedFigures.arrivalHistogramText}\n\n`
        : '') +
      `retryMs { min: ${RANGE.min}, max: ${RANGE.max} }: reconnects arriving at the server, ms after the drop\n${rangeFigures.arrivalHistogramText}\n\n` +
      `retryMs { min: ${RANGE.min}, max: ${RANGE.max} }: retry values received\n${rangeFigures.retryHistogramText}`,
  };
  return { name, passed: criteria.every((c) => c.ok), criteria, figures, raw: { ...(fixed ? { fixed } : {}), range } };
}

async function waitFor(condition, timeoutMs, what) {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(50);
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { values } = parseArgs({ options: { quick: { type: 'boolean', default: false } } });
  const result = await run({ quick: values.quick, log: (line) => console.error(line) });
  console.error(`${result.name}: ${result.passed ? 'PASSED' : 'FAILED'}`);
  for (const c of result.criteria) console.error(`  ${c.ok ? 'ok  ' : 'FAIL'} ${c.what}: ${c.value} (limit ${c.limit})`);
  console.error(`\n${result.figures.histogramText}`);
  const { raw, ...printed } = result;
  console.log(JSON.stringify(printed, null, 2));
  process.exitCode = result.passed ? 0 : 1;
}
