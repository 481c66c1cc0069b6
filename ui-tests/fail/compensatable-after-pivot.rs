// A compensatable step after the pivot.
use sagaflow::{saga, SagaContext, StepResult};

pub struct Shop;

#[saga]
impl Shop {
    #[step(pivot)]
    async fn charge(&self, _cx: &SagaContext, req: &u32) -> StepResult<u64> {
        Ok(u64::from(*req))
    }

    #[step(compensate = cancel_order)]
    async fn create_order(&self, _cx: &SagaContext, charge: &u64) -> StepResult<u64> {
        Ok(*charge)
    }
    async fn cancel_order(&self, _cx: &SagaContext, _order: &u64) -> StepResult<()> {
        Ok(())
    }
}

fn main() {}
