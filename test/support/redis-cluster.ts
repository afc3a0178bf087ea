/**
 * Redis servers of our own on loopback for the failover tests: a Redis
 * Cluster (three masters with one replica each: six `redis-server`
 * processes on free ports, each with its own temporary directory), the
 * process handling the Sentinel helper shares, and what the Cluster and
 * Sentinel tests measure with (publishers, clients, the verdict on what
 * each client got). Everything started here is killed after the file's
 * tests, and on process exit whatever happens.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EventSource } from 'eventsource';
import { Redis } from 'ioredis';
import { afterAll, expect } from 'vitest';
import { EventManager } from '../../src/index.js';
import { RedisBackend } from '../../src/backends/redis/index.js';
import type { RedisSource } from '../../src/backends/redis/connections.js';
import { createSseHandler } from '../../src/adapters/node.js';
import { freePort, openStream, sleep, startServer, type ParsedEvent, type StreamClient, type TestServer } from './helpers.js';

export const hasRedisServerBinary = spawnSync('redis-server', ['--version']).status === 0;

/** One redis-server process this test owns; `start` runs it again on the same port and directory. */
export interface OwnedNode {
  readonly port: number;
  readonly dir: string;
  readonly running: boolean;
  /** SIGKILL: what a crash does (no AOF rewrite, no shutdown save, no goodbye to the cluster). */
  kill(): Promise<void>;
  /** SIGSTOP / SIGCONT: a process that hangs (a long GC-like pause, a frozen VM) without closing its sockets. */
  pause(): void;
  resume(): void;
  /** Starts it again; `extraArgs` come last, so they override the arguments it was first started with. */
  start(extraArgs?: string[]): Promise<void>;
  /** The server's own log, for the failure message when something does not come up. */
  log(): string;
}

const owned = new Set<{ child?: ChildProcess; dir: string }>();
const adminClients = new Set<Redis>();
afterAll(() => stopEverything());
// Whatever happens to the test run, no redis-server of ours outlives it.
process.once('exit', () => {
  for (const node of owned) node.child?.kill('SIGKILL');
});

async function stopEverything(): Promise<void> {
  for (const client of adminClients) client.disconnect();
  adminClients.clear();
  for (const node of owned) {
    const child = node.child;
    if (child && child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await new Promise((resolve) => child.once('exit', resolve));
    }
    rmSync(node.dir, { recursive: true, force: true });
  }
  owned.clear();
}

/**
 * Spawns redis-server with `args` on `port` in a fresh directory, and waits
 * until it answers PING. `config`, when given, is written to a file there
 * that comes first on the command line (a sentinel needs one it can rewrite).
 */
export async function startNode(port: number, args: string[], what = 'redis', config?: string): Promise<OwnedNode> {
  const dir = mkdtempSync(join(tmpdir(), `ssecast-${what}-`));
  const record: { child?: ChildProcess; dir: string } = { dir };
  owned.add(record);
  const configFile = join(dir, 'node.conf');
  if (config !== undefined) writeFileSync(configFile, config);
  const fullArgs = [...(config !== undefined ? [configFile] : []), ...args, '--dir', dir, '--logfile', join(dir, 'redis.log')];
  const alive = () => !!record.child && record.child.exitCode === null && record.child.signalCode === null;
  const node: OwnedNode = {
    port,
    dir,
    get running() {
      return alive();
    },
    async start(extraArgs: string[] = []) {
      record.child = spawn('redis-server', [...fullArgs, ...extraArgs], { stdio: 'ignore' });
      const started = record.child;
      await pollUntil(
        async () => {
          if (started.exitCode !== null) throw new Error(`redis-server on ${port} exited with ${started.exitCode}:\n${node.log()}`);
          // Ours, not another test's server that took the same free port first (then ours exits, failing to bind,
          // and a PING alone would have passed: CI once sent SENTINEL FAILOVER to a plain redis-server that way).
          const info = await command(port, 'INFO', 'server').catch(() => '');
          return Number(infoFields(info).process_id) === started.pid;
        },
        15_000,
        `redis-server on port ${port} to answer`,
      );
    },
    async kill() {
      const child = record.child;
      if (!child || !alive()) return;
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGKILL');
      await exited;
    },
    pause() {
      record.child?.kill('SIGSTOP');
    },
    resume() {
      record.child?.kill('SIGCONT');
    },
    log() {
      try {
        return readFileSync(join(dir, 'redis.log'), 'utf8').split('\n').slice(-40).join('\n');
      } catch {
        return '(no log)';
      }
    },
  };
  await node.start();
  return node;
}

