//! What each booking should be, what its caller was told, what the upstream services hold
//! for its trace id, and the verdict.

use std::fmt;
use std::time::{Duration, Instant};

use booking_proto::order::{Order, OrderStatus};
use booking_proto::payment::{Payment, PaymentStatus};
use tonic::Code;

/// Which RPC of `pb.BookingService` a booking uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Mode {
    Sync,
    Async,
    Throttled,
}

impl Mode {
    pub const ALL: [Mode; 3] = [Mode::Sync, Mode::Async, Mode::Throttled];

    pub fn name(self) -> &'static str {
        match self {
            Mode::Sync => "sync",
            Mode::Async => "async",
            Mode::Throttled => "throttled",
        }
    }
}

/// One planned booking.
#[derive(Clone, Debug)]
pub struct Booking {
    pub n: usize,
    /// Its `x-request-id` (the saga's trace id).
    pub id: String,
    pub mode: Mode,
    pub fault: bool,
    /// The replica it is sent to first.
    pub replica: usize,
}

/// What the caller was told.
#[derive(Clone, Debug)]
pub enum Answer {
    /// Sync or throttled success, with the ids of the booking.
    Booked { order_id: i64, payment_id: i64 },
    /// Async: accepted (the saga runs on).
    Accepted,
    /// An error status. `unsent` when the request never reached a server (connection
    /// refused: the replica was down), so no saga can exist for it. `reason` is the
    /// `ErrorInfo` reason of the status details, if any (`SAGA_DEADLINE_EXCEEDED`: the
    /// caller's wait ended, the saga goes on).
    Failed {
        code: Code,
        message: String,
        unsent: bool,
        reason: Option<String>,
    },
}

/// The `ErrorInfo` reason of a throttled wait that ended while the saga goes on.
pub const WAIT_ENDED: &str = "SAGA_DEADLINE_EXCEEDED";

impl Answer {
    /// A short label for tables: `ok`, `accepted` or the status code.
    pub fn label(&self) -> String {
        match self {
            Answer::Booked { .. } => "ok".into(),
            Answer::Accepted => "accepted".into(),
            Answer::Failed {
                code,
                unsent,
                reason,
                ..
            } => match (unsent, reason) {
                (true, _) => format!("{code:?} (not sent)"),
                (false, Some(reason)) => format!("{code:?} ({reason})"),
                (false, None) => format!("{code:?}"),
            },
        }
    }

    /// True when the caller was told the booking exists (done, or running on: accepted, or
    /// a throttled wait that ended while the saga goes on).
    pub fn promised(&self) -> bool {
        match self {
            Answer::Booked { .. } | Answer::Accepted => true,
            Answer::Failed { reason, .. } => reason.as_deref() == Some(WAIT_ENDED),
        }
    }
}

impl fmt::Display for Answer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Answer::Booked {
                order_id,
                payment_id,
            } => write!(f, "ok (order {order_id}, payment {payment_id})"),
            Answer::Accepted => write!(f, "accepted"),
            Answer::Failed { code, message, .. } => {
                let message: String = message.chars().take(160).collect();
                write!(f, "{code:?}: {message}")
            }
        }
    }
}

/// The records of one trace id at the Order and Payment services.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Upstream {
    pub orders: Vec<(i64, bool)>,
    pub payments: Vec<(i64, bool)>,
}

impl Upstream {
    pub fn new(orders: &[Order], payments: &[Payment]) -> Self {
        Self {
            orders: orders
                .iter()
                .map(|o| (o.id, o.status() == OrderStatus::Active))
                .collect(),
            payments: payments
                .iter()
                .map(|p| (p.id, p.status() == PaymentStatus::Active))
                .collect(),
        }
    }

    fn active_orders(&self) -> usize {
        self.orders.iter().filter(|(_, active)| *active).count()
    }

    fn active_payments(&self) -> usize {
        self.payments.iter().filter(|(_, active)| *active).count()
    }

