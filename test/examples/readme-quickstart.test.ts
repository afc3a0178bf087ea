import { spawn } from 'node:child_process';
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { cleanupAfterEach, freePort, openStream } from '../support/helpers.js';

const cleanups = cleanupAfterEach();
const README = fileURLToPath(new URL('../../README.md', import.meta.url));

/** The README's quick start, as a reader would copy it: the first js block under "Quick start". */
function quickStart(): string {
  const text = fs.readFileSync(README, 'utf8');
  const section = text.slice(text.indexOf('## Quick start'));
  const block = /```js\n([\s\S]*?)```/.exec(section)?.[1];
  if (!block) throw new Error('no js block under the Quick start heading of README.md');
  return block;
}

describe("the README's quick start, copied as it is", () => {
  it('is about fifteen lines, runs, and streams a tick a second to a curl-style client, resumable by Last-Event-ID', async () => {
    const code = quickStart();
    expect(code.split('\n').filter((line) => line.trim() && !line.trim().startsWith('//')).length).toBeLessThanOrEqual(16);
    const port = await freePort();
    // Inside the package, so `ssecast` resolves to this build as it would from node_modules.
    const file = fileURLToPath(new URL(`./.readme-quickstart-${process.pid}.mjs`, import.meta.url));
    fs.writeFileSync(file, code.replace('listen(8000,', `listen(${port},`));
    cleanups.push(() => fs.rmSync(file, { force: true }));
    const child = spawn(process.execPath, [file], { stdio: ['ignore', 'ignore', 'inherit'] });
    cleanups.push(() => child.kill());

    const url = `http://127.0.0.1:${port}/events?stream=demo`;
    let stream: Awaited<ReturnType<typeof openStream>> | undefined;
    for (let tries = 0; !stream && tries < 100; tries++) {
      stream = await openStream(url).catch(() => undefined);
      if (!stream) await new Promise((resolve) => setTimeout(resolve, 100));
    }
    if (!stream) throw new Error('the quick start never answered');
    cleanups.push(() => stream?.close());
    expect(stream.status).toBe(200);
    await stream.waitFor((c) => c.events.length >= 2, 5000, 'two ticks');
    expect(stream.raw.startsWith('retry: 3000\n\n')).toBe(true);
    const [first, second] = stream.events;
    expect(first).toMatchObject({ event: 'tick', id: expect.stringMatching(/^[0-9a-z]+\.\d+$/) });
    expect(JSON.parse(second?.data ?? '{}').n).toBe(JSON.parse(first?.data ?? '{}').n + 1);

    // Resume after the first: the second comes again, then what follows.
    stream.close();
    const resumed = await openStream(url, { 'last-event-id': first?.id as string });
    cleanups.push(() => resumed.close());
    await resumed.waitFor((c) => c.events.length >= 1, 5000, 'the resumed stream');
    expect(resumed.events[0]).toEqual(second);
  });
});
