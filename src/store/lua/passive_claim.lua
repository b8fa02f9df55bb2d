-- Claims due resolution work: members of the pending set whose time has come are pushed
-- a lease into the future, so no other instance takes them meanwhile.
-- Times are ms since the epoch (< 2^53), exact as Lua numbers; no money passes here.
-- KEYS[1] pending set. ARGV[1] now (ms), ARGV[2] lease (ms), ARGV[3] most to claim.
-- Mirrored by: store/calls.rs calls::PassiveClaim, filled by Store::passive_claim
-- (store/passive.rs); passive_save.lua and apply_passive.lua schedule what it claims.
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
local lease = tonumber(ARGV[1]) + tonumber(ARGV[2])
for _, m in ipairs(due) do
  redis.call('ZADD', KEYS[1], 'XX', lease, m)
end
return due
