/**
 * Property-based tests (fast-check): the encoder against a WHATWG parser, the
 * refusal of event names and ids that would inject fields, and every adapter
 * against random Last-Event-ID values, query strings and header sizes, with
 * a model of what the README promises as the oracle.
 */
import { createParser, type EventSourceMessage } from 'eventsource-parser';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { EventManager, formatEvent, SseFormatError, type Delivery, type PublishedEvent } from '../../src/index.js';
import { createSseHandler } from '../../src/adapters/node.js';
import { ADAPTERS, type Adapter } from '../support/adapters.js';
import { cleanupAfterEach, openStream, sleep, startServer, waitUntil, type ParsedEvent, type TestServer } from '../support/helpers.js';

const cleanups = cleanupAfterEach();

// ---------------------------------------------------------------------------
// Generators for text that breaks naive SSE encoders
// ---------------------------------------------------------------------------

/** Line breaks of every kind, NUL, Unicode separators, BOM, field look-alikes, lone surrogates. */
const tricky = fc.constantFrom(
  '\r',
  '\n',
  '\r\n',
  '\n\r',
  '\r\r',
  '\0',
  '\u2028',
  '\u2029',
  '\u0085',
  '\v',
  '\f',
  '\t',
  '\uFEFF',
  ' ',
  '  ',
  ':',
  ': ',
  'data:',
  'data: x',
  'id: 1',
  'event: x',
  'retry: 5',
  '\uD800',
  '\uDFFF',
  '\uD83D\uDE00',
  'é',
);
/** Any code point (lone surrogates included), with the tricky ones far more often than chance. */
const anyChar = fc.oneof(
  { weight: 2, arbitrary: tricky },
  { weight: 3, arbitrary: fc.string({ unit: 'binary', minLength: 1, maxLength: 1 }) },
);
const text = fc.string({ unit: anyChar, maxLength: 40 });
/** An event name or id the encoder must accept: anything without CR, LF or NUL. */
const fieldValue = text.map((s) => s.replace(/[\r\n\0]/g, ''));
/** An event name or id the encoder must refuse: at least one CR, LF or NUL somewhere. */
const injecting = fc.tuple(text, fc.constantFrom('\r', '\n', '\r\n', '\0'), text).map(([before, bad, after]) => before + bad + after);

interface Message {
  event: string | undefined;
  id: string | undefined;
  data: string;
}
// Every message has data: a frame without data dispatches nothing in a WHATWG parser.
const message: fc.Arbitrary<Message> = fc.record({
  event: fc.option(fieldValue, { nil: undefined }),
  id: fc.option(fieldValue, { nil: undefined }),
  data: text,
});

/** The WHATWG parser splits lines on CR, LF and CRLF and joins data lines with LF. */
function normaliseNewlines(s: string): string {
  return s.replace(/\r\n?/g, '\n');
}

/** What a string becomes through UTF-8: lone surrogates turn into U+FFFD (and a leading BOM stays). */
function throughUtf8(s: string): string {
  return new TextDecoder('utf-8', { ignoreBOM: true }).decode(new TextEncoder().encode(s));
}

/** What eventsource-parser must report for a message. An empty `event:` means the default type, reported as undefined. */
function expectedParse(m: Message, map: (s: string) => string = (s) => s): ParsedEvent {
  return {
    event: m.event ? map(m.event) : undefined,
    id: m.id === undefined ? undefined : map(m.id),
    data: normaliseNewlines(map(m.data)),
  };
}

/** Feeds chunks to a fresh eventsource-parser and returns every dispatched event. */
function parse(chunks: Iterable<string>): ParsedEvent[] {
  const events: ParsedEvent[] = [];
  const parser = createParser({ onEvent: (m: EventSourceMessage) => events.push({ event: m.event, id: m.id, data: m.data }) });
  for (const chunk of chunks) parser.feed(chunk);
  return events;
}

/** Cuts `whole` at the given positions (taken modulo its length, so any naturals do). */
function cut<T extends string | Uint8Array>(whole: T, positions: number[]): T[] {
  const at = [...new Set(positions.map((p) => p % (whole.length + 1)))].sort((x, y) => x - y);
  const pieces: T[] = [];
  let from = 0;
  for (const to of [...at, whole.length]) {
    pieces.push(whole.slice(from, to) as T);
    from = to;
  }
  return pieces;
}

