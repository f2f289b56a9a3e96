//! `samsa bench connect`: records/s through Samsa Connect, run in-process by the standalone
//! worker, in two stages timed apart:
//!
//! ```text
//!  1. datagen source (quickstart pageviews, fixed seed) ──> topic     until the end offsets sum to N
//!  2. topic ──> JdbcSink (upsert by viewtime, auto.create) ──> table  until SELECT count(*) = N
//! ```
//!
//! Each stage starts its connector with `samsa_connect::standalone::run`, counts from the
//! start until the destination holds every record, then stops the worker through its watch
//! channel (so tasks commit and close as on a clean shutdown). The topic is new (a fresh
//! name per run by default) with `--tasks` partitions; the sink's consumer polls
//! `--batch-size` records at a time, one `put` (one transaction) per poll. Besides the
//! overall records/s, the table shows the startup (until the first records arrive: for
//! the sink, mostly the group's `group.initial.rebalance.delay.ms`, 3 s by default) and the
//! steady records/s after it. Without `--postgres` only stage 1 runs. The topic, the
//! table and the sink's group are removed at the end unless `--keep`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use samsa_client::admin::{Admin, NewTopic, OffsetSpec};
use samsa_client::TopicPartition;
use samsa_connect::config::Props;
use samsa_connect::postgres::ConnParams;
use samsa_connect::standalone::{check_connector, run as run_worker, WorkerConfig};
use tokio::sync::watch;

use crate::util::print_table;

/// How often a stage checks whether its destination holds every record.
const CHECK_EVERY: Duration = Duration::from_millis(200);
/// A stage fails when its destination gains nothing for this long.
const STALL: Duration = Duration::from_secs(60);
/// The datagen seed: every run writes the same records.
const SEED: u64 = 42;

/// Settings of `samsa bench connect`.
#[derive(clap::Args, Clone, Debug)]
pub struct ConnectBenchArgs {
    /// A broker to start from.
    #[arg(long, default_value = "127.0.0.1:9092", value_name = "HOST:PORT")]
    pub bootstrap: String,
    /// Records to generate and then sink.
    #[arg(long, default_value_t = 1_000_000, value_name = "N")]
    pub records: u64,
    /// PostgreSQL for the sink stage: jdbc:postgresql://HOST:PORT/DB or
    /// postgresql://USER[:PASSWORD]@HOST:PORT/DB (without it the sink stage is skipped).
    #[arg(long, value_name = "URL")]
    pub postgres: Option<String>,
    /// Topic to create and fill (must not exist yet; default: a fresh name per run). The
    /// sink's table is named after it, with characters other than letters, digits and `_`
    /// as `_`.
    #[arg(long)]
    pub topic: Option<String>,
    /// tasks.max of both connectors, and the topic's partitions.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub tasks: u32,
    /// The sink's batch.size (rows per INSERT statement) and its consumer's max.poll.records
    /// (records per put, one transaction each).
    #[arg(long, default_value_t = 3000, value_name = "ROWS")]
    pub batch_size: usize,
    /// Keep the topic, the table and the sink's consumer group afterwards.
    #[arg(long)]
    pub keep: bool,
}

/// One timed stage: its name, records, how long they took, and when the first records were
/// seen (the startup: connecting, joining the group, creating the table) and how many.
struct Stage {
    name: &'static str,
    records: u64,
    elapsed: Duration,
    first: Duration,
    first_count: u64,
}

impl Stage {
    /// Its row: stage, records, seconds, records/s, startup s (until the first records),
    /// steady records/s (after them).
    fn row(&self) -> Vec<String> {
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        let after = (self.elapsed.saturating_sub(self.first)).as_secs_f64();
        let steady = if after > 0.0 { format!("{:.0}", (self.records - self.first_count) as f64 / after) } else { "-".into() };
        vec![self.name.into(), self.records.to_string(), format!("{secs:.2}"), format!("{:.0}", self.records as f64 / secs), format!("{:.2}", self.first.as_secs_f64()), steady]
    }
}

