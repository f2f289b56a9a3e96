//! `samsa bench`: produce, consume and end-to-end benchmarks with Samsa's own client.
//! Prints progress every second on stderr and a table of records/s, MB/s and latency
//! percentiles on stdout.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use samsa_client::admin::{Admin, NewTopic};
use samsa_client::{Consumer, ConsumerConfig, Producer, ProducerConfig, ProducerRecord, TopicPartition};

use crate::util::print_table;

/// Arguments of `samsa bench`.
#[derive(clap::Args)]
pub struct BenchArgs {
    /// What to measure.
    #[command(subcommand)]
    pub kind: BenchKind,
}

/// The benchmarks.
#[derive(clap::Subcommand)]
pub enum BenchKind {
    /// Producer throughput and send-to-acknowledgement latency.
    Produce(Common),
    /// Consumer throughput, reading a topic from the beginning (fills it first if short).
    Consume(Common),
    /// Produce-to-consume latency at a fixed rate.
    E2e(E2eArgs),
    /// Samsa Streams throughput: stateless and stateful, at-least-once and exactly-once.
    Streams(crate::bench_streams::StreamsBenchArgs),
    /// Nexmark: generate person/auction/bid events into topics (and run the Nexmark SQL queries).
    Nexmark(crate::bench_nexmark::NexmarkArgs),
    /// Samsa Connect throughput: datagen source into a topic, then the topic into PostgreSQL (JDBC sink).
    Connect(crate::bench_connect::ConnectBenchArgs),
}

/// Settings every benchmark shares.
#[derive(clap::Args, Clone)]
pub struct Common {
    /// A broker to start from.
    #[arg(long, default_value = "127.0.0.1:9092", value_name = "HOST:PORT")]
    pub bootstrap: String,
    /// Topic to use (created with --partitions if missing).
    #[arg(long, default_value = "samsa-bench")]
    pub topic: String,
    /// Value size in bytes.
    #[arg(long, default_value_t = 1024, value_name = "BYTES")]
    pub record_size: usize,
    /// Number of records (per run, shared by producers or consumers).
    #[arg(long, default_value_t = 1_000_000, value_name = "N")]
    pub count: u64,
    /// Stop after this many seconds instead of --count.
    #[arg(long, value_name = "SECS")]
    pub duration_secs: Option<u64>,
    /// Partitions of a topic this creates.
    #[arg(long, default_value_t = 1)]
    pub partitions: i32,
    /// acks: 0, 1 or all.
    #[arg(long, default_value = "1")]
    pub acks: String,
    /// Compression: none, gzip, snappy, lz4 or zstd.
    #[arg(long, default_value = "none")]
    pub compression: String,
    /// Parallel producers (produce) or consumers (consume).
    #[arg(long, default_value_t = 1)]
    pub clients: usize,
    /// Producer batch.size in bytes.
    #[arg(long, default_value_t = 1024 * 1024)]
    pub batch_size: usize,
    /// Producer linger.ms.
    #[arg(long, default_value_t = 5)]
    pub linger_ms: u64,
}

/// Settings of `samsa bench e2e`.
#[derive(clap::Args)]
pub struct E2eArgs {
    /// Shared settings (--count is ignored; --duration-secs defaults to 10).
    #[command(flatten)]
    pub common: Common,
    /// Records per second to send.
    #[arg(long, default_value_t = 10_000)]
    pub rate: u64,
}

/// Runs the chosen benchmark.
pub async fn run(args: BenchArgs) -> Result<(), String> {
    match args.kind {
        BenchKind::Produce(c) => produce(c).await,
        BenchKind::Consume(c) => consume(c).await,
        BenchKind::E2e(e) => e2e(e).await,
        BenchKind::Streams(s) => crate::bench_streams::run(s).await,
        BenchKind::Nexmark(n) => crate::bench_nexmark::run(n).await,
        BenchKind::Connect(c) => crate::bench_connect::run(c).await,
    }
}

