//! `samsa produce` and `samsa consume` end to end: keys, headers, codecs, formats, groups
//! that commit exactly what they printed, and plain errors.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use samsa_tests::{run_kcat, samsa_bin, SamsaServer};

/// What one `samsa` run did.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs `samsa ARGS` with `input` on stdin, killed after 60 s.
fn samsa(args: &[&str], input: &str) -> Result<Run> {
    let mut child = Command::new(samsa_bin()?).args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
    let mut stdin = child.stdin.take().expect("piped");
    let input = input.to_string();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(input.as_bytes());
    });
    let read = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = pipe.read_to_string(&mut s);
            s
        })
    };
    let out = read(Box::new(child.stdout.take().expect("piped")));
    let err = read(Box::new(child.stderr.take().expect("piped")));
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            anyhow::bail!("samsa {args:?} did not finish in 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    writer.join().ok();
    Ok(Run { code: status.code(), stdout: out.join().unwrap_or_default(), stderr: err.join().unwrap_or_default() })
}

fn ok(run: Run) -> Result<String> {
    ensure!(run.code == Some(0), "exit {:?}\nstdout:\n{}\nstderr:\n{}", run.code, run.stdout, run.stderr);
    Ok(run.stdout)
}

#[test]
fn produce_then_consume_with_keys_headers_codec_and_format() -> Result<()> {
    let server = SamsaServer::start()?;
    let b = server.bootstrap();
    ok(samsa(&["topic", "create", "lines", "--partitions", "2", "--bootstrap", b], "")?)?;
    let run = samsa(
        &["produce", "lines", "--bootstrap", b, "--key-separator", ":", "--header", "src=cli", "--compression", "lz4", "--partition", "1", "--acks", "1"],
        "alice:1\nbob:2\nno key here\n",
    )?;
    ensure!(run.code == Some(0), "produce failed: {}", run.stderr);
    ensure!(run.stderr.contains("sent 3 record(s) to lines"), "stderr: {}", run.stderr);
    let out = ok(samsa(
        &["consume", "lines", "--bootstrap", b, "--from-beginning", "--max-messages", "3", "--format", "{partition}:{offset} {key}={value} [{headers}]"],
        "",
    )?)?;
    ensure!(out == "1:0 alice=1 [src=cli]\n1:1 bob=2 [src=cli]\n1:2 null=no key here [src=cli]\n", "got:\n{out}");
    // kcat reads the same records (the batch is lz4-compressed).
    let kcat = run_kcat(&["-b", b, "-C", "-t", "lines", "-p", "1", "-e", "-o", "beginning", "-f", "%k|%s|%h\n"])?;
    ensure!(kcat.stdout.lines().take(2).collect::<Vec<_>>() == ["alice|1|src=cli", "bob|2|src=cli"], "kcat: {}", kcat.stdout);
    Ok(())
}

#[test]
fn group_consumers_commit_exactly_what_they_printed() -> Result<()> {
    let server = SamsaServer::builder().set("group.initial.rebalance.delay.ms", 0).start()?;
    let b = server.bootstrap();
    ok(samsa(&["topic", "create", "jobs", "--bootstrap", b], "")?)?;
    ok(samsa(&["produce", "jobs", "--bootstrap", b], "j0\nj1\nj2\nj3\nj4\n")?)?;
    let first = ok(samsa(&["consume", "jobs", "--bootstrap", b, "--group", "workers", "--from-beginning", "--max-messages", "2"], "")?)?;
    ensure!(first == "j0\nj1\n", "first run: {first}");
    let second = ok(samsa(&["consume", "jobs", "--bootstrap", b, "--group", "workers", "--from-beginning", "--max-messages", "2"], "")?)?;
    ensure!(second == "j2\nj3\n", "second run starts after the committed records: {second}");
    let described = ok(samsa(&["group", "describe", "workers", "--bootstrap", b], "")?)?;
    let row = described.lines().find(|l| l.starts_with("jobs")).context("no jobs row")?;
    let cells: Vec<&str> = row.split_whitespace().collect();
    ensure!(cells[1..5] == ["0", "4", "5", "1"], "partition, committed, log end, lag: {row}");
    // --timeout-ms ends a run that finds nothing new.
    let third = ok(samsa(&["consume", "jobs", "--bootstrap", b, "--group", "workers", "--max-messages", "5", "--timeout-ms", "1500"], "")?)?;
    ensure!(third == "j4\n", "third run: {third}");
    Ok(())
}

#[test]
fn produce_errors_are_plain_lines() -> Result<()> {
    let server = SamsaServer::builder().set("auto.create.topics.enable", false).start()?;
    let b = server.bootstrap();
    let run = samsa(&["produce", "missing", "--bootstrap", b, "-X", "max.block.ms=1000"], "x\n")?;
    ensure!(run.code == Some(1), "exit {:?}: {}", run.code, run.stderr);
    ensure!(run.stderr.contains("topic `missing` does not exist"), "stderr: {}", run.stderr);
    let run = samsa(&["produce", "missing", "--bootstrap", b, "-X", "lingr.ms=5"], "x\n")?;
    ensure!(run.code == Some(1) && run.stderr.contains("unknown producer property `lingr.ms`"), "stderr: {}", run.stderr);
    let run = samsa(&["consume", "missing", "--bootstrap", b, "--from-beginning"], "")?;
    ensure!(run.code == Some(1) && run.stderr.contains("topic `missing` does not exist"), "stderr: {}", run.stderr);
    Ok(())
}

#[test]
fn bench_commands_report_what_they_moved() -> Result<()> {
    let server = SamsaServer::start()?;
    let b = server.bootstrap();
    let produce = ok(samsa(&["bench", "produce", "--bootstrap", b, "--topic", "bp", "--count", "2000", "--record-size", "100", "--partitions", "2"], "")?)?;
    ensure!(produce.contains("samsa bench produce: 2000 records of 100 B, 2 partition(s)"), "{produce}");
    ensure!(produce.contains("records/s") && produce.contains("p999 ms"), "{produce}");
    let consume = ok(samsa(&["bench", "consume", "--bootstrap", b, "--topic", "bp", "--count", "2000", "--record-size", "100"], "")?)?;
    ensure!(consume.contains("samsa bench consume: 2000 records"), "{consume}");
    let e2e = ok(samsa(&["bench", "e2e", "--bootstrap", b, "--topic", "be", "--rate", "500", "--duration-secs", "1", "--record-size", "64"], "")?)?;
    ensure!(e2e.contains("samsa bench e2e at 500 records/s: 500 records"), "{e2e}");
    // The topic really holds what produce reported, and no more.
    let read = ok(samsa(&["consume", "bp", "--bootstrap", b, "--from-beginning", "--max-messages", "2001", "--timeout-ms", "1500"], "")?)?;
    ensure!(read.lines().count() == 2000, "{} records in bp", read.lines().count());
    Ok(())
}
