//! A throwaway PostgreSQL server for connector tests: Debian's `postgresql` package
//! (installed by `scripts/setup-test.sh`), a fresh cluster in a temp dir on a free
//! loopback port, `wal_level = logical` for change data capture, stopped when dropped.
//! As root, the server runs as the `postgres` user (PostgreSQL refuses to run as root).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anyhow::{bail, ensure, Context, Result};

use crate::free_port;

/// A running PostgreSQL server.
pub struct PgServer {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    /// Run server commands as this user (`Some("postgres")` when the tests run as root).
    run_as: Option<String>,
}

/// The directory holding `postgres`, `initdb` and `pg_ctl`: Debian's newest version.
fn bin_dir() -> Result<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, p): &(u32, PathBuf)| p.join("pg_ctl").exists())
        .collect();
    found.sort();
    found.pop().map(|(_, p)| p).context("PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/pg_ctl); scripts/setup-test.sh installs it with apt-get install postgresql")
}

fn output(cmd: &mut Command, what: &str) -> Result<Output> {
    let out = cmd.output().with_context(|| format!("cannot run {what}"))?;
    ensure!(out.status.success(), "{what} failed ({}): {}{}", out.status, String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    Ok(out)
}

impl PgServer {
    /// Starts a new cluster and waits until it accepts connections.
    pub fn start() -> Result<PgServer> {
        let bin = bin_dir()?;
        let dir = tempfile::tempdir()?;
        let root = String::from_utf8(output(Command::new("id").arg("-u"), "id -u")?.stdout)?.trim() == "0";
        let run_as = root.then(|| "postgres".to_string());
        if root {
            output(Command::new("chown").args(["-R", "postgres:postgres"]).arg(dir.path()), "chown")?;
        }
        let port = free_port()?;
        let server = PgServer { bin, dir, port, run_as };
        let data = server.data_dir();
        server.run(&server.bin.join("initdb"), &["-D", &data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync", "--locale=C"], "initdb")?;
        let opts = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c wal_level=logical -c max_replication_slots=10 -c max_wal_senders=10 -c fsync=off -c synchronous_commit=off -c full_page_writes=off",
            server.dir.path().display()
        );
        let log = server.dir.path().join("postgres.log").display().to_string();
        server.run(&server.bin.join("pg_ctl"), &["start", "-D", &data, "-w", "-t", "60", "-l", &log, "-o", &opts], "pg_ctl start")?;
        Ok(server)
    }

    fn data_dir(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn run(&self, program: &Path, args: &[&str], what: &str) -> Result<Output> {
        let mut cmd = match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(program);
                c
            }
            None => Command::new(program),
        };
        cmd.args(args).current_dir(self.dir.path());
        output(&mut cmd, what)
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A JDBC URL for a database, as Confluent's connectors take it.
    pub fn jdbc_url(&self, db: &str) -> String {
        format!("jdbc:postgresql://127.0.0.1:{}/{db}", self.port)
    }

    /// Runs SQL in a database with `psql` and returns its unaligned output (`|` between
    /// columns, one row per line).
    pub fn sql(&self, db: &str, sql: &str) -> Result<String> {
        let out = Command::new(self.bin.join("psql"))
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", "postgres", "-d", db, "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .output()
            .context("cannot run psql")?;
        if !out.status.success() {
            bail!("psql failed on {sql:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8(out.stdout)?.trim_end().to_string())
    }

    /// Creates a database.
    pub fn create_db(&self, db: &str) -> Result<()> {
        self.sql("postgres", &format!("CREATE DATABASE \"{db}\"")).map(|_| ())
    }

    /// The server's log, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default()
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let data = self.data_dir();
        let _ = self.run(&self.bin.join("pg_ctl"), &["stop", "-D", &data, "-m", "immediate", "-w"], "pg_ctl stop");
    }
}
