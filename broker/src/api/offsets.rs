//! OffsetCommit, OffsetFetch (single group and batched, v8+) and OffsetDelete.

use std::collections::BTreeMap;

use kafka_protocol::messages::offset_commit_response::{OffsetCommitResponsePartition, OffsetCommitResponseTopic};
use kafka_protocol::messages::offset_delete_response::{OffsetDeleteResponsePartition, OffsetDeleteResponseTopic};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions, OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::*;
use kafka_protocol::ResponseError;

use super::{code, sb};
use crate::group::{CommittedOffset, TopicPartition};
use crate::now_ms;
use crate::server::BrokerState;

/// Largest commit metadata string accepted (Kafka's `offset.metadata.max.bytes`).
pub const OFFSET_METADATA_MAX_BYTES: usize = 4096;

/// Handles OffsetCommit.
pub async fn offset_commit(state: &BrokerState, req: OffsetCommitRequest) -> OffsetCommitResponse {
    let group_error = state.groups.check_commit(&req.group_id, req.generation_id_or_member_epoch, &req.member_id, req.group_instance_id.as_deref());
    let now = now_ms();
    let mut errors: BTreeMap<TopicPartition, Option<ResponseError>> = BTreeMap::new();
    let mut accepted = Vec::new();
    for t in &req.topics {
        let image = state.image();
        let topic = image.topic(&t.name.0);
        for p in &t.partitions {
            let tp = (t.name.0.to_string(), p.partition_index);
            let metadata = p.committed_metadata.as_ref().map(|m| m.to_string()).unwrap_or_default();
            let err = if group_error.is_some() {
                group_error
            } else if topic.and_then(|t| t.partitions.get(usize::try_from(p.partition_index).ok()?)).is_none() {
                Some(ResponseError::UnknownTopicOrPartition)
            } else if metadata.len() > OFFSET_METADATA_MAX_BYTES {
                Some(ResponseError::OffsetMetadataTooLarge)
            } else {
                accepted.push((tp.clone(), CommittedOffset { offset: p.committed_offset, leader_epoch: p.committed_leader_epoch, metadata, commit_timestamp: now }));
                None
            };
            errors.insert(tp, err);
        }
    }
    if !accepted.is_empty() {
        if let Err(e) = state.groups.commit(&req.group_id, accepted.clone()).await {
            tracing::debug!(group = %&*req.group_id, "offset commit failed: {e:?}");
            for (tp, _) in accepted {
                errors.insert(tp, Some(e));
            }
        }
    }
    let mut resp = OffsetCommitResponse::default();
    for t in &req.topics {
        let mut tr = OffsetCommitResponseTopic::default();
        tr.name = t.name.clone();
        tr.partitions = t
            .partitions
            .iter()
            .map(|p| {
                let mut pr = OffsetCommitResponsePartition::default();
                pr.partition_index = p.partition_index;
                pr.error_code = code(errors.get(&(t.name.0.to_string(), p.partition_index)).copied().flatten());
                pr
            })
            .collect();
        resp.topics.push(tr);
    }
    resp
}

/// Per topic, per partition: the committed offset, if any.
type ByTopic = Vec<(String, Vec<(i32, Option<CommittedOffset>)>)>;

/// Committed offsets grouped by topic, in request order when partitions were listed.
fn lookup(state: &BrokerState, group: &str, wanted: Option<Vec<TopicPartition>>) -> ByTopic {
    let rows = state.groups.fetch(group, wanted.as_deref());
    let mut by_topic: ByTopic = Vec::new();
    for ((t, p), o) in rows {
        match by_topic.iter_mut().find(|(name, _)| *name == t) {
            Some((_, v)) => v.push((p, o)),
            None => by_topic.push((t, vec![(p, o)])),
        }
    }
    by_topic
}

/// With `require_stable`, whether an open transaction holds offsets of this partition.
fn unstable(state: &BrokerState, require_stable: bool, group: &str, topic: &str, partition: i32) -> bool {
    require_stable && state.groups.has_pending(group, &(topic.to_string(), partition))
}

