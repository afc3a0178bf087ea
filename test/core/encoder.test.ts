import { createParser, type EventSourceMessage, type ParseError } from 'eventsource-parser';
import { describe, expect, it } from 'vitest';
import { formatEvent, serializeData, SseFormatError, utf8Length } from '../../src/core/encoder.js';

interface ParsedEvent {
  event: string | undefined;
  id: string | undefined;
  data: string;
}

interface ParsedStream {
  events: ParsedEvent[];
  retries: number[];
  comments: string[];
  errors: ParseError[];
}

/** Everything eventsource-parser v3 reads back from a complete event stream. */
function parseStream(text: string): ParsedStream {
  const out: ParsedStream = { events: [], retries: [], comments: [], errors: [] };
  const parser = createParser({
    onEvent: (message: EventSourceMessage) => out.events.push({ event: message.event, id: message.id, data: message.data }),
    onRetry: (retry: number) => out.retries.push(retry),
    onComment: (comment: string) => out.comments.push(comment),
    onError: (error: ParseError) => out.errors.push(error),
  });
  parser.feed(text);
  return out;
}

/** The events eventsource-parser v3 reads back; fails the test on any parse error. */
function parseAll(text: string): ParsedEvent[] {
  const { events, errors } = parseStream(text);
  expect(errors).toEqual([]);
  return events;
}

/** The single event's data, as a browser would see it. */
function roundTrip(data: unknown): string {
  const events = parseAll(formatEvent({ data }));
  expect(events).toHaveLength(1);
  return (events[0] as ParsedEvent).data;
}

function formatError(fn: () => unknown): SseFormatError {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(SseFormatError);
    expect(error).toBeInstanceOf(TypeError);
    return error as SseFormatError;
  }
  throw new Error('expected an SseFormatError, nothing was thrown');
}

describe('formatEvent: fields', () => {
  it('writes every field as "name: value" in the order comment, event, id, retry, data', () => {
    const text = formatEvent({ comment: 'hi', event: 'git_operation', id: 'k1.7', retry: 3000, data: { progress: 45 } });
    expect(text).toBe(': hi\nevent: git_operation\nid: k1.7\nretry: 3000\ndata: {"progress":45}\n\n');
    const parsed = parseStream(text);
    expect(parsed.errors).toEqual([]);
    expect(parsed.comments).toEqual(['hi']);
    expect(parsed.retries).toEqual([3000]);
    expect(parsed.events).toEqual([{ event: 'git_operation', id: 'k1.7', data: '{"progress":45}' }]);
  });

  it('matches the documented example byte for byte', () => {
    expect(formatEvent({ event: 'git_operation', id: 'k1.7', data: { progress: 45 } })).toBe(
      'event: git_operation\nid: k1.7\ndata: {"progress":45}\n\n',
    );
  });

  it('keeps a data value that starts with a space', () => {
    const text = formatEvent({ data: ' x' });
    expect(text).toBe('data:  x\n\n');
    expect(roundTrip(' x')).toBe(' x');
  });

  it('keeps event and id values that start with a space', () => {
    const text = formatEvent({ event: ' spaced', id: ' 7', data: 'd' });
    expect(text).toBe('event:  spaced\nid:  7\ndata: d\n\n');
    expect(parseAll(text)).toEqual([{ event: ' spaced', id: ' 7', data: 'd' }]);
  });

  it('writes an empty id as "id: " so the browser resets its last event id', () => {
    const text = formatEvent({ id: '', data: 'x' });
    expect(text).toBe('id: \ndata: x\n\n');
    expect(parseAll(text)).toEqual([{ event: undefined, id: '', data: 'x' }]);
  });

  it('omits the data line when data is undefined', () => {
    const text = formatEvent({ event: 'e', data: undefined });
    expect(text).toBe('event: e\n\n');
    expect(text).not.toContain('data');
    expect(parseAll(text)).toEqual([]);
  });

  it('writes an empty string as one empty data line', () => {
    const text = formatEvent({ data: '' });
    expect(text).toBe('data: \n\n');
    expect(parseAll(text)).toEqual([{ event: undefined, id: undefined, data: '' }]);
  });
});

