//! Broker and topic configuration, by Kafka's property names.
//!
//! One table ([`DEFS`]) lists every key Samsa understands: its broker name, the per-topic
//! name that overrides it (if any), its type and default. Parsing, validation,
//! DescribeConfigs and topic overrides all read that table, so a key cannot be accepted in
//! one place and unknown in another.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use crate::{Error, Result};

/// The value type of a config key, with its accepted range.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// A signed integer within `[min, max]`.
    Int {
        /// Smallest accepted value.
        min: i64,
        /// Largest accepted value.
        max: i64,
    },
    /// A decimal number within `[min, max]`.
    Float {
        /// Smallest accepted value.
        min: f64,
        /// Largest accepted value.
        max: f64,
    },
    /// `true` or `false`.
    Bool,
    /// One of a fixed set of words (or a comma list of them when `list` is set).
    Choice {
        /// Accepted words.
        values: &'static [&'static str],
        /// Whether a comma-separated list of the words is accepted.
        list: bool,
    },
    /// Free text (addresses, file paths, principal lists), checked where it is used.
    Text,
}

/// One config key.
#[derive(Debug, Clone, Copy)]
pub struct Def {
    /// Broker-level name (`log.retention.ms`).
    pub name: &'static str,
    /// Topic-level name that overrides it (`retention.ms`), if topics may override it.
    pub topic_name: Option<&'static str>,
    /// Type and range.
    pub kind: Kind,
    /// Default value as text.
    pub default: &'static str,
    /// One-line explanation.
    pub doc: &'static str,
}

const I64: i64 = i64::MAX;
const I32: i64 = i32::MAX as i64;

