// A step's error type is `StepError`.
use sagaflow::{saga, SagaContext};

pub struct Shop;

#[saga]
impl Shop {
    #[step(pivot)]
    async fn charge(&self, _cx: &SagaContext, req: &u32) -> Result<u64, String> {
        Ok(u64::from(*req))
    }
}

fn main() {}
