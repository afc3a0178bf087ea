// The load client of the peer benchmark (bench/peers/PROTOCOL.md): N raw-socket
// SSE clients in one process, driven by the orchestrator (run.mjs) over IPC.
//
// It must never be what limits a contender, so the common path is cheap: every
// connection counts `data:` occurrences in latin1 text with String#indexOf,
// carries a match that straddles two reads as a small integer, and keeps its
// counters in typed arrays; nothing is allocated per event. A sample of
// connections (chosen at `reset`) also decodes HTTP chunking and parses SSE
// with eventsource-parser, to time each event from publish to arrival.
//
//   forked by bench/peers/run.mjs; not meant to be run by hand.
import net from 'node:net';
import { createParser } from 'eventsource-parser';

/** What one event looks like on the wire: every contender writes one `data:` line per event. */
const MARK = 'data:';
/** Connects in flight (sent, response head not yet read) while opening: under the listen backlog. */
const WAVE = 200;
/** A connect that has no response head by then has failed (a dropped SYN is retried for minutes). */
const HEAD_TIMEOUT_MS = 15_000;
/** How often `wait` looks at the counters; arrival times are taken in the data handler, so this only sets how soon it answers. */
const POLL_MS = 5;

const OPENING = 0;
const OPEN = 1;
const FAILED = 2;
const CLOSED = 3;

/** Wall-clock milliseconds with sub-millisecond resolution, the clock the server stamps `t` with. */
const wallClock = () => performance.timeOrigin + performance.now();
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// ---------------------------------------------------------------------------
// Per-connection state, indexed by connection id. Ids only grow (one client
// process serves one contender, some 30,000 connections), so a socket closed by
// `close` can never touch the state of a later connection. Typed arrays so the
// hot path touches no objects; they grow by doubling.

let capacity = 0;
let size = 0;
/** @type {Array<net.Socket | undefined>} */
const sockets = [];
/** Events counted since the last `reset`. */
let counts = new Uint32Array(0);
/** How many characters of `data:` the previous read ended with (0-4). */
let partial = new Uint8Array(0);
/** OPENING, OPEN, FAILED or CLOSED. */
let states = new Uint8Array(0);
/** performance.now() of the read that last raised the count. */
let lastAt = new Float64Array(0);
/** 1 for connections opened with `stalled`: they never read after the head, and no `reset` watches them. */
let stalledFlags = new Uint8Array(0);
/** Sampled connections (set by `reset`): id → parser. Sparse; undefined for counted-only ones. */
/** @type {Array<Sampler | undefined>} */
let samplers = [];

/** @param {number} wanted */
function ensureCapacity(wanted) {
  if (wanted <= capacity) return;
  let next = Math.max(1024, capacity);
  while (next < wanted) next *= 2;
  const grow = (Type, old) => {
    const array = new Type(next);
    array.set(old);
    return array;
  };
  counts = grow(Uint32Array, counts);
  partial = grow(Uint8Array, partial);
  states = grow(Uint8Array, states);
  lastAt = grow(Float64Array, lastAt);
  stalledFlags = grow(Uint8Array, stalledFlags);
  capacity = next;
}

// ---------------------------------------------------------------------------
// Latency samples, shared by every sampled connection: a growable Float64Array
// so thousands of samples cost no boxed numbers.

let latencies = new Float64Array(16_384);
let latencyCount = 0;
/** Sampled events whose data was not the runner's JSON, and chunk framing the decoder could not follow. */
let parseErrors = 0;

/** @param {number} ms */
function recordLatency(ms) {
  if (latencyCount === latencies.length) {
    const bigger = new Float64Array(latencies.length * 2);
    bigger.set(latencies);
    latencies = bigger;
  }
  latencies[latencyCount++] = ms;
}

/** p50, p99 and max of what was recorded, in ms rounded to µs; nulls when nothing was. */
function latencySummary() {
  if (latencyCount === 0) return { count: 0, p50: null, p99: null, max: null };
  const sorted = latencies.slice(0, latencyCount).sort();
  const at = (q) => sorted[Math.min(latencyCount - 1, Math.ceil(q * latencyCount) - 1)];
  const round = (x) => Math.round(x * 1000) / 1000;
  return { count: latencyCount, p50: round(at(0.5)), p99: round(at(0.99)), max: round(sorted[latencyCount - 1]), errors: parseErrors };
}

