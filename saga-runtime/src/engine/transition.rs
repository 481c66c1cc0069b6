//! One attempt of one transition (a step or a compensation): bounded by the step's timeout, a
//! panic caught and counted as a failure; and the retry rule that says whether, and after how
//! long, a failed attempt is tried again. Every mode builds on this.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::Either;

use crate::observe;
use crate::{Cursor, RetryPolicy, Saga, SagaContext, StepDescription, StepError, StepKind};

/// Why a transition gave up: its last error and how many attempts were made.
#[derive(Debug)]
pub(crate) struct TransitionFailure {
    pub(crate) error: StepError,
    pub(crate) attempts: u32,
}

/// The retry policies the engine applies on top of each step's own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Policies {
    /// The policy of every compensation (they must finish: retried persistently).
    pub(crate) compensation: RetryPolicy,
    /// Retry at once instead of backing off (tests): the same attempts, no waiting.
    pub(crate) skip_backoff: bool,
}

impl Default for Policies {
    fn default() -> Self {
        Self {
            compensation: RetryPolicy::COMPENSATION,
            skip_backoff: false,
        }
    }
}

/// The step description `cursor` points at, or `None` on a terminal cursor.
pub(crate) fn step_at<S: Saga>(cursor: Cursor) -> Option<&'static StepDescription> {
    let steps = S::description().steps;
    match cursor {
        Cursor::Step(i) | Cursor::Compensate(i) => steps.get(i),
        Cursor::Completed | Cursor::Compensated => None,
    }
}

/// Runs attempt `attempt` (from 1) of the transition `S::cursor(state)` names, bounded by the
/// step's timeout (a timeout is a retryable error). A panic in the step is caught and returned
/// as a retryable error naming the panic, so a bug never takes a consumer down.
pub(crate) async fn attempt<S: Saga>(
    saga: &S,
    base: &SagaContext,
    state: &S::State,
    attempt: u32,
) -> Result<S::Effect, StepError> {
    let cursor = S::cursor(state);
    let Some(step) = step_at::<S>(cursor) else {
        return Err(StepError::fatal(format!(
            "saga `{}` has nothing left to run from {cursor:?}",
            base.saga()
        )));
    };
    let cx = base.at(step.name, matches!(cursor, Cursor::Compensate(_)), attempt);
    let observed = observe::TransitionProbe::start(&cx, cursor);
    // Built and awaited in one expression: this future then holds the step's future once.
    let result = observed
        .run(bounded(saga.execute(&cx, state), step.timeout))
        .await;
    observed.finish(&result);
    result
}

/// The step's future `run` bounded by `timeout` (a timeout is a retryable error), a panic in
/// it caught as a retryable error naming the panic.
///
/// Combinators rather than an `async` block: a block would hold `run` twice for the whole
/// attempt, once as the value moved in and once inside the timeout it is awaited through (the
/// step's future is the largest part of a running saga's task).
fn bounded<T>(
    run: impl Future<Output = Result<T, StepError>>,
    timeout: Option<Duration>,
) -> impl Future<Output = Result<T, StepError>> {
    let caught = AssertUnwindSafe(run).catch_unwind();
    let timed = match timeout {
        Some(limit) => Either::Left(
            tokio::time::timeout(limit, caught)
                .map(move |timed| timed.unwrap_or_else(|_| Ok(Err(StepError::timeout(limit))))),
        ),
        None => Either::Right(caught),
    };
    timed.map(|caught| {
        caught.unwrap_or_else(|panic| {
            Err(StepError::retryable(format!(
                "panicked: {}",
                panic_message(&*panic)
            )))
        })
    })
}

/// The text of a caught panic.
pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_string())
}

/// The retry policy of the transition at `cursor`: the engine's compensation policy for a
/// compensation, the step's own otherwise; `None` on a terminal cursor.
fn policy_at<S: Saga>(cursor: Cursor, policies: &Policies) -> Option<RetryPolicy> {
    let step = step_at::<S>(cursor)?;
    Some(match cursor {
        Cursor::Compensate(_) => policies.compensation,
        _ => step.retry,
    })
}

/// When attempt `attempt` of the transition at `cursor` is past its policy's bound before it
/// runs (earlier attempts never reported back: the replica running them died, a step that
/// kills its process), the error that ends it without running it again.
pub(crate) fn over_bound<S: Saga>(
    cursor: Cursor,
    attempt: u32,
    policies: &Policies,
) -> Option<StepError> {
    let policy = policy_at::<S>(cursor, policies)?;
    (attempt > policy.max_attempts).then(|| {
        StepError::retryable(format!(
            "attempt {attempt} is past the bound of {} attempts: the earlier attempts never \
             finished (the replica running them died each time)",
            policy.max_attempts
        ))
    })
}

/// How long to wait before attempt `attempt + 1` of the transition at `cursor` after `error`,
/// or `None` when the transition gives up.
///
/// Compensatable steps and the pivot retry only [`ErrorKind::Retryable`](crate::ErrorKind)
/// errors within their policy: a final error means "compensate". Retriable steps (after the
/// pivot) retry every error within their policy; compensations retry every error within the
/// engine's compensation policy ([`Policies::compensation`]): the saga has no other way out of
/// them, so past that bound it is stuck.
pub(crate) fn retry_delay<S: Saga>(
    cursor: Cursor,
    error: &StepError,
    attempt: u32,
    policies: &Policies,
) -> Option<Duration> {
    let step = step_at::<S>(cursor)?;
    let policy = policy_at::<S>(cursor, policies)?;
    let retries_every_error =
        matches!(cursor, Cursor::Compensate(_)) || step.kind == StepKind::Retriable;
    if error.is_retryable() || retries_every_error {
        let delay = policy.delay_after(attempt)?;
        Some(if policies.skip_backoff {
            Duration::ZERO
        } else {
            delay
        })
    } else {
        None
    }
}
