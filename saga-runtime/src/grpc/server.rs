//! [`GrpcServer`]: a tonic server with reflection (v1 and v1alpha), health and graceful
//! shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::body::Body;
use tonic::server::NamedService;
use tonic::service::{Routes, RoutesBuilder};
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use super::health::report_health;
use crate::observe::HealthWatch;
use crate::tls::{ServerTls, TlsError};

type ShutdownFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

const HEALTH_SERVICE: &str = "grpc.health.v1.Health";
const REFLECTION_V1: &str = "grpc.reflection.v1.ServerReflection";
const REFLECTION_V1ALPHA: &str = "grpc.reflection.v1alpha.ServerReflection";

/// Why a server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The listen address could not be bound (in use, not local, no permission).
    #[error("cannot listen on {addr}: {source}; pick a free address or port")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// A registered file descriptor set is not a valid encoded `FileDescriptorSet`.
    #[error(
        "invalid file descriptor set for server reflection: {0}; register the bytes your proto build emitted"
    )]
    Reflection(#[from] tonic_reflection::server::Error),
    /// The SIGINT/SIGTERM handlers could not be installed.
    #[error(
        "cannot install the shutdown signal handlers: {0}; disable them with `shutdown_on_signals(false)`"
    )]
    Signal(std::io::Error),
    /// The TLS files cannot be used (missing, unreadable, not PEM).
    #[error("cannot serve gRPC over TLS: {0}")]
    Tls(#[from] TlsError),
    /// The server failed while running, or rustls refused the TLS identity.
    #[error("the gRPC server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// The server task panicked or was cancelled.
    #[error("the gRPC server task ended abnormally: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// A tonic server with the standard extras every sagaflow service wants:
/// - server reflection v1 **and** v1alpha (grpcurl 1.8 speaks only v1alpha), advertising
///   exactly the services added, the health service and reflection itself;
/// - the standard health service (`grpc.health.v1.Health`), reporting SERVING for `""` and
///   every added service while the server runs (or, with [`GrpcServer::health`], while the
///   health monitor finds the store, the broker and the consumers up), NOT_SERVING once
///   shutdown begins;
/// - graceful shutdown on SIGINT/SIGTERM (unless disabled), on a user future
///   ([`GrpcServer::shutdown_on`]) or on [`ServerHandle::shutdown`]: the listener closes and
///   in-flight calls finish before the server task ends.
///
/// ```no_run
/// # async fn run(svc: tonic_health::pb::health_server::HealthServer<tonic_health::server::HealthService>) -> Result<(), saga_runtime::grpc::ServeError> {
/// use saga_runtime::grpc::GrpcServer;
/// let server = GrpcServer::new()
///     .add_service(svc)
///     .serve("127.0.0.1:0".parse().unwrap())
///     .await?;
/// println!("listening on {}", server.local_addr());
/// server.wait().await
/// # }
/// ```
pub struct GrpcServer {
    routes: RoutesBuilder,
    services: Vec<&'static str>,
    descriptor_sets: Vec<&'static [u8]>,
    on_signals: bool,
    shutdown: Option<ShutdownFuture>,
    builder: Option<Server>,
    health: Option<HealthWatch>,
    tls: Option<ServerTls>,
}

impl std::fmt::Debug for GrpcServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrpcServer")
            .field("services", &self.services)
            .field("descriptor_sets", &self.descriptor_sets.len())
            .field("on_signals", &self.on_signals)
            .field("shutdown", &self.shutdown.is_some())
            .field("custom_builder", &self.builder.is_some())
            .field("health_monitor", &self.health.is_some())
            .field("tls", &self.tls)
            .finish()
    }
}

impl Default for GrpcServer {
    fn default() -> Self {
        Self::new()
    }
}

impl GrpcServer {
    /// A server with no service yet, shutting down on SIGINT/SIGTERM.
    pub fn new() -> Self {
        Self {
            routes: RoutesBuilder::default(),
            services: Vec::new(),
            descriptor_sets: Vec::new(),
            on_signals: true,
            shutdown: None,
            builder: None,
            health: None,
            tls: None,
        }
    }

