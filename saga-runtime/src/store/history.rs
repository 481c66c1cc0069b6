//! What an operator reads back from the store: a saga's history (its transitions, bounded),
//! and pages of sagas listed by status and age from indexes kept with the records.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Mode, SagaRecord, SagaStatus};
use crate::error::SagaFailure;

/// One entry of a saga's history: written by the same atomic operation as the transition it
/// describes, so the history never disagrees with the record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// When it happened (the end of the transition), in milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// The owner token of the run that wrote it (`{replica}/{boot}/{run}`); see
    /// [`HistoryEntry::replica`]. Shared by the entries of one run.
    pub run: Arc<str>,
    /// What happened.
    #[serde(flatten)]
    pub event: HistoryEvent,
}

impl HistoryEntry {
    /// An entry stamped now, written by the run `run`.
    pub fn now(run: impl Into<Arc<str>>, event: HistoryEvent) -> Self {
        Self {
            at_ms: super::now_ms(),
            run: run.into(),
            event,
        }
    }

    /// The replica (pod id) of the run that wrote the entry: its owner token without the boot
    /// and run counters.
    pub fn replica(&self) -> &str {
        let mut parts = self.run.rsplitn(3, '/');
        match (parts.next(), parts.next(), parts.next()) {
            (Some(_), Some(_), Some(replica)) => replica,
            _ => &self.run,
        }
    }
}

/// What a [`HistoryEntry`] records.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum HistoryEvent {
    /// The saga was begun (its record created).
    Started {
        /// The mode it runs in.
        mode: Mode,
    },
    /// A step or a compensation ran (its last attempt, when it was retried).
    Transition {
        /// The step's name (of the compensated step, for a compensation): the definition's own
        /// name, borrowed, when the engine writes it.
        step: Cow<'static, str>,
        /// True for a compensation.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        compensation: bool,
        /// Which attempt this was (from 1; 0 when the transition gave up without running
        /// again, past its retry bound).
        attempt: u32,
        /// How long the attempt took, in milliseconds.
        elapsed_ms: u64,
        /// `None` when it succeeded; its error otherwise.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
        /// True when the attempt failed and the transition was tried again (its next attempt
        /// has an entry of its own); false when it succeeded or gave up for good (the saga
        /// then rolls back, or is stuck).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        retried: bool,
    },
    /// An operator resumed the stuck saga: its stuck transition runs again.
    Resumed {
        /// Who asked (the admin API's caller, as it identified itself).
        by: String,
    },
    /// An operator asked for the saga to be compensated: it rolls back at its next forward
    /// transition, unless it is past its pivot by then.
    CompensationRequested {
        /// Who asked.
        by: String,
    },
    /// The saga was rolled back on an operator's request, from the forward step `step`
    /// (which did not run).
    CompensationStarted {
        /// The forward step the saga stood at.
        step: Cow<'static, str>,
    },
}

/// The status families sagas are listed by; one index each.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StatusKind {
    /// Forward steps running.
    Running,
    /// Compensations running.
    Compensating,
    /// Final: a transition exhausted its retries, or the state could not be read; it waits for
    /// an operator (see the admin API's resume).
    Stuck,
    /// Final: every step completed.
    Completed,
    /// Final: a step failed and every completed step was compensated.
    Compensated,
}

impl StatusKind {
    /// Every kind, in lifecycle order.
    pub const ALL: [StatusKind; 5] = [
        StatusKind::Running,
        StatusKind::Compensating,
        StatusKind::Stuck,
        StatusKind::Completed,
        StatusKind::Compensated,
    ];

    /// The name used in indexes, the admin API and the CLI (`running`, `stuck`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            StatusKind::Running => "running",
            StatusKind::Compensating => "compensating",
            StatusKind::Stuck => "stuck",
            StatusKind::Completed => "completed",
            StatusKind::Compensated => "compensated",
        }
    }

    /// The kind named `name` ([`StatusKind::as_str`]).
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == name)
    }

    /// True for the final kinds (stuck, completed, compensated).
    pub fn is_final(self) -> bool {
        matches!(
            self,
            StatusKind::Stuck | StatusKind::Completed | StatusKind::Compensated
        )
    }
}

impl SagaStatus {
    /// The family this status is listed under. A saga whose state could not be read
    /// ([`SagaFailure::InvalidState`]) is listed as stuck: it needs an operator too.
    pub fn kind(&self) -> StatusKind {
        match self {
            SagaStatus::Running { .. } => StatusKind::Running,
            SagaStatus::Compensating { .. } => StatusKind::Compensating,
            SagaStatus::Completed { .. } => StatusKind::Completed,
            SagaStatus::Failed {
                error: SagaFailure::Compensated { .. },
            } => StatusKind::Compensated,
            SagaStatus::Failed { .. } => StatusKind::Stuck,
        }
    }
}

/// Where a listing resumes: the position after the last saga of the previous page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListCursor {
    /// The last saga's [`SagaRecord::status_since_ms`].
    pub since_ms: u64,
    /// The last saga's trace id (ties on `since_ms` are ordered by trace id).
    pub trace_id: String,
}

impl ListCursor {
    /// The cursor as an opaque token (`{since_ms}:{trace_id}`) for an API or a CLI.
    pub fn encode(&self) -> String {
        format!("{}:{}", self.since_ms, self.trace_id)
    }

    /// A cursor from [`ListCursor::encode`]'s token; `None` when it is not one.
    pub fn decode(token: &str) -> Option<Self> {
        let (since, trace_id) = token.split_once(':')?;
        Some(Self {
            since_ms: since.parse().ok()?,
            trace_id: trace_id.to_string(),
        })
    }
}

/// Which sagas to list ([`SagaStore::list`](super::SagaStore::list)): one status family,
/// oldest in that status first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListQuery {
    /// The status family.
    pub status: StatusKind,
    /// Only sagas that have been in that status at least this long.
    pub older_than: Option<Duration>,
    /// Only sagas of this name.
    pub saga: Option<String>,
    /// The most sagas in one page (at least 1; the stores cap it at [`ListQuery::MAX_LIMIT`]).
    pub limit: usize,
    /// Resume after this position (the previous page's [`SagaPage::next`]).
    pub after: Option<ListCursor>,
}

impl ListQuery {
    /// The largest page a store returns.
    pub const MAX_LIMIT: usize = 1000;

    /// The first page of 100 sagas in `status`.
    pub fn new(status: StatusKind) -> Self {
        Self {
            status,
            older_than: None,
            saga: None,
            limit: 100,
            after: None,
        }
    }

    /// The page size actually used.
    pub(crate) fn page_size(&self) -> usize {
        self.limit.clamp(1, Self::MAX_LIMIT)
    }
}

/// One page of a listing.
#[derive(Clone, Debug, PartialEq)]
pub struct SagaPage {
    /// The sagas, oldest in their status first, without their state (read it with
    /// [`SagaStore::get`](super::SagaStore::get)).
    pub sagas: Vec<SagaRecord>,
    /// Where the next page starts; `None` when this page is the last.
    pub next: Option<ListCursor>,
}
