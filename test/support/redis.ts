/**
 * A real Redis for the tests: 127.0.0.1:6379 when one answers, else a
 * `redis-server` started here on a free port. Without either, the Redis
 * tests skip, and say so loudly.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';

import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, afterEach } from 'vitest';
import { freePort } from './helpers.js';
import { EventManager, type EventManagerOptions } from '../../src/index.js';
import { RedisBackend, type RedisBackendOptions } from '../../src/backends/redis/index.js';

/** Sends PING on a raw socket; true when a Redis answers within the timeout. */
export function ping(port: number, host = '127.0.0.1', timeoutMs = 500): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, host);
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.on('error', () => done(false));
    socket.on('connect', () => socket.write('PING\r\n'));
    socket.on('data', (chunk) => done(chunk.toString().startsWith('+PONG')));
  });
}

export const hasRedisServerBinary = spawnSync('redis-server', ['--version']).status === 0;

// Servers started here, stopped after the file's tests, and on exit whatever happens:
// a test's redis-server must never outlive the test run.
const ownedServers = new Set<{ child?: ChildProcess; dir: string }>();
afterAll(() => stopOwned());
process.once('exit', () => {
  for (const server of ownedServers) server.child?.kill('SIGKILL');
});

async function stopOwned(): Promise<void> {
  for (const server of ownedServers) {
    const child = server.child;
    if (child && child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await once(child, 'exit');
    }
    rmSync(server.dir, { recursive: true, force: true });
  }
  ownedServers.clear();
}

/** A redis-server this test owns: it can be stopped and started again on the same port and data directory. */
export interface OwnedRedis {
  port: number;
  url: string;
  /** SIGKILL: what a crash does. */
  kill(): Promise<void>;
  start(): Promise<void>;
  stop(): Promise<void>;
}

/**
 * Starts redis-server on a free port. With `persistent`, every write is
 * fsynced to an append-only file in its own directory, so a restart keeps
 * every acknowledged write; without it, a restart comes back empty.
 */
export async function startOwnedRedis(options: { persistent?: boolean } = {}): Promise<OwnedRedis> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'ssecast-redis-'));
  const args = ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--protected-mode', 'no'];
  if (options.persistent) args.push('--appendonly', 'yes', '--appendfsync', 'always');
  else args.push('--appendonly', 'no');
  const record: { child?: ChildProcess; dir: string } = { dir };
  ownedServers.add(record);
  const exited = () =>
    new Promise<void>((resolve) => {
      const child = record.child;
      if (!child || child.exitCode !== null || child.signalCode !== null) return resolve();
      child.once('exit', () => resolve());
    });
  const owned: OwnedRedis = {
    port,
    url: `redis://127.0.0.1:${port}`,
    async start() {
      record.child = spawn('redis-server', args, { stdio: 'ignore' });
      const deadline = Date.now() + 10_000;
      while (!(await ping(port))) {
        if (Date.now() > deadline) throw new Error(`redis-server did not answer on port ${port}`);
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    },
    async kill() {
      record.child?.kill('SIGKILL');
      await exited();
    },
    async stop() {
      record.child?.kill('SIGTERM');
      await exited();
    },
  };
  await owned.start();
  return owned;
}

/** The Redis the tests use, or null (with a loud warning) when there is none. */
async function findRedis(): Promise<string | null> {
  if (await ping(6379)) return 'redis://127.0.0.1:6379';
  if (hasRedisServerBinary) return (await startOwnedRedis()).url;
  console.warn(
    '\n*** SKIPPING REDIS TESTS: nothing answers on 127.0.0.1:6379 and redis-server is not installed. ' +
      'Install it (Debian: apt-get install redis-server); .ci/run does. ***\n',
  );
  return null;
}

export const REDIS_URL = await findRedis();

let shared: Redis | undefined;
let counter = 0;
/** Prefixes of the running test: their keys are deleted after it. */
const prefixes: string[] = [];

/** One ioredis client per test file; backends duplicate their own connections from it. */
export function sharedClient(url = REDIS_URL as string): Redis {
  shared ??= new Redis(url, { lazyConnect: true });
  return shared;
}

// Registered when this module loads, so before a test file's own afterEach:
// vitest runs after-hooks in reverse, so hubs are closed before their keys go.
// The Redis on :6379 is shared with everything else on the machine; leave it as found.
afterEach(async () => {
  if (!shared || prefixes.length === 0) return;
  for (const prefix of prefixes.splice(0)) {
    const keys = await shared.keys(`{${prefix}}:*`);
    if (keys.length) await shared.del(...keys);
  }
});
afterAll(() => {
  shared?.disconnect();
  shared = undefined;
});

/** A prefix no other test (or test process) uses. */
export function uniquePrefix(): string {
  const prefix = `ssecast-test-${process.pid}-${++counter}-${Math.random().toString(36).slice(2, 8)}`;
  prefixes.push(prefix);
  return prefix;
}

/** A Redis backend with the bounds a hub's options ask for (the options the memory backend reads). */
export function redisBackend(hubOptions: EventManagerOptions = {}, extra: Partial<RedisBackendOptions> = {}): RedisBackend {
  return new RedisBackend({
    redis: sharedClient(),
    prefix: uniquePrefix(),
    ...(hubOptions.historySize !== undefined ? { historySize: hubOptions.historySize } : {}),
    ...(hubOptions.maxStreams !== undefined ? { maxStreams: hubOptions.maxStreams } : {}),
    ...(hubOptions.maxKeysPerStream !== undefined ? { maxKeysPerStream: hubOptions.maxKeysPerStream } : {}),
    ...(hubOptions.streamIdleTtlMs !== undefined ? { streamIdleTtlMs: hubOptions.streamIdleTtlMs } : {}),
    ...extra,
  });
}

/** The backends the behaviour suites run against. Redis is left out (loudly) when there is no server. */
export const BACKENDS: { name: string; hub<E extends Record<string, unknown>>(options?: EventManagerOptions): EventManager<E> }[] = [
  { name: 'memory', hub: <E extends Record<string, unknown>>(options: EventManagerOptions = {}) => new EventManager<E>(options) },
  ...(REDIS_URL
    ? [
        {
          name: 'redis',
          hub: <E extends Record<string, unknown>>(options: EventManagerOptions = {}) =>
            new EventManager<E>({ ...options, backend: redisBackend(options) }),
        },
      ]
    : []),
];
