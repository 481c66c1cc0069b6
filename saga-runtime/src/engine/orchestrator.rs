//! [`Orchestrator`]: one saga definition run in the three modes over a transport and a store.

use std::fmt;
use std::sync::Arc;

use tracing::{error, info};

use super::builder::OrchestratorBuilder;
use super::completion::CompletionHook;
use super::config::{OrchestratorConfig, Routing};
use super::consumer::ConsumerService;
use super::driver::{Start, drive};
use super::durable::Durable;
use super::runtime::{Runtime, decode_outcome, store_error};
use super::serve::{self, Consumers};
use crate::error::{Rejection, Report};
use crate::store::{
    Begin, Custody, Mode, SagaRecord, SagaStatus, SagaStore, StoredState, fingerprint,
};
use crate::transport::{Delivery, Disposition, Transport, TransportError};
use crate::{Saga, SagaContext, SagaError};
use tower::Layer;
use tracing::Instrument;

/// Runs one saga definition in the three modes:
/// - [`Orchestrator::run_sync`]: in the caller's task, compensations inline or queued
///   ([`Rollback`](super::Rollback));
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
/// **Every saga ends, whatever dies.** Every mode records each transition in the store (the
/// state to resume from, a sequence number, and the custody of the run that drives it, under
/// a lease it renews while it works). The recovery sweeper that [`Orchestrator::serve`] starts
/// on every replica resumes a saga whose custody lapsed: a sync saga is finished on the
/// claiming replica; an async or throttled one is published again. A caller retrying the id
/// gets the outcome.
///
/// **Fenced delivery.** A consumer runs a delivery only if the store says the saga is at the
/// delivery's sequence number and nobody else holds it, and records the transition with a
/// compare-and-set: a stale or duplicate message is acked and dropped, and a duplicate can never
/// fork a saga. Consumers ack a message only after its effect (the next state, the rollback, or
/// the final status) is durable, so every step and compensation runs at least once and may run
/// more than once (a replica dying mid-step, a lease lapsing during a store outage): they must
/// be idempotent, using [`SagaContext::idempotency_key`].
pub struct Orchestrator<S: Saga> {
    rt: Arc<Runtime<S>>,
}

impl<S: Saga> Clone for Orchestrator<S> {
    fn clone(&self) -> Self {
        Self {
            rt: Arc::clone(&self.rt),
        }
    }
}

impl<S: Saga> fmt::Debug for Orchestrator<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Orchestrator")
            .field("saga", &S::description().name)
            .field("transport", &self.rt.transport)
            .field("store", &self.rt.store)
            .field("config", &self.rt.config)
            .finish()
    }
}

impl<S: Saga> Orchestrator<S> {
    /// An orchestrator of `saga` over `transport` and `store` with `config` and no completion
    /// hook; [`Orchestrator::builder`] sets a hook.
    pub fn new(
        saga: Arc<S>,
        transport: Arc<dyn Transport>,
        store: Arc<dyn SagaStore>,
        config: OrchestratorConfig,
    ) -> Self {
        Self::builder(saga, transport, store).config(config).build()
    }

    /// A builder of an orchestrator of `saga` over `transport` and `store`: set the config
    /// and the completion hook, then [`build`](OrchestratorBuilder::build).
    pub fn builder(
        saga: Arc<S>,
        transport: Arc<dyn Transport>,
        store: Arc<dyn SagaStore>,
    ) -> OrchestratorBuilder<S> {
        OrchestratorBuilder::new(saga, transport, store)
    }

    pub(super) fn assemble(
        saga: Arc<S>,
        transport: Arc<dyn Transport>,
        store: Arc<dyn SagaStore>,
        config: OrchestratorConfig,
        hook: Option<CompletionHook<S>>,
    ) -> Self {
        let mut rt = Runtime::new(saga, transport, store, config);
        rt.hook = hook;
        Self { rt: Arc::new(rt) }
    }

    /// What its modes, consumers and sweeper share.
    pub(super) fn runtime(&self) -> &Arc<Runtime<S>> {
        &self.rt
    }

