//! The `[pipeline]` section: how the Kafka door spreads requests over lanes, how many it
//! holds, and how it retries what Redis or Kafka could not take.

use std::time::Duration;

use serde::Deserialize;

use crate::config::{bad, SettingsError};

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineSettings {
    pub lanes: usize,
    pub lane_queue: usize,
    pub max_in_flight: usize,
    /// First and longest pause between retries when Redis or Kafka cannot be reached.
    #[serde(
        rename = "retry_initial_ms",
        deserialize_with = "crate::config::millis"
    )]
    pub retry_initial: Duration,
    #[serde(rename = "retry_max_ms", deserialize_with = "crate::config::millis")]
    pub retry_max: Duration,
}

impl PipelineSettings {
    /// # Errors
    /// The first invalid key, named.
    pub fn validate(&self) -> Result<(), SettingsError> {
        if self.lanes == 0 || self.lanes > 4096 {
            return Err(bad("pipeline.lanes", "must be between 1 and 4096"));
        }
        if self.lane_queue == 0 {
            return Err(bad("pipeline.lane_queue", "must be at least 1"));
        }
        if self.max_in_flight == 0 || self.max_in_flight > 1_000_000 {
            return Err(bad(
                "pipeline.max_in_flight",
                "must be between 1 and 1000000",
            ));
        }
        if self.retry_initial.is_zero() || self.retry_max < self.retry_initial {
            return Err(bad(
                "pipeline.retry_max_ms",
                "must be at least pipeline.retry_initial_ms (> 0)",
            ));
        }
        Ok(())
    }
}
