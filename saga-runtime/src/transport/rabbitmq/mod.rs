//! [`RabbitMqTransport`]: RabbitMQ through lapin.
//!
//! # Topology
//! - one durable topic exchange named after the prefix (`{topic_prefix}`);
//! - one durable queue per (topic, group), `{topic_prefix}.{topic}.{group}`, bound with the
//!   logical topic as routing key; a group receives what is published from its first
//!   subscription on (before that, nothing is bound and RabbitMQ drops the message);
//! - subscribing also declares the group's queue on
//!   [`dead_letter_topic`](super::dead_letter_topic)`(topic)`, so dead
//!   letters are kept until someone reads them (subscribe to the dead-letter topic with the
//!   same group);
//! - delayed nacks go through a retry queue per (queue, delay),
//!   `{queue}.retry.{delay_ms}`, whose message TTL dead-letters the message back into the
//!   queue (through the default exchange); it expires one minute after its last use.
//!
//! # Connections
//! Two connections, named `{connection_name}-publisher` and `{connection_name}-consumer`
//! in the management UI. The publisher connection carries only publishes (one confirm-mode
//! channel, publishes from many tasks pipelined on it). The consumer connection carries one
//! channel per subscription, its acks and the topology declarations. When a memory or disk
//! alarm makes the broker block publishing connections, publishes wait (and fail after
//! [`TransportConfig::confirm_timeout`]) while consumers keep settling deliveries.
//!
//! # Delivery
//! Messages are persistent (delivery mode 2); every publish waits for its publisher confirm,
//! at most [`TransportConfig::confirm_timeout`] (then [`TransportError::Publish`] naming
//! the topic; the message may still have been taken). A
//! [`MESSAGE_ID_HEADER`](super::MESSAGE_ID_HEADER) is also set
//! as the AMQP `message_id` (RabbitMQ does not deduplicate). Consumers use manual acks and
//! `basic_qos(prefetch = concurrency)`, a per-consumer limit. A nack and a dead letter are
//! published (and confirmed) first and acked after, so a crash in between duplicates the
//! message but never loses it: a nack without delay republishes the message straight to its
//! queue, a delayed one to the retry queue. Should that publish fail, the delivery is held
//! for a backoff (1 s doubling to 30 s) and then `basic.nack(requeue)`ed, never requeued at
//! once in a hot loop.
//!
//! # Delivery count
//! Classic queues do not count deliveries. The republished copy of a nacked message carries
//! the count of nacks in the `x-sagaflow-attempts` header (RabbitMQ's own `x-death`
//! bookkeeping of the retry queues is stripped, from handlers' headers and from copies);
//! [`Delivery::delivery_count`](crate::transport::Delivery::delivery_count) is
//! `1 + attempts + redelivered` (the broker's flag on a message requeued after its channel
//! closed). Exact through nacks; a lower bound once a message was redelivered after channel
//! losses (the flag does not say how many).
//!
//! # Reconnection
//! Each connection is re-opened when it drops, by whoever needs it first: a publish (the
//! publisher connection), a subscription or a settlement (the consumer connection). One
//! reconnection runs at a time per connection (exponential backoff, 6 attempts each bounded
//! by the connect timeout); every caller that needs the connection meanwhile waits for that
//! one's outcome and, if it fails, gets its error at the same time, rather than queueing up
//! to run an attempt of its own. Subscriptions retry with backoff until stopped, declare
//! their topology again and resume consuming. Unacked deliveries of a lost connection are
//! redelivered by the broker.

mod connection;
mod consume;
mod publish;
mod topology;

use std::fmt;
use std::sync::Arc;

use futures_util::future::BoxFuture;

use self::connection::{Consumers, Endpoint, Link, Publisher, open_consumers, open_publisher};
use self::consume::RabbitSource;
use self::topology::Declared;
use super::config::{check_size, message_size};
use super::dispatch;
use super::{
    Handler, Message, Reason, SubscribeOptions, Subscription, Transport, TransportConfig,
    TransportError,
};
use crate::redact::{redact_url, secrets_of};
use crate::tls::{ClientTls, wants_tls};

const BROKER: &str = "RabbitMQ";

/// A RabbitMQ transport: a publisher connection with one confirm channel, a consumer
/// connection with one channel per subscription. Cheap to clone (shared connections).
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
    endpoint: Endpoint,
    /// The URL without credentials, for errors and logs.
    address: String,
    publisher: Arc<Link<Publisher>>,
    consumers: Arc<Link<Consumers>>,
    /// Every queue this transport declared, for [`RabbitMqTransport::delete_topology`].
    declared: Declared,
}

