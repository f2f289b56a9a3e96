//! What the client knows of the cluster: brokers, topics and partition leaders, learned
//! from Metadata requests, plus one pooled [`Connection`] per broker, and the group and
//! transaction coordinators (FindCoordinator, remembered by [`CachedCoordinator`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{FindCoordinatorRequest, MetadataRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::conn::Connection;
use crate::config::CommonConfig;
use crate::error::{check, Error, Result};

/// A broker as the cluster advertises it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerInfo {
    /// Node id.
    pub node_id: i32,
    /// Advertised host.
    pub host: String,
    /// Advertised port.
    pub port: i32,
    /// Rack, if configured.
    pub rack: Option<String>,
}

/// One partition's leadership, from Metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionInfo {
    /// Partition index.
    pub partition: i32,
    /// Leader node id, -1 when none.
    pub leader: i32,
    /// Leader epoch.
    pub leader_epoch: i32,
    /// Replica node ids.
    pub replicas: Vec<i32>,
    /// In-sync replica node ids.
    pub isr: Vec<i32>,
    /// Kafka error code for this partition (0: none).
    pub error_code: i16,
}

/// One topic, from Metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInfo {
    /// Topic name.
    pub name: String,
    /// Topic id.
    pub id: uuid::Uuid,
    /// Whether the topic is internal (`__consumer_offsets`, ...).
    pub internal: bool,
    /// Partitions, sorted by index.
    pub partitions: Vec<PartitionInfo>,
}

/// A snapshot of cluster metadata.
#[derive(Debug, Clone, Default)]
pub struct Metadata {
    /// Cluster id.
    pub cluster_id: Option<String>,
    /// Controller node id.
    pub controller: i32,
    /// Brokers by node id.
    pub brokers: BTreeMap<i32, BrokerInfo>,
    /// Known topics by name.
    pub topics: BTreeMap<String, TopicInfo>,
}

impl Metadata {
    /// Leader of a partition, when known.
    pub fn leader(&self, topic: &str, partition: i32) -> Option<i32> {
        let p = self.topics.get(topic)?.partitions.get(partition as usize)?;
        (p.leader >= 0).then_some(p.leader)
    }
}

/// The shared view of a cluster: metadata plus connections.
pub struct Cluster {
    config: CommonConfig,
    /// TLS and SASL, built once from `config`.
    transport: super::secure::Transport,
    metadata: RwLock<Arc<Metadata>>,
    refreshed: Mutex<Instant>,
    conns: Mutex<HashMap<i32, Arc<Connection>>>,
    bootstrap: Mutex<Option<Arc<Connection>>>,
}

