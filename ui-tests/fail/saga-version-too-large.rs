// A version is a `u32`.
use sagaflow::{saga, SagaContext, StepResult};

pub struct Shop;

#[saga(version = 5000000000)]
impl Shop {
    #[step(pivot)]
    async fn charge(&self, _cx: &SagaContext, req: &u32) -> StepResult<u64> {
        Ok(u64::from(*req))
    }
}

fn main() {}
