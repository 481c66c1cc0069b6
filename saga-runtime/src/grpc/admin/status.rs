//! [`AdminError`] -> `tonic::Status`.

use tonic::Status;

use crate::admin::AdminError;
use crate::error::Report;

/// The status an admin API call answers for `error`, by a code scripts can rely on:
///
/// | error | code |
/// |---|---|
/// | `NotFound`, `UnknownSaga`, `DeadLetterNotFound` | `NOT_FOUND` |
/// | `NotStuck`, `Finished`, `PastPivot`, `StateUnreadable` | `FAILED_PRECONDITION` |
/// | `Conflict` | `ABORTED` (read the saga again and retry) |
/// | `Store`, `Transport` | `UNAVAILABLE` |
///
/// The message is the error's own (it names the saga and what to do next). For `Store` and
/// `Transport` it says only which backend failed, never an internal address or cause: the
/// whole cause chain is logged at `error` level instead.
pub fn status_from_admin_error(error: &AdminError) -> Status {
    let message = error.to_string();
    match error {
        AdminError::NotFound { .. }
        | AdminError::UnknownSaga { .. }
        | AdminError::DeadLetterNotFound { .. } => Status::not_found(message),
        AdminError::NotStuck { .. }
        | AdminError::Finished { .. }
        | AdminError::PastPivot { .. }
        | AdminError::StateUnreadable { .. } => Status::failed_precondition(message),
        AdminError::Conflict { .. } => Status::aborted(message),
        AdminError::Store(store) => {
            tracing::error!(error = %Report(error), "admin API request failed");
            Status::unavailable(format!(
                "{}; the orchestrator's log has the cause",
                store.kind()
            ))
        }
        AdminError::Transport(_) => {
            tracing::error!(error = %Report(error), "admin API request failed");
            Status::unavailable(format!("{message}; the orchestrator's log has the cause"))
        }
    }
}

#[cfg(test)]
mod tests {
    use tonic::Code;

    use super::*;
    use crate::store::{StatusKind, StoreError, StoreErrorKind};

    fn code(error: AdminError) -> Code {
        status_from_admin_error(&error).code()
    }

    #[test]
    fn every_admin_error_maps_to_its_documented_code() {
        let id = || "t1".to_string();
        assert_eq!(
            code(AdminError::NotFound { trace_id: id() }),
            Code::NotFound
        );
        let unknown = AdminError::UnknownSaga {
            saga: "Nope".into(),
            known: vec!["Booking".into()],
        };
        assert_eq!(code(unknown), Code::NotFound);
        let letter = AdminError::DeadLetterNotFound {
            message_id: "t1/3".into(),
        };
        assert_eq!(code(letter), Code::NotFound);
        let not_stuck = AdminError::NotStuck {
            trace_id: id(),
            status: StatusKind::Running,
        };
        assert_eq!(code(not_stuck), Code::FailedPrecondition);
        let finished = AdminError::Finished {
            trace_id: id(),
            status: StatusKind::Completed,
        };
        assert_eq!(code(finished), Code::FailedPrecondition);
        let past_pivot = AdminError::PastPivot {
            trace_id: id(),
            step: "pay".into(),
        };
        assert_eq!(code(past_pivot), Code::FailedPrecondition);
        let unreadable = AdminError::StateUnreadable {
            trace_id: id(),
            reason: "v2".into(),
        };
        assert_eq!(code(unreadable), Code::FailedPrecondition);
        assert_eq!(code(AdminError::Conflict { trace_id: id() }), Code::Aborted);
    }

    #[test]
    fn a_backend_failure_is_unavailable_and_never_shows_its_cause() {
        let cause = std::io::Error::other("connection refused");
        let store = StoreError::new(
            "redis",
            StoreErrorKind::Connect,
            "connecting to 10.0.0.7:6379",
        )
        .caused_by(cause);
        let error = AdminError::Store(store);
        let status = status_from_admin_error(&error);
        assert_eq!(status.code(), Code::Unavailable);
        assert!(status.message().contains("store"), "{}", status.message());
        assert!(
            !status.message().contains("10.0.0.7"),
            "{}",
            status.message()
        );
        assert!(
            !status.message().contains("refused"),
            "{}",
            status.message()
        );
    }
}
