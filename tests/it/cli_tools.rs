//! `samsa topic` and `samsa group` against a running broker: each command's output is
//! checked, and group offsets are cross-checked with confluent-kafka
//! (`tests/clients/cli_group.py`).

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use samsa_tests::{python, run_python, run_samsa, wait_until, CliRun, SamsaServer};

/// How long one CLI invocation may take.
const CLI_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs `samsa ARGS --bootstrap BOOTSTRAP`, bounded by [`CLI_TIMEOUT`].
fn samsa(bootstrap: &str, args: &[&str]) -> Result<CliRun> {
    let mut all = args.to_vec();
    all.extend(["--bootstrap", bootstrap]);
    run_samsa(&all, CLI_TIMEOUT)
}

/// Rows of the table whose header line starts with `first_column`, split on whitespace.
fn table(stdout: &str, first_column: &str) -> Result<Vec<Vec<String>>> {
    let mut lines = stdout.lines().skip_while(|l| !l.starts_with(first_column));
    ensure!(lines.next().is_some(), "no table starting with {first_column} in:\n{stdout}");
    Ok(lines.take_while(|l| !l.trim().is_empty() && !l.starts_with("dry run") && !l.starts_with("reset ")).map(|l| l.split_whitespace().map(String::from).collect()).collect())
}

/// One `group describe` row.
#[derive(Debug)]
struct GroupRow {
    /// (topic, partition, current offset, log-end offset, lag), as printed.
    offsets: Offsets,
    consumer_id: String,
    client_id: String,
}

/// (topic, partition, current offset, log-end offset, lag) of a `group describe` row.
type Offsets = (String, i32, String, String, String);

fn group_rows(stdout: &str) -> Result<Vec<GroupRow>> {
    table(stdout, "TOPIC")?
        .into_iter()
        .map(|r| {
            ensure!(r.len() == 8, "row {r:?} does not have 8 columns");
            Ok(GroupRow {
                offsets: (r[0].clone(), r[1].parse()?, r[2].clone(), r[3].clone(), r[4].clone()),
                consumer_id: r[5].clone(),
                client_id: r[7].clone(),
            })
        })
        .collect()
}

fn offsets(stdout: &str) -> Result<Vec<Offsets>> {
    Ok(group_rows(stdout)?.into_iter().map(|r| r.offsets).collect())
}

fn row(topic: &str, p: i32, current: i64, end: i64, lag: i64) -> Offsets {
    (topic.to_string(), p, current.to_string(), end.to_string(), lag.to_string())
}

#[test]
fn topic_create_list_describe_alter_delete() -> Result<()> {
    let mut server = SamsaServer::start()?;
    let b = server.bootstrap().to_string();
    let b = b.as_str();

    let out = samsa(b, &["topic", "create", "orders", "--partitions", "3", "--config", "retention.ms=3600000"])?.ok()?;
    ensure!(out.trim() == "created topic `orders` with 3 partitions", "{out}");
    let err = samsa(b, &["topic", "create", "orders"])?.failed()?;
    ensure!(err.contains("create topic `orders`") && err.contains("TopicAlreadyExists"), "{err}");
    let err = samsa(b, &["topic", "create", "wide", "--replication-factor", "3"])?.failed()?;
    ensure!(err.contains("create topic `wide`") && err.contains("replication factor 3"), "{err}");

    let out = samsa(b, &["topic", "list"])?.ok()?;
    ensure!(out.lines().collect::<Vec<_>>() == ["orders"], "{out}");
    // __consumer_offsets is created when the first group needs a coordinator, as in Kafka.
    let out = samsa(b, &["topic", "list", "--internal"])?.ok()?;
    ensure!(out.lines().collect::<Vec<_>>() == ["orders"], "{out}");

    let out = samsa(b, &["topic", "describe", "orders"])?.ok()?;
    ensure!(out.lines().next().is_some_and(|l| l.starts_with("topic orders ") && l.contains("partitions 3  replication-factor 1")), "{out}");
    ensure!(out.lines().any(|l| l == "configs: retention.ms=3600000"), "only the override is listed:\n{out}");
    let rows = table(&out, "PARTITION")?;
    ensure!(rows.iter().map(|r| r[0].as_str()).collect::<Vec<_>>() == ["0", "1", "2"], "{out}");
    for r in &rows {
        ensure!(r.len() == 4 && r[1] != "none" && r[2] == r[1] && r[3] == r[1], "leader, replicas and ISR are this broker: {r:?}");
    }

    let out = samsa(b, &["topic", "alter", "orders", "--partitions", "5", "--config", "cleanup.policy=compact", "--delete-config", "retention.ms"])?.ok()?;
    ensure!(out.contains("topic `orders` now has 5 partitions"), "{out}");
    let out = samsa(b, &["topic", "describe", "orders"])?.ok()?;
    ensure!(table(&out, "PARTITION")?.len() == 5, "{out}");
    ensure!(out.lines().any(|l| l == "configs: cleanup.policy=compact"), "retention.ms override removed, compact set:\n{out}");
    let err = samsa(b, &["topic", "alter", "orders", "--partitions", "2"])?.failed()?;
    ensure!(err.contains("grow topic `orders` to 2 partitions") && err.contains("InvalidPartitions"), "{err}");
    let err = samsa(b, &["topic", "alter", "orders", "--config", "retention.mss=1"])?.failed()?;
    ensure!(err.contains("alter configs of topic `orders`") && err.contains("retention.mss"), "{err}");

    let out = samsa(b, &["topic", "delete", "orders"])?.ok()?;
    ensure!(out.trim() == "deleted topic `orders`", "{out}");
    ensure!(samsa(b, &["topic", "list"])?.ok()?.trim().is_empty());
    let err = samsa(b, &["topic", "delete", "orders"])?.failed()?;
    ensure!(err.starts_with("topic `orders` does not exist"), "{err}");
    server.terminate()
}

