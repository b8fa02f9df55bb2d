//! The `[journal]` section, owned by the journal's readers.

use std::time::Duration;

use serde::Deserialize;

use crate::config::{millis, SettingsError};

/// How the journal is read back (docs/journal.md). The topic is `topics.journal`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JournalSettings {
    /// How often the applier writes the institutions' marks (ms).
    #[serde(rename = "mark_interval_ms", deserialize_with = "millis")]
    pub mark_interval: Duration,
    /// Marks trail the acknowledged events by this much (ms), so every recovery
    /// re-applies at least this much of the journal: on a Redis Cluster, the reference
    /// bindings a dead master did not replicate live in slots away from their
    /// institutions' marks (docs/journal.md, "Redis Cluster").
    #[serde(rename = "mark_delay_ms", deserialize_with = "millis")]
    pub mark_delay: Duration,

    /// Events applied per Redis pipeline in a recovery or `restore`.
    pub batch: usize,
    /// A recovery that reads nothing for this long fails (ms), and is tried again.
    #[serde(rename = "read_timeout_ms", deserialize_with = "millis")]
    pub read_timeout: Duration,
    /// A read of history reads the records stamped this long before and after its window
    /// (ms; `journal::window`): late events and clocks that disagree.
    #[serde(rename = "time_margin_ms", deserialize_with = "millis")]
    pub time_margin: Duration,
    /// How long a change waits for the broker to acknowledge its event before it is
    /// answered in doubt (ms; docs/journal.md, "Broker faults"); the append goes on.
    #[serde(rename = "append_deadline_ms", deserialize_with = "millis")]
    pub append_deadline: Duration,
    /// A change committed and still not acknowledged by the journal after this long (ms)
    /// was left by an instance that stopped: the sweep journals and announces it
    /// (`journal::unjournaled`).
    #[serde(rename = "unjournaled_after_ms", deserialize_with = "millis")]
    pub unjournaled_after: Duration,
    /// How often each institution's working set is snapshotted (ms; zero: never;
    /// `journal::snapshot`).
    #[serde(rename = "snapshot_interval_ms", deserialize_with = "millis")]
    pub snapshot_interval: Duration,
}

impl JournalSettings {
    /// # Errors
    /// A zero interval or batch.
    pub fn validate(&self) -> Result<(), SettingsError> {
        if self.mark_interval.is_zero() {
            return Err(crate::config::bad(
                "journal.mark_interval_ms",
                "must be above 0",
            ));
        }
        if self.batch == 0 || self.batch > 100_000 {
            return Err(crate::config::bad("journal.batch", "must be 1 to 100000"));
        }
        if self.time_margin > Duration::from_secs(24 * 3600) {
            return Err(crate::config::bad(
                "journal.time_margin_ms",
                "must be at most 86400000 (a day)",
            ));
        }
        if self.append_deadline < Duration::from_millis(100)
            || self.append_deadline > Duration::from_secs(60)
        {
            return Err(crate::config::bad(
                "journal.append_deadline_ms",
                "must be 100 to 60000",
            ));
        }
        // Acknowledged changes stay listed twice the deadline (their webhook job may still be
        // on its way); the window must let them go first.
        if self.unjournaled_after <= self.append_deadline * 2
            || self.unjournaled_after > Duration::from_secs(24 * 3600)
        {
            return Err(crate::config::bad(
                "journal.unjournaled_after_ms",
                "must be above twice journal.append_deadline_ms and at most 86400000",
            ));
        }
        if self.read_timeout.is_zero() {
            return Err(crate::config::bad(
                "journal.read_timeout_ms",
                "must be above 0",
            ));
        }
        Ok(())
    }
}
