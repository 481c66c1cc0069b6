// A step disabled with `#[cfg(...)]` vanishes from the flow; a step declared through
// `#[cfg_attr(pred, step(...))]` is a step when `pred` holds, a plain method otherwise.
use sagaflow::{Saga, SagaContext, StepResult, saga};

struct Shop;

#[saga]
impl Shop {
    #[step(compensate = release)]
    async fn reserve(&self, _cx: &SagaContext, qty: &u32) -> StepResult<u32> {
        Ok(*qty)
    }
    async fn release(&self, _cx: &SagaContext, _reserve: &u32) -> StepResult<()> {
        Ok(())
    }

    // Disabled: neither a step nor a method.
    #[cfg(any())]
    #[step(compensate = undo_audit)]
    async fn audit(&self, _cx: &SagaContext, reserve: &u32) -> StepResult<u32> {
        Ok(*reserve)
    }
    #[cfg(any())]
    async fn undo_audit(&self, _cx: &SagaContext, _audit: &u32) -> StepResult<()> {
        Ok(())
    }

    #[cfg_attr(all(), step(pivot))]
    async fn charge(&self, _cx: &SagaContext, reserve: &u32) -> StepResult<u64> {
        Ok(u64::from(*reserve) * 5)
    }

    // A step only when the predicate holds: here a plain method.
    #[cfg_attr(any(), step(retriable))]
    #[allow(dead_code)]
    async fn notify(&self, _cx: &SagaContext, charge: &u64) -> StepResult<u64> {
        Ok(*charge)
    }
}

fn main() {
    let names: Vec<_> = Shop::description().steps.iter().map(|s| s.name).collect();
    assert_eq!(names, ["reserve", "charge"]);
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let cx = SagaContext::new("Shop", "trace-cfg");
    let mut state = Shop::start(4);
    while !Shop::cursor(&state).is_terminal() {
        let effect = rt.block_on(Shop.execute(&cx, &state)).unwrap();
        state = Shop::apply(state, effect);
    }
    assert_eq!(Shop::finish(state).unwrap(), 20);
}
