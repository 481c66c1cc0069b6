//! What every mode of an [`Orchestrator`](super::Orchestrator) shares: the saga, the
//! transport, the store, the settings, and the operations the journals build on (encode a
//! state, publish it, record a transition with retries, wait for an outcome).
//!
//! This module imports nothing from the orchestrator, the consumer or the sweeper: they all
//! build on it.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use backon::{ExponentialBuilder, Retryable};
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use tokio::sync::Semaphore;
use tracing::{error, warn};

use super::completion::{Completion, CompletionHook};
use super::config::OrchestratorConfig;
use super::envelope::{Envelope, FORMAT_VERSION};
use super::progress::{FailedStep, Progress};
use super::topics::topic_for;
use super::transition::{Policies, panic_message};
use crate::error::Report;
use crate::error::SagaFailure;
use crate::observe::{Observer, TRACEPARENT_HEADER, outgoing_traceparent};
use crate::store::{
    Advance, Claim, Custody, Hold, Outcome, SagaStatus, SagaStore, StoreError, StoredState, Written,
};
use crate::transport::{MESSAGE_ID_HEADER, Message, TRACE_ID_HEADER, Transport, TransportError};
use crate::{Cursor, Saga, SagaContext, SagaError};

/// The shared state behind an orchestrator, its consumers and its sweeper.
pub(super) struct Runtime<S: Saga> {
    pub(super) saga: Arc<S>,
    pub(super) transport: Arc<dyn Transport>,
    pub(super) store: Arc<dyn SagaStore>,
    pub(super) config: OrchestratorConfig,
    pub(super) policies: Policies,
    pub(super) hook: Option<CompletionHook<S>>,
    pub(super) step_slots: Option<Arc<Semaphore>>,
    /// Throttled callers allowed to wait at once ([`OrchestratorConfig::max_waiting`]).
    pub(super) waiting_slots: Option<Arc<Semaphore>>,
    /// This replica's spans and metric handles of the saga.
    pub(super) observe: Arc<Observer>,
    /// Makes owner tokens unique per run: `{pod_id}/{boot}/{n}`.
    boot: u64,
    runs: AtomicU64,
}

impl<S: Saga> Runtime<S> {
    pub(super) fn new(
        saga: Arc<S>,
        transport: Arc<dyn Transport>,
        store: Arc<dyn SagaStore>,
        config: OrchestratorConfig,
    ) -> Self {
        let slots = |bound: Option<usize>| bound.map(|n| Arc::new(Semaphore::new(n.max(1))));
        let boot = crate::store::now_ms() ^ (u64::from(std::process::id()) << 40);
        if let Some(max) = config
            .max_requeue_after
            .filter(|max| *max < config.requeue_after)
        {
            warn!(
                saga = S::description().name,
                max_requeue_after = ?max,
                requeue_after = ?config.requeue_after,
                "max_requeue_after is below requeue_after; the sweeper re-publishes every requeue_after, without backoff"
            );
        }
        let observe = Observer::new(S::description(), &config.pod_id, transport.backend());
        Self {
            observe,
            saga,
            transport,
            store,
            policies: Policies {
                compensation: config.compensation_retry,
                skip_backoff: false,
            },
            hook: None,
            step_slots: slots(config.max_concurrent_steps),
            waiting_slots: slots(config.max_waiting),
            config,
            boot,
            runs: AtomicU64::new(0),
        }
    }

    /// A fresh owner token for one run (a sync call, a delivery, a recovery): unique across
    /// replicas, restarts and runs of one process, so custody is never confused between two
    /// runs, even of the same replica.
    pub(super) fn token(&self) -> Arc<str> {
        let run = self.runs.fetch_add(1, Ordering::Relaxed);
        format!("{}/{:x}/{run}", self.config.pod_id, self.boot).into()
    }

    /// Custody held by `token` for one lease.
    pub(super) fn held(&self, token: &str) -> Custody {
        Custody::held(token, self.config.lease)
    }

