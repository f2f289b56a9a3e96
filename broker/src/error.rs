//! The broker's error type. Kafka error codes are not here: they are data on the wire
//! (see [`crate::api::ErrorCode`] uses of `kafka_protocol::ResponseError`).

/// Failures of the broker as a process: configuration, storage and startup problems.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A config key or value is wrong; the message names the key.
    #[error("{0}")]
    Config(String),
    /// The data directory cannot be used.
    #[error("data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: std::path::PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The listen address cannot be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: String,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A storage operation failed.
    #[error("storage error: {0}")]
    Io(#[from] std::io::Error),
}

/// Result with the broker's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
