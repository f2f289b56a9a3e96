//! `samsa topic`: create, list, describe, alter and delete topics.

use clap::Subcommand;
use samsa_client::admin::{Admin, ConfigResource, ConfigSource, NewTopic};

use crate::util::print_table;

/// Arguments of this command.
#[derive(clap::Args)]
pub struct TopicArgs {
    /// A broker to start from.
    #[arg(long, global = true, default_value = "127.0.0.1:9092", value_name = "HOST:PORT")]
    pub bootstrap: String,
    #[command(subcommand)]
    command: TopicCommand,
}

#[derive(Subcommand)]
enum TopicCommand {
    /// Create a topic.
    Create {
        /// Topic name.
        name: String,
        /// Number of partitions.
        #[arg(long, default_value_t = 1, value_name = "N")]
        partitions: i32,
        /// Replicas per partition.
        #[arg(long, default_value_t = 1, value_name = "N")]
        replication_factor: i16,
        /// A topic config override, e.g. `retention.ms=86400000`; repeat for more.
        #[arg(long = "config", value_name = "KEY=VALUE", value_parser = parse_key_value)]
        configs: Vec<(String, String)>,
    },
    /// List topic names, one per line.
    List {
        /// Also list internal topics such as `__consumer_offsets`.
        #[arg(long)]
        internal: bool,
    },
    /// Show partitions (leader, replicas, in-sync replicas) and config overrides.
    Describe {
        /// Topics to describe.
        #[arg(required = true, value_name = "NAME")]
        names: Vec<String>,
    },
    /// Add partitions or change config overrides of a topic.
    Alter {
        /// Topic name.
        name: String,
        /// New total number of partitions (topics only grow).
        #[arg(long, value_name = "N")]
        partitions: Option<i32>,
        /// Set a topic config override, e.g. `cleanup.policy=compact`; repeat for more.
        #[arg(long = "config", value_name = "KEY=VALUE", value_parser = parse_key_value)]
        configs: Vec<(String, String)>,
        /// Remove a topic config override (back to the broker default); repeat for more.
        #[arg(long = "delete-config", value_name = "KEY")]
        delete_configs: Vec<String>,
    },
    /// Delete topics and all their records.
    Delete {
        /// Topics to delete.
        #[arg(required = true, value_name = "NAME")]
        names: Vec<String>,
    },
}

/// Parses `key=value`.
pub(crate) fn parse_key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!("`{s}` is not KEY=VALUE")),
    }
}

/// Runs the command.
pub async fn run(args: TopicArgs) -> Result<(), String> {
    let admin = Admin::connect(&args.bootstrap).await.map_err(|e| e.to_string())?;
    match args.command {
        TopicCommand::Create { name, partitions, replication_factor, configs } => {
            let topic = NewTopic { name: name.clone(), partitions, replication_factor, configs };
            admin.create_topics(&[topic]).await.map_err(|e| e.to_string())?;
            println!("created topic `{name}` with {partitions} partition{}", plural(partitions));
        }
        TopicCommand::List { internal } => {
            for name in admin.list_topics(internal).await.map_err(|e| e.to_string())? {
                println!("{name}");
            }
        }
        TopicCommand::Describe { names } => describe(&admin, &names).await?,
        TopicCommand::Alter { name, partitions, configs, delete_configs } => {
            if partitions.is_none() && configs.is_empty() && delete_configs.is_empty() {
                return Err("nothing to change: give --partitions, --config or --delete-config".into());
            }
            if let Some(n) = partitions {
                admin.create_partitions(&name, n).await.map_err(|e| e.to_string())?;
                println!("topic `{name}` now has {n} partition{}", plural(n));
            }
            let changes: Vec<(String, Option<String>)> =
                configs.into_iter().map(|(k, v)| (k, Some(v))).chain(delete_configs.into_iter().map(|k| (k, None))).collect();
            if !changes.is_empty() {
                admin.alter_configs(&ConfigResource::Topic(name.clone()), &changes).await.map_err(|e| e.to_string())?;
                for (k, v) in &changes {
                    match v {
                        Some(v) => println!("set {k}={v} on topic `{name}`"),
                        None => println!("removed {k} from topic `{name}`"),
                    }
                }
            }
        }
        TopicCommand::Delete { names } => {
            // One at a time, so the output says exactly which ones went.
            let mut failures = Vec::new();
            for name in names {
                match admin.delete_topics(std::slice::from_ref(&name)).await {
                    Ok(()) => println!("deleted topic `{name}`"),
                    Err(e) => failures.push(e.to_string()),
                }
            }
            if !failures.is_empty() {
                return Err(failures.join("; "));
            }
        }
    }
    Ok(())
}

fn plural(n: i32) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

fn ids(ids: &[i32]) -> String {
    ids.iter().map(i32::to_string).collect::<Vec<_>>().join(",")
}

/// Prints, per topic: a summary line, its config overrides, and a partition table.
async fn describe(admin: &Admin, names: &[String]) -> Result<(), String> {
    let topics = admin.describe_topics(names).await.map_err(|e| e.to_string())?;
    for (i, t) in topics.iter().enumerate() {
        if i > 0 {
            println!();
        }
        let rf = t.partitions.iter().map(|p| p.replicas.len()).max().unwrap_or(0);
        println!("topic {}  id {}  partitions {}  replication-factor {rf}{}", t.name, t.id, t.partitions.len(), if t.internal { "  internal" } else { "" });
        let configs = admin.describe_configs(&ConfigResource::Topic(t.name.clone())).await.map_err(|e| e.to_string())?;
        // The topic's own overrides, as `kafka-topics --describe` shows them; values the
        // broker's config sets for every topic are not this topic's.
        let overrides: Vec<String> = configs
            .iter()
            .filter(|c| c.source == ConfigSource::DynamicTopic)
            .map(|c| format!("{}={}", c.name, if c.sensitive { "(sensitive)" } else { c.value.as_deref().unwrap_or("") }))
            .collect();
        println!("configs: {}", if overrides.is_empty() { "(defaults)".to_string() } else { overrides.join(", ") });
        let rows: Vec<Vec<String>> = t
            .partitions
            .iter()
            .map(|p| vec![p.partition.to_string(), if p.leader < 0 { "none".into() } else { p.leader.to_string() }, ids(&p.replicas), ids(&p.isr)])
            .collect();
        print_table(&["PARTITION", "LEADER", "REPLICAS", "ISR"], &rows);
    }
    Ok(())
}
