//! The trace id of an incoming request and what of its metadata travels with the saga:
//! [`TraceIdPolicy`], [`RequestPolicy`], [`saga_context`].
//!
//! A trace id becomes a store key, a message id and a log field, so it is validated, never
//! cleaned up silently: 1 to [`MAX_TRACE_ID_LEN`] bytes of ASCII letters, digits and
//! `. _ : + = / -` ([`validate_trace_id`]). Request metadata is copied into the saga's messages
//! (and dead letters), so only an allowlist travels: the trace id, W3C `traceparent` and
//! `tracestate`, the idempotency key, and the headers the user names; `authorization`,
//! cookies and every other header stay out of the broker unless named.

use std::time::{Duration, Instant};

use tonic::metadata::{KeyAndValueRef, MetadataMap};
use tonic::{Request, Status};

use super::REQUEST_ID_HEADER;
use crate::observe::{TRACEPARENT_HEADER, TraceParent};
use crate::{Metadata, SagaContext};

/// The longest trace id accepted, in bytes. Longer ids are refused as invalid arguments:
/// the id becomes a store key and travels in every message of the saga.
pub const MAX_TRACE_ID_LEN: usize = 256;

/// The punctuation a trace id may hold besides ASCII letters and digits.
pub const TRACE_ID_PUNCTUATION: &str = "._:+=/-";

/// The request headers that travel with every saga ([`RequestPolicy::default`]).
pub const FORWARDED_BY_DEFAULT: [&str; 4] = [
    super::REQUEST_ID_HEADER,
    "traceparent",
    "tracestate",
    super::IDEMPOTENCY_KEY_HEADER,
];

/// Checks a trace id: 1 to [`MAX_TRACE_ID_LEN`] bytes, each an ASCII letter or digit or one of
/// [`TRACE_ID_PUNCTUATION`]. The error says which rule the id breaks (and where), for an
/// `InvalidArgument` status.
pub fn validate_trace_id(id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err(format!("the {REQUEST_ID_HEADER} header is empty"));
    }
    if id.len() > MAX_TRACE_ID_LEN {
        return Err(format!(
            "the {REQUEST_ID_HEADER} header is {} bytes long; at most {MAX_TRACE_ID_LEN} are accepted",
            id.len()
        ));
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || TRACE_ID_PUNCTUATION.contains(c);
    match id.char_indices().find(|(_, c)| !allowed(*c)) {
        None => Ok(()),
        Some((at, c)) => Err(format!(
            "the {REQUEST_ID_HEADER} header may only hold ASCII letters, digits and `{TRACE_ID_PUNCTUATION}`; it has {c:?} at byte {at}"
        )),
    }
}

/// What to do when a request has no usable `x-request-id`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum TraceIdPolicy {
    /// A missing, empty or blank `x-request-id` is refused with `InvalidArgument` naming the
    /// header (the Go framework's behaviour). The default: the id is what makes a retried
    /// request join its first run instead of starting a second saga.
    #[default]
    Require,
    /// A missing, empty or blank `x-request-id` gets a fresh random id
    /// ([`generate_trace_id`]). Retries of such a request cannot be deduplicated.
    Generate,
}

impl TraceIdPolicy {
    /// The trace id of `request`, read from its `x-request-id` header (surrounding
    /// whitespace trimmed).
    ///
    /// Errors (`InvalidArgument`, message naming the header and the rule): missing or blank
    /// under [`TraceIdPolicy::Require`]; not a valid trace id ([`validate_trace_id`]) under
    /// either policy (a bad id is never replaced silently).
    pub fn trace_id<T>(self, request: &Request<T>) -> Result<String, Status> {
        self.trace_id_from_metadata(request.metadata())
    }

    /// Like [`TraceIdPolicy::trace_id`], from bare metadata.
    pub fn trace_id_from_metadata(self, metadata: &MetadataMap) -> Result<String, Status> {
        let value = match metadata.get(REQUEST_ID_HEADER) {
            Some(value) => value.to_str().map_err(|_| {
                Status::invalid_argument(format!(
                    "the {REQUEST_ID_HEADER} header must be visible ASCII"
                ))
            })?,
            None => "",
        };
        let value = value.trim();
        match (value.is_empty(), self) {
            (false, _) => {
                validate_trace_id(value).map_err(Status::invalid_argument)?;
                Ok(value.to_owned())
            }
            (true, TraceIdPolicy::Generate) => Ok(generate_trace_id()),
            (true, TraceIdPolicy::Require) => Err(Status::invalid_argument(format!(
                "missing {REQUEST_ID_HEADER} header: every call needs a non-empty {REQUEST_ID_HEADER} (the trace id and saga id)"
            ))),
        }
    }
}

