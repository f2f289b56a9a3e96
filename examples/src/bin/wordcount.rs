//! Word count: reads lines of text from `--input`, splits them into words, counts each
//! word, and writes `word -> count` (both UTF-8 text) to `--output` on every update.
//! Run several instances with the same `--app-id` (each with its own `--state-dir`) to
//! share the work; with `--guarantee exactly_once_v2` the counts stay exact through
//! crashes.

use anyhow::Result;
use clap::Parser;
use samsa_streams::{Materialized, StreamsBuilder};

/// Counts words of a text topic with Samsa Streams.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Topic of text lines (keys ignored).
    #[arg(long, default_value = "text-lines")]
    input: String,
    /// Topic of word counts (key: word, value: count as decimal text).
    #[arg(long, default_value = "word-counts")]
    output: String,
    /// Flags every example takes.
    #[command(flatten)]
    app: samsa_examples::AppArgs,
}

fn main() -> Result<()> {
    samsa_examples::init_logging();
    let args = Args::parse();
    let config = args.app.config("wordcount", &[])?;

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

    samsa_examples::run_until_ctrl_c(topology, config, |_| {})
}
