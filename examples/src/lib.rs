//! Shared helpers of Samsa's example programs: logging setup and running a topology
//! until Ctrl-C (or SIGTERM).

use anyhow::Result;
use samsa_streams::{KafkaStreams, StreamsConfig, Topology};

/// Logs to stderr at `RUST_LOG` (default `info`).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(false).try_init();
}

/// Starts the topology and runs it until Ctrl-C / SIGTERM (then closes cleanly) or a
/// failure (then returns the error).
pub fn run_until_ctrl_c(topology: Topology, config: StreamsConfig) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async move {
        let streams = KafkaStreams::start(topology, config).await?;
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let outcome = tokio::select! {
            r = streams.wait() => r,
            _ = tokio::signal::ctrl_c() => Ok(()),
            _ = term.recv() => Ok(()),
        };
        eprintln!("stopping");
        let closed = streams.close().await;
        outcome?;
        closed?;
        Ok(())
    })
}
