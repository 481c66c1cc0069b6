//! Operating sagas: what an operator on call needs, over every saga an orchestrator runs.
//!
//! [`Admin`] gathers the orchestrators of a process (one per saga definition) over their
//! shared store and answers:
//! - **get** a saga by trace id: its record, its history, its current state as JSON and its
//!   Mermaid diagram with the current position marked ([`SagaView`]);
//! - **list** sagas by status family and age, paginated, from the store's status indexes;
//! - **resume** a stuck saga: its stuck transition runs again through the same fenced
//!   recovery path as a saga whose replica died, and its record ends as usual;
//! - **compensate** a running saga on request: it rolls back at its next forward transition
//!   (refused past its pivot); a stuck one is reopened to roll back;
//! - list and **replay** dead letters: each replayed message is published again (confirmed)
//!   before its dead letter is acked, so a crash in between replays it twice at worst, never
//!   loses it, and the fence drops the copy the saga no longer needs.
//!
//! The gRPC service over it is `grpc::admin` (feature `grpc`), and the `sagaflow` CLI talks to
//! that service.

mod dead_letters;
mod error;
mod view;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;

use crate::store::{ListQuery, SagaPage, SagaRecord, SagaStore};
use crate::transport::Transport;
use crate::{Saga, SagaDescription};

pub use dead_letters::{DeadLetter, Replayed};
pub use error::AdminError;
pub use view::{CompensationRequest, SagaView, diagram_at};

/// The operations one saga definition's orchestrator offers an operator, without its type.
/// Implemented by [`Orchestrator`](crate::engine::Orchestrator); [`Admin`] holds them by
/// saga name.
pub trait OperateSaga: Send + Sync + 'static {
    /// The saga's static description.
    fn description(&self) -> SagaDescription;

    /// Resumes the stuck saga whose record (as just read) is `record` (see
    /// [`Admin::resume`]).
    fn resume<'a>(
        &'a self,
        record: &'a SagaRecord,
        by: &'a str,
    ) -> BoxFuture<'a, Result<(), AdminError>>;

    /// Compensates the saga whose record (as just read) is `record` on request (see
    /// [`Admin::compensate`]).
    fn compensate<'a>(
        &'a self,
        record: &'a SagaRecord,
        by: &'a str,
    ) -> BoxFuture<'a, Result<CompensationRequest, AdminError>>;

    /// The transport its messages travel on, and the logical topics it consumes with the
    /// consumer group of each.
    fn topics(&self) -> (Arc<dyn Transport>, Vec<(String, String)>);
}

/// The operator's view of the sagas of one process: every registered saga definition, over
/// their store. Cheap to clone; share it with the admin gRPC service.
#[derive(Clone)]
pub struct Admin {
    store: Arc<dyn SagaStore>,
    sagas: BTreeMap<&'static str, Arc<dyn OperateSaga>>,
    /// How long a dead-letter listing or replay waits for more messages once the last one
    /// arrived.
    settle: Duration,
}

