//! TopologyTestDriver checks of windowed aggregations: tumbling, hopping, sliding and
//! session windows, grace and late records, reduce/aggregate, window-store reads, and
//! suppression of intermediate results. Sliding, hopping and session windows are also
//! compared with brute-force references on pseudo-random inputs.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use samsa_streams::{
    KStream, Materialized, Result, SessionWindows, SlidingWindows, StreamsBuilder, Suppressed, TimeWindows, TopologyTestDriver, Windowed,
};

type W = Windowed<String>;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn w(key: &str, start: i64, end: i64) -> W {
    Windowed::new(key.to_string(), start, end)
}

/// Pipes `(key, timestamp)` records with value 1.
fn pipe(d: &mut TopologyTestDriver, records: &[(&str, i64)]) -> Result<()> {
    let mut input = d.input::<String, i64>("in");
    for &(k, ts) in records {
        input.pipe_at(d, k.to_string(), 1, ts)?;
    }
    Ok(())
}

/// The windowed changelog written to `out`: `(windowed key, new value)`.
fn changes(d: &TopologyTestDriver) -> Result<Vec<(W, Option<i64>)>> {
    d.output::<W, Option<i64>>("out").read_key_values()
}

/// The table a changelog describes (a `None` value deletes the row).
fn fold(rows: Vec<(W, Option<i64>)>) -> BTreeMap<W, i64> {
    let mut table = BTreeMap::new();
    for (k, v) in rows {
        match v {
            Some(v) => table.insert(k, v),
            None => table.remove(&k),
        };
    }
    table
}

/// A small deterministic generator (xorshift64*), so failures name a reproducible seed.
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
    fn records(&mut self, n: usize, max_ts: u64) -> Vec<(&'static str, i64)> {
        (0..n).map(|_| (["a", "b", "c"][self.below(3) as usize], self.below(max_ts + 1) as i64)).collect()
    }
}

fn counted(b: &StreamsBuilder) -> samsa_streams::KGroupedStream<String, i64> {
    let s: KStream<String, i64> = b.stream("in");
    s.group_by_key()
}

#[test]
fn tumbling_count_with_out_of_order_grace_and_late_records() -> Result<()> {
    let b = StreamsBuilder::new();
    counted(&b).windowed_by(TimeWindows::of_size_with_grace(ms(10), ms(5))).count_with(Materialized::named("counts")).to_changelog_stream().to("out");
    let mut d = TopologyTestDriver::new(b.build()?)?;
    pipe(&mut d, &[("a", 1), ("a", 4), ("a", 12)])?;
    // Out of order but within grace: [0, 10) closes at 10 + 5 = 15 > stream time 12.
    pipe(&mut d, &[("a", 8)])?;
    assert_eq!(changes(&d)?, vec![(w("a", 0, 10), Some(1)), (w("a", 0, 10), Some(2)), (w("a", 10, 20), Some(1)), (w("a", 0, 10), Some(3))]);
    assert_eq!(d.metrics().dropped_late, 0);
    // Stream time 16 closes [0, 10) for every key: a@9 and b@3 are late and dropped.
    pipe(&mut d, &[("a", 16), ("a", 9), ("b", 3), ("a", 14)])?;
    let recs = d.output::<W, Option<i64>>("out").read_records()?;
    let got: Vec<(W, Option<i64>, i64)> = recs.into_iter().map(|r| (r.key, r.value, r.timestamp)).collect();
    assert_eq!(got, vec![(w("a", 10, 20), Some(2), 16), (w("a", 10, 20), Some(3), 14)], "late records leave no trace; results carry the record's time");
    assert_eq!(d.metrics().dropped_late, 2);
    assert_eq!(d.metrics().processed, 8);

    let store = d.window_store::<String, i64>("counts")?;
    assert_eq!(store.fetch(&"a".to_string(), 0, 100)?, vec![(0, 3), (10, 3)]);
    assert_eq!(store.fetch(&"a".to_string(), 5, 10)?, vec![(10, 3)], "fetch selects by window start");
    assert_eq!(store.fetch(&"b".to_string(), 0, 100)?, vec![]);
    Ok(())
}