async fn ensure_topic(c: &Common) -> Result<(), String> {
    let admin = Admin::connect(&c.bootstrap).await.map_err(|e| e.to_string())?;
    match admin.create_topics(&[NewTopic::new(&c.topic, c.partitions, 1)]).await {
        Ok(()) => Ok(()),
        Err(e) if e.kafka_error() == Some(samsa_client::error::ResponseError::TopicAlreadyExists) => Ok(()),
        Err(e) => Err(e.to_string()),
    }
}

fn producer_config(c: &Common) -> Result<ProducerConfig, String> {
    let mut config = ProducerConfig::new(&c.bootstrap).map_err(|e| e.to_string())?;
    for (k, v) in [
        ("acks", c.acks.clone()),
        ("compression.type", c.compression.clone()),
        ("batch.size", c.batch_size.to_string()),
        ("linger.ms", c.linger_ms.to_string()),
        ("buffer.memory", (256 * 1024 * 1024).to_string()),
        ("max.request.size", (c.batch_size.max(1024 * 1024) * 2).to_string()),
    ] {
        config.set(k, &v).map_err(|e| e.to_string())?;
    }
    Ok(config)
}

/// Latency samples in microseconds.
#[derive(Default)]
struct Samples(Vec<u64>);

impl Samples {
    fn pct(&mut self, p: f64) -> String {
        if self.0.is_empty() {
            return "-".into();
        }
        self.0.sort_unstable();
        let i = ((self.0.len() as f64 * p).ceil() as usize).clamp(1, self.0.len()) - 1;
        format!("{:.2}", self.0[i] as f64 / 1000.0)
    }
}

/// Prints `done` records per second on stderr until the returned guard drops.
fn progress(label: &'static str, done: Arc<AtomicU64>, record_size: usize) -> tokio::task::JoinHandle<()> {
    crate::util::progress_every_second(done, move |secs, now, added| {
        let mb = added as f64 * record_size as f64 / 1e6;
        format!("  {label} {secs:>5.1} s  {now:>12} records  {mb:>8.1} MB/s")
    })
}

fn summary(what: &str, c: &Common, records: u64, elapsed: Duration, lat: &mut Samples) {
    let secs = elapsed.as_secs_f64().max(1e-9);
    println!(
        "samsa bench {what}: {records} records of {} B, {} partition(s), acks={}, compression={}, {} client(s), batch.size={}, linger.ms={}",
        c.record_size, c.partitions, c.acks, c.compression, c.clients, c.batch_size, c.linger_ms
    );
    print_table(
        &["records/s", "MB/s", "seconds", "p50 ms", "p99 ms", "p999 ms"],
        &[vec![
            format!("{:.0}", records as f64 / secs),
            format!("{:.1}", records as f64 * c.record_size as f64 / secs / 1e6),
            format!("{secs:.2}"),
            lat.pct(0.50),
            lat.pct(0.99),
            lat.pct(0.999),
        ]],
    );
}

async fn produce_records(c: &Common, done: Arc<AtomicU64>, deadline: Option<Instant>) -> Result<(u64, Samples), String> {
    let per_client = c.count.div_ceil(c.clients as u64);
    let mut handles = Vec::new();
    for _ in 0..c.clients {
        let producer = Producer::new(producer_config(c)?).await.map_err(|e| e.to_string())?;
        let (topic, size, done) = (c.topic.clone(), c.record_size, done.clone());
        handles.push(tokio::spawn(async move {
            let value = Bytes::from(vec![b'x'; size]);
            let (tx, mut rx) = tokio::sync::mpsc::channel::<(Instant, samsa_client::DeliveryFuture)>(100_000);
            let waiter = tokio::spawn(async move {
                let mut lat = Samples::default();
                let mut ok = 0u64;
                while let Some((sent, fut)) = rx.recv().await {
                    fut.await.map_err(|e| e.to_string())?;
                    lat.0.push(sent.elapsed().as_micros() as u64);
                    ok += 1;
                    done.fetch_add(1, Ordering::Relaxed);
                }
                Ok::<_, String>((ok, lat))
            });
            for _ in 0..per_client {
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    break;
                }
                let fut = producer.send(ProducerRecord::new(topic.clone(), value.clone())).await.map_err(|e| e.to_string())?;
                if tx.send((Instant::now(), fut)).await.is_err() {
                    break;
                }
            }
            drop(tx);
            producer.flush().await;
            waiter.await.map_err(|e| e.to_string())?
        }));
    }
    let mut total = 0;
    let mut all = Samples::default();
    for h in handles {
        let (n, lat) = h.await.map_err(|e| e.to_string())??;
        total += n;
        all.0.extend(lat.0);
    }
    Ok((total, all))
}

