//! The example's Payment service: a tonic server with in-memory payments, the second
//! upstream service the booking saga calls (take a payment; refund it as the compensation).
//!
//! Contract (see `proto/payment.proto`): create is idempotent per `x-idempotency-key` and
//! fails with `FailedPrecondition` (a final error, so the saga compensates) when the request
//! sets `fail` (the example's `FaultInject`); cancel by trace id is idempotent and refuses
//! later creates of that trace id; gets and `GetLoad` bypass the [`LoadGate`].

use std::sync::{Arc, Mutex};

use booking_proto::payment::payment_service_server::{PaymentService, PaymentServiceServer};
use booking_proto::payment::{
    CancelPaymentRequest, CreatePaymentRequest, GetPaymentRequest, GetPaymentsByTraceIdRequest,
    Payment, PaymentStatus, Payments,
};
use booking_proto::upstream::{GetLoadRequest, LoadStats};
use sagaflow::grpc::TraceIdPolicy;
use tonic::{Request, Response, Status};

use crate::ledger::{Ledger, Record};
use crate::upstream::{LoadConfig, LoadGate, idempotency_key, lock};

const SERVICE: &str = "payment service";

type State = Ledger<CreatePaymentRequest, Payment>;

impl Record for Payment {
    fn id(&self) -> i64 {
        self.id
    }
    fn cancel(&mut self) {
        self.set_status(PaymentStatus::Cancelled);
    }
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
            state: Arc::new(Mutex::new(Ledger::new("payment"))),
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
        Ok(lock(&self.state, SERVICE)?.of_trace(trace_id))
    }
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
                    tracing::info!(
                        trace_id,
                        order_id = input.order_id,
                        "payment refused (fault injected)"
                    );
                    return Err(Status::failed_precondition(format!(
                        "payment for order {} refused: fault injected (FaultInject)",
                        input.order_id
                    )));
                }
                let payment =
                    lock(&self.state, SERVICE)?.create(&trace_id, key, input, |id| Payment {
                        id,
                        trace_id: trace_id.clone(),
                        order_id: input.order_id,
                        amount: input.amount,
                        status: PaymentStatus::Active.into(),
                    })?;
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
                let payments = lock(&self.state, SERVICE)?.cancel(&trace_id);
                let ids: Vec<i64> = payments.iter().map(|r| r.id).collect();
                tracing::info!(trace_id, payments = ?ids, "payments cancelled");
                Ok(Response::new(Payments { payments }))
            })
            .await
    }

    async fn get_payment(
        &self,
        request: Request<GetPaymentRequest>,
    ) -> Result<Response<Payment>, Status> {
        let id = request.get_ref().id;
        lock(&self.state, SERVICE)?.get(id).map(Response::new)
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
