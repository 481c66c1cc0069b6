// A saga type runs sagas long after a borrow ends: it cannot have a lifetime parameter.
use sagaflow::{saga, SagaContext, StepResult};

pub struct Booking<'a> {
    prefix: &'a str,
}

#[saga]
impl<'a> Booking<'a> {
    #[step(pivot)]
    async fn create_order(&self, _cx: &SagaContext, req: &u32) -> StepResult<String> {
        Ok(format!("{}{req}", self.prefix))
    }
}

fn main() {}
