//! The transactional producer's calls (KIP-98, KIP-447), as the Java client makes them:
//! `init_transactions` (FindCoordinator + InitProducerId, which fences older producers of
//! the same `transactional.id`), `begin_transaction`, `send_offsets_to_transaction`
//! (AddOffsetsToTxn, then TxnOffsetCommit at the group coordinator), `commit_transaction`
//! (flush, then EndTxn) and `abort_transaction` (queued records fail, in-flight ones
//! finish, EndTxn; a new epoch when a record's sequence was lost). The sender registers
//! partitions with [`add_partitions`]. Each call is bounded by `max.block.ms` and retries
//! while the coordinator moves, loads or is still finishing an earlier transaction.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kafka_protocol::ResponseError;

use super::coordinator::{self, retriable};
use super::idempotence::ProducerIds;
use super::transaction::{fatal_error, Phase, Tp, Txn};
use super::{sender, Inner, Producer};
use crate::consumer::{GroupMetadata, TopicPartition};
use crate::error::{Error, Result};
use crate::net::CachedCoordinator;

/// Pause before adding partitions again while the previous transaction completes.
const CONCURRENT_TRANSACTIONS_BACKOFF: Duration = Duration::from_millis(20);

impl Producer {
    fn transactional_id(&self) -> Result<&str> {
        self.inner
            .config
            .transactional_id
            .as_deref()
            .ok_or_else(|| Error::State("transactions need a `transactional.id`; set it in the producer config".into()))
    }

    /// Registers `transactional.id` with its coordinator and gets the producer id and
    /// epoch: a transaction an older producer with the same id left open is aborted, and
    /// that producer is fenced. Call once, before the first `begin_transaction`.
    pub async fn init_transactions(&self) -> Result<()> {
        let inner = &*self.inner;
        let id = self.transactional_id()?;
        let _call = inner.txn_calls.lock().await;
        inner.with_txn(|t| t.start_init())?;
        let deadline = Instant::now() + inner.config.max_block;
        let timeout = inner.config.transaction_timeout;
        let result = retrying(inner, deadline, "init_transactions", &inner.txn_coordinator, || async move {
            let conn = inner.txn_coordinator.connection(&inner.cluster, id).await?;
            coordinator::init_producer_id(&conn, Some(id), timeout, None).await
        })
        .await;
        let mut session = inner.session.lock().unwrap();
        let session = &mut *session;
        let txn = session.txn.as_mut().expect("a transactional producer has a Txn");
        match result {
            Ok(ids) => {
                tracing::debug!(transactional_id = id, producer_id = ids.id, epoch = ids.epoch, "transactions initialized");
                session.seqs.reset(ids);
                txn.init_done(&Ok(()));
                Ok(())
            }
            Err(e) => {
                txn.init_done(&Err(e.clone()));
                Err(fatal_error(&e, id).unwrap_or(e))
            }
        }
    }

    /// Opens a transaction: records sent from now on are committed or aborted together.
    pub fn begin_transaction(&self) -> Result<()> {
        self.transactional_id()?;
        self.inner.with_txn(|t| t.begin())
    }

