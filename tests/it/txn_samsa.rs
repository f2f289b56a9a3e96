//! Kafka transactions with Samsa's own client: the scenarios of `transactions.rs` and
//! `cluster_txn.rs` (driven there by confluent-kafka) with `samsa_client::Producer` (a
//! `transactional.id`) and `Consumer` (`isolation.level`) instead:
//!
//! - committed and aborted transactions under both isolation levels;
//! - exactly-once consume-transform-produce through kill -9 of the processor (the crate's
//!   `samsa_txn_processor` binary, a separate process so it can be killed);
//! - zombie fencing (`Error::Fenced` on the Produce and on the EndTxn path);
//! - an idle transaction aborted by the broker after `transaction.timeout.ms`;
//! - the idempotent producer (the default) through a partition leader's kill -9, 3 nodes;
//! - the transaction coordinator killed between EndTxn and the markers, 3 nodes.
//!
//! Harness calls (start, kill, spawn) run outside the async code; client calls run on the
//! test's own runtime, each block bounded by a timeout. Reads go to each partition's high
//! watermark (ListOffsets), so record sets are compared exactly, never "enough seen".

use std::collections::BTreeMap;
use std::future::Future;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use samsa_client::admin::{NewTopic, OffsetSpec};
use samsa_client::{Admin, Consumer, DeliveryFuture, Error, Producer, ProducerRecord, RecordMetadata, TopicPartition};
use samsa_tests::{bounded, program, wait_until, SamsaCluster, SamsaServer};

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// Upper bound for a read to the partitions' ends.
const READ_LIMIT: Duration = Duration::from_secs(60);

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?)
}

/// Runs `fut` on `rt`, failing with `what` if it takes longer than `limit`.
fn run<T>(rt: &tokio::runtime::Runtime, what: &str, limit: Duration, fut: impl Future<Output = Result<T>>) -> Result<T> {
    rt.block_on(bounded(what, limit, fut))?
}

async fn create_topic(bootstrap: &str, topic: NewTopic) -> Result<()> {
    let name = topic.name.clone();
    let admin = Admin::connect(bootstrap).await?;
    admin.create_topics(&[topic]).await.with_context(|| format!("creating {name}"))?;
    Ok(())
}

/// A transactional producer, `init_transactions` done.
async fn txn_producer(bootstrap: &str, txn_id: &str, extra: &[(&str, &str)]) -> Result<Producer> {
    let mut props = vec![
        ("bootstrap.servers", bootstrap),
        ("transactional.id", txn_id),
        ("linger.ms", "1"),
        // CONCURRENT_TRANSACTIONS (the previous transaction's markers are being written)
        // is retried after this backoff.
        ("retry.backoff.ms", "10"),
        ("max.block.ms", "20000"),
    ];
    props.extend_from_slice(extra);
    let producer = Producer::from_properties(props).await?;
    producer.init_transactions().await.with_context(|| format!("init_transactions of {txn_id}"))?;
    Ok(producer)
}

/// Queues one record per `(partition, value)`.
async fn send_all(producer: &Producer, topic: &str, records: impl IntoIterator<Item = (i32, String)>) -> Result<Vec<DeliveryFuture>> {
    let mut futures = Vec::new();
    for (p, value) in records {
        let record = ProducerRecord::new(topic, value.clone()).partition(p);
        futures.push(producer.send(record).await.with_context(|| format!("send {value}"))?);
    }
    Ok(futures)
}

/// Waits for every delivery; the first failure is the error.
async fn delivered(futures: Vec<DeliveryFuture>) -> Result<Vec<RecordMetadata>> {
    let mut out = Vec::with_capacity(futures.len());
    for f in futures {
        out.push(f.await?);
    }
    Ok(out)
}

/// `PER_PARTITION` records `{prefix}-p{p}-{i}` on each of `PARTITIONS` partitions.
const PARTITIONS: i32 = 3;
const PER_PARTITION: usize = 5;

fn prefixed(prefix: &str) -> Vec<(i32, String)> {
    (0..PARTITIONS).flat_map(|p| (0..PER_PARTITION).map(move |i| (p, format!("{prefix}-p{p}-{i}")))).collect()
}

/// `{partition: values}` of `prefixed` records, concatenated prefix by prefix.
fn expected(prefixes: &[&str]) -> BTreeMap<i32, Vec<String>> {
    (0..PARTITIONS)
        .map(|p| (p, prefixes.iter().flat_map(|prefix| (0..PER_PARTITION).map(move |i| format!("{prefix}-p{p}-{i}"))).collect()))
        .collect()
}

/// Each partition's high watermark.
async fn high_watermarks(bootstrap: &str, topic: &str, partitions: i32) -> Result<Vec<i64>> {
    let admin = Admin::connect(bootstrap).await?;
    let tps: Vec<TopicPartition> = (0..partitions).map(|p| TopicPartition::new(topic, p)).collect();
    let offsets = admin.list_offsets(&tps, OffsetSpec::Latest).await?;
    Ok(tps.iter().map(|tp| offsets[tp].0).collect())
}

