// A data parameter's type is the type of the value it names (`create_order` is a `u64`).
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
    async fn charge(&self, _cx: &SagaContext, create_order: &String) -> StepResult<usize> {
        Ok(create_order.len())
    }
}

fn main() {}
