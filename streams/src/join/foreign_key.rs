//! Foreign-key table-table joins (KIP-213), in Kafka's design: the left table subscribes
//! to right rows through a topic keyed by the foreign key, and the right side answers
//! through a topic keyed by the left (primary) key.
//!
//! ```text
//!  left table (store L) ─ SUBSCRIPTION-REGISTRATION: per left change, (fk, {pk, hash(new left value), instruction})
//!      └─> subscription topic (key fk; co-partitioned with the right table)
//!            └─ SUBSCRIPTION-PROCESSOR: (fk, pk) -> hash into the subscription store S; looks up
//!               the right store R and answers (pk, {hash, right value}) as the instruction says
//!  right table (store R) ─ FOREIGN-PROCESSOR: per right change of fk, answers every subscriber in S
//!      both answers ─> response topic (key pk; co-partitioned with the left table)
//!            └─ RESPONSE-RESOLVER: drops a response whose hash is not that of the left row's
//!               current value (the row changed while the response was in flight), else joins
//!               └─ KTABLE-FK-JOIN-OUTPUT (store): the result table, Change { new, old }
//! ```
//!
//! Instructions (Kafka's `SubscriptionWrapper.Instruction`, chosen as Kafka's
//! `SubscriptionSendProcessorSupplier` does): when a left row's foreign key changes, the old
//! subscription is deleted without an answer and the new one asks for an answer even when
//! the right row is missing, so the old result is retracted (`None`) or replaced. A deleted
//! left row deletes its subscription and gets a `None` answer. A null foreign key (`fk`
//! returning a value that serializes to null) subscribes to nothing: an inner join retracts
//! the old result, a left join answers `(left, None)` through a null-keyed subscription.
//!
//! The result is materialized (Kafka only materializes it when asked) so that every update
//! carries the previous result as `old`, and repeated tombstones are not emitted.

use std::sync::Arc;

use crate::dsl::{Data, KStream, KTable, Materialized};
use crate::error::{Error, Result};
use crate::processor::{Node, NodeCtx, NodeFactory};
use crate::record::{Change, Rec};
use crate::serde::{DefaultSerde, Serde, SerdeRef};
use crate::stores::{key_prefix, prefix_end, KvHandle, StoreDef};

use super::murmur3::{hash128, KAFKA_SEED};
use super::{add_node, require_copartitioned, RawKv};

/// Wire format version of the internal topics' values.
const VERSION: u8 = 0;

/// What the right side does with a subscription (Kafka's `SubscriptionWrapper.Instruction`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Instruction {
    /// Unsubscribe; no answer (the new foreign key's answer replaces the result).
    DeleteKeyNoPropagate = 0,
    /// Unsubscribe and answer `None` (the left row is gone or has no foreign key).
    DeleteKeyAndPropagate = 1,
    /// Subscribe and answer, with `None` when the right row is missing.
    PropagateNullIfNoFkValAvailable = 2,
    /// Subscribe and answer only when the right row exists.
    PropagateOnlyIfFkValAvailable = 3,
}

impl Instruction {
    fn from_byte(b: u8) -> Result<Instruction, String> {
        Ok(match b {
            0 => Instruction::DeleteKeyNoPropagate,
            1 => Instruction::DeleteKeyAndPropagate,
            2 => Instruction::PropagateNullIfNoFkValAvailable,
            3 => Instruction::PropagateOnlyIfFkValAvailable,
            _ => return Err(format!("unknown foreign-key subscription instruction {b}")),
        })
    }
}

/// Murmur3 128 of a left value's bytes: identifies the left row version a message is for.
type Hash = [u8; 16];

fn value_hash<V: 'static>(vs: &SerdeRef<V>, v: &V) -> Hash {
    let (h1, h2) = hash128(&vs.serialize(v).unwrap_or_default(), KAFKA_SEED);
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&h1.to_be_bytes());
    out[8..].copy_from_slice(&h2.to_be_bytes());
    out
}

fn put_hash(b: &mut Vec<u8>, h: &Option<Hash>) {
    match h {
        Some(h) => {
            b.push(1);
            b.extend_from_slice(h);
        }
        None => b.push(0),
    }
}