/// (offset, key, value) of the records of one partition, in the order read.
type Partition = Vec<(i64, Option<String>, String)>;

/// Every record of `topic`'s partitions `0..partitions`, read from the beginning with
/// `isolation` ("read_committed" or "read_uncommitted") by a Samsa consumer. Returns once
/// every partition's position reached its high watermark as ListOffsets gave it at the
/// start (for read_committed that also needs every transaction on it resolved). Checks
/// that offsets increase and stay below the high watermark.
async fn read_to_end(bootstrap: &str, topic: &str, partitions: i32, isolation: &str) -> Result<BTreeMap<i32, Partition>> {
    let ends = high_watermarks(bootstrap, topic, partitions).await?;
    let tps: Vec<TopicPartition> = (0..partitions).map(|p| TopicPartition::new(topic, p)).collect();
    let consumer = Consumer::from_properties([
        ("bootstrap.servers", bootstrap),
        ("isolation.level", isolation),
        ("auto.offset.reset", "earliest"),
        ("enable.auto.commit", "false"),
        ("fetch.max.wait.ms", "100"),
        ("request.timeout.ms", "5000"),
        ("socket.connection.setup.timeout.ms", "1000"),
    ])
    .await?;
    consumer.assign(&tps)?;
    let mut out: BTreeMap<i32, Partition> = (0..partitions).map(|p| (p, Vec::new())).collect();
    let deadline = Instant::now() + READ_LIMIT;
    loop {
        for r in consumer.poll(Duration::from_millis(100)).await? {
            let text = |b: Option<bytes::Bytes>| b.map(|b| String::from_utf8_lossy(&b).into_owned());
            let value = text(r.value).unwrap_or_else(|| "<null>".into());
            out.get_mut(&r.partition).with_context(|| format!("record from unassigned partition {}", r.partition))?.push((r.offset, text(r.key), value));
        }
        let positions = consumer.positions();
        if tps.iter().all(|tp| positions.get(tp).is_some_and(|p| *p >= ends[tp.partition as usize])) {
            break;
        }
        if Instant::now() >= deadline {
            bail!(
                "{isolation} read of {topic} not at its end within {READ_LIMIT:?}: positions {positions:?}, high watermarks {ends:?}, read {:?}",
                out.values().map(Vec::len).collect::<Vec<_>>()
            );
        }
    }
    consumer.close().await?;
    for (p, records) in &out {
        let offsets: Vec<i64> = records.iter().map(|r| r.0).collect();
        ensure!(offsets.windows(2).all(|w| w[0] < w[1]), "{isolation} offsets of {topic}-{p} do not increase: {offsets:?}");
        ensure!(offsets.iter().all(|o| *o < ends[*p as usize]), "{isolation} read of {topic}-{p} past the high watermark {}", ends[*p as usize]);
    }
    Ok(out)
}

fn values(read: &BTreeMap<i32, Partition>) -> BTreeMap<i32, Vec<String>> {
    read.iter().map(|(p, rs)| (*p, rs.iter().map(|r| r.2.clone()).collect())).collect()
}

fn count(read: &BTreeMap<i32, Partition>) -> usize {
    read.values().map(Vec::len).sum()
}

/// Where two lists first differ, for failure messages.
fn first_difference<T: std::fmt::Debug + PartialEq>(got: &[T], want: &[T]) -> String {
    let i = got.iter().zip(want).position(|(g, w)| g != w).unwrap_or(got.len().min(want.len()));
    format!("{} items, want {}; first difference at #{i}: got {:?}, want {:?}", got.len(), want.len(), got.get(i), want.get(i))
}

fn is_fenced(e: &Error) -> bool {
    matches!(e, Error::Fenced { .. })
}

// ---------------------------------------------------------------------------------------
// 1. Committed and aborted transactions under both isolation levels
// ---------------------------------------------------------------------------------------

