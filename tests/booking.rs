//! End-to-end tests of the booking example (issue 5): the example's own code (the `booking`
//! crate) started in-process on ephemeral ports (and once as the built binary), driven over
//! the network with the generated tonic clients, checked through the upstream services' query
//! RPCs.
//!
//! The memory tests need no server; the broker tests need RabbitMQ, NATS JetStream and Redis
//! on 127.0.0.1 and fail naming the one that is down and its start command.

mod common;

#[path = "booking/binary.rs"]
mod binary;
#[path = "booking/harness.rs"]
mod harness;

use std::time::Duration;

use booking_proto::order::OrderStatus;
use booking_proto::payment::PaymentStatus;
use booking_proto::pb::BookingRequest;
use booking_proto::pb::booking_service_client::BookingServiceClient;
use clap::Parser;
use futures_util::future::join_all;
use harness::{Backend, TestApp, booking, trace_id};
use sagaflow::SagaError;
use sagaflow::grpc::trace_id_from_status;
use tonic::{Code, Request, Status};
use tonic_types::StatusExt;

/// Checks a refused saga's status: FailedPrecondition naming the trace id and the failed
/// step `create_payment`, with the trace id in its `ErrorInfo` details.
fn assert_payment_refused(status: &Status, id: &str) {
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    let message = status.message();
    assert!(message.contains(id), "no trace id in: {message}");
    assert!(
        message.contains("create_payment"),
        "no failed step in: {message}"
    );
    assert_eq!(trace_id_from_status(status).as_deref(), Some(id));
    let info = status
        .get_details_error_info()
        .expect("the status carries an ErrorInfo detail");
    assert_eq!(info.metadata.get("trace_id").map(String::as_str), Some(id));
    assert_eq!(
        info.metadata.get("step").map(String::as_str),
        Some("create_payment")
    );
}

