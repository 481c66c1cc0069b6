//! NATS over TLS with JetStream: private servers with a TLS listener (token auth; mutual TLS;
//! an nkey user), and the shared plaintext server, which a TLS client must never talk to.

use std::time::Duration;

use sagaflow::tls::ClientTls;
use sagaflow::transport::{NatsAuth, NatsTransport, TransportConfig, TransportErrorKind};

use crate::common::backends::{NATS_URL, unique_prefix};
use crate::common::servers::Private;
use crate::pki::Pki;
use crate::{chain, round_trip};

const TOKEN: &str = "s3cretT0kenOfNats";

fn config(tls: ClientTls, nats_auth: NatsAuth) -> TransportConfig {
    TransportConfig {
        tls,
        nats_auth,
        connect_timeout: Duration::from_secs(15),
        ..TransportConfig::with_prefix(unique_prefix("tls-nats"))
    }
}

/// Connects, sends a message through JetStream and back, and deletes the stream.
async fn works(url: &str, config: TransportConfig, what: &str) {
    let transport = NatsTransport::connect(url, config)
        .await
        .unwrap_or_else(|e| panic!("{what}: connects: {}", chain(&e)));
    round_trip(&transport).await;
    transport.delete_topology().await.expect("cleanup");
}

/// The connect error, which must come, and must not show `TOKEN`.
async fn refused(url: &str, config: TransportConfig, why: &str) -> String {
    let error = NatsTransport::connect(url, config)
        .await
        .map(drop)
        .expect_err(why);
    assert_eq!(error.kind(), TransportErrorKind::Connect, "{why}: {error}");
    let text = chain(&error);
    assert!(!text.contains(TOKEN), "{why}: the token leaked: {text}");
    text
}

fn tls_args(pki: &Pki) -> Vec<String> {
    vec![
        "--tls".into(),
        "--tlscert".into(),
        Pki::arg(&pki.server_cert),
        "--tlskey".into(),
        Pki::arg(&pki.server_key),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_token_carries_jetstream_messages() {
    let pki = Pki::generate("nats-token");
    let mut args = tls_args(&pki);
    args.extend(["--auth".to_string(), TOKEN.to_string()]);
    let server = Private::nats_with("tls-token", &args);
    let url = format!("tls://127.0.0.1:{}", server.port);
    let token_file = pki.write("token", &format!("{TOKEN}\n"));
    let by_file = NatsAuth {
        token_file: Some(token_file),
        ..NatsAuth::default()
    };

    works(&url, config(pki.client(), by_file.clone()), "token by file").await;
    // A token in the URL, a `nats://` URL: TLS all the same, since TLS files are set.
    let in_url = format!("nats://{TOKEN}@127.0.0.1:{}", server.port);
    works(
        &in_url,
        config(pki.client(), NatsAuth::default()),
        "token in the URL",
    )
    .await;

    let wrong = NatsAuth {
        token_file: Some(pki.write("wrong-token", "n0tTheT0ken")),
        ..NatsAuth::default()
    };
    let text = refused(&url, config(pki.client(), wrong), "a wrong token").await;
    assert!(
        !text.contains("n0tTheT0ken"),
        "the token file's token leaked: {text}"
    );
    refused(&url, config(pki.client(), NatsAuth::default()), "no token").await;
    let both = config(pki.client(), by_file);
    let text = refused(&in_url, both, "a token in the URL and one by file").await;
    assert!(text.contains("more than one NATS credential"), "{text}");

    // The server's certificate must chain to the trusted CA.
    for (tls, why) in [
        (ClientTls::default(), "the system's roots only"),
        (pki.client_trusting_another_ca(), "another CA"),
    ] {
        let auth = NatsAuth {
            token_file: Some(pki.write("token", TOKEN)),
            ..NatsAuth::default()
        };
        refused(&url, config(tls, auth), why).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_refuses_a_client_without_a_trusted_certificate() {
    let pki = Pki::generate("nats-mtls");
    let mut args = tls_args(&pki);
    args.extend([
        "--tlsverify".into(),
        "--tlscacert".into(),
        Pki::arg(&pki.ca),
    ]);
    let server = Private::nats_with("tls-mutual", &args);
    let url = format!("tls://127.0.0.1:{}", server.port);

    works(
        &url,
        config(pki.client_with_cert(), NatsAuth::default()),
        "a client certificate",
    )
    .await;
    refused(
        &url,
        config(pki.client(), NatsAuth::default()),
        "no client certificate",
    )
    .await;
    refused(
        &url,
        config(pki.client_with_stranger_cert(), NatsAuth::default()),
        "a client certificate of another CA",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_nkey_user_over_tls() {
    let pki = Pki::generate("nats-nkey");
    let user = nkeys::KeyPair::new_user();
    let seed = user.seed().expect("a user seed");
    let conf = pki.write(
        "nats.conf",
        &format!(
            "tls {{\n  cert_file: \"{}\"\n  key_file: \"{}\"\n}}\nauthorization {{\n  users: [ {{ nkey: \"{}\" }} ]\n}}\n",
            Pki::arg(&pki.server_cert),
            Pki::arg(&pki.server_key),
            user.public_key(),
        ),
    );
    let server = Private::nats_with("tls-nkey", &["-c".into(), Pki::arg(&conf)]);
    let url = format!("tls://127.0.0.1:{}", server.port);
    let nkey = NatsAuth {
        nkey_file: Some(pki.write("user.nk", &seed)),
        ..NatsAuth::default()
    };
    works(&url, config(pki.client(), nkey), "an nkey seed by file").await;

    let stranger = nkeys::KeyPair::new_user().seed().expect("a seed");
    let other = NatsAuth {
        nkey_file: Some(pki.write("other.nk", &stranger)),
        ..NatsAuth::default()
    };
    let text = refused(&url, config(pki.client(), other), "an unknown nkey").await;
    assert!(!text.contains(&stranger), "the seed leaked: {text}");
    let missing = NatsAuth {
        credentials_file: Some(pki.write("unused", "").with_file_name("missing.creds")),
        ..NatsAuth::default()
    };
    let text = refused(&url, config(pki.client(), missing), "a missing .creds file").await;
    assert!(text.contains("missing.creds"), "names the file: {text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_client_never_talks_plaintext() {
    // The shared server speaks plaintext only.
    let tls_url = NATS_URL.replacen("nats://", "tls://", 1);
    let text = refused(
        &tls_url,
        config(ClientTls::default(), NatsAuth::default()),
        "tls://",
    )
    .await;
    assert!(!text.contains("no answer within"), "fails at once: {text}");
    let pki = Pki::generate("nats-plaintext");
    refused(
        NATS_URL,
        config(pki.client(), NatsAuth::default()),
        "nats:// with TLS files",
    )
    .await;
}
