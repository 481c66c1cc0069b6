// The DSL example: a compensatable step with options, a pivot, a retriable step.
use sagaflow::{Cursor, Saga, SagaContext, StepError, StepKind, StepResult, saga};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct BookingRequest {
    pub user: String,
    pub amount: u64,
}
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct Order(u64);
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct Payment(u64);
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct Receipt(String);

struct Booking;

#[saga]
impl Booking {
    #[step(compensate = cancel_order, retry(max_attempts = 5, initial_backoff_ms = 20, max_backoff_ms = 500), timeout_ms = 2000)]
    async fn create_order(&self, _cx: &SagaContext, req: &BookingRequest) -> StepResult<Order> {
        Ok(Order(req.amount))
    }

    async fn cancel_order(&self, _cx: &SagaContext, _order: &Order) -> StepResult<()> {
        Ok(())
    }

    #[step(pivot)]
    async fn charge(
        &self,
        _cx: &SagaContext,
        req: &BookingRequest,
        create_order: &Order,
    ) -> Result<Payment, StepError> {
        Ok(Payment(req.amount + create_order.0))
    }

    #[step(retriable, timeout_ms = 100)]
    async fn notify(&self, _cx: &SagaContext, charge: &Payment) -> StepResult<Receipt> {
        Ok(Receipt(format!("paid {}", charge.0)))
    }
}

fn main() {
    let description = <Booking as Saga>::description();
    assert_eq!(description.name, "Booking");
    assert_eq!(description.input, "req");
    assert_eq!(description.steps.len(), 3);
    assert_eq!(description.steps[0].compensation, Some("cancel_order"));
    assert_eq!(description.steps[0].retry.max_attempts, 5);
    assert_eq!(description.steps[1].kind, StepKind::Pivot);
    assert_eq!(description.steps[1].uses, &["req", "create_order"]);
    assert_eq!(description.steps[2].kind, StepKind::Retriable);
    assert_eq!(description.steps[2].retry, sagaflow::RetryPolicy::PERSISTENT);

    let state = Booking::start(BookingRequest { user: "ann".into(), amount: 7 });
    let json = serde_json::to_string(&state).unwrap();
    let back: BookingState = serde_json::from_str(&json).unwrap();
    assert_eq!(Booking::cursor(&back), Cursor::Step(0));
    assert_eq!(Booking::input(&back).user, "ann");

    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let cx = SagaContext::new("Booking", "trace-1");
    let mut state = back;
    while !Booking::cursor(&state).is_terminal() {
        let effect = rt.block_on(Booking.execute(&cx, &state)).unwrap();
        state = Booking::apply(state, effect);
    }
    assert_eq!(Booking::finish(state).unwrap(), Receipt("paid 14".into()));
}
