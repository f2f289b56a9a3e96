//! Samsa's async Rust consumer (`samsa_client::Consumer`) against a real `samsa server`:
//! positions and seeks, pause/resume, manual and automatic commits, regex subscriptions,
//! eager and cooperative rebalances seen through a `RebalanceListener`, liveness (the
//! background heartbeat while the application is busy, leaving after
//! `max.poll.interval.ms`), `auto.offset.reset=none`, configuration errors and
//! `read_committed`.
//!
//! Every await is bounded by a timeout and every wait is a polling loop with a deadline;
//! the only deliberate pauses are the scenarios' own "the application does not poll for N
//! seconds". Records are identified by (topic, partition, offset) and checked exactly.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context, Result};
use samsa_client::admin::{Admin, GroupDescription, NewTopic};
use samsa_client::consumer::IsolationLevel;
use samsa_client::error::ResponseError;
use samsa_client::{
    Consumer, ConsumerConfig, ConsumerRecord, Error, Producer, ProducerConfig, ProducerRecord,
    RebalanceListener, TopicPartition,
};
use samsa_tests::{blocking, bounded, SamsaServer};

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// Upper bound for one client call (connect, commit, describe, ...).
const CALL: Duration = Duration::from_secs(30);

/// Starts a server (the harness sets `group.initial.rebalance.delay.ms=0`).
fn start_server() -> Result<SamsaServer> {
    blocking(|| SamsaServer::builder().start())
}

async fn admin(b: &str) -> Result<Admin> {
    Ok(bounded("Admin::connect", CALL, Admin::connect(b)).await??)
}

async fn create_topics(admin: &Admin, topics: &[(&str, i32)]) -> Result<()> {
    let new: Vec<NewTopic> = topics
        .iter()
        .map(|(t, p)| NewTopic::new(*t, *p, 1))
        .collect();
    bounded("create_topics", CALL, admin.create_topics(&new)).await??;
    Ok(())
}

async fn producer(b: &str) -> Result<Producer> {
    Ok(bounded(
        "Producer::new",
        CALL,
        Producer::new(ProducerConfig::new(b)?),
    )
    .await??)
}

/// Produces `n` records to one partition and checks they got consecutive offsets starting
/// at `first`; returns the offsets.
async fn produce(
    p: &Producer,
    topic: &str,
    partition: i32,
    n: usize,
    first: i64,
) -> Result<Vec<i64>> {
    let offsets = bounded(
        &format!("producing {n} records to {topic}-{partition}"),
        CALL,
        async {
            let mut futures = Vec::with_capacity(n);
            for i in 0..n {
                futures.push(
                    p.send(
                        ProducerRecord::new(topic, format!("{topic}-{partition}-{i}"))
                            .partition(partition),
                    )
                    .await?,
                );
            }
            let mut offsets = Vec::with_capacity(n);
            for f in futures {
                let m = f.await?;
                ensure!(
                    m.topic == topic && m.partition == partition,
                    "acknowledged as {m:?}"
                );
                offsets.push(m.offset);
            }
            Ok::<_, anyhow::Error>(offsets)
        },
    )
    .await??;
    let want: Vec<i64> = (first..first + n as i64).collect();
    ensure!(
        offsets == want,
        "{topic}-{partition}: produced at offsets {offsets:?}, want {want:?}"
    );
    Ok(offsets)
}

/// Consumer properties: bootstrap plus `extra`.
fn props<'a>(b: &'a str, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut v = vec![("bootstrap.servers", b)];
    v.extend_from_slice(extra);
    v
}

async fn consumer(b: &str, extra: &[(&str, &str)]) -> Result<Consumer> {
    Ok(bounded(
        "Consumer::new",
        CALL,
        Consumer::from_properties(props(b, extra)),
    )
    .await??)
}

fn tp(topic: &str, partition: i32) -> TopicPartition {
    TopicPartition::new(topic, partition)
}

/// (topic, partition, offset): how records are compared.
type Id = (String, i32, i64);

fn id(r: &ConsumerRecord) -> Id {
    (r.topic.clone(), r.partition, r.offset)
}

/// Polls (100 ms at a time) until `done(all records so far)` holds; fails after `limit`
/// with what arrived. Poll errors fail at once.
async fn poll_until(
    c: &Consumer,
    what: &str,
    limit: Duration,
    mut done: impl FnMut(&[ConsumerRecord]) -> bool,
) -> Result<Vec<ConsumerRecord>> {
    let deadline = Instant::now() + limit;
    let mut all: Vec<ConsumerRecord> = Vec::new();
    loop {
        if done(&all) {
            return Ok(all);
        }
        ensure!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}; got {} records: {:?}",
            all.len(),
            all.iter().map(id).collect::<Vec<_>>()
        );
        let batch = bounded("poll", CALL, c.poll(Duration::from_millis(100)))
            .await?
            .with_context(|| format!("poll while waiting for {what}"))?;
        all.extend(batch);
    }
}

/// Offsets of `records` from one partition, in the order returned.
fn offsets_of(records: &[ConsumerRecord], topic: &str, partition: i32) -> Vec<i64> {
    records
        .iter()
        .filter(|r| r.topic == topic && r.partition == partition)
        .map(|r| r.offset)
        .collect()
}

fn count_of(records: &[ConsumerRecord], topic: &str, partition: i32) -> usize {
    records
        .iter()
        .filter(|r| r.topic == topic && r.partition == partition)
        .count()
}

