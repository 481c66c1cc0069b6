//! Admin API messages as text for a terminal: aligned tables, ages as `3m12s`.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use saga_runtime::grpc::admin::pb;

/// Milliseconds since the Unix epoch, now.
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A duration in its compact human form: `850ms`, `12s`, `3m12s`, `2h5m`, `1day3h`
/// (whole seconds from one second on; the two largest units).
pub(crate) fn compact(duration: Duration) -> String {
    if duration < Duration::from_secs(1) {
        return format!("{}ms", duration.as_millis());
    }
    let text = humantime::format_duration(Duration::from_secs(duration.as_secs())).to_string();
    text.split(' ').take(2).collect()
}

/// How long ago `at_ms` was.
fn age(at_ms: u64) -> String {
    compact(Duration::from_millis(now_ms().saturating_sub(at_ms)))
}

/// `rows` under `headers`, each column as wide as its widest cell, two spaces apart.
pub(crate) fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header_row: Vec<String> = headers.iter().map(|h| (*h).to_string()).collect();
    for row in std::iter::once(&header_row).chain(rows) {
        let mut line = String::new();
        for (cell, width) in row.iter().zip(&widths) {
            let _ = write!(line, "{cell:<width$}  ");
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn or_dash(text: &str) -> String {
    if text.is_empty() {
        "-".to_string()
    } else {
        text.to_string()
    }
}

/// One saga in full: its record, its history, its state.
pub(crate) fn saga(response: &pb::GetSagaResponse) -> String {
    let mut out = String::new();
    if let Some(r) = &response.saga {
        let fields = [
            ("trace id", r.trace_id.clone()),
            ("saga", r.saga.clone()),
            (
                "status",
                format!("{} for {}", r.status, age(r.status_since_ms)),
            ),
            ("step", or_dash(&r.step)),
            ("error", or_dash(&r.error)),
            ("mode", r.mode.clone()),
            ("started", format!("{} ago", age(r.created_at_ms))),
            ("updated", format!("{} ago", age(r.updated_at_ms))),
            ("seq", r.seq.to_string()),
            ("attempts", r.attempts.to_string()),
            ("requeues", r.requeues.to_string()),
            ("owner", or_dash(&r.owner)),
            (
                "compensation requested",
                if r.compensation_requested {
                    "yes"
                } else {
                    "no"
                }
                .to_string(),
            ),
        ];
        for (name, value) in fields {
            let _ = writeln!(out, "{:<24}{value}", format!("{name}:"));
        }
    }
    let start = response.history.first().map_or(0, |h| h.at_ms);
    let rows: Vec<Vec<String>> = response
        .history
        .iter()
        .map(|h| history_row(h, start))
        .collect();
    let _ = writeln!(out, "\nhistory:");
    out.push_str(&table(
        &[
            "AT", "EVENT", "STEP", "ATTEMPT", "TOOK", "REPLICA", "DETAIL",
        ],
        &rows,
    ));
    if let Some(state) = &response.state_json {
        let pretty = serde_json::from_str::<serde_json::Value>(state)
            .ok()
            .and_then(|v| serde_json::to_string_pretty(&v).ok())
            .unwrap_or_else(|| state.clone());
        let _ = writeln!(out, "\nstate:\n{pretty}");
    }
    if let Some(r) = &response.saga {
        let _ = writeln!(
            out,
            "\ndiagram: sagaflow diagram {} --trace-id {}",
            r.saga, r.trace_id
        );
    }
    out
}

fn history_row(h: &pb::HistoryEntry, start_ms: u64) -> Vec<String> {
    let at = format!(
        "+{}",
        compact(Duration::from_millis(h.at_ms.saturating_sub(start_ms)))
    );
    let transition = h.event == "transition";
    let event = match h.event.as_str() {
        "transition" if h.compensation => "compensation".to_string(),
        "transition" => "step".to_string(),
        other => other.replace('_', " "),
    };
    let detail = match h.event.as_str() {
        "transition" => match &h.error {
            None => "ok".to_string(),
            Some(error) if h.retried => format!("{error}; retried"),
            Some(error) => error.clone(),
        },
        "started" => format!("mode {}", h.mode),
        "resumed" | "compensation_requested" => format!("by {}", h.by),
        _ => String::new(),
    };
    vec![
        at,
        event,
        or_dash(&h.step),
        if transition {
            h.attempt.to_string()
        } else {
            "-".into()
        },
        if transition {
            compact(Duration::from_millis(h.elapsed_ms))
        } else {
            "-".into()
        },
        or_dash(&h.replica),
        detail,
    ]
}

/// A listing: one row per saga, the next page token under it.
pub(crate) fn page(status: &str, sagas: &[pb::SagaRecord], next_page_token: &str) -> String {
    if sagas.is_empty() {
        return format!("no {status} sagas\n");
    }
    let rows: Vec<Vec<String>> = sagas
        .iter()
        .map(|r| {
            vec![
                r.trace_id.clone(),
                r.saga.clone(),
                r.status.clone(),
                age(r.status_since_ms),
                or_dash(&r.step),
                r.mode.clone(),
                or_dash(&r.error),
            ]
        })
        .collect();
    let mut out = table(
        &["TRACE ID", "SAGA", "STATUS", "FOR", "STEP", "MODE", "ERROR"],
        &rows,
    );
    if !next_page_token.is_empty() {
        let _ = writeln!(
            out,
            "more: --page {next_page_token} (or --all for every page)"
        );
    }
    out
}

/// The record after an operator's action, in one line.
pub(crate) fn after(action: &str, trace_id: &str, record: Option<&pb::SagaRecord>) -> String {
    match record {
        Some(r) if !r.step.is_empty() => {
            format!("{action} {trace_id}: now {} at {}\n", r.status, r.step)
        }
        Some(r) => format!("{action} {trace_id}: now {}\n", r.status),
        None => format!("{action} {trace_id}\n"),
    }
}

fn dead_letter_row(d: &pb::DeadLetter) -> Vec<String> {
    vec![
        d.message_id.clone(),
        d.saga.clone(),
        d.topic.clone(),
        d.trace_id.clone(),
        d.bytes.to_string(),
        d.reason.clone(),
    ]
}

const DEAD_LETTER_HEADERS: [&str; 6] =
    ["MESSAGE ID", "SAGA", "TOPIC", "TRACE ID", "BYTES", "REASON"];

pub(crate) fn dead_letters(response: &pb::ListDeadLettersResponse) -> String {
    if response.dead_letters.is_empty() {
        return "no dead letters\n".to_string();
    }
    let rows: Vec<Vec<String>> = response.dead_letters.iter().map(dead_letter_row).collect();
    table(&DEAD_LETTER_HEADERS, &rows)
}

pub(crate) fn replayed(response: &pb::ReplayDeadLettersResponse) -> String {
    let mut out = format!(
        "replayed {}, failed {}\n",
        response.replayed.len(),
        response.failed.len()
    );
    if !response.replayed.is_empty() {
        let rows: Vec<Vec<String>> = response.replayed.iter().map(dead_letter_row).collect();
        out.push_str(&table(&DEAD_LETTER_HEADERS, &rows));
    }
    for failed in &response.failed {
        let id = failed
            .dead_letter
            .as_ref()
            .map_or("?", |d| d.message_id.as_str());
        let _ = writeln!(
            out,
            "failed {id}: {} (left on the dead-letter topic)",
            failed.error
        );
    }
    out
}

pub(crate) fn definitions(response: &pb::ListSagaDefinitionsResponse) -> String {
    let rows: Vec<Vec<String>> = response
        .sagas
        .iter()
        .map(|d| {
            let steps: Vec<String> = d
                .steps
                .iter()
                .map(|s| match s.kind.as_str() {
                    "compensatable" => s.name.clone(),
                    kind => format!("{} ({kind})", s.name),
                })
                .collect();
            vec![
                d.name.clone(),
                d.version.to_string(),
                d.input.clone(),
                steps.join(" -> "),
            ]
        })
        .collect();
    table(&["SAGA", "VERSION", "INPUT", "STEPS"], &rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_compact() {
        assert_eq!(compact(Duration::from_millis(850)), "850ms");
        assert_eq!(compact(Duration::from_millis(12_400)), "12s");
        assert_eq!(compact(Duration::from_secs(192)), "3m12s");
        assert_eq!(compact(Duration::from_secs(2 * 3600 + 5 * 60 + 7)), "2h5m");
    }

    #[test]
    fn tables_align_their_columns() {
        let rows = vec![
            vec!["a".to_string(), "long cell".to_string()],
            vec!["longer".to_string(), "b".to_string()],
        ];
        assert_eq!(
            table(&["X", "Y"], &rows),
            "X       Y\na       long cell\nlonger  b\n"
        );
    }
}
