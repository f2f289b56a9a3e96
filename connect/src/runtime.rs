//! Running tasks, wherever they are hosted (the standalone worker, or `samsa server`).
//!
//! A source task loops: poll, transform, convert, produce, wait for the acknowledgements,
//! then note the records' source offsets; every flush interval (and at shutdown) the noted
//! offsets go to the offset store, then the task's `commit` runs. So an acknowledged
//! record's offset may be lost in a crash (the record is read again: at least once), never
//! an offset before its record.
//!
//! A sink task loops: poll its consumer group (`connect-<name>`), convert, transform,
//! `put`; every flush interval (and at shutdown) the task flushes, then the group commits
//! the positions it consumed.
//!
//! A task follows its control channel: `Run`, `Pause` (a source stops polling; a sink
//! pauses its partitions but stays in its group) or `Stop`; and reports its state.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use samsa_client::consumer::{Consumer, ConsumerConfig};
use samsa_client::{Producer, ProducerConfig, ProducerRecord};
use serde_json::Value as Json;
use tokio::sync::watch;

use crate::api::{OffsetReader, SinkRecord, SinkTask, SourceTask};
use crate::config::Props;
use crate::data::Converter;
use crate::errors::{ErrorPolicy, Failed, Stage};
use crate::transforms::Chain;
use crate::{Error, Result};

/// The first wait after a source poll failed with a retriable error, and the longest.
const RETRY_FIRST: Duration = Duration::from_millis(250);
const RETRY_MAX: Duration = Duration::from_secs(10);

/// What a task is told to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// Work.
    Run,
    /// Hold (keep resources, move no records).
    Pause,
    /// Stop for good.
    Stop,
}

/// A task's state, as Kafka Connect's REST API names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskState {
    /// Working.
    Running,
    /// Paused.
    Paused,
    /// Failed, with why.
    Failed(String),
    /// Not running (stopped, or not started yet).
    Unassigned,
}

impl TaskState {
    /// Kafka's name, e.g. `RUNNING`.
    pub fn name(&self) -> &'static str {
        match self {
            TaskState::Running => "RUNNING",
            TaskState::Paused => "PAUSED",
            TaskState::Failed(_) => "FAILED",
            TaskState::Unassigned => "UNASSIGNED",
        }
    }
}

/// Where source offsets are kept: a local file (standalone) or a compacted topic.
#[async_trait::async_trait]
pub trait OffsetStore: Send + Sync {
    /// A connector's stored offsets, for its tasks to resume from.
    async fn reader(&self, connector: &str) -> Result<Box<dyn OffsetReader>>;
    /// Stores offsets of `connector` (source partition, offset).
    async fn store(&self, connector: &str, offsets: Vec<(Json, Json)>) -> Result<()>;
}

/// Reports task states (task label, state).
pub type StatusReporter = Arc<dyn Fn(&str, usize, TaskState) + Send + Sync>;

/// What every task of a worker runs with.
pub struct TaskEnv {
    /// The brokers.
    pub bootstrap: String,
    /// How often offsets are stored (sources) or committed (sinks).
    pub flush_interval: Duration,
    /// The worker's `producer.*` settings (prefix removed).
    pub producer: Vec<(String, String)>,
    /// The worker's `consumer.*` settings (prefix removed).
    pub consumer: Vec<(String, String)>,
    /// Source offsets.
    pub offsets: Arc<dyn OffsetStore>,
    /// The compacted topic holding source offsets, when they live in the cluster
    /// (exactly-once sources write theirs in their transaction).
    pub offsets_topic: Option<String>,
    /// Where states go.
    pub status: StatusReporter,
    /// Per-task counters (`GET /metrics`).
    pub metrics: Arc<crate::metrics::ConnectMetrics>,
}

/// One task of a connector, with what it runs with.
pub struct TaskRun<T: ?Sized> {
    /// The connector's name.
    pub name: String,
    /// The task's number.
    pub id: usize,
    /// The task.
    pub task: Box<T>,
    /// Its config.
    pub config: Props,
    /// Key converter.
    pub kc: Arc<dyn Converter>,
    /// Value converter.
    pub vc: Arc<dyn Converter>,
    /// Its transforms.
    pub chain: Arc<Chain>,
}

impl<T: ?Sized> TaskRun<T> {
    /// Client settings: the worker's `{client}.*`, then the connector's
    /// `{client}.override.*` (`client`: `producer` or `consumer`).
    fn client_settings(&self, worker: &[(String, String)], client: &str) -> Vec<(String, String)> {
        let over = format!("{client}.override.");
        worker.iter().cloned().chain(self.config.iter().filter_map(|(k, v)| k.strip_prefix(&over).map(|k| (k.to_string(), v.clone())))).collect()
    }
}

