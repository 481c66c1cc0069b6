//! The booking example's upstream services (the `booking` crate): the Order service's
//! idempotent create and cancel, the Payment service's fault injection, their load gate, and
//! their reflection.

use std::sync::Arc;
use std::time::Duration;

use booking::upstream::{LoadConfig, LoadGate};
use booking::{order, payment};
use booking_proto::order::order_service_client::OrderServiceClient;
use booking_proto::order::{CancelOrderRequest, CreateOrderRequest, GetOrderRequest, OrderStatus};
use booking_proto::payment::payment_service_client::PaymentServiceClient;
use booking_proto::payment::{CreatePaymentRequest, GetPaymentsByTraceIdRequest};
use booking_proto::upstream::GetLoadRequest;
use futures_util::StreamExt;
use saga_runtime::SagaContext;
use saga_runtime::grpc::{GrpcServer, ServerHandle, outgoing_request, step_error_from_status};
use tokio::sync::Semaphore;
use tonic::{Code, Status};

use crate::support::{channel, loopback, within};

struct Upstream {
    order: order::OrderSvc,
    payment: payment::PaymentSvc,
    server: ServerHandle,
}

async fn start_upstream(load: LoadConfig) -> Upstream {
    let order = order::OrderSvc::new(load);
    let payment = payment::PaymentSvc::new(load);
    let server = GrpcServer::new()
        .shutdown_on_signals(false)
        .register_file_descriptor_set(booking_proto::FILE_DESCRIPTOR_SET)
        .add_service(order.clone().into_server())
        .add_service(payment.clone().into_server())
        .serve(loopback())
        .await
        .expect("upstream test server starts");
    Upstream {
        order,
        payment,
        server,
    }
}

