//! Request dispatch: one `match` from API key to a handler, one module per API family.
//!
//! Each handler decodes nothing itself: [`handle`] decodes the typed request with
//! kafka-protocol at the negotiated version, the handler calls the domain objects
//! (topics, logs, coordinator) and returns a typed response, which is encoded here at the
//! same version. Kafka error codes are data in those responses.

mod acls;
mod admin;
pub mod authz;
mod configs;
mod fetch;
mod groups;
mod metadata;
mod offsets;
mod produce;
mod producer_id;
mod scram;
mod txn;

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use kafka_protocol::ResponseError;
use samsa_client::wire::header;

use crate::server::BrokerState;
use crate::topics::Partition;

/// The local replica of a partition if this broker leads it; otherwise Kafka's error for
/// the client (unknown partition, or not the leader: refresh metadata).
pub(crate) fn leader_partition(state: &BrokerState, topic: &str, index: i32) -> Result<Arc<Partition>, ResponseError> {
    let known = state.image().partition(topic, index).is_some();
    if !known {
        return Err(ResponseError::UnknownTopicOrPartition);
    }
    match state.topics.partition(topic, index) {
        Some(p) if p.replica.lock().expect("replica lock").is_leader() => Ok(p),
        _ => Err(ResponseError::NotLeaderOrFollower),
    }
}

/// Checks a request's `current_leader_epoch` (-1: not given) against the leader's.
pub(crate) fn check_epoch(p: &Partition, requested: i32) -> Result<(), ResponseError> {
    let epoch = p.replica.lock().expect("replica lock").leader_epoch;
    match requested {
        -1 => Ok(()),
        e if e < epoch => Err(ResponseError::FencedLeaderEpoch),
        e if e > epoch => Err(ResponseError::UnknownLeaderEpoch),
        _ => Ok(()),
    }
}

/// What to do after a request.
pub enum Outcome {
    /// Send these bytes (without the size prefix).
    Respond(Bytes),
    /// Send nothing (Produce with acks=0).
    NoResponse,
    /// Close the connection, logging the reason.
    Close(String),
    /// Send these bytes, then close (a failed SASL exchange), logging the reason.
    RespondAndClose(Bytes, String),
}

/// Per-connection facts handlers may need.
pub struct Connection {
    /// The client's address.
    pub peer: SocketAddr,
    /// The listener it came in on (Metadata answers with that listener's addresses).
    pub listener: Arc<str>,
    /// Who it acts as (`User:NAME`; `User:ANONYMOUS` when not authenticated).
    pub principal: String,
}

/// The API versions this broker serves. Only implemented versions are advertised:
/// Produce stops at 11 and the transaction APIs at their pre-KIP-890 versions
/// (transactions v1), Fetch at 16, and APIs that address topics by id only from a version
/// this broker resolves ids for.
pub const SUPPORTED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 11),
    (ApiKey::Fetch, 4, 16),
    (ApiKey::ListOffsets, 1, 8),
    (ApiKey::Metadata, 0, 12),
    (ApiKey::OffsetCommit, 2, 9),
    (ApiKey::OffsetFetch, 1, 9),
    (ApiKey::FindCoordinator, 0, 4),
    (ApiKey::JoinGroup, 0, 9),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::ListGroups, 0, 5),
    (ApiKey::ApiVersions, 0, 4),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::DeleteRecords, 0, 2),
    (ApiKey::OffsetForLeaderEpoch, 2, 4),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::AlterConfigs, 0, 2),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::OffsetDelete, 0, 0),
    (ApiKey::DescribeCluster, 0, 1),
    (ApiKey::InitProducerId, 0, 4),
    (ApiKey::AddPartitionsToTxn, 0, 3),
    (ApiKey::AddOffsetsToTxn, 0, 3),
    (ApiKey::EndTxn, 0, 3),
    (ApiKey::WriteTxnMarkers, 1, 1),
    (ApiKey::TxnOffsetCommit, 0, 3),
    (ApiKey::DescribeProducers, 0, 0),
    (ApiKey::DescribeTransactions, 0, 0),
    (ApiKey::ListTransactions, 0, 1),
    // v0 too: librdkafka takes v0 as the sign that SASL is served at all (after a v0
    // handshake, tokens travel as bare frames; after v1, in SaslAuthenticate).
    (ApiKey::SaslHandshake, 0, 1),
    (ApiKey::SaslAuthenticate, 0, 2),
    (ApiKey::DescribeUserScramCredentials, 0, 0),
    (ApiKey::AlterUserScramCredentials, 0, 0),
    (ApiKey::CreateAcls, 1, 3),
    (ApiKey::DescribeAcls, 1, 3),
    (ApiKey::DeleteAcls, 1, 3),
];

/// Supported version range of an API, if it is served at all.
pub fn supported(key: ApiKey) -> Option<(i16, i16)> {
    SUPPORTED.iter().find(|(k, _, _)| *k == key).map(|&(_, lo, hi)| (lo, hi))
}

