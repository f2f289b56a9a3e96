//! `samsa connect`: Kafka-Connect-style connectors from config files.
//!
//! `samsa connect standalone WORKER CONNECTOR...` runs the connectors in this process,
//! with source offsets in the worker's `offset.storage.file.filename` (or a compacted
//! `offset.storage.topic`), until SIGINT or SIGTERM; then each task stops cleanly and its
//! offsets are written.
//!
//! `samsa connect list|status|create|delete|pause|resume|restart|stop` manage connectors
//! hosted by `samsa server`, through its Kafka-Connect-compatible REST API.

use std::path::PathBuf;

use hyper::Method;
use samsa_connect::config::read_config_file;
use samsa_connect::standalone::{check_connector, run, WorkerConfig};

/// Arguments of `samsa connect`.
#[derive(clap::Args)]
pub struct ConnectArgs {
    #[command(subcommand)]
    command: ConnectCommand,
}

#[derive(clap::Subcommand)]
enum ConnectCommand {
    /// Run connectors in this process, as Kafka's connect-standalone.
    ///
    /// WORKER is a worker config (bootstrap.servers, key.converter, value.converter,
    /// offset.storage.file.filename or offset.storage.topic, offset.flush.interval.ms);
    /// each CONNECTOR is a connector config in Kafka's .properties format or JSON
    /// ({"name": ..., "config": {...}} or a flat object). Kafka's quickstart files work unchanged. Runs until
    /// SIGINT or SIGTERM, then stops the tasks and saves their offsets.
    Standalone {
        /// The worker config.
        #[arg(value_name = "WORKER")]
        worker: PathBuf,
        /// The connector configs.
        #[arg(value_name = "CONNECTOR", required = true)]
        connectors: Vec<PathBuf>,
    },
    /// List the server's connectors with their state.
    List(Server),
    /// Show a connector's state and its tasks' (with why a task failed).
    Status {
        /// The connector.
        name: String,
        #[command(flatten)]
        server: Server,
    },
    /// Create a connector on the server (or update it) from a config file.
    ///
    /// FILE is a .properties or JSON connector config, as for `standalone`; its `name`
    /// names the connector. Every bad setting is reported and nothing starts.
    Create {
        /// The connector config.
        #[arg(value_name = "FILE")]
        file: PathBuf,
        #[command(flatten)]
        server: Server,
    },
    /// Delete a connector (its tasks stop; its source offsets are kept).
    Delete {
        /// The connector.
        name: String,
        #[command(flatten)]
        server: Server,
    },
    /// Pause a connector's tasks.
    Pause {
        /// The connector.
        name: String,
        #[command(flatten)]
        server: Server,
    },
    /// Resume a paused (or stopped) connector.
    Resume {
        /// The connector.
        name: String,
        #[command(flatten)]
        server: Server,
    },
    /// Stop a connector's tasks, keeping its config (its offsets may then be reset).
    Stop {
        /// The connector.
        name: String,
        #[command(flatten)]
        server: Server,
    },
    /// Restart a connector's tasks.
    Restart {
        /// The connector.
        name: String,
        /// Only the failed tasks.
        #[arg(long)]
        only_failed: bool,
        #[command(flatten)]
        server: Server,
    },
}

/// Which server to manage.
#[derive(clap::Args)]
struct Server {
    /// The server's HTTP address.
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:8083")]
    server: String,
}

/// Runs `samsa connect`.
pub async fn run_connect(args: ConnectArgs) -> Result<(), String> {
    match args.command {
        ConnectCommand::Standalone { worker, connectors } => standalone(worker, connectors).await,
        ConnectCommand::List(s) => list(&s.server).await,
        ConnectCommand::Status { name, server } => {
            let status = call(&server.server, Method::GET, &format!("/connectors/{name}/status"), None).await?;
            print_status(&status);
            Ok(())
        }
        ConnectCommand::Create { file, server } => {
            let config = read_config_file(&file).map_err(|e| e.to_string())?;
            let name = config.get("name").cloned().ok_or_else(|| format!("{}: the config has no name", file.display()))?;
            let body = serde_json::to_string(&config).map_err(|e| e.to_string())?;
            call(&server.server, Method::PUT, &format!("/connectors/{name}/config"), Some(body)).await?;
            println!("connector {name} created; `samsa connect status {name}` shows its tasks");
            Ok(())
        }
        ConnectCommand::Delete { name, server } => done(call(&server.server, Method::DELETE, &format!("/connectors/{name}"), None).await, &format!("connector {name} deleted")),
        ConnectCommand::Pause { name, server } => done(call(&server.server, Method::PUT, &format!("/connectors/{name}/pause"), None).await, &format!("connector {name} pausing")),
        ConnectCommand::Resume { name, server } => {
            done(call(&server.server, Method::PUT, &format!("/connectors/{name}/resume"), None).await, &format!("connector {name} resuming"))
        }
        ConnectCommand::Stop { name, server } => done(call(&server.server, Method::PUT, &format!("/connectors/{name}/stop"), None).await, &format!("connector {name} stopping")),
        ConnectCommand::Restart { name, only_failed, server } => {
            let path = format!("/connectors/{name}/restart?includeTasks=true&onlyFailed={only_failed}");
            done(call(&server.server, Method::POST, &path, None).await, &format!("connector {name}: tasks restarting"))
        }
    }
}