// ---------------------------------------------------------------------------
// Counting. `data:` cannot overlap itself and none of `ata:` starts with `d`, so
// a match carried over from the previous read and the matches String#indexOf
// finds in this read never share a character and are never counted twice.

const MARK_CODES = Array.from(MARK, (c) => c.charCodeAt(0));

/**
 * Events in `text` for connection `id`, including one that began in the previous read.
 * @param {number} id
 * @param {string} text
 */
function countEvents(id, text) {
  let found = 0;
  let k = partial[id];
  if (k !== 0) {
    let j = 0;
    while (k < MARK.length && j < text.length && text.charCodeAt(j) === MARK_CODES[k]) k++, j++;
    if (k === MARK.length) found++;
    else if (j === text.length) {
      // A read shorter than the rest of the mark, all of it matching: still partial.
      partial[id] = k;
      return 0;
    }
  }
  let at = text.indexOf(MARK);
  while (at !== -1) {
    found++;
    at = text.indexOf(MARK, at + MARK.length);
  }
  partial[id] = trailingPrefix(text);
  return found;
}

/** How many characters of `data:` end `text` (0-4): the part of a mark the next read may complete. */
function trailingPrefix(text) {
  const last = text.charCodeAt(text.length - 1);
  // Only `d`, `a` and `t` end a proper prefix of the mark; most reads end in `\n`.
  if (last !== 0x64 && last !== 0x61 && last !== 0x74) return 0;
  if (text.endsWith('data')) return 4;
  if (text.endsWith('dat')) return 3;
  if (text.endsWith('da')) return 2;
  if (text.endsWith('d')) return 1;
  return 0;
}

// ---------------------------------------------------------------------------
// Sampled connections: HTTP chunked decoding, then eventsource-parser.

/**
 * Decodes `Transfer-Encoding: chunked` from latin1 text and feeds the payload
 * to an SSE parser that records latency. Starts at a chunk boundary, which is
 * where a stream is at `reset` (the previous phase has been read in full).
 */
class Sampler {
  /** @param {boolean} chunked */
  constructor(chunked) {
    this.chunked = chunked;
    /** Payload bytes left in the current chunk; -1 while reading a size line, -2 while skipping the CRLF after a chunk. */
    this.left = -1;
    this.sizeLine = '';
    this.crlfLeft = 0;
    this.broken = false;
    /** Arrival of the read being parsed: every event completed by this read arrived then. */
    this.arrival = 0;
    /** Events the parser saw: checked against the `data:` count of the same connection. */
    this.events = 0;
    this.parser = createParser({
      onEvent: (event) => {
        this.events++;
        // ssecast's position marker (a fresh connection's id) carries no time to measure.
        if (event.event === 'ssecast-position') return;
        const t = payloadTime(event.data);
        if (t === undefined) parseErrors++;
        else recordLatency(this.arrival - t);
      },
    });
  }

  /** @param {string} text @param {number} arrival */
  feed(text, arrival) {
    this.arrival = arrival;
    if (!this.chunked) return this.parser.feed(text);
    if (this.broken) return;
    let i = 0;
    while (i < text.length) {
      if (this.left > 0) {
        const end = Math.min(text.length, i + this.left);
        this.parser.feed(text.slice(i, end));
        this.left -= end - i;
        i = end;
        if (this.left === 0) (this.left = -2), (this.crlfLeft = 2);
      } else if (this.left === -2) {
        const skip = Math.min(this.crlfLeft, text.length - i);
        this.crlfLeft -= skip;
        i += skip;
        if (this.crlfLeft === 0) this.left = -1;
      } else {
        const lf = text.indexOf('\n', i);
        if (lf === -1) {
          this.sizeLine += text.slice(i);
          return;
        }
        const line = (this.sizeLine + text.slice(i, lf)).trim();
        this.sizeLine = '';
        i = lf + 1;
        const bytes = parseInt(line, 16); // chunk extensions after `;` are ignored by parseInt
        if (!Number.isFinite(bytes)) {
          // Lost the framing (e.g. sampled mid-chunk after an incomplete phase): stop parsing, say so.
          this.broken = true;
          parseErrors++;
          return;
        }
        if (bytes === 0) return; // last chunk: the response ended
        this.left = bytes;
      }
    }
  }
}

