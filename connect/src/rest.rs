//! The REST API of server-hosted connectors, following Kafka Connect's: the same paths,
//! bodies, status codes and error shape (`{"error_code": 404, "message": "..."}`), so
//! tools written for Kafka Connect work.
//!
//! | Method and path | What |
//! |---|---|
//! | `GET /connectors` (`?expand=status`, `?expand=info`) | names (or details) |
//! | `POST /connectors` `{"name", "config"}` | create (201; 409 if it exists; 400 naming each bad setting) |
//! | `GET /connectors/{name}` | config, tasks, type |
//! | `GET`, `PUT /connectors/{name}/config` | read; create (201) or update (200) |
//! | `GET /connectors/{name}/status` | connector and task states |
//! | `PUT /connectors/{name}/pause`, `/resume`, `/stop` | 202 |
//! | `POST /connectors/{name}/restart?includeTasks=&onlyFailed=` | 204 (202 with tasks) |
//! | `GET /connectors/{name}/tasks`, `GET .../tasks/{id}/status`, `POST .../tasks/{id}/restart` | tasks |
//! | `DELETE /connectors/{name}` | 204 |
//! | `GET`, `DELETE /connectors/{name}/offsets` | source offsets (delete: only when stopped) |
//! | `GET /connector-plugins` | classes |
//! | `PUT /connector-plugins/{class}/config/validate` | every setting with its errors |
//!
//! The Connect worker starts with the first request, or at server start when connectors
//! exist ([`LazyConnect::start_if_configured`]).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::api::{plugin, Plugin, PLUGINS};
use crate::cluster::{ApiError, ConnectCluster, Target, CONFIG_TOPIC};
use crate::config::{Kind, Props};

/// The Connect worker of this server, started when first needed.
#[derive(Clone)]
pub struct LazyConnect {
    cell: Arc<tokio::sync::OnceCell<ConnectCluster>>,
    bootstrap: String,
    worker_id: String,
}

impl LazyConnect {
    /// A worker for the cluster at `bootstrap`, named `worker_id` (this server's HTTP
    /// address) in statuses.
    pub fn new(bootstrap: &str, worker_id: &str) -> LazyConnect {
        LazyConnect { cell: Arc::new(tokio::sync::OnceCell::new()), bootstrap: bootstrap.to_string(), worker_id: worker_id.to_string() }
    }

    /// The worker, if it has started.
    pub fn started(&self) -> Option<&ConnectCluster> {
        self.cell.get()
    }

    /// The worker, started now if need be.
    pub async fn get(&self) -> Result<&ConnectCluster, ApiError> {
        self.cell
            .get_or_try_init(|| ConnectCluster::start(&self.bootstrap, &self.worker_id))
            .await
            .map_err(|e| ApiError { status: 500, message: format!("the Connect worker cannot start: {e}") })
    }

