// Keys are separated by commas.
use sagaflow::{saga, SagaContext, StepResult};

pub struct Shop;

#[saga]
impl Shop {
    #[step(pivot timeout_ms = 100)]
    async fn charge(&self, _cx: &SagaContext, req: &u32) -> StepResult<u64> {
        Ok(u64::from(*req))
    }
}

fn main() {}
