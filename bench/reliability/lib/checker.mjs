// Checks every client's record against what was published: each client
// connected before publishing began, so for each stream it follows it must
// have seen n = 1..count exactly once, in ascending order.

/**
 * @typedef {object} CheckResult
 * @property {number} clients
 * @property {number} events       events received, over every client
 * @property {number} expected     events every client should have received, summed
 * @property {number} lost         expected (client, stream, n) never received
 * @property {number} duplicated   receptions of an n the client already had on that stream
 * @property {number} outOfOrder   receptions of a new n below the highest the client already had on that stream
 * @property {number} idsOutOfOrder  events whose id sequence was not above the client's previous event's (one global order)
 * @property {number} unexpected   events of a stream the client does not follow, or with an n outside 1..count
 * @property {number} resyncs      resync events received
 * @property {number} complete     clients with every event of every stream they follow
 * @property {number} incomplete   clients missing at least one
 * @property {number} parseErrors  unparsable frames or data
 * @property {object[]} examples   the first few problems, for a report
 */

/**
 * @param {Array<{ id?: number, streams: string[], events: Array<{ stream: string, n: number, id: string }>, resyncs: unknown[], errors?: string[] }>} records
 * @param {Record<string, number> | ((stream: string) => number)} expected  events published per stream
 * @returns {CheckResult}
 */
export function check(records, expected) {
  const countOf = typeof expected === 'function' ? expected : (stream) => expected[stream] ?? 0;
  const result = {
    clients: records.length,
    events: 0,
    expected: 0,
    lost: 0,
    duplicated: 0,
    outOfOrder: 0,
    idsOutOfOrder: 0,
    unexpected: 0,
    resyncs: 0,
    complete: 0,
    incomplete: 0,
    parseErrors: 0,
    examples: [],
  };
  const example = (problem) => {
    if (result.examples.length < 10) result.examples.push(problem);
  };
  for (const record of records) {
    result.events += record.events.length;
    result.resyncs += record.resyncs.length;
    result.parseErrors += record.errors?.length ?? 0;
    /** per stream: what was seen, and the highest n */
    const perStream = new Map(record.streams.map((stream) => [stream, { seen: new Set(), max: 0 }]));
    let lastSeq = -1;
    let lastEpoch;
    for (const event of record.events) {
      const [epoch, seqText] = String(event.id).split('.');
      const seq = Number(seqText);
      if (lastEpoch !== undefined && (epoch !== lastEpoch || !(seq > lastSeq))) {
        result.idsOutOfOrder++;
        example({ client: record.id, problem: 'id not after the previous one', id: event.id, previous: `${lastEpoch}.${lastSeq}` });
      }
      lastEpoch = epoch;
      lastSeq = seq;
      const state = perStream.get(event.stream);
      const count = countOf(event.stream);
      if (!state || !Number.isInteger(event.n) || event.n < 1 || event.n > count) {
        result.unexpected++;
        example({ client: record.id, problem: 'unexpected event', stream: event.stream, n: event.n });
        continue;
      }
      if (state.seen.has(event.n)) {
        result.duplicated++;
        example({ client: record.id, problem: 'duplicate', stream: event.stream, n: event.n });
        continue;
      }
      if (event.n < state.max) {
        result.outOfOrder++;
        example({ client: record.id, problem: 'out of order', stream: event.stream, n: event.n, after: state.max });
      }
      state.seen.add(event.n);
      if (event.n > state.max) state.max = event.n;
    }
    let complete = true;
    for (const [stream, state] of perStream) {
      const count = countOf(stream);
      result.expected += count;
      const missing = count - state.seen.size;
      if (missing > 0) {
        complete = false;
        result.lost += missing;
        if (result.examples.length < 10) {
          const gaps = [];
          for (let n = 1; n <= count && gaps.length < 5; n++) if (!state.seen.has(n)) gaps.push(n);
          example({ client: record.id, problem: 'lost', stream, missing, first: gaps });
        }
      }
    }
    if (complete) result.complete++;
    else result.incomplete++;
  }
  return result;
}

/** True when a client has every event of its streams (for waiting, before the full check). */
export function isComplete(record, expected) {
  const countOf = typeof expected === 'function' ? expected : (stream) => expected[stream] ?? 0;
  let needed = 0;
  for (const stream of record.streams) needed += countOf(stream);
  if (record.events.length < needed) return false;
  return check([record], expected).complete === 1;
}
