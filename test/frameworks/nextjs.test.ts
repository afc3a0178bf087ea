// A Next.js app-router route handler on createFetchHandler, built with `next build` and run with
// `next start`, as a deployment would: test/fixtures/next-app, with ssecast from the package's dist.
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { cleanupAfterEach, freePort, openStream, waitUntil, waitUntilAsync } from '../support/helpers.js';
import { dropProxy } from '../support/proxy.js';
import { type Client, connect } from './recipe-cases.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
const fixture = path.join(root, 'test/fixtures/next-app');
const nextBin = createRequire(import.meta.url).resolve('next/dist/bin/next');
const env = { ...process.env, NEXT_TELEMETRY_DISABLED: '1' };

function filesUnder(dir: string): string[] {
  return fs
    .readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isFile())
    .map((entry) => path.join(entry.parentPath, entry.name))
    .sort();
}

/**
 * The build directory, keyed by everything the build reads (the fixture, ssecast's dist and
 * exports, Next's version), so a second run (CI's Node 24 pass after Node 20) reuses it.
 * Not under node_modules/.cache: Next compiles nothing under a node_modules path, so TypeScript
 * there fails to parse. test-artifacts/ is git-ignored and outside tsc's include.
 */
function buildDir(): string {
  const hash = createHash('sha256');
  hash.update(JSON.parse(fs.readFileSync(path.join(path.dirname(nextBin), '../../package.json'), 'utf8')).version);
  hash.update(JSON.stringify(JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')).exports));
  for (const file of [...filesUnder(fixture), ...filesUnder(path.join(root, 'dist'))]) {
    hash.update(path.relative(root, file));
    hash.update(fs.readFileSync(file));
  }
  return path.join(root, 'test-artifacts/next-app', hash.digest('hex').slice(0, 16));
}

/** Copies the fixture (Next writes tsconfig.json and next-env.d.ts into its app) and builds it once. */
function build(): { dir: string; cached: boolean } {
  const dir = buildDir();
  const done = path.join(dir, '.built');
  if (fs.existsSync(done)) return { dir, cached: true };
  fs.rmSync(dir, { recursive: true, force: true });
  fs.cpSync(fixture, dir, { recursive: true });
  // The app imports `ssecast` as a user's would: a package in its node_modules, here the built dist.
  const pkg = path.join(dir, 'node_modules/ssecast');
  fs.mkdirSync(pkg, { recursive: true });
  fs.cpSync(path.join(root, 'dist'), path.join(pkg, 'dist'), { recursive: true });
  fs.copyFileSync(path.join(root, 'package.json'), path.join(pkg, 'package.json'));
  fs.writeFileSync(path.join(dir, 'package.json'), '{ "private": true, "type": "module" }\n');
  execFileSync(process.execPath, [nextBin, 'build'], { cwd: dir, env, stdio: 'pipe', timeout: 230_000 });
  fs.writeFileSync(done, '');
  // One build kept: each dist or fixture change would otherwise leave 30 MB behind.
  for (const other of fs.readdirSync(path.dirname(dir)))
    if (other !== path.basename(dir)) fs.rmSync(path.join(path.dirname(dir), other), { recursive: true, force: true });
  return { dir, cached: false };
}

interface NextServer {
  /** Through a proxy whose sockets the test can drop. */
  url: string;
  /** Next itself, for the control routes. */
  direct: string;
  process: ChildProcess;
  output: () => string;
  dropConnections(): void;
  close(): Promise<void>;
}

async function start(dir: string): Promise<NextServer> {
  const port = await freePort();
  // In the test's process group (`next start` is the server itself, it forks nothing), so a
  // Ctrl-C or a SIGTERM to the run reaches it too and leaves no server listening.
  const child = spawn(process.execPath, [nextBin, 'start', '-p', String(port), '-H', '127.0.0.1'], { cwd: dir, env });
  let output = '';
  child.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const kill = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGKILL');
    await exited;
  };

  const proxy = await dropProxy(port);
  const server: NextServer = {
    url: proxy.url,
    direct: `http://127.0.0.1:${port}`,
    process: child,
    output: () => output,
    dropConnections: proxy.dropConnections,
    close: async () => {
      await proxy.close();
      await kill();
    },
  };
  try {
    await waitUntilAsync(
      async () => {
        if (child.exitCode !== null) throw new Error(`next start exited:\n${output}`);
        return (await fetch(`${server.direct}/api/stats`).catch(() => undefined))?.ok === true;
      },
      60_000,
      'next start to answer',
    );
  } catch (error) {
    await server.close();
    throw error;
  }
  return server;
}

interface Stats {
  connections: number;
}

describe('docs/nextjs.md', () => {
  it('shows the fixture’s hub and stream route verbatim', () => {
    const doc = fs.readFileSync(path.join(root, 'docs/nextjs.md'), 'utf8');
    for (const file of ['lib/hub.ts', 'app/api/events/route.ts'])
      expect(doc, file).toContain(`\`${file}\`:\n\n\`\`\`ts\n${fs.readFileSync(path.join(fixture, file), 'utf8')}\`\`\``);
  });
});

describe('Next.js 16 app router (test/fixtures/next-app, next build + next start)', () => {
  let next: NextServer;

  beforeAll(async () => {
    const { dir } = build();
    next = await start(dir);
  }, 240_000);
  afterAll(async () => next?.close(), 30_000);

  // One server for every test: each must leave no connection behind. Registered before the cleanups,
  // so it runs after them (vitest runs after-hooks last-registered first).
  afterEach(async () => {
    await waitConnections(0, 'no connection left');
  });
  const cleanups = cleanupAfterEach();

  const connections = async () => ((await (await fetch(`${next.direct}/api/stats`)).json()) as Stats).connections;
  const waitConnections = (n: number, what: string) => waitUntilAsync(async () => (await connections()) === n, 15_000, what);
  async function publish(stream: string, n: number): Promise<string> {
    const response = await fetch(`${next.direct}/api/publish`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ stream, data: { n } }),
    });
    expect(response.status).toBe(200);
    return ((await response.json()) as { id: string }).id;
  }

  function open(url: string, token: string | undefined): Client {
    const client = connect(url, token);
    cleanups.push(() => client.source.close());
    return client;
  }

  it('serves the library’s stream: text/event-stream, retry first, not buffered or compressed by Next', async () => {
    const raw = await openStream(`${next.url}/api/events?agent_id=agent-1`, {
      authorization: 'Bearer token-ada',
      'accept-encoding': 'gzip, deflate, br',
    });
    cleanups.push(() => raw.close());
    expect(raw.status).toBe(200);
    expect(raw.headers.get('content-type')).toBe('text/event-stream; charset=utf-8');
    expect(raw.headers.get('cache-control')).toBe('no-cache, no-transform');
    expect(raw.headers.get('x-accel-buffering')).toBe('no');
    expect(raw.headers.get('content-encoding')).toBeNull();
    await raw.waitFor((c) => c.raw.length > 0, 15_000, 'the first bytes');
    expect(raw.raw).toMatch(/^retry: \d+\n\n/);
    await waitConnections(1, 'the stream to register');
    for (let n = 1; n <= 5; n++) {
      const id = await publish('agent-1', n);
      // Tiny events: any buffer (Next's, a compressor's) would hold them back.
      await raw.waitFor((c) => c.events.at(-1)?.id === id, 15_000, `event ${n}`);
    }
    expect(raw.events.map((e) => e.data)).toEqual([1, 2, 3, 4, 5].map((n) => `{"n":${n}}`));
  });

  it('replays what a client missed from Last-Event-ID, then goes live', async () => {
    const a = await publish('agent-2', 1);
    const b = await publish('agent-2', 2);
    const c = await publish('agent-1', 3);
    const raw = await openStream(`${next.url}/api/events?agent_id=agent-1&agent_id=agent-2`, {
      authorization: 'Bearer token-ada',
      'last-event-id': a,
    });
    cleanups.push(() => raw.close());
    await raw.waitFor((s) => s.events.length >= 2, 15_000, 'the replay');
    const d = await publish('agent-2', 4);
    await raw.waitFor((s) => s.events.length >= 3, 15_000, 'a live event');
    expect(raw.events.map((e) => e.id)).toEqual([b, c, d]);
  });

  it('an EventSource resumes exactly across a dropped connection: Last-Event-ID, no loss, no duplicates', async () => {
    const client = open(`${next.url}/api/events?agent_id=agent-1`, 'token-ada');
    await waitConnections(1, 'the EventSource to open');
    await waitUntil(() => client.opens === 1, 15_000, 'the open event');
    // A fresh connection first replays the stream's recent events (the hub's replay: 10), the earlier tests' here.
    const a = await publish('agent-1', 1);
    await waitUntil(() => client.messages.at(-1)?.id === a, 15_000, 'the first event');
    const replayed = client.messages.length - 1;
    next.dropConnections();
    await waitUntil(() => client.errors.length >= 1, 15_000, 'the client to see the drop');
    await waitConnections(0, 'Next to let the dropped connection go');
    const b = await publish('agent-1', 2);
    const c = await publish('agent-1', 3);
    // The server's retry: hint (3 s) paces the reconnection.
    await waitUntil(() => client.opens === 2 && client.messages.length >= replayed + 3, 20_000, 'the reconnection and the missed events');
    const d = await publish('agent-1', 4);
    await waitUntil(() => client.messages.length >= replayed + 4, 15_000, 'a live event');
    const after = client.messages.slice(replayed);
    expect(after.map((m) => m.id)).toEqual([a, b, c, d]);
    expect(after.map((m) => m.data)).toEqual([1, 2, 3, 4].map((n) => `{"n":${n}}`));
    expect(client.responses.map((response) => response.status)).toEqual([200, 200]);
  });

  it('answers 401 from authorize without a token (the EventSource gives up), 403 for another user’s stream', async () => {
    const answer = await openStream(`${next.url}/api/events?agent_id=agent-1`);
    expect(answer.status).toBe(401);
    expect(answer.headers.get('content-type')).toMatch(/^application\/json/);
    expect(JSON.parse(answer.body)).toMatchObject({ error: 'unauthorized' });
    const client = open(`${next.url}/api/events?agent_id=agent-1`, undefined);
    await waitUntil(() => client.errors.length === 1, 15_000, 'the error event');
    expect(client.errors[0]?.code).toBe(401);
    expect(client.source.readyState).toBe(client.source.CLOSED);
    expect(client.responses.map((response) => response.status)).toEqual([401]);

    const forbidden = await openStream(`${next.url}/api/events?agent_id=agent-3`, { authorization: 'Bearer token-ada' });
    expect(forbidden.status).toBe(403);
    expect(JSON.parse(forbidden.body)).toEqual({ error: 'forbidden', message: 'not allowed to read stream "agent-3"' });
    expect(await connections()).toBe(0);
  });

  it('lets the connection go when the client leaves (request.signal aborts under next start)', async () => {
    const raw = await openStream(`${next.direct}/api/events?agent_id=agent-1`, { authorization: 'Bearer token-ada' });
    await raw.waitFor((c) => c.raw.length > 0, 15_000, 'the first bytes');
    const bob = await openStream(`${next.direct}/api/events?agent_id=agent-3`, { authorization: 'Bearer token-bob' });
    await bob.waitFor((c) => c.raw.length > 0, 15_000, 'the first bytes');
    await waitConnections(2, 'both streams to register');
    raw.close();
    await waitConnections(1, 'the first stream to be cleaned up');
    bob.close();
    await waitConnections(0, 'the second stream to be cleaned up');
  });
});
