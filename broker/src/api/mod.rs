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

use std::net::SocketAddr;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use kafka_protocol::ResponseError;
use samsa_client::wire::header;

use crate::server::BrokerState;

/// What to do after a request.
pub enum Outcome {
    /// Send these bytes (without the size prefix).
    Respond(Bytes),
    /// Send nothing (Produce with acks=0).
    NoResponse,
    /// Close the connection, logging the reason.
    Close(String),
}

/// Per-connection facts handlers may need.
pub struct Connection {
    /// The client's address.
    pub peer: SocketAddr,
}

/// The API versions this broker serves. Only implemented versions are advertised:
/// Produce stops at 11 (12+ means transactions v2, KIP-890), Fetch at 16, and APIs that
/// address topics by id only from a version this broker resolves ids for.
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

fn encode<R: Encodable>(key: ApiKey, version: i16, correlation_id: i32, resp: &R) -> Outcome {
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

macro_rules! decode_or_close {
    ($ty:ty, $body:expr, $version:expr, $key:expr) => {
        match <$ty>::decode(&mut $body, $version) {
            Ok(r) => r,
            Err(e) => return Outcome::Close(format!("malformed {:?} v{} request: {e}", $key, $version)),
        }
    };
}

/// Decodes one request, runs its handler and encodes the response.
pub async fn handle(state: &BrokerState, conn: &Connection, mut body: Bytes) -> Outcome {
    let Some(peek) = header::peek(&body) else {
        return Outcome::Close(format!("request of {} bytes is shorter than a request header", body.len()));
    };
    let Ok(key) = ApiKey::try_from(peek.api_key) else {
        return Outcome::Close(format!("unknown api key {} (correlation id {})", peek.api_key, peek.correlation_id));
    };
    let version = peek.api_version;
    let Some((lo, hi)) = supported(key) else {
        return unsupported_api(key, version, peek.correlation_id, &mut body);
    };
    if version < lo || version > hi {
        if key == ApiKey::ApiVersions {
            // KIP-511: answer in v0 with the supported list; the client retries lower.
            return encode(key, 0, peek.correlation_id, &api_versions_response(Some(ResponseError::UnsupportedVersion)));
        }
        return Outcome::Close(format!("{key:?} v{version} is not supported (this broker serves v{lo}-v{hi})"));
    }
    let (_, hdr) = match header::decode(&mut body) {
        Ok(h) => h,
        Err(e) => return Outcome::Close(e.to_string()),
    };
    let client_id = hdr.client_id.as_ref().map(|s| s.to_string()).unwrap_or_default();
    let cid = peek.correlation_id;
    match key {
        ApiKey::ApiVersions => {
            let _ = decode_or_close!(ApiVersionsRequest, body, version, key);
            encode(key, version, cid, &api_versions_response(None))
        }
        ApiKey::Metadata => {
            let req = decode_or_close!(MetadataRequest, body, version, key);
            encode(key, version, cid, &metadata::metadata(state, req, version))
        }
        ApiKey::Produce => {
            let req = decode_or_close!(ProduceRequest, body, version, key);
            let acks = req.acks;
            let resp = produce::produce(state, req, version).await;
            if acks == 0 {
                Outcome::NoResponse
            } else {
                encode(key, version, cid, &resp)
            }
        }
        ApiKey::Fetch => {
            let req = decode_or_close!(FetchRequest, body, version, key);
            encode(key, version, cid, &fetch::fetch(state, req, version).await)
        }
        ApiKey::ListOffsets => {
            let req = decode_or_close!(ListOffsetsRequest, body, version, key);
            encode(key, version, cid, &fetch::list_offsets(state, req, version))
        }
        ApiKey::OffsetForLeaderEpoch => {
            let req = decode_or_close!(OffsetForLeaderEpochRequest, body, version, key);
            encode(key, version, cid, &fetch::offset_for_leader_epoch(state, req))
        }
        ApiKey::CreateTopics => {
            let req = decode_or_close!(CreateTopicsRequest, body, version, key);
            encode(key, version, cid, &admin::create_topics(state, req, version))
        }
        ApiKey::DeleteTopics => {
            let req = decode_or_close!(DeleteTopicsRequest, body, version, key);
            encode(key, version, cid, &admin::delete_topics(state, req, version))
        }
        ApiKey::CreatePartitions => {
            let req = decode_or_close!(CreatePartitionsRequest, body, version, key);
            encode(key, version, cid, &admin::create_partitions(state, req))
        }
        ApiKey::DeleteRecords => {
            let req = decode_or_close!(DeleteRecordsRequest, body, version, key);
            encode(key, version, cid, &admin::delete_records(state, req))
        }
        ApiKey::DescribeCluster => {
            let req = decode_or_close!(DescribeClusterRequest, body, version, key);
            encode(key, version, cid, &metadata::describe_cluster(state, req, version))
        }
        ApiKey::DescribeConfigs => {
            let req = decode_or_close!(DescribeConfigsRequest, body, version, key);
            encode(key, version, cid, &configs::describe_configs(state, req, version))
        }
        ApiKey::AlterConfigs => {
            let req = decode_or_close!(AlterConfigsRequest, body, version, key);
            encode(key, version, cid, &configs::alter_configs(state, req))
        }
        ApiKey::IncrementalAlterConfigs => {
            let req = decode_or_close!(IncrementalAlterConfigsRequest, body, version, key);
            encode(key, version, cid, &configs::incremental_alter_configs(state, req))
        }
        ApiKey::FindCoordinator => {
            let req = decode_or_close!(FindCoordinatorRequest, body, version, key);
            encode(key, version, cid, &groups::find_coordinator(state, req, version))
        }
        ApiKey::JoinGroup => {
            let req = decode_or_close!(JoinGroupRequest, body, version, key);
            encode(key, version, cid, &groups::join_group(state, conn, &client_id, req, version).await)
        }
        ApiKey::SyncGroup => {
            let req = decode_or_close!(SyncGroupRequest, body, version, key);
            encode(key, version, cid, &groups::sync_group(state, req, version).await)
        }
        ApiKey::Heartbeat => {
            let req = decode_or_close!(HeartbeatRequest, body, version, key);
            encode(key, version, cid, &groups::heartbeat(state, req))
        }
        ApiKey::LeaveGroup => {
            let req = decode_or_close!(LeaveGroupRequest, body, version, key);
            encode(key, version, cid, &groups::leave_group(state, req, version))
        }
        ApiKey::ListGroups => {
            let req = decode_or_close!(ListGroupsRequest, body, version, key);
            encode(key, version, cid, &groups::list_groups(state, req, version))
        }
        ApiKey::DescribeGroups => {
            let req = decode_or_close!(DescribeGroupsRequest, body, version, key);
            encode(key, version, cid, &groups::describe_groups(state, req, version))
        }
        ApiKey::DeleteGroups => {
            let req = decode_or_close!(DeleteGroupsRequest, body, version, key);
            encode(key, version, cid, &groups::delete_groups(state, req))
        }
        ApiKey::OffsetCommit => {
            let req = decode_or_close!(OffsetCommitRequest, body, version, key);
            encode(key, version, cid, &offsets::offset_commit(state, req))
        }
        ApiKey::OffsetFetch => {
            let req = decode_or_close!(OffsetFetchRequest, body, version, key);
            encode(key, version, cid, &offsets::offset_fetch(state, req, version))
        }
        ApiKey::OffsetDelete => {
            let req = decode_or_close!(OffsetDeleteRequest, body, version, key);
            encode(key, version, cid, &offsets::offset_delete(state, req))
        }
        other => Outcome::Close(format!("{other:?} is advertised but has no handler")),
    }
}

/// APIs Samsa does not serve yet. Clients only send what ApiVersions lists, but some send
/// these unconditionally: they get Kafka's error for "not available" where the response
/// has an error field, so they fail fast with a clear code instead of hanging.
fn unsupported_api(key: ApiKey, version: i16, cid: i32, body: &mut Bytes) -> Outcome {
    let valid = key.valid_versions();
    if version < valid.min || version > valid.max || header::decode(body).is_err() {
        return Outcome::Close(format!("{key:?} v{version} is not supported by this broker"));
    }
    match key {
        ApiKey::InitProducerId => {
            let mut r = InitProducerIdResponse::default();
            r.error_code = ResponseError::UnsupportedVersion.code();
            r.producer_id = ProducerId(-1);
            encode(key, version, cid, &r)
        }
        ApiKey::SaslHandshake => {
            let mut r = SaslHandshakeResponse::default();
            r.error_code = ResponseError::UnsupportedSaslMechanism.code();
            encode(key, version, cid, &r)
        }
        _ => Outcome::Close(format!("{key:?} is not supported by this broker (it is not listed in ApiVersions)")),
    }
}
