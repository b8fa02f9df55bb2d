-- Applies a journaled forwarded-payment record: sets it, and its place in the resolver's
-- work set, only if its revision is newer than the stored one. A settled payment past the
-- hot window is applied as the retention sweep leaves it (retire_passive.lua): out of the
-- index, its record expiring at the end of the reference window (at once if that is past).
-- KEYS: 1 record, 2 index of forwarded payments, 3 pending set
-- ARGV: 1 rev, 2 doc, 3 index score (ms), 4 member, 5 due (ms) or '' (not pending),
--       6 the record's expiry (ms since the epoch) or '' (kept and indexed)
-- Revisions and ms timestamps are < 2^53: exact as Lua numbers.
-- A record journaled again without its index score (0) never moves the one stored.
-- Mirrored by: store/calls.rs calls::ApplyPassive, filled by Store::apply (store/apply.rs)
-- from Event.passive; the live writers are passive_begin.lua and passive_save.lua
-- (store/passive.rs); retire_passive.lua; journal/verify.rs.
if ARGV[6] ~= '' then
  redis.call('ZREM', KEYS[2], ARGV[4])
elseif tonumber(ARGV[3]) > 0 then
  redis.call('ZADD', KEYS[2], ARGV[3], ARGV[4])
end
local cur = redis.call('HGET', KEYS[1], 'rev')
if cur and tonumber(cur) >= tonumber(ARGV[1]) then
  -- The same revision already there (applied twice, or live): it leaves as well.
  if ARGV[6] ~= '' and tonumber(cur) == tonumber(ARGV[1]) then
    redis.call('PEXPIREAT', KEYS[1], ARGV[6])
  end
  return 0
end
redis.call('HSET', KEYS[1], 'doc', ARGV[2], 'rev', ARGV[1])
if ARGV[5] == '' then
  redis.call('ZREM', KEYS[3], ARGV[4])
else
  redis.call('ZADD', KEYS[3], ARGV[5], ARGV[4])
end
if ARGV[6] ~= '' then
  redis.call('PEXPIREAT', KEYS[1], ARGV[6])
end
return 1
