//! No credential leaves the process in an error, a log line or a gRPC status: every kind of
//! secret a connection URL can hold (a password, a NATS token as the user name, a secret
//! query parameter) goes through every connect error path (a URL that does not parse, a
//! server that refuses the connection) of Redis, RabbitMQ and NATS, and the secret appears in
//! none of the error's display, its debug form, its whole cause chain, the log lines written
//! meanwhile (every target, every level) or the gRPC status a client would get.

use std::io::Write;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sagaflow::SagaError;
use sagaflow::error::Report;
use sagaflow::grpc::status_from_saga_error;
use sagaflow::store::{RedisConfig, RedisStore, StoreConfig};
use sagaflow::transport::{NatsTransport, RabbitMqTransport, TransportConfig};
use tracing_subscriber::fmt::MakeWriter;

const SECRET: &str = "Zq7SECRETxK2";

/// Log lines captured in memory.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// A loopback port nothing listens on.
fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

/// Every URL shape that carries the secret, for `scheme`, pointing at `port`.
fn secret_urls(scheme: &str, port: u16) -> Vec<String> {
    vec![
        format!("{scheme}://user:{SECRET}@127.0.0.1:{port}"),
        format!("{scheme}://:{SECRET}@127.0.0.1:{port}"),
        format!("{scheme}://{SECRET}@127.0.0.1:{port}"),
        format!("{scheme}://user@127.0.0.1:{port}?token={SECRET}&password={SECRET}"),
        // Does not parse: the connect path's URL error.
        format!("{scheme}://user:{SECRET}@[127.0.0.1:{port}"),
        format!("{scheme}:/user:{SECRET}@127.0.0.1:{port}/%zz"),
    ]
}

fn assert_clean(what: &str, text: &str) {
    assert!(!text.contains(SECRET), "{what} leaks the secret: {text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_connect_error_path_leaks_a_credential() {
    let logs = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(logs.clone())
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let port = closed_port();
    let quick = Duration::from_millis(500);
    let mut checked = 0;

    for url in secret_urls("redis", port) {
        let config = RedisConfig {
            connect_timeout: quick,
            ..RedisConfig::from(StoreConfig::default())
        };
        let error = RedisStore::connect(&url, config)
            .await
            .expect_err("nothing listens there");
        assert_clean(
            &format!("Redis error for {url:?}"),
            &Report(&error).to_string(),
        );
        assert_clean("Redis error (debug)", &format!("{error:?}"));
        let status = status_from_saga_error(&SagaError::Store {
            trace_id: "t-1".to_string(),
            source: error,
        });
        assert_clean("gRPC status of a Redis error", &format!("{status:?}"));
        checked += 1;
    }

    let transport_config = || TransportConfig {
        connect_timeout: quick,
        ..TransportConfig::with_prefix("redaction")
    };
    for url in secret_urls("amqp", port) {
        let error = RabbitMqTransport::connect(&url, transport_config())
            .await
            .expect_err("nothing listens there");
        assert_clean(
            &format!("RabbitMQ error for {url:?}"),
            &Report(&error).to_string(),
        );
        assert_clean("RabbitMQ error (debug)", &format!("{error:?}"));
        let status = status_from_saga_error(&SagaError::Transport {
            trace_id: "t-1".to_string(),
            source: error,
        });
        assert_clean("gRPC status of a RabbitMQ error", &format!("{status:?}"));
        checked += 1;
    }
    for url in secret_urls("nats", port) {
        let error = NatsTransport::connect(&url, transport_config())
            .await
            .expect_err("nothing listens there");
        assert_clean(
            &format!("NATS error for {url:?}"),
            &Report(&error).to_string(),
        );
        assert_clean("NATS error (debug)", &format!("{error:?}"));
        let status = status_from_saga_error(&SagaError::Transport {
            trace_id: "t-1".to_string(),
            source: error,
        });
        assert_clean("gRPC status of a NATS error", &format!("{status:?}"));
        checked += 1;
    }
    assert_eq!(checked, 18, "six URL shapes through three backends");
    let logged = String::from_utf8_lossy(&logs.0.lock().expect("lock")).into_owned();
    assert_clean("the logs", &logged);
}
