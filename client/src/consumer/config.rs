//! Consumer settings, by Kafka's property names and as a typed builder.

use std::sync::Arc;
use std::time::Duration;

use super::assignor::{Assignor, CustomAssignor};
use crate::config::{parse, parse_bool, parse_ms, unknown_key, CommonConfig};
use crate::error::{Error, Result};

/// Where to start when a partition has no committed offset (`auto.offset.reset`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetReset {
    /// The oldest retained record.
    Earliest,
    /// Only records produced from now on.
    Latest,
    /// Fail: the application must seek.
    None,
}

/// Which records a fetch may return (`isolation.level`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IsolationLevel {
    /// Everything up to the high watermark.
    ReadUncommitted,
    /// Only committed transactional records (up to the last stable offset).
    ReadCommitted,
}

impl IsolationLevel {
    /// The wire value.
    pub fn wire(self) -> i8 {
        match self {
            IsolationLevel::ReadUncommitted => 0,
            IsolationLevel::ReadCommitted => 1,
        }
    }
}

/// Consumer configuration. Defaults follow the Java client.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// Settings shared with other clients.
    pub common: CommonConfig,
    /// `group.id`: needed for `subscribe` and for committing offsets.
    pub group_id: Option<String>,
    /// `group.instance.id`: static membership (KIP-345).
    pub group_instance_id: Option<String>,
    /// `auto.offset.reset`.
    pub auto_offset_reset: OffsetReset,
    /// `enable.auto.commit`.
    pub enable_auto_commit: bool,
    /// `auto.commit.interval.ms`.
    pub auto_commit_interval: Duration,
    /// `session.timeout.ms`.
    pub session_timeout: Duration,
    /// `heartbeat.interval.ms`.
    pub heartbeat_interval: Duration,
    /// `max.poll.interval.ms`: longest gap between polls before the member leaves.
    pub max_poll_interval: Duration,
    /// `max.poll.records`.
    pub max_poll_records: usize,
    /// `fetch.min.bytes`.
    pub fetch_min_bytes: i32,
    /// `fetch.max.bytes`.
    pub fetch_max_bytes: i32,
    /// `fetch.max.wait.ms`.
    pub fetch_max_wait: Duration,
    /// `max.partition.fetch.bytes`.
    pub max_partition_fetch_bytes: i32,
    /// `isolation.level`.
    pub isolation_level: IsolationLevel,
    /// `partition.assignment.strategy`, in order of preference.
    pub assignors: Vec<Assignor>,
    /// An application's assignor; when set, the member offers only it (and `assignors`
    /// is ignored).
    pub custom_assignor: Option<Arc<dyn CustomAssignor>>,
    /// `allow.auto.create.topics`.
    pub allow_auto_create_topics: bool,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        ConsumerConfig {
            common: CommonConfig::default(),
            group_id: None,
            group_instance_id: None,
            auto_offset_reset: OffsetReset::Latest,
            enable_auto_commit: true,
            auto_commit_interval: Duration::from_secs(5),
            session_timeout: Duration::from_secs(45),
            heartbeat_interval: Duration::from_secs(3),
            max_poll_interval: Duration::from_secs(300),
            max_poll_records: 500,
            fetch_min_bytes: 1,
            fetch_max_bytes: 50 * 1024 * 1024,
            fetch_max_wait: Duration::from_millis(500),
            max_partition_fetch_bytes: 1024 * 1024,
            isolation_level: IsolationLevel::ReadUncommitted,
            assignors: vec![Assignor::Range, Assignor::CooperativeSticky],
            custom_assignor: None,
            allow_auto_create_topics: true,
        }
    }
}

const KEYS: &[&str] = &[
    "group.id",
    "group.instance.id",
    "auto.offset.reset",
    "enable.auto.commit",
    "auto.commit.interval.ms",
    "session.timeout.ms",
    "heartbeat.interval.ms",
    "max.poll.interval.ms",
    "max.poll.records",
    "fetch.min.bytes",
    "fetch.max.bytes",
    "fetch.max.wait.ms",
    "max.partition.fetch.bytes",
    "isolation.level",
    "partition.assignment.strategy",
    "allow.auto.create.topics",
];

crate::config::property_constructors!(ConsumerConfig);

