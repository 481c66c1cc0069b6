// The first step takes at most one data parameter: the saga input.
use sagaflow::{saga, SagaContext, StepResult};

pub struct Shop;

#[saga]
impl Shop {
    #[step(pivot)]
    async fn charge(&self, _cx: &SagaContext, req: &u32, user: &String) -> StepResult<u64> {
        Ok(u64::from(*req) + user.len() as u64)
    }
}

fn main() {}
