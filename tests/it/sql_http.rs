//! SQL over HTTP: `samsa server` serves `POST /sql` (`--http-listen`), and `samsa sql`
//! (-e, -f, --format) talks to it. Raw requests check the documented JSON shapes; an
//! EMIT CHANGES query streams NDJSON rows as they are inserted, and stops (its consumer
//! group goes) when the client disconnects.

use std::io::BufReader;
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use samsa_tests::{http_start, read_body, read_chunk, run_samsa, samsa_bin, wait_until, CliRun, SamsaServer, Started};
use serde_json::{json, Value};

/// How long one `samsa sql` invocation may take.
const CLI_TIMEOUT: Duration = Duration::from_secs(90);
/// How long a streamed row may take to arrive after its INSERT.
const ROW_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs `samsa ARGS`, bounded by [`CLI_TIMEOUT`].
fn samsa(args: &[&str]) -> Result<CliRun> {
    run_samsa(args, CLI_TIMEOUT)
}

/// `samsa sql --server ADDR ARGS`.
fn sql(server: &SamsaServer, args: &[&str]) -> Result<CliRun> {
    let mut all = vec!["sql", "--server", server.http_addr()];
    all.extend_from_slice(args);
    samsa(&all)
}

/// An HTTP answer: status, lower-cased headers, body (chunked encoding undone).
pub(crate) struct Answer {
    pub(crate) status: u16,
    headers: Vec<(String, String)>,
    pub(crate) body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Result<Value> {
        serde_json::from_str(&self.body).with_context(|| format!("body is not JSON: {}", self.body))
    }
}

fn post_start(addr: &str, body: &str) -> Result<Started> {
    http_start(addr, "POST", "/sql", body)
}

/// `POST /sql` with `body`; the whole answer.
fn post(addr: &str, body: &str) -> Result<Answer> {
    let (mut reader, status, headers) = post_start(addr, body)?;
    let body = read_body(&mut reader, &headers)?;
    Ok(Answer { status, headers, body })
}

/// POSTs one statement (`{"sql": ...}`).
pub(crate) fn post_sql(addr: &str, statement: &str) -> Result<Answer> {
    post(addr, &json!({ "sql": statement }).to_string())
}

/// The lines of a streamed (chunked NDJSON) answer, read with a deadline.
struct NdjsonStream {
    reader: BufReader<TcpStream>,
    pending: Vec<u8>,
}

impl NdjsonStream {
    /// The next line, waiting at most `timeout`.
    fn next_line(&mut self, timeout: Duration) -> Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(at) = self.pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=at).collect();
                return Ok(String::from_utf8(line)?.trim_end().to_string());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            ensure!(!left.is_zero(), "no NDJSON line within {timeout:?} (pending {:?})", String::from_utf8_lossy(&self.pending));
            self.reader.get_ref().set_read_timeout(Some(left))?;
            match read_chunk(&mut self.reader) {
                Ok(Some(data)) => self.pending.extend(data),
                Ok(None) => bail!("the stream ended (pending {:?})", String::from_utf8_lossy(&self.pending)),
                Err(e) => bail!("no NDJSON line within {timeout:?}: {e}"),
            }
        }
    }
}

