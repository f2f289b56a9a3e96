//! One transactional id's coordinator state and its transitions (KIP-98), as pure
//! functions: the runtime in [`super`] persists each new state to `__transaction_state`
//! before acting on it.
//!
//! ```text
//! Empty ──AddPartitions──▶ Ongoing ──EndTxn(commit)──▶ PrepareCommit ──markers──▶ CompleteCommit
//!   ▲                        │  └────EndTxn(abort)/timeout/fencing──▶ PrepareAbort ──markers──▶ CompleteAbort
//!   └──── InitProducerId (epoch bump) from Empty or Complete* ◀──────────────────────────────┘
//! ```

use std::collections::BTreeSet;

use kafka_protocol::ResponseError;
use serde::{Deserialize, Serialize};

/// Where a transaction stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnState {
    /// No transaction open.
    Empty,
    /// Partitions were added; records may be in flight.
    Ongoing,
    /// Commit decided; markers being written.
    PrepareCommit,
    /// Abort decided; markers being written.
    PrepareAbort,
    /// Committed and every marker written.
    CompleteCommit,
    /// Aborted and every marker written.
    CompleteAbort,
}

impl TxnState {
    /// Kafka's name for the state (DescribeTransactions, ListTransactions).
    pub fn name(self) -> &'static str {
        match self {
            TxnState::Empty => "Empty",
            TxnState::Ongoing => "Ongoing",
            TxnState::PrepareCommit => "PrepareCommit",
            TxnState::PrepareAbort => "PrepareAbort",
            TxnState::CompleteCommit => "CompleteCommit",
            TxnState::CompleteAbort => "CompleteAbort",
        }
    }

    /// Whether markers are being written.
    pub fn is_prepared(self) -> bool {
        matches!(self, TxnState::PrepareCommit | TxnState::PrepareAbort)
    }
}

/// The coordinator's record of one transactional id (the value stored in
/// `__transaction_state`, as JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnMeta {
    /// The producer id the transactional id maps to.
    pub producer_id: i64,
    /// Current producer epoch.
    pub producer_epoch: i16,
    /// Epoch before the last bump, so a producer retrying InitProducerId after a lost
    /// answer is recognised (KIP-360).
    pub last_producer_epoch: i16,
    /// The producer's `transaction.timeout.ms`.
    pub timeout_ms: i32,
    /// Where the transaction stands.
    pub state: TxnState,
    /// Partitions in the open (or completing) transaction.
    pub partitions: BTreeSet<(String, i32)>,
    /// When the open transaction started (ms), -1 when none.
    pub start_ms: i64,
    /// When this state was written (ms).
    pub update_ms: i64,
}

/// What InitProducerId must do for a transactional id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InitDecision {
    /// Give the id a fresh producer id at epoch 0 (first use, or epoch exhausted).
    NewProducerId,
    /// Store this state and answer with its producer id and epoch.
    Ready(TxnMeta),
    /// An open transaction must be aborted first: store this (PrepareAbort with a bumped
    /// epoch, which fences the old producer), write its markers, and answer
    /// CONCURRENT_TRANSACTIONS so the producer retries.
    AbortFirst(TxnMeta),
}

/// The request's producer id and epoch must name the current producer.
fn check_producer(m: &TxnMeta, producer_id: i64, epoch: i16) -> Result<(), ResponseError> {
    if producer_id != m.producer_id {
        return Err(ResponseError::InvalidProducerIdMapping);
    }
    if epoch != m.producer_epoch {
        return Err(ResponseError::ProducerFenced);
    }
    Ok(())
}

impl TxnMeta {
    /// A fresh transactional id's state.
    pub fn new(producer_id: i64, timeout_ms: i32, now: i64) -> Self {
        TxnMeta { producer_id, producer_epoch: 0, last_producer_epoch: -1, timeout_ms, state: TxnState::Empty, partitions: BTreeSet::new(), start_ms: -1, update_ms: now }
    }

