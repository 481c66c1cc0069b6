//! The booking saga: create an order, then a payment. A failed payment (`FaultInject`)
//! cancels the order.

use booking_proto::order::order_service_client::OrderServiceClient;
use booking_proto::order::{CancelOrderRequest, CreateOrderRequest};
use booking_proto::payment::CreatePaymentRequest;
use booking_proto::payment::payment_service_client::PaymentServiceClient;
use sagaflow::grpc::outgoing_request;
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use sagaflow::{SagaContext, StepError, StepResult, saga};
use serde::{Deserialize, Serialize};
use tonic::transport::Channel;

/// What to book (the validated `pb.BookingRequest`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BookingInput {
    /// The product (> 0).
    pub product_id: i64,
    /// How many (> 0).
    pub count: i64,
    /// Makes the payment fail for good, so the order is cancelled.
    pub fault_inject: bool,
}

/// The order the first step created.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreatedOrder {
    /// Its id at the Order service.
    pub order_id: i64,
}

/// A completed booking: the saga's output.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Booked {
    /// The order.
    pub order_id: i64,
    /// The payment.
    pub payment_id: i64,
}

/// The saga type: holds the clients of the upstream services its steps call, or simulates
/// them.
#[derive(Debug)]
pub struct Booking {
    upstream: Upstream,
}

/// Where the steps' work happens.
#[derive(Debug)]
enum Upstream {
    /// The Order and Payment services, over gRPC.
    Services(Box<Services>),
    /// In the step itself: ids from a counter, a fault-injected payment declined, no call
    /// made (`--simulate`: the framework measured on the same work as a simulated-step server).
    /// Each step and compensation first sleeps `latency` (`--simulate-latency`: sagas stay in
    /// flight that long per step, as with a slow upstream).
    Simulated {
        next_id: AtomicI64,
        latency: Duration,
    },
}

/// The clients of the upstream services.
#[derive(Debug)]
struct Services {
    orders: OrderServiceClient<Channel>,
    payments: PaymentServiceClient<Channel>,
}

impl Booking {
    /// A booking saga calling the Order and Payment services over these channels.
    pub fn new(orders: Channel, payments: Channel) -> Self {
        Self {
            upstream: Upstream::Services(Box::new(Services {
                orders: OrderServiceClient::new(orders),
                payments: PaymentServiceClient::new(payments),
            })),
        }
    }

    /// A booking saga whose steps call nothing: the order and payment ids come from a
    /// counter, and a fault-injected payment is declined (so the order is "cancelled").
    pub fn simulated() -> Self {
        Self::simulated_with_latency(Duration::ZERO)
    }

    /// As [`Booking::simulated`], but every step and compensation first waits `latency` (a
    /// timer, no CPU), so each saga stays in flight at least twice that long. Keep it below
    /// the steps' 5 s timeout, or every step times out.
    pub fn simulated_with_latency(latency: Duration) -> Self {
        Self {
            upstream: Upstream::Simulated {
                next_id: AtomicI64::new(1),
                latency,
            },
        }
    }

    /// The simulated latency of each step (zero when the steps call the real services).
    pub fn simulated_latency(&self) -> Duration {
        match &self.upstream {
            Upstream::Simulated { latency, .. } => *latency,
            Upstream::Services(_) => Duration::ZERO,
        }
    }

    /// Waits the simulated latency, if any.
    async fn simulate_latency(&self) {
        let latency = self.simulated_latency();
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
    }
}

/// Awaits an upstream call in a box of its own. A gRPC client call's future is most of a
/// step's (about 1.5 KB); inline, it would be held by every in-flight saga's future for the
/// whole step, also while a simulated step waits and never calls. Boxed, it is allocated only
/// while a call runs.
fn boxed<F: Future>(call: F) -> Pin<Box<F>> {
    Box::pin(call)
}

fn next(counter: &AtomicI64) -> i64 {
    counter.fetch_add(1, Ordering::Relaxed)
}

#[saga]
impl Booking {
    /// Creates the order (idempotent per the step's idempotency key).
    #[step(compensate = cancel_order, timeout_ms = 5000, retry(max_attempts = 3, initial_backoff_ms = 20, max_backoff_ms = 200))]
    async fn create_order(&self, cx: &SagaContext, req: &BookingInput) -> StepResult<CreatedOrder> {
        let orders = match &self.upstream {
            Upstream::Services(services) => &services.orders,
            Upstream::Simulated { next_id, .. } => {
                self.simulate_latency().await;
                return Ok(CreatedOrder {
                    order_id: next(next_id),
                });
            }
        };
        let request = CreateOrderRequest {
            product_id: req.product_id,
            count: req.count,
        };
        let order = boxed(async {
            let mut orders = orders.clone();
            orders.create_order(outgoing_request(cx, request)).await
        })
        .await?
        .into_inner();
        Ok(CreatedOrder { order_id: order.id })
    }

    /// Cancels every order of the trace id (idempotent).
    async fn cancel_order(&self, cx: &SagaContext, _order: &CreatedOrder) -> StepResult<()> {
        let Upstream::Services(services) = &self.upstream else {
            self.simulate_latency().await;
            return Ok(());
        };
        let orders = &services.orders;
        let request = CancelOrderRequest {
            trace_id: cx.trace_id().to_string(),
        };
        boxed(async {
            let mut orders = orders.clone();
            orders.cancel_order(outgoing_request(cx, request)).await
        })
        .await?;
        Ok(())
    }

    /// Takes the payment: the point of no return.
    #[step(
        pivot,
        timeout_ms = 5000,
        retry(max_attempts = 3, initial_backoff_ms = 20, max_backoff_ms = 200)
    )]
    async fn create_payment(
        &self,
        cx: &SagaContext,
        req: &BookingInput,
        create_order: &CreatedOrder,
    ) -> StepResult<Booked> {
        let payments = match &self.upstream {
            Upstream::Services(services) => &services.payments,
            Upstream::Simulated { .. } if req.fault_inject => {
                self.simulate_latency().await;
                return Err(StepError::fatal("payment declined (fault injected)"));
            }
            Upstream::Simulated { next_id, .. } => {
                self.simulate_latency().await;
                return Ok(Booked {
                    order_id: create_order.order_id,
                    payment_id: next(next_id),
                });
            }
        };
        let request = CreatePaymentRequest {
            order_id: create_order.order_id,
            amount: req.count * 100,
            fail: req.fault_inject,
        };
        let payment = boxed(async {
            let mut payments = payments.clone();
            payments.create_payment(outgoing_request(cx, request)).await
        })
        .await?
        .into_inner();
        Ok(Booked {
            order_id: create_order.order_id,
            payment_id: payment.id,
        })
    }
}
