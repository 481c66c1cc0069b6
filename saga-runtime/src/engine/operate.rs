//! What an operator does to one saga definition's sagas ([`OperateSaga`]): resume a stuck
//! saga, compensate one on request. Both go through the store's fenced writes and the same
//! recovery path as a saga whose replica died, so an operator's action never races a replica
//! into running a transition twice at once.

use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use tokio_util::task::TaskTracker;
use tracing::info;

use super::config::Routing;
use super::envelope::decode;
use super::orchestrator::Orchestrator;
use super::progress::Progress;
use super::runtime::{Runtime, running_status};
use super::sweeper;
use super::topics::all_topics;
use crate::admin::{AdminError, CompensationRequest, OperateSaga};
use crate::store::{Custody, HistoryEntry, HistoryEvent, Reopen, SagaRecord, StatusKind, Written};
use crate::transport::Transport;
use crate::{Cursor, Saga, SagaContext, SagaDescription};

impl<S: Saga> OperateSaga for Orchestrator<S> {
    fn description(&self) -> SagaDescription {
        *S::description()
    }

    fn resume<'a>(
        &'a self,
        record: &'a SagaRecord,
        by: &'a str,
    ) -> BoxFuture<'a, Result<(), AdminError>> {
        async move {
            match record.status.kind() {
                StatusKind::Stuck => {}
                status => {
                    return Err(AdminError::NotStuck {
                        trace_id: record.trace_id.clone(),
                        status,
                    });
                }
            }
            let entry = HistoryEvent::Resumed { by: by.to_string() };
            reopen(self.runtime(), record, entry, false).await
        }
        .boxed()
    }

    fn compensate<'a>(
        &'a self,
        record: &'a SagaRecord,
        by: &'a str,
    ) -> BoxFuture<'a, Result<CompensationRequest, AdminError>> {
        compensate(self.runtime(), record, by).boxed()
    }

    fn topics(&self) -> (Arc<dyn Transport>, Vec<(String, String)>) {
        let rt = self.runtime();
        let name = S::description().name;
        let mut topics: Vec<(String, String)> = all_topics::<S>(None)
            .into_iter()
            .map(|topic| (topic, name.to_string()))
            .collect();
        if rt.config.throttled_routing == Routing::PodAffine {
            let pod = &rt.config.pod_id;
            let group = format!("{name}.{pod}");
            topics.extend(
                all_topics::<S>(Some(pod))
                    .into_iter()
                    .map(|topic| (topic, group.clone())),
            );
        }
        (Arc::clone(&rt.transport), topics)
    }
}

/// The typed state a record keeps, or why it cannot be resumed from.
fn kept_state<S: Saga>(
    record: &SagaRecord,
) -> Result<super::envelope::Envelope<S::State>, AdminError> {
    let unreadable = |reason: String| AdminError::StateUnreadable {
        trace_id: record.trace_id.clone(),
        reason,
    };
    let stored = record.state.as_deref().ok_or_else(|| {
        unreadable(
            "the record keeps no state (the saga ended before stuck sagas kept theirs, or its state was invalid)"
                .to_string(),
        )
    })?;
    let envelope = decode::<S>(stored.as_bytes()).map_err(|e| unreadable(e.to_string()))?;
    if S::cursor(&envelope.state).is_terminal() {
        return Err(unreadable(format!(
            "the kept state is finished ({:?}): nothing to run",
            S::cursor(&envelope.state)
        )));
    }
    Ok(envelope)
}

/// Reopens the stuck `record` at the transition its kept state names (marked for
/// compensation if `compensate`) and hands it to the recovery path, which runs it in the
/// saga's mode.
async fn reopen<S: Saga>(
    rt: &Arc<Runtime<S>>,
    record: &SagaRecord,
    event: HistoryEvent,
    compensate: bool,
) -> Result<(), AdminError> {
    let envelope = kept_state::<S>(record)?;
    let cx = SagaContext::for_saga::<S>(record.trace_id.as_str())
        .with_metadata(envelope.metadata.clone());
    let conflict = || AdminError::Conflict {
        trace_id: record.trace_id.clone(),
    };
    let payload = rt
        .encode(
            &cx,
            &envelope.state,
            envelope.failure.as_ref(),
            record.seq + 1,
            envelope.route.as_deref(),
        )
        .map_err(|e| AdminError::StateUnreadable {
            trace_id: record.trace_id.clone(),
            reason: e.to_string(),
        })?;
    let token = rt.token();
    let reopen = Reopen {
        trace_id: &record.trace_id,
        saga: S::description().name,
        seq: record.seq,
        status: running_status::<S>(&envelope.state),
        state: &payload,
        // A lapsed custody: the recovery claim below (or any replica's sweeper) takes it.
        custody: Custody::held(&token, Duration::ZERO),
        compensate,
        entry: HistoryEntry::now(token.clone(), event),
    };
    match rt.store.reopen(reopen).await? {
        Written::Done => {}
        Written::Missing => {
            return Err(AdminError::NotFound {
                trace_id: record.trace_id.clone(),
            });
        }
        _ => return Err(conflict()),
    }
    info!(trace_id = %record.trace_id, compensate, "stuck saga reopened by an operator");
    // Runs on its own task tracker: the operator's request returns once it is under way.
    sweeper::recover(rt, &record.trace_id, &TaskTracker::new()).await;
    Ok(())
}

async fn compensate<S: Saga>(
    rt: &Arc<Runtime<S>>,
    record: &SagaRecord,
    by: &str,
) -> Result<CompensationRequest, AdminError> {
    let trace_id = record.trace_id.as_str();
    let past_pivot = |cursor: Cursor| AdminError::PastPivot {
        trace_id: trace_id.to_string(),
        step: super::transition::step_at::<S>(cursor)
            .map(|s| s.name.to_string())
            .unwrap_or_default(),
    };
    match record.status.kind() {
        StatusKind::Compensating => Ok(CompensationRequest::AlreadyCompensating),
        kind @ (StatusKind::Completed | StatusKind::Compensated) => Err(AdminError::Finished {
            trace_id: trace_id.to_string(),
            status: kind,
        }),
        StatusKind::Running => {
            let envelope = kept_state::<S>(record)?;
            if !Progress::<S>::abortable(&envelope.state) {
                return Err(past_pivot(S::cursor(&envelope.state)));
            }
            let entry = HistoryEntry::now(
                rt.token(),
                HistoryEvent::CompensationRequested { by: by.to_string() },
            );
            match rt.store.request_compensation(trace_id, entry).await? {
                Written::Done => Ok(CompensationRequest::Requested),
                Written::Missing => Err(AdminError::NotFound {
                    trace_id: trace_id.to_string(),
                }),
                _ => Err(AdminError::Conflict {
                    trace_id: trace_id.to_string(),
                }),
            }
        }
        StatusKind::Stuck => {
            let envelope = kept_state::<S>(record)?;
            let cursor = S::cursor(&envelope.state);
            let event = HistoryEvent::CompensationRequested { by: by.to_string() };
            match cursor {
                Cursor::Compensate(_) => reopen(rt, record, event, false).await?,
                _ if Progress::<S>::abortable(&envelope.state) => {
                    reopen(rt, record, event, true).await?
                }
                _ => return Err(past_pivot(cursor)),
            }
            Ok(CompensationRequest::Reopened)
        }
    }
}
