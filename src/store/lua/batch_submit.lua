-- Submits a bulk issuance job (docs/api.md "Bulk issuance jobs"): stores its record and its
-- upload once; the same upload again (the same job id) finds the job as it is.
-- KEYS: 1 job record (hash), 2 job upload (string), 3 the institution's jobs (zset)
-- ARGV: 1 job id, 2 now (ms), 3 how long a job is kept (ms), 4 most jobs kept per
-- institution, 5 format (json|csv), 6 dry run (0|1), 7 rows, 8 the upload (bytes)
-- Returns {'existing', status} for a job already stored, {'full', kept} when the
-- institution keeps ARGV[4] jobs already, {'created', 'queued'} otherwise.
-- Mirrored by: store/calls.rs calls::BatchSubmit, filled by Store::submit_batch_job
-- (store/batch.rs).
local status = redis.call('HGET', KEYS[1], 'status')
if status then
  return {'existing', status}
end
local now = tonumber(ARGV[2])
local ttl = tonumber(ARGV[3])
-- Jobs past their keeping leave the list (their keys expired by themselves).
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now - ttl)
local kept = redis.call('ZCARD', KEYS[3])
if kept >= tonumber(ARGV[4]) then
  return {'full', tostring(kept)}
end
redis.call('HSET', KEYS[1], 'status', 'queued', 'format', ARGV[5], 'dry_run', ARGV[6],
  'total', ARGV[7], 'created_ms', ARGV[2], 'expire_at_ms', tostring(now + ttl))
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('SET', KEYS[2], ARGV[8], 'PX', ttl)
redis.call('ZADD', KEYS[3], now, ARGV[1])
redis.call('PEXPIRE', KEYS[3], ttl)
return {'created', 'queued'}
