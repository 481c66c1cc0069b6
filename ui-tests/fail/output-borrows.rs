// An output that borrows (`Cow<'_, str>`) cannot be stored in the saga state.
use std::borrow::Cow;

use sagaflow::{saga, SagaContext, StepResult};

pub struct Shop {
    name: String,
}

#[saga]
impl Shop {
    #[step(pivot)]
    async fn label(&self, _cx: &SagaContext, req: &u32) -> StepResult<Cow<'_, str>> {
        let _ = req;
        Ok(Cow::Borrowed(&self.name))
    }
}

fn main() {}
