//! Consumer groups: ListGroups (every broker), DescribeGroups and DeleteGroups (at each
//! group's coordinator), and decoding the assignment a consumer-group leader handed out.

use bytes::Bytes;
use kafka_protocol::messages::{DeleteGroupsRequest, DescribeGroupsRequest, GroupId, ListGroupsRequest};

use super::{check, Admin};
use crate::error::{Error, Result};
use crate::net::cluster::sb;

/// ListGroups versions (v4 adds the state, v5 the group type).
pub(crate) const LIST_GROUPS: (i16, i16) = (0, 5);
/// DescribeGroups versions.
pub(crate) const DESCRIBE_GROUPS: (i16, i16) = (0, 5);
/// DeleteGroups versions.
pub(crate) const DELETE_GROUPS: (i16, i16) = (0, 2);

/// A group as ListGroups shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupListing {
    /// Group id.
    pub group_id: String,
    /// `consumer` for consumer groups; other protocols (Connect, ...) name themselves.
    pub protocol_type: String,
    /// State (`Stable`, `Empty`, ...), when the broker reports it (ListGroups v4+).
    pub state: Option<String>,
}

/// A group member and what it was assigned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberDescription {
    /// Member id the coordinator gave.
    pub member_id: String,
    /// Static membership id (`group.instance.id`), if any.
    pub group_instance_id: Option<String>,
    /// The member's `client.id`.
    pub client_id: String,
    /// The member's host, as the coordinator saw it.
    pub client_host: String,
    /// Partitions assigned, by topic (consumer groups in a stable state only; else empty).
    pub assignment: Vec<(String, Vec<i32>)>,
}

/// A group as DescribeGroups shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    /// Group id.
    pub group_id: String,
    /// State: `Stable`, `Empty`, `PreparingRebalance`, `CompletingRebalance`, or `Dead`
    /// (which is also how a group the coordinator does not know is reported).
    pub state: String,
    /// Protocol type (`consumer` for consumer groups).
    pub protocol_type: String,
    /// The chosen protocol (for consumers: the assignor, e.g. `range`).
    pub protocol: String,
    /// Current members.
    pub members: Vec<MemberDescription>,
}

/// Decodes a consumer group member's assignment: an i16 version, then a
/// `ConsumerProtocolAssignment` at that version. Newer versions only add fields at the end,
/// so they are read as the newest known one. Bytes that do not decode give an empty list.
pub fn decode_assignment(bytes: &Bytes) -> Vec<(String, Vec<i32>)> {
    let mut out: Vec<(String, Vec<i32>)> = Vec::new();
    for tp in crate::consumer::assignor::decode_assignment(bytes.clone()).unwrap_or_default() {
        match out.last_mut() {
            Some((topic, partitions)) if *topic == tp.topic => partitions.push(tp.partition),
            _ => out.push((tp.topic, vec![tp.partition])),
        }
    }
    out
}

/// The DescribeGroups request; authorized operations (v3+) are not asked for.
pub(crate) fn describe_groups_request(group: &str) -> DescribeGroupsRequest {
    DescribeGroupsRequest::default().with_groups(vec![GroupId(sb(group))]).with_include_authorized_operations(false)
}

/// The DeleteGroups request.
pub(crate) fn delete_groups_request(group: &str) -> DeleteGroupsRequest {
    DeleteGroupsRequest::default().with_groups_names(vec![GroupId(sb(group))])
}

impl Admin {
    /// Every group on every broker, sorted by id.
    pub async fn list_groups(&self) -> Result<Vec<GroupListing>> {
        let md = self.retry(true, || self.cluster.refresh(Some(&[]), false)).await?;
        let mut all: Vec<GroupListing> = Vec::new();
        for &node in md.brokers.keys() {
            let groups = self
                .retry(true, move || async move {
                    let conn = self.cluster.broker(node).await?;
                    let version = conn.version::<ListGroupsRequest>(LIST_GROUPS.0, LIST_GROUPS.1)?;
                    let resp = conn.send(&ListGroupsRequest::default(), version).await?;
                    check(resp.error_code, None, || format!("list groups on broker {node}"))?;
                    Ok(resp
                        .groups
                        .into_iter()
                        .map(|g| GroupListing {
                            group_id: g.group_id.0.to_string(),
                            protocol_type: g.protocol_type.to_string(),
                            state: (version >= 4).then(|| g.group_state.to_string()),
                        })
                        .collect::<Vec<_>>())
                })
                .await?;
            all.extend(groups);
        }
        all.sort_by(|a, b| a.group_id.cmp(&b.group_id));
        all.dedup_by(|a, b| a.group_id == b.group_id);
        Ok(all)
    }

    /// State, protocol and members of these groups, in the order asked. A group the
    /// coordinator does not know comes back with state `Dead` and no members.
    pub async fn describe_groups(&self, groups: &[String]) -> Result<Vec<GroupDescription>> {
        let mut out = Vec::with_capacity(groups.len());
        for group in groups {
            out.push(self.retry(true, || self.describe_group(group)).await?);
        }
        Ok(out)
    }

