//! Cluster mode under failures, on real 3-node clusters (every node a broker and a
//! controller): a frozen partition leader is fenced and steps down without losing or
//! duplicating an acknowledged idempotent write; a leader that loses both followers (and
//! the controller quorum) refuses acks=all writes with NOT_ENOUGH_REPLICAS and never
//! exposes anything past the high watermark; a consumer group survives a kill -9 of its
//! coordinator and resumes from its committed offsets.
//!
//! Metadata is read from chosen nodes (never through a frozen or dead one), every wait
//! polls with a deadline, and the timings of failover are printed.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context, Result};
use samsa_client::admin::{Admin, NewTopic, OffsetSpec};
use samsa_client::config::CommonConfig;
use samsa_client::error::ResponseError;
use samsa_client::net::{Cluster, PartitionInfo};
use samsa_client::{
    Acks, Consumer, ConsumerConfig, Producer, ProducerConfig, ProducerRecord, TopicPartition,
};
use samsa_tests::{python, run_python, segment_batches, wait_until, SamsaCluster};

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// A runtime for Samsa's async client, driven from these synchronous tests.
fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

/// Runs `fut` on `rt` for at most `limit`.
fn run<T>(
    rt: &tokio::runtime::Runtime,
    what: &str,
    limit: Duration,
    fut: impl Future<Output = Result<T>>,
) -> Result<T> {
    rt.block_on(async {
        tokio::time::timeout(limit, fut)
            .await
            .map_err(|_| anyhow!("{what} did not finish within {limit:?}"))?
    })
}

/// One node's view of the active controller and of a topic's partitions, asked of that node
/// only (short timeouts, so a frozen node answers with an error instead of a hang).
async fn controller_and_partitions(addr: &str, topic: &str) -> Result<(i32, Vec<PartitionInfo>)> {
    let mut c = CommonConfig::default();
    c.set("bootstrap.servers", addr)?;
    c.set("request.timeout.ms", "2000")?;
    c.set("socket.connection.setup.timeout.ms", "2000")?;
    let cluster = Cluster::connect(c).await?;
    let md = cluster.refresh(Some(&[topic.to_string()]), false).await?;
    Ok((
        md.controller,
        md.topics
            .get(topic)
            .map(|t| t.partitions.clone())
            .unwrap_or_default(),
    ))
}

/// One node's view of a topic's partitions.
async fn metadata_from(addr: &str, topic: &str) -> Result<Vec<PartitionInfo>> {
    Ok(controller_and_partitions(addr, topic).await?.1)
}

/// `metadata_from` bounded to 5 s; errors (a frozen or dead node) become `None`.
fn view(rt: &tokio::runtime::Runtime, addr: &str, topic: &str) -> Option<Vec<PartitionInfo>> {
    run(
        rt,
        "metadata",
        Duration::from_secs(5),
        metadata_from(addr, topic),
    )
    .ok()
}

/// Creates a topic with Samsa's admin client and waits until every node reports each
/// partition with a leader and a full ISR.
fn create_topic(
    rt: &tokio::runtime::Runtime,
    cluster: &SamsaCluster,
    nodes: usize,
    topic: &str,
    partitions: i32,
    rf: i16,
    configs: &[(&str, &str)],
) -> Result<()> {
    let bootstrap = cluster.bootstrap();
    let mut new = NewTopic::new(topic, partitions, rf);
    for (k, v) in configs {
        new = new.config(*k, *v);
    }
    run(rt, "create topic", Duration::from_secs(30), async {
        let admin = Admin::connect(&bootstrap).await?;
        admin.create_topics(&[new]).await?;
        Ok(())
    })?;
    wait_until(
        Duration::from_secs(30),
        &format!("{topic}: every partition led with a full ISR on every node"),
        || {
            Ok((1..=nodes).all(|id| {
                view(rt, &cluster.addr(id), topic).is_some_and(|ps| {
                    ps.len() == partitions as usize
                        && ps
                            .iter()
                            .all(|p| p.leader >= 0 && p.isr.len() == rf as usize)
                })
            }))
        },
    )
}

