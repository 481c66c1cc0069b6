//! The span tree of a saga, captured by a custom `tracing_subscriber::Layer` recording every
//! `sagaflow` span with its fields and its parent: the saga's spans and its step spans, on two
//! replicas sharing one transport (memory, then NATS JetStream with Redis) where replica A
//! runs the first step and replica B the second, all with one W3C trace id carried by the
//! `traceparent` header through the broker.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::fmt;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use sagaflow::engine::{Consumers, Orchestrator, OrchestratorConfig};
use sagaflow::observe::{TRACEPARENT_HEADER, TraceParent};
use sagaflow::transport::{Delivery, Disposition, Headers};
use sagaflow::{Saga, SagaContext, SagaError, StepResult, saga};
use serde::{Deserialize, Serialize};
use tracing::Subscriber;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::{Context as LayerContext, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

use crate::common::backends::{Backend, Backends};

// ---------------------------------------------------------------------------------------------
// The capture layer.

/// One captured span: its name, its fields (recorded at creation and later) and its parent.
#[derive(Clone, Debug, Default)]
struct Captured {
    name: &'static str,
    fields: BTreeMap<String, String>,
    parent: Option<usize>,
}

impl Captured {
    fn field(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }
}

/// Every `sagaflow` span of the process, in creation order.
#[derive(Default)]
struct Spans(Mutex<Vec<Captured>>);

/// Where a live span's record is in [`Spans`] (span ids are reused, indexes are not).
struct Index(usize);

struct FieldVisitor<'a>(&'a mut BTreeMap<String, String>);

impl Visit for FieldVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_string(), value.to_string());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().to_string(), format!("{value:?}"));
    }
}

struct Capture(Arc<Spans>);

impl<S> Layer<S> for Capture
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: LayerContext<'_, S>) {
        if attrs.metadata().target() != "sagaflow" {
            return;
        }
        let Some(span) = ctx.span(id) else { return };
        let parent = span
            .scope()
            .skip(1)
            .find_map(|ancestor| ancestor.extensions().get::<Index>().map(|i| i.0));
        let mut captured = Captured {
            name: attrs.metadata().name(),
            parent,
            ..Captured::default()
        };
        attrs.record(&mut FieldVisitor(&mut captured.fields));
        let mut spans = self.0.0.lock().unwrap();
        spans.push(captured);
        span.extensions_mut().insert(Index(spans.len() - 1));
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: LayerContext<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let Some(index) = span.extensions().get::<Index>().map(|i| i.0) else {
            return;
        };
        let mut spans = self.0.0.lock().unwrap();
        values.record(&mut FieldVisitor(&mut spans[index].fields));
    }
}

/// The process-wide capture (one global subscriber for every test of this binary).
fn captured() -> &'static Arc<Spans> {
    static SPANS: OnceLock<Arc<Spans>> = OnceLock::new();
    SPANS.get_or_init(|| {
        let spans = Arc::new(Spans::default());
        let subscriber = tracing_subscriber::registry().with(Capture(Arc::clone(&spans)));
        tracing::subscriber::set_global_default(subscriber).expect("no other global subscriber");
        spans
    })
}

/// The captured spans of saga `trace_id` (and their parents' indexes into the result).
fn spans_of(trace_id: &str) -> Vec<(usize, Captured)> {
    let spans = captured().0.lock().unwrap();
    spans
        .iter()
        .cloned()
        .enumerate()
        .filter(|(_, span)| span.field("trace_id") == Some(trace_id))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The saga and the replicas.

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Parcel {
    weight: u32,
}

struct ParcelSaga;

#[saga(name = "SpanParcel")]
impl ParcelSaga {
    #[step(compensate = unpack)]
    async fn pack(&self, _cx: &SagaContext, parcel: &Parcel) -> StepResult<u32> {
        tracing::info!(target: "sagaflow-test", "packing");
        Ok(parcel.weight)
    }
    async fn unpack(&self, _cx: &SagaContext, _pack: &u32) -> StepResult<()> {
        Ok(())
    }

    #[step(compensate = recall)]
    async fn ship(&self, _cx: &SagaContext, parcel: &Parcel, pack: &u32) -> StepResult<String> {
        assert_eq!(parcel.weight, *pack);
        Ok(format!("shipped {pack} kg"))
    }
    async fn recall(&self, _cx: &SagaContext, _ship: &String) -> StepResult<()> {
        Ok(())
    }
}

/// A consumer layer that runs only the deliveries of one topic (nacking the others back to
/// the broker for the other replica) and records the headers of what it ran.
#[derive(Clone)]
struct OnlyTopic {
    topic: Arc<str>,
    ran: Arc<Mutex<Vec<Headers>>>,
}

impl<Svc> tower::Layer<Svc> for OnlyTopic {
    type Service = OnlyTopicService<Svc>;
    fn layer(&self, inner: Svc) -> Self::Service {
        OnlyTopicService {
            inner,
            only: self.clone(),
        }
    }
}

#[derive(Clone)]
struct OnlyTopicService<Svc> {
    inner: Svc,
    only: OnlyTopic,
}

impl<Svc> tower::Service<Delivery> for OnlyTopicService<Svc>
where
    Svc: tower::Service<Delivery, Response = Disposition, Error = Infallible>,
    Svc::Future: Send + 'static,
{
    type Response = Disposition;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Disposition, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, delivery: Delivery) -> Self::Future {
        if delivery.topic != *self.only.topic {
            return Box::pin(async {
                Ok(Disposition::Nack {
                    delay: Some(Duration::from_millis(20)),
                })
            });
        }
        self.only.ran.lock().unwrap().push(delivery.headers.clone());
        Box::pin(self.inner.call(delivery))
    }
}

