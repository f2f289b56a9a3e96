//! Idempotent-producer bookkeeping (KIP-98): the producer id and epoch, and per partition
//! the next sequence number and the batches sent but not yet acknowledged. Pure data
//! under the producer's session lock; the sender asks it what may be drained and reports
//! every outcome back.
//!
//! A batch gets its base sequence when first drained and keeps it through retries. The
//! broker accepts a partition's batches only in sequence order, so after a retriable
//! failure the later batches in flight come back OUT_OF_ORDER_SEQUENCE_NUMBER; they are
//! requeued behind it (creation order is sequence order) and a sequenced batch is sent
//! only when it is the partition's oldest unacknowledged one. A sequenced batch that fails
//! for good leaves a gap the broker would refuse forever: then the epoch is bumped
//! (KIP-360) and every partition's sequences restart at 0.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use kafka_protocol::ResponseError;

use super::accumulator::Batch;
use crate::error::Error;

/// A producer id and epoch from InitProducerId.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProducerIds {
    pub id: i64,
    pub epoch: i16,
}

/// What a batch is encoded with: who produced it and its first record's sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stamp {
    pub ids: ProducerIds,
    pub base_sequence: i32,
}

/// Kafka's `DefaultRecordBatch.incrementSequence`: sequences wrap from i32::MAX to 0.
pub(crate) fn increment_sequence(sequence: i32, by: i32) -> i32 {
    if sequence > i32::MAX - by {
        by - (i32::MAX - sequence) - 1
    } else {
        sequence + by
    }
}

#[derive(Debug, Default)]
struct PartitionSequences {
    /// Base sequence for the partition's next new batch.
    next: i32,
    /// Base sequences handed out and not yet acknowledged or failed, oldest first.
    unacked: VecDeque<i32>,
}

/// Producer id, epoch and sequence numbers of an idempotent producer.
#[derive(Debug)]
pub(crate) struct Sequences {
    enabled: bool,
    ids: Option<ProducerIds>,
    parts: HashMap<(Arc<str>, i32), PartitionSequences>,
    /// Batches drained and not yet back from the broker.
    on_wire: usize,
    /// A sequence gap (or lost producer state): a new epoch is needed before more sends.
    need_bump: bool,
    /// An InitProducerId for this producer is being sent.
    pub fetching_ids: bool,
}

impl Sequences {
    /// Bookkeeping for a producer; `enabled` false makes every batch plain (no ids).
    pub fn new(enabled: bool) -> Sequences {
        Sequences { enabled, ids: None, parts: HashMap::new(), on_wire: 0, need_bump: false, fetching_ids: false }
    }

    /// The current producer id and epoch, once known.
    pub fn ids(&self) -> Option<ProducerIds> {
        self.ids
    }

    /// Starts a new producer id or epoch: every partition's sequences restart at 0, and
    /// batches stamped under the old one get new sequences when next drained.
    pub fn reset(&mut self, ids: ProducerIds) {
        self.ids = Some(ids);
        self.parts.clear();
        self.need_bump = false;
    }

    /// Whether the sender must fetch a producer id before anything can be sent.
    pub fn needs_ids(&self) -> bool {
        self.enabled && self.ids.is_none() && !self.fetching_ids
    }

    /// Marks that a new epoch is needed (a gap, or the broker lost this producer).
    pub fn request_bump(&mut self) {
        if self.enabled {
            self.need_bump = true;
        }
    }

    /// Whether a new epoch is needed.
    pub fn bump_needed(&self) -> bool {
        self.need_bump
    }

    /// Whether the epoch can be bumped now: one is needed and nothing is on the wire (a
    /// batch of the old epoch must not race batches of the new one).
    pub fn may_bump(&self) -> bool {
        self.need_bump && self.on_wire == 0 && !self.fetching_ids
    }

    /// Batches drained and not yet back.
    #[cfg(test)]
    pub fn on_wire(&self) -> usize {
        self.on_wire
    }

    fn current(&self, batch: &Batch) -> Option<Stamp> {
        batch.stamp.filter(|s| Some(s.ids) == self.ids)
    }

