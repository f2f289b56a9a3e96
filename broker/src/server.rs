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
use crate::meta::{Command, Controller, ControllerOptions, Image};
use crate::replica::fetcher::{FetcherConfig, Fetchers};
use crate::topics::{Partition, TopicManager, OFFSETS_TOPIC, TXN_TOPIC};
use crate::txn::TxnCoordinator;
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
    /// Address for the controller RPC (cluster mode).
    pub controller_listen: Option<String>,
    /// The controller quorum, node id -> controller address; empty for a single node.
    pub voters: std::collections::BTreeMap<i32, String>,
    /// Validated configuration.
    pub config: BrokerConfig,
}

/// Parses `--voters 1@HOST:PORT,2@HOST:PORT,...`.
pub fn parse_voters(spec: &str) -> Result<std::collections::BTreeMap<i32, String>> {
    let mut out = std::collections::BTreeMap::new();
    for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (id, addr) = item
            .split_once('@')
            .ok_or_else(|| Error::Config(format!("--voters entry `{item}` must look like ID@HOST:PORT, e.g. 1@127.0.0.1:9093")))?;
        let id: i32 = id.trim().parse().map_err(|_| Error::Config(format!("--voters entry `{item}`: `{id}` is not a node id")))?;
        if !addr.contains(':') {
            return Err(Error::Config(format!("--voters entry `{item}`: `{addr}` needs HOST:PORT")));
        }
        if out.insert(id, addr.trim().to_string()).is_some() {
            return Err(Error::Config(format!("--voters names node {id} twice")));
        }
    }
    Ok(out)
}

/// Producer ids fetched from the quorum at a time.
const PRODUCER_ID_BLOCK: i64 = 1000;

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
    /// Local partition replicas.
    pub topics: Arc<TopicManager>,
    /// Group coordinator.
    pub groups: Arc<Coordinator>,
    /// The metadata quorum.
    pub controller: Arc<Controller>,
    /// Producer ids handed out by InitProducerId: (next, end of the block).
    pub producer_ids: tokio::sync::Mutex<(i64, i64)>,
    /// Transaction coordinator.
    pub txns: Arc<TxnCoordinator>,
    /// Counters for `GET /metrics`.
    pub metrics: crate::metrics::BrokerMetrics,
    /// The authorizer's settings.
    pub authz: Authz,
    /// How this broker reaches the others.
    pub inter_broker: InterBroker,
}

/// How this broker reaches the others: the listener (`inter.broker.listener.name`) and
/// the client settings (`inter.broker.client.config`) for replication and markers.
#[derive(Debug, Clone, Default)]
pub struct InterBroker {
    /// Listener name.
    pub listener: String,
    /// TLS and SASL for it.
    pub transport: samsa_client::net::secure::Transport,
}

impl InterBroker {
    /// From the config and the listeners, or why they do not fit together.
    pub fn resolve(config: &BrokerConfig, listeners: &[crate::security::ListenerSpec], cluster: bool) -> Result<InterBroker> {
        let name = match config.get("inter.broker.listener.name").trim() {
            "" => listeners[0].name.clone(),
            n => n.to_ascii_uppercase(),
        };
        let spec = listeners.iter().find(|l| l.name == name).ok_or_else(|| Error::Config(format!("inter.broker.listener.name={name} is not one of the listeners")))?;
        let mut settings = samsa_client::net::secure::SecuritySettings::default();
        match config.get("inter.broker.client.config").trim() {
            // A single node never calls itself (its markers are local).
            "" if cluster && spec.protocol != crate::security::Protocol::Plaintext => {
                return Err(Error::Config(format!(
                    "brokers replicate over listener {name} ({:?}): give its client settings with inter.broker.client.config=FILE (security.protocol, ssl.ca.location, sasl.*)",
                    spec.protocol
                )))
            }
            "" => {}
            path => {
                let props = samsa_client::config::read_properties_file(std::path::Path::new(path)).map_err(|e| Error::Config(format!("inter.broker.client.config: {e}")))?;
                for (k, v) in props {
                    if !settings.set(&k, &v).map_err(|e| Error::Config(format!("inter.broker.client.config={path}: {e}")))? {
                        return Err(Error::Config(format!("inter.broker.client.config={path}: `{k}` is not a security setting")));
                    }
                }
            }
        }
        let transport = settings.transport().map_err(|e| Error::Config(format!("inter.broker.client.config: {e}")))?;
        Ok(InterBroker { listener: name, transport })
    }
}

