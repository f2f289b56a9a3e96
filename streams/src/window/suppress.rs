//! [`KTable::suppress`] on windowed tables, after Kafka's `KTableSuppressProcessor`.
//!
//! The buffer is a logged key-value state store, so it is committed with the output and
//! restored after a crash: each final result is emitted exactly once under exactly-once
//! processing. It holds one entry per windowed key not yet emitted, so it is no larger
//! than the upstream store's open windows (Kafka's in-memory buffer needs a size limit
//! for that reason; this one lives on disk with the other stores). Layout:
//!
//! ```text
//!   [0] ++ windowed key                     -> due time (8 bytes, order-preserving)
//!   [1] ++ due time ++ windowed key         -> entry: timestamp (8 bytes) ++ prior ++ new
//! ```
//!
//! where `prior` and `new` are each a tag (0: absent, 1: null bytes, 2: bytes follow)
//! and, for tag 2, a 4-byte big-endian length and the value's bytes. The queue entries
//! sort by due time, so emitting is a range scan up to the current stream time.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use super::{topology_error, Windowed};
use crate::dsl::{Data, Inner, KTable};
use crate::error::{Error, Result};
use crate::processor::{Node, NodeCtx, NodeFactory, PunctuationType};
use crate::record::{cloner, Change, Rec, Record};
use crate::serde::{DefaultSerde, SerdeRef};
use crate::stores::{ts_bytes, ts_from, KvHandle, StoreDef};
use crate::topology::NodeKind;

/// When a suppressed table lets an update through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suppressed {
    until: Until,
    name: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Until {
    WindowCloses,
    TimeLimit(i64),
}

impl Suppressed {
    /// Only each window's final result, once the window closes (Kafka's
    /// `Suppressed.untilWindowCloses` with an unbounded buffer).
    pub fn until_window_closes() -> Suppressed {
        Suppressed { until: Until::WindowCloses, name: None }
    }

    /// The latest update of a key once stream time is `limit` past its first held update
    /// (Kafka's `Suppressed.untilTimeLimit`): at most one update per key per `limit`.
    pub fn until_time_limit(limit: Duration) -> Suppressed {
        Suppressed { until: Until::TimeLimit(i64::try_from(limit.as_millis()).unwrap_or(i64::MAX)), name: None }
    }

    /// Builder: names the buffer's state store `<name>-store`.
    pub fn with_name(mut self, name: impl Into<String>) -> Suppressed {
        self.name = Some(name.into());
        self
    }
}

impl<K: Data + DefaultSerde, V: Data + DefaultSerde> KTable<Windowed<K>, V> {
    /// Holds updates back as `suppressed` says; with [`Suppressed::until_window_closes`],
    /// emits exactly one final row per window (retractions of merged sessions are dropped).
    pub fn suppress(&self, suppressed: Suppressed) -> KTable<Windowed<K>, V> {
        let mut b = self.b.lock().unwrap();
        let due = match suppressed.until {
            Until::WindowCloses => match close_after_end(&b, self.node) {
                Ok(c) => Due::AfterWindowEnd(c),
                Err(e) => {
                    topology_error(&mut b, e);
                    Due::AfterWindowEnd(0)
                }
            },
            Until::TimeLimit(limit) => Due::AfterFirstUpdate(limit),
        };
        let store_name = match &suppressed.name {
            Some(n) => format!("{n}-store"),
            None => b.name("KTABLE-SUPPRESS-STATE-STORE"),
        };
        let store = b.add_store(StoreDef::key_value(store_name));
        let s = store.clone();
        let factory: NodeFactory = Arc::new(move || Box::new(SuppressNode::<K, V> { store: s.clone(), h: None, due, ks: Windowed::<K>::serde(), vs: V::serde(), _p: PhantomData }));
        let node = b.add("KTABLE-SUPPRESS", NodeKind::Processor, Some(factory), &[self.node], vec![store], cloner::<Windowed<K>, Change<V>>());
        KTable { b: self.b.clone(), node, store: None, _p: PhantomData }
    }
}

