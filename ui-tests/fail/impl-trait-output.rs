// An `impl Trait` output cannot be stored in the state: it has to be deserialised later.
use sagaflow::{saga, SagaContext, StepResult};

pub struct Shop;

#[saga]
impl Shop {
    #[step(pivot)]
    async fn charge(&self, _cx: &SagaContext, req: &u32) -> StepResult<impl std::fmt::Debug> {
        Ok(*req)
    }
}

fn main() {}
