//! `samsa connect standalone` with Kafka's quickstart file connectors
//! (`connect/quickstart/`, the same settings as Kafka's `config/connect-file-*.properties`):
//! a file goes through a topic into another file, byte for byte; the source tails its
//! file; a restart resumes from the stored offsets and copies nothing twice. A bad
//! connector config starts nothing and names each bad setting.

use std::fs;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use samsa_tests::{produce_lines as produce, run_samsa, wait_until, workspace_root, ConnectWorker, SamsaServer};

/// String keys, schemaless JSON values.
const STRING_KEYS_JSON_VALUES: &str =
    "key.converter=org.apache.kafka.connect.storage.StringConverter\nvalue.converter=org.apache.kafka.connect.json.JsonConverter\nvalue.converter.schemas.enable=false\n";

/// Writes `worker.properties`: the brokers, `converters` (properties lines), offsets in
/// `connect.offsets` flushed every 500 ms.
fn write_worker(dir: &Path, bootstrap: &str, converters: &str) -> Result<()> {
    let offsets = dir.join("connect.offsets");
    fs::write(
        dir.join("worker.properties"),
        format!("bootstrap.servers={bootstrap}\n{converters}offset.storage.file.filename={}\noffset.flush.interval.ms=500\n", offsets.display()),
    )?;
    Ok(())
}

fn wait_for_copy(dir: &Path, want: &[u8]) -> Result<()> {
    wait_until(Duration::from_secs(60), "test.sink.txt to equal test.txt", || Ok(fs::read(dir.join("test.sink.txt")).unwrap_or_default() == want)).with_context(|| {
        let got = fs::read(dir.join("test.sink.txt")).unwrap_or_default();
        format!("sink holds {} of {} bytes; worker log:\n{}", got.len(), want.len(), fs::read_to_string(dir.join("worker.log")).unwrap_or_default())
    })
}

