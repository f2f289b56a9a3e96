//! The admin client: topics, partitions, configs, groups, offsets, transactions and the
//! cluster.
//!
//! ```text
//!  Admin ──> net::Cluster ──any()──────────> Create/DeleteTopics, CreatePartitions, configs
//!                         ├─broker(leader)──> ListOffsets (one request per leader)
//!                         ├─broker(each)────> ListGroups (every broker, merged)
//!                         ├─broker(each)────> ListTransactions (every broker, merged)
//!                         ├─coordinator(g)──> DescribeGroups, DeleteGroups, OffsetFetch/Commit
//!                         └─coordinator(t)──> DescribeTransactions
//! ```
//!
//! Every call speaks only the Kafka wire protocol, at a version both sides serve, and only
//! sets the request fields that version has (the request builders are pure functions,
//! unit-tested at every version they allow). Kafka error codes become [`Error::Broker`]
//! with a context naming the topic or group; a missing topic is [`Error::UnknownTopic`].
//!
//! Retries: reads and group calls are retried (at most [`MAX_ATTEMPTS`] times) when the
//! coordinator or a leader moved, or a connection broke; topic changes are not retried
//! after a broken connection, since the broker may already have applied them.

mod acls;
mod configs;
mod groups;
mod offsets;
mod topics;
mod transactions;
mod users;

use std::future::Future;
use std::sync::Arc;

use kafka_protocol::ResponseError;

pub use crate::consumer::TopicPartition;
pub use crate::net::{BrokerInfo, PartitionInfo, TopicInfo};
pub use configs::{ConfigEntry, ConfigResource, ConfigSource};
pub use groups::{decode_assignment, GroupDescription, GroupListing, MemberDescription};
pub use crate::consumer::offsets::OffsetSpec;
pub use topics::NewTopic;
pub use transactions::{ProducerDescription, TransactionDescription, TransactionListing};
pub use users::ScramUser;

use crate::config::{unknown_key, CommonConfig};
pub(crate) use crate::error::{check, check_topic};
use crate::error::{Error, Result};
use crate::net::Cluster;

/// How many times one admin call is tried when the cluster moved under it.
pub const MAX_ATTEMPTS: u32 = 5;

/// Admin client configuration: only the settings every client shares.
#[derive(Debug, Clone, Default)]
pub struct AdminConfig {
    /// Settings shared with other clients.
    pub common: CommonConfig,
}

crate::config::property_constructors!(AdminConfig);

impl AdminConfig {
    /// Sets one property by its Kafka name; unknown names are an error that names them.
    pub fn set(&mut self, key: &str, value: &str) -> Result<&mut Self> {
        if self.common.set(key, value)? {
            return Ok(self);
        }
        Err(unknown_key("admin", key, &[]))
    }
}

/// What `describe_cluster` returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterDescription {
    /// The cluster id, if the broker reports one.
    pub cluster_id: Option<String>,
    /// The controller's node id, if known.
    pub controller: Option<i32>,
    /// Every broker, sorted by node id.
    pub brokers: Vec<BrokerInfo>,
}

/// An async admin client over one cluster view.
pub struct Admin {
    cluster: Arc<Cluster>,
}

impl std::fmt::Debug for Admin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admin").field("bootstrap", &self.cluster.config().bootstrap_servers).finish()
    }
}

impl Admin {
    /// Connects to the first bootstrap server that answers.
    pub async fn new(config: AdminConfig) -> Result<Admin> {
        Ok(Admin { cluster: Cluster::connect(config.common).await? })
    }

    /// Connects with default settings to these bootstrap servers.
    pub async fn connect(bootstrap: &str) -> Result<Admin> {
        Admin::new(AdminConfig::new(bootstrap)?).await
    }

    /// The cluster view this client uses.
    pub fn cluster(&self) -> &Arc<Cluster> {
        &self.cluster
    }

    /// The cluster id, the controller and the brokers (from Metadata).
    pub async fn describe_cluster(&self) -> Result<ClusterDescription> {
        let md = self.retry(true, || self.cluster.refresh(Some(&[]), false)).await?;
        Ok(ClusterDescription {
            cluster_id: md.cluster_id.clone(),
            controller: (md.controller >= 0).then_some(md.controller),
            brokers: md.brokers.values().cloned().collect(),
        })
    }

    /// Runs `call` until it succeeds, fails for good, or [`MAX_ATTEMPTS`] are used up.
    /// `idempotent` calls are also retried after a broken connection.
    async fn retry<T, F, Fut>(&self, idempotent: bool, mut call: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let mut attempt = 1;
        loop {
            match call().await {
                Err(e) if attempt < MAX_ATTEMPTS && should_retry(&e, idempotent) => {
                    tracing::debug!(attempt, error = %e, "admin call failed; retrying");
                    tokio::time::sleep(self.cluster.config().retry_backoff * attempt).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }
}

/// Whether an admin call may succeed when tried again: only errors that say "not here,
/// not yet" (the broker did not act on the request), or a broken connection for calls
/// that are safe to repeat.
fn should_retry(e: &Error, idempotent: bool) -> bool {
    match e {
        Error::Broker { error, .. } => matches!(
            error,
            ResponseError::NotCoordinator
                | ResponseError::CoordinatorNotAvailable
                | ResponseError::CoordinatorLoadInProgress
                | ResponseError::LeaderNotAvailable
                | ResponseError::NotLeaderOrFollower
        ),
        Error::Disconnected { .. } | Error::Connect { .. } => idempotent,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_takes_common_keys_and_names_unknown_ones() {
        let c = AdminConfig::from_properties([("bootstrap.servers", "a:1,b:2"), ("client.id", "ops")]).unwrap();
        assert_eq!(c.common.bootstrap_servers, vec!["a:1".to_string(), "b:2".to_string()]);
        assert_eq!(c.common.client_id, "ops");
        let e = AdminConfig::new("localhost:9092").unwrap().set("acks", "all").unwrap_err().to_string();
        assert!(e.contains("unknown admin property `acks`"), "{e}");
        assert!(AdminConfig::new("no-port").is_err());
    }

    #[test]
    fn check_adds_context_and_broker_message() {
        assert!(check(0, None, || unreachable!()).is_ok());
        let msg = kafka_protocol::protocol::StrBytes::from_static_str("replication factor 3 is larger than the number of brokers (1)");
        let e = check(38, Some(&msg), || "create topic `orders`".into()).unwrap_err();
        assert_eq!(e.kafka_error(), Some(ResponseError::InvalidReplicationFactor));
        let text = e.to_string();
        assert!(text.starts_with("create topic `orders` (replication factor 3"), "{text}");
        let e = check_topic(3, None, "orders", || "describe".into()).unwrap_err();
        assert!(matches!(e, Error::UnknownTopic(ref t) if t == "orders"), "{e}");
    }

    #[test]
    fn retries_only_what_can_succeed() {
        let moved = Error::Broker { error: ResponseError::NotCoordinator, context: String::new() };
        let refused = Error::Broker { error: ResponseError::TopicAlreadyExists, context: String::new() };
        let broken = Error::Disconnected { addr: "a:1".into(), reason: "reset".into() };
        assert!(should_retry(&moved, false));
        assert!(!should_retry(&refused, true));
        assert!(should_retry(&broken, true));
        assert!(!should_retry(&broken, false));
        assert!(!should_retry(&Error::UnknownTopic("t".into()), true));
    }
}
