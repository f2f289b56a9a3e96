//! What an operator sees: `GET /metrics` for streams tasks, connector tasks and persistent
//! queries, `samsa top` over it, and `samsa quickstart` (the README's first command's
//! pipeline) showing per-minute counts that update, then resuming on a second run. The
//! consumer-lag values are checked with Prometheus' own parser in
//! python/tests/test_metrics.py.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use samsa_client::prom::{parse, Sample};
use samsa_tests::{http, run_samsa, wait_until, SamsaServer};
use serde_json::{json, Value};

fn sql(addr: &str, statement: &str) -> Result<()> {
    let (status, text) = http(addr, "POST", "/sql", &json!({ "sql": statement }).to_string())?;
    ensure!(status == 200, "{statement}: {status} {text}");
    Ok(())
}

fn metrics(addr: &str) -> Result<Vec<Sample>> {
    let (status, text) = http(addr, "GET", "/metrics", "")?;
    ensure!(status == 200, "GET /metrics: {status} {text}");
    parse(&text).map_err(anyhow::Error::msg)
}

/// The sum of `name`'s samples whose labels include `labels`.
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples.iter().filter(|s| s.name == name && labels.iter().all(|(k, v)| s.label(k) == *v)).map(|s| s.value).sum()
}

#[test]
fn metrics_count_connector_tasks_streams_tasks_and_persistent_queries_and_samsa_top_shows_them() -> Result<()> {
    let server = SamsaServer::start()?;
    let api = server.http_addr();
    sql(api, "CREATE STREAM orders (item VARCHAR, qty BIGINT) WITH (topic = 'orders', format = 'json', partitions = 2)")?;
    sql(api, "CREATE TABLE qty_per_item AS SELECT item, SUM(qty) AS qty FROM orders GROUP BY item")?;
    // Exactly 40 records, keyed by item (3 items).
    sql(
        api,
        r#"CREATE SOURCE CONNECTOR orders_gen WITH ('connector.class' = 'DatagenSource', 'kafka.topic' = 'orders', 'iterations' = '40', 'rate' = '100',
           'schema.string' = '{"item": "item_${int:1:3}", "qty": 1}', 'schema.keyfield' = 'item',
           'key.converter' = 'org.apache.kafka.connect.storage.StringConverter', 'value.converter' = 'org.apache.kafka.connect.json.JsonConverter',
           'value.converter.schemas.enable' = 'false')"#,
    )?;
    let query = [("query", "CTAS_QTY_PER_ITEM")];
    wait_until(Duration::from_secs(60), "the connector's 40 records and the query's 40 input rows in /metrics", || {
        let m = metrics(api)?;
        Ok(value(&m, "samsa_connect_task_records_total", &[("connector", "orders_gen"), ("type", "source")]) == 40.0 && value(&m, "samsa_sql_query_rows_in_total", &query) >= 40.0)
    })
    .with_context(|| server.stderr())?;
    // The query wrote its table rows (one or more changes per item); its streams tasks
    // processed the 40 records (plus the repartitioned copies) and committed.
    wait_until(Duration::from_secs(30), "the query's output, all 80 records processed, and a commit", || {
        let m = metrics(api)?;
        Ok(value(&m, "samsa_sql_query_rows_out_total", &query) >= 3.0
            && value(&m, "samsa_streams_task_records_processed_total", &[]) >= 80.0
            && value(&m, "samsa_streams_commit_latency_seconds_count", &[]) >= 1.0)
    })?;
    let m = metrics(api)?;
    ensure!(value(&m, "samsa_connect_task_errors_total", &[("connector", "orders_gen")]) == 0.0, "connector errors");
    ensure!(value(&m, "samsa_topic_records_in_total", &[("topic", "orders")]) == 40.0, "records in: {}", value(&m, "samsa_topic_records_in_total", &[("topic", "orders")]));
    ensure!(value(&m, "samsa_sql_query_state_bytes", &query) > 0.0, "no state size");
    ensure!(value(&m, "samsa_log_end_offset", &[("topic", "orders")]) == 40.0, "log end offsets");
    // Every family has one TYPE line, and its samples follow it before the next one.
    let (_, text) = http(api, "GET", "/metrics", "")?;
    let mut seen = BTreeMap::new();
    let mut current = String::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            current = rest.split(' ').next().unwrap_or_default().to_string();
            ensure!(seen.insert(current.clone(), ()).is_none(), "{current} has two TYPE lines");
        } else if !line.starts_with('#') {
            let name = line.split(['{', ' ']).next().unwrap_or_default();
            let family = ["_bucket", "_sum", "_count"].iter().find_map(|s| name.strip_suffix(s).filter(|f| *f == current)).unwrap_or(name);
            ensure!(family == current, "sample {name} is not under its family's TYPE line (under {current})");
        }
    }

    // The log has a line per notable event, naming what it concerns.
    let log = server.stderr();
    for want in [
        "now leader partition=orders-0 leader=1 leader_epoch=0",
        "rebalance: new generation group=_samsa_sql_CTAS_QTY_PER_ITEM generation=1",
        "task running app=_samsa_sql_CTAS_QTY_PER_ITEM thread=1 task=0_0",
        "starting task connector=orders_gen task=0",
    ] {
        ensure!(log.contains(want), "the server log lacks `{want}`:\n{log}");
    }

    let out = run_samsa(&["top", "--server", api, "--interval", "0.5", "--iterations", "1"], Duration::from_secs(30))?.ok()?;
    for want in ["requests/s", "orders", "CTAS_QTY_PER_ITEM", "orders_gen", "source"] {
        ensure!(out.contains(want), "samsa top lacks {want}:\n{out}");
    }
    let line = out.lines().find(|l| l.starts_with("orders ")).with_context(|| format!("no orders row:\n{out}"))?;
    ensure!(line.split_whitespace().last() == Some("40"), "the orders row should end with its 40 records: {line}");
    let e = run_samsa(&["top", "--server", "127.0.0.1:1", "--iterations", "1"], Duration::from_secs(30))?.failed()?;
    ensure!(e.contains("cannot connect to 127.0.0.1:1"), "{e}");
    Ok(())
}

