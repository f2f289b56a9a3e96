//! The authorizer over raw requests: with ACLs on and no grants, an unauthenticated client
//! gets Kafka's authorization errors everywhere, including a Fetch that claims to be a
//! follower and WriteTxnMarkers (inter-broker requests need ClusterAction); Metadata lists
//! nothing; the first SCRAM user may still be made from loopback; a super user passes.

use kafka_protocol::messages::alter_user_scram_credentials_request::ScramCredentialUpsertion;
use kafka_protocol::messages::create_acls_request::AclCreation;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::offset_for_leader_epoch_request::{OffsetForLeaderPartition, OffsetForLeaderTopic};
use kafka_protocol::messages::write_txn_markers_request::{WritableTxnMarker, WritableTxnMarkerTopic};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use crate::raw::{start, Conn};

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn fetch(replica: i32) -> FetchRequest {
    let p = FetchPartition::default().with_partition(0).with_fetch_offset(0).with_partition_max_bytes(1 << 20).with_current_leader_epoch(-1);
    FetchRequest::default()
        .with_replica_id(BrokerId(replica))
        .with_max_wait_ms(0)
        .with_max_bytes(1 << 20)
        .with_topics(vec![FetchTopic::default().with_topic(TopicName(s("secret"))).with_partitions(vec![p])])
}

async fn codes(c: &mut Conn) -> Vec<(&'static str, i16)> {
    let mut out = Vec::new();
    for replica in [-1, 1] {
        let r = c.request(&fetch(replica), 11).await;
        out.push(("fetch", r.responses[0].partitions[0].error_code));
    }
    let epoch = OffsetForLeaderEpochRequest::default().with_replica_id(BrokerId(1)).with_topics(vec![OffsetForLeaderTopic::default()
        .with_topic(TopicName(s("secret")))
        .with_partitions(vec![OffsetForLeaderPartition::default().with_partition(0).with_leader_epoch(0)])]);
    out.push(("epoch", c.request(&epoch, 4).await.topics[0].partitions[0].error_code));
    let marker = WritableTxnMarker::default()
        .with_producer_id(ProducerId(7))
        .with_transaction_result(true)
        .with_topics(vec![WritableTxnMarkerTopic::default().with_name(TopicName(s("secret"))).with_partition_indexes(vec![0])]);
    let r = c.request(&WriteTxnMarkersRequest::default().with_markers(vec![marker]), 1).await;
    out.push(("markers", r.markers[0].topics[0].partitions[0].error_code));
    let acl = AclCreation::default()
        .with_resource_type(2)
        .with_resource_name(s("secret"))
        .with_resource_pattern_type(3)
        .with_principal(s("User:x"))
        .with_host(s("*"))
        .with_operation(3)
        .with_permission_type(3);
    out.push(("acls", c.request(&CreateAclsRequest::default().with_creations(vec![acl]), 1).await.results[0].error_code));
    out
}

#[tokio::test]
async fn without_grants_everything_is_refused_even_a_fetch_claiming_to_be_a_follower() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path(), &[("authorizer.enabled", "true")]).await;
    broker.state().create_topic("secret", 1, 1, Vec::new(), Default::default(), false).await.unwrap();
    let mut c = Conn::connect(&broker).await;
    let topic = ResponseError::TopicAuthorizationFailed.code();
    let cluster = ResponseError::ClusterAuthorizationFailed.code();
    assert_eq!(codes(&mut c).await, [("fetch", topic), ("fetch", topic), ("epoch", cluster), ("markers", cluster), ("acls", cluster)]);
    let md = c.request(&MetadataRequest::default().with_topics(None), 12).await;
    assert!(md.topics.is_empty(), "{:?}", md.topics);
    // The first SCRAM user may come from loopback; the second may not.
    for (user, want) in [("first", 0), ("second", cluster)] {
        let u = ScramCredentialUpsertion::default()
            .with_name(s(user))
            .with_mechanism(2)
            .with_iterations(4096)
            .with_salt(vec![1u8; 16].into())
            .with_salted_password(vec![2u8; 64].into());
        let r = c.request(&AlterUserScramCredentialsRequest::default().with_upsertions(vec![u]), 0).await;
        assert_eq!(r.results[0].error_code, want, "{user}");
    }
    broker.shutdown().await;

    // The same as a super user: fetches and the follower's requests pass.
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path(), &[("authorizer.enabled", "true"), ("super.users", "User:ANONYMOUS")]).await;
    broker.state().create_topic("secret", 1, 1, Vec::new(), Default::default(), false).await.unwrap();
    let mut c = Conn::connect(&broker).await;
    let got = codes(&mut c).await;
    assert_eq!(got[..3], [("fetch", 0), ("fetch", 0), ("epoch", 0)]);
    assert_ne!(got[3].1, cluster, "markers were refused for a super user");
    assert_eq!(got[4], ("acls", 0));
    broker.shutdown().await;
}

#[tokio::test]
async fn kafkas_answers_for_out_of_place_requests() {
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    // ACL APIs while the authorizer is off: SECURITY_DISABLED.
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path(), &[]).await;
    let mut c = Conn::connect(&broker).await;
    let r = c.request(&DescribeAclsRequest::default().with_resource_type_filter(1).with_pattern_type_filter(1).with_operation(1).with_permission_type(1), 1).await;
    assert_eq!(r.error_code, ResponseError::SecurityDisabled.code());
    broker.shutdown().await;

    // An acks=0 produce to a refused topic closes the connection (nothing else would tell
    // the producer).
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path(), &[("authorizer.enabled", "true")]).await;
    broker.state().create_topic("secret", 1, 1, Vec::new(), Default::default(), false).await.unwrap();
    let mut c = Conn::connect(&broker).await;
    let data = TopicProduceData::default().with_name(TopicName(s("secret"))).with_partition_data(vec![PartitionProduceData::default().with_index(0)]);
    let req = ProduceRequest::default().with_acks(0).with_timeout_ms(1000).with_topic_data(vec![data]);
    c.send_request_no_response(&req, 9).await;
    assert!(c.closed_by_peer().await, "the connection stayed open");
    broker.shutdown().await;

    // SaslAuthenticate before SaslHandshake on a SASL listener: ILLEGAL_SASL_STATE, closed.
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path(), &[("listeners", "SASL_PLAINTEXT://127.0.0.1:0")]).await;
    let mut c = Conn::connect(&broker).await;
    let r = c.request(&SaslAuthenticateRequest::default().with_auth_bytes(b"n,,n=a,r=b".to_vec().into()), 1).await;
    assert_eq!(r.error_code, ResponseError::IllegalSaslState.code());
    assert!(c.closed_by_peer().await, "the connection stayed open");
    broker.shutdown().await;
}
