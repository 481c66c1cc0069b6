//! The booking saga under the test kit (`sagaflow::testing`), against the example's own Order
//! and Payment services on a loopback port: every failure point, a declined payment, and a
//! lost reply, each checked against what the services hold.

use std::net::SocketAddr;

use booking::saga::{Booking, BookingInput};
use booking::upstream::LoadConfig;
use booking::{order, payment};
use booking_proto::order::OrderStatus;
use sagaflow::grpc::{GrpcServer, ServerHandle};
use sagaflow::testing::{Fault, SagaTest};
use tonic::transport::Channel;

struct Services {
    orders: order::OrderSvc,
    payments: payment::PaymentSvc,
    server: ServerHandle,
}

async fn services() -> Services {
    let orders = order::OrderSvc::new(LoadConfig::default());
    let payments = payment::PaymentSvc::new(LoadConfig::default());
    let server = GrpcServer::new()
        .shutdown_on_signals(false)
        .add_service(orders.clone().into_server())
        .add_service(payments.clone().into_server())
        .serve(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .expect("the Order and Payment services start on loopback");
    Services {
        orders,
        payments,
        server,
    }
}

async fn channel(addr: SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .expect("a valid uri")
        .connect()
        .await
        .expect("connects to the services")
}

async fn booking_test(services: &Services, trace_id: &str) -> SagaTest<Booking> {
    let addr = services.server.local_addr();
    SagaTest::new(Booking::new(channel(addr).await, channel(addr).await)).trace_id(trace_id)
}

fn two_items() -> BookingInput {
    BookingInput {
        product_id: 7,
        count: 2,
        fault_inject: false,
    }
}

#[tokio::test]
async fn a_booking_creates_one_order_and_one_payment() {
    let services = services().await;
    let test = booking_test(&services, "kit-ok").await;
    let run = test.run(two_items()).await;
    run.assert_completed();
    let orders = services.orders.orders_of("kit-ok").expect("orders");
    assert_eq!(orders.len(), 1);
    assert_eq!(orders[0].status(), OrderStatus::Active);
    let payments = services.payments.payments_of("kit-ok").expect("payments");
    assert_eq!(payments.len(), 1);
    assert_eq!(payments[0].amount, 200);
}

#[tokio::test]
async fn every_failure_point_leaves_no_active_order_behind() {
    let services = services().await;
    let test = booking_test(&services, "kit-every").await;
    // A failure of `create_order` undoes nothing; of `create_payment` (the pivot), cancels the
    // order. The kit checks the order of compensations; the Order service says they worked.
    test.assert_every_failure_compensates(two_items).await;
    let orders = services.orders.orders_of("kit-every").expect("orders");
    assert!(
        orders.iter().all(|o| o.status() == OrderStatus::Cancelled),
        "{orders:?}"
    );
    assert!(
        services
            .payments
            .payments_of("kit-every")
            .expect("payments")
            .is_empty()
    );
}

#[tokio::test]
async fn a_declined_payment_cancels_the_order() {
    let services = services().await;
    let test = booking_test(&services, "kit-declined").await;
    let declined = BookingInput {
        fault_inject: true,
        ..two_items()
    };
    let run = test.run(declined).await;
    run.assert_compensated_after("create_payment");
    assert_eq!(run.compensations_done(), ["create_order"]);
    let orders = services.orders.orders_of("kit-declined").expect("orders");
    assert_eq!(orders.len(), 1);
    assert_eq!(orders[0].status(), OrderStatus::Cancelled);
}

#[tokio::test]
async fn a_lost_payment_reply_is_retried_with_the_same_key_and_pays_once() {
    let services = services().await;
    let test = booking_test(&services, "kit-lost").await;
    let run = test
        .run_with(
            two_items(),
            [Fault::step("create_payment").loses_reply().times(1)],
        )
        .await;
    run.assert_completed();
    assert_eq!(run.attempts("create_payment", false), 2);
    let payments = services.payments.payments_of("kit-lost").expect("payments");
    assert_eq!(
        payments.len(),
        1,
        "the Payment service deduplicated by idempotency key"
    );
}
