//! Samsa's async Kafka client: a producer, a consumer with group membership, and an
//! admin client, speaking only the Kafka wire protocol (so they work against any
//! Kafka-compatible cluster), plus the sans-IO [`wire`] codec the broker shares.
//!
//! ```text
//!  Producer ─┐                         ┌─> net::Connection (one per broker, pipelined)
//!  Consumer ─┼─> net::Cluster (metadata)┤
//!  Admin ────┘                         └─> wire / kafka-protocol typed messages
//! ```
//!
//! The producer is idempotent by default and transactional with a `transactional.id`
//! (`init_transactions`, `begin_transaction`, `send_offsets_to_transaction`,
//! `commit_transaction`, `abort_transaction`); a consumer with `isolation.level =
//! read_committed` skips records of aborted transactions.
//!
//! Configuration takes Kafka's property names (`bootstrap.servers`, `acks`, `group.id`,
//! ...) or typed builders; an unknown key is an error that names it. Every call is bounded
//! by a timeout, and failures are one [`Error`] type with Kafka codes kept as data.

pub mod acl;
pub mod admin;
pub mod config;
pub mod consumer;
pub mod error;
pub mod net;
pub mod producer;
pub mod prom;
pub mod scram;
pub mod wire;

pub use admin::{Admin, AdminConfig};
pub use error::{Error, Result};
pub use producer::{Acks, DeliveryFuture, Producer, ProducerConfig, ProducerRecord, RecordMetadata};
pub use consumer::{Consumer, ConsumerConfig, ConsumerRecord, CustomAssignor, GroupMetadata, IsolationLevel, MemberAssignment, MemberSubscription, OffsetReset, RebalanceListener, TopicPartition};
