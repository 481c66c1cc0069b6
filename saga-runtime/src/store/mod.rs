//! Saga stores: the durable record of every saga by trace id, the custody of its next
//! transition, and the watcher of its end.
//!
//! The trace id (`x-request-id`) is the saga id. The record holds everything needed to resume
//! the saga on any replica: its serialized state (input and every output so far, as the
//! message envelope the engine publishes), a sequence number that grows by one at every
//! transition, the mode it runs in, and its **custody**: which run of which replica holds it
//! (an owner token) and until when (a lease), or that its message is queued on the broker.
//!
//! Every operation that changes a running saga is one atomic compare-and-set on the sequence
//! number and the owner token (one Redis script, one round trip):
//! - [`SagaStore::begin`] is the idempotent start: it creates the record only if the id is
//!   free, and otherwise says whether the existing record has the same input (the caller gets,
//!   or waits for, that saga's outcome) or a different one (the id is taken);
//! - [`SagaStore::claim`] fences a delivery: it takes custody of the saga only if the record is
//!   at the delivery's sequence number, not final, and not held by a live lease of another
//!   run; a stale or duplicate delivery learns so and runs nothing;
//! - [`SagaStore::advance`] records a transition (next state or final status) only if the
//!   writer still holds custody at the sequence it read, so two runs can never both advance
//!   one saga (a duplicate can never fork it);
//! - [`SagaStore::hold`] renews or hands over custody without a transition;
//! - [`SagaStore::expired`] lists the sagas whose custody lapsed (their owner died): the
//!   recovery sweeper claims each (exactly one replica wins) and resumes it.
//!
//! [`SagaStore::watch`] resolves when a saga reaches a final status, on any replica; it
//! subscribes before it reads, so no end is missed.
//!
//! Backends: [`MemoryStore`] (always built; one process) and, with the `redis` feature,
//! `RedisStore` in the `redis` module (shared by every replica).

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};

use crate::error::SagaFailure;

#[cfg(feature = "redis")]
mod entry_json;
mod error;
mod history;
pub mod memory;
#[cfg(feature = "redis")]
pub mod redis;
mod state;
mod waiters;

#[cfg(feature = "redis")]
pub use self::redis::{RedisConfig, RedisStore};
pub use error::{StoreError, StoreErrorKind};
pub use history::{HistoryEntry, HistoryEvent, ListCursor, ListQuery, SagaPage, StatusKind};
pub use memory::MemoryStore;
pub use state::StoredState;

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
        /// How it ended.
        error: SagaFailure,
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
pub type Outcome = Result<serde_json::Value, SagaFailure>;

/// How a saga was started, so that recovery resumes it the way it ran.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Run by a replica in the caller's request; recovery finishes it on the claiming replica.
    Sync,
    /// Carried by the broker, one transition per message; recovery re-publishes it.
    #[default]
    Async,
    /// Like async, with a caller waiting for the outcome through the watcher.
    Throttled,
}

impl Mode {
    /// The name stored in the record (`sync`, `async`, `throttled`).
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Sync => "sync",
            Mode::Async => "async",
            Mode::Throttled => "throttled",
        }
    }

    /// The mode named `name` ([`Mode::as_str`]).
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "sync" => Some(Mode::Sync),
            "async" => Some(Mode::Async),
            "throttled" => Some(Mode::Throttled),
            _ => None,
        }
    }
}

