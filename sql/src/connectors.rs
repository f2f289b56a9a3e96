//! Connectors managed from SQL, as in ksqlDB: `CREATE SOURCE CONNECTOR name WITH (...)`,
//! `CREATE SINK CONNECTOR`, `SHOW CONNECTORS`, `DESCRIBE CONNECTOR name` and
//! `DROP CONNECTOR name`. The engine only parses them; the server that hosts Samsa Connect
//! gives the engine a [`Connectors`] to carry them out.

use std::collections::BTreeMap;

/// One connector as `SHOW CONNECTORS` lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectorRow {
    /// Its name.
    pub name: String,
    /// `source` or `sink`.
    pub kind: String,
    /// Its class.
    pub class: String,
    /// `RUNNING`, `PAUSED`, `STOPPED`...
    pub state: String,
    /// Running tasks of all, e.g. `1/1`.
    pub tasks: String,
}

/// What runs connectors for the engine (the server's Connect worker).
#[async_trait::async_trait]
pub trait Connectors: Send + Sync {
    /// Creates a connector (`source`: it must be a source class, else a sink class). An
    /// invalid config is an error naming each bad setting; an existing name is an error.
    async fn create(&self, name: &str, source: bool, config: BTreeMap<String, String>) -> Result<(), String>;
    /// Whether a connector exists.
    async fn exists(&self, name: &str) -> Result<bool, String>;
    /// Every connector.
    async fn list(&self) -> Result<Vec<ConnectorRow>, String>;
    /// A connector's settings and task states, as (property, value) rows.
    async fn describe(&self, name: &str) -> Result<Vec<(String, String)>, String>;
    /// Deletes a connector.
    async fn delete(&self, name: &str) -> Result<(), String>;
}
