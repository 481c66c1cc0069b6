//! The [`Saga`] trait: the typed state machine that `#[saga]` generates and every mode drives.

use std::fmt;
use std::future::Future;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{SagaContext, SagaDescription, StepError};

/// Where a saga state stands: what the next transition does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Cursor {
    /// Forward step `n` (index into [`SagaDescription::steps`]) runs next.
    Step(usize),
    /// The compensation of step `n` runs next (steps after `n` are already undone).
    Compensate(usize),
    /// Every step completed; [`Saga::finish`] yields the output.
    Completed,
    /// Every completed compensatable step has been undone.
    Compensated,
}

impl Cursor {
    /// True when no transition is left to run.
    pub fn is_terminal(self) -> bool {
        matches!(self, Cursor::Completed | Cursor::Compensated)
    }
}

/// A saga definition: a typed, serialisable state machine.
///
/// Implemented by `#[saga]`; writing it by hand is possible but the macro is what proves the
/// definition well formed. The contract every mode relies on:
/// - [`Saga::start`] builds the state before the first step;
/// - [`Saga::execute`] runs exactly one step or one compensation (the one [`Saga::cursor`]
///   names) and borrows the state, so a timeout or a crash never loses it;
/// - [`Saga::apply`] folds that transition's effect into the next state (pure, no I/O);
/// - [`Saga::rollback`] turns a forward state whose step failed for good into the first
///   compensation state (or [`Cursor::Compensated`] when nothing needs undoing);
/// - the state survives a JSON round trip and resumes on a fresh instance of the saga type.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a saga",
    label = "this type has no `#[saga]` impl block",
    note = "put `#[saga]` on an inherent `impl {Self} {{ ... }}` block whose async fns carry `#[step(...)]`"
)]
pub trait Saga: Send + Sync + 'static {
    /// What the caller hands to the saga; the first step's data parameter.
    type Input: Serialize + DeserializeOwned + Send + Sync + 'static;
    /// What a completed saga returns: the last step's output.
    type Output: Serialize + DeserializeOwned + Send + Sync + 'static;
    /// One variant per point of the flow, carrying the input and every output so far.
    type State: Serialize + DeserializeOwned + Send + Sync + fmt::Debug + 'static;
    /// The result of one transition, folded into the state by [`Saga::apply`].
    type Effect: Send + 'static;

    /// The static description of the steps: names, kinds, compensations, options.
    fn description() -> &'static SagaDescription;

    /// The state before the first step.
    fn start(input: Self::Input) -> Self::State;

    /// What the next transition from `state` does.
    fn cursor(state: &Self::State) -> Cursor;

    /// Runs the step or compensation that [`Saga::cursor`] names for `state`.
    ///
    /// Calling it on a terminal state returns a final [`StepError`].
    fn execute<'a>(
        &'a self,
        cx: &'a SagaContext,
        state: &'a Self::State,
    ) -> impl Future<Output = Result<Self::Effect, StepError>> + Send + 'a;

    /// Folds the effect of the transition that [`Saga::execute`] ran into the next state.
    fn apply(state: Self::State, effect: Self::Effect) -> Self::State;

    /// From a forward state whose step failed for good, the first compensation state: the
    /// compensation of the last completed compensatable step, or the compensated state when
    /// no step needs undoing. Any other state is returned unchanged.
    fn rollback(state: Self::State) -> Self::State;

    /// The output of a completed state; any other state is handed back.
    fn finish(state: Self::State) -> Result<Self::Output, Self::State>;

    /// The saga input carried by every state.
    fn input(state: &Self::State) -> &Self::Input;
}

/// Compile-time checks that `#[saga]` generates, each called with the user's type or step so
/// that rustc reports an unmet bound on the user's token, with the fn's name saying why the
/// bound is needed. Not a public API: no stability promise.
#[doc(hidden)]
pub mod checks {
    use std::fmt;
    use std::future::Future;

    use serde::Serialize;
    use serde::de::DeserializeOwned;

    /// The saga type runs every saga it is given, many at once, across threads.
    pub fn saga_type_is_shared_across_threads<T: ?Sized + Send + Sync + 'static>() {}

    /// A saga input or step output is kept in the saga state: serialised, stored, shipped and
    /// resumed on any replica, printed in logs.
    pub fn stored_in_the_saga_state<T>()
    where
        T: Serialize + DeserializeOwned + fmt::Debug + Send + Sync + 'static,
    {
    }

    /// A step or compensation runs on a multi-threaded executor, and may move between threads
    /// at each `.await`: its future must be `Send`.
    pub fn step_future_must_be_send<F: Future + Send>(
        future: F,
    ) -> impl Future<Output = F::Output> + Send {
        future
    }
}
