//! Cluster mode, end to end: real 3-node clusters (`SamsaCluster`: every node a broker and
//! a metadata voter) driven by confluent-kafka and Samsa's own client.
//!
//! - leader kill -9 under an idempotent acks=all confluent producer: nothing acknowledged is
//!   lost or duplicated, nothing moves, no error reaches the application, failover < 10 s;
//! - a leader that wrote an acks=1 tail its followers never saw is killed, the followers take
//!   over, and on restart it truncates that tail, rejoins the ISR and leads again;
//! - the active controller is killed and a surviving node creates a topic within 10 s.
//!
//! Harness calls (start, kill, restart) run outside any runtime; Samsa client calls run on a
//! small runtime of the test's own, each bounded by a timeout.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context, Result};
use samsa_client::admin::NewTopic;
use samsa_client::config::CommonConfig;
use samsa_client::error::ResponseError;
use samsa_client::net::{Cluster, Metadata};
use samsa_client::{Admin, AdminConfig, Consumer, Error, Producer, ProducerRecord, TopicPartition};
use samsa_tests::{python, wait_until, SamsaCluster};

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// (leader, replicas, isr) of one partition.
type PartState = (i32, Vec<i32>, Vec<i32>);

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?)
}

/// Client settings with short timeouts, so one dead or frozen node costs at most seconds.
fn common(bootstrap: &str, request_timeout_ms: u64) -> Result<CommonConfig> {
    let mut c = CommonConfig::default();
    c.set("bootstrap.servers", bootstrap)?;
    c.set("request.timeout.ms", &request_timeout_ms.to_string())?;
    c.set("socket.connection.setup.timeout.ms", "1000")?;
    Ok(c)
}

/// Metadata for `topic` as the node at `addr` sees it (a fresh connection to that node
/// only), bounded to 3 s.
async fn metadata_via(addr: &str, topic: &str) -> Result<Arc<Metadata>> {
    let fut = async {
        let cluster = Cluster::connect(common(addr, 2000)?).await?;
        Ok::<_, anyhow::Error>(cluster.refresh(Some(&[topic.to_string()]), false).await?)
    };
    tokio::time::timeout(Duration::from_secs(3), fut).await.map_err(|_| anyhow!("metadata from {addr} timed out"))?
}

/// Every partition of `topic` as the node at `addr` sees it.
fn partitions_via(rt: &tokio::runtime::Runtime, addr: &str, topic: &str) -> Result<Vec<PartState>> {
    let md = rt.block_on(metadata_via(addr, topic))?;
    let t = md.topics.get(topic).with_context(|| format!("topic {topic} not in metadata from {addr}"))?;
    Ok(t.partitions.iter().map(|p| (p.leader, p.replicas.clone(), p.isr.clone())).collect())
}

/// `wait_until` for checks that may fail while the cluster moves: an error counts as "not
/// yet", and the last one is shown if the wait times out.
fn settle(timeout: Duration, what: &str, mut check: impl FnMut() -> Result<bool>) -> Result<()> {
    let mut last: Option<String> = None;
    wait_until(timeout, what, || match check() {
        Ok(done) => Ok(done),
        Err(e) => {
            last = Some(format!("{e:#}"));
            Ok(false)
        }
    })
    .with_context(|| format!("last error: {}", last.as_deref().unwrap_or("none")))
}

/// Creates a topic through the node(s) at `bootstrap`.
fn create_topic(rt: &tokio::runtime::Runtime, bootstrap: &str, topic: NewTopic) -> Result<()> {
    let name = topic.name.clone();
    rt.block_on(async {
        let fut = async {
            let admin = Admin::new(AdminConfig { common: common(bootstrap, 10_000)? }).await?;
            admin.create_topics(&[topic]).await?;
            Ok::<_, anyhow::Error>(())
        };
        tokio::time::timeout(Duration::from_secs(20), fut).await.map_err(|_| anyhow!("creating {name} timed out"))?
    })
}

