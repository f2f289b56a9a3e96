//! Samsa's async Rust client (`samsa_client`) side by side with other Kafka clients on one
//! `samsa server`:
//!
//! 1. **Group interop**: a Samsa consumer (on this test's tokio runtime), a kafka-python
//!    consumer and a confluent-kafka consumer (`tests/clients/client_interop_member.py`)
//!    share one consumer group on a 6-partition topic. Each client keeps its default
//!    assignor list (Samsa: range, cooperative-sticky; kafka-python: range, roundrobin;
//!    librdkafka: range, roundrobin), so the group must settle on `range`. Asserted: the
//!    stable group splits the partitions exactly (each member's own view, and
//!    DescribeGroups, agree); every record is consumed exactly once; a clean leave of the
//!    kafka-python member, in the middle of a stream, hands its partitions to the others
//!    with no record lost or duplicated; the committed offsets end at the log end.
//! 2. **Codec interop, others write, Samsa reads**: for none, gzip, snappy, lz4 and zstd,
//!    kcat and confluent-kafka produce compressed batches (keys, NULL keys, tombstones,
//!    several / empty / NULL headers, explicit timestamps where the tool allows);
//!    Samsa's consumer reads every record with its key, value, headers (in order) and
//!    timestamp, and the batches on disk carry the codec. Header names are distinct:
//!    kafka-protocol's decoded `Record` keeps headers in a map, so a repeated name keeps
//!    only its last value (a known limit, ARCHITECTURE.md).
//!    (kcat's bundled librdkafka 2.0.2 sends gzip, snappy and lz4 uncompressed to any
//!    broker without Produce v0-v2, Kafka 4 included: confluentinc/librdkafka#4956. The
//!    test recognises librdkafka's own log line for that; confluent-kafka 2.16 compresses
//!    every codec.)
//!
//! ## Exactly once in the group test
//!
//! A member reports a record (a `CONSUMED` line, or the Samsa member's log) only after the
//! synchronous commit covering it succeeded; a batch whose commit fails is not reported
//! and its partitions are rewound, so it comes again (here, or to the partition's next
//! owner). "Exactly once" is then checked on reports: each record reported once, none
//! missing. This holds through a rebalance only if no member commits a batch after the
//! group moved on and another member already fetched from the older committed offset:
//!
//! * kafka-python and confluent-kafka rebalance inside `poll()`/`consume()` (librdkafka
//!   waits for the application to take the revocation), and the loop commits before it
//!   polls again, so a revocation always finds the previous batch committed; that commit
//!   lands while the group prepares the rebalance, when the coordinator still accepts the
//!   old generation.
//! * Samsa's consumer rebalances on its background task, independently of `poll()`: it
//!   can revoke (and the group can reassign) a partition while the application still
//!   holds a polled batch. The batch's later `commit_offsets` is then sent with the
//!   member's *new* generation and is accepted, even for a partition that moved to a
//!   member which already re-read it from the older committed offset: a duplicate with
//!   both commits successful (observed: a batch polled in generation 1 and committed
//!   after a second member joined was accepted in generation 2). Java cannot do this, as
//!   its rebalance runs inside `poll()`. The Samsa member therefore runs
//!   its poll -> process -> commit cycle under a batch lock, and its
//!   `RebalanceListener::on_partitions_revoked` takes that lock (blocking the group task
//!   until the batch in hand is committed) and raises a "rebalancing" flag; the loop does
//!   not poll while the flag is up, so nothing left in a revoked partition's buffer is
//!   processed; `on_partitions_assigned` lowers it. The revocation runs before this
//!   member's JoinGroup, so the generation cannot complete while the batch is uncommitted.
//!
//! Every wait is bounded; every await has a timeout.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, ensure, Context, Result};
use samsa_client::admin::{Admin, GroupDescription, NewTopic, OffsetSpec};
use samsa_client::{
    Consumer, ConsumerRecord, Producer, ProducerConfig, ProducerRecord, RebalanceListener,
    TopicPartition,
};
use samsa_tests::{blocking, bounded, segment_batches, kcat, python, run_python, BackgroundClient, ClientOutput, SamsaServer};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// Runs `check` every 50 ms until it returns `Ok(Ok(value))`. `Ok(Err(why))` means "not
/// yet" (the last `why` is shown on timeout); `Err` fails at once.
async fn wait_for<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<std::result::Result<T, String>>>,
{
    let deadline = Instant::now() + limit;
    loop {
        let why = match check().await? {
            Ok(v) => return Ok(v),
            Err(why) => why,
        };
        ensure!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}; last state: {why}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The encoding of `read_partitions.py` and `client_interop_produce.py`: `x` + hex,
/// or `-` for NULL.
fn enc(b: Option<&[u8]>) -> String {
    match b {
        Some(b) => format!("x{}", hex(b)),
        None => "-".into(),
    }
}

fn enc_headers(headers: &[(String, Option<bytes::Bytes>)]) -> String {
    if headers.is_empty() {
        return "-".into();
    }
    headers
        .iter()
        .map(|(k, v)| format!("{k}={}", enc(v.as_deref())))
        .collect::<Vec<_>>()
        .join(",")
}

/// Creates a topic and waits until its metadata shows every partition with a leader.
async fn create_topic(admin: &Admin, name: &str, partitions: i32) -> Result<()> {
    bounded(
        "create_topics",
        Duration::from_secs(30),
        admin.create_topics(&[NewTopic::new(name, partitions, 1)]),
    )
    .await?
    .with_context(|| format!("creating {name}"))?;
    wait_for(
        &format!("{name} metadata"),
        Duration::from_secs(30),
        || async {
            let info = bounded(
                "describe_topics",
                Duration::from_secs(30),
                admin.describe_topics(&[name.to_string()]),
            )
            .await?;
            Ok(match info {
                Ok(t)
                    if t[0].partitions.len() == partitions as usize
                        && t[0].partitions.iter().all(|p| p.leader >= 0) =>
                {
                    Ok(())
                }
                other => Err(format!("{other:?}")),
            })
        },
    )
    .await
}

// ---------------------------------------------------------------------------------------
// 1. Group interop: Samsa + kafka-python + confluent-kafka in one group
// ---------------------------------------------------------------------------------------

const SAMSA: &str = "interop-samsa";
const KAFKA_PYTHON: &str = "interop-kafka-python";
const CONFLUENT: &str = "interop-confluent";
const GROUP_PARTITIONS: i32 = 6;
/// Records per phase (spread evenly over the partitions).
const PHASE: usize = 600;

/// One consumed record as a member reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Consumed {
    partition: i32,
    offset: i64,
    id: usize,
}

