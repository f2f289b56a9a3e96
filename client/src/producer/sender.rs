//! The background sender: drains ready batches, sends one Produce request per leader
//! (bounded by `max.in.flight.requests.per.connection`), completes delivery futures, and
//! puts retriable failures back into their partition's queue in creation (= sequence)
//! order. For an idempotent producer it also fetches the producer id before the first
//! send and bumps the epoch after a sequence gap; for a transactional one it registers
//! partitions with the coordinator and fails queued records of a failed or aborted
//! transaction.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::produce_response::PartitionProduceResponse;
use kafka_protocol::messages::{ProduceRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};
use kafka_protocol::ResponseError;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

use super::accumulator::{Accumulator, Batch, Readiness};
use super::idempotence::ProducerIds;
use super::transaction::fatal_error;
use super::{coordinator, transactional, Acks, Inner, RecordMetadata, Session};
use crate::error::{check, Error, Result};

/// Drained batches for one broker, with the in-flight permit they hold.
type Work = (Vec<Batch>, OwnedSemaphorePermit);

pub(crate) async fn run(inner: Arc<Inner>) {
    let mut in_flight: HashMap<i32, Arc<Semaphore>> = HashMap::new();
    // One writer task per broker writes requests in drain order: order on the socket is
    // order in the log.
    let mut writers: HashMap<i32, mpsc::UnboundedSender<Work>> = HashMap::new();
    let mut last_refresh = Instant::now() - Duration::from_secs(3600);
    let transactional = inner.config.transactional_id.is_some();
    let mut first_round = true;
    loop {
        let now = Instant::now();
        let md = inner.cluster.metadata();
        let rules = Readiness {
            linger: inner.config.linger,
            batch_size: inner.config.batch_size,
            flushing: inner.flushing.load(Ordering::Acquire) > 0,
        };
        let mut permits: HashMap<i32, OwnedSemaphorePermit> = HashMap::new();
        let mut failed: Vec<(Batch, Error)> = Vec::new();
        let (ready, next, missing_leader, fetch_ids, add) = {
            let mut accum = inner.accum.lock().unwrap();
            let mut guard = inner.session.lock().unwrap();
            let session = &mut *guard;
            failed.extend(sweep(&mut accum, session));
            for batch in accum.expire(now, inner.config.delivery_timeout) {
                let what = format!("delivery of {} record(s) to {}-{}", batch.records.len(), batch.topic, batch.partition);
                let e = Error::Timeout { what, after: inner.config.delivery_timeout };
                session.seqs.on_fail(&batch, false);
                if let Some(txn) = session.txn.as_mut() {
                    txn.fail(&e);
                }
                failed.push((batch, e));
            }
            // An idempotent (not transactional) producer gets its id before its first
            // send, and a new epoch once nothing of the old one is on the wire.
            let fetch_ids = !transactional
                && ((session.seqs.needs_ids() && (first_round || !accum.is_empty())) || session.seqs.may_bump());
            let fetch_ids = fetch_ids.then(|| {
                session.seqs.fetching_ids = true;
                session.seqs.ids()
            });
            let add = session.txn.as_mut().and_then(|t| t.take_pending());
            let Session { seqs, txn } = &*session;
            let (mut ready, next, missing) = accum.drain(
                now,
                &rules,
                inner.config.max_request_size,
                |t, p| md.leader(t, p),
                |node| {
                    if permits.contains_key(&node) {
                        return true;
                    }
                    let sem = in_flight.entry(node).or_insert_with(|| Arc::new(Semaphore::new(inner.config.max_in_flight)));
                    match sem.clone().try_acquire_owned() {
                        Ok(p) => {
                            permits.insert(node, p);
                            true
                        }
                        Err(_) => false,
                    }
                },
                |batch| txn.as_ref().is_none_or(|t| t.may_send(&(batch.topic.clone(), batch.partition))) && seqs.may_drain(batch),
            );
            for batch in ready.values_mut().flatten() {
                session.seqs.on_drain(batch);
            }
            (ready, next, missing, fetch_ids, add)
        };
        first_round = false;
        for (batch, e) in failed {
            fail_batch(&inner, batch, e);
        }
        if let Some(current) = fetch_ids {
            tokio::spawn(fetch_producer_id(inner.clone(), current));
        }
        if let Some(partitions) = add {
            tokio::spawn(transactional::add_partitions(inner.clone(), partitions));
        }
        for (node, batches) in ready {
            let permit = permits.remove(&node).expect("a permit was taken for every drained leader");
            let writer = writers.entry(node).or_insert_with(|| {
                let (tx, rx) = mpsc::unbounded_channel();
                tokio::spawn(node_writer(inner.clone(), node, rx));
                tx
            });
            // The writer only stops when the producer's Inner is gone; then so are we.
            let _ = writer.send((batches, permit));
        }
        if (missing_leader || inner.cluster.is_stale()) && last_refresh.elapsed() >= inner.config.common.retry_backoff {
            last_refresh = Instant::now();
            let inner = inner.clone();
            tokio::spawn(async move {
                let topics: Vec<String> = inner.cluster.metadata().topics.keys().cloned().collect();
                if let Err(e) = inner.cluster.refresh(Some(&topics), false).await {
                    tracing::debug!(error = %e, "producer metadata refresh failed");
                }
                inner.wake.notify_one();
            });
        }
        let wait = match next {
            Some(at) => at.saturating_duration_since(Instant::now()),
            None if missing_leader => inner.config.common.retry_backoff,
            None => Duration::from_secs(1),
        };
        tokio::select! {
            _ = inner.wake.notified() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// InitProducerId for an idempotent producer, at any broker: a first id, or (`current`)
/// a new epoch after a sequence gap. Queued batches wait meanwhile.
async fn fetch_producer_id(inner: Arc<Inner>, current: Option<ProducerIds>) {
    let result = async {
        let conn = inner.cluster.any().await?;
        coordinator::init_producer_id(&conn, None, inner.config.transaction_timeout, current).await
    }
    .await;
    match result {
        Ok(ids) => {
            tracing::debug!(producer_id = ids.id, epoch = ids.epoch, "idempotent producer id");
            inner.session.lock().unwrap().seqs.reset(ids);
        }
        Err(e) => {
            let pause = if e.is_retriable() {
                tracing::debug!(error = %e, "cannot get a producer id yet");
                inner.config.common.retry_backoff
            } else {
                // Nothing can be sent without an id: the queued records get the reason
                // now rather than a delivery timeout later.
                tracing::warn!(error = %e, "cannot get a producer id for the idempotent producer");
                let queued = if current.is_none() { inner.accum.lock().unwrap().take_all() } else { Vec::new() };
                for batch in queued {
                    fail_batch(&inner, batch, e.clone());
                }
                Duration::from_secs(1)
            };
            tokio::time::sleep(pause).await;
        }
    }
    inner.session.lock().unwrap().seqs.fetching_ids = false;
    inner.wake.notify_one();
}

/// Takes the queued records a transaction that is aborting or failed can no longer send,
/// with the error each gets.
pub(crate) fn sweep(accum: &mut Accumulator, session: &mut Session) -> Vec<(Batch, Error)> {
    let Some(e) = session.txn.as_ref().and_then(|t| t.sweep_error()) else { return Vec::new() };
    let swept = accum.take_all();
    for batch in &swept {
        session.seqs.on_fail(batch, false);
    }
    swept.into_iter().map(|b| (b, e.clone())).collect()
}

/// Completes every record of a batch with `error`.
pub(crate) fn fail_batch(inner: &Inner, batch: Batch, error: Error) {
    for r in batch.records {
        inner.finish(r, Err(error.clone()));
    }
}

fn encode(batch: &Batch, compression: kafka_protocol::records::Compression, transactional: bool) -> Result<bytes::Bytes> {
    let (producer_id, producer_epoch) = batch.stamp.map_or((-1, -1), |s| (s.ids.id, s.ids.epoch));
    let records: Vec<Record> = batch
        .records
        .iter()
        .enumerate()
        .map(|(i, r)| Record {
            transactional,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id,
            producer_epoch,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // The encoder keeps records in one batch while offset - sequence is constant
            // (wrapping), and writes the first record's sequence as the base (-1: none).
            sequence: match batch.stamp {
                Some(s) => s.base_sequence.wrapping_add(i as i32),
                None => i as i32 - 1,
            },
            timestamp: r.timestamp,
            key: r.key.clone(),
            value: r.value.clone(),
            headers: r.headers.iter().map(|(k, v)| (StrBytes::from_string(k.clone()), v.clone())).collect(),
        })
        .collect();
    let mut buf = BytesMut::with_capacity(batch.bytes + super::BATCH_OVERHEAD);
    RecordBatchEncoder::encode(&mut buf, &records, &RecordEncodeOptions { version: 2, compression })
        .map_err(|e| Error::State(format!("cannot encode a batch for {}-{}: {e}", batch.topic, batch.partition)))?;
    Ok(buf.freeze())
}

/// Whether a partition-level error means the client's metadata is stale.
fn needs_metadata(e: ResponseError) -> bool {
    matches!(
        e,
        ResponseError::NotLeaderOrFollower
            | ResponseError::UnknownTopicOrPartition
            | ResponseError::LeaderNotAvailable
            | ResponseError::FencedLeaderEpoch
            | ResponseError::KafkaStorageError
            | ResponseError::NotEnoughReplicas
    )
}

async fn node_writer(inner: Arc<Inner>, node: i32, mut work: mpsc::UnboundedReceiver<Work>) {
    while let Some((batches, permit)) = work.recv().await {
        send_request(&inner, node, batches, permit).await;
    }
}

/// Encodes and writes one Produce request; the answer is awaited on its own task (holding
/// the in-flight permit), so the next request can be written meanwhile.
async fn send_request(inner: &Arc<Inner>, node: i32, batches: Vec<Batch>, permit: OwnedSemaphorePermit) {
    let config = &inner.config;
    let transactional = config.transactional_id.is_some();
    let mut topics: Vec<TopicProduceData> = Vec::new();
    let mut sendable: Vec<Batch> = Vec::with_capacity(batches.len());
    let mut unencodable: Vec<(Batch, Error)> = Vec::new();
    for batch in batches {
        match encode(&batch, config.compression, transactional) {
            Ok(bytes) => {
                let pd = PartitionProduceData::default().with_index(batch.partition).with_records(Some(bytes));
                match topics.iter_mut().find(|t| *t.name.0 == *batch.topic) {
                    Some(t) => t.partition_data.push(pd),
                    None => topics.push(
                        TopicProduceData::default().with_name(TopicName(StrBytes::from_string(batch.topic.to_string()))).with_partition_data(vec![pd]),
                    ),
                }
                sendable.push(batch);
            }
            Err(e) => unencodable.push((batch, e)),
        }
    }
    if !unencodable.is_empty() {
        settle(inner, unencodable.into_iter().map(|(b, e)| (b, Outcome::Failed(e))));
    }
    if sendable.is_empty() {
        return;
    }
    let timeout_ms = config.common.request_timeout.as_millis().min(i32::MAX as u128) as i32;
    let mut req = ProduceRequest::default().with_acks(config.acks.wire()).with_timeout_ms(timeout_ms).with_topic_data(topics);
    if let Some(id) = &config.transactional_id {
        req = req.with_transactional_id(Some(kafka_protocol::messages::TransactionalId(StrBytes::from_string(id.clone()))));
    }
    let written = async {
        let conn = inner.cluster.broker(node).await?;
        let version = conn.version::<ProduceRequest>(3, 9)?;
        if config.acks == Acks::None {
            conn.send_oneway(&req, version).await?;
            Ok(None)
        } else {
            conn.start(&req, version).await.map(Some)
        }
    }
    .await;
    match written {
        Err(e) => on_request_error(inner, node, sendable, e),
        Ok(None) => {
            settle(inner, sendable.into_iter().map(|b| (b, Outcome::Acked { base_offset: -1, log_append_time: -1 })));
        }
        Ok(Some(response)) => {
            let inner = inner.clone();
            tokio::spawn(async move {
                let _permit = permit;
                match response.await {
                    Ok(r) => on_response(&inner, node, sendable, r),
                    Err(e) => on_request_error(&inner, node, sendable, e),
                }
            });
        }
    }
}

/// How a batch that was on the wire came back.
enum Outcome {
    /// Written (or a duplicate of a batch already written).
    Acked { base_offset: i64, log_append_time: i64 },
    /// An error; `refresh` when it says the metadata is stale.
    Error { error: Error, refresh: bool },
    /// Failed for good, no retry.
    Failed(Error),
}

fn on_request_error(inner: &Inner, node: i32, batches: Vec<Batch>, e: Error) {
    if matches!(e, Error::Disconnected { .. } | Error::Connect { .. } | Error::Timeout { .. }) {
        inner.cluster.drop_connection(node);
    }
    settle(inner, batches.into_iter().map(|b| (b, Outcome::Error { error: e.clone(), refresh: true })));
}

fn on_response(inner: &Inner, node: i32, sendable: Vec<Batch>, response: kafka_protocol::messages::ProduceResponse) {
    let mut by_partition: HashMap<(String, i32), PartitionProduceResponse> = HashMap::new();
    for t in response.responses {
        for p in t.partition_responses {
            by_partition.insert((t.name.0.to_string(), p.index), p);
        }
    }
    let outcomes = sendable.into_iter().map(|batch| {
        let key = (batch.topic.to_string(), batch.partition);
        let Some(p) = by_partition.remove(&key) else {
            let e = Error::Protocol { addr: format!("broker {node}"), reason: format!("no answer for {}-{}", key.0, key.1) };
            return (batch, Outcome::Error { error: e, refresh: false });
        };
        // A duplicate means an earlier attempt was written: success.
        let code = if p.error_code == ResponseError::DuplicateSequenceNumber.code() { 0 } else { p.error_code };
        let outcome = match check(code, p.error_message.as_ref(), || format!("produce to {}-{}", key.0, key.1)) {
            Ok(()) => Outcome::Acked { base_offset: p.base_offset, log_append_time: p.log_append_time_ms },
            Err(e) => {
                let refresh = e.kafka_error().is_some_and(needs_metadata);
                Outcome::Error { error: e, refresh }
            }
        };
        (batch, outcome)
    });
    let outcomes: Vec<(Batch, Outcome)> = outcomes.collect();
    settle(inner, outcomes);
}

/// Records what came back for batches that were on the wire: acknowledges, requeues or
/// fails each (under the locks, so the books and the queues agree), then completes the
/// records and wakes the sender.
fn settle(inner: &Inner, outcomes: impl IntoIterator<Item = (Batch, Outcome)>) {
    let mut acked: Vec<(Batch, i64, i64)> = Vec::new();
    let mut failed: Vec<(Batch, Error)> = Vec::new();
    let mut refresh: Vec<String> = Vec::new();
    {
        let mut accum = inner.accum.lock().unwrap();
        let mut session = inner.session.lock().unwrap();
        for (batch, outcome) in outcomes {
            match outcome {
                Outcome::Acked { base_offset, log_append_time } => {
                    session.seqs.on_ack(&batch);
                    acked.push((batch, base_offset, log_append_time));
                }
                Outcome::Error { error, refresh: stale } => {
                    if stale && !refresh.iter().any(|t| **t == *batch.topic) {
                        refresh.push(batch.topic.to_string());
                    }
                    if let Some(f) = retry_or_fail(inner, &mut accum, &mut session, batch, error) {
                        failed.push(f);
                    }
                }
                Outcome::Failed(error) => failed.push(fail_for_good(&mut session, batch, error, true)),
            }
        }
    }
    for (batch, base_offset, log_append_time) in acked {
        complete(inner, batch, base_offset, log_append_time);
    }
    for (batch, error) in failed {
        fail_batch(inner, batch, error);
    }
    if !refresh.is_empty() {
        // The next sender round sees a missing leader or stale data and refreshes.
        let cluster = inner.cluster.clone();
        tokio::spawn(async move {
            let _ = cluster.refresh(Some(&refresh), false).await;
        });
    }
    inner.wake.notify_one();
}

fn complete(inner: &Inner, batch: Batch, base_offset: i64, log_append_time: i64) {
    let topic = batch.topic.to_string();
    for (i, r) in batch.records.into_iter().enumerate() {
        let meta = RecordMetadata {
            topic: topic.clone(),
            partition: batch.partition,
            offset: if base_offset < 0 { -1 } else { base_offset + i as i64 },
            timestamp: if log_append_time >= 0 { log_append_time } else { r.timestamp },
        };
        inner.finish(r, Ok(meta));
    }
}

/// Books a batch that failed for good: its sequence is a gap, and in a transaction the
/// failure fails the transaction (or the producer, when fenced).
fn fail_for_good(session: &mut Session, batch: Batch, error: Error, on_wire: bool) -> (Batch, Error) {
    session.seqs.on_fail(&batch, on_wire);
    let error = match session.txn.as_mut() {
        Some(txn) => {
            txn.fail(&error);
            fatal_error(&error, &txn.id).unwrap_or(error)
        }
        None => error,
    };
    (batch, error)
}

/// Requeues a batch that may succeed on a retry (idempotence adds cases, see
/// `Sequences::retriable`), else returns it to be failed.
fn retry_or_fail(inner: &Inner, accum: &mut Accumulator, session: &mut Session, mut batch: Batch, error: Error) -> Option<(Batch, Error)> {
    let config = &inner.config;
    let transactional = session.txn.is_some();
    let retriable = error.is_retriable() || session.seqs.retriable(&batch, &error, transactional);
    let within_deadline = batch.created.elapsed() + config.common.retry_backoff < config.delivery_timeout;
    if retriable && batch.attempts < config.retries && within_deadline {
        session.seqs.on_retry(&batch);
        batch.attempts += 1;
        let backoff = config.common.retry_backoff * batch.attempts.min(10);
        batch.retry_at = Some(Instant::now() + backoff.min(Duration::from_secs(1)));
        tracing::debug!(topic = %batch.topic, partition = batch.partition, attempt = batch.attempts, %error, "retrying batch");
        accum.requeue(batch);
        None
    } else {
        Some(fail_for_good(session, batch, error, true))
    }
}
