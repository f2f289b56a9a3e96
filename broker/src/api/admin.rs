//! Topic administration: CreateTopics, DeleteTopics, CreatePartitions, DeleteRecords.

use std::collections::{BTreeMap, HashSet};

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::create_topics_response::{CreatableTopicConfigs, CreatableTopicResult};
use kafka_protocol::messages::delete_records_response::{DeleteRecordsPartitionResult, DeleteRecordsTopicResult};
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::*;
use kafka_protocol::ResponseError;

use super::sb;
use crate::config::DEFS;
use crate::server::BrokerState;
use crate::topics::ApiError;

fn check_replication(state: &BrokerState, rf: i16, brokers: &[&[BrokerId]]) -> Result<(), ApiError> {
    if rf > 1 {
        return Err(ApiError::new(ResponseError::InvalidReplicationFactor, format!("replication factor {rf} is larger than the number of brokers (1)")));
    }
    if rf == 0 || rf < -1 {
        return Err(ApiError::new(ResponseError::InvalidReplicationFactor, format!("replication factor must be positive, got {rf}")));
    }
    for ids in brokers {
        if ids.len() != 1 || ids[0].0 != state.node_id {
            return Err(ApiError::new(ResponseError::InvalidReplicaAssignment, format!("replica assignment must name exactly broker {}", state.node_id)));
        }
    }
    Ok(())
}

/// Effective topic-level configs with their source (1 = topic override, 5 = default).
pub(crate) fn topic_configs(state: &BrokerState, overrides: &BTreeMap<String, String>) -> Vec<(String, String, i8)> {
    DEFS.iter()
        .filter_map(|d| {
            let name = d.topic_name?;
            Some(match overrides.get(name) {
                Some(v) => (name.to_string(), v.clone(), 1),
                None => (name.to_string(), state.config.get(d.name).to_string(), 5),
            })
        })
        .collect()
}

/// Handles CreateTopics.
pub fn create_topics(state: &BrokerState, req: CreateTopicsRequest, version: i16) -> CreateTopicsResponse {
    let mut resp = CreateTopicsResponse::default();
    let mut seen = HashSet::new();
    let dupes: HashSet<String> = req.topics.iter().filter(|t| !seen.insert(t.name.0.to_string())).map(|t| t.name.0.to_string()).collect();
    for t in req.topics {
        let name = t.name.0.to_string();
        let mut r = CreatableTopicResult::default();
        r.name = t.name.clone();
        let result = (|| {
            if dupes.contains(&name) {
                return Err(ApiError::new(ResponseError::InvalidRequest, format!("topic `{name}` appears more than once in the request")));
            }
            let assigned: Vec<&[BrokerId]> = t.assignments.iter().map(|a| a.broker_ids.as_slice()).collect();
            check_replication(state, if t.assignments.is_empty() { t.replication_factor } else { -1 }, &assigned)?;
            let partitions = if !t.assignments.is_empty() {
                if t.num_partitions != -1 {
                    return Err(ApiError::new(ResponseError::InvalidRequest, "give either num_partitions or replica assignments, not both"));
                }
                t.assignments.len() as i32
            } else if t.num_partitions == -1 {
                state.config.int("num.partitions") as i32
            } else {
                t.num_partitions
            };
            let configs: BTreeMap<String, String> = t.configs.iter().filter_map(|c| Some((c.name.to_string(), c.value.as_ref()?.to_string()))).collect();
            state.topics.create(&name, partitions, configs, req.validate_only)
        })();
        match result {
            Ok(topic) => {
                if version >= 7 {
                    r.topic_id = topic.id;
                }
                if version >= 5 {
                    r.num_partitions = if req.validate_only { t.num_partitions } else { topic.partitions.len() as i32 };
                    r.replication_factor = 1;
                    r.configs = Some(
                        topic_configs(state, &topic.configs)
                            .into_iter()
                            .map(|(n, v, source)| {
                                let mut c = CreatableTopicConfigs::default();
                                c.name = sb(n);
                                c.value = Some(sb(v));
                                c.config_source = source;
                                c
                            })
                            .collect(),
                    );
                }
                if !req.validate_only {
                    tracing::info!(topic = %name, partitions = topic.partitions.len(), "created topic");
                }
            }
            Err(e) => {
                r.error_code = e.code.code();
                if version >= 1 {
                    r.error_message = Some(sb(e.message));
                }
                if version >= 5 {
                    r.num_partitions = -1;
                    r.replication_factor = -1;
                }
            }
        }
        resp.topics.push(r);
    }
    resp
}