/// The controller port's mutual TLS (`controller.ssl.enabled`, cluster mode only).
fn controller_tls(config: &BrokerConfig, cluster: bool) -> Result<Option<crate::meta::rpc::RpcTls>> {
    if !(cluster && config.bool("controller.ssl.enabled")) {
        return Ok(None);
    }
    let need = |k: &str| Some(config.get(k).trim().to_string()).filter(|v| !v.is_empty()).ok_or_else(|| Error::Config(format!("controller.ssl.enabled=true needs {k}")));
    let (cert, key, ca) = (need("ssl.certificate.location")?, need("ssl.key.location")?, need("ssl.ca.location")?);
    let files = crate::security::tls::TlsFiles { cert: cert.clone().into(), key: key.clone().into(), ca: Some(ca.clone().into()), client_auth: crate::security::tls::ClientAuth::Required };
    let server = crate::security::tls::server_config(&files).map_err(|e| Error::Config(format!("controller.ssl.enabled: {e}")))?;
    // Peers are addressed by --voters; the chain (this cluster's CA) is what is checked.
    let mut s = samsa_client::net::secure::SecuritySettings::default();
    for (k, v) in [("security.protocol", "SSL"), ("ssl.ca.location", ca.as_str()), ("ssl.certificate.location", cert.as_str()), ("ssl.key.location", key.as_str()), ("ssl.endpoint.identification.algorithm", "none")] {
        s.set(k, v).map_err(|e| Error::Config(format!("controller.ssl.enabled: {e}")))?;
    }
    let client = s.transport().map_err(|e| Error::Config(format!("controller.ssl.enabled: {e}")))?.tls.map(|(c, _)| c).ok_or_else(|| Error::Config("controller.ssl.enabled: no TLS config".into()))?;
    Ok(Some(crate::meta::rpc::RpcTls { server, client }))
}

/// `authorizer.enabled` and `super.users`.
#[derive(Debug, Clone, Default)]
pub struct Authz {
    /// Whether ACLs are checked.
    pub enabled: bool,
    /// Principals that pass every check.
    pub super_users: Arc<Vec<String>>,
}

impl Authz {
    /// From the broker config (`super.users`: `User:a;User:b`).
    pub fn from_config(config: &BrokerConfig) -> Authz {
        // `;` only: certificate principals hold commas (User:CN=admin,O=corp).
        let super_users = config.get("super.users").split(';').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect();
        Authz { enabled: config.bool("authorizer.enabled"), super_users: Arc::new(super_users) }
    }
}

impl BrokerState {
    /// A producer id unique in the cluster, from a block the metadata quorum handed this
    /// broker.
    pub async fn next_producer_id(&self) -> std::result::Result<i64, kafka_protocol::ResponseError> {
        let mut ids = self.producer_ids.lock().await;
        if ids.0 >= ids.1 {
            match self.controller.propose(Command::AllocateProducerIds { count: PRODUCER_ID_BLOCK }).await {
                Ok(crate::meta::Outcome::ProducerIds { first }) => *ids = (first, first + PRODUCER_ID_BLOCK),
                Ok(_) => return Err(kafka_protocol::ResponseError::UnknownServerError),
                Err(e) => {
                    tracing::warn!("cannot allocate producer ids: {}", e.message);
                    return Err(kafka_protocol::ResponseError::CoordinatorNotAvailable);
                }
            }
        }
        let id = ids.0;
        ids.0 += 1;
        Ok(id)
    }