/// What a member reported so far.
#[derive(Debug, Clone, Default)]
struct Report {
    /// Its latest assignment (partitions of the test topic).
    assignment: Option<BTreeSet<i32>>,
    /// Records covered by a successful commit, in order.
    consumed: Vec<Consumed>,
    /// Commits that failed (their batches were not reported).
    commit_failures: Vec<String>,
    /// The member closed.
    closed: bool,
    /// Why the Samsa member's loop ended early.
    error: Option<String>,
}

/// Parses a Python member's OUT_FILE (see `client_interop_member.py`); a trailing line
/// without its newline is still being written and is left for the next read.
fn parse_report(text: &str) -> Result<Report> {
    let complete = match text.rfind('\n') {
        Some(i) => &text[..=i],
        None => "",
    };
    let mut r = Report::default();
    for line in complete.lines() {
        let (kind, rest) = line.split_once(' ').unwrap_or((line, ""));
        match kind {
            "ASSIGNED" => {
                r.assignment = Some(if rest == "-" {
                    BTreeSet::new()
                } else {
                    rest.split(',')
                        .map(|p| p.parse::<i32>())
                        .collect::<Result<_, _>>()
                        .with_context(|| format!("bad line {line:?}"))?
                })
            }
            "CONSUMED" => {
                let f: Vec<&str> = rest.split(' ').collect();
                ensure!(f.len() == 3, "bad line {line:?}");
                r.consumed.push(Consumed {
                    partition: f[0].parse().with_context(|| format!("bad line {line:?}"))?,
                    offset: f[1].parse().with_context(|| format!("bad line {line:?}"))?,
                    id: f[2].parse().with_context(|| format!("bad line {line:?}"))?,
                });
            }
            "COMMIT_FAILED" => r.commit_failures.push(rest.to_string()),
            "CLOSED" => r.closed = true,
            _ => bail!("unexpected member line {line:?}"),
        }
    }
    Ok(r)
}

/// A kafka-python or confluent-kafka member running `client_interop_member.py`.
struct PyMember {
    name: &'static str,
    out: PathBuf,
    stop: PathBuf,
    process: Option<BackgroundClient>,
}

impl PyMember {
    fn spawn(
        client: &str,
        name: &'static str,
        bootstrap: &str,
        topic: &str,
        group: &str,
        dir: &Path,
    ) -> Result<PyMember> {
        let out = dir.join(format!("{client}.out"));
        let stop = dir.join(format!("{client}.stop"));
        let process = python("client_interop_member.py")?
            .args([
                client,
                bootstrap,
                topic,
                group,
                out.to_str().expect("utf-8 temp path"),
                stop.to_str().expect("utf-8 temp path"),
            ])
            .spawn()?;
        Ok(PyMember {
            name,
            out,
            stop,
            process: Some(process),
        })
    }

    /// Everything it reported so far (also after it exited).
    fn report(&self) -> Result<Report> {
        match std::fs::read_to_string(&self.out) {
            Ok(text) => parse_report(&text).with_context(|| format!("{} report", self.name)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Report::default()),
            Err(e) => Err(e).with_context(|| format!("reading {}", self.out.display())),
        }
    }

    /// Fails (with the client's output) when the process exited before being told to.
    fn check_alive(&mut self) -> Result<()> {
        if let Some(p) = self.process.as_mut() {
            if p.has_exited()? {
                let p = self.process.take().expect("checked");
                let outcome = p.wait(Duration::from_secs(5));
                bail!("{} exited before it was stopped: {outcome:?}", self.name);
            }
        }
        Ok(())
    }

    /// Tells it to stop (it finishes its batch, closes and leaves the group) and waits
    /// for a clean exit.
    fn stop(&mut self, limit: Duration) -> Result<ClientOutput> {
        std::fs::write(&self.stop, b"stop")?;
        let p = self
            .process
            .take()
            .ok_or_else(|| anyhow!("{} is not running", self.name))?;
        p.wait(limit)
    }
}

/// Lets the Samsa member's rebalance listener wait for the batch in hand (see the module
/// documentation).
#[derive(Default)]
struct Gate {
    /// Held from poll until the batch's commit finished.
    batch: tokio::sync::Mutex<()>,
    /// Between a revocation and the next assignment: the loop does not poll.
    rebalancing: AtomicBool,
    assigned: Notify,
    revocations: AtomicUsize,
    assignments: AtomicUsize,
}

struct GateListener(Arc<Gate>);

impl RebalanceListener for GateListener {
    fn on_partitions_revoked(&self, _partitions: &[TopicPartition]) {
        // Called on the consumer's group task before it rejoins: wait (off the async
        // workers) until the loop has committed the batch it holds.
        tokio::task::block_in_place(|| {
            let _batch = self.0.batch.blocking_lock();
            self.0.rebalancing.store(true, Ordering::SeqCst);
        });
        self.0.revocations.fetch_add(1, Ordering::SeqCst);
    }

    fn on_partitions_assigned(&self, _partitions: &[TopicPartition]) {
        self.0.assignments.fetch_add(1, Ordering::SeqCst);
        self.0.rebalancing.store(false, Ordering::SeqCst);
        self.0.assigned.notify_waiters();
    }
}

/// The Samsa member: its consumer, a loop task and what the loop reported.
struct SamsaMember {
    consumer: Arc<Consumer>,
    topic: String,
    gate: Arc<Gate>,
    stop: Arc<AtomicBool>,
    report: Arc<Mutex<Report>>,
    task: Option<JoinHandle<Result<()>>>,
}

