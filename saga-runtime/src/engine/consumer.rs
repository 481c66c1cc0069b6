//! The consumers of a saga's topics: one fenced transition per message.
//!
//! A delivery runs only if the store says the saga is at the delivery's sequence number and
//! nobody else holds it ([`SagaStore::claim`](crate::store::SagaStore::claim)); a stale one
//! (the saga moved on or ended) is acked and dropped without running anything; one whose saga
//! another run holds comes back after a lease (to be dropped as stale then, or to take over
//! from a dead replica). The transition is recorded
//! with a compare-and-set on that sequence number, the next state is published with broker
//! confirmation, and only then is the delivery acked. A retryable failure goes back to the
//! broker (nack with the policy's delay), its attempt count kept in the store. Every loop is
//! bounded: past [`TransportConfig::max_deliveries`](crate::transport::TransportConfig) a
//! delivery is dead-lettered and its saga recorded stuck.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use tokio::sync::OwnedSemaphorePermit;
use tracing::{debug, error, warn};

use super::driver::{Flow, Journal, Ran, Start, drive};
use super::envelope::{Envelope, EnvelopeError, decode, stuck_on_definition};
use super::progress::{FailedStep, Progress};
use super::runtime::Runtime;
use crate::error::{Report, StuckAt};
use crate::observe;
use crate::store::{Advance, Claimed, Custody, HistoryEntry, Hold, StoredState, Written};
use crate::transport::{Delivery, Disposition, TransportError};
use crate::{Saga, SagaContext, SagaError, StepError};

/// The consumer of one topic of saga `S`, as a `tower::Service` of deliveries: one fenced
/// transition per delivery, answering how to settle it. Never fails (every problem is a
/// [`Disposition`]: a nack, a dead letter) and is always ready; wrap it in layers with
/// [`Orchestrator::serve_layered`](super::Orchestrator::serve_layered).
pub struct ConsumerService<S: Saga> {
    rt: Arc<Runtime<S>>,
    topic: Arc<str>,
}

impl<S: Saga> ConsumerService<S> {
    pub(super) fn new(rt: Arc<Runtime<S>>, topic: &str) -> Self {
        Self {
            rt,
            topic: Arc::from(topic),
        }
    }

    /// The logical topic this consumer handles.
    pub fn topic(&self) -> &str {
        &self.topic
    }
}

impl<S: Saga> Clone for ConsumerService<S> {
    fn clone(&self) -> Self {
        Self {
            rt: Arc::clone(&self.rt),
            topic: Arc::clone(&self.topic),
        }
    }
}

impl<S: Saga> std::fmt::Debug for ConsumerService<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsumerService")
            .field("saga", &S::description().name)
            .field("topic", &self.topic)
            .finish()
    }
}

impl<S: Saga> tower::Service<Delivery> for ConsumerService<S> {
    type Response = Disposition;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Disposition, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, delivery: Delivery) -> Self::Future {
        let rt = Arc::clone(&self.rt);
        let topic = Arc::clone(&self.topic);
        // Decoded here, not in the future: the future then holds the decoded saga, and the
        // delivery (its headers, topic and payload) is freed before the step runs. The
        // transport's side of the delivery keeps what a redelivery needs.
        match decode::<S>(&delivery.payload) {
            Ok(envelope) => Box::pin(consume(
                rt,
                topic,
                Box::new(Arrived::new(envelope, delivery.delivery_count)),
            )),
            Err(reason @ EnvelopeError::Undecodable { .. }) => {
                Box::pin(async move { Ok(undecodable(&rt, &topic, &delivery, reason).await) })
            }
            Err(reason) => {
                error!(topic = &*topic, trace_id = delivery.trace_id(), %reason, "dead-lettering a message this consumer cannot process");
                Box::pin(std::future::ready(Ok(Disposition::DeadLetter {
                    reason: reason.to_string(),
                })))
            }
        }
    }
}

/// How long a delivery waits before it comes again after a store or broker failure: the
/// redelivery delay doubled per delivery, at most a lease.
fn backoff<S: Saga>(rt: &Runtime<S>, delivery_count: u32) -> Disposition {
    let doubling = rt
        .config
        .redelivery_delay
        .saturating_mul(1 << delivery_count.saturating_sub(1).min(16));
    Disposition::Nack {
        delay: Some(doubling.min(rt.config.lease)),
    }
}

/// A decoded delivery: what its transition needs of the message, and nothing else.
struct Arrived<S: Saga> {
    cx: SagaContext,
    seq: u64,
    route: Option<String>,
    failure: Option<FailedStep>,
    state: S::State,
    delivery_count: u32,
}

