//! Consuming: one channel per subscription on the consumer connection, resubscribing when
//! it drops; settling deliveries (ack, counted republish for nacks, dead letters) with a
//! backoff when a republish fails.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Consumer};

use super::connection::reconnect_backoff;
use super::publish::persistent;
use super::{BROKER, Inner};
use crate::transport::dispatch::{Pending, Source};
use crate::transport::{
    DEAD_LETTER_REASON_HEADER, Delivery, Disposition, Headers, Reason, dead_letter_topic,
};
use backon::Retryable;

/// Header counting the nacks of a message, carried by its republished copies (RabbitMQ
/// classic queues do not count deliveries themselves).
const ATTEMPTS_HEADER: &str = "x-sagaflow-attempts";

/// Headers RabbitMQ adds when it dead-letters a message (here: through a retry queue);
/// bookkeeping of the broker, neither handed to handlers nor copied into republished messages.
fn is_broker_header(key: &str) -> bool {
    key == "x-death" || key.starts_with("x-first-death-") || key.starts_with("x-last-death-")
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

/// How long a delivery whose republish (nack copy, retry or dead-letter queue) failed is held
/// before it is requeued: the broker would hand it back at once, and the republish would
/// likely fail again, in a hot loop. Grows with the delivery's attempts: 1 s, 2 s, 4 s, ...
/// up to 30 s. The held delivery keeps its concurrency slot, which slows the subscriber down
/// while the broker is in trouble.
pub(super) fn republish_backoff(attempts: u32) -> Duration {
    Duration::from_secs(1u64 << attempts.min(5)).min(Duration::from_secs(30))
}

impl Inner {
    /// Declares the group's queues and starts a consumer on a new channel of the consumer
    /// connection, with `prefetch = concurrency`.
    pub(super) async fn attach(
        self: &Arc<Self>,
        topic: &str,
        group: &str,
        concurrency: usize,
    ) -> Result<(Channel, Consumer), Reason> {
        let consumers = self
            .consumers()
            .await
            .map_err(|e| Reason::caused_by("no consumer connection", e))?;
        let attached = async {
            let channel = consumers.connection.create_channel().await?;
            let queue = self
                .declared
                .declare_group(&channel, &self.config, topic, group)
                .await?;
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
            Ok::<_, lapin::Error>((channel, consumer))
        };
        attached
            .await
            .map_err(|e| Reason::caused_by(format!("{BROKER} at {}", self.address), e))
    }
}

/// The deliveries of one subscription.
pub(super) struct RabbitSource {
    pub(super) inner: Arc<Inner>,
    pub(super) topic: Arc<str>,
    pub(super) queue: Arc<str>,
    pub(super) group: Arc<str>,
    pub(super) concurrency: usize,
    pub(super) channel: Option<Channel>,
    pub(super) consumer: Option<Consumer>,
}

impl RabbitSource {
    fn accept(&self, delivery: lapin::message::Delivery) -> Option<(Delivery, RabbitPending)> {
        let channel = self.channel.clone()?;
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
            channel,
            acker: delivery.acker,
            properties: delivery.properties,
            payload,
            attempts,
        };
        Some((out, pending))
    }
}

impl Source for RabbitSource {
    type Pending = RabbitPending;

    async fn next(&mut self) -> Option<(Delivery, RabbitPending)> {
        loop {
            if let Some(consumer) = self.consumer.as_mut() {
                match consumer.next().await {
                    Some(Ok(delivery)) => {
                        if let Some(accepted) = self.accept(delivery) {
                            return Some(accepted);
                        }
                    }
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
pub(super) struct RabbitPending {
    inner: Arc<Inner>,
    topic: Arc<str>,
    queue: Arc<str>,
    /// The subscription's channel (consumer connection), for retry-queue declarations.
    channel: Channel,
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
    async fn publish_again(&self) -> Result<(), Reason> {
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
    async fn publish_delayed(&self, delay: Duration) -> Result<(), Reason> {
        let millis = u32::try_from(delay.as_millis()).unwrap_or(u32::MAX).max(1);
        let retry_queue = self
            .inner
            .declared
            .declare_retry_queue(&self.channel, &self.queue, millis)
            .await
            .map_err(|e| format!("cannot declare the retry queue: {e}"))?;
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

    async fn publish_dead_letter(&self, reason: String) -> Result<(), Reason> {
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
                tracing::warn!(topic = %self.topic, %error, ?wait, "RabbitMQ republish failed; the message is requeued after a pause");
                tokio::time::sleep(wait).await;
                self.requeue().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn republish_backoff_grows_and_is_capped() {
        assert_eq!(republish_backoff(0), Duration::from_secs(1));
        assert_eq!(republish_backoff(1), Duration::from_secs(2));
        assert_eq!(republish_backoff(4), Duration::from_secs(16));
        assert_eq!(republish_backoff(5), Duration::from_secs(30));
        assert_eq!(republish_backoff(u32::MAX), Duration::from_secs(30));
    }

    #[test]
    fn broker_headers_and_attempts_are_not_handed_over() {
        let mut table = FieldTable::default();
        table.insert("x-request-id".into(), AMQPValue::LongString("t".into()));
        table.insert(ATTEMPTS_HEADER.into(), AMQPValue::LongUInt(3));
        table.insert(
            "x-first-death-queue".into(),
            AMQPValue::LongString("q.retry.100".into()),
        );
        table.insert("x-death".into(), AMQPValue::FieldArray(Default::default()));
        let (headers, attempts) = from_properties(&persistent(table));
        assert_eq!(attempts, 3);
        assert_eq!(headers.len(), 1, "{headers:?}");
        assert_eq!(headers["x-request-id"], "t");
    }
}
