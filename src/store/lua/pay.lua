-- Commits one payment atomically (run by pay_group.lua, which defines ledger_base(),
-- now_ms(), ledger_append() and zadd_later() for it): bill, payment record, indexes, balance, ledger, and on
-- one Redis the reference binding. Optimistic (issue 15): the caller computed the bill
-- after the payment from the bill it expects (a cached or a fresh read, a hint only); the
-- commit happens only if the VA still points at that bill at that version, nobody else
-- holds the VA lock, and the payment is not recorded yet. Otherwise nothing is written
-- (except the binding, which is the payment's own) and the reply says why, with what
-- the caller needs to go on without another read.
-- Every number stays a string: amounts and balances are exact over the whole int64 range.
-- KEYS: 1 bill, 2 payment, 3 bill's payments (zset by ledger sequence), 4 institution
--       payment index (zset), 5 ledger (list), 6 balance, 7 VA lock, 8 VA index,
--       [9 reference binding: one Redis only; on a cluster it is bound before, in its own
--       slot], then the journal mark (last, the sentinel's).
-- ARGV: 1 expected bill version, 2 new bill doc, 3 new bill status, 4 payment doc,
--       5 the bill as answered (JSON; '' when it is ARGV 2 byte for byte), 6 answer timestamp, 7 ledger entry (a JSON object without its closing '}':
--       the script appends balance_after and closes it),
--       8 amount, 9 score (ms), 10 lock owner token (the caller's, held or not),
--       11 expected bill hash, 12 bill key prefix (same hash tag), 13 the binding
--       (<institution>|<va>|<amount>, with KEYS[9]; '' when bound before), 14 the
--       expected bill document, byte for byte: a payment commits only on the very
--       contents it was computed from (a cached bill, or one read before a recovery gave
--       its version other contents), 15 the binding's lifetime (ms: retention's reference
--       window).
-- Replies:
--   {'ok', ledger sequence, balance after}       committed; the lock, if the caller held
--                                                 it, released
--   {'ref_conflict', earlier binding}             the reference is bound to another payment
--   {'dup', payment fields (flat HGETALL)}        already committed: replay it
--   {'locked'}                                    another attempt holds the VA lock
--   {'stale', doc|false, ver|false}               the VA's bill is not the one expected:
--                                                 here is the one it points to now
--   {'balance_refused', Redis's error}            the balance would leave int64; nothing
--                                                 written
-- Mirrored by: store/calls.rs calls::Commit owns these KEYS and ARGV in this order (one
-- field each), filled by Store::commit/commit_payment (store/records.rs); reverse.lua
-- shares the layout; apply_payment.lua and apply_ledger.lua set the same records from the
-- journal event (store/journal.rs Event::payment); journal/verify.rs compares them.
if ARGV[13] ~= '' then
  local earlier = redis.call('SET', KEYS[9], ARGV[13], 'NX', 'GET', 'PX', ARGV[15])
  if earlier and earlier ~= ARGV[13] then
    -- A payment already made stays answered as made, even if a reversal closed its
    -- reference since (a Redis that lost data, rebuilt): only a new payment is refused.
    if string.sub(earlier, 1, 5) ~= 'void|' or redis.call('EXISTS', KEYS[2]) == 0 then
      return {'ref_conflict', earlier}
    end
  end
end
-- A reversal that found no payment closed this reference (decision 9): its tombstone sits
-- in the institution's slot beside the payment key (ipg:{I}:pay:C:R -> ipg:{I}:void:C:R;
-- an institution code holds no ':'), so no commit passes it on one Redis or a cluster.
-- One EXISTS for both in the usual case (neither there).
local void_key = (string.gsub(KEYS[2], ':pay:', ':void:', 1))
if redis.call('EXISTS', KEYS[2], void_key) > 0 then
  if redis.call('EXISTS', KEYS[2]) == 1 then
    return {'dup', redis.call('HGETALL', KEYS[2])}
  end
  return {'ref_conflict', redis.call('GET', void_key)}
end
-- The VA's lock and the bill it points to, in one MGET (one slot: the institution's).
-- MGET reads a key of another type as absent: a lock is only ever a string (SET), so such
-- a key holds no lock; a VA pointer that is not a string answers 'stale' (the fresh read
-- after it refuses the key).
local got = redis.call('MGET', KEYS[7], KEYS[8])
local holder, h = got[1], got[2]
if holder and holder ~= ARGV[10] then
  return {'locked'}
end
local cur = redis.call('HMGET', KEYS[1], 'ver', 'doc')
if h ~= ARGV[11] or cur[1] ~= ARGV[1] or (ARGV[14] ~= '' and cur[2] ~= ARGV[14]) then
  if not h then
    return {'stale', false, false}
  end
  local r = redis.call('HMGET', ARGV[12] .. h, 'doc', 'ver')
  return {'stale', r[1], r[2]}
end
-- Money first, before any other write: INCRBY refuses to pass the int64 range Redis keeps
-- (nothing is written then). Its reply is a Lua number (a double, exact only to 2^53):
-- within +-2^53 it is written out as an integer ('%.0f': exact there on any build), beyond
-- that the balance is read back as the string Redis keeps; it never goes through Lua
-- arithmetic.
local moved = redis.pcall('INCRBY', KEYS[6], ARGV[8])
if type(moved) == 'table' and moved.err then
  return {'balance_refused', moved.err}
end
local bal
if moved > -9007199254740992 and moved < 9007199254740992 then
  bal = string.format('%.0f', moved)
else
  bal = redis.call('GET', KEYS[6])
end
-- The version is the one just compared (a small count, exact as a Lua number) plus one,
-- in the same HSET as the document.
local ver = tostring(tonumber(ARGV[1]) + 1)
if ARGV[3] ~= 'active' then
  -- Closed by this payment: when (the payment's ms) and at which version, for the
  -- retention sweep (retire_bill.lua) and as apply_bill.lua stamps it from the journal.
  redis.call('HSET', KEYS[1], 'doc', ARGV[2], 'status', ARGV[3], 'ver', ver, 'closed', ARGV[9], 'closed_ver', ver)
else
  redis.call('HSET', KEYS[1], 'doc', ARGV[2], 'status', ARGV[3], 'ver', ver)
end
-- The entry's sequence is the ledger's length after it plus the entries the retention
-- sweep took off its head (ipg:{I}:ledger_base, beside it; counts, exact as Lua numbers).
-- ledger_append() (pay_group.lua) reads the length and the base once per group and pushes
-- the group's entries in one RPUSH at its end, in this order.
local base = string.match(KEYS[1], '^ipg:{[^}]*}:')
local seq = ledger_append(KEYS[5], base, ARGV[7] .. ',"balance_after":' .. bal .. '}')
-- The bill as answered: ARGV 5, or the bill's new document itself when it is '' (the
-- usual case, sent once).
local answered = ARGV[5]
if answered == '' then
  answered = ARGV[2]
end
redis.call('HSET', KEYS[2], 'doc', ARGV[4], 'bill', answered, 'ts', ARGV[6], 'lseq', seq)
redis.call('ZADD', KEYS[3], seq, KEYS[2])
-- The institution's payment index, one ZADD per group (zadd_later(), pay_group.lua).
zadd_later(KEYS[4], ARGV[9], KEYS[2])
if holder then
  redis.call('DEL', KEYS[7])
end
-- Listed as unjournaled until its journal event is acknowledged: ZADD
-- ipg:{I}:unjournaled <now ms> <the event id without "<I>:"> (the key beside this one, in
-- the same slot, like the void tombstone). The switch journals and announces what an
-- instance left there when it stopped before the acknowledgement (journal/unjournaled.rs;
-- Store::forget_acknowledged takes off what was acknowledged).
-- now_ms(): Redis's clock, read once per group; zadd_later(): one ZADD per group
-- (pay_group.lua).
zadd_later(base .. 'unjournaled', now_ms(), string.sub(KEYS[2], #base + 1) .. ':paid')
return {'ok', seq, bal}
