//! Connectors hosted by `samsa server`, driven through its Kafka-Connect-compatible REST
//! API and `samsa connect list|status|create|pause|resume|restart|delete`: a connector's
//! whole life, an invalid config refused with a 400 naming each bad setting (nothing
//! starts), and tasks spread over a cluster's servers moving when one dies.

use std::fs;
use std::io::Write;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use samsa_tests::{http, run_samsa, wait_until, SamsaCluster, SamsaServer};
use serde_json::{json, Value};

/// A REST call; the status and the JSON answer (`null` for none).
fn call(addr: &str, method: &str, path: &str, body: Value) -> Result<(u16, Value)> {
    let body = if body.is_null() { String::new() } else { body.to_string() };
    let (status, text) = http(addr, method, path, &body)?;
    let json = if text.trim().is_empty() { Value::Null } else { serde_json::from_str(&text).with_context(|| format!("{method} {path} answered {status}: {text}"))? };
    Ok((status, json))
}

fn status(addr: &str, name: &str) -> Result<Value> {
    let (code, s) = call(addr, "GET", &format!("/connectors/{name}/status"), Value::Null)?;
    ensure!(code == 200, "status of {name}: {code} {s}");
    Ok(s)
}

/// Waits until the connector and every task are in `state`.
fn wait_state(addr: &str, name: &str, state: &str) -> Result<Value> {
    let mut last = Value::Null;
    wait_until(Duration::from_secs(60), &format!("{name} to be {state}"), || {
        last = status(addr, name)?;
        let tasks = last["tasks"].as_array().cloned().unwrap_or_default();
        Ok(last["connector"]["state"] == state && !tasks.is_empty() && tasks.iter().all(|t| t["state"] == state))
    })
    .with_context(|| format!("last status: {last}"))?;
    Ok(last)
}

fn samsa_connect(args: &[&str], server: &str) -> Result<String> {
    let mut all: Vec<&str> = vec!["connect"];
    all.extend(args);
    all.extend(["--server", server]);
    run_samsa(&all, Duration::from_secs(60))?.ok()
}

