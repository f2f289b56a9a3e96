//! `samsa quickstart`: a whole pipeline in one command. It starts a single-node server
//! in this process (broker, SQL engine, Connect worker), then through the server's own
//! SQL API: two datagen connectors (users and page views), a stream and a table over
//! their topics, and a persistent query counting page views per page and region per
//! minute (tumbling window, joined with the users table). It then shows that table,
//! refreshing, until Ctrl-C or `--duration`. Every statement is `IF NOT EXISTS`, so a
//! second run on the same data dir resumes where the first stopped.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::server::{self, ServerArgs};

/// Arguments of `samsa quickstart`.
#[derive(clap::Args)]
pub struct QuickstartArgs {
    /// Directory for the server's data (reused by the next run, which resumes).
    #[arg(long, default_value = "./samsa-quickstart", value_name = "DIR")]
    data_dir: PathBuf,
    /// Address for Kafka clients; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:9092", value_name = "HOST:PORT")]
    listen: String,
    /// Address of the HTTP API (SQL, Connect's REST API, /metrics); port 0 picks a free port.
    #[arg(long, default_value = server::DEFAULT_HTTP_LISTEN, value_name = "HOST:PORT")]
    http_listen: String,
    /// Stop after this long (e.g. 30s, 5m, 1h); without it, run until Ctrl-C.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    duration: Option<Duration>,
    /// How results are shown: a table redrawn in place, or one JSON object per refresh
    /// on stdout (the description of what runs then goes to stderr).
    #[arg(long, value_enum, default_value_t = Output::Table)]
    output: Output,
    /// Seconds between refreshes.
    #[arg(long, default_value_t = 2.0, value_name = "SECONDS")]
    refresh: f64,
    /// Page views generated per second.
    #[arg(long, default_value_t = 20.0, value_name = "N")]
    rate: f64,
}

/// How `samsa quickstart` shows its results.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// A table redrawn in place (on a terminal), else printed once per refresh.
    Table,
    /// One JSON object per refresh: `{"elapsed_s", "total_views", "windows", "rows": [...]}`.
    Json,
}

/// Parses `30s`, `500ms`, `5m`, `1h` or a number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let (number, unit) = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).map_or((t, "s"), |i| (&t[..i], &t[i..]));
    let n: f64 = number.parse().map_err(|_| format!("`{text}` is not a duration: write e.g. 30s, 500ms, 5m or 1h"))?;
    let secs = match unit.trim() {
        "ms" => n / 1000.0,
        "s" | "" => n,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        other => return Err(format!("`{other}` in `{text}` is not a unit: use ms, s, m or h")),
    };
    Duration::try_from_secs_f64(secs).map_err(|_| format!("`{text}` is not a duration"))
}

/// A datagen connector writing JSON values and string keys to `topic`.
fn datagen(name: &str, topic: &str, data: &str, rate: f64) -> String {
    format!(
        "CREATE SOURCE CONNECTOR IF NOT EXISTS {name} WITH ('connector.class' = 'DatagenSource', 'kafka.topic' = '{topic}', {data}, 'rate' = '{rate}', \
         'key.converter' = 'org.apache.kafka.connect.storage.StringConverter', 'value.converter' = 'org.apache.kafka.connect.json.JsonConverter', \
         'value.converter.schemas.enable' = 'false')"
    )
}

