/**
 * Server-side scripts of the Redis backend. Each runs atomically, which is
 * what makes one global sequence out of many publishing instances.
 *
 * Keys (all share the `{prefix}` hash tag, so a cluster keeps them on one slot):
 *   meta    hash    epoch, seq, evictedThrough, evictedAt (any stream dropped whole), lastAt, indexAt,
 *                   forgottenThrough, forgottenAt (drops whose records were let go)
 *   fanout  stream  every event of every stream, in sequence order, `*` ids
 *   index   zset    stream name -> last publish or read (server time, ms, plus a fraction: useScores)
 *   trim    hash    stream name -> "<gapSeq>|<gapAt>|<trimmedSeq>|<trimmedAt>": the newest
 *                   event it lost without cover (an unkeyed event trimmed, or a key
 *                   dropped), then the newest event trimmed from its tail at all
 *                   (older versions wrote the first two only)
 *   s:<name> stream the stream's history (its tail), entry id `<seq>-0`
 *   k:<name> hash   the stream's keyed state: key -> its latest event, packed
 *                   as a JSON array of strings [seq, ts, t, k, d, b, y]
 *   z:<name> zset   key -> seq of its latest event (oldest first: least recently updated)
 *   dropped zset    stream dropped whole -> its newest seq; its record stays in trim
 *                   (at most maxStreams; older ones fold into meta forgottenThrough/At)
 *
 * Entry fields are written in a fixed order and read by position:
 *   history: ts, t (type), k (kind: s = string, j = JSON), d (data), b (wire body), then y (key) for a keyed event
 *   fanout:  e (epoch), n (seq), s (stream), then the history fields
 *
 * Keyed state. A keyed event supersedes the earlier events of its stream with
 * the same key. Trimming the tail then loses only what nothing stands for:
 * an unkeyed event, or a keyed one whose key was dropped past maxKeysPerStream.
 * Only those raise the stream's `trim` watermark, so a resume from a trimmed
 * position is answered from the tail and the keyed state when every event it
 * missed was superseded by one the state still holds.
 *
 * One clock. An event's timestamp is Redis's TIME when APPEND runs, never the
 * publishing instance's clock, and never earlier than the event before it
 * (meta `lastAt`). So timestamps follow sequence order, a `since` read can stop
 * at the first older one, and the trim and eviction watermarks (`trim`,
 * `evictedAt`) compare with `since` on the same clock. With each instance's own
 * clock, one running behind made a `since` read stop early: a silent loss.
 *
 * Declared keys. Stores that route or lock by the keys a script declares
 * (Redis Cluster routes by them; Dragonfly locks them and refuses any other)
 * need every key a script touches in KEYS. Every script declares meta,
 * fanout, index and trim; APPEND also the stream's history key, and READ the
 * history key of each stream it reads. Three operations touch history keys
 * nobody can name before the script runs, because the script picks them from
 * `index`:
 *   - APPEND, when a new stream takes the history count past maxStreams, drops
 *     the least recently used stream (`evict`);
 *   - APPEND and ENSURE_EPOCH, when they start a new epoch, delete every
 *     history key listed in `index` (`ensureEpoch`);
 *   - SWEEP drops the streams idle past the TTL (`evict`).
 * Naming those keys beforehand would take a read before the script and a
 * check inside it that the choice still holds, retried when it does not: a
 * second round trip, and a window where maxStreams is exceeded, for what is
 * rare. So these three scripts begin with Dragonfly's `allow-undeclared-keys`
 * flag (it must be the first line; Redis reads a comment), and Dragonfly runs
 * them as global transactions. Redis Cluster runs them as they are: it checks
 * the slot of every key a script touches, and the undeclared keys carry the
 * same hash tag, so they are on the declared keys' slot.
 */

const UNDECLARED_KEYS = '--!df flags=allow-undeclared-keys\n';

