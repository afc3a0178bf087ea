// Micro-benchmarks of the hot path, in-process, no sockets: the encoder, one
// publish fanned out to push-mode subscribers, publishing when the hub holds
// many streams, and a Last-Event-ID resume read from history. What they show
// is where CPU goes per event before any byte reaches a socket; the HTTP-level
// figures are in the other benches.
//   npm run build && node bench/micro.mjs
// Writes bench/results/micro.json. Takes about 25 s.
import fs from 'node:fs';
import os from 'node:os';
import { Bench } from 'tinybench';
import { EventManager, formatEvent } from '../dist/index.js';
import { commandOutput } from './fixtures/command-output.mjs';

/**
 * Per-call samples timed with process.hrtime, with the timer's own call cost
 * subtracted: sub-microsecond tasks (the encoder) would otherwise be measured
 * mostly as timer overhead, and batching calls would hide the tail (p99) that
 * this file reports. Budgets keep the whole run well under a minute.
 */
const BENCH_OPTIONS = { time: 1000, warmupTime: 200, timestampProvider: 'hrtimeNow', subtractTimerOverhead: true };
/** The encoder tasks run millions of samples a second; half the budget is plenty. */
const ENCODER_OPTIONS = { ...BENCH_OPTIONS, time: 500, warmupTime: 100 };

// ---------------------------------------------------------------- payloads

/**
 * A command-output record whose JSON is exactly 100 bytes: the size of a
 * typical agent event, and the same object is used as the publish payload so
 * encoder and fan-out figures describe the same event.
 */
function payloadOf100Bytes() {
  const base = { task_id: 'task-7f3a9c', sandbox_id: 'sbx-2b81e0', stream: 'stdout', line: '', seq: 42 };
  const room = 100 - Buffer.byteLength(JSON.stringify(base));
  const line = 'added 312 packages, and audited 1187 packages in 9s'.padEnd(room, '.').slice(0, room);
  const object = { ...base, line };
  const json = JSON.stringify(object);
  if (Buffer.byteLength(json) !== 100) throw new Error(`payload is ${Buffer.byteLength(json)} bytes, not 100`);
  return { object, json };
}

/**
 * 4 KiB of command output with both LF and CRLF line ends (output relayed from
 * a Windows sandbox or a pty mixes them), so the encoder's slow path, one
 * `data:` line per input line, is what gets measured.
 */
function multiLine4KiB() {
  let text = '';
  const lines = commandOutput(200, 7);
  for (let i = 0; Buffer.byteLength(text) < 4096; i++) text += lines[i % lines.length].text + (i % 2 ? '\r\n' : '\n');
  // Trim whole characters (the fixture has non-ASCII), then pad to exactly 4096 bytes.
  while (Buffer.byteLength(text) > 4096 || text.endsWith('\r')) text = text.slice(0, -1);
  text += '.'.repeat(4096 - Buffer.byteLength(text));
  return text;
}

const payload = payloadOf100Bytes();
const multiLine = multiLine4KiB();
const lineCount = multiLine.split(/\r\n|\r|\n/).length;

// ---------------------------------------------------------------- helpers

/** Every hub made here, so that each is closed at the end even if a task throws. */
const hubs = [];

/** A hub with the defaults (memory backend, ids, history of 100 per stream). */
function newHub() {
  const hub = new EventManager();
  hubs.push(hub);
  return hub;
}

/**
 * `count` push-mode subscribers on each of `streams`, with no replay (a
 * history read is measured on its own, in the history tasks) and a no-op
 * `onEvent`: the adapters' delivery callback minus the socket write, so what
 * remains is the hub's own cost per delivery.
 */
async function addSubscribers(hub, streams, count) {
  const subscriptions = [];
  for (const stream of streams) {
    for (let i = 0; i < count; i++) subscriptions.push(hub.subscribe({ streams: [stream], replay: 0, onEvent: () => {} }));
  }
  await Promise.all(subscriptions.map((subscription) => subscription.ready));
}

/**
 * Runs one task in a Bench of its own and returns its row. One bench per
 * task because tinybench warms every task of a bench up before it measures
 * any, and each hub here should live only while its own task runs: a live
 * 10,000-subscriber hub makes every other task's garbage collections dearer.
 * `check` runs after the measured phase and throws if the task did not do
 * what its name says.
 */