/// 1,500 transactions over 3 partitions, 2 records per partition each, every third
/// aborted (after a flush, so its records are in the log): read_committed sees exactly
/// the committed records in order, read_uncommitted all of them, and each partition holds
/// one marker per transaction.
#[test]
fn samsa_commit_abort_mix_under_both_isolation_levels() -> Result<()> {
    let mut server = SamsaServer::start()?;
    let rt = runtime()?;
    let b = server.bootstrap().to_string();
    let topic = "samsa-txn-mix";
    let (txns, per_partition) = (1500usize, 2usize);
    let value = |t: usize, p: i32, i: usize| format!("t{t:06}-p{p}-{i}");
    let (committed, aborted, took) = run(&rt, "1,500 transactions", Duration::from_secs(120), async {
        create_topic(&b, NewTopic::new(topic, PARTITIONS, 1)).await?;
        let producer = txn_producer(&b, &format!("{topic}-txn"), &[]).await?;
        let started = Instant::now();
        let (mut committed, mut aborted) = (0usize, 0usize);
        for t in 0..txns {
            producer.begin_transaction()?;
            let mut futures = Vec::new();
            for p in 0..PARTITIONS {
                for i in 0..per_partition {
                    let record = ProducerRecord::new(topic, value(t, p, i)).key(format!("t{t}")).partition(p);
                    futures.push(producer.send(record).await.with_context(|| format!("send in txn {t}"))?);
                }
            }
            if t % 3 == 2 {
                // abort_transaction fails what is still queued: flush first so the aborted
                // records are in the log and read_committed has something to hide.
                producer.flush().await;
                delivered(futures).await.with_context(|| format!("records of txn {t} before its abort"))?;
                producer.abort_transaction().await.with_context(|| format!("abort of txn {t}"))?;
                aborted += 1;
            } else {
                producer.commit_transaction().await.with_context(|| format!("commit of txn {t}"))?;
                delivered(futures).await.with_context(|| format!("records of committed txn {t}"))?;
                committed += 1;
            }
        }
        Ok((committed, aborted, started.elapsed()))
    })?;
    eprintln!("{committed} committed + {aborted} aborted transactions in {:.1} s", took.as_secs_f64());
    ensure!(committed == 1000 && aborted == 500);

    let want_all: BTreeMap<i32, Vec<String>> =
        (0..PARTITIONS).map(|p| (p, (0..txns).flat_map(|t| (0..per_partition).map(move |i| value(t, p, i))).collect())).collect();
    let want_committed: BTreeMap<i32, Vec<String>> = (0..PARTITIONS)
        .map(|p| (p, (0..txns).filter(|t| t % 3 != 2).flat_map(|t| (0..per_partition).map(move |i| value(t, p, i))).collect()))
        .collect();
    let (rc, ru, marks) = run(&rt, "reading back", Duration::from_secs(90), async {
        Ok((
            read_to_end(&b, topic, PARTITIONS, "read_committed").await?,
            read_to_end(&b, topic, PARTITIONS, "read_uncommitted").await?,
            high_watermarks(&b, topic, PARTITIONS).await?,
        ))
    })?;
    let (rc_values, ru_values) = (values(&rc), values(&ru));
    for p in 0..PARTITIONS {
        ensure!(rc_values[&p] == want_committed[&p], "read_committed partition {p}: {}", first_difference(&rc_values[&p], &want_committed[&p]));
        ensure!(ru_values[&p] == want_all[&p], "read_uncommitted partition {p}: {}", first_difference(&ru_values[&p], &want_all[&p]));
        let keys_ok = rc[&p].iter().all(|(_, k, v)| k.as_deref() == Some(&format!("t{}", v[1..7].parse::<usize>().unwrap_or(usize::MAX))));
        ensure!(keys_ok, "read_committed partition {p}: a record's key does not match its transaction");
    }
    let want_high = (txns * (per_partition + 1)) as i64;
    ensure!(marks.iter().all(|h| *h == want_high), "high watermarks {marks:?}, want {want_high} (records + one marker per transaction)");
    eprintln!("read_committed {} records, read_uncommitted {}, high watermarks {marks:?}", count(&rc), count(&ru));
    drop(rt);
    server.terminate()
}

// ---------------------------------------------------------------------------------------
// 2. Consume-transform-produce through kill -9 of the processor
// ---------------------------------------------------------------------------------------

/// Records committed so far by the processor: the sum of its progress file's lines.
fn progress_records(path: &Path) -> Result<usize> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e.into()),
    };
    // Only complete lines: the processor may be writing the last one.
    let complete = text.rsplit_once('\n').map_or("", |(done, _)| done);
    complete.lines().map(|l| l.parse::<usize>().with_context(|| format!("progress line {l:?}"))).sum()
}

