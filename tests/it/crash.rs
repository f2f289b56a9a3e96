//! kill -9 during acks=all production: after a restart on the same data directory every
//! acknowledged record and every committed group offset is still there.

use std::path::Path;
use std::time::Duration;

use anyhow::{ensure, Result};
use samsa_tests::{python, run_python, wait_until, SamsaServer};

/// Complete lines in the producer's acknowledgement log.
fn acked_lines(path: &Path) -> Result<usize> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(bytes.iter().filter(|&&b| b == b'\n').count()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(e.into()),
    }
}

#[test]
fn kill9_keeps_acknowledged_records_and_offsets() -> Result<()> {
    let data = tempfile::Builder::new().prefix("samsa-crash-").tempdir()?;
    let work = tempfile::Builder::new()
        .prefix("samsa-crash-work-")
        .tempdir()?;
    let acked = work.path().join("acked.txt");
    let stop = work.path().join("stop");
    let (topic, group) = ("crash-topic", "crash-group");

    let mut server = SamsaServer::builder().data_dir(data.path()).start()?;
    let b = server.bootstrap().to_string();
    let mut producer = python("crash_produce.py")?
        .args([
            b.as_str(),
            topic,
            acked.to_str().unwrap(),
            stop.to_str().unwrap(),
        ])
        .spawn()?;
    let mut wait_acks = |at_least: usize| -> Result<()> {
        wait_until(Duration::from_secs(60), &format!("{at_least} acks"), || {
            ensure!(!producer.has_exited()?, "producer exited early");
            Ok(acked_lines(&acked)? >= at_least)
        })
    };
    wait_acks(2000)?;
    let commit = run_python("crash_commit.py", &[b.as_str(), topic, group])?;
    let committed: String = commit.result_value("committed")?;
    let before = acked_lines(&acked)?;
    wait_acks(before + 1000)?;

    server.kill9()?;
    std::fs::write(&stop, b"")?;
    let produced = producer.wait(Duration::from_secs(60))?;
    let acked_n = acked_lines(&acked)?;
    ensure!(produced.result_value::<usize>("acked")? == acked_n);
    eprintln!("crash: {:?}, committed {committed}", produced.result()?);

    let mut server = server.restart_builder().start()?;
    let out = run_python(
        "crash_verify.py",
        &[
            server.bootstrap(),
            topic,
            acked.to_str().unwrap(),
            group,
            committed.as_str(),
        ],
    )?;
    ensure!(out.result_value::<usize>("acked_checked")? == acked_n);
    ensure!(out.result_value::<usize>("new")? == 100);
    server.terminate()
}
