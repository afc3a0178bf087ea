// Memory per idle SSE connection, and where it goes (issue 17).
//
// Measures the way bench/peers/run.mjs's phase (c) does: a server process runs
// one contender of bench/peers/contenders (the same modules, the same
// defaults), the peer bench's load client opens N connections from another
// process, and the server's heapUsed and RSS after three gc() runs, minus a
// baseline taken just before, are divided by N. Before the baseline the server
// is warmed up the way run.mjs's earlier phases warm it (connections opened,
// events published to them and read, connections closed), so the stream has
// its history and the first connection's one-time costs are not counted.
//
// Then, unless --snapshot 0, the same N connections are opened again between
// two heap snapshots written by the server (v8.writeHeapSnapshot after gc),
// and every node of both snapshots is counted by class: an object by its
// constructor, a closure by its function's name, a backing store (an
// object's properties or elements, a closure's context) by what owns it. The
// difference between the two, per connection, is where the heap went: the
// classes sum to the snapshot's own total. With several contenders the table
// puts them side by side (raw node:http's column is Node's own per-socket
// cost).
//
//   npm run build && node bench/memory/per-connection.mjs [--contenders raw,ssecast-node] [--n 10000]
//     [--snapshot N (0: no snapshots; default: --n)] [--top 30] [--runs 1] [--json out.json]
//     [--retainers CLASS (what holds the nodes of one class of the table)] [--keep DIR (keep the snapshots there)]
//     [--warmup-events 200 (0: the stream has no history, so nothing is replayed on connect)]
//     [--allocations N (where the bytes allocated while N connections open go, garbage included)]
//
// Under another Node: `/path/to/node bench/memory/per-connection.mjs …` (the
// server runs under the same binary). Snapshots go to os.tmpdir() and are
// deleted once read.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import v8 from 'node:v8';
import { settle, startChild } from '../peers/child.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const SIZE = 100;

// ---------------------------------------------------------------------------
// The server process: a contender, answering the peer bench's protocol for
// `connections`, `memory` and `burst`, plus `snapshot`.

async function serve(name) {
  if (!/^[\w-]+$/.test(name ?? '')) throw new Error(`bad contender name ${name}`);
  const contender = await (await import(`../peers/contenders/${name}.mjs`)).start();
  const collect = () => {
    for (let i = 0; i < 3; i++) global.gc();
  };
  const commands = {
    connections: () => ({ connections: contender.connections() }),
    memory: () => {
      collect();
      const { rss, heapUsed, heapTotal, external, arrayBuffers } = process.memoryUsage();
      const spaces = Object.fromEntries(v8.getHeapSpaceStatistics().map((space) => [space.space_name, space.space_size]));
      return { rss, heapUsed, heapTotal, external, arrayBuffers, spaces };
    },
    snapshot: ({ file }) => {
      collect();
      const { heapUsed } = process.memoryUsage();
      v8.writeHeapSnapshot(file);
      return { file, heapUsed };
    },
    // The sampling heap profiler, keeping what the GC collected too: where the bytes allocated
    // while connections open go, garbage included (what makes the young generation grow).
    startAllocations: async () => {
      session ??= new (await import('node:inspector')).Session();
      session.connect?.();
      await post('HeapProfiler.enable');
      await post('HeapProfiler.startSampling', {
        samplingInterval: 256,
        includeObjectsCollectedByMajorGC: true,
        includeObjectsCollectedByMinorGC: true,
      });
      return {};
    },
    stopAllocations: async () => {
      const { profile } = await post('HeapProfiler.stopSampling');
      const bySite = new Map();
      const walk = (node) => {
        const { functionName, url, lineNumber } = node.callFrame;
        const site = `${functionName || '(anonymous)'} ${url.replace(/^.*\/(node_modules|dist|src|lib)\//, '$1/')}:${lineNumber + 1}`;
        if (node.selfSize > 0) bySite.set(site, (bySite.get(site) ?? 0) + node.selfSize);
        for (const child of node.children) walk(child);
      };
      walk(profile.head);
      const total = [...bySite.values()].reduce((sum, bytes) => sum + bytes, 0);
      return { total, sites: [...bySite.entries()].sort((a, b) => b[1] - a[1]).slice(0, 40) };
    },
    burst: async ({ stream, count }) => {
      for (let i = 0; i < count; i++) {
        const head = `{"n":${i},"t":${Date.now()},"p":"`;
        const result = contender.publish(stream, `${head}${'x'.repeat(Math.max(0, SIZE - head.length - 2))}"}`);
        if (result && typeof result.then === 'function') await result;
        if (i % 20 === 19) await new Promise((resolve) => setImmediate(resolve));
      }
      return {};
    },
    exit: async () => {
      await Promise.race([contender.close(), new Promise((resolve) => setTimeout(resolve, 2500))]);
      return {};
    },
  };
  let session;
  const post = (method, params) =>
    new Promise((resolve, reject) => session.post(method, params, (error, result) => (error ? reject(error) : resolve(result))));
  process.on('disconnect', () => process.exit(0));
  process.on('message', async ({ id, cmd, ...fields }) => {
    try {
      const result = await commands[cmd](fields);
      process.send({ type: 'done', id, ...result }, () => cmd === 'exit' && process.exit(0));
    } catch (error) {
      process.send({ type: 'error', id, message: String(error?.stack ?? error) });
    }
  });
  process.send({ type: 'ready', port: contender.port, path: contender.path, version: contender.version });
}

