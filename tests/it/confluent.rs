//! confluent-kafka (current librdkafka): compression codecs and the acceptance run.

use std::time::Duration;

use anyhow::{ensure, Result};
use samsa_tests::{python, run_python, SamsaServer};

fn compression_round_trip(codec: &str) -> Result<()> {
    let mut server = SamsaServer::start()?;
    let n = 2000;
    let out = run_python(
        "compression.py",
        &[server.bootstrap(), codec, &n.to_string()],
    )?;
    ensure!(out.result_value::<String>("codec")? == codec);
    ensure!(out.result_value::<usize>("produced")? == n);
    ensure!(out.result_value::<usize>("consumed")? == n);
    server.terminate()
}

#[test]
fn gzip_round_trip() -> Result<()> {
    compression_round_trip("gzip")
}

#[test]
fn snappy_round_trip() -> Result<()> {
    compression_round_trip("snappy")
}

#[test]
fn lz4_round_trip() -> Result<()> {
    compression_round_trip("lz4")
}

#[test]
fn zstd_round_trip() -> Result<()> {
    compression_round_trip("zstd")
}

/// 100,000 keyed 1 KiB records into 6 partitions with acks=all and Java-compatible murmur2
/// partitioning, consumed exactly once by a group of 3 that then loses a member mid-stream.
#[test]
fn acceptance_100k_murmur2_group_of_three() -> Result<()> {
    let mut server = SamsaServer::start()?;
    let (n1, n2) = (100_000usize, 20_000usize);
    let out = python("acceptance.py")?
        .args([
            server.bootstrap().to_string(),
            n1.to_string(),
            n2.to_string(),
            "1024".to_string(),
        ])
        .timeout(Duration::from_secs(420))
        .run()?;
    ensure!(out.result_value::<usize>("produced")? == n1 + n2);
    ensure!(out.result_value::<usize>("consumed")? == n1 + n2);
    ensure!(out.result_value::<usize>("murmur2_mismatches")? == 0);
    ensure!(out.result_value::<usize>("moved")? == 2);
    eprintln!("acceptance: {:?}", out.result()?);
    server.terminate()
}

/// ListOffsets by timestamp (first offset at or after it, -1 past the end) and watermarks.
#[test]
fn offsets_for_times() -> Result<()> {
    let mut server = SamsaServer::start()?;
    let out = run_python("offsets_for_times.py", &[server.bootstrap()])?;
    ensure!(out.result_value::<usize>("checked")? == 5);
    server.terminate()
}
