//! The broker process: data directory, listener, connections and background jobs.
//!
//! Each connection is served one request at a time, in order, as Kafka does: the next
//! request is read only after the previous response was written. A frame over
//! `socket.request.max.bytes` or a request that cannot be decoded closes only that
//! connection, with a log line naming the peer.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use samsa_client::wire::frame::{self, FrameCheck};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tracing::{debug, info, warn};

use crate::api::{self, Outcome};
use crate::config::BrokerConfig;
use crate::group::Coordinator;
use crate::topics::TopicManager;
use crate::{Error, Result};

/// How `samsa server` was asked to run.
#[derive(Debug, Clone)]
pub struct BrokerOptions {
    /// Directory for logs and metadata.
    pub data_dir: PathBuf,
    /// Address to listen on (`port 0` picks a free port).
    pub listen: String,
    /// This broker's node id.
    pub node_id: i32,
    /// Validated configuration.
    pub config: BrokerConfig,
}

/// Everything request handlers need.
pub struct BrokerState {
    /// This broker's node id.
    pub node_id: i32,
    /// Host advertised in Metadata.
    pub host: String,
    /// Port advertised in Metadata.
    pub port: i32,
    /// Cluster id from `meta.properties`.
    pub cluster_id: String,
    /// Broker configuration.
    pub config: BrokerConfig,
    /// Topics and logs.
    pub topics: Arc<TopicManager>,
    /// Group coordinator.
    pub groups: Arc<Coordinator>,
}

/// A started broker.
pub struct Broker {
    state: Arc<BrokerState>,
    local_addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    _lock: std::fs::File,
}

/// Reads or creates `meta.properties` (cluster id and node id), refusing a data directory
/// that belongs to another node.
fn load_meta(dir: &Path, node_id: i32) -> Result<String> {
    let path = dir.join("meta.properties");
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let get = |k: &str| text.lines().find_map(|l| l.strip_prefix(k).and_then(|r| r.strip_prefix('='))).map(str::trim);
            let stored: Option<i32> = get("node.id").and_then(|v| v.parse().ok());
            if stored.is_some_and(|n| n != node_id) {
                return Err(Error::Config(format!(
                    "data directory {} belongs to node {} but --node-id is {node_id}",
                    dir.display(),
                    stored.unwrap_or_default()
                )));
            }
            get("cluster.id").map(str::to_string).ok_or_else(|| Error::Config(format!("{} has no cluster.id", path.display())))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let id = uuid::Uuid::new_v4().simple().to_string()[..22].to_string();
            std::fs::write(&path, format!("version=1\ncluster.id={id}\nnode.id={node_id}\n"))
                .map_err(|e| Error::DataDir { path: dir.to_path_buf(), source: e })?;
            Ok(id)
        }
        Err(e) => Err(Error::DataDir { path: path.clone(), source: e }),
    }
}

impl Broker {
    /// Opens the data directory, recovers the logs, binds the listener and starts serving.
    pub async fn start(opts: BrokerOptions) -> Result<Self> {
        let dir = &opts.data_dir;
        std::fs::create_dir_all(dir).map_err(|e| Error::DataDir { path: dir.clone(), source: e })?;
        let probe = dir.join(".write-test");
        std::fs::write(&probe, b"ok").map_err(|e| Error::DataDir { path: dir.clone(), source: e })?;
        let _ = std::fs::remove_file(&probe);
        let lock = std::fs::File::create(dir.join(".lock")).map_err(|e| Error::DataDir { path: dir.clone(), source: e })?;
        if lock.try_lock().is_err() {
            return Err(Error::Config(format!("data directory {} is in use by another samsa server", dir.display())));
        }
        let cluster_id = load_meta(dir, opts.node_id)?;
        let listener = TcpListener::bind(&opts.listen).await.map_err(|e| Error::Listen { addr: opts.listen.clone(), source: e })?;
        let local_addr = listener.local_addr()?;
        let topics = Arc::new(TopicManager::open(dir, opts.config.clone())?);
        let groups = Arc::new(Coordinator::open(topics.clone())?);
        let state = Arc::new(BrokerState {
            node_id: opts.node_id,
            host: local_addr.ip().to_string(),
            port: i32::from(local_addr.port()),
            cluster_id,
            config: opts.config.clone(),
            topics,
            groups,
        });
        let (shutdown, shutdown_rx) = watch::channel(false);
        let mut tasks = Vec::new();
        tasks.push(tokio::spawn(accept_loop(listener, state.clone(), shutdown_rx.clone())));
        tasks.push(tokio::spawn(group_ticks(state.clone(), shutdown_rx.clone())));
        tasks.push(tokio::spawn(maintenance(state.clone(), shutdown_rx)));
        Ok(Self { state, local_addr, shutdown, tasks, _lock: lock })
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Shared state (for tests and embedding).
    pub fn state(&self) -> &Arc<BrokerState> {
        &self.state
    }

    /// Stops accepting, ends background jobs and flushes every partition.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
        let topics = self.state.topics.clone();
        let _ = tokio::task::spawn_blocking(move || topics.flush_all()).await;
        info!("shut down cleanly");
    }
}

