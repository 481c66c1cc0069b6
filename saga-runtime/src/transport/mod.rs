//! Transports: move saga messages between orchestrator replicas through a broker.
//!
//! # Delivery contract
//! At-least-once. [`Transport::publish`] resolves only once the broker confirmed the message
//! (RabbitMQ publisher confirm, JetStream publish ack; the memory transport once it is
//! enqueued). A delivery is settled by the [`Handler`]'s [`Disposition`]: acked, nacked for
//! redelivery (optionally after a delay) or dead-lettered with a reason. A delivery whose
//! handler never settled it (the consumer crashed, the subscription was aborted) is
//! redelivered to another consumer of the same group. Handlers must therefore be idempotent.
//!
//! Topic names are logical (`booking.create_order`); each transport puts them under its
//! configured prefix. Dead letters of topic `t` go to the topic [`dead_letter_topic`]`(t)`
//! with the reason in the [`DEAD_LETTER_REASON_HEADER`] header.
//!
//! # What users code for
//! - **At-least-once**: a delivery may come again (nack, crash, lost ack, a publish retried
//!   after a reconnection), so handlers, and the saga steps behind them, must be idempotent.
//!   [`Delivery::delivery_count`] says when it is a redelivery.
//! - **Groups**: a (topic, group) queue exists from the group's first subscription on and
//!   keeps messages while no subscriber runs; what was published to a topic before any group
//!   subscribed to it is dropped. Subscribe (engine start-up) before you publish. On NATS a
//!   new group may also receive the messages of its topic that other groups have not acked
//!   yet (its consumer delivers everything the stream still holds; see the `nats` module).
//! - **Dead letters** of a group's deliveries are kept by the same group on the dead-letter
//!   topic: subscribing to `t` also declares `(dead_letter_topic(t), group)`; subscribe to it
//!   with that group to read them.
//! - **Concurrency**: at most `concurrency` handler calls run at once per subscription (take
//!   the value from [`TransportConfig::concurrency_for`]). RabbitMQ also uses it as the
//!   per-consumer prefetch; NATS as the consumer's `max_ack_pending`, **a cap shared by every
//!   replica of the group**. A delivery nacked with a delay gives its slot back while it
//!   waits, on every transport (RabbitMQ: a retry queue; NATS: a parking consumer).
//! - **Redelivery of unsettled deliveries**: immediately for memory, when the subscriber's
//!   channel closes for RabbitMQ, after the ack wait ([`TransportConfig::ack_wait`]) for
//!   NATS.
//! - **Ordering** is not guaranteed (concurrency, redelivery).
//! - **Bounded delivery**: [`Delivery::delivery_count`] counts nacks and redeliveries; the
//!   engine dead-letters a delivery past [`TransportConfig::max_deliveries`].
//! - **Deduplication** is best effort and NATS only: give a message a [`MESSAGE_ID_HEADER`]
//!   and JetStream drops a second publish of the same id within its duplicate window.
//!
//! # Implementations
//! [`MemoryTransport`] (always built), `RabbitMqTransport` (feature `rabbitmq`),
//! `NatsTransport` (feature `nats`); one conformance suite
//! (`tests/transport_conformance.rs`) runs the same tests against all three.

mod config;
mod dispatch;
mod headers;
pub mod memory;
#[cfg(feature = "nats")]
pub mod nats;
#[cfg(feature = "rabbitmq")]
pub mod rabbitmq;
mod service;

pub use config::{NatsAuth, QueueType, TransportConfig};
pub use memory::MemoryTransport;
#[cfg(feature = "nats")]
pub use nats::NatsTransport;
#[cfg(feature = "rabbitmq")]
pub use rabbitmq::RabbitMqTransport;
pub use service::ServiceHandler;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;

use crate::error::{Cause, Report, cause};
use futures_util::future::BoxFuture;

/// Message headers (the trace id at least, under [`TRACE_ID_HEADER`]).
pub type Headers = BTreeMap<String, String>;

/// Header carrying the trace id of the saga a message belongs to.
pub const TRACE_ID_HEADER: &str = "x-request-id";
/// Header carrying a publisher-chosen message id, unique per logical message (the engine uses
/// `{trace_id}/{sequence}`): publishing the same logical message again (a retry after
/// an unconfirmed publish) reuses it. Delivered like any other header. Brokers that
/// deduplicate use it: NATS sets `Nats-Msg-Id` from it, so JetStream drops a second publish
/// with the same id within the stream's duplicate window (2 minutes by default); RabbitMQ
/// puts it in the `message_id` property only (no deduplication); memory ignores it.
pub const MESSAGE_ID_HEADER: &str = "x-message-id";
/// Header carrying the reason a message was dead-lettered.
pub const DEAD_LETTER_REASON_HEADER: &str = "x-dead-letter-reason";

