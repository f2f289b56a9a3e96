//! The Processor API: custom processors with state stores, record metadata, headers and
//! punctuators, plus the type-erased node trait every DSL operator compiles to.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::record::{Rec, Record, RecordMetadata};
use crate::serde::DefaultSerde;
use crate::stores::{KvHandle, KvStore, OutRecord, SessionHandle, SessionStore, StoreKind, StoreState, WindowHandle, WindowStore};
use crate::topology::TaskId;

/// When a punctuator fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PunctuationType {
    /// As stream time (the largest record timestamp seen by the task) advances.
    StreamTime,
    /// As the wall clock advances, whether or not records arrive.
    WallClockTime,
}

/// A scheduled punctuator of one node.
#[derive(Debug, Clone)]
pub(crate) struct Punctuator {
    pub node: usize,
    pub id: usize,
    pub interval: i64,
    pub kind: PunctuationType,
    /// Next time it fires; `None` until the first stream time is known.
    pub next: Option<i64>,
}

/// Counters of one task.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskMetrics {
    /// Input records processed.
    pub processed: u64,
    /// Records dropped because their window had closed (after the grace period).
    pub dropped_late: u64,
    /// Records dropped because they did not deserialize (with the `continue` handler).
    pub dropped_bad: u64,
    /// Records dropped by an aggregation or table because their key was null.
    pub dropped_null_key: u64,
}

impl std::ops::AddAssign<&TaskMetrics> for TaskMetrics {
    fn add_assign(&mut self, o: &TaskMetrics) {
        self.processed += o.processed;
        self.dropped_late += o.dropped_late;
        self.dropped_bad += o.dropped_bad;
        self.dropped_null_key += o.dropped_null_key;
    }
}

/// Everything of a running task except its nodes.
pub(crate) struct TaskCtx {
    pub task: TaskId,
    pub app_id: Arc<str>,
    pub stores: Vec<StoreState>,
    pub store_index: HashMap<String, usize>,
    pub stream_time: i64,
    pub meta: Option<RecordMetadata>,
    pub out: Vec<OutRecord>,
    pub punctuators: Vec<Punctuator>,
    pub wall_clock: Arc<dyn Fn() -> i64 + Send + Sync>,
    pub seq: u32,
    pub metrics: TaskMetrics,
    /// Global stores (read-only lookups from every task).
    pub globals: HashMap<String, crate::stores::SharedBackend>,
    /// Record caching on (`statestore.cache.max.bytes` > 0): aggregations forward, and
    /// stores log, only the latest update per key at each flush (commit).
    pub caching: bool,
}

/// Context of one node while it runs.
pub(crate) struct NodeCtx<'a> {
    pub task: &'a mut TaskCtx,
    /// Records this node emitted: `(child slot or all children, record)`.
    pub emitted: &'a mut Vec<(Option<usize>, Rec)>,
    pub node: usize,
    pub name: &'a str,
    /// Timestamp of the record (or punctuation) being handled.
    pub ts: i64,
}

