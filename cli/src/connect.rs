//! `samsa connect`: Kafka-Connect-style connectors from config files.
//!
//! `samsa connect standalone WORKER CONNECTOR...` runs the connectors in this process,
//! with source offsets in the worker's `offset.storage.file.filename`, until SIGINT or
//! SIGTERM; then each task stops cleanly and its offsets are written.

use std::path::PathBuf;

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
    /// offset.storage.file.filename, offset.flush.interval.ms); each CONNECTOR is a
    /// connector config in Kafka's .properties format or JSON ({"name": ..., "config":
    /// {...}} or a flat object). Kafka's quickstart files work unchanged. Runs until
    /// SIGINT or SIGTERM, then stops the tasks and saves their offsets.
    Standalone {
        /// The worker config.
        #[arg(value_name = "WORKER")]
        worker: PathBuf,
        /// The connector configs.
        #[arg(value_name = "CONNECTOR", required = true)]
        connectors: Vec<PathBuf>,
    },
}

/// Runs `samsa connect`.
pub async fn run_connect(args: ConnectArgs) -> Result<(), String> {
    match args.command {
        ConnectCommand::Standalone { worker, connectors } => standalone(worker, connectors).await,
    }
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
    println!("samsa connect: {} connector(s) on {}, offsets in {}", specs.len(), worker.bootstrap(), worker.offsets_file().display());
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
