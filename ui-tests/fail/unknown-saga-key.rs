// An unknown key of `#[saga(...)]`: the valid ones are listed, the closest suggested.
use sagaflow::{saga, SagaContext, StepResult};

pub struct Shop;

#[saga(nmae = "shop")]
impl Shop {
    #[step(pivot)]
    async fn charge(&self, _cx: &SagaContext, req: &u32) -> StepResult<u64> {
        Ok(u64::from(*req))
    }
}

fn main() {}
