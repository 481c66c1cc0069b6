//! What the gRPC tests share: bounded waits, requests with an `x-request-id`, loopback
//! channels, and a stand-in `BookingService` served by `GrpcServer`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use booking_proto::pb::booking_service_server::{BookingService, BookingServiceServer};
use booking_proto::pb::{BookingASyncResponse, BookingRequest, BookingSyncResponse};
use saga_runtime::grpc::{
    GrpcServer, REQUEST_ID_HEADER, ServerHandle, TraceIdPolicy, response_with_trace_id,
    saga_context,
};
use saga_runtime::{SagaError, StepError};
use tokio::sync::{Semaphore, mpsc};
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

/// Generous bound on every wait, for a loaded 2-core CI machine.
pub(crate) const WAIT: Duration = Duration::from_secs(60);

/// `fut`, or a panic naming `what` once [`WAIT`] passed.
pub(crate) async fn within<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out after {WAIT:?} waiting for {what}"))
}

/// `message` with `x-request-id: trace_id`.
pub(crate) fn request_with_id<T>(message: T, trace_id: &str) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert(REQUEST_ID_HEADER, trace_id.parse().expect("ascii trace id"));
    request
}

/// A stand-in `BookingService`: refuses calls without `x-request-id`, reports entry, waits
/// for a permit when held, and fails with a compensated saga error on `FaultInject`.
#[derive(Clone)]
pub(crate) struct TestBooking {
    /// Receives the trace id of every call that entered the handler.
    pub(crate) entered: mpsc::UnboundedSender<String>,
    /// When set, every call waits for a permit before it answers.
    pub(crate) hold: Option<Arc<Semaphore>>,
}

#[tonic::async_trait]
impl BookingService for TestBooking {
    async fn handle_sync_booking(
        &self,
        request: Request<BookingRequest>,
    ) -> Result<Response<BookingSyncResponse>, Status> {
        let cx = saga_context("booking", &request, TraceIdPolicy::Require)?;
        let _ = self.entered.send(cx.trace_id().to_owned());
        if let Some(hold) = &self.hold {
            let _permit = hold
                .acquire()
                .await
                .map_err(|_| Status::internal("test hold closed"))?;
        }
        if request.get_ref().fault_inject {
            return Err(SagaError::Compensated {
                saga: "booking".into(),
                trace_id: cx.trace_id().to_owned(),
                step: "create_payment".into(),
                error: StepError::fatal("fault injected"),
            }
            .into());
        }
        Ok(response_with_trace_id(
            cx.trace_id(),
            BookingSyncResponse {
                request_id: cx.trace_id().to_owned(),
                order_id: 1,
                payment_id: 2,
            },
        ))
    }

    async fn handle_async_booking(
        &self,
        _: Request<BookingRequest>,
    ) -> Result<Response<BookingASyncResponse>, Status> {
        Err(Status::unimplemented("not in this test"))
    }

    async fn handle_throttling_booking(
        &self,
        _: Request<BookingRequest>,
    ) -> Result<Response<BookingSyncResponse>, Status> {
        Err(Status::unimplemented("not in this test"))
    }
}

/// Serves a [`TestBooking`] (with reflection and health) on a loopback port; returns the
/// server and the trace ids of the calls as they enter.
pub(crate) async fn start_booking(
    hold: Option<Arc<Semaphore>>,
) -> (ServerHandle, mpsc::UnboundedReceiver<String>) {
    let (entered, entries) = mpsc::unbounded_channel();
    let server = GrpcServer::new()
        .shutdown_on_signals(false)
        .register_file_descriptor_set(booking_proto::FILE_DESCRIPTOR_SET)
        .add_service(BookingServiceServer::new(TestBooking { entered, hold }))
        .serve(loopback())
        .await
        .expect("booking test server starts");
    (server, entries)
}

/// `127.0.0.1:0`.
pub(crate) fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// A connected channel to `addr`, within [`WAIT`].
pub(crate) async fn channel(addr: SocketAddr) -> Channel {
    within(
        "a connection to the test server",
        Channel::from_shared(format!("http://{addr}"))
            .expect("valid uri")
            .connect(),
    )
    .await
    .expect("connects to the test server")
}
