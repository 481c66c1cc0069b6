//! The built booking example binary, run as a child process on ephemeral ports and asked
//! for a sync booking over the network.

use std::path::PathBuf;
use std::process::Stdio;

use booking_proto::pb::booking_service_client::BookingServiceClient;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tonic::transport::Channel;

use crate::harness::{WAIT, booking, trace_id};

const READY: &str = "booking: BookingService listening on ";

/// `target/<profile>/examples/booking`, next to the test binary's `deps/` folder.
fn binary_path() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("the test binary lives in target/<profile>/deps");
    profile_dir
        .join("examples")
        .join(format!("booking{}", std::env::consts::EXE_SUFFIX))
}

/// Starts the binary and returns it with the address its BookingService listens on (read
/// from its stdout, within [`WAIT`]); the rest of its output is drained in the background.
async fn spawn() -> (Child, String) {
    let path = binary_path();
    assert!(
        path.is_file(),
        "the booking example binary is missing at {}; run `cargo build --example booking` \
         (a plain `cargo test` builds it too)",
        path.display()
    );
    let mut child = Command::new(&path)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--order-listen",
            "127.0.0.1:0",
            "--payment-listen",
            "127.0.0.1:0",
        ])
        .args(["--topic-prefix", &trace_id("binary")])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", path.display()));
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut lines = BufReader::new(stdout).lines();
    let find = async {
        while let Some(line) = lines.next_line().await.expect("the binary's stdout") {
            if let Some(addr) = line.strip_prefix(READY) {
                return addr.trim().to_owned();
            }
        }
        panic!("the booking binary exited without printing `{READY}<addr>`");
    };
    let addr = tokio::time::timeout(WAIT, find)
        .await
        .unwrap_or_else(|_| panic!("the booking binary did not print `{READY}<addr>` in {WAIT:?}"));
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, addr)
}

/// Runs the binary, books synchronously through it, checks the answer, kills it.
pub async fn sync_booking_through_the_binary() {
    let (mut child, addr) = spawn().await;
    let channel = Channel::from_shared(format!("http://{addr}"))
        .expect("the printed address is a valid URI")
        .connect_timeout(WAIT)
        .connect()
        .await
        .unwrap_or_else(|e| panic!("cannot connect to the booking binary at {addr}: {e}"));
    let id = trace_id("binary");
    let reply = BookingServiceClient::new(channel)
        .handle_sync_booking(booking(&id, 5, 1, false))
        .await
        .expect("the binary books")
        .into_inner();
    assert_eq!(reply.request_id, id);
    assert!(reply.order_id > 0 && reply.payment_id > 0, "{reply:?}");
    child.kill().await.expect("kill the booking binary");
}