/// `samsa_txn_processor` (Samsa's consumer in a group, read_committed, and a transactional
/// producer sending its offsets with each transaction) copies 8,000 input records to an
/// output topic, 50 per transaction. It is killed with SIGKILL twice, each time at a random
/// 0-500 ms after it committed some more records, and restarted with the same
/// transactional.id; in the end read_committed holds every input record's output exactly
/// once, in input order per partition, and the group's committed offsets are the input's
/// end.
#[test]
fn samsa_consume_transform_produce_exactly_once_through_kill9() -> Result<()> {
    let mut server = SamsaServer::start()?;
    let rt = runtime()?;
    let b = server.bootstrap().to_string();
    let (input, output, group, txn_id) = ("samsa-ctp-in", "samsa-ctp-out", "samsa-ctp-group", "samsa-ctp-processor");
    let n = 8000usize;
    run(&rt, "filling the input", Duration::from_secs(60), async {
        create_topic(&b, NewTopic::new(input, PARTITIONS, 1)).await?;
        create_topic(&b, NewTopic::new(output, PARTITIONS, 1)).await?;
        let producer = Producer::from_properties([("bootstrap.servers", b.as_str()), ("linger.ms", "5")]).await?;
        let mut futures = Vec::with_capacity(n);
        for i in 0..n {
            let record = ProducerRecord::new(input, format!("in-{i:06}")).key(format!("k{i}")).partition((i % 3) as i32);
            futures.push(producer.send(record).await?);
        }
        producer.flush().await;
        delivered(futures).await.context("input records")?;
        Ok(())
    })?;

    let work = tempfile::Builder::new().prefix("samsa-txn-ctp-").tempdir()?;
    let progress = work.path().join("progress");
    let processor = || {
        program(env!("CARGO_BIN_EXE_samsa_txn_processor"))
            .args([b.as_str(), input, output, group, txn_id, progress.to_str().unwrap(), "50", "10"])
            .env("RUST_BACKTRACE", "1")
            .timeout(Duration::from_secs(150))
    };
    let seed = fastrand::u64(..);
    eprintln!("kill points seed {seed}");
    let mut rng = fastrand::Rng::with_seed(seed);
    // The processor pauses 10 ms in every transaction of 50 records, so it commits at most
    // 5,000 records a second: both kills land well before its 8,000th record.
    for (round, more) in [(1, 1000), (2, 500)] {
        let mut running = processor().spawn()?;
        let from = progress_records(&progress)?;
        wait_until(Duration::from_secs(60), &format!("round {round}: {more} more records processed"), || {
            ensure!(!running.has_exited()?, "processor exited before it was killed (round {round})");
            Ok(progress_records(&progress)? >= from + more)
        })?;
        let delay_ms = rng.u64(0..=500);
        thread::sleep(Duration::from_millis(delay_ms));
        ensure!(!running.has_exited()?, "processor finished before the kill (round {round}, {delay_ms} ms)");
        running.kill9()?;
        eprintln!("round {round}: killed {delay_ms} ms after {more} more records, at {} committed", progress_records(&progress)?);
    }
    let last = processor().run()?;
    eprintln!("last run: {:?}", last.result()?);

    let (rc, ru, committed, input_ends) = run(&rt, "verifying the output", Duration::from_secs(90), async {
        let admin = Admin::connect(&b).await?;
        Ok((
            read_to_end(&b, output, PARTITIONS, "read_committed").await?,
            read_to_end(&b, output, PARTITIONS, "read_uncommitted").await?,
            admin.list_group_offsets(group).await?,
            high_watermarks(&b, input, PARTITIONS).await?,
        ))
    })?;
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for rs in rc.values() {
        for (_, _, v) in rs {
            *seen.entry(v.clone()).or_default() += 1;
        }
    }
    let missing: Vec<usize> = (0..n).filter(|i| !seen.contains_key(&format!("out-in-{i:06}"))).collect();
    let duplicated: Vec<&String> = seen.iter().filter(|(_, c)| **c > 1).map(|(v, _)| v).collect();
    ensure!(
        missing.is_empty() && duplicated.is_empty() && count(&rc) == n,
        "read_committed output: {} records, {} missing (first {:?}), {} duplicated (first {:?})",
        count(&rc),
        missing.len(),
        &missing[..missing.len().min(10)],
        duplicated.len(),
        &duplicated[..duplicated.len().min(10)]
    );
    for p in 0..PARTITIONS {
        let want: Vec<(Option<String>, String)> = (p as usize..n).step_by(3).map(|i| (Some(format!("k{i}")), format!("out-in-{i:06}"))).collect();
        let got: Vec<(Option<String>, String)> = rc[&p].iter().map(|(_, k, v)| (k.clone(), v.clone())).collect();
        ensure!(got == want, "output partition {p} not in input order, misplaced or with wrong keys: {}", first_difference(&got, &want));
    }
    let committed_input: Vec<Option<i64>> = (0..PARTITIONS).map(|p| committed.get(&TopicPartition::new(input, p)).copied()).collect();
    ensure!(
        committed_input == input_ends.iter().map(|e| Some(*e)).collect::<Vec<_>>(),
        "group {group} committed {committed_input:?}, want the input's high watermarks {input_ends:?}"
    );
    ensure!(count(&ru) >= n, "read_uncommitted saw {} < {n} records", count(&ru));
    eprintln!("exactly once: {n} outputs; read_uncommitted shows {} more (output of aborted transactions)", count(&ru) - n);
    drop(rt);
    server.terminate()
}

// ---------------------------------------------------------------------------------------
// 3. Zombie fencing
// ---------------------------------------------------------------------------------------

