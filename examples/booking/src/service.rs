//! `pb.BookingService` over the booking saga's orchestrator: the three RPCs are the three
//! modes of the one saga definition.

use booking_proto::pb::booking_service_server::{BookingService, BookingServiceServer};
use booking_proto::pb::{BookingASyncResponse, BookingRequest, BookingSyncResponse};
use sagaflow::engine::Orchestrator;
use sagaflow::grpc::{TraceIdPolicy, response_with_trace_id, saga_context, status_from_saga_error};
use sagaflow::{Saga, SagaContext};
use tonic::{Request, Response, Status};
use tracing::info;

use crate::saga::{Booked, Booking, BookingInput};

/// The orchestrator's gRPC API.
#[derive(Clone, Debug)]
pub struct BookingApi {
    orchestrator: Orchestrator<Booking>,
    policy: TraceIdPolicy,
}

impl BookingApi {
    /// The API over `orchestrator`, reading trace ids per `policy`.
    pub fn new(orchestrator: Orchestrator<Booking>, policy: TraceIdPolicy) -> Self {
        Self {
            orchestrator,
            policy,
        }
    }

    /// The tonic server to add to a `GrpcServer`.
    pub fn into_server(self) -> BookingServiceServer<Self> {
        BookingServiceServer::new(self)
    }

    /// The saga context and the validated input of a request; refused before any saga starts.
    fn accept(
        &self,
        request: &Request<BookingRequest>,
    ) -> Result<(SagaContext, BookingInput), Status> {
        let cx = saga_context(Booking::description().name, request, self.policy)?;
        let input = validate(request.get_ref(), cx.trace_id())?;
        Ok((cx, input))
    }
}

/// Checks the request fields: `ProductID` > 0, `Count` >= 0 (0 means 1).
pub fn validate(request: &BookingRequest, trace_id: &str) -> Result<BookingInput, Status> {
    if request.product_id <= 0 {
        return Err(Status::invalid_argument(format!(
            "ProductID must be greater than 0, got {} [trace id {trace_id}]",
            request.product_id
        )));
    }
    if request.count < 0 {
        return Err(Status::invalid_argument(format!(
            "Count must not be negative, got {} [trace id {trace_id}]",
            request.count
        )));
    }
    Ok(BookingInput {
        product_id: request.product_id,
        count: request.count.max(1),
        fault_inject: request.fault_inject,
    })
}

fn sync_response(trace_id: &str, booked: Booked) -> Response<BookingSyncResponse> {
    let body = BookingSyncResponse {
        request_id: trace_id.to_string(),
        order_id: booked.order_id,
        payment_id: booked.payment_id,
    };
    response_with_trace_id(trace_id, body)
}

#[tonic::async_trait]
impl BookingService for BookingApi {
    async fn handle_sync_booking(
        &self,
        request: Request<BookingRequest>,
    ) -> Result<Response<BookingSyncResponse>, Status> {
        let (cx, input) = self.accept(&request)?;
        // `run_sync` runs the saga on a task of its own: a client that hangs up does not abandon
        // it halfway (a task spawned here too would hold a second copy of the saga's future).
        let result = self.orchestrator.run_sync(&cx, input).await;
        log_outcome("sync", &cx, &result);
        result
            .map(|booked| sync_response(cx.trace_id(), booked))
            .map_err(|e| status_from_saga_error(&e))
    }

    async fn handle_async_booking(
        &self,
        request: Request<BookingRequest>,
    ) -> Result<Response<BookingASyncResponse>, Status> {
        let (cx, input) = self.accept(&request)?;
        let started = self
            .orchestrator
            .start(&cx, input)
            .await
            .map_err(|e| status_from_saga_error(&e))?;
        info!(trace_id = cx.trace_id(), ?started, "async booking accepted");
        Ok(response_with_trace_id(
            cx.trace_id(),
            BookingASyncResponse {
                request_id: cx.trace_id().to_string(),
            },
        ))
    }

    async fn handle_throttling_booking(
        &self,
        request: Request<BookingRequest>,
    ) -> Result<Response<BookingSyncResponse>, Status> {
        let (cx, input) = self.accept(&request)?;
        let result = self.orchestrator.run_throttled(&cx, input).await;
        log_outcome("throttled", &cx, &result);
        result
            .map(|booked| sync_response(cx.trace_id(), booked))
            .map_err(|e| status_from_saga_error(&e))
    }
}

fn log_outcome(mode: &str, cx: &SagaContext, result: &Result<Booked, sagaflow::SagaError>) {
    match result {
        Ok(booked) => info!(trace_id = cx.trace_id(), mode, ?booked, "booking completed"),
        Err(error) => info!(trace_id = cx.trace_id(), mode, %error, "booking failed"),
    }
}
