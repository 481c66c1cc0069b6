//! `/metrics` of the real Prometheus exporter, scraped over HTTP and parsed during a short
//! saga_modes-like run (every mode, the ok and fault paths, a stuck saga; memory, then NATS
//! JetStream with Redis): the end counters add up to the sagas run, and the rest is there.

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
use sagaflow::engine::{Orchestrator, OrchestratorConfig};
use sagaflow::observe::metrics as names;
use sagaflow::{RetryPolicy, SagaContext, SagaError, StepError, StepResult, saga};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::backends::{Backend, Backends};

/// What to book; `fault` fails the second step for good.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Order {
    n: u64,
    fault: bool,
}

/// An order whose reservation cannot be released: with `fault`, the saga ends stuck.
const UNRELEASABLE: u64 = 999_999;

struct MetricsSaga;

const SAGA: &str = "MetricsOrder";

#[saga(name = "MetricsOrder")]
impl MetricsSaga {
    #[step(compensate = release)]
    async fn reserve(&self, _cx: &SagaContext, order: &Order) -> StepResult<u64> {
        Ok(order.n)
    }
    async fn release(&self, _cx: &SagaContext, reserve: &u64) -> StepResult<()> {
        if *reserve == UNRELEASABLE {
            return Err(StepError::fatal("the reservation cannot be released"));
        }
        Ok(())
    }

    #[step(compensate = refund)]
    async fn charge(&self, _cx: &SagaContext, order: &Order, reserve: &u64) -> StepResult<u64> {
        if order.fault {
            return Err(StepError::fatal("card declined"));
        }
        Ok(*reserve * 10)
    }
    async fn refund(&self, _cx: &SagaContext, _charge: &u64) -> StepResult<()> {
        Ok(())
    }
}

/// The exporter, installed once per process before any orchestrator of this test is built.
fn exporter() -> SocketAddr {
    static ADDR: OnceLock<SocketAddr> = OnceLock::new();
    *ADDR.get_or_init(|| {
        let addr = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port");
        PrometheusBuilder::new()
            .with_http_listener(addr)
            .set_buckets_for_metric(
                Matcher::Full(names::TRANSITION_DURATION.to_string()),
                names::TRANSITION_BUCKETS,
            )
            .expect("buckets")
            .install()
            .expect("the Prometheus exporter installs");
        names::describe();
        addr
    })
}

/// `GET /metrics`, as Prometheus scrapes it.
async fn scrape(addr: SocketAddr) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("the exporter listens");
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .expect("request sent");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .await
        .expect("response read");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let body = response.split_once("\r\n\r\n").map(|(_, body)| body);
    body.unwrap_or_default().to_string()
}

/// A parsed sample: metric name, labels, value.
type Sample = (String, BTreeMap<String, String>, f64);

/// Parses the Prometheus text format; a malformed line fails the test.
fn parse(text: &str) -> Vec<Sample> {
    let mut samples = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("`series value`");
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("a number in {line:?}"));
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => {
                let rest = rest.strip_suffix('}').expect("closing brace");
                let labels = rest
                    .split("\",")
                    .filter(|pair| !pair.is_empty())
                    .map(|pair| {
                        let (key, value) = pair.split_once("=\"").expect("key=\"value\"");
                        (key.to_string(), value.trim_end_matches('"').to_string())
                    })
                    .collect();
                (name.to_string(), labels)
            }
            None => (series.to_string(), BTreeMap::new()),
        };
        samples.push((name, labels, value));
    }
    samples
}

/// The sum of `name` over the samples of this test's saga matching `labels`.
fn sum(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|(n, l, _)| {
            n == name
                && l.get("saga").map(String::as_str) == Some(SAGA)
                && labels
                    .iter()
                    .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, _, value)| value)
        .sum()
}

const ENDS: [&str; 4] = [
    names::SAGAS_COMPLETED,
    names::SAGAS_COMPENSATED,
    names::SAGAS_STUCK,
    names::SAGAS_INVALID,
];