/// Reads an optional hash; returns it and the rest.
fn take_hash(b: &[u8]) -> Result<(Option<Hash>, &[u8]), String> {
    match b.first() {
        Some(0) => Ok((None, &b[1..])),
        Some(1) if b.len() >= 17 => Ok((Some(b[1..17].try_into().expect("16 bytes")), &b[17..])),
        _ => Err("truncated or corrupt value hash".into()),
    }
}

fn take_version(b: Option<&[u8]>) -> Result<&[u8], String> {
    match b {
        Some([VERSION, rest @ ..]) => Ok(rest),
        Some([v, ..]) => Err(format!("unknown foreign-key join message version {v}")),
        _ => Err("empty foreign-key join message".into()),
    }
}

/// A left row's subscription to a foreign key: the value of the subscription topic.
#[derive(Debug, Clone)]
struct Subscription<K> {
    hash: Option<Hash>,
    instruction: Instruction,
    pk: K,
}

struct SubscriptionSerde<K>(SerdeRef<K>);

impl<K: 'static> Serde<Subscription<K>> for SubscriptionSerde<K> {
    fn serialize(&self, s: &Subscription<K>) -> Option<Vec<u8>> {
        let mut b = vec![VERSION, s.instruction as u8];
        put_hash(&mut b, &s.hash);
        // Primary keys come from a table store, so they are never null.
        b.extend_from_slice(&self.0.serialize(&s.pk).unwrap_or_default());
        Some(b)
    }
    fn deserialize(&self, bytes: Option<&[u8]>) -> Result<Subscription<K>, String> {
        let b = take_version(bytes)?;
        let (&ins, b) = b.split_first().ok_or("truncated subscription")?;
        let (hash, pk) = take_hash(b)?;
        Ok(Subscription { hash, instruction: Instruction::from_byte(ins)?, pk: self.0.deserialize(Some(pk))? })
    }
}

impl<K: DefaultSerde> DefaultSerde for Subscription<K> {
    fn serde() -> SerdeRef<Self> {
        Arc::new(SubscriptionSerde(K::serde()))
    }
}

/// The right side's answer: the value of the response topic.
#[derive(Debug, Clone)]
struct Response<VO> {
    hash: Option<Hash>,
    value: Option<VO>,
}

struct ResponseSerde<VO>(SerdeRef<VO>);

impl<VO: 'static> Serde<Response<VO>> for ResponseSerde<VO> {
    fn serialize(&self, r: &Response<VO>) -> Option<Vec<u8>> {
        let mut b = vec![VERSION];
        put_hash(&mut b, &r.hash);
        // A right value that serializes to null is no value (a table cannot hold it).
        match r.value.as_ref().and_then(|v| self.0.serialize(v)) {
            Some(v) => {
                b.push(1);
                b.extend_from_slice(&v);
            }
            None => b.push(0),
        }
        Some(b)
    }
    fn deserialize(&self, bytes: Option<&[u8]>) -> Result<Response<VO>, String> {
        let (hash, b) = take_hash(take_version(bytes)?)?;
        let value = match b.split_first() {
            Some((0, _)) => None,
            Some((1, v)) => Some(self.0.deserialize(Some(v))?),
            _ => return Err("truncated foreign-key join response".into()),
        };
        Ok(Response { hash, value })
    }
}

impl<VO: DefaultSerde> DefaultSerde for Response<VO> {
    fn serde() -> SerdeRef<Self> {
        Arc::new(ResponseSerde(VO::serde()))
    }
}

/// The joiner, with `None` for a missing right row (inner joins never see it).
type FkJoiner<V, VO, VR> = Arc<dyn Fn(&V, Option<&VO>) -> VR + Send + Sync>;

impl<K: Data + DefaultSerde, V: Data + DefaultSerde> KTable<K, V> {
    /// Joins each row with the row of `other` whose key is `fk(value)`: a result for each
    /// row whose foreign row exists. Changing a row's foreign key or deleting the foreign
    /// row retracts the result.
    pub fn join_on_foreign_key<KO: Data + DefaultSerde, VO: Data + DefaultSerde, VR: Data + DefaultSerde>(
        &self,
        other: &KTable<KO, VO>,
        fk: impl Fn(&V) -> KO + Send + Sync + 'static,
        joiner: impl Fn(&V, &VO) -> VR + Send + Sync + 'static,
    ) -> KTable<K, VR> {
        self.fk_join(other, Arc::new(fk), Arc::new(move |v, vo| joiner(v, vo.expect("inner join: right side"))), false)
    }

