//! Harness for Samsa's end-to-end tests: start the real `samsa` binary on a free port in a
//! temporary data directory, then drive it with real Kafka clients.
//!
//! ```text
//!   test fn ──spawn──> samsa server --data-dir TMP --listen 127.0.0.1:0 --http-listen 127.0.0.1:0
//!      │                    ^  (prints "samsa listening on 127.0.0.1:PORT",
//!      │                    │   then "samsa http on 127.0.0.1:PORT" for SQL over HTTP)
//!      │                    │ Kafka wire
//!      └──spawn──> tests/clients/*.py | tests/clients/js/*.js | kcat
//! ```
//!
//! Every wait is bounded by a deadline; a server or client that does not answer in time
//! fails the test with its output. A client that is not installed fails the test too, with
//! a hint to run `scripts/setup-test.sh`: a missing client never skips silently.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context, Result};

pub mod postgres;

/// How long the server may take to print its `samsa listening on` line.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the server may take to exit after SIGTERM.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);
/// Default limit for one client script run.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(180);

const READY_PREFIX: &str = "samsa listening on ";
const HTTP_PREFIX: &str = "samsa http on ";
const LISTENER_PREFIX: &str = "samsa listener ";
const SETUP_HINT: &str = "run `scripts/setup-test.sh` (as root) to install the test clients";

/// The workspace root (the folder holding the root `Cargo.toml`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests crate lives in the workspace")
        .to_path_buf()
}

/// The folder holding the client scripts (`tests/clients`).
pub fn clients_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("clients")
}

/// The partition of an internal topic that holds a group or transactional id, as Kafka
/// places them: abs(Java `String.hashCode(key)`) mod `count`.
pub fn kafka_partition_of(key: &str, count: usize) -> usize {
    let h = key.encode_utf16().fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(i32::from(c)));
    (if h == i32::MIN { 0 } else { h.abs() }) as usize % count
}

/// What one `samsa` invocation did.
#[derive(Debug)]
pub struct CliRun {
    /// Exit code (`None`: killed by a signal).
    pub code: Option<i32>,
    /// Everything on stdout.
    pub stdout: String,
    /// Everything on stderr.
    pub stderr: String,
}

impl CliRun {
    /// Requires exit code 0 and returns stdout.
    pub fn ok(self) -> Result<String> {
        ensure!(self.code == Some(0), "samsa failed ({:?}):\nstdout:\n{}\nstderr:\n{}", self.code, self.stdout, self.stderr);
        Ok(self.stdout)
    }

    /// Requires exit code 1 with one `samsa: ...` line on stderr; returns that line
    /// without the prefix.
    pub fn failed(self) -> Result<String> {
        ensure!(self.code == Some(1), "want exit code 1, got {:?}:\nstdout:\n{}\nstderr:\n{}", self.code, self.stdout, self.stderr);
        let err = self.stderr.trim();
        ensure!(err.lines().count() == 1, "want one stderr line, got:\n{err}");
        Ok(err.strip_prefix("samsa: ").with_context(|| format!("no `samsa: ` prefix: {err}"))?.to_string())
    }
}

/// Runs `samsa ARGS` with no stdin, killing it after `timeout`.
pub fn run_samsa(args: &[&str], timeout: Duration) -> Result<CliRun> {
    let mut child = Command::new(samsa_bin()?).args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
    let drain = |mut pipe: Box<dyn Read + Send>| {
        thread::spawn(move || {
            let mut s = String::new();
            let _ = pipe.read_to_string(&mut s);
            s
        })
    };
    let out = drain(Box::new(child.stdout.take().expect("piped")));
    let err = drain(Box::new(child.stderr.take().expect("piped")));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("samsa {args:?} did not finish within {timeout:?}; stderr:\n{}", err.join().unwrap_or_default());
        }
        thread::sleep(Duration::from_millis(20));
    };
    Ok(CliRun { code: status.code(), stdout: out.join().unwrap_or_default(), stderr: err.join().unwrap_or_default() })
}

/// Locates the `samsa` binary: `$SAMSA_BIN`, else `$CARGO_TARGET_DIR/debug/samsa`, else
/// `target/debug/samsa` under the workspace root.
pub fn samsa_bin() -> Result<PathBuf> {
    if let Some(bin) = std::env::var_os("SAMSA_BIN") {
        let bin = PathBuf::from(bin);
        if bin.is_file() {
            return Ok(bin);
        }
        bail!("SAMSA_BIN={} does not exist", bin.display());
    }
    let root = workspace_root();
    let mut candidates = Vec::new();
    let target_dirs = [
        std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from),
        option_env!("CARGO_TARGET_DIR").map(PathBuf::from),
    ];
    for dir in target_dirs.into_iter().flatten() {
        candidates.push(root.join(dir).join("debug").join("samsa"));
    }
    candidates.push(root.join("target").join("debug").join("samsa"));
    for candidate in &candidates {
        if candidate.is_file() {
            return Ok(candidate.clone());
        }
    }
    bail!(
        "samsa binary not found (looked at {:?}); build it first with `cargo build --bin samsa` \
         or set SAMSA_BIN",
        candidates
    )
}