impl NodeCtx<'_> {
    pub(crate) fn forward(&mut self, rec: Rec) {
        self.emitted.push((None, rec));
    }

    pub(crate) fn forward_to(&mut self, child: usize, rec: Rec) {
        self.emitted.push((Some(child), rec));
    }

    pub(crate) fn store_idx(&self, name: &str) -> Result<usize> {
        self.task.store_index.get(name).copied().ok_or_else(|| {
            Error::Topology(format!("processor `{}` uses state store `{name}`, which is not connected to it; name it in the stores of `process`", self.name))
        })
    }

    pub(crate) fn kv_handle<K: DefaultSerde, V: DefaultSerde>(&self, name: &str) -> Result<KvHandle<K, V>> {
        let idx = self.store_idx(name)?;
        if self.task.stores[idx].def.kind != StoreKind::KeyValue {
            return Err(Error::Topology(format!("state store `{name}` is not a key-value store")));
        }
        Ok(KvHandle { idx, ks: K::serde(), vs: V::serde() })
    }

    pub(crate) fn window_handle<K: DefaultSerde, V: DefaultSerde>(&self, name: &str) -> Result<WindowHandle<K, V>> {
        let idx = self.store_idx(name)?;
        if !matches!(self.task.stores[idx].def.kind, StoreKind::Window { .. }) {
            return Err(Error::Topology(format!("state store `{name}` is not a window store")));
        }
        Ok(WindowHandle { idx, ks: K::serde(), vs: V::serde() })
    }

    pub(crate) fn session_handle<K: DefaultSerde, V: DefaultSerde>(&self, name: &str) -> Result<SessionHandle<K, V>> {
        let idx = self.store_idx(name)?;
        if !matches!(self.task.stores[idx].def.kind, StoreKind::Session { .. }) {
            return Err(Error::Topology(format!("state store `{name}` is not a session store")));
        }
        Ok(SessionHandle { idx, ks: K::serde(), vs: V::serde() })
    }

    pub(crate) fn kv<'s, K, V>(&'s mut self, h: &'s KvHandle<K, V>) -> KvStore<'s, K, V> {
        KvStore { st: &mut self.task.stores[h.idx], out: &mut self.task.out, ts: self.ts, h }
    }

    pub(crate) fn window<'s, K, V>(&'s mut self, h: &'s WindowHandle<K, V>) -> WindowStore<'s, K, V> {
        let t = &mut *self.task;
        WindowStore { st: &mut t.stores[h.idx], out: &mut t.out, ts: self.ts, h, seq: &mut t.seq }
    }

    pub(crate) fn session<'s, K, V>(&'s mut self, h: &'s SessionHandle<K, V>) -> SessionStore<'s, K, V> {
        SessionStore { st: &mut self.task.stores[h.idx], out: &mut self.task.out, ts: self.ts, h }
    }

    pub(crate) fn schedule(&mut self, interval: Duration, kind: PunctuationType) -> usize {
        let id = self.task.punctuators.iter().filter(|p| p.node == self.node).count();
        let interval = (interval.as_millis() as i64).max(1);
        let next = match kind {
            PunctuationType::StreamTime => None,
            PunctuationType::WallClockTime => Some((self.task.wall_clock)() + interval),
        };
        self.task.punctuators.push(Punctuator { node: self.node, id, interval, kind, next });
        id
    }
}

/// A node of a running task: what every operator compiles to.
pub(crate) trait Node: Send {
    fn init(&mut self, _ctx: &mut NodeCtx<'_>) -> Result<()> {
        Ok(())
    }
    fn process(&mut self, ctx: &mut NodeCtx<'_>, rec: Rec) -> Result<()>;
    fn punctuate(&mut self, _ctx: &mut NodeCtx<'_>, _id: usize, _ts: i64) -> Result<()> {
        Ok(())
    }
    /// Forwards what the node held back for the record cache (called before a commit).
    fn flush(&mut self, _ctx: &mut NodeCtx<'_>) -> Result<()> {
        Ok(())
    }
    /// Forgets what the node held back (its transaction aborted).
    fn abort(&mut self) {}
}

/// Makes a fresh node for each task.
pub(crate) type NodeFactory = Arc<dyn Fn() -> Box<dyn Node> + Send + Sync>;

/// A custom processor: receives records of `K`, `V` and forwards records of `KOut`, `VOut`.
pub trait Processor<K, V, KOut, VOut>: Send + 'static {
    /// Called once when the task starts: get store handles and schedule punctuators here.
    fn init(&mut self, _ctx: &mut ProcessorContext<'_, '_, KOut, VOut>) -> Result<()> {
        Ok(())
    }
    /// Handles one record.
    fn process(&mut self, ctx: &mut ProcessorContext<'_, '_, KOut, VOut>, record: Record<K, V>) -> Result<()>;
    /// A punctuator scheduled with [`ProcessorContext::schedule`] fired at `timestamp`.
    fn punctuate(&mut self, _ctx: &mut ProcessorContext<'_, '_, KOut, VOut>, _id: usize, _timestamp: i64) -> Result<()> {
        Ok(())
    }
}

