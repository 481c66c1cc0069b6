//! The recovery sweeper: every replica looks, every
//! [`sweep_interval`](super::OrchestratorConfig::sweep_interval), for sagas whose custody lapsed
//! (their replica died, or their next message was never published) and resumes each from the
//! state the store holds, in the mode it runs in.
//!
//! Each candidate is claimed with a compare-and-set on its lease, so exactly one replica
//! resumes it. A sync saga is finished (forward, or compensated) on the claiming replica, its
//! outcome recorded for a caller that retries the id; an async or throttled saga's message is
//! published again from the stored state.
//!
//! A message published again may only be waiting in a backlog, so each saga's re-publications
//! back off: the n-th since its last transition (counted in the record,
//! [`SagaRecord::requeues`](crate::store::SagaRecord::requeues)) leaves it queued for
//! [`OrchestratorConfig::requeue_delay`](super::OrchestratorConfig::requeue_delay)`(n)`,
//! `requeue_after * 2^n` up to `max_requeue_after`.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

use super::config::{Rollback, Routing};
use super::driver::{Start, drive};
use super::durable::Durable;
use super::envelope::{Envelope, EnvelopeError, decode, stuck_on_definition};
use super::runtime::Runtime;
use crate::error::Report;
use crate::observe;
use crate::store::{Advance, Claim, Claimed, Custody, Mode, StoredState, Written};
use crate::{Saga, SagaContext, SagaError};
use tracing::Instrument;

/// Most sagas claimed per sweep (the next sweep takes the rest).
const BATCH: usize = 256;

/// Runs the sweeper until `stop` is cancelled; recoveries of sync sagas run on `tasks`.
pub(super) async fn run<S: Saga>(rt: Arc<Runtime<S>>, stop: CancellationToken, tasks: TaskTracker) {
    let Some(interval) = rt.config.sweep_interval else {
        return;
    };
    let saga = S::description().name;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
        let expired = match rt.store.expired(saga, BATCH).await {
            Ok(expired) => expired,
            Err(error) => {
                warn!(saga, error = %Report(&error), "recovery sweeper cannot read expired leases; trying again next sweep");
                continue;
            }
        };
        for trace_id in expired {
            if stop.is_cancelled() {
                return;
            }
            let span = observe::recovery_span(&rt.observe, saga, &trace_id);
            recover(&rt, &trace_id, &tasks).instrument(span).await;
        }
    }
}

