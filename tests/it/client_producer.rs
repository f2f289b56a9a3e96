//! Samsa's async Rust producer (`samsa_client::Producer`) against a real `samsa server`,
//! cross-checked with librdkafka (confluent-kafka and kcat): murmur2 partitioning parity,
//! every compression codec read back by other clients, acks=all through a kill -9 and
//! restart, typed errors for bad input, and ordering/flush behaviour.
//!
//! Every await is bounded by a timeout; blocking harness calls (starting servers, running
//! Python or kcat) run under `block_in_place` so they never stall the producer's tasks.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context, Result};
use bytes::Bytes;
use samsa_client::producer::partitioner::partition_for_key;
use samsa_client::wire::kafka_protocol::records::Compression;
use samsa_client::{Acks, Error, Producer, ProducerConfig, ProducerRecord, RecordMetadata};
use samsa_tests::{blocking, bounded, segment_batches, run_kcat, run_python, samsa_bin, SamsaServer};

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// Polls `check` every 20 ms (without blocking the runtime) until it holds.
async fn wait_for(
    what: &str,
    limit: Duration,
    mut check: impl FnMut() -> Result<bool>,
) -> Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        if check()? {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The encoding `read_partitions.py` uses: `x` + hex, or `-` for NULL.
fn enc(b: Option<&[u8]>) -> String {
    match b {
        Some(b) => format!("x{}", hex(b)),
        None => "-".into(),
    }
}

/// Every record of `topic` as dumped by `read_partitions.py` (confluent-kafka, no
/// group, from the beginning to each partition's high watermark), one line per record:
/// `PARTITION OFFSET TS_TYPE TS KEY VALUE HEADERS`.
fn read_with_confluent(bootstrap: &str, topic: &str) -> Result<Vec<String>> {
    let dir = tempfile::Builder::new()
        .prefix("samsa-cp-read-")
        .tempdir()?;
    let out_path = dir.path().join("records.txt");
    let out = run_python(
        "read_partitions.py",
        &[bootstrap, topic, out_path.to_str().unwrap()],
    )?;
    let lines: Vec<String> = std::fs::read_to_string(&out_path)?
        .lines()
        .map(str::to_string)
        .collect();
    ensure!(
        out.result_value::<usize>("consumed")? == lines.len(),
        "reader RESULT {:?} disagrees with its {} dumped lines",
        out.result()?,
        lines.len()
    );
    Ok(lines)
}

/// Shows where two line lists first differ.
fn first_difference(got: &[String], want: &[String]) -> String {
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        if g != w {
            return format!("line {i}: got `{g}`, want `{w}`");
        }
    }
    format!("{} lines, want {}", got.len(), want.len())
}

/// Sends `records` and awaits every acknowledgement (each bounded by `limit` overall).
async fn send_all(
    producer: &Producer,
    records: Vec<ProducerRecord>,
    limit: Duration,
) -> Result<Vec<RecordMetadata>> {
    let n = records.len();
    bounded(&format!("sending {n} records"), limit, async {
        let mut futures = Vec::with_capacity(n);
        for (i, r) in records.into_iter().enumerate() {
            futures.push(
                producer
                    .send(r)
                    .await
                    .with_context(|| format!("send #{i}"))?,
            );
        }
        let mut metas = Vec::with_capacity(n);
        for (i, f) in futures.into_iter().enumerate() {
            metas.push(f.await.with_context(|| format!("delivery of #{i}"))?);
        }
        Ok::<_, anyhow::Error>(metas)
    })
    .await?
}

// ---------------------------------------------------------------------------------------
// 1. murmur2 parity with librdkafka's murmur2_random
// ---------------------------------------------------------------------------------------

