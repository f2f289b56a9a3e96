//! The producer: records go into per-partition batches (the accumulator), a background
//! sender drains ready batches to partition leaders, and each record's [`DeliveryFuture`]
//! resolves with its offset or the error that stopped it.
//!
//! ```text
//!  send() ──(buffer.memory permits)──> accumulator: partition -> [batch, batch, ...]
//!                                         │ ready: full, linger.ms passed, or flush;
//!                                         │ allowed: producer id known, sequence order,
//!                                         │ partition added to the transaction
//!                                         v
//!                 sender task ──> one Produce per leader (≤ max.in.flight per broker)
//!                                         │ retriable error: back to the queue, in order
//!                                         v
//!                                  DeliveryFuture per record
//! ```
//!
//! Idempotence (on by default) stamps every batch with a producer id, epoch and sequence
//! numbers (`idempotence.rs` keeps the books), so retries never duplicate or reorder. With a
//! `transactional.id` the producer is transactional: `init_transactions`, then
//! `begin_transaction` / `send` / `send_offsets_to_transaction` / `commit_transaction` or
//! `abort_transaction` (`transaction.rs` is the state machine, `transactional.rs` the calls,
//! `coordinator.rs` the requests).

mod accumulator;
pub mod config;
mod coordinator;
mod idempotence;
pub mod partitioner;
mod sender;
mod transaction;
mod transactional;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::sync::{oneshot, Notify, Semaphore};

use self::accumulator::{Accumulator, Append, PendingRecord};
pub use self::config::{Acks, ProducerConfig};
use self::idempotence::Sequences;
use self::transaction::Txn;
use crate::error::{Error, Result};
use crate::net::{CachedCoordinator, Cluster};

/// A record to send.
#[derive(Debug, Clone, Default)]
pub struct ProducerRecord {
    /// Destination topic.
    pub topic: String,
    /// Explicit partition; `None` lets the partitioner choose.
    pub partition: Option<i32>,
    /// Key (also chooses the partition when `partition` is `None`).
    pub key: Option<Bytes>,
    /// Value; `None` is a tombstone.
    pub value: Option<Bytes>,
    /// Headers, in order.
    pub headers: Vec<(String, Option<Bytes>)>,
    /// Creation timestamp in ms; `None` means now.
    pub timestamp: Option<i64>,
}

impl ProducerRecord {
    /// A keyless record.
    pub fn new(topic: impl Into<String>, value: impl Into<Bytes>) -> Self {
        ProducerRecord { topic: topic.into(), value: Some(value.into()), ..Default::default() }
    }

    /// Builder: sets the key.
    pub fn key(mut self, key: impl Into<Bytes>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Builder: sets the partition.
    pub fn partition(mut self, partition: i32) -> Self {
        self.partition = Some(partition);
        self
    }

    /// Builder: adds a header.
    pub fn header(mut self, key: impl Into<String>, value: impl Into<Bytes>) -> Self {
        self.headers.push((key.into(), Some(value.into())));
        self
    }

    /// Builder: sets the timestamp (ms since the epoch).
    pub fn timestamp(mut self, ms: i64) -> Self {
        self.timestamp = Some(ms);
        self
    }

    /// Bytes this record takes in a batch, close to Kafka's `DefaultRecord.sizeInBytes`.
    pub fn estimated_size(&self) -> usize {
        let headers: usize = self.headers.iter().map(|(k, v)| k.len() + v.as_ref().map_or(0, |v| v.len()) + 10).sum();
        21 + self.key.as_ref().map_or(0, |k| k.len()) + self.value.as_ref().map_or(0, |v| v.len()) + headers
    }
}

/// Where an acknowledged record landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordMetadata {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset (-1 with acks=0).
    pub offset: i64,
    /// The record's timestamp (the broker's when the topic uses LogAppendTime).
    pub timestamp: i64,
}

/// Resolves when the record is acknowledged or has failed for good.
pub struct DeliveryFuture(oneshot::Receiver<Result<RecordMetadata>>);

impl Future for DeliveryFuture {
    type Output = Result<RecordMetadata>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0)
            .poll(cx)
            .map(|r| r.unwrap_or_else(|_| Err(Error::State("the producer was dropped before the record was delivered".into()))))
    }
}

/// Batch overhead in bytes (the v2 batch header).
pub(crate) const BATCH_OVERHEAD: usize = 61;

/// The producer's identity and exactly-once state. Lock order: `accum`, then `session`.
pub(crate) struct Session {
    pub(crate) seqs: Sequences,
    /// `Some` for a transactional producer.
    pub(crate) txn: Option<Txn>,
}

