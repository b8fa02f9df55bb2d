-- Applies a journaled bill: sets it only if its version is newer than the stored one,
-- indexes it, and points each of its VAs at it unless the VA points at a bill created
-- later (a VA's newest bill wins, whatever order events arrive in).
-- KEYS: 1 bill, 2 institution bill index (zset by creation ms), 3.. VA index keys
-- ARGV: 1 version, 2 doc, 3 status, 4 valid_until (ms) or '', 5 hash, 6 created (ms),
--       7 '1' when the bill is closed past the hot window (docs/retention.md): then it is
--       never set again; a stored version not newer leaves Redis with its index place and
--       the VA pointers still at it, and its key keeps a tombstone (`ver`, `gone`) until
--       ARGV[9], as retire_bill.lua does, 8 when it closed (ms: a paid or revoked bill is
--       stamped `closed`, `closed_ver` as pay.lua and update_bill.lua stamp it), 9 the
--       tombstone's expiry (ms)
-- Versions and ms timestamps are < 2^53: exact as Lua numbers. No money passes here.
-- Mirrored by: store/calls.rs calls::ApplyBill, filled by Store::apply (store/apply.rs)
-- from Event.bill; the live writers are create.lua, update_bill.lua, pay.lua and
-- reverse.lua; journal/verify.rs (Expected::add) folds events the same way (newest version,
-- a VA's newest bill).
local cur = redis.call('HGET', KEYS[1], 'ver')
if ARGV[7] == '1' then
  if cur and tonumber(cur) > tonumber(ARGV[1]) then
    return 0
  end
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[1], 'ver', ARGV[1], 'gone', '1')
  redis.call('PEXPIREAT', KEYS[1], ARGV[9])
  redis.call('ZREM', KEYS[2], ARGV[5])
  for i = 3, #KEYS do
    if redis.call('GET', KEYS[i]) == ARGV[5] then
      redis.call('DEL', KEYS[i])
    end
  end
  return cur and 1 or 0
end
local applied = 0
if not cur or tonumber(cur) < tonumber(ARGV[1]) then
  redis.call('HSET', KEYS[1], 'doc', ARGV[2], 'ver', ARGV[1], 'status', ARGV[3], 'until', ARGV[4])
  if ARGV[3] ~= 'active' then
    redis.call('HSET', KEYS[1], 'closed', ARGV[8], 'closed_ver', ARGV[1])
  end
  if cur then
    redis.call('HDEL', KEYS[1], 'gone')
    redis.call('PERSIST', KEYS[1])
  end
  applied = 1
end
-- GT: a bill's index score only grows (its created event carries the score create.lua
-- made later than the VA's earlier bills; its later events the whole-second creation).
redis.call('ZADD', KEYS[2], 'GT', ARGV[6], ARGV[5])
local mine = tonumber(redis.call('ZSCORE', KEYS[2], ARGV[5]) or ARGV[6])
for i = 3, #KEYS do
  local h = redis.call('GET', KEYS[i])
  if not h then
    redis.call('SET', KEYS[i], ARGV[5])
  elseif h ~= ARGV[5] then
    local s = redis.call('ZSCORE', KEYS[2], h)
    if not s or tonumber(s) < mine or (tonumber(s) == mine and h < ARGV[5]) then
      redis.call('SET', KEYS[i], ARGV[5])
    end
  end
end
return applied
