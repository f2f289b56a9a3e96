//! Joins: stream-stream (windowed), stream-table, stream-globaltable, table-table and
//! foreign-key table-table, with Kafka Streams' semantics.
//!
//! ```text
//!  KStream ─┬─ join / left_join / outer_join (KStream, JoinWindows) ─> KStream  both sides buffered in window stores
//!           ├─ join_table / left_join_table (KTable) ───────────────> KStream  lookup; table updates emit nothing
//!           └─ join_global / left_join_global (GlobalKTable) ───────> KStream  lookup by a selected key
//!  KTable ──┬─ join / left_join / outer_join (KTable) ──────────────> KTable   an update on either side looks up the other
//!           └─ join_on_foreign_key / left_join_on_foreign_key ──────> KTable   subscription and response topics
//! ```
//!
//! Stream-stream, stream-table and table-table joins need co-partitioned inputs: a stream
//! whose key changed is repartitioned first, and the source topics of both sides are
//! registered as a co-partition group, which the runtime checks (equal partition counts)
//! before starting. A foreign-key join registers its subscription topic with the right
//! table's topics and its response topic with the left table's; a global join needs none.
//!
//! One submodule per kind: `stream_stream` (window stores and the outer-join buffer),
//! `stream_table` (table and global-table lookups), `table_table`, and `foreign_key`
//! (Kafka's subscription/response design, with `murmur3` hashing the left values).

use std::marker::PhantomData;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::dsl::{Data, Inner, KStream, KTable};
use crate::error::Result;
use crate::processor::{NodeCtx, NodeFactory};
use crate::record::{cloner, Change};
use crate::serde::DefaultSerde;
use crate::topology::NodeKind;

mod foreign_key;
mod murmur3;
mod stream_stream;
mod stream_table;
mod table_table;

/// The largest duration a join accepts, in ms: keeps `timestamp ± window ± grace` far from
/// overflowing an `i64`.
const MAX_WINDOW_MS: i64 = i64::MAX / 8;

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(MAX_WINDOW_MS).min(MAX_WINDOW_MS)
}

/// The time bounds of a stream-stream join (Kafka's `JoinWindows`): a record joins the
/// other side's records of the same key that are at most `before` earlier or `after`
/// later than it; records out of order by more than `grace` are dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JoinWindows {
    pub(crate) before_ms: i64,
    pub(crate) after_ms: i64,
    pub(crate) grace_ms: i64,
}

impl JoinWindows {
    /// Records join when their timestamps differ by at most `diff`; records may arrive up
    /// to `grace` out of order.
    pub fn of_time_difference_and_grace(diff: Duration, grace: Duration) -> JoinWindows {
        let d = millis(diff);
        JoinWindows { before_ms: d, after_ms: d, grace_ms: millis(grace) }
    }

    /// [`JoinWindows::of_time_difference_and_grace`] with no grace: a record out of order
    /// at all is dropped, and left/outer results are emitted as soon as the window ends.
    pub fn of_time_difference_without_grace(diff: Duration) -> JoinWindows {
        Self::of_time_difference_and_grace(diff, Duration::ZERO)
    }

    /// Builder: other-side records may be at most `before` earlier (the later bound stays).
    pub fn before(mut self, before: Duration) -> JoinWindows {
        self.before_ms = millis(before);
        self
    }

    /// Builder: other-side records may be at most `after` later (the earlier bound stays).
    pub fn after(mut self, after: Duration) -> JoinWindows {
        self.after_ms = millis(after);
        self
    }

    /// How much earlier an other-side record may be, in ms.
    pub fn before_ms(&self) -> i64 {
        self.before_ms
    }

    /// How much later an other-side record may be, in ms.
    pub fn after_ms(&self) -> i64 {
        self.after_ms
    }

    /// The grace period in ms.
    pub fn grace_ms(&self) -> i64 {
        self.grace_ms
    }

    /// The span of timestamps one record joins with (`before + after`), in ms.
    pub fn size_ms(&self) -> i64 {
        self.before_ms + self.after_ms
    }
}

impl<K: Data, V: Data> KTable<K, V> {
    /// The table's updates as [`Change`]s, with the value each one replaced (e.g. to audit
    /// the results of a table join: each `old` is the previously emitted `new`). A stream of
    /// changes has no serde, so it is for `foreach`, `peek` and `process`, not for topics.
    pub fn to_change_stream(&self) -> KStream<K, Change<V>> {
        KStream { b: self.b.clone(), node: self.node, repartition: false, _p: PhantomData }
    }
}