async function measure(group, name, fn, { options = BENCH_OPTIONS, check } = {}) {
  const bench = new Bench({ name, ...options });
  timerOverheadNs ??= bench.timerOverhead === undefined ? null : bench.timerOverhead * 1e6;
  let before;
  bench.add(name, fn, {
    // Declared, not detected: detection calls the function once more, outside the count.
    async: fn.constructor.name === 'AsyncFunction',
    beforeAll: check && ((mode) => void (mode === 'run' && (before = check.snapshot()))),
    afterAll: check && ((mode) => void (mode === 'run' && check.verify(before))),
  });
  bench.addEventListener('warning', (event) => console.warn(`warning: ${name}: timer saturation (${event.reason})`));
  await bench.run();
  const result = bench.tasks[0].result;
  if (result.state !== 'completed') throw new Error(`${name}: ${result.state} ${result.error?.stack ?? ''}`);
  const { latency } = result;
  // ops/s is derived from the mean (1e9 / mean ns) rather than tinybench's mean
  // of per-sample throughputs, which fast outliers inflate; the columns agree.
  const row = {
    group,
    name,
    opsPerSec: Math.round(1e3 / latency.mean),
    meanNs: latency.mean * 1e6,
    p50Ns: latency.p50 * 1e6,
    p99Ns: latency.p99 * 1e6,
    rmePercent: latency.rme,
    samples: latency.samplesCount,
  };
  rows.push(row);
  return row;
}

/**
 * Checks that every publish reached exactly `expected` subscribers: a
 * benchmark that silently delivered nothing would look very fast.
 */
function deliveries(hub, expected) {
  return {
    snapshot: () => hub.stats(),
    verify(before) {
      const after = hub.stats();
      const perPublish = (after.delivered - before.delivered) / (after.published - before.published);
      if (perPublish !== expected) throw new Error(`${perPublish} deliveries per publish, expected ${expected}`);
    },
  };
}

/** Subscribers on the one stream of the fan-out tasks. */
const FAN_OUT = [0, 1, 100, 1_000, 10_000];
const rows = [];
const started = performance.now();
let timerOverheadNs;

