//! Publishing: persistent messages on the publisher connection, each awaiting its publisher
//! confirm within the confirm timeout.

use std::sync::Arc;

use lapin::BasicProperties;
use lapin::Confirmation;
use lapin::options::BasicPublishOptions;
use lapin::types::{AMQPValue, FieldTable, LongString};

use super::Inner;
use crate::transport::{Headers, MESSAGE_ID_HEADER, Reason};

/// The headers as an AMQP table of long strings.
pub(super) fn to_field_table(headers: &Headers) -> FieldTable {
    let mut table = FieldTable::default();
    for (key, value) in headers {
        table.insert(
            key.as_str().into(),
            AMQPValue::LongString(LongString::from(value.as_str())),
        );
    }
    table
}

/// Persistent (delivery mode 2) properties with these headers.
pub(super) fn persistent(headers: FieldTable) -> BasicProperties {
    BasicProperties::default()
        .with_delivery_mode(2)
        .with_headers(headers)
}

/// Properties of a message published by a user: persistent, its headers, and its
/// [`MESSAGE_ID_HEADER`] as the AMQP `message_id` too.
pub(super) fn message_properties(headers: &Headers) -> BasicProperties {
    let properties = persistent(to_field_table(headers));
    match headers.get(MESSAGE_ID_HEADER) {
        Some(id) => properties.with_message_id(id.as_str().into()),
        None => properties,
    }
}

impl Inner {
    /// Publishes and waits for the confirm, the whole within the confirm timeout; retries
    /// once on a new connection when the channel was lost before the confirm (at-least-once:
    /// the retry may duplicate). With `mandatory`, an unroutable message is an error.
    pub(super) async fn publish_raw(
        self: &Arc<Self>,
        exchange: &str,
        routing_key: &str,
        properties: BasicProperties,
        payload: &[u8],
        mandatory: bool,
    ) -> Result<(), Reason> {
        let timeout = self.config.confirm_timeout;
        let mut last_error = None;
        for _ in 0..2 {
            let publisher = self
                .publisher()
                .await
                .map_err(|e| Reason::caused_by("no publisher connection", e))?;
            let attempt = async {
                publisher
                    .channel
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
                    .await?
                    .await
            };
            let confirmation = match tokio::time::timeout(timeout, attempt).await {
                Ok(confirmation) => confirmation,
                Err(_) => {
                    let blocked = if publisher.blocked() {
                        " (the broker blocks this connection: a memory or disk alarm)"
                    } else {
                        ""
                    };
                    return Err(Reason::from(format!(
                        "no publisher confirm within {timeout:?}{blocked}; the message may \
                         or may not have been taken"
                    )));
                }
            };
            match confirmation {
                Ok(Confirmation::Ack(None)) => return Ok(()),
                Ok(Confirmation::Ack(Some(_))) => {
                    return Err(Reason::from(format!(
                        "unroutable: no queue bound for `{routing_key}`"
                    )));
                }
                Ok(Confirmation::Nack(_)) => {
                    return Err(Reason::from("the broker nacked the message".to_string()));
                }
                Ok(Confirmation::NotRequested) => {
                    return Err(Reason::from(
                        "publisher confirms are not enabled".to_string(),
                    ));
                }
                Err(e) => last_error = Some(Reason::caused_by("the publish failed", e)),
            }
        }
        Err(last_error.unwrap_or_else(|| Reason::from("the publish failed".to_string())))
    }
}
