//! SQL's connector statements (`CREATE SOURCE CONNECTOR`...) carried out by this server's
//! Connect worker.

use std::collections::BTreeMap;

use samsa_connect::api::{plugin, Plugin};
use samsa_connect::rest::LazyConnect;
use samsa_sql::connectors::{ConnectorRow, Connectors};

/// The server's Connect worker, as the SQL engine sees it.
pub struct ServerConnectors(pub LazyConnect);

#[async_trait::async_trait]
impl Connectors for ServerConnectors {
    async fn create(&self, name: &str, source: bool, config: BTreeMap<String, String>) -> Result<(), String> {
        let class = config.get("connector.class").cloned().unwrap_or_default();
        match (plugin(&class), source) {
            (Some(Plugin::Sink(_)), true) => return Err(format!("{class} is a sink connector; use CREATE SINK CONNECTOR")),
            (Some(Plugin::Source(_)), false) => return Err(format!("{class} is a source connector; use CREATE SOURCE CONNECTOR")),
            _ => {}
        }
        let c = self.0.get().await.map_err(|e| e.message)?;
        c.put_config(name, config, true).await.map(|_| ()).map_err(|e| e.message)
    }

    async fn exists(&self, name: &str) -> Result<bool, String> {
        Ok(self.0.get().await.map_err(|e| e.message)?.list().iter().any(|n| n == name))
    }

    async fn list(&self) -> Result<Vec<ConnectorRow>, String> {
        let c = self.0.get().await.map_err(|e| e.message)?;
        let mut rows = Vec::new();
        for name in c.list() {
            let (Ok(s), Ok(config)) = (c.status(&name), c.config(&name)) else { continue };
            let running = s.tasks.iter().filter(|t| t["state"] == "RUNNING").count();
            rows.push(ConnectorRow {
                name,
                kind: s.kind.clone(),
                class: config.get("connector.class").cloned().unwrap_or_default(),
                state: s.connector.state.clone(),
                tasks: format!("{running}/{}", s.tasks.len()),
            });
        }
        Ok(rows)
    }

    async fn describe(&self, name: &str) -> Result<Vec<(String, String)>, String> {
        let c = self.0.get().await.map_err(|e| e.message)?;
        let config = c.config(name).map_err(|e| e.message)?;
        let s = c.status(name).map_err(|e| e.message)?;
        let mut rows = vec![("state".to_string(), s.connector.state.clone()), ("type".to_string(), s.kind.clone())];
        for t in &s.tasks {
            let trace = t["trace"].as_str().map(|t| format!(" ({t})")).unwrap_or_default();
            rows.push((format!("task {}", t["id"]), format!("{} on {}{trace}", t["state"].as_str().unwrap_or(""), t["worker_id"].as_str().unwrap_or(""))));
        }
        rows.extend(config.into_iter().filter(|(k, _)| !k.contains("password")));
        Ok(rows)
    }

    async fn delete(&self, name: &str) -> Result<(), String> {
        self.0.get().await.map_err(|e| e.message)?.delete(name).await.map_err(|e| e.message)
    }
}
