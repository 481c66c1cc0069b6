//! Names and declarations: the prefix's exchange, the (topic, group) queues with their
//! dead-letter queues, the retry queues of delayed nacks; and the record of what was
//! declared, for teardown.

use std::collections::BTreeSet;
use std::sync::Mutex;

use lapin::options::{
    ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{Channel, ExchangeKind};

use crate::transport::{QueueType, TransportConfig, dead_letter_topic};

/// How long a retry queue outlives its last use, in milliseconds (past its message TTL).
const RETRY_QUEUE_EXPIRY_MS: u32 = 60_000;

/// The queue of (topic, group): `{prefix}.{topic}.{group}`.
pub(super) fn queue_name(config: &TransportConfig, topic: &str, group: &str) -> String {
    format!("{}.{topic}.{group}", config.topic_prefix)
}

/// The retry queue of `queue` for a delay of `millis`: `{queue}.retry.{millis}`.
pub(super) fn retry_queue_name(queue: &str, millis: u32) -> String {
    format!("{queue}.retry.{millis}")
}

/// Declares the prefix's durable topic exchange (idempotent).
pub(super) async fn declare_exchange(
    channel: &Channel,
    config: &TransportConfig,
) -> Result<(), lapin::Error> {
    channel
        .exchange_declare(
            config.topic_prefix.as_str().into(),
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
}

/// Every queue declared through a [`Declared`], for `delete_topology`.
#[derive(Debug)]
pub(super) struct Declared {
    queues: Mutex<BTreeSet<String>>,
    queue_type: QueueType,
}

impl Declared {
    pub(super) fn new(queue_type: QueueType) -> Self {
        Self {
            queues: Mutex::default(),
            queue_type,
        }
    }

    /// The arguments every queue is declared with: its type, when not the broker's default.
    fn queue_arguments(&self) -> FieldTable {
        let mut arguments = FieldTable::default();
        if self.queue_type == QueueType::Quorum {
            arguments.insert(
                "x-queue-type".into(),
                AMQPValue::LongString("quorum".into()),
            );
        }
        arguments
    }

    fn remember(&self, queue: &str) {
        let mut queues = self.queues.lock().unwrap_or_else(|e| e.into_inner());
        if !queues.contains(queue) {
            queues.insert(queue.to_owned());
        }
    }

    /// Declares the exchange, the group's queue on `topic` and on its dead-letter topic,
    /// durable, each bound with its logical topic as routing key. Returns the queue's name.
    pub(super) async fn declare_group(
        &self,
        channel: &Channel,
        config: &TransportConfig,
        topic: &str,
        group: &str,
    ) -> Result<String, lapin::Error> {
        declare_exchange(channel, config).await?;
        let exchange: ShortString = config.topic_prefix.as_str().into();
        let dead_topic = dead_letter_topic(topic);
        let queue = queue_name(config, topic, group);
        let dead_queue = queue_name(config, &dead_topic, group);
        for (name, key) in [(dead_queue.as_str(), dead_topic.as_str()), (&queue, topic)] {
            channel
                .queue_declare(
                    name.into(),
                    QueueDeclareOptions {
                        durable: true,
                        ..Default::default()
                    },
                    self.queue_arguments(),
                )
                .await?;
            channel
                .queue_bind(
                    name.into(),
                    exchange.clone(),
                    key.into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await?;
            self.remember(name);
        }
        Ok(queue)
    }

    /// Declares the retry queue of `queue` for `millis`: its message TTL dead-letters
    /// messages back into `queue` through the default exchange; it expires a minute after
    /// its last use. Returns its name.
    pub(super) async fn declare_retry_queue(
        &self,
        channel: &Channel,
        queue: &str,
        millis: u32,
    ) -> Result<String, lapin::Error> {
        let retry_queue = retry_queue_name(queue, millis);
        let mut arguments = self.queue_arguments();
        arguments.insert("x-message-ttl".into(), AMQPValue::LongUInt(millis));
        arguments.insert(
            "x-dead-letter-exchange".into(),
            AMQPValue::LongString("".into()),
        );
        arguments.insert(
            "x-dead-letter-routing-key".into(),
            AMQPValue::LongString(LongString::from(queue)),
        );
        arguments.insert(
            "x-expires".into(),
            AMQPValue::LongUInt(millis.saturating_add(RETRY_QUEUE_EXPIRY_MS)),
        );
        channel
            .queue_declare(
                retry_queue.as_str().into(),
                QueueDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                arguments,
            )
            .await?;
        self.remember(&retry_queue);
        Ok(retry_queue)
    }

    /// Deletes every remembered queue (with its messages) and the prefix's exchange.
    pub(super) async fn delete_all(
        &self,
        channel: &Channel,
        config: &TransportConfig,
    ) -> Result<(), lapin::Error> {
        let queues: Vec<String> = {
            let queues = self.queues.lock().unwrap_or_else(|e| e.into_inner());
            queues.iter().cloned().collect()
        };
        for queue in queues {
            channel
                .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
                .await?;
        }
        channel
            .exchange_delete(config.topic_prefix.as_str().into(), Default::default())
            .await
    }
}
