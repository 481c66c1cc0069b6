//! Redis over `rediss://` with an ACL user: a private Redis listening only with TLS
//! (`--tls-auth-clients optional`: a client certificate is optional but checked when
//! presented), and the shared plaintext Redis, which a `rediss://` URL must never talk to.

use std::time::Duration;

use sagaflow::store::{RedisConfig, RedisStore, SagaStore, StoreErrorKind};
use sagaflow::tls::ClientTls;

use crate::chain;
use crate::common::backends::unique_prefix;
use crate::common::servers::Private;
use crate::pki::Pki;

const PASSWORD: &str = "aclPassw0rdOfAlice";

fn config(tls: ClientTls) -> RedisConfig {
    RedisConfig {
        tls,
        key_prefix: unique_prefix("tls-redis"),
        connect_timeout: Duration::from_secs(10),
        ..RedisConfig::default()
    }
}

/// The connect error, which must come, and must not show the password.
async fn refused(url: &str, tls: ClientTls, why: &str) -> (StoreErrorKind, String) {
    let error = RedisStore::connect(url, config(tls))
        .await
        .map(drop)
        .expect_err(why);
    let text = chain(&error);
    assert!(
        !text.contains(PASSWORD),
        "{why}: the password leaked: {text}"
    );
    (error.kind(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_with_an_acl_user_checks_both_certificates() {
    let pki = Pki::generate("redis");
    let args: Vec<String> = [
        "--tls-cert-file",
        &Pki::arg(&pki.server_cert),
        "--tls-key-file",
        &Pki::arg(&pki.server_key),
        "--tls-ca-cert-file",
        &Pki::arg(&pki.ca),
        "--tls-auth-clients",
        "optional",
        "--user",
        "alice",
        "on",
        &format!(">{PASSWORD}"),
        "~*",
        "&*",
        "+@all",
        "--user",
        "default",
        "off",
    ]
    .map(str::to_string)
    .to_vec();
    let server = Private::redis_tls("tls", &args);
    let url = format!("rediss://alice:{PASSWORD}@127.0.0.1:{}", server.port);

    for (tls, what) in [
        (pki.client(), "trusting the CA"),
        (pki.client_with_cert(), "with a client certificate"),
    ] {
        let store = RedisStore::connect(&url, config(tls))
            .await
            .unwrap_or_else(|e| panic!("{what}: connects over TLS: {}", chain(&e)));
        let record = store
            .get("tls-no-such-saga")
            .await
            .unwrap_or_else(|e| panic!("{what}: reads over TLS: {}", chain(&e)));
        assert!(record.is_none());
    }

    let (kind, _) = refused(
        &url,
        pki.client_with_stranger_cert(),
        "a client certificate of another CA",
    )
    .await;
    assert_eq!(kind, StoreErrorKind::Connect);
    let wrong = format!("rediss://alice:wrongPassw0rd@127.0.0.1:{}", server.port);
    let (kind, text) = refused(&wrong, pki.client(), "a wrong password").await;
    assert_eq!(kind, StoreErrorKind::Connect);
    assert!(!text.contains("wrongPassw0rd"), "{text}");
    let anonymous = format!("rediss://127.0.0.1:{}", server.port);
    refused(&anonymous, pki.client(), "the default user is off").await;
    for (tls, why) in [
        (ClientTls::default(), "the bundled public roots only"),
        (pki.client_trusting_another_ca(), "another CA"),
    ] {
        let (kind, _) = refused(&url, tls, why).await;
        assert_eq!(kind, StoreErrorKind::Connect, "{why}");
    }
    // No switch turns certificate checks off: the `insecure` fragment is refused.
    refused(&format!("{url}/#insecure"), pki.client(), "#insecure").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_never_talks_plaintext() {
    // The shared Redis speaks plaintext only: the handshake never completes (Redis waits for
    // the end of an inline command), the connection fails, no command is sent in clear.
    let (kind, text) = refused(
        &format!("rediss://default:{PASSWORD}@127.0.0.1:6379"),
        ClientTls::default(),
        "rediss:// to a plaintext port",
    )
    .await;
    assert_eq!(kind, StoreErrorKind::Connect, "{text}");
    assert!(text.contains("over TLS"), "says it is about TLS: {text}");

    // TLS files with a redis:// URL: refused before connecting.
    let pki = Pki::generate("redis-plaintext");
    let (kind, text) = refused(
        &format!("redis://default:{PASSWORD}@127.0.0.1:6379"),
        pki.client(),
        "redis:// with TLS files",
    )
    .await;
    assert_eq!(kind, StoreErrorKind::InvalidConfig, "{text}");
    assert!(text.contains("rediss://"), "{text}");
}
