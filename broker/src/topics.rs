//! Topic metadata and the partition logs behind it.
//!
//! The topic list (name, UUID, partition count, config overrides) is kept in
//! `<data>/topics.json`, replaced atomically (write, fsync, rename) on every change.
//! Partition logs live in `<data>/<topic>-<partition>/`.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use kafka_protocol::ResponseError;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use uuid::Uuid;

use crate::config::{check_topic_config, BrokerConfig};
use crate::log::PartitionLog;
use crate::{now_ms, Error, Result};

/// Name of the internal topic that stores committed group offsets.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";
/// Longest topic name Kafka accepts.
pub const MAX_TOPIC_NAME_LEN: usize = 249;
const METADATA_FILE: &str = "topics.json";

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

/// One partition: its index and log.
#[derive(Debug)]
pub struct Partition {
    /// Partition number.
    pub index: i32,
    /// The log; `std::sync::Mutex` because the guard is never held across an `.await`
    /// (appends and reads are short synchronous file operations).
    pub log: Mutex<PartitionLog>,
}

/// A topic as the broker knows it. Immutable: changes replace the `Arc<Topic>`.
#[derive(Debug)]
pub struct Topic {
    /// Topic name.
    pub name: String,
    /// Topic UUID (Metadata v10+, Fetch v13+).
    pub id: Uuid,
    /// Partitions by index.
    pub partitions: Vec<Arc<Partition>>,
    /// Topic-level config overrides (topic-level key names).
    pub configs: BTreeMap<String, String>,
}

impl Topic {
    /// Whether this is a broker-internal topic.
    pub fn is_internal(&self) -> bool {
        self.name == OFFSETS_TOPIC
    }

    /// A partition by index.
    pub fn partition(&self, index: i32) -> Option<&Arc<Partition>> {
        usize::try_from(index).ok().and_then(|i| self.partitions.get(i))
    }
}

#[derive(Serialize, Deserialize)]
struct StoredTopic {
    name: String,
    id: Uuid,
    partitions: i32,
    configs: BTreeMap<String, String>,
}

#[derive(Default)]
struct Registry {
    by_name: BTreeMap<String, Arc<Topic>>,
    by_id: HashMap<Uuid, String>,
}

/// All topics of the broker.
pub struct TopicManager {
    data_dir: PathBuf,
    config: BrokerConfig,
    registry: RwLock<Registry>,
    /// Serialises metadata changes (create, delete, alter) and their file writes.
    changes: Mutex<()>,
    appended: watch::Sender<u64>,
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

impl TopicManager {
    /// Loads the topic list and opens every partition log (recovering torn tails).
    pub fn open(data_dir: &Path, config: BrokerConfig) -> Result<Self> {
        let stored: Vec<StoredTopic> = match std::fs::read(data_dir.join(METADATA_FILE)) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| {
                Error::Config(format!("{} is not valid topic metadata: {e}", data_dir.join(METADATA_FILE).display()))
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(Error::DataDir { path: data_dir.to_path_buf(), source: e }),
        };
        let (appended, _) = watch::channel(0);
        let mgr = Self {
            data_dir: data_dir.to_path_buf(),
            config,
            registry: RwLock::new(Registry::default()),
            changes: Mutex::new(()),
            appended,
        };
        let now = now_ms();
        for t in stored {
            let log_config = mgr.config.log_config(&t.configs);
            let partitions = (0..t.partitions)
                .map(|p| {
                    let log = PartitionLog::open(&partition_dir(data_dir, &t.name, p), log_config.clone(), now)?;
                    Ok(Arc::new(Partition { index: p, log: Mutex::new(log) }))
                })
                .collect::<Result<Vec<_>>>()?;
            let topic = Arc::new(Topic { name: t.name.clone(), id: t.id, partitions, configs: t.configs });
            let mut reg = mgr.registry.write().expect("registry lock");
            reg.by_id.insert(topic.id, topic.name.clone());
            reg.by_name.insert(topic.name.clone(), topic);
        }
        Ok(mgr)
    }

    /// The broker configuration.
    pub fn config(&self) -> &BrokerConfig {
        &self.config
    }

    /// A topic by name.
    pub fn get(&self, name: &str) -> Option<Arc<Topic>> {
        self.registry.read().expect("registry lock").by_name.get(name).cloned()
    }

    /// A topic by UUID.
    pub fn get_by_id(&self, id: Uuid) -> Option<Arc<Topic>> {
        let reg = self.registry.read().expect("registry lock");
        reg.by_id.get(&id).and_then(|n| reg.by_name.get(n)).cloned()
    }

    /// Every topic, by name.
    pub fn all(&self) -> Vec<Arc<Topic>> {
        self.registry.read().expect("registry lock").by_name.values().cloned().collect()
    }