/// Runs the benchmark and prints its table.
pub async fn run(args: ConnectBenchArgs) -> Result<(), String> {
    if args.records == 0 || args.tasks == 0 || args.batch_size == 0 {
        return Err("--records, --tasks and --batch-size must be at least 1".into());
    }
    let run_id = unique_suffix();
    let topic = args.topic.clone().unwrap_or_else(|| format!("bench-connect-{run_id}"));
    let table: String = topic.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c.to_ascii_lowercase() } else { '_' }).collect();
    let pg = match &args.postgres {
        Some(url) => Some(Postgres::connect(url).await?),
        None => None,
    };
    if let Some(pg) = &pg {
        if pg.table_exists(&table).await? {
            return Err(format!("table {table} already exists in PostgreSQL; pick another --topic"));
        }
    }
    let admin = Admin::connect(&args.bootstrap).await.map_err(|e| format!("cannot reach {}: {e}", args.bootstrap))?;
    admin.create_topics(&[NewTopic::new(&topic, args.tasks as i32, 1)]).await.map_err(|e| match e.kafka_error() {
        Some(samsa_client::error::ResponseError::TopicAlreadyExists) => format!("topic {topic} already exists; pick a new --topic (the bench counts every record in it)"),
        _ => format!("cannot create topic {topic}: {e}"),
    })?;
    let names = Names {
        topic,
        table,
        source: format!("bench-datagen-{run_id}"),
        sink: format!("bench-jdbc-sink-{run_id}"),
        offsets_dir: std::env::temp_dir().join(format!("samsa-bench-connect-{run_id}")),
    };
    let Names { topic, table, sink: sink_name, .. } = &names;
    std::fs::create_dir_all(&names.offsets_dir).map_err(|e| format!("cannot create {}: {e}", names.offsets_dir.display()))?;
    let result = stages(&args, &admin, &names, pg.as_ref()).await;
    let _ = std::fs::remove_dir_all(&names.offsets_dir);
    if !args.keep {
        if let Some(pg) = &pg {
            if let Err(e) = pg.client.batch_execute(&format!("DROP TABLE IF EXISTS {}", quote_ident(table))).await {
                eprintln!("cannot drop table {table}: {}", pg_error(&e));
            }
        }
        if pg.is_some() {
            let _ = admin.delete_groups(&[format!("connect-{sink_name}")]).await;
        }
        if let Err(e) = admin.delete_topics(std::slice::from_ref(topic)).await {
            eprintln!("cannot delete topic {topic}: {e}");
        }
    }
    let done = result?;
    println!(
        "samsa bench connect: {} pageviews records (datagen, JsonConverter with schemas), topic {topic} with {} partition(s), tasks.max={}, sink batch.size={}",
        args.records, args.tasks, args.tasks, args.batch_size
    );
    let rows: Vec<Vec<String>> = done.iter().map(Stage::row).collect();
    print_table(&["stage", "records", "seconds", "records/s", "startup s", "steady records/s"], &rows);
    if pg.is_none() {
        println!("sink stage skipped: no --postgres (give jdbc:postgresql://HOST:PORT/DB to measure topic -> PostgreSQL)");
    }
    if args.keep {
        println!("kept: topic {topic}{}", if pg.is_some() { format!(", table {table}, group connect-{sink_name}") } else { String::new() });
    }
    Ok(())
}

/// What one run creates and names.
struct Names {
    topic: String,
    table: String,
    /// The datagen connector's name.
    source: String,
    /// The sink connector's name (its group is `connect-{sink}`).
    sink: String,
    /// Where the workers keep their offsets files.
    offsets_dir: PathBuf,
}

