-- Retires a closed bill past the hot window (docs/retention.md): a bill paid or revoked a
-- window ago (`closed`, stamped with its version `closed_ver` by pay.lua, update_bill.lua
-- and apply_bill.lua), or an active bill whose valid_until is a window past, with none of
-- its payments still in the hot window, leaves Redis with its place in the institution's
-- bill index and the VA pointers that still point at it (the VA can be billed again). Its
-- key keeps a tombstone (`ver`, `gone`) until the reference window ends, so a late event of
-- an older version never brings it back when the journal is applied (apply_bill.lua). A
-- closed bill without a stamp of its version (written before stamps existed) is stamped
-- now, and leaves a window later.
-- KEYS: 1 bill, 2 institution bill index (zset), 3 the bill's payments (zset),
--       4.. VA index keys (one per prefix)
-- ARGV: 1 version read, 2 hash, 3 now (ms), 4 the hot window's start (ms), 5 the
--       tombstone's expiry (ms)
-- Times are ms since the epoch (< 2^53): exact as Lua numbers. No money passes here.
-- Returns 1 retired, -1 an index member without a bill (taken off the index), 0 kept
-- (open, changed since read, payments still hot, or just stamped).
-- Mirrored by: store/calls.rs calls::RetireBill, filled by Store::retire_bills
-- (store/retention.rs); apply_bill.lua retires the same bills from the journal.
local r = redis.call('HMGET', KEYS[1], 'ver', 'status', 'until', 'closed', 'closed_ver', 'doc')
if not r[6] then
  redis.call('ZREM', KEYS[2], ARGV[2])
  return -1
end
if r[1] ~= ARGV[1] or redis.call('EXISTS', KEYS[3]) == 1 then
  return 0
end
local cutoff = tonumber(ARGV[4])
if r[2] == 'active' then
  if not r[3] or r[3] == '' or tonumber(r[3]) >= cutoff then
    return 0
  end
else
  if r[5] ~= r[1] then
    redis.call('HSET', KEYS[1], 'closed', ARGV[3], 'closed_ver', r[1])
    return 0
  end
  if tonumber(r[4]) >= cutoff then
    return 0
  end
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'ver', r[1], 'gone', '1')
redis.call('PEXPIREAT', KEYS[1], ARGV[5])
redis.call('ZREM', KEYS[2], ARGV[2])
for i = 4, #KEYS do
  if redis.call('GET', KEYS[i]) == ARGV[2] then
    redis.call('DEL', KEYS[i])
  end
end
return 1
