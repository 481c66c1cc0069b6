//! A booking example [`App`] started in-process on ephemeral ports, with tonic clients of its
//! three services, and the waits and look-ups the end-to-end tests share.

use std::time::{Duration, Instant};

use booking::app::{self, App, Options};
use booking::saga::{Booked, Booking};
use booking_proto::order::order_service_client::OrderServiceClient;
use booking_proto::order::{GetOrderRequest, GetOrdersByTraceIdRequest, Order, OrderStatus};
use booking_proto::payment::payment_service_client::PaymentServiceClient;
use booking_proto::payment::{GetPaymentRequest, GetPaymentsByTraceIdRequest, Payment};
use booking_proto::pb::BookingRequest;
use booking_proto::pb::booking_service_client::BookingServiceClient;
use booking_proto::upstream::{GetLoadRequest, LoadStats};
use clap::Parser;
use sagaflow::{Saga, SagaContext, SagaError};
use tonic::Request;
use tonic::transport::Channel;

use crate::common::backends::{
    REDIS_URL, START_NATS, START_RABBITMQ, START_REDIS, delete_redis_keys, unique_prefix,
};

/// The longest a test waits for a saga to end (generous: a loaded 2-core CI machine).
pub const WAIT: Duration = Duration::from_secs(30);

/// Which broker and store the app runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// The in-memory transport and store (the example's default).
    Memory,
    /// RabbitMQ and Redis.
    RabbitMq,
    /// NATS JetStream and Redis.
    Nats,
}

/// A running booking app and clients of its services.
pub struct TestApp {
    app: App,
    prefix: String,
    backend: Backend,
    /// `pb.BookingService`.
    pub booking: BookingServiceClient<Channel>,
    /// The Order service.
    pub orders: OrderServiceClient<Channel>,
    /// The Payment service.
    pub payments: PaymentServiceClient<Channel>,
}

impl TestApp {
    /// Starts the app (role all) on `backend` under a unique prefix derived from `name`,
    /// with `extra` flags (`--concurrency 4`, ...).
    pub async fn start(backend: Backend, name: &str, extra: &[&str]) -> Self {
        let prefix = unique_prefix(name);
        let mut args = vec![
            "booking",
            "--listen",
            "127.0.0.1:0",
            "--order-listen",
            "127.0.0.1:0",
            "--payment-listen",
            "127.0.0.1:0",
            "--topic-prefix",
            &prefix,
        ];
        match backend {
            Backend::Memory => {}
            Backend::RabbitMq => args.extend(["--transport", "rabbitmq", "--store", "redis"]),
            Backend::Nats => args.extend(["--transport", "nats", "--store", "redis"]),
        }
        args.extend(extra);
        let options = Options::parse_from(args);
        let app = match app::start(options).await {
            Ok(app) => app,
            Err(e) => panic!("the booking app did not start: {e}{}", start_hint(backend)),
        };
        let booking = BookingServiceClient::new(channel(app.booking_addr, "BookingService").await);
        let orders = OrderServiceClient::new(
            channel(app.order.as_ref().map(|(_, addr)| *addr), "Order service").await,
        );
        let payments = PaymentServiceClient::new(
            channel(
                app.payment.as_ref().map(|(_, addr)| *addr),
                "Payment service",
            )
            .await,
        );
        Self {
            app,
            prefix,
            backend,
            booking,
            orders,
            payments,
        }
    }

    /// The in-process app (orchestrator, services).
    pub fn app(&self) -> &App {
        &self.app
    }

    /// Waits (bounded by [`WAIT`]) for the outcome of `trace_id` through the orchestrator's
    /// store watcher: no polling.
    pub async fn outcome(&self, trace_id: &str) -> Result<Booked, SagaError> {
        let orchestrator = self
            .app
            .orchestrator
            .as_ref()
            .expect("role all runs an orchestrator");
        let cx = SagaContext::new(Booking::description().name, trace_id)
            .with_deadline(Some(Instant::now() + WAIT));
        orchestrator.outcome(&cx).await
    }

    /// The orders of `trace_id`, through `GetOrdersByTraceId`.
    pub async fn orders_of(&self, trace_id: &str) -> Vec<Order> {
        let request = GetOrdersByTraceIdRequest {
            trace_id: trace_id.to_owned(),
        };
        self.orders
            .clone()
            .get_orders_by_trace_id(request)
            .await
            .expect("GetOrdersByTraceId")
            .into_inner()
            .orders
    }

