//! Offsets: ListOffsets at each partition's leader, and a group's committed offsets through
//! OffsetFetch / OffsetCommit at its coordinator.

use std::collections::BTreeMap;

use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestGroup;
use kafka_protocol::messages::{BrokerId, GroupId, ListOffsetsRequest, OffsetCommitRequest, OffsetFetchRequest, TopicName};
use kafka_protocol::ResponseError;

use super::{check, check_topic, Admin};
use crate::consumer::TopicPartition;
use crate::error::{Error, Result};
use crate::net::cluster::sb;

/// ListOffsets versions: v1 (the oldest Kafka 4 serves) returns one offset and its timestamp.
pub(crate) const LIST_OFFSETS: (i16, i16) = (1, 8);
/// OffsetFetch versions: v2 is the first that fetches every topic (a null topic list);
/// v8 moves the group into a `groups` array.
pub(crate) const OFFSET_FETCH: (i16, i16) = (2, 9);
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

fn by_topic<'a, V: Copy>(items: impl IntoIterator<Item = (&'a TopicPartition, V)>) -> BTreeMap<&'a str, Vec<(i32, V)>> {
    let mut out: BTreeMap<&str, Vec<(i32, V)>> = BTreeMap::new();
    for (tp, v) in items {
        out.entry(tp.topic.as_str()).or_default().push((tp.partition, v));
    }
    out
}

/// The ListOffsets request for one leader's partitions (read-uncommitted, as a consumer
/// of a non-transactional topic sees it).
pub(crate) fn list_offsets_request(partitions: &[&TopicPartition], spec: OffsetSpec) -> ListOffsetsRequest {
    let topics = by_topic(partitions.iter().map(|tp| (*tp, ())))
        .into_iter()
        .map(|(t, ps)| {
            ListOffsetsTopic::default()
                .with_name(TopicName(sb(t)))
                .with_partitions(ps.into_iter().map(|(p, ())| ListOffsetsPartition::default().with_partition_index(p).with_timestamp(spec.wire())).collect())
        })
        .collect();
    ListOffsetsRequest::default().with_replica_id(BrokerId(-1)).with_topics(topics)
}

/// The OffsetFetch request for every committed offset of `group`.
pub(crate) fn offset_fetch_request(group: &str, version: i16) -> OffsetFetchRequest {
    if version >= 8 {
        // The pre-v8 topic list must be empty (not null) for the encoder at v8+.
        OffsetFetchRequest::default()
            .with_topics(Some(Vec::new()))
            .with_groups(vec![OffsetFetchRequestGroup::default().with_group_id(GroupId(sb(group))).with_topics(None)])
    } else {
        OffsetFetchRequest::default().with_group_id(GroupId(sb(group))).with_topics(None)
    }
}

/// The OffsetCommit request an admin sends: no generation, no member (accepted only while
/// the group has no members, as with Kafka's AdminClient).
pub(crate) fn offset_commit_request(group: &str, offsets: &BTreeMap<TopicPartition, i64>) -> OffsetCommitRequest {
    let topics = by_topic(offsets.iter().map(|(tp, o)| (tp, *o)))
        .into_iter()
        .map(|(t, ps)| {
            OffsetCommitRequestTopic::default().with_name(TopicName(sb(t))).with_partitions(
                ps.into_iter().map(|(p, o)| OffsetCommitRequestPartition::default().with_partition_index(p).with_committed_offset(o)).collect(),
            )
        })
        .collect();
    OffsetCommitRequest::default()
        .with_group_id(GroupId(sb(group)))
        .with_generation_id_or_member_epoch(-1)
        .with_member_id(sb(""))
        .with_topics(topics)
}

impl Admin {
    /// Looks up an offset of each partition at its leader: `(offset, timestamp)`. For
    /// [`OffsetSpec::Timestamp`] past the last record both are -1, as Kafka answers; for
    /// Earliest and Latest the timestamp is -1.
    pub async fn list_offsets(&self, partitions: &[TopicPartition], spec: OffsetSpec) -> Result<BTreeMap<TopicPartition, (i64, i64)>> {
        if partitions.is_empty() {
            return Ok(BTreeMap::new());
        }
        self.retry(true, || self.list_offsets_once(partitions, spec)).await
    }