/// Every config key the broker accepts.
pub const DEFS: &[Def] = &[
    Def { name: "num.partitions", topic_name: None, kind: Kind::Int { min: 1, max: 100_000 }, default: "1", doc: "partitions of auto-created topics" },
    Def { name: "default.replication.factor", topic_name: None, kind: Kind::Int { min: 1, max: 32767 }, default: "1", doc: "replication factor of auto-created topics" },
    Def { name: "min.insync.replicas", topic_name: Some("min.insync.replicas"), kind: Kind::Int { min: 1, max: 32767 }, default: "1", doc: "acks=all writes need this many in-sync replicas, else NOT_ENOUGH_REPLICAS" },
    Def { name: "unclean.leader.election.enable", topic_name: Some("unclean.leader.election.enable"), kind: Kind::Bool, default: "false", doc: "elect a leader outside the ISR (losing data); only false is supported" },
    Def { name: "replica.lag.time.max.ms", topic_name: None, kind: Kind::Int { min: 100, max: I64 }, default: "30000", doc: "a follower that has not caught up for this long leaves the ISR" },
    Def { name: "replica.fetch.wait.max.ms", topic_name: None, kind: Kind::Int { min: 0, max: I32 }, default: "500", doc: "how long a follower's fetch waits for new data" },
    Def { name: "replica.fetch.max.bytes", topic_name: None, kind: Kind::Int { min: 1024, max: I32 }, default: "10485760", doc: "most bytes a follower fetches per request" },
    Def { name: "broker.heartbeat.interval.ms", topic_name: None, kind: Kind::Int { min: 10, max: I32 }, default: "500", doc: "how often a broker heartbeats to the active controller" },
    Def { name: "broker.session.timeout.ms", topic_name: None, kind: Kind::Int { min: 100, max: I32 }, default: "3000", doc: "a broker silent this long is fenced and loses its leaderships" },
    Def { name: "leader.imbalance.check.interval.seconds", topic_name: None, kind: Kind::Int { min: 1, max: I32 }, default: "10", doc: "how often leadership moves back to preferred replicas" },
    Def { name: "controlled.shutdown.timeout.ms", topic_name: None, kind: Kind::Int { min: 0, max: I32 }, default: "10000", doc: "on SIGTERM, wait at most this long for leadership to move away" },
    Def { name: "offsets.topic.replication.factor", topic_name: None, kind: Kind::Int { min: 1, max: 32767 }, default: "3", doc: "replication factor of __consumer_offsets (capped at the live brokers)" },
    Def { name: "auto.create.topics.enable", topic_name: None, kind: Kind::Bool, default: "true", doc: "create a topic when a client asks for an unknown one" },
    Def { name: "log.segment.bytes", topic_name: Some("segment.bytes"), kind: Kind::Int { min: 1024, max: I32 }, default: "1073741824", doc: "roll a new segment when the active one reaches this size" },
    Def { name: "log.roll.ms", topic_name: Some("segment.ms"), kind: Kind::Int { min: 1, max: I64 }, default: "604800000", doc: "roll a new segment when the active one is this old" },
    Def { name: "log.retention.ms", topic_name: Some("retention.ms"), kind: Kind::Int { min: -1, max: I64 }, default: "604800000", doc: "delete segments whose newest record is older than this (-1: never)" },
    Def { name: "log.retention.bytes", topic_name: Some("retention.bytes"), kind: Kind::Int { min: -1, max: I64 }, default: "-1", doc: "delete oldest segments while a partition is larger than this (-1: no limit)" },
    Def { name: "log.cleanup.policy", topic_name: Some("cleanup.policy"), kind: Kind::Choice { values: &["delete", "compact"], list: true }, default: "delete", doc: "delete old segments, compact to the last value per key, or both" },
    Def { name: "log.cleaner.delete.retention.ms", topic_name: Some("delete.retention.ms"), kind: Kind::Int { min: 0, max: I64 }, default: "86400000", doc: "how long compaction keeps tombstones" },
    Def { name: "log.cleaner.min.compaction.lag.ms", topic_name: Some("min.compaction.lag.ms"), kind: Kind::Int { min: 0, max: I64 }, default: "0", doc: "records younger than this are never compacted" },
    Def { name: "log.cleaner.min.cleanable.ratio", topic_name: Some("min.cleanable.dirty.ratio"), kind: Kind::Float { min: 0.0, max: 1.0 }, default: "0.5", doc: "compact when this share of the log is uncompacted" },
    Def { name: "log.cleaner.enable", topic_name: None, kind: Kind::Bool, default: "true", doc: "run compaction for compacted topics" },
    Def { name: "log.cleaner.backoff.ms", topic_name: None, kind: Kind::Int { min: 10, max: I64 }, default: "15000", doc: "pause between compaction passes" },
    Def { name: "log.retention.check.interval.ms", topic_name: None, kind: Kind::Int { min: 10, max: I64 }, default: "300000", doc: "how often retention runs" },
    Def { name: "log.index.interval.bytes", topic_name: Some("index.interval.bytes"), kind: Kind::Int { min: 0, max: I32 }, default: "4096", doc: "bytes between offset-index entries" },
    Def { name: "log.flush.interval.messages", topic_name: Some("flush.messages"), kind: Kind::Int { min: 1, max: I64 }, default: "9223372036854775807", doc: "fsync a partition after this many appended records" },
    Def { name: "log.flush.interval.ms", topic_name: Some("flush.ms"), kind: Kind::Int { min: 0, max: I64 }, default: "1000", doc: "fsync partitions with unflushed data this often" },
    Def { name: "log.message.timestamp.type", topic_name: Some("message.timestamp.type"), kind: Kind::Choice { values: &["CreateTime", "LogAppendTime"], list: false }, default: "CreateTime", doc: "keep the producer's timestamps or stamp append time" },
    Def { name: "message.max.bytes", topic_name: Some("max.message.bytes"), kind: Kind::Int { min: 0, max: I32 }, default: "1048588", doc: "largest record batch a producer may send" },
    Def { name: "socket.request.max.bytes", topic_name: None, kind: Kind::Int { min: 1, max: I32 }, default: "104857600", doc: "largest request frame; bigger frames close the connection" },
    Def { name: "max.connections", topic_name: None, kind: Kind::Int { min: 1, max: I32 }, default: "10000", doc: "client connections served at once" },
    Def { name: "fetch.max.bytes", topic_name: None, kind: Kind::Int { min: 1024, max: I32 }, default: "57671680", doc: "most bytes one Fetch response carries" },
    Def { name: "group.initial.rebalance.delay.ms", topic_name: None, kind: Kind::Int { min: 0, max: I32 }, default: "3000", doc: "wait this long for more members when an empty group forms" },
    Def { name: "group.min.session.timeout.ms", topic_name: None, kind: Kind::Int { min: 0, max: I32 }, default: "6000", doc: "smallest session timeout a member may ask for" },
    Def { name: "group.max.session.timeout.ms", topic_name: None, kind: Kind::Int { min: 0, max: I32 }, default: "1800000", doc: "largest session timeout a member may ask for" },
    Def { name: "offsets.topic.num.partitions", topic_name: None, kind: Kind::Int { min: 1, max: 1000 }, default: "50", doc: "partitions of __consumer_offsets (fixed once created)" },
    Def { name: "transaction.state.log.num.partitions", topic_name: None, kind: Kind::Int { min: 1, max: 1000 }, default: "50", doc: "partitions of __transaction_state (fixed once created)" },
    Def { name: "transaction.state.log.replication.factor", topic_name: None, kind: Kind::Int { min: 1, max: 32767 }, default: "3", doc: "replication factor of __transaction_state (capped at the live brokers)" },
    Def { name: "transaction.state.log.segment.bytes", topic_name: None, kind: Kind::Int { min: 1024, max: I32 }, default: "104857600", doc: "segment size of __transaction_state" },
    Def { name: "transaction.max.timeout.ms", topic_name: None, kind: Kind::Int { min: 1, max: I32 }, default: "900000", doc: "largest transaction.timeout.ms a producer may ask for" },
    Def { name: "transaction.abort.timed.out.transaction.cleanup.interval.ms", topic_name: None, kind: Kind::Int { min: 10, max: I32 }, default: "10000", doc: "how often the coordinator aborts transactions open past their timeout" },
    Def { name: "transactional.id.expiration.ms", topic_name: None, kind: Kind::Int { min: 1, max: I32 }, default: "604800000", doc: "forget a transactional id idle this long" },
    Def { name: "producer.id.expiration.ms", topic_name: None, kind: Kind::Int { min: 1, max: I32 }, default: "86400000", doc: "forget a producer's sequence state in a partition after this long without writes" },
    Def { name: "transaction.marker.delay.ms", topic_name: None, kind: Kind::Int { min: 0, max: I32 }, default: "0", doc: "testing aid: wait this long after a transaction is prepared before writing its markers" },
    Def { name: "listeners", topic_name: None, kind: Kind::Text, default: "", doc: "client listeners, NAME://HOST:PORT,... (e.g. PLAINTEXT://127.0.0.1:9092,SASL_SSL://127.0.0.1:9093); when set, wins over --listen" },
    Def { name: "listener.security.protocol.map", topic_name: None, kind: Kind::Text, default: "PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL", doc: "listener name to security protocol, NAME:PROTOCOL,..." },
    Def { name: "ssl.certificate.location", topic_name: None, kind: Kind::Text, default: "", doc: "TLS listeners: the server certificate chain, a PEM file (reloaded when it changes)" },
    Def { name: "ssl.key.location", topic_name: None, kind: Kind::Text, default: "", doc: "TLS listeners: the server's private key, a PEM file (reloaded when it changes)" },
    Def { name: "ssl.ca.location", topic_name: None, kind: Kind::Text, default: "", doc: "TLS listeners: CA certificates (PEM) that client certificates must chain to" },
    Def { name: "ssl.client.auth", topic_name: None, kind: Kind::Choice { values: &["none", "requested", "required"], list: false }, default: "none", doc: "TLS listeners: ask for client certificates (principal User:<subject>)" },
    Def { name: "sasl.enabled.mechanisms", topic_name: None, kind: Kind::Choice { values: &["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"], list: true }, default: "SCRAM-SHA-256,SCRAM-SHA-512,PLAIN", doc: "SASL listeners: the mechanisms clients may use (users: samsa user add)" },
    Def { name: "authorizer.enabled", topic_name: None, kind: Kind::Bool, default: "false", doc: "check ACLs on every request (deny unless allowed; samsa acl add)" },
    Def { name: "super.users", topic_name: None, kind: Kind::Text, default: "", doc: "principals that pass every ACL check, e.g. User:admin;User:ops" },
    Def { name: "inter.broker.listener.name", topic_name: None, kind: Kind::Text, default: "", doc: "the listener brokers replicate and send transaction markers over (default: the first)" },
    Def { name: "inter.broker.client.config", topic_name: None, kind: Kind::Text, default: "", doc: "client properties (security.protocol, ssl.*, sasl.*) brokers use on it; its principal needs ClusterAction (or super.users) with the authorizer on" },
    Def { name: "controller.ssl.enabled", topic_name: None, kind: Kind::Bool, default: "false", doc: "mutual TLS on --controller-listen: every node presents ssl.certificate.location and checks its peers against ssl.ca.location" },
    Def { name: "internal.listener", topic_name: None, kind: Kind::Text, default: "", doc: "the listener the server's own SQL engine and Connect worker use (default: the first PLAINTEXT one)" },
    Def { name: "internal.client.config", topic_name: None, kind: Kind::Text, default: "", doc: "a client properties file for them (security.protocol, sasl.*, ssl.*): the principal they act as" },
    Def { name: "offsets.topic.segment.bytes", topic_name: None, kind: Kind::Int { min: 1024, max: I32 }, default: "104857600", doc: "segment size of __consumer_offsets" },
];

