//! The DSL: [`StreamsBuilder`], [`KStream`], [`KTable`], [`GlobalKTable`] and grouped
//! streams, mirroring Kafka Streams with closures. Each operator adds a node to the
//! builder's graph; [`StreamsBuilder::build`] compiles the graph into a [`Topology`].
//! Windowed operations live in [`crate::window`], joins in [`crate::join`].

use std::collections::{BTreeMap, BTreeSet};
use std::marker::PhantomData;
use std::sync::{Arc, Mutex};

use samsa_client::ConsumerRecord;

use crate::error::{Error, Result};
use crate::processor::{Node, NodeCtx, NodeFactory, Processor, ProcessorNode};
use crate::record::{cloner, Change, Cloner, Rec};
use crate::serde::{DefaultSerde, SerdeRef};
use crate::stores::{KvHandle, OutRecord, StoreDef};
use crate::topology::{Deserializer, GlobalDef, NodeDef, NodeKind, RepartitionDef, TopicName, Topology};

/// Types that flow through a topology: cloneable (for fan-out) and sendable.
pub trait Data: Clone + Send + 'static {}
impl<T: Clone + Send + 'static> Data for T {}

/// How a store made by an aggregation or table is kept.
#[derive(Debug, Clone, Default)]
pub struct Materialized {
    pub(crate) name: Option<String>,
    pub(crate) in_memory: bool,
    pub(crate) no_logging: bool,
}

impl Materialized {
    /// A store with this name (queryable with [`crate::KafkaStreams::store`]).
    pub fn named(name: impl Into<String>) -> Materialized {
        Materialized { name: Some(name.into()), ..Default::default() }
    }
    /// Builder: keep the store in memory instead of RocksDB.
    pub fn in_memory(mut self) -> Materialized {
        self.in_memory = true;
        self
    }
    /// Builder: no changelog topic (the state is lost with the local directory).
    pub fn without_logging(mut self) -> Materialized {
        self.no_logging = true;
        self
    }
    pub(crate) fn store_def(&self, b: &mut Inner, prefix: &str) -> StoreDef {
        let name = self.name.clone().unwrap_or_else(|| b.name(prefix));
        let mut d = StoreDef::key_value(name);
        d.in_memory = self.in_memory;
        d.logged = !self.no_logging;
        d
    }
}

pub(crate) struct Inner {
    pub nodes: Vec<NodeDef>,
    pub stores: BTreeMap<String, Arc<StoreDef>>,
    pub repartitions: BTreeMap<String, RepartitionDef>,
    pub globals: Vec<GlobalDef>,
    pub copartition: Vec<BTreeSet<TopicName>>,
    /// Windowed aggregation nodes -> ms after a window's `end` at which it closes (see
    /// [`crate::window`]); `suppress(until_window_closes)` looks it up upstream.
    pub window_close_ms: BTreeMap<usize, i64>,
    counter: usize,
    pub error: Option<Error>,
}

impl Inner {
    /// A Kafka-style generated name: `PREFIX-0000000007`.
    pub(crate) fn name(&mut self, prefix: &str) -> String {
        let n = format!("{prefix}-{:010}", self.counter);
        self.counter += 1;
        n
    }

    pub(crate) fn add(&mut self, prefix: &str, kind: NodeKind, factory: Option<NodeFactory>, parents: &[usize], stores: Vec<String>, cloner: Cloner) -> usize {
        let name = self.name(prefix);
        let idx = self.nodes.len();
        for &p in parents {
            self.nodes[p].children.push(idx);
        }
        self.nodes.push(NodeDef { name, kind, factory, children: Vec::new(), parents: parents.to_vec(), stores, cloner });
        idx
    }

    pub(crate) fn add_store(&mut self, def: StoreDef) -> String {
        let name = def.name.clone();
        if self.stores.contains_key(&name) && self.error.is_none() {
            self.error = Some(Error::Topology(format!("two state stores are named `{name}`; store names must be unique")));
        }
        self.stores.insert(name.clone(), Arc::new(def));
        name
    }

    /// Sources of the topics a node's records come from (for co-partitioning checks).
    pub(crate) fn source_topics_of(&self, node: usize) -> BTreeSet<TopicName> {
        let mut out = BTreeSet::new();
        let mut stack = vec![node];
        let mut seen = BTreeSet::new();
        while let Some(n) = stack.pop() {
            if !seen.insert(n) {
                continue;
            }
            if let NodeKind::Source { topics, .. } = &self.nodes[n].kind {
                out.extend(topics.iter().cloned());
            }
            stack.extend(self.nodes[n].parents.iter().copied());
        }
        out
    }
}