    /// The payments of `trace_id`, through `GetPaymentsByTraceId`.
    pub async fn payments_of(&self, trace_id: &str) -> Vec<Payment> {
        let request = GetPaymentsByTraceIdRequest {
            trace_id: trace_id.to_owned(),
        };
        self.payments
            .clone()
            .get_payments_by_trace_id(request)
            .await
            .expect("GetPaymentsByTraceId")
            .into_inner()
            .payments
    }

    /// One order, through `GetOrder`.
    pub async fn order(&self, id: i64) -> Order {
        self.orders
            .clone()
            .get_order(GetOrderRequest { id })
            .await
            .unwrap_or_else(|s| panic!("GetOrder {id}: {s:?}"))
            .into_inner()
    }

    /// One payment, through `GetPayment`.
    pub async fn payment(&self, id: i64) -> Payment {
        self.payments
            .clone()
            .get_payment(GetPaymentRequest { id })
            .await
            .unwrap_or_else(|s| panic!("GetPayment {id}: {s:?}"))
            .into_inner()
    }

    /// The only order of `trace_id`, looked up by trace id then by `GetOrder`.
    pub async fn single_order(&self, trace_id: &str) -> Order {
        let orders = self.orders_of(trace_id).await;
        assert_eq!(orders.len(), 1, "orders of {trace_id}: {orders:?}");
        self.order(orders[0].id).await
    }

    /// Asserts the only order of `trace_id` is CANCELLED and no payment of it is left active.
    pub async fn assert_cancelled(&self, trace_id: &str) {
        let order = self.single_order(trace_id).await;
        assert_eq!(order.status(), OrderStatus::Cancelled, "{order:?}");
        assert_eq!(order.trace_id, trace_id);
        let payments = self.payments_of(trace_id).await;
        assert!(
            payments.is_empty(),
            "a refused payment was recorded: {payments:?}"
        );
    }

    /// The Order service's load figures, through `GetLoad`.
    pub async fn order_load(&self) -> LoadStats {
        let request = GetLoadRequest { reset: false };
        self.orders
            .clone()
            .get_load(request)
            .await
            .expect("Order GetLoad")
            .into_inner()
    }

    /// The Payment service's load figures, through `GetLoad`.
    pub async fn payment_load(&self) -> LoadStats {
        let request = GetLoadRequest { reset: false };
        self.payments
            .clone()
            .get_load(request)
            .await
            .expect("Payment GetLoad")
            .into_inner()
    }

    /// Stops the app, then deletes the broker topology and Redis keys of its prefix.
    pub async fn shutdown(self) {
        let broker = self.app.broker();
        if let Err(e) = self.app.shutdown().await {
            eprintln!("shutdown of the booking app ({}): {e}", self.prefix);
        }
        if let Err(e) = broker.delete_topology().await {
            eprintln!(
                "cleanup: cannot delete the broker topology of {}: {e}",
                self.prefix
            );
        }
        if self.backend != Backend::Memory {
            delete_redis_keys(&self.prefix).await;
        }
    }
}

/// A booking request with `x-request-id: trace_id`.
pub fn booking(
    trace_id: &str,
    product_id: i64,
    count: i64,
    fault: bool,
) -> Request<BookingRequest> {
    let mut request = Request::new(BookingRequest {
        product_id,
        count,
        fault_inject: fault,
    });
    request.metadata_mut().insert(
        "x-request-id",
        trace_id.parse().expect("a trace id is visible ASCII"),
    );
    request
}

/// A trace id no other test (or earlier run) uses.
pub fn trace_id(name: &str) -> String {
    unique_prefix(name)
}

async fn channel(addr: Option<std::net::SocketAddr>, what: &str) -> Channel {
    let addr = addr.unwrap_or_else(|| panic!("role all runs the {what}"));
    Channel::from_shared(format!("http://{addr}"))
        .expect("a socket address is a valid URI")
        .connect_timeout(WAIT)
        .connect()
        .await
        .unwrap_or_else(|e| panic!("cannot connect to the {what} at {addr}: {e}"))
}

fn start_hint(backend: Backend) -> String {
    match backend {
        Backend::Memory => String::new(),
        Backend::RabbitMq => format!(
            " (needs RabbitMQ on 127.0.0.1:5672: {START_RABBITMQ}; and Redis at {REDIS_URL}: {START_REDIS})"
        ),
        Backend::Nats => format!(
            " (needs NATS JetStream on 127.0.0.1:4222: {START_NATS}; and Redis at {REDIS_URL}: {START_REDIS})"
        ),
    }
}