/// The ms after a window's end at which the windows reaching `node` close: the largest
/// over its upstream windowed aggregations (Kafka's `GraphGraceSearchUtil`).
fn close_after_end(b: &Inner, node: usize) -> Result<i64, String> {
    if let Some(&c) = b.window_close_ms.get(&node) {
        return Ok(c);
    }
    let n = &b.nodes[node];
    if n.parents.is_empty() {
        return Err(format!(
            "suppress(until_window_closes) needs a windowed aggregation upstream, but `{}` reaches it without one (window close time is only defined for windowed computations)",
            n.name
        ));
    }
    n.parents.iter().try_fold(i64::MIN, |max, &p| Ok(max.max(close_after_end(b, p)?)))
}

/// When a held update becomes due.
#[derive(Debug, Clone, Copy)]
enum Due {
    /// At the window's end plus this many ms; tombstones are dropped (final results).
    AfterWindowEnd(i64),
    /// This many ms after the first held update of the key; tombstones are forwarded.
    AfterFirstUpdate(i64),
}

const INDEX: u8 = 0;
const QUEUE: u8 = 1;

fn index_key(key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + key.len());
    k.push(INDEX);
    k.extend_from_slice(key);
    k
}

fn queue_key(due: i64, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(9 + key.len());
    k.push(QUEUE);
    k.extend_from_slice(&ts_bytes(due));
    k.extend_from_slice(key);
    k
}

/// A value of a [`Change`]: absent, or present as (possibly null) bytes.
type Part = Option<Option<Vec<u8>>>;

/// A held update: its timestamp, the value before the first held update, the latest value.
#[derive(Debug, PartialEq)]
struct Entry {
    ts: i64,
    prior: Part,
    new: Part,
}

fn put_part(out: &mut Vec<u8>, part: &Part) {
    match part {
        None => out.push(0),
        Some(None) => out.push(1),
        Some(Some(b)) => {
            out.push(2);
            out.extend_from_slice(&u32::try_from(b.len()).expect("a value under 4 GiB").to_be_bytes());
            out.extend_from_slice(b);
        }
    }
}

fn take_part(b: &mut &[u8]) -> Result<Part, String> {
    let (&tag, rest) = b.split_first().ok_or("truncated entry")?;
    *b = rest;
    match tag {
        0 => Ok(None),
        1 => Ok(Some(None)),
        2 => {
            let len = u32::from_be_bytes(b.get(..4).ok_or("truncated length")?.try_into().expect("4 bytes")) as usize;
            let v = b.get(4..4 + len).ok_or("truncated value")?.to_vec();
            *b = &b[4 + len..];
            Ok(Some(Some(v)))
        }
        t => Err(format!("bad tag {t}")),
    }
}

impl Entry {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16);
        out.extend_from_slice(&self.ts.to_be_bytes());
        put_part(&mut out, &self.prior);
        put_part(&mut out, &self.new);
        out
    }

    fn decode(mut b: &[u8]) -> Result<Entry, String> {
        let ts = i64::from_be_bytes(b.get(..8).ok_or("truncated timestamp")?.try_into().expect("8 bytes"));
        b = &b[8..];
        let prior = take_part(&mut b)?;
        let new = take_part(&mut b)?;
        if !b.is_empty() {
            return Err(format!("{} bytes after the entry", b.len()));
        }
        Ok(Entry { ts, prior, new })
    }
}

/// Buffers changes per windowed key and forwards them when due.
struct SuppressNode<K, V> {
    store: String,
    h: Option<KvHandle<Vec<u8>, Vec<u8>>>,
    due: Due,
    ks: SerdeRef<Windowed<K>>,
    vs: SerdeRef<V>,
    _p: PhantomData<fn(K)>,
}

impl<K: Data + DefaultSerde, V: Data + DefaultSerde> SuppressNode<K, V> {
    fn bad(&self, what: String) -> Error {
        Error::Store(format!("suppression buffer `{}`: {what}", self.store))
    }

    fn part(&self, b: Option<&[u8]>) -> Result<V> {
        self.vs.deserialize(b).map_err(|e| self.bad(format!("a held value does not deserialize: {e}")))
    }

