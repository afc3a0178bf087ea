// ssecast/fetch on the real Bun and Deno (the npm packages' binaries, installed by npm ci):
// test/fixtures/runtime/server.mjs serves the built package with Bun.serve or Deno.serve, and
// Node is the client, on the wire. The transport-independent cases of conformance.test.ts,
// plus what each runtime does differently, plus ssecast/client running inside each runtime.
import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { EventSource } from 'eventsource';
import { afterAll, describe, expect, it } from 'vitest';
import { cleanupAfterEach, openStream, sleep, waitUntil, waitUntilAsync } from '../support/helpers.js';
import { dropProxy } from '../support/proxy.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
const fixture = (name: string) => path.join(root, 'test/fixtures/runtime', name);
const denoDir = fs.mkdtempSync(path.join(os.tmpdir(), 'ssecast-deno-'));
afterAll(() => fs.rmSync(denoDir, { recursive: true, force: true }));

interface Runtime {
  name: 'Bun' | 'Deno';
  bin: string;
  args(file: string, flags?: string[]): string[];
  env: Record<string, string>;
}

const RUNTIMES: Runtime[] = [
  { name: 'Bun', bin: path.join(root, 'node_modules/bun/bin/bun.exe'), args: (file) => [file], env: {} },
  {
    name: 'Deno',
    bin: path.join(root, 'node_modules/deno/deno'),
    // No network, no lock file, no config: the fixture imports dist/ by path.
    args: (file, flags = []) => [
      'run',
      ...flags,
      '--no-remote',
      '--no-lock',
      '--no-config',
      '--allow-net=127.0.0.1',
      '--allow-read',
      '--allow-env',
      file,
    ],
    env: { DENO_DIR: denoDir, NO_COLOR: '1' },
  },
];
const missing = RUNTIMES.filter((runtime) => !fs.existsSync(runtime.bin));
for (const runtime of missing)
  console.warn(`\n*** SKIPPING the ${runtime.name} tests: ${runtime.bin} is missing (npm ci installs it) ***\n`);

const cleanups = cleanupAfterEach();

interface Spawned {
  child: ChildProcess;
  output(): string;
  kill(): Promise<void>;
}

