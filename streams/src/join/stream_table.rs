//! Stream-table and stream-globaltable joins (Kafka's `KStreamKTableJoin` and
//! `KStreamGlobalKTableJoin`): each stream record looks up the table's current value; table
//! updates only change the table, they emit nothing.
//!
//! A table join's node names the table's store, which puts it in the table's sub-topology
//! (the inputs are co-partitioned, so the task's store partition holds the record's key).
//! A global table is complete on every instance: its store is read from the task's global
//! stores by a key the record selects, with no co-partitioning.

use std::sync::Arc;

use crate::dsl::{key_ref, value_ref, Data, GlobalKTable, KStream, KTable};
use crate::error::{Error, Result};
use crate::processor::{Node, NodeCtx, NodeFactory};
use crate::record::Rec;
use crate::serde::{DefaultSerde, SerdeRef};
use crate::stores::{KvHandle, SharedBackend};

use super::{add_node, copartitioned, require_copartitioned};

/// A lookup joiner: `None` when the table has no value (left joins only).
type LookupJoiner<V, VT, VR> = Arc<dyn Fn(&V, Option<&VT>) -> Option<VR> + Send + Sync>;

/// Picks the global table's key for a stream record.
type KeySelector<K, V, KG> = Arc<dyn Fn(&K, &V) -> KG + Send + Sync>;

impl<K: Data + DefaultSerde, V: Data + DefaultSerde> KStream<K, V> {
    /// Joins each record with the table's current value for its key; records whose key is
    /// not in the table are dropped.
    pub fn join_table<VT: Data + DefaultSerde, VR: Data>(&self, table: &KTable<K, VT>, joiner: impl Fn(&V, &VT) -> VR + Send + Sync + 'static) -> KStream<K, VR> {
        self.table_join(table, Arc::new(move |v, t| t.map(|t| joiner(v, t))), "KSTREAM-JOIN")
    }

    /// Joins each record with the table's current value for its key, or `None`.
    pub fn left_join_table<VT: Data + DefaultSerde, VR: Data>(
        &self,
        table: &KTable<K, VT>,
        joiner: impl Fn(&V, Option<&VT>) -> VR + Send + Sync + 'static,
    ) -> KStream<K, VR> {
        self.table_join(table, Arc::new(move |v, t| Some(joiner(v, t))), "KSTREAM-LEFTJOIN")
    }

    fn table_join<VT: Data + DefaultSerde, VR: Data>(&self, table: &KTable<K, VT>, joiner: LookupJoiner<V, VT, VR>, prefix: &str) -> KStream<K, VR> {
        let table = table.materialized();
        let store = table.store.clone().expect("a materialized table has a store");
        let stream = copartitioned(self, prefix);
        require_copartitioned(&mut self.b.lock().unwrap(), &[stream.node, table.node]);
        let s = store.clone();
        let factory: NodeFactory = Arc::new(move || Box::new(TableLookup::<K, V, VT, VR> { store: s.clone(), h: None, joiner: joiner.clone() }));
        add_node(&self.b, prefix, factory, &[stream.node], vec![store])
    }

    /// Joins each record with the global table's value for `key_selector(key, value)`;
    /// records without one are dropped. The result keeps the stream's key.
    pub fn join_global<KG: DefaultSerde, VG: Data + DefaultSerde, VR: Data>(
        &self,
        global: &GlobalKTable<KG, VG>,
        key_selector: impl Fn(&K, &V) -> KG + Send + Sync + 'static,
        joiner: impl Fn(&V, &VG) -> VR + Send + Sync + 'static,
    ) -> KStream<K, VR> {
        self.global_join(global, key_selector, Arc::new(move |v, g| g.map(|g| joiner(v, g))), "KSTREAM-JOIN")
    }

    /// Joins each record with the global table's value for `key_selector(key, value)`, or
    /// `None`.
    pub fn left_join_global<KG: DefaultSerde, VG: Data + DefaultSerde, VR: Data>(
        &self,
        global: &GlobalKTable<KG, VG>,
        key_selector: impl Fn(&K, &V) -> KG + Send + Sync + 'static,
        joiner: impl Fn(&V, Option<&VG>) -> VR + Send + Sync + 'static,
    ) -> KStream<K, VR> {
        self.global_join(global, key_selector, Arc::new(move |v, g| Some(joiner(v, g))), "KSTREAM-LEFTJOIN")
    }

