// One compensation shared by two steps.
use sagaflow::{saga, SagaContext, StepResult};

pub struct Shop;

#[saga]
impl Shop {
    #[step(compensate = undo)]
    async fn create_order(&self, _cx: &SagaContext, req: &u32) -> StepResult<u64> {
        Ok(u64::from(*req))
    }

    #[step(compensate = undo)]
    async fn reserve(&self, _cx: &SagaContext, create_order: &u64) -> StepResult<u64> {
        Ok(*create_order)
    }

    async fn undo(&self, _cx: &SagaContext, _value: &u64) -> StepResult<()> {
        Ok(())
    }
}

fn main() {}
