// A type of the user's already has the name of the generated state alias (`ShopState`): one
// error, on the saga type, and nothing else breaks.
use sagaflow::{saga, SagaContext, StepResult};

pub struct Shop;

#[allow(dead_code)]
pub enum ShopState {
    Open,
    Closed,
}

#[saga]
impl Shop {
    #[step(pivot)]
    async fn charge(&self, _cx: &SagaContext, req: &u32) -> StepResult<u64> {
        Ok(u64::from(*req))
    }
}

fn main() {}
