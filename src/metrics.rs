//! Every metric name, described once. Prefix `ipg_`, counters end in `_total`, durations
//! are `_seconds` histograms; labels are bounded (type, channel, institution, rc, stage,
//! reason), never a VA number or a reference.

use std::sync::OnceLock;

use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

pub const MESSAGES_TOTAL: &str = "ipg_messages_total";
pub const MESSAGE_SECONDS: &str = "ipg_message_duration_seconds";
pub const STAGE_SECONDS: &str = "ipg_stage_duration_seconds";
pub const DEAD_LETTERS_TOTAL: &str = "ipg_dead_letters_total";
pub const RETRIES_TOTAL: &str = "ipg_retries_total";
pub const PARKED_TOTAL: &str = "ipg_parked_total";
pub const LOCK_CONTENDED_TOTAL: &str = "ipg_lock_contended_total";
pub const CAS_CONFLICTS_TOTAL: &str = "ipg_cas_conflicts_total";
pub const DUPLICATES_TOTAL: &str = "ipg_duplicates_total";
pub const WEBHOOK_JOBS_TOTAL: &str = "ipg_webhook_jobs_total";
pub const PAID_RUPIAH_TOTAL: &str = "ipg_paid_rupiah_total";
pub const INFLIGHT_MESSAGES: &str = "ipg_inflight_messages";
pub const ASSIGNED_PARTITIONS: &str = "ipg_assigned_partitions";
pub const REDIS_UP: &str = "ipg_redis_up";
pub const REDIS_PIPELINE_FALLBACKS_TOTAL: &str = "ipg_redis_pipeline_fallbacks_total";
pub const REDIS_DURABILITY_RISK: &str = "ipg_redis_durability_risk";
pub const RATE_LIMITED_TOTAL: &str = "ipg_rate_limited_total";
pub const CONSUMER_LAG: &str = "ipg_consumer_lag_messages";
pub const PRODUCER_QUEUE: &str = "ipg_producer_queue_messages";
pub const WEBHOOK_ATTEMPTS_TOTAL: &str = "ipg_webhook_attempts_total";
pub const WEBHOOK_RESULTS_TOTAL: &str = "ipg_webhook_results_total";
pub const WEBHOOK_PENDING: &str = "ipg_webhook_pending_jobs";
pub const WEBHOOK_BACKLOG: &str = "ipg_webhook_backlog_messages";
pub const WEBHOOK_OLDEST_PENDING_SECONDS: &str = "ipg_webhook_oldest_pending_seconds";
pub const WEBHOOK_DELIVERY_SECONDS: &str = "ipg_webhook_delivery_seconds";
pub const WEBHOOK_ATTEMPT_SECONDS: &str = "ipg_webhook_attempt_duration_seconds";
pub const HTTP_REQUESTS_TOTAL: &str = "ipg_http_requests_total";
pub const HTTP_SECONDS: &str = "ipg_http_request_duration_seconds";
pub const HTTP_CONNECTIONS: &str = "ipg_http_connections";
pub const HTTP_CONNECTIONS_REFUSED_TOTAL: &str = "ipg_http_connections_refused_total";
pub const PASSIVE_REQUESTS_TOTAL: &str = "ipg_passive_requests_total";
pub const PASSIVE_REQUEST_SECONDS: &str = "ipg_passive_request_duration_seconds";
pub const PASSIVE_BREAKER_OPEN: &str = "ipg_passive_breaker_open";
pub const PASSIVE_IN_DOUBT: &str = "ipg_passive_in_doubt_payments";
pub const PASSIVE_RESOLUTIONS_TOTAL: &str = "ipg_passive_resolutions_total";
pub const JOURNAL_APPLIER_LAG: &str = "ipg_journal_applier_lag_messages";
pub const JOURNAL_CATCH_UP_SECONDS: &str = "ipg_journal_catch_up_duration_seconds";
pub const JOURNAL_REAPPLIED_TOTAL: &str = "ipg_journal_reapplied_records_total";
pub const JOURNAL_UNREADABLE_TOTAL: &str = "ipg_journal_unreadable_events_total";
pub const JOURNAL_CONFLICTS_TOTAL: &str = "ipg_journal_conflicts_total";
pub const HISTORY_EVENTS_SCANNED_TOTAL: &str = "ipg_history_events_scanned_total";
pub const HISTORY_READS_IN_FLIGHT: &str = "ipg_history_reads_in_flight";
pub const HISTORY_READS_REFUSED_TOTAL: &str = "ipg_history_reads_refused_total";
pub const JOURNAL_BLOCKED: &str = "ipg_journal_blocked";
pub const JOURNAL_BLOCKED_SECONDS_TOTAL: &str = "ipg_journal_blocked_seconds_total";
pub const JOURNAL_LATE_APPENDS: &str = "ipg_journal_late_appends";
pub const IN_DOUBT_TOTAL: &str = "ipg_in_doubt_total";
pub const IN_DOUBT_SETTLING: &str = "ipg_in_doubt_settling";
pub const UNJOURNALED_CHANGES: &str = "ipg_unjournaled_changes";
pub const UNJOURNALED_SETTLED_TOTAL: &str = "ipg_unjournaled_settled_total";
pub const RETENTION_RETIRED_TOTAL: &str = "ipg_retention_retired_total";
pub const REDIS_RECORDS: &str = "ipg_redis_records";
pub const SNAPSHOT_SECONDS: &str = "ipg_snapshot_seconds";
pub const SNAPSHOTS_TOTAL: &str = "ipg_snapshots_total";
pub const SNAPSHOT_AGE_SECONDS: &str = "ipg_snapshot_age_seconds";
pub const SNAPSHOT_BYTES: &str = "ipg_snapshot_bytes";
pub const SNAPSHOT_EVENTS: &str = "ipg_snapshot_events";
pub const SNAPSHOT_LOADS_TOTAL: &str = "ipg_snapshot_loads_total";
pub const REDIS_RECORD_BYTES: &str = "ipg_redis_record_bytes";
pub const REDIS_KEYS: &str = "ipg_redis_keys";
pub const REDIS_USED_MEMORY_BYTES: &str = "ipg_redis_used_memory_bytes";
pub const GROUP_COMMIT_CALLS_TOTAL: &str = "ipg_group_commit_calls_total";
pub const GROUP_COMMIT_PAYMENTS_TOTAL: &str = "ipg_group_commit_payments_total";
pub const BATCH_JOBS_TOTAL: &str = "ipg_batch_jobs_total";
pub const BATCH_JOB_ROWS_TOTAL: &str = "ipg_batch_job_rows_total";