    /// The applied metadata image.
    pub fn image(&self) -> Arc<Image> {
        self.controller.image()
    }

    /// Asks the controller to change a partition's ISR (once at a time per partition).
    pub fn propose_isr(self: &Arc<Self>, p: &Arc<Partition>, isr: Vec<i32>) {
        let target = isr.clone();
        let (cmd, before) = {
            let mut r = p.replica.lock().expect("replica lock");
            if r.pending_isr.is_some() || !r.is_leader() {
                return;
            }
            r.pending_isr = Some(isr.clone());
            let before = r.isr.len();
            (Command::AlterPartition { topic: p.topic.clone(), partition: p.index, broker: self.node_id, leader_epoch: r.leader_epoch, partition_epoch: r.partition_epoch, isr }, before)
        };
        let state = self.clone();
        let p = p.clone();
        tokio::spawn(async move {
            match state.controller.propose(cmd).await {
                Ok(_) => {
                    state.metrics.isr_changed(before, target.len());
                    tracing::info!(partition = %p.name(), isr = ?target, "ISR changed");
                }
                Err(e) => {
                    tracing::info!(partition = %p.name(), "ISR change refused: {}", e.message);
                    p.replica.lock().expect("replica lock").pending_isr = None;
                }
            }
        });
    }
}

/// A started broker.
pub struct Broker {
    state: Arc<BrokerState>,
    local_addr: SocketAddr,
    listeners: Vec<(String, SocketAddr)>,
    plaintext: Option<SocketAddr>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    _lock: std::fs::File,
}

