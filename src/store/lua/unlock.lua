-- Releases a lock only for its owner. KEYS[1] lock, ARGV[1] owner token.
-- Mirrored by: store/calls.rs calls::Unlock, filled by Store::unlock (store/locks.rs);
-- pay.lua and passive_save.lua release the same lock with their commit.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
