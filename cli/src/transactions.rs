//! `samsa transactions`: transactional ids, their state and open partitions, and the
//! producers a partition knows.

use clap::Subcommand;
use samsa_client::admin::{Admin, TopicPartition};

use crate::util::print_table;

/// Arguments of this command.
#[derive(clap::Args)]
pub struct TransactionsArgs {
    /// A broker to start from.
    #[arg(long, global = true, default_value = "127.0.0.1:9092", value_name = "HOST:PORT")]
    pub bootstrap: String,
    #[command(subcommand)]
    command: TransactionsCommand,
}

#[derive(Subcommand)]
enum TransactionsCommand {
    /// List transactional ids with their producer id, state and coordinator.
    List {
        /// Only ids in this state (Empty, Ongoing, PrepareCommit, PrepareAbort,
        /// CompleteCommit, CompleteAbort); repeat for more.
        #[arg(long = "state", value_name = "STATE")]
        states: Vec<String>,
    },
    /// Show a transactional id: state, producer id and epoch, timeout, open partitions.
    Describe {
        /// The transactional id.
        transactional_id: String,
    },
    /// Show the producers a partition's leader tracks: epoch, last sequence and the first
    /// offset of any open transaction (what holds the last stable offset back).
    Producers {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
    },
}

/// Runs the command.
pub async fn run(args: TransactionsArgs) -> Result<(), String> {
    let admin = Admin::connect(&args.bootstrap).await.map_err(|e| e.to_string())?;
    match args.command {
        TransactionsCommand::List { states } => {
            let rows: Vec<Vec<String>> = admin
                .list_transactions(&states)
                .await
                .map_err(|e| e.to_string())?
                .into_iter()
                .map(|t| vec![t.transactional_id, t.producer_id.to_string(), t.state, t.coordinator.to_string()])
                .collect();
            print_table(&["TRANSACTIONAL ID", "PRODUCER ID", "STATE", "COORDINATOR"], &rows);
        }
        TransactionsCommand::Describe { transactional_id } => {
            let mut found = admin.describe_transactions(std::slice::from_ref(&transactional_id)).await.map_err(|e| e.to_string())?;
            let t = found.pop().ok_or_else(|| format!("the coordinator did not describe `{transactional_id}`"))?;
            let started = if t.start_ms < 0 { "-".to_string() } else { format!("{} ms ago", (now_ms() - t.start_ms).max(0)) };
            let rows = vec![
                vec!["transactional id".into(), t.transactional_id],
                vec!["coordinator".into(), t.coordinator.to_string()],
                vec!["state".into(), t.state],
                vec!["producer id".into(), t.producer_id.to_string()],
                vec!["producer epoch".into(), t.producer_epoch.to_string()],
                vec!["timeout".into(), format!("{} ms", t.timeout_ms)],
                vec!["started".into(), started],
                vec!["partitions".into(), if t.partitions.is_empty() { "-".into() } else { t.partitions.iter().map(|p| format!("{}-{}", p.topic, p.partition)).collect::<Vec<_>>().join(", ") }],
            ];
            print_table(&["FIELD", "VALUE"], &rows);
        }
        TransactionsCommand::Producers { topic, partition } => {
            let producers = admin.describe_producers(&TopicPartition::new(topic, partition)).await.map_err(|e| e.to_string())?;
            let dash = |v: i64| if v < 0 { "-".to_string() } else { v.to_string() };
            let rows: Vec<Vec<String>> = producers
                .into_iter()
                .map(|p| vec![p.producer_id.to_string(), p.producer_epoch.to_string(), dash(i64::from(p.last_sequence)), dash(p.last_timestamp), dash(p.txn_start_offset)])
                .collect();
            print_table(&["PRODUCER ID", "EPOCH", "LAST SEQUENCE", "LAST TIMESTAMP", "OPEN TXN START"], &rows);
        }
    }
    Ok(())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}
