//! A saga definition deployed while sagas of an older, incompatible version are in flight:
//! their state is never dropped. A message the deployed definition cannot read is
//! dead-lettered naming both versions and the saga recorded stuck with its state kept; the
//! recovery sweeper does the same for a stored state.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::backends::{Backend, Backends};
use sagaflow::engine::{Consumers, Orchestrator, OrchestratorConfig, step_topic};
use sagaflow::error::{SagaFailure, StuckAt};
use sagaflow::store::{Custody, Mode, SagaRecord, SagaStatus, fingerprint};
use sagaflow::transport::{
    DEAD_LETTER_REASON_HEADER, Delivery, Disposition, Message, SubscribeOptions, TRACE_ID_HEADER,
    dead_letter_topic,
};
use sagaflow::{Saga, SagaContext, SagaError, StepResult, saga};
use tokio::sync::mpsc;

const WAIT: Duration = Duration::from_secs(20);

/// Version 2 of the trip: version 1 had a `book_car` step between the two, so its states
/// have variants version 2 does not know.
struct Trip;

#[saga(name = "trip", version = 2)]
impl Trip {
    #[step(compensate = cancel_flight)]
    async fn book_flight(&self, _cx: &SagaContext, city: &String) -> StepResult<String> {
        Ok(format!("flight to {city}"))
    }
    async fn cancel_flight(&self, _cx: &SagaContext, _flight: &String) -> StepResult<()> {
        Ok(())
    }
    #[step(pivot)]
    async fn book_hotel(&self, _cx: &SagaContext, book_flight: &String) -> StepResult<String> {
        Ok(format!("hotel after {book_flight}"))
    }
}

/// A message version 1 wrote: its state sits at `book_car`, which version 2 has no variant for.
fn version_1_message(trace_id: &str) -> String {
    serde_json::json!({
        "v": sagaflow::engine::FORMAT_VERSION,
        "saga": "trip",
        "ver": 1,
        "trace_id": trace_id,
        "seq": 0,
        "state": { "BookCar": { "city": "Oslo", "book_flight": "flight to Oslo" } }
    })
    .to_string()
}

fn record(trace_id: &str, state: String, custody: Custody) -> SagaRecord {
    let input = serde_json::json!("Oslo");
    SagaRecord::new(
        trace_id,
        "trip",
        fingerprint("trip", &input),
        "book_car",
        Mode::Async,
        state,
        custody,
    )
}

fn quick() -> OrchestratorConfig {
    OrchestratorConfig {
        redelivery_delay: Duration::from_millis(50),
        sweep_interval: Some(Duration::from_millis(50)),
        ..OrchestratorConfig::default()
    }
}

/// Version 2 serving on `backends`.
async fn serve(backends: &Backends) -> (Orchestrator<Trip>, Consumers) {
    let orchestrator = Orchestrator::new(
        Arc::new(Trip),
        Arc::clone(&backends.transport),
        Arc::clone(&backends.store),
        quick(),
    );
    let consumers = orchestrator.serve().await.expect("consumers start");
    (orchestrator, consumers)
}

fn waiter(id: &str) -> SagaContext {
    SagaContext::for_saga::<Trip>(id).with_deadline(Some(Instant::now() + WAIT))
}

/// The outcome and record of a saga stuck on a definition change, checked in full.
async fn assert_stuck_on_the_definition(
    orchestrator: &Orchestrator<Trip>,
    backends: &Backends,
    id: &str,
    kept: &str,
) {
    let outcome = orchestrator.outcome(&waiter(id)).await;
    match &outcome {
        Err(SagaError::Stuck { stuck, saga, .. }) => {
            assert_eq!(saga, "trip", "the stable name, not the type's");
            assert_eq!(
                stuck,
                &StuckAt::Definition {
                    written: 1,
                    deployed: 2
                }
            );
        }
        other => panic!("expected stuck on the definition, got {other:?}"),
    }
    let message = outcome.expect_err("stuck").to_string();
    assert!(
        message.contains("definition version 1") && message.contains("deployed version 2"),
        "{message}"
    );
    let record = backends
        .store
        .get(id)
        .await
        .expect("store")
        .expect("record");
    assert!(
        matches!(
            &record.status,
            SagaStatus::Failed {
                error: SagaFailure::Stuck {
                    stuck: StuckAt::Definition { .. },
                    ..
                }
            }
        ),
        "{:?}",
        record.status
    );
    assert_eq!(
        record.state.as_deref(),
        Some(kept),
        "the record keeps the state for an operator"
    );
}