/// Looks up a key by its broker name.
pub fn def(name: &str) -> Option<&'static Def> {
    DEFS.iter().find(|d| d.name == name)
}

/// Looks up a key by its topic-level name.
pub fn topic_def(name: &str) -> Option<&'static Def> {
    DEFS.iter().find(|d| d.topic_name == Some(name))
}

/// Names of topic-level keys Kafka has that Samsa accepts but does not act on yet, so
/// admin tools that set them do not fail.
const ACCEPTED_TOPIC_KEYS: &[&str] = &["compression.type"];

/// Checks that `value` is acceptable for `def`, returning a plain-language reason if not.
pub fn check_value(def: &Def, value: &str) -> std::result::Result<(), String> {
    match def.kind {
        Kind::Int { min, max } => match value.trim().parse::<i64>() {
            Ok(v) if v >= min && v <= max => Ok(()),
            Ok(v) => Err(format!("{v} is out of range [{min}, {max}]")),
            Err(_) => Err(format!("expected an integer, got `{value}`")),
        },
        Kind::Float { min, max } => match value.trim().parse::<f64>() {
            Ok(v) if v >= min && v <= max => Ok(()),
            Ok(v) => Err(format!("{v} is out of range [{min}, {max}]")),
            Err(_) => Err(format!("expected a number, got `{value}`")),
        },
        Kind::Bool => match value.trim() {
            "true" | "false" => Ok(()),
            _ => Err(format!("expected true or false, got `{value}`")),
        },
        Kind::Text => Ok(()),
        Kind::Choice { values, list } => {
            let items: Vec<&str> = if list { value.split(',').map(str::trim).collect() } else { vec![value.trim()] };
            for item in items {
                if !values.contains(&item) {
                    return Err(format!("expected one of {}, got `{item}`", values.join(", ")));
                }
            }
            Ok(())
        }
    }
}