/// Three producers sharing one transactional.id. Round 1: A's transaction is open with
/// records in the log when B calls init_transactions; A's next records fail with
/// `Error::Fenced` (the Produce path), so does its commit, and A stays unusable. Round 2:
/// B's second transaction is open when C takes over; B's commit without new records fails
/// with `Error::Fenced` (the EndTxn path). read_committed sees only B's first and C's
/// records; read_uncommitted every record that reached the log.
#[test]
fn samsa_zombie_producer_is_fenced() -> Result<()> {
    let mut server = SamsaServer::start()?;
    let rt = runtime()?;
    let b = server.bootstrap().to_string();
    let topic = "samsa-txn-fence";
    let id = "samsa-txn-fence-shared-id";
    run(&rt, "the fencing rounds", Duration::from_secs(90), async {
        create_topic(&b, NewTopic::new(topic, PARTITIONS, 1)).await?;

        // Round 1: fenced on Produce.
        let a = txn_producer(&b, id, &[("client.id", "zombie-a")]).await?;
        a.begin_transaction()?;
        let fa = send_all(&a, topic, prefixed("a")).await?;
        a.flush().await;
        delivered(fa).await.context("A's records before the fencing")?;
        let bp = txn_producer(&b, id, &[("client.id", "b")]).await?;
        bp.begin_transaction()?;
        let fb = send_all(&bp, topic, prefixed("b")).await?;
        bp.commit_transaction().await.context("B's commit")?;
        delivered(fb).await.context("B's records")?;

        let mut late = Vec::new();
        for p in 0..PARTITIONS {
            match a.send(ProducerRecord::new(topic, format!("a-late-p{p}")).partition(p)).await {
                Ok(f) => late.push(f),
                Err(e) => ensure!(is_fenced(&e), "A's late send refused with `{e}`, want Error::Fenced"),
            }
        }
        a.flush().await;
        for f in late {
            match f.await {
                Ok(md) => bail!("a record of the fenced producer A was acknowledged: {md:?}"),
                Err(e) => ensure!(is_fenced(&e), "A's late record failed with `{e}` ({e:?}), want Error::Fenced"),
            }
        }
        match a.commit_transaction().await {
            Ok(()) => bail!("the fenced producer A committed"),
            Err(e) => ensure!(is_fenced(&e), "A's commit failed with `{e}` ({e:?}), want Error::Fenced"),
        }
        match a.send(ProducerRecord::new(topic, "a-after-commit").partition(0)).await {
            Ok(f) => match f.await {
                Ok(md) => bail!("the fenced producer A still writes: {md:?}"),
                Err(e) => ensure!(is_fenced(&e), "A's send after its failed commit: `{e}`, want Error::Fenced"),
            },
            Err(e) => ensure!(is_fenced(&e), "A's send after its failed commit refused with `{e}`, want Error::Fenced"),
        }

        // Round 2: fenced on EndTxn.
        bp.begin_transaction()?;
        let fb2 = send_all(&bp, topic, prefixed("b2")).await?;
        bp.flush().await;
        delivered(fb2).await.context("B's second records before the fencing")?;
        let c = txn_producer(&b, id, &[("client.id", "c")]).await?;
        c.begin_transaction()?;
        let fc = send_all(&c, topic, prefixed("c")).await?;
        c.commit_transaction().await.context("C's commit")?;
        delivered(fc).await.context("C's records")?;
        match bp.commit_transaction().await {
            Ok(()) => bail!("the fenced producer B committed its second transaction"),
            Err(e) => ensure!(is_fenced(&e), "B's commit without producing failed with `{e}` ({e:?}), want Error::Fenced"),
        }

        let rc = values(&read_to_end(&b, topic, PARTITIONS, "read_committed").await?);
        ensure!(rc == expected(&["b", "c"]), "read_committed saw {rc:?}, want only the committed b and c records");
        let ru = values(&read_to_end(&b, topic, PARTITIONS, "read_uncommitted").await?);
        ensure!(ru == expected(&["a", "b", "b2", "c"]), "read_uncommitted saw {ru:?}");
        Ok(())
    })?;
    drop(rt);
    server.terminate()
}

// ---------------------------------------------------------------------------------------
// 4. An idle transaction times out
// ---------------------------------------------------------------------------------------

