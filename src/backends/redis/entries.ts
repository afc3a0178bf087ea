import { frameFor, type StoredEvent } from '../../core/backend.js';
import { utf8Length } from '../../core/encoder.js';
import { formatEventId } from '../../core/ids.js';

/** A stream entry as Redis returns it: id, then a flat field/value list. */
export type RawEntry = [id: string, fields: string[]];

/** How `data` is kept: strings as they are, anything else as JSON. */
export function encodeData(data: unknown): [kind: 's' | 'j', text: string] {
  return typeof data === 'string' ? ['s', data] : ['j', JSON.stringify(data)];
}

function decodeData(kind: string | undefined, text: string | undefined): unknown {
  return kind === 's' ? text : JSON.parse(text as string);
}

export function storedEvent(
  epoch: string,
  seq: number,
  stream: string,
  type: string,
  timestamp: string,
  data: unknown,
  body: string,
  key?: string | undefined,
): StoredEvent {
  const id = formatEventId(epoch, seq);
  const frame = frameFor(id, body);
  const event = key === undefined ? { id, stream, type, data, timestamp } : { id, stream, type, data, timestamp, key };
  return { seq, event, frame, bytes: utf8Length(frame) };
}

/** A history entry (`<seq>-0`: ts, t, k, d, b, then y for a keyed event) of `stream`. */
export function fromHistory(epoch: string, stream: string, [id, f]: RawEntry): StoredEvent {
  return storedEvent(epoch, parseInt(id, 10), stream, f[3] as string, f[1] as string, decodeData(f[5], f[7]), f[9] as string, f[11]);
}

/** A keyed-state value: the JSON array [seq, ts, t, k, d, b, y] the append script packed. */
export function fromState(epoch: string, stream: string, packed: string): StoredEvent {
  const [seq, ts, type, kind, data, body, key] = JSON.parse(packed) as string[];
  return storedEvent(epoch, Number(seq), stream, type as string, ts as string, decodeData(kind, data), body as string, key);
}

/** A fan-out entry: e, n, s, then the history fields. */
export interface FanoutEntry {
  epoch: string;
  seq: number;
  stream: string;
  fields: string[];
}

export function parseFanout([, f]: RawEntry): FanoutEntry {
  return { epoch: f[1] as string, seq: Number(f[3]), stream: f[5] as string, fields: f };
}

export function fromFanout(entry: FanoutEntry): StoredEvent {
  const f = entry.fields;
  return storedEvent(
    entry.epoch,
    entry.seq,
    entry.stream,
    f[9] as string,
    f[7] as string,
    decodeData(f[11], f[13]),
    f[15] as string,
    f[17],
  );
}