// ---------------------------------------------------------------------------
// The orchestrator.

function parseOptions(argv) {
  const options = {
    contenders: ['raw', 'ssecast-node'],
    n: 10_000,
    snapshot: undefined,
    top: 30,
    runs: 1,
    json: undefined,
    retainers: undefined,
    keep: undefined,
    warmupEvents: 200,
    allocations: 0,
  };
  for (let i = 0; i < argv.length; i++) {
    const [name, inline] = argv[i].split('=');
    const value = () => inline ?? argv[++i];
    if (name === '--contenders') options.contenders = value().split(',').filter(Boolean);
    else if (name === '--n') options.n = Number(value());
    else if (name === '--snapshot') options.snapshot = Number(value());
    else if (name === '--top') options.top = Number(value());
    else if (name === '--runs') options.runs = Number(value());
    else if (name === '--json') options.json = path.resolve(value());
    else if (name === '--retainers') (options.retainers ??= []).push(value());
    else if (name === '--diff') options.diff = [path.resolve(value()), path.resolve(argv[++i])];
    else if (name === '--keep') options.keep = path.resolve(value());
    else if (name === '--warmup-events') options.warmupEvents = Number(value());
    else if (name === '--allocations') options.allocations = Number(value());
    else throw new Error(`unknown option ${argv[i]}`);
  }
  options.snapshot ??= options.n;
  return options;
}

const say = (text) => process.stderr.write(`${text}\n`);
const kib = (bytes) => (bytes / 1024).toFixed(2);