/**
 * `startNode` on ports that were free a moment ago, chosen again if the
 * server could not have them (another process took one in between).
 */
export async function startOnFreePorts(
  count: number,
  what: string,
  build: (ports: number[]) => { args: string[]; config?: string },
): Promise<OwnedNode> {
  for (let attempt = 1; ; attempt++) {
    const ports: number[] = [];
    for (let i = 0; i < count; i++) ports.push(await freePort());
    const { args, config } = build(ports);
    try {
      return await startNode(ports[0] as number, args, what, config);
    } catch (error) {
      if (attempt >= 3 || !/exited with/.test(String(error))) throw error;
    }
  }
}

/**
 * Runs one command on one server over a short-lived connection. Nothing is
 * queued or retried: an answer from that server, or an error.
 */
export async function command(port: number, ...args: (string | number)[]): Promise<unknown> {
  for (let attempt = 1; ; attempt++) {
    const client = new Redis({
      host: '127.0.0.1',
      port,
      lazyConnect: true,
      retryStrategy: () => null,
      maxRetriesPerRequest: 0,
      connectTimeout: 2000,
      commandTimeout: 5000,
    });
    client.on('error', () => {});
    adminClients.add(client);
    try {
      try {
        await client.connect();
      } catch (error) {
        // Not sent yet, so safe to try again: a server that is restarting, or closing its clients (Sentinel does).
        if (attempt < 3) continue;
        throw error;
      }
      return await client.call(String(args[0]), ...args.slice(1).map(String));
    } finally {
      client.disconnect();
      adminClients.delete(client);
    }
  }
}

