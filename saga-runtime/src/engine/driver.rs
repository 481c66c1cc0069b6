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

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::progress::{FailedStep, Progress};
use super::transition::{self, Policies, TransitionFailure, step_at};
use crate::store::{HistoryEntry, HistoryEvent};
use crate::{Cursor, Saga, SagaContext, StepError};

/// What just happened to a saga, for its history: a transition that ran (or gave up), or a
/// rollback an operator asked for.
#[derive(Clone, Debug)]
pub(crate) enum Ran {
    /// The transition at `cursor` ran attempt `attempt` (0: it gave up past its bound without
    /// running) for `elapsed`, and failed for good with `error` if set.
    Transition {
        cursor: Cursor,
        attempt: u32,
        elapsed: Duration,
        error: Option<String>,
        retried: bool,
    },
    /// The saga stood at the forward step `cursor` and rolls back on an operator's request.
    OperatorRollback { cursor: Cursor },
}

impl Ran {
    /// The history entry of this event, written by the run `token`.
    pub(crate) fn entry<S: Saga>(&self, token: &Arc<str>) -> HistoryEntry {
        let name = |cursor: Cursor| -> Cow<'static, str> {
            Cow::Borrowed(step_at::<S>(cursor).map_or("", |step| step.name))
        };
        let event = match self {
            Ran::Transition {
                cursor,
                attempt,
                elapsed,
                error,
                retried,
            } => HistoryEvent::Transition {
                step: name(*cursor),
                compensation: matches!(cursor, Cursor::Compensate(_)),
                attempt: *attempt,
                elapsed_ms: u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
                error: error.clone(),
                retried: *retried,
            },
            Ran::OperatorRollback { cursor } => HistoryEvent::CompensationStarted {
                step: name(*cursor),
            },
        };
        HistoryEntry::now(token.clone(), event)
    }
}

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

    /// Records where the saga stands after a transition (`ran` says what happened, for the
    /// history) and says whether to go on here.
    fn record(
        &mut self,
        cx: &SagaContext,
        progress: Progress<S>,
        ran: Ran,
    ) -> impl Future<Output = Flow<S, Self::Stop>> + Send;

    /// Attempt `attempt` failed with a retryable error (`ran` says which, for the history) and
    /// may be tried again after `delay`: `None` to retry here once the delay passed (the
    /// journal waited), `Some` to stop (the broker redelivers after the delay).
    fn retry_later(
        &mut self,
        cx: &SagaContext,
        attempt: u32,
        delay: Duration,
        ran: Ran,
    ) -> impl Future<Output = Option<Self::Stop>> + Send;

    /// Runs beside every attempt to keep the custody of the saga (renewing its lease).
    /// Resolves only when custody is lost: the driver then abandons the attempt and returns
    /// what this returns.
    fn keep_custody(&self, cx: &SagaContext) -> impl Future<Output = Self::Stop> + Send;
}

/// Where a drive starts: attempt `attempt` of the next transition, and whether an operator
/// asked for the saga to be compensated (it then rolls back instead, if it still may).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Start {
    pub(crate) attempt: u32,
    pub(crate) compensate: bool,
}

impl Start {
    /// The first attempt, no compensation requested.
    pub(crate) const FIRST: Start = Start {
        attempt: 1,
        compensate: false,
    };
}

/// `journal.record(..)`, boxed: the write, the publish and their retries after a transition
/// would otherwise size the driver's future, which a running saga holds for as long as its step
/// runs. Each record allocates once, after its step ran.
fn recorded<'a, S: Saga, J: Journal<S>>(
    journal: &'a mut J,
    cx: &'a SagaContext,
    progress: Progress<S>,
    ran: Ran,
) -> Pin<Box<impl Future<Output = Flow<S, J::Stop>> + Send + 'a>> {
    Box::pin(journal.record(cx, progress, ran))
}

