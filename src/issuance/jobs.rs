//! Bulk issuance jobs (issue 28, docs/api.md "Bulk issuance jobs"): an upload too large to
//! wait for is stored in Redis as a job (`store::batch`) and issued in the background by
//! whichever instance holds its lease; the institution polls its status and fetches its
//! per-row results (JSON or CSV).
//!
//! - **One job per upload**: the job id is a digest of the institution, the format, the
//!   dry-run flag and the upload's bytes ([`job_id`]), so the same upload again finds the
//!   same job and creates nothing new.
//! - **Survives restarts**: every instance looks for unfinished jobs at start and every
//!   [`LOOK_EVERY`]; one holds a job's lease (`lock.lua`, [`LEASE`], renewed every
//!   [`RENEW_EVERY`]) and issues its rows [`super::CONCURRENCY`] at a time, saving
//!   results [`SAVE_EVERY`] rows at a time. A run cut short (a crash, `kill -9`) is taken
//!   up by the next look: rows with a result are skipped, rows issued but not yet saved
//!   are found as issued (`existing`), so every bill exists once and every row gets one
//!   result.
//! - **Errors that are not the row's** (Redis or the journal unavailable, the switch busy)
//!   are never recorded as the row's result: the run stops, notes `last_error`, and the
//!   job runs again at the next look.
//! - **Bounded**: at most `api.max_batch_jobs` jobs kept per institution, each for
//!   `api.batch_job_ttl_secs`; at most [`RUNNING_PER_INSTANCE`] run at once per instance.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use serde_json::Value;
use sha2::Digest;
use tokio_util::sync::CancellationToken;

use super::{counts, issue_row, read_recurring, read_upload, FileError, Row, RowResult};
use crate::domain::InstitutionMode;
use crate::error::SwitchError;
use crate::hosted::Hosted;
use crate::metrics as m;
use crate::routing::{Institution, Routing};
use crate::store::batch::{BatchJob, Submitted};

/// How often every instance looks for unfinished jobs (and at once after a submission).
pub const LOOK_EVERY: Duration = Duration::from_secs(5);
/// A job's lease: another instance takes the job up this long after its runner died.
pub const LEASE: Duration = Duration::from_secs(15);
/// How often a runner renews its lease.
pub const RENEW_EVERY: Duration = Duration::from_secs(5);
/// Longest wait before a job whose run stopped short runs again.
pub const MAX_BACKOFF: Duration = Duration::from_secs(600);
/// Jobs one instance runs at once.
pub const RUNNING_PER_INSTANCE: usize = 2;
/// Results saved per round trip (at most this many rows are issued again, found
/// `existing`, after a crash).
pub const SAVE_EVERY: usize = 100;

/// How a job's upload is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// A JSON array of Create New Bill bodies ([`read_upload`]).
    Json,
    /// A CSV of bills ([`read_upload`]).
    Csv,
    /// A recurring issue: template, customers, period ([`read_recurring`]).
    Recurring,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Csv => "csv",
            Format::Recurring => "recurring",
        }
    }

    fn of(stored: &str) -> Format {
        match stored {
            "csv" => Format::Csv,
            "recurring" => Format::Recurring,
            _ => Format::Json,
        }
    }

    /// The rows of `upload` for `institution` (`offset`: the switch's, for due dates).
    fn read(
        self,
        upload: &[u8],
        institution: &str,
        offset: chrono::FixedOffset,
    ) -> Result<Vec<Row>, FileError> {
        match self {
            Format::Json => read_upload(upload, false, institution),
            Format::Csv => read_upload(upload, true, institution),
            Format::Recurring => read_recurring(upload, institution, offset),
        }
    }
}

/// The job id of an upload: hex of SHA-256 over the institution, the format, `dry_run` and
/// the bytes, 32 characters.
pub fn job_id(institution: &str, format: Format, dry_run: bool, upload: &[u8]) -> String {
    let mut h = sha2::Sha256::new();
    h.update(institution.as_bytes());
    h.update([0]);
    h.update(format.as_str().as_bytes());
    h.update([0, u8::from(dry_run), 0]);
    h.update(upload);
    hex::encode(&h.finalize()[..16])
}

