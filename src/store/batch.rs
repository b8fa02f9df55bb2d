//! Bulk issuance jobs in Redis (docs/api.md "Bulk issuance jobs"): a job's record, its
//! upload until it is done, its results row by row, its runner's lease, and the
//! institution's list of jobs, all under the institution's hash tag and all expiring
//! `api.batch_job_ttl_secs` after the job was submitted. Jobs are not journaled: a Redis
//! that loses its data loses them (their bills are journaled like any other), and the same
//! upload submitted again finds every bill already issued.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::*;

/// A job as stored (`ipg:{I}:batchjob:<id>`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BatchJob {
    /// `queued`, `running`, `done` or `failed`.
    pub status: String,
    /// `json` or `csv`: how the upload is read.
    pub format: String,
    pub dry_run: bool,
    /// Rows in the upload.
    pub total: usize,
    pub created_ms: i64,
    /// When every key of the job expires (ms since the epoch), fixed at submission.
    pub expire_at_ms: i64,
    /// Runs that stopped short so far, and when the next may start (ms since the epoch).
    pub runs: u32,
    pub next_run_ms: i64,
    /// When it was done (0 until then).
    pub finished_ms: i64,
    /// Why its last run stopped short (Redis or the journal unavailable), if it did.
    pub last_error: String,
    /// Rows `created`, `existing`, `valid` (a dry run) and `refused`, once done.
    pub counts: [usize; 4],
}

/// What a submission found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Submitted {
    /// Stored now, queued.
    Created,
    /// The same upload was submitted before: the job, in this status.
    Existing(String),
    /// The institution keeps `max_jobs` jobs already (this many).
    Full(usize),
}

impl Store {
    /// Stores job `id` of `inst` once (`lua/batch_submit.lua`): its record, its upload
    /// (`input`, `total` rows, read as `format`), on the institution's list; kept `ttl`.
    /// A job already stored under `id` is found, not stored again.
    ///
    /// # Errors
    /// Redis unreachable.
    #[allow(clippy::too_many_arguments)]
    pub async fn submit_batch_job(
        &self,
        inst: &str,
        id: &str,
        format: &str,
        dry_run: bool,
        total: usize,
        input: &[u8],
        ttl: Duration,
        max_jobs: usize,
    ) -> Result<Submitted, StoreError> {
        let now_ms = self.redis_time_ms().await?;
        let call = calls::BatchSubmit {
            job: keys::batch_job(inst, id),
            input: keys::batch_job_input(inst, id),
            jobs: keys::batch_jobs(inst),
            id,
            now_ms,
            ttl_ms: ttl.as_millis() as u64,
            max_jobs,
            format,
            dry_run: u8::from(dry_run),
            total,
            input_bytes: input,
        };
        let script = &self.retire.batch_submit;
        let (what, detail): (String, String) =
            self.eval_loading(script, call.eval(script).cmd()).await?;
        Ok(match what.as_str() {
            "existing" => Submitted::Existing(detail),
            "full" => Submitted::Full(detail.parse().unwrap_or(max_jobs)),
            _ => Submitted::Created,
        })
    }

    /// Job `id` of `inst`, if it is still kept.
    ///
    /// # Errors
    /// Redis unreachable.
    pub async fn batch_job(&self, inst: &str, id: &str) -> Result<Option<BatchJob>, StoreError> {
        let h: HashMap<String, String> = self
            .plain(redis::cmd("HGETALL").arg(keys::batch_job(inst, id)).clone())
            .await?;
        if h.is_empty() {
            return Ok(None);
        }
        let get = |k: &str| h.get(k).cloned().unwrap_or_default();
        Ok(Some(BatchJob {
            status: get("status"),
            format: get("format"),
            dry_run: get("dry_run") == "1",
            total: get("total").parse().unwrap_or(0),
            created_ms: get("created_ms").parse().unwrap_or(0),
            expire_at_ms: get("expire_at_ms").parse().unwrap_or(0),
            runs: get("runs").parse().unwrap_or(0),
            next_run_ms: get("next_run_ms").parse().unwrap_or(0),
            finished_ms: get("finished_ms").parse().unwrap_or(0),
            last_error: get("last_error"),
            counts: ["created", "existing", "valid", "refused"]
                .map(|k| get(k).parse().unwrap_or(0)),
        }))
    }

    /// Job `id`'s upload; `None` once the job is done (or no longer kept).
    ///
    /// # Errors
    /// Redis unreachable.
    pub async fn batch_job_input(
        &self,
        inst: &str,
        id: &str,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        self.plain(
            redis::cmd("GET")
                .arg(keys::batch_job_input(inst, id))
                .clone(),
        )
        .await
    }

