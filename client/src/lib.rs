//! Samsa's Kafka client crate.
//!
//! Today it holds the sans-IO [`wire`] codec that the broker and (later) the async
//! producer, consumer and admin client share:
//!
//! ```text
//!  socket bytes ──> wire::frame (length prefix, size limit) ──> wire::header (api key,
//!  version, correlation id peeked from raw bytes) ──> kafka-protocol typed messages
//! ```
//!
//! Nothing in [`wire`] touches tokio or any domain type: handlers convert at the boundary.

pub mod wire;
