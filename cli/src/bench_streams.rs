//! `samsa bench streams`: Samsa Streams throughput. Fills an input topic once, then runs
//! each workload (a stateless filter+map, a stateful count by key) under each guarantee
//! (at_least_once, exactly_once_v2) as a fresh application reading the topic from the
//! start, and reports records/s from start until every input record is processed (the
//! final commit is waited for but not timed: at_least_once commits only every 30 s by
//! default), plus the RocksDB memory in use and the process RSS.

use std::time::{Duration, Instant};

use bytes::Bytes;
use samsa_client::admin::{Admin, NewTopic};
use samsa_client::{Producer, ProducerConfig, ProducerRecord, TopicPartition};
use samsa_streams::{KafkaStreams, Materialized, StreamsBuilder, StreamsConfig};

use crate::util::print_table;

/// Settings of `samsa bench streams`.
#[derive(clap::Args)]
pub struct StreamsBenchArgs {
    /// A broker to start from.
    #[arg(long, default_value = "127.0.0.1:9092", value_name = "HOST:PORT")]
    pub bootstrap: String,
    /// Input records.
    #[arg(long, default_value_t = 1_000_000, value_name = "N")]
    pub count: u64,
    /// Distinct keys of the input (the stateful count keeps one entry per key).
    #[arg(long, default_value_t = 100_000)]
    pub keys: u64,
    /// Value size in bytes.
    #[arg(long, default_value_t = 100, value_name = "BYTES")]
    pub record_size: usize,
    /// Partitions of the input topic (tasks per sub-topology).
    #[arg(long, default_value_t = 6)]
    pub partitions: i32,
    /// Stream threads of the application.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// RocksDB budget (block cache; write buffers get half of it) in MiB.
    #[arg(long, default_value_t = 64)]
    pub rocksdb_mib: usize,
    /// Only these workloads (comma-separated: stateless, count).
    #[arg(long, default_value = "stateless,count")]
    pub workloads: String,
    /// Only these guarantees (comma-separated: at_least_once, exactly_once_v2).
    #[arg(long, default_value = "at_least_once,exactly_once_v2")]
    pub guarantees: String,
}

/// Runs the streams benchmark and prints a table.
pub async fn run(a: StreamsBenchArgs) -> Result<(), String> {
    let run_id = std::process::id();
    let input = format!("streams-bench-in-{run_id}");
    let admin = Admin::connect(&a.bootstrap).await.map_err(|e| e.to_string())?;
    admin.create_topics(&[NewTopic::new(&input, a.partitions, 1)]).await.map_err(|e| e.to_string())?;
    eprintln!("filling {input}: {} records, {} keys, {} partitions", a.count, a.keys, a.partitions);
    fill(&a, &input).await?;
    let mut rows = Vec::new();
    for workload in a.workloads.split(',').map(str::trim) {
        for guarantee in a.guarantees.split(',').map(str::trim) {
            let app = format!("streams-bench-{workload}-{guarantee}-{run_id}");
            let output = format!("{app}-out");
            admin.create_topics(&[NewTopic::new(&output, a.partitions, 1)]).await.map_err(|e| e.to_string())?;
            let state = std::env::temp_dir().join(format!("samsa-bench-{run_id}"));
            let mut config = StreamsConfig::new(&app, &a.bootstrap);
            let budget = (a.rocksdb_mib * 1024 * 1024).to_string();
            let wb = (a.rocksdb_mib * 512 * 1024).to_string();
            for (k, v) in [
                ("state.dir", state.display().to_string().as_str()),
                ("processing.guarantee", guarantee),
                ("num.stream.threads", &a.threads.to_string()),
                ("rocksdb.block.cache.bytes", &budget),
                ("rocksdb.write.buffer.bytes", &wb),
            ] {
                config.set(k, v).map_err(|e| e.to_string())?;
            }
            let b = StreamsBuilder::new();
            let s = b.stream::<String, Bytes>(&input);
            match workload {
                "stateless" => s.filter(|k, _| !k.ends_with('7')).map(|k, v: Bytes| (k, v.len() as i64)).to(&output),
                "count" => s.group_by_key().count_with(Materialized::named("bench-counts")).to_stream().to(&output),
                other => return Err(format!("unknown workload `{other}` (stateless or count)")),
            }
            let topology = b.build().map_err(|e| e.to_string())?;
            let started = Instant::now();
            let streams = KafkaStreams::start(topology, config).await.map_err(|e| e.to_string())?;
            let rss_before = rss_kib();
            wait_processed(a.count, &streams).await?;
            let secs = started.elapsed().as_secs_f64();
            wait_committed(&admin, &app, &input, a.partitions, a.count, &streams).await?;
            let rocks = streams.rocksdb_memory_usage();
            let rss = rss_kib();
            streams.close().await.map_err(|e| e.to_string())?;
            let _ = std::fs::remove_dir_all(&state);
            eprintln!("{workload} {guarantee}: {:.0} records/s", a.count as f64 / secs);
            rows.push(vec![
                workload.to_string(),
                guarantee.to_string(),
                format!("{:.0}", a.count as f64 / secs),
                format!("{secs:.1}"),
                if workload == "count" { format!("{:.1}", rocks as f64 / 1048576.0) } else { "-".into() },
                format!("{:.0}", rss.max(rss_before) as f64 / 1024.0),
            ]);
        }
    }
    print_table(&["workload", "guarantee", "records/s", "secs", "rocksdb MiB", "rss MiB"], &rows);
    Ok(())
}