/// Runs `n` sagas per mode and path on `backend`; returns how many ran.
async fn run(backend: Backend, n: u64, addr: SocketAddr) -> u64 {
    let backends = Backends::connect(backend, "metrics").await;
    let config = OrchestratorConfig {
        pod_id: format!("metrics-{backend:?}"),
        redelivery_delay: Duration::from_millis(20),
        compensation_retry: RetryPolicy {
            max_attempts: 2,
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(2),
        },
        ..OrchestratorConfig::default()
    };
    let orchestrator = Orchestrator::builder(
        Arc::new(MetricsSaga),
        Arc::clone(&backends.transport),
        Arc::clone(&backends.store),
    )
    .config(config)
    .build();
    let consumers = orchestrator.serve().await.expect("consumers start");
    let mut ran = 0;
    for i in 0..n {
        for fault in [false, true] {
            let order = Order { n: i, fault };
            let id = |mode: &str| format!("{}-{mode}-{i}-{fault}", backends.prefix);
            let deadline = Some(Instant::now() + Duration::from_secs(20));
            let cx = SagaContext::new(SAGA, id("sync")).with_deadline(deadline);
            check(orchestrator.run_sync(&cx, order.clone()).await, fault);
            let cx = SagaContext::new(SAGA, id("throttled")).with_deadline(deadline);
            check(orchestrator.run_throttled(&cx, order.clone()).await, fault);
            let cx = SagaContext::new(SAGA, id("async")).with_deadline(deadline);
            orchestrator.start(&cx, order).await.expect("started");
            check(orchestrator.outcome(&cx).await, fault);
            ran += 3;
        }
        if i == 0 {
            // Mid-run, the scrape parses and no saga ended that did not start.
            let samples = parse(&scrape(addr).await);
            let started = sum(&samples, names::SAGAS_STARTED, &[]);
            let ended: f64 = ENDS.iter().map(|name| sum(&samples, name, &[])).sum();
            assert!(
                started >= ended && started > 0.0,
                "started {started}, ended {ended}"
            );
        }
    }
    // One saga stuck in its compensation (sync mode).
    let cx = SagaContext::new(SAGA, format!("{}-stuck", backends.prefix));
    let stuck = Order {
        n: UNRELEASABLE,
        fault: true,
    };
    let outcome = orchestrator.run_sync(&cx, stuck).await;
    assert!(
        matches!(outcome, Err(SagaError::Stuck { .. })),
        "{outcome:?}"
    );
    consumers.shutdown().await;
    backends.cleanup().await;
    ran + 1
}

fn check(result: Result<u64, SagaError>, fault: bool) {
    match (result, fault) {
        (Ok(_), false) | (Err(SagaError::Compensated { .. }), true) => {}
        (other, _) => panic!("unexpected outcome {other:?} (fault: {fault})"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scraped_metrics_add_up_to_the_sagas_run() {
    let addr = exporter();
    let mut total = 0;
    total += run(Backend::Memory, 5, addr).await;
    total += run(Backend::Nats, 3, addr).await;
    let total = total as f64;
    // One stuck saga per backend, in sync mode; the rest split evenly.
    let stuck_runs = 2.0;
    let even = total - stuck_runs;

    // The last end is counted right after its record is written, which may come a moment
    // after its caller heard of it: scrape until the counts settle (bounded).
    let deadline = Instant::now() + Duration::from_secs(10);
    let samples = loop {
        let samples = parse(&scrape(addr).await);
        let ended: f64 = ENDS.iter().map(|name| sum(&samples, name, &[])).sum();
        if ended >= total || Instant::now() > deadline {
            break samples;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let completed = sum(&samples, names::SAGAS_COMPLETED, &[]);
    let compensated = sum(&samples, names::SAGAS_COMPENSATED, &[]);
    let stuck = sum(&samples, names::SAGAS_STUCK, &[]);
    let invalid = sum(&samples, names::SAGAS_INVALID, &[]);
    assert_eq!(
        completed + compensated + stuck + invalid,
        total,
        "completed {completed} + compensated {compensated} + stuck {stuck} + invalid {invalid}"
    );
    assert_eq!(completed, even / 2.0);
    assert_eq!(compensated, even / 2.0);
    assert_eq!(stuck, stuck_runs);
    assert_eq!(invalid, 0.0);
    assert_eq!(sum(&samples, names::SAGAS_STARTED, &[]), total);
    for mode in ["sync", "async", "throttled"] {
        let expected = even / 3.0 + if mode == "sync" { stuck_runs } else { 0.0 };
        let started = sum(&samples, names::SAGAS_STARTED, &[("mode", mode)]);
        assert_eq!(started, expected, "{mode}");
        let ended: f64 = ENDS
            .iter()
            .map(|name| sum(&samples, name, &[("mode", mode)]))
            .sum();
        assert_eq!(ended, expected, "{mode} ends");
    }
    // Every saga ran `reserve` once; the faulty ones compensated it (the stuck ones twice,
    // the second a retry).
    let count = format!("{}_count", names::TRANSITION_DURATION);
    let reserve = sum(&samples, &count, &[("step", "reserve"), ("kind", "step")]);
    assert_eq!(reserve, total);
    let release = sum(
        &samples,
        &count,
        &[("step", "reserve"), ("kind", "compensation")],
    );
    assert_eq!(release, even / 2.0 + 2.0 * stuck_runs);
    let retries = sum(
        &samples,
        names::TRANSITION_RETRIES,
        &[("step", "reserve"), ("kind", "compensation")],
    );
    assert_eq!(retries, stuck_runs);
    let bucket = format!("{}_bucket", names::TRANSITION_DURATION);
    assert!(
        samples.iter().any(|(n, _, _)| *n == bucket),
        "a real histogram"
    );
    assert_eq!(sum(&samples, names::SAGAS_IN_FLIGHT, &[]), 0.0);
    assert_eq!(sum(&samples, names::THROTTLED_WAITING, &[]), 0.0);
    assert_eq!(sum(&samples, names::DEAD_LETTERS, &[]), 0.0);
    let text = scrape(addr).await;
    assert!(
        text.contains(&format!("# HELP {}", names::SAGAS_STARTED)),
        "described"
    );
}