/// Polls `check` every 50 ms until it returns `true`, failing after `timeout` with `what`.
pub fn wait_until(
    timeout: Duration,
    what: &str,
    mut check: impl FnMut() -> Result<bool>,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if check()? {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// Options for starting a server; obtained from [`SamsaServer::builder`].
#[derive(Debug, Clone, Default)]
pub struct ServerBuilder {
    sets: Vec<(String, String)>,
    data_dir: Option<PathBuf>,
    node_id: Option<u32>,
    listen: Option<String>,
    /// `--controller-listen` and `--voters` (cluster mode).
    quorum: Option<(String, String)>,
    /// `--no-http`: no HTTP API, so no SQL engine that runs persistent queries.
    no_http: bool,
}

impl ServerBuilder {
    /// Adds a `--set key=value` broker config override.
    pub fn set(mut self, key: &str, value: impl ToString) -> Self {
        self.sets.push((key.to_string(), value.to_string()));
        self
    }

    /// Uses `dir` as the data directory (kept after the server stops, for restart tests)
    /// instead of a fresh temporary one.
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.data_dir = Some(dir.into());
        self
    }

    /// Passes `--node-id`.
    pub fn node_id(mut self, id: u32) -> Self {
        self.node_id = Some(id);
        self
    }

    /// Listens for Kafka clients on `addr` instead of a free port.
    pub fn listen(mut self, addr: impl Into<String>) -> Self {
        self.listen = Some(addr.into());
        self
    }

    /// Runs as a cluster node: `--controller-listen` and `--voters`.
    pub fn quorum(mut self, controller_listen: impl Into<String>, voters: impl Into<String>) -> Self {
        self.quorum = Some((controller_listen.into(), voters.into()));
        self
    }

    /// Runs without the HTTP API (`--no-http`): the server then runs no persistent SQL
    /// queries of its own, so a process with its own engine runs them all.
    pub fn no_http(mut self) -> Self {
        self.no_http = true;
        self
    }

    /// Starts the server and waits (at most [`STARTUP_TIMEOUT`]) until it listens.
    pub fn start(self) -> Result<SamsaServer> {
        SamsaServer::start_with(self)
    }
}

/// A running `samsa server` child process, killed when dropped.
#[derive(Debug)]
pub struct SamsaServer {
    child: Option<Child>,
    addr: String,
    http_addr: String,
    /// Listeners after the first: (name, address).
    listeners: Vec<(String, String)>,
    data_dir: PathBuf,
    stderr_path: PathBuf,
    builder: ServerBuilder,
    _logs: tempfile::TempDir,
    _data: Option<tempfile::TempDir>,
}

impl SamsaServer {
    /// A builder with the test defaults (`group.initial.rebalance.delay.ms=0`).
    pub fn builder() -> ServerBuilder {
        ServerBuilder::default()
    }

    /// Starts a server with default options in a fresh temporary data directory.
    pub fn start() -> Result<SamsaServer> {
        Self::builder().start()
    }

    fn start_with(builder: ServerBuilder) -> Result<SamsaServer> {
        let bin = samsa_bin()?;
        let logs = tempfile::Builder::new().prefix("samsa-logs-").tempdir()?;
        let (data_dir, data_tmp) = match &builder.data_dir {
            Some(dir) => {
                std::fs::create_dir_all(dir)?;
                (dir.clone(), None)
            }
            None => {
                let tmp = tempfile::Builder::new().prefix("samsa-data-").tempdir()?;
                (tmp.path().to_path_buf(), Some(tmp))
            }
        };
        let stderr_path = logs.path().join("stderr.log");
        let stderr_file = File::create(&stderr_path)?;

        let mut cmd = Command::new(&bin);
        cmd.arg("server")
            .arg("--data-dir")
            .arg(&data_dir)
            .arg("--listen")
            .arg(builder.listen.as_deref().unwrap_or("127.0.0.1:0"));
        if builder.no_http {
            cmd.arg("--no-http");
        } else {
            // Never the default port: tests run side by side.
            cmd.arg("--http-listen").arg("127.0.0.1:0");
        }
        if let Some(id) = builder.node_id {
            cmd.arg("--node-id").arg(id.to_string());
        }
        if let Some((listen, voters)) = &builder.quorum {
            cmd.arg("--controller-listen").arg(listen).arg("--voters").arg(voters);
        }
        let mut sets = builder.sets.clone();
        if !sets
            .iter()
            .any(|(k, _)| k == "group.initial.rebalance.delay.ms")
        {
            sets.insert(0, ("group.initial.rebalance.delay.ms".into(), "0".into()));
        }
        for (k, v) in &sets {
            cmd.arg("--set").arg(format!("{k}={v}"));
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr_file));
        let mut child = cmd
            .spawn()
            .with_context(|| format!("spawning {}", bin.display()))?;

        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, rx) = mpsc::channel::<String>();
        // Keeps draining stdout after readiness so the server never blocks on a full pipe.
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });

        let mut server = SamsaServer {
            child: Some(child),
            addr: String::new(),
            http_addr: String::new(),
            listeners: Vec::new(),
            data_dir,
            stderr_path,
            builder,
            _logs: logs,
            _data: data_tmp,
        };
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        let mut seen = Vec::new();
        loop {
            match rx.recv_timeout(Duration::from_millis(50)) {
                Ok(line) => {
                    // The Kafka line comes first, then the HTTP one.
                    if let Some(addr) = line.trim().strip_prefix(READY_PREFIX) {
                        server.addr = addr.trim().to_string();
                    } else if let Some(addr) = line.trim().strip_prefix(HTTP_PREFIX) {
                        server.http_addr = addr.trim().to_string();
                    } else if let Some((name, addr)) = line.trim().strip_prefix(LISTENER_PREFIX).and_then(|l| l.split_once(" on ")) {
                        server.listeners.push((name.to_string(), addr.trim().to_string()));
                    } else {
                        seen.push(line);
                    }
                    if !server.addr.is_empty() && (!server.http_addr.is_empty() || server.builder.no_http) {
                        return Ok(server);
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    // stdout closed: the server is exiting; let it finish for its status.
                    let status = server.wait_exit(Duration::from_secs(5))?;
                    bail!(
                        "samsa exited before listening ({status:?}); stdout: {seen:?}\nstderr:\n{}",
                        server.stderr()
                    );
                }
            }
            if let Some(status) = server.child_mut().try_wait()? {
                bail!(
                    "samsa exited before listening ({status}); stdout: {seen:?}\nstderr:\n{}",
                    server.stderr()
                );
            }
            if Instant::now() >= deadline {
                bail!(
                    "samsa did not print `{READY_PREFIX}...` and `{HTTP_PREFIX}...` within {STARTUP_TIMEOUT:?}; \
                     stdout: {seen:?}\nstderr:\n{}",
                    server.stderr()
                );
            }
        }
    }

    fn child_mut(&mut self) -> &mut Child {
        self.child.as_mut().expect("server process already reaped")
    }

    fn wait_exit(&mut self, timeout: Duration) -> Result<Option<ExitStatus>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child_mut().try_wait()? {
                return Ok(Some(status));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// The `host:port` the server listens on, for `bootstrap.servers`.
    pub fn bootstrap(&self) -> &str {
        &self.addr
    }

    /// The `host:port` of the server's SQL HTTP API (`POST /sql`, `samsa sql --server`).
    pub fn http_addr(&self) -> &str {
        &self.http_addr
    }

    /// The address of the listener named `name` (one after the first, set with
    /// `listeners=...`), e.g. `SASL_SSL`.
    pub fn listener(&self, name: &str) -> Option<&str> {
        self.listeners.iter().find(|(n, _)| n == name).map(|(_, a)| a.as_str())
    }

    /// The port the server listens on.
    pub fn port(&self) -> u16 {
        self.addr
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("listen address has a port")
    }

    /// The server's data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// A builder with this server's options, to restart it on the same data directory
    /// (which must have been given with [`ServerBuilder::data_dir`] to outlive this server).
    pub fn restart_builder(&self) -> ServerBuilder {
        let mut builder = self.builder.clone();
        builder.data_dir = Some(self.data_dir.clone());
        builder
    }

    /// Everything the server wrote to stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read(&self.stderr_path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// Kills the server with SIGKILL (a crash) and reaps it.
    pub fn kill9(&mut self) -> Result<()> {
        let child = self.child_mut();
        child.kill().context("SIGKILL samsa")?;
        let status = child.wait()?;
        self.child = None;
        eprintln!("samsa killed with SIGKILL: {status}");
        Ok(())
    }

    /// Sends a signal (`"STOP"`, `"CONT"`, ...) to the server process.
    pub fn signal(&mut self, sig: &str) -> Result<()> {
        let pid = self.child_mut().id();
        let status = Command::new("kill").arg(format!("-{sig}")).arg(pid.to_string()).status().context("running `kill`")?;
        if !status.success() {
            bail!("`kill -{sig} {pid}` failed: {status}");
        }
        Ok(())
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Sends SIGTERM and waits for a clean shutdown: fails unless the server exits with
    /// code 0 within [`SHUTDOWN_TIMEOUT`].
    pub fn terminate(&mut self) -> Result<()> {
        let pid = self.child_mut().id();
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(pid.to_string())
            .status()
            .context("running `kill -TERM`")?;
        if !status.success() {
            bail!("`kill -TERM {pid}` failed: {status}");
        }
        let Some(status) = self.wait_exit(SHUTDOWN_TIMEOUT)? else {
            bail!(
                "samsa did not exit within {SHUTDOWN_TIMEOUT:?} of SIGTERM; stderr:\n{}",
                self.stderr()
            );
        };
        self.child = None;
        if status.code() != Some(0) {
            bail!(
                "samsa exited with {status} after SIGTERM (want code 0); stderr:\n{}",
                self.stderr()
            );
        }
        Ok(())
    }
}

fn common_config(bootstrap: &str) -> Result<samsa_client::config::CommonConfig> {
    let mut c = samsa_client::config::CommonConfig::default();
    c.set("bootstrap.servers", bootstrap)?;
    c.set("request.timeout.ms", "5000")?;
    Ok(c)
}

/// One partition as Metadata reports it: (leader, replicas, in-sync replicas).
pub type PartitionState = (i32, Vec<i32>, Vec<i32>);

/// A free loopback port (bound, then released: good enough for tests on one machine).
pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Several `samsa server` processes forming one cluster on loopback ports, every node a
/// broker and a controller. Nodes are numbered from 1; each keeps its ports and data
/// directory across [`SamsaCluster::restart`].
pub struct SamsaCluster {
    nodes: Vec<Option<SamsaServer>>,
    kafka_ports: Vec<u16>,
    controller_ports: Vec<u16>,
    voters: String,
    sets: Vec<(String, String)>,
    /// More listeners for every node, after its PLAINTEXT one (e.g. `SASL_PLAINTEXT://127.0.0.1:0`).
    extra_listeners: Option<String>,
    dirs: tempfile::TempDir,
}

impl SamsaCluster {
    /// [`Self::start`] with more listeners on every node (`NAME://127.0.0.1:0,...`).
    pub fn start_with_listeners(n: usize, sets: &[(&str, &str)], extra: &str) -> Result<Self> {
        let mut attempt = 1;
        loop {
            match Self::start_on_free_ports(n, sets, Some(extra)) {
                Err(e) if attempt < 3 && format!("{e:#}").contains("Address already in use") => attempt += 1,
                other => return other,
            }
        }
    }

    /// Starts `n` nodes with broker settings `sets` and waits until every one is
    /// registered (all `n` brokers appear in Metadata). The ports are picked before the
    /// nodes start (each node must know the others' controller ports), so another test
    /// may take one in between: then the whole cluster starts again on new ports.
    pub fn start(n: usize, sets: &[(&str, &str)]) -> Result<Self> {
        let mut attempt = 1;
        loop {
            match Self::start_on_free_ports(n, sets, None) {
                Err(e) if attempt < 3 && format!("{e:#}").contains("Address already in use") => {
                    eprintln!("cluster start attempt {attempt}: a picked port was taken meanwhile ({e}); trying new ports");
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    fn start_on_free_ports(n: usize, sets: &[(&str, &str)], extra: Option<&str>) -> Result<Self> {
        let kafka_ports = (0..n).map(|_| free_port()).collect::<Result<Vec<_>>>()?;
        let controller_ports = (0..n).map(|_| free_port()).collect::<Result<Vec<_>>>()?;
        let voters = controller_ports.iter().enumerate().map(|(i, p)| format!("{}@127.0.0.1:{p}", i + 1)).collect::<Vec<_>>().join(",");
        let mut cluster = Self {
            nodes: (0..n).map(|_| None).collect(),
            kafka_ports,
            controller_ports,
            voters,
            sets: sets.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            extra_listeners: extra.map(str::to_string),
            dirs: tempfile::Builder::new().prefix("samsa-cluster-").tempdir()?,
        };
        for id in 1..=n {
            cluster.restart(id)?;
        }
        cluster.wait_for_brokers(n, Duration::from_secs(30))?;
        Ok(cluster)
    }

    /// Starts node `id` again (same ports and data directory) after a kill or stop.
    pub fn restart(&mut self, id: usize) -> Result<()> {
        let i = id - 1;
        let mut b = SamsaServer::builder()
            .node_id(id as u32)
            .data_dir(self.data_dir(id))
            .listen(match &self.extra_listeners {
                Some(extra) => format!("127.0.0.1:{},{extra}", self.kafka_ports[i]),
                None => format!("127.0.0.1:{}", self.kafka_ports[i]),
            })
            .quorum(format!("127.0.0.1:{}", self.controller_ports[i]), self.voters.clone());
        for (k, v) in &self.sets {
            b = b.set(k, v);
        }
        self.nodes[i] = Some(b.start()?);
        Ok(())
    }

    /// Node `id`'s data directory.
    pub fn data_dir(&self, id: usize) -> PathBuf {
        self.dirs.path().join(format!("node-{id}"))
    }

    /// Node `id`'s controller (Raft) address.
    pub fn controller_addr(&self, id: usize) -> String {
        format!("127.0.0.1:{}", self.controller_ports[id - 1])
    }

    /// Node `id`'s Kafka address.
    pub fn addr(&self, id: usize) -> String {
        format!("127.0.0.1:{}", self.kafka_ports[id - 1])
    }

    /// Every node's Kafka address, comma-separated (clients pick any that answers).
    pub fn bootstrap(&self) -> String {
        (1..=self.nodes.len()).map(|id| self.addr(id)).collect::<Vec<_>>().join(",")
    }

    /// The running process of node `id`.
    pub fn node(&mut self, id: usize) -> &mut SamsaServer {
        self.nodes[id - 1].as_mut().expect("node is running")
    }

    /// Kills node `id` with SIGKILL.
    pub fn kill9(&mut self, id: usize) -> Result<()> {
        let mut n = self.nodes[id - 1].take().context("node is not running")?;
        n.kill9()
    }

    /// Stops node `id` with SIGTERM (controlled shutdown) and waits for it to exit.
    pub fn terminate(&mut self, id: usize) -> Result<()> {
        let mut n = self.nodes[id - 1].take().context("node is not running")?;
        n.terminate()
    }

    /// Freezes node `id` (SIGSTOP): a stand-in for a long pause or a network partition.
    pub fn pause(&mut self, id: usize) -> Result<()> {
        self.node(id).signal("STOP")
    }

    /// Resumes a frozen node (SIGCONT).
    pub fn resume(&mut self, id: usize) -> Result<()> {
        self.node(id).signal("CONT")
    }

    /// Stderr of node `id` so far (empty if it is not running).
    pub fn stderr(&self, id: usize) -> String {
        self.nodes[id - 1].as_ref().map(SamsaServer::stderr).unwrap_or_default()
    }

    /// Runs `samsa cluster status`-style metadata through Samsa's admin client from the
    /// first running node: (broker ids, per partition (leader, replicas, isr)).
    pub fn partitions(&self, topic: &str) -> Result<Vec<PartitionState>> {
        let bootstrap = self.bootstrap();
        let topic = topic.to_string();
        blocking(move || -> Result<Vec<PartitionState>> {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            rt.block_on(async {
                let cluster = samsa_client::net::Cluster::connect(common_config(&bootstrap)?).await?;
                let meta = cluster.refresh(Some(std::slice::from_ref(&topic)), false).await?;
                let t = meta.topics.get(&topic).with_context(|| format!("topic {topic} not in metadata"))?;
                Ok(t.partitions.iter().map(|p| (p.leader, p.replicas.clone(), p.isr.clone())).collect())
            })
        })
    }

    /// Index of the `__transaction_state` partition holding `txn_id`, as Kafka places
    /// transactional ids: abs(Java `String.hashCode`) mod the partition count.
    pub fn txn_partition(&self, txn_id: &str) -> Result<usize> {
        let count = self.partitions("__transaction_state")?.len();
        ensure!(count > 0, "__transaction_state has no partitions");
        Ok(kafka_partition_of(txn_id, count))
    }

    /// How many times `needle` appears in the logs of these nodes (their current processes).
    pub fn count_in_logs(&self, nodes: &[usize], needle: &str) -> usize {
        nodes.iter().map(|&n| self.stderr(n).matches(needle).count()).sum()
    }

    /// Waits until Metadata lists `n` live brokers.
    pub fn wait_for_brokers(&self, n: usize, timeout: Duration) -> Result<()> {
        let bootstrap = self.bootstrap();
        wait_until(timeout, &format!("{n} brokers registered"), || {
            let b = bootstrap.clone();
            let count = blocking(move || -> Result<usize> {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
                rt.block_on(async {
                    let cluster = samsa_client::net::Cluster::connect(common_config(&b)?).await?;
                    Ok(cluster.refresh(Some(&[]), false).await?.brokers.len())
                })
            });
            Ok(count.map(|c| c >= n).unwrap_or(false))
        })
    }
}

impl Drop for SamsaServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // Always printed: the test runner shows captured output only for failing tests,
        // and a test that returns `Err` is not panicking here.
        eprintln!(
            "---- samsa {} stderr (tail) ----\n{}",
            self.addr,
            tail(&self.stderr(), 200)
        );
    }
}

/// What a client process printed.
#[derive(Debug, Clone)]
pub struct ClientOutput {
    /// Everything written to stdout.
    pub stdout: String,
    /// Everything written to stderr.
    pub stderr: String,
}

impl ClientOutput {
    /// The `key=value` pairs of the last stdout line starting with `RESULT` (the scripts'
    /// summary line).
    pub fn result(&self) -> Result<HashMap<String, String>> {
        let line = self
            .stdout
            .lines()
            .rev()
            .find(|l| l.starts_with("RESULT"))
            .ok_or_else(|| anyhow!("no RESULT line in client stdout:\n{}", self.stdout))?;
        Ok(line
            .split_whitespace()
            .skip(1)
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect())
    }

    /// One value of the `RESULT` line, parsed.
    pub fn result_value<T: std::str::FromStr>(&self, key: &str) -> Result<T>
    where
        T::Err: std::fmt::Display,
    {
        let map = self.result()?;
        let raw = map
            .get(key)
            .ok_or_else(|| anyhow!("RESULT line has no `{key}`: {map:?}"))?;
        raw.parse()
            .map_err(|e| anyhow!("RESULT `{key}={raw}` does not parse: {e}"))
    }
}

/// A client to run: program, arguments, working directory, standard input and time limit.
#[derive(Debug, Clone)]
pub struct ClientCommand {
    program: OsString,
    args: Vec<OsString>,
    cwd: PathBuf,
    stdin: Option<Vec<u8>>,
    timeout: Duration,
    envs: Vec<(String, String)>,
}

impl ClientCommand {
    fn new(program: impl Into<OsString>, cwd: PathBuf) -> Self {
        ClientCommand {
            program: program.into(),
            args: Vec::new(),
            cwd,
            stdin: None,
            timeout: CLIENT_TIMEOUT,
            envs: Vec::new(),
        }
    }

    /// Appends arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Feeds `input` to the client's stdin (closed afterwards).
    pub fn stdin(mut self, input: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(input.into());
        self
    }

    /// Sets the time limit (default [`CLIENT_TIMEOUT`]).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets an environment variable for the client.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.envs.push((key.into(), value.into()));
        self
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args).current_dir(&self.cwd);
        for (k, v) in &self.envs {
            cmd.env(k, v);
        }
        cmd
    }

    fn describe(&self) -> String {
        let mut s = self.program.to_string_lossy().into_owned();
        for a in &self.args {
            s.push(' ');
            s.push_str(&a.to_string_lossy());
        }
        s
    }

    /// Runs the client to completion; fails with its output on a non-zero exit or timeout.
    pub fn run(self) -> Result<ClientOutput> {
        let what = self.describe();
        let mut cmd = self.command();
        cmd.stdin(if self.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let mut child = spawn_client(&mut cmd, &what)?;
        if let Some(input) = self.stdin.clone() {
            let mut pipe = child.stdin.take().expect("stdin is piped");
            thread::spawn(move || {
                let _ = pipe.write_all(&input);
            });
        }
        let out = read_all(child.stdout.take().expect("stdout is piped"));
        let err = read_all(child.stderr.take().expect("stderr is piped"));
        let deadline = Instant::now() + self.timeout;
        let status = loop {
            if let Some(status) = child.try_wait()? {
                break Some(status);
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            thread::sleep(Duration::from_millis(20));
        };
        let output = ClientOutput {
            stdout: out.join().unwrap_or_default(),
            stderr: err.join().unwrap_or_default(),
        };
        // Shown by the test runner when the test fails.
        eprintln!(
            "---- client `{what}` stderr ----\n{}",
            tail(&output.stderr, 100)
        );
        match status {
            None => bail!(
                "client `{what}` timed out after {:?}\nstdout:\n{}\nstderr:\n{}",
                self.timeout,
                output.stdout,
                output.stderr
            ),
            Some(status) if !status.success() => {
                let hint = if missing_dependency(&output.stderr) {
                    format!("\nThe client's library is missing: {SETUP_HINT}.")
                } else {
                    String::new()
                };
                bail!(
                    "client `{what}` failed ({status}){hint}\nstdout:\n{}\nstderr:\n{}",
                    output.stdout,
                    output.stderr
                )
            }
            Some(_) => Ok(output),
        }
    }

    /// Starts the client in the background, its output going to files.
    pub fn spawn(self) -> Result<BackgroundClient> {
        let what = self.describe();
        let logs = tempfile::Builder::new().prefix("samsa-client-").tempdir()?;
        let stdout_path = logs.path().join("stdout");
        let stderr_path = logs.path().join("stderr");
        let mut cmd = self.command();
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(File::create(&stdout_path)?))
            .stderr(Stdio::from(File::create(&stderr_path)?));
        let child = spawn_client(&mut cmd, &what)?;
        Ok(BackgroundClient {
            child: Some(child),
            what,
            stdout_path,
            stderr_path,
            _logs: logs,
        })
    }
}

/// A client process running in the background; killed when dropped.
#[derive(Debug)]
pub struct BackgroundClient {
    child: Option<Child>,
    what: String,
    stdout_path: PathBuf,
    stderr_path: PathBuf,
    _logs: tempfile::TempDir,
}

impl BackgroundClient {
    /// Whether the process has exited (it is not reaped for the caller's status).
    pub fn has_exited(&mut self) -> Result<bool> {
        match self.child.as_mut() {
            Some(child) => Ok(child.try_wait()?.is_some()),
            None => Ok(true),
        }
    }

    /// Sends a signal (`"TERM"`, `"INT"`, ...) to the client process (not reaped: follow
    /// with [`BackgroundClient::wait`]).
    pub fn signal(&mut self, sig: &str) -> Result<()> {
        let pid = self.child.as_ref().context("client already reaped")?.id();
        let status = Command::new("kill").arg(format!("-{sig}")).arg(pid.to_string()).status().context("running `kill`")?;
        if !status.success() {
            bail!("`kill -{sig} {pid}` failed: {status}");
        }
        Ok(())
    }

    /// Kills the client with SIGKILL (a crash, as a test's fault injection), reaps it and
    /// returns what it printed until then.
    pub fn kill9(mut self) -> Result<ClientOutput> {
        let child = self.child.as_mut().expect("client not yet reaped");
        child.kill().with_context(|| format!("SIGKILL `{}`", self.what))?;
        let status = child.wait()?;
        self.child = None;
        eprintln!("client `{}` killed with SIGKILL: {status}", self.what);
        Ok(self.output())
    }

    fn output(&self) -> ClientOutput {
        let read = |p: &Path| {
            std::fs::read(p)
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default()
        };
        ClientOutput {
            stdout: read(&self.stdout_path),
            stderr: read(&self.stderr_path),
        }
    }

    /// Waits at most `timeout` for the client to exit; fails with its output unless it
    /// exits with status 0.
    pub fn wait(mut self, timeout: Duration) -> Result<ClientOutput> {
        let mut child = self.child.take().expect("client not yet reaped");
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = child.try_wait()? {
                break Some(status);
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            thread::sleep(Duration::from_millis(20));
        };
        let output = self.output();
        eprintln!(
            "---- client `{}` stderr ----\n{}",
            self.what,
            tail(&output.stderr, 100)
        );
        match status {
            Some(s) if s.success() => Ok(output),
            Some(s) => bail!(
                "client `{}` failed ({s})\nstdout:\n{}\nstderr:\n{}",
                self.what,
                output.stdout,
                output.stderr
            ),
            None => bail!(
                "client `{}` did not exit within {timeout:?}\nstdout:\n{}\nstderr:\n{}",
                self.what,
                output.stdout,
                output.stderr
            ),
        }
    }
}

impl Drop for BackgroundClient {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            let output = self.output();
            eprintln!(
                "---- background client `{}` (killed) ----\nstdout:\n{}\nstderr:\n{}",
                self.what,
                tail(&output.stdout, 50),
                tail(&output.stderr, 100)
            );
        }
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn read_all(mut pipe: impl Read + Send + 'static) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = pipe.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    })
}

fn spawn_client(cmd: &mut Command, what: &str) -> Result<Child> {
    cmd.spawn().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            anyhow!("cannot run `{what}`: program not found; {SETUP_HINT}")
        } else {
            anyhow!("cannot run `{what}`: {e}")
        }
    })
}

