//! [`TransportConfig`]: topic prefix, concurrency per topic, limits; shared by every transport.
//!
//! Durations deserialize from human-readable strings (`"5s"`, `"250ms"`, `"2m"`).

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::SubscribeOptions;
use crate::tls::ClientTls;

/// How a transport names topics and how many deliveries a subscriber handles at once.
///
/// Deserializable so an application config can hold it (the Go framework's `topic_prefix` and
/// per-topic `concurrency`; durations as `"5s"`, `"250ms"`). Every field has a default:
///
/// ```
/// # use std::time::Duration;
/// # use saga_runtime::transport::TransportConfig;
/// let config: TransportConfig = serde_json::from_str(
///     r#"{ "topic_prefix": "shop", "concurrency": { "booking.create_payment": 4 }, "ack_wait": "2s" }"#,
/// ).unwrap();
/// assert_eq!(config.concurrency_for("booking.create_payment"), 4);
/// assert_eq!(config.concurrency_for("booking.create_order"), config.default_concurrency);
/// assert_eq!(config.ack_wait, Duration::from_secs(2));
/// assert_eq!(config.connect_timeout, Duration::from_secs(5));
/// ```
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct TransportConfig {
    /// Every logical topic is put under this prefix (RabbitMQ exchange name, NATS stream
    /// subjects `{prefix}.>`). Default `"sagaflow"`.
    pub topic_prefix: String,
    /// Concurrency of a topic absent from [`concurrency`](Self::concurrency). Default 16.
    pub default_concurrency: usize,
    /// Concurrency per logical topic: the most deliveries in flight at once per subscriber.
    pub concurrency: HashMap<String, usize>,
    /// Largest payload (plus headers) accepted by `publish`, in bytes; larger ones are refused
    /// with [`TransportError::TooLarge`](super::TransportError::TooLarge) before sending. NATS
    /// also applies the server's `max_payload` (1 MiB by default, headers included). Default
    /// 8 MiB.
    pub max_payload: usize,
    /// How long `connect` may take before it fails with
    /// [`TransportError::Connect`](super::TransportError::Connect). Default 5 s.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// RabbitMQ only: how long a publish waits for the broker's publisher confirm before it
    /// fails with
    /// [`TransportError::Publish`](super::TransportError::Publish) naming the topic (the
    /// broker may be blocking publishers on a resource alarm, or be overloaded). The message
    /// may still have been taken: at-least-once, a retried publish may duplicate it. NATS
    /// bounds its publish acks by the client's request timeout. Default 10 s.
    #[serde(with = "humantime_serde")]
    pub confirm_timeout: Duration,
    /// NATS only: how long the server waits for an ack before it redelivers a delivery
    /// (what a crashed or aborted subscriber left unsettled). A running handler is not
    /// redelivered however long it takes: the subscriber sends an in-progress ack every third
    /// of this. RabbitMQ redelivers as soon as the consumer's channel closes; memory at once.
    /// Default 5 s (a dead replica's deliveries come back within ~5 s).
    #[serde(with = "humantime_serde")]
    pub ack_wait: Duration,
    /// The most deliveries of one message the engine handles: a delivery whose
    /// [`delivery_count`](super::Delivery::delivery_count) is over this is dead-lettered by
    /// the engine instead of handled (a poison message cannot loop forever). Transports count
    /// deliveries for it (see [`Delivery::delivery_count`](super::Delivery::delivery_count));
    /// NATS consumers also get `max_deliver = max_deliveries + 1`, so the server stops
    /// redelivering only after the engine saw (and dead-lettered) the delivery past the bound.
    /// The engine's retries of a failing step go back through the broker and count too, so
    /// keep it above the largest retry policy (the compensation policy's 20 attempts by
    /// default). Default 100.
    pub max_deliveries: u32,
    /// Name shown by the broker's management for the connection (NATS client name). RabbitMQ
    /// opens two connections, named `{connection_name}-publisher` and
    /// `{connection_name}-consumer`. Default `"sagaflow"`.
    pub connection_name: String,
    /// TLS settings of the broker connection (RabbitMQ and NATS; memory ignores them). A
    /// TLS URL (`amqps://`, `tls://`) connects over TLS or not at all, trusting
    /// [`ca_file`](ClientTls::ca_file) when set. With any file set, RabbitMQ refuses an
    /// `amqp://` URL and NATS requires TLS whatever the URL's scheme. Default: none.
    pub tls: ClientTls,
    /// NATS only: how the client authenticates besides the URL's `user:password@` or
    /// `token@`. Default: nothing more.
    pub nats_auth: NatsAuth,
    /// RabbitMQ only: the type of the queues the transport declares (a group's queue, its
    /// dead-letter queue and its retry queues). [`QueueType::Quorum`] replicates them across
    /// a cluster's nodes (Raft), so a node's loss loses no message; [`QueueType::Classic`]
    /// (the default) keeps each on one node. A queue keeps the type it was declared with:
    /// switching a running prefix is refused by the broker (use a new prefix).
    pub queue_type: QueueType,
    /// NATS only: how many servers of a JetStream cluster keep the prefix's stream (and its
    /// consumers), `num_replicas`: 3 on a 3-node cluster survives the loss of one node. 1 (the
    /// default) on a single server. The stream is created with it; an existing stream keeps
    /// the replicas it was created with.
    pub nats_replicas: usize,
}

