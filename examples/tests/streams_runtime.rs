//! Samsa Streams' runtime against a real server, in-process: the RocksDB memory budget
//! with 24 partitions, interactive queries and key lookup, and standby replicas taking
//! over.

use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use samsa_client::admin::NewTopic;
use samsa_client::{Admin, Producer, ProducerRecord};
use samsa_streams::{KafkaStreams, Materialized, StreamsBuilder, StreamsConfig, Topology};
use samsa_client::producer::partitioner::partition_for_key;
use samsa_tests::SamsaServer;

fn count_topology(input: &str, output: &str) -> Result<Topology> {
    let b = StreamsBuilder::new();
    b.stream::<String, String>(input).group_by_key().count_with(Materialized::named("counts")).to_stream().to(output);
    Ok(b.build()?)
}

async fn produce(bootstrap: &str, topic: &str, n: usize, keys: usize, value_len: usize) -> Result<()> {
    let producer = Producer::from_properties([("bootstrap.servers", bootstrap), ("linger.ms", "10")]).await?;
    let value = "v".repeat(value_len);
    let mut pending = Vec::new();
    for i in 0..n {
        pending.push(producer.send(ProducerRecord::new(topic, value.clone()).key(format!("key-{}", i % keys))).await?);
        if pending.len() >= 5000 {
            for p in pending.drain(..) {
                p.await?;
            }
        }
    }
    for p in pending {
        p.await?;
    }
    Ok(())
}

fn config(app: &str, bootstrap: &str, state: &std::path::Path, sets: &[(&str, &str)]) -> Result<StreamsConfig> {
    let mut c = StreamsConfig::new(app, bootstrap);
    c.set("state.dir", &state.display().to_string())?.set("commit.interval.ms", "200")?;
    c.set("consumer.session.timeout.ms", "6000")?.set("consumer.heartbeat.interval.ms", "500")?;
    for (k, v) in sets {
        c.set(k, v)?;
    }
    Ok(c)
}