    async fn list_offsets_once(&self, partitions: &[TopicPartition], spec: OffsetSpec) -> Result<BTreeMap<TopicPartition, (i64, i64)>> {
        let mut topics: Vec<String> = partitions.iter().map(|tp| tp.topic.clone()).collect();
        topics.sort();
        topics.dedup();
        let md = self.cluster.refresh(Some(&topics), false).await?;
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
            let conn = self.cluster.broker(leader).await?;
            let version = conn.version::<ListOffsetsRequest>(LIST_OFFSETS.0, LIST_OFFSETS.1)?;
            let resp = conn.send(&list_offsets_request(&tps, spec), version).await?;
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

    /// Every committed offset of `group`. Partitions without a commit are left out.
    pub async fn list_group_offsets(&self, group: &str) -> Result<BTreeMap<TopicPartition, i64>> {
        self.retry(true, || self.list_group_offsets_once(group)).await
    }

    async fn list_group_offsets_once(&self, group: &str) -> Result<BTreeMap<TopicPartition, i64>> {
        let (_, conn) = self.cluster.coordinator(group, 0).await?;
        let version = conn.version::<OffsetFetchRequest>(OFFSET_FETCH.0, OFFSET_FETCH.1)?;
        let resp = conn.send(&offset_fetch_request(group, version), version).await?;
        let context = || format!("fetch committed offsets of group `{group}`");
        let mut rows: Vec<(String, i32, i64, i16)> = Vec::new();
        if version >= 8 {
            let g = resp.groups.into_iter().find(|g| *g.group_id.0 == *group).ok_or_else(|| Error::Protocol {
                addr: conn.addr().to_string(),
                reason: format!("OffsetFetch response has no result for `{group}`"),
            })?;
            check(g.error_code, None, context)?;
            for t in g.topics {
                rows.extend(t.partitions.into_iter().map(|p| (t.name.0.to_string(), p.partition_index, p.committed_offset, p.error_code)));
            }
        } else {
            check(resp.error_code, None, context)?;
            for t in resp.topics {
                rows.extend(t.partitions.into_iter().map(|p| (t.name.0.to_string(), p.partition_index, p.committed_offset, p.error_code)));
            }
        }
        let mut out = BTreeMap::new();
        for (topic, p, offset, code) in rows {
            check(code, None, || format!("fetch committed offset of group `{group}` for `{topic}` partition {p}"))?;
            if offset >= 0 {
                out.insert(TopicPartition::new(topic, p), offset);
            }
        }
        Ok(out)
    }

    /// Sets committed offsets of `group`, which must have no active members (the broker
    /// refuses with UNKNOWN_MEMBER_ID otherwise). The first failing partition is returned.
    pub async fn alter_group_offsets(&self, group: &str, offsets: &BTreeMap<TopicPartition, i64>) -> Result<()> {
        if offsets.is_empty() {
            return Ok(());
        }
        // Committing the same offsets twice is harmless, so a broken connection is retried.
        self.retry(true, move || async move {
            let (_, conn) = self.cluster.coordinator(group, 0).await?;
            let version = conn.version::<OffsetCommitRequest>(OFFSET_COMMIT.0, OFFSET_COMMIT.1)?;
            let resp = conn.send(&offset_commit_request(group, offsets), version).await?;
            for t in &resp.topics {
                let name = t.name.0.to_string();
                for p in &t.partitions {
                    let idx = p.partition_index;
                    check(p.error_code, None, || format!("commit offset of group `{group}` for `{name}` partition {idx}"))?;
                }
            }
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;
    use kafka_protocol::protocol::Encodable;

    use super::*;

    #[test]
    fn requests_encode_at_every_allowed_version() {
        let tps = [TopicPartition::new("a", 0), TopicPartition::new("a", 1), TopicPartition::new("b", 0)];
        let refs: Vec<&TopicPartition> = tps.iter().collect();
        for v in LIST_OFFSETS.0..=LIST_OFFSETS.1 {
            list_offsets_request(&refs, OffsetSpec::Timestamp(1_700_000_000_000)).encode(&mut BytesMut::new(), v).unwrap();
        }
        for v in OFFSET_FETCH.0..=OFFSET_FETCH.1 {
            offset_fetch_request("g", v).encode(&mut BytesMut::new(), v).unwrap_or_else(|e| panic!("OffsetFetch v{v}: {e}"));
        }
        let offsets: BTreeMap<TopicPartition, i64> = tps.iter().cloned().zip([5, 6, 7]).collect();
        for v in OFFSET_COMMIT.0..=OFFSET_COMMIT.1 {
            offset_commit_request("g", &offsets).encode(&mut BytesMut::new(), v).unwrap_or_else(|e| panic!("OffsetCommit v{v}: {e}"));
        }
    }

    #[test]
    fn requests_group_partitions_by_topic() {
        let tps = [TopicPartition::new("b", 3), TopicPartition::new("a", 1), TopicPartition::new("b", 0)];
        let refs: Vec<&TopicPartition> = tps.iter().collect();
        let req = list_offsets_request(&refs, OffsetSpec::Earliest);
        assert_eq!(req.replica_id, BrokerId(-1));
        let shape: Vec<(String, Vec<(i32, i64)>)> =
            req.topics.iter().map(|t| (t.name.0.to_string(), t.partitions.iter().map(|p| (p.partition_index, p.timestamp)).collect())).collect();
        assert_eq!(shape, vec![("a".to_string(), vec![(1, -2)]), ("b".to_string(), vec![(3, -2), (0, -2)])]);

        let offsets: BTreeMap<TopicPartition, i64> = [(TopicPartition::new("t", 1), 9), (TopicPartition::new("t", 0), 4)].into_iter().collect();
        let commit = offset_commit_request("g", &offsets);
        assert_eq!((commit.generation_id_or_member_epoch, &*commit.member_id), (-1, ""));
        let parts: Vec<(i32, i64)> = commit.topics[0].partitions.iter().map(|p| (p.partition_index, p.committed_offset)).collect();
        assert_eq!(parts, vec![(0, 4), (1, 9)]);
    }
}
