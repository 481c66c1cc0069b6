//! Saga stores: the record of every saga by trace id, and the watcher of its end.
//!
//! The trace id (`x-request-id`) is the saga id. [`SagaStore::begin`] is the idempotent
//! start: it creates the record only if the id is free, and otherwise says whether the
//! existing record has the same input (the caller gets, or waits for, that saga's outcome)
//! or a different one (the id is taken). [`SagaStore::watch`] resolves when a saga reaches
//! a final status, on any replica; it subscribes before it reads, so no end is missed.
//!
//! Backends: [`MemoryStore`] (always built; one process) and, with the `redis` feature,
//! `RedisStore` in the `redis` module (shared by every replica; records as JSON under a key
//! prefix, completions over pub/sub on one multiplexed connection per store instance).

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};

use crate::SagaError;

pub mod memory;
#[cfg(feature = "redis")]
pub mod redis;
mod waiters;

#[cfg(feature = "redis")]
pub use self::redis::{RedisConfig, RedisStore};
pub use memory::MemoryStore;

/// Where a saga stands, as recorded in the store.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum SagaStatus {
    /// Forward step `step` (index, name) is next or running.
    Running {
        /// Index of the step.
        step: usize,
        /// Name of the step.
        name: String,
    },
    /// The compensation of step `step` is next or running.
    Compensating {
        /// Index of the step being compensated.
        step: usize,
        /// Name of the step being compensated.
        name: String,
    },
    /// Final: every step completed; the output as JSON.
    Completed {
        /// The saga output.
        output: serde_json::Value,
    },
    /// Final: a step failed and every completed step was compensated, or the saga is stuck.
    Failed {
        /// The error ([`SagaError::Compensated`] or [`SagaError::Stuck`]).
        error: SagaError,
    },
}

impl SagaStatus {
    /// True for [`SagaStatus::Completed`] and [`SagaStatus::Failed`].
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            SagaStatus::Completed { .. } | SagaStatus::Failed { .. }
        )
    }

    /// The outcome of a final status; `None` while the saga runs.
    pub fn outcome(&self) -> Option<Outcome> {
        match self {
            SagaStatus::Completed { output } => Some(Ok(output.clone())),
            SagaStatus::Failed { error } => Some(Err(error.clone())),
            _ => None,
        }
    }
}

/// A finished saga's outcome: its output as JSON, or how it failed.
pub type Outcome = Result<serde_json::Value, SagaError>;

/// What the store holds for one trace id.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SagaRecord {
    /// The trace id (saga id).
    pub trace_id: String,
    /// The saga's name.
    pub saga: String,
    /// Fingerprint of the input (see [`fingerprint`]).
    pub fingerprint: String,
    /// Where it stands.
    pub status: SagaStatus,
    /// Attempts made of the current transition (0 before the first).
    pub attempts: u32,
    /// When it was started, in milliseconds since the Unix epoch.
    pub created_at_ms: u64,
    /// When it last changed, in milliseconds since the Unix epoch.
    pub updated_at_ms: u64,
}

