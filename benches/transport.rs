//! Transport benchmark: confirmed-publish throughput, consume throughput, sequential
//! publish-confirm latency and ping-pong latency (publish, consume, ack, publish next) for the
//! memory, RabbitMQ and NATS transports, against the brokers on 127.0.0.1.
//!
//! Run: `cargo bench --features rabbitmq,nats --bench transport` (optionally
//! `-- --messages 20000 --rounds 2000`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use sagaflow::transport::{
    Delivery, Disposition, Headers, MemoryTransport, Message, NatsTransport, RabbitMqTransport,
    SubscribeOptions, TRACE_ID_HEADER, Transport, TransportConfig,
};
use tokio::sync::mpsc;

const RABBITMQ_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
const NATS_URL: &str = "nats://127.0.0.1:4222";
/// Publishes in flight at once in the throughput runs (each still awaits its own confirm).
const IN_FLIGHT: usize = 512;

fn message(payload: &'static [u8]) -> Message {
    let mut headers = Headers::new();
    headers.insert(TRACE_ID_HEADER.to_owned(), "bench-trace".to_owned());
    Message {
        headers,
        payload: bytes::Bytes::from_static(payload),
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn options(concurrency: usize) -> SubscribeOptions {
    SubscribeOptions {
        group: "bench".into(),
        concurrency,
    }
}

struct Figures {
    publish_per_s: f64,
    consume_per_s: f64,
    publish_p50: Duration,
    ping_p50: Duration,
    ping_p99: Duration,
}

async fn bench(transport: Arc<dyn Transport>, messages: usize, rounds: usize) -> Figures {
    let payload: &'static [u8] = br#"{"saga":"booking","state":{"step":1,"order_id":"o-1"}}"#;

    // Declare the group's queue first, so published messages are kept.
    let (tx, mut rx) = mpsc::unbounded_channel::<()>();
    let counter = move |tx: mpsc::UnboundedSender<()>| {
        Arc::new(move |_d: Delivery| {
            let _ = tx.send(());
            async { Disposition::Ack }
        })
    };
    transport
        .subscribe("throughput", options(1), counter(tx.clone()))
        .await
        .expect("subscribe")
        .shutdown(Duration::from_secs(10))
        .await;

    // Confirmed publishes, pipelined.
    let started = Instant::now();
    let failures = futures_util::stream::iter(0..messages)
        .map(|_| {
            let transport = transport.clone();
            async move { transport.publish("throughput", message(payload)).await }
        })
        .buffer_unordered(IN_FLIGHT)
        .filter(|r| std::future::ready(r.is_err()))
        .count()
        .await;
    assert_eq!(failures, 0, "publishes failed");
    let publish_per_s = messages as f64 / started.elapsed().as_secs_f64();

    // Consume what was published.
    let started = Instant::now();
    let subscription = transport
        .subscribe("throughput", options(256), counter(tx))
        .await
        .expect("subscribe");
    for _ in 0..messages {
        rx.recv().await.expect("consumer alive");
    }
    let consume_per_s = messages as f64 / started.elapsed().as_secs_f64();
    subscription.shutdown(Duration::from_secs(10)).await;

    // Sequential publish latency (one confirm at a time), to a topic a group consumes, so
    // the broker stores each message before it confirms (RabbitMQ confirms a message no
    // queue is bound to at once, JetStream drops one nobody is interested in).
    let (tx, _idle) = mpsc::unbounded_channel::<()>();
    transport
        .subscribe("latency", options(1), counter(tx))
        .await
        .expect("subscribe")
        .shutdown(Duration::from_secs(10))
        .await;
    let mut publish = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let started = Instant::now();
        transport
            .publish("latency", message(payload))
            .await
            .expect("publish");
        publish.push(started.elapsed());
    }
    publish.sort();

    // Ping-pong: publish, consume, ack, publish the next.
    let (tx, mut rx) = mpsc::unbounded_channel::<()>();
    let subscription = transport
        .subscribe("pingpong", options(1), counter(tx))
        .await
        .expect("subscribe");
    let mut ping = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let started = Instant::now();
        transport
            .publish("pingpong", message(payload))
            .await
            .expect("publish");
        rx.recv().await.expect("consumer alive");
        ping.push(started.elapsed());
    }
    subscription.shutdown(Duration::from_secs(10)).await;
    ping.sort();

    Figures {
        publish_per_s,
        consume_per_s,
        publish_p50: percentile(&publish, 0.5),
        ping_p50: percentile(&ping, 0.5),
        ping_p99: percentile(&ping, 0.99),
    }
}

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn report(name: &str, f: &Figures) {
    println!(
        "{name:<9} {:>12.0} {:>12.0} {:>14.0?} {:>12.0?} {:>12.0?}",
        f.publish_per_s, f.consume_per_s, f.publish_p50, f.ping_p50, f.ping_p99
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // `cargo bench` passes `--bench`; ignore anything we do not know.
    let messages = arg("--messages", 20_000);
    let rounds = arg("--rounds", 2_000);
    let prefix = format!("bench-{}", std::process::id());
    println!("{messages} messages for throughput, {rounds} rounds for latency");
    println!(
        "{:<9} {:>12} {:>12} {:>14} {:>12} {:>12}",
        "transport", "publish/s", "consume/s", "publish p50", "ping p50", "ping p99"
    );

    let memory = MemoryTransport::new(TransportConfig::with_prefix(&prefix));
    report("memory", &bench(Arc::new(memory), messages, rounds).await);

    let rabbit = RabbitMqTransport::connect(RABBITMQ_URL, TransportConfig::with_prefix(&prefix))
        .await
        .unwrap_or_else(|e| panic!("{e}; start RabbitMQ with `rabbitmq-server -detached`"));
    let figures = bench(Arc::new(rabbit.clone()), messages, rounds).await;
    rabbit.delete_topology().await.expect("cleanup");
    report("rabbitmq", &figures);

    let nats = NatsTransport::connect(NATS_URL, TransportConfig::with_prefix(&prefix))
        .await
        .unwrap_or_else(|e| panic!("{e}; start NATS with `start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log`"));
    let figures = bench(Arc::new(nats.clone()), messages, rounds).await;
    nats.delete_topology().await.expect("cleanup");
    report("nats", &figures);
}
