-- Saves a forwarded payment's record (compare-and-set on its revision), schedules or
-- unschedules its resolution, and optionally releases the VA lock (owner only).
-- KEYS[1] record, KEYS[2] pending set, KEYS[3] lock, KEYS[4] index of forwarded payments.
-- ARGV[1] doc, ARGV[2] expected rev, ARGV[3] member, ARGV[4] due (ms) or '' (not pending),
-- ARGV[5] lock token to release or ''.
-- Returns {'ok', new rev, index score} or {'conflict'} (nothing written).
-- Mirrored by: store/calls.rs calls::PassiveSave, filled by Store::passive_save
-- (store/passive.rs); apply_passive.lua from the journal; unlock.lua's rule for the lock.
if redis.call('HGET', KEYS[1], 'rev') ~= ARGV[2] then
  return {'conflict'}
end
-- HINCRBY, not tonumber(..) + 1: revisions stay exact integers, never Lua doubles.
redis.call('HSET', KEYS[1], 'doc', ARGV[1])
local rev = redis.call('HINCRBY', KEYS[1], 'rev', 1)
if ARGV[4] == '' then
  redis.call('ZREM', KEYS[2], ARGV[3])
else
  redis.call('ZADD', KEYS[2], ARGV[4], ARGV[3])
end
if ARGV[5] ~= '' and redis.call('GET', KEYS[3]) == ARGV[5] then
  redis.call('DEL', KEYS[3])
end
return {'ok', rev, redis.call('ZSCORE', KEYS[4], ARGV[3]) or '0'}