/// A fresh random trace id: a version 4 UUID in its hyphenated lowercase form.
pub fn generate_trace_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// How a service reads an incoming request into a saga: the trace id policy and the
/// allowlist of request headers that travel with the saga (into its messages, its dead
/// letters and its steps' context). `From<TraceIdPolicy>` gives the default allowlist.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestPolicy {
    /// What to do without a usable `x-request-id`.
    pub trace_id: TraceIdPolicy,
    /// Headers forwarded besides [`FORWARDED_BY_DEFAULT`], lowercase (gRPC metadata keys are).
    pub forward: Vec<String>,
}

impl RequestPolicy {
    /// Also forwards the header `name` (case-insensitive) with every saga. Naming
    /// `authorization` or `cookie` here is the only way they ever reach the broker.
    pub fn forward(mut self, name: &str) -> Self {
        self.forward.push(name.to_ascii_lowercase());
        self
    }

    /// True when the header `key` travels with the saga.
    pub fn forwards(&self, key: &str) -> bool {
        FORWARDED_BY_DEFAULT.contains(&key) || self.forward.iter().any(|name| name == key)
    }
}

impl From<TraceIdPolicy> for RequestPolicy {
    fn from(trace_id: TraceIdPolicy) -> Self {
        Self {
            trace_id,
            forward: Vec::new(),
        }
    }
}

/// The [`SagaContext`] of an incoming request for saga `saga`: the trace id per `policy`, the
/// allowlisted request headers ([`RequestPolicy::forwards`]) as the context metadata, and the
/// caller's deadline from its `grpc-timeout`, if any (a tenth, at most 200 ms, earlier, so
/// the handler answers before tonic cancels the call). `policy` is a [`RequestPolicy`] or a
/// bare [`TraceIdPolicy`] (the default allowlist). The metadata always holds a W3C
/// `traceparent`: the caller's when it sent a valid one, else a new trace's, so the saga's
/// spans on every replica share one trace id.
///
/// The deadline is how long the caller waits (a throttled wait honours it); it is never
/// forwarded to upstream calls, because the saga goes on after the caller gives up.
pub fn saga_context<T>(
    saga: &'static str,
    request: &Request<T>,
    policy: impl Into<RequestPolicy>,
) -> Result<SagaContext, Status> {
    let policy = policy.into();
    let metadata = request.metadata();
    let trace_id = policy.trace_id.trace_id_from_metadata(metadata)?;
    let mut forwarded = Metadata::new();
    for entry in metadata.iter() {
        if let KeyAndValueRef::Ascii(key, value) = entry {
            let key = key.as_str();
            if !policy.forwards(key) {
                continue;
            }
            if let Ok(value) = value.to_str() {
                forwarded.insert(key.to_owned(), value.to_owned());
            }
        }
    }
    forwarded.insert(REQUEST_ID_HEADER.to_owned(), trace_id.clone());
    // The W3C trace context: the caller's when valid, else a trace begins with this request
    // (and a `tracestate` of another trace is dropped with the invalid parent).
    let incoming = metadata
        .get(TRACEPARENT_HEADER)
        .and_then(|value| value.to_str().ok())
        .and_then(TraceParent::parse);
    if incoming.is_none() {
        forwarded.remove("tracestate");
    }
    let traceparent = incoming.unwrap_or_else(TraceParent::generate);
    forwarded.insert(TRACEPARENT_HEADER.to_owned(), traceparent.to_string());
    let deadline = metadata
        .get("grpc-timeout")
        .and_then(|value| value.to_str().ok())
        .and_then(parse_grpc_timeout)
        .and_then(|timeout| Instant::now().checked_add(answer_before(timeout)));
    Ok(SagaContext::new(saga, trace_id)
        .with_metadata(forwarded)
        .with_deadline(deadline))
}

/// How long the saga side may wait within a caller's `grpc-timeout`: a tenth (at most 200 ms)
/// less, so the handler answers `DeadlineExceeded` with the trace id before tonic's own
/// timeout cancels the call with a bare `Cancelled`.
fn answer_before(timeout: Duration) -> Duration {
    timeout.saturating_sub((timeout / 10).min(Duration::from_millis(200)))
}

