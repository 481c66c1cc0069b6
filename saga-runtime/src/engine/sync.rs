//! The bare sync mode: a saga runs in the caller's task, with no store and no broker; on
//! failure the compensations run inline, in reverse, before the call returns.

use std::time::Duration;

use super::driver::{Flow, Journal, Ran, Start, drive};
use super::progress::{FailedStep, Progress};
use super::transition::Policies;
use crate::{RetryPolicy, Saga, SagaContext, SagaError};

/// Runs sagas in the caller's task.
///
/// The caller's future owns the saga while it runs: if it is dropped midway (a client
/// disconnected and the server cancelled the handler), the saga stops where it is without
/// compensating, and nothing records where it stood. Use the
/// [`Orchestrator`](super::Orchestrator) when a saga must survive its caller or its process:
/// every mode there records each transition and recovers the saga on any replica.
#[derive(Clone, Copy, Debug, Default)]
pub struct SyncEngine {
    policies: Policies,
}

impl SyncEngine {
    /// A sync engine with inline rollback and the default compensation policy
    /// ([`RetryPolicy::COMPENSATION`]).
    pub fn new() -> Self {
        Self::default()
    }

    /// The same engine retrying compensations with `policy`.
    pub fn with_compensation_retry(mut self, policy: RetryPolicy) -> Self {
        self.policies.compensation = policy;
        self
    }

    /// The same engine retrying at once instead of backing off: every policy keeps its number
    /// of attempts, but nothing waits between them. For tests (the
    /// [`testing`](crate::testing) kit uses it); never in production, where backoff is what
    /// gives a struggling upstream room to recover.
    pub fn without_backoff(mut self) -> Self {
        self.policies.skip_backoff = true;
        self
    }

    /// Runs `saga` from its first step on `input`. Returns the output, or the error that
    /// names the failed step and says whether every compensation finished.
    pub async fn run<S: Saga>(
        &self,
        saga: &S,
        cx: &SagaContext,
        input: S::Input,
    ) -> Result<S::Output, SagaError> {
        self.resume(saga, cx, S::start(input), None).await
    }

    /// Resumes `saga` from `state` (deserialised from a store or a message, say) and drives
    /// it to its end; `failure` is the failure being compensated when `state` is a
    /// compensation state. Ends exactly as an uninterrupted run would.
    pub async fn resume<S: Saga>(
        &self,
        saga: &S,
        cx: &SagaContext,
        state: S::State,
        failure: Option<FailedStep>,
    ) -> Result<S::Output, SagaError> {
        let cx = &*cx.of_saga::<S>();
        match Progress::<S>::at(cx, state, failure) {
            Progress::Running { state, failure } => {
                drive(
                    saga,
                    cx,
                    &self.policies,
                    state,
                    failure,
                    Start::FIRST,
                    &mut InPlace,
                )
                .await
            }
            done => done.into_outcome(cx),
        }
    }
}

/// Journals nothing: every transition and every retry runs here.
struct InPlace;

impl<S: Saga> Journal<S> for InPlace {
    type Stop = Result<S::Output, SagaError>;

    async fn record(
        &mut self,
        cx: &SagaContext,
        progress: Progress<S>,
        _ran: Ran,
    ) -> Flow<S, Self::Stop> {
        match progress {
            Progress::Running { state, failure } => Flow::Continue(state, failure),
            done => Flow::Stop(done.into_outcome(cx)),
        }
    }

    async fn retry_later(
        &mut self,
        _cx: &SagaContext,
        _attempt: u32,
        delay: Duration,
        _ran: Ran,
    ) -> Option<Self::Stop> {
        tokio::time::sleep(delay).await;
        None
    }

    async fn keep_custody(&self, _cx: &SagaContext) -> Self::Stop {
        std::future::pending().await
    }
}