impl fmt::Debug for Admin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Admin")
            .field("store", &self.store)
            .field("sagas", &self.sagas.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Admin {
    /// An admin over `store` with no saga registered yet.
    pub fn new(store: Arc<dyn SagaStore>) -> Self {
        Self {
            store,
            sagas: BTreeMap::new(),
            settle: Duration::from_millis(300),
        }
    }

    /// Registers the saga definition `orchestrator` runs (its store should be this admin's).
    pub fn register<S: Saga>(mut self, orchestrator: &crate::engine::Orchestrator<S>) -> Self {
        let ops: Arc<dyn OperateSaga> = Arc::new(orchestrator.clone());
        self.sagas.insert(S::description().name, ops);
        self
    }

    /// How long a dead-letter listing or replay waits for one more message before it decides
    /// it has read them all (default 300 ms).
    pub fn with_settle_time(mut self, settle: Duration) -> Self {
        self.settle = settle;
        self
    }

    /// The registered saga definitions, by name.
    pub fn sagas(&self) -> impl Iterator<Item = SagaDescription> + '_ {
        self.sagas.values().map(|ops| ops.description())
    }

    /// The store it reads.
    pub fn store(&self) -> &Arc<dyn SagaStore> {
        &self.store
    }

    fn ops(&self, saga: &str) -> Result<&Arc<dyn OperateSaga>, AdminError> {
        self.sagas.get(saga).ok_or_else(|| AdminError::UnknownSaga {
            saga: saga.to_string(),
            known: self.sagas.keys().map(|name| (*name).to_string()).collect(),
        })
    }

    /// The saga `trace_id`: record, history, state as JSON and diagram; `None` when the store
    /// has no record of it (never begun, or expired after its finished time-to-live).
    pub async fn get(&self, trace_id: &str) -> Result<Option<SagaView>, AdminError> {
        view::get(self, trace_id).await
    }

    /// One page of sagas by status family and age ([`ListQuery`]), oldest first.
    pub async fn list(&self, query: &ListQuery) -> Result<SagaPage, AdminError> {
        if let Some(saga) = &query.saga {
            self.ops(saga)?;
        }
        Ok(self.store.list(query).await?)
    }

    /// Resumes the stuck saga `trace_id` for the operator `by`: its record is reopened at the
    /// stuck transition (fenced on the sequence number read, so two operators cannot both
    /// resume it) and that transition runs again through the recovery path, in the saga's
    /// mode: in place on this replica for a sync saga, through the broker for an async or
    /// throttled one. Returns once the saga is running again; its end is recorded as usual
    /// (read it with [`Admin::get`] or await it with the store's watch).
    pub async fn resume(&self, trace_id: &str, by: &str) -> Result<(), AdminError> {
        let record = self.record(trace_id).await?;
        self.ops(&record.saga)?.resume(&record, by).await
    }

    /// Compensates the saga `trace_id` on the request of the operator `by`.
    ///
    /// A running saga before or at its pivot is marked: it rolls back at its next forward
    /// transition, through the same fenced writes as a failed step (the step it stood at is
    /// reported as failed with "compensation requested by an operator"). A stuck saga whose
    /// stuck transition is a compensation is resumed (its rollback goes on); one stuck before
    /// its pivot is reopened to roll back. Refused past the pivot
    /// ([`AdminError::PastPivot`]) and for a finished saga.
    pub async fn compensate(
        &self,
        trace_id: &str,
        by: &str,
    ) -> Result<CompensationRequest, AdminError> {
        let record = self.record(trace_id).await?;
        self.ops(&record.saga)?.compensate(&record, by).await
    }

    /// The Mermaid diagram of the saga definition `saga`.
    pub fn diagram(&self, saga: &str) -> Result<String, AdminError> {
        Ok(self.ops(saga)?.description().to_mermaid())
    }

    /// The dead letters waiting on the dead-letter topics of `saga` (every registered saga when
    /// `None`), at most `limit`. Reading them leaves them in place.
    pub async fn dead_letters(
        &self,
        saga: Option<&str>,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, AdminError> {
        dead_letters::list(self, saga, limit).await
    }

    /// Replays dead letters of `saga` (every registered saga when `None`): the one whose
    /// message id is `message_id`, or all of them. Each is published again to the topic it
    /// was dead-lettered from, with broker confirmation, and only then removed from the
    /// dead-letter topic.
    pub async fn replay(
        &self,
        saga: Option<&str>,
        message_id: Option<&str>,
    ) -> Result<Replayed, AdminError> {
        dead_letters::replay(self, saga, message_id).await
    }

    async fn record(&self, trace_id: &str) -> Result<SagaRecord, AdminError> {
        self.store
            .get(trace_id)
            .await?
            .ok_or_else(|| AdminError::NotFound {
                trace_id: trace_id.to_string(),
            })
    }
}
