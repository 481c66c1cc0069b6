//! The example's Order service: a tonic server with in-memory orders, the first upstream
//! service the booking saga calls (create an order; cancel it as the compensation).
//!
//! Contract (see `proto/order.proto`): create is idempotent per `x-idempotency-key`; cancel
//! by trace id is idempotent and also refuses later creates of that trace id (a compensation
//! that overtook its step); gets and `GetLoad` bypass the [`LoadGate`].

use std::sync::{Arc, Mutex};

use booking_proto::order::order_service_server::{OrderService, OrderServiceServer};
use booking_proto::order::{
    CancelOrderRequest, CreateOrderRequest, GetOrderRequest, GetOrdersByTraceIdRequest, Order,
    OrderStatus, Orders,
};
use booking_proto::upstream::{GetLoadRequest, LoadStats};
use sagaflow::grpc::TraceIdPolicy;
use tonic::{Request, Response, Status};

use crate::ledger::{Ledger, Record};
use crate::upstream::{LoadConfig, LoadGate, idempotency_key, lock};

const SERVICE: &str = "order service";

type State = Ledger<CreateOrderRequest, Order>;

impl Record for Order {
    fn id(&self) -> i64 {
        self.id
    }
    fn cancel(&mut self) {
        self.set_status(OrderStatus::Cancelled);
    }
}

/// The Order service. Clones share the same orders and load gate.
#[derive(Clone, Debug)]
pub struct OrderSvc {
    state: Arc<Mutex<State>>,
    gate: Arc<LoadGate>,
}

impl OrderSvc {
    /// An empty service behaving per `load`.
    pub fn new(load: LoadConfig) -> Self {
        Self {
            state: Arc::new(Mutex::new(Ledger::new("order"))),
            gate: Arc::new(LoadGate::new(SERVICE, load)),
        }
    }

    /// The load gate, to read the concurrency figures in-process.
    pub fn gate(&self) -> &Arc<LoadGate> {
        &self.gate
    }

    /// The tonic server to add to a `GrpcServer`.
    pub fn into_server(self) -> OrderServiceServer<Self> {
        OrderServiceServer::new(self)
    }

    /// The orders of `trace_id`, by id (in-process view of `GetOrdersByTraceId`).
    pub fn orders_of(&self, trace_id: &str) -> Result<Vec<Order>, Status> {
        Ok(lock(&self.state, SERVICE)?.of_trace(trace_id))
    }
}

#[tonic::async_trait]
impl OrderService for OrderSvc {
    async fn create_order(
        &self,
        request: Request<CreateOrderRequest>,
    ) -> Result<Response<Order>, Status> {
        let trace_id = TraceIdPolicy::Require.trace_id(&request)?;
        let key = idempotency_key(&request);
        let input = request.into_inner();
        if input.product_id <= 0 || input.count <= 0 {
            return Err(Status::invalid_argument(format!(
                "product_id and count must be > 0 (got {} and {})",
                input.product_id, input.count
            )));
        }
        self.gate
            .run(async {
                let order =
                    lock(&self.state, SERVICE)?.create(&trace_id, key, input, |id| Order {
                        id,
                        trace_id: trace_id.clone(),
                        product_id: input.product_id,
                        count: input.count,
                        status: OrderStatus::Active.into(),
                    })?;
                tracing::info!(trace_id, order_id = order.id, "order created");
                Ok(Response::new(order))
            })
            .await
    }

    async fn cancel_order(
        &self,
        request: Request<CancelOrderRequest>,
    ) -> Result<Response<Orders>, Status> {
        let trace_id = match request.get_ref().trace_id.trim() {
            "" => TraceIdPolicy::Require.trace_id(&request)?,
            given => given.to_owned(),
        };
        self.gate
            .run(async {
                let orders = lock(&self.state, SERVICE)?.cancel(&trace_id);
                let ids: Vec<i64> = orders.iter().map(|r| r.id).collect();
                tracing::info!(trace_id, orders = ?ids, "orders cancelled");
                Ok(Response::new(Orders { orders }))
            })
            .await
    }

    async fn get_order(
        &self,
        request: Request<GetOrderRequest>,
    ) -> Result<Response<Order>, Status> {
        let id = request.get_ref().id;
        lock(&self.state, SERVICE)?.get(id).map(Response::new)
    }

    async fn get_orders_by_trace_id(
        &self,
        request: Request<GetOrdersByTraceIdRequest>,
    ) -> Result<Response<Orders>, Status> {
        let orders = self.orders_of(&request.get_ref().trace_id)?;
        Ok(Response::new(Orders { orders }))
    }

    async fn get_load(
        &self,
        request: Request<GetLoadRequest>,
    ) -> Result<Response<LoadStats>, Status> {
        Ok(Response::new(self.gate.stats(request.get_ref().reset)))
    }
}
