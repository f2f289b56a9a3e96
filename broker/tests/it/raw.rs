//! A minimal raw Kafka client for tests: typed requests in, typed responses out, plus
//! helpers to send arbitrary bytes.

use std::path::Path;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, Request, StrBytes};
use kafka_protocol::records::Compression;
use samsa_broker::{Broker, BrokerConfig, BrokerOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub struct Conn {
    stream: TcpStream,
    next_id: i32,
}

impl Conn {
    pub async fn connect(broker: &Broker) -> Conn {
        Conn { stream: TcpStream::connect(broker.local_addr()).await.unwrap(), next_id: 1 }
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    /// True if the broker closed the connection (EOF or reset) within 10 s.
    pub async fn closed_by_peer(&mut self) -> bool {
        let mut buf = [0u8; 64];
        matches!(tokio::time::timeout(Duration::from_secs(10), self.stream.read(&mut buf)).await, Ok(Ok(0)) | Ok(Err(_)))
    }

    pub async fn request<R: Request>(&mut self, req: &R, version: i16) -> R::Response {
        let key = ApiKey::try_from(R::KEY).unwrap();
        self.send_request_no_response(req, version).await;
        let mut resp = self.read_frame().await;
        let rh = ResponseHeader::decode(&mut resp, key.response_header_version(version)).unwrap();
        assert_eq!(rh.correlation_id, self.next_id - 1);
        R::Response::decode(&mut resp, version).unwrap()
    }

    /// Writes a request (with a header); its answer, if any, is read by the caller.
    pub async fn send_request_no_response<R: Request>(&mut self, req: &R, version: i16) {
        let key = ApiKey::try_from(R::KEY).unwrap();
        let mut body = BytesMut::new();
        let mut h = RequestHeader::default();
        h.request_api_key = R::KEY;
        h.request_api_version = version;
        h.correlation_id = self.next_id;
        h.client_id = Some(StrBytes::from_static_str("raw-test"));
        self.next_id += 1;
        h.encode(&mut body, key.request_header_version(version)).unwrap();
        req.encode(&mut body, version).unwrap();
        self.stream.write_all(&(body.len() as i32).to_be_bytes()).await.unwrap();
        self.stream.write_all(&body).await.unwrap();
    }

    pub async fn read_frame(&mut self) -> Bytes {
        let mut len = [0u8; 4];
        tokio::time::timeout(Duration::from_secs(20), self.stream.read_exact(&mut len)).await.expect("response in time").unwrap();
        let mut body = vec![0u8; i32::from_be_bytes(len) as usize];
        self.stream.read_exact(&mut body).await.unwrap();
        Bytes::from(body)
    }
}

pub async fn start(dir: &Path, settings: &[(&str, &str)]) -> Broker {
    let mut config = BrokerConfig::default();
    config.set("offsets.topic.num.partitions", "1").unwrap();
    for (k, v) in settings {
        config.set(k, v).unwrap();
    }
    Broker::start(BrokerOptions { data_dir: dir.to_path_buf(), listen: "127.0.0.1:0".into(), node_id: 1, controller_listen: None, voters: Default::default(), config })
        .await
        .unwrap()
}

/// One uncompressed batch of `n` records with `value_len`-byte values.
pub fn batch(n: usize, value_len: usize) -> Vec<u8> {
    let records: Vec<_> = (0..n).map(|i| (Some(Bytes::from(format!("k{i}"))), Some(Bytes::from(vec![b'v'; value_len])), 1_700_000_000_000 + i as i64)).collect();
    samsa_client::wire::batch::encode_plain(&records, Compression::None).unwrap()
}

/// Creates a one-partition topic with these configs; returns the error code.
pub async fn create_topic(c: &mut Conn, topic: &str, configs: &[(&str, &str)]) -> i16 {
    let mut t = kafka_protocol::messages::create_topics_request::CreatableTopic::default();
    t.name = kafka_protocol::messages::TopicName(StrBytes::from_string(topic.to_string()));
    t.num_partitions = 1;
    t.replication_factor = 1;
    t.configs = configs
        .iter()
        .map(|(k, v)| {
            let mut c = kafka_protocol::messages::create_topics_request::CreatableTopicConfig::default();
            c.name = StrBytes::from_string(k.to_string());
            c.value = Some(StrBytes::from_string(v.to_string()));
            c
        })
        .collect();
    let mut req = kafka_protocol::messages::CreateTopicsRequest::default();
    req.topics = vec![t];
    req.timeout_ms = 5000;
    c.request(&req, 7).await.topics[0].error_code
}
