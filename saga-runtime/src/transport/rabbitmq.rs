//! [`RabbitMqTransport`]: RabbitMQ through lapin.
//!
//! # Topology
//! - one durable topic exchange named after the prefix (`{topic_prefix}`);
//! - one durable queue per (topic, group), `{topic_prefix}.{topic}.{group}`, bound with the
//!   logical topic as routing key; a group receives what is published from its first
//!   subscription on (before that, nothing is bound and RabbitMQ drops the message);
//! - subscribing also declares the group's queue on [`dead_letter_topic`]`(topic)`, so dead
//!   letters are kept until someone reads them (subscribe to the dead-letter topic with the
//!   same group);
//! - delayed nacks go through a retry queue per (queue, delay),
//!   `{queue}.retry.{delay_ms}`, whose message TTL dead-letters the message back into the
//!   queue (through the default exchange); it expires one minute after its last use.
//!
//! # Delivery
//! Messages are persistent (delivery mode 2); every publish waits for its publisher confirm
//! (publishes from many tasks are pipelined on one confirm channel). Consumers use manual
//! acks and `basic_qos(prefetch = concurrency)`, a per-consumer limit. A nack and a dead
//! letter are published (and confirmed) first and acked after, so a crash in between
//! duplicates the message but never loses it: a nack without delay republishes the message
//! straight to its queue, a delayed one to the retry queue. Should that publish fail, the
//! delivery is held for a backoff (1 s doubling to 30 s) and then `basic.nack(requeue)`ed,
//! never requeued at once in a hot loop.
//!
//! # Delivery count
//! Classic queues do not count deliveries. The republished copy of a nacked message carries
//! the count of nacks in the `x-sagaflow-attempts` header (RabbitMQ's own `x-death`
//! bookkeeping of the retry queues is stripped, from handlers' headers and from copies);
//! [`Delivery::delivery_count`] is `1 + attempts + redelivered` (the broker's flag on a
//! message requeued after its channel closed). Exact through nacks; a lower bound once a
//! message was redelivered after channel losses (the flag does not say how many).
//!
//! # Reconnection
//! When the connection drops, the next publish reconnects (exponential backoff, bounded) and
//! each subscription reconnects with backoff until it is stopped, declares its topology again
//! and resumes consuming. Unacked deliveries of the lost connection are redelivered by the
//! broker. The connection carries the configured name, shown in the management UI.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{
    BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, Consumer,
    ExchangeKind,
};

use super::config::{check_size, message_size, redact};
use super::dispatch::{self, Pending, Source};
use super::{
    DEAD_LETTER_REASON_HEADER, Delivery, Disposition, Handler, Headers, MESSAGE_ID_HEADER, Message,
    SubscribeOptions, Subscription, Transport, TransportConfig, TransportError, dead_letter_topic,
};

const BROKER: &str = "RabbitMQ";
/// Header counting the delayed redeliveries of a message (RabbitMQ classic queues do not
/// count deliveries themselves).
const ATTEMPTS_HEADER: &str = "x-sagaflow-attempts";

/// A RabbitMQ transport: one connection, one publisher-confirm channel, one channel per
/// subscription. Cheap to clone (shared connection).
#[derive(Clone)]
pub struct RabbitMqTransport {
    inner: Arc<Inner>,
}

impl fmt::Debug for RabbitMqTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RabbitMqTransport")
            .field("address", &self.inner.address)
            .field("topic_prefix", &self.inner.config.topic_prefix)
            .finish_non_exhaustive()
    }
}

struct Inner {
    config: TransportConfig,
    url: String,
    /// The URL without credentials, for errors and logs.
    address: String,
    /// The current connection, read (not awaited) by every publish.
    live: Mutex<Option<Arc<Live>>>,
    /// Held while reconnecting, so one task reconnects and the others wait for its result.
    reconnecting: tokio::sync::Mutex<()>,
    /// Every queue this transport declared, for [`RabbitMqTransport::delete_topology`].
    declared: Mutex<BTreeSet<String>>,
}