/// Waits until every partition of `topic` has a leader and `isr` in-sync replicas.
fn wait_topic_ready(rt: &tokio::runtime::Runtime, addr: &str, topic: &str, partitions: usize, isr: usize) -> Result<Vec<PartState>> {
    let mut seen = Vec::new();
    settle(Duration::from_secs(30), &format!("{topic}: {partitions} partitions led, ISR of {isr}"), || {
        seen = partitions_via(rt, addr, topic)?;
        Ok(seen.len() == partitions && seen.iter().all(|(l, _, i)| *l >= 0 && i.len() == isr))
    })
    .with_context(|| format!("last partitions: {seen:?}"))?;
    Ok(seen)
}

/// A Samsa producer. With `acks` = all it is idempotent (the client's default); acks=1 or
/// `retries` = 0 turn idempotence off. `txn_samsa.rs` covers the idempotent producer
/// through a leader kill -9.
async fn samsa_producer(bootstrap: &str, acks: &str, extra: &[(&str, &str)]) -> Result<Producer> {
    let mut props: Vec<(&str, &str)> = vec![
        ("bootstrap.servers", bootstrap),
        ("acks", acks),
        ("linger.ms", "0"),
        ("request.timeout.ms", "5000"),
        ("socket.connection.setup.timeout.ms", "1000"),
        ("max.in.flight.requests.per.connection", "1"),
    ];
    props.extend_from_slice(extra);
    tokio::time::timeout(Duration::from_secs(10), Producer::from_properties(props))
        .await
        .map_err(|_| anyhow!("connecting a producer to {bootstrap} timed out"))?
        .with_context(|| format!("producer for {bootstrap}"))
}

/// Sends `values` to `topic`-`partition` and returns each acknowledged offset, in order.
async fn send_values(p: &Producer, topic: &str, partition: i32, values: &[String], limit: Duration) -> Result<Vec<i64>> {
    let fut = async {
        let mut futures = Vec::new();
        for v in values {
            futures.push(p.send(ProducerRecord::new(topic, v.clone()).partition(partition)).await.with_context(|| format!("send {v}"))?);
        }
        let mut offsets = Vec::new();
        for (f, v) in futures.into_iter().zip(values) {
            let md = f.await.with_context(|| format!("delivery of {v}"))?;
            ensure!(md.partition == partition, "{v} landed on partition {}", md.partition);
            offsets.push(md.offset);
        }
        Ok(offsets)
    };
    tokio::time::timeout(limit, fut).await.map_err(|_| anyhow!("sending {} records timed out after {limit:?}", values.len()))?
}

/// One acks=all record to partition 0 through a fresh producer that does not retry,
/// bounded to 3 s: "does producing work right now?".
async fn probe_produce(bootstrap: &str, topic: &str, value: String) -> Result<i64> {
    let fut = async {
        let p = samsa_producer(
            bootstrap,
            "all",
            &[("retries", "0"), ("request.timeout.ms", "2000"), ("delivery.timeout.ms", "2500"), ("max.block.ms", "2000")],
        )
        .await?;
        let md = p.send_and_wait(ProducerRecord::new(topic, value).partition(0)).await?;
        Ok::<_, anyhow::Error>(md.offset)
    };
    tokio::time::timeout(Duration::from_secs(3), fut).await.map_err(|_| anyhow!("probe produce timed out"))?
}

/// The count the producer script last wrote to its progress file (0 before the first).
fn progress(path: &Path) -> usize {
    std::fs::read_to_string(path).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(0)
}

