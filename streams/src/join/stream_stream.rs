//! Stream-stream windowed joins (Kafka's `KStreamKStreamJoin`).
//!
//! ```text
//!  this ──(repartition if re-keyed)── JOINTHIS  (tag This) ──┐
//!                                                           ├─> KSTREAM-JOIN ──> results
//!  other ─(repartition if re-keyed)── JOINOTHER (tag Other) ─┘    stores: this window, other window,
//!                                                                 outer buffer (left/outer joins)
//! ```
//!
//! Both sides go to one node (each tagged with its side), which owns the join's stream time
//! (the largest timestamp either side has shown; Kafka's shared `TimeTracker`). For a record
//! at `t` of key `k`, it looks up the other side's window store (duplicates retained) for `k`
//! in `[t - before, t + after]` (mirrored for the other side), emits one result per match at
//! `max(t, t_other)`, then stores the record.
//!
//! Left and outer joins do not emit a record without a match at once (that result would be
//! spurious if a match arrives later): as Kafka since 3.1 (KAFKA-10847, the spurious-results
//! fix), the record waits in an "outer" key-value store keyed by
//! `(timestamp, side, key)`, leaves it when a match arrives, and is emitted with `None` for
//! the missing side once its window has closed: stream time > `t + after + grace` (a this-side
//! record) or `t + before + grace` (an other-side record).
//!
//! Lateness: a record more than `grace` behind the join's stream time is dropped (counted in
//! `dropped_late`). Kafka instead still joins such a record with what the other window store
//! retains, and emits its unmatched left/outer result at once; that can pair it with a record
//! whose `None` result was already emitted. Dropping it keeps the guarantee that a record gets
//! either its matches or one `None` result, never both: once a record's window has closed,
//! every possible partner is more than `grace` late.

use std::sync::Arc;

use crate::dsl::{Data, KStream};
use crate::error::{Error, Result};
use crate::processor::{Node, NodeCtx, NodeFactory};
use crate::record::{Headers, Rec};
use crate::serde::{DefaultSerde, SerdeRef};
use crate::stores::{key_prefix, split_key, ts_bytes, ts_from, StoreDef, WindowHandle};

use super::{add_node, copartitioned, require_copartitioned, JoinWindows, RawKv};

/// A record of one side of a stream-stream join, on its way to the join node.
#[derive(Debug, Clone)]
enum Side<A, B> {
    This(A),
    Other(B),
}

/// The joiner with optional sides (the inner and left joiners are adapted to it).
type Joiner<V, VO, VR> = Arc<dyn Fn(Option<&V>, Option<&VO>) -> VR + Send + Sync>;

/// Side byte in the outer buffer's keys.
const THIS: u8 = 0;
const OTHER: u8 = 1;

impl<K: Data + DefaultSerde, V: Data + DefaultSerde> KStream<K, V> {
    /// Inner windowed join: one result per pair of same-key records, one from each stream,
    /// whose timestamps are within `windows` (result time: the later of the two).
    pub fn join<VO: Data + DefaultSerde, VR: Data>(
        &self,
        other: &KStream<K, VO>,
        joiner: impl Fn(&V, &VO) -> VR + Send + Sync + 'static,
        windows: JoinWindows,
    ) -> KStream<K, VR> {
        let j: Joiner<V, VO, VR> = Arc::new(move |a, b| joiner(a.expect("inner join: this side"), b.expect("inner join: other side")));
        self.window_join(other, j, windows, false, false)
    }

    /// Left windowed join: the inner join's results, plus `(record, None)` for each record
    /// of this stream that matched nothing, emitted once its window has closed.
    pub fn left_join<VO: Data + DefaultSerde, VR: Data>(
        &self,
        other: &KStream<K, VO>,
        joiner: impl Fn(&V, Option<&VO>) -> VR + Send + Sync + 'static,
        windows: JoinWindows,
    ) -> KStream<K, VR> {
        let j: Joiner<V, VO, VR> = Arc::new(move |a, b| joiner(a.expect("left join: this side"), b));
        self.window_join(other, j, windows, true, false)
    }

    /// Outer windowed join: the inner join's results, plus a result with `None` for each
    /// record of either stream that matched nothing, emitted once its window has closed.
    pub fn outer_join<VO: Data + DefaultSerde, VR: Data>(
        &self,
        other: &KStream<K, VO>,
        joiner: impl Fn(Option<&V>, Option<&VO>) -> VR + Send + Sync + 'static,
        windows: JoinWindows,
    ) -> KStream<K, VR> {
        self.window_join(other, Arc::new(joiner), windows, true, true)
    }

