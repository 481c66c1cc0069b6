//! A private `nats-server` for the tests that restart or kill the broker: its own port and
//! its own store directory, so no other test (and no shared server) is touched. Only the
//! process started here is ever killed, by its own handle.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use super::harness;

const NATS_SERVER: &str = "/usr/sbin/nats-server";

/// A running private nats-server with JetStream, on a free loopback port.
pub struct Server {
    child: Child,
    pub port: u16,
    dir: PathBuf,
}

impl Server {
    fn start(port: u16, dir: &Path) -> Child {
        let child = Command::new(NATS_SERVER)
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {NATS_SERVER} ({e}); is nats-server installed (the CI's NATS)?"
                )
            });
        let address = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = std::time::Instant::now() + harness::WAIT;
        while TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "private nats-server did not listen on {address}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        child
    }

    /// Starts a server on a free port with a fresh store directory named after `test`.
    pub fn new(test: &str) -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let dir = std::env::temp_dir().join(format!(
            "sagaflow-nats-{test}-{}-{port}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let child = Self::start(port, &dir);
        Self { child, port, dir }
    }

    /// The client URL of this server.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// `kill -9` (SIGKILL: no flush, no clean shutdown) and waits for the process to exit.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Kills the server with SIGKILL and starts it again on the same port and store directory.
    pub fn restart(&mut self) {
        self.kill();
        self.start_again();
    }

    /// Starts the server again on the same port and store directory, after [`Server::kill`].
    pub fn start_again(&mut self) {
        self.child = Self::start(self.port, &self.dir);
    }

    /// Removes what the (killed) server stored of one durable consumer, as if its state had
    /// never reached the disk; the stream and its messages stay. Returns whether it existed.
    pub fn forget_consumer(&self, stream: &str, consumer: &str) -> bool {
        let path = self
            .dir
            .join("jetstream")
            .join("$G")
            .join("streams")
            .join(stream)
            .join("obs")
            .join(consumer);
        let existed = path.exists();
        let _ = std::fs::remove_dir_all(&path);
        existed
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A private 3-node nats-server cluster with JetStream (each node its own client port,
/// route port and store directory). Only these processes are ever killed.
pub struct Cluster {
    nodes: Vec<(Child, u16, PathBuf)>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Cluster {
    /// Starts three clustered nodes named after `test` and waits until each listens.
    pub fn new(test: &str) -> Self {
        let ports: Vec<(u16, u16)> = (0..3).map(|_| (free_port(), free_port())).collect();
        let nodes = ports
            .iter()
            .enumerate()
            .map(|(i, (client, route))| {
                let dir = std::env::temp_dir().join(format!(
                    "sagaflow-nats-cluster-{test}-{}-{client}",
                    std::process::id()
                ));
                let _ = std::fs::remove_dir_all(&dir);
                let routes: Vec<String> = ports
                    .iter()
                    .filter(|(c, _)| c != client)
                    .map(|(_, r)| format!("nats://127.0.0.1:{r}"))
                    .collect();
                let child = Command::new(NATS_SERVER)
                    .args(["-a", "127.0.0.1", "-p", &client.to_string(), "-js", "-sd"])
                    .arg(&dir)
                    .args(["-n", &format!("{test}-{i}"), "--cluster_name", test])
                    .args(["--cluster", &format!("nats://127.0.0.1:{route}")])
                    .args(["--routes", &routes.join(",")])
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .spawn()
                    .unwrap_or_else(|e| {
                        panic!("cannot start {NATS_SERVER} ({e}); is nats-server installed?")
                    });
                (child, *client, dir)
            })
            .collect::<Vec<_>>();
        for (_, port, _) in &nodes {
            let address = SocketAddr::from(([127, 0, 0, 1], *port));
            let deadline = std::time::Instant::now() + harness::WAIT;
            while TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_err() {
                assert!(
                    std::time::Instant::now() < deadline,
                    "private clustered nats-server did not listen on {address}"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Self { nodes }
    }

    /// The client URL of node `i`.
    pub fn url(&self, i: usize) -> String {
        format!("nats://127.0.0.1:{}", self.nodes[i].1)
    }

    /// `kill -9` node `i` and waits for it to exit.
    pub fn kill(&mut self, i: usize) {
        let _ = self.nodes[i].0.kill();
        let _ = self.nodes[i].0.wait();
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for (child, _, dir) in &mut self.nodes {
            let _ = child.kill();
            let _ = child.wait();
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}
