//! Logical topic names of a saga: one per step, one for rollback, optionally per pod.

use crate::{Cursor, Saga};

/// The topic of forward step `step` of saga `S` (`{saga}.{step}`), suffixed with `.{pod}` for
/// pod-affine routing.
pub fn step_topic<S: Saga>(step: usize, route: Option<&str>) -> Option<String> {
    let desc = S::description();
    let step = desc.steps.get(step)?;
    Some(with_route(format!("{}.{}", desc.name, step.name), route))
}

/// The rollback topic of saga `S` (`{saga}.rollback`), where every compensation runs.
pub fn rollback_topic<S: Saga>(route: Option<&str>) -> String {
    with_route(format!("{}.rollback", S::description().name), route)
}

/// The topic that runs the transition `cursor` names, or `None` on a terminal cursor.
pub fn topic_for<S: Saga>(cursor: Cursor, route: Option<&str>) -> Option<String> {
    match cursor {
        Cursor::Step(step) => step_topic::<S>(step, route),
        Cursor::Compensate(_) => Some(rollback_topic::<S>(route)),
        Cursor::Completed | Cursor::Compensated => None,
    }
}

/// Every topic the consumers of saga `S` subscribe to for `route`.
pub fn all_topics<S: Saga>(route: Option<&str>) -> Vec<String> {
    let steps = S::description().steps.len();
    (0..steps)
        .filter_map(|i| step_topic::<S>(i, route))
        .chain([rollback_topic::<S>(route)])
        .collect()
}

fn with_route(topic: String, route: Option<&str>) -> String {
    match route {
        Some(pod) => format!("{topic}.{pod}"),
        None => topic,
    }
}
