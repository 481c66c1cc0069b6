//! [`Orchestrator`]: one saga definition run in the three modes over a transport and a store.

use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use futures_util::future::BoxFuture;
use tokio::sync::Semaphore;
use tracing::{error, info, warn};

use super::config::{OrchestratorConfig, Rollback, Routing};
use super::consumer::{self, Consumers};
use super::inner::Inner;
use super::progress::Progress;
use super::transition::run_transition;
use crate::store::{Begin, SagaRecord, SagaStatus, SagaStore, fingerprint, now_ms};
use crate::transport::Transport;
use crate::{Saga, SagaContext, SagaError};

/// How a saga ended, handed to the completion hook.
#[derive(Debug)]
pub struct Completion<S: Saga> {
    /// The trace id (saga id).
    pub trace_id: String,
    /// The output, or how the saga failed.
    pub result: Result<S::Output, SagaError>,
}

/// A user async fn called once per saga that ends on this replica (async and throttled
/// modes), after its outcome is in the store. At-least-once: after a crash it may be called
/// again for the same saga.
pub type CompletionHook<S> = Arc<dyn Fn(Completion<S>) -> BoxFuture<'static, ()> + Send + Sync>;

/// What [`Orchestrator::start`] did.
#[derive(Clone, Debug, PartialEq)]
pub enum Started {
    /// The saga's first message is confirmed by the broker.
    New,
    /// A saga with this trace id and the same input exists already; nothing was started. Its
    /// current status is given.
    Existing(SagaStatus),
}

/// Runs one saga definition in the three modes:
/// - [`Orchestrator::run_sync`]: in the caller's task, compensations inline or queued
///   ([`Rollback`]);
/// - [`Orchestrator::start`]: async; returns once the first message is confirmed, consumers run
///   one step per message, the completion hook gets the outcome;
/// - [`Orchestrator::run_throttled`]: the caller waits, the steps run through the step topics
///   whose consumer concurrency caps the load on upstream services.
///
/// Every mode records the saga in the store under its trace id first: starting an id twice
/// with the same input never runs the saga twice (the caller gets, or waits for, the first
/// outcome); with another input it is refused ([`SagaError::IdTaken`]). If the store cannot
/// be reached nothing is started.
///
/// Consumers ([`Orchestrator::serve`]) ack a message only after its effect (the next state,
/// the rollback, or the final status in the store) is durable, so every step and compensation
/// runs at least once and may run more than once: they must be idempotent, using
/// [`SagaContext::idempotency_key`].
pub struct Orchestrator<S: Saga> {
    inner: Arc<Inner<S>>,
}

impl<S: Saga> Clone for Orchestrator<S> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<S: Saga> fmt::Debug for Orchestrator<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Orchestrator")
            .field("saga", &S::description().name)
            .field("transport", &self.inner.transport)
            .field("store", &self.inner.store)
            .field("config", &self.inner.config)
            .finish()
    }
}

impl<S: Saga> Orchestrator<S> {
    /// An orchestrator of `saga` over `transport` and `store`.
    pub fn new(
        saga: Arc<S>,
        transport: Arc<dyn Transport>,
        store: Arc<dyn SagaStore>,
        config: OrchestratorConfig,
    ) -> Self {
        let slots = |bound: Option<usize>| bound.map(|n| Arc::new(Semaphore::new(n)));
        let step_slots = slots(config.max_concurrent_steps.map(|n| n.max(1)));
        let waiting_slots = slots(config.max_waiting);
        Self {
            inner: Arc::new(Inner {
                saga,
                transport,
                store,
                config,
                hook: None,
                step_slots,
                waiting_slots,
            }),
        }
    }

