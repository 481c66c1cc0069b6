//! The saga test kit (`sagaflow::testing`) as a user writes it: a travel saga whose clients
//! are fakes, every failure point checked against the fakes' own records.

use std::sync::{Arc, Mutex};

use sagaflow::error::StuckAt;
use sagaflow::testing::{Fault, SagaTest};
use sagaflow::{SagaContext, StepError, StepResult, saga};
use serde::{Deserialize, Serialize};

/// A fake upstream: the bookings it holds, and every call it got.
#[derive(Debug, Default)]
struct FakeUpstream {
    held: Mutex<Vec<String>>,
    calls: Mutex<Vec<String>>,
}

impl FakeUpstream {
    fn book(&self, key: String) -> u64 {
        self.calls.lock().unwrap().push(format!("book {key}"));
        let mut held = self.held.lock().unwrap();
        // Idempotent by key, as the saga's contract requires.
        if !held.contains(&key) {
            held.push(key);
        }
        held.len() as u64
    }

    fn cancel(&self, key: &str) {
        self.calls.lock().unwrap().push(format!("cancel {key}"));
        self.held.lock().unwrap().retain(|k| !k.starts_with(key));
    }

    fn held(&self) -> Vec<String> {
        self.held.lock().unwrap().clone()
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct TripRequest {
    city: String,
    nights: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Flight(u64);

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Hotel(u64);

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Charge(u64);

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Confirmation(String);

#[derive(Debug, Default)]
struct Travel {
    airline: Arc<FakeUpstream>,
    hotels: Arc<FakeUpstream>,
    bank: Arc<FakeUpstream>,
    /// A deliberate bug for one test: the flight is never really cancelled.
    forget_flight_cancellation: bool,
}

#[saga]
impl Travel {
    #[step(compensate = cancel_flight)]
    async fn book_flight(&self, cx: &SagaContext, req: &TripRequest) -> StepResult<Flight> {
        Ok(Flight(self.airline.book(format!(
            "{}:{}",
            cx.trace_id(),
            req.city
        ))))
    }

    async fn cancel_flight(&self, cx: &SagaContext, _flight: &Flight) -> StepResult<()> {
        if !self.forget_flight_cancellation {
            self.airline.cancel(cx.trace_id());
        }
        Ok(())
    }

    #[step(compensate = cancel_hotel)]
    async fn book_hotel(
        &self,
        cx: &SagaContext,
        req: &TripRequest,
        book_flight: &Flight,
    ) -> StepResult<Hotel> {
        let key = format!(
            "{}:{}x{}:{}",
            cx.trace_id(),
            req.city,
            req.nights,
            book_flight.0
        );
        Ok(Hotel(self.hotels.book(key)))
    }

    async fn cancel_hotel(&self, cx: &SagaContext, _hotel: &Hotel) -> StepResult<()> {
        self.hotels.cancel(cx.trace_id());
        Ok(())
    }

    #[step(pivot)]
    async fn charge_card(&self, cx: &SagaContext, book_hotel: &Hotel) -> StepResult<Charge> {
        Ok(Charge(self.bank.book(format!(
            "{}:{}",
            cx.trace_id(),
            book_hotel.0
        ))))
    }

    #[step(retriable, retry(max_attempts = 4))]
    async fn send_confirmation(
        &self,
        _cx: &SagaContext,
        charge_card: &Charge,
    ) -> StepResult<Confirmation> {
        Ok(Confirmation(format!("charge {}", charge_card.0)))
    }
}

fn oslo() -> TripRequest {
    TripRequest {
        city: "Oslo".into(),
        nights: 2,
    }
}

#[tokio::test]
async fn the_happy_path_books_everything_once() {
    let test = SagaTest::new(Travel::default());
    let run = test.run(oslo()).await;
    run.assert_completed();
    assert_eq!(run.output(), &Confirmation("charge 1".into()));
    let saga = test.saga();
    assert_eq!(saga.airline.held().len(), 1);
    assert_eq!(saga.hotels.held().len(), 1);
    assert_eq!(saga.bank.held().len(), 1);
}

#[tokio::test]
async fn every_failure_point_compensates_and_leaves_nothing_booked_before_the_pivot() {
    let test = SagaTest::new(Travel::default());
    test.assert_every_failure_compensates(oslo).await;
    // After each failure before the pivot, the fakes hold nothing for that run; the two runs
    // that reached the pivot (failing at the pivot charges nothing; failing the retriable
    // step after it keeps everything) are what remains.
    let saga = test.saga();
    assert_eq!(
        saga.bank.held().len(),
        1,
        "only the run past the pivot charged"
    );
}

#[tokio::test]
async fn a_declined_card_cancels_the_hotel_then_the_flight() {
    let test = SagaTest::new(Travel::default()).trace_id("declined");
    let run = test
        .run_with(
            oslo(),
            [Fault::step("charge_card").fails(StepError::fatal("card declined"))],
        )
        .await;
    run.assert_compensated_after("charge_card");
    assert_eq!(run.compensations_done(), ["book_hotel", "book_flight"]);
    let saga = test.saga();
    assert!(saga.airline.held().is_empty() && saga.hotels.held().is_empty());
    assert!(saga.bank.held().is_empty());
}

#[tokio::test]
async fn a_flaky_compensation_is_retried_and_a_broken_one_leaves_the_saga_stuck() {
    let test = SagaTest::new(Travel::default());
    let run = test
        .run_with(
            oslo(),
            [
                Fault::step("book_hotel"),
                Fault::compensation("book_flight").times(2),
            ],
        )
        .await;
    run.assert_compensated_after("book_hotel");
    assert_eq!(run.attempts("book_flight", true), 3);

    let run = test
        .run_with(
            oslo(),
            [
                Fault::step("book_hotel"),
                Fault::compensation("book_flight"),
            ],
        )
        .await;
    run.assert_stuck_at(&StuckAt::Compensation("book_flight".into()));
}

#[tokio::test]
async fn a_lost_reply_is_retried_and_the_idempotent_step_books_once() {
    let test = SagaTest::new(Travel::default());
    let run = test
        .run_with(oslo(), [Fault::step("book_flight").loses_reply().times(1)])
        .await;
    assert_eq!(run.attempts("book_flight", false), 2);
    let calls = test.saga().airline.calls.lock().unwrap().len();
    assert_eq!(calls, 2, "the step ran twice");
    assert_eq!(test.saga().airline.held().len(), 1, "but booked once");
}

/// The kit catches a compensation that does not undo: the fakes still hold the flight.
#[tokio::test]
#[should_panic(expected = "the flight is still booked")]
async fn the_kit_exposes_a_compensation_that_does_not_undo() {
    let test = SagaTest::new(Travel {
        forget_flight_cancellation: true,
        ..Travel::default()
    });
    test.run_with(oslo(), [Fault::step("book_hotel")])
        .await
        .assert_compensated_after("book_hotel");
    assert!(
        test.saga().airline.held().is_empty(),
        "the flight is still booked"
    );
}

/// A wrong expectation fails with the run's trail.
#[tokio::test]
#[should_panic(expected = "expected the saga to be compensated after `book_hotel`")]
async fn a_wrong_expectation_names_the_failure_point_and_the_trail() {
    let test = SagaTest::new(Travel::default());
    test.run_with(oslo(), [Fault::step("charge_card")])
        .await
        .assert_compensated_after("book_hotel");
}
