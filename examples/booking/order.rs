//! The example's Order service: a tonic server with in-memory orders, the first upstream
//! service the booking saga calls (create an order; cancel it as the compensation).
//!
//! Contract (see `proto/order.proto`): create is idempotent per `x-idempotency-key`; cancel
//! by trace id is idempotent and also refuses later creates of that trace id (a compensation
//! that overtook its step); gets and `GetLoad` bypass the [`LoadGate`].

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use booking_proto::order::order_service_server::{OrderService, OrderServiceServer};
use booking_proto::order::{
    CancelOrderRequest, CreateOrderRequest, GetOrderRequest, GetOrdersByTraceIdRequest, Order,
    OrderStatus, Orders,
};
use booking_proto::upstream::{GetLoadRequest, LoadStats};
use saga_runtime::grpc::TraceIdPolicy;
use tonic::{Request, Response, Status};

use crate::upstream::{LoadConfig, LoadGate, idempotency_key, lock};

const SERVICE: &str = "order service";

#[derive(Debug, Default)]
struct State {
    last_id: i64,
    by_id: BTreeMap<i64, Order>,
    by_trace: HashMap<String, Vec<i64>>,
    by_key: HashMap<String, (CreateOrderRequest, i64)>,
    cancelled_traces: HashSet<String>,
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
            state: Arc::default(),
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
        let state = lock(&self.state, SERVICE)?;
        Ok(orders_of(&state, trace_id))
    }
}

fn orders_of(state: &State, trace_id: &str) -> Vec<Order> {
    state
        .by_trace
        .get(trace_id)
        .into_iter()
        .flatten()
        .filter_map(|id| state.by_id.get(id).cloned())
        .collect()
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
                let mut state = lock(&self.state, SERVICE)?;
                if let Some(key) = &key
                    && let Some((first, id)) = state.by_key.get(key)
                {
                    if *first != input {
                        return Err(Status::already_exists(format!(
                            "idempotency key {key} was used for another order; use a new key"
                        )));
                    }
                    let order = state.by_id.get(id).cloned();
                    return order
                        .map(Response::new)
                        .ok_or_else(|| Status::internal("order index out of sync"));
                }
                if state.cancelled_traces.contains(&trace_id) {
                    return Err(Status::failed_precondition(format!(
                        "the orders of trace id {trace_id} were already cancelled; not creating a new one"
                    )));
                }
                state.last_id += 1;
                let order = Order {
                    id: state.last_id,
                    trace_id: trace_id.clone(),
                    product_id: input.product_id,
                    count: input.count,
                    status: OrderStatus::Active.into(),
                };
                state.by_id.insert(order.id, order.clone());
                state.by_trace.entry(trace_id.clone()).or_default().push(order.id);
                if let Some(key) = key {
                    state.by_key.insert(key, (input, order.id));
                }
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
                let mut state = lock(&self.state, SERVICE)?;
                state.cancelled_traces.insert(trace_id.clone());
                let ids = state.by_trace.get(&trace_id).cloned().unwrap_or_default();
                for id in &ids {
                    if let Some(order) = state.by_id.get_mut(id) {
                        order.set_status(OrderStatus::Cancelled);
                    }
                }
                tracing::info!(trace_id, orders = ?ids, "orders cancelled");
                Ok(Response::new(Orders {
                    orders: orders_of(&state, &trace_id),
                }))
            })
            .await
    }

    async fn get_order(
        &self,
        request: Request<GetOrderRequest>,
    ) -> Result<Response<Order>, Status> {
        let id = request.get_ref().id;
        let state = lock(&self.state, SERVICE)?;
        state
            .by_id
            .get(&id)
            .cloned()
            .map(Response::new)
            .ok_or_else(|| Status::not_found(format!("no order with id {id}")))
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
