//! The metrics the engine records, through the [`metrics`] facade: every name, its type and
//! its labels are here, and nowhere else.
//!
//! Nothing is exported until the application installs a recorder (the booking example installs
//! `metrics-exporter-prometheus` and serves `/metrics` with `--metrics-addr`). **Install it
//! before building the orchestrators**: each orchestrator registers its handles once, when it is
//! built, so the hot path never builds a label set, hashes a key or allocates (handles built
//! before a recorder exists stay no-ops). Call [`describe`] after installing it for the help
//! texts.
//!
//! | name | type | labels | what |
//! |---|---|---|---|
//! | `sagaflow_sagas_started_total` | counter | `saga`, `mode` | sagas begun on this replica (a new trace id; a repeat of an existing id is not counted) |
//! | `sagaflow_sagas_completed_total` | counter | `saga`, `mode` | sagas whose completion this replica recorded |
//! | `sagaflow_sagas_compensated_total` | counter | `saga`, `mode` | sagas whose compensation this replica recorded (every completed step undone) |
//! | `sagaflow_sagas_stuck_total` | counter | `saga`, `mode` | sagas this replica recorded stuck (retries exhausted, undecodable state, delivery bound) |
//! | `sagaflow_sagas_invalid_total` | counter | `saga`, `mode` | sagas this replica ended as invalid (a state that cannot be resumed) |
//! | `sagaflow_transition_duration_seconds` | histogram | `saga`, `step`, `kind` | time of each attempt of a step (`kind="step"`) or compensation (`kind="compensation"`) |
//! | `sagaflow_transition_retries_total` | counter | `saga`, `step`, `kind` | attempts after the first of a transition (on any replica: the attempt count lives in the store) |
//! | `sagaflow_redeliveries_total` | counter | `saga` | deliveries received again (a nack for a retry or a backoff, a lost ack, a dead replica) |
//! | `sagaflow_dead_letters_total` | counter | `saga` | deliveries this replica dead-lettered |
//! | `sagaflow_requeues_total` | counter | `saga` | messages this replica's recovery sweeper published again because nobody claimed them in time (a lost publish, or a broker that is behind) |
//! | `sagaflow_sagas_in_flight` | gauge | `saga` | sagas this replica drives now: a sync run, a delivery being handled, a recovery |
//! | `sagaflow_throttled_waiting` | gauge | `saga` | throttled callers waiting for their outcome on this replica |
//! | `sagaflow_throttled_queue_depth` | gauge | `saga` | deliveries on this replica waiting for a step slot (`max_concurrent_steps`) |
//! | `sagaflow_store_errors_total` | counter | `backend`, `kind` | saga store failures (every `StoreError` a backend reports; `kind` as `StoreErrorKind`) |
//! | `sagaflow_broker_errors_total` | counter | `backend`, `op` | broker failures the engine saw: `op` = `publish`, `subscribe` or `ping` |
//! | `sagaflow_health_up` | gauge | `component` | 1 while the health monitor finds `store`, `broker` or `consumers` up, 0 when down |
//!
//! The end counters are counted by the replica that recorded the end, exactly once per saga
//! (a write refused by the fence counts nothing): their sum over replicas and `mode`s is the
//! number of sagas that ended. `mode` is `sync`, `async` or `throttled` (`unknown` for a
//! message whose saga record could not be read). Sagas running across the cluster are
//! `sum(started) - sum(completed + compensated + stuck + invalid)`.

use metrics::{Counter, Gauge, Histogram, Unit};

use crate::SagaDescription;
use crate::store::Mode;

