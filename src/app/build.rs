//! The switch alone, as settings describe it: routing, hosted bill rules and passive
//! forwarding over a Redis store that journals every change. The daemon builds it with
//! its own producer ([`build_switch_with`]); the CLI, tests and benches with a producer of
//! their own ([`build_switch`]).

use std::sync::Arc;

use crate::clock::Clock;
use crate::hosted::Hosted;
use crate::settings::Settings;
use crate::store::{Store, StoreError};
use crate::switch::Switch;

/// Why the switch could not be assembled from settings.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("HTTP client for passive institutions: {0}")]
    Http(#[from] reqwest::Error),
    /// Every change is journaled before it is answered, so changing anything needs the
    /// broker; the embedded one lives inside a running daemon.
    #[error("kafka.bootstrap_servers is \"embedded\": this command journals what it changes and needs the running daemon's broker (with the demo: source .run/demo.env)")]
    NoBroker,
}

/// How the switch journals: through the daemon's producer (`publisher`, stopped by
/// `shutdown`), reading the journal back at `bootstrap`.
pub struct Journaling {
    pub publisher: crate::kafka::publish::Publisher,
    pub bootstrap: String,
    pub shutdown: tokio_util::sync::CancellationToken,
}

/// The switch (routing, hosted bill rules, passive forwarding) over a Redis store, as
/// settings describe it, journaling through a producer of its own made at the first change
/// (the CLI, tests).
///
/// # Errors
/// An invalid Redis URL, an HTTP client that cannot be built, the embedded broker
/// (`NoBroker`: nothing outside the daemon can reach it).
pub fn build_switch(settings: &Settings) -> Result<Switch, BuildError> {
    if settings.kafka.is_embedded() {
        return Err(BuildError::NoBroker);
    }
    let bootstrap = &settings.kafka.bootstrap_servers;
    let sink = crate::kafka::journal::KafkaJournal::lazy(
        bootstrap,
        &settings.kafka,
        settings.pipeline.retry_initial,
        settings.pipeline.retry_max,
        settings.topics.journal.clone(),
    );
    let store = Store::new(&settings.redis)?
        .with_retention(crate::store::Retention::of(&settings.retention))
        .with_journal(
            Arc::new(sink),
            Arc::new(settings.journal(bootstrap)),
            // A command line has no channel waiting and nothing that settles a change in
            // doubt: it waits for the acknowledgement (or Ctrl-C; a repeat journals it).
            std::time::Duration::ZERO,
        );
    assemble(settings, store, None)
}

/// The daemon's switch: [`build_switch`] journaling through the daemon's producer, with
/// the passive resolver's steps published on `audit`.
///
/// # Errors
/// An invalid Redis URL, an HTTP client that cannot be built.
pub fn build_switch_with(
    settings: &Settings,
    audit: Option<crate::passive::Audit>,
    journaling: Journaling,
) -> Result<Switch, BuildError> {
    let sink = crate::kafka::journal::KafkaJournal::new(
        journaling.publisher,
        settings.topics.journal.clone(),
        journaling.shutdown,
    );
    let store = Store::new(&settings.redis)?
        .with_retention(crate::store::Retention::of(&settings.retention))
        .with_journal(
            Arc::new(sink),
            Arc::new(settings.journal(&journaling.bootstrap)),
            settings.journal.append_deadline,
        );
    assemble(settings, store, audit)
}

fn assemble(
    settings: &Settings,
    store: Store,
    audit: Option<crate::passive::Audit>,
) -> Result<Switch, BuildError> {
    let bills = crate::hosted::BillCache::new(settings.switch.bill_cache);
    let clock = Clock::new(settings.switch.offset);
    Ok(Switch {
        routing: Arc::new(settings.routing()),
        passive: crate::passive::Passive::new(
            &settings.passive,
            &settings.institutions,
            crate::lock::LockTimes {
                ttl: settings.switch.lock_ttl,
                wait: settings.switch.lock_wait,
            },
            store.clone(),
            clock,
            audit,
        )?,
        hosted: Hosted {
            store,
            clock,
            lock_ttl: settings.switch.lock_ttl,
            lock_wait: settings.switch.lock_wait,
            bills,
        },
        clock,
    })
}
