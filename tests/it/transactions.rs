//! Kafka transactions (KIP-98) driven by confluent-kafka against one node: committed and
//! aborted transactions under both isolation levels, exactly-once consume-transform-produce
//! through kill -9 of the processor, zombie fencing, and transaction timeouts. The Python
//! scripts (`tests/clients/txn_*.py`) check record sets and orders exactly; these tests
//! check their summaries and inject the crashes.

use std::path::Path;
use std::thread;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use samsa_tests::{python, run_python, wait_until, SamsaServer};

/// How often the coordinator looks for timed-out transactions in the timeout tests.
const CLEANUP_INTERVAL_MS: &str = "200";
/// The producers' `transaction.timeout.ms` in the timeout tests.
const TXN_TIMEOUT_MS: &str = "2000";

/// 1,500 transactions over 3 partitions, 2 records per partition each, every third
/// aborted: read_committed sees exactly the committed records in order, read_uncommitted
/// all of them, and each partition holds one marker per transaction.
#[test]
fn commit_abort_mix_under_both_isolation_levels() -> Result<()> {
    let mut server = SamsaServer::start()?;
    let (txns, per_partition) = (1500usize, 2usize);
    let out = python("txn_commit_abort.py")?
        .args([
            server.bootstrap().to_string(),
            "txn-mix".into(),
            txns.to_string(),
            per_partition.to_string(),
        ])
        .run()?;
    ensure!(out.result_value::<usize>("committed")? == 1000);
    ensure!(out.result_value::<usize>("aborted")? == 500);
    ensure!(out.result_value::<usize>("read_committed")? == 1000 * 3 * per_partition);
    ensure!(out.result_value::<usize>("read_uncommitted")? == txns * 3 * per_partition);
    ensure!(out.result_value::<usize>("high_watermark")? == txns * (per_partition + 1));
    eprintln!("commit/abort mix: {:?}", out.result()?);
    server.terminate()
}

/// Records committed so far by the processor: the sum of its progress file's lines.
fn progress_records(path: &Path) -> Result<usize> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e.into()),
    };
    // Only complete lines: the processor may be writing the last one.
    let complete = text.rsplit_once('\n').map_or("", |(done, _)| done);
    complete
        .lines()
        .map(|l| {
            l.parse::<usize>()
                .with_context(|| format!("progress line {l:?}"))
        })
        .sum()
}

/// A group member with a transactional producer copies 8,000 input records to an output
/// topic, one transaction per batch of 50 with its consumed offsets. It is killed with
/// SIGKILL twice, each time at a random 0-500 ms after it committed some more records, and
/// restarted with the same transactional.id; in the end read_committed holds every input record's
/// output exactly once, in input order per partition, and the group's committed offsets
/// are the input's end.
#[test]
fn consume_transform_produce_exactly_once_through_kill9() -> Result<()> {
    let mut server = SamsaServer::start()?;
    let b = server.bootstrap().to_string();
    let (input, output, group, txn_id) = ("ctp-in", "ctp-out", "ctp-group", "ctp-processor");
    let n = 8000usize;
    let fill = run_python(
        "txn_ctp_fill.py",
        &[b.as_str(), input, output, &n.to_string()],
    )?;
    ensure!(fill.result_value::<usize>("produced")? == n);

    let work = tempfile::Builder::new()
        .prefix("samsa-txn-ctp-")
        .tempdir()?;
    let progress = work.path().join("progress");
    let processor = || {
        python("txn_ctp_process.py").map(|cmd| {
            cmd.args([
                b.as_str(),
                input,
                output,
                group,
                txn_id,
                progress.to_str().unwrap(),
                "50",
                "10",
            ])
            .timeout(Duration::from_secs(150))
        })
    };
    let seed = fastrand::u64(..);
    eprintln!("kill points seed {seed}");
    let mut rng = fastrand::Rng::with_seed(seed);
    // The processor pauses 10 ms in every transaction, so it commits at most 5,000
    // records a second: both kills land well before its 8,000th record.
    for (round, more) in [(1, 1000), (2, 500)] {
        let mut running = processor()?.spawn()?;
        let from = progress_records(&progress)?;
        wait_until(
            Duration::from_secs(60),
            &format!("round {round}: {more} more records processed"),
            || {
                ensure!(
                    !running.has_exited()?,
                    "processor exited before it was killed (round {round})"
                );
                Ok(progress_records(&progress)? >= from + more)
            },
        )?;
        let delay_ms = rng.u64(0..=500);
        thread::sleep(Duration::from_millis(delay_ms));
        ensure!(
            !running.has_exited()?,
            "processor finished before the kill (round {round}, {delay_ms} ms)"
        );
        running.kill9()?;
        eprintln!(
            "round {round}: killed {delay_ms} ms after {more} more records, at {} committed",
            progress_records(&progress)?
        );
    }
    let last = processor()?.run()?;
    eprintln!("last run: {:?}", last.result()?);

    let out = run_python(
        "txn_ctp_verify.py",
        &[b.as_str(), input, output, group, &n.to_string()],
    )?;
    ensure!(out.result_value::<usize>("exactly_once")? == n);
    eprintln!("consume-transform-produce: {:?}", out.result()?);
    server.terminate()
}

