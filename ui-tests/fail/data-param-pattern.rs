// A data parameter is a plain name: the name says which value it receives.
use sagaflow::{saga, SagaContext, StepResult};

pub struct Shop;

#[saga]
impl Shop {
    #[step(pivot)]
    async fn charge(&self, _cx: &SagaContext, (a, b): &(u32, u32)) -> StepResult<u64> {
        Ok(u64::from(a + b))
    }
}

fn main() {}