struct Live {
    connection: Arc<Connection>,
    publisher: Channel,
}

impl Live {
    fn usable(&self) -> bool {
        self.connection.status().connected() && self.publisher.status().connected()
    }
}

fn reconnect_backoff() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_secs(5))
        .with_jitter()
}

impl RabbitMqTransport {
    /// Connects to `url` (`amqp://user:pass@host:5672/vhost`), opens the publisher channel in
    /// confirm mode and declares the prefix's exchange. Fails with
    /// [`TransportError::Connect`] (naming the address, without the password) when the URL is
    /// bad or the broker does not answer within
    /// [`connect_timeout_ms`](TransportConfig::connect_timeout_ms).
    pub async fn connect(url: &str, config: TransportConfig) -> Result<Self, TransportError> {
        let inner = Arc::new(Inner {
            address: redact(url),
            url: url.to_owned(),
            config,
            live: Mutex::new(None),
            reconnecting: tokio::sync::Mutex::new(()),
            declared: Mutex::new(BTreeSet::new()),
        });
        let live = inner.open().await?;
        inner.set_live(live);
        Ok(Self { inner })
    }

    /// The configuration it was built with.
    pub fn config(&self) -> &TransportConfig {
        &self.inner.config
    }

    /// Deletes every queue this transport declared (topic, dead-letter and retry queues,
    /// with their messages) and the prefix's exchange. For tests and teardown: stop the
    /// subscriptions first, since a running one declares its queues again when it notices.
    pub async fn delete_topology(&self) -> Result<(), TransportError> {
        let live = self.inner.live().await?;
        let channel = live
            .connection
            .create_channel()
            .await
            .map_err(|e| self.inner.connect_error(e))?;
        let queues: Vec<String> = {
            let declared = self
                .inner
                .declared
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            declared.iter().cloned().collect()
        };
        for queue in queues {
            channel
                .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
                .await
                .map_err(|e| self.inner.connect_error(e))?;
        }
        channel
            .exchange_delete(
                self.inner.config.topic_prefix.as_str().into(),
                Default::default(),
            )
            .await
            .map_err(|e| self.inner.connect_error(e))?;
        let _ = channel.close(200, "done".into()).await;
        Ok(())
    }
}

impl Inner {
    fn connect_error(&self, reason: impl fmt::Display) -> TransportError {
        TransportError::Connect {
            broker: BROKER,
            address: self.address.clone(),
            reason: reason.to_string(),
        }
    }

    /// One connection attempt, bounded by the connect timeout.
    async fn open(&self) -> Result<Live, TransportError> {
        let timeout = self.config.connect_timeout();
        let attempt = async {
            let properties = ConnectionProperties::default()
                .with_connection_name(self.config.connection_name.as_str().into());
            let connection = Connection::connect(&self.url, properties).await?;
            let publisher = connection.create_channel().await?;
            publisher
                .confirm_select(ConfirmSelectOptions::default())
                .await?;
            publisher
                .exchange_declare(
                    self.config.topic_prefix.as_str().into(),
                    ExchangeKind::Topic,
                    ExchangeDeclareOptions {
                        durable: true,
                        ..Default::default()
                    },
                    FieldTable::default(),
                )
                .await?;
            Ok::<_, lapin::Error>(Live {
                connection: Arc::new(connection),
                publisher,
            })
        };
        match tokio::time::timeout(timeout, attempt).await {
            Ok(Ok(live)) => Ok(live),
            Ok(Err(e)) => Err(self.connect_error(e)),
            Err(_) => Err(self.connect_error(format!(
                "no answer within {timeout:?}; is the broker running?"
            ))),
        }
    }

    /// The current connection if it is still usable. A plain lock held for a clone, so the
    /// publish path never queues behind an async mutex.
    fn current(&self) -> Option<Arc<Live>> {
        let live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        live.as_ref().filter(|live| live.usable()).cloned()
    }

