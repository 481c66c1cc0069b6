//! RabbitMQ-only tests, through a TCP proxy in front of the shared broker (see `proxy.rs`):
//! the publisher-confirm timeout, acks that go on while publishing is blocked, and one
//! reconnection at a time.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sagaflow::transport::{
    Delivery, Disposition, RabbitMqTransport, Transport, TransportConfig, TransportError,
};

use crate::harness::{self, Shared, handler};
use crate::proxy::Proxy;
use crate::{message, number, options};

fn upstream() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 5672))
}

fn config(test: &str) -> TransportConfig {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let prefix = format!("conformance-rabbitmq-{test}-{}-{nanos}", std::process::id());
    TransportConfig {
        connection_name: format!("sagaflow-{prefix}"),
        confirm_timeout: Duration::from_secs(1),
        ..TransportConfig::with_prefix(prefix)
    }
}

/// A publish whose confirm never comes (the broker stopped reading the publisher's socket)
/// fails after `confirm_timeout` with `TransportError::Publish` naming the topic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unconfirmed_publish_times_out_naming_the_topic() {
    let proxy = Proxy::start(upstream()).await;
    let transport = RabbitMqTransport::connect(&proxy.amqp_url(), config("confirm-timeout"))
        .await
        .unwrap();
    proxy.freeze_publishers();
    let started = Instant::now();
    let outcome = tokio::time::timeout(
        harness::WAIT,
        transport.publish("orders.created", message("never confirmed")),
    )
    .await
    .expect("the publish must give up by itself");
    let elapsed = started.elapsed();
    println!("rabbitmq: unconfirmed publish failed after {elapsed:?} (confirm timeout 1 s)");
    match outcome {
        Err(TransportError::Publish { topic, reason, .. }) => {
            assert_eq!(topic, "orders.created");
            assert!(reason.contains("no publisher confirm within"), "{reason}");
        }
        other => panic!("expected a publish error, got {other:?}"),
    }
    assert!(elapsed < Duration::from_secs(5), "took {elapsed:?}");
    transport.delete_topology().await.unwrap();
}

/// With the publisher connection blocked, the consumer connection still settles: in-flight
/// deliveries are acked and the subscription drains, and nothing comes back afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_go_through_while_publishing_is_blocked() {
    const COUNT: u32 = 4;
    let topic = "held";
    let proxy = Proxy::start(upstream()).await;
    let transport = RabbitMqTransport::connect(&proxy.amqp_url(), config("blocked"))
        .await
        .unwrap();
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let started = Shared::new(0u32);
    let subscription = {
        let (gate, started) = (gate.clone(), started.clone());
        transport
            .subscribe(
                topic,
                options("g", COUNT as usize),
                handler(move |_d: Delivery| {
                    let (gate, started) = (gate.clone(), started.clone());
                    async move {
                        started.update(|s| *s += 1);
                        let _permit = gate.acquire().await;
                        Disposition::Ack
                    }
                }),
            )
            .await
            .unwrap()
    };
    for i in 0..COUNT {
        transport
            .publish(topic, message(i.to_string()))
            .await
            .unwrap();
    }
    started
        .wait_until("every delivery in flight", |s| *s == COUNT)
        .await;
    proxy.freeze_publishers();
    // Publishing is now stuck...
    let stuck = transport.publish(topic, message("blocked")).await;
    assert!(
        matches!(stuck, Err(TransportError::Publish { .. })),
        "{stuck:?}"
    );
    // ... but settling is not.
    gate.add_permits(COUNT as usize);
    let draining = Instant::now();
    let left = subscription.shutdown(Duration::from_secs(10)).await;
    println!(
        "rabbitmq: drained {COUNT} deliveries in {:?} with the publisher blocked",
        draining.elapsed()
    );
    assert_eq!(left, 0, "in-flight deliveries not settled");
    // Acked for real: a new subscriber of the group gets nothing back.
    let again = Shared::new(HashSet::<u32>::new());
    let second = {
        let again = again.clone();
        transport
            .subscribe(
                topic,
                options("g", 4),
                handler(move |d: Delivery| {
                    let again = again.clone();
                    async move {
                        again.update(|a| a.insert(number(&d)));
                        Disposition::Ack
                    }
                }),
            )
            .await
            .unwrap()
    };
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    second.shutdown(Duration::from_secs(10)).await;
    let again = again.read(HashSet::clone);
    assert!(again.is_empty(), "acked deliveries came back: {again:?}");
    transport.delete_topology().await.unwrap();
}

/// While the broker is unreachable, concurrent publishes share one reconnection: the proxy
/// sees at most one reconnection's attempts, and every caller fails together, after about
/// one reconnection's time (not one per caller, queued). Once the broker is back, publishing
/// recovers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_callers_share_one_reconnection() {
    const CALLERS: usize = 8;
    let proxy = Proxy::start(upstream()).await;
    let mut config = config("single-flight");
    // Short, so the measured reconnection gives up quickly; the first connect may take
    // longer than that on a loaded machine, so it is tried again (it is not what is measured).
    config.connect_timeout = Duration::from_millis(300);
    let mut tries = 0;
    let transport = loop {
        match RabbitMqTransport::connect(&proxy.amqp_url(), config.clone()).await {
            Ok(transport) => break transport,
            Err(error) if tries < 20 => {
                tries += 1;
                println!("rabbitmq: first connect through the proxy failed ({error}), again");
            }
            Err(error) => {
                panic!("rabbitmq: no connection through the proxy after 20 tries: {error}")
            }
        }
    };
    proxy.hang_new_connections(true);
    proxy.drop_connections();
    tokio::time::sleep(Duration::from_millis(200)).await; // the client notices the drop
    let before = proxy.accepted();
    let started = Instant::now();
    let outcomes = futures_util::future::join_all((0..CALLERS).map(|i| {
        let transport = transport.clone();
        async move {
            let outcome = transport.publish("orders", message(i.to_string())).await;
            (outcome, started.elapsed())
        }
    }))
    .await;
    let attempts = proxy.accepted() - before;
    let times: Vec<Duration> = outcomes.iter().map(|(_, t)| *t).collect();
    println!(
        "rabbitmq: {CALLERS} concurrent publishes while down: {attempts} connection attempts, \
         failed after {times:?}"
    );
    for (outcome, _) in &outcomes {
        match outcome {
            Err(TransportError::Publish { reason, .. }) => {
                assert!(reason.contains("127.0.0.1"), "{reason}");
            }
            other => panic!("expected a publish error, got {other:?}"),
        }
    }
    // One reconnection: 1 attempt + 5 retries.
    assert!(attempts <= 6, "{attempts} connection attempts");
    // Callers queued behind one another would end spread over most of the slowest one's
    // wait; callers sharing one reconnection end together. Relative, so a loaded machine
    // that slows every caller alike does not fail it.
    let slowest = *times.iter().max().unwrap();
    let fastest = *times.iter().min().unwrap();
    assert!(
        slowest.saturating_sub(fastest) < slowest / 2,
        "callers were queued: {times:?}"
    );

    proxy.hang_new_connections(false);
    let deadline = tokio::time::Instant::now() + harness::WAIT;
    loop {
        match transport.publish("orders", message("back")).await {
            Ok(()) => break,
            Err(error) if tokio::time::Instant::now() < deadline => {
                eprintln!("publish after the outage: {error}; retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(error) => panic!("publishing never recovered: {error}"),
        }
    }
    transport.delete_topology().await.unwrap();
}