/// Counts one channel request answered (`ipg_messages_total`) through `door` (`kafka`, `snap` or
/// `http`). Labels are bounded: `channel` is a configured code or `unknown`, `institution`
/// a configured code or `none`.
///
/// The series' handles are kept per thread once met (issue 29): `metrics::counter!` builds,
/// hashes and finds its labelled key in the registry on every call, a few thousand
/// instructions per answer. At most [`ANSWER_HANDLES_MAX`] handles per thread; beyond that
/// (labels that were not bounded after all) each call goes to the registry as before.
pub fn count_answer(
    door: &'static str,
    kind: &str,
    channel: &str,
    institution: &str,
    rc: crate::domain::Rc,
) {
    let rc = rc.as_str();
    let made = || {
        // The handle is bound to the recorder installed when it is made.
        hot();
        metrics::counter!(MESSAGES_TOTAL, "door" => door, "type" => kind.to_owned(), "channel" => channel.to_owned(),
            "institution" => institution.to_owned(), "rc" => rc)
    };
    // A thread tearing down its locals (a Drop counting an answer) goes to the registry.
    let cached = ANSWER_HANDLES.try_with(|cache| {
        let mut cache = cache.borrow_mut();
        if let Some(c) = cache.find(door, kind, channel, institution, rc) {
            c.increment(1);
            return;
        }
        let c = made();
        c.increment(1);
        cache.keep(door, kind, channel, institution, rc, c);
    });
    if cached.is_err() {
        made().increment(1);
    }
}

/// Adds `rupiah` to `ipg_paid_rupiah_total{institution}` (`institution` a configured code),
/// through a handle kept per thread once met, as [`count_answer`] does (at most
/// [`ANSWER_HANDLES_MAX`] per thread; beyond that, the registry).
pub fn count_paid(institution: &str, rupiah: u64) {
    let made = || {
        hot();
        metrics::counter!(PAID_RUPIAH_TOTAL, "institution" => institution.to_owned())
    };
    let cached = PAID_HANDLES.try_with(|cache| {
        let mut cache = cache.borrow_mut();
        if let Some(c) = cache.get(institution) {
            c.increment(rupiah);
            return;
        }
        let c = made();
        c.increment(rupiah);
        if cache.len() < ANSWER_HANDLES_MAX {
            cache.insert(institution.into(), c);
        }
    });
    if cached.is_err() {
        made().increment(rupiah);
    }
}

