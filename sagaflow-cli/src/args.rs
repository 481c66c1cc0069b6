//! The command line: global options and subcommands.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use saga_runtime::tls::ClientTls;

/// The admin address the CLI talks to when neither `--addr` nor `SAGAFLOW_ADMIN_ADDR` is set:
/// the booking example's `--admin-addr 127.0.0.1:10003`.
pub(crate) const DEFAULT_ADDR: &str = "http://127.0.0.1:10003";

/// Operate sagas through an orchestrator's admin API: inspect, list, resume, compensate,
/// replay dead letters.
///
/// Exit codes: 0 ok; 1 usage error or invalid request; 3 not found; 4 refused (not stuck,
/// finished, past its pivot, or changed meanwhile); 5 orchestrator unreachable or
/// unavailable; 6 unauthenticated.
#[derive(Debug, Parser)]
#[command(name = "sagaflow", version)]
pub(crate) struct Cli {
    /// The orchestrator's admin API (its `--admin-addr`); `http://` is assumed without a scheme.
    #[arg(long, global = true, env = "SAGAFLOW_ADMIN_ADDR", default_value = DEFAULT_ADDR)]
    pub(crate) addr: String,
    /// The admin API's bearer token, when the orchestrator requires one.
    #[arg(
        long,
        global = true,
        env = "SAGAFLOW_ADMIN_TOKEN",
        hide_env_values = true
    )]
    pub(crate) token: Option<String>,
    /// Who you are, recorded in the history of the sagas you resume or compensate.
    #[arg(long, global = true, env = "USER", default_value = "sagaflow-cli")]
    pub(crate) operator: String,
    /// PEM CA certificate(s) the admin API's certificate must chain to: the CLI then talks
    /// TLS only, to an `https://` --addr (the orchestrator's `--tls-cert`).
    #[arg(long, global = true, env = "SAGAFLOW_ADMIN_CA")]
    pub(crate) ca_file: Option<PathBuf>,
    /// PEM client certificate presented to an admin API that requires one (the
    /// orchestrator's `--tls-client-ca`), with --key-file.
    #[arg(
        long,
        global = true,
        env = "SAGAFLOW_ADMIN_CERT",
        requires = "key_file"
    )]
    pub(crate) cert_file: Option<PathBuf>,
    /// PEM private key of --cert-file.
    #[arg(
        long,
        global = true,
        env = "SAGAFLOW_ADMIN_KEY",
        requires = "cert_file"
    )]
    pub(crate) key_file: Option<PathBuf>,
    /// Print one JSON document instead of tables (errors still go to stderr as text).
    #[arg(long, global = true)]
    pub(crate) json: bool,
    /// What to do.
    #[command(subcommand)]
    pub(crate) command: Command,
}

impl Cli {
    /// The TLS settings of the connection to the admin API (--ca-file, --cert-file,
    /// --key-file).
    pub(crate) fn tls(&self) -> ClientTls {
        ClientTls {
            ca_file: self.ca_file.clone(),
            cert_file: self.cert_file.clone(),
            key_file: self.key_file.clone(),
        }
    }
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Show one saga: its record, history and current state.
    Get {
        /// The saga's trace id.
        trace_id: String,
    },
    /// List sagas in one status, oldest in that status first.
    List(ListArgs),
    /// Resume a stuck saga: its stuck transition runs again.
    Resume {
        /// The saga's trace id.
        trace_id: String,
    },
    /// Roll back a running (not past its pivot) or stuck saga.
    Compensate {
        /// The saga's trace id.
        trace_id: String,
    },
    /// List the dead letters, or replay them with `--replay`.
    DeadLetters(DeadLetterArgs),
    /// Print the Mermaid diagram of a saga definition.
    Diagram {
        /// The saga definition's name (see `sagaflow sagas`).
        saga: String,
        /// Mark where this saga stands.
        #[arg(long)]
        trace_id: Option<String>,
    },
    /// List the saga definitions the orchestrator runs.
    Sagas,
}

/// `sagaflow list`.
#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    /// running, compensating, stuck, completed or compensated.
    #[arg(long, default_value = "stuck")]
    pub(crate) status: String,
    /// Only sagas in that status for at least this long (`10m`, `1h30m`).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub(crate) older_than: Option<Duration>,
    /// Only sagas of this definition.
    #[arg(long)]
    pub(crate) saga: Option<String>,
    /// Sagas per page (at most 1000).
    #[arg(long, default_value_t = 50)]
    pub(crate) limit: u32,
    /// Start at this page token (printed under the previous page).
    #[arg(long, conflicts_with = "all")]
    pub(crate) page: Option<String>,
    /// Fetch every page.
    #[arg(long)]
    pub(crate) all: bool,
}

/// `sagaflow dead-letters`.
#[derive(Debug, Args)]
pub(crate) struct DeadLetterArgs {
    /// Only this saga's dead letters.
    #[arg(long)]
    pub(crate) saga: Option<String>,
    /// At most this many (listing).
    #[arg(long, default_value_t = 100)]
    pub(crate) limit: u32,
    /// Replay them: each is published again to its topic, then removed.
    #[arg(long)]
    pub(crate) replay: bool,
    /// Replay only this message.
    #[arg(long, requires = "replay")]
    pub(crate) message_id: Option<String>,
}