impl<S: Saga> Arrived<S> {
    fn new(envelope: Envelope<S::State>, delivery_count: u32) -> Self {
        let Envelope {
            trace_id,
            seq,
            metadata,
            route,
            failure,
            state,
            ..
        } = envelope;
        Self {
            cx: SagaContext::new(S::description().name, trace_id).with_metadata(metadata),
            seq,
            route,
            failure,
            state,
            delivery_count,
        }
    }
}

/// Runs the transition of a decoded delivery, and says how to settle the delivery.
///
/// Not an `async fn`: its future is an `async move` block that uses its arguments in place,
/// where an `async fn` would hold them twice (as arguments and as the locals they move to) for
/// as long as the step runs. `arrived` comes boxed: an argument is held for the future's whole
/// life, and its state and failure are moved into the driver once the saga is claimed; out of
/// the box, they are held once, by the driver, while the step runs.
#[expect(
    clippy::manual_async_fn,
    reason = "an async fn would hold its arguments twice while the step runs"
)]
fn consume<S: Saga>(
    rt: Arc<Runtime<S>>,
    topic: Arc<str>,
    mut arrived: Box<Arrived<S>>,
) -> impl Future<Output = Result<Disposition, Infallible>> + Send + 'static {
    async move {
        let (rt, topic) = (&*rt, &*topic);
        let seq = arrived.seq;
        if S::cursor(&arrived.state).is_terminal() {
            let reason = format!(
                "the message holds a finished saga ({:?}): nothing to run",
                S::cursor(&arrived.state)
            );
            error!(topic, trace_id = arrived.cx.trace_id(), %reason, "dead-lettering");
            return Ok(Disposition::DeadLetter { reason });
        }
        let max_deliveries = rt.transport.config().max_deliveries;
        if arrived.delivery_count > max_deliveries {
            let reason = format!(
                "delivered {} times, over the bound of {max_deliveries} (transport max_deliveries); \
                 the saga is recorded stuck at this transition",
                arrived.delivery_count
            );
            let (cx, state, failure) = (&arrived.cx, &arrived.state, arrived.failure);
            let stuck = |attempts| stuck_error::<S>(cx, state, failure, attempts, reason.clone());
            // Boxed: a rare path, which inline would size every delivery's future.
            return Ok(Box::pin(give_up(rt, cx, topic, seq, stuck, None, reason.clone())).await);
        }
        // Wait for a slot before claiming, so the lease does not run out in the queue. The slot
        // is given back once the step has run (see `Relay::slot`).
        let queued = rt.step_slots.as_ref().map(|_| rt.observe.queued());
        let slot = match &rt.step_slots {
            Some(slots) => Arc::clone(slots).acquire_owned().await.ok(),
            None => None,
        };
        drop(queued);
        // Made before the claim, which borrows its token: one token held, not two.
        let mut relay = Relay {
            rt,
            token: rt.token(),
            seq,
            route: arrived.route.take(),
            topic,
            slot,
        };
        let claim = rt.delivery_claim(&arrived.cx, seq, &relay.token);
        let (start, mode) = match rt.store.claim(claim).await {
            Ok(Claimed::Won {
                attempt,
                compensate,
                mode,
                ..
            }) => (
                Start {
                    attempt,
                    compensate,
                },
                mode,
            ),
            Ok(Claimed::Stale { current }) => {
                debug!(
                    topic,
                    trace_id = arrived.cx.trace_id(),
                    seq,
                    current,
                    "stale or duplicate delivery dropped"
                );
                return Ok(Disposition::Ack);
            }
            Ok(Claimed::Busy) => {
                // Another run holds the saga: a duplicate while it runs, or the copy of a
                // replica that died. Come back after a lease: by then it moved on (this copy is
                // stale) or its custody lapsed (this copy takes it over).
                debug!(
                    topic,
                    trace_id = arrived.cx.trace_id(),
                    seq,
                    "another run holds the saga: delivery held back for a lease"
                );
                return Ok(Disposition::Nack {
                    delay: Some(rt.config.lease),
                });
            }
            Ok(Claimed::Finished) => {
                debug!(
                    topic,
                    trace_id = arrived.cx.trace_id(),
                    seq,
                    "delivery of a finished saga dropped"
                );
                return Ok(Disposition::Ack);
            }
            Ok(Claimed::Missing) => return Ok(missing(&arrived.cx, topic)),
            Err(error) => {
                warn!(topic, trace_id = arrived.cx.trace_id(), error = %Report(&error), "cannot claim the saga; redelivering later");
                return Ok(backoff(rt, arrived.delivery_count));
            }
        };
        let Arrived {
            cx, failure, state, ..
        } = *arrived;
        let cx = rt.observe.attach(cx, Some(mode));
        Ok(drive(
            &*rt.saga,
            &cx,
            &rt.policies,
            state,
            failure,
            start,
            &mut relay,
        )
        .await)
    }
}

