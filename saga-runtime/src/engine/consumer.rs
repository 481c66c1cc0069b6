//! The consumers of a saga's topics: one transition per message, the next state published
//! (or the end recorded) before the ack.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use tracing::{error, info, warn};

use super::config::Routing;
use super::envelope::{Envelope, decode};
use super::inner::Inner;
use super::progress::Progress;
use super::sync::unreachable_running;
use super::topics::all_topics;
use super::transition::run_transition;
use crate::transport::{Delivery, Disposition, Handler, SubscribeOptions, Subscription};
use crate::{Saga, SagaContext, SagaError};

/// Subscribes to every topic of saga `S` for this replica.
pub(super) async fn serve<S: Saga>(inner: &Arc<Inner<S>>) -> Result<Consumers, SagaError> {
    let name = S::description().name;
    let pod = inner.config.pod_id.clone();
    let mut routes: Vec<(Option<String>, String)> = vec![(None, name.to_string())];
    if inner.config.throttled_routing == Routing::PodAffine {
        routes.push((Some(pod.clone()), format!("{name}.{pod}")));
    }
    let mut subscriptions = Vec::new();
    for (route, group) in routes {
        for topic in all_topics::<S>(route.as_deref()) {
            let options = SubscribeOptions {
                group: group.clone(),
                concurrency: inner.transport.config().concurrency_for(&topic),
            };
            let handler = Arc::new(TopicConsumer {
                inner: Arc::clone(inner),
                topic: topic.clone(),
            });
            let subscription = inner
                .transport
                .subscribe(&topic, options, handler)
                .await
                .map_err(|e| SagaError::Transport {
                    trace_id: "-".to_string(),
                    message: e.to_string(),
                })?;
            subscriptions.push(subscription);
        }
    }
    info!(saga = name, pod = %pod, topics = subscriptions.len(), "saga consumers running");
    Ok(Consumers {
        subscriptions,
        grace: inner.config.shutdown_grace,
    })
}

/// The running consumers of one orchestrator.
#[derive(Debug)]
pub struct Consumers {
    subscriptions: Vec<Subscription>,
    grace: Duration,
}

impl Consumers {
    /// Stops taking messages and lets in-flight ones finish within the configured grace;
    /// returns how many were still in flight when it gave up (they will be redelivered).
    pub async fn shutdown(self) -> usize {
        let grace = self.grace;
        let mut left = 0;
        for subscription in self.subscriptions {
            left += subscription.shutdown(grace).await;
        }
        left
    }

    /// Stops at once, as a crash would: in-flight messages are not acked and get redelivered.
    pub fn abort(self) {
        for subscription in self.subscriptions {
            subscription.abort();
        }
    }
}

/// Handles the messages of one topic: runs one transition, publishes the next state (or
/// records the end), and only then acks.
struct TopicConsumer<S: Saga> {
    inner: Arc<Inner<S>>,
    topic: String,
}

impl<S: Saga> Handler for TopicConsumer<S> {
    fn handle(&self, delivery: Delivery) -> BoxFuture<'static, Disposition> {
        let inner = Arc::clone(&self.inner);
        let topic = self.topic.clone();
        Box::pin(async move { inner.consume(&topic, delivery).await })
    }
}

impl<S: Saga> Inner<S> {
    async fn consume(&self, topic: &str, delivery: Delivery) -> Disposition {
        let envelope = match decode::<S>(&delivery.payload) {
            Ok(envelope) => envelope,
            Err(reason) => {
                error!(topic, trace_id = delivery.trace_id(), %reason, "dead-lettering a message this consumer cannot process");
                return Disposition::DeadLetter {
                    reason: reason.to_string(),
                };
            }
        };
        let Envelope {
            trace_id,
            metadata,
            route,
            failure,
            state,
            ..
        } = envelope;
        let cx = SagaContext::new(S::description().name, trace_id).with_metadata(metadata);
        if S::cursor(&state).is_terminal() {
            let reason = format!(
                "the message holds a finished saga ({:?}): nothing to run",
                S::cursor(&state)
            );
            error!(topic, trace_id = cx.trace_id(), %reason, "dead-lettering");
            return Disposition::DeadLetter { reason };
        }
        let _slot = match &self.step_slots {
            Some(slots) => Arc::clone(slots).acquire_owned().await.ok(),
            None => None,
        };
        let result = run_transition(&*self.saga, &cx, &state, 1).await;
        match Progress::<S>::after(&cx, state, failure, result) {
            Progress::Running { state, failure } => {
                // Record before publishing: once published, the next transition may end the
                // saga on another replica, and its final status must not be overwritten.
                self.record_progress(&cx, &state).await;
                if let Err(e) = self
                    .publish_state(&cx, &state, failure.as_ref(), route.as_deref())
                    .await
                {
                    warn!(topic, trace_id = cx.trace_id(), error = %e, "cannot publish the next state; the step will run again");
                    return Disposition::Nack {
                        delay: Some(self.config.redelivery_delay),
                    };
                }
                Disposition::Ack
            }
            Progress::Stuck { error, .. } => {
                if let Err(e) = self.record_final(&cx, &Err(error.clone())).await {
                    error!(topic, trace_id = cx.trace_id(), error = %e, "cannot record that the saga is stuck");
                }
                error!(topic, trace_id = cx.trace_id(), %error, "saga stuck: dead-lettering its message");
                let reason = error.to_string();
                self.notify(&cx, Err(error)).await;
                Disposition::DeadLetter { reason }
            }
            done => {
                let result = done
                    .into_result()
                    .unwrap_or_else(|| unreachable_running(&cx));
                if let Err(e) = self.record_final(&cx, &result).await {
                    warn!(topic, trace_id = cx.trace_id(), error = %e, "cannot record the outcome; the step will run again");
                    return Disposition::Nack {
                        delay: Some(self.config.redelivery_delay),
                    };
                }
                self.notify(&cx, result).await;
                Disposition::Ack
            }
        }
    }
}
