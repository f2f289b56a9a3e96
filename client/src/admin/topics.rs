//! Topics: CreateTopics, DeleteTopics, CreatePartitions, and listing/describing through
//! Metadata.

use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::{CreatePartitionsRequest, CreateTopicsRequest, DeleteTopicsRequest, TopicName};

use super::{check, check_topic, Admin};
use crate::error::{Error, Result};
use crate::net::cluster::sb;
use crate::net::TopicInfo;

/// CreateTopics versions: v2 is the oldest Kafka 4 serves; v7 the newest Samsa's broker does.
pub(crate) const CREATE_TOPICS: (i16, i16) = (2, 7);
/// DeleteTopics versions (v6 names topics in a struct that may carry an id instead).
pub(crate) const DELETE_TOPICS: (i16, i16) = (1, 6);
/// CreatePartitions versions.
pub(crate) const CREATE_PARTITIONS: (i16, i16) = (0, 3);

/// A topic to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTopic {
    /// Topic name.
    pub name: String,
    /// Number of partitions (-1: the broker's `num.partitions`).
    pub partitions: i32,
    /// Replicas per partition (-1: the broker's default).
    pub replication_factor: i16,
    /// Topic-level config overrides, by Kafka name (`retention.ms`, `cleanup.policy`, ...).
    pub configs: Vec<(String, String)>,
}

impl NewTopic {
    /// A topic with no config overrides.
    pub fn new(name: impl Into<String>, partitions: i32, replication_factor: i16) -> NewTopic {
        NewTopic { name: name.into(), partitions, replication_factor, configs: Vec::new() }
    }

    /// Builder: adds one config override.
    pub fn config(mut self, key: impl Into<String>, value: impl Into<String>) -> NewTopic {
        self.configs.push((key.into(), value.into()));
        self
    }
}

fn timeout_ms(admin: &Admin) -> i32 {
    admin.cluster.config().request_timeout.as_millis().min(i32::MAX as u128) as i32
}

/// The CreateTopics request; every field it sets exists from v2 on.
pub(crate) fn create_topics_request(topics: &[NewTopic], timeout_ms: i32) -> CreateTopicsRequest {
    CreateTopicsRequest::default().with_timeout_ms(timeout_ms).with_topics(
        topics
            .iter()
            .map(|t| {
                CreatableTopic::default()
                    .with_name(TopicName(sb(&t.name)))
                    .with_num_partitions(t.partitions)
                    .with_replication_factor(t.replication_factor)
                    .with_configs(t.configs.iter().map(|(k, v)| CreatableTopicConfig::default().with_name(sb(k)).with_value(Some(sb(v)))).collect())
            })
            .collect(),
    )
}

/// The DeleteTopics request: names in `topic_names` before v6, in `topics` from v6.
pub(crate) fn delete_topics_request(names: &[String], timeout_ms: i32, version: i16) -> DeleteTopicsRequest {
    let req = DeleteTopicsRequest::default().with_timeout_ms(timeout_ms);
    if version >= 6 {
        req.with_topics(names.iter().map(|n| DeleteTopicState::default().with_name(Some(TopicName(sb(n))))).collect())
    } else {
        req.with_topic_names(names.iter().map(|n| TopicName(sb(n))).collect())
    }
}

/// The CreatePartitions request; every field it sets exists from v0 on.
pub(crate) fn create_partitions_request(topic: &str, total: i32, timeout_ms: i32) -> CreatePartitionsRequest {
    CreatePartitionsRequest::default()
        .with_timeout_ms(timeout_ms)
        .with_topics(vec![CreatePartitionsTopic::default().with_name(TopicName(sb(topic))).with_count(total).with_assignments(None)])
}

impl Admin {
    /// Creates topics. The broker tries each one; the first failure is returned (e.g.
    /// TOPIC_ALREADY_EXISTS, with the context "create topic `orders`").
    pub async fn create_topics(&self, topics: &[NewTopic]) -> Result<()> {
        if topics.is_empty() {
            return Ok(());
        }
        let conn = self.cluster.any().await?;
        let version = conn.version::<CreateTopicsRequest>(CREATE_TOPICS.0, CREATE_TOPICS.1)?;
        let resp = conn.send(&create_topics_request(topics, timeout_ms(self)), version).await?;
        for t in topics {
            let r = resp.topics.iter().find(|r| *r.name.0 == *t.name).ok_or_else(|| Error::Protocol {
                addr: conn.addr().to_string(),
                reason: format!("CreateTopics response has no result for `{}`", t.name),
            })?;
            check(r.error_code, r.error_message.as_ref(), || format!("create topic `{}`", t.name))?;
        }
        Ok(())
    }

