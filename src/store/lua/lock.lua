-- Takes a lock if free, or takes it back (TTL renewed) if the caller already owns it.
-- KEYS[1] lock, ARGV[1] owner token, ARGV[2] TTL (ms). Returns 1 when the lock is ours.
-- Mirrored by: store/calls.rs calls::Lock, filled by Store::try_lock (store/locks.rs),
-- lock::take (the one wait); unlock.lua releases; lock_read.lua and passive_begin.lua take
-- the same lock in their own round trips.
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return 1
end
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
