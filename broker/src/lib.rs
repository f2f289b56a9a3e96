//! Samsa's Kafka-compatible broker.
//!
//! ```text
//!  TCP ──> server (framing, limits) ──> api::dispatch (one match, one file per API)
//!                                           │
//!              ┌────────────────────────────┼──────────────────────┐
//!              v                            v                      v
//!        topics::TopicManager        group::Coordinator      config::BrokerConfig
//!     (topic metadata, partition    (classic group protocol,
//!      logs, retention/cleaner)      offsets in __consumer_offsets)
//!              │
//!              v
//!        log::PartitionLog ──> log::Segment (.log/.index/.timeindex)
//! ```
//!
//! Record batches are stored and served as the bytes producers sent; the broker rewrites
//! only base offset and leader epoch (DESIGN §3).

pub mod admin;
pub mod api;
pub mod config;
pub mod error;
pub mod group;
pub mod log;
pub mod meta;
pub mod metrics;
pub mod replica;
pub mod security;
pub mod server;
pub mod topics;
pub mod txn;

pub use config::BrokerConfig;
pub use error::{Error, Result};
pub use server::{Broker, BrokerOptions};

/// Milliseconds since the Unix epoch, the clock of record timestamps.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
