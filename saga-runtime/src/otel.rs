//! OpenTelemetry export (feature `otel`, off by default): the engine's `saga` and `transition`
//! spans (see [`observe`](crate::observe)) sent over OTLP/gRPC to a collector (Jaeger, Tempo,
//! the OpenTelemetry Collector...), each saga's spans on every replica in one trace.
//!
//! ```no_run
//! # async fn run() -> Result<(), saga_runtime::otel::OtelError> {
//! use saga_runtime::otel; // `sagaflow::otel` through the facade
//! // In main, inside the Tokio runtime (the OTLP client is a tonic channel), instead of
//! // installing a fmt subscriber:
//! let _otel = otel::init("http://127.0.0.1:4317", "booking")?;
//! // ... serve; dropping the guard at the end flushes the spans still buffered.
//! # Ok(())
//! # }
//! ```
//!
//! With the feature on, a saga span continues the trace of the W3C `traceparent` it arrived
//! with (a gRPC request's, or a broker message's header), and what the engine sends on (broker
//! messages, [`outgoing_request`](crate::grpc::outgoing_request)) carries the current span as
//! the parent. Applications that build their own subscriber use [`tracer_provider`] and
//! `tracing_opentelemetry::layer().with_tracer(...)` themselves.

use opentelemetry::trace::{SpanContext, TraceContextExt, TraceState, TracerProvider as _};
use opentelemetry::{Context, SpanId, TraceFlags, TraceId};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::observe::TraceParent;

/// Why OpenTelemetry could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OtelError {
    /// The OTLP exporter could not be built (a malformed endpoint, say).
    #[error(
        "cannot build the OTLP exporter for {endpoint}: {source}; check the endpoint (e.g. http://127.0.0.1:4317)"
    )]
    Exporter {
        /// The endpoint given.
        endpoint: String,
        /// The exporter's error.
        source: opentelemetry_otlp::ExporterBuildError,
    },
    /// A global tracing subscriber is installed already.
    #[error(
        "cannot install the tracing subscriber: {0}; call `otel::init` once, before any other subscriber, or use `otel::tracer_provider` with your own"
    )]
    Subscriber(#[from] tracing_subscriber::util::TryInitError),
}

/// A tracer provider exporting spans in batches over OTLP/gRPC to `endpoint`, as the service
/// `service_name`. Call it inside a Tokio runtime. Shut it down (or drop the [`OtelGuard`] of
/// [`init`]) to flush the last spans.
pub fn tracer_provider(endpoint: &str, service_name: &str) -> Result<SdkTracerProvider, OtelError> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .build()
        .map_err(|source| OtelError::Exporter {
            endpoint: endpoint.to_string(),
            source,
        })?;
    let resource = Resource::builder()
        .with_service_name(service_name.to_string())
        .build();
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build())
}

/// Installs the global tracing subscriber: log lines to stdout (filtered by `RUST_LOG`,
/// `info` when unset) and every enabled span exported over OTLP/gRPC to `endpoint` (e.g.
/// `http://127.0.0.1:4317`) as the service `service_name`. Call it once, inside the Tokio
/// runtime, before anything logs. Keep the guard until the process ends.
pub fn init(endpoint: &str, service_name: &str) -> Result<OtelGuard, OtelError> {
    let provider = tracer_provider(endpoint, service_name)?;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::registry()
        .with(filter)
        .with(tracing_subscriber::fmt::layer())
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("sagaflow")))
        .try_init()?;
    Ok(OtelGuard { provider })
}

/// Keeps the span export of [`init`] running; dropping it flushes the spans still buffered
/// and stops the export.
#[derive(Debug)]
#[must_use = "dropping the guard stops the span export at once"]
pub struct OtelGuard {
    provider: SdkTracerProvider,
}

impl Drop for OtelGuard {
    fn drop(&mut self) {
        if let Err(error) = self.provider.shutdown() {
            eprintln!("sagaflow: flushing the OpenTelemetry spans failed: {error}");
        }
    }
}

/// Makes `parent` (a remote span) the OpenTelemetry parent of `span`. Nothing happens when no
/// OpenTelemetry layer is installed or the span already started.
pub(crate) fn set_remote_parent(span: &Span, parent: &TraceParent) {
    let context = SpanContext::new(
        TraceId::from_bytes(parent.trace_id().to_be_bytes()),
        SpanId::from_bytes(parent.parent_id().to_be_bytes()),
        TraceFlags::new(parent.flags()),
        true,
        TraceState::default(),
    );
    let _ = span.set_parent(Context::new().with_remote_span_context(context));
}

/// The W3C context of `span` as OpenTelemetry tracks it; `None` when no OpenTelemetry layer
/// is installed.
pub(crate) fn context_of(span: &Span) -> Option<TraceParent> {
    let context = span.context();
    let span_context = context.span().span_context().clone();
    if !span_context.is_valid() {
        return None;
    }
    TraceParent::new(
        u128::from_be_bytes(span_context.trace_id().to_bytes()),
        u64::from_be_bytes(span_context.span_id().to_bytes()),
        span_context.trace_flags().to_u8(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A span given a remote parent joins the parent's trace in OpenTelemetry, and what it
    /// sends on names the span itself as the parent.
    #[test]
    fn a_saga_span_continues_the_remote_trace() {
        let provider = SdkTracerProvider::builder().build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        tracing::subscriber::with_default(subscriber, || {
            let parent =
                TraceParent::parse("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
                    .expect("valid");
            let span = tracing::info_span!("saga");
            set_remote_parent(&span, &parent);
            let sent = context_of(&span).expect("OpenTelemetry tracks the span");
            assert_eq!(sent.trace_id(), parent.trace_id());
            assert_ne!(sent.parent_id(), parent.parent_id(), "the span's own id");
            assert!(sent.sampled());
            let child = span.in_scope(|| context_of(&tracing::info_span!("transition")));
            assert_eq!(child.map(|c| c.trace_id()), Some(parent.trace_id()));
        });
        let _ = provider.shutdown();
    }

    #[test]
    fn without_an_opentelemetry_layer_nothing_is_tracked() {
        let subscriber = tracing_subscriber::registry();
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("saga");
            assert_eq!(context_of(&span), None);
        });
    }
}