#[test]
fn a_window_is_closed_exactly_at_end_plus_grace() -> Result<()> {
    let b = StreamsBuilder::new();
    counted(&b).windowed_by(TimeWindows::of_size_no_grace(ms(10))).count().to_changelog_stream().to("out");
    let mut d = TopologyTestDriver::new(b.build()?)?;
    // At stream time 9, [0, 10) is open; at 10 it is closed (no grace).
    pipe(&mut d, &[("a", 9), ("a", 0), ("a", 10), ("a", 0)])?;
    assert_eq!(changes(&d)?, vec![(w("a", 0, 10), Some(1)), (w("a", 0, 10), Some(2)), (w("a", 10, 20), Some(1))]);
    assert_eq!(d.metrics().dropped_late, 1);
    Ok(())
}

#[test]
fn hopping_windows_put_a_record_in_size_over_advance_windows() -> Result<()> {
    let b = StreamsBuilder::new();
    counted(&b).windowed_by(TimeWindows::of_size_with_grace(ms(9), ms(100)).advance_by(ms(3))).count_with(Materialized::named("hops")).to_changelog_stream().to("out");
    let mut d = TopologyTestDriver::new(b.build()?)?;
    pipe(&mut d, &[("a", 20)])?;
    assert_eq!(changes(&d)?, vec![(w("a", 12, 21), Some(1)), (w("a", 15, 24), Some(1)), (w("a", 18, 27), Some(1))]);
    // Windows start at 0: an early record is in fewer windows, as in Kafka.
    pipe(&mut d, &[("a", 1)])?;
    assert_eq!(changes(&d)?, vec![(w("a", 0, 9), Some(1))]);
    pipe(&mut d, &[("a", 13)])?;
    assert_eq!(changes(&d)?, vec![(w("a", 6, 15), Some(1)), (w("a", 9, 18), Some(1)), (w("a", 12, 21), Some(2))]);
    let store = d.window_store::<String, i64>("hops")?;
    assert_eq!(store.fetch(&"a".to_string(), 0, 100)?, vec![(0, 1), (6, 1), (9, 1), (12, 2), (15, 1), (18, 1)]);
    Ok(())
}

#[test]
fn hopping_windows_drop_late_updates_per_window() -> Result<()> {
    let b = StreamsBuilder::new();
    counted(&b).windowed_by(TimeWindows::of_size_no_grace(ms(10)).advance_by(ms(5))).count_with(Materialized::named("hops")).to_changelog_stream().to("out");
    let mut d = TopologyTestDriver::new(b.build()?)?;
    pipe(&mut d, &[("a", 20)])?;
    changes(&d)?;
    // a@12 misses [5, 15) and [10, 20); a@16 misses [10, 20) but lands in [15, 25).
    pipe(&mut d, &[("a", 12), ("a", 16)])?;
    assert_eq!(changes(&d)?, vec![(w("a", 15, 25), Some(2))]);
    assert_eq!(d.metrics().dropped_late, 3, "Kafka counts one drop per closed window");
    assert_eq!(d.window_store::<String, i64>("hops")?.fetch(&"a".to_string(), 0, 100)?, vec![(15, 2), (20, 1)]);
    Ok(())
}

#[test]
fn hopping_windows_match_a_brute_force_count() -> Result<()> {
    for seed in 1..=10u64 {
        let b = StreamsBuilder::new();
        counted(&b).windowed_by(TimeWindows::of_size_with_grace(ms(10), ms(1000)).advance_by(ms(4))).count().to_changelog_stream().to("out");
        let mut d = TopologyTestDriver::new(b.build()?)?;
        let records = Rng(seed * 7919).records(40, 60);
        pipe(&mut d, &records)?;
        let mut expected = BTreeMap::new();
        for &(k, t) in &records {
            for start in (0..=t).filter(|s| s % 4 == 0 && t < s + 10) {
                *expected.entry(w(k, start, start + 10)).or_insert(0) += 1;
            }
        }
        assert_eq!(fold(changes(&d)?), expected, "seed {seed}: {records:?}");
    }
    Ok(())
}

