//! Transaction APIs: AddPartitionsToTxn, AddOffsetsToTxn, EndTxn and TxnOffsetCommit
//! (producers), WriteTxnMarkers (coordinator to partition leaders), and the admin views
//! DescribeTransactions, ListTransactions and DescribeProducers.

use std::sync::Arc;

use kafka_protocol::messages::add_partitions_to_txn_response::{AddPartitionsToTxnPartitionResult, AddPartitionsToTxnTopicResult};
use kafka_protocol::messages::describe_producers_response::{PartitionResponse, ProducerState as WireProducer, TopicResponse};
use kafka_protocol::messages::describe_transactions_response::{TopicData, TransactionState as DescribedTxn};
use kafka_protocol::messages::list_transactions_response::TransactionState as ListedTxn;
use kafka_protocol::messages::txn_offset_commit_response::{TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic};
use kafka_protocol::messages::write_txn_markers_response::{WritableTxnMarkerPartitionResult, WritableTxnMarkerResult, WritableTxnMarkerTopicResult};
use kafka_protocol::messages::*;
use kafka_protocol::ResponseError;

use super::{code, leader_partition, sb};
use crate::group::{offsets_partition, CommittedOffset};
use crate::now_ms;
use crate::server::BrokerState;
use crate::topics::OFFSETS_TOPIC;
use crate::txn::{write_markers_local, TxnMeta};

/// Handles AddPartitionsToTxn v0-3: every partition gets the same outcome, except
/// partitions that do not exist (UNKNOWN_TOPIC_OR_PARTITION, the rest OPERATION_NOT_ATTEMPTED).
pub async fn add_partitions_to_txn(state: &Arc<BrokerState>, req: AddPartitionsToTxnRequest) -> AddPartitionsToTxnResponse {
    let id = req.v3_and_below_transactional_id.0.to_string();
    let image = state.image();
    let wanted: Vec<(String, i32)> = req.v3_and_below_topics.iter().flat_map(|t| t.partitions.iter().map(move |p| (t.name.0.to_string(), *p))).collect();
    let unknown: Vec<&(String, i32)> = wanted.iter().filter(|(t, p)| image.partition(t, *p).is_none()).collect();
    let outcome: Result<(), ResponseError> = if !unknown.is_empty() {
        Err(ResponseError::OperationNotAttempted)
    } else {
        state.txns.add_partitions(&id, req.v3_and_below_producer_id.0, req.v3_and_below_producer_epoch, &wanted).await
    };
    if let Err(e) = outcome {
        tracing::debug!(transactional_id = %id, "AddPartitionsToTxn refused: {e:?}");
    }
    let mut resp = AddPartitionsToTxnResponse::default();
    for t in req.v3_and_below_topics {
        let mut tr = AddPartitionsToTxnTopicResult::default();
        tr.name = t.name.clone();
        for p in t.partitions {
            let mut pr = AddPartitionsToTxnPartitionResult::default();
            pr.partition_index = p;
            let is_unknown = unknown.iter().any(|(ut, up)| *ut == *t.name.0 && *up == p);
            pr.partition_error_code = if is_unknown { ResponseError::UnknownTopicOrPartition.code() } else { code(outcome.err()) };
            tr.results_by_partition.push(pr);
        }
        resp.results_by_topic_v3_and_below.push(tr);
    }
    resp
}

/// Handles AddOffsetsToTxn: adds the group's `__consumer_offsets` partition to the
/// transaction (created on first use, as for groups).
pub async fn add_offsets_to_txn(state: &Arc<BrokerState>, req: AddOffsetsToTxnRequest) -> AddOffsetsToTxnResponse {
    let mut resp = AddOffsetsToTxnResponse::default();
    if let Err(e) = state.ensure_offsets_topic().await {
        tracing::warn!("cannot create {OFFSETS_TOPIC}: {}", e.message);
        resp.error_code = ResponseError::CoordinatorNotAvailable.code();
        return resp;
    }
    let count = state.image().topic(OFFSETS_TOPIC).map_or(1, |t| t.partitions.len() as i32);
    let tp = (OFFSETS_TOPIC.to_string(), offsets_partition(&req.group_id.0, count));
    let r = state.txns.add_partitions(&req.transactional_id.0, req.producer_id.0, req.producer_epoch, &[tp]).await;
    resp.error_code = code(r.err());
    resp
}