/// Builds a topology with the DSL.
pub struct StreamsBuilder {
    pub(crate) inner: Arc<Mutex<Inner>>,
}

impl Default for StreamsBuilder {
    fn default() -> Self {
        Self::new()
    }
}

pub(crate) fn deserializer<K: DefaultSerde + Send, V: DefaultSerde + Send>() -> Deserializer {
    let (ks, vs) = (K::serde(), V::serde());
    Arc::new(move |r: &ConsumerRecord| {
        let k = ks.deserialize(r.key.as_deref()).map_err(|e| ("key", e))?;
        let v = vs.deserialize(r.value.as_deref()).map_err(|e| ("value", e))?;
        Ok(Rec { key: Box::new(k), value: Box::new(v), ts: r.timestamp, headers: r.headers.clone() })
    })
}

/// A closure run on each erased record.
pub(crate) type NodeFn = Arc<dyn Fn(&mut NodeCtx<'_>, Rec) -> Result<()> + Send + Sync>;

/// A node running a closure on each erased record.
pub(crate) struct FnNode(pub NodeFn);
impl Node for FnNode {
    fn process(&mut self, ctx: &mut NodeCtx<'_>, rec: Rec) -> Result<()> {
        (self.0)(ctx, rec)
    }
}

pub(crate) fn fn_factory(f: impl Fn(&mut NodeCtx<'_>, Rec) -> Result<()> + Send + Sync + 'static) -> NodeFactory {
    let f: NodeFn = Arc::new(f);
    Arc::new(move || Box::new(FnNode(f.clone())))
}

pub(crate) fn key_ref<K: 'static>(r: &Rec) -> &K {
    r.key.downcast_ref::<K>().expect("internal: key type")
}

pub(crate) fn value_ref<V: 'static>(r: &Rec) -> &V {
    r.value.downcast_ref::<V>().expect("internal: value type")
}

/// Writes records to a topic with the default serdes of `K` and `V`.
struct SinkNode<K, V> {
    topic: TopicName,
    resolved: Option<Arc<str>>,
    ks: SerdeRef<K>,
    vs: SerdeRef<V>,
}

impl<K: Send + 'static, V: Send + 'static> Node for SinkNode<K, V> {
    fn process(&mut self, ctx: &mut NodeCtx<'_>, rec: Rec) -> Result<()> {
        let topic = self.resolved.get_or_insert_with(|| Arc::from(self.topic.resolve(&ctx.task.app_id))).clone();
        let (k, v) = (key_ref::<K>(&rec), value_ref::<V>(&rec));
        ctx.task.out.push(OutRecord {
            topic,
            partition: None,
            key: self.ks.serialize(k),
            value: self.vs.serialize(v),
            ts: rec.ts,
            headers: rec.headers,
            changelog_of: None,
        });
        Ok(())
    }
}

impl StreamsBuilder {
    /// An empty builder.
    pub fn new() -> StreamsBuilder {
        StreamsBuilder {
            inner: Arc::new(Mutex::new(Inner {
                nodes: Vec::new(),
                stores: BTreeMap::new(),
                repartitions: BTreeMap::new(),
                globals: Vec::new(),
                copartition: Vec::new(),
                window_close_ms: BTreeMap::new(),
                counter: 0,
                error: None,
            })),
        }
    }

    /// A stream of `topic`'s records, read with the default serdes of `K` and `V` (use
    /// `Option<_>` types where keys or values may be null).
    pub fn stream<K: Data + DefaultSerde, V: Data + DefaultSerde>(&self, topic: &str) -> KStream<K, V> {
        self.stream_of(&[topic])
    }

    /// One stream of several topics' records.
    pub fn stream_of<K: Data + DefaultSerde, V: Data + DefaultSerde>(&self, topics: &[&str]) -> KStream<K, V> {
        let mut b = self.inner.lock().unwrap();
        let kind = NodeKind::Source { topics: topics.iter().map(|t| TopicName::User(t.to_string())).collect(), deser: deserializer::<K, V>() };
        let node = b.add("KSTREAM-SOURCE", kind, None, &[], Vec::new(), cloner::<K, V>());
        KStream { b: self.inner.clone(), node, repartition: false, _p: PhantomData }
    }

    /// A table of `topic`: the latest value per key; a null value deletes the key.
    pub fn table<K: Data + DefaultSerde, V: Data + DefaultSerde>(&self, topic: &str) -> KTable<K, V> {
        self.table_with(topic, Materialized::default())
    }