/// Builds a `StrBytes` from any string.
pub(crate) fn sb(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}

/// Kafka error code of an optional error.
pub(crate) fn code(e: Option<ResponseError>) -> i16 {
    e.map(|e| e.code()).unwrap_or(0)
}

/// A response's bytes, or an empty frame body if it cannot be encoded (a bug, logged).
pub(crate) fn encode_bytes<R: Encodable>(key: ApiKey, version: i16, correlation_id: i32, resp: &R) -> Bytes {
    match encode(key, version, correlation_id, resp) {
        Outcome::Respond(b) => b,
        _ => Bytes::new(),
    }
}

/// ApiVersions' answer (v0 error answer handled by [`decode`]).
pub(crate) fn api_versions(key: ApiKey, version: i16, correlation_id: i32) -> Outcome {
    encode(key, version, correlation_id, &api_versions_response(None))
}

pub(crate) fn encode<R: Encodable>(key: ApiKey, version: i16, correlation_id: i32, resp: &R) -> Outcome {
    let mut buf = BytesMut::new();
    let mut h = ResponseHeader::default();
    h.correlation_id = correlation_id;
    if let Err(e) = h.encode(&mut buf, key.response_header_version(version)) {
        return Outcome::Close(format!("cannot encode {key:?} v{version} response header: {e}"));
    }
    match resp.encode(&mut buf, version) {
        Ok(()) => Outcome::Respond(buf.freeze()),
        // A response this broker cannot encode is a bug; the client gets a closed
        // connection (and retries) rather than a wrong answer.
        Err(e) => {
            tracing::error!("BUG: cannot encode {key:?} v{version} response: {e}");
            Outcome::Close(format!("cannot encode {key:?} v{version} response: {e}"))
        }
    }
}

fn api_versions_response(error: Option<ResponseError>) -> ApiVersionsResponse {
    let mut r = ApiVersionsResponse::default();
    r.error_code = code(error);
    r.api_keys = SUPPORTED
        .iter()
        .map(|&(k, lo, hi)| {
            let mut v = ApiVersion::default();
            v.api_key = k as i16;
            v.min_version = lo;
            v.max_version = hi;
            v
        })
        .collect();
    r
}

/// Generates [`Request`] (one variant per served API) and its decoder.
macro_rules! requests {
    ($($variant:ident => $ty:ty),* $(,)?) => {
        /// A decoded request of an API this broker serves.
        #[allow(missing_docs)]
        pub enum Request {
            $($variant($ty),)*
        }

        fn decode_body(key: ApiKey, version: i16, body: &mut Bytes) -> Result<Request, String> {
            match key {
                $(ApiKey::$variant => <$ty>::decode(body, version)
                    .map(Request::$variant)
                    .map_err(|e| format!("malformed {key:?} v{version} request: {e}")),)*
                other => Err(format!("{other:?} is advertised but has no decoder")),
            }
        }
    };
}

requests! {
    ApiVersions => ApiVersionsRequest,
    Metadata => MetadataRequest,
    Produce => ProduceRequest,
    Fetch => FetchRequest,
    ListOffsets => ListOffsetsRequest,
    OffsetForLeaderEpoch => OffsetForLeaderEpochRequest,
    CreateTopics => CreateTopicsRequest,
    DeleteTopics => DeleteTopicsRequest,
    CreatePartitions => CreatePartitionsRequest,
    DeleteRecords => DeleteRecordsRequest,
    DescribeCluster => DescribeClusterRequest,
    DescribeConfigs => DescribeConfigsRequest,
    AlterConfigs => AlterConfigsRequest,
    IncrementalAlterConfigs => IncrementalAlterConfigsRequest,
    FindCoordinator => FindCoordinatorRequest,
    JoinGroup => JoinGroupRequest,
    SyncGroup => SyncGroupRequest,
    Heartbeat => HeartbeatRequest,
    LeaveGroup => LeaveGroupRequest,
    ListGroups => ListGroupsRequest,
    DescribeGroups => DescribeGroupsRequest,
    DeleteGroups => DeleteGroupsRequest,
    OffsetCommit => OffsetCommitRequest,
    OffsetFetch => OffsetFetchRequest,
    OffsetDelete => OffsetDeleteRequest,
    InitProducerId => InitProducerIdRequest,
    AddPartitionsToTxn => AddPartitionsToTxnRequest,
    AddOffsetsToTxn => AddOffsetsToTxnRequest,
    EndTxn => EndTxnRequest,
    WriteTxnMarkers => WriteTxnMarkersRequest,
    TxnOffsetCommit => TxnOffsetCommitRequest,
    DescribeProducers => DescribeProducersRequest,
    DescribeTransactions => DescribeTransactionsRequest,
    ListTransactions => ListTransactionsRequest,
    SaslHandshake => SaslHandshakeRequest,
    SaslAuthenticate => SaslAuthenticateRequest,
    DescribeUserScramCredentials => DescribeUserScramCredentialsRequest,
    AlterUserScramCredentials => AlterUserScramCredentialsRequest,
    CreateAcls => CreateAclsRequest,
    DescribeAcls => DescribeAclsRequest,
    DeleteAcls => DeleteAclsRequest,
}

