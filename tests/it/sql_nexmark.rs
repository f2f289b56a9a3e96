//! Nexmark: `samsa bench nexmark` generates the events and runs every runnable query of
//! `sql/nexmark/` as a persistent query until it has processed all of its input.

use std::process::Command;

use anyhow::{ensure, Result};
use samsa_tests::{samsa_bin, SamsaServer};

#[test]
fn every_runnable_nexmark_query_runs_as_a_persistent_query() -> Result<()> {
    let server = SamsaServer::start()?;
    let out = Command::new(samsa_bin()?).args(["bench", "nexmark", "--bootstrap", server.bootstrap(), "--events", "20000", "--partitions", "2"]).output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    ensure!(out.status.success(), "bench nexmark failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    // 20,000 events: 400 persons, 1,200 auctions, 18,400 bids.
    for (q, input) in [("q0", 18_400), ("q1", 18_400), ("q2", 18_400), ("q3", 1_200), ("q4", 19_600), ("q5", 18_400), ("q7", 18_400), ("q8", 1_600)] {
        let row = stdout.lines().find(|l| l.split_whitespace().next() == Some(q));
        let Some(row) = row else { anyhow::bail!("no row for {q} in:\n{stdout}") };
        ensure!(row.split_whitespace().nth(1) == Some(&input.to_string()[..]), "{q} read the wrong number of events: {row}");
    }
    // The runnable ones only: asking for q6 says why not.
    let out = Command::new(samsa_bin()?).args(["bench", "nexmark", "--bootstrap", server.bootstrap(), "--queries-only", "--queries", "q6"]).output()?;
    ensure!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("not runnable yet"), "q6 should be refused");
    Ok(())
}