    /// Sets the completion hook (async and throttled modes). Call before [`Self::serve`].
    pub fn on_complete<F, Fut>(mut self, hook: F) -> Self
    where
        F: Fn(Completion<S>) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let hook: CompletionHook<S> = Arc::new(move |completion| Box::pin(hook(completion)));
        match Arc::get_mut(&mut self.inner) {
            Some(inner) => inner.hook = Some(hook),
            None => warn!(
                saga = S::description().name,
                "on_complete ignored: the orchestrator is already shared"
            ),
        }
        self
    }

    /// The saga definition.
    pub fn saga(&self) -> &Arc<S> {
        &self.inner.saga
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn SagaStore> {
        &self.inner.store
    }

    /// The settings.
    pub fn config(&self) -> &OrchestratorConfig {
        &self.inner.config
    }

    /// Sync mode: runs the saga in the caller's task. On failure the compensations run inline
    /// (the default) or go to the rollback topic ([`Rollback::Queued`]).
    ///
    /// The saga runs on a task of its own: a caller that goes away (a client that hung up)
    /// does not abandon it halfway.
    pub async fn run_sync(
        &self,
        cx: &SagaContext,
        input: S::Input,
    ) -> Result<S::Output, SagaError> {
        let this = self.clone();
        let owned = cx.clone();
        detached(cx, async move { this.run_sync_here(&owned, input).await }).await
    }

    async fn run_sync_here(
        &self,
        cx: &SagaContext,
        input: S::Input,
    ) -> Result<S::Output, SagaError> {
        if let Some(existing) = self.begin(cx, &input).await? {
            return self.await_existing(cx, existing).await;
        }
        let inner = &self.inner;
        let mut progress = Progress::<S>::at(cx, S::start(input), None);
        loop {
            match progress {
                Progress::Running { state, failure } => {
                    if let (Some(failed), Rollback::Queued) = (&failure, inner.config.sync_rollback)
                    {
                        inner.record_progress(cx, &state).await;
                        match inner
                            .publish_state(cx, &state, failure.as_ref(), None)
                            .await
                        {
                            Ok(()) => {
                                return Err(SagaError::RollbackQueued {
                                    saga: cx.saga().to_string(),
                                    trace_id: cx.trace_id().to_string(),
                                    step: failed.step.clone(),
                                    error: failed.error.clone(),
                                });
                            }
                            Err(cause) => {
                                error!(trace_id = cx.trace_id(), %cause, "cannot queue the rollback; compensating inline");
                            }
                        }
                    }
                    inner.record_progress(cx, &state).await;
                    let result = run_transition(&*inner.saga, cx, &state, 1).await;
                    progress = Progress::after(cx, state, failure, result);
                }
                done => return inner.finish(cx, done).await,
            }
        }
    }
}

impl<S: Saga> Orchestrator<S> {
    /// Async mode: records the saga and publishes its first message; returns once the broker
    /// confirmed it. Consumers ([`Self::serve`]) on any replica run the steps; the completion
    /// hook and the store receive the outcome. Starting an existing id with the same input
    /// starts nothing and returns [`Started::Existing`].
    pub async fn start(&self, cx: &SagaContext, input: S::Input) -> Result<Started, SagaError> {
        if let Some(existing) = self.admit(cx, input, None).await? {
            return Ok(Started::Existing(existing.status));
        }
        Ok(Started::New)
    }

    /// Throttled mode: like [`Self::start`], then waits for the outcome, which reaches this
    /// replica through the store's watcher. The wait ends at the context's deadline (or after
    /// [`OrchestratorConfig::default_wait`]) with [`SagaError::DeadlineExceeded`]; the saga
    /// itself still finishes.
    pub async fn run_throttled(
        &self,
        cx: &SagaContext,
        input: S::Input,
    ) -> Result<S::Output, SagaError> {
        let route = match self.inner.config.throttled_routing {
            Routing::Shared => None,
            Routing::PodAffine => Some(self.inner.config.pod_id.clone()),
        };
        let _waiting = match &self.inner.waiting_slots {
            Some(slots) => Some(Arc::clone(slots).try_acquire_owned().map_err(|_| SagaError::Rejected {
                saga: cx.saga().to_string(),
                trace_id: cx.trace_id().to_string(),
                reason: format!(
                    "the throttled queue of this replica is full ({} callers waiting); retry later",
                    self.inner.config.max_waiting.unwrap_or_default()
                ),
            })?),
            None => None,
        };
        if let Some(existing) = self.admit(cx, input, route).await? {
            return self.await_existing(cx, existing).await;
        }
        // The store's watch subscribes before it reads, so an end that came first is seen.
        self.outcome(cx).await
    }

    /// Waits for the outcome of `cx.trace_id()` from any replica, until the context's deadline.
    pub async fn outcome(&self, cx: &SagaContext) -> Result<S::Output, SagaError> {
        let deadline = cx
            .deadline()
            .unwrap_or_else(|| Instant::now() + self.inner.config.default_wait);
        let watch = self.inner.store.watch(cx.trace_id());
        match tokio::time::timeout_at(deadline.into(), watch).await {
            Ok(Ok(outcome)) => decode_outcome::<S>(cx, outcome),
            Ok(Err(e)) => Err(SagaError::Store {
                trace_id: cx.trace_id().to_string(),
                message: e.to_string(),
            }),
            Err(_) => Err(SagaError::DeadlineExceeded {
                saga: cx.saga().to_string(),
                trace_id: cx.trace_id().to_string(),
            }),
        }
    }

    /// Starts the consumers of every topic of the saga (each step topic and the rollback
    /// topic; with pod-affine routing also this pod's topics), each with its configured
    /// concurrency, in the competing-consumer group named after the saga.
    pub async fn serve(&self) -> Result<Consumers, SagaError> {
        consumer::serve(&self.inner).await
    }

