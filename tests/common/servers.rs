//! Private `nats-server`, `redis-server` and RabbitMQ processes for the tests that kill and
//! restart them or need a listener of their own (TLS): each on its own free loopback port
//! and its own directory, never the shared servers. Only the process started here is ever
//! killed, by its pid (RabbitMQ: the process group it was started in, its launch script and
//! its Erlang VM), on drop too, so a failing test stops its servers.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A private server process that can be killed and started again on the same port and data.
pub struct Private {
    program: &'static str,
    args: Vec<String>,
    envs: Vec<(String, String)>,
    /// Started in a process group of its own, killed as a whole (a launch script and the
    /// processes it starts).
    group: bool,
    /// How long it may take to listen.
    boot: Duration,
    /// What to tell the reader when the program cannot be started.
    install: &'static str,
    child: Option<Child>,
    pub port: u16,
    dir: PathBuf,
}

/// A loopback port nothing listens on now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free loopback port")
}

impl Private {
    /// A server not started yet: `args` gets its port and its directory.
    fn prepare(
        program: &'static str,
        name: &str,
        install: &'static str,
        args: impl FnOnce(u16, &Path) -> Vec<String>,
    ) -> Self {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!(
            "sagaflow-private-{name}-{}-{port}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a data directory");
        let args = args(port, &dir);
        Self {
            program,
            args,
            envs: Vec::new(),
            group: false,
            boot: Duration::from_secs(20),
            install,
            child: None,
            port,
            dir,
        }
    }

    /// A private NATS server with JetStream.
    pub fn nats(name: &str) -> Self {
        Self::nats_with(name, &[])
    }

    /// A private NATS server with JetStream and `extra` arguments (`--tls ...`, `--auth ...`).
    pub fn nats_with(name: &str, extra: &[String]) -> Self {
        let mut server = Self::prepare("nats-server", name, INSTALL_NATS, |port, dir| {
            let mut args: Vec<String> = ["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"]
                .map(str::to_string)
                .to_vec();
            args.push(dir.to_string_lossy().into_owned());
            args.extend_from_slice(extra);
            args
        });
        server.start();
        server
    }

    /// A private Redis server (no persistence).
    pub fn redis(name: &str) -> Self {
        let mut server = Self::prepare("redis-server", name, INSTALL_REDIS, |port, dir| {
            redis_args(dir, ["--port".to_string(), port.to_string()])
        });
        server.start();
        server
    }

    /// A private Redis server (no persistence) listening only with TLS on its port, with
    /// the `extra` arguments (certificates, ACL users).
    pub fn redis_tls(name: &str, extra: &[String]) -> Self {
        let mut server = Self::prepare("redis-server", name, INSTALL_REDIS, |port, dir| {
            let mut args = redis_args(
                dir,
                ["--port", "0", "--tls-port", &port.to_string()].map(str::to_string),
            );
            args.extend_from_slice(extra);
            args
        });
        server.start();
        server
    }

    /// A private RabbitMQ node (its own node name, distribution port, Erlang cookie, data
    /// and logs; no plugin) whose only listener is `rabbitmq.conf`'s `listeners`, written
    /// from `config(port)` into its directory.
    pub fn rabbitmq(name: &str, config: impl FnOnce(u16) -> String) -> Self {
        let mut server = Self::prepare(
            "/usr/lib/rabbitmq/bin/rabbitmq-server",
            name,
            INSTALL_RABBITMQ,
            |_, _| Vec::new(),
        );
        let dir = server.dir.clone();
        let file = |name: &str, content: &str| {
            let path = dir.join(name);
            std::fs::write(&path, content).expect("a RabbitMQ file");
            path.to_string_lossy().into_owned()
        };
        let config_file = file("rabbitmq.conf", &config(server.port));
        let plugins = file("enabled_plugins", "[].\n");
        // Not the shared node's /etc/rabbitmq/rabbitmq-env.conf, which names that node.
        let env_file = file("rabbitmq-env.conf", "");
        for sub in ["mnesia", "log"] {
            std::fs::create_dir_all(dir.join(sub)).expect("a RabbitMQ directory");
        }
        let path = |sub: &str| dir.join(sub).to_string_lossy().into_owned();
        server.envs = vec![
            ("HOME".into(), path("")),
            ("RABBITMQ_CONF_ENV_FILE".into(), env_file),
            (
                "RABBITMQ_NODENAME".into(),
                format!("sagaflow-{}-{}@localhost", std::process::id(), server.port),
            ),
            ("RABBITMQ_CONFIG_FILE".into(), config_file),
            ("RABBITMQ_ENABLED_PLUGINS_FILE".into(), plugins),
            ("RABBITMQ_MNESIA_BASE".into(), path("mnesia")),
            ("RABBITMQ_LOG_BASE".into(), path("log")),
            ("RABBITMQ_DIST_PORT".into(), free_port().to_string()),
            ("ERL_EPMD_ADDRESS".into(), "127.0.0.1".into()),
            ("ERL_CRASH_DUMP".into(), path("erl_crash.dump")),
            (
                "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS".into(),
                "-kernel inet_dist_use_interface {127,0,0,1}".into(),
            ),
        ];
        server.group = true;
        server.boot = Duration::from_secs(120);
        server.start();
        server
    }

    /// Its directory (its data, and files a test puts there).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Starts the process and waits until it accepts connections.
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "{} already runs", self.program);
        let mut command = Command::new(self.program);
        command
            .args(&self.args)
            .envs(self.envs.iter().map(|(k, v)| (k, v)))
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if self.group {
            command.process_group(0);
        }
        let child = command.spawn().unwrap_or_else(|e| {
            panic!(
                "cannot start {} ({e}); install it: {}",
                self.program, self.install
            )
        });
        self.child = Some(child);
        let address = SocketAddr::from(([127, 0, 0, 1], self.port));
        let deadline = Instant::now() + self.boot;
        while TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_err() {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                panic!(
                    "private {} exited ({status}) before listening on {address}; its files are in {}",
                    self.program,
                    self.dir.display()
                );
            }
            assert!(
                Instant::now() < deadline,
                "private {} did not listen on {address} within {:?}",
                self.program,
                self.boot
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL to this process (by its pid, through its handle; a process group of its own:
    /// the whole group) and waits for it to exit.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            if self.group {
                // The group this test created, by its id (the leader's pid).
                let _ = Command::new("kill")
                    .args(["-KILL", "--", &format!("-{}", child.id())])
                    .status();
            }
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

const INSTALL_NATS: &str = "apt-get install nats-server";
const INSTALL_REDIS: &str = "apt-get install redis-server";
const INSTALL_RABBITMQ: &str = "apt-get install rabbitmq-server";

/// A Redis without persistence on 127.0.0.1, in `dir`, listening as `listen` says.
fn redis_args(dir: &Path, listen: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut args: Vec<String> = listen.into_iter().collect();
    args.extend(
        [
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
        ]
        .map(str::to_string),
    );
    args.push(dir.to_string_lossy().into_owned());
    args
}