/**
 * Lua that defines `isoTime(ms)`: a time in ms since 1970 as JavaScript's
 * `toISOString()` writes it (UTC, milliseconds, `Z`), for years 0 to 9999.
 * Redis's Lua has no `os.date`, so the date comes from the day count (the
 * proleptic Gregorian calendar, as in Hinnant's `civil_from_days`).
 */
export const ISO_TIME: string = `
local function isoTime(ms)
  local days = math.floor(ms / 86400000)
  local inDay = ms - days * 86400000
  local z = days + 719468
  local era = math.floor(z / 146097)
  local dayOfEra = z - era * 146097
  local yearOfEra = math.floor((dayOfEra - math.floor(dayOfEra / 1460) + math.floor(dayOfEra / 36524) - math.floor(dayOfEra / 146096)) / 365)
  local dayOfYear = dayOfEra - (365 * yearOfEra + math.floor(yearOfEra / 4) - math.floor(yearOfEra / 100))
  local shifted = math.floor((5 * dayOfYear + 2) / 153)
  local day = dayOfYear - math.floor((153 * shifted + 2) / 5) + 1
  local month = shifted < 10 and shifted + 3 or shifted - 9
  local year = era * 400 + yearOfEra + (month <= 2 and 1 or 0)
  return string.format('%04d-%02d-%02dT%02d:%02d:%02d.%03dZ', year, month, day,
    math.floor(inDay / 3600000), math.floor(inDay / 60000) % 60, math.floor(inDay / 1000) % 60, inDay % 1000)
end
`;

// Shared by every script.
const PRELUDE = `
local meta, fanout, index, trim = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local function nowMs()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function seqOf(id) return tonumber(string.match(id, '^(%d+)')) end
-- A stream's score in index is the time of its last use, in ms. Uses within one millisecond are told
-- apart by a fraction (1/1024 ms each: exact in a double at today's times) that keeps growing
-- across calls in the same millisecond, so the least recently used stream is never a tie and a
-- stream used later never scores lower. Reserves \`count\` consecutive scores; returns the first.
local function useScores(count)
  local base = nowMs()
  local last = tonumber(redis.call('HGET', meta, 'indexAt') or '0')
  if last >= base then base = last + 1 / 1024 end
  redis.call('HSET', meta, 'indexAt', string.format('%.17g', base + (count - 1) / 1024))
  return base
end
-- The hub's meta fields for a read. A prefix nothing was published to yet gets its epoch now, so
-- the read has a position to give (a clean end's position marker needs one, or a client that
-- connected before the first publish reconnects as a fresh one and misses what came meanwhile).
local function readMeta(candidate)
  local m = redis.call('HMGET', meta, 'epoch', 'seq', 'evictedThrough', 'evictedAt')
  if not m[1] then
    redis.call('HSET', meta, 'epoch', candidate, 'seq', 0, 'evictedThrough', 0, 'evictedAt', '', 'forgottenThrough', 0, 'forgottenAt', '')
    m = { candidate, '0', '0', '' }
  end
  return m
end
-- A stream's watermarks in trim: { gapSeq, gapAt, trimmedSeq, trimmedAt } (zeros and '' when none).
-- A value from before keyed events ("seq|at") counted every trimmed event as lost: its seq is also
-- what was trimmed.
local function marksOf(stream)
  local parts = {}
  for part in string.gmatch((redis.call('HGET', trim, stream) or '') .. '|', '([^|]*)|') do parts[#parts + 1] = part end
  local marks = { tonumber(parts[1]) or 0, parts[2] or '', tonumber(parts[3]) or 0, parts[4] or '' }
  if #parts == 2 then marks[3], marks[4] = marks[1], marks[2] end
  return marks
end
-- What a stream with no history and no drop record is charged with: the drops nobody remembers by
-- name. A prefix written before drop records existed has no such field: every drop counts then.
local function forgotten()
  local m = redis.call('HMGET', meta, 'forgottenThrough', 'forgottenAt', 'evictedThrough', 'evictedAt')
  if not m[1] then return tonumber(m[3] or '0'), m[4] or '' end
  return tonumber(m[1]), m[2] or ''
end
-- A history's entries at or after since, newest first. Timestamps never decrease along a
-- history: its events since then are the newest ones.
local function sinceEntries(key, since)
  local entries, cursor = {}, '+'
  while true do
    local batch = redis.call('XREVRANGE', key, cursor, '-', 'COUNT', 200)
    for _, entry in ipairs(batch) do
      if entry[2][2] < since then return entries end
      entries[#entries + 1] = entry
    end
    if #batch < 200 then return entries end
    cursor = '(' .. batch[#batch][1]
  end
end
-- HMGET of any number of fields: unpack() stops near 8,000 values.
local function hmget(key, fields)
  local out = {}
  for i = 1, #fields, 1000 do
    for _, value in ipairs(redis.call('HMGET', key, unpack(fields, i, math.min(i + 999, #fields)))) do out[#out + 1] = value end
  end
  return out
end
`;