    fn window_join<VO: Data + DefaultSerde, VR: Data>(
        &self,
        other: &KStream<K, VO>,
        joiner: Joiner<V, VO, VR>,
        w: JoinWindows,
        this_outer: bool,
        other_outer: bool,
    ) -> KStream<K, VR> {
        // Kafka's processor names: a side that keeps unmatched records is OUTER.
        let this_prefix = if other_outer { "KSTREAM-OUTERTHIS" } else { "KSTREAM-JOINTHIS" };
        let other_prefix = if this_outer { "KSTREAM-OUTEROTHER" } else { "KSTREAM-JOINOTHER" };
        let this = copartitioned(self, this_prefix);
        let that = copartitioned(other, other_prefix);
        let this_tag: KStream<K, Side<V, VO>> = this.then(this_prefix, false, |ctx, rec| {
            let v = *rec.value.downcast::<V>().expect("internal: value type");
            ctx.forward(Rec { key: rec.key, value: Box::new(Side::<V, VO>::This(v)), ts: rec.ts, headers: rec.headers });
            Ok(())
        });
        let other_tag: KStream<K, Side<V, VO>> = that.then(other_prefix, false, |ctx, rec| {
            let v = *rec.value.downcast::<VO>().expect("internal: value type");
            ctx.forward(Rec { key: rec.key, value: Box::new(Side::<V, VO>::Other(v)), ts: rec.ts, headers: rec.headers });
            Ok(())
        });
        let cfg = {
            let mut b = self.b.lock().unwrap();
            require_copartitioned(&mut b, &[this.node, that.node]);
            // Kafka's join window stores: size before + after, retained for size + grace.
            let (size, retention) = (w.size_ms(), w.size_ms() + w.grace_ms);
            let this_store = format!("{}-store", b.name(this_prefix));
            let other_store = format!("{}-store", b.name(other_prefix));
            b.add_store(StoreDef::window(this_store.clone(), size, retention, true));
            b.add_store(StoreDef::window(other_store.clone(), size, retention, true));
            let outer_store = (this_outer || other_outer).then(|| {
                let name = format!("{}-store", b.name("KSTREAM-OUTERSHARED"));
                b.add_store(StoreDef::key_value(name.clone()));
                name
            });
            Arc::new(Config { this_store, other_store, outer_store, w, this_outer, other_outer, joiner })
        };
        let stores = [Some(cfg.this_store.clone()), Some(cfg.other_store.clone()), cfg.outer_store.clone()].into_iter().flatten().collect();
        let factory: NodeFactory = Arc::new(move || Box::new(WindowJoinNode::<K, V, VO, VR> { cfg: cfg.clone(), open: None }));
        add_node(&self.b, "KSTREAM-JOIN", factory, &[this_tag.node, other_tag.node], stores)
    }
}

struct Config<V, VO, VR> {
    this_store: String,
    other_store: String,
    outer_store: Option<String>,
    w: JoinWindows,
    this_outer: bool,
    other_outer: bool,
    joiner: Joiner<V, VO, VR>,
}

/// Per-task state of a join node.
struct Open<K, V, VO> {
    this_h: WindowHandle<K, V>,
    other_h: WindowHandle<K, VO>,
    outer: Option<RawKv>,
    ks: SerdeRef<K>,
    vs: SerdeRef<V>,
    vos: SerdeRef<VO>,
    /// The join's stream time; `None` until recovered from the stores.
    time: Option<i64>,
    /// A lower bound of the buffered timestamps, to skip scanning the buffer while nothing
    /// in it can have closed (`None`: unknown, e.g. after a restart, so the next check scans).
    min_buffered: Option<i64>,
}

struct WindowJoinNode<K, V, VO, VR> {
    cfg: Arc<Config<V, VO, VR>>,
    open: Option<Open<K, V, VO>>,
}

/// Outer-buffer key: `timestamp ++ side ++ len(key) ++ key`, so a scan meets the oldest
/// records first (Kafka's `TimestampedKeyAndJoinSide` order).
fn outer_key(ts: i64, side: u8, key: &[u8]) -> Vec<u8> {
    let mut k = ts_bytes(ts).to_vec();
    k.push(side);
    k.extend_from_slice(&key_prefix(key));
    k
}