/** The runner's publish time `t` from an event's data, or undefined. */
function payloadTime(data) {
  try {
    const t = JSON.parse(data).t;
    return typeof t === 'number' ? t : undefined;
  } catch {
    return undefined;
  }
}

// ---------------------------------------------------------------------------
// Connecting.

/** Whether each connection's response is chunked; sampled connections need it to decode. */
let chunkedFlags = new Uint8Array(0);

/**
 * Opens one SSE connection as connection `id`. Resolves with undefined once the
 * response head has been read (status 2xx), or with the reason it failed.
 * A `stalled` connection stops reading right after its head (socket.pause(), no
 * data handler): a client that never reads, whose bytes pile up in the kernel.
 * @param {number} id
 * @param {number} port
 * @param {string} requestPath
 * @param {boolean} [stalled]
 * @returns {Promise<string | undefined>}
 */
function connect(id, port, requestPath, stalled = false) {
  return new Promise((resolve) => {
    const socket = net.connect({ port, host: '127.0.0.1' });
    sockets[id] = socket;
    states[id] = OPENING;
    socket.setEncoding('latin1');
    let head = '';
    const fail = (reason) => {
      if (states[id] !== OPENING) return;
      states[id] = FAILED;
      clearTimeout(timer);
      socket.resetAndDestroy();
      resolve(reason);
    };
    const timer = setTimeout(() => fail('no response head'), HEAD_TIMEOUT_MS);
    socket.on('error', (error) => fail(error.code ?? error.message));
    socket.on('close', () => {
      if (states[id] === OPENING) fail('closed before the head');
      else if (states[id] === OPEN) states[id] = CLOSED;
    });
    /** Until the head is complete: collect it, then hand the rest of the read to the counter. */
    const onHead = (text) => {
      head += text;
      const end = head.indexOf('\r\n\r\n');
      if (end === -1) return head.length > 16_384 ? fail('response head too long') : undefined;
      const status = Number(head.slice(9, 12));
      if (!(status >= 200 && status < 300)) return fail(`status ${status}`);
      chunkedFlags[id] = /\r\ntransfer-encoding:[^\r]*chunked/i.test(head.slice(0, end)) ? 1 : 0;
      clearTimeout(timer);
      states[id] = OPEN;
      socket.removeListener('data', onHead);
      if (stalled) {
        stalledFlags[id] = 1;
        socket.pause();
        head = '';
        return resolve(undefined);
      }
      const onData = makeOnData(id);
      socket.on('data', onData);
      const rest = head.slice(end + 4);
      head = '';
      if (rest.length > 0) onData(rest);
      resolve(undefined);
    };
    socket.on('data', onHead);
    socket.write(
      `GET ${requestPath} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\n\r\n`,
      'latin1',
    );
  });
}

/** The data handler of an open connection: count, and parse if sampled. One closure per connection, none per event. */
function makeOnData(id) {
  return (text) => {
    const found = countEvents(id, text);
    if (found !== 0) {
      counts[id] += found;
      lastAt[id] = performance.now();
    }
    const sampler = samplers[id];
    if (sampler !== undefined) sampler.feed(text, wallClock());
  };
}

/**
 * Adds `count` connections, connection i on stream `s<i % streams>`, at most WAVE connecting at once.
 * `stalled` (reliability benches): connections that never read after their head; see connect().
 */
async function open({ port, path, count, streams = 1, stalled = false }) {
  const first = size;
  size += count;
  ensureCapacity(size);
  if (chunkedFlags.length < capacity) {
    const bigger = new Uint8Array(capacity);
    bigger.set(chunkedFlags);
    chunkedFlags = bigger;
  }
  /** @type {Record<string, number>} */
  const failures = {};
  let failed = 0;
  let next = 0;
  const worker = async () => {
    while (next < count) {
      const i = next++;
      const reason = await connect(first + i, port, path.replaceAll('{stream}', `s${i % streams}`), stalled);
      if (reason !== undefined) {
        failed++;
        failures[reason] = (failures[reason] ?? 0) + 1;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(WAVE, count) }, worker));
  return { opened: count - failed, failed, failures };
}

