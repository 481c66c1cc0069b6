//! The `sagaflow` binary, run as a process against an orchestrator served in-process (memory
//! transport and store) with its admin API on an ephemeral loopback port.

use std::process::Output;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sagaflow::admin::Admin;
use sagaflow::engine::{Orchestrator, OrchestratorConfig};
use sagaflow::error::SagaFailure;
use sagaflow::grpc::ServerHandle;
use sagaflow::grpc::admin::AdminService;
use sagaflow::store::{MemoryStore, SagaStore, StoreConfig};
use sagaflow::tls::ServerTls;
use sagaflow::transport::{MemoryTransport, TransportConfig};
use sagaflow::{RetryPolicy, SagaContext, SagaError, StepError, StepResult, saga};
use serde_json::Value;

#[path = "../../tests/tls/pki.rs"]
mod pki;

/// Reserves an item, then charges for it, which always fails; releasing the item fails until
/// the warehouse is back (`release_ok`), so the saga gets stuck compensating.
struct Reservation {
    release_ok: Arc<AtomicBool>,
}

#[saga]
impl Reservation {
    #[step(compensate = release)]
    async fn reserve(&self, _cx: &SagaContext, item: &String) -> StepResult<String> {
        Ok(format!("held {item}"))
    }
    async fn release(&self, _cx: &SagaContext, _reserve: &String) -> StepResult<()> {
        if self.release_ok.load(Ordering::SeqCst) {
            Ok(())
        } else {
            Err(StepError::retryable("warehouse down"))
        }
    }

    #[step(pivot)]
    async fn charge(&self, _cx: &SagaContext, reserve: &String) -> StepResult<String> {
        Err(StepError::fatal(format!("card declined for {reserve}")))
    }
}

/// An orchestrator of [`Reservation`] and its admin API.
struct Fixture {
    orchestrator: Orchestrator<Reservation>,
    store: Arc<dyn SagaStore>,
    release_ok: Arc<AtomicBool>,
    addr: String,
    _server: ServerHandle,
}

async fn fixture(token: Option<&str>) -> Fixture {
    fixture_with(token, None).await
}

/// A fixture whose admin API serves TLS with `tls`.
async fn fixture_with(token: Option<&str>, tls: Option<ServerTls>) -> Fixture {
    let release_ok = Arc::new(AtomicBool::new(false));
    let saga = Arc::new(Reservation {
        release_ok: Arc::clone(&release_ok),
    });
    let store: Arc<dyn SagaStore> = Arc::new(MemoryStore::new(StoreConfig::default()));
    let transport = Arc::new(MemoryTransport::new(TransportConfig::default()));
    let config = OrchestratorConfig {
        compensation_retry: RetryPolicy::new(3, Duration::from_millis(1), Duration::from_millis(2)),
        sweep_interval: None,
        ..OrchestratorConfig::default()
    };
    let orchestrator = Orchestrator::builder(saga, transport, Arc::clone(&store))
        .config(config)
        .build();
    let admin = Admin::new(Arc::clone(&store)).register(&orchestrator);
    let server = AdminService::new(admin)
        .with_token(token)
        .server()
        .shutdown_on_signals(false);
    let scheme = if tls.is_some() { "https" } else { "http" };
    let server = match tls {
        Some(tls) => server.tls(tls),
        None => server,
    }
    .serve("127.0.0.1:0".parse().expect("an address"))
    .await
    .expect("the admin API listens");
    Fixture {
        orchestrator,
        store,
        release_ok,
        addr: format!("{scheme}://{}", server.local_addr()),
        _server: server,
    }
}

/// Runs `sagaflow --addr <addr> <args>` as alice, with no token or address from the
/// environment.
async fn sagaflow(addr: &str, args: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_sagaflow"))
        .arg("--addr")
        .arg(addr)
        .args(args)
        .env_remove("SAGAFLOW_ADMIN_TOKEN")
        .env_remove("SAGAFLOW_ADMIN_ADDR")
        .env_remove("SAGAFLOW_ADMIN_CA")
        .env_remove("SAGAFLOW_ADMIN_CERT")
        .env_remove("SAGAFLOW_ADMIN_KEY")
        .env("USER", "alice")
        .output()
        .await
        .expect("the sagaflow binary runs")
}

