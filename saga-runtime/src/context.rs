//! [`SagaContext`]: what a step or compensation knows about the saga it runs in.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Instant;

use crate::Metadata;
use crate::observe::Observed;

/// Per-transition context handed to every step and compensation.
///
/// Cheap to build: the trace id and the metadata are shared, not copied, between the
/// transitions of one saga.
#[derive(Clone, Debug)]
pub struct SagaContext {
    trace_id: Arc<str>,
    saga: &'static str,
    step: &'static str,
    compensating: bool,
    attempt: u32,
    metadata: Arc<Metadata>,
    deadline: Option<Instant>,
    /// The orchestrator observing this saga (spans, metrics), set by the engine.
    observed: Option<Observed>,
}

impl SagaContext {
    /// A context for saga `S` with trace id `trace_id` (the `x-request-id`, which is also the
    /// saga id), positioned before any step. The saga name is `S`'s own.
    pub fn for_saga<S: crate::Saga>(trace_id: impl Into<Arc<str>>) -> Self {
        Self::new(S::description().name, trace_id)
    }

    /// A context labelled `saga` with trace id `trace_id`, positioned before any step.
    ///
    /// The label cannot disagree with the saga that runs: every engine entry point runs a
    /// saga under its own name ([`SagaDescription::name`](crate::SagaDescription::name)),
    /// whatever label the context was built with. Prefer [`SagaContext::for_saga`].
    pub fn new(saga: &'static str, trace_id: impl Into<Arc<str>>) -> Self {
        Self {
            trace_id: trace_id.into(),
            saga,
            step: "",
            compensating: false,
            attempt: 1,
            metadata: Arc::default(),
            deadline: None,
            observed: None,
        }
    }

    /// Replaces the metadata (forwarded request headers, for example); a
    /// `BTreeMap<String, String>` or an array of pairs converts into it.
    pub fn with_metadata(mut self, metadata: impl Into<Metadata>) -> Self {
        self.metadata = Arc::new(metadata.into().compact());
        self
    }

    /// Sets the instant after which the caller no longer waits.
    pub fn with_deadline(mut self, deadline: Option<Instant>) -> Self {
        self.deadline = deadline;
        self
    }

    /// The same saga, positioned at `step` (or its compensation), attempt `attempt` (from 1).
    pub fn at(&self, step: &'static str, compensating: bool, attempt: u32) -> Self {
        Self {
            trace_id: Arc::clone(&self.trace_id),
            saga: self.saga,
            step,
            compensating,
            attempt,
            metadata: Arc::clone(&self.metadata),
            deadline: self.deadline,
            observed: self.observed.clone(),
        }
    }

    /// The same context, observed by an orchestrator (the engine's spans and metrics).
    pub(crate) fn with_observed(mut self, observed: Observed) -> Self {
        self.observed = Some(observed);
        self
    }

    /// The orchestrator observing this saga, if the engine set one.
    pub(crate) fn observed(&self) -> Option<&Observed> {
        self.observed.as_ref()
    }

    /// This context under saga `S`'s own name (borrowed when it already has it).
    pub(crate) fn of_saga<S: crate::Saga>(&self) -> Cow<'_, Self> {
        let name = S::description().name;
        if self.saga == name {
            Cow::Borrowed(self)
        } else {
            let mut named = self.clone();
            named.saga = name;
            Cow::Owned(named)
        }
    }

    /// The trace id (`x-request-id`), which is also the saga id.
    pub fn trace_id(&self) -> &str {
        &self.trace_id
    }

    /// The saga's name.
    pub fn saga(&self) -> &'static str {
        self.saga
    }

    /// The step being run (or compensated); empty before the first step.
    pub fn step(&self) -> &'static str {
        self.step
    }

    /// True when this transition is a compensation.
    pub fn is_compensating(&self) -> bool {
        self.compensating
    }

    /// Which attempt this is, from 1.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// Request metadata forwarded to the saga (headers of the triggering request, say).
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// When the caller stops waiting, if it set a deadline.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// The stable idempotency key of this transition: `{trace_id}/{step}` for a step and
    /// `{trace_id}/{step}/compensate` for its compensation. It is the same on every attempt
    /// and every replica, so upstream services can deduplicate at-least-once deliveries.
    pub fn idempotency_key(&self) -> String {
        if self.compensating {
            format!("{}/{}/compensate", self.trace_id, self.step)
        } else {
            format!("{}/{}", self.trace_id, self.step)
        }
    }
}
