//! Private `nats-server` and `redis-server` processes for the tests that kill and restart
//! them: each on its own free loopback port and its own directory, never the shared servers.
//! Only the process started here is ever killed, through its own child handle (its pid).

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A private server process that can be killed and started again on the same port and data.
pub struct Private {
    program: &'static str,
    args: Vec<String>,
    child: Option<Child>,
    pub port: u16,
    dir: PathBuf,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free loopback port")
}

impl Private {
    fn new(program: &'static str, name: &str, args: impl Fn(u16, &str) -> Vec<String>) -> Self {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!(
            "sagaflow-observe-{name}-{}-{port}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a data directory");
        let args = args(port, &dir.to_string_lossy());
        let mut server = Self {
            program,
            args,
            child: None,
            port,
            dir,
        };
        server.start();
        server
    }

    /// A private NATS server with JetStream.
    pub fn nats(name: &str) -> Self {
        Self::new("nats-server", name, |port, dir| {
            [
                "-a",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-js",
                "-sd",
                dir,
            ]
            .map(str::to_string)
            .to_vec()
        })
    }

    /// A private Redis server (no persistence).
    pub fn redis(name: &str) -> Self {
        Self::new("redis-server", name, |port, dir| {
            [
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                dir,
            ]
            .map(str::to_string)
            .to_vec()
        })
    }

    /// Starts the process and waits until it accepts connections.
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "{} already runs", self.program);
        let child = Command::new(self.program)
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {} ({e}); is it installed?", self.program));
        self.child = Some(child);
        let address = SocketAddr::from(([127, 0, 0, 1], self.port));
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_err() {
            assert!(
                Instant::now() < deadline,
                "private {} did not listen on {address}",
                self.program
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL to this process (by its pid, through its handle) and waits for it to exit.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Private {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
