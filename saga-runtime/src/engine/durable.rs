//! The durable journal: every transition of a saga recorded in the store under the lease of
//! the run that drives it, the next transition run in place. It serves the orchestrator's
//! sync mode and the recovery of a sync saga whose replica died.

use std::sync::Arc;
use std::time::Duration;

use tracing::{error, warn};

use super::config::Rollback;
use super::driver::{Flow, Journal, Ran};
use super::progress::Progress;
use super::runtime::{Runtime, store_error};
use crate::error::Report;
use crate::store::{Advance, Custody, HistoryEntry, StoredState, Written};
use crate::{Saga, SagaContext, SagaError};

/// Journals into the store; the caller waits for the outcome.
pub(super) struct Durable<'r, S: Saga> {
    pub(super) rt: &'r Runtime<S>,
    /// This run's owner token.
    pub(super) token: Arc<str>,
    /// The sequence number the record is at.
    pub(super) seq: u64,
    /// Pod-affine route of the saga's messages, if any.
    pub(super) route: Option<String>,
    /// Where compensations run.
    pub(super) rollback: Rollback,
    /// Failed attempts retried in place since the last write, for the history.
    pub(super) retried: Vec<HistoryEntry>,
}

impl<S: Saga> Durable<'_, S> {
    /// Records the saga's end with `history`; the caller gets what the store holds.
    async fn finish(
        &self,
        cx: &SagaContext,
        done: Progress<S>,
        history: &[HistoryEntry],
    ) -> Result<S::Output, SagaError> {
        let kept = self
            .rt
            .kept_state(cx, &done, self.seq, self.route.as_deref());
        let result = done.into_outcome(cx);
        let advance = Advance {
            history,
            state: kept.as_ref(),
            ..self.rt.final_advance(cx, self.seq, &self.token, &result)
        };
        match self.rt.advance(advance).await {
            Ok(Written::Done) => {
                crate::observe::ended(cx, &result);
                result
            }
            Ok(refused) => self.lost(cx, refused).await,
            Err(e) => {
                // The outcome is not recorded: the lease lapses and recovery runs the last
                // transition again (idempotent) to record it. The caller gets what the store
                // ends up holding, never an outcome it does not hold.
                error!(trace_id = cx.trace_id(), error = %Report(&e), "cannot record the saga's outcome; waiting for recovery to record it");
                self.rt.outcome(cx).await
            }
        }
    }

    /// Custody was lost (another run took the saga, after this one's lease lapsed): the
    /// outcome is whatever that run records.
    async fn lost(&self, cx: &SagaContext, refused: Written) -> Result<S::Output, SagaError> {
        warn!(
            trace_id = cx.trace_id(),
            ?refused,
            "another run took over the saga; waiting for the outcome it records"
        );
        self.rt.outcome(cx).await
    }

    /// Hands the rollback to the rollback topic; `Err` (with custody taken back) when the
    /// broker did not confirm it, so the compensations run inline instead.
    async fn queue_rollback(
        &self,
        cx: &SagaContext,
        state: &S::State,
        payload: StoredState,
    ) -> Result<(), ()> {
        let cursor = S::cursor(state);
        match self
            .rt
            .publish(cx, cursor, self.route.as_deref(), self.seq, payload, None)
            .await
        {
            Ok(()) => Ok(()),
            Err(cause) => {
                error!(trace_id = cx.trace_id(), cause = %Report(&cause), "cannot queue the rollback; compensating inline");
                if let Err(e) = self
                    .rt
                    .hold(cx, self.seq, &self.token, self.rt.held(&self.token))
                    .await
                {
                    warn!(trace_id = cx.trace_id(), error = %Report(&e), "cannot take the rollback back from the queue");
                }
                Err(())
            }
        }
    }
}

impl<S: Saga> Journal<S> for Durable<'_, S> {
    type Stop = Result<S::Output, SagaError>;

    async fn record(
        &mut self,
        cx: &SagaContext,
        mut progress: Progress<S>,
        ran: Ran,
    ) -> Flow<S, Self::Stop> {
        let mut history = std::mem::take(&mut self.retried);
        history.push(ran.entry::<S>(&self.token));
        loop {
            let (state, failure) = match progress {
                Progress::Running { state, failure } => (state, failure),
                // Not boxed here: the driver boxes every `record`.
                done => return Flow::Stop(self.finish(cx, done, &history).await),
            };
            let queue = failure.is_some() && self.rollback == Rollback::Queued;
            let payload = match self.rt.encode(
                cx,
                &state,
                failure.as_ref(),
                self.seq + 1,
                self.route.as_deref(),
            ) {
                Ok(payload) => payload,
                Err(e) => return Flow::Stop(Err(e)),
            };
            let custody = if queue {
                Custody::queued(&self.token, self.rt.config.requeue_after)
            } else {
                self.rt.held(&self.token)
            };
            let next = (&state, &payload);
            let advance = Advance {
                history: &history,
                ..self
                    .rt
                    .running_advance(cx, self.seq, &self.token, next, custody)
            };
            match self.rt.advance(advance).await {
                Ok(Written::Done) => self.seq += 1,
                Ok(Written::CompensationRequested) => {
                    let ran = Ran::OperatorRollback {
                        cursor: S::cursor(&state),
                    };
                    warn!(trace_id = cx.trace_id(), cursor = ?S::cursor(&state), "compensating the saga on an operator's request");
                    history.push(ran.entry::<S>(&self.token));
                    progress = Progress::operator_rollback(cx, state);
                    continue;
                }
                Ok(refused) => return Flow::Stop(self.lost(cx, refused).await),
                Err(e) => {
                    error!(trace_id = cx.trace_id(), error = %Report(&e), "cannot record the saga's progress; it resumes from its last recorded transition once its lease lapses");
                    return Flow::Stop(Err(store_error(cx, &e)));
                }
            }
            if let (true, Some(failed)) = (queue, &failure)
                && self.queue_rollback(cx, &state, payload).await.is_ok()
            {
                return Flow::Stop(Err(SagaError::RollbackQueued {
                    saga: cx.saga().to_string(),
                    trace_id: cx.trace_id().to_string(),
                    step: failed.step.clone(),
                    error: failed.error.clone(),
                }));
            }
            return Flow::Continue(state, failure);
        }
    }

    async fn retry_later(
        &mut self,
        cx: &SagaContext,
        _attempt: u32,
        delay: Duration,
        ran: Ran,
    ) -> Option<Self::Stop> {
        // Written with the next transition (no store write per retry in place).
        self.retried.push(ran.entry::<S>(&self.token));
        tokio::select! {
            () = tokio::time::sleep(delay) => None,
            lost = Journal::<S>::keep_custody(self, cx) => Some(lost),
        }
    }

    async fn keep_custody(&self, cx: &SagaContext) -> Self::Stop {
        self.rt.renew_until_lost(cx, self.seq, &self.token).await;
        self.lost(cx, Written::Fenced).await
    }
}
