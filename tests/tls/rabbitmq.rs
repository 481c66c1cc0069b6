//! RabbitMQ over `amqps://`: the regression (an `amqps://` URL against the shared plaintext
//! port fails its handshake instead of connecting in plaintext), and a private node whose only
//! listener is TLS, with `verify_peer` (a client certificate is optional, but checked when
//! presented).

use std::time::Duration;

use sagaflow::tls::ClientTls;
use sagaflow::transport::{RabbitMqTransport, TransportConfig, TransportError, TransportErrorKind};

use crate::common::backends::{RABBITMQ_URL, START_RABBITMQ, unique_prefix};
use crate::common::servers::Private;
use crate::pki::Pki;
use crate::{chain, round_trip};

fn config(tls: ClientTls) -> TransportConfig {
    TransportConfig {
        tls,
        connect_timeout: Duration::from_secs(20),
        ..TransportConfig::with_prefix(unique_prefix("tls-rabbitmq"))
    }
}

/// The connect error of `url` with `tls`, which must fail.
async fn refused(url: &str, tls: ClientTls, why: &str) -> String {
    let error = RabbitMqTransport::connect(url, config(tls))
        .await
        .map(drop)
        .expect_err(why);
    assert_eq!(error.kind(), TransportErrorKind::Connect, "{why}: {error}");
    let text = chain(&error);
    assert!(
        !text.contains("guest:guest"),
        "{why}: the password leaked: {text}"
    );
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqps_against_the_plaintext_port_fails_the_handshake() {
    // The shared broker speaks plaintext AMQP on 5672...
    let plain = RabbitMqTransport::connect(RABBITMQ_URL, config(ClientTls::default()))
        .await
        .unwrap_or_else(|e| {
            panic!(
                "RabbitMQ is unreachable at {RABBITMQ_URL} ({e}); start it with: {START_RABBITMQ}"
            )
        });
    plain.delete_topology().await.expect("cleanup");
    // ...so an amqps:// URL to it must fail on the TLS handshake, never fall back.
    let tls_url = RABBITMQ_URL.replacen("amqp://", "amqps://", 1);
    let text = refused(&tls_url, ClientTls::default(), "a plaintext port").await;
    assert!(text.contains("TLS"), "says it is about TLS: {text}");
    assert!(
        !text.contains("no answer within"),
        "fails on the handshake, not on a timeout: {text}"
    );
}

#[tokio::test]
async fn a_plaintext_url_with_tls_files_is_refused() {
    let error = RabbitMqTransport::connect(RABBITMQ_URL, config(ClientTls::with_ca("ca.pem")))
        .await
        .map(drop)
        .expect_err("TLS files with amqp://");
    let text = chain(&error);
    assert!(
        matches!(error, TransportError::Connect { .. }) && text.contains("amqps://"),
        "{text}"
    );
    assert!(!text.contains("guest:guest"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqps_to_a_tls_listener_checks_both_certificates() {
    let pki = Pki::generate("rabbitmq");
    let node = Private::rabbitmq("tls", |port| {
        format!(
            "listeners.tcp = none\n\
             listeners.ssl.default = 127.0.0.1:{port}\n\
             ssl_options.cacertfile = {ca}\n\
             ssl_options.certfile = {cert}\n\
             ssl_options.keyfile = {key}\n\
             ssl_options.verify = verify_peer\n\
             ssl_options.fail_if_no_peer_cert = false\n\
             loopback_users = none\n",
            ca = Pki::arg(&pki.ca),
            cert = Pki::arg(&pki.server_cert),
            key = Pki::arg(&pki.server_key),
        )
    });
    let url = format!("amqps://guest:guest@127.0.0.1:{}/%2f", node.port);

    // Trusting the CA: messages go both ways.
    let transport = RabbitMqTransport::connect(&url, config(pki.client()))
        .await
        .unwrap_or_else(|e| panic!("connects over TLS: {}", chain(&e)));
    round_trip(&transport).await;
    transport.delete_topology().await.expect("cleanup");

    // With the client certificate the broker verifies: admitted.
    let transport = RabbitMqTransport::connect(&url, config(pki.client_with_cert()))
        .await
        .unwrap_or_else(|e| panic!("connects with a client certificate: {}", chain(&e)));
    round_trip(&transport).await;
    transport.delete_topology().await.expect("cleanup");

    // A client certificate the broker does not trust: refused during the handshake (so the
    // certificate is really presented).
    refused(
        &url,
        pki.client_with_stranger_cert(),
        "a client certificate of another CA",
    )
    .await;

    // The broker's certificate does not chain to what the client trusts: refused.
    for (tls, why) in [
        (ClientTls::default(), "the bundled public roots only"),
        (pki.client_trusting_another_ca(), "another CA"),
    ] {
        let text = refused(&url, tls, why).await;
        assert!(text.contains("TLS"), "{why}: {text}");
    }
}
