//! Per-partition queues of batches waiting to be sent. Pure data: no I/O and no clock of
//! its own (callers pass `now`), so the readiness rules are unit-tested directly.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::oneshot;

use super::idempotence::Stamp;
use super::RecordMetadata;
use crate::error::Result;

/// A record waiting in a batch.
pub(crate) struct PendingRecord {
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<(String, Option<Bytes>)>,
    pub timestamp: i64,
    pub size: usize,
    pub done: oneshot::Sender<Result<RecordMetadata>>,
}

/// Records for one partition, sent as one v2 batch.
pub(crate) struct Batch {
    pub topic: Arc<str>,
    pub partition: i32,
    /// Creation order; keeps retried batches in front of later ones.
    pub seq: u64,
    pub records: Vec<PendingRecord>,
    pub bytes: usize,
    pub created: Instant,
    pub attempts: u32,
    pub retry_at: Option<Instant>,
    /// Producer id, epoch and base sequence (idempotence), fixed when first drained.
    pub stamp: Option<Stamp>,
}

/// What [`Accumulator::append`] did.
pub(crate) enum Append {
    /// Added to the open batch; `true` when that batch is now full.
    Added(bool),
    /// Started a new batch (any older batch of the partition is now complete).
    NewBatch,
    /// The caller asked not to start a new batch: the record comes back.
    NeedsNewBatch(PendingRecord),
}

impl Append {
    /// Whether the sender should wake up: a batch is full, or a new batch started and
    /// the sender must learn its linger deadline (it may be sleeping far longer).
    pub fn ready(&self) -> bool {
        matches!(self, Append::Added(true) | Append::NewBatch)
    }
}

/// All partitions' queues.
#[derive(Default)]
pub(crate) struct Accumulator {
    queues: BTreeMap<(Arc<str>, i32), VecDeque<Batch>>,
    next_seq: u64,
}

/// Why a head batch may go now.
pub(crate) struct Readiness {
    pub linger: Duration,
    pub batch_size: usize,
    pub flushing: bool,
}

impl Accumulator {
    /// Appends a record to the partition's open batch, or starts one.
    pub fn append(&mut self, topic: &Arc<str>, partition: i32, record: PendingRecord, batch_size: usize, abort_on_new: bool) -> Append {
        let queue = self.queues.entry((topic.clone(), partition)).or_default();
        if let Some(last) = queue.back_mut() {
            // A batch that was ever drained has a fixed sequence range: never grow it.
            if last.attempts == 0 && last.stamp.is_none() && (last.records.is_empty() || last.bytes + record.size <= batch_size) {
                last.bytes += record.size;
                last.records.push(record);
                return Append::Added(last.bytes >= batch_size);
            }
        }
        if abort_on_new {
            return Append::NeedsNewBatch(record);
        }
        self.next_seq += 1;
        let bytes = record.size;
        queue.push_back(Batch {
            topic: topic.clone(),
            partition,
            seq: self.next_seq,
            records: vec![record],
            bytes,
            created: Instant::now(),
            attempts: 0,
            retry_at: None,
            stamp: None,
        });
        Append::NewBatch
    }

    /// Puts a batch back for a retry, in creation order.
    pub fn requeue(&mut self, batch: Batch) {
        let queue = self.queues.entry((batch.topic.clone(), batch.partition)).or_default();
        let pos = queue.iter().position(|b| b.seq > batch.seq).unwrap_or(queue.len());
        queue.insert(pos, batch);
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.queues.values().all(|q| q.is_empty())
    }

    /// Takes ready head batches that `may_take` allows (idempotence and transaction rules),
    /// for which `leader_of` names a leader and `may_send` allows that leader, at most
    /// `max_bytes` per leader. Returns them grouped by leader, the next instant something
    /// becomes ready, and whether some partition had no leader.
    #[allow(clippy::type_complexity)]
    pub fn drain(
        &mut self,
        now: Instant,
        rules: &Readiness,
        max_bytes: usize,
        mut leader_of: impl FnMut(&str, i32) -> Option<i32>,
        mut may_send: impl FnMut(i32) -> bool,
        mut may_take: impl FnMut(&Batch) -> bool,
    ) -> (BTreeMap<i32, Vec<Batch>>, Option<Instant>, bool) {
        let mut out: BTreeMap<i32, Vec<Batch>> = BTreeMap::new();
        let mut sizes: BTreeMap<i32, usize> = BTreeMap::new();
        let mut next: Option<Instant> = None;
        let mut missing_leader = false;
        let mut earliest = |t: Instant| next = Some(next.map_or(t, |n: Instant| n.min(t)));
        for ((topic, partition), queue) in self.queues.iter_mut() {
            let Some(head) = queue.front() else { continue };
            if let Some(at) = head.retry_at.filter(|at| *at > now) {
                earliest(at);
                continue;
            }
            let full = queue.len() > 1 || head.bytes >= rules.batch_size;
            let due = head.created + rules.linger;
            if !(full || rules.flushing || head.retry_at.is_some() || due <= now) {
                earliest(due);
                continue;
            }
            if !may_take(head) {
                continue;
            }
            let Some(leader) = leader_of(topic, *partition) else {
                missing_leader = true;
                continue;
            };
            let used = sizes.entry(leader).or_default();
            if (*used > 0 && *used + head.bytes > max_bytes) || !may_send(leader) {
                continue;
            }
            *used += head.bytes;
            let batch = queue.pop_front().expect("head exists");
            out.entry(leader).or_default().push(batch);
        }
        self.queues.retain(|_, q| !q.is_empty());
        (out, next, missing_leader)
    }

