-- Replaces a bill's document if nobody changed it since it was read (revoke).
-- KEYS: 1 bill. ARGV: 1 expected version, 2 new doc, 3 new status, 4 the change's time
-- (ms: a revoked bill is stamped `closed`, `closed_ver`, as apply_bill.lua stamps it).
-- Versions and ms are < 2^53: exact as Lua numbers.
-- Returns {'ok', new version} or {'conflict'}.
-- Mirrored by: store/calls.rs calls::UpdateBill, filled by Store::update_bill
-- (store/records.rs); apply_bill.lua from the journal (Event bill_updated);
-- journal/verify.rs.
if redis.call('HGET', KEYS[1], 'ver') ~= ARGV[1] then
  return {'conflict'}
end
redis.call('HSET', KEYS[1], 'doc', ARGV[2], 'status', ARGV[3])
local ver = redis.call('HINCRBY', KEYS[1], 'ver', 1)
if ARGV[3] ~= 'active' then
  redis.call('HSET', KEYS[1], 'closed', ARGV[4], 'closed_ver', ver)
end
-- Listed as unjournaled until its journal event is acknowledged: ZADD
-- ipg:{I}:unjournaled <now ms> <the event id without "<I>:"> (the key beside this one, in
-- the same slot, like the void tombstone). The switch journals and announces what an
-- instance left there when it stopped before the acknowledgement (journal/unjournaled.rs;
-- Store::forget_acknowledged takes off what was acknowledged).
local base = string.match(KEYS[1], '^ipg:{[^}]*}:')
local now = redis.call('TIME')
redis.call('ZADD', base .. 'unjournaled', now[1] .. string.format('%03d', math.floor(now[2] / 1000)), string.sub(KEYS[1], #base + 1) .. ':' .. ver)
return {'ok', ver}