/// Counter: sagas begun (`saga`, `mode`).
pub const SAGAS_STARTED: &str = "sagaflow_sagas_started_total";
/// Counter: sagas completed (`saga`, `mode`).
pub const SAGAS_COMPLETED: &str = "sagaflow_sagas_completed_total";
/// Counter: sagas compensated (`saga`, `mode`).
pub const SAGAS_COMPENSATED: &str = "sagaflow_sagas_compensated_total";
/// Counter: sagas recorded stuck (`saga`, `mode`).
pub const SAGAS_STUCK: &str = "sagaflow_sagas_stuck_total";
/// Counter: sagas ended as invalid (`saga`, `mode`).
pub const SAGAS_INVALID: &str = "sagaflow_sagas_invalid_total";
/// Histogram, seconds: one attempt of a transition (`saga`, `step`, `kind`).
pub const TRANSITION_DURATION: &str = "sagaflow_transition_duration_seconds";
/// Counter: attempts after the first (`saga`, `step`, `kind`).
pub const TRANSITION_RETRIES: &str = "sagaflow_transition_retries_total";
/// Counter: redelivered messages (`saga`).
pub const REDELIVERIES: &str = "sagaflow_redeliveries_total";
/// Counter: dead-lettered messages (`saga`).
pub const DEAD_LETTERS: &str = "sagaflow_dead_letters_total";
/// Counter: messages the recovery sweeper published again (`saga`).
pub const REQUEUES: &str = "sagaflow_requeues_total";
/// Gauge: sagas driven by this replica now (`saga`).
pub const SAGAS_IN_FLIGHT: &str = "sagaflow_sagas_in_flight";
/// Gauge: throttled callers waiting (`saga`).
pub const THROTTLED_WAITING: &str = "sagaflow_throttled_waiting";
/// Gauge: deliveries waiting for a step slot (`saga`).
pub const THROTTLED_QUEUE_DEPTH: &str = "sagaflow_throttled_queue_depth";
/// Counter: store failures (`backend`, `kind`).
pub const STORE_ERRORS: &str = "sagaflow_store_errors_total";
/// Counter: broker failures (`backend`, `op`).
pub const BROKER_ERRORS: &str = "sagaflow_broker_errors_total";
/// Gauge: 1 when a component is up, 0 when down (`component`).
pub const HEALTH_UP: &str = "sagaflow_health_up";

/// Bucket bounds (seconds) suited to [`TRANSITION_DURATION`]: 100 µs to 30 s. Give them to a
/// Prometheus exporter to get a histogram rather than a summary.
pub const TRANSITION_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0,
];

/// Registers the help text and unit of every metric above with the installed recorder.
pub fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(SAGAS_STARTED, "Sagas begun on this replica");
    describe_counter!(
        SAGAS_COMPLETED,
        "Sagas whose completion this replica recorded"
    );
    describe_counter!(
        SAGAS_COMPENSATED,
        "Sagas whose compensation this replica recorded"
    );
    describe_counter!(SAGAS_STUCK, "Sagas this replica recorded stuck");
    describe_counter!(SAGAS_INVALID, "Sagas this replica ended as invalid");
    describe_histogram!(
        TRANSITION_DURATION,
        Unit::Seconds,
        "Time of one attempt of a step or compensation"
    );
    describe_counter!(
        TRANSITION_RETRIES,
        "Attempts after the first of a transition"
    );
    describe_counter!(REDELIVERIES, "Saga messages delivered again");
    describe_counter!(DEAD_LETTERS, "Saga messages dead-lettered by this replica");
    describe_counter!(
        REQUEUES,
        "Saga messages the recovery sweeper of this replica published again"
    );
    describe_gauge!(SAGAS_IN_FLIGHT, "Sagas this replica drives now");
    describe_gauge!(
        THROTTLED_WAITING,
        "Throttled callers waiting for an outcome"
    );
    describe_gauge!(
        THROTTLED_QUEUE_DEPTH,
        "Deliveries waiting for a step slot on this replica"
    );
    describe_counter!(STORE_ERRORS, "Saga store failures");
    describe_counter!(BROKER_ERRORS, "Message broker failures seen by the engine");
    describe_gauge!(HEALTH_UP, "1 while a component is up, 0 when down");
}

/// How a saga ended, for the end counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ending {
    Completed,
    Compensated,
    Stuck,
    Invalid,
}

/// The counters of one mode.
#[derive(Debug)]
struct ModeCounters {
    started: Counter,
    completed: Counter,
    compensated: Counter,
    stuck: Counter,
    invalid: Counter,
}

impl ModeCounters {
    fn new(saga: &'static str, mode: &'static str) -> Self {
        let labels = [("saga", saga), ("mode", mode)];
        Self {
            started: metrics::counter!(SAGAS_STARTED, &labels),
            completed: metrics::counter!(SAGAS_COMPLETED, &labels),
            compensated: metrics::counter!(SAGAS_COMPENSATED, &labels),
            stuck: metrics::counter!(SAGAS_STUCK, &labels),
            invalid: metrics::counter!(SAGAS_INVALID, &labels),
        }
    }
}

/// The handles of one transition (a step, or its compensation).
#[derive(Debug)]
pub(crate) struct TransitionMetrics {
    pub(crate) duration: Histogram,
    pub(crate) retries: Counter,
}

impl TransitionMetrics {
    fn new(saga: &'static str, step: &'static str, kind: &'static str) -> Self {
        let labels = [("saga", saga), ("step", step), ("kind", kind)];
        Self {
            duration: metrics::histogram!(TRANSITION_DURATION, &labels),
            retries: metrics::counter!(TRANSITION_RETRIES, &labels),
        }
    }
}

