//! The controller RPC on `--controller-listen`: Raft messages between the voters, and the
//! broker-to-controller calls (heartbeats, forwarded metadata writes).
//!
//! Frames are a 4-byte big-endian length and a JSON body; one request, then one response,
//! per connection at a time. Only voters and brokers of the cluster talk here; Kafka
//! clients never do.

use std::sync::Arc;
use std::time::Duration;

use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest, VoteResponse};
use openraft::BasicNode;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::image::{Command, Outcome};
use super::{Controller, TypeConfig};

type NodeId = u64;

/// Largest frame accepted (snapshots of big clusters are the largest messages).
const MAX_FRAME_BYTES: usize = 256 << 20;

/// A broker's periodic liveness report to the active controller.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Heartbeat {
    /// Broker id.
    pub id: i32,
    /// Host Kafka clients reach it on.
    pub host: String,
    /// Port Kafka clients reach it on.
    pub port: i32,
    /// Every client listener.
    #[serde(default)]
    pub endpoints: Vec<crate::meta::image::Endpoint>,
    /// Set during controlled shutdown: do not unfence.
    pub shutting_down: bool,
}

/// Why a forwarded proposal failed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ProposeError {
    /// The receiver is not the Raft leader; it may know who is.
    NotLeader(Option<NodeId>),
    /// The proposal could not be committed.
    Failed(String),
}

/// A request on the controller port.
#[derive(Serialize, Deserialize)]
#[allow(clippy::large_enum_variant)]
pub enum Request {
    /// Raft AppendEntries.
    Append(AppendEntriesRequest<TypeConfig>),
    /// Raft RequestVote.
    Vote(VoteRequest<NodeId>),
    /// Raft InstallSnapshot (one chunk).
    Snapshot(InstallSnapshotRequest<TypeConfig>),
    /// A metadata write forwarded to the Raft leader.
    Propose(Command),
    /// A broker heartbeat.
    Heartbeat(Heartbeat),
}

