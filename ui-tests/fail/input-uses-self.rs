// `Self` cannot name a type stored in the state enum, which lives outside the impl block.
use sagaflow::{saga, SagaContext, StepResult};

pub struct Shop;

#[saga]
impl Shop {
    #[step(pivot)]
    async fn charge(&self, _cx: &SagaContext, req: &Option<Box<Self>>) -> StepResult<u64> {
        Ok(u64::from(req.is_some()))
    }
}

fn main() {}