impl SamsaMember {
    async fn start(bootstrap: &str, topic: &str, group: &str) -> Result<SamsaMember> {
        let consumer = bounded(
            "Consumer::from_properties",
            Duration::from_secs(30),
            Consumer::from_properties([
                ("bootstrap.servers", bootstrap),
                ("group.id", group),
                ("client.id", SAMSA),
                ("auto.offset.reset", "earliest"),
                ("enable.auto.commit", "false"),
                ("session.timeout.ms", "10000"),
                ("heartbeat.interval.ms", "500"),
                ("max.poll.records", "100"),
            ]),
        )
        .await??;
        let consumer = Arc::new(consumer);
        ensure!(
            consumer.config().assignors.len() == 2,
            "the Samsa member must keep the default assignor list, got {:?}",
            consumer.config().assignors
        );
        let gate = Arc::new(Gate::default());
        consumer.set_rebalance_listener(Arc::new(GateListener(gate.clone())));
        consumer.subscribe(&[topic])?;
        let stop = Arc::new(AtomicBool::new(false));
        let report = Arc::new(Mutex::new(Report::default()));
        let task = {
            let (consumer, gate, stop, report) =
                (consumer.clone(), gate.clone(), stop.clone(), report.clone());
            tokio::spawn(async move {
                let outcome = samsa_member_loop(consumer, gate, stop, report.clone()).await;
                if let Err(e) = &outcome {
                    report.lock().unwrap().error = Some(format!("{e:#}"));
                }
                outcome
            })
        };
        Ok(SamsaMember {
            consumer,
            topic: topic.to_string(),
            gate,
            stop,
            report,
            task: Some(task),
        })
    }

    /// The consumer's own view of its assignment.
    fn assignment(&self) -> BTreeSet<i32> {
        self.consumer
            .assignment()
            .into_iter()
            .filter(|tp| tp.topic == self.topic)
            .map(|tp| tp.partition)
            .collect()
    }

    fn report(&self) -> Report {
        let mut r = self.report.lock().unwrap().clone();
        r.assignment = Some(self.assignment());
        r
    }

    fn check_alive(&mut self) -> Result<()> {
        if self.task.as_ref().is_some_and(|t| t.is_finished()) {
            self.task = None;
            bail!(
                "the Samsa member's loop ended early: {:?}",
                self.report.lock().unwrap().error
            );
        }
        Ok(())
    }

    /// Stops the loop, which closes the consumer (LeaveGroup).
    async fn stop(&mut self) -> Result<()> {
        self.stop.store(true, Ordering::SeqCst);
        let task = self
            .task
            .take()
            .ok_or_else(|| anyhow!("the Samsa member already stopped"))?;
        bounded("the Samsa member's close", Duration::from_secs(30), task)
            .await?
            .context("the Samsa member's task panicked")?
    }
}

/// poll -> process -> commit exactly the batch's offsets -> report, under the gate.
async fn samsa_member_loop(
    consumer: Arc<Consumer>,
    gate: Arc<Gate>,
    stop: Arc<AtomicBool>,
    report: Arc<Mutex<Report>>,
) -> Result<()> {
    while !stop.load(Ordering::SeqCst) {
        let assigned = gate.assigned.notified();
        tokio::pin!(assigned);
        assigned.as_mut().enable();
        let batch_lock = gate.batch.lock().await;
        if gate.rebalancing.load(Ordering::SeqCst) {
            drop(batch_lock);
            // Re-checked at least every 100 ms (the stop flag too).
            let _ = tokio::time::timeout(Duration::from_millis(100), assigned).await;
            continue;
        }
        let records = bounded(
            "Samsa member poll",
            Duration::from_secs(30),
            consumer.poll(Duration::from_millis(100)),
        )
        .await?
        .context("Samsa member poll")?;
        if records.is_empty() {
            continue;
        }
        let mut first: BTreeMap<TopicPartition, i64> = BTreeMap::new();
        let mut next: BTreeMap<TopicPartition, i64> = BTreeMap::new();
        let mut batch = Vec::with_capacity(records.len());
        for r in &records {
            let tp = TopicPartition::new(r.topic.clone(), r.partition);
            let f = first.entry(tp.clone()).or_insert(r.offset);
            *f = (*f).min(r.offset);
            let n = next.entry(tp).or_insert(r.offset + 1);
            *n = (*n).max(r.offset + 1);
            let value = r
                .value
                .as_deref()
                .ok_or_else(|| anyhow!("tombstone at {}-{}@{}", r.topic, r.partition, r.offset))?;
            let id = std::str::from_utf8(value)?.parse::<usize>()?;
            batch.push(Consumed {
                partition: r.partition,
                offset: r.offset,
                id,
            });
        }
        let committed = bounded(
            "Samsa member commit",
            Duration::from_secs(30),
            consumer.commit_offsets(&next),
        )
        .await?;
        match committed {
            Ok(()) => report.lock().unwrap().consumed.extend(batch),
            Err(e) => {
                eprintln!("Samsa member: commit of {next:?} failed: {e}");
                report.lock().unwrap().commit_failures.push(e.to_string());
                let owned: BTreeSet<TopicPartition> = consumer.assignment().into_iter().collect();
                for (tp, offset) in first {
                    if owned.contains(&tp) {
                        let _ = consumer.seek(&tp, offset);
                    }
                }
            }
        }
        drop(batch_lock);
    }
    bounded(
        "Samsa member close",
        Duration::from_secs(30),
        consumer.close(),
    )
    .await?
    .context("Samsa member close")?;
    report.lock().unwrap().closed = true;
    Ok(())
}

