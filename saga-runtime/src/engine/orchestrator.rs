//! [`Orchestrator`]: one saga definition run in the three modes over a transport and a store.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use tokio::sync::Semaphore;
use tracing::{error, info, warn};

use super::config::{OrchestratorConfig, Rollback, Routing};
use super::envelope::{Envelope, FORMAT_VERSION, decode};
use super::progress::{Failure, Progress};
use super::sync::unreachable_running;
use super::topics::{all_topics, topic_for};
use super::transition::run_transition;
use crate::store::{Begin, SagaRecord, SagaStatus, SagaStore, fingerprint};
use crate::transport::{
    Delivery, Disposition, Handler, Message, SubscribeOptions, Subscription, TRACE_ID_HEADER,
    Transport,
};
use crate::{Cursor, Saga, SagaContext, SagaError};

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

struct Inner<S: Saga> {
    saga: Arc<S>,
    transport: Arc<dyn Transport>,
    store: Arc<dyn SagaStore>,
    config: OrchestratorConfig,
    hook: Option<CompletionHook<S>>,
    step_slots: Option<Arc<Semaphore>>,
}

impl<S: Saga> Orchestrator<S> {
    /// An orchestrator of `saga` over `transport` and `store`.
    pub fn new(
        saga: Arc<S>,
        transport: Arc<dyn Transport>,
        store: Arc<dyn SagaStore>,
        config: OrchestratorConfig,
    ) -> Self {
        let step_slots = config
            .max_concurrent_steps
            .map(|n| Arc::new(Semaphore::new(n.max(1))));
        Self {
            inner: Arc::new(Inner {
                saga,
                transport,
                store,
                config,
                hook: None,
                step_slots,
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
    pub async fn run_sync(
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
                    // Record before publishing a queued rollback: once published, the rollback
                    // consumer may record the final outcome, which a later write would hide.
                    inner.record_progress(cx, &state).await;
                    if let (Some(failed), Rollback::Queued) = (&failure, inner.config.sync_rollback)
                    {
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
        if let Some(existing) = self.begin(cx, &input).await? {
            return Ok(Started::Existing(existing.status));
        }
        self.publish_first(cx, input, None).await?;
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
        if let Some(existing) = self.begin(cx, &input).await? {
            return self.await_existing(cx, existing).await;
        }
        let route = match self.inner.config.throttled_routing {
            Routing::Shared => None,
            Routing::PodAffine => Some(self.inner.config.pod_id.clone()),
        };
        let watch = self.inner.store.watch(cx.trace_id());
        let publish = self.publish_first(cx, input, route);
        // Watch first so the end is never missed; the store also reads after subscribing.
        let (outcome, published) = tokio::join!(self.wait(cx, watch), publish);
        published?;
        outcome
    }

    /// Waits for the outcome of `cx.trace_id()` from any replica, until the context's deadline.
    pub async fn outcome(&self, cx: &SagaContext) -> Result<S::Output, SagaError> {
        self.wait(cx, self.inner.store.watch(cx.trace_id())).await
    }

    /// Starts the consumers of every topic of the saga (each step topic and the rollback
    /// topic; with pod-affine routing also this pod's topics), each with its configured
    /// concurrency, in the competing-consumer group named after the saga.
    pub async fn serve(&self) -> Result<Consumers, SagaError> {
        let name = S::description().name;
        let pod = self.inner.config.pod_id.clone();
        let mut routes: Vec<(Option<String>, String)> = vec![(None, name.to_string())];
        if self.inner.config.throttled_routing == Routing::PodAffine {
            routes.push((Some(pod.clone()), format!("{name}.{pod}")));
        }
        let mut subscriptions = Vec::new();
        for (route, group) in routes {
            for topic in all_topics::<S>(route.as_deref()) {
                let options = SubscribeOptions {
                    group: group.clone(),
                    concurrency: self.inner.config.concurrency(&topic),
                };
                let handler = Arc::new(TopicConsumer {
                    inner: Arc::clone(&self.inner),
                    topic: topic.clone(),
                });
                let subscription = self
                    .inner
                    .transport
                    .subscribe(&topic, options, handler)
                    .await
                    .map_err(|e| SagaError::Transport {
                        trace_id: "-".to_string(),
                        message: e.to_string(),
                    })?;
                subscriptions.push(subscription);
            }
        }
        info!(saga = name, pod = %pod, topics = subscriptions.len(), "saga consumers running");
        Ok(Consumers {
            subscriptions,
            grace: self.inner.config.shutdown_grace,
        })
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
            Begin::Existing(record) => Ok(Some(record)),
            Begin::Conflict(record) => Err(SagaError::IdTaken {
                saga: record.saga,
                trace_id: cx.trace_id().to_string(),
            }),
        }
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

    async fn wait(
        &self,
        cx: &SagaContext,
        watch: BoxFuture<'_, Result<crate::store::Outcome, crate::store::StoreError>>,
    ) -> Result<S::Output, SagaError> {
        let deadline = cx
            .deadline()
            .unwrap_or_else(|| Instant::now() + self.inner.config.default_wait);
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
    async fn publish_state(
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
    async fn record_progress(&self, cx: &SagaContext, state: &S::State) {
        if let Some(status) = status_of::<S>(state)
            && let Err(e) = self.store.update(cx.trace_id(), status, 0).await
        {
            warn!(trace_id = cx.trace_id(), error = %e, "cannot record saga progress");
        }
    }

    /// Records a final outcome and returns it.
    async fn finish(&self, cx: &SagaContext, done: Progress<S>) -> Result<S::Output, SagaError> {
        let result = done
            .into_result()
            .unwrap_or_else(|| unreachable_running(cx));
        if let Err(e) = self.record_final(cx, &result).await {
            error!(trace_id = cx.trace_id(), error = %e, "cannot record the saga's outcome");
        }
        result
    }

    async fn record_final(
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

    async fn notify(&self, cx: &SagaContext, result: Result<S::Output, SagaError>) {
        if let Some(hook) = &self.hook {
            hook(Completion {
                trace_id: cx.trace_id().to_string(),
                result,
            })
            .await;
        }
    }
}

/// The running consumers of one orchestrator.
#[derive(Debug)]
pub struct Consumers {
    subscriptions: Vec<Subscription>,
    grace: Duration,
}

impl Consumers {
    /// Stops taking messages and lets in-flight ones finish within the configured grace;
    /// returns how many were still in flight when it gave up (they will be redelivered).
    pub async fn shutdown(self) -> usize {
        let grace = self.grace;
        let mut left = 0;
        for subscription in self.subscriptions {
            left += subscription.shutdown(grace).await;
        }
        left
    }

    /// Stops at once, as a crash would: in-flight messages are not acked and get redelivered.
    pub fn abort(self) {
        for subscription in self.subscriptions {
            subscription.abort();
        }
    }
}

/// Handles the messages of one topic: runs one transition, publishes the next state (or
/// records the end), and only then acks.
struct TopicConsumer<S: Saga> {
    inner: Arc<Inner<S>>,
    topic: String,
}

impl<S: Saga> Handler for TopicConsumer<S> {
    fn handle(&self, delivery: Delivery) -> BoxFuture<'static, Disposition> {
        let inner = Arc::clone(&self.inner);
        let topic = self.topic.clone();
        Box::pin(async move { inner.consume(&topic, delivery).await })
    }
}

impl<S: Saga> Inner<S> {
    async fn consume(&self, topic: &str, delivery: Delivery) -> Disposition {
        let envelope = match decode::<S>(&delivery.payload) {
            Ok(envelope) => envelope,
            Err(reason) => {
                error!(topic, trace_id = delivery.trace_id(), %reason, "dead-lettering a message this consumer cannot process");
                return Disposition::DeadLetter {
                    reason: reason.to_string(),
                };
            }
        };
        let Envelope {
            trace_id,
            metadata,
            route,
            failure,
            state,
            ..
        } = envelope;
        let cx = SagaContext::new(S::description().name, trace_id).with_metadata(metadata);
        if S::cursor(&state).is_terminal() {
            let reason = format!(
                "the message holds a finished saga ({:?}): nothing to run",
                S::cursor(&state)
            );
            error!(topic, trace_id = cx.trace_id(), %reason, "dead-lettering");
            return Disposition::DeadLetter { reason };
        }
        let _slot = match &self.step_slots {
            Some(slots) => Arc::clone(slots).acquire_owned().await.ok(),
            None => None,
        };
        let result = run_transition(&*self.saga, &cx, &state, 1).await;
        match Progress::<S>::after(&cx, state, failure, result) {
            Progress::Running { state, failure } => {
                // Record before publishing: once the next state is published, its consumer may
                // record the final outcome, and a progress write after it would overwrite it
                // (the store's update reads then writes), leaving the saga "running" forever
                // and its throttled caller waiting until its deadline.
                self.record_progress(&cx, &state).await;
                if let Err(e) = self
                    .publish_state(&cx, &state, failure.as_ref(), route.as_deref())
                    .await
                {
                    warn!(topic, trace_id = cx.trace_id(), error = %e, "cannot publish the next state; the step will run again");
                    return Disposition::Nack {
                        delay: Some(self.config.redelivery_delay),
                    };
                }
                Disposition::Ack
            }
            Progress::Stuck { error, .. } => {
                if let Err(e) = self.record_final(&cx, &Err(error.clone())).await {
                    error!(topic, trace_id = cx.trace_id(), error = %e, "cannot record that the saga is stuck");
                }
                error!(topic, trace_id = cx.trace_id(), %error, "saga stuck: dead-lettering its message");
                let reason = error.to_string();
                self.notify(&cx, Err(error)).await;
                Disposition::DeadLetter { reason }
            }
            done => {
                let result = done
                    .into_result()
                    .unwrap_or_else(|| unreachable_running(&cx));
                if let Err(e) = self.record_final(&cx, &result).await {
                    warn!(topic, trace_id = cx.trace_id(), error = %e, "cannot record the outcome; the step will run again");
                    return Disposition::Nack {
                        delay: Some(self.config.redelivery_delay),
                    };
                }
                self.notify(&cx, result).await;
                Disposition::Ack
            }
        }
    }
}
