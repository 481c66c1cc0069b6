// `#[saga(name = "...", version = n)]`: a stable name for topics and records that survives a
// rename of the type, and the definition's version. Both default (type name, 1) otherwise.
use sagaflow::{Saga, SagaContext, StepResult, saga};

struct TravelBookingV2;

#[saga(name = "travel", version = 2)]
impl TravelBookingV2 {
    #[step(pivot)]
    async fn book(&self, _cx: &SagaContext, city: &String) -> StepResult<String> {
        Ok(format!("booked {city}"))
    }
}

struct Plain;

#[saga]
impl Plain {
    #[step(pivot)]
    async fn go(&self, _cx: &SagaContext) -> StepResult<()> {
        Ok(())
    }
}

fn main() {
    let description = TravelBookingV2::description();
    assert_eq!((description.name, description.version), ("travel", 2));
    assert!(description.to_mermaid().contains("saga travel"));
    assert_eq!((Plain::description().name, Plain::description().version), ("Plain", 1));
    // The state type keeps the type's name.
    let state: TravelBookingV2State = TravelBookingV2::start("Oslo".into());
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let cx = SagaContext::new("travel", "trace-named");
    let effect = rt.block_on(TravelBookingV2.execute(&cx, &state)).unwrap();
    assert_eq!(TravelBookingV2::finish(TravelBookingV2::apply(state, effect)).unwrap(), "booked Oslo");
}
