//! State stores as processors use them: definitions, the per-task store state (committed
//! backend + uncommitted overlay + changelog), and typed key-value, window and session
//! views.
//!
//! Writes go to an in-memory overlay and, when the store is logged, to the changelog
//! topic (through the task's output). At commit the overlay is written to the backend in
//! one atomic batch with the changelog offset it reaches (the checkpoint); on abort it is
//! dropped. So the backend only ever holds committed state, which is what makes
//! exactly-once restore exact and interactive queries read committed data.

use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::ops::Bound;
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};
use crate::record::Headers;
use crate::serde::SerdeRef;
use crate::store::backend::{BatchEntry, KvBackend};

/// The kind of a state store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreKind {
    /// Key to value.
    KeyValue,
    /// (key, window start) to value; windows older than `retention_ms` of stream time expire.
    Window {
        /// Window size in ms.
        size_ms: i64,
        /// How long windows are kept, in stream time.
        retention_ms: i64,
        /// Keep every put (joins), not only the last per key and window.
        retain_duplicates: bool,
    },
    /// (key, session start, session end) to value.
    Session {
        /// How long sessions are kept after their end, in stream time.
        retention_ms: i64,
    },
}

/// A state store of the topology.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreDef {
    /// Name (unique in the topology; part of the changelog topic's name).
    pub name: String,
    /// What it stores.
    pub kind: StoreKind,
    /// Kept in memory instead of RocksDB (the changelog still makes it durable).
    pub in_memory: bool,
    /// Backed by a changelog topic.
    pub logged: bool,
    /// Key-value stores of aggregations: each value is stored after the 8-byte
    /// big-endian timestamp of its latest update (Kafka's timestamped stores).
    pub timestamped: bool,
}

impl StoreDef {
    /// A RocksDB key-value store with a changelog.
    pub fn key_value(name: impl Into<String>) -> StoreDef {
        StoreDef { name: name.into(), kind: StoreKind::KeyValue, in_memory: false, logged: true, timestamped: false }
    }

    /// A RocksDB window store with a changelog.
    pub fn window(name: impl Into<String>, size_ms: i64, retention_ms: i64, retain_duplicates: bool) -> StoreDef {
        StoreDef { name: name.into(), kind: StoreKind::Window { size_ms, retention_ms, retain_duplicates }, in_memory: false, logged: true, timestamped: false }
    }

    /// A RocksDB session store with a changelog.
    pub fn session(name: impl Into<String>, retention_ms: i64) -> StoreDef {
        StoreDef { name: name.into(), kind: StoreKind::Session { retention_ms }, in_memory: false, logged: true, timestamped: false }
    }

    /// Builder: keeps the store in memory.
    pub fn in_memory(mut self) -> StoreDef {
        self.in_memory = true;
        self
    }

    /// Builder: turns the changelog off (state is then lost with the local directory).
    pub fn without_logging(mut self) -> StoreDef {
        self.logged = false;
        self
    }

    /// The changelog topic of this store in application `app_id`.
    pub fn changelog_topic(&self, app_id: &str) -> String {
        format!("{app_id}-{}-changelog", self.name)
    }

    /// Topic configs of the changelog (compacted; windows also expire by time).
    pub fn changelog_configs(&self) -> Vec<(String, String)> {
        match &self.kind {
            StoreKind::KeyValue => vec![("cleanup.policy".into(), "compact".into())],
            StoreKind::Window { retention_ms, .. } | StoreKind::Session { retention_ms } => vec![
                ("cleanup.policy".into(), "compact,delete".into()),
                // Kafka Streams adds a day (windowstore.changelog.additional.retention.ms).
                ("retention.ms".into(), (retention_ms.saturating_add(86_400_000)).to_string()),
            ],
        }
    }

    /// Stream-time retention of window and session stores.
    pub(crate) fn retention(&self) -> Option<i64> {
        match &self.kind {
            StoreKind::KeyValue => None,
            StoreKind::Window { retention_ms, .. } | StoreKind::Session { retention_ms } => Some(*retention_ms),
        }
    }
}

/// A backend shared between its task (writes) and interactive queries (reads).
pub(crate) type SharedBackend = Arc<Mutex<Box<dyn KvBackend>>>;

