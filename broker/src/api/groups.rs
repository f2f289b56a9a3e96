//! FindCoordinator and the classic group APIs: JoinGroup, SyncGroup, Heartbeat,
//! LeaveGroup, ListGroups, DescribeGroups, DeleteGroups.

use std::time::Duration;

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::find_coordinator_response::Coordinator as CoordinatorEntry;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::{code, sb, Connection};
use crate::group::{offsets_partition, JoinRequest, State};
use crate::topics::{OFFSETS_TOPIC, TXN_TOPIC};
use crate::server::BrokerState;

fn opt(s: &Option<StrBytes>) -> Option<&str> {
    s.as_deref()
}

/// The broker that coordinates a group (`txn` false) or transactional id (`txn` true):
/// the leader of the key's partition of `__consumer_offsets` or `__transaction_state`
/// (created on first use, as Kafka does).
async fn coordinator_of(state: &BrokerState, listener: &str, key: &str, txn: bool) -> Result<(i32, String, i32), (ResponseError, String)> {
    let created = if txn { state.ensure_txn_topic().await } else { state.ensure_offsets_topic().await };
    created.map_err(|e| (ResponseError::CoordinatorNotAvailable, e.message))?;
    let name = if txn { TXN_TOPIC } else { OFFSETS_TOPIC };
    let image = state.image();
    let topic = image.topic(name).ok_or((ResponseError::CoordinatorNotAvailable, format!("{name} is not created yet")))?;
    let index = offsets_partition(key, topic.partitions.len() as i32);
    let leader = topic.partitions[index as usize].leader;
    match image.brokers.get(&leader).filter(|b| !b.fenced) {
        Some(b) => {
            let (host, port) = b.address_for(listener);
            Ok((b.id, host.to_string(), port))
        }
        None => Err((ResponseError::CoordinatorNotAvailable, format!("{name}-{index} has no leader right now"))),
    }
}

/// Handles FindCoordinator for groups (key type 0) and transactional ids (key type 1).
pub async fn find_coordinator(state: &BrokerState, conn: &super::Connection, req: FindCoordinatorRequest, version: i16) -> FindCoordinatorResponse {
    let mut resp = FindCoordinatorResponse::default();
    let key_type = if version >= 1 { req.key_type } else { 0 };
    let keys: Vec<StrBytes> = if version >= 4 { req.coordinator_keys.clone() } else { vec![req.key.clone()] };
    let mut answers = Vec::new();
    for k in &keys {
        answers.push(match key_type {
            0 => coordinator_of(state, &conn.listener, k, false).await,
            1 => coordinator_of(state, &conn.listener, k, true).await,
            _ => Err((ResponseError::InvalidRequest, "unknown coordinator key type".to_string())),
        });
    }
    if version >= 4 {
        resp.coordinators = keys
            .into_iter()
            .zip(answers)
            .map(|(k, a)| {
                let mut c = CoordinatorEntry::default();
                c.key = k;
                match a {
                    Ok((id, host, port)) => {
                        c.node_id = BrokerId(id);
                        c.host = sb(host);
                        c.port = port;
                    }
                    Err((e, m)) => {
                        c.node_id = BrokerId(-1);
                        c.port = -1;
                        c.error_code = e.code();
                        c.error_message = Some(sb(m));
                    }
                }
                c
            })
            .collect();
    } else {
        match answers.pop().expect("one key") {
            Ok((id, host, port)) => {
                resp.node_id = BrokerId(id);
                resp.host = sb(host);
                resp.port = port;
            }
            Err((e, m)) => {
                resp.error_code = e.code();
                resp.node_id = BrokerId(-1);
                resp.port = -1;
                if version >= 1 {
                    resp.error_message = Some(sb(m));
                }
            }
        }
    }
    resp
}

/// Handles JoinGroup (waits for the join round to complete).
pub async fn join_group(state: &BrokerState, conn: &Connection, client_id: &str, req: JoinGroupRequest, version: i16) -> JoinGroupResponse {
    let session = Duration::from_millis(req.session_timeout_ms.max(0) as u64);
    let domain = JoinRequest {
        member_id: req.member_id.to_string(),
        instance_id: req.group_instance_id.as_ref().map(|s| s.to_string()),
        client_id: client_id.to_string(),
        client_host: format!("/{}", conn.peer.ip()),
        session_timeout: session,
        rebalance_timeout: if version >= 1 { Duration::from_millis(req.rebalance_timeout_ms.max(0) as u64) } else { session },
        protocol_type: req.protocol_type.to_string(),
        protocols: req.protocols.iter().map(|p| (p.name.to_string(), p.metadata.clone())).collect(),
        require_known_member_id: version >= 4,
    };
    let r = state.groups.join(&req.group_id, domain).await;
    let mut resp = JoinGroupResponse::default();
    resp.error_code = code(r.error);
    resp.generation_id = r.generation;
    resp.leader = sb(r.leader);
    resp.member_id = sb(r.member_id);
    if version >= 7 {
        resp.protocol_type = r.protocol_type.map(sb);
        resp.protocol_name = r.protocol_name.map(sb);
    } else {
        resp.protocol_name = Some(sb(r.protocol_name.unwrap_or_default()));
    }
    resp.members = r
        .members
        .into_iter()
        .map(|(id, instance, metadata)| {
            let mut m = JoinGroupResponseMember::default();
            m.member_id = sb(id);
            if version >= 5 {
                m.group_instance_id = instance.map(sb);
            }
            m.metadata = metadata;
            m
        })
        .collect();
    resp
}