    async fn describe_group(&self, group: &str) -> Result<GroupDescription> {
        let (_, conn) = self.cluster.coordinator(group, 0).await?;
        let version = conn.version::<DescribeGroupsRequest>(DESCRIBE_GROUPS.0, DESCRIBE_GROUPS.1)?;
        let resp = conn.send(&describe_groups_request(group), version).await?;
        let g = resp.groups.into_iter().find(|g| *g.group_id.0 == *group).ok_or_else(|| Error::Protocol {
            addr: conn.addr().to_string(),
            reason: format!("DescribeGroups response has no result for `{group}`"),
        })?;
        check(g.error_code, None, || format!("describe group `{group}`"))?;
        let consumer = &*g.protocol_type == "consumer";
        let members = g
            .members
            .into_iter()
            .map(|m| MemberDescription {
                member_id: m.member_id.to_string(),
                group_instance_id: m.group_instance_id.map(|s| s.to_string()),
                client_id: m.client_id.to_string(),
                client_host: m.client_host.to_string(),
                assignment: if consumer { decode_assignment(&m.member_assignment) } else { Vec::new() },
            })
            .collect();
        Ok(GroupDescription {
            group_id: group.to_string(),
            state: g.group_state.to_string(),
            protocol_type: g.protocol_type.to_string(),
            protocol: g.protocol_data.to_string(),
            members,
        })
    }

    /// Deletes groups (which must have no members) with their committed offsets. Each group
    /// is tried; the first failure is returned (e.g. NON_EMPTY_GROUP, GROUP_ID_NOT_FOUND).
    pub async fn delete_groups(&self, groups: &[String]) -> Result<()> {
        let mut first_error = None;
        for group in groups {
            // Only "not here, not yet" answers are retried: the group was left untouched.
            let result = self
                .retry(false, move || async move {
                    let (_, conn) = self.cluster.coordinator(group, 0).await?;
                    let version = conn.version::<DeleteGroupsRequest>(DELETE_GROUPS.0, DELETE_GROUPS.1)?;
                    let resp = conn.send(&delete_groups_request(group), version).await?;
                    let r = resp.results.iter().find(|r| *r.group_id.0 == **group).ok_or_else(|| Error::Protocol {
                        addr: conn.addr().to_string(),
                        reason: format!("DeleteGroups response has no result for `{group}`"),
                    })?;
                    check(r.error_code, None, || format!("delete group `{group}`"))
                })
                .await;
            if let Err(e) = result {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests {
    use bytes::{BufMut, BytesMut};
    use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition;
    use kafka_protocol::messages::ConsumerProtocolAssignment;
    use kafka_protocol::messages::TopicName;
    use kafka_protocol::protocol::Encodable;

    use super::*;

    fn encoded(version: i16, parts: &[(&str, &[i32])]) -> Bytes {
        let a = ConsumerProtocolAssignment::default().with_assigned_partitions(
            parts.iter().map(|(t, ps)| TopicPartition::default().with_topic(TopicName(sb(t))).with_partitions(ps.to_vec())).collect(),
        );
        let mut buf = BytesMut::new();
        buf.put_i16(version);
        a.encode(&mut buf, version.min(3)).unwrap();
        buf.freeze()
    }

    #[test]
    fn assignment_decodes_at_every_version() {
        for v in 0..=3 {
            let got = decode_assignment(&encoded(v, &[("orders", &[0, 2]), ("audit", &[1])]));
            assert_eq!(got, vec![("orders".to_string(), vec![0, 2]), ("audit".to_string(), vec![1])], "v{v}");
        }
    }

    #[test]
    fn newer_assignment_versions_read_as_the_newest_known() {
        let mut bytes = BytesMut::from(&encoded(3, &[("t", &[5])])[..]);
        bytes[0..2].copy_from_slice(&7i16.to_be_bytes());
        bytes.put_slice(b"future fields");
        assert_eq!(decode_assignment(&bytes.freeze()), vec![("t".to_string(), vec![5])]);
    }

    #[test]
    fn garbage_assignment_is_empty() {
        assert!(decode_assignment(&Bytes::new()).is_empty());
        assert!(decode_assignment(&Bytes::from_static(&[0])).is_empty());
        assert!(decode_assignment(&Bytes::from_static(&[0xff, 0xff, 0, 0, 0, 1])).is_empty());
        // Claims a billion topics but holds a few bytes.
        assert!(decode_assignment(&Bytes::from_static(&[0, 0, 0x3b, 0x9a, 0xca, 0x00, 1, 2])).is_empty());
        // A topic name longer than the bytes present.
        assert!(decode_assignment(&Bytes::from_static(&[0, 1, 0, 0, 0, 1, 0, 50, b'a'])).is_empty());
    }

    #[test]
    fn requests_encode_at_every_allowed_version() {
        for v in LIST_GROUPS.0..=LIST_GROUPS.1 {
            ListGroupsRequest::default().encode(&mut BytesMut::new(), v).unwrap();
        }
        for v in DESCRIBE_GROUPS.0..=DESCRIBE_GROUPS.1 {
            describe_groups_request("g").encode(&mut BytesMut::new(), v).unwrap();
        }
        for v in DELETE_GROUPS.0..=DELETE_GROUPS.1 {
            delete_groups_request("g").encode(&mut BytesMut::new(), v).unwrap();
        }
    }
}
