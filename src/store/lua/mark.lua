-- Advances an institution's journal mark: the next journal offset to apply in its
-- partition. Never moves it back within one partition (two appliers, a late batch).
-- KEYS[1] mark (hash: partition, offset). ARGV[1] partition, ARGV[2] offset.
-- Offsets are Kafka offsets (< 2^53): exact as Lua numbers.
-- Mirrored by: store/calls.rs calls::Mark, filled by Store::set_marks (store/apply.rs) and
-- the recovery fence (store/mod.rs); journal::Journal reads the marks back.
local r = redis.call('HMGET', KEYS[1], 'partition', 'offset')
if r[1] == ARGV[1] and r[2] and tonumber(r[2]) >= tonumber(ARGV[2]) then
  return 0
end
redis.call('HSET', KEYS[1], 'partition', ARGV[1], 'offset', ARGV[2])
return 1
