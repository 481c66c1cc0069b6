// The saga input is stored in the state: it must be an owned type (`&String`, not `&str`).
use sagaflow::{saga, SagaContext, StepResult};

pub struct Shop;

#[saga]
impl Shop {
    #[step(pivot)]
    async fn charge(&self, _cx: &SagaContext, req: &str) -> StepResult<usize> {
        Ok(req.len())
    }
}

fn main() {}
