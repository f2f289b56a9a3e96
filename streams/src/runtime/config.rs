//! [`StreamsConfig`]: the application's settings, under Kafka Streams' property names.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use samsa_client::ConsumerRecord;

use crate::error::{Error, Result};
use crate::store::RocksBudget;
use crate::task::{DeserializationHandler, TimestampExtractor};

/// `processing.guarantee`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcessingGuarantee {
    /// Every record is processed at least once; a crash may repeat some output.
    AtLeastOnce,
    /// Each commit is one transaction holding output, changelog writes and input offsets.
    ExactlyOnceV2,
}

impl ProcessingGuarantee {
    /// Parses `at_least_once` or `exactly_once_v2` (also `exactly_once_beta`).
    pub fn parse(s: &str) -> Result<ProcessingGuarantee> {
        match s.trim() {
            "at_least_once" => Ok(ProcessingGuarantee::AtLeastOnce),
            "exactly_once_v2" | "exactly_once_beta" | "exactly_once" => Ok(ProcessingGuarantee::ExactlyOnceV2),
            other => Err(Error::Config(format!("`processing.guarantee` = `{other}` must be at_least_once or exactly_once_v2"))),
        }
    }
}

/// Settings of a streams application.
#[derive(Clone)]
pub struct StreamsConfig {
    /// `application.id`: names the consumer group, internal topics and the state directory.
    pub application_id: String,
    /// `bootstrap.servers`.
    pub bootstrap_servers: String,
    /// `state.dir` (default: `<tmp>/samsa-streams`).
    pub state_dir: PathBuf,
    /// `num.stream.threads` (default 1).
    pub num_stream_threads: usize,
    /// `processing.guarantee` (default at_least_once).
    pub processing_guarantee: ProcessingGuarantee,
    /// `commit.interval.ms` (default 30000, or 100 with exactly_once_v2).
    pub commit_interval: Duration,
    /// `num.standby.replicas` (default 0).
    pub num_standby_replicas: usize,
    /// `replication.factor` of internal topics (default -1: the broker's default).
    pub replication_factor: i16,
    /// `application.server`: this instance's `host:port` for interactive queries.
    pub application_server: Option<String>,
    /// `statestore.cache.max.bytes` (default 10 MiB): the record cache. When above 0,
    /// aggregations forward (and stores log) only the latest update per key at each commit,
    /// and uncommitted writes beyond this size force an early commit; 0 forwards every
    /// update.
    pub max_uncommitted_bytes: usize,
    /// `rocksdb.block.cache.bytes` and `rocksdb.write.buffer.bytes`: the RocksDB memory
    /// budget shared by every store of this instance.
    pub rocksdb: RocksBudget,
    /// `default.deserialization.exception.handler`: `fail` (default) or `continue`.
    pub deserialization_handler: DeserializationHandler,
    /// Event time of a record (default: the record's timestamp).
    pub timestamp_extractor: TimestampExtractor,
    /// Extra properties of the internal producer (`producer.` prefix stripped).
    pub producer: Vec<(String, String)>,
    /// Extra properties of the internal consumers (`consumer.` prefix stripped).
    pub consumer: Vec<(String, String)>,
    /// `poll.ms`: how long a thread waits for records.
    pub poll: Duration,
}

impl std::fmt::Debug for StreamsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamsConfig")
            .field("application_id", &self.application_id)
            .field("bootstrap_servers", &self.bootstrap_servers)
            .field("state_dir", &self.state_dir)
            .field("num_stream_threads", &self.num_stream_threads)
            .field("processing_guarantee", &self.processing_guarantee)
            .field("commit_interval", &self.commit_interval)
            .field("num_standby_replicas", &self.num_standby_replicas)
            .finish_non_exhaustive()
    }
}

impl StreamsConfig {
    /// Defaults for application `application_id` on the cluster at `bootstrap_servers`.
    pub fn new(application_id: &str, bootstrap_servers: &str) -> StreamsConfig {
        StreamsConfig {
            application_id: application_id.to_string(),
            bootstrap_servers: bootstrap_servers.to_string(),
            state_dir: std::env::temp_dir().join("samsa-streams"),
            num_stream_threads: 1,
            processing_guarantee: ProcessingGuarantee::AtLeastOnce,
            commit_interval: Duration::from_millis(30_000),
            num_standby_replicas: 0,
            replication_factor: -1,
            application_server: None,
            max_uncommitted_bytes: 10 * 1024 * 1024,
            rocksdb: RocksBudget::default(),
            deserialization_handler: DeserializationHandler::Fail,
            timestamp_extractor: Arc::new(|r: &ConsumerRecord| r.timestamp),
            producer: Vec::new(),
            consumer: Vec::new(),
            poll: Duration::from_millis(100),
        }
    }