/// A record for the producer: an output, a repartition record or a changelog write.
#[derive(Debug, Clone)]
pub(crate) struct OutRecord {
    pub topic: Arc<str>,
    /// `None`: the default partitioner (murmur2 of the key, as Kafka's).
    pub partition: Option<i32>,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub ts: i64,
    pub headers: Headers,
    /// Index of the task store this record is the changelog of.
    pub changelog_of: Option<usize>,
}

/// One store of one task.
pub(crate) struct StoreState {
    pub def: Arc<StoreDef>,
    pub backend: SharedBackend,
    /// Uncommitted writes (`None`: deleted).
    pub overlay: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    pub overlay_bytes: usize,
    /// Changelog topic and partition.
    pub changelog: Option<(Arc<str>, i32)>,
    /// Stream time up to which expired windows were last dropped.
    pub expired_upto: i64,
    /// With record caching: keys written since the last flush and the time of their last
    /// write; their changelog records are sent at the flush, one per key.
    pub deferred_log: Option<BTreeMap<Vec<u8>, i64>>,
}

fn backend_err(def: &StoreDef, e: impl std::fmt::Display) -> Error {
    Error::Store(format!("store `{}`: {e}", def.name))
}

impl StoreState {
    pub(crate) fn new(def: Arc<StoreDef>, backend: SharedBackend, changelog: Option<(Arc<str>, i32)>) -> StoreState {
        StoreState { def, backend, overlay: BTreeMap::new(), overlay_bytes: 0, changelog, expired_upto: i64::MIN, deferred_log: None }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Box<dyn KvBackend>> {
        self.backend.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The current value (uncommitted writes first).
    pub(crate) fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        if let Some(v) = self.overlay.get(key) {
            return Ok(v.clone());
        }
        self.lock().get(key)
    }

    /// Writes (or deletes) `key`, and logs the write to the changelog.
    pub(crate) fn put(&mut self, key: Vec<u8>, value: Option<Vec<u8>>, ts: i64, idx: usize, out: &mut Vec<OutRecord>) {
        if let (Some(deferred), Some(_)) = (self.deferred_log.as_mut(), &self.changelog) {
            deferred.insert(key.clone(), ts);
        } else if let Some((topic, partition)) = &self.changelog {
            out.push(OutRecord {
                topic: topic.clone(),
                partition: Some(*partition),
                key: Some(key.clone()),
                value: value.clone(),
                ts,
                headers: Vec::new(),
                changelog_of: Some(idx),
            });
        }
        self.overlay_bytes += key.len() + value.as_ref().map_or(0, |v| v.len()) + 48;
        self.overlay.insert(key, value);
    }

    /// Entries with `from <= key < to`, merging uncommitted writes over the backend.
    pub(crate) fn range(&self, from: Option<&[u8]>, to: Option<&[u8]>) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let base = self.lock().range(from, to, usize::MAX)?;
        if self.overlay.is_empty() {
            return Ok(base);
        }
        let lo = from.map_or(Bound::Unbounded, |f| Bound::Included(f.to_vec()));
        let hi = to.map_or(Bound::Unbounded, |t| Bound::Excluded(t.to_vec()));
        let mut merged: BTreeMap<Vec<u8>, Vec<u8>> = base.into_iter().collect();
        for (k, v) in self.overlay.range((lo, hi)) {
            match v {
                Some(v) => merged.insert(k.clone(), v.clone()),
                None => merged.remove(k),
            };
        }
        Ok(merged.into_iter().collect())
    }

    /// Writes the overlay to the backend with `checkpoint` in one atomic batch.
    pub(crate) fn commit(&mut self, checkpoint: Option<i64>) -> Result<()> {
        if self.overlay.is_empty() && checkpoint.is_none() {
            return Ok(());
        }
        let batch: Vec<BatchEntry> = std::mem::take(&mut self.overlay).into_iter().collect();
        self.overlay_bytes = 0;
        let def = self.def.clone();
        self.lock().write(&batch, checkpoint).map_err(|e| backend_err(&def, e))
    }

    /// Drops uncommitted writes (the transaction that made them aborted).
    pub(crate) fn abort(&mut self) {
        self.overlay.clear();
        self.overlay_bytes = 0;
        if let Some(d) = self.deferred_log.as_mut() {
            d.clear();
        }
    }

