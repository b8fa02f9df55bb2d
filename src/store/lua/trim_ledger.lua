-- Takes the ledger's oldest entries off its tail in Redis (docs/retention.md): the
-- sweeper counted `count` entries at the head older than the hot window; they stay in the
-- journal. `ledger_base` counts the entries taken off, so an entry's sequence is its place
-- in the list plus the base (pay.lua, reverse.lua, apply_ledger.lua).
-- KEYS: 1 ledger (list), 2 ledger base (string, a count)
-- ARGV: 1 the base read, 2 count
-- Counts are < 2^53: exact as Lua numbers. Returns how many entries were taken off (0:
-- the base moved since it was read).
-- Mirrored by: store/calls.rs calls::TrimLedger, filled by Store::trim_ledger
-- (store/retention.rs).
if (redis.call('GET', KEYS[2]) or '0') ~= ARGV[1] then
  return 0
end
local n = tonumber(ARGV[2])
redis.call('LTRIM', KEYS[1], n, -1)
redis.call('INCRBY', KEYS[2], n)
return n
