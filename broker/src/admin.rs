//! Topic administration through the metadata quorum: the operations behind CreateTopics,
//! DeleteTopics, CreatePartitions, AlterConfigs and topic auto-creation.
//!
//! Each validates what only this broker can check (names, config values, defaults), then
//! proposes a [`Command`]; the state machine checks the rest (existence, brokers,
//! assignments) identically on every node. `validate_only` runs the command against a
//! copy of the current image instead of proposing it.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::ResponseError;
use uuid::Uuid;

use crate::config::check_topic_config;
use crate::meta::{into_result, Command, Image, Outcome, TopicInfo};
use crate::server::BrokerState;
use crate::topics::{validate_topic_name, ApiError, OFFSETS_TOPIC, TXN_TOPIC};

impl BrokerState {
    /// Proposes `cmd`, or with `validate_only` applies it to a copy of the image; returns
    /// the outcome and the image it produced.
    async fn run(&self, cmd: Command, validate_only: bool) -> Result<(Outcome, Arc<Image>), ApiError> {
        if validate_only {
            let mut copy = (*self.image()).clone();
            let outcome = into_result(copy.apply(&cmd))?;
            return Ok((outcome, Arc::new(copy)));
        }
        let outcome = self.controller.propose(cmd).await?;
        let image = self.image();
        self.topics.wait_reconciled(image.applied_index, std::time::Duration::from_secs(5)).await;
        Ok((outcome, image))
    }

    /// Creates a topic (`replication_factor` -1: `default.replication.factor`;
    /// `partitions` -1: `num.partitions`) and returns it as applied.
    pub async fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        replication_factor: i16,
        assignments: Vec<Vec<i32>>,
        configs: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<TopicInfo, ApiError> {
        validate_topic_name(name)?;
        for (k, v) in &configs {
            check_topic_config(k, v).map_err(|m| ApiError::new(ResponseError::InvalidConfig, m))?;
        }
        let partitions = if partitions == -1 { self.config.int("num.partitions") as i32 } else { partitions };
        let replication_factor = if replication_factor == -1 { self.config.int("default.replication.factor") as i16 } else { replication_factor };
        let id = Uuid::new_v4();
        let cmd = Command::CreateTopic { name: name.to_string(), id, partitions, replication_factor, assignments, configs };
        let (_, image) = self.run(cmd, validate_only).await?;
        if !validate_only {
            tracing::info!(topic = %name, partitions, replication_factor, "created topic");
        }
        image.topic(name).cloned().ok_or_else(|| ApiError::new(ResponseError::UnknownTopicOrPartition, format!("topic `{name}` was deleted right after it was created")))
    }

    /// Creates `__consumer_offsets` when the first group needs it, with
    /// `offsets.topic.replication.factor` capped at the brokers available.
    pub async fn ensure_offsets_topic(&self) -> Result<(), ApiError> {
        self.ensure_internal_topic(OFFSETS_TOPIC, "offsets.topic").await
    }

    /// Creates `__transaction_state` when the first transactional producer needs it.
    pub async fn ensure_txn_topic(&self) -> Result<(), ApiError> {
        self.ensure_internal_topic(TXN_TOPIC, "transaction.state.log").await
    }

    /// Creates a compacted internal topic from the `<prefix>.num.partitions`,
    /// `.replication.factor` (capped at the live brokers) and `.segment.bytes` keys.
    async fn ensure_internal_topic(&self, name: &str, prefix: &str) -> Result<(), ApiError> {
        if self.image().topic(name).is_some() {
            return Ok(());
        }
        let live = self.image().live_brokers().len().max(1) as i64;
        let rf = self.config.int(&format!("{prefix}.replication.factor")).min(live) as i16;
        let mut configs = BTreeMap::new();
        configs.insert("cleanup.policy".to_string(), "compact".to_string());
        configs.insert("segment.bytes".to_string(), self.config.get(&format!("{prefix}.segment.bytes")).to_string());
        if rf > 1 {
            configs.insert("min.insync.replicas".to_string(), "1".to_string());
        }
        let partitions = self.config.int(&format!("{prefix}.num.partitions")) as i32;
        match self.create_topic(name, partitions, rf, Vec::new(), configs, false).await {
            Ok(_) => Ok(()),
            Err(e) if e.code == ResponseError::TopicAlreadyExists => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Deletes a topic; returns its id.
    pub async fn delete_topic(&self, name: &str) -> Result<Uuid, ApiError> {
        let id = self.image().topic(name).map(|t| t.id).ok_or_else(|| ApiError::new(ResponseError::UnknownTopicOrPartition, format!("topic `{name}` does not exist")))?;
        if crate::topics::is_internal(name) {
            return Err(ApiError::new(ResponseError::InvalidTopicException, format!("`{name}` is an internal topic and cannot be deleted")));
        }
        self.run(Command::DeleteTopic { name: name.to_string() }, false).await?;
        tracing::info!(topic = %name, "deleted topic");
        Ok(id)
    }

    /// Grows a topic to `total` partitions.
    pub async fn add_partitions(&self, name: &str, total: i32, assignments: Vec<Vec<i32>>, validate_only: bool) -> Result<(), ApiError> {
        self.run(Command::CreatePartitions { name: name.to_string(), total, assignments }, validate_only).await.map(|_| ())
    }

    /// Replaces a topic's config overrides.
    pub async fn set_topic_configs(&self, name: &str, configs: BTreeMap<String, String>, validate_only: bool) -> Result<(), ApiError> {
        for (k, v) in &configs {
            check_topic_config(k, v).map_err(|m| ApiError::new(ResponseError::InvalidConfig, m))?;
        }
        self.run(Command::SetTopicConfigs { name: name.to_string(), configs }, validate_only).await.map(|_| ())
    }
}
