//! [`StoreError`]: a saga store failure, its [`StoreErrorKind`] and its cause.

use std::fmt;

use crate::error::{Cause, cause};

/// What kind of store failure happened: what a caller can match on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StoreErrorKind {
    /// The store could not be reached (connection refused, authentication failed, no
    /// connection within the connect timeout).
    Connect,
    /// An operation failed on an established connection (connection lost, server error).
    Unavailable,
    /// An operation got no answer within the response timeout.
    Timeout,
    /// A key holds data that is not a saga record: an operator must delete or repair it.
    Corrupt,
    /// The store's address or settings are invalid (a malformed URL, say).
    InvalidConfig,
    /// The store was dropped or shut down while the operation waited.
    Closed,
}

impl StoreErrorKind {
    /// True when the same operation may succeed later (a lost connection, a timeout), false
    /// when someone must change something (corrupt data, a bad URL).
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            StoreErrorKind::Connect | StoreErrorKind::Unavailable | StoreErrorKind::Timeout
        )
    }
}

impl StoreErrorKind {
    /// A short name for metric labels: `connect`, `unavailable`, `timeout`, `corrupt`,
    /// `invalid_config`, `closed`.
    pub fn label(self) -> &'static str {
        match self {
            StoreErrorKind::Connect => "connect",
            StoreErrorKind::Unavailable => "unavailable",
            StoreErrorKind::Timeout => "timeout",
            StoreErrorKind::Corrupt => "corrupt",
            StoreErrorKind::InvalidConfig => "invalid_config",
            StoreErrorKind::Closed => "closed",
        }
    }
}

impl fmt::Display for StoreErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StoreErrorKind::Connect => "the saga store is unreachable",
            StoreErrorKind::Unavailable => "the saga store failed",
            StoreErrorKind::Timeout => "the saga store did not answer in time",
            StoreErrorKind::Corrupt => "the saga store holds a corrupt record",
            StoreErrorKind::InvalidConfig => "the saga store is misconfigured",
            StoreErrorKind::Closed => "the saga store is closed",
        })
    }
}

/// A store failure: its [kind](StoreErrorKind), the backend, what the store was doing and
/// where (address, key, trace id; never a password), and the underlying error as its
/// [`source`](std::error::Error::source). Cheap to clone.
#[derive(Debug, Clone, thiserror::Error)]
#[error("saga store ({backend}): {message}")]
pub struct StoreError {
    backend: &'static str,
    kind: StoreErrorKind,
    message: String,
    #[source]
    source: Option<Cause>,
}

impl StoreError {
    /// A failure of `kind` in `backend` ("memory", "redis"), described by `message`.
    ///
    /// Counts one `sagaflow_store_errors_total{backend, kind}` (see
    /// [`observe::metrics`](crate::observe::metrics)): backends build one per failure.
    pub fn new(backend: &'static str, kind: StoreErrorKind, message: impl Into<String>) -> Self {
        crate::observe::metrics::store_error(backend, kind.label());
        Self {
            backend,
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// The same failure, caused by `source`.
    pub fn caused_by(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(cause(source));
        self
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> StoreErrorKind {
        self.kind
    }

    /// The backend that failed: "memory" or "redis".
    pub fn backend(&self) -> &'static str {
        self.backend
    }

    /// What the store was doing and where, without the cause.
    pub fn message(&self) -> &str {
        &self.message
    }
}

/// Two store errors are equal when they have the same kind, backend and message and causes
/// that read the same (the causes' types are not compared).
impl PartialEq for StoreError {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind
            && self.backend == other.backend
            && self.message == other.message
            && self.source.as_ref().map(ToString::to_string)
                == other.source.as_ref().map(ToString::to_string)
    }
}