async function main() {
  const options = parseOptions(process.argv.slice(2));
  if (options.diff) return diffFiles(options);
  say(`node ${process.version}; contenders ${options.contenders.join(', ')}; N ${options.n}; snapshot N ${options.snapshot}`);
  const results = [];
  for (const name of options.contenders) {
    for (let run = 0; run < options.runs; run++) results.push(await measure(name, options));
  }
  console.log(`\nNode ${process.version}, ${os.cpus()[0]?.model}, load ${os.loadavg()[0].toFixed(2)}`);
  console.log('contender        N       heap B/conn  heapTotal B/conn  RSS B/conn  external B/conn');
  for (const r of results) {
    console.log(
      `${r.name.padEnd(16)} ${String(r.opened).padEnd(7)} ${String(r.heap).padStart(11)} ${String(r.heapTotal).padStart(17)} ${String(r.rss).padStart(11)} ${String(r.external).padStart(16)}   (${kib(r.heap)} / ${kib(r.rss)} KiB)`,
    );
  }
  const raw = results.filter((r) => r.name === 'raw');
  if (raw.length > 0) {
    const mean = (list, key) => list.reduce((sum, r) => sum + r[key], 0) / list.length;
    for (const name of new Set(results.map((r) => r.name))) {
      if (name === 'raw') continue;
      const mine = results.filter((r) => r.name === name);
      console.log(
        `${name} / raw: heap ${(mean(mine, 'heap') / mean(raw, 'heap')).toFixed(3)}x, RSS ${(mean(mine, 'rss') / mean(raw, 'rss')).toFixed(3)}x`,
      );
    }
  }
  const withClasses = results.filter((r) => r.classes);
  if (withClasses.length > 0) printClasses(withClasses, options.top);
  if (options.json)
    fs.writeFileSync(options.json, `${JSON.stringify({ node: process.version, date: new Date().toISOString(), results }, null, 2)}\n`);
}

/** One contender: warm-up, the run.mjs measurement, then the snapshot diff. */
async function measure(name, options) {
  const server = startChild(`${name} server`, fileURLToPath(import.meta.url), ['--serve', name], ['--expose-gc']);
  const client = startChild(`${name} client`, path.join(HERE, '..', 'peers', 'load-client.mjs'), [], []);
  try {
    const [ready] = await Promise.all([server.ready, client.ready]);
    const session = { server, client, port: ready.port, path: ready.path };
    say(`${name}: warming up`);
    await warmUp(session, options.warmupEvents);

    say(`${name}: measuring ${options.n} connections`);
    const before = await server.call('memory');
    const opened = await open(session, options.n);
    const after = await server.call('memory');
    await close(session);
    const per = (key) => Math.round((after[key] - before[key]) / opened);
    const result = {
      name,
      version: ready.version,
      opened,
      heap: per('heapUsed'),
      heapTotal: per('heapTotal'),
      rss: per('rss'),
      external: per('external'),
    };
    say(`${name}: ${result.heap} B heap, ${result.rss} B RSS per connection`);
    result.committedBySpace = Object.fromEntries(
      Object.keys(after.spaces).map((space) => [space, Math.round((after.spaces[space] - (before.spaces[space] ?? 0)) / opened)]),
    );
    say(`${name}: heap committed per connection by space: ${JSON.stringify(result.committedBySpace)}`);
    say(
      `${name}: new space ${before.spaces.new_space} -> ${after.spaces.new_space} B, old space ${before.spaces.old_space} -> ${after.spaces.old_space} B`,
    );

    if (options.allocations > 0) {
      say(`${name}: sampling allocations while ${options.allocations} connections open`);
      await server.call('startAllocations');
      const count = await open(session, options.allocations);
      const { sites, total } = await server.call('stopAllocations', {}, 60_000);
      await close(session);
      result.allocations = sites.map(([site, bytes]) => ({ site, bytesPerConnection: Math.round(bytes / count) }));
      result.allocatedPerConnection = Math.round(total / count);
      console.log(`\n${name}: bytes allocated per connection while ${count} open: ${result.allocatedPerConnection} B in all; by site:`);
      for (const { site, bytesPerConnection } of result.allocations.slice(0, options.top)) {
        console.log(`  ${String(bytesPerConnection).padStart(7)}  ${site}`);
      }
    }

    if (options.snapshot > 0) {
      say(`${name}: heap snapshots at 0 and ${options.snapshot} connections`);
      const dir = options.keep ?? os.tmpdir();
      const files = [0, 1].map((i) => path.join(dir, `ssecast-memory-${process.pid}-${name}-${i}.heapsnapshot`));
      try {
        const empty = await server.call('snapshot', { file: files[0] }, 300_000);
        const count = await open(session, options.snapshot);
        const full = await server.call('snapshot', { file: files[1] }, 300_000);
        await close(session);
        const a = countClasses(files[0], options.retainers);
        const b = countClasses(files[1], options.retainers);
        for (const key of options.retainers ?? []) printRetainers(name, key, a.retainers.get(key), b.retainers.get(key), count);
        result.snapshot = { connections: count, heapUsedPerConnection: Math.round((full.heapUsed - empty.heapUsed) / count) };
        result.snapshot.totalPerConnection = Math.round((b.total - a.total) / count);
        result.classes = diffClasses(a.classes, b.classes, count);
      } finally {
        if (!options.keep) for (const file of files) fs.rmSync(file, { force: true });
      }
    }
    return result;
  } finally {
    await Promise.all([server.stop(), client.stop()]);
  }
}