    /// The shape of the records, without the caller's view.
    pub fn shape(&self) -> Shape {
        if self.orders.len() > 1 || self.payments.len() > 1 {
            return Shape::Duplicated;
        }
        match (self.orders.first(), self.payments.first()) {
            (None, None) => Shape::Nothing,
            (Some(&(order, true)), Some(&(payment, true))) => Shape::Completed { order, payment },
            // Order cancelled and no payment taken (or it was refunded too).
            (Some((_, false)), None) | (Some((_, false)), Some((_, false))) => Shape::Compensated,
            _ => Shape::Inconsistent,
        }
    }

    /// True once the saga reached an end state (booked or compensated).
    pub fn settled(&self) -> bool {
        matches!(self.shape(), Shape::Completed { .. } | Shape::Compensated)
    }
}

impl fmt::Display for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |records: &[(i64, bool)]| {
            let items: Vec<String> = records
                .iter()
                .map(|(id, active)| {
                    format!("{id}:{}", if *active { "active" } else { "cancelled" })
                })
                .collect();
            format!("[{}]", items.join(", "))
        };
        write!(
            f,
            "orders {} payments {} ({} active orders, {} active payments)",
            list(&self.orders),
            list(&self.payments),
            self.active_orders(),
            self.active_payments()
        )
    }
}

/// What the upstream records of a trace id look like.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    Nothing,
    Completed { order: i64, payment: i64 },
    Compensated,
    Duplicated,
    Inconsistent,
}

/// The verdict on one booking after settling.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Class {
    /// One active order and one active payment.
    Completed,
    /// The order cancelled, no active payment.
    Compensated,
    /// The caller got an error and nothing exists upstream (nor, unless the error said
    /// plainly that no saga started, in the saga store).
    Refused,
    /// Nothing exists upstream after settling, although the caller was told ok/accepted (or
    /// that its throttled wait ended while the saga goes on), or its call broke off
    /// (transport error, no saga error reason) after the saga store recorded the saga: a
    /// saga the system holds and never ran.
    Lost,
    /// Inconsistent after settling: an active order without payment, a payment without
    /// (active) order...
    HalfDone,
    /// More than one order or payment for the trace id.
    Duplicated,
    /// A definite answer the records contradict: the caller got `ok` with ids other than
    /// the records', or `ok` while the booking was compensated.
    Mismatch,
    /// The upstream services could not be asked (a harness problem, not a verdict).
    Unverified,
}

impl Class {
    pub const ALL: [Class; 8] = [
        Class::Completed,
        Class::Compensated,
        Class::Refused,
        Class::Lost,
        Class::HalfDone,
        Class::Duplicated,
        Class::Mismatch,
        Class::Unverified,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Class::Completed => "completed",
            Class::Compensated => "compensated",
            Class::Refused => "refused",
            Class::Lost => "lost",
            Class::HalfDone => "half-done",
            Class::Duplicated => "duplicated",
            Class::Mismatch => "mismatch",
            Class::Unverified => "unverified",
        }
    }

    /// Verdicts that fail the run.
    pub fn is_failure(self) -> bool {
        matches!(
            self,
            Class::Lost | Class::HalfDone | Class::Duplicated | Class::Mismatch | Class::Unverified
        )
    }
}

