// A type already has the name of the generated hidden effect alias (`__ShopEffect`): one
// error, on the saga type.
use sagaflow::{saga, SagaContext, StepResult};

pub struct Shop;

#[allow(non_camel_case_types, dead_code)]
pub struct __ShopEffect;

#[saga]
impl Shop {
    #[step(pivot)]
    async fn charge(&self, _cx: &SagaContext, req: &u32) -> StepResult<u64> {
        Ok(u64::from(*req))
    }
}

fn main() {}