/** Decodes byte chunks the way a client does, carrying split UTF-8 sequences over. */
function* decodeChunks(chunks: Uint8Array[]): Generator<string> {
  const decoder = new TextDecoder();
  for (const chunk of chunks) yield decoder.decode(chunk, { stream: true });
  yield decoder.decode();
}

const cutPositions = fc.array(fc.nat(), { maxLength: 16 });

describe('formatEvent and a WHATWG parser', () => {
  it('gives back any string payload exactly, with CR and CRLF as LF, and valid ids and event names as they are', () => {
    fc.assert(
      fc.property(message, (m) => {
        const frame = formatEvent(m);
        // LF line endings only: a CR in the output would be a line break the encoder did not intend.
        expect(frame).not.toMatch(/\r/);
        expect(frame.endsWith('\n\n')).toBe(true);
        expect(parse([frame])).toEqual([expectedParse(m)]);
      }),
      { numRuns: 2000 },
    );
  });

  it('parses a sequence of frames the same however the text is cut into chunks', () => {
    fc.assert(
      fc.property(fc.array(message, { minLength: 1, maxLength: 6 }), cutPositions, (messages, positions) => {
        const stream = messages.map((m) => formatEvent(m)).join('');
        // Cuts may fall between CR and LF of a payload (the encoder wrote LF only), or inside a surrogate pair.
        expect(parse(cut(stream, positions))).toEqual(messages.map((m) => expectedParse(m)));
      }),
      { numRuns: 1000 },
    );
  });

  it('parses the UTF-8 bytes of a sequence of frames the same however they are cut, even inside a character', () => {
    fc.assert(
      fc.property(fc.array(message, { minLength: 1, maxLength: 6 }), cutPositions, (messages, positions) => {
        const bytes = new TextEncoder().encode(messages.map((m) => formatEvent(m)).join(''));
        expect(parse(decodeChunks(cut(bytes, positions)))).toEqual(messages.map((m) => expectedParse(m, throughUtf8)));
      }),
      { numRuns: 1000 },
    );
  });
});

