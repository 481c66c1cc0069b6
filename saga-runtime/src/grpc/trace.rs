//! The trace id of an incoming request: [`TraceIdPolicy`], [`saga_context`].

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use tonic::metadata::{KeyAndValueRef, MetadataMap};
use tonic::{Request, Status};

use super::REQUEST_ID_HEADER;
use crate::SagaContext;

/// The longest trace id accepted, in bytes. Longer ids are refused as invalid arguments:
/// the id becomes a store key and travels in every message of the saga.
pub const MAX_TRACE_ID_LEN: usize = 256;

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
    /// Errors (`InvalidArgument`, message naming the header): missing or blank under
    /// [`TraceIdPolicy::Require`]; not visible ASCII, or longer than [`MAX_TRACE_ID_LEN`],
    /// under either policy (a bad id is never replaced silently).
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
        if value.len() > MAX_TRACE_ID_LEN {
            return Err(Status::invalid_argument(format!(
                "the {REQUEST_ID_HEADER} header is {} bytes long; at most {MAX_TRACE_ID_LEN} are accepted",
                value.len()
            )));
        }
        match (value.is_empty(), self) {
            (false, _) => Ok(value.to_owned()),
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

/// The [`SagaContext`] of an incoming request for saga `saga`: the trace id per `policy`, the
/// request's ASCII metadata (without the `grpc-*` transport headers) as the context
/// metadata, and the caller's deadline from its `grpc-timeout`, if any.
///
/// The deadline is how long the caller waits (a throttled wait honours it); it is never
/// forwarded to upstream calls, because the saga goes on after the caller gives up.
pub fn saga_context<T>(
    saga: &'static str,
    request: &Request<T>,
    policy: TraceIdPolicy,
) -> Result<SagaContext, Status> {
    let metadata = request.metadata();
    let trace_id = policy.trace_id_from_metadata(metadata)?;
    let mut forwarded = BTreeMap::new();
    for entry in metadata.iter() {
        if let KeyAndValueRef::Ascii(key, value) = entry {
            let key = key.as_str();
            if key.starts_with("grpc-") {
                continue;
            }
            if let Ok(value) = value.to_str() {
                forwarded.insert(key.to_owned(), value.to_owned());
            }
        }
    }
    forwarded.insert(REQUEST_ID_HEADER.to_owned(), trace_id.clone());
    let deadline = metadata
        .get("grpc-timeout")
        .and_then(|value| value.to_str().ok())
        .and_then(parse_grpc_timeout)
        .and_then(|timeout| Instant::now().checked_add(timeout));
    Ok(SagaContext::new(saga, trace_id)
        .with_metadata(forwarded)
        .with_deadline(deadline))
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
