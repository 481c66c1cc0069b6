//! The `saga` and `transition` spans (see the module docs of [`observe`](super)), built only
//! when a subscriber enables them: a disabled span costs a callsite check, no field is
//! formatted and no trace id parsed.

use tracing::Span;
use tracing::field::Empty;

use super::TraceParent;
use super::traceparent::TRACEPARENT_HEADER;
use crate::SagaContext;
use crate::store::Mode;
use crate::transport::Delivery;

/// The `saga` span of a saga entering here in `mode` by `entry`.
pub(super) fn saga_span(
    cx: &SagaContext,
    saga: &'static str,
    replica: &str,
    mode: Mode,
    entry: &'static str,
) -> Span {
    tracing::info_span!(
        target: "sagaflow",
        "saga",
        trace_id = cx.trace_id(),
        saga,
        mode = mode.as_str(),
        replica,
        entry,
        w3c_trace_id = Empty,
    )
}

/// The `saga` span of a delivery of one of `saga`'s messages on `replica`; it continues the
/// trace of the message's `traceparent` header.
pub(crate) fn delivery_span(delivery: &Delivery, saga: &'static str, replica: &str) -> Span {
    let span = tracing::info_span!(
        target: "sagaflow",
        "saga",
        trace_id = delivery.trace_id(),
        saga,
        mode = Empty,
        replica,
        entry = "delivery",
        topic = delivery.topic.as_str(),
        delivery = delivery.delivery_count,
        w3c_trace_id = Empty,
    );
    if !span.is_disabled()
        && let Some(parent) = delivery
            .headers
            .get(TRACEPARENT_HEADER)
            .and_then(|value| TraceParent::parse(value))
    {
        link(&span, &parent);
    }
    span
}

/// The `transition` span of the step or compensation `cx` is positioned at.
pub(crate) fn transition_span(cx: &SagaContext) -> Span {
    let replica = cx.observed().map(|observed| observed.observer.replica());
    tracing::info_span!(
        target: "sagaflow",
        "transition",
        trace_id = cx.trace_id(),
        saga = cx.saga(),
        step = cx.step(),
        attempt = cx.attempt(),
        compensation = cx.is_compensating(),
        replica,
        outcome = Empty,
    )
}

/// Makes `span` part of the trace `parent` belongs to: its W3C trace id as a field and, with
/// the `otel` feature, `parent` as its OpenTelemetry parent.
pub(super) fn link(span: &Span, parent: &TraceParent) {
    if span.is_disabled() {
        return;
    }
    record_trace(span, parent);
    #[cfg(feature = "otel")]
    crate::otel::set_remote_parent(span, parent);
}

/// Records the W3C trace id of `parent` on `span`.
pub(super) fn record_trace(span: &Span, parent: &TraceParent) {
    if !span.is_disabled() {
        span.record("w3c_trace_id", parent.trace_id_hex());
    }
}

/// The trace context of `span` as OpenTelemetry tracks it (`otel` feature), if any.
pub(super) fn context_of(span: &Span) -> Option<TraceParent> {
    #[cfg(feature = "otel")]
    {
        if !span.is_disabled() {
            return crate::otel::context_of(span);
        }
    }
    let _ = span;
    None
}