    /// Sends the deferred changelog records: the current value of each key written since
    /// the last flush.
    pub(crate) fn flush_log(&mut self, idx: usize, out: &mut Vec<OutRecord>) {
        let (Some(deferred), Some((topic, partition))) = (self.deferred_log.as_mut(), &self.changelog) else { return };
        for (key, ts) in std::mem::take(deferred) {
            let value = self.overlay.get(&key).cloned().flatten();
            out.push(OutRecord { topic: topic.clone(), partition: Some(*partition), key: Some(key), value, ts, headers: Vec::new(), changelog_of: Some(idx) });
        }
    }

    /// Applies a changelog record during restoration (straight to the backend).
    pub(crate) fn restore_batch(&mut self, batch: &[BatchEntry], checkpoint: i64) -> Result<()> {
        let def = self.def.clone();
        self.lock().write(batch, Some(checkpoint)).map_err(|e| backend_err(&def, e))
    }

    pub(crate) fn checkpoint(&self) -> Result<Option<i64>> {
        self.lock().checkpoint()
    }
}

/// Changelog (or global topic) records as a store batch: key -> value, a null value
/// deletes, records without a key are skipped.
pub(crate) fn changelog_batch<'a>(records: impl IntoIterator<Item = &'a samsa_client::ConsumerRecord>) -> Vec<BatchEntry> {
    records.into_iter().filter_map(|r| r.key.as_ref().map(|k| (k.to_vec(), r.value.as_ref().map(|v| v.to_vec())))).collect()
}

// ---- key layouts ---------------------------------------------------------------------

/// Order-preserving bytes of a timestamp (sign bit flipped, big-endian).
pub(crate) fn ts_bytes(ts: i64) -> [u8; 8] {
    ((ts as u64) ^ (1 << 63)).to_be_bytes()
}

/// The timestamp at the start of `b`; `i64::MIN` when `b` is too short (a malformed
/// entry then reads as ancient, and expires).
pub(crate) fn ts_from(b: &[u8]) -> i64 {
    match b.get(..8) {
        Some(t) => (u64::from_be_bytes(t.try_into().expect("8 bytes")) ^ (1 << 63)) as i64,
        None => i64::MIN,
    }
}

/// `len(key) ++ key`: all entries of one key are contiguous whatever its length.
pub(crate) fn key_prefix(key: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(4 + key.len() + 20);
    v.extend_from_slice(&(key.len() as u32).to_be_bytes());
    v.extend_from_slice(key);
    v
}

/// Splits a composite key into the user key and the rest (a malformed key, e.g. from a
/// foreign changelog, gives an empty rest instead of a panic).
pub(crate) fn split_key(composite: &[u8]) -> (&[u8], &[u8]) {
    let n = composite.get(..4).map(|b| u32::from_be_bytes(b.try_into().expect("4 bytes")) as usize);
    match n {
        Some(n) if composite.len() >= 4 + n => (&composite[4..4 + n], &composite[4 + n..]),
        _ => (composite, &[]),
    }
}

fn window_key(key: &[u8], start: i64, seq: Option<u32>) -> Vec<u8> {
    let mut v = key_prefix(key);
    v.extend_from_slice(&ts_bytes(start));
    if let Some(s) = seq {
        v.extend_from_slice(&s.to_be_bytes());
    }
    v
}

fn session_key(key: &[u8], start: i64, end: i64) -> Vec<u8> {
    let mut v = key_prefix(key);
    v.extend_from_slice(&ts_bytes(end));
    v.extend_from_slice(&ts_bytes(start));
    v
}

/// The smallest byte string greater than every string starting with `prefix`.
pub(crate) fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut v = prefix.to_vec();
    while let Some(last) = v.pop() {
        if last < 0xff {
            v.push(last + 1);
            return Some(v);
        }
    }
    None
}

// ---- typed handles and views ---------------------------------------------------------

/// A processor's handle on a key-value store (get it in `init`, use it with
/// [`crate::ProcessorContext::kv`]).
pub struct KvHandle<K, V> {
    pub(crate) idx: usize,
    pub(crate) ks: SerdeRef<K>,
    pub(crate) vs: SerdeRef<V>,
}

