//! Producer settings, by Kafka's property names and as a typed builder.
//!
//! Idempotence is on by default (as in Kafka 3+); [`ProducerConfig::idempotence`] applies
//! Kafka's rules for settings that rule it out (acks other than all, `retries=0`, more than
//! 5 requests in flight): an explicit `enable.idempotence=true` makes them an error, the
//! default quietly turns idempotence off. A `transactional.id` needs idempotence.

use std::time::Duration;

use kafka_protocol::records::Compression;

use crate::config::{parse, parse_ms, unknown_key, CommonConfig};
use crate::error::{Error, Result};

/// How many replicas must have a record before the broker acknowledges it (`acks`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acks {
    /// `acks=0`: fire and forget; no offsets come back.
    None,
    /// `acks=1`: the leader has it.
    Leader,
    /// `acks=all` (`-1`): every in-sync replica has it.
    All,
}

impl Acks {
    /// The wire value.
    pub fn wire(self) -> i16 {
        match self {
            Acks::None => 0,
            Acks::Leader => 1,
            Acks::All => -1,
        }
    }

    /// Parses `0`, `1`, `all` or `-1`.
    pub fn parse(s: &str) -> Result<Acks> {
        match s.trim() {
            "0" => Ok(Acks::None),
            "1" => Ok(Acks::Leader),
            "all" | "-1" => Ok(Acks::All),
            other => Err(Error::Config(format!("`acks` = `{other}` must be 0, 1 or all"))),
        }
    }
}

/// Parses a `compression.type` value.
pub fn parse_compression(s: &str) -> Result<Compression> {
    match s.trim() {
        "none" => Ok(Compression::None),
        "gzip" => Ok(Compression::Gzip),
        "snappy" => Ok(Compression::Snappy),
        "lz4" => Ok(Compression::Lz4),
        "zstd" => Ok(Compression::Zstd),
        other => Err(Error::Config(format!("`compression.type` = `{other}` must be one of none, gzip, snappy, lz4, zstd"))),
    }
}

/// Producer configuration. Defaults follow the Java client (Kafka 4).
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    /// Settings shared with other clients.
    pub common: CommonConfig,
    /// `acks`.
    pub acks: Acks,
    /// `batch.size`: bytes per partition batch before it is sent.
    pub batch_size: usize,
    /// `linger.ms`: how long a batch waits for more records.
    pub linger: Duration,
    /// `compression.type`.
    pub compression: Compression,
    /// `buffer.memory`: bytes of unsent records before `send` waits.
    pub buffer_memory: usize,
    /// `max.block.ms`: how long `send` waits for buffer space or topic metadata.
    pub max_block: Duration,
    /// `max.request.size`: largest request (and so record) sent.
    pub max_request_size: usize,
    /// `max.in.flight.requests.per.connection`.
    pub max_in_flight: usize,
    /// `retries`.
    pub retries: u32,
    /// `delivery.timeout.ms`: bound on the time from `send` to success or failure.
    pub delivery_timeout: Duration,
    /// `enable.idempotence`: `None` is the default (on, unless other settings rule it
    /// out); see [`ProducerConfig::idempotence`].
    pub enable_idempotence: Option<bool>,
    /// `transactional.id`: makes the producer transactional (and idempotent).
    pub transactional_id: Option<String>,
    /// `transaction.timeout.ms`: the coordinator aborts a transaction open this long.
    pub transaction_timeout: Duration,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        ProducerConfig {
            common: CommonConfig::default(),
            acks: Acks::All,
            batch_size: 16 * 1024,
            linger: Duration::from_millis(5),
            compression: Compression::None,
            buffer_memory: 32 * 1024 * 1024,
            max_block: Duration::from_secs(60),
            max_request_size: 1024 * 1024,
            max_in_flight: 5,
            retries: i32::MAX as u32,
            delivery_timeout: Duration::from_secs(120),
            enable_idempotence: None,
            transactional_id: None,
            transaction_timeout: Duration::from_secs(60),
        }
    }
}