describe('formatEvent: data line splitting', () => {
  it('splits data on CRLF', () => {
    const text = formatEvent({ data: 'a\r\nb' });
    expect(text).toBe('data: a\ndata: b\n\n');
    expect(roundTrip('a\r\nb')).toBe('a\nb');
  });

  it('splits data on a lone LF', () => {
    const text = formatEvent({ data: 'a\nb' });
    expect(text).toBe('data: a\ndata: b\n\n');
    expect(roundTrip('a\nb')).toBe('a\nb');
  });

  it('splits data on a lone CR and the parser normalises it to LF', () => {
    const text = formatEvent({ data: 'a\rb' });
    expect(text).toBe('data: a\ndata: b\n\n');
    expect(roundTrip('a\rb')).toBe('a\nb');
  });

  it('treats CR CR LF as a lone CR followed by a CRLF', () => {
    const text = formatEvent({ data: 'a\r\r\nb' });
    expect(text).toBe('data: a\ndata: \ndata: b\n\n');
    expect(roundTrip('a\r\r\nb')).toBe('a\n\nb');
  });

  it('treats LF CR as two line breaks', () => {
    const text = formatEvent({ data: 'a\n\rb' });
    expect(text).toBe('data: a\ndata: \ndata: b\n\n');
    expect(roundTrip('a\n\rb')).toBe('a\n\nb');
  });

  it('writes mixed line breaks as one data line each', () => {
    const text = formatEvent({ data: 'one\r\ntwo\nthree\rfour' });
    expect(text).toBe('data: one\ndata: two\ndata: three\ndata: four\n\n');
    expect(roundTrip('one\r\ntwo\nthree\rfour')).toBe('one\ntwo\nthree\nfour');
  });

  it('turns a trailing newline into an extra empty data line that survives the round trip', () => {
    const text = formatEvent({ data: 'x\n' });
    expect(text).toBe('data: x\ndata: \n\n');
    expect(roundTrip('x\n')).toBe('x\n');
  });

  it('turns a leading newline into an empty first data line that survives the round trip', () => {
    expect(formatEvent({ data: '\nx' })).toBe('data: \ndata: x\n\n');
    expect(roundTrip('\nx')).toBe('\nx');
  });

  it('turns a data value of only a newline into two empty data lines', () => {
    expect(formatEvent({ data: '\n' })).toBe('data: \ndata: \n\n');
    expect(roundTrip('\n')).toBe('\n');
  });

  it.each([
    ['U+2028 LINE SEPARATOR', '\u2028'],
    ['U+2029 PARAGRAPH SEPARATOR', '\u2029'],
    ['U+0085 NEXT LINE', '\u0085'],
    ['VT', '\v'],
    ['FF', '\f'],
  ])('does not split data on %s', (_name, separator) => {
    const data = `a${separator}b`;
    const text = formatEvent({ data });
    expect(text).toBe(`data: a${separator}b\n\n`);
    expect(text.split('\n')).toHaveLength(3);
    expect(roundTrip(data)).toBe(data);
  });

  it('keeps NUL, tabs and colons inside data', () => {
    const data = 'a\0b\tc: d:e';
    expect(formatEvent({ data })).toBe(`data: ${data}\n\n`);
    expect(roundTrip(data)).toBe(data);
  });

  it('keeps a value that looks like an SSE field inside one data line', () => {
    const data = 'id: 99\nevent: evil';
    const text = formatEvent({ data });
    expect(text).toBe('data: id: 99\ndata: event: evil\n\n');
    expect(parseAll(text)).toEqual([{ event: undefined, id: undefined, data }]);
  });
});