    /// The message (and stored state) for `state` at sequence number `seq`, as JSON.
    pub(super) fn encode(
        &self,
        cx: &SagaContext,
        state: &S::State,
        failure: Option<&FailedStep>,
        seq: u64,
        route: Option<&str>,
    ) -> Result<StoredState, SagaError> {
        let envelope = Envelope {
            v: FORMAT_VERSION,
            saga: S::description().name.to_string(),
            version: S::description().version,
            trace_id: cx.trace_id().to_string(),
            seq,
            metadata: cx.metadata().clone(),
            route: route.map(str::to_string),
            failure: failure.cloned(),
            state,
        };
        let mut json = serde_json::to_string(&envelope).map_err(|e| SagaError::InvalidState {
            saga: cx.saga().to_string(),
            trace_id: cx.trace_id().to_string(),
            message: format!("the saga state does not serialize: {e}"),
        })?;
        // The writer doubles its buffer as it fills (a 600-byte state in 1 KiB); the JSON is
        // kept while the saga is in flight (the message a broker may deliver again, the memory
        // store's record, sharing one buffer), so it is kept at its size.
        json.shrink_to_fit();
        Ok(StoredState::from(json))
    }

    /// The state a stuck saga's record keeps (its envelope at `seq`, the stuck transition's),
    /// so an operator can resume it; `None` for any other end.
    pub(super) fn kept_state(
        &self,
        cx: &SagaContext,
        done: &Progress<S>,
        seq: u64,
        route: Option<&str>,
    ) -> Option<StoredState> {
        match done {
            Progress::Stuck { state, failure, .. } => {
                self.encode(cx, state, failure.as_ref(), seq, route).ok()
            }
            _ => None,
        }
    }

    /// Publishes the encoded state at `seq` to the topic of the transition `cursor` names,
    /// with broker confirmation. Its message id is `{trace_id}/{seq}`, so brokers that
    /// deduplicate drop a second copy of it; a recovery's copy (`recovery`: the recovering
    /// run's owner token) gets `{trace_id}/{seq}/{token}`, so that a broker that deduplicates does
    /// not drop it in place of an original that was lost or dropped (the fence sorts out the
    /// copies).
    pub(super) async fn publish(
        &self,
        cx: &SagaContext,
        cursor: Cursor,
        route: Option<&str>,
        seq: u64,
        payload: StoredState,
        recovery: Option<&str>,
    ) -> Result<(), TransportError> {
        let Some(topic) = topic_for::<S>(cursor, route) else {
            return Err(TransportError::Publish {
                topic: format!("{}.(finished)", S::description().name),
                reason: format!(
                    "a finished saga [trace id {}] has no next topic",
                    cx.trace_id()
                ),
                source: None,
            });
        };
        let mut message = Message {
            payload: payload.bytes(),
            ..Message::default()
        };
        message
            .headers
            .insert(TRACE_ID_HEADER.to_string(), cx.trace_id().to_string());
        let id = match recovery {
            None => format!("{}/{seq}", cx.trace_id()),
            Some(token) => format!("{}/{seq}/{token}", cx.trace_id()),
        };
        message.headers.insert(MESSAGE_ID_HEADER.to_string(), id);
        if let Some(traceparent) = outgoing_traceparent(cx) {
            message
                .headers
                .insert(TRACEPARENT_HEADER.to_string(), traceparent);
        }
        let published = self.transport.publish(&topic, message).await;
        published.inspect_err(|_| self.observe.metrics.publish_errors.increment(1))
    }

    /// Records a transition, retrying store failures for about a lease. A retry that finds the
    /// record already moved past `advance.seq` by this very writer (the first try was applied
    /// but its answer lost) counts as done.
    pub(super) async fn advance(&self, advance: Advance<'_>) -> Result<Written, StoreError> {
        let mut tried = false;
        let store = &self.store;
        let attempt = || {
            let advance = advance.clone();
            let retried = std::mem::replace(&mut tried, true);
            async move {
                let written = store.advance(advance.clone()).await?;
                if written != Written::Done && retried {
                    let record = store.get(advance.trace_id).await?;
                    // Only this writer's own write counts: a final record is this writer's
                    // when it holds this writer's status (another run's end is not adopted).
                    let applied = record.is_some_and(|r| {
                        r.seq == advance.seq + 1
                            && if advance.status.is_final() {
                                r.status == advance.status
                            } else {
                                r.owner == advance.token
                            }
                    });
                    if applied {
                        return Ok(Written::Done);
                    }
                }
                Ok(written)
            }
        };
        self.with_store_retries(attempt).await
    }

