//! Page views per minute, by event time: reads JSON page views
//! `{"user": "...", "page": "...", "ts": <ms since the epoch>}` from `--input` (keys
//! ignored), takes each view's time from its `ts` field (the record timestamp when `ts` is
//! missing or not a non-negative integer), counts views per page in tumbling windows of
//! `--window-secs` that accept views up to `--grace-secs` late, and writes each window's
//! final count once, when stream time passes its end plus grace, to `--output` as UTF-8
//! text: key `<page>@<window start>` with the start in ISO-8601 UTC
//! (`/home@2024-05-01T12:34:00Z`; split at the last `@`), value the count in decimal
//! (`42`). Views for a closed window are dropped and counted; Ctrl-C (or SIGTERM) logs
//! the total. Stream time advances per partition, so a window closes once a later view
//! arrives in the same partition of the internal topic partitioned by page; records
//! that are not JSON page views are skipped with a warning. Run:
//! `pageviews --bootstrap 127.0.0.1:9092 --input pageviews --output pageviews-per-minute`.

use std::time::Duration;

use anyhow::Result;
use clap::Parser;
use samsa_client::ConsumerRecord;
use samsa_streams::{KafkaStreams, Materialized, StreamsBuilder, Suppressed, TimeWindows, Windowed};
use serde::{Deserialize, Serialize};

/// Counts page views per page in event-time windows with Samsa Streams, writing each
/// window's final count once.
///
/// Input: JSON `{"user": "...", "page": "...", "ts": <ms since the epoch>}`, keys ignored.
/// The event time is `ts`, or the record timestamp when `ts` is missing or not a
/// non-negative integer. Records that are not page views are skipped with a warning.
///
/// Output (UTF-8 text): key `<page>@<window start>`, the start in ISO-8601 UTC
/// (`/home@2024-05-01T12:34:00Z`; split at the last `@`), value the view count in
/// decimal (`42`). A window is written once, when stream time (the latest event time seen
/// in its partition) reaches its end plus the grace period; views arriving after that are
/// dropped, and their number is logged on Ctrl-C / SIGTERM.
///
/// Example: pageviews --bootstrap 127.0.0.1:9092 --input pageviews --output pageviews-per-minute --window-secs 60 --grace-secs 10
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Topic of page views: JSON `{"user": "...", "page": "...", "ts": <ms>}` (keys ignored).
    #[arg(long, default_value = "pageviews")]
    input: String,
    /// Topic of final counts (key: `<page>@<window start, ISO-8601 UTC>`, value: count as
    /// decimal text).
    #[arg(long, default_value = "pageviews-per-minute")]
    output: String,
    /// Window size in seconds (tumbling windows aligned to the epoch).
    #[arg(long, default_value_t = 60)]
    window_secs: u64,
    /// How late (in event time, after the window's end) a view may arrive and still count.
    #[arg(long, default_value_t = 10)]
    grace_secs: u64,
    /// Flags every example takes.
    #[command(flatten)]
    app: samsa_examples::AppArgs,
}

/// One page view as read from the input topic (other fields are ignored).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct PageView {
    #[serde(default)]
    user: Option<String>,
    page: String,
    #[serde(default)]
    ts: Option<i64>,
}
samsa_streams::json_serde!(PageView);

/// Only the event time of a record's JSON value.
#[derive(Deserialize)]
struct EventTime {
    ts: Option<i64>,
}

/// The JSON `ts` field, else the record timestamp. Also applied to the internal topic
/// partitioned by page, whose records are page views stamped with their event time.
fn event_time(r: &ConsumerRecord) -> i64 {
    r.value
        .as_deref()
        .and_then(|v| serde_json::from_slice::<EventTime>(v).ok())
        .and_then(|e| e.ts)
        .filter(|ts| *ts >= 0)
        .unwrap_or(r.timestamp)
}

fn main() -> Result<()> {
    samsa_examples::init_logging();
    let args = Args::parse();
    anyhow::ensure!(args.window_secs > 0, "--window-secs must be at least 1");
    let mut config = args.app.config("pageviews", &[("default.deserialization.exception.handler", "continue")])?;
    config.timestamp_extractor = std::sync::Arc::new(event_time);

    let windows = TimeWindows::of_size_with_grace(Duration::from_secs(args.window_secs), Duration::from_secs(args.grace_secs));
    let builder = StreamsBuilder::new();
    builder
        .stream::<(), PageView>(&args.input)
        .group_by(|_, view: &PageView| view.page.clone())
        .windowed_by(windows)
        .count_with(Materialized::named("views-per-window"))
        .suppress(Suppressed::until_window_closes().with_name("final-views"))
        .to_stream()
        .map(|w: Windowed<String>, n: i64| (format!("{}@{}", w.key, iso8601_utc(w.window.start)), n.to_string()))
        .to(&args.output);
    let topology = builder.build()?;
    eprintln!("{}", topology.describe());

    samsa_examples::run_until_ctrl_c(topology, config, log_counters)
}

/// Logs the dropped-record counters (read before close: they are per active task).
fn log_counters(streams: &KafkaStreams) {
    let metrics = streams.task_metrics();
    let late: u64 = metrics.values().map(|m| m.dropped_late).sum();
    let bad: u64 = metrics.values().map(|m| m.dropped_bad).sum();
    tracing::info!(late_records_dropped = late, bad_records_skipped = bad, "page view counts stopped");
}

/// `ms` since the epoch as ISO-8601 UTC: `2024-05-01T12:34:00Z`, with `.mmm` before
/// the `Z` only when the time has milliseconds.
fn iso8601_utc(ms: i64) -> String {
    let (secs, millis) = (ms.div_euclid(1000), ms.rem_euclid(1000));
    let (days, sod) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days: proleptic Gregorian calendar in 400-year eras.
    let z = days + 719_468;
    let (era, doe) = (z.div_euclid(146_097), z.rem_euclid(146_097));
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let (h, m, s) = (sod / 3600, sod % 3600 / 60, sod % 60);
    let frac = if millis == 0 { String::new() } else { format!(".{millis:03}") };
    format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}{frac}Z")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso8601_of_known_instants() {
        assert_eq!(iso8601_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(iso8601_utc(1_700_000_040_000), "2023-11-14T22:14:00Z");
        assert_eq!(iso8601_utc(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(iso8601_utc(1_709_251_199_999), "2024-02-29T23:59:59.999Z");
        assert_eq!(iso8601_utc(1_709_251_200_000), "2024-03-01T00:00:00Z");
        assert_eq!(iso8601_utc(253_402_300_799_000), "9999-12-31T23:59:59Z");
    }

    #[test]
    fn event_time_prefers_the_json_ts() {
        let rec = |value: Option<&str>| ConsumerRecord {
            topic: "pageviews".into(),
            partition: 0,
            offset: 0,
            timestamp: 5,
            log_append_time: false,
            key: None,
            value: value.map(|v| v.as_bytes().to_vec().into()),
            headers: Vec::new(),
        };
        assert_eq!(event_time(&rec(Some(r#"{"user":"u","page":"/a","ts":1234}"#))), 1234);
        assert_eq!(event_time(&rec(Some(r#"{"user":"u","page":"/a"}"#))), 5, "no ts");
        assert_eq!(event_time(&rec(Some(r#"{"page":"/a","ts":-1}"#))), 5, "negative ts");
        assert_eq!(event_time(&rec(Some(r#"{"page":"/a","ts":"soon"}"#))), 5, "not a number");
        assert_eq!(event_time(&rec(Some("not json"))), 5);
        assert_eq!(event_time(&rec(None)), 5, "null value");
    }
}