/// What the store holds for one trace id.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SagaRecord {
    /// The trace id (saga id).
    pub trace_id: String,
    /// The saga's name.
    pub saga: String,
    /// Fingerprint of the input (see [`fingerprint`]).
    pub fingerprint: String,
    /// How the saga runs (and how recovery resumes it).
    pub mode: Mode,
    /// Where it stands.
    pub status: SagaStatus,
    /// Transitions recorded so far: 0 at begin, one more at every [`SagaStore::advance`].
    /// A delivery or a run holding an older number is stale.
    pub seq: u64,
    /// The serialized state to resume from (the engine's message envelope, JSON); `None`
    /// once the saga is final. Shared with the message that carries it, not copied.
    pub state: Option<StoredState>,
    /// The token of the run that holds custody (see [`Custody`]); empty once final.
    pub owner: String,
    /// Until when the owner's custody lasts, in milliseconds since the Unix epoch (store
    /// clock); 0 once final. Past it, the recovery sweeper may claim the saga.
    pub lease_until_ms: u64,
    /// True while the next transition's message is queued on the broker: any consumer may
    /// claim it, and the sweeper re-publishes it if nobody did by `lease_until_ms`.
    pub queued: bool,
    /// Attempts made of the current transition (0 before the first; every claim adds one).
    pub attempts: u32,
    /// When it was started, in milliseconds since the Unix epoch.
    pub created_at_ms: u64,
    /// When it last changed, in milliseconds since the Unix epoch.
    pub updated_at_ms: u64,
    /// Since when it has been in its status family ([`SagaStatus::kind`]), in milliseconds
    /// since the Unix epoch: what listings order and filter by age on.
    #[serde(default)]
    pub status_since_ms: u64,
    /// True once an operator asked for the running saga to be compensated
    /// ([`SagaStore::request_compensation`]): its next forward transition rolls back instead.
    #[serde(default)]
    pub compensation_requested: bool,
    /// How many times the recovery sweeper published the current transition's message again
    /// since the saga's last transition (0 at begin; every [`SagaStore::advance`] and
    /// [`SagaStore::reopen`] sets it back to 0; a [`Hold::requeued`] hand-back adds one). The
    /// sweeper waits `requeue_after * 2^requeues` (capped) before the next re-publication, so
    /// a high count means the saga's message waits on a broker that is behind, or that nothing
    /// consumes its topic. Records written before this field existed read as 0.
    #[serde(default)]
    pub requeues: u32,
}

impl SagaRecord {
    /// A new record at step 0 (sequence 0), stamped now, holding `state` (the serialized
    /// state of the first transition) under `custody`.
    pub fn new(
        trace_id: &str,
        saga: &str,
        fingerprint: String,
        first_step: &str,
        mode: Mode,
        state: impl Into<StoredState>,
        custody: Custody,
    ) -> Self {
        let now = now_ms();
        Self {
            trace_id: trace_id.to_string(),
            saga: saga.to_string(),
            fingerprint,
            mode,
            status: SagaStatus::Running {
                step: 0,
                name: first_step.to_string(),
            },
            seq: 0,
            state: Some(state.into()),
            owner: custody.token,
            lease_until_ms: now.saturating_add(millis(custody.lease)),
            queued: custody.queued,
            attempts: 0,
            created_at_ms: now,
            updated_at_ms: now,
            status_since_ms: now,
            compensation_requested: false,
            requeues: 0,
        }
    }
}

/// Who holds a running saga after a write, and for how long.
///
/// A *held* saga runs on the replica run that owns `token`: nobody else may claim it until the
/// lease passes (the owner renews it with [`SagaStore::hold`] while it works). A *queued* saga's
/// next message is on the broker: any consumer may claim it, and if none has within the lease
/// the sweeper re-publishes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Custody {
    /// The owner token of the run taking custody (unique per run, see the engine).
    pub token: String,
    /// How long from now the custody lasts.
    pub lease: Duration,
    /// True when the next transition's message is queued on the broker.
    pub queued: bool,
}

impl Custody {
    /// Custody held by the run `token` for `lease`.
    pub fn held(token: &str, lease: Duration) -> Self {
        Self {
            token: token.to_string(),
            lease,
            queued: false,
        }
    }

    /// The next message queued on the broker by the run `token`; re-published by the sweeper
    /// if nobody claims it within `lease`.
    pub fn queued(token: &str, lease: Duration) -> Self {
        Self {
            token: token.to_string(),
            lease,
            queued: true,
        }
    }

