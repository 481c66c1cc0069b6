// `#[step]` inside a `cfg_attr` is still a `#[step]`: it goes on an async fn.
use sagaflow::{saga, SagaContext, StepResult};

pub struct Shop;

#[saga]
impl Shop {
    #[cfg_attr(all(), step(pivot))]
    const LIMIT: u32 = 3;

    #[step(pivot)]
    async fn charge(&self, _cx: &SagaContext, req: &u32) -> StepResult<u64> {
        Ok(u64::from(*req.min(&Self::LIMIT)))
    }
}

fn main() {}