fn code(output: &Output) -> i32 {
    output.status.code().expect("exited")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn json(output: &Output) -> Value {
    assert_eq!(code(output), 0, "stderr: {}", stderr(output));
    serde_json::from_slice(&output.stdout).expect("one JSON document on stdout")
}

/// Runs a saga that gets stuck releasing its reservation; returns its trace id.
async fn stuck_saga(fixture: &Fixture, trace_id: &str) -> String {
    let error = fixture
        .orchestrator
        .run_sync(
            &SagaContext::for_saga::<Reservation>(trace_id),
            "book".to_string(),
        )
        .await
        .expect_err("charge fails and the release is stuck");
    assert!(matches!(error, SagaError::Stuck { .. }), "{error:?}");
    trace_id.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_saga_is_listed_resumed_through_the_cli_and_ends_compensated() {
    let fixture = fixture(None).await;
    let id = stuck_saga(&fixture, "stuck-1").await;

    let listed = json(&sagaflow(&fixture.addr, &["list", "--status", "stuck", "--json"]).await);
    let sagas = listed["sagas"].as_array().expect("a list of sagas");
    assert_eq!(sagas.len(), 1, "{listed}");
    assert_eq!(sagas[0]["trace_id"], id.as_str());
    assert_eq!(sagas[0]["saga"], "Reservation");
    assert_eq!(sagas[0]["status"], "stuck");
    assert_eq!(sagas[0]["step"], "reserve");

    // Resuming while the warehouse is still down would only get stuck again: bring it back.
    fixture.release_ok.store(true, Ordering::SeqCst);
    let resumed = sagaflow(&fixture.addr, &["resume", &id]).await;
    assert_eq!(code(&resumed), 0, "stderr: {}", stderr(&resumed));

    let outcome = tokio::time::timeout(Duration::from_secs(30), fixture.store.watch(&id))
        .await
        .expect("the resumed saga ends")
        .expect("the store answers");
    assert!(
        matches!(&outcome, Err(SagaFailure::Compensated { step, .. }) if step == "charge"),
        "{outcome:?}"
    );

    let got = json(&sagaflow(&fixture.addr, &["get", &id, "--json"]).await);
    assert_eq!(got["saga"]["status"], "compensated", "{got}");
    assert_eq!(
        got["state"],
        Value::Null,
        "a compensated saga keeps no state"
    );
    let history = got["history"].as_array().expect("a history");
    let position = |pred: &dyn Fn(&Value) -> bool| history.iter().position(pred);
    let release = |h: &Value| h["event"] == "transition" && h["compensation"] == true;
    let failed_release = position(&|h| release(h) && h["error"].is_string())
        .unwrap_or_else(|| panic!("a failed release attempt in {history:#?}"));
    let resumed_at = position(&|h| h["event"] == "resumed" && h["by"] == "alice")
        .unwrap_or_else(|| panic!("the resumed entry in {history:#?}"));
    let released = position(&|h| release(h) && h["error"].is_null())
        .unwrap_or_else(|| panic!("the successful release in {history:#?}"));
    assert!(
        failed_release < resumed_at && resumed_at < released,
        "{history:#?}"
    );
    assert_eq!(history[failed_release]["step"], "reserve");
    // Every attempt of the release before the resume is in the history: 3, the policy's bound.
    let attempts: Vec<&Value> = history[..resumed_at]
        .iter()
        .filter(|h| release(h) && h["error"].is_string())
        .map(|h| &h["attempt"])
        .collect();
    assert_eq!(attempts, [1, 2, 3], "{history:#?}");
    assert!(
        history[failed_release]["error"]
            .as_str()
            .is_some_and(|e| e.contains("warehouse down")),
        "{history:#?}"
    );

    // The human table shows the same saga.
    let table = sagaflow(&fixture.addr, &["get", &id]).await;
    assert_eq!(code(&table), 0, "stderr: {}", stderr(&table));
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.contains("compensated"), "{text}");
    assert!(text.contains("by alice"), "{text}");

    // A finished saga cannot be resumed: refused.
    let again = sagaflow(&fixture.addr, &["resume", &id]).await;
    assert_eq!(code(&again), 4, "stderr: {}", stderr(&again));
    assert!(stderr(&again).contains("not stuck"), "{}", stderr(&again));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_trace_id_exits_3() {
    let fixture = fixture(None).await;
    let output = sagaflow(&fixture.addr, &["get", "no-such-saga"]).await;
    assert_eq!(code(&output), 3, "stderr: {}", stderr(&output));
    assert!(
        stderr(&output).contains("no-such-saga"),
        "{}",
        stderr(&output)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_orchestrator_exits_5_naming_its_address() {
    // A port nothing listens on any more.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    let addr = format!("http://{}", listener.local_addr().expect("bound"));
    drop(listener);
    let output = sagaflow(&addr, &["sagas"]).await;
    assert_eq!(code(&output), 5, "stderr: {}", stderr(&output));
    assert!(stderr(&output).contains(&addr), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("--admin-addr"),
        "{}",
        stderr(&output)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_or_wrong_token_exits_6_and_the_right_one_is_admitted() {
    let fixture = fixture(Some("s3cret")).await;
    let missing = sagaflow(&fixture.addr, &["sagas"]).await;
    assert_eq!(code(&missing), 6, "stderr: {}", stderr(&missing));
    let wrong = sagaflow(&fixture.addr, &["--token", "guess", "sagas"]).await;
    assert_eq!(code(&wrong), 6, "stderr: {}", stderr(&wrong));
    assert!(!stderr(&wrong).contains("guess"), "{}", stderr(&wrong));
    let right = json(&sagaflow(&fixture.addr, &["--token", "s3cret", "sagas", "--json"]).await);
    assert_eq!(right["sagas"][0]["name"], "Reservation", "{right}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_mutual_tls_the_cli_needs_the_ca_and_a_client_certificate() {
    let pki = pki::Pki::generate("cli");
    let fixture = fixture_with(None, Some(pki.server().require_client_certs(&pki.ca))).await;
    let (ca, cert, key) = (
        pki::Pki::arg(&pki.ca),
        pki::Pki::arg(&pki.client_cert),
        pki::Pki::arg(&pki.client_key),
    );
    let admitted = json(
        &sagaflow(
            &fixture.addr,
            &[
                "--ca-file",
                &ca,
                "--cert-file",
                &cert,
                "--key-file",
                &key,
                "sagas",
                "--json",
            ],
        )
        .await,
    );
    assert_eq!(admitted["sagas"][0]["name"], "Reservation", "{admitted}");

    // No client certificate: the handshake fails, the orchestrator is unreachable this way.
    let no_cert = sagaflow(&fixture.addr, &["--ca-file", &ca, "sagas"]).await;
    assert_eq!(code(&no_cert), 5, "stderr: {}", stderr(&no_cert));
    // https without a CA to check the server against, or TLS files with http: usage errors.
    let no_ca = sagaflow(&fixture.addr, &["sagas"]).await;
    assert_eq!(code(&no_ca), 1, "stderr: {}", stderr(&no_ca));
    assert!(stderr(&no_ca).contains("--ca-file"), "{}", stderr(&no_ca));
    let plaintext = fixture.addr.replacen("https://", "http://", 1);
    let refused = sagaflow(&plaintext, &["--ca-file", &ca, "sagas"]).await;
    assert_eq!(code(&refused), 1, "stderr: {}", stderr(&refused));
    assert!(
        stderr(&refused).contains("https://"),
        "{}",
        stderr(&refused)
    );
}