/// The stable group, checked against the members' own views: `Ok(client id -> partitions)`
/// once DescribeGroups shows a `Stable` `range` group of exactly `expect` (by client.id)
/// and every member's own latest assignment equals what DescribeGroups gives it. Then the
/// assignments must split the 6 partitions evenly, each partition to one member.
async fn stable_assignment(
    admin: &Admin,
    group: &str,
    topic: &str,
    reports: &BTreeMap<&'static str, Report>,
) -> Result<std::result::Result<BTreeMap<String, BTreeSet<i32>>, String>> {
    let g: GroupDescription = bounded(
        "describe_groups",
        Duration::from_secs(30),
        admin.describe_groups(&[group.to_string()]),
    )
    .await??
    .pop()
    .ok_or_else(|| anyhow!("no description of {group}"))?;
    if g.state != "Stable" {
        return Ok(Err(format!(
            "group state {} with {} members",
            g.state,
            g.members.len()
        )));
    }
    let mut described: BTreeMap<String, BTreeSet<i32>> = BTreeMap::new();
    for m in &g.members {
        let mut parts = BTreeSet::new();
        for (t, ps) in &m.assignment {
            ensure!(
                t == topic,
                "member {} was assigned topic {t}: {g:?}",
                m.client_id
            );
            parts.extend(ps.iter().copied());
        }
        ensure!(
            described.insert(m.client_id.clone(), parts).is_none(),
            "two members with client.id {}: {g:?}",
            m.client_id
        );
    }
    let want: BTreeSet<&str> = reports.keys().copied().collect();
    let have: BTreeSet<&str> = described.keys().map(String::as_str).collect();
    if want != have {
        return Ok(Err(format!("members {have:?}, want {want:?}")));
    }
    // The only assignor every client offers.
    ensure!(
        g.protocol_type == "consumer" && g.protocol == "range",
        "the stable group uses {}/{}, want consumer/range: {g:?}",
        g.protocol_type,
        g.protocol
    );
    for (name, r) in reports {
        if r.assignment.as_ref() != Some(&described[*name]) {
            return Ok(Err(format!(
                "{name} reports {:?}, DescribeGroups gives it {:?}",
                r.assignment, described[*name]
            )));
        }
    }
    // Stable, and every member agrees with the coordinator: the split must be exact.
    let mut owner: BTreeMap<i32, &str> = BTreeMap::new();
    for (name, parts) in &described {
        for &p in parts {
            if let Some(other) = owner.insert(p, name) {
                bail!("partition {p} is owned by both {other} and {name}: {described:?}");
            }
        }
    }
    let all: BTreeSet<i32> = (0..GROUP_PARTITIONS).collect();
    ensure!(
        owner.keys().copied().collect::<BTreeSet<_>>() == all,
        "the stable assignment {described:?} does not cover partitions {all:?}"
    );
    let even = GROUP_PARTITIONS as usize / described.len();
    ensure!(
        described.values().all(|p| p.len() == even),
        "range over {GROUP_PARTITIONS} partitions and {} members gives {even} each, got {described:?}",
        described.len()
    );
    Ok(Ok(described))
}

/// Who reported which record: every report must name a produced record at the offset
/// its acknowledgement gave, and no record may be reported twice (fails at once).
fn tally(
    reports: &BTreeMap<&'static str, Report>,
    acked: &BTreeMap<usize, (i32, i64)>,
) -> Result<BTreeMap<usize, &'static str>> {
    let mut by_id: BTreeMap<usize, &'static str> = BTreeMap::new();
    let mut dups = Vec::new();
    for (name, r) in reports {
        for c in &r.consumed {
            let Some(&(p, o)) = acked.get(&c.id) else {
                bail!(
                    "{name} reported record {} at {}@{}, which was not (yet) acknowledged",
                    c.id,
                    c.partition,
                    c.offset
                );
            };
            ensure!(
                (p, o) == (c.partition, c.offset),
                "{name} reported record {} at {}@{}, but it was acknowledged at {p}@{o}",
                c.id,
                c.partition,
                c.offset
            );
            if let Some(first) = by_id.insert(c.id, name) {
                dups.push(format!("#{} ({p}@{o}) by {first} and {name}", c.id));
            }
        }
    }
    if !dups.is_empty() {
        let failures: BTreeMap<&str, &Vec<String>> = reports
            .iter()
            .map(|(n, r)| (*n, &r.commit_failures))
            .collect();
        bail!(
            "{} records consumed (and committed) twice: {:?}; commit failures: {failures:?}",
            dups.len(),
            &dups[..dups.len().min(20)]
        );
    }
    Ok(by_id)
}

/// The record with id `id`: partition `id % 6`, value `id`.
fn numbered(topic: &str, id: usize) -> ProducerRecord {
    ProducerRecord::new(topic, id.to_string())
        .key(format!("k{id}"))
        .partition((id % GROUP_PARTITIONS as usize) as i32)
}

