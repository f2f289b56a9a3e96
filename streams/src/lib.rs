//! Samsa Streams: a Kafka-Streams-style library for stream processing on Samsa (or any
//! Kafka-compatible cluster).
//!
//! ```text
//!  StreamsBuilder ──build()──> Topology ──> KafkaStreams (threads, group, EOS) ──> tasks
//!   (KStream/KTable DSL)        (sub-topologies,        │                         │
//!                                stores, topics)        └─ TopologyTestDriver ────┘ (no broker)
//! ```
//!
//! A task is one sub-topology on one input partition; it owns its state stores (RocksDB
//! or memory, each with a compacted changelog topic). Instances with the same
//! `application.id` form a consumer group whose assignor places tasks. With
//! `processing.guarantee = exactly_once_v2`, each commit is one transaction holding the
//! output, the changelog writes and the input offsets.

pub mod dsl;
pub mod driver;
pub mod error;
pub mod join;
pub mod processor;
pub mod record;
pub mod runtime;
pub mod serde;
pub mod store;
pub mod stores;
pub(crate) mod task;
pub mod topology;
pub mod window;

pub use driver::{TestInputTopic, TestOutputTopic, TopologyTestDriver};
pub use dsl::{BranchedKStream, Data, GlobalKTable, KGroupedStream, KStream, KTable, Materialized, StreamsBuilder};
pub use error::{Error, Result};
pub use processor::{Processor, ProcessorContext, PunctuationType, TaskMetrics};
pub use runtime::{KafkaStreams, KeyQueryMetadata, ProcessingGuarantee, StreamsConfig};
pub use record::{Change, Headers, Record, RecordMetadata};
pub use serde::{DefaultSerde, Json, Serde, SerdeRef, Serdes};
pub use stores::{KvHandle, KvStore, ReadOnlyKv, ReadOnlyWindow, SessionHandle, SessionStore, SessionWindow, StoreDef, StoreKind, WindowHandle, WindowStore};
pub use task::{DeserializationHandler, TimestampExtractor};
pub use topology::{TaskId, Topology};
pub use join::*;
pub use window::*;