pub(crate) struct Inner {
    pub(crate) cluster: Arc<Cluster>,
    pub(crate) config: ProducerConfig,
    pub(crate) accum: Mutex<Accumulator>,
    pub(crate) session: Mutex<Session>,
    /// The transaction coordinator of `transactional.id`, once found.
    pub(crate) txn_coordinator: CachedCoordinator,
    /// Serializes the transactional calls (init, send_offsets, commit, abort); an async
    /// lock because it is held across their requests.
    pub(crate) txn_calls: tokio::sync::Mutex<()>,
    /// Wakes the sender: a batch became ready, a request finished, or a flush began.
    pub(crate) wake: Notify,
    /// Permits are bytes of `buffer.memory`.
    pub(crate) buffer: Semaphore,
    /// Records accepted but not yet completed.
    pub(crate) outstanding: AtomicUsize,
    /// Notified when `outstanding` drops to zero.
    pub(crate) idle: Notify,
    /// Number of `flush` calls in progress: while non-zero every batch is ready.
    pub(crate) flushing: AtomicUsize,
    pub(crate) closed: AtomicBool,
    sticky: Mutex<HashMap<String, i32>>,
}

/// An async Kafka producer. Cheap to clone; all clones share one sender.
#[derive(Clone)]
pub struct Producer {
    inner: Arc<Inner>,
    _sender: Arc<SenderGuard>,
}

struct SenderGuard(tokio::task::JoinHandle<()>);

impl Drop for SenderGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

impl Producer {
    /// Connects to the cluster and starts the sender. Fails at once when no bootstrap
    /// server answers.
    pub async fn new(config: ProducerConfig) -> Result<Producer> {
        if config.batch_size == 0 {
            return Err(Error::Config("`batch.size` must be at least 1".into()));
        }
        let idempotent = config.idempotence()?;
        let cluster = Cluster::connect(config.common.clone()).await?;
        let session = Session { seqs: Sequences::new(idempotent), txn: config.transactional_id.clone().map(Txn::new) };
        let inner = Arc::new(Inner {
            cluster,
            session: Mutex::new(session),
            txn_coordinator: CachedCoordinator::new(1),
            txn_calls: tokio::sync::Mutex::new(()),
            buffer: Semaphore::new(config.buffer_memory.min(Semaphore::MAX_PERMITS)),
            config,
            accum: Mutex::new(Accumulator::default()),
            wake: Notify::new(),
            outstanding: AtomicUsize::new(0),
            idle: Notify::new(),
            flushing: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
            sticky: Mutex::new(HashMap::new()),
        });
        let task = tokio::spawn(sender::run(inner.clone()));
        Ok(Producer { inner, _sender: Arc::new(SenderGuard(task)) })
    }

    /// Connects using Kafka property pairs.
    pub async fn from_properties<K: AsRef<str>, V: AsRef<str>>(props: impl IntoIterator<Item = (K, V)>) -> Result<Producer> {
        Producer::new(ProducerConfig::from_properties(props)?).await
    }

    /// The configuration in use.
    pub fn config(&self) -> &ProducerConfig {
        &self.inner.config
    }

