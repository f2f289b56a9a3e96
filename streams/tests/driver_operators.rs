//! TopologyTestDriver checks of every DSL operator not covered by `driver_windows.rs` and
//! `driver_joins.rs`: one focused test per operator, asserting the exact records (key,
//! value, timestamp, headers, order) and store contents.
//!
//! - KStream, stateless: `filter`, `filter_not`, `map` (and the repartition it causes
//!   before `group_by_key`), `map_values`, `flat_map`, `flat_map_values`, `select_key`,
//!   `peek`, `foreach`, `split` (with and without a default branch), `merge`.
//! - KStream, topics: `repartition`, `repartition_with`, `to` (raw bytes of the default
//!   serdes), `to_table`, `to_table_with`.
//! - Grouping: `group_by_key` with `count`, `reduce`, `aggregate`; `group_by`; the result
//!   timestamp and null keys of aggregations.
//! - KTable: `filter`, `filter_not`, `map_values`, `to_stream`, `to_changelog_stream`,
//!   `materialized`, and `GlobalKTable` contents.
//! - Processor API: `process` with headers and record metadata.
//! - Serdes: `Json<T>`, `json_serde!`, and the error of a record that does not deserialize.
//! - `Topology::describe`.
//!
//! A test marked `#[ignore = "BUG: ..."]` states Kafka's behaviour where Samsa differs.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use samsa_streams::{
    DefaultSerde, Error, Headers, Json, Materialized, Processor, ProcessorContext, Record, RecordMetadata, Result, StreamsBuilder, TopologyTestDriver,
};
use serde::{Deserialize, Serialize};

// ---- helpers -------------------------------------------------------------------------

fn s(v: &str) -> String {
    v.to_string()
}

/// A record without headers, as the driver reads it back.
fn rec<K, V>(key: K, value: V, timestamp: i64) -> Record<K, V> {
    Record::new(key, value, timestamp)
}

/// Pipes `(key, value, timestamp)` records into `topic`.
fn pipe<K: DefaultSerde + Clone, V: DefaultSerde + Clone>(d: &mut TopologyTestDriver, topic: &str, records: &[(K, V, i64)]) -> Result<()> {
    let mut input = d.input::<K, V>(topic);
    for (k, v, ts) in records {
        input.pipe_at(d, k.clone(), v.clone(), *ts)?;
    }
    Ok(())
}

/// [`pipe`] of string keys and i64 values.
fn pipe_longs(d: &mut TopologyTestDriver, topic: &str, records: &[(&str, i64, i64)]) -> Result<()> {
    pipe(d, topic, &records.iter().map(|&(k, v, ts)| (s(k), v, ts)).collect::<Vec<_>>())
}

/// [`pipe`] of string keys and string values.
fn pipe_strings(d: &mut TopologyTestDriver, topic: &str, records: &[(&str, &str, i64)]) -> Result<()> {
    pipe(d, topic, &records.iter().map(|&(k, v, ts)| (s(k), s(v), ts)).collect::<Vec<_>>())
}

/// The text of sub-topology `id` in a `describe()` output.
fn sub_topology(text: &str, id: u32) -> &str {
    let head = format!("   Sub-topology: {id}\n");
    let start = text.find(&head).unwrap_or_else(|| panic!("no sub-topology {id} in:\n{text}"));
    let rest = &text[start + head.len()..];
    &rest[..rest.find("Sub-topology:").unwrap_or(rest.len())]
}

/// A pass-through processor that records where each record came from.
struct Observe {
    seen: Arc<Mutex<Vec<RecordMetadata>>>,
}

impl<K: Send + 'static, V: Send + 'static> Processor<K, V, K, V> for Observe {
    fn process(&mut self, ctx: &mut ProcessorContext<'_, '_, K, V>, record: Record<K, V>) -> Result<()> {
        let meta = ctx.record_metadata().cloned().expect("metadata while processing a record");
        self.seen.lock().unwrap().push(meta);
        ctx.forward(record);
        Ok(())
    }
}

// ---- KStream: stateless --------------------------------------------------------------

#[test]
fn filter_keeps_matching_records_in_order() -> Result<()> {
    let b = StreamsBuilder::new();
    b.stream::<String, i64>("in").filter(|k, v| *v % 2 == 0 && k != "skip").to("out");
    let mut d = TopologyTestDriver::new(b.build()?)?;
    pipe_longs(&mut d, "in", &[("a", 1, 10), ("b", 2, 20), ("skip", 4, 25), ("c", 4, 30), ("d", 5, 40)])?;
    assert_eq!(d.output::<String, i64>("out").read_records()?, vec![rec(s("b"), 2, 20), rec(s("c"), 4, 30)]);
    Ok(())
}

#[test]
fn filter_not_drops_matching_records() -> Result<()> {
    let b = StreamsBuilder::new();
    b.stream::<String, i64>("in").filter_not(|_, v| *v % 2 == 0).to("out");
    let mut d = TopologyTestDriver::new(b.build()?)?;
    pipe_longs(&mut d, "in", &[("a", 1, 10), ("b", 2, 20), ("c", 4, 30), ("d", 5, 40)])?;
    assert_eq!(d.output::<String, i64>("out").read_records()?, vec![rec(s("a"), 1, 10), rec(s("d"), 5, 40)]);
    Ok(())
}

