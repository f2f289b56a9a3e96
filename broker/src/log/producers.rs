//! Producer state (Kafka's ProducerStateManager, DESIGN §8): per producer id the current
//! producer epoch and the last few batches' sequence and offset ranges, enough to answer a
//! retried batch with its original offsets and to reject gaps; and for transactions, each
//! producer's open transaction (its first offset), which bounds the last stable offset,
//! and the index of aborted transactions that read_committed fetches skip.
//!
//! Pure bookkeeping: the partition log feeds it every batch it stores (with the marker of
//! control batches) and rebuilds it by rescanning the log on open and after truncation.

use std::collections::{BTreeMap, HashMap, VecDeque};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::records::{Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType};
use samsa_client::wire::batch::BatchHeader;

/// Batches remembered per producer: a producer has at most 5 requests in flight
/// (`max.in.flight.requests.per.connection`), so any retry matches one of these.
const CACHED_BATCHES: usize = 5;

/// The verdict on a batch that may be appended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeqCheck {
    /// New data in sequence (or not idempotent at all): append it.
    Append,
    /// A retry of a batch already in the log: answer with its original offsets.
    Duplicate {
        /// Offset given to the original batch's first record.
        base_offset: i64,
        /// Offset of the original batch's last record.
        last_offset: i64,
    },
}

/// Why an idempotent batch must be rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SeqError {
    /// The producer id has no state here and the batch does not start a sequence.
    #[error("unknown producer id with a batch not starting at sequence 0")]
    UnknownProducerId,
    /// The batch's producer epoch is older than the one already seen (a zombie producer).
    #[error("producer epoch is older than the current one")]
    InvalidEpoch,
    /// The batch's first sequence is not the one that follows the last stored batch.
    #[error("out of order sequence: expected {expected}, got {got}")]
    OutOfOrder {
        /// Sequence the next batch must start with.
        expected: i32,
        /// Sequence the batch started with.
        got: i32,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct BatchMeta {
    first_seq: i32,
    last_seq: i32,
    first_offset: i64,
    last_offset: i64,
}

#[derive(Debug, Clone, Default)]
struct Entry {
    epoch: i16,
    /// Oldest first; at most [`CACHED_BATCHES`].
    batches: VecDeque<BatchMeta>,
    /// First offset of the producer's open transaction in this partition.
    txn_first_offset: Option<i64>,
    /// Coordinator epoch of the last marker written for this producer.
    coordinator_epoch: i32,
    /// Timestamp of the producer's last batch, for expiry.
    last_timestamp: i64,
}

/// A transaction marker: the single record of a control batch that ends a transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Marker {
    /// COMMIT (true) or ABORT (false).
    pub commit: bool,
    /// Epoch of the transaction coordinator that wrote it.
    pub coordinator_epoch: i32,
}

/// A transaction that was aborted in this partition: read_committed consumers drop the
/// producer's transactional records from `first_offset` up to the marker at `last_offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbortedTxn {
    /// The producer.
    pub producer_id: i64,
    /// Offset of the transaction's first record in this partition.
    pub first_offset: i64,
    /// Offset of the ABORT marker.
    pub last_offset: i64,
}

/// Why a transaction marker must be refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MarkerError {
    /// The marker's producer epoch is older than the producer's current one.
    #[error("the marker's producer epoch is older than the current one")]
    InvalidEpoch,
    /// A newer transaction coordinator already wrote markers for this producer.
    #[error("a newer transaction coordinator already wrote markers for this producer")]
    CoordinatorFenced,
}

/// Encodes a control batch holding one transaction marker (Kafka's EndTransactionMarker:
/// key = version 0, type 0 abort / 1 commit; value = version 0, coordinator epoch).
pub fn encode_marker(producer_id: i64, producer_epoch: i16, marker: Marker, timestamp: i64) -> Vec<u8> {
    let mut key = BytesMut::with_capacity(4);
    key.put_i16(0);
    key.put_i16(i16::from(marker.commit));
    let mut value = BytesMut::with_capacity(6);
    value.put_i16(0);
    value.put_i32(marker.coordinator_epoch);
    let record = Record {
        transactional: true,
        control: true,
        delete_horizon: false,
        partition_leader_epoch: 0,
        producer_id,
        producer_epoch,
        timestamp_type: TimestampType::Creation,
        offset: 0,
        sequence: -1,
        timestamp,
        key: Some(key.freeze()),
        value: Some(value.freeze()),
        headers: Default::default(),
    };
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(&mut buf, std::slice::from_ref(&record), &RecordEncodeOptions { version: 2, compression: Compression::None })
        .expect("a marker batch always encodes");
    buf.to_vec()
}