#[test]
fn shell_runs_statements_and_formats_results() -> Result<()> {
    let mut server = SamsaServer::start()?;

    let out = sql(&server, &["-e", "CREATE STREAM t (a VARCHAR, n BIGINT) WITH (partitions = 1); INSERT INTO t VALUES ('x', 1), ('y', 2); SELECT a, n FROM t ORDER BY a"])?.ok()?;
    let lines: Vec<&str> = out.lines().collect();
    ensure!(lines.len() == 6, "two messages, then the table:\n{out}");
    ensure!(lines[0].contains("created"), "CREATE says so: {out}");
    ensure!(lines[1].contains("2 rows inserted"), "INSERT says so: {out}");
    ensure!(lines[2..] == ["a  n", "x  1", "y  2", "(2 rows)"], "aligned table and count:\n{out}");

    let run = sql(&server, &["--format", "csv", "-e", "SELECT a, n FROM t ORDER BY a"])?;
    ensure!(run.stderr.is_empty(), "{}", run.stderr);
    let out = run.ok()?;
    ensure!(out == "a,n\nx,1\ny,2\n", "csv: {out:?}");
    let out = sql(&server, &["--format", "json", "-e", "SELECT n, a, n * 2 AS twice, CAST(NULL AS VARCHAR) AS z FROM t ORDER BY a"])?.ok()?;
    ensure!(out == "{\"n\":1,\"a\":\"x\",\"twice\":2,\"z\":null}\n{\"n\":2,\"a\":\"y\",\"twice\":4,\"z\":null}\n", "json, keys in column order: {out:?}");
    // csv and json keep messages off stdout.
    let run = sql(&server, &["--format", "csv", "-e", "INSERT INTO t VALUES ('z', 3); SELECT COUNT(*) AS c FROM t"])?;
    ensure!(run.stderr.contains("1 row inserted"), "{}", run.stderr);
    ensure!(run.ok()? == "c\n3\n");

    // A typo: exit 1, the position (in the -e text) and a hint; statements after it do not run.
    let run = sql(&server, &["-e", "SELECT 1 AS one; SELEC 2; SELECT 3 AS three"])?;
    ensure!(run.code == Some(1), "exit code 1: {run:?}");
    ensure!(run.stdout.contains("one\n1\n(1 row)") && !run.stdout.contains("three"), "first statement only: {}", run.stdout);
    ensure!(run.stderr.lines().any(|l| l.starts_with("error: ") && l.contains("SELEC")), "{}", run.stderr);
    ensure!(run.stderr.contains("  at line 1, column 18\n"), "position within the -e text: {}", run.stderr);
    ensure!(run.stderr.contains("  hint: did you mean SELECT instead of SELEC?"), "{}", run.stderr);
    ensure!(run.stderr.contains("statement 2 of 3 in -e failed"), "{}", run.stderr);

    // Scripts: -f runs them; a failing one stops at the statement and names it.
    let dir = tempfile::tempdir()?;
    let good = dir.path().join("good.sql");
    std::fs::write(&good, "-- a script\nCREATE STREAM s2 (k VARCHAR) WITH (partitions = 1);\nINSERT INTO s2\n  VALUES ('one');\n\nSELECT k\n  FROM s2;\n")?;
    let out = sql(&server, &["-f", good.to_str().unwrap()])?.ok()?;
    ensure!(out.ends_with("k\none\n(1 row)\n"), "{out}");
    let bad = dir.path().join("bad.sql");
    std::fs::write(&bad, "SELECT 1 AS one;\n-- the next one is wrong\nSELEC 2;\nSELECT 3 AS three;\n")?;
    let run = sql(&server, &["-f", bad.to_str().unwrap()])?;
    ensure!(run.code == Some(1), "exit code 1: {run:?}");
    ensure!(!run.stdout.contains("three"), "stops at the error: {}", run.stdout);
    ensure!(run.stderr.contains("  at line 3, column 1\n"), "position within the file: {}", run.stderr);
    ensure!(run.stderr.contains(&format!("statement 2 of 3 in {} failed (line 3: SELEC 2)", bad.display())), "{}", run.stderr);

    // Nothing listening there: a clear message.
    let free = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.to_string();
    let run = samsa(&["sql", "--server", &free, "-e", "SELECT 1"])?;
    ensure!(run.code == Some(1) && run.stderr.contains(&format!("cannot connect to {free}")), "{run:?}");
    server.terminate()
}