const KEYS: &[&str] = &[
    "acks",
    "batch.size",
    "linger.ms",
    "compression.type",
    "buffer.memory",
    "max.block.ms",
    "max.request.size",
    "max.in.flight.requests.per.connection",
    "retries",
    "delivery.timeout.ms",
    "enable.idempotence",
    "transactional.id",
    "transaction.timeout.ms",
];

/// Most requests per connection an idempotent producer may have in flight: the broker
/// remembers the last 5 batches per producer to detect duplicates.
pub const MAX_IN_FLIGHT_IDEMPOTENT: usize = 5;

crate::config::property_constructors!(ProducerConfig);

impl ProducerConfig {
    /// Sets one property by its Kafka name.
    pub fn set(&mut self, key: &str, value: &str) -> Result<&mut Self> {
        if self.common.set(key, value)? {
            return Ok(self);
        }
        match key {
            "acks" => self.acks = Acks::parse(value)?,
            "batch.size" => self.batch_size = parse(key, value)?,
            "linger.ms" => self.linger = parse_ms(key, value)?,
            "compression.type" => self.compression = parse_compression(value)?,
            "buffer.memory" => self.buffer_memory = parse(key, value)?,
            "max.block.ms" => self.max_block = parse_ms(key, value)?,
            "max.request.size" => self.max_request_size = parse(key, value)?,
            "max.in.flight.requests.per.connection" => {
                self.max_in_flight = parse(key, value)?;
                if self.max_in_flight == 0 {
                    return Err(Error::Config("`max.in.flight.requests.per.connection` must be at least 1".into()));
                }
            }
            "retries" => self.retries = parse(key, value)?,
            "delivery.timeout.ms" => self.delivery_timeout = parse_ms(key, value)?,
            "enable.idempotence" => self.enable_idempotence = Some(crate::config::parse_bool(key, value)?),
            "transactional.id" => {
                let id = value.trim();
                self.transactional_id = (!id.is_empty()).then(|| id.to_string());
            }
            "transaction.timeout.ms" => {
                self.transaction_timeout = parse_ms(key, value)?;
                if self.transaction_timeout.is_zero() || self.transaction_timeout.as_millis() > i32::MAX as u128 {
                    return Err(Error::Config(format!("`transaction.timeout.ms` = `{value}` must be between 1 and {}", i32::MAX)));
                }
            }
            _ => return Err(unknown_key("producer", key, KEYS)),
        }
        Ok(self)
    }

    /// Whether the producer is idempotent, by Kafka's rules: on by default, quietly off
    /// when acks, retries or max.in.flight rule it out, an error when `enable.idempotence`
    /// was set to true (or a `transactional.id` given) together with such a setting.
    pub fn idempotence(&self) -> Result<bool> {
        let conflict = if self.acks != Acks::All {
            Some("`acks` must be all (-1)")
        } else if self.retries == 0 {
            Some("`retries` must be greater than 0")
        } else if self.max_in_flight > MAX_IN_FLIGHT_IDEMPOTENT {
            Some("`max.in.flight.requests.per.connection` must be at most 5")
        } else {
            None
        };
        let transactional = self.transactional_id.is_some();
        match (self.enable_idempotence, conflict) {
            (Some(false), _) if transactional => {
                Err(Error::Config("`transactional.id` needs idempotence; remove `enable.idempotence` = false or the transactional.id".into()))
            }
            (Some(false), _) => Ok(false),
            (Some(true), Some(rule)) => Err(Error::Config(format!(
                "{rule} with `enable.idempotence` = true; change it, or set enable.idempotence=false to give up exactly-once delivery"
            ))),
            (None, Some(rule)) if transactional => Err(Error::Config(format!("{rule} for a transactional producer (`transactional.id` is set)"))),
            (None, Some(_)) => Ok(false),
            (_, None) => Ok(true),
        }
    }

    /// Builder: `enable.idempotence`.
    pub fn idempotent(mut self, on: bool) -> Self {
        self.enable_idempotence = Some(on);
        self
    }

