//! Transaction coordinator (KIP-98, DESIGN §8): the broker that leads a transactional
//! id's partition of `__transaction_state` (partition = abs(Java hashCode) mod N, as Kafka
//! places them) coordinates it.
//!
//! Every state change is written to that compacted, replicated partition and acknowledged
//! only once the in-sync replicas have it. Ending a transaction writes PrepareCommit or
//! PrepareAbort, answers the producer, then writes a marker (a control batch) to every
//! partition of the transaction through its leader (WriteTxnMarkers), then
//! CompleteCommit/CompleteAbort. A coordinator that takes over a partition replays it
//! and finishes every prepared transaction, so a crash between the answer and the
//! markers never leaves a transaction half-visible. Transactions open past their timeout
//! are aborted with the producer's epoch bumped (which fences it).

pub mod state;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::write_txn_markers_request::{WritableTxnMarker, WritableTxnMarkerTopic};
use kafka_protocol::messages::{TopicName, WriteTxnMarkersRequest};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{Compression, RecordBatchDecoder};
use kafka_protocol::ResponseError;
use samsa_client::net::Connection;
use samsa_client::wire::batch::encode_plain;

pub use state::{InitDecision, TxnMeta, TxnState};

use crate::group::offsets_partition;
use crate::log::{Marker, MarkerAppendError};
use crate::now_ms;
use crate::server::BrokerState;
use crate::topics::{Partition, TopicManager, OFFSETS_TOPIC, TXN_TOPIC};

/// How long a state write waits for the in-sync replicas.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause between marker attempts while a partition has no reachable leader.
const MARKER_BACKOFF: Duration = Duration::from_millis(200);

/// A `__transaction_state` partition this broker leads and has loaded.
struct Loaded {
    count: i32,
    partition: Arc<Partition>,
    /// The partition's leader epoch when loaded: markers carry it so that partition
    /// leaders refuse a deposed coordinator's.
    coordinator_epoch: i32,
}

/// The transaction coordinator of this broker.
pub struct TxnCoordinator {
    topics: Arc<TopicManager>,
    loaded: Mutex<HashMap<i32, Loaded>>,
    txns: Mutex<HashMap<String, TxnMeta>>,
    /// Transactional ids with a state write in progress (others get CONCURRENT_TRANSACTIONS).
    busy: Mutex<HashSet<String>>,
    /// Transactional ids whose markers a task is writing.
    completing: Mutex<HashSet<String>>,
    /// Connections to other brokers for WriteTxnMarkers.
    conns: tokio::sync::Mutex<HashMap<i32, Arc<Connection>>>,
}

/// Key of a transactional id's record: Kafka's TransactionLogKey v0 (version, id).
fn txn_key(id: &str) -> Bytes {
    let mut b = BytesMut::with_capacity(4 + id.len());
    b.put_i16(0);
    b.put_i16(id.len() as i16);
    b.put_slice(id.as_bytes());
    b.freeze()
}

fn decode_txn_key(k: &[u8]) -> Option<String> {
    if k.len() < 4 {
        return None;
    }
    let n = i16::from_be_bytes([k[2], k[3]]);
    let body = k.get(4..4 + usize::try_from(n).ok()?)?;
    String::from_utf8(body.to_vec()).ok()
}

/// Releases a transactional id's write claim when dropped, so every exit path frees it.
struct Claim<'a> {
    coordinator: &'a TxnCoordinator,
    id: String,
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        self.coordinator.busy.lock().expect("busy lock").remove(&self.id);
    }
}

impl TxnCoordinator {
    /// A coordinator that serves no transactional id until it leads `__transaction_state`
    /// partitions.
    pub fn new(topics: Arc<TopicManager>) -> Self {
        Self {
            topics,
            loaded: Mutex::new(HashMap::new()),
            txns: Mutex::new(HashMap::new()),
            busy: Mutex::new(HashSet::new()),
            completing: Mutex::new(HashSet::new()),
            conns: tokio::sync::Mutex::new(HashMap::new()),
        }
    }

    fn partition_count(&self) -> i32 {
        let loaded = self.loaded.lock().expect("loaded lock");
        loaded.values().next().map_or(self.topics.config().int("transaction.state.log.num.partitions") as i32, |l| l.count)
    }