/// 10,000 random keys (0..=40 random bytes, so mostly not UTF-8) go through Samsa's
/// producer to one 7-partition topic and through confluent-kafka with
/// `partitioner=murmur2_random` to another; every key must land on the same partition.
///
/// Zero-length keys are included on purpose: librdkafka's murmur2_random only sends NULL
/// keys to a random partition; a zero-length (non-NULL) key is hashed like Java's
/// `Utils.murmur2(new byte[0])` (checked against librdkafka 2.16: b"" always lands on
/// partition 2 of 7, which is Java's `(murmur2([]) & 0x7fffffff) % 7`). So nothing is
/// excluded.
#[tokio::test(flavor = "multi_thread")]
async fn client_producer_murmur2_matches_librdkafka() -> Result<()> {
    const N: usize = 10_000;
    const PARTITIONS: i32 = 7;
    let mut server = blocking(|| {
        SamsaServer::builder()
            .set("num.partitions", PARTITIONS)
            .start()
    })?;
    let b = server.bootstrap().to_string();

    let seed = fastrand::u64(..);
    eprintln!("murmur2 parity: key seed {seed}");
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut keys: Vec<Vec<u8>> = vec![Vec::new(), b"foobar".to_vec(), vec![0xff, 0xfe, 0x80]];
    while keys.len() < N {
        let len = rng.usize(0..=40);
        keys.push((0..len).map(|_| rng.u8(..)).collect());
    }
    let empty = keys.iter().filter(|k| k.is_empty()).count();
    let non_utf8 = keys
        .iter()
        .filter(|k| std::str::from_utf8(k).is_err())
        .count();
    ensure!(
        empty >= 1 && non_utf8 > N / 2,
        "key mix: {empty} empty, {non_utf8} non-UTF-8"
    );

    // Samsa's producer: the topic is auto-created with num.partitions = 7.
    let samsa_topic = "murmur2-samsa";
    let producer = bounded(
        "Producer::new",
        Duration::from_secs(30),
        Producer::new(ProducerConfig::new(&b)?),
    )
    .await??;
    let records: Vec<ProducerRecord> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| ProducerRecord::new(samsa_topic, i.to_string()).key(Bytes::from(k.clone())))
        .collect();
    let metas = send_all(&producer, records, Duration::from_secs(120)).await?;
    let md = producer.cluster().metadata();
    let known = md.topics.get(samsa_topic).map(|t| t.partitions.len());
    ensure!(
        known == Some(PARTITIONS as usize),
        "{samsa_topic} has {known:?} partitions, want {PARTITIONS}"
    );
    let mut seen_offsets = HashSet::new();
    for (i, m) in metas.iter().enumerate() {
        ensure!(
            m.topic == samsa_topic && (0..PARTITIONS).contains(&m.partition),
            "#{i}: {m:?}"
        );
        ensure!(
            seen_offsets.insert((m.partition, m.offset)),
            "#{i}: offset {m:?} acknowledged twice"
        );
    }

    // confluent-kafka with murmur2_random, same keys in the same order.
    let dir = tempfile::Builder::new()
        .prefix("samsa-cp-murmur2-")
        .tempdir()?;
    let keys_path = dir.path().join("keys.hex");
    let out_path = dir.path().join("partitions.txt");
    let mut keys_text = String::with_capacity(N * 40);
    for k in &keys {
        keys_text.push_str(&hex(k));
        keys_text.push('\n');
    }
    std::fs::write(&keys_path, keys_text)?;
    let out = blocking(|| {
        run_python(
            "client_producer_murmur2.py",
            &[
                b.as_str(),
                "murmur2-librdkafka",
                &PARTITIONS.to_string(),
                keys_path.to_str().unwrap(),
                out_path.to_str().unwrap(),
            ],
        )
    })?;
    ensure!(
        out.result_value::<usize>("produced")? == N,
        "{:?}",
        out.result()?
    );
    ensure!(
        out.result_value::<usize>("java_mismatches")? == 0,
        "librdkafka disagrees with Java's formula: {:?}",
        out.result()?
    );
    let theirs: Vec<i32> = std::fs::read_to_string(&out_path)?
        .lines()
        .enumerate()
        .map(|(i, line)| {
            let (idx, p) = line
                .split_once(' ')
                .ok_or_else(|| anyhow!("bad line {line:?}"))?;
            ensure!(idx.parse::<usize>()? == i, "line {i} is for key #{idx}");
            Ok(p.parse()?)
        })
        .collect::<Result<_>>()?;
    ensure!(
        theirs.len() == N,
        "{} partitions from librdkafka, want {N}",
        theirs.len()
    );

    let mismatches: Vec<String> = (0..N)
        .filter(|&i| metas[i].partition != theirs[i])
        .map(|i| {
            format!(
                "key #{i} {:?}: samsa {} librdkafka {}",
                hex(&keys[i]),
                metas[i].partition,
                theirs[i]
            )
        })
        .collect();
    ensure!(
        mismatches.is_empty(),
        "{} of {N} keys land on different partitions (seed {seed}); first: {:#?}",
        mismatches.len(),
        &mismatches[..mismatches.len().min(10)]
    );
    // Every partition was used (a partitioner returning a constant would fail above only
    // if librdkafka did the same).
    let used: HashSet<i32> = metas.iter().map(|m| m.partition).collect();
    ensure!(
        used.len() == PARTITIONS as usize,
        "only partitions {used:?} used"
    );

    bounded("close", Duration::from_secs(30), producer.close()).await?;
    blocking(|| server.terminate())
}

// ---------------------------------------------------------------------------------------
// 2. Codec interop: Samsa writes, kcat and confluent-kafka read
// ---------------------------------------------------------------------------------------

/// Codec id in the low 3 bits of a v2 batch's attributes.
fn codec_id(c: Compression) -> i16 {
    match c {
        Compression::None => 0,
        Compression::Gzip => 1,
        Compression::Snappy => 2,
        Compression::Lz4 => 3,
        Compression::Zstd => 4,
    }
}

