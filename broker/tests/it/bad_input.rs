//! Each bad input of the issue gets Kafka's answer, and another client keeps being served.

use bytes::Bytes;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::RecordBatchDecoder;
use kafka_protocol::ResponseError;
use samsa_broker::Broker;

use crate::raw::{create_topic, batch, start, Conn};

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

/// Produces raw record bytes to partition 0; returns (error code, base offset).
async fn produce(c: &mut Conn, topic: &str, records: Vec<u8>) -> (i16, i64) {
    let mut p = PartitionProduceData::default();
    p.index = 0;
    p.records = Some(Bytes::from(records));
    let mut t = TopicProduceData::default();
    t.name = name(topic);
    t.partition_data = vec![p];
    let mut req = ProduceRequest::default();
    req.acks = -1;
    req.timeout_ms = 5000;
    req.topic_data = vec![t];
    let resp = c.request(&req, 9).await;
    let pr = &resp.responses[0].partition_responses[0];
    (pr.error_code, pr.base_offset)
}

/// Number of records readable from offset 0 of partition 0.
async fn count_records(c: &mut Conn, topic: &str) -> usize {
    let mut total = 0;
    let mut offset = 0i64;
    loop {
        let mut p = FetchPartition::default();
        p.partition = 0;
        p.fetch_offset = offset;
        p.partition_max_bytes = 1 << 20;
        let mut t = FetchTopic::default();
        t.topic = name(topic);
        t.partitions = vec![p];
        let mut req = FetchRequest::default();
        req.max_wait_ms = 0;
        req.min_bytes = 1;
        req.max_bytes = 1 << 22;
        req.topics = vec![t];
        let resp = c.request(&req, 12).await;
        let part = &resp.responses[0].partitions[0];
        assert_eq!(part.error_code, 0);
        let mut records = part.records.clone().unwrap_or_default();
        if records.is_empty() {
            return total;
        }
        for set in RecordBatchDecoder::decode_all(&mut records).unwrap() {
            for r in set.records {
                if r.offset >= offset {
                    total += 1;
                    offset = r.offset + 1;
                }
            }
        }
    }
}

