//! Local replicas: the partition logs this broker holds, kept in step with the metadata
//! image.
//!
//! Topics themselves (names, UUIDs, assignments, configs) live in the metadata image
//! ([`crate::meta`]); [`TopicManager::apply_image`] opens a log for every partition the
//! image assigns to this broker, applies leader/follower changes, and deletes logs of
//! topics that are gone. Partition logs live in `<data>/<topic>-<partition>/`, with the
//! topic's UUID in `partition.metadata` so a recreated topic never inherits old data.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use kafka_protocol::ResponseError;
use tokio::sync::watch;
use uuid::Uuid;

use crate::config::BrokerConfig;
use crate::log::PartitionLog;
use crate::meta::{Image, TopicInfo};
use crate::now_ms;
use crate::replica::{Replica, RoleChange};

/// Name of the internal topic that stores committed group offsets.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";
/// The internal topic holding transaction coordinator state.
pub const TXN_TOPIC: &str = "__transaction_state";
/// Longest topic name Kafka accepts.
pub const MAX_TOPIC_NAME_LEN: usize = 249;
const PARTITION_METADATA: &str = "partition.metadata";

/// A Kafka error code with a message for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The wire error.
    pub code: ResponseError,
    /// A human explanation, sent where the API version has an error-message field.
    pub message: String,
}

impl ApiError {
    /// Builds an error.
    pub fn new(code: ResponseError, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }
}

/// Whether a topic is broker-internal.
pub fn is_internal(name: &str) -> bool {
    name == OFFSETS_TOPIC || name == TXN_TOPIC
}

/// Checks a topic name as Kafka does: 1-249 characters of `[a-zA-Z0-9._-]`, not `.` or `..`.
pub fn validate_topic_name(name: &str) -> std::result::Result<(), ApiError> {
    let bad = |why: &str| Err(ApiError::new(ResponseError::InvalidTopicException, format!("invalid topic name `{name}`: {why}")));
    if name.is_empty() {
        return bad("it is empty");
    }
    if name == "." || name == ".." {
        return bad("`.` and `..` are reserved");
    }
    if name.len() > MAX_TOPIC_NAME_LEN {
        return bad("longer than 249 characters");
    }
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-') {
        return bad("only ASCII letters, digits, '.', '_' and '-' are allowed");
    }
    Ok(())
}

fn partition_dir(data_dir: &Path, topic: &str, p: i32) -> PathBuf {
    data_dir.join(format!("{topic}-{p}"))
}

/// One local replica of a partition.
#[derive(Debug)]
pub struct Partition {
    /// Topic name.
    pub topic: String,
    /// Topic UUID.
    pub topic_id: Uuid,
    /// Partition number.
    pub index: i32,
    /// The log; `std::sync::Mutex` because the guard is never held across an `.await`
    /// (appends and reads are short synchronous file operations). Lock order: `log`
    /// before `replica`.
    pub log: Mutex<PartitionLog>,
    /// Role, ISR and high watermark.
    pub replica: Mutex<Replica>,
}

impl Partition {
    /// `topic-index`, for messages.
    pub fn name(&self) -> String {
        format!("{}-{}", self.topic, self.index)
    }

    /// The high watermark.
    pub fn high_watermark(&self) -> i64 {
        self.replica.lock().expect("replica lock").hw
    }
}

/// What an image changed locally, for the runtime to act on.
#[derive(Default)]
pub struct Transitions {
    /// Partitions this broker now leads (new leader epoch).
    pub leaders: Vec<Arc<Partition>>,
    /// Partitions this broker now follows (new leader or epoch).
    pub followers: Vec<Arc<Partition>>,
    /// Partitions removed from this broker.
    pub removed: Vec<Arc<Partition>>,
}

/// A partition error as a coordinator answers it: a lost leadership is NOT_COORDINATOR.
pub fn as_coordinator_error(e: ResponseError) -> ResponseError {
    match e {
        ResponseError::NotLeaderOrFollower => ResponseError::NotCoordinator,
        other => other,
    }
}

/// The partitions this broker holds.
pub struct TopicManager {
    data_dir: PathBuf,
    config: BrokerConfig,
    node_id: i32,
    partitions: RwLock<HashMap<(String, i32), Arc<Partition>>>,
    /// Serialises `apply_image` calls.
    applying: Mutex<()>,
    appended: watch::Sender<u64>,
    /// Index of the last metadata image fully acted on (logs, roles, groups, fetchers).
    reconciled: watch::Sender<u64>,
}

impl TopicManager {
    /// A manager for `data_dir`; logs open when the first image assigns them.
    pub fn new(data_dir: &Path, config: BrokerConfig, node_id: i32) -> Self {
        let (appended, _) = watch::channel(0);
        let (reconciled, _) = watch::channel(0);
        Self { data_dir: data_dir.to_path_buf(), config, node_id, partitions: RwLock::new(HashMap::new()), applying: Mutex::new(()), appended, reconciled }
    }

    /// The broker configuration.
    pub fn config(&self) -> &BrokerConfig {
        &self.config
    }

