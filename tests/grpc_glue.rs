//! The tonic glue (feature `grpc`) and the booking example's upstream services, over real
//! servers on ephemeral loopback ports.
#![cfg(feature = "grpc")]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use booking::upstream::{LoadConfig, LoadGate};
use booking::{order, payment};
use booking_proto::order::order_service_client::OrderServiceClient;
use booking_proto::order::{CancelOrderRequest, CreateOrderRequest, GetOrderRequest, OrderStatus};
use booking_proto::payment::payment_service_client::PaymentServiceClient;
use booking_proto::payment::{CreatePaymentRequest, GetPaymentsByTraceIdRequest};
use booking_proto::pb::booking_service_client::BookingServiceClient;
use booking_proto::pb::booking_service_server::{BookingService, BookingServiceServer};
use booking_proto::pb::{BookingASyncResponse, BookingRequest, BookingSyncResponse};
use booking_proto::upstream::GetLoadRequest;
use futures_util::StreamExt;
use saga_runtime::error::StuckAt;
use saga_runtime::grpc::{
    ERROR_DOMAIN, GrpcServer, IDEMPOTENCY_KEY_HEADER, REQUEST_ID_HEADER, ServerHandle,
    TraceIdPolicy, outgoing_request, response_with_trace_id, saga_context, status_from_saga_error,
    step_error_from_status, trace_id_from_status,
};
use saga_runtime::{SagaContext, SagaError, StepError};
use tokio::sync::{Semaphore, mpsc};
use tonic::transport::Channel;
use tonic::{Code, Request, Response, Status};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::{HealthCheckRequest, HealthCheckRequest as WatchRequest};
use tonic_types::StatusExt;

/// Generous bound on every wait, for a loaded 2-core CI machine.
const WAIT: Duration = Duration::from_secs(60);

async fn within<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out after {WAIT:?} waiting for {what}"))
}

fn request_with_id<T>(message: T, trace_id: &str) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert(REQUEST_ID_HEADER, trace_id.parse().expect("ascii trace id"));
    request
}

// ---------------------------------------------------------------- trace id policies

#[test]
fn require_refuses_missing_empty_and_blank_ids_naming_the_header() {
    for value in [None, Some(""), Some("   ")] {
        let mut request = Request::new(());
        if let Some(value) = value {
            request
                .metadata_mut()
                .insert(REQUEST_ID_HEADER, value.parse().expect("ascii"));
        }
        let status = TraceIdPolicy::Require
            .trace_id(&request)
            .expect_err("no usable id must be refused");
        assert_eq!(status.code(), Code::InvalidArgument, "{value:?}");
        assert!(
            status.message().contains("x-request-id"),
            "message must name the header: {}",
            status.message()
        );
    }
}

#[test]
fn a_present_id_is_used_trimmed_under_both_policies() {
    let request = request_with_id((), " trace-42 ");
    for policy in [TraceIdPolicy::Require, TraceIdPolicy::Generate] {
        assert_eq!(policy.trace_id(&request).expect("valid id"), "trace-42");
    }
}

#[test]
fn generate_makes_distinct_uuid_like_ids_for_missing_or_empty_headers() {
    let missing = TraceIdPolicy::Generate
        .trace_id(&Request::new(()))
        .expect("generated");
    let empty = TraceIdPolicy::Generate
        .trace_id(&request_with_id((), ""))
        .expect("generated");
    assert_ne!(missing, empty);
    for id in [&missing, &empty] {
        assert_eq!(id.len(), 36, "{id}");
        let groups: Vec<usize> = id.split('-').map(str::len).collect();
        assert_eq!(groups, [8, 4, 4, 4, 12], "{id}");
        assert!(
            id.chars().all(|c| c == '-' || c.is_ascii_hexdigit()),
            "{id}"
        );
    }
}

#[test]
fn oversized_or_non_ascii_ids_are_refused_under_both_policies() {
    let long = request_with_id((), &"x".repeat(saga_runtime::grpc::MAX_TRACE_ID_LEN + 1));
    let mut binary = Request::new(());
    binary.metadata_mut().insert(
        REQUEST_ID_HEADER,
        tonic::metadata::MetadataValue::try_from(&b"caf\xc3\xa9"[..]).expect("opaque header"),
    );
    for policy in [TraceIdPolicy::Require, TraceIdPolicy::Generate] {
        for request in [&long, &binary] {
            let status = policy
                .trace_id(request)
                .expect_err("bad id must be refused");
            assert_eq!(status.code(), Code::InvalidArgument);
            assert!(
                status.message().contains("x-request-id"),
                "{}",
                status.message()
            );
        }
    }
}