    /// A receiver that changes whenever any partition gets new data (Fetch long polls).
    pub fn subscribe_appends(&self) -> watch::Receiver<u64> {
        self.appended.subscribe()
    }

    /// Wakes waiting fetches after an append.
    pub fn notify_append(&self) {
        self.appended.send_modify(|n| *n = n.wrapping_add(1));
    }

    fn persist(&self, reg: &Registry) -> Result<()> {
        let stored: Vec<StoredTopic> = reg
            .by_name
            .values()
            .map(|t| StoredTopic { name: t.name.clone(), id: t.id, partitions: t.partitions.len() as i32, configs: t.configs.clone() })
            .collect();
        let bytes = serde_json::to_vec_pretty(&stored).map_err(|e| Error::Config(e.to_string()))?;
        let tmp = self.data_dir.join(format!("{METADATA_FILE}.tmp"));
        {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, self.data_dir.join(METADATA_FILE))?;
        std::fs::File::open(&self.data_dir)?.sync_all()?;
        Ok(())
    }

    /// Creates a topic. With `validate_only` nothing is changed.
    pub fn create(
        &self,
        name: &str,
        partitions: i32,
        configs: BTreeMap<String, String>,
        validate_only: bool,
    ) -> std::result::Result<Arc<Topic>, ApiError> {
        validate_topic_name(name)?;
        if partitions < 1 || partitions > 100_000 {
            return Err(ApiError::new(ResponseError::InvalidPartitions, format!("number of partitions must be between 1 and 100000, got {partitions}")));
        }
        for (k, v) in &configs {
            check_topic_config(k, v).map_err(|m| ApiError::new(ResponseError::InvalidConfig, m))?;
        }
        let _guard = self.changes.lock().expect("changes lock");
        if self.get(name).is_some() {
            return Err(ApiError::new(ResponseError::TopicAlreadyExists, format!("topic `{name}` already exists")));
        }
        // Kafka refuses names that collide once '.' and '_' are treated alike (metrics).
        let norm = |s: &str| s.replace('.', "_");
        if let Some(t) = self.all().iter().find(|t| norm(&t.name) == norm(name)) {
            return Err(ApiError::new(ResponseError::InvalidTopicException, format!("topic `{name}` collides with existing topic `{}` ('.' and '_' are treated alike)", t.name)));
        }
        let log_config = self.config.log_config(&configs);
        if validate_only {
            return Ok(Arc::new(Topic { name: name.to_string(), id: Uuid::nil(), partitions: Vec::new(), configs }));
        }
        let now = now_ms();
        let storage = |e: std::io::Error| ApiError::new(ResponseError::KafkaStorageError, format!("cannot create topic `{name}`: {e}"));
        let parts = (0..partitions)
            .map(|p| {
                let dir = partition_dir(&self.data_dir, name, p);
                let _ = std::fs::remove_dir_all(&dir); // leftovers of a torn delete
                let log = PartitionLog::open(&dir, log_config.clone(), now).map_err(storage)?;
                Ok(Arc::new(Partition { index: p, log: Mutex::new(log) }))
            })
            .collect::<std::result::Result<Vec<_>, ApiError>>()?;
        let topic = Arc::new(Topic { name: name.to_string(), id: Uuid::new_v4(), partitions: parts, configs });
        let mut reg = self.registry.write().expect("registry lock");
        reg.by_id.insert(topic.id, topic.name.clone());
        reg.by_name.insert(topic.name.clone(), topic.clone());
        self.persist(&reg).map_err(|e| ApiError::new(ResponseError::KafkaStorageError, e.to_string()))?;
        Ok(topic)
    }

    /// Deletes a topic and its data.
    pub fn delete(&self, name: &str) -> std::result::Result<Uuid, ApiError> {
        let _guard = self.changes.lock().expect("changes lock");
        let topic = {
            let mut reg = self.registry.write().expect("registry lock");
            let topic = reg.by_name.remove(name).ok_or_else(|| ApiError::new(ResponseError::UnknownTopicOrPartition, format!("topic `{name}` does not exist")))?;
            reg.by_id.remove(&topic.id);
            self.persist(&reg).map_err(|e| ApiError::new(ResponseError::KafkaStorageError, e.to_string()))?;
            topic
        };
        for p in &topic.partitions {
            let _ = std::fs::remove_dir_all(partition_dir(&self.data_dir, name, p.index));
        }
        Ok(topic.id)
    }

