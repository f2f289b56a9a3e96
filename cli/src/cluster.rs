//! `samsa cluster status`: brokers, the active controller, and every partition's leader,
//! replicas, ISR and replication state, from Metadata.

use samsa_client::Admin;

use crate::util::print_table;

/// Arguments of `samsa cluster`.
#[derive(clap::Args)]
pub struct ClusterArgs {
    #[command(subcommand)]
    command: ClusterCommand,
}

#[derive(clap::Subcommand)]
enum ClusterCommand {
    /// Show brokers, the active controller, and per partition the leader, replicas, ISR and
    /// whether it is under-replicated or offline.
    Status {
        /// A broker to start from (any node of the cluster).
        #[arg(long, default_value = "127.0.0.1:9092", value_name = "HOST:PORT")]
        bootstrap: String,
        /// Include internal topics (`__consumer_offsets`).
        #[arg(long)]
        internal: bool,
        /// List only partitions that are under-replicated or offline.
        #[arg(long)]
        problems: bool,
    },
}

fn ids(v: &[i32]) -> String {
    v.iter().map(i32::to_string).collect::<Vec<_>>().join(",")
}

/// Runs `samsa cluster ...`.
pub async fn run(args: ClusterArgs) -> Result<(), String> {
    let ClusterCommand::Status { bootstrap, internal, problems } = args.command;
    let admin = Admin::connect(&bootstrap).await.map_err(|e| e.to_string())?;
    let cluster = admin.describe_cluster().await.map_err(|e| e.to_string())?;
    let names = admin.list_topics(internal).await.map_err(|e| e.to_string())?;
    let topics = admin.describe_topics(&names).await.map_err(|e| e.to_string())?;
    println!(
        "cluster {}  active controller: {}",
        cluster.cluster_id.as_deref().unwrap_or("?"),
        cluster.controller.map_or("none (no quorum)".to_string(), |c| format!("node {c}"))
    );
    let live: std::collections::BTreeSet<i32> = cluster.brokers.iter().map(|b| b.node_id).collect();
    let mut known: std::collections::BTreeSet<i32> = live.clone();
    for t in &topics {
        for p in &t.partitions {
            known.extend(p.replicas.iter().copied());
        }
    }
    let broker_rows: Vec<Vec<String>> = known
        .iter()
        .map(|id| match cluster.brokers.iter().find(|b| b.node_id == *id) {
            Some(b) => vec![id.to_string(), format!("{}:{}", b.host, b.port), if cluster.controller == Some(*id) { "live, controller".into() } else { "live".into() }],
            None => vec![id.to_string(), "-".into(), "down (fenced)".into()],
        })
        .collect();
    println!();
    print_table(&["BROKER", "ADDRESS", "STATE"], &broker_rows);
    let (mut total, mut under, mut offline) = (0, 0, 0);
    let mut rows = Vec::new();
    for t in &topics {
        for p in &t.partitions {
            total += 1;
            let state = if p.leader < 0 || !live.contains(&p.leader) {
                offline += 1;
                "offline"
            } else if p.isr.len() < p.replicas.len() {
                under += 1;
                "under-replicated"
            } else {
                "ok"
            };
            if !problems || state != "ok" {
                let leader = if p.leader < 0 { "none".to_string() } else { p.leader.to_string() };
                rows.push(vec![t.name.clone(), p.partition.to_string(), leader, ids(&p.replicas), ids(&p.isr), state.to_string()]);
            }
        }
    }
    println!();
    if !rows.is_empty() {
        print_table(&["TOPIC", "PARTITION", "LEADER", "REPLICAS", "ISR", "STATE"], &rows);
        println!();
    }
    println!("partitions: {total} total, {under} under-replicated, {offline} offline");
    Ok(())
}
