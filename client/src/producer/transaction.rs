//! The transactional producer's state machine (KIP-98), as the Java client's
//! `TransactionManager`: pure data under the producer's session lock, no I/O.
//!
//! ```text
//!  Uninitialized ─init_transactions─> Ready ─begin─> InTransaction ─commit─> Committing ─┐
//!                                       ^                 │ a record or request fails    │
//!                                       │                 v                              │
//!                                       ├──abort── AbortableError <──────────────────────┤
//!                                       └──────────────── EndTxn done ───────────────────┘
//!  any state ── PRODUCER_FENCED, INVALID_PRODUCER_EPOCH, authorization ──> Fatal (final)
//! ```
//!
//! Before a partition's first batch goes out in a transaction it is registered with the
//! coordinator (AddPartitionsToTxn): `record` marks it pending, the sender takes pending
//! partitions with `take_pending` and reports with `add_done`; `may_send` holds batches
//! of partitions not added yet.

use std::collections::BTreeSet;
use std::sync::Arc;

use kafka_protocol::ResponseError;

use crate::error::Error;

/// A topic and partition, as the accumulator keys them.
pub(crate) type Tp = (Arc<str>, i32);

/// Where the transactional producer is.
#[derive(Debug, Clone)]
pub(crate) enum Phase {
    /// `init_transactions` not called yet.
    Uninitialized,
    /// `init_transactions` is running (or timed out and may be called again).
    Initializing,
    /// No transaction open.
    Ready,
    /// Between `begin_transaction` and commit or abort.
    InTransaction,
    /// `commit_transaction` is flushing or ending the transaction.
    Committing,
    /// `abort_transaction` is draining or ending the transaction.
    Aborting,
    /// Something in the transaction failed: only `abort_transaction` helps.
    AbortableError(Error),
    /// Fenced or not authorized: the producer is unusable.
    Fatal(Error),
}

/// The transactional state of one producer.
#[derive(Debug)]
pub(crate) struct Txn {
    /// The `transactional.id`.
    pub id: String,
    phase: Phase,
    /// Partitions the coordinator has in the current transaction.
    added: BTreeSet<Tp>,
    /// Partitions with records waiting to be added.
    pending: BTreeSet<Tp>,
    /// An AddPartitionsToTxn is in flight.
    adding: bool,
    /// The coordinator knows of this transaction (partitions or offsets were added), so it
    /// has to be ended with EndTxn.
    started: bool,
}

/// The error that makes a producer unusable, for a broker error that does: a newer
/// producer took the transactional id over, or this one may not use it.
pub(crate) fn fatal_error(e: &Error, transactional_id: &str) -> Option<Error> {
    match e {
        Error::Fenced { .. } => Some(e.clone()),
        Error::Broker { error: ResponseError::ProducerFenced | ResponseError::InvalidProducerEpoch, .. } => {
            Some(Error::Fenced { transactional_id: transactional_id.to_string() })
        }
        Error::Broker { error: ResponseError::TransactionalIdAuthorizationFailed | ResponseError::ClusterAuthorizationFailed, .. } => Some(e.clone()),
        _ => None,
    }
}

impl Txn {
    /// A producer with this `transactional.id`, before `init_transactions`.
    pub fn new(id: impl Into<String>) -> Txn {
        Txn { id: id.into(), phase: Phase::Uninitialized, added: BTreeSet::new(), pending: BTreeSet::new(), adding: false, started: false }
    }

    /// The current phase.
    pub fn phase(&self) -> &Phase {
        &self.phase
    }

    fn fatal(&self) -> Result<(), Error> {
        match &self.phase {
            Phase::Fatal(e) => Err(e.clone()),
            _ => Ok(()),
        }
    }

    /// Starts `init_transactions` (again, after one timed out).
    pub fn start_init(&mut self) -> Result<(), Error> {
        self.fatal()?;
        match self.phase {
            Phase::Uninitialized | Phase::Initializing => {
                self.phase = Phase::Initializing;
                Ok(())
            }
            _ => Err(Error::State("init_transactions was already called on this producer".into())),
        }
    }