    /// Builder: `transactional.id`.
    pub fn transactional_id(mut self, id: impl Into<String>) -> Self {
        self.transactional_id = Some(id.into());
        self
    }

    /// Builder: `transaction.timeout.ms`.
    pub fn transaction_timeout(mut self, d: Duration) -> Self {
        self.transaction_timeout = d;
        self
    }

    /// Builder: `acks`.
    pub fn acks(mut self, acks: Acks) -> Self {
        self.acks = acks;
        self
    }

    /// Builder: `linger.ms`.
    pub fn linger(mut self, linger: Duration) -> Self {
        self.linger = linger;
        self
    }

    /// Builder: `batch.size`.
    pub fn batch_size(mut self, bytes: usize) -> Self {
        self.batch_size = bytes;
        self
    }

    /// Builder: `compression.type`.
    pub fn compression(mut self, compression: Compression) -> Self {
        self.compression = compression;
        self
    }

    /// Builder: `buffer.memory`.
    pub fn buffer_memory(mut self, bytes: usize) -> Self {
        self.buffer_memory = bytes;
        self
    }

    /// Builder: `max.block.ms`.
    pub fn max_block(mut self, d: Duration) -> Self {
        self.max_block = d;
        self
    }

    /// Builder: `delivery.timeout.ms`.
    pub fn delivery_timeout(mut self, d: Duration) -> Self {
        self.delivery_timeout = d;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(pairs: &[(&str, &str)]) -> Result<bool> {
        ProducerConfig::from_properties(pairs.iter().copied())?.idempotence()
    }

    #[test]
    fn idempotence_is_on_by_default() {
        assert!(config(&[]).unwrap());
        assert!(config(&[("acks", "all"), ("max.in.flight.requests.per.connection", "5")]).unwrap());
        assert!(!config(&[("enable.idempotence", "false")]).unwrap());
    }

    #[test]
    fn conflicting_settings_turn_default_idempotence_off() {
        assert!(!config(&[("acks", "1")]).unwrap());
        assert!(!config(&[("acks", "0")]).unwrap());
        assert!(!config(&[("retries", "0")]).unwrap());
        assert!(!config(&[("max.in.flight.requests.per.connection", "6")]).unwrap());
    }

    #[test]
    fn conflicting_settings_with_explicit_idempotence_are_errors() {
        for (k, v) in [("acks", "1"), ("acks", "0"), ("retries", "0"), ("max.in.flight.requests.per.connection", "6")] {
            // Either order of the two keys.
            for pairs in [[("enable.idempotence", "true"), (k, v)], [(k, v), ("enable.idempotence", "true")]] {
                let e = config(&pairs).unwrap_err();
                assert!(matches!(e, Error::Config(ref m) if m.contains(k) && m.contains("enable.idempotence")), "{k}={v}: {e}");
            }
        }
    }

    #[test]
    fn transactional_id_needs_idempotence() {
        assert!(config(&[("transactional.id", "tx")]).unwrap());
        let e = config(&[("transactional.id", "tx"), ("enable.idempotence", "false")]).unwrap_err();
        assert!(e.to_string().contains("transactional.id"), "{e}");
        let e = config(&[("transactional.id", "tx"), ("acks", "1")]).unwrap_err();
        assert!(e.to_string().contains("acks"), "{e}");
    }

    #[test]
    fn transaction_settings_parse() {
        let c = ProducerConfig::from_properties([("transactional.id", "orders-tx"), ("transaction.timeout.ms", "15000")]).unwrap();
        assert_eq!(c.transactional_id.as_deref(), Some("orders-tx"));
        assert_eq!(c.transaction_timeout, Duration::from_secs(15));
        assert_eq!(ProducerConfig::default().transaction_timeout, Duration::from_secs(60));
        assert!(ProducerConfig::from_properties([("transaction.timeout.ms", "0")]).is_err());
        assert!(ProducerConfig::from_properties([("enable.idempotence", "yes")]).is_err());
    }
}
