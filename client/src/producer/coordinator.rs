//! Requests of the idempotent and transactional producer: InitProducerId (any broker, or
//! the transaction coordinator), AddPartitionsToTxn, AddOffsetsToTxn and EndTxn (the
//! transaction coordinator) and TxnOffsetCommit (the group coordinator). Builders are pure
//! and set only the fields of the version they are built for; each call is one attempt,
//! with Kafka error codes turned into [`Error::Broker`]. Retries live with the callers.

use std::collections::BTreeMap;
use std::time::Duration;

use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::txn_offset_commit_request::{TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic};
use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddPartitionsToTxnRequest, EndTxnRequest, GroupId, InitProducerIdRequest, ProducerId, TopicName, TransactionalId,
    TxnOffsetCommitRequest,
};
use kafka_protocol::ResponseError;

use super::idempotence::ProducerIds;
use super::transaction::Tp;
use crate::consumer::{GroupMetadata, TopicPartition};
use crate::error::{check, Error, Result};
use crate::net::cluster::sb;
use crate::net::Connection;

/// InitProducerId versions: v3 presents the current id and epoch for a bump (KIP-360).
pub(crate) const INIT_PRODUCER_ID: (i16, i16) = (0, 4);
/// AddPartitionsToTxn versions (v4+ is the broker-to-broker batch form).
pub(crate) const ADD_PARTITIONS_TO_TXN: (i16, i16) = (0, 3);
/// AddOffsetsToTxn versions.
pub(crate) const ADD_OFFSETS_TO_TXN: (i16, i16) = (0, 3);
/// EndTxn versions.
pub(crate) const END_TXN: (i16, i16) = (0, 3);
/// TxnOffsetCommit versions: v3 carries the member's generation (KIP-447).
pub(crate) const TXN_OFFSET_COMMIT: (i16, i16) = (0, 3);

fn txn_id(id: &str) -> TransactionalId {
    TransactionalId(sb(id))
}

/// InitProducerId: `transactional_id` for a transactional producer; `current` asks for the
/// epoch of this producer id to be bumped (sent from v3 on; older versions get a new id).
pub(crate) fn init_producer_id_request(transactional_id: Option<&str>, timeout: Duration, current: Option<ProducerIds>, version: i16) -> InitProducerIdRequest {
    let mut req = InitProducerIdRequest::default()
        .with_transactional_id(transactional_id.map(txn_id))
        .with_transaction_timeout_ms(timeout.as_millis().min(i32::MAX as u128) as i32);
    if let Some(ids) = current.filter(|_| version >= 3) {
        req = req.with_producer_id(ProducerId(ids.id)).with_producer_epoch(ids.epoch);
    }
    req
}

/// AddPartitionsToTxn (the v0-3 form: one transaction per request).
pub(crate) fn add_partitions_request(transactional_id: &str, ids: ProducerIds, partitions: &[Tp]) -> AddPartitionsToTxnRequest {
    let mut topics: Vec<AddPartitionsToTxnTopic> = Vec::new();
    for (topic, partition) in partitions {
        match topics.iter_mut().find(|t| *t.name.0 == **topic) {
            Some(t) => t.partitions.push(*partition),
            None => topics.push(AddPartitionsToTxnTopic::default().with_name(TopicName(sb(topic))).with_partitions(vec![*partition])),
        }
    }
    AddPartitionsToTxnRequest::default()
        .with_v3_and_below_transactional_id(txn_id(transactional_id))
        .with_v3_and_below_producer_id(ProducerId(ids.id))
        .with_v3_and_below_producer_epoch(ids.epoch)
        .with_v3_and_below_topics(topics)
}

/// AddOffsetsToTxn: the group's offsets partition joins the transaction.
pub(crate) fn add_offsets_request(transactional_id: &str, ids: ProducerIds, group_id: &str) -> AddOffsetsToTxnRequest {
    AddOffsetsToTxnRequest::default()
        .with_transactional_id(txn_id(transactional_id))
        .with_producer_id(ProducerId(ids.id))
        .with_producer_epoch(ids.epoch)
        .with_group_id(GroupId(sb(group_id)))
}

/// EndTxn: commit (`true`) or abort.
pub(crate) fn end_txn_request(transactional_id: &str, ids: ProducerIds, commit: bool) -> EndTxnRequest {
    EndTxnRequest::default()
        .with_transactional_id(txn_id(transactional_id))
        .with_producer_id(ProducerId(ids.id))
        .with_producer_epoch(ids.epoch)
        .with_committed(commit)
}

