// The saga input is stored in the state: a `Vec<&str>` borrows.
use sagaflow::{saga, SagaContext, StepResult};

pub struct Shop;

#[saga]
impl Shop {
    #[step(pivot)]
    async fn count(&self, _cx: &SagaContext, words: &Vec<&str>) -> StepResult<usize> {
        Ok(words.len())
    }
}

fn main() {}
