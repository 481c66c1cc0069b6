// `orchestrator.serve().await?;` drops the consumers at once, so no async saga would ever run
// on this replica: `Consumers` is #[must_use], and here the lint is an error.
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

async fn start() -> Result<(), Box<dyn std::error::Error>> {
    let orchestrator = Orchestrator::builder(
        Arc::new(Ping),
        Arc::new(MemoryTransport::new(TransportConfig::default())),
        Arc::new(MemoryStore::default()),
    )
    .build();
    orchestrator.serve().await?;
    Ok(())
}

fn main() {
    let _ = start;
}