/// Reads the marker of a control batch (`batch`: the whole batch); `None` when the batch
/// is not a readable transaction marker (control records of other kinds are ignored).
pub fn parse_marker(batch: &[u8]) -> Option<Marker> {
    let mut b = Bytes::copy_from_slice(batch);
    let set = RecordBatchDecoder::decode(&mut b).ok()?;
    let r = set.records.first()?;
    let mut key = r.key.clone()?;
    if key.remaining() < 4 {
        return None;
    }
    let _version = key.get_i16();
    let kind = key.get_i16();
    if kind > 1 {
        return None;
    }
    let coordinator_epoch = r.value.clone().filter(|v| v.len() >= 6).map_or(0, |mut v| {
        v.advance(2);
        v.get_i32()
    });
    Some(Marker { commit: kind == 1, coordinator_epoch })
}

/// `seq + n` as Kafka counts sequences: after `i32::MAX` comes 0.
fn add_seq(seq: i32, n: i32) -> i32 {
    if seq > i32::MAX - n {
        n - (i32::MAX - seq) - 1
    } else {
        seq + n
    }
}

/// Sequence of the last record of the batch `h`.
pub fn last_seq(h: &BatchHeader) -> i32 {
    add_seq(h.base_sequence, h.last_offset_delta)
}

/// Per producer id: epoch and the last batches appended, for one partition; open
/// transactions and aborted ones.
#[derive(Debug, Clone, Default)]
pub struct ProducerState {
    producers: HashMap<i64, Entry>,
    /// Open transactions: first offset -> producer id.
    ongoing: BTreeMap<i64, i64>,
    /// Aborted transactions in marker order.
    aborted: Vec<AbortedTxn>,
}

impl ProducerState {
    /// Judges a batch a leader is about to append (`h` as the producer sent it).
    pub fn check(&self, h: &BatchHeader) -> Result<SeqCheck, SeqError> {
        if h.producer_id < 0 {
            return Ok(SeqCheck::Append);
        }
        let Some(e) = self.producers.get(&h.producer_id) else {
            return if h.base_sequence == 0 { Ok(SeqCheck::Append) } else { Err(SeqError::UnknownProducerId) };
        };
        if h.producer_epoch < e.epoch {
            return Err(SeqError::InvalidEpoch);
        }
        // A bumped epoch restarts the sequence (the producer reset after a fatal error).
        let expected = if h.producer_epoch > e.epoch {
            0
        } else {
            let last = last_seq(h);
            if let Some(b) = e.batches.iter().find(|b| b.first_seq == h.base_sequence && b.last_seq == last) {
                return Ok(SeqCheck::Duplicate { base_offset: b.first_offset, last_offset: b.last_offset });
            }
            e.batches.back().map_or(0, |b| add_seq(b.last_seq, 1))
        };
        if h.base_sequence == expected {
            Ok(SeqCheck::Append)
        } else {
            Err(SeqError::OutOfOrder { expected, got: h.base_sequence })
        }
    }

    /// Judges a whole produce request for one partition: the batches must be all new and
    /// in sequence (each after the one before), or be a retry whose first batch is a
    /// duplicate; anything mixed is out of order.
    pub fn check_all(&self, headers: &[BatchHeader]) -> Result<SeqCheck, SeqError> {
        let Some((first, rest)) = headers.split_first() else { return Ok(SeqCheck::Append) };
        let verdict = self.check(first)?;
        if rest.is_empty() {
            return Ok(verdict);
        }
        // Later batches are judged as if the earlier ones were in: a scratch copy of just
        // the producers involved, with placeholder offsets (only sequences matter here).
        let mut scratch = ProducerState::default();
        for h in headers {
            if let Some(e) = self.producers.get(&h.producer_id) {
                scratch.producers.entry(h.producer_id).or_insert_with(|| e.clone());
            }
        }
        let mut prev = *first;
        let mut last_offset = 0;
        for h in headers {
            let v = scratch.check(h)?;
            let mixed = match (verdict, v) {
                (SeqCheck::Append, SeqCheck::Append) => false,
                (SeqCheck::Duplicate { .. }, SeqCheck::Duplicate { last_offset: l, .. }) => {
                    last_offset = l;
                    false
                }
                _ => true,
            };
            if mixed {
                return Err(SeqError::OutOfOrder { expected: add_seq(last_seq(&prev), 1), got: h.base_sequence });
            }
            if v == SeqCheck::Append {
                scratch.record(h, None);
            }
            prev = *h;
        }
        Ok(match verdict {
            SeqCheck::Duplicate { base_offset, .. } => SeqCheck::Duplicate { base_offset, last_offset },
            SeqCheck::Append => SeqCheck::Append,
        })
    }

