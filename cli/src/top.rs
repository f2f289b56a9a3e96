//! `samsa top`: a live view of a server, from the same numbers Prometheus scrapes
//! (`GET /metrics`): request and byte rates, records in per topic, consumer lag per group,
//! persistent queries and connector tasks. Rates are the change between two scrapes.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use samsa_client::prom::{parse, Sample};

/// Arguments of `samsa top`.
#[derive(clap::Args)]
pub struct TopArgs {
    /// The server's HTTP address (`samsa server --http-listen`).
    #[arg(long, default_value = crate::server::DEFAULT_HTTP_LISTEN, value_name = "HOST:PORT")]
    server: String,
    /// Seconds between refreshes (rates are averaged over this interval).
    #[arg(long, default_value_t = 2.0, value_name = "SECONDS")]
    interval: f64,
    /// Stop after this many refreshes (default: until Ctrl-C).
    #[arg(long, value_name = "N")]
    iterations: Option<u64>,
}

/// One scrape, by metric name.
struct Scrape {
    at: Instant,
    samples: Vec<Sample>,
}

impl Scrape {
    fn of<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples.iter().filter(move |s| s.name == name)
    }

    fn sum(&self, name: &str) -> f64 {
        self.of(name).map(|s| s.value).sum()
    }

    /// Sums of `name` grouped by the values of `labels`.
    fn by(&self, name: &str, labels: &[&str]) -> BTreeMap<Vec<String>, f64> {
        let mut out = BTreeMap::new();
        for s in self.of(name) {
            *out.entry(labels.iter().map(|l| s.label(l).to_string()).collect()).or_insert(0.0) += s.value;
        }
        out
    }
}

async fn scrape(server: &str) -> Result<Scrape, String> {
    let (status, text) = crate::util::http_send(server, hyper::Method::GET, "/metrics", None).await?.text().await?;
    if status != 200 {
        return Err(format!("GET http://{server}/metrics answered {status}: {}", text.trim()));
    }
    let samples = parse(&text).map_err(|e| format!("the metrics of {server} do not parse: {e}"))?;
    Ok(Scrape { at: Instant::now(), samples })
}

/// A per-second rate between two counters (0 after a restart reset them).
fn rate(now: f64, before: f64, secs: f64) -> f64 {
    if secs <= 0.0 || now < before {
        0.0
    } else {
        (now - before) / secs
    }
}

