//! kcat (librdkafka 2.0): metadata, keyed produce, consume back.

use anyhow::{ensure, Result};
use samsa_tests::{kcat, run_kcat, SamsaServer};

#[test]
fn produce_metadata_consume() -> Result<()> {
    let mut server = SamsaServer::builder().set("num.partitions", 1).start()?;
    let b = server.bootstrap().to_string();
    let topic = "kcat-lines";
    let lines: Vec<String> = (0..50).map(|i| format!("key{i}:value {i}")).collect();

    // Producing to an unknown topic auto-creates it.
    kcat()
        .args(["-b", &b, "-P", "-t", topic, "-K:", "-X", "acks=all"])
        .stdin(lines.join("\n") + "\n")
        .run()?;

    let meta = run_kcat(&["-b", &b, "-L", "-J"])?;
    let compact: String = meta.stdout.split_whitespace().collect();
    ensure!(
        compact.contains(&format!("\"topic\":\"{topic}\"")),
        "auto-created topic missing from metadata: {}",
        meta.stdout
    );
    let brokers = compact
        .split("\"brokers\":[")
        .nth(1)
        .and_then(|s| s.split(']').next())
        .unwrap_or_default();
    ensure!(
        brokers.contains(&format!(":{}\"", server.port())) && brokers.contains("\"id\":1"),
        "broker 1 at port {} missing from metadata brokers [{brokers}]: {}",
        server.port(),
        meta.stdout
    );

    let plain = run_kcat(&["-b", &b, "-L", "-t", topic])?;
    ensure!(
        plain.stdout.contains("1 brokers:") && plain.stdout.contains("1 partitions"),
        "plain metadata listing: {}",
        plain.stdout
    );

    let out = run_kcat(&[
        "-b",
        &b,
        "-C",
        "-t",
        topic,
        "-e",
        "-o",
        "beginning",
        "-f",
        "%k=%s\n",
    ])?;
    let want: String = (0..50).map(|i| format!("key{i}=value {i}\n")).collect();
    ensure!(
        out.stdout == want,
        "consumed:\n{}\nwant:\n{want}",
        out.stdout
    );
    server.terminate()
}