/// Holds while paused; `false` when told to stop.
async fn hold(name: &str, id: usize, env: &TaskEnv, control: &mut watch::Receiver<Control>) -> bool {
    if *control.borrow() == Control::Pause {
        (env.status)(name, id, TaskState::Paused);
        tracing::info!(connector = %name, task = id, "task paused");
        if control.wait_for(|c| *c != Control::Pause).await.map_or(true, |c| *c == Control::Stop) {
            return false;
        }
        (env.status)(name, id, TaskState::Running);
        tracing::info!(connector = %name, task = id, "task resumed");
    }
    *control.borrow() != Control::Stop
}

/// A source task's run.
pub type SourceRun = TaskRun<dyn SourceTask>;
/// A sink task's run.
pub type SinkRun = TaskRun<dyn SinkTask>;

/// Whether a connector asks for exactly-once delivery (`exactly.once.source.support=enabled`,
/// or Kafka's connector-level `exactly.once.support=required`).
pub fn exactly_once(config: &Props) -> bool {
    let is = |k: &str, v: &str| config.get(k).is_some_and(|x| x.trim().eq_ignore_ascii_case(v));
    is("exactly.once.source.support", "enabled") || is("exactly.once.support", "required")
}

/// The record storing a source offset in an offsets topic: key `["connector", partition]`
/// (Kafka Connect's), value the offset (`None`: forget the partition).
pub fn offset_record(topic: &str, connector: &str, partition: &Json, offset: Option<&Json>) -> ProducerRecord {
    ProducerRecord {
        topic: topic.to_string(),
        partition: Some(0),
        key: Some(Bytes::from(serde_json::json!([connector, partition]).to_string())),
        value: offset.map(|o| Bytes::from(o.to_string())),
        headers: Vec::new(),
        timestamp: None,
    }
}

/// Whether a failure before a task started may pass (the cluster or the external system
/// is not reachable yet, e.g. while a dead broker's partitions fail over).
fn startup_retriable(e: &Error) -> bool {
    match e {
        Error::Client(c) => c.is_retriable(),
        Error::Retriable(_) => true,
        _ => false,
    }
}

/// A task's loop, source or sink.
#[async_trait::async_trait]
trait Work: Send {
    /// (connector, task number).
    fn label(&self) -> (&str, usize);
    /// Sets up, starts the task (then `*started` turns true) and runs it until told to stop.
    async fn work(&mut self, env: &TaskEnv, control: watch::Receiver<Control>, started: &mut bool) -> Result<()>;
}

/// Runs `w`, trying again with backoff while it fails before its task started in a way
/// that may pass; `Ok` when told to stop meanwhile.
async fn run_retrying_start<W: Work>(w: &mut W, env: &TaskEnv, control: watch::Receiver<Control>) -> Result<()> {
    let mut wait = RETRY_FIRST;
    loop {
        let mut started = false;
        match w.work(env, control.clone(), &mut started).await {
            Err(e) if !started && startup_retriable(&e) => {
                let (name, id) = w.label();
                if !retry_start(name, id, &e, &mut wait, &control).await {
                    return Ok(());
                }
            }
            other => return other,
        }
    }
}

/// Waits before starting a task again; `false` when told to stop meanwhile.
async fn retry_start(name: &str, id: usize, e: &Error, wait: &mut Duration, control: &watch::Receiver<Control>) -> bool {
    tracing::warn!(connector = %name, task = id, error = %e, "the task cannot start yet; trying again in {wait:?}");
    let mut control = control.clone();
    let stop = tokio::select! {
        _ = control.wait_for(|c| *c == Control::Stop) => true,
        _ = tokio::time::sleep(*wait) => false,
    };
    *wait = (*wait * 2).min(RETRY_MAX);
    !stop
}

/// Reports how a run ended, and returns its label and result.
fn finish(env: &TaskEnv, name: &str, id: usize, result: Result<()>) -> (String, Result<()>) {
    match &result {
        Ok(()) => (env.status)(name, id, TaskState::Unassigned),
        Err(e) => (env.status)(name, id, TaskState::Failed(e.to_string())),
    }
    (format!("{name}-{id}"), result)
}

