//! [`MemoryTransport`]: an in-process broker with the same semantics as the others
//! (competing groups, concurrency limit, nack with delay, dead letters, redelivery of what an
//! aborted subscription left unsettled). The embedded default and the test double.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, Weak};

use futures_util::future::BoxFuture;
use tokio::sync::mpsc;

use super::config::{check_size, message_size};
use super::dispatch::{self, Pending, Source};
use super::headers::PackedHeaders;
use super::{
    DEAD_LETTER_REASON_HEADER, Delivery, Disposition, Handler, Headers, Message, SubscribeOptions,
    Subscription, Transport, TransportConfig, TransportError, dead_letter_topic,
};

/// An in-process transport. A (topic, group) queue exists from the group's first subscription
/// on and keeps its messages while no subscriber runs, like a durable broker queue; messages
/// published to a topic before any group subscribed are dropped, as RabbitMQ and NATS do.
/// Nothing survives the process. Each instance is its own broker, so the topic prefix only
/// matters to the other transports.
#[derive(Clone)]
pub struct MemoryTransport {
    inner: Arc<Inner>,
}

impl fmt::Debug for MemoryTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryTransport")
            .field("topic_prefix", &self.inner.config.topic_prefix)
            .finish_non_exhaustive()
    }
}

struct Inner {
    config: TransportConfig,
    /// topic -> group -> queue.
    topics: Mutex<HashMap<String, HashMap<String, Arc<GroupQueue>>>>,
}

/// A queued message. An unsettled delivery's message stays here (for its redelivery) for as
/// long as its handler runs, a saga's whole step, so its headers are packed in one allocation
/// (`PackedHeaders`). Each delivery gets them as a map ([`Headers`]).
struct Envelope {
    headers: PackedHeaders,
    payload: bytes::Bytes,
    delivery_count: u32,
}

impl Envelope {
    fn new(headers: &Headers, payload: bytes::Bytes) -> Self {
        Self {
            headers: PackedHeaders::of(headers),
            payload,
            delivery_count: 0,
        }
    }

    /// The headers as a map.
    fn headers(&self) -> Headers {
        self.headers.unpack()
    }
}

struct GroupQueue {
    tx: mpsc::UnboundedSender<Envelope>,
    rx: tokio::sync::Mutex<mpsc::UnboundedReceiver<Envelope>>,
}

impl MemoryTransport {
    /// A new, empty in-memory broker.
    pub fn new(config: TransportConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                config,
                topics: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The configuration it was built with.
    pub fn config(&self) -> &TransportConfig {
        &self.inner.config
    }
}

impl Inner {
    fn queue(&self, topic: &str, group: &str) -> Arc<GroupQueue> {
        let mut topics = self.topics.lock().unwrap_or_else(|e| e.into_inner());
        topics
            .entry(topic.to_owned())
            .or_default()
            .entry(group.to_owned())
            .or_insert_with(|| {
                let (tx, rx) = mpsc::unbounded_channel();
                Arc::new(GroupQueue {
                    tx,
                    rx: tokio::sync::Mutex::new(rx),
                })
            })
            .clone()
    }

    fn enqueue(&self, topic: &str, message: Message) {
        let topics = self.topics.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(groups) = topics.get(topic) {
            for queue in groups.values() {
                let _ = queue
                    .tx
                    .send(Envelope::new(&message.headers, message.payload.clone()));
            }
        }
    }
}

impl Transport for MemoryTransport {
    fn config(&self) -> &TransportConfig {
        MemoryTransport::config(self)
    }

    fn publish<'a>(
        &'a self,
        topic: &'a str,
        message: Message,
    ) -> BoxFuture<'a, Result<(), TransportError>> {
        Box::pin(async move {
            check_size(topic, message_size(&message), self.inner.config.max_payload)?;
            self.inner.enqueue(topic, message);
            Ok(())
        })
    }

    fn subscribe<'a>(
        &'a self,
        topic: &'a str,
        options: SubscribeOptions,
        handler: Arc<dyn Handler>,
    ) -> BoxFuture<'a, Result<Subscription, TransportError>> {
        Box::pin(async move {
            // Dead letters of this group are kept in the same group of the dead-letter topic.
            self.inner.queue(&dead_letter_topic(topic), &options.group);
            let source = MemorySource {
                queue: self.inner.queue(topic, &options.group),
                transport: Arc::downgrade(&self.inner),
                topic: Arc::from(topic),
            };
            Ok(dispatch::spawn(source, handler, options.concurrency, topic))
        })
    }

    fn backend(&self) -> &'static str {
        "memory"
    }

    /// Always up: the broker is this process.
    fn ping(&self) -> BoxFuture<'_, Result<(), TransportError>> {
        Box::pin(async { Ok(()) })
    }
}

struct MemorySource {
    queue: Arc<GroupQueue>,
    transport: Weak<Inner>,
    topic: Arc<str>,
}

impl Source for MemorySource {
    type Pending = MemoryPending;

    async fn next(&mut self) -> Option<(Delivery, MemoryPending)> {
        let mut envelope = self.queue.rx.lock().await.recv().await?;
        envelope.delivery_count += 1;
        let delivery = Delivery {
            topic: self.topic.to_string(),
            headers: envelope.headers(),
            payload: envelope.payload.clone(),
            delivery_count: envelope.delivery_count,
        };
        let pending = MemoryPending {
            envelope: Some(envelope),
            queue: self.queue.clone(),
            transport: self.transport.clone(),
            topic: self.topic.clone(),
        };
        Some((delivery, pending))
    }

    async fn close(self) {}
}

/// An unsettled delivery; dropped unsettled (aborted subscription), it is requeued.
struct MemoryPending {
    envelope: Option<Envelope>,
    queue: Arc<GroupQueue>,
    transport: Weak<Inner>,
    topic: Arc<str>,
}

impl Pending for MemoryPending {
    async fn settle(mut self, disposition: Disposition) {
        let Some(envelope) = self.envelope.take() else {
            return;
        };
        match disposition {
            Disposition::Ack => {}
            Disposition::Nack { delay: None } => {
                let _ = self.queue.tx.send(envelope);
            }
            Disposition::Nack { delay: Some(delay) } => {
                let queue = self.queue.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    let _ = queue.tx.send(envelope);
                });
            }
            Disposition::DeadLetter { reason } => {
                if let Some(transport) = self.transport.upgrade() {
                    let mut headers = envelope.headers();
                    headers.insert(DEAD_LETTER_REASON_HEADER.to_owned(), reason);
                    transport.enqueue(
                        &dead_letter_topic(&self.topic),
                        Message {
                            headers,
                            payload: envelope.payload,
                        },
                    );
                }
            }
        }
    }
}

impl Drop for MemoryPending {
    fn drop(&mut self) {
        if let Some(envelope) = self.envelope.take() {
            let _ = self.queue.tx.send(envelope);
        }
    }
}
