// Retry values are integer literals (milliseconds).
use sagaflow::{saga, SagaContext, StepResult};

pub struct Shop;

#[saga]
impl Shop {
    #[step(compensate = cancel_order, retry(initial_backoff_ms = "20ms"))]
    async fn create_order(&self, _cx: &SagaContext, req: &u32) -> StepResult<u64> {
        Ok(u64::from(*req))
    }
    async fn cancel_order(&self, _cx: &SagaContext, _order: &u64) -> StepResult<()> {
        Ok(())
    }
}

fn main() {}
