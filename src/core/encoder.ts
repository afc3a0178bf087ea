/**
 * The WHATWG event-stream encoder.
 *
 * @see https://html.spec.whatwg.org/multipage/server-sent-events.html#parsing-an-event-stream
 */

/** What went wrong in {@link formatEvent}. */
export type SseFormatErrorCode =
  | 'ERR_SSE_EVENT_NEWLINE'
  | 'ERR_SSE_EVENT_NUL'
  | 'ERR_SSE_ID_NEWLINE'
  | 'ERR_SSE_ID_NUL'
  | 'ERR_SSE_RETRY'
  | 'ERR_SSE_DATA_UNSERIALIZABLE'
  | 'ERR_SSE_FIELD_TYPE';

/**
 * Thrown when a field cannot be written without changing the meaning of the
 * stream: a newline in `event` or `id` would let a value inject fields, a NUL
 * in `id` makes the browser ignore the id, and so on. It is a `TypeError`
 * because it is always a misuse by the caller.
 */
export class SseFormatError extends TypeError {
  readonly code: SseFormatErrorCode;
  constructor(code: SseFormatErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'SseFormatError';
    this.code = code;
  }
}

/** One event (or comment) to encode. Every field is optional. */
export interface SseMessage {
  /** The `event:` field: the type the browser dispatches. Must not contain CR or LF. */
  event?: string;
  /** The payload. Strings are written as they are; anything else is JSON-serialised once. */
  data?: unknown;
  /** The `id:` field, echoed back by the browser as `Last-Event-ID`. No CR, LF or NUL. */
  id?: string;
  /** Reconnection delay hint in milliseconds: a non-negative integer. */
  retry?: number;
  /** A comment: one `: ` line per input line. Browsers ignore it; proxies see traffic. */
  comment?: string;
}

// Only CRLF, lone LF and lone CR end a line in an event stream; U+2028, U+0085,
// VT and FF are ordinary characters and must survive untouched.
const LINE_BREAK = /\r\n|\r|\n/;
const HAS_CR_OR_LF = /[\r\n]/;

/**
 * Turns a value into the text of `data:` lines. Strings pass through; other
 * values are JSON-serialised once. Throws `SseFormatError` for a value JSON
 * cannot represent (undefined, a function, a symbol, a BigInt, a cycle).
 */
export function serializeData(data: unknown): string {
  if (typeof data === 'string') return data;
  let json: string | undefined;
  try {
    json = JSON.stringify(data);
  } catch (error) {
    throw new SseFormatError('ERR_SSE_DATA_UNSERIALIZABLE', `event data cannot be serialised to JSON: ${(error as Error).message}`, {
      cause: error,
    });
  }
  if (json === undefined) {
    throw new SseFormatError(
      'ERR_SSE_DATA_UNSERIALIZABLE',
      `event data of type ${typeof data} cannot be serialised to JSON; pass a string, a number, a boolean, null, an array or a plain object`,
    );
  }
  return json;
}

/** `data:` lines for a serialised payload, one per line of it, each ending in LF. */
export function dataLines(text: string): string {
  // Fast path: most payloads are one-line JSON.
  if (!HAS_CR_OR_LF.test(text)) return `data: ${text}\n`;
  let out = '';
  for (const line of text.split(LINE_BREAK)) out += `data: ${line}\n`;
  return out;
}

/** `: ` comment lines, one per input line. */
export function commentLines(text: string): string {
  let out = '';
  for (const line of text.split(LINE_BREAK)) out += `: ${line}\n`;
  return out;
}

export function assertEventName(event: unknown): asserts event is string {
  if (typeof event !== 'string') {
    throw new SseFormatError('ERR_SSE_FIELD_TYPE', `event must be a string, got ${typeof event}`);
  }
  if (HAS_CR_OR_LF.test(event)) {
    throw new SseFormatError(
      'ERR_SSE_EVENT_NEWLINE',
      `event name ${JSON.stringify(event)} contains CR or LF, which would inject fields into the stream`,
    );
  }
  // The stream carries it, but no listener can be added for it by hand and
  // logs and proxies cut strings at it: a NUL in a type is a bug upstream.
  if (event.includes('\0')) {
    throw new SseFormatError('ERR_SSE_EVENT_NUL', `event name ${JSON.stringify(event)} contains NUL`);
  }
}

export function assertEventId(id: unknown): asserts id is string {
  if (typeof id !== 'string') {
    throw new SseFormatError('ERR_SSE_FIELD_TYPE', `id must be a string, got ${typeof id}`);
  }
  if (HAS_CR_OR_LF.test(id)) {
    throw new SseFormatError('ERR_SSE_ID_NEWLINE', `id ${JSON.stringify(id)} contains CR or LF, which would inject fields into the stream`);
  }
  if (id.includes('\0')) {
    throw new SseFormatError('ERR_SSE_ID_NUL', `id ${JSON.stringify(id)} contains NUL, which makes browsers ignore it`);
  }
}

/**
 * Encodes one event in the WHATWG event-stream format: `name: value` fields
 * (the space keeps a value that starts with a space intact), `data` split on
 * CRLF/LF/CR into one `data:` line each, LF line endings, a blank line at the
 * end. Field order: comment, event, id, retry, data.
 *
 * @throws {SseFormatError} for a CR/LF or NUL in `event` or `id`, a
 *   `retry` that is not a non-negative integer, or data JSON cannot represent.
 * @example
 * formatEvent({ event: 'git_operation', id: 'k1.7', data: { progress: 45 } })
 * // 'event: git_operation\nid: k1.7\ndata: {"progress":45}\n\n'
 * @see https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation
 */
export function formatEvent(message: SseMessage): string {
  let out = '';
  if (message.comment !== undefined) out += commentLines(String(message.comment));
  if (message.event !== undefined) {
    assertEventName(message.event);
    out += `event: ${message.event}\n`;
  }
  if (message.id !== undefined) {
    assertEventId(message.id);
    out += `id: ${message.id}\n`;
  }
  if (message.retry !== undefined) out += `retry: ${retryValue(message.retry)}\n`;
  if (message.data !== undefined) out += dataLines(serializeData(message.data));
  return `${out}\n`;
}

function retryValue(retry: unknown): string {
  if (typeof retry !== 'number' || !Number.isSafeInteger(retry) || retry < 0) {
    throw new SseFormatError('ERR_SSE_RETRY', `retry must be a non-negative integer number of milliseconds, got ${String(retry)}`);
  }
  return String(retry);
}

/** UTF-8 length of a string without depending on Buffer (the core runs on any runtime). */
export function utf8Length(text: string): number {
  let bytes = text.length;
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code < 0x80) continue;
    if (code < 0x800) bytes += 1;
    else if (code >= 0xd800 && code <= 0xdbff && i + 1 < text.length) {
      const next = text.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) {
        // A surrogate pair is 2 UTF-16 units and 4 UTF-8 bytes.
        bytes += 2;
        i++;
      } else bytes += 2;
    } else bytes += 2;
  }
  return bytes;
}