function run(runtime: Runtime, file: string, env: Record<string, string>, flags: string[] = []): Spawned {
  const child = spawn(runtime.bin, runtime.args(file, flags), {
    env: { ...process.env, ...runtime.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const spawned: Spawned = {
    child,
    output: () => output,
    kill: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
    },
  };
  cleanups.push(() => spawned.kill());
  return spawned;
}

interface Published {
  stream: string;
  n: number;
  id: string;
}

interface RuntimeServer extends Spawned {
  url: string;
  publish(stream: string, from: number, to: number): Promise<Published[]>;
  publishMany(events: { stream: string; data: unknown }[]): Promise<string[]>;
  connections(): Promise<number>;
  stats(): Promise<Record<string, number>>;
}

async function serve(
  runtime: Runtime,
  options: { hub?: object; handler?: object; auth?: boolean; flags?: string[]; bunIdleTimeout?: number } = {},
): Promise<RuntimeServer> {
  const spawned = run(
    runtime,
    fixture('server.mjs'),
    {
      SSECAST_HUB: JSON.stringify(options.hub ?? {}),
      SSECAST_HANDLER: JSON.stringify(options.handler ?? {}),
      SSECAST_AUTH: options.auth ? '1' : '0',
      ...(options.bunIdleTimeout ? { SSECAST_BUN_IDLE_TIMEOUT: String(options.bunIdleTimeout) } : {}),
    },
    options.flags,
  );
  await waitUntil(
    () => {
      if (spawned.child.exitCode !== null) throw new Error(`${runtime.name} exited:\n${spawned.output()}`);
      return /PORT \d+/.test(spawned.output());
    },
    15_000,
    `${runtime.name} to listen`,
  );
  const url = `http://127.0.0.1:${/PORT (\d+)/.exec(spawned.output())?.[1]}`;
  const publishMany = async (events: { stream: string; data: unknown }[]) => {
    const response = await fetch(`${url}/publish`, {
      method: 'POST',
      body: JSON.stringify({ events: events.map((e) => ({ ...e, type: 'tick' })) }),
    });
    expect(response.status).toBe(200);
    return ((await response.json()) as { ids: string[] }).ids;
  };
  const stats = async () => (await (await fetch(`${url}/stats`)).json()) as Record<string, number>;
  return {
    ...spawned,
    url,
    publishMany,
    publish: async (stream, from, to) => {
      const ns = Array.from({ length: to - from }, (_, i) => from + i);
      const ids = await publishMany(ns.map((n) => ({ stream, data: { n } })));
      return ns.map((n, i) => ({ stream, n, id: ids[i] as string }));
    },
    stats,
    connections: async () => (await stats()).connections as number,
  };
}

const until = (condition: () => Promise<boolean>, what: string) => waitUntilAsync(condition, 10_000, what);

const ns = (events: { data: string }[]) => events.map((e) => (JSON.parse(e.data) as { n: number }).n);
const range = (from: number, to: number) => Array.from({ length: to - from }, (_, i) => from + i);

/** A client that sends the request and then reads nothing: the socket's buffers fill up. */
function stalledReader(url: string): { socket: net.Socket; ended: Promise<'reset' | 'fin'> } {
  const { hostname, port, pathname, search } = new URL(url);
  const socket = net.connect(Number(port), hostname);
  const ended = new Promise<'reset' | 'fin'>((resolve) => {
    socket.on('error', () => resolve('reset'));
    socket.on('end', () => resolve('fin'));
  });
  socket.write(`GET ${pathname}${search} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n`);
  socket.pause();
  return { socket, ended };
}

describe.skipIf(missing.length === RUNTIMES.length).each(RUNTIMES.filter((r) => !missing.includes(r)))(
  'ssecast/fetch on $name',
  (runtime) => {
    it('answers 200 with the SSE headers, retry first, typed events; 401 without credentials', async () => {
      const server = await serve(runtime, { auth: true });
      const refused = await openStream(`${server.url}/events?stream=a`);
      expect(refused.status).toBe(401);
      expect(JSON.parse(refused.body)).toMatchObject({ error: 'unauthorized' });

      const client = await openStream(`${server.url}/events?stream=a`, { authorization: 'Bearer secret' });
      cleanups.push(() => client.close());
      expect(client.status).toBe(200);
      expect(client.headers.get('content-type')).toBe('text/event-stream; charset=utf-8');
      expect(client.headers.get('cache-control')).toBe('no-cache, no-transform');
      await until(async () => (await server.connections()) === 1, 'the connection');
      const [event] = await server.publish('a', 0, 1);
      await client.waitFor((c) => c.events.length === 1, 10_000, 'the event');
      expect(client.raw).toBe(`retry: 3000\n\nid: ${event?.id}\nevent: tick\ndata: {"n":0}\n\n`);
      // The token query parameter is the fixture's other credential (EventSource sends no headers).
      const byToken = await openStream(`${server.url}/events?stream=a&token=secret`);
      cleanups.push(() => byToken.close());
      expect(byToken.status).toBe(200);
      const single = await fetch(`${server.url}/publish`, {
        method: 'POST',
        body: JSON.stringify({ stream: 'a', type: 'note', data: 'hi' }),
      });
      const [id] = ((await single.json()) as { ids: string[] }).ids;
      await byToken.waitFor((c) => c.events.length === 2, 10_000, 'the replay and the event, by token');
      expect(byToken.events).toEqual([
        { event: 'tick', id: event?.id, data: '{"n":0}' },
        { event: 'note', id, data: 'hi' },
      ]);
      expect((await server.stats()).rejected).toBe(1);
    });

    it('replays the last 10 to a fresh connection, resumes one stream exactly from Last-Event-ID or lastEventId', async () => {
      const server = await serve(runtime);
      const published = await server.publish('a', 0, 30);
      const fresh = await openStream(`${server.url}/events?stream=a`);
      cleanups.push(() => fresh.close());
      await fresh.waitFor((c) => c.events.length === 10, 10_000, 'the replay');
      const [live] = await server.publish('a', 30, 31);
      await fresh.waitFor((c) => c.events.length === 11, 10_000, 'a live event');
      expect(ns(fresh.events)).toEqual(range(20, 31));

      const resumed = await openStream(`${server.url}/events?stream=a`, { 'last-event-id': published[11]?.id as string });
      cleanups.push(() => resumed.close());
      await resumed.waitFor((c) => c.events.length === 19, 10_000, 'the resume');
      expect(resumed.events.map((e) => e.id)).toEqual([...published.slice(12), live].map((p) => p?.id));

      const byQuery = await openStream(`${server.url}/events?stream=a&lastEventId=${published[27]?.id}`);
      cleanups.push(() => byQuery.close());
      await byQuery.waitFor((c) => c.events.length === 3, 10_000, 'the resume by query');
      expect(ns(byQuery.events)).toEqual([28, 29, 30]);
    });

    it('resumes several streams from one id in the global order, and answers a foreign id with resync then the replay', async () => {
      const server = await serve(runtime, { hub: { replay: 3 } });
      const published: Published[] = [];
      for (let n = 0; n < 20; n++) published.push(...(await server.publish(['a', 'b', 'c'][n % 3] as string, n, n + 1)));
      const client = await openStream(`${server.url}/events?stream=a&stream=b`, { 'last-event-id': published[7]?.id as string });
      cleanups.push(() => client.close());
      const expected = published.filter((p) => p.n > 7 && p.stream !== 'c');
      await client.waitFor((c) => c.events.length === expected.length, 10_000, 'the resume');
      expect(client.events.map((e) => e.id)).toEqual(expected.map((p) => p.id));

      const foreign = await openStream(`${server.url}/events?stream=a`, { 'last-event-id': 'zzzzzz.3' });
      cleanups.push(() => foreign.close());
      await foreign.waitFor((c) => c.events.length === 4, 10_000, 'resync and the replay');
      const [resync, ...rest] = foreign.events;
      const onA = published.filter((p) => p.stream === 'a');
      // The resync moves the cursor to where the replay was read: the hub's newest event.
      expect(resync).toEqual({
        event: 'resync',
        id: published.at(-1)?.id,
        data: JSON.stringify({ reason: 'foreign', lastEventId: 'zzzzzz.3' }),
      });
      expect(rest.map((e) => e.id)).toEqual(onA.slice(-3).map((p) => p.id));
      expect((await server.stats()).resyncs).toBe(1);
    });

    it('answers an id older than the retained history with resync expired, then the replay', async () => {
      const server = await serve(runtime, { hub: { historySize: 5, replay: 3 } });
      const published = await server.publish('a', 0, 12);
      const epoch = published[0]?.id.split('.')[0] as string;
      const lastEventId = `${epoch}.2`;
      const client = await openStream(`${server.url}/events?stream=a`, { 'last-event-id': lastEventId });
      cleanups.push(() => client.close());
      await client.waitFor((c) => c.events.length === 4, 10_000, 'resync and the replay');
      const [resync, ...rest] = client.events;
      expect(resync).toEqual({
        event: 'resync',
        id: published.at(-1)?.id,
        data: JSON.stringify({ reason: 'expired', lastEventId }),
      });
      expect(ns(rest)).toEqual([9, 10, 11]);
    });

    it('delivers a burst of 5,000 events complete and in order', async () => {
      const server = await serve(runtime);
      const client = await openStream(`${server.url}/events?stream=a`);
      cleanups.push(() => client.close());
      await until(async () => (await server.connections()) === 1, 'the connection');
      for (let from = 0; from < 5000; from += 1000) await server.publish('a', from, from + 1000);
      await client.waitFor((c) => c.events.length === 5000, 15_000, '5,000 events');
      expect(ns(client.events)).toEqual(range(0, 5000));
      expect((await server.stats()).dropped).toBe(0);
    });

    it('loses and duplicates nothing when an EventSource reconnects across dropped connections while publishing goes on', async () => {
      const server = await serve(runtime, { hub: { historySize: 2000 }, handler: { retryMs: 10 } });
      const proxy = await dropProxy(Number(new URL(server.url).port));
      cleanups.push(() => proxy.close());
      const source = new EventSource(`${proxy.url}/events?stream=a&stream=b`);
      cleanups.push(() => source.close());
      const received: number[] = [];
      source.addEventListener('tick', (message) => received.push((JSON.parse(message.data) as { n: number }).n));
      await new Promise((resolve) => source.addEventListener('open', resolve, { once: true }));
      let drops = 0;
      for (let from = 0; from < 1000; from += 50) {
        await server.publishMany(range(from, from + 50).map((n) => ({ stream: n % 2 ? 'a' : 'b', data: { n } })));
        // Not before the client has an id: a fresh connection gets the replay (10 per stream), not everything.
        if (from === 0) await waitUntil(() => received.length === 50, 10_000, 'the first events');
        if (from % 200 === 150) {
          proxy.dropConnections();
          drops++;
        }
        await sleep(10);
      }
      await waitUntil(() => received.length >= 1000, 15_000, 'all 1,000 events');
      await sleep(100);
      expect(drops).toBe(5);
      expect(source.readyState).toBe(source.OPEN);
      expect(received).toEqual(range(0, 1000));
      expect((await server.stats()).resyncs).toBe(0);
    });

    it('sends :heartbeat to an idle connection', async () => {
      const server = await serve(runtime, { handler: { heartbeatMs: 100 } });
      const client = await openStream(`${server.url}/events?stream=a`);
      cleanups.push(() => client.close());
      await client.waitFor((c) => c.comments.length >= 3, 10_000, 'three heartbeats');
      expect(client.comments.slice(0, 3)).toEqual(['heartbeat', 'heartbeat', 'heartbeat']);
      expect(client.events).toEqual([]);
    });

    it('gives the slot back when the client leaves, and ends open streams when the hub closes', async () => {
      const server = await serve(runtime);
      const leaving = await openStream(`${server.url}/events?stream=a`);
      const staying = await openStream(`${server.url}/events?stream=a`);
      cleanups.push(
        () => leaving.close(),
        () => staying.close(),
      );
      await until(async () => (await server.connections()) === 2, 'two connections');
      leaving.close();
      await until(async () => (await server.connections()) === 1, 'the left connection to go');
      await server.publish('a', 0, 1);
      await staying.waitFor((c) => c.events.length === 1, 10_000, 'the event');
      expect((await fetch(`${server.url}/close`, { method: 'POST' })).status).toBe(200);
      await staying.ended;
      expect(await server.connections()).toBe(0);
      const after = await openStream(`${server.url}/events?stream=a`);
      expect(after.status).toBe(503);
    });

    it('forgets clients that leave while authorize is pending and frees their slots; a throwing authorize gets 500', async () => {
      const server = await serve(runtime, { auth: true, handler: { maxConnections: 2 } });
      const down = await openStream(`${server.url}/events?stream=a&token=throw`);
      expect(down.status).toBe(500);
      expect(JSON.parse(down.body)).toMatchObject({ error: 'internal_error' });
      // More clients than slots, each waiting on an auth service that never answers, then leaving.
      const waiting = await Promise.all(
        [1, 2, 3, 4].map(async () => {
          const controller = new AbortController();
          const response = fetch(`${server.url}/events?stream=a&token=hang`, { signal: controller.signal }).then(
            (r) => `status ${r.status}`,
            (error: Error) => error.name,
          );
          await sleep(300);
          controller.abort();
          return response;
        }),
      );
      expect(waiting).toEqual(['AbortError', 'AbortError', 'AbortError', 'AbortError']);
      // Both slots are free: two clients get in, a third is over maxConnections.
      const first = await openStream(`${server.url}/events?stream=a&token=secret`);
      const second = await openStream(`${server.url}/events?stream=a&token=secret`);
      cleanups.push(
        () => first.close(),
        () => second.close(),
      );
      expect([first.status, second.status]).toEqual([200, 200]);
      await until(async () => (await server.connections()) === 2, 'two connections');
      const third = await openStream(`${server.url}/events?stream=a&token=secret`);
      expect(third.status).toBe(503);
      const stats = await server.stats();
      // The throw and the 503 were refused; the clients that left were refused by nobody.
      expect([stats.rejected, stats.hookErrors]).toEqual([2, 1]);
      await waitUntil(() => server.output().includes('the auth service is down'), 10_000, 'the hook error in the log');
    });

    it('gzips with compress: true and flushes each event as it is published', async () => {
      const server = await serve(runtime, { handler: { compress: true } });
      // Node's fetch decompresses; the header says the runtime had node:zlib.
      const client = await openStream(`${server.url}/events?stream=a`, { 'accept-encoding': 'gzip' });
      cleanups.push(() => client.close());
      expect(client.headers.get('content-encoding')).toBe('gzip');
      await until(async () => (await server.connections()) === 1, 'the connection');
      for (let n = 0; n < 3; n++) {
        await server.publish('a', n, n + 1);
        await client.waitFor((c) => c.events.length === n + 1, 10_000, `event ${n} through gzip`);
      }
      expect(ns(client.events)).toEqual([0, 1, 2]);
    });

    // What the runtime does with the body ssecast errors to cut a slow client off differs:
    // Bun resets the connection or closes it, Deno closes it without the last chunk. Both log the error.
    it(`cuts off a client that never reads while another keeps everything (${runtime.name === 'Bun' ? 'Bun then resets the socket or closes it' : 'Deno then closes the socket'} without the final chunk)`, async () => {
      const server = await serve(runtime, { hub: { maxEventBytes: 16_384 }, handler: { maxUnsentBytes: 100_000 } });
      const reader = await openStream(`${server.url}/events?stream=a`);
      cleanups.push(() => reader.close());
      const stalled = stalledReader(`${server.url}/events?stream=a`);
      cleanups.push(() => stalled.socket.destroy());
      await until(async () => (await server.connections()) === 2, 'two connections');
      const big = 'x'.repeat(10_000);
      // 6 MB: far more than the stalled client's socket buffers and its 100 KB allowance.
      for (let from = 0; from < 600; from += 10)
        await server.publishMany(range(from, from + 10).map((n) => ({ stream: 'a', data: { n, big } })));
      await reader.waitFor((c) => c.events.length === 600, 20_000, 'every event at the reader');
      expect(ns(reader.events)).toEqual(range(0, 600));
      await until(async () => (await server.stats()).dropped === 1, 'the stalled client to be cut off');
      expect(await server.connections()).toBe(1);
      let tail = '';
      stalled.socket.on('data', (chunk: Buffer) => (tail = (tail + chunk.toString('latin1')).slice(-64)));
      stalled.socket.resume();
      const how = await stalled.ended;
      // Never a clean end (the final zero-length chunk): the client can tell it was cut off.
      // Deno sends the chunks it had taken, whole, then closes (FIN). Bun resets (RST) or closes,
      // from run to run, and may stop in the middle of a chunk: an SSE parser drops the partial
      // event at the end, and the client resumes from the last id it saw.
      if (runtime.name === 'Deno') {
        expect(how).toBe('fin');
        expect(tail.endsWith('}\n\n\r\n')).toBe(true);
      }
      if (how === 'fin') expect(tail.endsWith('\r\n0\r\n\r\n')).toBe(false);
      // The runtime logs the body's error on its stderr, once per cut.
      await waitUntil(() => /ssecast: stream aborted \(slow consumer or server error\)/.test(server.output()), 10_000, 'the log line');
    });

    it('runs ssecast/client inside the runtime: a 401 closes it for good, and its loop throws the error', async () => {
      const server = await serve(runtime, { auth: true });
      const client = run(runtime, fixture('client.mjs'), { SSECAST_URL: `${server.url}/events?stream=a`, SSECAST_TOKEN: 'wrong' });
      const code = await new Promise((resolve) => client.child.once('exit', resolve));
      const lines = client
        .output()
        .split('\n')
        .filter((line) => line.startsWith('{'))
        .map((line) => JSON.parse(line));
      // onError hears it first, then the status, then the loop's catch.
      expect(lines).toContainEqual({ status: 'closed', error: 'ERR_HTTP_STATUS' });
      expect(lines.at(-1)).toEqual({ closed: 'ERR_HTTP_STATUS', status: 401 });
      expect(code).toBe(0);
    });

    it('runs ssecast/client inside the runtime: it resumes across a dropped connection with exactly the missed events', async () => {
      const server = await serve(runtime, { auth: true, handler: { retryMs: 50 } });
      const proxy = await dropProxy(Number(new URL(server.url).port));
      cleanups.push(() => proxy.close());
      const client = run(runtime, fixture('client.mjs'), { SSECAST_URL: `${proxy.url}/events?stream=a` });
      const lines = () =>
        client
          .output()
          .split('\n')
          .filter((line) => line.startsWith('{'))
          .map((line) => JSON.parse(line) as { status?: string; id?: string; data?: { n: number } });
      const events = () => lines().filter((line) => line.id);
      await waitUntil(() => lines().some((line) => line.status === 'open'), 15_000, `the client in ${runtime.name} to open`);
      const first = await server.publish('a', 0, 2);
      await waitUntil(() => events().length === 2, 10_000, 'the first two events');
      proxy.dropConnections();
      const missed = await server.publish('a', 2, 5);
      await waitUntil(() => lines().filter((line) => line.status === 'open').length === 2, 15_000, 'the reconnection');
      const live = await server.publish('a', 5, 6);
      await waitUntil(() => events().length >= 6, 10_000, 'the missed and live events');
      await sleep(100);
      expect(events().map((e) => e.id)).toEqual([...first, ...missed, ...live].map((p) => p.id));
      expect(events().map((e) => e.data?.n)).toEqual(range(0, 6));
      expect(
        lines()
          .map((line) => line.status)
          .filter(Boolean),
      ).toEqual(['open', 'reconnecting', 'open']);
    });
  },
);

const deno = RUNTIMES.find((runtime) => runtime.name === 'Deno') as Runtime;
const bun = RUNTIMES.find((runtime) => runtime.name === 'Bun') as Runtime;
describe.skipIf(missing.includes(deno))('Deno.serve and request.signal', () => {
  const LEGACY = /request\.signal aborts on successful responses \(legacy behavior\)/;

  it.each([
    ['by default, Deno warns once that request.signal aborts on successful responses (legacy behaviour)', [], true],
    ['with --unstable-no-legacy-abort, the signal aborts only when the client leaves; no warning', ['--unstable-no-legacy-abort'], false],
  ] as const)('%s; either way a client that leaves gives its slot back', async (_what, flags, warns) => {
    const server = await serve(deno, { flags: [...flags] });
    for (let round = 0; round < 2; round++) {
      const client = await openStream(`${server.url}/events?stream=a`);
      cleanups.push(() => client.close());
      await until(async () => (await server.connections()) === 1, 'the connection');
      client.close();
      await until(async () => (await server.connections()) === 0, 'the slot back');
    }
    if (warns) await waitUntil(() => LEGACY.test(server.output()), 10_000, 'the warning');
    else {
      await sleep(200);
      expect(server.output()).not.toMatch(LEGACY);
    }
    // Once per process, not once per request.
    expect(server.output().split('(legacy behavior)').length - 1).toBe(warns ? 1 : 0);
  });
});

/**
 * Whether process `pid` still holds the server side of our loopback connection from
 * `clientPort`: a socket it has closed is either gone or the kernel's orphan (inode 0), still
 * flushing into a client that does not read, but no longer the process's memory. Linux only.
 */
function serverHolds(pid: number | undefined, serverPort: number, clientPort: number): boolean {
  const hex = (port: number) => `0100007F:${port.toString(16).toUpperCase().padStart(4, '0')}`;
  const line = fs
    .readFileSync('/proc/net/tcp', 'utf8')
    .split('\n')
    .map((row) => row.trim().split(/\s+/))
    .find(([, local, remote]) => local === hex(serverPort) && remote === hex(clientPort));
  const inode = line?.[9];
  if (!inode || inode === '0') return false;
  return fs.readdirSync(`/proc/${pid}/fd`).some((fd) => {
    try {
      return fs.readlinkSync(`/proc/${pid}/fd/${fd}`) === `socket:[${inode}]`;
    } catch {
      return false;
    }
  });
}

// A client cut off for not reading: ssecast frees its slot at once, but the runtime keeps the
// socket, and what it had already taken from the body, until the socket drains or times out.
describe.skipIf(missing.length > 0 || process.platform !== 'linux')('the socket of a client cut off for not reading', () => {
  async function cutOff(runtime: Runtime, options: Parameters<typeof serve>[1]) {
    const server = await serve(runtime, {
      ...options,
      hub: { maxEventBytes: 16_384, ...options?.hub },
      handler: { maxUnsentBytes: 100_000 },
    });
    const reader = await openStream(`${server.url}/events?stream=a`);
    cleanups.push(() => reader.close());
    const stalled = stalledReader(`${server.url}/events?stream=a`);
    cleanups.push(() => stalled.socket.destroy());
    await until(async () => (await server.connections()) === 2, 'two connections');
    const holds = () => serverHolds(server.child.pid, Number(new URL(server.url).port), stalled.socket.localPort as number);
    expect(holds()).toBe(true);
    const big = 'x'.repeat(10_000);
    for (let from = 0; from < 600; from += 10)
      await server.publishMany(range(from, from + 10).map((n) => ({ stream: 'a', data: { n, big } })));
    await until(async () => (await server.stats()).dropped === 1, 'the cut-off');
    expect(await server.connections()).toBe(1);
    return { server, reader, stalled, holds };
  }

  it('Bun closes it after idleTimeout, while heartbeats keep the reading client and a quiet stream is closed', async () => {
    // Bun checks idle sockets every few seconds: a timeout of 4 s or less closes even a stream
    // that sends heartbeats. 6 s, with a heartbeat every second, behaves as configured.
    const quietServer = await serve(bun, { bunIdleTimeout: 6, hub: { heartbeatMs: 60_000 } });
    const quiet = await openStream(`${quietServer.url}/events?stream=a`);
    cleanups.push(() => quiet.close());
    const { server, reader, holds } = await cutOff(bun, { bunIdleTimeout: 6, hub: { heartbeatMs: 1000 } });
    await waitUntil(() => !holds(), 20_000, 'Bun to let the stalled socket go');
    // A stream that sends nothing is closed the same way, with only retry: sent.
    await quiet.ended;
    expect(quiet.raw).toBe('retry: 3000\n\n');
    // The reader has been idle but for heartbeats since the burst, longer than the timeout.
    await reader.waitFor((c) => c.comments.length >= 8, 20_000, 'heartbeats past the timeout');
    const [event] = await server.publish('a', 600, 601);
    await reader.waitFor((c) => c.events.at(-1)?.id === event?.id, 10_000, 'an event after them');
    expect(ns(reader.events)).toEqual(range(0, 601));
  }, 60_000);

  it('Deno keeps it open while the client reads nothing (it has no idle timeout to set), and closes it once the client reads', async () => {
    const { stalled, holds } = await cutOff(deno, {});
    await sleep(1000);
    expect(holds()).toBe(true);
    stalled.socket.resume();
    expect(await stalled.ended).toBe('fin');
    await waitUntil(() => !holds(), 10_000, 'Deno to let it go');
  });
});

describe.skipIf(missing.includes(deno))('where only Web APIs exist (Deno without setImmediate, process or Buffer)', () => {
  it('streams: the flush falls back to setTimeout, and compress falls back to identity', async () => {
    const script = run(deno, fixture('web-only.mjs'), {});
    await waitUntil(() => script.output().includes('"status"') || script.child.exitCode !== null, 15_000, 'the script');
    const line = script
      .output()
      .split('\n')
      .find((l) => l.startsWith('{'));
    expect(line, script.output()).toBeDefined();
    const result = JSON.parse(line as string) as { text: string };
    const id = /id: (\S+)/.exec(result.text)?.[1];
    expect(result).toEqual({
      status: 200,
      encoding: null,
      text: `retry: 3000\n\nid: ${id}\nevent: tick\ndata: {"n":1}\n\n`,
    });
  });
});

describe('docs/runtimes.md', () => {
  it('shows the fixture’s Bun.serve and Deno.serve calls verbatim', () => {
    const server = fs.readFileSync(fixture('server.mjs'), 'utf8');
    const doc = fs.readFileSync(path.join(root, 'docs/runtimes.md'), 'utf8');
    for (const name of ['bun', 'deno']) {
      const excerpt = new RegExp(`// docs:${name}:start\\n([\\s\\S]*?)\\n\\s*// docs:${name}:end`).exec(server)?.[1];
      expect(excerpt, name).toBeDefined();
      const dedented = (excerpt as string).replace(/^ {2}/gm, '');
      expect(doc).toContain(`\`\`\`js\n${dedented}\n\`\`\``);
    }
  });
});