/// A job as the institution sees it (`GET /api/v2/gw/bill/batch/jobs/{job_id}`).
#[derive(Clone, Debug, serde::Serialize, schemars::JsonSchema)]
#[schemars(rename = "BatchJob")]
pub struct JobView {
    pub job_id: String,
    /// `queued`, `running`, `done` or `failed` (with `last_error`).
    pub status: String,
    pub dry_run: bool,
    /// Rows in the upload.
    pub total: usize,
    /// Rows with a result so far.
    pub processed: usize,
    /// Counts by result, once done (0 until then).
    pub created: usize,
    pub existing: usize,
    pub valid: usize,
    pub refused: usize,
    /// ISO 8601, the switch's offset.
    pub created_at: String,
    /// ISO 8601 once done; `null` until then.
    pub finished_at: Option<String>,
    /// Why the last run stopped short (it runs again by itself); empty when none.
    pub last_error: String,
}

/// The jobs of this instance: submission, status, results and the runner.
pub struct Jobs {
    hosted: Hosted,
    routing: Arc<Routing>,
    ttl: Duration,
    max_jobs: usize,
    running: Arc<tokio::sync::Semaphore>,
    wake: tokio::sync::Notify,
}

impl Jobs {
    /// Jobs kept `ttl` each, at most `max_jobs` per institution.
    pub fn new(hosted: Hosted, routing: Arc<Routing>, ttl: Duration, max_jobs: usize) -> Jobs {
        Jobs {
            hosted,
            routing,
            ttl,
            max_jobs,
            running: Arc::new(tokio::sync::Semaphore::new(RUNNING_PER_INSTANCE)),
            wake: tokio::sync::Notify::new(),
        }
    }

    /// Submits `upload` (read as `format`) as a job of `inst`: the file is read first (a
    /// file that cannot be read is refused here, naming why); its job id and what the
    /// submission found.
    ///
    /// # Errors
    /// `InvalidField("body")` for a file that cannot be read; `Busy` when the institution
    /// keeps `api.max_batch_jobs` jobs already; Redis unavailable.
    pub async fn submit(
        &self,
        inst: &Institution,
        format: Format,
        dry_run: bool,
        upload: &[u8],
    ) -> Result<(String, Submitted), SwitchError> {
        let offset = *self.hosted.clock.now().offset();
        let rows = format
            .read(upload, &inst.code, offset)
            .map_err(|e| SwitchError::invalid("body", e.to_string()))?;
        let id = job_id(&inst.code, format, dry_run, upload);
        let found = self
            .hosted
            .store
            .submit_batch_job(
                &inst.code,
                &id,
                format.as_str(),
                dry_run,
                rows.len(),
                upload,
                self.ttl,
                self.max_jobs,
            )
            .await?;
        match found {
            Submitted::Full(n) => Err(SwitchError::Busy(format!(
                "{n} bulk issuance jobs are kept for this institution (api.max_batch_jobs); \
                 try again once the oldest has expired"
            ))),
            s => {
                if s == Submitted::Created {
                    metrics::counter!(m::BATCH_JOBS_TOTAL, "event" => "submitted").increment(1);
                    self.wake.notify_one();
                }
                Ok((id, s))
            }
        }
    }

    /// Job `id` of `inst` as the institution sees it; `None` when it is not kept.
    ///
    /// # Errors
    /// Redis unavailable.
    pub async fn view(&self, inst: &str, id: &str) -> Result<Option<JobView>, SwitchError> {
        let store = &self.hosted.store;
        let Some(job) = store.batch_job(inst, id).await? else {
            return Ok(None);
        };
        let processed = store.batch_job_rows_count(inst, id).await?;
        Ok(Some(self.view_of(id, &job, processed)))
    }