/// Every handle of one saga definition, registered once (see the module docs).
#[derive(Debug)]
pub(crate) struct SagaMetrics {
    /// Indexed by [`mode_index`].
    modes: [ModeCounters; 4],
    /// Per step: the step, then its compensation.
    steps: Vec<[TransitionMetrics; 2]>,
    pub(crate) redeliveries: Counter,
    pub(crate) dead_letters: Counter,
    pub(crate) requeues: Counter,
    pub(crate) in_flight: Gauge,
    pub(crate) waiting: Gauge,
    pub(crate) queue_depth: Gauge,
    pub(crate) publish_errors: Counter,
    pub(crate) subscribe_errors: Counter,
}

/// The index of `mode` in [`SagaMetrics::modes`]; unknown last.
fn mode_index(mode: Option<Mode>) -> usize {
    match mode {
        Some(Mode::Sync) => 0,
        Some(Mode::Async) => 1,
        Some(Mode::Throttled) => 2,
        None => 3,
    }
}

impl SagaMetrics {
    /// Registers the handles of `saga` (whose broker is `broker`) with the current recorder.
    pub(crate) fn new(saga: &'static SagaDescription, broker: &'static str) -> Self {
        let name = saga.name;
        let labels = [("saga", name)];
        let broker_op =
            |op: &'static str| metrics::counter!(BROKER_ERRORS, &[("backend", broker), ("op", op)]);
        Self {
            modes: ["sync", "async", "throttled", "unknown"]
                .map(|mode| ModeCounters::new(name, mode)),
            steps: saga
                .steps
                .iter()
                .map(|step| {
                    [
                        TransitionMetrics::new(name, step.name, "step"),
                        TransitionMetrics::new(name, step.name, "compensation"),
                    ]
                })
                .collect(),
            redeliveries: metrics::counter!(REDELIVERIES, &labels),
            dead_letters: metrics::counter!(DEAD_LETTERS, &labels),
            requeues: metrics::counter!(REQUEUES, &labels),
            in_flight: metrics::gauge!(SAGAS_IN_FLIGHT, &labels),
            waiting: metrics::gauge!(THROTTLED_WAITING, &labels),
            queue_depth: metrics::gauge!(THROTTLED_QUEUE_DEPTH, &labels),
            publish_errors: broker_op("publish"),
            subscribe_errors: broker_op("subscribe"),
        }
    }

    /// Counts a saga begun in `mode`.
    pub(crate) fn started(&self, mode: Mode) {
        self.modes[mode_index(Some(mode))].started.increment(1);
    }

    /// Counts a saga ended as `ending`, in `mode` if known.
    pub(crate) fn ended(&self, mode: Option<Mode>, ending: Ending) {
        let counters = &self.modes[mode_index(mode)];
        match ending {
            Ending::Completed => &counters.completed,
            Ending::Compensated => &counters.compensated,
            Ending::Stuck => &counters.stuck,
            Ending::Invalid => &counters.invalid,
        }
        .increment(1);
    }

    /// The handles of step `step`'s forward transition, or its compensation.
    pub(crate) fn transition(&self, step: usize, compensation: bool) -> Option<&TransitionMetrics> {
        self.steps
            .get(step)
            .map(|pair| &pair[usize::from(compensation)])
    }
}

/// Counts a store failure of `backend` of `kind` (called by `StoreError::new`: errors are the
/// cold path, so the handle is looked up per call).
pub(crate) fn store_error(backend: &'static str, kind: &'static str) {
    metrics::counter!(STORE_ERRORS, "backend" => backend, "kind" => kind).increment(1);
}

/// Counts a failed liveness probe of the broker `backend`.
pub(crate) fn broker_ping_error(backend: &'static str) {
    metrics::counter!(BROKER_ERRORS, "backend" => backend, "op" => "ping").increment(1);
}

/// Sets the health gauge of `component`.
pub(crate) fn health_up(component: &'static str, up: bool) {
    metrics::gauge!(HEALTH_UP, "component" => component).set(if up { 1.0 } else { 0.0 });
}

/// Adds one to a gauge until dropped.
#[derive(Debug)]
pub(crate) struct GaugeGuard<'a>(Option<&'a Gauge>);

impl<'a> GaugeGuard<'a> {
    pub(crate) fn new(gauge: Option<&'a Gauge>) -> Self {
        if let Some(gauge) = gauge {
            gauge.increment(1.0);
        }
        Self(gauge)
    }
}

impl Drop for GaugeGuard<'_> {
    fn drop(&mut self) {
        if let Some(gauge) = self.0 {
            gauge.decrement(1.0);
        }
    }
}
