import { describe, expect, it } from 'vitest';
import { EventManager } from '../../src/index.js';
import { createSseHandler } from '../../src/adapters/node.js';
import { cleanupAfterEach, openStream, startServer, waitUntil } from '../support/helpers.js';

const cleanups = cleanupAfterEach();

describe('churn', () => {
  it('forgets 100,000 subscriptions that come and go, across 100,000 streams', async () => {
    const hub = new EventManager({ maxStreams: 1000, replay: 1 });
    cleanups.push(() => hub.close());
    for (let i = 0; i < 100_000; i++) {
      const stream = `agent-${i}`;
      const subscription = hub.subscribe({ streams: [stream], onEvent: () => {} });
      await hub.publish(stream, 'tick', i);
      subscription.close();
    }
    expect(hub.stats()).toMatchObject({ connections: 0, streams: 0, published: 100_000 });
    expect(hub.stats().retainedStreams).toBeLessThanOrEqual(1000);
    expect(hub.stats().retainedEvents).toBeLessThanOrEqual(1000);
  }, 30_000);

  it('leaves no connection, principal slot, timer or listener warning after 500 HTTP connect/disconnect cycles', async () => {
    const warnings: Error[] = [];
    const onWarning = (warning: Error) => warnings.push(warning);
    process.on('warning', onWarning);
    cleanups.push(() => process.off('warning', onWarning));
    const hub = new EventManager({ heartbeatMs: 1000 });
    const server = await startServer(
      createSseHandler(hub, { authorize: () => ({ id: 'same-user', streams: '*' }), maxConnectionsPerPrincipal: 5 }),
    );
    cleanups.push(
      () => server.close(),
      () => hub.close(),
    );
    for (let i = 0; i < 500; i++) {
      const client = await openStream(`${server.url}/?stream=s${i % 20}`);
      expect(client.status).toBe(200);
      await client.waitFor((c) => c.raw.startsWith('retry:'));
      client.close();
      // The per-user limit is 5: cycles only keep succeeding if every slot comes back.
      await waitUntil(() => hub.stats().connections < 4);
    }
    await waitUntil(() => hub.stats().connections === 0);
    expect(hub.stats()).toMatchObject({ connections: 0, streams: 0, wildcardConnections: 0 });
    expect(hub.heartbeatScheduler(1000).running).toBe(false);
    expect(warnings.filter((w) => w.name === 'MaxListenersExceededWarning')).toEqual([]);
  }, 60_000);
});