#[test]
fn saga_context_carries_trace_id_metadata_and_caller_deadline() {
    let mut request = request_with_id((), "ctx-1");
    request
        .metadata_mut()
        .insert("tenant", "acme".parse().expect("ascii"));
    request
        .metadata_mut()
        .insert("grpc-timeout", "30S".parse().expect("ascii"));
    let cx = saga_context("booking", &request, TraceIdPolicy::Require).expect("context");
    assert_eq!(cx.trace_id(), "ctx-1");
    assert_eq!(cx.saga(), "booking");
    assert_eq!(
        cx.metadata().get("tenant").map(String::as_str),
        Some("acme")
    );
    assert_eq!(
        cx.metadata().get(REQUEST_ID_HEADER).map(String::as_str),
        Some("ctx-1")
    );
    assert!(!cx.metadata().contains_key("grpc-timeout"));
    assert!(
        cx.deadline().is_some(),
        "grpc-timeout must become a deadline"
    );

    let refused =
        saga_context("booking", &Request::new(()), TraceIdPolicy::Require).expect_err("missing id");
    assert_eq!(refused.code(), Code::InvalidArgument);
}

// ---------------------------------------------------------------- outgoing metadata

#[test]
fn outgoing_requests_carry_trace_id_and_idempotency_key() {
    let cx = SagaContext::new("booking", "out-1").at("create_order", false, 2);
    let request = outgoing_request(&cx, 7_u32);
    let header = |name: &str| {
        request
            .metadata()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    assert_eq!(header(REQUEST_ID_HEADER).as_deref(), Some("out-1"));
    assert_eq!(
        header(IDEMPOTENCY_KEY_HEADER).as_deref(),
        Some("out-1/create_order")
    );
    assert_eq!(*request.get_ref(), 7);

    let undo = outgoing_request(&cx.at("create_order", true, 1), ());
    assert_eq!(
        undo.metadata()
            .get(IDEMPOTENCY_KEY_HEADER)
            .and_then(|v| v.to_str().ok()),
        Some("out-1/create_order/compensate")
    );
}

// ---------------------------------------------------------------- Status mapping

#[test]
fn upstream_status_codes_classify_as_retryable_or_final() {
    let retryable = [
        Code::Unavailable,
        Code::DeadlineExceeded,
        Code::ResourceExhausted,
        Code::Aborted,
        Code::Unknown,
        Code::Cancelled,
    ];
    let all = [
        Code::Ok,
        Code::Cancelled,
        Code::Unknown,
        Code::InvalidArgument,
        Code::DeadlineExceeded,
        Code::NotFound,
        Code::AlreadyExists,
        Code::PermissionDenied,
        Code::ResourceExhausted,
        Code::FailedPrecondition,
        Code::Aborted,
        Code::OutOfRange,
        Code::Unimplemented,
        Code::Internal,
        Code::Unavailable,
        Code::DataLoss,
        Code::Unauthenticated,
    ];
    for code in all {
        let error = step_error_from_status(&Status::new(code, "upstream says no"));
        assert_eq!(error.is_retryable(), retryable.contains(&code), "{code:?}");
        assert!(error.message().contains("upstream says no"), "{error}");
        assert!(error.message().contains(&format!("{code:?}")), "{error}");
    }
    let via_from: StepError = Status::unavailable("down").into();
    assert!(via_from.is_retryable());
}

fn saga_errors(trace_id: &str) -> Vec<(SagaError, Code, &'static str, Option<&'static str>)> {
    let saga = "booking".to_owned();
    let trace_id = trace_id.to_owned();
    vec![
        (
            SagaError::Compensated {
                saga: saga.clone(),
                trace_id: trace_id.clone(),
                step: "create_payment".into(),
                error: StepError::fatal("card declined"),
            },
            Code::FailedPrecondition,
            "SAGA_COMPENSATED",
            Some("create_payment"),
        ),
        (
            SagaError::Compensated {
                saga: saga.clone(),
                trace_id: trace_id.clone(),
                step: "create_payment".into(),
                error: StepError::ambiguous("connection reset"),
            },
            Code::FailedPrecondition,
            "SAGA_COMPENSATED_EFFECT_UNKNOWN",
            Some("create_payment"),
        ),
        (
            SagaError::Stuck {
                saga: saga.clone(),
                trace_id: trace_id.clone(),
                stuck: StuckAt::Compensation("create_order".into()),
                attempts: 10,
                last_error: StepError::retryable("order service down"),
                failed_step: Some(("create_payment".into(), StepError::fatal("declined"))),
            },
            Code::Internal,
            "SAGA_STUCK",
            Some("create_order"),
        ),
        (
            SagaError::DeadlineExceeded {
                saga: saga.clone(),
                trace_id: trace_id.clone(),
            },
            Code::DeadlineExceeded,
            "SAGA_DEADLINE_EXCEEDED",
            None,
        ),
        (
            SagaError::IdTaken {
                saga: saga.clone(),
                trace_id: trace_id.clone(),
            },
            Code::AlreadyExists,
            "SAGA_ID_TAKEN",
            None,
        ),
        (
            SagaError::Rejected {
                saga: saga.clone(),
                trace_id: trace_id.clone(),
                reason: "queue full".into(),
            },
            Code::ResourceExhausted,
            "SAGA_REJECTED",
            None,
        ),
        (
            SagaError::Store {
                trace_id: trace_id.clone(),
                message: "redis unreachable".into(),
            },
            Code::Unavailable,
            "SAGA_STORE_UNAVAILABLE",
            None,
        ),
        (
            SagaError::Transport {
                trace_id: trace_id.clone(),
                message: "publish not confirmed".into(),
            },
            Code::Unavailable,
            "SAGA_TRANSPORT_UNAVAILABLE",
            None,
        ),
        (
            SagaError::InvalidState {
                saga,
                trace_id,
                message: "finished state resumed".into(),
            },
            Code::Internal,
            "SAGA_INVALID_STATE",
            None,
        ),
    ]
}

fn assert_saga_status(
    status: &Status,
    trace_id: &str,
    code: Code,
    reason: &str,
    step: Option<&str>,
) {
    assert_eq!(status.code(), code, "{reason}");
    assert!(
        status.message().contains(trace_id),
        "{reason}: {}",
        status.message()
    );
    if let Some(step) = step {
        assert!(
            status.message().contains(step),
            "{reason}: {}",
            status.message()
        );
    }
    assert_eq!(
        trace_id_from_status(status).as_deref(),
        Some(trace_id),
        "{reason}"
    );
    let info = status
        .get_details_error_info()
        .expect("an ErrorInfo detail");
    assert_eq!(info.reason, reason);
    assert_eq!(info.domain, ERROR_DOMAIN);
    assert_eq!(
        info.metadata.get("trace_id").map(String::as_str),
        Some(trace_id)
    );
    assert_eq!(
        info.metadata.get("step").map(String::as_str),
        step,
        "{reason}"
    );
    assert_eq!(
        status
            .metadata()
            .get(REQUEST_ID_HEADER)
            .and_then(|v| v.to_str().ok()),
        Some(trace_id),
        "{reason}"
    );
}

#[test]
fn every_saga_error_maps_to_its_documented_status() {
    for (error, code, reason, step) in saga_errors("map-1") {
        let status = status_from_saga_error(&error);
        assert_saga_status(&status, "map-1", code, reason, step);
        let via_from: Status = error.into();
        assert_eq!(via_from.code(), code);
    }
}

#[test]
fn a_status_without_details_yields_no_trace_id() {
    assert_eq!(trace_id_from_status(&Status::internal("boom")), None);
}

// ---------------------------------------------------------------- a test orchestrator

/// A stand-in `BookingService`: refuses calls without `x-request-id`, reports entry, waits
/// for a permit when held, and fails with a compensated saga error on `FaultInject`.
#[derive(Clone)]
struct TestBooking {
    entered: mpsc::UnboundedSender<String>,
    hold: Option<Arc<Semaphore>>,
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

async fn start_booking(
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

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

async fn channel(addr: SocketAddr) -> Channel {
    within(
        "a connection to the test server",
        Channel::from_shared(format!("http://{addr}"))
            .expect("valid uri")
            .connect(),
    )
    .await
    .expect("connects to the test server")
}

#[tokio::test]
async fn saga_errors_reach_a_client_with_code_message_and_trace_id_details() {
    let (server, _entries) = start_booking(None).await;
    let mut client = BookingServiceClient::new(channel(server.local_addr()).await);

    let ok = within(
        "a booking",
        client.handle_sync_booking(request_with_id(
            BookingRequest {
                product_id: 1,
                count: 1,
                fault_inject: false,
            },
            "wire-ok",
        )),
    )
    .await
    .expect("booking succeeds");
    assert_eq!(ok.get_ref().request_id, "wire-ok");
    assert_eq!(
        ok.metadata()
            .get(REQUEST_ID_HEADER)
            .and_then(|v| v.to_str().ok()),
        Some("wire-ok"),
        "successful responses echo x-request-id"
    );

    let status = within(
        "a failing booking",
        client.handle_sync_booking(request_with_id(
            BookingRequest {
                product_id: 1,
                count: 1,
                fault_inject: true,
            },
            "wire-fault",
        )),
    )
    .await
    .expect_err("fault injected");
    assert_saga_status(
        &status,
        "wire-fault",
        Code::FailedPrecondition,
        "SAGA_COMPENSATED",
        Some("create_payment"),
    );

    let missing = within(
        "a booking without id",
        client.handle_sync_booking(BookingRequest {
            product_id: 1,
            count: 1,
            fault_inject: false,
        }),
    )
    .await
    .expect_err("missing x-request-id");
    assert_eq!(missing.code(), Code::InvalidArgument);
    assert!(
        missing.message().contains("x-request-id"),
        "{}",
        missing.message()
    );

    server.shutdown().await.expect("clean shutdown");
}

// ---------------------------------------------------------------- reflection and health

const EXPECTED_SERVICES: [&str; 4] = [
    "pb.BookingService",
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
];

#[tokio::test]
async fn reflection_v1alpha_and_v1_list_the_services_and_describe_them() {
    use tonic_reflection::pb::{v1, v1alpha};
    let (server, _entries) = start_booking(None).await;
    let channel = channel(server.local_addr()).await;

    // v1alpha: what grpcurl 1.8 speaks.
    let mut alpha = v1alpha::server_reflection_client::ServerReflectionClient::new(channel.clone());
    let requests = [
        v1alpha::server_reflection_request::MessageRequest::ListServices(String::new()),
        v1alpha::server_reflection_request::MessageRequest::FileContainingSymbol(
            "pb.BookingService".into(),
        ),
    ]
    .map(|message| v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(message),
    });
    let mut responses = within(
        "v1alpha reflection",
        alpha.server_reflection_info(futures_util::stream::iter(requests)),
    )
    .await
    .expect("v1alpha reflection answers")
    .into_inner();
    let listed = within("v1alpha list", responses.next())
        .await
        .expect("a list response")
        .expect("list ok");
    let Some(v1alpha::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
        listed.message_response
    else {
        panic!("expected a list, got {listed:?}");
    };
    let mut names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    names.sort();
    let mut expected = EXPECTED_SERVICES.map(str::to_owned).to_vec();
    expected.sort();
    assert_eq!(names, expected, "v1alpha lists exactly the served services");
    let described = within("v1alpha describe", responses.next())
        .await
        .expect("a describe response")
        .expect("describe ok");
    let Some(v1alpha::server_reflection_response::MessageResponse::FileDescriptorResponse(files)) =
        described.message_response
    else {
        panic!("expected file descriptors, got {described:?}");
    };
    assert!(!files.file_descriptor_proto.is_empty());

    // v1.
    let mut v1_client = v1::server_reflection_client::ServerReflectionClient::new(channel);
    let request = v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(v1::server_reflection_request::MessageRequest::ListServices(
            String::new(),
        )),
    };
    let mut responses = within(
        "v1 reflection",
        v1_client.server_reflection_info(futures_util::stream::iter([request])),
    )
    .await
    .expect("v1 reflection answers")
    .into_inner();
    let listed = within("v1 list", responses.next())
        .await
        .expect("a list response")
        .expect("list ok");
    let Some(v1::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
        listed.message_response
    else {
        panic!("expected a list, got {listed:?}");
    };
    let mut names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    names.sort();
    assert_eq!(names, expected, "v1 lists exactly the served services");

    drop(responses);
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn health_reports_serving_for_the_server_and_each_service() {
    let (server, _entries) = start_booking(None).await;
    let mut health = HealthClient::new(channel(server.local_addr()).await);
    for service in ["", "pb.BookingService"] {
        let answer = within(
            "a health check",
            health.check(HealthCheckRequest {
                service: service.into(),
            }),
        )
        .await
        .expect("health answers");
        assert_eq!(
            answer.get_ref().status(),
            ServingStatus::Serving,
            "{service:?}"
        );
    }
    let unknown = within(
        "a health check of an unknown service",
        health.check(HealthCheckRequest {
            service: "no.Such".into(),
        }),
    )
    .await
    .expect_err("unknown service");
    assert_eq!(unknown.code(), Code::NotFound);
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn the_users_tonic_builder_settings_apply() {
    let (entered, mut entries) = mpsc::unbounded_channel();
    let hold = Arc::new(Semaphore::new(0)); // every call waits
    let builder = tonic::transport::Server::builder().timeout(Duration::from_millis(200));
    let server = GrpcServer::new()
        .shutdown_on_signals(false)
        .with_builder(builder)
        .add_service(BookingServiceServer::new(TestBooking {
            entered,
            hold: Some(hold),
        }))
        .serve(loopback())
        .await
        .expect("server starts with the user's builder");
    let mut client = BookingServiceClient::new(channel(server.local_addr()).await);
    let request = request_with_id(
        BookingRequest {
            product_id: 1,
            count: 1,
            fault_inject: false,
        },
        "held",
    );
    let error = within("the builder's timeout", client.handle_sync_booking(request))
        .await
        .expect_err("the server's request timeout ends the held call");
    assert_eq!(error.code(), Code::Cancelled, "{error:?}");
    assert_eq!(entries.recv().await.as_deref(), Some("held"));
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn the_routes_serve_on_a_builder_of_the_users_own() {
    let (entered, _entries) = mpsc::unbounded_channel();
    let (routes, _health) = GrpcServer::new()
        .register_file_descriptor_set(booking_proto::FILE_DESCRIPTOR_SET)
        .add_service(BookingServiceServer::new(TestBooking {
            entered,
            hold: None,
        }))
        .into_routes()
        .await
        .expect("routes");
    let listener = tokio::net::TcpListener::bind(loopback())
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    let incoming = tonic::transport::server::TcpIncoming::from(listener);
    let served = tokio::spawn(
        tonic::transport::Server::builder()
            .add_routes(routes)
            .serve_with_incoming(incoming),
    );
    let mut health = HealthClient::new(channel(addr).await);
    let answer = within(
        "a health check",
        health.check(HealthCheckRequest {
            service: "pb.BookingService".into(),
        }),
    )
    .await
    .expect("health answers through the user's server");
    assert_eq!(answer.get_ref().status(), ServingStatus::Serving);
    served.abort();
}

// ---------------------------------------------------------------- graceful shutdown

#[tokio::test]
async fn graceful_shutdown_lets_an_in_flight_call_finish() {
    let hold = Arc::new(Semaphore::new(0));
    let (server, mut entries) = start_booking(Some(Arc::clone(&hold))).await;
    let addr = server.local_addr();
    let mut client = BookingServiceClient::new(channel(addr).await);
    let mut health = HealthClient::new(channel(addr).await);
    let mut watch = within(
        "a health watch",
        health.watch(WatchRequest {
            service: String::new(),
        }),
    )
    .await
    .expect("watch starts")
    .into_inner();
    let first = within("the first health status", watch.next())
        .await
        .expect("a status")
        .expect("status ok");
    assert_eq!(first.status(), ServingStatus::Serving);

    let call = tokio::spawn(async move {
        client
            .handle_sync_booking(request_with_id(
                BookingRequest {
                    product_id: 1,
                    count: 1,
                    fault_inject: false,
                },
                "in-flight",
            ))
            .await
    });
    assert_eq!(
        within("the call to enter the handler", entries.recv())
            .await
            .as_deref(),
        Some("in-flight")
    );

    let shutdown = tokio::spawn(server.shutdown());
    let draining = within("NOT_SERVING once shutdown starts", watch.next())
        .await
        .expect("a status")
        .expect("status ok");
    assert_eq!(draining.status(), ServingStatus::NotServing);
    drop(watch);
    drop(health);
    assert!(
        !shutdown.is_finished(),
        "the server must not stop while a call is in flight"
    );

    hold.add_permits(1);
    let answer = within("the in-flight call", call)
        .await
        .expect("call task")
        .expect("the in-flight call completes during shutdown");
    assert_eq!(answer.get_ref().request_id, "in-flight");
    within("the shutdown", shutdown)
        .await
        .expect("shutdown task")
        .expect("clean shutdown");
    assert!(
        Channel::from_shared(format!("http://{addr}"))
            .expect("valid uri")
            .connect()
            .await
            .is_err(),
        "the listener is closed after shutdown"
    );
}

// ---------------------------------------------------------------- upstream services

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
