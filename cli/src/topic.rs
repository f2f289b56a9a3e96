//! `samsa topic`: create, list, describe, alter and delete topics.

/// Arguments of this command.
#[derive(clap::Args)]
pub struct TopicArgs {
    /// A broker to start from.
    #[arg(long, default_value = "127.0.0.1:9092", value_name = "HOST:PORT")]
    pub bootstrap: String,
}

/// Runs the command.
pub async fn run(args: TopicArgs) -> Result<(), String> {
    let _ = args.bootstrap;
    Err("not implemented yet".into())
}
