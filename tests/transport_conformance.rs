//! The transport conformance suite: one set of test bodies, run against the memory transport
//! and, for real, against RabbitMQ and NATS JetStream on 127.0.0.1. An unreachable broker
//! fails the test with the command that starts it; nothing is skipped.
//!
//! Run: `cargo test --features rabbitmq,nats --test transport_conformance`. Without the
//! features only the memory transport's run is built (the CI runs `--all-features`).

#[path = "transport/harness.rs"]
mod harness;
#[cfg(feature = "nats")]
#[path = "transport/nats_server.rs"]
mod nats_server;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use sagaflow::transport::{
    DEAD_LETTER_REASON_HEADER, Delivery, Disposition, Headers, Message, SubscribeOptions,
    Subscription, TRACE_ID_HEADER, TransportError, dead_letter_topic,
};

use harness::{Harness, Kind, Shared, handler, run};

fn options(group: &str, concurrency: usize) -> SubscribeOptions {
    SubscribeOptions {
        group: group.to_owned(),
        concurrency,
    }
}

/// Subscribes to `topic` in group `g` with concurrency 1, acking every delivery and keeping it.
async fn collect_deliveries(
    h: &Harness,
    topic: &str,
) -> (Subscription, Arc<Shared<Vec<Delivery>>>) {
    let got = Shared::new(Vec::<Delivery>::new());
    let keep = got.clone();
    let subscription = h
        .transport
        .subscribe(
            topic,
            options("g", 1),
            handler(move |d: Delivery| {
                let keep = keep.clone();
                async move {
                    keep.update(|g| g.push(d));
                    Disposition::Ack
                }
            }),
        )
        .await
        .unwrap();
    (subscription, got)
}

/// Subscribes to `topic` in group `g` with `concurrency`, acking every delivery and keeping
/// its payload as text.
#[cfg_attr(not(any(feature = "rabbitmq", feature = "nats")), allow(dead_code))]
async fn collect_payloads(
    transport: &dyn sagaflow::transport::Transport,
    topic: &str,
    concurrency: usize,
) -> (Subscription, Arc<Shared<Vec<String>>>) {
    let got = Shared::new(Vec::<String>::new());
    let keep = got.clone();
    let subscription = transport
        .subscribe(
            topic,
            options("g", concurrency),
            handler(move |d: Delivery| {
                let keep = keep.clone();
                async move {
                    keep.update(|g| g.push(String::from_utf8_lossy(&d.payload).into()));
                    Disposition::Ack
                }
            }),
        )
        .await
        .unwrap();
    (subscription, got)
}

fn message(payload: impl Into<Bytes>) -> Message {
    let mut headers = Headers::new();
    headers.insert(TRACE_ID_HEADER.to_owned(), "trace-conformance".to_owned());
    Message {
        headers,
        payload: payload.into(),
    }
}