    /// The local replica of a partition.
    pub fn partition(&self, topic: &str, index: i32) -> Option<Arc<Partition>> {
        self.partitions.read().expect("partitions lock").get(&(topic.to_string(), index)).cloned()
    }

    /// Every local replica.
    pub fn all_partitions(&self) -> Vec<Arc<Partition>> {
        self.partitions.read().expect("partitions lock").values().cloned().collect()
    }

    /// A receiver that changes whenever a partition gets new data or a new high
    /// watermark (Fetch long polls, acks=all waits).
    pub fn subscribe_appends(&self) -> watch::Receiver<u64> {
        self.appended.subscribe()
    }

    /// Wakes waiting fetches and produces.
    pub fn notify_append(&self) {
        self.appended.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Records that the image at `index` has been fully acted on.
    pub fn mark_reconciled(&self, index: u64) {
        self.reconciled.send_replace(index);
    }

    /// Waits (bounded) until this broker has acted on the image at `index`, so a client
    /// that just changed metadata through this broker finds its replicas ready.
    pub async fn wait_reconciled(&self, index: u64, timeout: std::time::Duration) {
        let mut rx = self.reconciled.subscribe();
        let _ = tokio::time::timeout(timeout, rx.wait_for(|i| *i >= index)).await;
    }

    /// Waits until the high watermark reaches `end` (every in-sync replica has the data)
    /// while this replica still leads at `epoch`. With `min_isr`, an ISR that shrinks below
    /// it meanwhile fails the wait with NOT_ENOUGH_REPLICAS_AFTER_APPEND, as in Kafka.
    pub async fn wait_replicated(&self, p: &Partition, end: i64, epoch: i32, timeout: std::time::Duration, min_isr: Option<usize>) -> Result<(), ResponseError> {
        let mut rx = self.subscribe_appends();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            rx.borrow_and_update();
            {
                let r = p.replica.lock().expect("replica lock");
                if !r.is_leader() || r.leader_epoch != epoch {
                    return Err(ResponseError::NotLeaderOrFollower);
                }
                if r.hw >= end {
                    return Ok(());
                }
                if min_isr.is_some_and(|m| r.isr.len() < m) {
                    return Err(ResponseError::NotEnoughReplicasAfterAppend);
                }
            }
            if tokio::time::timeout_at(deadline, rx.changed()).await.is_err() {
                return Err(ResponseError::RequestTimedOut);
            }
        }
    }

    /// [`Self::append_as_leader`] then [`Self::wait_replicated`] for a coordinator's own
    /// state (`__consumer_offsets`, `__transaction_state`): a replica that is no longer the
    /// leader answers NOT_COORDINATOR, so the client looks the coordinator up again.
    pub async fn append_coordinator_state(&self, p: &Partition, bytes: Vec<u8>, timeout: std::time::Duration) -> Result<(), ResponseError> {
        let (end, epoch) = self.append_as_leader(p, bytes).map_err(as_coordinator_error)?;
        self.wait_replicated(p, end, epoch, timeout, None).await.map_err(as_coordinator_error)
    }

    /// Appends encoded batches to a partition this broker leads, on behalf of the broker
    /// itself (coordinator state, transaction markers): returns the offset that must be
    /// replicated and the leader epoch to wait under ([`Self::wait_replicated`]).
    pub fn append_as_leader(&self, p: &Partition, mut bytes: Vec<u8>) -> Result<(i64, i32), ResponseError> {
        let headers: Vec<_> = samsa_client::wire::batch::validate_produced(&bytes).map_err(|_| ResponseError::UnknownServerError)?.into_iter().map(|(h, _)| h).collect();
        let mut log = p.log.lock().expect("log lock");
        let epoch = {
            let r = p.replica.lock().expect("replica lock");
            if !r.is_leader() {
                return Err(ResponseError::NotLeaderOrFollower);
            }
            r.leader_epoch
        };
        let info = log.append(&mut bytes, &headers, epoch, crate::now_ms()).map_err(|e| {
            tracing::error!(partition = %p.name(), "internal append failed: {e}");
            ResponseError::KafkaStorageError
        })?;
        let leo = log.log_end_offset();
        drop(log);
        p.replica.lock().expect("replica lock").advance_hw(leo);
        self.notify_append();
        Ok((info.last_offset + 1, epoch))
    }

    /// The `min.insync.replicas` of a topic.
    pub fn min_insync(&self, topic: &TopicInfo) -> usize {
        topic.configs.get("min.insync.replicas").and_then(|v| v.parse().ok()).unwrap_or(self.config.int("min.insync.replicas") as usize)
    }

    fn open_log(&self, t: &TopicInfo, index: i32) -> std::io::Result<PartitionLog> {
        let dir = partition_dir(&self.data_dir, &t.name, index);
        let marker = dir.join(PARTITION_METADATA);
        let stored = std::fs::read_to_string(&marker).ok().and_then(|s| s.lines().find_map(|l| l.strip_prefix("topic_id=")).and_then(|v| v.trim().parse::<Uuid>().ok()));
        if stored.is_some_and(|id| id != t.id) || (stored.is_none() && dir.exists() && !dir.join("00000000000000000000.log").exists()) {
            tracing::info!(dir = %dir.display(), "removing data of an older topic with the same name");
            std::fs::remove_dir_all(&dir)?;
        }
        let log = PartitionLog::open(&dir, self.config.log_config(&t.configs), now_ms())?;
        if stored != Some(t.id) {
            std::fs::write(&marker, format!("version=0\ntopic_id={}\n", t.id))?;
        }
        Ok(log)
    }