/// (partition, offset, value) lines dumped by `read_partitions.py ... values`.
fn read_topic(bootstrap: &str, topic: &str) -> Result<Vec<(i32, i64, String)>> {
    let dir = tempfile::Builder::new().prefix("samsa-cluster-read-").tempdir()?;
    let out_path = dir.path().join("records.txt");
    let out = python("read_partitions.py")?
        .args([bootstrap, topic, out_path.to_str().unwrap(), "values"])
        .timeout(Duration::from_secs(180))
        .run()?;
    eprintln!("reader: {:?}", out.result()?);
    let mut records = Vec::new();
    for line in std::fs::read_to_string(&out_path)?.lines() {
        let mut it = line.splitn(3, ' ');
        let (Some(p), Some(o), Some(v)) = (it.next(), it.next(), it.next()) else { bail!("bad reader line `{line}`") };
        records.push((p.parse()?, o.parse()?, v.to_string()));
    }
    ensure!(
        out.result_value::<usize>("consumed")? == records.len(),
        "reader RESULT {:?} disagrees with its {} dumped lines",
        out.result()?,
        records.len()
    );
    Ok(records)
}

fn others(all: &[usize], but: usize) -> Vec<usize> {
    all.iter().copied().filter(|&n| n != but).collect()
}

fn addrs(cluster: &SamsaCluster, ids: &[usize]) -> String {
    ids.iter().map(|&id| cluster.addr(id)).collect::<Vec<_>>().join(",")
}

/// Lines of `text` containing any of `needles` (for failure messages and the report).
fn grep(text: &str, needles: &[&str]) -> String {
    text.lines().filter(|l| needles.iter().any(|n| l.contains(n))).collect::<Vec<_>>().join("\n")
}

// ---------------------------------------------------------------------------------------
// 1. Leader kill -9 under an idempotent confluent producer
// ---------------------------------------------------------------------------------------

/// Checks the read-back against the acknowledgements: every acknowledged record exactly
/// once at its acknowledged offset, nothing unacknowledged, order kept per partition.
/// Records whose value starts with `probe-` (the failover probes) are allowed anywhere.
/// `txn_samsa.rs` runs the same check on Samsa's idempotent producer.
pub(crate) fn verify_exactly_once(acked: &[(i32, i64, u64)], read: &[(i32, i64, String)], count: u64, partitions: i32) -> Result<usize> {
    let mut problems: Vec<String> = Vec::new();
    let note = |problems: &mut Vec<String>, s: String| {
        if problems.len() < 30 {
            problems.push(s);
        }
    };
    // The acknowledgements themselves: one per record, at distinct offsets, in order.
    let mut at: HashMap<u64, (i32, i64)> = HashMap::new();
    let mut owner: HashMap<(i32, i64), u64> = HashMap::new();
    for &(p, off, seq) in acked {
        if p != (seq % partitions as u64) as i32 {
            note(&mut problems, format!("seq {seq} acknowledged on partition {p}, sent to {}", seq % partitions as u64));
        }
        if let Some(prev) = at.insert(seq, (p, off)) {
            note(&mut problems, format!("seq {seq} acknowledged twice: {prev:?} and {:?}", (p, off)));
        }
        if let Some(other) = owner.insert((p, off), seq) {
            note(&mut problems, format!("partition {p} offset {off} acknowledged for two records: seq {other} and {seq}"));
        }
    }
    ensure!(at.len() as u64 == count, "{} distinct records acknowledged, want {count}; first problems: {problems:#?}", at.len());
    let mut by_partition: BTreeMap<i32, Vec<(u64, i64)>> = BTreeMap::new();
    for (&seq, &(p, off)) in &at {
        by_partition.entry(p).or_default().push((seq, off));
    }
    for (p, v) in &mut by_partition {
        v.sort();
        if let Some(w) = v.windows(2).find(|w| w[1].1 <= w[0].1) {
            note(&mut problems, format!("partition {p}: seq {} acknowledged at offset {} but later seq {} at {}", w[0].0, w[0].1, w[1].0, w[1].1));
        }
    }

    // The read-back.
    let mut seen: HashSet<u64> = HashSet::new();
    let mut probes = 0;
    let mut last: HashMap<i32, (i64, Option<u64>)> = HashMap::new();
    for (p, off, value) in read {
        let prev = last.get(p).copied();
        if let Some((prev_off, _)) = prev {
            if *off <= prev_off {
                note(&mut problems, format!("partition {p}: offset {off} read after offset {prev_off}"));
            }
        }
        if value.starts_with("probe-") {
            probes += 1;
            last.insert(*p, (*off, prev.and_then(|x| x.1)));
            continue;
        }
        let Ok(seq) = value.parse::<u64>() else {
            note(&mut problems, format!("partition {p} offset {off}: unexpected value `{value}`"));
            continue;
        };
        if !seen.insert(seq) {
            note(&mut problems, format!("seq {seq} read twice (again at partition {p} offset {off})"));
        }
        match at.get(&seq) {
            None => note(&mut problems, format!("seq {seq} read at partition {p} offset {off} but never acknowledged")),
            Some(&want) if want != (*p, *off) => {
                note(&mut problems, format!("seq {seq} read at partition {p} offset {off}, acknowledged at {want:?}"))
            }
            Some(_) => {}
        }
        if let Some((_, Some(prev_seq))) = prev {
            if seq <= prev_seq {
                note(&mut problems, format!("partition {p}: seq {seq} at offset {off} comes after seq {prev_seq}"));
            }
        }
        last.insert(*p, (*off, Some(seq)));
    }
    let missing: Vec<u64> = {
        let mut m: Vec<u64> = at.keys().copied().filter(|s| !seen.contains(s)).collect();
        m.sort();
        m
    };
    if !missing.is_empty() {
        let show: Vec<String> = missing.iter().take(20).map(|s| format!("{s}@{:?}", at[s])).collect();
        note(&mut problems, format!("{} acknowledged records missing from the read-back, first: {}", missing.len(), show.join(" ")));
    }
    ensure!(problems.is_empty(), "read-back disagrees with the acknowledgements ({} records read, {probes} probes):\n{}", read.len(), problems.join("\n"));
    Ok(probes)
}