    /// Serves over TLS with `tls`'s identity, and, when it names a client CA, only to
    /// clients presenting a certificate that chains to it (mutual TLS; a client without one
    /// fails its handshake). The files are read by [`GrpcServer::serve`], which fails with
    /// [`ServeError::Tls`] naming a file that is missing or not PEM. Without it the server
    /// speaks plaintext HTTP/2 (`grpcurl -plaintext`).
    pub fn tls(mut self, tls: ServerTls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Reports health from `health` (a started
    /// [`HealthMonitor`](crate::observe::HealthMonitor)) instead of SERVING for as long as the
    /// server runs: the server (`""`) and every added service are NOT_SERVING while the store,
    /// the broker or the consumers are down, and SERVING again once they recover. Shutdown
    /// still turns them NOT_SERVING for good.
    pub fn health(mut self, health: HealthWatch) -> Self {
        self.health = Some(health);
        self
    }

    /// Serves with `builder`, the user's tonic server builder, instead of a default one: its
    /// settings apply (timeouts, concurrency and HTTP/2 limits, keep-alive, its TLS unless
    /// [`GrpcServer::tls`] replaces it). Its routes are this server's. For tower layers
    /// (which change the builder's type), take the routes with [`GrpcServer::into_routes`] and
    /// serve them with your own `Server::builder().layer(...)`.
    pub fn with_builder(mut self, builder: Server) -> Self {
        self.builder = Some(builder);
        self
    }

    /// Everything this server would serve (the services, health, reflection v1 and v1alpha)
    /// as tonic routes, with the health reporter (every service marked serving), for a user who
    /// serves them with their own builder and layers. Signals and shutdown futures set on this
    /// server are not used then.
    pub async fn into_routes(self) -> Result<(Routes, HealthReporter), ServeError> {
        let (v1, v1alpha) = self.reflection()?;
        let (health, health_service) = tonic_health::server::health_reporter();
        for name in &self.services {
            health
                .set_service_status(*name, ServingStatus::Serving)
                .await;
        }
        let mut routes = self.routes;
        routes
            .add_service(health_service)
            .add_service(v1)
            .add_service(v1alpha);
        Ok((routes.routes(), health))
    }

    /// Serves `service` (a tonic-generated `XxxServer`), advertised by reflection and
    /// reported SERVING by health under its full name.
    pub fn add_service<S>(mut self, service: S) -> Self
    where
        S: tower::Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
            + NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        self.routes.add_service(service);
        self.services.push(S::NAME);
        self
    }

    /// Registers an encoded `FileDescriptorSet` (the `FILE_DESCRIPTOR_SET` a proto build
    /// emits) so reflection can describe the added services. Register one per proto crate.
    pub fn register_file_descriptor_set(mut self, encoded: &'static [u8]) -> Self {
        self.descriptor_sets.push(encoded);
        self
    }

    /// Whether SIGINT (Ctrl-C) and SIGTERM start a graceful shutdown (default: true).
    /// Tests and embedders that own signal handling turn it off.
    pub fn shutdown_on_signals(mut self, enabled: bool) -> Self {
        self.on_signals = enabled;
        self
    }

    /// Also starts a graceful shutdown when `signal` completes.
    pub fn shutdown_on(mut self, signal: impl Future<Output = ()> + Send + 'static) -> Self {
        self.shutdown = Some(Box::pin(signal));
        self
    }

    /// Binds `addr` (port 0 picks a free port), spawns the server on the current tokio
    /// runtime and returns once it accepts connections (over TLS when [`GrpcServer::tls`]
    /// was given).
    pub async fn serve(mut self, addr: SocketAddr) -> Result<ServerHandle, ServeError> {
        let mut builder = self.builder.take().unwrap_or_else(Server::builder);
        if let Some(tls) = self.tls.take() {
            builder = builder.tls_config(super::server_tls_config(&tls)?)?;
        }
        let on_signals = self.on_signals;
        let shutdown = self.shutdown.take();
        let monitor = self.health.take();
        let services = self.services.clone();
        let (routes, health) = self.into_routes().await?;
        // Follows the monitor until shutdown begins (then NOT_SERVING stays).
        let follower = monitor
            .map(|watch| tokio::spawn(report_health(health.clone(), services.clone(), watch)));

        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| ServeError::Bind { addr, source })?;
        let local_addr = listener
            .local_addr()
            .map_err(|source| ServeError::Bind { addr, source })?;
        let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));

        let (trigger, triggered) = oneshot::channel::<()>();
        let stop = stop_signal(on_signals, shutdown, triggered)?;
        let reporter = health.clone();
        let names = services.clone();
        let signal = async move {
            stop.await;
            if let Some(follower) = follower {
                follower.abort();
                let _ = follower.await;
            }
            tracing::info!(%local_addr, "gRPC server shutting down: draining in-flight calls");
            reporter
                .set_service_status("", ServingStatus::NotServing)
                .await;
            for name in &names {
                reporter
                    .set_service_status(*name, ServingStatus::NotServing)
                    .await;
            }
        };

        let server = builder.add_routes(routes);
        let task = tokio::spawn(server.serve_with_incoming_shutdown(incoming, signal));
        tracing::info!(%local_addr, ?services, "gRPC server listening");
        Ok(ServerHandle {
            local_addr,
            health,
            trigger: Some(trigger),
            task,
        })
    }

    fn reflection(
        &self,
    ) -> Result<
        (
            tonic_reflection::server::v1::ServerReflectionServer<
                impl tonic_reflection::server::v1::ServerReflection,
            >,
            tonic_reflection::server::v1alpha::ServerReflectionServer<
                impl tonic_reflection::server::v1alpha::ServerReflection,
            >,
        ),
        ServeError,
    > {
        let builder = || {
            let mut builder = tonic_reflection::server::Builder::configure()
                .include_reflection_service(false)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
                // google.rpc.ErrorInfo, so clients decode the trace id in saga error details.
                .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(
                    tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
                );
            for set in &self.descriptor_sets {
                builder = builder.register_encoded_file_descriptor_set(set);
            }
            let names = self.services.iter().copied().chain([
                HEALTH_SERVICE,
                REFLECTION_V1,
                REFLECTION_V1ALPHA,
            ]);
            for name in names {
                builder = builder.with_service_name(name);
            }
            builder
        };
        let v1 = builder().build_v1()?;
        let v1alpha = builder().build_v1alpha()?;
        Ok((v1, v1alpha))
    }
}

