//! The tables: one per run, and a summary across runs.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use crate::run::{Fault, RunResult};
use crate::verify::{Class, Mode, SettleStats, settle_stats};

fn secs(d: Option<Duration>) -> String {
    d.map_or_else(|| "-".to_string(), |d| format!("{:.2}s", d.as_secs_f64()))
}

/// The settle statistics of a run's kill events, by event.
pub fn fault_stats(run: &RunResult) -> Vec<SettleStats> {
    run.events
        .iter()
        .map(|event| {
            settle_stats(
                &run.bookings,
                &run.timelines,
                event.killed_at,
                event.replica,
            )
        })
        .collect()
}

/// The table of one run.
pub fn run_table(run: &RunResult, runs: usize, examples: usize) -> String {
    let mut out = String::new();
    let faults: Vec<String> = run
        .events
        .iter()
        .map(|e| format!("{} @{:.1}s", e.target, e.at.as_secs_f64()))
        .collect();
    let _ = writeln!(
        out,
        "\n=== run {}/{runs} ({}, prefix {}), {} bookings at {}/s, load {:.1}s, faults: {}",
        run.index,
        run.transport,
        run.prefix,
        run.bookings.len(),
        run.rate,
        run.load_took.as_secs_f64(),
        if faults.is_empty() {
            "none".to_string()
        } else {
            faults.join(", ")
        }
    );
    let _ = write!(out, "{:<10} {:>6}", "mode", "total");
    for class in Class::ALL {
        let _ = write!(out, " {:>11}", class.name());
    }
    let _ = writeln!(out);
    let rows: Vec<(&str, Option<Mode>)> = Mode::ALL
        .iter()
        .map(|m| (m.name(), Some(*m)))
        .chain([("all", None)])
        .collect();
    for (name, mode) in rows {
        let picked: Vec<Class> = run
            .bookings
            .iter()
            .zip(&run.classes)
            .filter(|(b, _)| mode.is_none_or(|m| b.mode == m))
            .map(|(_, c)| *c)
            .collect();
        let _ = write!(out, "{name:<10} {:>6}", picked.len());
        for class in Class::ALL {
            let _ = write!(
                out,
                " {:>11}",
                picked.iter().filter(|c| **c == class).count()
            );
        }
        let _ = writeln!(out);
    }

    // What the callers were told, by mode.
    for mode in Mode::ALL {
        let mut answers: BTreeMap<String, usize> = BTreeMap::new();
        for (b, t) in run.bookings.iter().zip(&run.timelines) {
            if b.mode == mode {
                let label = t
                    .answer
                    .as_ref()
                    .map_or_else(|| "no answer".to_string(), |a| a.label());
                let label = if b.fault {
                    format!("{label} [fault]")
                } else {
                    label
                };
                *answers.entry(label).or_default() += 1;
            }
        }
        let text: Vec<String> = answers.iter().map(|(k, v)| format!("{k} {v}")).collect();
        let _ = writeln!(out, "callers {:<9}: {}", mode.name(), text.join(", "));
    }

    if !run.events.is_empty() {
        let _ = writeln!(
            out,
            "{:<11} {:<26} {:>7} {:>9} {:>9} {:>8} {:>8} {:>8} {:>14}",
            "fault",
            "killed",
            "at",
            "back in",
            "in flight",
            "settled",
            "p99",
            "max",
            "never (killed)"
        );
        for (event, stats) in run.events.iter().zip(fault_stats(run)) {
            let back = match (&event.back_at, &event.error) {
                (Some(back), _) => format!("{:.1}s", (*back - event.killed_at).as_secs_f64()),
                _ => "NOT BACK".to_string(),
            };
            let in_flight = if event.fault == Fault::Replica {
                format!("{} ({})", stats.in_flight, stats.on_killed)
            } else {
                stats.in_flight.to_string()
            };
            let _ = writeln!(
                out,
                "{:<11} {:<26} {:>6.1}s {:>9} {:>9} {:>8} {:>8} {:>8} {:>14}",
                event.fault.name(),
                event.target,
                event.at.as_secs_f64(),
                back,
                in_flight,
                stats.settled.len(),
                secs(stats.p99()),
                secs(stats.max()),
                format!("{} ({})", stats.never, stats.never_on_killed),
            );
            if let Some((id, mode)) = &stats.slowest {
                let _ = writeln!(out, "  slowest to settle: {id} ({})", mode.name());
            }
            if let Some(n) = event.sync_in_flight {
                let _ = writeln!(
                    out,
                    "  {n} sync calls to {} were in their second step at the kill",
                    event.target
                );
            }
            if let Some(error) = &event.error {
                let _ = writeln!(out, "  {} did not come back: {error}", event.target);
            }
        }
        let _ = writeln!(
            out,
            "  (in flight: sent before the kill, not settled at it; for a replica kill, in \
             parentheses those sent to the killed replica; settle times count from the kill)"
        );
    }
    let unsettled = run
        .timelines
        .iter()
        .filter(|t| !t.unsent() && t.settled_at.is_none())
        .count();
    let settle = if run.all_settled {
        format!(
            "every saga settled within {:.1}s",
            run.settle_took.as_secs_f64()
        )
    } else {
        format!(
            "{unsettled} bookings never settled (waited {:.1}s)",
            run.settle_took.as_secs_f64()
        )
    };
    let _ = writeln!(out, "settle: {settle} after the last answer");
    match &run.recorded {
        Ok(recorded) => {
            let stale: Vec<usize> = (0..run.bookings.len())
                .filter(|i| run.classes[*i] == Class::Refused && recorded[*i])
                .collect();
            if !stale.is_empty() {
                let ids: Vec<&str> = stale
                    .iter()
                    .take(examples)
                    .map(|i| run.bookings[*i].id.as_str())
                    .collect();
                let _ = writeln!(
                    out,
                    "note: {} refused bookings (the error said no saga started) still have a \
                     record in the saga store, e.g. {}",
                    stale.len(),
                    ids.join(", ")
                );
            }
        }
        Err(e) => {
            let _ = writeln!(out, "note: the saga store could not be read: {e}");
        }
    }
    if !run.crashes.is_empty() {
        let _ = writeln!(out, "CRASHES: {}", run.crashes.join("; "));
    }
    // Examples of every failing verdict, to look up in the logs.
    for class in Class::ALL.into_iter().filter(|c| c.is_failure()) {
        let failing: Vec<usize> = (0..run.bookings.len())
            .filter(|i| run.classes[*i] == class)
            .collect();
        if failing.is_empty() {
            continue;
        }
        let _ = writeln!(out, "{} ({}), e.g.:", class.name(), failing.len());
        for &i in failing.iter().take(examples) {
            let b = &run.bookings[i];
            let t = &run.timelines[i];
            let answer = t
                .answer
                .as_ref()
                .map_or_else(|| "no answer".to_string(), ToString::to_string);
            let sent = t
                .sent_at
                .map(|s| {
                    format!(
                        "{:.2}s",
                        s.saturating_duration_since(run.started).as_secs_f64()
                    )
                })
                .unwrap_or_else(|| "-".into());
            let upstream = run.finals[i]
                .as_ref()
                .map_or_else(|| "unreadable".to_string(), ToString::to_string);
            let store = match &run.recorded {
                Ok(recorded) if recorded[i] => "recorded",
                Ok(_) => "absent",
                Err(_) => "unreadable",
            };
            let _ = writeln!(
                out,
                "  {} {} fault={} replica={} sent@{sent}: caller got {answer}; upstream {upstream}; \
                 store {store}",
                b.id,
                b.mode.name(),
                b.fault,
                char::from(b'a' + (b.replica % 26) as u8),
            );
        }
    }
    out
}