impl<K, V> Clone for KvHandle<K, V> {
    fn clone(&self) -> Self {
        KvHandle { idx: self.idx, ks: self.ks.clone(), vs: self.vs.clone() }
    }
}

/// A processor's handle on a window store.
pub struct WindowHandle<K, V> {
    pub(crate) idx: usize,
    pub(crate) ks: SerdeRef<K>,
    pub(crate) vs: SerdeRef<V>,
}

impl<K, V> Clone for WindowHandle<K, V> {
    fn clone(&self) -> Self {
        WindowHandle { idx: self.idx, ks: self.ks.clone(), vs: self.vs.clone() }
    }
}

/// A processor's handle on a session store.
pub struct SessionHandle<K, V> {
    pub(crate) idx: usize,
    pub(crate) ks: SerdeRef<K>,
    pub(crate) vs: SerdeRef<V>,
}

impl<K, V> Clone for SessionHandle<K, V> {
    fn clone(&self) -> Self {
        SessionHandle { idx: self.idx, ks: self.ks.clone(), vs: self.vs.clone() }
    }
}

fn de<T: 'static>(s: &SerdeRef<T>, store: &StoreDef, b: Option<&[u8]>) -> Result<T> {
    s.deserialize(b).map_err(|e| Error::Store(format!("store `{}` holds bytes its serde cannot read: {e}", store.name)))
}

fn ser_key<T: 'static>(s: &SerdeRef<T>, store: &StoreDef, v: &T) -> Result<Vec<u8>> {
    s.serialize(v).ok_or_else(|| Error::Store(format!("store `{}`: a key serialized to null; stores need non-null keys", store.name)))
}

/// A key-value store, read and written by a processor.
pub struct KvStore<'a, K, V> {
    pub(crate) st: &'a mut StoreState,
    pub(crate) out: &'a mut Vec<OutRecord>,
    pub(crate) ts: i64,
    pub(crate) h: &'a KvHandle<K, V>,
}

impl<K: 'static, V: 'static> KvStore<'_, K, V> {
    fn value(&self, b: &[u8]) -> Result<(V, Option<i64>)> {
        split_value(&self.st.def, b).and_then(|(ts, v)| Ok((de(&self.h.vs, &self.st.def, Some(v))?, ts)))
    }

    /// The value of `key`.
    pub fn get(&self, key: &K) -> Result<Option<V>> {
        Ok(self.get_with_timestamp(key)?.map(|(v, _)| v))
    }

    /// The value of `key` and, in a timestamped store, the time of its latest update.
    pub fn get_with_timestamp(&self, key: &K) -> Result<Option<(V, Option<i64>)>> {
        let k = ser_key(&self.h.ks, &self.st.def, key)?;
        match self.st.get(&k)? {
            Some(b) => self.value(&b).map(Some),
            None => Ok(None),
        }
    }

    /// Stores `value` under `key` (stamped with the current record's time).
    pub fn put(&mut self, key: &K, value: &V) -> Result<()> {
        let ts = self.ts;
        self.put_with_timestamp(key, value, ts)
    }

    /// Stores `value` under `key`, stamped with `timestamp` in a timestamped store.
    pub fn put_with_timestamp(&mut self, key: &K, value: &V, timestamp: i64) -> Result<()> {
        let k = ser_key(&self.h.ks, &self.st.def, key)?;
        let v = self.h.vs.serialize(value).map(|v| {
            if self.st.def.timestamped {
                let mut b = timestamp.to_be_bytes().to_vec();
                b.extend_from_slice(&v);
                b
            } else {
                v
            }
        });
        self.st.put(k, v, self.ts, self.h.idx, self.out);
        Ok(())
    }

    /// Removes `key`; returns the value it had.
    pub fn delete(&mut self, key: &K) -> Result<Option<V>> {
        let old = self.get(key)?;
        let k = ser_key(&self.h.ks, &self.st.def, key)?;
        self.st.put(k, None, self.ts, self.h.idx, self.out);
        Ok(old)
    }

    /// Every entry with `from <= key <= to` in serialized-key order.
    pub fn range(&self, from: &K, to: &K) -> Result<Vec<(K, V)>> {
        let f = ser_key(&self.h.ks, &self.st.def, from)?;
        let mut t = ser_key(&self.h.ks, &self.st.def, to)?;
        t.push(0);
        self.decode(self.st.range(Some(&f), Some(&t))?)
    }

    /// Every entry.
    pub fn all(&self) -> Result<Vec<(K, V)>> {
        self.decode(self.st.range(None, None)?)
    }

    fn decode(&self, raw: Vec<(Vec<u8>, Vec<u8>)>) -> Result<Vec<(K, V)>> {
        raw.into_iter().map(|(k, v)| Ok((de(&self.h.ks, &self.st.def, Some(&k))?, self.value(&v)?.0))).collect()
    }
}

