//! Configs: DescribeConfigs and IncrementalAlterConfigs for topics and brokers.

use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_request::{AlterConfigsResource, AlterableConfig};
use kafka_protocol::messages::{DescribeConfigsRequest, IncrementalAlterConfigsRequest};

use super::{check, check_topic, Admin};
use crate::error::{Error, Result};
use crate::net::cluster::sb;
use crate::net::Connection;

/// DescribeConfigs versions: v1 (the oldest Kafka 4 serves) is the first with config sources.
pub(crate) const DESCRIBE_CONFIGS: (i16, i16) = (1, 4);
/// IncrementalAlterConfigs versions.
pub(crate) const INCREMENTAL_ALTER_CONFIGS: (i16, i16) = (0, 1);

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;
const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;

/// What a config belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigResource {
    /// A topic, by name.
    Topic(String),
    /// A broker, by node id.
    Broker(i32),
}

impl ConfigResource {
    fn wire(&self) -> (i8, String) {
        match self {
            ConfigResource::Topic(t) => (RESOURCE_TOPIC, t.clone()),
            ConfigResource::Broker(id) => (RESOURCE_BROKER, id.to_string()),
        }
    }
}

impl std::fmt::Display for ConfigResource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConfigResource::Topic(t) => write!(f, "topic `{t}`"),
            ConfigResource::Broker(id) => write!(f, "broker {id}"),
        }
    }
}

/// Where a config value comes from (Kafka's `ConfigSource`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigSource {
    /// The broker did not say.
    Unknown,
    /// A topic-level override.
    DynamicTopic,
    /// A dynamic per-broker setting.
    DynamicBroker,
    /// A dynamic cluster-wide broker default.
    DynamicDefaultBroker,
    /// The broker's config file.
    StaticBroker,
    /// The built-in default.
    Default,
    /// A dynamic broker logger level.
    DynamicBrokerLogger,
    /// A client-metrics subscription.
    ClientMetrics,
    /// A group-level override.
    Group,
}

impl ConfigSource {
    /// Decodes the wire value (unknown values become [`ConfigSource::Unknown`]).
    pub fn from_wire(v: i8) -> ConfigSource {
        match v {
            1 => ConfigSource::DynamicTopic,
            2 => ConfigSource::DynamicBroker,
            3 => ConfigSource::DynamicDefaultBroker,
            4 => ConfigSource::StaticBroker,
            5 => ConfigSource::Default,
            6 => ConfigSource::DynamicBrokerLogger,
            7 => ConfigSource::ClientMetrics,
            8 => ConfigSource::Group,
            _ => ConfigSource::Unknown,
        }
    }
}

/// One config of a resource, as the broker describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigEntry {
    /// Kafka name, e.g. `retention.ms`.
    pub name: String,
    /// Current value; `None` when sensitive or unset.
    pub value: Option<String>,
    /// Whether it cannot be changed at run time.
    pub read_only: bool,
    /// Where the value comes from.
    pub source: ConfigSource,
    /// Whether the value is a secret (and so not returned).
    pub sensitive: bool,
}

impl ConfigEntry {
    /// Whether the value is the built-in default (not set on the topic or broker).
    pub fn is_default(&self) -> bool {
        self.source == ConfigSource::Default
    }
}

/// The DescribeConfigs request; `include_documentation` (v3+) stays false so it encodes at v1.
pub(crate) fn describe_configs_request(resource: &ConfigResource) -> DescribeConfigsRequest {
    let (kind, name) = resource.wire();
    DescribeConfigsRequest::default().with_include_synonyms(false).with_resources(vec![DescribeConfigsResource::default()
        .with_resource_type(kind)
        .with_resource_name(sb(&name))
        .with_configuration_keys(None)])
}

/// The IncrementalAlterConfigs request: `Some` sets a value, `None` deletes the override.
pub(crate) fn alter_configs_request(resource: &ConfigResource, changes: &[(String, Option<String>)]) -> IncrementalAlterConfigsRequest {
    let (kind, name) = resource.wire();
    let configs = changes
        .iter()
        .map(|(k, v)| {
            AlterableConfig::default()
                .with_name(sb(k))
                .with_config_operation(if v.is_some() { OP_SET } else { OP_DELETE })
                .with_value(v.as_deref().map(sb))
        })
        .collect();
    IncrementalAlterConfigsRequest::default()
        .with_validate_only(false)
        .with_resources(vec![AlterConfigsResource::default().with_resource_type(kind).with_resource_name(sb(&name)).with_configs(configs)])
}

impl Admin {
    /// A broker's own configs must be asked of that broker; topic configs of any.
    async fn config_conn(&self, resource: &ConfigResource) -> Result<std::sync::Arc<Connection>> {
        match resource {
            ConfigResource::Broker(id) => self.cluster.broker(*id).await,
            ConfigResource::Topic(_) => self.cluster.any().await,
        }
    }

