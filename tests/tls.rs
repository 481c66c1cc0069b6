//! TLS for every connection, against real TLS listeners on loopback: private RabbitMQ, NATS
//! and Redis servers started here (killed by pid, even when a test fails) and in-process gRPC
//! servers, with certificates made per run (`pki`). Each backend's test shows the TLS
//! connection working end to end, that the client checks the server's certificate against
//! the configured CA, that a client certificate is presented (or refused) as configured, and
//! that a TLS URL never falls back to plaintext.
#![cfg(all(
    feature = "rabbitmq",
    feature = "nats",
    feature = "redis",
    feature = "grpc"
))]

mod common;

#[path = "tls/grpc.rs"]
mod grpc;
#[path = "tls/nats.rs"]
mod nats;
#[path = "tls/pki.rs"]
mod pki;
#[path = "tls/rabbitmq.rs"]
mod rabbitmq;
#[path = "tls/redis.rs"]
mod redis;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use sagaflow::error::Report;
use sagaflow::transport::{
    Delivery, Disposition, Handler, Headers, Message, SubscribeOptions, TRACE_ID_HEADER, Transport,
};

/// How long a test waits for something that should happen (generous: loaded 2-core CI).
const WAIT: Duration = Duration::from_secs(60);

/// Subscribes to a topic, publishes one message to it and waits until the subscriber got it:
/// the broker connection carries both ways.
async fn round_trip(transport: &dyn Transport) {
    let (sender, mut received) = tokio::sync::mpsc::unbounded_channel();
    let handler: Arc<dyn Handler> = Arc::new(move |delivery: Delivery| {
        let sender = sender.clone();
        async move {
            let _ = sender.send(delivery.payload);
            Disposition::Ack
        }
    });
    let options = SubscribeOptions {
        group: "tls".to_string(),
        concurrency: 1,
    };
    let subscription = transport
        .subscribe("tls.check", options, handler)
        .await
        .unwrap_or_else(|e| panic!("subscribes over TLS: {}", Report(&e)));
    let mut headers = Headers::new();
    headers.insert(TRACE_ID_HEADER.to_string(), "tls-check-1".to_string());
    let payload = Bytes::from_static(b"sent over TLS");
    transport
        .publish(
            "tls.check",
            Message {
                headers,
                payload: payload.clone(),
            },
        )
        .await
        .unwrap_or_else(|e| panic!("publishes over TLS: {}", Report(&e)));
    let got = tokio::time::timeout(WAIT, received.recv())
        .await
        .expect("the message comes back within the wait")
        .expect("the subscriber runs");
    assert_eq!(got, payload);
    subscription.shutdown(Duration::from_secs(5)).await;
}

/// The whole chain of `error`, for assertions on what it says.
fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    Report(error).to_string()
}
