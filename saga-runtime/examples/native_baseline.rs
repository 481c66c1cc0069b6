//! Baseline for `benches/transport.rs`: the same ping-pong (publish with confirm, consume,
//! ack, publish next) and publish-ack latency with lapin and async-nats used directly, so the
//! transports' overhead can be told apart from the machine's load.
//!
//! Run: `cargo run --release -p saga-runtime --features rabbitmq,nats --example native_baseline`
use futures_util::StreamExt;
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use std::time::{Duration, Instant};

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
    let ch = conn.create_channel().await.unwrap();
    let name = format!("native-baseline-{}", std::process::id());
    let q = name.as_str();
    ch.queue_declare(
        q.into(),
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();
    ch.basic_qos(1, BasicQosOptions::default()).await.unwrap();
    let mut consumer = ch
        .basic_consume(
            q.into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let consuming = tokio::spawn(async move {
        while let Some(Ok(delivery)) = consumer.next().await {
            let _ = tx.send(());
            delivery
                .acker
                .ack(BasicAckOptions::default())
                .await
                .unwrap();
        }
    });
    let mut lat: Vec<Duration> = Vec::new();
    for _ in 0..2000 {
        let t = Instant::now();
        pubch
            .basic_publish(
                "".into(),
                q.into(),
                BasicPublishOptions::default(),
                b"{\"saga\":\"booking\"}",
                BasicProperties::default().with_delivery_mode(2),
            )
            .await
            .unwrap()
            .await
            .unwrap();
        rx.recv().await.unwrap();
        lat.push(t.elapsed());
    }
    consuming.abort();
    lat.sort();
    println!("native lapin ping p50 {:?} p99 {:?}", lat[1000], lat[1980]);
    ch.queue_delete(q.into(), QueueDeleteOptions::default())
        .await
        .unwrap();

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
