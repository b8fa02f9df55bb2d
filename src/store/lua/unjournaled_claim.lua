-- Claims a change listed as unjournaled for one sweep: only if its score is still the one
-- the sweeper read (no other instance claimed it since, and it was not taken off), moves it
-- to ARGV[3] (now plus a window: due again then if this sweeper stops first).
-- KEYS[1] the institution's unjournaled list. ARGV[1] member, ARGV[2] the score read (ms),
-- ARGV[3] the new score (ms). Scores are ms since the epoch (< 2^53): exact as Lua numbers.
-- Returns 1 when claimed, 0 otherwise.
-- Mirrored by: store/calls.rs calls::UnjournaledClaim, filled by Store::claim_unjournaled
-- (store/unjournaled.rs); the commit scripts (pay.lua, reverse.lua, create.lua,
-- update_bill.lua) list the changes.
local s = redis.call('ZSCORE', KEYS[1], ARGV[1])
if s and tonumber(s) == tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], 'XX', ARGV[3], ARGV[1])
  return 1
end
return 0
