//! Baseline for `benches/transport.rs`: the same ping-pong (publish with confirm, consume,
//! ack, publish next) and publish-ack latency with lapin and async-nats used directly, so the
//! transports' overhead can be told apart from the machine's load.
//!
//! The lapin ping-pong runs in four shapes, to split the round into its parts: the plain
//! pattern (default exchange), the transport's topology (topic exchange, trace id header),
//! transient messages (no disk sync before the confirm) and a confirm with no consumer on
//! the queue (the broker's persistence alone).
//!
//! Run: `cargo run --release -p saga-runtime --features rabbitmq,nats --example native_baseline`
use futures_util::StreamExt;
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use std::time::{Duration, Instant};

const ROUNDS: usize = 2000;

/// One shape of the lapin ping-pong.
#[derive(Clone, Copy)]
struct Shape {
    /// Publish through a topic exchange with a trace id header, as `RabbitMqTransport` does.
    topology: bool,
    /// Delivery mode 2 (the broker syncs to disk before it confirms).
    persistent: bool,
    /// Consume and ack (otherwise only the publish confirm is timed).
    consume: bool,
}

/// Ping-pong rounds of `shape` on a fresh durable queue; sorted round times.
async fn lapin_rounds(conn: &Connection, publisher: &Channel, shape: Shape) -> Vec<Duration> {
    let ch = conn.create_channel().await.unwrap();
    let name = format!("native-baseline-{}", std::process::id());
    let q = name.as_str();
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    ch.queue_declare(q.into(), durable, FieldTable::default())
        .await
        .unwrap();
    let (exchange, key, mut headers) = (String::new(), name.clone(), FieldTable::default());
    let (exchange, key) = if shape.topology {
        let options = ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        };
        ch.exchange_declare(
            q.into(),
            ExchangeKind::Topic,
            options,
            FieldTable::default(),
        )
        .await
        .unwrap();
        ch.queue_bind(
            q.into(),
            q.into(),
            "ping".into(),
            Default::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
        headers.insert(
            "x-request-id".into(),
            AMQPValue::LongString(LongString::from("bench-trace")),
        );
        (name.clone(), "ping".to_owned())
    } else {
        (exchange, key)
    };
    let properties = BasicProperties::default()
        .with_delivery_mode(if shape.persistent { 2 } else { 1 })
        .with_headers(headers);
    ch.basic_qos(1, BasicQosOptions::default()).await.unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let consuming = if shape.consume {
        let mut consumer = ch
            .basic_consume(
                q.into(),
                "".into(),
                Default::default(),
                FieldTable::default(),
            )
            .await
            .unwrap();
        Some(tokio::spawn(async move {
            while let Some(Ok(delivery)) = consumer.next().await {
                let _ = tx.send(());
                delivery
                    .acker
                    .ack(BasicAckOptions::default())
                    .await
                    .unwrap();
            }
        }))
    } else {
        None
    };
    let mut lat = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        let t = Instant::now();
        publisher
            .basic_publish(
                exchange.as_str().into(),
                key.as_str().into(),
                BasicPublishOptions::default(),
                br#"{"saga":"booking","state":{"step":1,"order_id":"o-1"}}"#,
                properties.clone(),
            )
            .await
            .unwrap()
            .await
            .unwrap();
        if consuming.is_some() {
            rx.recv().await.unwrap();
        }
        lat.push(t.elapsed());
    }
    if let Some(consuming) = consuming {
        consuming.abort();
    }
    ch.queue_delete(q.into(), QueueDeleteOptions::default())
        .await
        .unwrap();
    if shape.topology {
        ch.exchange_delete(q.into(), Default::default())
            .await
            .unwrap();
    }
    lat.sort();
    lat
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let conn = Connection::connect(
        "amqp://guest:guest@127.0.0.1:5672/%2f",
        ConnectionProperties::default(),
    )
    .await
    .unwrap();
    let pubch = conn.create_channel().await.unwrap();
    pubch
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let plain = Shape {
        topology: false,
        persistent: true,
        consume: true,
    };
    let shapes = [
        ("native lapin ping", plain),
        (
            "native lapin ping, transport topology",
            Shape {
                topology: true,
                ..plain
            },
        ),
        (
            "native lapin ping, transient",
            Shape {
                persistent: false,
                ..plain
            },
        ),
        (
            "native lapin confirm only, persistent",
            Shape {
                consume: false,
                ..plain
            },
        ),
    ];
    for (label, shape) in shapes {
        let lat = lapin_rounds(&conn, &pubch, shape).await;
        println!(
            "{label} p50 {:?} p99 {:?}",
            lat[ROUNDS / 2],
            lat[ROUNDS * 99 / 100]
        );
    }
    let name = format!("native-baseline-{}", std::process::id());

    let client = async_nats::connect("127.0.0.1:4222").await.unwrap();
    let js = async_nats::jetstream::new(client);
    let stream = js
        .get_or_create_stream(async_nats::jetstream::stream::Config {
            name: name.as_str().into(),
            subjects: vec![format!("{name}.>")],
            retention: async_nats::jetstream::stream::RetentionPolicy::Interest,
            ..Default::default()
        })
        .await
        .unwrap();
    let c = stream
        .get_or_create_consumer(
            "c",
            async_nats::jetstream::consumer::pull::Config {
                durable_name: Some("c".into()),
                max_ack_pending: 1,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let mut msgs = c
        .stream()
        .max_messages_per_batch(1)
        .messages()
        .await
        .unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let consuming = tokio::spawn(async move {
        while let Some(Ok(message)) = msgs.next().await {
            let _ = tx.send(());
            message.ack().await.unwrap();
        }
    });
    let mut lat: Vec<Duration> = Vec::new();
    let mut publat: Vec<Duration> = Vec::new();
    for _ in 0..2000 {
        let t = Instant::now();
        js.publish(format!("{name}.x"), "{\"saga\":\"booking\"}".into())
            .await
            .unwrap()
            .await
            .unwrap();
        publat.push(t.elapsed());
        rx.recv().await.unwrap();
        lat.push(t.elapsed());
    }
    consuming.abort();
    lat.sort();
    publat.sort();
    println!(
        "native nats publish p50 {:?}; ping p50 {:?} p99 {:?}",
        publat[1000], lat[1000], lat[1980]
    );
    // Confirmed publishes, 512 in flight, like the transport bench.
    let started = Instant::now();
    let published = futures_util::stream::iter(0..20_000)
        .map(|_| {
            let js = js.clone();
            let subject = format!("{name}.x");
            async move {
                js.publish(subject, "{\"saga\":\"booking\"}".into())
                    .await?
                    .await
                    .map(drop)
                    .map_err(async_nats::Error::from)
            }
        })
        .buffer_unordered(512)
        .filter(|r: &Result<(), async_nats::Error>| std::future::ready(r.is_ok()))
        .count()
        .await;
    println!(
        "native nats confirmed publishes/s {:.0}",
        published as f64 / started.elapsed().as_secs_f64()
    );
    js.delete_stream(&name).await.unwrap();
}
