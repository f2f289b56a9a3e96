//! Sliding-window aggregation (KIP-450), after Kafka's `KStreamSlidingWindowAggregate`.
//!
//! Windows are `[start, start + d]`, both ends inclusive. A record at `t`:
//! - is added to every existing window that contains it;
//! - creates its left window `[t - d, t]`, seeded with the latest window ending before `t`
//!   (which holds exactly the records in `[t - d, t)` when the previous record is in it);
//! - creates the right window `[p + 1, p + 1 + d]` of the previous record `p` when it is
//!   the first record there;
//! - creates its own right window `[t + 1, t + 1 + d]`, a copy of the latest-starting
//!   window that holds it, when records after `t` exist within `d`.
//!
//! Records before `d` share the window `[0, d]` instead of windows with negative starts.
//! The algorithm needs each window's latest record time (to find the previous record and
//! whether later records exist); the companion store `<store>-timestamps` keeps it, under
//! the same keys as the aggregates. Kafka keeps aggregate and time together in a
//! timestamped store; two stores keep the aggregate store readable as plain values.

use std::collections::BTreeSet;

use super::spec::SlidingWindows;
use super::{drop_late, windowable, Step, Window, Windowed};
use crate::dsl::Data;
use crate::error::{Error, Result};
use crate::processor::{Node, NodeCtx};
use crate::record::{Change, Rec, Record};
use crate::serde::DefaultSerde;
use crate::stores::WindowHandle;

/// A window found in the store: its start, aggregate and latest record time.
struct Found<A> {
    start: i64,
    agg: A,
    max_ts: i64,
}

/// Aggregates records into sliding windows.
pub(crate) struct SlidingNode<K, V, A> {
    store: String,
    times_store: String,
    h: Option<(WindowHandle<K, A>, WindowHandle<K, i64>)>,
    windows: SlidingWindows,
    step: Step<K, V, A>,
}

impl<K: Data + DefaultSerde, V: Data, A: Data + DefaultSerde> SlidingNode<K, V, A> {
    pub(crate) fn new(store: String, times_store: String, windows: SlidingWindows, step: Step<K, V, A>) -> Self {
        SlidingNode { store, times_store, h: None, windows, step }
    }

    fn window(&self, start: i64) -> Window {
        Window { start, end: start + self.windows.diff_ms }
    }

    /// Windows of `key` starting in `[from, to]`, by start.
    fn fetch(&self, ctx: &mut NodeCtx<'_>, key: &K, from: i64, to: i64) -> Result<Vec<Found<A>>> {
        let (aggs, times) = self.h.as_ref().expect("initialized");
        let found = ctx.window(aggs).fetch_range(key, from, to)?;
        let max_ts = ctx.window(times).fetch_range(key, from, to)?;
        // Both stores are written together (and restored from changelogs committed together).
        if found.len() != max_ts.len() || found.iter().zip(&max_ts).any(|(a, t)| a.0 != t.0) {
            return Err(Error::State(format!("sliding-window stores `{}` and `{}` disagree on the windows in [{from}, {to}]", self.store, self.times_store)));
        }
        Ok(found.into_iter().zip(max_ts).map(|((start, agg), (_, max_ts))| Found { start, agg, max_ts }).collect())
    }

    /// Stores `window` and forwards the change.
    fn put(&self, ctx: &mut NodeCtx<'_>, r: &Record<K, V>, window: Window, new: A, old: Option<A>, max_ts: i64) -> Result<()> {
        let (aggs, times) = self.h.as_ref().expect("initialized");
        ctx.window(aggs).put(&r.key, Some(&new), window.start)?;
        ctx.window(times).put(&r.key, Some(&max_ts), window.start)?;
        let out = Record { key: Windowed { key: r.key.clone(), window }, value: Change { new: Some(new), old }, timestamp: max_ts, headers: r.headers.clone() };
        ctx.forward(Rec::from_typed(out));
        Ok(())
    }

    /// Adds the record to the window at `start`, which holds `base` with latest record
    /// time `base_ts` (`existed`: the window is in the store; otherwise `base` seeds a new
    /// one). Kafka's `updateWindowAndForward`.
    fn update(&self, ctx: &mut NodeCtx<'_>, r: &Record<K, V>, start: i64, base: Option<A>, base_ts: i64, existed: bool) -> Result<()> {
        let window = self.window(start);
        let grace = self.windows.grace_ms;
        if window.end + grace < ctx.task.stream_time {
            drop_late(ctx, r.timestamp, window, grace + 1);
            return Ok(());
        }
        let old = if existed { base.clone() } else { None };
        let new = (self.step)(&r.key, r.value.clone(), base);
        self.put(ctx, r, window, new, old, r.timestamp.max(base_ts))
    }