#[test]
fn time_windowed_reduce_and_aggregate() -> Result<()> {
    let b = StreamsBuilder::new();
    let grouped = b.stream::<String, i64>("in").group_by_key();
    let tumbling = grouped.windowed_by(TimeWindows::of_size_no_grace(ms(10)));
    tumbling.reduce(|a, v| a + v).to_changelog_stream().to("sums");
    tumbling.aggregate(String::new, |k, v, acc| format!("{acc}{k}{v};")).to_changelog_stream().to("trail");
    let mut d = TopologyTestDriver::new(b.build()?)?;
    let mut input = d.input::<String, i64>("in");
    for (v, ts) in [(5, 1), (7, 2), (1, 12), (2, 9)] {
        input.pipe_at(&mut d, "k".into(), v, ts)?;
    }
    let sums = d.output::<W, Option<i64>>("sums").read_key_values()?;
    assert_eq!(sums, vec![(w("k", 0, 10), Some(5)), (w("k", 0, 10), Some(12)), (w("k", 10, 20), Some(1))], "k@9 is late (stream time 12)");
    let trail = d.output::<W, Option<String>>("trail").read_key_values()?;
    assert_eq!(trail, vec![(w("k", 0, 10), Some("k5;".into())), (w("k", 0, 10), Some("k5;k7;".into())), (w("k", 10, 20), Some("k1;".into()))]);
    assert_eq!(d.metrics().dropped_late, 2, "one per aggregation");
    Ok(())
}

