//! TopologyTestDriver acceptance tests of the joins: each join kind is fed a deterministic
//! pseudo-random interleaving of both inputs (out of order, for the windowed ones), and its
//! output must match a brute-force reference computed here from the same inputs. Table
//! joins are also checked after every input, and every emitted `Change`'s `old` must be the
//! `new` emitted before it for that key.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use samsa_streams::{Change, JoinWindows, KTable, Result, StreamsBuilder, TopologyTestDriver};

/// SplitMix64: deterministic inputs; failures name the seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// The joiner every test uses: both sides, `-` for a missing one.
fn show(l: Option<impl ToString>, r: Option<impl ToString>) -> String {
    format!("{}~{}", l.map_or("-".to_string(), |v| v.to_string()), r.map_or("-".to_string(), |v| v.to_string()))
}

/// [`show`] as an outer joiner.
fn show_refs<A: ToString, B: ToString>(l: Option<&A>, r: Option<&B>) -> String {
    show(l.map(A::to_string), r.map(B::to_string))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Inner,
    Left,
    Outer,
}

const KINDS: [Kind; 3] = [Kind::Inner, Kind::Left, Kind::Outer];

// ---- stream-stream -------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Event {
    left: bool,
    key: String,
    id: i64,
    ts: i64,
}

/// Events of both sides, mostly in time order, a quarter of them up to 60 ms late.
fn stream_events(seed: u64, n: i64) -> Vec<Event> {
    let mut rng = Rng(seed);
    let mut now = 1_000i64;
    (0..n)
        .map(|id| {
            now += rng.below(7) as i64;
            let ts = if rng.chance(25) { now - rng.below(60) as i64 } else { now };
            Event { left: rng.chance(50), key: format!("k{}", rng.below(4)), id, ts }
        })
        .collect()
}

type Out = (String, String, i64);

/// Brute force: records later than grace behind stream time are dropped; every pair of
/// kept records within the window joins; a kept record without a partner gets a `None`
/// result if its window closed by the final stream time. Returns (results, dropped).
fn stream_reference(events: &[Event], w: JoinWindows, kind: Kind) -> (Vec<Out>, u64) {
    let (before, after, grace) = (w.before_ms(), w.after_ms(), w.grace_ms());
    let mut time = i64::MIN;
    let mut kept = Vec::new();
    let mut dropped = 0;
    for e in events {
        if e.ts + grace < time {
            dropped += 1;
            continue;
        }
        time = time.max(e.ts);
        kept.push(e.clone());
    }
    let joins = |l: &Event, r: &Event| l.key == r.key && r.ts >= l.ts - before && r.ts <= l.ts + after;
    let mut out = Vec::new();
    for l in kept.iter().filter(|e| e.left) {
        for r in kept.iter().filter(|e| !e.left && joins(l, e)) {
            out.push((l.key.clone(), show(Some(l.id), Some(format!("r{}", r.id))), l.ts.max(r.ts)));
        }
    }
    for e in &kept {
        let partnered = kept.iter().any(|o| o.left != e.left && if e.left { joins(e, o) } else { joins(o, e) });
        let look = if e.left { after } else { before };
        let wanted = if e.left { kind != Kind::Inner } else { kind == Kind::Outer };
        if wanted && !partnered && time > e.ts + look + grace {
            let v = if e.left { show(Some(e.id), None::<String>) } else { show(None::<i64>, Some(format!("r{}", e.id))) };
            out.push((e.key.clone(), v, e.ts));
        }
    }
    out.sort();
    (out, dropped)
}

fn stream_join_topology(kind: Kind, w: JoinWindows, rekey: bool) -> Result<samsa_streams::Topology> {
    let b = StreamsBuilder::new();
    let mut left = b.stream::<String, i64>("left");
    if rekey {
        left = left.select_key(|k, _| k.trim_start_matches("raw-").to_string());
    }
    let right = b.stream::<String, String>("right");
    let joined = match kind {
        Kind::Inner => left.join(&right, |l, r| show(Some(l), Some(r)), w),
        Kind::Left => left.left_join(&right, |l, r| show(Some(l), r), w),
        Kind::Outer => left.outer_join(&right, show_refs, w),
    };
    joined.to("out");
    b.build()
}

