//! Offset requests the consumer makes: committed offsets (OffsetFetch / OffsetCommit, at
//! the group coordinator) and log offsets by time (ListOffsets, at each leader).

use std::collections::BTreeMap;

use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::{BrokerId, GroupId, ListOffsetsRequest, OffsetCommitRequest, OffsetFetchRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::TopicPartition;
use crate::error::{Error, Result};
use crate::net::{Cluster, Connection};

/// ListOffsets timestamp for the log start.
pub const EARLIEST: i64 = -2;
/// ListOffsets timestamp for the log end.
pub const LATEST: i64 = -1;

fn sb(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

fn group_by_topic<'a, T: Copy>(items: impl IntoIterator<Item = (&'a TopicPartition, T)>) -> BTreeMap<&'a str, Vec<(i32, T)>> {
    let mut out: BTreeMap<&str, Vec<(i32, T)>> = BTreeMap::new();
    for (tp, v) in items {
        out.entry(tp.topic.as_str()).or_default().push((tp.partition, v));
    }
    out
}

/// Committed offsets of `group` for `partitions` (`None`: nothing committed).
pub async fn fetch_committed(conn: &Connection, group: &str, partitions: &[TopicPartition], require_stable: bool) -> Result<BTreeMap<TopicPartition, Option<i64>>> {
    let version = conn.version::<OffsetFetchRequest>(1, 7)?;
    let topics = group_by_topic(partitions.iter().map(|tp| (tp, ())))
        .into_iter()
        .map(|(t, ps)| OffsetFetchRequestTopic::default().with_name(TopicName(sb(t))).with_partition_indexes(ps.into_iter().map(|(p, _)| p).collect()))
        .collect();
    let mut req = OffsetFetchRequest::default().with_group_id(GroupId(sb(group))).with_topics(Some(topics));
    if version >= 7 {
        req = req.with_require_stable(require_stable);
    }
    let resp = conn.send(&req, version).await?;
    if let Some(e) = Error::broker(resp.error_code, format!("fetch committed offsets of group `{group}`")) {
        return Err(e);
    }
    let mut out = BTreeMap::new();
    for t in resp.topics {
        for p in t.partitions {
            let tp = TopicPartition::new(t.name.0.to_string(), p.partition_index);
            if let Some(e) = Error::broker(p.error_code, format!("fetch the committed offset of {tp} for group `{group}`")) {
                return Err(e);
            }
            out.insert(tp, (p.committed_offset >= 0).then_some(p.committed_offset));
        }
    }
    Ok(out)
}

/// Who commits: a group member (generation and member id) or a simple client (-1, "").
#[derive(Debug, Clone, Default)]
pub struct Committer {
    /// Group generation, -1 outside a generation.
    pub generation: i32,
    /// Member id, empty outside a generation.
    pub member_id: String,
    /// Static member id.
    pub instance_id: Option<String>,
}

/// Commits `offsets` for `group`. Partition errors fail the whole call.
pub async fn commit(conn: &Connection, group: &str, who: &Committer, offsets: &BTreeMap<TopicPartition, i64>) -> Result<()> {
    if offsets.is_empty() {
        return Ok(());
    }
    let version = conn.version::<OffsetCommitRequest>(2, 8)?;
    let topics = group_by_topic(offsets.iter().map(|(tp, o)| (tp, *o)))
        .into_iter()
        .map(|(t, ps)| {
            OffsetCommitRequestTopic::default().with_name(TopicName(sb(t))).with_partitions(
                ps.into_iter()
                    .map(|(p, o)| {
                        let mut part = OffsetCommitRequestPartition::default().with_partition_index(p).with_committed_offset(o);
                        if version >= 6 {
                            part = part.with_committed_leader_epoch(-1);
                        }
                        part
                    })
                    .collect(),
            )
        })
        .collect();
    let mut req = OffsetCommitRequest::default()
        .with_group_id(GroupId(sb(group)))
        .with_generation_id_or_member_epoch(who.generation)
        .with_member_id(sb(&who.member_id))
        .with_topics(topics);
    if version <= 4 {
        req = req.with_retention_time_ms(-1);
    }
    if version >= 7 {
        req = req.with_group_instance_id(who.instance_id.as_deref().map(sb));
    }
    let resp = conn.send(&req, version).await?;
    for t in resp.topics {
        for p in t.partitions {
            if let Some(e) = Error::broker(p.error_code, format!("commit offsets of {}-{} for group `{group}`", t.name.0, p.partition_index)) {
                return Err(e);
            }
        }
    }
    Ok(())
}

/// Offsets at `timestamp` ([`EARLIEST`], [`LATEST`] or ms) for partitions, asking each
/// leader. Returns (offset, timestamp) per partition; offset -1 when no record is that new.
pub async fn list_offsets(
    cluster: &Cluster,
    partitions: &[TopicPartition],
    timestamp: i64,
    isolation_level: i8,
) -> Result<BTreeMap<TopicPartition, (i64, i64)>> {
    let md = cluster.metadata();
    let mut by_leader: BTreeMap<i32, Vec<&TopicPartition>> = BTreeMap::new();
    for tp in partitions {
        let leader = md.leader(&tp.topic, tp.partition).ok_or_else(|| Error::Broker {
            error: ResponseError::LeaderNotAvailable,
            context: format!("list offsets of {tp}"),
        })?;
        by_leader.entry(leader).or_default().push(tp);
    }
    let mut out = BTreeMap::new();
    for (leader, tps) in by_leader {
        let conn = cluster.broker(leader).await?;
        let version = conn.version::<ListOffsetsRequest>(1, 7)?;
        let topics = group_by_topic(tps.into_iter().map(|tp| (tp, ())))
            .into_iter()
            .map(|(t, ps)| {
                ListOffsetsTopic::default().with_name(TopicName(sb(t))).with_partitions(
                    ps.into_iter()
                        .map(|(p, _)| {
                            let mut lp = ListOffsetsPartition::default().with_partition_index(p).with_timestamp(timestamp);
                            if version >= 4 {
                                lp = lp.with_current_leader_epoch(-1);
                            }
                            lp
                        })
                        .collect(),
                )
            })
            .collect();
        let mut req = ListOffsetsRequest::default().with_replica_id(BrokerId(-1)).with_topics(topics);
        if version >= 2 {
            req = req.with_isolation_level(isolation_level);
        }
        let resp = conn.send(&req, version).await?;
        for t in resp.topics {
            for p in t.partitions {
                let tp = TopicPartition::new(t.name.0.to_string(), p.partition_index);
                if let Some(e) = Error::broker(p.error_code, format!("list offsets of {tp}")) {
                    return Err(e);
                }
                out.insert(tp, (p.offset, p.timestamp));
            }
        }
    }
    Ok(out)
}