/// A cluster id all nodes of one quorum agree on without talking: derived from `--voters`.
fn cluster_id_of(voters: &std::collections::BTreeMap<i32, String>) -> String {
    let text: String = voters.iter().map(|(id, a)| format!("{id}@{a},")).collect();
    let h = text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    format!("samsa-{h:016x}")
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
        let mut cluster_id = load_meta(dir, opts.node_id)?;
        if !opts.voters.is_empty() {
            if !opts.voters.contains_key(&opts.node_id) {
                return Err(Error::Config(format!("--node-id {} is not one of the --voters; every node is a voter in this version", opts.node_id)));
            }
            if let (Some(listen), Some(mine)) = (&opts.controller_listen, opts.voters.get(&opts.node_id)) {
                if listen != mine {
                    return Err(Error::Config(format!(
                        "--controller-listen {listen} differs from node {}'s entry in --voters ({mine}); the other nodes would not reach this one",
                        opts.node_id
                    )));
                }
            }
            cluster_id = cluster_id_of(&opts.voters);
        }
        // Client listeners: `listeners` when set, else --listen (both NAME://HOST:PORT,...).
        let spec = Some(opts.config.get("listeners").trim()).filter(|s| !s.is_empty()).unwrap_or(opts.listen.as_str()).to_string();
        let specs = crate::security::parse_listeners(&spec, opts.config.get("listener.security.protocol.map")).map_err(Error::Config)?;
        let inter_broker = InterBroker::resolve(&opts.config, &specs, !opts.voters.is_empty())?;
        let security = crate::security::Security::resolve(&opts.config, &specs).map_err(Error::Config)?;
        let mut listeners = Vec::new();
        for l in &specs {
            let bound = TcpListener::bind(&l.addr).await.map_err(|e| Error::Listen { addr: l.addr.clone(), source: e })?;
            let addr = bound.local_addr()?;
            listeners.push((Arc::new(ListenerCtx { name: Arc::from(l.name.as_str()), protocol: l.protocol, addr, security: security.clone() }), bound));
        }
        let local_addr = listeners[0].0.addr;
        let endpoints: Vec<crate::meta::image::Endpoint> =
            listeners.iter().map(|(l, _)| crate::meta::image::Endpoint { listener: l.name.to_string(), host: l.addr.ip().to_string(), port: i32::from(l.addr.port()) }).collect();
        let controller_listener = match (&opts.controller_listen, opts.voters.is_empty()) {
            (Some(addr), false) => Some(TcpListener::bind(addr).await.map_err(|e| Error::Listen { addr: addr.clone(), source: e })?),
            (None, false) => return Err(Error::Config("--voters needs --controller-listen HOST:PORT (this node's entry in --voters)".into())),
            (Some(_), true) => return Err(Error::Config("--controller-listen needs --voters (the whole quorum, including this node)".into())),
            (None, true) => None,
        };
        let (shutdown, shutdown_rx) = watch::channel(false);
        let cfg = &opts.config;
        let controller = Controller::start(
            dir,
            ControllerOptions {
                node_id: opts.node_id,
                voters: opts.voters.clone(),
                listener: controller_listener,
                tls: controller_tls(&opts.config, !opts.voters.is_empty())?,
                advertised: (local_addr.ip().to_string(), i32::from(local_addr.port())),
                endpoints,
                heartbeat_interval: cfg.ms("broker.heartbeat.interval.ms"),
                session_timeout: cfg.ms("broker.session.timeout.ms"),
                leader_imbalance_interval: Duration::from_secs(cfg.int("leader.imbalance.check.interval.seconds") as u64),
            },
            shutdown_rx.clone(),
        )
        .await?;
        let topics = Arc::new(TopicManager::new(dir, opts.config.clone(), opts.node_id));
        let groups = Arc::new(Coordinator::new(topics.clone()));
        let txns = Arc::new(TxnCoordinator::new(topics.clone()));
        let state = Arc::new(BrokerState {
            node_id: opts.node_id,
            host: local_addr.ip().to_string(),
            port: i32::from(local_addr.port()),
            cluster_id,
            config: opts.config.clone(),
            topics,
            groups,
            controller,
            producer_ids: tokio::sync::Mutex::new((0, 0)),
            txns,
            metrics: Default::default(),
            authz: Authz::from_config(&opts.config),
            inter_broker: inter_broker.clone(),
        });
        let fetchers = Fetchers::new(
            FetcherConfig { me: opts.node_id, wait: cfg.ms("replica.fetch.wait.max.ms"), max_bytes: cfg.int("replica.fetch.max.bytes") as i32, inter_broker },
            state.topics.clone(),
            state.controller.subscribe(),
            shutdown_rx.clone(),
        );
        let mut tasks = Vec::new();
        tasks.push(tokio::spawn(follow_image(state.clone(), fetchers, shutdown_rx.clone())));
        if state.controller.is_single_node() {
            // A single node answers clients only once it is registered and leads its
            // partitions, so a script that waits for the "listening" line can use it at once.
            let mut rx = state.controller.subscribe();
            let me = opts.node_id;
            // The watch guard must not outlive this statement: holding it would block the
            // state machine's next publish (and with it everything reading the image).
            let ready = tokio::time::timeout(Duration::from_secs(30), rx.wait_for(|img| img.is_live(me))).await.is_ok_and(|r| r.is_ok());
            if !ready {
                return Err(Error::Config("the single-node metadata quorum did not start within 30 s".into()));
            }
            let applied = state.image().applied_index;
            state.topics.wait_reconciled(applied, Duration::from_secs(10)).await;
        }
        let addrs = listeners.iter().map(|(l, _)| (l.name.to_string(), l.addr)).collect();
        let plaintext = listeners.iter().find(|(l, _)| l.protocol == crate::security::Protocol::Plaintext).map(|(l, _)| l.addr);
        let limit = Arc::new(Semaphore::new(state.config.int("max.connections") as usize));
        for (ctx, bound) in listeners {
            tasks.push(tokio::spawn(accept_loop(bound, ctx, limit.clone(), state.clone(), shutdown_rx.clone())));
        }
        tasks.push(tokio::spawn(group_ticks(state.clone(), shutdown_rx.clone())));
        tasks.push(tokio::spawn(txn_expiry(state.clone(), shutdown_rx.clone())));
        tasks.push(tokio::spawn(isr_checks(state.clone(), shutdown_rx.clone())));
        tasks.push(tokio::spawn(maintenance(state.clone(), shutdown_rx)));
        Ok(Self { state, local_addr, listeners: addrs, plaintext, shutdown, tasks, _lock: lock })
    }

    /// The address the first listener is bound to (the one registered for replication).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Every client listener: (name, bound address).
    pub fn listeners(&self) -> &[(String, SocketAddr)] {
        &self.listeners
    }

    /// The first PLAINTEXT listener's address: where components in this process (SQL,
    /// Connect) reach the broker.
    pub fn plaintext_addr(&self) -> Option<SocketAddr> {
        self.plaintext
    }

    /// Shared state (for tests and embedding).
    pub fn state(&self) -> &Arc<BrokerState> {
        &self.state
    }

    /// Moves leadership away (controlled shutdown), stops accepting, ends background jobs
    /// and flushes every partition.
    pub async fn shutdown(self) {
        let timeout = self.state.config.ms("controlled.shutdown.timeout.ms");
        if !timeout.is_zero() {
            self.state.controller.controlled_shutdown(timeout).await;
        }
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
        let topics = self.state.topics.clone();
        let _ = tokio::task::spawn_blocking(move || topics.flush_all()).await;
        self.state.controller.shutdown().await;
        info!("shut down cleanly");
    }
}