impl SourceRun {
    /// Runs until told to stop (or it fails); its label and result.
    pub async fn run(mut self, env: Arc<TaskEnv>, control: watch::Receiver<Control>) -> (String, Result<()>) {
        let result = run_retrying_start(&mut self, &env, control).await;
        let stopped = self.task.stop().await;
        finish(&env, &self.name, self.id, result.and(stopped))
    }
}

#[async_trait::async_trait]
impl Work for SourceRun {
    fn label(&self) -> (&str, usize) {
        (&self.name, self.id)
    }

    async fn work(&mut self, env: &TaskEnv, mut control: watch::Receiver<Control>, started: &mut bool) -> Result<()> {
        let mut pc = ProducerConfig::default();
        pc.set("bootstrap.servers", &env.bootstrap)?;
        pc.set("acks", "all")?;
        for (k, v) in self.client_settings(&env.producer, "producer") {
            pc.set(&k, &v)?;
        }
        // Exactly once: each poll's records and their offsets commit in one transaction.
        let eos = exactly_once(&self.config);
        if eos && env.offsets_topic.is_none() {
            return Err(Error::Config(format!(
                "connector {}: exactly.once.source.support=enabled needs source offsets in the cluster; run it in samsa server (POST /connectors), or set offset.storage.topic in the worker config",
                self.name
            )));
        }
        if eos {
            pc.set("transactional.id", &format!("connect-{}-{}", self.name, self.id))?;
        }
        let producer = Producer::new(pc).await?;
        if eos {
            producer.init_transactions().await?;
        }
        let counters = env.metrics.task(&self.name, self.id, "source");
        let policy = ErrorPolicy::new(&self.config, &self.name, self.id, &env.bootstrap).await?.counting_into(counters.clone());
        let reader = env.offsets.reader(&self.name).await?;
        self.task.start(&self.config, reader.as_ref()).await?;
        *started = true;
        (env.status)(&self.name, self.id, TaskState::Running);
        tracing::info!(connector = %self.name, task = self.id, "source task started");
        let mut noted: Vec<(Json, Json)> = Vec::new();
        let mut last_flush = Instant::now();
        let mut retry_wait = RETRY_FIRST;
        loop {
            if !hold(&self.name, self.id, env, &mut control).await {
                break;
            }
            let polled = tokio::select! {
                _ = control.wait_for(|c| *c != Control::Run) => continue,
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
                        _ = control.wait_for(|c| *c != Control::Run) => {}
                        _ = tokio::time::sleep(retry_wait) => {}
                    }
                    retry_wait = (retry_wait * 2).min(RETRY_MAX);
                    continue;
                }
                Err(e) => return Err(e),
            };
            if eos {
                if records.is_empty() {
                    continue;
                }
                producer.begin_transaction()?;
            }
            let mut acks = Vec::with_capacity(records.len());
            for r in records {
                let (partition, offset) = (r.source_partition.clone(), r.source_offset.clone());
                // A transform may drop the record (its offset still counts as read) or fail
                // (the record as it was polled goes to the error policy).
                let polled = (!self.chain.is_empty()).then(|| (r.topic.clone(), r.partition, r.value.value.to_string(), r.headers.clone()));
                let r = match self.chain.apply_source(r) {
                    Ok(Some(r)) => r,
                    Ok(None) => {
                        acks.push((None, partition, offset));
                        continue;
                    }
                    Err(e) => {
                        let (topic, p, value, headers) = polled.unwrap_or_default();
                        let failed = Failed { topic, partition: p.unwrap_or(-1), offset: -1, key: None, value: Some(Bytes::from(value)), headers };
                        policy.report(&failed, Stage::Transformation, &e).await?;
                        acks.push((None, partition, offset));
                        continue;
                    }
                };
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
                    // A failed send dooms the transaction: the task fails, nothing commits.
                    Err(e) if eos => return Err(e.into()),
                    Err(e) => {
                        policy.report(&failed(key, value), Stage::KafkaProduce, &e.into()).await?;
                        None
                    }
                };
                acks.push((ack, r.source_partition, r.source_offset));
            }
            for (ack, partition, offset) in acks {
                if let Some((ack, failed)) = ack {
                    match ack.await {
                        Err(e) if eos => return Err(e.into()),
                        Err(e) => policy.report(&failed, Stage::KafkaProduce, &e.into()).await?,
                        Ok(_) => {
                            counters.records.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                }
                noted.push((partition, offset));
            }
            if let (true, Some(topic)) = (eos, &env.offsets_topic) {
                // The latest offset of each source partition, in the same transaction.
                let mut latest: Vec<(Json, Json)> = Vec::new();
                for (p, o) in std::mem::take(&mut noted) {
                    latest.retain(|(q, _)| *q != p);
                    latest.push((p, o));
                }
                for (p, o) in latest {
                    producer.send(offset_record(topic, &self.name, &p, Some(&o))).await?;
                }
                producer.commit_transaction().await?;
                self.task.commit().await?;
                continue;
            }
            if last_flush.elapsed() >= env.flush_interval && !noted.is_empty() {
                env.offsets.store(&self.name, std::mem::take(&mut noted)).await?;
                self.task.commit().await?;
                last_flush = Instant::now();
            }
        }
        producer.flush().await;
        if !noted.is_empty() {
            env.offsets.store(&self.name, std::mem::take(&mut noted)).await?;
            self.task.commit().await?;
        }
        producer.close().await;
        policy.close().await;
        Ok(())
    }
}