    /// Forwards (and forgets) every held update due at the current stream time.
    fn emit_due(&self, ctx: &mut NodeCtx<'_>) -> Result<()> {
        let now = ctx.task.stream_time;
        if now == i64::MIN {
            return Ok(());
        }
        let h = self.h.clone().expect("initialized");
        // Up to the first key due after now (windowed keys are longer than the bound's 0).
        let due = ctx.kv(&h).range(&vec![QUEUE], &queue_key(now.saturating_add(1), &[]))?;
        for (k, v) in due {
            let at = ts_from(&k[1..9]);
            if at > now {
                break;
            }
            let key = &k[9..];
            ctx.kv(&h).delete(&k)?;
            ctx.kv(&h).delete(&index_key(key))?;
            let e = Entry::decode(&v).map_err(|e| self.bad(e))?;
            if e.new.is_none() && matches!(self.due, Due::AfterWindowEnd(_)) {
                continue;
            }
            let new = e.new.map(|b| self.part(b.as_deref())).transpose()?;
            let old = e.prior.map(|b| self.part(b.as_deref())).transpose()?;
            let key = self.ks.deserialize(Some(key)).map_err(|e| self.bad(format!("a held key does not deserialize: {e}")))?;
            ctx.forward(Rec::from_typed(Record { key, value: Change { new, old }, timestamp: e.ts, headers: Vec::new() }));
        }
        Ok(())
    }
}

impl<K: Data + DefaultSerde, V: Data + DefaultSerde> Node for SuppressNode<K, V> {
    fn init(&mut self, ctx: &mut NodeCtx<'_>) -> Result<()> {
        self.h = Some(ctx.kv_handle(&self.store)?);
        // Stream time also advances on records that never reach this node (other keys,
        // records dropped upstream): check after every advance.
        ctx.schedule(Duration::from_millis(1), PunctuationType::StreamTime);
        Ok(())
    }

    fn process(&mut self, ctx: &mut NodeCtx<'_>, rec: Rec) -> Result<()> {
        let h = self.h.clone().expect("initialized");
        let r = rec.typed::<Windowed<K>, Change<V>>();
        let key = self.ks.serialize(&r.key).ok_or_else(|| self.bad("a windowed key serialized to null".into()))?;
        let (due, prior) = match ctx.kv(&h).get(&index_key(&key))? {
            Some(at) => {
                let at = if at.len() == 8 { ts_from(&at) } else { return Err(self.bad(format!("an index entry has {} bytes, not 8", at.len()))) };
                let held = ctx.kv(&h).get(&queue_key(at, &key))?.ok_or_else(|| self.bad(format!("the index names an entry due at {at} that is missing")))?;
                (at, Entry::decode(&held).map_err(|e| self.bad(e))?.prior)
            }
            None => {
                let at = match self.due {
                    Due::AfterWindowEnd(ms) => r.key.window.end.saturating_add(ms),
                    Due::AfterFirstUpdate(ms) => r.timestamp.saturating_add(ms),
                };
                ctx.kv(&h).put(&index_key(&key), &ts_bytes(at).to_vec())?;
                (at, r.value.old.as_ref().map(|v| self.vs.serialize(v)))
            }
        };
        let entry = Entry { ts: r.timestamp, prior, new: r.value.new.as_ref().map(|v| self.vs.serialize(v)) };
        ctx.kv(&h).put(&queue_key(due, &key), &entry.encode())?;
        self.emit_due(ctx)
    }

    fn punctuate(&mut self, ctx: &mut NodeCtx<'_>, _id: usize, _ts: i64) -> Result<()> {
        self.emit_due(ctx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip() {
        for e in [
            Entry { ts: -1, prior: None, new: Some(Some(b"abc".to_vec())) },
            Entry { ts: 7, prior: Some(None), new: None },
            Entry { ts: i64::MAX, prior: Some(Some(Vec::new())), new: Some(Some(vec![0; 300])) },
        ] {
            assert_eq!(Entry::decode(&e.encode()).unwrap(), e);
        }
        assert!(Entry::decode(&[0; 5]).is_err());
        assert!(Entry::decode(&[0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 9, 1]).unwrap_err().contains("truncated"));
    }

    #[test]
    fn queue_keys_sort_by_due_time_then_key() {
        assert!(queue_key(-1, b"z") < queue_key(0, b"a"));
        assert!(queue_key(5, b"a") < queue_key(5, b"b"));
        assert!(queue_key(5, b"zzzzzzzzzzzzzzzzzz") < queue_key(6, &[]));
        assert!(index_key(b"zz") < queue_key(i64::MIN, &[]));
    }
}