/// One client listener's name, protocol and security settings.
struct ListenerCtx {
    name: Arc<str>,
    protocol: crate::security::Protocol,
    addr: SocketAddr,
    security: crate::security::Security,
}

/// How long a client of a SASL listener has to authenticate.
const SASL_AUTH_TIMEOUT: Duration = Duration::from_secs(30);

/// Largest frame a client may send before it has authenticated on a SASL listener.
const SASL_MAX_RECEIVE: usize = 512 * 1024;

/// How long a TLS handshake may take.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

async fn accept_loop(listener: TcpListener, ctx: Arc<ListenerCtx>, limit: Arc<Semaphore>, state: Arc<BrokerState>, mut shutdown: watch::Receiver<bool>) {
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
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let _permit = permit;
            if let Err(e) = open(socket, peer, ctx, state, shutdown).await {
                debug!(%peer, "connection ended: {e}");
            }
        });
    }
}

/// Sets a connection up (TLS handshake when the listener has it), then serves it.
async fn open(socket: TcpStream, peer: SocketAddr, ctx: Arc<ListenerCtx>, state: Arc<BrokerState>, shutdown: watch::Receiver<bool>) -> std::io::Result<()> {
    socket.set_nodelay(true)?;
    let tls = match (&ctx.security.tls, ctx.protocol.tls()) {
        (Some(cfg), true) => cfg.clone(),
        _ => return serve(socket, peer, ctx, crate::security::ANONYMOUS.to_string(), state, shutdown).await,
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let stream = match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(socket)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            warn!(%peer, listener = %ctx.name, "TLS handshake failed: {e}");
            return Ok(());
        }
        Err(_) => {
            warn!(%peer, listener = %ctx.name, "TLS handshake did not finish within {} s", TLS_HANDSHAKE_TIMEOUT.as_secs());
            return Ok(());
        }
    };
    // A client certificate names the principal (Kafka's default SSL principal builder).
    let principal = match stream.get_ref().1.peer_certificates().and_then(|c| c.first()).and_then(|c| crate::security::tls::subject(c)) {
        Some(dn) => {
            info!(%peer, listener = %ctx.name, principal = %format!("User:{dn}"), "TLS client certificate accepted");
            format!("User:{dn}")
        }
        None => crate::security::ANONYMOUS.to_string(),
    };
    serve(stream, peer, ctx, principal, state, shutdown).await
}