    /// Grows a topic to `total` partitions.
    pub fn add_partitions(&self, name: &str, total: i32, validate_only: bool) -> std::result::Result<(), ApiError> {
        let _guard = self.changes.lock().expect("changes lock");
        let topic = self.get(name).ok_or_else(|| ApiError::new(ResponseError::UnknownTopicOrPartition, format!("topic `{name}` does not exist")))?;
        let current = topic.partitions.len() as i32;
        if total <= current {
            return Err(ApiError::new(ResponseError::InvalidPartitions, format!("topic `{name}` has {current} partitions; the new count must be larger, got {total}")));
        }
        if total > 100_000 {
            return Err(ApiError::new(ResponseError::InvalidPartitions, "at most 100000 partitions"));
        }
        if validate_only {
            return Ok(());
        }
        let log_config = self.config.log_config(&topic.configs);
        let mut parts = topic.partitions.clone();
        for p in current..total {
            let log = PartitionLog::open(&partition_dir(&self.data_dir, name, p), log_config.clone(), now_ms())
                .map_err(|e| ApiError::new(ResponseError::KafkaStorageError, e.to_string()))?;
            parts.push(Arc::new(Partition { index: p, log: Mutex::new(log) }));
        }
        self.replace(Topic { name: topic.name.clone(), id: topic.id, partitions: parts, configs: topic.configs.clone() })
    }

    /// Replaces a topic's config overrides and applies them to its logs.
    pub fn set_configs(&self, name: &str, configs: BTreeMap<String, String>, validate_only: bool) -> std::result::Result<(), ApiError> {
        for (k, v) in &configs {
            check_topic_config(k, v).map_err(|m| ApiError::new(ResponseError::InvalidConfig, m))?;
        }
        let _guard = self.changes.lock().expect("changes lock");
        let topic = self.get(name).ok_or_else(|| ApiError::new(ResponseError::UnknownTopicOrPartition, format!("topic `{name}` does not exist")))?;
        if validate_only {
            return Ok(());
        }
        let log_config = self.config.log_config(&configs);
        for p in &topic.partitions {
            p.log.lock().expect("log lock").set_config(log_config.clone());
        }
        self.replace(Topic { name: topic.name.clone(), id: topic.id, partitions: topic.partitions.clone(), configs })
    }

    fn replace(&self, topic: Topic) -> std::result::Result<(), ApiError> {
        let mut reg = self.registry.write().expect("registry lock");
        reg.by_name.insert(topic.name.clone(), Arc::new(topic));
        self.persist(&reg).map_err(|e| ApiError::new(ResponseError::KafkaStorageError, e.to_string()))
    }

    /// Runs retention, compaction and time-based flushes over every partition once.
    pub fn maintenance(&self, retention: bool, compaction: bool) {
        let now = now_ms();
        for topic in self.all() {
            for p in &topic.partitions {
                let mut log = p.log.lock().expect("log lock");
                if retention {
                    match log.apply_retention(now) {
                        Ok(n) if n > 0 => tracing::info!(topic = %topic.name, partition = p.index, segments = n, "retention deleted segments"),
                        Ok(_) => {}
                        Err(e) => tracing::error!(topic = %topic.name, partition = p.index, "retention failed: {e}"),
                    }
                }
                if compaction && log.config().compact {
                    match crate::log::cleaner::compact(&mut log, now, false) {
                        Ok(s) if s.segments_cleaned > 0 => tracing::info!(topic = %topic.name, partition = p.index, ?s, "compacted"),
                        Ok(_) => {}
                        Err(e) => tracing::error!(topic = %topic.name, partition = p.index, "compaction failed: {e}"),
                    }
                }
                if let Err(e) = log.flush_if_due(now) {
                    tracing::error!(topic = %topic.name, partition = p.index, "flush failed: {e}");
                }
            }
        }
    }

    /// Flushes every partition (clean shutdown).
    pub fn flush_all(&self) {
        let now = now_ms();
        for topic in self.all() {
            for p in &topic.partitions {
                let mut log = p.log.lock().expect("log lock");
                if let Err(e) = log.flush(now) {
                    tracing::error!(topic = %topic.name, partition = p.index, "flush failed: {e}");
                }
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

    #[test]
    fn create_persist_reload_delete() {
        let dir = tempfile::tempdir().unwrap();
        let m = TopicManager::open(dir.path(), BrokerConfig::default()).unwrap();
        let mut cfg = BTreeMap::new();
        cfg.insert("cleanup.policy".into(), "compact".into());
        let t = m.create("a", 3, cfg.clone(), false).unwrap();
        assert_eq!(m.create("a", 1, BTreeMap::new(), false).unwrap_err().code, ResponseError::TopicAlreadyExists);
        assert_eq!(m.create("b", 0, BTreeMap::new(), false).unwrap_err().code, ResponseError::InvalidPartitions);
        m.add_partitions("a", 5, false).unwrap();
        drop(m);
        let m = TopicManager::open(dir.path(), BrokerConfig::default()).unwrap();
        let t2 = m.get("a").unwrap();
        assert_eq!((t2.id, t2.partitions.len(), &t2.configs), (t.id, 5, &cfg));
        assert!(m.get_by_id(t.id).is_some());
        m.delete("a").unwrap();
        assert!(m.get("a").is_none());
        assert!(!dir.path().join("a-0").exists());
    }
}
