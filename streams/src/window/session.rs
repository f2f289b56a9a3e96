//! Session-windowed aggregation: [`SessionWindowedKStream`], after Kafka's
//! `KStreamSessionWindowAggregate`. A record at `t` merges every session of its key that
//! ends at or after `t - gap` and starts at or before `t + gap`; absorbed sessions are
//! deleted and retracted downstream (`Change { new: None, old }`), and the merged session
//! is stored under its new bounds.

use std::marker::PhantomData;
use std::sync::Arc;

use super::spec::SessionWindows;
use super::{drop_late, topology_error, windowable, Step, Window, Windowed};
use crate::dsl::{Data, KGroupedStream, KStream, KTable, Materialized};
use crate::error::Result;
use crate::processor::{Node, NodeCtx, NodeFactory};
use crate::record::{cloner, Change, Rec, Record};
use crate::serde::DefaultSerde;
use crate::stores::{SessionHandle, SessionWindow, StoreDef};
use crate::topology::NodeKind;

/// Merges a session's aggregate into the running one (`None`: nothing merged yet).
type Merge<K, A> = Arc<dyn Fn(&K, Option<A>, A) -> A + Send + Sync>;

/// A grouped stream in session windows, ready to aggregate into a windowed table.
pub struct SessionWindowedKStream<K, V> {
    stream: KStream<K, V>,
    windows: SessionWindows,
}

impl<K: Data + DefaultSerde, V: Data + DefaultSerde> KGroupedStream<K, V> {
    /// Aggregates per session: records of a key at most the inactivity gap apart.
    pub fn windowed_by_session(&self, windows: SessionWindows) -> SessionWindowedKStream<K, V> {
        if let Err(e) = windows.validate() {
            topology_error(&mut self.stream.b.lock().unwrap(), e);
        }
        SessionWindowedKStream { stream: self.stream.clone(), windows }
    }
}

impl<K: Data + DefaultSerde, V: Data + DefaultSerde> SessionWindowedKStream<K, V> {
    /// Counts records per session.
    pub fn count(&self) -> KTable<Windowed<K>, i64> {
        self.count_with(Materialized::default())
    }

    /// [`SessionWindowedKStream::count`] into a named or in-memory session store.
    pub fn count_with(&self, materialized: Materialized) -> KTable<Windowed<K>, i64> {
        self.aggregate_with(|| 0i64, |_k, _v, n| n + 1, |_k, a, b| a + b, materialized)
    }

    /// Combines the values of each session with `f(aggregate, value)` (merging sessions
    /// with `f(earlier aggregate, later aggregate)`).
    pub fn reduce(&self, f: impl Fn(V, V) -> V + Send + Sync + 'static) -> KTable<Windowed<K>, V> {
        self.reduce_with(f, Materialized::default())
    }

    /// [`SessionWindowedKStream::reduce`] into a named or in-memory session store.
    pub fn reduce_with(&self, f: impl Fn(V, V) -> V + Send + Sync + 'static, materialized: Materialized) -> KTable<Windowed<K>, V> {
        let f = Arc::new(f);
        let g = f.clone();
        let step: Step<K, V, V> = Arc::new(move |_k: &K, v: V, agg: Option<V>| match agg {
            Some(agg) => f(agg, v),
            None => v,
        });
        let merge: Merge<K, V> = Arc::new(move |_k: &K, agg: Option<V>, session: V| match agg {
            Some(agg) => g(agg, session),
            None => session,
        });
        self.build(materialized, "KSTREAM-REDUCE", step, merge)
    }

    /// Folds the values of each session into an aggregate starting from `init()`; when a
    /// record joins sessions, `merger(key, a, b)` combines their aggregates.
    pub fn aggregate<A: Data + DefaultSerde>(
        &self,
        init: impl Fn() -> A + Send + Sync + 'static,
        f: impl Fn(&K, V, A) -> A + Send + Sync + 'static,
        merger: impl Fn(&K, A, A) -> A + Send + Sync + 'static,
    ) -> KTable<Windowed<K>, A> {
        self.aggregate_with(init, f, merger, Materialized::default())
    }

    /// [`SessionWindowedKStream::aggregate`] into a named or in-memory session store.
    pub fn aggregate_with<A: Data + DefaultSerde>(
        &self,
        init: impl Fn() -> A + Send + Sync + 'static,
        f: impl Fn(&K, V, A) -> A + Send + Sync + 'static,
        merger: impl Fn(&K, A, A) -> A + Send + Sync + 'static,
        materialized: Materialized,
    ) -> KTable<Windowed<K>, A> {
        // As Kafka: the running aggregate starts from init(), sessions merge into it, then
        // the record is added.
        let init = Arc::new(init);
        let init2 = init.clone();
        let step: Step<K, V, A> = Arc::new(move |k: &K, v: V, agg: Option<A>| f(k, v, agg.unwrap_or_else(|| init())));
        let merge: Merge<K, A> = Arc::new(move |k: &K, agg: Option<A>, session: A| merger(k, agg.unwrap_or_else(|| init2()), session));
        self.build(materialized, "KSTREAM-AGGREGATE", step, merge)
    }