    /// Starts the worker once the cluster has connectors (their config topic exists),
    /// checking every `every`, so a restarted server resumes its share of the tasks.
    pub async fn start_if_configured(&self, every: Duration) {
        loop {
            if self.cell.initialized() {
                return;
            }
            if let Ok(admin) = samsa_client::Admin::connect(&self.bootstrap).await {
                if admin.list_topics(true).await.is_ok_and(|t| t.iter().any(|t| t == CONFIG_TOPIC)) {
                    if let Err(e) = self.get().await {
                        tracing::warn!(error = %e.message, "the Connect worker did not start");
                    } else {
                        return;
                    }
                }
            }
            tokio::time::sleep(every).await;
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (code, Json(json!({"error_code": self.status, "message": self.message}))).into_response()
    }
}

type ApiResult = Result<Response, ApiError>;

/// The routes, to merge into the server's HTTP app.
pub fn router(connect: LazyConnect) -> Router {
    Router::new()
        .route("/connectors", get(list).post(create))
        .route("/connectors/{name}", get(info).delete(delete))
        .route("/connectors/{name}/config", get(config).put(put_config))
        .route("/connectors/{name}/status", get(status))
        .route("/connectors/{name}/pause", put(pause))
        .route("/connectors/{name}/resume", put(resume))
        .route("/connectors/{name}/stop", put(stop))
        .route("/connectors/{name}/restart", post(restart))
        .route("/connectors/{name}/tasks", get(tasks))
        .route("/connectors/{name}/tasks/{id}/status", get(task_status))
        .route("/connectors/{name}/tasks/{id}/restart", post(restart_task))
        .route("/connectors/{name}/offsets", get(offsets).delete(reset_offsets))
        .route("/connector-plugins", get(plugins))
        .route("/connector-plugins/{class}/config/validate", put(validate))
        .with_state(connect)
}

/// A JSON object of strings as settings; anything else is a 400.
fn props(v: &Value) -> Result<Props, ApiError> {
    let Value::Object(map) = v else { return Err(ApiError { status: 400, message: "the config must be a JSON object of settings".into() }) };
    map.iter()
        .map(|(k, v)| match v {
            Value::String(s) => Ok((k.clone(), s.clone())),
            Value::Number(_) | Value::Bool(_) => Ok((k.clone(), v.to_string())),
            _ => Err(ApiError { status: 400, message: format!("setting {k} must be a string, a number or a boolean") }),
        })
        .collect()
}

fn info_body(c: &ConnectCluster, name: &str) -> Result<Value, ApiError> {
    let config = c.config(name)?;
    let (count, kind) = c.tasks(name)?;
    Ok(json!({"name": name, "config": config, "tasks": (0..count).map(|t| json!({"connector": name, "task": t})).collect::<Vec<_>>(), "type": kind}))
}

fn query_flags(q: &Option<String>) -> Vec<(String, String)> {
    q.as_deref()
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').map_or((p.to_string(), String::new()), |(k, v)| (k.to_string(), v.to_string())))
        .collect()
}

async fn list(State(s): State<LazyConnect>, RawQuery(q): RawQuery) -> ApiResult {
    let c = s.get().await?;
    let expand: Vec<String> = query_flags(&q).into_iter().filter(|(k, _)| k == "expand").map(|(_, v)| v).collect();
    if expand.is_empty() {
        return Ok(Json(c.list()).into_response());
    }
    let mut out = serde_json::Map::new();
    for name in c.list() {
        let mut entry = serde_json::Map::new();
        if expand.iter().any(|e| e == "status") {
            entry.insert("status".into(), serde_json::to_value(c.status(&name)?).unwrap_or_default());
        }
        if expand.iter().any(|e| e == "info") {
            entry.insert("info".into(), info_body(c, &name)?);
        }
        out.insert(name, Value::Object(entry));
    }
    Ok(Json(Value::Object(out)).into_response())
}

async fn create(State(s): State<LazyConnect>, body: axum::body::Bytes) -> ApiResult {
    let v: Value = serde_json::from_slice(&body).map_err(|e| ApiError { status: 400, message: format!("the body is not JSON: {e}") })?;
    let name = v.get("name").and_then(Value::as_str).unwrap_or_default().to_string();
    if name.is_empty() {
        return Err(ApiError { status: 400, message: "the body needs \"name\" and \"config\", e.g. {\"name\": \"my-source\", \"config\": {\"connector.class\": ...}}".into() });
    }
    let config = props(v.get("config").unwrap_or(&Value::Null))?;
    let c = s.get().await?;
    c.put_config(&name, config, true).await?;
    Ok((StatusCode::CREATED, Json(info_body(c, &name)?)).into_response())
}

async fn info(State(s): State<LazyConnect>, Path(name): Path<String>) -> ApiResult {
    let c = s.get().await?;
    Ok(Json(info_body(c, &name)?).into_response())
}

async fn config(State(s): State<LazyConnect>, Path(name): Path<String>) -> ApiResult {
    Ok(Json(s.get().await?.config(&name)?).into_response())
}

async fn put_config(State(s): State<LazyConnect>, Path(name): Path<String>, body: axum::body::Bytes) -> ApiResult {
    let v: Value = serde_json::from_slice(&body).map_err(|e| ApiError { status: 400, message: format!("the body is not JSON: {e}") })?;
    let c = s.get().await?;
    let created = c.put_config(&name, props(&v)?, false).await?;
    Ok((if created { StatusCode::CREATED } else { StatusCode::OK }, Json(info_body(c, &name)?)).into_response())
}

async fn status(State(s): State<LazyConnect>, Path(name): Path<String>) -> ApiResult {
    Ok(Json(s.get().await?.status(&name)?).into_response())
}

async fn target(s: LazyConnect, name: String, t: Target) -> ApiResult {
    s.get().await?.set_target(&name, t).await?;
    Ok(StatusCode::ACCEPTED.into_response())
}

async fn pause(State(s): State<LazyConnect>, Path(name): Path<String>) -> ApiResult {
    target(s, name, Target::Paused).await
}

async fn resume(State(s): State<LazyConnect>, Path(name): Path<String>) -> ApiResult {
    target(s, name, Target::Running).await
}

async fn stop(State(s): State<LazyConnect>, Path(name): Path<String>) -> ApiResult {
    target(s, name, Target::Stopped).await
}

async fn restart(State(s): State<LazyConnect>, Path(name): Path<String>, RawQuery(q): RawQuery) -> ApiResult {
    let flags = query_flags(&q);
    let flag = |k: &str| flags.iter().any(|(n, v)| n == k && v.eq_ignore_ascii_case("true"));
    let c = s.get().await?;
    if !flag("includeTasks") {
        // The connector object itself: its task configs are recomputed on every change,
        // so there is nothing else to restart.
        c.config(&name)?;
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    c.restart(&name, None, flag("onlyFailed")).await?;
    Ok((StatusCode::ACCEPTED, Json(c.status(&name)?)).into_response())
}

async fn tasks(State(s): State<LazyConnect>, Path(name): Path<String>) -> ApiResult {
    let c = s.get().await?;
    let config = c.config(&name)?;
    let max = config.get("tasks.max").and_then(|t| t.trim().parse::<usize>().ok()).unwrap_or(1);
    let configs = match plugin(config.get("connector.class").map(String::as_str).unwrap_or_default()) {
        Some(Plugin::Source(p)) => p.task_configs(&config, max),
        Some(Plugin::Sink(p)) => p.task_configs(&config, max),
        None => Vec::new(),
    };
    let out: Vec<Value> = configs.into_iter().enumerate().map(|(i, tc)| json!({"id": {"connector": name, "task": i}, "config": tc})).collect();
    Ok(Json(out).into_response())
}

async fn task_status(State(s): State<LazyConnect>, Path((name, id)): Path<(String, usize)>) -> ApiResult {
    let status = s.get().await?.status(&name)?;
    let t = status.tasks.into_iter().find(|t| t["id"] == json!(id)).ok_or_else(|| ApiError { status: 404, message: format!("Task {name}-{id} not found") })?;
    Ok(Json(t).into_response())
}

async fn restart_task(State(s): State<LazyConnect>, Path((name, id)): Path<(String, usize)>) -> ApiResult {
    s.get().await?.restart(&name, Some(id), false).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn delete(State(s): State<LazyConnect>, Path(name): Path<String>) -> ApiResult {
    s.get().await?.delete(&name).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn offsets(State(s): State<LazyConnect>, Path(name): Path<String>) -> ApiResult {
    let all = s.get().await?.offsets(&name).await?;
    Ok(Json(json!({"offsets": all.into_iter().map(|(p, o)| json!({"partition": p, "offset": o})).collect::<Vec<_>>()})).into_response())
}

async fn reset_offsets(State(s): State<LazyConnect>, Path(name): Path<String>) -> ApiResult {
    s.get().await?.reset_offsets(&name).await?;
    Ok(Json(json!({"message": "The offsets for this connector have been reset successfully"})).into_response())
}

async fn plugins() -> ApiResult {
    let out: Vec<Value> = PLUGINS
        .iter()
        .map(|class| {
            let kind = match plugin(class) {
                Some(Plugin::Source(_)) => "source",
                _ => "sink",
            };
            json!({"class": class, "type": kind, "version": env!("CARGO_PKG_VERSION")})
        })
        .collect();
    Ok(Json(out).into_response())
}

/// Kafka's `ConfigInfos`: every setting of the class with its value and errors.
async fn validate(Path(class): Path<String>, body: axum::body::Bytes) -> ApiResult {
    let v: Value = serde_json::from_slice(&body).map_err(|e| ApiError { status: 400, message: format!("the body is not JSON: {e}") })?;
    let mut config = props(&v)?;
    let p = plugin(&class).ok_or_else(|| ApiError { status: 404, message: format!("no connector plugin {class}; GET /connector-plugins lists them") })?;
    config.entry("connector.class".into()).or_insert(class.clone());
    config.entry("name".into()).or_insert_with(|| "validate".into());
    let issues = crate::standalone::check_connector(config.clone()).err().unwrap_or_default();
    let errors_of = |name: &str| issues.iter().filter(|i| i.name == name).map(|i| i.message.clone()).collect::<Vec<_>>();
    let mut configs = Vec::new();
    let mut named = std::collections::BTreeSet::new();
    for s in p.settings() {
        named.insert(s.name.to_string());
        let kind = match s.kind {
            Kind::String => "STRING",
            Kind::Int => "INT",
            Kind::Bool => "BOOLEAN",
            Kind::List => "LIST",
        };
        configs.push(json!({
            "definition": {"name": s.name, "type": kind, "required": s.required, "default_value": s.default, "importance": if s.required { "HIGH" } else { "MEDIUM" },
                           "documentation": s.doc, "group": "Common", "width": "NONE", "display_name": s.name, "dependents": [], "order": configs.len()},
            "value": {"name": s.name, "value": config.get(s.name).cloned().or(s.default.map(str::to_string)), "recommended_values": [], "errors": errors_of(s.name), "visible": true}
        }));
    }
    for i in &issues {
        if named.insert(i.name.clone()) {
            configs.push(json!({"definition": {"name": i.name, "type": "STRING", "required": false, "group": "Common"},
                                "value": {"name": i.name, "value": config.get(&i.name), "recommended_values": [], "errors": errors_of(&i.name), "visible": true}}));
        }
    }
    Ok(Json(json!({"name": class, "error_count": issues.len(), "groups": ["Common"], "configs": configs})).into_response())
}
