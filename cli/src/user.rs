//! `samsa user`: SCRAM users for SASL listeners (stored in the cluster metadata as salted
//! keys; the password is salted here and never sent).

use clap::Subcommand;
use samsa_client::admin::Admin;
use samsa_client::scram::{Mechanism, MAX_ITERATIONS, MIN_ITERATIONS};

use crate::util::print_table;

/// Arguments of this command.
#[derive(clap::Args)]
pub struct UserArgs {
    /// A broker to start from (a PLAINTEXT listener).
    #[arg(long, global = true, default_value = "127.0.0.1:9092", value_name = "HOST:PORT")]
    pub bootstrap: String,
    #[command(subcommand)]
    command: UserCommand,
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create a user or set its password, for one SCRAM mechanism (SASL/PLAIN accepts the
    /// same password).
    Add {
        /// The user name (its principal is User:NAME).
        name: String,
        /// SCRAM-SHA-256 or SCRAM-SHA-512.
        #[arg(long, default_value = "SCRAM-SHA-512", value_name = "MECHANISM")]
        mechanism: String,
        /// The password.
        #[arg(long, value_name = "PASSWORD")]
        password: String,
        /// Iterations of the key derivation (4096 to 16384).
        #[arg(long, default_value_t = 8192, value_name = "N")]
        iterations: i32,
    },
    /// List users and their mechanisms (all, or the named ones).
    List {
        /// Only these users.
        names: Vec<String>,
    },
    /// Remove a user's credential for one mechanism.
    Delete {
        /// The user name.
        name: String,
        /// SCRAM-SHA-256 or SCRAM-SHA-512.
        #[arg(long, default_value = "SCRAM-SHA-512", value_name = "MECHANISM")]
        mechanism: String,
    },
}

fn mechanism(name: &str) -> Result<Mechanism, String> {
    Mechanism::from_name(&name.to_ascii_uppercase()).ok_or_else(|| format!("--mechanism {name}: use SCRAM-SHA-256 or SCRAM-SHA-512"))
}

/// Runs the command.
pub async fn run(args: UserArgs) -> Result<(), String> {
    let admin = Admin::connect(&args.bootstrap).await.map_err(|e| e.to_string())?;
    match args.command {
        UserCommand::Add { name, mechanism: m, password, iterations } => {
            let m = mechanism(&m)?;
            if !(MIN_ITERATIONS..=MAX_ITERATIONS).contains(&iterations) {
                return Err(format!("--iterations must be between {MIN_ITERATIONS} and {MAX_ITERATIONS}"));
            }
            if password.is_empty() {
                return Err("--password must not be empty".into());
            }
            admin.upsert_scram_user(&name, m, &password, iterations).await.map_err(|e| e.to_string())?;
            println!("user {name}: {} password set", m.name());
        }
        UserCommand::List { names } => {
            let users = admin.describe_scram_users(&names).await.map_err(|e| e.to_string())?;
            let rows: Vec<Vec<String>> =
                users.into_iter().map(|u| vec![u.name, u.mechanisms.iter().map(|(m, i)| format!("{} ({i} iterations)", m.name())).collect::<Vec<_>>().join(", ")]).collect();
            print_table(&["USER", "MECHANISMS"], &rows);
        }
        UserCommand::Delete { name, mechanism: m } => {
            let m = mechanism(&m)?;
            admin.delete_scram_user(&name, m).await.map_err(|e| e.to_string())?;
            println!("user {name}: {} credential deleted", m.name());
        }
    }
    Ok(())
}
