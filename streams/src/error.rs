//! One error type for the streams library.

/// What can go wrong while building or running a streams application.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A state store could not read or write its local storage.
    #[error("state store: {0}")]
    Store(String),
    /// A record's key or value did not deserialize.
    #[error("cannot deserialize the {part} of {topic}-{partition} at offset {offset}: {reason}")]
    Deserialize {
        /// "key" or "value".
        part: &'static str,
        /// Topic of the record.
        topic: String,
        /// Partition of the record.
        partition: i32,
        /// Offset of the record.
        offset: i64,
        /// What the serde said.
        reason: String,
    },
    /// The topology is not valid (e.g. inputs of a join are not co-partitioned).
    #[error("invalid topology: {0}")]
    Topology(String),
    /// A configuration value is missing or wrong.
    #[error("invalid streams configuration: {0}")]
    Config(String),
    /// The Kafka client failed.
    #[error(transparent)]
    Client(#[from] samsa_client::Error),
    /// A processor (user code) failed on a record.
    #[error("processor `{node}` failed: {reason}")]
    Processor {
        /// The node's name.
        node: String,
        /// What went wrong.
        reason: String,
    },
    /// The application is not in a state that allows the call.
    #[error("{0}")]
    State(String),
    /// Local file I/O failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done, with the path.
        what: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// The streams library's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An I/O error with what was being done.
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io { what: what.into(), source }
    }
}