async fn an_undecodable_message_is_dead_lettered_and_recorded_stuck(backend: Backend) {
    let backends = Backends::connect(backend, "versions-message").await;
    let (orchestrator, consumers) = serve(&backends).await;
    let topic = step_topic::<Trip>(0, None).expect("a first step");
    let (tx, mut letters) = mpsc::unbounded_channel::<Delivery>();
    let dead_letters = backends
        .transport
        .subscribe(
            &dead_letter_topic(&topic),
            SubscribeOptions {
                group: "trip".into(),
                concurrency: 1,
            },
            Arc::new(move |delivery: Delivery| {
                let tx = tx.clone();
                async move {
                    let _ = tx.send(delivery);
                    Disposition::Ack
                }
            }),
        )
        .await
        .expect("dead-letter subscription");

    // Version 1 recorded the saga and queued its message; version 2 consumes it.
    let id = "v1-in-flight";
    let message = version_1_message(id);
    backends
        .store
        .begin(record(
            id,
            message.clone(),
            Custody::queued("v1-replica/0/0", WAIT),
        ))
        .await
        .expect("begin");
    backends
        .transport
        .publish(
            &topic,
            Message {
                headers: [(TRACE_ID_HEADER.to_string(), id.to_string())].into(),
                payload: message.clone().into_bytes().into(),
            },
        )
        .await
        .expect("publish");

    let letter = tokio::time::timeout(WAIT, letters.recv())
        .await
        .expect("a dead letter arrives")
        .expect("open");
    let reason = letter
        .headers
        .get(DEAD_LETTER_REASON_HEADER)
        .cloned()
        .unwrap_or_default();
    assert!(
        reason.contains("written by definition version 1")
            && reason.contains("deployed version 2")
            && reason.contains(id),
        "the reason names both versions and the trace id: {reason}"
    );
    assert_eq!(
        &letter.payload[..],
        message.as_bytes(),
        "the message is kept whole"
    );
    assert_stuck_on_the_definition(&orchestrator, &backends, id, &message).await;

    dead_letters.shutdown(Duration::from_secs(1)).await;
    consumers.shutdown().await;
    backends.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecodable_message_is_dead_lettered_and_recorded_stuck_memory() {
    an_undecodable_message_is_dead_lettered_and_recorded_stuck(Backend::Memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecodable_message_is_dead_lettered_and_recorded_stuck_nats_redis() {
    an_undecodable_message_is_dead_lettered_and_recorded_stuck(Backend::Nats).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweeper_records_an_undecodable_stored_state_stuck_and_keeps_it() {
    let backends = Backends::connect(Backend::Memory, "versions-sweeper").await;
    let (orchestrator, consumers) = serve(&backends).await;
    // A version 1 replica recorded the saga and died before publishing it.
    let id = "v1-stranded";
    let stored = version_1_message(id);
    backends
        .store
        .begin(record(
            id,
            stored.clone(),
            Custody::queued("v1-replica/0/0", Duration::from_millis(1)),
        ))
        .await
        .expect("begin");
    assert_stuck_on_the_definition(&orchestrator, &backends, id, &stored).await;
    consumers.shutdown().await;
    backends.cleanup().await;
}

#[tokio::test]
async fn the_stable_name_and_version_come_from_the_attribute() {
    let description = Trip::description();
    assert_eq!(description.name, "trip");
    assert_eq!(description.version, 2);
    assert_eq!(
        step_topic::<Trip>(0, None).as_deref(),
        Some("trip.book_flight")
    );
}
