// A fn cannot be both a step and a compensation.
use sagaflow::{saga, SagaContext, StepResult};

pub struct Shop;

#[saga]
impl Shop {
    #[step(compensate = charge)]
    async fn create_order(&self, _cx: &SagaContext, req: &u32) -> StepResult<u64> {
        Ok(u64::from(*req))
    }

    #[step(pivot)]
    async fn charge(&self, _cx: &SagaContext, create_order: &u64) -> StepResult<()> {
        let _ = create_order;
        Ok(())
    }
}

fn main() {}