    /// [`StreamsBuilder::table`] with a named or in-memory store.
    pub fn table_with<K: Data + DefaultSerde, V: Data + DefaultSerde>(&self, topic: &str, materialized: Materialized) -> KTable<K, V> {
        let src = {
            let mut b = self.inner.lock().unwrap();
            let kind = NodeKind::Source { topics: vec![TopicName::User(topic.to_string())], deser: deserializer::<K, Option<V>>() };
            b.add("KTABLE-SOURCE", kind, None, &[], Vec::new(), cloner::<K, Option<V>>())
        };
        let stream: KStream<K, Option<V>> = KStream { b: self.inner.clone(), node: src, repartition: false, _p: PhantomData };
        stream.upsert_table(materialized, "KTABLE-SOURCE-STATE-STORE", "KTABLE-MATERIALIZE")
    }

    /// A global table: every instance reads all of `topic` into a local store, so stream
    /// records can be joined with it by any key (no co-partitioning needed).
    pub fn global_table<K: Data + DefaultSerde, V: Data + DefaultSerde>(&self, topic: &str) -> GlobalKTable<K, V> {
        let mut b = self.inner.lock().unwrap();
        let name = b.name("GLOBAL-STORE");
        let store = Arc::new(StoreDef::key_value(name.clone()).without_logging());
        b.globals.push(GlobalDef { topic: topic.to_string(), store });
        GlobalKTable { store: name, _p: PhantomData }
    }

    /// Adds a state store for custom processors ([`KStream::process`]).
    pub fn add_state_store(&self, store: StoreDef) {
        self.inner.lock().unwrap().add_store(store);
    }

    /// Compiles the graph into a topology.
    pub fn build(self) -> Result<Topology> {
        let mut b = self.inner.lock().unwrap();
        if let Some(e) = b.error.take() {
            return Err(e);
        }
        let nodes = std::mem::take(&mut b.nodes);
        Topology::new(nodes, std::mem::take(&mut b.stores), std::mem::take(&mut b.repartitions), std::mem::take(&mut b.globals), std::mem::take(&mut b.copartition))
    }
}

/// A record stream: every record is an independent event.
pub struct KStream<K, V> {
    pub(crate) b: Arc<Mutex<Inner>>,
    pub(crate) node: usize,
    /// The key changed since the source: grouping or joining first repartitions.
    pub(crate) repartition: bool,
    pub(crate) _p: PhantomData<fn() -> (K, V)>,
}

impl<K, V> Clone for KStream<K, V> {
    fn clone(&self) -> Self {
        KStream { b: self.b.clone(), node: self.node, repartition: self.repartition, _p: PhantomData }
    }
}

