//! `samsa produce`: lines from stdin become records.

use bytes::Bytes;
use samsa_client::{Producer, ProducerConfig, ProducerRecord};
use tokio::io::AsyncBufReadExt;

/// Arguments of `samsa produce`.
#[derive(clap::Args)]
pub struct ProduceArgs {
    /// Topic to write to.
    pub topic: String,
    /// A broker to start from.
    #[arg(long, default_value = "127.0.0.1:9092", value_name = "HOST:PORT")]
    pub bootstrap: String,
    /// Split each line at the first SEP into key and value (lines without it are keyless).
    #[arg(long, value_name = "SEP")]
    pub key_separator: Option<String>,
    /// Acknowledgements to wait for: 0, 1 or all.
    #[arg(long, default_value = "all")]
    pub acks: String,
    /// Compression codec: none, gzip, snappy, lz4 or zstd.
    #[arg(long, default_value = "none")]
    pub compression: String,
    /// Write every record to this partition (default: by key, or sticky for keyless).
    #[arg(long, value_name = "N")]
    pub partition: Option<i32>,
    /// A header added to every record, as KEY=VALUE (repeatable).
    #[arg(long = "header", value_name = "KEY=VALUE")]
    pub headers: Vec<String>,
    /// Any producer property, as KEY=VALUE (repeatable), e.g. linger.ms=50.
    #[arg(long = "property", short = 'X', value_name = "KEY=VALUE")]
    pub properties: Vec<String>,
}

/// Splits `KEY=VALUE`.
pub fn split_pair(pair: &str) -> Result<(&str, &str), String> {
    pair.split_once('=').ok_or_else(|| format!("`{pair}` is not KEY=VALUE"))
}

/// Runs the command: one record per stdin line, then waits for every acknowledgement.
pub async fn run(args: ProduceArgs) -> Result<(), String> {
    let mut config = ProducerConfig::new(&args.bootstrap).map_err(|e| e.to_string())?;
    config.set("acks", &args.acks).map_err(|e| e.to_string())?;
    config.set("compression.type", &args.compression).map_err(|e| e.to_string())?;
    for p in &args.properties {
        let (k, v) = split_pair(p)?;
        config.set(k, v).map_err(|e| e.to_string())?;
    }
    let headers: Vec<(String, Option<Bytes>)> = args
        .headers
        .iter()
        .map(|h| split_pair(h).map(|(k, v)| (k.to_string(), Some(Bytes::from(v.to_string())))))
        .collect::<Result<_, _>>()?;
    let producer = Producer::new(config).await.map_err(|e| e.to_string())?;
    let (tx, mut rx) = tokio::sync::mpsc::channel(10_000);
    // Deliveries are awaited on their own task so reading stdin never waits on the broker.
    let waiter = tokio::spawn(async move {
        let (mut ok, mut first_error) = (0u64, None);
        let mut failed = 0u64;
        while let Some((line_no, fut)) = rx.recv().await {
            match fut.await {
                Ok(_) => ok += 1,
                Err(e) => {
                    failed += 1;
                    first_error.get_or_insert(format!("line {line_no}: {e}"));
                }
            }
        }
        (ok, failed, first_error)
    });
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut line_no = 0u64;
    let mut send_error = None;
    while let Some(line) = lines.next_line().await.map_err(|e| format!("cannot read stdin: {e}"))? {
        line_no += 1;
        let (key, value) = match &args.key_separator {
            Some(sep) => match line.split_once(sep.as_str()) {
                Some((k, v)) => (Some(Bytes::from(k.to_string())), v.to_string()),
                None => (None, line.clone()),
            },
            None => (None, line.clone()),
        };
        let record = ProducerRecord {
            topic: args.topic.clone(),
            partition: args.partition,
            key,
            value: Some(Bytes::from(value)),
            headers: headers.clone(),
            timestamp: None,
        };
        match producer.send(record).await {
            Ok(fut) => {
                if tx.send((line_no, fut)).await.is_err() {
                    break;
                }
            }
            Err(e) => {
                send_error = Some(format!("line {line_no}: {e}"));
                break;
            }
        }
    }
    drop(tx);
    producer.flush().await;
    let (ok, failed, first_error) = waiter.await.map_err(|e| e.to_string())?;
    eprintln!("sent {ok} record(s) to {}", args.topic);
    if let Some(e) = send_error.or(first_error) {
        return Err(if failed > 1 { format!("{failed} record(s) failed; first: {e}") } else { e });
    }
    Ok(())
}