/// What a custom processor can do: forward records, use stores, read metadata, schedule.
pub struct ProcessorContext<'a, 'b, KOut, VOut> {
    pub(crate) inner: &'a mut NodeCtx<'b>,
    pub(crate) _p: PhantomData<fn(KOut, VOut)>,
}

impl<KOut: Send + 'static, VOut: Send + 'static> ProcessorContext<'_, '_, KOut, VOut> {
    /// Sends a record to every downstream node.
    pub fn forward(&mut self, record: Record<KOut, VOut>) {
        self.inner.forward(Rec::from_typed(record));
    }

    /// The input record being processed (`None` inside a punctuator).
    pub fn record_metadata(&self) -> Option<&RecordMetadata> {
        self.inner.task.meta.as_ref()
    }

    /// The task this processor instance belongs to.
    pub fn task_id(&self) -> TaskId {
        self.inner.task.task
    }

    /// The task's stream time: the largest record timestamp it has seen.
    pub fn stream_time(&self) -> i64 {
        self.inner.task.stream_time
    }

    /// Wall-clock time in ms (mockable in the test driver).
    pub fn wall_clock_time(&self) -> i64 {
        (self.inner.task.wall_clock)()
    }

    /// Schedules [`Processor::punctuate`] every `interval` of `kind` time; returns its id.
    pub fn schedule(&mut self, interval: Duration, kind: PunctuationType) -> usize {
        self.inner.schedule(interval, kind)
    }

    /// A handle on the key-value store `name` (connected to this processor).
    pub fn kv_store<K: DefaultSerde, V: DefaultSerde>(&self, name: &str) -> Result<KvHandle<K, V>> {
        self.inner.kv_handle(name)
    }

    /// A handle on the window store `name`.
    pub fn window_store<K: DefaultSerde, V: DefaultSerde>(&self, name: &str) -> Result<WindowHandle<K, V>> {
        self.inner.window_handle(name)
    }

    /// A handle on the session store `name`.
    pub fn session_store<K: DefaultSerde, V: DefaultSerde>(&self, name: &str) -> Result<SessionHandle<K, V>> {
        self.inner.session_handle(name)
    }

    /// The key-value store behind `handle`.
    pub fn kv<'s, K, V>(&'s mut self, handle: &'s KvHandle<K, V>) -> KvStore<'s, K, V> {
        self.inner.kv(handle)
    }

    /// The window store behind `handle`.
    pub fn window<'s, K, V>(&'s mut self, handle: &'s WindowHandle<K, V>) -> WindowStore<'s, K, V> {
        self.inner.window(handle)
    }

    /// The session store behind `handle`.
    pub fn session<'s, K, V>(&'s mut self, handle: &'s SessionHandle<K, V>) -> SessionStore<'s, K, V> {
        self.inner.session(handle)
    }
}

/// Adapts a typed [`Processor`] to a node.
pub(crate) struct ProcessorNode<P, K, V, KOut, VOut> {
    pub p: P,
    pub _t: PhantomData<fn(K, V, KOut, VOut)>,
}

impl<P, K, V, KOut, VOut> Node for ProcessorNode<P, K, V, KOut, VOut>
where
    P: Processor<K, V, KOut, VOut>,
    K: Send + 'static,
    V: Send + 'static,
    KOut: Send + 'static,
    VOut: Send + 'static,
{
    fn init(&mut self, ctx: &mut NodeCtx<'_>) -> Result<()> {
        self.p.init(&mut ProcessorContext { inner: ctx, _p: PhantomData })
    }
    fn process(&mut self, ctx: &mut NodeCtx<'_>, rec: Rec) -> Result<()> {
        self.p.process(&mut ProcessorContext { inner: ctx, _p: PhantomData }, rec.typed())
    }
    fn punctuate(&mut self, ctx: &mut NodeCtx<'_>, id: usize, ts: i64) -> Result<()> {
        self.p.punctuate(&mut ProcessorContext { inner: ctx, _p: PhantomData }, id, ts)
    }
}