/// One refresh of `samsa quickstart --output json`.
struct Refresh {
    elapsed: f64,
    total: i64,
    rows: Vec<Value>,
}

fn refreshes(stdout: &str) -> Result<Vec<Refresh>> {
    stdout
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).with_context(|| format!("not JSON: {l}"))?;
            Ok(Refresh {
                elapsed: v["elapsed_s"].as_f64().unwrap_or(-1.0),
                total: v["total_views"].as_i64().unwrap_or(-1),
                rows: v["rows"].as_array().cloned().unwrap_or_default(),
            })
        })
        .collect()
}

#[test]
fn quickstart_shows_per_minute_counts_that_update_and_a_second_run_resumes() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("qs");
    let data = data.to_str().context("path")?;
    let args =
        |d: &'static str| ["quickstart", "--data-dir", data, "--listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0", "--duration", d, "--output", "json", "--refresh", "1"];
    let run = run_samsa(&args("30s"), Duration::from_secs(120))?;
    ensure!(run.stderr.contains("samsa sql --server 127.0.0.1:") && run.stderr.contains("Kafka clients  127.0.0.1:"), "no description:\n{}", run.stderr);
    let first = refreshes(&run.ok()?)?;
    let counted: Vec<&Refresh> = first.iter().filter(|r| !r.rows.is_empty()).collect();
    ensure!(counted.len() >= 3, "want counts in at least 3 refreshes of 30 s, got {}", counted.len());
    ensure!(counted[0].elapsed < 25.0, "the first counts came after {} s", counted[0].elapsed);
    ensure!(counted.last().map(|r| r.total) > Some(counted[0].total), "the counts did not update: {} then {:?}", counted[0].total, counted.last().map(|r| r.total));
    // Every row is a one-minute window of a page and region, and no count ever goes down.
    let mut last: BTreeMap<(String, String, String), i64> = BTreeMap::new();
    for r in &counted {
        let shown: i64 = r.rows.iter().map(|row| row["views"].as_i64().unwrap_or(0)).sum();
        ensure!(shown <= r.total, "the rows shown ({shown}) exceed the total ({})", r.total);
        for row in &r.rows {
            let minute = row["minute"].as_str().unwrap_or_default().to_string();
            ensure!(minute.ends_with(":00") && row["page"].as_str().is_some_and(|p| p.starts_with("Page_")), "row {row}");
            let views = row["views"].as_i64().unwrap_or(0);
            ensure!(views > 0, "row {row}");
            let key = (minute, row["page"].to_string(), row["region"].to_string());
            ensure!(last.get(&key).is_none_or(|v| *v <= views), "{key:?} went from {:?} to {views}", last.get(&key));
            last.insert(key, views);
        }
    }
    let before = counted.last().map(|r| r.total).unwrap_or(0);
    // A second run on the same data dir resumes: nothing counted is lost, and it goes on.
    let second = refreshes(&run_samsa(&args("12s"), Duration::from_secs(90))?.ok()?)?;
    let start = second.iter().find(|r| r.total >= 0).context("no refresh in the second run")?;
    ensure!(start.total >= before, "the second run starts at {} views; the first ended at {before}", start.total);
    ensure!(second.last().map(|r| r.total) > Some(before), "the second run did not count more than {before}");
    Ok(())
}
