//! A saga as an operator sees it: record, history, state and diagram.

use std::fmt::Write as _;

use serde_json::Value;

use super::{Admin, AdminError};
use crate::error::{SagaFailure, StuckAt};
use crate::store::{HistoryEntry, SagaRecord, SagaStatus};
use crate::{Cursor, SagaDescription};

/// Everything known about one saga.
#[derive(Clone, Debug, PartialEq)]
pub struct SagaView {
    /// Its record (without the raw state: see `state`).
    pub record: SagaRecord,
    /// Its history, oldest first.
    pub history: Vec<HistoryEntry>,
    /// The state it resumes from (the saga's data so far and, while compensating, the failure
    /// being compensated) as JSON; `None` once it completed or was compensated. Request
    /// metadata that travels with the saga is left out.
    pub state: Option<Value>,
    /// The Mermaid diagram of its definition with its current position marked; `None` when
    /// its definition is not registered with this admin.
    pub diagram: Option<String>,
}

/// What [`Admin::compensate`](super::Admin::compensate) did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompensationRequest {
    /// The running saga is marked: it rolls back at its next forward transition.
    Requested,
    /// It was compensating already: nothing to do.
    AlreadyCompensating,
    /// It was stuck: it was reopened and its rollback runs now.
    Reopened,
}

pub(super) async fn get(admin: &Admin, trace_id: &str) -> Result<Option<SagaView>, AdminError> {
    let Some(mut record) = admin.store.get(trace_id).await? else {
        return Ok(None);
    };
    let history = admin.store.history(trace_id).await?;
    let state = record.state.take().map(|stored| readable_state(&stored));
    let diagram = admin
        .sagas
        .get(record.saga.as_str())
        .map(|ops| diagram_at(&ops.description(), &record.status));
    Ok(Some(SagaView {
        record,
        history,
        state,
        diagram,
    }))
}

/// The saga's data from a stored envelope: its `state` and `failure`, not its metadata; a
/// state that is not JSON is shown as a string.
fn readable_state(stored: &str) -> Value {
    match serde_json::from_str::<Value>(stored) {
        Ok(Value::Object(mut envelope)) => {
            let mut shown = serde_json::Map::new();
            for field in ["state", "failure", "seq", "ver"] {
                if let Some(value) = envelope.remove(field) {
                    shown.insert(field.to_string(), value);
                }
            }
            Value::Object(shown)
        }
        _ => Value::String(stored.to_string()),
    }
}

/// Where a saga with `status` stands in its flow, as a cursor (a stuck saga: the transition
/// it is stuck at, found by name).
fn position(description: &SagaDescription, status: &SagaStatus) -> Option<Cursor> {
    let index = |name: &str| description.steps.iter().position(|s| s.name == name);
    match status {
        SagaStatus::Running { step, .. } => Some(Cursor::Step(*step)),
        SagaStatus::Compensating { step, .. } => Some(Cursor::Compensate(*step)),
        SagaStatus::Completed { .. } => Some(Cursor::Completed),
        SagaStatus::Failed {
            error: SagaFailure::Compensated { .. },
        } => Some(Cursor::Compensated),
        SagaStatus::Failed {
            error: SagaFailure::Stuck { stuck, .. },
        } => match stuck {
            StuckAt::Compensation(name) => index(name).map(Cursor::Compensate),
            StuckAt::Step(name) => index(name).map(Cursor::Step),
            StuckAt::Definition { .. } => None,
        },
        SagaStatus::Failed { .. } => None,
    }
}

/// The Mermaid diagram of `description` ([`SagaDescription::to_mermaid`]) with the node where
/// a saga with `status` stands marked: class `current` while it runs or once it ended, class
/// `stuck` (red) on the transition it is stuck at.
pub fn diagram_at(description: &SagaDescription, status: &SagaStatus) -> String {
    let mut out = description.to_mermaid();
    let stuck = matches!(
        status,
        SagaStatus::Failed {
            error: SagaFailure::Stuck { .. } | SagaFailure::InvalidState { .. }
        }
    );
    let node = match position(description, status) {
        Some(Cursor::Step(i)) => format!("s{i}"),
        Some(Cursor::Compensate(i)) => format!("c{i}"),
        Some(Cursor::Completed) => "done".to_string(),
        Some(Cursor::Compensated) => "compensated".to_string(),
        None => "start".to_string(),
    };
    let class = if stuck { "stuck" } else { "current" };
    let _ = writeln!(
        out,
        "    classDef current fill:#ffd966,stroke:#333,stroke-width:3px"
    );
    let _ = writeln!(
        out,
        "    classDef stuck fill:#f4a6a6,stroke:#c00,stroke-width:3px"
    );
    let _ = writeln!(out, "    class {node} {class}");
    out
}
