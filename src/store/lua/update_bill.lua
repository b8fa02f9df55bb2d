-- Replaces a bill's document if nobody changed it since it was read (revoke).
-- KEYS: 1 bill. ARGV: 1 expected version, 2 new doc, 3 new status.
-- Returns {'ok', new version} or {'conflict'}.
-- Mirrored by: store/calls.rs calls::UpdateBill, filled by Store::update_bill
-- (store/records.rs); apply_bill.lua from the journal (Event bill_updated);
-- journal/verify.rs.
if redis.call('HGET', KEYS[1], 'ver') ~= ARGV[1] then
  return {'conflict'}
end
redis.call('HSET', KEYS[1], 'doc', ARGV[2], 'status', ARGV[3])
return {'ok', redis.call('HINCRBY', KEYS[1], 'ver', 1)}