/// TxnOffsetCommit: `offsets` are the next offsets to read; from v3 the member's
/// generation lets the coordinator fence a zombie member (KIP-447).
pub(crate) fn txn_offset_commit_request(
    transactional_id: &str,
    ids: ProducerIds,
    group: &GroupMetadata,
    offsets: &BTreeMap<TopicPartition, i64>,
    version: i16,
) -> TxnOffsetCommitRequest {
    let mut topics: Vec<TxnOffsetCommitRequestTopic> = Vec::new();
    for (tp, offset) in offsets {
        let p = TxnOffsetCommitRequestPartition::default().with_partition_index(tp.partition).with_committed_offset(*offset);
        match topics.iter_mut().find(|t| *t.name.0 == *tp.topic) {
            Some(t) => t.partitions.push(p),
            None => topics.push(TxnOffsetCommitRequestTopic::default().with_name(TopicName(sb(&tp.topic))).with_partitions(vec![p])),
        }
    }
    let mut req = TxnOffsetCommitRequest::default()
        .with_transactional_id(txn_id(transactional_id))
        .with_group_id(GroupId(sb(&group.group_id)))
        .with_producer_id(ProducerId(ids.id))
        .with_producer_epoch(ids.epoch)
        .with_topics(topics);
    if version >= 3 {
        req = req
            .with_generation_id(group.generation)
            .with_member_id(sb(&group.member_id))
            .with_group_instance_id(group.instance_id.as_deref().map(sb));
    }
    req
}

/// One InitProducerId at `conn`.
pub(crate) async fn init_producer_id(conn: &Connection, transactional_id: Option<&str>, timeout: Duration, current: Option<ProducerIds>) -> Result<ProducerIds> {
    let version = conn.version::<InitProducerIdRequest>(INIT_PRODUCER_ID.0, INIT_PRODUCER_ID.1)?;
    let resp = conn.send(&init_producer_id_request(transactional_id, timeout, current, version), version).await?;
    check(resp.error_code, None, || match transactional_id {
        Some(id) => format!("get a producer id for transactional.id `{id}`"),
        None => "get a producer id".to_string(),
    })?;
    if resp.producer_id.0 < 0 || resp.producer_epoch < 0 {
        return Err(Error::Protocol { addr: conn.addr().to_string(), reason: format!("InitProducerId answered id {} epoch {}", resp.producer_id.0, resp.producer_epoch) });
    }
    Ok(ProducerIds { id: resp.producer_id.0, epoch: resp.producer_epoch })
}

/// One AddPartitionsToTxn: each partition with its error, if it has one.
pub(crate) async fn add_partitions(conn: &Connection, transactional_id: &str, ids: ProducerIds, partitions: &[Tp]) -> Result<Vec<(Tp, Option<Error>)>> {
    let version = conn.version::<AddPartitionsToTxnRequest>(ADD_PARTITIONS_TO_TXN.0, ADD_PARTITIONS_TO_TXN.1)?;
    let resp = conn.send(&add_partitions_request(transactional_id, ids, partitions), version).await?;
    let mut codes: BTreeMap<(String, i32), i16> = BTreeMap::new();
    for t in resp.results_by_topic_v3_and_below {
        for p in t.results_by_partition {
            codes.insert((t.name.0.to_string(), p.partition_index), p.partition_error_code);
        }
    }
    Ok(partitions
        .iter()
        .map(|tp| {
            let error = match codes.get(&(tp.0.to_string(), tp.1)) {
                Some(code) => Error::broker(*code, format!("add {}-{} to transaction `{transactional_id}`", tp.0, tp.1)),
                None => Some(Error::Protocol { addr: conn.addr().to_string(), reason: format!("AddPartitionsToTxn has no answer for {}-{}", tp.0, tp.1) }),
            };
            (tp.clone(), error)
        })
        .collect())
}

/// One AddOffsetsToTxn.
pub(crate) async fn add_offsets(conn: &Connection, transactional_id: &str, ids: ProducerIds, group_id: &str) -> Result<()> {
    let version = conn.version::<AddOffsetsToTxnRequest>(ADD_OFFSETS_TO_TXN.0, ADD_OFFSETS_TO_TXN.1)?;
    let resp = conn.send(&add_offsets_request(transactional_id, ids, group_id), version).await?;
    check(resp.error_code, None, || format!("add the offsets of group `{group_id}` to transaction `{transactional_id}`"))
}

/// One EndTxn.
pub(crate) async fn end_txn(conn: &Connection, transactional_id: &str, ids: ProducerIds, commit: bool) -> Result<()> {
    let version = conn.version::<EndTxnRequest>(END_TXN.0, END_TXN.1)?;
    let resp = conn.send(&end_txn_request(transactional_id, ids, commit), version).await?;
    let verb = if commit { "commit" } else { "abort" };
    check(resp.error_code, None, || format!("{verb} transaction `{transactional_id}`"))
}

/// One TxnOffsetCommit at the group coordinator; the first partition error fails it.
pub(crate) async fn txn_offset_commit(
    conn: &Connection,
    transactional_id: &str,
    ids: ProducerIds,
    group: &GroupMetadata,
    offsets: &BTreeMap<TopicPartition, i64>,
) -> Result<()> {
    let version = conn.version::<TxnOffsetCommitRequest>(TXN_OFFSET_COMMIT.0, TXN_OFFSET_COMMIT.1)?;
    let resp = conn.send(&txn_offset_commit_request(transactional_id, ids, group, offsets, version), version).await?;
    for t in resp.topics {
        for p in t.partitions {
            let context = || format!("commit the offset of {}-{} for group `{}` in transaction `{transactional_id}`", t.name.0, p.partition_index, group.group_id);
            check(p.error_code, None, context)?;
        }
    }
    Ok(())
}