#[test]
fn windowed_count_after_a_key_change_repartitions() -> Result<()> {
    let b = StreamsBuilder::new();
    b.stream::<String, String>("lines")
        .flat_map_values(|l: String| l.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        .group_by(|_, word: &String| word.clone())
        .windowed_by(TimeWindows::of_size_no_grace(ms(100)))
        .count_with(Materialized::named("word-counts"))
        .to_changelog_stream()
        .to("out");
    let topo = b.build()?;
    assert!(topo.describe().contains("word-counts-repartition"), "{}", topo.describe());
    let mut d = TopologyTestDriver::new(topo)?;
    let mut input = d.input::<String, String>("lines");
    input.pipe_at(&mut d, "x".into(), "a b a".into(), 5)?;
    input.pipe_at(&mut d, "y".into(), "b".into(), 150)?;
    assert_eq!(fold(changes(&d)?), BTreeMap::from([(w("a", 0, 100), 2), (w("b", 0, 100), 1), (w("b", 100, 200), 1)]));
    assert_eq!(d.window_store::<String, i64>("word-counts")?.fetch(&"b".to_string(), 0, 1000)?, vec![(0, 1), (100, 1)]);
    Ok(())
}

#[test]
fn sliding_windows_follow_kip_450() -> Result<()> {
    let b = StreamsBuilder::new();
    counted(&b).windowed_by_sliding(SlidingWindows::of_time_difference_and_grace(ms(10), ms(5))).count_with(Materialized::named("slide")).to_changelog_stream().to("out");
    let topo = b.build()?;
    assert!(topo.store_names().contains(&"slide-timestamps".to_string()), "{:?}", topo.store_names());
    let mut d = TopologyTestDriver::new(topo)?;
    // 5 is early: it goes to [0, 10]. 12 gets its left window [2, 12] (with 5) and is the
    // first record of 5's right window [6, 16]. 30 is alone in [20, 30].
    pipe(&mut d, &[("a", 5), ("a", 12), ("a", 30)])?;
    let recs = d.output::<W, Option<i64>>("out").read_records()?;
    let got: Vec<(W, Option<i64>, i64)> = recs.into_iter().map(|r| (r.key, r.value, r.timestamp)).collect();
    assert_eq!(got, vec![(w("a", 0, 10), Some(1), 5), (w("a", 6, 16), Some(1), 12), (w("a", 2, 12), Some(2), 12), (w("a", 20, 30), Some(1), 30)]);
    // 25 (within grace: [15, 25] closes after 25 + 5) adds to [20, 30], gets its left
    // window [15, 25] and its right window [26, 36], a copy of the window holding what
    // follows it (30). Results carry the window's latest record time, as in Kafka.
    pipe(&mut d, &[("a", 25)])?;
    let got: Vec<(W, Option<i64>, i64)> = d.output::<W, Option<i64>>("out").read_records()?.into_iter().map(|r| (r.key, r.value, r.timestamp)).collect();
    assert_eq!(got, vec![(w("a", 20, 30), Some(2), 30), (w("a", 15, 25), Some(1), 25), (w("a", 26, 36), Some(1), 30)]);
    // Every window holding 14 ends by 24, closed at stream time 30: dropped whole.
    pipe(&mut d, &[("a", 14)])?;
    assert_eq!(changes(&d)?, vec![]);
    assert_eq!(d.metrics().dropped_late, 1);
    // 15 is late for [6, 16], for 12's right window [13, 23] and for its own left window
    // [5, 15] (three drops), but [15, 25] is open (its end is inclusive) and 15's right
    // window [16, 26] (holding 25) is new.
    pipe(&mut d, &[("a", 15)])?;
    assert_eq!(changes(&d)?, vec![(w("a", 15, 25), Some(2)), (w("a", 16, 26), Some(1))]);
    assert_eq!(d.metrics().dropped_late, 4);
    let stored = d.window_store::<String, i64>("slide")?.fetch(&"a".to_string(), 0, 100)?;
    assert_eq!(stored, vec![(0, 1), (2, 2), (6, 1), (15, 2), (16, 1), (20, 2), (26, 1)]);
    Ok(())
}

/// The sliding windows of `times` (KIP-450): the left window of each record (the shared
/// `[0, d]` for records before `d`), and the right window of each record followed by
/// another within `d + 1`, each with the count of records in it (both ends inclusive).
fn brute_force_sliding(key: &str, times: &[i64], d: i64) -> BTreeMap<W, i64> {
    let mut windows = BTreeSet::new();
    for &t in times {
        windows.insert(if t < d { (0, d) } else { (t - d, t) });
        if times.iter().any(|&u| u > t && u <= t + 1 + d) {
            windows.insert((t + 1, t + 1 + d));
        }
    }
    windows.into_iter().map(|(s, e)| (w(key, s, e), times.iter().filter(|&&t| s <= t && t <= e).count() as i64)).collect()
}

#[test]
fn sliding_windows_match_a_brute_force_reference() -> Result<()> {
    for seed in 1..=25u64 {
        let b = StreamsBuilder::new();
        counted(&b).windowed_by_sliding(SlidingWindows::of_time_difference_and_grace(ms(10), ms(1000))).count_with(Materialized::named("slide")).to_changelog_stream().to("out");
        let mut d = TopologyTestDriver::new(b.build()?)?;
        let records = Rng(seed * 104_729).records(30, 70);
        pipe(&mut d, &records)?;
        let mut expected = BTreeMap::new();
        for key in ["a", "b", "c"] {
            let times: Vec<i64> = records.iter().filter(|r| r.0 == key).map(|r| r.1).collect();
            let windows = brute_force_sliding(key, &times, 10);
            let stored = d.window_store::<String, i64>("slide")?.fetch(&key.to_string(), i64::MIN, i64::MAX)?;
            let want: Vec<(i64, i64)> = windows.iter().map(|(k, v)| (k.window.start, *v)).collect();
            assert_eq!(stored, want, "seed {seed}, key {key}: {times:?}");
            expected.extend(windows);
        }
        assert_eq!(fold(changes(&d)?), expected, "seed {seed}: {records:?}");
        assert_eq!(d.metrics().dropped_late, 0);
    }
    Ok(())
}

#[test]
fn sessions_merge_and_retract_absorbed_sessions() -> Result<()> {
    let b = StreamsBuilder::new();
    counted(&b).windowed_by_session(SessionWindows::of_inactivity_gap_no_grace(ms(10))).count().to_changelog_stream().to("out");
    let mut d = TopologyTestDriver::new(b.build()?)?;
    pipe(&mut d, &[("a", 0), ("a", 5), ("a", 25)])?;
    assert_eq!(changes(&d)?, vec![(w("a", 0, 0), Some(1)), (w("a", 0, 0), None), (w("a", 0, 5), Some(2)), (w("a", 25, 25), Some(1))]);
    // 15 is within the gap of both sessions: one session [0, 25], the two old rows retracted.
    pipe(&mut d, &[("a", 15)])?;
    assert_eq!(changes(&d)?, vec![(w("a", 0, 5), None), (w("a", 25, 25), None), (w("a", 0, 25), Some(4))]);
    // Inside a session: an update in place, nothing retracted.
    pipe(&mut d, &[("a", 10)])?;
    assert_eq!(changes(&d)?, vec![(w("a", 0, 25), Some(5))]);
    // Stream time 100: a@40 would start a session ending at 40 < 100, it is late. a@95
    // joins [100, 100]; lateness is judged by the merged session's end, as Kafka.
    pipe(&mut d, &[("a", 100), ("a", 40), ("a", 95)])?;
    assert_eq!(changes(&d)?, vec![(w("a", 100, 100), Some(1)), (w("a", 100, 100), None), (w("a", 95, 100), Some(2))]);
    assert_eq!(d.metrics().dropped_late, 1);
    Ok(())
}

#[test]
fn sessions_match_a_brute_force_reference() -> Result<()> {
    for seed in 1..=15u64 {
        let b = StreamsBuilder::new();
        counted(&b).windowed_by_session(SessionWindows::of_inactivity_gap_and_grace(ms(6), ms(1000))).count().to_changelog_stream().to("out");
        let mut d = TopologyTestDriver::new(b.build()?)?;
        let records = Rng(seed * 15_485_863).records(30, 120);
        pipe(&mut d, &records)?;
        let mut expected = BTreeMap::new();
        for key in ["a", "b", "c"] {
            let mut times: Vec<i64> = records.iter().filter(|r| r.0 == key).map(|r| r.1).collect();
            times.sort();
            let mut i = 0;
            while i < times.len() {
                let mut j = i;
                while j + 1 < times.len() && times[j + 1] - times[j] <= 6 {
                    j += 1;
                }
                expected.insert(w(key, times[i], times[j]), (j - i + 1) as i64);
                i = j + 1;
            }
        }
        assert_eq!(fold(changes(&d)?), expected, "seed {seed}: {records:?}");
    }
    Ok(())
}

#[test]
fn session_reduce_and_aggregate_merge_aggregates() -> Result<()> {
    let b = StreamsBuilder::new();
    let sessions = b.stream::<String, i64>("in").group_by_key().windowed_by_session(SessionWindows::of_inactivity_gap_no_grace(ms(10)));
    sessions.reduce(|a, v| a.max(v)).to_changelog_stream().to("max");
    sessions.aggregate(|| 100i64, |_k, v, acc| acc + v, |_k, a, b| a + b).to_changelog_stream().to("sum");
    let mut d = TopologyTestDriver::new(b.build()?)?;
    let mut input = d.input::<String, i64>("in");
    for (v, ts) in [(3, 0), (9, 20), (4, 10)] {
        input.pipe_at(&mut d, "k".into(), v, ts)?;
    }
    let max = d.output::<W, Option<i64>>("max").read_key_values()?;
    assert_eq!(max.last(), Some(&(w("k", 0, 20), Some(9))));
    assert_eq!(fold(max), BTreeMap::from([(w("k", 0, 20), 9)]));
    // Kafka's order: init (100), merge each session in (100 + 103 + 109), then add 4.
    let sum = d.output::<W, Option<i64>>("sum").read_key_values()?;
    assert_eq!(fold(sum), BTreeMap::from([(w("k", 0, 20), 316)]));
    Ok(())
}

#[test]
fn suppress_emits_one_final_result_per_window() -> Result<()> {
    let b = StreamsBuilder::new();
    counted(&b)
        .windowed_by(TimeWindows::of_size_with_grace(ms(10), ms(5)))
        .count()
        .suppress(Suppressed::until_window_closes().with_name("final"))
        .to_changelog_stream()
        .to("out");
    let topo = b.build()?;
    assert!(topo.store_names().contains(&"final-store".to_string()), "the buffer is a state store: {:?}", topo.store_names());
    let mut d = TopologyTestDriver::new(topo)?;
    let out = d.output::<W, Option<i64>>("out");
    pipe(&mut d, &[("a", 1), ("a", 3), ("b", 4), ("a", 12), ("a", 8)])?;
    assert!(out.is_empty(), "[0, 10) closes at 15; nothing before: {:?}", out.read_key_values()?);
    assert_eq!(d.kv_store::<Vec<u8>, Vec<u8>>("final-store")?.all()?.len(), 2 * 3, "index + queue entry per held window");
    // c@16 closes [0, 10) for every key.
    pipe(&mut d, &[("c", 16)])?;
    let recs = out.read_records()?;
    let got: Vec<(W, Option<i64>, i64)> = recs.into_iter().map(|r| (r.key, r.value, r.timestamp)).collect();
    assert_eq!(got, vec![(w("a", 0, 10), Some(3), 8), (w("b", 0, 10), Some(1), 4)], "final values, with their last update's time");
    // Late records change nothing; open windows stay held.
    pipe(&mut d, &[("a", 9), ("a", 18), ("a", 19)])?;
    assert!(out.is_empty());
    assert_eq!(d.metrics().dropped_late, 1);
    pipe(&mut d, &[("x", 40)])?;
    assert_eq!(out.read_key_values()?, vec![(w("a", 10, 20), Some(3)), (w("c", 10, 20), Some(1))]);
    pipe(&mut d, &[("x", 1000)])?;
    assert_eq!(out.read_key_values()?, vec![(w("x", 40, 50), Some(1))]);
    assert_eq!(d.kv_store::<Vec<u8>, Vec<u8>>("final-store")?.all()?.len(), 2, "only x@1000's window is held");
    Ok(())
}

#[test]
fn suppress_emits_when_records_that_never_reach_it_advance_stream_time() -> Result<()> {
    let b = StreamsBuilder::new();
    b.stream::<String, i64>("in")
        .filter(|_, v| *v > 0)
        .group_by_key()
        .windowed_by(TimeWindows::of_size_no_grace(ms(10)))
        .count()
        .suppress(Suppressed::until_window_closes())
        .to_changelog_stream()
        .to("out");
    let mut d = TopologyTestDriver::new(b.build()?)?;
    let mut input = d.input::<String, i64>("in");
    input.pipe_at(&mut d, "a".into(), 1, 2)?;
    input.pipe_at(&mut d, "a".into(), 1, 7)?;
    let out = d.output::<W, Option<i64>>("out");
    assert!(out.is_empty());
    // Filtered out before the aggregation, but it moves the task's stream time to 10.
    input.pipe_at(&mut d, "z".into(), -1, 10)?;
    assert_eq!(out.read_key_values()?, vec![(w("a", 0, 10), Some(2))]);
    Ok(())
}

#[test]
fn suppressed_sessions_wait_for_the_gap_and_skip_retractions() -> Result<()> {
    let b = StreamsBuilder::new();
    counted(&b).windowed_by_session(SessionWindows::of_inactivity_gap_no_grace(ms(10))).count().suppress(Suppressed::until_window_closes()).to_changelog_stream().to("out");
    let mut d = TopologyTestDriver::new(b.build()?)?;
    let out = d.output::<W, Option<i64>>("out");
    // [0, 5] can still grow until a record at 15 arrives, so it is final after 15.
    pipe(&mut d, &[("a", 0), ("a", 5), ("b", 15)])?;
    assert!(out.is_empty());
    pipe(&mut d, &[("c", 16)])?;
    assert_eq!(out.read_key_values()?, vec![(w("a", 0, 5), Some(2))], "the retracted [0, 0] is never emitted");
    pipe(&mut d, &[("b", 20), ("z", 100)])?;
    // Final results come in close-time order: c's session ends first.
    assert_eq!(out.read_key_values()?, vec![(w("c", 16, 16), Some(1)), (w("b", 15, 20), Some(2))]);
    Ok(())
}

#[test]
fn suppressed_sliding_windows_close_after_their_inclusive_end() -> Result<()> {
    let b = StreamsBuilder::new();
    counted(&b).windowed_by_sliding(SlidingWindows::of_time_difference_no_grace(ms(10))).count().suppress(Suppressed::until_window_closes()).to_changelog_stream().to("out");
    let mut d = TopologyTestDriver::new(b.build()?)?;
    let out = d.output::<W, Option<i64>>("out");
    // At stream time 20, [10, 20] still takes a record at 20 (time windows would not).
    pipe(&mut d, &[("a", 20), ("a", 20)])?;
    assert!(out.is_empty());
    pipe(&mut d, &[("b", 21)])?;
    assert_eq!(out.read_key_values()?, vec![(w("a", 10, 20), Some(2))]);
    pipe(&mut d, &[("z", 100)])?;
    assert_eq!(out.read_key_values()?, vec![(w("b", 11, 21), Some(1))]);
    assert_eq!(d.metrics().dropped_late, 0);
    Ok(())
}

#[test]
fn suppress_until_time_limit_rate_limits_updates() -> Result<()> {
    let b = StreamsBuilder::new();
    counted(&b).windowed_by(TimeWindows::of_size_no_grace(ms(100))).count().suppress(Suppressed::until_time_limit(ms(10))).to_changelog_stream().to("out");
    let mut d = TopologyTestDriver::new(b.build()?)?;
    let out = d.output::<W, Option<i64>>("out");
    pipe(&mut d, &[("a", 1), ("a", 3), ("a", 5)])?;
    assert!(out.is_empty());
    // 10 ms after the first held update, the latest value goes out (this record included).
    pipe(&mut d, &[("a", 11)])?;
    assert_eq!(out.read_key_values()?, vec![(w("a", 0, 100), Some(4))]);
    pipe(&mut d, &[("a", 12), ("b", 30)])?;
    assert_eq!(out.read_key_values()?, vec![(w("a", 0, 100), Some(5))]);
    Ok(())
}

#[test]
fn suppress_finds_the_window_through_table_operations() -> Result<()> {
    let b = StreamsBuilder::new();
    counted(&b)
        .windowed_by(TimeWindows::of_size_no_grace(ms(10)))
        .count()
        .filter(|_, n| *n >= 2)
        .map_values(|_, n| n * 100)
        .suppress(Suppressed::until_window_closes())
        .to_changelog_stream()
        .to("out");
    let mut d = TopologyTestDriver::new(b.build()?)?;
    pipe(&mut d, &[("a", 1), ("b", 2), ("a", 3), ("a", 4), ("c", 10)])?;
    // b's only row was filtered out, so it has no final result.
    assert_eq!(d.output::<W, Option<i64>>("out").read_key_values()?, vec![(w("a", 0, 10), Some(300))]);
    Ok(())
}

#[test]
fn invalid_windows_and_unwindowed_suppression_fail_the_build() {
    let b = StreamsBuilder::new();
    counted(&b).windowed_by(TimeWindows::of_size_no_grace(ms(10)).advance_by(ms(20))).count();
    let e = b.build().unwrap_err().to_string();
    assert!(e.contains("advance"), "{e}");

    let b = StreamsBuilder::new();
    counted(&b).windowed_by_session(SessionWindows::of_inactivity_gap_no_grace(Duration::ZERO)).count();
    let e = b.build().unwrap_err().to_string();
    assert!(e.contains("gap"), "{e}");

    let b = StreamsBuilder::new();
    b.table::<W, i64>("t").suppress(Suppressed::until_window_closes()).to_changelog_stream().to("out");
    let e = b.build().unwrap_err().to_string();
    assert!(e.contains("windowed aggregation"), "{e}");
}

#[test]
fn windowed_keys_are_written_as_key_start_end() -> Result<()> {
    let b = StreamsBuilder::new();
    counted(&b).windowed_by(TimeWindows::of_size_no_grace(ms(10))).count().to_stream().to("out");
    let mut d = TopologyTestDriver::new(b.build()?)?;
    pipe(&mut d, &[("ab", 12)])?;
    let raw = d.output::<Vec<u8>, i64>("out").read_key_values()?;
    let mut key = b"ab".to_vec();
    key.extend_from_slice(&10i64.to_be_bytes());
    key.extend_from_slice(&20i64.to_be_bytes());
    assert_eq!(raw, vec![(key, 1)]);
    Ok(())
}
