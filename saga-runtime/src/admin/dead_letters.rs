//! Reading and replaying dead letters through the saga's own transport.
//!
//! A dead-letter topic is read by subscribing to it with the consumer group that owns it: each
//! delivery is **held** (not settled) while the admin collects them, so no message is seen
//! twice in one read and none is lost: when the read settles, every held delivery is either
//! nacked back to its dead-letter topic (listed, or not chosen for replay) or, for a replay,
//! acked only after its copy was published to the original topic with broker confirmation. A
//! crash between the publish and the ack leaves the dead letter in place (a second replay
//! publishes it again, and the saga's fence drops the copy it no longer needs): a replay may
//! repeat, it never loses a message.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};

use super::{Admin, AdminError};
use crate::error::Report;
use crate::transport::{
    DEAD_LETTER_REASON_HEADER, Delivery, Disposition, MESSAGE_ID_HEADER, Message, SubscribeOptions,
    Subscription, TRACE_ID_HEADER, Transport, dead_letter_topic,
};

/// A dead-lettered message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadLetter {
    /// The saga it belongs to.
    pub saga: String,
    /// The logical topic it was dead-lettered from (and is replayed to).
    pub topic: String,
    /// Its message id (`{trace_id}/{seq}`, as the engine published it), the key of a single
    /// replay.
    pub message_id: String,
    /// Its trace id.
    pub trace_id: String,
    /// Why it was dead-lettered.
    pub reason: String,
    /// Its size in bytes.
    pub bytes: usize,
}

/// What a replay did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Replayed {
    /// Published again and removed from the dead-letter topic.
    pub replayed: Vec<DeadLetter>,
    /// Could not be published again: left on the dead-letter topic, with the error.
    pub failed: Vec<(DeadLetter, String)>,
}

/// The most dead letters one read holds at once.
const MAX_HELD: usize = 1000;

/// A delivery held until the read decides how to settle it.
struct Held {
    letter: DeadLetter,
    headers: crate::transport::Headers,
    payload: Bytes,
    settle: oneshot::Sender<Disposition>,
}

/// The dead letters of the chosen sagas' topics, held: the subscriptions, and what they
/// delivered.
struct Read {
    subscriptions: Vec<Subscription>,
    held: Vec<Held>,
    closing: Arc<AtomicBool>,
}

impl Read {
    /// Subscribes to every dead-letter topic of `saga` (every registered saga when `None`)
    /// and collects up to `limit` deliveries, until none came for the admin's settle time.
    async fn collect(admin: &Admin, saga: Option<&str>, limit: usize) -> Result<Self, AdminError> {
        let limit = limit.clamp(1, MAX_HELD);
        let (tx, mut rx) = mpsc::channel::<Held>(limit);
        let closing = Arc::new(AtomicBool::new(false));
        let mut subscriptions = Vec::new();
        let chosen: Vec<_> = match saga {
            Some(name) => vec![(name, admin.ops(name)?)],
            None => admin.sagas.iter().map(|(name, ops)| (*name, ops)).collect(),
        };
        for (name, ops) in chosen {
            let (transport, topics) = ops.topics();
            for (topic, group) in topics {
                let handler = holder(name, &topic, tx.clone(), Arc::clone(&closing));
                let options = SubscribeOptions {
                    group,
                    concurrency: limit,
                };
                let dead = dead_letter_topic(&topic);
                subscriptions.push(transport.subscribe(&dead, options, handler).await?);
            }
        }
        drop(tx);
        let mut held = Vec::new();
        // The first delivery of a fresh subscription takes a broker round trip or two.
        let mut wait = admin.settle.max(Duration::from_millis(500));
        while held.len() < limit {
            match tokio::time::timeout(wait, rx.recv()).await {
                Ok(Some(delivery)) => held.push(delivery),
                Ok(None) | Err(_) => break,
            }
            wait = admin.settle;
        }
        Ok(Self {
            subscriptions,
            held,
            closing,
        })
    }

    /// Stops the subscriptions and settles the held deliveries, in order, with
    /// `dispositions` (a nack for any left without one).
    async fn settle(self, dispositions: impl IntoIterator<Item = Disposition>) {
        let mut dispositions = dispositions.into_iter();
        self.closing.store(true, Ordering::SeqCst);
        let stopping: Vec<_> = self
            .subscriptions
            .into_iter()
            .map(|subscription| tokio::spawn(subscription.shutdown(Duration::from_secs(5))))
            .collect();
        for held in self.held {
            let disposition = dispositions
                .next()
                .unwrap_or(Disposition::Nack { delay: None });
            // The handler may be gone (its subscription aborted): then the broker redelivers.
            let _ = held.settle.send(disposition);
        }
        for stopping in stopping {
            let _ = stopping.await;
        }
    }
}

