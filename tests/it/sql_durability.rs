//! A persistent `CREATE TABLE ... AS SELECT ... GROUP BY` over 1,000,000 JSON events gives
//! exactly the bounded query's answer over the same topic, also when the server is killed
//! with SIGKILL while the query runs and then restarted (exactly_once_v2: the output,
//! the state changelog and the input offsets commit together).

use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use samsa_client::admin::{Admin, NewTopic};
use samsa_client::{Producer, ProducerConfig, ProducerRecord};
use samsa_tests::SamsaServer;
use serde_json::Value;

use crate::sql_http::post_sql;

const EVENTS: u64 = 1_000_000;
const KEYS: u64 = 5_000;

/// Runs one statement; its rows (as JSON arrays) or an error with the server's answer.
fn sql(server: &SamsaServer, statement: &str) -> Result<Vec<Value>> {
    let answer = post_sql(server.http_addr(), statement)?;
    ensure!(answer.status == 200, "{statement}: HTTP {} {}", answer.status, answer.body);
    let v: Value = serde_json::from_str(&answer.body).context("answer is not JSON")?;
    Ok(v["rows"].as_array().cloned().unwrap_or_default())
}

async fn produce(bootstrap: &str) -> Result<()> {
    let admin = Admin::connect(bootstrap).await?;
    admin.create_topics(&[NewTopic::new("events", 4, 1)]).await?;
    let mut config = ProducerConfig::new(bootstrap)?;
    config.set("linger.ms", "5")?;
    config.set("batch.size", "262144")?;
    let producer = Producer::new(config).await?;
    let mut pending = Vec::new();
    for i in 0..EVENTS {
        let key = format!("k{}", (i * 7919) % KEYS);
        let value = format!(r#"{{"k":"{key}","n":{},"tag":"t{}"}}"#, i % 13, i % 3);
        pending.push(producer.send(ProducerRecord::new("events", value).key(key)).await?);
        if pending.len() >= 50_000 {
            for p in pending.drain(..) {
                p.await?;
            }
        }
    }
    for p in pending {
        p.await?;
    }
    Ok(())
}

fn processed_output(server: &SamsaServer) -> Result<i64> {
    let rows = sql(server, "SELECT COALESCE(SUM(c), 0) FROM totals")?;
    Ok(rows.first().and_then(|r| r[0].as_i64()).unwrap_or(0))
}

#[test]
fn persistent_group_by_over_a_million_events_matches_the_bounded_query_across_a_kill_9() -> Result<()> {
    let mut server = SamsaServer::start()?;
    tokio::runtime::Runtime::new()?.block_on(produce(server.bootstrap()))?;
    sql(&server, "CREATE STREAM events (k VARCHAR, n BIGINT, tag VARCHAR) WITH (topic = 'events')")?;
    sql(&server, "CREATE TABLE totals AS SELECT k, COUNT(*) AS c, SUM(n) AS s, MAX(tag) AS last_tag FROM events GROUP BY k")?;

    // Kill the server once the query has committed a fifth of its work, before it is done.
    let deadline = Instant::now() + Duration::from_secs(300);
    let at_kill = loop {
        let done = processed_output(&server)?;
        if done >= EVENTS as i64 / 5 {
            break done;
        }
        ensure!(Instant::now() < deadline, "the persistent query produced nothing in 5 minutes");
        std::thread::sleep(Duration::from_millis(200));
    };
    ensure!(at_kill < EVENTS as i64, "the query finished before the kill ({at_kill}); nothing was tested");
    server.kill9()?;
    eprintln!("killed with {at_kill} of {EVENTS} events counted");

    let server2 = server.restart_builder().start()?;
    // The restarted server resumes the query from the catalog and its committed state.
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let done = processed_output(&server2)?;
        ensure!(done <= EVENTS as i64, "counted {done} events, more than the {EVENTS} produced: some were counted twice");
        if done == EVENTS as i64 {
            break;
        }
        ensure!(Instant::now() < deadline, "stuck at {done} of {EVENTS}");
        std::thread::sleep(Duration::from_millis(500));
    }
    let persistent = sql(&server2, "SELECT k, c, s, last_tag FROM totals ORDER BY k")?;
    let bounded = sql(&server2, "SELECT k, COUNT(*) AS c, SUM(n) AS s, MAX(tag) AS last_tag FROM events GROUP BY k ORDER BY k")?;
    ensure!(bounded.len() == KEYS as usize, "the bounded query saw {} keys", bounded.len());
    ensure!(persistent == bounded, "the persistent table differs from the bounded query: first difference {:?}", persistent.iter().zip(&bounded).find(|(a, b)| a != b));
    Ok(())
}
