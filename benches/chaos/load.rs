//! The load of one run (an open loop at a fixed rate over every replica) and the poller that
//! watches the upstream records of every trace id until it settles.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use booking_proto::order::GetOrdersByTraceIdRequest;
use booking_proto::order::order_service_client::OrderServiceClient;
use booking_proto::payment::GetPaymentsByTraceIdRequest;
use booking_proto::payment::payment_service_client::PaymentServiceClient;
use booking_proto::pb::BookingRequest;
use booking_proto::pb::booking_service_client::BookingServiceClient;
use futures_util::StreamExt;
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Status};
use tonic_types::StatusExt;

use crate::verify::{Answer, Booking, Mode, Timeline, Upstream};

/// How the bookings of a run are drawn.
#[derive(Clone, Debug)]
pub struct Mix {
    pub bookings: usize,
    /// Share of `HandleSyncBooking` (the rest is split evenly between async and throttled).
    pub sync_share: f64,
    /// Share of bookings with `FaultInject`.
    pub fault_ratio: f64,
    pub replicas: usize,
}

/// A well-spread pseudo-random number of `n` (SplitMix64).
fn mix64(n: u64) -> u64 {
    let mut z = n.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The bookings of a run: ids `chaos-{tag}-{n}`, modes and faults spread evenly.
pub fn plan(mix: &Mix, tag: &str) -> Vec<Booking> {
    (0..mix.bookings)
        .map(|n| {
            let draw = (mix64(n as u64) % 1_000_000) as f64 / 1_000_000.0;
            let mode = if draw < mix.sync_share {
                Mode::Sync
            } else if mix64(n as u64 ^ 0xA5A5).is_multiple_of(2) {
                Mode::Async
            } else {
                Mode::Throttled
            };
            // Golden-ratio sequence: any window of bookings has about `fault_ratio` faults.
            let fault = mix.fault_ratio > 0.0
                && ((n as f64) * 0.618_033_988_749_895).fract() < mix.fault_ratio;
            Booking {
                n,
                id: format!("chaos-{tag}-{n:05}"),
                mode,
                fault,
                replica: n % mix.replicas.max(1),
            }
        })
        .collect()
}

/// Timelines of every booking, shared by the callers and the poller.
#[derive(Debug)]
pub struct Board {
    timelines: Mutex<Vec<Timeline>>,
}

impl Board {
    pub fn new(n: usize) -> Arc<Self> {
        Arc::new(Self {
            timelines: Mutex::new(vec![Timeline::default(); n]),
        })
    }

    pub fn lock(&self) -> MutexGuard<'_, Vec<Timeline>> {
        self.timelines.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A copy of every timeline.
    pub fn snapshot(&self) -> Vec<Timeline> {
        self.lock().clone()
    }
}

/// A channel that connects on first use and reconnects after the server comes back.
pub fn lazy_channel(url: &str) -> Result<Channel, String> {
    Ok(Endpoint::from_shared(url.to_string())
        .map_err(|e| format!("bad URL {url}: {e}"))?
        .connect_timeout(Duration::from_secs(2))
        .tcp_nodelay(true)
        .connect_lazy())
}

/// What the load needs to call the replicas.
#[derive(Clone, Debug)]
pub struct LoadConfig {
    pub rate: f64,
    /// Deadline of each call (sent as `grpc-timeout`).
    pub timeout: Duration,
    /// Retries of a call that got UNAVAILABLE or broke off, same `x-request-id`, on the next
    /// replica.
    pub client_retries: u32,
    /// Sends a request whose connection was refused (the replica is down: nothing reached
    /// it) to the next replica, as a load balancer would.
    pub failover: bool,
}

/// True when the request never reached a server (nothing can exist for it). A status the
/// orchestrator itself answered carries `x-request-id` (a saga's `Unavailable` may quote a
/// broker's "connection refused"): it was sent.
fn never_sent(status: &Status) -> bool {
    if status.code() != Code::Unavailable || status.metadata().contains_key("x-request-id") {
        return false;
    }
    let text = format!("{status:?}").to_ascii_lowercase();
    text.contains("connection refused") || text.contains("tcp connect error")
}

async fn call_once(
    client: &mut BookingServiceClient<Channel>,
    booking: &Booking,
    timeout: Duration,
) -> Answer {
    let mut request = Request::new(BookingRequest {
        product_id: 1 + (booking.n % 1000) as i64,
        count: 1,
        fault_inject: booking.fault,
    });
    let id = MetadataValue::try_from(booking.id.as_str()).expect("trace ids are ASCII");
    request.metadata_mut().insert("x-request-id", id);
    request.set_timeout(timeout);
    let call = async {
        match booking.mode {
            Mode::Sync => client.handle_sync_booking(request).await.map(|r| {
                let r = r.into_inner();
                Answer::Booked {
                    order_id: r.order_id,
                    payment_id: r.payment_id,
                }
            }),
            Mode::Throttled => client.handle_throttling_booking(request).await.map(|r| {
                let r = r.into_inner();
                Answer::Booked {
                    order_id: r.order_id,
                    payment_id: r.payment_id,
                }
            }),
            Mode::Async => client
                .handle_async_booking(request)
                .await
                .map(|_| Answer::Accepted),
        }
    };
    // The server enforces the deadline; this bounds a call whose server vanished silently.
    match tokio::time::timeout(timeout + Duration::from_secs(5), call).await {
        Ok(Ok(answer)) => answer,
        Ok(Err(status)) => Answer::Failed {
            unsent: never_sent(&status),
            code: status.code(),
            message: status.message().to_string(),
            reason: status.get_details_error_info().map(|info| info.reason),
        },
        Err(_) => Answer::Failed {
            code: Code::DeadlineExceeded,
            message: format!(
                "no answer within {:?} (client-side limit)",
                timeout + Duration::from_secs(5)
            ),
            unsent: false,
            reason: None,
        },
    }
}

/// Sends every booking at `config.rate` per second (open loop: a slow answer does not delay
/// the next request), each to its replica, and records the answers. Returns when every call
/// has an answer.
pub async fn run_load(
    bookings: Arc<Vec<Booking>>,
    replicas: Vec<BookingServiceClient<Channel>>,
    board: Arc<Board>,
    config: LoadConfig,
    started: Instant,
) {
    let interval = Duration::from_secs_f64(1.0 / config.rate.max(0.001));
    let mut calls = Vec::with_capacity(bookings.len());
    for (i, booking) in bookings.iter().enumerate() {
        tokio::time::sleep_until((started + interval * i as u32).into()).await;
        let booking = booking.clone();
        let board = Arc::clone(&board);
        let replicas = replicas.clone();
        let config = config.clone();
        calls.push(tokio::spawn(async move {
            board.lock()[i].sent_at = Some(Instant::now());
            let mut replica = booking.replica;
            let (mut retries, mut failovers) = (0, 0);
            let answer = loop {
                let mut client = replicas[replica].clone();
                let answer = call_once(&mut client, &booking, config.timeout).await;
                // Retryable: UNAVAILABLE, or a call that broke off (UNKNOWN/CANCELLED with no
                // saga error reason: the connection died under it).
                let (retryable, unsent) = match &answer {
                    Answer::Failed {
                        code: Code::Unavailable,
                        unsent,
                        ..
                    } => (true, *unsent),
                    Answer::Failed {
                        code: Code::Unknown | Code::Cancelled,
                        reason: None,
                        ..
                    } => (true, false),
                    _ => (false, false),
                };
                if unsent && config.failover && failovers + 1 < replicas.len() {
                    failovers += 1;
                } else if retryable && retries < config.client_retries {
                    retries += 1;
                } else {
                    break answer;
                }
                replica = (replica + 1) % replicas.len();
            };
            let mut timelines = board.lock();
            let timeline = &mut timelines[i];
            timeline.answered_at = Some(Instant::now());
            timeline.answer = Some(answer);
            timeline.replica = Some(replica);
        }));
    }
    for call in calls {
        let _ = call.await;
    }
}

/// Clients of the Order and Payment services' query RPCs.
#[derive(Clone, Debug)]
pub struct Upstreams {
    pub orders: OrderServiceClient<Channel>,
    pub payments: PaymentServiceClient<Channel>,
}

impl Upstreams {
    pub fn new(order_url: &str, payment_url: &str) -> Result<Self, String> {
        Ok(Self {
            orders: OrderServiceClient::new(lazy_channel(order_url)?),
            payments: PaymentServiceClient::new(lazy_channel(payment_url)?),
        })
    }

    /// The records of `trace_id` (reads bypass the services' latency and load gate).
    pub async fn read(&self, trace_id: &str) -> Result<Upstream, Status> {
        let orders = self
            .orders
            .clone()
            .get_orders_by_trace_id(GetOrdersByTraceIdRequest {
                trace_id: trace_id.to_string(),
            })
            .await?
            .into_inner()
            .orders;
        let payments = self
            .payments
            .clone()
            .get_payments_by_trace_id(GetPaymentsByTraceIdRequest {
                trace_id: trace_id.to_string(),
            })
            .await?
            .into_inner()
            .payments;
        Ok(Upstream::new(&orders, &payments))
    }

    /// Reads the records of the bookings at `indexes`, `parallel` at a time; `None` for
    /// those that could not be read.
    pub async fn read_many(
        &self,
        bookings: &[Booking],
        indexes: Vec<usize>,
        parallel: usize,
    ) -> Vec<(usize, Option<Upstream>)> {
        futures_util::stream::iter(indexes)
            .map(|i| async move { (i, self.read(&bookings[i].id).await.ok()) })
            .buffer_unordered(parallel)
            .collect()
            .await
    }
}

/// Polls the records of every sent, unsettled booking every `interval`, noting when each is
/// first seen settled, until `stop` is set.
pub async fn poll_until_stopped(
    bookings: Arc<Vec<Booking>>,
    board: Arc<Board>,
    upstreams: Upstreams,
    interval: Duration,
    stop: Arc<AtomicBool>,
) {
    while !stop.load(Ordering::Relaxed) {
        let round = Instant::now();
        let open: Vec<usize> = board
            .lock()
            .iter()
            .enumerate()
            .filter(|(_, t)| !t.unsent() && t.settled_at.is_none())
            .map(|(i, _)| i)
            .collect();
        let read = upstreams.read_many(&bookings, open, 32).await;
        let seen = Instant::now();
        {
            let mut timelines = board.lock();
            for (i, upstream) in read {
                let Some(upstream) = upstream else { continue };
                let timeline = &mut timelines[i];
                if upstream.settled() && timeline.settled_at.is_none() {
                    timeline.settled_at = Some(seen);
                }
                timeline.upstream = Some(upstream);
            }
        }
        tokio::time::sleep_until((round + interval).into()).await;
    }
}

/// True when every sent booking that may have a saga has settled (or the caller is still
/// waiting on none of them and nothing more can come).
pub fn all_settled(board: &Board) -> bool {
    board
        .lock()
        .iter()
        .all(|t| t.unsent() || t.settled_at.is_some())
}
