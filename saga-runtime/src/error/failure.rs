//! [`SagaFailure`]: how a saga that did not complete ended, as the store records it.

use serde::{Deserialize, Serialize};

use super::StepError;

/// Where a stuck saga is stuck: the transition that exhausted its retries. The saga's state
/// still points at it, so it can be resumed once the cause is fixed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StuckAt {
    /// A compensation of this step kept failing.
    Compensation(String),
    /// A retriable step (after the pivot, never compensated) kept failing.
    Step(String),
    /// Its state does not decode under the deployed definition: a deploy added, removed,
    /// reordered or retyped a step while the saga was in flight. The record keeps the state
    /// (and the message is dead-lettered) until a definition that reads it is deployed.
    Definition {
        /// The definition version that wrote the state.
        written: u32,
        /// The definition version deployed when it failed to decode.
        deployed: u32,
    },
}

impl std::fmt::Display for StuckAt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StuckAt::Compensation(step) => write!(f, "the compensation of step `{step}`"),
            StuckAt::Step(step) => write!(f, "retriable step `{step}`"),
            StuckAt::Definition { written, deployed } => write!(
                f,
                "decoding its state (written by definition version {written}, deployed version {deployed})"
            ),
        }
    }
}

/// How a saga that did not complete ended: what its final store record keeps
/// ([`SagaStatus::Failed`](crate::store::SagaStatus::Failed)) and every replica's watcher
/// hands back. It names neither the saga nor the trace id (the record does); the caller sees
/// it as the matching [`SagaError`](crate::SagaError) variant, built by
/// [`SagaError::ended`](crate::SagaError::ended).
///
/// The JSON form is stable: records written by earlier releases (which stored the saga name
/// and trace id inside) still decode.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum SagaFailure {
    /// A step failed for good and every completed step was compensated.
    Compensated {
        /// The step that failed.
        step: String,
        /// Its last error.
        error: StepError,
    },
    /// A transition kept failing past its retry bound; the saga needs an operator.
    Stuck {
        /// The transition that is stuck.
        stuck: StuckAt,
        /// How many attempts were made.
        attempts: u32,
        /// The last failure of the stuck transition.
        last_error: StepError,
        /// The forward step whose failure started the rollback, and its error.
        failed_step: Option<(String, StepError)>,
    },
    /// The saga ran but its result cannot be represented (its output does not serialize).
    InvalidState {
        /// What is wrong.
        message: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SagaStatus;

    #[test]
    fn final_records_of_earlier_releases_still_decode() {
        // Before the error layers were split, a record kept the caller's error, saga name and
        // trace id included.
        let compensated = r#"{"status":"failed","error":{"Compensated":{"saga":"Booking","trace_id":"t1","step":"pay","error":{"kind":"Final","message":"declined"}}}}"#;
        let status: SagaStatus = serde_json::from_str(compensated).expect("decodes");
        assert_eq!(
            status,
            SagaStatus::Failed {
                error: SagaFailure::Compensated {
                    step: "pay".into(),
                    error: StepError::fatal("declined"),
                }
            }
        );
        let stuck = r#"{"status":"failed","error":{"Stuck":{"saga":"Booking","trace_id":"t2","stuck":{"Compensation":"reserve"},"attempts":20,"last_error":{"kind":"Retryable","message":"down"},"failed_step":null}}}"#;
        let status: SagaStatus = serde_json::from_str(stuck).expect("decodes");
        assert!(matches!(
            status,
            SagaStatus::Failed {
                error: SagaFailure::Stuck { attempts: 20, .. }
            }
        ));
    }
}
