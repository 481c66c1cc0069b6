// A builder that is never built does nothing: #[must_use], and here the lint is an error.
#![deny(unused_must_use)]

use std::sync::Arc;

use sagaflow::engine::Orchestrator;
use sagaflow::store::MemoryStore;
use sagaflow::transport::{MemoryTransport, TransportConfig};
use sagaflow::{SagaContext, StepResult, saga};

struct Ping;

#[saga]
impl Ping {
    #[step(pivot)]
    async fn ping(&self, _cx: &SagaContext, name: &String) -> StepResult<String> {
        Ok(name.clone())
    }
}

fn main() {
    Orchestrator::builder(
        Arc::new(Ping),
        Arc::new(MemoryTransport::new(TransportConfig::default())),
        Arc::new(MemoryStore::default()),
    )
    .on_complete(|_| async {});
}