/** `--diff A B --n N`: the class table (and `--retainers`) of two kept snapshots, N connections apart. */
function diffFiles(options) {
  const [a, b] = options.diff.map((file) => countClasses(file, options.retainers));
  const result = {
    name: path.basename(options.diff[1]),
    snapshot: { connections: options.n },
    classes: diffClasses(a.classes, b.classes, options.n),
  };
  result.snapshot.totalPerConnection = Math.round((b.total - a.total) / options.n);
  result.snapshot.heapUsedPerConnection = '?';
  for (const key of options.retainers ?? []) printRetainers(result.name, key, a.retainers.get(key), b.retainers.get(key), options.n);
  printClasses([result], options.top);
}

/** What run.mjs's first phases leave behind: a stream with history, and a server that has had (and closed) connections. */
async function warmUp(session, events) {
  for (const count of [100, 1000]) {
    await open(session, count);
    await session.client.call('reset', { sample: 0 });
    if (events > 0) {
      await session.server.call('burst', { stream: 's0', count: events }, 60_000);
      const got = await session.client.call('wait', { expected: events, timeoutMs: 60_000 }, 75_000);
      if (!got.complete) throw new Error(`warm-up: ${got.delivered} of ${count * events} deliveries arrived`);
    }
    await close(session);
  }
}

async function open(session, count) {
  const result = await session.client.call('open', { port: session.port, path: session.path, count }, 180_000);
  if (result.failed > 0) throw new Error(`${result.failed} of ${count} connections failed: ${JSON.stringify(result.failures)}`);
  await settle(session.server, (c) => c >= result.opened, `${result.opened} open`);
  return result.opened;
}

async function close(session) {
  await session.client.call('close');
  await settle(session.server, (c) => c === 0, '0 connections');
}

// ---------------------------------------------------------------------------
// Heap snapshots, read without JSON.parse of the whole file (one of 10,000
// connections is larger than the longest string V8 allows).

/**
 * Counts a snapshot's nodes by class: `{ classes: Map<key, { count, bytes }>, total }`.
 * A plain object's class is its property names (`Object{ok,connection,release}`),
 * a closure's its function's name. Backing stores are charged to their owner:
 * an object's `properties` and `elements` arrays (and a Map's or Set's hash
 * table) to the object's class, a closure's context to the first closure seen
 * holding it, so that a class's bytes are what one instance costs with what it
 * alone needs. With `retainersOf` (a list of classes), also counts who holds
 * the nodes of each (retainer class and edge name) into `retainers`.
 */
