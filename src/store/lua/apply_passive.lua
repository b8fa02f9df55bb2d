-- Applies a journaled forwarded-payment record: sets it, and its place in the resolver's
-- work set, only if its revision is newer than the stored one.
-- KEYS: 1 record, 2 index of forwarded payments, 3 pending set
-- ARGV: 1 rev, 2 doc, 3 index score (ms), 4 member, 5 due (ms) or '' (not pending)
-- Revisions and ms timestamps are < 2^53: exact as Lua numbers.
-- A record journaled again without its index score (0) never moves the one stored.
-- Mirrored by: store/calls.rs calls::ApplyPassive, filled by Store::apply (store/apply.rs)
-- from Event.passive; the live writers are passive_begin.lua and passive_save.lua
-- (store/passive.rs); journal/verify.rs.
if tonumber(ARGV[3]) > 0 then
  redis.call('ZADD', KEYS[2], ARGV[3], ARGV[4])
end
local cur = redis.call('HGET', KEYS[1], 'rev')
if cur and tonumber(cur) >= tonumber(ARGV[1]) then
  return 0
end
redis.call('HSET', KEYS[1], 'doc', ARGV[2], 'rev', ARGV[1])
if ARGV[5] == '' then
  redis.call('ZREM', KEYS[3], ARGV[4])
else
  redis.call('ZADD', KEYS[3], ARGV[5], ARGV[4])
end
return 1
