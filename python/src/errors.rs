//! Rust errors as the Python exceptions of `samsa/errors.py`.
//!
//! The exception classes live in Python (so they can also derive from `ValueError` or
//! `TimeoutError`); this module builds instances of them, with the Kafka error code and
//! name when the broker gave one.

use pyo3::prelude::*;

/// An exception of class `class` (a name in `samsa.errors`) with `message`, and `attrs`
/// set on it as keyword arguments.
pub(crate) fn make(class: &'static str, message: String, code: Option<i16>, name: Option<String>, retriable: bool) -> PyErr {
    Python::attach(|py| {
        let built = (|| -> PyResult<PyErr> {
            let cls = py.import("samsa.errors")?.getattr(class)?;
            let kwargs = pyo3::types::PyDict::new(py);
            kwargs.set_item("code", code)?;
            kwargs.set_item("name", name.clone())?;
            kwargs.set_item("retriable", retriable)?;
            let exc = cls.call((message.clone(),), Some(&kwargs))?;
            Ok(PyErr::from_value(exc))
        })();
        // Only a broken installation (samsa.errors missing) gets here.
        built.unwrap_or_else(|e| pyo3::exceptions::PyRuntimeError::new_err(format!("{message} (and samsa.errors failed: {e})")))
    })
}

/// A bad argument or configuration (`samsa.ConfigError`, also a `ValueError`).
pub(crate) fn config(message: impl Into<String>) -> PyErr {
    make("ConfigError", message.into(), None, None, false)
}

/// Any other failure (`samsa.SamsaError`).
pub(crate) fn other(message: impl Into<String>) -> PyErr {
    make("SamsaError", message.into(), None, None, false)
}

/// Kafka's name for an error code's variant: `TopicAuthorizationFailed` ->
/// `TOPIC_AUTHORIZATION_FAILED`.
fn kafka_name(e: samsa_client::error::ResponseError) -> String {
    let camel = format!("{e:?}");
    let mut out = String::new();
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

/// A client error as the matching exception.
pub(crate) fn client(e: samsa_client::Error) -> PyErr {
    use samsa_client::Error as E;
    let msg = e.to_string();
    let retriable = e.is_retriable();
    match &e {
        E::Connect { .. } | E::Disconnected { .. } => make("BrokerUnavailableError", msg, None, None, retriable),
        E::Config(_) => config(msg),
        E::Timeout { .. } => make("SamsaTimeoutError", msg, None, None, retriable),
        E::Broker { error, .. } => make("KafkaError", msg, Some(error.code()), Some(kafka_name(*error)), retriable),
        E::UnknownTopic(_) => make("KafkaError", msg, Some(3), Some("UNKNOWN_TOPIC_OR_PARTITION".into()), false),
        E::RecordTooLarge { .. } => make("KafkaError", msg, Some(10), Some("MESSAGE_TOO_LARGE".into()), false),
        E::Fenced { .. } => make("KafkaError", msg, Some(90), Some("PRODUCER_FENCED".into()), false),
        _ => make("SamsaError", msg, None, None, retriable),
    }
}

/// A SQL error (`samsa.SqlError`): the message (with position and hint), and the
/// position as `(line, column)` and the hint as attributes.
pub(crate) fn sql(e: samsa_sql::SqlError) -> PyErr {
    let text = e.to_string();
    Python::attach(|py| {
        let built = (|| -> PyResult<PyErr> {
            let cls = py.import("samsa.errors")?.getattr("SqlError")?;
            let kwargs = pyo3::types::PyDict::new(py);
            kwargs.set_item("position", e.position.map(|p| (p.line, p.column)))?;
            kwargs.set_item("hint", e.hint.clone())?;
            Ok(PyErr::from_value(cls.call((text.clone(),), Some(&kwargs))?))
        })();
        built.unwrap_or_else(|err| pyo3::exceptions::PyRuntimeError::new_err(format!("{text} (and samsa.errors failed: {err})")))
    })
}

/// A streams error (`samsa.StreamsError`); client errors inside keep their own class.
pub(crate) fn streams(e: samsa_streams::Error) -> PyErr {
    match e {
        samsa_streams::Error::Client(c) => client(c),
        samsa_streams::Error::Config(m) => config(m),
        other => make("StreamsError", other.to_string(), None, None, false),
    }
}