    /// Makes consumed offsets part of the open transaction (KIP-447): they are committed
    /// for `group` if and only if the transaction commits. `offsets` are the next offsets
    /// to read (as [`crate::Consumer::positions`] gives them); `group` is the consumer's
    /// [`crate::Consumer::group_metadata`], so a member fenced by a rebalance cannot commit.
    pub async fn send_offsets_to_transaction(&self, offsets: &BTreeMap<TopicPartition, i64>, group: &GroupMetadata) -> Result<()> {
        let inner = &*self.inner;
        let id = self.transactional_id()?;
        let _call = inner.txn_calls.lock().await;
        let ids = inner.with_txn_ids(|t| t.check_offsets())?;
        if offsets.is_empty() {
            return Ok(());
        }
        let deadline = Instant::now() + inner.config.max_block;
        let group_id = group.group_id.as_str();
        let result = async {
            retrying(inner, deadline, "send_offsets_to_transaction (AddOffsetsToTxn)", &inner.txn_coordinator, || async move {
                let conn = inner.txn_coordinator.connection(&inner.cluster, id).await?;
                coordinator::add_offsets(&conn, id, ids, group_id).await
            })
            .await?;
            inner.with_txn(|t| {
                t.offsets_added();
                Ok(())
            })?;
            let group_coordinator = CachedCoordinator::new(0);
            let gc = &group_coordinator;
            retrying(inner, deadline, "send_offsets_to_transaction (TxnOffsetCommit)", gc, || async move {
                let conn = gc.connection(&inner.cluster, group_id).await?;
                coordinator::txn_offset_commit(&conn, id, ids, group, offsets).await
            })
            .await
        }
        .await;
        result.map_err(|e| inner.txn_failed(e))
    }

    /// Sends every record of the transaction, then commits it. If a record failed, the
    /// transaction cannot commit: the error says so and `abort_transaction` is next. A
    /// commit that timed out may be called again to finish.
    pub async fn commit_transaction(&self) -> Result<()> {
        let inner = &*self.inner;
        let id = self.transactional_id()?;
        let _call = inner.txn_calls.lock().await;
        inner.with_txn(|t| t.start_commit())?;
        let deadline = Instant::now() + inner.config.max_block;
        if tokio::time::timeout_at(deadline.into(), self.flush()).await.is_err() {
            return Err(Error::Timeout { what: "sending the transaction's records for commit_transaction".into(), after: inner.config.max_block });
        }
        let (needs_end, ids) = {
            let session = inner.session.lock().unwrap();
            let txn = session.txn.as_ref().expect("a transactional producer has a Txn");
            match txn.phase() {
                Phase::Committing => {}
                Phase::Fatal(e) => return Err(e.clone()),
                Phase::AbortableError(e) => {
                    return Err(Error::State(format!("cannot commit: a record of this transaction failed ({e}); call abort_transaction")))
                }
                other => return Err(Error::State(format!("cannot commit: the transaction is {other:?}"))),
            }
            (txn.needs_end(), session.seqs.ids())
        };
        if let (true, Some(ids)) = (needs_end, ids) {
            let ended = retrying(inner, deadline, "commit_transaction (EndTxn)", &inner.txn_coordinator, || async move {
                let conn = inner.txn_coordinator.connection(&inner.cluster, id).await?;
                coordinator::end_txn(&conn, id, ids, true).await
            })
            .await;
            if let Err(e) = ended {
                return Err(inner.end_failed(e));
            }
        }
        inner.with_txn(|t| {
            t.ended();
            Ok(())
        })
    }

