//! Cluster metadata on a Raft quorum (DESIGN §5), as KRaft does it: every write is a
//! [`Command`] appended to a replicated log (openraft), every node applies the log to the
//! same [`Image`], and brokers act on the image they have applied.
//!
//! ```text
//!  handlers ──propose──> Controller ──client_write──> openraft ──> LogStore (fsync)
//!     ^                     │  (not leader: forward over rpc)          │ commit
//!     │                     v                                          v
//!     └──── image watch <── StateMachine::apply (Image::apply, pure) <─┘
//! ```
//!
//! The active controller (the Raft leader) also keeps broker liveness: brokers heartbeat
//! to it; one silent for `broker.session.timeout.ms` is fenced, which moves its
//! leaderships to other in-sync replicas. A single node without `--voters` runs the same
//! code with a quorum of one.

pub mod image;
pub mod rpc;
pub mod store;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Cursor;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kafka_protocol::ResponseError;
use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, Raft, ServerState};
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use image::{BrokerInfo, Command, Image, Outcome, PartitionInfo, TopicInfo};
use rpc::{Heartbeat, Peer, ProposeError, Request, Response};

use crate::topics::ApiError;
use crate::{Error, Result};

openraft::declare_raft_types!(
    /// openraft's types for the metadata log.
    pub TypeConfig: D = Command, R = Outcome
);

/// How long a metadata write may wait for a quorum before the client gets an error.
const PROPOSE_TIMEOUT: Duration = Duration::from_secs(10);
/// Time allowed for one controller RPC.
const RPC_TIMEOUT: Duration = Duration::from_secs(3);

/// A state-machine rejection as the Kafka error the client gets; other outcomes pass.
pub fn into_result(outcome: Outcome) -> std::result::Result<Outcome, ApiError> {
    match outcome {
        Outcome::Rejected { code, message } => Err(ApiError::new(ResponseError::try_from_code(code).unwrap_or(ResponseError::UnknownServerError), message)),
        other => Ok(other),
    }
}

/// How the controller of this node runs.
pub struct ControllerOptions {
    /// This node's id (broker id and Raft node id).
    pub node_id: i32,
    /// The quorum: node id -> controller address. Empty for a single node.
    pub voters: BTreeMap<i32, String>,
    /// Bound controller listener (cluster mode).
    pub listener: Option<TcpListener>,
    /// Mutual TLS on the controller port (`controller.ssl.enabled`).
    pub tls: Option<rpc::RpcTls>,
    /// Host and port Kafka clients reach this broker on (registered in the image).
    pub advertised: (String, i32),
    /// Every client listener of this broker (registered in the image).
    pub endpoints: Vec<image::Endpoint>,
    /// How often brokers heartbeat (`broker.heartbeat.interval.ms`).
    pub heartbeat_interval: Duration,
    /// Silence after which a broker is fenced (`broker.session.timeout.ms`).
    pub session_timeout: Duration,
    /// How often the active controller moves leadership back to preferred replicas.
    pub leader_imbalance_interval: Duration,
}

/// This node's view of, and access to, the metadata quorum.
pub struct Controller {
    node_id: i32,
    raft: Raft<TypeConfig>,
    voters: BTreeMap<i32, String>,
    image: watch::Receiver<Arc<Image>>,
    advertised: (String, i32),
    endpoints: Vec<image::Endpoint>,
    /// TLS for calls to other controllers.
    rpc_tls: Option<Arc<rustls::ClientConfig>>,
    session_timeout: Duration,
    /// Active-controller state: when each broker was last heard from.
    seen: Mutex<HashMap<i32, Instant>>,
    /// Brokers that announced a controlled shutdown (never unfenced while it lasts).
    leaving: Mutex<HashSet<i32>>,
    /// Broker registrations being proposed, so heartbeats do not pile them up.
    registering: Mutex<HashSet<i32>>,
    shutting_down: std::sync::atomic::AtomicBool,
}

