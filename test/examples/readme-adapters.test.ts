// The README's adapter snippets, run as a reader would paste them: each ```ts block under
// "## Adapters" is compiled as it is, given a free port, and served from its own process.
// Only what a snippet leaves to the reader is added: `userFromCookie` (the app's own session
// lookup), a publisher, and for the Hono app (an `export default`) a server to run it on.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';
import { cleanupAfterEach, freePort, openStream } from '../support/helpers.js';

const cleanups = cleanupAfterEach();
const README = fileURLToPath(new URL('../../README.md', import.meta.url));

interface Snippet {
  title: string;
  code: string;
}

/** The ts blocks of the Adapters section, each named by the bold text before it. */
function snippets(): Snippet[] {
  const text = fs.readFileSync(README, 'utf8');
  const start = text.indexOf('## Adapters');
  const section = text.slice(start, text.indexOf('\n## ', start + 1));
  const found: Snippet[] = [];
  for (const match of section.matchAll(/```ts\n([\s\S]*?)```/g)) {
    const before = section.slice(0, match.index);
    const title = [...before.matchAll(/\*\*([^*]+)\*\*/g)].at(-1)?.[1] ?? '(untitled)';
    found.push({ title, code: match[1] as string });
  }
  return found;
}

const SETUP: Record<string, { path: string; before?: string; after?: string; auth?: boolean }> = {
  '`node:http`': {
    path: '/events',
    before: `const userFromCookie = async (req) => (req.headers.cookie === 'session=ada' ? { id: 'ada', agentIds: ['agent-1'] } : null);\n`,
    auth: true,
  },
  'Express 4 and 5': { path: '/api/v1/sse' },
  'Fastify 5': { path: '/api/v1/sse' },
  'fetch handlers': {
    path: '/api/v1/sse',
    after: `import { serve } from '@hono/node-server';\nserve({ fetch: app.fetch, port: PORT, hostname: '127.0.0.1' });\n`,
  },
};

async function run(snippet: Snippet, port: number, setup: (typeof SETUP)[string]): Promise<string> {
  // One port to replace, or (the Hono app, an `export default`) none: the server we add listens.
  expect(snippet.code.match(/8000/g)?.length ?? 0).toBe(setup.after ? 0 : 1);
  const source = [
    setup.before ?? '',
    snippet.code.replace('8000', String(port)),
    (setup.after ?? '').replace('PORT', String(port)),
    // The app publishes; here a tick every 30 ms on the stream the requests ask for.
    `let n = 0;\nsetInterval(() => hub.publish('agent-1', 'tick', { n: ++n }), 30);\n`,
  ].join('\n');
  const { outputText, diagnostics } = ts.transpileModule(source, {
    compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 },
    reportDiagnostics: true,
  });
  expect(diagnostics ?? []).toEqual([]);
  // Inside the package, so `ssecast` resolves to this build as it would from node_modules.
  const file = fileURLToPath(new URL(`./.readme-adapter-${process.pid}-${port}.mjs`, import.meta.url));
  fs.writeFileSync(file, outputText);
  cleanups.push(() => fs.rmSync(file, { force: true }));
  const child = spawn(process.execPath, [file], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  cleanups.push(() => child.kill('SIGKILL'));
  const url = `http://127.0.0.1:${port}${setup.path}?agent_id=agent-1`;
  for (let tries = 0; tries < 200; tries++) {
    if (child.exitCode !== null) throw new Error(`the ${snippet.title} snippet exited with ${child.exitCode}:\n${stderr}`);
    // Any answer on another path: the server is listening (a stream request would stay open).
    const answered = await fetch(`http://127.0.0.1:${port}/up`).then(
      (response) => (response.body?.cancel(), true),
      () => false,
    );
    if (answered) return url;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`the ${snippet.title} snippet never answered:\n${stderr}`);
}

describe("the README's adapter snippets, pasted as they are", () => {
  it('are the four the README shows: node:http, Express, Fastify and a fetch handler (Hono)', () => {
    expect(snippets().map((s) => s.title)).toEqual(Object.keys(SETUP));
  });

  it.each(Object.keys(SETUP))('%s: streams, resumes exactly from Last-Event-ID, and refuses what it should', async (title) => {
    const snippet = snippets().find((s) => s.title === title) as Snippet;
    const setup = SETUP[title] as (typeof SETUP)[string];
    const url = await run(snippet, await freePort(), setup);
    const headers: Record<string, string> = setup.auth ? { cookie: 'session=ada' } : {};

    const stream = await openStream(url, headers);
    cleanups.push(() => stream.close());
    expect(stream.status).toBe(200);
    expect(stream.headers.get('content-type')).toBe('text/event-stream; charset=utf-8');
    await stream.waitFor((c) => c.events.filter((e) => e.event === 'tick').length >= 3, 10_000, 'three ticks');
    expect(stream.raw).toMatch(/^retry: \d+\n\n/);
    const ticks = stream.events.filter((e) => e.event === 'tick');
    const ns = ticks.map((e) => JSON.parse(e.data).n as number);
    expect(ns).toEqual(ns.map((_, i) => (ns[0] as number) + i));

    // Resume after the first tick: the second comes again, then what follows, none skipped.
    stream.close();
    const resumed = await openStream(url, { ...headers, 'last-event-id': ticks[0]?.id as string });
    cleanups.push(() => resumed.close());
    await resumed.waitFor((c) => c.events.length >= 3, 10_000, 'the resumed stream');
    expect(resumed.events[0]).toEqual(ticks[1]);
    const after = resumed.events.map((e) => JSON.parse(e.data).n as number);
    expect(after).toEqual(after.map((_, i) => (ns[1] as number) + i));

    const noStream = await openStream(url.replace('?agent_id=agent-1', ''), headers);
    expect(noStream.status).toBe(400);
    if (setup.auth) {
      expect((await openStream(url)).status).toBe(401);
      const forbidden = await openStream(url.replace('agent-1', 'agent-2'), headers);
      expect(forbidden.status).toBe(403);
      expect(JSON.parse(forbidden.body)).toMatchObject({ error: 'forbidden' });
    }
  });
});