    /// `init_transactions` finished: `Ok` means a producer id is in place.
    pub fn init_done(&mut self, result: &Result<(), Error>) {
        match result {
            Ok(()) => self.phase = Phase::Ready,
            Err(e) => self.fail(e),
        }
    }

    fn not_in_transaction(&self, call: &str) -> Error {
        match &self.phase {
            Phase::Fatal(e) => e.clone(),
            Phase::Uninitialized | Phase::Initializing => Error::State(format!("{call} needs init_transactions first")),
            Phase::Ready => Error::State(format!("{call} outside a transaction: call begin_transaction first")),
            Phase::InTransaction => Error::State(format!("{call} inside an open transaction: commit or abort it first")),
            Phase::Committing => Error::State(format!("{call} while the transaction is committing: wait for commit_transaction")),
            Phase::Aborting => Error::State(format!("{call} while the transaction is aborting: wait for abort_transaction")),
            Phase::AbortableError(e) => Error::State(format!("{call} after this transaction failed ({e}): call abort_transaction")),
        }
    }

    /// `begin_transaction`.
    pub fn begin(&mut self) -> Result<(), Error> {
        match self.phase {
            Phase::Ready => {
                self.phase = Phase::InTransaction;
                self.added.clear();
                self.pending.clear();
                self.started = false;
                Ok(())
            }
            _ => Err(self.not_in_transaction("begin_transaction")),
        }
    }

    /// Whether a record may be sent now (in a transaction that has not failed).
    pub fn check_send(&self) -> Result<(), Error> {
        match self.phase {
            Phase::InTransaction => Ok(()),
            _ => Err(self.not_in_transaction("send")),
        }
    }

    /// Whether offsets may be added now.
    pub fn check_offsets(&self) -> Result<(), Error> {
        match self.phase {
            Phase::InTransaction => Ok(()),
            _ => Err(self.not_in_transaction("send_offsets_to_transaction")),
        }
    }

    /// A record was queued for `tp`: the partition joins the transaction before it is sent.
    pub fn record(&mut self, tp: &Tp) {
        if !self.added.contains(tp) {
            self.pending.insert(tp.clone());
        }
    }

    /// Whether batches of `tp` may be sent: the partition is in the open transaction.
    pub fn may_send(&self, tp: &Tp) -> bool {
        matches!(self.phase, Phase::InTransaction | Phase::Committing) && self.added.contains(tp)
    }

    /// Partitions to add now, when none are being added (marks an add in flight).
    pub fn take_pending(&mut self) -> Option<Vec<Tp>> {
        if self.adding || self.pending.is_empty() || !matches!(self.phase, Phase::InTransaction | Phase::Committing) {
            return None;
        }
        self.adding = true;
        Some(std::mem::take(&mut self.pending).into_iter().collect())
    }

    /// Whether an AddPartitionsToTxn is in flight.
    pub fn adding(&self) -> bool {
        self.adding
    }

    /// An AddPartitionsToTxn round ended: `added` are in the transaction; `error` (if
    /// any) fails the transaction.
    pub fn add_done(&mut self, added: Vec<Tp>, error: Option<&Error>) {
        self.adding = false;
        if !added.is_empty() {
            self.started = true;
        }
        for tp in added {
            self.pending.remove(&tp);
            self.added.insert(tp);
        }
        if let Some(e) = error {
            self.fail(e);
        }
    }

    /// The coordinator has the group's offsets in the transaction.
    pub fn offsets_added(&mut self) {
        self.started = true;
    }

    /// Something in the transaction failed for good: fatal errors end the producer, any
    /// other fails the open transaction (it can only be aborted).
    pub fn fail(&mut self, e: &Error) {
        if matches!(self.phase, Phase::Fatal(_)) {
            return;
        }
        if let Some(fatal) = fatal_error(e, &self.id) {
            self.phase = Phase::Fatal(fatal);
            return;
        }
        match self.phase {
            Phase::InTransaction | Phase::Committing => self.phase = Phase::AbortableError(e.clone()),
            Phase::Initializing => self.phase = Phase::Uninitialized,
            _ => {}
        }
    }

