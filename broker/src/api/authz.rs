//! Authorization of every API (when `authorizer.enabled`): what each request needs, in
//! Kafka's terms, and the Kafka error a refused part gets. Checks run before a handler:
//! refused topics are taken out of the request and answered here, and a request refused
//! as a whole (its group, transactional id or the cluster) never reaches its handler.

use std::sync::Arc;

use kafka_protocol::messages::fetch_response::FetchableTopicResponse;
use kafka_protocol::messages::list_offsets_response::ListOffsetsTopicResponse;
use kafka_protocol::messages::metadata_response::MetadataResponseTopic;
use kafka_protocol::messages::offset_commit_response::OffsetCommitResponseTopic;
use kafka_protocol::messages::produce_response::TopicProduceResponse;
use kafka_protocol::messages::*;
use kafka_protocol::ResponseError;

use super::Connection;
use crate::meta::Image;
use crate::security::acl::{self, Operation, ResourceType, CLUSTER};
use crate::server::BrokerState;

/// One connection's view of the ACLs for one request.
pub struct Access {
    enabled: bool,
    principal: String,
    host: String,
    image: Option<Arc<Image>>,
    super_users: Arc<Vec<String>>,
}

impl Access {
    /// The view for a request on `conn` (nothing is read or copied while the authorizer
    /// is off: this runs on every request).
    pub fn new(state: &BrokerState, conn: &Connection) -> Access {
        let enabled = state.authz.enabled;
        let (principal, host) = if enabled { (conn.principal.clone(), conn.peer.ip().to_canonical().to_string()) } else { Default::default() };
        Access { enabled, principal, host, image: enabled.then(|| state.image()), super_users: state.authz.super_users.clone() }
    }

    /// Whether this principal may do `op` on the resource.
    pub fn can(&self, rt: ResourceType, name: &str, op: Operation) -> bool {
        match &self.image {
            None => true,
            Some(img) => acl::authorized(&img.acls, &self.super_users, &self.principal, &self.host, rt, name, op),
        }
    }

    /// Whether the authorizer is on.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// `op` on the cluster.
    pub fn cluster(&self, op: Operation) -> bool {
        self.can(ResourceType::Cluster, CLUSTER, op)
    }

    /// Describe on the topic.
    pub fn topic(&self, name: &str, op: Operation) -> bool {
        self.can(ResourceType::Topic, name, op)
    }

    /// Creating `topic`: Create on the cluster or on the topic.
    pub fn create_topic(&self, topic: &str) -> bool {
        self.cluster(Operation::Create) || self.topic(topic, Operation::Create)
    }

    /// An idempotent producer: IdempotentWrite on the cluster, or Write on some topic
    /// (KIP-679).
    pub fn idempotent(&self) -> bool {
        let Some(img) = &self.image else { return true };
        self.cluster(Operation::IdempotentWrite)
            || self.super_users.contains(&self.principal)
            || img.acls.iter().any(|b| {
                b.allow
                    && b.resource_type == ResourceType::Topic
                    && matches!(b.operation, Operation::Write | Operation::All)
                    && (b.principal == self.principal || b.principal == "User:*")
                    && (b.host == "*" || b.host == self.host)
            })
    }

    /// A topic's name from a request that may name it by id.
    pub fn topic_name(&self, name: &str, id: &uuid::Uuid) -> String {
        if !name.is_empty() || id.is_nil() {
            return name.to_string();
        }
        self.image.as_ref().and_then(|img| img.topics.values().find(|t| t.id == *id).map(|t| t.name.clone())).unwrap_or_default()
    }
}

/// Takes the items `allowed` refuses out of `items`, returning them.
pub fn take<T>(items: &mut Vec<T>, allowed: impl Fn(&T) -> bool) -> Vec<T> {
    let (keep, refused): (Vec<T>, Vec<T>) = std::mem::take(items).into_iter().partition(|t| allowed(t));
    *items = keep;
    refused
}

const TOPIC: ResponseError = ResponseError::TopicAuthorizationFailed;