function countClasses(file, retainersOf) {
  const buf = fs.readFileSync(file);
  const nodesAt = buf.indexOf('"nodes":[');
  const header = JSON.parse(`${buf.toString('utf8', 0, nodesAt).trim().replace(/,$/, '')}}`);
  const meta = header.snapshot.meta;
  const nodeFields = meta.node_fields;
  const edgeFields = meta.edge_fields;
  const nodeTypes = meta.node_types[0];
  const edgeTypes = meta.edge_types[0];
  const nf = nodeFields.length;
  const ef = edgeFields.length;
  let at = nodesAt + '"nodes":['.length;
  const readInts = (count) => {
    const out = new Float64Array(count);
    let i = 0;
    let value = 0;
    let inNumber = false;
    for (; i < count; at++) {
      const c = buf[at];
      if (c >= 48 && c <= 57) {
        value = value * 10 + (c - 48);
        inNumber = true;
      } else if (inNumber) {
        out[i++] = value;
        value = 0;
        inNumber = false;
      }
    }
    return out;
  };
  const nodes = readInts(header.snapshot.node_count * nf);
  at = buf.indexOf('"edges":[', at) + '"edges":['.length;
  const edges = readInts(header.snapshot.edge_count * ef);
  const stringsAt = buf.indexOf('"strings":[', at) + '"strings":'.length;
  const strings = JSON.parse(buf.toString('utf8', stringsAt, buf.lastIndexOf(']') + 1));

  const TYPE = nodeFields.indexOf('type');
  const NAME = nodeFields.indexOf('name');
  const SELF = nodeFields.indexOf('self_size');
  const EDGES = nodeFields.indexOf('edge_count');
  const E_TYPE = edgeFields.indexOf('type');
  const E_NAME = edgeFields.indexOf('name_or_index');
  const E_TO = edgeFields.indexOf('to_node');
  const nodeCount = nodes.length / nf;
  const firstEdge = new Float64Array(nodeCount + 1);
  for (let n = 0; n < nodeCount; n++) firstEdge[n + 1] = firstEdge[n] + nodes[n * nf + EDGES] * ef;
  const typeOf = (n) => nodeTypes[nodes[n * nf + TYPE]];
  const nameOf = (n) => strings[nodes[n * nf + NAME]];
  const edgeName = (e) => {
    const type = edgeTypes[edges[e + E_TYPE]];
    return type === 'element' || type === 'hidden' ? String(edges[e + E_NAME]) : strings[edges[e + E_NAME]];
  };

  const keyOf = (n) => {
    const type = typeOf(n);
    const name = nameOf(n);
    if (type === 'object') {
      if (name !== 'Object') return name;
      const names = [];
      for (let e = firstEdge[n]; e < firstEdge[n + 1]; e += ef) {
        if (edgeTypes[edges[e + E_TYPE]] === 'property' && names.length < 8) names.push(strings[edges[e + E_NAME]]);
      }
      return `Object{${names.join(',')}}`;
    }
    if (type === 'closure') return `${name || '(anonymous)'}()`;
    if (type === 'string' || type === 'concatenated string' || type === 'sliced string') return '(string)';
    if (type === 'number' || type === 'bigint') return `(${type})`;
    if (type === 'native') return `(native) ${name.replace(/ \/ .*/, '')}`;
    if (type === 'code') return '(code)';
    return `(${type}) ${name.length > 40 ? `${name.slice(0, 40)}…` : name}`;
  };
  const OWNED = new Set(['properties', 'elements', 'table', 'context']);
  const owner = new Int32Array(nodeCount).fill(-1);
  for (let n = 0; n < nodeCount; n++) {
    const type = typeOf(n);
    if (type !== 'object' && type !== 'closure') continue;
    for (let e = firstEdge[n]; e < firstEdge[n + 1]; e += ef) {
      if (edgeTypes[edges[e + E_TYPE]] !== 'internal' || !OWNED.has(strings[edges[e + E_NAME]])) continue;
      const to = edges[e + E_TO] / nf;
      const toType = typeOf(to);
      const store = toType === 'array' || toType === 'hidden' || toType === 'object shape' || nameOf(to) === 'system / Context';
      if (store && owner[to] === -1) owner[to] = n;
    }
  }
  const classOf = (n) => (owner[n] === -1 ? keyOf(n) : `${keyOf(owner[n])} ${nameOf(n) === 'system / Context' ? '+context' : '+store'}`);
  const classes = new Map();
  let total = 0;
  for (let n = 0; n < nodeCount; n++) {
    const bytes = nodes[n * nf + SELF];
    total += bytes;
    const key = classOf(n);
    const entry = classes.get(key);
    if (entry) {
      entry.count++;
      entry.bytes += bytes;
    } else classes.set(key, { count: 1, bytes });
  }
  const retainers = new Map((retainersOf ?? []).map((key) => [key, new Map()]));
  if (retainers.size > 0) {
    for (let n = 0; n < nodeCount; n++) {
      for (let e = firstEdge[n]; e < firstEdge[n + 1]; e += ef) {
        if (edgeTypes[edges[e + E_TYPE]] === 'weak') continue;
        const held = retainers.get(classOf(edges[e + E_TO] / nf));
        if (!held) continue;
        const key = `${classOf(n)} .${edgeName(e)}`;
        held.set(key, (held.get(key) ?? 0) + 1);
      }
    }
  }
  return { classes, total, retainers };
}

