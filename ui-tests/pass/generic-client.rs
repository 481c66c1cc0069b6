// `impl<C: Client> Booking<C>`: the type parameter names the client the steps call; the saga
// data (input and outputs) is concrete, so the state is one type for every `Booking<C>`.
use std::sync::atomic::{AtomicU32, Ordering};

use sagaflow::engine::SyncEngine;
use sagaflow::{Saga, SagaContext, StepResult, saga};

pub trait Client: Send + Sync + 'static {
    fn price(&self, sku: &str) -> u64;
}

struct Fake {
    calls: AtomicU32,
}

impl Client for Fake {
    fn price(&self, sku: &str) -> u64 {
        self.calls.fetch_add(1, Ordering::SeqCst);
        sku.len() as u64 * 10
    }
}

struct Booking<C> {
    client: C,
}

#[saga]
impl<C: Client> Booking<C>
where
    C: Default,
{
    #[step(compensate = release)]
    async fn quote(&self, _cx: &SagaContext, sku: &String) -> StepResult<u64> {
        Ok(self.client.price(sku))
    }
    async fn release(&self, _cx: &SagaContext, _quote: &u64) -> StepResult<()> {
        Ok(())
    }

    #[step(pivot)]
    async fn charge(&self, _cx: &SagaContext, quote: &u64) -> StepResult<String> {
        Ok(format!("charged {quote}"))
    }
}

impl Default for Fake {
    fn default() -> Self {
        Fake { calls: AtomicU32::new(0) }
    }
}

fn main() {
    let booking = Booking { client: Fake::default() };
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let cx = SagaContext::new("Booking", "trace-generic");
    let out = rt
        .block_on(SyncEngine::new().run(&booking, &cx, "abc".to_string()))
        .unwrap();
    assert_eq!(out, "charged 30");
    assert_eq!(booking.client.calls.load(Ordering::SeqCst), 1);
    // One state type, whatever the client.
    let state: BookingState = Booking::<Fake>::start("x".into());
    assert_eq!(serde_json::to_string(&state).unwrap(), r#"{"Quote":{"sku":"x"}}"#);
    assert_eq!(<Booking<Fake> as Saga>::description().name, "Booking");
}