    /// Runs a store operation, retrying its failures with backoff for about a lease.
    pub(super) async fn with_store_retries<T, F, Fut>(&self, operation: F) -> Result<T, StoreError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        let backoff = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(50))
            .with_max_delay(self.config.lease / 4)
            .with_total_delay(Some(self.config.lease))
            .without_max_times()
            .with_jitter();
        operation
            .retry(backoff)
            .notify(|error, after| warn!(error = %Report(error), ?after, "saga store operation failed; retrying"))
            .await
    }

    /// A delivery's claim of the saga at `seq` for the run `token`.
    pub(super) fn delivery_claim<'a>(
        &self,
        cx: &'a SagaContext,
        seq: u64,
        token: &'a str,
    ) -> Claim<'a> {
        Claim {
            trace_id: cx.trace_id(),
            saga: S::description().name,
            seq: Some(seq),
            token,
            lease: self.config.lease,
            recovery: false,
        }
    }

    /// The write that records `state` (encoded as `payload`, the next transition's message)
    /// by the run `token` at `seq`, in `custody` after it; abortable when an operator may
    /// still have the saga compensated.
    pub(super) fn running_advance<'a>(
        &self,
        cx: &'a SagaContext,
        seq: u64,
        token: &'a str,
        (state, payload): (&S::State, &'a StoredState),
        custody: Custody,
    ) -> Advance<'a> {
        Advance {
            trace_id: cx.trace_id(),
            saga: S::description().name,
            seq,
            token,
            status: running_status::<S>(state),
            state: Some(payload),
            custody,
            history: &[],
            abortable: Progress::<S>::abortable(state),
        }
    }

    /// The write that ends the saga with `result`, by the run `token` at `seq`.
    pub(super) fn final_advance<'a>(
        &self,
        cx: &'a SagaContext,
        seq: u64,
        token: &'a str,
        result: &Result<S::Output, SagaError>,
    ) -> Advance<'a> {
        Advance {
            trace_id: cx.trace_id(),
            saga: S::description().name,
            seq,
            token,
            status: final_status::<S>(result),
            state: None,
            custody: self.held(token),
            history: &[],
            abortable: false,
        }
    }

    /// Renews or hands over the custody `token` holds at `seq` (one try: the lease has
    /// slack for a lost renewal). The store's boxed write itself, not wrapped in a future of
    /// its own: every running saga's lease renewal awaits it.
    pub(super) fn hold<'a>(
        &'a self,
        cx: &'a SagaContext,
        seq: u64,
        token: &'a str,
        custody: Custody,
    ) -> BoxFuture<'a, Result<Written, StoreError>> {
        self.store.hold(self.hold_of(cx, seq, token, custody))
    }

    /// Hands a saga this run claimed but did not run (a recovery that publishes it again) to
    /// the broker, taking back the attempt the claim counted and counting one more requeue
    /// ([`SagaRecord::requeues`](crate::store::SagaRecord::requeues)) in the same write.
    pub(super) async fn hand_back(
        &self,
        cx: &SagaContext,
        seq: u64,
        token: &str,
        custody: Custody,
    ) -> Result<Written, StoreError> {
        let hold = Hold {
            refund_attempt: true,
            requeued: true,
            ..self.hold_of(cx, seq, token, custody)
        };
        self.store.hold(hold).await
    }

    /// The hold of the custody `token` holds at `seq`, handing it to `custody`.
    pub(super) fn hold_of<'a>(
        &self,
        cx: &'a SagaContext,
        seq: u64,
        token: &'a str,
        custody: Custody,
    ) -> Hold<'a> {
        Hold {
            trace_id: cx.trace_id(),
            saga: S::description().name,
            seq,
            token,
            custody,
            refund_attempt: false,
            requeued: false,
            history: &[],
        }
    }

    /// Renews the lease of `token` at `seq` every third of a lease; resolves when custody is
    /// lost (another run took the saga, or it ended).
    ///
    /// Every running saga holds this future beside its step, so it is kept small: not an
    /// `async fn` (which would hold its arguments twice), and it awaits the store's boxed
    /// write ([`Runtime::hold`]), made once per renewal.
    #[expect(
        clippy::manual_async_fn,
        reason = "an async fn would hold its arguments twice while the step runs"
    )]
    pub(super) fn renew_until_lost(
        &self,
        cx: &SagaContext,
        seq: u64,
        token: &str,
    ) -> impl Future<Output = ()> + Send {
        async move {
            let every = self.config.lease / 3;
            loop {
                tokio::time::sleep(every).await;
                match self.hold(cx, seq, token, self.held(token)).await {
                    Ok(Written::Done) => {}
                    Ok(refused) => {
                        warn!(
                            trace_id = cx.trace_id(),
                            ?refused,
                            "custody of the saga lost while running a transition"
                        );
                        return;
                    }
                    Err(error) => {
                        warn!(trace_id = cx.trace_id(), error = %Report(&error), "cannot renew the saga's lease; retrying");
                    }
                }
            }
        }
    }

    /// Waits for the outcome of `cx.trace_id()` from any replica, until the context's deadline
    /// (or [`OrchestratorConfig::default_wait`]).
    pub(super) async fn outcome(&self, cx: &SagaContext) -> Result<S::Output, SagaError> {
        let deadline = cx
            .deadline()
            .unwrap_or_else(|| Instant::now() + self.config.default_wait);
        let watch = self.store.watch(cx.trace_id());
        match tokio::time::timeout_at(deadline.into(), watch).await {
            Ok(Ok(outcome)) => decode_outcome::<S>(cx, outcome),
            Ok(Err(e)) => Err(store_error(cx, &e)),
            Err(_) => Err(SagaError::DeadlineExceeded {
                saga: cx.saga().to_string(),
                trace_id: cx.trace_id().to_string(),
            }),
        }
    }

    /// Calls the completion hook, if any; a panic in it is caught and logged.
    pub(super) async fn notify(&self, cx: &SagaContext, result: Result<S::Output, SagaError>) {
        let Some(hook) = &self.hook else { return };
        let call = hook(Completion {
            trace_id: cx.trace_id().to_string(),
            result,
        });
        if let Err(panic) = AssertUnwindSafe(call).catch_unwind().await {
            error!(trace_id = cx.trace_id(), panic = %panic_message(&*panic), "the completion hook panicked");
        }
    }
}

