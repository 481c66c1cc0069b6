// A first step without data parameter (the input is `()`), helper methods, consts and a
// fully qualified context type left alone; compensation failure and terminal states.
use sagaflow::{Cursor, Saga, StepError, StepResult, saga};

struct Cron {
    base: u32,
}

#[saga]
impl Cron {
    const LIMIT: u32 = 10;

    fn helper(&self) -> u32 {
        self.base.min(Self::LIMIT)
    }

    #[step(compensate = forget, retry(max_attempts = 1))]
    async fn tick(&self, _cx: &sagaflow::SagaContext) -> StepResult<u32> {
        Ok(self.helper())
    }

    async fn forget(&self, _cx: &sagaflow::SagaContext, tick: &u32) -> StepResult<()> {
        if *tick > 5 { Err(StepError::retryable("later")) } else { Ok(()) }
    }

    #[step(pivot, retry(initial_backoff_ms = 1))]
    async fn tock(&self, _cx: &sagaflow::SagaContext, input: &(), tick: &u32) -> StepResult<u32> {
        let () = *input;
        Err(StepError::fatal(format!("tock {tick}")))
    }
}

fn main() {
    let description = <Cron as Saga>::description();
    assert_eq!(description.input, "input");
    assert_eq!(description.steps[0].retry.max_attempts, 1);
    assert_eq!(description.steps[1].retry.max_attempts, sagaflow::RetryPolicy::DEFAULT.max_attempts);
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let cx = sagaflow::SagaContext::new("Cron", "t");
    let saga = Cron { base: 7 };
    let state = Cron::start(());
    let effect = rt.block_on(saga.execute(&cx, &state)).unwrap();
    let state = Cron::apply(state, effect);
    let error = rt.block_on(saga.execute(&cx, &state)).unwrap_err();
    assert_eq!(error.message(), "tock 7");
    let state = Cron::rollback(state);
    assert_eq!(Cron::cursor(&state), Cursor::Compensate(0));
    assert!(rt.block_on(saga.execute(&cx, &state)).unwrap_err().is_retryable());
    let effect = rt.block_on(Cron { base: 2 }.execute(&cx, &Cron::start(()))).unwrap();
    let state = Cron::apply(state, effect);
    // An effect that does not belong to the state's cursor leaves the state unchanged.
    assert_eq!(Cron::cursor(&state), Cursor::Compensate(0));
}