#[test]
fn map_replaces_key_and_value_and_grouping_after_it_repartitions() -> Result<()> {
    let b = StreamsBuilder::new();
    let mapped = b.stream::<String, String>("in").map(|user: String, page: String| (page, user.len() as i64));
    mapped.to("mapped");
    mapped.group_by_key().count_with(Materialized::named("views")).to_stream().to("views");
    let topo = b.build()?;
    let text = topo.describe();
    assert!(text.contains("   Sub-topology: 1\n"), "the re-keyed stream is grouped in a second sub-topology:\n{text}");
    assert!(sub_topology(&text, 0).contains("(topic: <app>-views-repartition)"), "{text}");
    assert!(sub_topology(&text, 1).contains("(topics: [<app>-views-repartition])"), "{text}");

    let mut d = TopologyTestDriver::new(topo)?;
    pipe_strings(&mut d, "in", &[("ann", "home", 10), ("bo", "cart", 20), ("cy", "home", 30)])?;
    assert_eq!(d.output::<String, i64>("mapped").read_records()?, vec![rec(s("home"), 3, 10), rec(s("cart"), 2, 20), rec(s("home"), 2, 30)]);
    assert_eq!(d.output::<String, i64>("views").read_records()?, vec![rec(s("home"), 1, 10), rec(s("cart"), 1, 20), rec(s("home"), 2, 30)]);
    Ok(())
}

#[test]
fn map_values_changes_only_the_value_and_grouping_after_it_does_not_repartition() -> Result<()> {
    let b = StreamsBuilder::new();
    let lens = b.stream::<String, String>("in").map_values(|v: String| v.len() as i64);
    lens.to("out");
    lens.group_by_key().reduce_with(|a, b| a + b, Materialized::named("sums"));
    let topo = b.build()?;
    let text = topo.describe();
    assert!(!text.contains("Sub-topology: 1") && !text.contains("-repartition"), "the key did not change:\n{text}");

    let mut d = TopologyTestDriver::new(topo)?;
    pipe_strings(&mut d, "in", &[("a", "xyz", 5), ("b", "", 6), ("a", "pq", 7)])?;
    assert_eq!(d.output::<String, i64>("out").read_records()?, vec![rec(s("a"), 3, 5), rec(s("b"), 0, 6), rec(s("a"), 2, 7)]);
    assert_eq!(d.kv_store::<String, i64>("sums")?.all()?, vec![(s("a"), 5), (s("b"), 0)]);
    Ok(())
}

#[test]
fn flat_map_emits_zero_or_more_records_each_with_the_input_timestamp() -> Result<()> {
    let b = StreamsBuilder::new();
    // "k" -> "a,b": one record per letter, keyed by the letter, valued by the old key.
    b.stream::<String, String>("in")
        .flat_map(|k: String, v: String| v.split(',').filter(|p| !p.is_empty()).map(|p| (p.to_string(), k.clone())).collect::<Vec<_>>())
        .to("out");
    let mut d = TopologyTestDriver::new(b.build()?)?;
    pipe_strings(&mut d, "in", &[("k1", "a,b", 100), ("k2", "", 200), ("k3", "c", 300)])?;
    assert_eq!(d.output::<String, String>("out").read_records()?, vec![rec(s("a"), s("k1"), 100), rec(s("b"), s("k1"), 100), rec(s("c"), s("k3"), 300)]);
    Ok(())
}

#[test]
fn flat_map_values_keeps_the_key() -> Result<()> {
    let b = StreamsBuilder::new();
    b.stream::<String, String>("in").flat_map_values(|v: String| v.split_whitespace().map(str::to_uppercase).collect::<Vec<_>>()).to("out");
    let mut d = TopologyTestDriver::new(b.build()?)?;
    pipe_strings(&mut d, "in", &[("k", "x y", 1), ("j", "   ", 2), ("k", "z", 3)])?;
    assert_eq!(d.output::<String, String>("out").read_records()?, vec![rec(s("k"), s("X"), 1), rec(s("k"), s("Y"), 1), rec(s("k"), s("Z"), 3)]);
    Ok(())
}

#[test]
fn select_key_sets_a_new_key_and_keeps_the_value() -> Result<()> {
    let b = StreamsBuilder::new();
    b.stream::<String, i64>("in").select_key(|k: &String, v: &i64| format!("{k}-{}", v % 2)).to("out");
    let mut d = TopologyTestDriver::new(b.build()?)?;
    pipe_longs(&mut d, "in", &[("a", 1, 10), ("a", 2, 20), ("b", 3, 30)])?;
    assert_eq!(d.output::<String, i64>("out").read_records()?, vec![rec(s("a-1"), 1, 10), rec(s("a-0"), 2, 20), rec(s("b-1"), 3, 30)]);
    Ok(())
}

#[test]
fn peek_observes_every_record_and_passes_it_on_unchanged() -> Result<()> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let b = StreamsBuilder::new();
    let log = seen.clone();
    b.stream::<String, i64>("in").peek(move |k, v| log.lock().unwrap().push((k.clone(), *v))).to("out");
    let mut d = TopologyTestDriver::new(b.build()?)?;
    pipe_longs(&mut d, "in", &[("a", 1, 10), ("b", 2, 20)])?;
    assert_eq!(*seen.lock().unwrap(), vec![(s("a"), 1), (s("b"), 2)]);
    assert_eq!(d.output::<String, i64>("out").read_records()?, vec![rec(s("a"), 1, 10), rec(s("b"), 2, 20)]);
    Ok(())
}