    fn set_live(&self, live: Live) -> Arc<Live> {
        let live = Arc::new(live);
        *self.live.lock().unwrap_or_else(|e| e.into_inner()) = Some(live.clone());
        live
    }

    /// The current connection, reconnecting (bounded backoff) if it dropped. One task
    /// reconnects at a time; the others wait and take its connection.
    async fn live(&self) -> Result<Arc<Live>, TransportError> {
        if let Some(live) = self.current() {
            return Ok(live);
        }
        let _reconnecting = self.reconnecting.lock().await;
        if let Some(live) = self.current() {
            return Ok(live);
        }
        let live = (|| self.open())
            .retry(reconnect_backoff().with_max_times(5))
            .notify(|error, after| {
                tracing::warn!(%error, ?after, "RabbitMQ connection lost; reconnecting");
            })
            .await?;
        Ok(self.set_live(live))
    }

    /// The queue of (topic, group): `{prefix}.{topic}.{group}`.
    fn queue_name(&self, topic: &str, group: &str) -> String {
        format!("{}.{topic}.{group}", self.config.topic_prefix)
    }

    fn remember(&self, queue: &str) {
        let mut declared = self.declared.lock().unwrap_or_else(|e| e.into_inner());
        if !declared.contains(queue) {
            declared.insert(queue.to_owned());
        }
    }

    /// Publishes with persistence and waits for the confirm; retries once on a new connection
    /// when the channel was lost (at-least-once: the retry may duplicate).
    async fn publish_raw(
        &self,
        exchange: &str,
        routing_key: &str,
        properties: BasicProperties,
        payload: &[u8],
        mandatory: bool,
    ) -> Result<(), String> {
        let mut last_error = String::new();
        for _ in 0..2 {
            let live = self.live().await.map_err(|e| e.to_string())?;
            let confirm = live
                .publisher
                .basic_publish(
                    exchange.into(),
                    routing_key.into(),
                    BasicPublishOptions {
                        mandatory,
                        ..Default::default()
                    },
                    payload,
                    properties.clone(),
                )
                .await;
            let confirmation = match confirm {
                Ok(confirm) => confirm.await,
                Err(e) => Err(e),
            };
            match confirmation {
                Ok(Confirmation::Ack(None)) => return Ok(()),
                Ok(Confirmation::Ack(Some(_))) => {
                    return Err(format!("unroutable: no queue bound for `{routing_key}`"));
                }
                Ok(Confirmation::Nack(_)) => return Err("the broker nacked the message".into()),
                Ok(Confirmation::NotRequested) => {
                    return Err("publisher confirms are not enabled".into());
                }
                Err(e) => last_error = e.to_string(),
            }
        }
        Err(last_error)
    }

    /// Declares the group's queue (and its dead-letter queue) and starts a consumer on a new
    /// channel.
    async fn attach(
        &self,
        topic: &str,
        group: &str,
        concurrency: usize,
    ) -> Result<(Channel, Consumer), String> {
        let live = self.live().await.map_err(|e| e.to_string())?;
        self.declare_and_consume(&live, topic, group, concurrency)
            .await
            .map_err(|e| format!("{BROKER} at {}: {e}", self.address))
    }