/** Polls an async condition until it is true; a condition that throws counts as false (until the deadline). */
export async function pollUntil(condition: () => Promise<boolean> | boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      if (await condition()) return;
    } catch (error) {
      last = error;
      // A process that exited is not going to come up: say so now.
      if (error instanceof Error && /exited with/.test(error.message)) throw error;
    }
    if (Date.now() > deadline) {
      const reason = last instanceof Error ? ` (last error: ${last.message})` : '';
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${reason}`);
    }
    await sleep(50);
  }
}

/** `key:value` lines of INFO or CLUSTER INFO as an object. */
export function infoFields(text: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of String(text).split(/\r?\n/)) {
    const at = line.indexOf(':');
    if (at > 0) out[line.slice(0, at)] = line.slice(at + 1).trim();
  }
  return out;
}

export interface ClusterOptions {
  /** `cluster-node-timeout`: how long a silent master goes before its replica takes over. @defaultValue 1000 */
  nodeTimeoutMs?: number;
  /** `appendonly yes` with this `appendfsync`, or no AOF at all. @defaultValue 'no' */
  appendfsync?: 'always' | 'everysec' | 'no';
}

export interface NodeView {
  id: string;
  port: number;
  master: boolean;
  failed: boolean;
  masterId: string | null;
  slots: [number, number][];
}

export interface TestCluster {
  nodes: OwnedNode[];
  /** host/port of every node, for an ioredis Cluster's startup nodes. */
  startupNodes: { host: string; port: number }[];
  /** What `port` thinks of the cluster (CLUSTER NODES). */
  view(port: number): Promise<NodeView[]>;
  /** The master serving `slot` and its replica, as a running node sees them. */
  shard(slot: number): Promise<{ master: OwnedNode; replica: OwnedNode }>;
  /** The master serving `slot` (with or without a replica), as a running node sees it. */
  masterOf(slot: number): Promise<OwnedNode>;
  /** Resolves when every running node reports `cluster_state:ok`, agrees on the masters, and each replica's link is up. */
  settled(timeoutMs?: number): Promise<void>;
  stop(): Promise<void>;
}

const SLOTS = 16384;

/**
 * Starts six cluster-enabled servers, joins them with
 * `redis-cli --cluster create … --cluster-replicas 1 --cluster-yes`, and
 * waits until every node says the cluster is ok.
 */
export async function startCluster(options: ClusterOptions = {}): Promise<TestCluster> {
  const nodeTimeoutMs = options.nodeTimeoutMs ?? 1000;
  const appendfsync = options.appendfsync ?? 'no';
  const nodes: OwnedNode[] = [];
  for (let i = 0; i < 6; i++) {
    // The bus port is set on its own: the default (port + 10000) may be taken, or past 65535.
    const node = await startOnFreePorts(2, 'cluster', ([port, busPort]) => ({
      args: [
        '--port',
        String(port),
        '--bind',
        '127.0.0.1',
        '--protected-mode',
        'no',
        '--save',
        '',
        '--appendonly',
        appendfsync === 'no' ? 'no' : 'yes',
        ...(appendfsync === 'no' ? [] : ['--appendfsync', appendfsync]),
        '--cluster-enabled',
        'yes',
        '--cluster-config-file',
        'nodes.conf',
        '--cluster-port',
        String(busPort),
        '--cluster-node-timeout',
        String(nodeTimeoutMs),
        // Each shard keeps its replica: none wanders off to another master while a test kills things.
        '--cluster-allow-replica-migration',
        'no',
        // A replica's first sync (and its resync after a restart) starts at once instead of after 5 s.
        '--repl-diskless-sync-delay',
        '0',
        '--loglevel',
        'notice',
      ],
    }));
    nodes.push(node);
  }
  const create = spawn(
    'redis-cli',
    ['--cluster', 'create', ...nodes.map((n) => `127.0.0.1:${n.port}`), '--cluster-replicas', '1', '--cluster-yes'],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let output = '';
  create.stdout.on('data', (chunk) => (output += chunk));
  create.stderr.on('data', (chunk) => (output += chunk));
  const code = await new Promise<number | null>((resolve) => create.once('exit', resolve));
  if (code !== 0) throw new Error(`redis-cli --cluster create failed (${code}):\n${output}`);

  const byPort = new Map(nodes.map((node) => [node.port, node]));
  const view = async (port: number): Promise<NodeView[]> => {
    const text = String(await command(port, 'CLUSTER', 'NODES'));
    return text
      .trim()
      .split('\n')
      .map((line) => {
        const [id = '', address = '', flags = '', masterId = '-', , , , , ...slotFields] = line.split(' ');
        const slots = slotFields
          .filter((field) => !field.startsWith('['))
          .map((field) => {
            const [from, to] = field.split('-').map(Number) as [number, number | undefined];
            return [from, to ?? from] as [number, number];
          });
        const flagList = flags.split(',');
        return {
          id,
          port: Number(address.split('@')[0]?.split(':')[1]),
          master: flagList.includes('master'),
          failed: flagList.includes('fail') || flagList.includes('fail?'),
          masterId: masterId === '-' ? null : masterId,
          slots,
        };
      });
  };
  const running = () => nodes.filter((node) => node.running);
  const settled = async (timeoutMs = 20_000) => {
    await pollUntil(
      async () => {
        const views: NodeView[][] = [];
        for (const node of running()) {
          const info = infoFields(await command(node.port, 'CLUSTER', 'INFO'));
          if (info.cluster_state !== 'ok' || Number(info.cluster_slots_ok) !== SLOTS) return false;
          views.push(await view(node.port));
          const replication = infoFields(await command(node.port, 'INFO', 'replication'));
          if (replication.role === 'slave' && replication.master_link_status !== 'up') return false;
        }
        // Every node names the same master for every slot, and none of them is a node that is down.
        const masters = (v: NodeView[]) =>
          v
            .filter((n) => n.master && n.slots.length > 0)
            .map((n) => `${n.port}:${JSON.stringify(n.slots)}`)
            .sort()
            .join(' ');
        const first = views[0];
        if (!first || views.some((v) => masters(v) !== masters(first))) return false;
        const down = new Set(nodes.filter((n) => !n.running).map((n) => n.port));
        return first.every((n) => !(n.master && n.slots.length > 0 && (down.has(n.port) || n.failed)));
      },
      timeoutMs,
      'the cluster to settle (state ok everywhere, one view of the masters, replicas in sync)',
    );
  };
  const shard = async (slot: number) => {
    for (const node of running()) {
      const v = await view(node.port);
      const master = v.find((n) => n.master && !n.failed && n.slots.some(([from, to]) => slot >= from && slot <= to));
      const replica = master && v.find((n) => n.masterId === master.id);
      const masterNode = master && byPort.get(master.port);
      const replicaNode = replica && byPort.get(replica.port);
      if (masterNode && replicaNode) return { master: masterNode, replica: replicaNode };
    }
    throw new Error(`no node knows a master with a replica for slot ${slot}`);
  };
  const masterOf = async (slot: number) => {
    for (const node of running()) {
      const master = (await view(node.port)).find((n) => n.master && !n.failed && n.slots.some(([from, to]) => slot >= from && slot <= to));
      const masterNode = master && byPort.get(master.port);
      if (masterNode) return masterNode;
    }
    throw new Error(`no node knows a master for slot ${slot}`);
  };
  const cluster: TestCluster = {
    masterOf,
    nodes,
    startupNodes: nodes.map((node) => ({ host: '127.0.0.1', port: node.port })),
    view,
    shard,
    settled,
    async stop() {
      for (const node of nodes) await node.kill();
    },
  };
  await settled();
  return cluster;
}

// What the failover tests measure, for a Cluster and for Sentinel alike.

/** A publish that resolved (Redis stored it and said so) or rejected, by its payload number. */
export interface Outcome {
  resolved: { n: number; id: string }[];
  rejected: { n: number; message: string }[];
}

/** One event as a client saw it: a `tick` (with its payload number) or a `resync`. */
export interface Seen {
  type: string;
  id: string;
  n?: number;
  /** A resync's reason. */
  reason?: string;
}

/** Numbered ticks to `stream`, from every hub at once, each hub one publish at a time. */
export class Publisher {
  readonly outcome: Outcome = { resolved: [], rejected: [] };
  private running = true;
  private next: number;
  private readonly loops: Promise<void>[];

  /** `firstN`: where its numbers start, so that two publishers' ticks never share one. */
  constructor(hubs: PublishingHub[], stream: string, { pauseMs = 2, firstN = 0 }: { pauseMs?: number; firstN?: number } = {}) {
    this.next = firstN;
    this.loops = hubs.map(async (hub) => {
      while (this.running) {
        const n = this.next++;
        try {
          const event = await hub.publish(stream, 'tick', { n });
          this.outcome.resolved.push({ n, id: event.id });
        } catch (error) {
          this.outcome.rejected.push({ n, message: error instanceof Error ? error.message : String(error) });
          // Redis is away or failing over: no point in spinning.
          await sleep(20);
        }
        await sleep(pauseMs);
      }
    });
  }

  /** Resolves once `count` more publishes have resolved than when it was called. */
  async resolvedMore(count: number, timeoutMs = 20_000): Promise<void> {
    const target = this.outcome.resolved.length + count;
    await pollUntil(() => this.outcome.resolved.length >= target, timeoutMs, `${count} more publishes to resolve`);
  }

  async stop(): Promise<Outcome> {
    this.running = false;
    await Promise.all(this.loops);
    return this.outcome;
  }

  /**
   * Stops, then publishes one last tick, tried again (as a new tick: a
   * rejected one may have been stored) until Redis takes one. Once a client
   * has that one, it has had its chance at every publish before it.
   */
  async finish(hub: PublishingHub, stream: string, timeoutMs = 20_000): Promise<{ outcome: Outcome; last: number }> {
    await this.stop();
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const n = this.next++;
      try {
        const event = await hub.publish(stream, 'tick', { n });
        this.outcome.resolved.push({ n, id: event.id });
        return { outcome: this.outcome, last: n };
      } catch (error) {
        this.outcome.rejected.push({ n, message: error instanceof Error ? error.message : String(error) });
        if (Date.now() > deadline) throw error;
        await sleep(50);
      }
    }
  }
}

type PublishingHub = { publish(stream: string, type: 'tick', data: { n: number }): Promise<{ id: string }> };

export interface Verdict {
  /** Resolved publishes the client got, once each. */
  delivered: number;
  /** Resolved publishes it never got, each followed by a `resync` after where it would have been. */
  announced: number[];
  /** Resolved publishes it never got and was never told about: must be empty. */
  silent: number[];
  /** Payloads it got more than once: must be empty. */
  duplicates: number[];
  /** Ticks that came before one they follow in the id order, with no `resync` between: must be empty. */
  outOfOrder: string[];
  /** Ticks whose id is not the one their publish resolved with: must be empty. */
  wrongIds: string[];
  /** Rejected publishes the client got anyway (a publish cut off after Redis ran it). */
  rejectedButStored: number;
  resyncs: number;
  /** Why, for each resync. */
  reasons: string[];
}

/**
 * Holds a client's deliveries against the publishes: every resolved one
 * arrives exactly once, in id order, or is missing and a `resync` comes
 * after the place it belonged. Ids order by (epoch in the order epochs
 * first appeared, seq).
 */
export function judge(seen: Seen[], outcome: Outcome): Verdict {
  const epochs: string[] = [];
  const rank = (id: string) => {
    const [epoch = '', seq = '0'] = id.split('.');
    if (!epochs.includes(epoch)) epochs.push(epoch);
    return epochs.indexOf(epoch) * 2 ** 40 + Number(seq);
  };
  for (const { id } of outcome.resolved) rank(id);
  const resolvedIds = new Map(outcome.resolved.map(({ n, id }) => [n, id]));
  const rejected = new Set(outcome.rejected.map(({ n }) => n));
  const verdict: Verdict = {
    delivered: 0,
    announced: [],
    silent: [],
    duplicates: [],
    outOfOrder: [],
    wrongIds: [],
    rejectedButStored: 0,
    resyncs: 0,
    reasons: [],
  };
  const counts = new Map<number, number>();
  let previous = -1;
  for (const event of seen) {
    if (event.type === 'resync') {
      verdict.resyncs++;
      verdict.reasons.push(event.reason ?? '?');
      // A resync starts over: what follows is a fresh replay, judged from here.
      previous = -1;
      continue;
    }
    const n = event.n as number;
    counts.set(n, (counts.get(n) ?? 0) + 1);
    const expected = resolvedIds.get(n);
    if (expected !== undefined && expected !== event.id) verdict.wrongIds.push(`${n}: got ${event.id}, published as ${expected}`);
    if (rejected.has(n)) verdict.rejectedButStored++;
    const at = rank(event.id);
    if (at <= previous) verdict.outOfOrder.push(event.id);
    previous = at;
  }
  for (const [n, count] of counts) if (count > 1) verdict.duplicates.push(n);
  const ticks = seen.map((event, index) => ({ event, index, at: event.type === 'resync' ? -1 : rank(event.id) }));
  for (const { n, id } of outcome.resolved) {
    if (counts.has(n)) {
      verdict.delivered++;
      continue;
    }
    // Missing: told about only if a resync came after the client passed where it belongs (the tick before it,
    // or the start). A rollback is seen after the fact, so the resync may come a few events later.
    const at = rank(id);
    const next = ticks.find((t) => t.at >= at);
    const limit = next ? next.index : seen.length;
    const passed = ticks.filter((t) => t.index < limit && t.at >= 0 && t.at < at).at(-1)?.index ?? -1;
    const told = seen.some((e, index) => e.type === 'resync' && index > passed);
    (told ? verdict.announced : verdict.silent).push(n);
  }
  return verdict;
}

/**
 * A TCP relay in front of one server, for a client's `natMap`, that can lose
 * what the server sends:
 *   - `cutNext(marker)`: the next request containing `marker` reaches the
 *     server, which runs it and answers; the relay then drops both sockets
 *     instead of passing the answer on. What a connection reset (a crash
 *     after the write, a load balancer, a network blip) does to a command in
 *     flight: it ran, and the client cannot know.
 *   - `hold(name)`: connections that named themselves `name…` (CLIENT SETNAME)
 *     get nothing more from the server: what a slow or partitioned link
 *     looks like from the server's side, where the bytes are already sent.
 */
export interface Relay {
  port: number;
  cutNext(marker: string): Promise<void>;
  hold(connectionName: string): void;
  close(): Promise<void>;
}

export async function startRelay(targetPort: number): Promise<Relay> {
  const sockets = new Set<net.Socket>();
  const pairs = new Set<{ sent: string; held: boolean }>();
  let armed: { marker: string; done: () => void } | undefined;
  let holding: string | undefined;
  const server = net.createServer((downstream) => {
    const upstream = net.connect(targetPort, '127.0.0.1');
    const pair = { sent: '', held: false };
    pairs.add(pair);
    sockets.add(downstream);
    sockets.add(upstream);
    let cutting: (() => void) | undefined;
    const drop = () => {
      downstream.destroy();
      upstream.destroy();
    };
    downstream.on('error', drop);
    upstream.on('error', drop);
    downstream.on('close', () => (sockets.delete(downstream), pairs.delete(pair), upstream.destroy()));
    upstream.on('close', () => (sockets.delete(upstream), downstream.destroy()));
    downstream.on('data', (chunk: Buffer) => {
      // The first requests carry the connection's name; that is all that is kept.
      if (pair.sent.length < 4096) pair.sent += chunk.toString('latin1');
      if (holding && pair.sent.includes(holding)) pair.held = true;
      if (armed && chunk.includes(armed.marker)) {
        cutting = armed.done;
        armed = undefined;
      }
      upstream.write(chunk);
    });
    upstream.on('data', (chunk: Buffer) => {
      if (cutting) {
        drop();
        cutting();
        cutting = undefined;
        return;
      }
      if (!pair.held) downstream.write(chunk);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  return {
    port,
    cutNext(marker: string) {
      return new Promise<void>((resolve) => (armed = { marker, done: resolve }));
    },
    hold(connectionName: string) {
      holding = connectionName;
      for (const pair of pairs) if (pair.sent.includes(connectionName)) pair.held = true;
    },
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

// Hubs, servers and clients for the failover tests (Cluster and Sentinel alike).

export type TickEvents = { tick: { n: number } };

export interface Instance {
  hub: EventManager<TickEvents>;
  backend: RedisBackend;
  server: TestServer;
}

/**
 * A hub on `source` with `prefix`, served over `ssecast/node` on a port of
 * its own; closed by `cleanups`. Connected to Redis before it returns: on a
 * busy machine the first connection may take longer than a history read
 * waits, and a client whose first read failed is refused.
 */
export async function startInstance(source: RedisSource, prefix: string, cleanups: (() => unknown)[]): Promise<Instance> {
  // A client away during a failover misses a few hundred events here: its resume must not hit the trim.
  const backend = new RedisBackend({ redis: source, prefix, historySize: 5000 });
  const hub = new EventManager<TickEvents>({ backend });
  cleanups.push(() => hub.close());
  await pollUntil(
    () =>
      hub.publish('warm-up', 'tick', { n: -1 }).then(
        () => true,
        () => false,
      ),
    20_000,
    'the hub to reach Redis',
  );
  const sse = createSseHandler(hub, { retryMs: 20, streams: (req) => new URL(req.url ?? '/', 'http://x').searchParams.getAll('stream') });
  const server = await startServer((req, res) => sse(req, res));
  cleanups.push(() => server.close());
  return { hub, backend, server };
}

/** A browser-like client of stream `s`: the `eventsource` package, reconnecting with Last-Event-ID on its own. */
export function follow(server: TestServer, cleanups: (() => unknown)[]): { seen: Seen[]; opens(): number } {
  const source = new EventSource(`${server.url}/?stream=s`);
  cleanups.push(() => source.close());
  const seen: Seen[] = [];
  let opens = 0;
  source.addEventListener('open', () => opens++);
  source.addEventListener('tick', (m) => seen.push({ type: 'tick', id: m.lastEventId, n: JSON.parse(m.data).n }));
  source.addEventListener('resync', (m) => seen.push({ type: 'resync', id: m.lastEventId, reason: JSON.parse(m.data).reason }));
  return { seen, opens: () => opens };
}

/** The position marker moves a client's id and is nothing to see (docs/resume.md). */
const isEvent = (e: ParsedEvent) => e.event !== 'ssecast-position';

function seenOf(e: ParsedEvent): Seen {
  return e.event === 'resync'
    ? { type: 'resync', id: e.id ?? '', reason: JSON.parse(e.data).reason }
    : { type: 'tick', id: e.id ?? '', n: JSON.parse(e.data).n };
}

/**
 * A client of `url` that starts from `lastEventId` and, like EventSource, comes back with the last id it got
 * whenever its stream ends (an instance whose Redis connection is still coming back refuses the history read).
 */
function resume(url: string, lastEventId: string): { seen: Seen[]; close(): void } {
  const seen: Seen[] = [];
  let closed = false;
  let current: StreamClient | undefined;
  let last = lastEventId;
  void (async () => {
    while (!closed) {
      try {
        const stream = await openStream(url, { 'last-event-id': last });
        current = stream;
        let taken = 0;
        const take = () => {
          for (const e of stream.events.slice(taken)) {
            if (isEvent(e)) seen.push(seenOf(e));
            if (e.id) last = e.id;
          }
          taken = stream.events.length;
        };
        let ended = false;
        void stream.ended.then(() => (ended = true));
        while (!ended && !closed) {
          take();
          await sleep(5);
        }
        take();
      } catch {
        // Refused or cut off: it comes back, as a browser would.
      }
      await sleep(50);
    }
  })();
  return {
    seen,
    close: () => {
      closed = true;
      current?.close();
    },
  };
}

export interface Run {
  outcome: Outcome;
  /** Two clients connected all along (one per instance); one that left before the failover and came back after it on the other instance. */
  verdicts: { live: Verdict[]; moved: Verdict };
  /** Epochs among the resolved publishes: 2 when Redis lost history and a new one began. */
  epochs: number;
  /** Times the two instances ended their streams because the sequence did not continue. */
  interruptions: number;
  /** The id of every tick any client got, rejected publishes included (one Redis ran before its reply was lost). */
  seenIds: string[];
}

/**
 * The common shape of every failover test: two instances on `source`
 * publish to one stream, two EventSources follow it, a third client leaves
 * before `failover` and resumes with its Last-Event-ID on the other instance
 * after it; then one last publish, and every client's deliveries are judged.
 * A line of numbers goes to `report`.
 */
export async function publishThrough(
  options: { name: string; source: RedisSource; prefix: string; cleanups: (() => unknown)[]; report: string[]; pauseMs?: number },
  failover: (publisher: Publisher) => Promise<void>,
): Promise<Run> {
  const { source, prefix, cleanups } = options;
  const a = await startInstance(source, prefix, cleanups);
  const b = await startInstance(source, prefix, cleanups);
  const live = [follow(a.server, cleanups), follow(b.server, cleanups)];
  const mover = await openStream(`${a.server.url}/?stream=s`);
  cleanups.push(() => mover.close());
  await pollUntil(() => a.hub.stats().connections === 2 && b.hub.stats().connections === 1, 10_000, 'the clients to connect');
  const publisher = new Publisher([a.hub, b.hub], 's', { pauseMs: options.pauseMs ?? 2 });
  await publisher.resolvedMore(40);
  await mover.waitFor((c) => c.events.length >= 10, 10_000, 'the moving client to get ten events');
  mover.close();
  await mover.ended;
  await failover(publisher);
  await publisher.resolvedMore(20, 30_000);
  const moved = resume(`${b.server.url}/?stream=s`, mover.events.at(-1)?.id as string);
  cleanups.push(() => moved.close());
  await publisher.resolvedMore(40, 30_000);
  const { outcome, last } = await publisher.finish(a.hub, 's');
  const arrived = (seen: Seen[]) => seen.some((e) => e.n === last);
  await pollUntil(() => live.every((c) => arrived(c.seen)), 20_000, 'the live clients to get the last publish');
  await pollUntil(() => arrived(moved.seen), 20_000, 'the moved client to catch up');
  const run: Run = {
    outcome,
    verdicts: {
      live: live.map((c) => judge(c.seen, outcome)),
      moved: judge([...mover.events.filter(isEvent).map(seenOf), ...moved.seen], outcome),
    },
    epochs: new Set(outcome.resolved.map(({ id }) => id.split('.')[0])).size,
    interruptions: (a.hub.stats().redisInterruptions ?? 0) + (b.hub.stats().redisInterruptions ?? 0),
    seenIds: [
      ...new Set(
        [...live.flatMap((c) => c.seen), ...mover.events.filter(isEvent).map(seenOf), ...moved.seen]
          .filter((e) => e.type !== 'resync')
          .map((e) => e.id),
      ),
    ],
  };
  const v = run.verdicts.live[0] as Verdict;
  const m = run.verdicts.moved;
  const why = [
    ...new Set(outcome.rejected.map((r) => r.message.replace(/.*Redis command failed \((.*)\); .*/, '$1').replace(/ script: .*/, ''))),
  ];
  options.report.push(
    `${options.name}: ${outcome.resolved.length} resolved, ${outcome.rejected.length} rejected ` +
      `(${run.verdicts.live.map((x) => x.rejectedButStored).join('/')} of those delivered anyway); ` +
      `live client: ${v.delivered} delivered, ${v.silent.length} lost silently, ${v.duplicates.length} twice, ${v.resyncs} resync ${v.reasons.join(',')}; ` +
      `moved client: ${m.delivered} delivered, ${m.silent.length} lost silently, ${m.resyncs} resync ${m.reasons.join(',')}; ` +
      `epochs ${run.epochs}; rejections: ${why.join(' | ') || 'none'}`,
  );
  return run;
}

/**
 * Resolved publishes the Redis on `port` no longer has: Redis acknowledged them and lost them. Read from the
 * fan-out stream, which keeps old epochs' entries (a new epoch empties the streams' histories, not it).
 */
export async function lostFromRedis(port: number, prefix: string, outcome: Outcome): Promise<number> {
  const kept = await fanoutIds(port, prefix);
  return outcome.resolved.filter(({ id }) => !kept.has(id)).length;
}

/**
 * Ids a client got that the Redis on `port` no longer has, resolved or not. A publish in flight when its master
 * dies can be run, fanned out and delivered, then reject ("may or may not"), and be missing from the replica
 * promoted after: no resolved publish is lost, but the sequence rolled back under the readers, which must resync.
 */
export async function vanishedFromRedis(port: number, prefix: string, run: Run): Promise<number> {
  const kept = await fanoutIds(port, prefix);
  return new Set([...run.outcome.resolved.map(({ id }) => id), ...run.seenIds].filter((id) => !kept.has(id))).size;
}

async function fanoutIds(port: number, prefix: string): Promise<Set<string>> {
  const entries = (await command(port, 'XRANGE', `{${prefix}}:fanout`, '-', '+')) as [string, string[]][];
  return new Set(entries.map(([, f]) => `${f[1]}.${f[3]}`));
}

/** What holds in every run, whatever the failover: nothing resolved is lost without a resync, nothing arrives twice or out of order. */
export function expectNoSilentLoss(run: Run): void {
  for (const verdict of [...run.verdicts.live, run.verdicts.moved]) {
    expect(verdict.silent).toEqual([]);
    expect(verdict.duplicates).toEqual([]);
    expect(verdict.outOfOrder).toEqual([]);
    expect(verdict.wrongIds).toEqual([]);
  }
  // A publish that rejected says so, and why; it may have been stored all the same ("may or may not").
  for (const { message } of run.outcome.rejected) expect(message).toMatch(/could not store the tick event/);
}

/** Every resolved publish to every client once, in order, no resync, one epoch. */
export function expectExact(run: Run): void {
  expectNoSilentLoss(run);
  for (const verdict of [...run.verdicts.live, run.verdicts.moved]) {
    expect(verdict.resyncs).toBe(0);
    expect(verdict.announced).toEqual([]);
    expect(verdict.delivered).toBeGreaterThan(0);
  }
  expect(run.epochs).toBe(1);
}

/** Lost history, told: a second epoch, and a resync for every client. */
export function expectResync(run: Run): void {
  expectNoSilentLoss(run);
  expect(run.epochs).toBe(2);
  for (const verdict of [...run.verdicts.live, run.verdicts.moved]) {
    expect(verdict.resyncs).toBeGreaterThanOrEqual(1);
    expect(verdict.reasons).toContain('foreign');
  }
}
