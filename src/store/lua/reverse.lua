-- Commits one reversal atomically: bill, payment record, balance, ledger. Returns
-- {'ok', ledger sequence, balance after} for the journal event.
-- KEYS and ARGV as pay.lua's (one caller builds both): 1 bill, 2 payment, 5 ledger (list),
-- 6 balance; 3, 4, 7, 8 (indexes, lock, VA index) and ARGV 9 to 15 are not used here.
-- ARGV: 1 expected bill version, 2 new bill doc, 3 new bill status, 4 reversed payment doc,
--       5 the bill as answered (JSON), 6 answer timestamp, 7 ledger entry (a JSON object without its closing '}':
--       the script appends balance_after and closes it),
--       8 amount
-- Mirrored by: store/calls.rs calls::Commit (pay.lua's layout), filled by
-- Store::commit/commit_reversal (store/records.rs); apply_payment.lua (stage reversed) and
-- apply_ledger.lua from the journal; journal/verify.rs.
if redis.call('EXISTS', KEYS[2]) == 0 then
  return {'missing'}
end
-- Past the hot window only the compact record is left (retire_payment.lua): the caller
-- read the full record, so it was retired meanwhile.
if redis.call('HEXISTS', KEYS[2], 'doc') == 0 then
  return {'retired'}
end
if redis.call('HEXISTS', KEYS[2], 'rev_doc') == 1 then
  return {'already'}
end
if redis.call('HGET', KEYS[1], 'ver') ~= ARGV[1] then
  return {'conflict'}
end
-- Money first (see pay.lua): DECRBY within int64 or nothing is written; the balance is read
-- back as Redis's exact string, never through a Lua number.
local moved = redis.pcall('DECRBY', KEYS[6], ARGV[8])
if type(moved) == 'table' and moved.err then
  return {'balance_refused', moved.err}
end
local bal = redis.call('GET', KEYS[6])
redis.call('HSET', KEYS[1], 'doc', ARGV[2], 'status', ARGV[3])
redis.call('HINCRBY', KEYS[1], 'ver', 1)
-- The sequence counts the entries the retention sweep took off too (see pay.lua).
local base = string.match(KEYS[1], '^ipg:{[^}]*}:')
local seq = redis.call('RPUSH', KEYS[5], ARGV[7] .. ',"balance_after":' .. bal .. '}')
  + tonumber(redis.call('GET', base .. 'ledger_base') or '0')
redis.call('HSET', KEYS[2], 'rev_doc', ARGV[4], 'rev_bill', ARGV[5], 'rev_ts', ARGV[6], 'rev_lseq', seq)
-- Listed as unjournaled until its journal event is acknowledged: ZADD
-- ipg:{I}:unjournaled <now ms> <the event id without "<I>:"> (the key beside this one, in
-- the same slot, like the void tombstone). The switch journals and announces what an
-- instance left there when it stopped before the acknowledgement (journal/unjournaled.rs;
-- Store::forget_acknowledged takes off what was acknowledged).
local now = redis.call('TIME')
redis.call('ZADD', base .. 'unjournaled', now[1] .. string.format('%03d', math.floor(now[2] / 1000)), string.sub(KEYS[2], #base + 1) .. ':reversed')
return {'ok', seq, bal}
