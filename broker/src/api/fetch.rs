//! Fetch (long poll, from consumers and from follower replicas), ListOffsets and
//! OffsetForLeaderEpoch: the read side of the log, served by partition leaders.
//!
//! Consumers read up to the high watermark; followers read up to the log end and report
//! their progress with each fetch offset, which is what moves the high watermark. A
//! request waits until `min_bytes` are available or `max_wait_ms` passes; appends and
//! high-watermark moves wake waiting fetches through a watch channel subscribed before the
//! first read, so no change between read and wait is missed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::fetch_response::{AbortedTransaction, FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::list_offsets_response::{ListOffsetsPartitionResponse, ListOffsetsTopicResponse};
use kafka_protocol::messages::offset_for_leader_epoch_response::{EpochEndOffset, OffsetForLeaderTopicResult};
use kafka_protocol::messages::*;
use kafka_protocol::records::RecordBatchDecoder;
use kafka_protocol::ResponseError;

use super::{check_epoch, leader_partition};
use crate::server::BrokerState;
use crate::topics::Partition;

/// Index, fetch offset, max bytes, and the partition or why it cannot be read.
type WantedPartition = (i32, i64, i32, Result<Arc<Partition>, ResponseError>);

struct Wanted {
    topic_name: TopicName,
    topic_id: uuid::Uuid,
    partitions: Vec<WantedPartition>,
}

/// The last stable offset of a partition: the high watermark, or the first offset of the
/// oldest open transaction when that is lower.
pub(crate) fn last_stable_offset(log: &crate::log::PartitionLog, hw: i64) -> i64 {
    log.first_unstable_offset().map_or(hw, |f| f.min(hw))
}

fn read_all(state: &BrokerState, wanted: &[Wanted], max_bytes: usize, version: i16, follower: bool, read_committed: bool) -> (Vec<FetchableTopicResponse>, usize) {
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
        for (index, offset, part_max, partition) in &w.partitions {
            let mut p = PartitionData::default();
            p.partition_index = *index;
            p.high_watermark = -1;
            p.last_stable_offset = -1;
            if version >= 5 {
                p.log_start_offset = -1;
            }
            let partition = match partition {
                Ok(p) => p,
                Err(e) => {
                    p.error_code = e.code();
                    t.partitions.push(p);
                    continue;
                }
            };
            let log = partition.log.lock().expect("log lock");
            let (start, end, hw) = (log.log_start_offset(), log.log_end_offset(), partition.high_watermark());
            let lso = last_stable_offset(&log, hw);
            let limit = match (follower, read_committed) {
                (true, _) => end,
                (false, true) => lso,
                (false, false) => hw,
            };
            p.high_watermark = hw;
            p.last_stable_offset = lso;
            if version >= 5 {
                p.log_start_offset = start;
            }
            if *offset < start || *offset > end {
                p.error_code = ResponseError::OffsetOutOfRange.code();
            } else if *offset < limit {
                let budget = ((*part_max).max(0) as usize).min(max_bytes.saturating_sub(total));
                // KIP-74: the first batch of the first non-empty partition comes whole.
                match log.read_upto(*offset, limit, budget, total == 0) {
                    Ok(bytes) => {
                        total += bytes.len();
                        p.records = Some(Bytes::from(bytes));
                        if read_committed {
                            let aborted = log.aborted_between(*offset, limit);
                            p.aborted_transactions = Some(
                                aborted
                                    .into_iter()
                                    .map(|a| {
                                        let mut t = AbortedTransaction::default();
                                        t.producer_id = ProducerId(a.producer_id);
                                        t.first_offset = a.first_offset;
                                        t
                                    })
                                    .collect(),
                            );
                        }
                    }
                    Err(e) => {
                        tracing::error!(partition = %partition.name(), "read failed: {e}");
                        p.error_code = ResponseError::KafkaStorageError.code();
                    }
                }
            }
            if p.records.is_none() {
                p.records = Some(Bytes::new());
            }
            if read_committed && p.aborted_transactions.is_none() {
                p.aborted_transactions = Some(Vec::new());
            }
            t.partitions.push(p);
        }
        out.push(t);
    }
    (out, total)
}

