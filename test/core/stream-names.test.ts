/**
 * Stream names must be well-formed Unicode: Redis stores them as UTF-8, where
 * a lone surrogate becomes U+FFFD, so 'x\uD800' and 'x\uD801' would share one
 * history there and the fan-out would deliver to neither. Both backends refuse
 * them the same way, at publish and at subscribe, with a clear error.
 */
import { describe, expect, it } from 'vitest';
import { cleanupAfterEach } from '../support/helpers.js';
import { BACKENDS } from '../support/redis.js';

const cleanups = cleanupAfterEach();

describe.each(BACKENDS)('stream names on $name', (backend) => {
  it('refuses a name with a lone surrogate at publish and subscribe; a surrogate pair is fine', async () => {
    const hub = backend.hub<{ tick: { n: number } }>();
    cleanups.push(() => hub.close());
    for (const name of ['x\uD800', 'x\uDC00y', '\uDBFF']) {
      await expect(hub.publish(name, 'tick', { n: 1 })).rejects.toThrow(/stream must be well-formed Unicode: it has a lone surrogate/);
      expect(() => hub.subscribe({ streams: [name] })).toThrow(/well-formed Unicode/);
    }
    const subscription = hub.subscribe({ streams: ['x\uD83D\uDE00'], replay: 0 });
    await subscription.ready;
    const received: number[] = [];
    const reading = (async () => {
      for await (const event of subscription) {
        if (event.type === 'tick') received.push(event.data.n);
        break;
      }
    })();
    await hub.publish('x\uD83D\uDE00', 'tick', { n: 7 });
    await reading;
    expect(received).toEqual([7]);
  });
});