/// Runs stage 1, then stage 2 when there is a database.
async fn stages(args: &ConnectBenchArgs, admin: &Admin, names: &Names, pg: Option<&Postgres>) -> Result<Vec<Stage>, String> {
    let (topic, table) = (names.topic.as_str(), names.table.as_str());
    let mut done = Vec::new();
    let partitions: Vec<TopicPartition> = (0..args.tasks as i32).map(|p| TopicPartition::new(topic, p)).collect();
    let source = props(&[
        ("name", &names.source),
        ("connector.class", samsa_connect::datagen::CLASS),
        ("kafka.topic", topic),
        ("quickstart", "pageviews"),
        ("iterations", &args.records.to_string()),
        ("random.seed", &SEED.to_string()),
        ("tasks.max", &args.tasks.to_string()),
    ]);
    let stage = timed_stage("datagen -> topic", args, names.offsets_dir.join("source.offsets"), source, || async {
        let ends = admin.list_offsets(&partitions, OffsetSpec::Latest).await.map_err(|e| format!("cannot list offsets of {topic}: {e}"))?;
        Ok(ends.values().map(|(offset, _)| (*offset).max(0) as u64).sum())
    })
    .await?;
    done.push(stage);
    let Some(pg) = pg else { return Ok(done) };
    let sink = props(&[
        ("name", &names.sink),
        ("connector.class", "io.confluent.connect.jdbc.JdbcSinkConnector"),
        ("topics", topic),
        ("connection.url", &pg.url),
        ("table.name.format", table),
        ("insert.mode", "upsert"),
        ("pk.mode", "record_value"),
        ("pk.fields", "viewtime"),
        ("auto.create", "true"),
        ("batch.size", &args.batch_size.to_string()),
        ("consumer.override.max.poll.records", &args.batch_size.to_string()),
        ("tasks.max", &args.tasks.to_string()),
    ]);
    done.push(timed_stage("topic -> PostgreSQL (JdbcSink upsert)", args, names.offsets_dir.join("sink.offsets"), sink, || pg.count(table)).await?);
    Ok(done)
}

/// Runs one connector in a standalone worker until `count` reaches `--records`, timed from
/// the worker's start (to within [`CHECK_EVERY`]). Stops the worker cleanly either way.
async fn timed_stage<F, Fut>(label: &'static str, args: &ConnectBenchArgs, offsets_file: PathBuf, connector: Props, count: F) -> Result<Stage, String>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<u64, String>>,
{
    let worker = WorkerConfig::new(props(&[
        ("bootstrap.servers", &args.bootstrap),
        ("offset.storage.file.filename", &offsets_file.display().to_string()),
        ("offset.flush.interval.ms", "10000"),
    ]))
    .map_err(|e| format!("worker config: {e}"))?;
    let spec = check_connector(connector).map_err(|issues| issues.iter().map(|i| format!("{}: {}", i.name, i.message)).collect::<Vec<_>>().join("; "))?;
    let progress = Arc::new(AtomicU64::new(0));
    let ticker = crate::util::progress_every_second(progress.clone(), move |secs, now, added| format!("  {label} {secs:>6.1} s  {now:>10} records  {added:>8} records/s"));
    let (stop, stop_rx) = watch::channel(false);
    let start = Instant::now();
    let mut worker = tokio::spawn(run_worker(worker, vec![spec], stop_rx));
    let want = args.records;
    let (mut last, mut last_change, mut first) = (0u64, Instant::now(), None);
    let outcome = loop {
        tokio::select! {
            ended = &mut worker => {
                let why = match ended {
                    Ok(Ok(())) => "the worker stopped".to_string(),
                    Ok(Err(e)) => e.to_string(),
                    Err(e) => e.to_string(),
                };
                ticker.abort();
                return Err(format!("{label}: {why} after {last} of {want} records"));
            }
            _ = tokio::time::sleep(CHECK_EVERY) => {}
        }
        let now = match count().await {
            Ok(n) => n,
            Err(e) => break Err(format!("{label}: {e}")),
        };
        if now > 0 && first.is_none() {
            first = Some((start.elapsed(), now));
        }
        if now >= want {
            progress.store(now, Ordering::Relaxed);
            let elapsed = start.elapsed();
            let (first, first_count) = first.unwrap_or((elapsed, now));
            break if now == want {
                Ok(Stage { name: label, records: want, elapsed, first, first_count })
            } else {
                Err(format!("{label}: {now} records, more than the {want} written"))
            };
        }
        if now != last {
            (last, last_change) = (now, Instant::now());
            progress.store(now, Ordering::Relaxed);
        } else if last_change.elapsed() >= STALL {
            break Err(format!("{label}: stuck at {now} of {want} records for {} s", STALL.as_secs()));
        }
    };
    ticker.abort();
    let _ = stop.send(true);
    match tokio::time::timeout(Duration::from_secs(60), worker).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => eprintln!("{label}: the worker stopped with: {e}"),
        Ok(Err(e)) => eprintln!("{label}: the worker panicked: {e}"),
        Err(_) => eprintln!("{label}: the worker did not stop within 60 s"),
    }
    outcome
}