    /// Aborts the transaction: records not sent yet fail with
    /// [`Error::TransactionAborted`], records in flight finish, and the coordinator writes
    /// abort markers (read_committed consumers never see the transaction's records).
    pub async fn abort_transaction(&self) -> Result<()> {
        let inner = &*self.inner;
        let id = self.transactional_id()?;
        let _call = inner.txn_calls.lock().await;
        inner.with_txn(|t| t.start_abort())?;
        let swept = {
            let mut accum = inner.accum.lock().unwrap();
            let mut session = inner.session.lock().unwrap();
            sender::sweep(&mut accum, &mut session)
        };
        for (batch, e) in swept {
            sender::fail_batch(inner, batch, e);
        }
        let deadline = Instant::now() + inner.config.max_block;
        wait_idle(inner, deadline).await?;
        let (needs_end, ids) = {
            let session = inner.session.lock().unwrap();
            (session.txn.as_ref().is_some_and(|t| t.needs_end()), session.seqs.ids())
        };
        let Some(ids) = ids else {
            return Err(Error::State("abort_transaction needs init_transactions first".into()));
        };
        if needs_end {
            let ended = retrying(inner, deadline, "abort_transaction (EndTxn)", &inner.txn_coordinator, || async move {
                let conn = inner.txn_coordinator.connection(&inner.cluster, id).await?;
                coordinator::end_txn(&conn, id, ids, false).await
            })
            .await;
            if let Err(e) = ended {
                return Err(inner.end_failed(e));
            }
            inner.with_txn(|t| {
                t.end_done();
                Ok(())
            })?;
        }
        if inner.session.lock().unwrap().seqs.bump_needed() {
            // A record's sequence was lost: continuing the old epoch would be refused as
            // out of order, so start a new one (KIP-360) with sequences from 0.
            let timeout = inner.config.transaction_timeout;
            let bumped = retrying(inner, deadline, "abort_transaction (new producer epoch)", &inner.txn_coordinator, || async move {
                let conn = inner.txn_coordinator.connection(&inner.cluster, id).await?;
                coordinator::init_producer_id(&conn, Some(id), timeout, Some(ids)).await
            })
            .await;
            match bumped {
                Ok(new) => inner.session.lock().unwrap().seqs.reset(new),
                Err(e) => return Err(inner.end_failed(e)),
            }
        }
        inner.with_txn(|t| {
            t.ended();
            Ok(())
        })
    }
}

impl Inner {
    /// Runs `f` on the transaction state (the producer is transactional).
    fn with_txn<T>(&self, f: impl FnOnce(&mut Txn) -> Result<T>) -> Result<T> {
        let mut session = self.session.lock().unwrap();
        f(session.txn.as_mut().expect("a transactional producer has a Txn"))
    }

    /// Like [`Inner::with_txn`], and returns the producer id and epoch.
    fn with_txn_ids(&self, f: impl FnOnce(&mut Txn) -> Result<()>) -> Result<ProducerIds> {
        let mut session = self.session.lock().unwrap();
        f(session.txn.as_mut().expect("a transactional producer has a Txn"))?;
        session.seqs.ids().ok_or_else(|| Error::State("no producer id: call init_transactions first".into()))
    }

    /// A step of the open transaction failed: the transaction (or, when fenced, the
    /// producer) fails with it. Returns the error for the caller.
    fn txn_failed(&self, e: Error) -> Error {
        let mut session = self.session.lock().unwrap();
        let txn = session.txn.as_mut().expect("a transactional producer has a Txn");
        txn.fail(&e);
        fatal_error(&e, &txn.id).unwrap_or(e)
    }

    /// Ending the transaction failed. Returns the error for the caller.
    fn end_failed(&self, e: Error) -> Error {
        let mut session = self.session.lock().unwrap();
        let txn = session.txn.as_mut().expect("a transactional producer has a Txn");
        txn.end_failed(&e);
        fatal_error(&e, &txn.id).unwrap_or(e)
    }
}

/// Repeats `attempt` until it succeeds, fails for good, or `deadline` passes; errors that
/// say the coordinator moved make `coordinator` find it again.
async fn retrying<T, F, Fut>(inner: &Inner, deadline: Instant, what: &str, coordinator: &CachedCoordinator, mut attempt: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let timeout = |last: Option<&Error>| Error::Timeout {
        what: match last {
            Some(e) => format!("{what} (last error: {e})"),
            None => what.to_string(),
        },
        after: inner.config.max_block,
    };
    loop {
        let e = match tokio::time::timeout_at(deadline.into(), attempt()).await {
            Ok(Ok(v)) => return Ok(v),
            Ok(Err(e)) => e,
            Err(_) => return Err(timeout(None)),
        };
        coordinator.on_error(&e);
        if !retriable(&e) {
            return Err(e);
        }
        let backoff = inner.config.common.retry_backoff;
        if Instant::now() + backoff >= deadline {
            return Err(timeout(Some(&e)));
        }
        tracing::debug!(error = %e, what, "retrying");
        tokio::time::sleep(backoff).await;
    }
}