/// A request decoded from one frame body, ready to execute.
pub struct Decoded {
    /// The API.
    pub key: ApiKey,
    /// Negotiated version.
    pub version: i16,
    /// Correlation id to echo.
    pub correlation_id: i32,
    /// The client's `client.id`.
    pub client_id: String,
    /// The typed request.
    pub request: Request,
}

/// Decodes a frame body without executing anything: pure, so it is what the fuzz target
/// drives. `Err` carries the outcome to send instead (an answer, or a closed connection).
pub fn decode(mut body: Bytes) -> Result<Decoded, Outcome> {
    let Some(peek) = header::peek(&body) else {
        return Err(Outcome::Close(format!("request of {} bytes is shorter than a request header", body.len())));
    };
    let Ok(key) = ApiKey::try_from(peek.api_key) else {
        return Err(Outcome::Close(format!("unknown api key {} (correlation id {})", peek.api_key, peek.correlation_id)));
    };
    let version = peek.api_version;
    let Some((lo, hi)) = supported(key) else {
        return Err(unsupported_api(key, version, &mut body));
    };
    if version < lo || version > hi {
        if key == ApiKey::ApiVersions {
            // KIP-511: answer in v0 with the supported list; the client retries lower.
            return Err(encode(key, 0, peek.correlation_id, &api_versions_response(Some(ResponseError::UnsupportedVersion))));
        }
        return Err(Outcome::Close(format!("{key:?} v{version} is not supported (this broker serves v{lo}-v{hi})")));
    }
    let (_, hdr) = header::decode(&mut body).map_err(|e| Outcome::Close(e.to_string()))?;
    let request = decode_body(key, version, &mut body).map_err(Outcome::Close)?;
    let client_id = hdr.client_id.as_ref().map(|s| s.to_string()).unwrap_or_default();
    Ok(Decoded { key, version, correlation_id: peek.correlation_id, client_id, request })
}

/// Decodes one request, runs its handler and encodes the response.
pub async fn handle(state: &Arc<BrokerState>, conn: &Connection, body: Bytes) -> Outcome {
    match decode(body) {
        Ok(d) => execute(state, conn, d).await,
        Err(outcome) => outcome,
    }
}

