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

    /// A private Redis server (no persistence) in cluster mode (`nodes.conf` in its directory,
    /// a node timeout of 1 s, a free bus port), not part of any cluster yet: see
    /// [`RedisCluster`].
    pub fn redis_cluster_node(name: &str) -> Self {
        let mut server = Self::prepare("redis-server", name, INSTALL_REDIS, |port, dir| {
            let mut args = redis_args(dir, ["--port".to_string(), port.to_string()]);
            args.extend(
                [
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "1000",
                    // Its own bus port: port + 10000 (the default) may be out of range.
                    "--cluster-port",
                ]
                .map(str::to_string),
            );
            args.push(free_port().to_string());
            args
        });
        server.start();
        server
    }

    /// The pid of the running process, if it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
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

/// A private Redis Cluster of 3 masters and 3 replicas on loopback (`redis-server` and
/// `redis-cli --cluster create`), every node its own [`Private`] process: dropping it kills
/// them all, by pid, and removes their directories.
pub struct RedisCluster {
    pub nodes: Vec<Private>,
}

impl RedisCluster {
    /// Starts 6 nodes, joins them (`--cluster-replicas 1`) and waits until every node says
    /// `cluster_state:ok` and every replica is in sync with its master.
    pub fn start(name: &str) -> Self {
        let nodes: Vec<Private> = (0..6)
            .map(|i| Private::redis_cluster_node(&format!("{name}-{i}")))
            .collect();
        let cluster = Self { nodes };
        let mut create = Command::new("redis-cli");
        create.arg("--cluster").arg("create");
        for node in &cluster.nodes {
            create.arg(format!("127.0.0.1:{}", node.port));
        }
        let output = create
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run redis-cli ({e}); install it: {INSTALL_REDIS}"));
        assert!(
            output.status.success(),
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        cluster.wait_until_ok(&[], Duration::from_secs(30));
        cluster
    }

    /// The node URLs (`redis://127.0.0.1:port`).
    pub fn urls(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|node| format!("redis://127.0.0.1:{}", node.port))
            .collect()
    }

    /// `redis-cli -p port args...`, its output (empty when the node does not answer).
    pub fn cli(port: u16, args: &[&str]) -> String {
        Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &port.to_string()])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
            .unwrap_or_default()
    }

    /// The ports of the nodes that are masters now, as the first live node sees it.
    pub fn master_ports(&self) -> Vec<u16> {
        let Some(live) = self.nodes.iter().find(|node| node.pid().is_some()) else {
            return Vec::new();
        };
        Self::cli(live.port, &["cluster", "nodes"])
            .lines()
            .filter(|line| {
                let flags = line.split_whitespace().nth(2).unwrap_or("");
                flags.split(',').any(|f| f == "master") && !flags.contains("fail")
            })
            .filter_map(|line| {
                let addr = line.split_whitespace().nth(1)?;
                addr.split(['@', ':']).nth(1)?.parse().ok()
            })
            .collect()
    }

    /// The port of the master serving `slot` now, as the first live node sees it.
    pub fn master_of_slot(&self, slot: u16) -> u16 {
        let live = self
            .nodes
            .iter()
            .find(|node| node.pid().is_some())
            .expect("a live node");
        let nodes = Self::cli(live.port, &["cluster", "nodes"]);
        nodes
            .lines()
            .find_map(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                if !fields.get(2)?.contains("master") {
                    return None;
                }
                let serves = fields.iter().skip(8).any(|range| {
                    let mut bounds = range.split('-').map(|n| n.parse::<u16>());
                    match (bounds.next(), bounds.next()) {
                        (Some(Ok(lo)), Some(Ok(hi))) => (lo..=hi).contains(&slot),
                        (Some(Ok(one)), None) => one == slot,
                        _ => false,
                    }
                });
                let port = fields.get(1)?.split(['@', ':']).nth(1)?.parse().ok()?;
                serves.then_some(port)
            })
            .unwrap_or_else(|| panic!("no master serves slot {slot}: {nodes}"))
    }

    /// SIGKILLs the node on `port` (by its pid, through its handle).
    pub fn kill(&mut self, port: u16) {
        let node = self
            .nodes
            .iter_mut()
            .find(|node| node.port == port)
            .expect("a node of this cluster");
        node.kill();
    }

    /// Starts the killed node on `port` again, on its directory: it rejoins the cluster (as a
    /// replica of the master that took over its slots).
    pub fn restart(&mut self, port: u16) {
        self.nodes
            .iter_mut()
            .find(|node| node.port == port)
            .expect("a node of this cluster")
            .start();
    }

    /// Waits until every live node but those on `dead` says `cluster_state:ok` and knows 3
    /// masters serving all slots, and every live replica's link to its master is up.
    pub fn wait_until_ok(&self, dead: &[u16], bound: Duration) {
        let deadline = Instant::now() + bound;
        loop {
            let live: Vec<u16> = self
                .nodes
                .iter()
                .filter(|node| node.pid().is_some() && !dead.contains(&node.port))
                .map(|node| node.port)
                .collect();
            let ok = live.iter().all(|port| {
                let info = Self::cli(*port, &["cluster", "info"]);
                let replication = Self::cli(*port, &["info", "replication"]);
                info.contains("cluster_state:ok")
                    && info.contains("cluster_slots_ok:16384")
                    && (replication.contains("role:master")
                        || replication.contains("master_link_status:up"))
            }) && self.master_ports().len() == 3;
            if ok {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the private Redis Cluster was not ok within {bound:?}: {}",
                live.first()
                    .map(|port| Self::cli(*port, &["cluster", "nodes"]))
                    .unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}