#[tokio::test]
async fn order_create_is_idempotent_per_key_and_cancel_by_trace_id_is_idempotent() {
    let upstream = start_upstream(LoadConfig::default()).await;
    let mut orders = OrderServiceClient::new(channel(upstream.server.local_addr()).await);
    let cx = SagaContext::new("booking", "order-1").at("create_order", false, 1);
    let input = CreateOrderRequest {
        product_id: 3,
        count: 2,
    };

    let first = within("create", orders.create_order(outgoing_request(&cx, input)))
        .await
        .expect("created")
        .into_inner();
    let again = within(
        "create again",
        orders.create_order(outgoing_request(&cx, input)),
    )
    .await
    .expect("same key returns the same order")
    .into_inner();
    assert_eq!(first, again);
    assert_eq!(first.trace_id, "order-1");
    assert_eq!(first.status(), OrderStatus::Active);

    let other = CreateOrderRequest {
        product_id: 4,
        count: 2,
    };
    let conflict = within(
        "create other",
        orders.create_order(outgoing_request(&cx, other)),
    )
    .await
    .expect_err("same key, other input");
    assert_eq!(conflict.code(), Code::AlreadyExists);

    let missing = within("create without id", orders.create_order(input))
        .await
        .expect_err("x-request-id required");
    assert_eq!(missing.code(), Code::InvalidArgument);
    let invalid = within(
        "create invalid",
        orders.create_order(outgoing_request(
            &cx.at("other", false, 1),
            CreateOrderRequest {
                product_id: 0,
                count: 1,
            },
        )),
    )
    .await
    .expect_err("product_id 0");
    assert_eq!(invalid.code(), Code::InvalidArgument);

    let undo = cx.at("create_order", true, 1);
    for _ in 0..2 {
        let cancelled = within(
            "cancel",
            orders.cancel_order(outgoing_request(&undo, CancelOrderRequest::default())),
        )
        .await
        .expect("cancel succeeds, twice")
        .into_inner();
        assert_eq!(cancelled.orders.len(), 1);
        assert_eq!(cancelled.orders[0].status(), OrderStatus::Cancelled);
    }
    let seen = within("get", orders.get_order(GetOrderRequest { id: first.id }))
        .await
        .expect("get by id")
        .into_inner();
    assert_eq!(seen.status(), OrderStatus::Cancelled);
    assert_eq!(upstream.order.orders_of("order-1").expect("state").len(), 1);

    let late = within(
        "create after cancel",
        orders.create_order(outgoing_request(&cx.at("create_order_2", false, 1), input)),
    )
    .await
    .expect_err("a compensated trace id takes no new order");
    assert_eq!(late.code(), Code::FailedPrecondition);

    let nothing = within(
        "cancel of an unknown trace id",
        orders.cancel_order(CancelOrderRequest {
            trace_id: "order-none".into(),
        }),
    )
    .await
    .expect("cancelling nothing succeeds")
    .into_inner();
    assert!(nothing.orders.is_empty());

    upstream.server.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn payment_fault_injection_is_a_final_step_error_and_nothing_is_paid() {
    let upstream = start_upstream(LoadConfig::default()).await;
    let mut payments = PaymentServiceClient::new(channel(upstream.server.local_addr()).await);
    let cx = SagaContext::new("booking", "pay-1").at("create_payment", false, 1);

    let refused = within(
        "a failing payment",
        payments.create_payment(outgoing_request(
            &cx,
            CreatePaymentRequest {
                order_id: 1,
                amount: 100,
                fail: true,
            },
        )),
    )
    .await
    .expect_err("fault injected");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(!step_error_from_status(&refused).is_retryable());
    let listed = within(
        "payments of the trace",
        payments.get_payments_by_trace_id(GetPaymentsByTraceIdRequest {
            trace_id: "pay-1".into(),
        }),
    )
    .await
    .expect("list")
    .into_inner();
    assert!(listed.payments.is_empty());

    let paid = within(
        "a payment",
        payments.create_payment(outgoing_request(
            &cx,
            CreatePaymentRequest {
                order_id: 1,
                amount: 100,
                fail: false,
            },
        )),
    )
    .await
    .expect("paid")
    .into_inner();
    assert_eq!(
        upstream.payment.payments_of("pay-1").expect("state"),
        vec![paid]
    );

    let load = within("load", payments.get_load(GetLoadRequest { reset: false }))
        .await
        .expect("load figures")
        .into_inner();
    assert_eq!(load.calls, 2);
    assert_eq!(load.in_flight, 0);
    assert_eq!(load.max_in_flight, 1);
    upstream.server.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn load_gate_counts_concurrency_and_refuses_calls_beyond_capacity() {
    let gate = Arc::new(LoadGate::new(
        "test service",
        LoadConfig {
            latency: Duration::ZERO,
            capacity: Some(2),
        },
    ));
    let release = Arc::new(Semaphore::new(0));
    let mut held = Vec::new();
    for _ in 0..2 {
        let gate = Arc::clone(&gate);
        let release = Arc::clone(&release);
        held.push(tokio::spawn(async move {
            gate.run(async {
                let _permit = release
                    .acquire()
                    .await
                    .map_err(|_| Status::internal("closed"))?;
                Ok(())
            })
            .await
        }));
    }
    within("two calls in flight", async {
        while gate.stats(false).in_flight < 2 {
            tokio::task::yield_now().await;
        }
    })
    .await;
    let refused = gate
        .run(async { Ok(()) })
        .await
        .expect_err("a third concurrent call is over capacity");
    assert_eq!(refused.code(), Code::Unavailable);
    assert!(step_error_from_status(&refused).is_retryable());

    release.add_permits(2);
    for call in held {
        within("a held call", call)
            .await
            .expect("task")
            .expect("admitted call succeeds");
    }
    let stats = gate.stats(true);
    assert_eq!(
        (
            stats.in_flight,
            stats.max_in_flight,
            stats.calls,
            stats.rejected
        ),
        (0, 2, 3, 1)
    );
    let after_reset = gate.stats(false);
    assert_eq!(
        (
            after_reset.max_in_flight,
            after_reset.calls,
            after_reset.rejected
        ),
        (0, 0, 0)
    );
}

#[tokio::test]
async fn upstream_reflection_lists_order_and_payment_services() {
    use tonic_reflection::pb::v1alpha;
    let upstream = start_upstream(LoadConfig::default()).await;
    let mut client = v1alpha::server_reflection_client::ServerReflectionClient::new(
        channel(upstream.server.local_addr()).await,
    );
    let request = v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            v1alpha::server_reflection_request::MessageRequest::ListServices(String::new()),
        ),
    };
    let mut responses = within(
        "reflection",
        client.server_reflection_info(futures_util::stream::iter([request])),
    )
    .await
    .expect("reflection answers")
    .into_inner();
    let listed = within("list", responses.next())
        .await
        .expect("a response")
        .expect("ok");
    let Some(v1alpha::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
        listed.message_response
    else {
        panic!("expected a list, got {listed:?}");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(
        names.contains(&"order.OrderService".to_owned()),
        "{names:?}"
    );
    assert!(
        names.contains(&"payment.PaymentService".to_owned()),
        "{names:?}"
    );
    assert!(
        !names.contains(&"pb.BookingService".to_owned()),
        "{names:?}"
    );
    drop(responses);
    upstream.server.shutdown().await.expect("clean shutdown");
}
