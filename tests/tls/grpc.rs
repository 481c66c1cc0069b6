//! The gRPC server over TLS and mutual TLS ([`GrpcServer::tls`]), tonic clients built with
//! [`client_tls_config`], and the booking example served over mutual TLS end to end: its
//! orchestrator calls its Order and Payment services over mutual TLS too.

use std::net::SocketAddr;

use booking::app::{self, Options};
use booking_proto::pb::BookingRequest;
use booking_proto::pb::booking_service_client::BookingServiceClient;
use clap::Parser;
use sagaflow::grpc::{GrpcServer, ServeError, ServerHandle, client_tls_config};
use sagaflow::tls::{ClientTls, ServerTls, TlsError};
use tonic::Request;
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::WAIT;
use crate::pki::Pki;

async fn serve(tls: ServerTls) -> ServerHandle {
    GrpcServer::new()
        .shutdown_on_signals(false)
        .tls(tls)
        .serve(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .expect("the TLS server starts")
}

/// A channel to `https://127.0.0.1:{port}` with `tls`, connected now.
async fn connect(addr: SocketAddr, tls: &ClientTls) -> Result<Channel, tonic::transport::Error> {
    Endpoint::from_shared(format!("https://{addr}"))
        .expect("a URL")
        .tls_config(client_tls_config(tls).expect("readable TLS files"))?
        .connect_timeout(WAIT)
        .connect()
        .await
}

/// Whether a health check over a channel with `tls` gets SERVING.
async fn serving(addr: SocketAddr, tls: &ClientTls) -> Result<(), String> {
    let channel = connect(addr, tls).await.map_err(|e| format!("{e:?}"))?;
    let reply = HealthClient::new(channel)
        .check(HealthCheckRequest::default())
        .await
        .map_err(|status| format!("{status:?}"))?;
    assert_eq!(reply.into_inner().status(), ServingStatus::Serving);
    Ok(())
}

/// Checks, for each `(tls, answered, who)`, that a client with `tls` is answered or not.
async fn expect_answers(addr: SocketAddr, cases: [(ClientTls, bool, &str); 3]) {
    for (tls, answered, who) in cases {
        let result = serving(addr, &tls).await;
        assert_eq!(result.is_ok(), answered, "{who}: {result:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_server_answers_clients_that_trust_its_ca() {
    let pki = Pki::generate("grpc-tls");
    let server = serve(pki.server()).await;
    let addr = server.local_addr();
    expect_answers(
        addr,
        [
            (pki.client(), true, "a client trusting the CA"),
            (
                pki.client_with_cert(),
                true,
                "one also presenting a certificate",
            ),
            (
                pki.client_trusting_another_ca(),
                false,
                "one trusting another CA",
            ),
        ],
    )
    .await;
    // A plaintext client gets nothing from a TLS server.
    let plaintext = Endpoint::from_shared(format!("http://{addr}"))
        .expect("a URL")
        .connect_timeout(WAIT)
        .connect()
        .await
        .expect("TCP connects");
    HealthClient::new(plaintext)
        .check(HealthCheckRequest::default())
        .await
        .expect_err("no plaintext answer");
    server.shutdown().await.expect("stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_refuses_a_client_without_a_trusted_certificate() {
    let pki = Pki::generate("grpc-mtls");
    let server = serve(pki.server().require_client_certs(&pki.ca)).await;
    let addr = server.local_addr();
    expect_answers(
        addr,
        [
            (
                pki.client_with_cert(),
                true,
                "a client with a certificate of the CA",
            ),
            (pki.client(), false, "a client without a certificate"),
            (
                pki.client_with_stranger_cert(),
                false,
                "one with a certificate of another CA",
            ),
        ],
    )
    .await;
    server.shutdown().await.expect("stops");
}

#[tokio::test]
async fn a_missing_or_malformed_file_fails_serve_naming_it() {
    let pki = Pki::generate("grpc-files");
    let missing = pki.write("unused", "").with_file_name("missing.pem");
    let error = GrpcServer::new()
        .shutdown_on_signals(false)
        .tls(ServerTls::new(&missing, &pki.server_key))
        .serve(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .map(drop)
        .expect_err("a missing certificate");
    assert!(
        matches!(error, ServeError::Tls(TlsError::Read { .. }))
            && error.to_string().contains("missing.pem"),
        "{error}"
    );
    // A certificate given as the key: no PEM private key in it.
    let error = GrpcServer::new()
        .shutdown_on_signals(false)
        .tls(ServerTls::new(&pki.server_cert, &pki.server_cert))
        .serve(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .map(drop)
        .expect_err("no key");
    assert!(
        matches!(error, ServeError::Tls(TlsError::NotPem { what: "key", .. })),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_booking_example_over_mutual_tls_end_to_end() {
    let pki = Pki::generate("grpc-booking");
    let arg = Pki::arg;
    let mut args = vec!["booking".to_string()];
    for flag in ["--listen", "--order-listen", "--payment-listen"] {
        args.extend([flag.to_string(), "127.0.0.1:0".to_string()]);
    }
    let tls_flags = [
        ("--tls-cert", arg(&pki.server_cert)),
        ("--tls-key", arg(&pki.server_key)),
        ("--tls-client-ca", arg(&pki.ca)),
        ("--upstream-ca", arg(&pki.ca)),
        ("--upstream-cert", arg(&pki.client_cert)),
        ("--upstream-key", arg(&pki.client_key)),
    ];
    for (flag, value) in &tls_flags {
        args.extend([flag.to_string(), value.clone()]);
    }
    // Role all serving mutual TLS cannot call its own services without a client certificate.
    let without_cert: Vec<&String> = args.iter().take(args.len() - 4).collect();
    let refused = Options::parse_from(without_cert)
        .check_tls()
        .expect_err("no client cert");
    assert!(refused.contains("--upstream-cert"), "{refused}");

    let app = app::start(Options::parse_from(&args))
        .await
        .unwrap_or_else(|e| panic!("the example starts over TLS: {e}"));
    let addr = app.booking_addr.expect("BookingService listens");
    let channel = connect(addr, &pki.client_with_cert())
        .await
        .expect("a client with a certificate connects");
    let mut request = Request::new(BookingRequest {
        product_id: 3,
        count: 1,
        fault_inject: false,
    });
    request
        .metadata_mut()
        .insert("x-request-id", "tls-booking-1".parse().expect("ascii"));
    // The saga calls Order and Payment: over mutual TLS, or the booking fails.
    let reply = BookingServiceClient::new(channel)
        .handle_sync_booking(request)
        .await
        .unwrap_or_else(|status| panic!("booked over TLS: {status:?}"))
        .into_inner();
    assert_eq!(reply.request_id, "tls-booking-1");
    assert!(reply.order_id > 0 && reply.payment_id > 0, "{reply:?}");
    serving(addr, &pki.client())
        .await
        .expect_err("BookingService refuses a client without a certificate");
    app.shutdown().await.expect("stops");
}
