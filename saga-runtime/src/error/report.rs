//! [`Report`]: an error with its whole `source()` chain on one line, for logs.

use std::error::Error;
use std::fmt;

/// Displays an error followed by each of its causes, `outer: cause: root cause`.
///
/// The errors of this crate keep their causes in [`Error::source`] rather than in their own
/// message (so a caller can walk and match them, and a gRPC status shows what failed without
/// the internal detail); logs use `Report` to show everything.
///
/// ```
/// use saga_runtime::error::Report;
/// let io = std::io::Error::other("connection refused");
/// assert_eq!(Report(&io).to_string(), "connection refused");
/// ```
#[derive(Clone, Copy)]
pub struct Report<'a>(pub &'a (dyn Error + 'static));

impl fmt::Display for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut cause = self.0.source();
        while let Some(error) = cause {
            write!(f, ": {error}")?;
            cause = error.source();
        }
        Ok(())
    }
}

impl fmt::Debug for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A shared, cloneable cause kept in an error's `source()` chain.
pub type Cause = std::sync::Arc<dyn Error + Send + Sync + 'static>;

/// Wraps any error as a [`Cause`].
pub fn cause(error: impl Error + Send + Sync + 'static) -> Cause {
    std::sync::Arc::new(error)
}
