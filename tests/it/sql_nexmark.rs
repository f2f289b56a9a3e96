//! Nexmark: `samsa bench nexmark` generates the events and runs every query of
//! `sql/nexmark/` as a persistent query until it has processed all of its input.

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use samsa_tests::{samsa_bin, workspace_root, SamsaServer};
use serde_json::Value;

use crate::sql_http::post_sql;

#[test]
fn every_nexmark_query_runs_as_a_persistent_query() -> Result<()> {
    // No HTTP API: the server's own SQL engine would take a share of each query's tasks,
    // and the bench counts only what its process did.
    let server = SamsaServer::builder().no_http().start()?;
    let out = Command::new(samsa_bin()?).args(["bench", "nexmark", "--bootstrap", server.bootstrap(), "--events", "20000", "--partitions", "2"]).output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    ensure!(out.status.success(), "bench nexmark failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    // 20,000 events: 400 persons, 1,200 auctions, 18,400 bids.
    for (q, input) in [("q0", 18_400), ("q1", 18_400), ("q2", 18_400), ("q3", 1_200), ("q4", 19_600), ("q5", 18_400), ("q6", 19_600), ("q7", 18_400), ("q8", 1_600)] {
        let row = stdout.lines().find(|l| l.split_whitespace().next() == Some(q));
        let Some(row) = row else { anyhow::bail!("no row for {q} in:\n{stdout}") };
        ensure!(row.split_whitespace().nth(1) == Some(&input.to_string()[..]), "{q} read the wrong number of events: {row}");
    }
    // A query that does not exist is named as such.
    let out = Command::new(samsa_bin()?).args(["bench", "nexmark", "--bootstrap", server.bootstrap(), "--queries-only", "--queries", "q9"]).output()?;
    ensure!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("no Nexmark query q9"), "q9 should be refused");
    Ok(())
}

/// Runs one statement over HTTP; its rows as JSON arrays.
fn sql(server: &SamsaServer, statement: &str) -> Result<Vec<Value>> {
    let answer = post_sql(server.http_addr(), statement)?;
    ensure!(answer.status == 200, "{statement}: HTTP {} {}", answer.status, answer.body);
    let v: Value = serde_json::from_str(&answer.body).context("answer is not JSON")?;
    Ok(v["rows"].as_array().cloned().unwrap_or_default())
}

/// Waits until `persistent` returns what `bounded` does (both re-run each time).
fn converges(server: &SamsaServer, what: &str, persistent: &str, bounded: &str, same: impl Fn(&[Value], &[Value]) -> bool) -> Result<Vec<Value>> {
    let deadline = Instant::now() + Duration::from_secs(120);
    let expected = sql(server, bounded)?;
    ensure!(!expected.is_empty(), "{what}: the bounded query found nothing");
    loop {
        let got = sql(server, persistent)?;
        if same(&got, &expected) {
            return Ok(got);
        }
        ensure!(
            Instant::now() < deadline,
            "{what}: the persistent result never matched the bounded query.\ngot {} rows, first {:?}\nexpected {} rows, first {:?}",
            got.len(),
            got.first(),
            expected.len(),
            expected.first()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// q6 (an OVER window over an aggregation over a join) and q7 (first_value in a windowed
/// aggregation) as persistent queries give the answers of the equivalent bounded queries.
#[test]
fn nexmark_q6_and_q7_persistent_results_match_bounded_queries() -> Result<()> {
    let server = SamsaServer::start()?;
    let out = Command::new(samsa_bin()?).args(["bench", "nexmark", "--bootstrap", server.bootstrap(), "--events", "5000", "--partitions", "2", "--generate-only"]).output()?;
    ensure!(out.status.success(), "generating the events failed: {}", String::from_utf8_lossy(&out.stderr));
    let dir = workspace_root().join("sql/nexmark");
    // The files without their comments (which may hold semicolons).
    let read = |name: &str| -> Result<String> { Ok(std::fs::read_to_string(dir.join(name))?.lines().filter(|l| !l.trim_start().starts_with("--")).collect::<Vec<_>>().join("\n")) };
    for statement in read("ddl.sql")?.split(';').filter(|s| !s.trim().is_empty()) {
        sql(&server, statement)?;
    }
    sql(&server, &read("q6.sql")?)?;
    sql(&server, &read("q7.sql")?)?;

    // q7: each window's top price, and a bid that has it.
    let windows = converges(
        &server,
        "q7",
        "SELECT window_start, price FROM nexmark_q7 ORDER BY window_start",
        r#"SELECT tumble("dateTime", INTERVAL '10' SECOND) AS w, MAX(price) FROM bid GROUP BY 1 ORDER BY 1"#,
        |a, b| a == b,
    )?;
    let real =
        sql(&server, r#"SELECT COUNT(*) FROM nexmark_q7 q JOIN bid b ON b.auction = q.auction AND b.bidder = q.bidder AND b.price = q.price AND b."dateTime" = q."dateTime""#)?;
    ensure!(real[0][0].as_u64() == Some(windows.len() as u64), "q7 names bids that do not exist: {real:?} of {} windows", windows.len());

    // q6: each seller's average over their last 10 auctions, at the seller's latest auction.
    let inner = r#"SELECT a.id, a.seller, a.expires, MAX(b.price) AS final FROM auction a JOIN bid b ON a.id = b.auction AND b."dateTime" BETWEEN a."dateTime" AND a.expires AND b."dateTime" <= a."dateTime" + INTERVAL '1' HOUR GROUP BY a.id, a.seller, a.expires"#;
    let bounded = format!(
        "SELECT seller, avg_final FROM (SELECT q.seller, AVG(q.final) OVER (PARTITION BY q.seller ORDER BY q.expires ROWS BETWEEN 9 PRECEDING AND CURRENT ROW) AS avg_final, \
         ROW_NUMBER() OVER (PARTITION BY q.seller ORDER BY q.expires DESC) AS rn FROM ({inner}) q) w WHERE rn = 1 ORDER BY seller"
    );
    let close = |a: &[Value], b: &[Value]| {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x[0] == y[0] && (x[1].as_f64().unwrap_or(f64::NAN) - y[1].as_f64().unwrap_or(f64::NAN)).abs() < 1e-6)
    };
    let sellers = converges(&server, "q6", "SELECT seller, avg_final FROM nexmark_q6 ORDER BY seller", &bounded, close)?;
    ensure!(sellers.len() > 10, "too few sellers to mean anything: {}", sellers.len());
    Ok(())
}
