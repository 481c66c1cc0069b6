//! NATS-only tests that need a private `nats-server` (kill -9 and restart on the same store
//! directory) or NATS-specific settings (ack wait, in-progress acks, `max_deliver`,
//! `Nats-Msg-Id` deduplication).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use sagaflow::transport::{
    Delivery, Disposition, MESSAGE_ID_HEADER, NatsTransport, Subscription, Transport,
    TransportConfig,
};

use crate::harness::{self, Shared, handler};
use crate::nats_server::Server;
use crate::{message, number, options};

/// Publishes `numbers` (decimal payloads), many at once, each awaiting its JetStream ack;
/// panics on any failure: every number returned here is *confirmed*.
async fn publish_confirmed(transport: &NatsTransport, topic: &str, numbers: std::ops::Range<u32>) {
    let results: Vec<_> = futures_util::stream::iter(numbers)
        .map(|i| async move { (i, transport.publish(topic, message(i.to_string())).await) })
        .buffer_unordered(64)
        .collect()
        .await;
    for (i, result) in results {
        result.unwrap_or_else(|e| panic!("publish of {i} not confirmed: {e}"));
    }
}

/// Connects to a (possibly just restarted) server, retrying until it answers.
async fn connect(url: &str, config: &TransportConfig) -> NatsTransport {
    let deadline = tokio::time::Instant::now() + harness::WAIT;
    loop {
        match NatsTransport::connect(url, config.clone()).await {
            Ok(transport) => return transport,
            Err(error) if tokio::time::Instant::now() < deadline => {
                eprintln!("connect: {error}; retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(error) => panic!("cannot connect to the private server: {error}"),
        }
    }
}

/// Subscribes, retrying while the server recovers, with a handler that records the numbers.
async fn subscribe_recording(
    transport: &NatsTransport,
    topic: &str,
    seen: &Arc<Shared<HashSet<u32>>>,
    work: Duration,
) -> Subscription {
    let deadline = tokio::time::Instant::now() + harness::WAIT;
    loop {
        let seen = seen.clone();
        let recording = handler(move |d: Delivery| {
            let seen = seen.clone();
            async move {
                tokio::time::sleep(work).await;
                seen.update(|s| s.insert(number(&d)));
                Disposition::Ack
            }
        });
        match transport.subscribe(topic, options("g", 4), recording).await {
            Ok(subscription) => return subscription,
            Err(error) if tokio::time::Instant::now() < deadline => {
                eprintln!("subscribe: {error}; retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(error) => panic!("cannot subscribe on the private server: {error}"),
        }
    }
}

/// Every confirmed message survives a `kill -9` of the server while a group is half way
/// through them: after a restart on the same store directory, the group's new subscriber
/// gets every message the first one did not ack (counted as distinct payloads).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirmed_messages_survive_a_server_kill() {
    const COUNT: u32 = 200;
    let topic = "orders";
    let mut server = tokio::task::spawn_blocking(|| Server::new("kill"))
        .await
        .unwrap();
    let url = server.url();
    let config = TransportConfig {
        ack_wait: Duration::from_secs(2),
        ..TransportConfig::with_prefix("kill")
    };
    let transport = connect(&url, &config).await;
    let seen = Shared::new(HashSet::<u32>::new());
    let first = subscribe_recording(&transport, topic, &seen, Duration::from_millis(10)).await;
    publish_confirmed(&transport, topic, 0..COUNT).await;
    seen.wait_until("the group half way through", |s| s.len() >= 50)
        .await;
    first.abort();
    let before = seen.read(HashSet::len);
    drop(transport);

    server = tokio::task::spawn_blocking(move || {
        server.restart();
        server
    })
    .await
    .unwrap();

    let transport = connect(&url, &config).await;
    let second = subscribe_recording(&transport, topic, &seen, Duration::ZERO).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while seen.read(HashSet::len) < COUNT as usize && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    second.shutdown(Duration::from_secs(10)).await;
    let missing: Vec<u32> = seen.read(|s| (0..COUNT).filter(|n| !s.contains(n)).collect());
    println!(
        "nats kill -9: {COUNT} confirmed, {before} acked before the kill, {} missing after the restart",
        missing.len()
    );
    assert!(
        missing.is_empty(),
        "{} confirmed messages lost after kill -9: {missing:?}",
        missing.len()
    );
    transport.delete_topology().await.unwrap();
    drop(server);
}

/// Like [`confirmed_messages_survive_a_server_kill`], but the subscriber keeps running
/// through the kill and the restart on the same client: its pull stream is re-created (and
/// its consumer looked up again) while the server recovers its store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirmed_messages_survive_a_server_kill_under_a_running_subscriber() {
    const COUNT: u32 = 200;
    let topic = "orders";
    let mut server = tokio::task::spawn_blocking(|| Server::new("kill-live"))
        .await
        .unwrap();
    let url = server.url();
    let config = TransportConfig {
        ack_wait: Duration::from_secs(2),
        ..TransportConfig::with_prefix("kill-live")
    };
    let transport = connect(&url, &config).await;
    let seen = Shared::new(HashSet::<u32>::new());
    let subscription =
        subscribe_recording(&transport, topic, &seen, Duration::from_millis(10)).await;
    publish_confirmed(&transport, topic, 0..COUNT).await;
    seen.wait_until("the group half way through", |s| s.len() >= 50)
        .await;
    let before = seen.read(HashSet::len);
    server = tokio::task::spawn_blocking(move || {
        server.restart();
        server
    })
    .await
    .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while seen.read(HashSet::len) < COUNT as usize && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    subscription.shutdown(Duration::from_secs(10)).await;
    let missing: Vec<u32> = seen.read(|s| (0..COUNT).filter(|n| !s.contains(n)).collect());
    println!(
        "nats kill -9 (live subscriber): {COUNT} confirmed, {before} acked before the kill, {} missing after the restart",
        missing.len()
    );
    assert!(
        missing.is_empty(),
        "{} confirmed messages lost after kill -9: {missing:?}",
        missing.len()
    );
    let _ = transport.delete_topology().await;
    drop(server);
}

/// The harshest timing: the group's consumer was created and the messages confirmed an
/// instant before the `kill -9`, so the server may not have flushed the consumer's state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirmed_messages_survive_a_server_kill_right_after_publishing() {
    const COUNT: u32 = 200;
    let topic = "orders";
    let mut server = tokio::task::spawn_blocking(|| Server::new("kill-early"))
        .await
        .unwrap();
    let url = server.url();
    let config = TransportConfig {
        ack_wait: Duration::from_secs(2),
        ..TransportConfig::with_prefix("kill-early")
    };
    let transport = connect(&url, &config).await;
    let seen = Shared::new(HashSet::<u32>::new());
    let first = subscribe_recording(&transport, topic, &seen, Duration::from_millis(10)).await;
    publish_confirmed(&transport, topic, 0..COUNT).await;
    first.abort();
    let before = seen.read(HashSet::len);
    drop(transport);
    server = tokio::task::spawn_blocking(move || {
        server.restart();
        server
    })
    .await
    .unwrap();
    let transport = connect(&url, &config).await;
    let second = subscribe_recording(&transport, topic, &seen, Duration::ZERO).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while seen.read(HashSet::len) < COUNT as usize && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    second.shutdown(Duration::from_secs(10)).await;
    let missing: Vec<u32> = seen.read(|s| (0..COUNT).filter(|n| !s.contains(n)).collect());
    println!(
        "nats kill -9 (early): {COUNT} confirmed, {before} acked before the kill, {} missing after the restart",
        missing.len()
    );
    assert!(
        missing.is_empty(),
        "{} confirmed messages lost after kill -9: {missing:?}",
        missing.len()
    );
    let _ = transport.delete_topology().await;
    drop(server);
}

/// The case behind lost confirmed messages: a group's durable consumer is created anew
/// (its state lost by the server, e.g. never flushed before a crash) while the stream kept
/// the messages it had not acked. The new consumer must deliver them, not skip to new ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recreated_consumer_delivers_what_the_stream_kept() {
    const COUNT: u32 = 200;
    let topic = "orders";
    let mut server = tokio::task::spawn_blocking(|| Server::new("lost-consumer"))
        .await
        .unwrap();
    let url = server.url();
    let config = TransportConfig {
        ack_wait: Duration::from_secs(2),
        ..TransportConfig::with_prefix("lost-consumer")
    };
    let transport = connect(&url, &config).await;
    let seen = Shared::new(HashSet::<u32>::new());
    // Group `b` holds every message unacked through it all, like another service whose
    // consumer survived; group `g` loses its consumer.
    let first = subscribe_recording(&transport, topic, &seen, Duration::from_millis(10)).await;
    first.abort();
    let b = transport
        .subscribe(
            topic,
            options("b", 1),
            handler(move |_d: Delivery| async { std::future::pending::<Disposition>().await }),
        )
        .await
        .unwrap();
    publish_confirmed(&transport, topic, 0..COUNT).await;
    drop(b);
    drop(transport);
    server = tokio::task::spawn_blocking(move || {
        server.kill();
        assert!(
            server.forget_consumer("lost-consumer", "orders__g"),
            "no stored consumer orders__g"
        );
        server.start_again();
        server
    })
    .await
    .unwrap();
    let transport = connect(&url, &config).await;
    let second = subscribe_recording(&transport, topic, &seen, Duration::ZERO).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while seen.read(HashSet::len) < COUNT as usize && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    second.shutdown(Duration::from_secs(10)).await;
    let missing = seen.read(|s| (0..COUNT).filter(|n| !s.contains(n)).count());
    println!("nats recreated consumer: {COUNT} confirmed, {missing} missing");
    assert_eq!(
        missing, 0,
        "a recreated consumer skipped {missing} kept messages"
    );
    let _ = transport.delete_topology().await;
    drop(server);
}

