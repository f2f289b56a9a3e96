//! Fetch (long poll), ListOffsets and OffsetForLeaderEpoch: the read side of the log.
//!
//! Fetch serves stored batch bytes as they are. A request waits until `min_bytes` are
//! available or `max_wait_ms` passes; appends wake waiting fetches through a watch channel
//! subscribed before the first read, so no append between read and wait is missed.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::list_offsets_response::{ListOffsetsPartitionResponse, ListOffsetsTopicResponse};
use kafka_protocol::messages::offset_for_leader_epoch_response::{EpochEndOffset, OffsetForLeaderTopicResult};
use kafka_protocol::messages::*;
use kafka_protocol::records::RecordBatchDecoder;
use kafka_protocol::ResponseError;

use crate::server::BrokerState;
use crate::topics::Topic;

/// The only leader epoch a single node has.
const LEADER_EPOCH: i32 = 0;

struct Wanted {
    topic_name: TopicName,
    topic_id: uuid::Uuid,
    topic: Option<Arc<Topic>>,
    partitions: Vec<(i32, i64, i32, i32)>, // index, fetch offset, max bytes, current leader epoch
}

fn read_all(state: &BrokerState, wanted: &[Wanted], max_bytes: usize, version: i16) -> (Vec<FetchableTopicResponse>, usize) {
    let mut total = 0usize;
    let mut out = Vec::with_capacity(wanted.len());
    let fetch_cap = state.config.int("fetch.max.bytes") as usize;
    let max_bytes = max_bytes.min(fetch_cap);
    for w in wanted {
        let mut t = FetchableTopicResponse::default();
        if version >= 13 {
            t.topic_id = w.topic_id;
        } else {
            t.topic = w.topic_name.clone();
        }
        for &(index, offset, part_max, leader_epoch) in &w.partitions {
            let mut p = PartitionData::default();
            p.partition_index = index;
            p.high_watermark = -1;
            p.last_stable_offset = -1;
            if version >= 5 {
                p.log_start_offset = -1;
            }
            let unknown = if version >= 13 { ResponseError::UnknownTopicId } else { ResponseError::UnknownTopicOrPartition };
            let Some(topic) = &w.topic else {
                p.error_code = unknown.code();
                t.partitions.push(p);
                continue;
            };
            let Some(partition) = topic.partition(index) else {
                p.error_code = ResponseError::UnknownTopicOrPartition.code();
                t.partitions.push(p);
                continue;
            };
            if leader_epoch > LEADER_EPOCH {
                p.error_code = ResponseError::UnknownLeaderEpoch.code();
                t.partitions.push(p);
                continue;
            }
            let log = partition.log.lock().expect("log lock");
            let (start, end) = (log.log_start_offset(), log.log_end_offset());
            p.high_watermark = end;
            p.last_stable_offset = end;
            if version >= 5 {
                p.log_start_offset = start;
            }
            if offset < start || offset > end {
                p.error_code = ResponseError::OffsetOutOfRange.code();
            } else if offset < end {
                let budget = (part_max.max(0) as usize).min(max_bytes.saturating_sub(total));
                // KIP-74: the first batch of the first non-empty partition comes whole.
                match log.read(offset, budget, total == 0) {
                    Ok(bytes) => {
                        total += bytes.len();
                        p.records = Some(Bytes::from(bytes));
                    }
                    Err(e) => {
                        tracing::error!(topic = %topic.name, partition = index, "read failed: {e}");
                        p.error_code = ResponseError::KafkaStorageError.code();
                    }
                }
            }
            if p.records.is_none() {
                p.records = Some(Bytes::new());
            }
            t.partitions.push(p);
        }
        out.push(t);
    }
    (out, total)
}

/// Handles Fetch from consumers (no fetch sessions: every request is a full fetch and the
/// response's session id 0 tells clients so).
pub async fn fetch(state: &BrokerState, req: FetchRequest, version: i16) -> FetchResponse {
    let mut appends = state.topics.subscribe_appends();
    appends.borrow_and_update();
    let wanted: Vec<Wanted> = req
        .topics
        .into_iter()
        .map(|t| {
            let topic = if version >= 13 { state.topics.get_by_id(t.topic_id) } else { state.topics.get(&t.topic.0) };
            Wanted {
                topic_name: t.topic,
                topic_id: t.topic_id,
                topic,
                partitions: t.partitions.iter().map(|p| (p.partition, p.fetch_offset, p.partition_max_bytes, p.current_leader_epoch)).collect(),
            }
        })
        .collect();
    let max_bytes = req.max_bytes.max(0) as usize;
    let min_bytes = req.min_bytes.max(0) as usize;
    let deadline = tokio::time::Instant::now() + Duration::from_millis(req.max_wait_ms.max(0) as u64);
    let mut resp = FetchResponse::default();
    loop {
        let (topics, total) = read_all(state, &wanted, max_bytes, version);
        let has_error = topics.iter().flat_map(|t| &t.partitions).any(|p| p.error_code != 0);
        if total >= min_bytes || has_error || tokio::time::Instant::now() >= deadline {
            resp.responses = topics;
            return resp;
        }
        if tokio::time::timeout_at(deadline, appends.changed()).await.is_err() {
            // Timed out: answer with what is there now.
            resp.responses = read_all(state, &wanted, max_bytes, version).0;
            return resp;
        }
    }
}

