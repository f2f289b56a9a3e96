//! The async transport: connections to brokers and the cluster metadata view.

pub mod cluster;
pub mod conn;
pub mod secure;

pub use cluster::{BrokerInfo, CachedCoordinator, Cluster, Metadata, PartitionInfo, TopicInfo};
pub use conn::Connection;
