// `#[step]` on a fn that is not in a `#[saga]` impl block.
use sagaflow::{step, SagaContext, StepResult};

pub struct Shop;

impl Shop {
    #[step(pivot)]
    pub async fn charge(&self, _cx: &SagaContext, req: &u32) -> StepResult<u32> {
        Ok(*req)
    }
}

fn main() {}