#[test]
fn describe_unknown_topic_is_a_clear_error() -> Result<()> {
    let mut server = SamsaServer::start()?;
    let b = server.bootstrap().to_string();
    let b = b.as_str();
    samsa(b, &["topic", "create", "known"])?.ok()?;
    let err = samsa(b, &["topic", "describe", "known", "nope"])?.failed()?;
    ensure!(
        err == "topic `nope` does not exist; create it with `samsa topic create nope` or enable auto.create.topics.enable on the broker",
        "{err}"
    );
    let err = samsa(b, &["group", "describe", "nobody"])?.failed()?;
    ensure!(err == "group `nobody` does not exist", "{err}");
    server.terminate()
}

#[test]
fn group_describe_shows_lag_and_reset_offsets_moves_commits() -> Result<()> {
    let mut server = SamsaServer::start()?;
    let b = server.bootstrap().to_string();
    let b = b.as_str();
    samsa(b, &["topic", "create", "lag", "--partitions", "2"])?.ok()?;
    ensure!(run_python("cli_group.py", &["produce", b, "lag", "0:10,1:7"])?.result_value::<u32>("produced")? == 17);
    run_python("cli_group.py", &["commit", b, "lag", "g1", "0:4,1:7"])?;

    let out = samsa(b, &["group", "list"])?.ok()?;
    ensure!(table(&out, "GROUP")? == [vec!["g1", "Empty", "consumer"]], "{out}");
    let out = samsa(b, &["group", "describe", "g1"])?.ok()?;
    ensure!(out.starts_with("group g1  state Empty"), "{out}");
    ensure!(offsets(&out)? == [row("lag", 0, 4, 10, 6), row("lag", 1, 7, 7, 0)], "{out}");
    ensure!(group_rows(&out)?.iter().all(|r| r.consumer_id == "-" && r.client_id == "-"), "no owners in an empty group:\n{out}");

    // Without --execute: the plan, and nothing changes.
    let out = samsa(b, &["group", "reset-offsets", "g1", "--topic", "lag", "--to-earliest"])?.ok()?;
    ensure!(table(&out, "TOPIC")? == [vec!["lag", "0", "4", "0"], vec!["lag", "1", "7", "0"]], "{out}");
    ensure!(out.contains("dry run: nothing changed"), "{out}");
    let out = samsa(b, &["group", "describe", "g1"])?.ok()?;
    ensure!(offsets(&out)? == [row("lag", 0, 4, 10, 6), row("lag", 1, 7, 7, 0)], "dry run changed offsets:\n{out}");

    let out = samsa(b, &["group", "reset-offsets", "g1", "--topic", "lag", "--to-earliest", "--execute"])?.ok()?;
    ensure!(out.contains("reset offsets of group `g1` on 2 partitions"), "{out}");
    let out = samsa(b, &["group", "describe", "g1"])?.ok()?;
    ensure!(offsets(&out)? == [row("lag", 0, 0, 10, 10), row("lag", 1, 0, 7, 7)], "{out}");
    let seen = run_python("cli_group.py", &["committed", b, "lag", "g1", "2"])?;
    ensure!(seen.result_value::<String>("committed")? == "0:0,1:0", "confluent-kafka sees the reset");

    // --to-offset is clamped to each partition's stored range.
    samsa(b, &["group", "reset-offsets", "g1", "--topic", "lag", "--to-offset", "8", "--execute"])?.ok()?;
    let out = samsa(b, &["group", "describe", "g1"])?.ok()?;
    ensure!(offsets(&out)? == [row("lag", 0, 8, 10, 2), row("lag", 1, 7, 7, 0)], "{out}");
    let seen = run_python("cli_group.py", &["committed", b, "lag", "g1", "2"])?;
    ensure!(seen.result_value::<String>("committed")? == "0:8,1:7");

    let out = samsa(b, &["group", "delete", "g1"])?.ok()?;
    ensure!(out.trim() == "deleted group `g1`", "{out}");
    ensure!(table(&samsa(b, &["group", "list"])?.ok()?, "GROUP")?.is_empty());
    server.terminate()
}

