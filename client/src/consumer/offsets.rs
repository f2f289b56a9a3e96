//! Offset requests, for the consumer and the admin client alike: committed offsets
//! (OffsetFetch / OffsetCommit, at the group coordinator) and log offsets by time
//! (ListOffsets, at each leader). Request builders are pure and set only the fields of
//! the version they are built for.

use std::collections::BTreeMap;

use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::{BrokerId, GroupId, ListOffsetsRequest, OffsetCommitRequest, OffsetFetchRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::TopicPartition;
use crate::error::{check_topic, Error, Result};
use crate::net::{Cluster, Connection};

/// ListOffsets versions: v1 (the oldest Kafka 4 serves) returns one offset and its timestamp.
pub(crate) const LIST_OFFSETS: (i16, i16) = (1, 8);
/// OffsetCommit versions.
pub(crate) const OFFSET_COMMIT: (i16, i16) = (2, 9);

/// Which offset ListOffsets looks up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetSpec {
    /// The log start offset (the first offset still stored).
    Earliest,
    /// The log end offset (the offset the next record will get).
    Latest,
    /// The first offset whose record timestamp is at least this many ms since the epoch.
    Timestamp(i64),
}

impl OffsetSpec {
    fn wire(self) -> i64 {
        match self {
            OffsetSpec::Earliest => -2,
            OffsetSpec::Latest => -1,
            OffsetSpec::Timestamp(ms) => ms,
        }
    }
}

fn sb(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

fn by_topic<'a, T: Copy>(items: impl IntoIterator<Item = (&'a TopicPartition, T)>) -> BTreeMap<&'a str, Vec<(i32, T)>> {
    let mut out: BTreeMap<&str, Vec<(i32, T)>> = BTreeMap::new();
    for (tp, v) in items {
        out.entry(tp.topic.as_str()).or_default().push((tp.partition, v));
    }
    out
}

