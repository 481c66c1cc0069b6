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
use std::num::NonZeroU64;
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard};

use futures_util::FutureExt;
use futures_util::future::BoxFuture;

use super::waiters::Waiters;
use super::{
    Advance, Begin, Claim, Claimed, Custody, HistoryEntry, HistoryEvent, Hold, ListCursor,
    ListQuery, Outcome, Reopen, SagaPage, SagaRecord, SagaStatus, SagaStore, StatusKind,
    StoreConfig, StoreError, Written, millis, now_ms,
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

/// A saga's id, shared by its map entry and every index that names it (cloned, never
/// reallocated, per write).
type Id = Arc<str>;

/// Everything the store holds about one saga, under one map entry (one lookup per write).
struct Slot {
    /// The key of its map entry, shared by the indexes.
    id: Id,
    record: SagaRecord,
    /// Its history, oldest entry first, at most [`StoreConfig::history_limit`] entries.
    history: VecDeque<HistoryEntry>,
    /// Its generation in the retention queue while it is finished; `None` while running.
    /// (Non-zero: the option takes no more room, and the boxed slot stays in its 384-byte
    /// size class.)
    generation: Option<NonZeroU64>,
    /// A completed saga's output as JSON text, its record holding `null` in its place: a
    /// finished record is kept for the retention time, and a JSON object as a `serde_json` map
    /// is a B-tree node of ~0.6 KB, as text a tenth of that. See [`Slot::record`].
    output: Option<Box<str>>,
}

impl Slot {
    /// A copy of the record, with its output when it completed.
    fn record(&self) -> SagaRecord {
        let mut record = self.record.clone();
        if let (Some(text), SagaStatus::Completed { output }) = (&self.output, &mut record.status) {
            // Written by `compact_output` from a value: it reads back as that value.
            *output = serde_json::from_str(text)
                .unwrap_or_else(|_| serde_json::Value::String(text.to_string()));
        }
        record
    }
}

/// Takes a completed saga's output out of `status` as JSON text (see [`Slot::output`]).
fn compact_output(status: &mut SagaStatus) -> Option<Box<str>> {
    let SagaStatus::Completed { output } = status else {
        return None;
    };
    if output.is_null() {
        return None;
    }
    let text = serde_json::to_string(output).ok()?;
    *output = serde_json::Value::Null;
    Some(text.into_boxed_str())
}

/// The records by trace id. Each slot is boxed: a bucket of the map's table then holds the key
/// and a pointer (24 bytes) instead of the key and the whole slot (384), so the table's spare
/// capacity (up to half its buckets after a resize) costs little, and a resize moves pointers.
type Records = HashMap<Id, Box<Slot>>;

#[derive(Default)]
struct State {
    records: Records,
    /// Kept apart from `records`, so that a write changes a slot and the indexes with one
    /// lookup of the slot.
    index: Indexes,
}

/// The indexes over [`State::records`].
#[derive(Default)]
struct Indexes {
    /// `(lease_until_ms, trace_id)` of every running record.
    leases: BTreeSet<(u64, Id)>,
    /// `(expires_at_ms, trace_id, generation)` of finished records, in the order they ended
    /// (the finished TTL is one value, so that is also expiry order). An entry whose
    /// generation is not its slot's is stale (the record was removed, expired or reopened).
    finished: VecDeque<(u64, Id, NonZeroU64)>,
    /// How many finished records are held: what the retention cap bounds.
    finished_held: usize,
    next_generation: u64,
    /// `(status_since_ms, trace_id)` of every record, one set per [`StatusKind`] (in the
    /// order of [`StatusKind::ALL`]).
    by_status: [BTreeSet<(u64, Id)>; 5],
}

fn slot_of(kind: StatusKind) -> usize {
    StatusKind::ALL
        .iter()
        .position(|k| *k == kind)
        .unwrap_or_default()
}

/// Appends `entries` to `history`, keeping at most `limit`: the `started` entry and the latest
/// others (none with a `limit` of 0: the history is off). See [`StoreConfig::history_limit`].
fn append(history: &mut VecDeque<HistoryEntry>, entries: &[HistoryEntry], limit: usize) {
    for entry in entries {
        push(history, entry.clone(), limit);
    }
}

/// Up to this many entries a history grows one entry at a time: a running saga's history is
/// a few entries, and a deque's first growth makes room for four, mostly unused (and kept
/// with the finished record for the retention time).
const GROWN_ONE_BY_ONE: usize = 8;

/// [`append`] of one entry the caller owns.
fn push(history: &mut VecDeque<HistoryEntry>, entry: HistoryEntry, limit: usize) {
    if limit == 0 {
        return;
    }
    if history.len() == history.capacity() && history.len() < GROWN_ONE_BY_ONE.min(limit) {
        history.reserve_exact(1);
    }
    if history.len() >= limit {
        // The `started` entry, always first, is kept: the oldest after it goes.
        let started = history
            .front()
            .is_some_and(|first| matches!(first.event, HistoryEvent::Started { .. }));
        match (started, history.len()) {
            (true, 1) => return,
            (true, _) => drop(history.remove(1)),
            (false, _) => drop(history.pop_front()),
        }
    }
    history.push_back(entry);
}

/// Why [`MemoryStore::live`] found no slot.
enum Gone {
    Missing,
    /// Past its TTL: the caller forgets it ([`State::forget`]).
    Expired,
}

impl Indexes {
    fn set_lease(&mut self, id: &Id, record: &mut SagaRecord, until: u64) {
        self.leases.remove(&(record.lease_until_ms, id.clone()));
        record.lease_until_ms = until;
        self.leases.insert((until, id.clone()));
    }

    /// Enters a record that just ended into the retention queue.
    fn retain_ended(&mut self, slot: &mut Slot, expires_at: u64) {
        let generation = NonZeroU64::MIN.saturating_add(self.next_generation);
        self.next_generation += 1;
        if slot.generation.replace(generation).is_none() {
            self.finished_held += 1;
        }
        self.finished
            .push_back((expires_at, slot.id.clone(), generation));
    }

    /// Takes a finished record out of the retention queue (its queue entry goes stale).
    fn unretain(&mut self, slot: &mut Slot) {
        if slot.generation.take().is_some() {
            self.finished_held -= 1;
        }
    }

    /// Moves `record` into the index of its status family if it left `previous` (`None`: it
    /// is new), stamping when it entered it.
    fn reindex(
        &mut self,
        id: &Id,
        record: &mut SagaRecord,
        previous: Option<StatusKind>,
        now: u64,
    ) {
        let kind = record.status.kind();
        if previous == Some(kind) {
            return;
        }
        if let Some(previous) = previous {
            self.by_status[slot_of(previous)].remove(&(record.status_since_ms, id.clone()));
        }
        record.status_since_ms = now;
        self.by_status[slot_of(kind)].insert((now, id.clone()));
    }
}

/// Forgets the record of `trace_id` (removed, or expired on access).
fn forget(records: &mut Records, index: &mut Indexes, trace_id: &str) {
    if let Some(mut slot) = records.remove(trace_id) {
        let record = &slot.record;
        let id = slot.id.clone();
        index.leases.remove(&(record.lease_until_ms, id.clone()));
        index.by_status[slot_of(record.status.kind())].remove(&(record.status_since_ms, id));
        index.unretain(&mut slot);
    }
}

impl State {
    /// Forgets the record of `trace_id` (removed, or expired on access).
    fn forget(&mut self, trace_id: &str) {
        forget(&mut self.records, &mut self.index, trace_id);
    }

    /// Drops finished records past their TTL or over the cap, oldest first; O(1) per entry.
    fn evict(&mut self, now: u64, cap: usize) {
        while let Some((expires_at, id, generation)) = self.index.finished.front() {
            let live = self
                .records
                .get(id)
                .is_some_and(|slot| slot.generation == Some(*generation));
            if live && *expires_at > now && self.index.finished_held <= cap {
                break;
            }
            if let Some((_, id, _)) = self.index.finished.pop_front()
                && live
            {
                self.forget(&id);
            }
        }
    }
}

/// The live slot of `$trace_id` in `$records` ([`MemoryStore::live`]), or returns `$missing`
/// from the enclosing function, forgetting the record first when it expired.
macro_rules! live_or_return {
    ($store:expr, $records:expr, $index:expr, $trace_id:expr, $now:expr, $missing:expr) => {
        match $store.live($records, $trace_id, $now) {
            Ok(slot) => slot,
            Err(gone) => {
                if let Gone::Expired = gone {
                    forget($records, $index, $trace_id);
                }
                return $missing;
            }
        }
    };
}

/// Whether `record` is running at `seq` under `token`, or why not.
fn fenced(record: &SagaRecord, seq: u64, token: &str) -> Result<(), Written> {
    if record.status.is_final() {
        return Err(Written::Finished);
    }
    if record.seq != seq || record.owner != token {
        return Err(Written::Fenced);
    }
    Ok(())
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.lock();
        f.debug_struct("MemoryStore")
            .field("config", &self.config)
            .field("records", &state.records.len())
            .field("running", &state.index.leases.len())
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

    /// The slot of `trace_id` if it is held and not past its TTL (one lookup). On
    /// [`Gone::Expired`] the caller forgets it.
    fn live<'s>(
        &self,
        records: &'s mut Records,
        trace_id: &str,
        now: u64,
    ) -> Result<&'s mut Slot, Gone> {
        let slot: &mut Slot = records.get_mut(trace_id).ok_or(Gone::Missing)?;
        if self.expired(&slot.record, now) {
            return Err(Gone::Expired);
        }
        Ok(slot)
    }

    /// `f` applied to the live slot of `trace_id` and the time, under the lock (one lookup;
    /// an expired record is forgotten); `None` when there is none.
    fn with_live<R>(&self, trace_id: &str, f: impl FnOnce(&mut Slot, u64) -> R) -> Option<R> {
        let now = now_ms();
        let mut guard = self.lock();
        let State { records, index } = &mut *guard;
        let slot = live_or_return!(self, records, index, trace_id, now, None);
        Some(f(slot, now))
    }

    fn begin_now(&self, mut record: SagaRecord) -> Begin {
        let now = now_ms();
        let mut guard = self.lock();
        let State { records, index } = &mut *guard;
        match self.live(records, &record.trace_id, now) {
            Ok(existing) => {
                let existing = existing.record();
                return if existing.fingerprint == record.fingerprint {
                    Begin::Existing(existing)
                } else {
                    Begin::Conflict(existing)
                };
            }
            Err(Gone::Expired) => forget(records, index, &record.trace_id),
            Err(Gone::Missing) => {}
        }
        let id: Id = Arc::from(record.trace_id.as_str());
        record.created_at_ms = now;
        record.updated_at_ms = now;
        record.requeues = 0;
        index.leases.insert((record.lease_until_ms, id.clone()));
        index.reindex(&id, &mut record, None, now);
        let started = HistoryEntry {
            at_ms: now,
            run: record.owner.as_str().into(),
            event: HistoryEvent::Started { mode: record.mode },
        };
        let mut history = VecDeque::new();
        push(&mut history, started, self.config.history_limit);
        let slot = Slot {
            id: id.clone(),
            record,
            history,
            generation: None,
            output: None,
        };
        records.insert(id, Box::new(slot));
        Begin::Started
    }

    fn claim_now(&self, claim: &Claim<'_>) -> Claimed {
        let now = now_ms();
        let mut guard = self.lock();
        let State { records, index } = &mut *guard;
        let slot = live_or_return!(self, records, index, claim.trace_id, now, Claimed::Missing);
        let record = &mut slot.record;
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
        record.owner.clear();
        record.owner.push_str(claim.token);
        record.queued = false;
        record.attempts += 1;
        record.updated_at_ms = now;
        index.set_lease(&slot.id, record, now.saturating_add(millis(claim.lease)));
        Claimed::Won {
            attempt: record.attempts,
            seq: record.seq,
            mode: record.mode,
            state: if claim.recovery {
                record.state.as_deref().map(str::to_owned)
            } else {
                None
            },
            compensate: record.compensation_requested,
            requeues: record.requeues,
        }
    }

    fn advance_now(&self, advance: Advance<'_>) -> Written {
        let now = now_ms();
        let outcome = advance.status.outcome();
        {
            let mut guard = self.lock();
            let State { records, index } = &mut *guard;
            let slot = live_or_return!(
                self,
                records,
                index,
                advance.trace_id,
                now,
                Written::Missing
            );
            if let Err(refused) = fenced(&slot.record, advance.seq, advance.token) {
                return refused;
            }
            if advance.abortable && slot.record.compensation_requested {
                return Written::CompensationRequested;
            }
            append(
                &mut slot.history,
                advance.history,
                self.config.history_limit,
            );
            let record = &mut slot.record;
            record.seq += 1;
            record.attempts = 0;
            record.requeues = 0;
            record.updated_at_ms = now;
            let previous = record.status.kind();
            record.status = advance.status;
            if record.status.kind() != StatusKind::Running {
                record.compensation_requested = false;
            }
            index.reindex(&slot.id, record, Some(previous), now);
            // A stuck saga keeps the state it is stuck at, for an operator to resume.
            record.state = advance.state.cloned();
            if record.status.is_final() {
                index
                    .leases
                    .remove(&(record.lease_until_ms, slot.id.clone()));
                record.owner = String::new();
                record.lease_until_ms = 0;
                record.queued = false;
                let expires_at = now.saturating_add(millis(self.config.finished_ttl));
                slot.output = compact_output(&mut slot.record.status);
                index.retain_ended(slot, expires_at);
                guard.evict(now, self.config.max_finished);
            } else {
                apply_custody(
                    index,
                    &slot.id,
                    record,
                    &advance.custody,
                    now,
                    Renewal::WhenDue,
                );
            }
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
            requeued,
            history,
            ..
        } = hold;
        let now = now_ms();
        let mut guard = self.lock();
        let State { records, index } = &mut *guard;
        let slot = live_or_return!(self, records, index, trace_id, now, Written::Missing);
        if let Err(refused) = fenced(&slot.record, *seq, token) {
            return refused;
        }
        append(&mut slot.history, history, self.config.history_limit);
        let record = &mut slot.record;
        record.updated_at_ms = now;
        if *refund_attempt {
            record.attempts = record.attempts.saturating_sub(1);
        }
        if *requeued {
            record.requeues = record.requeues.saturating_add(1);
        }
        apply_custody(index, &slot.id, record, custody, now, Renewal::Always);
        Written::Done
    }

    fn expired_now(&self, saga: &str, limit: usize) -> Vec<String> {
        let now = now_ms();
        let state = self.lock();
        state
            .index
            .leases
            .iter()
            .take_while(|(until, _)| *until <= now)
            .filter(|(_, id)| {
                state
                    .records
                    .get(id)
                    .is_some_and(|slot| slot.record.saga == saga)
            })
            .take(limit)
            .map(|(_, id)| id.to_string())
            .collect()
    }

    fn reopen_now(&self, reopen: Reopen<'_>) -> Written {
        let now = now_ms();
        let mut guard = self.lock();
        let State { records, index } = &mut *guard;
        let slot = live_or_return!(self, records, index, reopen.trace_id, now, Written::Missing);
        match slot.record.status.kind() {
            StatusKind::Stuck if slot.record.seq == reopen.seq => {}
            StatusKind::Completed | StatusKind::Compensated => return Written::Finished,
            _ => return Written::Fenced,
        }
        // Out of the retention queue: its entry there is stale from now on.
        index.unretain(slot);
        push(&mut slot.history, reopen.entry, self.config.history_limit);
        let record = &mut slot.record;
        record.seq += 1;
        record.attempts = 0;
        record.requeues = 0;
        record.updated_at_ms = now;
        record.status = reopen.status;
        record.state = Some(reopen.state.into());
        record.compensation_requested = reopen.compensate;
        index.reindex(&slot.id, record, Some(StatusKind::Stuck), now);
        apply_custody(
            index,
            &slot.id,
            record,
            &reopen.custody,
            now,
            Renewal::Always,
        );
        Written::Done
    }

    fn request_compensation_now(&self, trace_id: &str, entry: HistoryEntry) -> Written {
        self.with_live(trace_id, |slot, now| {
            if slot.record.status.is_final() {
                return Written::Finished;
            }
            slot.record.compensation_requested = true;
            slot.record.updated_at_ms = now;
            push(&mut slot.history, entry, self.config.history_limit);
            Written::Done
        })
        .unwrap_or(Written::Missing)
    }

    fn list_now(&self, query: &ListQuery) -> SagaPage {
        let now = now_ms();
        let newest = query
            .older_than
            .map_or(u64::MAX, |age| now.saturating_sub(millis(age)));
        let state = self.lock();
        let start = match &query.after {
            Some(after) => Bound::Excluded((after.since_ms, Id::from(after.trace_id.as_str()))),
            None => Bound::Unbounded,
        };
        let limit = query.page_size();
        let mut sagas = Vec::with_capacity(limit.min(64));
        let mut more = false;
        let matching = state.index.by_status[slot_of(query.status)]
            .range((start, Bound::Unbounded))
            .take_while(|(since, _)| *since <= newest)
            .filter_map(|(_, id)| state.records.get(id))
            .filter(|slot| !self.expired(&slot.record, now))
            .filter(|slot| {
                query
                    .saga
                    .as_ref()
                    .is_none_or(|saga| *saga == slot.record.saga)
            });
        for slot in matching {
            if sagas.len() == limit {
                more = true;
                break;
            }
            let mut summary = slot.record();
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
        self.with_live(trace_id, |slot, _| slot.record())
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

/// When [`apply_custody`] writes a new lease end.
#[derive(Clone, Copy)]
enum Renewal {
    /// Always (a hold, a reopen).
    Always,
    /// Only when [`Custody::renews`] says so (an advance).
    WhenDue,
}

fn apply_custody(
    index: &mut Indexes,
    id: &Id,
    record: &mut SagaRecord,
    custody: &Custody,
    now: u64,
    renewal: Renewal,
) {
    record.owner.clone_from(&custody.token);
    record.queued = custody.queued;
    if matches!(renewal, Renewal::Always) || custody.renews(record.lease_until_ms, now) {
        index.set_lease(id, record, now.saturating_add(millis(custody.lease)));
    }
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
            Ok(self
                .with_live(trace_id, |slot, _| slot.history.iter().cloned().collect())
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