/// Runs a decoded request's handler and encodes the response. SASL requests reach here
/// only outside an exchange (a non-SASL listener, or after authentication): they are out
/// of place.
pub async fn execute(state: &Arc<BrokerState>, conn: &Connection, d: Decoded) -> Outcome {
    let Decoded { key, version: v, correlation_id: cid, client_id, request } = d;
    let acc = authz::Access::new(state, conn);
    if let Some(error) = authz::refused(&acc, &request) {
        return refusal(key, v, cid, request, error);
    }
    // As Kafka: the ACL APIs answer SECURITY_DISABLED while the authorizer is off.
    if !state.authz.enabled && matches!(request, Request::CreateAcls(_) | Request::DescribeAcls(_) | Request::DeleteAcls(_)) {
        return refusal(key, v, cid, request, ResponseError::SecurityDisabled);
    }
    use crate::security::acl::{Operation as Op, ResourceType as Rt};
    match request {
        Request::SaslHandshake(_) => {
            let mut r = SaslHandshakeResponse::default();
            r.error_code = ResponseError::IllegalSaslState.code();
            encode(key, v, cid, &r)
        }
        Request::SaslAuthenticate(_) => {
            let mut r = SaslAuthenticateResponse::default();
            r.error_code = ResponseError::IllegalSaslState.code();
            r.error_message = Some(sb("SaslAuthenticate is out of place: this listener does not use SASL, or the connection is already authenticated"));
            encode(key, v, cid, &r)
        }
        Request::AlterUserScramCredentials(r) => {
            // The first user may be made from a loopback client on a PLAINTEXT listener.
            let bootstrap = state.image().scram.is_empty() && conn.peer.ip().to_canonical().is_loopback() && conn.principal == crate::security::ANONYMOUS;
            if !(bootstrap || acc.cluster(Op::Alter)) {
                let mut resp = AlterUserScramCredentialsResponse::default();
                let users: std::collections::BTreeSet<String> = r.deletions.iter().map(|d| d.name.to_string()).chain(r.upsertions.iter().map(|u| u.name.to_string())).collect();
                for u in users {
                    let mut res = alter_user_scram_credentials_response::AlterUserScramCredentialsResult::default();
                    res.user = sb(u);
                    res.error_code = ResponseError::ClusterAuthorizationFailed.code();
                    resp.results.push(res);
                }
                return encode(key, v, cid, &resp);
            }
            encode(key, v, cid, &scram::alter(state, r).await)
        }
        Request::DescribeUserScramCredentials(r) => encode(key, v, cid, &scram::describe(state, r)),
        Request::CreateAcls(r) => encode(key, v, cid, &acls::create(state, r).await),
        Request::DescribeAcls(r) => encode(key, v, cid, &acls::describe(state, r)),
        Request::DeleteAcls(r) => encode(key, v, cid, &acls::delete(state, r).await),
        Request::ApiVersions(_) => api_versions(key, v, cid),
        Request::Metadata(mut r) => {
            // v0 asks for every topic with an empty list.
            let listed_all = r.topics.as_ref().is_none_or(|t| v == 0 && t.is_empty());
            let refused = authz::metadata_before(&acc, &mut r);
            let mut resp = metadata::metadata(state, conn, r, v).await;
            authz::metadata_after(&acc, listed_all, &mut resp, refused);
            encode(key, v, cid, &resp)
        }
        Request::Produce(mut r) => {
            let acks = r.acks;
            let refused = authz::produce(&acc, &mut r);
            let denied = !refused.is_empty();
            let mut resp = produce::produce(state, r, v).await;
            resp.responses.extend(refused);
            if acks == 0 {
                // Kafka closes the connection so an acks=0 producer learns of the refusal.
                if denied {
                    return Outcome::Close("acks=0 produce to a topic this principal may not write".into());
                }
                Outcome::NoResponse
            } else {
                encode(key, v, cid, &resp)
            }
        }
        Request::Fetch(mut r) => {
            let refused = authz::fetch(&acc, &mut r);
            let mut resp = fetch::fetch(state, r, v).await;
            resp.responses.extend(refused);
            encode(key, v, cid, &resp)
        }
        Request::ListOffsets(mut r) => {
            let refused = authz::list_offsets(&acc, &mut r);
            let mut resp = fetch::list_offsets(state, r, v);
            resp.topics.extend(refused);
            encode(key, v, cid, &resp)
        }
        Request::OffsetForLeaderEpoch(mut r) => {
            // A replica's request (replica id set) needs ClusterAction; a client's, Describe.
            let replica = r.replica_id.0 >= 0;
            let replica_ok = !replica || acc.cluster(Op::ClusterAction);
            let refused = authz::take(&mut r.topics, |t| if replica { replica_ok } else { acc.topic(&t.topic, Op::Describe) });
            let refusal = if replica { ResponseError::ClusterAuthorizationFailed } else { ResponseError::TopicAuthorizationFailed };
            let mut resp = fetch::offset_for_leader_epoch(state, r);
            resp.topics.extend(refused.into_iter().map(|t| {
                let mut tr = offset_for_leader_epoch_response::OffsetForLeaderTopicResult::default();
                tr.topic = t.topic;
                tr.partitions = t.partitions.iter().map(|p| {
                    let mut e = offset_for_leader_epoch_response::EpochEndOffset::default();
                    e.partition = p.partition;
                    e.error_code = refusal.code();
                    e.leader_epoch = -1;
                    e.end_offset = -1;
                    e
                }).collect();
                tr
            }));
            encode(key, v, cid, &resp)
        }
        Request::CreateTopics(mut r) => {
            let refused = authz::take(&mut r.topics, |t| acc.create_topic(&t.name));
            let mut resp = admin::create_topics(state, r, v).await;
            resp.topics.extend(refused.into_iter().map(|t| {
                let mut res = create_topics_response::CreatableTopicResult::default();
                res.name = t.name;
                res.error_code = ResponseError::TopicAuthorizationFailed.code();
                res.error_message = Some(sb("not authorized to create this topic (needs Create on the topic or the cluster)"));
                res.num_partitions = -1;
                res.replication_factor = -1;
                res
            }));
            encode(key, v, cid, &resp)
        }
        Request::DeleteTopics(mut r) => {
            let refused_names = authz::take(&mut r.topic_names, |t| acc.topic(t, Op::Delete));
            let refused_states = authz::take(&mut r.topics, |t| acc.topic(&acc.topic_name(t.name.as_deref().map_or("", |n| n.as_str()), &t.topic_id), Op::Delete));
            let mut resp = admin::delete_topics(state, r, v).await;
            let refused = refused_names.into_iter().map(|n| (Some(n), uuid::Uuid::nil())).chain(refused_states.into_iter().map(|t| (t.name, t.topic_id)));
            resp.responses.extend(refused.map(|(name, id)| {
                let mut res = delete_topics_response::DeletableTopicResult::default();
                res.name = name;
                res.topic_id = id;
                res.error_code = ResponseError::TopicAuthorizationFailed.code();
                res
            }));
            encode(key, v, cid, &resp)
        }
        Request::CreatePartitions(mut r) => {
            let refused = authz::take(&mut r.topics, |t| acc.topic(&t.name, Op::Alter));
            let mut resp = admin::create_partitions(state, r).await;
            resp.results.extend(refused.into_iter().map(|t| {
                let mut res = create_partitions_response::CreatePartitionsTopicResult::default();
                res.name = t.name;
                res.error_code = ResponseError::TopicAuthorizationFailed.code();
                res
            }));
            encode(key, v, cid, &resp)
        }
        Request::DeleteRecords(mut r) => {
            let refused = authz::take(&mut r.topics, |t| acc.topic(&t.name, Op::Delete));
            let mut resp = admin::delete_records(state, r);
            resp.topics.extend(refused.into_iter().map(|t| {
                let mut tr = delete_records_response::DeleteRecordsTopicResult::default();
                tr.name = t.name;
                tr.partitions = t.partitions.iter().map(|p| {
                    let mut pr = delete_records_response::DeleteRecordsPartitionResult::default();
                    pr.partition_index = p.partition_index;
                    pr.low_watermark = -1;
                    pr.error_code = ResponseError::TopicAuthorizationFailed.code();
                    pr
                }).collect();
                tr
            }));
            encode(key, v, cid, &resp)
        }
        Request::DescribeCluster(r) => encode(key, v, cid, &metadata::describe_cluster(state, conn, r, v)),
        Request::DescribeConfigs(mut r) => {
            let refused = authz::take(&mut r.resources, |res| config_allowed(&acc, res.resource_type, &res.resource_name, Op::DescribeConfigs));
            let mut resp = configs::describe_configs(state, r, v);
            resp.results.extend(refused.into_iter().map(|res| {
                let mut out = describe_configs_response::DescribeConfigsResult::default();
                out.error_code = config_refusal(res.resource_type).code();
                out.resource_type = res.resource_type;
                out.resource_name = res.resource_name;
                out
            }));
            encode(key, v, cid, &resp)
        }
        Request::AlterConfigs(mut r) => {
            let refused = authz::take(&mut r.resources, |res| config_allowed(&acc, res.resource_type, &res.resource_name, Op::AlterConfigs));
            let mut resp = configs::alter_configs(state, r).await;
            resp.responses.extend(refused.into_iter().map(|res| config_refused(res.resource_type, res.resource_name)));
            encode(key, v, cid, &resp)
        }
        Request::IncrementalAlterConfigs(mut r) => {
            let refused = authz::take(&mut r.resources, |res| config_allowed(&acc, res.resource_type, &res.resource_name, Op::AlterConfigs));
            let mut resp = configs::incremental_alter_configs(state, r).await;
            resp.responses.extend(refused.into_iter().map(|res| {
                let a = config_refused(res.resource_type, res.resource_name);
                let mut b = incremental_alter_configs_response::AlterConfigsResourceResponse::default();
                (b.error_code, b.resource_type, b.resource_name) = (a.error_code, a.resource_type, a.resource_name);
                b
            }));
            encode(key, v, cid, &resp)
        }
        Request::FindCoordinator(mut r) => {
            // Checked first: an unauthorized lookup creates no coordinator topic.
            let (rt, error) = if v >= 1 && r.key_type == 1 { (Rt::TransactionalId, ResponseError::TransactionalIdAuthorizationFailed) } else { (Rt::Group, ResponseError::GroupAuthorizationFailed) };
            if v < 4 && !acc.can(rt, &r.key, Op::Describe) {
                let mut resp = FindCoordinatorResponse::default();
                (resp.error_code, resp.node_id, resp.host, resp.port) = (error.code(), BrokerId(-1), sb(""), -1);
                return encode(key, v, cid, &resp);
            }
            let refused = authz::take(&mut r.coordinator_keys, |k| acc.can(rt, k, Op::Describe));
            let mut resp = if v >= 4 && r.coordinator_keys.is_empty() { FindCoordinatorResponse::default() } else { groups::find_coordinator(state, conn, r, v).await };
            resp.coordinators.extend(refused.into_iter().map(|k| {
                let mut c = find_coordinator_response::Coordinator::default();
                (c.key, c.error_code, c.node_id, c.host, c.port) = (k, error.code(), BrokerId(-1), sb(""), -1);
                c
            }));
            encode(key, v, cid, &resp)
        }
        Request::JoinGroup(r) => encode(key, v, cid, &groups::join_group(state, conn, &client_id, r, v).await),
        Request::SyncGroup(r) => encode(key, v, cid, &groups::sync_group(state, r, v).await),
        Request::Heartbeat(r) => encode(key, v, cid, &groups::heartbeat(state, r)),
        Request::LeaveGroup(r) => encode(key, v, cid, &groups::leave_group(state, r, v)),
        Request::ListGroups(r) => {
            let mut resp = groups::list_groups(state, r, v);
            if !acc.cluster(Op::Describe) {
                authz::take(&mut resp.groups, |g| acc.can(Rt::Group, &g.group_id, Op::Describe));
            }
            encode(key, v, cid, &resp)
        }
        Request::DescribeGroups(mut r) => {
            let refused = authz::take(&mut r.groups, |g| acc.can(Rt::Group, g, Op::Describe));
            let mut resp = groups::describe_groups(state, r, v);
            resp.groups.extend(refused.into_iter().map(|g| {
                let mut d = describe_groups_response::DescribedGroup::default();
                d.group_id = g;
                d.error_code = ResponseError::GroupAuthorizationFailed.code();
                d
            }));
            encode(key, v, cid, &resp)
        }
        Request::DeleteGroups(mut r) => {
            let refused = authz::take(&mut r.groups_names, |g| acc.can(Rt::Group, g, Op::Delete));
            let mut resp = groups::delete_groups(state, r);
            resp.results.extend(refused.into_iter().map(|g| {
                let mut d = delete_groups_response::DeletableGroupResult::default();
                d.group_id = g;
                d.error_code = ResponseError::GroupAuthorizationFailed.code();
                d
            }));
            encode(key, v, cid, &resp)
        }
        Request::OffsetCommit(mut r) => {
            let refused = authz::offset_commit(&acc, &mut r);
            let mut resp = if r.topics.is_empty() && !refused.is_empty() { OffsetCommitResponse::default() } else { offsets::offset_commit(state, r).await };
            resp.topics.extend(refused);
            encode(key, v, cid, &resp)
        }
        Request::OffsetFetch(mut r) => {
            // Groups the principal may not describe never reach the handler.
            if v < 8 && !acc.can(Rt::Group, &r.group_id, Op::Describe) {
                let mut resp = OffsetFetchResponse::default();
                resp.error_code = ResponseError::GroupAuthorizationFailed.code();
                for t in r.topics.into_iter().flatten() {
                    let mut tr = offset_fetch_response::OffsetFetchResponseTopic::default();
                    tr.name = t.name;
                    tr.partitions = t.partition_indexes.iter().map(|p| {
                        let mut pr = offset_fetch_response::OffsetFetchResponsePartition::default();
                        (pr.partition_index, pr.committed_offset, pr.committed_leader_epoch, pr.error_code) = (*p, -1, -1, ResponseError::GroupAuthorizationFailed.code());
                        pr
                    }).collect();
                    resp.topics.push(tr);
                }
                return encode(key, v, cid, &resp);
            }
            let refused = authz::take(&mut r.groups, |g| acc.can(Rt::Group, &g.group_id, Op::Describe));
            let mut resp = offsets::offset_fetch(state, r, v);
            authz::offset_fetch_topics(&acc, &mut resp);
            resp.groups.extend(refused.into_iter().map(|g| {
                let mut gr = offset_fetch_response::OffsetFetchResponseGroup::default();
                (gr.group_id, gr.error_code) = (g.group_id, ResponseError::GroupAuthorizationFailed.code());
                gr
            }));
            encode(key, v, cid, &resp)
        }
        Request::OffsetDelete(r) => encode(key, v, cid, &offsets::offset_delete(state, r)),
        Request::InitProducerId(r) => encode(key, v, cid, &producer_id::init_producer_id(state, r).await),
        Request::AddPartitionsToTxn(r) => {
            if let Some(t) = r.v3_and_below_topics.iter().find(|t| !acc.topic(&t.name, Op::Write)) {
                let denied = t.name.clone();
                let mut resp = AddPartitionsToTxnResponse::default();
                for t in r.v3_and_below_topics {
                    let mut tr = add_partitions_to_txn_response::AddPartitionsToTxnTopicResult::default();
                    let code = if !acc.topic(&t.name, Op::Write) || t.name == denied { ResponseError::TopicAuthorizationFailed } else { ResponseError::OperationNotAttempted };
                    tr.name = t.name;
                    tr.results_by_partition = t.partitions.iter().map(|p| {
                        let mut pr = add_partitions_to_txn_response::AddPartitionsToTxnPartitionResult::default();
                        pr.partition_index = *p;
                        pr.partition_error_code = code.code();
                        pr
                    }).collect();
                    resp.results_by_topic_v3_and_below.push(tr);
                }
                return encode(key, v, cid, &resp);
            }
            encode(key, v, cid, &txn::add_partitions_to_txn(state, r).await)
        }
        Request::AddOffsetsToTxn(r) => encode(key, v, cid, &txn::add_offsets_to_txn(state, r).await),
        Request::EndTxn(r) => encode(key, v, cid, &txn::end_txn(state, r).await),
        // From another broker (ClusterAction, checked above).
        Request::WriteTxnMarkers(r) => encode(key, v, cid, &txn::write_txn_markers(state, r).await),
        Request::TxnOffsetCommit(mut r) => {
            let refused = authz::take(&mut r.topics, |t| acc.topic(&t.name, Op::Read));
            let mut resp = txn::txn_offset_commit(state, r, v).await;
            resp.topics.extend(refused.into_iter().map(|t| {
                let mut tr = txn_offset_commit_response::TxnOffsetCommitResponseTopic::default();
                tr.name = t.name;
                tr.partitions = t.partitions.iter().map(|p| {
                    let mut pr = txn_offset_commit_response::TxnOffsetCommitResponsePartition::default();
                    pr.partition_index = p.partition_index;
                    pr.error_code = ResponseError::TopicAuthorizationFailed.code();
                    pr
                }).collect();
                tr
            }));
            encode(key, v, cid, &resp)
        }
        Request::DescribeProducers(mut r) => {
            let refused = authz::take(&mut r.topics, |t| acc.topic(&t.name, Op::Read));
            let mut resp = txn::describe_producers(state, r);
            resp.topics.extend(refused.into_iter().map(|t| {
                let mut tr = describe_producers_response::TopicResponse::default();
                tr.name = t.name;
                tr.partitions = t.partition_indexes.iter().map(|p| {
                    let mut pr = describe_producers_response::PartitionResponse::default();
                    pr.partition_index = *p;
                    pr.error_code = ResponseError::TopicAuthorizationFailed.code();
                    pr
                }).collect();
                tr
            }));
            encode(key, v, cid, &resp)
        }
        Request::DescribeTransactions(mut r) => {
            let refused = authz::take(&mut r.transactional_ids, |t| acc.can(Rt::TransactionalId, t, Op::Describe));
            let mut resp = txn::describe_transactions(state, r);
            resp.transaction_states.extend(refused.into_iter().map(|t| {
                let mut s = describe_transactions_response::TransactionState::default();
                s.transactional_id = t;
                s.error_code = ResponseError::TransactionalIdAuthorizationFailed.code();
                s
            }));
            encode(key, v, cid, &resp)
        }
        Request::ListTransactions(r) => {
            let mut resp = txn::list_transactions(state, r);
            authz::take(&mut resp.transaction_states, |t| acc.can(Rt::TransactionalId, &t.transactional_id, Op::Describe));
            encode(key, v, cid, &resp)
        }
    }
}