/// The bench's own session with the sink's database.
struct Postgres {
    /// The URL as given, for the connector's `connection.url`.
    url: String,
    client: tokio_postgres::Client,
}

impl Postgres {
    /// Connects as the connector will (same URL parsing).
    async fn connect(url: &str) -> Result<Postgres, String> {
        let p = ConnParams::from_jdbc(&props(&[("connection.url", url)])).map_err(|e| format!("--postgres: {}", e.message))?;
        let mut cfg = tokio_postgres::Config::new();
        cfg.host(&p.host).port(p.port).dbname(&p.dbname).user(&p.user).application_name("samsa-bench").connect_timeout(Duration::from_secs(10));
        if let Some(pw) = &p.password {
            cfg.password(pw);
        }
        let (client, connection) =
            cfg.connect(tokio_postgres::NoTls).await.map_err(|e| format!("cannot connect to PostgreSQL at {} as {}: {}", p.describe(), p.user, pg_error(&e)))?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                eprintln!("PostgreSQL connection ended: {e}");
            }
        });
        Ok(Postgres { url: url.to_string(), client })
    }

    /// Whether `table` exists.
    async fn table_exists(&self, table: &str) -> Result<bool, String> {
        let row =
            self.client.query_one("SELECT to_regclass($1) IS NOT NULL", &[&quote_ident(table)]).await.map_err(|e| format!("cannot look up table {table}: {}", pg_error(&e)))?;
        Ok(row.get(0))
    }

    /// Rows in `table` (0 until the sink has created it).
    async fn count(&self, table: &str) -> Result<u64, String> {
        if !self.table_exists(table).await? {
            return Ok(0);
        }
        let row =
            self.client.query_one(&format!("SELECT count(*) FROM {}", quote_ident(table)), &[]).await.map_err(|e| format!("cannot count rows of {table}: {}", pg_error(&e)))?;
        Ok(row.get::<_, i64>(0).max(0) as u64)
    }
}

/// A PostgreSQL error with its cause (tokio-postgres leaves it out of the message).
fn pg_error(e: &tokio_postgres::Error) -> String {
    match std::error::Error::source(e) {
        Some(cause) => format!("{e}: {cause}"),
        None => e.to_string(),
    }
}

/// `name` as a quoted SQL identifier.
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Props from pairs.
fn props(pairs: &[(&str, &str)]) -> Props {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>()
}

/// A suffix no other run shares: the time in ms (base 36) and the process id.
fn unique_suffix() -> String {
    let ms = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
    let mut n = ms;
    let mut s = String::new();
    while n > 0 {
        let d = (n % 36) as u32;
        s.insert(0, char::from_digit(d, 36).unwrap_or('0'));
        n /= 36;
    }
    format!("{s}-{}", std::process::id())
}
