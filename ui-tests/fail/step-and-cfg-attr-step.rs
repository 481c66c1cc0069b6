// A `#[step]` and a `cfg_attr(..., step(...))` that holds give the fn two step attributes.
use sagaflow::{saga, SagaContext, StepResult};

pub struct Shop;

#[saga]
impl Shop {
    #[step(pivot)]
    #[cfg_attr(unix, step(pivot, timeout_ms = 10))]
    async fn charge(&self, _cx: &SagaContext, req: &u32) -> StepResult<u64> {
        Ok(u64::from(*req))
    }
}

fn main() {}