/// Partition `p` as node `id` sees it.
fn partition_on(
    rt: &tokio::runtime::Runtime,
    cluster: &SamsaCluster,
    id: usize,
    topic: &str,
    p: usize,
) -> Option<PartitionInfo> {
    view(rt, &cluster.addr(id), topic).and_then(|ps| ps.get(p).cloned())
}

/// The complete `partition offset value` lines of an acknowledgement log.
fn acked(path: &Path) -> Result<Vec<(i32, i64, String)>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let complete = text.rfind('\n').map_or("", |i| &text[..i]);
    complete
        .lines()
        .map(|l| {
            let mut it = l.split_whitespace();
            let (p, o, v) = (it.next(), it.next(), it.next());
            match (
                p.and_then(|p| p.parse().ok()),
                o.and_then(|o| o.parse().ok()),
                v,
            ) {
                (Some(p), Some(o), Some(v)) => Ok((p, o, v.to_string())),
                _ => bail!("bad acknowledgement line `{l}`"),
            }
        })
        .collect()
}

/// Lines of node `id`'s stderr that contain `needle`.
fn stderr_lines(cluster: &SamsaCluster, id: usize, needle: &str) -> Vec<String> {
    cluster
        .stderr(id)
        .lines()
        .filter(|l| l.contains(needle))
        .map(str::to_string)
        .collect()
}

