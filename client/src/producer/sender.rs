//! The background sender: drains ready batches, sends one Produce request per leader
//! (bounded by `max.in.flight.requests.per.connection`), completes delivery futures, and
//! puts retriable failures back at the front of their partition's queue.

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

use super::accumulator::{Batch, Readiness};
use super::{Acks, Inner, RecordMetadata};
use crate::error::{check, Error, Result};

/// Drained batches for one broker, with the in-flight permit they hold.
type Work = (Vec<Batch>, OwnedSemaphorePermit);

pub(crate) async fn run(inner: Arc<Inner>) {
    let mut in_flight: HashMap<i32, Arc<Semaphore>> = HashMap::new();
    // One writer task per broker writes requests in drain order: order on the socket is
    // order in the log.
    let mut writers: HashMap<i32, mpsc::UnboundedSender<Work>> = HashMap::new();
    let mut last_refresh = Instant::now() - Duration::from_secs(3600);
    loop {
        let now = Instant::now();
        let md = inner.cluster.metadata();
        let rules = Readiness {
            linger: inner.config.linger,
            batch_size: inner.config.batch_size,
            flushing: inner.flushing.load(Ordering::Acquire) > 0,
        };
        let mut permits: HashMap<i32, OwnedSemaphorePermit> = HashMap::new();
        let (ready, next, missing_leader, expired) = {
            let mut accum = inner.accum.lock().unwrap();
            let expired = accum.expire(now, inner.config.delivery_timeout);
            let (ready, next, missing) = accum.drain(
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
            );
            (ready, next, missing, expired)
        };
        for batch in expired {
            let what = format!("delivery of {} record(s) to {}-{}", batch.records.len(), batch.topic, batch.partition);
            fail_batch(&inner, batch, Error::Timeout { what, after: inner.config.delivery_timeout });
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

fn fail_batch(inner: &Inner, batch: Batch, error: Error) {
    for r in batch.records {
        inner.finish(r, Err(error.clone()));
    }
}

fn encode(batch: &Batch, compression: kafka_protocol::records::Compression) -> Result<bytes::Bytes> {
    let records: Vec<Record> = batch
        .records
        .iter()
        .enumerate()
        .map(|(i, r)| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // The encoder keeps records in one batch while offset - sequence is constant.
            sequence: i as i32 - 1,
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
    let mut topics: Vec<TopicProduceData> = Vec::new();
    let mut sendable: Vec<Batch> = Vec::with_capacity(batches.len());
    for batch in batches {
        match encode(&batch, config.compression) {
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
            Err(e) => fail_batch(inner, batch, e),
        }
    }
    if sendable.is_empty() {
        return;
    }
    let timeout_ms = config.common.request_timeout.as_millis().min(i32::MAX as u128) as i32;
    let req = ProduceRequest::default().with_acks(config.acks.wire()).with_timeout_ms(timeout_ms).with_topic_data(topics);
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
            for batch in sendable {
                complete(inner, batch, -1, -1);
            }
            inner.wake.notify_one();
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

fn on_request_error(inner: &Inner, node: i32, batches: Vec<Batch>, e: Error) {
    if matches!(e, Error::Disconnected { .. } | Error::Connect { .. } | Error::Timeout { .. }) {
        inner.cluster.drop_connection(node);
    }
    for batch in batches {
        retry_or_fail(inner, batch, e.clone(), true);
    }
    inner.wake.notify_one();
}

fn on_response(inner: &Inner, node: i32, sendable: Vec<Batch>, response: kafka_protocol::messages::ProduceResponse) {
    let mut by_partition: HashMap<(String, i32), PartitionProduceResponse> = HashMap::new();
    for t in response.responses {
        for p in t.partition_responses {
            by_partition.insert((t.name.0.to_string(), p.index), p);
        }
    }
    for batch in sendable {
        let key = (batch.topic.to_string(), batch.partition);
        let Some(p) = by_partition.remove(&key) else {
            let e = Error::Protocol { addr: format!("broker {node}"), reason: format!("no answer for {}-{}", key.0, key.1) };
            retry_or_fail(inner, batch, e, false);
            continue;
        };
        match check(p.error_code, p.error_message.as_ref(), || format!("produce to {}-{}", key.0, key.1)) {
            Ok(()) => complete(inner, batch, p.base_offset, p.log_append_time_ms),
            Err(e) => {
                let refresh = e.kafka_error().is_some_and(needs_metadata);
                retry_or_fail(inner, batch, e, refresh);
            }
        }
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

fn retry_or_fail(inner: &Inner, mut batch: Batch, error: Error, refresh: bool) {
    let config = &inner.config;
    let within_deadline = batch.created.elapsed() + config.common.retry_backoff < config.delivery_timeout;
    if error.is_retriable() && batch.attempts < config.retries && within_deadline {
        batch.attempts += 1;
        let backoff = config.common.retry_backoff * batch.attempts.min(10);
        batch.retry_at = Some(Instant::now() + backoff.min(Duration::from_secs(1)));
        tracing::debug!(topic = %batch.topic, partition = batch.partition, attempt = batch.attempts, %error, "retrying batch");
        if refresh {
            // The next sender round sees a missing leader or stale data and refreshes.
            let cluster = inner.cluster.clone();
            let topic = batch.topic.to_string();
            tokio::spawn(async move {
                let _ = cluster.refresh(Some(&[topic]), false).await;
            });
        }
        inner.accum.lock().unwrap().requeue(batch);
    } else {
        fail_batch(inner, batch, error);
    }
}