async fn codec_round_trip(name: &str, compression: Compression) -> Result<()> {
    const N: usize = 300;
    let mut server = blocking(|| SamsaServer::builder().set("num.partitions", 1).start())?;
    let b = server.bootstrap().to_string();
    let topic = format!("codec-{name}");

    // Some producers are configured by property, some by builder: both must work.
    let config = if !matches!(name, "gzip" | "lz4") {
        ProducerConfig::from_properties([
            ("bootstrap.servers", b.as_str()),
            ("compression.type", name),
            ("linger.ms", "50"),
        ])?
    } else {
        ProducerConfig::new(&b)?
            .compression(compression)
            .linger(Duration::from_millis(50))
    };
    ensure!(
        config.compression == compression,
        "config has {:?}, want {compression:?}",
        config.compression
    );
    let producer = bounded(
        "Producer::new",
        Duration::from_secs(30),
        Producer::new(config),
    )
    .await??;

    let base_ts: i64 = 1_600_000_000_000;
    let key = |i: usize| format!("k-{name}-{i:04}");
    // Repetitive so every codec actually shrinks it; every 37th value is larger.
    let value = |i: usize| {
        let reps = if i.is_multiple_of(37) { 120 } else { 6 };
        format!("{name} value {i:04};").repeat(reps)
    };
    let ts = |i: usize| base_ts + (i as i64) * 1_013;
    let records: Vec<ProducerRecord> = (0..N)
        .map(|i| {
            ProducerRecord::new(topic.clone(), value(i))
                .key(key(i))
                .header("trace-id", format!("t{i}"))
                .header("origin", format!("samsa-rust-{name}"))
                .timestamp(ts(i))
        })
        .collect();
    let metas = send_all(&producer, records, Duration::from_secs(60)).await?;
    // Each record is checked at the offset its acknowledgement gave, so this test is about
    // codecs; that the offsets follow send order is client_producer_keyed_records_in_order's
    // job. The acknowledged offsets must still be exactly 0..N, each record's once.
    let mut index_at = vec![usize::MAX; N];
    for (i, m) in metas.iter().enumerate() {
        ensure!(
            m.topic == topic
                && m.partition == 0
                && m.timestamp == ts(i)
                && (0..N as i64).contains(&m.offset),
            "{name}: #{i} acknowledged as {m:?} (want partition 0, timestamp {}, offset < {N})",
            ts(i)
        );
        let slot = &mut index_at[m.offset as usize];
        ensure!(
            *slot == usize::MAX,
            "{name}: #{i} and #{} both acknowledged at offset {}",
            *slot,
            m.offset
        );
        *slot = i;
    }
    let in_order = index_at.iter().enumerate().filter(|(o, i)| o == *i).count();
    if in_order != N {
        eprintln!(
            "{name}: only {in_order} of {N} records are at offset = send index: {:?}...",
            &index_at[..20]
        );
    }
    bounded("close", Duration::from_secs(30), producer.close()).await?;

    // kcat (librdkafka 2.0 era).
    let kcat_out = blocking(|| {
        run_kcat(&[
            "-b",
            b.as_str(),
            "-C",
            "-t",
            topic.as_str(),
            "-e",
            "-o",
            "beginning",
            "-f",
            "%p|%o|%k|%s|%h|%T\\n",
        ])
    })?;
    let got: Vec<String> = kcat_out.stdout.lines().map(str::to_string).collect();
    let want: Vec<String> = index_at
        .iter()
        .enumerate()
        .map(|(o, &i)| {
            format!(
                "0|{o}|{}|{}|trace-id=t{i},origin=samsa-rust-{name}|{}",
                key(i),
                value(i),
                ts(i)
            )
        })
        .collect();
    ensure!(
        got == want,
        "{name}: kcat read differs: {}",
        first_difference(&got, &want)
    );

    // confluent-kafka (current librdkafka); timestamp type 1 = CreateTime.
    let got = blocking(|| read_with_confluent(&b, &topic))?;
    let want: Vec<String> = index_at
        .iter()
        .enumerate()
        .map(|(o, &i)| {
            format!(
                "0 {o} 1 {} {} {} trace-id={},origin={}",
                ts(i),
                enc(Some(key(i).as_bytes())),
                enc(Some(value(i).as_bytes())),
                enc(Some(format!("t{i}").as_bytes())),
                enc(Some(format!("samsa-rust-{name}").as_bytes())),
            )
        })
        .collect();
    ensure!(
        got == want,
        "{name}: confluent-kafka read differs: {}",
        first_difference(&got, &want)
    );

    // The batches on disk carry the codec (a producer ignoring compression.type would
    // pass the reads above).
    let segment = server
        .data_dir()
        .join(format!("{topic}-0"))
        .join("00000000000000000000.log");
    let batches = segment_batches(&segment)?;
    ensure!(
        !batches.is_empty(),
        "{name}: no batches in {}",
        segment.display()
    );
    let codecs: HashSet<i16> = batches.iter().map(|(c, _)| *c).collect();
    ensure!(
        codecs == HashSet::from([codec_id(compression)]),
        "{name}: batch codecs on disk {codecs:?}, want only {}",
        codec_id(compression)
    );
    let total: i32 = batches.iter().map(|(_, n)| n).sum();
    ensure!(
        total as usize == N,
        "{name}: {total} records in {} batches on disk, want {N}",
        batches.len()
    );
    eprintln!("{name}: {N} records in {} batches", batches.len());
    blocking(|| server.terminate())
}

#[tokio::test(flavor = "multi_thread")]
async fn client_producer_codec_none_read_by_kcat_and_confluent() -> Result<()> {
    codec_round_trip("none", Compression::None).await
}

#[tokio::test(flavor = "multi_thread")]
async fn client_producer_codec_gzip_read_by_kcat_and_confluent() -> Result<()> {
    codec_round_trip("gzip", Compression::Gzip).await
}

#[tokio::test(flavor = "multi_thread")]
async fn client_producer_codec_snappy_read_by_kcat_and_confluent() -> Result<()> {
    codec_round_trip("snappy", Compression::Snappy).await
}

