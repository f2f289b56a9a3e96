//! The `samsa` command. Today: `samsa server`, a single-node Kafka-compatible broker.
//! Later subcommands (topic, produce, consume, bench, sql, connect) sit beside it.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use samsa_broker::{Broker, BrokerConfig, BrokerOptions};

/// Samsa: a Kafka-compatible event-streaming platform in one binary.
#[derive(Parser)]
#[command(name = "samsa", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a broker that any Kafka client can use.
    ///
    /// Prints `samsa listening on HOST:PORT` on stdout when ready; logs go to stderr
    /// (set RUST_LOG=debug for more). SIGINT or SIGTERM flushes the logs and exits 0.
    Server(ServerArgs),
}

#[derive(clap::Args)]
#[command(after_long_help = config_keys_help())]
struct ServerArgs {
    /// Directory for logs and metadata (created if missing).
    #[arg(long, default_value = "./samsa-data", value_name = "DIR")]
    data_dir: PathBuf,
    /// Address for Kafka clients; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:9092", value_name = "HOST:PORT")]
    listen: String,
    /// This broker's node id.
    #[arg(long, default_value_t = 1, value_name = "N")]
    node_id: i32,
    /// A properties file with Kafka broker settings (num.partitions, log.retention.ms, ...).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Override one setting, e.g. --set num.partitions=6 (repeatable; wins over --config).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
}

/// The accepted config keys with defaults, for `samsa server --help`.
fn config_keys_help() -> String {
    let mut out = String::from("Config keys (Kafka's broker names; topics override them with the name in brackets):\n");
    for d in samsa_broker::config::DEFS {
        let topic = d.topic_name.map(|t| format!(" [{t}]")).unwrap_or_default();
        out.push_str(&format!("  {}{topic} = {}\n      {}\n", d.name, d.default, d.doc));
    }
    out
}

fn load_config(args: &ServerArgs) -> samsa_broker::Result<BrokerConfig> {
    let mut config = match &args.config {
        Some(path) => BrokerConfig::load_file(path)?,
        None => BrokerConfig::default(),
    };
    for pair in &args.set {
        config.set_pair(pair)?;
    }
    Ok(config)
}

async fn run_server(args: ServerArgs) -> Result<(), String> {
    let config = load_config(&args).map_err(|e| e.to_string())?;
    let broker = Broker::start(BrokerOptions { data_dir: args.data_dir.clone(), listen: args.listen.clone(), node_id: args.node_id, config })
        .await
        .map_err(|e| e.to_string())?;
    // The one line scripts wait for; everything else goes to stderr.
    println!("samsa listening on {}", broker.local_addr());
    tracing::info!(data_dir = %args.data_dir.display(), "broker ready");
    wait_for_signal().await;
    tracing::info!("shutting down");
    broker.shutdown().await;
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("samsa: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Command::Server(args) => runtime.block_on(run_server(args)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("samsa: {msg}");
            ExitCode::FAILURE
        }
    }
}
