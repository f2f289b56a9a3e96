//! The pageviews example as its users run it: a process reading JSON page views whose
//! event times (the JSON `ts`) span three 1-minute windows, with views out of order
//! within the 10 s grace period, one view past it, one without `ts` (its record
//! timestamp counts) and one that is not JSON. The other views carry a record timestamp
//! of now, so only the JSON `ts` puts them in the right window. Later views close the
//! windows; each window must appear exactly once with its exact count, the late view
//! uncounted, and a clean stop must log one late and one bad record.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, ensure, Context, Result};
use samsa_client::admin::NewTopic;
use samsa_client::{Admin, Consumer, Producer, ProducerRecord};
use samsa_tests::{blocking, program, BackgroundClient, SamsaServer};

const MINUTE_MS: i64 = 60_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pageviews_emits_each_window_once_with_exact_counts() -> Result<()> {
    let started = Instant::now();
    let server = SamsaServer::start()?;
    let bootstrap = server.bootstrap().to_string();
    let admin = Admin::connect(&bootstrap).await?;
    // One partition: stream time, and so window closing, follows the order produced.
    admin.create_topics(&[NewTopic::new("views", 1, 1), NewTopic::new("per-minute", 1, 1)]).await?;

    let state = tempfile::tempdir()?;
    let mut app = program(env!("CARGO_BIN_EXE_pageviews"))
        .args(["--bootstrap", &bootstrap, "--input", "views", "--output", "per-minute", "--app-id", "pv", "--state-dir"])
        .args([state.path()])
        .args(["--guarantee", "exactly_once_v2", "--set", "consumer.session.timeout.ms=6000", "--set", "consumer.heartbeat.interval.ms=500"])
        .env("RUST_LOG", "info")
        .timeout(Duration::from_secs(60))
        .spawn()?;

    // Event times from a minute boundary ten minutes ago (recent enough for retention).
    let now_ms = i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis())?;
    let base = (now_ms / MINUTE_MS - 10) * MINUTE_MS;
    let at = |secs: i64| base + secs * 1000;
    let view = |page: &str, ts: i64| format!(r#"{{"user":"u-{}","page":"{page}","ts":{ts}}}"#, ts % 7);
    // (value, record timestamp: None = now), in the order produced.
    let inputs: Vec<(String, Option<i64>)> = vec![
        (view("/home", at(1)), None),   // W0 = [0 s, 60 s), open until stream time 70 s
        ("not json".to_string(), Some(at(2))), // skipped
        (view("/cart", at(5)), None),   // W0
        (view("/home", at(30)), None),  // W0
        (view("/home", at(61)), None),  // W1 = [60 s, 120 s)
        (view("/home", at(50)), None),  // W0, out of order within grace (stream time 61 s < 70 s)
        (view("/docs", at(65)), None),  // W1
        (view("/cart", at(90)), None),  // W1; stream time 90 s closes W0
        (view("/home", at(40)), None),  // W0 closed: late, dropped
        (view("/cart", at(125)), None), // W2 = [120 s, 180 s)
        (view("/docs", at(110)), None), // W1, out of order within grace (125 s < 130 s)
        (view("/home", at(170)), None), // W2; closes W1
        (r#"{"user":"u-9","page":"/home"}"#.to_string(), Some(at(175))), // W2 by its record timestamp
        (view("/later", at(300)), None), // closes W2
        (view("/later", at(600)), None), // closes /later's window at 300 s: the last output
    ];
    let expected: BTreeMap<(String, i64), u64> = [
        (("/home", 0), 3),
        (("/cart", 0), 1),
        (("/home", 60), 1),
        (("/docs", 60), 2),
        (("/cart", 60), 1),
        (("/cart", 120), 1),
        (("/home", 120), 2),
        (("/later", 300), 1),
    ]
    .into_iter()
    .map(|((page, secs), n)| ((page.to_string(), at(secs)), n))
    .collect();

    let producer = Producer::from_properties([("bootstrap.servers", bootstrap.as_str())]).await?;
    for (value, ts) in &inputs {
        let mut rec = ProducerRecord::new("views", value.clone());
        if let Some(ts) = ts {
            rec = rec.timestamp(*ts);
        }
        producer.send(rec).await?.await?;
    }

    let consumer = Consumer::from_properties([
        ("bootstrap.servers", bootstrap.as_str()),
        ("group.id", "pv-verifier"),
        ("enable.auto.commit", "false"),
        ("auto.offset.reset", "earliest"),
        ("isolation.level", "read_committed"),
    ])
    .await?;
    consumer.subscribe(&["per-minute"])?;
    let last = ("/later".to_string(), at(300));
    let deadline = Instant::now() + Duration::from_secs(25);
    let mut got: BTreeMap<(String, i64), u64> = BTreeMap::new();
    // The output has one partition and windows are emitted as stream time passes their
    // close, so every earlier window precedes the last one.
    while !got.contains_key(&last) {
        for r in consumer.poll(Duration::from_millis(200)).await? {
            let key = String::from_utf8(r.key.as_ref().context("output key")?.to_vec())?;
            let count: u64 = std::str::from_utf8(r.value.as_ref().context("output value")?)?.parse().with_context(|| format!("count of `{key}`"))?;
            let (page, start) = key.rsplit_once('@').with_context(|| format!("output key `{key}` has no `@`"))?;
            let start_ms = parse_iso8601_utc(start).with_context(|| format!("window start of output key `{key}`"))?;
            if let Some(before) = got.insert((page.to_string(), start_ms), count) {
                bail!("window `{key}` emitted twice: {before}, then {count}");
            }
        }
        if Instant::now() > deadline {
            bail!("the last window did not appear within 25 s; got {got:?}, want {expected:?}");
        }
        if app.has_exited()? {
            bail!("pageviews exited early:\n{}", app.kill9()?.stderr);
        }
    }
    assert_eq!(got, expected, "final counts per (page, window start) (base {base})");

    let out = blocking(|| stop(app))?;
    ensure!(
        out.contains("late_records_dropped=1") && out.contains("bad_records_skipped=1"),
        "the clean stop did not log one late and one bad record:\n{}",
        tail(&out, 20)
    );
    eprintln!("pageviews: {} windows exact after {:?}", expected.len(), started.elapsed());
    Ok(())
}

/// Stops `app` with SIGTERM (as Ctrl-C) and returns its stderr; it must exit 0.
fn stop(mut app: BackgroundClient) -> Result<String> {
    app.signal("TERM")?;
    Ok(app.wait(Duration::from_secs(20))?.stderr)
}

/// Milliseconds since the epoch of `YYYY-MM-DDTHH:MM:SSZ` (the inverse of the example's
/// formatting, by a different algorithm: days from civil).
fn parse_iso8601_utc(s: &str) -> Result<i64> {
    let b = s.as_bytes();
    ensure!(b.len() == 20 && b[4] == b'-' && b[7] == b'-' && b[10] == b'T' && b[13] == b':' && b[16] == b':' && b[19] == b'Z', "`{s}` is not YYYY-MM-DDTHH:MM:SSZ");
    let num = |r: std::ops::Range<usize>| -> Result<i64> { Ok(s[r].parse()?) };
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hh, mm, ss) = (num(11..13)?, num(14..16)?, num(17..19)?);
    ensure!((1..=12).contains(&m) && (1..=31).contains(&d) && hh < 24 && mm < 60 && ss < 60, "`{s}` is out of range");
    let y = if m <= 2 { y - 1 } else { y };
    let (era, yoe) = (y.div_euclid(400), y.rem_euclid(400));
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Ok(((days * 24 + hh) * 60 + mm) * 60_000 + ss * 1000)
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[test]
fn iso8601_parser_knows_the_calendar() {
    assert_eq!(parse_iso8601_utc("1970-01-01T00:00:00Z").unwrap(), 0);
    assert_eq!(parse_iso8601_utc("2023-11-14T22:13:20Z").unwrap(), 1_700_000_000_000);
    assert_eq!(parse_iso8601_utc("2024-03-01T00:00:00Z").unwrap(), 1_709_251_200_000);
    assert!(parse_iso8601_utc("2024-03-01 00:00:00").is_err());
}