    fn check_resource(&self, resource: &ConfigResource, code: i16, message: Option<&kafka_protocol::protocol::StrBytes>, what: &str) -> Result<()> {
        match resource {
            ConfigResource::Topic(t) => check_topic(code, message, t, || format!("{what} of {resource}")),
            ConfigResource::Broker(_) => check(code, message, || format!("{what} of {resource}")),
        }
    }

    /// Every config of a topic or broker, with its value and source, sorted by name.
    pub async fn describe_configs(&self, resource: &ConfigResource) -> Result<Vec<ConfigEntry>> {
        self.retry(true, move || async move {
            let conn = self.config_conn(resource).await?;
            let version = conn.version::<DescribeConfigsRequest>(DESCRIBE_CONFIGS.0, DESCRIBE_CONFIGS.1)?;
            let resp = conn.send(&describe_configs_request(resource), version).await?;
            let r = resp.results.into_iter().next().ok_or_else(|| Error::Protocol {
                addr: conn.addr().to_string(),
                reason: format!("DescribeConfigs response has no result for {resource}"),
            })?;
            self.check_resource(resource, r.error_code, r.error_message.as_ref(), "describe configs")?;
            let mut entries: Vec<ConfigEntry> = r
                .configs
                .into_iter()
                .map(|c| ConfigEntry {
                    name: c.name.to_string(),
                    value: c.value.map(|v| v.to_string()),
                    read_only: c.read_only,
                    source: ConfigSource::from_wire(c.config_source),
                    sensitive: c.is_sensitive,
                })
                .collect();
            entries.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(entries)
        })
        .await
    }

    /// Changes configs of a topic or broker: `(key, Some(value))` sets an override,
    /// `(key, None)` removes it (back to the default). Other configs stay as they are.
    pub async fn alter_configs(&self, resource: &ConfigResource, changes: &[(String, Option<String>)]) -> Result<()> {
        if changes.is_empty() {
            return Ok(());
        }
        // Setting and deleting are idempotent, so a broken connection may be retried.
        self.retry(true, move || async move {
            let conn = self.config_conn(resource).await?;
            let version = conn.version::<IncrementalAlterConfigsRequest>(INCREMENTAL_ALTER_CONFIGS.0, INCREMENTAL_ALTER_CONFIGS.1)?;
            let resp = conn.send(&alter_configs_request(resource, changes), version).await?;
            let r = resp.responses.first().ok_or_else(|| Error::Protocol {
                addr: conn.addr().to_string(),
                reason: format!("IncrementalAlterConfigs response has no result for {resource}"),
            })?;
            self.check_resource(resource, r.error_code, r.error_message.as_ref(), "alter configs")
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;
    use kafka_protocol::protocol::Encodable;

    use super::*;

    #[test]
    fn requests_encode_at_every_allowed_version() {
        for r in [ConfigResource::Topic("orders".into()), ConfigResource::Broker(1)] {
            for v in DESCRIBE_CONFIGS.0..=DESCRIBE_CONFIGS.1 {
                describe_configs_request(&r).encode(&mut BytesMut::new(), v).unwrap();
            }
            let changes = [("retention.ms".to_string(), Some("1000".to_string())), ("cleanup.policy".to_string(), None)];
            for v in INCREMENTAL_ALTER_CONFIGS.0..=INCREMENTAL_ALTER_CONFIGS.1 {
                alter_configs_request(&r, &changes).encode(&mut BytesMut::new(), v).unwrap();
            }
        }
    }

    #[test]
    fn none_deletes_and_some_sets() {
        let req = alter_configs_request(
            &ConfigResource::Topic("t".into()),
            &[("a".to_string(), Some("1".to_string())), ("b".to_string(), None)],
        );
        let res = &req.resources[0];
        assert_eq!(res.resource_type, RESOURCE_TOPIC);
        assert_eq!((res.configs[0].config_operation, res.configs[0].value.as_deref()), (OP_SET, Some("1")));
        assert_eq!((res.configs[1].config_operation, res.configs[1].value.as_deref()), (OP_DELETE, None));
        let broker = describe_configs_request(&ConfigResource::Broker(7));
        assert_eq!((broker.resources[0].resource_type, &*broker.resources[0].resource_name), (RESOURCE_BROKER, "7"));
    }

    #[test]
    fn sources_decode() {
        assert_eq!(ConfigSource::from_wire(1), ConfigSource::DynamicTopic);
        assert_eq!(ConfigSource::from_wire(5), ConfigSource::Default);
        assert_eq!(ConfigSource::from_wire(42), ConfigSource::Unknown);
    }
}