/** Per connection: count and bytes of each class in `b` over `a`, largest first. */
function diffClasses(a, b, connections) {
  const rows = [];
  for (const key of new Set([...a.keys(), ...b.keys()])) {
    const x = a.get(key) ?? { count: 0, bytes: 0 };
    const y = b.get(key) ?? { count: 0, bytes: 0 };
    const bytes = (y.bytes - x.bytes) / connections;
    const count = (y.count - x.count) / connections;
    if (Math.abs(bytes) >= 0.5 || Math.abs(count) >= 0.01) rows.push({ key, count: round(count), bytes: round(bytes) });
  }
  return rows.sort((p, q) => q.bytes - p.bytes);
}

/** Who holds the nodes of one class, per connection: retainer class and edge, from the difference of the two snapshots. */
function printRetainers(name, key, a, b, connections) {
  const rows = [];
  for (const [holder, count] of b) {
    const per = (count - (a.get(holder) ?? 0)) / connections;
    if (Math.abs(per) >= 0.01) rows.push([holder, per]);
  }
  rows.sort((p, q) => q[1] - p[1]);
  console.log(`\n${name}: what holds ${key} (references per connection)`);
  for (const [holder, per] of rows.slice(0, 25)) console.log(`  ${per.toFixed(2).padStart(6)}  ${holder}`);
}

const round = (x) => Math.round(x * 100) / 100;

function printClasses(results, top) {
  const names = results.map((r) => r.name);
  console.log(`\nHeap snapshot diff, per connection (0 → N connections): bytes (count) by class`);
  for (const r of results) {
    console.log(
      `  ${r.name}: ${r.snapshot.connections} connections; snapshot nodes ${r.snapshot.totalPerConnection} B/conn, heapUsed ${r.snapshot.heapUsedPerConnection} B/conn`,
    );
  }
  const keys = new Map();
  for (const r of results) for (const row of r.classes) keys.set(row.key, Math.max(keys.get(row.key) ?? 0, Math.abs(row.bytes)));
  const order = [...keys.entries()].sort((p, q) => q[1] - p[1]).slice(0, top);
  const width = Math.min(60, Math.max(...order.map(([key]) => key.length)));
  console.log(`  ${'class'.padEnd(width)} ${names.map((n) => n.padStart(18)).join(' ')}`);
  for (const [key] of order) {
    const cells = results.map((r) => {
      const row = r.classes.find((c) => c.key === key);
      return (row ? `${row.bytes.toFixed(0)} (${row.count})` : '-').padStart(18);
    });
    console.log(`  ${key.slice(0, width).padEnd(width)} ${cells.join(' ')}`);
  }
}

// Last, so that every constant above is initialised.
if (process.argv[2] === '--serve') await serve(process.argv[3]);
else await main();
