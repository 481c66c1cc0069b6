// A step under a cfg that holds is checked like any other; one under a cfg that does not
// hold is not there at all (its mistake is not reported).
use sagaflow::{saga, SagaContext, StepResult};

pub struct Shop;

#[saga]
impl Shop {
    #[cfg(unix)]
    #[step(compensate = cancel_ordr)]
    async fn create_order(&self, _cx: &SagaContext, req: &u32) -> StepResult<u64> {
        Ok(u64::from(*req))
    }
    #[cfg(not(unix))]
    #[step(compensate = no_such_fn)]
    async fn create_order(&self, _cx: &SagaContext, req: &u32) -> StepResult<u64> {
        Ok(u64::from(*req))
    }
    async fn cancel_order(&self, _cx: &SagaContext, _order: &u64) -> StepResult<()> {
        Ok(())
    }

    #[step(pivot)]
    async fn charge(&self, _cx: &SagaContext, req: &u32) -> StepResult<u64> {
        Ok(u64::from(*req))
    }
}

fn main() {}
