import { SignJWT } from 'jose';
import { describe, expect, it } from 'vitest';
import { issueToken, keyFor, principalOf, tokenOf } from '../../examples/agent-work/auth.mjs';

const key = keyFor('a-test-secret-that-is-long-enough-for-hs256');
const source = (headers: Record<string, string>, query: Record<string, string> = {}) => ({
  header: (name: string) => headers[name],
  query: (name: string) => query[name] ?? null,
});

describe('Agent Work auth', () => {
  it('reads the token from the Authorization header, then the cookie, then the query', () => {
    expect(tokenOf(source({ authorization: 'Bearer h', cookie: 'access_token=c' }, { access_token: 'q' }))).toBe('h');
    expect(tokenOf(source({ cookie: 'theme=dark; access_token=c%2Ed' }, { access_token: 'q' }))).toBe('c.d');
    expect(tokenOf(source({}, { access_token: 'q' }))).toBe('q');
    expect(tokenOf(source({ authorization: 'Basic abc' }))).toBeUndefined();
  });

  it('accepts a valid token and returns its subject and agents', async () => {
    const inAnHour = Date.now() + 3_600_000;
    const alice = await principalOf(await issueToken({ sub: 'alice', agents: ['a1', 'a2'] }, key), key);
    expect(alice).toEqual({ id: 'alice', streams: ['a1', 'a2'], expiresAt: expect.any(Number) });
    // The token's exp (whole seconds), in milliseconds: the stream ends when the token does.
    expect(Math.abs((alice?.expiresAt ?? 0) - inAnHour)).toBeLessThan(2000);
    expect(await principalOf(await issueToken({ sub: 'root', agents: '*' }, key), key)).toEqual({
      id: 'root',
      streams: '*',
      expiresAt: expect.any(Number),
    });
  });

  it.each([
    ['no token', async () => undefined],
    ['garbage', async () => 'not.a.jwt'],
    [
      'a token signed with another secret',
      async () => issueToken({ sub: 'eve', agents: '*' }, keyFor('another-secret-another-secret-another')),
    ],
    ['an expired token', async () => issueToken({ sub: 'alice', agents: ['a1'], expiresIn: '-1m' }, key)],
    ['an unsigned (alg none) token', async () => `${b64({ alg: 'none' })}.${b64({ sub: 'eve', agents: '*' })}.`],
    ['a token without agents', async () => new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setSubject('bob').sign(key)],
    [
      'a token whose agents is not a list of strings',
      async () => new SignJWT({ agents: [1] }).setProtectedHeader({ alg: 'HS256' }).setSubject('bob').sign(key),
    ],
    ['a token without sub', async () => new SignJWT({ agents: '*' }).setProtectedHeader({ alg: 'HS256' }).sign(key)],
    ['an oversized token', async () => 'x'.repeat(5000)],
  ])('rejects %s with null', async (_what, make) => {
    expect(await principalOf(await make(), key)).toBeNull();
  });

  it('refuses a secret too short for HS256', () => {
    expect(() => keyFor('short')).toThrow(/at least 32 bytes/);
  });
});

function b64(value: unknown): string {
  return Buffer.from(JSON.stringify(value)).toString('base64url');
}
