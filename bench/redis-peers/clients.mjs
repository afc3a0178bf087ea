// A load-client process of the Redis peer bench: many clients of one kind,
// forked by run.mjs and driven over IPC (request with an id, answer `done` or
// `error`, as bench/peers/PROTOCOL.md describes). Kinds:
//   - `sse`: node:http GET of ssecast's endpoint, split into events by a
//     minimal line splitter (ssecast writes one `data:` line per event here);
//   - `ws-raw`: the `ws` package speaking Engine.IO v4 / Socket.IO v5 itself:
//     answers the open packet with `40`, pings (`2`) with `3`, parses `42[...]`;
//   - `socketio-client`: socket.io-client 4, websocket transport only.
// `sse` and `ws-raw` read an event's index and publish time with the same few
// indexOf calls on the JSON text, so the two lean readers cost the same per
// event; socket.io-client parses the whole packet, as an application using it would.
//
// Requests:
//   open { kind, targets: [{ instance, port, path, count }] } → { opened, failed, failures }
//   reset { phase, expected, verify, latency: 'none' | 'B' | 'B-sample' }
//   wait { phase, expected?, lastIndex?, quietMs, timeoutMs } → what every client got of the phase
//   cpu → process.cpuUsage(); clock → { now }; close; exit
// A client follows one phase at a time (the last `reset`); events of other
// phases (a late warm-up event) are counted as stray and otherwise ignored.
import http from 'node:http';
import { io as ioClient } from 'socket.io-client';
import WebSocket from 'ws';

/** Connects in flight while opening, under the servers' listen backlog. */
const WAVE = 100;
const OPEN_TIMEOUT_MS = 20_000;
/** In `B-sample` latency mode, one B client in this many records latencies (a burst has many events). */
const SAMPLE_EVERY = 10;
const now = () => performance.timeOrigin + performance.now();
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
process.on('disconnect', () => process.exit(1));

/**
 * @typedef {{ id: number, instance: string, open: boolean, closed: boolean, close(): void,
 *   received: number, duplicates: number, outOfOrder: number, maxIndex: number, lastArrival: number,
 *   seen: Uint8Array | null, records: boolean }} Client
 */
/** @type {Client[]} */
let clients = [];
let phase = '';
let verify = false;
let stray = 0;
/** Arrival minus publish time (ms), from the clients that record them this phase. */
let latencies = [];

function newClient(instance) {
  return {
    id: clients.length,
    instance,
    open: false,
    closed: false,
    close() {},
    received: 0,
    duplicates: 0,
    outOfOrder: 0,
    maxIndex: -1,
    lastArrival: 0,
    seen: null,
    records: false,
  };
}

/** One event at one client: counted, checked for exactly once and in order, and timed when the client records. */
function onEvent(c, type, i, t, arrival) {
  if (type !== phase) {
    stray++;
    return;
  }
  if (verify) {
    if (i < 0 || i >= c.seen.length) {
      stray++;
      return;
    }
    if (c.seen[i] === 1) {
      c.duplicates++;
      return;
    }
    c.seen[i] = 1;
    if (i < c.maxIndex) c.outOfOrder++;
  }
  c.received++;
  if (i > c.maxIndex) c.maxIndex = i;
  c.lastArrival = arrival;
  if (c.records) latencies.push(arrival - t);
}

/**
 * Index and publish time from the event's JSON, which both libraries write as
 * `{"i":<index>,"t":<time>,…` (object keys keep their order). Returns false when it is not that.
 */
const parsed = { i: 0, t: 0 };
function readIndexAndTime(text, from) {
  const p = text.indexOf('{"i":', from);
  if (p < 0) return false;
  const comma = text.indexOf(',', p + 5);
  const tEnd = text.indexOf(',', comma + 5);
  parsed.i = +text.slice(p + 5, comma);
  parsed.t = +text.slice(comma + 5, tEnd);
  return true;
}

// ---------------------------------------------------------------- kinds

function openSse(c, port, path) {
  return new Promise((resolve) => {
    let buffer = '';
    const request = http.get({ host: '127.0.0.1', port, path, agent: false, headers: { accept: 'text/event-stream' } }, (res) => {
      if (res.statusCode !== 200) {
        res.resume();
        request.destroy();
        return resolve(`status ${res.statusCode}`);
      }
      c.open = true;
      resolve(null);
      res.setEncoding('utf8');
      res.on('data', (chunk) => {
        const arrival = now();
        buffer = buffer.length === 0 ? chunk : buffer + chunk;
        let start = 0;
        let end;
        while ((end = buffer.indexOf('\n\n', start)) !== -1) {
          const e = buffer.indexOf('event: ', start);
          if (e !== -1 && e < end) {
            const typeEnd = buffer.indexOf('\n', e);
            const d = buffer.indexOf('data: ', typeEnd);
            if (d !== -1 && d < end && readIndexAndTime(buffer, d)) onEvent(c, buffer.slice(e + 7, typeEnd), parsed.i, parsed.t, arrival);
          }
          start = end + 2;
        }
        buffer = start === buffer.length ? '' : buffer.slice(start);
      });
      res.on('close', () => (c.closed = true));
    });
    request.on('error', (error) => {
      c.closed = true;
      resolve(error.code ?? error.message);
    });
    c.close = () => request.destroy();
  });
}