describe('formatEvent: serialisation', () => {
  it('JSON-serialises an object once', () => {
    expect(formatEvent({ data: { a: 1, b: 'two' } })).toBe('data: {"a":1,"b":"two"}\n\n');
    expect(JSON.parse(roundTrip({ a: 1, b: 'two' }))).toEqual({ a: 1, b: 'two' });
  });

  it('JSON-serialises a number', () => {
    expect(formatEvent({ data: 42 })).toBe('data: 42\n\n');
    expect(formatEvent({ data: -1.5 })).toBe('data: -1.5\n\n');
  });

  it('JSON-serialises null', () => {
    expect(formatEvent({ data: null })).toBe('data: null\n\n');
    expect(roundTrip(null)).toBe('null');
  });

  it('JSON-serialises booleans', () => {
    expect(formatEvent({ data: true })).toBe('data: true\n\n');
    expect(formatEvent({ data: false })).toBe('data: false\n\n');
  });

  it('JSON-serialises an array', () => {
    expect(formatEvent({ data: [1, 'a', null] })).toBe('data: [1,"a",null]\n\n');
  });

  it('does not re-quote a string that looks like JSON', () => {
    expect(formatEvent({ data: '{"a":1}' })).toBe('data: {"a":1}\n\n');
    expect(formatEvent({ data: '"quoted"' })).toBe('data: "quoted"\n\n');
    expect(formatEvent({ data: '42' })).toBe('data: 42\n\n');
  });

  it('keeps newlines inside JSON strings escaped, so an object stays on one data line', () => {
    const text = formatEvent({ data: { log: 'line1\nline2\rline3' } });
    expect(text).toBe('data: {"log":"line1\\nline2\\rline3"}\n\n');
    expect(JSON.parse(roundTrip({ log: 'line1\nline2\rline3' }))).toEqual({ log: 'line1\nline2\rline3' });
  });

  it('uses toJSON when the value has one', () => {
    const date = new Date('2024-01-02T03:04:05.000Z');
    expect(formatEvent({ data: date })).toBe('data: "2024-01-02T03:04:05.000Z"\n\n');
  });

  it('passes a string through serializeData unchanged', () => {
    expect(serializeData('a\nb')).toBe('a\nb');
    expect(serializeData('')).toBe('');
  });

  it.each<[string, () => unknown]>([
    ['undefined', () => undefined],
    ['a BigInt', () => 10n],
    [
      'a circular object',
      () => {
        const circular: Record<string, unknown> = { a: 1 };
        circular.self = circular;
        return circular;
      },
    ],
    ['a function', () => () => 1],
    ['a symbol', () => Symbol('s')],
    ['an object whose toJSON returns undefined', () => ({ toJSON: () => undefined })],
  ])('rejects %s in serializeData with ERR_SSE_DATA_UNSERIALIZABLE', (_name, make) => {
    const value = make();
    const error = formatError(() => serializeData(value));
    expect(error.code).toBe('ERR_SSE_DATA_UNSERIALIZABLE');
    expect(error.name).toBe('SseFormatError');
  });

  it('rejects a BigInt, a cycle and a function in formatEvent too', () => {
    const circular: Record<string, unknown> = {};
    circular.self = circular;
    for (const data of [1n, circular, () => 1, { nested: 2n }]) {
      expect(formatError(() => formatEvent({ data })).code).toBe('ERR_SSE_DATA_UNSERIALIZABLE');
    }
  });

  it('keeps the JSON error as the cause of a serialisation failure', () => {
    const error = formatError(() => serializeData(1n));
    expect(error.cause).toBeInstanceOf(TypeError);
  });
});

describe('formatEvent: injection', () => {
  it.each([
    ['LF', 'a\nb'],
    ['CR', 'a\rb'],
    ['CRLF', 'a\r\nb'],
    ['a trailing LF', 'message\n'],
  ])('rejects an event name containing %s', (_name, event) => {
    expect(formatError(() => formatEvent({ event, data: 'x' })).code).toBe('ERR_SSE_EVENT_NEWLINE');
  });

  it.each([
    ['LF', '1\ndata: evil'],
    ['CR', '1\rdata: evil'],
    ['CRLF', '1\r\n'],
  ])('rejects an id containing %s', (_name, id) => {
    expect(formatError(() => formatEvent({ id, data: 'x' })).code).toBe('ERR_SSE_ID_NEWLINE');
  });

  it('rejects an event name containing NUL', () => {
    expect(formatError(() => formatEvent({ event: 'a\0b', data: 'x' })).code).toBe('ERR_SSE_EVENT_NUL');
  });

  it('rejects an id containing NUL', () => {
    expect(formatError(() => formatEvent({ id: 'a\0b', data: 'x' })).code).toBe('ERR_SSE_ID_NUL');
  });

  it('rejects an event name or id that is not a string', () => {
    expect(formatError(() => formatEvent({ event: 5 as unknown as string })).code).toBe('ERR_SSE_FIELD_TYPE');
    expect(formatError(() => formatEvent({ id: 5 as unknown as string })).code).toBe('ERR_SSE_FIELD_TYPE');
  });

  it('allows U+2028 and other non-line-breaking characters in event and id', () => {
    const text = formatEvent({ event: 'a\u2028b', id: 'i\u0085d', data: 'x' });
    expect(text).toBe('event: a\u2028b\nid: i\u0085d\ndata: x\n\n');
    expect(parseAll(text)).toEqual([{ event: 'a\u2028b', id: 'i\u0085d', data: 'x' }]);
  });
});