    /// Deletes topics by name. The broker tries each one; the first failure is returned.
    pub async fn delete_topics(&self, names: &[String]) -> Result<()> {
        if names.is_empty() {
            return Ok(());
        }
        let conn = self.cluster.any().await?;
        let version = conn.version::<DeleteTopicsRequest>(DELETE_TOPICS.0, DELETE_TOPICS.1)?;
        let resp = conn.send(&delete_topics_request(names, timeout_ms(self), version), version).await?;
        for name in names {
            let r = resp.responses.iter().find(|r| r.name.as_ref().is_some_and(|n| *n.0 == **name)).ok_or_else(|| Error::Protocol {
                addr: conn.addr().to_string(),
                reason: format!("DeleteTopics response has no result for `{name}`"),
            })?;
            check_topic(r.error_code, r.error_message.as_ref(), name, || format!("delete topic `{name}`"))?;
        }
        Ok(())
    }

    /// Names of every topic, sorted; internal ones (`__consumer_offsets`) only when asked.
    pub async fn list_topics(&self, include_internal: bool) -> Result<Vec<String>> {
        let md = self.retry(true, || self.cluster.refresh(None, false)).await?;
        Ok(md.topics.values().filter(|t| include_internal || !t.internal).map(|t| t.name.clone()).collect())
    }

    /// Partitions, leaders and replicas of these topics, in the order asked.
    /// A missing topic is [`Error::UnknownTopic`].
    pub async fn describe_topics(&self, names: &[String]) -> Result<Vec<TopicInfo>> {
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let md = self.retry(true, || self.cluster.refresh(Some(names), false)).await?;
        names.iter().map(|n| md.topics.get(n).cloned().ok_or_else(|| Error::UnknownTopic(n.clone()))).collect()
    }

    /// Grows `topic` to `new_total` partitions (Kafka never shrinks a topic).
    pub async fn create_partitions(&self, topic: &str, new_total: i32) -> Result<()> {
        let conn = self.cluster.any().await?;
        let version = conn.version::<CreatePartitionsRequest>(CREATE_PARTITIONS.0, CREATE_PARTITIONS.1)?;
        let resp = conn.send(&create_partitions_request(topic, new_total, timeout_ms(self)), version).await?;
        let r = resp.results.iter().find(|r| *r.name.0 == *topic).ok_or_else(|| Error::Protocol {
            addr: conn.addr().to_string(),
            reason: format!("CreatePartitions response has no result for `{topic}`"),
        })?;
        check_topic(r.error_code, r.error_message.as_ref(), topic, || format!("grow topic `{topic}` to {new_total} partitions"))
    }
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;
    use kafka_protocol::protocol::Encodable;

    use super::*;

    fn encodes<R: Encodable>(req: &R, version: i16) {
        let mut buf = BytesMut::new();
        if let Err(e) = req.encode(&mut buf, version) {
            panic!("{} v{version}: {e}", std::any::type_name::<R>());
        }
    }

    #[test]
    fn requests_encode_at_every_allowed_version() {
        let topics = [NewTopic::new("orders", 3, 1).config("retention.ms", "1000")];
        for v in CREATE_TOPICS.0..=CREATE_TOPICS.1 {
            encodes(&create_topics_request(&topics, 30_000), v);
        }
        for v in DELETE_TOPICS.0..=DELETE_TOPICS.1 {
            encodes(&delete_topics_request(&["orders".to_string()], 30_000, v), v);
        }
        for v in CREATE_PARTITIONS.0..=CREATE_PARTITIONS.1 {
            encodes(&create_partitions_request("orders", 5, 30_000), v);
        }
    }

    #[test]
    fn delete_topics_names_topics_where_the_version_expects_them() {
        let names = ["a".to_string()];
        let old = delete_topics_request(&names, 1, 5);
        assert_eq!(old.topic_names.len(), 1);
        assert!(old.topics.is_empty());
        let new = delete_topics_request(&names, 1, 6);
        assert!(new.topic_names.is_empty());
        assert_eq!(new.topics[0].name.as_ref().map(|n| n.0.to_string()), Some("a".to_string()));
    }
}