/// Committed offsets of `group` for `partitions` (`None`: nothing committed).
pub async fn fetch_committed(conn: &Connection, group: &str, partitions: &[TopicPartition], require_stable: bool) -> Result<BTreeMap<TopicPartition, Option<i64>>> {
    let version = conn.version::<OffsetFetchRequest>(1, 7)?;
    let topics = by_topic(partitions.iter().map(|tp| (tp, ())))
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
#[derive(Debug, Clone)]
pub struct Committer {
    /// Group generation, -1 outside a generation.
    pub generation: i32,
    /// Member id, empty outside a generation.
    pub member_id: String,
    /// Static member id.
    pub instance_id: Option<String>,
}

impl Default for Committer {
    /// A client outside any generation (accepted only while the group has no members,
    /// as with Kafka's AdminClient).
    fn default() -> Self {
        Committer { generation: -1, member_id: String::new(), instance_id: None }
    }
}

/// The OffsetCommit request of `who` at `version` (only the fields that version has).
pub(crate) fn offset_commit_request(group: &str, who: &Committer, offsets: &BTreeMap<TopicPartition, i64>, version: i16) -> OffsetCommitRequest {
    let topics = by_topic(offsets.iter().map(|(tp, o)| (tp, *o)))
        .into_iter()
        .map(|(t, ps)| {
            OffsetCommitRequestTopic::default().with_name(TopicName(sb(t))).with_partitions(
                ps.into_iter()
                    .map(|(p, o)| {
                        let part = OffsetCommitRequestPartition::default().with_partition_index(p).with_committed_offset(o);
                        if version >= 6 {
                            part.with_committed_leader_epoch(-1)
                        } else {
                            part
                        }
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
    req
}

/// Commits `offsets` for `group`. Partition errors fail the whole call.
pub async fn commit(conn: &Connection, group: &str, who: &Committer, offsets: &BTreeMap<TopicPartition, i64>) -> Result<()> {
    if offsets.is_empty() {
        return Ok(());
    }
    let version = conn.version::<OffsetCommitRequest>(OFFSET_COMMIT.0, OFFSET_COMMIT.1)?;
    let resp = conn.send(&offset_commit_request(group, who, offsets, version), version).await?;
    for t in resp.topics {
        for p in t.partitions {
            if let Some(e) = Error::broker(p.error_code, format!("commit offsets of {}-{} for group `{group}`", t.name.0, p.partition_index)) {
                return Err(e);
            }
        }
    }
    Ok(())
}

/// The ListOffsets request for one leader's partitions at `version`.
pub(crate) fn list_offsets_request(partitions: &[&TopicPartition], spec: OffsetSpec, isolation_level: i8, version: i16) -> ListOffsetsRequest {
    let topics = by_topic(partitions.iter().map(|tp| (*tp, ())))
        .into_iter()
        .map(|(t, ps)| {
            ListOffsetsTopic::default().with_name(TopicName(sb(t))).with_partitions(
                ps.into_iter()
                    .map(|(p, ())| {
                        let lp = ListOffsetsPartition::default().with_partition_index(p).with_timestamp(spec.wire());
                        if version >= 4 {
                            lp.with_current_leader_epoch(-1)
                        } else {
                            lp
                        }
                    })
                    .collect(),
            )
        })
        .collect();
    let req = ListOffsetsRequest::default().with_replica_id(BrokerId(-1)).with_topics(topics);
    if version >= 2 {
        req.with_isolation_level(isolation_level)
    } else {
        req
    }
}

/// Looks up an offset of each partition at its leader: `(offset, timestamp)`. For
/// [`OffsetSpec::Timestamp`] past the last record both are -1, as Kafka answers. A missing
/// topic is [`Error::UnknownTopic`].
pub async fn list_offsets(cluster: &Cluster, partitions: &[TopicPartition], spec: OffsetSpec, isolation_level: i8) -> Result<BTreeMap<TopicPartition, (i64, i64)>> {
    let mut topics: Vec<String> = partitions.iter().map(|tp| tp.topic.clone()).collect();
    topics.sort();
    topics.dedup();
    let md = cluster.refresh(Some(&topics), false).await?;
    let mut by_leader: BTreeMap<i32, Vec<&TopicPartition>> = BTreeMap::new();
    for tp in partitions {
        let (t, p) = (&tp.topic, tp.partition);
        let info = md.topics.get(t).ok_or_else(|| Error::UnknownTopic(t.clone()))?;
        let part = info.partitions.iter().find(|x| x.partition == p).ok_or_else(|| Error::Broker {
            error: ResponseError::UnknownTopicOrPartition,
            context: format!("list offsets of `{t}` partition {p} (the topic has {} partitions)", info.partitions.len()),
        })?;
        if part.leader < 0 {
            return Err(Error::Broker { error: ResponseError::LeaderNotAvailable, context: format!("list offsets of `{t}` partition {p}") });
        }
        by_leader.entry(part.leader).or_default().push(tp);
    }
    let mut out = BTreeMap::new();
    for (leader, tps) in by_leader {
        let conn = cluster.broker(leader).await?;
        let version = conn.version::<ListOffsetsRequest>(LIST_OFFSETS.0, LIST_OFFSETS.1)?;
        let resp = conn.send(&list_offsets_request(&tps, spec, isolation_level, version), version).await?;
        for t in resp.topics {
            let name = t.name.0.to_string();
            for p in t.partitions {
                let idx = p.partition_index;
                check_topic(p.error_code, None, &name, || format!("list offsets of `{name}` partition {idx}"))?;
                out.insert(TopicPartition::new(name.clone(), idx), (p.offset, p.timestamp));
            }
        }
    }
    if let Some(tp) = partitions.iter().find(|tp| !out.contains_key(*tp)) {
        let (t, p) = (&tp.topic, tp.partition);
        return Err(Error::Protocol { addr: String::new(), reason: format!("ListOffsets response has no result for `{t}` partition {p}") });
    }
    Ok(out)
}