// ---------------------------------------------------------------------------
// Measuring.

let resetAt = performance.now();
let resetCpu = process.cpuUsage();
/** Connections open at the last `reset`: the ones `wait` waits for. */
let watched = new Uint32Array(0);

/** Zeroes the counters; `sample` open connections, spread evenly, get a parser. */
function reset({ sample = 0 }) {
  counts.fill(0);
  lastAt.fill(0);
  latencyCount = 0;
  parseErrors = 0;
  samplers = [];
  const open = [];
  for (let id = 0; id < size; id++) if (states[id] === OPEN && stalledFlags[id] === 0) open.push(id);
  watched = Uint32Array.from(open);
  const take = Math.min(sample, open.length);
  for (let k = 0; k < take; k++) {
    const id = open[Math.floor((k * open.length) / take)];
    samplers[id] = new Sampler(chunkedFlags[id] === 1);
  }
  resetCpu = process.cpuUsage();
  resetAt = performance.now();
  return {};
}

/**
 * Resolves when every connection watched since `reset` has `expected` events, when
 * one of them has closed and all the others are done, at `timeoutMs`, or (if
 * `quietMs` is given, an extension of the protocol) when nothing has arrived for that long.
 */
async function wait({ expected, timeoutMs = 60_000, quietMs }) {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    let done = 0;
    let closed = 0;
    let latest = resetAt;
    for (const id of watched) {
      if (counts[id] >= expected) done++;
      else if (states[id] !== OPEN) closed++;
      if (lastAt[id] > latest) latest = lastAt[id];
    }
    const now = performance.now();
    const finished = done + closed === watched.length;
    const quiet = quietMs !== undefined && now - latest > quietMs;
    if (finished || now >= deadline || quiet) return waitResult(expected, done, closed, latest, quiet && !finished);
    await sleep(POLL_MS);
  }
}

/** The `wait` answer, plus this process's CPU since `reset` so the runner can tell whether the client kept up. */
function waitResult(_expected, done, closed, latest, quiet) {
  let minCount = watched.length > 0 ? Infinity : 0;
  let maxCount = 0;
  let delivered = 0;
  for (const id of watched) {
    const n = counts[id];
    delivered += n;
    if (n < minCount) minCount = n;
    if (n > maxCount) maxCount = n;
  }
  const cpu = process.cpuUsage(resetCpu);
  const complete = watched.length > 0 && done === watched.length;
  // The sampled connections both count and parse: if the two disagree, counting
  // by `data:` is wrong for this contender (e.g. it splits `data:` over two
  // writes, which chunked encoding then interrupts) and so is every figure.
  let sampleCounted = 0;
  let sampleParsed = 0;
  samplers.forEach((sampler, id) => {
    sampleCounted += counts[id];
    sampleParsed += sampler.events;
  });
  return {
    complete,
    // From `reset` to the read that brought the last connection's last event (its `expected`-th when complete).
    elapsedMs: Math.round((latest - resetAt) * 1000) / 1000,
    minCount,
    maxCount,
    delivered,
    connections: watched.length,
    closed,
    ...(quiet ? { stoppedBecause: 'quiet' } : {}),
    latency: latencySummary(),
    sampleCounted,
    sampleParsed,
    clientCpuMs: Math.round((cpu.user + cpu.system) / 1000),
  };
}

/**
 * Reads the stalled connections at last (reliability benches): resumes each,
 * counts the bytes that were waiting for it (in the kernel's buffers, both
 * ends, and the socket's own read buffer) and whether the server had closed
 * it: a connection the server cut off ends once its backlog is read. Resolves
 * when every stalled connection has closed, or at `timeoutMs` (those still
 * open then are `open`). Bytes are counted from the end of the response head.
 */