/// A live producer (`transaction.timeout.ms` = 2000) leaves its transaction idle with
/// records in the log: records a plain producer writes behind it stay invisible to a
/// read_committed Samsa consumer until the broker aborts the transaction, then appear; the
/// stuck records never do, and the idle producer's late commit fails with `Error::Fenced`
/// (the abort bumped its epoch).
#[test]
fn samsa_idle_transaction_times_out() -> Result<()> {
    const TIMEOUT_MS: u64 = 2000;
    let mut server = SamsaServer::builder().set("transaction.abort.timed.out.transaction.cleanup.interval.ms", "200").start()?;
    let rt = runtime()?;
    let b = server.bootstrap().to_string();
    let topic = "samsa-txn-timeout-idle";
    let visible_after = run(&rt, "the idle transaction", Duration::from_secs(90), async {
        create_topic(&b, NewTopic::new(topic, PARTITIONS, 1)).await?;
        let producer = txn_producer(&b, &format!("{topic}-idle"), &[("transaction.timeout.ms", &TIMEOUT_MS.to_string())]).await?;
        // Before the transaction starts, so the broker's start time is later than this.
        let started = Instant::now();
        producer.begin_transaction()?;
        let stuck = send_all(&producer, topic, prefixed("stuck")).await?;
        producer.flush().await;
        delivered(stuck).await.context("stuck records")?;

        let plain = Producer::from_properties([("bootstrap.servers", b.as_str()), ("linger.ms", "1")]).await?;
        let after = send_all(&plain, topic, prefixed("after")).await?;
        plain.flush().await;
        delivered(after).await.context("after records")?;

        let reader = Consumer::from_properties([
            ("bootstrap.servers", b.as_str()),
            ("isolation.level", "read_committed"),
            ("auto.offset.reset", "earliest"),
            ("enable.auto.commit", "false"),
            ("fetch.max.wait.ms", "50"),
        ])
        .await?;
        reader.assign(&(0..PARTITIONS).map(|p| TopicPartition::new(topic, p)).collect::<Vec<_>>())?;
        let mut seen: BTreeMap<i32, Vec<String>> = (0..PARTITIONS).map(|p| (p, Vec::new())).collect();
        let want_count = PARTITIONS as usize * PER_PARTITION;
        let deadline = started + Duration::from_millis(TIMEOUT_MS) + Duration::from_secs(30);
        let mut first_visible = None;
        while seen.values().map(Vec::len).sum::<usize>() < want_count {
            ensure!(Instant::now() < deadline, "read_committed saw only {seen:?} within 30 s of the timeout: the timed-out transaction was not aborted");
            for r in reader.poll(Duration::from_millis(50)).await? {
                first_visible.get_or_insert_with(|| started.elapsed());
                seen.entry(r.partition).or_default().push(String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned());
            }
        }
        reader.close().await?;
        ensure!(seen == expected(&["after"]), "read_committed saw {seen:?}, want only the after records");
        let first_visible = first_visible.expect("records were seen");
        // The last stable offset cannot pass the open transaction before it times out.
        ensure!(
            first_visible >= Duration::from_millis(TIMEOUT_MS * 95 / 100),
            "records behind the open transaction visible after {first_visible:?}, before its {TIMEOUT_MS} ms timeout"
        );

        match producer.commit_transaction().await {
            Ok(()) => bail!("the idle producer committed a transaction the broker timed out"),
            Err(e) => ensure!(is_fenced(&e), "the idle producer's commit failed with `{e}` ({e:?}), want Error::Fenced"),
        }
        let rc = values(&read_to_end(&b, topic, PARTITIONS, "read_committed").await?);
        ensure!(rc == expected(&["after"]), "read_committed after the failed commit saw {rc:?}");
        let ru = values(&read_to_end(&b, topic, PARTITIONS, "read_uncommitted").await?);
        ensure!(ru == expected(&["stuck", "after"]), "read_uncommitted saw {ru:?}");
        Ok(first_visible)
    })?;
    eprintln!("after records visible {visible_after:?} after the transaction began");
    drop(rt);
    server.terminate()
}

// ---------------------------------------------------------------------------------------
// 5. The idempotent producer through a partition leader's kill -9 (3 nodes)
// ---------------------------------------------------------------------------------------