fn done(r: Result<serde_json::Value, String>, what: &str) -> Result<(), String> {
    r.map(|_| println!("{what}"))
}

/// Calls the REST API; the JSON answer, or its error message.
async fn call(server: &str, method: Method, path: &str, body: Option<String>) -> Result<serde_json::Value, String> {
    let (status, text) = crate::util::http_send(server, method, path, body).await?.text().await?;
    let json: serde_json::Value = if text.trim().is_empty() { serde_json::Value::Null } else { serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text.clone())) };
    if status >= 400 {
        return Err(json.get("message").and_then(|m| m.as_str()).map_or(text, str::to_string));
    }
    Ok(json)
}

fn print_status(s: &serde_json::Value) {
    let str_of = |v: &serde_json::Value| v.as_str().unwrap_or("").to_string();
    println!("{} ({}): {} on {}", str_of(&s["name"]), str_of(&s["type"]), str_of(&s["connector"]["state"]), str_of(&s["connector"]["worker_id"]));
    for t in s["tasks"].as_array().into_iter().flatten() {
        println!("  task {}: {} on {}", t["id"], str_of(&t["state"]), str_of(&t["worker_id"]));
        if let Some(trace) = t["trace"].as_str() {
            println!("    {trace}");
        }
    }
}

async fn list(server: &str) -> Result<(), String> {
    let all = call(server, Method::GET, "/connectors?expand=status", None).await?;
    let Some(map) = all.as_object().filter(|m| !m.is_empty()) else {
        println!("no connectors; create one with `samsa connect create FILE`");
        return Ok(());
    };
    let rows: Vec<Vec<String>> = map
        .iter()
        .map(|(name, v)| {
            let s = &v["status"];
            let tasks = s["tasks"].as_array().map(|t| t.iter().filter(|t| t["state"] == "RUNNING").count().to_string() + "/" + &t.len().to_string()).unwrap_or_default();
            vec![name.clone(), s["type"].as_str().unwrap_or("").into(), s["connector"]["state"].as_str().unwrap_or("").into(), tasks]
        })
        .collect();
    crate::util::print_table(&["NAME", "TYPE", "STATE", "TASKS RUNNING"], &rows);
    Ok(())
}

async fn standalone(worker_path: PathBuf, connector_paths: Vec<PathBuf>) -> Result<(), String> {
    let worker = WorkerConfig::new(read_config_file(&worker_path).map_err(|e| e.to_string())?).map_err(|e| format!("{}: {e}", worker_path.display()))?;
    let mut specs = Vec::new();
    let mut problems = Vec::new();
    for path in &connector_paths {
        let config = read_config_file(path).map_err(|e| e.to_string())?;
        match check_connector(config) {
            Ok(spec) => specs.push((path, spec)),
            Err(issues) => problems.extend(issues.into_iter().map(|i| format!("{}: {}: {}", path.display(), i.name, i.message))),
        }
    }
    if !problems.is_empty() {
        return Err(format!("invalid connector config; nothing started:\n  {}", problems.join("\n  ")));
    }
    let mut names = std::collections::BTreeSet::new();
    for (path, spec) in &specs {
        if !names.insert(spec.name.clone()) {
            return Err(format!("{}: a second connector named {}; names must differ", path.display(), spec.name));
        }
    }
    println!("samsa connect: {} connector(s) on {}, offsets in {}", specs.len(), worker.bootstrap(), worker.offsets());
    for (path, spec) in &specs {
        println!("  {} ({}) from {}", spec.name, spec.config.get("connector.class").map(String::as_str).unwrap_or(""), path.display());
    }
    println!("Ctrl-C stops them and saves their offsets.");
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        crate::wait_for_signal().await;
        let _ = tx.send(true);
    });
    run(worker, specs.into_iter().map(|(_, s)| s).collect(), rx).await.map_err(|e| e.to_string())?;
    println!("samsa connect: stopped; offsets saved");
    Ok(())
}
