//! Admin API messages as JSON documents (`--json`): the proto's field names, the state and
//! the status detail as nested JSON rather than strings.

use saga_runtime::grpc::admin::pb;
use serde_json::{Value, json};

/// A JSON string field holding JSON, parsed (kept as a string if it is not JSON).
fn nested(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_string()))
}

pub(crate) fn record(r: &pb::SagaRecord) -> Value {
    json!({
        "trace_id": r.trace_id,
        "saga": r.saga,
        "status": r.status,
        "step": r.step,
        "mode": r.mode,
        "seq": r.seq,
        "owner": r.owner,
        "lease_until_ms": r.lease_until_ms,
        "queued": r.queued,
        "attempts": r.attempts,
        "requeues": r.requeues,
        "created_at_ms": r.created_at_ms,
        "updated_at_ms": r.updated_at_ms,
        "status_since_ms": r.status_since_ms,
        "compensation_requested": r.compensation_requested,
        "error": r.error,
        "status_detail": nested(&r.status_json),
    })
}

fn history(h: &pb::HistoryEntry) -> Value {
    json!({
        "at_ms": h.at_ms,
        "event": h.event,
        "step": h.step,
        "compensation": h.compensation,
        "attempt": h.attempt,
        "elapsed_ms": h.elapsed_ms,
        "error": h.error,
        "retried": h.retried,
        "by": h.by,
        "mode": h.mode,
        "replica": h.replica,
        "run": h.run,
    })
}

fn optional_record(r: Option<&pb::SagaRecord>) -> Value {
    r.map_or(Value::Null, record)
}

pub(crate) fn saga(response: &pb::GetSagaResponse) -> Value {
    json!({
        "saga": optional_record(response.saga.as_ref()),
        "history": response.history.iter().map(history).collect::<Vec<_>>(),
        "state": response.state_json.as_deref().map_or(Value::Null, nested),
        "diagram": response.diagram,
    })
}

pub(crate) fn page(sagas: &[pb::SagaRecord], next_page_token: &str) -> Value {
    json!({
        "sagas": sagas.iter().map(record).collect::<Vec<_>>(),
        "next_page_token": (!next_page_token.is_empty()).then_some(next_page_token),
    })
}

pub(crate) fn resumed(trace_id: &str, response: &pb::ResumeSagaResponse) -> Value {
    json!({
        "resumed": trace_id,
        "saga": optional_record(response.saga.as_ref()),
    })
}

pub(crate) fn compensated(trace_id: &str, response: &pb::CompensateSagaResponse) -> Value {
    json!({
        "trace_id": trace_id,
        "result": response.result,
        "saga": optional_record(response.saga.as_ref()),
    })
}

pub(crate) fn dead_letter(d: &pb::DeadLetter) -> Value {
    json!({
        "saga": d.saga,
        "topic": d.topic,
        "message_id": d.message_id,
        "trace_id": d.trace_id,
        "reason": d.reason,
        "bytes": d.bytes,
    })
}

pub(crate) fn dead_letters(response: &pb::ListDeadLettersResponse) -> Value {
    json!({ "dead_letters": response.dead_letters.iter().map(dead_letter).collect::<Vec<_>>() })
}

pub(crate) fn replayed(response: &pb::ReplayDeadLettersResponse) -> Value {
    let failed: Vec<Value> = response
        .failed
        .iter()
        .map(|f| {
            json!({
                "dead_letter": f.dead_letter.as_ref().map_or(Value::Null, dead_letter),
                "error": f.error,
            })
        })
        .collect();
    json!({
        "replayed": response.replayed.iter().map(dead_letter).collect::<Vec<_>>(),
        "failed": failed,
    })
}

pub(crate) fn diagram(saga: &str, response: &pb::GetDiagramResponse) -> Value {
    json!({ "saga": saga, "mermaid": response.mermaid })
}

pub(crate) fn definitions(response: &pb::ListSagaDefinitionsResponse) -> Value {
    let sagas: Vec<Value> = response
        .sagas
        .iter()
        .map(|d| {
            let steps: Vec<Value> = d
                .steps
                .iter()
                .map(|s| json!({ "name": s.name, "kind": s.kind, "compensation": s.compensation }))
                .collect();
            json!({ "name": d.name, "version": d.version, "input": d.input, "steps": steps })
        })
        .collect();
    json!({ "sagas": sagas })
}