    async fn declare_and_consume(
        &self,
        live: &Live,
        topic: &str,
        group: &str,
        concurrency: usize,
    ) -> Result<(Channel, Consumer), lapin::Error> {
        let channel = live.connection.create_channel().await?;
        let exchange: ShortString = self.config.topic_prefix.as_str().into();
        let dead_topic = dead_letter_topic(topic);
        let queue = self.queue_name(topic, group);
        let dead_queue = self.queue_name(&dead_topic, group);
        for (queue, key) in [(dead_queue.as_str(), dead_topic.as_str()), (&queue, topic)] {
            channel
                .queue_declare(
                    queue.into(),
                    QueueDeclareOptions {
                        durable: true,
                        ..Default::default()
                    },
                    FieldTable::default(),
                )
                .await?;
            channel
                .queue_bind(
                    queue.into(),
                    exchange.clone(),
                    key.into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await?;
            self.remember(queue);
        }
        channel
            .basic_qos(
                u16::try_from(concurrency).unwrap_or(u16::MAX),
                BasicQosOptions::default(),
            )
            .await?;
        let consumer = channel
            .basic_consume(
                queue.as_str().into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        Ok((channel, consumer))
    }
}

fn to_field_table(headers: &Headers) -> FieldTable {
    let mut table = FieldTable::default();
    for (key, value) in headers {
        table.insert(
            key.as_str().into(),
            AMQPValue::LongString(LongString::from(value.as_str())),
        );
    }
    table
}

fn header_string(value: &AMQPValue) -> Option<String> {
    match value {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        AMQPValue::LongUInt(n) => Some(n.to_string()),
        AMQPValue::LongInt(n) => Some(n.to_string()),
        AMQPValue::LongLongInt(n) => Some(n.to_string()),
        AMQPValue::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Headers RabbitMQ adds when it dead-letters a message (here: through a retry queue);
/// bookkeeping of the broker, neither handed to handlers nor copied into republished messages.
fn is_broker_header(key: &str) -> bool {
    key == "x-death" || key.starts_with("x-first-death-") || key.starts_with("x-last-death-")
}

/// Headers of a delivery, without the transport's and the broker's bookkeeping, and its
/// attempt count (the nacks before this delivery).
fn from_properties(properties: &BasicProperties) -> (Headers, u32) {
    let mut headers = Headers::new();
    let mut attempts = 0;
    if let Some(table) = properties.headers() {
        for (key, value) in table.inner() {
            if is_broker_header(key.as_str()) {
                continue;
            }
            let Some(value) = header_string(value) else {
                continue;
            };
            if key.as_str() == ATTEMPTS_HEADER {
                attempts = value.parse().unwrap_or(0);
            } else {
                headers.insert(key.as_str().to_owned(), value);
            }
        }
    }
    (headers, attempts)
}

fn persistent(headers: FieldTable) -> BasicProperties {
    BasicProperties::default()
        .with_delivery_mode(2)
        .with_headers(headers)
}

impl Transport for RabbitMqTransport {
    fn config(&self) -> &TransportConfig {
        RabbitMqTransport::config(self)
    }

    fn publish<'a>(
        &'a self,
        topic: &'a str,
        message: Message,
    ) -> BoxFuture<'a, Result<(), TransportError>> {
        Box::pin(async move {
            check_size(topic, message_size(&message), self.inner.config.max_payload)?;
            let mut properties = persistent(to_field_table(&message.headers));
            if let Some(id) = message.headers.get(MESSAGE_ID_HEADER) {
                properties = properties.with_message_id(id.as_str().into());
            }
            self.inner
                .publish_raw(
                    &self.inner.config.topic_prefix,
                    topic,
                    properties,
                    &message.payload,
                    false,
                )
                .await
                .map_err(|reason| TransportError::Publish {
                    topic: topic.to_owned(),
                    reason,
                })
        })
    }

    fn subscribe<'a>(
        &'a self,
        topic: &'a str,
        options: SubscribeOptions,
        handler: Arc<dyn Handler>,
    ) -> BoxFuture<'a, Result<Subscription, TransportError>> {
        Box::pin(async move {
            let queue = self.inner.queue_name(topic, &options.group);
            let concurrency = options.concurrency.max(1);
            let (channel, consumer) = self
                .inner
                .attach(topic, &options.group, concurrency)
                .await
                .map_err(|reason| TransportError::Subscribe {
                    topic: topic.to_owned(),
                    reason,
                })?;
            let source = RabbitSource {
                inner: self.inner.clone(),
                topic: Arc::from(topic),
                queue: Arc::from(queue.as_str()),
                group: Arc::from(options.group.as_str()),
                concurrency,
                channel: Some(channel),
                consumer: Some(consumer),
            };
            Ok(dispatch::spawn(source, handler, concurrency, topic))
        })
    }
}