#[test]
fn cluster_confluent_producer_survives_leader_kill9() -> Result<()> {
    const COUNT: u64 = 200_000;
    const PARTITIONS: i32 = 6;
    // Paced at 10,000 records/s (about 20 s in all), so the kill at a quarter lands in
    // mid-stream and most records are written during and after the failover.
    const RATE: u32 = 10_000;
    let topic = "failover";
    let rt = runtime()?;
    let mut cluster = SamsaCluster::start(3, &[])?;
    let all = [1, 2, 3];
    create_topic(&rt, &cluster.bootstrap(), NewTopic::new(topic, PARTITIONS, 3).config("min.insync.replicas", "2"))?;
    let parts = wait_topic_ready(&rt, &cluster.addr(1), topic, PARTITIONS as usize, 3)?;
    eprintln!("{topic}: {parts:?}");

    let work = tempfile::Builder::new().prefix("samsa-cluster-a-").tempdir()?;
    let progress_path = work.path().join("progress");
    let acked_path = work.path().join("acked.txt");
    let mut producer = python("cluster_produce.py")?
        .args([
            cluster.bootstrap(),
            topic.to_string(),
            COUNT.to_string(),
            PARTITIONS.to_string(),
            progress_path.to_str().unwrap().to_string(),
            acked_path.to_str().unwrap().to_string(),
            RATE.to_string(),
        ])
        .spawn()?;
    let quarter = (COUNT / 4) as usize;
    wait_until(Duration::from_secs(180), &format!("{quarter} acknowledged records"), || {
        ensure!(!producer.has_exited()?, "the producer exited before {quarter} acks ({} acked)", progress(&progress_path));
        Ok(progress(&progress_path) >= quarter)
    })?;

    // Kill the current leader of partition 0.
    let md = rt.block_on(metadata_via(&cluster.addr(1), topic))?;
    let victim = md.topics[topic].partitions[0].leader;
    let controller = md.controller;
    ensure!((1..=3).contains(&victim), "partition 0 has no leader before the kill: {victim}");
    let victim = victim as usize;
    let survivors = others(&all, victim);
    let acked_at_kill = progress(&progress_path);
    let t0 = Instant::now();
    cluster.kill9(victim)?;
    eprintln!(
        "killed node {victim} (leader of {topic}-0; active controller: node {controller}) with {acked_at_kill} records acknowledged"
    );
    ensure!(
        acked_at_kill < (COUNT * 3 / 4) as usize,
        "the kill came too late to test failover under load: {acked_at_kill} of {COUNT} already acknowledged"
    );

    // Failover: a surviving node's Metadata shows a live new leader, and producing works.
    let survivor_bootstrap = addrs(&cluster, &survivors);
    let mut new_leader_seen: Option<(f64, i32)> = None;
    let mut attempts = 0;
    let mut last = String::new();
    let failover = loop {
        ensure!(
            t0.elapsed() < Duration::from_secs(30),
            "no failover of {topic}-0 within 30 s of killing node {victim}; last: {last}"
        );
        let via = cluster.addr(survivors[attempts % 2]);
        attempts += 1;
        match partitions_via(&rt, &via, topic) {
            Ok(ps) => {
                let (leader, _, isr) = &ps[0];
                if *leader >= 0 && *leader as usize != victim && survivors.contains(&(*leader as usize)) {
                    new_leader_seen.get_or_insert((t0.elapsed().as_secs_f64(), *leader));
                    match rt.block_on(probe_produce(&survivor_bootstrap, topic, format!("probe-{attempts}"))) {
                        Ok(offset) => {
                            eprintln!("probe produced at {topic}-0 offset {offset} (leader {leader}, ISR {isr:?})");
                            break t0.elapsed();
                        }
                        Err(e) => last = format!("probe produce (leader {leader}, ISR {isr:?}): {e:#}"),
                    }
                } else {
                    last = format!("{via} says leader {leader}, ISR {isr:?}");
                }
            }
            Err(e) => last = format!("metadata from {via}: {e:#}"),
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    eprintln!(
        "new leader of {topic}-0 in metadata after {:.2}s: {:?}",
        new_leader_seen.map_or(f64::NAN, |x| x.0),
        new_leader_seen.map(|x| x.1)
    );
    eprintln!("failover time: {:.2}s", failover.as_secs_f64());

    // The producer finishes on its own; then every delivery report is checked.
    let out = producer.wait(Duration::from_secs(280))?;
    let summary = out.stdout.lines().find(|l| l.starts_with("SUMMARY ")).unwrap_or("(no SUMMARY line)").to_string();
    eprintln!("producer {summary}");
    let errors: usize = out.result_value("delivery_errors")?;
    let fatal: usize = out.result_value("fatal")?;
    let unacked: usize = out.result_value("unacked")?;
    let acked_n: usize = out.result_value("acked")?;
    ensure!(
        errors == 0 && fatal == 0 && unacked == 0 && acked_n as u64 == COUNT,
        "the producer saw {errors} delivery errors, {fatal} fatal errors, {unacked} records never reported, \
         {acked_n} acked of {COUNT}:\n{summary}\nstderr of the surviving nodes:\n{}",
        survivors.iter().map(|&id| format!("node {id}:\n{}", grep(&cluster.stderr(id), &["WARN", "ERROR"]))).collect::<Vec<_>>().join("\n")
    );
    let acked: Vec<(i32, i64, u64)> = std::fs::read_to_string(&acked_path)?
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            ensure!(f.len() == 3, "bad acked line `{l}`");
            Ok((f[0].parse()?, f[1].parse()?, f[2].parse()?))
        })
        .collect::<Result<_>>()?;

    // Read everything back (from the survivors) and compare.
    let read = read_topic(&survivor_bootstrap, topic)?;
    let probes = verify_exactly_once(&acked, &read, COUNT, PARTITIONS)?;
    eprintln!(
        "all {COUNT} acknowledged records read back exactly once at their offsets ({} records read, {probes} probes); \
         partitions now: {:?}",
        read.len(),
        partitions_via(&rt, &cluster.addr(survivors[0]), topic)?
    );
    ensure!(failover < Duration::from_secs(10), "failover took {:.2}s (want < 10 s)", failover.as_secs_f64());
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 2. Divergent tail: truncated on rejoin, then preferred leadership comes back
// ---------------------------------------------------------------------------------------

#[test]
fn cluster_restarted_node_truncates_rejoins_and_regains_leadership() -> Result<()> {
    let topic = "divergent";
    let rt = runtime()?;
    let mut cluster = SamsaCluster::start(3, &[("leader.imbalance.check.interval.seconds", "2")])?;
    let all = [1, 2, 3];
    create_topic(&rt, &cluster.bootstrap(), NewTopic::new(topic, 1, 3).config("min.insync.replicas", "1"))?;
    let parts = wait_topic_ready(&rt, &cluster.addr(1), topic, 1, 3)?;
    let (leader, replicas, _) = parts[0].clone();
    ensure!(leader == replicas[0], "the first leader {leader} is not the preferred replica of {replicas:?}");
    let l = leader as usize;
    let followers = others(&all, l);
    let (f1, f2) = (followers[0], followers[1]);
    eprintln!("{topic}-0: leader {l}, followers {f1} {f2}, replicas {replicas:?}");

    // 1. acks=all records: on every replica.
    let before: Vec<String> = (0..100).map(|i| format!("before-{i}")).collect();
    let before_offsets = rt.block_on(async {
        let p = samsa_producer(&cluster.bootstrap(), "all", &[]).await?;
        send_values(&p, topic, 0, &before, Duration::from_secs(30)).await
    })?;
    ensure!(before_offsets == (0..100).collect::<Vec<i64>>(), "acks=all records at offsets {before_offsets:?}");

    // 2. Both followers frozen; the leader takes an acks=1 tail nobody else sees. Any
    // follower fetch already parked on the leader (a long poll of at most
    // replica.fetch.wait.max.ms = 500 ms) must be answered before the tail is written, or a
    // follower would wake up holding part of it: give it 1.5 s, a bound, not a hope.
    cluster.pause(f1)?;
    cluster.pause(f2)?;
    std::thread::sleep(Duration::from_millis(1500));
    let divergent: Vec<String> = (0..50).map(|i| format!("divergent-{i}")).collect();
    let divergent_offsets = rt.block_on(async {
        let p = samsa_producer(&cluster.addr(l), "1", &[]).await?;
        send_values(&p, topic, 0, &divergent, Duration::from_secs(20)).await
    })?;
    ensure!(divergent_offsets == (100..150).collect::<Vec<i64>>(), "acks=1 records at offsets {divergent_offsets:?}");

    // 3. The leader dies; the followers wake up and elect one of themselves.
    cluster.kill9(l)?;
    let t_kill = Instant::now();
    cluster.resume(f1)?;
    cluster.resume(f2)?;
    let mut seen = Vec::new();
    settle(Duration::from_secs(30), &format!("a new leader of {topic}-0 among {f1}, {f2}"), || {
        seen = partitions_via(&rt, &cluster.addr(f1), topic)?;
        Ok(seen[0].0 == f1 as i32 || seen[0].0 == f2 as i32)
    })
    .with_context(|| format!("last: {seen:?}\nnode {f1}:\n{}\nnode {f2}:\n{}", cluster.stderr(f1), cluster.stderr(f2)))?;
    let new_leader = seen[0].0;
    eprintln!("new leader {new_leader} after {:.2}s: {:?}", t_kill.elapsed().as_secs_f64(), seen[0]);

    // 4. More acks=all records, on the new leader.
    let after: Vec<String> = (0..100).map(|i| format!("after-{i}")).collect();
    let after_offsets = rt.block_on(async {
        let p = samsa_producer(&addrs(&cluster, &followers), "all", &[]).await?;
        send_values(&p, topic, 0, &after, Duration::from_secs(60)).await
    })?;
    ensure!(
        after_offsets == (100..200).collect::<Vec<i64>>(),
        "acks=all records after the failover at offsets {after_offsets:?} (want 100..200: the new leader \
         must not have the old leader's acks=1 tail)"
    );

    // 5. The old leader comes back: truncates its tail, rejoins the ISR, leads again.
    cluster.restart(l)?;
    let t_restart = Instant::now();
    settle(Duration::from_secs(30), &format!("node {l} back in the ISR of {topic}-0"), || {
        seen = partitions_via(&rt, &cluster.addr(f1), topic)?;
        Ok(seen[0].2.contains(&(l as i32)))
    })
    .with_context(|| format!("last: {seen:?}\nnode {l}:\n{}", cluster.stderr(l)))?;
    eprintln!("node {l} in the ISR after {:.2}s: {:?}", t_restart.elapsed().as_secs_f64(), seen[0]);
    settle(Duration::from_secs(30), &format!("node {l} leading {topic}-0 again (preferred replica)"), || {
        seen = partitions_via(&rt, &cluster.addr(l), topic)?;
        Ok(seen[0].0 == l as i32)
    })
    .with_context(|| format!("last: {seen:?}\nnode {l}:\n{}", cluster.stderr(l)))?;
    eprintln!("node {l} leads again after {:.2}s: {:?}", t_restart.elapsed().as_secs_f64(), seen[0]);

    let stderr_l = cluster.stderr(l);
    let truncated = grep(&stderr_l, &["truncated divergent log tail"]);
    ensure!(!truncated.is_empty(), "node {l} never logged `truncated divergent log tail`; its stderr:\n{stderr_l}");
    eprintln!("node {l}: {truncated}");

    // 6. Read back through the old leader: exactly the acks=all records, none of the tail.
    let read = read_topic(&cluster.addr(l), topic)?;
    ensure!(
        seen[0].0 == l as i32 && partitions_via(&rt, &cluster.addr(l), topic)?[0].0 == l as i32,
        "leadership moved away from node {l} during the read"
    );
    let want: Vec<(i32, i64, String)> =
        before.iter().chain(&after).enumerate().map(|(i, v)| (0, i as i64, v.clone())).collect();
    let leaked: Vec<&(i32, i64, String)> = read.iter().filter(|r| r.2.starts_with("divergent-")).collect();
    ensure!(leaked.is_empty(), "acks=1 records of the dead leader survived: {leaked:?}");
    if read != want {
        let first = read.iter().zip(&want).position(|(g, w)| g != w).unwrap_or(read.len().min(want.len()));
        bail!(
            "read {} records, want {}; first difference at #{first}: got {:?}, want {:?}",
            read.len(),
            want.len(),
            read.get(first),
            want.get(first)
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 3. Controller kill -9: metadata changes resume within 10 s
// ---------------------------------------------------------------------------------------

#[test]
fn cluster_controller_kill9_then_create_topic_within_10s() -> Result<()> {
    let rt = runtime()?;
    let mut cluster = SamsaCluster::start(3, &[])?;
    let all = [1, 2, 3];
    let describe = |bootstrap: String| -> Result<samsa_client::admin::ClusterDescription> {
        rt.block_on(async {
            let fut = async {
                let admin = Admin::new(AdminConfig { common: common(&bootstrap, 2000)? }).await?;
                Ok::<_, anyhow::Error>(admin.describe_cluster().await?)
            };
            tokio::time::timeout(Duration::from_secs(5), fut).await.map_err(|_| anyhow!("describe_cluster timed out"))?
        })
    };
    let mut controller = None;
    settle(Duration::from_secs(30), "an active controller", || {
        controller = describe(cluster.bootstrap())?.controller;
        Ok(controller.is_some())
    })?;
    let controller = controller.unwrap() as usize;
    ensure!(all.contains(&controller), "controller id {controller} is not a node");
    let survivors = others(&all, controller);
    eprintln!("active controller: node {controller}");

    cluster.kill9(controller)?;
    let t0 = Instant::now();
    let topic = "after-controller-kill";
    let mut attempt = 0;
    let mut log = Vec::new();
    let created = loop {
        ensure!(
            t0.elapsed() < Duration::from_secs(30),
            "no topic created within 30 s of killing controller {controller}; attempts:\n{}",
            log.join("\n")
        );
        let via = cluster.addr(survivors[attempt % 2]);
        attempt += 1;
        let res = rt.block_on(async {
            let fut = async {
                let admin = Admin::new(AdminConfig { common: common(&via, 2000)? }).await?;
                admin.create_topics(&[NewTopic::new(topic, 1, 2)]).await?;
                Ok::<_, anyhow::Error>(())
            };
            match tokio::time::timeout(Duration::from_millis(2500), fut).await {
                Ok(r) => r,
                Err(_) => Err(anyhow!("attempt timed out after 2.5 s")),
            }
        });
        match res {
            Ok(()) => break t0.elapsed(),
            // An earlier attempt that timed out on our side was applied after all.
            Err(e) if matches!(e.downcast_ref::<Error>(), Some(Error::Broker { error: ResponseError::TopicAlreadyExists, .. })) => {
                log.push(format!("{:.2}s via {via}: {e:#} (an earlier attempt went through)", t0.elapsed().as_secs_f64()));
                break t0.elapsed();
            }
            Err(e) => log.push(format!("{:.2}s via {via}: {e:#}", t0.elapsed().as_secs_f64())),
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    eprintln!("create-topic attempts after the controller kill:\n{}", log.join("\n"));
    eprintln!("controller failover (kill -9 to a created topic): {:.2}s", created.as_secs_f64());
    let desc = describe(addrs(&cluster, &survivors))?;
    eprintln!("new controller: {:?}, brokers {:?}", desc.controller, desc.brokers.iter().map(|b| b.node_id).collect::<Vec<_>>());
    ensure!(
        desc.controller.is_some_and(|c| survivors.contains(&(c as usize))),
        "the controller after the kill is {:?}, not a survivor",
        desc.controller
    );

    // The new topic works: one record in, the same record out.
    let b = addrs(&cluster, &survivors);
    let mut parts = Vec::new();
    settle(Duration::from_secs(30), &format!("{topic}-0 led by a survivor"), || {
        parts = partitions_via(&rt, &cluster.addr(survivors[0]), topic)?;
        Ok(parts.len() == 1 && survivors.contains(&(parts[0].0.max(0) as usize)))
    })
    .with_context(|| format!("last: {parts:?}"))?;
    eprintln!("{topic}: {parts:?}");
    let value = "hello after the controller kill".to_string();
    let offset = rt.block_on(async {
        let p = samsa_producer(&b, "all", &[]).await?;
        send_values(&p, topic, 0, std::slice::from_ref(&value), Duration::from_secs(30)).await
    })?[0];
    let got = rt.block_on(async {
        let fut = async {
            let c = Consumer::from_properties([
                ("bootstrap.servers", b.as_str()),
                ("auto.offset.reset", "earliest"),
                ("request.timeout.ms", "5000"),
                ("fetch.max.wait.ms", "100"),
            ])
            .await?;
            let tp = TopicPartition::new(topic, 0);
            c.assign(std::slice::from_ref(&tp))?;
            c.seek(&tp, offset)?;
            loop {
                let records = c.poll(Duration::from_millis(500)).await?;
                if let Some(r) = records.into_iter().find(|r| r.offset == offset) {
                    return Ok::<_, anyhow::Error>(r);
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(30), fut).await.map_err(|_| anyhow!("consuming the record timed out"))?
    })?;
    ensure!(
        got.value.as_deref() == Some(value.as_bytes()),
        "read {:?} at offset {offset}, want {value:?}",
        got.value
    );
    ensure!(created < Duration::from_secs(10), "creating a topic took {:.2}s after the controller kill (want < 10 s)", created.as_secs_f64());
    Ok(())
}