    /// The rows of job `id` that have a result.
    ///
    /// # Errors
    /// Redis unreachable.
    pub async fn batch_job_rows_done(
        &self,
        inst: &str,
        id: &str,
    ) -> Result<HashSet<usize>, StoreError> {
        let rows: Vec<String> = self
            .plain(
                redis::cmd("HKEYS")
                    .arg(keys::batch_job_results(inst, id))
                    .clone(),
            )
            .await?;
        Ok(rows.iter().filter_map(|r| r.parse().ok()).collect())
    }

    /// How many rows of job `id` have a result.
    ///
    /// # Errors
    /// Redis unreachable.
    pub async fn batch_job_rows_count(&self, inst: &str, id: &str) -> Result<usize, StoreError> {
        self.plain(
            redis::cmd("HLEN")
                .arg(keys::batch_job_results(inst, id))
                .clone(),
        )
        .await
    }

    /// Job `id`'s results so far, by row (each as stored: JSON).
    ///
    /// # Errors
    /// Redis unreachable.
    pub async fn batch_job_results(
        &self,
        inst: &str,
        id: &str,
    ) -> Result<BTreeMap<usize, String>, StoreError> {
        let h: HashMap<String, String> = self
            .plain(
                redis::cmd("HGETALL")
                    .arg(keys::batch_job_results(inst, id))
                    .clone(),
            )
            .await?;
        Ok(h.into_iter()
            .filter_map(|(k, v)| Some((k.parse().ok()?, v)))
            .collect())
    }

    /// Saves results of job `id` (row, JSON) and sets `fields` of its record in one step
    /// (`lua/batch_save.lua`), while the run's lease (`token`) holds: a row's first saved
    /// result stays. `false` when the lease passed to another run or the job is gone (the
    /// run stops). The results expire with the job (`expire_at_ms`).
    ///
    /// # Errors
    /// Redis unreachable.
    pub async fn save_batch_results(
        &self,
        inst: &str,
        id: &str,
        token: &str,
        results: &[(usize, String)],
        fields: &[(&str, String)],
        expire_at_ms: i64,
    ) -> Result<bool, StoreError> {
        let fields: serde_json::Map<String, serde_json::Value> = fields
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone().into()))
            .collect();
        let call = calls::BatchSave {
            job: keys::batch_job(inst, id),
            results: keys::batch_job_results(inst, id),
            lease: keys::batch_job_lease(inst, id),
            token,
            expire_at_ms,
            fields: serde_json::Value::Object(fields).to_string(),
            rows: results
                .iter()
                .flat_map(|(row, json)| [row.to_string(), json.clone()])
                .collect(),
        };
        let script = &self.retire.batch_save;
        let saved: i64 = self.eval_loading(script, call.eval(script).cmd()).await?;
        Ok(saved == 1)
    }

    /// Drops job `id`'s upload (the job is done).
    ///
    /// # Errors
    /// Redis unreachable.
    pub async fn drop_batch_input(&self, inst: &str, id: &str) -> Result<(), StoreError> {
        let _: () = self
            .plain(
                redis::cmd("DEL")
                    .arg(keys::batch_job_input(inst, id))
                    .clone(),
            )
            .await?;
        Ok(())
    }

    /// `inst`'s kept jobs that are neither done nor failed, oldest first, with when each may
    /// run next (ms since the epoch; 0: now).
    ///
    /// # Errors
    /// Redis unreachable.
    pub async fn unfinished_batch_jobs(
        &self,
        inst: &str,
    ) -> Result<Vec<(String, i64)>, StoreError> {
        let ids: Vec<String> = self
            .plain(
                redis::cmd("ZRANGE")
                    .arg(keys::batch_jobs(inst))
                    .arg(0)
                    .arg(-1)
                    .clone(),
            )
            .await?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for id in &ids {
            pipe.cmd("HMGET")
                .arg(keys::batch_job(inst, id))
                .arg("status")
                .arg("next_run_ms");
        }
        let found: Vec<(Option<String>, Option<i64>)> = self.plain_pipe(pipe).await?;
        Ok(ids
            .into_iter()
            .zip(found)
            .filter(|(_, (s, _))| s.as_deref().is_some_and(|s| s != "done" && s != "failed"))
            .map(|(id, (_, next))| (id, next.unwrap_or(0)))
            .collect())
    }
}