describe('event names and ids that would inject fields', () => {
  /** Asserts that `run` throws the SseFormatError with `code`. */
  function expectFormatError(run: () => unknown, code: string): void {
    let thrown: unknown;
    try {
      run();
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(SseFormatError);
    expect(thrown).toBeInstanceOf(TypeError);
    expect((thrown as SseFormatError).code).toBe(code);
  }

  it('are refused by formatEvent with the code that names the field and the character', () => {
    fc.assert(
      fc.property(injecting, fieldValue, text, (bad, good, data) => {
        // A line break is the worse problem (field injection), so it is the one reported.
        const what = /[\r\n]/.test(bad) ? 'NEWLINE' : 'NUL';
        expectFormatError(() => formatEvent({ event: bad, id: good, data }), `ERR_SSE_EVENT_${what}`);
        expectFormatError(() => formatEvent({ event: good, id: bad, data }), `ERR_SSE_ID_${what}`);
      }),
      { numRuns: 1000 },
    );
  });

  it('are refused by hub.publish as event types: a TypeError, and nothing stored or sent', async () => {
    const hub = new EventManager();
    cleanups.push(() => hub.close());
    const got: Delivery[] = [];
    const onStream = hub.subscribe({ streams: ['s'], onEvent: (d) => got.push(d) });
    const everything = hub.subscribe({ streams: '*', onEvent: (d) => got.push(d) });
    await Promise.all([onStream.ready, everything.ready]);

    await fc.assert(
      fc.asyncProperty(injecting, fc.jsonValue(), async (type, data) => {
        const before = hub.stats();
        await expect(hub.publish('s', type, data)).rejects.toBeInstanceOf(TypeError);
        const after = hub.stats();
        expect(after.published).toBe(before.published);
        expect(after.retainedEvents).toBe(before.retainedEvents);
        expect(after.delivered).toBe(before.delivered);
        expect(got).toEqual([]);
      }),
      { numRuns: 500 },
    );

    // The subscribers are alive and would have seen anything sent: the first thing they get is this.
    const sentinel = await hub.publish('s', 'ok', 1);
    await waitUntil(() => got.length === 2, 2000, 'the sentinel on both subscriptions');
    expect(got.map((d) => d.event.id)).toEqual([sentinel.id, sentinel.id]);
    expect(hub.stats().published).toBe(1);
  });
});

// ---------------------------------------------------------------------------
// The HTTP model: what the README says a request gets
// ---------------------------------------------------------------------------

const HISTORY_SIZE = 5;
const REPLAY = 3;
const MAX_LAST_EVENT_ID = 1024;
const MAX_STREAMS = 50;
/** A real stream name of each kind: plain, non-ASCII, one with a space. */
const STREAMS = ['a', 'b', 'c', 'ünï', 'x y'];

/** A hub with known history behind a server, and the facts the model needs. */
interface World {
  hub: EventManager;
  server: TestServer;
  epoch: string;
  lastSeq: number;
  ids: string[];
  timestamps: string[];
  /** What each stream still holds (the last HISTORY_SIZE events). */
  retained: Map<string, PublishedEvent[]>;
  /** Highest sequence number a stream has lost to trimming. */
  droppedThrough: Map<string, number>;
  /** Timestamp of the newest event a stream has lost. */
  droppedAt: Map<string, string>;
}

function seqOf(id: string): number {
  return Number(id.slice(id.indexOf('.') + 1));
}

/**
 * Publishes a fixed, interleaved history: 'a' overflows its history (so old
 * ids are `expired`), the others do not; payloads include a multi-line string.
 */
async function setupWorld(mount: (hub: EventManager) => Promise<TestServer>): Promise<World> {
  const hub = new EventManager({ historySize: HISTORY_SIZE, replay: REPLAY });
  const server = await mount(hub);
  cleanups.push(
    () => hub.close(),
    () => server.close(),
  );
  const plan: [string, number][] = [
    ['a', 9],
    ['b', 4],
    ['c', 2],
    ['ünï', 3],
    ['x y', 2],
  ];
  const published: PublishedEvent[] = [];
  for (let round = 0; round < 9; round++) {
    for (const [stream, count] of plan) {
      if (round >= count) continue;
      const type = round % 3 === 2 ? 'note' : 'tick';
      const data = type === 'note' ? `line ${round}\r\nnext\rlast ü\u2028` : { n: round, stream };
      published.push(await hub.publish(stream, type, data));
    }
  }
  const retained = new Map<string, PublishedEvent[]>();
  const droppedThrough = new Map<string, number>();
  const droppedAt = new Map<string, string>();
  for (const stream of STREAMS) {
    const all = published.filter((e) => e.stream === stream);
    retained.set(stream, all.slice(-HISTORY_SIZE));
    const dropped = all.slice(0, -HISTORY_SIZE);
    if (dropped.length) {
      droppedThrough.set(stream, seqOf((dropped.at(-1) as PublishedEvent).id));
      droppedAt.set(stream, (dropped.at(-1) as PublishedEvent).timestamp);
    }
  }
  const ids = published.map((e) => e.id);
  return {
    hub,
    server,
    epoch: (ids[0] as string).split('.')[0] as string,
    lastSeq: published.length,
    ids,
    timestamps: published.map((e) => e.timestamp),
    retained,
    droppedThrough,
    droppedAt,
  };
}

type Expected = { status: 400 } | { status: 200; resync: object | undefined; resumed: boolean; events: PublishedEvent[]; after?: number };

/** The kinds of answer, counted so that a test can show its generators reach each of them. */
type Outcome = 'resumed' | 'resynced' | 'fresh' | 'rejected';

/** The README's id scheme: `<epoch>.<seq>`, at most 64 characters, seq a safe integer without a leading zero. */
function parseId(value: string): { epoch: string; seq: number } | null {
  // Seq 0 is the position before the first event (what a resync on an empty hub carries).
  const match = /^([0-9a-z]{1,24})\.(0|[1-9][0-9]{0,15})$/.exec(value);
  if (value.length > 64 || !match) return null;
  const seq = Number(match[2]);
  return Number.isSafeInteger(seq) ? { epoch: match[1] as string, seq } : null;
}

/** The README's `since`: a date, or a date and time with a zone, normalised to ISO; null when malformed. */
function parseSince(value: string): string | null {
  if (value.length > 64) return null;
  if (!/^\d{4}-\d{2}-\d{2}(?:T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:Z|[+-]\d{2}:\d{2}))?$/.test(value)) return null;
  const time = Date.parse(value);
  return Number.isFinite(time) && Math.abs(time) <= 8.64e15 ? new Date(time).toISOString() : null;
}