// The scripts that drop histories whole. `prefix` is the hub's key prefix
// (`{p}:`): the per-stream keys built from it here are the undeclared ones.
const DROPPING = `
local function dropStream(prefix, stream)
  redis.call('DEL', prefix .. 's:' .. stream, prefix .. 'k:' .. stream, prefix .. 'z:' .. stream)
end
-- Drops a stream's history whole, raising the watermarks a resume must not cross: the global one
-- (for every-stream reads) and the stream's own, kept in \`trim\` after it is gone so that a stream
-- that never had events is not charged with this one's. At most \`keep\` such records: past it the
-- oldest fold into meta's forgottenThrough/forgottenAt, which every unrecorded stream is charged with.
local function evict(prefix, stream, keep)
  local key = prefix .. 's:' .. stream
  local last = redis.call('XREVRANGE', key, '+', '-', 'COUNT', 1)[1]
  local seq, ts = 0, ''
  if last then
    local m = redis.call('HMGET', meta, 'evictedThrough', 'evictedAt')
    seq, ts = seqOf(last[1]), last[2][2]
    if seq > tonumber(m[1] or '0') then redis.call('HSET', meta, 'evictedThrough', seq) end
    if ts > (m[2] or '') then redis.call('HSET', meta, 'evictedAt', ts) end
  end
  dropStream(prefix, stream)
  redis.call('ZREM', index, stream)
  -- Never below what the stream had already lost (its history key may have gone some other way).
  local lost = marksOf(stream)
  if lost[1] > seq then seq = lost[1] end
  if lost[2] > ts then ts = lost[2] end
  local dropped = prefix .. 'dropped'
  redis.call('HSET', trim, stream, string.format('%d|%s|%d|%s', seq, ts, seq, ts))
  redis.call('ZADD', dropped, seq, stream)
  while redis.call('ZCARD', dropped) > keep do
    local oldest = redis.call('ZPOPMIN', dropped)
    -- A stream that has a history again (recreated by some other path) keeps its watermark.
    if redis.call('EXISTS', prefix .. 's:' .. oldest[1]) == 0 then
      local lost = marksOf(oldest[1])
      redis.call('HDEL', trim, oldest[1])
      local forgottenSeq, forgottenAt = forgotten()
      redis.call('HSET', meta, 'forgottenThrough', string.format('%d', math.max(forgottenSeq, lost[1])),
        'forgottenAt', lost[2] > forgottenAt and lost[2] or forgottenAt)
    end
  end
end
-- A new epoch when the history an instance saw is gone: Redis lost its data
-- (no epoch), or restored an older snapshot (fewer events than were seen).
-- Ids from before then must resync, never be continued with reused numbers.
local function ensureEpoch(prefix, candidate, knownEpoch, knownSeq)
  local m = redis.call('HMGET', meta, 'epoch', 'seq')
  local epoch, seq = m[1], tonumber(m[2] or '0')
  if epoch and not (epoch == knownEpoch and seq < knownSeq) then return epoch end
  for _, stream in ipairs(redis.call('ZRANGE', index, 0, -1)) do dropStream(prefix, stream) end
  redis.call('DEL', index, trim, meta, prefix .. 'dropped')
  redis.call('HSET', meta, 'epoch', candidate, 'seq', 0, 'evictedThrough', 0, 'evictedAt', '', 'forgottenThrough', 0, 'forgottenAt', '')
  return candidate
end
`;

