//! The sync engine: compensation order, retries, stuck compensations, timeouts, retriable
//! steps after the pivot, and resuming from a serialised state.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use sagaflow::engine::SyncEngine;
use sagaflow::error::StuckAt;
use sagaflow::{
    Cursor, Effect, RetryPolicy, Saga, SagaContext, SagaError, StepError, StepResult, saga,
};

/// Four compensatable steps; `fault_at` makes that step fail for good; `log` records every
/// call in order.
#[derive(Default)]
struct Four {
    fault_at: Option<usize>,
    log: Mutex<Vec<String>>,
}

impl Four {
    fn record(&self, what: &str) {
        self.log.lock().unwrap().push(what.to_string());
    }

    fn forward(&self, index: usize, name: &str, value: u64) -> StepResult<u64> {
        self.record(name);
        if self.fault_at == Some(index) {
            return Err(StepError::fatal(format!("fault injected at {name}")));
        }
        Ok(value)
    }

    fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

#[saga]
impl Four {
    #[step(compensate = undo_a, retry(max_attempts = 2, initial_backoff_ms = 1, max_backoff_ms = 2))]
    async fn a(&self, _cx: &SagaContext, input: &u64) -> StepResult<u64> {
        self.forward(0, "a", input + 1)
    }
    async fn undo_a(&self, _cx: &SagaContext, _a: &u64) -> StepResult<()> {
        self.record("undo a");
        Ok(())
    }

    #[step(compensate = undo_b, retry(max_attempts = 2, initial_backoff_ms = 1, max_backoff_ms = 2))]
    async fn b(&self, _cx: &SagaContext, a: &u64) -> StepResult<u64> {
        self.forward(1, "b", a * 10)
    }
    async fn undo_b(&self, _cx: &SagaContext, _b: &u64) -> StepResult<()> {
        self.record("undo b");
        Ok(())
    }

    #[step(compensate = undo_c, retry(max_attempts = 2, initial_backoff_ms = 1, max_backoff_ms = 2))]
    async fn c(&self, _cx: &SagaContext, input: &u64, b: &u64) -> StepResult<u64> {
        self.forward(2, "c", input + b)
    }
    async fn undo_c(&self, _cx: &SagaContext, _c: &u64) -> StepResult<()> {
        self.record("undo c");
        Ok(())
    }

    #[step(compensate = undo_d, retry(max_attempts = 2, initial_backoff_ms = 1, max_backoff_ms = 2))]
    async fn d(&self, _cx: &SagaContext, a: &u64, c: &u64) -> StepResult<u64> {
        self.forward(3, "d", a + c)
    }
    async fn undo_d(&self, _cx: &SagaContext, _d: &u64) -> StepResult<()> {
        self.record("undo d");
        Ok(())
    }
}

fn cx(trace_id: &str) -> SagaContext {
    SagaContext::new(Four::description().name, trace_id)
}

#[tokio::test]
async fn happy_path_runs_every_step_once_and_returns_the_last_output() {
    let saga = Four::default();
    let output = SyncEngine::new()
        .run(&saga, &cx("happy"), 1)
        .await
        .expect("saga completes");
    // a = 2, b = 20, c = 1 + 20 = 21, d = 2 + 21 = 23
    assert_eq!(output, 23);
    assert_eq!(saga.log(), ["a", "b", "c", "d"]);
}

#[tokio::test]
async fn a_fault_at_each_position_compensates_exactly_the_completed_steps_in_reverse_once() {
    let names = ["a", "b", "c", "d"];
    for fault in 0..4 {
        let saga = Four {
            fault_at: Some(fault),
            ..Four::default()
        };
        let error = SyncEngine::new()
            .run(&saga, &cx("fault"), 1)
            .await
            .expect_err("saga fails");
        let mut expected: Vec<String> = names[..=fault].iter().map(|s| s.to_string()).collect();
        expected.extend(names[..fault].iter().rev().map(|s| format!("undo {s}")));
        assert_eq!(saga.log(), expected, "fault at step {fault}");
        match error {
            SagaError::Compensated {
                step,
                error,
                trace_id,
                ..
            } => {
                assert_eq!(step, names[fault]);
                assert_eq!(trace_id, "fault");
                assert!(error.message().contains("fault injected"), "{error}");
            }
            other => panic!("fault at {fault}: expected Compensated, got {other:?}"),
        }
    }
}

/// Two steps; the compensation of the first fails `compensation_failures` times.
struct FlakyUndo {
    compensation_failures: u32,
    compensation_calls: AtomicU32,
    first_calls: AtomicU32,
}

impl FlakyUndo {
    fn new(compensation_failures: u32) -> Self {
        Self {
            compensation_failures,
            compensation_calls: AtomicU32::new(0),
            first_calls: AtomicU32::new(0),
        }
    }
}

#[saga]
impl FlakyUndo {
    #[step(compensate = release, retry(max_attempts = 4, initial_backoff_ms = 1, max_backoff_ms = 4))]
    async fn reserve(&self, _cx: &SagaContext, input: &String) -> StepResult<String> {
        self.first_calls.fetch_add(1, Ordering::SeqCst);
        Ok(format!("reservation for {input}"))
    }
    async fn release(&self, cx: &SagaContext, _reservation: &String) -> StepResult<()> {
        let call = self.compensation_calls.fetch_add(1, Ordering::SeqCst) + 1;
        assert_eq!(cx.attempt(), call, "the context counts attempts");
        assert!(cx.is_compensating());
        if call <= self.compensation_failures {
            return Err(StepError::retryable(format!(
                "release failed on call {call}"
            )));
        }
        Ok(())
    }