    /// The saga definition.
    pub fn saga(&self) -> &Arc<S> {
        &self.rt.saga
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn SagaStore> {
        &self.rt.store
    }

    /// The transport.
    pub fn transport(&self) -> &Arc<dyn Transport> {
        &self.rt.transport
    }

    /// A [`HealthMonitor`](crate::observe::HealthMonitor) of this orchestrator's store and
    /// transport; add the consumers with
    /// [`watch_consumers`](crate::observe::HealthMonitor::watch_consumers).
    pub fn health_monitor(&self) -> crate::observe::HealthMonitor {
        crate::observe::HealthMonitor::new(
            Arc::clone(&self.rt.store),
            Arc::clone(&self.rt.transport),
        )
    }

    /// The settings.
    pub fn config(&self) -> &OrchestratorConfig {
        &self.rt.config
    }

    /// Sync mode: runs the saga while the caller waits, recording every transition. On
    /// failure the compensations run inline (the default) or go to the rollback topic
    /// ([`Rollback::Queued`](super::Rollback::Queued)).
    ///
    /// The saga runs on a task of its own: a caller that goes away (a client that hung up)
    /// does not abandon it halfway; a replica that dies leaves it to the recovery sweeper of
    /// any replica, which finishes it once its lease lapsed.
    pub async fn run_sync(
        &self,
        cx: &SagaContext,
        input: S::Input,
    ) -> Result<S::Output, SagaError> {
        let (owned, span) = self.rt.observe.enter::<S>(cx, Mode::Sync, "sync");
        let cx = owned.clone();
        let this = self.clone();
        let work = async move { this.run_sync_here(&owned, input).await };
        detached(&cx, &span, work).instrument(span).await
    }

    async fn run_sync_here(
        &self,
        cx: &SagaContext,
        input: S::Input,
    ) -> Result<S::Output, SagaError> {
        let _in_flight = self.rt.observe.in_flight();
        let token = self.rt.token();
        let custody = self.rt.held(&token);
        let state = match self.begin(cx, input, Mode::Sync, None, custody).await? {
            Admitted::New { state, .. } => state,
            Admitted::Existing(record) => return self.await_existing(cx, *record).await,
        };
        let mut journal = Durable {
            rt: &self.rt,
            token,
            seq: 0,
            route: None,
            rollback: self.rt.config.sync_rollback,
            retried: Vec::new(),
        };
        drive(
            &*self.rt.saga,
            cx,
            &self.rt.policies,
            state,
            None,
            Start::FIRST,
            &mut journal,
        )
        .await
    }

    /// Async mode: records the saga and publishes its first message; returns once the broker
    /// confirmed it. Consumers ([`Self::serve`]) on any replica run the steps; the completion
    /// hook and the store receive the outcome. Starting an existing id with the same input
    /// starts nothing and returns [`Started::Existing`].
    pub async fn start(&self, cx: &SagaContext, input: S::Input) -> Result<Started, SagaError> {
        let (cx, span) = self.rt.observe.enter::<S>(cx, Mode::Async, "start");
        let admitted = self.admit(&cx, input, Mode::Async, None);
        if let Some(existing) = admitted.instrument(span).await? {
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
        let (cx, span) = self.rt.observe.enter::<S>(cx, Mode::Throttled, "throttled");
        self.throttled(&cx, input).instrument(span).await
    }

    /// [`Self::run_throttled`] with `cx` entered.
    async fn throttled(&self, cx: &SagaContext, input: S::Input) -> Result<S::Output, SagaError> {
        let route = match self.rt.config.throttled_routing {
            Routing::Shared => None,
            Routing::PodAffine => Some(self.rt.config.pod_id.clone()),
        };
        let _waiting =
            match &self.rt.waiting_slots {
                Some(slots) => Some(Arc::clone(slots).try_acquire_owned().map_err(|_| {
                    SagaError::Rejected {
                        saga: cx.saga().to_string(),
                        trace_id: cx.trace_id().to_string(),
                        reason: Rejection::QueueFull {
                            waiting: self.rt.config.max_waiting.unwrap_or_default(),
                        },
                    }
                })?),
                None => None,
            };
        let _waiting_gauge = self.rt.observe.waiting();
        if let Some(existing) = self.admit(cx, input, Mode::Throttled, route).await? {
            // Boxed: a repeated id is rare, and inline this future (which holds the record)
            // would size every waiting caller's future.
            return Box::pin(self.await_existing(cx, existing)).await;
        }
        // The store's watch subscribes before it reads, so an end that came first is seen.
        self.outcome(cx).await
    }

    /// Waits for the outcome of `cx.trace_id()` from any replica, until the context's deadline.
    pub async fn outcome(&self, cx: &SagaContext) -> Result<S::Output, SagaError> {
        self.rt.outcome(&cx.of_saga::<S>()).await
    }

    /// Starts this replica's part: the consumers of every topic of the saga (each step topic
    /// and the rollback topic; with pod-affine routing also this pod's topics), each with its
    /// configured concurrency, in the competing-consumer group named after the saga, and the
    /// recovery sweeper (unless [`OrchestratorConfig::sweep_interval`] is `None`). Keep the
    /// returned [`Consumers`] alive while the replica serves.
    pub async fn serve(&self) -> Result<Consumers, TransportError> {
        self.serve_layered(tower::layer::util::Identity::new())
            .await
    }

    /// [`Self::serve`], with every topic's consumer ([`ConsumerService`], a `tower::Service`
    /// of deliveries) wrapped in `layer`: a timeout, a concurrency limit, tracing or metrics
    /// layers. An error of the layered service nacks the delivery for redelivery after
    /// [`OrchestratorConfig::redelivery_delay`], with a log line naming the topic and trace id.
    pub async fn serve_layered<L>(&self, layer: L) -> Result<Consumers, TransportError>
    where
        L: Layer<ConsumerService<S>>,
        L::Service:
            tower::Service<Delivery, Response = Disposition> + Clone + Send + Sync + 'static,
        <L::Service as tower::Service<Delivery>>::Error: fmt::Display + Send,
        <L::Service as tower::Service<Delivery>>::Future: Send,
    {
        serve::serve(&self.rt, &layer).await
    }

    /// Records the saga at its first transition under `custody`; or finds the id taken.
    async fn begin(
        &self,
        cx: &SagaContext,
        input: S::Input,
        mode: Mode,
        route: Option<&str>,
        custody: Custody,
    ) -> Result<Admitted<S>, SagaError> {
        let desc = S::description();
        let input_json = serde_json::to_value(&input).map_err(|e| SagaError::InvalidState {
            saga: desc.name.to_string(),
            trace_id: cx.trace_id().to_string(),
            message: format!("the saga input does not serialize: {e}"),
        })?;
        let state = S::start(input);
        let payload = self.rt.encode(cx, &state, None, 0, route)?;
        let first = desc.steps.first().map(|s| s.name).unwrap_or_default();
        let record = SagaRecord::new(
            cx.trace_id(),
            desc.name,
            fingerprint(desc.name, &input_json),
            first,
            mode,
            payload.clone(),
            custody,
        );
        match self
            .rt
            .store
            .begin(record)
            .await
            .map_err(|e| store_error(cx, &e))?
        {
            Begin::Started => {
                self.rt.observe.metrics.started(mode);
                Ok(Admitted::New { state, payload })
            }
            Begin::Existing(record) => Ok(Admitted::Existing(Box::new(record))),
            Begin::Conflict(record) => Err(SagaError::IdTaken {
                saga: record.saga,
                trace_id: cx.trace_id().to_string(),
            }),
        }
    }

    /// Records the saga and publishes its first message, on a task of its own so a caller
    /// that goes away in between cannot leave a record with nothing queued (and if the
    /// replica dies in between, the sweeper publishes it). `Some(record)` when the id exists
    /// with the same input (nothing was published).
    async fn admit(
        &self,
        cx: &SagaContext,
        input: S::Input,
        mode: Mode,
        route: Option<String>,
    ) -> Result<Option<SagaRecord>, SagaError> {
        let owned = cx.of_saga::<S>().into_owned();
        let cx = &owned.clone();
        let this = self.clone();
        detached(cx, &tracing::Span::current(), async move {
            let token = this.rt.token();
            let custody = Custody::queued(&token, this.rt.config.requeue_after);
            let (state, payload) = match this.begin(&owned, input, mode, route.as_deref(), custody).await? {
                Admitted::New { state, payload } => (state, payload),
                Admitted::Existing(record) => return Ok(Some(*record)),
            };
            let cursor = S::cursor(&state);
            if let Err(error) = this.rt.publish(&owned, cursor, route.as_deref(), 0, payload, None).await {
                // Nothing was started: free the id so the caller can retry with it.
                if let Err(cleanup) = this.rt.store.remove(owned.trace_id()).await {
                    error!(trace_id = owned.trace_id(), cleanup = %Report(&cleanup), "cannot remove the record of a saga that did not start; the sweeper starts it");
                }
                return Err(SagaError::Transport {
                    trace_id: owned.trace_id().to_string(),
                    source: error,
                });
            }
            Ok(None)
        })
        .await
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

/// What [`Orchestrator::begin`] found.
enum Admitted<S: Saga> {
    /// The saga is recorded: run it from `state` (serialized as `payload`, sequence 0).
    New {
        state: S::State,
        payload: StoredState,
    },
    /// The id exists with the same input.
    Existing(Box<SagaRecord>),
}

/// What [`Orchestrator::start`] did.
#[derive(Clone, Debug, PartialEq)]
pub enum Started {
    /// The saga's first message is confirmed by the broker.
    New,
    /// A saga with this trace id and the same input exists already; nothing was started. Its
    /// current status is given.
    Existing(SagaStatus),
}

/// Spawns `work` on a task of its own, in `span` when it is recorded; the returned future waits
/// for it, and the task finishes even if the caller stops waiting.
///
/// It spawns when called, not when first awaited (an `async fn`), so the caller's future holds
/// the task's handle only: an `async fn` would keep room for all of `work` in the caller's
/// future after moving it to the task, doubling the memory of every saga in flight.
fn detached<'a, T, W>(
    cx: &'a SagaContext,
    span: &tracing::Span,
    work: W,
) -> impl std::future::Future<Output = Result<T, SagaError>> + use<'a, T, W>
where
    T: Send + 'static,
    W: std::future::Future<Output = Result<T, SagaError>> + Send + 'static,
{
    let task = if span.is_disabled() {
        tokio::spawn(work)
    } else {
        tokio::spawn(work.instrument(span.clone()))
    };
    async move {
        task.await.unwrap_or_else(|e| {
            Err(SagaError::Panicked {
                saga: cx.saga().to_string(),
                trace_id: cx.trace_id().to_string(),
                message: panic_message(e),
            })
        })
    }
}

/// What a failed task says: its panic message, or that it was cancelled.
fn panic_message(error: tokio::task::JoinError) -> String {
    match error.try_into_panic() {
        Ok(payload) => super::transition::panic_message(&*payload),
        Err(error) => error.to_string(),
    }
}
