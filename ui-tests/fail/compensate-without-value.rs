// `compensate` names the compensation: `compensate = fn_name`.
use sagaflow::{saga, SagaContext, StepResult};

pub struct Shop;

#[saga]
impl Shop {
    #[step(compensate)]
    async fn create_order(&self, _cx: &SagaContext, req: &u32) -> StepResult<u64> {
        Ok(u64::from(*req))
    }
    async fn cancel_order(&self, _cx: &SagaContext, _order: &u64) -> StepResult<()> {
        Ok(())
    }

    #[step(pivot)]
    async fn charge(&self, _cx: &SagaContext, create_order: &u64) -> StepResult<u64> {
        Ok(*create_order)
    }
}

fn main() {}
