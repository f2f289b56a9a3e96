//! `samsa bench`: produce, consume and end-to-end benchmarks.

/// Arguments of this command.
#[derive(clap::Args)]
pub struct BenchArgs {
    /// A broker to start from.
    #[arg(long, default_value = "127.0.0.1:9092", value_name = "HOST:PORT")]
    pub bootstrap: String,
}

/// Runs the command.
pub async fn run(args: BenchArgs) -> Result<(), String> {
    let _ = args.bootstrap;
    Err("not implemented yet".into())
}