struct Replica {
    orchestrator: Orchestrator<ParcelSaga>,
    consumers: Consumers,
    ran: Arc<Mutex<Vec<Headers>>>,
}

/// A replica named `pod` on the shared backends that runs only the step `step`.
async fn replica(backends: &Backends, pod: &str, step: usize) -> Replica {
    let config = OrchestratorConfig {
        pod_id: pod.to_string(),
        redelivery_delay: Duration::from_millis(20),
        ..OrchestratorConfig::default()
    };
    let orchestrator = Orchestrator::builder(
        Arc::new(ParcelSaga),
        Arc::clone(&backends.transport),
        Arc::clone(&backends.store),
    )
    .config(config)
    .build();
    let only = OnlyTopic {
        topic: Arc::from(sagaflow::engine::step_topic::<ParcelSaga>(step, None).unwrap()),
        ran: Arc::default(),
    };
    let ran = Arc::clone(&only.ran);
    let consumers = orchestrator
        .serve_layered(only)
        .await
        .expect("consumers start");
    Replica {
        orchestrator,
        consumers,
        ran,
    }
}

/// Starts a saga on A (`traceparent` in its metadata if given), lets A run `pack` and B
/// `ship`, and waits for its outcome.
async fn run_across(
    backends: &Backends,
    trace_id: &str,
    traceparent: Option<&str>,
) -> (Replica, Replica) {
    let a = replica(backends, "replica-a", 0).await;
    let b = replica(backends, "replica-b", 1).await;
    let mut metadata = BTreeMap::new();
    if let Some(traceparent) = traceparent {
        metadata.insert(TRACEPARENT_HEADER.to_string(), traceparent.to_string());
    }
    let cx = SagaContext::for_saga::<ParcelSaga>(trace_id)
        .with_metadata(metadata)
        .with_deadline(Some(Instant::now() + Duration::from_secs(30)));
    a.orchestrator
        .start(&cx, Parcel { weight: 3 })
        .await
        .expect("the saga starts on A");
    let outcome: Result<String, SagaError> = b.orchestrator.outcome(&cx).await;
    assert_eq!(outcome.expect("the saga completes"), "shipped 3 kg");
    (a, b)
}

/// The one span named `name` of `spans` whose fields include every `(field, value)`.
fn find<'s>(
    spans: &'s [(usize, Captured)],
    name: &str,
    fields: &[(&str, &str)],
) -> &'s (usize, Captured) {
    let found: Vec<_> = spans
        .iter()
        .filter(|(_, span)| {
            span.name == name && fields.iter().all(|(k, v)| span.field(k) == Some(*v))
        })
        .collect();
    assert_eq!(
        found.len(),
        1,
        "expected one `{name}` span with {fields:?}, found {}: {spans:#?}",
        found.len()
    );
    found[0]
}

