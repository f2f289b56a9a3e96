//! The PostgreSQL connectors against a real PostgreSQL server (Debian's package, a fresh
//! cluster per test): a table copied through a topic into another table by the JDBC source
//! and the upserting JDBC sink, across a kill -9 of the worker; change data capture of
//! inserts, updates and deletes as ordered Debezium-style events with tombstones; and
//! records the sink cannot write going to the dead-letter topic while the sink goes on.

use std::fs;
use std::path::Path;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use samsa_tests::postgres::PgServer;
use samsa_tests::{produce_lines, run_samsa, wait_until, ConnectWorker, SamsaServer};
use serde_json::{json, Value};

/// A worker config: JSON values with schemas (so the sink knows the types), string keys
/// unless `schemaless`, offsets flushed every 500 ms; a killed sink's group membership
/// expires after 6 s.
fn worker_config(dir: &Path, bootstrap: &str, schemaless: bool) -> Result<()> {
    let schemas = if schemaless { "false" } else { "true" };
    fs::write(
        dir.join("worker.properties"),
        format!(
            "bootstrap.servers={bootstrap}\n\
             key.converter=org.apache.kafka.connect.json.JsonConverter\nkey.converter.schemas.enable={schemas}\n\
             value.converter=org.apache.kafka.connect.json.JsonConverter\nvalue.converter.schemas.enable={schemas}\n\
             offset.storage.file.filename={}\noffset.flush.interval.ms=500\n\
             consumer.session.timeout.ms=6000\nconsumer.heartbeat.interval.ms=500\n",
            dir.join("connect.offsets").display()
        ),
    )?;
    Ok(())
}

/// `count|md5` of a table's rows in id order.
fn checksum(pg: &PgServer, table: &str) -> Result<String> {
    pg.sql("shop", &format!("SELECT count(*), coalesce(md5(string_agg(t::text, ',' ORDER BY id)), '') FROM {table} t"))
}

