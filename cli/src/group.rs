//! `samsa group`: consumer groups, their members, offsets and lag.

use std::collections::{BTreeMap, BTreeSet};

use clap::Subcommand;
use samsa_client::admin::{Admin, GroupDescription, OffsetSpec, TopicPartition};
use samsa_client::Error;

use crate::util::print_table;

/// Arguments of this command.
#[derive(clap::Args)]
pub struct GroupArgs {
    /// A broker to start from.
    #[arg(long, global = true, default_value = "127.0.0.1:9092", value_name = "HOST:PORT")]
    pub bootstrap: String,
    #[command(subcommand)]
    command: GroupCommand,
}

#[derive(Subcommand)]
enum GroupCommand {
    /// List groups with their state and protocol type.
    List,
    /// Show a group's state and, per partition, the committed offset, log end, lag and owner.
    Describe {
        /// Group id.
        group: String,
    },
    /// Move a group's committed offsets (prints the plan only, unless --execute).
    ///
    /// The group must have no active members: stop its consumers first.
    ResetOffsets {
        /// Group id.
        group: String,
        /// Topic whose partitions to reset (all of them); repeat for more.
        #[arg(long = "topic", required = true, value_name = "TOPIC")]
        topics: Vec<String>,
        #[command(flatten)]
        target: ResetTarget,
        /// Apply the plan (without it, nothing changes).
        #[arg(long)]
        execute: bool,
    },
    /// Delete groups (which must have no active members) and their committed offsets.
    Delete {
        /// Group ids.
        #[arg(required = true, value_name = "GROUP")]
        groups: Vec<String>,
    },
}

/// Where `reset-offsets` moves the offsets: exactly one of these.
#[derive(clap::Args)]
#[group(required = true, multiple = false)]
struct ResetTarget {
    /// To the first offset still stored (log start).
    #[arg(long)]
    to_earliest: bool,
    /// To the log end (skip everything written so far).
    #[arg(long)]
    to_latest: bool,
    /// To this offset, clamped to the stored range.
    #[arg(long, value_name = "OFFSET")]
    to_offset: Option<i64>,
    /// To the first record with a timestamp at or after this time (ms since the epoch);
    /// partitions with no such record go to the log end.
    #[arg(long, value_name = "MS")]
    to_datetime: Option<i64>,
}

fn text(e: Error) -> String {
    e.to_string()
}

