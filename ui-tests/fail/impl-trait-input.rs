// The saga input is stored in the state: it cannot be an `impl Trait`.
use sagaflow::{saga, SagaContext, StepResult};

pub struct Shop;

#[saga]
impl Shop {
    #[step(pivot)]
    async fn charge(&self, _cx: &SagaContext, req: &impl ToString) -> StepResult<String> {
        Ok(req.to_string())
    }
}

fn main() {}
