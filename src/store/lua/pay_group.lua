-- Group commit (issue 29): the payments of one institution that met while one of its
-- commits was in flight, committed in one script call, each exactly as pay.lua commits
-- one (its body is pasted below as the function `pay`, whose parameters KEYS and ARGV
-- hide the call's: each payment sees its own nine keys and fifteen arguments at pay.lua's
-- positions). Payments run in the order sent, each atomic with the others' as one script;
-- one whose command Redis refuses (a key of the wrong type: a corrupt key) is answered
-- {'error', message} and the others go on. Every payment is of one institution: one hash tag, one cluster slot.
-- KEYS: pay.lua's KEYS 1-9 for each payment, the reference binding always present (the
--       payment key stands in when ARGV 13 is '': pay.lua never touches it then), then
--       the journal mark (last, the sentinel's).
-- ARGV: pay.lua's ARGV 1-15 for each payment.
-- Reply: one pay.lua reply per payment, in the order sent.
-- Mirrored by: store/group.rs (Store::group_commit) sends calls::Commit's keys and
-- arguments; the strides below are checked against calls::Commit (store/group.rs tests).
local KN, AN = 9, 15
local all_keys, all_argv = KEYS, ARGV
-- Read once per call: the institution's ledger_base (the retention sweep moves it only
-- between scripts) and Redis's clock, as ms since the epoch (a string).
local base_count, clock
local function ledger_base(base)
  if not base_count then
    base_count = tonumber(redis.call('GET', base .. 'ledger_base') or '0')
  end
  return base_count
end
local function now_ms()
  if not clock then
    local t = redis.call('TIME')
    clock = t[1] .. string.format('%03d', math.floor(t[2] / 1000))
  end
  return clock
end
-- Writes to the keys every payment of the group appends to (the institution's ledger,
-- payment index and unjournaled list) are queued where pay.lua makes them and sent once,
-- after the last payment: one RPUSH and one ZADD each instead of one per payment. Nothing
-- in the group reads those keys (the ledger's length is read once, before the first
-- entry), so each payment's reply and every key end as if each payment had written its
-- own; a payment that fails after queuing keeps what it queued, as it kept its write.
local ledgers, ledger_keys = {}, {}
local function ledger_append(key, base, entry)
  local l = ledgers[key]
  if not l then
    l = {next = redis.call('LLEN', key) + ledger_base(base), entries = {}}
    ledgers[key] = l
    ledger_keys[#ledger_keys + 1] = key
  end
  l.next = l.next + 1
  l.entries[#l.entries + 1] = entry
  return l.next
end
local zsets, zset_keys = {}, {}
local function zadd_later(key, score, member)
  local z = zsets[key]
  if not z then
    z = {}
    zsets[key] = z
    zset_keys[#zset_keys + 1] = key
  end
  z[#z + 1] = score
  z[#z + 1] = member
end
local function flush()
  for _, key in ipairs(ledger_keys) do
    redis.call('RPUSH', key, unpack(ledgers[key].entries))
  end
  for _, key in ipairs(zset_keys) do
    redis.call('ZADD', key, unpack(zsets[key]))
  end
end
local function pay(KEYS, ARGV)
--[[pay.lua]]
end
local n = (#all_keys - 1) / KN
if n < 1 or n % 1 ~= 0 or #all_argv ~= n * AN then
  return redis.error_reply('pay_group.lua: ' .. #all_keys .. ' keys and ' .. #all_argv .. ' arguments are not whole payments')
end
local replies = {}
local K, A = all_keys, all_argv
for i = 0, n - 1 do
  -- Each payment's KEYS and ARGV, built by constructors: a table made at its final size
  -- in one step, not grown one assignment at a time (9 and 15 entries: KN and AN, checked
  -- in store/group.rs).
  local b, c = i * KN, i * AN
  local k = {K[b+1], K[b+2], K[b+3], K[b+4], K[b+5], K[b+6], K[b+7], K[b+8], K[b+9]}
  local a = {A[c+1], A[c+2], A[c+3], A[c+4], A[c+5], A[c+6], A[c+7], A[c+8], A[c+9],
    A[c+10], A[c+11], A[c+12], A[c+13], A[c+14], A[c+15]}
  local ok, r = pcall(pay, k, a)
  if ok then
    replies[i + 1] = r
  else
    replies[i + 1] = {'error', type(r) == 'table' and (r.err or '?') or tostring(r)}
  end
end
-- A queued write Redis refuses (a key of the wrong type) fails every payment that
-- committed: each is answered that error (in doubt, retried), as one refused write of its
-- own would have answered it.
local ok, r = pcall(flush)
if not ok then
  local message = type(r) == 'table' and (r.err or '?') or tostring(r)
  for i = 1, n do
    if replies[i][1] == 'ok' then
      replies[i] = {'error', message}
    end
  end
end
return replies
