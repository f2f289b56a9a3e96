//! Table-table joins (Kafka's `KTableKTableInnerJoin`, `KTableKTableLeftJoin`,
//! `KTableKTableOuterJoin`).
//!
//! ```text
//!  this table (materialized) ── KTABLE-JOINTHIS  (looks up other's store) ──┐
//!                                                                            ├─> KTABLE-MERGE ─> KTable<K, VR>
//!  other table (materialized) ─ KTABLE-JOINOTHER (looks up this store) ─────┘
//! ```
//!
//! An update `Change { new, old }` of one side is joined with the other side's current
//! value: the result's `new` joins `new`, its `old` joins `old`. Since every update of
//! either side is forwarded this way (and nothing is forwarded when both results are
//! absent), each result's `old` is the result emitted before for that key. The stores are
//! written before the change is forwarded, so the other side's lookup sees every update
//! processed so far. Results carry the timestamp of the update that caused them (Kafka
//! takes the larger of both sides' timestamps, which our stores do not keep).

use std::sync::Arc;

use crate::dsl::{fn_factory, Data, KTable};
use crate::error::Result;
use crate::processor::{Node, NodeCtx, NodeFactory};
use crate::record::{Change, Rec};
use crate::serde::DefaultSerde;
use crate::stores::KvHandle;

use super::{add_node, require_copartitioned};

/// Which absent sides still give a result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Inner,
    Left,
    Outer,
}

impl Kind {
    fn defined(self, this: bool, other: bool) -> bool {
        match self {
            Kind::Inner => this && other,
            Kind::Left => this,
            Kind::Outer => this || other,
        }
    }
}

/// The result of one side's value `T` with the other side's `O`, oriented for that side.
type SideJoiner<T, O, VR> = Arc<dyn Fn(Option<&T>, Option<&O>) -> Option<VR> + Send + Sync>;

impl<K: Data + DefaultSerde, V: Data + DefaultSerde> KTable<K, V> {
    /// Inner join: a result for each key present in both tables.
    pub fn join<VO: Data + DefaultSerde, VR: Data>(&self, other: &KTable<K, VO>, joiner: impl Fn(&V, &VO) -> VR + Send + Sync + 'static) -> KTable<K, VR> {
        self.table_join(other, Kind::Inner, move |a, b| joiner(a.expect("inner join: this side"), b.expect("inner join: other side")))
    }

    /// Left join: a result for each key of this table, with the other's value or `None`.
    pub fn left_join<VO: Data + DefaultSerde, VR: Data>(
        &self,
        other: &KTable<K, VO>,
        joiner: impl Fn(&V, Option<&VO>) -> VR + Send + Sync + 'static,
    ) -> KTable<K, VR> {
        self.table_join(other, Kind::Left, move |a, b| joiner(a.expect("left join: this side"), b))
    }

    /// Outer join: a result for each key present in either table.
    pub fn outer_join<VO: Data + DefaultSerde, VR: Data>(
        &self,
        other: &KTable<K, VO>,
        joiner: impl Fn(Option<&V>, Option<&VO>) -> VR + Send + Sync + 'static,
    ) -> KTable<K, VR> {
        self.table_join(other, Kind::Outer, joiner)
    }

    fn table_join<VO: Data + DefaultSerde, VR: Data>(
        &self,
        other: &KTable<K, VO>,
        kind: Kind,
        joiner: impl Fn(Option<&V>, Option<&VO>) -> VR + Send + Sync + 'static,
    ) -> KTable<K, VR> {
        let (this, that) = (self.materialized(), other.materialized());
        let this_store = this.store.clone().expect("a materialized table has a store");
        let other_store = that.store.clone().expect("a materialized table has a store");
        require_copartitioned(&mut self.b.lock().unwrap(), &[this.node, that.node]);
        let joiner = Arc::new(joiner);
        let j = joiner.clone();
        let this_side: SideJoiner<V, VO, VR> = Arc::new(move |t, o| kind.defined(t.is_some(), o.is_some()).then(|| j(t, o)));
        let other_side: SideJoiner<VO, V, VR> = Arc::new(move |o, t| kind.defined(t.is_some(), o.is_some()).then(|| joiner(t, o)));
        let (prefix_this, prefix_other) = match kind {
            Kind::Inner => ("KTABLE-JOINTHIS", "KTABLE-JOINOTHER"),
            Kind::Left => ("KTABLE-LEFTTHIS", "KTABLE-LEFTOTHER"),
            Kind::Outer => ("KTABLE-OUTERTHIS", "KTABLE-OUTEROTHER"),
        };
        let os = other_store.clone();
        let f: NodeFactory = Arc::new(move || Box::new(JoinSide::<K, V, VO, VR> { other_store: os.clone(), h: None, joiner: this_side.clone() }));
        let a = add_node::<K, Change<VR>>(&self.b, prefix_this, f, &[this.node], vec![other_store]);
        let ts = this_store.clone();
        let f: NodeFactory = Arc::new(move || Box::new(JoinSide::<K, VO, V, VR> { other_store: ts.clone(), h: None, joiner: other_side.clone() }));
        let b = add_node::<K, Change<VR>>(&self.b, prefix_other, f, &[that.node], vec![this_store]);
        let f = fn_factory(|ctx, rec| {
            ctx.forward(rec);
            Ok(())
        });
        let merged = add_node::<K, Change<VR>>(&self.b, "KTABLE-MERGE", f, &[a.node, b.node], Vec::new());
        KTable { b: self.b.clone(), node: merged.node, store: None, _p: std::marker::PhantomData }
    }
}

/// One side of a table-table join: joins its changes with the other side's store.
struct JoinSide<K, T, O, VR> {
    other_store: String,
    h: Option<KvHandle<K, O>>,
    joiner: SideJoiner<T, O, VR>,
}

impl<K: Data + DefaultSerde, T: Data, O: Data + DefaultSerde, VR: Data> Node for JoinSide<K, T, O, VR> {
    fn init(&mut self, ctx: &mut NodeCtx<'_>) -> Result<()> {
        self.h = Some(ctx.kv_handle(&self.other_store)?);
        Ok(())
    }

    fn process(&mut self, ctx: &mut NodeCtx<'_>, rec: Rec) -> Result<()> {
        let r = rec.typed::<K, Change<T>>();
        let other = ctx.kv(self.h.as_ref().expect("initialized")).get(&r.key)?;
        let new = (self.joiner)(r.value.new.as_ref(), other.as_ref());
        let old = (self.joiner)(r.value.old.as_ref(), other.as_ref());
        if new.is_none() && old.is_none() {
            return Ok(());
        }
        ctx.forward(Rec { key: Box::new(r.key), value: Box::new(Change { new, old }), ts: r.timestamp, headers: r.headers });
        Ok(())
    }
}