try {
  // ------------------------------------------------------------ 1. encoder
  {
    // `sink` keeps each result observable so the call cannot be optimised away.
    let sink = 0;
    const encoder = { options: ENCODER_OPTIONS };
    await measure(
      'encoder',
      'formatEvent: 100 B JSON string',
      () => {
        sink += formatEvent({ event: 'tick', id: 'abc.123', data: payload.json }).length;
      },
      encoder,
    );
    await measure(
      'encoder',
      'formatEvent: object (JSON-serialised)',
      () => {
        sink += formatEvent({ event: 'tick', id: 'abc.123', data: payload.object }).length;
      },
      encoder,
    );
    await measure(
      'encoder',
      `formatEvent: 4 KiB, ${lineCount} LF/CRLF lines`,
      () => {
        sink += formatEvent({ event: 'command_output', id: 'abc.123', data: multiLine }).length;
      },
      encoder,
    );
    await measure(
      'encoder',
      'formatEvent: comment',
      () => {
        sink += formatEvent({ comment: 'keep-alive' }).length;
      },
      encoder,
    );
    if (sink === 0) throw new Error('encoder produced nothing');
  }

  // ------------------------------------------------------------ 2. fan-out
  for (const count of FAN_OUT) {
    const hub = newHub();
    await addSubscribers(hub, ['s'], count);
    await measure(
      'fan-out',
      `publish: ${count.toLocaleString('en')} subscriber${count === 1 ? '' : 's'}`,
      async () => {
        await hub.publish('s', 'tick', payload.object);
      },
      { check: deliveries(hub, count) },
    );
    await hub.close();
  }

  // ------------------------------------------------------------ 3. many streams
  // 10,000 subscribers either way; what differs is how they are spread. By
  // default every stream first gets 10 events of history, so the backend
  // really holds 1,000 (or 10) streams, as it would once they have been used.
  // The control is one stream with 10 subscribers: if the 1,000-stream case
  // matched it, the number of streams would cost nothing per publish. Two
  // variants of the 1,000-stream case tell the hub's subscriber index from
  // the memory backend's history: one where only the published-to stream has
  // history, and one that publishes to the 1,000 streams in turn instead of
  // to the same stream every time.
  {
    const cases = [
      { name: 'streams: 1 × 10 subs (control)', streams: 1, perStream: 10 },
      { name: 'streams: 1,000 × 10 subs, publish to one', streams: 1_000, perStream: 10 },
      { name: 'streams: 1,000 × 10 subs, no other history', streams: 1_000, perStream: 10, historyOnTargetOnly: true },
      { name: 'streams: 1,000 × 10 subs, publish in turn', streams: 1_000, perStream: 10, rotate: true },
      { name: 'streams: 10 × 1,000 subs, publish to one', streams: 10, perStream: 1_000 },
    ];
    for (const c of cases) {
      const hub = newHub();
      const names = Array.from({ length: c.streams }, (_, i) => `s${i}`);
      await addSubscribers(hub, names, c.perStream);
      for (const stream of c.historyOnTargetOnly ? ['s0'] : names) {
        for (let i = 0; i < 10; i++) await hub.publish(stream, 'tick', payload.object);
      }
      const retained = hub.stats().retainedStreams;
      if (retained !== (c.historyOnTargetOnly ? 1 : c.streams)) throw new Error(`${c.name}: history holds ${retained} streams`);
      let next = 0;
      const fn = c.rotate
        ? async () => {
            await hub.publish(names[next], 'tick', payload.object);
            next = (next + 1) % names.length;
          }
        : async () => {
            await hub.publish('s0', 'tick', payload.object);
          };
      await measure('many streams', c.name, fn, { check: deliveries(hub, c.perStream) });
      await hub.close();
    }
  }

  // ------------------------------------------------------------ 4. history
  // 101 events published, 100 retained (the default historySize): resuming
  // from the first, which history has already dropped, returns exactly the
  // 100 retained ones without a resync. The second task resumes from the
  // newest id, so its cost is subscribe + ready + close with nothing to read;
  // the difference is the read itself.
  {
    const hub = newHub();
    const published = [];
    for (let i = 0; i < 101; i++) published.push(await hub.publish('s', 'tick', payload.object));
    if (hub.stats().retainedEvents !== 100) throw new Error(`history holds ${hub.stats().retainedEvents} events, not 100`);
    /** Checks how many events each resume read (the hub counts history it hands out as delivered). */
    const resumes = (expected) => {
      let runs = 0;
      return {
        count: () => runs++,
        snapshot: () => ((runs = 0), hub.stats()),
        verify(before) {
          const after = hub.stats();
          if (after.resyncs !== before.resyncs) throw new Error('resume answered with resync');
          const perResume = (after.delivered - before.delivered) / runs;
          if (perResume !== expected) throw new Error(`${perResume} events per resume, expected ${expected}`);
        },
      };
    };
    for (const [name, lastEventId, expected] of [
      ['resume: 100 events retained', published[0].id, 100],
      ['resume: at the newest id (0 events)', published[100].id, 0],
    ]) {
      const check = resumes(expected);
      await measure(
        'history',
        name,
        async () => {
          // What a reconnecting client costs: subscribe, wait for history, leave.
          const subscription = hub.subscribe({ streams: ['s'], lastEventId });
          await subscription.ready;
          subscription.close();
          check.count();
        },
        { check },
      );
    }
    await hub.close();
  }
} finally {
  // Closing twice is a no-op; this catches the hubs of a task that threw.
  await Promise.all(hubs.map((hub) => hub.close()));
}

const elapsedS = (performance.now() - started) / 1000;

// ---------------------------------------------------------------- derived figures

const byName = new Map(rows.map((row) => [row.name, row]));
const meanOf = (name) => byName.get(name).meanNs;
const baseline = meanOf('publish: 0 subscribers');
/**
 * ns per delivery two ways: the whole publish divided by the subscribers
 * (what a publisher pays per recipient), and the marginal cost over the
 * 0-subscriber publish (what one more subscriber adds), which removes the
 * fixed cost of storing, encoding and id-stamping the event.
 */
