// The saga name names topics and records: letters, digits, `_` and `-` only.
use sagaflow::{saga, SagaContext, StepResult};

pub struct Shop;

#[saga(name = "shop.orders v2")]
impl Shop {
    #[step(pivot)]
    async fn charge(&self, _cx: &SagaContext, req: &u32) -> StepResult<u64> {
        Ok(u64::from(*req))
    }
}

fn main() {}
