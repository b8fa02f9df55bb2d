-- Retires a settled forwarded payment past the hot window (docs/retention.md): it leaves
-- the institution's index of forwarded payments, and its record (the answer a repeat of its
-- reference replays) expires at the end of the reference window, counted from its last
-- change. Only the record as the sweeper read it (its revision), and only when the resolver
-- has nothing due for it.
-- KEYS: 1 record, 2 index of forwarded payments, 3 pending set
-- ARGV: 1 revision read, 2 member (`channel:reference`), 3 expiry (ms since the epoch)
-- Returns 1 retired, 0 left as it is (changed since it was read, or pending), -1 an index
-- member without a record (taken off the index).
-- Mirrored by: store/calls.rs calls::RetirePassive, filled by Store::retire_passives
-- (store/retention.rs); apply_passive.lua sets the same expiry from the journal.
local rev = redis.call('HGET', KEYS[1], 'rev')
if not rev then
  redis.call('ZREM', KEYS[2], ARGV[2])
  return -1
end
if rev ~= ARGV[1] or redis.call('ZSCORE', KEYS[3], ARGV[2]) then
  return 0
end
redis.call('PEXPIREAT', KEYS[1], ARGV[3])
redis.call('ZREM', KEYS[2], ARGV[2])
return 1
