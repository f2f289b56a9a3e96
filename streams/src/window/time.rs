//! Time-windowed aggregations: [`TimeWindowedKStream`] over tumbling and hopping windows
//! (Kafka's `KStreamWindowAggregate`) or sliding windows (see `sliding.rs`).

use std::marker::PhantomData;
use std::sync::Arc;

use super::sliding::SlidingNode;
use super::spec::{SlidingWindows, TimeWindows};
use super::{drop_late, topology_error, windowable, Step, Windowed};
use crate::dsl::{Data, KGroupedStream, KStream, KTable, Materialized};
use crate::error::Result;
use crate::processor::{Node, NodeCtx, NodeFactory};
use crate::record::{cloner, Change, Rec, Record};
use crate::serde::DefaultSerde;
use crate::stores::{StoreDef, WindowHandle};
use crate::topology::NodeKind;

/// The windows of a [`TimeWindowedKStream`].
#[derive(Debug, Clone, Copy)]
pub(crate) enum Spec {
    Time(TimeWindows),
    Sliding(SlidingWindows),
}

/// A grouped stream in time windows, ready to aggregate into a windowed table.
pub struct TimeWindowedKStream<K, V> {
    stream: KStream<K, V>,
    windows: Spec,
}

impl<K: Data + DefaultSerde, V: Data + DefaultSerde> KGroupedStream<K, V> {
    /// Aggregates per time window: tumbling, or hopping with [`TimeWindows::advance_by`].
    pub fn windowed_by(&self, windows: TimeWindows) -> TimeWindowedKStream<K, V> {
        if let Err(e) = windows.validate() {
            topology_error(&mut self.stream.b.lock().unwrap(), e);
        }
        TimeWindowedKStream { stream: self.stream.clone(), windows: Spec::Time(windows) }
    }

    /// Aggregates per sliding window (KIP-450).
    pub fn windowed_by_sliding(&self, windows: SlidingWindows) -> TimeWindowedKStream<K, V> {
        if let Err(e) = windows.validate() {
            topology_error(&mut self.stream.b.lock().unwrap(), e);
        }
        TimeWindowedKStream { stream: self.stream.clone(), windows: Spec::Sliding(windows) }
    }
}

impl<K: Data + DefaultSerde, V: Data + DefaultSerde> TimeWindowedKStream<K, V> {
    /// Counts records per key and window.
    pub fn count(&self) -> KTable<Windowed<K>, i64> {
        self.count_with(Materialized::default())
    }

    /// [`TimeWindowedKStream::count`] into a named (queryable) or in-memory window store.
    pub fn count_with(&self, materialized: Materialized) -> KTable<Windowed<K>, i64> {
        self.aggregate_with(|| 0i64, |_k, _v, n| n + 1, materialized)
    }

    /// Combines the values of each key and window with `f(aggregate, value)`.
    pub fn reduce(&self, f: impl Fn(V, V) -> V + Send + Sync + 'static) -> KTable<Windowed<K>, V> {
        self.reduce_with(f, Materialized::default())
    }

    /// [`TimeWindowedKStream::reduce`] into a named (queryable) or in-memory window store.
    pub fn reduce_with(&self, f: impl Fn(V, V) -> V + Send + Sync + 'static, materialized: Materialized) -> KTable<Windowed<K>, V> {
        self.build(materialized, "KSTREAM-REDUCE", Arc::new(move |_k: &K, v: V, old: Option<V>| match old {
            Some(agg) => f(agg, v),
            None => v,
        }))
    }

    /// Folds the values of each key and window into an aggregate starting from `init()`.
    pub fn aggregate<A: Data + DefaultSerde>(
        &self,
        init: impl Fn() -> A + Send + Sync + 'static,
        f: impl Fn(&K, V, A) -> A + Send + Sync + 'static,
    ) -> KTable<Windowed<K>, A> {
        self.aggregate_with(init, f, Materialized::default())
    }

