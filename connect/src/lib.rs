//! Samsa Connect: source and sink connectors driven by config files, as Kafka Connect.
//!
//! - [`config`]: Java `.properties` and JSON connector configs, and setting checks.
//! - [`data`]: Connect values with optional schemas, and the `json`, `string` and
//!   `bytearray` converters (Kafka's class names work).
//! - [`api`]: the connector SDK (source and sink connectors and tasks) and the shipped
//!   classes by name.
//! - [`file`]: `FileStreamSource` and `FileStreamSink`.
//! - [`postgres`]: the JDBC source and sink (Confluent's settings) and change data capture
//!   (Debezium's settings) for PostgreSQL.
//! - [`errors`]: `errors.tolerance`, retries, error logs and dead-letter topics.
//! - [`offsets`]: a standalone worker's source offsets file.
//! - [`runtime`]: how tasks run: offsets, pauses, transforms, errors.
//! - [`transforms`]: single message transforms and predicates, with Kafka's names.
//! - [`datagen`]: synthetic records for demos and benchmarks.
//! - [`dir`]: the files of a directory, as JSON lines or CSV, tailed as new lines and files
//!   come (kafka-connect-spooldir's settings).
//! - [`cluster`]: connectors hosted by `samsa server`, their state in compacted topics, their
//!   tasks spread over the servers.
//! - [`rest`]: the Kafka-Connect-compatible REST API over [`cluster`].
//! - [`standalone`]: the standalone worker (`samsa connect standalone`).

pub mod api;
pub mod cluster;
pub mod config;
pub mod data;
pub mod datagen;
pub mod dir;
pub mod errors;
pub mod file;
pub mod metrics;
pub mod offsets;
pub mod postgres;
pub mod rest;
pub mod runtime;
pub mod standalone;
pub mod transforms;

/// What can go wrong in Connect.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A config file or setting is wrong.
    #[error("{0}")]
    Config(String),
    /// A record cannot be converted.
    #[error("{0}")]
    Data(String),
    /// A task failed.
    #[error("{0}")]
    Task(String),
    /// A failure that may pass if tried again (e.g. a database that is restarting).
    #[error("{0}")]
    Retriable(String),
    /// The Kafka client failed.
    #[error(transparent)]
    Client(#[from] samsa_client::Error),
}

/// Result with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