#[test]
fn the_rest_api_drives_a_connectors_whole_life() -> Result<()> {
    let server = SamsaServer::start()?;
    let api = server.http_addr();
    let dir = tempfile::tempdir()?;
    let (input, output) = (dir.path().join("in.txt"), dir.path().join("out.txt"));
    fs::write(&input, "one\ntwo\n")?;

    // An invalid config: 400 naming each bad setting, and nothing is created.
    let bad = json!({"name": "bad", "config": {"connector.class": "FileStreamSource", "tasks.max": "zero", "batch.size": "lots"}});
    let (code, answer) = call(api, "POST", "/connectors", bad)?;
    let message = answer["message"].as_str().unwrap_or_default();
    ensure!(code == 400 && answer["error_code"] == 400, "{code} {answer}");
    for want in ["3 error(s)", "topic: missing required setting topic", "tasks.max: ", "batch.size: "] {
        ensure!(message.contains(want), "the 400 lacks {want:?}: {message}");
    }
    ensure!(call(api, "GET", "/connectors", Value::Null)? == (200, json!([])), "an invalid connector was created");
    ensure!(call(api, "GET", "/connectors/bad", Value::Null)?.0 == 404, "GET of a refused connector is not 404");
    let (code, v) = call(api, "PUT", "/connector-plugins/FileStreamSource/config/validate", json!({"tasks.max": "zero"}))?;
    ensure!(code == 200 && v["error_count"] == 2, "validate: {code} {v}");
    let topic_errors = v["configs"].as_array().context("configs")?.iter().find(|c| c["value"]["name"] == "topic").context("topic")?["value"]["errors"].clone();
    ensure!(topic_errors.as_array().is_some_and(|e| e.len() == 1), "validate lists the topic's error: {v}");
    let (_, plugins) = call(api, "GET", "/connector-plugins", Value::Null)?;
    ensure!(plugins.as_array().is_some_and(|p| p.iter().any(|p| p["class"] == "io.confluent.connect.jdbc.JdbcSinkConnector" && p["type"] == "sink")), "{plugins}");

    // Create a source with the CLI (a properties file) and a sink with the API.
    let props = dir.path().join("source.properties");
    fs::write(&props, format!("name=lines\nconnector.class=FileStreamSource\nfile={}\ntopic=rest-lines\n", input.display()))?;
    samsa_connect(&["create", props.to_str().context("path")?], api)?;
    let sink = json!({"name": "copy", "config": {"connector.class": "FileStreamSink", "file": output.display().to_string(), "topics": "rest-lines"}});
    let (code, created) = call(api, "POST", "/connectors", sink.clone())?;
    ensure!(code == 201 && created["type"] == "sink" && created["tasks"] == json!([{"connector": "copy", "task": 0}]), "{code} {created}");
    ensure!(call(api, "POST", "/connectors", sink)?.0 == 409, "a second create of the same name is not 409");
    let copied = |want: &str| -> Result<()> {
        wait_until(Duration::from_secs(60), &format!("out.txt to be {want:?}"), || Ok(fs::read_to_string(&output).unwrap_or_default() == want))
            .with_context(|| format!("out.txt: {:?}", fs::read_to_string(&output)))
    };
    copied("one\ntwo\n")?;
    let s = wait_state(api, "copy", "RUNNING")?;
    ensure!(s["tasks"][0]["worker_id"] == api && s["type"] == "sink", "{s}");
    wait_state(api, "lines", "RUNNING")?;
    let list = samsa_connect(&["list"], api)?;
    let rows: Vec<Vec<&str>> = list.lines().skip(1).map(|l| l.split_whitespace().collect()).collect();
    ensure!(rows == vec![vec!["copy", "sink", "RUNNING", "1/1"], vec!["lines", "source", "RUNNING", "1/1"]], "list:\n{list}");

    // Pause: the source still reads, the paused sink writes nothing until resumed.
    samsa_connect(&["pause", "copy"], api)?;
    wait_state(api, "copy", "PAUSED")?;
    fs::write(&input, "one\ntwo\nthree\n")?;
    let consumed = run_samsa(&["consume", "rest-lines", "--bootstrap", server.bootstrap(), "--from-beginning", "--max-messages", "3"], Duration::from_secs(60))?.ok()?;
    ensure!(consumed.contains("three"), "the source did not read the new line: {consumed}");
    std::thread::sleep(Duration::from_secs(2));
    ensure!(fs::read_to_string(&output)? == "one\ntwo\n", "the paused sink wrote");
    samsa_connect(&["resume", "copy"], api)?;
    copied("one\ntwo\nthree\n")?;
    wait_state(api, "copy", "RUNNING")?;

    // Restart the tasks: they come back and go on.
    let (code, _) = call(api, "POST", "/connectors/copy/restart?includeTasks=true", Value::Null)?;
    ensure!(code == 202, "restart answered {code}");
    wait_state(api, "copy", "RUNNING")?;
    fs::write(&input, "one\ntwo\nthree\nfour\n")?;
    copied("one\ntwo\nthree\nfour\n")?;
    let out = samsa_connect(&["status", "copy"], api)?;
    ensure!(out.contains("copy (sink): RUNNING") && out.contains("task 0: RUNNING"), "status:\n{out}");

    // Offsets: listed; reset only once the connector is stopped.
    let mut offsets = Value::Null;
    wait_until(Duration::from_secs(30), "the source's stored offset", || {
        offsets = call(api, "GET", "/connectors/lines/offsets", Value::Null)?.1;
        Ok(offsets["offsets"][0]["offset"]["position"].as_i64() == Some(19))
    })
    .with_context(|| format!("offsets: {offsets}"))?;
    ensure!(call(api, "DELETE", "/connectors/lines/offsets", Value::Null)?.0 == 400, "offsets reset while running");
    samsa_connect(&["stop", "lines"], api)?;
    wait_until(Duration::from_secs(30), "lines to be STOPPED", || Ok(status(api, "lines")?["connector"]["state"] == "STOPPED"))?;
    ensure!(call(api, "DELETE", "/connectors/lines/offsets", Value::Null)?.0 == 200, "offsets reset once stopped");
    ensure!(call(api, "GET", "/connectors/lines/offsets", Value::Null)?.1 == json!({"offsets": []}), "offsets left after the reset");

    // Delete both.
    samsa_connect(&["delete", "copy"], api)?;
    ensure!(call(api, "DELETE", "/connectors/lines", Value::Null)?.0 == 204, "DELETE is not 204");
    ensure!(call(api, "GET", "/connectors", Value::Null)?.1 == json!([]), "connectors left after deleting");
    ensure!(call(api, "GET", "/connectors/copy/status", Value::Null)?.0 == 404, "status of a deleted connector");
    Ok(())
}