/**
 * Appends a batch of events, in order, as one atomic step: what publishes
 * issued together cost Redis one call instead of one each. Each event is
 * appended exactly as it would be alone, one after the other (the same trims,
 * key drops and stream drops, in the same order); what the batch shares is
 * read or written once: the epoch check, the clock, the meta fields, and each
 * stream's watermarks.
 * KEYS: meta, fanout, index, trim, the dropped-streams zset, then for each
 * stream of the batch its history, keyed-state hash and keyed-state zset.
 * ARGV: prefix, candidate epoch, known epoch, known seq, history size, fanout
 * size, max streams, max keys per stream, the number of streams S, their S
 * names (in the order of their keys), then per event: its stream's place in
 * that list (1-based), type, kind, data, body, key ('' for none).
 * Returns { epoch, seq of the first event (the others follow it), timestamp
 * (the batch's; every event of it has this one), keys dropped }.
 */
export const APPEND: string = `${UNDECLARED_KEYS}${PRELUDE}${ISO_TIME}${DROPPING}
local droppedIndex = KEYS[5]
local prefix = ARGV[1]
local historySize, fanoutSize, maxStreams, maxKeys = tonumber(ARGV[5]), ARGV[6], tonumber(ARGV[7]), tonumber(ARGV[8])
local streamCount = tonumber(ARGV[9])
local firstEvent = 10 + streamCount
local eventCount = (#ARGV - firstEvent + 1) / 6
local evictedKeys = 0
-- Each stream's watermarks (see trim above), read when first needed and written at the end, or
-- before a stream drop, which reads and writes them itself.
local marksBy, dirty = {}, {}
local function raise(stream, index, seq, at)
  local marks = marksBy[stream]
  if not marks then
    marks = marksOf(stream)
    marksBy[stream] = marks
  end
  if seq > marks[index] then marks[index] = seq end
  if at > marks[index + 1] then marks[index + 1] = at end
  dirty[stream] = true
  return marks
end
local function writeMarks()
  for stream in pairs(dirty) do
    local marks = marksBy[stream]
    redis.call('HSET', trim, stream, string.format('%d|%s|%d|%s', marks[1], marks[2], marks[3], marks[4]))
  end
  marksBy, dirty = {}, {}
end
local epoch = ensureEpoch(prefix, ARGV[2], ARGV[3], tonumber(ARGV[4]))
local lastSeq = redis.call('HINCRBY', meta, 'seq', eventCount)
local firstSeq = lastSeq - eventCount + 1
-- One clock reading for the batch. If Redis's clock steps back, the events keep the previous
-- one's time: order is what since reads rely on.
local now = nowMs()
local ts = isoTime(now)
local lastAt = redis.call('HGET', meta, 'lastAt')
if lastAt and lastAt > ts then ts = lastAt end
redis.call('HSET', meta, 'lastAt', ts)
-- The batch's uses of streams, one score per event (see useScores).
local indexBase = useScores(eventCount)
-- Each stream's tail is cut back to historySize once per batch, not once per event: the same
-- events go, and each is judged covered or lost as it would have been when its own publish cut it
-- (a key's latest only moves forward until the key is dropped, and a key or stream drop first
-- makes the cuts the publishes before it would have made).
local untrimmed = {}
local function trimStream(stream, slot, size)
  untrimmed[stream] = nil
  local key, stateIndex = KEYS[3 + slot * 3], KEYS[5 + slot * 3]
  local excess = redis.call('XLEN', key) - size
  if excess <= 0 then return end
  if excess > size + 1 and redis.call('EXISTS', stateIndex) == 0 then
    -- No keyed state: every event cut is lost, and only the newest of them counts (timestamps
    -- never decrease along a history). It is the one just past what stays: read size + 1
    -- entries from the newest end, not every entry a large batch cuts.
    local newest = redis.call('XREVRANGE', key, '+', '-', 'COUNT', size + 1)[size + 1]
    local seq, at = seqOf(newest[1]), newest[2][2]
    raise(stream, 3, seq, at)
    raise(stream, 1, seq, at)
    redis.call('XTRIM', key, 'MAXLEN', size)
    return
  end
  local gone = redis.call('XRANGE', key, '-', '+', 'COUNT', excess)
  local gapSeq, gapAt = 0, ''
  raise(stream, 3, seqOf(gone[#gone][1]), gone[#gone][2][2])
  for _, entry in ipairs(gone) do
    -- A keyed event whose key's latest is this one or a newer one is not lost: the state stands for it.
    local entryKey, covered = entry[2][12], false
    if entryKey then
      local latest = redis.call('ZSCORE', stateIndex, entryKey)
      covered = latest and tonumber(latest) >= seqOf(entry[1])
    end
    if not covered then
      gapSeq = seqOf(entry[1])
      if entry[2][2] > gapAt then gapAt = entry[2][2] end
    end
  end
  redis.call('XTRIM', key, 'MAXLEN', size)
  if gapSeq > 0 then raise(stream, 1, gapSeq, gapAt) end
end
local function trimAll()
  for stream, slot in pairs(untrimmed) do trimStream(stream, slot, historySize) end
end
-- Streams known to have a history key in this batch (EXISTS once per stream, not per event), and
-- the streams this batch used, with the event that used each last.
local indexed, present, lastUse = {}, {}, {}
-- The stream a drop takes: the least recently used, as if each event of the batch had its own
-- time. Every stream the batch used has the batch's time, so any other stream is older; among the
-- batch's own, the one its events left longest ago. Never the stream being appended to.
local function leastRecentlyUsed(current)
  local first = redis.call('ZRANGE', index, 0, 1)
  if not indexed[first[1]] then return first[1] end
  -- The oldest score is one of the batch's: there is no older stream than the batch's own.
  local victim, oldest
  for name in pairs(indexed) do
    if name ~= current and (not oldest or lastUse[name] < oldest) then victim, oldest = name, lastUse[name] end
  end
  -- Only the stream being appended to is the batch's (a score from outside the batch's order,
  -- Redis's clock stepping back, say): the oldest other one goes, as a publish alone would pick.
  if not victim then victim = first[1] == current and first[2] or first[1] end
  return victim
end
for e = 0, eventCount - 1 do
  local at = firstEvent + e * 6
  local slot = tonumber(ARGV[at])
  local stream = ARGV[9 + slot]
  local key, stateKey, stateIndex = KEYS[3 + slot * 3], KEYS[4 + slot * 3], KEYS[5 + slot * 3]
  local eventKey = ARGV[at + 5]
  local seq = firstSeq + e
  local fresh = not present[stream] and redis.call('EXISTS', key) == 0
  present[stream] = true
  local id, eventType, kind, data, body = string.format('%d-0', seq), ARGV[at + 1], ARGV[at + 2], ARGV[at + 3], ARGV[at + 4]
  -- Written out, not unpacked from a table: this runs for every event, and the table costs.
  if eventKey == '' then
    redis.call('XADD', key, id, 'ts', ts, 't', eventType, 'k', kind, 'd', data, 'b', body)
  else
    redis.call('XADD', key, id, 'ts', ts, 't', eventType, 'k', kind, 'd', data, 'b', body, 'y', eventKey)
  end
  if fresh then
    -- This stream may have been dropped whole before: a resume from before that must resync. Its own
    -- record says what it lost (and stays its watermark); without one, what was forgotten counts.
    if redis.call('ZREM', droppedIndex, stream) == 0 and not redis.call('HGET', trim, stream) then
      local lostSeq, lostAt = forgotten()
      if lostSeq > 0 then
        raise(stream, 1, lostSeq, lostAt)
        raise(stream, 3, lostSeq, lostAt)
      end
    end
  end
  if eventKey ~= '' then
    redis.call('ZADD', stateIndex, seq, eventKey)
    redis.call('HSET', stateKey, eventKey, cjson.encode({ string.format('%d', seq), ts, eventType, kind, data, body, eventKey }))
    if redis.call('ZCARD', stateIndex) > maxKeys then
      -- The least recently updated key goes, and what it stood for with it: its latest event if
      -- the tail no longer holds it, else only its earlier events the tail trimmed.
      -- Where this event's own publish would stand: the earlier events' cuts made, not yet its own.
      if untrimmed[stream] then trimStream(stream, slot, historySize + 1) end
      local oldest = redis.call('ZPOPMIN', stateIndex)
      local packed = redis.call('HGET', stateKey, oldest[1])
      redis.call('HDEL', stateKey, oldest[1])
      evictedKeys = evictedKeys + 1
      if packed then
        local old = cjson.decode(packed)
        local id = string.format('%d-0', tonumber(old[1]))
        local marks = raise(stream, 1, 0, '')
        -- Asked of the tail itself, not of the trimmed watermark, which a value from an older version may lack.
        if #redis.call('XRANGE', key, id, id) == 0 then raise(stream, 1, tonumber(old[1]), old[2]) else raise(stream, 1, marks[3], marks[4]) end
      end
    end
  end
  untrimmed[stream] = slot
  -- Its place among the most recently used: before anything this batch drops is chosen.
  if fresh or not indexed[stream] then
    redis.call('ZADD', index, indexBase + e / 1024, stream)
    indexed[stream] = true
  end
  if eventKey == '' then
    redis.call('XADD', fanout, 'MAXLEN', '~', fanoutSize, '*', 'e', epoch, 'n', seq, 's', stream, 'ts', ts, 't', eventType, 'k', kind, 'd', data, 'b', body)
  else
    redis.call('XADD', fanout, 'MAXLEN', '~', fanoutSize, '*', 'e', epoch, 'n', seq, 's', stream, 'ts', ts, 't', eventType, 'k', kind, 'd', data, 'b', body, 'y', eventKey)
  end
  lastUse[stream] = e
  if fresh and redis.call('ZCARD', index) > maxStreams then
    trimAll()
    writeMarks()
    while redis.call('ZCARD', index) > maxStreams do
      local victim = leastRecentlyUsed(stream)
      evict(prefix, victim, maxStreams)
      -- A stream dropped here that comes again in this batch starts over, as it would alone.
      indexed[victim], present[victim] = nil, nil
    end
  end
end
trimAll()
writeMarks()
-- Each stream's last use in the batch, so that later batches see their order too.
for stream in pairs(indexed) do redis.call('ZADD', index, indexBase + lastUse[stream] / 1024, stream) end
return { epoch, firstSeq, ts, evictedKeys }
`;