/// Produce: Write on each topic; a transactional producer also needs Write on its id.
pub fn produce(acc: &Access, req: &mut ProduceRequest) -> Vec<TopicProduceResponse> {
    let txn_ok = req.transactional_id.as_ref().is_none_or(|id| acc.can(ResourceType::TransactionalId, id, Operation::Write));
    let refused = take(&mut req.topic_data, |t| txn_ok && acc.topic(&t.name, Operation::Write));
    let code = if txn_ok { TOPIC } else { ResponseError::TransactionalIdAuthorizationFailed };
    refused
        .into_iter()
        .map(|t| {
            let mut r = TopicProduceResponse::default();
            r.name = t.name;
            r.topic_id = t.topic_id;
            r.partition_responses = t
                .partition_data
                .into_iter()
                .map(|p| {
                    let mut pr = produce_response::PartitionProduceResponse::default();
                    pr.index = p.index;
                    pr.error_code = code.code();
                    pr.base_offset = -1;
                    pr.log_append_time_ms = -1;
                    pr.log_start_offset = -1;
                    pr
                })
                .collect();
            r
        })
        .collect()
}

/// Fetch: Read on each topic; a follower's fetch (replica id set) needs ClusterAction.
pub fn fetch(acc: &Access, req: &mut FetchRequest) -> Vec<FetchableTopicResponse> {
    if !acc.enabled() {
        return Vec::new();
    }
    let replica = req.replica_id.0 >= 0 || req.replica_state.replica_id.0 >= 0;
    let cluster_action = replica && acc.cluster(Operation::ClusterAction);
    let refused = take(&mut req.topics, |t| if replica { cluster_action } else { acc.topic(&acc.topic_name(&t.topic, &t.topic_id), Operation::Read) });
    refused
        .into_iter()
        .map(|t| {
            let mut r = FetchableTopicResponse::default();
            r.topic = t.topic;
            r.topic_id = t.topic_id;
            r.partitions = t
                .partitions
                .into_iter()
                .map(|p| {
                    let mut pd = fetch_response::PartitionData::default();
                    pd.partition_index = p.partition;
                    pd.error_code = TOPIC.code();
                    pd.high_watermark = -1;
                    pd.last_stable_offset = -1;
                    pd.log_start_offset = -1;
                    pd
                })
                .collect();
            r
        })
        .collect()
}

/// ListOffsets: Describe on each topic.
pub fn list_offsets(acc: &Access, req: &mut ListOffsetsRequest) -> Vec<ListOffsetsTopicResponse> {
    take(&mut req.topics, |t| acc.topic(&t.name, Operation::Describe))
        .into_iter()
        .map(|t| {
            let mut r = ListOffsetsTopicResponse::default();
            r.name = t.name;
            r.partitions = t
                .partitions
                .into_iter()
                .map(|p| {
                    let mut pr = list_offsets_response::ListOffsetsPartitionResponse::default();
                    pr.partition_index = p.partition_index;
                    pr.error_code = TOPIC.code();
                    pr.timestamp = -1;
                    pr.offset = -1;
                    pr
                })
                .collect();
            r
        })
        .collect()
}

/// Metadata, before: unknown topics the principal may not create are taken out (so they
/// are not auto-created); their answers.
pub fn metadata_before(acc: &Access, req: &mut MetadataRequest) -> Vec<MetadataResponseTopic> {
    let (Some(img), Some(topics)) = (&acc.image, req.topics.as_mut()) else { return Vec::new() };
    let refused = take(topics, |t| t.name.as_ref().is_none_or(|n| img.topic(n).is_some() || !req.allow_auto_topic_creation || acc.create_topic(n)));
    refused
        .into_iter()
        .map(|t| {
            let name = t.name.map(|n| n.to_string()).unwrap_or_default();
            let mut r = MetadataResponseTopic::default();
            r.error_code = if acc.topic(&name, Operation::Describe) { ResponseError::UnknownTopicOrPartition.code() } else { TOPIC.code() };
            r.name = Some(TopicName(super::sb(name)));
            r
        })
        .collect()
}