pub(crate) fn sb(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

impl Cluster {
    /// Connects to the first bootstrap server that answers and loads the broker list.
    pub async fn connect(config: CommonConfig) -> Result<Arc<Cluster>> {
        let transport = config.security.transport()?;
        let cluster = Arc::new(Cluster {
            transport,
            config,
            metadata: RwLock::new(Arc::new(Metadata::default())),
            refreshed: Mutex::new(Instant::now()),
            conns: Mutex::new(HashMap::new()),
            bootstrap: Mutex::new(None),
        });
        cluster.refresh(Some(&[]), false).await?;
        Ok(cluster)
    }

    /// The client settings this cluster view was made with.
    pub fn config(&self) -> &CommonConfig {
        &self.config
    }

    /// The current metadata snapshot.
    pub fn metadata(&self) -> Arc<Metadata> {
        self.metadata.read().unwrap().clone()
    }

    /// Whether the snapshot is older than `metadata.max.age.ms`.
    pub fn is_stale(&self) -> bool {
        self.refreshed.lock().unwrap().elapsed() >= self.config.metadata_max_age
    }

    async fn connect_addr(&self, addr: &str) -> Result<Arc<Connection>> {
        Connection::connect_with(addr, &self.config.client_id, self.config.connect_timeout, self.config.request_timeout, &self.transport).await
    }

    /// A live connection to any broker: a pooled one, else a bootstrap server.
    pub async fn any(&self) -> Result<Arc<Connection>> {
        if let Some(c) = self.conns.lock().unwrap().values().find(|c| !c.is_closed()) {
            return Ok(c.clone());
        }
        if let Some(c) = self.bootstrap.lock().unwrap().as_ref().filter(|c| !c.is_closed()) {
            return Ok(c.clone());
        }
        let mut last = None;
        // Known brokers first (they may have moved on from the bootstrap list), then bootstrap.
        let known: Vec<String> = self.metadata().brokers.values().map(|b| format!("{}:{}", b.host, b.port)).collect();
        for addr in known.iter().chain(self.config.bootstrap_servers.iter()) {
            match self.connect_addr(addr).await {
                Ok(c) => {
                    *self.bootstrap.lock().unwrap() = Some(c.clone());
                    return Ok(c);
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| Error::Config("bootstrap.servers is empty".into())))
    }

    /// A live connection to broker `node_id`.
    pub async fn broker(&self, node_id: i32) -> Result<Arc<Connection>> {
        if let Some(c) = self.conns.lock().unwrap().get(&node_id).filter(|c| !c.is_closed()) {
            return Ok(c.clone());
        }
        let info = match self.metadata().brokers.get(&node_id) {
            Some(b) => b.clone(),
            None => {
                self.refresh(Some(&[]), false).await?;
                self.metadata()
                    .brokers
                    .get(&node_id)
                    .cloned()
                    .ok_or_else(|| Error::State(format!("broker {node_id} is not in the cluster metadata")))?
            }
        };
        let conn = self.connect_addr(&format!("{}:{}", info.host, info.port)).await?;
        let mut conns = self.conns.lock().unwrap();
        let entry = conns.entry(node_id).or_insert_with(|| conn.clone());
        if entry.is_closed() {
            *entry = conn;
        }
        Ok(entry.clone())
    }

    /// Forgets a broken connection so the next call reconnects.
    pub fn drop_connection(&self, node_id: i32) {
        self.conns.lock().unwrap().remove(&node_id);
    }

    /// Fetches metadata: `None` for every topic, `Some(&[])` for brokers only, or the
    /// named topics (merged into the snapshot). With `auto_create`, the broker may create
    /// missing topics if its `auto.create.topics.enable` allows.
    pub async fn refresh(&self, topics: Option<&[String]>, auto_create: bool) -> Result<Arc<Metadata>> {
        let conn = self.any().await?;
        let version = conn.version::<MetadataRequest>(4, 12)?;
        let req = MetadataRequest::default()
            .with_topics(topics.map(|ts| {
                ts.iter().map(|t| MetadataRequestTopic::default().with_name(Some(TopicName(sb(t))))).collect()
            }))
            .with_allow_auto_topic_creation(auto_create);
        let resp = match conn.send(&req, version).await {
            Ok(r) => r,
            Err(e) => {
                *self.bootstrap.lock().unwrap() = None;
                return Err(e);
            }
        };
        let mut md = (*self.metadata()).clone();
        md.cluster_id = resp.cluster_id.map(|s| s.to_string());
        md.controller = resp.controller_id.0;
        md.brokers = resp
            .brokers
            .into_iter()
            .map(|b| {
                (b.node_id.0, BrokerInfo { node_id: b.node_id.0, host: b.host.to_string(), port: b.port, rack: b.rack.map(|r| r.to_string()) })
            })
            .collect();
        if topics.is_none() {
            md.topics.clear();
        }
        for t in resp.topics {
            let Some(name) = t.name.map(|n| n.0.to_string()) else { continue };
            if t.error_code != 0 {
                // Missing topics drop out of the snapshot; leader-less ones keep their
                // partitions (with leader -1) so callers can wait for a new leader.
                if t.partitions.is_empty() {
                    md.topics.remove(&name);
                    continue;
                }
            }
            let mut partitions: Vec<PartitionInfo> = t
                .partitions
                .into_iter()
                .map(|p| PartitionInfo {
                    partition: p.partition_index,
                    leader: p.leader_id.0,
                    leader_epoch: p.leader_epoch,
                    replicas: p.replica_nodes.iter().map(|b| b.0).collect(),
                    isr: p.isr_nodes.iter().map(|b| b.0).collect(),
                    error_code: p.error_code,
                })
                .collect();
            partitions.sort_by_key(|p| p.partition);
            md.topics.insert(name.clone(), TopicInfo { name, id: t.topic_id, internal: t.is_internal, partitions });
        }
        let md = Arc::new(md);
        *self.metadata.write().unwrap() = md.clone();
        *self.refreshed.lock().unwrap() = Instant::now();
        Ok(md)
    }

    /// Metadata for one topic, refreshing when it is not known yet. `None` when the
    /// broker says it does not exist.
    pub async fn topic(&self, name: &str, auto_create: bool) -> Result<Option<TopicInfo>> {
        if let Some(t) = self.metadata().topics.get(name) {
            return Ok(Some(t.clone()));
        }
        let md = self.refresh(Some(&[name.to_string()]), auto_create).await?;
        Ok(md.topics.get(name).cloned())
    }

    /// Finds the coordinator for a group (`key_type` 0) or transactional id (1).
    pub async fn coordinator(&self, key: &str, key_type: i8) -> Result<(i32, Arc<Connection>)> {
        let conn = self.any().await?;
        let version = conn.version::<FindCoordinatorRequest>(FIND_COORDINATOR.0, FIND_COORDINATOR.1)?;
        let resp = conn.send(&find_coordinator_request(key, key_type, version), version).await?;
        let (node, host, port) = if version >= 4 {
            // v4 batches keys (KIP-699): one answer per key asked.
            let c = resp.coordinators.into_iter().find(|c| *c.key == *key).ok_or_else(|| Error::Protocol {
                addr: conn.addr().to_string(),
                reason: format!("FindCoordinator response has no answer for `{key}`"),
            })?;
            check(c.error_code, c.error_message.as_ref(), || format!("find the coordinator for `{key}`"))?;
            (c.node_id.0, c.host, c.port)
        } else {
            check(resp.error_code, resp.error_message.as_ref(), || format!("find the coordinator for `{key}`"))?;
            (resp.node_id.0, resp.host, resp.port)
        };
        let known = self.metadata().brokers.contains_key(&node);
        if !known {
            let mut md = (*self.metadata()).clone();
            md.brokers.insert(node, BrokerInfo { node_id: node, host: host.to_string(), port, rack: None });
            *self.metadata.write().unwrap() = Arc::new(md);
        }
        Ok((node, self.broker(node).await?))
    }
}

/// FindCoordinator versions: v1 adds the key type (transactions); v4 batches keys.
pub(crate) const FIND_COORDINATOR: (i16, i16) = (1, 4);

/// The FindCoordinator request for one key, at `version`.
pub(crate) fn find_coordinator_request(key: &str, key_type: i8, version: i16) -> FindCoordinatorRequest {
    let req = FindCoordinatorRequest::default().with_key_type(key_type);
    if version >= 4 {
        req.with_coordinator_keys(vec![sb(key)])
    } else {
        req.with_key(sb(key))
    }
}

/// A group or transaction coordinator, found once and remembered until an error says it
/// moved (NOT_COORDINATOR, COORDINATOR_NOT_AVAILABLE, a lost connection).
#[derive(Debug)]
pub struct CachedCoordinator {
    key_type: i8,
    node: Mutex<Option<i32>>,
}

impl CachedCoordinator {
    /// A cache for group (`key_type` 0) or transaction (1) coordinators.
    pub fn new(key_type: i8) -> CachedCoordinator {
        CachedCoordinator { key_type, node: Mutex::new(None) }
    }

    /// A connection to the coordinator of `key`, finding it when not known.
    pub async fn connection(&self, cluster: &Cluster, key: &str) -> Result<Arc<Connection>> {
        let cached = *self.node.lock().unwrap();
        if let Some(node) = cached {
            match cluster.broker(node).await {
                Ok(c) => return Ok(c),
                Err(_) => *self.node.lock().unwrap() = None,
            }
        }
        let (node, conn) = cluster.coordinator(key, self.key_type).await?;
        *self.node.lock().unwrap() = Some(node);
        Ok(conn)
    }

    /// Forgets the coordinator when `e` says it moved or went away.
    pub fn on_error(&self, e: &Error) {
        let moved = match e {
            Error::Broker { error, .. } => matches!(error, ResponseError::NotCoordinator | ResponseError::CoordinatorNotAvailable),
            Error::Disconnected { .. } | Error::Connect { .. } | Error::Timeout { .. } => true,
            _ => false,
        };
        if moved {
            *self.node.lock().unwrap() = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;
    use kafka_protocol::protocol::Encodable;

    use super::*;

    #[test]
    fn find_coordinator_encodes_at_every_allowed_version() {
        for v in FIND_COORDINATOR.0..=FIND_COORDINATOR.1 {
            for key_type in [0, 1] {
                find_coordinator_request("tx", key_type, v).encode(&mut BytesMut::new(), v).unwrap();
            }
        }
    }
}
