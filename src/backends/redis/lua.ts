/**
 * Server-side scripts of the Redis backend. Each runs atomically, which is
 * what makes one global sequence out of many publishing instances.
 *
 * Keys (all share the `{prefix}` hash tag, so a cluster keeps them on one slot):
 *   meta    hash    epoch, seq, evictedThrough, evictedAt
 *   fanout  stream  every event of every stream, in sequence order, `*` ids
 *   index   zset    stream name -> last publish or read (server time, ms)
 *   trim    hash    stream name -> "<seq>|<timestamp>" of the newest event it lost
 *   s:<name> stream the stream's history, entry id `<seq>-0`
 *
 * Entry fields are written in a fixed order and read by position:
 *   history: ts, t (type), k (kind: s = string, j = JSON), d (data), b (wire body)
 *   fanout:  e (epoch), n (seq), s (stream), then the history fields
 */

// Shared helpers. `prefix` is the history key prefix (`{p}:s:`).
const PRELUDE = `
local meta, fanout, index, trim = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local function nowMs()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function seqOf(id) return tonumber(string.match(id, '^(%d+)')) end
-- Drops a stream's history whole, raising the watermark a resume must not cross.
local function evict(prefix, stream)
  local key = prefix .. stream
  local last = redis.call('XREVRANGE', key, '+', '-', 'COUNT', 1)[1]
  if last then
    local m = redis.call('HMGET', meta, 'evictedThrough', 'evictedAt')
    local seq, ts = seqOf(last[1]), last[2][2]
    if seq > tonumber(m[1] or '0') then redis.call('HSET', meta, 'evictedThrough', seq) end
    if ts > (m[2] or '') then redis.call('HSET', meta, 'evictedAt', ts) end
  end
  redis.call('DEL', key)
  redis.call('HDEL', trim, stream)
  redis.call('ZREM', index, stream)
end
-- A new epoch when the history an instance saw is gone: Redis lost its data
-- (no epoch), or restored an older snapshot (fewer events than were seen).
-- Ids from before then must resync, never be continued with reused numbers.
local function ensureEpoch(prefix, candidate, knownEpoch, knownSeq)
  local m = redis.call('HMGET', meta, 'epoch', 'seq')
  local epoch, seq = m[1], tonumber(m[2] or '0')
  if epoch and not (epoch == knownEpoch and seq < knownSeq) then return epoch end
  for _, stream in ipairs(redis.call('ZRANGE', index, 0, -1)) do redis.call('DEL', prefix .. stream) end
  redis.call('DEL', index, trim, meta)
  redis.call('HSET', meta, 'epoch', candidate, 'seq', 0, 'evictedThrough', 0, 'evictedAt', '')
  return candidate
end
`;

/**
 * Appends one event. KEYS: meta, fanout, index, trim, history key.
 * ARGV: prefix, candidate epoch, known epoch, known seq, stream, timestamp,
 * type, kind, data, body, history size, fanout size, max streams.
 * Returns { epoch, seq }.
 */