async fn serve<S>(mut socket: S, peer: SocketAddr, ctx: Arc<ListenerCtx>, principal: String, state: Arc<BrokerState>, mut shutdown: watch::Receiver<bool>) -> std::io::Result<()>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let max = state.config.int("socket.request.max.bytes") as usize;
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut conn = api::Connection { peer, listener: ctx.name.clone(), principal };
    // On a SASL listener nothing but ApiVersions and the SASL exchange is served until the
    // client has authenticated.
    let mut sasl = ctx.protocol.sasl().then(crate::security::sasl::Session::default);
    let auth_deadline = tokio::time::Instant::now() + SASL_AUTH_TIMEOUT;
    let _open = state.metrics.connection();
    loop {
        // Before authentication a frame may be at most `sasl.server.max.receive.size`
        // (Kafka's 512 KiB), so garbage announcing a huge frame is refused at once.
        let max = if sasl.is_some() { max.min(SASL_MAX_RECEIVE) } else { max };
        match frame::check(&buf, max) {
            FrameCheck::TooLarge { announced } => {
                warn!(%peer, announced, max, "closing connection: request frame of {announced} bytes exceeds socket.request.max.bytes ({max})");
                return Ok(());
            }
            FrameCheck::Complete { len } => {
                buf.advance(4);
                let body = buf.split_to(len).freeze();
                let key = samsa_client::wire::header::peek(&body).map(|h| h.api_key);
                let started = std::time::Instant::now();
                let outcome = match sasl.as_mut() {
                    // After a v0 handshake the tokens are bare frames, and so are the answers.
                    Some(session) if session.raw => match sasl_step(&state, session, body.to_vec()).await {
                        crate::security::sasl::Step::Continue(bytes) => Outcome::Respond(bytes.into()),
                        crate::security::sasl::Step::Done(bytes, principal) => {
                            info!(%peer, listener = %ctx.name, %principal, "authenticated");
                            conn.principal = principal;
                            sasl = None;
                            Outcome::Respond(bytes.into())
                        }
                        crate::security::sasl::Step::Failed(message) => Outcome::Close(format!("SASL authentication failed: {message}")),
                    },
                    Some(session) => {
                        let (outcome, done) = authenticate(&state, &ctx, session, body).await;
                        if let Some(principal) = done {
                            info!(%peer, listener = %ctx.name, %principal, "authenticated");
                            conn.principal = principal;
                            sasl = None;
                        }
                        outcome
                    }
                    None => api::handle(&state, &conn, body).await,
                };
                match outcome {
                    Outcome::Respond(bytes) => {
                        socket.write_all(&frame::size_prefix(bytes.len())).await?;
                        socket.write_all(&bytes).await?;
                        socket.flush().await?;
                        if let Some(key) = key {
                            state.metrics.request(key, started.elapsed(), len + 4, bytes.len() + 4);
                        }
                    }
                    Outcome::NoResponse => {
                        if let Some(key) = key {
                            state.metrics.request(key, started.elapsed(), len + 4, 0);
                        }
                    }
                    Outcome::Close(reason) => {
                        warn!(%peer, listener = %ctx.name, "closing connection: {reason}");
                        return Ok(());
                    }
                    Outcome::RespondAndClose(bytes, reason) => {
                        socket.write_all(&frame::size_prefix(bytes.len())).await?;
                        socket.write_all(&bytes).await?;
                        socket.flush().await?;
                        warn!(%peer, listener = %ctx.name, "closing connection: {reason}");
                        return Ok(());
                    }
                }
            }
            FrameCheck::Incomplete { needed } => {
                buf.reserve(needed.saturating_sub(buf.len()).min(max));
                let n = tokio::select! {
                    r = socket.read_buf(&mut buf) => r?,
                    // A SASL client has a bounded time to authenticate, so idle sockets
                    // cannot hold every connection slot.
                    _ = tokio::time::sleep_until(auth_deadline), if sasl.is_some() => {
                        warn!(%peer, listener = %ctx.name, "closing connection: not authenticated within {} s", SASL_AUTH_TIMEOUT.as_secs());
                        return Ok(());
                    }
                    _ = shutdown.changed() => return Ok(()),
                };
                if n == 0 {
                    return Ok(());
                }
            }
        }
    }
}

