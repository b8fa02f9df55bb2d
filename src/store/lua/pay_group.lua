-- Group commit (issue 29): the payments of one institution that met while one of its
-- commits was in flight, committed in one script call, each exactly as pay.lua commits
-- one (its body is pasted below as the function `pay`, whose parameters KEYS and ARGV
-- hide the call's: each payment sees its own nine keys and fifteen arguments at pay.lua's
-- positions). Payments run in the order sent, each atomic with the others' as one script;
-- one that Redis refuses (a wrong type: a corrupt key) is answered {'error', message} and
-- the others go on. Every payment is of one institution: one hash tag, one cluster slot.
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
local function pay(KEYS, ARGV)
--[[pay.lua]]
end
local n = (#all_keys - 1) / KN
if n < 1 or n % 1 ~= 0 or #all_argv ~= n * AN then
  return redis.error_reply('pay_group.lua: ' .. #all_keys .. ' keys and ' .. #all_argv .. ' arguments are not whole payments')
end
local replies = {}
for i = 0, n - 1 do
  local k, a = {}, {}
  for j = 1, KN do k[j] = all_keys[i * KN + j] end
  for j = 1, AN do a[j] = all_argv[i * AN + j] end
  local ok, r = pcall(pay, k, a)
  if ok then
    replies[i + 1] = r
  else
    replies[i + 1] = {'error', type(r) == 'table' and (r.err or '?') or tostring(r)}
  end
end
return replies
