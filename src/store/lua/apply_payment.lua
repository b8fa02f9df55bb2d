-- Applies a journaled payment stage. A stage never changes once written, so it is set
-- whole (paid: doc, bill, ts, lseq; reversed: rev_doc, rev_bill, rev_ts, rev_lseq) and
-- applying it again changes nothing.
-- KEYS: 1 payment, 2 bill's payments (zset by ledger sequence), 3 institution payment index
-- ARGV: 1 stage ('paid' | 'reversed'), 2 doc, 3 answered bill, 4 timestamp,
--       5 ledger sequence, 6 score (ms)
-- Mirrored by: store/calls.rs calls::ApplyPayment, filled by Store::apply (store/apply.rs)
-- from Event.payment; the live writers are pay.lua and reverse.lua; journal/verify.rs
-- compares the same fields and indexes.
local new = redis.call('HEXISTS', KEYS[1], ARGV[1] == 'paid' and 'doc' or 'rev_doc') == 0
if ARGV[1] == 'paid' then
  redis.call('HSET', KEYS[1], 'doc', ARGV[2], 'bill', ARGV[3], 'ts', ARGV[4], 'lseq', ARGV[5])
  redis.call('ZADD', KEYS[2], ARGV[5], KEYS[1])
  redis.call('ZADD', KEYS[3], ARGV[6], KEYS[1])
else
  redis.call('HSET', KEYS[1], 'rev_doc', ARGV[2], 'rev_bill', ARGV[3], 'rev_ts', ARGV[4], 'rev_lseq', ARGV[5])
end
return new and 1 or 0