impl<K: Data, V: Data> KStream<K, V> {
    pub(crate) fn then<K2: Data, V2: Data>(&self, prefix: &str, key_changed: bool, f: impl Fn(&mut NodeCtx<'_>, Rec) -> Result<()> + Send + Sync + 'static) -> KStream<K2, V2> {
        let node = self.b.lock().unwrap().add(prefix, NodeKind::Processor, Some(fn_factory(f)), &[self.node], Vec::new(), cloner::<K2, V2>());
        KStream { b: self.b.clone(), node, repartition: self.repartition || key_changed, _p: PhantomData }
    }

    /// Keeps the records for which `pred` is true.
    pub fn filter(&self, pred: impl Fn(&K, &V) -> bool + Send + Sync + 'static) -> KStream<K, V> {
        self.then("KSTREAM-FILTER", false, move |ctx, rec| {
            if pred(key_ref(&rec), value_ref(&rec)) {
                ctx.forward(rec);
            }
            Ok(())
        })
    }

    /// Drops the records for which `pred` is true.
    pub fn filter_not(&self, pred: impl Fn(&K, &V) -> bool + Send + Sync + 'static) -> KStream<K, V> {
        self.filter(move |k, v| !pred(k, v))
    }

    /// Replaces key and value (the stream is repartitioned before grouping or joining).
    pub fn map<K2: Data, V2: Data>(&self, f: impl Fn(K, V) -> (K2, V2) + Send + Sync + 'static) -> KStream<K2, V2> {
        self.then("KSTREAM-MAP", true, move |ctx, rec| {
            let r = rec.typed::<K, V>();
            let (k, v) = f(r.key, r.value);
            ctx.forward(Rec { key: Box::new(k), value: Box::new(v), ts: r.timestamp, headers: r.headers });
            Ok(())
        })
    }

    /// Replaces the value; the key (and so the partitioning) stays.
    pub fn map_values<V2: Data>(&self, f: impl Fn(V) -> V2 + Send + Sync + 'static) -> KStream<K, V2> {
        self.then("KSTREAM-MAPVALUES", false, move |ctx, rec| {
            let v = *rec.value.downcast::<V>().expect("internal: value type");
            ctx.forward(Rec { key: rec.key, value: Box::new(f(v)), ts: rec.ts, headers: rec.headers });
            Ok(())
        })
    }

    /// Zero or more records per record.
    pub fn flat_map<K2: Data, V2: Data, I: IntoIterator<Item = (K2, V2)>>(&self, f: impl Fn(K, V) -> I + Send + Sync + 'static) -> KStream<K2, V2> {
        self.then("KSTREAM-FLATMAP", true, move |ctx, rec| {
            let r = rec.typed::<K, V>();
            for (k, v) in f(r.key, r.value) {
                ctx.forward(Rec { key: Box::new(k), value: Box::new(v), ts: r.timestamp, headers: r.headers.clone() });
            }
            Ok(())
        })
    }

    /// Zero or more values per record, each with the record's key.
    pub fn flat_map_values<V2: Data, I: IntoIterator<Item = V2>>(&self, f: impl Fn(V) -> I + Send + Sync + 'static) -> KStream<K, V2> {
        self.then("KSTREAM-FLATMAPVALUES", false, move |ctx, rec| {
            let r = rec.typed::<K, V>();
            for v in f(r.value) {
                ctx.forward(Rec { key: Box::new(r.key.clone()), value: Box::new(v), ts: r.timestamp, headers: r.headers.clone() });
            }
            Ok(())
        })
    }

    /// Sets a new key computed from the record.
    pub fn select_key<K2: Data>(&self, f: impl Fn(&K, &V) -> K2 + Send + Sync + 'static) -> KStream<K2, V> {
        self.then("KSTREAM-KEY-SELECT", true, move |ctx, rec| {
            let k = f(key_ref(&rec), value_ref(&rec));
            ctx.forward(Rec { key: Box::new(k), value: rec.value, ts: rec.ts, headers: rec.headers });
            Ok(())
        })
    }

    /// Calls `f` on each record and passes it on unchanged.
    pub fn peek(&self, f: impl Fn(&K, &V) + Send + Sync + 'static) -> KStream<K, V> {
        self.then("KSTREAM-PEEK", false, move |ctx, rec| {
            f(key_ref(&rec), value_ref(&rec));
            ctx.forward(rec);
            Ok(())
        })
    }

    /// Calls `f` on each record (a terminal operation).
    pub fn foreach(&self, f: impl Fn(&K, &V) + Send + Sync + 'static) {
        let _: KStream<K, V> = self.then("KSTREAM-FOREACH", false, move |_ctx, rec| {
            f(key_ref(&rec), value_ref(&rec));
            Ok(())
        });
    }

    /// Splits the stream: each record goes to the first branch whose predicate holds.
    pub fn split(&self) -> BranchedKStream<K, V> {
        BranchedKStream { stream: self.clone(), preds: Vec::new() }
    }

    /// One stream with the records of both.
    pub fn merge(&self, other: &KStream<K, V>) -> KStream<K, V> {
        let node = self.b.lock().unwrap().add(
            "KSTREAM-MERGE",
            NodeKind::Processor,
            Some(fn_factory(|ctx, rec| {
                ctx.forward(rec);
                Ok(())
            })),
            &[self.node, other.node],
            Vec::new(),
            cloner::<K, V>(),
        );
        KStream { b: self.b.clone(), node, repartition: self.repartition || other.repartition, _p: PhantomData }
    }

    /// Writes the stream to `topic` with the default serdes of `K` and `V`.
    pub fn to(&self, topic: &str)
    where
        K: DefaultSerde,
        V: DefaultSerde,
    {
        self.sink(TopicName::User(topic.to_string()));
    }

    fn sink(&self, topic: TopicName) -> usize
    where
        K: DefaultSerde,
        V: DefaultSerde,
    {
        let t = topic.clone();
        let factory: NodeFactory = Arc::new(move || Box::new(SinkNode::<K, V> { topic: t.clone(), resolved: None, ks: K::serde(), vs: V::serde() }));
        self.b.lock().unwrap().add("KSTREAM-SINK", NodeKind::Sink { topic }, Some(factory), &[self.node], Vec::new(), cloner::<K, V>())
    }

    /// Sends the stream through an internal topic partitioned by the current key.
    pub fn repartition(&self) -> KStream<K, V>
    where
        K: DefaultSerde,
        V: DefaultSerde,
    {
        self.repartition_with(None)
    }

    /// [`KStream::repartition`] into a topic with `partitions` partitions (`None`: as many
    /// as the input).
    pub fn repartition_with(&self, partitions: Option<i32>) -> KStream<K, V>
    where
        K: DefaultSerde,
        V: DefaultSerde,
    {
        let name = self.b.lock().unwrap().name("KSTREAM-REPARTITION");
        self.through_repartition(&name, partitions)
    }

    pub(crate) fn through_repartition(&self, name: &str, partitions: Option<i32>) -> KStream<K, V>
    where
        K: DefaultSerde,
        V: DefaultSerde,
    {
        let topic = TopicName::Repartition(name.to_string());
        self.sink(topic.clone());
        let mut b = self.b.lock().unwrap();
        b.repartitions.insert(name.to_string(), RepartitionDef { partitions });
        let node = b.add("KSTREAM-SOURCE", NodeKind::Source { topics: vec![topic], deser: deserializer::<K, V>() }, None, &[], Vec::new(), cloner::<K, V>());
        KStream { b: self.b.clone(), node, repartition: false, _p: PhantomData }
    }

    /// Repartitions when the key changed upstream; the stream to group or join.
    pub(crate) fn repartitioned_for(&self, name: &str) -> KStream<K, V>
    where
        K: DefaultSerde,
        V: DefaultSerde,
    {
        if self.repartition {
            self.through_repartition(name, None)
        } else {
            self.clone()
        }
    }

    /// The stream as a table: each record upserts its key.
    pub fn to_table(&self) -> KTable<K, V>
    where
        K: DefaultSerde,
        V: DefaultSerde,
    {
        self.to_table_with(Materialized::default())
    }

    /// [`KStream::to_table`] with a named or in-memory store.
    pub fn to_table_with(&self, materialized: Materialized) -> KTable<K, V>
    where
        K: DefaultSerde,
        V: DefaultSerde,
    {
        let name = materialized.name.clone().unwrap_or_else(|| self.b.lock().unwrap().name("KSTREAM-TOTABLE-STATE-STORE"));
        let s = self.repartitioned_for(&name);
        s.map_values(Some).upsert_table(Materialized { name: Some(name), ..materialized }, "KSTREAM-TOTABLE-STATE-STORE", "KSTREAM-TOTABLE")
    }

    /// Groups by the current key (repartitioning first if the key changed).
    pub fn group_by_key(&self) -> KGroupedStream<K, V> {
        KGroupedStream { stream: self.clone() }
    }

    /// Groups by a new key (always repartitions).
    pub fn group_by<K2: Data>(&self, f: impl Fn(&K, &V) -> K2 + Send + Sync + 'static) -> KGroupedStream<K2, V> {
        KGroupedStream { stream: self.select_key(f) }
    }

    /// Runs a custom [`Processor`] on each record; `stores` names the state stores
    /// (added with [`StreamsBuilder::add_state_store`]) it uses.
    pub fn process<KOut: Data, VOut: Data, P: Processor<K, V, KOut, VOut>>(&self, make: impl Fn() -> P + Send + Sync + 'static, stores: &[&str]) -> KStream<KOut, VOut> {
        let factory: NodeFactory = Arc::new(move || Box::new(ProcessorNode { p: make(), _t: PhantomData::<fn(K, V, KOut, VOut)> }));
        let node = self.b.lock().unwrap().add("KSTREAM-PROCESSOR", NodeKind::Processor, Some(factory), &[self.node], stores.iter().map(|s| s.to_string()).collect(), cloner::<KOut, VOut>());
        // A custom processor may change the key.
        KStream { b: self.b.clone(), node, repartition: true, _p: PhantomData }
    }
}

impl<K: Data + DefaultSerde, V: Data + DefaultSerde> KStream<K, Option<V>> {
    /// Materializes a stream of upserts (`None` deletes) into a table.
    pub(crate) fn upsert_table(&self, materialized: Materialized, store_prefix: &str, prefix: &str) -> KTable<K, V> {
        let mut b = self.b.lock().unwrap();
        let def = materialized.store_def(&mut b, store_prefix);
        let store = b.add_store(def);
        let s2 = store.clone();
        let factory: NodeFactory = Arc::new(move || Box::new(TableMaterialize::<K, V> { store: s2.clone(), h: None }));
        let node = b.add(prefix, NodeKind::Processor, Some(factory), &[self.node], vec![store.clone()], cloner::<K, Change<V>>());
        KTable { b: self.b.clone(), node, store: Some(store), _p: PhantomData }
    }
}

/// Writes upserts into a store and emits the change.
struct TableMaterialize<K, V> {
    store: String,
    h: Option<KvHandle<K, V>>,
}

impl<K: Data + DefaultSerde, V: Data + DefaultSerde> Node for TableMaterialize<K, V> {
    fn init(&mut self, ctx: &mut NodeCtx<'_>) -> Result<()> {
        self.h = Some(ctx.kv_handle(&self.store)?);
        Ok(())
    }
    fn process(&mut self, ctx: &mut NodeCtx<'_>, rec: Rec) -> Result<()> {
        let h = self.h.clone().expect("initialized");
        let r = rec.typed::<K, Option<V>>();
        if h.ks.serialize(&r.key).is_none() {
            // As Kafka's KTableSource: a null key cannot be a table row; skipped and counted.
            ctx.task.metrics.dropped_null_key += 1;
            return Ok(());
        }
        let old = ctx.kv(&h).get(&r.key)?;
        match &r.value {
            Some(v) => ctx.kv(&h).put(&r.key, v)?,
            None => {
                if old.is_none() {
                    return Ok(());
                }
                ctx.kv(&h).delete(&r.key)?;
            }
        }
        ctx.forward(Rec { key: Box::new(r.key), value: Box::new(Change { new: r.value, old }), ts: r.timestamp, headers: r.headers });
        Ok(())
    }
}

/// The branches of a split stream, built with [`BranchedKStream::branch`].
pub struct BranchedKStream<K, V> {
    stream: KStream<K, V>,
    #[allow(clippy::type_complexity)]
    preds: Vec<Arc<dyn Fn(&K, &V) -> bool + Send + Sync>>,
}

impl<K: Data, V: Data> BranchedKStream<K, V> {
    /// Adds a branch for the records `pred` accepts (and no earlier branch took).
    pub fn branch(mut self, pred: impl Fn(&K, &V) -> bool + Send + Sync + 'static) -> Self {
        self.preds.push(Arc::new(pred));
        self
    }