#[tokio::test(flavor = "multi_thread")]
async fn client_producer_codec_lz4_read_by_kcat_and_confluent() -> Result<()> {
    codec_round_trip("lz4", Compression::Lz4).await
}

#[tokio::test(flavor = "multi_thread")]
async fn client_producer_codec_zstd_read_by_kcat_and_confluent() -> Result<()> {
    codec_round_trip("zstd", Compression::Zstd).await
}

// ---------------------------------------------------------------------------------------
// 3. acks=all through a kill -9 and a restart on the same port
// ---------------------------------------------------------------------------------------

/// A `samsa server` on a fixed port. The harness's `restart_builder()` keeps the data
/// directory but listens on `127.0.0.1:0`, so a restarted server gets a new port that a
/// running producer (which knows the broker by its advertised host:port) could never
/// find; this starts the binary on the old port instead.
struct FixedPortServer {
    child: Option<Child>,
    addr: String,
    stderr_path: PathBuf,
    _logs: tempfile::TempDir,
}

impl FixedPortServer {
    fn start(data_dir: &Path, port: u16, sets: &[(&str, &str)]) -> Result<FixedPortServer> {
        let logs = tempfile::Builder::new()
            .prefix("samsa-cp-logs-")
            .tempdir()?;
        let stderr_path = logs.path().join("stderr.log");
        let mut cmd = Command::new(samsa_bin()?);
        cmd.arg("server")
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .args(["--set", "group.initial.rebalance.delay.ms=0"]);
        for (k, v) in sets {
            cmd.arg("--set").arg(format!("{k}={v}"));
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(File::create(&stderr_path)?));
        let mut child = cmd.spawn().context("spawning samsa")?;
        let stdout = child.stdout.take().expect("piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let mut server = FixedPortServer {
            child: Some(child),
            addr: String::new(),
            stderr_path,
            _logs: logs,
        };
        let deadline = Instant::now() + samsa_tests::STARTUP_TIMEOUT;
        loop {
            match rx.recv_timeout(Duration::from_millis(50)) {
                Ok(line) => {
                    if let Some(addr) = line.trim().strip_prefix("samsa listening on ") {
                        server.addr = addr.trim().to_string();
                        return Ok(server);
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    std::thread::sleep(Duration::from_millis(200));
                    bail!(
                        "samsa exited before listening on port {port}; stderr:\n{}",
                        server.stderr()
                    );
                }
            }
            ensure!(
                Instant::now() < deadline,
                "samsa not listening on port {port} in time; stderr:\n{}",
                server.stderr()
            );
        }
    }

    fn stderr(&self) -> String {
        std::fs::read(&self.stderr_path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }
}

impl Drop for FixedPortServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let err = self.stderr();
        let lines: Vec<&str> = err.lines().collect();
        eprintln!(
            "---- restarted samsa {} stderr (tail) ----\n{}",
            self.addr,
            lines[lines.len().saturating_sub(100)..].join("\n")
        );
    }
}

#[derive(Default)]
struct Progress {
    /// Records handed to `send` so far.
    sent: AtomicUsize,
    /// Delivery futures resolved so far (in send order).
    resolved: AtomicUsize,
}