    /// InitProducerId with this transactional id. `given` is the producer id and epoch the
    /// producer presents (KIP-360), or `None` for a new producer.
    pub fn init(&self, given: Option<(i64, i16)>, timeout_ms: i32, now: i64) -> Result<InitDecision, ResponseError> {
        if let Some((pid, epoch)) = given {
            let known = pid == self.producer_id && (epoch == self.producer_epoch || epoch == self.last_producer_epoch);
            if !known {
                return Err(ResponseError::ProducerFenced);
            }
        }
        match self.state {
            TxnState::PrepareCommit | TxnState::PrepareAbort => Err(ResponseError::ConcurrentTransactions),
            TxnState::Ongoing => {
                let mut m = self.bumped(now);
                m.state = TxnState::PrepareAbort;
                Ok(InitDecision::AbortFirst(m))
            }
            TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort => {
                if self.producer_epoch >= i16::MAX - 1 {
                    return Ok(InitDecision::NewProducerId);
                }
                let mut m = self.bumped(now);
                m.state = TxnState::Empty;
                m.partitions.clear();
                m.start_ms = -1;
                m.timeout_ms = timeout_ms;
                Ok(InitDecision::Ready(m))
            }
        }
    }

    fn bumped(&self, now: i64) -> TxnMeta {
        let mut m = self.clone();
        m.last_producer_epoch = self.producer_epoch;
        m.producer_epoch = self.producer_epoch + 1;
        m.update_ms = now;
        m
    }

    /// AddPartitionsToTxn / AddOffsetsToTxn: the new state, or `None` when every partition
    /// is already in the open transaction.
    pub fn add_partitions(&self, producer_id: i64, epoch: i16, partitions: &[(String, i32)], now: i64) -> Result<Option<TxnMeta>, ResponseError> {
        check_producer(self, producer_id, epoch)?;
        if self.state.is_prepared() {
            return Err(ResponseError::ConcurrentTransactions);
        }
        if self.state == TxnState::Ongoing && partitions.iter().all(|p| self.partitions.contains(p)) {
            return Ok(None);
        }
        let mut m = self.clone();
        if m.state != TxnState::Ongoing {
            m.partitions.clear();
            m.start_ms = now;
        }
        m.state = TxnState::Ongoing;
        m.partitions.extend(partitions.iter().cloned());
        m.update_ms = now;
        Ok(Some(m))
    }

    /// EndTxn: the prepared state to store, or `None` when this is a retry of an end that
    /// already completed (answered with success).
    pub fn end(&self, producer_id: i64, epoch: i16, commit: bool, now: i64) -> Result<Option<TxnMeta>, ResponseError> {
        check_producer(self, producer_id, epoch)?;
        match (self.state, commit) {
            (TxnState::Ongoing, _) => {
                let mut m = self.clone();
                m.state = if commit { TxnState::PrepareCommit } else { TxnState::PrepareAbort };
                m.update_ms = now;
                Ok(Some(m))
            }
            (TxnState::CompleteCommit, true) | (TxnState::CompleteAbort, false) => Ok(None),
            (TxnState::PrepareCommit, true) | (TxnState::PrepareAbort, false) => Err(ResponseError::ConcurrentTransactions),
            _ => Err(ResponseError::InvalidTxnState),
        }
    }

    /// The state once every marker of a prepared transaction is written.
    pub fn completed(&self, now: i64) -> TxnMeta {
        let mut m = self.clone();
        m.state = match self.state {
            TxnState::PrepareCommit => TxnState::CompleteCommit,
            _ => TxnState::CompleteAbort,
        };
        m.partitions.clear();
        m.start_ms = -1;
        m.update_ms = now;
        m
    }

    /// The abort of a transaction open past its timeout (with the epoch bumped so the
    /// producer is fenced, as Kafka does); `None` when it has not timed out.
    pub fn timed_out(&self, now: i64) -> Option<TxnMeta> {
        if self.state != TxnState::Ongoing || now - self.start_ms <= i64::from(self.timeout_ms) {
            return None;
        }
        let mut m = self.bumped(now);
        m.state = TxnState::PrepareAbort;
        Some(m)
    }