async fn still_serving(broker: &Broker) {
    let mut other = Conn::connect(broker).await;
    let resp = other.request(&ApiVersionsRequest::default(), 3).await;
    assert_eq!(resp.error_code, 0);
    assert!(resp.api_keys.iter().any(|k| k.api_key == ApiKey::Produce as i16));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_frame_closes_only_that_connection() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path(), &[("socket.request.max.bytes", "1024")]).await;
    let mut bad = Conn::connect(&broker).await;
    bad.send_raw(&2000i32.to_be_bytes()).await;
    bad.send_raw(&[0u8; 100]).await;
    assert!(bad.closed_by_peer().await, "oversized frame must close the connection");
    let mut negative = Conn::connect(&broker).await;
    negative.send_raw(&(-5i32).to_be_bytes()).await;
    assert!(negative.closed_by_peer().await);
    still_serving(&broker).await;
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_close_only_that_connection() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path(), &[]).await;
    // A Metadata v12 header followed by garbage instead of a body.
    let mut body = vec![0, 3, 0, 12, 0, 0, 0, 7, 0, 4, b'r', b'a', b'w', b'!', 0];
    body.extend_from_slice(&[0xff; 9]);
    let mut bad = Conn::connect(&broker).await;
    bad.send_raw(&(body.len() as i32).to_be_bytes()).await;
    bad.send_raw(&body).await;
    assert!(bad.closed_by_peer().await);
    // Shorter than a request header.
    let mut short = Conn::connect(&broker).await;
    short.send_raw(&[0, 0, 0, 3, 1, 2, 3]).await;
    assert!(short.closed_by_peer().await);
    // Metadata v0 claiming i32::MAX topics in 4 bytes: must be a decode error, not an
    // allocation of hundreds of GiB (the vendored kafka-protocol patch).
    let mut huge = Conn::connect(&broker).await;
    let body = [0u8, 3, 0, 0, 0, 0, 0, 9, 0xff, 0xff, 0x7f, 0xff, 0xff, 0xff];
    huge.send_raw(&(body.len() as i32).to_be_bytes()).await;
    huge.send_raw(&body).await;
    assert!(huge.closed_by_peer().await);
    // An API key Kafka does not define.
    let mut unknown = Conn::connect(&broker).await;
    unknown.send_raw(&[0, 0, 0, 8, 0x7f, 0x00, 0, 0, 0, 0, 0, 1]).await;
    assert!(unknown.closed_by_peer().await);
    still_serving(&broker).await;
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_new_api_versions_gets_v0_answer_with_supported_list() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path(), &[]).await;
    let mut c = Conn::connect(&broker).await;
    // ApiVersions v99: header v1 (client id), empty body.
    let body = [0u8, 18, 0, 99, 0, 0, 0, 42, 0, 0];
    c.send_raw(&(body.len() as i32).to_be_bytes()).await;
    c.send_raw(&body).await;
    let mut frame = c.read_frame().await;
    let header = <ResponseHeader as kafka_protocol::protocol::Decodable>::decode(&mut frame, 0).unwrap();
    assert_eq!(header.correlation_id, 42);
    let resp = <ApiVersionsResponse as kafka_protocol::protocol::Decodable>::decode(&mut frame, 0).unwrap();
    assert_eq!(resp.error_code, ResponseError::UnsupportedVersion.code());
    assert!(resp.api_keys.iter().any(|k| k.api_key == 18 && k.max_version == 4));
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_batches_get_corrupt_message() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path(), &[]).await;
    let mut c = Conn::connect(&broker).await;
    assert_eq!(create_topic(&mut c, "t", &[]).await, 0);
    let mut bad_crc = batch(3, 10);
    let last = bad_crc.len() - 1;
    bad_crc[last] ^= 0x55;
    assert_eq!(produce(&mut c, "t", bad_crc).await.0, ResponseError::CorruptMessage.code());
    let mut bad_magic = batch(3, 10);
    bad_magic[16] = 1;
    assert_eq!(produce(&mut c, "t", bad_magic).await.0, ResponseError::CorruptMessage.code());
    let truncated = batch(3, 10)[..40].to_vec();
    assert_eq!(produce(&mut c, "t", truncated).await.0, ResponseError::CorruptMessage.code());
    // Nothing was stored; a good batch lands at offset 0 on the same connection.
    assert_eq!(produce(&mut c, "t", batch(2, 10)).await, (0, 0));
    assert_eq!(count_records(&mut c, "t").await, 2);
    still_serving(&broker).await;
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_batch_gets_message_too_large() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path(), &[("message.max.bytes", "4000")]).await;
    let mut c = Conn::connect(&broker).await;
    assert_eq!(create_topic(&mut c, "broker-limit", &[]).await, 0);
    assert_eq!(produce(&mut c, "broker-limit", batch(1, 5000)).await.0, ResponseError::MessageTooLarge.code());
    assert_eq!(create_topic(&mut c, "topic-limit", &[("max.message.bytes", "1000")]).await, 0);
    assert_eq!(produce(&mut c, "topic-limit", batch(1, 2000)).await.0, ResponseError::MessageTooLarge.code());
    assert_eq!(produce(&mut c, "topic-limit", batch(1, 100)).await.0, 0);
    still_serving(&broker).await;
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_topic_without_auto_create() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path(), &[("auto.create.topics.enable", "false")]).await;
    let mut c = Conn::connect(&broker).await;
    let mut t = MetadataRequestTopic::default();
    t.name = Some(name("nope"));
    let mut req = MetadataRequest::default();
    req.topics = Some(vec![t]);
    req.allow_auto_topic_creation = true;
    let resp = c.request(&req, 12).await;
    assert_eq!(resp.topics[0].error_code, ResponseError::UnknownTopicOrPartition.code());
    assert_eq!(produce(&mut c, "nope", batch(1, 1)).await.0, ResponseError::UnknownTopicOrPartition.code());
    still_serving(&broker).await;
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_topic_names_get_invalid_topic() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path(), &[]).await;
    let mut c = Conn::connect(&broker).await;
    for bad in ["has space", "..", "slash/name", &"x".repeat(250)] {
        assert_eq!(create_topic(&mut c, bad, &[]).await, ResponseError::InvalidTopicException.code(), "{bad}");
        let mut t = MetadataRequestTopic::default();
        t.name = Some(name(bad));
        let mut req = MetadataRequest::default();
        req.topics = Some(vec![t]);
        req.allow_auto_topic_creation = true;
        assert_eq!(c.request(&req, 12).await.topics[0].error_code, ResponseError::InvalidTopicException.code(), "{bad}");
    }
    assert_eq!(produce(&mut c, "bad name", batch(1, 1)).await.0, ResponseError::InvalidTopicException.code());
    still_serving(&broker).await;
    broker.shutdown().await;
}

/// A tmpfs mounted for the test and unmounted on drop. Needs root (CI runs as root);
/// without it the test fails with the reason rather than skipping.
struct SmallDisk(tempfile::TempDir);

impl SmallDisk {
    fn new(size: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .expect("run mount");
        assert!(out.status.success(), "the full-disk test mounts a small tmpfs and needs root: {}", String::from_utf8_lossy(&out.stderr));
        SmallDisk(dir)
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(self.0.path()).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_disk_fails_produce_and_keeps_log_readable() {
    let disk = SmallDisk::new("768k");
    let data = disk.0.path().join("data");
    let broker = start(&data, &[("log.segment.bytes", "100000000")]).await;
    let mut c = Conn::connect(&broker).await;
    assert_eq!(create_topic(&mut c, "fill", &[]).await, 0);
    let mut acked = 0usize;
    let mut error = 0;
    for _ in 0..200 {
        let (code, _) = produce(&mut c, "fill", batch(4, 4000)).await;
        if code != 0 {
            error = code;
            break;
        }
        acked += 4;
    }
    assert_eq!(error, ResponseError::KafkaStorageError.code(), "a full disk fails the produce request");
    assert!(acked > 0);
    assert_eq!(count_records(&mut c, "fill").await, acked, "every acknowledged record stays readable");
    still_serving(&broker).await;
    broker.shutdown().await;
    // After a restart the log recovers to exactly the acknowledged records.
    let broker = start(&data, &[("log.segment.bytes", "100000000")]).await;
    let mut c = Conn::connect(&broker).await;
    assert_eq!(count_records(&mut c, "fill").await, acked);
    broker.shutdown().await;
}
