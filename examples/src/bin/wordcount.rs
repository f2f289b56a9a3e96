//! Word count: reads lines of text from `--input`, splits them into words, counts each
//! word, and writes `word -> count` (both UTF-8 text) to `--output` on every update.
//! Run several instances with the same `--app-id` (each with its own `--state-dir`) to
//! share the work; with `--guarantee exactly_once_v2` the counts stay exact through
//! crashes.

use anyhow::Result;
use clap::Parser;
use samsa_streams::{Materialized, StreamsBuilder, StreamsConfig};

/// Counts words of a text topic with Samsa Streams.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Kafka bootstrap servers.
    #[arg(long, default_value = "127.0.0.1:9092")]
    bootstrap: String,
    /// Topic of text lines (keys ignored).
    #[arg(long, default_value = "text-lines")]
    input: String,
    /// Topic of word counts (key: word, value: count as decimal text).
    #[arg(long, default_value = "word-counts")]
    output: String,
    /// Application id (consumer group, internal topic prefix).
    #[arg(long, default_value = "wordcount")]
    app_id: String,
    /// Local state directory (one per instance).
    #[arg(long, default_value_t = std::env::temp_dir().join("samsa-wordcount").display().to_string())]
    state_dir: String,
    /// Processing guarantee: at_least_once or exactly_once_v2.
    #[arg(long, default_value = "at_least_once")]
    guarantee: String,
    /// Stream threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Extra streams properties, `KEY=VALUE` (repeatable), e.g. `commit.interval.ms=200`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
}

fn main() -> Result<()> {
    samsa_examples::init_logging();
    let args = Args::parse();
    let mut config = StreamsConfig::new(&args.app_id, &args.bootstrap);
    config.set("state.dir", &args.state_dir)?.set("processing.guarantee", &args.guarantee)?.set("num.stream.threads", &args.threads.to_string())?;
    for kv in &args.sets {
        let (k, v) = kv.split_once('=').ok_or_else(|| anyhow::anyhow!("--set takes KEY=VALUE, got `{kv}`"))?;
        config.set(k, v)?;
    }

    let builder = StreamsBuilder::new();
    builder
        .stream::<Option<String>, String>(&args.input)
        .flat_map_values(|line: String| line.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).map(str::to_lowercase).collect::<Vec<_>>())
        .group_by(|_, word: &String| word.clone())
        .count_with(Materialized::named("counts"))
        .to_stream()
        .map_values(|n: i64| n.to_string())
        .to(&args.output);
    let topology = builder.build()?;
    eprintln!("{}", topology.describe());

    samsa_examples::run_until_ctrl_c(topology, config)
}
