import { describe, expect, it, vi } from 'vitest';
import { EventManager, type Subscription } from '../../src/index.js';
import type { RedisBackend } from '../../src/backends/redis/index.js';
import { cleanupAfterEach, sleep } from '../support/helpers.js';
import { REDIS_URL, redisBackend, sharedClient } from '../support/redis.js';

/**
 * Which keys the scripts touch. Dragonfly refuses a key a script did not
 * declare in KEYS, and Redis Cluster routes a script by the keys it declares.
 * Here every script runs as a strict store runs it: a call on a key that is
 * not in KEYS fails the script.
 */

// Every redis.call goes through a check against KEYS. The scripts only use
// commands whose key is the first argument, except DEL (all) and TIME (none).
function strict(script: string): string {
  const guard = `
local declared = {}
for _, key in ipairs(KEYS) do declared[key] = true end
local function checkedCall(command, ...)
  local args = { ... }
  local keys = (command == 'DEL' and args) or (command == 'TIME' and {}) or { args[1] }
  for _, key in ipairs(keys) do
    if not declared[key] then error('undeclared key ' .. key) end
  end
  return redis.call(command, ...)
end
`;
  return guard + script.replaceAll('redis.call(', 'checkedCall(');
}

vi.mock(import('../../src/backends/redis/lua.js'), async (importOriginal) => {
  const real = await importOriginal();
  return {
    ...real,
    APPEND: strict(real.APPEND),
    READ: strict(real.READ),
    SWEEP: strict(real.SWEEP),
    ENSURE_EPOCH: strict(real.ENSURE_EPOCH),
  };
});

type Events = { tick: { n: number } };

const cleanups = cleanupAfterEach();

function hubOn(backend: RedisBackend): EventManager<Events> {
  const hub = new EventManager<Events>({ backend });
  cleanups.push(() => hub.close());
  return hub;
}

/** What a subscription yields from history, or the error it failed with. */
async function history(subscription: Subscription<Events>): Promise<{ types: string[]; ns: number[]; error: unknown }> {
  const out = { types: [] as string[], ns: [] as number[], error: undefined as unknown };
  const reading = (async () => {
    try {
      for await (const event of subscription) {
        out.types.push(event.type);
        if (event.type === 'tick') out.ns.push(event.data.n);
      }
    } catch (error) {
      out.error = error;
    }
  })();
  await subscription.ready;
  await sleep(50);
  subscription.close();
  await reading;
  return out;
}

const FLAG = '--!df flags=allow-undeclared-keys\n';

describe.skipIf(!REDIS_URL)('RedisBackend scripts and the keys they declare', () => {
  it('every read declares its keys: a named stream passes its history key', async () => {
    const hub = hubOn(redisBackend({ historySize: 3 }));
    const since = new Date(Date.now() - 1000).toISOString();
    const first = await hub.publish('a', 'tick', { n: 0 });
    for (let n = 1; n < 6; n++) await hub.publish(n % 2 ? 'a' : 'b', 'tick', { n });
    for (const streams of [['a', 'b'], '*'] as const) {
      const recent = await history(hub.subscribe({ streams, replay: 2 }));
      expect(recent.error).toBeUndefined();
      const resumed = await history(hub.subscribe({ streams, lastEventId: first.id }));
      expect(resumed.error).toBeUndefined();
      const fromTime = await history(hub.subscribe({ streams, since }));
      expect(fromTime.error).toBeUndefined();
      expect(fromTime.ns.length).toBeGreaterThan(0);
    }
    // And what they read is right: `a` kept its last three, `b` all it had.
    const named = await history(hub.subscribe({ streams: ['a', 'b'], since }));
    expect(named).toEqual({ types: ['resync', 'tick', 'tick', 'tick', 'tick', 'tick'], ns: [1, 2, 3, 4, 5], error: undefined });
  });

  it('publishing and sweeping declare every key until a stream is dropped; the scripts that may drop one say so', async () => {
    const hub = hubOn(redisBackend({ historySize: 2, maxStreams: 2 }));
    // A fresh stream, an existing one, a trim: all on declared keys.
    for (let n = 0; n < 5; n++) await hub.publish(n ? 'a' : 'b', 'tick', { n });
    expect(await (hub.backend as RedisBackend).sweep()).toBe(0);
    // Evicting the least recently used stream deletes a key nobody could name beforehand.
    await expect(hub.publish('c', 'tick', { n: 5 })).rejects.toThrow(/undeclared key \{[^}]+\}:s:b/);
    expect(await sharedClient().exists(`{${(hub.backend as RedisBackend).prefix}}:s:b`)).toBe(1);
    // Dragonfly reads this line and allows such a script every key; Redis sees a comment.
    const lua = await vi.importActual<typeof import('../../src/backends/redis/lua.js')>('../../src/backends/redis/lua.js');
    for (const script of [lua.APPEND, lua.SWEEP, lua.ENSURE_EPOCH]) expect(script.startsWith(FLAG)).toBe(true);
    expect(lua.READ).not.toContain(FLAG);
  });
});