/// Runs the command.
pub async fn run(args: GroupArgs) -> Result<(), String> {
    let admin = Admin::connect(&args.bootstrap).await.map_err(text)?;
    match args.command {
        GroupCommand::List => {
            let rows: Vec<Vec<String>> = admin
                .list_groups()
                .await
                .map_err(text)?
                .into_iter()
                .map(|g| vec![g.group_id, g.state.unwrap_or_else(|| "-".into()), or_dash(g.protocol_type)])
                .collect();
            print_table(&["GROUP", "STATE", "TYPE"], &rows);
        }
        GroupCommand::Describe { group } => describe(&admin, &group).await?,
        GroupCommand::ResetOffsets { group, topics, target, execute } => reset_offsets(&admin, &group, &topics, &target, execute).await?,
        GroupCommand::Delete { groups } => {
            let mut failures = Vec::new();
            for g in groups {
                match admin.delete_groups(std::slice::from_ref(&g)).await {
                    Ok(()) => println!("deleted group `{g}`"),
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

fn or_dash(s: String) -> String {
    if s.is_empty() {
        "-".into()
    } else {
        s
    }
}

fn opt(v: Option<i64>) -> String {
    v.map_or_else(|| "-".into(), |v| v.to_string())
}

async fn describe_one(admin: &Admin, group: &str) -> Result<GroupDescription, String> {
    let mut groups = admin.describe_groups(&[group.to_string()]).await.map_err(text)?;
    groups.pop().ok_or_else(|| format!("the broker did not describe group `{group}`"))
}

/// Log-end offsets of these partitions; topics that no longer exist are left out.
async fn log_ends(admin: &Admin, partitions: &BTreeSet<TopicPartition>) -> Result<BTreeMap<TopicPartition, i64>, String> {
    let mut by_topic: BTreeMap<&str, Vec<TopicPartition>> = BTreeMap::new();
    for tp in partitions {
        by_topic.entry(tp.topic.as_str()).or_default().push(tp.clone());
    }
    let mut out = BTreeMap::new();
    for tps in by_topic.values() {
        match admin.list_offsets(tps, OffsetSpec::Latest).await {
            Ok(m) => out.extend(m.into_iter().map(|(tp, (offset, _))| (tp, offset))),
            Err(Error::UnknownTopic(_)) => {}
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(out)
}

/// Prints the group's state line, then one row per partition that has a committed offset
/// or an owner (and one per member that owns nothing).
async fn describe(admin: &Admin, group: &str) -> Result<(), String> {
    let desc = describe_one(admin, group).await?;
    let committed = admin.list_group_offsets(group).await.map_err(text)?;
    if desc.state == "Dead" && committed.is_empty() {
        return Err(format!("group `{group}` does not exist"));
    }
    let mut owners: BTreeMap<TopicPartition, usize> = BTreeMap::new();
    for (i, m) in desc.members.iter().enumerate() {
        for (t, ps) in &m.assignment {
            for p in ps {
                owners.insert(TopicPartition::new(t.clone(), *p), i);
            }
        }
    }
    let partitions: BTreeSet<TopicPartition> = committed.keys().chain(owners.keys()).cloned().collect();
    let ends = log_ends(admin, &partitions).await?;
    let protocol = if desc.protocol.is_empty() { "-".to_string() } else { format!("{} ({})", desc.protocol, desc.protocol_type) };
    println!("group {group}  state {}  protocol {protocol}  members {}", desc.state, desc.members.len());
    let mut rows: Vec<Vec<String>> = Vec::new();
    for tp in &partitions {
        let current = committed.get(tp).copied();
        let end = ends.get(tp).copied();
        let lag = current.zip(end).map(|(c, e)| e - c);
        let mut row = vec![tp.topic.clone(), tp.partition.to_string(), opt(current), opt(end), opt(lag)];
        match owners.get(tp).map(|&i| &desc.members[i]) {
            Some(m) => row.extend([m.member_id.clone(), m.client_host.clone(), m.client_id.clone()]),
            None => row.extend(["-".to_string(), "-".to_string(), "-".to_string()]),
        }
        rows.push(row);
    }
    for m in desc.members.iter().filter(|m| m.assignment.iter().all(|(_, ps)| ps.is_empty())) {
        rows.push(vec!["-".into(), "-".into(), "-".into(), "-".into(), "-".into(), m.member_id.clone(), m.client_host.clone(), m.client_id.clone()]);
    }
    print_table(&["TOPIC", "PARTITION", "CURRENT-OFFSET", "LOG-END-OFFSET", "LAG", "CONSUMER-ID", "HOST", "CLIENT-ID"], &rows);
    Ok(())
}

async fn reset_offsets(admin: &Admin, group: &str, topics: &[String], target: &ResetTarget, execute: bool) -> Result<(), String> {
    let desc = describe_one(admin, group).await?;
    if !desc.members.is_empty() {
        let n = desc.members.len();
        return Err(format!(
            "group `{group}` has {n} active member{} (state {}); stop its consumers first: offsets can only be reset while a group is empty",
            if n == 1 { "" } else { "s" },
            desc.state
        ));
    }
    let mut partitions: Vec<TopicPartition> = Vec::new();
    for t in admin.describe_topics(topics).await.map_err(text)? {
        partitions.extend(t.partitions.iter().map(|p| TopicPartition::new(t.name.clone(), p.partition)));
    }
    let earliest = admin.list_offsets(&partitions, OffsetSpec::Earliest).await.map_err(text)?;
    let latest = admin.list_offsets(&partitions, OffsetSpec::Latest).await.map_err(text)?;
    let by_time = match target.to_datetime {
        Some(ms) => Some(admin.list_offsets(&partitions, OffsetSpec::Timestamp(ms)).await.map_err(text)?),
        None => None,
    };
    let current = admin.list_group_offsets(group).await.map_err(text)?;
    let mut plan: BTreeMap<TopicPartition, i64> = BTreeMap::new();
    for tp in &partitions {
        let (start, end) = (earliest[tp].0, latest[tp].0);
        let new = if target.to_earliest {
            start
        } else if target.to_latest {
            end
        } else if let Some(o) = target.to_offset {
            o.clamp(start, end)
        } else {
            match by_time.as_ref().map(|m| m[tp].0) {
                Some(o) if o >= 0 => o,
                _ => end,
            }
        };
        plan.insert(tp.clone(), new);
    }
    let rows: Vec<Vec<String>> =
        plan.iter().map(|(tp, new)| vec![tp.topic.clone(), tp.partition.to_string(), opt(current.get(tp).copied()), new.to_string()]).collect();
    print_table(&["TOPIC", "PARTITION", "CURRENT-OFFSET", "NEW-OFFSET"], &rows);
    if execute {
        admin.alter_group_offsets(group, &plan).await.map_err(text)?;
        println!("reset offsets of group `{group}` on {} partition{}", plan.len(), if plan.len() == 1 { "" } else { "s" });
    } else {
        println!("dry run: nothing changed; add --execute to apply this plan");
    }
    Ok(())
}