impl SinkRun {
    /// Runs until told to stop (or it fails); its label and result.
    pub async fn run(mut self, env: Arc<TaskEnv>, control: watch::Receiver<Control>) -> (String, Result<()>) {
        let result = run_retrying_start(&mut self, &env, control).await;
        let stopped = self.task.stop().await;
        finish(&env, &self.name, self.id, result.and(stopped))
    }
}

#[async_trait::async_trait]
impl Work for SinkRun {
    fn label(&self) -> (&str, usize) {
        (&self.name, self.id)
    }

    async fn work(&mut self, env: &TaskEnv, mut control: watch::Receiver<Control>, started: &mut bool) -> Result<()> {
        let mut cc = ConsumerConfig::default();
        cc.set("bootstrap.servers", &env.bootstrap)?;
        cc.set("group.id", &format!("connect-{}", self.name))?;
        cc.set("enable.auto.commit", "false")?;
        cc.set("auto.offset.reset", "earliest")?;
        for (k, v) in self.client_settings(&env.consumer, "consumer") {
            cc.set(&k, &v)?;
        }
        let consumer = Consumer::new(cc).await?;
        let topics: Vec<String> = self.config.get("topics").map(|t| t.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect()).unwrap_or_default();
        match self.config.get("topics.regex").map(|r| r.trim().to_string()).filter(|r| !r.is_empty()) {
            Some(pattern) => consumer.subscribe_pattern(&pattern)?,
            None => consumer.subscribe(&topics)?,
        }
        let counters = env.metrics.task(&self.name, self.id, "sink");
        let policy = ErrorPolicy::new(&self.config, &self.name, self.id, &env.bootstrap).await?.counting_into(counters.clone());
        self.task.start(&self.config).await?;
        *started = true;
        (env.status)(&self.name, self.id, TaskState::Running);
        tracing::info!(connector = %self.name, task = self.id, "sink task started");
        let mut last_commit = Instant::now();
        let mut pending = false;
        let mut paused = false;
        loop {
            let want = *control.borrow();
            match want {
                Control::Stop => break,
                // Paused: the partitions are paused, and polling keeps the group membership.
                Control::Pause => {
                    let held = consumer.paused();
                    let more: Vec<_> = consumer.assignment().into_iter().filter(|tp| !held.contains(tp)).collect();
                    if !more.is_empty() {
                        consumer.pause(&more)?;
                    }
                    if !paused {
                        paused = true;
                        (env.status)(&self.name, self.id, TaskState::Paused);
                        tracing::info!(connector = %self.name, task = self.id, "task paused");
                    }
                }
                Control::Run if paused => {
                    consumer.resume(&consumer.paused())?;
                    paused = false;
                    (env.status)(&self.name, self.id, TaskState::Running);
                    tracing::info!(connector = %self.name, task = self.id, "task resumed");
                }
                Control::Run => {}
            }
            let polled = tokio::select! {
                _ = control.changed() => continue,
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
                    let record = SinkRecord { topic: r.topic, partition: r.partition, offset: r.offset, timestamp: r.timestamp, key, value, headers: r.headers };
                    match self.chain.apply_sink(record) {
                        Ok(Some(record)) => {
                            records.push(record);
                            raw.push(failed);
                        }
                        Ok(None) => {}
                        Err(e) => policy.report(&failed, Stage::Transformation, &e).await?,
                    }
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
                            counters.records.fetch_add(records.len().saturating_sub(failures.len()) as u64, std::sync::atomic::Ordering::Relaxed);
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
            if pending && last_commit.elapsed() >= env.flush_interval {
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
