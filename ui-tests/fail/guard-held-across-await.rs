// A std `MutexGuard` held across an `.await` makes the step's future not `Send`; the error
// points at the step (and rustc's note at the await).
use std::sync::Mutex;

use sagaflow::{saga, SagaContext, StepResult};

pub struct Shop {
    count: Mutex<u64>,
}

async fn audit() {}

#[saga]
impl Shop {
    #[step(pivot)]
    async fn charge(&self, _cx: &SagaContext, req: &u64) -> StepResult<u64> {
        let mut count = self.count.lock().unwrap();
        audit().await;
        *count += req;
        Ok(*count)
    }
}

fn main() {}
