//! Producer settings, by Kafka's property names and as a typed builder.

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
];

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
            "enable.idempotence" => {
                if crate::config::parse_bool(key, value)? {
                    return Err(Error::Config(
                        "`enable.idempotence` = true is not supported yet by Samsa's producer; set it to false".into(),
                    ));
                }
            }
            _ => return Err(unknown_key("producer", key, KEYS)),
        }
        Ok(self)
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
