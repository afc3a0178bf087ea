// Who may watch which agents: HS256 JWTs verified with jose. The token is
// read from `Authorization: Bearer`, else the `access_token` cookie, else the
// `access_token` query parameter (EventSource cannot send headers). Its
// claims are `sub` and `agents`: a list of agent ids, or "*".
import { jwtVerify, SignJWT } from 'jose';

const MAX_TOKEN_LENGTH = 4096;

/**
 * @typedef {{ id: string, streams: string[] | '*', expiresAt?: number }} Principal
 * @typedef {{ header(name: string): string | undefined, query(name: string): string | null }} TokenSource
 */

/**
 * The token of a request, from the first place that has one.
 * @param {TokenSource} source
 * @returns {string | undefined}
 */
export function tokenOf(source) {
  const authorization = source.header('authorization');
  const bearer = authorization?.match(/^Bearer\s+(\S+)$/i)?.[1];
  if (bearer) return bearer;
  const cookie = source.header('cookie');
  if (cookie) {
    for (const part of cookie.split(';')) {
      const at = part.indexOf('=');
      if (at !== -1 && part.slice(0, at).trim() === 'access_token') return decodeURIComponent(part.slice(at + 1).trim());
    }
  }
  return source.query('access_token') ?? undefined;
}

/**
 * Verifies a token and returns the principal it names, or null for anything
 * invalid: bad signature, another algorithm, expired, missing or malformed
 * claims. Never throws for a bad token.
 * @param {string | undefined} token
 * @param {Uint8Array} key
 * @returns {Promise<Principal | null>}
 */
export async function principalOf(token, key) {
  if (!token || token.length > MAX_TOKEN_LENGTH) return null;
  try {
    const { payload } = await jwtVerify(token, key, { algorithms: ['HS256'] });
    const agents = payload.agents;
    if (typeof payload.sub !== 'string' || payload.sub === '') return null;
    // The stream ends when the token does; the page reconnects with a fresh one.
    const expiry = typeof payload.exp === 'number' ? { expiresAt: payload.exp * 1000 } : {};
    if (agents === '*') return { id: payload.sub, streams: '*', ...expiry };
    if (!Array.isArray(agents) || !agents.every((agent) => typeof agent === 'string')) return null;
    return { id: payload.sub, streams: agents, ...expiry };
  } catch {
    return null;
  }
}

/**
 * The signing key for a secret; HS256 wants at least 32 bytes of it.
 * @param {string} secret
 */
export function keyFor(secret) {
  const key = new TextEncoder().encode(secret);
  if (key.byteLength < 32) throw new TypeError('SSE_JWT_SECRET must be at least 32 bytes for HS256');
  return key;
}

/**
 * Issues a token, for tests and for trying the example with auth on.
 * @param {{ sub: string, agents: string[] | '*', expiresIn?: string }} claims
 * @param {Uint8Array} key
 */
export function issueToken({ sub, agents, expiresIn = '1h' }, key) {
  return new SignJWT({ agents }).setProtectedHeader({ alg: 'HS256' }).setSubject(sub).setIssuedAt().setExpirationTime(expiresIn).sign(key);
}