/// Drives `saga` from `state` (a running state), from `start`, until `journal` stops it.
///
/// Not an `async fn`: its future is an `async move` block that uses the arguments in place,
/// where an `async fn` would hold them twice (as arguments and as the locals they move to) for
/// as long as the saga's step runs.
#[expect(
    clippy::manual_async_fn,
    reason = "an async fn would hold its arguments twice while the step runs"
)]
pub(crate) fn drive<S: Saga, J: Journal<S>>(
    saga: &S,
    cx: &SagaContext,
    policies: &Policies,
    mut state: S::State,
    mut failure: Option<FailedStep>,
    start: Start,
    journal: &mut J,
) -> impl Future<Output = J::Stop> {
    async move {
        let mut attempt = start.attempt;
        if start.compensate && Progress::<S>::abortable(&state) {
            let cursor = S::cursor(&state);
            tracing::warn!(
                trace_id = cx.trace_id(),
                saga = cx.saga(),
                ?cursor,
                "compensating the saga on an operator's request"
            );
            let progress = Progress::operator_rollback(cx, state);
            match recorded(journal, cx, progress, Ran::OperatorRollback { cursor }).await {
                Flow::Continue(next, next_failure) => {
                    state = next;
                    failure = next_failure;
                    attempt = 1;
                }
                Flow::Stop(stop) => return stop,
            }
        }
        loop {
            let cursor = S::cursor(&state);
            if let Some(error) = transition::over_bound::<S>(cursor, attempt, policies) {
                tracing::error!(
                    trace_id = cx.trace_id(), saga = cx.saga(), ?cursor, attempt, %error,
                    "transition past its retry bound before it runs: giving up on it"
                );
                let skipped = Attempted {
                    cursor,
                    attempt: 0,
                    elapsed: Duration::ZERO,
                };
                let ran = skipped.ran(Some(&error), false);
                let failed = TransitionFailure {
                    error,
                    attempts: attempt - 1,
                };
                let progress = Progress::after(cx, state, failure, Err(failed));
                attempt = 1;
                match recorded(journal, cx, progress, ran).await {
                    Flow::Continue(next, next_failure) => {
                        state = next;
                        failure = next_failure;
                        continue;
                    }
                    Flow::Stop(stop) => return stop,
                }
            }
            let began = Instant::now();
            let result = tokio::select! {
                biased;
                result = transition::attempt(saga, cx, &state, attempt) => result,
                lost = journal.keep_custody(cx) => return lost,
            };
            let attempted = Attempted {
                cursor,
                attempt,
                elapsed: began.elapsed(),
            };
            let (progress, ran) =
                match after_attempt(cx, policies, attempted, state, failure, result) {
                    Next::Retry {
                        delay,
                        ran,
                        state: same,
                        failure: same_failure,
                    } => {
                        (state, failure) = (same, same_failure);
                        if let Some(stop) = journal.retry_later(cx, attempt, delay, ran).await {
                            return stop;
                        }
                        attempt += 1;
                        continue;
                    }
                    Next::Record { progress, ran } => (progress, ran),
                };
            attempt = 1;
            match recorded(journal, cx, progress, ran).await {
                Flow::Continue(next, next_failure) => {
                    state = next;
                    failure = next_failure;
                }
                Flow::Stop(stop) => return stop,
            }
        }
    }
}

/// One attempt that ran: of which transition, which attempt, for how long.
#[derive(Clone, Copy)]
struct Attempted {
    cursor: Cursor,
    attempt: u32,
    elapsed: Duration,
}

impl Attempted {
    /// What happened, for the history: the attempt failed with `error` if set, and is tried
    /// again if `retried`.
    fn ran(self, error: Option<&StepError>, retried: bool) -> Ran {
        Ran::Transition {
            cursor: self.cursor,
            attempt: self.attempt,
            elapsed: self.elapsed,
            error: error.map(ToString::to_string),
            retried,
        }
    }
}

/// What comes after an attempt.
enum Next<S: Saga> {
    /// It failed and is tried again after `delay`; the saga stays at `state`.
    Retry {
        delay: Duration,
        ran: Ran,
        state: S::State,
        failure: Option<FailedStep>,
    },
    /// The transition is over (it ran, or gave up): `progress` is recorded.
    Record { progress: Progress<S>, ran: Ran },
}

/// Where `attempted` leaves the saga at `state`, from its `result`.
///
/// A plain function that takes the result by value: in the driver's `async` block, a result
/// matched in place (or a history entry mended through a reference) would keep its room in the
/// block for every later await, the step's included.
fn after_attempt<S: Saga>(
    cx: &SagaContext,
    policies: &Policies,
    attempted: Attempted,
    state: S::State,
    failure: Option<FailedStep>,
    result: Result<S::Effect, StepError>,
) -> Next<S> {
    let Attempted {
        cursor, attempt, ..
    } = attempted;
    let error = match result {
        Ok(effect) => {
            return Next::Record {
                progress: Progress::at(cx, S::apply(state, effect), failure),
                ran: attempted.ran(None, false),
            };
        }
        Err(error) => error,
    };
    match transition::retry_delay::<S>(cursor, &error, attempt, policies) {
        Some(delay) => {
            tracing::debug!(
                trace_id = cx.trace_id(), saga = cx.saga(), ?cursor, attempt, ?delay, %error,
                "transition failed, retrying"
            );
            Next::Retry {
                delay,
                ran: attempted.ran(Some(&error), true),
                state,
                failure,
            }
        }
        None => {
            tracing::warn!(
                trace_id = cx.trace_id(), saga = cx.saga(), ?cursor, attempt, %error,
                "transition failed, giving up"
            );
            let ran = attempted.ran(Some(&error), false);
            let failed = TransitionFailure {
                error,
                attempts: attempt,
            };
            Next::Record {
                progress: Progress::after(cx, state, failure, Err(failed)),
                ran,
            }
        }
    }
}