    /// Whether a transition must write a new lease end for this custody, the current one
    /// ending at `until_ms` (store clock, ms) at `now_ms`: only when less than 90% of
    /// [`Custody::lease`] is left, or more than all of it. So the lease after an
    /// [`SagaStore::advance`] ends between 0.9 and 1 lease from now, and a saga's quick
    /// transitions do not each rewrite the lease index. (The Redis scripts apply the same rule.)
    pub(crate) fn renews(&self, until_ms: u64, now_ms: u64) -> bool {
        let lease = millis(self.lease);
        let left = until_ms.saturating_sub(now_ms);
        left < lease - lease / 10 || left > lease
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A duration in whole milliseconds (saturating).
pub(crate) fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Fingerprint of a saga input: the saga name plus a stable hash of the input's canonical
/// JSON (object keys sorted at every level), so two equal inputs have one fingerprint even
/// when they hold maps whose iteration order differs (a `HashMap`).
pub fn fingerprint(saga: &str, input: &serde_json::Value) -> String {
    let mut canonical = Vec::with_capacity(128);
    write_canonical(input, &mut canonical);
    // FNV-1a 64: stable across processes and releases, unlike std's SipHash keys.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in saga.as_bytes().iter().chain([0u8].iter()).chain(&canonical) {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{saga}:{hash:016x}")
}

/// `value` as JSON with the keys of every object in sorted order.
fn write_canonical(value: &serde_json::Value, out: &mut Vec<u8>) {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            out.push(b'{');
            for (i, (key, value)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                // A string always serializes.
                out.extend_from_slice(serde_json::to_string(key).unwrap_or_default().as_bytes());
                out.push(b':');
                write_canonical(value, out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(item, out);
            }
            out.push(b']');
        }
        scalar => out.extend_from_slice(scalar.to_string().as_bytes()),
    }
}

/// What [`SagaStore::begin`] found.
#[derive(Clone, Debug, PartialEq)]
pub enum Begin {
    /// The id was free; the record was created and the caller runs the saga.
    Started,
    /// The id holds a saga with the same fingerprint: do not run it again; return or await
    /// its outcome (the sweeper resumes it if its owner died).
    Existing(SagaRecord),
    /// The id holds a saga with another fingerprint: refuse with [`SagaError::IdTaken`](crate::SagaError::IdTaken).
    Conflict(SagaRecord),
}

/// A request for custody of a saga ([`SagaStore::claim`]).
#[derive(Clone, Debug)]
pub struct Claim<'a> {
    /// The saga's trace id.
    pub trace_id: &'a str,
    /// The saga's name (the lease index is per saga).
    pub saga: &'a str,
    /// The sequence number the claimer is at (a delivery's), or `None` to claim whatever
    /// transition is next (recovery).
    pub seq: Option<u64>,
    /// The claiming run's owner token.
    pub token: &'a str,
    /// How long the custody lasts from now.
    pub lease: Duration,
    /// `false` for a delivery: it may take a queued saga, an expired one or one it holds.
    /// `true` for recovery: only a saga whose lease expired (queued or not).
    pub recovery: bool,
}

/// What [`SagaStore::claim`] found.
#[derive(Clone, Debug, PartialEq)]
pub enum Claimed {
    /// Custody taken: run the transition.
    Won {
        /// Which attempt of this transition this is (from 1; survives redeliveries and
        /// replica deaths).
        attempt: u32,
        /// The sequence number the saga is at.
        seq: u64,
        /// The mode it runs in.
        mode: Mode,
        /// The stored state (recovery claims only; `None` for a delivery, which carries it).
        state: Option<String>,
        /// An operator asked for the saga to be compensated
        /// ([`SagaStore::request_compensation`]): a forward transition that may still be
        /// compensated rolls back instead of running.
        compensate: bool,
        /// The record's [`SagaRecord::requeues`]: how many times the sweeper published this
        /// transition's message again since the saga's last transition. Recovery spaces its
        /// next re-publication by it.
        requeues: u32,
    },
    /// The saga moved on (its sequence number is `current`): the claimer is stale, a
    /// duplicate or late delivery. Run nothing.
    Stale {
        /// The record's sequence number.
        current: u64,
    },
    /// Another run holds custody under a live lease. Run nothing: that run finishes it, or
    /// the sweeper recovers it when the lease passes.
    Busy,
    /// The saga is final. Run nothing.
    Finished,
    /// There is no record (never begun, removed or expired).
    Missing,
}

