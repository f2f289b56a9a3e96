//! Idempotent producer state (Kafka's ProducerStateManager, DESIGN): per producer id the
//! current producer epoch and the last few batches' sequence and offset ranges, enough to
//! answer a retried batch with its original offsets and to reject gaps.
//!
//! Pure bookkeeping: the partition log feeds it every batch it stores and rebuilds it by
//! rescanning batch headers on open and after truncation, so it is never persisted.

use std::collections::{HashMap, VecDeque};

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

/// Per producer id: epoch and the last batches appended, for one partition.
#[derive(Debug, Clone, Default)]
pub struct ProducerState {
    producers: HashMap<i64, Entry>,
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
                scratch.record(h);
            }
            prev = *h;
        }
        Ok(match verdict {
            SeqCheck::Duplicate { base_offset, .. } => SeqCheck::Duplicate { base_offset, last_offset },
            SeqCheck::Append => SeqCheck::Append,
        })
    }

    /// Records a stored batch (`h` carrying its assigned offsets). Control batches and
    /// non-idempotent ones leave no state.
    pub fn record(&mut self, h: &BatchHeader) {
        if h.producer_id < 0 || h.is_control() {
            return;
        }
        let e = self.producers.entry(h.producer_id).or_insert_with(|| Entry { epoch: h.producer_epoch, batches: VecDeque::new() });
        if h.producer_epoch != e.epoch {
            e.epoch = h.producer_epoch;
            e.batches.clear();
        }
        if e.batches.len() == CACHED_BATCHES {
            e.batches.pop_front();
        }
        e.batches.push_back(BatchMeta { first_seq: h.base_sequence, last_seq: last_seq(h), first_offset: h.base_offset, last_offset: h.last_offset() });
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

    #[test]
    fn sequences_duplicates_and_epochs() {
        let mut s = ProducerState::default();
        assert_eq!(s.check(&h(-1, -1, -1, 3, 0)), Ok(SeqCheck::Append));
        assert_eq!(s.check(&h(7, 0, 3, 1, 0)), Err(SeqError::UnknownProducerId));
        assert_eq!(s.check(&h(7, 0, 0, 3, 0)), Ok(SeqCheck::Append));
        s.record(&h(7, 0, 0, 3, 10)); // seqs 0..=2 at offsets 10..=12
        s.record(&h(7, 0, 3, 2, 20)); // seqs 3..=4 at 20..=21
        assert_eq!(s.check(&h(7, 0, 0, 3, 0)), Ok(SeqCheck::Duplicate { base_offset: 10, last_offset: 12 }));
        assert_eq!(s.check(&h(7, 0, 3, 2, 0)), Ok(SeqCheck::Duplicate { base_offset: 20, last_offset: 21 }));
        assert_eq!(s.check(&h(7, 0, 5, 1, 0)), Ok(SeqCheck::Append));
        assert_eq!(s.check(&h(7, 0, 6, 1, 0)), Err(SeqError::OutOfOrder { expected: 5, got: 6 }));
        // A batch overlapping a stored one without matching it is not a duplicate.
        assert_eq!(s.check(&h(7, 0, 1, 2, 0)), Err(SeqError::OutOfOrder { expected: 5, got: 1 }));
        assert_eq!(s.check(&h(7, 1, 0, 1, 0)), Ok(SeqCheck::Append));
        assert_eq!(s.check(&h(7, 1, 5, 1, 0)), Err(SeqError::OutOfOrder { expected: 0, got: 5 }));
        s.record(&h(7, 1, 0, 1, 30));
        assert_eq!(s.check(&h(7, 0, 5, 1, 0)), Err(SeqError::InvalidEpoch));
        // The new epoch forgot the old epoch's batches.
        assert_eq!(s.check(&h(7, 1, 0, 3, 0)), Err(SeqError::OutOfOrder { expected: 1, got: 0 }));
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn keeps_five_batches_and_wraps_sequences() {
        let mut s = ProducerState::default();
        for i in 0..7 {
            s.record(&h(1, 0, i, 1, i64::from(i)));
        }
        assert_eq!(s.check(&h(1, 0, 1, 1, 0)), Err(SeqError::OutOfOrder { expected: 7, got: 1 }), "evicted");
        assert_eq!(s.check(&h(1, 0, 2, 1, 0)), Ok(SeqCheck::Duplicate { base_offset: 2, last_offset: 2 }));
        s.record(&h(2, 0, i32::MAX - 1, 3, 100)); // MAX-1, MAX, 0
        assert_eq!(last_seq(&h(2, 0, i32::MAX - 1, 3, 0)), 0);
        assert_eq!(s.check(&h(2, 0, 1, 1, 0)), Ok(SeqCheck::Append));
        let mut control = h(3, 0, 0, 1, 0);
        control.attributes = samsa_client::wire::batch::ATTR_CONTROL;
        s.record(&control);
        s.record(&h(-1, -1, -1, 1, 0));
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn whole_requests() {
        let mut s = ProducerState::default();
        assert_eq!(s.check_all(&[h(1, 0, 0, 2, 0), h(1, 0, 2, 2, 0)]), Ok(SeqCheck::Append));
        s.record(&h(1, 0, 0, 2, 0));
        s.record(&h(1, 0, 2, 2, 2));
        assert_eq!(s.check_all(&[h(1, 0, 0, 2, 0), h(1, 0, 2, 2, 0)]), Ok(SeqCheck::Duplicate { base_offset: 0, last_offset: 3 }));
        assert_eq!(s.check_all(&[h(1, 0, 2, 2, 0), h(1, 0, 4, 1, 0)]), Err(SeqError::OutOfOrder { expected: 4, got: 4 }));
        assert_eq!(s.check_all(&[h(1, 0, 4, 1, 0), h(1, 0, 6, 1, 0)]), Err(SeqError::OutOfOrder { expected: 5, got: 6 }));
    }
}