fn missing_dependency(stderr: &str) -> bool {
    stderr.contains("ModuleNotFoundError")
        || stderr.contains("No module named")
        || stderr.contains("Cannot find module")
}

fn python_program() -> OsString {
    std::env::var_os("SAMSA_PYTHON").unwrap_or_else(|| "python3".into())
}

/// A Python script from `tests/clients/` (run with `$SAMSA_PYTHON` or `python3`).
pub fn python(script: &str) -> Result<ClientCommand> {
    let path = clients_dir().join(script);
    if !path.is_file() {
        bail!("no client script {}", path.display());
    }
    Ok(ClientCommand::new(python_program(), clients_dir())
        .env("PYTHONUNBUFFERED", "1")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .args([path]))
}

/// Any program, run like the client scripts (working directory `tests/clients`): for a
/// helper binary of this crate, pass `env!("CARGO_BIN_EXE_<name>")`. Gives the same
/// runners (`run`, `spawn`, and `BackgroundClient::kill9` for crash tests).
pub fn program(path: impl Into<OsString>) -> ClientCommand {
    ClientCommand::new(path, clients_dir())
}

/// Runs a Python script from `tests/clients/` with `args`; fails with its output unless it
/// exits 0, and with a setup hint when Python or its Kafka modules are missing.
pub fn run_python<S: AsRef<str>>(script: &str, args: &[S]) -> Result<ClientOutput> {
    python(script)?
        .args(args.iter().map(|a| a.as_ref().to_string()))
        .run()
}

