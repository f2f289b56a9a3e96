//! Metadata (with auto-creation) and DescribeCluster, answered from this broker's applied
//! metadata image.

use std::collections::BTreeMap;

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::metadata_response::{MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic};
use kafka_protocol::messages::*;
use kafka_protocol::ResponseError;
use uuid::Uuid;

use super::sb;
use crate::meta::{Image, TopicInfo};
use crate::server::BrokerState;
use crate::topics::{is_internal, validate_topic_name};

fn topic_entry(image: &Image, t: &TopicInfo, version: i16) -> MetadataResponseTopic {
    let mut r = MetadataResponseTopic::default();
    r.name = Some(TopicName(sb(t.name.clone())));
    if version >= 10 {
        r.topic_id = t.id;
    }
    if version >= 1 {
        r.is_internal = is_internal(&t.name);
    }
    r.partitions = t
        .partitions
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let mut e = MetadataResponsePartition::default();
            e.partition_index = i as i32;
            e.leader_id = BrokerId(p.leader);
            if p.leader < 0 {
                e.error_code = ResponseError::LeaderNotAvailable.code();
            }
            if version >= 7 {
                e.leader_epoch = p.leader_epoch;
            }
            e.replica_nodes = p.replicas.iter().map(|b| BrokerId(*b)).collect();
            e.isr_nodes = p.isr.iter().map(|b| BrokerId(*b)).collect();
            if version >= 5 {
                e.offline_replicas = p.replicas.iter().filter(|b| !image.is_live(**b)).map(|b| BrokerId(*b)).collect();
            }
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
pub async fn metadata(state: &BrokerState, conn: &super::Connection, req: MetadataRequest, version: i16) -> MetadataResponse {
    let mut resp = MetadataResponse::default();
    let mut image = state.image();
    resp.brokers = image
        .live_brokers()
        .into_iter()
        .map(|b| {
            let mut broker = MetadataResponseBroker::default();
            broker.node_id = BrokerId(b.id);
            let (host, port) = b.address_for(&conn.listener);
            broker.host = sb(host);
            broker.port = port;
            broker
        })
        .collect();
    if version >= 2 {
        resp.cluster_id = Some(sb(state.cluster_id.clone()));
    }
    if version >= 1 {
        resp.controller_id = BrokerId(state.controller.leader_id().unwrap_or(-1));
    }
    let auto_create = state.config.bool("auto.create.topics.enable") && (version < 4 || req.allow_auto_topic_creation);
    let wanted = match req.topics {
        None => None,
        Some(list) if list.is_empty() && version == 0 => None,
        Some(list) => Some(list),
    };
    let Some(list) = wanted else {
        resp.topics = image.topics.values().map(|t| topic_entry(&image, t, version)).collect();
        return resp;
    };
    for wanted in list {
        let name = wanted.name.map(|n| n.0.to_string());
        let Some(name) = name else {
            resp.topics.push(match image.topic_by_id(wanted.topic_id) {
                Some(t) => topic_entry(&image, t, version),
                None => error_entry(None, wanted.topic_id, ResponseError::UnknownTopicId, version),
            });
            continue;
        };
        if let Some(t) = image.topic(&name) {
            resp.topics.push(topic_entry(&image, t, version));
            continue;
        }
        if let Err(e) = validate_topic_name(&name) {
            resp.topics.push(error_entry(Some(name), Uuid::nil(), e.code, version));
            continue;
        }
        if !auto_create {
            resp.topics.push(error_entry(Some(name), Uuid::nil(), ResponseError::UnknownTopicOrPartition, version));
            continue;
        }
        let entry = match state.create_topic(&name, -1, -1, Vec::new(), BTreeMap::new(), false).await {
            Ok(_) => {
                tracing::info!(topic = %name, "auto-created topic");
                image = state.image();
                image.topic(&name).map(|t| topic_entry(&image, t, version))
            }
            // A concurrent request created it first.
            Err(e) if e.code == ResponseError::TopicAlreadyExists => {
                image = state.image();
                image.topic(&name).map(|t| topic_entry(&image, t, version))
            }
            Err(e) => {
                tracing::info!(topic = %name, "cannot auto-create topic: {}", e.message);
                Some(error_entry(Some(name.clone()), Uuid::nil(), ResponseError::LeaderNotAvailable, version))
            }
        };
        resp.topics.push(entry.unwrap_or_else(|| error_entry(Some(name), Uuid::nil(), ResponseError::LeaderNotAvailable, version)));
    }
    resp
}

/// Handles DescribeCluster: the live brokers and the active controller.
pub fn describe_cluster(state: &BrokerState, conn: &super::Connection, _req: DescribeClusterRequest, version: i16) -> DescribeClusterResponse {
    let mut r = DescribeClusterResponse::default();
    r.cluster_id = sb(state.cluster_id.clone());
    r.controller_id = BrokerId(state.controller.leader_id().unwrap_or(-1));
    if version >= 1 {
        r.endpoint_type = 1;
    }
    r.brokers = state
        .image()
        .live_brokers()
        .into_iter()
        .map(|b| {
            let mut d = DescribeClusterBroker::default();
            d.broker_id = BrokerId(b.id);
            let (host, port) = b.address_for(&conn.listener);
            d.host = sb(host);
            d.port = port;
            d
        })
        .collect();
    r
}
