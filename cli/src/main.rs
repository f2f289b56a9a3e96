//! The `samsa` command: `samsa server` (a Kafka-compatible broker) and the client tools
//! (`topic`, `produce`, `consume`, `group`, `bench`, `cluster`) built on `samsa-client`.

mod acl;
mod bench;
mod bench_connect;
mod bench_nexmark;
mod bench_streams;
mod cluster;
mod connect;
mod consume;
mod group;
mod produce;
mod quickstart;
mod server;
mod sql;
mod sql_connectors;
mod top;
mod topic;
mod transactions;
mod user;
mod util;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Samsa: a Kafka-compatible event-streaming platform in one binary.
#[derive(Parser)]
#[command(name = "samsa", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log level or filter for stderr, e.g. debug, warn, or info,samsa_broker=debug (wins
    /// over RUST_LOG; the default depends on the command: info for server, warn for tools).
    #[arg(long, global = true, value_name = "LEVEL")]
    log_level: Option<String>,
    /// Client settings for the tools from a properties file (Kafka's `--command-config`),
    /// e.g. security.protocol=SASL_SSL, sasl.mechanism, sasl.username, sasl.password,
    /// ssl.ca.location, ssl.certificate.location, ssl.key.location (`samsa produce` and
    /// `samsa consume` also take them as -X KEY=VALUE).
    #[arg(long, global = true, value_name = "FILE")]
    command_config: Option<std::path::PathBuf>,
}

/// The client settings of --command-config.
fn client_properties(cli: &Cli) -> Result<Vec<(String, String)>, String> {
    match &cli.command_config {
        Some(path) => client_properties_file(path).map_err(|e| format!("--command-config {e}")),
        None => Ok(Vec::new()),
    }
}

/// `key=value` pairs of a client properties file.
pub(crate) fn client_properties_file(path: &std::path::Path) -> Result<Vec<(String, String)>, String> {
    samsa_client::config::read_properties_file(path).map_err(|e| e.to_string())
}

#[derive(Subcommand)]
enum Command {
    /// Run a broker that any Kafka client can use.
    ///
    /// Prints `samsa listening on HOST:PORT` on stdout when ready, then `samsa http on
    /// HOST:PORT` for the SQL HTTP API; logs go to stderr (set RUST_LOG=debug for more).
    /// SIGINT or SIGTERM flushes the logs and exits 0.
    Server(server::ServerArgs),
    /// Create, list, describe, alter and delete topics.
    Topic(topic::TopicArgs),
    /// Send lines from stdin to a topic, one record per line.
    Produce(produce::ProduceArgs),
    /// Print records from a topic.
    Consume(consume::ConsumeArgs),
    /// List, describe (with lag), reset offsets of, and delete consumer groups.
    Group(group::GroupArgs),
    /// Measure produce, consume and end-to-end throughput and latency.
    Bench(bench::BenchArgs),
    /// Show the cluster: brokers, the active controller, partition leaders and ISRs.
    Cluster(cluster::ClusterArgs),
    /// List and describe transactions, and the producers a partition tracks.
    Transactions(transactions::TransactionsArgs),
    /// A SQL shell over a server's HTTP API: -e SQL, -f FILE, or an interactive prompt.
    Sql(sql::SqlArgs),
    /// Run Kafka-Connect-style connectors from config files (standalone).
    Connect(connect::ConnectArgs),
    /// Run a whole pipeline in one command: a server, datagen connectors, a windowed SQL
    /// join, and its results refreshing in the terminal.
    ///
    /// Everything runs in this process with its data in --data-dir; a second run resumes.
    /// Ctrl-C (or --duration) stops it cleanly.
    Quickstart(quickstart::QuickstartArgs),
    /// A live view of a server's throughput and consumer lag, read from its /metrics.
    Top(top::TopArgs),
    /// Add, list and delete SCRAM users (SASL_PLAINTEXT / SASL_SSL listeners).
    User(user::UserArgs),
    /// Add, list and remove ACLs (authorizer.enabled=true).
    Acl(acl::AclArgs),
}

/// Waits for SIGINT or SIGTERM.
pub(crate) async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The server logs its progress; the client tools stay quiet unless something is wrong.
    // openraft narrates every vote and append at info; and warns of benign races (stale vote responses); only its errors matter to operators.
    let default_level = match cli.command {
        Command::Server(_) => "info,openraft=error",
        // The quickstart's screen is the results; only problems are logged.
        Command::Quickstart(_) => "warn,openraft=error",
        // A connect worker reports its tasks starting, stopping and failing.
        Command::Connect(_) => "warn,samsa_connect=info",
        _ => "warn",
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        // Colours only on a terminal: log files and test captures stay plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(match &cli.log_level {
            Some(level) => match tracing_subscriber::EnvFilter::try_new(level) {
                Ok(f) => f,
                Err(e) => {
                    eprintln!("samsa: --log-level {level}: {e} (use a level such as info or debug, or a filter such as info,samsa_broker=debug)");
                    return ExitCode::FAILURE;
                }
            },
            None => tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| default_level.into()),
        })
        .init();
    // The tools' client settings (the server's own components use its PLAINTEXT listener).
    let props = match client_properties(&cli) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("samsa: {e}");
            return ExitCode::FAILURE;
        }
    };
    if !props.is_empty() {
        if matches!(cli.command, Command::Server(_) | Command::Quickstart(_)) {
            eprintln!("samsa: --command-config configures the client tools; the server's settings are --set KEY=VALUE");
            return ExitCode::FAILURE;
        }
        if let Err(e) = samsa_client::config::set_process_defaults(props) {
            eprintln!("samsa: {e}");
            return ExitCode::FAILURE;
        }
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("samsa: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Command::Server(args) => runtime.block_on(server::run(args)),
        Command::Topic(args) => runtime.block_on(topic::run(args)),
        Command::Produce(args) => runtime.block_on(produce::run(args)),
        Command::Consume(args) => runtime.block_on(consume::run(args)),
        Command::Group(args) => runtime.block_on(group::run(args)),
        Command::Bench(args) => runtime.block_on(bench::run(args)),
        Command::Cluster(args) => runtime.block_on(cluster::run(args)),
        Command::Transactions(args) => runtime.block_on(transactions::run(args)),
        Command::Sql(args) => runtime.block_on(sql::run(args)),
        Command::Connect(args) => runtime.block_on(connect::run_connect(args)),
        Command::Quickstart(args) => runtime.block_on(quickstart::run(args)),
        Command::Top(args) => runtime.block_on(top::run(args)),
        Command::User(args) => runtime.block_on(user::run(args)),
        Command::Acl(args) => runtime.block_on(acl::run(args)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("samsa: {msg}");
            ExitCode::FAILURE
        }
    }
}