#[test]
fn a_table_goes_through_a_topic_into_another_table_exactly_even_across_a_kill_9() -> Result<()> {
    let pg = PgServer::start()?;
    pg.create_db("shop")?;
    let columns = "id BIGINT PRIMARY KEY, name TEXT NOT NULL, amount BIGINT, price NUMERIC(10,2), note TEXT, created TIMESTAMPTZ NOT NULL";
    pg.sql("shop", &format!("CREATE TABLE orders ({columns}); CREATE TABLE orders_copy ({columns})"))?;
    // Rows of every column kind: quotes, NULLs, unicode, fractions; ms timestamps (Connect
    // timestamps carry ms).
    let insert = |from: i64, to: i64| {
        pg.sql(
            "shop",
            &format!(
                "INSERT INTO orders SELECT i, 'customer ''' || i || ' ✓', i * 7 % 1000, (i % 997) / 4.0, CASE WHEN i % 5 = 0 THEN NULL ELSE 'n' || i END, \
                 TIMESTAMPTZ '2026-01-01 00:00:00+00' + i * INTERVAL '1 millisecond' FROM generate_series({from}, {to}) i"
            ),
        )
    };
    insert(1, 60_000)?;
    let server = SamsaServer::start()?;
    let dir = tempfile::tempdir()?;
    let dir = dir.path();
    worker_config(dir, server.bootstrap(), false)?;
    fs::write(
        dir.join("source.properties"),
        format!(
            "name=orders-source\nconnector.class=io.confluent.connect.jdbc.JdbcSourceConnector\nconnection.url={}\nmode=incrementing\n\
             incrementing.column.name=id\ntable.whitelist=orders\ntopic.prefix=pg-\nbatch.max.rows=500\npoll.interval.ms=200\n",
            pg.jdbc_url("shop")
        ),
    )?;
    fs::write(
        dir.join("sink.properties"),
        format!(
            "name=orders-sink\nconnector.class=io.confluent.connect.jdbc.JdbcSinkConnector\nconnection.url={}\ntopics=pg-orders\n\
             table.name.format=orders_copy\ninsert.mode=upsert\npk.mode=record_value\npk.fields=id\nbatch.size=1000\n",
            pg.jdbc_url("shop")
        ),
    )?;
    let args = ["worker.properties", "source.properties", "sink.properties"];
    let copied = || -> Result<i64> { Ok(pg.sql("shop", "SELECT count(*) FROM orders_copy")?.parse()?) };
    let w = ConnectWorker::start(dir, "worker-1.log", &args)?;
    let offset_stored = || fs::read_to_string(dir.join("connect.offsets")).unwrap_or_default().contains("incrementing");
    wait_until(Duration::from_secs(60), "a stored source offset and the sink's first rows", || Ok(offset_stored() && copied()? > 0)).with_context(|| w.log())?;
    // kill -9 mid-run: no offsets stored, no commits; 40,000 more rows arrive meanwhile.
    w.kill9()?;
    let at_kill = copied()?;
    insert(60_001, 100_000)?;
    let w = ConnectWorker::start(dir, "worker-2.log", &args)?;
    let want = checksum(&pg, "orders")?;
    ensure!(want.starts_with("100000|"), "source: {want}");
    wait_until(Duration::from_secs(120), "orders_copy to equal orders", || Ok(checksum(&pg, "orders_copy")? == want)).with_context(|| {
        let missing = pg.sql("shop", "SELECT min(id), max(id), count(*) FROM orders o WHERE NOT EXISTS (SELECT 1 FROM orders_copy c WHERE c.id = o.id)");
        format!("copy: {:?}, want {want}; missing (min, max, count): {missing:?}; {at_kill} rows were copied at the kill; log:\n{}", checksum(&pg, "orders_copy"), w.log())
    })?;
    // The source resumed from its stored offset; replayed rows were upserted, not added.
    ensure!(w.log().contains("resuming after the stored offset"), "the source did not resume from its offset:\n{}", w.log());
    w.stop()?;
    ensure!(checksum(&pg, "orders_copy")? == want, "the copy changed after the stop");
    let offsets = fs::read_to_string(dir.join("connect.offsets"))?;
    ensure!(offsets.replace([' ', '\n'], "").contains("\"incrementing\":100000"), "the final offset was not stored: {offsets}");
    Ok(())
}

/// Reads `n` records of `topic` as (key, value) JSON pairs (`null` for a tombstone).
fn read_events(bootstrap: &str, topic: &str, n: usize) -> Result<Vec<(Value, Value)>> {
    let out =
        run_samsa(&["consume", topic, "--bootstrap", bootstrap, "--from-beginning", "--max-messages", &n.to_string(), "--format", "{key}\t{value}"], Duration::from_secs(60))?
            .ok()?;
    out.lines()
        .map(|l| {
            let (k, v) = l.split_once('\t').context("a tab")?;
            Ok((serde_json::from_str(k)?, serde_json::from_str(v)?))
        })
        .collect()
}

/// (op, key id, before, after) of a change event; ("tombstone", id, null, null) for one.
fn summary(e: &(Value, Value)) -> (String, Value, Value, Value) {
    let id = e.0["id"].clone();
    if e.1.is_null() {
        return ("tombstone".into(), id, Value::Null, Value::Null);
    }
    (e.1["op"].as_str().unwrap_or("?").to_string(), id, e.1["before"].clone(), e.1["after"].clone())
}