impl SagaRecord {
    /// A new record in status [`SagaStatus::Running`] at step 0, stamped now.
    pub fn new(trace_id: &str, saga: &str, fingerprint: String, first_step: &str) -> Self {
        let now = now_ms();
        Self {
            trace_id: trace_id.to_string(),
            saga: saga.to_string(),
            fingerprint,
            status: SagaStatus::Running {
                step: 0,
                name: first_step.to_string(),
            },
            attempts: 0,
            created_at_ms: now,
            updated_at_ms: now,
        }
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Fingerprint of a saga input: the saga name plus a stable hash of the input's JSON.
pub fn fingerprint(saga: &str, input_json: &[u8]) -> String {
    // FNV-1a 64: stable across processes and releases, unlike std's SipHash keys.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in saga.as_bytes().iter().chain([0u8].iter()).chain(input_json) {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{saga}:{hash:016x}")
}

/// What [`SagaStore::begin`] found.
#[derive(Clone, Debug, PartialEq)]
pub enum Begin {
    /// The id was free; the record was created and the caller runs the saga.
    Started,
    /// The id holds a saga with the same fingerprint: do not run it again; return or await
    /// its outcome.
    Existing(SagaRecord),
    /// The id holds a saga with another fingerprint: refuse with [`SagaError::IdTaken`].
    Conflict(SagaRecord),
}

/// A store failure. Names what it was doing and where.
#[derive(Debug, Clone, thiserror::Error)]
#[error("saga store ({backend}): {message}")]
pub struct StoreError {
    /// "memory", "redis".
    pub backend: &'static str,
    /// What failed, with the address or key.
    pub message: String,
}

/// Store settings common to every backend.
#[derive(Clone, Debug)]
pub struct StoreConfig {
    /// How long a finished record (completed, compensated or stuck) is kept after it became
    /// final. This is also the idempotency window: once it expires, the same trace id starts a
    /// new saga. Default: 24 hours.
    pub finished_ttl: Duration,
    /// Safety time-to-live of a record that is not final yet (`None`: kept until it ends).
    /// Every write of a running or compensating status restarts it. It only exists so that a
    /// saga abandoned mid-flight (its message lost, a bug) does not keep its key forever; it
    /// must be far longer than any saga may legitimately run, because once it expires the id
    /// is free again and a retry with the same id would start a second execution.
    /// Default: 7 days.
    pub running_ttl: Option<Duration>,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            finished_ttl: Duration::from_secs(24 * 3600),
            running_ttl: Some(Duration::from_secs(7 * 24 * 3600)),
        }
    }
}

impl StoreConfig {
    /// The time-to-live a record gets when it is written with `status`.
    pub fn ttl_for(&self, status: &SagaStatus) -> Option<Duration> {
        if status.is_final() {
            Some(self.finished_ttl)
        } else {
            self.running_ttl
        }
    }
}

/// The saga store. Object safe: the engine holds an `Arc<dyn SagaStore>`.
pub trait SagaStore: Send + Sync + fmt::Debug + 'static {
    /// Atomically creates `record` unless its trace id exists; see [`Begin`].
    fn begin(&self, record: SagaRecord) -> BoxFuture<'_, Result<Begin, StoreError>>;

    /// Sets the status (and attempts) of `trace_id` and stamps `updated_at_ms`. A final status
    /// starts the finished time-to-live and wakes every watcher of the id, on every replica; a
    /// non-final one restarts the running safety TTL ([`StoreConfig::running_ttl`]).
    ///
    /// Fails with a [`StoreError`] naming the id when it has no record (never begun, removed
    /// or expired). A record that is already final is left as it is (the update is ignored):
    /// a late or duplicate delivery never reopens an ended saga. Otherwise concurrent updates
    /// of one id: the last write wins.
    fn update<'a>(
        &'a self,
        trace_id: &'a str,
        status: SagaStatus,
        attempts: u32,
    ) -> BoxFuture<'a, Result<(), StoreError>>;

    /// The record of `trace_id`, if any.
    fn get<'a>(
        &'a self,
        trace_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<SagaRecord>, StoreError>>;

    /// Resolves with the outcome once `trace_id` reaches a final status (at once if it
    /// already has). Subscribes before reading, so an end that happens in between is not
    /// missed. No polling. Callers bound the wait with their own timeout.
    ///
    /// An id without a record is waited for too (it may be begun later, or its record may
    /// have expired): the future only resolves when a final status is written, so always
    /// bound it with a timeout. Dropping the future unregisters the watcher at once.
    fn watch<'a>(&'a self, trace_id: &'a str) -> BoxFuture<'a, Result<Outcome, StoreError>>;

    /// Deletes the record of `trace_id` (tests, operators).
    fn remove<'a>(&'a self, trace_id: &'a str) -> BoxFuture<'a, Result<(), StoreError>>;
}