/// Sends records `ids` and records their acknowledgements.
async fn produce_numbered(
    producer: &Producer,
    topic: &str,
    ids: std::ops::Range<usize>,
    acked: &Mutex<BTreeMap<usize, (i32, i64)>>,
) -> Result<()> {
    bounded("producing", Duration::from_secs(60), async {
        let mut futures = Vec::new();
        for id in ids {
            futures.push((id, producer.send(numbered(topic, id)).await?));
        }
        for (id, f) in futures {
            let m = f.await.with_context(|| format!("delivery of #{id}"))?;
            acked.lock().unwrap().insert(id, (m.partition, m.offset));
        }
        Ok::<_, anyhow::Error>(())
    })
    .await?
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_interop_group_samsa_kafka_python_confluent_exactly_once() -> Result<()> {
    let mut server = blocking(|| {
        SamsaServer::builder()
            .set("group.initial.rebalance.delay.ms", 0)
            .start()
    })?;
    let b = server.bootstrap().to_string();
    let topic = "interop-group";
    let group = "interop-group";
    let admin = bounded(
        "Admin::connect",
        Duration::from_secs(30),
        Admin::connect(&b),
    )
    .await??;
    create_topic(&admin, topic, GROUP_PARTITIONS).await?;
    let dir = tempfile::Builder::new()
        .prefix("samsa-interop-")
        .tempdir()?;
    let all: BTreeSet<i32> = (0..GROUP_PARTITIONS).collect();

    // kafka-python joins first (so it leads the first generations and runs its range
    // assignor over Samsa's and librdkafka's subscriptions), then confluent, then Samsa.
    let mut kp = PyMember::spawn("kafka-python", KAFKA_PYTHON, &b, topic, group, dir.path())?;
    wait_for(
        "kafka-python to own all 6 partitions",
        Duration::from_secs(60),
        || {
            let r = kp.check_alive().and_then(|_| kp.report());
            let all = &all;
            async move {
                let r = r?;
                Ok(if r.assignment.as_ref() == Some(all) {
                    Ok(())
                } else {
                    Err(format!("{:?}", r.assignment))
                })
            }
        },
    )
    .await?;
    let mut ck = PyMember::spawn("confluent", CONFLUENT, &b, topic, group, dir.path())?;
    let mut samsa = SamsaMember::start(&b, topic, group).await?;

    // Snapshot of every member's report (Samsa's assignment is its consumer's own view).
    let snapshot = |kp: &mut PyMember,
                    ck: &mut PyMember,
                    samsa: &mut SamsaMember,
                    with_kp: bool|
     -> Result<BTreeMap<&'static str, Report>> {
        let mut m = BTreeMap::new();
        if with_kp {
            kp.check_alive()?;
        }
        ck.check_alive()?;
        samsa.check_alive()?;
        m.insert(KAFKA_PYTHON, kp.report()?);
        m.insert(CONFLUENT, ck.report()?);
        m.insert(SAMSA, samsa.report());
        Ok(m)
    };

    // (a) Once stable, every partition has exactly one owner.
    let stable1 = wait_for("a stable 3-member group", Duration::from_secs(60), || {
        let reports = snapshot(&mut kp, &mut ck, &mut samsa, true);
        let admin = &admin;
        async move { stable_assignment(admin, group, topic, &reports?).await }
    })
    .await?;
    eprintln!("stable assignment with 3 members: {stable1:?}");

    // (b) Phase 1: every record consumed exactly once, by its partition's owner.
    let producer = Arc::new(
        bounded(
            "Producer::new",
            Duration::from_secs(30),
            Producer::new(ProducerConfig::new(&b)?),
        )
        .await??,
    );
    let acked: Arc<Mutex<BTreeMap<usize, (i32, i64)>>> = Arc::default();
    produce_numbered(&producer, topic, 0..PHASE, &acked).await?;
    let wait_consumed = |upto: usize,
                         with_kp: bool,
                         kp: &mut PyMember,
                         ck: &mut PyMember,
                         samsa: &mut SamsaMember| {
        let reports = snapshot(kp, ck, samsa, with_kp);
        let acked = acked.lock().unwrap().clone();
        async move {
            let reports = reports?;
            let by_id = tally(&reports, &acked)?;
            let missing = (0..upto).filter(|id| !by_id.contains_key(id)).count();
            Ok(if missing == 0 {
                Ok(by_id)
            } else {
                let counts: BTreeMap<&str, usize> = reports
                    .iter()
                    .map(|(n, r)| (*n, r.consumed.len()))
                    .collect();
                Err(format!(
                    "{missing} of {upto} records not reported yet; reported per member: {counts:?}"
                ))
            })
        }
    };
    let by_id = wait_for("phase 1 consumed", Duration::from_secs(60), || {
        wait_consumed(PHASE, true, &mut kp, &mut ck, &mut samsa)
    })
    .await?;
    for id in 0..PHASE {
        let p = (id % GROUP_PARTITIONS as usize) as i32;
        let who = by_id[&id];
        ensure!(
            stable1[who].contains(&p),
            "record #{id} of partition {p} was consumed by {who}, which owns {:?} ({stable1:?})",
            stable1[who]
        );
    }
    // No rebalance happened meanwhile: the same stable split.
    let again = stable_assignment(
        &admin,
        group,
        topic,
        &snapshot(&mut kp, &mut ck, &mut samsa, true)?,
    )
    .await?;
    ensure!(
        again.as_ref() == Ok(&stable1),
        "the group changed during phase 1: {again:?}, was {stable1:?}"
    );

    // (c) Phase 2: records keep coming while kafka-python leaves cleanly.
    let paced = {
        let producer = producer.clone();
        let acked = acked.clone();
        tokio::spawn(async move {
            for id in PHASE..2 * PHASE {
                let m = bounded(
                    "send",
                    Duration::from_secs(30),
                    producer.send_and_wait(numbered(topic, id)),
                )
                .await?
                .with_context(|| format!("delivery of #{id}"))?;
                acked.lock().unwrap().insert(id, (m.partition, m.offset));
                // Spreads phase 2 over a few seconds, so the leave happens mid-stream.
                tokio::time::sleep(Duration::from_millis(4)).await;
            }
            Ok::<_, anyhow::Error>(())
        })
    };
    wait_for(
        "kafka-python to consume phase-2 records",
        Duration::from_secs(60),
        || {
            let r = kp.check_alive().and_then(|_| kp.report());
            async move {
                let r = r?;
                let n = r.consumed.iter().filter(|c| c.id >= PHASE).count();
                Ok(if n > 0 {
                    Ok(())
                } else {
                    Err(format!("{} records, none of phase 2", r.consumed.len()))
                })
            }
        },
    )
    .await?;
    let produced_before_leave = acked.lock().unwrap().len();
    let kp_out = blocking(|| kp.stop(Duration::from_secs(30))).context("kafka-python leaving")?;
    // A clean leave: kafka-python's LeaveGroup was answered before it exited, so the
    // coordinator has dropped it already (not after session.timeout.ms).
    let g = bounded(
        "describe_groups",
        Duration::from_secs(30),
        admin.describe_groups(&[group.to_string()]),
    )
    .await??
    .pop()
    .ok_or_else(|| anyhow!("no description of {group}"))?;
    ensure!(
        g.members.iter().all(|m| m.client_id != KAFKA_PYTHON),
        "kafka-python exited but is still a member: {g:?}"
    );
    let kp_final = kp.report()?;
    ensure!(kp_final.closed, "kafka-python did not report CLOSED");
    ensure!(
        kp_out.result_value::<usize>("consumed")? == kp_final.consumed.len(),
        "kafka-python RESULT {:?} disagrees with its {} CONSUMED lines",
        kp_out.result()?,
        kp_final.consumed.len()
    );
    eprintln!(
        "kafka-python left after {produced_before_leave} records were acknowledged, having consumed {}",
        kp_final.consumed.len()
    );
    bounded("phase 2 producer", Duration::from_secs(60), paced).await???;

    let stable2 = wait_for(
        "a stable 2-member group after kafka-python left",
        Duration::from_secs(60),
        || {
            let reports = snapshot(&mut kp, &mut ck, &mut samsa, false).map(|mut m| {
                m.remove(KAFKA_PYTHON);
                m
            });
            let admin = &admin;
            async move { stable_assignment(admin, group, topic, &reports?).await }
        },
    )
    .await?;
    eprintln!("stable assignment after kafka-python left: {stable2:?}");
    for p in &stable1[KAFKA_PYTHON] {
        let to = stable2
            .iter()
            .find(|(_, ps)| ps.contains(p))
            .map(|(n, _)| n.as_str());
        ensure!(
            to.is_some(),
            "kafka-python's partition {p} has no owner: {stable2:?}"
        );
        eprintln!("kafka-python's partition {p} moved to {}", to.unwrap());
    }

    // Phase 3, after the new split is stable: consumed by the new owners.
    produce_numbered(&producer, topic, 2 * PHASE..3 * PHASE, &acked).await?;
    let by_id = wait_for("all phases consumed", Duration::from_secs(60), || {
        wait_consumed(3 * PHASE, false, &mut kp, &mut ck, &mut samsa)
    })
    .await?;
    ensure!(
        by_id.len() == 3 * PHASE,
        "{} records reported, want {}",
        by_id.len(),
        3 * PHASE
    );
    for id in 2 * PHASE..3 * PHASE {
        let p = (id % GROUP_PARTITIONS as usize) as i32;
        let who = by_id[&id];
        ensure!(
            who != KAFKA_PYTHON && stable2[who].contains(&p),
            "record #{id} of partition {p} was consumed by {who} ({stable2:?})"
        );
    }
    // kafka-python's report is final: nothing produced after it closed is in it.
    ensure!(
        kp_final.consumed.iter().all(|c| c.id < 2 * PHASE),
        "kafka-python reported phase-3 records"
    );

    // The group's committed offsets end exactly at the log end of every partition.
    let tps: Vec<TopicPartition> = (0..GROUP_PARTITIONS)
        .map(|p| TopicPartition::new(topic, p))
        .collect();
    let ends = bounded(
        "list_offsets",
        Duration::from_secs(30),
        admin.list_offsets(&tps, OffsetSpec::Latest),
    )
    .await??;
    let committed = bounded(
        "list_group_offsets",
        Duration::from_secs(30),
        admin.list_group_offsets(group),
    )
    .await??;
    for tp in &tps {
        ensure!(
            committed.get(tp) == Some(&ends[tp].0),
            "{tp}: committed {:?}, log end {}",
            committed.get(tp),
            ends[tp].0
        );
    }

    // Everyone leaves; the group ends empty.
    let reports = snapshot(&mut kp, &mut ck, &mut samsa, false)?;
    samsa.stop().await?;
    let ck_out = blocking(|| ck.stop(Duration::from_secs(30))).context("confluent leaving")?;
    let ck_final = ck.report()?;
    ensure!(ck_final.closed, "confluent did not report CLOSED");
    ensure!(ck_out.result_value::<usize>("consumed")? == ck_final.consumed.len());
    let g = bounded(
        "describe_groups",
        Duration::from_secs(30),
        admin.describe_groups(&[group.to_string()]),
    )
    .await??
    .pop()
    .ok_or_else(|| anyhow!("no description"))?;
    ensure!(
        g.state == "Empty" && g.members.is_empty(),
        "after every member closed: {g:?}"
    );

    let per_member: BTreeMap<&str, (usize, usize)> = reports
        .iter()
        .map(|(n, r)| (*n, (r.consumed.len(), r.commit_failures.len())))
        .collect();
    eprintln!(
        "records consumed / commit failures per member: {per_member:?}; Samsa member revocations {}, assignments {}",
        samsa.gate.revocations.load(Ordering::SeqCst),
        samsa.gate.assignments.load(Ordering::SeqCst)
    );
    bounded("Producer::close", Duration::from_secs(30), producer.close()).await?;
    blocking(|| server.terminate())
}