/// The statements that set the pipeline up (each a no-op when done before).
fn pipeline(rate: f64) -> Vec<String> {
    vec![
        "CREATE STREAM IF NOT EXISTS demo_pageviews (userid VARCHAR, pageid VARCHAR) WITH (topic = 'demo_pageviews', format = 'json', partitions = 1)".into(),
        "CREATE TABLE IF NOT EXISTS demo_users (userid VARCHAR, registertime BIGINT, regionid VARCHAR, gender VARCHAR) PRIMARY KEY (userid) \
         WITH (topic = 'demo_users', format = 'json', partitions = 1)"
            .into(),
        datagen("quickstart_users", "demo_users", "'quickstart' = 'users'", 3.0),
        datagen("quickstart_pageviews", "demo_pageviews", r#"'schema.string' = '{"userid": "User_${id}", "pageid": "Page_${int:1:6}"}', 'key.space' = '9'"#, rate),
        "CREATE TABLE IF NOT EXISTS demo_pageviews_per_minute AS \
         SELECT p.pageid AS page, u.regionid AS region, tumble(p._timestamp, INTERVAL '1' MINUTE) AS minute, COUNT(*) AS views \
         FROM demo_pageviews p JOIN demo_users u ON p.userid = u.userid \
         GROUP BY p.pageid, u.regionid, tumble(p._timestamp, INTERVAL '1' MINUTE)"
            .into(),
    ]
}

/// The rows shown: the busiest groups of the latest minutes.
const TOP_ROWS: &str = "SELECT page, region, minute, views FROM demo_pageviews_per_minute ORDER BY minute DESC, views DESC, page, region LIMIT 10";
/// The totals over every window.
const TOTALS: &str = "SELECT COUNT(DISTINCT minute) AS windows, COALESCE(SUM(views), 0) AS views FROM demo_pageviews_per_minute";

/// Runs one statement through the server's SQL API; the JSON answer, or its error text.
async fn sql(http: &str, statement: &str) -> Result<Value, String> {
    let body = json!({ "sql": statement }).to_string();
    let (status, text) = crate::util::http_send(http, hyper::Method::POST, "/sql", Some(body)).await?.text().await?;
    let answer: Value = serde_json::from_str(&text).map_err(|e| format!("the SQL API answered {status} with something that is not JSON ({e}): {text}"))?;
    if status >= 400 {
        let msg = answer["error"]["message"].as_str().map(str::to_string).unwrap_or(text);
        return Err(format!("`{statement}` failed: {msg}"));
    }
    Ok(answer)
}

/// The rows of a bounded result as JSON objects.
fn objects(answer: &Value) -> Vec<Value> {
    let names: Vec<&str> = answer["columns"].as_array().map(|c| c.iter().filter_map(|c| c["name"].as_str()).collect()).unwrap_or_default();
    let rows = answer["rows"].as_array().cloned().unwrap_or_default();
    rows.iter().map(|r| Value::Object(names.iter().zip(r.as_array().into_iter().flatten()).map(|(n, v)| (n.to_string(), v.clone())).collect())).collect()
}

/// One look at the results.
struct Snapshot {
    rows: Vec<Value>,
    windows: i64,
    views: i64,
}

async fn snapshot(http: &str) -> Result<Snapshot, String> {
    let rows = objects(&sql(http, TOP_ROWS).await?);
    let totals = objects(&sql(http, TOTALS).await?);
    let total = |k: &str| totals.first().and_then(|t| t[k].as_i64()).unwrap_or(0);
    Ok(Snapshot { rows, windows: total("windows"), views: total("views") })
}

fn intro(kafka: &str, http: &str, data_dir: &std::path::Path, rate: f64) -> String {
    format!(
        "Samsa quickstart: a single-node server runs in this process, with its data in {dir}.\n\
         \n  Kafka clients  {kafka}   e.g. kcat -b {kafka} -C -t demo_pageviews -o end\
         \n  HTTP API       {http}   SQL, Connect's REST API (/connectors), Prometheus /metrics\
         \n  SQL shell      samsa sql --server {http}\
         \n\nRunning:\
         \n  connector quickstart_users       datagen -> topic demo_users (3 updates/s, 9 users)\
         \n  connector quickstart_pageviews   datagen -> topic demo_pageviews ({rate} views/s, 6 pages)\
         \n  query     CTAS_DEMO_PAGEVIEWS_PER_MINUTE  page views per page and region per minute\
         \n            (tumbling window; page views joined with the table demo_users) -> table demo_pageviews_per_minute\
         \n\nCtrl-C stops everything cleanly; run the same command again to resume.\n",
        dir = data_dir.display()
    )
}

fn render(s: &Snapshot, elapsed: Duration) -> String {
    let mut out = format!("Page views per page and region per minute (the busiest of the latest minutes) — {:.0}s\n\n", elapsed.as_secs_f64());
    let rows: Vec<Vec<String>> =
        s.rows.iter().map(|r| ["minute", "page", "region", "views"].iter().map(|k| r[*k].as_str().map(str::to_string).unwrap_or_else(|| r[*k].to_string())).collect()).collect();
    if rows.is_empty() {
        out.push_str("  (no counts yet: the query is starting and the first users are arriving)\n");
    } else {
        out.push_str(&crate::util::table_text(&["MINUTE", "PAGE", "REGION", "VIEWS"], &rows));
    }
    out.push_str(&format!("\n{} views counted in {} one-minute windows so far.\n", s.views, s.windows));
    out
}

/// How long one call to the server's SQL API may take before it counts as failed.
const CALL_LIMIT: Duration = Duration::from_secs(15);

/// Runs `samsa quickstart`.
pub async fn run(args: QuickstartArgs) -> Result<(), String> {
    let refresh = crate::util::seconds_flag("refresh", args.refresh)?;
    if !(args.rate.is_finite() && args.rate > 0.0 && args.rate <= 1_000_000.0) {
        return Err(format!("--rate must be above 0 and at most 1000000 page views per second, got {}", args.rate));
    }
    // Installed first: a Ctrl-C while the server starts stops it as soon as it is up.
    let mut stop = crate::util::shutdown_signal()?;
    let server_args = ServerArgs::single_node(args.data_dir.clone(), args.listen.clone(), args.http_listen.clone());
    let running = server::start(&server_args).await?;
    let result = drive(&args, refresh, &running, &mut stop).await;
    if args.output == Output::Table {
        println!("\nStopping (connectors, query, broker)...");
    }
    running.stop().await;
    result
}

async fn drive(args: &QuickstartArgs, refresh: Duration, running: &server::Running, stop: &mut crate::util::Stop) -> Result<(), String> {
    let started = Instant::now();
    let kafka = running.kafka_addr().to_string();
    let http = running.http_addr().ok_or("the HTTP API did not start")?.to_string();
    let text = intro(&kafka, &http, &args.data_dir, args.rate);
    let json = args.output == Output::Json;
    if json {
        eprint!("{text}");
    } else {
        print!("{text}");
    }
    let setup = async {
        for statement in pipeline(args.rate) {
            sql(&http, &statement).await?;
        }
        Ok(())
    };
    match crate::util::unless_stopped(stop, CALL_LIMIT * 5, "setting up the pipeline", setup).await {
        None => return Ok(()),
        Some(r) => r?,
    }
    let deadline = args.duration.map(|d| started + d);
    let redraw = !json && std::io::stdout().is_terminal();
    loop {
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok(());
        }
        // A query that fails now and then (e.g. while the table's topic is created) is
        // shown and retried at the next refresh.
        let Some(result) = crate::util::unless_stopped(stop, CALL_LIMIT, "the SQL API", snapshot(&http)).await else { return Ok(()) };
        let shown = match result {
            Ok(s) if json => json!({
                "elapsed_s": started.elapsed().as_secs_f64(),
                "total_views": s.views,
                "windows": s.windows,
                "rows": s.rows,
            })
            .to_string(),
            Ok(s) => render(&s, started.elapsed()),
            Err(e) if json => json!({ "elapsed_s": started.elapsed().as_secs_f64(), "error": e }).to_string(),
            Err(e) => format!("(cannot read the results yet: {e})\n"),
        };
        let mut stdout = std::io::stdout().lock();
        if redraw {
            // Clear the screen and go home, then the intro and the table again.
            let _ = writeln!(stdout, "\x1b[2J\x1b[H{text}");
        }
        let _ = writeln!(stdout, "{shown}");
        let _ = stdout.flush();
        drop(stdout);
        let wait = deadline.map_or(refresh, |d| refresh.min(d.saturating_duration_since(Instant::now())));
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = &mut *stop => return Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_units() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("soon").unwrap_err().contains("not a duration"));
        assert!(parse_duration("3 weeks").unwrap_err().contains("not a unit"));
    }
}
