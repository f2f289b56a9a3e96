//! The standalone worker: one process runs the connectors of its config files, with source
//! offsets in a local file (Kafka Connect's `connect-standalone`).
//!
//! How tasks run (offsets, pauses, errors) is in [`crate::runtime`].

use std::sync::Arc;

use std::time::Duration;

use tokio::sync::watch;

use crate::api::{plugin, Plugin};
use crate::config::{ConfigIssue, Props};
use crate::data::{converter, Converter};
use crate::offsets::FileOffsetStore;
use crate::runtime::{Control, SinkRun, SourceRun, TaskEnv, TaskState};
use crate::{Error, Result};

/// Settings every connector config may hold, besides its class's own.
const COMMON: [&str; 9] =
    ["name", "connector.class", "tasks.max", "key.converter", "value.converter", "header.converter", "config.action.reload", "exactly.once.source.support", "exactly.once.support"];

/// A connector ready to run: its config, checked.
pub struct ConnectorSpec {
    /// Its name.
    pub name: String,
    /// Its config.
    pub config: Props,
    /// Its class.
    pub plugin: Plugin,
}

/// Checks a connector config: the common settings and the class's own. Every problem is
/// reported, each naming its setting.
pub fn check_connector(config: Props) -> std::result::Result<ConnectorSpec, Vec<ConfigIssue>> {
    let mut issues = Vec::new();
    let name = config.get("name").map(|n| n.trim().to_string()).unwrap_or_default();
    if name.is_empty() {
        issues.push(ConfigIssue { name: "name".into(), message: "missing required setting name (the connector's name)".into() });
    }
    let class = config.get("connector.class").map(|c| c.trim().to_string()).unwrap_or_default();
    let found = plugin(&class);
    if class.is_empty() {
        issues.push(ConfigIssue { name: "connector.class".into(), message: "missing required setting connector.class (e.g. FileStreamSource)".into() });
    } else if found.is_none() {
        issues.push(ConfigIssue { name: "connector.class".into(), message: format!("no connector class {class}; Samsa has {}", crate::api::PLUGINS.join(", ")) });
    }
    if let Some(t) = config.get("tasks.max") {
        if t.trim().parse::<u32>().map_or(true, |n| n == 0) {
            issues.push(ConfigIssue { name: "tasks.max".into(), message: format!("tasks.max must be a whole number of at least 1, not '{}'", t.trim()) });
        }
    }
    for prefix in ["key.converter", "value.converter"] {
        if config.contains_key(prefix) {
            if let Err(e) = converter(&config, prefix) {
                issues.push(ConfigIssue { name: prefix.into(), message: e.to_string() });
            }
        }
    }
    if let Some(p) = &found {
        issues.extend(p.validate(&config));
        issues.extend(crate::errors::validate(&config));
        issues.extend(crate::transforms::issues(&config));
        let known: Vec<String> = p.settings().iter().chain(crate::errors::settings().iter()).map(|s| s.name.to_string()).chain(COMMON.iter().map(|s| s.to_string())).collect();
        for k in config.keys() {
            let passthrough =
                ["key.converter.", "value.converter.", "producer.override.", "consumer.override.", "errors.", "transforms", "predicates"].iter().any(|p| k.starts_with(p));
            if !known.contains(k) && !passthrough {
                tracing::warn!(connector = %name, setting = %k, "unknown setting ignored");
            }
        }
    }
    match (issues.is_empty(), found) {
        (true, Some(plugin)) => Ok(ConnectorSpec { name, config, plugin }),
        _ => Err(issues),
    }
}

/// Where a standalone worker keeps source offsets.
#[derive(Debug, Clone)]
pub enum OffsetsAt {
    /// A local file (`offset.storage.file.filename`, Kafka's standalone way).
    File(std::path::PathBuf),
    /// A compacted topic (`offset.storage.topic`, as a distributed worker): offsets
    /// survive the machine, and exactly-once sources work.
    Topic(String),
}

impl std::fmt::Display for OffsetsAt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OffsetsAt::File(p) => write!(f, "{}", p.display()),
            OffsetsAt::Topic(t) => write!(f, "topic {t}"),
        }
    }
}

/// A standalone worker's settings.
pub struct WorkerConfig {
    props: Props,
    bootstrap: String,
    offsets: OffsetsAt,
    flush_interval: Duration,
}