/// Handles EndTxn.
pub async fn end_txn(state: &Arc<BrokerState>, req: EndTxnRequest) -> EndTxnResponse {
    let mut resp = EndTxnResponse::default();
    resp.producer_id = ProducerId(-1);
    resp.producer_epoch = -1;
    let r = state.txns.end_txn(state, &req.transactional_id.0, req.producer_id.0, req.producer_epoch, req.committed).await;
    if let Err(e) = r {
        tracing::debug!(transactional_id = %req.transactional_id.0, committed = req.committed, "EndTxn refused: {e:?}");
    }
    resp.error_code = code(r.err());
    resp
}

/// Handles TxnOffsetCommit at the group coordinator: the offsets join the producer's
/// transaction and become visible with its COMMIT marker. A member id and generation, when
/// given (KIP-447), must match the group's.
pub async fn txn_offset_commit(state: &Arc<BrokerState>, req: TxnOffsetCommitRequest, version: i16) -> TxnOffsetCommitResponse {
    let group = req.group_id.0.to_string();
    let check = if version >= 3 && req.generation_id >= 0 {
        state.groups.check_commit(&group, req.generation_id, &req.member_id, req.group_instance_id.as_deref())
    } else if group.is_empty() {
        Some(ResponseError::InvalidGroupId)
    } else {
        state.groups.owner(&group).err()
    };
    let now = now_ms();
    let mut offsets = Vec::new();
    for t in &req.topics {
        for p in &t.partitions {
            let o = CommittedOffset { offset: p.committed_offset, leader_epoch: p.committed_leader_epoch, metadata: p.committed_metadata.as_deref().unwrap_or("").to_string(), commit_timestamp: now };
            offsets.push(((t.name.0.to_string(), p.partition_index), o));
        }
    }
    let result = match check {
        Some(e) => Err(e),
        None => state.groups.txn_commit(&group, req.producer_id.0, req.producer_epoch, offsets).await,
    };
    if let Err(e) = result {
        tracing::debug!(group = %group, "TxnOffsetCommit refused: {e:?}");
    }
    let mut resp = TxnOffsetCommitResponse::default();
    for t in req.topics {
        let mut tr = TxnOffsetCommitResponseTopic::default();
        tr.name = t.name;
        for p in t.partitions {
            let mut pr = TxnOffsetCommitResponsePartition::default();
            pr.partition_index = p.partition_index;
            pr.error_code = code(result.err());
            tr.partitions.push(pr);
        }
        resp.topics.push(tr);
    }
    resp
}

/// Handles WriteTxnMarkers (sent by transaction coordinators to partition leaders).
pub async fn write_txn_markers(state: &Arc<BrokerState>, req: WriteTxnMarkersRequest) -> WriteTxnMarkersResponse {
    let mut resp = WriteTxnMarkersResponse::default();
    for m in req.markers {
        let parts: Vec<(String, i32)> = m.topics.iter().flat_map(|t| t.partition_indexes.iter().map(move |p| (t.name.0.to_string(), *p))).collect();
        let results = write_markers_local(state, m.producer_id.0, m.producer_epoch, m.transaction_result, m.coordinator_epoch, &parts).await;
        let mut mr = WritableTxnMarkerResult::default();
        mr.producer_id = m.producer_id;
        for ((t, p), err) in results {
            let pr = {
                let mut pr = WritableTxnMarkerPartitionResult::default();
                pr.partition_index = p;
                pr.error_code = code(err);
                pr
            };
            match mr.topics.iter_mut().find(|x| *x.name.0 == *t) {
                Some(tr) => tr.partitions.push(pr),
                None => {
                    let mut tr = WritableTxnMarkerTopicResult::default();
                    tr.name = TopicName(sb(t));
                    tr.partitions.push(pr);
                    mr.topics.push(tr);
                }
            }
        }
        resp.markers.push(mr);
    }
    resp
}

