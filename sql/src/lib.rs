//! Samsa SQL: SQL over topics on DataFusion.
//!
//! - [`Engine`] runs statements: DDL on a catalog kept in an internal compacted topic,
//!   bounded queries over a snapshot of topics (DataFusion does the querying), and
//!   continuous queries compiled to Samsa Streams topologies.
//! - [`http`] serves the engine at `POST /sql`; `samsa sql` is its shell.

pub mod error;
mod aggregate;
pub mod catalog;
pub mod connectors;
pub mod continuous;
pub mod engine;
pub mod format;
pub mod http;
pub mod provider;
pub mod statement;

pub use datafusion::arrow;
pub use error::{Position, Result, SqlError};
pub use engine::{Engine, EngineConfig, Output, Properties};
pub use statement::split_statements;
