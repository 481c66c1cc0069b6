//! [`Probed`]: the saga under test, wrapped so that every transition is recorded and faults
//! are injected, with the same state, effects and description as the saga itself.

use std::sync::{Arc, Mutex};

use super::fault::{Effect, Fault};
use super::run::Transition;
use crate::{Cursor, Saga, SagaContext, SagaDescription, StepError};

/// The wrapped saga; it implements [`Saga`] by delegating every pure function.
pub(super) struct Probed<S: Saga> {
    pub(super) inner: Arc<S>,
    pub(super) faults: Mutex<Vec<Fault>>,
    pub(super) log: Mutex<Vec<Transition>>,
}

impl<S: Saga> Probed<S> {
    /// The effect of the first fault that hits this transition, if any.
    fn fault_for(&self, step: &str, compensation: bool) -> Option<Effect> {
        let mut faults = self.faults.lock().expect("faults lock");
        faults
            .iter_mut()
            .find_map(|fault| fault.hits(step, compensation).then(|| fault.effect.clone()))
    }
}

impl<S: Saga> Saga for Probed<S> {
    type Input = S::Input;
    type Output = S::Output;
    type State = S::State;
    type Effect = S::Effect;

    fn description() -> &'static SagaDescription {
        S::description()
    }

    fn start(input: Self::Input) -> Self::State {
        S::start(input)
    }

    fn cursor(state: &Self::State) -> Cursor {
        S::cursor(state)
    }

    async fn execute<'a>(
        &'a self,
        cx: &'a SagaContext,
        state: &'a Self::State,
    ) -> Result<Self::Effect, StepError> {
        let compensation = matches!(S::cursor(state), Cursor::Compensate(_));
        let fault = self.fault_for(cx.step(), compensation);
        let (result, injected) = match fault {
            Some(Effect::Refuse(error)) => (Err(error), true),
            Some(Effect::LoseReply) => match self.inner.execute(cx, state).await {
                Ok(_) => (
                    Err(StepError::ambiguous(format!(
                        "injected: the reply of `{}` was lost after it took effect",
                        cx.step()
                    ))),
                    true,
                ),
                Err(error) => (Err(error), false),
            },
            None => (self.inner.execute(cx, state).await, false),
        };
        self.log.lock().expect("log lock").push(Transition {
            step: cx.step(),
            compensation,
            attempt: cx.attempt(),
            error: result.as_ref().err().cloned(),
            injected,
        });
        result
    }

    fn apply(state: Self::State, effect: Self::Effect) -> Self::State {
        S::apply(state, effect)
    }

    fn rollback(state: Self::State) -> Self::State {
        S::rollback(state)
    }

    fn finish(state: Self::State) -> Result<Self::Output, Self::State> {
        S::finish(state)
    }

    fn input(state: &Self::State) -> &Self::Input {
        S::input(state)
    }
}
