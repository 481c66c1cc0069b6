//! One transition (a step or a compensation) run under its policy: per-attempt timeout,
//! bounded retries with backoff. Every mode builds on this.

use tracing::{debug, warn};

use crate::{Cursor, RetryPolicy, Saga, SagaContext, StepDescription, StepError, StepKind};

/// Why a transition gave up: its last error and how many attempts were made.
#[derive(Debug)]
pub(crate) struct TransitionFailure {
    pub(crate) error: StepError,
    pub(crate) attempts: u32,
}

/// Whether `error` on attempt `attempt` of the transition at `cursor` is worth another try.
///
/// Compensatable steps and the pivot retry only [`ErrorKind::Retryable`](crate::ErrorKind)
/// errors: a final error means "compensate". Retriable steps and compensations retry every
/// error: the saga has no other way out of them, so they are retried up to their bound and then
/// the saga is stuck.
fn retries_every_error(cursor: Cursor, step: &StepDescription) -> bool {
    matches!(cursor, Cursor::Compensate(_)) || step.kind == StepKind::Retriable
}

/// The step description `cursor` points at, or `None` on a terminal cursor.
pub(crate) fn step_at<S: Saga>(cursor: Cursor) -> Option<&'static StepDescription> {
    let steps = S::description().steps;
    match cursor {
        Cursor::Step(i) | Cursor::Compensate(i) => steps.get(i),
        Cursor::Completed | Cursor::Compensated => None,
    }
}

/// Runs the transition `S::cursor(state)` names, retrying per the step's [`RetryPolicy`] and
/// bounding each attempt by the step's timeout. `first_attempt` lets a mode that already
/// made attempts (a redelivered message) continue the count.
pub(crate) async fn run_transition<S: Saga>(
    saga: &S,
    base: &SagaContext,
    state: &S::State,
    first_attempt: u32,
) -> Result<S::Effect, TransitionFailure> {
    let cursor = S::cursor(state);
    let Some(step) = step_at::<S>(cursor) else {
        return Err(TransitionFailure {
            error: StepError::fatal(format!(
                "saga `{}` has nothing left to run from {cursor:?}",
                base.saga()
            )),
            attempts: 0,
        });
    };
    let compensating = matches!(cursor, Cursor::Compensate(_));
    let policy: RetryPolicy = step.retry;
    let mut attempt = first_attempt.max(1);
    loop {
        let cx = base.at(step.name, compensating, attempt);
        let result = match step.timeout {
            Some(limit) => match tokio::time::timeout(limit, saga.execute(&cx, state)).await {
                Ok(result) => result,
                Err(_) => Err(StepError::timeout(limit)),
            },
            None => saga.execute(&cx, state).await,
        };
        let error = match result {
            Ok(effect) => return Ok(effect),
            Err(error) => error,
        };
        let may_retry = error.is_retryable() || retries_every_error(cursor, step);
        let delay = if may_retry {
            policy.delay_after(attempt)
        } else {
            None
        };
        match delay {
            Some(delay) => {
                debug!(
                    trace_id = cx.trace_id(), saga = cx.saga(), step = step.name, compensating, attempt,
                    ?delay, %error, "transition failed, retrying"
                );
                tokio::time::sleep(delay).await;
                attempt += 1;
            }
            None => {
                warn!(
                    trace_id = cx.trace_id(), saga = cx.saga(), step = step.name, compensating, attempt,
                    %error, "transition failed, giving up"
                );
                return Err(TransitionFailure {
                    error,
                    attempts: attempt,
                });
            }
        }
    }
}