/// Whether a config resource (2: topic, 4: broker) may get `op`.
fn config_allowed(acc: &authz::Access, resource_type: i8, name: &str, op: crate::security::acl::Operation) -> bool {
    match resource_type {
        2 => acc.topic(name, op),
        _ => acc.cluster(op),
    }
}

fn config_refusal(resource_type: i8) -> ResponseError {
    if resource_type == 2 {
        ResponseError::TopicAuthorizationFailed
    } else {
        ResponseError::ClusterAuthorizationFailed
    }
}

fn config_refused(resource_type: i8, name: StrBytes) -> alter_configs_response::AlterConfigsResourceResponse {
    let mut r = alter_configs_response::AlterConfigsResourceResponse::default();
    r.error_code = config_refusal(resource_type).code();
    r.resource_type = resource_type;
    r.resource_name = name;
    r
}

/// The answer to a request refused as a whole (its group, transactional id or the
/// cluster), with `error` wherever the response has an error code.
fn refusal(key: ApiKey, v: i16, cid: i32, request: Request, error: ResponseError) -> Outcome {
    let code = error.code();
    match request {
        Request::JoinGroup(r) => {
            let mut resp = JoinGroupResponse::default();
            (resp.error_code, resp.generation_id, resp.member_id) = (code, -1, r.member_id);
            encode(key, v, cid, &resp)
        }
        Request::SyncGroup(_) => {
            let mut resp = SyncGroupResponse::default();
            resp.error_code = code;
            encode(key, v, cid, &resp)
        }
        Request::Heartbeat(_) => {
            let mut resp = HeartbeatResponse::default();
            resp.error_code = code;
            encode(key, v, cid, &resp)
        }
        Request::LeaveGroup(_) => {
            let mut resp = LeaveGroupResponse::default();
            resp.error_code = code;
            encode(key, v, cid, &resp)
        }
        Request::OffsetDelete(_) => {
            let mut resp = OffsetDeleteResponse::default();
            resp.error_code = code;
            encode(key, v, cid, &resp)
        }
        Request::InitProducerId(_) => {
            let mut resp = InitProducerIdResponse::default();
            (resp.error_code, resp.producer_id, resp.producer_epoch) = (code, ProducerId(-1), -1);
            encode(key, v, cid, &resp)
        }
        Request::AddPartitionsToTxn(r) => {
            let mut resp = AddPartitionsToTxnResponse::default();
            for t in r.v3_and_below_topics {
                let mut tr = add_partitions_to_txn_response::AddPartitionsToTxnTopicResult::default();
                tr.name = t.name;
                tr.results_by_partition = t.partitions.iter().map(|p| {
                    let mut pr = add_partitions_to_txn_response::AddPartitionsToTxnPartitionResult::default();
                    (pr.partition_index, pr.partition_error_code) = (*p, code);
                    pr
                }).collect();
                resp.results_by_topic_v3_and_below.push(tr);
            }
            encode(key, v, cid, &resp)
        }
        Request::AddOffsetsToTxn(_) => {
            let mut resp = AddOffsetsToTxnResponse::default();
            resp.error_code = code;
            encode(key, v, cid, &resp)
        }
        Request::EndTxn(_) => {
            let mut resp = EndTxnResponse::default();
            resp.error_code = code;
            encode(key, v, cid, &resp)
        }
        Request::TxnOffsetCommit(r) => {
            let mut resp = TxnOffsetCommitResponse::default();
            for t in r.topics {
                let mut tr = txn_offset_commit_response::TxnOffsetCommitResponseTopic::default();
                tr.name = t.name;
                tr.partitions = t.partitions.iter().map(|p| {
                    let mut pr = txn_offset_commit_response::TxnOffsetCommitResponsePartition::default();
                    (pr.partition_index, pr.error_code) = (p.partition_index, code);
                    pr
                }).collect();
                resp.topics.push(tr);
            }
            encode(key, v, cid, &resp)
        }
        Request::WriteTxnMarkers(r) => {
            let mut resp = WriteTxnMarkersResponse::default();
            for m in r.markers {
                let mut mr = write_txn_markers_response::WritableTxnMarkerResult::default();
                mr.producer_id = m.producer_id;
                mr.topics = m.topics.iter().map(|t| {
                    let mut tr = write_txn_markers_response::WritableTxnMarkerTopicResult::default();
                    tr.name = t.name.clone();
                    tr.partitions = t.partition_indexes.iter().map(|p| {
                        let mut pr = write_txn_markers_response::WritableTxnMarkerPartitionResult::default();
                        (pr.partition_index, pr.error_code) = (*p, code);
                        pr
                    }).collect();
                    tr
                }).collect();
                resp.markers.push(mr);
            }
            encode(key, v, cid, &resp)
        }
        Request::DescribeCluster(_) => {
            let mut resp = DescribeClusterResponse::default();
            resp.error_code = code;
            encode(key, v, cid, &resp)
        }
        Request::CreateAcls(r) => {
            let mut resp = CreateAclsResponse::default();
            resp.results = r.creations.iter().map(|_| {
                let mut res = create_acls_response::AclCreationResult::default();
                res.error_code = code;
                res
            }).collect();
            encode(key, v, cid, &resp)
        }
        Request::DeleteAcls(r) => {
            let mut resp = DeleteAclsResponse::default();
            resp.filter_results = r.filters.iter().map(|_| {
                let mut res = delete_acls_response::DeleteAclsFilterResult::default();
                res.error_code = code;
                res
            }).collect();
            encode(key, v, cid, &resp)
        }
        Request::DescribeAcls(_) => {
            let mut resp = DescribeAclsResponse::default();
            resp.error_code = code;
            encode(key, v, cid, &resp)
        }
        Request::DescribeUserScramCredentials(_) => {
            let mut resp = DescribeUserScramCredentialsResponse::default();
            resp.error_code = code;
            encode(key, v, cid, &resp)
        }
        other => Outcome::Close(format!("BUG: no refusal answer for {:?}", std::mem::discriminant(&other))),
    }
}