    fn build<A: Data + DefaultSerde>(&self, materialized: Materialized, prefix: &str, step: Step<K, V, A>, merge: Merge<K, A>) -> KTable<Windowed<K>, A> {
        let (gap, grace) = (self.windows.gap_ms, self.windows.grace_ms);
        let def = {
            let mut b = self.stream.b.lock().unwrap();
            let name = materialized.name.clone().unwrap_or_else(|| b.name(&format!("{prefix}-STATE-STORE")));
            // Retention gap + grace: a record within grace reaches back one gap.
            let mut d = StoreDef::session(name, gap + grace);
            d.in_memory = materialized.in_memory;
            d.logged = !materialized.no_logging;
            d
        };
        let input = self.stream.repartitioned_for(&def.name);
        let mut b = self.stream.b.lock().unwrap();
        let store = b.add_store(def);
        let (s, windows) = (store.clone(), self.windows);
        let factory: NodeFactory = Arc::new(move || Box::new(SessionNode::<K, V, A> { store: s.clone(), h: None, windows, step: step.clone(), merge: merge.clone() }));
        let node = b.add(prefix, NodeKind::Processor, Some(factory), &[input.node], vec![store], cloner::<Windowed<K>, Change<A>>());
        // A session can still grow by a record up to `gap` after its end: final results wait
        // for that too (Kafka's GraphGraceSearchUtil adds the gap); +1 as the end is inclusive.
        b.window_close_ms.insert(node, gap + grace + 1);
        KTable { b: self.stream.b.clone(), node, store: None, _p: PhantomData }
    }
}

/// Aggregates records into sessions, merging the sessions a record bridges.
struct SessionNode<K, V, A> {
    store: String,
    h: Option<SessionHandle<K, A>>,
    windows: SessionWindows,
    step: Step<K, V, A>,
    merge: Merge<K, A>,
}

impl<K: Data + DefaultSerde, V: Data, A: Data + DefaultSerde> Node for SessionNode<K, V, A> {
    fn init(&mut self, ctx: &mut NodeCtx<'_>) -> Result<()> {
        self.h = Some(ctx.session_handle(&self.store)?);
        Ok(())
    }

    fn process(&mut self, ctx: &mut NodeCtx<'_>, rec: Rec) -> Result<()> {
        let h = self.h.clone().expect("initialized");
        let r = rec.typed::<K, V>();
        let t = r.timestamp;
        if !windowable(ctx, &h.ks, &r.key, t) {
            return Ok(());
        }
        let (gap, grace) = (self.windows.gap_ms, self.windows.grace_ms);
        let sessions = ctx.session(&h).find_sessions(&r.key, t - gap, t + gap)?;
        let mut merged = Window { start: t, end: t };
        let mut agg = None;
        for (w, v) in &sessions {
            agg = Some((self.merge)(&r.key, agg, v.clone()));
            merged = Window { start: merged.start.min(w.start), end: merged.end.max(w.end) };
        }
        // Kafka judges lateness by the merged session's end (inclusive).
        if merged.end + grace < ctx.task.stream_time {
            drop_late(ctx, t, merged, grace + 1);
            return Ok(());
        }
        let mut old = None;
        for (w, v) in sessions {
            if (w.start, w.end) == (merged.start, merged.end) {
                // The session keeps its bounds: an update, not a retraction and a new row
                // (Kafka without caching emits both; its cache collapses them to this).
                old = Some(v);
                continue;
            }
            ctx.session(&h).put(&r.key, w, None)?;
            let gone = Record { key: Windowed::new(r.key.clone(), w.start, w.end), value: Change { new: None, old: Some(v) }, timestamp: t, headers: r.headers.clone() };
            ctx.forward(Rec::from_typed(gone));
        }
        let new = (self.step)(&r.key, r.value, agg);
        ctx.session(&h).put(&r.key, SessionWindow { start: merged.start, end: merged.end }, Some(&new))?;
        ctx.forward(Rec::from_typed(Record { key: Windowed { key: r.key, window: merged }, value: Change { new: Some(new), old }, timestamp: t, headers: r.headers }));
        Ok(())
    }
}