#[test]
fn group_with_a_member_shows_owners_and_refuses_reset() -> Result<()> {
    let mut server = SamsaServer::start()?;
    let b = server.bootstrap().to_string();
    let b = b.as_str();
    samsa(b, &["topic", "create", "owned", "--partitions", "2"])?.ok()?;
    run_python("cli_group.py", &["produce", b, "owned", "0:3,1:5"])?;
    run_python("cli_group.py", &["commit", b, "owned", "g2", "0:1,1:2"])?;
    let dir = tempfile::tempdir()?;
    let stop = dir.path().join("stop");
    let member = python("cli_group.py")?.args(["member", b, "owned", "g2", "2", stop.to_str().unwrap()]).spawn()?;

    let mut out = String::new();
    wait_until(Duration::from_secs(60), "g2 to be Stable with one member", || {
        out = samsa(b, &["group", "describe", "g2"])?.ok()?;
        Ok(out.starts_with("group g2  state Stable  protocol range (consumer)  members 1"))
    })?;
    let rows = group_rows(&out)?;
    ensure!(rows.iter().map(|r| r.offsets.clone()).collect::<Vec<_>>() == [row("owned", 0, 1, 3, 2), row("owned", 1, 2, 5, 3)], "{out}");
    for r in &rows {
        ensure!(r.consumer_id.starts_with("cli-member-") && r.client_id == "cli-member", "owner shown: {out}");
    }

    let err = samsa(b, &["group", "reset-offsets", "g2", "--topic", "owned", "--to-latest", "--execute"])?.failed()?;
    ensure!(err.starts_with("group `g2` has 1 active member (state Stable); stop its consumers first"), "{err}");
    let err = samsa(b, &["group", "delete", "g2"])?.failed()?;
    ensure!(err.contains("delete group `g2`") && err.contains("NonEmptyGroup"), "{err}");
    let seen = run_python("cli_group.py", &["committed", b, "owned", "g2", "2"])?;
    ensure!(seen.result_value::<String>("committed")? == "0:1,1:2", "refused commands changed nothing");

    std::fs::write(&stop, b"")?;
    member.wait(Duration::from_secs(60))?;
    wait_until(Duration::from_secs(30), "g2 to be Empty after its member left", || {
        Ok(samsa(b, &["group", "describe", "g2"])?.ok()?.starts_with("group g2  state Empty"))
    })?;
    samsa(b, &["group", "reset-offsets", "g2", "--topic", "owned", "--to-latest", "--execute"])?.ok()?;
    let out = samsa(b, &["group", "describe", "g2"])?.ok()?;
    ensure!(offsets(&out)? == [row("owned", 0, 3, 3, 0), row("owned", 1, 5, 5, 0)], "{out}");
    server.terminate()
}

#[test]
fn closed_port_is_a_plain_error() -> Result<()> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let addr = format!("127.0.0.1:{port}");
    for args in [&["topic", "list"][..], &["group", "list"], &["topic", "create", "x"], &["group", "describe", "g"]] {
        let err = samsa(&addr, args)?.failed()?;
        ensure!(err == format!("cannot reach a broker at {addr}: connection refused. Is `samsa server` running?"), "{args:?}: {err}");
    }
    Ok(())
}