/// A transition to record ([`SagaStore::advance`]).
#[derive(Clone, Debug)]
pub struct Advance<'a> {
    /// The saga's trace id.
    pub trace_id: &'a str,
    /// The saga's name (the lease index is per saga).
    pub saga: &'a str,
    /// The sequence number the writer read (the record moves to `seq + 1`).
    pub seq: u64,
    /// The writer's owner token.
    pub token: &'a str,
    /// Where the saga stands after the transition.
    pub status: SagaStatus,
    /// The state to resume from (the next message's envelope); for a final status, the state
    /// a stuck saga is stuck at (kept for an operator), or `None`.
    pub state: Option<&'a StoredState>,
    /// Who holds the saga after the write (ignored for a final status).
    pub custody: Custody,
    /// What ran, appended to the saga's history in the same atomic write (usually one entry).
    pub history: &'a [HistoryEntry],
    /// True when the next transition is a forward step that may still be compensated (the
    /// pivot has not run): if an operator asked for compensation, the write is refused with
    /// [`Written::CompensationRequested`] and the writer rolls back instead.
    pub abortable: bool,
}

/// A change of custody without a transition ([`SagaStore::hold`]).
#[derive(Clone, Debug)]
pub struct Hold<'a> {
    /// The saga's trace id.
    pub trace_id: &'a str,
    /// The saga's name (the lease index is per saga).
    pub saga: &'a str,
    /// The sequence number the holder is at.
    pub seq: u64,
    /// The holder's owner token.
    pub token: &'a str,
    /// The custody after the write (renewed, or handed to the broker).
    pub custody: Custody,
    /// True when the claim that took this custody ran nothing (a recovery that only publishes
    /// the message again): the attempt it counted is taken back, so attempts count executions.
    pub refund_attempt: bool,
    /// True for the recovery sweeper's hand-back of a saga whose message it publishes again:
    /// the record's [`SagaRecord::requeues`] goes up by one in the same atomic write.
    pub requeued: bool,
    /// Appended to the saga's history in the same write (a failed attempt handed to the
    /// broker for a retry).
    pub history: &'a [HistoryEntry],
}

/// What [`SagaStore::advance`] or [`SagaStore::hold`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Written {
    /// Recorded.
    Done,
    /// Refused: the record moved on or another run took custody. The writer's work is
    /// dropped (its transition already happened or will happen elsewhere); it must not
    /// publish or report anything.
    Fenced,
    /// Refused: the saga is final already.
    Finished,
    /// Refused: there is no record.
    Missing,
    /// Refused ([`Advance::abortable`] writes only): an operator asked for the saga to be
    /// compensated. The writer still holds custody at the same sequence number and records
    /// the rollback instead.
    CompensationRequested,
}

/// Reopening a stuck saga for an operator ([`SagaStore::reopen`]).
#[derive(Clone, Debug)]
pub struct Reopen<'a> {
    /// The saga's trace id.
    pub trace_id: &'a str,
    /// The saga's name (the lease index is per saga).
    pub saga: &'a str,
    /// The sequence number of the stuck record the operator read (the record moves to
    /// `seq + 1`); a record that moved since is not reopened.
    pub seq: u64,
    /// The running status of the transition to run again.
    pub status: SagaStatus,
    /// The state to resume from (the next message's envelope, at `seq + 1`).
    pub state: &'a str,
    /// Who holds the saga after the write.
    pub custody: Custody,
    /// Also mark it for compensation ([`SagaStore::request_compensation`]) in the same write.
    pub compensate: bool,
    /// The operator's action, appended to the history.
    pub entry: HistoryEntry,
}