    /// Joins each row with the row of `other` whose key is `fk(value)`, or `None`: a result
    /// for every row of this table.
    pub fn left_join_on_foreign_key<KO: Data + DefaultSerde, VO: Data + DefaultSerde, VR: Data + DefaultSerde>(
        &self,
        other: &KTable<KO, VO>,
        fk: impl Fn(&V) -> KO + Send + Sync + 'static,
        joiner: impl Fn(&V, Option<&VO>) -> VR + Send + Sync + 'static,
    ) -> KTable<K, VR> {
        self.fk_join(other, Arc::new(fk), Arc::new(joiner), true)
    }

    fn fk_join<KO: Data + DefaultSerde, VO: Data + DefaultSerde, VR: Data + DefaultSerde>(
        &self,
        other: &KTable<KO, VO>,
        fk: Arc<dyn Fn(&V) -> KO + Send + Sync>,
        joiner: FkJoiner<V, VO, VR>,
        left: bool,
    ) -> KTable<K, VR> {
        let (this, that) = (self.materialized(), other.materialized());
        let left_store = this.store.clone().expect("a materialized table has a store");
        let right_store = that.store.clone().expect("a materialized table has a store");
        let (sub_topic, resp_topic, sub_store) = {
            let mut b = self.b.lock().unwrap();
            let sub_topic = b.name("KTABLE-FK-JOIN-SUBSCRIPTION-REGISTRATION");
            let resp_topic = b.name("KTABLE-FK-JOIN-SUBSCRIPTION-RESPONSE");
            let sub_store = b.name("KTABLE-FK-JOIN-SUBSCRIPTION-STATE-STORE");
            let sub_store = b.add_store(StoreDef::key_value(sub_store));
            (sub_topic, resp_topic, sub_store)
        };

        // Left side: changes -> subscriptions, keyed by the foreign key (None: no key).
        let (vs, kos) = (V::serde(), KO::serde());
        let send: KStream<Option<KO>, Subscription<K>> = this.to_change_stream().then("KTABLE-FK-JOIN-SUBSCRIPTION-REGISTRATION", true, move |ctx, rec| {
            let r = rec.typed::<K, Change<V>>();
            let hash = r.value.new.as_ref().map(|v| value_hash(&vs, v));
            let fk_of = |v: &Option<V>| v.as_ref().map(|v| fk(v)).filter(|k| kos.serialize(k).is_some());
            let (old_fk, new_fk) = (fk_of(&r.value.old), fk_of(&r.value.new));
            let changed = old_fk.as_ref().map(|k| kos.serialize(k)) != new_fk.as_ref().map(|k| kos.serialize(k));
            for (fk, instruction) in instructions(left, r.value.old.is_some(), r.value.new.is_some(), old_fk, new_fk, changed) {
                let sub = Subscription { hash, instruction, pk: r.key.clone() };
                ctx.forward(Rec { key: Box::new(fk), value: Box::new(sub), ts: r.timestamp, headers: r.headers.clone() });
            }
            Ok(())
        });
        let subs = send.through_repartition(&sub_topic, None);

        // Right side: subscriptions and right-row changes -> responses, keyed by the primary key.
        let (ss, rs) = (sub_store.clone(), right_store.clone());
        let f: NodeFactory = Arc::new(move || Box::new(SubscriptionReceive::<K, KO, VO> { sub_store: ss.clone(), right_store: rs.clone(), open: None }));
        let answers = add_node::<K, Response<VO>>(&self.b, "KTABLE-FK-JOIN-SUBSCRIPTION-PROCESSOR", f, &[subs.node], vec![sub_store.clone(), right_store]);
        let ss = sub_store.clone();
        let f: NodeFactory = Arc::new(move || Box::new(ForeignChange::<K, KO, VO> { sub_store: ss.clone(), open: None, _p: std::marker::PhantomData }));
        let updates = add_node::<K, Response<VO>>(&self.b, "KTABLE-FK-JOIN-FOREIGN-PROCESSOR", f, &[that.node], vec![sub_store]);
        let responses = answers.merge(&updates).through_repartition(&resp_topic, None);

        // Left side again: current responses -> results.
        let ls = left_store.clone();
        let f: NodeFactory = Arc::new(move || Box::new(ResponseResolve::<K, V, VO, VR> { left_store: ls.clone(), h: None, joiner: joiner.clone(), left }));
        let results = add_node::<K, Option<VR>>(&self.b, "KTABLE-FK-JOIN-SUBSCRIPTION-RESPONSE-RESOLVER-PROCESSOR", f, &[responses.node], vec![left_store]);
        {
            let mut b = self.b.lock().unwrap();
            require_copartitioned(&mut b, &[subs.node, that.node]);
            require_copartitioned(&mut b, &[responses.node, this.node]);
        }
        results.upsert_table(Materialized::default(), "KTABLE-FK-JOIN-OUTPUT-STATE-STORE", "KTABLE-FK-JOIN-OUTPUT")
    }
}