const fanOut = FAN_OUT.map((subscribers) => {
  const ns = meanOf(`publish: ${subscribers.toLocaleString('en')} subscriber${subscribers === 1 ? '' : 's'}`);
  return {
    subscribers,
    nsPerPublish: ns,
    nsPerDelivery: subscribers ? ns / subscribers : null,
    marginalNsPerDelivery: subscribers ? (ns - baseline) / subscribers : null,
  };
});
/** Each many-streams case against the single-stream publish with as many subscribers on the stream. */
const manyStreams = [
  ['1,000 streams with history, 10 subs on the stream', 'streams: 1,000 × 10 subs, publish to one', 'streams: 1 × 10 subs (control)'],
  ['1,000 streams, only this one with history', 'streams: 1,000 × 10 subs, no other history', 'streams: 1 × 10 subs (control)'],
  ['1,000 streams with history, published in turn', 'streams: 1,000 × 10 subs, publish in turn', 'streams: 1 × 10 subs (control)'],
  ['10 streams with history, 1,000 subs on the stream', 'streams: 10 × 1,000 subs, publish to one', 'publish: 1,000 subscribers'],
].map(([comparison, many, one]) => ({
  comparison,
  versus: one,
  manyNs: meanOf(many),
  oneNs: meanOf(one),
  ratio: meanOf(many) / meanOf(one),
}));

// ---------------------------------------------------------------- output

const machine = {
  cpu: os.cpus()[0]?.model ?? 'unknown',
  cores: os.availableParallelism(),
  node: process.version,
  os: `${os.type()} ${os.release()} ${os.arch()}`,
  memoryGiB: Number((os.totalmem() / 2 ** 30).toFixed(1)),
};
/** Its package.json is not an export, so it is read from next to the resolved entry point. */
let tinybenchVersion = null;
try {
  const entry = new URL(import.meta.resolve('tinybench'));
  tinybenchVersion = JSON.parse(fs.readFileSync(new URL('../package.json', entry), 'utf8')).version;
} catch {
  // A nicety for the results file, not worth failing the run over.
}

const fmt = (n, digits = 0) =>
  n === null ? '—' : n.toLocaleString('en', { maximumFractionDigits: digits, minimumFractionDigits: digits });
console.log(`ssecast micro-benchmarks: ${machine.cpu}, ${machine.cores} cores, Node ${machine.node}, ${machine.os}`);
console.log(
  `tinybench ${tinybenchVersion ?? '?'}, hrtime, timer overhead ~${fmt(timerOverheadNs, 1)} ns subtracted per sample; ${elapsedS.toFixed(1)} s`,
);
console.log();
console.log('name'.padEnd(44), 'ops/s'.padStart(12), 'mean ns'.padStart(12), 'p99 ns'.padStart(12), 'samples'.padStart(10));
let group;
for (const row of rows) {
  if (row.group !== group) console.log(`-- ${(group = row.group)}`);
  console.log(
    row.name.padEnd(44),
    fmt(row.opsPerSec).padStart(12),
    fmt(row.meanNs).padStart(12),
    fmt(row.p99Ns).padStart(12),
    fmt(row.samples).padStart(10),
  );
}
console.log();
console.log('fan-out'.padEnd(14), 'ns/publish'.padStart(12), 'ns/delivery'.padStart(12), 'marginal ns/delivery'.padStart(21));
for (const row of fanOut) {
  console.log(
    `${fmt(row.subscribers)} sub${row.subscribers === 1 ? '' : 's'}`.padEnd(14),
    fmt(row.nsPerPublish).padStart(12),
    fmt(row.nsPerDelivery, 1).padStart(12),
    fmt(row.marginalNsPerDelivery, 1).padStart(21),
  );
}
console.log();
console.log('many streams vs one stream, same subscribers on the published-to stream:');
for (const c of manyStreams)
  console.log(
    `  ${c.comparison.padEnd(52)} ${fmt(c.manyNs).padStart(7)} vs ${fmt(c.oneNs).padStart(7)} ns per publish (×${c.ratio.toFixed(2)})`,
  );

fs.mkdirSync(new URL('./results/', import.meta.url), { recursive: true });
fs.writeFileSync(
  new URL('./results/micro.json', import.meta.url),
  `${JSON.stringify(
    {
      date: new Date().toISOString(),
      machine,
      tinybench: tinybenchVersion,
      options: { ...BENCH_OPTIONS, encoderTime: ENCODER_OPTIONS.time, timerOverheadNs },
      payloadBytes: 100,
      multiLineBytes: Buffer.byteLength(multiLine),
      multiLineLines: lineCount,
      elapsedS: Number(elapsedS.toFixed(1)),
      results: rows,
      fanOut,
      manyStreams,
    },
    null,
    2,
  )}\n`,
);
