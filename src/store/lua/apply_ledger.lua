-- Applies a journaled ledger entry at its sequence number (1-based), and the balance when
-- it is the newest entry. Entries not applied yet below it hold their place as ''.
-- A different entry already at that place is never overwritten: -1 (a conflict the switch
-- counts and logs; see docs/journal.md).
-- KEYS: 1 ledger (list), 2 balance, 3 ledger base (entries taken off the head: an
-- entry's place in the list is its sequence minus the base). ARGV: 1 sequence, 2 entry,
-- 3 balance after (rupiah, Redis's exact string: it never passes through a Lua number),
-- 4 '1' when the entry is past the hot window (docs/retention.md): then it and every
-- entry before it leave the tail (the base moves to it), as the sweep would have done;
-- never put back.
-- Sequences are counts (< 2^53): exact as Lua numbers.
-- Mirrored by: store/calls.rs calls::ApplyLedger, filled by Store::apply (store/apply.rs)
-- from Event.ledger; the live writers are pay.lua and reverse.lua (RPUSH, INCRBY);
-- journal/verify.rs compares entries and balances.
local n = redis.call('LLEN', KEYS[1])
local base = tonumber(redis.call('GET', KEYS[3]) or '0')
local seq = tonumber(ARGV[1]) - base
if seq <= 0 then
  return 0
end
if ARGV[4] == '1' then
  if seq > n then
    redis.call('DEL', KEYS[1])
    redis.call('SET', KEYS[2], ARGV[3])
  else
    redis.call('LTRIM', KEYS[1], seq, -1)
  end
  redis.call('SET', KEYS[3], ARGV[1])
  return 1
end
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