fn human(v: f64) -> String {
    if v >= 1e9 {
        format!("{:.1}G", v / 1e9)
    } else if v >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if v >= 1e4 {
        format!("{:.1}k", v / 1e3)
    } else if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// The screen for two consecutive scrapes.
fn render(server: &str, before: &Scrape, now: &Scrape) -> String {
    let secs = now.at.duration_since(before.at).as_secs_f64();
    let r = |name: &str| rate(now.sum(name), before.sum(name), secs);
    let mut out = format!(
        "samsa top — {server}   requests/s {}   in {}B/s   out {}B/s   connections {}   under-replicated {}   controller {}\n",
        human(r("samsa_broker_request_duration_seconds_count")),
        human(r("samsa_broker_network_bytes_in_total")),
        human(r("samsa_broker_network_bytes_out_total")),
        human(now.sum("samsa_broker_connections")),
        human(now.sum("samsa_broker_under_replicated_partitions")),
        if now.sum("samsa_broker_active_controller") > 0.0 { "here" } else { "elsewhere" },
    );
    let section = |out: &mut String, title: &str, header: &[&str], rows: Vec<Vec<String>>| {
        out.push('\n');
        if rows.is_empty() {
            out.push_str(&format!("{title}: none\n"));
        } else {
            out.push_str(&format!("{title}\n"));
            out.push_str(&crate::util::table_text(header, &rows));
        }
    };
    // Topics: records and bytes in per second.
    let (rec_now, rec_before) = (now.by("samsa_topic_records_in_total", &["topic"]), before.by("samsa_topic_records_in_total", &["topic"]));
    let (bytes_now, bytes_before) = (now.by("samsa_topic_bytes_in_total", &["topic"]), before.by("samsa_topic_bytes_in_total", &["topic"]));
    let rows = rec_now
        .iter()
        .map(|(k, v)| {
            let b = bytes_now.get(k).copied().unwrap_or(0.0);
            vec![k[0].clone(), human(rate(*v, rec_before.get(k).copied().unwrap_or(*v), secs)), human(rate(b, bytes_before.get(k).copied().unwrap_or(b), secs)), human(*v)]
        })
        .collect();
    section(&mut out, "Topics", &["TOPIC", "RECORDS/S", "BYTES/S", "RECORDS"], rows);
    // Groups: lag per group and topic, and how fast they commit.
    let lag = now.by("samsa_consumer_group_lag", &["group", "topic"]);
    let (committed_now, committed_before) =
        (now.by("samsa_consumer_group_committed_offset", &["group", "topic"]), before.by("samsa_consumer_group_committed_offset", &["group", "topic"]));
    let rows = lag
        .iter()
        .map(|(k, v)| {
            let c = committed_now.get(k).copied().unwrap_or(0.0);
            vec![k[0].clone(), k[1].clone(), human(*v), human(rate(c, committed_before.get(k).copied().unwrap_or(c), secs))]
        })
        .collect();
    section(&mut out, "Consumer groups", &["GROUP", "TOPIC", "LAG", "COMMITTED/S"], rows);
    // Persistent queries.
    let (in_now, in_before) = (now.by("samsa_sql_query_rows_in_total", &["query"]), before.by("samsa_sql_query_rows_in_total", &["query"]));
    let (out_now, out_before) = (now.by("samsa_sql_query_rows_out_total", &["query"]), before.by("samsa_sql_query_rows_out_total", &["query"]));
    let state = now.by("samsa_sql_query_state_bytes", &["query"]);
    let rows = in_now
        .iter()
        .map(|(k, v)| {
            let o = out_now.get(k).copied().unwrap_or(0.0);
            vec![
                k[0].clone(),
                human(rate(*v, in_before.get(k).copied().unwrap_or(*v), secs)),
                human(rate(o, out_before.get(k).copied().unwrap_or(o), secs)),
                format!("{}B", human(state.get(k).copied().unwrap_or(0.0))),
            ]
        })
        .collect();
    section(&mut out, "Persistent queries", &["QUERY", "ROWS IN/S", "ROWS OUT/S", "STATE"], rows);
    // Connector tasks.
    let (t_now, t_before) =
        (now.by("samsa_connect_task_records_total", &["connector", "task", "type"]), before.by("samsa_connect_task_records_total", &["connector", "task", "type"]));
    let errors = now.by("samsa_connect_task_errors_total", &["connector", "task", "type"]);
    let rows = t_now
        .iter()
        .map(|(k, v)| vec![k[0].clone(), k[1].clone(), k[2].clone(), human(rate(*v, t_before.get(k).copied().unwrap_or(*v), secs)), human(errors.get(k).copied().unwrap_or(0.0))])
        .collect();
    section(&mut out, "Connector tasks", &["CONNECTOR", "TASK", "TYPE", "RECORDS/S", "ERRORS"], rows);
    out
}

/// How long one scrape may take.
const SCRAPE_LIMIT: Duration = Duration::from_secs(10);

/// Runs `samsa top`.
pub async fn run(args: TopArgs) -> Result<(), String> {
    let interval = crate::util::seconds_flag("interval", args.interval)?;
    let mut stop = crate::util::shutdown_signal()?;
    let redraw = std::io::stdout().is_terminal();
    let what = format!("GET http://{}/metrics", args.server);
    let Some(first) = crate::util::unless_stopped(&mut stop, SCRAPE_LIMIT, &what, scrape(&args.server)).await else { return Ok(()) };
    let mut before = first?;
    let mut shown = 0;
    while args.iterations.is_none_or(|n| shown < n) {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = &mut stop => return Ok(()),
        }
        let Some(now) = crate::util::unless_stopped(&mut stop, SCRAPE_LIMIT, &what, scrape(&args.server)).await else { return Ok(()) };
        // A failed scrape is shown and the next one compared with the last good one.
        let screen = match now {
            Ok(now) => {
                let screen = render(&args.server, &before, &now);
                before = now;
                screen
            }
            Err(e) => format!("samsa top — {}: {e} (retrying)\n", args.server),
        };
        let mut stdout = std::io::stdout().lock();
        if redraw {
            let _ = write!(stdout, "\x1b[2J\x1b[H");
        }
        let _ = writeln!(stdout, "{screen}");
        let _ = stdout.flush();
        shown += 1;
    }
    Ok(())
}
