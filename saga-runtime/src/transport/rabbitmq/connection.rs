//! The two connections (publisher, consumer) and their reconnection: one attempt in flight
//! at a time per connection, shared by every caller that needs it.

use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared};
use lapin::options::ConfirmSelectOptions;
use lapin::tcp::OwnedTLSConfig;
use lapin::{Channel, Connection, ConnectionProperties};

use super::topology;
use crate::transport::{Reason, TransportConfig};

/// Something a [`Link`] holds while it is usable.
pub(super) trait Usable: Send + Sync + 'static {
    /// Whether it can still be used (its connection, and channel if any, are open).
    fn usable(&self) -> bool;
}

/// The publisher's connection with its confirm-mode channel. Only publishes (and the
/// exchange declaration) go through it, so when the broker blocks publishing connections on
/// a resource alarm, consumers and their acks are not blocked with it.
pub(super) struct Publisher {
    pub(super) connection: Connection,
    pub(super) channel: Channel,
}

impl Usable for Publisher {
    fn usable(&self) -> bool {
        self.connection.status().connected() && self.channel.status().connected()
    }
}

impl Publisher {
    /// Whether the broker has blocked this connection (`connection.blocked`: a memory or
    /// disk alarm), for error messages.
    pub(super) fn blocked(&self) -> bool {
        self.connection.status().blocked()
    }
}

/// The consumers' connection: every subscription opens its channel on it, acks go through
/// it, and so do topology declarations (queues, bindings, retry queues).
pub(super) struct Consumers {
    pub(super) connection: Connection,
}

impl Usable for Consumers {
    fn usable(&self) -> bool {
        self.connection.status().connected()
    }
}

/// Backoff between connection attempts.
pub(super) fn reconnect_backoff() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_secs(5))
        .with_jitter()
}

/// Connection attempts one reconnection makes before it gives up (each bounded by the
/// connect timeout).
const RECONNECT_ATTEMPTS: usize = 5;

type Attempt<T> = Shared<BoxFuture<'static, Result<Arc<T>, Reason>>>;

struct State<T> {
    current: Option<Arc<T>>,
    /// The reconnection in flight, with its generation.
    attempt: Option<(u64, Attempt<T>)>,
    generation: u64,
}

/// One connection that is re-opened when it drops. At most one reconnection runs at a time:
/// callers that find the connection down while one runs wait for that one's outcome (and
/// all get its error if it fails) rather than queue up and each run their own.
pub(super) struct Link<T> {
    /// "publisher" or "consumer", for logs.
    role: &'static str,
    state: Mutex<State<T>>,
}

impl<T> fmt::Debug for Link<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Link")
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

impl<T: Usable> Link<T> {
    /// A link holding `current`, just opened.
    pub(super) fn new(role: &'static str, current: T) -> Arc<Self> {
        Arc::new(Self {
            role,
            state: Mutex::new(State {
                current: Some(Arc::new(current)),
                attempt: None,
                generation: 0,
            }),
        })
    }

    /// The current connection if it is still usable. A plain lock held for a clone: the
    /// publish path never waits behind an async mutex.
    pub(super) fn current(&self) -> Option<Arc<T>> {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.current.as_ref().filter(|c| c.usable()).cloned()
    }

    /// The current connection, or the outcome of the reconnection in flight, starting one
    /// (with `open`, retried with backoff, [`RECONNECT_ATTEMPTS`] times) if none runs. The
    /// reconnection runs in its own task, so a caller that gives up does not cancel it for
    /// the others.
    pub(super) async fn get<F, Fut>(self: &Arc<Self>, open: F) -> Result<Arc<T>, Reason>
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<T, Reason>> + Send + 'static,
    {
        let attempt = {
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(current) = state.current.as_ref().filter(|c| c.usable()) {
                return Ok(current.clone());
            }
            match &state.attempt {
                Some((_, attempt)) => attempt.clone(),
                None => {
                    state.generation += 1;
                    let attempt = self.start(state.generation, open);
                    state.attempt = Some((state.generation, attempt.clone()));
                    attempt
                }
            }
        };
        attempt.await
    }

