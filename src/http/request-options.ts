import { isValidStreamName, MAX_STREAM_NAME_LENGTH, toIsoTime } from '../core/hub.js';
import { reject, type Rejection } from './reject.js';

/** A Last-Event-ID longer than this is not an id that anyone issued: 400. */
export const MAX_LAST_EVENT_ID_HEADER = 1024;
/** Event types one connection may filter on. */
export const MAX_TYPES_PER_CONNECTION = 64;
const MAX_TYPE_LENGTH = 256;
const MAX_SINCE_LENGTH = 64;

/** What a request asks for beyond its streams, read from its URL and headers. */
export interface RequestOptions {
  /** Resume after this id: the `Last-Event-ID` header, else the `lastEventId` query parameter. */
  lastEventId: string | undefined;
  /** Only these event types: every `types` value, each a comma-separated list. */
  types: string[] | undefined;
  /** Replay from this time (normalised ISO 8601): the `since` query parameter. */
  since: string | undefined;
}

/**
 * Reads the request options every adapter accepts, in one place, so that no
 * adapter can parse them differently. Malformed values get a 400 that says
 * what was wrong.
 */
export function parseRequestOptions(url: URL, headers: { header(name: string): string | undefined }): RequestOptions | Rejection {
  const query = url.searchParams;
  // An empty header is what a polyfill sends before it has an id: fall back to the query.
  const lastEventId = headers.header('last-event-id') || query.get('lastEventId') || undefined;
  if (lastEventId !== undefined && lastEventId.length > MAX_LAST_EVENT_ID_HEADER) {
    return reject(400, `Last-Event-ID is longer than ${MAX_LAST_EVENT_ID_HEADER} characters`);
  }

  let types: string[] | undefined;
  const typeValues = query.getAll('types');
  if (typeValues.length > 0) {
    types = [...new Set(typeValues.flatMap((value) => value.split(',')).map((type) => type.trim()))];
    if (types.some((type) => type === '')) return reject(400, 'types must be a comma-separated list of event types, with no empty entry');
    if (types.length > MAX_TYPES_PER_CONNECTION)
      return reject(400, `at most ${MAX_TYPES_PER_CONNECTION} types per connection, got ${types.length}`);
    if (types.some((type) => type.length > MAX_TYPE_LENGTH || /[\r\n\0]/.test(type))) {
      return reject(400, `event types must be at most ${MAX_TYPE_LENGTH} characters, without CR, LF or NUL`);
    }
  }

  let since: string | undefined;
  const sinceValue = query.get('since');
  if (sinceValue !== null) {
    try {
      if (sinceValue.length > MAX_SINCE_LENGTH) throw new TypeError('too long');
      since = toIsoTime(sinceValue);
    } catch {
      return reject(400, 'since must be an ISO 8601 time, such as 2026-01-31T12:00:00Z or 2026-01-31T12:00:00.000+01:00');
    }
  }
  return { lastEventId, types, since };
}

/** Checks the streams a request asked for (from the query or the `streams` hook). */
export function checkStreams(requested: unknown, maxStreams: number): readonly string[] | '*' | Rejection {
  if (requested === '*') return '*';
  if (!Array.isArray(requested)) return reject(400, "streams must be a list of stream names or '*'");
  const unique = [...new Set(requested)];
  if (unique.length === 0) return reject(400, 'no stream requested; add ?stream=<name> (or return some from the streams hook)');
  if (unique.length > maxStreams) return reject(400, `at most ${maxStreams} streams per connection, got ${unique.length}`);
  if (!unique.every(isValidStreamName))
    return reject(400, `stream names must be 1 to ${MAX_STREAM_NAME_LENGTH} characters of well-formed Unicode`);
  return unique as string[];
}

export function isRejection(value: unknown): value is Rejection {
  return typeof value === 'object' && value !== null && (value as Rejection).ok === false;
}