/// A message whose state the deployed definition cannot read (a step was added, removed,
/// reordered or retyped with the saga in flight): the saga is recorded stuck, naming both
/// definition versions, with the message kept as its state, and the message is dead-lettered.
/// Nothing is dropped: deploy a definition that reads it, then resume or replay it.
async fn undecodable<S: Saga>(
    rt: &Runtime<S>,
    topic: &str,
    delivery: &Delivery,
    reason: EnvelopeError,
) -> Disposition {
    let EnvelopeError::Undecodable { head, deployed, .. } = &reason else {
        unreachable!("called for undecodable states only")
    };
    let text = reason.to_string();
    let raw = std::str::from_utf8(&delivery.payload)
        .ok()
        .map(StoredState::from);
    if head.trace_id.is_empty() || raw.is_none() {
        error!(topic, %text, "dead-lettering a message whose state does not decode");
        return Disposition::DeadLetter { reason: text };
    }
    let cx = SagaContext::for_saga::<S>(head.trace_id.as_str());
    let (written, deployed) = (head.version, *deployed);
    let stuck = |attempts| stuck_on_definition(&cx, written, deployed, attempts, text.clone());
    give_up(rt, &cx, topic, head.seq, stuck, raw.as_ref(), text.clone()).await
}

/// A delivery whose saga has no record: nothing can fence it, so it is dead-lettered.
fn missing(cx: &SagaContext, topic: &str) -> Disposition {
    let reason = format!(
        "no saga record for trace id {}: it was never begun, was removed, or expired (or the store \
         lost it: an in-memory store does not survive its process)",
        cx.trace_id()
    );
    error!(topic, trace_id = cx.trace_id(), %reason, "dead-lettering");
    Disposition::DeadLetter { reason }
}

/// Records the saga stuck at the delivery's transition and dead-letters the delivery with
/// `reason`. A delivery whose saga moved on, ended or is held by a live run is only a stale
/// copy: it is acked and dropped, not dead-lettered.
///
/// `stuck` builds the outcome from the attempt count of the claim; `kept` is the state the
/// record keeps for an operator (the raw message of a state that does not decode), if any.
async fn give_up<S: Saga>(
    rt: &Runtime<S>,
    cx: &SagaContext,
    topic: &str,
    seq: u64,
    stuck: impl FnOnce(u32) -> SagaError,
    kept: Option<&StoredState>,
    reason: String,
) -> Disposition {
    let token = rt.token();
    let claim = rt.delivery_claim(cx, seq, &token);
    let (attempt, mode) = match rt.store.claim(claim).await {
        Ok(Claimed::Won { attempt, mode, .. }) => (attempt, Some(mode)),
        Ok(Claimed::Missing) => return missing(cx, topic),
        Ok(other) => {
            debug!(topic, trace_id = cx.trace_id(), ?other, %reason, "a stale copy past the delivery bound dropped");
            return Disposition::Ack;
        }
        Err(e) => {
            error!(topic, trace_id = cx.trace_id(), error = %Report(&e), %reason, "cannot record the saga stuck; dead-lettering its message");
            return Disposition::DeadLetter { reason };
        }
    };
    error!(topic, trace_id = cx.trace_id(), %reason, "dead-lettering and recording the saga stuck");
    {
        let result: Result<S::Output, SagaError> = Err(stuck(attempt));
        let advance = Advance {
            state: kept,
            ..rt.final_advance(cx, seq, &token, &result)
        };
        match rt.advance(advance).await {
            Ok(Written::Done) => {
                observe::ended(&rt.observe.attach(cx.clone(), mode), &result);
                rt.notify(cx, result).await
            }
            Ok(refused) => debug!(
                topic,
                trace_id = cx.trace_id(),
                ?refused,
                "the saga moved on meanwhile"
            ),
            Err(e) => {
                error!(topic, trace_id = cx.trace_id(), error = %Report(&e), "cannot record the saga stuck")
            }
        }
    }
    Disposition::DeadLetter { reason }
}