/// Whether a transactional call may succeed if repeated: the coordinator moved, loads, or
/// is still finishing an earlier transaction of this id (CONCURRENT_TRANSACTIONS).
pub(crate) fn retriable(e: &Error) -> bool {
    e.is_retriable() || e.kafka_error() == Some(ResponseError::ConcurrentTransactions)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::BytesMut;
    use kafka_protocol::protocol::{Decodable, Encodable};

    use super::*;

    const IDS: ProducerIds = ProducerIds { id: 42, epoch: 3 };

    fn roundtrip<R: Encodable + Decodable>(req: &R, version: i16) -> R {
        let mut buf = BytesMut::new();
        req.encode(&mut buf, version).unwrap_or_else(|e| panic!("v{version}: {e}"));
        R::decode(&mut buf.freeze(), version).unwrap()
    }

    #[test]
    fn init_producer_id_presents_the_current_epoch_from_v3() {
        for v in INIT_PRODUCER_ID.0..=INIT_PRODUCER_ID.1 {
            let got = roundtrip(&init_producer_id_request(Some("tx"), Duration::from_secs(60), Some(IDS), v), v);
            assert_eq!(got.transactional_id.as_deref().map(|s| s.as_str()), Some("tx"));
            assert_eq!(got.transaction_timeout_ms, 60_000);
            let expected = if v >= 3 { (42, 3) } else { (-1, -1) };
            assert_eq!((got.producer_id.0, got.producer_epoch), expected, "v{v}");
            let plain = roundtrip(&init_producer_id_request(None, Duration::from_secs(60), None, v), v);
            assert_eq!(plain.transactional_id, None);
        }
    }

    #[test]
    fn add_partitions_groups_by_topic() {
        let parts: Vec<Tp> = vec![(Arc::from("a"), 0), (Arc::from("b"), 1), (Arc::from("a"), 2)];
        for v in ADD_PARTITIONS_TO_TXN.0..=ADD_PARTITIONS_TO_TXN.1 {
            let got = roundtrip(&add_partitions_request("tx", IDS, &parts), v);
            assert_eq!(got.v3_and_below_producer_id.0, 42);
            let topics: Vec<(String, Vec<i32>)> = got.v3_and_below_topics.iter().map(|t| (t.name.0.to_string(), t.partitions.clone())).collect();
            assert_eq!(topics, vec![("a".to_string(), vec![0, 2]), ("b".to_string(), vec![1])]);
        }
    }

    #[test]
    fn txn_offset_commit_sends_the_generation_from_v3() {
        let group = GroupMetadata { group_id: "g".into(), generation: 5, member_id: "m-1".into(), instance_id: Some("i".into()) };
        let offsets = BTreeMap::from([(TopicPartition::new("in", 0), 10), (TopicPartition::new("in", 1), 20)]);
        for v in TXN_OFFSET_COMMIT.0..=TXN_OFFSET_COMMIT.1 {
            let got = roundtrip(&txn_offset_commit_request("tx", IDS, &group, &offsets, v), v);
            assert_eq!(got.topics[0].partitions.iter().map(|p| p.committed_offset).collect::<Vec<_>>(), vec![10, 20]);
            if v >= 3 {
                assert_eq!((got.generation_id, got.member_id.as_str(), got.group_instance_id.as_ref().map(|s| s.as_str())), (5, "m-1", Some("i")));
            } else {
                assert_eq!(got.generation_id, -1);
            }
        }
    }

    #[test]
    fn other_requests_encode_at_every_allowed_version() {
        for v in ADD_OFFSETS_TO_TXN.0..=ADD_OFFSETS_TO_TXN.1 {
            assert_eq!(roundtrip(&add_offsets_request("tx", IDS, "g"), v).group_id.0.as_str(), "g");
        }
        for v in END_TXN.0..=END_TXN.1 {
            assert!(roundtrip(&end_txn_request("tx", IDS, true), v).committed);
            assert!(!roundtrip(&end_txn_request("tx", IDS, false), v).committed);
        }
    }

    #[test]
    fn concurrent_transactions_is_worth_a_retry() {
        let e = |error| Error::Broker { error, context: String::new() };
        assert!(retriable(&e(ResponseError::ConcurrentTransactions)));
        assert!(retriable(&e(ResponseError::NotCoordinator)));
        assert!(retriable(&e(ResponseError::CoordinatorLoadInProgress)));
        assert!(!retriable(&e(ResponseError::ProducerFenced)));
        assert!(!retriable(&e(ResponseError::InvalidTxnState)));
    }
}