/// A handler that runs three times the ack wait is not redelivered while it runs: the
/// subscriber's in-progress acks keep restarting the server's ack timer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_longer_than_the_ack_wait_runs_once() {
    crate::run(crate::Kind::Nats, "long_handler", |h| async move {
        let config = TransportConfig {
            ack_wait: Duration::from_secs(1),
            ..h.transport.config().clone()
        };
        let transport = NatsTransport::connect(harness::NATS_URL, config)
            .await
            .unwrap();
        let runs = Shared::new(Vec::<u32>::new()); // delivery counts of each handler run
        let finished = Shared::new(0usize);
        let subscription = {
            let (runs, finished) = (runs.clone(), finished.clone());
            transport
                .subscribe(
                    "slow",
                    options("g", 2),
                    handler(move |d: Delivery| {
                        let (runs, finished) = (runs.clone(), finished.clone());
                        async move {
                            runs.update(|r| r.push(d.delivery_count));
                            tokio::time::sleep(Duration::from_secs(3)).await;
                            finished.update(|f| *f += 1);
                            Disposition::Ack
                        }
                    }),
                )
                .await
                .unwrap()
        };
        transport.publish("slow", message("long")).await.unwrap();
        finished.wait_until("the slow handler", |f| *f == 1).await;
        // Two more ack waits: a redelivery, had there been one, shows up by then.
        tokio::time::sleep(Duration::from_secs(2)).await;
        subscription.shutdown(Duration::from_secs(10)).await;
        let runs = runs.read(Vec::clone);
        println!("nats long handler (3 s, ack wait 1 s): runs {runs:?}");
        assert_eq!(runs, vec![1], "the handler was redelivered while it ran");
    })
    .await;
}