/// A kafkajs script from `tests/clients/js/` (run with `node`).
pub fn node(script: &str) -> Result<ClientCommand> {
    let js = clients_dir().join("js");
    let path = js.join(script);
    if !path.is_file() {
        bail!("no client script {}", path.display());
    }
    if !js.join("node_modules").join("kafkajs").is_dir() {
        bail!(
            "kafkajs is not installed in {}: {SETUP_HINT}",
            js.join("node_modules").display()
        );
    }
    Ok(ClientCommand::new("node", js)
        .env("KAFKAJS_NO_PARTITIONER_WARNING", "1")
        .args([path]))
}

/// Runs a kafkajs script from `tests/clients/js/` with `args`; fails with its output unless
/// it exits 0, and with a setup hint when node or kafkajs is missing.
pub fn run_node<S: AsRef<str>>(script: &str, args: &[S]) -> Result<ClientOutput> {
    node(script)?
        .args(args.iter().map(|a| a.as_ref().to_string()))
        .run()
}

/// A `kcat` invocation.
pub fn kcat() -> ClientCommand {
    ClientCommand::new("kcat", clients_dir())
}

/// Runs `kcat` with `args`; fails with its output unless it exits 0, and with a setup hint
/// when kcat is not installed.
pub fn run_kcat<S: AsRef<str>>(args: &[S]) -> Result<ClientOutput> {
    kcat()
        .args(args.iter().map(|a| a.as_ref().to_string()))
        .run()
}