#[test]
fn stream_stream_joins_match_reference() -> Result<()> {
    let windows = [
        JoinWindows::of_time_difference_and_grace(Duration::from_millis(20), Duration::from_millis(15)),
        JoinWindows::of_time_difference_without_grace(Duration::from_millis(10)).after(Duration::from_millis(25)),
        JoinWindows::of_time_difference_and_grace(Duration::from_millis(30), Duration::from_millis(40)).before(Duration::from_millis(5)),
    ];
    let (mut matched, mut unmatched, mut late) = (0, 0, 0);
    for seed in 1..=4u64 {
        for (wi, &w) in windows.iter().enumerate() {
            for kind in KINDS {
                let rekey = seed % 2 == 0;
                let ctx = format!("seed {seed}, windows #{wi}, {kind:?}, rekeyed {rekey}");
                let topo = stream_join_topology(kind, w, rekey)?;
                assert_eq!(topo.describe().contains("-repartition"), rekey, "{ctx}: only a re-keyed side is repartitioned");
                let mut d = TopologyTestDriver::new(topo)?;
                let (mut li, mut ri) = (d.input::<String, i64>("left"), d.input::<String, String>("right"));
                let out = d.output::<String, String>("out");
                let events = stream_events(seed * 7919 + wi as u64, 300);
                let mut got = Vec::new();
                let mut time = i64::MIN;
                for e in &events {
                    if e.left {
                        let k = if rekey { format!("raw-{}", e.key) } else { e.key.clone() };
                        li.pipe_at(&mut d, k, e.id, e.ts)?;
                    } else {
                        ri.pipe_at(&mut d, e.key.clone(), format!("r{}", e.id), e.ts)?;
                    }
                    if e.ts + w.grace_ms() >= time {
                        time = time.max(e.ts);
                    }
                    for r in out.read_records()? {
                        // Never early: a `None` result only once its window has closed.
                        if r.value.ends_with("~-") {
                            assert!(time > r.timestamp + w.after_ms() + w.grace_ms(), "{ctx}: {r:?} emitted at stream time {time}");
                        } else if r.value.starts_with("-~") {
                            assert!(time > r.timestamp + w.before_ms() + w.grace_ms(), "{ctx}: {r:?} emitted at stream time {time}");
                        }
                        got.push((r.key, r.value, r.timestamp));
                    }
                }
                got.sort();
                let (want, dropped) = stream_reference(&events, w, kind);
                assert_eq!(got, want, "{ctx}");
                assert_eq!(d.metrics().dropped_late, dropped, "{ctx}");
                matched += want.iter().filter(|o| !o.1.contains('-')).count();
                unmatched += want.iter().filter(|o| o.1.contains('-')).count();
                late += dropped;
            }
        }
    }
    assert!(matched > 500 && unmatched > 100 && late > 50, "the inputs exercise every path: {matched} joined, {unmatched} unmatched, {late} late");
    Ok(())
}

#[test]
fn stream_stream_left_join_waits_for_the_window_to_close() -> Result<()> {
    let w = JoinWindows::of_time_difference_and_grace(Duration::from_millis(10), Duration::from_millis(5));
    let topo = stream_join_topology(Kind::Left, w, false)?;
    let mut d = TopologyTestDriver::new(topo)?;
    let (mut l, mut r) = (d.input::<String, i64>("left"), d.input::<String, String>("right"));
    let out = d.output::<String, String>("out");
    l.pipe_at(&mut d, "k".into(), 1, 100)?;
    r.pipe_at(&mut d, "other".into(), "x".into(), 112)?;
    assert!(out.is_empty(), "the window of 1@100 is open until stream time 115");
    r.pipe_at(&mut d, "k".into(), "a".into(), 109)?;
    assert_eq!(out.read_records()?.into_iter().map(|r| (r.value, r.timestamp)).collect::<Vec<_>>(), vec![("1~a".to_string(), 109)], "3 ms late is within grace");
    l.pipe_at(&mut d, "k".into(), 2, 120)?;
    r.pipe_at(&mut d, "other".into(), "y".into(), 135)?;
    assert!(out.is_empty(), "stream time 135 is not past 120 + 10 + 5");
    r.pipe_at(&mut d, "other".into(), "z".into(), 136)?;
    assert_eq!(out.read_records()?.into_iter().map(|r| (r.key, r.value, r.timestamp)).collect::<Vec<_>>(), vec![("k".to_string(), "2~-".to_string(), 120)]);
    r.pipe_at(&mut d, "k".into(), "late".into(), 121)?;
    assert!(out.is_empty(), "a record 15 ms behind stream time is dropped, not joined with 2@120");
    assert_eq!(d.metrics().dropped_late, 1);
    Ok(())
}

