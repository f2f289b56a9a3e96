//! Produce on partition leaders: validate each partition's record batches (length, magic,
//! CRC, size limit, producer sequence), append them as received with offsets and leader
//! epoch rewritten, and with acks=all answer once every in-sync replica has them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::*;
use kafka_protocol::ResponseError;
use samsa_client::wire::batch::validate_produced;

use super::{leader_partition, sb};
use crate::log::producers::{SeqCheck, SeqError};
use crate::now_ms;
use crate::server::BrokerState;
use crate::topics::{is_internal, validate_topic_name, Partition};

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

/// An appended (or duplicate) batch set, and what acks=all must wait for.
struct Appended {
    base_offset: i64,
    log_append_time: Option<i64>,
    log_start: i64,
    wait: Option<(Arc<Partition>, i64, i32, usize)>,
    /// Records and bytes newly appended (none for a duplicate), for the metrics.
    appended: (u64, u64),
}

type Failure = (ResponseError, String);

/// One topic's name (as text and as sent) and each partition's outcome.
type TopicResults = (String, TopicName, Vec<(i32, Result<Appended, Failure>)>);

fn append_one(state: &BrokerState, name: &str, idx: i32, acks: i16, records: Option<&bytes::Bytes>) -> Result<Appended, Failure> {
    let image = state.image();
    let Some(topic) = image.topic(name) else {
        return Err(match validate_topic_name(name) {
            Err(e) => (e.code, e.message),
            Ok(()) => (ResponseError::UnknownTopicOrPartition, format!("topic `{name}` does not exist")),
        });
    };
    if is_internal(name) {
        return Err((ResponseError::InvalidTopicException, format!("`{name}` is an internal topic; clients cannot produce to it")));
    }
    let partition = leader_partition(state, name, idx).map_err(|e| (e, format!("{name}-{idx}: this broker is not its leader; refresh metadata")))?;
    let records = records.filter(|r| !r.is_empty()).ok_or_else(|| (ResponseError::InvalidRecord, "the request carries no record batch".to_string()))?;
    let batches = validate_produced(records).map_err(|e| (ResponseError::CorruptMessage, format!("{name}-{idx}: {e}")))?;
    let min_isr = state.topics.min_insync(topic);
    let mut log = partition.log.lock().expect("log lock");
    let max = log.config().max_message_bytes;
    for (h, _) in &batches {
        if h.total_len() > max {
            return Err((ResponseError::MessageTooLarge, format!("{name}-{idx}: a record batch of {} bytes exceeds max.message.bytes ({max})", h.total_len())));
        }
        if h.is_control() {
            return Err((ResponseError::InvalidRecord, "clients cannot produce control batches".to_string()));
        }
    }
    let (epoch, live_isr) = {
        let r = partition.replica.lock().expect("replica lock");
        (r.leader_epoch, r.live_isr(Instant::now(), state.config.ms("replica.lag.time.max.ms")))
    };
    if acks == -1 && live_isr < min_isr {
        return Err((
            ResponseError::NotEnoughReplicas,
            format!("{name}-{idx}: only {live_isr} in-sync replica(s) are available and min.insync.replicas is {min_isr}; acks=all writes are refused"),
        ));
    }
    let headers: Vec<_> = batches.into_iter().map(|(h, _)| h).collect();
    let mut appended = (0, 0);
    let (base_offset, last_offset, log_append_time) = match log.check_producer(&headers) {
        Ok(SeqCheck::Duplicate { base_offset, last_offset }) => (base_offset, last_offset, None),
        Ok(SeqCheck::Append) => {
            let mut bytes = records.to_vec();
            let info = log.append(&mut bytes, &headers, epoch, now_ms()).map_err(|e| {
                tracing::error!(topic = %name, partition = idx, "append failed: {e}");
                (ResponseError::KafkaStorageError, format!("{name}-{idx}: the broker could not write to disk: {e}"))
            })?;
            let leo = log.log_end_offset();
            partition.replica.lock().expect("replica lock").advance_hw(leo);
            appended = ((info.last_offset - info.base_offset + 1) as u64, records.len() as u64);
            (info.base_offset, info.last_offset, info.log_append_time)
        }
        Err(e) => {
            let code = match e {
                SeqError::UnknownProducerId => ResponseError::UnknownProducerId,
                SeqError::InvalidEpoch => ResponseError::InvalidProducerEpoch, // fenced by a newer epoch
                SeqError::OutOfOrder { .. } => ResponseError::OutOfOrderSequenceNumber,
            };
            return Err((code, format!("{name}-{idx}: {e}")));
        }
    };
    let wait = (acks == -1).then(|| (partition.clone(), last_offset + 1, epoch, min_isr));
    Ok(Appended { base_offset, log_append_time, log_start: log.log_start_offset(), wait, appended })
}

/// Handles Produce. With acks=0 the caller drops the response.
pub async fn produce(state: &BrokerState, req: ProduceRequest, version: i16) -> ProduceResponse {
    let mut resp = ProduceResponse::default();
    let acks_ok = matches!(req.acks, -1..=1);
    let mut appended = false;
    let mut results: Vec<TopicResults> = Vec::new();
    for topic_data in req.topic_data {
        let name = topic_data.name.0.to_string();
        let mut parts = Vec::new();
        for pd in topic_data.partition_data {
            let r = if acks_ok {
                append_one(state, &name, pd.index, req.acks, pd.records.as_ref())
            } else {
                Err((ResponseError::InvalidRequiredAcks, format!("acks must be -1, 0 or 1, got {}", req.acks)))
            };
            appended |= r.is_ok();
            parts.push((pd.index, r));
        }
        // Counted outside the partitions' locks, once per topic and request.
        let (records, bytes) = parts.iter().filter_map(|(_, r)| r.as_ref().ok()).fold((0, 0), |(r, b), a| (r + a.appended.0, b + a.appended.1));
        if records > 0 {
            state.metrics.produced(&name, records, bytes);
        }
        results.push((name, topic_data.name, parts));
    }
    if appended {
        state.topics.notify_append();
    }
    let timeout = Duration::from_millis(req.timeout_ms.max(0) as u64);
    for (name, wire_name, parts) in results {
        let mut tr = TopicProduceResponse::default();
        tr.name = wire_name;
        for (idx, r) in parts {
            let r = match r {
                Ok(a) => match &a.wait {
                    Some((p, end, epoch, min_isr)) => match state.topics.wait_replicated(p, *end, *epoch, timeout, Some(*min_isr)).await {
                        Ok(()) => Ok(a),
                        Err(e) => Err((e, format!("{name}-{idx}: the write was not replicated to the in-sync replicas ({e:?})"))),
                    },
                    None => Ok(a),
                },
                Err(f) => Err(f),
            };
            tr.partition_responses.push(match r {
                Ok(a) => {
                    let mut pr = PartitionProduceResponse::default();
                    pr.index = idx;
                    pr.base_offset = a.base_offset;
                    pr.log_append_time_ms = a.log_append_time.unwrap_or(-1);
                    if version >= 5 {
                        pr.log_start_offset = a.log_start;
                    }
                    pr
                }
                Err((e, msg)) => {
                    tracing::debug!("produce rejected: {msg}");
                    partition_error(idx, e, msg, version)
                }
            });
        }
        resp.responses.push(tr);
    }
    resp
}
