//! Metadata (with auto-creation) and DescribeCluster.

use std::collections::BTreeMap;

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::metadata_response::{MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic};
use kafka_protocol::messages::*;
use kafka_protocol::ResponseError;
use uuid::Uuid;

use super::sb;
use crate::server::BrokerState;
use crate::topics::{validate_topic_name, Topic};

fn topic_entry(state: &BrokerState, t: &Topic, version: i16) -> MetadataResponseTopic {
    let mut r = MetadataResponseTopic::default();
    r.name = Some(TopicName(sb(t.name.clone())));
    if version >= 10 {
        r.topic_id = t.id;
    }
    if version >= 1 {
        r.is_internal = t.is_internal();
    }
    r.partitions = t
        .partitions
        .iter()
        .map(|p| {
            let mut e = MetadataResponsePartition::default();
            e.partition_index = p.index;
            e.leader_id = BrokerId(state.node_id);
            if version >= 7 {
                e.leader_epoch = 0;
            }
            e.replica_nodes = vec![BrokerId(state.node_id)];
            e.isr_nodes = vec![BrokerId(state.node_id)];
            e
        })
        .collect();
    r
}

fn error_entry(name: Option<String>, id: Uuid, error: ResponseError, version: i16) -> MetadataResponseTopic {
    let mut r = MetadataResponseTopic::default();
    r.error_code = error.code();
    r.name = name.map(|n| TopicName(sb(n)));
    if version >= 10 {
        r.topic_id = id;
    }
    r
}

/// Handles Metadata: every topic, or the asked ones, creating unknown topics when both the
/// request and `auto.create.topics.enable` allow it.
pub fn metadata(state: &BrokerState, req: MetadataRequest, version: i16) -> MetadataResponse {
    let mut resp = MetadataResponse::default();
    let mut broker = MetadataResponseBroker::default();
    broker.node_id = BrokerId(state.node_id);
    broker.host = sb(state.host.clone());
    broker.port = state.port;
    resp.brokers = vec![broker];
    if version >= 2 {
        resp.cluster_id = Some(sb(state.cluster_id.clone()));
    }
    if version >= 1 {
        resp.controller_id = BrokerId(state.node_id);
    }
    let auto_create = state.config.bool("auto.create.topics.enable") && (version < 4 || req.allow_auto_topic_creation);
    let wanted = match req.topics {
        None => None,
        Some(list) if list.is_empty() && version == 0 => None,
        Some(list) => Some(list),
    };
    resp.topics = match wanted {
        None => state.topics.all().iter().map(|t| topic_entry(state, t, version)).collect(),
        Some(list) => list
            .into_iter()
            .map(|wanted| {
                let name = wanted.name.map(|n| n.0.to_string());
                let Some(name) = name else {
                    return match state.topics.get_by_id(wanted.topic_id) {
                        Some(t) => topic_entry(state, &t, version),
                        None => error_entry(None, wanted.topic_id, ResponseError::UnknownTopicId, version),
                    };
                };
                if let Some(t) = state.topics.get(&name) {
                    return topic_entry(state, &t, version);
                }
                if let Err(e) = validate_topic_name(&name) {
                    return error_entry(Some(name), Uuid::nil(), e.code, version);
                }
                if !auto_create {
                    return error_entry(Some(name), Uuid::nil(), ResponseError::UnknownTopicOrPartition, version);
                }
                let partitions = state.config.int("num.partitions") as i32;
                match state.topics.create(&name, partitions, BTreeMap::new(), false) {
                    Ok(t) => {
                        tracing::info!(topic = %name, partitions, "auto-created topic");
                        topic_entry(state, &t, version)
                    }
                    // A concurrent request created it first.
                    Err(e) if e.code == ResponseError::TopicAlreadyExists => match state.topics.get(&name) {
                        Some(t) => topic_entry(state, &t, version),
                        None => error_entry(Some(name), Uuid::nil(), ResponseError::LeaderNotAvailable, version),
                    },
                    Err(e) => error_entry(Some(name), Uuid::nil(), e.code, version),
                }
            })
            .collect(),
    };
    resp
}

/// Handles DescribeCluster: this single broker is the whole cluster and its controller.
pub fn describe_cluster(state: &BrokerState, _req: DescribeClusterRequest, version: i16) -> DescribeClusterResponse {
    let mut r = DescribeClusterResponse::default();
    r.cluster_id = sb(state.cluster_id.clone());
    r.controller_id = BrokerId(state.node_id);
    if version >= 1 {
        r.endpoint_type = 1;
    }
    let mut b = DescribeClusterBroker::default();
    b.broker_id = BrokerId(state.node_id);
    b.host = sb(state.host.clone());
    b.port = state.port;
    r.brokers = vec![b];
    r
}