    /// The partitions that markers go to, as a list.
    pub fn partition_list(&self) -> Vec<(String, i32)> {
        self.partitions.iter().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp(t: &str, p: i32) -> (String, i32) {
        (t.to_string(), p)
    }

    #[test]
    fn commit_cycle() {
        let m = TxnMeta::new(7, 60_000, 0);
        let InitDecision::Ready(m) = m.init(None, 60_000, 1).unwrap() else { panic!("ready") };
        assert_eq!((m.producer_id, m.producer_epoch, m.state), (7, 1, TxnState::Empty));
        assert_eq!(m.end(7, 1, true, 2), Err(ResponseError::InvalidTxnState), "nothing to commit");
        let m = m.add_partitions(7, 1, &[tp("a", 0)], 3).unwrap().unwrap();
        assert_eq!((m.state, m.start_ms), (TxnState::Ongoing, 3));
        assert_eq!(m.add_partitions(7, 1, &[tp("a", 0)], 4), Ok(None));
        let m = m.add_partitions(7, 1, &[tp("b", 1)], 5).unwrap().unwrap();
        assert_eq!(m.partition_list(), vec![tp("a", 0), tp("b", 1)]);
        assert_eq!(m.start_ms, 3, "adding partitions keeps the start time");
        let p = m.end(7, 1, true, 6).unwrap().unwrap();
        assert_eq!(p.state, TxnState::PrepareCommit);
        assert_eq!(p.add_partitions(7, 1, &[tp("c", 0)], 7), Err(ResponseError::ConcurrentTransactions));
        assert_eq!(p.end(7, 1, true, 7), Err(ResponseError::ConcurrentTransactions));
        assert_eq!(p.end(7, 1, false, 7), Err(ResponseError::InvalidTxnState));
        let c = p.completed(8);
        assert_eq!((c.state, c.partitions.len()), (TxnState::CompleteCommit, 0));
        assert_eq!(c.end(7, 1, true, 9), Ok(None), "a retried commit succeeds");
        // The next transaction starts afresh.
        let n = c.add_partitions(7, 1, &[tp("z", 0)], 10).unwrap().unwrap();
        assert_eq!((n.partition_list(), n.start_ms), (vec![tp("z", 0)], 10));
    }

    #[test]
    fn fencing_and_timeouts() {
        let m = TxnMeta::new(7, 1000, 0).add_partitions(7, 0, &[tp("a", 0)], 100).unwrap().unwrap();
        // A new producer with the same id: the open transaction is aborted first.
        let InitDecision::AbortFirst(a) = m.init(None, 1000, 200).unwrap() else { panic!("abort first") };
        assert_eq!((a.state, a.producer_epoch, a.last_producer_epoch), (TxnState::PrepareAbort, 1, 0));
        assert_eq!(a.init(None, 1000, 201), Err(ResponseError::ConcurrentTransactions));
        let done = a.completed(300);
        let InitDecision::Ready(r) = done.init(None, 1000, 301).unwrap() else { panic!("ready") };
        assert_eq!(r.producer_epoch, 2);
        // The zombie (epoch 0) is fenced everywhere.
        assert_eq!(r.add_partitions(7, 0, &[tp("a", 0)], 302), Err(ResponseError::ProducerFenced));
        assert_eq!(r.end(7, 0, true, 302), Err(ResponseError::ProducerFenced));
        assert_eq!(r.add_partitions(8, 2, &[tp("a", 0)], 302), Err(ResponseError::InvalidProducerIdMapping));
        assert_eq!(r.init(Some((7, 0)), 1000, 303), Err(ResponseError::ProducerFenced));
        // KIP-360: a producer retrying with its current or previous epoch is recognised.
        assert!(r.init(Some((7, 1)), 1000, 303).is_ok());
        // Timeouts.
        let o = r.add_partitions(7, 2, &[tp("a", 0)], 1000).unwrap().unwrap();
        assert_eq!(o.timed_out(2000), None);
        let t = o.timed_out(2001).unwrap();
        assert_eq!((t.state, t.producer_epoch), (TxnState::PrepareAbort, 3));
        // Epoch exhaustion asks for a new producer id.
        let mut e = TxnMeta::new(9, 1000, 0);
        e.producer_epoch = i16::MAX - 1;
        assert_eq!(e.init(None, 1000, 1), Ok(InitDecision::NewProducerId));
        // State survives JSON.
        let json = serde_json::to_vec(&t).unwrap();
        assert_eq!(serde_json::from_slice::<TxnMeta>(&json).unwrap(), t);
    }
}
