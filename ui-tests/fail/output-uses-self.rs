// `Self` cannot name a type stored in the state enum, which lives outside the impl block.
use sagaflow::{saga, SagaContext, StepResult};

pub struct Shop;

#[saga]
impl Shop {
    #[step(pivot)]
    async fn charge(&self, _cx: &SagaContext, req: &u32) -> StepResult<Option<Self>> {
        let _ = req;
        Ok(None)
    }
}

fn main() {}