function bySeq(x: PublishedEvent, y: PublishedEvent): number {
  return seqOf(x.id) - seqOf(y.id);
}

/**
 * What the README promises for a request: the `Request options` table for
 * the 400s, `Event ids and resume semantics` for the rest. `url` is the URL
 * as the client sends it; `header` the Last-Event-ID as the server reads it.
 */
function expectedAnswer(world: World, url: URL, header: string | undefined): Expected {
  const query = url.searchParams;
  const bad = { status: 400 } as const;
  // An empty header falls back to the query; an empty id is a fresh connection.
  const lastEventId = header || query.get('lastEventId') || undefined;
  if (lastEventId !== undefined && lastEventId.length > MAX_LAST_EVENT_ID) return bad;

  let types: Set<string> | undefined;
  if (query.getAll('types').length) {
    const list = query
      .getAll('types')
      .flatMap((v) => v.split(','))
      .map((t) => t.trim());
    types = new Set(list);
    if (list.includes('') || types.size > 64 || [...types].some((t) => t.length > 256 || /[\r\n\0]/.test(t))) return bad;
  }
  const sinceValue = query.get('since');
  const since = sinceValue === null ? undefined : parseSince(sinceValue);
  if (since === null) return bad;

  const streams = [...new Set(query.getAll('stream'))];
  if (streams.length === 0 || streams.length > MAX_STREAMS || streams.some((s) => s.length === 0 || s.length > 256)) return bad;

  const retained = streams.flatMap((s) => world.retained.get(s) ?? []).sort(bySeq);
  const recent = streams.flatMap((s) => (world.retained.get(s) ?? []).slice(-REPLAY)).sort(bySeq);
  let events: PublishedEvent[];
  let resync: object | undefined;
  if (lastEventId !== undefined) {
    // Resuming: `since` is ignored, whatever happens.
    const cursor = parseId(lastEventId);
    const reason = !cursor
      ? 'unknown'
      : cursor.epoch !== world.epoch
        ? 'foreign'
        : cursor.seq > world.lastSeq
          ? 'unknown'
          : streams.some((s) => (world.droppedThrough.get(s) ?? 0) > cursor.seq)
            ? 'expired'
            : undefined;
    if (!reason) {
      const after = (cursor as { seq: number }).seq;
      const exact = retained.filter((e) => seqOf(e.id) > after);
      return { status: 200, resync: undefined, resumed: true, after, events: types ? exact.filter((e) => types.has(e.type)) : exact };
    }
    resync = { reason, lastEventId: lastEventId.slice(0, 64) };
    events = recent;
  } else if (since !== undefined) {
    events = retained.filter((e) => e.timestamp >= since);
    if (streams.some((s) => (world.droppedAt.get(s) ?? '') >= since)) resync = { reason: 'expired', since };
  } else events = recent;
  return { status: 200, resync, resumed: false, events: types ? events.filter((e) => types.has(e.type)) : events };
}

/** An event as the client parses it off the wire. */
function onTheWire(event: PublishedEvent): ParsedEvent {
  return {
    event: event.type,
    id: event.id,
    data: typeof event.data === 'string' ? normaliseNewlines(event.data) : JSON.stringify(event.data),
  };
}

/** Time for anything unexpected to arrive after what was expected: the history goes out in one write. */
const SETTLE_MS = 10;