/// The type of the RabbitMQ queues a transport declares ([`TransportConfig::queue_type`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueueType {
    /// Classic queues (the broker's default): on one node.
    #[default]
    Classic,
    /// Quorum queues: replicated across the cluster's nodes, durable by design.
    Quorum,
}

/// How a NATS client authenticates, by file reference (the secret stays out of the config and
/// out of the URL the client logs). At most one is set; none goes with credentials in the URL.
///
/// ```
/// # use saga_runtime::transport::TransportConfig;
/// let config: TransportConfig = serde_json::from_str(
///     r#"{ "tls": { "ca_file": "ca.pem" }, "nats_auth": { "credentials_file": "app.creds" } }"#,
/// ).unwrap();
/// assert!(config.tls.is_configured());
/// assert!(config.nats_auth.is_configured());
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NatsAuth {
    /// A `.creds` file (user JWT and nkey seed, as `nsc` writes it): decentralized auth.
    pub credentials_file: Option<PathBuf>,
    /// A file holding an nkey seed (`SU...`): the client signs the server's nonce with it.
    pub nkey_file: Option<PathBuf>,
    /// A file holding the server's authorization token (surrounding white space ignored).
    pub token_file: Option<PathBuf>,
}

impl NatsAuth {
    /// Whether any file is set.
    pub fn is_configured(&self) -> bool {
        self.credentials_file.is_some() || self.nkey_file.is_some() || self.token_file.is_some()
    }
}

impl Default for TransportConfig {
    fn default() -> Self {
        Self {
            topic_prefix: "sagaflow".to_owned(),
            default_concurrency: 16,
            concurrency: HashMap::new(),
            max_payload: 8 * 1024 * 1024,
            connect_timeout: Duration::from_secs(5),
            confirm_timeout: Duration::from_secs(10),
            ack_wait: Duration::from_secs(5),
            max_deliveries: 100,
            connection_name: "sagaflow".to_owned(),
            tls: ClientTls::default(),
            nats_auth: NatsAuth::default(),
            queue_type: QueueType::default(),
            nats_replicas: 1,
        }
    }
}

impl TransportConfig {
    /// A default config with this topic prefix.
    pub fn with_prefix(prefix: impl Into<String>) -> Self {
        Self {
            topic_prefix: prefix.into(),
            ..Self::default()
        }
    }

    /// The configured concurrency of `topic` (its entry in
    /// [`concurrency`](Self::concurrency), else [`default_concurrency`](Self::default_concurrency)),
    /// never below 1.
    pub fn concurrency_for(&self, topic: &str) -> usize {
        self.concurrency
            .get(topic)
            .copied()
            .unwrap_or(self.default_concurrency)
            .max(1)
    }

    /// Subscribe options for `topic` in `group`, with the configured concurrency.
    pub fn subscribe_options(&self, topic: &str, group: impl Into<String>) -> SubscribeOptions {
        SubscribeOptions {
            group: group.into(),
            concurrency: self.concurrency_for(topic),
        }
    }

    /// `topic` under the prefix: `{topic_prefix}.{topic}`.
    pub fn physical_topic(&self, topic: &str) -> String {
        format!("{}.{}", self.topic_prefix, topic)
    }
}

/// Size of a message as the brokers count it: payload plus header names and values.
pub(crate) fn message_size(message: &super::Message) -> usize {
    message.payload.len()
        + message
            .headers
            .iter()
            .map(|(k, v)| k.len() + v.len() + 4)
            .sum::<usize>()
}

/// Refuses a message of `size` bytes for `topic` over `limit` with
/// [`TransportError::TooLarge`](super::TransportError::TooLarge), before anything is sent.
pub(crate) fn check_size(
    topic: &str,
    size: usize,
    limit: usize,
) -> Result<(), super::TransportError> {
    if size > limit {
        return Err(super::TransportError::TooLarge {
            topic: topic.to_owned(),
            size,
            limit,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concurrency_falls_back_to_default_and_is_at_least_one() {
        let mut config = TransportConfig::with_prefix("p");
        config.concurrency.insert("a".into(), 3);
        config.concurrency.insert("zero".into(), 0);
        assert_eq!(config.concurrency_for("a"), 3);
        assert_eq!(config.concurrency_for("b"), 16);
        assert_eq!(config.concurrency_for("zero"), 1);
        assert_eq!(config.subscribe_options("a", "g").concurrency, 3);
        assert_eq!(config.physical_topic("a"), "p.a");
    }

    #[test]
    fn durations_are_human_readable_and_the_old_millisecond_keys_are_refused() {
        let config: TransportConfig = serde_json::from_str(
            r#"{ "connect_timeout": "250ms", "confirm_timeout": "1m", "ack_wait": "2s 500ms" }"#,
        )
        .expect("human-readable durations");
        assert_eq!(config.connect_timeout, Duration::from_millis(250));
        assert_eq!(config.confirm_timeout, Duration::from_secs(60));
        assert_eq!(config.ack_wait, Duration::from_millis(2_500));
        let old = serde_json::from_str::<TransportConfig>(r#"{ "ack_wait_ms": 2000 }"#)
            .expect_err("unknown field");
        assert!(old.to_string().contains("ack_wait_ms"), "{old}");
        serde_json::from_str::<TransportConfig>(r#"{ "ack_wait": 2000 }"#)
            .expect_err("a bare number has no unit");
    }
}
