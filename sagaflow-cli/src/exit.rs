//! What went wrong, and the exit code scripts rely on.

use std::fmt;
use std::process::ExitCode;

use tonic::{Code, Status};

/// The documented exit codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Exit {
    /// 1: bad arguments, or a request the API rejected as invalid; any other error.
    Usage = 1,
    /// 3: no such saga, or no such saga definition.
    NotFound = 3,
    /// 4: refused (not stuck, finished, past its pivot, changed meanwhile).
    Refused = 4,
    /// 5: the orchestrator is unreachable, or its store or broker is unavailable.
    Unavailable = 5,
    /// 6: missing or wrong token.
    Unauthenticated = 6,
}

/// A failed command: its message (printed to stderr) and exit code.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) exit: Exit,
    pub(crate) message: String,
}

impl Failure {
    pub(crate) fn new(exit: Exit, message: impl Into<String>) -> Self {
        Self {
            exit,
            message: message.into(),
        }
    }

    /// The failure a status from the admin API at `addr` means.
    pub(crate) fn from_status(status: &Status, addr: &str) -> Self {
        let message = status.message();
        match status.code() {
            Code::NotFound => Self::new(Exit::NotFound, message),
            Code::FailedPrecondition | Code::Aborted => {
                Self::new(Exit::Refused, format!("refused: {message}"))
            }
            Code::Unauthenticated | Code::PermissionDenied => Self::new(
                Exit::Unauthenticated,
                format!("not authenticated by {addr}: {message}"),
            ),
            Code::Unimplemented => Self::new(
                Exit::Unavailable,
                format!(
                    "{addr} does not serve the sagaflow admin API: is it the orchestrator's --admin-addr?"
                ),
            ),
            Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled => Self::new(
                Exit::Unavailable,
                format!("the orchestrator at {addr} is unavailable: {message}"),
            ),
            code => Self::new(Exit::Usage, format!("{code:?}: {message}")),
        }
    }
}

/// The orchestrator cannot be reached at `addr`.
pub(crate) fn unreachable(addr: &str, cause: &str) -> Failure {
    Failure::new(
        Exit::Unavailable,
        format!(
            "cannot reach the sagaflow admin API at {addr} ({cause}).\n\
             Is the orchestrator running with its admin API on? The booking example serves it with\n  \
             cargo run --example booking -- --admin-addr 127.0.0.1:10003\n\
             Point the CLI at another address with --addr or SAGAFLOW_ADMIN_ADDR."
        ),
    )
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> Self {
        ExitCode::from(exit as u8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_codes_map_to_the_documented_exit_codes() {
        let exit = |code| Failure::from_status(&Status::new(code, "m"), "http://x").exit;
        assert_eq!(exit(Code::NotFound), Exit::NotFound);
        assert_eq!(exit(Code::FailedPrecondition), Exit::Refused);
        assert_eq!(exit(Code::Aborted), Exit::Refused);
        assert_eq!(exit(Code::Unavailable), Exit::Unavailable);
        assert_eq!(exit(Code::Unimplemented), Exit::Unavailable);
        assert_eq!(exit(Code::Unauthenticated), Exit::Unauthenticated);
        assert_eq!(exit(Code::InvalidArgument), Exit::Usage);
        assert_eq!(exit(Code::Internal), Exit::Usage);
    }
}
