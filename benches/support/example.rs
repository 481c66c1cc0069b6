//! Starting the release booking example as a child process.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Where `cargo build --release --example booking` puts the binary.
pub const DEFAULT_PATH: &str = "target/release/examples/booking";

/// Starts the example at `path` with `args`, waits for its "BookingService listening" line
/// (60 s at most) and keeps draining its output. Its log level is `RUST_LOG`, `warn` if unset.
pub fn spawn(path: &Path, args: &[String]) -> Child {
    let mut child = Command::new(path)
        .args(args)
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".to_string()),
        )
        .stdout(Stdio::piped())
        .stdin(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot start {} ({e}); build it with `cargo build --release --example booking`",
                path.display()
            )
        });
    let stdout = child.stdout.take().expect("piped stdout");
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut ready = Some(ready_tx);
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.contains("BookingService listening")
                && let Some(tx) = ready.take()
            {
                let _ = tx.send(());
            }
        }
    });
    if ready_rx.recv_timeout(Duration::from_secs(60)).is_err() {
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "{} did not report `BookingService listening` within 60 s",
            path.display()
        );
    }
    eprintln!(
        "started {} {} (pid {})",
        path.display(),
        args.join(" "),
        child.id()
    );
    child
}

/// A loopback address with a port free right now (the OS picks it).
pub fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free loopback port")
}

/// The value of `--flag value` or `--flag=value` in `args`, if given.
pub fn flag_value<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
    let prefix = format!("{flag}=");
    args.iter().enumerate().find_map(|(i, arg)| {
        if arg == flag {
            args.get(i + 1).map(String::as_str)
        } else {
            arg.strip_prefix(&prefix)
        }
    })
}