/// The status the store records for a running state.
pub(super) fn running_status<S: Saga>(state: &S::State) -> SagaStatus {
    let steps = S::description().steps;
    let name = |step: usize| {
        steps
            .get(step)
            .map(|s| s.name.to_string())
            .unwrap_or_default()
    };
    match S::cursor(state) {
        Cursor::Compensate(step) => SagaStatus::Compensating {
            step,
            name: name(step),
        },
        Cursor::Step(step) => SagaStatus::Running {
            step,
            name: name(step),
        },
        // Never recorded: an ended saga gets its final status instead.
        Cursor::Completed | Cursor::Compensated => SagaStatus::Running {
            step: steps.len(),
            name: String::new(),
        },
    }
}

/// The status the store records for an ended saga.
pub(super) fn final_status<S: Saga>(result: &Result<S::Output, SagaError>) -> SagaStatus {
    match result {
        Ok(output) => match serde_json::to_value(output) {
            Ok(output) => SagaStatus::Completed { output },
            Err(e) => SagaStatus::Failed {
                error: SagaFailure::InvalidState {
                    message: format!("the saga's output does not serialize: {e}"),
                },
            },
        },
        Err(error) => SagaStatus::Failed {
            error: error
                .failure()
                .unwrap_or_else(|| SagaFailure::InvalidState {
                    message: error.to_string(),
                }),
        },
    }
}

/// A store failure as the caller sees it.
pub(super) fn store_error(cx: &SagaContext, error: &StoreError) -> SagaError {
    SagaError::Store {
        trace_id: cx.trace_id().to_string(),
        source: error.clone(),
    }
}

/// The typed output of a stored outcome.
pub(super) fn decode_outcome<S: Saga>(
    cx: &SagaContext,
    outcome: Outcome,
) -> Result<S::Output, SagaError> {
    let output = outcome.map_err(|failure| SagaError::ended(cx.saga(), cx.trace_id(), failure))?;
    serde_json::from_value(output).map_err(|e| SagaError::InvalidState {
        saga: cx.saga().to_string(),
        trace_id: cx.trace_id().to_string(),
        message: format!("the stored output does not decode: {e}"),
    })
}