    /// Why queued records cannot be sent any more, when they cannot: the transaction is
    /// aborting or failed, or the producer is fenced.
    pub fn sweep_error(&self) -> Option<Error> {
        match &self.phase {
            Phase::Aborting => Some(Error::TransactionAborted("abort_transaction was called before this record was sent".into())),
            Phase::AbortableError(e) => Some(Error::TransactionAborted(format!("an earlier error failed the transaction: {e}"))),
            Phase::Fatal(e) => Some(e.clone()),
            _ => None,
        }
    }

    /// Starts `commit_transaction` (again, after one timed out).
    pub fn start_commit(&mut self) -> Result<(), Error> {
        match &self.phase {
            Phase::InTransaction | Phase::Committing => {
                self.phase = Phase::Committing;
                Ok(())
            }
            Phase::AbortableError(e) => {
                Err(Error::State(format!("cannot commit: an earlier error failed this transaction ({e}); call abort_transaction")))
            }
            _ => Err(self.not_in_transaction("commit_transaction")),
        }
    }

    /// Starts `abort_transaction` (again, after one timed out).
    pub fn start_abort(&mut self) -> Result<(), Error> {
        match &self.phase {
            Phase::InTransaction | Phase::Aborting | Phase::AbortableError(_) => {
                self.phase = Phase::Aborting;
                Ok(())
            }
            Phase::Committing => Err(Error::State(
                "a commit_transaction did not finish (it timed out); call commit_transaction again to complete it".into(),
            )),
            _ => Err(self.not_in_transaction("abort_transaction")),
        }
    }

    /// Whether the coordinator has to be told how the transaction ends (EndTxn).
    pub fn needs_end(&self) -> bool {
        self.started
    }

    /// The coordinator ended the transaction (EndTxn succeeded); the call may still have
    /// work to do before the producer is ready again.
    pub fn end_done(&mut self) {
        self.added.clear();
        self.pending.clear();
        self.started = false;
    }

    /// The commit or abort call is complete: ready for the next transaction.
    pub fn ended(&mut self) {
        if matches!(self.phase, Phase::Committing | Phase::Aborting) {
            self.phase = Phase::Ready;
        }
        self.end_done();
    }