    fn view_of(&self, id: &str, job: &BatchJob, processed: usize) -> JobView {
        let iso = |ms: i64| {
            let t = chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default();
            self.hosted.clock.stamp(t.fixed_offset())
        };
        JobView {
            job_id: id.to_owned(),
            status: job.status.clone(),
            dry_run: job.dry_run,
            total: job.total,
            processed,
            created: job.counts[0],
            existing: job.counts[1],
            valid: job.counts[2],
            refused: job.counts[3],
            created_at: iso(job.created_ms),
            finished_at: (job.finished_ms > 0).then(|| iso(job.finished_ms)),
            last_error: job.last_error.clone(),
        }
    }

    /// Job `id`'s view and its results so far, in row order (complete once `done`).
    ///
    /// # Errors
    /// Redis unavailable.
    pub async fn results(
        &self,
        inst: &str,
        id: &str,
    ) -> Result<Option<(JobView, Vec<RowResult>)>, SwitchError> {
        let store = &self.hosted.store;
        let Some(job) = store.batch_job(inst, id).await? else {
            return Ok(None);
        };
        let rows = parse_results(store.batch_job_results(inst, id).await?);
        let view = self.view_of(id, &job, rows.len());
        Ok(Some((view, rows)))
    }

    /// Looks for unfinished jobs of every hosted institution now and every [`LOOK_EVERY`]
    /// (or at once after a submission), and runs those whose lease it takes, until `stop`.
    pub fn spawn(self: Arc<Self>, stop: CancellationToken) {
        tokio::spawn(async move {
            loop {
                self.look(&stop).await;
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = self.wake.notified() => {}
                    _ = tokio::time::sleep(LOOK_EVERY) => {}
                }
            }
        });
    }

    async fn look(self: &Arc<Self>, stop: &CancellationToken) {
        let store = &self.hosted.store;
        let Ok(now) = store.redis_time_ms().await else {
            return;
        };
        let hosted: Vec<Arc<Institution>> = self
            .routing
            .institutions()
            .filter(|i| i.mode == InstitutionMode::Hosted)
            .cloned()
            .collect();
        for inst in hosted {
            let due = match store.unfinished_batch_jobs(&inst.code).await {
                Ok(ids) => ids,
                Err(e) => {
                    tracing::debug!(institution = %inst.code, error = %e, "bulk issuance jobs not looked at");
                    continue;
                }
            };
            for (id, next_run_ms) in due {
                if next_run_ms > now {
                    continue;
                }
                let Ok(permit) = self.running.clone().try_acquire_owned() else {
                    return;
                };
                let token = uuid::Uuid::new_v4().to_string();
                let lease = crate::store::keys::batch_job_lease(&inst.code, &id);
                match store.try_lock(&lease, &token, LEASE).await {
                    Ok(true) => {}
                    _ => continue,
                }
                let (jobs, inst, stop) = (self.clone(), inst.clone(), stop.clone());
                tokio::spawn(async move {
                    let _permit = permit;
                    jobs.run_leased(&inst, &id, &lease, &token, &stop).await;
                    let _ = jobs.hosted.store.unlock(&lease, &token).await;
                });
            }
        }
    }

    /// Runs job `id` while its lease (`lease`, `token`) holds, renewing it.
    async fn run_leased(
        &self,
        inst: &Institution,
        id: &str,
        lease: &str,
        token: &str,
        stop: &CancellationToken,
    ) {
        let store = &self.hosted.store;
        let renew = async {
            loop {
                tokio::time::sleep(RENEW_EVERY).await;
                if !matches!(store.try_lock(lease, token, LEASE).await, Ok(true)) {
                    return;
                }
            }
        };
        let outcome = tokio::select! {
            r = self.run(inst, id, token) => r,
            () = renew => Ok(Ran::LeaseLost),
            () = stop.cancelled() => Ok(Ran::Stopped),
        };
        let outcome = match outcome {
            Ok(o) => o.as_str(),
            Err(e) => {
                tracing::warn!(institution = %inst.code, job = id, error = %e, "bulk issuance job stopped short; it runs again by itself");
                "interrupted"
            }
        };
        metrics::counter!(m::BATCH_JOBS_TOTAL, "event" => outcome).increment(1);
    }

    /// Issues job `id`'s rows that have no result yet, saving results as they come, then
    /// marks it done with its counts. A run stopped short by an error that is not a row's
    /// notes why (`last_error`) and when the job may run again (backing off, [`LOOK_EVERY`]
    /// doubled per run, at most [`MAX_BACKOFF`]); a job still not done once 90% of its
    /// keeping has passed (or whose upload is gone) is `failed`, so that the institution
    /// reads why instead of the job vanishing.
    async fn run(&self, inst: &Institution, id: &str, token: &str) -> Result<Ran, SwitchError> {
        let store = &self.hosted.store;
        let code = &inst.code;
        let Some(job) = store.batch_job(code, id).await? else {
            return Ok(Ran::Done);
        };
        if job.status == "done" || job.status == "failed" {
            return Ok(Ran::Done);
        }
        let now = store.redis_time_ms().await?;
        let expire_at = job.expire_at_ms;
        let keeping = expire_at - job.created_ms;
        if now >= expire_at - keeping / 10 {
            let why = format!(
                "not done within 90% of its keeping (api.batch_job_ttl_secs); last error: {}",
                job.last_error
            );
            return self.fail(code, id, token, expire_at, why).await;
        }
        let r = self.run_rows(inst, id, token, &job, expire_at).await;
        if let Err(e) = &r {
            let runs = job.runs.saturating_add(1);
            let backoff = LOOK_EVERY
                .saturating_mul(1 << runs.min(16))
                .min(MAX_BACKOFF)
                .as_millis() as i64;
            let fields = [
                ("last_error", e.to_string()),
                ("runs", runs.to_string()),
                ("next_run_ms", (now + backoff).to_string()),
            ];
            let _ = store
                .save_batch_results(code, id, token, &[], &fields, expire_at)
                .await;
        }
        r
    }

    /// Marks job `id` failed, saying `why`.
    async fn fail(
        &self,
        code: &str,
        id: &str,
        token: &str,
        expire_at: i64,
        why: String,
    ) -> Result<Ran, SwitchError> {
        tracing::warn!(institution = %code, job = id, reason = %why, "bulk issuance job failed");
        let now = self.hosted.clock.now().timestamp_millis();
        let fields = [
            ("status", "failed".to_owned()),
            ("finished_ms", now.to_string()),
            ("last_error", why),
        ];
        Ok(
            if self
                .hosted
                .store
                .save_batch_results(code, id, token, &[], &fields, expire_at)
                .await?
            {
                Ran::Failed
            } else {
                Ran::LeaseLost
            },
        )
    }

    async fn run_rows(
        &self,
        inst: &Institution,
        id: &str,
        token: &str,
        job: &BatchJob,
        expire_at: i64,
    ) -> Result<Ran, SwitchError> {
        let store = &self.hosted.store;
        let code = &inst.code;
        let Some(upload) = store.batch_job_input(code, id).await? else {
            let why = "its upload is no longer kept".to_owned();
            return self.fail(code, id, token, expire_at, why).await;
        };
        let offset = *self.hosted.clock.now().offset();
        let rows = match Format::of(&job.format).read(&upload, code, offset) {
            Ok(rows) => rows,
            Err(e) => {
                let why = format!("its upload cannot be read any more: {e}");
                return self.fail(code, id, token, expire_at, why).await;
            }
        };
        let done = store.batch_job_rows_done(code, id).await?;
        let running = [("status", "running".to_owned())];
        if !store
            .save_batch_results(code, id, token, &[], &running, expire_at)
            .await?
        {
            return Ok(Ran::LeaseLost);
        }
        let todo: Vec<Row> = rows
            .into_iter()
            .filter(|r| !done.contains(&r.row))
            .map(needs_invoice_number)
            .collect();
        let hosted = &self.hosted;
        let mut issued = futures::stream::iter(todo)
            .map(|r| issue_row(hosted, inst, r, job.dry_run))
            .buffer_unordered(super::CONCURRENCY)
            .ready_chunks(SAVE_EVERY);
        while let Some(chunk) = issued.next().await {
            let mut save = Vec::with_capacity(chunk.len());
            let mut failed = None;
            for r in chunk {
                match r {
                    Ok(result) => {
                        metrics::counter!(m::BATCH_JOB_ROWS_TOTAL, "status" => status_label(&result.status))
                            .increment(1);
                        save.push((
                            result.row,
                            serde_json::to_string(&result).unwrap_or_default(),
                        ));
                    }
                    Err((_, e)) => failed = Some(e),
                }
            }
            if !store
                .save_batch_results(code, id, token, &save, &[], expire_at)
                .await?
            {
                return Ok(Ran::LeaseLost);
            }
            if let Some(e) = failed {
                return Err(e);
            }
        }
        drop(issued);
        let results = parse_results(store.batch_job_results(code, id).await?);
        let (created, existing, valid, refused) = counts(&results);
        let now = self.hosted.clock.now().timestamp_millis();
        let fields = [
            ("status", "done".to_owned()),
            ("finished_ms", now.to_string()),
            ("last_error", String::new()),
            ("created", created.to_string()),
            ("existing", existing.to_string()),
            ("valid", valid.to_string()),
            ("refused", refused.to_string()),
        ];
        if !store
            .save_batch_results(code, id, token, &[], &fields, expire_at)
            .await?
        {
            return Ok(Ran::LeaseLost);
        }
        store.drop_batch_input(code, id).await?;
        tracing::info!(institution = %code, job = id, created, existing, valid, refused, "bulk issuance job done");
        Ok(Ran::Done)
    }
}

