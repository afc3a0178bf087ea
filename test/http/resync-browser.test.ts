import { describe, expect, it } from 'vitest';
import { hasChromium, servePage, useChromium, warnIfNoChromium } from '../support/chromium.js';
import { EventManager } from '../../src/index.js';
import { createSseHandler } from '../../src/adapters/node.js';
import { waitUntil } from '../support/helpers.js';

warnIfNoChromium('the EventSource resync test');

type Events = { tick: { n: number } };

const PAGE = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>resync</title></head><body>
<script>
  window.__got = [];
  const source = new EventSource('/events?stream=quiet');
  for (const type of ['tick', 'resync']) source.addEventListener(type, (e) => window.__got.push({ type, id: e.lastEventId, data: e.data }));
</script>
</body></html>`;

describe.skipIf(!hasChromium)('EventSource in Chromium across a restart', () => {
  const { browser, cleanups } = useChromium();

  it('gets one resync after the restart, then resumes normally on the next drop of a quiet stream', async () => {
    let hub = new EventManager<Events>();
    let sse = createSseHandler(hub, { retryMs: 100 });
    const site = await servePage(PAGE, () => sse);
    const { lastEventIds } = site;
    cleanups.push(async () => {
      await site.close();
      await hub.close();
    });
    const page = await (await browser().newContext()).newPage();
    await page.goto(site.url);
    const got = () => page.evaluate(() => (window as unknown as { __got: { type: string; id: string; data: string }[] }).__got);

    await waitUntil(() => hub.stats().connections === 1, 10_000, 'the page to connect');
    const first = await hub.publish('quiet', 'tick', { n: 1 });
    await page.waitForFunction(() => (window as unknown as { __got: unknown[] }).__got.length === 1, undefined, { timeout: 10_000 });

    // Restart: a new hub (a new epoch); the old one's id cannot be continued.
    const old = hub;
    hub = new EventManager<Events>();
    sse = createSseHandler(hub, { retryMs: 100 });
    await old.close();
    site.drop();
    await page.waitForFunction(() => (window as unknown as { __got: unknown[] }).__got.length === 2, undefined, { timeout: 10_000 });
    const [, resync] = await got();
    expect(resync).toMatchObject({ type: 'resync', id: expect.stringMatching(/^[0-9a-z]+\.0$/) });
    expect(JSON.parse(resync?.data as string)).toEqual({ reason: 'foreign', lastEventId: first.id });

    // A drop on the quiet stream: the browser comes back with the resync's id and resumes.
    await waitUntil(() => hub.stats().connections === 1, 10_000, 'the reconnect after the restart');
    site.drop();
    await waitUntil(() => lastEventIds.length === 3 && hub.stats().connections === 1, 10_000, 'the reconnect after the drop');
    const live = await hub.publish('quiet', 'tick', { n: 2 });
    await page.waitForFunction(() => (window as unknown as { __got: unknown[] }).__got.length === 3, undefined, { timeout: 10_000 });
    const events = await got();
    expect(events.map((e) => e.type)).toEqual(['tick', 'resync', 'tick']);
    expect(events[2]).toMatchObject({ id: live.id, data: '{"n":2}' });
    expect(lastEventIds).toEqual([undefined, first.id, resync?.id]);
    // One resync in all: the reconnect after the restart; the one after the drop resumed.
    expect(hub.stats().resyncs).toBe(1);
  });
});
