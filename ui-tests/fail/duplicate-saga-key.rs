// A key of `#[saga(...)]` is given once.
use sagaflow::{saga, SagaContext, StepResult};

pub struct Shop;

#[saga(name = "shop", version = 2, name = "store")]
impl Shop {
    #[step(pivot)]
    async fn charge(&self, _cx: &SagaContext, req: &u32) -> StepResult<u64> {
        Ok(u64::from(*req))
    }
}

fn main() {}
