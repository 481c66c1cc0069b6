//! Observability: spans per saga and per transition, the W3C trace context carried through
//! the broker, metrics, and a health monitor of the store, the broker and the consumers.
//!
//! # Spans
//! Every span has the target `sagaflow`, so `RUST_LOG=sagaflow=info` (or a tool's filter on the
//! fields below) selects them.
//! - `saga`: one per entry of a saga into this replica: a sync run, an async start, a throttled
//!   call (with its wait), a delivery of one of its messages (`entry = "delivery"`, with the
//!   `topic` and the `delivery` count), a recovery by the sweeper. Fields: `trace_id` (the saga
//!   id, `x-request-id`), `saga`, `mode`, `replica`
//!   ([`OrchestratorConfig::pod_id`](crate::engine::OrchestratorConfig::pod_id)), `entry`,
//!   `w3c_trace_id` (the W3C trace id, the same on every replica).
//! - `transition`: one per attempt of a step or compensation, inside the `saga` span. Fields:
//!   `trace_id`, `saga`, `step`, `attempt`, `compensation` (`true` for a compensation),
//!   `replica`, and `outcome` (`ok`, `retryable`, `fatal`) once it ran.
//!
//! Spans cost nothing but a check while no subscriber enables the `sagaflow` target at `INFO`.
//!
//! # Trace context
//! A saga carries a W3C [`TraceParent`] in its metadata under [`TRACEPARENT_HEADER`]: the
//! caller's (a gRPC request's `traceparent` header, or a new trace's when it has none, lands in
//! the metadata through [`saga_context`](crate::grpc::saga_context)), or one made when the saga
//! begins with its `saga` span recorded (a saga started without one while nobody records
//! spans carries none, and pays nothing for it). The
//! metadata travels in every message and stored state, every broker message also carries it
//! as a `traceparent` header, and [`outgoing_request`](crate::grpc::outgoing_request) hands it
//! to upstream services. With the `otel` feature, spans join that trace in OpenTelemetry
//! (`crate::otel`).
//!
//! # Metrics and health
//! [`metrics`] lists every metric; [`health`] watches the store, the broker and the consumers.

mod delivery;
pub mod health;
pub mod metrics;
mod spans;
pub mod traceparent;

use std::sync::Arc;

pub use health::{Health, HealthMonitor, HealthWatch, Probe};
pub use traceparent::{InvalidTraceParent, TRACEPARENT_HEADER, TraceParent};

pub(crate) use delivery::ObservedHandler;
pub(crate) use spans::{delivery_span, transition_span};

use self::metrics::{Ending, GaugeGuard, SagaMetrics};
use crate::store::Mode;
use crate::{Saga, SagaContext, SagaDescription, SagaError};

/// What one orchestrator observes with: its replica id and the metric handles of its saga.
pub(crate) struct Observer {
    replica: Arc<str>,
    pub(crate) metrics: SagaMetrics,
}

/// Only the replica: a context printed with `{:?}` stays short.
impl std::fmt::Debug for Observer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Observer")
            .field("replica", &self.replica)
            .finish_non_exhaustive()
    }
}

/// A saga context's link to the orchestrator observing it, and the mode it runs in (when
/// known).
#[derive(Clone, Debug)]
pub(crate) struct Observed {
    pub(crate) observer: Arc<Observer>,
    pub(crate) mode: Option<Mode>,
}

impl Observer {
    /// The observer of saga `saga` on replica `replica` over the broker `broker`; registers its
    /// metric handles with the current recorder.
    pub(crate) fn new(
        saga: &'static SagaDescription,
        replica: &str,
        broker: &'static str,
    ) -> Arc<Self> {
        Arc::new(Self {
            replica: Arc::from(replica),
            metrics: SagaMetrics::new(saga, broker),
        })
    }

    /// This replica's id.
    pub(crate) fn replica(&self) -> &str {
        &self.replica
    }

    /// `cx` observed by this observer in `mode` (once a delivery or a recovery learnt it from
    /// the store). Records the mode on the current span, the delivery's or recovery's `saga`
    /// span.
    pub(crate) fn attach(self: &Arc<Self>, cx: SagaContext, mode: Option<Mode>) -> SagaContext {
        if let Some(mode) = mode {
            tracing::Span::current().record("mode", mode.as_str());
        }
        cx.with_observed(Observed {
            observer: Arc::clone(self),
            mode,
        })
    }

    /// A saga of `S` entering the engine here in `mode` (`entry` says how): its context under
    /// `S`'s name, observed, with a trace context (the caller's; or a new trace when its span
    /// is recorded), and its `saga` span.
    pub(crate) fn enter<S: Saga>(
        self: &Arc<Self>,
        cx: &SagaContext,
        mode: Mode,
        entry: &'static str,
    ) -> (SagaContext, tracing::Span) {
        let incoming = traceparent_of(cx);
        let span = spans::saga_span(cx, S::description().name, &self.replica, mode, entry);
        let cx = cx.of_saga::<S>().into_owned();
        let cx = match incoming {
            Some(parent) => {
                spans::link(&span, &parent);
                cx
            }
            // Nobody records this saga's spans: no trace to carry (a gRPC request always
            // brings one, see `grpc::saga_context`), and nothing is paid for one.
            None if span.is_disabled() => cx,
            None => {
                let parent = spans::context_of(&span).unwrap_or_else(TraceParent::generate);
                spans::record_trace(&span, &parent);
                let mut metadata = cx.metadata().clone();
                metadata.insert(TRACEPARENT_HEADER, parent.to_string());
                cx.with_metadata(metadata)
            }
        };
        let observed = Observed {
            observer: Arc::clone(self),
            mode: Some(mode),
        };
        (cx.with_observed(observed), span)
    }

