//! The transaction APIs at the wire level, with Kafka's error codes: epoch fencing and
//! state errors at the coordinator, pending offsets and `require_stable`, the last stable
//! offset under read_committed, stale markers, and the admin views.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::txn_offset_commit_request::{TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic};
use kafka_protocol::messages::write_txn_markers_request::{WritableTxnMarker, WritableTxnMarkerTopic};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};
use kafka_protocol::ResponseError;

use crate::raw::{create_topic, start, Conn};

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn txn_batch(pid: i64, epoch: i16, value: &str) -> Bytes {
    let r = Record {
        transactional: true,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: 0,
        producer_id: pid,
        producer_epoch: epoch,
        timestamp_type: TimestampType::Creation,
        offset: 0,
        sequence: 0,
        timestamp: 1_700_000_000_000,
        key: None,
        value: Some(Bytes::copy_from_slice(value.as_bytes())),
        headers: Default::default(),
    };
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(&mut buf, &[r], &RecordEncodeOptions { version: 2, compression: Compression::None }).unwrap();
    buf.freeze()
}

async fn init(c: &mut Conn, id: &str) -> (i16, i64, i16) {
    let req = InitProducerIdRequest::default().with_transactional_id(Some(TransactionalId(s(id)))).with_transaction_timeout_ms(60_000).with_producer_id(ProducerId(-1)).with_producer_epoch(-1);
    let r = c.request(&req, 4).await;
    (r.error_code, r.producer_id.0, r.producer_epoch)
}

async fn end(c: &mut Conn, id: &str, pid: i64, epoch: i16, commit: bool) -> i16 {
    let req = EndTxnRequest::default().with_transactional_id(TransactionalId(s(id))).with_producer_id(ProducerId(pid)).with_producer_epoch(epoch).with_committed(commit);
    c.request(&req, 3).await.error_code
}

async fn add_partition(c: &mut Conn, id: &str, pid: i64, epoch: i16, topic: &str) -> i16 {
    let t = AddPartitionsToTxnTopic::default().with_name(TopicName(s(topic))).with_partitions(vec![0]);
    let req = AddPartitionsToTxnRequest::default()
        .with_v3_and_below_transactional_id(TransactionalId(s(id)))
        .with_v3_and_below_producer_id(ProducerId(pid))
        .with_v3_and_below_producer_epoch(epoch)
        .with_v3_and_below_topics(vec![t]);
    let r = c.request(&req, 3).await;
    r.results_by_topic_v3_and_below[0].results_by_partition[0].partition_error_code
}

/// (error, committed offset) of group `g` for `topic`-0.
async fn fetch_offset(c: &mut Conn, topic: &str, require_stable: bool) -> (i16, i64) {
    let t = OffsetFetchRequestTopic::default().with_name(TopicName(s(topic))).with_partition_indexes(vec![0]);
    let req = OffsetFetchRequest::default().with_group_id(GroupId(s("g"))).with_topics(Some(vec![t])).with_require_stable(require_stable);
    let r = c.request(&req, 7).await;
    let p = &r.topics[0].partitions[0];
    (p.error_code, p.committed_offset)
}

/// (high watermark, last stable offset, records bytes, aborted list) of `topic`-0.
async fn fetch(c: &mut Conn, topic: &str, isolation: i8) -> (i64, i64, usize, Option<usize>) {
    let p = FetchPartition::default().with_partition(0).with_fetch_offset(0).with_partition_max_bytes(1 << 20).with_current_leader_epoch(-1);
    let req = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(0)
        .with_min_bytes(0)
        .with_max_bytes(1 << 20)
        .with_isolation_level(isolation)
        .with_topics(vec![FetchTopic::default().with_topic(TopicName(s(topic))).with_partitions(vec![p])]);
    let r = c.request(&req, 11).await;
    let p = &r.responses[0].partitions[0];
    assert_eq!(p.error_code, 0);
    (p.high_watermark, p.last_stable_offset, p.records.as_ref().map_or(0, |b| b.len()), p.aborted_transactions.as_ref().map(Vec::len))
}

async fn latest(c: &mut Conn, topic: &str, isolation: i8) -> i64 {
    let p = ListOffsetsPartition::default().with_partition_index(0).with_timestamp(-1).with_current_leader_epoch(-1);
    let req = ListOffsetsRequest::default().with_replica_id(BrokerId(-1)).with_isolation_level(isolation).with_topics(vec![ListOffsetsTopic::default().with_name(TopicName(s(topic))).with_partitions(vec![p])]);
    c.request(&req, 5).await.topics[0].partitions[0].offset
}

