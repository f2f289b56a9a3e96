//! `samsa_txn_processor`: exactly-once consume-transform-produce with Samsa's own client, a
//! separate process so that `it/txn_samsa.rs` can kill it with SIGKILL (the Rust twin of
//! `tests/clients/txn_ctp_process.py`).
//!
//! ```text
//!  INPUT ──Consumer (GROUP, read_committed, no auto commit)──> batch of ≤ BATCH records
//!     each batch = one transaction of TXN_ID: `out-<value>` to the same partition of OUTPUT
//!     (same key), flush, pause PAUSE_MS, send_offsets_to_transaction(positions, group),
//!     commit, then one line `<records>` appended to PROGRESS_FILE
//! ```
//!
//! Exits 0 (printing `RESULT processed=N transactions=M`) once the group's committed
//! offsets reach INPUT's high watermark on all 3 partitions. A restart after a kill -9
//! resumes from the committed offsets: `init_transactions` (same TXN_ID) first fences the
//! killed run and aborts the transaction it left open.
//!
//! usage: samsa_txn_processor BOOTSTRAP INPUT OUTPUT GROUP TXN_ID PROGRESS_FILE BATCH PAUSE_MS

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use samsa_client::admin::OffsetSpec;
use samsa_client::{Admin, Consumer, Producer, ProducerRecord, TopicPartition};

const PARTITIONS: i32 = 3;
/// The whole run is bounded: a processor that cannot finish fails instead of hanging.
const DEADLINE: Duration = Duration::from_secs(120);

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [bootstrap, input, output, group, txn_id, progress_path, batch, pause_ms] = &args[..] else {
        bail!("usage: samsa_txn_processor BOOTSTRAP INPUT OUTPUT GROUP TXN_ID PROGRESS_FILE BATCH PAUSE_MS (got {args:?})");
    };
    let pause = Duration::from_millis(pause_ms.parse().context("PAUSE_MS")?);
    let started = Instant::now();

    let producer = Producer::from_properties([
        ("bootstrap.servers", bootstrap.as_str()),
        ("transactional.id", txn_id.as_str()),
        ("linger.ms", "1"),
        ("retry.backoff.ms", "10"),
        ("max.block.ms", "30000"),
    ])
    .await?;
    // Before the consumer joins: fences a killed predecessor and aborts its open
    // transaction, so the committed offsets the consumer starts from are final.
    producer.init_transactions().await.context("init_transactions")?;

    let consumer = Consumer::from_properties([
        ("bootstrap.servers", bootstrap.as_str()),
        ("group.id", group.as_str()),
        // Static membership: a restarted processor takes over the killed one's assignment
        // without waiting for its session to expire.
        ("group.instance.id", &format!("{txn_id}-member")),
        ("session.timeout.ms", "6000"),
        ("isolation.level", "read_committed"),
        ("enable.auto.commit", "false"),
        ("auto.offset.reset", "earliest"),
        ("max.poll.records", batch.as_str()),
        ("fetch.max.wait.ms", "100"),
    ])
    .await?;
    consumer.subscribe(&[input])?;
    let admin = Admin::connect(bootstrap).await?;
    let all: Vec<TopicPartition> = (0..PARTITIONS).map(|p| TopicPartition::new(input.as_str(), p)).collect();
    let mut progress = std::fs::OpenOptions::new().create(true).append(true).open(progress_path)?;

    let (mut processed, mut transactions) = (0usize, 0usize);
    loop {
        ensure!(started.elapsed() < DEADLINE, "not finished within {DEADLINE:?} ({processed} records processed)");
        let records = consumer.poll(Duration::from_millis(200)).await.context("poll")?;
        if records.is_empty() {
            if finished(&consumer, &admin, &all).await? {
                break;
            }
            continue;
        }
        producer.begin_transaction()?;
        let mut deliveries = Vec::with_capacity(records.len());
        for r in &records {
            let mut value = b"out-".to_vec();
            value.extend_from_slice(r.value.as_deref().unwrap_or_default());
            let mut out = ProducerRecord::new(output.as_str(), value).partition(r.partition);
            out.key = r.key.clone();
            deliveries.push(producer.send(out).await.context("send")?);
        }
        producer.flush().await;
        for d in deliveries {
            d.await.context("output record not delivered")?;
        }
        // Widens the window in which a kill finds an open transaction's data in the log.
        tokio::time::sleep(pause).await;
        let group_metadata = consumer.group_metadata().context("the consumer has no group")?;
        producer.send_offsets_to_transaction(&consumer.positions(), &group_metadata).await.context("send_offsets_to_transaction")?;
        producer.commit_transaction().await.context("commit_transaction")?;
        processed += records.len();
        transactions += 1;
        progress.write_all(format!("{}\n", records.len()).as_bytes())?;
    }
    consumer.close().await?;
    eprintln!("processed {processed} records in {transactions} transactions in {:.1} s", started.elapsed().as_secs_f64());
    println!("RESULT processed={processed} transactions={transactions}");
    Ok(())
}

/// Whether the group's committed offsets (read with require_stable) reached the input's
/// high watermark on every partition: everything is processed.
async fn finished(consumer: &Consumer, admin: &Admin, all: &[TopicPartition]) -> Result<bool> {
    if consumer.assignment().len() != all.len() {
        return Ok(false);
    }
    let committed = consumer.committed(all).await.context("committed offsets")?;
    let ends = admin.list_offsets(all, OffsetSpec::Latest).await.context("input high watermarks")?;
    Ok(all.iter().all(|tp| committed.get(tp).copied().flatten().is_some_and(|c| c >= ends[tp].0)))
}