impl Controller {
    /// Opens the Raft log in `<data>/raft`, starts the Raft node, serves the controller
    /// port (cluster mode) and starts heartbeats and active-controller duties.
    pub async fn start(data_dir: &Path, opts: ControllerOptions, shutdown: watch::Receiver<bool>) -> Result<Arc<Self>> {
        let dir = data_dir.join("raft");
        let dir_err = |e: std::io::Error| Error::DataDir { path: dir.clone(), source: e };
        let log = store::LogStore::open(&dir).map_err(dir_err)?;
        let sm = store::StateMachine::open(&dir).map_err(dir_err)?;
        let image = sm.subscribe();
        let single = opts.voters.is_empty();
        let config = openraft::Config {
            cluster_name: "samsa".into(),
            heartbeat_interval: 100,
            election_timeout_min: if single { 150 } else { 600 },
            election_timeout_max: if single { 300 } else { 1200 },
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(2000),
            max_in_snapshot_log_to_keep: 500,
            ..Default::default()
        }
        .validate()
        .map_err(|e| Error::Config(format!("raft config: {e}")))?;
        let id = opts.node_id as u64;
        let raft = Raft::new(id, Arc::new(config), rpc::Network(opts.tls.as_ref().map(|t| t.client.clone())), log, sm)
            .await
            .map_err(|e| Error::Config(format!("cannot start the metadata quorum: {e}")))?;
        let members: BTreeMap<u64, BasicNode> = if single {
            [(id, BasicNode::new(""))].into()
        } else {
            opts.voters.iter().map(|(n, a)| (*n as u64, BasicNode::new(a.clone()))).collect()
        };
        // Only the lowest-numbered voter initializes the quorum, once (on an empty log).
        // openraft 0.9 panics when several nodes
        // initialize and elect themselves at the same instant; the others simply wait for
        // its first vote request, so start order still does not matter.
        let initialized = raft.is_initialized().await.unwrap_or(true);
        if !initialized && opts.voters.keys().next().is_none_or(|first| *first == opts.node_id) {
            if let Err(e) = raft.initialize(members).await {
                tracing::debug!("raft initialize: {e}");
            }
        }
        let controller = Arc::new(Self {
            node_id: opts.node_id,
            raft,
            voters: opts.voters,
            image,
            advertised: opts.advertised,
            endpoints: opts.endpoints,
            rpc_tls: opts.tls.as_ref().map(|t| t.client.clone()),
            session_timeout: opts.session_timeout,
            seen: Mutex::new(HashMap::new()),
            leaving: Mutex::new(HashSet::new()),
            registering: Mutex::new(HashSet::new()),
            shutting_down: false.into(),
        });
        if let Some(listener) = opts.listener {
            tokio::spawn(rpc::serve(listener, controller.clone(), opts.tls.as_ref().map(|t| t.server.clone()), shutdown.clone()));
        }
        tokio::spawn(controller.clone().heartbeat_loop(opts.heartbeat_interval, shutdown.clone()));
        tokio::spawn(controller.clone().duties_loop(opts.leader_imbalance_interval, shutdown));
        Ok(controller)
    }

    /// The latest applied metadata image.
    pub fn image(&self) -> Arc<Image> {
        self.image.borrow().clone()
    }