#[test]
fn post_answers_documented_json() -> Result<()> {
    let mut server = SamsaServer::start()?;
    let addr = server.http_addr().to_string();

    let a = post_sql(&addr, "CREATE STREAM p (a VARCHAR, n BIGINT, x DOUBLE) WITH (partitions = 2)")?;
    ensure!(a.status == 200, "{}", a.body);
    let v = a.json()?;
    ensure!(v["columns"] == json!([]) && v["rows"] == json!([]) && v["message"].as_str().is_some_and(|m| m.contains("created")), "{v}");
    let a = post(&addr, &json!({"sql": "INSERT INTO p VALUES ('x', 1, 1.5), ('y', NULL, 2.0)"}).to_string())?;
    ensure!(a.status == 200, "{}", a.body);

    let a = post(&addr, &json!({"sql": "SELECT a, n, x FROM p ORDER BY a", "properties": {"isolation.level": "read_committed"}}).to_string())?;
    ensure!(a.status == 200, "{}", a.body);
    ensure!(a.header("content-type") == Some("application/json"), "{:?}", a.headers);
    ensure!(a.body == r#"{"columns":[{"name":"a","type":"VARCHAR"},{"name":"n","type":"BIGINT"},{"name":"x","type":"DOUBLE"}],"rows":[["x",1,1.5],["y",null,2.0]]}"#, "{}", a.body);

    // Errors: 400 with the engine's error.
    let a = post_sql(&addr, "SELEC 1")?;
    ensure!(a.status == 400, "{} {}", a.status, a.body);
    let v = a.json()?;
    ensure!(v["error"]["message"].as_str().is_some_and(|m| m.contains("SELEC")), "{v}");
    ensure!(v["error"]["position"] == json!({"line": 1, "column": 1}), "{v}");
    ensure!(v["error"]["hint"] == json!("did you mean SELECT instead of SELEC?"), "{v}");
    let a = post_sql(&addr, "SELECT nope FROM p")?;
    ensure!(a.status == 400 && a.json()?["error"]["message"].is_string(), "{}", a.body);
    let a = post(&addr, &json!({"sql": "SELECT 1", "properties": {"isolation.level": "dirty"}}).to_string())?;
    ensure!(a.status == 400 && a.body.contains("dirty"), "properties reach the engine: {}", a.body);

    // Bodies that are not a statement request.
    for body in ["SELECT 1", "{}", r#"{"query": "SELECT 1"}"#] {
        let a = post(&addr, body)?;
        ensure!(a.status == 400, "{body}: {} {}", a.status, a.body);
        let msg = a.json()?["error"]["message"].as_str().unwrap_or_default().to_string();
        ensure!(msg.contains(r#"the body must be JSON like {"sql": "SELECT 1"}"#), "{body}: {msg}");
    }
    server.terminate()
}

/// Whether `samsa group list` shows a group of a transient (EMIT CHANGES) query.
fn transient_group_exists(server: &SamsaServer) -> Result<bool> {
    let out = samsa(&["group", "list", "--bootstrap", server.bootstrap()])?.ok()?;
    Ok(out.contains("_samsa_sql_transient"))
}

/// `samsa sql -e STATEMENT` in the background, stdout to a file.
struct Shell {
    child: Child,
    stdout: std::path::PathBuf,
    stderr: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Shell {
    fn start(server: &SamsaServer, statement: &str) -> Result<Shell> {
        let dir = tempfile::tempdir()?;
        let (stdout, stderr) = (dir.path().join("stdout"), dir.path().join("stderr"));
        let child = Command::new(samsa_bin()?)
            .args(["sql", "--server", server.http_addr(), "-e", statement])
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout)?)
            .stderr(std::fs::File::create(&stderr)?)
            .spawn()?;
        Ok(Shell { child, stdout, stderr, _dir: dir })
    }

    fn stdout(&self) -> String {
        std::fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

impl Drop for Shell {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn emit_changes_streams_rows_until_the_client_leaves() -> Result<()> {
    let mut server = SamsaServer::start()?;
    let addr = server.http_addr().to_string();
    let a = post_sql(&addr, "CREATE STREAM ev (k VARCHAR, v BIGINT) WITH (partitions = 1)")?;
    ensure!(a.status == 200, "{}", a.body);
    let a = post_sql(&addr, "INSERT INTO ev VALUES ('before', 0)")?;
    ensure!(a.status == 200, "{}", a.body);

    // Raw: the header line comes once the query runs.
    let (reader, status, headers) = post_start(&addr, &json!({"sql": "SELECT k, v * 10 AS v10 FROM ev EMIT CHANGES"}).to_string())?;
    ensure!(status == 200, "status {status}");
    ensure!(headers.iter().any(|(k, v)| k == "content-type" && v == "application/x-ndjson"), "{headers:?}");
    ensure!(headers.iter().any(|(k, v)| k == "transfer-encoding" && v.contains("chunked")), "{headers:?}");
    let mut stream = NdjsonStream { reader, pending: Vec::new() };
    let header = stream.next_line(Duration::from_secs(60))?;
    ensure!(header == r#"{"columns":[{"name":"k","type":"VARCHAR"},{"name":"v10","type":"BIGINT"}]}"#, "{header}");

    // The shell on the same stream, with the table header printed once its query runs.
    let mut shell = Shell::start(&server, "SELECT k, v FROM ev WHERE v > 0 EMIT CHANGES")?;
    wait_until(Duration::from_secs(60), "the shell's header line", || {
        ensure!(matches!(shell.child.try_wait(), Ok(None)), "the shell exited: {}", shell.stderr());
        Ok(shell.stdout().starts_with(&format!("{:<10}  v\n", "k")))
    })?;

    // Rows inserted now reach both. (The row from before the query should not come with
    // the default auto.offset.reset=latest, but samsa-streams reads from the earliest
    // offset whatever its `consumer.` properties say: tolerated here, as this checks the
    // HTTP side.)
    let inserted = Instant::now();
    let a = post_sql(&addr, "INSERT INTO ev VALUES ('after', 7)")?;
    ensure!(a.status == 200, "{}", a.body);
    let mut row = stream.next_line(ROW_TIMEOUT)?;
    if row == r#"{"row":["before",0]}"# {
        row = stream.next_line(ROW_TIMEOUT)?;
    }
    ensure!(row == r#"{"row":["after",70]}"#, "{row}");
    eprintln!("row streamed {:?} after its INSERT", inserted.elapsed());
    wait_until(ROW_TIMEOUT, "the row in the shell", || Ok(shell.stdout().contains(&format!("{:<10}  7\n", "after"))))?;

    // Ctrl-C ends the shell's query: exit 0 with the row count.
    let status = Command::new("kill").args(["-INT", &shell.child.id().to_string()]).status()?;
    ensure!(status.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let code = loop {
        if let Some(s) = shell.child.try_wait()? {
            break s.code();
        }
        ensure!(Instant::now() < deadline, "the shell did not exit after SIGINT: {}", shell.stderr());
        std::thread::sleep(Duration::from_millis(20));
    };
    ensure!(code == Some(0), "exit {code:?}: {}", shell.stderr());
    ensure!(shell.stdout() == format!("{:<10}  v\n{:<10}  7\n(1 row)\n", "k", "after"), "{:?}", shell.stdout());

    // Leaving stops the queries: their temporary consumer groups go.
    ensure!(transient_group_exists(&server)?, "the raw query's group is there while it runs");
    drop(stream);
    wait_until(Duration::from_secs(60), "the transient groups to go", || Ok(!transient_group_exists(&server)?))?;
    server.terminate()
}

#[test]
fn engine_starts_on_first_use_then_with_the_server() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut server = SamsaServer::builder().data_dir(dir.path().join("data")).start()?;
    // Nobody used SQL: no engine, so no catalog topic.
    let topics = samsa(&["topic", "list", "--internal", "--bootstrap", server.bootstrap()])?.ok()?;
    ensure!(!topics.contains("_samsa_sql_catalog"), "{topics}");
    ensure!(!server.stderr().contains("starting the SQL engine"), "{}", server.stderr());
    let a = post_sql(server.http_addr(), "CREATE STREAM r (a VARCHAR) WITH (partitions = 1)")?;
    ensure!(a.status == 200, "{}", a.body);
    server.terminate()?;

    // SQL is in use now: the engine starts with the server (persistent queries resume).
    let mut server = server.restart_builder().start()?;
    wait_until(Duration::from_secs(30), "the engine to start without a request", || Ok(server.stderr().contains("starting the SQL engine")))?;
    let a = post_sql(server.http_addr(), "SHOW STREAMS")?;
    ensure!(a.status == 200 && a.json()?["rows"][0][0] == json!("r"), "{}", a.body);
    server.terminate()
}

#[test]
fn flags_are_documented_and_a_taken_port_is_named() -> Result<()> {
    let help = samsa(&["server", "--help"])?.ok()?;
    ensure!(help.contains("--http-listen <HOST:PORT>") && help.contains("--no-http"), "{help}");
    let help = samsa(&["sql", "--help"])?.ok()?;
    for flag in ["--server <HOST:PORT>", "-e, --execute <SQL>", "-f, --file <FILE>", "--format <FORMAT>"] {
        ensure!(help.contains(flag), "{flag} in:\n{help}");
    }

    let taken = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = taken.local_addr()?.to_string();
    let dir = tempfile::tempdir()?;
    let run = samsa(&["server", "--data-dir", dir.path().to_str().unwrap(), "--listen", "127.0.0.1:0", "--http-listen", &addr])?;
    ensure!(run.code == Some(1), "{run:?}");
    ensure!(run.stdout.is_empty(), "nothing on stdout: {}", run.stdout);
    let err = run.stderr.trim();
    ensure!(err.lines().count() == 1 && err.contains(&addr) && err.contains("--http-listen"), "{err}");
    Ok(())
}
