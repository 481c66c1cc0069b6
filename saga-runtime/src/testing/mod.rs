//! A test kit for saga definitions: run a saga with fakes, inject failures at any step or
//! compensation, and assert what ran — one line per scenario.
//!
//! [`SagaTest`] drives the saga in the bare sync mode (no store, no broker, no backoff
//! waits) through a wrapper that records every attempt of every transition and injects the
//! [`Fault`]s of the scenario. The saga value is yours: give it fake clients that record
//! what they were asked to do, and check them too.
//!
//! ```
//! use saga_runtime::error::StuckAt;
//! use saga_runtime::testing::{Fault, SagaTest};
//! use saga_runtime::{SagaContext, StepResult};
//! use saga_macros::saga;
//!
//! /// A trip: the flight, then the hotel, then the payment (the pivot), then the e-mail.
//! #[derive(Default)]
//! struct Trip; // a real saga holds its clients here; a test gives it fakes
//!
//! #[saga(crate = saga_runtime)]
//! impl Trip {
//!     #[step(compensate = cancel_flight)]
//!     async fn book_flight(&self, _cx: &SagaContext, city: &String) -> StepResult<u32> {
//!         Ok(city.len() as u32)
//!     }
//!     async fn cancel_flight(&self, _cx: &SagaContext, _flight: &u32) -> StepResult<()> {
//!         Ok(())
//!     }
//!     #[step(compensate = cancel_hotel)]
//!     async fn book_hotel(&self, _cx: &SagaContext, book_flight: &u32) -> StepResult<u32> {
//!         Ok(book_flight + 1)
//!     }
//!     async fn cancel_hotel(&self, _cx: &SagaContext, _hotel: &u32) -> StepResult<()> {
//!         Ok(())
//!     }
//!     #[step(pivot)]
//!     async fn charge_card(&self, _cx: &SagaContext, book_hotel: &u32) -> StepResult<u32> {
//!         Ok(*book_hotel)
//!     }
//!     #[step(retriable, retry(max_attempts = 3))]
//!     async fn send_confirmation(&self, _cx: &SagaContext, charge_card: &u32) -> StepResult<u32> {
//!         Ok(*charge_card)
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let test = SagaTest::new(Trip);
//!
//! // The happy path: every step once, nothing undone.
//! test.run("Oslo".to_string()).await.assert_completed();
//!
//! // Every failure point at once: for each step, a final failure there must undo exactly
//! // the compensatable steps before it, in reverse, once each (a retriable step after the
//! // pivot is retried to its bound and then stuck instead, with nothing undone).
//! test.assert_every_failure_compensates(|| "Oslo".to_string()).await;
//!
//! // One scenario: the card is declined, and cancelling the hotel fails for good.
//! let run = test
//!     .run_with("Oslo".to_string(), [Fault::step("charge_card"), Fault::compensation("book_hotel")])
//!     .await;
//! run.assert_stuck_at(&StuckAt::Compensation("book_hotel".into()));
//! assert!(run.compensations_done().is_empty(), "the flight is not cancelled before the hotel");
//!
//! // A lost reply: the hotel is booked but the engine does not hear it; the retry books
//! // it again (steps must be idempotent), and the saga completes.
//! let run = test
//!     .run_with("Oslo".to_string(), [Fault::step("book_hotel").loses_reply().times(1)])
//!     .await;
//! assert_eq!(run.attempts("book_hotel", false), 2);
//! assert_eq!(*run.output(), 5);
//! # }
//! //! ```

mod fault;
mod probe;
mod run;

use std::sync::{Arc, Mutex};

pub use fault::Fault;
pub use run::{Run, Transition};

use crate::engine::SyncEngine;
use crate::error::StuckAt;
use crate::{Saga, SagaContext, StepKind};
use probe::Probed;

/// Runs one saga definition under test: see the [module docs](self).
pub struct SagaTest<S: Saga> {
    saga: Arc<S>,
    engine: SyncEngine,
    trace_id: String,
}

impl<S: Saga> std::fmt::Debug for SagaTest<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SagaTest")
            .field("saga", &S::description().name)
            .field("trace_id", &self.trace_id)
            .finish()
    }
}

impl<S: Saga> SagaTest<S> {
    /// A test of `saga` (with whatever fakes it holds). Runs use trace id `test` and retry
    /// at once instead of backing off; the retry bounds are the saga's own.
    pub fn new(saga: S) -> Self {
        Self::shared(Arc::new(saga))
    }

    /// The same, for a saga already shared.
    pub fn shared(saga: Arc<S>) -> Self {
        Self {
            saga,
            engine: SyncEngine::new().without_backoff(),
            trace_id: "test".to_string(),
        }
    }

    /// The trace id the steps see (`cx.trace_id()`, and the idempotency keys built from it).
    pub fn trace_id(mut self, trace_id: impl Into<String>) -> Self {
        self.trace_id = trace_id.into();
        self
    }

    /// The saga under test.
    pub fn saga(&self) -> &Arc<S> {
        &self.saga
    }

    /// Runs the saga on `input` with no fault injected.
    pub async fn run(&self, input: S::Input) -> Run<S> {
        self.run_with(input, []).await
    }

    /// Runs the saga on `input` with `faults` injected (the first fault that matches a
    /// transition applies).
    pub async fn run_with(
        &self,
        input: S::Input,
        faults: impl IntoIterator<Item = Fault>,
    ) -> Run<S> {
        let probed = Probed {
            inner: Arc::clone(&self.saga),
            faults: Mutex::new(faults.into_iter().collect()),
            log: Mutex::new(Vec::new()),
        };
        let cx = SagaContext::for_saga::<S>(self.trace_id.as_str());
        let result = self.engine.run(&probed, &cx, input).await;
        Run {
            result,
            transitions: probed.log.into_inner().expect("log lock"),
        }
    }

    /// For every forward step in turn, runs the saga on `input()` with that step failing for
    /// good, and asserts the saga's promise: a compensatable step or the pivot failing undoes
    /// exactly the compensatable steps before it, in reverse, each once, and no later step
    /// runs; a retriable step (after the pivot) is retried to its bound and the saga is stuck
    /// there, with nothing undone. Panics naming the failure point and the run's trail.
    pub async fn assert_every_failure_compensates(&self, input: impl Fn() -> S::Input) {
        for step in S::description().steps {
            let run = self.run_with(input(), [Fault::step(step.name)]).await;
            match step.kind {
                StepKind::Compensatable | StepKind::Pivot => {
                    run.assert_compensated_after(step.name);
                }
                StepKind::Retriable => {
                    run.assert_stuck_at(&StuckAt::Step(step.name.to_string()));
                    assert_eq!(
                        run.attempts(step.name, false),
                        step.retry.max_attempts as usize,
                        "retriable step `{}` is tried up to its bound; trail: {}",
                        step.name,
                        run.trail()
                    );
                    assert!(
                        run.compensations_done().is_empty(),
                        "nothing is undone after the pivot; trail: {}",
                        run.trail()
                    );
                }
            }
        }
    }
}