export const APPEND = `${PRELUDE}
local key = KEYS[5]
local prefix, stream, ts = ARGV[1], ARGV[5], ARGV[6]
local historySize, fanoutSize, maxStreams = tonumber(ARGV[11]), ARGV[12], tonumber(ARGV[13])
local epoch = ensureEpoch(prefix, ARGV[2], ARGV[3], tonumber(ARGV[4]))
local seq = redis.call('HINCRBY', meta, 'seq', 1)
local fresh = redis.call('EXISTS', key) == 0
redis.call('XADD', key, seq .. '-0', 'ts', ts, 't', ARGV[7], 'k', ARGV[8], 'd', ARGV[9], 'b', ARGV[10])
if fresh then
  -- This stream may have been dropped whole before: a resume from before that must resync.
  local m = redis.call('HMGET', meta, 'evictedThrough', 'evictedAt')
  if tonumber(m[1] or '0') > 0 then redis.call('HSET', trim, stream, m[1] .. '|' .. (m[2] or '')) end
else
  local excess = redis.call('XLEN', key) - historySize
  if excess > 0 then
    local gone = redis.call('XRANGE', key, '-', '+', 'COUNT', excess)
    local droppedAt = string.match(redis.call('HGET', trim, stream) or '0|', '|(.*)$')
    for _, entry in ipairs(gone) do if entry[2][2] > droppedAt then droppedAt = entry[2][2] end end
    redis.call('XTRIM', key, 'MAXLEN', historySize)
    redis.call('HSET', trim, stream, seqOf(gone[#gone][1]) .. '|' .. droppedAt)
  end
end
redis.call('ZADD', index, nowMs(), stream)
redis.call('XADD', fanout, 'MAXLEN', '~', fanoutSize, '*', 'e', epoch, 'n', seq, 's', stream,
  'ts', ts, 't', ARGV[7], 'k', ARGV[8], 'd', ARGV[9], 'b', ARGV[10])
if fresh then
  while redis.call('ZCARD', index) > maxStreams do
    local oldest = redis.call('ZRANGE', index, 0, 1)
    evict(prefix, oldest[1] == stream and oldest[2] or oldest[1])
  end
end
return { epoch, seq }
`;

/**
 * Reads history. KEYS: meta, fanout, index, trim.
 * ARGV: prefix, mode, after seq or since time, count, then stream names
 * (none for every stream). Modes: `after` (events with seq > after),
 * `recent` (the last `count`), `since` (per stream the whole retained
 * history, filtered by the caller; for every stream, back to that time).
 * Returns { epoch, seq, evictedThrough, evictedAt, per stream: { trim, exists, entries } }
 * or, for every stream, { ..., fanout entries newest first, complete }.
 */
export const READ = `${PRELUDE}
local prefix, mode, after, since, count = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[3], tonumber(ARGV[4])
local m = redis.call('HMGET', meta, 'epoch', 'seq', 'evictedThrough', 'evictedAt')
local out = { m[1] or '', m[2] or '0', m[3] or '0', m[4] or '' }
if #ARGV == 4 then
  -- Every stream: the fan-out stream is the one history in global order.
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
  return out
end
local now = nowMs()
for i = 5, #ARGV do
  local stream = ARGV[i]
  local key = prefix .. stream
  local entries
  if mode == 'after' then entries = redis.call('XRANGE', key, (after + 1) .. '-0', '+')
  elseif mode == 'recent' then entries = count > 0 and redis.call('XREVRANGE', key, '+', '-', 'COUNT', count) or {}
  else entries = redis.call('XRANGE', key, '-', '+') end
  out[#out + 1] = { redis.call('HGET', trim, stream) or '', redis.call('EXISTS', key), entries }
  redis.call('ZADD', index, 'XX', now, stream)
end
return out
`;

/**
 * Housekeeping, run by every instance now and then. KEYS: meta, fanout, index, trim.
 * ARGV: prefix, idle TTL ms, eviction limit, then streams this instance's
 * subscribers follow (their idle clock restarts: followed streams stay).
 * Returns the number of streams dropped.
 */
export const SWEEP = `${PRELUDE}
local prefix, ttl, limit = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local now = nowMs()
for i = 4, #ARGV do redis.call('ZADD', index, 'XX', now, ARGV[i]) end
local idle = redis.call('ZRANGEBYSCORE', index, '-inf', now - ttl, 'LIMIT', 0, limit)
for _, stream in ipairs(idle) do evict(prefix, stream) end
return #idle
`;

/**
 * Starts a new epoch if the history this instance saw is gone, without
 * appending. KEYS: meta, fanout, index, trim. ARGV: prefix, candidate epoch,
 * known epoch, known seq. Returns the epoch.
 */
export const ENSURE_EPOCH = `${PRELUDE}
return ensureEpoch(ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]))
`;