#[test]
fn null_keys_join_nothing_but_left_joins_keep_them() -> Result<()> {
    for kind in KINDS {
        let b = StreamsBuilder::new();
        let left = b.stream::<Option<String>, i64>("left");
        let right = b.stream::<Option<String>, String>("right");
        let w = JoinWindows::of_time_difference_without_grace(Duration::from_millis(10));
        let joined = match kind {
            Kind::Inner => left.join(&right, |l, r| show(Some(l), Some(r)), w),
            Kind::Left => left.left_join(&right, |l, r| show(Some(l), r), w),
            Kind::Outer => left.outer_join(&right, show_refs, w),
        };
        joined.to("out");
        let mut d = TopologyTestDriver::new(b.build()?)?;
        let (mut l, mut r) = (d.input::<Option<String>, i64>("left"), d.input::<Option<String>, String>("right"));
        l.pipe_at(&mut d, None, 1, 100)?;
        r.pipe_at(&mut d, None, "a".into(), 100)?;
        let got = d.output::<Option<String>, String>("out").read_key_values()?;
        let want: Vec<(Option<String>, String)> = match kind {
            Kind::Inner => vec![],
            Kind::Left => vec![(None, "1~-".into())],
            Kind::Outer => vec![(None, "1~-".into()), (None, "-~a".into())],
        };
        assert_eq!(got, want, "{kind:?}: a null key never matches; left/outer joins emit it at once (KIP-962)");
    }
    Ok(())
}

// ---- stream-table and stream-globaltable ---------------------------------------------

#[test]
fn stream_table_joins_match_reference() -> Result<()> {
    for seed in 1..=6u64 {
        for left in [false, true] {
            let rekey = seed % 2 == 0;
            let ctx = format!("seed {seed}, left {left}, rekeyed {rekey}");
            let b = StreamsBuilder::new();
            let table = b.table::<String, String>("table");
            let mut events = b.stream::<String, i64>("events");
            if rekey {
                events = events.select_key(|k, _| k.trim_start_matches("raw-").to_string());
            }
            let joined = if left { events.left_join_table(&table, |v, t| show(Some(v), t)) } else { events.join_table(&table, |v, t| show(Some(v), Some(t))) };
            joined.to("out");
            let mut d = TopologyTestDriver::new(b.build()?)?;
            let (mut ti, mut ei) = (d.input::<String, String>("table"), d.input::<String, i64>("events"));
            let out = d.output::<String, String>("out");
            let mut rng = Rng(seed * 31 + left as u64);
            let mut model: BTreeMap<String, String> = BTreeMap::new();
            for id in 0..400i64 {
                let key = format!("k{}", rng.below(5));
                let ts = 1_000 + id;
                let mut want = Vec::new();
                if rng.chance(40) {
                    if rng.chance(25) {
                        ti.pipe_tombstone(&mut d, key.clone(), ts)?;
                        model.remove(&key);
                    } else {
                        ti.pipe_at(&mut d, key.clone(), format!("t{id}"), ts)?;
                        model.insert(key, format!("t{id}"));
                    }
                } else {
                    let k = if rekey { format!("raw-{key}") } else { key.clone() };
                    ei.pipe_at(&mut d, k, id, ts)?;
                    match model.get(&key) {
                        Some(t) => want.push((key, show(Some(id), Some(t)))),
                        None if left => want.push((key, show(Some(id), None::<String>))),
                        None => {}
                    }
                }
                assert_eq!(out.read_key_values()?, want, "{ctx}, input {id} (table updates emit nothing)");
            }
        }
    }
    Ok(())
}

