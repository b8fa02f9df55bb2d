-- Applies a journaled payment stage. A stage never changes once written, so it is set
-- whole (paid: doc, bill, ts, lseq; reversed: rev_doc, rev_bill, rev_ts, rev_lseq) and
-- applying it again changes nothing.
-- KEYS: 1 payment, 2 bill's payments (zset by ledger sequence), 3 institution payment index
-- ARGV: 1 stage ('paid' | 'reversed'), 2 doc, 3 answered bill, 4 timestamp,
--       5 ledger sequence, 6 score (ms: when paid, for both stages), 7 '' while the
--       payment is in the hot window, else the compact record's expiry (ms), 8 payment id,
--       9 VA number, 10 amount (rupiah, a string), 11 bill hash
-- A payment past the hot window (docs/retention.md) is applied as the compact record
-- retire_payment.lua leaves (never its full record or index places again), unless Redis
-- still holds its full record (the sweep retires it).
-- Mirrored by: store/calls.rs calls::ApplyPayment, filled by Store::apply (store/apply.rs)
-- from Event.payment; the live writers are pay.lua and reverse.lua; journal/verify.rs
-- compares the same fields and indexes.
if ARGV[7] ~= '' and redis.call('HEXISTS', KEYS[1], 'doc') == 0 then
  local field = ARGV[1] == 'paid' and 'lseq' or 'rev_lseq'
  local new = redis.call('HEXISTS', KEYS[1], field) == 0
  redis.call('HSET', KEYS[1], 'id', ARGV[8], 'va_number', ARGV[9], 'amount', ARGV[10],
    'bill_hash', ARGV[11], 'paid_ms', ARGV[6], field, ARGV[5])
  redis.call('PEXPIREAT', KEYS[1], ARGV[7])
  return new and 1 or 0
end
local new = redis.call('HEXISTS', KEYS[1], ARGV[1] == 'paid' and 'doc' or 'rev_doc') == 0
if ARGV[1] == 'paid' then
  redis.call('HSET', KEYS[1], 'doc', ARGV[2], 'bill', ARGV[3], 'ts', ARGV[4], 'lseq', ARGV[5])
  redis.call('ZADD', KEYS[2], ARGV[5], KEYS[1])
  redis.call('ZADD', KEYS[3], ARGV[6], KEYS[1])
else
  redis.call('HSET', KEYS[1], 'rev_doc', ARGV[2], 'rev_bill', ARGV[3], 'rev_ts', ARGV[4], 'rev_lseq', ARGV[5])
end
return new and 1 or 0
