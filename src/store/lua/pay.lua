-- Commits one payment atomically: bill, payment record, indexes, balance, ledger.
-- Every number stays a string: amounts and balances are exact over the whole int64 range.
-- On success it also releases the VA lock if the caller still owns it, and returns
-- {'ok', ledger sequence, balance after} for the journal event.
-- KEYS: 1 bill, 2 payment, 3 bill's payments (zset by ledger sequence), 4 institution
--       payment index (zset),
--       5 ledger (list), 6 balance, 7 VA lock
-- ARGV: 1 expected bill version, 2 new bill doc, 3 new bill status, 4 payment doc,
--       5 the bill as answered (JSON), 6 answer timestamp, 7 ledger entry (JSON object),
--       8 amount, 9 score (ms), 10 lock owner token
if redis.call('EXISTS', KEYS[2]) == 1 then
  return {'dup'}
end
if redis.call('HGET', KEYS[1], 'ver') ~= ARGV[1] then
  return {'conflict'}
end
-- Money first, before any other write: INCRBY refuses to pass the int64 range Redis keeps
-- (nothing is written then). Its reply is a Lua number (a double, exact only to 2^53), so
-- the balance is read back as the string Redis keeps and never goes through Lua arithmetic.
local moved = redis.pcall('INCRBY', KEYS[6], ARGV[8])
if type(moved) == 'table' and moved.err then
  return {'balance_refused', moved.err}
end
local bal = redis.call('GET', KEYS[6])
redis.call('HSET', KEYS[1], 'doc', ARGV[2], 'status', ARGV[3])
redis.call('HINCRBY', KEYS[1], 'ver', 1)
-- The entry's sequence is the ledger's length after it (a count, exact as a Lua number).
local seq = redis.call('RPUSH', KEYS[5], string.sub(ARGV[7], 1, -2) .. ',"balance_after":' .. bal .. '}')
redis.call('HSET', KEYS[2], 'doc', ARGV[4], 'bill', ARGV[5], 'ts', ARGV[6], 'lseq', seq)
redis.call('ZADD', KEYS[3], seq, KEYS[2])
redis.call('ZADD', KEYS[4], ARGV[9], KEYS[2])
if ARGV[10] ~= '' and redis.call('GET', KEYS[7]) == ARGV[10] then
  redis.call('DEL', KEYS[7])
end
return {'ok', seq, bal}
