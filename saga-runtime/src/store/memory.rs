//! The in-memory saga store: one process, no server. The default backend.
//!
//! Records live in a mutex'd map, with two indexes kept in the same critical section: the
//! running sagas by lease expiry (what the sweeper reads) and the finished ones in the order
//! they ended (what retention evicts). Finished records are kept for
//! [`StoreConfig::finished_ttl`] (10 minutes by default) and at most
//! [`StoreConfig::max_finished`] of them (100,000): each write that ends a saga evicts what is
//! over either bound, oldest first, in O(1) per record, so memory stays bounded under any load
//! and nothing is scanned on the begin path. Watchers are woken in-process.
//!
//! For operators, the same critical sections keep each saga's history (bounded by
//! [`StoreConfig::history_limit`]) and one ordered index per status family, so listings read
//! an index, never every record.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::fmt;
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard};

use futures_util::FutureExt;
use futures_util::future::BoxFuture;

use super::waiters::Waiters;
use super::{
    Advance, Begin, Claim, Claimed, Custody, HistoryEntry, HistoryEvent, Hold, ListCursor,
    ListQuery, Outcome, Reopen, SagaPage, SagaRecord, SagaStore, StatusKind, StoreConfig,
    StoreError, Written, millis, now_ms,
};

const BACKEND: &str = "memory";

/// The in-memory [`SagaStore`]: records and watchers of this process only.
///
/// Replicas do not share it, and it dies with its process: use the Redis store when several
/// orchestrator replicas must see the same sagas or when sagas must survive a process.
/// Cheap to create; share one instance through an `Arc`.
pub struct MemoryStore {
    config: StoreConfig,
    state: Mutex<State>,
    waiters: Arc<Waiters>,
}

#[derive(Default)]
struct State {
    records: HashMap<String, SagaRecord>,
    /// `(lease_until_ms, trace_id)` of every running record.
    leases: BTreeSet<(u64, String)>,
    /// `(expires_at_ms, trace_id, generation)` of finished records, in the order they ended
    /// (the finished TTL is one value, so that is also expiry order). An entry whose
    /// generation is no longer in `ended` is stale (its record was removed or expired).
    finished: VecDeque<(u64, String, u64)>,
    /// The generation of every finished record held: what the retention queue may evict.
    ended: HashMap<String, u64>,
    next_generation: u64,
    /// The history of every record held, oldest entry first.
    history: HashMap<String, VecDeque<HistoryEntry>>,
    /// `(status_since_ms, trace_id)` of every record, one set per [`StatusKind`] (in the
    /// order of [`StatusKind::ALL`]).
    by_status: [BTreeSet<(u64, String)>; 5],
}

fn slot(kind: StatusKind) -> usize {
    StatusKind::ALL
        .iter()
        .position(|k| *k == kind)
        .unwrap_or_default()
}

impl State {
    fn set_lease(&mut self, record: &mut SagaRecord, until: u64) {
        self.leases
            .remove(&(record.lease_until_ms, record.trace_id.clone()));
        record.lease_until_ms = until;
        self.leases.insert((until, record.trace_id.clone()));
    }

    /// Enters a record that just ended into the retention queue.
    fn retain_ended(&mut self, trace_id: &str, expires_at: u64) {
        let generation = self.next_generation;
        self.next_generation += 1;
        self.ended.insert(trace_id.to_string(), generation);
        self.finished
            .push_back((expires_at, trace_id.to_string(), generation));
    }

    /// Forgets the record of `trace_id` (removed, or expired on access).
    fn forget(&mut self, trace_id: &str) {
        if let Some(record) = self.records.remove(trace_id) {
            self.leases
                .remove(&(record.lease_until_ms, record.trace_id.clone()));
            self.unindex(&record);
        }
        self.ended.remove(trace_id);
        self.history.remove(trace_id);
    }

    fn unindex(&mut self, record: &SagaRecord) {
        self.by_status[slot(record.status.kind())]
            .remove(&(record.status_since_ms, record.trace_id.clone()));
    }

    /// Moves `record` into the index of its status family if it left `previous` (`None`: it
    /// is new), stamping when it entered it.
    fn reindex(&mut self, record: &mut SagaRecord, previous: Option<StatusKind>, now: u64) {
        let kind = record.status.kind();
        if previous == Some(kind) {
            return;
        }
        if let Some(previous) = previous {
            self.by_status[slot(previous)]
                .remove(&(record.status_since_ms, record.trace_id.clone()));
        }
        record.status_since_ms = now;
        self.by_status[slot(kind)].insert((now, record.trace_id.clone()));
    }