#[test]
fn foreach_sees_every_record_and_writes_nothing() -> Result<()> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let b = StreamsBuilder::new();
    let log = seen.clone();
    b.stream::<String, i64>("in").foreach(move |k, v| log.lock().unwrap().push(format!("{k}={v}")));
    let topo = b.build()?;
    let text = topo.describe();
    assert!(text.contains("Processor: KSTREAM-FOREACH-0000000001 (stores: [])\n      --> none\n"), "a terminal node:\n{text}");
    assert!(!text.contains("Sink:"), "{text}");
    let mut d = TopologyTestDriver::new(topo)?;
    pipe_longs(&mut d, "in", &[("a", 1, 10), ("b", 2, 20), ("a", 3, 30)])?;
    assert_eq!(*seen.lock().unwrap(), vec![s("a=1"), s("b=2"), s("a=3")]);
    Ok(())
}

#[test]
fn split_with_default_branch_sends_each_record_to_its_first_matching_branch() -> Result<()> {
    let b = StreamsBuilder::new();
    let branches = b.stream::<String, i64>("in").split().branch(|_, v| *v < 10).branch(|_, v| *v < 100).default_branch();
    assert_eq!(branches.len(), 3);
    branches[0].to("small");
    branches[1].to("medium");
    branches[2].to("large");
    let mut d = TopologyTestDriver::new(b.build()?)?;
    // 5 matches both predicates: only the first branch gets it.
    pipe_longs(&mut d, "in", &[("a", 5, 1), ("b", 50, 2), ("c", 500, 3), ("d", 9, 4), ("e", 99, 5)])?;
    assert_eq!(d.output::<String, i64>("small").read_records()?, vec![rec(s("a"), 5, 1), rec(s("d"), 9, 4)]);
    assert_eq!(d.output::<String, i64>("medium").read_records()?, vec![rec(s("b"), 50, 2), rec(s("e"), 99, 5)]);
    assert_eq!(d.output::<String, i64>("large").read_records()?, vec![rec(s("c"), 500, 3)]);
    Ok(())
}

#[test]
fn split_without_default_branch_drops_unmatched_records() -> Result<()> {
    let b = StreamsBuilder::new();
    let branches = b.stream::<String, i64>("in").split().branch(|k, _| k.starts_with('x')).branch(|_, v| *v > 0).no_default_branch();
    assert_eq!(branches.len(), 2);
    branches[0].to("x");
    branches[1].to("positive");
    let mut d = TopologyTestDriver::new(b.build()?)?;
    pipe_longs(&mut d, "in", &[("x1", 7, 1), ("a", 3, 2), ("b", -3, 3), ("x2", -1, 4)])?;
    assert_eq!(d.output::<String, i64>("x").read_records()?, vec![rec(s("x1"), 7, 1), rec(s("x2"), -1, 4)]);
    assert_eq!(d.output::<String, i64>("positive").read_records()?, vec![rec(s("a"), 3, 2)]);
    Ok(())
}

#[test]
fn merge_forwards_the_records_of_both_streams_in_arrival_order() -> Result<()> {
    let b = StreamsBuilder::new();
    let left = b.stream::<String, i64>("left");
    let right = b.stream::<String, i64>("right").map_values(|v: i64| v * 10);
    left.merge(&right).to("out");
    let mut d = TopologyTestDriver::new(b.build()?)?;
    let (mut l, mut r) = (d.input::<String, i64>("left"), d.input::<String, i64>("right"));
    l.pipe_at(&mut d, s("a"), 1, 10)?;
    r.pipe_at(&mut d, s("b"), 2, 5)?;
    r.pipe_at(&mut d, s("a"), 3, 20)?;
    l.pipe_at(&mut d, s("c"), 4, 15)?;
    assert_eq!(d.output::<String, i64>("out").read_records()?, vec![rec(s("a"), 1, 10), rec(s("b"), 20, 5), rec(s("a"), 30, 20), rec(s("c"), 4, 15)]);
    Ok(())
}

// ---- KStream: topics -----------------------------------------------------------------

#[test]
fn repartition_sends_records_through_the_internal_topic_unchanged() -> Result<()> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let b = StreamsBuilder::new();
    let s2 = seen.clone();
    b.stream::<String, String>("in").repartition().process(move || Observe { seen: s2.clone() }, &[]).to("out");
    let topo = b.build()?;
    let text = topo.describe();
    assert!(sub_topology(&text, 0).contains("(topic: <app>-KSTREAM-REPARTITION-0000000001-repartition)"), "{text}");
    assert!(sub_topology(&text, 1).contains("(topics: [<app>-KSTREAM-REPARTITION-0000000001-repartition])"), "{text}");

    let mut d = TopologyTestDriver::with_app_id(topo, "shop")?;
    let headers: Headers = vec![(s("trace"), Some(Bytes::from_static(b"t-1"))), (s("empty"), None)];
    d.pipe_raw("in", Some(Bytes::from_static(b"k1")), Some(Bytes::from_static(b"v1")), 100, headers.clone())?;
    d.pipe_raw("in", Some(Bytes::from_static(b"k2")), Some(Bytes::from_static(b"v2")), 50, Vec::new())?;
    let out = d.output::<String, String>("out").read_records()?;
    assert_eq!(out, vec![Record { key: s("k1"), value: s("v1"), timestamp: 100, headers }, rec(s("k2"), s("v2"), 50)]);
    let topic = s("shop-KSTREAM-REPARTITION-0000000001-repartition");
    assert_eq!(
        *seen.lock().unwrap(),
        vec![RecordMetadata { topic: topic.clone(), partition: 0, offset: 0 }, RecordMetadata { topic, partition: 0, offset: 1 }],
        "the records after repartition() are read from the repartition topic"
    );
    Ok(())
}

