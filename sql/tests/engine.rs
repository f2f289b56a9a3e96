//! Engine behaviour that needs more than a statement and its answer: what a scan reads,
//! counters, point lookups, restarts, and EMIT CHANGES latency.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

mod common;

use futures::StreamExt;
use samsa_broker::{Broker, BrokerConfig};
use samsa_sql::{Engine, EngineConfig, Output};

struct Env {
    _dir: tempfile::TempDir,
    broker: Broker,
    state: std::path::PathBuf,
}

async fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let broker = common::start_broker(&dir.path().join("broker"), BrokerConfig::default()).await;
    let state = dir.path().join("sql");
    Env { _dir: dir, broker, state }
}

async fn engine(env: &Env) -> Engine {
    Engine::start(EngineConfig { bootstrap: env.broker.local_addr().to_string(), state_dir: env.state.clone(), run_queries: true }).await.unwrap()
}

async fn text(e: &Engine, sql: &str) -> Vec<Vec<String>> {
    let out = e.execute(sql).await.unwrap_or_else(|err| panic!("{sql}: {err}"));
    samsa_sql::format::rows_as_text(&out.batch().unwrap()).unwrap().into_iter().map(|r| r.into_iter().map(|c| c.unwrap_or_else(|| "NULL".into())).collect()).collect()
}

