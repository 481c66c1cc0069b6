// A saga cannot be generic.
use sagaflow::{saga, SagaContext, StepResult};

pub struct Shop<T>(T);

#[saga]
impl<T: Send + Sync + 'static> Shop<T> {
    #[step(pivot)]
    async fn charge(&self, _cx: &SagaContext, req: &u32) -> StepResult<u64> {
        Ok(u64::from(*req))
    }
}

fn main() {}
