//! `GrpcServer` as a server: the user's tonic builder settings, its routes on the user's own
//! server, and graceful shutdown draining an in-flight call.

use std::sync::Arc;
use std::time::Duration;

use booking_proto::pb::BookingRequest;
use booking_proto::pb::booking_service_client::BookingServiceClient;
use booking_proto::pb::booking_service_server::BookingServiceServer;
use futures_util::StreamExt;
use saga_runtime::grpc::GrpcServer;
use tokio::sync::{Semaphore, mpsc};
use tonic::Code;
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::{HealthCheckRequest, HealthCheckRequest as WatchRequest};

use crate::support::{TestBooking, channel, loopback, request_with_id, start_booking, within};

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
