// A step output is stored in the state, so it must be serialisable.
use sagaflow::{saga, SagaContext, StepResult};

pub struct Shop;

#[derive(Debug)]
pub struct Ticket(u32);

#[saga]
impl Shop {
    #[step(pivot)]
    async fn charge(&self, _cx: &SagaContext, req: &u32) -> StepResult<Ticket> {
        Ok(Ticket(*req))
    }
}

fn main() {}