#[test]
fn tasks_spread_over_the_servers_and_move_when_one_dies() -> Result<()> {
    // Three nodes: the metadata quorum and the internal topics survive losing one.
    let mut cluster = SamsaCluster::start(3, &[])?;
    let apis: Vec<String> = (1..=3).map(|i| cluster.node(i).http_addr().to_string()).collect();
    let gen = json!({"name": "gen", "config": {"connector.class": "DatagenSource", "kafka.topic": "gen-users", "quickstart": "users", "rate": "24", "tasks.max": "24"}});
    let (code, created) = call(&apis[0], "POST", "/connectors", gen)?;
    ensure!(code == 201, "{code} {created}");
    let workers = |s: &Value| -> Vec<String> {
        let mut w: Vec<String> = s["tasks"].as_array().into_iter().flatten().filter_map(|t| t["worker_id"].as_str().map(str::to_string)).collect();
        w.sort();
        w.dedup();
        w
    };
    let all_running = |s: &Value| s["tasks"].as_array().is_some_and(|t| t.len() == 24 && t.iter().all(|t| t["state"] == "RUNNING"));
    // Every server joins the Connect workers once it sees a connector (asking them for
    // the status starts theirs at once).
    let mut last = Value::Null;
    wait_until(Duration::from_secs(120), "24 tasks running over the three servers", || {
        for api in &apis[1..] {
            status(api, "gen")?;
        }
        last = status(&apis[0], "gen")?;
        Ok(all_running(&last) && workers(&last).len() == 3)
    })
    .with_context(|| format!("status: {last}"))?;
    // Server 3 dies; its tasks move to the other two.
    cluster.kill9(3)?;
    wait_until(Duration::from_secs(120), "every task running on servers 1 and 2", || {
        last = status(&apis[0], "gen")?;
        Ok(all_running(&last) && workers(&last).iter().all(|w| *w == apis[0] || *w == apis[1]))
    })
    .with_context(|| format!("status: {last}"))?;
    Ok(())
}

#[test]
fn an_exactly_once_source_writes_each_line_once_across_a_kill_9_of_the_server() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut server = SamsaServer::builder().data_dir(dir.path().join("data")).start()?;
    let input = dir.path().join("in.txt");
    let lines = |from: usize, to: usize| (from..to).map(|i| format!("line {i}\n")).collect::<String>();
    fs::write(&input, lines(0, 20_000))?;
    run_samsa(&["topic", "create", "eos-lines", "--bootstrap", server.bootstrap()], Duration::from_secs(30))?.ok()?;
    let config = json!({"name": "eos", "config": {"connector.class": "FileStreamSource", "file": input.display().to_string(), "topic": "eos-lines",
        "batch.size": "500", "exactly.once.source.support": "enabled", "value.converter": "org.apache.kafka.connect.storage.StringConverter"}});
    let (code, answer) = call(server.http_addr(), "POST", "/connectors", config)?;
    ensure!(code == 201, "{code} {answer}");
    // Committed lines, as a read_committed consumer sees them.
    let committed = |bootstrap: &str, timeout_ms: &str| -> Result<Vec<String>> {
        let out = run_samsa(
            &["consume", "eos-lines", "--bootstrap", bootstrap, "--from-beginning", "--timeout-ms", timeout_ms, "-X", "isolation.level=read_committed"],
            Duration::from_secs(120),
        )?
        .ok()?;
        Ok(out.lines().map(str::to_string).collect())
    };
    wait_until(Duration::from_secs(60), "the first committed lines", || Ok(!committed(server.bootstrap(), "1000")?.is_empty()))?;
    // kill -9 the whole server (broker and connector) mid-run; more lines arrive meanwhile.
    server.kill9()?;
    fs::OpenOptions::new().append(true).open(&input)?.write_all(lines(20_000, 30_000).as_bytes())?;
    let server = server.restart_builder().start()?;
    // The connector resumes by itself, from the offsets committed with its records.
    let want: Vec<String> = (0..30_000).map(|i| format!("line {i}")).collect();
    let mut got = Vec::new();
    wait_until(Duration::from_secs(120), "30,000 committed lines", || {
        got = committed(server.bootstrap(), "2000")?;
        Ok(got.len() >= want.len())
    })
    .with_context(|| format!("{} committed lines; server log:\n{}", got.len(), server.stderr()))?;
    ensure!(got == want, "the committed lines differ: {} lines, first difference at {:?}", got.len(), got.iter().zip(&want).position(|(a, b)| a != b));
    Ok(())
}