/// The saga stuck at the transition `state` names, after `attempts`, for `reason`.
fn stuck_error<S: Saga>(
    cx: &SagaContext,
    state: &S::State,
    failure: Option<super::progress::FailedStep>,
    attempts: u32,
    reason: String,
) -> SagaError {
    let cursor = S::cursor(state);
    let name = super::transition::step_at::<S>(cursor)
        .map(|s| s.name.to_string())
        .unwrap_or_default();
    let stuck = match cursor {
        crate::Cursor::Compensate(_) => StuckAt::Compensation(name),
        _ => StuckAt::Step(name),
    };
    SagaError::Stuck {
        saga: cx.saga().to_string(),
        trace_id: cx.trace_id().to_string(),
        stuck,
        attempts,
        last_error: StepError::fatal(reason),
        failed_step: failure.map(|f| (f.step, f.error)),
    }
}

/// Journals into the store and hands every next transition to the broker.
struct Relay<'r, S: Saga> {
    rt: &'r Runtime<S>,
    token: Arc<str>,
    seq: u64,
    route: Option<String>,
    topic: &'r str,
    /// The step slot ([`OrchestratorConfig::max_concurrent_steps`](super::OrchestratorConfig))
    /// this delivery's execution holds: released as soon as the step (or compensation) has
    /// run, when the journal is first called, so the store write, the publish and the ack that
    /// follow do not count against the cap on executions, and the next delivery's step runs
    /// meanwhile. (A consumer's drive runs one execution: every journal call stops it.)
    slot: Option<OwnedSemaphorePermit>,
}

impl<S: Saga> Relay<'_, S> {
    /// Settles the delivery after a refused write: a duplicate run moved on or the saga ended.
    fn refused(&self, cx: &SagaContext, refused: Written) -> Disposition {
        match refused {
            Written::Missing => missing(cx, self.topic),
            _ => {
                debug!(
                    topic = self.topic,
                    trace_id = cx.trace_id(),
                    ?refused,
                    "another run moved the saga on: this delivery's result is dropped"
                );
                Disposition::Ack
            }
        }
    }

    /// Records the saga's end with `history` (a stuck saga keeps the state `kept`); acks, or
    /// dead-letters with `dead_letter` as the reason.
    async fn finish(
        &mut self,
        cx: &SagaContext,
        result: Result<S::Output, SagaError>,
        dead_letter: Option<String>,
        history: &[HistoryEntry],
        kept: Option<&StoredState>,
    ) -> Disposition {
        let advance = Advance {
            history,
            state: kept,
            ..self.rt.final_advance(cx, self.seq, &self.token, &result)
        };
        match self.rt.advance(advance).await {
            Ok(Written::Done) => observe::ended(cx, &result),
            Ok(refused) => return self.refused(cx, refused),
            Err(e) => {
                warn!(topic = self.topic, trace_id = cx.trace_id(), error = %Report(&e), "cannot record the outcome; the transition runs again later");
                return Disposition::Nack {
                    delay: Some(self.rt.config.lease),
                };
            }
        }
        self.rt.notify(cx, result).await;
        match dead_letter {
            Some(reason) => {
                error!(topic = self.topic, trace_id = cx.trace_id(), %reason, "saga stuck: dead-lettering its message");
                Disposition::DeadLetter { reason }
            }
            None => Disposition::Ack,
        }
    }

    /// Records the next state and publishes it; gives the state back when an operator asked
    /// for the saga to be compensated instead.
    async fn hand_over(
        &mut self,
        cx: &SagaContext,
        state: S::State,
        failure: Option<super::progress::FailedStep>,
        history: &[HistoryEntry],
    ) -> Result<Disposition, S::State> {
        let next = self.seq + 1;
        let payload =
            match self
                .rt
                .encode(cx, &state, failure.as_ref(), next, self.route.as_deref())
            {
                Ok(payload) => payload,
                Err(e) => return Ok(self.stuck(cx, &state, failure, e.to_string()).await),
            };
        let limit = self.rt.transport.config().max_payload;
        if payload.len() > limit {
            let reason = format!(
                "the next state is {} bytes, over the transport's max_payload of {limit} bytes",
                payload.len()
            );
            return Ok(self.stuck(cx, &state, failure, reason).await);
        }
        let queued = Custody::queued(&self.token, self.rt.config.requeue_after);
        let advance = Advance {
            history,
            ..self
                .rt
                .running_advance(cx, self.seq, &self.token, (&state, &payload), queued)
        };
        match self.rt.advance(advance).await {
            Ok(Written::Done) => self.seq = next,
            Ok(Written::CompensationRequested) => return Err(state),
            Ok(refused) => return Ok(self.refused(cx, refused)),
            Err(e) => {
                warn!(topic = self.topic, trace_id = cx.trace_id(), error = %Report(&e), "cannot record the transition; it runs again later");
                return Ok(Disposition::Nack {
                    delay: Some(self.rt.config.lease),
                });
            }
        }
        let cursor = S::cursor(&state);
        Ok(
            match self
                .rt
                .publish(cx, cursor, self.route.as_deref(), next, payload, None)
                .await
            {
                Ok(()) => Disposition::Ack,
                Err(TransportError::TooLarge { size, limit, .. }) => {
                    let reason = format!(
                        "the next state is {size} bytes, over the broker's limit of {limit} bytes"
                    );
                    self.stuck(cx, &state, failure, reason).await
                }
                Err(e) => {
                    // The transition is recorded; let the sweeper publish it again soon.
                    warn!(topic = self.topic, trace_id = cx.trace_id(), error = %Report(&e), "cannot publish the next state; the recovery sweeper publishes it again");
                    let soon = Custody::queued(&self.token, self.rt.config.redelivery_delay);
                    if let Err(e) = self.rt.hold(cx, next, &self.token, soon).await {
                        warn!(topic = self.topic, trace_id = cx.trace_id(), error = %Report(&e), "cannot shorten the queued lease; the sweeper publishes it after requeue_after");
                    }
                    Disposition::Ack
                }
            },
        )
    }

    /// The next state cannot travel: the saga is recorded stuck at the transition that
    /// produced it, and the delivery dead-lettered.
    async fn stuck(
        &mut self,
        cx: &SagaContext,
        state: &S::State,
        failure: Option<super::progress::FailedStep>,
        reason: String,
    ) -> Disposition {
        let kept = self
            .rt
            .encode(cx, state, failure.as_ref(), self.seq, self.route.as_deref())
            .ok();
        let error = stuck_error::<S>(cx, state, failure, 1, reason);
        let reason = error.to_string();
        self.finish(cx, Err(error), Some(reason), &[], kept.as_ref())
            .await
    }
}

