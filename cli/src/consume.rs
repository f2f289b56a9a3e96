//! `samsa consume`: print records from a topic.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, Instant};

use samsa_client::{Consumer, ConsumerConfig, ConsumerRecord, TopicPartition};

use crate::produce::split_pair;

/// Arguments of `samsa consume`.
#[derive(clap::Args)]
#[command(after_long_help = "Format fields: {topic} {partition} {offset} {timestamp} {key} {value} {headers}; \\t and \\n are escapes.\nExample: --format '{partition}:{offset} {key}={value}'")]
pub struct ConsumeArgs {
    /// Topic to read.
    pub topic: String,
    /// A broker to start from.
    #[arg(long, default_value = "127.0.0.1:9092", value_name = "HOST:PORT")]
    pub bootstrap: String,
    /// Consume as a member of this group (partitions are shared; offsets are committed).
    #[arg(long, value_name = "GROUP")]
    pub group: Option<String>,
    /// Start from the oldest record when there is no committed offset (default: only new records).
    #[arg(long)]
    pub from_beginning: bool,
    /// Read only this partition (without --group).
    #[arg(long, value_name = "N", conflicts_with = "group")]
    pub partition: Option<i32>,
    /// Start at this offset (with --partition).
    #[arg(long, value_name = "OFFSET", requires = "partition")]
    pub offset: Option<i64>,
    /// Exit 0 after printing this many records.
    #[arg(long, value_name = "N")]
    pub max_messages: Option<u64>,
    /// Exit 0 when no record arrives for this long.
    #[arg(long, value_name = "MS")]
    pub timeout_ms: Option<u64>,
    /// How to print each record (see below).
    #[arg(long, default_value = "{value}")]
    pub format: String,
    /// Any consumer property, as KEY=VALUE (repeatable), e.g. isolation.level=read_committed.
    #[arg(long = "property", short = 'X', value_name = "KEY=VALUE")]
    pub properties: Vec<String>,
}

fn text(b: &Option<bytes::Bytes>) -> String {
    b.as_ref().map(|b| String::from_utf8_lossy(b).into_owned()).unwrap_or_else(|| "null".into())
}

/// Renders a record with a `{field}` template.
pub fn render(format: &str, r: &ConsumerRecord) -> String {
    let headers = r.headers.iter().map(|(k, v)| format!("{k}={}", text(v))).collect::<Vec<_>>().join(",");
    format
        .replace("\\t", "\t")
        .replace("\\n", "\n")
        .replace("{topic}", &r.topic)
        .replace("{partition}", &r.partition.to_string())
        .replace("{offset}", &r.offset.to_string())
        .replace("{timestamp}", &r.timestamp.to_string())
        .replace("{headers}", &headers)
        .replace("{key}", &text(&r.key))
        .replace("{value}", &text(&r.value))
}

/// Runs the command until --max-messages, --timeout-ms or Ctrl-C.
pub async fn run(args: ConsumeArgs) -> Result<(), String> {
    let mut config = ConsumerConfig::new(&args.bootstrap).map_err(|e| e.to_string())?;
    // Offsets are committed for exactly the records printed, never for prefetched ones.
    config.set("enable.auto.commit", "false").map_err(|e| e.to_string())?;
    config.set("auto.offset.reset", if args.from_beginning { "earliest" } else { "latest" }).map_err(|e| e.to_string())?;
    if let Some(g) = &args.group {
        config.set("group.id", g).map_err(|e| e.to_string())?;
    }
    for p in &args.properties {
        let (k, v) = split_pair(p)?;
        config.set(k, v).map_err(|e| e.to_string())?;
    }
    let consumer = Consumer::new(config).await.map_err(|e| e.to_string())?;
    if args.group.is_some() {
        consumer.subscribe(&[&args.topic]).map_err(|e| e.to_string())?;
    } else {
        let topic = consumer
            .cluster()
            .topic(&args.topic, false)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| samsa_client::Error::UnknownTopic(args.topic.clone()).to_string())?;
        let tps: Vec<TopicPartition> = match args.partition {
            Some(p) if p < 0 || p as usize >= topic.partitions.len() => {
                return Err(format!("topic `{}` has no partition {p} (it has {})", args.topic, topic.partitions.len()))
            }
            Some(p) => vec![TopicPartition::new(&args.topic, p)],
            None => topic.partitions.iter().map(|p| TopicPartition::new(&args.topic, p.partition)).collect(),
        };
        consumer.assign(&tps).map_err(|e| e.to_string())?;
        if let Some(o) = args.offset {
            consumer.seek(&tps[0], o).map_err(|e| e.to_string())?;
        }
    }
    let result = consume_loop(&consumer, &args).await;
    let _ = consumer.close().await;
    result
}

async fn consume_loop(consumer: &Consumer, args: &ConsumeArgs) -> Result<(), String> {
    let mut printed = 0u64;
    let mut to_commit: BTreeMap<TopicPartition, i64> = BTreeMap::new();
    let mut last_record = Instant::now();
    let mut last_commit = Instant::now();
    let stdout = std::io::stdout();
    let signal = crate::wait_for_signal();
    tokio::pin!(signal);
    loop {
        let records = tokio::select! {
            r = consumer.poll(Duration::from_millis(200)) => r.map_err(|e| e.to_string())?,
            _ = &mut signal => break,
        };
        let mut out = stdout.lock();
        for r in records {
            if args.max_messages.is_some_and(|m| printed >= m) {
                break;
            }
            writeln!(out, "{}", render(&args.format, &r)).map_err(|e| format!("cannot write to stdout: {e}"))?;
            to_commit.insert(TopicPartition::new(&r.topic, r.partition), r.offset + 1);
            printed += 1;
            last_record = Instant::now();
        }
        out.flush().ok();
        drop(out);
        let done = args.max_messages.is_some_and(|m| printed >= m) || args.timeout_ms.is_some_and(|t| last_record.elapsed() >= Duration::from_millis(t));
        if args.group.is_some() && !to_commit.is_empty() && (done || last_commit.elapsed() >= Duration::from_secs(1)) {
            consumer.commit_offsets(&to_commit).await.map_err(|e| e.to_string())?;
            to_commit.clear();
            last_commit = Instant::now();
        }
        if done {
            break;
        }
    }
    if args.group.is_some() && !to_commit.is_empty() {
        consumer.commit_offsets(&to_commit).await.map_err(|e| e.to_string())?;
    }
    eprintln!("consumed {printed} record(s)");
    Ok(())
}