async function drainStalled({ timeoutMs = 10_000 }) {
  const ids = [];
  for (let id = 0; id < size; id++) if (stalledFlags[id] === 1 && sockets[id]) ids.push(id);
  const bytes = new Float64Array(ids.length);
  const endings = { end: 0, error: 0 };
  let closed = 0;
  await new Promise((resolve) => {
    const timer = setTimeout(resolve, timeoutMs);
    const check = () => closed === ids.length && (clearTimeout(timer), resolve());
    ids.forEach((id, k) => {
      const socket = sockets[id];
      let done = false;
      const gone = (how) => {
        if (done) return;
        done = true;
        endings[how]++;
        closed++;
        states[id] = CLOSED;
        check();
      };
      socket.on('data', (text) => (bytes[k] += text.length)); // latin1: one character per byte
      socket.on('end', () => gone('end'));
      socket.on('error', () => gone('error'));
      socket.on('close', () => gone('end'));
      if (socket.destroyed) gone('end');
      socket.resume();
    });
    check();
  });
  const sorted = Array.from(bytes).sort((a, b) => a - b);
  const total = sorted.reduce((a, b) => a + b, 0);
  return {
    stalled: ids.length,
    closed,
    open: ids.length - closed,
    endings,
    bytes:
      ids.length === 0
        ? null
        : {
            min: sorted[0],
            median: sorted[Math.floor(sorted.length / 2)],
            max: sorted[sorted.length - 1],
            mean: Math.round(total / ids.length),
            total,
          },
  };
}

/** Destroys every socket with a reset: no TIME_WAIT left behind, so repeated phases cannot run out of ports. */
function close() {
  for (let id = 0; id < size; id++) {
    const socket = sockets[id];
    if (socket && !socket.destroyed) socket.resetAndDestroy();
    sockets[id] = undefined;
    if (states[id] === OPEN || states[id] === OPENING) states[id] = CLOSED;
  }
  samplers = [];
  watched = new Uint32Array(0);
  return {};
}

/**
 * Connect, read the response head, reset the connection; `cycles` times with
 * `concurrency` in flight. Uses ids of its own, outside the measured set.
 * `principals` (reliability benches): cycle k replaces `{principal}` in `path`
 * with `p<k % principals>`.
 */
async function churn({ port, path, cycles, concurrency = 100, principals }) {
  const started = performance.now();
  /** @type {Record<string, number>} */
  const failures = {};
  let failed = 0;
  let next = 0;
  const base = path.replaceAll('{stream}', 's0');
  const pathOf = principals > 0 ? (k) => base.replaceAll('{principal}', `p${k % principals}`) : () => base;
  const cycle = (k) =>
    new Promise((resolve) => {
      const socket = net.connect({ port, host: '127.0.0.1' });
      socket.setEncoding('latin1');
      let head = '';
      let settled = false;
      const finish = (reason) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (!socket.destroyed) socket.resetAndDestroy();
        resolve(reason);
      };
      const timer = setTimeout(() => finish('no response head'), HEAD_TIMEOUT_MS);
      socket.on('error', (error) => finish(error.code ?? error.message));
      socket.on('close', () => finish('closed before the head'));
      socket.on('data', (text) => {
        head += text;
        const end = head.indexOf('\r\n\r\n');
        if (end === -1) return;
        const status = Number(head.slice(9, 12));
        finish(status >= 200 && status < 300 ? undefined : `status ${status}`);
      });
      socket.write(`GET ${pathOf(k)} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nAccept: text/event-stream\r\n\r\n`, 'latin1');
    });
  const worker = async () => {
    while (next < cycles) {
      const k = next++;
      const reason = await cycle(k);
      if (reason !== undefined) {
        failed++;
        failures[reason] = (failures[reason] ?? 0) + 1;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, cycles) }, worker));
  return { cycles, failed, failures, elapsedMs: Math.round(performance.now() - started) };
}

// ---------------------------------------------------------------------------
// IPC.

const commands = { open, reset, wait, close, churn, drainStalled, exit: () => ({}) };

process.on('message', async (message) => {
  const { id, cmd } = message ?? {};
  const command = commands[cmd];
  try {
    if (!command) throw new Error(`unknown command ${JSON.stringify(cmd)}`);
    const result = await command(message);
    process.send({ ...result, type: 'done', id });
    if (cmd === 'exit') {
      close();
      process.disconnect();
      process.exit(0);
    }
  } catch (error) {
    process.send({ type: 'error', id, message: String(error?.stack ?? error) });
  }
});
// An orchestrator that dies must not leave thousands of sockets behind.
process.on('disconnect', () => process.exit(0));
process.send({ type: 'ready' });
