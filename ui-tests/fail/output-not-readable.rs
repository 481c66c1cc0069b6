// Through an alias, the macro cannot see `T` of `StepResult<T>`: it asks for `output = T`
// instead of guessing.
use sagaflow::{saga, SagaContext, StepResult};

type R<T> = StepResult<T>;

pub struct Shop;

#[saga]
impl Shop {
    #[step(pivot)]
    async fn charge(&self, _cx: &SagaContext, req: &u32) -> R<u64> {
        Ok(u64::from(*req))
    }
}

fn main() {}
