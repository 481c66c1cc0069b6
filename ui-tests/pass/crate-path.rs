// `#[saga(crate = ...)]`: the runtime re-exported under another path, no `sagaflow` import.
mod runtime {
    pub use sagaflow::*;
}

use runtime::{SagaContext, StepResult};

struct Ping;

#[runtime::saga(crate = crate::runtime)]
impl Ping {
    #[runtime::step(pivot)]
    async fn ping(&self, _cx: &SagaContext, n: &u8) -> StepResult<u16> {
        Ok(u16::from(*n) * 2)
    }
}

fn main() {
    use runtime::Saga;
    let state = Ping::start(21);
    let json = serde_json::to_string(&state).unwrap();
    assert_eq!(json, r#"{"Ping":{"n":21}}"#);
    let back: PingState = serde_json::from_str(&json).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let effect = rt.block_on(Ping.execute(&SagaContext::new("Ping", "t"), &back)).unwrap();
    assert_eq!(Ping::finish(Ping::apply(back, effect)).unwrap(), 42);
}