#[test]
fn kafka_quickstart_file_connectors_copy_a_file_byte_for_byte_and_resume_after_a_restart() -> Result<()> {
    let server = SamsaServer::start()?;
    let dir = tempfile::tempdir()?;
    let dir = dir.path();
    let quickstart = workspace_root().join("connect/quickstart");
    for f in ["connect-file-source.properties", "connect-file-sink.properties"] {
        fs::copy(quickstart.join(f), dir.join(f))?;
    }
    // The quickstart worker, pointed at this server, its offsets file in the temp dir.
    let worker = fs::read_to_string(quickstart.join("connect-standalone.properties"))?
        .replace("localhost:9092", server.bootstrap())
        .replace("/tmp/connect.offsets", &dir.join("connect.offsets").display().to_string())
        .replace("offset.flush.interval.ms=10000", "offset.flush.interval.ms=500");
    fs::write(dir.join("worker.properties"), worker)?;

    // Text of every kind: empty lines, UTF-8, JSON-looking lines, surrounding spaces.
    let mut input = String::new();
    for i in 0..2000 {
        let line = match i % 5 {
            0 => String::new(),
            1 => format!("héllo wörld ✓ {i}"),
            2 => format!(r#"{{"json": "looking", "n": {i}}}"#),
            3 => format!("  spaced {i}  "),
            _ => format!("line {i}"),
        };
        input.push_str(&line);
        input.push('\n');
    }
    fs::write(dir.join("test.txt"), &input)?;
    let w = ConnectWorker::start(dir, "worker.log", &["worker.properties", "connect-file-source.properties", "connect-file-sink.properties"])?;
    wait_for_copy(dir, input.as_bytes())?;

    // The source tails its file.
    fs::OpenOptions::new().append(true).open(dir.join("test.txt"))?.write_all(b"appended 1\nappended 2\n")?;
    input.push_str("appended 1\nappended 2\n");
    wait_for_copy(dir, input.as_bytes())?;

    // The topic holds Kafka's JSON converter envelope.
    let out = run_samsa(&["consume", "connect-test", "--bootstrap", server.bootstrap(), "--from-beginning", "--max-messages", "2"], Duration::from_secs(30))?.ok()?;
    let second = out.lines().nth(1).context("two records")?;
    ensure!(second.contains(r#""payload":"héllo wörld ✓ 1""#) && second.contains(r#""type":"string""#), "record 2 is {second}");

    // A clean stop saves the offsets; a restart copies a new line, and nothing twice: a
    // line read again would come before it in the topic, so the files could not be equal.
    w.stop()?;
    ensure!(fs::read_to_string(dir.join("connect.offsets"))?.contains("position"), "no source offset saved");
    fs::OpenOptions::new().append(true).open(dir.join("test.txt"))?.write_all(b"after the restart\n")?;
    input.push_str("after the restart\n");
    let w = ConnectWorker::start(dir, "worker.log", &["worker.properties", "connect-file-source.properties", "connect-file-sink.properties"])?;
    wait_for_copy(dir, input.as_bytes())?;
    w.stop()?;
    Ok(())
}

#[test]
fn a_bad_connector_config_starts_nothing_and_names_each_bad_setting() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let dir = dir.path();
    fs::write(dir.join("worker.properties"), format!("bootstrap.servers=127.0.0.1:1\noffset.storage.file.filename={}\n", dir.join("o").display()))?;
    fs::write(dir.join("bad-source.properties"), "name=s\nconnector.class=FileStreamSource\ntasks.max=zero\nbatch.size=lots\n")?;
    fs::write(dir.join("bad-sink.json"), r#"{"name": "k", "config": {"connector.class": "org.example.NoSuchSink"}}"#)?;
    let w = dir.join("worker.properties").display().to_string();
    let (s, k) = (dir.join("bad-source.properties").display().to_string(), dir.join("bad-sink.json").display().to_string());
    let run = run_samsa(&["connect", "standalone", &w, &s, &k], Duration::from_secs(30))?;
    ensure!(run.code == Some(1), "want exit 1: {run:?}");
    for want in [
        "nothing started",
        "bad-source.properties: topic: missing required setting topic",
        "bad-source.properties: tasks.max:",
        "bad-source.properties: batch.size:",
        "bad-sink.json: connector.class: no connector class org.example.NoSuchSink",
    ] {
        ensure!(run.stderr.contains(want), "stderr lacks {want:?}:\n{}", run.stderr);
    }
    ensure!(!dir.join("o").exists(), "an offsets file was started");
    // The worker config is checked too.
    fs::write(dir.join("worker.properties"), "key.converter=json\n")?;
    let err = run_samsa(&["connect", "standalone", &w, &s], Duration::from_secs(30))?.failed()?;
    ensure!(err.contains("bootstrap.servers"), "{err}");
    Ok(())
}

#[test]
fn a_record_the_sink_cannot_read_goes_to_the_dead_letter_topic_and_the_connector_goes_on() -> Result<()> {
    let server = SamsaServer::start()?;
    let dir = tempfile::tempdir()?;
    let dir = dir.path();
    write_worker(dir, server.bootstrap(), STRING_KEYS_JSON_VALUES)?;
    let sink = |name: &str, file: &str, tolerance: &str| {
        format!("name={name}\nconnector.class=FileStreamSink\ntopics=events\nfile={file}\nerrors.tolerance={tolerance}\nerrors.log.enable=true\nerrors.deadletterqueue.topic.name=events-dlq\nerrors.deadletterqueue.context.headers.enable=true\n")
    };
    fs::write(dir.join("lenient.properties"), sink("lenient", "out.txt", "all"))?;
    produce(server.bootstrap(), "events", &[r#""one""#, "not json", r#"{"a": 1}"#, "{bad"])?;

    let run = |connector: &str| ConnectWorker::start(dir, &format!("{connector}.log"), &["worker.properties", connector]);
    let w = run("lenient.properties")?;
    let out_is = |want: &str| -> Result<()> {
        wait_until(Duration::from_secs(60), &format!("out.txt to be {want:?}"), || Ok(fs::read_to_string(dir.join("out.txt")).unwrap_or_default() == want)).with_context(|| {
            format!(
                "out.txt: {:?}; log:\n{}",
                fs::read_to_string(dir.join("out.txt")).unwrap_or_default(),
                fs::read_to_string(dir.join("lenient.properties.log")).unwrap_or_default()
            )
        })
    };
    out_is("one\nStruct{a=1}\n")?;
    // The two bad records are in the dead-letter topic as they were, with Kafka's headers.
    let dlq = run_samsa(
        &["consume", "events-dlq", "--bootstrap", server.bootstrap(), "--from-beginning", "--max-messages", "2", "--format", "{value}|{headers}"],
        Duration::from_secs(30),
    )?
    .ok()?;
    let rows: Vec<&str> = dlq.lines().collect();
    ensure!(rows.len() == 2 && rows[0].starts_with("not json|") && rows[1].starts_with("{bad|"), "dead letters:\n{dlq}");
    for (row, offset) in rows.iter().zip([1, 3]) {
        for want in [
            "__connect.errors.topic=events".to_string(),
            format!("__connect.errors.offset={offset}"),
            "__connect.errors.connector.name=lenient".into(),
            "__connect.errors.stage=VALUE_CONVERTER".into(),
            "__connect.errors.exception.class.name=org.apache.kafka.connect.errors.DataException".into(),
        ] {
            ensure!(row.contains(&want), "{row} lacks {want}");
        }
    }
    ensure!(fs::read_to_string(dir.join("lenient.properties.log"))?.contains("skipped events-0 at offset 1"), "errors.log.enable logs the skipped record");
    // It goes on.
    produce(server.bootstrap(), "events", &[r#""two""#])?;
    out_is("one\nStruct{a=1}\ntwo\n")?;
    w.stop()?;

    // With errors.tolerance=none the first bad record stops the task, before anything of
    // its batch is written, and the worker exits 1 naming the record.
    fs::write(dir.join("strict.properties"), sink("strict", "strict.txt", "none"))?;
    let status = run("strict.properties")?.wait_exit(Duration::from_secs(60))?;
    let log = fs::read_to_string(dir.join("strict.properties.log"))?;
    ensure!(status.code() == Some(1), "want exit 1, got {status}; log:\n{log}");
    ensure!(log.contains("events-0 at offset 1 failed in stage VALUE_CONVERTER") && log.contains("errors.tolerance=all skips"), "log:\n{log}");
    ensure!(fs::read_to_string(dir.join("strict.txt")).unwrap_or_default().is_empty(), "the strict sink wrote records");
    Ok(())
}

#[test]
fn transforms_and_predicates_reshape_route_and_filter_records() -> Result<()> {
    let server = SamsaServer::start()?;
    let dir = tempfile::tempdir()?;
    let dir = dir.path();
    write_worker(dir, server.bootstrap(), STRING_KEYS_JSON_VALUES)?;
    fs::write(dir.join("in.txt"), "a\nb\n")?;
    // The source wraps each line in a struct, adds a field, and routes lines-raw to lines-clean.
    fs::write(
        dir.join("source.properties"),
        "name=src\nconnector.class=FileStreamSource\nfile=in.txt\ntopic=lines-raw\ntransforms=hoist,origin,route\n\
         transforms.hoist.type=org.apache.kafka.connect.transforms.HoistField$Value\ntransforms.hoist.field=line\n\
         transforms.origin.type=org.apache.kafka.connect.transforms.InsertField$Value\ntransforms.origin.static.field=origin\ntransforms.origin.static.value=file\n\
         transforms.route.type=org.apache.kafka.connect.transforms.RegexRouter\ntransforms.route.regex=(.*)-raw\ntransforms.route.replacement=$1-clean\n",
    )?;
    // The sink drops records with a `skip` header and writes only the line field.
    fs::write(
        dir.join("sink.properties"),
        "name=snk\nconnector.class=FileStreamSink\nfile=out.txt\ntopics=lines-clean\ntransforms=skip,line\n\
         transforms.skip.type=org.apache.kafka.connect.transforms.Filter\ntransforms.skip.predicate=marked\n\
         transforms.line.type=org.apache.kafka.connect.transforms.ExtractField$Value\ntransforms.line.field=line\n\
         predicates=marked\npredicates.marked.type=org.apache.kafka.connect.transforms.predicates.HasHeaderKey\npredicates.marked.name=skip\n",
    )?;
    let w = ConnectWorker::start(dir, "worker.log", &["worker.properties", "source.properties", "sink.properties"])?;
    let out_is = |want: &str| -> Result<()> {
        wait_until(Duration::from_secs(60), &format!("out.txt to be {want:?}"), || Ok(fs::read_to_string(dir.join("out.txt")).unwrap_or_default() == want))
            .with_context(|| format!("out.txt: {:?}; log:\n{}", fs::read_to_string(dir.join("out.txt")), w.log()))
    };
    out_is("a\nb\n")?;
    let routed = run_samsa(&["consume", "lines-clean", "--bootstrap", server.bootstrap(), "--from-beginning", "--max-messages", "2"], Duration::from_secs(30))?.ok()?;
    ensure!(routed == "{\"line\":\"a\",\"origin\":\"file\"}\n{\"line\":\"b\",\"origin\":\"file\"}\n", "lines-clean holds {routed:?}");
    // A record with the header is filtered out; the next one is written.
    let marked = std::process::Command::new(samsa_tests::samsa_bin()?)
        .args(["produce", "lines-clean", "--bootstrap", server.bootstrap(), "--header", "skip=1"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write as _;
            c.stdin.take().expect("stdin").write_all(b"{\"line\": \"hidden\"}\n")?;
            c.wait()
        })?;
    ensure!(marked.success(), "samsa produce failed");
    produce(server.bootstrap(), "lines-clean", &[r#"{"line": "c"}"#])?;
    out_is("a\nb\nc\n")?;
    w.stop()?;
    Ok(())
}

#[test]
fn the_directory_source_streams_csv_files_and_picks_up_new_ones() -> Result<()> {
    let server = SamsaServer::start()?;
    let dir = tempfile::tempdir()?;
    let dir = dir.path();
    let input = dir.join("incoming");
    fs::create_dir(&input)?;
    fs::write(input.join("a.csv"), "id,name,amount\n1,ann,2.5\n2,\"bob, jr\",3\n")?;
    fs::write(input.join("skip.txt"), "not,csv\n")?;
    write_worker(dir, server.bootstrap(), "key.converter=org.apache.kafka.connect.json.JsonConverter\nkey.converter.schemas.enable=false\nvalue.converter=org.apache.kafka.connect.json.JsonConverter\nvalue.converter.schemas.enable=false\n")?;
    fs::write(
        dir.join("csv.properties"),
        format!(
            "name=csv\nconnector.class=SpoolDirCsvSourceConnector\ninput.path={}\ninput.file.pattern=.*\\\\.csv\ntopic=people\nkey.fields=id\npoll.interval.ms=200\n",
            input.display()
        ),
    )?;
    let w = ConnectWorker::start(dir, "worker.log", &["worker.properties", "csv.properties"])?;
    let read = |n: usize| -> Result<String> {
        run_samsa(
            &["consume", "people", "--bootstrap", server.bootstrap(), "--from-beginning", "--max-messages", &n.to_string(), "--format", "{key} {value}"],
            Duration::from_secs(60),
        )?
        .ok()
    };
    wait_until(Duration::from_secs(30), "the people topic", || {
        Ok(run_samsa(&["topic", "describe", "people", "--bootstrap", server.bootstrap()], Duration::from_secs(30))?.code == Some(0))
    })
    .with_context(|| w.log())?;
    let got = read(2)?;
    ensure!(got == "{\"id\":1} {\"amount\":2.5,\"id\":1,\"name\":\"ann\"}\n{\"id\":2} {\"amount\":3,\"id\":2,\"name\":\"bob, jr\"}\n", "people: {got:?}; log:\n{}", w.log());
    // A new file is picked up.
    fs::write(input.join("b.csv"), "id,name,amount\n3,cy,0\n")?;
    let got = read(3)?;
    ensure!(got.ends_with("{\"id\":3} {\"amount\":0,\"id\":3,\"name\":\"cy\"}\n"), "people: {got:?}");
    w.stop()?;
    Ok(())
}

#[test]
fn a_standalone_worker_keeps_offsets_in_a_topic_and_runs_an_exactly_once_source() -> Result<()> {
    let server = SamsaServer::start()?;
    let dir = tempfile::tempdir()?;
    let dir = dir.path();
    fs::write(
        dir.join("worker.properties"),
        format!(
            "bootstrap.servers={}\nvalue.converter=org.apache.kafka.connect.storage.StringConverter\noffset.storage.topic=my-connect-offsets\noffset.flush.interval.ms=500\n",
            server.bootstrap()
        ),
    )?;
    fs::write(dir.join("in.txt"), "x1\nx2\n")?;
    fs::write(dir.join("source.properties"), "name=eos-file\nconnector.class=FileStreamSource\nfile=in.txt\ntopic=eos-file\nexactly.once.source.support=enabled\n")?;
    run_samsa(&["topic", "create", "eos-file", "--bootstrap", server.bootstrap()], Duration::from_secs(30))?.ok()?;
    let committed = || -> Result<String> {
        run_samsa(
            &["consume", "eos-file", "--bootstrap", server.bootstrap(), "--from-beginning", "--timeout-ms", "1500", "-X", "isolation.level=read_committed"],
            Duration::from_secs(60),
        )?
        .ok()
    };
    let w = ConnectWorker::start(dir, "worker-1.log", &["worker.properties", "source.properties"])?;
    wait_until(Duration::from_secs(60), "two committed lines", || Ok(committed()? == "x1\nx2\n")).with_context(|| w.log())?;
    w.stop()?;
    // The offset is a record of the offsets topic, in Kafka Connect's key format.
    let stored = run_samsa(
        &["consume", "my-connect-offsets", "--bootstrap", server.bootstrap(), "--from-beginning", "--max-messages", "1", "--format", "{key} {value}"],
        Duration::from_secs(30),
    )?
    .ok()?;
    ensure!(stored.starts_with("[\"eos-file\",{\"filename\":\"in.txt\"}] {\"position\":6}"), "offsets topic: {stored}");
    // A restart resumes there: a new line arrives once, the old ones are not repeated.
    fs::OpenOptions::new().append(true).open(dir.join("in.txt"))?.write_all(b"x3\n")?;
    let w = ConnectWorker::start(dir, "worker-2.log", &["worker.properties", "source.properties"])?;
    wait_until(Duration::from_secs(60), "three committed lines", || Ok(committed()?.lines().count() >= 3)).with_context(|| w.log())?;
    ensure!(committed()? == "x1\nx2\nx3\n", "committed: {:?}", committed());
    w.stop()?;
    Ok(())
}
