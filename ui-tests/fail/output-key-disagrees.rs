// `output = T` must be the `T` the step really returns: rustc checks it on the return type.
use sagaflow::{saga, SagaContext, StepResult};

type R<T> = StepResult<T>;

pub struct Shop;

#[saga]
impl Shop {
    #[step(pivot, output = u32)]
    async fn charge(&self, _cx: &SagaContext, req: &u32) -> R<u64> {
        Ok(u64::from(*req))
    }
}

fn main() {}