/// The most handles [`count_answer`] (`ipg_messages_total`) and [`count_paid`]
/// (`ipg_paid_rupiah_total`) each keep per thread.
pub const ANSWER_HANDLES_MAX: usize = 4096;

thread_local! {
    static ANSWER_HANDLES: std::cell::RefCell<AnswerHandles> = std::cell::RefCell::default();
    static PAID_HANDLES: std::cell::RefCell<std::collections::HashMap<Box<str>, metrics::Counter>> =
        std::cell::RefCell::default();
}

/// `ipg_messages_total`'s handles met by one thread: by channel, then institution (found
/// by `&str`, no key built), then a short list of `(door, type, rc)`.
#[derive(Default)]
struct AnswerHandles {
    by_channel:
        std::collections::HashMap<Box<str>, std::collections::HashMap<Box<str>, Vec<AnswerHandle>>>,
    len: usize,
}

struct AnswerHandle {
    door: &'static str,
    kind: Box<str>,
    rc: &'static str,
    counter: metrics::Counter,
}

impl AnswerHandles {
    fn find(
        &self,
        door: &str,
        kind: &str,
        channel: &str,
        institution: &str,
        rc: &str,
    ) -> Option<&metrics::Counter> {
        self.by_channel
            .get(channel)?
            .get(institution)?
            .iter()
            .find(|h| h.door == door && h.rc == rc && &*h.kind == kind)
            .map(|h| &h.counter)
    }

    fn keep(
        &mut self,
        door: &'static str,
        kind: &str,
        channel: &str,
        institution: &str,
        rc: &'static str,
        counter: metrics::Counter,
    ) {
        if self.len >= ANSWER_HANDLES_MAX {
            return;
        }
        self.len += 1;
        self.by_channel
            .entry(channel.into())
            .or_default()
            .entry(institution.into())
            .or_default()
            .push(AnswerHandle {
                door,
                kind: kind.into(),
                rc,
                counter,
            });
    }
}

/// A stage of `ipg_stage_duration_seconds` (its `stage` label).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    Decode,
    LockWait,
    Redis,
    Journal,
    Publish,
    Institution,
}

/// The `stage` label of each [`Stage`], in declaration order.
const STAGE_LABELS: [&str; 6] = [
    "decode",
    "lock_wait",
    "redis",
    "journal",
    "publish",
    "institution",
];

impl Stage {
    pub fn label(self) -> &'static str {
        STAGE_LABELS[self as usize]
    }
}

/// The hot path's series whose labels are fixed, resolved once per process: a
/// `metrics::histogram!` call looks its series up in the registry every time (the key and
/// its labels built, hashed, found in a sharded map), several times per message.
struct Hot {
    stages: [metrics::Histogram; 6],
    /// `ipg_message_duration_seconds` by type, in [`MESSAGE_KINDS`] order.
    messages: [metrics::Histogram; 5],
    inflight: metrics::Gauge,
}

/// The `type` label values of `ipg_message_duration_seconds`.
const MESSAGE_KINDS: [&str; 5] = ["inquiry", "payment", "reversal", "check_status", "unknown"];

fn hot() -> &'static Hot {
    static HOT: OnceLock<Hot> = OnceLock::new();
    HOT.get_or_init(|| {
        // The handles are bound to the recorder installed when they are made.
        install();
        Hot {
            stages: STAGE_LABELS.map(|s| metrics::histogram!(STAGE_SECONDS, "stage" => s)),
            messages: MESSAGE_KINDS.map(|k| metrics::histogram!(MESSAGE_SECONDS, "type" => k)),
            inflight: metrics::gauge!(INFLIGHT_MESSAGES),
        }
    })
}

/// `ipg_stage_duration_seconds{stage}`: records seconds.
pub fn stage(s: Stage) -> &'static metrics::Histogram {
    &hot().stages[s as usize]
}

/// `kind` as a bounded `type` label: a channel request type, else `unknown`.
pub fn message_kind(kind: &str) -> &'static str {
    MESSAGE_KINDS[..4]
        .iter()
        .find(|k| **k == kind)
        .copied()
        .unwrap_or("unknown")
}

