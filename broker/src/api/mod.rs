//! Request dispatch: one `match` from API key to a handler, one module per API family.
//!
//! Each handler decodes nothing itself: [`handle`] decodes the typed request with
//! kafka-protocol at the negotiated version, the handler calls the domain objects
//! (topics, logs, coordinator) and returns a typed response, which is encoded here at the
//! same version. Kafka error codes are data in those responses.

mod admin;
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
        Request::AlterUserScramCredentials(r) => encode(key, v, cid, &scram::alter(state, r).await),
        Request::DescribeUserScramCredentials(r) => encode(key, v, cid, &scram::describe(state, r)),
        Request::ApiVersions(_) => api_versions(key, v, cid),
        Request::Metadata(r) => encode(key, v, cid, &metadata::metadata(state, conn, r, v).await),
        Request::Produce(r) => {
            let acks = r.acks;
            let resp = produce::produce(state, r, v).await;
            if acks == 0 {
                Outcome::NoResponse
            } else {
                encode(key, v, cid, &resp)
            }
        }
        Request::Fetch(r) => encode(key, v, cid, &fetch::fetch(state, r, v).await),
        Request::ListOffsets(r) => encode(key, v, cid, &fetch::list_offsets(state, r, v)),
        Request::OffsetForLeaderEpoch(r) => encode(key, v, cid, &fetch::offset_for_leader_epoch(state, r)),
        Request::CreateTopics(r) => encode(key, v, cid, &admin::create_topics(state, r, v).await),
        Request::DeleteTopics(r) => encode(key, v, cid, &admin::delete_topics(state, r, v).await),
        Request::CreatePartitions(r) => encode(key, v, cid, &admin::create_partitions(state, r).await),
        Request::DeleteRecords(r) => encode(key, v, cid, &admin::delete_records(state, r)),
        Request::DescribeCluster(r) => encode(key, v, cid, &metadata::describe_cluster(state, conn, r, v)),
        Request::DescribeConfigs(r) => encode(key, v, cid, &configs::describe_configs(state, r, v)),
        Request::AlterConfigs(r) => encode(key, v, cid, &configs::alter_configs(state, r).await),
        Request::IncrementalAlterConfigs(r) => encode(key, v, cid, &configs::incremental_alter_configs(state, r).await),
        Request::FindCoordinator(r) => encode(key, v, cid, &groups::find_coordinator(state, conn, r, v).await),
        Request::JoinGroup(r) => encode(key, v, cid, &groups::join_group(state, conn, &client_id, r, v).await),
        Request::SyncGroup(r) => encode(key, v, cid, &groups::sync_group(state, r, v).await),
        Request::Heartbeat(r) => encode(key, v, cid, &groups::heartbeat(state, r)),
        Request::LeaveGroup(r) => encode(key, v, cid, &groups::leave_group(state, r, v)),
        Request::ListGroups(r) => encode(key, v, cid, &groups::list_groups(state, r, v)),
        Request::DescribeGroups(r) => encode(key, v, cid, &groups::describe_groups(state, r, v)),
        Request::DeleteGroups(r) => encode(key, v, cid, &groups::delete_groups(state, r)),
        Request::OffsetCommit(r) => encode(key, v, cid, &offsets::offset_commit(state, r).await),
        Request::OffsetFetch(r) => encode(key, v, cid, &offsets::offset_fetch(state, r, v)),
        Request::OffsetDelete(r) => encode(key, v, cid, &offsets::offset_delete(state, r)),
        Request::InitProducerId(r) => encode(key, v, cid, &producer_id::init_producer_id(state, r).await),
        Request::AddPartitionsToTxn(r) => encode(key, v, cid, &txn::add_partitions_to_txn(state, r).await),
        Request::AddOffsetsToTxn(r) => encode(key, v, cid, &txn::add_offsets_to_txn(state, r).await),
        Request::EndTxn(r) => encode(key, v, cid, &txn::end_txn(state, r).await),
        Request::WriteTxnMarkers(r) => encode(key, v, cid, &txn::write_txn_markers(state, r).await),
        Request::TxnOffsetCommit(r) => encode(key, v, cid, &txn::txn_offset_commit(state, r, v).await),
        Request::DescribeProducers(r) => encode(key, v, cid, &txn::describe_producers(state, r)),
        Request::DescribeTransactions(r) => encode(key, v, cid, &txn::describe_transactions(state, r)),
        Request::ListTransactions(r) => encode(key, v, cid, &txn::list_transactions(state, r)),
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
