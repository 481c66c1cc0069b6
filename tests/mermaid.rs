//! The Mermaid diagram of a saga with compensatable, pivot and retriable steps matches the
//! reviewed snapshot `tests/snapshots/booking.mmd`.

use sagaflow::{Saga, SagaContext, StepResult, saga};

struct Booking;

#[saga]
impl Booking {
    #[step(compensate = cancel_order)]
    async fn create_order(&self, _cx: &SagaContext, req: &u32) -> StepResult<u32> {
        Ok(*req)
    }
    async fn cancel_order(&self, _cx: &SagaContext, _order: &u32) -> StepResult<()> {
        Ok(())
    }

    #[step(compensate = release_seat)]
    async fn reserve_seat(&self, _cx: &SagaContext, create_order: &u32) -> StepResult<u32> {
        Ok(*create_order)
    }
    async fn release_seat(&self, _cx: &SagaContext, _seat: &u32) -> StepResult<()> {
        Ok(())
    }

    #[step(pivot)]
    async fn charge(&self, _cx: &SagaContext, reserve_seat: &u32) -> StepResult<u64> {
        Ok(u64::from(*reserve_seat))
    }

    #[step(retriable)]
    async fn notify(&self, _cx: &SagaContext, charge: &u64) -> StepResult<bool> {
        Ok(*charge > 0)
    }
}

#[test]
fn booking_diagram_matches_the_snapshot() {
    let mermaid = <Booking as Saga>::description().to_mermaid();
    assert_eq!(
        mermaid,
        include_str!("snapshots/booking.mmd"),
        "\n{mermaid}"
    );
}