/**
 * Reads history. KEYS: meta, fanout, index, trim, then for each stream read
 * its history, keyed-state hash and keyed-state zset.
 * ARGV: mode, after seq or since time, count, a candidate epoch (used when
 * the prefix has none yet), then the streams' names, in
 * the order of their keys. Modes: `after` (events with seq > after),
 * `recent` (the last `count`), `since` (events at or after that time).
 * Returns { epoch, seq, evictedThrough, evictedAt, per stream: { trim, exists, entries, state } },
 * entries newest first except for `after`; state is the keyed state's
 * events older than the oldest entry (after `after` for that mode), packed,
 * for the caller to merge (and, for `since`, to filter by time).
 */
export const READ: string = `${PRELUDE}
local mode, after, since, count = ARGV[1], tonumber(ARGV[2]), ARGV[2], tonumber(ARGV[3])
local m = readMeta(ARGV[4])
local out = { m[1] or '', m[2] or '0', m[3] or '0', m[4] or '' }
-- A read is a use of its streams (see useScores): they are kept before streams nobody reads.
local touchedAt = useScores(1)
for i = 5, #KEYS, 3 do
  local key, stateKey, stateIndex, stream = KEYS[i], KEYS[i + 1], KEYS[i + 2], ARGV[5 + (i - 5) / 3]
  local entries, oldest
  -- %d, not ..: Lua writes a number of 1e14 or more as 1e+14, which is not a stream id.
  if mode == 'after' then
    entries = redis.call('XRANGE', key, string.format('%d-0', after + 1), '+')
    oldest = entries[1]
  elseif mode == 'recent' then
    entries = count > 0 and redis.call('XREVRANGE', key, '+', '-', 'COUNT', count) or {}
    oldest = entries[#entries]
  else
    entries = sinceEntries(key, since)
    oldest = entries[#entries]
  end
  -- The keyed events the entries do not hold: every one is older than the oldest entry.
  local below = oldest and string.format('(%d', seqOf(oldest[1])) or '+inf'
  local above = mode == 'after' and string.format('(%d', after) or '-inf'
  local state = hmget(stateKey, redis.call('ZRANGEBYSCORE', stateIndex, above, below))
  local marks, exists = redis.call('HGET', trim, stream), redis.call('EXISTS', key)
  if not marks and exists == 0 then
    -- No history and no record of a drop: charged only with the drops nobody remembers by name.
    local lostSeq, lostAt = forgotten()
    marks = string.format('%d|%s', lostSeq, lostAt)
  end
  out[#out + 1] = { marks or '', exists, entries, state }
  redis.call('ZADD', index, 'XX', touchedAt, stream)
end
return out
`;

