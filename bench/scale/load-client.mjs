// A load client of the scale bench: one share of the connections, as raw TCP
// sockets, forked by bench/scale/run.mjs (two or more of these run at once) and
// driven over IPC like bench/peers/load-client.mjs (`{ id, cmd }` → `done` or
// `error`, `ready` first).
//
// What differs from the peer bench's client: each socket is bound to a loopback
// source address given by the runner (127.0.0.2, 127.0.0.3, …), because one
// source address has only ip_local_port_range ports (about 28,000) towards one
// server port; the arrival time of the first event after `reset` is kept for
// every connection, not for a sample, so the runner gets the whole spread of
// one event's delivery; and SSE comments (heartbeats) are counted besides events.
//
// Counting, as in the peer bench: an event is one `data:` in the byte stream
// (every contender writes one `data:` line per event), a heartbeat is one line
// that starts with `:` (ssecast and raw write `:heartbeat`, better-sse `:`),
// both counted across read borders, with no allocation of their own per read.
import net from 'node:net';
import { performance } from 'node:perf_hooks';

const HEAD_TIMEOUT_MS = 30_000;
const POLL_MS = 5;

const OPENING = 0;
const OPEN = 1;
const FAILED = 2;
const CLOSED = 3;

const MARK = 'data:';
const MARK_CODES = Array.from(MARK, (c) => c.charCodeAt(0));
const LF = 0x0a;
const COLON = 0x3a;

const wallClock = () => performance.timeOrigin + performance.now();
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

let size = 0;
/** @type {Array<net.Socket | undefined>} */
let sockets = [];
let states = new Uint8Array(0);
/** Events counted since the last `reset`. */
let counts = new Uint32Array(0);
/** Heartbeats (comment lines) counted since the last `reset`. */
let comments = new Uint32Array(0);
/** How many characters of `data:` the previous read ended with. */
let partial = new Uint8Array(0);
/** 1 when the previous read ended with a line feed: a `:` starting this read starts a line. */
let atLineStart = new Uint8Array(0);
/** Wall-clock time of the read that brought the connection's first event since `reset`; 0 before. */
let firstAt = new Float64Array(0);
/** Why connections that were open have closed since `open`: reason → count. */
const closedBy = {};

function allocate(n) {
  size = n;
  sockets = new Array(n);
  states = new Uint8Array(n);
  counts = new Uint32Array(n);
  comments = new Uint32Array(n);
  partial = new Uint8Array(n);
  atLineStart = new Uint8Array(n);
  firstAt = new Float64Array(n);
}

function trailingPrefix(text) {
  const last = text.charCodeAt(text.length - 1);
  if (last !== 0x64 && last !== 0x61 && last !== 0x74) return 0;
  if (text.endsWith('data')) return 4;
  if (text.endsWith('dat')) return 3;
  if (text.endsWith('da')) return 2;
  if (text.endsWith('d')) return 1;
  return 0;
}