#[test]
fn change_data_capture_delivers_inserts_updates_and_deletes_in_order_with_tombstones() -> Result<()> {
    let pg = PgServer::start()?;
    pg.create_db("shop")?;
    pg.sql("shop", "CREATE TABLE items (id INT PRIMARY KEY, name TEXT, qty INT); ALTER TABLE items REPLICA IDENTITY FULL; INSERT INTO items VALUES (1, 'apple', 5)")?;
    pg.sql("shop", "CREATE TABLE ignored (id INT PRIMARY KEY)")?;
    let server = SamsaServer::start()?;
    run_samsa(&["topic", "create", "shop.public.items", "--bootstrap", server.bootstrap(), "--partitions", "1"], Duration::from_secs(30))?.ok()?;
    let dir = tempfile::tempdir()?;
    let dir = dir.path();
    worker_config(dir, server.bootstrap(), true)?;
    fs::write(
        dir.join("cdc.json"),
        serde_json::to_string_pretty(&json!({"name": "shop-cdc", "config": {
            "connector.class": "io.debezium.connector.postgresql.PostgresConnector",
            "database.hostname": "127.0.0.1", "database.port": pg.port().to_string(), "database.user": "postgres",
            "database.dbname": "shop", "topic.prefix": "shop", "plugin.name": "pgoutput",
            "table.include.list": "public.items", "tombstones.on.delete": "true", "poll.interval.ms": "100"
        }}))?,
    )?;
    let w = ConnectWorker::start(dir, "cdc-1.log", &["worker.properties", "cdc.json"])?;
    // The snapshot row first.
    let first = read_events(server.bootstrap(), "shop.public.items", 1).with_context(|| w.log())?;
    ensure!(summary(&first[0]) == ("r".into(), json!(1), Value::Null, json!({"id": 1, "name": "apple", "qty": 5})), "snapshot event: {:?}", first[0]);
    ensure!(first[0].1["source"]["table"] == "items" && first[0].1["source"]["db"] == "shop", "source block: {}", first[0].1["source"]);
    pg.sql("shop", "INSERT INTO items VALUES (2, 'pear', 1)")?;
    pg.sql("shop", "UPDATE items SET qty = 4 WHERE id = 1")?;
    pg.sql("shop", "INSERT INTO ignored VALUES (1)")?;
    pg.sql("shop", "DELETE FROM items WHERE id = 2")?;
    pg.sql("shop", "BEGIN; INSERT INTO items VALUES (3, 'fig', 9); UPDATE items SET name = 'figs' WHERE id = 3; COMMIT")?;
    let events = read_events(server.bootstrap(), "shop.public.items", 7).with_context(|| w.log())?;
    let got: Vec<_> = events.iter().map(summary).collect();
    let row = |id: i64, name: &str, qty: i64| json!({"id": id, "name": name, "qty": qty});
    let want = vec![
        ("r".to_string(), json!(1), Value::Null, row(1, "apple", 5)),
        ("c".into(), json!(2), Value::Null, row(2, "pear", 1)),
        ("u".into(), json!(1), row(1, "apple", 5), row(1, "apple", 4)),
        ("d".into(), json!(2), row(2, "pear", 1), Value::Null),
        ("tombstone".into(), json!(2), Value::Null, Value::Null),
        ("c".into(), json!(3), Value::Null, row(3, "fig", 9)),
        ("u".into(), json!(3), row(3, "fig", 9), row(3, "figs", 9)),
    ];
    ensure!(got == want, "events:\n{got:#?}\nwant:\n{want:#?}");
    // The two changes of one transaction carry its id; other transactions have others.
    ensure!(events[5].1["source"]["txId"] == events[6].1["source"]["txId"] && events[4].1.is_null(), "transaction ids: {events:?}");
    ensure!(events[2].1["source"]["txId"] != events[5].1["source"]["txId"], "transaction ids: {events:?}");
    // A clean stop stores the offset; a change made while the worker is down arrives after
    // the restart, and nothing before it arrives again.
    w.stop()?;
    pg.sql("shop", "INSERT INTO items VALUES (4, 'kiwi', 2)")?;
    let w = ConnectWorker::start(dir, "cdc-2.log", &["worker.properties", "cdc.json"])?;
    let events = read_events(server.bootstrap(), "shop.public.items", 8).with_context(|| w.log())?;
    ensure!(summary(&events[7]) == ("c".into(), json!(4), Value::Null, row(4, "kiwi", 2)), "after the restart: {:?}", events[7]);
    pg.sql("shop", "DELETE FROM items WHERE id = 4")?;
    let events = read_events(server.bootstrap(), "shop.public.items", 10).with_context(|| w.log())?;
    let tail: Vec<_> = events[8..].iter().map(summary).collect();
    ensure!(tail == vec![("d".into(), json!(4), row(4, "kiwi", 2), Value::Null), ("tombstone".into(), json!(4), Value::Null, Value::Null)], "tail: {tail:?}");
    w.stop()?;
    // Nothing was written twice: the topic holds exactly those ten records.
    let all = run_samsa(
        &["consume", "shop.public.items", "--bootstrap", server.bootstrap(), "--from-beginning", "--timeout-ms", "3000", "--format", "{offset}"],
        Duration::from_secs(60),
    )?
    .ok()?;
    ensure!(all.lines().count() == 10, "the topic holds:\n{all}");
    Ok(())
}