async fn accept_loop(listener: TcpListener, state: Arc<BrokerState>, mut shutdown: watch::Receiver<bool>) {
    let limit = Arc::new(Semaphore::new(state.config.int("max.connections") as usize));
    loop {
        let permit = tokio::select! {
            p = limit.clone().acquire_owned() => p.expect("semaphore never closed"),
            _ = shutdown.changed() => return,
        };
        let (socket, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(e) => {
                    warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        let state = state.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let _permit = permit;
            if let Err(e) = serve(socket, peer, state, shutdown).await {
                debug!(%peer, "connection ended: {e}");
            }
        });
    }
}

async fn serve(mut socket: TcpStream, peer: SocketAddr, state: Arc<BrokerState>, mut shutdown: watch::Receiver<bool>) -> std::io::Result<()> {
    socket.set_nodelay(true)?;
    let max = state.config.int("socket.request.max.bytes") as usize;
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let conn = api::Connection { peer };
    loop {
        match frame::check(&buf, max) {
            FrameCheck::TooLarge { announced } => {
                warn!(%peer, announced, max, "closing connection: request frame of {announced} bytes exceeds socket.request.max.bytes ({max})");
                return Ok(());
            }
            FrameCheck::Complete { len } => {
                buf.advance(4);
                let body = buf.split_to(len).freeze();
                match api::handle(&state, &conn, body).await {
                    Outcome::Respond(bytes) => {
                        socket.write_all(&frame::size_prefix(bytes.len())).await?;
                        socket.write_all(&bytes).await?;
                    }
                    Outcome::NoResponse => {}
                    Outcome::Close(reason) => {
                        warn!(%peer, "closing connection: {reason}");
                        return Ok(());
                    }
                }
            }
            FrameCheck::Incomplete { needed } => {
                buf.reserve(needed.saturating_sub(buf.len()).min(max));
                let n = tokio::select! {
                    r = socket.read_buf(&mut buf) => r?,
                    _ = shutdown.changed() => return Ok(()),
                };
                if n == 0 {
                    return Ok(());
                }
            }
        }
    }
}

async fn group_ticks(state: Arc<BrokerState>, mut shutdown: watch::Receiver<bool>) {
    let mut every = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            _ = every.tick() => state.groups.tick(),
            _ = shutdown.changed() => return,
        }
    }
}

/// Retention, compaction and periodic flushes, each at its configured interval, on a
/// blocking thread (they do file I/O).
async fn maintenance(state: Arc<BrokerState>, mut shutdown: watch::Receiver<bool>) {
    let retention_every = state.config.ms("log.retention.check.interval.ms");
    let cleaner_every = state.config.ms("log.cleaner.backoff.ms");
    let cleaner_on = state.config.bool("log.cleaner.enable");
    let step = Duration::from_millis(100).min(retention_every).min(cleaner_every);
    let mut next_retention = tokio::time::Instant::now() + retention_every;
    let mut next_clean = tokio::time::Instant::now() + cleaner_every;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(step) => {}
            _ = shutdown.changed() => return,
        }
        let now = tokio::time::Instant::now();
        let retention = now >= next_retention;
        let compaction = cleaner_on && now >= next_clean;
        if retention {
            next_retention = now + retention_every;
        }
        if compaction {
            next_clean = now + cleaner_every;
        }
        let topics = state.topics.clone();
        let _ = tokio::task::spawn_blocking(move || topics.maintenance(retention, compaction)).await;
    }
}