/// Claims `trace_id` if its lease lapsed and resumes it.
pub(super) async fn recover<S: Saga>(rt: &Arc<Runtime<S>>, trace_id: &str, tasks: &TaskTracker) {
    let token = rt.token();
    let claim = Claim {
        trace_id,
        saga: S::description().name,
        seq: None,
        token: &token,
        lease: rt.config.lease,
        recovery: true,
    };
    let (start, seq, mode, stored, requeues) = match rt.store.claim(claim).await {
        Ok(Claimed::Won {
            attempt,
            seq,
            mode,
            state,
            compensate,
            requeues,
        }) => (
            Start {
                attempt,
                compensate,
            },
            seq,
            mode,
            StoredState::from(state.unwrap_or_default()),
            requeues,
        ),
        Ok(_) => return, // another replica won it, or it moved on meanwhile
        Err(error) => {
            warn!(trace_id, error = %Report(&error), "recovery sweeper cannot claim the saga; trying again next sweep");
            return;
        }
    };
    let cx = SagaContext::new(S::description().name, trace_id.to_string());
    let cx = rt.observe.attach(cx, Some(mode));
    let envelope = match decode::<S>(stored.as_bytes()) {
        Ok(envelope) if envelope.seq == seq => envelope,
        Ok(envelope) => {
            let reason = format!(
                "the stored state is at sequence {} but the record at {seq}",
                envelope.seq
            );
            return unrecoverable(rt, &cx, seq, &token, reason, &stored).await;
        }
        Err(EnvelopeError::Undecodable { head, deployed, .. }) if head.version != deployed => {
            let text = format!(
                "the stored state was written by definition version {} and does not decode under the deployed version {deployed}; deploy a definition that reads it, then resume the saga",
                head.version
            );
            error!(trace_id, %text, "recording the saga stuck; its record keeps the state");
            let error = stuck_on_definition(&cx, head.version, deployed, start.attempt, text);
            let result: Result<S::Output, SagaError> = Err(error);
            let advance = Advance {
                state: Some(&stored),
                ..rt.final_advance(&cx, seq, &token, &result)
            };
            if let Ok(Written::Done) = rt.advance(advance).await {
                observe::ended(&cx, &result);
                rt.notify(&cx, result).await;
            }
            return;
        }
        Err(reason) => {
            return unrecoverable(rt, &cx, seq, &token, reason.to_string(), &stored).await;
        }
    };
    info!(
        trace_id,
        ?mode,
        seq,
        attempt = start.attempt,
        "recovering a saga whose custody lapsed"
    );
    let Envelope {
        metadata,
        route,
        failure,
        state,
        ..
    } = envelope;
    let original_route = route.clone();
    let cx = cx.with_metadata(metadata);
    // A pod-affine saga's pod is gone (its custody lapsed): carry it on this replica's topics.
    let route = match (&route, &rt.config.throttled_routing) {
        (Some(pod), _) if *pod == rt.config.pod_id => route,
        (Some(_), Routing::PodAffine) => Some(rt.config.pod_id.clone()),
        (Some(_), Routing::Shared) => None,
        (None, _) => None,
    };
    let rerouted = route != original_route;
    let stored = if rerouted {
        match rt.encode(&cx, &state, failure.as_ref(), seq, route.as_deref()) {
            Ok(payload) => payload,
            Err(e) => return unrecoverable(rt, &cx, seq, &token, e.to_string(), &stored).await,
        }
    } else {
        stored
    };
    match mode {
        Mode::Sync => {
            let rt = Arc::clone(rt);
            tasks.spawn(Instrument::in_current_span(async move {
                let mut journal = Durable {
                    rt: &rt,
                    token,
                    seq,
                    route,
                    rollback: Rollback::Inline,
                    retried: Vec::new(),
                };
                let result = drive(
                    &*rt.saga,
                    &cx,
                    &rt.policies,
                    state,
                    failure,
                    start,
                    &mut journal,
                )
                .await;
                info!(
                    trace_id = cx.trace_id(),
                    ok = result.is_ok(),
                    "recovered sync saga ended"
                );
            }));
        }
        Mode::Async | Mode::Throttled => {
            // Exponential backoff per saga: a message that only waits in a backlog older than
            // `requeue_after` is copied a few times, not once every `requeue_after`.
            let delay = rt.config.requeue_delay(requeues);
            let requeue = Custody::queued(&token, delay);
            match rt.hand_back(&cx, seq, &token, requeue).await {
                Ok(Written::Done) => {}
                Ok(refused) => {
                    warn!(
                        trace_id,
                        ?refused,
                        "the recovered saga moved on meanwhile; not publishing it again"
                    );
                    return;
                }
                Err(error) => {
                    warn!(trace_id, error = %Report(&error), "cannot hand the recovered saga to the broker; trying again next sweep");
                    return;
                }
            }
            rt.observe.metrics.requeues.increment(1);
            info!(
                trace_id,
                seq,
                requeues = requeues.saturating_add(1),
                next_delay = ?delay,
                "publishing the saga's message again; the next re-publication waits the delay"
            );
            let cursor = S::cursor(&state);
            if let Err(error) = rt
                .publish(&cx, cursor, route.as_deref(), seq, stored, Some(&token))
                .await
            {
                warn!(trace_id, error = %Report(&error), "cannot publish the recovered saga; trying again shortly");
                let soon = Custody::queued(&token, rt.config.redelivery_delay);
                if let Err(error) = rt.hold(&cx, seq, &token, soon).await {
                    warn!(trace_id, error = %Report(&error), "cannot shorten the recovered saga's lease");
                }
            }
        }
    }
}

/// The stored state cannot be read back (a saga definition changed incompatibly, corrupt
/// data): the saga is ended as invalid, visibly, rather than retried forever. Its record keeps
/// the stored state for an operator (it is listed as stuck).
async fn unrecoverable<S: Saga>(
    rt: &Runtime<S>,
    cx: &SagaContext,
    seq: u64,
    token: &str,
    reason: String,
    stored: &StoredState,
) {
    error!(trace_id = cx.trace_id(), %reason, "cannot resume the saga from its stored state; recording it failed");
    let result: Result<S::Output, SagaError> = Err(SagaError::InvalidState {
        saga: cx.saga().to_string(),
        trace_id: cx.trace_id().to_string(),
        message: format!("cannot resume from the stored state: {reason}"),
    });
    let advance = Advance {
        state: Some(stored),
        ..rt.final_advance(cx, seq, token, &result)
    };
    match rt.advance(advance).await {
        Ok(Written::Done) => observe::ended(cx, &result),
        Ok(refused) => warn!(
            trace_id = cx.trace_id(),
            ?refused,
            "the saga moved on meanwhile"
        ),
        Err(_) => {}
    }
}