    fn start<F, Fut>(self: &Arc<Self>, generation: u64, open: F) -> Attempt<T>
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<T, Reason>> + Send + 'static,
    {
        let link = self.clone();
        let role = self.role;
        let task = tokio::spawn(async move {
            let opened = open
                .retry(reconnect_backoff().with_max_times(RECONNECT_ATTEMPTS))
                .notify(|error, after| {
                    tracing::warn!(role, %error, ?after, "RabbitMQ connection lost; reconnecting");
                })
                .await
                .map(Arc::new);
            // Publish the outcome and retire the attempt in one step: a caller either
            // waits on this attempt or sees its connection (or starts the next attempt).
            let mut state = link.state.lock().unwrap_or_else(|e| e.into_inner());
            if let Ok(current) = &opened {
                state.current = Some(current.clone());
            }
            if state.attempt.as_ref().map(|(g, _)| *g) == Some(generation) {
                state.attempt = None;
            }
            opened
        });
        async move {
            task.await
                .unwrap_or_else(|e| Err(Reason::caused_by("the reconnection task failed", e)))
        }
        .boxed()
        .shared()
    }
}

/// Properties of a connection named `{connection_name}-{role}`.
fn properties(config: &TransportConfig, role: &str) -> ConnectionProperties {
    ConnectionProperties::default()
        .with_connection_name(format!("{}-{role}", config.connection_name).into())
}

/// Where and how a connection is opened: the URL (with its credentials) and, for `amqps://`,
/// the TLS settings read from their files.
#[derive(Clone)]
pub(super) struct Endpoint {
    pub(super) url: String,
    /// Whether the URL is `amqps://` (lapin then always does TLS, never plaintext).
    pub(super) tls: bool,
    pub(super) tls_config: OwnedTLSConfig,
}

/// Opens one lapin connection to `endpoint` named `{connection_name}-{role}`.
async fn open(
    endpoint: &Endpoint,
    config: &TransportConfig,
    role: &str,
) -> Result<Connection, lapin::Error> {
    Connection::connect_with_config(
        &endpoint.url,
        properties(config, role),
        endpoint.tls_config.clone(),
        lapin::runtime::default_runtime()?,
    )
    .await
}

/// Runs `attempt` within the connect timeout.
async fn bounded<T>(
    endpoint: &Endpoint,
    config: &TransportConfig,
    attempt: impl Future<Output = Result<T, lapin::Error>>,
) -> Result<T, Reason> {
    let timeout = config.connect_timeout;
    let failed = if endpoint.tls {
        "cannot open the TLS connection (is this the broker's TLS port, and does its certificate chain to the trusted CA?)"
    } else {
        "cannot open the connection"
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(Ok(opened)) => Ok(opened),
        Ok(Err(e)) => Err(Reason::caused_by(failed, e)),
        Err(_) => Err(Reason::from(format!(
            "no answer within {timeout:?}; is the broker running?"
        ))),
    }
}

/// Opens the publisher connection, its confirm channel, and declares the prefix's exchange;
/// one attempt, bounded by the connect timeout.
pub(super) async fn open_publisher(
    endpoint: &Endpoint,
    config: &TransportConfig,
) -> Result<Publisher, Reason> {
    bounded(endpoint, config, async {
        let connection = open(endpoint, config, "publisher").await?;
        let channel = connection.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        topology::declare_exchange(&channel, config).await?;
        Ok(Publisher {
            connection,
            channel,
        })
    })
    .await
}

/// Opens the consumers' connection; one attempt, bounded by the connect timeout.
pub(super) async fn open_consumers(
    endpoint: &Endpoint,
    config: &TransportConfig,
) -> Result<Consumers, Reason> {
    bounded(endpoint, config, async {
        let connection = open(endpoint, config, "consumer").await?;
        Ok(Consumers { connection })
    })
    .await
}
