//! `samsa server` refuses a bad configuration with exit code 1 and exactly one stderr line
//! that names the key or path, before printing the listening line.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Result};
use samsa_tests::{samsa_bin, SamsaServer};

/// Runs `samsa server ARGS` (with a fresh data dir unless one is given) and returns its
/// stderr, requiring a non-zero exit within 20 s and nothing on stdout.
fn refused(args: &[&str]) -> Result<String> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let mut cmd = Command::new(samsa_bin()?);
    cmd.arg("server");
    if !args.contains(&"--data-dir") {
        cmd.arg("--data-dir").arg(&data);
    }
    if !args.contains(&"--listen") {
        cmd.args(["--listen", "127.0.0.1:0"]);
    }
    let mut child = cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break s;
        }
        if Instant::now() > deadline {
            child.kill()?;
            bail!("samsa server {args:?} kept running; it should have refused the configuration");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = child.wait_with_output()?;
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    ensure!(status.code() == Some(1), "exit status {status:?}, stderr: {stderr}");
    ensure!(stdout.is_empty(), "nothing on stdout, got {stdout:?}");
    ensure!(stderr.lines().count() == 1, "exactly one line, got:\n{stderr}");
    ensure!(stderr.starts_with("samsa: "), "{stderr}");
    Ok(stderr)
}

#[test]
fn unknown_key_is_named() -> Result<()> {
    let err = refused(&["--set", "log.segmnt.bytes=1000"])?;
    ensure!(err.contains("unknown config key `log.segmnt.bytes`"), "{err}");
    Ok(())
}

#[test]
fn bad_value_is_named() -> Result<()> {
    let err = refused(&["--set", "num.partitions=many"])?;
    ensure!(err.contains("num.partitions") && err.contains("many"), "{err}");
    let err = refused(&["--set", "log.cleanup.policy=shred"])?;
    ensure!(err.contains("log.cleanup.policy") && err.contains("delete, compact"), "{err}");
    Ok(())
}

#[test]
fn bad_config_file_line_is_named() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("server.properties");
    std::fs::write(&file, "# broker\nnum.partitions=3\nlog.retention.ms=soon\n")?;
    let err = refused(&["--config", file.to_str().unwrap()])?;
    ensure!(err.contains("server.properties:3") && err.contains("log.retention.ms"), "{err}");
    let err = refused(&["--config", "/nonexistent/samsa.properties"])?;
    ensure!(err.contains("/nonexistent/samsa.properties"), "{err}");
    Ok(())
}

#[test]
fn port_in_use_is_named() -> Result<()> {
    let taken = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = taken.local_addr()?.to_string();
    let err = refused(&["--listen", &addr])?;
    ensure!(err.contains(&format!("cannot listen on {addr}")), "{err}");
    Ok(())
}

#[test]
fn unusable_data_dir_is_named() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("a-file");
    std::fs::write(&file, "not a directory")?;
    let bad = file.join("data");
    let err = refused(&["--data-dir", bad.to_str().unwrap()])?;
    ensure!(err.contains(bad.to_str().unwrap()), "{err}");
    Ok(())
}

#[test]
fn data_dir_in_use_by_another_server_is_refused() -> Result<()> {
    let mut first = SamsaServer::start()?;
    let dir = first.data_dir().to_str().unwrap().to_string();
    let err = refused(&["--data-dir", &dir])?;
    ensure!(err.contains(&dir) && err.contains("in use"), "{err}");
    first.terminate()
}
