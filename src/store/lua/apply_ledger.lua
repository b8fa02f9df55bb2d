-- Applies a journaled ledger entry at its sequence number (1-based), and the balance when
-- it is the newest entry. Entries not applied yet below it hold their place as ''.
-- A different entry already at that place is never overwritten: -1 (a conflict the switch
-- counts and logs; see docs/journal.md).
-- KEYS: 1 ledger (list), 2 balance. ARGV: 1 sequence, 2 entry, 3 balance after (rupiah,
-- Redis's exact string: it never passes through a Lua number).
-- Sequences are counts (< 2^53): exact as Lua numbers.
-- Mirrored by: store/calls.rs calls::ApplyLedger, filled by Store::apply (store/apply.rs)
-- from Event.ledger; the live writers are pay.lua and reverse.lua (RPUSH, INCRBY);
-- journal/verify.rs compares entries and balances.
local n = redis.call('LLEN', KEYS[1])
local seq = tonumber(ARGV[1])
if n >= seq then
  local cur = redis.call('LINDEX', KEYS[1], seq - 1)
  if cur == ARGV[2] then
    return 0
  end
  if cur ~= '' then
    return -1
  end
  redis.call('LSET', KEYS[1], seq - 1, ARGV[2])
  return 1
end
for _ = n + 1, seq - 1 do
  redis.call('RPUSH', KEYS[1], '')
end
redis.call('RPUSH', KEYS[1], ARGV[2])
redis.call('SET', KEYS[2], ARGV[3])
return 1