/// The subscriptions a left change sends (Kafka's `SubscriptionSendProcessorSupplier`).
/// `old_fk` / `new_fk` are `None` for an absent row or a null foreign key.
fn instructions<KO>(left: bool, had_old: bool, has_new: bool, old_fk: Option<KO>, new_fk: Option<KO>, changed: bool) -> Vec<(Option<KO>, Instruction)> {
    use Instruction::*;
    let mut out = Vec::new();
    if left {
        if !had_old && !has_new {
            return out;
        }
        if old_fk.is_some() && changed {
            out.push((old_fk, DeleteKeyNoPropagate));
        }
        // Always answered (a null key too): a left join has a result for every row.
        out.push((new_fk, PropagateNullIfNoFkValAvailable));
        return out;
    }
    match (old_fk, has_new, new_fk) {
        // Deleted row, or a null new foreign key: retract the old result.
        (Some(old), _, None) => out.push((Some(old), DeleteKeyAndPropagate)),
        (Some(old), true, Some(new)) if changed => {
            out.push((Some(old), DeleteKeyNoPropagate));
            out.push((Some(new), PropagateNullIfNoFkValAvailable));
        }
        // Same foreign key: if it has no right row, the old value had no result either.
        (Some(_), true, Some(new)) => out.push((Some(new), PropagateOnlyIfFkValAvailable)),
        (None, true, Some(new)) => out.push((Some(new), PropagateOnlyIfFkValAvailable)),
        _ => {}
    }
    out
}

/// Store key of a subscription: `len(fk) ++ fk ++ pk`, so one foreign key's subscribers
/// are one range.
fn subscription_key(fk: &[u8], pk: &[u8]) -> Vec<u8> {
    let mut k = key_prefix(fk);
    k.extend_from_slice(pk);
    k
}

struct SubscriptionReceive<K, KO, VO> {
    sub_store: String,
    right_store: String,
    open: Option<(RawKv, KvHandle<KO, VO>, SerdeRef<K>)>,
}

impl<K: Data + DefaultSerde, KO: Data + DefaultSerde, VO: Data + DefaultSerde> Node for SubscriptionReceive<K, KO, VO> {
    fn init(&mut self, ctx: &mut NodeCtx<'_>) -> Result<()> {
        self.open = Some((RawKv::open(ctx, &self.sub_store)?, ctx.kv_handle(&self.right_store)?, K::serde()));
        Ok(())
    }