/// `ipg_message_duration_seconds{type}`: records seconds; a `kind` that is not a channel
/// request type counts as `unknown` ([`message_kind`]).
pub fn message_seconds(kind: &str) -> &'static metrics::Histogram {
    let i = MESSAGE_KINDS[..4]
        .iter()
        .position(|k| *k == kind)
        .unwrap_or(4);
    &hot().messages[i]
}

/// `ipg_inflight_messages`: messages consumed and not yet settled.
pub fn inflight() -> &'static metrics::Gauge {
    &hot().inflight
}

/// `(name, meaning)` of every metric, for docs/configuration.md and for tests.
pub const ALL: &[(&str, &str)] = &[
    (
        MESSAGES_TOTAL,
        "Channel requests answered, by door (kafka, http), type, channel, institution and rc.",
    ),
    (
        MESSAGE_SECONDS,
        "Time from a request's consumption to its answer being acknowledged by Kafka, by type.",
    ),
    (
        STAGE_SECONDS,
        "Time spent per stage: decode, lock_wait, redis, publish, institution (passive calls).",
    ),
    (
        DEAD_LETTERS_TOTAL,
        "Inputs sent to the dead-letter topic, by reason.",
    ),
    (
        RETRIES_TOTAL,
        "Retries of a message or a publish, by cause (store, journal, busy, kafka).",
    ),
    (
        PARKED_TOTAL,
        "Requests set aside because their VA's Redis slot did not answer (a cluster master failing over): retried on their own, in order per VA, while the lane goes on with other VAs.",
    ),
    (
        LOCK_CONTENDED_TOTAL,
        "Payments or reversals that had to wait for a VA lock held elsewhere.",
    ),
    (
        CAS_CONFLICTS_TOTAL,
        "Bill writes that lost a compare-and-set to a concurrent writer and were re-read.",
    ),
    (
        DUPLICATES_TOTAL,
        "Repeated payments or reversals answered from their first result, by type.",
    ),
    (WEBHOOK_JOBS_TOTAL, "Webhook jobs published, by event."),
    (
        PAID_RUPIAH_TOTAL,
        "Rupiah paid into hosted bills, by institution.",
    ),
    (INFLIGHT_MESSAGES, "Requests consumed and not yet answered."),
    (
        ASSIGNED_PARTITIONS,
        "Request-topic partitions assigned to this instance.",
    ),
    (
        REDIS_UP,
        "1 when the last Redis call succeeded, 0 while Redis is unreachable.",
    ),
    (
        REDIS_PIPELINE_FALLBACKS_TOTAL,
        "Redis Cluster: pipelines of one slot sent again command by command after a redirect the client cannot follow for a pipeline (the slot migrating).",
    ),
    (
        REDIS_DURABILITY_RISK,
        "1 when Redis's persistence can lose acknowledged writes on a crash (not appendonly yes + appendfsync always), 0 when it cannot, -1 when unknown (CONFIG forbidden, e.g. managed Redis).",
    ),
    (RATE_LIMITED_TOTAL, "Requests refused over a rate limit, by scope (channel, institution) and code."),
    (CONSUMER_LAG, "Request-topic messages not yet committed, by partition: high watermark minus committed offset."),
    (PRODUCER_QUEUE, "Messages handed to the producer and not yet acknowledged by Kafka."),
    (
        WEBHOOK_ATTEMPTS_TOTAL,
        "Webhook calls, by institution and outcome (delivered, http_status, timeout, connect, error).",
    ),
    (
        WEBHOOK_RESULTS_TOTAL,
        "Webhook jobs settled, by institution and result (delivered, retry, deferred, followed, dead_letter, malformed).",
    ),
    (
        WEBHOOK_PENDING,
        "Webhook jobs consumed and not yet settled by this instance, by topic (main, retryN).",
    ),
    (
        WEBHOOK_BACKLOG,
        "Webhook messages not yet committed by the dispatcher's group on this instance's partitions, by topic (main, retryN).",
    ),
    (
        WEBHOOK_OLDEST_PENDING_SECONDS,
        "Age (since the payment) of the oldest webhook job this instance holds; 0 when none.",
    ),
    (
        WEBHOOK_DELIVERY_SECONDS,
        "Time from a webhook job's creation to its delivery (2xx), retries included.",
    ),
    (
        WEBHOOK_ATTEMPT_SECONDS,
        "Duration of one webhook call.",
    ),
    (
        HTTP_REQUESTS_TOTAL,
        "HTTP API requests answered, by route (the path pattern) and status.",
    ),
    (
        HTTP_SECONDS,
        "Time to answer an HTTP API request, by route.",
    ),
    (
        HTTP_CONNECTIONS,
        "HTTP connections open, by server (api, ops).",
    ),
    (
        HTTP_CONNECTIONS_REFUSED_TOTAL,
        "HTTP connections closed at once because the server's max_connections were open, by server.",
    ),
    (
        PASSIVE_REQUESTS_TOTAL,
        "Calls to passive institutions, by institution, endpoint and outcome (the rc answered, or timeout, connect, busy, breaker_open, http_5xx, not_json, unknown_rc, bad_signature, transport).",
    ),
    (
        PASSIVE_REQUEST_SECONDS,
        "Duration of one call to a passive institution, by institution and endpoint.",
    ),
    (
        PASSIVE_BREAKER_OPEN,
        "1 while an institution's circuit breaker is open (calls answered at once), by institution.",
    ),
    (
        PASSIVE_IN_DOUBT,
        "Payments at a passive institution being resolved (checked or reversed) by the switch, by institution.",
    ),
    (
        PASSIVE_RESOLUTIONS_TOTAL,
        "Steps of the resolution of payments in doubt, by institution and step (in_doubt, check_status, confirmed, denied, window_expired, reversal_attempt, reversed, reversed_by_channel).",
    ),
    (
        JOURNAL_APPLIER_LAG,
        "Journal events not yet read by the applier, by journal partition (gauge).",
    ),
    (
        JOURNAL_CATCH_UP_SECONDS,
        "Duration of each recovery: re-applying the journal from the institutions' marks after Redis lost its memory.",
    ),
    (
        JOURNAL_REAPPLIED_TOTAL,
        "Records (bills, payment stages, ledger entries, forwarded payments, bindings) Redis was missing or had older, set again from the journal.",
    ),
    (
        JOURNAL_CONFLICTS_TOTAL,
        "Journal ledger entries that found a different entry at their place in Redis (kept Redis's; alert on any: reconcile with verify).",
    ),
    (
        JOURNAL_UNREADABLE_TOTAL,
        "Journal events that did not parse and were skipped (a bug: alert on any).",
    ),
    (
        HISTORY_EVENTS_SCANNED_TOTAL,
        "Journal records read by reads of history (statements, reconciliations), found by time: a day's read costs about that day's events.",
    ),
    (
        HISTORY_READS_IN_FLIGHT,
        "Statements being read from the journal over HTTP (gauge).",
    ),
    (
        HISTORY_READS_REFUSED_TOTAL,
        "Statements refused with 429 because statement.max_concurrent were being read.",
    ),
    (
        JOURNAL_BLOCKED,
        "1 while a journal append of this process is past journal.append_deadline_ms and not yet acknowledged (the broker away): /readyz is not ready and the HTTP doors refuse changes with 503 (gauge).",
    ),
    (
        JOURNAL_BLOCKED_SECONDS_TOTAL,
        "Seconds this process spent with the journal blocked, counted when it unblocks.",
    ),
    (
        JOURNAL_LATE_APPENDS,
        "Journal appends past journal.append_deadline_ms still on their way to the broker (gauge).",
    ),
    (
        IN_DOUBT_TOTAL,
        "Changes answered in doubt (BILLER_SUSPECT_TRANSACTION, or 503 on the Active Client API) because the journal did not acknowledge in time, by door, and how the switch settled them (outcome: answered, confirmed, refused, abandoned).",
    ),
    (
        IN_DOUBT_SETTLING,
        "Changes answered in doubt that the switch is still settling (journal, then webhook job) (gauge).",
    ),
    (
        UNJOURNALED_CHANGES,
        "Changes committed in Redis and not yet acknowledged by the journal, over every institution, as of the last sweep (gauge).",
    ),
    (
        UNJOURNALED_SETTLED_TOTAL,
        "Changes an instance left unjournaled (it stopped between the commit and the acknowledgement), journaled again and announced by the sweep, by kind (pay, bill).",
    ),
    (
        RETENTION_RETIRED_TOTAL,
        "Records the retention sweep took out of Redis past the hot window, by kind (payment: to its compact record; bill; ledger_entry). They stay in the journal.",
    ),
    (
        REDIS_RECORDS,
        "Records in Redis's working set by kind (bill, payment in the hot window, ledger_entry), over every institution, as of the last retention sweep (gauge).",
    ),
    (
        REDIS_RECORD_BYTES,
        "Estimated bytes of those records by kind (MEMORY USAGE of a sample times the count) (gauge).",
    ),
    (REDIS_KEYS, "Keys in Redis over every master (DBSIZE) (gauge)."),
    (
        SNAPSHOT_SECONDS,
        "How long taking one institution's snapshot of the working set took (histogram).",
    ),
    (
        SNAPSHOTS_TOTAL,
        "Snapshots this process took, by outcome (taken, failed).",
    ),
    (
        SNAPSHOT_AGE_SECONDS,
        "Age of the oldest among the served institutions' newest snapshots (gauge): alert when it passes twice journal.snapshot_interval_ms.",
    ),
    (
        SNAPSHOT_BYTES,
        "Bytes of the served institutions' newest snapshots, summed (gauge).",
    ),
    (
        SNAPSHOT_EVENTS,
        "Events in the served institutions' newest snapshots, summed (gauge): the working set a restore applies.",
    ),
    (
        SNAPSHOT_LOADS_TOTAL,
        "Institutions a recovery or restore of this process rebuilt from a snapshot (then the journal after it) instead of from the journal's beginning.",
    ),
    (
        REDIS_USED_MEMORY_BYTES,
        "Redis's used_memory over every master (INFO memory) (gauge): flat once the windows are full.",
    ),
    (
        GROUP_COMMIT_CALLS_TOTAL,
        "Payment commit script calls to Redis (group commit: one call commits the payments of one institution that met while its previous call was in flight).",
    ),
    (
        GROUP_COMMIT_PAYMENTS_TOTAL,
        "Payments those calls committed or refused: divided by the calls, the mean group.",
    ),
    (
        BATCH_JOBS_TOTAL,
        "Bulk issuance job events on this instance: submitted, and how each run ended (done, failed, interrupted: it runs again by itself, lease_lost, stopped).",
    ),
    (
        BATCH_JOB_ROWS_TOTAL,
        "Rows bulk issuance jobs issued on this instance, by status (created, existing, valid, refused).",
    ),
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the Prometheus recorder once per process (several daemons in one test process
/// share it) and returns its handle.
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let buckets = [
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0,
            ];
            let recorder = PrometheusBuilder::new()
                .set_buckets(&buckets)
                .expect("buckets are not empty")
                .build_recorder();
            let handle = recorder.handle();
            // Fails only if another recorder is installed; the handle still renders ours.
            let _ = metrics::set_global_recorder(recorder);
            describe();
            handle
        })
        .clone()
}