    fn global_join<KG: DefaultSerde, VG: Data + DefaultSerde, VR: Data>(
        &self,
        global: &GlobalKTable<KG, VG>,
        key_selector: impl Fn(&K, &V) -> KG + Send + Sync + 'static,
        joiner: LookupJoiner<V, VG, VR>,
        prefix: &str,
    ) -> KStream<K, VR> {
        let store = global.store.clone();
        let select: KeySelector<K, V, KG> = Arc::new(key_selector);
        let factory: NodeFactory = Arc::new(move || {
            Box::new(GlobalLookup::<K, V, KG, VG, VR> { store: store.clone(), backend: None, kgs: KG::serde(), vgs: VG::serde(), select: select.clone(), joiner: joiner.clone() })
        });
        // The global store is not named in the node's stores: that would tie every
        // sub-topology reading the same global table into one.
        add_node(&self.b, prefix, factory, &[self.node], Vec::new())
    }
}

struct TableLookup<K, V, VT, VR> {
    store: String,
    h: Option<KvHandle<K, VT>>,
    joiner: LookupJoiner<V, VT, VR>,
}

impl<K: Data + DefaultSerde, V: Data, VT: Data + DefaultSerde, VR: Data> Node for TableLookup<K, V, VT, VR> {
    fn init(&mut self, ctx: &mut NodeCtx<'_>) -> Result<()> {
        self.h = Some(ctx.kv_handle(&self.store)?);
        Ok(())
    }

    fn process(&mut self, ctx: &mut NodeCtx<'_>, rec: Rec) -> Result<()> {
        let h = self.h.as_ref().expect("initialized");
        // A null key has no table value (a left join still emits it, KIP-962).
        let found = if h.ks.serialize(key_ref::<K>(&rec)).is_some() { ctx.kv(h).get(key_ref(&rec))? } else { None };
        if let Some(out) = (self.joiner)(value_ref::<V>(&rec), found.as_ref()) {
            ctx.forward(Rec { key: rec.key, value: Box::new(out), ts: rec.ts, headers: rec.headers });
        }
        Ok(())
    }
}

struct GlobalLookup<K, V, KG, VG, VR> {
    store: String,
    backend: Option<SharedBackend>,
    kgs: SerdeRef<KG>,
    vgs: SerdeRef<VG>,
    select: KeySelector<K, V, KG>,
    joiner: LookupJoiner<V, VG, VR>,
}

impl<K: Data, V: Data, KG: 'static, VG: Data, VR: Data> Node for GlobalLookup<K, V, KG, VG, VR> {
    fn init(&mut self, ctx: &mut NodeCtx<'_>) -> Result<()> {
        let b = ctx.task.globals.get(&self.store).ok_or_else(|| Error::Topology(format!("processor `{}` joins global table `{}`, which this task does not have", ctx.name, self.store)))?;
        self.backend = Some(b.clone());
        Ok(())
    }

    fn process(&mut self, ctx: &mut NodeCtx<'_>, rec: Rec) -> Result<()> {
        let (k, v) = (key_ref::<K>(&rec), value_ref::<V>(&rec));
        let found = match self.kgs.serialize(&(self.select)(k, v)) {
            // No global key: nothing to find (a left join still emits the record).
            None => None,
            Some(kb) => {
                let raw = self.backend.as_ref().expect("initialized").lock().unwrap_or_else(|p| p.into_inner()).get(&kb)?;
                match raw {
                    Some(b) => Some(
                        self.vgs.deserialize(Some(&b)).map_err(|e| Error::Store(format!("global store `{}` holds a value its serde cannot read: {e}", self.store)))?,
                    ),
                    None => None,
                }
            }
        };
        if let Some(out) = (self.joiner)(v, found.as_ref()) {
            ctx.forward(Rec { key: rec.key, value: Box::new(out), ts: rec.ts, headers: rec.headers });
        }
        Ok(())
    }
}
