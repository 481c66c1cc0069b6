//! What every mode of an [`Orchestrator`](super::Orchestrator) shares: the saga, the
//! transport, the store, and the steps that publish a state or record how it stands.

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::Semaphore;
use tracing::{error, warn};

use super::config::OrchestratorConfig;
use super::envelope::{Envelope, FORMAT_VERSION};
use super::orchestrator::{Completion, CompletionHook};
use super::progress::{Failure, Progress};
use super::sync::unreachable_running;
use super::topics::topic_for;
use crate::store::{SagaStatus, SagaStore};
use crate::transport::{Message, TRACE_ID_HEADER, Transport};
use crate::{Cursor, Saga, SagaContext, SagaError};

/// The shared state behind an orchestrator and its consumers.
pub(super) struct Inner<S: Saga> {
    pub(super) saga: Arc<S>,
    pub(super) transport: Arc<dyn Transport>,
    pub(super) store: Arc<dyn SagaStore>,
    pub(super) config: OrchestratorConfig,
    pub(super) hook: Option<CompletionHook<S>>,
    pub(super) step_slots: Option<Arc<Semaphore>>,
    /// Throttled callers allowed to wait at once ([`OrchestratorConfig::max_waiting`]).
    pub(super) waiting_slots: Option<Arc<Semaphore>>,
}

/// The status the store records for a running state.
fn status_of<S: Saga>(state: &S::State) -> Option<SagaStatus> {
    let steps = S::description().steps;
    match S::cursor(state) {
        Cursor::Step(step) => steps.get(step).map(|s| SagaStatus::Running {
            step,
            name: s.name.to_string(),
        }),
        Cursor::Compensate(step) => steps.get(step).map(|s| SagaStatus::Compensating {
            step,
            name: s.name.to_string(),
        }),
        Cursor::Completed | Cursor::Compensated => None,
    }
}

impl<S: Saga> Inner<S> {
    /// Publishes `state` to the topic of its next transition, with broker confirmation.
    pub(super) async fn publish_state(
        &self,
        cx: &SagaContext,
        state: &S::State,
        failure: Option<&Failure>,
        route: Option<&str>,
    ) -> Result<(), SagaError> {
        let transport_error = |message: String| SagaError::Transport {
            trace_id: cx.trace_id().to_string(),
            message,
        };
        let topic = topic_for::<S>(S::cursor(state), route)
            .ok_or_else(|| transport_error("a finished saga has no next topic".to_string()))?;
        let envelope = Envelope {
            v: FORMAT_VERSION,
            saga: S::description().name.to_string(),
            trace_id: cx.trace_id().to_string(),
            metadata: cx.metadata().clone(),
            route: route.map(str::to_string),
            failure: failure.cloned(),
            state,
        };
        let payload = serde_json::to_vec(&envelope)
            .map_err(|e| transport_error(format!("cannot serialise: {e}")))?;
        let mut message = Message {
            payload: Bytes::from(payload),
            ..Message::default()
        };
        message
            .headers
            .insert(TRACE_ID_HEADER.to_string(), cx.trace_id().to_string());
        self.transport
            .publish(&topic, message)
            .await
            .map_err(|e| transport_error(e.to_string()))
    }

    /// Records that `state` is next (best effort: the saga goes on if the store is down).
    pub(super) async fn record_progress(&self, cx: &SagaContext, state: &S::State) {
        if let Some(status) = status_of::<S>(state)
            && let Err(e) = self.store.update(cx.trace_id(), status, 0).await
        {
            warn!(trace_id = cx.trace_id(), error = %e, "cannot record saga progress");
        }
    }

    /// Records a final outcome and returns it.
    pub(super) async fn finish(
        &self,
        cx: &SagaContext,
        done: Progress<S>,
    ) -> Result<S::Output, SagaError> {
        let result = done
            .into_result()
            .unwrap_or_else(|| unreachable_running(cx));
        if let Err(e) = self.record_final(cx, &result).await {
            error!(trace_id = cx.trace_id(), error = %e, "cannot record the saga's outcome");
        }
        result
    }

    pub(super) async fn record_final(
        &self,
        cx: &SagaContext,
        result: &Result<S::Output, SagaError>,
    ) -> Result<(), SagaError> {
        let status = match result {
            Ok(output) => SagaStatus::Completed {
                output: serde_json::to_value(output).map_err(|e| SagaError::Store {
                    trace_id: cx.trace_id().to_string(),
                    message: format!("cannot serialise the output: {e}"),
                })?,
            },
            Err(error) => SagaStatus::Failed {
                error: error.clone(),
            },
        };
        self.store
            .update(cx.trace_id(), status, 0)
            .await
            .map_err(|e| SagaError::Store {
                trace_id: cx.trace_id().to_string(),
                message: e.to_string(),
            })
    }

    pub(super) async fn notify(&self, cx: &SagaContext, result: Result<S::Output, SagaError>) {
        if let Some(hook) = &self.hook {
            hook(Completion {
                trace_id: cx.trace_id().to_string(),
                result,
            })
            .await;
        }
    }
}
