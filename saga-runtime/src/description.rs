//! The static description of a saga ([`SagaDescription`]) and its Mermaid rendering.

use std::fmt::Write as _;
use std::time::Duration;

use crate::RetryPolicy;

/// Richardson's step kinds: compensatable steps, then at most one pivot, then retriable steps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum StepKind {
    /// Undone by its compensation when a later step fails.
    Compensatable,
    /// The point of no return: once it succeeds the saga only goes forward. Not compensated.
    Pivot,
    /// After the pivot: retried (bounded) until it succeeds, never compensated.
    Retriable,
}

/// One step of a saga, as declared by `#[step(...)]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StepDescription {
    /// The step's name (its fn name).
    pub name: &'static str,
    /// Compensatable, pivot or retriable.
    pub kind: StepKind,
    /// The name of the compensation fn, for a compensatable step.
    pub compensation: Option<&'static str>,
    /// The values the step consumes: the saga input's name or earlier steps' names.
    pub uses: &'static [&'static str],
    /// Retries of the step's retryable errors and of its compensation.
    pub retry: RetryPolicy,
    /// Time allowed per attempt, if bounded.
    pub timeout: Option<Duration>,
}

/// A saga's static shape: its name, its version and its steps in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SagaDescription {
    /// The saga's stable name: `#[saga(name = "...")]`, or the type's name by default. It names
    /// the saga's topics and store records, so it must survive a rename of the type.
    pub name: &'static str,
    /// The definition version: `#[saga(version = n)]`, 1 by default. Bump it when steps are
    /// added, removed, reordered or retyped, since states stored by another version of the
    /// definition do not describe the same flow.
    pub version: u32,
    /// The name of the saga input (the first step's data parameter).
    pub input: &'static str,
    /// The steps, in the order they run.
    pub steps: &'static [StepDescription],
}

impl SagaDescription {
    /// The step at `index`, if there is one.
    pub fn step(&self, index: usize) -> Option<&StepDescription> {
        self.steps.get(index)
    }

    /// The index of the pivot step, if any.
    pub fn pivot(&self) -> Option<usize> {
        self.steps.iter().position(|s| s.kind == StepKind::Pivot)
    }

    /// The flow as a Mermaid `flowchart`: steps top to bottom, each compensatable step's
    /// compensation beside it, failure edges to the compensations, the pivot as a hexagon
    /// and retriable steps with a loop. Labels are quoted, so names and the `(pivot)` /
    /// `(retriable)` marks never clash with Mermaid's shape syntax.
    pub fn to_mermaid(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "flowchart TD");
        let _ = writeln!(out, "    %% saga {}", self.name);
        let _ = writeln!(out, "    start([\"start: {}\"]) --> s0", self.input);
        for (i, step) in self.steps.iter().enumerate() {
            let node = match step.kind {
                StepKind::Compensatable => format!("s{i}[\"{}\"]", step.name),
                StepKind::Pivot => format!("s{i}{{{{\"{} (pivot)\"}}}}", step.name),
                StepKind::Retriable => format!("s{i}[/\"{} (retriable)\"/]", step.name),
            };
            let _ = writeln!(out, "    {node}");
            let next = if i + 1 == self.steps.len() {
                "done".to_string()
            } else {
                format!("s{}", i + 1)
            };
            let _ = writeln!(out, "    s{i} -->|ok| {next}");
            match step.kind {
                StepKind::Retriable => {
                    let _ = writeln!(out, "    s{i} -->|error: retry| s{i}");
                }
                _ => {
                    let undo = self.last_compensation_before(i);
                    let _ = writeln!(out, "    s{i} -.->|error| {undo}");
                }
            }
            if let Some(comp) = step.compensation {
                let _ = writeln!(out, "    c{i}[[\"{comp}\"]]");
                let below = self.last_compensation_before(i);
                let _ = writeln!(out, "    c{i} -.-> {below}");
            }
        }
        let _ = writeln!(out, "    done([\"completed\"])");
        let _ = writeln!(out, "    compensated([\"compensated\"])");
        out
    }

    fn last_compensation_before(&self, index: usize) -> String {
        self.steps[..index]
            .iter()
            .rposition(|s| s.compensation.is_some())
            .map(|j| format!("c{j}"))
            .unwrap_or_else(|| "compensated".to_string())
    }
}