#[tokio::test]
async fn transaction_protocol_errors_pending_offsets_and_stable_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path(), &[("transaction.state.log.num.partitions", "1")]).await;
    let mut c = Conn::connect(&broker).await;
    let fc = c.request(&FindCoordinatorRequest::default().with_key(s("t")).with_key_type(1), 3).await;
    assert_eq!((fc.error_code, fc.node_id.0), (0, 1));
    assert_eq!(create_topic(&mut c, "tp", &[]).await, 0);

    let (e, pid, e0) = init(&mut c, "t").await;
    assert_eq!((e, e0), (0, 0));
    let (e, pid2, epoch) = init(&mut c, "t").await;
    assert_eq!((e, pid2, epoch), (0, pid, 1), "a second producer bumps the epoch");
    assert_eq!(end(&mut c, "t", pid, 0, true).await, ResponseError::ProducerFenced.code());
    assert_eq!(end(&mut c, "t", pid, epoch, true).await, ResponseError::InvalidTxnState.code(), "nothing to commit");
    assert_eq!(add_partition(&mut c, "t", pid, epoch, "no-such-topic").await, ResponseError::UnknownTopicOrPartition.code());
    assert_eq!(add_partition(&mut c, "t", pid, 0, "tp").await, ResponseError::ProducerFenced.code());
    assert_eq!(add_partition(&mut c, "t", pid + 1, epoch, "tp").await, ResponseError::InvalidProducerIdMapping.code());
    assert_eq!(add_partition(&mut c, "t", pid, epoch, "tp").await, 0);
    let ao = AddOffsetsToTxnRequest::default().with_transactional_id(TransactionalId(s("t"))).with_producer_id(ProducerId(pid)).with_producer_epoch(epoch).with_group_id(GroupId(s("g")));
    assert_eq!(c.request(&ao, 3).await.error_code, 0);

    // Offsets committed in the transaction stay pending.
    let part = TxnOffsetCommitRequestPartition::default().with_partition_index(0).with_committed_offset(42).with_committed_leader_epoch(-1);
    let toc = TxnOffsetCommitRequest::default()
        .with_transactional_id(TransactionalId(s("t")))
        .with_group_id(GroupId(s("g")))
        .with_producer_id(ProducerId(pid))
        .with_producer_epoch(epoch)
        .with_generation_id(-1)
        .with_member_id(s(""))
        .with_topics(vec![TxnOffsetCommitRequestTopic::default().with_name(TopicName(s("tp"))).with_partitions(vec![part])]);
    assert_eq!(c.request(&toc, 3).await.topics[0].partitions[0].error_code, 0);
    assert_eq!(fetch_offset(&mut c, "tp", true).await.0, ResponseError::UnstableOffsetCommit.code());
    assert_eq!(fetch_offset(&mut c, "tp", false).await, (0, -1), "not committed yet");

    // A transactional record: visible to read_uncommitted only; the LSO stays before it.
    let pd = PartitionProduceData::default().with_index(0).with_records(Some(txn_batch(pid, epoch, "in-txn")));
    let produce = ProduceRequest::default().with_acks(-1).with_timeout_ms(5000).with_transactional_id(Some(TransactionalId(s("t")))).with_topic_data(vec![TopicProduceData::default().with_name(TopicName(s("tp"))).with_partition_data(vec![pd])]);
    assert_eq!(c.request(&produce, 9).await.responses[0].partition_responses[0].error_code, 0);
    let (hw, lso, bytes, aborted) = fetch(&mut c, "tp", 1).await;
    assert_eq!((hw, lso, bytes, aborted), (1, 0, 0, Some(0)));
    assert!(fetch(&mut c, "tp", 0).await.2 > 0, "read_uncommitted sees the open transaction");
    assert_eq!((latest(&mut c, "tp", 1).await, latest(&mut c, "tp", 0).await), (0, 1));

    // Commit: the marker moves the LSO and turns the pending offsets into committed ones.
    assert_eq!(end(&mut c, "t", pid, epoch, true).await, 0);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while fetch_offset(&mut c, "tp", true).await != (0, 42) {
        assert!(tokio::time::Instant::now() < deadline, "offsets still pending 10 s after the commit");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (hw, lso, bytes, _) = fetch(&mut c, "tp", 1).await;
    assert_eq!((hw, lso), (2, 2), "record + marker");
    assert!(bytes > 0);
    assert_eq!(end(&mut c, "t", pid, epoch, true).await, 0, "a retried commit succeeds");
    assert_eq!(end(&mut c, "t", pid, epoch, false).await, ResponseError::InvalidTxnState.code());

    // A marker from an older producer epoch is refused.
    let marker = WritableTxnMarker::default()
        .with_producer_id(ProducerId(pid))
        .with_producer_epoch(0)
        .with_transaction_result(false)
        .with_coordinator_epoch(0)
        .with_topics(vec![WritableTxnMarkerTopic::default().with_name(TopicName(s("tp"))).with_partition_indexes(vec![0])]);
    let w = c.request(&WriteTxnMarkersRequest::default().with_markers(vec![marker]), 1).await;
    assert_eq!(w.markers[0].topics[0].partitions[0].error_code, ResponseError::InvalidProducerEpoch.code());

    // Admin views.
    let d = c.request(&DescribeTransactionsRequest::default().with_transactional_ids(vec![TransactionalId(s("t")), TransactionalId(s("nope"))]), 0).await;
    assert_eq!((d.transaction_states[0].error_code, d.transaction_states[0].transaction_state.as_str()), (0, "CompleteCommit"));
    assert_eq!(d.transaction_states[1].error_code, ResponseError::TransactionalIdNotFound.code());
    let l = c.request(&ListTransactionsRequest::default().with_state_filters(vec![s("CompleteCommit"), s("Bogus")]).with_duration_filter(-1), 1).await;
    assert_eq!(l.transaction_states.iter().map(|t| t.transactional_id.0.to_string()).collect::<Vec<_>>(), vec!["t"]);
    assert_eq!(l.unknown_state_filters, vec![s("Bogus")]);
    broker.shutdown().await;
}