    fn process(&mut self, ctx: &mut NodeCtx<'_>, rec: Rec) -> Result<()> {
        let (subs, right, ks) = self.open.as_ref().expect("initialized");
        let r = rec.typed::<Option<KO>, Subscription<K>>();
        let sub = r.value;
        let answer = |ctx: &mut NodeCtx<'_>, pk: K, value: Option<VO>| {
            ctx.forward(Rec { key: Box::new(pk), value: Box::new(Response { hash: sub.hash, value }), ts: r.timestamp, headers: r.headers.clone() });
        };
        let fkb = r.key.as_ref().and_then(|k| right.ks.serialize(k));
        let (Some(fk), Some(fkb)) = (r.key.as_ref(), fkb) else {
            // No foreign key: nothing to subscribe to; a left join still wants its answer.
            if sub.instruction == Instruction::PropagateNullIfNoFkValAvailable {
                answer(ctx, sub.pk.clone(), None);
            }
            return Ok(());
        };
        let pkb = ks.serialize(&sub.pk).ok_or_else(|| Error::Store("foreign-key join: a primary key serialized to null".into()))?;
        let skey = subscription_key(&fkb, &pkb);
        match sub.instruction {
            Instruction::DeleteKeyNoPropagate | Instruction::DeleteKeyAndPropagate => subs.put(ctx, skey, None),
            _ => {
                let mut v = Vec::with_capacity(17);
                put_hash(&mut v, &sub.hash);
                subs.put(ctx, skey, Some(v));
            }
        }
        match sub.instruction {
            Instruction::DeleteKeyNoPropagate => {}
            Instruction::DeleteKeyAndPropagate => answer(ctx, sub.pk.clone(), None),
            Instruction::PropagateNullIfNoFkValAvailable => {
                let v = ctx.kv(right).get(fk)?;
                answer(ctx, sub.pk.clone(), v);
            }
            Instruction::PropagateOnlyIfFkValAvailable => {
                if let Some(v) = ctx.kv(right).get(fk)? {
                    answer(ctx, sub.pk.clone(), Some(v));
                }
            }
        }
        Ok(())
    }
}

/// A right-row change answers every subscriber of its key (Kafka's
/// `ForeignTableJoinProcessorSupplier`).
struct ForeignChange<K, KO, VO> {
    sub_store: String,
    open: Option<(RawKv, SerdeRef<K>, SerdeRef<KO>)>,
    _p: std::marker::PhantomData<fn(VO)>,
}

impl<K: Data + DefaultSerde, KO: Data + DefaultSerde, VO: Data> Node for ForeignChange<K, KO, VO> {
    fn init(&mut self, ctx: &mut NodeCtx<'_>) -> Result<()> {
        self.open = Some((RawKv::open(ctx, &self.sub_store)?, K::serde(), KO::serde()));
        Ok(())
    }

    fn process(&mut self, ctx: &mut NodeCtx<'_>, rec: Rec) -> Result<()> {
        let (subs, ks, kos) = self.open.as_ref().expect("initialized");
        let r = rec.typed::<KO, Change<VO>>();
        let Some(fkb) = kos.serialize(&r.key) else { return Ok(()) };
        let prefix = key_prefix(&fkb);
        for (skey, sval) in subs.range(ctx, Some(&prefix), prefix_end(&prefix).as_deref())? {
            let pk = ks.deserialize(Some(&skey[prefix.len()..])).map_err(|e| Error::Store(format!("foreign-key join: a subscribed key does not deserialize: {e}")))?;
            let (hash, _) = take_hash(&sval).map_err(|e| Error::Store(format!("foreign-key join subscription store: {e}")))?;
            let resp = Response { hash, value: r.value.new.clone() };
            ctx.forward(Rec { key: Box::new(pk), value: Box::new(resp), ts: r.timestamp, headers: r.headers.clone() });
        }
        Ok(())
    }
}

/// Joins a response with the left row it was asked for, unless the row changed since
/// (Kafka's `ResponseJoinProcessorSupplier`).
struct ResponseResolve<K, V, VO, VR> {
    left_store: String,
    h: Option<KvHandle<K, V>>,
    joiner: FkJoiner<V, VO, VR>,
    left: bool,
}

impl<K: Data + DefaultSerde, V: Data + DefaultSerde, VO: Data, VR: Data> Node for ResponseResolve<K, V, VO, VR> {
    fn init(&mut self, ctx: &mut NodeCtx<'_>) -> Result<()> {
        self.h = Some(ctx.kv_handle(&self.left_store)?);
        Ok(())
    }