/// Splits a stored value into its timestamp (timestamped stores) and the value bytes.
pub(crate) fn split_value<'a>(def: &StoreDef, b: &'a [u8]) -> Result<(Option<i64>, &'a [u8])> {
    if !def.timestamped {
        return Ok((None, b));
    }
    let ts = b.get(..8).ok_or_else(|| Error::Store(format!("store `{}` holds a {}-byte value, too short for its timestamp", def.name, b.len())))?;
    Ok((Some(i64::from_be_bytes(ts.try_into().expect("8 bytes"))), &b[8..]))
}

/// A window store, read and written by a processor.
pub struct WindowStore<'a, K, V> {
    pub(crate) st: &'a mut StoreState,
    pub(crate) out: &'a mut Vec<OutRecord>,
    pub(crate) ts: i64,
    pub(crate) h: &'a WindowHandle<K, V>,
    pub(crate) seq: &'a mut u32,
}

impl<K: 'static, V: 'static> WindowStore<'_, K, V> {
    fn dups(&self) -> bool {
        matches!(self.st.def.kind, StoreKind::Window { retain_duplicates: true, .. })
    }

    /// Stores `value` for `key` in the window starting at `start` (`None` deletes; with
    /// duplicates retained, every put is kept).
    pub fn put(&mut self, key: &K, value: Option<&V>, start: i64) -> Result<()> {
        let k = ser_key(&self.h.ks, &self.st.def, key)?;
        let seq = if self.dups() {
            *self.seq = self.seq.wrapping_add(1);
            Some(*self.seq)
        } else {
            None
        };
        let v = value.and_then(|v| self.h.vs.serialize(v));
        self.st.put(window_key(&k, start, seq), v, self.ts, self.h.idx, self.out);
        Ok(())
    }

    /// The value of `key` in the window starting at `start`.
    pub fn fetch(&self, key: &K, start: i64) -> Result<Option<V>> {
        let k = ser_key(&self.h.ks, &self.st.def, key)?;
        match self.st.get(&window_key(&k, start, None))? {
            Some(b) => de(&self.h.vs, &self.st.def, Some(&b)).map(Some),
            None => Ok(None),
        }
    }

    /// `(window start, value)` of `key` for windows starting in `[from, to]`, by start.
    pub fn fetch_range(&self, key: &K, from: i64, to: i64) -> Result<Vec<(i64, V)>> {
        let k = ser_key(&self.h.ks, &self.st.def, key)?;
        let lo = window_key(&k, from, None);
        let hi = window_key(&k, to.saturating_add(1), None);
        self.st
            .range(Some(&lo), Some(&hi))?
            .into_iter()
            .map(|(ck, v)| {
                let (_, rest) = split_key(&ck);
                Ok((ts_from(rest), de(&self.h.vs, &self.st.def, Some(&v))?))
            })
            .collect()
    }

    /// `(key, window start, value)` of every window starting in `[from, to]`.
    pub fn fetch_all(&self, from: i64, to: i64) -> Result<Vec<(K, i64, V)>> {
        let mut out = Vec::new();
        for (ck, v) in self.st.range(None, None)? {
            let (k, rest) = split_key(&ck);
            let start = ts_from(rest);
            if start >= from && start <= to {
                out.push((de(&self.h.ks, &self.st.def, Some(k))?, start, de(&self.h.vs, &self.st.def, Some(&v))?));
            }
        }
        Ok(out)
    }
}

/// A session: a key's activity between `start` and `end` (inclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SessionWindow {
    /// First event time.
    pub start: i64,
    /// Last event time.
    pub end: i64,
}