struct RabbitSource {
    inner: Arc<Inner>,
    topic: Arc<str>,
    queue: Arc<str>,
    group: Arc<str>,
    concurrency: usize,
    channel: Option<Channel>,
    consumer: Option<Consumer>,
}

impl RabbitSource {
    fn accept(&self, delivery: lapin::message::Delivery) -> (Delivery, RabbitPending) {
        let (headers, attempts) = from_properties(&delivery.properties);
        let payload = Bytes::from(delivery.data);
        let out = Delivery {
            topic: self.topic.to_string(),
            headers,
            payload: payload.clone(),
            delivery_count: 1 + attempts + u32::from(delivery.redelivered),
        };
        let pending = RabbitPending {
            inner: self.inner.clone(),
            topic: self.topic.clone(),
            queue: self.queue.clone(),
            acker: delivery.acker,
            properties: delivery.properties,
            payload,
            attempts,
        };
        (out, pending)
    }
}

impl Source for RabbitSource {
    type Pending = RabbitPending;

    async fn next(&mut self) -> Option<(Delivery, RabbitPending)> {
        loop {
            if let Some(consumer) = self.consumer.as_mut() {
                match consumer.next().await {
                    Some(Ok(delivery)) => return Some(self.accept(delivery)),
                    Some(Err(error)) => {
                        tracing::warn!(topic = %self.topic, %error, "RabbitMQ consumer failed; resubscribing");
                    }
                    None => {
                        tracing::warn!(topic = %self.topic, "RabbitMQ consumer ended; resubscribing");
                    }
                }
                self.consumer = None;
                self.channel = None;
            }
            let inner = self.inner.clone();
            let (topic, group, concurrency) =
                (self.topic.clone(), self.group.clone(), self.concurrency);
            let attached = (|| inner.attach(&topic, &group, concurrency))
                .retry(reconnect_backoff().without_max_times())
                .notify(|error, after| {
                    tracing::warn!(%topic, %error, ?after, "RabbitMQ resubscribe failed; retrying");
                })
                .await;
            if let Ok((channel, consumer)) = attached {
                self.channel = Some(channel);
                self.consumer = Some(consumer);
            }
        }
    }

    async fn close(mut self) {
        // Closing the channel requeues what was prefetched but not handed to the handler.
        self.consumer = None;
        if let Some(channel) = self.channel.take() {
            let _ = channel.close(200, "subscription shut down".into()).await;
        }
    }
}

/// An unsettled RabbitMQ delivery. Dropped unsettled, it stays unacked until its channel
/// closes (the subscription stops or crashes), then the broker redelivers it.
struct RabbitPending {
    inner: Arc<Inner>,
    topic: Arc<str>,
    queue: Arc<str>,
    acker: lapin::Acker,
    properties: BasicProperties,
    payload: Bytes,
    attempts: u32,
}

impl RabbitPending {
    /// `basic.nack(requeue)`: the broker redelivers it with the `redelivered` flag.
    async fn requeue(&self) {
        let requeue = BasicNackOptions {
            requeue: true,
            ..Default::default()
        };
        if let Err(error) = self.acker.nack(requeue).await {
            tracing::warn!(topic = %self.topic, %error, "RabbitMQ nack failed; the broker redelivers once the channel closes");
        }
    }

    /// The original headers without the broker's dead-lettering bookkeeping, for a copy.
    fn copied_headers(&self) -> FieldTable {
        let mut headers = FieldTable::default();
        if let Some(table) = self.properties.headers() {
            for (key, value) in table.inner() {
                if !is_broker_header(key.as_str()) {
                    headers.insert(key.clone(), value.clone());
                }
            }
        }
        headers
    }