/** Sends one request and checks that the answer is exactly what the model says. */
async function checkRequest(world: World, search: string, header: string | undefined): Promise<Outcome> {
  const url = `${world.server.url}/events${search}`;
  // Fetch and node:http both strip the whitespace around a header value.
  const seen = header?.replace(/^[\t ]+|[\t ]+$/g, '');
  const expected = expectedAnswer(world, new URL(url), seen);
  const client = await openStream(url, header === undefined ? {} : { 'last-event-id': header });
  try {
    if (expected.status === 400) {
      expect(client.status, client.body).toBe(400);
      expect(client.headers.get('content-type')).toMatch(/^application\/json/);
      const body = JSON.parse(client.body) as { error: unknown; message: unknown };
      expect(body.error).toBe('bad_request');
      expect(body.message).toEqual(expect.stringMatching(/\S/));
      return 'rejected';
    }
    expect(client.status, client.body).toBe(200);
    const want: ParsedEvent[] = expected.events.map(onTheWire);
    // A resync carries the newest id as its cursor, so the next reconnect resumes from there.
    const head = `${world.epoch}.${world.lastSeq}`;
    if (expected.resync) want.unshift({ event: 'resync', id: head, data: JSON.stringify(expected.resync) });
    // A client its answer would leave without an id (nothing replayed, no resync, no id of its own
    // past the start) gets the position marker, so a drop before its first event loses nothing.
    const hasCursor = want.length > 0 || (expected.after ?? 0) > 0;
    if (!hasCursor && world.lastSeq > 0) want.push({ event: 'ssecast-position', id: head, data: '' });
    await client.waitFor((c) => c.retries.length > 0 && c.events.length >= want.length, 3000, `${want.length} events`);
    await sleep(SETTLE_MS);
    // The resync data is compared as parsed JSON (key order is not part of the contract); everything else as text.
    const decoded = (e: ParsedEvent) => (e.event === 'resync' ? { ...e, data: JSON.parse(e.data) as unknown } : e);
    expect(client.events.map(decoded)).toEqual(want.map(decoded));
    expect(client.raw.startsWith('retry: 3000\n\n')).toBe(true);
    return expected.resumed ? 'resumed' : expected.resync ? 'resynced' : 'fresh';
  } finally {
    client.close();
  }
}

/** After the fuzzing: the server still serves a plain request, and every connection is gone once clients close. */
async function checkStillHealthy(world: World): Promise<void> {
  const client = await openStream(`${world.server.url}/events?stream=b`);
  try {
    expect(client.status).toBe(200);
    const want = (world.retained.get('b') as PublishedEvent[]).slice(-REPLAY).map(onTheWire);
    await client.waitFor((c) => c.events.length >= want.length, 3000, 'the replay');
    expect(client.events).toEqual(want);
  } finally {
    client.close();
  }
  await waitUntil(() => world.hub.stats().connections === 0, 5000, 'every connection to close');
}

// ---------------------------------------------------------------------------
// Generators for requests
// ---------------------------------------------------------------------------

/** Last-Event-ID values: real ids, real ids mutated, very long ones, and anything at all. */
function lastEventIds(world: World): fc.Arbitrary<string> {
  const real = fc.constantFrom(...world.ids);
  const epoch = fc.oneof(
    fc.constant(world.epoch),
    fc.stringMatching(/^[0-9a-z]{1,24}$/),
    fc.constantFrom(world.epoch.toUpperCase(), `${world.epoch}0`, world.epoch.slice(1), 'x'.repeat(25), ''),
  );
  const seq = fc.oneof(
    fc.integer({ min: 0, max: world.lastSeq + 3 }).map(String),
    fc.constantFrom(
      '0',
      '01',
      '007',
      '-1',
      '+1',
      '1e1',
      '1.0',
      ' 1',
      '',
      '9007199254740991',
      '9007199254740992',
      '9999999999999999',
      '10000000000000000',
    ),
    fc.bigInt({ min: 0n, max: 10n ** 20n }).map(String),
  );
  const junk = fc.string({ unit: anyChar, maxLength: 6 });
  return fc.oneof(
    { weight: 6, arbitrary: real },
    { weight: 4, arbitrary: fc.tuple(epoch, fc.constantFrom('.', '.', '..', ':', ''), seq).map(([e, dot, s]) => e + dot + s) },
    fc.tuple(real, junk).map(([id, j]) => id + j),
    fc.tuple(junk, real).map(([j, id]) => j + id),
    // Up to and past the 1024 limit, and past the 64 characters an id can have.
    fc.tuple(real, fc.oneof(fc.integer({ min: 0, max: 1100 }), fc.constantFrom(1024, 1025))).map(([id, n]) => id.padEnd(n, '0')),
    fc.string({ unit: anyChar, maxLength: 30 }),
    fc.constant(''),
  );
}

/** What fetch can put in a header: tab, visible ASCII, space and Latin-1 (no CR, LF, NUL or other controls). */
function asHeaderValue(s: string): string {
  return s.replace(/[^\t\x20-\x7e\x80-\xff]/g, '?');
}

