/**
 * Event ids: `<epoch>.<seq>`.
 *
 * `seq` is one strictly increasing sequence for the whole hub (every stream,
 * and with a shared backend every instance), so a single Last-Event-ID resumes
 * a connection that follows several streams. `epoch` names the history the
 * sequence belongs to: a restarted memory backend, or a Redis that lost its
 * data, starts a new epoch, and an id from the old one is recognised as
 * foreign instead of being compared with numbers that mean something else.
 */

/** A parsed event id. */
export interface EventCursor {
  epoch: string;
  seq: number;
}

/** Longest id ever accepted from a client; anything longer is not one of ours. */
export const MAX_EVENT_ID_LENGTH = 64;

const EPOCH = /^[0-9a-z]{1,24}$/;
// Seq 0 is the position before the first event: what a resync on an empty hub points at.
const ID = /^([0-9a-z]{1,24})\.(0|[1-9][0-9]{0,15})$/;

export function formatEventId(epoch: string, seq: number): string {
  return `${epoch}.${seq}`;
}

/**
 * Parses an id a client sent back. Returns null for anything that is not an
 * id of this scheme (malformed, oversized, a sequence past 2^53); it never
 * throws, because its input comes straight from a request header.
 */
export function parseEventId(value: unknown): EventCursor | null {
  if (typeof value !== 'string' || value.length > MAX_EVENT_ID_LENGTH) return null;
  const match = ID.exec(value);
  if (!match) return null;
  const seq = Number(match[2]);
  if (!Number.isSafeInteger(seq)) return null;
  return { epoch: match[1] as string, seq };
}

/**
 * A new epoch: milliseconds since 1970 in base 36 plus random characters, so
 * two processes started in the same millisecond still differ.
 */
export function newEpoch(): string {
  let random = '';
  for (let i = 0; i < 6; i++) random += Math.floor(Math.random() * 36).toString(36);
  return Date.now().toString(36) + random;
}

export function isValidEpoch(epoch: string): boolean {
  return EPOCH.test(epoch);
}