/// Metadata, after: topics the principal may not describe are left out of a full listing,
/// and answered TOPIC_AUTHORIZATION_FAILED when asked for by name.
pub fn metadata_after(acc: &Access, listed_all: bool, resp: &mut MetadataResponse, refused: Vec<MetadataResponseTopic>) {
    if !acc.enabled() {
        return;
    }
    let hidden = take(&mut resp.topics, |t| t.name.as_ref().is_some_and(|n| acc.topic(n, Operation::Describe)));
    if !listed_all {
        for mut t in hidden {
            t.error_code = TOPIC.code();
            t.partitions.clear();
            t.topic_id = uuid::Uuid::nil();
            resp.topics.push(t);
        }
    }
    resp.topics.extend(refused);
}

/// OffsetCommit: Read on the group (else every partition fails), then Read on each topic.
pub fn offset_commit(acc: &Access, req: &mut OffsetCommitRequest) -> Vec<OffsetCommitResponseTopic> {
    let group_ok = acc.can(ResourceType::Group, &req.group_id, Operation::Read);
    let code = if group_ok { TOPIC } else { ResponseError::GroupAuthorizationFailed };
    take(&mut req.topics, |t| group_ok && acc.topic(&t.name, Operation::Read))
        .into_iter()
        .map(|t| {
            let mut r = OffsetCommitResponseTopic::default();
            r.name = t.name;
            r.topic_id = t.topic_id;
            r.partitions = t
                .partitions
                .into_iter()
                .map(|p| {
                    let mut pr = offset_commit_response::OffsetCommitResponsePartition::default();
                    pr.partition_index = p.partition_index;
                    pr.error_code = code.code();
                    pr
                })
                .collect();
            r
        })
        .collect()
}

/// OffsetFetch, after: topics the principal may not describe are left out.
pub fn offset_fetch_topics(acc: &Access, resp: &mut OffsetFetchResponse) {
    if !acc.enabled() {
        return;
    }
    take(&mut resp.topics, |t| acc.topic(&t.name, Operation::Describe));
    for g in &mut resp.groups {
        take(&mut g.topics, |t| acc.topic(&t.name, Operation::Describe));
    }
}

/// The error of a request refused as a whole, if it is: group APIs, transactional APIs,
/// cluster APIs.
pub fn refused(acc: &Access, request: &super::Request) -> Option<ResponseError> {
    use super::Request as R;
    use Operation::*;
    use ResourceType::{Group, TransactionalId as Txn};
    if !acc.enabled() {
        return None;
    }
    let group = |g: &str, op| (!acc.can(Group, g, op)).then_some(ResponseError::GroupAuthorizationFailed);
    let txn = |t: &str| (!acc.can(Txn, t, Write)).then_some(ResponseError::TransactionalIdAuthorizationFailed);
    let cluster = |op| (!acc.cluster(op)).then_some(ResponseError::ClusterAuthorizationFailed);
    match request {
        R::JoinGroup(r) => group(&r.group_id, Read),
        R::SyncGroup(r) => group(&r.group_id, Read),
        R::Heartbeat(r) => group(&r.group_id, Read),
        R::LeaveGroup(r) => group(&r.group_id, Read),
        R::OffsetDelete(r) => group(&r.group_id, Delete),
        R::InitProducerId(r) => match &r.transactional_id {
            Some(id) => txn(id),
            None => (!acc.idempotent()).then_some(ResponseError::ClusterAuthorizationFailed),
        },
        R::AddPartitionsToTxn(r) => txn(&r.v3_and_below_transactional_id),
        R::AddOffsetsToTxn(r) => txn(&r.transactional_id).or_else(|| group(&r.group_id, Read)),
        R::EndTxn(r) => txn(&r.transactional_id),
        R::TxnOffsetCommit(r) => txn(&r.transactional_id).or_else(|| group(&r.group_id, Read)),
        R::WriteTxnMarkers(_) => cluster(ClusterAction),
        R::CreateAcls(_) | R::DeleteAcls(_) => cluster(Alter),
        R::DescribeAcls(_) | R::DescribeUserScramCredentials(_) => cluster(Describe),
        _ => None,
    }
}