/// The logical topic that receives the dead letters of `topic`.
pub fn dead_letter_topic(topic: &str) -> String {
    format!("{topic}{DEAD_LETTER_SUFFIX}")
}

/// The suffix of every dead-letter topic ([`dead_letter_topic`]).
pub const DEAD_LETTER_SUFFIX: &str = ".dead-letter";

/// A message to publish.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Message {
    /// Headers; the trace id at least.
    pub headers: Headers,
    /// The body (JSON for saga messages).
    pub payload: Bytes,
}

/// A message handed to a [`Handler`].
#[derive(Clone, Debug)]
pub struct Delivery {
    /// The logical topic it came from.
    pub topic: String,
    /// Its headers.
    pub headers: Headers,
    /// Its body.
    pub payload: Bytes,
    /// How many times it was delivered, this one included: 1 on first delivery, then one
    /// more for each nack (with or without delay) and each redelivery of an unsettled
    /// delivery (crash, abort, ack wait expired). Exact on memory and NATS (the server's
    /// count). On RabbitMQ exact through nacks (the transport counts them in a header of the
    /// republished message); a redelivery after a lost channel adds 1 through the broker's
    /// `redelivered` flag however many times it happened, so there it is a lower bound.
    /// The engine compares it with
    /// [`TransportConfig::max_deliveries`](TransportConfig::max_deliveries).
    pub delivery_count: u32,
}

impl Delivery {
    /// The trace id header, or `"-"` when absent (for log lines).
    pub fn trace_id(&self) -> &str {
        self.headers
            .get(TRACE_ID_HEADER)
            .map(String::as_str)
            .unwrap_or("-")
    }
}

/// How a handler settles a delivery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Disposition {
    /// Done: the broker forgets it.
    Ack,
    /// Redeliver, to any consumer of the group, after `delay` if given.
    Nack {
        /// Wait at least this long before redelivery.
        delay: Option<Duration>,
    },
    /// Move it to the dead-letter topic with this reason.
    DeadLetter {
        /// Why (lands in the [`DEAD_LETTER_REASON_HEADER`] header).
        reason: String,
    },
}

/// Processes deliveries of one subscription. At most `concurrency` calls run at once.
pub trait Handler: Send + Sync + 'static {
    /// Handles one delivery and says how to settle it. Must not panic; a panic is treated
    /// as a nack.
    ///
    /// Called on the subscription's consumer loop, the returned future is run in a task of
    /// its own: return quickly and do the work in the future, or the next delivery waits.
    fn handle(&self, delivery: Delivery) -> BoxFuture<'static, Disposition>;
}

impl<F, Fut> Handler for F
where
    F: Fn(Delivery) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Disposition> + Send + 'static,
{
    fn handle(&self, delivery: Delivery) -> BoxFuture<'static, Disposition> {
        Box::pin((self)(delivery))
    }
}

/// Subscription options.
#[derive(Clone, Debug)]
pub struct SubscribeOptions {
    /// Competing-consumer group: subscribers of one group split the messages; each group
    /// gets every message.
    pub group: String,
    /// The most deliveries in flight at once for this subscriber.
    pub concurrency: usize,
}

/// A transport failure. Every variant says which broker address or topic it is about;
/// [`TransportError::kind`] gives a copyable kind to match on, and the client library's error,
/// when there is one, is the [`source`](std::error::Error::source) (log the whole chain with
/// [`Report`]).
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The broker could not be reached within the connect timeout.
    #[error("cannot connect to {broker} at {address}: {reason}")]
    Connect {
        /// "RabbitMQ", "NATS".
        broker: &'static str,
        /// The URL or address tried (without credentials).
        address: String,
        /// What failed.
        reason: String,
        /// The client library's error.
        #[source]
        source: Option<Cause>,
    },
    /// The broker did not confirm a publish.
    #[error("publish to topic `{topic}` not confirmed: {reason}")]
    Publish {
        /// The logical topic.
        topic: String,
        /// What failed.
        reason: String,
        /// The client library's error.
        #[source]
        source: Option<Cause>,
    },
    /// The payload is over the transport's limit.
    #[error("message for topic `{topic}` is {size} bytes, over the limit of {limit} bytes")]
    TooLarge {
        /// The logical topic.
        topic: String,
        /// The payload size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// Subscribing failed.
    #[error("subscribe to topic `{topic}` failed: {reason}")]
    Subscribe {
        /// The logical topic.
        topic: String,
        /// What failed.
        reason: String,
        /// The client library's error.
        #[source]
        source: Option<Cause>,
    },
    /// The transport is shut down.
    #[error("transport is closed")]
    Closed,
}

