//! Connectors hosted by `samsa server`, driven through its Kafka-Connect-compatible REST
//! API and `samsa connect list|status|create|pause|resume|restart|delete`: a connector's
//! whole life, an invalid config refused with a 400 naming each bad setting (nothing
//! starts), and tasks spread over a cluster's servers moving when one dies.

use std::fs;
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
    let mut cluster = SamsaCluster::start(2, &[])?;
    let (api1, api2) = (cluster.node(1).http_addr().to_string(), cluster.node(2).http_addr().to_string());
    // Both servers join the Connect workers once they see a connector.
    let gen = json!({"name": "gen", "config": {"connector.class": "DatagenSource", "kafka.topic": "gen-users", "quickstart": "users", "rate": "24", "tasks.max": "12"}});
    let (code, created) = call(&api1, "POST", "/connectors", gen)?;
    ensure!(code == 201, "{code} {created}");
    let workers = |s: &Value| -> Vec<String> {
        let mut w: Vec<String> = s["tasks"].as_array().into_iter().flatten().filter_map(|t| t["worker_id"].as_str().map(str::to_string)).collect();
        w.sort();
        w.dedup();
        w
    };
    let mut last = Value::Null;
    wait_until(Duration::from_secs(90), "12 tasks running over both servers", || {
        last = status(&api2, "gen")?;
        let tasks = last["tasks"].as_array().cloned().unwrap_or_default();
        Ok(tasks.len() == 12 && tasks.iter().all(|t| t["state"] == "RUNNING") && workers(&last).len() == 2)
    })
    .with_context(|| format!("status: {last}"))?;
    // Server 2 dies; its tasks move to server 1.
    cluster.kill9(2)?;
    wait_until(Duration::from_secs(90), "every task running on server 1", || {
        last = status(&api1, "gen")?;
        let tasks = last["tasks"].as_array().cloned().unwrap_or_default();
        Ok(tasks.len() == 12 && tasks.iter().all(|t| t["state"] == "RUNNING" && t["worker_id"] == api1.as_str()))
    })
    .with_context(|| format!("status: {last}"))?;
    Ok(())
}
