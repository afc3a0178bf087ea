import { spawn } from 'node:child_process';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { cleanupAfterEach, openStream, waitUntil } from '../support/helpers.js';

const server = fileURLToPath(new URL('../../examples/quickstart/server.mjs', import.meta.url));
const cleanups = cleanupAfterEach();

describe('the quick start (npm run example:quickstart)', () => {
  it('streams what is published to a curl-style client, and answers bad input with 400', async () => {
    const child = spawn(process.execPath, [server], { env: { ...process.env, PORT: '0' }, stdio: ['ignore', 'pipe', 'inherit'] });
    cleanups.push(() => child.kill());
    let out = '';
    child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
    await waitUntil(() => /on http:\/\/127\.0\.0\.1:\d+/.test(out), 10_000, 'the example to listen');
    const base = (/on (http:\/\/127\.0\.0\.1:\d+)/.exec(out) as RegExpExecArray)[1] as string;

    const stream = await openStream(`${base}/events?stream=demo`);
    cleanups.push(() => stream.close());
    await stream.waitFor((c) => c.raw === 'retry: 3000\n\n');
    const published = await fetch(`${base}/publish?stream=demo`, { method: 'POST', body: '{"hello":"world"}' });
    expect(published.status).toBe(202);
    const { id } = (await published.json()) as { id: string };
    await stream.waitFor((c) => c.events.length === 1);
    expect(stream.raw).toBe(`retry: 3000\n\nid: ${id}\nevent: message\ndata: {"hello":"world"}\n\n`);

    const badJson = await fetch(`${base}/publish?stream=demo`, { method: 'POST', body: '{oops' });
    expect(badJson.status).toBe(400);
    const noStream = await fetch(`${base}/publish`, { method: 'POST', body: '{}' });
    expect(noStream.status).toBe(400);
    expect(((await noStream.json()) as { message: string }).message).toMatch(/stream must be/);
    const tooBig = await fetch(`${base}/publish?stream=demo`, { method: 'POST', body: `"${'x'.repeat(70 * 1024)}"` });
    expect(tooBig.status).toBe(400);

    // A request target that new URL() cannot parse: answered, and the server keeps serving.
    const raw = await new Promise<string>((resolve) => {
      const socket = net.connect(Number(new URL(base).port), '127.0.0.1');
      let answer = '';
      socket.on('data', (chunk) => (answer += chunk.toString('latin1')));
      socket.on('error', () => resolve(answer));
      socket.on('close', () => resolve(answer));
      socket.end('GET http://[/ HTTP/1.1\r\nHost: x\r\n\r\n');
    });
    expect(raw).toMatch(/^HTTP\/1\.1 404 /);
    expect(child.exitCode).toBeNull();
    expect((await fetch(`${base}/nothing`)).status).toBe(404);
    expect(stream.events).toHaveLength(1);
  });
});