#[test]
fn stream_global_table_joins_match_reference() -> Result<()> {
    for seed in 1..=6u64 {
        for left in [false, true] {
            let ctx = format!("seed {seed}, left {left}");
            let b = StreamsBuilder::new();
            let global = b.global_table::<String, String>("global");
            let events = b.stream::<String, String>("events");
            let select = |_: &String, v: &String| v.split('|').next().unwrap_or_default().to_string();
            let joined = if left { events.left_join_global(&global, select, |v, g| show(Some(v), g)) } else { events.join_global(&global, select, |v, g| show(Some(v), Some(g))) };
            joined.to("out");
            let mut d = TopologyTestDriver::new(b.build()?)?;
            let (mut gi, mut ei) = (d.input::<String, String>("global"), d.input::<String, String>("events"));
            let out = d.output::<String, String>("out");
            let mut rng = Rng(seed * 131 + left as u64);
            let mut model: BTreeMap<String, String> = BTreeMap::new();
            for id in 0..300i64 {
                let gkey = format!("g{}", rng.below(4));
                let mut want = Vec::new();
                if rng.chance(35) {
                    if rng.chance(25) {
                        gi.pipe_tombstone(&mut d, gkey.clone(), id)?;
                        model.remove(&gkey);
                    } else {
                        gi.pipe_at(&mut d, gkey.clone(), format!("G{id}"), id)?;
                        model.insert(gkey, format!("G{id}"));
                    }
                } else {
                    // The stream's own key is unrelated to the global key it selects.
                    let key = format!("s{}", rng.below(3));
                    let value = format!("{gkey}|{id}");
                    ei.pipe_at(&mut d, key.clone(), value.clone(), id)?;
                    match model.get(&gkey) {
                        Some(g) => want.push((key, show(Some(&value), Some(g)))),
                        None if left => want.push((key, show(Some(&value), None::<String>))),
                        None => {}
                    }
                }
                assert_eq!(out.read_key_values()?, want, "{ctx}, input {id}");
            }
        }
    }
    Ok(())
}

// ---- table-table ---------------------------------------------------------------------

type ChangeLog = Arc<Mutex<Vec<(String, Change<String>)>>>;

/// Collects a table's changes as they are emitted.
fn record_changes(t: &KTable<String, String>) -> ChangeLog {
    let log: ChangeLog = Arc::default();
    let l = log.clone();
    t.to_change_stream().foreach(move |k, ch| l.lock().unwrap().push((k.clone(), ch.clone())));
    log
}

/// Applies new changes to `table` (the join result as emitted so far), checking that each
/// change's `old` is the value the previous change of its key set.
fn apply_changes(log: &ChangeLog, table: &mut BTreeMap<String, String>, ctx: &str) {
    for (k, ch) in log.lock().unwrap().drain(..) {
        assert_eq!(ch.old.as_ref(), table.get(&k), "{ctx}: key {k}: `old` is not the previously emitted result");
        assert!(ch.new.is_some() || ch.old.is_some(), "{ctx}: key {k}: an empty change");
        match ch.new {
            Some(v) => table.insert(k, v),
            None => table.remove(&k),
        };
    }
}

#[test]
fn table_table_joins_match_reference() -> Result<()> {
    for seed in 1..=6u64 {
        for kind in KINDS {
            let ctx = format!("seed {seed}, {kind:?}");
            let b = StreamsBuilder::new();
            let lt = b.table::<String, i64>("lt");
            let rt = b.table::<String, String>("rt");
            let joined = match kind {
                Kind::Inner => lt.join(&rt, |l, r| show(Some(l), Some(r))),
                Kind::Left => lt.left_join(&rt, |l, r| show(Some(l), r)),
                Kind::Outer => lt.outer_join(&rt, show_refs),
            };
            let log = record_changes(&joined);
            joined.to_changelog_stream().to("out");
            let mut d = TopologyTestDriver::new(b.build()?)?;
            let (mut li, mut ri) = (d.input::<String, i64>("lt"), d.input::<String, String>("rt"));
            let mut rng = Rng(seed * 17 + kind as u64);
            let (mut lm, mut rm) = (BTreeMap::<String, i64>::new(), BTreeMap::<String, String>::new());
            let mut result = BTreeMap::new();
            for id in 0..400i64 {
                let key = format!("k{}", rng.below(6));
                let delete = rng.chance(20);
                if rng.chance(50) {
                    if delete {
                        li.pipe_tombstone(&mut d, key.clone(), id)?;
                        lm.remove(&key);
                    } else {
                        li.pipe_at(&mut d, key.clone(), id, id)?;
                        lm.insert(key, id);
                    }
                } else if delete {
                    ri.pipe_tombstone(&mut d, key.clone(), id)?;
                    rm.remove(&key);
                } else {
                    ri.pipe_at(&mut d, key.clone(), format!("r{id}"), id)?;
                    rm.insert(key, format!("r{id}"));
                }
                apply_changes(&log, &mut result, &ctx);
                let keys: std::collections::BTreeSet<&String> = lm.keys().chain(rm.keys()).collect();
                let want: BTreeMap<String, String> = keys
                    .into_iter()
                    .filter_map(|k| {
                        let (l, r) = (lm.get(k), rm.get(k));
                        let defined = match kind {
                            Kind::Inner => l.is_some() && r.is_some(),
                            Kind::Left => l.is_some(),
                            Kind::Outer => true,
                        };
                        defined.then(|| (k.clone(), show(l, r)))
                    })
                    .collect();
                assert_eq!(result, want, "{ctx}, after input {id}");
            }
            // The changelog topic folds to the same table.
            let mut folded = BTreeMap::new();
            for (k, v) in d.output::<String, Option<String>>("out").read_key_values()? {
                match v {
                    Some(v) => folded.insert(k, v),
                    None => folded.remove(&k),
                };
            }
            assert_eq!(folded, result, "{ctx}: output topic");
        }
    }
    Ok(())
}

