//! Windowed aggregations (tumbling, hopping, sliding, session) and suppression.
//!
//! ```text
//!  KGroupedStream ─ windowed_by(TimeWindows) ──────────> TimeWindowedKStream ───┐ count / reduce /
//!                 ─ windowed_by_sliding(SlidingWindows) > TimeWindowedKStream ───┤ aggregate
//!                 ─ windowed_by_session(SessionWindows) > SessionWindowedKStream ┘    │
//!        KTable<Windowed<K>, A>  <─────────────────────────────────────────────────────┘
//!          └─ suppress(Suppressed::until_window_closes()) ─> one final row per window
//! ```
//!
//! The semantics are Kafka Streams':
//!
//! - **Windows.** Time windows are `[start, end)` with starts at multiples of the advance
//!   from 0: tumbling when the advance equals the size, hopping otherwise (a record then
//!   falls in size / advance windows). Sliding windows (KIP-450) are `[start, end]` with
//!   `end - start` = the time difference: a record at `t` has its left window `[t - d, t]`
//!   and, once later records fall in it, its right window `[t + 1, t + 1 + d]`; records
//!   before `d` share `[0, d]`. A session is `[first, last]` of a key's records that are at
//!   most the inactivity gap apart; a record bridging two sessions merges them, and the
//!   absorbed sessions are retracted (a change with `new: None`).
//! - **Event time and lateness.** Stream time is the task's largest record timestamp so
//!   far (including the record being processed). A time window closes when stream time
//!   reaches `end + grace`; sliding and session windows, whose end is inclusive, close
//!   when stream time passes it (Kafka keeps them open while `end >= stream time - grace`).
//!   An update of a closed window is dropped, logged at debug level and counted in
//!   [`crate::TaskMetrics::dropped_late`] (once per window missed, like Kafka's
//!   dropped-records sensor); a record within grace updates its old window.
//! - **Stores.** Time windows use a window store with retention size + grace, sliding
//!   windows one with retention 2 × difference + grace (the algorithm looks back that
//!   far) plus a companion window store `<store>-timestamps` holding each window's latest
//!   record time (Kafka keeps it in a timestamped store; a separate store keeps the
//!   aggregate store readable as plain values), and sessions a session store with
//!   retention gap + grace. That is the least that holds every open window, so memory and
//!   disk stay small (Kafka's default keeps windows at least a day, for interactive queries). Read
//!   the stores by their [`Materialized`](crate::Materialized) name; the windowed table
//!   itself is not a key-value store (`store_name()` is `None`).
//! - **Output.** Every update is a [`Change`](crate::Change) keyed by [`Windowed`], stamped
//!   with the triggering record's time (sliding windows: the window's latest record time,
//!   as Kafka; Kafka also uses that for time windows). `old` is the window's previous
//!   value (`None` for a new window), sent always rather than only when a downstream
//!   operator asks for it. Records with a null key or a negative timestamp are skipped
//!   with a warning, as Kafka skips them.
//! - **Suppression.** [`Suppressed::until_window_closes`] buffers the latest change of each
//!   window in a logged key-value store (so it is restored after a crash and committed
//!   with the output: exactly-once) and emits each window's final value once, when stream
//!   time reaches its close time; session windows close `gap` later for suppression, since
//!   a record up to `gap` after a session's end still extends it (Kafka's
//!   `GraphGraceSearchUtil`). Retractions are never emitted (Kafka drops tombstones of
//!   final results), and emitted rows carry no headers.

use std::sync::Arc;

use crate::dsl::Inner;
use crate::error::Error;
use crate::processor::NodeCtx;
use crate::serde::{DefaultSerde, Serde, SerdeRef};

mod session;
mod sliding;
mod spec;
mod suppress;
mod time;

pub use session::SessionWindowedKStream;
pub use spec::{SessionWindows, SlidingWindows, TimeWindows, HOPPING_WINDOWS_PER_RECORD_MAX};
pub use suppress::Suppressed;
pub use time::TimeWindowedKStream;

/// A window's bounds in ms of event time (which end is inclusive depends on the kind).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Window {
    /// First instant in the window.
    pub start: i64,
    /// End: exclusive for time windows, inclusive for sliding and session windows.
    pub end: i64,
}

impl Window {
    /// The window from `start` to `end`.
    pub fn new(start: i64, end: i64) -> Window {
        Window { start, end }
    }
}

/// A key and one of its windows: the key of a windowed table.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Windowed<K> {
    /// The record key.
    pub key: K,
    /// The window the aggregate covers.
    pub window: Window,
}

impl<K> Windowed<K> {
    /// `key` in the window from `start` to `end`.
    pub fn new(key: K, start: i64, end: i64) -> Windowed<K> {
        Windowed { key, window: Window { start, end } }
    }
}

