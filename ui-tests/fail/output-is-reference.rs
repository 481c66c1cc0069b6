// A step output is stored in the saga state, which outlives every borrow.
use sagaflow::{saga, SagaContext, StepResult};

pub struct Shop;

#[saga]
impl Shop {
    #[step(pivot)]
    async fn label(&self, _cx: &SagaContext, req: &u32) -> StepResult<&'static str> {
        Ok(if *req > 1 { "many" } else { "one" })
    }
}

fn main() {}