async fn produce(c: Common) -> Result<(), String> {
    ensure_topic(&c).await?;
    let done = Arc::new(AtomicU64::new(0));
    let ticker = progress("produce", done.clone(), c.record_size);
    let start = Instant::now();
    let deadline = c.duration_secs.map(|s| start + Duration::from_secs(s));
    let c = Common { count: if deadline.is_some() { u64::MAX / 2 } else { c.count }, ..c };
    let (n, mut lat) = produce_records(&c, done, deadline).await?;
    let elapsed = start.elapsed();
    ticker.abort();
    summary("produce", &c, n, elapsed, &mut lat);
    Ok(())
}

async fn partitions_of(consumer: &Consumer, topic: &str) -> Result<Vec<TopicPartition>, String> {
    let info = consumer.cluster().topic(topic, false).await.map_err(|e| e.to_string())?.ok_or_else(|| format!("topic `{topic}` does not exist"))?;
    Ok(info.partitions.iter().map(|p| TopicPartition::new(topic, p.partition)).collect())
}

async fn consume(c: Common) -> Result<(), String> {
    ensure_topic(&c).await?;
    let admin = Admin::connect(&c.bootstrap).await.map_err(|e| e.to_string())?;
    let info = admin.describe_topics(std::slice::from_ref(&c.topic)).await.map_err(|e| e.to_string())?;
    let tps: Vec<TopicPartition> = info[0].partitions.iter().map(|p| TopicPartition::new(&c.topic, p.partition)).collect();
    let ends = admin.list_offsets(&tps, samsa_client::admin::OffsetSpec::Latest).await.map_err(|e| e.to_string())?;
    let starts = admin.list_offsets(&tps, samsa_client::admin::OffsetSpec::Earliest).await.map_err(|e| e.to_string())?;
    let have: i64 = tps.iter().map(|tp| ends[tp].0 - starts[tp].0).sum();
    let want = c.count as i64;
    if have < want {
        eprintln!("filling `{}` with {} more records first", c.topic, want - have);
        let fill = Common { count: (want - have) as u64, clients: 1, ..c.clone() };
        produce_records(&fill, Arc::new(AtomicU64::new(0)), None).await?;
    }
    let done = Arc::new(AtomicU64::new(0));
    let ticker = progress("consume", done.clone(), c.record_size);
    let start = Instant::now();
    let deadline = c.duration_secs.map(|s| start + Duration::from_secs(s));
    let clients = c.clients.clamp(1, tps.len());
    let mut handles = Vec::new();
    for i in 0..clients {
        let mine: Vec<TopicPartition> = tps.iter().skip(i).step_by(clients).cloned().collect();
        let mut config = ConsumerConfig::new(&c.bootstrap).map_err(|e| e.to_string())?;
        config.set("auto.offset.reset", "earliest").map_err(|e| e.to_string())?;
        config.set("fetch.max.bytes", &(64 * 1024 * 1024).to_string()).map_err(|e| e.to_string())?;
        config.set("max.partition.fetch.bytes", &(8 * 1024 * 1024).to_string()).map_err(|e| e.to_string())?;
        config.set("max.poll.records", "10000").map_err(|e| e.to_string())?;
        let consumer = Consumer::new(config).await.map_err(|e| e.to_string())?;
        consumer.assign(&mine).map_err(|e| e.to_string())?;
        let quota = c.count / clients as u64 + u64::from((i as u64) < c.count % clients as u64);
        let done = done.clone();
        handles.push(tokio::spawn(async move {
            let mut n = 0u64;
            while n < quota && deadline.is_none_or(|d| Instant::now() < d) {
                let batch = consumer.poll(Duration::from_secs(5)).await.map_err(|e| e.to_string())?;
                if batch.is_empty() {
                    return Err(format!("no records for 5 s after {n} of {quota}"));
                }
                n += batch.len() as u64;
                done.fetch_add(batch.len() as u64, Ordering::Relaxed);
            }
            Ok::<u64, String>(n.min(quota))
        }));
    }
    let mut total = 0;
    for h in handles {
        total += h.await.map_err(|e| e.to_string())??;
    }
    let elapsed = start.elapsed();
    ticker.abort();
    summary("consume", &c, total, elapsed, &mut Samples::default());
    Ok(())
}