    /// [`TimeWindowedKStream::aggregate`] into a named (queryable) or in-memory window store.
    pub fn aggregate_with<A: Data + DefaultSerde>(
        &self,
        init: impl Fn() -> A + Send + Sync + 'static,
        f: impl Fn(&K, V, A) -> A + Send + Sync + 'static,
        materialized: Materialized,
    ) -> KTable<Windowed<K>, A> {
        self.build(materialized, "KSTREAM-AGGREGATE", Arc::new(move |k: &K, v: V, old: Option<A>| f(k, v, old.unwrap_or_else(&init))))
    }

    fn build<A: Data + DefaultSerde>(&self, materialized: Materialized, prefix: &str, step: Step<K, V, A>) -> KTable<Windowed<K>, A> {
        // Retention: the least that keeps every open window (see the module doc).
        let (size_ms, retention_ms, close_after_end_ms) = match self.windows {
            Spec::Time(w) => (w.size_ms, w.size_ms + w.grace_ms, w.grace_ms),
            Spec::Sliding(w) => (w.diff_ms, 2 * w.diff_ms + w.grace_ms, w.grace_ms + 1),
        };
        let store_def = |name: String| {
            let mut d = StoreDef::window(name, size_ms, retention_ms, false);
            d.in_memory = materialized.in_memory;
            d.logged = !materialized.no_logging;
            d
        };
        let def = {
            let mut b = self.stream.b.lock().unwrap();
            store_def(materialized.name.clone().unwrap_or_else(|| b.name(&format!("{prefix}-STATE-STORE"))))
        };
        let input = self.stream.repartitioned_for(&def.name);
        let mut b = self.stream.b.lock().unwrap();
        let store = b.add_store(def);
        let mut stores = vec![store.clone()];
        let factory: NodeFactory = match self.windows {
            Spec::Time(windows) => {
                let s = store.clone();
                Arc::new(move || Box::new(TimeWindowNode::<K, V, A> { store: s.clone(), h: None, windows, step: step.clone() }))
            }
            Spec::Sliding(windows) => {
                let times = b.add_store(store_def(format!("{store}-timestamps")));
                stores.push(times.clone());
                let s = store.clone();
                Arc::new(move || Box::new(SlidingNode::<K, V, A>::new(s.clone(), times.clone(), windows, step.clone())))
            }
        };
        let node = b.add(prefix, NodeKind::Processor, Some(factory), &[input.node], stores, cloner::<Windowed<K>, Change<A>>());
        b.window_close_ms.insert(node, close_after_end_ms);
        // Not a key-value store: `materialized()` adds one if a join needs to look rows up.
        KTable { b: self.stream.b.clone(), node, store: None, _p: PhantomData }
    }
}

/// Aggregates records into the tumbling or hopping windows they fall in.
struct TimeWindowNode<K, V, A> {
    store: String,
    h: Option<WindowHandle<K, A>>,
    windows: TimeWindows,
    step: Step<K, V, A>,
}

impl<K: Data + DefaultSerde, V: Data, A: Data + DefaultSerde> Node for TimeWindowNode<K, V, A> {
    fn init(&mut self, ctx: &mut NodeCtx<'_>) -> Result<()> {
        self.h = Some(ctx.window_handle(&self.store)?);
        Ok(())
    }

    fn process(&mut self, ctx: &mut NodeCtx<'_>, rec: Rec) -> Result<()> {
        let h = self.h.clone().expect("initialized");
        let r = rec.typed::<K, V>();
        if !windowable(ctx, &h.ks, &r.key, r.timestamp) {
            return Ok(());
        }
        let grace = self.windows.grace_ms;
        for w in self.windows.windows_for(r.timestamp) {
            if w.end + grace <= ctx.task.stream_time {
                drop_late(ctx, r.timestamp, w, grace);
                continue;
            }
            let old = ctx.window(&h).fetch(&r.key, w.start)?;
            let new = (self.step)(&r.key, r.value.clone(), old.clone());
            ctx.window(&h).put(&r.key, Some(&new), w.start)?;
            let out = Record { key: Windowed { key: r.key.clone(), window: w }, value: Change { new: Some(new), old }, timestamp: r.timestamp, headers: r.headers.clone() };
            ctx.forward(Rec::from_typed(out));
        }
        Ok(())
    }
}

