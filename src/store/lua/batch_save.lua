-- Saves a bulk issuance job's results while the run holds the job's lease (docs/api.md
-- "Bulk issuance jobs"): the first result saved for a row stays (HSETNX: a run that lost
-- its lease never rewrites another's), the record's fields are set, the results expire with
-- the job. Nothing is written for a job no longer kept, or by a run whose lease has passed
-- to another run.
-- KEYS: 1 job record (hash), 2 job results (hash), 3 the job's lease
-- ARGV: 1 the run's lease token, 2 when the job expires (ms since the epoch), 3 the
-- record's fields to set (a JSON object of strings, '{}' for none), then from ARGV[4] on
-- (row, result JSON) pairs.
-- Returns 1 when saved, 0 when the lease is not this run's or the job is gone.
-- Mirrored by: store/calls.rs calls::BatchSave, filled by Store::save_batch_results
-- (store/batch.rs).
if redis.call('GET', KEYS[3]) ~= ARGV[1] then
  return 0
end
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
for k, v in pairs(cjson.decode(ARGV[3])) do
  redis.call('HSET', KEYS[1], k, tostring(v))
end
if #ARGV >= 5 then
  for i = 4, #ARGV - 1, 2 do
    redis.call('HSETNX', KEYS[2], ARGV[i], ARGV[i + 1])
  end
  redis.call('PEXPIREAT', KEYS[2], ARGV[2])
end
return 1
