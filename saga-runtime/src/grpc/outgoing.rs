//! Outgoing calls made by steps carry the trace id and the step's idempotency key.
//!
//! Use [`outgoing_request`] (or [`set_saga_metadata`] on a request built otherwise) for every
//! upstream call a step or compensation makes. There is deliberately no client interceptor:
//! one tonic client is shared by every saga running in the process, while the headers belong
//! to one transition of one saga, which only the [`SagaContext`] in hand knows.

use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::{Request, Response};

use super::{IDEMPOTENCY_KEY_HEADER, REQUEST_ID_HEADER};
use crate::SagaContext;
use crate::observe::TRACEPARENT_HEADER;

/// A request carrying `message`, `x-request-id: {trace id}` and
/// `x-idempotency-key: {cx.idempotency_key()}` (the same on every attempt and every replica,
/// so the upstream service can deduplicate at-least-once deliveries).
///
/// The caller's deadline is not forwarded: the saga outlives a caller that gave up. Set a
/// per-call timeout with [`Request::set_timeout`] if the step needs one.
pub fn outgoing_request<T>(cx: &SagaContext, message: T) -> Request<T> {
    let mut request = Request::new(message);
    set_saga_metadata(cx, request.metadata_mut());
    request
}

/// A response carrying `message` and the `x-request-id: {trace_id}` header, so a client that
/// let the server generate the id ([`TraceIdPolicy::Generate`](super::TraceIdPolicy)) learns
/// it. Error statuses made from a saga error carry it already.
pub fn response_with_trace_id<T>(trace_id: &str, message: T) -> Response<T> {
    let mut response = Response::new(message);
    response
        .metadata_mut()
        .insert(REQUEST_ID_HEADER, header_value(trace_id));
    response
}

/// Sets (replacing any previous value) the `x-request-id` and `x-idempotency-key` headers of
/// `metadata` from `cx`, and the W3C `traceparent` of the saga's trace (the current span's
/// with the `otel` feature), so the upstream service's spans join the saga's trace.
///
/// Header values must be visible ASCII: bytes outside `!`..=`~`, and `%` itself, are
/// percent-encoded, so any trace id yields a valid, stable header and this never fails.
pub fn set_saga_metadata(cx: &SagaContext, metadata: &mut MetadataMap) {
    metadata.insert(REQUEST_ID_HEADER, header_value(cx.trace_id()));
    metadata.insert(IDEMPOTENCY_KEY_HEADER, header_value(&cx.idempotency_key()));
    if let Some(traceparent) = crate::observe::outgoing_traceparent(cx)
        .filter(|value| crate::observe::TraceParent::parse(value).is_some())
    {
        metadata.insert(TRACEPARENT_HEADER, header_value(&traceparent));
    }
}

fn header_value(text: &str) -> MetadataValue<tonic::metadata::Ascii> {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        if (b'!'..=b'~').contains(&byte) && byte != b'%' {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    // Only visible ASCII remains, which is always a valid header value; the fallback is
    // unreachable but keeps this function free of panics.
    MetadataValue::try_from(encoded.as_str()).unwrap_or_else(|_| MetadataValue::from_static(""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odd_trace_ids_are_percent_encoded() {
        assert_eq!(header_value("abc-1/x").to_str().ok(), Some("abc-1/x"));
        assert_eq!(header_value("a b%é").to_str().ok(), Some("a%20b%25%C3%A9"));
    }
}