    /// Appends `entry` to the history of `trace_id`, keeping the latest `limit` entries.
    fn append(&mut self, trace_id: &str, entry: HistoryEntry, limit: usize) {
        // The key is allocated once per saga, not once per entry.
        if !self.history.contains_key(trace_id) {
            self.history.insert(trace_id.to_string(), VecDeque::new());
        }
        let Some(history) = self.history.get_mut(trace_id) else {
            return;
        };
        history.push_back(entry);
        while history.len() > limit.max(1) {
            history.pop_front();
        }
    }

    /// Drops finished records past their TTL or over the cap, oldest first; O(1) per entry.
    fn evict(&mut self, now: u64, cap: usize) {
        while let Some((expires_at, trace_id, generation)) = self.finished.front() {
            let live = self.ended.get(trace_id) == Some(generation);
            if live && *expires_at > now && self.ended.len() <= cap {
                break;
            }
            if let Some((_, trace_id, _)) = self.finished.pop_front()
                && live
            {
                self.forget(&trace_id);
            }
        }
    }
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.lock();
        f.debug_struct("MemoryStore")
            .field("config", &self.config)
            .field("records", &state.records.len())
            .field("running", &state.leases.len())
            .field("waiters", &self.waiters.count())
            .finish()
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new(StoreConfig::memory())
    }
}

impl MemoryStore {
    /// An empty store with these settings ([`StoreConfig::memory`] gives its defaults).
    pub fn new(config: StoreConfig) -> Self {
        Self {
            config,
            state: Mutex::new(State::default()),
            waiters: Waiters::new(None),
        }
    }

    /// Number of registered watchers (all trace ids). For tests: a dropped `watch` future
    /// leaves none behind.
    #[doc(hidden)]
    pub fn watcher_count(&self) -> usize {
        self.waiters.count()
    }

