//! The standalone worker: one process runs the connectors of its config files, with source
//! offsets in a local file (Kafka Connect's `connect-standalone`).
//!
//! A source task loops: poll, convert, produce, wait for the acknowledgements, then note
//! the records' source offsets; every `offset.flush.interval.ms` (and at shutdown) the
//! noted offsets are written to the offsets file. So an acknowledged record's offset may
//! be lost in a crash (the record is read again: at least once), never an offset before
//! its record.
//!
//! A sink task loops: poll its consumer group (`connect-<name>`), convert, `put`; every
//! `offset.flush.interval.ms` (and at shutdown) the task flushes, then the group commits
//! the positions it consumed.

use std::sync::Arc;

use bytes::Bytes;
use std::time::{Duration, Instant};

use samsa_client::consumer::{Consumer, ConsumerConfig};
use samsa_client::{Producer, ProducerConfig, ProducerRecord};
use serde_json::Value as Json;
use tokio::sync::watch;

use crate::api::{plugin, Plugin, SinkRecord, SinkTask, SourceTask};
use crate::config::{ConfigIssue, Props};
use crate::data::{converter, Converter};
use crate::errors::{ErrorPolicy, Failed, Stage};
use crate::offsets::FileOffsetStore;
use crate::{Error, Result};

/// Settings every connector config may hold, besides its class's own.
const COMMON: [&str; 7] = ["name", "connector.class", "tasks.max", "key.converter", "value.converter", "header.converter", "config.action.reload"];

/// The first wait after a source poll failed with a retriable error, and the longest.
const RETRY_FIRST: Duration = Duration::from_millis(250);
const RETRY_MAX: Duration = Duration::from_secs(10);

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

/// A standalone worker's settings.
pub struct WorkerConfig {
    props: Props,
    bootstrap: String,
    offsets_file: std::path::PathBuf,
    flush_interval: Duration,
}

impl WorkerConfig {
    /// Checks a worker config (`bootstrap.servers` and `offset.storage.file.filename` are
    /// required; `offset.flush.interval.ms` defaults to 60000, as in Kafka).
    pub fn new(props: Props) -> Result<WorkerConfig> {
        let req = |k: &str, what: &str| {
            props.get(k).map(|v| v.trim().to_string()).filter(|v| !v.is_empty()).ok_or_else(|| Error::Config(format!("the worker config needs {k} ({what})")))
        };
        let bootstrap = req("bootstrap.servers", "the brokers, host:port[,host:port]")?;
        let offsets_file = req("offset.storage.file.filename", "where a standalone worker keeps source offsets")?.into();
        let flush_ms = match props.get("offset.flush.interval.ms").map(|v| v.trim()) {
            None => 60_000,
            Some(v) => v.parse::<u64>().map_err(|_| Error::Config(format!("offset.flush.interval.ms must be a whole number of ms, not '{v}'")))?,
        };
        for prefix in ["key.converter", "value.converter"] {
            converter(&props, prefix)?;
        }
        Ok(WorkerConfig { props, bootstrap, offsets_file, flush_interval: Duration::from_millis(flush_ms) })
    }

    /// The brokers.
    pub fn bootstrap(&self) -> &str {
        &self.bootstrap
    }

