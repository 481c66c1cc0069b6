//! Domain types -> admin API messages.

use super::pb;
use crate::admin::{DeadLetter, Replayed};
use crate::error::{SagaFailure, StuckAt};
use crate::store::{HistoryEntry, HistoryEvent, SagaRecord, SagaStatus};
use crate::{SagaDescription, StepKind};

/// A record as the API shows it (its state is left out: it travels in `GetSagaResponse`).
pub(super) fn record(record: &SagaRecord) -> pb::SagaRecord {
    pb::SagaRecord {
        trace_id: record.trace_id.clone(),
        saga: record.saga.clone(),
        status: record.status.kind().as_str().to_string(),
        step: step_of(&record.status).to_string(),
        mode: record.mode.as_str().to_string(),
        seq: record.seq,
        owner: record.owner.clone(),
        lease_until_ms: record.lease_until_ms,
        queued: record.queued,
        attempts: record.attempts,
        requeues: record.requeues,
        created_at_ms: record.created_at_ms,
        updated_at_ms: record.updated_at_ms,
        status_since_ms: record.status_since_ms,
        compensation_requested: record.compensation_requested,
        error: error_of(&record.status),
        // A status is plain data (strings, numbers, the saga's JSON output): it serializes.
        status_json: serde_json::to_string(&record.status).unwrap_or_default(),
    }
}

/// The step a saga stands at, or is stuck at.
fn step_of(status: &SagaStatus) -> &str {
    match status {
        SagaStatus::Running { name, .. } | SagaStatus::Compensating { name, .. } => name,
        SagaStatus::Failed {
            error:
                SagaFailure::Stuck {
                    stuck: StuckAt::Compensation(name) | StuckAt::Step(name),
                    ..
                },
        } => name,
        _ => "",
    }
}

/// How a failed saga ended, in one line.
fn error_of(status: &SagaStatus) -> String {
    let SagaStatus::Failed { error } = status else {
        return String::new();
    };
    match error {
        SagaFailure::Compensated { step, error } => {
            format!("step `{step}` failed: {error}; every completed step was compensated")
        }
        SagaFailure::Stuck {
            stuck,
            attempts,
            last_error,
            ..
        } => {
            let at = match stuck {
                StuckAt::Compensation(step) => format!("the compensation of `{step}`"),
                StuckAt::Step(step) => format!("step `{step}`"),
                StuckAt::Definition { written, deployed } => format!(
                    "its definition (state written by version {written}, version {deployed} deployed)"
                ),
            };
            format!("stuck at {at} after {attempts} attempts: {last_error}")
        }
        SagaFailure::InvalidState { message } => format!("invalid state: {message}"),
    }
}

/// A history entry as the API shows it.
pub(super) fn history(entry: &HistoryEntry) -> pb::HistoryEntry {
    let mut out = pb::HistoryEntry {
        at_ms: entry.at_ms,
        replica: entry.replica().to_string(),
        run: entry.run.to_string(),
        ..pb::HistoryEntry::default()
    };
    match &entry.event {
        HistoryEvent::Started { mode } => {
            out.event = "started".into();
            out.mode = mode.as_str().into();
        }
        HistoryEvent::Transition {
            step,
            compensation,
            attempt,
            elapsed_ms,
            error,
            retried,
        } => {
            out.event = "transition".into();
            out.step = step.to_string();
            out.compensation = *compensation;
            out.attempt = *attempt;
            out.elapsed_ms = *elapsed_ms;
            out.error = error.clone();
            out.retried = *retried;
        }
        HistoryEvent::Resumed { by } => {
            out.event = "resumed".into();
            out.by = by.clone();
        }
        HistoryEvent::CompensationRequested { by } => {
            out.event = "compensation_requested".into();
            out.by = by.clone();
        }
        HistoryEvent::CompensationStarted { step } => {
            out.event = "compensation_started".into();
            out.step = step.to_string();
        }
    }
    out
}

/// A dead letter as the API shows it.
pub(super) fn dead_letter(letter: &DeadLetter) -> pb::DeadLetter {
    pb::DeadLetter {
        saga: letter.saga.clone(),
        topic: letter.topic.clone(),
        message_id: letter.message_id.clone(),
        trace_id: letter.trace_id.clone(),
        reason: letter.reason.clone(),
        bytes: letter.bytes as u64,
    }
}

/// A replay's result as the API shows it.
pub(super) fn replayed(replayed: &Replayed) -> pb::ReplayDeadLettersResponse {
    pb::ReplayDeadLettersResponse {
        replayed: replayed.replayed.iter().map(dead_letter).collect(),
        failed: replayed
            .failed
            .iter()
            .map(|(letter, error)| pb::FailedReplay {
                dead_letter: Some(dead_letter(letter)),
                error: error.clone(),
            })
            .collect(),
    }
}

/// A saga definition as the API shows it.
pub(super) fn definition(description: &SagaDescription) -> pb::SagaDefinition {
    pb::SagaDefinition {
        name: description.name.to_string(),
        version: description.version,
        input: description.input.to_string(),
        steps: description
            .steps
            .iter()
            .map(|step| pb::StepDefinition {
                name: step.name.to_string(),
                kind: match step.kind {
                    StepKind::Compensatable => "compensatable",
                    StepKind::Pivot => "pivot",
                    StepKind::Retriable => "retriable",
                }
                .to_string(),
                compensation: step.compensation.map(str::to_string),
            })
            .collect(),
    }
}