#[tokio::test(flavor = "multi_thread")]
async fn client_producer_acks_all_survive_kill9_and_restart() -> Result<()> {
    const N: usize = 20_000;
    const KILL_AFTER_ACKS: usize = 5_000;
    const SENT_WHILE_DOWN: usize = 1_000;
    let topic = "restart-acks";
    let data = tempfile::Builder::new()
        .prefix("samsa-cp-restart-")
        .tempdir()?;
    // `flush.messages` is the topic-level name; the broker key is
    // log.flush.interval.messages (`--set flush.messages=1` is rejected). With 1 every
    // append is fsynced before the acknowledgement.
    let sets = [
        ("log.flush.interval.messages", "1"),
        ("num.partitions", "3"),
    ];
    let mut first = blocking(|| {
        let mut builder = SamsaServer::builder().data_dir(data.path());
        for (k, v) in sets {
            builder = builder.set(k, v);
        }
        builder.start()
    })?;
    let port = first.port();
    let b = first.bootstrap().to_string();

    // acks=all, default retries and delivery.timeout.ms (120 s).
    let config = ProducerConfig::new(&b)?.acks(Acks::All);
    ensure!(
        config.retries == i32::MAX as u32 && config.delivery_timeout == Duration::from_secs(120)
    );
    let producer = bounded(
        "Producer::new",
        Duration::from_secs(30),
        Producer::new(config),
    )
    .await??;
    // Creates the topic before the clock starts.
    let m = bounded(
        "first send",
        Duration::from_secs(30),
        producer.send_and_wait(ProducerRecord::new(topic, "warm-up")),
    )
    .await??;
    ensure!(m.offset == 0, "warm-up acknowledged as {m:?}");

    let progress = Arc::new(Progress::default());
    let acked: Arc<Mutex<Vec<(usize, i32, i64)>>> = Arc::default();
    let failed: Arc<Mutex<Vec<(usize, String)>>> = Arc::default();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();

    // Sender: paced (5 records per ms at most) so the kill lands mid-stream and records
    // keep being sent while the broker is down.
    let sender = {
        let (producer, progress, failed) = (producer.clone(), progress.clone(), failed.clone());
        tokio::spawn(async move {
            for i in 0..N {
                match producer
                    .send(ProducerRecord::new(topic, format!("rec-{i:05}")))
                    .await
                {
                    Ok(fut) => {
                        let _ = tx.send((i, fut));
                    }
                    Err(e) => failed.lock().unwrap().push((i, format!("send: {e}"))),
                }
                progress.sent.fetch_add(1, Ordering::AcqRel);
                if i % 5 == 4 {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        })
    };
    // Collector: awaits each delivery future in send order.
    let collector = {
        let (progress, acked, failed) = (progress.clone(), acked.clone(), failed.clone());
        tokio::spawn(async move {
            while let Some((i, fut)) = rx.recv().await {
                match fut.await {
                    Ok(m) => acked.lock().unwrap().push((i, m.partition, m.offset)),
                    Err(e) => failed.lock().unwrap().push((i, format!("delivery: {e}"))),
                }
                progress.resolved.fetch_add(1, Ordering::AcqRel);
            }
        })
    };

    wait_for(
        &format!("{KILL_AFTER_ACKS} acknowledgements"),
        Duration::from_secs(60),
        || Ok(acked.lock().unwrap().len() >= KILL_AFTER_ACKS),
    )
    .await?;
    let sent_at_kill = progress.sent.load(Ordering::Acquire);
    let resolved_at_kill = progress.resolved.load(Ordering::Acquire);
    blocking(|| first.kill9())?;
    ensure!(
        sent_at_kill < N,
        "the producer had sent everything before the kill; pace it slower"
    );

    wait_for(
        &format!("{SENT_WHILE_DOWN} sends while the broker is down"),
        Duration::from_secs(60),
        || Ok(progress.sent.load(Ordering::Acquire) >= sent_at_kill + SENT_WHILE_DOWN),
    )
    .await?;
    let sent_at_restart = progress.sent.load(Ordering::Acquire);
    let resolved_at_restart = progress.resolved.load(Ordering::Acquire);
    let second = blocking(|| FixedPortServer::start(data.path(), port, &sets))?;
    ensure!(second.addr == b, "restarted on {}, want {b}", second.addr);
    eprintln!(
        "restart: killed with {sent_at_kill} sent / {resolved_at_kill} resolved; restarted \
         with {sent_at_restart} sent / {resolved_at_restart} resolved"
    );

    bounded("the sender task", Duration::from_secs(120), sender).await??;
    // delivery.timeout.ms (120 s) bounds every record; allow that plus slack.
    bounded("the delivery futures", Duration::from_secs(150), collector).await??;
    bounded("flush", Duration::from_secs(30), producer.flush()).await?;

    let failed = failed.lock().unwrap().clone();
    ensure!(
        failed.is_empty(),
        "{} of {N} records failed, first: {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
    let acked = acked.lock().unwrap().clone();
    ensure!(
        acked.len() == N,
        "{} acknowledgements, want {N}",
        acked.len()
    );
    let mut offsets = HashSet::new();
    for (i, p, o) in &acked {
        ensure!(
            offsets.insert((*p, *o)),
            "record #{i} acknowledged at {p}/{o}, already taken"
        );
    }

    // Read everything back with confluent-kafka from the restarted broker.
    let lines = blocking(|| read_with_confluent(&b, topic))?;
    let mut at: HashMap<(i32, i64), String> = HashMap::new();
    let mut values: BTreeMap<String, usize> = BTreeMap::new();
    for line in &lines {
        let f: Vec<&str> = line.split(' ').collect();
        ensure!(f.len() == 7, "bad reader line {line:?}");
        let value = f[5]
            .strip_prefix('x')
            .ok_or_else(|| anyhow!("NULL value in {line:?}"))?;
        let value = String::from_utf8(
            (0..value.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&value[i..i + 2], 16))
                .collect::<Result<_, _>>()?,
        )?;
        at.insert((f[0].parse()?, f[1].parse()?), value.clone());
        *values.entry(value).or_default() += 1;
    }
    let mut lost = Vec::new();
    for (i, p, o) in &acked {
        let want = format!("rec-{i:05}");
        if at.get(&(*p, *o)) != Some(&want) {
            lost.push(format!(
                "#{i} acked at {p}/{o}, log has {:?}",
                at.get(&(*p, *o))
            ));
        }
    }
    ensure!(
        lost.is_empty(),
        "{} acknowledged records not at their offsets after the restart; first: {:#?}",
        lost.len(),
        &lost[..lost.len().min(10)]
    );
    let missing: Vec<usize> = (0..N)
        .filter(|i| !values.contains_key(&format!("rec-{i:05}")))
        .collect();
    ensure!(
        missing.is_empty(),
        "{} records missing, first {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    // Retried in-flight batches may be duplicated (no idempotence); report how many.
    let dups = values.values().filter(|&&n| n > 1).count();
    eprintln!(
        "restart: {} records in the log, {dups} values written more than once",
        lines.len()
    );
    bounded("close", Duration::from_secs(30), producer.close()).await?;
    drop(second);
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 4. Bad input: typed errors, promptly
// ---------------------------------------------------------------------------------------

const PROMPT: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread")]
async fn client_producer_record_too_large() -> Result<()> {
    let mut server = blocking(SamsaServer::start)?;
    let config = ProducerConfig::from_properties([
        ("bootstrap.servers", server.bootstrap()),
        ("max.request.size", "10000"),
    ])?;
    let producer = bounded("Producer::new", PROMPT, Producer::new(config)).await??;

    // Just under the limit goes through...
    let ok = bounded(
        "send of 9,000 bytes",
        PROMPT,
        producer.send_and_wait(ProducerRecord::new("big", vec![b'a'; 9_000])),
    )
    .await?;
    ensure!(
        matches!(ok, Ok(RecordMetadata { offset: 0, .. })),
        "9,000-byte record: {ok:?}"
    );
    // ...over it is refused before anything is sent.
    let started = Instant::now();
    let err = bounded(
        "send of 20,000 bytes",
        PROMPT,
        producer.send(ProducerRecord::new("big", vec![b'a'; 20_000])),
    )
    .await?;
    match err {
        Err(e @ Error::RecordTooLarge { size, max }) => {
            ensure!(
                max == 10_000 && size > 20_000,
                "RecordTooLarge {{ size: {size}, max: {max} }}"
            );
            let msg = e.to_string();
            ensure!(
                msg.contains("max.request.size")
                    && msg.contains("10000")
                    && msg.contains(&size.to_string()),
                "message: {msg}"
            );
        }
        Err(other) => bail!("want RecordTooLarge, got {other:?}"),
        Ok(_) => bail!("a 20,000-byte record was accepted with max.request.size=10000"),
    }
    ensure!(
        started.elapsed() < Duration::from_secs(1),
        "RecordTooLarge took {:?}",
        started.elapsed()
    );
    bounded("close", PROMPT, producer.close()).await?;
    blocking(|| server.terminate())
}

#[tokio::test(flavor = "multi_thread")]
async fn client_producer_unknown_topic() -> Result<()> {
    let mut server = blocking(|| {
        SamsaServer::builder()
            .set("auto.create.topics.enable", false)
            .start()
    })?;
    let config = ProducerConfig::from_properties([
        ("bootstrap.servers", server.bootstrap()),
        ("max.block.ms", "2000"),
    ])?;
    ensure!(config.max_block == Duration::from_millis(2000));
    let producer = bounded("Producer::new", PROMPT, Producer::new(config)).await??;
    let topic = "no-such-topic-7f3a";
    let started = Instant::now();
    let res = bounded(
        "send to an unknown topic",
        PROMPT,
        producer.send(ProducerRecord::new(topic, "v")),
    )
    .await?;
    let elapsed = started.elapsed();
    match res {
        Err(e @ Error::UnknownTopic(_)) => {
            let Error::UnknownTopic(name) = &e else {
                unreachable!()
            };
            ensure!(name == topic, "UnknownTopic names `{name}`, want `{topic}`");
            let msg = e.to_string();
            ensure!(
                msg.contains(&format!("`{topic}`")) && msg.contains("does not exist"),
                "message: {msg}"
            );
        }
        Err(other) => bail!("want UnknownTopic, got {other:?} after {elapsed:?}"),
        Ok(_) => bail!("a record for a missing topic was accepted with auto-create off"),
    }
    // max.block.ms bounds the wait for metadata.
    ensure!(
        elapsed <= Duration::from_millis(3000),
        "UnknownTopic after {elapsed:?} with max.block.ms=2000"
    );
    // auto.create.topics.enable=false was honoured: the topic still does not exist.
    let md = bounded(
        "metadata refresh",
        PROMPT,
        producer
            .cluster()
            .refresh(Some(&[topic.to_string()]), false),
    )
    .await??;
    ensure!(
        !md.topics.contains_key(topic),
        "{topic} exists: {:?}",
        md.topics.get(topic)
    );
    blocking(|| server.terminate())
}

#[tokio::test(flavor = "multi_thread")]
async fn client_producer_closed_port_is_connect_error() -> Result<()> {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0")?;
        l.local_addr()?.port()
    };
    let addr = format!("127.0.0.1:{port}");
    let res = bounded(
        "Producer::new on a closed port",
        PROMPT,
        Producer::new(ProducerConfig::new(&addr)?),
    )
    .await?;
    match res {
        Err(e @ Error::Connect { .. }) => {
            let msg = e.to_string();
            ensure!(
                msg.contains("cannot reach a broker") && msg.contains(&addr),
                "message: {msg}"
            );
        }
        Err(other) => bail!("want Error::Connect, got {other:?}"),
        Ok(_) => bail!("connected to a closed port {addr}"),
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn client_producer_bad_config() -> Result<()> {
    // Unknown key: both the config and Producer::from_properties refuse it, naming it.
    let props = [
        ("bootstrap.servers", "127.0.0.1:9"),
        ("acks", "all"),
        ("linger.msec", "5"),
    ];
    for res in [
        ProducerConfig::from_properties(props).map(|_| ()),
        bounded(
            "Producer::from_properties",
            PROMPT,
            Producer::from_properties(props),
        )
        .await?
        .map(|_| ()),
    ] {
        match res {
            Err(Error::Config(msg)) => ensure!(
                msg.contains("`linger.msec`"),
                "message does not name the key: {msg}"
            ),
            other => bail!("want Error::Config for linger.msec, got {other:?}"),
        }
    }
    let mut c = ProducerConfig::default();
    match c.set("compresion.type", "gzip") {
        Err(e @ Error::Config(_)) => ensure!(e.to_string().contains("compresion.type"), "{e}"),
        other => bail!(
            "want Error::Config for compresion.type, got {:?}",
            other.map(|_| ())
        ),
    }

    // Bad values.
    for (key, value) in [
        ("acks", "2"),
        ("compression.type", "brotli"),
        ("linger.ms", "soon"),
        ("bootstrap.servers", "nohost"),
    ] {
        match ProducerConfig::from_properties([(key, value)]) {
            Err(e @ Error::Config(_)) => {
                let msg = e.to_string();
                ensure!(
                    msg.contains(key) && msg.contains(value),
                    "{key}={value}: message {msg}"
                );
            }
            other => bail!(
                "want Error::Config for {key}={value}, got {:?}",
                other.map(|_| ())
            ),
        }
    }
    // acks=2 through the whole constructor, promptly (no broker is contacted).
    let res = bounded(
        "Producer::from_properties(acks=2)",
        PROMPT,
        Producer::from_properties([("bootstrap.servers", "127.0.0.1:9"), ("acks", "2")]),
    )
    .await?;
    ensure!(
        matches!(&res, Err(Error::Config(m)) if m.contains("acks")),
        "acks=2: {:?}",
        res.map(|_| ())
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 5. Ordering and flush
// ---------------------------------------------------------------------------------------

/// 1,000 records with one key (so one partition), in small batches that span many
/// pipelined requests (default max.in.flight.requests.per.connection = 5): without
/// retries the log must hold them in send order at consecutive offsets, as the Java
/// client guarantees.
#[tokio::test(flavor = "multi_thread")]
async fn client_producer_keyed_records_in_order() -> Result<()> {
    keyed_records_in_order(None).await
}

/// The same with one request in flight per broker: a control that tells a pipelining
/// problem apart from a batching one.
#[tokio::test(flavor = "multi_thread")]
async fn client_producer_keyed_records_in_order_one_in_flight() -> Result<()> {
    keyed_records_in_order(Some(1)).await
}

async fn keyed_records_in_order(max_in_flight: Option<usize>) -> Result<()> {
    const N: usize = 1_000;
    const PARTITIONS: i32 = 4;
    let mut server = blocking(|| {
        SamsaServer::builder()
            .set("num.partitions", PARTITIONS)
            .start()
    })?;
    let b = server.bootstrap().to_string();
    let topic = "ordered";
    let key = "same-key";
    let want_partition = partition_for_key(key.as_bytes(), PARTITIONS);
    // Small batches (30 records each) so the 1,000 records span many requests.
    let mut config = ProducerConfig::new(&b)?
        .batch_size(1024)
        .linger(Duration::from_millis(1));
    if let Some(n) = max_in_flight {
        config.set("max.in.flight.requests.per.connection", &n.to_string())?;
    }
    ensure!(config.max_in_flight == max_in_flight.unwrap_or(5) && config.retries > 0);
    let producer = bounded("Producer::new", PROMPT, Producer::new(config)).await??;
    let records = (0..N)
        .map(|i| ProducerRecord::new(topic, format!("v{i:04}")).key(key))
        .collect();
    let metas = send_all(&producer, records, Duration::from_secs(60)).await?;
    for (i, m) in metas.iter().enumerate() {
        ensure!(
            m.partition == want_partition,
            "#{i} acknowledged at {}/{}, want partition {want_partition}",
            m.partition,
            m.offset
        );
    }
    let out = blocking(|| {
        run_kcat(&[
            "-b",
            b.as_str(),
            "-C",
            "-t",
            topic,
            "-p",
            &want_partition.to_string(),
            "-e",
            "-o",
            "beginning",
            "-f",
            "%o|%k|%s\\n",
        ])
    })?;
    let got: Vec<String> = out.stdout.lines().map(str::to_string).collect();
    // The log agrees with the acknowledgements, whatever the order...
    let mut by_ack: Vec<String> = vec![String::new(); N];
    for (i, m) in metas.iter().enumerate() {
        ensure!(
            (0..N as i64).contains(&m.offset),
            "#{i} acknowledged at offset {}",
            m.offset
        );
        by_ack[m.offset as usize] = format!("{}|{key}|v{i:04}", m.offset);
    }
    ensure!(
        got == by_ack,
        "partition {want_partition} disagrees with the acknowledgements: {}",
        first_difference(&got, &by_ack)
    );
    // ...and the order is the send order: offsets 0..N, consecutive.
    let mut runs: Vec<String> = Vec::new(); // "offsets a..=b hold #x..=#y"
    let mut o = 0;
    while o < N {
        let first: usize = got[o].rsplit('v').next().unwrap().parse()?;
        let mut end = o;
        while end + 1 < N
            && got[end + 1].rsplit('v').next().unwrap().parse::<usize>()? == first + (end + 1 - o)
        {
            end += 1;
        }
        runs.push(format!(
            "offsets {o}..={end} hold #{first}..=#{}",
            first + end - o
        ));
        o = end + 1;
    }
    ensure!(
        runs.len() == 1 && metas.iter().enumerate().all(|(i, m)| m.offset == i as i64),
        "1,000 records to one partition are not in send order: {} runs, {:#?}",
        runs.len(),
        &runs[..runs.len().min(16)]
    );
    let want: Vec<String> = (0..N).map(|i| format!("{i}|{key}|v{i:04}")).collect();
    ensure!(
        got == want,
        "partition {want_partition} read back: {}",
        first_difference(&got, &want)
    );
    // And nothing anywhere else.
    let all = blocking(|| read_with_confluent(&b, topic))?;
    ensure!(
        all.len() == N,
        "{} records in the topic, want {N}",
        all.len()
    );
    bounded("close", PROMPT, producer.close()).await?;
    blocking(|| server.terminate())
}

#[tokio::test(flavor = "multi_thread")]
async fn client_producer_flush_sends_lingering_batches() -> Result<()> {
    let mut server = blocking(SamsaServer::start)?;
    let b = server.bootstrap().to_string();
    let topic = "lingering";
    let producer = bounded(
        "Producer::new",
        PROMPT,
        Producer::new(ProducerConfig::new(&b)?.linger(Duration::from_secs(10))),
    )
    .await??;
    // Fetch metadata (and create the topic) outside the timed part.
    bounded(
        "metadata",
        PROMPT,
        producer.cluster().refresh(Some(&[topic.to_string()]), true),
    )
    .await??;

    let mut futures = Vec::new();
    for i in 0..10 {
        futures.push(
            bounded(
                "send",
                PROMPT,
                producer.send(ProducerRecord::new(topic, format!("l{i}")).partition(0)),
            )
            .await??,
        );
    }
    // With linger.ms=10000 and a nearly empty batch nothing is sent yet.
    ensure!(
        tokio::time::timeout(Duration::from_millis(500), &mut futures[0])
            .await
            .is_err(),
        "a record was delivered within 500 ms despite linger.ms=10000"
    );
    let started = Instant::now();
    bounded("flush", PROMPT, producer.flush()).await?;
    let took = started.elapsed();
    ensure!(
        took < Duration::from_secs(2),
        "flush took {took:?} (linger.ms=10000)"
    );
    for (i, f) in futures.into_iter().enumerate() {
        // flush returned, so every future is already resolved.
        let m = bounded("a flushed delivery", Duration::from_millis(100), f).await??;
        ensure!(m.partition == 0 && m.offset == i as i64, "#{i}: {m:?}");
    }
    bounded("close", PROMPT, producer.close()).await?;
    // Closed: further sends are refused.
    let res = bounded(
        "send after close",
        PROMPT,
        producer.send(ProducerRecord::new(topic, "late")),
    )
    .await?;
    ensure!(
        matches!(res, Err(Error::State(_))),
        "send after close: {:?}",
        res.map(|_| ())
    );
    blocking(|| server.terminate())
}

/// `buffer.memory` bounds unsent data: with the broker gone, `send` waits for space, then
/// fails after `max.block.ms`; records that cannot be delivered fail after
/// `delivery.timeout.ms`, which frees their space for new sends.
#[tokio::test(flavor = "multi_thread")]
async fn client_producer_buffer_memory_back_pressure() -> Result<()> {
    let mut server = blocking(SamsaServer::start)?;
    let bootstrap = server.bootstrap().to_string();
    let config = ProducerConfig::from_properties([
        ("bootstrap.servers", bootstrap.as_str()),
        ("buffer.memory", "65536"),
        ("max.block.ms", "1000"),
        ("delivery.timeout.ms", "3000"),
        ("request.timeout.ms", "1000"),
        ("linger.ms", "0"),
    ])?;
    let producer = Producer::new(config).await?;
    producer.send_and_wait(ProducerRecord::new("pressure", vec![b'a'; 10])).await?;
    blocking(|| server.kill9())?;
    let value = vec![b'x'; 1000];
    let mut pending = Vec::new();
    let full = loop {
        ensure!(pending.len() < 200, "64 KiB of buffer took {} records of 1 KB without blocking", pending.len());
        let started = Instant::now();
        match bounded("send", Duration::from_secs(10), producer.send(ProducerRecord::new("pressure", value.clone()))).await? {
            Ok(fut) => pending.push(fut),
            Err(e) => break (e, started.elapsed()),
        }
    };
    let (error, waited) = full;
    ensure!(matches!(error, Error::Timeout { .. }), "want a timeout, got {error:?}");
    ensure!(error.to_string().contains("buffer.memory"), "message should name buffer.memory: {error}");
    ensure!(waited >= Duration::from_millis(900), "send gave up after {waited:?}, before max.block.ms");
    ensure!((50..=66).contains(&pending.len()), "{} records fit in 64 KiB", pending.len());
    for fut in pending {
        let result = bounded("delivery", Duration::from_secs(20), fut).await?;
        ensure!(matches!(result, Err(Error::Timeout { .. })), "undeliverable record: {result:?}");
    }
    // Their space is back: a send is accepted at once again.
    let accepted = bounded("send after expiry", Duration::from_secs(5), producer.send(ProducerRecord::new("pressure", value.clone()))).await?;
    ensure!(accepted.is_ok(), "send after the buffer drained: {:?}", accepted.err());
    Ok(())
}
