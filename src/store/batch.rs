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
    /// `queued`, `running` or `done`.
    pub status: String,
    /// `json` or `csv`: how the upload is read.
    pub format: String,
    pub dry_run: bool,
    /// Rows in the upload.
    pub total: usize,
    pub created_ms: i64,
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

    /// Records results of job `id` (row, JSON) and sets `fields` of its record, in one
    /// round trip. Every key of the job expires at `expire_at_ms` (its creation plus the
    /// keeping): a job that expired meanwhile is not brought back.
    ///
    /// # Errors
    /// Redis unreachable.
    pub async fn save_batch_results(
        &self,
        inst: &str,
        id: &str,
        results: &[(usize, String)],
        fields: &[(&str, String)],
        expire_at_ms: i64,
    ) -> Result<(), StoreError> {
        let mut pipe = redis::pipe();
        if !results.is_empty() {
            let key = keys::batch_job_results(inst, id);
            let mut hset = redis::cmd("HSET");
            hset.arg(&key);
            for (row, json) in results {
                hset.arg(row).arg(json);
            }
            pipe.add_command(hset).ignore();
            pipe.cmd("PEXPIREAT").arg(&key).arg(expire_at_ms).ignore();
        }
        if !fields.is_empty() {
            let job = keys::batch_job(inst, id);
            let mut hset = redis::cmd("HSET");
            hset.arg(&job);
            for (k, v) in fields {
                hset.arg(*k).arg(v);
            }
            pipe.add_command(hset).ignore();
            pipe.cmd("PEXPIREAT").arg(&job).arg(expire_at_ms).ignore();
        }
        let _: () = self.plain_pipe(pipe).await?;
        Ok(())
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

    /// The ids of `inst`'s kept jobs that are not done, oldest first.
    ///
    /// # Errors
    /// Redis unreachable.
    pub async fn unfinished_batch_jobs(&self, inst: &str) -> Result<Vec<String>, StoreError> {
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
            return Ok(ids);
        }
        let mut pipe = redis::pipe();
        for id in &ids {
            pipe.cmd("HGET")
                .arg(keys::batch_job(inst, id))
                .arg("status");
        }
        let status: Vec<Option<String>> = self.plain_pipe(pipe).await?;
        Ok(ids
            .into_iter()
            .zip(status)
            .filter(|(_, s)| s.as_deref().is_some_and(|s| s != "done"))
            .map(|(id, _)| id)
            .collect())
    }
}