#[test]
fn a_record_the_postgres_sink_cannot_write_goes_to_the_dead_letter_topic_and_the_sink_goes_on() -> Result<()> {
    let pg = PgServer::start()?;
    pg.create_db("shop")?;
    pg.sql("shop", "CREATE TABLE stock (id BIGINT PRIMARY KEY, qty BIGINT CHECK (qty >= 0))")?;
    let server = SamsaServer::start()?;
    let dir = tempfile::tempdir()?;
    let dir = dir.path();
    worker_config(dir, server.bootstrap(), true)?;
    fs::write(
        dir.join("sink.properties"),
        format!(
            "name=stock-sink\nconnector.class=JdbcSink\nconnection.url={}\ntopics=stock\ninsert.mode=upsert\npk.mode=record_value\npk.fields=id\n\
             errors.tolerance=all\nerrors.log.enable=true\nerrors.deadletterqueue.topic.name=stock-dlq\nerrors.deadletterqueue.context.headers.enable=true\n",
            pg.jdbc_url("shop")
        ),
    )?;
    // A negative quantity breaks the CHECK; text is not a number; a plain string is not a row.
    produce_lines(server.bootstrap(), "stock", &[r#"{"id": 1, "qty": 5}"#, r#"{"id": 2, "qty": -1}"#, r#"{"id": 3, "qty": "many"}"#, r#""plain""#, r#"{"id": 4, "qty": 7}"#])?;
    let w = ConnectWorker::start(dir, "sink.log", &["worker.properties", "sink.properties"])?;
    let rows = || pg.sql("shop", "SELECT string_agg(id || '=' || qty, ',' ORDER BY id) FROM stock");
    wait_until(Duration::from_secs(60), "the good rows", || Ok(rows()? == "1=5,4=7")).with_context(|| format!("{:?}; log:\n{}", rows(), w.log()))?;
    let dlq = run_samsa(
        &["consume", "stock-dlq", "--bootstrap", server.bootstrap(), "--from-beginning", "--max-messages", "3", "--format", "{value}|{headers}"],
        Duration::from_secs(30),
    )?
    .ok()?;
    let dead: Vec<&str> = dlq.lines().collect();
    ensure!(dead.len() == 3, "dead letters:\n{dlq}");
    for (row, (offset, why)) in dead.iter().zip([(1, "violates check constraint"), (2, "invalid input syntax"), (3, "the value is not a struct")]) {
        for want in [format!("__connect.errors.offset={offset}"), "__connect.errors.stage=TASK_PUT".into(), "__connect.errors.connector.name=stock-sink".into(), why.to_string()] {
            ensure!(row.contains(&want), "{row} lacks {want}");
        }
    }
    ensure!(dead[0].starts_with(r#"{"id": 2, "qty": -1}|"#), "the record is kept as it was: {}", dead[0]);
    // It goes on: a later record is written, and an update of a key upserts it.
    produce_lines(server.bootstrap(), "stock", &[r#"{"id": 5, "qty": 1}"#, r#"{"id": 1, "qty": 6}"#])?;
    wait_until(Duration::from_secs(60), "the later rows", || Ok(rows()? == "1=6,4=7,5=1")).with_context(|| format!("{:?}; log:\n{}", rows(), w.log()))?;
    w.stop()?;
    Ok(())
}
