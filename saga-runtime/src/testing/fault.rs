//! [`Fault`]: a failure injected into one step or compensation of a saga under test.

use crate::StepError;

/// What an injected fault does when its transition comes up.
#[derive(Clone, Debug)]
pub(super) enum Effect {
    /// The call is refused: the real step does not run, the error is returned.
    Refuse(StepError),
    /// The real step runs, then its reply is lost: an ambiguous (retryable, effect unknown)
    /// error is returned although the step took effect.
    LoseReply,
}

/// A failure injected into one step (or one compensation) of a saga under test: which
/// transition, what happens, and how many of its attempts it hits.
///
/// ```
/// use saga_runtime::StepError;
/// use saga_runtime::testing::Fault;
/// // The payment is declined (the step does not run), on every attempt.
/// let declined = Fault::step("charge_card").fails(StepError::fatal("declined"));
/// // The hotel is booked but the reply is lost, once; the retry then succeeds.
/// let lost = Fault::step("book_hotel").loses_reply().times(1);
/// // Cancelling the flight fails twice, then works.
/// let flaky = Fault::compensation("book_flight").fails(StepError::retryable("503")).times(2);
/// # let _ = (declined, lost, flaky);
/// ```
#[derive(Clone, Debug)]
#[must_use = "a Fault does nothing until it is passed to SagaTest::run_with"]
pub struct Fault {
    pub(super) step: String,
    pub(super) compensation: bool,
    pub(super) effect: Effect,
    pub(super) times: Option<u32>,
}

impl Fault {
    /// A fault in forward step `step` (by name). Until [`fails`](Self::fails) or
    /// [`loses_reply`](Self::loses_reply) says otherwise, the step is refused with a final
    /// error, on every attempt.
    pub fn step(step: &str) -> Self {
        Self {
            step: step.to_string(),
            compensation: false,
            effect: Effect::Refuse(StepError::fatal(format!("injected failure of `{step}`"))),
            times: None,
        }
    }

    /// A fault in the compensation of step `step` (by the step's name, not the compensation
    /// fn's). Until told otherwise, it is refused with a retryable error on every attempt,
    /// which leaves the saga stuck once the compensation policy gives up.
    pub fn compensation(step: &str) -> Self {
        Self {
            step: step.to_string(),
            compensation: true,
            effect: Effect::Refuse(StepError::retryable(format!(
                "injected failure of the compensation of `{step}`"
            ))),
            times: None,
        }
    }

    /// The call is refused with `error`; the real step does not run.
    pub fn fails(mut self, error: StepError) -> Self {
        self.effect = Effect::Refuse(error);
        self
    }

    /// The real step runs and takes effect, then its reply is lost: the engine sees an
    /// ambiguous error ([`StepError::ambiguous`]). Tests that the step is idempotent and that
    /// an unknown effect is reported.
    pub fn loses_reply(mut self) -> Self {
        self.effect = Effect::LoseReply;
        self
    }

    /// Only the first `n` attempts are hit; later ones run normally (default: every attempt).
    pub fn times(mut self, n: u32) -> Self {
        self.times = Some(n);
        self
    }

    /// Whether the fault hits this transition now; counts the hit.
    pub(super) fn hits(&mut self, step: &str, compensation: bool) -> bool {
        if self.step != step || self.compensation != compensation {
            return false;
        }
        match &mut self.times {
            Some(0) => false,
            Some(n) => {
                *n -= 1;
                true
            }
            None => true,
        }
    }
}