    /// The partition holding `id` and the coordinator epoch, if this broker coordinates it.
    fn owner(&self, id: &str) -> Result<(Arc<Partition>, i32), ResponseError> {
        if id.is_empty() {
            return Err(ResponseError::InvalidRequest);
        }
        let index = offsets_partition(id, self.partition_count());
        let loaded = self.loaded.lock().expect("loaded lock");
        match loaded.get(&index) {
            Some(l) if l.partition.replica.lock().expect("replica lock").is_leader() => Ok((l.partition.clone(), l.coordinator_epoch)),
            _ if self.topics.partition(TXN_TOPIC, index).is_some_and(|p| p.replica.lock().expect("replica lock").is_leader()) => Err(ResponseError::CoordinatorLoadInProgress),
            _ => Err(ResponseError::NotCoordinator),
        }
    }

    fn claim(&self, id: &str) -> Result<Claim<'_>, ResponseError> {
        if !self.busy.lock().expect("busy lock").insert(id.to_string()) {
            return Err(ResponseError::ConcurrentTransactions);
        }
        Ok(Claim { coordinator: self, id: id.to_string() })
    }

    fn get(&self, id: &str) -> Option<TxnMeta> {
        self.txns.lock().expect("txns lock").get(id).cloned()
    }

    /// Writes `meta` (or a tombstone) for `id` and waits for the in-sync replicas; the
    /// in-memory state changes only once the write is durable.
    async fn persist(&self, id: &str, meta: Option<&TxnMeta>) -> Result<(), ResponseError> {
        let (p, _) = self.owner(id)?;
        let value = meta.map(|m| Bytes::from(serde_json::to_vec(m).expect("state serializes")));
        let bytes = encode_plain(&[(Some(txn_key(id)), value, now_ms())], Compression::None).map_err(|_| ResponseError::UnknownServerError)?;
        self.topics.append_coordinator_state(&p, bytes, WRITE_TIMEOUT).await?;
        let mut txns = self.txns.lock().expect("txns lock");
        match meta {
            Some(m) => txns.insert(id.to_string(), m.clone()),
            None => txns.remove(id),
        };
        Ok(())
    }

    /// InitProducerId with a transactional id: the producer id and (bumped) epoch. An open
    /// transaction is aborted first, answered with CONCURRENT_TRANSACTIONS (retry).
    pub async fn init_producer_id(self: &Arc<Self>, state: &Arc<BrokerState>, id: &str, timeout_ms: i32, given: Option<(i64, i16)>) -> Result<(i64, i16), ResponseError> {
        let max = state.config.int("transaction.max.timeout.ms");
        if timeout_ms <= 0 || i64::from(timeout_ms) > max {
            return Err(ResponseError::InvalidTransactionTimeout);
        }
        self.owner(id)?;
        let claim = self.claim(id)?;
        let now = now_ms();
        let decision = match self.get(id) {
            None => InitDecision::NewProducerId,
            Some(m) => m.init(given, timeout_ms, now)?,
        };
        match decision {
            InitDecision::NewProducerId => {
                let pid = state.next_producer_id().await?;
                let m = TxnMeta::new(pid, timeout_ms, now);
                self.persist(id, Some(&m)).await?;
                tracing::info!(transactional_id = id, producer_id = pid, "new transactional producer");
                Ok((pid, 0))
            }
            InitDecision::Ready(m) => {
                self.persist(id, Some(&m)).await?;
                tracing::debug!(transactional_id = id, producer_id = m.producer_id, epoch = m.producer_epoch, "transactional producer (re)initialised");
                Ok((m.producer_id, m.producer_epoch))
            }
            InitDecision::AbortFirst(m) => {
                self.persist(id, Some(&m)).await?;
                drop(claim);
                tracing::info!(transactional_id = id, producer_id = m.producer_id, "a new producer instance took over; aborting its predecessor's open transaction");
                self.spawn_complete(state, id);
                Err(ResponseError::ConcurrentTransactions)
            }
        }
    }

    /// AddPartitionsToTxn (and AddOffsetsToTxn, with the group's offsets partition).
    pub async fn add_partitions(&self, id: &str, producer_id: i64, epoch: i16, partitions: &[(String, i32)]) -> Result<(), ResponseError> {
        self.owner(id)?;
        let _claim = self.claim(id)?;
        let m = self.get(id).ok_or(ResponseError::InvalidProducerIdMapping)?;
        if let Some(new) = m.add_partitions(producer_id, epoch, partitions, now_ms())? {
            self.persist(id, Some(&new)).await?;
        }
        Ok(())
    }

    /// EndTxn: writes the prepared state, answers, and leaves the markers to a task.
    pub async fn end_txn(self: &Arc<Self>, state: &Arc<BrokerState>, id: &str, producer_id: i64, epoch: i16, commit: bool) -> Result<(), ResponseError> {
        self.owner(id)?;
        let claim = self.claim(id)?;
        let m = self.get(id).ok_or(ResponseError::InvalidProducerIdMapping)?;
        let Some(prepared) = m.end(producer_id, epoch, commit, now_ms())? else { return Ok(()) };
        self.persist(id, Some(&prepared)).await?;
        drop(claim);
        self.spawn_complete(state, id);
        Ok(())
    }

    /// Writes the markers of a prepared transaction on a task (at most one per id).
    fn spawn_complete(self: &Arc<Self>, state: &Arc<BrokerState>, id: &str) {
        if !self.completing.lock().expect("completing lock").insert(id.to_string()) {
            return;
        }
        let (me, state, id) = (self.clone(), state.clone(), id.to_string());
        tokio::spawn(async move {
            if let Err(e) = me.complete(&state, &id).await {
                tracing::info!(transactional_id = %id, "transaction left for the next coordinator to finish: {e:?}");
            }
            me.completing.lock().expect("completing lock").remove(&id);
        });
    }

    async fn complete(&self, state: &Arc<BrokerState>, id: &str) -> Result<(), ResponseError> {
        let delay = state.config.ms("transaction.marker.delay.ms");
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let Some(m) = self.get(id).filter(|m| m.state.is_prepared()) else { return Ok(()) };
        let commit = m.state == TxnState::PrepareCommit;
        let mut left = m.partition_list();
        let mut attempts = 0u32;
        while !left.is_empty() {
            let (_, coordinator_epoch) = self.owner(id)?;
            left = self.write_markers(state, m.producer_id, m.producer_epoch, commit, coordinator_epoch, left).await;
            if !left.is_empty() {
                attempts += 1;
                if attempts.is_multiple_of(50) {
                    tracing::warn!(transactional_id = id, partitions = ?left, "transaction markers still not written; retrying");
                }
                tokio::time::sleep(MARKER_BACKOFF).await;
            }
        }
        // Every marker is in: record the outcome (retrying while another write is in flight).
        loop {
            match self.claim(id) {
                Ok(_claim) => {
                    let Some(cur) = self.get(id).filter(|c| c.state == m.state && c.producer_epoch == m.producer_epoch) else { return Ok(()) };
                    self.persist(id, Some(&cur.completed(now_ms()))).await?;
                    tracing::debug!(transactional_id = id, commit, "transaction completed");
                    return Ok(());
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }

    /// Sends markers to the leaders of `partitions`; returns those still to do.
    async fn write_markers(&self, state: &Arc<BrokerState>, pid: i64, epoch: i16, commit: bool, coordinator_epoch: i32, partitions: Vec<(String, i32)>) -> Vec<(String, i32)> {
        let image = state.image();
        let mut by_leader: BTreeMap<i32, Vec<(String, i32)>> = BTreeMap::new();
        let mut left = Vec::new();
        for (t, p) in partitions {
            match image.partition(&t, p) {
                // A deleted topic needs no marker.
                None => tracing::debug!(topic = %t, partition = p, "no marker for a partition that no longer exists"),
                Some(info) if info.leader < 0 => left.push((t, p)),
                Some(info) => by_leader.entry(info.leader).or_default().push((t, p)),
            }
        }
        for (leader, parts) in by_leader {
            let results = if leader == state.node_id {
                write_markers_local(state, pid, epoch, commit, coordinator_epoch, &parts).await
            } else {
                match self.send_markers(state, leader, pid, epoch, commit, coordinator_epoch, &parts).await {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::debug!(leader, "WriteTxnMarkers failed: {e}");
                        self.conns.lock().await.remove(&leader);
                        parts.iter().map(|tp| (tp.clone(), Some(ResponseError::NetworkException))).collect()
                    }
                }
            };
            for (tp, err) in results {
                match err {
                    None => {}
                    // A newer epoch or coordinator already ended this producer's transaction there.
                    Some(ResponseError::InvalidProducerEpoch | ResponseError::TransactionCoordinatorFenced | ResponseError::UnknownTopicOrPartition) => {
                        tracing::warn!(topic = %tp.0, partition = tp.1, producer_id = pid, ?err, "transaction marker refused; skipping it");
                    }
                    Some(_) => left.push(tp),
                }
            }
        }
        left
    }

    #[allow(clippy::too_many_arguments)]
    async fn send_markers(&self, state: &BrokerState, leader: i32, pid: i64, epoch: i16, commit: bool, coordinator_epoch: i32, parts: &[(String, i32)]) -> samsa_client::Result<Vec<((String, i32), Option<ResponseError>)>> {
        let conn = {
            let mut conns = self.conns.lock().await;
            match conns.get(&leader).filter(|c| !c.is_closed()) {
                Some(c) => c.clone(),
                None => {
                    let image = state.image();
                    let b = image.brokers.get(&leader).ok_or_else(|| samsa_client::Error::State(format!("broker {leader} is unknown")))?;
                    let (host, port) = b.address_for(&state.inter_broker.listener);
                    let addr = format!("{host}:{port}");
                    let c = Connection::connect_with(&addr, &format!("samsa-txn-markers-{}", state.node_id), Duration::from_secs(3), Duration::from_secs(30), &state.inter_broker.transport).await?;
                    conns.insert(leader, c.clone());
                    c
                }
            }
        };
        let mut topics: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
        for (t, p) in parts {
            topics.entry(t).or_default().push(*p);
        }
        let mut marker = WritableTxnMarker::default();
        marker.producer_id = kafka_protocol::messages::ProducerId(pid);
        marker.producer_epoch = epoch;
        marker.transaction_result = commit;
        marker.coordinator_epoch = coordinator_epoch;
        marker.topics = topics
            .into_iter()
            .map(|(t, ps)| {
                let mut wt = WritableTxnMarkerTopic::default();
                wt.name = TopicName(StrBytes::from_string(t.to_string()));
                wt.partition_indexes = ps;
                wt
            })
            .collect();
        let mut req = WriteTxnMarkersRequest::default();
        req.markers = vec![marker];
        let version = conn.version::<WriteTxnMarkersRequest>(1, 1)?;
        let resp = conn.send(&req, version).await?;
        let mut out = Vec::new();
        for m in resp.markers {
            for t in m.topics {
                for p in t.partitions {
                    out.push(((t.name.0.to_string(), p.partition_index), (p.error_code != 0).then(|| ResponseError::try_from_code(p.error_code).unwrap_or(ResponseError::UnknownServerError))));
                }
            }
        }
        Ok(out)
    }

    /// Loads the transactional ids of a `__transaction_state` partition this broker now
    /// leads and finishes every prepared transaction in it.
    pub fn load_partition(self: &Arc<Self>, state: &Arc<BrokerState>, p: &Arc<Partition>, count: i32) {
        let mut found: HashMap<String, TxnMeta> = HashMap::new();
        let result = (|| -> std::io::Result<()> {
            let log = p.log.lock().expect("log lock");
            let mut next = log.log_start_offset();
            loop {
                let bytes = log.read(next, 1 << 20, true)?;
                if bytes.is_empty() {
                    return Ok(());
                }
                let mut buf = Bytes::from(bytes);
                let sets = RecordBatchDecoder::decode_all(&mut buf).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{TXN_TOPIC}-{}: {e}", p.index)))?;
                for r in sets.into_iter().flat_map(|s| s.records) {
                    if r.offset < next {
                        continue;
                    }
                    next = r.offset + 1;
                    let Some(id) = r.key.as_deref().and_then(decode_txn_key) else { continue };
                    match r.value.as_deref().map(serde_json::from_slice::<TxnMeta>) {
                        Some(Ok(m)) => {
                            found.insert(id, m);
                        }
                        Some(Err(e)) => tracing::warn!(transactional_id = %id, "unreadable transaction state skipped: {e}"),
                        None => {
                            found.remove(&id);
                        }
                    }
                }
            }
        })();
        if let Err(e) = result {
            tracing::error!(partition = p.index, "cannot load transaction state: {e}");
            return;
        }
        let prepared: Vec<String> = found.iter().filter(|(_, m)| m.state.is_prepared()).map(|(id, _)| id.clone()).collect();
        let coordinator_epoch = p.replica.lock().expect("replica lock").leader_epoch;
        {
            let mut txns = self.txns.lock().expect("txns lock");
            txns.retain(|id, _| offsets_partition(id, count) != p.index);
            tracing::info!(partition = p.index, transactional_ids = found.len(), prepared = prepared.len(), "coordinating the transactions of {TXN_TOPIC}-{}", p.index);
            txns.extend(found);
        }
        self.loaded.lock().expect("loaded lock").insert(p.index, Loaded { count, partition: p.clone(), coordinator_epoch });
        for id in prepared {
            self.spawn_complete(state, &id);
        }
    }

    /// Forgets the transactional ids of a partition this broker no longer leads.
    pub fn unload_partition(&self, index: i32) {
        let Some(l) = self.loaded.lock().expect("loaded lock").remove(&index) else { return };
        self.txns.lock().expect("txns lock").retain(|id, _| offsets_partition(id, l.count) != index);
    }

    /// Aborts transactions open past their timeout and forgets transactional ids idle
    /// past `transactional.id.expiration.ms`; called periodically.
    pub async fn expire(self: &Arc<Self>, state: &Arc<BrokerState>) {
        let now = now_ms();
        let idle = state.config.int("transactional.id.expiration.ms");
        let all: Vec<(String, TxnMeta)> = self.txns.lock().expect("txns lock").iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        for (id, m) in all {
            if let Some(aborting) = m.timed_out(now) {
                let Ok(_claim) = self.claim(&id) else { continue };
                if self.get(&id).as_ref() != Some(&m) {
                    continue;
                }
                match self.persist(&id, Some(&aborting)).await {
                    Ok(()) => {
                        tracing::info!(transactional_id = %id, producer_id = m.producer_id, timeout_ms = m.timeout_ms, "aborting a transaction open past its timeout");
                        self.spawn_complete(state, &id);
                    }
                    Err(e) => tracing::debug!(transactional_id = %id, "cannot abort timed-out transaction yet: {e:?}"),
                }
            } else if matches!(m.state, TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort) && now - m.update_ms > idle {
                let Ok(_claim) = self.claim(&id) else { continue };
                if self.get(&id).as_ref() == Some(&m) && self.persist(&id, None).await.is_ok() {
                    tracing::info!(transactional_id = %id, "forgot an idle transactional id");
                }
            }
        }
    }

    /// Every transactional id this broker coordinates, with its state.
    pub fn list(&self) -> Vec<(String, TxnMeta)> {
        let mut out: Vec<_> = self.txns.lock().expect("txns lock").iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// One transactional id's state, if this broker coordinates it.
    pub fn describe(&self, id: &str) -> Result<TxnMeta, ResponseError> {
        self.owner(id)?;
        self.get(id).ok_or(ResponseError::TransactionalIdNotFound)
    }
}

/// Writes markers to partitions this broker leads (WriteTxnMarkers, or the coordinator
/// itself), each replicated to the ISR before it counts; a marker on `__consumer_offsets`
/// also settles the group coordinator's pending transactional offsets.
pub async fn write_markers_local(state: &BrokerState, pid: i64, epoch: i16, commit: bool, coordinator_epoch: i32, parts: &[(String, i32)]) -> Vec<((String, i32), Option<ResponseError>)> {
    let mut out = Vec::with_capacity(parts.len());
    let mut waits = Vec::new();
    for (t, p) in parts {
        let partition = match crate::api::leader_partition(state, t, *p) {
            Ok(part) => part,
            Err(e) => {
                out.push(((t.clone(), *p), Some(e)));
                continue;
            }
        };
        let appended = {
            let mut log = partition.log.lock().expect("log lock");
            let leader_epoch = partition.replica.lock().expect("replica lock").leader_epoch;
            log.append_marker(pid, epoch, Marker { commit, coordinator_epoch }, leader_epoch, now_ms()).map(|info| (info.last_offset + 1, leader_epoch, log.log_end_offset()))
        };
        match appended {
            Ok((end, leader_epoch, leo)) => {
                partition.replica.lock().expect("replica lock").advance_hw(leo);
                waits.push(((t.clone(), *p), partition, end, leader_epoch));
            }
            Err(MarkerAppendError::Refused(e)) => {
                let code = match e {
                    crate::log::MarkerError::InvalidEpoch => ResponseError::InvalidProducerEpoch,
                    crate::log::MarkerError::CoordinatorFenced => ResponseError::TransactionCoordinatorFenced,
                };
                out.push(((t.clone(), *p), Some(code)));
            }
            Err(MarkerAppendError::Io(e)) => {
                tracing::error!(topic = %t, partition = p, "cannot write a transaction marker: {e}");
                out.push(((t.clone(), *p), Some(ResponseError::KafkaStorageError)));
            }
        }
    }
    state.topics.notify_append();
    for (tp, partition, end, leader_epoch) in waits {
        let r = state.topics.wait_replicated(&partition, end, leader_epoch, WRITE_TIMEOUT, None).await;
        if r.is_ok() && partition.topic == OFFSETS_TOPIC {
            state.groups.complete_txn(partition.index, pid, commit);
        }
        out.push((tp, r.err()));
    }
    out
}