// ---------------------------------------------------------------------------------------
// 2. Codec interop: kcat and confluent-kafka write, Samsa reads
// ---------------------------------------------------------------------------------------

/// Every batch of every partition of `topic` carries codec `id`, and some batch holds more
/// than one record (so the codec really compressed record sets).
fn check_codec_on_disk(
    server: &SamsaServer,
    topic: &str,
    partitions: i32,
    id: i16,
    records: usize,
) -> Result<()> {
    let mut total = 0usize;
    let mut multi = false;
    for p in 0..partitions {
        let segment = server
            .data_dir()
            .join(format!("{topic}-{p}"))
            .join("00000000000000000000.log");
        let batches = segment_batches(&segment)?;
        for (codec, count) in &batches {
            ensure!(
                *codec == id,
                "{topic}-{p}: a batch has codec {codec}, want {id}: {batches:?}"
            );
            total += *count as usize;
            multi |= *count > 1;
        }
    }
    ensure!(
        total == records,
        "{topic}: {total} records on disk, want {records}"
    );
    ensure!(multi, "{topic}: every batch holds a single record");
    Ok(())
}

/// The line format of `client_interop_produce.py`: `P O TS KEY VALUE HEADERS`.
fn record_line(r: &ConsumerRecord) -> String {
    format!(
        "{} {} {} {} {} {}",
        r.partition,
        r.offset,
        r.timestamp,
        enc(r.key.as_deref()),
        enc(r.value.as_deref()),
        enc_headers(&r.headers)
    )
}

/// A record line without its last field (the headers).
fn without_headers(line: &str) -> &str {
    line.rsplit_once(' ').map_or(line, |(rest, _)| rest)
}

/// The last field of a record line (the headers).
fn headers_of(line: &str) -> &str {
    line.rsplit_once(' ').map_or("", |(_, h)| h)
}

