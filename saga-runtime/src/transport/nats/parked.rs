//! Delayed redelivery that does not hold a consumer slot.
//!
//! JetStream keeps a message nacked with a delay (`-NAK {"delay": ..}`) in its consumer's
//! ack-pending set until the delay ends, and that set is capped by `max_ack_pending`: the
//! subscription's concurrency, **shared by every replica of the group**. A retry's backoff
//! would then hold one of those few slots for its whole delay, and a handful of sagas backing
//! off (a compensation retried for minutes while an upstream is down) would stall the topic
//! for everyone.
//!
//! So a delivery nacked with a delay is **parked** instead: a copy is published to the
//! group's parking subject (`{prefix}.{topic}.parked.{group}`) with the time it is due and
//! the deliveries it has had, and the original is acked. Each subscription also pulls from
//! the group's parking consumer (no `max_ack_pending` cap): a copy's first delivery there, and
//! any before it is due, is nacked with the time left (it waits there, holding no slot of the
//! topic's consumer); a due copy is handed to the handler like any delivery, its delivery
//! count carried on (the deliveries before parking, plus those on the parking consumer after
//! the first), and settled on the parking consumer (acked, parked again, dead-lettered).
//!
//! Copies get a `Nats-Msg-Id` derived from the message's id (`{id}/retry-{deliveries}`), so a
//! park repeated after a crash between the publish and the ack is dropped by the stream. If the
//! copy cannot be published, the delivery is nacked with the delay as before (it then holds its
//! slot, but is not lost).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::HeaderMap;
use async_nats::header::NATS_MESSAGE_ID;
use bytes::Bytes;

use super::super::headers::PackedHeaders;
use super::super::{MESSAGE_ID_HEADER, Reason};
use super::{Inner, sanitize};

/// When a parked copy is due, in milliseconds since the Unix epoch.
const DUE_HEADER: &str = "Sagaflow-Due-Ms";

/// The deliveries a parked copy had before it was parked (its delivery count goes on from it).
const DELIVERIES_HEADER: &str = "Sagaflow-Deliveries";

/// The logical topic of the parking of `group`'s deliveries of `topic`: the group as one
/// subject token (an empty group too).
pub(super) fn parking_topic(topic: &str, group: &str) -> String {
    let token = if group.is_empty() {
        "_".to_owned()
    } else {
        sanitize(group)
    };
    format!("{topic}.parked.{token}")
}

/// Whether `name` is this module's bookkeeping, kept out of the headers a handler sees and
/// of a dead letter.
pub(super) fn is_bookkeeping(name: &str) -> bool {
    name.eq_ignore_ascii_case(DUE_HEADER) || name.eq_ignore_ascii_case(DELIVERIES_HEADER)
}

/// The deliveries a (parked) message had before this copy: 0 for a message never parked.
pub(super) fn carried_deliveries(headers: Option<&HeaderMap>) -> u32 {
    headers
        .and_then(|map| map.get(DELIVERIES_HEADER))
        .and_then(|value| value.as_str().parse().ok())
        .unwrap_or(0)
}

/// How long until a parked copy is due; `None` when it is due (or carries no due time).
pub(super) fn time_left(headers: Option<&HeaderMap>) -> Option<Duration> {
    let due: u64 = headers?.get(DUE_HEADER)?.as_str().parse().ok()?;
    let left = due.saturating_sub(now_millis());
    (left > 0).then(|| Duration::from_millis(left))
}

/// Publishes the parked copy of a delivery of `topic` in `group` that had `deliveries` so far
/// and is due again in `delay`.
pub(super) async fn park(
    inner: &Inner,
    topic: &str,
    group: &str,
    headers: &PackedHeaders,
    deliveries: u32,
    delay: Duration,
    payload: Bytes,
) -> Result<(), Reason> {
    let mut map = HeaderMap::new();
    let mut id = None;
    for (name, value) in headers.pairs() {
        if name.eq_ignore_ascii_case(NATS_MESSAGE_ID.as_ref()) || is_bookkeeping(name) {
            continue;
        }
        if name == MESSAGE_ID_HEADER {
            id = Some(value);
        }
        map.append(name, value);
    }
    let due = now_millis().saturating_add(u64::try_from(delay.as_millis()).unwrap_or(u64::MAX));
    map.insert(DUE_HEADER, due.to_string().as_str());
    map.insert(DELIVERIES_HEADER, deliveries.to_string().as_str());
    if let Some(id) = id {
        map.insert(NATS_MESSAGE_ID, format!("{id}/retry-{deliveries}").as_str());
    }
    let subject = inner.config.physical_topic(&parking_topic(topic, group));
    inner.publish_raw(subject, map, payload).await
}

fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|since| u64::try_from(since.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_parking_subject_is_one_token_per_group() {
        assert_eq!(
            parking_topic("Booking.rollback", "booking.v2 blue"),
            "Booking.rollback.parked.booking_v2_blue"
        );
        assert_eq!(
            parking_topic("t", ""),
            "t.parked._",
            "an empty token is no subject"
        );
    }

    #[test]
    fn a_copy_is_due_once_its_time_passed() {
        let mut headers = HeaderMap::new();
        headers.insert(DUE_HEADER, (now_millis() + 60_000).to_string().as_str());
        let left = time_left(Some(&headers)).expect("due in a minute");
        assert!(left > Duration::from_secs(50) && left <= Duration::from_secs(60));
        headers.insert(DUE_HEADER, (now_millis() - 1).to_string().as_str());
        assert_eq!(time_left(Some(&headers)), None);
        assert_eq!(time_left(None), None, "a message never parked is due");
    }

    #[test]
    fn the_carried_count_reads_back() {
        let mut headers = HeaderMap::new();
        assert_eq!(carried_deliveries(Some(&headers)), 0);
        headers.insert(DELIVERIES_HEADER, "7");
        assert_eq!(carried_deliveries(Some(&headers)), 7);
        assert!(is_bookkeeping("sagaflow-deliveries") && is_bookkeeping(DUE_HEADER));
        assert!(!is_bookkeeping(MESSAGE_ID_HEADER));
    }
}