async fn wait_rows(e: &Engine, sql: &str, want: Vec<Vec<&str>>) {
    let want: Vec<Vec<String>> = want.into_iter().map(|r| r.into_iter().map(String::from).collect()).collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got = text(e, sql).await;
        if got == want {
            return;
        }
        assert!(Instant::now() < deadline, "{sql}: still {got:?}, want {want:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_on_partition_offset_and_time_limit_what_a_scan_reads() {
    let env = env().await;
    let e = engine(&env).await;
    e.execute("CREATE STREAM s (n BIGINT) WITH (partitions = 3)").await.unwrap();
    // 300 rows, spread over partitions by key, one second apart in record time.
    let values: Vec<String> = (0..300).map(|i| format!("({i}, 'k{i}', TIMESTAMP '2026-01-01 00:00:00' + INTERVAL '{i}' SECOND)")).collect();
    e.execute(&format!("INSERT INTO s (n, _key, _timestamp) VALUES {}", values.join(", "))).await.unwrap();
    let scanned = || e.stats().scanned_records.load(Ordering::Relaxed);

    let before = scanned();
    assert_eq!(text(&e, "SELECT COUNT(*) FROM s").await, vec![vec!["300"]]);
    assert_eq!(scanned() - before, 300);

    // The last minute: 60 rows, and only those are read.
    let before = scanned();
    assert_eq!(text(&e, "SELECT COUNT(*), MIN(n) FROM s WHERE _timestamp >= TIMESTAMP '2026-01-01 00:04:00'").await, vec![vec!["60", "240"]]);
    assert_eq!(scanned() - before, 60);

    // One partition.
    let per_partition = text(&e, "SELECT _partition, COUNT(*) FROM s GROUP BY _partition ORDER BY _partition").await;
    let p1: u64 = per_partition[1][1].parse().unwrap();
    let before = scanned();
    assert_eq!(text(&e, "SELECT COUNT(*) FROM s WHERE _partition = 1").await, vec![vec![p1.to_string()]]);
    assert_eq!(scanned() - before, p1);

    // An offset range of one partition.
    let before = scanned();
    assert_eq!(text(&e, "SELECT COUNT(*) FROM s WHERE _partition = 0 AND _offset >= 10 AND _offset < 20").await, vec![vec!["10"]]);
    assert_eq!(scanned() - before, 10);
    e.close().await;
    env.broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_records_are_skipped_and_counted_by_scans_and_persistent_queries() {
    let env = env().await;
    let e = engine(&env).await;
    e.execute("CREATE STREAM raw_in (line VARCHAR) WITH (topic = 'mixed', format = 'raw', partitions = 1)").await.unwrap();
    e.execute("CREATE STREAM typed (a VARCHAR, n BIGINT) WITH (topic = 'mixed')").await.unwrap();
    e.execute(r#"INSERT INTO raw_in VALUES ('{"a": "x", "n": 1}'), ('not json'), ('{"a": "y", "n": "nope"}'), ('{"a": "z", "n": 3}')"#).await.unwrap();
    let bad = || e.stats().malformed_records.load(Ordering::Relaxed);
    assert_eq!(text(&e, "SELECT a FROM typed ORDER BY a").await, vec![vec!["x"], vec!["z"]]);
    assert_eq!(bad(), 2);
    e.execute("CREATE TABLE totals AS SELECT a, SUM(n) AS t FROM typed GROUP BY a").await.unwrap();
    wait_rows(&e, "SELECT a, t FROM totals ORDER BY a", vec![vec!["x", "1"], vec!["z", "3"]]).await;
    assert_eq!(bad(), 4, "the persistent query skipped the same two records");
    // It keeps running after them.
    e.execute(r#"INSERT INTO raw_in VALUES ('{"a": "x", "n": 10}')"#).await.unwrap();
    wait_rows(&e, "SELECT a, t FROM totals ORDER BY a", vec![vec!["x", "11"], vec!["z", "3"]]).await;
    e.close().await;
    env.broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_topic_receives_the_records_a_persistent_query_cannot_read() {
    use samsa_client::consumer::{Consumer, ConsumerConfig, ConsumerRecord, TopicPartition};
    let env = env().await;
    let e = engine(&env).await;
    e.execute("CREATE STREAM raw_in (line VARCHAR) WITH (topic = 'mixed', format = 'raw', partitions = 1)").await.unwrap();
    e.execute("CREATE STREAM typed (a VARCHAR, n BIGINT) WITH (topic = 'mixed')").await.unwrap();
    e.execute(r#"INSERT INTO raw_in VALUES ('{"a": "x", "n": 1}'), ('not json'), ('{"a": "y", "n": "nope"}'), ('{"a": "z", "n": 3}')"#).await.unwrap();
    e.execute("CREATE STREAM doubled WITH (dead_letter_topic = 'mixed_dlq') AS SELECT a, n * 2 AS n2 FROM typed").await.unwrap();
    wait_rows(&e, "SELECT a, n2 FROM doubled ORDER BY a", vec![vec!["x", "2"], vec!["z", "6"]]).await;
    // The dead-letter topic holds the two bad records as they were, saying where from and why.
    let mut cc = ConsumerConfig::default();
    cc.set("bootstrap.servers", &env.broker.local_addr().to_string()).unwrap();
    cc.set("isolation.level", "read_committed").unwrap();
    let c = Consumer::new(cc).await.unwrap();
    let tp = TopicPartition::new("mixed_dlq", 0);
    c.assign(std::slice::from_ref(&tp)).unwrap();
    c.seek_to_beginning(std::slice::from_ref(&tp)).unwrap();
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while got.len() < 2 && Instant::now() < deadline {
        got.extend(c.poll(Duration::from_millis(500)).await.unwrap());
    }
    let header = |r: &ConsumerRecord, name: &str| {
        r.headers.iter().find(|(k, _)| k == name).and_then(|(_, v)| v.as_ref()).map(|v| String::from_utf8_lossy(v).into_owned()).unwrap_or_default()
    };
    let values: Vec<String> = got.iter().map(|r| String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned()).collect();
    assert_eq!(values, vec!["not json".to_string(), r#"{"a": "y", "n": "nope"}"#.to_string()]);
    assert_eq!(got.iter().map(|r| header(r, "samsa.sql.error.offset")).collect::<Vec<_>>(), vec!["1", "2"]);
    assert!(got.iter().all(|r| header(r, "samsa.sql.error.topic") == "mixed" && header(r, "samsa.sql.error.query") == "CSAS_DOUBLED"));
    assert!(got.iter().all(|r| !header(r, "samsa.sql.error.message").is_empty()), "{:?}", got[0].headers);
    // Nothing else arrives there, and the query goes on.
    e.execute(r#"INSERT INTO raw_in VALUES ('{"a": "w", "n": 5}')"#).await.unwrap();
    wait_rows(&e, "SELECT a, n2 FROM doubled ORDER BY a", vec![vec!["w", "10"], vec!["x", "2"], vec!["z", "6"]]).await;
    assert!(c.poll(Duration::from_secs(1)).await.unwrap().is_empty());
    e.close().await;
    env.broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_lookups_on_a_materialized_table_read_its_state_store_and_queries_survive_restarts() {
    let env = env().await;
    let e = engine(&env).await;
    e.execute("CREATE STREAM clicks (page VARCHAR, ms BIGINT) WITH (partitions = 2)").await.unwrap();
    e.execute("INSERT INTO clicks VALUES ('home', 1), ('cart', 2), ('home', 3)").await.unwrap();
    e.execute("CREATE TABLE views AS SELECT page, COUNT(*) AS n, MAX(ms) AS last FROM clicks GROUP BY page").await.unwrap();
    wait_rows(&e, "SELECT page, n, last FROM views ORDER BY page", vec![vec!["cart", "1", "2"], vec!["home", "2", "3"]]).await;
    // The committed state and the topic agree; a lookup reads no records.
    let (scans, lookups) = (e.stats().scanned_records.load(Ordering::Relaxed), e.stats().lookups.load(Ordering::Relaxed));
    assert_eq!(text(&e, "SELECT n, last FROM views WHERE page = 'home'").await, vec![vec!["2", "3"]]);
    assert_eq!(text(&e, "SELECT n FROM views WHERE page = 'nowhere'").await, Vec::<Vec<String>>::new());
    assert_eq!(e.stats().lookups.load(Ordering::Relaxed) - lookups, 2);
    assert_eq!(e.stats().scanned_records.load(Ordering::Relaxed), scans);
    // Other SQL over the same table scans its topic.
    assert_eq!(text(&e, "SELECT SUM(n) FROM views").await, vec![vec!["3"]]);

    // A new engine (a restarted server) runs the query from the catalog, from its state.
    e.close().await;
    e.execute("INSERT INTO clicks VALUES ('cart', 4)").await.unwrap();
    let e2 = engine(&env).await;
    assert_eq!(e2.running_queries().await, vec!["CTAS_VIEWS".to_string()]);
    wait_rows(&e2, "SELECT page, n, last FROM views ORDER BY page", vec![vec!["cart", "2", "4"], vec!["home", "2", "3"]]).await;
    e2.execute("TERMINATE CTAS_VIEWS").await.unwrap();
    assert!(e2.running_queries().await.is_empty());
    e2.close().await;
    env.broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emit_changes_streams_new_rows_within_a_second() {
    let env = env().await;
    let e = engine(&env).await;
    e.execute("CREATE STREAM readings (sensor VARCHAR, value BIGINT) WITH (partitions = 2)").await.unwrap();
    let Output::Continuous { schema, mut stream } = e.execute("SELECT sensor, value * 10 AS v FROM readings WHERE value > 0 EMIT CHANGES").await.unwrap() else {
        panic!("not continuous")
    };
    assert_eq!(schema.field(1).name(), "v");
    // Until the query has its partitions, new rows can come before it reads from the end
    // (it starts at the latest offsets, as ksqlDB's push queries do): insert until one shows.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        e.execute("INSERT INTO readings VALUES ('warmup', 1)").await.unwrap();
        if tokio::time::timeout(Duration::from_millis(500), stream.next()).await.is_ok() {
            break;
        }
        assert!(Instant::now() < deadline, "the continuous query never produced a row");
    }
    // Drain whatever warm-up rows are still coming.
    while tokio::time::timeout(Duration::from_millis(300), stream.next()).await.is_ok() {}
    let mut latencies = Vec::new();
    for i in 1..=5 {
        e.execute(&format!("INSERT INTO readings VALUES ('s{i}', 0), ('s{i}', {i})")).await.unwrap();
        let t = Instant::now();
        let batch = tokio::time::timeout(Duration::from_secs(10), stream.next()).await.expect("a row").unwrap().unwrap();
        latencies.push(t.elapsed());
        let rows = samsa_sql::format::rows_as_text(&batch).unwrap();
        assert_eq!(rows, vec![vec![Some(format!("s{i}")), Some((i * 10).to_string())]], "the filter dropped value 0");
    }
    latencies.sort();
    assert!(latencies[2] < Duration::from_secs(1), "median latency {:?} (all: {latencies:?})", latencies[2]);
    drop(stream);
    e.close().await;
    env.broker.shutdown().await;
}
