//! The gRPC health status follows the replica's real state: NOT_SERVING while its (private)
//! NATS server or Redis server is down or its consumers stopped, SERVING again once they are
//! back. The servers are private processes on free loopback ports, killed by their pid.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sagaflow::engine::{Orchestrator, OrchestratorConfig};
use sagaflow::grpc::GrpcServer;
use sagaflow::observe::{HealthMonitor, HealthWatch};
use sagaflow::store::{MemoryStore, RedisConfig, RedisStore, SagaStore, StoreConfig};
use sagaflow::transport::{MemoryTransport, NatsTransport, Transport, TransportConfig};
use sagaflow::{SagaContext, StepResult, saga};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::common::backends::unique_prefix;
use crate::common::servers::Private;

struct Noop;

#[saga(name = "HealthNoop")]
impl Noop {
    #[step(compensate = undo)]
    async fn act(&self, _cx: &SagaContext, input: &u32) -> StepResult<u32> {
        Ok(*input)
    }
    async fn undo(&self, _cx: &SagaContext, _act: &u32) -> StepResult<()> {
        Ok(())
    }
}

/// Asks the health service of `addr` for `service` until it says `want`; fails after a
/// generous bound (never a timing assertion: the bound only stops a hung test).
async fn until_status(
    addr: SocketAddr,
    service: &str,
    want: ServingStatus,
    why: &str,
    monitor: &HealthWatch,
) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
            .expect("a valid URI")
            .connect()
            .await;
        let status = match channel.map(HealthClient::new) {
            Ok(mut client) => client
                .check(HealthCheckRequest {
                    service: service.to_string(),
                })
                .await
                .map(|response| response.into_inner().status())
                .map_err(|status| status.to_string()),
            Err(error) => Err(error.to_string()),
        };
        if status.as_ref().ok() == Some(&want) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{why}: health of `{service}` never became {want:?}; last answer {status:?}; the monitor says: {}",
            monitor.current()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn server_config(prefix: &str) -> OrchestratorConfig {
    OrchestratorConfig {
        pod_id: prefix.to_string(),
        sweep_interval: Some(Duration::from_millis(200)),
        ..OrchestratorConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_flips_when_a_private_broker_or_store_dies_and_comes_back() {
    let mut nats = Private::nats("health");
    let mut redis = Private::redis("health");
    let prefix = unique_prefix("health");
    let transport_config = TransportConfig {
        connect_timeout: Duration::from_secs(2),
        ..TransportConfig::with_prefix(&prefix)
    };
    let nats_url = format!("nats://127.0.0.1:{}", nats.port);
    let transport: Arc<dyn Transport> = Arc::new(
        NatsTransport::connect(&nats_url, transport_config)
            .await
            .expect("the private NATS server answers"),
    );
    let redis_config = RedisConfig {
        key_prefix: prefix.clone(),
        connect_timeout: Duration::from_secs(2),
        response_timeout: Duration::from_millis(500),
        ..RedisConfig::from(StoreConfig::default())
    };
    let redis_url = format!("redis://127.0.0.1:{}", redis.port);
    let store: Arc<dyn SagaStore> = Arc::new(
        RedisStore::connect(&redis_url, redis_config)
            .await
            .expect("the private Redis server answers"),
    );
    let orchestrator = Orchestrator::builder(Arc::new(Noop), transport, store)
        .config(server_config(&prefix))
        .build();
    let consumers = orchestrator.serve().await.expect("consumers start");
    let watch = orchestrator
        .health_monitor()
        .watch_consumers(&consumers)
        .interval(Duration::from_millis(100))
        .timeout(Duration::from_millis(500))
        .start()
        .await;
    let server = GrpcServer::new()
        .shutdown_on_signals(false)
        .health(watch.clone())
        .serve("127.0.0.1:0".parse().unwrap())
        .await
        .expect("the gRPC server starts");
    let addr = server.local_addr();

    until_status(addr, "", ServingStatus::Serving, "everything up", &watch).await;

    nats.kill();
    until_status(addr, "", ServingStatus::NotServing, "NATS killed", &watch).await;
    nats.start();
    until_status(addr, "", ServingStatus::Serving, "NATS back", &watch).await;

    redis.kill();
    until_status(addr, "", ServingStatus::NotServing, "Redis killed", &watch).await;
    redis.start();
    until_status(addr, "", ServingStatus::Serving, "Redis back", &watch).await;

    // The replica still runs sagas after both came back.
    let cx = SagaContext::for_saga::<Noop>(format!("{prefix}-after"))
        .with_deadline(Some(Instant::now() + Duration::from_secs(30)));
    assert_eq!(orchestrator.run_throttled(&cx, 7).await.expect("runs"), 7);

    consumers.abort();
    until_status(
        addr,
        "",
        ServingStatus::NotServing,
        "consumers stopped",
        &watch,
    )
    .await;
    server.shutdown().await.expect("the server stops");
}

/// Consumers that stop (shut down) turn the replica NOT_SERVING, on the memory backends too,
/// and the monitor's own view says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_consumers_are_not_serving() {
    let prefix = unique_prefix("health-memory");
    let transport: Arc<dyn Transport> =
        Arc::new(MemoryTransport::new(TransportConfig::with_prefix(&prefix)));
    let store: Arc<dyn SagaStore> = Arc::new(MemoryStore::new(StoreConfig::memory()));
    let orchestrator = Orchestrator::builder(Arc::new(Noop), transport.clone(), store.clone())
        .config(server_config(&prefix))
        .build();
    let consumers = orchestrator.serve().await.expect("consumers start");
    let monitor = HealthMonitor::new(store, transport)
        .watch_consumers(&consumers)
        .interval(Duration::from_millis(20));
    assert!(monitor.check().await.is_serving());
    let mut watch = monitor.clone().start().await;
    assert!(watch.current().is_serving());
    consumers.shutdown().await;
    let health = watch.changed().await.expect("the monitor runs");
    assert!(!health.is_serving(), "{health}");
    assert!(health.store.is_up() && health.broker.is_up(), "{health}");
    assert!(!health.consumers.is_up(), "{health}");
    assert!(!monitor.check().await.is_serving());
}

/// Every backend answers its liveness probe and names itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_backend_answers_its_ping() {
    use crate::common::backends::{Backend, Backends};
    for (backend, broker, store) in [
        (Backend::Memory, "memory", "memory"),
        (Backend::Nats, "nats", "redis"),
        (Backend::RabbitMq, "rabbitmq", "redis"),
    ] {
        let backends = Backends::connect(backend, "ping").await;
        assert_eq!(backends.transport.backend(), broker);
        backends
            .transport
            .ping()
            .await
            .unwrap_or_else(|e| panic!("{broker} answers its ping: {e}"));
        backends
            .store
            .ping()
            .await
            .unwrap_or_else(|e| panic!("{store} answers its ping: {e}"));
        let monitor = HealthMonitor::new(backends.store.clone(), backends.transport.clone());
        let health = monitor.check().await;
        assert!(health.is_serving(), "{broker}: {health}");
        backends.cleanup().await;
    }
}