    /// Number of records held (running and finished). For tests of retention.
    #[doc(hidden)]
    pub fn record_count(&self) -> usize {
        self.lock().records.len()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every critical section leaves the maps consistent before it can panic: a poisoned
        // lock is still usable.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// True when `record` outlived its safety TTL (running) or finished TTL.
    fn expired(&self, record: &SagaRecord, now: u64) -> bool {
        self.config
            .ttl_for(&record.status)
            .is_some_and(|ttl| now >= record.updated_at_ms.saturating_add(millis(ttl)))
    }

    fn live<'s>(
        &self,
        state: &'s mut State,
        trace_id: &str,
        now: u64,
    ) -> Option<&'s mut SagaRecord> {
        let expired = self.expired(state.records.get(trace_id)?, now);
        if expired {
            state.forget(trace_id);
            return None;
        }
        state.records.get_mut(trace_id)
    }

    fn begin_now(&self, mut record: SagaRecord) -> Begin {
        let now = now_ms();
        let mut state = self.lock();
        if let Some(existing) = self.live(&mut state, &record.trace_id, now) {
            let existing = existing.clone();
            return if existing.fingerprint == record.fingerprint {
                Begin::Existing(existing)
            } else {
                Begin::Conflict(existing)
            };
        }
        record.created_at_ms = now;
        record.updated_at_ms = now;
        state
            .leases
            .insert((record.lease_until_ms, record.trace_id.clone()));
        state.reindex(&mut record, None, now);
        let started = HistoryEntry {
            at_ms: now,
            run: record.owner.clone(),
            event: HistoryEvent::Started { mode: record.mode },
        };
        state.append(&record.trace_id, started, self.config.history_limit);
        state.records.insert(record.trace_id.clone(), record);
        Begin::Started
    }

    fn claim_now(&self, claim: &Claim<'_>) -> Claimed {
        let now = now_ms();
        let mut guard = self.lock();
        let state = &mut *guard;
        let Some(record) = self.live(state, claim.trace_id, now) else {
            return Claimed::Missing;
        };
        if record.status.is_final() {
            return Claimed::Finished;
        }
        if claim.seq.is_some_and(|seq| seq != record.seq) {
            return Claimed::Stale {
                current: record.seq,
            };
        }
        let lapsed = record.lease_until_ms <= now;
        let free = if claim.recovery {
            lapsed
        } else {
            lapsed || record.queued || record.owner == claim.token
        };
        if !free {
            return Claimed::Busy;
        }
        let Some(mut record) = state.records.remove(claim.trace_id) else {
            return Claimed::Missing;
        };
        record.owner = claim.token.to_string();
        record.queued = false;
        record.attempts += 1;
        record.updated_at_ms = now;
        state.set_lease(&mut record, now.saturating_add(millis(claim.lease)));
        let won = Claimed::Won {
            attempt: record.attempts,
            seq: record.seq,
            mode: record.mode,
            state: if claim.recovery {
                record.state.clone()
            } else {
                None
            },
            compensate: record.compensation_requested,
        };
        state.records.insert(record.trace_id.clone(), record);
        won
    }

    /// The record `token` holds at `seq`, or why it does not.
    fn held<'s>(
        &self,
        state: &'s mut State,
        trace_id: &str,
        seq: u64,
        token: &str,
        now: u64,
    ) -> Result<&'s mut SagaRecord, Written> {
        let record = self.live(state, trace_id, now).ok_or(Written::Missing)?;
        if record.status.is_final() {
            return Err(Written::Finished);
        }
        if record.seq != seq || record.owner != token {
            return Err(Written::Fenced);
        }
        Ok(record)
    }

    fn advance_now(&self, advance: Advance<'_>) -> Written {
        let now = now_ms();
        let outcome = advance.status.outcome();
        {
            let mut guard = self.lock();
            let state = &mut *guard;
            match self.held(state, advance.trace_id, advance.seq, advance.token, now) {
                Err(refused) => return refused,
                Ok(record) if advance.abortable && record.compensation_requested => {
                    return Written::CompensationRequested;
                }
                Ok(_) => {}
            }
            // Moved out and back in, not cloned: the state it holds can be large.
            let Some(mut record) = state.records.remove(advance.trace_id) else {
                return Written::Missing;
            };
            record.seq += 1;
            record.attempts = 0;
            record.updated_at_ms = now;
            let previous = record.status.kind();
            record.status = advance.status;
            if record.status.kind() != StatusKind::Running {
                record.compensation_requested = false;
            }
            state.reindex(&mut record, Some(previous), now);
            for entry in advance.history {
                state.append(&record.trace_id, entry.clone(), self.config.history_limit);
            }
            if record.status.is_final() {
                state
                    .leases
                    .remove(&(record.lease_until_ms, record.trace_id.clone()));
                // A stuck saga keeps the state it is stuck at, for an operator to resume.
                record.state = advance.state.map(str::to_string);
                record.owner.clear();
                record.lease_until_ms = 0;
                record.queued = false;
                let expires_at = now.saturating_add(millis(self.config.finished_ttl));
                state.retain_ended(&record.trace_id, expires_at);
            } else {
                record.state = advance.state.map(str::to_string);
                apply_custody(state, &mut record, &advance.custody, now);
            }
            state.records.insert(record.trace_id.clone(), record);
            state.evict(now, self.config.max_finished);
        }
        // Notify after the write is visible: a watcher registered before the write is woken
        // here, one registered after it reads the final record itself.
        if let Some(outcome) = outcome {
            self.waiters.notify(advance.trace_id, &Ok(outcome));
        }
        Written::Done
    }

    fn hold_now(&self, hold: &Hold<'_>) -> Written {
        let Hold {
            trace_id,
            seq,
            token,
            custody,
            refund_attempt,
            history,
            ..
        } = hold;
        let (seq, refund_attempt) = (*seq, *refund_attempt);
        let now = now_ms();
        let mut guard = self.lock();
        let state = &mut *guard;
        if let Err(refused) = self.held(state, trace_id, seq, token, now) {
            return refused;
        }
        let Some(mut record) = state.records.remove(*trace_id) else {
            return Written::Missing;
        };
        record.updated_at_ms = now;
        if refund_attempt {
            record.attempts = record.attempts.saturating_sub(1);
        }
        apply_custody(state, &mut record, custody, now);
        for entry in *history {
            state.append(trace_id, entry.clone(), self.config.history_limit);
        }
        state.records.insert(record.trace_id.clone(), record);
        Written::Done
    }

    fn expired_now(&self, saga: &str, limit: usize) -> Vec<String> {
        let now = now_ms();
        let state = self.lock();
        state
            .leases
            .iter()
            .take_while(|(until, _)| *until <= now)
            .filter(|(_, trace_id)| state.records.get(trace_id).is_some_and(|r| r.saga == saga))
            .take(limit)
            .map(|(_, trace_id)| trace_id.clone())
            .collect()
    }

    fn reopen_now(&self, reopen: Reopen<'_>) -> Written {
        let now = now_ms();
        let mut guard = self.lock();
        let state = &mut *guard;
        let Some(record) = self.live(state, reopen.trace_id, now) else {
            return Written::Missing;
        };
        match record.status.kind() {
            StatusKind::Stuck if record.seq == reopen.seq => {}
            StatusKind::Completed | StatusKind::Compensated => return Written::Finished,
            _ => return Written::Fenced,
        }
        let Some(mut record) = state.records.remove(reopen.trace_id) else {
            return Written::Missing;
        };
        // Out of the retention queue: its entry there is stale from now on.
        state.ended.remove(reopen.trace_id);
        record.seq += 1;
        record.attempts = 0;
        record.updated_at_ms = now;
        record.status = reopen.status;
        record.state = Some(reopen.state.to_string());
        record.compensation_requested = reopen.compensate;
        state.reindex(&mut record, Some(StatusKind::Stuck), now);
        apply_custody(state, &mut record, &reopen.custody, now);
        state.append(&record.trace_id, reopen.entry, self.config.history_limit);
        state.records.insert(record.trace_id.clone(), record);
        Written::Done
    }

    fn request_compensation_now(&self, trace_id: &str, entry: HistoryEntry) -> Written {
        let now = now_ms();
        let mut guard = self.lock();
        let state = &mut *guard;
        let Some(record) = self.live(state, trace_id, now) else {
            return Written::Missing;
        };
        if record.status.is_final() {
            return Written::Finished;
        }
        record.compensation_requested = true;
        record.updated_at_ms = now;
        state.append(trace_id, entry, self.config.history_limit);
        Written::Done
    }

    fn list_now(&self, query: &ListQuery) -> SagaPage {
        let now = now_ms();
        let newest = query
            .older_than
            .map_or(u64::MAX, |age| now.saturating_sub(millis(age)));
        let state = self.lock();
        let start = match &query.after {
            Some(after) => Bound::Excluded((after.since_ms, after.trace_id.clone())),
            None => Bound::Unbounded,
        };
        let limit = query.page_size();
        let mut sagas = Vec::with_capacity(limit.min(64));
        let mut more = false;
        let matching = state.by_status[slot(query.status)]
            .range((start, Bound::Unbounded))
            .take_while(|(since, _)| *since <= newest)
            .filter_map(|(_, trace_id)| state.records.get(trace_id))
            .filter(|record| !self.expired(record, now))
            .filter(|record| query.saga.as_ref().is_none_or(|saga| *saga == record.saga));
        for record in matching {
            if sagas.len() == limit {
                more = true;
                break;
            }
            let mut summary = record.clone();
            summary.state = None;
            sagas.push(summary);
        }
        let next = more.then(|| sagas.last()).flatten().map(|last| ListCursor {
            since_ms: last.status_since_ms,
            trace_id: last.trace_id.clone(),
        });
        SagaPage { sagas, next }
    }

    fn get_now(&self, trace_id: &str) -> Option<SagaRecord> {
        let now = now_ms();
        self.live(&mut self.lock(), trace_id, now)
            .map(|r| r.clone())
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

fn apply_custody(state: &mut State, record: &mut SagaRecord, custody: &Custody, now: u64) {
    record.owner.clone_from(&custody.token);
    record.queued = custody.queued;
    state.set_lease(record, now.saturating_add(millis(custody.lease)));
}

impl SagaStore for MemoryStore {
    fn begin(&self, record: SagaRecord) -> BoxFuture<'_, Result<Begin, StoreError>> {
        async move { Ok(self.begin_now(record)) }.boxed()
    }

    fn claim<'a>(&'a self, claim: Claim<'a>) -> BoxFuture<'a, Result<Claimed, StoreError>> {
        async move { Ok(self.claim_now(&claim)) }.boxed()
    }

    fn advance<'a>(&'a self, advance: Advance<'a>) -> BoxFuture<'a, Result<Written, StoreError>> {
        async move { Ok(self.advance_now(advance)) }.boxed()
    }

    fn hold<'a>(&'a self, hold: Hold<'a>) -> BoxFuture<'a, Result<Written, StoreError>> {
        async move { Ok(self.hold_now(&hold)) }.boxed()
    }

    fn expired<'a>(
        &'a self,
        saga: &'a str,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<String>, StoreError>> {
        async move { Ok(self.expired_now(saga, limit)) }.boxed()
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
            let mut state = self.lock();
            state.forget(trace_id);
            Ok(())
        }
        .boxed()
    }

    fn history<'a>(
        &'a self,
        trace_id: &'a str,
    ) -> BoxFuture<'a, Result<Vec<HistoryEntry>, StoreError>> {
        async move {
            let now = now_ms();
            let mut state = self.lock();
            if self.live(&mut state, trace_id, now).is_none() {
                return Ok(Vec::new());
            }
            Ok(state
                .history
                .get(trace_id)
                .map(|entries| entries.iter().cloned().collect())
                .unwrap_or_default())
        }
        .boxed()
    }

    fn list<'a>(&'a self, query: &'a ListQuery) -> BoxFuture<'a, Result<SagaPage, StoreError>> {
        async move { Ok(self.list_now(query)) }.boxed()
    }

    fn reopen<'a>(&'a self, reopen: Reopen<'a>) -> BoxFuture<'a, Result<Written, StoreError>> {
        async move { Ok(self.reopen_now(reopen)) }.boxed()
    }

    fn request_compensation<'a>(
        &'a self,
        trace_id: &'a str,
        entry: HistoryEntry,
    ) -> BoxFuture<'a, Result<Written, StoreError>> {
        async move { Ok(self.request_compensation_now(trace_id, entry)) }.boxed()
    }

    /// Always up: the store is this process.
    fn ping(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        async { Ok(()) }.boxed()
    }
}