impl WorkerConfig {
    /// Checks a worker config (`bootstrap.servers`, and `offset.storage.file.filename` or
    /// `offset.storage.topic`, are required; `offset.flush.interval.ms` defaults to 60000, as in Kafka).
    pub fn new(props: Props) -> Result<WorkerConfig> {
        let req = |k: &str, what: &str| {
            props.get(k).map(|v| v.trim().to_string()).filter(|v| !v.is_empty()).ok_or_else(|| Error::Config(format!("the worker config needs {k} ({what})")))
        };
        let bootstrap = req("bootstrap.servers", "the brokers, host:port[,host:port]")?;
        let get = |k: &str| props.get(k).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
        let offsets = match (get("offset.storage.file.filename"), get("offset.storage.topic")) {
            (Some(_), Some(_)) => return Err(Error::Config("set offset.storage.file.filename or offset.storage.topic, not both".into())),
            (Some(f), None) => OffsetsAt::File(f.into()),
            (None, Some(t)) => OffsetsAt::Topic(t),
            (None, None) => {
                return Err(Error::Config(
                    "the worker config needs offset.storage.file.filename (a local file for source offsets) or offset.storage.topic (a compacted topic)".into(),
                ))
            }
        };
        let flush_ms = match props.get("offset.flush.interval.ms").map(|v| v.trim()) {
            None => 60_000,
            Some(v) => v.parse::<u64>().map_err(|_| Error::Config(format!("offset.flush.interval.ms must be a whole number of ms, not '{v}'")))?,
        };
        for prefix in ["key.converter", "value.converter"] {
            converter(&props, prefix)?;
        }
        Ok(WorkerConfig { props, bootstrap, offsets, flush_interval: Duration::from_millis(flush_ms) })
    }

    /// The brokers.
    pub fn bootstrap(&self) -> &str {
        &self.bootstrap
    }

    /// Where source offsets are kept.
    pub fn offsets(&self) -> &OffsetsAt {
        &self.offsets
    }

    /// The converter for `prefix`: the connector's setting, else the worker's.
    fn converter(&self, connector: &Props, prefix: &str) -> Result<Arc<dyn Converter>> {
        let source = if connector.contains_key(prefix) { connector } else { &self.props };
        Ok(Arc::from(converter(source, prefix)?))
    }

    /// The worker's `{prefix}*` settings with the prefix removed (e.g. `producer.`).
    fn prefixed(&self, prefix: &str) -> Vec<(String, String)> {
        self.props.iter().filter_map(|(k, v)| k.strip_prefix(prefix).map(|k| (k.to_string(), v.clone()))).collect()
    }
}

/// Runs the connectors until `stop` turns true; then stops every task cleanly, writing
/// their offsets. Fails at once on a config problem; a task that fails is logged and the
/// others keep running, unless none is left.
pub async fn run(worker: WorkerConfig, connectors: Vec<ConnectorSpec>, mut stop: watch::Receiver<bool>) -> Result<()> {
    let (offsets, offsets_topic): (Arc<dyn crate::runtime::OffsetStore>, Option<String>) = match &worker.offsets {
        OffsetsAt::File(path) => (Arc::new(FileOffsetStore::open(path)?), None),
        OffsetsAt::Topic(topic) => (Arc::new(crate::cluster::TopicOffsets::open(&worker.bootstrap, topic).await?), Some(topic.clone())),
    };
    let env = Arc::new(TaskEnv {
        bootstrap: worker.bootstrap.clone(),
        flush_interval: worker.flush_interval,
        producer: worker.prefixed("producer."),
        consumer: worker.prefixed("consumer."),
        offsets,
        offsets_topic,
        status: Arc::new(|_: &str, _: usize, _: TaskState| {}),
        metrics: Default::default(),
    });
    let (control, rx) = watch::channel(Control::Run);
    tokio::spawn(async move {
        if stop.wait_for(|s| *s).await.is_ok() {
            let _ = control.send(Control::Stop);
        }
        // Held until every task has its Stop.
        control.closed().await;
    });
    let mut tasks = tokio::task::JoinSet::new();
    for spec in connectors {
        let max = spec.config.get("tasks.max").and_then(|t| t.trim().parse::<usize>().ok()).unwrap_or(1);
        let (kc, vc) = (worker.converter(&spec.config, "key.converter")?, worker.converter(&spec.config, "value.converter")?);
        let chain = Arc::new(crate::transforms::chain(&spec.config)?);
        match &spec.plugin {
            Plugin::Source(c) => {
                for (i, task_config) in c.task_configs(&spec.config, max).into_iter().enumerate() {
                    let run = SourceRun { name: spec.name.clone(), id: i, task: c.task(), config: task_config, kc: kc.clone(), vc: vc.clone(), chain: chain.clone() };
                    tasks.spawn(run.run(env.clone(), rx.clone()));
                }
            }
            Plugin::Sink(c) => {
                for (i, task_config) in c.task_configs(&spec.config, max).into_iter().enumerate() {
                    let run = SinkRun { name: spec.name.clone(), id: i, task: c.task(), config: task_config, kc: kc.clone(), vc: vc.clone(), chain: chain.clone() };
                    tasks.spawn(run.run(env.clone(), rx.clone()));
                }
            }
        }
    }
    drop(rx);
    let (mut ok, mut failed) = (0, 0);
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok((label, Ok(()))) => {
                ok += 1;
                tracing::info!(task = %label, "task stopped");
            }
            Ok((label, Err(e))) => {
                failed += 1;
                tracing::error!(task = %label, error = %e, "task failed; the other tasks go on");
            }
            Err(e) => {
                failed += 1;
                tracing::error!(error = %e, "a task panicked");
            }
        }
    }
    if failed > 0 && ok == 0 {
        return Err(Error::Task(format!("every task failed ({failed}); see the log above")));
    }
    Ok(())
}
