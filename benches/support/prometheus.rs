//! Reading a server's Prometheus `/metrics` page: a plain HTTP/1.0 GET (no client library)
//! and a small parser of the text format that sums a metric over its label sets.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The saga counters of `sagaflow::observe::metrics`, each summed over its label sets
/// (`saga`, `mode`).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct SagaCounts {
    /// `sagaflow_sagas_started_total`.
    pub started: f64,
    /// `sagaflow_sagas_completed_total`.
    pub completed: f64,
    /// `sagaflow_sagas_compensated_total`.
    pub compensated: f64,
    /// `sagaflow_sagas_stuck_total`.
    pub stuck: f64,
    /// `sagaflow_sagas_invalid_total`.
    pub invalid: f64,
    /// `sagaflow_sagas_in_flight` (a gauge: sagas this replica drives now).
    pub in_flight: f64,
}

impl SagaCounts {
    /// Reads them from a page of the Prometheus text format (a counter not yet exported is 0).
    pub fn parse(page: &str) -> Self {
        Self {
            started: sum(page, "sagaflow_sagas_started_total"),
            completed: sum(page, "sagaflow_sagas_completed_total"),
            compensated: sum(page, "sagaflow_sagas_compensated_total"),
            stuck: sum(page, "sagaflow_sagas_stuck_total"),
            invalid: sum(page, "sagaflow_sagas_invalid_total"),
            in_flight: sum(page, "sagaflow_sagas_in_flight"),
        }
    }

    /// Sagas that ended, however: completed, compensated, stuck or invalid.
    pub fn ended(&self) -> f64 {
        self.completed + self.compensated + self.stuck + self.invalid
    }

    /// Sagas begun and not ended yet (in flight or queued on the broker).
    pub fn open(&self) -> f64 {
        self.started - self.ended()
    }

    /// What happened between `before` and `self`, field by field.
    pub fn since(&self, before: &SagaCounts) -> SagaCounts {
        SagaCounts {
            started: self.started - before.started,
            completed: self.completed - before.completed,
            compensated: self.compensated - before.compensated,
            stuck: self.stuck - before.stuck,
            invalid: self.invalid - before.invalid,
            in_flight: self.in_flight,
        }
    }
}

/// The sum of every sample of `name` (over all its label sets); 0 when there is none.
/// Comment lines, other metrics (including `name_bucket` and the like) and unparsable values
/// are skipped.
pub fn sum(page: &str, name: &str) -> f64 {
    page.lines()
        .filter_map(sample)
        .filter(|(metric, _)| *metric == name)
        .map(|(_, value)| value)
        .sum()
}

/// One sample line: `name{label="value",...} value [timestamp]` or `name value [timestamp]`.
/// Label values may hold spaces, `}` and escaped quotes.
fn sample(line: &str) -> Option<(&str, f64)> {
    let line = line.trim_start();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let name_end = line
        .find(|c: char| c == '{' || c.is_whitespace())
        .unwrap_or(line.len());
    let (name, mut rest) = line.split_at(name_end);
    if rest.starts_with('{') {
        let (mut quoted, mut escaped, mut end) = (false, false, None);
        for (i, c) in rest.char_indices() {
            match c {
                _ if escaped => escaped = false,
                '\\' if quoted => escaped = true,
                '"' => quoted = !quoted,
                '}' if !quoted => {
                    end = Some(i);
                    break;
                }
                _ => {}
            }
        }
        rest = &rest[end? + 1..];
    }
    let value = rest.split_whitespace().next()?.parse().ok()?;
    Some((name, value))
}

/// Fetches `url` (`http://host:port/path`) with one HTTP/1.0 GET and returns the body of a
/// 200 answer.
pub async fn fetch(url: &str, timeout: Duration) -> Result<String, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{url}: only http:// URLs are supported"))?;
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/metrics"),
    };
    let get = async {
        let mut stream = TcpStream::connect(host)
            .await
            .map_err(|e| format!("cannot connect to {host}: {e}"))?;
        let request = format!("GET {path} HTTP/1.0\r\nHost: {host}\r\nAccept: text/plain\r\n\r\n");
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        let mut answer = Vec::new();
        stream
            .read_to_end(&mut answer)
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        Ok::<_, String>(answer)
    };
    let answer = tokio::time::timeout(timeout, get)
        .await
        .map_err(|_| format!("{url}: no answer within {timeout:?}"))??;
    let answer = String::from_utf8_lossy(&answer);
    let (head, body) = answer
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("{url}: not an HTTP answer"))?;
    let status = head.lines().next().unwrap_or_default();
    if status.split_whitespace().nth(1) != Some("200") {
        return Err(format!("{url}: {status}"));
    }
    Ok(body.to_string())
}

/// Fetches `url` and reads the saga counters from it.
pub async fn saga_counts(url: &str) -> Result<SagaCounts, String> {
    Ok(SagaCounts::parse(
        &fetch(url, Duration::from_secs(5)).await?,
    ))
}
