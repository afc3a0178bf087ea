import { describe, expect, it } from 'vitest';
import { formatEventId, isValidEpoch, MAX_EVENT_ID_LENGTH, newEpoch, parseEventId } from '../../src/core/ids.js';

describe('formatEventId and parseEventId', () => {
  it('formats an id as "<epoch>.<seq>"', () => {
    expect(formatEventId('ep1', 1)).toBe('ep1.1');
    expect(formatEventId('k1', 1234)).toBe('k1.1234');
  });

  it.each([
    ['ep1', 1],
    ['a', 7],
    ['0', 10],
    ['lzx9q0abcdef', 123456789],
    ['abcdefghijklmnopqrstuvwx', 1], // the longest epoch: 24 characters
    ['z', Number.MAX_SAFE_INTEGER],
  ])('round-trips epoch %s with seq %d', (epoch, seq) => {
    expect(parseEventId(formatEventId(epoch, seq))).toEqual({ epoch, seq });
  });

  it('parses seq 0, the position before the first event (a resync on an empty hub points there)', () => {
    expect(parseEventId('ep1.0')).toEqual({ epoch: 'ep1', seq: 0 });
  });

  it('parses the sequence as a number, not a string', () => {
    const cursor = parseEventId('ep1.42');
    expect(cursor?.seq).toBe(42);
    expect(typeof cursor?.seq).toBe('number');
  });

  it.each<[string, unknown]>([
    ['the empty string', ''],
    ['a word with no dot', 'abc'],
    ['a bare number', '1'],
    ['a seq with a leading zero', 'x.01'],
    ['an upper-case epoch', 'X.1'],
    ['a seq past 2^53', 'a.99999999999999999999'],
    ['exactly 2^53', 'a.9007199254740992'],
    ['a 10,000-character string', 'a'.repeat(10_000)],
    ['a 10,000-character string that otherwise looks like an id', `${'a'.repeat(9_990)}.1`],
    ['an epoch of 25 characters', `${'a'.repeat(25)}.1`],
    ['an empty epoch', '.1'],
    ['an empty seq', 'a.'],
    ['two dots', 'a.b.1'],
    ['a negative seq', 'a.-1'],
    ['a fractional seq', 'a.1.5'],
    ['an exponent', 'a.1e3'],
    ['surrounding whitespace', ' a.1'],
    ['trailing whitespace', 'a.1 '],
    ['a NUL', 'a.1\0'],
    ['a NUL in the epoch', 'a\0b.1'],
    ['a trailing newline', 'a.1\n'],
    ['a newline in the middle', 'a\n.1'],
    ['a trailing CR', 'a.1\r'],
    ['a non-ASCII epoch', 'é.1'],
    ['undefined', undefined],
    ['null', null],
    ['a number', 42],
    ['an object', {}],
    ['an array', ['a.1']],
    ['a String object', new String('a.1')],
  ])('returns null for %s', (_name, value) => {
    expect(() => parseEventId(value)).not.toThrow();
    expect(parseEventId(value)).toBeNull();
  });

  it('never accepts anything longer than MAX_EVENT_ID_LENGTH', () => {
    expect(MAX_EVENT_ID_LENGTH).toBe(64);
    const longest = formatEventId('a'.repeat(24), Number.MAX_SAFE_INTEGER);
    expect(longest.length).toBeLessThanOrEqual(MAX_EVENT_ID_LENGTH);
    expect(parseEventId(longest)).toEqual({ epoch: 'a'.repeat(24), seq: Number.MAX_SAFE_INTEGER });
  });
});

describe('newEpoch', () => {
  it('returns 1,000 distinct lower-case base-36 values', () => {
    const epochs = Array.from({ length: 1_000 }, () => newEpoch());
    expect(new Set(epochs).size).toBe(1_000);
    for (const epoch of epochs) {
      expect(epoch).toMatch(/^[0-9a-z]+$/);
      expect(isValidEpoch(epoch)).toBe(true);
    }
  });

  it('returns epochs that parse back inside ids', () => {
    for (let i = 1; i <= 1_000; i++) {
      const epoch = newEpoch();
      expect(parseEventId(formatEventId(epoch, i))).toEqual({ epoch, seq: i });
    }
  });
});

describe('isValidEpoch', () => {
  it('accepts 1 to 24 lower-case base-36 characters', () => {
    expect(isValidEpoch('a')).toBe(true);
    expect(isValidEpoch('0z9')).toBe(true);
    expect(isValidEpoch('a'.repeat(24))).toBe(true);
  });

  it('rejects empty, too long, upper-case and punctuated epochs', () => {
    expect(isValidEpoch('')).toBe(false);
    expect(isValidEpoch('a'.repeat(25))).toBe(false);
    expect(isValidEpoch('A')).toBe(false);
    expect(isValidEpoch('a.b')).toBe(false);
    expect(isValidEpoch('a-b')).toBe(false);
  });
});