/// Two rounds of a second producer with the same transactional.id fencing the first:
/// the zombie's Produce and EndTxn fail with fatal fencing errors, its open transaction is
/// aborted, and read_committed sees only the successors' records.
#[test]
fn zombie_producer_is_fenced() -> Result<()> {
    let mut server = SamsaServer::start()?;
    let out = run_python("txn_fence.py", &[server.bootstrap(), "txn-fence"])?;
    for key in ["produce_fenced", "commit_fenced"] {
        let how: String = out.result_value(key)?;
        ensure!(
            how.ends_with("/fatal=1/abortable=0"),
            "{key}={how}: want a fatal error"
        );
    }
    ensure!(out.result_value::<usize>("committed")? == 30);
    ensure!(out.result_value::<usize>("uncommitted")? == 60);
    server.terminate()
}

fn timeout_server() -> Result<SamsaServer> {
    SamsaServer::builder()
        .set(
            "transaction.abort.timed.out.transaction.cleanup.interval.ms",
            CLEANUP_INTERVAL_MS,
        )
        .start()
}

/// A producer killed with SIGKILL inside a transaction: the broker aborts it after its
/// timeout, so records written behind it become visible to read_committed and its own
/// never do.
#[test]
fn transaction_of_killed_producer_times_out() -> Result<()> {
    let mut server = timeout_server()?;
    let work = tempfile::Builder::new()
        .prefix("samsa-txn-timeout-")
        .tempdir()?;
    let ready = work.path().join("ready");
    let topic = "txn-timeout-killed";
    let mut stuck = python("txn_timeout_stuck.py")?
        .args([
            server.bootstrap(),
            topic,
            TXN_TIMEOUT_MS,
            ready.to_str().unwrap(),
        ])
        .spawn()?;
    wait_until(
        Duration::from_secs(60),
        "the stuck transaction's records flushed",
        || {
            ensure!(!stuck.has_exited()?, "stuck producer exited early");
            Ok(ready.exists())
        },
    )?;
    stuck.kill9()?;
    let out = run_python("txn_timeout_verify.py", &[server.bootstrap(), topic])?;
    ensure!(out.result_value::<usize>("read_committed")? == 15);
    ensure!(out.result_value::<usize>("read_uncommitted")? == 30);
    eprintln!("killed producer's transaction: {:?}", out.result()?);
    server.terminate()
}

/// A live producer that leaves its transaction idle: records behind it stay invisible to
/// read_committed until the timeout, then appear; the producer's late commit fails.
#[test]
fn idle_transaction_times_out() -> Result<()> {
    let mut server = timeout_server()?;
    let out = run_python(
        "txn_timeout_idle.py",
        &[server.bootstrap(), "txn-timeout-idle", TXN_TIMEOUT_MS],
    )?;
    ensure!(out.result_value::<usize>("read_committed")? == 15);
    ensure!(out.result_value::<usize>("read_uncommitted")? == 30);
    eprintln!("idle transaction: {:?}", out.result()?);
    server.terminate()
}