async fn fill(a: &StreamsBenchArgs, topic: &str) -> Result<(), String> {
    let mut pc = ProducerConfig::new(&a.bootstrap).map_err(|e| e.to_string())?;
    for (k, v) in [("linger.ms", "5"), ("batch.size", "1048576"), ("buffer.memory", "268435456")] {
        pc.set(k, v).map_err(|e| e.to_string())?;
    }
    let producer = Producer::new(pc).await.map_err(|e| e.to_string())?;
    let value = Bytes::from(vec![b'x'; a.record_size]);
    let mut pending = Vec::new();
    for i in 0..a.count {
        let rec = ProducerRecord::new(topic, value.clone()).key(format!("key-{}", i % a.keys.max(1)));
        pending.push(producer.send(rec).await.map_err(|e| e.to_string())?);
        if pending.len() >= 10_000 {
            for p in pending.drain(..) {
                p.await.map_err(|e| e.to_string())?;
            }
        }
    }
    for p in pending {
        p.await.map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Waits until the application's tasks have processed `count` input records.
async fn wait_processed(count: u64, streams: &KafkaStreams) -> Result<(), String> {
    let mut last_report = Instant::now();
    loop {
        if streams.is_failed() {
            return Err("the streams application failed; see the log above".into());
        }
        let done: u64 = streams.task_metrics().values().map(|m| m.processed).sum();
        if done >= count {
            return Ok(());
        }
        if last_report.elapsed() >= Duration::from_secs(2) {
            last_report = Instant::now();
            eprintln!("  {done} of {count} input records processed");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the application has committed every input offset.
async fn wait_committed(admin: &Admin, app: &str, input: &str, partitions: i32, count: u64, streams: &KafkaStreams) -> Result<(), String> {
    let tps: Vec<TopicPartition> = (0..partitions).map(|p| TopicPartition::new(input, p)).collect();
    let mut last_report = Instant::now();
    loop {
        if streams.is_failed() {
            return Err("the streams application failed; see the log above".into());
        }
        let committed = admin.list_group_offsets(app).await.unwrap_or_default();
        let done: i64 = tps.iter().filter_map(|tp| committed.get(tp)).sum();
        if done as u64 >= count {
            return Ok(());
        }
        if last_report.elapsed() >= Duration::from_secs(5) {
            last_report = Instant::now();
            eprintln!("  {done} of {count} input records committed");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Resident set size of this process in KiB (Linux), 0 when unknown.
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)).and_then(|n| n.parse().ok()))
        .unwrap_or(0)
}