    #[step(compensate = refund)]
    async fn charge(&self, _cx: &SagaContext, reserve: &String) -> StepResult<String> {
        Err(StepError::fatal(format!("card declined for {reserve}")))
    }
    async fn refund(&self, _cx: &SagaContext, _charge: &String) -> StepResult<()> {
        unreachable!("charge never succeeds, so it is never compensated")
    }
}

#[tokio::test]
async fn a_compensation_that_fails_twice_then_succeeds_is_retried_and_the_saga_ends_compensated() {
    let saga = FlakyUndo::new(2);
    let cx = SagaContext::new("FlakyUndo", "flaky");
    let error = SyncEngine::new()
        .run(&saga, &cx, "room 7".to_string())
        .await
        .expect_err("charge fails");
    assert!(
        matches!(&error, SagaError::Compensated { step, .. } if step == "charge"),
        "{error:?}"
    );
    assert_eq!(saga.compensation_calls.load(Ordering::SeqCst), 3);
    assert_eq!(saga.first_calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_compensation_that_always_fails_leaves_the_saga_stuck_naming_it() {
    let saga = FlakyUndo::new(u32::MAX);
    let cx = SagaContext::new("FlakyUndo", "stuck");
    // Compensations follow the engine's compensation policy (persistent by default).
    let error = SyncEngine::new()
        .with_compensation_retry(RetryPolicy::new(
            4,
            Duration::from_millis(1),
            Duration::from_millis(4),
        ))
        .run(&saga, &cx, "room 7".to_string())
        .await
        .expect_err("charge fails");
    match &error {
        SagaError::Stuck {
            stuck,
            attempts,
            failed_step,
            last_error,
            ..
        } => {
            assert_eq!(stuck, &StuckAt::Compensation("reserve".to_string()));
            assert_eq!(*attempts, 4, "bounded by the policy's max_attempts");
            assert_eq!(
                failed_step.as_ref().map(|(s, _)| s.as_str()),
                Some("charge")
            );
            assert!(last_error.message().contains("release failed"));
        }
        other => panic!("expected Stuck, got {other:?}"),
    }
    let text = error.to_string();
    assert!(
        text.contains("compensation of step `reserve`") && text.contains("stuck"),
        "{text}"
    );
    assert_eq!(saga.compensation_calls.load(Ordering::SeqCst), 4);
}

/// A step that is slower than its timeout, then a pivot and a retriable step.
struct Shaped {
    slow_ms: u64,
    notify_failures: u32,
    notify_calls: AtomicU32,
    undone: AtomicU32,
}

#[saga]
impl Shaped {
    #[step(compensate = unhold, timeout_ms = 50, retry(max_attempts = 2, initial_backoff_ms = 1, max_backoff_ms = 2))]
    async fn hold(&self, _cx: &SagaContext, amount: &u32) -> StepResult<u32> {
        tokio::time::sleep(std::time::Duration::from_millis(self.slow_ms)).await;
        Ok(*amount)
    }
    async fn unhold(&self, _cx: &SagaContext, _hold: &u32) -> StepResult<()> {
        self.undone.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    #[step(pivot)]
    async fn capture(&self, _cx: &SagaContext, hold: &u32) -> StepResult<u32> {
        Ok(*hold)
    }

    #[step(
        retriable,
        retry(max_attempts = 5, initial_backoff_ms = 1, max_backoff_ms = 2)
    )]
    async fn notify(&self, _cx: &SagaContext, capture: &u32) -> StepResult<String> {
        let call = self.notify_calls.fetch_add(1, Ordering::SeqCst) + 1;
        if call <= self.notify_failures {
            return Err(StepError::fatal("mail server said no"));
        }
        Ok(format!("captured {capture}"))
    }
}

impl Shaped {
    fn new(slow_ms: u64, notify_failures: u32) -> Self {
        Self {
            slow_ms,
            notify_failures,
            notify_calls: AtomicU32::new(0),
            undone: AtomicU32::new(0),
        }
    }
}

#[tokio::test]
async fn a_step_slower_than_its_timeout_fails_with_a_timeout_and_nothing_is_compensated() {
    let saga = Shaped::new(10_000, 0);
    let cx = SagaContext::new("Shaped", "slow");
    let error = SyncEngine::new()
        .run(&saga, &cx, 5)
        .await
        .expect_err("hold times out");
    match &error {
        SagaError::Compensated { step, error, .. } => {
            assert_eq!(step, "hold");
            assert!(error.message().contains("timed out"), "{error}");
            assert_eq!(
                error.effect(),
                Effect::Unknown,
                "a timeout may have been applied"
            );
        }
        other => panic!("expected Compensated, got {other:?}"),
    }
    // The outcome says so, naming the key to reconcile the step by.
    assert!(error.effect_unknown(), "{error:?}");
    let text = error.to_string();
    assert!(
        text.contains("UNKNOWN") && text.contains("`slow/hold`"),
        "{text}"
    );
    assert_eq!(
        saga.undone.load(Ordering::SeqCst),
        0,
        "hold never completed"
    );
}

#[tokio::test]
async fn a_retriable_step_after_the_pivot_is_retried_even_on_final_errors_until_it_succeeds() {
    let saga = Shaped::new(0, 3);
    let cx = SagaContext::new("Shaped", "retriable");
    let output = SyncEngine::new()
        .run(&saga, &cx, 5)
        .await
        .expect("notify succeeds on the 4th call");
    assert_eq!(output, "captured 5");
    assert_eq!(saga.notify_calls.load(Ordering::SeqCst), 4);
    assert_eq!(saga.undone.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_retriable_step_that_exhausts_its_bound_is_stuck_and_never_compensated() {
    let saga = Shaped::new(0, u32::MAX);
    let cx = SagaContext::new("Shaped", "retriable-stuck");
    let error = SyncEngine::new()
        .run(&saga, &cx, 5)
        .await
        .expect_err("notify never succeeds");
    match &error {
        SagaError::Stuck {
            stuck, attempts, ..
        } => {
            assert_eq!(stuck, &StuckAt::Step("notify".to_string()));
            assert_eq!(*attempts, 5);
        }
        other => panic!("expected Stuck, got {other:?}"),
    }
    assert_eq!(
        saga.undone.load(Ordering::SeqCst),
        0,
        "steps before the pivot are never undone after it"
    );
}

/// Runs `k` transitions by hand, as a replica would before it crashed, and returns the state.
async fn run_transitions(saga: &Four, cx: &SagaContext, k: usize) -> <Four as Saga>::State {
    let mut state = Four::start(1);
    for _ in 0..k {
        let effect = saga
            .execute(&cx.at("", false, 1), &state)
            .await
            .expect("step succeeds");
        state = Four::apply(state, effect);
    }
    state
}

#[tokio::test]
async fn a_saga_stopped_after_step_k_and_resumed_from_json_on_a_new_instance_ends_like_an_uninterrupted_run()
 {
    for fault in [None, Some(2), Some(3)] {
        let uninterrupted = Four {
            fault_at: fault,
            ..Four::default()
        };
        let expected = SyncEngine::new()
            .run(&uninterrupted, &cx("resume"), 1)
            .await
            .map_err(|e| e.failure());
        for k in 0..=fault.unwrap_or(4) {
            let first = Four {
                fault_at: fault,
                ..Four::default()
            };
            let state = run_transitions(&first, &cx("resume"), k).await;
            let json = serde_json::to_string(&state).expect("state serialises");
            drop(first);

            let second = Four {
                fault_at: fault,
                ..Four::default()
            };
            let state: <Four as Saga>::State =
                serde_json::from_str(&json).expect("state deserialises");
            assert_eq!(
                Four::cursor(&state),
                if k == 4 {
                    Cursor::Completed
                } else {
                    Cursor::Step(k)
                }
            );
            let resumed = SyncEngine::new()
                .resume(&second, &cx("resume"), state, None)
                .await
                .map_err(|e| e.failure());
            assert_eq!(
                resumed, expected,
                "fault {fault:?}, resumed after {k} steps"
            );
            // Together the two instances did what the uninterrupted one did.
            let mut combined: Vec<String> = uninterrupted.log()[..k].to_vec();
            combined.extend(second.log());
            assert_eq!(
                combined,
                uninterrupted.log(),
                "fault {fault:?}, resumed after {k} steps"
            );
        }
    }
}

/// A step that reports the saga name its context carries.
struct Named;

#[saga]
impl Named {
    #[step(pivot)]
    async fn who(&self, cx: &SagaContext, _input: &u8) -> StepResult<String> {
        Ok(cx.saga().to_string())
    }
}

#[tokio::test]
async fn a_context_labelled_with_another_saga_runs_under_the_sagas_own_name() {
    let engine = SyncEngine::new();
    let mislabelled = SagaContext::new("Pong", "label-1");
    assert_eq!(
        engine.run(&Named, &mislabelled, 1).await.expect("runs"),
        "Named"
    );
    let built = SagaContext::for_saga::<Named>("label-2");
    assert_eq!(built.saga(), "Named");
    assert_eq!(engine.run(&Named, &built, 1).await.expect("runs"), "Named");
}