async fn wait_processed(streams: &KafkaStreams, n: u64, what: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let done: u64 = streams.task_metrics().values().map(|m| m.processed).sum();
        if done >= n {
            return Ok(());
        }
        ensure!(!streams.is_failed(), "{what}: the application failed");
        ensure!(Instant::now() < deadline, "{what}: only {done} of {n} records processed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A stateful app on 24 partitions with 200,000 distinct keys keeps RocksDB (block cache
/// plus write buffers, shared by all 24 stores) within the configured budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rocksdb_memory_stays_within_budget_with_24_partitions() -> Result<()> {
    let server = SamsaServer::start()?;
    let bootstrap = server.bootstrap().to_string();
    Admin::connect(&bootstrap).await?.create_topics(&[NewTopic::new("mem-in", 24, 1), NewTopic::new("mem-out", 24, 1)]).await?;
    produce(&bootstrap, "mem-in", 200_000, 200_000, 200).await?;
    let state = tempfile::tempdir()?;
    let budget = 8 * 1024 * 1024;
    let cfg = config(
        "mem",
        &bootstrap,
        state.path(),
        &[("rocksdb.block.cache.bytes", &budget.to_string()), ("rocksdb.write.buffer.bytes", &(budget / 2).to_string()), ("num.stream.threads", "2")],
    )?;
    let streams = KafkaStreams::start(count_topology("mem-in", "mem-out")?, cfg).await?;
    let mut peak = 0usize;
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        peak = peak.max(streams.rocksdb_memory_usage());
        let done: u64 = streams.task_metrics().values().map(|m| m.processed).sum();
        if done >= 200_000 {
            break;
        }
        ensure!(!streams.is_failed() && Instant::now() < deadline, "processed only {done} records");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (active, _) = streams.local_tasks();
    ensure!(active.len() == 24, "expected 24 tasks, got {active:?}");
    let rss = std::fs::read_to_string("/proc/self/status")?.lines().find(|l| l.starts_with("VmRSS:")).unwrap_or_default().to_string();
    eprintln!("24 partitions, 200000 keys: peak RocksDB usage {:.1} MiB of an {:.0} MiB budget; process {rss}", peak as f64 / 1048576.0, budget as f64 / 1048576.0);
    // RocksDB's cache accounting is per shard; allow one shard of slack (1/8).
    ensure!(peak <= budget + budget / 8, "RocksDB used {peak} bytes, over its budget of {budget}");
    ensure!(peak > budget / 16, "the measurement saw no RocksDB memory at all ({peak} bytes): is the budget wired?");
    streams.close().await?;
    Ok(())
}

/// Interactive queries read committed store contents; `query_metadata_for_key` names the
/// partition (Kafka's murmur2 of the key) and the instance (`application.server`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interactive_queries_and_key_lookup() -> Result<()> {
    let server = SamsaServer::start()?;
    let bootstrap = server.bootstrap().to_string();
    Admin::connect(&bootstrap).await?.create_topics(&[NewTopic::new("iq-in", 4, 1), NewTopic::new("iq-out", 4, 1)]).await?;
    produce(&bootstrap, "iq-in", 1000, 10, 5).await?;
    let state = tempfile::tempdir()?;
    let cfg = config("iq", &bootstrap, state.path(), &[("application.server", "127.0.0.1:7070")])?;
    let streams = KafkaStreams::start(count_topology("iq-in", "iq-out")?, cfg).await?;
    wait_processed(&streams, 1000, "iq").await?;
    let store = streams.store::<String, i64>("counts")?;
    let deadline = Instant::now() + Duration::from_secs(30);
    // Reads see committed state only: wait for the commit after the last record.
    while store.all()?.iter().map(|(_, n)| n).sum::<i64>() < 1000 {
        ensure!(Instant::now() < deadline, "committed counts: {:?}", store.all()?);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(store.get(&"key-3".to_string())?, Some(100));
    assert_eq!(store.get(&"nope".to_string())?, None);
    let range: Vec<String> = store.range(&"key-2".to_string(), &"key-4".to_string())?.into_iter().map(|(k, _)| k).collect();
    let mut sorted = range.clone();
    sorted.sort();
    assert_eq!(sorted, vec!["key-2", "key-3", "key-4"]);
    assert_eq!(store.all()?.len(), 10);
    for k in ["key-0", "key-7"] {
        let md = streams.query_metadata_for_key("counts", &k.to_string())?;
        // Where the producer put the key: murmur2, as Kafka's default partitioner.
        assert_eq!(md.partition, partition_for_key(k.as_bytes(), 4), "{k}");
        assert_eq!(md.active_host.as_deref(), Some("127.0.0.1:7070"));
    }
    assert!(streams.query_metadata_for_key("nope", &"k".to_string()).is_err());
    streams.close().await?;
    Ok(())
}

/// With `num.standby.replicas = 1`, each instance keeps a copy of the other's stores; when
/// one instance goes away the other takes over its tasks without replaying whole
/// changelogs, and the counts stay exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standby_replicas_take_over() -> Result<()> {
    let server = SamsaServer::start()?;
    let bootstrap = server.bootstrap().to_string();
    Admin::connect(&bootstrap).await?.create_topics(&[NewTopic::new("sb-in", 4, 1), NewTopic::new("sb-out", 4, 1)]).await?;
    let (da, db) = (tempfile::tempdir()?, tempfile::tempdir()?);
    // No record cache: every update reaches the changelog, so a restore without the
    // standby copy would replay all 20,000 of them.
    let sets = [("num.standby.replicas", "1"), ("processing.guarantee", "exactly_once_v2"), ("statestore.cache.max.bytes", "0")];
    let a = KafkaStreams::start(count_topology("sb-in", "sb-out")?, config("sb", &bootstrap, da.path(), &sets)?).await?;
    let b = KafkaStreams::start(count_topology("sb-in", "sb-out")?, config("sb", &bootstrap, db.path(), &sets)?).await?;
    // Both members in the group, each with active and standby tasks.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (aa, asb) = a.local_tasks();
        let (ba, bsb) = b.local_tasks();
        if aa.len() == 2 && ba.len() == 2 && asb.len() == 2 && bsb.len() == 2 {
            assert_eq!(asb, ba, "A's standbys are B's active tasks");
            assert_eq!(bsb, aa, "B's standbys are A's active tasks");
            break;
        }
        ensure!(Instant::now() < deadline, "tasks never spread: A {:?}/{:?}, B {:?}/{:?}", aa, asb, ba, bsb);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    produce(&bootstrap, "sb-in", 20_000, 100, 5).await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while a.standby_records() + b.standby_records() < 20_000 {
        ensure!(Instant::now() < deadline, "standbys applied only {} changelog records", a.standby_records() + b.standby_records());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    a.close().await?;
    // B runs all 4 tasks; restoring them needs at most what the standby had not applied.
    let deadline = Instant::now() + Duration::from_secs(60);
    while b.local_tasks().0.len() < 4 {
        ensure!(Instant::now() < deadline, "B never took over: {:?}", b.local_tasks());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ensure!(b.restored_records() < 2_000, "B replayed {} changelog records: the standby copy was not used", b.restored_records());
    produce(&bootstrap, "sb-in", 400, 100, 5).await?;
    let store = b.store::<String, i64>("counts")?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let all = store.all()?;
        if all.len() == 100 && all.iter().all(|(_, n)| *n == 204) {
            break;
        }
        ensure!(Instant::now() < deadline, "counts after takeover are not exact: {:?}", all.iter().take(5).collect::<Vec<_>>());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    b.close().await?;
    Ok(())
}

/// A re-keyed stream joined with a table that has more partitions: the repartition topic
/// in between is created with the table's partition count (Kafka's co-partitioning rule),
/// so every record meets its key's table row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repartition_topic_feeding_a_join_matches_the_table() -> Result<()> {
    let server = SamsaServer::start()?;
    let bootstrap = server.bootstrap().to_string();
    let admin = Admin::connect(&bootstrap).await?;
    admin.create_topics(&[NewTopic::new("cp-clicks", 2, 1), NewTopic::new("cp-users", 5, 1), NewTopic::new("cp-out", 1, 1)]).await?;
    let producer = Producer::from_properties([("bootstrap.servers", bootstrap.as_str())]).await?;
    for u in 0..20 {
        producer.send_and_wait(ProducerRecord::new("cp-users", format!("name-{u}")).key(format!("user-{u}"))).await?;
    }
    let b = StreamsBuilder::new();
    let users = b.table::<String, String>("cp-users");
    b.stream::<String, String>("cp-clicks")
        .select_key(|_, user: &String| user.clone())
        .join_table(&users, |user: &String, name: &String| format!("{user}={name}"))
        .to("cp-out");
    let state = tempfile::tempdir()?;
    let streams = KafkaStreams::start(b.build()?, config("cp", &bootstrap, state.path(), &[])?).await?;
    let repartition = admin.describe_topics(&admin.list_topics(true).await?.into_iter().filter(|t| t.starts_with("cp-") && t.ends_with("-repartition")).collect::<Vec<_>>()).await?;
    ensure!(repartition.len() == 1 && repartition[0].partitions.len() == 5, "repartition topic: {:?}", repartition.iter().map(|t| (&t.name, t.partitions.len())).collect::<Vec<_>>());
    // Clicks keyed by click id, valued by user; after the table is loaded.
    let store = streams.store::<String, String>(users.store_name().unwrap_or_default())?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while store.all()?.len() < 20 {
        ensure!(Instant::now() < deadline, "the users table never loaded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for c in 0..40 {
        producer.send_and_wait(ProducerRecord::new("cp-clicks", format!("user-{}", c % 20)).key(format!("click-{c}"))).await?;
    }
    let consumer = samsa_client::Consumer::from_properties([("bootstrap.servers", bootstrap.as_str()), ("group.id", "cp-check"), ("auto.offset.reset", "earliest")]).await?;
    consumer.subscribe(&["cp-out"])?;
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while got.len() < 40 {
        ensure!(Instant::now() < deadline, "only {} joined records: {got:?}", got.len());
        for r in consumer.poll(Duration::from_millis(200)).await? {
            got.push(String::from_utf8(r.value.unwrap_or_default().to_vec())?);
        }
    }
    got.sort();
    let mut want: Vec<String> = (0..40).map(|c| format!("user-{0}=name-{0}", c % 20)).collect();
    want.sort();
    assert_eq!(got, want);
    streams.close().await?;
    Ok(())
}

/// The record cache (on by default, `statestore.cache.max.bytes`): a count forwards only
/// the latest update per key at each commit, so 5,000 inputs over 10 keys, already in
/// the topic when the application starts, give far fewer than 5,000 outputs; and the
/// last output per key is still the exact count. With the cache off every update is
/// forwarded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_cache_forwards_the_latest_update_per_key() -> Result<()> {
    let server = SamsaServer::start()?;
    let bootstrap = server.bootstrap().to_string();
    Admin::connect(&bootstrap)
        .await?
        .create_topics(&[NewTopic::new("rc-in", 2, 1), NewTopic::new("rc-out", 1, 1), NewTopic::new("rc-out0", 1, 1)])
        .await?;
    produce(&bootstrap, "rc-in", 5000, 10, 5).await?;
    for (out, cache) in [("rc-out", "10485760"), ("rc-out0", "0")] {
        let state = tempfile::tempdir()?;
        let cfg = config(&format!("rc-{cache}"), &bootstrap, state.path(), &[("statestore.cache.max.bytes", cache), ("commit.interval.ms", "1000")])?;
        let streams = KafkaStreams::start(count_topology("rc-in", out)?, cfg).await?;
        let consumer = samsa_client::Consumer::from_properties([("bootstrap.servers", bootstrap.as_str()), ("group.id", &format!("rc-check-{cache}")), ("auto.offset.reset", "earliest")]).await?;
        consumer.subscribe(&[out])?;
        let mut last = std::collections::BTreeMap::new();
        let mut records = 0usize;
        let deadline = Instant::now() + Duration::from_secs(60);
        while last.len() < 10 || last.values().any(|n: &i64| *n != 500) {
            ensure!(Instant::now() < deadline, "cache {cache}: counts never reached 500 each: {last:?}");
            for r in consumer.poll(Duration::from_millis(200)).await? {
                let k = String::from_utf8(r.key.unwrap_or_default().to_vec())?;
                let v = i64::from_be_bytes(r.value.unwrap_or_default().as_ref().try_into()?);
                records += 1;
                last.insert(k, v);
            }
        }
        eprintln!("statestore.cache.max.bytes={cache}: {records} output records for 5000 inputs");
        if cache == "0" {
            assert_eq!(records, 5000, "without a cache every update is forwarded");
        } else {
            ensure!(records <= 500, "the cache forwarded {records} records for 5000 updates of 10 keys");
        }
        streams.close().await?;
    }
    Ok(())
}

/// A restore longer than `max.poll.interval.ms` keeps the member in its group (its
/// partitions are paused and it polls between restore batches), so it is not evicted and
/// does not rebalance again when the restore ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_restore_keeps_the_group_membership() -> Result<()> {
    let server = SamsaServer::start()?;
    let bootstrap = server.bootstrap().to_string();
    Admin::connect(&bootstrap).await?.create_topics(&[NewTopic::new("lr-in", 1, 1), NewTopic::new("lr-out", 1, 1)]).await?;
    const N: usize = 500_000;
    produce(&bootstrap, "lr-in", N, N, 5).await?;
    let state = tempfile::tempdir()?;
    // Every update logged: the changelog gets N records to restore.
    let sets = [("statestore.cache.max.bytes", "0"), ("consumer.max.poll.interval.ms", "400"), ("consumer.heartbeat.interval.ms", "100")];
    let first = KafkaStreams::start(count_topology("lr-in", "lr-out")?, config("lr", &bootstrap, state.path(), &sets)?).await?;
    wait_processed(&first, N as u64, "first run").await?;
    first.close().await?;
    std::fs::remove_dir_all(state.path().join("lr"))?;

    let started = Instant::now();
    let second = KafkaStreams::start(count_topology("lr-in", "lr-out")?, config("lr", &bootstrap, state.path(), &sets)?).await?;
    let deadline = Instant::now() + Duration::from_secs(120);
    while second.restored_records() < N as u64 {
        ensure!(!second.is_failed() && Instant::now() < deadline, "restored {} of {N}", second.restored_records());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let restore_time = started.elapsed();
    eprintln!("restored {N} changelog records in {restore_time:?} with max.poll.interval.ms=400");
    ensure!(restore_time > Duration::from_millis(800), "the restore took only {restore_time:?}: too short to show anything; raise N");
    // Give an eviction time to show (a second assignment), then check there was none.
    produce(&bootstrap, "lr-in", 10, 10, 5).await?;
    wait_processed(&second, 10, "after the restore").await?;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(second.rebalances(), 1, "the member was evicted during its restore and rejoined");
    assert_eq!(second.store::<String, i64>("counts")?.get(&"key-3".to_string())?.map(|n| n >= 1), Some(true));
    second.close().await?;
    Ok(())
}

/// A second instance joining makes the first give up half its tasks: the first commits
/// before the rebalance revokes them, so no processed work is dropped and redone, and
/// the counts stay exact under at_least_once (nothing is counted twice).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scaling_out_commits_before_the_rebalance() -> Result<()> {
    let server = SamsaServer::start()?;
    let bootstrap = server.bootstrap().to_string();
    Admin::connect(&bootstrap).await?.create_topics(&[NewTopic::new("so-in", 4, 1), NewTopic::new("so-out", 4, 1)]).await?;
    let (da, db) = (tempfile::tempdir()?, tempfile::tempdir()?);
    // A long commit interval: without the commit before the rebalance, A would drop
    // everything since its last commit and count it again.
    let sets = [("commit.interval.ms", "8000")];
    let a = KafkaStreams::start(count_topology("so-in", "so-out")?, config("so", &bootstrap, da.path(), &sets)?).await?;
    produce(&bootstrap, "so-in", 4000, 40, 5).await?;
    wait_processed(&a, 4000, "A alone").await?;
    let b = KafkaStreams::start(count_topology("so-in", "so-out")?, config("so", &bootstrap, db.path(), &sets)?).await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while b.local_tasks().0.len() < 2 || a.local_tasks().0.len() != 2 {
        ensure!(Instant::now() < deadline, "B never got tasks: A {:?}, B {:?}", a.local_tasks(), b.local_tasks());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    produce(&bootstrap, "so-in", 4000, 40, 5).await?;
    ensure!(a.redone_work() == 0, "A dropped uncommitted work {} time(s)", a.redone_work());
    // Every key counted exactly 200 times across both instances' outputs.
    let consumer = samsa_client::Consumer::from_properties([("bootstrap.servers", bootstrap.as_str()), ("group.id", "so-check"), ("auto.offset.reset", "earliest")]).await?;
    consumer.subscribe(&["so-out"])?;
    let mut last = std::collections::BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(90);
    while last.len() < 40 || last.values().any(|n: &i64| *n < 200) {
        ensure!(Instant::now() < deadline, "counts never reached 200: {last:?}");
        for r in consumer.poll(Duration::from_millis(200)).await? {
            let k = String::from_utf8(r.key.unwrap_or_default().to_vec())?;
            last.insert(k, i64::from_be_bytes(r.value.unwrap_or_default().as_ref().try_into()?));
        }
    }
    ensure!(last.values().all(|n| *n == 200), "some key was counted twice: {last:?}");
    ensure!(a.redone_work() == 0 && b.redone_work() == 0, "work was redone: A {}, B {}", a.redone_work(), b.redone_work());
    a.close().await?;
    b.close().await?;
    Ok(())
}