    /// Brings local replicas in line with `image`: opens logs for newly assigned
    /// partitions, applies role and ISR changes, deletes logs of removed ones.
    pub fn apply_image(&self, image: &Image) -> Transitions {
        let _guard = self.applying.lock().expect("applying lock");
        let mut out = Transitions::default();
        let now = Instant::now();
        let mut wanted = HashSet::new();
        for t in image.topics.values() {
            let log_config = self.config.log_config(&t.configs);
            for (index, info) in t.partitions.iter().enumerate() {
                let index = index as i32;
                if !info.replicas.contains(&self.node_id) {
                    continue;
                }
                wanted.insert((t.name.clone(), index));
                let existing = self.partition(&t.name, index).filter(|p| p.topic_id == t.id);
                let partition = match existing {
                    Some(p) => p,
                    None => match self.open_log(t, index) {
                        Ok(log) => {
                            let p = Arc::new(Partition { topic: t.name.clone(), topic_id: t.id, index, log: Mutex::new(log), replica: Mutex::new(Replica::new(self.node_id)) });
                            self.partitions.write().expect("partitions lock").insert((t.name.clone(), index), p.clone());
                            p
                        }
                        Err(e) => {
                            tracing::error!(topic = %t.name, partition = index, "cannot open partition log: {e}");
                            continue;
                        }
                    },
                };
                let mut log = partition.log.lock().expect("log lock");
                if log.config() != &log_config {
                    log.set_config(log_config.clone());
                }
                let leo = log.log_end_offset();
                let change = partition.replica.lock().expect("replica lock").apply(info, leo, now);
                match change {
                    RoleChange::BecameLeader => {
                        log.assign_epoch(info.leader_epoch, leo);
                        tracing::debug!(topic = %t.name, partition = index, epoch = info.leader_epoch, "leading partition");
                        out.leaders.push(partition.clone());
                    }
                    RoleChange::BecameFollower => {
                        tracing::debug!(topic = %t.name, partition = index, leader = info.leader, epoch = info.leader_epoch, "following partition");
                        out.followers.push(partition.clone());
                    }
                    RoleChange::None => {}
                }
            }
        }
        let doomed: Vec<Arc<Partition>> = {
            let mut parts = self.partitions.write().expect("partitions lock");
            let keys: Vec<_> = parts.keys().filter(|k| !wanted.contains(*k)).cloned().collect();
            keys.into_iter().filter_map(|k| parts.remove(&k)).collect()
        };
        for p in doomed {
            tracing::info!(topic = %p.topic, partition = p.index, "removing local replica");
            let _ = std::fs::remove_dir_all(partition_dir(&self.data_dir, &p.topic, p.index));
            out.removed.push(p);
        }
        self.notify_append();
        out
    }

    /// Runs retention, compaction and time-based flushes over every partition once.
    pub fn maintenance(&self, retention: bool, compaction: bool) {
        let now = now_ms();
        let producer_horizon = now - self.config.int("producer.id.expiration.ms");
        for p in self.all_partitions() {
            let mut log = p.log.lock().expect("log lock");
            if retention {
                let expired = log.expire_producers(producer_horizon);
                if expired > 0 {
                    tracing::debug!(topic = %p.topic, partition = p.index, expired, "forgot idle producer ids");
                }
                match log.apply_retention(now) {
                    Ok(n) if n > 0 => tracing::info!(topic = %p.topic, partition = p.index, segments = n, "retention deleted segments"),
                    Ok(_) => {}
                    Err(e) => tracing::error!(topic = %p.topic, partition = p.index, "retention failed: {e}"),
                }
            }
            if compaction && log.config().compact {
                match crate::log::cleaner::compact(&mut log, now, false) {
                    Ok(s) if s.segments_cleaned > 0 => tracing::info!(topic = %p.topic, partition = p.index, ?s, "compacted"),
                    Ok(_) => {}
                    Err(e) => tracing::error!(topic = %p.topic, partition = p.index, "compaction failed: {e}"),
                }
            }
            if let Err(e) = log.flush_if_due(now) {
                tracing::error!(topic = %p.topic, partition = p.index, "flush failed: {e}");
            }
        }
    }

    /// Flushes every partition (clean shutdown).
    pub fn flush_all(&self) {
        let now = now_ms();
        for p in self.all_partitions() {
            if let Err(e) = p.log.lock().expect("log lock").flush(now) {
                tracing::error!(topic = %p.topic, partition = p.index, "flush failed: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_like_kafka() {
        assert!(validate_topic_name("orders.v1_x-2").is_ok());
        for bad in ["", ".", "..", "a b", "ü", &"x".repeat(250)] {
            assert_eq!(validate_topic_name(bad).unwrap_err().code, ResponseError::InvalidTopicException, "{bad}");
        }
    }
}
