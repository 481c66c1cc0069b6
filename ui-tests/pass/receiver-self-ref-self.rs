// `self: &Self` is the same receiver as `&self`.
use sagaflow::{Saga, SagaContext, StepResult, saga};

struct Mail {
    domain: String,
}

#[saga]
impl Mail {
    #[step(compensate = unsend)]
    async fn send(self: &Self, _cx: &SagaContext, to: &String) -> StepResult<String> {
        Ok(format!("{to}@{}", self.domain))
    }
    async fn unsend(self: &Self, _cx: &SagaContext, _send: &String) -> StepResult<()> {
        Ok(())
    }

    #[step(pivot)]
    async fn log(&self, _cx: &SagaContext, send: &String) -> StepResult<usize> {
        Ok(send.len())
    }
}

fn main() {
    let mail = Mail { domain: "example.org".into() };
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let cx = SagaContext::new("Mail", "trace-self");
    let mut state = Mail::start("ann".into());
    while !Mail::cursor(&state).is_terminal() {
        let effect = rt.block_on(mail.execute(&cx, &state)).unwrap();
        state = Mail::apply(state, effect);
    }
    assert_eq!(Mail::finish(state).unwrap(), "ann@example.org".len());
}