/// Handles DeleteTopics (by name, or by id from v6).
pub fn delete_topics(state: &BrokerState, req: DeleteTopicsRequest, version: i16) -> DeleteTopicsResponse {
    let mut resp = DeleteTopicsResponse::default();
    let targets: Vec<(Option<String>, uuid::Uuid)> = if version >= 6 {
        req.topics.iter().map(|t| (t.name.as_ref().map(|n| n.0.to_string()), t.topic_id)).collect()
    } else {
        req.topic_names.iter().map(|n| (Some(n.0.to_string()), uuid::Uuid::nil())).collect()
    };
    for (name, id) in targets {
        let mut r = DeletableTopicResult::default();
        let name = name.or_else(|| state.topics.get_by_id(id).map(|t| t.name.clone()));
        let result = match &name {
            None => Err(ApiError::new(ResponseError::UnknownTopicId, format!("no topic has id {id}"))),
            Some(n) if state.topics.get(n).is_some_and(|t| t.is_internal()) => {
                Err(ApiError::new(ResponseError::InvalidTopicException, format!("`{n}` is an internal topic and cannot be deleted")))
            }
            Some(n) => state.topics.delete(n),
        };
        r.name = name.clone().map(|n| TopicName(sb(n)));
        match result {
            Ok(topic_id) => {
                tracing::info!(topic = ?name, "deleted topic");
                if version >= 6 {
                    r.topic_id = topic_id;
                }
            }
            Err(e) => {
                r.error_code = e.code.code();
                if version >= 5 {
                    r.error_message = Some(sb(e.message));
                }
                if version >= 6 {
                    r.topic_id = id;
                }
            }
        }
        resp.responses.push(r);
    }
    resp
}

/// Handles CreatePartitions.
pub fn create_partitions(state: &BrokerState, req: CreatePartitionsRequest) -> CreatePartitionsResponse {
    let mut resp = CreatePartitionsResponse::default();
    for t in req.topics {
        let mut r = CreatePartitionsTopicResult::default();
        r.name = t.name.clone();
        let assigned: Vec<&[BrokerId]> = t.assignments.iter().flatten().map(|a| a.broker_ids.as_slice()).collect();
        let result = check_replication(state, 1, &assigned).and_then(|_| state.topics.add_partitions(&t.name.0, t.count, req.validate_only));
        if let Err(e) = result {
            r.error_code = e.code.code();
            r.error_message = Some(sb(e.message));
        }
        resp.results.push(r);
    }
    resp
}

/// Handles DeleteRecords: moves each partition's log start offset forward.
pub fn delete_records(state: &BrokerState, req: DeleteRecordsRequest) -> DeleteRecordsResponse {
    let mut resp = DeleteRecordsResponse::default();
    for t in req.topics {
        let topic = state.topics.get(&t.name.0);
        let mut tr = DeleteRecordsTopicResult::default();
        tr.name = t.name.clone();
        for p in t.partitions {
            let mut pr = DeleteRecordsPartitionResult::default();
            pr.partition_index = p.partition_index;
            pr.low_watermark = -1;
            match topic.as_ref().and_then(|t| t.partition(p.partition_index)) {
                None => pr.error_code = ResponseError::UnknownTopicOrPartition.code(),
                Some(part) => {
                    let mut log = part.log.lock().expect("log lock");
                    let end = log.log_end_offset();
                    let target = if p.offset == -1 { end } else { p.offset };
                    if target < 0 || target > end {
                        pr.error_code = ResponseError::OffsetOutOfRange.code();
                    } else {
                        match log.delete_records_before(target) {
                            Ok(low) => pr.low_watermark = low,
                            Err(e) => {
                                tracing::error!("DeleteRecords failed: {e}");
                                pr.error_code = ResponseError::KafkaStorageError.code();
                            }
                        }
                    }
                }
            }
            tr.partitions.push(pr);
        }
        resp.topics.push(tr);
    }
    resp
}