    /// Records a stored batch (`h` carrying its assigned offsets; `marker` read from a
    /// control batch). Non-idempotent batches leave no state.
    pub fn record(&mut self, h: &BatchHeader, marker: Option<Marker>) {
        if h.producer_id < 0 || (h.is_control() && marker.is_none()) {
            return;
        }
        let pid = h.producer_id;
        let e = self.producers.entry(pid).or_insert_with(|| Entry { epoch: h.producer_epoch, ..Entry::default() });
        e.last_timestamp = e.last_timestamp.max(h.max_timestamp);
        if h.is_control() {
            let Some(m) = marker else { return };
            // A marker may carry a bumped epoch (a timed-out or fenced transaction): the
            // producer's next batches start a new sequence in that epoch.
            if h.producer_epoch > e.epoch {
                e.epoch = h.producer_epoch;
                e.batches.clear();
            }
            e.coordinator_epoch = e.coordinator_epoch.max(m.coordinator_epoch);
            if let Some(first) = e.txn_first_offset.take() {
                self.ongoing.remove(&first);
                if !m.commit {
                    self.aborted.push(AbortedTxn { producer_id: pid, first_offset: first, last_offset: h.base_offset });
                }
            }
            return;
        }
        if h.producer_epoch != e.epoch {
            e.epoch = h.producer_epoch;
            e.batches.clear();
        }
        if e.batches.len() == CACHED_BATCHES {
            e.batches.pop_front();
        }
        e.batches.push_back(BatchMeta { first_seq: h.base_sequence, last_seq: last_seq(h), first_offset: h.base_offset, last_offset: h.last_offset() });
        if h.is_transactional() && e.txn_first_offset.is_none() {
            e.txn_first_offset = Some(h.base_offset);
            self.ongoing.insert(h.base_offset, pid);
        }
    }

    /// Judges a transaction marker about to be written for `producer_id`.
    pub fn check_marker(&self, producer_id: i64, producer_epoch: i16, coordinator_epoch: i32) -> Result<(), MarkerError> {
        match self.producers.get(&producer_id) {
            Some(e) if producer_epoch < e.epoch => Err(MarkerError::InvalidEpoch),
            Some(e) if coordinator_epoch < e.coordinator_epoch => Err(MarkerError::CoordinatorFenced),
            _ => Ok(()),
        }
    }

    /// First offset of the oldest open transaction: the last stable offset is the lower of
    /// this and the high watermark.
    pub fn first_unstable_offset(&self) -> Option<i64> {
        self.ongoing.keys().next().copied()
    }

    /// Open transactions as (producer id, epoch, first offset), oldest first.
    pub fn open_transactions(&self) -> Vec<(i64, i16, i64)> {
        self.ongoing.iter().map(|(&first, &pid)| (pid, self.producers.get(&pid).map_or(-1, |e| e.epoch), first)).collect()
    }

    /// Aborted transactions overlapping offsets `[from, to)`, as Fetch lists them.
    pub fn aborted_between(&self, from: i64, to: i64) -> Vec<AbortedTxn> {
        // Sorted by marker offset: skip those that ended before `from`.
        let start = self.aborted.partition_point(|a| a.last_offset < from);
        self.aborted[start..].iter().filter(|a| a.first_offset < to).copied().collect()
    }

    /// Forgets aborted transactions wholly below `log_start` (their records are gone).
    pub fn prune_aborted(&mut self, log_start: i64) {
        self.aborted.retain(|a| a.last_offset >= log_start);
    }

    /// Drops producers idle since before `horizon` (a batch timestamp) with no open
    /// transaction (`producer.id.expiration.ms`); returns how many went.
    pub fn expire(&mut self, horizon: i64) -> usize {
        let before = self.producers.len();
        self.producers.retain(|_, e| e.txn_first_offset.is_some() || e.last_timestamp >= horizon);
        before - self.producers.len()
    }

    /// Per producer: (producer id, epoch, last sequence, last timestamp, coordinator epoch,
    /// open transaction's first offset or -1), for DescribeProducers.
    pub fn describe(&self) -> Vec<(i64, i16, i32, i64, i32, i64)> {
        let mut out: Vec<_> = self
            .producers
            .iter()
            .map(|(&pid, e)| (pid, e.epoch, e.batches.back().map_or(-1, |b| b.last_seq), e.last_timestamp, e.coordinator_epoch, e.txn_first_offset.unwrap_or(-1)))
            .collect();
        out.sort_unstable();
        out
    }