/// Reads every record of `topic` with Samsa's consumer (assign + seek_to_beginning, no
/// group), up to the log end of each partition. Checks that each partition comes back in
/// offset order, from 0 to its end with no gap or repeat, and that the positions end at
/// the log end. Returns the records sorted by (partition, offset).
async fn read_with_samsa(
    bootstrap: &str,
    admin: &Admin,
    topic: &str,
) -> Result<Vec<ConsumerRecord>> {
    let info = bounded(
        "describe_topics",
        Duration::from_secs(30),
        admin.describe_topics(&[topic.to_string()]),
    )
    .await??
    .pop()
    .ok_or_else(|| anyhow!("no metadata for {topic}"))?;
    let tps: Vec<TopicPartition> = info
        .partitions
        .iter()
        .map(|p| TopicPartition::new(topic, p.partition))
        .collect();
    let ends = bounded(
        "list_offsets",
        Duration::from_secs(30),
        admin.list_offsets(&tps, OffsetSpec::Latest),
    )
    .await??;
    let total: i64 = ends.values().map(|(o, _)| *o).sum();
    let consumer = bounded(
        "Consumer::from_properties",
        Duration::from_secs(30),
        Consumer::from_properties([
            ("bootstrap.servers", bootstrap),
            ("client.id", "interop-codec-reader"),
        ]),
    )
    .await??;
    consumer.assign(&tps)?;
    consumer.seek_to_beginning(&tps)?;
    let mut got: Vec<ConsumerRecord> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while (got.len() as i64) < total {
        ensure!(
            Instant::now() < deadline,
            "{topic}: read {} of {total} records within 60 s",
            got.len()
        );
        let batch = bounded(
            "poll",
            Duration::from_secs(30),
            consumer.poll(Duration::from_millis(200)),
        )
        .await??;
        got.extend(batch);
    }
    ensure!(
        got.len() as i64 == total,
        "{topic}: read {} records, the log holds {total}",
        got.len()
    );
    for tp in &tps {
        let pos = bounded("position", Duration::from_secs(30), consumer.position(tp)).await??;
        ensure!(
            pos == ends[tp].0,
            "{tp}: position {pos} after reading everything, log end {}",
            ends[tp].0
        );
    }
    bounded("close", Duration::from_secs(30), consumer.close()).await??;
    for tp in &tps {
        let offsets: Vec<i64> = got
            .iter()
            .filter(|r| r.partition == tp.partition)
            .map(|r| r.offset)
            .collect();
        let want: Vec<i64> = (0..ends[tp].0).collect();
        ensure!(
            offsets == want,
            "{tp}: offsets in poll order {offsets:?}, want 0..{}",
            ends[tp].0
        );
    }
    ensure!(
        got.iter().all(|r| r.topic == topic),
        "{topic}: a record of another topic came back"
    );
    got.sort_by_key(|r| (r.partition, r.offset));
    Ok(got)
}

/// kcat's input (one `key:value` line per record) and the `KEY VALUE HEADERS` each record
/// must come back with. With `-K : -Z`: an empty key or a line without `:` gives a NULL
/// key, an empty value a NULL value (tombstone).
fn kcat_input(codec: &str, n: usize) -> (String, Vec<String>) {
    let headers = format!(
        "origin={},dup1={},dup2={},empty=x,nullhdr=-",
        enc(Some(format!("kcat-{codec}").as_bytes())),
        enc(Some(b"1")),
        enc(Some(b"2"))
    );
    let mut input = String::new();
    let mut want = Vec::new();
    for i in 0..n {
        let key = format!("kk-{codec}-{i:05}");
        let value = if i % 50 == 21 {
            format!("kcat-{codec}-big-{i:05}|").repeat(1500) // ~30 KB
        } else {
            format!("kcat-{codec}-{i:05}|").repeat(6)
        };
        let (line, k, v) = match i % 40 {
            3 => (format!(":{value}"), None, Some(value.clone())),
            11 => (value.clone(), None, Some(value.clone())),
            17 => (format!("{key}:"), Some(key.clone()), None),
            _ => (
                format!("{key}:{value}"),
                Some(key.clone()),
                Some(value.clone()),
            ),
        };
        input.push_str(&line);
        input.push('\n');
        want.push(format!(
            "{} {} {headers}",
            enc(k.as_deref().map(str::as_bytes)),
            enc(v.as_deref().map(str::as_bytes))
        ));
    }
    (input, want)
}

