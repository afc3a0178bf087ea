// One server instance of the Redis peer bench, forked by run.mjs with
// --expose-gc and driven over IPC the way bench/peers/PROTOCOL.md describes
// (a request carries an id; the answer is `done` or `error`):
//   node --expose-gc bench/redis-peers/server.mjs '<config as JSON>'
// config: { contender, redisUrl, name }. Sends { type: 'ready', port, path, version }.
//
// Requests: clock, connections, memory (gc three times first), cpu, stats,
// rate { window, ms }, paced { count, intervalMs }, burst { count, window },
// warm { from, count, window }, exit. Only instance A is asked to publish.
//
// Every event's data is `{ i, t, line }`: the index within its phase, the
// publish time on the clock every process shares (performance.timeOrigin +
// performance.now()), and a line of command output, what a typical event
// carries besides. Both libraries serialise it themselves, as an application
// would let them. The event type (SSE `event:`, socket.io event name) is the phase.
import { CONTENDERS } from './contenders.mjs';

const LINE = 'src/backends/redis.ts(214,7): compiled 42 modules in 1.8s, 0 warnings, cache hit ratio 0.97';
const now = () => performance.timeOrigin + performance.now();
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

const config = JSON.parse(process.argv[2]);
// The orchestrator is gone: nothing would ever stop this process.
process.on('disconnect', () => process.exit(1));

const start = CONTENDERS[config.contender];
if (!start) {
  console.error(`server.mjs: unknown contender ${config.contender}`);
  process.exit(1);
}
const contender = await start(config);

/** Publishes event `i` of `phase` now; the promise is the contender's acceptance (see contenders.mjs). */
const publish = (room, phase, i) => contender.publish(room, phase, { i, t: now(), line: LINE });

/** Nearest-rank summary of `values` (ms). */
function stats(values) {
  if (values.length === 0) return { count: 0, p50: null, p99: null, max: null };
  const sorted = Float64Array.from(values).sort();
  const rank = (q) => sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))];
  return { count: sorted.length, p50: rank(0.5), p99: rank(0.99), max: sorted[sorted.length - 1] };
}

/** `count` events of `phase` (from index `from`) with `window` publishes in flight; each worker awaits its publish. */
async function windowed(room, phase, from, count, window) {
  let next = from;
  const end = from + count;
  let failed = 0;
  let firstError;
  const worker = async () => {
    while (next < end) {
      const i = next++;
      try {
        await publish(room, phase, i);
      } catch (error) {
        failed++;
        firstError ??= String(error?.message ?? error);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(window, count) }, worker));
  return { failed, firstError };
}

const commands = {
  clock: () => ({ now: now() }),
  connections: () => ({ connections: contender.connections() }),
  memory: () => {
    for (let i = 0; i < 3; i++) globalThis.gc();
    const m = process.memoryUsage();
    return { rss: m.rss, heapUsed: m.heapUsed, external: m.external, arrayBuffers: m.arrayBuffers };
  },
  cpu: () => process.cpuUsage(),
  stats: () => ({ stats: contender.stats() }),

  /** Publishes to a room nobody follows for `ms`, `window` in flight: the rate of the publish path alone. */
  async rate({ window, ms }) {
    let done = 0;
    let failed = 0;
    const started = performance.now();
    const deadline = started + ms;
    const worker = async () => {
      while (performance.now() < deadline) {
        try {
          await publish('rate', 'rate', done);
        } catch {
          failed++;
        }
        done++;
      }
    };
    await Promise.all(Array.from({ length: window }, worker));
    const seconds = (performance.now() - started) / 1000;
    return { events: done, failed, seconds, eventsPerSecond: done / seconds };
  },

  /** One event every `intervalMs` on a fixed schedule (a late publish does not delay the next). */
  async paced({ count, intervalMs }) {
    const acks = [];
    const pending = [];
    let failed = 0;
    let firstError;
    const begin = performance.now() + 10;
    for (let i = 0; i < count; i++) {
      const wait = begin + i * intervalMs - performance.now();
      if (wait >= 1) await sleep(Math.floor(wait));
      const t = performance.now();
      pending.push(
        publish('all', 'paced', i).then(
          () => acks.push(performance.now() - t),
          (error) => {
            failed++;
            firstError ??= String(error?.message ?? error);
          },
        ),
      );
    }
    await Promise.all(pending);
    return { failed, firstError, ackMs: stats(acks) };
  },

  async burst({ count, window }) {
    const startedAt = now();
    const cpu = process.cpuUsage();
    const outcome = await windowed('all', 'burst', 0, count, window);
    return { ...outcome, startedAt, publishedAt: now(), publishCpu: process.cpuUsage(cpu) };
  },

  warm: ({ from, count, window }) => windowed('all', 'warm', from, count, window),

  async exit() {
    await Promise.race([contender.close().catch(() => {}), sleep(2500)]);
    process.exit(0);
  },
};

process.on('message', async (message) => {
  const { id, cmd } = message ?? {};
  try {
    const run = Object.hasOwn(commands, cmd) ? commands[cmd] : undefined;
    if (!run) throw new Error(`unknown cmd ${JSON.stringify(cmd)}`);
    const result = await run(message);
    process.send({ type: 'done', id, ...result });
  } catch (error) {
    process.send({ type: 'error', id, message: error instanceof Error ? error.message : String(error) });
  }
});
process.send({ type: 'ready', port: contender.port, path: contender.path, version: contender.version });