/// Checks the tree of a saga run across A and B: A's start span, A's delivery span with the
/// `pack` transition as its child, B's delivery span with `ship` as its child, every one with
/// the W3C trace id `w3c`; and the `traceparent` B received through the broker.
fn check_tree(trace_id: &str, w3c: &str, b: &Replica) {
    let spans = spans_of(trace_id);
    let saga = ParcelSaga::description().name;
    let start = find(
        &spans,
        "saga",
        &[("entry", "start"), ("replica", "replica-a")],
    );
    assert_eq!(start.1.field("saga"), Some(saga));
    assert_eq!(start.1.field("mode"), Some("async"));
    let pack = find(&spans, "transition", &[("step", "pack")]);
    let ship = find(&spans, "transition", &[("step", "ship")]);
    for (transition, replica) in [(pack, "replica-a"), (ship, "replica-b")] {
        let fields = &transition.1;
        assert_eq!(fields.field("replica"), Some(replica), "{fields:?}");
        assert_eq!(fields.field("attempt"), Some("1"), "{fields:?}");
        assert_eq!(fields.field("compensation"), Some("false"), "{fields:?}");
        assert_eq!(fields.field("outcome"), Some("ok"), "{fields:?}");
        assert_eq!(fields.field("saga"), Some(saga), "{fields:?}");
        // Its parent is the saga span of the delivery on the same replica.
        let parent = fields.parent.expect("a transition has a parent span");
        let delivery = &captured().0.lock().unwrap()[parent];
        assert_eq!(delivery.name, "saga");
        assert_eq!(delivery.field("entry"), Some("delivery"));
        assert_eq!(delivery.field("replica"), Some(replica));
        assert_eq!(delivery.field("mode"), Some("async"));
        assert_eq!(delivery.field("trace_id"), Some(trace_id));
        assert_eq!(delivery.field("w3c_trace_id"), Some(w3c), "{delivery:?}");
    }
    assert_eq!(start.1.field("w3c_trace_id"), Some(w3c));
    // Every saga span of this trace id, on both replicas, is in the one W3C trace.
    for (_, span) in spans.iter().filter(|(_, s)| s.name == "saga") {
        assert_eq!(span.field("w3c_trace_id"), Some(w3c), "{span:?}");
    }
    // What crossed the broker to B carried the trace.
    let ran = b.ran.lock().unwrap();
    let headers = ran
        .iter()
        .find(|h| h.get("x-request-id").map(String::as_str) == Some(trace_id))
        .expect("B ran a delivery of the saga");
    let traceparent = headers
        .get(TRACEPARENT_HEADER)
        .and_then(|value| TraceParent::parse(value))
        .expect("the message B got carries a traceparent header");
    assert_eq!(traceparent.trace_id_hex(), w3c);
}

async fn across_two_replicas(backend: Backend) {
    captured();
    let backends = Backends::connect(backend, "spans").await;

    // A caller's trace continues.
    let given = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let trace_id = format!("{}-given", backends.prefix);
    let (a, b) = run_across(&backends, &trace_id, Some(given)).await;
    check_tree(&trace_id, "0af7651916cd43dd8448eb211c80319c", &b);
    a.consumers.shutdown().await;
    b.consumers.shutdown().await;

    // Without one, a trace begins with the saga and spans both replicas all the same.
    let trace_id = format!("{}-fresh", backends.prefix);
    let (a, b) = run_across(&backends, &trace_id, None).await;
    let spans = spans_of(&trace_id);
    let start = find(&spans, "saga", &[("entry", "start")]);
    let w3c = start
        .1
        .field("w3c_trace_id")
        .expect("a trace id was made")
        .to_string();
    assert_eq!(w3c.len(), 32);
    assert_ne!(w3c, "0".repeat(32));
    check_tree(&trace_id, &w3c, &b);
    a.consumers.shutdown().await;
    b.consumers.shutdown().await;
    backends.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saga_across_two_replicas_is_one_trace_on_memory() {
    across_two_replicas(Backend::Memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saga_across_two_replicas_is_one_trace_on_nats() {
    across_two_replicas(Backend::Nats).await;
}

/// Sync mode: one saga span, a transition span per step under it, and a retried step shows
/// its second attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_saga_has_its_steps_under_its_span() {
    captured();
    let backends = Backends::connect(Backend::Memory, "spans-sync").await;
    let config = OrchestratorConfig {
        pod_id: "replica-s".to_string(),
        ..OrchestratorConfig::default()
    };
    let orchestrator = Orchestrator::builder(
        Arc::new(ParcelSaga),
        Arc::clone(&backends.transport),
        Arc::clone(&backends.store),
    )
    .config(config)
    .build();
    let trace_id = format!("{}-sync", backends.prefix);
    let cx = SagaContext::for_saga::<ParcelSaga>(trace_id.as_str());
    let shipped = orchestrator
        .run_sync(&cx, Parcel { weight: 5 })
        .await
        .expect("completes");
    assert_eq!(shipped, "shipped 5 kg");
    let spans = spans_of(&trace_id);
    let (root, saga_span) = find(&spans, "saga", &[("entry", "sync")]);
    assert_eq!(saga_span.field("replica"), Some("replica-s"));
    assert_eq!(saga_span.field("mode"), Some("sync"));
    for step in ["pack", "ship"] {
        let (_, transition) = find(&spans, "transition", &[("step", step)]);
        assert_eq!(
            transition.parent,
            Some(*root),
            "{step} is a child of the saga span"
        );
        assert_eq!(transition.field("replica"), Some("replica-s"));
    }
    backends.cleanup().await;
}