    /// One more throttled caller waiting until the guard drops.
    pub(crate) fn waiting(&self) -> GaugeGuard<'_> {
        GaugeGuard::new(Some(&self.metrics.waiting))
    }

    /// One more delivery waiting for a step slot until the guard drops.
    pub(crate) fn queued(&self) -> GaugeGuard<'_> {
        GaugeGuard::new(Some(&self.metrics.queue_depth))
    }

    /// One more saga driven here until the guard drops.
    pub(crate) fn in_flight(&self) -> GaugeGuard<'_> {
        GaugeGuard::new(Some(&self.metrics.in_flight))
    }
}

/// The trace context in `cx`'s metadata, if it holds a valid one.
pub(crate) fn traceparent_of(cx: &SagaContext) -> Option<TraceParent> {
    cx.metadata()
        .get(TRACEPARENT_HEADER)
        .and_then(|value| TraceParent::parse(value))
}

/// The `traceparent` to send on with a message or an upstream call made in `cx`: the current
/// span's context when OpenTelemetry tracks it (`otel` feature), else the saga's own.
pub(crate) fn outgoing_traceparent(cx: &SagaContext) -> Option<String> {
    spans::context_of(&tracing::Span::current())
        .map(|parent| parent.to_string())
        .or_else(|| cx.metadata().get(TRACEPARENT_HEADER).cloned())
}

/// Counts the end of the saga of `cx` whose final status this run just recorded.
pub(crate) fn ended<T>(cx: &SagaContext, result: &Result<T, SagaError>) {
    let Some(observed) = cx.observed() else {
        return;
    };
    let ending = match result {
        Ok(_) => Ending::Completed,
        Err(SagaError::Compensated { .. }) => Ending::Compensated,
        Err(SagaError::Stuck { .. }) => Ending::Stuck,
        Err(_) => Ending::Invalid,
    };
    observed.observer.metrics.ended(observed.mode, ending);
}

/// One attempt of a transition, observed: its `transition` span, its duration and retry
/// counted under its step once it ran.
#[derive(Debug)]
pub(crate) struct TransitionProbe<'a> {
    span: tracing::Span,
    began: std::time::Instant,
    metrics: Option<&'a self::metrics::TransitionMetrics>,
}

impl<'a> TransitionProbe<'a> {
    /// Starts observing the attempt `cx` is positioned at (the transition `cursor` names).
    pub(crate) fn start(cx: &'a SagaContext, cursor: crate::Cursor) -> Self {
        let metrics = match (cx.observed(), cursor) {
            (Some(observed), crate::Cursor::Step(step)) => {
                observed.observer.metrics.transition(step, false)
            }
            (Some(observed), crate::Cursor::Compensate(step)) => {
                observed.observer.metrics.transition(step, true)
            }
            _ => None,
        };
        if cx.attempt() > 1
            && let Some(metrics) = metrics
        {
            metrics.retries.increment(1);
        }
        Self {
            span: transition_span(cx),
            began: std::time::Instant::now(),
            metrics,
        }
    }

    /// The attempt `work`, run in the `transition` span (when a subscriber records it). Not an
    /// `async fn`, which would hold `work` twice (as its argument and as what it awaits).
    pub(crate) fn run<F: std::future::Future>(
        &self,
        work: F,
    ) -> futures_util::future::Either<F, tracing::instrument::Instrumented<F>> {
        if self.span.is_disabled() {
            futures_util::future::Either::Left(work)
        } else {
            futures_util::future::Either::Right(tracing::Instrument::instrument(
                work,
                self.span.clone(),
            ))
        }
    }

    /// Records the attempt's duration and outcome.
    pub(crate) fn finish<T>(self, result: &Result<T, crate::StepError>) {
        if let Some(metrics) = self.metrics {
            metrics.duration.record(self.began.elapsed().as_secs_f64());
        }
        if !self.span.is_disabled() {
            let outcome = match result {
                Ok(_) => "ok",
                Err(error) if error.is_retryable() => "retryable",
                Err(_) => "fatal",
            };
            self.span.record("outcome", outcome);
        }
    }
}

/// The `saga` span of a recovery by the sweeper of `saga` on `observer`'s replica.
pub(crate) fn recovery_span(
    observer: &Observer,
    saga: &'static str,
    trace_id: &str,
) -> tracing::Span {
    tracing::info_span!(
        target: "sagaflow",
        "saga",
        trace_id,
        saga,
        mode = tracing::field::Empty,
        replica = observer.replica(),
        entry = "recovery",
        w3c_trace_id = tracing::field::Empty,
    )
}