impl<S: Saga> Journal<S> for Relay<'_, S> {
    type Stop = Disposition;

    async fn record(
        &mut self,
        cx: &SagaContext,
        mut progress: Progress<S>,
        ran: Ran,
    ) -> Flow<S, Self::Stop> {
        self.slot = None;
        let mut history = vec![ran.entry::<S>(&self.token)];
        // Not boxed here: the driver boxes every `record` (it runs once per delivery, after
        // the step), so its size does not count while the step runs.
        loop {
            return Flow::Stop(match progress {
                Progress::Running { state, failure } => {
                    match self.hand_over(cx, state, failure, &history).await {
                        Ok(disposition) => disposition,
                        Err(state) => {
                            let ran = Ran::OperatorRollback {
                                cursor: S::cursor(&state),
                            };
                            warn!(
                                topic = self.topic,
                                trace_id = cx.trace_id(),
                                "compensating the saga on an operator's request"
                            );
                            history.push(ran.entry::<S>(&self.token));
                            progress = Progress::operator_rollback(cx, state);
                            continue;
                        }
                    }
                }
                done => {
                    let dead_letter = match &done {
                        Progress::Stuck { error, .. } => Some(error.to_string()),
                        _ => None,
                    };
                    let kept = self
                        .rt
                        .kept_state(cx, &done, self.seq, self.route.as_deref());
                    let result = done.into_outcome(cx);
                    self.finish(cx, result, dead_letter, &history, kept.as_ref())
                        .await
                }
            });
        }
    }

    async fn retry_later(
        &mut self,
        cx: &SagaContext,
        attempt: u32,
        delay: Duration,
        ran: Ran,
    ) -> Option<Self::Stop> {
        self.slot = None;
        // Back to the broker: any consumer may claim the redelivery; the store keeps the
        // attempt count and the failed attempt's history entry.
        let queued = Custody::queued(&self.token, delay + self.rt.config.requeue_after);
        let hold = Hold {
            history: &[ran.entry::<S>(&self.token)],
            ..self.rt.hold_of(cx, self.seq, &self.token, queued)
        };
        if let Err(e) = self.rt.store.hold(hold).await {
            warn!(topic = self.topic, trace_id = cx.trace_id(), error = %Report(&e), attempt, "cannot hand the retry to the broker; it waits for the lease");
            return Some(Disposition::Nack {
                delay: Some(delay.max(self.rt.config.lease)),
            });
        }
        Some(Disposition::Nack { delay: Some(delay) })
    }

    fn keep_custody(&self, cx: &SagaContext) -> impl Future<Output = Self::Stop> + Send {
        // A combinator, not an `async fn`: held beside every step, it holds nothing more than
        // the renewal.
        self.rt
            .renew_until_lost(cx, self.seq, &self.token)
            .map(|()| Disposition::Ack)
    }
}
