//! [`Run`]: what happened when a saga ran under test, with assertions on it.

use std::fmt;

use crate::error::StuckAt;
use crate::{Saga, SagaError, StepError};

/// One attempt of one step or compensation, as it happened under test.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    /// The step's name (also for its compensation).
    pub step: &'static str,
    /// True for the step's compensation.
    pub compensation: bool,
    /// Which attempt, from 1.
    pub attempt: u32,
    /// Why the attempt failed, or `None` if it succeeded.
    pub error: Option<StepError>,
    /// True when the failure was injected by a [`Fault`](super::Fault).
    pub injected: bool,
}

impl fmt::Display for Transition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = if self.compensation { "undo " } else { "" };
        write!(f, "{what}{} #{}", self.step, self.attempt)?;
        match &self.error {
            None => write!(f, " ok"),
            Some(error) if self.injected => write!(f, " failed (injected: {error})"),
            Some(error) => write!(f, " failed ({error})"),
        }
    }
}

/// The outcome of one run of a saga under test and every transition it made, in order.
pub struct Run<S: Saga> {
    /// How the saga ended.
    pub result: Result<S::Output, SagaError>,
    /// Every attempt of every step and compensation, in the order they ran.
    pub transitions: Vec<Transition>,
}

impl<S: Saga> fmt::Debug for Run<S>
where
    S::Output: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Run")
            .field("result", &self.result)
            .field("transitions", &self.trail())
            .finish()
    }
}

impl<S: Saga> Run<S> {
    /// The forward steps that succeeded, in order.
    pub fn steps_done(&self) -> Vec<&'static str> {
        self.succeeded(false)
    }

    /// The steps whose compensation succeeded, in the order they were undone.
    pub fn compensations_done(&self) -> Vec<&'static str> {
        self.succeeded(true)
    }

    /// How many attempts the step (or its compensation) had.
    pub fn attempts(&self, step: &str, compensation: bool) -> usize {
        self.transitions
            .iter()
            .filter(|t| t.step == step && t.compensation == compensation)
            .count()
    }

    /// Every transition on one line, for assertion messages: `a #1 ok, b #1 failed (...)`.
    pub fn trail(&self) -> String {
        let parts: Vec<String> = self.transitions.iter().map(ToString::to_string).collect();
        parts.join(", ")
    }

    /// The output; panics with the run's trail when the saga did not complete.
    #[track_caller]
    pub fn output(&self) -> &S::Output {
        match &self.result {
            Ok(output) => output,
            Err(error) => panic!(
                "expected the saga to complete, got: {error}\n  trail: {}",
                self.trail()
            ),
        }
    }

    /// Asserts that every step succeeded once and nothing was compensated.
    #[track_caller]
    pub fn assert_completed(&self) -> &Self {
        let _ = self.output();
        let all: Vec<&str> = S::description().steps.iter().map(|s| s.name).collect();
        assert_eq!(
            self.steps_done(),
            all,
            "every step once, in order; trail: {}",
            self.trail()
        );
        assert!(
            self.compensations_done().is_empty(),
            "nothing compensated; trail: {}",
            self.trail()
        );
        self
    }

    /// Asserts that forward step `step` failed for good and that the saga then undid exactly
    /// the compensatable steps before it, in reverse order, each once
    /// ([`SagaError::Compensated`] naming `step`).
    #[track_caller]
    pub fn assert_compensated_after(&self, step: &str) -> &Self {
        match &self.result {
            Err(SagaError::Compensated { step: failed, .. }) if failed == step => {}
            other => panic!(
                "expected the saga to be compensated after `{step}` failed, got {}\n  trail: {}",
                describe(other),
                self.trail()
            ),
        }
        let expected = expected_compensations::<S>(step);
        assert_eq!(
            self.compensations_done(),
            expected,
            "after `{step}` failed, the compensatable steps before it are undone in reverse, once each; trail: {}",
            self.trail()
        );
        let index = index_of::<S>(step);
        let later: Vec<&str> = S::description().steps[index + 1..]
            .iter()
            .map(|s| s.name)
            .collect();
        let ran_later: Vec<&str> = self
            .steps_done()
            .into_iter()
            .filter(|done| later.contains(done))
            .collect();
        assert!(
            ran_later.is_empty(),
            "no step after `{step}` runs, but {ran_later:?} did; trail: {}",
            self.trail()
        );
        self
    }

    /// Asserts that the saga is stuck at `at` ([`SagaError::Stuck`]).
    #[track_caller]
    pub fn assert_stuck_at(&self, at: &StuckAt) -> &Self {
        match &self.result {
            Err(SagaError::Stuck { stuck, .. }) if stuck == at => self,
            other => panic!(
                "expected the saga to be stuck at {at}, got {}\n  trail: {}",
                describe(other),
                self.trail()
            ),
        }
    }

    fn succeeded(&self, compensation: bool) -> Vec<&'static str> {
        self.transitions
            .iter()
            .filter(|t| t.compensation == compensation && t.error.is_none())
            .map(|t| t.step)
            .collect()
    }
}

/// The steps a failure of forward step `step` must undo: the compensatable steps before it,
/// last first.
pub(super) fn expected_compensations<S: Saga>(step: &str) -> Vec<&'static str> {
    let index = index_of::<S>(step);
    S::description().steps[..index]
        .iter()
        .rev()
        .filter(|s| s.compensation.is_some())
        .map(|s| s.name)
        .collect()
}

/// The index of step `step`; panics naming the saga's steps when there is no such step.
#[track_caller]
pub(super) fn index_of<S: Saga>(step: &str) -> usize {
    let description = S::description();
    description
        .steps
        .iter()
        .position(|s| s.name == step)
        .unwrap_or_else(|| {
            let names: Vec<&str> = description.steps.iter().map(|s| s.name).collect();
            panic!(
                "saga `{}` has no step `{step}`; its steps are {names:?}",
                description.name
            )
        })
}

fn describe<T>(result: &Result<T, SagaError>) -> String {
    match result {
        Ok(_) => "a completed saga".to_string(),
        Err(error) => error.to_string(),
    }
}