impl RabbitMqTransport {
    /// Connects to `url` (`amqp://user:pass@host:5672/vhost`, or `amqps://...:5671/...` over
    /// TLS): opens, at once, the publisher connection with its confirm channel (declaring the
    /// prefix's exchange) and the consumer connection. Fails with [`TransportError::Connect`]
    /// (naming the address, without the password) when the URL is bad, the broker does not
    /// answer within [`connect_timeout`](TransportConfig::connect_timeout), or, for
    /// `amqps://`, the TLS handshake fails (a plaintext port, a certificate that does not
    /// chain to the trusted CA): an `amqps://` URL never connects in plaintext. With
    /// [`TransportConfig::tls`] files set, the URL must be `amqps://`; the CA file is trusted
    /// besides the bundled Mozilla roots, and the client certificate is presented when the
    /// broker asks for one.
    pub async fn connect(url: &str, config: TransportConfig) -> Result<Self, TransportError> {
        let address = redact_url(url);
        let secrets = secrets_of(url);
        let connect_error = |reason: Reason| reason.scrubbed(&secrets).connect(BROKER, &address);
        let endpoint = endpoint(url, &config.tls).map_err(connect_error)?;
        let (publisher, consumers) = tokio::join!(
            open_publisher(&endpoint, &config),
            open_consumers(&endpoint, &config)
        );
        let (publisher, consumers) = match (publisher, consumers) {
            (Ok(publisher), Ok(consumers)) => (publisher, consumers),
            (publisher, consumers) => {
                // Close the one that opened, if any, and report the first failure.
                let reason = match (&publisher, &consumers) {
                    (Err(reason), _) | (_, Err(reason)) => reason.clone(),
                    _ => unreachable!("both opened"),
                };
                if let Ok(publisher) = publisher {
                    let _ = publisher
                        .connection
                        .close(200, "connect failed".into())
                        .await;
                }
                if let Ok(consumers) = consumers {
                    let _ = consumers
                        .connection
                        .close(200, "connect failed".into())
                        .await;
                }
                return Err(connect_error(reason));
            }
        };
        let queue_type = config.queue_type;
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                endpoint,
                address,
                publisher: Link::new("publisher", publisher),
                consumers: Link::new("consumer", consumers),
                declared: Declared::new(queue_type),
            }),
        })
    }

    /// The configuration it was built with.
    pub fn config(&self) -> &TransportConfig {
        &self.inner.config
    }

    /// Deletes every queue this transport declared (topic, dead-letter and retry queues,
    /// with their messages) and the prefix's exchange. For tests and teardown: stop the
    /// subscriptions first, since a running one declares its queues again when it notices.
    pub async fn delete_topology(&self) -> Result<(), TransportError> {
        let consumers = self.inner.consumers().await?;
        let channel = consumers.connection.create_channel().await.map_err(|e| {
            Reason::caused_by("cannot open a channel", e).connect(BROKER, &self.inner.address)
        })?;
        self.inner
            .declared
            .delete_all(&channel, &self.inner.config)
            .await
            .map_err(|e| {
                Reason::caused_by("cannot delete the topology", e)
                    .connect(BROKER, &self.inner.address)
            })?;
        let _ = channel.close(200, "done".into()).await;
        Ok(())
    }
}

/// The endpoint of `url`: for `amqps://`, with the CA and client identity read from `tls`'s
/// files (checked here, so a bad file fails `connect` with its name).
fn endpoint(url: &str, tls: &ClientTls) -> Result<Endpoint, Reason> {
    let invalid = |e| Reason::caused_by("invalid TLS settings", e);
    let secure = wants_tls(url, tls, "amqps").map_err(invalid)?;
    let mut tls_config = lapin::tcp::OwnedTLSConfig::default();
    if secure {
        let pem = tls.load().map_err(invalid)?;
        tls_config.cert_chain = pem.ca.map(|ca| String::from_utf8_lossy(&ca).into_owned());
        tls_config.identity = pem
            .identity
            .map(|(pem, key)| lapin::tcp::OwnedIdentity::PKCS8 { pem, key });
    }
    Ok(Endpoint {
        url: url.to_owned(),
        tls: secure,
        tls_config,
    })
}

impl Inner {
    fn connect_error(&self, reason: Reason) -> TransportError {
        reason.connect(BROKER, &self.address)
    }

    /// The publisher connection, reconnecting (one attempt in flight, shared) if it dropped.
    async fn publisher(self: &Arc<Self>) -> Result<Arc<Publisher>, TransportError> {
        if let Some(publisher) = self.publisher.current() {
            return Ok(publisher);
        }
        let (endpoint, config) = (self.endpoint.clone(), self.config.clone());
        self.publisher
            .get(move || {
                let (endpoint, config) = (endpoint.clone(), config.clone());
                async move { open_publisher(&endpoint, &config).await }
            })
            .await
            .map_err(|reason| self.connect_error(reason))
    }

    /// The consumer connection, reconnecting (one attempt in flight, shared) if it dropped.
    async fn consumers(self: &Arc<Self>) -> Result<Arc<Consumers>, TransportError> {
        if let Some(consumers) = self.consumers.current() {
            return Ok(consumers);
        }
        let (endpoint, config) = (self.endpoint.clone(), self.config.clone());
        self.consumers
            .get(move || {
                let (endpoint, config) = (endpoint.clone(), config.clone());
                async move { open_consumers(&endpoint, &config).await }
            })
            .await
            .map_err(|reason| self.connect_error(reason))
    }
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
            self.inner
                .publish_raw(
                    &self.inner.config.topic_prefix,
                    topic,
                    publish::message_properties(&message.headers),
                    &message.payload,
                    false,
                )
                .await
                .map_err(|reason| {
                    reason
                        .context(format_args!("{BROKER} at {}", self.inner.address))
                        .publish(topic)
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
            let queue = topology::queue_name(&self.inner.config, topic, &options.group);
            let concurrency = options.concurrency.max(1);
            let (channel, consumer) = self
                .inner
                .attach(topic, &options.group, concurrency)
                .await
                .map_err(|reason| reason.subscribe(topic))?;
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

    fn backend(&self) -> &'static str {
        "rabbitmq"
    }

    /// Up when both connections (publisher and consumer) are open, re-opening a dropped one
    /// (one reconnection in flight per connection, shared with publishes and subscriptions).
    fn ping(&self) -> BoxFuture<'_, Result<(), TransportError>> {
        Box::pin(async move {
            self.inner.publisher().await?;
            self.inner.consumers().await?;
            Ok(())
        })
    }
}
