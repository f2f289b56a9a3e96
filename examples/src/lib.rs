//! Shared helpers of Samsa's example programs: the flags every example takes, logging
//! setup, and running a topology until Ctrl-C (or SIGTERM).

use anyhow::Result;
use samsa_streams::{KafkaStreams, StreamsConfig, Topology};

/// Flags every example takes.
#[derive(clap::Args, Debug)]
pub struct AppArgs {
    /// Kafka bootstrap servers.
    #[arg(long, default_value = "127.0.0.1:9092")]
    pub bootstrap: String,
    /// Application id (consumer group, internal topic prefix) [default: the example's name].
    #[arg(long)]
    pub app_id: Option<String>,
    /// Local state directory, one per instance [default: <tmp>/samsa-<example>].
    #[arg(long)]
    pub state_dir: Option<String>,
    /// Processing guarantee: at_least_once or exactly_once_v2.
    #[arg(long, default_value = "at_least_once")]
    pub guarantee: String,
    /// Stream threads.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Extra streams properties, `KEY=VALUE` (repeatable), e.g. `commit.interval.ms=200`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
}

impl AppArgs {
    /// The streams config of example `name`: `defaults` first, then the flags.
    pub fn config(&self, name: &str, defaults: &[(&str, &str)]) -> Result<StreamsConfig> {
        let state_dir = self.state_dir.clone().unwrap_or_else(|| std::env::temp_dir().join(format!("samsa-{name}")).display().to_string());
        let mut config = StreamsConfig::new(self.app_id.as_deref().unwrap_or(name), &self.bootstrap);
        for (k, v) in defaults {
            config.set(k, v)?;
        }
        config.set("state.dir", &state_dir)?.set("processing.guarantee", &self.guarantee)?.set("num.stream.threads", &self.threads.to_string())?;
        for kv in &self.sets {
            let (k, v) = kv.split_once('=').ok_or_else(|| anyhow::anyhow!("--set takes KEY=VALUE, got `{kv}`"))?;
            config.set(k, v)?;
        }
        Ok(config)
    }
}

/// Logs to stderr at `RUST_LOG` (default `info`).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(false).try_init();
}

/// Starts the topology and runs it until Ctrl-C / SIGTERM (then closes cleanly) or a
/// failure (then returns the error). `on_stop` sees the instance just before it closes.
pub fn run_until_ctrl_c(topology: Topology, config: StreamsConfig, on_stop: impl FnOnce(&KafkaStreams)) -> Result<()> {
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
        on_stop(&streams);
        let closed = streams.close().await;
        outcome?;
        closed?;
        Ok(())
    })
}
