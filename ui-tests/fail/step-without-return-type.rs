// A step returns `StepResult<T>`.
use sagaflow::{saga, SagaContext};

pub struct Shop;

#[saga]
impl Shop {
    #[step(pivot)]
    async fn charge(&self, _cx: &SagaContext, req: &u32) {
        let _ = req;
    }
}

fn main() {}