/// Waits until no record is outstanding and no partition is being added.
async fn wait_idle(inner: &Inner, deadline: Instant) -> Result<()> {
    loop {
        let idle = inner.idle.notified();
        tokio::pin!(idle);
        idle.as_mut().enable();
        let adding = inner.session.lock().unwrap().txn.as_ref().is_some_and(|t| t.adding());
        if inner.outstanding.load(Ordering::Acquire) == 0 && !adding {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(Error::Timeout { what: "waiting for the transaction's records in flight".into(), after: inner.config.max_block });
        }
        // `adding` has no notification of its own: look again shortly.
        tokio::select! {
            _ = idle => {}
            _ = tokio::time::sleep(Duration::from_millis(20)) => {}
        }
    }
}

/// AddPartitionsToTxn for partitions about to get their first batch in the transaction,
/// retried while the coordinator moves or is busy (records wait meanwhile, bounded by
/// `delivery.timeout.ms`). Reports to the transaction state and wakes the sender.
pub(crate) async fn add_partitions(inner: Arc<Inner>, partitions: Vec<Tp>) {
    let inner = &*inner;
    let id = inner.config.transactional_id.as_deref().unwrap_or_default();
    let ids = inner.session.lock().unwrap().seqs.ids();
    let deadline = Instant::now() + inner.config.delivery_timeout;
    let mut todo = partitions;
    let mut added: Vec<Tp> = Vec::new();
    let mut error: Option<Error> = None;
    match ids {
        None => error = Some(Error::State("no producer id: call init_transactions first".into())),
        Some(ids) => loop {
            let result = async {
                let conn = inner.txn_coordinator.connection(&inner.cluster, id).await?;
                coordinator::add_partitions(&conn, id, ids, &todo).await
            }
            .await;
            let mut retry: Vec<Tp> = Vec::new();
            let mut last: Option<Error> = None;
            match result {
                Ok(results) => {
                    for (tp, e) in results {
                        match e {
                            None => added.push(tp),
                            // Not tried because another partition failed.
                            Some(e) if e.kafka_error() == Some(ResponseError::OperationNotAttempted) => retry.push(tp),
                            Some(e) if retriable(&e) => {
                                inner.txn_coordinator.on_error(&e);
                                last = Some(e);
                                retry.push(tp);
                            }
                            Some(e) => {
                                error.get_or_insert(e);
                            }
                        }
                    }
                }
                Err(e) if retriable(&e) => {
                    inner.txn_coordinator.on_error(&e);
                    last = Some(e);
                    retry = std::mem::take(&mut todo);
                }
                Err(e) => error = Some(e),
            }
            todo = retry;
            if error.is_some() || todo.is_empty() {
                break;
            }
            let open = inner.session.lock().unwrap().txn.as_ref().is_some_and(|t| matches!(t.phase(), Phase::InTransaction | Phase::Committing));
            if !open {
                break;
            }
            // The coordinator is still writing the previous transaction's markers: that
            // takes milliseconds, so look again sooner (as the Java client does).
            let busy = last.as_ref().is_some_and(|e| e.kafka_error() == Some(ResponseError::ConcurrentTransactions));
            let backoff = if busy { inner.config.common.retry_backoff.min(CONCURRENT_TRANSACTIONS_BACKOFF) } else { inner.config.common.retry_backoff };
            if Instant::now() + backoff >= deadline {
                let last = last.map(|e| format!(" (last error: {e})")).unwrap_or_default();
                error = Some(Error::Timeout { what: format!("adding partitions to transaction `{id}`{last}"), after: inner.config.delivery_timeout });
                break;
            }
            tokio::time::sleep(backoff).await;
        },
    }
    if let Some(e) = &error {
        tracing::info!(transactional_id = id, error = %e, "cannot add partitions to the transaction");
    }
    inner.session.lock().unwrap().txn.as_mut().expect("a transactional producer has a Txn").add_done(added, error.as_ref());
    inner.wake.notify_one();
}