fn now_micros() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0)
}

async fn e2e(args: E2eArgs) -> Result<(), String> {
    let c = Common { duration_secs: Some(args.common.duration_secs.unwrap_or(10)), ..args.common };
    if c.record_size < 8 {
        return Err("--record-size must be at least 8 for e2e (the send time rides in the value)".into());
    }
    ensure_topic(&c).await?;
    let mut config = ConsumerConfig::new(&c.bootstrap).map_err(|e| e.to_string())?;
    config.set("fetch.max.wait.ms", "100").map_err(|e| e.to_string())?;
    let consumer = Consumer::new(config).await.map_err(|e| e.to_string())?;
    let tps = partitions_of(&consumer, &c.topic).await?;
    consumer.assign(&tps).map_err(|e| e.to_string())?;
    consumer.seek_to_end(&tps).map_err(|e| e.to_string())?;
    for tp in &tps {
        consumer.position(tp).await.map_err(|e| e.to_string())?;
    }
    let producer = Producer::new(producer_config(&c)?).await.map_err(|e| e.to_string())?;
    let secs = c.duration_secs.unwrap_or(10);
    let total = args.rate * secs;
    let done = Arc::new(AtomicU64::new(0));
    let ticker = progress("e2e", done.clone(), c.record_size);
    let (topic, size, rate) = (c.topic.clone(), c.record_size, args.rate);
    let sender = tokio::spawn(async move {
        let start = Instant::now();
        let mut sent = 0u64;
        let mut tick = tokio::time::interval(Duration::from_millis(1));
        while sent < total {
            tick.tick().await;
            let due = ((start.elapsed().as_secs_f64() * rate as f64) as u64).min(total);
            while sent < due {
                let mut value = vec![b'x'; size];
                value[..8].copy_from_slice(&now_micros().to_be_bytes());
                producer.send(ProducerRecord::new(topic.clone(), value)).await.map_err(|e| e.to_string())?;
                sent += 1;
            }
        }
        producer.flush().await;
        Ok::<u64, String>(sent)
    });
    let start = Instant::now();
    let mut lat = Samples::default();
    while (lat.0.len() as u64) < total {
        let batch = consumer.poll(Duration::from_secs(5)).await.map_err(|e| e.to_string())?;
        if batch.is_empty() {
            return Err(format!("no records for 5 s after {} of {total}", lat.0.len()));
        }
        let now = now_micros();
        for r in batch {
            if let Some(v) = r.value.filter(|v| v.len() >= 8) {
                let sent = u64::from_be_bytes(v[..8].try_into().expect("8 bytes"));
                lat.0.push(now.saturating_sub(sent));
                done.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    let elapsed = start.elapsed();
    sender.await.map_err(|e| e.to_string())??;
    ticker.abort();
    summary(&format!("e2e at {rate} records/s"), &c, lat.0.len() as u64, elapsed, &mut lat);
    Ok(())
}
