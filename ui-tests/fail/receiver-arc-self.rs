// A step borrows the shared saga instance: `&self` (or `self: &Self`), not `self: Arc<Self>`.
use std::sync::Arc;

use sagaflow::{saga, SagaContext, StepResult};

pub struct Shop;

#[saga]
impl Shop {
    #[step(pivot)]
    async fn charge(self: Arc<Self>, _cx: &SagaContext, req: &u32) -> StepResult<u64> {
        Ok(u64::from(*req))
    }
}

fn main() {}