/// Checks a completed booking's order and payment are ACTIVE, through GetOrder / GetPayment.
async fn assert_booked(t: &TestApp, id: &str, order_id: i64, payment_id: i64) {
    assert!(
        order_id > 0 && payment_id > 0,
        "ids {order_id}, {payment_id}"
    );
    let order = t.order(order_id).await;
    assert_eq!(order.status(), OrderStatus::Active, "{order:?}");
    assert_eq!(order.trace_id, id);
    let payment = t.payment(payment_id).await;
    assert_eq!(payment.status(), PaymentStatus::Active, "{payment:?}");
    assert_eq!(
        (payment.order_id, payment.trace_id.as_str()),
        (order_id, id)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_happy_path_books_an_active_order_and_payment() {
    let t = TestApp::start(Backend::Memory, "sync-happy", &[]).await;
    let id = trace_id("sync-happy");
    let reply = t
        .booking
        .clone()
        .handle_sync_booking(booking(&id, 7, 2, false))
        .await
        .expect("sync booking")
        .into_inner();
    assert_eq!(reply.request_id, id);
    assert_booked(&t, &id, reply.order_id, reply.payment_id).await;
    let order = t.order(reply.order_id).await;
    assert_eq!((order.product_id, order.count), (7, 2));
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_fault_is_failed_precondition_and_cancels_the_order() {
    let t = TestApp::start(Backend::Memory, "sync-fault", &[]).await;
    let id = trace_id("sync-fault");
    let status = t
        .booking
        .clone()
        .handle_sync_booking(booking(&id, 7, 1, true))
        .await
        .expect_err("the payment is refused");
    assert_payment_refused(&status, &id);
    t.assert_cancelled(&id).await;
    // A retry of the same request gets the same outcome; nothing runs again.
    let again = t
        .booking
        .clone()
        .handle_sync_booking(booking(&id, 7, 1, true))
        .await
        .expect_err("the outcome stays");
    assert_payment_refused(&again, &id);
    assert_eq!(t.order_load().await.calls, 2, "create + cancel, once each");
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_happy_path_answers_at_once_then_completes() {
    let t = TestApp::start(Backend::Memory, "async-happy", &[]).await;
    let id = trace_id("async-happy");
    let reply = t
        .booking
        .clone()
        .handle_async_booking(booking(&id, 3, 1, false))
        .await
        .expect("async booking")
        .into_inner();
    assert_eq!(reply.request_id, id);
    let booked = t.outcome(&id).await.expect("the saga completes");
    assert_booked(&t, &id, booked.order_id, booked.payment_id).await;
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_fault_answers_at_once_then_cancels_the_order() {
    let t = TestApp::start(Backend::Memory, "async-fault", &[]).await;
    let id = trace_id("async-fault");
    let reply = t
        .booking
        .clone()
        .handle_async_booking(booking(&id, 3, 1, true))
        .await
        .expect("async booking is accepted")
        .into_inner();
    assert_eq!(reply.request_id, id);
    match t.outcome(&id).await {
        Err(SagaError::Compensated { step, trace_id, .. }) => {
            assert_eq!(
                (step.as_str(), trace_id.as_str()),
                ("create_payment", id.as_str())
            );
        }
        other => panic!("expected a compensated saga, got {other:?}"),
    }
    t.assert_cancelled(&id).await;
    t.shutdown().await;
}

/// 100 concurrent throttled bookings with `--concurrency 4`: all succeed and neither upstream
/// service ever sees more than 4 calls at once (each call lasts 5 ms so they overlap).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttled_burst_caps_upstream_concurrency() {
    const BURST: usize = 100;
    let t = TestApp::start(
        Backend::Memory,
        "burst",
        &["--concurrency", "4", "--upstream-latency", "5ms"],
    )
    .await;
    let ids: Vec<String> = (0..BURST)
        .map(|i| trace_id(&format!("burst-{i}")))
        .collect();
    let calls = ids.iter().map(|id| {
        let mut client = t.booking.clone();
        let request = booking(id, 1, 1, false);
        async move { client.handle_throttling_booking(request).await }
    });
    let replies = join_all(calls).await;
    for (id, reply) in ids.iter().zip(replies) {
        let reply = reply
            .unwrap_or_else(|s| panic!("throttled booking {id}: {s:?}"))
            .into_inner();
        assert_eq!(&reply.request_id, id);
        assert!(reply.order_id > 0 && reply.payment_id > 0, "{reply:?}");
    }
    for (service, load) in [
        ("order", t.order_load().await),
        ("payment", t.payment_load().await),
    ] {
        assert!(load.max_in_flight <= 4, "{service} service saw {load:?}");
        // The calls did overlap, so the cap was exercised (not a serialised run).
        assert!(load.max_in_flight >= 2, "{service} service saw {load:?}");
        assert!(load.calls >= BURST as u64, "{service} service saw {load:?}");
        assert_eq!(load.rejected, 0, "{service} service saw {load:?}");
    }
    // The in-process view agrees with GetLoad.
    let (order_svc, _) = t.app().order.as_ref().expect("order service");
    assert!(order_svc.gate().stats(false).max_in_flight <= 4);
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttled_wait_past_the_callers_deadline_is_deadline_exceeded_and_the_saga_finishes() {
    let t = TestApp::start(
        Backend::Memory,
        "deadline",
        &["--upstream-latency", "1500ms"],
    )
    .await;
    let id = trace_id("deadline");
    let mut request = booking(&id, 1, 1, false);
    request.set_timeout(Duration::from_millis(300));
    let status = t
        .booking
        .clone()
        .handle_throttling_booking(request)
        .await
        .expect_err("the caller's deadline passes before the saga ends");
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert!(status.message().contains(&id), "{status:?}");
    assert_eq!(trace_id_from_status(&status).as_deref(), Some(id.as_str()));
    let booked = t.outcome(&id).await.expect("the saga still finishes");
    assert_booked(&t, &id, booked.order_id, booked.payment_id).await;
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_request_id_is_invalid_argument_naming_the_header() {
    let t = TestApp::start(Backend::Memory, "no-id", &[]).await;
    let body = BookingRequest {
        product_id: 1,
        count: 1,
        fault_inject: false,
    };
    let mut client = t.booking.clone();
    let refusals = [
        client.handle_sync_booking(Request::new(body)).await.err(),
        client.handle_async_booking(Request::new(body)).await.err(),
        client
            .handle_throttling_booking(Request::new(body))
            .await
            .err(),
    ];
    for status in refusals {
        let status = status.expect("a request without x-request-id is refused");
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(status.message().contains("x-request-id"), "{status:?}");
    }
    assert_eq!(
        t.order_load().await.calls,
        0,
        "a saga reached the Order service"
    );
    t.shutdown().await;
}

/// `ProductID` <= 0 and a negative `Count` are refused before any saga starts: no upstream
/// call, and the trace id stays free (a valid request with it then books normally).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_fields_are_refused_before_any_saga_starts() {
    let t = TestApp::start(Backend::Memory, "invalid", &[]).await;
    let id = trace_id("invalid");
    let mut client = t.booking.clone();
    for (product_id, count, field) in [(0, 1, "ProductID"), (-5, 1, "ProductID"), (1, -1, "Count")]
    {
        let refusals = [
            client
                .handle_sync_booking(booking(&id, product_id, count, false))
                .await
                .err(),
            client
                .handle_async_booking(booking(&id, product_id, count, false))
                .await
                .err(),
            client
                .handle_throttling_booking(booking(&id, product_id, count, false))
                .await
                .err(),
        ];
        for status in refusals {
            let status = status.unwrap_or_else(|| panic!("{field} {product_id}/{count} accepted"));
            assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
            assert!(status.message().contains(field), "{status:?}");
        }
    }
    assert_eq!(
        t.order_load().await.calls,
        0,
        "a saga reached the Order service"
    );
    assert_eq!(
        t.payment_load().await.calls,
        0,
        "a saga reached the Payment service"
    );
    assert!(t.orders_of(&id).await.is_empty());
    // No saga record holds the id: a valid request with it runs.
    let reply = client
        .handle_sync_booking(booking(&id, 1, 1, false))
        .await
        .expect("the id is still free")
        .into_inner();
    assert_booked(&t, &id, reply.order_id, reply.payment_id).await;
    t.shutdown().await;
}

/// The same id with the same input: one execution, and every call gets its outcome, whether
/// the repeat comes after the first run or races it (sync, throttled, async).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_id_and_input_runs_once() {
    let t = TestApp::start(Backend::Memory, "same-id", &[]).await;
    let mut client = t.booking.clone();

    let id = trace_id("same-sync");
    let first = client
        .handle_sync_booking(booking(&id, 4, 2, false))
        .await
        .expect("first")
        .into_inner();
    let again = client
        .handle_sync_booking(booking(&id, 4, 2, false))
        .await
        .expect("repeat")
        .into_inner();
    assert_eq!(first, again);
    assert_eq!(t.single_order(&id).await.id, first.order_id);
    assert_eq!(t.payments_of(&id).await.len(), 1);

    let id = trace_id("same-sync-race");
    let (mut racer_a, mut racer_b) = (t.booking.clone(), t.booking.clone());
    let (a, b) = tokio::join!(
        racer_a.handle_sync_booking(booking(&id, 4, 2, false)),
        racer_b.handle_sync_booking(booking(&id, 4, 2, false)),
    );
    let (a, b) = (
        a.expect("first").into_inner(),
        b.expect("racer").into_inner(),
    );
    assert_eq!(a, b);
    assert_eq!(t.single_order(&id).await.id, a.order_id);

    let id = trace_id("same-throttled");
    let (mut racer_a, mut racer_b) = (t.booking.clone(), t.booking.clone());
    let (a, b) = tokio::join!(
        racer_a.handle_throttling_booking(booking(&id, 4, 2, false)),
        racer_b.handle_throttling_booking(booking(&id, 4, 2, false)),
    );
    let (a, b) = (
        a.expect("first").into_inner(),
        b.expect("racer").into_inner(),
    );
    assert_eq!(a, b);
    assert_eq!(t.single_order(&id).await.id, a.order_id);

    let id = trace_id("same-async");
    for _ in 0..2 {
        let reply = client
            .handle_async_booking(booking(&id, 4, 2, false))
            .await
            .expect("async")
            .into_inner();
        assert_eq!(reply.request_id, id);
    }
    let booked = t.outcome(&id).await.expect("the saga completes");
    assert_eq!(t.single_order(&id).await.id, booked.order_id);
    assert_eq!(t.payments_of(&id).await.len(), 1);

    // Four sagas, one order each: nothing ran twice.
    assert_eq!(t.order_load().await.calls, 4);
    assert_eq!(t.payment_load().await.calls, 4);
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_id_with_other_input_is_already_exists() {
    let t = TestApp::start(Backend::Memory, "id-taken", &[]).await;
    let id = trace_id("id-taken");
    let mut client = t.booking.clone();
    let first = client
        .handle_sync_booking(booking(&id, 1, 1, false))
        .await
        .expect("first")
        .into_inner();
    let refusals = [
        client
            .handle_sync_booking(booking(&id, 2, 1, false))
            .await
            .err(),
        client
            .handle_async_booking(booking(&id, 1, 3, false))
            .await
            .err(),
        client
            .handle_throttling_booking(booking(&id, 1, 1, true))
            .await
            .err(),
    ];
    for status in refusals {
        let status = status.expect("another input under a used id is refused");
        assert_eq!(status.code(), Code::AlreadyExists, "{status:?}");
        assert!(status.message().contains(&id), "{status:?}");
        assert_eq!(trace_id_from_status(&status).as_deref(), Some(id.as_str()));
    }
    assert_eq!(t.single_order(&id).await.id, first.order_id);
    assert_eq!(t.order_load().await.calls, 1);
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_binary_answers_a_sync_booking() {
    binary::sync_booking_through_the_binary().await;
}

/// Throttled happy path and fault, an async booking and a throttled burst, through the
/// example's app on a broker and Redis.
async fn throttled_over(backend: Backend, name: &str) {
    let t = TestApp::start(backend, name, &["--concurrency", "4"]).await;
    let mut client = t.booking.clone();

    let ok = trace_id(&format!("{name}-ok"));
    let reply = client
        .handle_throttling_booking(booking(&ok, 9, 1, false))
        .await
        .unwrap_or_else(|s| panic!("throttled booking over {backend:?}: {s:?}"))
        .into_inner();
    assert_eq!(reply.request_id, ok);
    assert_booked(&t, &ok, reply.order_id, reply.payment_id).await;

    let bad = trace_id(&format!("{name}-fault"));
    let status = client
        .handle_throttling_booking(booking(&bad, 9, 1, true))
        .await
        .expect_err("the payment is refused");
    assert_payment_refused(&status, &bad);
    t.assert_cancelled(&bad).await;

    // Async: answered at once, the outcome reaches this replica through Redis.
    let queued = trace_id(&format!("{name}-async"));
    let reply = client
        .handle_async_booking(booking(&queued, 9, 1, false))
        .await
        .unwrap_or_else(|s| panic!("async booking over {backend:?}: {s:?}"))
        .into_inner();
    assert_eq!(reply.request_id, queued);
    let booked = t.outcome(&queued).await.expect("the async saga completes");
    assert_booked(&t, &queued, booked.order_id, booked.payment_id).await;

    // A burst stays under the cap through the broker too.
    let ids: Vec<String> = (0..20).map(|i| trace_id(&format!("{name}-{i}"))).collect();
    let calls = ids.iter().map(|id| {
        let mut client = t.booking.clone();
        let request = booking(id, 1, 1, false);
        async move { client.handle_throttling_booking(request).await }
    });
    for (id, reply) in ids.iter().zip(join_all(calls).await) {
        reply.unwrap_or_else(|s| panic!("throttled booking {id} over {backend:?}: {s:?}"));
    }
    assert!(t.order_load().await.max_in_flight <= 4);
    assert!(t.payment_load().await.max_in_flight <= 4);
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttled_over_rabbitmq_and_redis() {
    throttled_over(Backend::RabbitMq, "rmq").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttled_over_nats_and_redis() {
    throttled_over(Backend::Nats, "nats").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulated_steps_book_without_any_upstream_service() {
    let options = booking::Options::parse_from([
        "booking",
        "--simulate",
        "--listen",
        "127.0.0.1:0",
        "--topic-prefix",
        &trace_id("simulate"),
    ]);
    let app = booking::start(options)
        .await
        .expect("the simulated app starts");
    assert!(
        app.order.is_none() && app.payment.is_none(),
        "no Order or Payment service is started"
    );
    let addr = app.booking_addr.expect("BookingService listens");
    let mut client = BookingServiceClient::connect(format!("http://{addr}"))
        .await
        .expect("connect to BookingService");
    let id = trace_id("simulate-ok");
    let reply = client
        .handle_sync_booking(booking(&id, 7, 2, false))
        .await
        .expect("a simulated booking completes")
        .into_inner();
    assert_eq!(reply.request_id, id);
    assert!(
        reply.order_id > 0 && reply.payment_id > reply.order_id,
        "{reply:?}"
    );
    let declined = trace_id("simulate-fault");
    let status = client
        .handle_sync_booking(booking(&declined, 7, 1, true))
        .await
        .expect_err("a fault-injected payment is declined");
    assert_payment_refused(&status, &declined);
    app.shutdown().await.expect("shutdown");
}