/**
 * Reads every stream: the fan-out stream is the one history in global
 * order. KEYS: meta, fanout, index, trim. ARGV: mode, after seq or since
 * time, count, prefix, a candidate epoch (used when the prefix has none yet).
 * Returns { epoch, seq, evictedThrough, evictedAt, fanout entries newest
 * first, complete, state, fallback }:
 *   - state: for `recent`, and `since` the fan-out stream answers, every
 *     stream's keyed state as alternating stream names and packed events
 *     (the caller drops those the entries hold, and filters `since` by time);
 *   - fallback: for `after` and `since`, { 'fanout' } when the fan-out stream
 *     still reaches back far enough; else the streams' own histories answer, as
 *     for named streams: { 'streams', complete, { stream, entries oldest first,
 *     state }... }, or { 'expired' } when an `after` read finds a stream that
 *     lost an event after the position that nothing stands for;
 *   - for `recent` and `since`, then the highest sequence number any stream lost without cover.
 */
export const READ_ALL: string = `${UNDECLARED_KEYS}${PRELUDE}
local mode, after, since, count, prefix = ARGV[1], tonumber(ARGV[2]), ARGV[2], tonumber(ARGV[3]), ARGV[4]
local m = readMeta(ARGV[5])
local out = { m[1] or '', m[2] or '0', m[3] or '0', m[4] or '' }
local entries, reached, cursor = {}, mode == 'recent' and count <= 0, '+'
while not reached do
  local batch = redis.call('XREVRANGE', fanout, cursor, '-', 'COUNT', 200)
  if #batch == 0 then break end
  for _, entry in ipairs(batch) do
    local f = entry[2]
    if f[2] ~= m[1] or (mode == 'after' and tonumber(f[4]) <= after)
      or (mode == 'recent' and #entries >= count) or (mode == 'since' and f[8] < since) then
      reached = true
      break
    end
    entries[#entries + 1] = entry
  end
  cursor = '(' .. batch[#batch][1]
end
out[5] = entries
out[6] = reached and 1 or 0
out[7] = {}
-- Keyed state lives per stream; which streams exist is known only from the index (undeclared keys).
local streams = redis.call('ZRANGE', index, 0, -1)
local oldest = entries[#entries]
local covered = reached or (oldest and tonumber(oldest[2][4]) == (mode == 'after' and after + 1 or 1))
  or (not oldest and (mode ~= 'after' or tonumber(out[2]) == after))
if mode ~= 'after' then
  -- The highest loss without cover of any stream: a fresh replay that leaves a cursor below it is followed by a position marker.
  local gap = tonumber(out[3]) or 0
  for _, marks in ipairs(redis.call('HVALS', trim)) do
    local lost = tonumber(string.match(marks, '^(%d*)')) or 0
    if lost > gap then gap = lost end
  end
  out[9] = string.format('%d', gap)
end
if mode == 'recent' or (mode == 'since' and covered) then
  local state = out[7]
  for _, stream in ipairs(streams) do
    for _, packed in ipairs(redis.call('HVALS', prefix .. 'k:' .. stream)) do
      state[#state + 1] = stream
      state[#state + 1] = packed
    end
  end
  out[8] = { 'fanout' }
  return out
end
if covered then
  out[8] = { 'fanout' }
  return out
end
-- The fan-out stream was trimmed past the position: each stream's tail and keyed state may still cover it.
local answer = { 'streams', 1 }
if mode == 'after' and tonumber(out[3]) > after then
  out[8] = { 'expired' }
  return out
end
if mode == 'since' and out[4] >= since then answer[2] = 0 end
for _, stream in ipairs(streams) do
  local marks = marksOf(stream)
  local historyKey = prefix .. 's:' .. stream
  local found
  if mode == 'after' then
    if marks[1] > after then
      out[8] = { 'expired' }
      return out
    end
    found = redis.call('XRANGE', historyKey, string.format('%d-0', after + 1), '+')
  else
    if marks[2] >= since then answer[2] = 0 end
    local newestFirst = sinceEntries(historyKey, since)
    found = {}
    for i = #newestFirst, 1, -1 do found[#found + 1] = newestFirst[i] end
  end
  local below = found[1] and string.format('(%d', seqOf(found[1][1])) or '+inf'
  local above = mode == 'after' and string.format('(%d', after) or '-inf'
  local state = hmget(prefix .. 'k:' .. stream, redis.call('ZRANGEBYSCORE', prefix .. 'z:' .. stream, above, below))
  answer[#answer + 1] = { stream, found, state }
end
out[8] = answer
return out
`;

/**
 * Housekeeping, run by every instance now and then. KEYS: meta, fanout, index, trim.
 * ARGV: prefix, idle TTL ms, eviction limit, drop records kept (max streams), then streams this instance's
 * subscribers follow (their idle clock restarts: followed streams stay).
 * Returns the number of streams dropped.
 */
export const SWEEP: string = `${UNDECLARED_KEYS}${PRELUDE}${DROPPING}
local prefix, ttl, limit, keep = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local now = nowMs()
local touchedAt = useScores(1)
for i = 5, #ARGV do redis.call('ZADD', index, 'XX', touchedAt, ARGV[i]) end
local idle = redis.call('ZRANGEBYSCORE', index, '-inf', now - ttl, 'LIMIT', 0, limit)
for _, stream in ipairs(idle) do evict(prefix, stream, keep) end
return #idle
`;

/**
 * Starts a new epoch if the history this instance saw is gone, without
 * appending. KEYS: meta, fanout, index, trim. ARGV: prefix, candidate epoch,
 * known epoch, known seq. Returns the epoch.
 */
export const ENSURE_EPOCH: string = `${UNDECLARED_KEYS}${PRELUDE}${DROPPING}
return ensureEpoch(ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]))
`;