/// Validates topic-level overrides (CreateTopics configs, AlterConfigs).
pub fn check_topic_config(name: &str, value: &str) -> std::result::Result<(), String> {
    if ACCEPTED_TOPIC_KEYS.contains(&name) {
        return Ok(());
    }
    if name == "unclean.leader.election.enable" && value.trim() == "true" {
        return Err("unclean.leader.election.enable=true is not supported: Samsa elects leaders from the ISR only, so acknowledged writes are never lost".into());
    }
    match topic_def(name) {
        Some(d) => check_value(d, value).map_err(|e| format!("topic config `{name}`: {e}")),
        None => Err(format!("unknown topic config `{name}`")),
    }
}

/// Validated broker configuration: broker-level keys with their values as text.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    values: BTreeMap<&'static str, String>,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self { values: DEFS.iter().map(|d| (d.name, d.default.to_string())).collect() }
    }
}

impl BrokerConfig {
    /// Parses a Java-properties style file (`key=value`, `#` comments).
    pub fn load_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Config(format!("cannot read config file {}: {e}", path.display())))?;
        let mut cfg = Self::default();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
                continue;
            }
            let Some((k, v)) = line.split_once(['=', ':']) else {
                return Err(Error::Config(format!(
                    "{}:{}: expected `key=value`, got `{line}`",
                    path.display(),
                    n + 1
                )));
            };
            cfg.set(k.trim(), v.trim())
                .map_err(|e| Error::Config(format!("{}:{}: {e}", path.display(), n + 1)))?;
        }
        Ok(cfg)
    }

    /// Sets one key, validating name and value.
    pub fn set(&mut self, key: &str, value: &str) -> Result<()> {
        let def = def(key).ok_or_else(|| {
            let hint = topic_def(key).map(|d| format!(" (did you mean the broker key `{}`?)", d.name)).unwrap_or_default();
            Error::Config(format!("unknown config key `{key}`{hint}"))
        })?;
        check_value(def, value).map_err(|e| Error::Config(format!("config key `{key}`: {e}")))?;
        self.values.insert(def.name, value.trim().to_string());
        Ok(())
    }

    /// Parses `key=value` as given to `--set`.
    pub fn set_pair(&mut self, pair: &str) -> Result<()> {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| Error::Config(format!("--set expects key=value, got `{pair}`")))?;
        self.set(k.trim(), v.trim())
    }

    /// The value of a key as text.
    pub fn get(&self, key: &str) -> &str {
        self.values.get(key).map(String::as_str).unwrap_or_else(|| panic!("config key {key} missing from DEFS"))
    }

    /// An integer key.
    pub fn int(&self, key: &str) -> i64 {
        self.get(key).parse().expect("validated integer")
    }

    /// A boolean key.
    pub fn bool(&self, key: &str) -> bool {
        self.get(key) == "true"
    }

    /// A duration key in milliseconds.
    pub fn ms(&self, key: &str) -> Duration {
        Duration::from_millis(self.int(key).max(0) as u64)
    }

    /// The resolved log config of a topic with these overrides (topic-level names).
    pub fn log_config(&self, overrides: &BTreeMap<String, String>) -> LogConfig {
        let get = |broker_key: &str| -> String {
            let d = def(broker_key).expect("known key");
            d.topic_name
                .and_then(|t| overrides.get(t))
                .cloned()
                .unwrap_or_else(|| self.get(broker_key).to_string())
        };
        let int = |k: &str| get(k).parse::<i64>().unwrap_or(0);
        let policy = get("log.cleanup.policy");
        LogConfig {
            segment_bytes: int("log.segment.bytes") as u64,
            segment_ms: int("log.roll.ms"),
            retention_ms: int("log.retention.ms"),
            retention_bytes: int("log.retention.bytes"),
            delete: policy.split(',').any(|p| p.trim() == "delete"),
            compact: policy.split(',').any(|p| p.trim() == "compact"),
            delete_retention_ms: int("log.cleaner.delete.retention.ms"),
            min_compaction_lag_ms: int("log.cleaner.min.compaction.lag.ms"),
            min_cleanable_ratio: get("log.cleaner.min.cleanable.ratio").parse().unwrap_or(0.5),
            index_interval_bytes: int("log.index.interval.bytes") as u64,
            flush_messages: int("log.flush.interval.messages"),
            flush_ms: int("log.flush.interval.ms"),
            log_append_time: get("log.message.timestamp.type") == "LogAppendTime",
            max_message_bytes: int("message.max.bytes") as usize,
        }
    }
}