/// Parses a `grpc-timeout` value: at most 8 ASCII digits and a unit (`H`, `M`, `S`, `m`, `u`,
/// `n`). Anything else is `None` (no deadline), never a panic.
fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    let unit = *value.as_bytes().last()?;
    if !unit.is_ascii() {
        return None;
    }
    // The last byte is ASCII, so it is a whole char and the split is on a boundary.
    let digits = value.get(..value.len() - 1)?;
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let amount: u64 = digits.parse().ok()?;
    Some(match unit {
        b'H' => Duration::from_secs(amount * 3600),
        b'M' => Duration::from_secs(amount * 60),
        b'S' => Duration::from_secs(amount),
        b'm' => Duration::from_millis(amount),
        b'u' => Duration::from_micros(amount),
        b'n' => Duration::from_nanos(amount),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request_with_id(id: &str) -> Request<()> {
        let mut request = Request::new(());
        if let Ok(value) = id.parse() {
            request.metadata_mut().insert(REQUEST_ID_HEADER, value);
        }
        request
    }

    fn refusal(id: &str) -> String {
        let status = TraceIdPolicy::Require
            .trace_id(&request_with_id(id))
            .expect_err(id);
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{id:?}");
        status.message().to_string()
    }

    #[test]
    fn trace_ids_are_validated_naming_the_rule() {
        for good in [
            "a",
            "7c9e6679-7425-40de-944b-e07fc1f90ae7",
            "tenant:order/42_v1.0+x=",
            &"x".repeat(MAX_TRACE_ID_LEN),
        ] {
            let id = TraceIdPolicy::Require
                .trace_id(&request_with_id(good))
                .expect(good);
            assert_eq!(id, good);
        }
        assert!(refusal("").contains("missing"));
        assert!(refusal(&"x".repeat(10 * 1024)).contains("at most 256"));
        for bad in ["a*b", "orders.>", "two words", "tab\there", "semi;colon"] {
            let message = refusal(bad);
            assert!(
                message.contains("may only hold") && message.contains("at byte"),
                "{bad:?}: {message}"
            );
        }
        // Control characters and non-ASCII cannot be header values at all, or are refused.
        assert!(
            request_with_id("bell\u{7}")
                .metadata()
                .get(REQUEST_ID_HEADER)
                .is_none()
        );
        let mut unicode = Request::new(());
        unicode.metadata_mut().insert(
            REQUEST_ID_HEADER,
            tonic::metadata::MetadataValue::try_from("café".as_bytes()).expect("opaque bytes"),
        );
        let status = TraceIdPolicy::Require
            .trace_id(&unicode)
            .expect_err("unicode");
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert!(
            validate_trace_id("café")
                .expect_err("unicode")
                .contains("'é'")
        );
        assert!(
            validate_trace_id("a\u{1}b")
                .expect_err("control")
                .contains("at byte 1")
        );
        // Generate never replaces a bad id silently.
        assert!(
            TraceIdPolicy::Generate
                .trace_id(&request_with_id("a b"))
                .is_err()
        );
    }

    #[test]
    fn only_allowlisted_headers_travel_with_the_saga() {
        let mut request = request_with_id("t-1");
        for (key, value) in [
            ("authorization", "Bearer secret"),
            ("cookie", "session=secret"),
            (
                "traceparent",
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            ),
            ("x-tenant", "acme"),
        ] {
            request
                .metadata_mut()
                .insert(key, value.parse().expect("ascii"));
        }
        let cx = saga_context("booking", &request, TraceIdPolicy::Require).expect("context");
        let keys: Vec<_> = cx.metadata().keys().map(String::as_str).collect();
        assert_eq!(keys, ["traceparent", "x-request-id"]);
        let policy = RequestPolicy::default()
            .forward("X-Tenant")
            .forward("authorization");
        let cx = saga_context("booking", &request, policy).expect("context");
        let keys: Vec<_> = cx.metadata().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            ["authorization", "traceparent", "x-request-id", "x-tenant"]
        );
    }

    #[test]
    fn a_request_without_a_valid_traceparent_begins_a_trace() {
        let traceparent = |cx: &SagaContext| {
            cx.metadata()
                .get(TRACEPARENT_HEADER)
                .and_then(|value| TraceParent::parse(value))
                .expect("a valid traceparent")
        };
        let plain = saga_context("booking", &request_with_id("t-2"), TraceIdPolicy::Require)
            .expect("context");
        let again = saga_context("booking", &request_with_id("t-2"), TraceIdPolicy::Require)
            .expect("context");
        assert_ne!(
            traceparent(&plain).trace_id(),
            traceparent(&again).trace_id()
        );

        let mut request = request_with_id("t-3");
        for (key, value) in [("traceparent", "00-bad"), ("tracestate", "vendor=1")] {
            request
                .metadata_mut()
                .insert(key, value.parse().expect("ascii"));
        }
        let cx = saga_context("booking", &request, TraceIdPolicy::Require).expect("context");
        assert_ne!(traceparent(&cx).to_string(), "00-bad");
        assert!(
            !cx.metadata().contains_key("tracestate"),
            "state of another trace"
        );
    }

    #[test]
    fn grpc_timeout_units_parse_and_junk_is_ignored() {
        assert_eq!(parse_grpc_timeout("5S"), Some(Duration::from_secs(5)));
        assert_eq!(parse_grpc_timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse_grpc_timeout("2H"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_grpc_timeout("123456789S"), None);
        assert_eq!(parse_grpc_timeout("S"), None);
        assert_eq!(parse_grpc_timeout(""), None);
        assert_eq!(parse_grpc_timeout("5x"), None);
        assert_eq!(parse_grpc_timeout("-5S"), None);
        assert_eq!(parse_grpc_timeout("5é"), None);
        assert_eq!(parse_grpc_timeout("éS"), None);
    }
}
