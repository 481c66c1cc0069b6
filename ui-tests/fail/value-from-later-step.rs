// A step uses the output of a step that runs after it.
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
    async fn charge(&self, _cx: &SagaContext, notify: &String) -> StepResult<u64> {
        Ok(notify.len() as u64)
    }

    #[step(retriable)]
    async fn notify(&self, _cx: &SagaContext, create_order: &u64) -> StepResult<String> {
        Ok(create_order.to_string())
    }
}

fn main() {}
