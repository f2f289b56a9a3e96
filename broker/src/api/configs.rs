//! DescribeConfigs, AlterConfigs and IncrementalAlterConfigs for topics (and describing the
//! broker's static configuration).

use std::collections::BTreeMap;

use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::describe_configs_response::{DescribeConfigsResourceResult, DescribeConfigsResult};
use kafka_protocol::messages::*;
use kafka_protocol::ResponseError;

use super::admin::topic_configs;
use super::sb;
use crate::config::{def, topic_def, Kind, DEFS};
use crate::server::BrokerState;
use crate::topics::ApiError;

const TOPIC: i8 = 2;
const BROKER: i8 = 4;

fn config_type(kind: Kind) -> i8 {
    match kind {
        Kind::Bool => 1,
        Kind::Int { .. } => 5,
        Kind::Float { .. } => 6,
        Kind::Choice { list: true, .. } => 7,
        Kind::Choice { list: false, .. } => 2,
        Kind::Text => 2,
    }
}

/// Handles DescribeConfigs.
pub fn describe_configs(state: &BrokerState, req: DescribeConfigsRequest, version: i16) -> DescribeConfigsResponse {
    let mut resp = DescribeConfigsResponse::default();
    for res in req.resources {
        let mut r = DescribeConfigsResult::default();
        r.resource_type = res.resource_type;
        r.resource_name = res.resource_name.clone();
        let entries: Result<Vec<(String, String, i8, bool)>, ApiError> = match res.resource_type {
            TOPIC => match state.image().topic(&res.resource_name) {
                Some(t) => Ok(topic_configs(state, &t.configs).into_iter().map(|(n, v, s)| (n, v, s, false)).collect()),
                None => Err(ApiError::new(ResponseError::UnknownTopicOrPartition, format!("topic `{}` does not exist", &*res.resource_name))),
            },
            BROKER if res.resource_name.is_empty() || *res.resource_name == *state.node_id.to_string() => Ok(DEFS
                .iter()
                .map(|d| {
                    let v = state.config.get(d.name).to_string();
                    let source = if v == d.default { 5 } else { 4 };
                    (d.name.to_string(), v, source, true)
                })
                .collect()),
            BROKER => Err(ApiError::new(ResponseError::InvalidRequest, format!("this broker is node {}, not `{}`", state.node_id, &*res.resource_name))),
            other => Err(ApiError::new(ResponseError::InvalidRequest, format!("config resource type {other} is not supported"))),
        };
        match entries {
            Ok(list) => {
                let keys: Option<Vec<String>> = res.configuration_keys.map(|k| k.iter().map(|s| s.to_string()).collect());
                r.configs = list
                    .into_iter()
                    .filter(|(n, ..)| keys.as_ref().is_none_or(|k| k.contains(n)))
                    .map(|(name, value, source, read_only)| {
                        let d = topic_def(&name).or_else(|| def(&name));
                        let mut c = DescribeConfigsResourceResult::default();
                        c.name = sb(name);
                        c.value = Some(sb(value));
                        c.read_only = read_only;
                        c.config_source = source;
                        if version >= 3 {
                            c.config_type = d.map(|d| config_type(d.kind)).unwrap_or(0);
                            if req.include_documentation {
                                c.documentation = d.map(|d| sb(d.doc));
                            }
                        }
                        c
                    })
                    .collect();
            }
            Err(e) => {
                r.error_code = e.code.code();
                r.error_message = Some(sb(e.message));
            }
        }
        resp.results.push(r);
    }
    resp
}

/// Builds an alter result; AlterConfigs and IncrementalAlterConfigs have distinct but
/// identically shaped response types.
macro_rules! alter_result {
    ($ty:ty, $resource_type:expr, $name:expr, $outcome:expr) => {{
        let mut r = <$ty>::default();
        r.resource_type = $resource_type;
        r.resource_name = $name.clone();
        if let Err(e) = $outcome {
            r.error_code = e.code.code();
            r.error_message = Some(sb(e.message));
        }
        r
    }};
}

fn broker_is_static() -> ApiError {
    ApiError::new(ResponseError::InvalidRequest, "broker configs are static in Samsa: change the config file (or --set) and restart")
}

/// Handles AlterConfigs: replaces a topic's overrides with the given set.
pub async fn alter_configs(state: &BrokerState, req: AlterConfigsRequest) -> AlterConfigsResponse {
    let mut resp = AlterConfigsResponse::default();
    for res in req.resources {
        let outcome = match res.resource_type {
            TOPIC => {
                let configs: BTreeMap<String, String> = res.configs.iter().filter_map(|c| Some((c.name.to_string(), c.value.as_ref()?.to_string()))).collect();
                state.set_topic_configs(&res.resource_name, configs, req.validate_only).await
            }
            BROKER => Err(broker_is_static()),
            other => Err(ApiError::new(ResponseError::InvalidRequest, format!("config resource type {other} is not supported"))),
        };
        resp.responses.push(alter_result!(AlterConfigsResourceResponse, res.resource_type, res.resource_name, outcome));
    }
    resp
}

/// Handles IncrementalAlterConfigs: SET (0), DELETE (1), APPEND (2), SUBTRACT (3).
pub async fn incremental_alter_configs(state: &BrokerState, req: IncrementalAlterConfigsRequest) -> IncrementalAlterConfigsResponse {
    let mut resp = IncrementalAlterConfigsResponse::default();
    for res in req.resources {
        let outcome = match res.resource_type {
            TOPIC => async {
                let topic = state.image().topic(&res.resource_name).cloned().ok_or_else(|| {
                    ApiError::new(ResponseError::UnknownTopicOrPartition, format!("topic `{}` does not exist", &*res.resource_name))
                })?;
                let mut configs = topic.configs.clone();
                for c in &res.configs {
                    let name = c.name.to_string();
                    let value = c.value.as_ref().map(|v| v.to_string()).unwrap_or_default();
                    match c.config_operation {
                        0 => {
                            configs.insert(name, value);
                        }
                        1 => {
                            configs.remove(&name);
                        }
                        2 | 3 => {
                            let is_list = topic_def(&name).is_some_and(|d| matches!(d.kind, Kind::Choice { list: true, .. }));
                            if !is_list {
                                return Err(ApiError::new(ResponseError::InvalidConfig, format!("`{name}` is not a list config; APPEND and SUBTRACT need one")));
                            }
                            let current = configs.get(&name).cloned().unwrap_or_else(|| {
                                topic_configs(state, &BTreeMap::new()).into_iter().find(|(n, ..)| *n == name).map(|(_, v, _)| v).unwrap_or_default()
                            });
                            let mut items: Vec<String> = current.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect();
                            for v in value.split(',').map(str::trim) {
                                if c.config_operation == 2 && !items.iter().any(|i| i == v) {
                                    items.push(v.to_string());
                                } else if c.config_operation == 3 {
                                    items.retain(|i| i != v);
                                }
                            }
                            configs.insert(name, items.join(","));
                        }
                        op => return Err(ApiError::new(ResponseError::InvalidRequest, format!("unknown config operation {op}"))),
                    }
                }
                state.set_topic_configs(&res.resource_name, configs, req.validate_only).await
            }
            .await,
            BROKER => Err(broker_is_static()),
            other => Err(ApiError::new(ResponseError::InvalidRequest, format!("config resource type {other} is not supported"))),
        };
        resp.responses.push(alter_result!(
            kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse,
            res.resource_type,
            res.resource_name,
            outcome
        ));
    }
    resp
}