/// Awaits `check` every 100 ms until it holds; fails after `limit`.
async fn wait_for<F, Fut>(what: &str, limit: Duration, mut check: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<bool>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if bounded(what, CALL, check()).await?? {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn describe(admin: &Admin, group: &str) -> Result<GroupDescription> {
    let mut all = bounded(
        "describe_groups",
        CALL,
        admin.describe_groups(&[group.to_string()]),
    )
    .await??;
    all.pop()
        .ok_or_else(|| anyhow!("describe_groups returned nothing for {group}"))
}

/// A member's assignment as a set, from DescribeGroups.
fn member_parts(desc: &GroupDescription, member_id: &str) -> Option<BTreeSet<TopicPartition>> {
    desc.members
        .iter()
        .find(|m| m.member_id == member_id)
        .map(|m| {
            m.assignment
                .iter()
                .flat_map(|(t, ps)| ps.iter().map(move |p| tp(t, *p)))
                .collect()
        })
}

fn member_id(c: &Consumer) -> String {
    c.group_metadata().map(|g| g.member_id).unwrap_or_default()
}

fn set(c: &Consumer) -> BTreeSet<TopicPartition> {
    c.assignment().into_iter().collect()
}

fn all_parts(topic: &str, n: i32) -> BTreeSet<TopicPartition> {
    (0..n).map(|p| tp(topic, p)).collect()
}

/// What a `RebalanceListener` saw, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Event {
    Assigned(BTreeSet<TopicPartition>),
    Revoked(BTreeSet<TopicPartition>),
    Lost(BTreeSet<TopicPartition>),
}

#[derive(Default)]
struct Recorder {
    events: Mutex<Vec<Event>>,
}

impl Recorder {
    fn events(&self) -> Vec<Event> {
        self.events.lock().unwrap().clone()
    }
}

impl RebalanceListener for Recorder {
    fn on_partitions_assigned(&self, partitions: &[TopicPartition]) {
        self.events
            .lock()
            .unwrap()
            .push(Event::Assigned(partitions.iter().cloned().collect()));
    }
    fn on_partitions_revoked(&self, partitions: &[TopicPartition]) {
        self.events
            .lock()
            .unwrap()
            .push(Event::Revoked(partitions.iter().cloned().collect()));
    }
    fn on_partitions_lost(&self, partitions: &[TopicPartition]) {
        self.events
            .lock()
            .unwrap()
            .push(Event::Lost(partitions.iter().cloned().collect()));
    }
}

/// A consumer polling in a background task, keeping every record it returned.
struct Looper {
    consumer: Arc<Consumer>,
    records: Arc<Mutex<Vec<ConsumerRecord>>>,
    stop: Arc<AtomicBool>,
    /// When the latest `poll` call began: the consumer's max.poll.interval.ms clock
    /// restarts no earlier than this.
    last_poll_start: Arc<Mutex<Instant>>,
    task: tokio::task::JoinHandle<Result<()>>,
}

impl Looper {
    /// Polls `consumer` until stopped; with `commit`, commits synchronously after every
    /// non-empty poll.
    fn start(consumer: Arc<Consumer>, commit: bool) -> Looper {
        let records = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let last_poll_start = Arc::new(Mutex::new(Instant::now()));
        let task = tokio::spawn({
            let (consumer, records, stop, last) = (consumer.clone(), records.clone(), stop.clone(), last_poll_start.clone());
            async move {
                while !stop.load(Ordering::Acquire) {
                    *last.lock().unwrap() = Instant::now();
                    let batch =
                        bounded("poll", CALL, consumer.poll(Duration::from_millis(100))).await??;
                    if batch.is_empty() {
                        continue;
                    }
                    records.lock().unwrap().extend(batch);
                    if commit {
                        match bounded("commit", CALL, consumer.commit()).await? {
                            Ok(()) => {}
                            // As in the Java client, a commit can lose a race with a
                            // rebalance; the rebalance itself commits revoked partitions.
                            Err(e)
                                if matches!(
                                    e.kafka_error(),
                                    Some(
                                        ResponseError::RebalanceInProgress
                                            | ResponseError::IllegalGeneration
                                    )
                                ) => {}
                            Err(e) => return Err(anyhow!(e).context("commit in the poll loop")),
                        }
                    }
                }
                Ok(())
            }
        });
        Looper {
            consumer,
            records,
            stop,
            last_poll_start,
            task,
        }
    }

    fn records(&self) -> Vec<ConsumerRecord> {
        self.records.lock().unwrap().clone()
    }

    fn check_running(&self) -> Result<()> {
        ensure!(!self.task.is_finished(), "the poll loop stopped early");
        Ok(())
    }

    /// Stops the loop and returns its consumer; surfaces the loop's error.
    async fn stop(self) -> Result<(Arc<Consumer>, Vec<ConsumerRecord>)> {
        self.stop.store(true, Ordering::Release);
        bounded("stopping a poll loop", CALL, self.task).await???;
        let records = self.records.lock().unwrap().clone();
        Ok((self.consumer, records))
    }
}

// ---------------------------------------------------------------------------------------
// 1. assign + seek / seek_to_beginning / seek_to_end / position
// ---------------------------------------------------------------------------------------

/// Positions are exact after every kind of seek, and the next record polled is the one
/// at that position; the other partition is not disturbed.
#[tokio::test(flavor = "multi_thread")]
async fn client_consumer_assign_seek_and_position() -> Result<()> {
    let mut server = start_server()?;
    let b = server.bootstrap().to_string();
    let admin = admin(&b).await?;
    let t = "seeks";
    create_topics(&admin, &[(t, 2)]).await?;
    let p = producer(&b).await?;
    produce(&p, t, 0, 10, 0).await?;
    produce(&p, t, 1, 4, 0).await?;
    let (p0, p1) = (tp(t, 0), tp(t, 1));

    // No group: positions come from auto.offset.reset (latest by default).
    let c = consumer(&b, &[("fetch.max.wait.ms", "100")]).await?;
    c.assign(&[p0.clone(), p1.clone()])?;
    assert_eq!(set(&c), BTreeSet::from([p0.clone(), p1.clone()]));
    assert_eq!(bounded("position", CALL, c.position(&p0)).await??, 10);
    assert_eq!(bounded("position", CALL, c.position(&p1)).await??, 4);
    // Starting at the end: the first record polled is the next one produced.
    produce(&p, t, 0, 1, 10).await?;
    let got = poll_until(&c, "the record at offset 10", CALL, |r| !r.is_empty()).await?;
    assert_eq!(
        got.iter().map(id).collect::<Vec<_>>(),
        vec![(t.to_string(), 0, 10)]
    );
    assert_eq!(bounded("position", CALL, c.position(&p0)).await??, 11);

    // seek: the position is what was asked, at once, and polling resumes exactly there.
    c.seek(&p0, 5)?;
    assert_eq!(bounded("position", CALL, c.position(&p0)).await??, 5);
    let got = poll_until(&c, "offsets 5..=10", CALL, |r| r.len() >= 6).await?;
    assert_eq!(offsets_of(&got, t, 0), vec![5, 6, 7, 8, 9, 10]);
    assert_eq!(
        got.len(),
        6,
        "only p0 had records to give: {:?}",
        got.iter().map(id).collect::<Vec<_>>()
    );
    assert_eq!(bounded("position", CALL, c.position(&p0)).await??, 11);

    // Two seeks in a row: the last one wins (a fetch for the first one is discarded).
    c.seek(&p0, 3)?;
    c.seek(&p0, 7)?;
    let got = poll_until(&c, "offsets 7..=10", CALL, |r| r.len() >= 4).await?;
    assert_eq!(offsets_of(&got, t, 0), vec![7, 8, 9, 10]);

    // seek_to_beginning: position 0, then every record once, in order.
    c.seek_to_beginning(std::slice::from_ref(&p0))?;
    assert_eq!(bounded("position", CALL, c.position(&p0)).await??, 0);
    let got = poll_until(&c, "offsets 0..=10", CALL, |r| r.len() >= 11).await?;
    assert_eq!(offsets_of(&got, t, 0), (0..=10).collect::<Vec<i64>>());
    assert_eq!(bounded("position", CALL, c.position(&p0)).await??, 11);

    // seek_to_beginning on p0 and p1 before the fetcher resolves them; then seek_to_end.
    c.seek_to_beginning(&[p0.clone(), p1.clone()])?;
    c.seek_to_end(std::slice::from_ref(&p0))?;
    assert_eq!(bounded("position", CALL, c.position(&p0)).await??, 11);
    assert_eq!(bounded("position", CALL, c.position(&p1)).await??, 0);
    let got = poll_until(&c, "p1's four records", CALL, |r| r.len() >= 4).await?;
    assert_eq!(offsets_of(&got, t, 1), vec![0, 1, 2, 3]);
    assert!(
        offsets_of(&got, t, 0).is_empty(),
        "p0 was at its end: {:?}",
        got.iter().map(id).collect::<Vec<_>>()
    );
    assert_eq!(bounded("position", CALL, c.position(&p0)).await??, 11);
    assert_eq!(bounded("position", CALL, c.position(&p1)).await??, 4);

    // After seek_to_end, new records arrive from the end, nothing older.
    produce(&p, t, 0, 2, 11).await?;
    let got = poll_until(&c, "offsets 11 and 12", CALL, |r| r.len() >= 2).await?;
    assert_eq!(
        got.iter().map(id).collect::<Vec<_>>(),
        vec![(t.to_string(), 0, 11), (t.to_string(), 0, 12)]
    );

    // Partitions not assigned are refused, naming the partition.
    let other = tp(t, 7);
    for e in [
        c.seek(&other, 0).unwrap_err(),
        c.seek_to_end(std::slice::from_ref(&other)).unwrap_err(),
        c.pause(std::slice::from_ref(&other)).unwrap_err(),
    ] {
        assert!(
            matches!(&e, Error::State(m) if m.contains("seeks-7")),
            "{e:?}"
        );
    }
    let e = bounded("position", CALL, c.position(&other))
        .await?
        .unwrap_err();
    assert!(
        matches!(&e, Error::State(m) if m.contains("seeks-7")),
        "{e:?}"
    );

    bounded("close", CALL, c.close()).await??;
    bounded("producer close", CALL, p.close()).await?;
    blocking(|| server.terminate())
}

// ---------------------------------------------------------------------------------------
// 2. pause / resume
// ---------------------------------------------------------------------------------------

/// A paused partition gives nothing (even what was already buffered) while the other keeps
/// flowing; after resume it continues at the next offset, with no gap and no repeat.
#[tokio::test(flavor = "multi_thread")]
async fn client_consumer_pause_and_resume() -> Result<()> {
    let mut server = start_server()?;
    let b = server.bootstrap().to_string();
    let admin = admin(&b).await?;
    let t = "pauses";
    create_topics(&admin, &[(t, 2)]).await?;
    let p = producer(&b).await?;
    produce(&p, t, 0, 8, 0).await?;
    produce(&p, t, 1, 5, 0).await?;
    let (p0, p1) = (tp(t, 0), tp(t, 1));

    // Two records per poll, so p0's buffer still holds records when it is paused.
    let c = consumer(
        &b,
        &[
            ("auto.offset.reset", "earliest"),
            ("max.poll.records", "2"),
            ("fetch.max.wait.ms", "100"),
        ],
    )
    .await?;
    c.assign(&[p0.clone(), p1.clone()])?;
    let first = poll_until(&c, "two records of p0", CALL, |r| count_of(r, t, 0) >= 2).await?;
    c.pause(std::slice::from_ref(&p0))?;
    assert_eq!(c.paused(), vec![p0.clone()]);
    let p0_before = offsets_of(&first, t, 0);
    let next_p0 = *p0_before.last().unwrap() + 1;
    assert_eq!(p0_before, (0..next_p0).collect::<Vec<i64>>());
    assert_eq!(bounded("position", CALL, c.position(&p0)).await??, next_p0);

    // p1 keeps flowing (all 5, then 5 more produced while p0 is paused); p0 gives nothing.
    produce(&p, t, 1, 5, 5).await?;
    produce(&p, t, 0, 2, 8).await?;
    let p1_so_far = count_of(&first, t, 1);
    let during = poll_until(&c, "all ten records of p1", CALL, |r| {
        p1_so_far + count_of(r, t, 1) >= 10
    })
    .await?;
    assert!(
        offsets_of(&during, t, 0).is_empty(),
        "paused p0 returned {:?}",
        offsets_of(&during, t, 0)
    );
    let mut p1_all = offsets_of(&first, t, 1);
    p1_all.extend(offsets_of(&during, t, 1));
    assert_eq!(p1_all, (0..10).collect::<Vec<i64>>());
    assert_eq!(
        bounded("position", CALL, c.position(&p0)).await??,
        next_p0,
        "pausing does not move the position"
    );

    // Resume: p0 continues exactly where it stopped, through the records produced meanwhile.
    c.resume(std::slice::from_ref(&p0))?;
    assert!(c.paused().is_empty());
    let after = poll_until(&c, "the rest of p0", CALL, |r| {
        count_of(r, t, 0) as i64 >= 10 - next_p0
    })
    .await?;
    assert_eq!(
        offsets_of(&after, t, 0),
        (next_p0..10).collect::<Vec<i64>>()
    );
    assert!(offsets_of(&after, t, 1).is_empty());
    assert_eq!(bounded("position", CALL, c.position(&p0)).await??, 10);

    bounded("close", CALL, c.close()).await??;
    bounded("producer close", CALL, p.close()).await?;
    blocking(|| server.terminate())
}

// ---------------------------------------------------------------------------------------
// 3. manual commits
// ---------------------------------------------------------------------------------------

/// With `enable.auto.commit=false`: `commit()` stores exactly the positions, close() does
/// not commit, a new member starts at the committed offset, and `commit_async` and
/// `commit_offsets` are visible once they complete.
#[tokio::test(flavor = "multi_thread")]
async fn client_consumer_manual_commit() -> Result<()> {
    let mut server = start_server()?;
    let b = server.bootstrap().to_string();
    let admin = admin(&b).await?;
    let (t, g) = ("manual", "manual-group");
    create_topics(&admin, &[(t, 2)]).await?;
    let p = producer(&b).await?;
    produce(&p, t, 0, 20, 0).await?;
    let (p0, p1) = (tp(t, 0), tp(t, 1));
    let settings = [
        ("group.id", g),
        ("enable.auto.commit", "false"),
        ("auto.offset.reset", "earliest"),
        ("max.poll.records", "1"),
        ("fetch.max.wait.ms", "100"),
    ];

    let a = consumer(&b, &settings).await?;
    let never = bounded("committed", CALL, a.committed(&[p0.clone(), p1.clone()])).await??;
    assert_eq!(
        never,
        BTreeMap::from([(p0.clone(), None), (p1.clone(), None)])
    );
    a.subscribe(&[t])?;
    // One record per poll, so exactly 10 are taken.
    let got = poll_until(&a, "10 records", CALL, |r| r.len() >= 10).await?;
    assert_eq!(offsets_of(&got, t, 0), (0..10).collect::<Vec<i64>>());
    bounded("commit", CALL, a.commit()).await??;
    let committed = bounded("committed", CALL, a.committed(&[p0.clone(), p1.clone()])).await??;
    // p1 has no records; its position (0, from earliest) is committed too.
    assert_eq!(
        committed,
        BTreeMap::from([(p0.clone(), Some(10)), (p1.clone(), Some(0))])
    );
    // Five more records read but not committed; close() must not commit them.
    let more = poll_until(&a, "5 more records", CALL, |r| r.len() >= 5).await?;
    assert_eq!(offsets_of(&more, t, 0), (10..15).collect::<Vec<i64>>());
    bounded("close", CALL, a.close()).await??;
    assert_eq!(
        bounded("list_group_offsets", CALL, admin.list_group_offsets(g)).await??,
        BTreeMap::from([(p0.clone(), 10), (p1.clone(), 0)])
    );

    // A new member of the group starts at the committed offset 10.
    let b2 = consumer(&b, &settings).await?;
    b2.subscribe(&[t])?;
    let got = poll_until(&b2, "5 records", CALL, |r| r.len() >= 5).await?;
    assert_eq!(offsets_of(&got, t, 0), (10..15).collect::<Vec<i64>>());
    let outcome = bounded("commit_async", CALL, b2.commit_async()).await??;
    assert!(outcome.is_ok(), "commit_async: {outcome:?}");
    let committed = bounded("committed", CALL, b2.committed(std::slice::from_ref(&p0))).await??;
    assert_eq!(committed, BTreeMap::from([(p0.clone(), Some(15))]));

    // commit_offsets stores exactly what it is given (even going back).
    bounded(
        "commit_offsets",
        CALL,
        b2.commit_offsets(&BTreeMap::from([(p0.clone(), 3)])),
    )
    .await??;
    let committed = bounded("committed", CALL, b2.committed(&[p0.clone(), p1.clone()])).await??;
    assert_eq!(
        committed,
        BTreeMap::from([(p0.clone(), Some(3)), (p1.clone(), Some(0))])
    );
    bounded("close", CALL, b2.close()).await??;

    // And the next member starts there.
    let c = consumer(&b, &settings).await?;
    c.subscribe(&[t])?;
    let got = poll_until(&c, "the record at offset 3", CALL, |r| !r.is_empty()).await?;
    assert_eq!(
        got.iter().map(id).collect::<Vec<_>>(),
        vec![(t.to_string(), 0, 3)]
    );
    bounded("close", CALL, c.close()).await??;

    bounded("producer close", CALL, p.close()).await?;
    blocking(|| server.terminate())
}

// ---------------------------------------------------------------------------------------
// 4. auto-commit
// ---------------------------------------------------------------------------------------

/// With `auto.commit.interval.ms=200` the committed offsets catch up with the positions
/// without any call; with a long interval nothing is committed until close(), which
/// commits the final positions.
#[tokio::test(flavor = "multi_thread")]
async fn client_consumer_auto_commit() -> Result<()> {
    let mut server = start_server()?;
    let b = server.bootstrap().to_string();
    let admin = admin(&b).await?;
    let t = "auto";
    create_topics(&admin, &[(t, 3)]).await?;
    let p = producer(&b).await?;
    for part in 0..3 {
        produce(&p, t, part, 10, 0).await?;
    }
    let parts: Vec<TopicPartition> = (0..3).map(|i| tp(t, i)).collect();
    let ten_each: BTreeMap<TopicPartition, Option<i64>> =
        parts.iter().map(|tp| (tp.clone(), Some(10))).collect();

    // Periodic auto-commit.
    let c = consumer(
        &b,
        &[
            ("group.id", "auto-fast"),
            ("auto.commit.interval.ms", "200"),
            ("auto.offset.reset", "earliest"),
            ("fetch.max.wait.ms", "100"),
        ],
    )
    .await?;
    c.subscribe(&[t])?;
    let got = poll_until(&c, "30 records", CALL, |r| r.len() >= 30).await?;
    for part in 0..3 {
        assert_eq!(offsets_of(&got, t, part), (0..10).collect::<Vec<i64>>());
    }
    let last = Mutex::new(BTreeMap::new());
    let (cr, parts_r, last_r, want) = (&c, &parts, &last, &ten_each);
    wait_for(
        "auto-commit to reach offset 10 everywhere",
        Duration::from_secs(10),
        move || async move {
            let now = cr.committed(parts_r).await?;
            let done = now == *want;
            *last_r.lock().unwrap() = now;
            Ok(done)
        },
    )
    .await
    .with_context(|| format!("last committed: {:?}", last.lock().unwrap()))?;
    bounded("close", CALL, c.close()).await??;

    // A long interval: nothing committed while consuming; close() commits the positions.
    let c = consumer(
        &b,
        &[
            ("group.id", "auto-slow"),
            ("auto.commit.interval.ms", "600000"),
            ("auto.offset.reset", "earliest"),
            ("fetch.max.wait.ms", "100"),
        ],
    )
    .await?;
    c.subscribe(&[t])?;
    let got = poll_until(&c, "30 records", CALL, |r| r.len() >= 30).await?;
    assert_eq!(got.len(), 30);
    let before = bounded("committed", CALL, c.committed(&parts)).await??;
    assert_eq!(
        before,
        parts
            .iter()
            .map(|tp| (tp.clone(), None))
            .collect::<BTreeMap<_, _>>()
    );
    bounded("close", CALL, c.close()).await??;
    let after = bounded(
        "list_group_offsets",
        CALL,
        admin.list_group_offsets("auto-slow"),
    )
    .await??;
    assert_eq!(
        after,
        parts
            .iter()
            .map(|tp| (tp.clone(), 10))
            .collect::<BTreeMap<_, _>>()
    );

    bounded("producer close", CALL, p.close()).await?;
    blocking(|| server.terminate())
}

// ---------------------------------------------------------------------------------------
// 5. subscribe_pattern
// ---------------------------------------------------------------------------------------

/// A regex subscription takes exactly the topics whose whole name matches, including one
/// created after subscribing (found by the periodic metadata check).
#[tokio::test(flavor = "multi_thread")]
async fn client_consumer_subscribe_pattern() -> Result<()> {
    let mut server = start_server()?;
    let b = server.bootstrap().to_string();
    let admin = admin(&b).await?;
    create_topics(
        &admin,
        &[("rx-a", 2), ("rx-b", 1), ("other-c", 1), ("my-rx-a", 1)],
    )
    .await?;
    let p = producer(&b).await?;
    for (t, part) in [
        ("rx-a", 0),
        ("rx-a", 1),
        ("rx-b", 0),
        ("other-c", 0),
        ("my-rx-a", 0),
    ] {
        produce(&p, t, part, 3, 0).await?;
    }

    let c = consumer(
        &b,
        &[
            ("group.id", "rx-group"),
            ("auto.offset.reset", "earliest"),
            ("metadata.max.age.ms", "300"),
            ("heartbeat.interval.ms", "200"),
            ("session.timeout.ms", "6000"),
            ("fetch.max.wait.ms", "100"),
        ],
    )
    .await?;
    c.subscribe_pattern("rx-.*")?;
    let got = poll_until(&c, "the 9 records of rx-a and rx-b", CALL, |r| r.len() >= 9).await?;
    let want: BTreeSet<Id> = [("rx-a", 0), ("rx-a", 1), ("rx-b", 0)]
        .iter()
        .flat_map(|(t, part)| (0..3).map(move |o| (t.to_string(), *part, o)))
        .collect();
    assert_eq!(got.iter().map(id).collect::<BTreeSet<_>>(), want);
    assert_eq!(got.len(), 9);
    assert_eq!(
        set(&c),
        BTreeSet::from([tp("rx-a", 0), tp("rx-a", 1), tp("rx-b", 0)])
    );

    // Topics created later: the matching one joins the subscription, the other does not.
    create_topics(&admin, &[("rx-late", 1), ("late-other", 1)]).await?;
    produce(&p, "rx-late", 0, 2, 0).await?;
    produce(&p, "late-other", 0, 2, 0).await?;
    let got = poll_until(&c, "rx-late's records", CALL, |r| {
        count_of(r, "rx-late", 0) >= 2
    })
    .await?;
    assert_eq!(offsets_of(&got, "rx-late", 0), vec![0, 1]);
    let strays: Vec<Id> = got
        .iter()
        .filter(|r| !r.topic.starts_with("rx-"))
        .map(id)
        .collect();
    assert!(
        strays.is_empty(),
        "records of non-matching topics: {strays:?}"
    );
    assert_eq!(
        set(&c),
        BTreeSet::from([
            tp("rx-a", 0),
            tp("rx-a", 1),
            tp("rx-b", 0),
            tp("rx-late", 0)
        ])
    );

    // A bad pattern is a config error naming it.
    let e = c.subscribe_pattern("rx-(").unwrap_err();
    assert!(
        matches!(&e, Error::Config(m) if m.contains("rx-(")),
        "{e:?}"
    );

    bounded("close", CALL, c.close()).await??;
    bounded("producer close", CALL, p.close()).await?;
    blocking(|| server.terminate())
}

// ---------------------------------------------------------------------------------------
// 6. rebalances seen by a listener: cooperative-sticky and eager range
// ---------------------------------------------------------------------------------------

/// Produces one record per partition of `topic` every 20 ms until stopped; returns every
/// acknowledged (topic, partition, offset).
fn start_trickle(
    p: Arc<Producer>,
    topic: &'static str,
    partitions: i32,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<Result<BTreeSet<Id>>> {
    tokio::spawn(async move {
        let mut acked = BTreeSet::new();
        let mut i = 0u64;
        while !stop.load(Ordering::Acquire) {
            let mut futures = Vec::new();
            for part in 0..partitions {
                futures.push(
                    p.send(ProducerRecord::new(topic, format!("{i}")).partition(part))
                        .await?,
                );
            }
            for f in futures {
                let m = bounded("delivery", CALL, f).await??;
                acked.insert((m.topic, m.partition, m.offset));
            }
            i += 1;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(acked)
    })
}

/// What the two-member scenario saw: listener events (before close), final assignments,
/// every record each member's poll returned, and every record produced.
struct TwoMembers {
    a_events: Vec<Event>,
    b_events: Vec<Event>,
    a_final: BTreeSet<TopicPartition>,
    b_final: BTreeSet<TopicPartition>,
    consumed: Vec<ConsumerRecord>,
    produced: BTreeSet<Id>,
}

/// Runs the two-member scenario: A owns all 6 partitions of a topic receiving a steady
/// trickle of records, B joins, both poll and commit synchronously in their loops (with
/// auto-commit on, so revoked partitions are committed by the rebalance itself).
async fn two_members(strategy: &str, topic: &'static str, group: &str) -> Result<TwoMembers> {
    let mut server = start_server()?;
    let b = server.bootstrap().to_string();
    let admin = admin(&b).await?;
    create_topics(&admin, &[(topic, 6)]).await?;
    let p = Arc::new(producer(&b).await?);
    let stop_producing = Arc::new(AtomicBool::new(false));
    let trickle = start_trickle(p.clone(), topic, 6, stop_producing.clone());
    let settings = [
        ("group.id", group),
        ("partition.assignment.strategy", strategy),
        ("auto.offset.reset", "earliest"),
        ("heartbeat.interval.ms", "200"),
        ("session.timeout.ms", "6000"),
        ("max.poll.records", "5"),
        ("fetch.max.wait.ms", "100"),
    ];
    let everything = all_parts(topic, 6);

    let a = Arc::new(consumer(&b, &settings).await?);
    let a_listener = Arc::new(Recorder::default());
    a.set_rebalance_listener(a_listener.clone());
    a.subscribe(&[topic])?;
    let a_loop = Looper::start(a.clone(), true);
    let (a_r, a_loop_r, everything_r) = (&a, &a_loop, &everything);
    wait_for(
        "A to own all 6 partitions and consume from each",
        CALL,
        move || async move {
            a_loop_r.check_running()?;
            let seen: BTreeSet<TopicPartition> = a_loop_r
                .records()
                .iter()
                .map(|r| tp(&r.topic, r.partition))
                .collect();
            Ok(set(a_r) == *everything_r && seen == *everything_r)
        },
    )
    .await?;
    assert_eq!(
        a_listener.events(),
        vec![Event::Assigned(everything.clone())]
    );

    let bc = Arc::new(consumer(&b, &settings).await?);
    let b_listener = Arc::new(Recorder::default());
    bc.set_rebalance_listener(b_listener.clone());
    bc.subscribe(&[topic])?;
    let b_loop = Looper::start(bc.clone(), true);
    // Stable with two members holding three partitions each, and B consuming from all of
    // its partitions.
    let last = Mutex::new(None);
    let (b_r, admin_r, b_loop_r, last_r) = (&bc, &admin, &b_loop, &last);
    wait_for(
        "a stable split of 3 + 3 with B consuming",
        Duration::from_secs(60),
        move || async move {
            a_loop_r.check_running()?;
            b_loop_r.check_running()?;
            let desc = describe(admin_r, group).await?;
            let (sa, sb) = (set(a_r), set(b_r));
            let b_seen: BTreeSet<TopicPartition> = b_loop_r
                .records()
                .iter()
                .map(|r| tp(&r.topic, r.partition))
                .collect();
            let done = desc.state == "Stable"
                && desc.members.len() == 2
                && sa.len() == 3
                && sb.len() == 3
                && member_parts(&desc, &member_id(a_r)) == Some(sa.clone())
                && member_parts(&desc, &member_id(b_r)) == Some(sb.clone())
                && b_seen == sb;
            *last_r.lock().unwrap() = Some((desc.state, desc.members.len(), sa, sb, b_seen));
            Ok(done)
        },
    )
    .await
    .with_context(|| {
        format!(
            "last seen (state, members, A, B, B consumed from): {:?}",
            last.lock().unwrap()
        )
    })?;

    // Stop producing; both drain what is left.
    stop_producing.store(true, Ordering::Release);
    let produced = bounded("the producer task", CALL, trickle).await???;
    let missing = Mutex::new(0);
    let (produced_r, missing_r) = (&produced, &missing);
    wait_for(
        "A and B to consume every produced record",
        Duration::from_secs(60),
        move || async move {
            a_loop_r.check_running()?;
            b_loop_r.check_running()?;
            let seen: BTreeSet<Id> = a_loop_r
                .records()
                .iter()
                .chain(b_loop_r.records().iter())
                .map(id)
                .collect();
            let n = produced_r.difference(&seen).count();
            *missing_r.lock().unwrap() = n;
            Ok(n == 0)
        },
    )
    .await
    .with_context(|| {
        format!(
            "{} of {} records never consumed",
            missing.lock().unwrap(),
            produced.len()
        )
    })?;
    let (a_final, b_final) = (set(&a), set(&bc));
    let (a_events, b_events) = (a_listener.events(), b_listener.events());
    let (a, a_records) = a_loop.stop().await?;
    let (bc, b_records) = b_loop.stop().await?;
    bounded("close A", CALL, a.close()).await??;
    bounded("close B", CALL, bc.close()).await??;
    bounded("producer close", CALL, p.close()).await?;
    blocking(|| server.terminate())?;
    let mut consumed = a_records;
    consumed.extend(b_records);
    Ok(TwoMembers {
        a_events,
        b_events,
        a_final,
        b_final,
        consumed,
        produced,
    })
}

/// Checks the assignment invariant and that every produced record was consumed exactly
/// once across the two members.
fn check_split_and_records(run: &TwoMembers, topic: &str) -> Result<()> {
    ensure!(
        run.a_final.is_disjoint(&run.b_final),
        "A {:?} and B {:?} overlap",
        run.a_final,
        run.b_final
    );
    let union: BTreeSet<TopicPartition> = run.a_final.union(&run.b_final).cloned().collect();
    ensure!(
        union == all_parts(topic, 6),
        "A {:?} + B {:?} do not cover 6 partitions",
        run.a_final,
        run.b_final
    );
    let mut seen: BTreeMap<Id, usize> = BTreeMap::new();
    for r in &run.consumed {
        *seen.entry(id(r)).or_default() += 1;
    }
    let strangers: Vec<&Id> = seen.keys().filter(|i| !run.produced.contains(*i)).collect();
    ensure!(
        strangers.is_empty(),
        "consumed records that were never produced: {strangers:?}"
    );
    let twice: Vec<(&Id, &usize)> = seen.iter().filter(|(_, n)| **n > 1).collect();
    ensure!(
        twice.is_empty(),
        "{} of {} records consumed more than once: {:?}",
        twice.len(),
        run.produced.len(),
        &twice[..twice.len().min(20)]
    );
    Ok(())
}

/// Cooperative-sticky: when B joins, A gives up exactly the partitions that move to B and
/// keeps the rest (never a full revoke); B is assigned exactly those; no record is
/// consumed twice.
#[tokio::test(flavor = "multi_thread")]
async fn client_consumer_cooperative_rebalance() -> Result<()> {
    let topic = "coop";
    let run = two_members("cooperative-sticky", topic, "coop-group").await?;
    check_split_and_records(&run, topic)?;
    let everything = all_parts(topic, 6);
    // A: assigned everything; then one revoke of exactly what B got (plus assignments of
    // nothing new, as cooperative rounds report).
    let mut a_revoked = Vec::new();
    for (i, e) in run.a_events.iter().enumerate() {
        match e {
            Event::Assigned(s) if i == 0 => ensure!(*s == everything, "A's first assignment {s:?}"),
            Event::Assigned(s) => ensure!(
                s.is_empty(),
                "A was assigned {s:?} later: {:?}",
                run.a_events
            ),
            Event::Revoked(s) => {
                ensure!(
                    s.len() < 6,
                    "cooperative A saw a full revoke: {:?}",
                    run.a_events
                );
                a_revoked.push(s.clone());
            }
            Event::Lost(s) => bail!("A lost {s:?}: {:?}", run.a_events),
        }
    }
    ensure!(
        a_revoked == vec![run.b_final.clone()],
        "A revoked {a_revoked:?}, want exactly B's {:?} once",
        run.b_final
    );
    // B: only assignments, whose union is its final set, each partition once.
    let mut b_assigned: Vec<TopicPartition> = Vec::new();
    for e in &run.b_events {
        match e {
            Event::Assigned(s) => b_assigned.extend(s.iter().cloned()),
            other => bail!("B saw {other:?}: {:?}", run.b_events),
        }
    }
    b_assigned.sort();
    ensure!(
        b_assigned == run.b_final.iter().cloned().collect::<Vec<_>>(),
        "B was assigned {b_assigned:?}, owns {:?}",
        run.b_final
    );
    Ok(())
}

/// Eager `range`: when B joins, A's listener sees everything it had revoked, then its
/// new range; B gets the other range.
#[tokio::test(flavor = "multi_thread")]
async fn client_consumer_eager_range_rebalance() -> Result<()> {
    let topic = "eager";
    let run = two_members("range", topic, "eager-group").await?;
    check_split_and_records(&run, topic)?;
    let everything = all_parts(topic, 6);
    // Range sorts member ids: whichever sorts first gets partitions 0..3.
    let low: BTreeSet<TopicPartition> = (0..3).map(|p| tp(topic, p)).collect();
    let high: BTreeSet<TopicPartition> = (3..6).map(|p| tp(topic, p)).collect();
    ensure!(
        (run.a_final == low && run.b_final == high) || (run.a_final == high && run.b_final == low),
        "range split A {:?} B {:?}",
        run.a_final,
        run.b_final
    );
    ensure!(
        run.a_events
            == vec![
                Event::Assigned(everything.clone()),
                Event::Revoked(everything),
                Event::Assigned(run.a_final.clone())
            ],
        "A's events: {:?}",
        run.a_events
    );
    ensure!(
        run.b_events == vec![Event::Assigned(run.b_final.clone())],
        "B's events: {:?}",
        run.b_events
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 7. liveness while the application is busy
// ---------------------------------------------------------------------------------------

/// Two-member liveness settings: 6 s session, 500 ms heartbeats.
fn liveness_settings<'a>(group: &'a str, max_poll_ms: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("group.id", group),
        ("auto.offset.reset", "earliest"),
        ("session.timeout.ms", "6000"),
        ("heartbeat.interval.ms", "500"),
        ("max.poll.interval.ms", max_poll_ms),
        ("fetch.max.wait.ms", "100"),
    ]
}

/// A stays a member while it does not poll for 10 s (longer than the session timeout, well
/// within max.poll.interval.ms), because heartbeats are sent in the background. B joins
/// meanwhile; as in the Java client, that rebalance completes only when A polls again, so
/// A never processes records it no longer owns. Then each has half the partitions, and
/// A continues from where it left off, without losing partitions.
#[tokio::test(flavor = "multi_thread")]
async fn client_consumer_heartbeats_while_busy() -> Result<()> {
    let mut server = start_server()?;
    let b = server.bootstrap().to_string();
    let admin = admin(&b).await?;
    let (t, g) = ("busy", "busy-group");
    create_topics(&admin, &[(t, 6)]).await?;
    let p = producer(&b).await?;
    for part in 0..6 {
        produce(&p, t, part, 5, 0).await?;
    }
    let settings = liveness_settings(g, "30000");

    let a = consumer(&b, &settings).await?;
    let a_listener = Arc::new(Recorder::default());
    a.set_rebalance_listener(a_listener.clone());
    a.subscribe(&[t])?;
    let got = poll_until(&a, "all 30 records", CALL, |r| r.len() >= 30).await?;
    assert_eq!(got.iter().map(id).collect::<BTreeSet<_>>().len(), 30);
    // From here on A does not poll for 10 s.
    let busy_from = Instant::now();
    let a_id = member_id(&a);
    assert!(!a_id.is_empty());

    let bc = Arc::new(consumer(&b, &settings).await?);
    bc.subscribe(&[t])?;
    let b_loop = Looper::start(bc.clone(), false);
    while busy_from.elapsed() < Duration::from_secs(10) {
        b_loop.check_running()?;
        let desc = describe(&admin, g).await?;
        let ids: BTreeSet<&str> = desc.members.iter().map(|m| m.member_id.as_str()).collect();
        // The heartbeat keeps A in the group past session.timeout.ms; as in the Java
        // client, the rebalance B started completes only when A polls again.
        ensure!(
            ids.contains(a_id.as_str()),
            "A ({a_id}) dropped out of the group after {:?}: {desc:?}",
            busy_from.elapsed()
        );
        ensure!(
            !(desc.state == "Stable" && desc.members.len() == 2),
            "the rebalance completed while A was busy (A would process records it no longer owns): {desc:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // A polls again: the rebalance completes with both members, 3 partitions each, and
    // A continues from where it was (its positions were committed when it revoked).
    for part in 0..6 {
        produce(&p, t, part, 5, 5).await?;
    }
    let got = poll_until(&a, "15 new records for A", CALL, |r| r.len() >= 15).await?;
    let desc = describe(&admin, g).await?;
    ensure!(desc.state == "Stable" && desc.members.len() == 2, "{desc:?}");
    let a_parts = member_parts(&desc, &a_id).unwrap();
    let b_parts =
        member_parts(&desc, &member_id(&bc)).ok_or_else(|| anyhow!("B not in {desc:?}"))?;
    assert_eq!((a_parts.len(), b_parts.len()), (3, 3), "{desc:?}");
    assert_eq!(set(&a), a_parts);
    assert_eq!(set(&bc), b_parts);
    assert_eq!(
        a_parts.union(&b_parts).cloned().collect::<BTreeSet<_>>(),
        all_parts(t, 6)
    );
    for tp in &a_parts {
        assert_eq!(
            offsets_of(&got, &tp.topic, tp.partition),
            (5..10).collect::<Vec<i64>>(),
            "{tp}"
        );
    }
    assert_eq!(got.len(), 15);
    assert_eq!(member_id(&a), a_id, "A kept its member id");
    let events = a_listener.events();
    assert!(
        !events.iter().any(|e| matches!(e, Event::Lost(_))),
        "A lost partitions: {events:?}"
    );
    let (b_loop_r, b_parts_r) = (&b_loop, &b_parts);
    wait_for(
        "B to consume its 15 new records",
        CALL,
        move || async move {
            Ok(b_parts_r
                .iter()
                .all(|tp| offsets_of(&b_loop_r.records(), &tp.topic, tp.partition).contains(&9)))
        },
    )
    .await?;
    let (bc, b_records) = b_loop.stop().await?;
    for tp in &b_parts {
        assert_eq!(
            offsets_of(&b_records, &tp.topic, tp.partition),
            (5..10).collect::<Vec<i64>>(),
            "{tp}"
        );
    }

    bounded("close A", CALL, a.close()).await??;
    bounded("close B", CALL, bc.close()).await??;
    bounded("producer close", CALL, p.close()).await?;
    blocking(|| server.terminate())
}

// ---------------------------------------------------------------------------------------
// 8. max.poll.interval.ms exceeded
// ---------------------------------------------------------------------------------------

/// A member that does not poll within `max.poll.interval.ms` leaves the group (its
/// partitions go to B, its listener sees them revoked), and its next poll rejoins.
#[tokio::test(flavor = "multi_thread")]
async fn client_consumer_max_poll_interval_exceeded() -> Result<()> {
    let mut server = start_server()?;
    let b = server.bootstrap().to_string();
    let admin = admin(&b).await?;
    let (t, g) = ("slow", "slow-group");
    create_topics(&admin, &[(t, 6)]).await?;
    let p = producer(&b).await?;
    for part in 0..6 {
        produce(&p, t, part, 5, 0).await?;
    }
    let settings = liveness_settings(g, "2000");

    let a = Arc::new(consumer(&b, &settings).await?);
    let a_listener = Arc::new(Recorder::default());
    a.set_rebalance_listener(a_listener.clone());
    a.subscribe(&[t])?;
    let bc = Arc::new(consumer(&b, &settings).await?);
    bc.subscribe(&[t])?;
    let b_loop = Looper::start(bc.clone(), false);
    // A polls (in the background) until the group is stable with both members.
    let a_loop = Looper::start(a.clone(), false);
    let (a_r, b_r, admin_r, a_loop_r, b_loop_r) = (&a, &bc, &admin, &a_loop, &b_loop);
    wait_for("a stable group of A and B", CALL, move || async move {
        a_loop_r.check_running()?;
        b_loop_r.check_running()?;
        let desc = describe(admin_r, g).await?;
        Ok(desc.state == "Stable"
            && desc.members.len() == 2
            && member_parts(&desc, &member_id(a_r)).is_some_and(|s| s.len() == 3)
            && member_parts(&desc, &member_id(b_r)).is_some_and(|s| s.len() == 3))
    })
    .await?;
    let a_last_poll = a_loop.last_poll_start.clone();
    let (a, _) = a_loop.stop().await?;
    // The poll interval runs from A's last poll call, which began before the loop stopped.
    let stopped_at = *a_last_poll.lock().unwrap();
    let (a_id, b_id) = (member_id(&a), member_id(&bc));
    let a_had = set(&a);
    assert_eq!(a_had.len(), 3);
    a_listener.events.lock().unwrap().clear();

    // A stops polling: after max.poll.interval.ms it leaves and B takes everything.
    let last: Mutex<Option<GroupDescription>> = Mutex::new(None);
    let (b_id_r, last_r) = (&b_id, &last);
    wait_for(
        "B alone in the group with all 6 partitions",
        Duration::from_secs(15),
        move || async move {
            b_loop_r.check_running()?;
            let desc = describe(admin_r, g).await?;
            let done = desc.state == "Stable"
                && desc.members.len() == 1
                && member_parts(&desc, b_id_r) == Some(all_parts(t, 6))
                && set(b_r) == all_parts(t, 6);
            *last_r.lock().unwrap() = Some(desc);
            Ok(done)
        },
    )
    .await
    .with_context(|| format!("last: {:?}", last.lock().unwrap()))?;
    let left_after = stopped_at.elapsed();
    ensure!(
        left_after >= Duration::from_secs(2),
        "A left after only {left_after:?}, before max.poll.interval.ms"
    );
    ensure!(last
        .lock()
        .unwrap()
        .as_ref()
        .unwrap()
        .members
        .iter()
        .all(|m| m.member_id != a_id));
    assert!(
        a.assignment().is_empty(),
        "A still thinks it owns {:?}",
        a.assignment()
    );
    assert_eq!(
        a_listener.events(),
        vec![Event::Revoked(a_had.clone())],
        "leaving is an orderly revoke"
    );
    // Keep A idle to 5 s in all, as an application stuck in a slow step would be.
    let idle = Duration::from_secs(5).saturating_sub(stopped_at.elapsed());
    tokio::time::sleep(idle).await;

    // Meanwhile B consumed up to offset 5 everywhere (A's partitions from where A's
    // commits left them).
    wait_for(
        "B to reach offset 5 on all 6 partitions",
        CALL,
        move || async move {
            for part in 0..6 {
                if b_r.position(&tp(t, part)).await? != 5 {
                    return Ok(false);
                }
            }
            Ok(true)
        },
    )
    .await?;

    // A's next poll rejoins: it gets half the partitions again, starting where B (which
    // committed its positions when the rejoin revoked them: eager, auto-commit) stopped,
    // so nothing old comes back.
    a_listener.events.lock().unwrap().clear();
    let rejoined = poll_until(&a, "A to rejoin with 3 partitions", CALL, |_| {
        set(&a).len() == 3
    })
    .await?;
    let a_now = set(&a);
    let new_id = member_id(&a);
    assert_ne!(new_id, a_id, "A rejoined as a new member");
    let (new_id_r, a_now_r) = (&new_id, &a_now);
    wait_for(
        "the group to be stable with A and B",
        CALL,
        move || async move {
            let desc = describe(admin_r, g).await?;
            Ok(desc.state == "Stable"
                && desc.members.len() == 2
                && member_parts(&desc, new_id_r).as_ref() == Some(a_now_r))
        },
    )
    .await?;
    for part in 0..6 {
        produce(&p, t, part, 2, 5).await?;
    }
    let mut got = poll_until(&a, "6 new records for A", CALL, |r| {
        rejoined.len() + r.len() >= 6
    })
    .await?;
    got.extend(rejoined);
    for tp in &a_now {
        assert_eq!(
            offsets_of(&got, &tp.topic, tp.partition),
            vec![5, 6],
            "{tp}"
        );
    }
    assert_eq!(got.len(), 6, "{:?}", got.iter().map(id).collect::<Vec<_>>());
    let events = a_listener.events();
    assert_eq!(
        events,
        vec![Event::Assigned(a_now.clone())],
        "A's events on rejoining"
    );

    let (bc, _) = b_loop.stop().await?;
    bounded("close A", CALL, a.close()).await??;
    bounded("close B", CALL, bc.close()).await??;
    bounded("producer close", CALL, p.close()).await?;
    blocking(|| server.terminate())
}

// ---------------------------------------------------------------------------------------
// 9. auto.offset.reset=none
// ---------------------------------------------------------------------------------------

/// Without a committed offset and with `auto.offset.reset=none`, poll fails naming the
/// partition (and keeps failing until the application seeks); partitions with a commit
/// are unaffected; after a seek consumption proceeds.
#[tokio::test(flavor = "multi_thread")]
async fn client_consumer_offset_reset_none() -> Result<()> {
    let mut server = start_server()?;
    let b = server.bootstrap().to_string();
    let admin = admin(&b).await?;
    let (t, g) = ("noreset", "noreset-group");
    create_topics(&admin, &[(t, 2)]).await?;
    let p = producer(&b).await?;
    produce(&p, t, 0, 4, 0).await?;
    produce(&p, t, 1, 4, 0).await?;
    let (p0, p1) = (tp(t, 0), tp(t, 1));
    bounded(
        "alter_group_offsets",
        CALL,
        admin.alter_group_offsets(g, &BTreeMap::from([(p0.clone(), 1)])),
    )
    .await??;

    let settings = [
        ("group.id", g),
        ("auto.offset.reset", "none"),
        ("enable.auto.commit", "false"),
        ("fetch.max.wait.ms", "100"),
    ];
    let c = consumer(&b, &settings).await?;
    c.assign(&[p0.clone(), p1.clone()])?;
    for attempt in 0..2 {
        let outcome = bounded("poll", CALL, c.poll(Duration::from_secs(10))).await?;
        match outcome {
            Err(Error::State(m)) => assert!(
                m.contains("noreset-1")
                    && !m.contains("noreset-0")
                    && m.contains("auto.offset.reset"),
                "poll #{attempt}: {m}"
            ),
            other => bail!("poll #{attempt}: want an error naming noreset-1, got {other:?}"),
        }
    }
    let e = bounded("position", CALL, c.position(&p1))
        .await?
        .unwrap_err();
    assert!(
        matches!(&e, Error::State(m) if m.contains("noreset-1")),
        "{e:?}"
    );

    // The application handles the error, taking its time (longer than the fetcher's 1 s
    // idle cycle, so the consumer looks for the offset again meanwhile), then seeks: no
    // error found before the seek may surface after it.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    c.seek(&p1, 2)?;
    let got = poll_until(&c, "p0 from 1 and p1 from 2", CALL, |r| r.len() >= 5).await?;
    assert_eq!(offsets_of(&got, t, 0), vec![1, 2, 3]);
    assert_eq!(offsets_of(&got, t, 1), vec![2, 3]);
    bounded("close", CALL, c.close()).await??;

    // The same through a subscription: the error names the partition without a commit.
    let c = consumer(&b, &settings).await?;
    c.subscribe(&[t])?;
    let outcome = bounded("poll", CALL, c.poll(Duration::from_secs(10))).await?;
    assert!(
        matches!(&outcome, Err(Error::State(m)) if m.contains("noreset-1")),
        "{outcome:?}"
    );
    bounded("close", CALL, c.close()).await??;

    bounded("producer close", CALL, p.close()).await?;
    blocking(|| server.terminate())
}

// ---------------------------------------------------------------------------------------
// 10. configuration errors
// ---------------------------------------------------------------------------------------

fn config_error<T>(r: samsa_client::Result<T>) -> String {
    match r {
        Err(Error::Config(m)) => m,
        Err(other) => panic!("want Error::Config, got {other:?}"),
        Ok(_) => panic!("want Error::Config, got Ok"),
    }
}

/// Bad configuration fails before any network I/O, naming the key and the value; a
/// group operation without `group.id` fails with a config error naming `group.id`.
#[tokio::test(flavor = "multi_thread")]
async fn client_consumer_config_errors() -> Result<()> {
    // No server is needed for these: they fail while parsing.
    let m = config_error(ConsumerConfig::from_properties([
        ("bootstrap.servers", "127.0.0.1:1"),
        ("fetch.max.wait", "100"),
    ]));
    assert!(
        m.contains("`fetch.max.wait`") && m.contains("fetch.max.wait.ms"),
        "{m}"
    );
    let m = config_error(
        Consumer::from_properties([("bootstrap.servers", "127.0.0.1:1"), ("group.idd", "g")]).await,
    );
    assert!(m.contains("`group.idd`"), "{m}");
    let m = config_error(ConsumerConfig::from_properties([(
        "partition.assignment.strategy",
        "foo",
    )]));
    assert!(
        m.contains("partition.assignment.strategy")
            && m.contains("`foo`")
            && m.contains("cooperative-sticky"),
        "{m}"
    );
    let m = config_error(ConsumerConfig::from_properties([(
        "partition.assignment.strategy",
        "range, bar",
    )]));
    assert!(m.contains("`bar`"), "{m}");
    let m = config_error(ConsumerConfig::from_properties([(
        "auto.offset.reset",
        "oldest",
    )]));
    assert!(
        m.contains("auto.offset.reset") && m.contains("oldest"),
        "{m}"
    );
    let m = config_error(ConsumerConfig::from_properties([(
        "isolation.level",
        "serializable",
    )]));
    assert!(
        m.contains("isolation.level") && m.contains("serializable"),
        "{m}"
    );
    let m = config_error(ConsumerConfig::from_properties([(
        "session.timeout.ms",
        "soon",
    )]));
    assert!(m.contains("session.timeout.ms"), "{m}");
    // Java class names are accepted for the strategy.
    let c = ConsumerConfig::from_properties([(
        "partition.assignment.strategy",
        "org.apache.kafka.clients.consumer.CooperativeStickyAssignor",
    )])
    .map_err(|e| anyhow!("{e}"))?;
    assert_eq!(
        c.assignors,
        vec![samsa_client::consumer::Assignor::CooperativeSticky]
    );

    let mut server = start_server()?;
    let b = server.bootstrap().to_string();
    let m = config_error(
        Consumer::from_properties([
            ("bootstrap.servers", b.as_str()),
            ("session.timeout.ms", "3000"),
            ("heartbeat.interval.ms", "3000"),
        ])
        .await,
    );
    assert!(
        m.contains("heartbeat.interval.ms") && m.contains("session.timeout.ms"),
        "{m}"
    );

    // Group operations without group.id.
    let c = consumer(&b, &[]).await?;
    let m = config_error(c.subscribe(&["t"]));
    assert!(m.contains("group.id"), "{m}");
    let m = config_error(c.subscribe_pattern("t.*"));
    assert!(m.contains("group.id"), "{m}");
    let m = config_error(bounded("committed", CALL, c.committed(&[tp("t", 0)])).await?);
    assert!(m.contains("group.id"), "{m}");
    let m = config_error(
        bounded(
            "commit_offsets",
            CALL,
            c.commit_offsets(&BTreeMap::from([(tp("t", 0), 1)])),
        )
        .await?,
    );
    assert!(m.contains("group.id"), "{m}");
    assert!(c.assignment().is_empty());
    bounded("close", CALL, c.close()).await??;

    blocking(|| server.terminate())
}

// ---------------------------------------------------------------------------------------
// 11. read_committed
// ---------------------------------------------------------------------------------------

/// `isolation.level=read_committed` is accepted and, with no transactions, reads every
/// record; the end position is the log end.
#[tokio::test(flavor = "multi_thread")]
async fn client_consumer_read_committed() -> Result<()> {
    let mut server = start_server()?;
    let b = server.bootstrap().to_string();
    let admin = admin(&b).await?;
    let t = "rc";
    create_topics(&admin, &[(t, 2)]).await?;
    let p = producer(&b).await?;
    produce(&p, t, 0, 10, 0).await?;
    produce(&p, t, 1, 7, 0).await?;

    let c = consumer(
        &b,
        &[
            ("group.id", "rc-group"),
            ("isolation.level", "read_committed"),
            ("auto.offset.reset", "earliest"),
            ("fetch.max.wait.ms", "100"),
        ],
    )
    .await?;
    assert_eq!(c.config().isolation_level, IsolationLevel::ReadCommitted);
    c.subscribe(&[t])?;
    let got = poll_until(&c, "17 records", CALL, |r| r.len() >= 17).await?;
    assert_eq!(offsets_of(&got, t, 0), (0..10).collect::<Vec<i64>>());
    assert_eq!(offsets_of(&got, t, 1), (0..7).collect::<Vec<i64>>());
    assert_eq!(got.len(), 17);
    let first = got
        .iter()
        .find(|r| r.partition == 1 && r.offset == 3)
        .unwrap();
    assert_eq!(first.value.as_deref(), Some(&b"rc-1-3"[..]));
    // Records produced later are visible too (the last stable offset follows the end).
    produce(&p, t, 1, 2, 7).await?;
    let got = poll_until(&c, "2 more records", CALL, |r| r.len() >= 2).await?;
    assert_eq!(offsets_of(&got, t, 1), vec![7, 8]);
    // seek_to_end under read_committed finds the end (ListOffsets at the LSO).
    c.seek_to_end(&[tp(t, 0), tp(t, 1)])?;
    assert_eq!(bounded("position", CALL, c.position(&tp(t, 0))).await??, 10);
    assert_eq!(bounded("position", CALL, c.position(&tp(t, 1))).await??, 9);

    bounded("close", CALL, c.close()).await??;
    bounded("producer close", CALL, p.close()).await?;
    blocking(|| server.terminate())
}