/** One `key=value` piece, percent-encoded properly or written raw (junk escapes, `&`, `#`, `+` and all). */
function param(key: fc.Arbitrary<string>, value: fc.Arbitrary<string>): fc.Arbitrary<string> {
  return fc.tuple(key, value, fc.boolean()).map(([k, v, encoded]) => (encoded ? new URLSearchParams([[k, v]]).toString() : `${k}=${v}`));
}

/** Zero or more of `piece`: absent `absent` times in `absent + present`. */
function some(piece: fc.Arbitrary<string>, absent: number, present: number, maxLength = 2): fc.Arbitrary<string[]> {
  return fc.oneof(
    { weight: absent, arbitrary: fc.constant<string[]>([]) },
    { weight: present, arbitrary: fc.array(piece, { minLength: 1, maxLength }) },
  );
}

/**
 * Query strings: mostly well-formed requests for real streams (so that
 * resumes and replays are exercised, not only 400s), with bad values of
 * every option, repeated parameters and junk mixed in, in any order.
 */
function queryStrings(world: World): fc.Arbitrary<string> {
  const stream = fc.oneof(
    { weight: 6, arbitrary: fc.constantFrom(...STREAMS) },
    fc.constantFrom('nope', '', '*', 'a,b', 'A', 'x'.repeat(256), 'x'.repeat(257)),
    fc.string({ unit: anyChar, maxLength: 10 }),
  );
  // Around the limit of 50 streams per connection.
  const manyStreams = fc
    .oneof(fc.constantFrom(MAX_STREAMS, MAX_STREAMS + 1), fc.integer({ min: 40, max: 60 }))
    .map((n) => ['a', ...Array.from({ length: n - 1 }, (_, i) => `s${i}`)].map((name) => `stream=${name}`).join('&'));
  const types = fc.oneof(
    { weight: 3, arbitrary: fc.subarray(['tick', 'note', 'other'], { minLength: 1 }).map((t) => t.join(',')) },
    fc.constantFrom(' note , tick ', 'tick,,note', '', ',', 'nope', 'resync', 'tick%0D', 'x'.repeat(257)),
    // Past the limit of 64 types per connection, or just under it.
    fc
      .oneof(fc.constantFrom(64, 65), fc.integer({ min: 56, max: 72 }))
      .map((n) => ['tick', ...Array.from({ length: n - 1 }, (_, i) => `t${i}`)].join(',')),
    fc.string({ unit: anyChar, maxLength: 10 }),
  );
  const since = fc.oneof(
    fc.constantFrom('2000-01-01T00:00:00Z', '2000-01-01', '2999-12-31T00:00:00.000+01:00', ...world.timestamps),
    fc.constantFrom(
      '2026-01-31T12:00:00',
      '2026-13-45T00:00:00Z',
      'yesterday',
      '',
      '2026-01-31T12:00:00.0000000001Z',
      `2000-01-01T00:00:00.000Z${' '.repeat(50)}`,
      '+2000-01-01',
    ),
    fc.string({ unit: anyChar, maxLength: 10 }),
  );
  const junkKey = fc.oneof(
    fc.constantFrom('Stream', 'stream ', 'stream[]', 'types[0]', 'last-event-id', 'lastEventID', ''),
    fc.string({ unit: anyChar, maxLength: 6 }),
  );
  const junkValue = fc.oneof(
    fc.constantFrom('%', '%zz', '%E0%A4%A', '%00', '%0D%0A', '+', '&&', '==', '#', '%23'),
    fc.string({ unit: anyChar, maxLength: 8 }),
  );
  const parts = fc.tuple(
    fc.oneof(
      { weight: 12, arbitrary: some(param(fc.constant('stream'), stream), 1, 12, 3) },
      manyStreams.map((s) => [s]),
    ),
    some(param(fc.constant('types'), types), 3, 2),
    some(param(fc.constant('since'), since), 4, 1),
    some(param(fc.constant('lastEventId'), lastEventIds(world)), 3, 1),
    some(param(junkKey, junkValue), 1, 1),
  );
  return parts
    .map((groups) => groups.flat())
    .chain((pieces) => fc.shuffledSubarray(pieces, { minLength: pieces.length, maxLength: pieces.length }))
    .map((pieces) => (pieces.length ? `?${pieces.join('&')}` : ''));
}