    /// Records the saga; `Some(record)` when the id exists with the same input.
    async fn begin(
        &self,
        cx: &SagaContext,
        input: &S::Input,
    ) -> Result<Option<SagaRecord>, SagaError> {
        let desc = S::description();
        let store_error = |message: String| SagaError::Store {
            trace_id: cx.trace_id().to_string(),
            message,
        };
        let input_json = serde_json::to_vec(input)
            .map_err(|e| store_error(format!("cannot serialise the input: {e}")))?;
        let first = desc.steps.first().map(|s| s.name).unwrap_or_default();
        let record = SagaRecord::new(
            cx.trace_id(),
            desc.name,
            fingerprint(desc.name, &input_json),
            first,
        );
        match self
            .inner
            .store
            .begin(record)
            .await
            .map_err(|e| store_error(e.to_string()))?
        {
            Begin::Started => Ok(None),
            Begin::Existing(record) if self.stranded(&record) => {
                // Its first step never ran within `redrive_after`: most likely the replica that
                // recorded it died before publishing. Claim it and start it again (steps are
                // idempotent, so a first message that was only slow costs a duplicate call).
                warn!(
                    trace_id = cx.trace_id(),
                    since_ms = now_ms().saturating_sub(record.updated_at_ms),
                    "saga recorded but its first step never ran: starting it again"
                );
                self.inner
                    .store
                    .update(cx.trace_id(), record.status, record.attempts + 1)
                    .await
                    .map_err(|e| store_error(e.to_string()))?;
                Ok(None)
            }
            Begin::Existing(record) => Ok(Some(record)),
            Begin::Conflict(record) => Err(SagaError::IdTaken {
                saga: record.saga,
                trace_id: cx.trace_id().to_string(),
            }),
        }
    }

    /// True when `record` has waited at its first step, untouched, for longer than
    /// [`OrchestratorConfig::redrive_after`].
    fn stranded(&self, record: &SagaRecord) -> bool {
        let Some(after) = self.inner.config.redrive_after else {
            return false;
        };
        matches!(record.status, SagaStatus::Running { step: 0, .. })
            && now_ms().saturating_sub(record.updated_at_ms) > after.as_millis() as u64
    }

    /// Records the saga and publishes its first message, on a task of its own so a caller
    /// that goes away in between cannot leave a record with nothing queued. `Some(record)`
    /// when the id exists with the same input (nothing was published).
    async fn admit(
        &self,
        cx: &SagaContext,
        input: S::Input,
        route: Option<String>,
    ) -> Result<Option<SagaRecord>, SagaError> {
        let this = self.clone();
        let owned = cx.clone();
        detached(cx, async move {
            if let Some(existing) = this.begin(&owned, &input).await? {
                return Ok(Some(existing));
            }
            this.publish_first(&owned, input, route).await?;
            Ok(None)
        })
        .await
    }

    async fn publish_first(
        &self,
        cx: &SagaContext,
        input: S::Input,
        route: Option<String>,
    ) -> Result<(), SagaError> {
        let state = S::start(input);
        if let Err(error) = self
            .inner
            .publish_state(cx, &state, None, route.as_deref())
            .await
        {
            // Nothing was started: free the id so the caller can retry with it.
            if let Err(cleanup) = self.inner.store.remove(cx.trace_id()).await {
                error!(trace_id = cx.trace_id(), %cleanup, "cannot remove the record of a saga that did not start");
            }
            return Err(error);
        }
        Ok(())
    }

    async fn await_existing(
        &self,
        cx: &SagaContext,
        existing: SagaRecord,
    ) -> Result<S::Output, SagaError> {
        info!(trace_id = cx.trace_id(), saga = %existing.saga, "trace id seen before with the same input: returning its outcome");
        match existing.status.outcome() {
            Some(outcome) => decode_outcome::<S>(cx, outcome),
            None => self.outcome(cx).await,
        }
    }
}

/// Runs `work` on a task of its own and waits for it; the task finishes even if the caller
/// stops waiting.
async fn detached<T: Send + 'static>(
    cx: &SagaContext,
    work: impl std::future::Future<Output = Result<T, SagaError>> + Send + 'static,
) -> Result<T, SagaError> {
    tokio::spawn(work).await.unwrap_or_else(|e| {
        Err(SagaError::InvalidState {
            saga: cx.saga().to_string(),
            trace_id: cx.trace_id().to_string(),
            message: format!("the saga task failed: {e}"),
        })
    })
}

fn decode_outcome<S: Saga>(
    cx: &SagaContext,
    outcome: crate::store::Outcome,
) -> Result<S::Output, SagaError> {
    let output = outcome?;
    serde_json::from_value(output).map_err(|e| SagaError::InvalidState {
        saga: cx.saga().to_string(),
        trace_id: cx.trace_id().to_string(),
        message: format!("the stored output does not decode: {e}"),
    })
}
