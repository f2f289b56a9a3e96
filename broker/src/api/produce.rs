//! Produce: validate each partition's record batches (length, magic, CRC, size limit) and
//! append them as received, with offsets assigned by rewriting the batch headers.

use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::*;
use kafka_protocol::ResponseError;
use samsa_client::wire::batch::validate_produced;

use super::sb;
use crate::now_ms;
use crate::server::BrokerState;
use crate::topics::validate_topic_name;

fn partition_error(index: i32, error: ResponseError, message: String, version: i16) -> PartitionProduceResponse {
    let mut r = PartitionProduceResponse::default();
    r.index = index;
    r.error_code = error.code();
    r.base_offset = -1;
    if version >= 8 {
        r.error_message = Some(sb(message));
    }
    r
}

/// Handles Produce. With acks=0 the caller drops the response.
pub async fn produce(state: &BrokerState, req: ProduceRequest, version: i16) -> ProduceResponse {
    let mut resp = ProduceResponse::default();
    let acks_ok = matches!(req.acks, -1..=1);
    let mut appended = false;
    for topic_data in req.topic_data {
        let name = topic_data.name.0.to_string();
        let topic = state.topics.get(&name);
        let mut tr = TopicProduceResponse::default();
        tr.name = topic_data.name.clone();
        for pd in topic_data.partition_data {
            let idx = pd.index;
            let result = (|| {
                if !acks_ok {
                    return Err((ResponseError::InvalidRequiredAcks, format!("acks must be -1, 0 or 1, got {}", req.acks)));
                }
                let Some(topic) = &topic else {
                    return Err(match validate_topic_name(&name) {
                        Err(e) => (e.code, e.message),
                        Ok(()) => (ResponseError::UnknownTopicOrPartition, format!("topic `{name}` does not exist")),
                    });
                };
                if topic.is_internal() {
                    return Err((ResponseError::InvalidTopicException, format!("`{name}` is an internal topic; clients cannot produce to it")));
                }
                let Some(partition) = topic.partition(idx) else {
                    return Err((ResponseError::UnknownTopicOrPartition, format!("topic `{name}` has no partition {idx}")));
                };
                let records = pd.records.as_ref().filter(|r| !r.is_empty()).ok_or_else(|| (ResponseError::InvalidRecord, "the request carries no record batch".to_string()))?;
                let batches = validate_produced(records).map_err(|e| (ResponseError::CorruptMessage, format!("{name}-{idx}: {e}")))?;
                let mut log = partition.log.lock().expect("log lock");
                let max = log.config().max_message_bytes;
                for (h, _) in &batches {
                    if h.total_len() > max {
                        return Err((ResponseError::MessageTooLarge, format!("{name}-{idx}: a record batch of {} bytes exceeds max.message.bytes ({max})", h.total_len())));
                    }
                    if h.producer_id >= 0 || h.is_transactional() {
                        return Err((ResponseError::UnknownProducerId, "idempotent and transactional producers are not supported yet: set enable.idempotence=false".to_string()));
                    }
                    if h.is_control() {
                        return Err((ResponseError::InvalidRecord, "clients cannot produce control batches".to_string()));
                    }
                }
                let headers: Vec<_> = batches.into_iter().map(|(h, _)| h).collect();
                let mut bytes = records.to_vec();
                let info = log.append(&mut bytes, &headers, now_ms()).map_err(|e| {
                    tracing::error!(topic = %name, partition = idx, "append failed: {e}");
                    (ResponseError::KafkaStorageError, format!("{name}-{idx}: the broker could not write to disk: {e}"))
                })?;
                Ok((info, log.log_start_offset()))
            })();
            let pr = match result {
                Ok((info, log_start)) => {
                    appended = true;
                    let mut r = PartitionProduceResponse::default();
                    r.index = idx;
                    r.base_offset = info.base_offset;
                    r.log_append_time_ms = info.log_append_time.unwrap_or(-1);
                    if version >= 5 {
                        r.log_start_offset = log_start;
                    }
                    r
                }
                Err((e, msg)) => {
                    tracing::debug!("produce rejected: {msg}");
                    partition_error(idx, e, msg, version)
                }
            };
            tr.partition_responses.push(pr);
        }
        resp.responses.push(tr);
    }
    if appended {
        state.topics.notify_append();
    }
    resp
}