    fn process(&mut self, ctx: &mut NodeCtx<'_>, rec: Rec) -> Result<()> {
        let h = self.h.as_ref().expect("initialized");
        let r = rec.typed::<K, Response<VO>>();
        let current = ctx.kv(h).get(&r.key)?;
        if current.as_ref().map(|v| value_hash(&h.vs, v)) != r.value.hash {
            tracing::trace!(node = ctx.name, "dropping a stale foreign-key join response (the left row changed since)");
            return Ok(());
        }
        let out = match (&current, &r.value.value) {
            (None, _) => None,
            (Some(_), None) if !self.left => None,
            (Some(v), right) => Some((self.joiner)(v, right.as_ref())),
        };
        ctx.forward(Rec { key: Box::new(r.key), value: Box::new(out), ts: r.timestamp, headers: r.headers });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::{StreamsBuilder, TopologyTestDriver};

    #[test]
    fn wire_formats_round_trip() {
        let s = Subscription { hash: Some([7; 16]), instruction: Instruction::PropagateOnlyIfFkValAvailable, pk: "k".to_string() };
        let serde = Subscription::<String>::serde();
        let back = serde.deserialize(serde.serialize(&s).as_deref()).unwrap();
        assert_eq!((back.hash, back.instruction, back.pk), (s.hash, s.instruction, s.pk));
        let r = Response { hash: None, value: Some(5i64) };
        let serde = Response::<i64>::serde();
        let back = serde.deserialize(serde.serialize(&r).as_deref()).unwrap();
        assert_eq!((back.hash, back.value), (None, Some(5)));
        assert!(serde.deserialize(Some(&[9])).unwrap_err().contains("version"));
    }

    #[test]
    fn inner_instructions_follow_kafka() {
        use Instruction::*;
        let a = || Some("a");
        let b = || Some("b");
        assert_eq!(instructions(false, false, true, None, a(), true), vec![(a(), PropagateOnlyIfFkValAvailable)]);
        assert_eq!(instructions(false, true, true, a(), a(), false), vec![(a(), PropagateOnlyIfFkValAvailable)]);
        assert_eq!(instructions(false, true, true, a(), b(), true), vec![(a(), DeleteKeyNoPropagate), (b(), PropagateNullIfNoFkValAvailable)]);
        assert_eq!(instructions(false, true, false, a(), None, true), vec![(a(), DeleteKeyAndPropagate)]);
        assert_eq!(instructions(false, true, true, a(), None, true), vec![(a(), DeleteKeyAndPropagate)], "a null new FK retracts");
        assert_eq!(instructions::<&str>(false, true, true, None, None, false), vec![]);
        assert_eq!(instructions(true, true, false, a(), None, true), vec![(a(), DeleteKeyNoPropagate), (None, PropagateNullIfNoFkValAvailable)]);
        assert_eq!(instructions::<&str>(true, false, false, None, None, false), vec![]);
    }

    /// A response for an older version of the left row (in flight while the row changed)
    /// must not overwrite the result; one for the current version must.
    #[test]
    fn stale_responses_are_dropped() -> Result<()> {
        let b = StreamsBuilder::new();
        let orders = b.table::<String, String>("orders");
        let customers = b.table::<String, String>("customers");
        orders.join_on_foreign_key(&customers, |o: &String| o.split('|').next().unwrap_or_default().to_string(), |o, c| format!("{o}/{c}")).to_changelog_stream().to("out");
        let topo = b.build()?;
        let resp = topo.repartitions.keys().find(|n| n.contains("RESPONSE")).expect("a response topic").clone();
        let mut d = TopologyTestDriver::new(topo)?;
        let mut c = d.input::<String, String>("customers");
        let mut o = d.input::<String, String>("orders");
        c.pipe(&mut d, "c1".into(), "Ann".into())?;
        o.pipe(&mut d, "o1".into(), "c1|old".into())?;
        o.pipe(&mut d, "o1".into(), "c1|new".into())?;
        let out = d.output::<String, Option<String>>("out");
        assert_eq!(out.read_key_values()?, vec![("o1".into(), Some("c1|old/Ann".into())), ("o1".into(), Some("c1|new/Ann".into()))]);

        let topic = format!("test-app-{resp}-repartition");
        let send = |d: &mut TopologyTestDriver, left_value: &str, right: &str| {
            let r = Response { hash: Some(value_hash(&String::serde(), &left_value.to_string())), value: Some(right.to_string()) };
            let v = Response::<String>::serde().serialize(&r).map(Bytes::from);
            d.pipe_raw(&topic, Some(Bytes::from_static(b"o1")), v, 5, Vec::new())
        };
        send(&mut d, "c1|old", "Bob")?;
        assert!(out.is_empty(), "a response for the old left value is stale");
        send(&mut d, "c1|new", "Bob")?;
        assert_eq!(out.read_key_values()?, vec![("o1".into(), Some("c1|new/Bob".into()))]);
        Ok(())
    }
}