/// Completes when the first shutdown cause fires: the handle's trigger (or its drop), the
/// user future, or a signal.
fn stop_signal(
    on_signals: bool,
    user: Option<ShutdownFuture>,
    triggered: oneshot::Receiver<()>,
) -> Result<ShutdownFuture, ServeError> {
    let signals: ShutdownFuture = if on_signals {
        signals()?
    } else {
        Box::pin(std::future::pending())
    };
    let user = user.unwrap_or_else(|| Box::pin(std::future::pending()));
    Ok(Box::pin(async move {
        tokio::select! {
            _ = triggered => {}
            () = user => {}
            () = signals => {}
        }
    }))
}

#[cfg(unix)]
fn signals() -> Result<ShutdownFuture, ServeError> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt()).map_err(ServeError::Signal)?;
    let mut terminate = signal(SignalKind::terminate()).map_err(ServeError::Signal)?;
    Ok(Box::pin(async move {
        tokio::select! {
            _ = interrupt.recv() => tracing::info!("SIGINT received"),
            _ = terminate.recv() => tracing::info!("SIGTERM received"),
        }
    }))
}

#[cfg(not(unix))]
fn signals() -> Result<ShutdownFuture, ServeError> {
    Ok(Box::pin(async {
        if tokio::signal::ctrl_c().await.is_ok() {
            tracing::info!("Ctrl-C received");
        } else {
            std::future::pending::<()>().await;
        }
    }))
}

/// A running [`GrpcServer`]. Dropping the handle shuts the server down gracefully (without
/// waiting); keep it for as long as the server should run.
#[derive(Debug)]
pub struct ServerHandle {
    local_addr: SocketAddr,
    health: HealthReporter,
    trigger: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), tonic::transport::Error>>,
}

impl ServerHandle {
    /// The address the server listens on (the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The health reporter, to mark services NOT_SERVING (or SERVING again) at will.
    pub fn health(&self) -> &HealthReporter {
        &self.health
    }

    /// Starts a graceful shutdown and waits until every in-flight call has finished.
    pub async fn shutdown(mut self) -> Result<(), ServeError> {
        if let Some(trigger) = self.trigger.take() {
            // An error means the server already stopped: nothing left to trigger.
            let _ = trigger.send(());
        }
        self.wait().await
    }

    /// Waits until the server stops (a signal, the user future, or an error).
    pub async fn wait(mut self) -> Result<(), ServeError> {
        let trigger = self.trigger.take();
        let result = (&mut self.task).await;
        drop(trigger);
        Ok(result??)
    }
}