#[test]
fn repartition_with_a_partition_count_also_round_trips() -> Result<()> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let b = StreamsBuilder::new();
    let s2 = seen.clone();
    b.stream::<String, i64>("in")
        .select_key(|_, v: &i64| v % 3)
        .repartition_with(Some(4))
        .process(move || Observe { seen: s2.clone() }, &[])
        .to("out");
    let mut d = TopologyTestDriver::new(b.build()?)?;
    pipe_longs(&mut d, "in", &[("a", 7, 1), ("b", -9, 2)])?;
    assert_eq!(d.output::<i64, i64>("out").read_records()?, vec![rec(1, 7, 1), rec(0, -9, 2)]);
    let topics: Vec<String> = seen.lock().unwrap().iter().map(|m| m.topic.clone()).collect();
    assert_eq!(topics, vec![s("test-app-KSTREAM-REPARTITION-0000000002-repartition"); 2]);
    Ok(())
}

#[test]
fn to_writes_kafka_default_serde_bytes() -> Result<()> {
    let b = StreamsBuilder::new();
    b.stream::<Option<String>, i64>("in").to("out");
    let mut d = TopologyTestDriver::new(b.build()?)?;
    pipe(&mut d, "in", &[(Some(s("k")), 42, 7), (None, -2, 8), (Some(s("é")), i64::MIN, 9)])?;
    let raw = d.output::<Option<Vec<u8>>, Vec<u8>>("out").read_records()?;
    assert_eq!(
        raw,
        vec![
            rec(Some(b"k".to_vec()), vec![0, 0, 0, 0, 0, 0, 0, 42], 7),
            rec(None, vec![0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe], 8),
            rec(Some("é".as_bytes().to_vec()), vec![0x80, 0, 0, 0, 0, 0, 0, 0], 9),
        ],
        "UTF-8 keys, null keys as null, big-endian i64 values (Kafka's StringSerde and LongSerde)"
    );
    Ok(())
}

#[test]
fn to_table_upserts_the_latest_value_per_key() -> Result<()> {
    let b = StreamsBuilder::new();
    let table = b.stream::<String, i64>("in").to_table();
    let store = table.store_name().expect("to_table materializes").to_string();
    assert!(store.starts_with("KSTREAM-TOTABLE-STATE-STORE-"), "{store}");
    table.to_stream().to("out");
    let mut d = TopologyTestDriver::new(b.build()?)?;
    pipe_longs(&mut d, "in", &[("a", 1, 10), ("b", 2, 20), ("a", 3, 30)])?;
    assert_eq!(d.output::<String, i64>("out").read_records()?, vec![rec(s("a"), 1, 10), rec(s("b"), 2, 20), rec(s("a"), 3, 30)]);
    let kv = d.kv_store::<String, i64>(&store)?;
    assert_eq!(kv.all()?, vec![(s("a"), 3), (s("b"), 2)]);
    assert_eq!(kv.get(&s("c"))?, None);
    Ok(())
}

#[test]
fn to_table_with_a_named_store_after_a_key_change_repartitions() -> Result<()> {
    let b = StreamsBuilder::new();
    let table = b.stream::<String, i64>("in").select_key(|k: &String, _| k.to_uppercase()).to_table_with(Materialized::named("latest"));
    assert_eq!(table.store_name(), Some("latest"));
    table.to_changelog_stream().to("out");
    let topo = b.build()?;
    let text = topo.describe();
    assert!(sub_topology(&text, 0).contains("-repartition)\n"), "the re-keyed stream goes through a repartition topic:\n{text}");
    assert!(sub_topology(&text, 1).contains("-repartition])\n"), "{text}");
    assert!(sub_topology(&text, 1).contains("(stores: [latest])"), "{text}");
    let mut d = TopologyTestDriver::new(topo)?;
    pipe_longs(&mut d, "in", &[("a", 1, 10), ("A", 2, 20), ("b", 3, 30)])?;
    assert_eq!(d.output::<String, Option<i64>>("out").read_records()?, vec![rec(s("A"), Some(1), 10), rec(s("A"), Some(2), 20), rec(s("B"), Some(3), 30)]);
    assert_eq!(d.kv_store::<String, i64>("latest")?.all()?, vec![(s("A"), 2), (s("B"), 3)]);
    Ok(())
}

// ---- grouping and aggregation --------------------------------------------------------

#[test]
fn group_by_key_count_emits_running_counts_and_fills_the_store() -> Result<()> {
    let b = StreamsBuilder::new();
    b.stream::<String, String>("in").group_by_key().count_with(Materialized::named("counts")).to_stream().to("out");
    let topo = b.build()?;
    assert!(!topo.describe().contains("-repartition"), "the key is unchanged:\n{}", topo.describe());
    let mut d = TopologyTestDriver::new(topo)?;
    pipe_strings(&mut d, "in", &[("a", "x", 1), ("b", "y", 2), ("a", "z", 3), ("a", "w", 4)])?;
    assert_eq!(d.output::<String, i64>("out").read_records()?, vec![rec(s("a"), 1, 1), rec(s("b"), 1, 2), rec(s("a"), 2, 3), rec(s("a"), 3, 4)]);
    let kv = d.kv_store::<String, i64>("counts")?;
    assert_eq!(kv.all()?, vec![(s("a"), 3), (s("b"), 1)]);
    assert_eq!(kv.range(&s("b"), &s("z"))?, vec![(s("b"), 1)]);
    Ok(())
}