/// Runs blocking harness code (process spawns and waits) from an async test without
/// stalling the tokio workers (multi-thread runtime only).
pub fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

/// Awaits `fut` for at most `limit`, failing with `what` when it takes longer.
pub async fn bounded<T>(what: &str, limit: Duration, fut: impl std::future::Future<Output = T>) -> Result<T> {
    tokio::time::timeout(limit, fut).await.map_err(|_| anyhow::anyhow!("{what} did not finish within {limit:?}"))
}

/// (codec id, record count) of every batch in a segment file, read with the wire codec's
/// batch-header parser. Samsa stores producer batches as received, so this shows the codec
/// the producer really used.
pub fn segment_batches(path: &Path) -> Result<Vec<(i16, i32)>> {
    use samsa_client::wire::batch::BatchHeader;
    let data = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let mut batches = Vec::new();
    let mut pos = 0usize;
    while pos < data.len() {
        let header = BatchHeader::parse(&data[pos..]).map_err(|e| anyhow::anyhow!("batch at byte {pos} of {}: {e:?}", path.display()))?;
        batches.push((header.compression_id(), header.record_count));
        pos += header.total_len();
    }
    Ok(batches)
}

/// A running `samsa connect standalone` (its stderr in `{dir}/{log}`), killed if the test
/// ends early.
pub struct ConnectWorker {
    child: Option<Child>,
    log: PathBuf,
}