/// The handler of one dead-letter subscription: hands each delivery to the read and waits for
/// its disposition (a nack when the read is over or gone).
fn holder(
    saga: &str,
    topic: &str,
    tx: mpsc::Sender<Held>,
    closing: Arc<AtomicBool>,
) -> Arc<dyn crate::transport::Handler> {
    let (saga, topic) = (saga.to_string(), topic.to_string());
    Arc::new(move |delivery: Delivery| {
        let (saga, topic, tx, closing) = (
            saga.clone(),
            topic.clone(),
            tx.clone(),
            Arc::clone(&closing),
        );
        async move {
            let requeue = Disposition::Nack { delay: None };
            if closing.load(Ordering::SeqCst) {
                return requeue;
            }
            let (settle, settled) = oneshot::channel();
            let header = |name: &str| delivery.headers.get(name).cloned().unwrap_or_default();
            let letter = DeadLetter {
                saga,
                topic,
                message_id: header(MESSAGE_ID_HEADER),
                trace_id: header(TRACE_ID_HEADER),
                reason: header(DEAD_LETTER_REASON_HEADER),
                bytes: delivery.payload.len(),
            };
            let held = Held {
                letter,
                headers: delivery.headers,
                payload: delivery.payload,
                settle,
            };
            if tx.send(held).await.is_err() {
                return requeue;
            }
            settled.await.unwrap_or(requeue)
        }
    })
}

pub(super) async fn list(
    admin: &Admin,
    saga: Option<&str>,
    limit: usize,
) -> Result<Vec<DeadLetter>, AdminError> {
    let read = Read::collect(admin, saga, limit).await?;
    let letters = read.held.iter().map(|held| held.letter.clone()).collect();
    read.settle([]).await;
    Ok(letters)
}

pub(super) async fn replay(
    admin: &Admin,
    saga: Option<&str>,
    message_id: Option<&str>,
) -> Result<Replayed, AdminError> {
    let read = Read::collect(admin, saga, MAX_HELD).await?;
    let mut outcome = Replayed::default();
    let mut dispositions = Vec::with_capacity(read.held.len());
    for held in &read.held {
        let chosen = message_id.is_none_or(|id| held.letter.message_id == id);
        if !chosen {
            dispositions.push(Disposition::Nack { delay: None });
            continue;
        }
        let transport = match admin.ops(&held.letter.saga) {
            Ok(ops) => ops.topics().0,
            Err(e) => {
                outcome.failed.push((held.letter.clone(), e.to_string()));
                dispositions.push(Disposition::Nack { delay: None });
                continue;
            }
        };
        match republish(&*transport, held).await {
            Ok(()) => {
                info!(topic = %held.letter.topic, trace_id = %held.letter.trace_id, message_id = %held.letter.message_id, "dead letter replayed");
                outcome.replayed.push(held.letter.clone());
                dispositions.push(Disposition::Ack);
            }
            Err(e) => {
                warn!(topic = %held.letter.topic, trace_id = %held.letter.trace_id, error = %Report(&e), "cannot replay a dead letter; it stays on its dead-letter topic");
                outcome.failed.push((held.letter.clone(), e.to_string()));
                dispositions.push(Disposition::Nack { delay: None });
            }
        }
    }
    read.settle(dispositions).await;
    if let Some(id) = message_id
        && outcome.replayed.is_empty()
        && outcome.failed.is_empty()
    {
        return Err(AdminError::DeadLetterNotFound {
            message_id: id.to_string(),
        });
    }
    Ok(outcome)
}

/// Publishes a held dead letter again to the topic it came from, with broker confirmation.
/// Its message id gets a replay suffix, so a broker that deduplicates does not drop it as a
/// copy of the original.
async fn republish(
    transport: &dyn Transport,
    held: &Held,
) -> Result<(), crate::transport::TransportError> {
    let mut headers = held.headers.clone();
    headers.remove(DEAD_LETTER_REASON_HEADER);
    if let Some(id) = headers.get_mut(MESSAGE_ID_HEADER) {
        id.push_str(&format!("/replay-{}", crate::store::now_ms()));
    }
    let message = Message {
        headers,
        payload: held.payload.clone(),
    };
    transport.publish(&held.letter.topic, message).await
}