    /// The branches in order, plus a last one with every record no branch took.
    pub fn default_branch(mut self) -> Vec<KStream<K, V>> {
        self.preds.push(Arc::new(|_, _| true));
        self.no_default_branch()
    }

    /// The branches in order; records no branch takes are dropped.
    pub fn no_default_branch(self) -> Vec<KStream<K, V>> {
        let preds = self.preds.clone();
        let router: KStream<K, V> = self.stream.then("KSTREAM-BRANCH", false, move |ctx, rec| {
            if let Some(i) = preds.iter().position(|p| p(key_ref(&rec), value_ref(&rec))) {
                ctx.forward_to(i, rec);
            }
            Ok(())
        });
        (0..self.preds.len())
            .map(|_| {
                router.then("KSTREAM-BRANCHCHILD", false, |ctx, rec| {
                    ctx.forward(rec);
                    Ok(())
                })
            })
            .collect()
    }
}

/// A stream grouped by key, ready to aggregate.
pub struct KGroupedStream<K, V> {
    pub(crate) stream: KStream<K, V>,
}

impl<K: Data + DefaultSerde, V: Data + DefaultSerde> KGroupedStream<K, V> {
    /// Counts records per key.
    pub fn count(&self) -> KTable<K, i64> {
        self.count_with(Materialized::default())
    }

