//! The wordcount example under exactly_once_v2, as its users run it: two instances
//! (separate processes, separate state directories) share a 6-partition input of
//! 1,000,000 words. One is killed with SIGKILL mid-run and restarted on its state
//! directory; later both are killed, A's state directory is deleted, and A restarts alone:
//! it must rebuild every store from the changelogs. The output, read with read_committed, must end at the
//! exact counts, and no word's count may ever go backwards.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use samsa_client::admin::NewTopic;
use samsa_client::{Admin, Consumer, Producer, ProducerRecord};
use samsa_tests::{program, BackgroundClient, SamsaServer};

const WORDS: usize = 1_000_000;
const WORDS_PER_LINE: usize = 10;
const VOCABULARY: usize = 2_000;

fn instance(bootstrap: &str, state_dir: &Path) -> Result<BackgroundClient> {
    program(env!("CARGO_BIN_EXE_wordcount"))
        .args([
            "--bootstrap",
            bootstrap,
            "--input",
            "lines",
            "--output",
            "counts",
            "--app-id",
            "wc",
            "--state-dir",
            &state_dir.display().to_string(),
            "--guarantee",
            "exactly_once_v2",
            "--set",
            "consumer.session.timeout.ms=6000",
            "--set",
            "consumer.heartbeat.interval.ms=500",
        ])
        .env("RUST_LOG", "info")
        .timeout(Duration::from_secs(600))
        .spawn()
}

/// Reads `counts` with read_committed, keeping the last count per word and failing if a
/// count ever goes down.
struct OutputWatcher {
    consumer: Consumer,
    last: HashMap<String, u64>,
}

impl OutputWatcher {
    async fn new(bootstrap: &str) -> Result<Self> {
        let consumer = Consumer::from_properties([
            ("bootstrap.servers", bootstrap),
            ("group.id", "wc-verifier"),
            ("enable.auto.commit", "false"),
            ("auto.offset.reset", "earliest"),
            ("isolation.level", "read_committed"),
        ])
        .await?;
        consumer.subscribe(&["counts"])?;
        Ok(OutputWatcher { consumer, last: HashMap::new() })
    }

    async fn poll(&mut self) -> Result<usize> {
        let recs = self.consumer.poll(Duration::from_millis(200)).await?;
        for r in &recs {
            let word = String::from_utf8(r.key.as_ref().context("output key")?.to_vec())?;
            let n: u64 = std::str::from_utf8(r.value.as_ref().context("output value")?)?.parse()?;
            let prev = self.last.insert(word.clone(), n).unwrap_or(0);
            ensure!(n >= prev, "the committed count of `{word}` went backwards: {prev} then {n} (offset {} of partition {})", r.offset, r.partition);
        }
        Ok(recs.len())
    }

    fn total(&self) -> u64 {
        self.last.values().sum()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wordcount_exactly_once_through_kill9_and_state_loss() -> Result<()> {
    let server = SamsaServer::start()?;
    let bootstrap = server.bootstrap().to_string();
    let admin = Admin::connect(&bootstrap).await?;
    admin.create_topics(&[NewTopic::new("lines", 6, 1), NewTopic::new("counts", 6, 1)]).await?;

    // 1,000,000 words in 100,000 lines over 6 partitions; the expected counts on the side.
    let mut rng = fastrand::Rng::with_seed(7);
    let mut expected: BTreeMap<String, u64> = BTreeMap::new();
    let producer = Producer::from_properties([("bootstrap.servers", bootstrap.as_str()), ("linger.ms", "20")]).await?;
    let mut pending = Vec::new();
    for line_no in 0..WORDS / WORDS_PER_LINE {
        let words: Vec<String> = (0..WORDS_PER_LINE).map(|_| format!("w{}", rng.usize(..VOCABULARY))).collect();
        for w in &words {
            *expected.entry(w.clone()).or_default() += 1;
        }
        let rec = ProducerRecord::new("lines", words.join(" ")).partition((line_no % 6) as i32);
        pending.push(producer.send(rec).await?);
        if pending.len() >= 5000 {
            for p in pending.drain(..) {
                p.await?;
            }
        }
    }
    for p in pending {
        p.await?;
    }
    assert_eq!(expected.values().sum::<u64>(), WORDS as u64);

    let dirs = [tempfile::tempdir()?, tempfile::tempdir()?];
    let mut a = instance(&bootstrap, dirs[0].path())?;
    let b = instance(&bootstrap, dirs[1].path())?;
    let mut watcher = OutputWatcher::new(&bootstrap).await?;
    let started = Instant::now();
    let deadline = started + Duration::from_secs(400);

    // Kill -9 instance A once about a third of the words are counted, then restart it.
    while watcher.total() < (WORDS / 3) as u64 {
        watcher.poll().await?;
        ensure!(Instant::now() < deadline, "no progress: {} words counted after {:?}", watcher.total(), started.elapsed());
        if a.has_exited()? {
            bail!("instance A exited early:\n{}", a.kill9()?.stderr);
        }
    }
    let killed_at = watcher.total();
    let out = a.kill9()?;
    eprintln!("killed A with {killed_at} words counted; its log ended with:\n{}", tail(&out.stderr, 15));
    tokio::time::sleep(Duration::from_millis(500)).await;
    a = instance(&bootstrap, dirs[0].path())?;

    // At two thirds, kill both, delete A's state directory, and start only A: it now runs
    // every task, and must rebuild every store from the changelogs.
    while watcher.total() < (2 * WORDS / 3) as u64 {
        watcher.poll().await?;
        ensure!(Instant::now() < deadline, "no progress after the kill: {} words counted after {:?}", watcher.total(), started.elapsed());
    }
    let at = watcher.total();
    b.kill9()?;
    a.kill9()?;
    eprintln!("killed A and B with {at} words counted; deleting A's state");
    std::fs::remove_dir_all(dirs[0].path().join("wc")).context("deleting A's state")?;
    let a = instance(&bootstrap, dirs[0].path())?;

    while watcher.last.len() < expected.len() || expected.iter().any(|(w, n)| watcher.last.get(w) != Some(n)) {
        let got = watcher.poll().await?;
        if Instant::now() > deadline {
            let wrong: Vec<String> = expected.iter().filter(|(w, n)| watcher.last.get(*w) != Some(n)).take(5).map(|(w, n)| format!("{w}: want {n}, got {:?}", watcher.last.get(w))).collect();
            bail!("counts not exact after {:?} ({} words counted): {wrong:?}", started.elapsed(), watcher.total());
        }
        // Past the expected count is a failure at once (duplicates).
        if got > 0 {
            if let Some((w, n)) = watcher.last.iter().find(|(w, n)| **n > expected.get(*w).copied().unwrap_or(0)) {
                bail!("`{w}` counted {n} times, more than the {} it occurs (a duplicate)", expected.get(w).copied().unwrap_or(0));
            }
        }
    }
    eprintln!("exact counts of {} words ({} distinct) after {:?}", WORDS, expected.len(), started.elapsed());
    let a_log = a.kill9()?.stderr;
    // One restore per stateful task (the count store of sub-topology 1, on 6 partitions).
    let restored = a_log.lines().filter(|l| l.contains("restored") && l.contains("store=counts")).count();
    ensure!(restored == 6, "A restored {restored} stores from the changelog, expected 6:\n{}", tail(&a_log, 40));
    Ok(())
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