describe('formatEvent: retry', () => {
  it.each<[string, unknown]>([
    ['-1', -1],
    ['1.5', 1.5],
    ['NaN', Number.NaN],
    ['Infinity', Number.POSITIVE_INFINITY],
    ["the string '100'", '100'],
    ['a number past 2^53', 2 ** 53],
  ])('rejects a retry of %s', (_name, retry) => {
    expect(formatError(() => formatEvent({ retry: retry as number })).code).toBe('ERR_SSE_RETRY');
  });

  it('writes a retry of 0 as digits', () => {
    const text = formatEvent({ retry: 0 });
    expect(text).toBe('retry: 0\n\n');
    expect(parseStream(text).retries).toEqual([0]);
  });

  it('writes a retry of 3000 as digits', () => {
    const text = formatEvent({ retry: 3000 });
    expect(text).toBe('retry: 3000\n\n');
    const parsed = parseStream(text);
    expect(parsed.errors).toEqual([]);
    expect(parsed.retries).toEqual([3000]);
  });

  it('writes a large retry without exponent notation', () => {
    expect(formatEvent({ retry: Number.MAX_SAFE_INTEGER })).toBe('retry: 9007199254740991\n\n');
  });
});

describe('formatEvent: comments', () => {
  it('writes a one-line comment as ": text"', () => {
    const text = formatEvent({ comment: 'heartbeat' });
    expect(text).toBe(': heartbeat\n\n');
    expect(parseStream(text).comments).toEqual(['heartbeat']);
  });

  it('writes one comment line per input line for LF, CRLF and CR', () => {
    const text = formatEvent({ comment: 'a\nb\r\nc\rd' });
    expect(text).toBe(': a\n: b\n: c\n: d\n\n');
    const parsed = parseStream(text);
    expect(parsed.comments).toEqual(['a', 'b', 'c', 'd']);
    expect(parsed.events).toEqual([]);
  });

  it('cannot be used to inject a field through a newline in a comment', () => {
    const text = formatEvent({ comment: 'x\ndata: injected' });
    expect(text).toBe(': x\n: data: injected\n\n');
    expect(parseStream(text).events).toEqual([]);
  });

  it('writes an empty comment as ": "', () => {
    expect(formatEvent({ comment: '' })).toBe(': \n\n');
  });
});

describe('formatEvent: framing', () => {
  it('ends every event with a blank line', () => {
    for (const message of [{ data: 'x' }, { comment: 'c' }, { retry: 5 }, { event: 'e', id: '1', data: [1] }]) {
      expect(formatEvent(message).endsWith('\n\n')).toBe(true);
      expect(formatEvent(message).endsWith('\n\n\n')).toBe(false);
    }
  });

  it('writes an empty message as a lone blank line', () => {
    expect(formatEvent({})).toBe('\n');
  });

  it('never writes CR, even for data and comments that contain it', () => {
    const text = formatEvent({ comment: 'a\r\nb\rc', event: 'e', id: 'i', retry: 1, data: 'x\r\ny\rz\r' });
    expect(text).not.toContain('\r');
    expect(text).toBe(': a\n: b\n: c\nevent: e\nid: i\nretry: 1\ndata: x\ndata: y\ndata: z\ndata: \n\n');
  });

  it('never writes a BOM', () => {
    const text = formatEvent({ data: 'x' });
    expect(text.charCodeAt(0)).not.toBe(0xfeff);
    expect(text).not.toContain('\uFEFF');
  });

  it('lets a data value that starts with U+FEFF survive, because the frame starts with a field name', () => {
    const text = formatEvent({ data: '\uFEFFx' });
    expect(text.startsWith('data: ')).toBe(true);
    expect(roundTrip('\uFEFFx')).toBe('\uFEFFx');
  });

  it('produces frames that parse back one by one when concatenated', () => {
    const text = [
      formatEvent({ event: 'a', id: '1', data: 'one' }),
      formatEvent({ comment: 'keepalive' }),
      formatEvent({ event: 'b', id: '2', data: 'two\nlines' }),
      formatEvent({ id: '3', data: { n: 3 } }),
    ].join('');
    expect(parseAll(text)).toEqual([
      { event: 'a', id: '1', data: 'one' },
      { event: 'b', id: '2', data: 'two\nlines' },
      { event: undefined, id: '3', data: '{"n":3}' },
    ]);
  });
});

