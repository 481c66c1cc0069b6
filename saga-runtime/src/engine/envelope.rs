//! The JSON message that carries a saga between replicas: format version, saga name, trace
//! id, sequence number, the state, and the failure being compensated. The store keeps the
//! same JSON as the state to resume from, so a transition is serialized once.

use serde::{Deserialize, Serialize};

use super::progress::FailedStep;
use crate::error::StuckAt;
use crate::{Metadata, Saga, SagaContext, SagaError, StepError};

/// The message format version this build writes and reads.
pub const FORMAT_VERSION: u32 = 2;

/// A saga in transit (generic over the state so the consumer decodes straight into it).
#[derive(Debug, Serialize, Deserialize)]
#[serde(bound(
    serialize = "St: Serialize",
    deserialize = "St: serde::de::DeserializeOwned"
))]
pub struct Envelope<St> {
    /// Format version ([`FORMAT_VERSION`]).
    pub v: u32,
    /// The saga's name.
    pub saga: String,
    /// The version of the saga definition that wrote the state
    /// ([`SagaDescription::version`](crate::SagaDescription::version)); 1 when absent.
    #[serde(default = "first_version", rename = "ver")]
    pub version: u32,
    /// The trace id (saga id).
    pub trace_id: String,
    /// The saga's sequence number this state is at: a consumer runs it only if the store's
    /// record is at the same number (a stale or duplicate message is dropped).
    pub seq: u64,
    /// Request metadata forwarded to every step.
    #[serde(default, skip_serializing_if = "Metadata::is_empty")]
    pub metadata: Metadata,
    /// The pod whose topics carry this saga (pod-affine routing), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    /// The failure being compensated, while compensating.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<FailedStep>,
    /// The state to run the next transition from.
    pub state: St,
}

fn first_version() -> u32 {
    1
}

/// Only the header fields, read when the whole message does not decode, to say precisely why
/// (version, saga, or a state the deployed definition cannot read).
#[derive(Debug, Deserialize)]
pub(crate) struct EnvelopeHead {
    pub(crate) v: u32,
    pub(crate) saga: String,
    #[serde(default = "first_version", rename = "ver")]
    pub(crate) version: u32,
    #[serde(default)]
    pub(crate) trace_id: String,
    #[serde(default)]
    pub(crate) seq: u64,
}

/// Why a message cannot be processed; it is dead-lettered with this reason.
#[derive(Debug, thiserror::Error)]
pub(crate) enum EnvelopeError {
    #[error("malformed saga message: {0}")]
    Malformed(serde_json::Error),
    #[error("unknown message format version {found} (this build reads version {FORMAT_VERSION})")]
    Version { found: u32 },
    #[error("message for saga `{found}` reached a consumer of saga `{expected}`")]
    UnknownSaga {
        found: String,
        expected: &'static str,
    },
    /// The header reads, the state does not: the definition changed under the saga.
    #[error(
        "the state of saga `{saga}` [trace id {}] was written by definition version {} and does not decode under the deployed version {deployed}: {error}; deploy a definition that reads it (bump `#[saga(version)]` only with a compatible state, see the README), then resume the saga",
        head.trace_id, head.version
    )]
    Undecodable {
        saga: &'static str,
        head: EnvelopeHead,
        deployed: u32,
        error: serde_json::Error,
    },
}

/// Decodes a message for saga `S`. The happy path parses once and checks the header fields in
/// place; when that fails, the header is read on its own to say precisely why.
pub(crate) fn decode<S: Saga>(payload: &[u8]) -> Result<Envelope<S::State>, EnvelopeError> {
    let description = S::description();
    let error = match serde_json::from_slice::<Envelope<S::State>>(payload) {
        Ok(envelope) => {
            check_header(envelope.v, &envelope.saga, description.name)?;
            return Ok(envelope);
        }
        Err(error) => error,
    };
    let head: EnvelopeHead = serde_json::from_slice(payload).map_err(EnvelopeError::Malformed)?;
    check_header(head.v, &head.saga, description.name)?;
    Err(EnvelopeError::Undecodable {
        saga: description.name,
        head,
        deployed: description.version,
        error,
    })
}

/// A message of another format version or another saga is refused before its state matters.
fn check_header(v: u32, saga: &str, expected: &'static str) -> Result<(), EnvelopeError> {
    if v != FORMAT_VERSION {
        return Err(EnvelopeError::Version { found: v });
    }
    if saga != expected {
        return Err(EnvelopeError::UnknownSaga {
            found: saga.to_string(),
            expected,
        });
    }
    Ok(())
}

/// The outcome of a saga whose state, written by definition version `written`, does not decode
/// under the deployed version `deployed`: stuck, with `text` as its last error.
pub(crate) fn stuck_on_definition(
    cx: &SagaContext,
    written: u32,
    deployed: u32,
    attempts: u32,
    text: String,
) -> SagaError {
    SagaError::Stuck {
        saga: cx.saga().to_string(),
        trace_id: cx.trace_id().to_string(),
        stuck: StuckAt::Definition { written, deployed },
        attempts,
        last_error: StepError::fatal(text),
        failed_step: None,
    }
}