// ---- foreign-key table-table ---------------------------------------------------------

/// An order's customer: the part before `|`, none for `-`.
fn customer_of(order: &str) -> Option<String> {
    order.split('|').next().filter(|c| *c != "-").map(str::to_string)
}

#[test]
fn foreign_key_joins_match_reference() -> Result<()> {
    let (mut fk_changes, mut right_deletes, mut null_fks) = (0, 0, 0);
    for seed in 1..=6u64 {
        for left in [false, true] {
            let ctx = format!("seed {seed}, left {left}");
            let b = StreamsBuilder::new();
            let orders = b.table::<String, String>("orders");
            let customers = b.table::<Option<String>, i64>("customers");
            let joined = if left {
                orders.left_join_on_foreign_key(&customers, |o: &String| customer_of(o), |o, c| show(Some(o), c))
            } else {
                orders.join_on_foreign_key(&customers, |o: &String| customer_of(o), |o, c| show(Some(o), Some(c)))
            };
            let log = record_changes(&joined);
            let mut d = TopologyTestDriver::new(b.build()?)?;
            let (mut oi, mut ci) = (d.input::<String, String>("orders"), d.input::<Option<String>, i64>("customers"));
            let mut rng = Rng(seed * 7 + left as u64);
            let (mut om, mut cm) = (BTreeMap::<String, String>::new(), BTreeMap::<String, i64>::new());
            let mut result = BTreeMap::new();
            for id in 0..300i64 {
                let roll = rng.below(100);
                if roll < 45 {
                    let pk = format!("o{}", rng.below(6));
                    let customer = if rng.chance(10) { "-".to_string() } else { format!("c{}", rng.below(4)) };
                    let value = format!("{customer}|{id}");
                    if om.get(&pk).is_some_and(|old| customer_of(old) != customer_of(&value)) {
                        fk_changes += 1;
                    }
                    null_fks += (customer == "-") as u32;
                    oi.pipe_at(&mut d, pk.clone(), value.clone(), id)?;
                    om.insert(pk, value);
                } else if roll < 55 {
                    let pk = format!("o{}", rng.below(6));
                    oi.pipe_tombstone(&mut d, pk.clone(), id)?;
                    om.remove(&pk);
                } else if roll < 88 {
                    let c = format!("c{}", rng.below(4));
                    ci.pipe_at(&mut d, Some(c.clone()), id, id)?;
                    cm.insert(c, id);
                } else {
                    let c = format!("c{}", rng.below(4));
                    right_deletes += cm.contains_key(&c) as u32;
                    ci.pipe_tombstone(&mut d, Some(c.clone()), id)?;
                    cm.remove(&c);
                }
                apply_changes(&log, &mut result, &ctx);
                let want: BTreeMap<String, String> = om
                    .iter()
                    .filter_map(|(pk, o)| {
                        let c = customer_of(o).and_then(|c| cm.get(&c));
                        (left || c.is_some()).then(|| (pk.clone(), show(Some(o), c)))
                    })
                    .collect();
                assert_eq!(result, want, "{ctx}, after input {id}");
            }
            // Unsubscribing leaks nothing: one subscription per row with a foreign key.
            let store = d.topology().store_names().into_iter().find(|s| s.contains("SUBSCRIPTION-STATE-STORE")).expect("a subscription store");
            let subscriptions = d.kv_store::<Vec<u8>, Vec<u8>>(&store)?.all()?.len();
            assert_eq!(subscriptions, om.values().filter(|o| customer_of(o).is_some()).count(), "{ctx}");
        }
    }
    assert!(fk_changes > 50 && right_deletes > 20 && null_fks > 20, "{fk_changes} FK changes, {right_deletes} right deletes, {null_fks} null FKs");
    Ok(())
}