/// Appends `value` to a buffer entry: a list of `len ++ bytes` (same key, time and side).
fn push_value(list: &mut Vec<u8>, value: &[u8]) {
    list.extend_from_slice(&(value.len() as u32).to_be_bytes());
    list.extend_from_slice(value);
}

fn values_of(mut list: &[u8]) -> Result<Vec<&[u8]>> {
    let mut out = Vec::new();
    while !list.is_empty() {
        let bad = || Error::Store("the outer-join buffer holds a truncated entry".into());
        let n = u32::from_be_bytes(list.get(..4).ok_or_else(bad)?.try_into().expect("4 bytes")) as usize;
        out.push(list.get(4..4 + n).ok_or_else(bad)?);
        list = &list[4 + n..];
    }
    Ok(out)
}

fn de<T: 'static>(s: &SerdeRef<T>, b: &[u8], what: &str) -> Result<T> {
    s.deserialize(Some(b)).map_err(|e| Error::Store(format!("stream-stream join: a buffered {what} does not deserialize: {e}")))
}

impl<K: Data + DefaultSerde, V: Data + DefaultSerde, VO: Data + DefaultSerde, VR: Data> Node for WindowJoinNode<K, V, VO, VR> {
    fn init(&mut self, ctx: &mut NodeCtx<'_>) -> Result<()> {
        let outer = match &self.cfg.outer_store {
            Some(s) => Some(RawKv::open(ctx, s)?),
            None => None,
        };
        self.open = Some(Open {
            this_h: ctx.window_handle(&self.cfg.this_store)?,
            other_h: ctx.window_handle(&self.cfg.other_store)?,
            outer,
            ks: K::serde(),
            vs: V::serde(),
            vos: VO::serde(),
            time: None,
            min_buffered: None,
        });
        Ok(())
    }

    fn process(&mut self, ctx: &mut NodeCtx<'_>, rec: Rec) -> Result<()> {
        let cfg = self.cfg.clone();
        let st = self.open.as_mut().expect("initialized");
        let r = rec.typed::<K, Side<V, VO>>();
        let (key, value, ts, headers) = (r.key, r.value, r.timestamp, r.headers);
        let (is_this, outer_here) = match &value {
            Side::This(_) => (true, cfg.this_outer),
            Side::Other(_) => (false, cfg.other_outer),
        };
        let Some(kb) = st.ks.serialize(&key) else {
            // A null key never matches; a left/outer join still reports the record (KIP-962).
            if outer_here {
                let out = match &value {
                    Side::This(v) => (cfg.joiner)(Some(v), None),
                    Side::Other(v) => (cfg.joiner)(None, Some(v)),
                };
                ctx.forward(Rec { key: Box::new(key), value: Box::new(out), ts, headers });
            }
            return Ok(());
        };
        let vb = match &value {
            Side::This(v) => st.vs.serialize(v),
            Side::Other(v) => st.vos.serialize(v),
        };
        // A null value is "no record" in Kafka's key-value model: it never joins.
        let Some(vb) = vb else { return Ok(()) };
        let now = st.stream_time(ctx)?;
        if ts.saturating_add(cfg.w.grace_ms) < now {
            ctx.task.metrics.dropped_late += 1;
            tracing::debug!(node = ctx.name, ts, stream_time = now, "dropping a join record that is later than the grace period");
            return Ok(());
        }
        let now = now.max(ts);
        st.time = Some(now);
        if ts == now {
            st.emit_closed(ctx, &cfg, now)?;
        }
        let w = &cfg.w;
        let mut matched = false;
        match &value {
            Side::This(v) => {
                let (from, to) = (ts.saturating_sub(w.before_ms), ts.saturating_add(w.after_ms));
                let partners = ctx.window(&st.other_h).fetch_range(&key, from, to)?;
                for (t2, vo) in partners {
                    matched = true;
                    st.unbuffer(ctx, t2, OTHER, &kb)?;
                    let out = (cfg.joiner)(Some(v), Some(&vo));
                    ctx.forward(Rec { key: Box::new(key.clone()), value: Box::new(out), ts: ts.max(t2), headers: headers.clone() });
                }
            }
            Side::Other(vo) => {
                let (from, to) = (ts.saturating_sub(w.after_ms), ts.saturating_add(w.before_ms));
                let partners = ctx.window(&st.this_h).fetch_range(&key, from, to)?;
                for (t2, v) in partners {
                    matched = true;
                    st.unbuffer(ctx, t2, THIS, &kb)?;
                    let out = (cfg.joiner)(Some(&v), Some(vo));
                    ctx.forward(Rec { key: Box::new(key.clone()), value: Box::new(out), ts: ts.max(t2), headers: headers.clone() });
                }
            }
        }
        if !matched && outer_here {
            if let Some(outer) = st.outer {
                let k = outer_key(ts, if is_this { THIS } else { OTHER }, &kb);
                let mut list = outer.get(ctx, &k)?.unwrap_or_default();
                push_value(&mut list, &vb);
                outer.put(ctx, k, Some(list));
                // An unknown bound stays unknown: restored entries may be older.
                st.min_buffered = st.min_buffered.map(|m| m.min(ts));
            }
        }
        // Stored after the lookup, as Kafka's KStreamJoinWindow forwards before it puts.
        match &value {
            Side::This(v) => ctx.window(&st.this_h).put(&key, Some(v), ts),
            Side::Other(v) => ctx.window(&st.other_h).put(&key, Some(v), ts),
        }
    }
}