fn described(id: &str, m: &TxnMeta) -> DescribedTxn {
    let mut d = DescribedTxn::default();
    d.transactional_id = TransactionalId(sb(id));
    d.transaction_state = sb(m.state.name());
    d.transaction_timeout_ms = m.timeout_ms;
    d.transaction_start_time_ms = m.start_ms;
    d.producer_id = ProducerId(m.producer_id);
    d.producer_epoch = m.producer_epoch;
    for (t, p) in &m.partitions {
        match d.topics.iter_mut().find(|x| *x.topic.0 == **t) {
            Some(td) => td.partitions.push(*p),
            None => {
                let mut td = TopicData::default();
                td.topic = TopicName(sb(t.clone()));
                td.partitions.push(*p);
                d.topics.push(td);
            }
        }
    }
    d
}

/// Handles DescribeTransactions (answered by each id's coordinator).
pub fn describe_transactions(state: &BrokerState, req: DescribeTransactionsRequest) -> DescribeTransactionsResponse {
    let mut resp = DescribeTransactionsResponse::default();
    for id in req.transactional_ids {
        resp.transaction_states.push(match state.txns.describe(&id.0) {
            Ok(m) => described(&id.0, &m),
            Err(e) => {
                let mut d = DescribedTxn::default();
                d.transactional_id = id;
                d.error_code = e.code();
                d.transaction_state = sb("");
                d.producer_id = ProducerId(-1);
                d.producer_epoch = -1;
                d
            }
        });
    }
    resp
}

/// Handles ListTransactions: the ids this broker coordinates, filtered by state, producer
/// id and (v1) how long they have been open.
pub fn list_transactions(state: &BrokerState, req: ListTransactionsRequest) -> ListTransactionsResponse {
    const STATES: &[&str] = &["Empty", "Ongoing", "PrepareCommit", "PrepareAbort", "CompleteCommit", "CompleteAbort"];
    let mut resp = ListTransactionsResponse::default();
    resp.unknown_state_filters = req.state_filters.iter().filter(|s| !STATES.contains(&s.as_str())).cloned().collect();
    let now = now_ms();
    for (id, m) in state.txns.list() {
        let state_ok = req.state_filters.is_empty() || req.state_filters.iter().any(|s| s.as_str() == m.state.name());
        let pid_ok = req.producer_id_filters.is_empty() || req.producer_id_filters.iter().any(|p| p.0 == m.producer_id);
        let duration_ok = req.duration_filter < 0 || (m.start_ms >= 0 && now - m.start_ms >= req.duration_filter);
        if state_ok && pid_ok && duration_ok {
            let mut l = ListedTxn::default();
            l.transactional_id = TransactionalId(sb(id));
            l.producer_id = ProducerId(m.producer_id);
            l.transaction_state = sb(m.state.name());
            resp.transaction_states.push(l);
        }
    }
    resp
}

/// Handles DescribeProducers on partition leaders: each producer's epoch, last sequence
/// and open transaction.
pub fn describe_producers(state: &BrokerState, req: DescribeProducersRequest) -> DescribeProducersResponse {
    let mut resp = DescribeProducersResponse::default();
    for t in req.topics {
        let mut tr = TopicResponse::default();
        tr.name = t.name.clone();
        for idx in t.partition_indexes {
            let mut pr = PartitionResponse::default();
            pr.partition_index = idx;
            match leader_partition(state, &t.name.0, idx) {
                Err(e) => pr.error_code = e.code(),
                Ok(p) => {
                    let log = p.log.lock().expect("log lock");
                    for (pid, epoch, last_seq, last_ts, coordinator_epoch, txn_start) in log.producers().describe() {
                        let mut w = WireProducer::default();
                        w.producer_id = ProducerId(pid);
                        w.producer_epoch = i32::from(epoch);
                        w.last_sequence = last_seq;
                        w.last_timestamp = last_ts;
                        w.coordinator_epoch = coordinator_epoch;
                        w.current_txn_start_offset = txn_start;
                        pr.active_producers.push(w);
                    }
                }
            }
            tr.partitions.push(pr);
        }
        resp.topics.push(tr);
    }
    resp
}