    /// [`KGroupedStream::count`] into a named or in-memory store.
    pub fn count_with(&self, materialized: Materialized) -> KTable<K, i64> {
        self.aggregate_with(|| 0i64, |_k, _v, n| n + 1, materialized)
    }

    /// Combines the values of each key with `f(aggregate, value)`.
    pub fn reduce(&self, f: impl Fn(V, V) -> V + Send + Sync + 'static) -> KTable<K, V> {
        self.reduce_with(f, Materialized::default())
    }

    /// [`KGroupedStream::reduce`] into a named or in-memory store.
    pub fn reduce_with(&self, f: impl Fn(V, V) -> V + Send + Sync + 'static, materialized: Materialized) -> KTable<K, V> {
        self.build_agg(materialized, "KSTREAM-REDUCE", move |_k: &K, v: V, old: Option<V>| match old {
            Some(agg) => f(agg, v),
            None => v,
        })
    }

    /// Folds the values of each key into an aggregate starting from `init()`.
    pub fn aggregate<A: Data + DefaultSerde>(&self, init: impl Fn() -> A + Send + Sync + 'static, f: impl Fn(&K, V, A) -> A + Send + Sync + 'static) -> KTable<K, A> {
        self.aggregate_with(init, f, Materialized::default())
    }

    /// [`KGroupedStream::aggregate`] into a named or in-memory store.
    pub fn aggregate_with<A: Data + DefaultSerde>(
        &self,
        init: impl Fn() -> A + Send + Sync + 'static,
        f: impl Fn(&K, V, A) -> A + Send + Sync + 'static,
        materialized: Materialized,
    ) -> KTable<K, A> {
        self.build_agg(materialized, "KSTREAM-AGGREGATE", move |k: &K, v: V, old: Option<A>| f(k, v, old.unwrap_or_else(&init)))
    }

