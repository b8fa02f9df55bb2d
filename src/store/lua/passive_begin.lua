-- Starts a payment forwarded to a passive institution: takes the VA lock and, if the
-- reference has no record yet, records it as being forwarded.
-- KEYS[1] lock, KEYS[2] record, KEYS[3] institution's index of forwarded payments.
-- ARGV[1] owner token, ARGV[2] TTL (ms), ARGV[3] new record doc, ARGV[4] score (ms),
-- ARGV[5] index member.
-- Returns {'locked'}, {'exists', doc, rev} (lock held) or {'new'} (lock held, rev 1).
-- Mirrored by: store/calls.rs calls::PassiveBegin, filled by Store::passive_begin
-- (store/passive.rs); apply_passive.lua from the journal (Event::passive); lock.lua's rule
-- for the lock.
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  if redis.call('GET', KEYS[1]) ~= ARGV[1] then
    return {'locked'}
  end
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
local r = redis.call('HMGET', KEYS[2], 'doc', 'rev')
if r[1] then
  return {'exists', r[1], r[2]}
end
redis.call('HSET', KEYS[2], 'doc', ARGV[3], 'rev', '1')
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[5])
return {'new'}