/// Two transport errors are equal when they are the same variant with the same fields and
/// causes that read the same.
impl PartialEq for TransportError {
    fn eq(&self, other: &Self) -> bool {
        self.kind() == other.kind() && Report(self).to_string() == Report(other).to_string()
    }
}

/// Why a transport operation failed, inside the transports: what it was doing and, when a
/// client library reported it, that error (which becomes the [`TransportError`]'s source).
// Only the broker transports build one.
#[cfg_attr(not(any(feature = "rabbitmq", feature = "nats")), allow(dead_code))]
#[derive(Clone, Debug)]
pub(crate) struct Reason {
    text: String,
    cause: Option<Cause>,
}

#[cfg_attr(not(any(feature = "rabbitmq", feature = "nats")), allow(dead_code))]
impl Reason {
    /// `text`, caused by the client library's `error`.
    pub(crate) fn caused_by(
        text: impl Into<String>,
        error: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self {
            text: text.into(),
            cause: Some(cause(error)),
        }
    }

    /// `text`, caused by a boxed client library error.
    pub(crate) fn caused_by_boxed(
        text: impl Into<String>,
        error: Box<dyn std::error::Error + Send + Sync + 'static>,
    ) -> Self {
        Self {
            text: text.into(),
            cause: Some(Cause::from(error)),
        }
    }

    /// The same reason with `context` in front of its text.
    pub(crate) fn context(mut self, context: impl fmt::Display) -> Self {
        self.text = format!("{context}: {}", self.text);
        self
    }

    /// The same reason with every one of `secrets` (the connection URL's) masked in its text
    /// and its cause.
    pub(crate) fn scrubbed(self, secrets: &[String]) -> Self {
        Self {
            text: crate::redact::scrub(&self.text, secrets),
            cause: self
                .cause
                .map(|cause| crate::redact::Scrubbed::cause(&cause, secrets)),
        }
    }

    /// A [`TransportError::Connect`] to `broker` at `address` for this reason.
    pub(crate) fn connect(self, broker: &'static str, address: &str) -> TransportError {
        TransportError::Connect {
            broker,
            address: address.to_string(),
            reason: self.text,
            source: self.cause,
        }
    }

    /// A [`TransportError::Publish`] to `topic` for this reason.
    pub(crate) fn publish(self, topic: &str) -> TransportError {
        TransportError::Publish {
            topic: topic.to_string(),
            reason: self.text,
            source: self.cause,
        }
    }

    /// A [`TransportError::Subscribe`] to `topic` for this reason.
    pub(crate) fn subscribe(self, topic: &str) -> TransportError {
        TransportError::Subscribe {
            topic: topic.to_string(),
            reason: self.text,
            source: self.cause,
        }
    }
}

impl From<String> for Reason {
    fn from(text: String) -> Self {
        Self { text, cause: None }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.cause {
            Some(cause) => write!(f, "{}: {cause}", self.text),
            None => f.write_str(&self.text),
        }
    }
}

impl TransportError {
    /// What kind of failure this is.
    pub fn kind(&self) -> TransportErrorKind {
        match self {
            TransportError::Connect { .. } => TransportErrorKind::Connect,
            TransportError::Publish { .. } => TransportErrorKind::Publish,
            TransportError::TooLarge { .. } => TransportErrorKind::TooLarge,
            TransportError::Subscribe { .. } => TransportErrorKind::Subscribe,
            TransportError::Closed => TransportErrorKind::Closed,
        }
    }
}

/// The kind of a [`TransportError`], one per variant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TransportErrorKind {
    /// The broker could not be reached.
    Connect,
    /// A publish was not confirmed.
    Publish,
    /// A message was over the size limit.
    TooLarge,
    /// A subscription could not be set up.
    Subscribe,
    /// The transport is shut down.
    Closed,
}

impl fmt::Display for TransportErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TransportErrorKind::Connect => "the message broker is unreachable",
            TransportErrorKind::Publish => "the message broker did not confirm a message",
            TransportErrorKind::TooLarge => "a message is over the broker's size limit",
            TransportErrorKind::Subscribe => "the message broker refused a subscription",
            TransportErrorKind::Closed => "the message broker connection is closed",
        })
    }
}