/// Handles Fetch (no fetch sessions: every request is a full fetch and the response's
/// session id 0 tells clients so).
pub async fn fetch(state: &Arc<BrokerState>, req: FetchRequest, version: i16) -> FetchResponse {
    let mut appends = state.topics.subscribe_appends();
    appends.borrow_and_update();
    let replica_id = if version >= 15 { req.replica_state.replica_id.0 } else { req.replica_id.0 };
    let follower = replica_id >= 0;
    let read_committed = !follower && req.isolation_level == 1;
    let image = state.image();
    let now = Instant::now();
    let mut wanted = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let name = if version >= 13 { image.topic_by_id(t.topic_id).map(|t| t.name.clone()) } else { Some(t.topic.0.to_string()) };
        let mut parts = Vec::with_capacity(t.partitions.len());
        for fp in &t.partitions {
            let resolved = match &name {
                None => Err(ResponseError::UnknownTopicId),
                Some(n) => leader_partition(state, n, fp.partition).and_then(|p| check_epoch(&p, fp.current_leader_epoch).map(|_| p)),
            };
            if let (true, Ok(p)) = (follower, &resolved) {
                // The fetch offset is the follower's log end: its progress report.
                let leo = p.log.lock().expect("log lock").log_end_offset();
                let (moved, expand) = p.replica.lock().expect("replica lock").on_follower_fetch(replica_id, fp.fetch_offset, leo, now);
                if moved {
                    state.topics.notify_append();
                }
                // A fenced broker cannot join the ISR; asking would only be refused.
                if let Some(isr) = expand.filter(|_| image.is_live(replica_id)) {
                    tracing::info!(partition = %p.name(), follower = replica_id, "follower caught up; adding it to the ISR");
                    state.propose_isr(p, isr);
                }
            }
            parts.push((fp.partition, fp.fetch_offset, fp.partition_max_bytes, resolved));
        }
        wanted.push(Wanted { topic_name: t.topic, topic_id: t.topic_id, partitions: parts });
    }
    let max_bytes = req.max_bytes.max(0) as usize;
    let min_bytes = req.min_bytes.max(0) as usize;
    let deadline = tokio::time::Instant::now() + Duration::from_millis(req.max_wait_ms.max(0) as u64);
    let mut resp = FetchResponse::default();
    loop {
        let (topics, total) = read_all(state, &wanted, max_bytes, version, follower, read_committed);
        let has_error = topics.iter().flat_map(|t| &t.partitions).any(|p| p.error_code != 0);
        if total >= min_bytes || has_error || tokio::time::Instant::now() >= deadline {
            resp.responses = topics;
            return resp;
        }
        if tokio::time::timeout_at(deadline, appends.changed()).await.is_err() {
            // Timed out: answer with what is there now.
            resp.responses = read_all(state, &wanted, max_bytes, version, follower, read_committed).0;
            return resp;
        }
    }
}

fn exact_offset_for_timestamp(batch: Vec<u8>, ts: i64) -> Option<(i64, i64)> {
    let mut b = Bytes::from(batch);
    let set = RecordBatchDecoder::decode(&mut b).ok()?;
    set.records.iter().find(|r| r.timestamp >= ts).map(|r| (r.offset, r.timestamp))
}

/// Handles ListOffsets on the leader: earliest (-2), latest (-1, the high watermark, or the
/// last stable offset under read_committed), max timestamp (-3), earliest local (-4) or
/// the first offset at or after a timestamp.
pub fn list_offsets(state: &BrokerState, req: ListOffsetsRequest, version: i16) -> ListOffsetsResponse {
    let read_committed = version >= 2 && req.isolation_level == 1;
    let mut resp = ListOffsetsResponse::default();
    for t in req.topics {
        let mut tr = ListOffsetsTopicResponse::default();
        tr.name = t.name.clone();
        for p in t.partitions {
            let mut pr = ListOffsetsPartitionResponse::default();
            pr.partition_index = p.partition_index;
            pr.timestamp = -1;
            pr.offset = -1;
            let partition = match leader_partition(state, &t.name.0, p.partition_index).and_then(|part| check_epoch(&part, p.current_leader_epoch).map(|_| part)) {
                Ok(part) => part,
                Err(e) => {
                    pr.error_code = e.code();
                    tr.partitions.push(pr);
                    continue;
                }
            };
            let log = partition.log.lock().expect("log lock");
            let (hw, epoch) = {
                let r = partition.replica.lock().expect("replica lock");
                (r.hw, r.leader_epoch)
            };
            let hw = if read_committed { last_stable_offset(&log, hw) } else { hw };
            let found: std::io::Result<Option<(i64, i64)>> = match p.timestamp {
                -2 | -4 => Ok(Some((log.log_start_offset(), -1))),
                -1 => Ok(Some((hw, -1))),
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
                Ok(Some((offset, ts))) if offset <= hw => {
                    pr.offset = offset.max(log.log_start_offset());
                    pr.timestamp = ts;
                    if version >= 4 {
                        pr.leader_epoch = epoch;
                    }
                }
                Ok(_) => {}
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

/// Handles OffsetForLeaderEpoch on the leader: where the requested epoch ends in its log
/// (the largest epoch at or below it, and the start of the next one or the log end).
pub fn offset_for_leader_epoch(state: &BrokerState, req: OffsetForLeaderEpochRequest) -> OffsetForLeaderEpochResponse {
    let mut resp = OffsetForLeaderEpochResponse::default();
    for t in req.topics {
        let mut tr = OffsetForLeaderTopicResult::default();
        tr.topic = t.topic.clone();
        for p in t.partitions {
            let mut e = EpochEndOffset::default();
            e.partition = p.partition;
            e.leader_epoch = -1;
            e.end_offset = -1;
            match leader_partition(state, &t.topic.0, p.partition).and_then(|part| check_epoch(&part, p.current_leader_epoch).map(|_| part)) {
                Err(code) => e.error_code = code.code(),
                Ok(part) => {
                    if let Some((epoch, end)) = part.log.lock().expect("log lock").end_offset_for_epoch(p.leader_epoch) {
                        e.leader_epoch = epoch;
                        e.end_offset = end;
                    }
                }
            }
            tr.partitions.push(e);
        }
        resp.topics.push(tr);
    }
    resp
}
