-- Retires a payment past the hot window (docs/retention.md): its full record (documents,
-- answered bill, timestamps) becomes the compact record a repeat of its reference is
-- answered from (id, VA, amount, bill, when paid, ledger sequences), expiring at the end
-- of the reference window; it leaves the institution's and the bill's payment indexes.
-- Only the record as the sweeper read it is retired: a reversal committed since (another
-- rev_lseq) leaves it for the next sweep, and so does a stage not yet journaled.
-- KEYS: 1 payment, 2 institution payment index (zset), 3 the bill's payments (zset)
-- ARGV: 1 ledger sequence read (lseq), 2 reversal's ledger sequence read or '',
--       3 payment id, 4 VA number, 5 amount (rupiah, a string: never a Lua number),
--       6 bill hash, 7 paid at (ms), 8 the compact record's expiry (ms since the epoch)
-- Returns 1 retired, 0 left as it is (changed since it was read, or no full record: then
-- only its index places go).
-- Mirrored by: store/calls.rs calls::RetirePayment, filled by Store::retire_payments
-- (store/retention.rs); apply_payment.lua writes the same compact record from the
-- journal; Store::payment_record reads it (StoreError::Retired).
local r = redis.call('HMGET', KEYS[1], 'doc', 'lseq', 'rev_lseq')
if not r[1] then
  redis.call('ZREM', KEYS[2], KEYS[1])
  redis.call('ZREM', KEYS[3], KEYS[1])
  return 0
end
if (r[2] or '') ~= ARGV[1] or (r[3] or '') ~= ARGV[2] then
  return 0
end
-- A stage still listed as unjournaled (an answer in doubt, an instance that stopped) is
-- settled from the full record first (journal/unjournaled.rs): it waits.
local base = string.match(KEYS[1], '^ipg:{[^}]*}:')
local listed = string.sub(KEYS[1], #base + 1)
if redis.call('ZSCORE', base .. 'unjournaled', listed .. ':paid')
  or redis.call('ZSCORE', base .. 'unjournaled', listed .. ':reversed') then
  return 0
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'id', ARGV[3], 'va_number', ARGV[4], 'amount', ARGV[5],
  'bill_hash', ARGV[6], 'paid_ms', ARGV[7], 'lseq', ARGV[1])
if ARGV[2] ~= '' then
  redis.call('HSET', KEYS[1], 'rev_lseq', ARGV[2])
end
redis.call('PEXPIREAT', KEYS[1], ARGV[8])
redis.call('ZREM', KEYS[2], KEYS[1])
redis.call('ZREM', KEYS[3], KEYS[1])
return 1
