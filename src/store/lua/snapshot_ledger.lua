-- Reads a page of the ledger for a snapshot (docs/retention.md "Snapshots"): the entries
-- from sequence ARGV[1] (or from the head, if the retention sweep took that one off), with
-- the base and the balance as they are at the same moment, so each entry's sequence is
-- exact whatever the sweep does between pages.
-- KEYS: 1 ledger (list), 2 ledger base (entries taken off the head), 3 balance
-- ARGV: 1 first sequence wanted, 2 how many entries at most
-- Counts are < 2^53: exact as Lua numbers; the balance goes back as Redis's string.
-- Returns {base (string), balance (string, '' when none), entries}: the first entry's
-- sequence is max(ARGV[1], base + 1).
-- Mirrored by: store/calls.rs calls::SnapshotLedger, filled by Store::snapshot_page
-- (store/snapshot.rs).
local b = redis.call('GET', KEYS[2]) or '0'
local base = tonumber(b)
local from = math.max(tonumber(ARGV[1]), base + 1)
local start = from - base - 1
return {b, redis.call('GET', KEYS[3]) or '', redis.call('LRANGE', KEYS[1], start, start + tonumber(ARGV[2]) - 1)}