fn describe() {
    for (name, help) in ALL {
        if name.ends_with("_total") {
            describe_counter!(*name, *help);
        } else if name.ends_with("_seconds") {
            describe_histogram!(*name, Unit::Seconds, *help);
        } else {
            describe_gauge!(*name, *help);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A handle is found only by its five labels, and no more than the bound are kept.
    #[test]
    fn answer_handles_are_found_by_every_label_and_bounded() {
        let mut cache = AnswerHandles::default();
        let labels = ("kafka", "payment", "BANK", "SCH01", "SUCCESS");
        cache.keep(
            "kafka",
            "payment",
            "BANK",
            "SCH01",
            "SUCCESS",
            metrics::Counter::noop(),
        );
        let find = |c: &AnswerHandles, (d, k, ch, i, rc): (&str, &str, &str, &str, &str)| {
            c.find(d, k, ch, i, rc).is_some()
        };
        assert!(find(&cache, labels));
        for other in [
            ("http", "payment", "BANK", "SCH01", "SUCCESS"),
            ("kafka", "inquiry", "BANK", "SCH01", "SUCCESS"),
            ("kafka", "payment", "BANK2", "SCH01", "SUCCESS"),
            ("kafka", "payment", "BANK", "SCH02", "SUCCESS"),
            ("kafka", "payment", "BANK", "SCH01", "BILLER_EXPIRED"),
        ] {
            assert!(!find(&cache, other), "{other:?}");
        }
        for i in 0..ANSWER_HANDLES_MAX + 10 {
            cache.keep(
                "kafka",
                "payment",
                &format!("C{i}"),
                "none",
                "SUCCESS",
                metrics::Counter::noop(),
            );
        }
        assert_eq!(cache.len, ANSWER_HANDLES_MAX);
        assert!(!find(
            &cache,
            (
                "kafka",
                "payment",
                &format!("C{ANSWER_HANDLES_MAX}"),
                "none",
                "SUCCESS"
            )
        ));
    }
}
