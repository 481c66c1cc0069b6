// `retry` takes a list of keys, not a number.
use sagaflow::{saga, SagaContext, StepResult};

pub struct Shop;

#[saga]
impl Shop {
    #[step(pivot, retry = 3)]
    async fn charge(&self, _cx: &SagaContext, req: &u32) -> StepResult<u64> {
        Ok(u64::from(*req))
    }
}

fn main() {}