#[test]
fn group_by_key_reduce_combines_aggregate_with_each_new_value() -> Result<()> {
    let b = StreamsBuilder::new();
    // Not commutative: the order of the reducer's arguments shows.
    b.stream::<String, String>("in").group_by_key().reduce_with(|agg, v| format!("{agg}+{v}"), Materialized::named("joined")).to_stream().to("out");
    let mut d = TopologyTestDriver::new(b.build()?)?;
    pipe_strings(&mut d, "in", &[("k", "a", 1), ("j", "x", 2), ("k", "b", 3), ("k", "c", 4)])?;
    assert_eq!(
        d.output::<String, String>("out").read_records()?,
        vec![rec(s("k"), s("a"), 1), rec(s("j"), s("x"), 2), rec(s("k"), s("a+b"), 3), rec(s("k"), s("a+b+c"), 4)]
    );
    assert_eq!(d.kv_store::<String, String>("joined")?.all()?, vec![(s("j"), s("x")), (s("k"), s("a+b+c"))]);
    Ok(())
}

#[test]
fn group_by_key_aggregate_folds_from_the_initializer() -> Result<()> {
    let b = StreamsBuilder::new();
    b.stream::<String, i64>("in")
        .group_by_key()
        .aggregate_with(|| s("init"), |k: &String, v: i64, agg: String| format!("{agg}|{k}{v}"), Materialized::named("agg"))
        .to_stream()
        .to("out");
    let mut d = TopologyTestDriver::new(b.build()?)?;
    pipe_longs(&mut d, "in", &[("a", 1, 10), ("b", 2, 20), ("a", 3, 30)])?;
    assert_eq!(
        d.output::<String, String>("out").read_records()?,
        vec![rec(s("a"), s("init|a1"), 10), rec(s("b"), s("init|b2"), 20), rec(s("a"), s("init|a1|a3"), 30)]
    );
    assert_eq!(d.kv_store::<String, String>("agg")?.get(&s("a"))?, Some(s("init|a1|a3")));
    Ok(())
}

#[test]
fn group_by_regroups_by_a_computed_key_through_a_repartition_topic() -> Result<()> {
    let b = StreamsBuilder::new();
    b.stream::<String, String>("clicks").group_by(|_user, page: &String| page.clone()).count_with(Materialized::named("by-page")).to_stream().to("out");
    let topo = b.build()?;
    let text = topo.describe();
    assert!(sub_topology(&text, 0).contains("Processor: KSTREAM-KEY-SELECT-0000000001"), "{text}");
    assert!(sub_topology(&text, 0).contains("(topic: <app>-by-page-repartition)"), "{text}");
    assert!(sub_topology(&text, 1).contains("(stores: [by-page])"), "{text}");
    let mut d = TopologyTestDriver::new(topo)?;
    pipe_strings(&mut d, "clicks", &[("ann", "/home", 1), ("bo", "/home", 2), ("ann", "/cart", 3)])?;
    assert_eq!(d.output::<String, i64>("out").read_records()?, vec![rec(s("/home"), 1, 1), rec(s("/home"), 2, 2), rec(s("/cart"), 1, 3)]);
    assert_eq!(d.kv_store::<String, i64>("by-page")?.all()?, vec![(s("/cart"), 1), (s("/home"), 2)]);
    Ok(())
}

#[test]
fn aggregation_results_carry_the_largest_timestamp_seen_for_the_key() -> Result<()> {
    let b = StreamsBuilder::new();
    let grouped = b.stream::<String, i64>("in").group_by_key();
    grouped.count().to_stream().to("count");
    grouped.reduce(|a, v| a + v).to_stream().to("reduce");
    let mut d = TopologyTestDriver::new(b.build()?)?;
    // The second record is out of order: the aggregate already includes time 100.
    pipe_longs(&mut d, "in", &[("a", 1, 100), ("a", 2, 50), ("b", 3, 60)])?;
    assert_eq!(d.output::<String, i64>("count").read_records()?, vec![rec(s("a"), 1, 100), rec(s("a"), 2, 100), rec(s("b"), 1, 60)]);
    assert_eq!(d.output::<String, i64>("reduce").read_records()?, vec![rec(s("a"), 1, 100), rec(s("a"), 3, 100), rec(s("b"), 3, 60)]);
    Ok(())
}

#[test]
fn aggregations_skip_records_with_a_null_key() -> Result<()> {
    let b = StreamsBuilder::new();
    b.stream::<Option<String>, String>("in").group_by_key().count_with(Materialized::named("counts")).to_stream().to("out");
    let mut d = TopologyTestDriver::new(b.build()?)?;
    pipe(&mut d, "in", &[(Some(s("a")), s("x"), 1), (None, s("y"), 2), (Some(s("a")), s("z"), 3)])?;
    assert_eq!(d.output::<Option<String>, i64>("out").read_records()?, vec![rec(Some(s("a")), 1, 1), rec(Some(s("a")), 2, 3)]);
    assert_eq!(d.kv_store::<Option<String>, i64>("counts")?.all()?, vec![(Some(s("a")), 2)]);
    assert_eq!(d.metrics().dropped_null_key, 1);
    Ok(())
}

// ---- KTable --------------------------------------------------------------------------