    /// Removes every queued batch (a transaction was aborted or failed).
    pub fn take_all(&mut self) -> Vec<Batch> {
        std::mem::take(&mut self.queues).into_values().flatten().collect()
    }

    /// Removes every batch that has waited longer than `timeout` since creation.
    pub fn expire(&mut self, now: Instant, timeout: Duration) -> Vec<Batch> {
        let mut expired = Vec::new();
        for queue in self.queues.values_mut() {
            while queue.front().is_some_and(|b| now.duration_since(b.created) >= timeout) {
                expired.extend(queue.pop_front());
            }
        }
        self.queues.retain(|_, q| !q.is_empty());
        expired
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(size: usize) -> PendingRecord {
        let (done, _) = oneshot::channel();
        PendingRecord { key: None, value: None, headers: vec![], timestamp: 0, size, done }
    }

    fn rules(flushing: bool) -> Readiness {
        Readiness { linger: Duration::from_millis(50), batch_size: 100, flushing }
    }

    #[test]
    fn batches_fill_then_roll() {
        let t: Arc<str> = Arc::from("t");
        let mut a = Accumulator::default();
        let first = a.append(&t, 0, rec(40), 100, false);
        assert!(matches!(first, Append::NewBatch));
        assert!(first.ready(), "a new batch wakes the sender so it learns the linger deadline");
        assert!(matches!(a.append(&t, 0, rec(40), 100, false), Append::Added(false)));
        // 120 > 100: a new batch, and the first is now complete.
        assert!(matches!(a.append(&t, 0, rec(40), 100, false), Append::NewBatch));
        assert!(matches!(a.append(&t, 0, rec(10), 100, true), Append::Added(false)));
        assert!(matches!(a.append(&t, 0, rec(90), 100, true), Append::NeedsNewBatch(_)));
    }

    #[test]
    fn linger_holds_a_batch_until_due_or_flush() {
        let t: Arc<str> = Arc::from("t");
        let mut a = Accumulator::default();
        a.append(&t, 0, rec(10), 100, false);
        let now = Instant::now();
        let (out, next, _) = a.drain(now, &rules(false), 1000, |_, _| Some(1), |_| true, |_| true);
        assert!(out.is_empty());
        assert!(next.is_some());
        let (out, _, _) = a.drain(now, &rules(true), 1000, |_, _| Some(1), |_| true, |_| true);
        assert_eq!(out[&1].len(), 1);
        assert!(a.is_empty());
    }

    #[test]
    fn requeued_batches_keep_creation_order_and_wait_for_backoff() {
        let t: Arc<str> = Arc::from("t");
        let mut a = Accumulator::default();
        for _ in 0..3 {
            a.append(&t, 0, rec(100), 100, false);
        }
        let now = Instant::now();
        let (mut out, _, _) = a.drain(now, &rules(true), 1000, |_, _| Some(1), |_| true, |_| true);
        let first = out.get_mut(&1).unwrap().remove(0);
        assert_eq!(first.seq, 1);
        let mut first = first;
        first.attempts = 1;
        first.retry_at = Some(now + Duration::from_millis(100));
        a.requeue(first);
        // Backoff not over: the head waits and so does everything behind it.
        let (out, next, _) = a.drain(now, &rules(true), 1000, |_, _| Some(1), |_| true, |_| true);
        assert!(out.is_empty());
        assert_eq!(next, Some(now + Duration::from_millis(100)));
        let (out, _, _) = a.drain(now + Duration::from_millis(100), &rules(false), 1000, |_, _| Some(1), |_| true, |_| true);
        assert_eq!(out[&1][0].seq, 1);
        assert_eq!(out[&1].len(), 1, "one batch per partition per request");
        let (out, _, _) = a.drain(now + Duration::from_millis(100), &rules(false), 1000, |_, _| Some(1), |_| true, |_| true);
        assert_eq!(out[&1][0].seq, 2);
    }

    #[test]
    fn no_leader_is_reported_and_the_batch_stays() {
        let t: Arc<str> = Arc::from("t");
        let mut a = Accumulator::default();
        a.append(&t, 0, rec(100), 100, false);
        let (out, _, missing) = a.drain(Instant::now(), &rules(true), 1000, |_, _| None, |_| true, |_| true);
        assert!(out.is_empty() && missing && !a.is_empty());
        assert_eq!(a.expire(Instant::now() + Duration::from_secs(10), Duration::from_secs(1)).len(), 1);
    }
}