function openWsRaw(c, port) {
  return new Promise((resolve) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/socket.io/?EIO=4&transport=websocket`, { perMessageDeflate: false });
    let settled = false;
    const settle = (why) => settled || ((settled = true), resolve(why));
    ws.on('message', (data) => {
      const arrival = now();
      const text = data.toString();
      const kind = text.charCodeAt(0);
      // Engine.IO: 0 open, 2 ping, 4 message; Socket.IO inside a message: 0 connect, 2 event, 4 connect error.
      if (kind === 0x34) {
        const packet = text.charCodeAt(1);
        if (packet === 0x32) {
          const typeEnd = text.indexOf('"', 4);
          if (readIndexAndTime(text, typeEnd)) onEvent(c, text.slice(4, typeEnd), parsed.i, parsed.t, arrival);
        } else if (packet === 0x30) {
          c.open = true;
          settle(null);
        } else if (packet === 0x34) settle('connect error');
      } else if (kind === 0x32) ws.send('3');
      else if (kind === 0x30) ws.send('40');
    });
    ws.on('error', (error) => settle(error.code ?? error.message));
    ws.on('close', () => {
      c.closed = true;
      settle('closed');
    });
    c.close = () => ws.terminate();
  });
}

function openSocketIoClient(c, port) {
  return new Promise((resolve) => {
    const socket = ioClient(`http://127.0.0.1:${port}`, { transports: ['websocket'], reconnection: false, forceNew: true });
    socket.on('connect', () => {
      c.open = true;
      resolve(null);
    });
    socket.on('connect_error', (error) => resolve(error.message));
    socket.on('disconnect', () => (c.closed = true));
    socket.onAny((type, data) => onEvent(c, type, data.i, data.t, now()));
    c.close = () => socket.disconnect();
  });
}

const KINDS = { sse: openSse, 'ws-raw': openWsRaw, 'socketio-client': openSocketIoClient };

// ---------------------------------------------------------------- requests

const commands = {
  clock: () => ({ now: now() }),
  cpu: () => process.cpuUsage(),

  async open({ kind, targets }) {
    const connect = KINDS[kind];
    if (!connect) throw new Error(`unknown client kind ${kind}`);
    const jobs = [];
    for (const { instance, port, path, count } of targets)
      for (let k = 0; k < count; k++) {
        const c = newClient(instance);
        clients.push(c);
        jobs.push(() => connect(c, port, path));
      }
    const failures = {};
    let failed = 0;
    let next = 0;
    const deadline = performance.now() + OPEN_TIMEOUT_MS;
    const worker = async () => {
      while (next < jobs.length) {
        const job = jobs[next++];
        const why = await Promise.race([job(), sleep(Math.max(0, deadline - performance.now())).then(() => 'timeout')]);
        if (why !== null) {
          failed++;
          failures[why] = (failures[why] ?? 0) + 1;
        }
      }
    };
    await Promise.all(Array.from({ length: WAVE }, worker));
    return { opened: jobs.length - failed, failed, failures };
  },

  reset({ phase: name, expected = 0, verify: check = false, latency = 'none' }) {
    phase = name;
    verify = check;
    stray = 0;
    latencies = [];
    let b = 0;
    for (const c of clients) {
      c.received = c.duplicates = c.outOfOrder = 0;
      c.maxIndex = -1;
      c.lastArrival = 0;
      c.seen = check ? new Uint8Array(expected) : null;
      c.records = c.instance === 'B' && (latency === 'B' || (latency === 'B-sample' && b++ % SAMPLE_EVERY === 0));
    }
    return {};
  },

  /**
   * Until every open client has every index below `expected` (or has seen
   * `lastIndex`), or nothing new arrived anywhere for `quietMs`, or `timeoutMs`.
   */
  async wait({ expected, lastIndex, quietMs, timeoutMs }) {
    const done = (c) => c.closed || (lastIndex !== undefined ? c.maxIndex >= lastIndex : c.received >= expected);
    const started = performance.now();
    let total = -1;
    let changed = started;
    while (performance.now() - started < timeoutMs) {
      if (clients.every(done)) break;
      const sum = clients.reduce((n, c) => n + c.received, 0);
      if (sum !== total) [total, changed] = [sum, performance.now()];
      else if (performance.now() - changed > quietMs) break;
      await sleep(5);
    }
    let received = 0;
    let duplicates = 0;
    let outOfOrder = 0;
    let closed = 0;
    let complete = 0;
    let lastArrival = 0;
    let minCount = Infinity;
    for (const c of clients) {
      received += c.received;
      duplicates += c.duplicates;
      outOfOrder += c.outOfOrder;
      if (c.closed) closed++;
      if (expected !== undefined ? c.received >= expected : c.maxIndex >= lastIndex) complete++;
      if (c.lastArrival > lastArrival) lastArrival = c.lastArrival;
      if (c.received < minCount) minCount = c.received;
    }
    return {
      clients: clients.length,
      complete,
      received,
      missing: expected !== undefined ? clients.length * expected - received : null,
      duplicates,
      outOfOrder,
      closed,
      stray,
      minCount: clients.length ? minCount : 0,
      lastArrival,
      latencies,
    };
  },

  close() {
    for (const c of clients) c.close();
    clients = [];
    return {};
  },

  exit() {
    for (const c of clients) c.close();
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
process.send({ type: 'ready' });