    /// The offsets file.
    pub fn offsets_file(&self) -> &std::path::Path {
        &self.offsets_file
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
pub async fn run(worker: WorkerConfig, connectors: Vec<ConnectorSpec>, stop: watch::Receiver<bool>) -> Result<()> {
    let offsets = Arc::new(FileOffsetStore::open(&worker.offsets_file)?);
    let worker = Arc::new(worker);
    let mut tasks = tokio::task::JoinSet::new();
    for spec in connectors {
        let max = spec.config.get("tasks.max").and_then(|t| t.trim().parse::<usize>().ok()).unwrap_or(1);
        let (kc, vc) = (worker.converter(&spec.config, "key.converter")?, worker.converter(&spec.config, "value.converter")?);
        match &spec.plugin {
            Plugin::Source(c) => {
                for (i, task_config) in c.task_configs(&spec.config, max).into_iter().enumerate() {
                    let run = SourceRun { name: spec.name.clone(), id: i, task: c.task(), config: task_config, kc: kc.clone(), vc: vc.clone() };
                    tasks.spawn(run.run(worker.clone(), offsets.clone(), stop.clone()));
                }
            }
            Plugin::Sink(c) => {
                for (i, task_config) in c.task_configs(&spec.config, max).into_iter().enumerate() {
                    let run = SinkRun { name: spec.name.clone(), id: i, task: c.task(), config: task_config, kc: kc.clone(), vc: vc.clone() };
                    tasks.spawn(run.run(worker.clone(), stop.clone()));
                }
            }
        }
    }
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

/// One task of a connector, with what it runs with.
struct TaskRun<T: ?Sized> {
    name: String,
    id: usize,
    task: Box<T>,
    config: Props,
    kc: Arc<dyn Converter>,
    vc: Arc<dyn Converter>,
}

impl<T: ?Sized> TaskRun<T> {
    /// Client settings: the worker's `{client}.*`, then the connector's
    /// `{client}.override.*` (`client`: `producer` or `consumer`).
    fn client_settings(&self, worker: &WorkerConfig, client: &str) -> Vec<(String, String)> {
        let over = format!("{client}.override.");
        worker.prefixed(&format!("{client}.")).into_iter().chain(self.config.iter().filter_map(|(k, v)| k.strip_prefix(&over).map(|k| (k.to_string(), v.clone())))).collect()
    }
}

type SourceRun = TaskRun<dyn SourceTask>;
type SinkRun = TaskRun<dyn SinkTask>;

impl SourceRun {
    async fn run(mut self, worker: Arc<WorkerConfig>, offsets: Arc<FileOffsetStore>, stop: watch::Receiver<bool>) -> (String, Result<()>) {
        let label = format!("{}-{}", self.name, self.id);
        let result = self.work(&worker, &offsets, stop).await;
        let stopped = self.task.stop().await;
        (label, result.and(stopped))
    }

    async fn work(&mut self, worker: &WorkerConfig, offsets: &FileOffsetStore, mut stop: watch::Receiver<bool>) -> Result<()> {
        let mut pc = ProducerConfig::default();
        pc.set("bootstrap.servers", &worker.bootstrap)?;
        pc.set("acks", "all")?;
        for (k, v) in self.client_settings(worker, "producer") {
            pc.set(&k, &v)?;
        }
        let producer = Producer::new(pc).await?;
        let policy = ErrorPolicy::new(&self.config, &self.name, self.id, &worker.bootstrap).await?;
        self.task.start(&self.config, &offsets.reader(&self.name)).await?;
        tracing::info!(connector = %self.name, task = self.id, "source task started");
        let mut noted: Vec<(Json, Json)> = Vec::new();
        let mut last_flush = Instant::now();
        let mut retry_wait = RETRY_FIRST;
        loop {
            let polled = tokio::select! {
                _ = stop.wait_for(|s| *s) => break,
                r = self.task.poll() => r,
            };
            let records = match polled {
                Ok(records) => {
                    retry_wait = RETRY_FIRST;
                    records
                }
                // The source is away for now (e.g. a database restarting): try again, as
                // Kafka Connect does, waiting longer each time.
                Err(Error::Retriable(why)) => {
                    tracing::warn!(connector = %self.name, task = self.id, error = %why, "poll failed; trying again in {retry_wait:?}");
                    tokio::select! {
                        _ = stop.wait_for(|s| *s) => break,
                        _ = tokio::time::sleep(retry_wait) => {}
                    }
                    retry_wait = (retry_wait * 2).min(RETRY_MAX);
                    continue;
                }
                Err(e) => return Err(e),
            };
            let mut acks = Vec::with_capacity(records.len());
            for r in records {
                // A record that fails is skipped (or the task fails), and its offset still
                // counts as read once tolerated.
                let failed = |key: Option<Bytes>, value: Option<Bytes>| Failed {
                    topic: r.topic.clone(),
                    partition: r.partition.unwrap_or(-1),
                    offset: -1,
                    key,
                    value,
                    headers: r.headers.clone(),
                };
                let key = match self.kc.to_bytes(&r.topic, &r.key) {
                    Ok(k) => k,
                    Err(e) => {
                        policy.report(&failed(None, Some(Bytes::from(r.value.value.to_string()))), Stage::KeyConverter, &e).await?;
                        acks.push((None, r.source_partition, r.source_offset));
                        continue;
                    }
                };
                let value = match self.vc.to_bytes(&r.topic, &r.value) {
                    Ok(v) => v,
                    Err(e) => {
                        policy.report(&failed(key, Some(Bytes::from(r.value.value.to_string()))), Stage::ValueConverter, &e).await?;
                        acks.push((None, r.source_partition, r.source_offset));
                        continue;
                    }
                };
                let record =
                    ProducerRecord { topic: r.topic.clone(), partition: r.partition, key: key.clone(), value: value.clone(), headers: r.headers.clone(), timestamp: r.timestamp };
                let ack = match producer.send(record).await {
                    Ok(ack) => Some((ack, failed(key, value))),
                    Err(e) => {
                        policy.report(&failed(key, value), Stage::KafkaProduce, &e.into()).await?;
                        None
                    }
                };
                acks.push((ack, r.source_partition, r.source_offset));
            }
            for (ack, partition, offset) in acks {
                if let Some((ack, failed)) = ack {
                    if let Err(e) = ack.await {
                        policy.report(&failed, Stage::KafkaProduce, &e.into()).await?;
                    }
                }
                noted.push((partition, offset));
            }
            if last_flush.elapsed() >= worker.flush_interval && !noted.is_empty() {
                offsets.store(&self.name, noted.drain(..))?;
                self.task.commit().await?;
                last_flush = Instant::now();
            }
        }
        producer.flush().await;
        if !noted.is_empty() {
            offsets.store(&self.name, noted.drain(..))?;
            self.task.commit().await?;
        }
        producer.close().await;
        policy.close().await;
        Ok(())
    }
}

impl SinkRun {
    async fn run(mut self, worker: Arc<WorkerConfig>, stop: watch::Receiver<bool>) -> (String, Result<()>) {
        let label = format!("{}-{}", self.name, self.id);
        let result = self.work(&worker, stop).await;
        let stopped = self.task.stop().await;
        (label, result.and(stopped))
    }

    async fn work(&mut self, worker: &WorkerConfig, mut stop: watch::Receiver<bool>) -> Result<()> {
        let mut cc = ConsumerConfig::default();
        cc.set("bootstrap.servers", &worker.bootstrap)?;
        cc.set("group.id", &format!("connect-{}", self.name))?;
        cc.set("enable.auto.commit", "false")?;
        cc.set("auto.offset.reset", "earliest")?;
        for (k, v) in self.client_settings(worker, "consumer") {
            cc.set(&k, &v)?;
        }
        let consumer = Consumer::new(cc).await?;
        let topics: Vec<String> = self.config.get("topics").map(|t| t.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect()).unwrap_or_default();
        match self.config.get("topics.regex").map(|r| r.trim().to_string()).filter(|r| !r.is_empty()) {
            Some(pattern) => consumer.subscribe_pattern(&pattern)?,
            None => consumer.subscribe(&topics)?,
        }
        let policy = ErrorPolicy::new(&self.config, &self.name, self.id, &worker.bootstrap).await?;
        self.task.start(&self.config).await?;
        tracing::info!(connector = %self.name, task = self.id, "sink task started");
        let mut last_commit = Instant::now();
        let mut pending = false;
        loop {
            let polled = tokio::select! {
                _ = stop.wait_for(|s| *s) => break,
                r = consumer.poll(Duration::from_millis(500)) => r?,
            };
            if !polled.is_empty() {
                let mut records = Vec::with_capacity(polled.len());
                let mut raw = Vec::with_capacity(polled.len());
                for r in polled {
                    let failed =
                        Failed { topic: r.topic.clone(), partition: r.partition, offset: r.offset, key: r.key.clone(), value: r.value.clone(), headers: r.headers.clone() };
                    let key = match self.kc.to_data(&r.topic, r.key.as_deref()) {
                        Ok(k) => k,
                        Err(e) => {
                            policy.report(&failed, Stage::KeyConverter, &e).await?;
                            continue;
                        }
                    };
                    let value = match self.vc.to_data(&r.topic, r.value.as_deref()) {
                        Ok(v) => v,
                        Err(e) => {
                            policy.report(&failed, Stage::ValueConverter, &e).await?;
                            continue;
                        }
                    };
                    records.push(SinkRecord { topic: r.topic, partition: r.partition, offset: r.offset, timestamp: r.timestamp, key, value, headers: r.headers });
                    raw.push(failed);
                }
                if !records.is_empty() {
                    let (started, mut delay) = (Instant::now(), policy.first_delay());
                    let put = loop {
                        match self.task.put(&records).await {
                            Err(Error::Retriable(why)) if policy.backoff(started, &mut delay, &why).await => continue,
                            other => break other,
                        }
                    };
                    match put {
                        Ok(failures) => {
                            for f in failures {
                                let record = raw.get(f.index).cloned().unwrap_or_default();
                                policy.report(&record, Stage::TaskPut, &f.error).await?;
                            }
                        }
                        // Retries ran out: every record of the batch failed.
                        Err(e @ Error::Retriable(_)) => {
                            for record in &raw {
                                policy.report(record, Stage::TaskPut, &e).await?;
                            }
                        }
                        Err(e) => return Err(e),
                    }
                    pending = true;
                }
            }
            if pending && last_commit.elapsed() >= worker.flush_interval {
                self.task.flush().await?;
                consumer.commit().await?;
                (pending, last_commit) = (false, Instant::now());
            }
        }
        self.task.flush().await?;
        if pending {
            consumer.commit().await?;
        }
        consumer.close().await?;
        policy.close().await;
        Ok(())
    }
}
