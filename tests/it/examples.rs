//! The runnable pipelines of examples/ (SQL, connectors), end to end, run as their README
//! paragraphs say: the clickstream SQL script through `samsa sql -f` against a server,
//! its results read back with pull queries over HTTP; the CSV-to-PostgreSQL connector
//! files through `samsa connect standalone` with only the machine-specific settings
//! changed, into a real PostgreSQL.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use samsa_client::admin::{Admin, OffsetSpec, TopicPartition};
use samsa_tests::postgres::PgServer;
use samsa_tests::{http, run_samsa, wait_until, workspace_root, ConnectWorker, SamsaServer};
use serde_json::{json, Value};

/// How long one `samsa sql` run may take.
const CLI_TIMEOUT: Duration = Duration::from_secs(90);
/// How long a persistent query or a connector may take to show an input's effect.
const RESULT_TIMEOUT: Duration = Duration::from_secs(60);

fn example(path: &str) -> PathBuf {
    workspace_root().join("examples").join(path)
}

/// `samsa sql --server ADDR -f FILE`; its stdout.
fn sql_file(server: &SamsaServer, file: &Path) -> Result<String> {
    run_samsa(&["sql", "--server", server.http_addr(), "-f", &file.display().to_string()], CLI_TIMEOUT)?.ok()
}

/// A bounded query over `POST /sql`: its rows.
fn pull(server: &SamsaServer, query: &str) -> Result<Vec<Value>> {
    let (status, body) = http(server.http_addr(), "POST", "/sql", &json!({ "sql": query }).to_string())?;
    ensure!(status == 200, "{query}: HTTP {status}: {body}");
    let answer: Value = serde_json::from_str(&body).with_context(|| format!("not JSON: {body}"))?;
    answer["rows"].as_array().cloned().with_context(|| format!("no rows in {body}"))
}

/// Waits until `query` returns exactly `want`; fails with the last rows seen.
fn wait_for_rows(server: &SamsaServer, what: &str, query: &str, want: &Value) -> Result<()> {
    let mut last = Vec::new();
    let waited = wait_until(RESULT_TIMEOUT, what, || {
        last = pull(server, query)?;
        Ok(Value::Array(last.clone()) == *want)
    });
    waited.with_context(|| format!("{query}\nwant {want}\nlast {}\nserver log:\n{}", Value::Array(last), server.stderr()))
}

/// Whether consumer group `group` has committed every record of `topic` (its partitions
/// `0..partitions`): for a persistent query, that it has processed them.
fn has_read_all(bootstrap: &str, group: &str, topic: &str, partitions: i32) -> Result<bool> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        let call = async {
            let admin = Admin::connect(bootstrap).await?;
            let tps: Vec<TopicPartition> = (0..partitions).map(|p| TopicPartition::new(topic, p)).collect();
            let ends = admin.list_offsets(&tps, OffsetSpec::Latest).await?;
            let committed = admin.list_group_offsets(group).await?;
            anyhow::Ok(tps.iter().all(|tp| ends[tp].0 == 0 || committed.get(tp) == Some(&ends[tp].0)))
        };
        tokio::time::timeout(Duration::from_secs(30), call).await.context("admin calls timed out")?
    })
}

