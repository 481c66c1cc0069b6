//! The in-memory saga store: one process, no server. The default backend.
//!
//! Records live in a mutex'd map; watchers are woken in-process. Time-to-live is enforced
//! on access (an expired record reads as absent) and expired records are swept out now and
//! then by [`SagaStore::begin`], so memory does not grow with finished sagas.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use futures_util::future::BoxFuture;

use super::waiters::Waiters;
use super::{Begin, Outcome, SagaRecord, SagaStatus, SagaStore, StoreConfig, StoreError, now_ms};

const BACKEND: &str = "memory";
/// Expired records are swept at most this often.
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// The in-memory [`SagaStore`]: records and watchers of this process only.
///
/// Replicas do not share it; use the Redis store when several orchestrator replicas must
/// see the same sagas. Cheap to create; share one instance through an `Arc`.
pub struct MemoryStore {
    config: StoreConfig,
    state: Mutex<State>,
    waiters: Arc<Waiters>,
}

struct State {
    records: HashMap<String, Entry>,
    next_sweep: Instant,
}

struct Entry {
    record: SagaRecord,
    expires_at: Option<Instant>,
}

impl Entry {
    fn is_live(&self, now: Instant) -> bool {
        self.expires_at.is_none_or(|at| now < at)
    }
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore")
            .field("config", &self.config)
            .field("records", &self.lock().records.len())
            .field("waiters", &self.waiters.count())
            .finish()
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new(StoreConfig::default())
    }
}

impl MemoryStore {
    /// An empty store with these settings.
    pub fn new(config: StoreConfig) -> Self {
        Self {
            config,
            state: Mutex::new(State {
                records: HashMap::new(),
                next_sweep: Instant::now() + SWEEP_INTERVAL,
            }),
            waiters: Waiters::new(None),
        }
    }

    /// Number of registered watchers (all trace ids). For tests: a dropped `watch` future
    /// leaves none behind.
    #[doc(hidden)]
    pub fn watcher_count(&self) -> usize {
        self.waiters.count()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every critical section is a single map operation: a poisoned lock is consistent.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn expiry(&self, status: &SagaStatus, now: Instant) -> Option<Instant> {
        self.config
            .ttl_for(status)
            .and_then(|ttl| now.checked_add(ttl))
    }

    fn begin_now(&self, record: SagaRecord) -> Begin {
        let now = Instant::now();
        let mut state = self.lock();
        if now >= state.next_sweep {
            state.records.retain(|_, entry| entry.is_live(now));
            state.next_sweep = now + SWEEP_INTERVAL;
        }
        if let Some(existing) = state.records.get(&record.trace_id)
            && existing.is_live(now)
        {
            let existing = existing.record.clone();
            return if existing.fingerprint == record.fingerprint {
                Begin::Existing(existing)
            } else {
                Begin::Conflict(existing)
            };
        }
        let expires_at = self.expiry(&record.status, now);
        state
            .records
            .insert(record.trace_id.clone(), Entry { record, expires_at });
        Begin::Started
    }

    fn update_now(
        &self,
        trace_id: &str,
        status: SagaStatus,
        attempts: u32,
    ) -> Result<(), StoreError> {
        let now = Instant::now();
        let outcome = status.outcome();
        {
            let mut state = self.lock();
            let entry = state
                .records
                .get_mut(trace_id)
                .filter(|entry| entry.is_live(now))
                .ok_or_else(|| missing(trace_id))?;
            if entry.record.status.is_final() {
                // An ended saga stays ended: a late or duplicate delivery does not reopen it.
                return Ok(());
            }
            entry.expires_at = self.expiry(&status, now);
            entry.record.status = status;
            entry.record.attempts = attempts;
            entry.record.updated_at_ms = now_ms();
        }
        // Notify after the write is visible: a watcher registered before the write is woken
        // here, one registered after it reads the final record itself.
        if let Some(outcome) = outcome {
            self.waiters.notify(trace_id, &Ok(outcome));
        }
        Ok(())
    }

    fn get_now(&self, trace_id: &str) -> Option<SagaRecord> {
        let now = Instant::now();
        self.lock()
            .records
            .get(trace_id)
            .filter(|entry| entry.is_live(now))
            .map(|entry| entry.record.clone())
    }

    async fn watch_outcome(&self, trace_id: &str) -> Result<Outcome, StoreError> {
        // Register first, then read: an update between the two wakes the waiter.
        let waiter = self.waiters.register(trace_id);
        if let Some(outcome) = self.get_now(trace_id).and_then(|r| r.status.outcome()) {
            return Ok(outcome);
        }
        waiter.wait(BACKEND).await
    }
}

fn missing(trace_id: &str) -> StoreError {
    StoreError {
        backend: BACKEND,
        message: format!(
            "no record for trace id {trace_id}: it was never begun, was removed, or expired"
        ),
    }
}

impl SagaStore for MemoryStore {
    fn begin(&self, record: SagaRecord) -> BoxFuture<'_, Result<Begin, StoreError>> {
        async move { Ok(self.begin_now(record)) }.boxed()
    }

    fn update<'a>(
        &'a self,
        trace_id: &'a str,
        status: SagaStatus,
        attempts: u32,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        async move { self.update_now(trace_id, status, attempts) }.boxed()
    }

    fn get<'a>(
        &'a self,
        trace_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<SagaRecord>, StoreError>> {
        async move { Ok(self.get_now(trace_id)) }.boxed()
    }

    fn watch<'a>(&'a self, trace_id: &'a str) -> BoxFuture<'a, Result<Outcome, StoreError>> {
        self.watch_outcome(trace_id).boxed()
    }

    fn remove<'a>(&'a self, trace_id: &'a str) -> BoxFuture<'a, Result<(), StoreError>> {
        async move {
            self.lock().records.remove(trace_id);
            Ok(())
        }
        .boxed()
    }
}
