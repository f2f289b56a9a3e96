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
pub async fn create_topics(state: &BrokerState, req: CreateTopicsRequest, version: i16) -> CreateTopicsResponse {
    let mut resp = CreateTopicsResponse::default();
    let mut seen = HashSet::new();
    let dupes: HashSet<String> = req.topics.iter().filter(|t| !seen.insert(t.name.0.to_string())).map(|t| t.name.0.to_string()).collect();
    for t in req.topics {
        let name = t.name.0.to_string();
        let mut r = CreatableTopicResult::default();
        r.name = t.name.clone();
        let result = async {
            if dupes.contains(&name) {
                return Err(ApiError::new(ResponseError::InvalidRequest, format!("topic `{name}` appears more than once in the request")));
            }
            let assignments: Vec<Vec<i32>> = t.assignments.iter().map(|a| a.broker_ids.iter().map(|b| b.0).collect()).collect();
            if !assignments.is_empty() && (t.num_partitions != -1 || t.replication_factor != -1) {
                return Err(ApiError::new(ResponseError::InvalidRequest, "give either num_partitions/replication_factor or replica assignments, not both"));
            }
            let configs: BTreeMap<String, String> = t.configs.iter().filter_map(|c| Some((c.name.to_string(), c.value.as_ref()?.to_string()))).collect();
            state.create_topic(&name, t.num_partitions, t.replication_factor, assignments, configs, req.validate_only).await
        }
        .await;
        match result {
            Ok(topic) => {
                if version >= 7 {
                    r.topic_id = topic.id;
                }
                if version >= 5 {
                    r.num_partitions = topic.partitions.len() as i32;
                    r.replication_factor = topic.partitions.first().map_or(0, |p| p.replicas.len() as i16);
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
pub async fn delete_topics(state: &BrokerState, req: DeleteTopicsRequest, version: i16) -> DeleteTopicsResponse {
    let mut resp = DeleteTopicsResponse::default();
    let targets: Vec<(Option<String>, uuid::Uuid)> = if version >= 6 {
        req.topics.iter().map(|t| (t.name.as_ref().map(|n| n.0.to_string()), t.topic_id)).collect()
    } else {
        req.topic_names.iter().map(|n| (Some(n.0.to_string()), uuid::Uuid::nil())).collect()
    };
    for (name, id) in targets {
        let mut r = DeletableTopicResult::default();
        let name = name.or_else(|| state.image().topic_by_id(id).map(|t| t.name.clone()));
        let result = match &name {
            None => Err(ApiError::new(ResponseError::UnknownTopicId, format!("no topic has id {id}"))),
            Some(n) => state.delete_topic(n).await,
        };
        r.name = name.clone().map(|n| TopicName(sb(n)));
        match result {
            Ok(topic_id) => {
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
pub async fn create_partitions(state: &BrokerState, req: CreatePartitionsRequest) -> CreatePartitionsResponse {
    let mut resp = CreatePartitionsResponse::default();
    for t in req.topics {
        let mut r = CreatePartitionsTopicResult::default();
        r.name = t.name.clone();
        let assignments: Vec<Vec<i32>> = t.assignments.iter().flatten().map(|a| a.broker_ids.iter().map(|b| b.0).collect()).collect();
        let result = state.add_partitions(&t.name.0, t.count, assignments, req.validate_only).await;
        if let Err(e) = result {
            r.error_code = e.code.code();
            r.error_message = Some(sb(e.message));
        }
        resp.results.push(r);
    }
    resp
}

/// Handles DeleteRecords on the leader: moves each partition's log start offset forward
/// (up to the high watermark); followers follow through the log start in their fetches.
pub fn delete_records(state: &BrokerState, req: DeleteRecordsRequest) -> DeleteRecordsResponse {
    let mut resp = DeleteRecordsResponse::default();
    for t in req.topics {
        let mut tr = DeleteRecordsTopicResult::default();
        tr.name = t.name.clone();
        for p in t.partitions {
            let mut pr = DeleteRecordsPartitionResult::default();
            pr.partition_index = p.partition_index;
            pr.low_watermark = -1;
            match super::leader_partition(state, &t.name.0, p.partition_index) {
                Err(e) => pr.error_code = e.code(),
                Ok(part) => {
                    let mut log = part.log.lock().expect("log lock");
                    let end = part.high_watermark();
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
