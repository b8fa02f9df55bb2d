-- Creates a bill unless one of its VAs already has a payable bill.
-- KEYS: 1 bill, 2 institution bill index (zset), 3.. VA index keys, then the journal mark
-- (the sentinel checked first, see store::Eval::institution)
-- Times are ms since the epoch (< 2^53), exact as Lua numbers; no money passes here.
-- ARGV: 1 doc, 2 bill key prefix, 3 now (ms), 4 valid_until (ms) or '', 5 hash, 6 score (ms)
-- The bill's index score is its creation (ms), made later than that of every bill its VAs
-- pointed at (bills created in one second on one VA, the first paid: whole-second times
-- would tie), so "a VA's newest bill" is one bill however the journal is applied; it is
-- returned, and journaled as the bill's `created_ms`.
-- Returns {'ok', score}, {'occupied', hash} or {'hash_taken'}.
-- Mirrored by: store/calls.rs calls::CreateBill, filled by Store::create_bill
-- (store/records.rs); apply_bill.lua sets the same bill, index and VA pointers from the
-- journal (Event bill_created); journal/verify.rs compares them.
if redis.call('EXISTS', KEYS[1]) == 1 then
  return {'hash_taken'}
end
local score = tonumber(ARGV[6])
for i = 3, #KEYS - 1 do
  local h = redis.call('GET', KEYS[i])
  if h then
    local r = redis.call('HMGET', ARGV[2] .. h, 'status', 'until')
    if r[1] == 'active' and (not r[2] or r[2] == '' or tonumber(r[2]) > tonumber(ARGV[3])) then
      return {'occupied', h}
    end
    local prev = redis.call('ZSCORE', KEYS[2], h)
    if prev and tonumber(prev) >= score then
      score = tonumber(prev) + 1
    end
  end
end
redis.call('HSET', KEYS[1], 'doc', ARGV[1], 'ver', 1, 'status', 'active', 'until', ARGV[4])
for i = 3, #KEYS - 1 do
  redis.call('SET', KEYS[i], ARGV[5])
end
redis.call('ZADD', KEYS[2], score, ARGV[5])
-- Listed as unjournaled until its journal event is acknowledged: ZADD
-- ipg:{I}:unjournaled <now ms> <the event id without "<I>:"> (the key beside this one, in
-- the same slot, like the void tombstone). The switch journals and announces what an
-- instance left there when it stopped before the acknowledgement (journal/unjournaled.rs;
-- Store::forget_acknowledged takes off what was acknowledged).
local base = string.match(KEYS[1], '^ipg:{[^}]*}:')
local now = redis.call('TIME')
redis.call('ZADD', base .. 'unjournaled', now[1] .. string.format('%03d', math.floor(now[2] / 1000)), string.sub(KEYS[1], #base + 1) .. ':1')
return {'ok', string.format('%d', score)}