/// Samsa's producer with its defaults (idempotent, acks=all, 5 in flight) sends 30,000
/// unique ids to 3 partitions (RF 3, min.insync.replicas 2), paced, while the leader of
/// partition 0 is killed with -9 a quarter of the way in. Every record is acknowledged, and
/// the read-back holds each exactly once at its acknowledged offset, in send order per
/// partition: retries across the failover neither duplicate nor reorder.
#[test]
fn samsa_idempotent_producer_survives_leader_kill9() -> Result<()> {
    const COUNT: u64 = 30_000;
    let topic = "samsa-idempotent-failover";
    let rt = runtime()?;
    let mut cluster = SamsaCluster::start(3, &[])?;
    let bootstrap = cluster.bootstrap();
    run(&rt, "creating the topic", Duration::from_secs(30), create_topic(&bootstrap, NewTopic::new(topic, PARTITIONS, 3).config("min.insync.replicas", "2")))?;
    wait_until(Duration::from_secs(30), &format!("{topic}: every partition led, ISR of 3"), || {
        Ok(cluster.partitions(topic).is_ok_and(|ps| ps.len() == PARTITIONS as usize && ps.iter().all(|(l, _, isr)| *l > 0 && isr.len() == 3)))
    })?;

    let producer = run(&rt, "connecting the producer", Duration::from_secs(10), async {
        Ok(Producer::from_properties([
            ("bootstrap.servers", bootstrap.as_str()),
            ("linger.ms", "2"),
            ("request.timeout.ms", "5000"),
            ("socket.connection.setup.timeout.ms", "1000"),
        ])
        .await?)
    })?;
    ensure!(producer.config().idempotence()?, "Samsa's producer is not idempotent by default");
    // (partition, offset, id) of every acknowledgement, and every failure.
    let acked: Arc<Mutex<Vec<(i32, i64, u64)>>> = Arc::default();
    let failed: Arc<Mutex<Vec<String>>> = Arc::default();
    let sending = {
        let (acked, failed) = (acked.clone(), failed.clone());
        rt.spawn(async move {
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(u64, DeliveryFuture)>();
            let acker = tokio::spawn(async move {
                while let Some((id, f)) = rx.recv().await {
                    match f.await {
                        Ok(md) => acked.lock().unwrap().push((md.partition, md.offset, id)),
                        Err(e) => failed.lock().unwrap().push(format!("id {id}: {e}")),
                    }
                }
            });
            // About 5,000 records a second: the kill lands in mid-stream and most records
            // are sent during and after the failover.
            for id in 0..COUNT {
                let record = ProducerRecord::new(topic, id.to_string()).partition((id % PARTITIONS as u64) as i32);
                let f = producer.send(record).await.with_context(|| format!("send id {id}"))?;
                tx.send((id, f)).expect("the acker runs until the channel closes");
                if id % 100 == 99 {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            drop(tx);
            producer.flush().await;
            acker.await?;
            Ok::<_, anyhow::Error>(())
        })
    };
    let quarter = (COUNT / 4) as usize;
    wait_until(Duration::from_secs(60), &format!("{quarter} acknowledged records"), || {
        ensure!(failed.lock().unwrap().is_empty(), "deliveries failed before the kill: {:?}", failed.lock().unwrap());
        ensure!(!sending.is_finished(), "the producer stopped before {quarter} acks");
        Ok(acked.lock().unwrap().len() >= quarter)
    })?;
    let victim = cluster.partitions(topic)?[0].0;
    ensure!((1..=3).contains(&victim), "partition 0 has no leader before the kill: {victim}");
    let victim = victim as usize;
    let survivors: Vec<usize> = (1..=3).filter(|n| *n != victim).collect();
    let acked_at_kill = acked.lock().unwrap().len();
    let killed_at = Instant::now();
    cluster.kill9(victim)?;
    eprintln!("killed node {victim}, leader of {topic}-0, with {acked_at_kill} of {COUNT} records acknowledged");
    ensure!(acked_at_kill < (COUNT * 3 / 4) as usize, "the kill came too late to test failover under load ({acked_at_kill} acked)");

    rt.block_on(bounded("the producer after the failover", Duration::from_secs(120), sending))???;
    eprintln!("all sends finished {:.1} s after the kill", killed_at.elapsed().as_secs_f64());
    let failed = failed.lock().unwrap().clone();
    ensure!(failed.is_empty(), "{} records failed for good (first: {:?})", failed.len(), &failed[..failed.len().min(10)]);
    let acked = acked.lock().unwrap().clone();

    let survivor_bootstrap = survivors.iter().map(|&id| cluster.addr(id)).collect::<Vec<_>>().join(",");
    let read = run(&rt, "reading back", Duration::from_secs(90), read_to_end(&survivor_bootstrap, topic, PARTITIONS, "read_uncommitted"))?;
    let read: Vec<(i32, i64, String)> = read.into_iter().flat_map(|(p, rs)| rs.into_iter().map(move |(o, _, v)| (p, o, v))).collect();
    crate::cluster_a::verify_exactly_once(&acked, &read, COUNT, PARTITIONS)?;
    eprintln!("all {COUNT} acknowledged ids read back exactly once at their offsets; partitions now {:?}", cluster.partitions(topic)?);
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 6. The transaction coordinator killed between EndTxn and the markers (3 nodes)
// ---------------------------------------------------------------------------------------

/// Records per partition in each transaction under test.
const TXN_RECORDS: usize = 20;

/// Runs one transaction with Samsa's producer, ends it (commit or abort), kills its
/// coordinator with -9 while `transaction.marker.delay.ms` holds the markers back, and
/// checks that a surviving node took the transaction over and finished it: read_committed
/// (Samsa's consumer) shows `committed_before` plus this transaction's records if
/// committed, and the partitions end with its markers.
fn end_then_kill_coordinator(rt: &tokio::runtime::Runtime, cluster: &mut SamsaCluster, txn_id: &str, tag: &str, commit: bool, committed_before: &[&str]) -> Result<usize> {
    let topic = "samsa-txn-failover";
    let b = cluster.bootstrap();
    let producer = run(rt, "init_transactions", Duration::from_secs(30), txn_producer(&b, txn_id, &[("request.timeout.ms", "5000"), ("socket.connection.setup.timeout.ms", "1000")]))?;
    // The transaction's state must be on every replica of its __transaction_state
    // partition before the kill, for a survivor to take it over.
    let index = cluster.txn_partition(txn_id)?;
    wait_until(Duration::from_secs(30), &format!("__transaction_state-{index} led with an ISR of 3"), || {
        Ok(cluster.partitions("__transaction_state").is_ok_and(|ps| ps[index].0 > 0 && ps[index].2.len() == 3))
    })?;
    let victim = cluster.partitions("__transaction_state")?[index].0 as usize;

    let records = (0..PARTITIONS).flat_map(|p| (0..TXN_RECORDS).map(move |i| (p, format!("{tag}-p{p}-{i}"))));
    run(rt, "the transaction under test", Duration::from_secs(60), async {
        producer.begin_transaction()?;
        let futures = send_all(&producer, topic, records).await?;
        // Flushed first: an abort would otherwise just fail unsent records.
        producer.flush().await;
        delivered(futures).await.context("the transaction's records")?;
        if commit {
            producer.commit_transaction().await.context("commit_transaction")?;
        } else {
            producer.abort_transaction().await.context("abort_transaction")?;
        }
        Ok(())
    })?;
    let survivors: Vec<usize> = (1..=3).filter(|&n| n != victim).collect();
    let loads = |c: &SamsaCluster| c.count_in_logs(&survivors, "prepared=1");
    let loads_before = loads(cluster);
    // Markers are held back for 4 s after the prepare: kill the coordinator now.
    cluster.kill9(victim)?;
    let outcome = if commit { "commit" } else { "abort" };
    eprintln!("killed node {victim}, the coordinator of {txn_id}, after its {outcome} was answered");
    // A surviving node takes the partition over and finds the prepared transaction.
    wait_until(Duration::from_secs(30), "a new coordinator to load the prepared transaction", || Ok(loads(cluster) > loads_before))?;

    let survivor_bootstrap = survivors.iter().map(|&id| cluster.addr(id)).collect::<Vec<_>>().join(",");
    let mut visible: Vec<&str> = committed_before.to_vec();
    if commit {
        visible.push(tag);
    }
    let by_tag = |tags: &[&str]| -> BTreeMap<i32, Vec<String>> {
        (0..PARTITIONS).map(|p| (p, tags.iter().flat_map(|t| (0..TXN_RECORDS).map(move |i| format!("{t}-p{p}-{i}"))).collect())).collect()
    };
    let rounds = committed_before.len() + 1;
    // Every earlier round and this one: TXN_RECORDS records and a marker per partition.
    let want_end = (rounds * (TXN_RECORDS + 1)) as i64;
    run(rt, "checking how the transaction ended", Duration::from_secs(60), async {
        // The markers are written by the new coordinator: wait for the log ends to include them.
        let mut ends = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while ends != vec![want_end; PARTITIONS as usize] {
            ensure!(Instant::now() < deadline, "high watermarks {ends:?} after 30 s, want {want_end} (records + markers) on each partition");
            ends = high_watermarks(&survivor_bootstrap, topic, PARTITIONS).await.unwrap_or_default();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let rc = values(&read_to_end(&survivor_bootstrap, topic, PARTITIONS, "read_committed").await?);
        let want = by_tag(&visible);
        ensure!(rc == want, "{outcome} of {txn_id}: read_committed saw {rc:?}, want {want:?}");
        Ok(())
    })?;
    drop(producer);
    Ok(victim)
}

/// A commit, then (with the killed node back) an abort, each ended by Samsa's
/// transactional producer and then finished by the coordinator that took over.
#[test]
fn samsa_coordinator_killed_between_end_txn_and_markers() -> Result<()> {
    let rt = runtime()?;
    let mut cluster = SamsaCluster::start(
        3,
        &[
            ("transaction.marker.delay.ms", "4000"),
            ("replica.lag.time.max.ms", "3000"),
            ("transaction.state.log.num.partitions", "3"),
            ("offsets.topic.num.partitions", "3"),
        ],
    )?;
    let b = cluster.bootstrap();
    run(&rt, "creating the topic", Duration::from_secs(30), create_topic(&b, NewTopic::new("samsa-txn-failover", PARTITIONS, 3)))?;
    wait_until(Duration::from_secs(30), "every partition led, ISR of 3", || {
        Ok(cluster.partitions("samsa-txn-failover").is_ok_and(|ps| ps.len() == PARTITIONS as usize && ps.iter().all(|(l, _, isr)| *l > 0 && isr.len() == 3)))
    })?;
    let victim = end_then_kill_coordinator(&rt, &mut cluster, "samsa-txn-commit-1", "c", true, &[])?;
    // Back to three nodes (two must stay up for the metadata quorum), then an abort.
    cluster.restart(victim)?;
    cluster.wait_for_brokers(3, Duration::from_secs(30))?;
    end_then_kill_coordinator(&rt, &mut cluster, "samsa-txn-abort-1", "a", false, &["c"])?;
    Ok(())
}