    /// A commit or abort call failed on the way: the transaction can only be aborted now
    /// (fatal errors end the producer; timeouts leave the call to be repeated).
    pub fn end_failed(&mut self, e: &Error) {
        if let Some(fatal) = fatal_error(e, &self.id) {
            self.phase = Phase::Fatal(fatal);
        } else if !matches!(e, Error::Timeout { .. }) {
            if let Phase::Committing = self.phase {
                self.phase = Phase::AbortableError(e.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp(p: i32) -> Tp {
        (Arc::from("t"), p)
    }

    fn ready() -> Txn {
        let mut t = Txn::new("tx");
        t.start_init().unwrap();
        t.init_done(&Ok(()));
        t
    }

    fn broker(error: ResponseError) -> Error {
        Error::Broker { error, context: "test".into() }
    }

    #[test]
    fn calls_out_of_order_say_what_to_do() {
        let mut t = Txn::new("tx");
        let e = t.check_send().unwrap_err().to_string();
        assert!(e.contains("init_transactions"), "{e}");
        assert!(t.begin().unwrap_err().to_string().contains("init_transactions"));
        t.start_init().unwrap();
        t.init_done(&Ok(()));
        let e = t.check_send().unwrap_err().to_string();
        assert!(e.contains("call begin_transaction first"), "{e}");
        assert!(t.start_commit().unwrap_err().to_string().contains("begin_transaction"));
        assert!(t.start_abort().unwrap_err().to_string().contains("begin_transaction"));
        t.begin().unwrap();
        assert!(t.begin().unwrap_err().to_string().contains("commit or abort"));
        assert!(t.start_init().is_err());
        t.check_send().unwrap();
    }

    #[test]
    fn partitions_are_added_before_their_batches_go() {
        let mut t = ready();
        t.begin().unwrap();
        t.record(&tp(0));
        t.record(&tp(1));
        assert!(!t.may_send(&tp(0)));
        let pending = t.take_pending().unwrap();
        assert_eq!(pending, vec![tp(0), tp(1)]);
        t.record(&tp(2));
        assert!(t.take_pending().is_none(), "one add at a time");
        assert!(!t.needs_end());
        t.add_done(pending, None);
        assert!(t.may_send(&tp(0)) && t.may_send(&tp(1)) && !t.may_send(&tp(2)));
        assert!(t.needs_end());
        t.record(&tp(0));
        assert_eq!(t.take_pending().unwrap(), vec![tp(2)], "added partitions are not added again");
        t.add_done(vec![tp(2)], None);
        t.start_commit().unwrap();
        assert!(t.may_send(&tp(2)), "a commit flushes what is queued");
        assert!(t.check_send().is_err(), "no new records while committing");
        t.ended();
        assert!(matches!(t.phase(), Phase::Ready));
        assert!(!t.may_send(&tp(0)) && !t.needs_end());
        t.begin().unwrap();
        t.record(&tp(0));
        assert_eq!(t.take_pending().unwrap(), vec![tp(0)], "each transaction adds its partitions");
    }

    #[test]
    fn a_failure_makes_the_transaction_abortable_only() {
        let mut t = ready();
        t.begin().unwrap();
        t.fail(&broker(ResponseError::TopicAuthorizationFailed));
        assert!(t.check_send().unwrap_err().to_string().contains("abort_transaction"));
        assert!(t.start_commit().unwrap_err().to_string().contains("abort_transaction"));
        assert!(matches!(t.sweep_error(), Some(Error::TransactionAborted(_))));
        t.start_abort().unwrap();
        t.ended();
        t.begin().unwrap();
    }

    #[test]
    fn fencing_is_final() {
        for code in [ResponseError::ProducerFenced, ResponseError::InvalidProducerEpoch] {
            let mut t = ready();
            t.begin().unwrap();
            t.fail(&broker(code));
            for e in [t.check_send().unwrap_err(), t.start_abort().unwrap_err(), t.start_commit().unwrap_err(), t.begin().unwrap_err()] {
                assert!(matches!(&e, Error::Fenced { transactional_id } if transactional_id == "tx"), "{e}");
                assert!(e.to_string().contains("another producer with the same transactional.id took over"), "{e}");
            }
            t.fail(&broker(ResponseError::TopicAuthorizationFailed));
            assert!(matches!(t.sweep_error(), Some(Error::Fenced { .. })));
        }
        let mut t = Txn::new("tx");
        t.start_init().unwrap();
        t.init_done(&Err(broker(ResponseError::TransactionalIdAuthorizationFailed)));
        assert!(matches!(t.start_init(), Err(Error::Broker { error: ResponseError::TransactionalIdAuthorizationFailed, .. })));
    }

    #[test]
    fn a_timed_out_commit_is_completed_not_aborted() {
        let mut t = ready();
        t.begin().unwrap();
        t.start_commit().unwrap();
        t.end_failed(&Error::Timeout { what: "EndTxn".into(), after: std::time::Duration::from_secs(1) });
        assert!(t.start_abort().unwrap_err().to_string().contains("commit_transaction again"));
        t.start_commit().unwrap();
        t.end_failed(&broker(ResponseError::InvalidTxnState));
        t.start_abort().unwrap();
    }

    #[test]
    fn a_failed_init_can_be_retried() {
        let mut t = Txn::new("tx");
        t.start_init().unwrap();
        t.init_done(&Err(broker(ResponseError::InvalidTransactionTimeout)));
        assert!(matches!(t.phase(), Phase::Uninitialized));
        t.start_init().unwrap();
    }
}
