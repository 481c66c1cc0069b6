//! The one driver loop of every mode.
//!
//! The modes differ only in what is journaled after each transition and where the next one
//! runs, which a [`Journal`] decides:
//! - the bare [`SyncEngine`](super::SyncEngine) journals nothing and runs every transition
//!   in the caller's task, retrying in place;
//! - the orchestrator's sync mode (and the recovery of a sync saga) records every transition
//!   in the store under a lease ([`durable`](super::durable)) and runs the next one in place;
//! - a queue consumer records the transition, publishes the next state and stops
//!   ([`consumer`](super::consumer)); its retries go back through the broker.

use std::future::Future;
use std::time::Duration;

use super::progress::{FailedStep, Progress};
use super::transition::{self, Policies, TransitionFailure};
use crate::{Saga, SagaContext};

/// What a [`Journal`] says after a transition.
pub(crate) enum Flow<S: Saga, T> {
    /// Run the next transition from this state, here.
    Continue(S::State, Option<FailedStep>),
    /// Stop driving: the saga ended, or its next transition runs elsewhere.
    Stop(T),
}

/// Where a mode records the saga's progress and decides where the next transition runs.
pub(crate) trait Journal<S: Saga>: Send {
    /// What the driver returns when the journal stops it.
    type Stop: Send;

    /// Records where the saga stands after a transition and says whether to go on here.
    fn record(
        &mut self,
        cx: &SagaContext,
        progress: Progress<S>,
    ) -> impl Future<Output = Flow<S, Self::Stop>> + Send;

    /// Attempt `attempt` failed with a retryable error and may be tried again after `delay`:
    /// `None` to retry here once the delay passed (the journal waited), `Some` to stop (the
    /// broker redelivers after the delay).
    fn retry_later(
        &mut self,
        cx: &SagaContext,
        attempt: u32,
        delay: Duration,
    ) -> impl Future<Output = Option<Self::Stop>> + Send;

    /// Runs beside every attempt to keep the custody of the saga (renewing its lease).
    /// Resolves only when custody is lost: the driver then abandons the attempt and returns
    /// what this returns.
    fn keep_custody(&self, cx: &SagaContext) -> impl Future<Output = Self::Stop> + Send;
}

/// Drives `saga` from `state` (a running state), attempt `attempt` of its next transition,
/// until `journal` stops it.
pub(crate) async fn drive<S: Saga, J: Journal<S>>(
    saga: &S,
    cx: &SagaContext,
    policies: &Policies,
    mut state: S::State,
    mut failure: Option<FailedStep>,
    mut attempt: u32,
    journal: &mut J,
) -> J::Stop {
    loop {
        let cursor = S::cursor(&state);
        if let Some(error) = transition::over_bound::<S>(cursor, attempt, policies) {
            tracing::error!(
                trace_id = cx.trace_id(), saga = cx.saga(), ?cursor, attempt, %error,
                "transition past its retry bound before it runs: giving up on it"
            );
            let failed = TransitionFailure {
                error,
                attempts: attempt - 1,
            };
            let progress = Progress::after(cx, state, failure, Err(failed));
            attempt = 1;
            match journal.record(cx, progress).await {
                Flow::Continue(next, next_failure) => {
                    state = next;
                    failure = next_failure;
                    continue;
                }
                Flow::Stop(stop) => return stop,
            }
        }
        let result = tokio::select! {
            biased;
            result = transition::attempt(saga, cx, &state, attempt) => result,
            lost = journal.keep_custody(cx) => return lost,
        };
        let progress = match result {
            Ok(effect) => Progress::at(cx, S::apply(state, effect), failure),
            Err(error) => match transition::retry_delay::<S>(cursor, &error, attempt, policies) {
                Some(delay) => {
                    tracing::debug!(
                        trace_id = cx.trace_id(), saga = cx.saga(), ?cursor, attempt, ?delay,
                        %error, "transition failed, retrying"
                    );
                    if let Some(stop) = journal.retry_later(cx, attempt, delay).await {
                        return stop;
                    }
                    attempt += 1;
                    continue;
                }
                None => {
                    tracing::warn!(
                        trace_id = cx.trace_id(), saga = cx.saga(), ?cursor, attempt, %error,
                        "transition failed, giving up"
                    );
                    let failed = TransitionFailure {
                        error,
                        attempts: attempt,
                    };
                    Progress::after(cx, state, failure, Err(failed))
                }
            },
        };
        attempt = 1;
        match journal.record(cx, progress).await {
            Flow::Continue(next, next_failure) => {
                state = next;
                failure = next_failure;
            }
            Flow::Stop(stop) => return stop,
        }
    }
}
