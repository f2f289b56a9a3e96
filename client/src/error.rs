//! The client's error type. Kafka error codes stay data ([`ResponseError`]) until a call
//! has to give up; then they become [`Error::Broker`] with the context of what was asked.

use std::time::Duration;

pub use kafka_protocol::ResponseError;

/// Everything a client call can fail with.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// No broker answered at this address.
    #[error("cannot reach a broker at {addr}: {reason}. Is `samsa server` running?")]
    Connect {
        /// The `host:port` tried.
        addr: String,
        /// Why the connection failed, e.g. "connection refused".
        reason: String,
    },
    /// A configuration property is unknown or has a bad value.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A call did not finish in time.
    #[error("{what} timed out after {} ms", .after.as_millis())]
    Timeout {
        /// What was being waited for.
        what: String,
        /// How long the client waited.
        after: Duration,
    },
    /// The broker answered with a Kafka error code.
    #[error("{context}: {error} (Kafka error {})", .error.code())]
    Broker {
        /// The error code the broker returned.
        error: ResponseError,
        /// What was asked, e.g. `produce to orders-3`.
        context: String,
    },
    /// The connection broke while a request was outstanding.
    #[error("connection to {addr} lost: {reason}")]
    Disconnected {
        /// The broker's address.
        addr: String,
        /// Why it was lost.
        reason: String,
    },
    /// The broker sent bytes this client cannot make sense of.
    #[error("protocol error from {addr}: {reason}")]
    Protocol {
        /// The broker's address.
        addr: String,
        /// What was wrong.
        reason: String,
    },
    /// The broker does not serve a version of an API this client can speak.
    #[error("the broker at {addr} does not support {api} v{min}..v{max} (it serves up to v{broker_max})")]
    UnsupportedVersion {
        /// The broker's address.
        addr: String,
        /// The API's name.
        api: String,
        /// Lowest version the client speaks.
        min: i16,
        /// Highest version the client speaks.
        max: i16,
        /// Highest version the broker serves (-1: not at all).
        broker_max: i16,
    },
    /// A record is larger than `max.request.size` allows; it was not sent.
    #[error("record of {size} bytes is larger than max.request.size = {max}; raise max.request.size (and the topic's max.message.bytes) or send smaller records")]
    RecordTooLarge {
        /// Encoded size of the record.
        size: usize,
        /// The configured limit.
        max: usize,
    },
    /// The topic does not exist (and was not auto-created).
    #[error("topic `{0}` does not exist; create it with `samsa topic create {0}` or enable auto.create.topics.enable on the broker")]
    UnknownTopic(String),
    /// The client was closed, or a call was made in a state that does not allow it.
    #[error("{0}")]
    State(String),
    /// A newer producer with the same `transactional.id` took over (it called
    /// `init_transactions` later); this producer can only be dropped.
    #[error("the producer with transactional.id `{transactional_id}` was fenced: another producer with the same transactional.id took over; close this one (its open transaction is aborted)")]
    Fenced {
        /// The `transactional.id` both producers use.
        transactional_id: String,
    },
    /// The record was not sent because its transaction was aborted.
    #[error("transaction aborted: {0}")]
    TransactionAborted(String),
}

impl Error {
    /// Whether retrying the same call may succeed (a lost connection, a leader change, a
    /// timeout), as opposed to a permanent refusal.
    pub fn is_retriable(&self) -> bool {
        match self {
            Error::Connect { .. } | Error::Disconnected { .. } | Error::Timeout { .. } => true,
            Error::Broker { error, .. } => error.is_retriable(),
            _ => false,
        }
    }

    /// The Kafka error code, when the broker gave one.
    pub fn kafka_error(&self) -> Option<ResponseError> {
        match self {
            Error::Broker { error, .. } => Some(*error),
            _ => None,
        }
    }

    pub(crate) fn broker(code: i16, context: impl Into<String>) -> Option<Error> {
        ResponseError::try_from_code(code).map(|error| Error::Broker { error, context: context.into() })
    }
}

/// Turns a Kafka error code into `Error::Broker` with `context` (plus the broker's own
/// message, when it sent one).
pub(crate) fn check(code: i16, message: Option<&kafka_protocol::protocol::StrBytes>, context: impl FnOnce() -> String) -> Result<()> {
    match ResponseError::try_from_code(code) {
        None => Ok(()),
        Some(error) => {
            let mut context = context();
            if let Some(m) = message.map(|m| m.trim()).filter(|m| !m.is_empty()) {
                context = format!("{context} ({m})");
            }
            Err(Error::Broker { error, context })
        }
    }
}

/// Like [`check`], with UNKNOWN_TOPIC_OR_PARTITION as [`Error::UnknownTopic`].
pub(crate) fn check_topic(code: i16, message: Option<&kafka_protocol::protocol::StrBytes>, topic: &str, context: impl FnOnce() -> String) -> Result<()> {
    if code == ResponseError::UnknownTopicOrPartition.code() {
        return Err(Error::UnknownTopic(topic.to_string()));
    }
    check(code, message, context)
}

/// The client's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
