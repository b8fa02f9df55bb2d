-- Binds a channel reference to one (institution, VA, amount) the first time it is seen.
-- KEYS[1] reference key, ARGV[1] binding. Returns the existing binding, or false when new.
local cur = redis.call('GET', KEYS[1])
if cur then
  return cur
end
redis.call('SET', KEYS[1], ARGV[1])
return false
