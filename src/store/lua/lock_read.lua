-- Takes the VA lock and, if taken, reads the bill the VA points to and the payment record.
-- KEYS[1] lock, KEYS[2] VA index, KEYS[3] payment key.
-- ARGV[1] owner token, ARGV[2] TTL (ms), ARGV[3] bill key prefix (same hash tag).
-- Returns {'ok'|'locked', doc|false, ver|false, payment fields (flat HGETALL)}.
-- The owner may take its own lock again (a retried message): the TTL is renewed.
-- Mirrored by: store/calls.rs calls::LockRead, filled by Store::claim_lock_read
-- (store/records.rs, with bind.lua in one pipeline); lock.lua's rule for the lock;
-- read_va.lua's read.
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  if redis.call('GET', KEYS[1]) ~= ARGV[1] then
    return {'locked', false, false, {}}
  end
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
local h = redis.call('GET', KEYS[2])
local doc, ver = false, false
if h then
  local r = redis.call('HMGET', ARGV[3] .. h, 'doc', 'ver')
  doc, ver = r[1], r[2]
end
return {'ok', doc, ver, redis.call('HGETALL', KEYS[3])}
