//! Offsets: ListOffsets at each partition's leader, and a group's committed offsets through
//! OffsetFetch / OffsetCommit at its coordinator.

use std::collections::BTreeMap;

use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestGroup;
use kafka_protocol::messages::{GroupId, OffsetCommitRequest, OffsetFetchRequest};

use super::{check, Admin};
use crate::consumer::offsets::{self, offset_commit_request, Committer, OffsetSpec, OFFSET_COMMIT};
use crate::consumer::TopicPartition;
use crate::error::{Error, Result};
use crate::net::cluster::sb;

/// OffsetFetch versions: v2 is the first that fetches every topic (a null topic list);
/// v8 moves the group into a `groups` array.
pub(crate) const OFFSET_FETCH: (i16, i16) = (2, 9);

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

impl Admin {
    /// Looks up an offset of each partition at its leader: `(offset, timestamp)`. For
    /// [`OffsetSpec::Timestamp`] past the last record both are -1, as Kafka answers; for
    /// Earliest and Latest the timestamp is -1.
    pub async fn list_offsets(&self, partitions: &[TopicPartition], spec: OffsetSpec) -> Result<BTreeMap<TopicPartition, (i64, i64)>> {
        if partitions.is_empty() {
            return Ok(BTreeMap::new());
        }
        self.retry(true, || offsets::list_offsets(&self.cluster, partitions, spec, 0)).await
    }

    /// [`Admin::list_offsets`] under an isolation level: with read_committed, Latest is the
    /// last stable offset (the end of what committed readers see).
    pub async fn list_offsets_isolated(&self, partitions: &[TopicPartition], spec: OffsetSpec, level: crate::IsolationLevel) -> Result<BTreeMap<TopicPartition, (i64, i64)>> {
        if partitions.is_empty() {
            return Ok(BTreeMap::new());
        }
        self.retry(true, || offsets::list_offsets(&self.cluster, partitions, spec, level.wire())).await
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
            let resp = conn.send(&offset_commit_request(group, &Committer::default(), offsets, version), version).await?;
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
    use kafka_protocol::messages::BrokerId;
    use kafka_protocol::protocol::Encodable;

    use super::*;
    use crate::consumer::offsets::{list_offsets_request, LIST_OFFSETS};

    #[test]
    fn requests_encode_at_every_allowed_version() {
        let tps = [TopicPartition::new("a", 0), TopicPartition::new("a", 1), TopicPartition::new("b", 0)];
        let refs: Vec<&TopicPartition> = tps.iter().collect();
        for v in LIST_OFFSETS.0..=LIST_OFFSETS.1 {
            list_offsets_request(&refs, OffsetSpec::Timestamp(1_700_000_000_000), 0, v).encode(&mut BytesMut::new(), v).unwrap();
        }
        for v in OFFSET_FETCH.0..=OFFSET_FETCH.1 {
            offset_fetch_request("g", v).encode(&mut BytesMut::new(), v).unwrap_or_else(|e| panic!("OffsetFetch v{v}: {e}"));
        }
        let offsets: BTreeMap<TopicPartition, i64> = tps.iter().cloned().zip([5, 6, 7]).collect();
        for v in OFFSET_COMMIT.0..=OFFSET_COMMIT.1 {
            offset_commit_request("g", &Committer::default(), &offsets, v).encode(&mut BytesMut::new(), v).unwrap_or_else(|e| panic!("OffsetCommit v{v}: {e}"));
        }
    }

    #[test]
    fn requests_group_partitions_by_topic() {
        let tps = [TopicPartition::new("b", 3), TopicPartition::new("a", 1), TopicPartition::new("b", 0)];
        let refs: Vec<&TopicPartition> = tps.iter().collect();
        let req = list_offsets_request(&refs, OffsetSpec::Earliest, 0, LIST_OFFSETS.1);
        assert_eq!(req.replica_id, BrokerId(-1));
        let shape: Vec<(String, Vec<(i32, i64)>)> =
            req.topics.iter().map(|t| (t.name.0.to_string(), t.partitions.iter().map(|p| (p.partition_index, p.timestamp)).collect())).collect();
        assert_eq!(shape, vec![("a".to_string(), vec![(1, -2)]), ("b".to_string(), vec![(3, -2), (0, -2)])]);

        let offsets: BTreeMap<TopicPartition, i64> = [(TopicPartition::new("t", 1), 9), (TopicPartition::new("t", 0), 4)].into_iter().collect();
        let commit = offset_commit_request("g", &Committer::default(), &offsets, OFFSET_COMMIT.1);
        assert_eq!((commit.generation_id_or_member_epoch, &*commit.member_id), (-1, ""));
        let parts: Vec<(i32, i64)> = commit.topics[0].partitions.iter().map(|p| (p.partition_index, p.committed_offset)).collect();
        assert_eq!(parts, vec![(0, 4), (1, 9)]);
    }
}
