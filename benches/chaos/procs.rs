//! Child processes the harness starts, kills (`SIGKILL`, by pid) and restarts, the private
//! temp dir they keep their data and logs in, and waits on loopback ports.
//!
//! Every [`Proc`] kills its process when dropped, so a run that returns early, panics or is
//! interrupted (the harness drops its whole run on Ctrl-C) leaves nothing running. Nothing
//! is ever stopped by name: only the pids this harness spawned.

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A directory under the system temp dir, removed when dropped unless [`TempDir::keep`] was
/// called (the harness keeps it when a run found failures, for the logs).
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
    keep: bool,
}

impl TempDir {
    /// Creates `{base or $TMPDIR}/sagaflow-chaos-{pid}-{nanos}`.
    pub fn new(base: Option<&Path>) -> io::Result<Self> {
        let base = base.map_or_else(std::env::temp_dir, Path::to_path_buf);
        let path = base.join(format!("sagaflow-chaos-{}-{}", std::process::id(), nanos()));
        fs::create_dir_all(&path)?;
        Ok(Self { path, keep: false })
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Keeps the directory after the harness ends.
    pub fn keep(&mut self) {
        self.keep = true;
    }

    /// A subdirectory, created if missing.
    pub fn sub(&self, name: &str) -> io::Result<PathBuf> {
        let path = self.path.join(name);
        fs::create_dir_all(&path)?;
        Ok(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if !self.keep {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

/// Nanoseconds since the epoch (unique enough for names).
pub fn nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// A free TCP port on 127.0.0.1 (bound then released; the server binds it right after).
pub fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Waits until `port` on 127.0.0.1 accepts a connection, or `limit` passes; fails early
/// when `proc` exited.
pub async fn wait_port(proc: &mut Proc, port: u16, limit: Duration) -> Result<Duration, String> {
    let started = Instant::now();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    loop {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(started.elapsed());
        }
        if let Some(status) = proc.exited() {
            return Err(format!(
                "{} exited ({status}) before listening on {port}; see {}",
                proc.name,
                proc.log.display()
            ));
        }
        if started.elapsed() > limit {
            return Err(format!(
                "{} is not listening on {port} after {limit:?}; see {}",
                proc.name,
                proc.log.display()
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// How to start one process: program, arguments, environment, working directory.
#[derive(Clone, Debug)]
pub struct Spec {
    pub program: PathBuf,
    pub args: Vec<OsString>,
    pub env: Vec<(OsString, OsString)>,
    pub cwd: Option<PathBuf>,
}

impl Spec {
    pub fn new(program: impl Into<PathBuf>) -> Self {
        Self {
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
            cwd: None,
        }
    }

    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    pub fn args<I, A>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = A>,
        A: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    pub fn cwd(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cwd = Some(dir.into());
        self
    }
}

/// A process the harness owns: started from its [`Spec`], output appended to its log file
/// (`{logs}/{name}.log`, every incarnation in the same file), killed with `SIGKILL` by pid.
#[derive(Debug)]
pub struct Proc {
    pub name: String,
    pub spec: Spec,
    pub log: PathBuf,
    child: Option<Child>,
    /// How many times it was started.
    pub starts: u32,
}

impl Proc {
    pub fn new(name: impl Into<String>, spec: Spec, logs: &Path) -> Self {
        let name = name.into();
        let log = logs.join(format!("{name}.log"));
        Self {
            name,
            spec,
            log,
            child: None,
            starts: 0,
        }
    }

    /// Starts it (it must not be running). Its stdout and stderr go to the log file, after a
    /// `=== start N` marker line; returns the byte offset of that incarnation's output.
    pub fn start(&mut self) -> io::Result<u64> {
        self.exited();
        if self.child.is_some() {
            return Err(io::Error::other(format!(
                "{} is already running",
                self.name
            )));
        }
        self.starts += 1;
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        use std::io::Write;
        writeln!(
            log,
            "=== chaos harness: start {} of {} at {}",
            self.starts,
            self.name,
            humantime::format_rfc3339_millis(SystemTime::now())
        )?;
        let offset = log.metadata()?.len();
        let err: File = log.try_clone()?;
        let mut command = Command::new(&self.spec.program);
        command
            .args(&self.spec.args)
            .envs(self.spec.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(err));
        if let Some(dir) = &self.spec.cwd {
            command.current_dir(dir);
        }
        let child = command.spawn().map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "cannot start {} ({}): {e}",
                    self.name,
                    self.spec.program.display()
                ),
            )
        })?;
        self.child = Some(child);
        Ok(offset)
    }

    /// Its pid while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// `Some(status)` when it was started and has exited on its own (the child is reaped
    /// and forgotten, so it can be started again).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        match child.try_wait() {
            Ok(Some(status)) => {
                self.child = None;
                Some(status)
            }
            _ => None,
        }
    }

    /// True while it runs.
    pub fn running(&mut self) -> bool {
        self.exited();
        self.child.is_some()
    }

    /// `kill -9 <pid>` and reap it. No-op when it is not running.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The output of its current incarnation from `offset` on (lossy UTF-8).
    pub fn output_since(&self, offset: u64) -> String {
        match fs::read(&self.log) {
            Ok(bytes) => {
                let from = usize::try_from(offset)
                    .unwrap_or(usize::MAX)
                    .min(bytes.len());
                String::from_utf8_lossy(&bytes[from..]).into_owned()
            }
            Err(_) => String::new(),
        }
    }

    /// The last `n` lines of its log, to quote in an error.
    pub fn tail(&self, n: usize) -> String {
        let text = self.output_since(0);
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}