/// Publishes `payload` on `topic`, trying again every 200 ms while the broker refuses it
/// (a connection being re-established), for at most [`harness::WAIT`].
#[cfg_attr(not(any(feature = "rabbitmq", feature = "nats")), allow(dead_code))]
async fn publish_until_accepted(
    transport: &dyn sagaflow::transport::Transport,
    topic: &str,
    payload: &str,
) {
    let deadline = tokio::time::Instant::now() + harness::WAIT;
    loop {
        match transport.publish(topic, message(payload.to_string())).await {
            Ok(()) => return,
            Err(error) if tokio::time::Instant::now() < deadline => {
                eprintln!("publish {payload} on {topic}: {error}; retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(error) => panic!("publish {payload} on {topic} never succeeded: {error}"),
        }
    }
}

/// Publishes `0..count` as decimal payloads, many publishes in flight at once (each still
/// resolves on its own confirm).
async fn publish_numbers(h: &Harness, topic: &str, count: u32) {
    let transport = h.transport.clone();
    let results: Vec<_> = futures_util::stream::iter(0..count)
        .map(|i| {
            let transport = transport.clone();
            async move { transport.publish(topic, message(i.to_string())).await }
        })
        .buffer_unordered(256)
        .collect()
        .await;
    for result in results {
        result.unwrap_or_else(|e| panic!("{}: publish failed: {e}", h.kind));
    }
}

fn number(delivery: &Delivery) -> u32 {
    std::str::from_utf8(&delivery.payload)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("unexpected payload {:?}", delivery.payload))
}

/// 10,000 messages through 4 consumers of one group: none lost; duplicates reported.
async fn ten_thousand_messages_through_four_consumers(h: Arc<Harness>) {
    const COUNT: u32 = 10_000;
    let topic = "bulk";
    let seen = Shared::new(HashMap::<u32, u32>::new());
    let mut subscriptions = Vec::new();
    for _ in 0..4 {
        let seen = seen.clone();
        let subscription = h
            .transport
            .subscribe(
                topic,
                options("workers", 16),
                handler(move |d: Delivery| {
                    let seen = seen.clone();
                    async move {
                        let n = number(&d);
                        seen.update(|seen| *seen.entry(n).or_default() += 1);
                        Disposition::Ack
                    }
                }),
            )
            .await
            .unwrap();
        subscriptions.push(subscription);
    }
    publish_numbers(&h, topic, COUNT).await;
    seen.wait_until("all 10,000 messages", |seen| seen.len() == COUNT as usize)
        .await;
    for subscription in subscriptions {
        subscription.shutdown(Duration::from_secs(30)).await;
    }
    let (distinct, duplicates) = seen.read(|seen| {
        (
            seen.len(),
            seen.values().map(|n| n.saturating_sub(1)).sum::<u32>(),
        )
    });
    println!(
        "{}: {COUNT} published, {distinct} received, {duplicates} duplicates",
        h.kind
    );
    assert_eq!(distinct, COUNT as usize, "{}: messages lost", h.kind);
    assert!(
        seen.read(|seen| seen.keys().all(|n| *n < COUNT)),
        "{}: foreign payloads",
        h.kind
    );
}

/// The in-flight maximum measured in the handler never exceeds the concurrency limit.
async fn concurrency_limit_is_never_exceeded(h: Arc<Harness>) {
    const LIMIT: usize = 3;
    const COUNT: u32 = 60;
    let topic = "limited";
    let in_flight = Arc::new(AtomicUsize::new(0));
    let done = Shared::new((0u32, 0usize)); // (handled, max in flight)
    let subscription = {
        let (in_flight, done) = (in_flight.clone(), done.clone());
        h.transport
            .subscribe(
                topic,
                options("limited", LIMIT),
                handler(move |_d: Delivery| {
                    let (in_flight, done) = (in_flight.clone(), done.clone());
                    async move {
                        let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                        done.update(|(_, max)| *max = (*max).max(now));
                        // Hold the slot a little so deliveries overlap.
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        in_flight.fetch_sub(1, Ordering::SeqCst);
                        done.update(|(handled, _)| *handled += 1);
                        Disposition::Ack
                    }
                }),
            )
            .await
            .unwrap()
    };
    publish_numbers(&h, topic, COUNT).await;
    done.wait_until("all messages handled", |(handled, _)| *handled >= COUNT)
        .await;
    subscription.shutdown(Duration::from_secs(30)).await;
    let max = done.read(|(_, max)| *max);
    println!("{}: in-flight maximum {max} (limit {LIMIT})", h.kind);
    assert!(
        (1..=LIMIT).contains(&max),
        "{}: {max} in flight, limit {LIMIT}",
        h.kind
    );
}

/// A nack (with and without delay) leads to redelivery, counted in `delivery_count`.
/// Delivery counts seen, by payload.
type Seen = Arc<Shared<HashMap<String, Vec<u32>>>>;

/// Notes the delivery count of `d` under its payload; returns the payload and whether this
/// was its first delivery.
fn note_delivery(seen: &Seen, d: &Delivery) -> (String, bool) {
    let payload = String::from_utf8_lossy(&d.payload).into_owned();
    let first = seen.update(|seen| {
        let counts = seen.entry(payload.clone()).or_default();
        counts.push(d.delivery_count);
        counts.len() == 1
    });
    (payload, first)
}

/// Subscribes to `topic` with a handler that answers each delivery with `respond(payload,
/// first delivery)`, publishes `payloads`, waits until each was delivered again, and checks that
/// each was first delivered once and then redelivered.
async fn assert_each_redelivered<F, Fut>(
    h: &Harness,
    topic: &str,
    payloads: [&'static str; 2],
    respond: F,
) where
    F: Fn(String, bool) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Disposition> + Send + 'static,
{
    let seen: Seen = Shared::new(HashMap::new());
    let subscription = {
        let seen = seen.clone();
        h.transport
            .subscribe(
                topic,
                options("g", 2),
                handler(move |d: Delivery| {
                    let (payload, first) = note_delivery(&seen, &d);
                    respond(payload, first)
                }),
            )
            .await
            .unwrap()
    };
    for payload in payloads {
        h.transport.publish(topic, message(payload)).await.unwrap();
    }
    seen.wait_until("every message redelivered", |seen| {
        seen.values().filter(|counts| counts.len() >= 2).count() == payloads.len()
    })
    .await;
    subscription.shutdown(Duration::from_secs(30)).await;
    for payload in payloads {
        let counts = seen.read(|seen| seen[payload].clone());
        assert_eq!(counts[0], 1, "{}: first delivery of {payload}", h.kind);
        assert!(
            counts[1] >= 2,
            "{}: redelivery of {payload} counted {counts:?}",
            h.kind
        );
    }
}

async fn nack_leads_to_redelivery(h: Arc<Harness>) {
    let respond = |payload: String, first| async move {
        match (first, payload.as_str()) {
            (true, "later") => Disposition::Nack {
                delay: Some(Duration::from_millis(300)),
            },
            (true, _) => Disposition::Nack { delay: None },
            (false, _) => Disposition::Ack,
        }
    };
    assert_each_redelivered(&h, "nacked", ["now", "later"], respond).await;
}

/// A handler that panics, while it builds its future or while the future runs, has the
/// delivery nacked and redelivered, and its subscription goes on.
async fn panicking_handler_is_redelivered(h: Arc<Harness>) {
    let respond = |payload: String, first| {
        if first && payload == "in handle" {
            panic!("a panic while the handler builds its future");
        }
        async move {
            if first && payload == "in future" {
                panic!("a panic while the handler's future runs");
            }
            Disposition::Ack
        }
    };
    assert_each_redelivered(&h, "panicking", ["in handle", "in future"], respond).await;
}

/// A subscriber that dies mid-message (aborted, never settled) has the message redelivered
/// to another consumer of the group.
async fn aborted_consumer_message_goes_to_another(h: Arc<Harness>) {
    let topic = "crash";
    let stuck = Shared::new(Vec::<Delivery>::new());
    let crashing = {
        let stuck = stuck.clone();
        h.transport
            .subscribe(
                topic,
                options("g", 1),
                handler(move |d: Delivery| {
                    let stuck = stuck.clone();
                    async move {
                        stuck.update(|stuck| stuck.push(d));
                        // Never settles: the subscriber "crashes" before acking.
                        std::future::pending::<Disposition>().await
                    }
                }),
            )
            .await
            .unwrap()
    };
    h.transport
        .publish(topic, message("precious"))
        .await
        .unwrap();
    stuck
        .wait_until("the first consumer to take the message", |s| !s.is_empty())
        .await;
    let (survivor, rescued) = collect_deliveries(&h, topic).await;
    crashing.abort();
    rescued
        .wait_until("the message redelivered to the survivor", |r| !r.is_empty())
        .await;
    survivor.shutdown(Duration::from_secs(30)).await;
    let delivery = rescued.read(|r| r[0].clone());
    assert_eq!(delivery.payload, Bytes::from("precious"), "{}", h.kind);
    assert_eq!(delivery.delivery_count, 2, "{}: {delivery:?}", h.kind);
    assert_eq!(delivery.trace_id(), "trace-conformance", "{}", h.kind);
}

/// Two subscribers of one group split the work; a second group gets every message.
async fn groups_split_and_fan_out(h: Arc<Harness>) {
    const COUNT: u32 = 200;
    let topic = "fanout";
    // (subscriber name, payload)
    let seen = Shared::new(Vec::<(&'static str, u32)>::new());
    let mut subscriptions = Vec::new();
    for (name, group) in [("a1", "a"), ("a2", "a"), ("b", "b")] {
        let seen = seen.clone();
        let subscription = h
            .transport
            .subscribe(
                topic,
                options(group, 2),
                handler(move |d: Delivery| {
                    let seen = seen.clone();
                    async move {
                        // A little work, so one subscriber cannot drain the queue alone.
                        tokio::time::sleep(Duration::from_millis(2)).await;
                        seen.update(|seen| seen.push((name, number(&d))));
                        Disposition::Ack
                    }
                }),
            )
            .await
            .unwrap();
        subscriptions.push(subscription);
    }
    publish_numbers(&h, topic, COUNT).await;
    let distinct = |seen: &Vec<(&str, u32)>, names: &[&str]| {
        seen.iter()
            .filter(|(n, _)| names.contains(n))
            .map(|(_, p)| *p)
            .collect::<HashSet<_>>()
            .len()
    };
    seen.wait_until("both groups to get every message", |seen| {
        distinct(seen, &["a1", "a2"]) == COUNT as usize && distinct(seen, &["b"]) == COUNT as usize
    })
    .await;
    for subscription in subscriptions {
        subscription.shutdown(Duration::from_secs(30)).await;
    }
    let (a1, a2) = seen.read(|seen| (distinct(seen, &["a1"]), distinct(seen, &["a2"])));
    println!("{}: group a split {a1} / {a2}", h.kind);
    assert!(a1 > 0 && a2 > 0, "{}: split {a1} / {a2}", h.kind);
    assert!(a1 + a2 >= COUNT as usize, "{}", h.kind);
}

/// A poison message reaches the dead-letter topic with its reason and its headers.
async fn poison_message_is_dead_lettered(h: Arc<Harness>) {
    let topic = "poisoned";
    let handled = Shared::new(Vec::<String>::new());
    let main = {
        let handled = handled.clone();
        h.transport
            .subscribe(
                topic,
                options("g", 2),
                handler(move |d: Delivery| {
                    let handled = handled.clone();
                    async move {
                        let payload = String::from_utf8_lossy(&d.payload).into_owned();
                        handled.update(|h| h.push(payload.clone()));
                        if payload == "poison" {
                            Disposition::DeadLetter {
                                reason: "malformed saga message: expected JSON".into(),
                            }
                        } else {
                            Disposition::Ack
                        }
                    }
                }),
            )
            .await
            .unwrap()
    };
    let (dead_letters, dead) = collect_deliveries(&h, &dead_letter_topic(topic)).await;
    h.transport.publish(topic, message("poison")).await.unwrap();
    h.transport.publish(topic, message("fine")).await.unwrap();
    dead.wait_until("the dead letter", |d| !d.is_empty()).await;
    handled
        .wait_until("the good message", |h| h.iter().any(|p| p == "fine"))
        .await;
    main.shutdown(Duration::from_secs(30)).await;
    dead_letters.shutdown(Duration::from_secs(30)).await;
    let dead = dead.read(|d| d.clone());
    assert_eq!(dead.len(), 1, "{}: {dead:?}", h.kind);
    assert_eq!(dead[0].payload, Bytes::from("poison"), "{}", h.kind);
    assert_eq!(
        dead[0]
            .headers
            .get(DEAD_LETTER_REASON_HEADER)
            .map(String::as_str),
        Some("malformed saga message: expected JSON"),
        "{}",
        h.kind
    );
    assert_eq!(dead[0].trace_id(), "trace-conformance", "{}", h.kind);
    assert_eq!(dead[0].topic, dead_letter_topic(topic), "{}", h.kind);
    let poison_handled = handled.read(|h| h.iter().filter(|p| *p == "poison").count());
    assert_eq!(poison_handled, 1, "{}: poison retried", h.kind);
}

/// Headers arrive as they were published.
async fn headers_survive(h: Arc<Harness>) {
    let topic = "headers";
    let (subscription, got) = collect_deliveries(&h, topic).await;
    let mut sent = message("with headers");
    sent.headers
        .insert(TRACE_ID_HEADER.into(), "0f3c9a1e-trace".into());
    sent.headers.insert(
        "idempotency-key".into(),
        "0f3c9a1e-trace/create_order".into(),
    );
    sent.headers.insert("x-saga".into(), "booking".into());
    h.transport.publish(topic, sent.clone()).await.unwrap();
    got.wait_until("the message", |g| !g.is_empty()).await;
    subscription.shutdown(Duration::from_secs(30)).await;
    let delivery = got.read(|g| g[0].clone());
    assert_eq!(delivery.headers, sent.headers, "{}", h.kind);
    assert_eq!(delivery.payload, sent.payload, "{}", h.kind);
    assert_eq!(delivery.topic, topic, "{}", h.kind);
    assert_eq!(delivery.delivery_count, 1, "{}", h.kind);
}

/// A 1 MiB payload goes through; an oversized one is refused before sending.
async fn large_payload_works_and_oversized_is_refused(h: Arc<Harness>) {
    let topic = "large";
    let (subscription, got) = collect_deliveries(&h, topic).await;
    // Exactly 1 MiB and no headers: the NATS server default max_payload (1 MiB) counts
    // headers too, so this is the largest message every default broker accepts.
    let payload: Bytes = (0..1024 * 1024)
        .map(|i| (i % 251) as u8)
        .collect::<Vec<_>>()
        .into();
    let big = Message {
        headers: Headers::new(),
        payload: payload.clone(),
    };
    h.transport.publish(topic, big).await.unwrap();
    got.wait_until("the 1 MiB message", |g| !g.is_empty()).await;
    assert_eq!(got.read(|g| g[0].payload.clone()), payload, "{}", h.kind);

    let oversized = message(vec![7u8; 8 * 1024 * 1024 + 1]);
    match h.transport.publish(topic, oversized).await {
        Err(error @ TransportError::TooLarge { .. }) => {
            let text = error.to_string();
            assert!(
                text.contains(topic) && text.contains("over the limit"),
                "{text}"
            );
        }
        other => panic!("{}: oversized publish gave {other:?}", h.kind),
    }
    subscription.shutdown(Duration::from_secs(30)).await;
    assert_eq!(got.read(Vec::len), 1, "{}", h.kind);
}

/// Shutdown stops taking messages, lets the in-flight ones finish, and loses nothing: what
/// was not taken is delivered to the next subscriber.
async fn shutdown_with_messages_in_flight_loses_none(h: Arc<Harness>) {
    const COUNT: u32 = 20;
    let topic = "draining";
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let state = Shared::new((0usize, HashSet::<u32>::new())); // (started, acked)
    let first = {
        let (gate, state) = (gate.clone(), state.clone());
        h.transport
            .subscribe(
                topic,
                options("g", 4),
                handler(move |d: Delivery| {
                    let (gate, state) = (gate.clone(), state.clone());
                    async move {
                        state.update(|(started, _)| *started += 1);
                        // Wait until the test lets in-flight handlers finish.
                        let _permit = gate.acquire().await;
                        state.update(|(_, acked)| acked.insert(number(&d)));
                        Disposition::Ack
                    }
                }),
            )
            .await
            .unwrap()
    };
    publish_numbers(&h, topic, COUNT).await;
    state
        .wait_until("4 deliveries in flight", |(started, _)| *started >= 4)
        .await;
    let draining = tokio::spawn(first.shutdown(Duration::from_secs(60)));
    gate.add_permits(1_000);
    let left = draining.await.unwrap();
    assert_eq!(left, 0, "{}: in-flight handlers did not finish", h.kind);
    let acked_first = state.read(|(_, acked)| acked.clone());
    assert!(acked_first.len() >= 4, "{}: {acked_first:?}", h.kind);

    let rest = Shared::new(HashSet::<u32>::new());
    let second = {
        let rest = rest.clone();
        h.transport
            .subscribe(
                topic,
                options("g", 4),
                handler(move |d: Delivery| {
                    let rest = rest.clone();
                    async move {
                        rest.update(|r| r.insert(number(&d)));
                        Disposition::Ack
                    }
                }),
            )
            .await
            .unwrap()
    };
    rest.wait_until("the messages the first subscriber did not take", |r| {
        r.union(&acked_first).count() == COUNT as usize
    })
    .await;
    second.shutdown(Duration::from_secs(30)).await;
}

/// When the grace runs out, shutdown returns with the count still in flight, and those
/// deliveries are redelivered.
async fn shutdown_grace_expired_redelivers(h: Arc<Harness>) {
    let topic = "grace";
    let started = Shared::new(0usize);
    let first = {
        let started = started.clone();
        h.transport
            .subscribe(
                topic,
                options("g", 1),
                handler(move |_d: Delivery| {
                    let started = started.clone();
                    async move {
                        started.update(|s| *s += 1);
                        std::future::pending::<Disposition>().await
                    }
                }),
            )
            .await
            .unwrap()
    };
    h.transport.publish(topic, message("slow")).await.unwrap();
    started
        .wait_until("the delivery to start", |s| *s == 1)
        .await;
    let left = first.shutdown(Duration::from_millis(200)).await;
    assert_eq!(left, 1, "{}: one delivery was in flight", h.kind);
    let (second, got) = collect_deliveries(&h, topic).await;
    got.wait_until("the abandoned delivery", |g| !g.is_empty())
        .await;
    second.shutdown(Duration::from_secs(30)).await;
    assert_eq!(got.read(|g| g[0].payload.clone()), Bytes::from("slow"));
}

/// A handler that always nacks sees the delivery count go 1, 2, 3, ... whether it nacks with
/// or without a delay (the engine dead-letters past `TransportConfig::max_deliveries` on it).
async fn delivery_count_counts_every_nack(h: Arc<Harness>) {
    const UNTIL: u32 = 6;
    let topic = "counted";
    let counts = Shared::new(Vec::<u32>::new());
    let last_headers = Shared::new(Headers::new());
    let subscription = {
        let (counts, last_headers) = (counts.clone(), last_headers.clone());
        h.transport
            .subscribe(
                topic,
                options("g", 1),
                handler(move |d: Delivery| {
                    let (counts, last_headers) = (counts.clone(), last_headers.clone());
                    async move {
                        counts.update(|c| c.push(d.delivery_count));
                        last_headers.update(|h| *h = d.headers.clone());
                        match d.delivery_count {
                            n if n >= UNTIL => Disposition::Ack,
                            // Alternate plain and delayed nacks: both must count.
                            n if n % 2 == 0 => Disposition::Nack {
                                delay: Some(Duration::from_millis(100)),
                            },
                            _ => Disposition::Nack { delay: None },
                        }
                    }
                }),
            )
            .await
            .unwrap()
    };
    h.transport
        .publish(topic, message("always nacked"))
        .await
        .unwrap();
    counts
        .wait_until("the message to be redelivered until acked", |c| {
            c.iter().any(|n| *n >= UNTIL)
        })
        .await;
    subscription.shutdown(Duration::from_secs(30)).await;
    let counts = counts.read(Vec::clone);
    println!("{}: delivery counts {counts:?}", h.kind);
    assert_eq!(counts, (1..=UNTIL).collect::<Vec<_>>(), "{}", h.kind);
    // The transport's (and the broker's) retry bookkeeping stays out of the headers.
    assert_eq!(
        last_headers.read(Headers::clone),
        message("").headers,
        "{}",
        h.kind
    );
}

/// A delivery nacked with a delay gives its concurrency slot back while it waits: with one
/// slot, a message published after it is handled before it comes back. (A retry's backoff must
/// not stall the topic: on NATS a `-NAK` with a delay would hold one of the consumer's
/// `max_ack_pending` slots, shared by every replica, for the whole delay.)
async fn delayed_nack_frees_its_concurrency_slot(h: Arc<Harness>) {
    const DELAY: Duration = Duration::from_secs(3);
    let topic = "parked";
    // (payload, delivery count, when), in the order handled.
    let handled = Shared::new(Vec::<(String, u32, std::time::Instant)>::new());
    let subscription = {
        let handled = handled.clone();
        h.transport
            .subscribe(
                topic,
                options("g", 1),
                handler(move |d: Delivery| {
                    let payload = String::from_utf8_lossy(&d.payload).into_owned();
                    let park = payload == "parked" && d.delivery_count == 1;
                    handled
                        .update(|h| h.push((payload, d.delivery_count, std::time::Instant::now())));
                    async move {
                        if park {
                            Disposition::Nack { delay: Some(DELAY) }
                        } else {
                            Disposition::Ack
                        }
                    }
                }),
            )
            .await
            .unwrap()
    };
    h.transport.publish(topic, message("parked")).await.unwrap();
    handled
        .wait_until("the first delivery", |h| !h.is_empty())
        .await;
    h.transport.publish(topic, message("next")).await.unwrap();
    handled
        .wait_until("both handled, the parked one twice", |h| h.len() >= 3)
        .await;
    subscription.shutdown(Duration::from_secs(30)).await;
    let handled = handled.read(Vec::clone);
    let order: Vec<(&str, u32)> = handled.iter().map(|(p, n, _)| (p.as_str(), *n)).collect();
    assert_eq!(
        order,
        [("parked", 1), ("next", 1), ("parked", 2)],
        "{}: the next message waited for the parked one",
        h.kind
    );
    let waited = handled[2].2 - handled[0].2;
    assert!(
        waited >= DELAY.mul_f32(0.9),
        "{}: the parked message came back after {waited:?}, before its delay of {DELAY:?}",
        h.kind
    );
}

macro_rules! conformance {
    ($($test:ident),* $(,)?) => {
        conformance!(@kind memory, Memory, all(), $($test),*);
        conformance!(@kind rabbitmq, RabbitMq, feature = "rabbitmq", $($test),*);
        conformance!(@kind rabbitmq_quorum, RabbitMqQuorum, feature = "rabbitmq", $($test),*);
        conformance!(@kind nats, Nats, feature = "nats", $($test),*);
    };
    (@kind $module:ident, $kind:ident, $cfg:meta, $($test:ident),*) => {
        #[cfg($cfg)]
        mod $module {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    crate::run(crate::Kind::$kind, stringify!($test), super::$test).await;
                }
            )*
        }
    };
}

conformance!(
    ten_thousand_messages_through_four_consumers,
    concurrency_limit_is_never_exceeded,
    nack_leads_to_redelivery,
    panicking_handler_is_redelivered,
    aborted_consumer_message_goes_to_another,
    groups_split_and_fan_out,
    poison_message_is_dead_lettered,
    headers_survive,
    large_payload_works_and_oversized_is_refused,
    shutdown_with_messages_in_flight_loses_none,
    shutdown_grace_expired_redelivers,
    delivery_count_counts_every_nack,
    delayed_nack_frees_its_concurrency_slot,
);

/// Connecting to nothing, or with a bad URL, is a prompt [`TransportError::Connect`] naming
/// the broker and the address; never a hang or a panic.
#[cfg(all(feature = "rabbitmq", feature = "nats"))]
mod connect_errors {
    use super::*;
    use sagaflow::transport::{NatsTransport, RabbitMqTransport, TransportConfig};

    fn quick() -> TransportConfig {
        TransportConfig {
            connect_timeout: Duration::from_secs(1),
            ..TransportConfig::default()
        }
    }

    fn assert_connect_error(error: TransportError, broker: &str, address: &str) {
        let text = error.to_string();
        let report = sagaflow::error::Report(&error).to_string();
        assert!(
            !report.contains("secret"),
            "password leaked through a cause: {report}"
        );
        assert!(
            std::error::Error::source(&error).is_some(),
            "the client library's error is the source: {report}"
        );
        assert_eq!(
            error.kind(),
            sagaflow::transport::TransportErrorKind::Connect
        );
        match error {
            TransportError::Connect {
                broker: b,
                address: a,
                ..
            } => {
                assert_eq!(b, broker, "{text}");
                assert!(a.contains(address), "{text}");
                assert!(!a.contains("secret"), "password leaked: {text}");
            }
            other => panic!("expected a connect error, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn rabbitmq_unreachable_or_bad_url() {
        for (url, address) in [
            ("amqp://guest:secret@127.0.0.1:1/%2f", "127.0.0.1:1"),
            ("definitely not a url", "definitely not a url"),
        ] {
            let error =
                tokio::time::timeout(harness::WAIT, RabbitMqTransport::connect(url, quick()))
                    .await
                    .expect("connect must fail within its timeout")
                    .expect_err("must not connect");
            assert_connect_error(error, "RabbitMQ", address);
        }
    }

    #[tokio::test]
    async fn nats_unreachable_or_bad_url() {
        for (url, address) in [
            ("nats://user:secret@127.0.0.1:1", "127.0.0.1:1"),
            ("nats://bad url:::", "bad url"),
        ] {
            let error = tokio::time::timeout(harness::WAIT, NatsTransport::connect(url, quick()))
                .await
                .expect("connect must fail within its timeout")
                .expect_err("must not connect");
            assert_connect_error(error, "NATS", address);
        }
    }
}

/// RabbitMQ: after the broker closes the connection, publishing reconnects, the subscription
/// declares its topology again and resumes. Uses `rabbitmqctl` to close this test's own
/// connection (found by its unique connection name) only.
#[cfg(feature = "rabbitmq")]
mod rabbitmq_reconnection {
    use super::*;

    fn rabbitmqctl(args: &[&str]) -> String {
        let output = std::process::Command::new("rabbitmqctl")
            .args(args)
            .output()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run rabbitmqctl {args:?} ({e}); is RabbitMQ installed on this machine?"
                )
            });
        assert!(
            output.status.success(),
            "rabbitmqctl {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Closes every connection whose client properties carry `name`; returns how many.
    fn close_connections_named(name: &str) -> usize {
        let listing = rabbitmqctl(&[
            "list_connections",
            "-q",
            "--no-table-headers",
            "pid",
            "client_properties",
        ]);
        let pids: Vec<&str> = listing
            .lines()
            .filter(|line| line.contains(name))
            .filter_map(|line| line.split('\t').next())
            .collect();
        for pid in &pids {
            rabbitmqctl(&[
                "close_connection",
                pid,
                "conformance test: simulated broker drop",
            ]);
        }
        pids.len()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn subscription_resumes_after_the_connection_drops() {
        run(Kind::RabbitMq, "reconnection", |h| async move {
            let (subscription, got) = collect_payloads(h.transport.as_ref(), "resilient", 2).await;
            h.transport
                .publish("resilient", message("before"))
                .await
                .unwrap();
            got.wait_until("the message before the drop", |g| g.len() == 1)
                .await;

            let name = h.connection_name.clone();
            let closed = tokio::task::spawn_blocking(move || close_connections_named(&name))
                .await
                .unwrap();
            assert!(
                closed >= 1,
                "no RabbitMQ connection named {}",
                h.connection_name
            );

            // The first publish after the drop may race the client noticing it; at-least-once
            // allows a retry, which the engine would do the same way.
            publish_until_accepted(h.transport.as_ref(), "resilient", "after").await;
            got.wait_until("the message after the drop", |g| {
                g.iter().any(|p| p == "after")
            })
            .await;
            subscription.shutdown(Duration::from_secs(30)).await;
        })
        .await;
    }
}

/// RabbitMQ with `queue_type = quorum`: every queue the transport declares for a group (its
/// queue, its dead-letter queue, a retry queue) is a quorum queue, as the broker lists it
/// (the conformance suite above runs on them as `rabbitmq_quorum::*`).
#[cfg(feature = "rabbitmq")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_quorum_queues_are_declared_as_quorum() {
    run(Kind::RabbitMqQuorum, "quorum-type", |h| async move {
        let retried = Shared::new(0_u32);
        let subscription = {
            let retried = retried.clone();
            h.transport
                .subscribe(
                    "typed",
                    options("g", 1),
                    handler(move |_: Delivery| {
                        let retried = retried.clone();
                        async move {
                            // Once through a retry queue, then done.
                            if retried.update(|n| {
                                *n += 1;
                                *n
                            }) == 1
                            {
                                Disposition::Nack {
                                    delay: Some(Duration::from_millis(50)),
                                }
                            } else {
                                Disposition::Ack
                            }
                        }
                    }),
                )
                .await
                .unwrap()
        };
        h.transport.publish("typed", message("m")).await.unwrap();
        retried
            .wait_until("the retried delivery", |n| *n >= 2)
            .await;
        let prefix = h
            .connection_name
            .trim_start_matches("sagaflow-")
            .to_string();
        let listing = tokio::task::spawn_blocking(|| {
            let output = std::process::Command::new("rabbitmqctl")
                .args(["list_queues", "-q", "--no-table-headers", "name", "type"])
                .output()
                .expect("rabbitmqctl runs (RabbitMQ is installed on this machine)");
            assert!(output.status.success(), "rabbitmqctl list_queues failed");
            String::from_utf8_lossy(&output.stdout).into_owned()
        })
        .await
        .unwrap();
        let ours: Vec<&str> = listing.lines().filter(|l| l.contains(&prefix)).collect();
        assert!(
            ours.len() >= 3,
            "queue, dead-letter queue and a retry queue: {ours:?}"
        );
        assert!(
            ours.iter().all(|line| line.ends_with("quorum")),
            "every queue is a quorum queue: {ours:?}"
        );
        subscription.shutdown(Duration::from_secs(30)).await;
    })
    .await;
}

/// NATS: the prefix's stream kept by the three nodes of a private JetStream cluster
/// (`nats_replicas = 3`); one node other than the client's is killed (SIGKILL) in the middle
/// of the run, and every message published, before and after, is delivered.
#[cfg(feature = "nats")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_replicated_stream_loses_nothing_when_a_node_dies() {
    use crate::nats_server::Cluster;
    use sagaflow::transport::{NatsTransport, TransportConfig};

    const COUNT: u32 = 200;
    // The setting reaches JetStream: a single server cannot keep three replicas.
    let mut single = TransportConfig::with_prefix(format!("replicas-{}", std::process::id()));
    single.nats_replicas = 3;
    let refused = NatsTransport::connect(harness::NATS_URL, single)
        .await
        .expect_err("one server cannot hold a 3-replica stream");
    assert!(refused.to_string().contains("stream"), "{refused}");
    let mut cluster = tokio::task::spawn_blocking(|| Cluster::new("replicas"))
        .await
        .unwrap();
    let mut config = TransportConfig::with_prefix("replicated");
    config.nats_replicas = 3;
    config.ack_wait = Duration::from_secs(2);
    // The cluster elects its JetStream leader after the nodes meet: retry until the
    // replicated stream can be created.
    let deadline = tokio::time::Instant::now() + harness::WAIT;
    let transport = loop {
        match NatsTransport::connect(&cluster.url(0), config.clone()).await {
            Ok(transport) => break transport,
            Err(error) if tokio::time::Instant::now() < deadline => {
                eprintln!("replicated stream not ready yet: {error}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(error) => panic!("the 3-node cluster never took a 3-replica stream: {error}"),
        }
    };
    let (subscription, got) = collect_payloads(&transport, "replicated", 4).await;
    for i in 0..COUNT {
        if i == COUNT / 2 {
            cluster.kill(2);
        }
        // A publish in flight when the node died may need another try (at least once).
        publish_until_accepted(&transport, "replicated", &format!("m{i}")).await;
    }
    // At least once: a message may come twice; every one of them must come.
    got.wait_until("every message, before and after the node died", |g| {
        g.iter().collect::<HashSet<_>>().len() == COUNT as usize
    })
    .await;
    subscription.shutdown(Duration::from_secs(30)).await;
    drop(cluster);
}

/// NATS: a private `nats-server` (own port, own store directory, so no other test is
/// touched) is restarted under a running subscription; publishing and consuming resume.
#[cfg(feature = "nats")]
mod nats_reconnection {
    use super::*;
    use crate::nats_server::Server;
    use sagaflow::transport::{NatsTransport, Transport, TransportConfig};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn subscription_resumes_after_the_server_restarts() {
        let mut server = tokio::task::spawn_blocking(|| Server::new("reconnect"))
            .await
            .unwrap();
        let url = server.url();
        let transport = NatsTransport::connect(&url, TransportConfig::with_prefix("reconnect"))
            .await
            .unwrap();
        let (subscription, got) = collect_payloads(&transport, "resilient", 2).await;
        transport
            .publish("resilient", message("before"))
            .await
            .unwrap();
        got.wait_until("the message before the restart", |g| g.len() == 1)
            .await;

        let server = tokio::task::spawn_blocking(move || {
            server.restart();
            server
        })
        .await
        .unwrap();

        // Publishes fail while the client reconnects; at-least-once allows retrying them.
        publish_until_accepted(&transport, "resilient", "after").await;
        got.wait_until("the message after the restart", |g| {
            g.iter().any(|p| p == "after")
        })
        .await;
        subscription.shutdown(Duration::from_secs(30)).await;
        transport.delete_topology().await.unwrap();
        drop(server);
    }
}

#[cfg(feature = "nats")]
#[path = "transport/nats.rs"]
mod nats_only;

#[cfg(feature = "rabbitmq")]
#[path = "transport/proxy.rs"]
mod proxy;

#[cfg(feature = "rabbitmq")]
#[path = "transport/rabbitmq.rs"]
mod rabbitmq_only;