/// The summary across runs.
pub fn summary(results: &[RunResult], errors: &[String]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "\n=== summary: {} runs", results.len() + errors.len());
    let _ = write!(out, "{:<4} {:<9} {:>6}", "run", "transport", "total");
    for class in Class::ALL {
        let _ = write!(out, " {:>11}", class.name());
    }
    let _ = writeln!(out, " {:>18}  verdict", "replica kill p99/max");
    let mut totals = [0usize; Class::ALL.len()];
    let mut total = 0;
    for run in results {
        let _ = write!(
            out,
            "{:<4} {:<9} {:>6}",
            run.index,
            run.transport,
            run.bookings.len()
        );
        total += run.bookings.len();
        for (slot, class) in Class::ALL.into_iter().enumerate() {
            let n = run.count(class);
            totals[slot] += n;
            let _ = write!(out, " {n:>11}");
        }
        let replica = run
            .events
            .iter()
            .zip(fault_stats(run))
            .find(|(e, _)| e.fault == Fault::Replica)
            .map(|(_, s)| {
                let never = if s.never > 0 {
                    format!(" +{} never", s.never)
                } else {
                    String::new()
                };
                format!("{}/{}{never}", secs(s.p99()), secs(s.max()))
            })
            .unwrap_or_else(|| "-".into());
        let verdict = if run.failures() == 0 && run.crashes.is_empty() {
            "PASS"
        } else if run.failures() == 0 {
            "PASS (crashes)"
        } else {
            "FAIL"
        };
        let _ = writeln!(out, " {replica:>18}  {verdict}");
    }
    let mut transports: Vec<&str> = results.iter().map(|r| r.transport).collect();
    transports.dedup();
    if transports.len() > 1 {
        for transport in transports {
            let runs: Vec<&RunResult> = results
                .iter()
                .filter(|r| r.transport == transport)
                .collect();
            let n: usize = runs.iter().map(|r| r.bookings.len()).sum();
            let _ = write!(out, "{:<4} {transport:<9} {n:>6}", "all");
            for class in Class::ALL {
                let _ = write!(
                    out,
                    " {:>11}",
                    runs.iter().map(|r| r.count(class)).sum::<usize>()
                );
            }
            let _ = writeln!(out);
        }
    }
    let _ = write!(out, "{:<4} {:<9} {:>6}", "all", "", total);
    for n in totals {
        let _ = write!(out, " {n:>11}");
    }
    let _ = writeln!(out);
    for error in errors {
        let _ = writeln!(out, "HARNESS ERROR: {error}");
    }
    out
}