impl<K: Data + DefaultSerde, V: Data + DefaultSerde, VO: Data + DefaultSerde> Open<K, V, VO> {
    /// The join's stream time. After a restart it is recovered as the largest timestamp in
    /// the window stores: every record that advanced it was stored there.
    fn stream_time(&mut self, ctx: &NodeCtx<'_>) -> Result<i64> {
        if let Some(t) = self.time {
            return Ok(t);
        }
        let mut t = i64::MIN;
        for idx in [self.this_h.idx, self.other_h.idx] {
            for (ck, _) in ctx.task.stores[idx].range(None, None)? {
                let (_, rest) = split_key(&ck);
                t = t.max(ts_from(rest));
            }
        }
        self.time = Some(t);
        Ok(t)
    }

    /// Drops the buffered unmatched records of `key` at `ts` on `side` (they matched now).
    fn unbuffer(&self, ctx: &mut NodeCtx<'_>, ts: i64, side: u8, key: &[u8]) -> Result<()> {
        let Some(outer) = self.outer else { return Ok(()) };
        let k = outer_key(ts, side, key);
        // Read first, as Kafka's putIfAbsent(key, null): no tombstone for absent entries.
        if outer.get(ctx, &k)?.is_some() {
            outer.put(ctx, k, None);
        }
        Ok(())
    }

    /// Emits, oldest first, the buffered records whose window closed by stream time `now`.
    fn emit_closed<VR: Data>(&mut self, ctx: &mut NodeCtx<'_>, cfg: &Config<V, VO, VR>, now: i64) -> Result<()> {
        let Some(outer) = self.outer else { return Ok(()) };
        let w = &cfg.w;
        let min_look = w.before_ms.min(w.after_ms);
        if let Some(m) = self.min_buffered {
            if m.saturating_add(min_look).saturating_add(w.grace_ms) >= now {
                return Ok(());
            }
        }
        // Only records older than `limit` can have closed windows.
        let limit = now.saturating_sub(min_look).saturating_sub(w.grace_ms);
        let mut open_min = limit;
        for (k, list) in outer.range(ctx, None, Some(&ts_bytes(limit)))? {
            let ts = ts_from(&k);
            let side = k[8];
            // A this-side record's last partner is `after` later; an other-side one's `before`.
            let look = if side == THIS { w.after_ms } else { w.before_ms };
            if ts.saturating_add(look).saturating_add(w.grace_ms) >= now {
                open_min = open_min.min(ts);
                continue;
            }
            let (kb, _) = split_key(&k[9..]);
            let key: K = de(&self.ks, kb, "key")?;
            for vb in values_of(&list)? {
                let out = if side == THIS { (cfg.joiner)(Some(&de(&self.vs, vb, "value")?), None) } else { (cfg.joiner)(None, Some(&de(&self.vos, vb, "value")?)) };
                ctx.forward(Rec { key: Box::new(key.clone()), value: Box::new(out), ts, headers: Headers::new() });
            }
            outer.put(ctx, k, None);
        }
        self.min_buffered = Some(open_min);
        Ok(())
    }
}