/// (node that logged it, fenced broker, log line) for every "fencing broker" decision.
fn fencings(cluster: &SamsaCluster) -> Vec<(usize, i32, String)> {
    let mut out = Vec::new();
    for id in 1..=3 {
        for line in stderr_lines(cluster, id, "fencing broker") {
            let broker = line
                .rsplit("broker=")
                .next()
                .and_then(|b| b.trim().parse().ok())
                .unwrap_or(-1);
            out.push((id, broker, line));
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// 1. A frozen leader is fenced, a follower takes over, and the old leader comes back as a
//    follower; idempotent acks=all writes from both periods are stored exactly once.
// ---------------------------------------------------------------------------------------

#[test]
fn cluster_frozen_leader_is_fenced_and_steps_down() -> Result<()> {
    let t0 = Instant::now();
    let rt = runtime()?;
    // Preferred-leader elections are pushed out of the test's time frame so that the old
    // leader, once back in the ISR, stays a follower (the state the test waits for).
    let mut cluster =
        SamsaCluster::start(3, &[("leader.imbalance.check.interval.seconds", "3600")])?;
    let topic = "frozen-leader";
    create_topic(
        &rt,
        &cluster,
        3,
        topic,
        3,
        3,
        &[("min.insync.replicas", "2")],
    )?;
    let work = tempfile::Builder::new()
        .prefix("samsa-cluster-b-")
        .tempdir()?;
    let (acked_path, stop) = (work.path().join("acked.txt"), work.path().join("stop"));
    let bootstrap = cluster.bootstrap();
    let mut producer = python("cluster_b_produce.py")?
        .args([
            bootstrap.as_str(),
            topic,
            "3",
            acked_path.to_str().unwrap(),
            stop.to_str().unwrap(),
        ])
        .spawn()?;
    let p0_acks = |path: &Path| -> Result<usize> {
        Ok(acked(path)?.iter().filter(|(p, _, _)| *p == 0).count())
    };

    wait_until(
        Duration::from_secs(60),
        "300 acknowledged records on partition 0",
        || {
            ensure!(!producer.has_exited()?, "the producer exited early");
            Ok(p0_acks(&acked_path)? >= 300)
        },
    )?;
    let (controller, parts) = run(
        &rt,
        "metadata",
        Duration::from_secs(10),
        controller_and_partitions(&cluster.addr(1), topic),
    )?;
    let old = parts.first().cloned().context("partition 0 metadata")?;
    let frozen = old.leader as usize;
    let others: Vec<usize> = (1..=3).filter(|id| *id != frozen).collect();
    eprintln!("partition 0 before the freeze: {old:?}; active controller: node {controller}; freezing node {frozen}");

    let acked_before = acked(&acked_path)?.len();
    cluster.pause(frozen)?;
    let paused_at = Instant::now();
    let mut new_leader = -1;
    let failover = wait_until(
        Duration::from_secs(15),
        "another leader for partition 0 on the other nodes",
        || {
            let views: Vec<Option<PartitionInfo>> = others
                .iter()
                .map(|id| partition_on(&rt, &cluster, *id, topic, 0))
                .collect();
            let leaders: Vec<i32> = views
                .iter()
                .map(|v| v.as_ref().map_or(-2, |p| p.leader))
                .collect();
            if leaders.iter().all(|l| *l >= 0 && *l != frozen as i32)
                && leaders.windows(2).all(|w| w[0] == w[1])
            {
                new_leader = leaders[0];
                let isr = &views[0].as_ref().expect("seen").isr;
                ensure!(
                    !isr.contains(&(frozen as i32)),
                    "the fenced node {frozen} is still in the ISR {isr:?} of the new leader"
                );
                return Ok(true);
            }
            Ok(false)
        },
    );
    if let Err(e) = failover {
        cluster.resume(frozen)?;
        return Err(e.context(format!(
            "stderr of node {}:\n{}",
            others[0],
            cluster.stderr(others[0])
        )));
    }
    let failover_time = paused_at.elapsed();
    eprintln!("partition 0: node {new_leader} leads {failover_time:?} after node {frozen} froze");

    // Production goes on through the new leader while the old one is still frozen.
    let p0_at_failover = p0_acks(&acked_path)?;
    let resumed = wait_until(
        Duration::from_secs(60),
        "200 more acknowledgements on partition 0 from the new leader",
        || {
            ensure!(!producer.has_exited()?, "the producer exited early");
            Ok(p0_acks(&acked_path)? >= p0_at_failover + 200)
        },
    );
    let acked_frozen = acked(&acked_path)?.len() - acked_before;
    cluster.resume(frozen)?;
    resumed?;
    let resumed_at = Instant::now();

    wait_until(
        Duration::from_secs(60),
        &format!("node {frozen} following partition 0 and back in its ISR, on every node"),
        || {
            Ok((1..=3).all(|id| {
                partition_on(&rt, &cluster, id, topic, 0).is_some_and(|p| {
                    p.leader >= 0
                        && p.leader != frozen as i32
                        && p.isr.contains(&(frozen as i32))
                        && p.isr.len() == 3
                })
            }))
        },
    )?;
    let rejoin_time = resumed_at.elapsed();
    let back = partition_on(&rt, &cluster, frozen, topic, 0).context("partition 0 metadata")?;
    eprintln!("partition 0 after the resume: {back:?}; node {frozen} rejoined the ISR {rejoin_time:?} after SIGCONT");

    let before_stop = acked(&acked_path)?.len();
    wait_until(
        Duration::from_secs(60),
        "300 more acknowledgements after the old leader returned",
        || {
            ensure!(!producer.has_exited()?, "the producer exited early");
            Ok(acked(&acked_path)?.len() >= before_stop + 300)
        },
    )?;
    std::fs::write(&stop, b"")?;
    let produced = producer.wait(Duration::from_secs(120))?;
    let all = acked(&acked_path)?;
    eprintln!(
        "producer: {:?}; acknowledged before the freeze {acked_before}, while frozen {acked_frozen}, after the resume {}",
        produced.result()?,
        all.len() - acked_before - acked_frozen
    );
    ensure!(
        produced.result_value::<usize>("acked")? == all.len(),
        "the acknowledgement log is incomplete"
    );
    ensure!(
        produced.result_value::<usize>("fatal")? == 0,
        "the idempotent producer hit a fatal error:\n{}",
        produced.stderr
    );
    ensure!(
        produced.result_value::<usize>("failed")? == 0,
        "records failed for good:\n{}",
        produced.stderr
    );
    ensure!(
        produced.result_value::<usize>("unfinished")? == 0,
        "records were still unacknowledged after the flush"
    );

    let out = run_python(
        "cluster_b_verify.py",
        &[bootstrap.as_str(), topic, "3", acked_path.to_str().unwrap()],
    )?;
    eprintln!("verify: {:?}", out.result()?);
    ensure!(out.result_value::<usize>("acked")? == all.len());
    ensure!(
        out.result_value::<usize>("missing")? == 0,
        "acknowledged records lost or moved:\n{}",
        out.stderr
    );
    ensure!(
        out.result_value::<usize>("duplicates")? == 0,
        "acknowledged records stored twice:\n{}",
        out.stderr
    );
    ensure!(
        out.result_value::<usize>("gaps")? == 0,
        "holes in the partitions:\n{}",
        out.stderr
    );
    let truncated: Vec<String> = stderr_lines(&cluster, frozen, "truncated divergent log tail");
    eprintln!("node {frozen} truncation lines: {truncated:#?}");
    eprintln!(
        "cluster_frozen_leader_is_fenced_and_steps_down: failover {failover_time:?}, rejoin {rejoin_time:?}, total {:?}",
        t0.elapsed()
    );

    // Only the frozen broker lost its session: once resumed, the old node (possibly the
    // old active controller) must step down, not fence the brokers that kept running.
    let fenced = fencings(&cluster);
    eprintln!(
        "fencing decisions (deciding node, fenced broker): {:?}",
        fenced.iter().map(|(n, b, _)| (n, b)).collect::<Vec<_>>()
    );
    let wrong: Vec<&(usize, i32, String)> = fenced
        .iter()
        .filter(|(_, b, _)| *b != frozen as i32)
        .collect();
    ensure!(
        wrong.is_empty(),
        "healthy brokers were fenced (node {frozen} was frozen; node {controller} was the active controller before the freeze); \
         partition 0 went from leader epoch {} to {} for one failover:\n{}",
        old.leader_epoch,
        back.leader_epoch,
        wrong.iter().map(|(n, _, l)| format!("node {n}: {l}")).collect::<Vec<_>>().join("\n")
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 2. Both followers (and with them the controller quorum) die: the leader refuses acks=all
//    with NOT_ENOUGH_REPLICAS once they are out of touch for replica.lag.time.max.ms, and
//    readers see exactly what was acknowledged before.
// ---------------------------------------------------------------------------------------

#[test]
fn cluster_two_nodes_down_refuses_acks_all() -> Result<()> {
    const N: usize = 200;
    const LAG: Duration = Duration::from_millis(3000);
    let t0 = Instant::now();
    let rt = runtime()?;
    let mut cluster = SamsaCluster::start(3, &[("replica.lag.time.max.ms", "3000")])?;
    let topic = "two-down";
    create_topic(
        &rt,
        &cluster,
        3,
        topic,
        1,
        3,
        &[("min.insync.replicas", "2")],
    )?;
    let p0 = partition_on(&rt, &cluster, 1, topic, 0).context("partition 0 metadata")?;
    let leader = p0.leader as usize;
    let followers: Vec<usize> = (1..=3).filter(|id| *id != leader).collect();
    let bootstrap = cluster.bootstrap();

    let acked: Vec<(i64, String)> = run(
        &rt,
        "producing the acknowledged records",
        Duration::from_secs(60),
        async {
            let producer = Producer::new(ProducerConfig::new(&bootstrap)?.acks(Acks::All)).await?;
            let mut futures = Vec::new();
            for i in 0..N {
                futures.push((
                    format!("acked-{i:04}"),
                    producer
                        .send(ProducerRecord::new(topic, format!("acked-{i:04}")).partition(0))
                        .await?,
                ));
            }
            let mut out = Vec::new();
            for (v, f) in futures {
                out.push((f.await?.offset, v));
            }
            producer.close().await;
            Ok(out)
        },
    )?;
    let offsets: Vec<i64> = acked.iter().map(|(o, _)| *o).collect();
    ensure!(
        offsets == (0..N as i64).collect::<Vec<_>>(),
        "acknowledged offsets {offsets:?}"
    );

    cluster.kill9(followers[0])?;
    cluster.kill9(followers[1])?;
    let killed_at = Instant::now();
    eprintln!("killed followers {followers:?}; node {leader} is left alone with the partition");

    // The probe gives up at once (no retries) so each answer is the broker's own.
    let leader_addr = cluster.addr(leader);
    let probe = run(&rt, "probe producer", Duration::from_secs(30), async {
        Ok(Producer::new(ProducerConfig::from_properties([
            ("bootstrap.servers", leader_addr.as_str()),
            ("acks", "all"),
            ("retries", "0"),
            ("linger.ms", "0"),
            ("request.timeout.ms", "1500"),
            ("delivery.timeout.ms", "5000"),
        ])?)
        .await?)
    })?;
    let bound = LAG + Duration::from_secs(5);
    let mut answers: Vec<(Duration, String)> = Vec::new();
    let mut refused_after = None;
    let mut k = 0;
    while killed_at.elapsed() < bound + Duration::from_secs(2) {
        let value = format!("probe-{k:04}");
        k += 1;
        let r = run(&rt, "probe", Duration::from_secs(10), async {
            Ok(probe
                .send_and_wait(ProducerRecord::new(topic, value).partition(0))
                .await)
        })?;
        let at = killed_at.elapsed();
        match r {
            Ok(m) => bail!(
                "a probe was acknowledged at offset {} {at:?} after both followers died",
                m.offset
            ),
            Err(e) if e.kafka_error() == Some(ResponseError::NotEnoughReplicas) => {
                answers.push((at, e.to_string()));
                refused_after = Some(at);
                break;
            }
            Err(e) => answers.push((at, e.to_string())),
        }
    }
    eprintln!("probe answers (time since the kill, error): {answers:#?}");
    let refused_after = refused_after.ok_or_else(|| {
        anyhow!("no NOT_ENOUGH_REPLICAS within {bound:?} of the kill; answers: {answers:#?}")
    })?;
    ensure!(
        refused_after <= bound,
        "NOT_ENOUGH_REPLICAS only {refused_after:?} after the kill (bound {bound:?})"
    );
    ensure!(ResponseError::NotEnoughReplicas.code() == 19);
    // From now on every acks=all write is refused before it is appended.
    for i in 0..3 {
        let value = format!("refused-{i}");
        let started = Instant::now();
        let r = run(&rt, "probe", Duration::from_secs(10), async {
            Ok(probe
                .send_and_wait(ProducerRecord::new(topic, value).partition(0))
                .await)
        })?;
        match r {
            Err(e) if e.kafka_error() == Some(ResponseError::NotEnoughReplicas) => {
                ensure!(
                    started.elapsed() < Duration::from_millis(1500),
                    "NOT_ENOUGH_REPLICAS took {:?}: the write waited instead of being refused",
                    started.elapsed()
                );
            }
            other => bail!("probe {i} after the refusal: {other:?}, want NOT_ENOUGH_REPLICAS (19)"),
        }
    }

    // The survivor still leads; readers see exactly the acknowledged records.
    let still = run(
        &rt,
        "metadata",
        Duration::from_secs(10),
        metadata_from(&leader_addr, topic),
    )?;
    ensure!(
        still.first().is_some_and(|p| p.leader == leader as i32),
        "node {leader} no longer leads: {still:?}"
    );
    let (latest, read) = run(
        &rt,
        "reading the partition from the survivor",
        Duration::from_secs(60),
        async {
            let admin = Admin::connect(&leader_addr).await?;
            let tp = TopicPartition::new(topic, 0);
            let latest = admin
                .list_offsets(std::slice::from_ref(&tp), OffsetSpec::Latest)
                .await?[&tp]
                .0;
            let consumer = Consumer::new(ConsumerConfig::new(&leader_addr)?).await?;
            consumer.assign(std::slice::from_ref(&tp))?;
            consumer.seek(&tp, 0)?;
            let mut read = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(30);
            while read.len() < N && Instant::now() < deadline {
                read.extend(consumer.poll(Duration::from_millis(500)).await?);
            }
            // Anything past the high watermark would show up here.
            let quiet = Instant::now() + Duration::from_secs(2);
            while Instant::now() < quiet {
                read.extend(consumer.poll(Duration::from_millis(200)).await?);
            }
            consumer.close().await?;
            Ok((latest, read))
        },
    )?;
    let got: Vec<(i64, String)> = read
        .iter()
        .map(|r| {
            (
                r.offset,
                r.value
                    .as_ref()
                    .map(|v| String::from_utf8_lossy(v).into_owned())
                    .unwrap_or_default(),
            )
        })
        .collect();
    ensure!(
        latest == N as i64,
        "ListOffsets(latest) is {latest} on the survivor, want {N}"
    );
    ensure!(
        got == acked,
        "the survivor served {} records, want exactly the {N} acknowledged ones; extra: {:?}",
        got.len(),
        got.iter().skip(N).take(5).collect::<Vec<_>>()
    );

    // What the log holds beyond the high watermark (appended before the refusals began).
    let dir = cluster.data_dir(leader).join(format!("{topic}-0"));
    let mut stored = 0i64;
    for entry in std::fs::read_dir(&dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "log") {
            stored += segment_batches(&path)?
                .iter()
                .map(|(_, n)| i64::from(*n))
                .sum::<i64>();
        }
    }
    ensure!(
        stored >= N as i64,
        "the survivor's log holds {stored} records, fewer than the {N} acknowledged"
    );
    eprintln!(
        "cluster_two_nodes_down_refuses_acks_all: NOT_ENOUGH_REPLICAS {refused_after:?} after the kill; log holds {stored} records, {} of them past the high watermark and never served; total {:?}",
        stored - N as i64,
        t0.elapsed()
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 3. A consumer group survives a kill -9 of its coordinator.
// ---------------------------------------------------------------------------------------

#[test]
fn cluster_group_survives_coordinator_kill9() -> Result<()> {
    const N: usize = 3000;
    const PARTITIONS: i32 = 6;
    let t0 = Instant::now();
    let rt = runtime()?;
    let mut cluster = SamsaCluster::start(3, &[])?;
    let (topic, group) = ("group-kill", "cluster-b-group");
    create_topic(&rt, &cluster, 3, topic, PARTITIONS, 3, &[])?;
    let bootstrap = cluster.bootstrap();

    let end: BTreeMap<i32, i64> = run(&rt, "producing", Duration::from_secs(120), async {
        let producer = Producer::new(ProducerConfig::new(&bootstrap)?.acks(Acks::All)).await?;
        let mut futures = Vec::new();
        for i in 0..N {
            futures.push(
                producer
                    .send(
                        ProducerRecord::new(topic, format!("g-{i:05}"))
                            .partition(i as i32 % PARTITIONS),
                    )
                    .await?,
            );
        }
        for f in futures {
            f.await?;
        }
        producer.close().await;
        let admin = Admin::connect(&bootstrap).await?;
        let tps: Vec<TopicPartition> = (0..PARTITIONS)
            .map(|p| TopicPartition::new(topic, p))
            .collect();
        Ok(admin
            .list_offsets(&tps, OffsetSpec::Latest)
            .await?
            .into_iter()
            .map(|(tp, (o, _))| (tp.partition, o))
            .collect())
    })?;
    ensure!(
        end.values()
            .all(|o| *o == (N as i64) / i64::from(PARTITIONS)),
        "end offsets {end:?}"
    );
    let end_arg = end
        .iter()
        .map(|(p, o)| format!("{p}:{o}"))
        .collect::<Vec<_>>()
        .join(",");

    let work = tempfile::Builder::new()
        .prefix("samsa-cluster-b-")
        .tempdir()?;
    let (events, ready, killed) = (
        work.path().join("events.txt"),
        work.path().join("ready"),
        work.path().join("killed"),
    );
    let mut consumer = python("cluster_b_group.py")?
        .args([
            bootstrap.as_str(),
            topic,
            group,
            end_arg.as_str(),
            events.to_str().unwrap(),
            ready.to_str().unwrap(),
            killed.to_str().unwrap(),
            // Pause (and kill) after 1750 records: with commits every 100 records, one
            // partition is then committed part-way (e.g. 200 of 500) and processed past it.
            "1750",
        ])
        .spawn()?;
    wait_until(
        Duration::from_secs(90),
        "the consumer to process half the records and pause",
        || {
            ensure!(!consumer.has_exited()?, "the group consumer exited early");
            Ok(ready.exists())
        },
    )?;

    // The coordinator, by FindCoordinator; it must be the leader of the group's
    // __consumer_offsets partition.
    let (coordinator, offsets_leader) =
        run(&rt, "FindCoordinator", Duration::from_secs(30), async {
            let mut c = CommonConfig::default();
            c.set("bootstrap.servers", &bootstrap)?;
            let cl = Cluster::connect(c).await?;
            let (node, _) = cl.coordinator(group, 0).await?;
            let md = cl
                .refresh(Some(&["__consumer_offsets".to_string()]), false)
                .await?;
            let parts = &md
                .topics
                .get("__consumer_offsets")
                .context("no __consumer_offsets")?
                .partitions;
            let index = samsa_tests::kafka_partition_of(group, parts.len());
            Ok((node, parts[index].leader))
        })?;
    ensure!(coordinator == offsets_leader, "FindCoordinator says {coordinator}, the group's offsets partition is led by {offsets_leader}");
    let coordinator = coordinator as usize;
    cluster.kill9(coordinator)?;
    let killed_at = Instant::now();
    std::fs::write(&killed, b"")?;
    eprintln!("killed the coordinator of `{group}`, node {coordinator}");

    let survivors = (1..=3)
        .filter(|id| *id != coordinator)
        .map(|id| cluster.addr(id))
        .collect::<Vec<_>>()
        .join(",");
    let mut new_coordinator = -1;
    let mut last_answer = String::new();
    let found = wait_until(Duration::from_secs(30), "a new coordinator", || {
        let found = run(&rt, "FindCoordinator", Duration::from_secs(5), async {
            let mut c = CommonConfig::default();
            c.set("bootstrap.servers", &survivors)?;
            c.set("request.timeout.ms", "2000")?;
            let cl = Cluster::connect(c).await?;
            Ok(cl.coordinator(group, 0).await?.0)
        });
        last_answer = format!("{found:?}");
        if let Ok(node) = found {
            if node >= 0 && node != coordinator as i32 {
                new_coordinator = node;
                return Ok(true);
            }
        }
        Ok(false)
    });
    if let Err(e) = found {
        let alive: Vec<(usize, bool)> = (1..=3)
            .filter(|id| *id != coordinator)
            .map(|id| (id, cluster.node(id).is_running()))
            .collect();
        return Err(e.context(format!(
            "last FindCoordinator answer: {last_answer}; survivors running: {alive:?}"
        )));
    }
    let failover = killed_at.elapsed();
    eprintln!("node {new_coordinator} coordinates `{group}` {failover:?} after the kill");

    let out = consumer.wait(Duration::from_secs(240))?;
    eprintln!("group consumer: {:?}", out.result()?);
    ensure!(
        out.result_value::<usize>("never")? == 0,
        "records never consumed:\n{}",
        out.stderr
    );
    ensure!(out.result_value::<usize>("processed")? == N);
    ensure!(
        out.result_value::<usize>("below_commit")? == 0,
        "re-consumed records below the last successful commit:\n{}",
        out.stderr
    );
    ensure!(
        out.result_value::<usize>("restart_mismatch")? == 0,
        "after the kill the group did not resume at its committed offsets:\n{}",
        out.stderr
    );
    ensure!(
        out.result_value::<usize>("mid_commits")? >= 1 && out.result_value::<usize>("restart_checked")? >= 1,
        "the scenario did not kill with a partition committed part-way and resumed after the kill: {:?}",
        out.result()?
    );
    ensure!(out.result_value::<String>("final_committed")? == end_arg);
    ensure!(
        out.result_value::<String>("fresh_committed")? == end_arg,
        "a fresh member found other committed offsets:\n{}",
        out.stderr
    );
    ensure!(
        out.result_value::<usize>("fresh_records")? == 0,
        "a fresh member got records past the committed offsets"
    );

    let committed = run(&rt, "list_group_offsets", Duration::from_secs(30), async {
        let admin = Admin::connect(&survivors).await?;
        Ok(admin.list_group_offsets(group).await?)
    })?;
    let committed: BTreeMap<i32, i64> = committed
        .into_iter()
        .filter(|(tp, _)| tp.topic == topic)
        .map(|(tp, o)| (tp.partition, o))
        .collect();
    ensure!(
        committed == end,
        "committed offsets {committed:?}, end offsets {end:?}"
    );
    eprintln!(
        "cluster_group_survives_coordinator_kill9: new coordinator after {failover:?}, reassigned after the kill: {}, re-consumed {}, total {:?}",
        out.result_value::<usize>("assigns_after_kill")?,
        out.result_value::<usize>("reprocessed")?,
        t0.elapsed()
    );
    Ok(())
}
