-- The bill a VA points to, and optionally a payment record, in one round trip.
-- KEYS[1] VA index, KEYS[2] (optional) payment key, then the journal mark (the sentinel
-- checked first, see store::Eval::institution). ARGV[1] bill key prefix (same hash tag).
-- Returns {doc|false, ver|false, payment fields (flat HGETALL)}.
-- Mirrored by: store/calls.rs calls::ReadVa, filled by Store::read_va / bill_by_va /
-- claim_read (store/records.rs); lock_read.lua reads the same under the lock.
local h = redis.call('GET', KEYS[1])
local doc, ver = false, false
if h then
  local r = redis.call('HMGET', ARGV[1] .. h, 'doc', 'ver')
  doc, ver = r[1], r[2]
end
local pay = {}
if #KEYS >= 3 then
  pay = redis.call('HGETALL', KEYS[2])
end
return {doc, ver, pay}
