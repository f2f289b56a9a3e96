//! `samsa server`: run a broker, alone or as one node of a cluster.

use std::path::PathBuf;

use samsa_broker::{Broker, BrokerConfig, BrokerOptions};

use crate::wait_for_signal;

/// Arguments of `samsa server`.
#[derive(clap::Args)]
#[command(after_long_help = config_keys_help())]
pub struct ServerArgs {
    /// Directory for logs and metadata (created if missing).
    #[arg(long, default_value = "./samsa-data", value_name = "DIR")]
    data_dir: PathBuf,
    /// Address for Kafka clients; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:9092", value_name = "HOST:PORT")]
    listen: String,
    /// This broker's node id (also its id in the controller quorum).
    #[arg(long, default_value_t = 1, value_name = "N")]
    node_id: i32,
    /// Address for the controller quorum and broker-to-controller traffic (cluster mode;
    /// this node's entry in --voters).
    #[arg(long, value_name = "HOST:PORT", requires = "voters")]
    controller_listen: Option<String>,
    /// The controller quorum, e.g. 1@127.0.0.1:9093,2@127.0.0.1:9193,3@127.0.0.1:9293.
    /// Every node listed is broker and controller (KRaft combined mode); start them in any
    /// order. Without it the server is a single node.
    #[arg(long, value_name = "ID@HOST:PORT,...", requires = "controller_listen")]
    voters: Option<String>,
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

/// Runs the broker until SIGINT/SIGTERM.
pub async fn run(args: ServerArgs) -> Result<(), String> {
    let config = load_config(&args).map_err(|e| e.to_string())?;
    let voters = match &args.voters {
        Some(v) => samsa_broker::server::parse_voters(v).map_err(|e| e.to_string())?,
        None => Default::default(),
    };
    let broker = Broker::start(BrokerOptions {
        data_dir: args.data_dir.clone(),
        listen: args.listen.clone(),
        node_id: args.node_id,
        controller_listen: args.controller_listen.clone(),
        voters,
        config,
    })
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

