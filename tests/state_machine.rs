//! Drives a macro-generated saga by hand through `execute` / `apply` / `rollback` / `finish`:
//! cursor order, JSON round trips of every state, rollback targets from every position.

use sagaflow::{Cursor, Saga, SagaContext, StepError, StepResult, saga};
use serde::{Deserialize, Serialize};
use std::sync::Mutex;

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Request {
    user: String,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Order {
    id: u32,
}

/// A saga whose step `fail_at` fails for good; it records every call.
struct Booking {
    fail_at: Option<&'static str>,
    calls: Mutex<Vec<String>>,
}

impl Booking {
    fn new(fail_at: Option<&'static str>) -> Self {
        Self {
            fail_at,
            calls: Mutex::new(Vec::new()),
        }
    }

    fn record(&self, call: &str) -> StepResult<()> {
        self.calls
            .lock()
            .map_err(|_| StepError::fatal("poisoned"))?
            .push(call.to_string());
        if self.fail_at == Some(call) {
            return Err(StepError::fatal(format!("{call} refused")));
        }
        Ok(())
    }
}

#[saga]
impl Booking {
    #[step(compensate = cancel_order)]
    async fn create_order(&self, _cx: &SagaContext, req: &Request) -> StepResult<Order> {
        self.record("create_order")?;
        Ok(Order {
            id: req.user.len() as u32,
        })
    }
    async fn cancel_order(&self, _cx: &SagaContext, _order: &Order) -> StepResult<()> {
        self.record("cancel_order")
    }

    #[step(compensate = release_seat)]
    async fn reserve_seat(&self, _cx: &SagaContext, create_order: &Order) -> StepResult<String> {
        self.record("reserve_seat")?;
        Ok(format!("seat-{}", create_order.id))
    }
    async fn release_seat(&self, _cx: &SagaContext, _seat: &str) -> StepResult<()> {
        self.record("release_seat")
    }

    #[step(pivot)]
    async fn charge(
        &self,
        _cx: &SagaContext,
        req: &Request,
        create_order: &Order,
        reserve_seat: &str,
    ) -> StepResult<u64> {
        self.record("charge")?;
        Ok(u64::from(create_order.id) * 100 + (reserve_seat.len() + req.user.len()) as u64)
    }

    #[step(retriable)]
    async fn email(&self, _cx: &SagaContext, charge: &u64) -> StepResult<bool> {
        self.record("email")?;
        Ok(*charge > 0)
    }

    #[step(retriable)]
    async fn receipt(&self, _cx: &SagaContext, req: &Request, email: &bool) -> StepResult<String> {
        self.record("receipt")?;
        Ok(format!("{} emailed={email}", req.user))
    }
}

const STEPS: [&str; 5] = ["create_order", "reserve_seat", "charge", "email", "receipt"];

fn request() -> Request {
    Request { user: "ann".into() }
}

/// serialize -> deserialize -> serialize gives the same JSON; returns the deserialised state.
fn round_trip(state: &BookingState) -> BookingState {
    let json = serde_json::to_string(state).expect("state serialises");
    let back: BookingState = serde_json::from_str(&json).expect("state deserialises");
    assert_eq!(
        serde_json::to_string(&back).expect("state serialises"),
        json
    );
    back
}

/// Runs the saga to a terminal state; on a failed step, rolls back and compensates. Every
/// state goes through a JSON round trip, and each transition runs on a fresh instance.
async fn drive(fail_at: Option<&'static str>) -> (BookingState, Vec<Cursor>, Vec<String>) {
    let cx = SagaContext::new("Booking", "trace-state-machine");
    let mut state = Booking::start(request());
    let mut cursors = Vec::new();
    let mut calls = Vec::new();
    for _ in 0..20 {
        let cursor = Booking::cursor(&state);
        cursors.push(cursor);
        if cursor.is_terminal() {
            break;
        }
        state = round_trip(&state);
        let saga = Booking::new(fail_at);
        let result = saga.execute(&cx, &state).await;
        calls.extend(saga.calls.into_inner().expect("not poisoned"));
        state = match result {
            Ok(effect) => Booking::apply(state, effect),
            Err(error) => {
                assert!(!error.is_retryable(), "{error}");
                Booking::rollback(state)
            }
        };
    }
    (state, cursors, calls)
}

#[tokio::test]
async fn a_successful_run_visits_every_step_in_order() {
    let (state, cursors, calls) = drive(None).await;
    let expected: Vec<Cursor> = (0..5)
        .map(Cursor::Step)
        .chain([Cursor::Completed])
        .collect();
    assert_eq!(cursors, expected);
    assert_eq!(calls, STEPS);
    assert_eq!(Booking::input(&state), &request());
    let output = Booking::finish(round_trip(&state)).expect("completed");
    assert_eq!(output, "ann emailed=true");
}

#[tokio::test]
async fn a_failure_before_the_pivot_compensates_in_reverse() {
    let (state, cursors, calls) = drive(Some("charge")).await;
    assert_eq!(
        cursors,
        [
            Cursor::Step(0),
            Cursor::Step(1),
            Cursor::Step(2),
            Cursor::Compensate(1),
            Cursor::Compensate(0),
            Cursor::Compensated
        ]
    );
    assert_eq!(
        calls,
        [
            "create_order",
            "reserve_seat",
            "charge",
            "release_seat",
            "cancel_order"
        ]
    );
    assert!(matches!(&state, BookingState::Compensated { req } if *req == request()));
    let state = Booking::finish(state).expect_err("a compensated saga has no output");
    assert_eq!(Booking::cursor(&state), Cursor::Compensated);
}

#[tokio::test]
async fn the_first_step_failing_needs_no_compensation() {
    let (_, cursors, calls) = drive(Some("create_order")).await;
    assert_eq!(cursors, [Cursor::Step(0), Cursor::Compensated]);
    assert_eq!(calls, ["create_order"]);
}

#[test]
fn rollback_from_each_forward_position() {
    let order = || Order { id: 3 };
    let states = [
        Booking::start(request()),
        BookingState::ReserveSeat {
            req: request(),
            create_order: order(),
        },
        BookingState::Charge {
            req: request(),
            create_order: order(),
            reserve_seat: "seat".into(),
        },
        BookingState::Email {
            req: request(),
            create_order: order(),
            reserve_seat: "seat".into(),
            charge: 7,
        },
        BookingState::Receipt {
            req: request(),
            create_order: order(),
            reserve_seat: "seat".into(),
            charge: 7,
            email: true,
        },
    ];
    // Up to the pivot: the compensation of the previous step. After it: unchanged.
    let expected = [
        Cursor::Compensated,
        Cursor::Compensate(0),
        Cursor::Compensate(1),
        Cursor::Step(3),
        Cursor::Step(4),
    ];
    for (index, (state, expected)) in states.into_iter().zip(expected).enumerate() {
        assert_eq!(Booking::cursor(&state), Cursor::Step(index));
        let rolled = Booking::rollback(round_trip(&state));
        assert_eq!(
            Booking::cursor(&rolled),
            expected,
            "rollback from step {index}"
        );
        assert_eq!(Booking::input(&rolled), &request());
        round_trip(&rolled);
    }
}

#[test]
fn rollback_keeps_the_outputs_the_compensation_needs() {
    let state = BookingState::Charge {
        req: request(),
        create_order: Order { id: 9 },
        reserve_seat: "seat-9".into(),
    };
    match Booking::rollback(state) {
        BookingState::CompensateReserveSeat {
            create_order,
            reserve_seat,
            ..
        } => {
            assert_eq!(create_order, Order { id: 9 });
            assert_eq!(reserve_seat, "seat-9");
        }
        other => panic!("expected CompensateReserveSeat, got {other:?}"),
    }
}

#[test]
fn terminal_and_compensation_states_do_not_roll_back() {
    for state in [
        BookingState::Compensated { req: request() },
        BookingState::CompensateCreateOrder {
            req: request(),
            create_order: Order { id: 1 },
        },
    ] {
        let cursor = Booking::cursor(&state);
        assert_eq!(Booking::cursor(&Booking::rollback(state)), cursor);
    }
}

#[tokio::test]
async fn executing_a_terminal_state_is_a_final_error() {
    let state = BookingState::Compensated { req: request() };
    let cx = SagaContext::new("Booking", "trace-terminal");
    let error = Booking::new(None)
        .execute(&cx, &state)
        .await
        .expect_err("nothing to run");
    assert!(!error.is_retryable());
    assert!(error.message().contains("compensated"), "{error}");
}

#[test]
fn an_effect_of_another_cursor_leaves_the_state_unchanged() {
    let state = Booking::start(request());
    let unrelated = __BookingEffect::Charge(5);
    let state = Booking::apply(state, unrelated);
    assert_eq!(Booking::cursor(&state), Cursor::Step(0));
}
