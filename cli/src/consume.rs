//! `samsa consume`: print records from a topic.

/// Arguments of this command.
#[derive(clap::Args)]
pub struct ConsumeArgs {
    /// A broker to start from.
    #[arg(long, default_value = "127.0.0.1:9092", value_name = "HOST:PORT")]
    pub bootstrap: String,
}

/// Runs the command.
pub async fn run(args: ConsumeArgs) -> Result<(), String> {
    let _ = args.bootstrap;
    Err("not implemented yet".into())
}