/// One request of a connection that has not authenticated yet: ApiVersions, SaslHandshake
/// and SaslAuthenticate are served, anything else closes the connection. Returns what to
/// send and, once authenticated, the principal.
/// One SASL round, off the async threads (PLAIN derives keys: thousands of HMACs).
async fn sasl_step(state: &BrokerState, session: &mut crate::security::sasl::Session, bytes: Vec<u8>) -> crate::security::sasl::Step {
    let mut s = std::mem::take(session);
    let image = state.image();
    match tokio::task::spawn_blocking(move || {
        let step = s.authenticate(&image, &bytes);
        (s, step)
    })
    .await
    {
        Ok((s, step)) => {
            *session = s;
            step
        }
        Err(e) => crate::security::sasl::Step::Failed(format!("the SASL check stopped: {e}")),
    }
}

async fn authenticate(state: &BrokerState, ctx: &ListenerCtx, session: &mut crate::security::sasl::Session, body: bytes::Bytes) -> (Outcome, Option<String>) {
    use crate::security::sasl::Step;
    use kafka_protocol::messages::{SaslAuthenticateResponse, SaslHandshakeResponse};
    let d = match api::decode(body) {
        Ok(d) => d,
        Err(outcome) => return (outcome, None),
    };
    let (key, v, cid) = (d.key, d.version, d.correlation_id);
    match d.request {
        api::Request::ApiVersions(_) => (api::api_versions(key, v, cid), None),
        api::Request::SaslHandshake(r) => {
            let mut resp = SaslHandshakeResponse::default();
            resp.mechanisms = ctx.security.mechanisms.iter().map(|m| api::sb(m.clone())).collect();
            if let Err(e) = session.handshake(r.mechanism.as_str(), &ctx.security.mechanisms) {
                resp.error_code = e.code();
                let why = format!("SASL mechanism {} refused ({e:?}); this listener offers {}", r.mechanism.as_str(), ctx.security.mechanisms.join(", "));
                return (Outcome::RespondAndClose(api::encode_bytes(key, v, cid, &resp), why), None);
            }
            session.raw = v == 0;
            (api::encode(key, v, cid, &resp), None)
        }
        api::Request::SaslAuthenticate(r) => {
            let mut resp = SaslAuthenticateResponse::default();
            if !session.handshaken() {
                resp.error_code = kafka_protocol::ResponseError::IllegalSaslState.code();
                resp.error_message = Some(api::sb("SaslAuthenticate before SaslHandshake"));
                return (Outcome::RespondAndClose(api::encode_bytes(key, v, cid, &resp), "SaslAuthenticate before SaslHandshake".into()), None);
            }
            match sasl_step(state, session, r.auth_bytes.to_vec()).await {
                Step::Continue(bytes) => {
                    resp.auth_bytes = bytes.into();
                    (api::encode(key, v, cid, &resp), None)
                }
                Step::Done(bytes, principal) => {
                    resp.auth_bytes = bytes.into();
                    (api::encode(key, v, cid, &resp), Some(principal))
                }
                Step::Failed(message) => {
                    resp.error_code = kafka_protocol::ResponseError::SaslAuthenticationFailed.code();
                    resp.error_message = Some(api::sb(message.clone()));
                    (Outcome::RespondAndClose(api::encode_bytes(key, v, cid, &resp), format!("SASL authentication failed: {message}")), None)
                }
            }
        }
        _ => (Outcome::Close(format!("{key:?} request before SASL authentication on listener {} (only ApiVersions, SaslHandshake and SaslAuthenticate are served until then)", ctx.name)), None),
    }
}