/// Bytes of `Windowed<K>`: the key's bytes, then `start` and `end` as 8-byte big-endian
/// two's-complement integers (Kafka's LongSerializer layout), so the window is always the
/// last 16 bytes. A key that serializes to null makes a null windowed key.
struct WindowedSerde<K>(SerdeRef<K>);

/// Length of the window suffix of a serialized [`Windowed`] key.
pub(crate) const WINDOW_SUFFIX_BYTES: usize = 16;

impl<K: 'static> Serde<Windowed<K>> for WindowedSerde<K> {
    fn serialize(&self, value: &Windowed<K>) -> Option<Vec<u8>> {
        let mut b = self.0.serialize(&value.key)?;
        b.reserve(WINDOW_SUFFIX_BYTES);
        b.extend_from_slice(&value.window.start.to_be_bytes());
        b.extend_from_slice(&value.window.end.to_be_bytes());
        Some(b)
    }

    fn deserialize(&self, bytes: Option<&[u8]>) -> Result<Windowed<K>, String> {
        let b = bytes.ok_or("got a null where a windowed key was expected")?;
        if b.len() < WINDOW_SUFFIX_BYTES {
            return Err(format!("{} bytes cannot be a windowed key (it ends with a {WINDOW_SUFFIX_BYTES}-byte window)", b.len()));
        }
        let (key, window) = b.split_at(b.len() - WINDOW_SUFFIX_BYTES);
        let start = i64::from_be_bytes(window[..8].try_into().expect("8 bytes"));
        let end = i64::from_be_bytes(window[8..].try_into().expect("8 bytes"));
        Ok(Windowed { key: self.0.deserialize(Some(key))?, window: Window { start, end } })
    }
}

impl<K: DefaultSerde> DefaultSerde for Windowed<K> {
    fn serde() -> SerdeRef<Self> {
        Arc::new(WindowedSerde(K::serde()))
    }
}

/// An aggregation step: the new aggregate from the key, a value and the old aggregate
/// (`None`: the window is new, start from the initializer; for `reduce`, the value).
pub(crate) type Step<K, V, A> = Arc<dyn Fn(&K, V, Option<A>) -> A + Send + Sync>;

/// Records a build-time error (the first one wins; `build()` returns it).
pub(crate) fn topology_error(b: &mut Inner, what: String) {
    if b.error.is_none() {
        b.error = Some(Error::Topology(what));
    }
}

/// Latest record time windowed (about 73 million years): with spans capped in `spec.rs`,
/// window arithmetic on a record time cannot overflow.
const TIMESTAMP_MS_MAX: i64 = i64::MAX / 4;

/// Whether a record can be windowed: like Kafka, skip null keys and negative timestamps
/// (and absurdly large ones).
pub(crate) fn windowable<K: 'static>(ctx: &NodeCtx<'_>, ks: &SerdeRef<K>, key: &K, ts: i64) -> bool {
    let reason = if ts < 0 {
        "negative timestamp"
    } else if ts > TIMESTAMP_MS_MAX {
        "timestamp too large"
    } else if ks.serialize(key).is_none() {
        "null key"
    } else {
        return true;
    };
    let meta = ctx.task.meta.clone().unwrap_or_default();
    tracing::warn!(node = ctx.name, task = %ctx.task.task, topic = %meta.topic, partition = meta.partition, offset = meta.offset, ts, "skipping a record of a windowed aggregation: {reason}");
    false
}

/// Counts and logs an update dropped because `window` closed.
pub(crate) fn drop_late(ctx: &mut NodeCtx<'_>, ts: i64, window: Window, close_after_end_ms: i64) {
    ctx.task.metrics.dropped_late += 1;
    let meta = ctx.task.meta.clone().unwrap_or_default();
    tracing::debug!(
        node = ctx.name,
        task = %ctx.task.task,
        topic = %meta.topic,
        partition = meta.partition,
        offset = meta.offset,
        ts,
        window_start = window.start,
        window_end = window.end,
        closed_at = window.end.saturating_add(close_after_end_ms),
        stream_time = ctx.task.stream_time,
        "skipping a record for a closed window"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windowed_keys_round_trip_with_the_window_last() {
        let s = Windowed::<String>::serde();
        let w = Windowed::new("ab".to_string(), -5, 1 << 40);
        let b = s.serialize(&w).unwrap();
        assert_eq!(&b[..2], b"ab");
        assert_eq!(&b[2..10], &(-5i64).to_be_bytes());
        assert_eq!(&b[10..], &(1i64 << 40).to_be_bytes());
        assert_eq!(s.deserialize(Some(&b)).unwrap(), w);
        assert!(s.deserialize(Some(&b[..15])).unwrap_err().contains("15 bytes"));
        assert!(Windowed::<Option<String>>::serde().serialize(&Windowed::new(None, 0, 1)).is_none(), "null key, null windowed key");
    }
}