    /// A receiver that sees every new image.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Image>> {
        self.image.clone()
    }

    /// The active controller's node id, if one is known.
    pub fn leader_id(&self) -> Option<i32> {
        self.raft.metrics().borrow().current_leader.map(|n| n as i32)
    }

    /// Whether this node is the active controller.
    pub fn is_leader(&self) -> bool {
        let m = self.raft.metrics().borrow().clone();
        m.state == ServerState::Leader && m.current_leader == Some(self.node_id as u64)
    }

    /// Whether the quorum has a single voter (no `--voters`).
    pub fn is_single_node(&self) -> bool {
        self.voters.is_empty()
    }

    fn controller_addr(&self, node: i32) -> Option<&String> {
        self.voters.get(&node)
    }

    /// Commits `cmd` through the quorum (forwarding to the active controller when this
    /// node is not it) and waits until this node has applied it, so the caller reads its
    /// own write. A rejection by the state machine comes back as an [`ApiError`].
    pub async fn propose(&self, cmd: Command) -> std::result::Result<Outcome, ApiError> {
        let deadline = Instant::now() + PROPOSE_TIMEOUT;
        let mut peers: HashMap<i32, Peer> = HashMap::new();
        let mut last_problem;
        loop {
            let attempt: std::result::Result<(u64, Outcome), ProposeError> = match self.raft.client_write(cmd.clone()).await {
                Ok(r) => Ok((r.log_id.index, r.data)),
                Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => match f.leader_id.map(|n| n as i32) {
                    Some(leader) if leader != self.node_id => match self.controller_addr(leader) {
                        Some(addr) => {
                            let peer = peers.entry(leader).or_insert_with(|| Peer::new(addr.clone(), self.rpc_tls.clone()));
                            match peer.call(&Request::Propose(cmd.clone()), RPC_TIMEOUT).await {
                                Ok(Response::Propose(r)) => r,
                                Ok(_) => Err(ProposeError::Failed("controller answered with the wrong message".into())),
                                Err(e) => Err(ProposeError::Failed(format!("controller {leader} at {addr}: {e}"))),
                            }
                        }
                        None => Err(ProposeError::Failed(format!("node {leader} leads the quorum but is not in --voters"))),
                    },
                    _ => Err(ProposeError::NotLeader(None)),
                },
                Err(e) => Err(ProposeError::Failed(e.to_string())),
            };
            match attempt {
                Ok((index, outcome)) => {
                    self.wait_applied(index, deadline).await?;
                    return into_result(outcome);
                }
                Err(ProposeError::NotLeader(_)) => last_problem = "no active controller was elected".into(),
                Err(ProposeError::Failed(m)) => last_problem = m,
            }
            if Instant::now() >= deadline {
                return Err(ApiError::new(
                    ResponseError::RequestTimedOut,
                    format!("the metadata quorum did not accept the change within {PROPOSE_TIMEOUT:?} ({last_problem}); check that a majority of --voters is running"),
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Commits `cmd` only if this node is still the active controller (no forwarding):
    /// for the controller's own duties, which a deposed controller that has not noticed
    /// yet (after a long pause) must not push through the real one.
    async fn propose_as_controller(&self, cmd: Command) -> std::result::Result<Outcome, ApiError> {
        let deadline = Instant::now() + PROPOSE_TIMEOUT;
        match tokio::time::timeout(PROPOSE_TIMEOUT, self.raft.client_write(cmd)).await {
            Ok(Ok(r)) => {
                self.wait_applied(r.log_id.index, deadline).await?;
                into_result(r.data)
            }
            Ok(Err(e)) => Err(ApiError::new(ResponseError::NotController, format!("no longer the active controller: {e}"))),
            Err(_) => Err(ApiError::new(ResponseError::RequestTimedOut, "the quorum did not commit the controller's change in time")),
        }
    }

    async fn wait_applied(&self, index: u64, deadline: Instant) -> std::result::Result<(), ApiError> {
        let mut rx = self.image.clone();
        let applied = tokio::time::timeout_at(deadline.into(), async move { rx.wait_for(|img| img.applied_index >= index).await.is_ok() }).await;
        match applied {
            Ok(true) => Ok(()),
            _ => Err(ApiError::new(ResponseError::RequestTimedOut, format!("metadata change {index} was committed but not applied on this node in time"))),
        }
    }

    /// Answers one request on the controller port.
    pub async fn handle_rpc(self: &Arc<Self>, req: Request) -> Response {
        match req {
            Request::Append(r) => Response::Append(self.raft.append_entries(r).await),
            Request::Vote(r) => Response::Vote(self.raft.vote(r).await),
            Request::Snapshot(r) => Response::Snapshot(self.raft.install_snapshot(r).await),
            Request::Propose(cmd) => Response::Propose(match self.raft.client_write(cmd).await {
                Ok(r) => Ok((r.log_id.index, r.data)),
                Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => Err(ProposeError::NotLeader(f.leader_id)),
                Err(e) => Err(ProposeError::Failed(e.to_string())),
            }),
            Request::Heartbeat(hb) => Response::Heartbeat(self.on_heartbeat(hb)),
        }
    }

    /// Active-controller side of a heartbeat: notes the broker alive and (re)registers it
    /// when it is unknown, fenced or moved. Returns false when this node is not active.
    fn on_heartbeat(self: &Arc<Self>, hb: Heartbeat) -> bool {
        if !self.is_leader() {
            return false;
        }
        self.seen.lock().expect("seen lock").insert(hb.id, Instant::now());
        {
            let mut leaving = self.leaving.lock().expect("leaving lock");
            if hb.shutting_down {
                leaving.insert(hb.id);
                return true;
            }
            leaving.remove(&hb.id);
        }
        let image = self.image();
        let current = image.brokers.get(&hb.id);
        let needs = current.is_none_or(|b| b.fenced || b.host != hb.host || b.port != hb.port || b.endpoints != hb.endpoints);
        if needs && self.registering.lock().expect("registering lock").insert(hb.id) {
            let this = self.clone();
            tokio::spawn(async move {
                let id = hb.id;
                match this.propose_as_controller(Command::RegisterBroker { id, host: hb.host, port: hb.port, endpoints: hb.endpoints }).await {
                    Ok(_) => tracing::info!(broker = id, "broker registered"),
                    Err(e) => tracing::warn!(broker = id, "cannot register broker: {}", e.message),
                }
                this.registering.lock().expect("registering lock").remove(&id);
            });
        }
        true
    }

    /// Marks this broker as leaving: heartbeats say so, and the controller moves its
    /// leaderships away (controlled shutdown). Waits until it leads nothing, bounded.
    pub async fn controlled_shutdown(&self, timeout: Duration) {
        self.shutting_down.store(true, std::sync::atomic::Ordering::SeqCst);
        if self.image().brokers.len() < 2 {
            return; // nobody to hand leadership to
        }
        match tokio::time::timeout(timeout, self.propose(Command::FenceBroker { id: self.node_id })).await {
            Ok(Ok(_)) => tracing::info!("controlled shutdown: leadership moved to other brokers"),
            Ok(Err(e)) => tracing::warn!("controlled shutdown incomplete: {}", e.message),
            Err(_) => tracing::warn!("controlled shutdown timed out after {timeout:?}"),
        }
    }

    /// Stops the Raft node.
    pub async fn shutdown(&self) {
        let _ = self.raft.shutdown().await;
    }

    async fn heartbeat_loop(self: Arc<Self>, every: Duration, mut shutdown: watch::Receiver<bool>) {
        let mut peers: HashMap<i32, Peer> = HashMap::new();
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => return,
            }
            let hb = Heartbeat {
                id: self.node_id,
                host: self.advertised.0.clone(),
                port: self.advertised.1,
                endpoints: self.endpoints.clone(),
                shutting_down: self.shutting_down.load(std::sync::atomic::Ordering::SeqCst),
            };
            let Some(leader) = self.leader_id() else { continue };
            if leader == self.node_id {
                self.on_heartbeat(hb);
                continue;
            }
            let Some(addr) = self.controller_addr(leader).cloned() else { continue };
            let peer = peers.entry(leader).or_insert_with(|| Peer::new(addr.clone(), self.rpc_tls.clone()));
            if let Err(e) = peer.call(&Request::Heartbeat(hb), every.max(Duration::from_millis(500))).await {
                tracing::debug!(controller = leader, "heartbeat failed: {e}");
            }
        }
    }

    /// While this node is the active controller: fence brokers whose heartbeats stopped and
    /// move leadership back to preferred replicas.
    async fn duties_loop(self: Arc<Self>, imbalance_every: Duration, mut shutdown: watch::Receiver<bool>) {
        let every = Duration::from_millis(200);
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut leader_term: Option<u64> = None;
        let mut next_balance = Instant::now() + imbalance_every;
        loop {
            let waiting_since = Instant::now();
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => return,
            }
            // A gap far longer than the tick means this process was paused (SIGSTOP, a
            // long GC-like stall): the heartbeat times it holds are stale, and so may be
            // its belief that it leads. Start over as if newly elected.
            let paused = waiting_since.elapsed() > every * 5;
            if paused || !self.is_leader() {
                leader_term = None;
                continue;
            }
            let term = self.raft.metrics().borrow().current_term;
            let image = self.image();
            let now = Instant::now();
            if leader_term != Some(term) {
                // A new active controller gives every broker a full session to check in.
                leader_term = Some(term);
                let mut seen = self.seen.lock().expect("seen lock");
                for id in image.brokers.keys() {
                    seen.insert(*id, now);
                }
                continue;
            }
            let expired: Vec<i32> = {
                let seen = self.seen.lock().expect("seen lock");
                let leaving = self.leaving.lock().expect("leaving lock");
                image
                    .brokers
                    .values()
                    .filter(|b| !b.fenced)
                    .filter(|b| leaving.contains(&b.id) || seen.get(&b.id).is_none_or(|t| now.duration_since(*t) > self.session_timeout))
                    .map(|b| b.id)
                    .collect()
            };
            for id in expired {
                let why = if self.leaving.lock().expect("leaving lock").contains(&id) { "controlled shutdown" } else { "heartbeats stopped" };
                tracing::warn!(broker = id, "fencing broker: {why}");
                if let Err(e) = self.propose_as_controller(Command::FenceBroker { id }).await {
                    tracing::warn!(broker = id, "cannot fence broker: {}", e.message);
                }
            }
            if now >= next_balance {
                next_balance = now + imbalance_every;
                for (topic, partition) in image.preferred_elections() {
                    match self.propose_as_controller(Command::ElectPreferred { topic: topic.clone(), partition }).await {
                        Ok(_) => tracing::info!(%topic, partition, "moved leadership back to the preferred replica"),
                        Err(e) => tracing::debug!(%topic, partition, "preferred election skipped: {}", e.message),
                    }
                }
            }
        }
    }
}