/// Applies every new metadata image to the local replicas: logs, roles, fetchers and the
/// group coordinator's partitions.
async fn follow_image(state: Arc<BrokerState>, fetchers: Arc<Fetchers>, mut shutdown: watch::Receiver<bool>) {
    let mut rx = state.controller.subscribe();
    loop {
        let image = rx.borrow_and_update().clone();
        let topics = state.topics.clone();
        let img = image.clone();
        let t = tokio::task::spawn_blocking(move || topics.apply_image(&img)).await.unwrap_or_else(|e| {
            tracing::error!("applying metadata failed: {e}");
            Default::default()
        });
        if !(t.leaders.is_empty() && t.followers.is_empty() && t.removed.is_empty()) {
            tracing::info!(now_leading = t.leaders.len(), now_following = t.followers.len(), removed = t.removed.len(), "applied metadata changes");
        }
        // One line per leadership change of a user topic's partition (internal topics' at debug).
        for (p, role) in t.leaders.iter().map(|p| (p, "leader")).chain(t.followers.iter().map(|p| (p, "follower"))) {
            let (epoch, leader) = {
                let r = p.replica.lock().expect("replica lock");
                (r.leader_epoch, r.leader)
            };
            if crate::topics::is_internal(&p.topic) {
                tracing::debug!(partition = %p.name(), leader, leader_epoch = epoch, "now {role}");
            } else {
                tracing::info!(partition = %p.name(), leader, leader_epoch = epoch, "now {role}");
            }
        }
        let count = image.topic(OFFSETS_TOPIC).map_or(0, |t| t.partitions.len() as i32);
        for p in t.leaders.iter().filter(|p| p.topic == OFFSETS_TOPIC) {
            state.groups.load_partition(p, count);
        }
        for p in t.followers.iter().chain(&t.removed).filter(|p| p.topic == OFFSETS_TOPIC) {
            state.groups.unload_partition(p.index);
        }
        let count = image.topic(TXN_TOPIC).map_or(0, |t| t.partitions.len() as i32);
        for p in t.leaders.iter().filter(|p| p.topic == TXN_TOPIC) {
            state.txns.load_partition(&state, p, count);
        }
        for p in t.followers.iter().chain(&t.removed).filter(|p| p.topic == TXN_TOPIC) {
            state.txns.unload_partition(p.index);
        }
        fetchers.refresh();
        state.topics.mark_reconciled(image.applied_index);
        tokio::select! {
            r = rx.changed() => if r.is_err() { return },
            _ = shutdown.changed() => return,
        }
    }
}

/// Leaders drop followers that stopped catching up from the ISR (through the controller).
async fn isr_checks(state: Arc<BrokerState>, mut shutdown: watch::Receiver<bool>) {
    let lag = state.config.ms("replica.lag.time.max.ms");
    let mut every = tokio::time::interval((lag / 4).clamp(Duration::from_millis(100), Duration::from_secs(2)));
    loop {
        tokio::select! {
            _ = every.tick() => {}
            _ = shutdown.changed() => return,
        }
        let now = std::time::Instant::now();
        for p in state.topics.all_partitions() {
            let shrink = p.replica.lock().expect("replica lock").shrink(now, lag);
            if let Some(isr) = shrink {
                tracing::warn!(partition = %p.name(), ?isr, "followers fell behind for more than replica.lag.time.max.ms; shrinking the ISR");
                state.propose_isr(&p, isr);
            }
        }
    }
}

/// Aborts transactions open past their timeout, at
/// `transaction.abort.timed.out.transaction.cleanup.interval.ms`.
async fn txn_expiry(state: Arc<BrokerState>, mut shutdown: watch::Receiver<bool>) {
    let mut every = tokio::time::interval(state.config.ms("transaction.abort.timed.out.transaction.cleanup.interval.ms"));
    loop {
        tokio::select! {
            _ = every.tick() => state.txns.expire(&state).await,
            _ = shutdown.changed() => return,
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