/// Runs one SQL statement through the server's HTTP API; the status and JSON answer.
fn sql(addr: &str, statement: &str) -> Result<(u16, Value)> {
    call(addr, "POST", "/sql", json!({ "sql": statement }))
}

#[test]
fn sql_creates_lists_describes_and_drops_connectors() -> Result<()> {
    let server = SamsaServer::start()?;
    let api = server.http_addr();
    let dir = tempfile::tempdir()?;
    let input = dir.path().join("in.txt");
    fs::write(&input, "alpha\nbeta\n")?;
    run_samsa(&["topic", "create", "sql-lines", "--bootstrap", server.bootstrap()], Duration::from_secs(30))?.ok()?;
    let create = format!(
        "CREATE SOURCE CONNECTOR lines WITH ('connector.class' = 'FileStreamSource', 'file' = '{}', 'topic' = 'sql-lines', \
         'value.converter' = 'org.apache.kafka.connect.storage.StringConverter')",
        input.display()
    );
    let (code, answer) = sql(api, &create)?;
    ensure!(code == 200, "{code} {answer}");
    // The records arrive; the connector is listed and described; the REST API sees it too.
    let out = run_samsa(&["consume", "sql-lines", "--bootstrap", server.bootstrap(), "--from-beginning", "--max-messages", "2"], Duration::from_secs(60))?.ok()?;
    ensure!(out == "alpha\nbeta\n", "topic: {out:?}");
    wait_state(api, "lines", "RUNNING")?;
    let (_, shown) = sql(api, "SHOW CONNECTORS")?;
    let text = shown.to_string();
    ensure!(text.contains("lines") && text.contains("FileStreamSource") && text.contains("RUNNING") && text.contains("1/1"), "SHOW CONNECTORS: {shown}");
    let (_, described) = sql(api, "DESCRIBE CONNECTOR lines")?;
    ensure!(described.to_string().contains("sql-lines") && described.to_string().contains("task 0"), "DESCRIBE CONNECTOR: {described}");
    // Errors: the wrong kind, an invalid config (each bad setting named), a duplicate.
    let (code, e) = sql(api, "CREATE SINK CONNECTOR s WITH ('connector.class' = 'FileStreamSource', 'topic' = 't')")?;
    ensure!(code >= 400 && e.to_string().contains("is a source connector; use CREATE SOURCE CONNECTOR"), "{code} {e}");
    let (code, e) = sql(api, "CREATE SOURCE CONNECTOR bad WITH ('connector.class' = 'FileStreamSource', 'batch.size' = 'lots')")?;
    ensure!(code >= 400 && e.to_string().contains("topic: missing required setting") && e.to_string().contains("batch.size"), "{code} {e}");
    ensure!(sql(api, &create)?.0 >= 400, "a second CREATE of the same name succeeded");
    ensure!(sql(api, &create.replace("CONNECTOR lines", "CONNECTOR IF NOT EXISTS lines"))?.0 == 200, "IF NOT EXISTS failed");
    let (code, dropped) = sql(api, "DROP CONNECTOR lines")?;
    ensure!(code == 200, "{code} {dropped}");
    ensure!(call(api, "GET", "/connectors", Value::Null)?.1 == json!([]), "the connector is still there");
    ensure!(sql(api, "DROP CONNECTOR lines")?.0 >= 400 && sql(api, "DROP CONNECTOR IF EXISTS lines")?.0 == 200, "DROP of a missing connector");
    Ok(())
}
