//! Transactions in a 3-node cluster: the broker coordinating a transaction (the leader of
//! its `__transaction_state` partition) is killed with -9 after EndTxn was answered but
//! before the markers were written (`transaction.marker.delay.ms` holds them back). The
//! new coordinator replays the partition and finishes the transaction: committed records
//! become visible on every partition, aborted ones stay hidden, and the last stable offset
//! moves past the transaction everywhere.

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use samsa_tests::{python, run_python, wait_until, SamsaCluster};

/// Node id coordinating `txn_id` (the leader of its `__transaction_state` partition).
fn coordinator(cluster: &SamsaCluster, txn_id: &str) -> Result<usize> {
    let index = cluster.txn_partition(txn_id)?;
    let leader = cluster.partitions("__transaction_state")?[index].0;
    ensure!(leader > 0, "__transaction_state-{index} has no leader");
    Ok(leader as usize)
}

/// Ends one transaction with `outcome`, kills its coordinator while the markers are
/// held back, and checks on every partition how it ended.
fn end_then_kill_coordinator(cluster: &mut SamsaCluster, txn_id: &str, tag: &str, outcome: &str) -> Result<usize> {
    let topic = "txn-failover";
    // A first, completed transaction creates the topic and `__transaction_state`, so the
    // coordinator is known before the transaction under test ends.
    let warmup = format!("{tag}warm");
    run_python("cluster_txn_end.py", &[cluster.bootstrap().as_str(), topic, txn_id, warmup.as_str(), "1", "commit"])?;
    let victim = coordinator(cluster, txn_id)?;
    let ended = python("cluster_txn_end.py")?.args([cluster.bootstrap().as_str(), topic, txn_id, tag, "20", outcome]).run()?;
    ensure!(ended.result_value::<String>("ended")? == outcome, "transaction did not end: {:?}", ended.result());
    let survivors: Vec<usize> = (1..=3).filter(|&n| n != victim).collect();
    let loads = |c: &SamsaCluster| c.count_in_logs(&survivors, "prepared=1");
    let loads_before = loads(cluster);
    // Markers are held back for 4 s after the prepare: kill the coordinator now.
    cluster.kill9(victim)?;
    eprintln!("killed node {victim}, the coordinator of {txn_id}, after {outcome}");
    // Some surviving node takes over the partition and finds the prepared transaction.
    wait_until(Duration::from_secs(30), "a new coordinator to load the prepared transaction", || Ok(loads(cluster) > loads_before))?;
    let check = run_python("cluster_txn_verify.py", &[cluster.bootstrap().as_str(), topic, &format!("{tag}sentinel"), tag])?;
    let expected = if outcome == "commit" { 20 } else { 0 };
    for p in 0..3 {
        let seen: usize = check.result_value(&format!("{tag}_{p}")).with_context(|| format!("{:?}", check.result()))?;
        ensure!(seen == expected, "{outcome}: partition {p} shows {seen} of the transaction's 20 records to read_committed, expected {expected}");
    }
    Ok(victim)
}

#[test]
fn coordinator_killed_between_end_txn_and_markers() -> Result<()> {
    let mut cluster = SamsaCluster::start(
        3,
        &[
            ("transaction.marker.delay.ms", "4000"),
            ("replica.lag.time.max.ms", "3000"),
            ("transaction.state.log.num.partitions", "3"),
            ("offsets.topic.num.partitions", "3"),
        ],
    )?;
    let victim = end_then_kill_coordinator(&mut cluster, "txn-commit-1", "c", "commit")?;
    // Back to three nodes (two must stay up for the metadata quorum), then an abort.
    cluster.restart(victim)?;
    cluster.wait_for_brokers(3, Duration::from_secs(30))?;
    end_then_kill_coordinator(&mut cluster, "txn-abort-1", "a", "abort")?;
    Ok(())
}