/// The admin calls the CLI tools do not make, through `samsa_client::Admin` directly.
#[tokio::test(flavor = "multi_thread")]
async fn admin_describes_cluster_broker_configs_and_offsets_by_time() -> Result<()> {
    use samsa_client::admin::{Admin, ConfigResource, ConfigSource, NewTopic, OffsetSpec, TopicPartition};

    let mut server = SamsaServer::start()?;
    let b = server.bootstrap().to_string();
    let admin = Admin::connect(&b).await?;

    let cluster = admin.describe_cluster().await?;
    ensure!(cluster.brokers.len() == 1 && cluster.brokers[0].port == i32::from(server.port()), "{cluster:?}");
    let node = cluster.brokers[0].node_id;
    ensure!(cluster.controller == Some(node) && cluster.cluster_id.is_some(), "{cluster:?}");

    let configs = admin.describe_configs(&ConfigResource::Broker(node)).await?;
    let partitions = configs.iter().find(|c| c.name == "num.partitions").context("num.partitions described")?;
    ensure!(partitions.value.as_deref() == Some("1") && partitions.source == ConfigSource::Default, "{partitions:?}");

    admin.create_topics(&[NewTopic::new("timed", 1, 1).config("message.timestamp.type", "CreateTime")]).await?;
    let topic_configs = admin.describe_configs(&ConfigResource::Topic("timed".into())).await?;
    let ts = topic_configs.iter().find(|c| c.name == "message.timestamp.type").context("override described")?;
    ensure!(ts.source == ConfigSource::DynamicTopic && !ts.is_default(), "{ts:?}");

    // confluent-kafka writes 4 records; ListOffsets by time finds the first at or after a
    // moment before them, and none after them.
    let before = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() as i64 - 1;
    tokio::task::spawn_blocking(move || run_python("cli_group.py", &["produce", b.as_str(), "timed", "0:4"])).await??;
    let tp = [TopicPartition::new("timed", 0)];
    let found = admin.list_offsets(&tp, OffsetSpec::Timestamp(before)).await?;
    ensure!(found[&tp[0]].0 == 0 && found[&tp[0]].1 >= before, "{found:?}");
    let later = admin.list_offsets(&tp, OffsetSpec::Timestamp(before + 3_600_000)).await?;
    ensure!(later[&tp[0]] == (-1, -1), "{later:?}");
    ensure!(admin.list_offsets(&tp, OffsetSpec::Latest).await?[&tp[0]].0 == 4);

    let err = admin.list_offsets(&[TopicPartition::new("timed", 9)], OffsetSpec::Latest).await.unwrap_err();
    ensure!(err.to_string().contains("`timed` partition 9"), "{err}");
    let dead = admin.describe_groups(&["nobody".to_string()]).await?;
    ensure!(dead[0].state == "Dead" && dead[0].members.is_empty(), "{dead:?}");
    server.terminate()
}

/// `samsa transactions list|describe|producers` while a confluent-kafka transaction is
/// open, and after it commits.
#[test]
fn transactions_list_describe_and_producers() -> Result<()> {
    let mut server = SamsaServer::start()?;
    let b = server.bootstrap().to_string();
    let work = tempfile::tempdir()?;
    let stop = work.path().join("stop");
    let mut holder = python("txn_hold_open.py")?.args([b.as_str(), "held", "cli-txn", stop.to_str().unwrap()]).spawn()?;
    wait_until(Duration::from_secs(30), "the transaction to open", || {
        ensure!(!holder.has_exited()?, "txn_hold_open.py exited early");
        Ok(samsa(&b, &["transactions", "list", "--state", "Ongoing"])?.ok()?.contains("cli-txn"))
    })?;
    let list = samsa(&b, &["transactions", "list"])?.ok()?;
    let row = list.lines().find(|l| l.starts_with("cli-txn")).with_context(|| format!("no cli-txn row in:\n{list}"))?;
    let cells: Vec<&str> = row.split_whitespace().collect();
    ensure!(cells.len() == 4 && cells[2] == "Ongoing", "unexpected row: {row}");
    let producer_id = cells[1].to_string();
    let describe = samsa(&b, &["transactions", "describe", "cli-txn"])?.ok()?;
    for want in ["Ongoing", "held-0, held-1", "60000 ms", producer_id.as_str()] {
        ensure!(describe.contains(want), "`{want}` missing from:\n{describe}");
    }
    // The open transaction holds partition 0's last stable offset at its first record.
    let producers = samsa(&b, &["transactions", "producers", "held", "0"])?.ok()?;
    let row = producers.lines().nth(1).with_context(|| format!("no producer row in:\n{producers}"))?;
    let cells: Vec<&str> = row.split_whitespace().collect();
    ensure!(cells.first() == Some(&producer_id.as_str()) && cells.last() == Some(&"0"), "unexpected producer row: {row}");
    std::fs::write(&stop, b"")?;
    ensure!(holder.wait(Duration::from_secs(60))?.result_value::<usize>("committed")? == 2);
    wait_until(Duration::from_secs(10), "CompleteCommit", || Ok(samsa(&b, &["transactions", "describe", "cli-txn"])?.ok()?.contains("CompleteCommit")))?;
    let producers = samsa(&b, &["transactions", "producers", "held", "0"])?.ok()?;
    ensure!(producers.lines().nth(1).is_some_and(|r| r.trim_end().ends_with('-')), "the transaction should no longer be open:\n{producers}");
    let missing = samsa(&b, &["transactions", "describe", "no-such-id"])?.failed()?;
    ensure!(missing.contains("no-such-id"), "{missing}");
    server.terminate()
}