/** `data:` occurrences in `text` for connection `id`, one begun in the previous read included. */
function countEvents(id, text) {
  let found = 0;
  let k = partial[id];
  if (k !== 0) {
    let j = 0;
    while (k < MARK.length && j < text.length && text.charCodeAt(j) === MARK_CODES[k]) k++, j++;
    if (k === MARK.length) found++;
    else if (j === text.length) {
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

/**
 * Lines starting with `:` in `text`. In a chunked body a comment written on its
 * own follows the chunk-size line's CRLF, so it still starts a line; no event
 * line of any contender starts with `:`.
 */
function countComments(id, text) {
  let found = atLineStart[id] === 1 && text.charCodeAt(0) === COLON ? 1 : 0;
  let at = text.indexOf('\n:');
  while (at !== -1) {
    found++;
    at = text.indexOf('\n:', at + 2);
  }
  atLineStart[id] = text.charCodeAt(text.length - 1) === LF ? 1 : 0;
  return found;
}

function onData(id, text) {
  const events = countEvents(id, text);
  if (events !== 0) {
    if (counts[id] === 0) firstAt[id] = wallClock();
    counts[id] += events;
  }
  const found = countComments(id, text);
  if (found !== 0) comments[id] += found;
}

/**
 * Opens connection `id` from `localAddress`. Resolves with undefined once the
 * response head (2xx) is read, or with why it failed.
 */
function connect(id, port, localAddress, requestPath) {
  return new Promise((resolve) => {
    const socket = net.connect({ port, host: '127.0.0.1', localAddress });
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
    let lastError;
    socket.on('error', (error) => {
      lastError = error.code ?? error.message;
      fail(lastError);
    });
    socket.on('close', () => {
      if (states[id] === OPENING) fail('closed before the head');
      else if (states[id] === OPEN) {
        states[id] = CLOSED;
        const why = lastError ?? 'ended by the server';
        closedBy[why] = (closedBy[why] ?? 0) + 1;
      }
    });
    const onHead = (text) => {
      head += text;
      const end = head.indexOf('\r\n\r\n');
      if (end === -1) return head.length > 16_384 ? fail('response head too long') : undefined;
      const status = Number(head.slice(9, 12));
      if (!(status >= 200 && status < 300)) return fail(`status ${status}`);
      clearTimeout(timer);
      states[id] = OPEN;
      socket.removeListener('data', onHead);
      atLineStart[id] = 1;
      socket.on('data', (chunk) => onData(id, chunk));
      const rest = head.slice(end + 4);
      head = '';
      if (rest.length > 0) onData(id, rest);
      resolve(undefined);
    };
    socket.on('data', onHead);
    socket.write(
      `GET ${requestPath} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\n\r\n`,
      'latin1',
    );
  });
}

/**
 * Opens `count` connections, `wave` at a time. Connection k of this process is
 * the run's connection `first + k`; it binds to `addresses[floor((first + k) / perAddress)]`,
 * so that no address carries more than `perAddress` of the run's connections
 * whichever process opens them.
 */
async function open({ port, path, first, count, addresses, perAddress, wave = 200 }) {
  allocate(count);
  const started = performance.now();
  /** @type {Record<string, number>} */
  const failures = {};
  /** @type {Record<string, number>} */
  const byAddress = {};
  let failed = 0;
  let next = 0;
  const worker = async () => {
    while (next < count) {
      const k = next++;
      const address = addresses[Math.floor((first + k) / perAddress)];
      if (address === undefined) throw new Error(`no source address for connection ${first + k}`);
      const reason = await connect(k, port, address, path.replaceAll('{stream}', 's0'));
      if (reason === undefined) byAddress[address] = (byAddress[address] ?? 0) + 1;
      else {
        failed++;
        failures[reason] = (failures[reason] ?? 0) + 1;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(wave, count) }, worker));
  return { opened: count - failed, failed, failures, byAddress, elapsedMs: Math.round(performance.now() - started) };
}

/**
 * One connection, opened and reset at once, before any of the measured ones: a
 * server that answers with an error fails the contender at once, instead of
 * after N failed connections (and N stack traces in its log).
 */
function probe({ port, path, localAddress }) {
  return new Promise((resolve) => {
    const socket = net.connect({ port, host: '127.0.0.1', localAddress });
    let head = '';
    const done = (result) => {
      clearTimeout(timer);
      socket.resetAndDestroy();
      resolve(result);
    };
    const timer = setTimeout(() => done({ ok: false, reason: 'no response head' }), HEAD_TIMEOUT_MS);
    socket.setEncoding('latin1');
    socket.on('error', (error) => done({ ok: false, reason: error.code ?? error.message }));
    socket.on('data', (text) => {
      head += text;
      const end = head.indexOf('\r\n\r\n');
      if (end === -1) return;
      const status = Number(head.slice(9, 12));
      if (status >= 200 && status < 300) done({ ok: true, status });
      else done({ ok: false, reason: `status ${status}`, body: head.slice(end + 4, end + 300) });
    });
    socket.write(
      `GET ${path.replaceAll('{stream}', 's0')} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nAccept: text/event-stream\r\n\r\n`,
      'latin1',
    );
  });
}

/** How many connections are open now (head read, not closed since), and why the others went. */
function status() {
  let open = 0;
  let failed = 0;
  let closed = 0;
  for (let id = 0; id < size; id++) {
    if (states[id] === OPEN && !sockets[id].destroyed) open++;
    else if (states[id] === FAILED) failed++;
    else if (states[id] === CLOSED) closed++;
  }
  return { connections: size, open, failed, closed, closedBy: { ...closedBy } };
}

let resetCpu = process.cpuUsage();

function reset() {
  counts.fill(0);
  comments.fill(0);
  firstAt.fill(0);
  resetCpu = process.cpuUsage();
  return {};
}

/**
 * Waits until every open connection has counted an event since `reset`, or
 * `timeoutMs`. Answers with each connection's arrival minus `t` (the publish
 * time the runner got from the server), in ms rounded to µs: the runner merges
 * the processes' lists for the whole spread.
 */
async function wait({ t, timeoutMs = 60_000 }) {
  const deadline = performance.now() + timeoutMs;
  let missing = 0;
  let closed = 0;
  for (;;) {
    missing = 0;
    closed = 0;
    for (let id = 0; id < size; id++) {
      if (states[id] === FAILED) continue;
      if (counts[id] > 0) continue;
      if (states[id] === OPEN) missing++;
      else closed++;
    }
    if (missing === 0 || performance.now() >= deadline) break;
    await sleep(POLL_MS);
  }
  const latencies = [];
  let extra = 0;
  for (let id = 0; id < size; id++) {
    if (counts[id] > 0) latencies.push(Math.round((firstAt[id] - t) * 1000) / 1000);
    if (counts[id] > 1) extra++;
  }
  const cpu = process.cpuUsage(resetCpu);
  return { received: latencies.length, missing, closed, extra, latencies, clientCpuMs: Math.round((cpu.user + cpu.system) / 1000) };
}

/** Heartbeats counted since `reset`, over every open connection, and the fewest any open one got. */
function heartbeats() {
  let total = 0;
  let min = Infinity;
  let open = 0;
  let events = 0;
  for (let id = 0; id < size; id++) {
    total += comments[id];
    events += counts[id];
    if (states[id] === OPEN) {
      open++;
      if (comments[id] < min) min = comments[id];
    }
  }
  const cpu = process.cpuUsage(resetCpu);
  return { total, min: open > 0 ? min : 0, open, events, clientCpuMs: Math.round((cpu.user + cpu.system) / 1000) };
}

/** Resets every socket: no TIME_WAIT left on the ports, so the next contender finds them free. */
function close() {
  for (let id = 0; id < size; id++) {
    const socket = sockets[id];
    if (socket && !socket.destroyed) socket.resetAndDestroy();
    if (states[id] === OPEN || states[id] === OPENING) states[id] = CLOSED;
  }
  return {};
}

const commands = { probe, open, status, reset, wait, heartbeats, close, exit: () => process.exit(0) };

process.on('message', async (message) => {
  const { id, cmd } = message ?? {};
  try {
    if (!Object.hasOwn(commands, cmd)) throw new Error(`unknown cmd ${JSON.stringify(cmd)}`);
    const result = await commands[cmd](message);
    process.send({ type: 'done', id, ...result });
  } catch (error) {
    process.send({ type: 'error', id, message: error instanceof Error ? error.message : String(error) });
  }
});
// An orphan would keep its share of the sockets open and the server's memory with them.
process.on('disconnect', () => process.exit(0));
if (!process.send) {
  console.error('scale/load-client.mjs talks over IPC: start it with child_process.fork');
  process.exit(1);
}
process.send({ type: 'ready' });