/// A session store, read and written by a processor.
pub struct SessionStore<'a, K, V> {
    pub(crate) st: &'a mut StoreState,
    pub(crate) out: &'a mut Vec<OutRecord>,
    pub(crate) ts: i64,
    pub(crate) h: &'a SessionHandle<K, V>,
}

impl<K: 'static, V: 'static> SessionStore<'_, K, V> {
    /// Stores (or with `None` removes) the session `window` of `key`.
    pub fn put(&mut self, key: &K, window: SessionWindow, value: Option<&V>) -> Result<()> {
        let k = ser_key(&self.h.ks, &self.st.def, key)?;
        let v = value.and_then(|v| self.h.vs.serialize(v));
        self.st.put(session_key(&k, window.start, window.end), v, self.ts, self.h.idx, self.out);
        Ok(())
    }

    /// Sessions of `key` that end at or after `earliest_end` and start at or before
    /// `latest_start` (the ones a new event may merge with).
    pub fn find_sessions(&self, key: &K, earliest_end: i64, latest_start: i64) -> Result<Vec<(SessionWindow, V)>> {
        let k = ser_key(&self.h.ks, &self.st.def, key)?;
        let mut lo = key_prefix(&k);
        lo.extend_from_slice(&ts_bytes(earliest_end));
        let hi = prefix_end(&key_prefix(&k));
        let mut out = Vec::new();
        for (ck, v) in self.st.range(Some(&lo), hi.as_deref())? {
            let (_, rest) = split_key(&ck);
            let (end, start) = (ts_from(rest), ts_from(rest.get(8..).unwrap_or_default()));
            if start <= latest_start {
                out.push((SessionWindow { start, end }, de(&self.h.vs, &self.st.def, Some(&v))?));
            }
        }
        Ok(out)
    }
}

/// Drops windows and sessions older than the store's retention at `stream_time`.
pub(crate) fn expire(st: &mut StoreState, idx: usize, stream_time: i64, out: &mut Vec<OutRecord>) -> Result<()> {
    let Some(retention) = st.def.retention() else { return Ok(()) };
    // Scan at most once per half retention (Kafka drops whole segments of that size).
    let step = (retention / 2).max(1000);
    if stream_time < st.expired_upto.saturating_add(step) {
        return Ok(());
    }
    st.expired_upto = stream_time;
    let cutoff = stream_time - retention;
    let session = matches!(st.def.kind, StoreKind::Session { .. });
    let mut dead = Vec::new();
    for (ck, _) in st.range(None, None)? {
        let (_, rest) = split_key(&ck);
        // Windows: start + size < cutoff; sessions: end < cutoff.
        let t = ts_from(rest);
        let end = if session { t } else { t.saturating_add(match st.def.kind { StoreKind::Window { size_ms, .. } => size_ms, _ => 0 }) };
        if end < cutoff {
            dead.push(ck);
        }
    }
    for ck in dead {
        st.put(ck, None, stream_time, idx, out);
    }
    Ok(())
}

/// Finds the backends a read-only view reads, at each call (tasks move between instances
/// and threads, so a view resolves them when it is used, not when it is made).
pub(crate) type BackendSource = Arc<dyn Fn() -> Vec<(i32, SharedBackend)> + Send + Sync>;

/// Read-only view for interactive queries: committed data only, of the store's partitions
/// this instance runs at the time of each call.
pub struct ReadOnlyKv<K, V> {
    pub(crate) backends: BackendSource,
    /// Values carry an 8-byte timestamp first.
    pub(crate) timestamped: bool,
    pub(crate) ks: SerdeRef<K>,
    pub(crate) vs: SerdeRef<V>,
    pub(crate) name: String,
    pub(crate) _p: PhantomData<fn() -> (K, V)>,
}

impl<K: 'static, V: 'static> ReadOnlyKv<K, V> {
    fn decode(&self, b: &[u8]) -> Result<V> {
        let b = if self.timestamped { b.get(8..).ok_or_else(|| Error::Store(format!("store `{}`: a value without its timestamp", self.name)))? } else { b };
        self.vs.deserialize(Some(b)).map_err(|e| Error::Store(format!("store `{}`: {e}", self.name)))
    }

