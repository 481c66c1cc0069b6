// Three independent mistakes, all reported in one build: a missing compensation, an
// unknown key, a step that is not async.
use sagaflow::{saga, SagaContext, StepResult};

pub struct Shop;

#[saga]
impl Shop {
    #[step(timeout_ms = 100)]
    async fn create_order(&self, _cx: &SagaContext, req: &u32) -> StepResult<u64> {
        Ok(u64::from(*req))
    }

    #[step(pivot, retires = 3)]
    async fn charge(&self, _cx: &SagaContext, create_order: &u64) -> StepResult<u64> {
        Ok(*create_order)
    }

    #[step(retriable)]
    fn notify(&self, _cx: &SagaContext, charge: &u64) -> StepResult<u64> {
        Ok(*charge)
    }
}

fn main() {}