fn exact_offset_for_timestamp(batch: Vec<u8>, ts: i64) -> Option<(i64, i64)> {
    let mut b = Bytes::from(batch);
    let set = RecordBatchDecoder::decode(&mut b).ok()?;
    set.records.iter().find(|r| r.timestamp >= ts).map(|r| (r.offset, r.timestamp))
}

/// Handles ListOffsets: earliest (-2), latest (-1), max timestamp (-3), earliest local
/// (-4) or the first offset at or after a timestamp.
pub fn list_offsets(state: &BrokerState, req: ListOffsetsRequest, version: i16) -> ListOffsetsResponse {
    let mut resp = ListOffsetsResponse::default();
    for t in req.topics {
        let topic = state.topics.get(&t.name.0);
        let mut tr = ListOffsetsTopicResponse::default();
        tr.name = t.name.clone();
        for p in t.partitions {
            let mut pr = ListOffsetsPartitionResponse::default();
            pr.partition_index = p.partition_index;
            pr.timestamp = -1;
            pr.offset = -1;
            let Some(partition) = topic.as_ref().and_then(|t| t.partition(p.partition_index)) else {
                pr.error_code = ResponseError::UnknownTopicOrPartition.code();
                tr.partitions.push(pr);
                continue;
            };
            if p.current_leader_epoch > LEADER_EPOCH {
                pr.error_code = ResponseError::UnknownLeaderEpoch.code();
                tr.partitions.push(pr);
                continue;
            }
            let log = partition.log.lock().expect("log lock");
            let found: std::io::Result<Option<(i64, i64)>> = match p.timestamp {
                -2 | -4 => Ok(Some((log.log_start_offset(), -1))),
                -1 => Ok(Some((log.log_end_offset(), -1))),
                -3 => {
                    let max = log.max_timestamp();
                    log.batch_for_timestamp(max).map(|b| {
                        b.and_then(|(bytes, _)| {
                            let mut b = Bytes::from(bytes);
                            let set = RecordBatchDecoder::decode(&mut b).ok()?;
                            set.records.iter().rev().find(|r| r.timestamp == max).map(|r| (r.offset, r.timestamp))
                        })
                    })
                }
                ts if ts >= 0 => log.batch_for_timestamp(ts).map(|b| b.and_then(|(bytes, _)| exact_offset_for_timestamp(bytes, ts))),
                other => {
                    pr.error_code = ResponseError::InvalidRequest.code();
                    tracing::debug!("ListOffsets with unknown special timestamp {other}");
                    Ok(None)
                }
            };
            match found {
                Ok(Some((offset, ts))) => {
                    pr.offset = offset.max(log.log_start_offset());
                    pr.timestamp = ts;
                    if version >= 4 {
                        pr.leader_epoch = LEADER_EPOCH;
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::error!("ListOffsets read failed: {e}");
                    pr.error_code = ResponseError::KafkaStorageError.code();
                }
            }
            tr.partitions.push(pr);
        }
        resp.topics.push(tr);
    }
    resp
}

/// Handles OffsetForLeaderEpoch: epoch 0 is the only epoch and ends at the log end.
pub fn offset_for_leader_epoch(state: &BrokerState, req: OffsetForLeaderEpochRequest) -> OffsetForLeaderEpochResponse {
    let mut resp = OffsetForLeaderEpochResponse::default();
    for t in req.topics {
        let topic = state.topics.get(&t.topic.0);
        let mut tr = OffsetForLeaderTopicResult::default();
        tr.topic = t.topic.clone();
        for p in t.partitions {
            let mut e = EpochEndOffset::default();
            e.partition = p.partition;
            e.leader_epoch = -1;
            e.end_offset = -1;
            match topic.as_ref().and_then(|t| t.partition(p.partition)) {
                None => e.error_code = ResponseError::UnknownTopicOrPartition.code(),
                Some(_) if p.current_leader_epoch > LEADER_EPOCH => e.error_code = ResponseError::UnknownLeaderEpoch.code(),
                Some(part) if p.leader_epoch >= 0 && p.leader_epoch <= LEADER_EPOCH => {
                    e.leader_epoch = LEADER_EPOCH;
                    e.end_offset = part.log.lock().expect("log lock").log_end_offset();
                }
                Some(_) => {}
            }
            tr.partitions.push(e);
        }
        resp.topics.push(tr);
    }
    resp
}