    /// Number of producer ids with state.
    pub fn len(&self) -> usize {
        self.producers.len()
    }

    /// Whether no producer has state.
    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pid: i64, epoch: i16, seq: i32, n: i32, base_offset: i64) -> BatchHeader {
        BatchHeader {
            base_offset,
            batch_length: 100,
            partition_leader_epoch: 0,
            magic: 2,
            crc: 0,
            attributes: 0,
            last_offset_delta: n - 1,
            base_timestamp: 0,
            max_timestamp: 0,
            producer_id: pid,
            producer_epoch: epoch,
            base_sequence: seq,
            record_count: n,
        }
    }

    impl ProducerState {
        fn record_plain(&mut self, h: &BatchHeader) {
            self.record(h, None);
        }
    }

    fn txn(pid: i64, epoch: i16, seq: i32, n: i32, base_offset: i64) -> BatchHeader {
        let mut b = h(pid, epoch, seq, n, base_offset);
        b.attributes = samsa_client::wire::batch::ATTR_TRANSACTIONAL;
        b
    }

    fn marker(pid: i64, epoch: i16, offset: i64) -> BatchHeader {
        let mut b = h(pid, epoch, -1, 1, offset);
        b.attributes = samsa_client::wire::batch::ATTR_TRANSACTIONAL | samsa_client::wire::batch::ATTR_CONTROL;
        b
    }

    #[test]
    fn transactions_bound_the_stable_offset_and_aborts_are_indexed() {
        let mut s = ProducerState::default();
        assert_eq!(s.first_unstable_offset(), None);
        s.record_plain(&txn(1, 0, 0, 2, 10)); // txn of pid 1 starts at 10
        s.record_plain(&txn(2, 0, 0, 1, 12)); // pid 2 at 12
        s.record_plain(&txn(1, 0, 2, 1, 13));
        assert_eq!(s.first_unstable_offset(), Some(10));
        assert_eq!(s.open_transactions(), vec![(1, 0, 10), (2, 0, 12)]);
        s.record(&marker(1, 0, 14), Some(Marker { commit: false, coordinator_epoch: 3 }));
        assert_eq!(s.first_unstable_offset(), Some(12));
        s.record(&marker(2, 0, 15), Some(Marker { commit: true, coordinator_epoch: 3 }));
        assert_eq!(s.first_unstable_offset(), None);
        let aborted = AbortedTxn { producer_id: 1, first_offset: 10, last_offset: 14 };
        assert_eq!(s.aborted_between(0, 100), vec![aborted]);
        assert_eq!(s.aborted_between(14, 100), vec![aborted]);
        assert_eq!(s.aborted_between(15, 100), vec![]);
        assert_eq!(s.aborted_between(0, 10), vec![], "fetch ends before the transaction");
        // Sequences go on after a commit in the same epoch.
        assert_eq!(s.check(&txn(2, 0, 1, 1, 0)), Ok(SeqCheck::Append));
        // Markers from older epochs or coordinators are refused.
        assert_eq!(s.check_marker(1, 0, 2), Err(MarkerError::CoordinatorFenced));
        assert_eq!(s.check_marker(9, 0, 0), Ok(()));
        // A marker with a bumped epoch (a timeout abort) fences the old epoch.
        s.record_plain(&txn(2, 0, 1, 1, 16));
        s.record(&marker(2, 1, 17), Some(Marker { commit: false, coordinator_epoch: 3 }));
        assert_eq!(s.check(&txn(2, 0, 2, 1, 0)), Err(SeqError::InvalidEpoch));
        assert_eq!(s.check(&txn(2, 1, 0, 1, 0)), Ok(SeqCheck::Append));
        assert_eq!(s.check_marker(2, 0, 3), Err(MarkerError::InvalidEpoch));
        s.prune_aborted(15);
        assert_eq!(s.aborted_between(0, 100), vec![AbortedTxn { producer_id: 2, first_offset: 16, last_offset: 17 }]);
    }

    #[test]
    fn markers_round_trip_and_idle_producers_expire() {
        let bytes = encode_marker(5, 2, Marker { commit: true, coordinator_epoch: 7 }, 1234);
        let header = samsa_client::wire::batch::check_batch(&bytes).unwrap();
        assert!(header.is_control() && header.is_transactional());
        assert_eq!((header.producer_id, header.producer_epoch), (5, 2));
        assert_eq!(parse_marker(&bytes), Some(Marker { commit: true, coordinator_epoch: 7 }));
        let mut s = ProducerState::default();
        let mut old = h(1, 0, 0, 1, 0);
        old.max_timestamp = 100;
        let mut open = txn(2, 0, 0, 1, 1);
        open.max_timestamp = 100;
        let mut recent = h(3, 0, 0, 1, 2);
        recent.max_timestamp = 900;
        for b in [old, open, recent] {
            s.record_plain(&b);
        }
        assert_eq!(s.expire(500), 1, "only the idle producer without an open transaction goes");
        assert_eq!(s.describe().iter().map(|d| d.0).collect::<Vec<_>>(), vec![2, 3]);
    }

    #[test]
    fn sequences_duplicates_and_epochs() {
        let mut s = ProducerState::default();
        assert_eq!(s.check(&h(-1, -1, -1, 3, 0)), Ok(SeqCheck::Append));
        assert_eq!(s.check(&h(7, 0, 3, 1, 0)), Err(SeqError::UnknownProducerId));
        assert_eq!(s.check(&h(7, 0, 0, 3, 0)), Ok(SeqCheck::Append));
        s.record_plain(&h(7, 0, 0, 3, 10)); // seqs 0..=2 at offsets 10..=12
        s.record_plain(&h(7, 0, 3, 2, 20)); // seqs 3..=4 at 20..=21
        assert_eq!(s.check(&h(7, 0, 0, 3, 0)), Ok(SeqCheck::Duplicate { base_offset: 10, last_offset: 12 }));
        assert_eq!(s.check(&h(7, 0, 3, 2, 0)), Ok(SeqCheck::Duplicate { base_offset: 20, last_offset: 21 }));
        assert_eq!(s.check(&h(7, 0, 5, 1, 0)), Ok(SeqCheck::Append));
        assert_eq!(s.check(&h(7, 0, 6, 1, 0)), Err(SeqError::OutOfOrder { expected: 5, got: 6 }));
        // A batch overlapping a stored one without matching it is not a duplicate.
        assert_eq!(s.check(&h(7, 0, 1, 2, 0)), Err(SeqError::OutOfOrder { expected: 5, got: 1 }));
        assert_eq!(s.check(&h(7, 1, 0, 1, 0)), Ok(SeqCheck::Append));
        assert_eq!(s.check(&h(7, 1, 5, 1, 0)), Err(SeqError::OutOfOrder { expected: 0, got: 5 }));
        s.record_plain(&h(7, 1, 0, 1, 30));
        assert_eq!(s.check(&h(7, 0, 5, 1, 0)), Err(SeqError::InvalidEpoch));
        // The new epoch forgot the old epoch's batches.
        assert_eq!(s.check(&h(7, 1, 0, 3, 0)), Err(SeqError::OutOfOrder { expected: 1, got: 0 }));
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn keeps_five_batches_and_wraps_sequences() {
        let mut s = ProducerState::default();
        for i in 0..7 {
            s.record_plain(&h(1, 0, i, 1, i64::from(i)));
        }
        assert_eq!(s.check(&h(1, 0, 1, 1, 0)), Err(SeqError::OutOfOrder { expected: 7, got: 1 }), "evicted");
        assert_eq!(s.check(&h(1, 0, 2, 1, 0)), Ok(SeqCheck::Duplicate { base_offset: 2, last_offset: 2 }));
        s.record_plain(&h(2, 0, i32::MAX - 1, 3, 100)); // MAX-1, MAX, 0
        assert_eq!(last_seq(&h(2, 0, i32::MAX - 1, 3, 0)), 0);
        assert_eq!(s.check(&h(2, 0, 1, 1, 0)), Ok(SeqCheck::Append));
        let mut control = h(3, 0, 0, 1, 0);
        control.attributes = samsa_client::wire::batch::ATTR_CONTROL;
        s.record(&control, None);
        s.record_plain(&h(-1, -1, -1, 1, 0));
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn whole_requests() {
        let mut s = ProducerState::default();
        assert_eq!(s.check_all(&[h(1, 0, 0, 2, 0), h(1, 0, 2, 2, 0)]), Ok(SeqCheck::Append));
        s.record_plain(&h(1, 0, 0, 2, 0));
        s.record_plain(&h(1, 0, 2, 2, 2));
        assert_eq!(s.check_all(&[h(1, 0, 0, 2, 0), h(1, 0, 2, 2, 0)]), Ok(SeqCheck::Duplicate { base_offset: 0, last_offset: 3 }));
        assert_eq!(s.check_all(&[h(1, 0, 2, 2, 0), h(1, 0, 4, 1, 0)]), Err(SeqError::OutOfOrder { expected: 4, got: 4 }));
        assert_eq!(s.check_all(&[h(1, 0, 4, 1, 0), h(1, 0, 6, 1, 0)]), Err(SeqError::OutOfOrder { expected: 5, got: 6 }));
    }
}