// ---------------------------------------------------------------------------
// The HTTP properties, against several adapters
// ---------------------------------------------------------------------------

interface Target {
  name: string;
  mount: (hub: EventManager) => Promise<TestServer>;
  numRuns: number;
}

function adapter(name: string): Adapter {
  const found = ADAPTERS.find((a) => a.name === name);
  if (!found) throw new Error(`no adapter named ${name}`);
  return found;
}

const TARGETS: Target[] = [
  { name: 'node:http (createSseHandler)', mount: (hub) => startServer(createSseHandler(hub)), numRuns: 200 },
  { name: 'fetch (behind @hono/node-server)', mount: (hub) => adapter('fetch (behind @hono/node-server)').mount(hub), numRuns: 150 },
  { name: 'Express 5', mount: (hub) => adapter('Express 5').mount(hub), numRuns: 100 },
  { name: 'Fastify 5', mount: (hub) => adapter('Fastify 5').mount(hub), numRuns: 100 },
];

/** node:http's default limit on the request head: past it, node answers 431 before any handler runs. */
const NODE_MAX_HEADER_SIZE = 16 * 1024;

/**
 * Runs `checkRequest` over generated requests and counts the outcomes, so a
 * test can show that its generators reach every kind of answer rather than
 * passing on 400s alone.
 */
async function fuzzRequests(
  world: World,
  search: fc.Arbitrary<string>,
  header: fc.Arbitrary<string | undefined>,
  numRuns: number,
): Promise<Record<Outcome, number>> {
  const seen: Record<Outcome, number> = { resumed: 0, resynced: 0, fresh: 0, rejected: 0 };
  await fc.assert(
    fc.asyncProperty(search, header, async (s, h) => {
      seen[await checkRequest(world, s, h)]++;
    }),
    { numRuns },
  );
  return seen;
}

describe.each(TARGETS)('$name under fuzzed requests', ({ mount, numRuns }) => {
  it('answers random Last-Event-IDs and query strings with an exact resume, a resync then the replay, or a 400', async () => {
    const world = await setupWorld(mount);
    const header = fc.option(lastEventIds(world).map(asHeaderValue), { nil: undefined, freq: 2 });
    const seen = await fuzzRequests(world, queryStrings(world), header, numRuns);
    for (const outcome of Object.keys(seen) as Outcome[]) expect(seen[outcome], outcome).toBeGreaterThanOrEqual(numRuns / 50);
    await checkStillHealthy(world);
  });

  it('answers Last-Event-ID headers of 0 to 16000 characters the same way', async () => {
    const world = await setupWorld(mount);
    // A short query, so that the whole request head stays under node's 16 KiB limit.
    const search = fc.constantFrom('?stream=a', '?stream=b&stream=c', '?stream=a&types=note', '?stream=x%20y&lastEventId=nope');
    const header = fc
      .tuple(
        lastEventIds(world),
        fc.oneof(fc.constantFrom(0, 64, 65, 1024, 1025), fc.integer({ min: 0, max: 16_000 })),
        fc.constantFrom('0', 'x', ' ', 'é', '.'),
      )
      .map(([id, length, fill]) => asHeaderValue(id.padEnd(length, fill).slice(0, length)));
    const seen = await fuzzRequests(world, search, header, Math.ceil(numRuns / 2));
    // Most lengths are over 1024 (400); the short ones resume or resync.
    expect(seen.rejected).toBeGreaterThan(0);
    expect(seen.resumed + seen.resynced + seen.fresh).toBeGreaterThan(0);
    await checkStillHealthy(world);
  });

  it(`leaves a request head over ${NODE_MAX_HEADER_SIZE} bytes to node:http, which answers 431 itself`, async () => {
    const world = await setupWorld(mount);
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: NODE_MAX_HEADER_SIZE + 200, max: 64_000 }), async (length) => {
        const client = await openStream(`${world.server.url}/events?stream=a`, { 'last-event-id': `${world.ids[0]}${'9'.repeat(length)}` });
        client.close();
        expect(client.status).toBe(431);
      }),
      { numRuns: 10 },
    );
    await checkStillHealthy(world);
  });
});