#[test]
fn sql_clickstream_sessionizes_clicks_enriches_them_and_merges_sessions_bridged_by_a_late_click() -> Result<()> {
    let server = SamsaServer::start()?;
    let out = sql_file(&server, &example("sql/clickstream.sql"))?;
    for line in [
        "Stream clicks created on topic clicks",
        "Table users created on topic users",
        "2 rows inserted",
        "Table user_sessions created; query CTAS_USER_SESSIONS writes it to topic user_sessions",
        "Stream clicks_enriched created; query CSAS_CLICKS_ENRICHED writes it to topic clicks_enriched",
        "Table region_sessions created; query CTAS_REGION_SESSIONS writes it to topic region_sessions",
        "(3 rows)",
    ] {
        ensure!(out.lines().any(|l| l == line), "`{line}` missing from the script's output:\n{out}");
    }
    // A stream-table join meets each click with the user row it has read by then, and
    // records buffered together go in timestamp order (the users' records are newer than
    // the clicks' event times): so the clicks come once both joins have read the users.
    for group in ["_samsa_sql_CSAS_CLICKS_ENRICHED", "_samsa_sql_CTAS_REGION_SESSIONS"] {
        wait_until(RESULT_TIMEOUT, &format!("{group} to read the users table"), || has_read_all(server.bootstrap(), group, "users", 3)).with_context(|| server.stderr())?;
    }
    let out = sql_file(&server, &example("sql/clicks.sql"))?;
    ensure!(out.trim() == "9 rows inserted", "{out}");

    // Gap 30 minutes. u1: 10:00, 10:05, 10:20, 10:40 (one session), 12:00, 12:10 (80 minutes
    // later: a second one). u2: 10:02 and 10:50 (48 minutes apart: two). u3: 12:30.
    let sessions = "SELECT user_id, session_start, clicks, pages, last_click FROM user_sessions ORDER BY user_id, session_start";
    wait_for_rows(
        &server,
        "the sessions of the sample clicks",
        sessions,
        &json!([
            ["u1", "2026-03-02T10:00:00", 4, 3, "2026-03-02T10:40:00"],
            ["u1", "2026-03-02T12:00:00", 2, 2, "2026-03-02T12:10:00"],
            ["u2", "2026-03-02T10:02:00", 1, 1, "2026-03-02T10:02:00"],
            ["u2", "2026-03-02T10:50:00", 1, 1, "2026-03-02T10:50:00"],
            ["u3", "2026-03-02T12:30:00", 1, 1, "2026-03-02T12:30:00"],
        ]),
    )?;
    // Every click with its user (a LEFT JOIN: u3 is no known user).
    wait_for_rows(
        &server,
        "the enriched clicks",
        "SELECT user_id, name, region, page, ts FROM clicks_enriched ORDER BY ts",
        &json!([
            ["u1", "Ann", "eu", "/home", "2026-03-02T10:00:00"],
            ["u2", "Bob", "us", "/home", "2026-03-02T10:02:00"],
            ["u1", "Ann", "eu", "/products", "2026-03-02T10:05:00"],
            ["u1", "Ann", "eu", "/products", "2026-03-02T10:20:00"],
            ["u1", "Ann", "eu", "/checkout", "2026-03-02T10:40:00"],
            ["u2", "Bob", "us", "/pricing", "2026-03-02T10:50:00"],
            ["u1", "Ann", "eu", "/home", "2026-03-02T12:00:00"],
            ["u1", "Ann", "eu", "/about", "2026-03-02T12:10:00"],
            ["u3", null, null, "/home", "2026-03-02T12:30:00"],
        ]),
    )?;
    // Sessions per region (an inner join: u3 is left out).
    let regions = "SELECT region, sessions, clicks, longest FROM region_sessions ORDER BY region";
    wait_for_rows(&server, "the sessions per region", regions, &json!([["eu", 2, 6, 4], ["us", 2, 2, 1]]))?;

    // A late click of u2 at 10:25, 23 and 25 minutes from its two clicks, bridges its two
    // sessions: they merge into one of 3 clicks from 10:02, and the old rows go.
    let (status, body) = http(server.http_addr(), "POST", "/sql", &json!({"sql": "INSERT INTO clicks VALUES ('u2', '/docs', TIMESTAMP '2026-03-02 10:25:00')"}).to_string())?;
    ensure!(status == 200, "HTTP {status}: {body}");
    wait_for_rows(
        &server,
        "u2's sessions to merge",
        sessions,
        &json!([
            ["u1", "2026-03-02T10:00:00", 4, 3, "2026-03-02T10:40:00"],
            ["u1", "2026-03-02T12:00:00", 2, 2, "2026-03-02T12:10:00"],
            ["u2", "2026-03-02T10:02:00", 3, 3, "2026-03-02T10:50:00"],
            ["u3", "2026-03-02T12:30:00", 1, 1, "2026-03-02T12:30:00"],
        ]),
    )?;
    wait_for_rows(&server, "the merge to reach the regions", regions, &json!([["eu", 2, 6, 4], ["us", 1, 3, 3]]))?;
    Ok(())
}

/// Replaces the value of `key` in a copied `.properties` file; the example must set it.
fn override_key(file: &Path, key: &str, value: &str) -> Result<()> {
    let text = fs::read_to_string(file)?;
    let prefix = format!("{key}=");
    ensure!(text.lines().filter(|l| l.starts_with(&prefix)).count() == 1, "{} does not set {key} once", file.display());
    let replaced: Vec<String> = text.lines().map(|l| if l.starts_with(&prefix) { format!("{key}={value}") } else { l.to_string() }).collect();
    fs::write(file, replaced.join("\n") + "\n")?;
    Ok(())
}

/// The settings of a `.properties` file (comments and blank lines left out).
fn settings(file: &Path) -> Result<BTreeMap<String, String>> {
    let text = fs::read_to_string(file)?;
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())).with_context(|| format!("{}: bad line {l}", file.display())))
        .collect()
}