    /// Whether the partition's head batch may be drained now: the producer id is known,
    /// no new epoch is pending, and a batch being retried is the partition's oldest
    /// unacknowledged one (so batches reach the broker in sequence order).
    pub fn may_drain(&self, batch: &Batch) -> bool {
        if !self.enabled {
            return true;
        }
        if self.ids.is_none() || self.need_bump {
            return false;
        }
        match self.current(batch) {
            Some(stamp) => self.parts.get(&(batch.topic.clone(), batch.partition)).and_then(|p| p.unacked.front()) == Some(&stamp.base_sequence),
            None => true,
        }
    }

    /// A batch was drained: stamps it with the producer id and its base sequence the first
    /// time (or after an epoch change), and counts it as on the wire.
    pub fn on_drain(&mut self, batch: &mut Batch) {
        if !self.enabled {
            return;
        }
        self.on_wire += 1;
        let Some(ids) = self.ids else { return };
        if self.current(batch).is_some() {
            return;
        }
        let part = self.parts.entry((batch.topic.clone(), batch.partition)).or_default();
        let base_sequence = part.next;
        part.next = increment_sequence(base_sequence, batch.records.len() as i32);
        part.unacked.push_back(base_sequence);
        batch.stamp = Some(Stamp { ids, base_sequence });
    }

    fn back_from_wire(&mut self) {
        if self.enabled {
            debug_assert!(self.on_wire > 0, "a batch came back that was never counted on the wire");
            self.on_wire = self.on_wire.saturating_sub(1);
        }
    }

    fn forget(&mut self, batch: &Batch) -> bool {
        let Some(stamp) = self.current(batch) else { return false };
        let Some(part) = self.parts.get_mut(&(batch.topic.clone(), batch.partition)) else { return false };
        match part.unacked.iter().position(|s| *s == stamp.base_sequence) {
            Some(i) => {
                part.unacked.remove(i);
                true
            }
            None => false,
        }
    }

    /// The broker acknowledged the batch (or reported it a duplicate).
    pub fn on_ack(&mut self, batch: &Batch) {
        self.back_from_wire();
        self.forget(batch);
    }

    /// The batch goes back to the queue for another attempt, keeping its sequence.
    pub fn on_retry(&mut self, _batch: &Batch) {
        self.back_from_wire();
    }

    /// The batch failed for good (`on_wire`: it was sent in this round, rather than
    /// expiring or being swept from the queue). A sequence it held is now a gap.
    pub fn on_fail(&mut self, batch: &Batch, on_wire: bool) {
        if on_wire {
            self.back_from_wire();
        }
        if self.forget(batch) {
            self.need_bump = true;
        }
    }

    /// Whether a produce error that is not retriable in itself is, for an idempotent
    /// producer: OUT_OF_ORDER_SEQUENCE_NUMBER while an older batch of the partition is
    /// still unacknowledged (it is being retried; this one follows it), and, when not
    /// `transactional`, a sequence the broker cannot place at all (a gap, or
    /// UNKNOWN_PRODUCER_ID): then a new epoch is requested and the batch goes again with a
    /// new sequence. In a transaction those fail the transaction instead.
    pub fn retriable(&mut self, batch: &Batch, error: &Error, transactional: bool) -> bool {
        if !self.enabled {
            return false;
        }
        match error.kafka_error() {
            Some(ResponseError::OutOfOrderSequenceNumber) if self.earlier_unacked(batch) => true,
            Some(ResponseError::OutOfOrderSequenceNumber | ResponseError::UnknownProducerId) if !transactional => {
                self.request_bump();
                true
            }
            _ => false,
        }
    }