/// Store settings common to every backend. Reads from a config file (serde, durations as
/// `"24h"`, `"10m"`; unknown keys refused; missing keys take the defaults).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// How long a finished record (completed, compensated or stuck) is kept after it became
    /// final. This is also the idempotency window: once it expires, the same trace id starts a
    /// new saga. Default: 24 hours (the [`MemoryStore`] defaults to 10 minutes).
    #[serde(with = "humantime_serde")]
    pub finished_ttl: Duration,
    /// Safety time-to-live of a record that is not final yet (`None`: kept until it ends).
    /// The saga's transitions restart it (the Redis store restarts it once a tenth of it has
    /// passed since it last did, so quick transitions do not each pay for it). It only exists so that a record nobody can resume (a
    /// bug, a saga definition removed from the code) does not keep its key forever; it must
    /// be far longer than any saga may legitimately run. Default: 7 days.
    #[serde(with = "humantime_serde")]
    pub running_ttl: Option<Duration>,
    /// [`MemoryStore`] only: the most finished records kept; the oldest is evicted first
    /// (O(1), off the begin path). Default 100,000.
    pub max_finished: usize,
    /// The most history entries kept per saga, counting its `started` entry, which is always
    /// kept (it says when, by which run and in which mode the saga began); of the others, the
    /// oldest are dropped first. Default 100. With `1` only the `started` entry is kept.
    /// `0` turns the history off: no entry is written (the Redis store sends none and
    /// serialises none) and [`SagaStore::history`] returns an empty list; the record, the
    /// status indexes and listings are unchanged.
    pub history_limit: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            finished_ttl: Duration::from_secs(24 * 3600),
            running_ttl: Some(Duration::from_secs(7 * 24 * 3600)),
            max_finished: 100_000,
            history_limit: 100,
        }
    }
}

impl StoreConfig {
    /// The defaults of the in-memory store: finished records kept 10 minutes, at most
    /// 100,000 of them.
    pub fn memory() -> Self {
        Self {
            finished_ttl: Duration::from_secs(600),
            ..Self::default()
        }
    }

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
///
/// Every method is one atomic operation (one Redis round trip).
pub trait SagaStore: Send + Sync + fmt::Debug + 'static {
    /// Atomically creates `record` unless its trace id exists; see [`Begin`]. The record's
    /// lease is counted from now on the store's clock.
    fn begin(&self, record: SagaRecord) -> BoxFuture<'_, Result<Begin, StoreError>>;

    /// Takes custody of a saga for one transition if the record is at `claim.seq` (any, for
    /// recovery), not final, and free to take (see [`Claim::recovery`]); adds one to its
    /// attempts. Exactly one of several concurrent claimers wins. A won claim returns the
    /// record's attempts, sequence number, mode and [`SagaRecord::requeues`] (and, for
    /// recovery, its state).
    fn claim<'a>(&'a self, claim: Claim<'a>) -> BoxFuture<'a, Result<Claimed, StoreError>>;

    /// Records a transition if the writer still holds custody at `advance.seq`: the status,
    /// the state and the custody after it (its lease renewed only when [`Custody::renews`]
    /// says so), sequence number plus one, attempts and [`SagaRecord::requeues`] back to 0. A
    /// final status keeps only the state it is given (a stuck saga keeps the state it is stuck
    /// at, so it can be resumed; a completed or compensated one gives none), starts the
    /// finished time-to-live and wakes every watcher of the id on every replica. A final
    /// record is never reopened.
    fn advance<'a>(&'a self, advance: Advance<'a>) -> BoxFuture<'a, Result<Written, StoreError>>;

    /// Renews (or hands over to the broker, `custody.queued`) the custody that `hold.token`
    /// holds at `hold.seq`, without a transition. With [`Hold::refund_attempt`] the attempts
    /// go down by one, with [`Hold::requeued`] the [`SagaRecord::requeues`] up by one, in the
    /// same atomic write.
    fn hold<'a>(&'a self, hold: Hold<'a>) -> BoxFuture<'a, Result<Written, StoreError>>;

    /// Up to `limit` trace ids of running sagas named `saga` whose custody lapsed (lease passed
    /// on the store's clock), oldest first. Reads an index kept with the records: no key scan.
    fn expired<'a>(
        &'a self,
        saga: &'a str,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<String>, StoreError>>;

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

    /// Deletes the record of `trace_id` and its history (tests, operators, a start whose
    /// first message could not be published).
    fn remove<'a>(&'a self, trace_id: &'a str) -> BoxFuture<'a, Result<(), StoreError>>;

