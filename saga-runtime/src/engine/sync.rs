//! The sync mode: a saga runs in the caller's task; on failure the compensations run inline,
//! in reverse, before the call returns.

use super::progress::{Failure, Progress};
use super::transition::run_transition;
use crate::{Saga, SagaContext, SagaError};

/// The error for a running state where an outcome was expected (never happens: the loop
/// only stops on a final progress).
pub(crate) fn unreachable_running<T>(cx: &SagaContext) -> Result<T, SagaError> {
    Err(SagaError::InvalidState {
        saga: cx.saga().to_string(),
        trace_id: cx.trace_id().to_string(),
        message: "a running saga has no outcome".to_string(),
    })
}

/// Runs sagas in the caller's task.
///
/// The caller's future owns the saga while it runs: if it is dropped midway (a client
/// disconnected and the server cancelled the handler), the saga stops where it is without
/// compensating. Spawn the call on a task of its own when that matters (the gRPC glue does),
/// or use the async or throttled modes, whose progress survives any one process.
#[derive(Clone, Copy, Debug, Default)]
pub struct SyncEngine {
    _private: (),
}

impl SyncEngine {
    /// A sync engine with inline rollback.
    pub fn new() -> Self {
        Self::default()
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
        failure: Option<Failure>,
    ) -> Result<S::Output, SagaError> {
        let mut progress = Progress::<S>::at(cx, state, failure);
        loop {
            match progress {
                Progress::Running { state, failure } => {
                    let result = run_transition(saga, cx, &state, 1).await;
                    progress = Progress::after(cx, state, failure, result);
                }
                done => {
                    return done
                        .into_result()
                        .unwrap_or_else(|| unreachable_running(cx));
                }
            }
        }
    }
}