/// How a run ended (the `event` label of `ipg_batch_jobs_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ran {
    Done,
    Failed,
    LeaseLost,
    Stopped,
}

impl Ran {
    fn as_str(self) -> &'static str {
        match self {
            Ran::Done => "done",
            Ran::Failed => "failed",
            Ran::LeaseLost => "lease_lost",
            Ran::Stopped => "stopped",
        }
    }
}

/// A job's row must name its `invoice_number`: a bill without one is found as the row's
/// only while still active, so a run taken up after a crash could issue a second bill for
/// a row whose first was paid meanwhile (docs/api.md "Bulk issuance jobs"). The
/// synchronous call and `bill import` take such rows: their caller decides to run again.
fn needs_invoice_number(mut r: Row) -> Row {
    let named = r.body.as_ref().is_ok_and(|b| {
        b.get("invoice_number")
            .and_then(Value::as_str)
            .is_some_and(|s| !s.trim().is_empty())
    });
    if r.body.is_ok() && !named {
        r.body = Err((
            "invoice_number".into(),
            "is required in a bulk issuance job (it finds the row's bill again after a restart, paid or not)".into(),
        ));
    }
    r
}

/// A row's status as a bounded metric label.
fn status_label(status: &str) -> &'static str {
    match status {
        "created" => "created",
        "existing" => "existing",
        "valid" => "valid",
        _ => "refused",
    }
}

fn parse_results(stored: BTreeMap<usize, String>) -> Vec<RowResult> {
    stored
        .into_values()
        .filter_map(|json| serde_json::from_str(&json).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_id_names_the_upload_and_how_it_is_read() {
        let a = job_id("SCH01", Format::Csv, false, b"x");
        assert_eq!(a.len(), 32);
        assert_eq!(a, job_id("SCH01", Format::Csv, false, b"x"));
        assert_ne!(a, job_id("SCH02", Format::Csv, false, b"x"));
        assert_ne!(a, job_id("SCH01", Format::Json, false, b"x"));
        assert_ne!(a, job_id("SCH01", Format::Recurring, false, b"x"));
        assert_ne!(a, job_id("SCH01", Format::Csv, true, b"x"));
        assert_ne!(a, job_id("SCH01", Format::Csv, false, b"y"));
        for f in [Format::Json, Format::Csv, Format::Recurring] {
            assert_eq!(Format::of(f.as_str()), f);
        }
    }
}
