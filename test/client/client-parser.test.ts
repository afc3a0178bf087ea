import { createParser } from 'eventsource-parser';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { EventStreamParser, type ParsedEvent } from '../../src/client/parser.js';

/**
 * The client's WHATWG event-stream parser: line ends split across chunks,
 * the fields, and the `id:` rules eventsource-parser does not follow (an id
 * in a message without data). For everything else it must agree with
 * eventsource-parser, on random streams cut at random places.
 */

type Seen = ['event', ParsedEvent] | ['id', string] | ['retry', number];

function parse(chunks: string[]): Seen[] {
  const seen: Seen[] = [];
  const parser = new EventStreamParser({
    onEvent: (event) => seen.push(['event', event]),
    onId: (id) => seen.push(['id', id]),
    onRetry: (ms) => seen.push(['retry', ms]),
  });
  for (const chunk of chunks) parser.feed(chunk);
  return seen;
}

const event = (data: string, type = 'message', id?: string): Seen => ['event', { type, data, id }];

describe('EventStreamParser', () => {
  it('reads events, ids and retry the way WHATWG does', () => {
    expect(
      parse([
        'retry: 100\n\n',
        ': a comment\n',
        'event: tick\nid: 1\ndata: a\ndata:b\ndata\n\n',
        'data: no id\n\n',
        'event:\ndata: empty type\n\n',
        'id: 2\n\n', // an id alone: no event, but the id counts
        'id:\n\n', // an empty id: resets
        'id: 3\u0000\ndata: nul id ignored\n\n',
        'retry: 1e3\nretry: -1\nretry:  5\nretry: 0\n\n', // only ASCII digits count
        'unknown: field\ndata:  two spaces\n\n',
        'data: incomplete at the end',
      ]),
    ).toEqual<Seen[]>([
      ['retry', 100],
      ['id', '1'],
      event('a\nb\n', 'tick', '1'),
      event('no id'),
      event('empty type'),
      ['id', '2'],
      ['id', ''],
      event('nul id ignored'),
      ['retry', 0],
      event(' two spaces'),
    ]);
  });

  it.each([
    ['LF', '\n'],
    ['CR', '\r'],
    ['CRLF', '\r\n'],
  ])('gives the same result however a stream with %s line ends is cut', (_name, eol) => {
    const text = ['id: 7', 'event: e', 'data: x', '', 'data: y', 'data: z', '', ''].join(eol);
    const whole = parse([text]);
    expect(whole).toEqual<Seen[]>([['id', '7'], event('x', 'e', '7'), event('y\nz')]);
    for (let cut = 0; cut <= text.length; cut++) expect(parse([text.slice(0, cut), text.slice(cut)])).toEqual(whole);
    expect(parse([...text])).toEqual(whole);
  });

  it('does not take a CR that ends a chunk and an LF that starts the next for two line ends', () => {
    expect(parse(['data: a\r', '\ndata: b\r', '\n\r', '\n'])).toEqual([event('a\nb')]);
    expect(parse(['data: a\r', '', '\n\r\n'])).toEqual([event('a')]);
  });

  it('agrees with eventsource-parser on events and retry, for random streams cut at random places', () => {
    const piece = fc.constantFrom('data', 'id', 'event', 'retry', ':', ': ', ' ', 'x', 'é', '7', '\u0000', '\n', '\r', '\r\n', '\n\n');
    const stream = fc.array(piece, { maxLength: 60 }).map((pieces) => pieces.join(''));
    fc.assert(
      fc.property(stream, fc.array(fc.nat(), { maxLength: 5 }), (text, cuts) => {
        const points = [...new Set(cuts.map((cut) => cut % (text.length + 1)))].sort((a, b) => a - b);
        // A last LF: eventsource-parser holds a CR that ends its input until it sees whether an LF follows.
        const chunks = [...[0, ...points].map((from, i) => text.slice(from, points[i] ?? text.length)), '\n'];
        const theirs: Seen[] = [];
        const reference = createParser({
          onEvent: (message) => theirs.push(event(message.data, message.event ?? 'message', message.id)),
          onRetry: (ms) => theirs.push(['retry', ms]),
        });
        for (const chunk of chunks) reference.feed(chunk);
        expect(parse(chunks).filter(([kind]) => kind !== 'id')).toEqual(theirs);
      }),
      { numRuns: 2000 },
    );
  });
});
