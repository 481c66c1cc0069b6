// The saga type is shared by every saga it runs, across threads: a `RefCell` cache makes it
// not `Sync`. One error, on the type in `impl Shop`.
use std::cell::RefCell;
use std::collections::HashMap;

use sagaflow::{saga, SagaContext, StepResult};

pub struct Shop {
    cache: RefCell<HashMap<u32, u64>>,
}

#[saga]
impl Shop {
    #[step(pivot)]
    async fn charge(&self, _cx: &SagaContext, req: &u32) -> StepResult<u64> {
        Ok(*self.cache.borrow().get(req).unwrap_or(&0))
    }
}

fn main() {}