#[test]
fn table_filter_reads_failing_entries_as_deleted() -> Result<()> {
    let b = StreamsBuilder::new();
    b.table::<String, i64>("t").filter(|_, v| *v >= 10).to_changelog_stream().to("out");
    let mut d = TopologyTestDriver::new(b.build()?)?;
    let mut t = d.input::<String, i64>("t");
    t.pipe_at(&mut d, s("a"), 5, 1)?; // never passed: nothing to say
    t.pipe_at(&mut d, s("a"), 20, 2)?; // now passes: an insert
    t.pipe_at(&mut d, s("a"), 30, 3)?; // still passes: an update
    t.pipe_at(&mut d, s("a"), 7, 4)?; // fails again: reads as a delete
    t.pipe_at(&mut d, s("b"), 40, 5)?;
    t.pipe_tombstone(&mut d, s("b"), 6)?; // deleted upstream
    assert_eq!(
        d.output::<String, Option<i64>>("out").read_records()?,
        vec![rec(s("a"), Some(20), 2), rec(s("a"), Some(30), 3), rec(s("a"), None, 4), rec(s("b"), Some(40), 5), rec(s("b"), None, 6)]
    );
    Ok(())
}

#[test]
fn table_filter_not_is_the_complement() -> Result<()> {
    let b = StreamsBuilder::new();
    b.table::<String, i64>("t").filter_not(|k, v| *v >= 10 || k == "hidden").to_changelog_stream().to("out");
    let mut d = TopologyTestDriver::new(b.build()?)?;
    let mut t = d.input::<String, i64>("t");
    t.pipe_at(&mut d, s("a"), 5, 1)?;
    t.pipe_at(&mut d, s("hidden"), 1, 2)?;
    t.pipe_at(&mut d, s("a"), 20, 3)?;
    t.pipe_at(&mut d, s("b"), 3, 4)?;
    assert_eq!(d.output::<String, Option<i64>>("out").read_records()?, vec![rec(s("a"), Some(5), 1), rec(s("a"), None, 3), rec(s("b"), Some(3), 4)]);
    Ok(())
}

#[test]
fn table_map_values_transforms_updates_and_passes_deletes() -> Result<()> {
    let b = StreamsBuilder::new();
    b.table::<String, i64>("t").map_values(|k: &String, v: &i64| format!("{k}:{}", v * 2)).to_changelog_stream().to("out");
    let mut d = TopologyTestDriver::new(b.build()?)?;
    let mut t = d.input::<String, i64>("t");
    t.pipe_at(&mut d, s("a"), 1, 10)?;
    t.pipe_at(&mut d, s("a"), 2, 20)?;
    t.pipe_tombstone(&mut d, s("a"), 30)?;
    assert_eq!(
        d.output::<String, Option<String>>("out").read_records()?,
        vec![rec(s("a"), Some(s("a:2")), 10), rec(s("a"), Some(s("a:4")), 20), rec(s("a"), None, 30)]
    );
    Ok(())
}

#[test]
fn table_to_stream_emits_current_values_and_drops_deletes() -> Result<()> {
    let b = StreamsBuilder::new();
    let table = b.table_with::<String, i64>("t", Materialized::named("t-store"));
    assert_eq!(table.store_name(), Some("t-store"));
    table.to_stream().to("out");
    let mut d = TopologyTestDriver::new(b.build()?)?;
    let mut t = d.input::<String, i64>("t");
    t.pipe_at(&mut d, s("a"), 1, 10)?;
    t.pipe_at(&mut d, s("b"), 2, 20)?;
    t.pipe_tombstone(&mut d, s("a"), 30)?;
    t.pipe_at(&mut d, s("b"), 3, 40)?;
    assert_eq!(d.output::<String, i64>("out").read_records()?, vec![rec(s("a"), 1, 10), rec(s("b"), 2, 20), rec(s("b"), 3, 40)]);
    assert_eq!(d.kv_store::<String, i64>("t-store")?.all()?, vec![(s("b"), 3)]);
    Ok(())
}

#[test]
fn table_to_changelog_stream_emits_deletes_as_none() -> Result<()> {
    let b = StreamsBuilder::new();
    let changes = b.table::<String, i64>("t").to_changelog_stream();
    changes.to("out");
    changes.to("raw");
    let mut d = TopologyTestDriver::new(b.build()?)?;
    let mut t = d.input::<String, i64>("t");
    t.pipe_at(&mut d, s("a"), 1, 10)?;
    t.pipe_tombstone(&mut d, s("a"), 20)?;
    t.pipe_at(&mut d, s("a"), 2, 30)?;
    assert_eq!(d.output::<String, Option<i64>>("out").read_records()?, vec![rec(s("a"), Some(1), 10), rec(s("a"), None, 20), rec(s("a"), Some(2), 30)]);
    // A delete is a tombstone on the wire: a null value.
    assert_eq!(
        d.output::<String, Option<Vec<u8>>>("raw").read_records()?,
        vec![rec(s("a"), Some(1i64.to_be_bytes().to_vec()), 10), rec(s("a"), None, 20), rec(s("a"), Some(2i64.to_be_bytes().to_vec()), 30)]
    );
    Ok(())
}

#[test]
fn table_materialized_gives_a_derived_table_a_queryable_store() -> Result<()> {
    let b = StreamsBuilder::new();
    let source = b.table::<String, i64>("t");
    let source_store = source.store_name().expect("source tables are materialized").to_string();
    assert_eq!(source.materialized().store_name(), Some(source_store.as_str()), "an already materialized table keeps its store");
    let big = source.filter(|_, v| *v >= 10);
    assert_eq!(big.store_name(), None);
    let big = big.materialized();
    let big_store = big.store_name().expect("materialized() adds a store").to_string();
    assert_ne!(big_store, source_store);
    let mut d = TopologyTestDriver::new(b.build()?)?;
    let mut t = d.input::<String, i64>("t");
    t.pipe_at(&mut d, s("a"), 20, 1)?;
    t.pipe_at(&mut d, s("b"), 5, 2)?;
    t.pipe_at(&mut d, s("c"), 30, 3)?;
    t.pipe_at(&mut d, s("c"), 3, 4)?; // leaves the filtered table
    assert_eq!(d.kv_store::<String, i64>(&big_store)?.all()?, vec![(s("a"), 20)]);
    assert_eq!(d.kv_store::<String, i64>(&source_store)?.all()?, vec![(s("a"), 20), (s("b"), 5), (s("c"), 3)]);
    Ok(())
}

