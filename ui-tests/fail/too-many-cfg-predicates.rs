// The saga is expanded once per combination of the cfg predicates its steps depend on, so
// their number is bounded.
use sagaflow::{saga, SagaContext, StepResult};

pub struct Shop;

#[saga]
impl Shop {
    #[cfg_attr(feature = "a", step(pivot))]
    #[cfg_attr(feature = "b", step(pivot))]
    #[cfg_attr(feature = "c", step(pivot))]
    #[cfg_attr(feature = "d", step(pivot))]
    #[cfg_attr(feature = "e", step(pivot))]
    #[cfg_attr(feature = "f", step(pivot))]
    async fn charge(&self, _cx: &SagaContext, req: &u32) -> StepResult<u64> {
        Ok(u64::from(*req))
    }
}

fn main() {}