    fn build_agg<A: Data + DefaultSerde>(&self, materialized: Materialized, prefix: &str, step: impl Fn(&K, V, Option<A>) -> A + Send + Sync + 'static) -> KTable<K, A> {
        let def = {
            let mut b = self.stream.b.lock().unwrap();
            StoreDef { timestamped: true, ..materialized.store_def(&mut b, &format!("{prefix}-STATE-STORE")) }
        };
        let input = self.stream.repartitioned_for(&def.name);
        let mut b = self.stream.b.lock().unwrap();
        let store = b.add_store(def);
        let step = Arc::new(step);
        let s2 = store.clone();
        let factory: NodeFactory = Arc::new(move || Box::new(AggNode::<K, V, A> { store: s2.clone(), h: None, step: step.clone(), held: BTreeMap::new() }));
        let node = b.add(prefix, NodeKind::Processor, Some(factory), &[input.node], vec![store.clone()], cloner::<K, Change<A>>());
        KTable { b: self.stream.b.clone(), node, store: Some(store), _p: PhantomData }
    }
}

/// An update an aggregation holds back for the record cache: the key, the value before
/// the first held update, the latest value, its time and headers.
type Held<K, A> = (K, Option<A>, A, i64, crate::record::Headers);

#[allow(clippy::type_complexity)]
struct AggNode<K, V, A> {
    store: String,
    h: Option<KvHandle<K, A>>,
    step: Arc<dyn Fn(&K, V, Option<A>) -> A + Send + Sync>,
    /// With record caching: the latest update per serialized key since the last flush.
    held: BTreeMap<Vec<u8>, Held<K, A>>,
}

impl<K: Data + DefaultSerde, V: Data, A: Data + DefaultSerde> Node for AggNode<K, V, A> {
    fn init(&mut self, ctx: &mut NodeCtx<'_>) -> Result<()> {
        self.h = Some(ctx.kv_handle(&self.store)?);
        Ok(())
    }
    fn process(&mut self, ctx: &mut NodeCtx<'_>, rec: Rec) -> Result<()> {
        let h = self.h.clone().expect("initialized");
        let r = rec.typed::<K, V>();
        let Some(key_bytes) = h.ks.serialize(&r.key) else {
            // As Kafka: a record with a null key has no group; it is skipped and counted.
            ctx.task.metrics.dropped_null_key += 1;
            return Ok(());
        };
        let (old, old_ts) = match ctx.kv(&h).get_with_timestamp(&r.key)? {
            Some((v, ts)) => (Some(v), ts),
            None => (None, None),
        };
        let new = (self.step)(&r.key, r.value, old.clone());
        // As Kafka: the aggregate is as recent as the latest record in it.
        let ts = old_ts.map_or(r.timestamp, |t| t.max(r.timestamp));
        ctx.kv(&h).put_with_timestamp(&r.key, &new, ts)?;
        if ctx.task.caching {
            // Kafka's record cache: downstream sees the latest update per key at the next
            // flush, with the value from before the first update held back as `old`.
            match self.held.get_mut(&key_bytes) {
                Some(held) => {
                    held.2 = new;
                    held.3 = ts;
                    held.4 = r.headers;
                }
                None => {
                    self.held.insert(key_bytes, (r.key, old, new, ts, r.headers));
                }
            }
            return Ok(());
        }
        ctx.forward(Rec { key: Box::new(r.key), value: Box::new(Change { new: Some(new), old }), ts, headers: r.headers });
        Ok(())
    }

    fn flush(&mut self, ctx: &mut NodeCtx<'_>) -> Result<()> {
        for (_, (key, old, new, ts, headers)) in std::mem::take(&mut self.held) {
            ctx.forward(Rec { key: Box::new(key), value: Box::new(Change { new: Some(new), old }), ts, headers });
        }
        Ok(())
    }