impl ConsumerConfig {
    /// Sets one property by its Kafka name.
    pub fn set(&mut self, key: &str, value: &str) -> Result<&mut Self> {
        if self.common.set(key, value)? {
            return Ok(self);
        }
        match key {
            "group.id" => self.group_id = Some(value.to_string()).filter(|g| !g.is_empty()),
            "group.instance.id" => self.group_instance_id = Some(value.to_string()).filter(|g| !g.is_empty()),
            "auto.offset.reset" => {
                self.auto_offset_reset = match value.trim() {
                    "earliest" | "smallest" | "beginning" => OffsetReset::Earliest,
                    "latest" | "largest" | "end" => OffsetReset::Latest,
                    "none" | "error" => OffsetReset::None,
                    other => return Err(Error::Config(format!("`auto.offset.reset` = `{other}` must be earliest, latest or none"))),
                }
            }
            "enable.auto.commit" => self.enable_auto_commit = parse_bool(key, value)?,
            "auto.commit.interval.ms" => self.auto_commit_interval = parse_ms(key, value)?,
            "session.timeout.ms" => self.session_timeout = parse_ms(key, value)?,
            "heartbeat.interval.ms" => self.heartbeat_interval = parse_ms(key, value)?,
            "max.poll.interval.ms" => self.max_poll_interval = parse_ms(key, value)?,
            "max.poll.records" => self.max_poll_records = parse::<usize>(key, value)?.max(1),
            "fetch.min.bytes" => self.fetch_min_bytes = parse(key, value)?,
            "fetch.max.bytes" => self.fetch_max_bytes = parse(key, value)?,
            "fetch.max.wait.ms" => self.fetch_max_wait = parse_ms(key, value)?,
            "max.partition.fetch.bytes" => self.max_partition_fetch_bytes = parse(key, value)?,
            "isolation.level" => {
                self.isolation_level = match value.trim() {
                    "read_uncommitted" => IsolationLevel::ReadUncommitted,
                    "read_committed" => IsolationLevel::ReadCommitted,
                    other => return Err(Error::Config(format!("`isolation.level` = `{other}` must be read_uncommitted or read_committed"))),
                }
            }
            "partition.assignment.strategy" => {
                let mut list = Vec::new();
                for name in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                    list.push(Assignor::parse(name).ok_or_else(|| {
                        Error::Config(format!("`partition.assignment.strategy`: unknown assignor `{name}`; use range or cooperative-sticky"))
                    })?);
                }
                if list.is_empty() {
                    return Err(Error::Config("`partition.assignment.strategy` is empty".into()));
                }
                self.assignors = list;
            }
            "allow.auto.create.topics" => self.allow_auto_create_topics = parse_bool(key, value)?,
            _ => return Err(unknown_key("consumer", key, KEYS)),
        }
        Ok(self)
    }

    /// Builder: `group.id`.
    pub fn group_id(mut self, group: impl Into<String>) -> Self {
        self.group_id = Some(group.into());
        self
    }

    /// Builder: `auto.offset.reset`.
    pub fn auto_offset_reset(mut self, reset: OffsetReset) -> Self {
        self.auto_offset_reset = reset;
        self
    }

    /// Builder: `enable.auto.commit`.
    pub fn enable_auto_commit(mut self, on: bool) -> Self {
        self.enable_auto_commit = on;
        self
    }

    /// Builder: `partition.assignment.strategy`.
    pub fn assignors(mut self, assignors: Vec<Assignor>) -> Self {
        self.assignors = assignors;
        self
    }

    /// Builder: an application's assignor, offered alone in place of `assignors`.
    pub fn custom_assignor(mut self, assignor: Arc<dyn CustomAssignor>) -> Self {
        self.custom_assignor = Some(assignor);
        self
    }

    /// Builder: `isolation.level`.
    pub fn isolation_level(mut self, level: IsolationLevel) -> Self {
        self.isolation_level = level;
        self
    }

    /// Builder: `session.timeout.ms`.
    pub fn session_timeout(mut self, d: Duration) -> Self {
        self.session_timeout = d;
        self
    }

    /// Builder: `heartbeat.interval.ms`.
    pub fn heartbeat_interval(mut self, d: Duration) -> Self {
        self.heartbeat_interval = d;
        self
    }

    /// Builder: `max.poll.interval.ms`.
    pub fn max_poll_interval(mut self, d: Duration) -> Self {
        self.max_poll_interval = d;
        self
    }
}