    /// Queues a record. Waits (up to `max.block.ms`) for topic metadata and for buffer
    /// space; returns a future that resolves when the record is acknowledged. A
    /// transactional producer sends only between `begin_transaction` and commit or abort.
    pub async fn send(&self, record: ProducerRecord) -> Result<DeliveryFuture> {
        let inner = &self.inner;
        if inner.closed.load(Ordering::Acquire) {
            return Err(Error::State("the producer is closed".into()));
        }
        inner.check_send()?;
        let size = record.estimated_size();
        let max = inner.config.max_request_size.min(inner.config.buffer_memory);
        if size + BATCH_OVERHEAD > max {
            return Err(Error::RecordTooLarge { size: size + BATCH_OVERHEAD, max });
        }
        let deadline = Instant::now() + inner.config.max_block;
        let partitions = self.partition_count(&record.topic, deadline).await?;
        if let Some(p) = record.partition {
            if p < 0 || p >= partitions {
                return Err(Error::Broker {
                    error: crate::error::ResponseError::UnknownTopicOrPartition,
                    context: format!("partition {p} of `{}` (it has {partitions})", record.topic),
                });
            }
        }
        let permits = u32::try_from(size).unwrap_or(u32::MAX);
        match tokio::time::timeout_at(deadline.into(), inner.buffer.acquire_many(permits)).await {
            Ok(Ok(p)) => p.forget(),
            Ok(Err(_)) => return Err(Error::State("the producer is closed".into())),
            Err(_) => {
                return Err(Error::Timeout {
                    what: format!("waiting for buffer.memory space ({} bytes in use)", inner.config.buffer_memory),
                    after: inner.config.max_block,
                })
            }
        }
        let (tx, rx) = oneshot::channel();
        let timestamp = record.timestamp.unwrap_or_else(now_ms);
        let topic: Arc<str> = Arc::from(record.topic.as_str());
        let mut pending = PendingRecord { key: record.key, value: record.value, headers: record.headers, timestamp, size, done: tx };
        let ready = {
            let mut accum = inner.accum.lock().unwrap();
            let mut session = inner.session.lock().unwrap();
            // Checked again under the lock: a commit or abort may have begun meanwhile.
            if let Err(e) = session.txn.as_ref().map_or(Ok(()), |t| t.check_send()) {
                inner.buffer.add_permits(permits as usize);
                return Err(e);
            }
            inner.outstanding.fetch_add(1, Ordering::AcqRel);
            let batch_size = inner.config.batch_size;
            let (partition, appended) = match (record.partition, &pending.key) {
                (Some(p), _) => (p, accum.append(&topic, p, pending, batch_size, false)),
                (None, Some(key)) => {
                    let p = partitioner::partition_for_key(key, partitions);
                    (p, accum.append(&topic, p, pending, batch_size, false))
                }
                (None, None) => {
                    let mut sticky = self.inner.sticky.lock().unwrap();
                    let current = *sticky.entry(record.topic.clone()).or_insert_with(|| partitioner::next_sticky(partitions, None));
                    match accum.append(&topic, current, pending, batch_size, true) {
                        Append::NeedsNewBatch(back) => {
                            // KIP-480: a new batch means a new sticky partition.
                            pending = back;
                            let next = partitioner::next_sticky(partitions, Some(current));
                            sticky.insert(record.topic.clone(), next);
                            (next, accum.append(&topic, next, pending, batch_size, false))
                        }
                        other => (current, other),
                    }
                }
            };
            if let Some(txn) = session.txn.as_mut() {
                txn.record(&(topic, partition));
            }
            appended.ready()
        };
        if ready {
            inner.wake.notify_one();
        }
        Ok(DeliveryFuture(rx))
    }

    /// Sends one record and waits for its acknowledgement.
    pub async fn send_and_wait(&self, record: ProducerRecord) -> Result<RecordMetadata> {
        self.send(record).await?.await
    }

    async fn partition_count(&self, topic: &str, deadline: Instant) -> Result<i32> {
        let cluster = &self.inner.cluster;
        let mut backoff = self.inner.config.common.retry_backoff;
        loop {
            let known = cluster.metadata().topics.get(topic).map(|t| t.partitions.len() as i32);
            if let Some(n) = known.filter(|n| *n > 0) {
                return Ok(n);
            }
            let refreshed = tokio::time::timeout_at(deadline.into(), cluster.refresh(Some(&[topic.to_string()]), true)).await;
            match refreshed {
                Ok(Ok(md)) => {
                    if let Some(t) = md.topics.get(topic).filter(|t| !t.partitions.is_empty()) {
                        return Ok(t.partitions.len() as i32);
                    }
                }
                Ok(Err(e)) if !e.is_retriable() => return Err(e),
                Ok(Err(e)) => tracing::debug!(error = %e, "metadata refresh failed"),
                Err(_) => {}
            }
            if Instant::now() + backoff >= deadline {
                return Err(Error::UnknownTopic(topic.to_string()));
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(std::time::Duration::from_secs(1));
        }
    }

    /// Sends every queued record now and waits until each has succeeded or failed.
    pub async fn flush(&self) {
        let inner = &self.inner;
        // Counted down on drop, so a flush abandoned by a timeout does not leave every
        // later batch ready at once.
        struct Flushing<'a>(&'a AtomicUsize);
        impl Drop for Flushing<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::AcqRel);
            }
        }
        inner.flushing.fetch_add(1, Ordering::AcqRel);
        let _flushing = Flushing(&inner.flushing);
        inner.wake.notify_one();
        loop {
            let idle = inner.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            if inner.outstanding.load(Ordering::Acquire) == 0 {
                break;
            }
            idle.await;
        }
    }

    /// Flushes, then refuses further sends.
    pub async fn close(&self) {
        self.flush().await;
        self.inner.closed.store(true, Ordering::Release);
    }

    /// The cluster view this producer uses.
    pub fn cluster(&self) -> &Arc<Cluster> {
        &self.inner.cluster
    }
}

impl Inner {
    /// Refuses a send a transactional producer cannot make now.
    fn check_send(&self) -> Result<()> {
        self.session.lock().unwrap().txn.as_ref().map_or(Ok(()), |t| t.check_send())
    }

    /// Completes one record: returns its buffer space and wakes flushers when idle.
    pub(crate) fn finish(&self, record: PendingRecord, result: Result<RecordMetadata>) {
        self.buffer.add_permits(u32::try_from(record.size).unwrap_or(u32::MAX) as usize);
        let _ = record.done.send(result);
        if self.outstanding.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.idle.notify_waiters();
        }
    }
}