impl ConnectWorker {
    /// Starts `samsa connect standalone ARGS...` in `dir`, logging to `{dir}/{log}`.
    pub fn start(dir: &Path, log: &str, args: &[&str]) -> Result<ConnectWorker> {
        let log = dir.join(log);
        let child = Command::new(samsa_bin()?)
            .current_dir(dir)
            .args(["connect", "standalone"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&log)?)
            .spawn()?;
        Ok(ConnectWorker { child: Some(child), log })
    }

    /// What the worker logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then a clean exit (code 0) within 30 s.
    pub fn stop(mut self) -> Result<()> {
        let mut child = self.child.take().expect("running");
        if !Command::new("kill").args(["-TERM", &child.id().to_string()]).status().is_ok_and(|s| s.success()) {
            let _ = child.kill();
            let _ = child.wait();
            bail!("kill -TERM failed");
        }
        let deadline = Instant::now() + SHUTDOWN_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait()? {
                ensure!(status.code() == Some(0), "the worker exited with {status}; log:\n{}", self.log());
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                bail!("the worker did not stop within {SHUTDOWN_TIMEOUT:?} of SIGTERM; log:\n{}", self.log());
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// kill -9: no chance to store offsets or commit.
    pub fn kill9(mut self) -> Result<()> {
        let child = self.child.as_mut().expect("running");
        child.kill()?;
        child.wait()?;
        self.child = None;
        Ok(())
    }

    /// Waits for the worker to exit by itself; its exit status.
    pub fn wait_exit(mut self, timeout: Duration) -> Result<ExitStatus> {
        let child = self.child.as_mut().expect("running");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = child.try_wait()? {
                self.child = None;
                return Ok(s);
            }
            ensure!(Instant::now() < deadline, "the worker did not stop within {timeout:?}; log:\n{}", self.log());
            thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for ConnectWorker {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Sends `lines` to `topic` with `samsa produce`, one record each.
pub fn produce_lines(bootstrap: &str, topic: &str, lines: &[&str]) -> Result<()> {
    let mut child = Command::new(samsa_bin()?).args(["produce", topic, "--bootstrap", bootstrap]).stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::piped()).spawn()?;
    child.stdin.take().context("stdin")?.write_all(format!("{}\n", lines.join("\n")).as_bytes())?;
    let out = child.wait_with_output()?;
    ensure!(out.status.success(), "samsa produce failed: {}", String::from_utf8_lossy(&out.stderr));
    Ok(())
}

/// A started HTTP answer: the body reader, the status and the lower-cased headers.
pub type Started = (BufReader<std::net::TcpStream>, u16, Vec<(String, String)>);

/// Sends one HTTP/1.1 request (`Connection: close`, a JSON body) and returns the open
/// connection, positioned after the answer's headers.
pub fn http_start(addr: &str, method: &str, path: &str, body: &str) -> Result<Started> {
    let mut conn = std::net::TcpStream::connect(addr).with_context(|| format!("connecting to {addr}"))?;
    conn.set_read_timeout(Some(Duration::from_secs(60)))?;
    write!(conn, "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len())?;
    let mut reader = BufReader::new(conn);
    let mut status_line = String::new();
    reader.read_line(&mut status_line)?;
    let status: u16 = status_line.split_whitespace().nth(1).and_then(|s| s.parse().ok()).with_context(|| format!("bad status line {status_line:?}"))?;
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (k, v) = line.split_once(':').with_context(|| format!("bad header {line:?}"))?;
        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
    Ok((reader, status, headers))
}

/// One chunk of a chunked body (`None` at the last, empty one).
pub fn read_chunk(reader: &mut BufReader<std::net::TcpStream>) -> Result<Option<Vec<u8>>> {
    let mut size = String::new();
    reader.read_line(&mut size)?;
    let size = usize::from_str_radix(size.trim().split(';').next().unwrap_or_default(), 16).with_context(|| format!("bad chunk size {size:?}"))?;
    let mut data = vec![0; size + 2];
    reader.read_exact(&mut data)?;
    data.truncate(size);
    Ok((size > 0).then_some(data))
}

/// The rest of an answer's body (chunked or not), after [`http_start`].
pub fn read_body(reader: &mut BufReader<std::net::TcpStream>, headers: &[(String, String)]) -> Result<String> {
    if headers.iter().any(|(k, v)| k == "transfer-encoding" && v.contains("chunked")) {
        let mut body = Vec::new();
        while let Some(chunk) = read_chunk(reader)? {
            body.extend(chunk);
        }
        return Ok(String::from_utf8(body)?);
    }
    let mut s = String::new();
    reader.read_to_string(&mut s)?;
    Ok(s)
}

/// One HTTP request; the status and the whole body.
pub fn http(addr: &str, method: &str, path: &str, body: &str) -> Result<(u16, String)> {
    let (mut reader, status, headers) = http_start(addr, method, path, body)?;
    Ok((status, read_body(&mut reader, &headers)?))
}