describe('utf8Length', () => {
  it.each([
    ['the empty string', ''],
    ['ASCII', 'hello, world'],
    ['2-byte characters', 'é ñ ß \u0085 \u07ff'],
    ['3-byte characters', '€ \u2028 \u0800 \uffff 中文'],
    ['an emoji (surrogate pair)', '😀'],
    ['mixed text with emoji', 'a😀é€👍🏽x'],
    ['a lone high surrogate at the end', 'a\ud83d'],
    ['a lone high surrogate in the middle', 'a\ud83db'],
    ['a lone low surrogate', 'a\ude00b'],
    ['two high surrogates in a row', '\ud83d\ud83d'],
    ['a low surrogate before a high one', '\ude00\ud83d'],
    ['a high surrogate followed by a valid pair', '\ud83d\ud83d\ude00'],
  ])('matches Buffer.byteLength for %s', (_name, text) => {
    expect(utf8Length(text)).toBe(Buffer.byteLength(text, 'utf8'));
  });

  it('counts concrete byte lengths', () => {
    expect(utf8Length('abc')).toBe(3);
    expect(utf8Length('é')).toBe(2);
    expect(utf8Length('€')).toBe(3);
    expect(utf8Length('😀')).toBe(4);
    expect(utf8Length('\ud83d')).toBe(3);
  });

  it('matches Buffer.byteLength for every code unit from 0 to 0xFFFF', () => {
    for (let code = 0; code <= 0xffff; code += 1) {
      const text = String.fromCharCode(code);
      if (utf8Length(text) !== Buffer.byteLength(text, 'utf8')) {
        expect.fail(`utf8Length(U+${code.toString(16)}) = ${utf8Length(text)}, Buffer says ${Buffer.byteLength(text)}`);
      }
    }
  });
});

describe('formatEvent: seeded random round trip', () => {
  // A small LCG (Numerical Recipes constants) so the run is reproducible without dependencies.
  function lcg(seed: number): () => number {
    let state = seed >>> 0;
    return () => {
      state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
      return state / 0x1_0000_0000;
    };
  }

  const ALPHABET = ['\r', '\n', '\r\n', ' ', ':', 'é', '😀', '\u2028', '\0', 'a', 'b', 'data', '\u0085', '\v', '\f', '\t'];

  function randomStrings(seed: number, count: number): string[] {
    const random = lcg(seed);
    const out: string[] = [];
    for (let i = 0; i < count; i++) {
      const length = Math.floor(random() * 24);
      let s = '';
      for (let j = 0; j < length; j++) s += ALPHABET[Math.floor(random() * ALPHABET.length)];
      out.push(s);
    }
    return out;
  }

  const strings = randomStrings(0x5eed, 500);

  it('draws strings that exercise every line break', () => {
    expect(strings).toHaveLength(500);
    expect(strings.some((s) => s.includes('\r\n'))).toBe(true);
    expect(strings.some((s) => /\r(?!\n)/.test(s))).toBe(true);
    expect(strings.some((s) => /(?<!\r)\n/.test(s))).toBe(true);
    expect(strings.some((s) => s.startsWith(' '))).toBe(true);
    expect(strings.some((s) => s === '')).toBe(true);
  });

  it('parses each of 500 random strings back with CRLF and CR normalised to LF', () => {
    for (const s of strings) {
      const text = formatEvent({ data: s, event: 'e' });
      expect(text).not.toContain('\r');
      const events = parseAll(text);
      const expected = s.replace(/\r\n|\r/g, '\n');
      expect(events, JSON.stringify(s)).toEqual([{ event: 'e', id: undefined, data: expected }]);
    }
  });

  it('parses all 500 random strings back from one concatenated stream', () => {
    const text = strings.map((s, i) => formatEvent({ data: s, event: 'e', id: String(i) })).join('');
    const events = parseAll(text);
    expect(events).toEqual(strings.map((s, i) => ({ event: 'e', id: String(i), data: s.replace(/\r\n|\r/g, '\n') })));
  });
});