/// The `(new, old)` pairs logged since the last call.
fn drain(log: &ChangeLog) -> Vec<(Option<String>, Option<String>)> {
    log.lock().unwrap().drain(..).map(|(_, ch)| (ch.new, ch.old)).collect()
}

fn pair(new: Option<&str>, old: Option<&str>) -> (Option<String>, Option<String>) {
    (new.map(str::to_string), old.map(str::to_string))
}

#[test]
fn foreign_key_join_retracts_on_fk_change_and_right_delete() -> Result<()> {
    for left in [false, true] {
        let b = StreamsBuilder::new();
        let orders = b.table::<String, String>("orders");
        let customers = b.table::<Option<String>, String>("customers");
        let joined = if left {
            orders.left_join_on_foreign_key(&customers, |o: &String| customer_of(o), |o, c| show(Some(o), c))
        } else {
            orders.join_on_foreign_key(&customers, |o: &String| customer_of(o), |o, c| show(Some(o), Some(c)))
        };
        let log = record_changes(&joined);
        let mut d = TopologyTestDriver::new(b.build()?)?;
        let (mut oi, mut ci) = (d.input::<String, String>("orders"), d.input::<Option<String>, String>("customers"));
        // Missing right row: the left join's result has `-`, the inner join's is absent.
        let missing = |v: &'static str, old: Option<&'static str>| if left { vec![pair(Some(v), old)] } else { old.map(|o| vec![pair(None, Some(o))]).unwrap_or_default() };
        ci.pipe(&mut d, Some("c1".into()), "Ann".into())?;
        ci.pipe(&mut d, Some("c2".into()), "Bob".into())?;
        assert_eq!(drain(&log), vec![], "right rows alone join nothing");
        oi.pipe(&mut d, "o1".into(), "c1|x".into())?;
        assert_eq!(drain(&log), vec![pair(Some("c1|x~Ann"), None)]);
        oi.pipe(&mut d, "o1".into(), "c2|x".into())?;
        assert_eq!(drain(&log), vec![pair(Some("c2|x~Bob"), Some("c1|x~Ann"))], "a changed foreign key replaces the result");
        ci.pipe(&mut d, Some("c1".into()), "Ann2".into())?;
        assert_eq!(drain(&log), vec![], "the old foreign row no longer reaches o1");
        oi.pipe(&mut d, "o1".into(), "c3|x".into())?;
        assert_eq!(drain(&log), missing("c3|x~-", Some("c2|x~Bob")), "a foreign key without a row retracts the old result");
        ci.pipe(&mut d, Some("c3".into()), "Cid".into())?;
        let prev = if left { Some("c3|x~-") } else { None };
        assert_eq!(drain(&log), vec![pair(Some("c3|x~Cid"), prev)]);
        ci.pipe_tombstone(&mut d, Some("c3".into()), 0)?;
        assert_eq!(drain(&log), missing("c3|x~-", Some("c3|x~Cid")), "deleting the right row retracts the result");
        oi.pipe(&mut d, "o1".into(), "-|x".into())?;
        let prev = if left { Some("c3|x~-") } else { None };
        assert_eq!(drain(&log), if left { vec![pair(Some("-|x~-"), prev)] } else { vec![] }, "a null foreign key joins nothing");
        oi.pipe_tombstone(&mut d, "o1".into(), 0)?;
        assert_eq!(drain(&log), if left { vec![pair(None, Some("-|x~-"))] } else { vec![] }, "deleting the left row deletes its result");
    }
    Ok(())
}