async fn codec_to_samsa(codec: &str, codec_id: i16) -> Result<()> {
    const N_KCAT: usize = 240;
    const N_CONFLUENT: usize = 300;
    let mut server = blocking(|| SamsaServer::builder().start())?;
    let b = server.bootstrap().to_string();
    let admin = bounded(
        "Admin::connect",
        Duration::from_secs(30),
        Admin::connect(&b),
    )
    .await??;
    let kcat_topic = format!("interop-kcat-{codec}");
    let confluent_topic = format!("interop-confluent-{codec}");
    create_topic(&admin, &kcat_topic, 2).await?;
    create_topic(&admin, &confluent_topic, 3).await?;
    let dir = tempfile::Builder::new()
        .prefix("samsa-interop-codec-")
        .tempdir()?;

    // kcat (librdkafka 2.0): keys by `-K :`, fixed headers by `-H` (repeated name, empty
    // value, no `=` for a NULL value), NULLs by `-Z`. kcat cannot set a timestamp, so
    // librdkafka stamps CreateTime at produce time: inside [t0, t1], and exactly what
    // librdkafka's own consumer reads back.
    let (input, mut want_kcat) = kcat_input(codec, N_KCAT);
    let origin = format!("origin=kcat-{codec}");
    let t0 = now_ms();
    let kcat_out = blocking(|| {
        kcat()
            .args([
                "-b",
                b.as_str(),
                "-P",
                "-t",
                kcat_topic.as_str(),
                "-K",
                ":",
                "-Z",
                "-z",
                codec,
                "-H",
                origin.as_str(),
                "-H",
                "dup1=1",
                "-H",
                "dup2=2",
                "-H",
                "empty=",
                "-H",
                "nullhdr",
                "-X",
                "linger.ms=50",
                "-d",
                "msg",
            ])
            .stdin(input)
            .run()
    })?;
    let t1 = now_ms();
    let ref_path = dir.path().join("kcat-read.txt");
    let ref_out = blocking(|| {
        run_python(
            "read_partitions.py",
            &[b.as_str(), kcat_topic.as_str(), ref_path.to_str().unwrap()],
        )
    })?;
    let reference: Vec<String> = std::fs::read_to_string(&ref_path)?
        .lines()
        .map(str::to_string)
        .collect();
    ensure!(
        reference.len() == N_KCAT && ref_out.result_value::<usize>("consumed")? == N_KCAT,
        "{codec}: librdkafka read {} records of kcat's {N_KCAT}",
        reference.len()
    );
    // `P O TSTYPE TS KEY VALUE HEADERS` -> `P O TS KEY VALUE HEADERS`, CreateTime only.
    let mut want_kcat_lines = Vec::new();
    for line in &reference {
        let f: Vec<&str> = line.splitn(4, ' ').collect();
        ensure!(
            f.len() == 4 && f[2] == "1",
            "{codec}: librdkafka read a non-CreateTime record: {line}"
        );
        want_kcat_lines.push(format!("{} {} {}", f[0], f[1], f[3]));
    }

    // confluent-kafka (librdkafka 2.16): explicit timestamps, per-record headers.
    let base_ts = 1_500_000_000_000 + i64::from(codec_id) * 1_000_000_000;
    let want_path = dir.path().join("confluent-produced.txt");
    blocking(|| {
        run_python(
            "client_interop_produce.py",
            &[
                b.as_str(),
                confluent_topic.as_str(),
                codec,
                &N_CONFLUENT.to_string(),
                &base_ts.to_string(),
                want_path.to_str().unwrap(),
            ],
        )
    })?;
    let want_confluent: Vec<String> = std::fs::read_to_string(&want_path)?
        .lines()
        .map(str::to_string)
        .collect();
    ensure!(
        want_confluent.len() == N_CONFLUENT,
        "{codec}: {} confluent acks",
        want_confluent.len()
    );

    // Samsa reads both topics.
    let got = read_with_samsa(&b, &admin, &kcat_topic).await?;
    ensure!(
        got.len() == N_KCAT,
        "{codec}: Samsa read {} kcat records, want {N_KCAT}",
        got.len()
    );
    for r in &got {
        ensure!(
            !r.log_append_time && (t0..=t1).contains(&r.timestamp),
            "{codec}: kcat record {}@{} has timestamp {} (log append: {}), want CreateTime in [{t0}, {t1}]",
            r.partition,
            r.offset,
            r.timestamp,
            r.log_append_time
        );
    }
    let kcat_got: Vec<String> = got.iter().map(record_line).collect();
    let mut kcat_content: Vec<String> = got
        .iter()
        .map(|r| {
            format!(
                "{} {} {}",
                enc(r.key.as_deref()),
                enc(r.value.as_deref()),
                enc_headers(&r.headers)
            )
        })
        .collect();
    kcat_content.sort();
    want_kcat.sort();

    let got = read_with_samsa(&b, &admin, &confluent_topic).await?;
    ensure!(
        got.iter().all(|r| !r.log_append_time),
        "{codec}: a confluent record has LogAppendTime"
    );
    let confluent_got: Vec<String> = got.iter().map(record_line).collect();
    ensure!(
        confluent_got.len() == want_confluent.len(),
        "{codec}: Samsa read {} confluent records, want {}",
        confluent_got.len(),
        want_confluent.len()
    );

    // Everything but the headers first (so a header problem does not hide another one):
    // partition, offset, timestamp, key and value of every record.
    let comparisons: [(&str, &[String], &[String]); 3] = [
        (
            "Samsa and librdkafka read kcat's records differently",
            &kcat_got,
            &want_kcat_lines,
        ),
        ("a kcat record came back changed", &kcat_content, &want_kcat),
        (
            "a confluent-kafka record came back changed",
            &confluent_got,
            &want_confluent,
        ),
    ];
    for (what, got, want) in comparisons {
        if let Some((g, w)) = got
            .iter()
            .zip(want)
            .find(|(g, w)| without_headers(g) != without_headers(w))
        {
            bail!("{codec}: {what}:\n got:  {g}\n want: {w}");
        }
    }

    // The producers really used the codec (else the reads above prove little), except
    // where kcat's librdkafka says it would not: librdkafka before the fix of
    // confluentinc/librdkafka#4956 (kcat 1.7.1 bundles 2.0.2) only compresses gzip, snappy
    // and lz4 when the broker still accepts Produce v0, which Kafka 4 (KIP-896) and Samsa
    // no longer do; it then logs this and sends the batch uncompressed.
    let downgrade =
        format!("Broker does not support compression type {codec}: not compressing batch");
    let kcat_codec = if kcat_out.stderr.contains(&downgrade) {
        ensure!(
            matches!(codec, "gzip" | "snappy" | "lz4"),
            "{codec}: kcat did not compress: {downgrade}"
        );
        eprintln!(
            "{codec}: kcat's librdkafka sent uncompressed batches (librdkafka#4956): {downgrade}"
        );
        0
    } else {
        codec_id
    };
    check_codec_on_disk(&server, &kcat_topic, 2, kcat_codec, N_KCAT)?;
    check_codec_on_disk(&server, &confluent_topic, 3, codec_id, N_CONFLUENT)?;

    // Then the headers, exactly: in order, empty and NULL values distinct.
    for (what, got, want) in comparisons {
        if let Some((g, w)) = got.iter().zip(want).find(|(g, w)| g != w) {
            let record: String = without_headers(g).chars().take(72).collect();
            bail!(
                "{codec}: {what}: the headers of record `{record}...` differ:\n got:  {}\n want: {}",
                headers_of(g),
                headers_of(w)
            );
        }
    }
    blocking(|| server.terminate())
}

#[tokio::test(flavor = "multi_thread")]
async fn client_interop_codec_none_kcat_and_confluent_to_samsa() -> Result<()> {
    codec_to_samsa("none", 0).await
}

#[tokio::test(flavor = "multi_thread")]
async fn client_interop_codec_gzip_kcat_and_confluent_to_samsa() -> Result<()> {
    codec_to_samsa("gzip", 1).await
}

#[tokio::test(flavor = "multi_thread")]
async fn client_interop_codec_snappy_kcat_and_confluent_to_samsa() -> Result<()> {
    codec_to_samsa("snappy", 2).await
}

#[tokio::test(flavor = "multi_thread")]
async fn client_interop_codec_lz4_kcat_and_confluent_to_samsa() -> Result<()> {
    codec_to_samsa("lz4", 3).await
}

#[tokio::test(flavor = "multi_thread")]
async fn client_interop_codec_zstd_kcat_and_confluent_to_samsa() -> Result<()> {
    codec_to_samsa("zstd", 4).await
}
