//! What follows a transition: the next state, or how the saga ended. Shared by every mode, so
//! the sync engine, the queue consumer and crash recovery take the same decisions.

use serde::{Deserialize, Serialize};

use super::transition::{TransitionFailure, step_at};
use crate::error::StuckAt;
use crate::{Cursor, Saga, SagaContext, SagaError, StepError, StepKind};

/// The forward step whose failure started a rollback, and why it failed. Carried beside the
/// state while compensations run, so the final error names the step that failed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailedStep {
    /// The step that failed.
    pub step: String,
    /// Its last error.
    pub error: StepError,
}

/// Where a saga stands after a transition.
#[derive(Debug)]
pub enum Progress<S: Saga> {
    /// More to run from this state; `failure` is set while compensating.
    Running {
        /// The next state.
        state: S::State,
        /// The failure being compensated, if any.
        failure: Option<FailedStep>,
    },
    /// Every step completed.
    Completed(S::Output),
    /// A step failed and every completed step was compensated
    /// ([`SagaError::Compensated`]).
    Compensated(SagaError),
    /// A transition exhausted its retries ([`SagaError::Stuck`]); `state` still points at it,
    /// so it can be resumed once the cause is fixed.
    Stuck {
        /// The state the stuck transition runs from.
        state: S::State,
        /// The error, naming the stuck transition.
        error: SagaError,
        /// The failure being compensated, if any.
        failure: Option<FailedStep>,
    },
}

impl<S: Saga> Progress<S> {
    /// Where a saga stands at `state`, before any transition runs (a terminal state is
    /// already an outcome).
    pub fn at(cx: &SagaContext, state: S::State, failure: Option<FailedStep>) -> Self {
        match S::cursor(&state) {
            Cursor::Completed => match S::finish(state) {
                Ok(output) => Progress::Completed(output),
                Err(state) => Progress::Stuck {
                    state,
                    error: SagaError::InvalidState {
                        saga: cx.saga().to_string(),
                        trace_id: cx.trace_id().to_string(),
                        message: "the state says completed but holds no output".to_string(),
                    },
                    failure,
                },
            },
            Cursor::Compensated => Progress::Compensated(compensated(cx, failure)),
            Cursor::Step(_) | Cursor::Compensate(_) => Progress::Running { state, failure },
        }
    }

    /// True when the saga at `state` may still be compensated on an operator's request: its
    /// next transition is a forward step before or at the pivot (the pivot has not run).
    pub(crate) fn abortable(state: &S::State) -> bool {
        let cursor = S::cursor(state);
        matches!(cursor, Cursor::Step(_))
            && step_at::<S>(cursor).is_some_and(|step| step.kind != StepKind::Retriable)
    }

    /// The rollback of the saga at `state` ([`Self::abortable`]) on an operator's request: the
    /// forward step it stood at is reported as the failed step, with an error that says an
    /// operator asked.
    pub(crate) fn operator_rollback(cx: &SagaContext, state: S::State) -> Self {
        let failed = TransitionFailure {
            error: StepError::fatal("compensation requested by an operator"),
            attempts: 0,
        };
        Self::after(cx, state, None, Err(failed))
    }

    /// Folds the result of the transition that ran from `state` into what comes next.
    pub(crate) fn after(
        cx: &SagaContext,
        state: S::State,
        failure: Option<FailedStep>,
        result: Result<S::Effect, TransitionFailure>,
    ) -> Self {
        let cursor = S::cursor(&state);
        match result {
            Ok(effect) => Self::at(cx, S::apply(state, effect), failure),
            Err(TransitionFailure { error, attempts }) => {
                let Some(step) = step_at::<S>(cursor) else {
                    return Self::at(cx, state, failure);
                };
                let stuck = |stuck: StuckAt, failure: Option<FailedStep>| SagaError::Stuck {
                    saga: cx.saga().to_string(),
                    trace_id: cx.trace_id().to_string(),
                    stuck,
                    attempts,
                    last_error: error.clone(),
                    failed_step: failure.map(|f| (f.step, f.error)),
                };
                match cursor {
                    Cursor::Step(_) if step.kind == StepKind::Retriable => Progress::Stuck {
                        error: stuck(StuckAt::Step(step.name.to_string()), None),
                        state,
                        failure,
                    },
                    Cursor::Step(_) => {
                        let failure = Some(FailedStep {
                            step: step.name.to_string(),
                            error: error.clone(),
                        });
                        Self::at(cx, S::rollback(state), failure)
                    }
                    _ => Progress::Stuck {
                        error: stuck(
                            StuckAt::Compensation(step.name.to_string()),
                            failure.clone(),
                        ),
                        state,
                        failure,
                    },
                }
            }
        }
    }

    /// The final result of an ended saga; a running one (which the engine never passes here)
    /// is reported as [`SagaError::InvalidState`].
    pub(crate) fn into_outcome(self, cx: &SagaContext) -> Result<S::Output, SagaError> {
        self.into_result().unwrap_or_else(|| {
            Err(SagaError::InvalidState {
                saga: cx.saga().to_string(),
                trace_id: cx.trace_id().to_string(),
                message: "a running saga has no outcome".to_string(),
            })
        })
    }

    /// The saga's final result, or `None` while it runs.
    pub fn into_result(self) -> Option<Result<S::Output, SagaError>> {
        match self {
            Progress::Running { .. } => None,
            Progress::Completed(output) => Some(Ok(output)),
            Progress::Compensated(error) | Progress::Stuck { error, .. } => Some(Err(error)),
        }
    }
}

fn compensated(cx: &SagaContext, failure: Option<FailedStep>) -> SagaError {
    let (step, error) = match failure {
        Some(FailedStep { step, error }) => (step, error),
        None => (
            "(unknown: resumed after the failure)".to_string(),
            StepError::fatal("the failure was not recorded with the state"),
        ),
    };
    SagaError::Compensated {
        saga: cx.saga().to_string(),
        trace_id: cx.trace_id().to_string(),
        step,
        error,
    }
}