    fn abort(&mut self) {
        self.held.clear();
    }
}

/// A changelog stream: the latest value per key. Its records are [`Change`]s.
pub struct KTable<K, V> {
    pub(crate) b: Arc<Mutex<Inner>>,
    pub(crate) node: usize,
    /// The store holding the table, when it is materialized.
    pub(crate) store: Option<String>,
    pub(crate) _p: PhantomData<fn() -> (K, V)>,
}

impl<K, V> Clone for KTable<K, V> {
    fn clone(&self) -> Self {
        KTable { b: self.b.clone(), node: self.node, store: self.store.clone(), _p: PhantomData }
    }
}

impl<K: Data, V: Data> KTable<K, V> {
    pub(crate) fn then_change<V2: Data>(&self, prefix: &str, f: impl Fn(&mut NodeCtx<'_>, Rec) -> Result<()> + Send + Sync + 'static) -> KTable<K, V2> {
        let node = self.b.lock().unwrap().add(prefix, NodeKind::Processor, Some(fn_factory(f)), &[self.node], Vec::new(), cloner::<K, Change<V2>>());
        KTable { b: self.b.clone(), node, store: None, _p: PhantomData }
    }

    /// The name of the store holding this table, if it is materialized.
    pub fn store_name(&self) -> Option<&str> {
        self.store.as_deref()
    }

    /// Keeps the entries for which `pred` holds (others read as deleted).
    pub fn filter(&self, pred: impl Fn(&K, &V) -> bool + Send + Sync + 'static) -> KTable<K, V> {
        self.then_change("KTABLE-FILTER", move |ctx, rec| {
            let r = rec.typed::<K, Change<V>>();
            let new = r.value.new.filter(|v| pred(&r.key, v));
            let old = r.value.old.filter(|v| pred(&r.key, v));
            if new.is_some() || old.is_some() {
                ctx.forward(Rec { key: Box::new(r.key), value: Box::new(Change { new, old }), ts: r.timestamp, headers: r.headers });
            }
            Ok(())
        })
    }

    /// Drops the entries for which `pred` holds.
    pub fn filter_not(&self, pred: impl Fn(&K, &V) -> bool + Send + Sync + 'static) -> KTable<K, V> {
        self.filter(move |k, v| !pred(k, v))
    }

    /// Transforms every value.
    pub fn map_values<V2: Data>(&self, f: impl Fn(&K, &V) -> V2 + Send + Sync + 'static) -> KTable<K, V2> {
        self.then_change("KTABLE-MAPVALUES", move |ctx, rec| {
            let r = rec.typed::<K, Change<V>>();
            let new = r.value.new.as_ref().map(|v| f(&r.key, v));
            let old = r.value.old.as_ref().map(|v| f(&r.key, v));
            ctx.forward(Rec { key: Box::new(r.key), value: Box::new(Change { new, old }), ts: r.timestamp, headers: r.headers });
            Ok(())
        })
    }

    /// The table's updates as a stream of current values (deletions are dropped; see
    /// [`KTable::to_changelog_stream`] to keep them).
    pub fn to_stream(&self) -> KStream<K, V> {
        let node = self.b.lock().unwrap().add(
            "KTABLE-TOSTREAM",
            NodeKind::Processor,
            Some(fn_factory(|ctx, rec| {
                let ch = *rec.value.downcast::<Change<V>>().expect("internal: change type");
                if let Some(v) = ch.new {
                    ctx.forward(Rec { key: rec.key, value: Box::new(v), ts: rec.ts, headers: rec.headers });
                }
                Ok(())
            })),
            &[self.node],
            Vec::new(),
            cloner::<K, V>(),
        );
        KStream { b: self.b.clone(), node, repartition: false, _p: PhantomData }
    }

    /// The table's updates with deletions as `None` (tombstones when written to a topic).
    pub fn to_changelog_stream(&self) -> KStream<K, Option<V>> {
        let node = self.b.lock().unwrap().add(
            "KTABLE-TOSTREAM",
            NodeKind::Processor,
            Some(fn_factory(|ctx, rec| {
                let ch = *rec.value.downcast::<Change<V>>().expect("internal: change type");
                ctx.forward(Rec { key: rec.key, value: Box::new(ch.new), ts: rec.ts, headers: rec.headers });
                Ok(())
            })),
            &[self.node],
            Vec::new(),
            cloner::<K, Option<V>>(),
        );
        KStream { b: self.b.clone(), node, repartition: false, _p: PhantomData }
    }
}

impl<K: Data + DefaultSerde, V: Data + DefaultSerde> KTable<K, V> {
    /// This table backed by a store (adds one when the table is not materialized yet).
    pub fn materialized(&self) -> KTable<K, V> {
        if self.store.is_some() {
            return self.clone();
        }
        self.to_changelog_stream().upsert_table(Materialized::default(), "KTABLE-STATE-STORE", "KTABLE-MATERIALIZE")
    }
}

/// A table fully replicated to every instance, for lookups by any key.
pub struct GlobalKTable<K, V> {
    pub(crate) store: String,
    pub(crate) _p: PhantomData<fn() -> (K, V)>,
}

impl<K, V> Clone for GlobalKTable<K, V> {
    fn clone(&self) -> Self {
        GlobalKTable { store: self.store.clone(), _p: PhantomData }
    }
}

impl<K, V> GlobalKTable<K, V> {
    /// The name of the global store.
    pub fn store_name(&self) -> &str {
        &self.store
    }
}
