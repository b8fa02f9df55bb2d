-- Releases a lock only for its owner. KEYS[1] lock, ARGV[1] owner token.
-- Mirrored by: Store::unlock (store/mod.rs); pay.lua and passive_save.lua release the same
-- lock with their commit.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