/// APIs Samsa does not serve yet. Clients only send what ApiVersions lists, but some send
/// these unconditionally: they get Kafka's error for "not available" where the response
/// has an error field, so they fail fast with a clear code instead of hanging.
fn unsupported_api(key: ApiKey, version: i16, body: &mut Bytes) -> Outcome {
    let valid = key.valid_versions();
    if version < valid.min || version > valid.max || header::decode(body).is_err() {
        return Outcome::Close(format!("{key:?} v{version} is not supported by this broker"));
    }
    Outcome::Close(format!("{key:?} is not supported by this broker (it is not listed in ApiVersions)"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]
        /// The same input space as the cargo-fuzz target, run on every `cargo test`.
        #[test]
        fn decode_never_panics(api in 0usize..SUPPORTED.len(), version in 0i16..20, flexible_client_id in any::<bool>(), body in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode(Bytes::from(body.clone()));
            let (key, _, _) = SUPPORTED[api];
            let mut framed = Vec::new();
            framed.extend_from_slice(&(key as i16).to_be_bytes());
            framed.extend_from_slice(&version.to_be_bytes());
            framed.extend_from_slice(&[0, 0, 0, 1]);
            framed.extend_from_slice(if flexible_client_id { &[0, 0][..] } else { &[0xff, 0xff][..] });
            framed.extend_from_slice(&body);
            let _ = decode(Bytes::from(framed));
        }
    }

    #[test]
    fn every_advertised_version_is_within_the_codec() {
        for &(key, lo, hi) in SUPPORTED {
            let valid = key.valid_versions();
            assert!(lo >= valid.min && hi <= valid.max, "{key:?} v{lo}-{hi} outside kafka-protocol's {valid}");
        }
    }
}