/// Handles OffsetFetch. Partitions without a commit answer offset -1, as Kafka does; with
/// `require_stable` (v7+), partitions with offsets pending in an open transaction answer
/// UNSTABLE_OFFSET_COMMIT (the client retries).
pub fn offset_fetch(state: &BrokerState, req: OffsetFetchRequest, version: i16) -> OffsetFetchResponse {
    let mut resp = OffsetFetchResponse::default();
    if version >= 8 {
        for g in req.groups {
            let wanted = g.topics.map(|ts| ts.iter().flat_map(|t| t.partition_indexes.iter().map(|p| (t.name.0.to_string(), *p))).collect());
            let mut gr = OffsetFetchResponseGroup::default();
            gr.group_id = g.group_id.clone();
            if let Err(e) = state.groups.owner(&g.group_id) {
                gr.error_code = e.code();
                resp.groups.push(gr);
                continue;
            }
            gr.topics = lookup(state, &g.group_id, wanted)
                .into_iter()
                .map(|(name, parts)| {
                    let mut tr = OffsetFetchResponseTopics::default();
                    tr.name = TopicName(sb(name.clone()));
                    tr.partitions = parts
                        .into_iter()
                        .map(|(p, o)| {
                            let mut pr = OffsetFetchResponsePartitions::default();
                            pr.partition_index = p;
                            if unstable(state, req.require_stable, &g.group_id, &name, p) {
                                pr.error_code = ResponseError::UnstableOffsetCommit.code();
                                pr.committed_offset = -1;
                                pr.committed_leader_epoch = -1;
                                return pr;
                            }
                            pr.committed_offset = o.as_ref().map(|o| o.offset).unwrap_or(-1);
                            pr.committed_leader_epoch = o.as_ref().map(|o| o.leader_epoch).unwrap_or(-1);
                            pr.metadata = Some(sb(o.map(|o| o.metadata).unwrap_or_default()));
                            pr
                        })
                        .collect();
                    tr
                })
                .collect();
            resp.groups.push(gr);
        }
        return resp;
    }
    if let Err(e) = state.groups.owner(&req.group_id) {
        if version >= 2 {
            resp.error_code = e.code();
        } else {
            resp.topics = req.topics.iter().flatten().map(|t| {
                let mut tr = OffsetFetchResponseTopic::default();
                tr.name = t.name.clone();
                tr.partitions = t.partition_indexes.iter().map(|p| {
                    let mut pr = OffsetFetchResponsePartition::default();
                    pr.partition_index = *p;
                    pr.committed_offset = -1;
                    pr.error_code = e.code();
                    pr
                }).collect();
                tr
            }).collect();
        }
        return resp;
    }
    let wanted = req.topics.map(|ts| ts.iter().flat_map(|t| t.partition_indexes.iter().map(|p| (t.name.0.to_string(), *p))).collect());
    resp.topics = lookup(state, &req.group_id, wanted)
        .into_iter()
        .map(|(name, parts)| {
            let mut tr = OffsetFetchResponseTopic::default();
            tr.name = TopicName(sb(name.clone()));
            tr.partitions = parts
                .into_iter()
                .map(|(p, o)| {
                    let mut pr = OffsetFetchResponsePartition::default();
                    pr.partition_index = p;
                    if unstable(state, version >= 7 && req.require_stable, &req.group_id, &name, p) {
                        pr.error_code = ResponseError::UnstableOffsetCommit.code();
                        pr.committed_offset = -1;
                        return pr;
                    }
                    pr.committed_offset = o.as_ref().map(|o| o.offset).unwrap_or(-1);
                    if version >= 5 {
                        pr.committed_leader_epoch = o.as_ref().map(|o| o.leader_epoch).unwrap_or(-1);
                    }
                    pr.metadata = Some(sb(o.map(|o| o.metadata).unwrap_or_default()));
                    pr
                })
                .collect();
            tr
        })
        .collect();
    resp
}

/// Handles OffsetDelete.
pub fn offset_delete(state: &BrokerState, req: OffsetDeleteRequest) -> OffsetDeleteResponse {
    let mut resp = OffsetDeleteResponse::default();
    let tps: Vec<TopicPartition> = req.topics.iter().flat_map(|t| t.partitions.iter().map(|p| (t.name.0.to_string(), p.partition_index))).collect();
    match state.groups.delete_offsets(&req.group_id, &tps) {
        Err(e) => resp.error_code = e.code(),
        Ok(results) => {
            for t in &req.topics {
                let mut tr = OffsetDeleteResponseTopic::default();
                tr.name = t.name.clone();
                tr.partitions = t
                    .partitions
                    .iter()
                    .map(|p| {
                        let mut pr = OffsetDeleteResponsePartition::default();
                        pr.partition_index = p.partition_index;
                        let err = results.iter().find(|((n, i), _)| *n == *t.name.0 && *i == p.partition_index).and_then(|(_, e)| *e);
                        pr.error_code = code(err);
                        pr
                    })
                    .collect();
                resp.topics.push(tr);
            }
        }
    }
    resp
}