#[test]
fn table_source_skips_records_with_a_null_key() -> Result<()> {
    let b = StreamsBuilder::new();
    b.table::<Option<String>, i64>("t").to_stream().to("out");
    let mut d = TopologyTestDriver::new(b.build()?)?;
    pipe(&mut d, "t", &[(Some(s("a")), 1i64, 1), (None, 2, 2), (Some(s("a")), 3, 3)])?;
    assert_eq!(d.output::<Option<String>, i64>("out").read_records()?, vec![rec(Some(s("a")), 1, 1), rec(Some(s("a")), 3, 3)]);
    Ok(())
}

#[test]
fn global_table_holds_the_latest_value_per_key() -> Result<()> {
    let b = StreamsBuilder::new();
    let rates = b.global_table::<String, i64>("rates");
    let store = rates.store_name().to_string();
    let mut d = TopologyTestDriver::new(b.build()?)?;
    let mut r = d.input::<String, i64>("rates");
    r.pipe_at(&mut d, s("eur"), 100, 1)?;
    r.pipe_at(&mut d, s("usd"), 90, 2)?;
    r.pipe_at(&mut d, s("eur"), 101, 3)?;
    r.pipe_at(&mut d, s("gbp"), 120, 4)?;
    r.pipe_tombstone(&mut d, s("usd"), 5)?;
    let kv = d.kv_store::<String, i64>(&store)?;
    assert_eq!(kv.all()?, vec![(s("eur"), 101), (s("gbp"), 120)]);
    assert_eq!(kv.get(&s("usd"))?, None);
    Ok(())
}

// ---- Processor API -------------------------------------------------------------------

/// Appends the `trace` header and the record's origin to the value, and adds a header.
struct Tagger;

impl Processor<String, String, String, String> for Tagger {
    fn process(&mut self, ctx: &mut ProcessorContext<'_, '_, String, String>, mut r: Record<String, String>) -> Result<()> {
        let trace = r.headers.iter().find(|(k, _)| k == "trace").and_then(|(_, v)| v.clone()).map(|v| String::from_utf8_lossy(&v).into_owned());
        let m = ctx.record_metadata().cloned().expect("metadata while processing a record");
        r.value = format!("{}|trace={}|{}-{}@{}", r.value, trace.as_deref().unwrap_or("-"), m.topic, m.partition, m.offset);
        r.headers.push((s("seen-by"), Some(Bytes::from_static(b"tagger"))));
        ctx.forward(r);
        Ok(())
    }
}

#[test]
fn process_sees_headers_and_record_metadata() -> Result<()> {
    let b = StreamsBuilder::new();
    b.stream::<String, String>("in").process(|| Tagger, &[]).to("out");
    let mut d = TopologyTestDriver::new(b.build()?)?;
    let trace: Headers = vec![(s("trace"), Some(Bytes::from_static(b"abc"))), (s("nothing"), None)];
    d.pipe_raw("in", Some(Bytes::from_static(b"k")), Some(Bytes::from_static(b"v1")), 10, trace.clone())?;
    d.pipe_raw("in", Some(Bytes::from_static(b"k")), Some(Bytes::from_static(b"v2")), 20, Vec::new())?;
    let seen_by = (s("seen-by"), Some(Bytes::from_static(b"tagger")));
    let mut first_headers = trace;
    first_headers.push(seen_by.clone());
    assert_eq!(
        d.output::<String, String>("out").read_records()?,
        vec![
            Record { key: s("k"), value: s("v1|trace=abc|in-0@0"), timestamp: 10, headers: first_headers },
            Record { key: s("k"), value: s("v2|trace=-|in-0@1"), timestamp: 20, headers: vec![seen_by] },
        ]
    );
    Ok(())
}

// ---- serdes --------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Order {
    item: String,
    qty: u32,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
struct Totals {
    orders: u32,
    items: u32,
}

samsa_streams::json_serde!(Totals);