    /// Builds a config from Kafka Streams properties.
    pub fn from_properties<K: AsRef<str>, V: AsRef<str>>(props: impl IntoIterator<Item = (K, V)>) -> Result<StreamsConfig> {
        let props: Vec<(String, String)> = props.into_iter().map(|(k, v)| (k.as_ref().to_string(), v.as_ref().to_string())).collect();
        let get = |k: &str| props.iter().find(|(p, _)| p == k).map(|(_, v)| v.clone());
        let app = get("application.id").ok_or_else(|| Error::Config("`application.id` is required".into()))?;
        let bootstrap = get("bootstrap.servers").ok_or_else(|| Error::Config("`bootstrap.servers` is required".into()))?;
        let mut c = StreamsConfig::new(&app, &bootstrap);
        for (k, v) in &props {
            if k != "application.id" && k != "bootstrap.servers" {
                c.set(k, v)?;
            }
        }
        Ok(c)
    }

    /// Sets one property by its Kafka Streams name.
    pub fn set(&mut self, key: &str, value: &str) -> Result<&mut Self> {
        let num = |v: &str| v.trim().parse::<u64>().map_err(|_| Error::Config(format!("`{key}` = `{v}` is not a non-negative number")));
        match key {
            "application.id" => self.application_id = value.to_string(),
            "bootstrap.servers" => self.bootstrap_servers = value.to_string(),
            "state.dir" => self.state_dir = PathBuf::from(value),
            "num.stream.threads" => self.num_stream_threads = (num(value)? as usize).max(1),
            "processing.guarantee" => {
                self.processing_guarantee = ProcessingGuarantee::parse(value)?;
                if self.processing_guarantee == ProcessingGuarantee::ExactlyOnceV2 && self.commit_interval == Duration::from_millis(30_000) {
                    self.commit_interval = Duration::from_millis(100);
                }
            }
            "commit.interval.ms" => self.commit_interval = Duration::from_millis(num(value)?),
            "num.standby.replicas" => self.num_standby_replicas = num(value)? as usize,
            "replication.factor" => {
                self.replication_factor = value.trim().parse().map_err(|_| Error::Config(format!("`replication.factor` = `{value}` is not a number (-1: the broker default)")))?
            }
            "application.server" => self.application_server = Some(value.to_string()).filter(|s| !s.is_empty()),
            "statestore.cache.max.bytes" | "cache.max.bytes.buffering" => self.max_uncommitted_bytes = num(value)? as usize,
            "rocksdb.block.cache.bytes" => self.rocksdb.block_cache_bytes = num(value)? as usize,
            "rocksdb.write.buffer.bytes" => self.rocksdb.write_buffer_bytes = num(value)? as usize,
            "default.deserialization.exception.handler" => {
                self.deserialization_handler = match value.trim() {
                    "fail" | "org.apache.kafka.streams.errors.LogAndFailExceptionHandler" => DeserializationHandler::Fail,
                    "continue" | "org.apache.kafka.streams.errors.LogAndContinueExceptionHandler" => DeserializationHandler::Continue,
                    other => return Err(Error::Config(format!("`{key}` = `{other}` must be fail or continue"))),
                }
            }
            "poll.ms" => self.poll = Duration::from_millis(num(value)?),
            k if k.starts_with("producer.") => self.producer.push((k["producer.".len()..].to_string(), value.to_string())),
            k if k.starts_with("consumer.") => self.consumer.push((k["consumer.".len()..].to_string(), value.to_string())),
            other => {
                return Err(Error::Config(format!(
                    "unknown streams property `{other}`; client properties take a `producer.` or `consumer.` prefix"
                )))
            }
        }
        Ok(self)
    }

    /// A consumer config for this application: `bootstrap.servers`, the `consumer.`
    /// properties, no auto-commit, reading from the earliest offset unless
    /// `consumer.auto.offset.reset` says otherwise, read_committed under exactly_once_v2, no
    /// group (callers that join one set it).
    pub(crate) fn consumer_config(&self, client_id: String) -> Result<samsa_client::ConsumerConfig> {
        let mut c = samsa_client::ConsumerConfig::default();
        c.set("bootstrap.servers", &self.bootstrap_servers)?;
        c.auto_offset_reset = samsa_client::OffsetReset::Earliest;
        for (k, v) in &self.consumer {
            c.set(k, v)?;
        }
        c.group_id = None;
        c.enable_auto_commit = false;
        c.isolation_level = if self.exactly_once() { samsa_client::IsolationLevel::ReadCommitted } else { samsa_client::IsolationLevel::ReadUncommitted };
        c.common.client_id = client_id;
        Ok(c)
    }

    /// Whether exactly_once_v2 is on.
    pub fn exactly_once(&self) -> bool {
        self.processing_guarantee == ProcessingGuarantee::ExactlyOnceV2
    }
}
