// Two definitions of one step under exclusive cfgs, and a step that exists on one target
// only: the saga is expanded once per configuration and rustc keeps the one that holds.
use sagaflow::engine::SyncEngine;
use sagaflow::{Saga, SagaContext, StepResult, saga};

struct Ship;

#[saga]
impl Ship {
    #[cfg(unix)]
    #[step(compensate = unpack)]
    async fn pack(&self, _cx: &SagaContext, items: &Vec<String>) -> StepResult<usize> {
        Ok(items.len())
    }
    #[cfg(not(unix))]
    #[step(compensate = unpack)]
    async fn pack(&self, _cx: &SagaContext, items: &Vec<String>) -> StepResult<usize> {
        Ok(items.len() + 100)
    }
    async fn unpack(&self, _cx: &SagaContext, _pack: &usize) -> StepResult<()> {
        Ok(())
    }

    #[cfg_attr(unix, step(pivot))]
    #[cfg_attr(not(unix), step(pivot, timeout_ms = 10))]
    async fn send(&self, _cx: &SagaContext, pack: &usize) -> StepResult<String> {
        Ok(format!("{pack} parcels"))
    }

    #[cfg(target_os = "none")]
    #[step(retriable)]
    async fn track(&self, _cx: &SagaContext, send: &String) -> StepResult<String> {
        Ok(send.clone())
    }
}

fn main() {
    let steps = Ship::description().steps;
    assert_eq!(steps.len(), 2);
    assert_eq!(steps[1].timeout.is_none(), cfg!(unix));
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let cx = SagaContext::new("Ship", "trace-alt");
    let out = rt
        .block_on(SyncEngine::new().run(&Ship, &cx, vec!["a".into(), "b".into()]))
        .unwrap();
    let expected = if cfg!(unix) { "2 parcels" } else { "102 parcels" };
    assert_eq!(out, expected);
}