    /// A record at `t >= d`.
    fn process_in_order(&self, ctx: &mut NodeCtx<'_>, r: &Record<K, V>) -> Result<()> {
        let (t, d) = (r.timestamp, self.windows.diff_ms);
        let mut starts = BTreeSet::new();
        // The latest window ending before t, and the latest-starting one holding t.
        let mut left: Option<A> = None;
        let mut right: Option<(A, i64)> = None;
        let (mut left_exists, mut right_exists) = (false, false);
        let mut previous: Option<i64> = None;
        for f in self.fetch(ctx, &r.key, (t - 2 * d).max(0), t + 1)? {
            starts.insert(f.start);
            let end = f.start + d;
            if end < t {
                left = Some(f.agg);
                previous = Some(f.max_ts);
            } else if end == t {
                left_exists = true;
                if f.max_ts < t {
                    previous = Some(f.max_ts);
                }
                self.update(ctx, r, f.start, Some(f.agg), f.max_ts, true)?;
            } else if f.start <= t {
                right = Some((f.agg.clone(), f.max_ts));
                self.update(ctx, r, f.start, Some(f.agg), f.max_ts, true)?;
            } else if f.start == t + 1 {
                right_exists = true;
            } else {
                return Err(Error::State(format!("sliding-window store `{}` has an unexpected window at {} for a record at {t}", self.store, f.start)));
            }
        }
        if let Some(p) = previous {
            if !starts.contains(&(p + 1)) && p + 1 + d >= t {
                self.update(ctx, r, p + 1, None, t, false)?;
            }
        }
        if !left_exists {
            let seed = if previous.is_some_and(|p| p >= t - d) { left } else { None };
            self.update(ctx, r, t - d, seed, t, false)?;
        }
        if !right_exists {
            if let Some((agg, max_ts)) = right.filter(|(_, max_ts)| *max_ts > t) {
                self.put(ctx, r, self.window(t + 1), agg, None, max_ts)?;
            }
        }
        Ok(())
    }

    /// A record at `0 <= t < d`: its left window would start before 0, so it goes to the
    /// combined window `[0, d]` (Kafka's `processEarly`).
    fn process_early(&self, ctx: &mut NodeCtx<'_>, r: &Record<K, V>) -> Result<()> {
        let t = r.timestamp;
        let mut starts = BTreeSet::new();
        let mut combined: Option<(A, i64)> = None;
        let mut right: Option<(A, i64)> = None;
        let mut right_exists = false;
        let mut previous: Option<i64> = None;
        for f in self.fetch(ctx, &r.key, 0, t + 1)? {
            starts.insert(f.start);
            if f.start == 0 {
                // When the combined window holds a record after t, that record already
                // made the previous record's right window.
                if f.max_ts < t {
                    previous = Some(f.max_ts);
                }
                combined = Some((f.agg, f.max_ts));
            } else if f.start <= t {
                right = Some((f.agg.clone(), f.max_ts));
                self.update(ctx, r, f.start, Some(f.agg), f.max_ts, true)?;
            } else if f.start == t + 1 {
                right_exists = true;
            } else {
                return Err(Error::State(format!("sliding-window store `{}` has an unexpected window at {} for a record at {t}", self.store, f.start)));
            }
        }
        // Without a window between, the combined window holds only records after t (else
        // its latest record is before t and no right window is needed).
        if right.is_none() {
            right = combined.clone().filter(|(_, max_ts)| *max_ts > t);
        }
        if !right_exists {
            if let Some((agg, max_ts)) = right.filter(|(_, max_ts)| *max_ts > t) {
                self.put(ctx, r, self.window(t + 1), agg, None, max_ts)?;
            }
        }
        if let Some(p) = previous {
            if !starts.contains(&(p + 1)) {
                self.update(ctx, r, p + 1, None, t, false)?;
            }
        }
        match combined {
            Some((agg, max_ts)) => self.update(ctx, r, 0, Some(agg), max_ts, true),
            None => self.update(ctx, r, 0, None, t, false),
        }
    }
}

impl<K: Data + DefaultSerde, V: Data, A: Data + DefaultSerde> Node for SlidingNode<K, V, A> {
    fn init(&mut self, ctx: &mut NodeCtx<'_>) -> Result<()> {
        self.h = Some((ctx.window_handle(&self.store)?, ctx.window_handle(&self.times_store)?));
        Ok(())
    }

    fn process(&mut self, ctx: &mut NodeCtx<'_>, rec: Rec) -> Result<()> {
        let r = rec.typed::<K, V>();
        let ks = self.h.as_ref().expect("initialized").0.ks.clone();
        if !windowable(ctx, &ks, &r.key, r.timestamp) {
            return Ok(());
        }
        let (t, d, grace) = (r.timestamp, self.windows.diff_ms, self.windows.grace_ms);
        // Every window holding the record ends by t + d: all of them closed.
        if t + d + grace < ctx.task.stream_time {
            drop_late(ctx, t, Window { start: t - d, end: t }, grace + 1);
            return Ok(());
        }
        if t < d {
            self.process_early(ctx, &r)
        } else {
            self.process_in_order(ctx, &r)
        }
    }
}