    /// The history of `trace_id`, oldest first (at most [`StoreConfig::history_limit`]
    /// entries, the latest); empty when there is none.
    fn history<'a>(
        &'a self,
        trace_id: &'a str,
    ) -> BoxFuture<'a, Result<Vec<HistoryEntry>, StoreError>>;

    /// One page of the sagas in `query.status`, oldest in that status first. Reads the status
    /// index kept with the records (one sorted set per status in Redis): no key scan.
    fn list<'a>(&'a self, query: &'a ListQuery) -> BoxFuture<'a, Result<SagaPage, StoreError>>;

    /// Reopens a stuck saga (a final record of [`StatusKind::Stuck`] still at `reopen.seq`):
    /// it is running again at `reopen.status` with `reopen.state`, under `reopen.custody`, its
    /// sequence number plus one, so the run that resumes it records its transitions and its
    /// new end as usual. [`Written::Finished`] when the saga is final but not stuck,
    /// [`Written::Fenced`] when it is running or moved on.
    fn reopen<'a>(&'a self, reopen: Reopen<'a>) -> BoxFuture<'a, Result<Written, StoreError>>;

    /// Marks a running saga for compensation on an operator's request (its next abortable
    /// [`SagaStore::advance`] or its next claim says so) and appends `entry` to its history.
    /// [`Written::Finished`] when it is final, [`Written::Missing`] without a record.
    fn request_compensation<'a>(
        &'a self,
        trace_id: &'a str,
        entry: HistoryEntry,
    ) -> BoxFuture<'a, Result<Written, StoreError>>;

    /// A cheap liveness probe: `Ok` when the store answers now (one round trip, no record
    /// read or written), an error naming the store otherwise. The health monitor calls it
    /// every interval, bounded by its own timeout.
    fn ping(&self) -> BoxFuture<'_, Result<(), StoreError>>;
}

#[cfg(test)]
mod config_tests {
    use super::*;

    #[test]
    fn store_settings_read_from_a_config_file() {
        let config: StoreConfig = serde_json::from_str(
            r#"{ "finished_ttl": "2h", "running_ttl": "3days", "history_limit": 20 }"#,
        )
        .expect("human-readable durations");
        assert_eq!(config.finished_ttl, Duration::from_secs(7200));
        assert_eq!(config.running_ttl, Some(Duration::from_secs(3 * 86_400)));
        assert_eq!(config.history_limit, 20);
        assert_eq!(config.max_finished, StoreConfig::default().max_finished);
        let unknown =
            serde_json::from_str::<StoreConfig>(r#"{ "ttl": "2h" }"#).expect_err("unknown key");
        assert!(unknown.to_string().contains("ttl"), "{unknown}");
        let written = serde_json::to_string(&config).expect("serialize");
        let read_back: StoreConfig = serde_json::from_str(&written).expect("read back");
        assert_eq!(read_back, config);
    }

    #[cfg(feature = "redis")]
    #[test]
    fn redis_settings_read_from_a_config_file() {
        let config: RedisConfig = serde_json::from_str(
            r#"{ "key_prefix": "{orders}", "connect_timeout": "1s", "store": { "finished_ttl": "1h" } }"#,
        )
        .expect("redis settings");
        assert_eq!(config.key_prefix, "{orders}");
        assert_eq!(config.connect_timeout, Duration::from_secs(1));
        assert_eq!(config.store.finished_ttl, Duration::from_secs(3600));
        assert_eq!(
            config.response_timeout,
            RedisConfig::default().response_timeout
        );
        assert!(
            !config.cluster && !config.tagged(),
            "standalone, plain names by default"
        );
        let cluster: RedisConfig = serde_json::from_str(
            r#"{ "cluster": true, "index_buckets": 8, "replica_acks": 1, "replica_ack_timeout": "250ms" }"#,
        )
        .expect("cluster settings");
        assert_eq!((cluster.buckets(), cluster.tagged()), (8, true));
        assert_eq!(cluster.replica_acks, 1);
        assert_eq!(cluster.replica_ack_timeout, Duration::from_millis(250));
        let default_cluster: RedisConfig =
            serde_json::from_str(r#"{ "cluster": true }"#).expect("cluster settings");
        assert_eq!(default_cluster.buckets(), 16);
    }
}
