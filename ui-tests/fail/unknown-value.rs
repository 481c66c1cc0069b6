// A step uses a value that no step produces (a typo of `create_order`).
use sagaflow::{saga, SagaContext, StepResult};

pub struct Shop;

#[saga]
impl Shop {
    #[step(compensate = cancel_order)]
    async fn create_order(&self, _cx: &SagaContext, req: &u32) -> StepResult<u64> {
        Ok(u64::from(*req))
    }
    async fn cancel_order(&self, _cx: &SagaContext, _order: &u64) -> StepResult<()> {
        Ok(())
    }

    #[step(pivot)]
    async fn charge(&self, _cx: &SagaContext, create_ordr: &u64) -> StepResult<u64> {
        Ok(*create_ordr)
    }
}

fn main() {}