/// The consumer's `max_deliver` is `max_deliveries + 1`: with `max_deliveries = 2`, a message
/// nacked every time is delivered three times (the third one, over the bound, is the one the
/// engine dead-letters), then never again. The group's consumer was first created with the
/// default bound and another ack wait: a later subscriber's settings update it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_stops_one_delivery_past_max_deliveries() {
    crate::run(crate::Kind::Nats, "max_deliver", |h| async move {
        let earlier = h
            .transport
            .subscribe(
                "bounded",
                options("g", 1),
                handler(|_d: Delivery| async { Disposition::Ack }),
            )
            .await
            .unwrap();
        earlier.shutdown(Duration::from_secs(10)).await;
        let config = TransportConfig {
            max_deliveries: 2,
            ack_wait: Duration::from_millis(1500),
            ..h.transport.config().clone()
        };
        let transport = NatsTransport::connect(harness::NATS_URL, config)
            .await
            .unwrap();
        let counts = Shared::new(Vec::<u32>::new());
        let subscription = {
            let counts = counts.clone();
            transport
                .subscribe(
                    "bounded",
                    options("g", 1),
                    handler(move |d: Delivery| {
                        let counts = counts.clone();
                        async move {
                            counts.update(|c| c.push(d.delivery_count));
                            Disposition::Nack { delay: None }
                        }
                    }),
                )
                .await
                .unwrap()
        };
        transport
            .publish("bounded", message("poison"))
            .await
            .unwrap();
        counts
            .wait_until("three deliveries", |c| c.len() >= 3)
            .await;
        // Longer than the ack wait: a fourth delivery would have come by then.
        tokio::time::sleep(Duration::from_secs(3)).await;
        subscription.shutdown(Duration::from_secs(10)).await;
        let counts = counts.read(Vec::clone);
        println!("nats max_deliveries 2: delivery counts {counts:?}");
        assert_eq!(counts, vec![1, 2, 3]);
    })
    .await;
}

