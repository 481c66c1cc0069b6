//! The example's Payment service: a tonic server with in-memory payments, the second
//! upstream service the booking saga calls (take a payment; refund it as the compensation).
//!
//! Contract (see `proto/payment.proto`): create is idempotent per `x-idempotency-key` and
//! fails with `FailedPrecondition` (a final error, so the saga compensates) when the request
//! sets `fail` (the example's `FaultInject`); cancel by trace id is idempotent and refuses
//! later creates of that trace id; gets and `GetLoad` bypass the [`LoadGate`].

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use booking_proto::payment::payment_service_server::{PaymentService, PaymentServiceServer};
use booking_proto::payment::{
    CancelPaymentRequest, CreatePaymentRequest, GetPaymentRequest, GetPaymentsByTraceIdRequest,
    Payment, PaymentStatus, Payments,
};
use booking_proto::upstream::{GetLoadRequest, LoadStats};
use saga_runtime::grpc::TraceIdPolicy;
use tonic::{Request, Response, Status};

use crate::upstream::{LoadConfig, LoadGate, idempotency_key, lock};

const SERVICE: &str = "payment service";

#[derive(Debug, Default)]
struct State {
    last_id: i64,
    by_id: BTreeMap<i64, Payment>,
    by_trace: HashMap<String, Vec<i64>>,
    by_key: HashMap<String, (CreatePaymentRequest, i64)>,
    cancelled_traces: HashSet<String>,
}

/// The Payment service. Clones share the same payments and load gate.
#[derive(Clone, Debug)]
pub struct PaymentSvc {
    state: Arc<Mutex<State>>,
    gate: Arc<LoadGate>,
}

impl PaymentSvc {
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
    pub fn into_server(self) -> PaymentServiceServer<Self> {
        PaymentServiceServer::new(self)
    }

    /// The payments of `trace_id`, by id (in-process view of `GetPaymentsByTraceId`).
    pub fn payments_of(&self, trace_id: &str) -> Result<Vec<Payment>, Status> {
        let state = lock(&self.state, SERVICE)?;
        Ok(payments_of(&state, trace_id))
    }
}

fn payments_of(state: &State, trace_id: &str) -> Vec<Payment> {
    state
        .by_trace
        .get(trace_id)
        .into_iter()
        .flatten()
        .filter_map(|id| state.by_id.get(id).cloned())
        .collect()
}

#[tonic::async_trait]
impl PaymentService for PaymentSvc {
    async fn create_payment(
        &self,
        request: Request<CreatePaymentRequest>,
    ) -> Result<Response<Payment>, Status> {
        let trace_id = TraceIdPolicy::Require.trace_id(&request)?;
        let key = idempotency_key(&request);
        let input = request.into_inner();
        if input.order_id <= 0 || input.amount < 0 {
            return Err(Status::invalid_argument(format!(
                "order_id must be > 0 and amount >= 0 (got {} and {})",
                input.order_id, input.amount
            )));
        }
        self.gate
            .run(async {
                if input.fail {
                    tracing::info!(trace_id, order_id = input.order_id, "payment refused (fault injected)");
                    return Err(Status::failed_precondition(format!(
                        "payment for order {} refused: fault injected (FaultInject)",
                        input.order_id
                    )));
                }
                let mut state = lock(&self.state, SERVICE)?;
                if let Some(key) = &key
                    && let Some((first, id)) = state.by_key.get(key)
                {
                    if *first != input {
                        return Err(Status::already_exists(format!(
                            "idempotency key {key} was used for another payment; use a new key"
                        )));
                    }
                    let payment = state.by_id.get(id).cloned();
                    return payment
                        .map(Response::new)
                        .ok_or_else(|| Status::internal("payment index out of sync"));
                }
                if state.cancelled_traces.contains(&trace_id) {
                    return Err(Status::failed_precondition(format!(
                        "the payments of trace id {trace_id} were already cancelled; not creating a new one"
                    )));
                }
                state.last_id += 1;
                let payment = Payment {
                    id: state.last_id,
                    trace_id: trace_id.clone(),
                    order_id: input.order_id,
                    amount: input.amount,
                    status: PaymentStatus::Active.into(),
                };
                state.by_id.insert(payment.id, payment.clone());
                state
                    .by_trace
                    .entry(trace_id.clone())
                    .or_default()
                    .push(payment.id);
                if let Some(key) = key {
                    state.by_key.insert(key, (input, payment.id));
                }
                tracing::info!(trace_id, payment_id = payment.id, "payment created");
                Ok(Response::new(payment))
            })
            .await
    }

    async fn cancel_payment(
        &self,
        request: Request<CancelPaymentRequest>,
    ) -> Result<Response<Payments>, Status> {
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
                    if let Some(payment) = state.by_id.get_mut(id) {
                        payment.set_status(PaymentStatus::Cancelled);
                    }
                }
                tracing::info!(trace_id, payments = ?ids, "payments cancelled");
                Ok(Response::new(Payments {
                    payments: payments_of(&state, &trace_id),
                }))
            })
            .await
    }

    async fn get_payment(
        &self,
        request: Request<GetPaymentRequest>,
    ) -> Result<Response<Payment>, Status> {
        let id = request.get_ref().id;
        let state = lock(&self.state, SERVICE)?;
        state
            .by_id
            .get(&id)
            .cloned()
            .map(Response::new)
            .ok_or_else(|| Status::not_found(format!("no payment with id {id}")))
    }

    async fn get_payments_by_trace_id(
        &self,
        request: Request<GetPaymentsByTraceIdRequest>,
    ) -> Result<Response<Payments>, Status> {
        let payments = self.payments_of(&request.get_ref().trace_id)?;
        Ok(Response::new(Payments { payments }))
    }

    async fn get_load(
        &self,
        request: Request<GetLoadRequest>,
    ) -> Result<Response<LoadStats>, Status> {
        Ok(Response::new(self.gate.stats(request.get_ref().reset)))
    }
}