    /// Whether an older batch of the same partition is still unacknowledged: then an
    /// OUT_OF_ORDER_SEQUENCE_NUMBER for this one only says it arrived before that one
    /// (which is being retried) and a retry in order fixes it.
    pub fn earlier_unacked(&self, batch: &Batch) -> bool {
        let Some(stamp) = self.current(batch) else { return false };
        self.parts
            .get(&(batch.topic.clone(), batch.partition))
            .and_then(|p| p.unacked.front())
            .is_some_and(|first| *first != stamp.base_sequence)
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use tokio::sync::oneshot;

    use super::super::accumulator::{Accumulator, PendingRecord, Readiness};
    use super::*;

    const IDS: ProducerIds = ProducerIds { id: 7, epoch: 0 };

    fn rec() -> PendingRecord {
        let (done, _) = oneshot::channel();
        PendingRecord { key: None, value: None, headers: vec![], timestamp: 0, size: 10, done }
    }

    /// `n` full batches of `per` records each for partition 0 of `t`.
    fn accumulator(n: usize, per: usize) -> Accumulator {
        let t: Arc<str> = Arc::from("t");
        let mut a = Accumulator::default();
        for _ in 0..n * per {
            a.append(&t, 0, rec(), 10 * per, false);
        }
        a
    }

    fn rules() -> Readiness {
        Readiness { linger: Duration::ZERO, batch_size: 1 << 20, flushing: true }
    }

    /// One sender round: drains what the sequences allow and stamps it.
    fn drain(a: &mut Accumulator, s: &mut Sequences, now: Instant) -> Vec<Batch> {
        let (mut out, _, _) = a.drain(now, &rules(), 1 << 20, |_, _| Some(1), |_| true, |b| s.may_drain(b));
        let mut batches = out.remove(&1).unwrap_or_default();
        for b in &mut batches {
            s.on_drain(b);
        }
        batches
    }

    fn base(b: &Batch) -> i32 {
        b.stamp.unwrap().base_sequence
    }

    fn retry(a: &mut Accumulator, s: &mut Sequences, mut b: Batch) {
        s.on_retry(&b);
        b.attempts += 1;
        b.retry_at = Some(Instant::now());
        a.requeue(b);
    }

    #[test]
    fn nothing_drains_before_a_producer_id() {
        let mut a = accumulator(1, 2);
        let mut s = Sequences::new(true);
        assert!(s.needs_ids());
        assert!(drain(&mut a, &mut s, Instant::now()).is_empty());
        s.reset(IDS);
        let b = drain(&mut a, &mut s, Instant::now());
        assert_eq!(b[0].stamp, Some(Stamp { ids: IDS, base_sequence: 0 }));
    }

    #[test]
    fn a_plain_producer_stamps_nothing() {
        let mut a = accumulator(1, 2);
        let mut s = Sequences::new(false);
        let b = drain(&mut a, &mut s, Instant::now());
        assert_eq!(b[0].stamp, None);
        assert_eq!(s.on_wire(), 0);
    }

    #[test]
    fn sequences_count_records_and_survive_retries() {
        let mut a = accumulator(3, 4);
        let mut s = Sequences::new(true);
        s.reset(IDS);
        let now = Instant::now();
        let first: Vec<Batch> = (0..3).flat_map(|_| drain(&mut a, &mut s, now)).collect();
        assert_eq!(first.iter().map(base).collect::<Vec<_>>(), vec![0, 4, 8]);
        assert_eq!(s.on_wire(), 3);
        // The first fails retriably; the two behind it come back out of order.
        let mut first = first.into_iter();
        let (b0, b1, b2) = (first.next().unwrap(), first.next().unwrap(), first.next().unwrap());
        assert!(!s.earlier_unacked(&b0));
        assert!(s.earlier_unacked(&b1) && s.earlier_unacked(&b2));
        // Answers may come back in any order; requeue keeps creation (= sequence) order.
        retry(&mut a, &mut s, b2);
        retry(&mut a, &mut s, b0);
        retry(&mut a, &mut s, b1);
        assert_eq!(s.on_wire(), 0);
        let later = now + Duration::from_secs(1);
        let again = drain(&mut a, &mut s, later);
        assert_eq!(again.iter().map(base).collect::<Vec<_>>(), vec![0], "same sequence on retry");
        // Only the oldest unacknowledged batch may go while retrying.
        assert!(drain(&mut a, &mut s, later).is_empty());
        s.on_ack(&again[0]);
        let next = drain(&mut a, &mut s, later);
        assert_eq!(next.iter().map(base).collect::<Vec<_>>(), vec![4]);
        assert!(!s.earlier_unacked(&next[0]));
        s.on_ack(&next[0]);
        let last = drain(&mut a, &mut s, later);
        assert_eq!(last.iter().map(base).collect::<Vec<_>>(), vec![8]);
        s.on_ack(&last[0]);
        // New batches continue the sequence.
        let t: Arc<str> = Arc::from("t");
        a.append(&t, 0, rec(), 1000, false);
        assert_eq!(base(&drain(&mut a, &mut s, later)[0]), 12);
        assert!(!s.bump_needed());
    }

    #[test]
    fn new_batches_pipeline_behind_unacknowledged_ones() {
        let mut a = accumulator(3, 1);
        let mut s = Sequences::new(true);
        s.reset(IDS);
        let now = Instant::now();
        let sent: Vec<Batch> = (0..3).flat_map(|_| drain(&mut a, &mut s, now)).collect();
        assert_eq!(sent.iter().map(base).collect::<Vec<_>>(), vec![0, 1, 2]);
        for b in &sent {
            s.on_ack(b);
        }
        assert_eq!(s.on_wire(), 0);
    }

    #[test]
    fn a_failed_sequenced_batch_stops_sends_until_a_new_epoch() {
        let mut a = accumulator(3, 2);
        let mut s = Sequences::new(true);
        s.reset(IDS);
        let now = Instant::now();
        let b0 = drain(&mut a, &mut s, now).remove(0);
        let b1 = drain(&mut a, &mut s, now).remove(0);
        s.on_fail(&b0, true);
        assert!(s.bump_needed());
        assert!(!s.may_bump(), "b1 is still on the wire");
        // b1 comes back out of order: nothing older is unacknowledged, yet a retry under
        // the new epoch fixes it.
        assert!(!s.earlier_unacked(&b1));
        retry(&mut a, &mut s, b1);
        assert!(s.may_bump());
        assert!(drain(&mut a, &mut s, now + Duration::from_secs(1)).is_empty(), "no sends while a bump is pending");
        s.reset(ProducerIds { id: 7, epoch: 1 });
        let later = now + Duration::from_secs(1);
        let r1 = drain(&mut a, &mut s, later).remove(0);
        assert_eq!(r1.stamp, Some(Stamp { ids: ProducerIds { id: 7, epoch: 1 }, base_sequence: 0 }), "re-sequenced under the new epoch");
        let b2 = drain(&mut a, &mut s, later).remove(0);
        assert_eq!(base(&b2), 2);
    }

    #[test]
    fn out_of_order_is_retriable_behind_an_unacknowledged_batch() {
        let oos = Error::Broker { error: ResponseError::OutOfOrderSequenceNumber, context: String::new() };
        let unknown = Error::Broker { error: ResponseError::UnknownProducerId, context: String::new() };
        let other = Error::Broker { error: ResponseError::InvalidRecord, context: String::new() };
        for transactional in [false, true] {
            let mut a = accumulator(2, 1);
            let mut s = Sequences::new(true);
            s.reset(IDS);
            let now = Instant::now();
            let b0 = drain(&mut a, &mut s, now).remove(0);
            let b1 = drain(&mut a, &mut s, now).remove(0);
            assert!(s.retriable(&b1, &oos, transactional), "b0 is still unacknowledged");
            assert!(!s.bump_needed());
            assert!(!s.retriable(&b1, &other, transactional));
            s.on_ack(&b0);
            // Nothing older is outstanding: the broker lost track of this producer.
            assert_eq!(s.retriable(&b1, &oos, transactional), !transactional);
            assert_eq!(s.bump_needed(), !transactional);
            let mut s2 = Sequences::new(true);
            s2.reset(IDS);
            assert_eq!(s2.retriable(&b1, &unknown, transactional), !transactional);
        }
        assert!(!Sequences::new(false).retriable(&accumulator(1, 1).take_all().remove(0), &oos, false));
    }

    #[test]
    fn an_expired_batch_that_was_never_sent_leaves_no_gap() {
        let mut a = accumulator(1, 1);
        let mut s = Sequences::new(true);
        s.reset(IDS);
        let expired = a.expire(Instant::now() + Duration::from_secs(10), Duration::from_secs(1));
        s.on_fail(&expired[0], false);
        assert!(!s.bump_needed());
    }

    #[test]
    fn sequences_wrap_to_zero() {
        assert_eq!(increment_sequence(5, 3), 8);
        assert_eq!(increment_sequence(i32::MAX - 2, 2), i32::MAX);
        assert_eq!(increment_sequence(i32::MAX - 2, 3), 0);
        assert_eq!(increment_sequence(i32::MAX, 5), 4);
    }
}