/// Two publishes with the same `x-message-id` are delivered once: `Nats-Msg-Id` is set from
/// it and JetStream drops the duplicate. A different id is a different message. The id is
/// delivered under `x-message-id`; the server's `Nats-Msg-Id` is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_message_id_is_delivered_once() {
    crate::run(crate::Kind::Nats, "dedup", |h| async move {
        let (subscription, got) = crate::collect_deliveries(&h, "deduplicated").await;
        let with_id = |id: &str, payload: &str| {
            let mut m = message(payload.to_owned());
            m.headers
                .insert(MESSAGE_ID_HEADER.to_owned(), id.to_owned());
            m
        };
        for m in [
            with_id("trace-1/create_order/1", "first"),
            with_id("trace-1/create_order/1", "first, again"),
            with_id("trace-1/create_payment/1", "second"),
        ] {
            h.transport.publish("deduplicated", m).await.unwrap();
        }
        got.wait_until("the two distinct messages", |g| g.len() >= 2)
            .await;
        // Time for a duplicate to show up, had it been kept.
        tokio::time::sleep(Duration::from_millis(500)).await;
        subscription.shutdown(Duration::from_secs(10)).await;
        let got = got.read(Vec::clone);
        let payloads: Vec<_> = got
            .iter()
            .map(|d| String::from_utf8_lossy(&d.payload).into_owned())
            .collect();
        println!("nats dedup: delivered {payloads:?}");
        assert_eq!(payloads.len(), 2, "{payloads:?}");
        assert!(payloads.contains(&"first".to_owned()), "{payloads:?}");
        assert!(payloads.contains(&"second".to_owned()), "{payloads:?}");
        let first = got.iter().find(|d| &d.payload[..] == b"first").unwrap();
        assert_eq!(
            first.headers.get(MESSAGE_ID_HEADER).map(String::as_str),
            Some("trace-1/create_order/1")
        );
        assert!(
            first
                .headers
                .keys()
                .all(|k| !k.eq_ignore_ascii_case("Nats-Msg-Id")),
            "{:?}",
            first.headers
        );
    })
    .await;
}

/// A dead letter of a message with an id is not dropped as a duplicate of the original (it
/// is published under a derived `Nats-Msg-Id`) and keeps the id header.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_with_an_id_can_be_dead_lettered() {
    crate::run(crate::Kind::Nats, "dedup_dead_letter", |h| async move {
        let topic = "poison-with-id";
        let main = h
            .transport
            .subscribe(
                topic,
                options("g", 1),
                handler(|_d: Delivery| async {
                    Disposition::DeadLetter {
                        reason: "bad".into(),
                    }
                }),
            )
            .await
            .unwrap();
        let (dead_letters, dead) =
            crate::collect_deliveries(&h, &sagaflow::transport::dead_letter_topic(topic)).await;
        let mut m = message("poison");
        m.headers
            .insert(MESSAGE_ID_HEADER.to_owned(), "trace-2/step/1".to_owned());
        h.transport.publish(topic, m).await.unwrap();
        dead.wait_until("the dead letter", |d| !d.is_empty()).await;
        main.shutdown(Duration::from_secs(10)).await;
        dead_letters.shutdown(Duration::from_secs(10)).await;
        let dead = dead.read(|d| d[0].clone());
        assert_eq!(
            dead.headers.get(MESSAGE_ID_HEADER).map(String::as_str),
            Some("trace-2/step/1")
        );
    })
    .await;
}