#[test]
fn json_values_round_trip_through_topics_and_stores() -> Result<()> {
    let b = StreamsBuilder::new();
    let orders = b.stream::<String, Json<Order>>("orders");
    orders.filter(|_, Json(o)| o.qty > 0).to("valid");
    orders
        .group_by_key()
        .aggregate_with(
            Totals::default,
            |_, Json(o): Json<Order>, t: Totals| Totals { orders: t.orders + 1, items: t.items + o.qty },
            Materialized::named("totals"),
        )
        .to_stream()
        .to("totals");
    let mut d = TopologyTestDriver::new(b.build()?)?;
    // JSON written by someone else, field order and spacing included.
    d.pipe_raw("orders", Some(Bytes::from_static(b"ann")), Some(Bytes::from_static(br#"{ "qty": 2, "item": "pen" }"#)), 1, Vec::new())?;
    let mut input = d.input::<String, Json<Order>>("orders");
    input.pipe_at(&mut d, s("ann"), Json(Order { item: s("ink"), qty: 0 }), 2)?;
    input.pipe_at(&mut d, s("bo"), Json(Order { item: s("pad"), qty: 5 }), 3)?;

    assert_eq!(
        d.output::<String, Json<Order>>("valid").read_records()?,
        vec![rec(s("ann"), Json(Order { item: s("pen"), qty: 2 }), 1), rec(s("bo"), Json(Order { item: s("pad"), qty: 5 }), 3)]
    );
    let raw = d.output::<String, Vec<u8>>("totals").read_records()?;
    let text: Vec<(String, String, i64)> = raw.into_iter().map(|r| (r.key, String::from_utf8(r.value).expect("JSON is UTF-8"), r.timestamp)).collect();
    assert_eq!(
        text,
        vec![
            (s("ann"), s(r#"{"orders":1,"items":2}"#), 1),
            (s("ann"), s(r#"{"orders":2,"items":2}"#), 2),
            (s("bo"), s(r#"{"orders":1,"items":5}"#), 3),
        ]
    );
    assert_eq!(d.kv_store::<String, Totals>("totals")?.get(&s("ann"))?, Some(Totals { orders: 2, items: 2 }));
    Ok(())
}

#[test]
fn bad_bytes_fail_with_an_error_naming_topic_partition_and_offset() -> Result<()> {
    let b = StreamsBuilder::new();
    b.stream::<String, i64>("in").to("out");
    let mut d = TopologyTestDriver::new(b.build()?)?;
    d.input::<String, i64>("in").pipe_at(&mut d, s("ok"), 1, 1)?;
    let err = d.pipe_raw("in", Some(Bytes::from_static(b"k")), Some(Bytes::from_static(b"abc")), 2, Vec::new()).expect_err("3 bytes are not an i64");
    assert_eq!(err.to_string(), "cannot deserialize the value of in-0 at offset 1: 3 bytes cannot be an i64 (it takes 8)");
    match err {
        Error::Deserialize { part, topic, partition, offset, reason } => {
            assert_eq!((part, topic.as_str(), partition, offset), ("value", "in", 0, 1));
            assert!(reason.contains("3 bytes"), "{reason}");
        }
        other => panic!("expected Error::Deserialize, got {other:?}"),
    }
    let err = d.pipe_raw("in", Some(Bytes::from_static(&[0xff])), Some(Bytes::from(2i64.to_be_bytes().to_vec())), 3, Vec::new()).expect_err("not UTF-8");
    assert!(matches!(&err, Error::Deserialize { part: "key", offset: 2, .. }), "{err:?}");
    assert_eq!(d.output::<String, i64>("out").read_records()?, vec![rec(s("ok"), 1, 1)], "nothing of the bad records was written");
    Ok(())
}

// ---- describe ------------------------------------------------------------------------

#[test]
fn describe_lists_sub_topologies_nodes_stores_and_edges() -> Result<()> {
    let b = StreamsBuilder::new();
    b.stream::<String, String>("words")
        .map(|k: String, v: String| (v, k))
        .group_by_key()
        .count_with(Materialized::named("counts"))
        .to_stream()
        .to("counts-out");
    let text = b.build()?.describe();
    assert!(text.starts_with("Topologies:\n   Sub-topology: 0\n"), "{text}");
    assert!(!text.contains("Sub-topology: 2"), "{text}");
    let expect = |id: u32, parts: &[&str]| {
        let sub = sub_topology(&text, id);
        let mut at = 0;
        for part in parts {
            let found = sub[at..].find(part).unwrap_or_else(|| panic!("sub-topology {id} lacks (in order) {part:?}:\n{text}"));
            at += found + part.len();
        }
    };
    expect(
        0,
        &[
            "    Source: KSTREAM-SOURCE-0000000000 (topics: [words])\n      --> KSTREAM-MAP-0000000001\n",
            "    Processor: KSTREAM-MAP-0000000001 (stores: [])\n      --> KSTREAM-SINK-0000000002\n      <-- KSTREAM-SOURCE-0000000000\n",
            "    Sink: KSTREAM-SINK-0000000002 (topic: <app>-counts-repartition)\n",
            "      <-- KSTREAM-MAP-0000000001\n",
        ],
    );
    expect(
        1,
        &[
            "    Source: KSTREAM-SOURCE-0000000003 (topics: [<app>-counts-repartition])\n      --> KSTREAM-AGGREGATE-0000000004\n",
            "    Processor: KSTREAM-AGGREGATE-0000000004 (stores: [counts])\n      --> KTABLE-TOSTREAM-0000000005\n      <-- KSTREAM-SOURCE-0000000003\n",
            "    Processor: KTABLE-TOSTREAM-0000000005 (stores: [])\n      --> KSTREAM-SINK-0000000006\n      <-- KSTREAM-AGGREGATE-0000000004\n",
            "    Sink: KSTREAM-SINK-0000000006 (topic: counts-out)\n",
            "      <-- KTABLE-TOSTREAM-0000000005\n",
        ],
    );
    Ok(())
}

#[test]
fn describe_matches_kafka_topology_description_exactly() -> Result<()> {
    let b = StreamsBuilder::new();
    b.stream::<String, i64>("in").filter(|_, v| *v > 0).to("out");
    let expected = "\
Topologies:
   Sub-topology: 0
    Source: KSTREAM-SOURCE-0000000000 (topics: [in])
      --> KSTREAM-FILTER-0000000001
    Processor: KSTREAM-FILTER-0000000001 (stores: [])
      --> KSTREAM-SINK-0000000002
      <-- KSTREAM-SOURCE-0000000000
    Sink: KSTREAM-SINK-0000000002 (topic: out)
      <-- KSTREAM-FILTER-0000000001

";
    assert_eq!(b.build()?.describe(), expected);
    Ok(())
}