/// The stream to join: repartitioned through an internal topic when its key changed, so
/// that both sides of a join are partitioned by the same key.
fn copartitioned<K: Data + DefaultSerde, V: Data + DefaultSerde>(s: &KStream<K, V>, prefix: &str) -> KStream<K, V> {
    if !s.repartition {
        return s.clone();
    }
    let name = s.b.lock().unwrap().name(&format!("{prefix}-REPARTITION"));
    s.through_repartition(&name, None)
}

impl<K, V> KStream<K, V> {
    /// Declares that this stream and `other` meet in one task (a custom processor joins
    /// them through a state store): their topics form a co-partition group, so repartition
    /// topics get the partition count of the others, and `KafkaStreams::start` refuses
    /// source topics whose partition counts differ, as the DSL's own joins do.
    pub fn copartition_with<K2, V2>(&self, other: &KStream<K2, V2>) {
        require_copartitioned(&mut self.b.lock().unwrap(), &[self.node, other.node]);
    }
}

/// Registers the source topics of `nodes` as one co-partition group.
fn require_copartitioned(b: &mut Inner, nodes: &[usize]) {
    let mut group = std::collections::BTreeSet::new();
    for &n in nodes {
        group.extend(b.source_topics_of(n));
    }
    b.copartition.push(group);
}

/// Adds a processor node with `parents` that uses `stores`, as a stream of `K2`, `V2`.
fn add_node<K2: Data, V2: Data>(b: &Arc<Mutex<Inner>>, prefix: &str, factory: NodeFactory, parents: &[usize], stores: Vec<String>) -> KStream<K2, V2> {
    let node = b.lock().unwrap().add(prefix, NodeKind::Processor, Some(factory), parents, stores, cloner::<K2, V2>());
    KStream { b: b.clone(), node, repartition: false, _p: PhantomData }
}

/// Raw byte access to a key-value store of the task (for composite keys the typed views
/// do not express: the outer-join buffer and the foreign-key subscription store).
#[derive(Debug, Clone, Copy)]
struct RawKv {
    idx: usize,
}

impl RawKv {
    fn open(ctx: &NodeCtx<'_>, name: &str) -> Result<RawKv> {
        Ok(RawKv { idx: ctx.store_idx(name)? })
    }

    fn get(self, ctx: &NodeCtx<'_>, key: &[u8]) -> Result<Option<Vec<u8>>> {
        ctx.task.stores[self.idx].get(key)
    }

    fn put(self, ctx: &mut NodeCtx<'_>, key: Vec<u8>, value: Option<Vec<u8>>) {
        let ts = ctx.ts;
        let t = &mut *ctx.task;
        t.stores[self.idx].put(key, value, ts, self.idx, &mut t.out);
    }

    /// Entries with `from <= key < to`.
    fn range(self, ctx: &NodeCtx<'_>, from: Option<&[u8]>, to: Option<&[u8]>) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        ctx.task.stores[self.idx].range(from, to)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::TopicName;
    use crate::StreamsBuilder;

    #[test]
    fn join_windows_bounds() {
        let w = JoinWindows::of_time_difference_and_grace(Duration::from_millis(10), Duration::from_millis(3)).after(Duration::from_millis(4));
        assert_eq!((w.before_ms(), w.after_ms(), w.grace_ms(), w.size_ms()), (10, 4, 3, 14));
        let huge = JoinWindows::of_time_difference_without_grace(Duration::MAX);
        assert_eq!(huge.before_ms(), MAX_WINDOW_MS);
        assert_eq!(huge.grace_ms(), 0);
    }

    #[test]
    fn joins_register_copartition_groups() {
        let b = StreamsBuilder::new();
        let left = b.stream::<String, String>("l").select_key(|_, v| v.clone());
        let right = b.stream::<String, String>("r");
        let table = b.table::<String, String>("t");
        left.join(&right, |a, c| format!("{a}{c}"), JoinWindows::of_time_difference_without_grace(Duration::from_millis(5))).to("o1");
        right.join_table(&table, |a, c| format!("{a}{c}")).to("o2");
        let groups = b.inner.lock().unwrap().copartition.clone();
        assert_eq!(groups.len(), 2);
        assert!(groups[0].contains(&TopicName::User("r".into())));
        assert!(groups[0].iter().any(|t| matches!(t, TopicName::Repartition(_))), "the re-keyed side joins through its repartition topic: {groups:?}");
        assert!(!groups[0].contains(&TopicName::User("l".into())));
        assert_eq!(groups[1], [TopicName::User("r".into()), TopicName::User("t".into())].into_iter().collect());
        let topo = b.build().unwrap();
        assert_eq!(topo.subs.len(), 2, "{}", topo.describe());
    }
}