/// The answer to a [`Request`].
#[derive(Serialize, Deserialize)]
pub enum Response {
    /// Raft AppendEntries.
    Append(Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    /// Raft RequestVote.
    Vote(Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    /// Raft InstallSnapshot.
    Snapshot(Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>),
    /// The committed log index and the outcome of a forwarded write.
    Propose(Result<(u64, Outcome), ProposeError>),
    /// Heartbeat accepted (`false`: the receiver is not the active controller).
    Heartbeat(bool),
}

/// Mutual TLS for the controller port (`controller.ssl.enabled`): every node presents its
/// certificate and checks the peer's against `ssl.ca.location`.
#[derive(Clone)]
pub struct RpcTls {
    /// The accepting side (client certificates required).
    pub server: Arc<rustls::ServerConfig>,
    /// The connecting side (with this node's certificate).
    pub client: Arc<rustls::ClientConfig>,
}

/// A plain or TLS stream.
trait Stream: AsyncRead + AsyncWrite + Unpin + Send + Sync {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + Sync> Stream for T {}

async fn write_frame<T: Serialize>(s: &mut (impl AsyncWrite + Unpin), msg: &T) -> std::io::Result<()> {
    let body = serde_json::to_vec(msg).map_err(std::io::Error::other)?;
    let mut buf = Vec::with_capacity(body.len() + 4);
    buf.extend_from_slice(&(body.len() as u32).to_be_bytes());
    buf.extend_from_slice(&body);
    s.write_all(&buf).await?;
    s.flush().await
}

async fn read_frame<T: for<'de> Deserialize<'de>>(s: &mut (impl AsyncRead + Unpin)) -> std::io::Result<T> {
    let len = s.read_u32().await? as usize;
    if len > MAX_FRAME_BYTES {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, format!("controller frame of {len} bytes exceeds {MAX_FRAME_BYTES}")));
    }
    let mut body = vec![0; len];
    s.read_exact(&mut body).await?;
    serde_json::from_slice(&body).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

/// A connection to one peer's controller port, reconnected on demand.
pub struct Peer {
    addr: String,
    conn: Option<Box<dyn Stream>>,
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl Peer {
    /// A peer at `addr` (nothing is connected yet).
    pub fn new(addr: impl Into<String>, tls: Option<Arc<rustls::ClientConfig>>) -> Self {
        Self { addr: addr.into(), conn: None, tls }
    }

    async fn open(&self) -> std::io::Result<Box<dyn Stream>> {
        let s = TcpStream::connect(&self.addr).await?;
        let _ = s.set_nodelay(true);
        let Some(tls) = &self.tls else { return Ok(Box::new(s)) };
        let host = self.addr.rsplit_once(':').map_or(self.addr.as_str(), |(h, _)| h).trim_matches(['[', ']']);
        let name = rustls::pki_types::ServerName::try_from(host.to_string()).map_err(std::io::Error::other)?;
        Ok(Box::new(tokio_rustls::TlsConnector::from(tls.clone()).connect(name, s).await?))
    }

    /// Sends one request and waits for its response within `timeout`.
    pub async fn call(&mut self, req: &Request, timeout: Duration) -> std::io::Result<Response> {
        let result = tokio::time::timeout(timeout, async {
            if self.conn.is_none() {
                self.conn = Some(self.open().await?);
            }
            let s = self.conn.as_mut().expect("connected");
            write_frame(s, req).await?;
            read_frame(s).await
        })
        .await
        .unwrap_or_else(|_| Err(std::io::Error::new(std::io::ErrorKind::TimedOut, format!("controller {} did not answer within {timeout:?}", self.addr))));
        if result.is_err() {
            self.conn = None; // a half-used connection cannot be trusted
        }
        result
    }
}

/// Creates [`Peer`]s for openraft.
pub struct Network(pub Option<Arc<rustls::ClientConfig>>);

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Peer;

    async fn new_client(&mut self, _target: NodeId, node: &BasicNode) -> Peer {
        Peer::new(node.addr.clone(), self.0.clone())
    }
}

fn unreachable<E: std::error::Error>(e: std::io::Error) -> RPCError<NodeId, BasicNode, E> {
    if e.kind() == std::io::ErrorKind::ConnectionRefused || e.kind() == std::io::ErrorKind::TimedOut {
        RPCError::Unreachable(Unreachable::new(&e))
    } else {
        RPCError::Network(NetworkError::new(&e))
    }
}

fn wrong_reply<E: std::error::Error>() -> RPCError<NodeId, BasicNode, E> {
    RPCError::Network(NetworkError::new(&std::io::Error::other("peer answered with the wrong message type")))
}

impl RaftNetwork<TypeConfig> for Peer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        match self.call(&Request::Append(rpc), option.hard_ttl()).await.map_err(unreachable)? {
            Response::Append(r) => r.map_err(|e| RPCError::RemoteError(RemoteError::new(0, e))),
            _ => Err(wrong_reply()),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>> {
        match self.call(&Request::Snapshot(rpc), option.hard_ttl()).await.map_err(unreachable)? {
            Response::Snapshot(r) => r.map_err(|e| RPCError::RemoteError(RemoteError::new(0, e))),
            _ => Err(wrong_reply()),
        }
    }

    async fn vote(&mut self, rpc: VoteRequest<NodeId>, option: RPCOption) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        match self.call(&Request::Vote(rpc), option.hard_ttl()).await.map_err(unreachable)? {
            Response::Vote(r) => r.map_err(|e| RPCError::RemoteError(RemoteError::new(0, e))),
            _ => Err(wrong_reply()),
        }
    }
}

/// Serves the controller port until `shutdown` flips.
pub async fn serve(listener: TcpListener, controller: Arc<Controller>, tls: Option<Arc<rustls::ServerConfig>>, mut shutdown: watch::Receiver<bool>) {
    loop {
        let (socket, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!("controller accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        let controller = controller.clone();
        let mut shutdown = shutdown.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let _ = socket.set_nodelay(true);
            let mut socket: Box<dyn Stream> = match tls {
                None => Box::new(socket),
                Some(cfg) => match tokio::time::timeout(Duration::from_secs(10), tokio_rustls::TlsAcceptor::from(cfg).accept(socket)).await {
                    Ok(Ok(s)) => Box::new(s),
                    Ok(Err(e)) => {
                        tracing::warn!(%peer, "controller TLS handshake failed: {e}");
                        return;
                    }
                    Err(_) => {
                        tracing::warn!(%peer, "controller TLS handshake did not finish within 10 s");
                        return;
                    }
                },
            };
            loop {
                let req: Request = tokio::select! {
                    r = read_frame(&mut socket) => match r {
                        Ok(r) => r,
                        Err(e) => {
                            if e.kind() != std::io::ErrorKind::UnexpectedEof {
                                tracing::debug!(%peer, "controller connection ended: {e}");
                            }
                            return;
                        }
                    },
                    _ = shutdown.changed() => return,
                };
                let resp = controller.handle_rpc(req).await;
                if write_frame(&mut socket, &resp).await.is_err() {
                    return;
                }
            }
        });
    }
}
