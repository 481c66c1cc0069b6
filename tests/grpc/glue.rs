//! The tonic glue itself: trace id policies, the saga context, outgoing metadata, the
//! `Status` mapping (to step errors, from saga errors, over the wire), reflection and health.

use booking_proto::pb::BookingRequest;
use booking_proto::pb::booking_service_client::BookingServiceClient;
use futures_util::StreamExt;
use saga_runtime::error::Rejection;
use saga_runtime::error::StuckAt;
use saga_runtime::grpc::{
    ERROR_DOMAIN, IDEMPOTENCY_KEY_HEADER, REQUEST_ID_HEADER, RequestPolicy, TraceIdPolicy,
    outgoing_request, saga_context, status_from_saga_error, step_error_from_status,
    trace_id_from_status,
};
use saga_runtime::store::{StoreError, StoreErrorKind};
use saga_runtime::transport::TransportError;
use saga_runtime::{SagaContext, SagaError, StepError};
use tonic::{Code, Request, Status};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_types::StatusExt;

use crate::support::{channel, request_with_id, start_booking, within};

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
    let unnamed = saga_context("booking", &request, TraceIdPolicy::Require).expect("context");
    assert!(
        !unnamed.metadata().contains_key("tenant"),
        "a header the policy does not name stays out of the saga"
    );
    let policy = RequestPolicy::from(TraceIdPolicy::Require).forward("tenant");
    let cx = saga_context("booking", &request, policy).expect("context");
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

/// An address that must never reach a gRPC client.
const INTERNAL_ADDRESS: &str = "10.0.0.7:6379";

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
                reason: Rejection::QueueFull { waiting: 8 },
            },
            Code::ResourceExhausted,
            "SAGA_REJECTED",
            None,
        ),
        (
            SagaError::Store {
                trace_id: trace_id.clone(),
                source: StoreError::new(
                    "redis",
                    StoreErrorKind::Connect,
                    format!("cannot connect to Redis at {INTERNAL_ADDRESS}"),
                )
                .caused_by(std::io::Error::other("connection refused")),
            },
            Code::Unavailable,
            "SAGA_STORE_UNAVAILABLE",
            None,
        ),
        (
            SagaError::Store {
                trace_id: trace_id.clone(),
                source: StoreError::new(
                    "redis",
                    StoreErrorKind::Corrupt,
                    format!("Redis at {INTERNAL_ADDRESS}: key `saga:x` holds corrupt data"),
                ),
            },
            Code::Internal,
            "SAGA_STORE_UNAVAILABLE",
            None,
        ),
        (
            SagaError::Transport {
                trace_id: trace_id.clone(),
                source: TransportError::Publish {
                    topic: "booking.create_order".into(),
                    reason: format!("RabbitMQ at {INTERNAL_ADDRESS}: confirm timed out"),
                    source: None,
                },
            },
            Code::Unavailable,
            "SAGA_TRANSPORT_UNAVAILABLE",
            None,
        ),
        (
            SagaError::InvalidState {
                saga: saga.clone(),
                trace_id: trace_id.clone(),
                message: "finished state resumed".into(),
            },
            Code::Internal,
            "SAGA_INVALID_STATE",
            None,
        ),
        (
            SagaError::Panicked {
                saga,
                trace_id,
                message: "index out of bounds".into(),
            },
            Code::Internal,
            "SAGA_PANICKED",
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
        assert!(
            !status.message().contains(INTERNAL_ADDRESS),
            "{reason}: an internal address reached the client: {}",
            status.message()
        );
        let via_from: Status = error.into();
        assert_eq!(via_from.code(), code);
    }
}

#[test]
fn a_status_without_details_yields_no_trace_id() {
    assert_eq!(trace_id_from_status(&Status::internal("boom")), None);
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