    /// The committed value of `key` (searching every local partition of the store).
    pub fn get(&self, key: &K) -> Result<Option<V>> {
        let k = self.ks.serialize(key).ok_or_else(|| Error::Store("null key".into()))?;
        for (_, b) in &(self.backends)() {
            if let Some(v) = b.lock().unwrap_or_else(|p| p.into_inner()).get(&k)? {
                return self.decode(&v).map(Some);
            }
        }
        Ok(None)
    }

    /// Committed entries with `from <= key <= to` of every local partition.
    pub fn range(&self, from: &K, to: &K) -> Result<Vec<(K, V)>> {
        let f = self.ks.serialize(from).ok_or_else(|| Error::Store("null key".into()))?;
        let mut t = self.ks.serialize(to).ok_or_else(|| Error::Store("null key".into()))?;
        t.push(0);
        self.collect(Some(&f), Some(&t))
    }

    /// Every committed entry of every local partition.
    pub fn all(&self) -> Result<Vec<(K, V)>> {
        self.collect(None, None)
    }

    fn collect(&self, from: Option<&[u8]>, to: Option<&[u8]>) -> Result<Vec<(K, V)>> {
        let mut out = Vec::new();
        for (_, b) in &(self.backends)() {
            for (k, v) in b.lock().unwrap_or_else(|p| p.into_inner()).range(from, to, usize::MAX)? {
                let key = self.ks.deserialize(Some(&k)).map_err(|e| Error::Store(format!("store `{}`: {e}", self.name)))?;
                out.push((key, self.decode(&v)?));
            }
        }
        Ok(out)
    }
}

/// Read-only view of a window store for interactive queries: committed data only.
pub struct ReadOnlyWindow<K, V> {
    pub(crate) backends: BackendSource,
    pub(crate) ks: SerdeRef<K>,
    pub(crate) vs: SerdeRef<V>,
    pub(crate) name: String,
}

impl<K: 'static, V: 'static> ReadOnlyWindow<K, V> {
    /// `(window start, value)` of `key` for windows starting in `[from, to]`.
    pub fn fetch(&self, key: &K, from: i64, to: i64) -> Result<Vec<(i64, V)>> {
        let k = self.ks.serialize(key).ok_or_else(|| Error::Store("null key".into()))?;
        let lo = window_key(&k, from, None);
        let hi = window_key(&k, to.saturating_add(1), None);
        let mut out = Vec::new();
        for (_, b) in &(self.backends)() {
            for (ck, v) in b.lock().unwrap_or_else(|p| p.into_inner()).range(Some(&lo), Some(&hi), usize::MAX)? {
                let (_, rest) = split_key(&ck);
                let v = self.vs.deserialize(Some(&v)).map_err(|e| Error::Store(format!("store `{}`: {e}", self.name)))?;
                out.push((ts_from(rest), v));
            }
        }
        out.sort_by_key(|(t, _)| *t);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_sort_as_bytes() {
        let ts = [i64::MIN, -5, -1, 0, 1, 1000, i64::MAX];
        for w in ts.windows(2) {
            assert!(ts_bytes(w[0]) < ts_bytes(w[1]));
            assert_eq!(ts_from(&ts_bytes(w[0])), w[0]);
        }
    }

    #[test]
    fn composite_keys_keep_each_key_contiguous() {
        // "a" followed by bytes that look like a timestamp must not fall inside "a"'s range.
        let a = window_key(b"a", 10, None);
        let tricky = window_key(&[b'a', 0x80, 0, 0, 0, 0, 0, 0, 11], 0, None);
        let lo = window_key(b"a", 0, None);
        let hi = window_key(b"a", 100, None);
        assert!(a >= lo && a < hi);
        assert!(!(tricky >= lo && tricky < hi));
        assert_eq!(prefix_end(&[1, 0xff]), Some(vec![2]));
        assert_eq!(prefix_end(&[0xff]), None);
    }

    #[test]
    fn malformed_composite_keys_do_not_panic() {
        assert_eq!(split_key(&[0, 0]), (&[0u8, 0][..], &[][..]));
        assert_eq!(split_key(&[0, 0, 0, 9, 1]), (&[0u8, 0, 0, 9, 1][..], &[][..]));
        assert_eq!(ts_from(&[1, 2]), i64::MIN);
    }
}