/// A partition's effective log settings: broker defaults with topic overrides applied.
#[derive(Debug, Clone, PartialEq)]
pub struct LogConfig {
    /// Roll the active segment at this size.
    pub segment_bytes: u64,
    /// Roll the active segment at this age.
    pub segment_ms: i64,
    /// Time retention (-1 = forever).
    pub retention_ms: i64,
    /// Size retention (-1 = unbounded).
    pub retention_bytes: i64,
    /// Retention deletes old segments.
    pub delete: bool,
    /// Compaction keeps the last value per key.
    pub compact: bool,
    /// How long tombstones survive compaction.
    pub delete_retention_ms: i64,
    /// Records younger than this are not compacted.
    pub min_compaction_lag_ms: i64,
    /// Dirty share of the log that triggers compaction.
    pub min_cleanable_ratio: f64,
    /// Bytes between offset-index entries.
    pub index_interval_bytes: u64,
    /// fsync after this many records.
    pub flush_messages: i64,
    /// fsync unflushed data this often.
    pub flush_ms: i64,
    /// Stamp batches with the broker's append time.
    pub log_append_time: bool,
    /// Largest batch accepted.
    pub max_message_bytes: usize,
}

impl Default for LogConfig {
    fn default() -> Self {
        BrokerConfig::default().log_config(&BTreeMap::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_and_bad_values_name_the_key() {
        let mut c = BrokerConfig::default();
        let e = c.set("log.segmnt.bytes", "10").unwrap_err().to_string();
        assert!(e.contains("log.segmnt.bytes"), "{e}");
        let e = c.set("num.partitions", "many").unwrap_err().to_string();
        assert!(e.contains("num.partitions") && e.contains("many"), "{e}");
        let e = c.set("retention.ms", "5").unwrap_err().to_string();
        assert!(e.contains("log.retention.ms"), "hint to broker key: {e}");
        c.set("num.partitions", "6").unwrap();
        assert_eq!(c.int("num.partitions"), 6);
    }

    #[test]
    fn topic_overrides_win() {
        let c = BrokerConfig::default();
        let mut o = BTreeMap::new();
        o.insert("cleanup.policy".to_string(), "compact,delete".to_string());
        o.insert("segment.bytes".to_string(), "2048".to_string());
        let l = c.log_config(&o);
        assert!(l.compact && l.delete);
        assert_eq!(l.segment_bytes, 2048);
        assert_eq!(l.retention_ms, 604_800_000);
        assert!(check_topic_config("cleanup.policy", "shred").is_err());
        assert!(check_topic_config("no.such", "1").is_err());
    }

    #[test]
    fn properties_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.properties");
        std::fs::write(&p, "# comment\nnum.partitions=3\nauto.create.topics.enable = false\n").unwrap();
        let c = BrokerConfig::load_file(&p).unwrap();
        assert_eq!(c.int("num.partitions"), 3);
        assert!(!c.bool("auto.create.topics.enable"));
        std::fs::write(&p, "num.partitions=3\nbogus.key=1\n").unwrap();
        let e = BrokerConfig::load_file(&p).unwrap_err().to_string();
        assert!(e.contains(":2:") && e.contains("bogus.key"), "{e}");
    }
}