/// The verdict on `booking`, given what its caller was told (`None`: no answer recorded,
/// e.g. the call task died) and the upstream records after settling (`None`: unreadable).
/// `recorded`: whether the saga store holds a record of the trace id (`None`: unknown).
pub fn classify(
    booking: &Booking,
    answer: Option<&Answer>,
    upstream: Option<&Upstream>,
    recorded: Option<bool>,
) -> Class {
    let Some(upstream) = upstream else {
        return Class::Unverified;
    };
    let promised = answer.is_some_and(Answer::promised);
    // A call that broke off says nothing either way; the store says the saga exists.
    let broke_off = match answer {
        None => true,
        Some(Answer::Failed {
            unsent: false,
            reason: None,
            ..
        }) => true,
        Some(_) => false,
    };
    match upstream.shape() {
        Shape::Duplicated => Class::Duplicated,
        Shape::Inconsistent => Class::HalfDone,
        Shape::Nothing if promised => Class::Lost,
        Shape::Nothing if broke_off && recorded == Some(true) => Class::Lost,
        Shape::Nothing => Class::Refused,
        Shape::Completed { order, payment } => match answer {
            _ if booking.fault => Class::Mismatch,
            Some(Answer::Booked {
                order_id,
                payment_id,
            }) if (*order_id, *payment_id) != (order, payment) => Class::Mismatch,
            _ => Class::Completed,
        },
        Shape::Compensated => match answer {
            Some(Answer::Booked { .. }) => Class::Mismatch,
            _ => Class::Compensated,
        },
    }
}

/// How the sagas in flight at a kill settled.
#[derive(Clone, Debug, Default)]
pub struct SettleStats {
    /// Sent before the kill and not settled at the kill.
    pub in_flight: usize,
    /// Of those, sent to the killed replica (replica kills only).
    pub on_killed: usize,
    /// Settle times (after the kill) of those that settled, sorted.
    pub settled: Vec<Duration>,
    /// Never settled before the end of the settle wait.
    pub never: usize,
    /// Of the never settled, those sent to the killed replica.
    pub never_on_killed: usize,
    /// The booking that took longest to settle (its trace id and mode), to look up in the logs.
    pub slowest: Option<(String, Mode)>,
}

impl SettleStats {
    pub fn max(&self) -> Option<Duration> {
        self.settled.last().copied()
    }

    pub fn p99(&self) -> Option<Duration> {
        quantile(&self.settled, 0.99)
    }
}

/// The `q` quantile of sorted `values` (nearest rank).
pub fn quantile(values: &[Duration], q: f64) -> Option<Duration> {
    if values.is_empty() {
        return None;
    }
    let rank = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len());
    Some(values[rank - 1])
}

/// One booking's timeline, as the load and the poller saw it.
#[derive(Clone, Debug, Default)]
pub struct Timeline {
    pub sent_at: Option<Instant>,
    pub answered_at: Option<Instant>,
    pub answer: Option<Answer>,
    /// The replica that answered (or last refused).
    pub replica: Option<usize>,
    /// The first time the poller saw it settled.
    pub settled_at: Option<Instant>,
    /// The last records the poller read.
    pub upstream: Option<Upstream>,
}

impl Timeline {
    /// True when no saga can exist for it (never sent, or the connection was refused).
    pub fn unsent(&self) -> bool {
        self.sent_at.is_none() || matches!(self.answer, Some(Answer::Failed { unsent: true, .. }))
    }
}

/// Settle statistics of the bookings in flight at `killed_at`; `killed_replica` marks those
/// sent to it.
pub fn settle_stats(
    bookings: &[Booking],
    timelines: &[Timeline],
    killed_at: Instant,
    killed_replica: Option<usize>,
) -> SettleStats {
    let mut stats = SettleStats::default();
    for (booking, timeline) in bookings.iter().zip(timelines) {
        let Some(sent_at) = timeline.sent_at else {
            continue;
        };
        if sent_at >= killed_at || timeline.unsent() {
            continue;
        }
        if timeline.settled_at.is_some_and(|at| at <= killed_at) {
            continue;
        }
        let on_killed = killed_replica == Some(booking.replica);
        stats.in_flight += 1;
        stats.on_killed += usize::from(on_killed);
        match timeline.settled_at {
            Some(at) => {
                let took = at - killed_at;
                if stats.settled.iter().all(|&other| took > other) {
                    stats.slowest = Some((booking.id.clone(), booking.mode));
                }
                stats.settled.push(took);
            }
            None => {
                stats.never += 1;
                stats.never_on_killed += usize::from(on_killed);
            }
        }
    }
    stats.settled.sort();
    stats
}