/// Handles SyncGroup (followers wait for the leader's assignment).
pub async fn sync_group(state: &BrokerState, req: SyncGroupRequest, version: i16) -> SyncGroupResponse {
    let assignments = req.assignments.iter().map(|a| (a.member_id.to_string(), a.assignment.clone())).collect();
    let r = state.groups.sync(&req.group_id, &req.member_id, opt(&req.group_instance_id), req.generation_id, assignments).await;
    let mut resp = SyncGroupResponse::default();
    resp.error_code = code(r.error);
    resp.assignment = r.assignment;
    if version >= 5 {
        resp.protocol_type = r.protocol_type.map(sb);
        resp.protocol_name = r.protocol_name.map(sb);
    }
    resp
}

/// Handles Heartbeat.
pub fn heartbeat(state: &BrokerState, req: HeartbeatRequest) -> HeartbeatResponse {
    let mut resp = HeartbeatResponse::default();
    resp.error_code = code(state.groups.heartbeat(&req.group_id, &req.member_id, opt(&req.group_instance_id), req.generation_id));
    resp
}

/// Handles LeaveGroup (one member before v3, a batch from v3).
pub fn leave_group(state: &BrokerState, req: LeaveGroupRequest, version: i16) -> LeaveGroupResponse {
    let mut resp = LeaveGroupResponse::default();
    if version < 3 {
        resp.error_code = code(state.groups.leave(&req.group_id, &req.member_id, None));
        return resp;
    }
    resp.members = req
        .members
        .iter()
        .map(|m| {
            let mut r = MemberResponse::default();
            r.member_id = m.member_id.clone();
            r.group_instance_id = m.group_instance_id.clone();
            r.error_code = code(state.groups.leave(&req.group_id, &m.member_id, opt(&m.group_instance_id)));
            r
        })
        .collect();
    resp
}

/// Handles ListGroups, with the state (v4) and type (v5) filters.
pub fn list_groups(state: &BrokerState, req: ListGroupsRequest, version: i16) -> ListGroupsResponse {
    let mut resp = ListGroupsResponse::default();
    let states: Vec<String> = req.states_filter.iter().map(|s| s.to_lowercase()).collect();
    let types: Vec<String> = req.types_filter.iter().map(|s| s.to_lowercase()).collect();
    if !types.is_empty() && !types.iter().any(|t| t == "classic") {
        return resp;
    }
    resp.groups = state
        .groups
        .list()
        .into_iter()
        .filter(|(_, st, _)| states.is_empty() || states.contains(&st.to_lowercase()))
        .map(|(id, st, pt)| {
            let mut g = ListedGroup::default();
            g.group_id = GroupId(sb(id));
            g.protocol_type = sb(pt);
            if version >= 4 {
                g.group_state = sb(st);
            }
            if version >= 5 {
                g.group_type = sb("Classic");
            }
            g
        })
        .collect();
    resp
}

/// Handles DescribeGroups.
pub fn describe_groups(state: &BrokerState, req: DescribeGroupsRequest, version: i16) -> DescribeGroupsResponse {
    let mut resp = DescribeGroupsResponse::default();
    for id in req.groups {
        let mut d = DescribedGroup::default();
        d.group_id = id.clone();
        if version >= 3 {
            d.authorized_operations = i32::MIN;
        }
        if let Err(e) = state.groups.owner(&id) {
            d.error_code = e.code();
            resp.groups.push(d);
            continue;
        }
        let found = state.groups.describe(&id, |g| {
            d.group_state = sb(g.state.name());
            d.protocol_type = sb(g.protocol_type.clone().unwrap_or_default());
            d.protocol_data = sb(g.protocol.clone().unwrap_or_default());
            let protocol = g.protocol.clone().unwrap_or_default();
            d.members = g
                .members
                .values()
                .map(|m| {
                    let mut dm = DescribedGroupMember::default();
                    dm.member_id = sb(m.id.clone());
                    if version >= 4 {
                        dm.group_instance_id = m.instance_id.clone().map(sb);
                    }
                    dm.client_id = sb(m.client_id.clone());
                    dm.client_host = sb(m.client_host.clone());
                    dm.member_metadata = m.metadata(&protocol);
                    if g.state == State::Stable {
                        dm.member_assignment = m.assignment.clone();
                    }
                    dm
                })
                .collect();
        });
        if found.is_none() {
            d.group_state = sb(State::Dead.name());
        }
        resp.groups.push(d);
    }
    resp
}

/// Handles DeleteGroups.
pub fn delete_groups(state: &BrokerState, req: DeleteGroupsRequest) -> DeleteGroupsResponse {
    let mut resp = DeleteGroupsResponse::default();
    resp.results = req
        .groups_names
        .iter()
        .map(|g| {
            let mut r = DeletableGroupResult::default();
            r.group_id = g.clone();
            r.error_code = code(state.groups.delete_group(g));
            r
        })
        .collect();
    resp
}