/// A message broker as the engine sees it. Object safe: the engine holds an
/// `Arc<dyn Transport>`.
pub trait Transport: Send + Sync + fmt::Debug + 'static {
    /// The transport's settings: the topic prefix and the consumer concurrency per topic,
    /// which the engine subscribes with.
    fn config(&self) -> &TransportConfig;

    /// Publishes `message` to `topic`; resolves once the broker confirmed it.
    fn publish<'a>(
        &'a self,
        topic: &'a str,
        message: Message,
    ) -> BoxFuture<'a, Result<(), TransportError>>;

    /// Starts consuming `topic` as a member of `options.group`, with at most
    /// `options.concurrency` handler calls in flight.
    fn subscribe<'a>(
        &'a self,
        topic: &'a str,
        options: SubscribeOptions,
        handler: Arc<dyn Handler>,
    ) -> BoxFuture<'a, Result<Subscription, TransportError>>;

    /// The broker's name in metrics and health reports: `memory`, `nats`, `rabbitmq`; a
    /// wrapper returns its inner transport's. Default `custom`.
    fn backend(&self) -> &'static str {
        "custom"
    }

    /// A cheap liveness probe of the broker: `Ok` when a publish could be confirmed now (the
    /// connection is up and the broker answers), an error naming the broker otherwise. It may
    /// re-open a dropped connection. The health monitor calls it every interval, bounded by its
    /// own timeout; it never publishes a message.
    fn ping(&self) -> BoxFuture<'_, Result<(), TransportError>>;
}

/// Stops a subscription (implemented by each transport).
pub trait SubscriptionControl: Send + Sync + 'static {
    /// Stops taking new deliveries and waits up to `grace` for in-flight ones to be settled.
    /// Returns how many were still in flight when the grace ran out (0 when all finished).
    fn shutdown(self: Box<Self>, grace: Duration) -> BoxFuture<'static, usize>;
    /// Stops at once without settling in-flight deliveries (they are redelivered), as a
    /// crash would.
    fn abort(self: Box<Self>);

    /// Tells, without holding the subscription, whether it still takes deliveries. Default:
    /// [`Liveness::unknown`] (reported alive while the [`Subscription`] exists).
    fn liveness(&self) -> Liveness {
        Liveness::unknown()
    }
}

/// Whether a subscription still takes deliveries, readable by a health monitor without
/// holding the subscription. Cheap to clone; it never keeps the subscription alive.
#[derive(Clone, Debug, Default)]
pub struct Liveness(Option<Weak<()>>);

impl Liveness {
    /// A liveness that cannot be observed: always reported alive.
    pub fn unknown() -> Self {
        Self(None)
    }

    /// A subscription already stopped.
    pub fn stopped() -> Self {
        Self(Some(Weak::new()))
    }

    /// Alive for as long as `token` (held by the subscription's consuming task) exists.
    pub fn of(token: &Arc<()>) -> Self {
        Self(Some(Arc::downgrade(token)))
    }

    /// True while the subscription runs (or when its liveness is unknown).
    pub fn is_alive(&self) -> bool {
        self.0.as_ref().is_none_or(|token| token.strong_count() > 0)
    }
}

/// A running subscription. Dropping it aborts it (in-flight deliveries are redelivered);
/// call [`Subscription::shutdown`] to drain.
pub struct Subscription {
    control: Option<Box<dyn SubscriptionControl>>,
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("running", &self.control.is_some())
            .finish()
    }
}

impl Subscription {
    /// Wraps a transport's control handle.
    pub fn new(control: Box<dyn SubscriptionControl>) -> Self {
        Self {
            control: Some(control),
        }
    }

    /// Stops taking new deliveries and lets in-flight ones finish within `grace`; returns
    /// how many were still in flight when it gave up.
    pub async fn shutdown(mut self, grace: Duration) -> usize {
        match self.control.take() {
            Some(control) => control.shutdown(grace).await,
            None => 0,
        }
    }

    /// Whether it still takes deliveries, as a handle that does not keep it alive.
    pub fn liveness(&self) -> Liveness {
        match &self.control {
            Some(control) => control.liveness(),
            None => Liveness::stopped(),
        }
    }

    /// Stops at once; in-flight deliveries are not settled and get redelivered.
    pub fn abort(mut self) {
        if let Some(control) = self.control.take() {
            control.abort();
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Some(control) = self.control.take() {
            control.abort();
        }
    }
}