    /// A copy for redelivery: the headers with the attempt count one higher.
    fn retry_properties(&self) -> BasicProperties {
        let mut headers = self.copied_headers();
        headers.insert(
            ATTEMPTS_HEADER.into(),
            AMQPValue::LongUInt(self.attempts.saturating_add(1)),
        );
        let properties = persistent(headers);
        match self.properties.message_id() {
            Some(id) => properties.with_message_id(id.clone()),
            None => properties,
        }
    }

    /// Publishes the counted copy straight back to the queue (default exchange): a nack
    /// without delay that still counts the delivery.
    async fn publish_again(&self) -> Result<(), String> {
        self.inner
            .publish_raw(
                "",
                &self.queue,
                self.retry_properties(),
                &self.payload,
                true,
            )
            .await
    }

    /// Publishes the counted copy to the retry queue of `delay` (dead-lettering back here).
    async fn publish_delayed(&self, delay: Duration) -> Result<(), String> {
        let millis = u32::try_from(delay.as_millis()).unwrap_or(u32::MAX).max(1);
        let retry_queue = format!("{}.retry.{millis}", self.queue);
        let live = self.inner.live().await.map_err(|e| e.to_string())?;
        let mut arguments = FieldTable::default();
        arguments.insert("x-message-ttl".into(), AMQPValue::LongUInt(millis));
        arguments.insert(
            "x-dead-letter-exchange".into(),
            AMQPValue::LongString("".into()),
        );
        arguments.insert(
            "x-dead-letter-routing-key".into(),
            AMQPValue::LongString(LongString::from(&*self.queue)),
        );
        arguments.insert(
            "x-expires".into(),
            AMQPValue::LongUInt(millis.saturating_add(60_000)),
        );
        live.publisher
            .queue_declare(
                retry_queue.as_str().into(),
                QueueDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                arguments,
            )
            .await
            .map_err(|e| e.to_string())?;
        self.inner.remember(&retry_queue);
        self.inner
            .publish_raw(
                "",
                &retry_queue,
                self.retry_properties(),
                &self.payload,
                true,
            )
            .await
    }

    async fn publish_dead_letter(&self, reason: String) -> Result<(), String> {
        let mut headers = self.copied_headers();
        headers.insert(
            DEAD_LETTER_REASON_HEADER.into(),
            AMQPValue::LongString(reason.into()),
        );
        self.inner
            .publish_raw(
                &self.inner.config.topic_prefix,
                &dead_letter_topic(&self.topic),
                persistent(headers),
                &self.payload,
                true,
            )
            .await
    }
}

/// How long a delivery whose republish (retry or dead-letter queue) failed is held before it
/// is requeued: the broker would hand it back at once, and the republish would likely fail
/// again, in a hot loop. Grows with the delivery's attempts: 1 s, 2 s, 4 s, ... up to 30 s.
fn republish_backoff(attempts: u32) -> Duration {
    Duration::from_secs(1u64 << attempts.min(5)).min(Duration::from_secs(30))
}

impl Pending for RabbitPending {
    async fn settle(self, disposition: Disposition) {
        let republished = match disposition {
            Disposition::Ack => Ok(()),
            Disposition::Nack { delay: None } => self.publish_again().await,
            Disposition::Nack { delay: Some(delay) } => self.publish_delayed(delay).await,
            Disposition::DeadLetter { reason } => self.publish_dead_letter(reason).await,
        };
        match republished {
            Ok(()) => {
                if let Err(error) = self.acker.ack(BasicAckOptions::default()).await {
                    tracing::warn!(topic = %self.topic, %error, "RabbitMQ ack failed; the message will be redelivered");
                }
            }
            Err(error) => {
                let wait = republish_backoff(self.attempts);
                tracing::warn!(topic = %self.topic, %error, ?wait, "RabbitMQ republish failed; message requeued after a pause");
                tokio::time::sleep(wait).await;
                self.requeue().await;
            }
        }
    }
}