#[test]
fn connect_csv_directory_goes_through_a_topic_into_postgres_with_upserts() -> Result<()> {
    let pg = PgServer::start()?;
    pg.create_db("shop")?;
    let server = SamsaServer::start()?;
    let dir = tempfile::tempdir()?;
    let dir = dir.path();
    let input = dir.join("input");
    fs::create_dir(&input)?;
    for name in ["worker.properties", "csv-source.properties", "postgres-sink.properties"] {
        fs::copy(example(&format!("connect/{name}")), dir.join(name))?;
    }
    let mut csv_rows = 0;
    for entry in fs::read_dir(example("connect/data"))? {
        let path = entry?.path();
        csv_rows += fs::read_to_string(&path)?.lines().count() - 1;
        fs::copy(&path, input.join(path.file_name().context("a file name")?))?;
    }
    ensure!(csv_rows == 7, "the sample CSV files hold 7 rows (6 ids, one updated), not {csv_rows}");

    // Only what depends on the machine changes; the rest is the example as shipped.
    let offsets = dir.join("connect.offsets");
    override_key(&dir.join("worker.properties"), "bootstrap.servers", server.bootstrap())?;
    override_key(&dir.join("worker.properties"), "offset.storage.file.filename", &offsets.display().to_string())?;
    override_key(&dir.join("csv-source.properties"), "input.path", &input.display().to_string())?;
    override_key(&dir.join("postgres-sink.properties"), "connection.url", &pg.jdbc_url("shop"))?;
    for (name, changed) in [
        ("worker.properties", &["bootstrap.servers", "offset.storage.file.filename"][..]),
        ("csv-source.properties", &["input.path"]),
        ("postgres-sink.properties", &["connection.url"]),
    ] {
        let (mut shipped, mut used) = (settings(&example(&format!("connect/{name}")))?, settings(&dir.join(name))?);
        for key in changed {
            shipped.remove(*key);
            used.remove(*key);
        }
        ensure!(shipped == used, "{name}: only {changed:?} may differ from the example");
    }

    let worker = ConnectWorker::start(dir, "worker.log", &["worker.properties", "csv-source.properties", "postgres-sink.properties"])?;
    let table = |pg: &PgServer| pg.sql("shop", "SELECT id, customer, item, quantity, price, paid, status FROM orders ORDER BY id");
    let wait_for_table = |what: &str, want: &str| {
        let mut last = String::new();
        let waited = wait_until(RESULT_TIMEOUT, what, || {
            // The sink creates the table with its first records.
            last = pg.sql("shop", "SELECT to_regclass('public.orders') IS NOT NULL")?;
            if last != "t" {
                return Ok(false);
            }
            last = table(&pg)?;
            Ok(last == want)
        });
        waited.with_context(|| format!("want:\n{want}\nlast:\n{last}\nworker log:\n{}", worker.log()))
    };
    // Every row of both files, typed from the CSV (whole numbers bigint, fractions double,
    // true/false boolean, the rest text; quoted fields keep their commas and quotes); order 3
    // from the second file replaced its first version (upsert by id).
    let first = "1|Ann|Keyboard|1|49.9|t|shipped\n\
                 2|Bob|Cable, USB-C|3|9.99|t|shipped\n\
                 3|Carla|Monitor|1|189|t|shipped\n\
                 4|Dan|27\" Monitor arm|2|34.5|t|new\n\
                 5|Ann|Mouse|2|19.95|t|new\n\
                 6|Eve|Laptop stand|1|45|f|new";
    wait_for_table("every CSV row in PostgreSQL", first)?;
    let types = pg.sql("shop", "SELECT column_name || ' ' || data_type FROM information_schema.columns WHERE table_name = 'orders' ORDER BY column_name")?;
    ensure!(types == "customer text\nid bigint\nitem text\npaid boolean\nprice double precision\nquantity bigint\nstatus text", "columns created from the record schema: {types}");
    let pk = pg.sql(
        "shop",
        "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) WHERE i.indrelid = 'orders'::regclass AND i.indisprimary",
    )?;
    ensure!(pk == "id", "primary key: {pk}");

    // The directory is followed: an appended row (order 5 shipped) and a new file arrive too.
    let second = input.join("orders-2026-03-02.csv");
    let mut text = fs::read_to_string(&second)?;
    text.push_str("5,Ann,Mouse,2,19.95,true,shipped\n");
    fs::write(&second, text)?;
    fs::write(input.join("orders-2026-03-03.csv"), "id,customer,item,quantity,price,paid,status\n7,Bob,Headset,1,59.00,false,new\n")?;
    fs::write(input.join("notes.txt"), "not an orders file: the pattern leaves it out\n")?;
    let second = first.replace("5|Ann|Mouse|2|19.95|t|new", "5|Ann|Mouse|2|19.95|t|shipped") + "\n7|Bob|Headset|1|59|f|new";
    wait_for_table("the appended row and the new file in PostgreSQL", &second)?;

    worker.stop()?;
    ensure!(table(&pg)? == second, "the table changed after the stop");
    // The source stored how far it read each file: every line, the header included.
    let stored: Value = serde_json::from_str(&fs::read_to_string(&offsets)?)?;
    let lines = |file: &str| stored["orders-csv"][format!("{{\"file\":\"{file}\"}}")]["line"].as_u64();
    if (lines("orders-2026-03-01.csv"), lines("orders-2026-03-02.csv"), lines("orders-2026-03-03.csv")) != (Some(5), Some(5), Some(2)) {
        bail!("stored source offsets: {stored}");
    }
    Ok(())
}
