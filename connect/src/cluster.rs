//! Connectors hosted by `samsa server` (Kafka Connect's distributed mode), managed through
//! the REST API ([`crate::rest`]).
//!
//! State lives in the cluster, in compacted topics every server reads:
//! - `__samsa_connect_configs`: each connector's config and target state (running,
//!   paused, stopped), and restart requests. Deleting a connector writes a tombstone.
//! - `__samsa_connect_offsets`: source offsets, keyed `["connector", {partition}]` as
//!   Kafka Connect keys them.
//! - `__samsa_connect_status`: each task's state and the server running it.
//!
//! Tasks spread over the servers: every server joins the consumer group
//! `__samsa_connect_workers` on `__samsa_connect_slots`, a topic of [`SLOTS`] empty
//! partitions. Task `i` of connector `c` belongs to slot `hash(c, i) % SLOTS`, and runs on
//! the server the group gave that slot to. When a server dies, the group gives its slots
//! to the others, which start its tasks (sources resume from their stored offsets, sinks
//! from their group's committed positions).
//!
//! A task that fails stays failed (as in Kafka) until restarted through the API.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use samsa_client::admin::NewTopic;
use samsa_client::consumer::{Consumer, ConsumerConfig, TopicPartition};
use samsa_client::{Admin, Producer, ProducerConfig, ProducerRecord};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value as Json};
use tokio::sync::watch;

use crate::api::{plugin, OffsetReader, Plugin};
use crate::config::{ConfigIssue, Props};
use crate::data::converter;
use crate::runtime::{offset_record, Control, OffsetStore, SinkRun, SourceRun, TaskEnv, TaskState};
use crate::standalone::check_connector;
use crate::{Error, Result};

/// Connector configs, target states and restart requests.
pub const CONFIG_TOPIC: &str = "__samsa_connect_configs";
/// Source offsets.
pub const OFFSETS_TOPIC: &str = "__samsa_connect_offsets";
/// Task states.
pub const STATUS_TOPIC: &str = "__samsa_connect_status";
/// The empty topic whose partitions the workers' group shares out.
pub const SLOTS_TOPIC: &str = "__samsa_connect_slots";
/// The workers' consumer group.
pub const WORKERS_GROUP: &str = "__samsa_connect_workers";
/// How many slots tasks are spread over.
pub const SLOTS: i32 = 24;
/// How often source offsets are stored and sink positions committed.
const FLUSH_INTERVAL: Duration = Duration::from_secs(5);

/// What a connector should be doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Target {
    /// Its tasks run.
    Running,
    /// Its tasks hold.
    Paused,
    /// Its tasks are shut down (its config is kept).
    Stopped,
}

/// A connector as stored in the config topic.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Stored {
    config: Props,
    target: Target,
    /// Bumped on every config change: tasks restart with the new config.
    generation: u64,
}

/// A restart request.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Restart {
    id: String,
    /// `None`: every task; `Some(i)`: task `i` only.
    task: Option<usize>,
    only_failed: bool,
}

/// A task's state as reported in the status topic.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TaskStatus {
    /// `RUNNING`, `PAUSED`, `FAILED` or `UNASSIGNED`.
    pub state: String,
    /// The server running it.
    pub worker_id: String,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace: Option<String>,
}

/// A connector's status, as `GET /connectors/{name}/status` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectorStatus {
    /// Its name.
    pub name: String,
    /// The connector's own state.
    pub connector: TaskStatus,
    /// Each task's state.
    pub tasks: Vec<Json>,
    /// `source` or `sink`.
    #[serde(rename = "type")]
    pub kind: String,
}

/// A running task on this server.
struct Running {
    control: watch::Sender<Control>,
    generation: u64,
    handle: tokio::task::JoinHandle<()>,
    /// Which run of the task this is: reports of an earlier run are ignored.
    run: u64,
}

/// A task's state report: (connector, task, run, state).
type Report = (String, usize, u64, TaskState);

#[derive(Default)]
struct State {
    connectors: BTreeMap<String, Stored>,
    statuses: BTreeMap<(String, usize), TaskStatus>,
    slots: BTreeSet<i32>,
    running: HashMap<(String, usize), Running>,
    restarts_seen: BTreeSet<String>,
}

/// The connectors of this server and its view of the cluster's.
#[derive(Clone)]
pub struct ConnectCluster {
    inner: Arc<Inner>,
}

struct Inner {
    worker_id: String,
    bootstrap: String,
    producer: Producer,
    offsets: Arc<TopicOffsets>,
    reports: tokio::sync::mpsc::UnboundedSender<Report>,
    runs: std::sync::atomic::AtomicU64,
    state: Mutex<State>,
    /// Set when the config topic was read up to `applied`.
    applied: watch::Sender<i64>,
    /// Per-task counters of the tasks run here.
    metrics: Arc<crate::metrics::ConnectMetrics>,
}

/// The slot of task `id` of `connector` (FNV-1a: the same on every server and version).
pub fn slot_of(connector: &str, id: usize) -> i32 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in connector.bytes().chain([0]).chain((id as u64).to_le_bytes()) {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    (h % SLOTS as u64) as i32
}

/// Creates a compacted internal topic unless it exists.
async fn ensure_topic(admin: &Admin, name: &str, partitions: i32, compact: bool) -> Result<()> {
    let brokers = admin.describe_cluster().await.map(|c| c.brokers.len()).unwrap_or(1).clamp(1, 3) as i16;
    let mut nt = NewTopic::new(name, partitions, brokers);
    if compact {
        nt = nt.config("cleanup.policy", "compact");
    }
    match admin.create_topics(&[nt]).await {
        Ok(_) => Ok(()),
        Err(e) if e.kafka_error() == Some(samsa_client::error::ResponseError::TopicAlreadyExists) => Ok(()),
        Err(e) => Err(Error::Task(format!("cannot create Connect's internal topic {name}: {e}"))),
    }
}

fn producer_config(bootstrap: &str) -> Result<ProducerConfig> {
    let mut pc = ProducerConfig::default();
    pc.set("bootstrap.servers", bootstrap)?;
    pc.set("acks", "all")?;
    Ok(pc)
}

/// Reads every record of partition 0 of `topic` up to its current end.
async fn read_all(admin: &Admin, consumer: &Consumer, topic: &str) -> Result<Vec<(Option<Bytes>, Option<Bytes>)>> {
    let tp = TopicPartition::new(topic, 0);
    let end = admin.list_offsets(std::slice::from_ref(&tp), samsa_client::admin::OffsetSpec::Latest).await?.get(&tp).map_or(0, |o| o.0);
    consumer.assign(std::slice::from_ref(&tp))?;
    consumer.seek_to_beginning(std::slice::from_ref(&tp))?;
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while consumer.position(&tp).await? < end {
        if tokio::time::Instant::now() > deadline {
            return Err(Error::Task(format!("reading {topic} timed out")));
        }
        out.extend(consumer.poll(Duration::from_millis(200)).await?.into_iter().map(|r| (r.key, r.value)));
    }
    Ok(out)
}

/// Source offsets in a compacted offsets topic.
pub struct TopicOffsets {
    bootstrap: String,
    topic: String,
    admin: Admin,
    producer: Producer,
}

impl TopicOffsets {
    /// Offsets in `topic` (created compacted if missing).
    pub async fn open(bootstrap: &str, topic: &str) -> Result<TopicOffsets> {
        let admin = Admin::connect(bootstrap).await?;
        ensure_topic(&admin, topic, 1, true).await?;
        Ok(TopicOffsets { bootstrap: bootstrap.to_string(), topic: topic.to_string(), admin, producer: Producer::new(producer_config(bootstrap)?).await? })
    }

    /// The topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Every stored offset of `connector`: (source partition, offset).
    pub async fn all(&self, connector: &str) -> Result<Vec<(Json, Json)>> {
        let mut cc = ConsumerConfig::default();
        cc.set("bootstrap.servers", &self.bootstrap)?;
        let consumer = Consumer::new(cc).await?;
        let records = read_all(&self.admin, &consumer, &self.topic).await;
        let _ = consumer.close().await;
        let mut map: BTreeMap<String, (Json, Json)> = BTreeMap::new();
        for (key, value) in records? {
            let Some(Ok(Json::Array(k))) = key.map(|k| serde_json::from_slice::<Json>(&k)) else { continue };
            if k.first().and_then(Json::as_str) != Some(connector) || k.len() != 2 {
                continue;
            }
            let partition = k[1].clone();
            match value.and_then(|v| serde_json::from_slice::<Json>(&v).ok()) {
                Some(offset) => map.insert(partition.to_string(), (partition, offset)),
                None => map.remove(&partition.to_string()),
            };
        }
        Ok(map.into_values().collect())
    }

    /// Writes offsets (`None`: forget the partition).
    async fn write(&self, connector: &str, offsets: Vec<(Json, Option<Json>)>) -> Result<()> {
        let mut acks = Vec::new();
        for (partition, offset) in offsets {
            acks.push(self.producer.send(offset_record(&self.topic, connector, &partition, offset.as_ref())).await?);
        }
        for ack in acks {
            ack.await?;
        }
        Ok(())
    }
}

struct MapReader(BTreeMap<String, Json>);

impl OffsetReader for MapReader {
    fn offset(&self, partition: &Json) -> Option<Json> {
        self.0.get(&partition.to_string()).cloned()
    }
}

#[async_trait::async_trait]
impl OffsetStore for TopicOffsets {
    async fn reader(&self, connector: &str) -> Result<Box<dyn OffsetReader>> {
        Ok(Box::new(MapReader(self.all(connector).await?.into_iter().map(|(p, o)| (p.to_string(), o)).collect())))
    }

    async fn store(&self, connector: &str, offsets: Vec<(Json, Json)>) -> Result<()> {
        self.write(connector, offsets.into_iter().map(|(p, o)| (p, Some(o))).collect()).await
    }
}

/// Why an API call failed, with the HTTP status Kafka Connect answers.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: u16,
    /// What went wrong.
    pub message: String,
}

impl ApiError {
    fn new(status: u16, message: impl Into<String>) -> ApiError {
        ApiError { status, message: message.into() }
    }
    fn not_found(name: &str) -> ApiError {
        ApiError::new(404, format!("Connector {name} not found"))
    }
    /// The 400 answer for an invalid config, each bad setting on its own line.
    pub fn invalid(issues: &[ConfigIssue]) -> ApiError {
        let lines: Vec<String> = issues.iter().map(|i| format!("{}: {}", i.name, i.message)).collect();
        ApiError::new(400, format!("Connector configuration is invalid and contains the following {} error(s):\n{}", issues.len(), lines.join("\n")))
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> ApiError {
        ApiError::new(500, e.to_string())
    }
}

impl ConnectCluster {
    /// Joins the cluster's Connect workers: creates the internal topics if missing, reads
    /// them, joins the workers' group and starts this server's share of the tasks.
    /// `worker_id` names this server in statuses (its HTTP address).
    pub async fn start(bootstrap: &str, worker_id: &str) -> Result<ConnectCluster> {
        let admin = Admin::connect(bootstrap).await?;
        ensure_topic(&admin, CONFIG_TOPIC, 1, true).await?;
        ensure_topic(&admin, STATUS_TOPIC, 1, true).await?;
        ensure_topic(&admin, SLOTS_TOPIC, SLOTS, false).await?;
        let producer = Producer::new(producer_config(bootstrap)?).await?;
        let offsets = Arc::new(TopicOffsets::open(bootstrap, OFFSETS_TOPIC).await?);
        let (reports, status_rx) = tokio::sync::mpsc::unbounded_channel::<Report>();
        let (applied, _) = watch::channel(-1);
        let inner = Arc::new(Inner {
            worker_id: worker_id.to_string(),
            bootstrap: bootstrap.to_string(),
            producer,
            offsets,
            reports,
            runs: std::sync::atomic::AtomicU64::new(0),
            state: Mutex::new(State::default()),
            applied,
            metrics: Default::default(),
        });
        let cluster = ConnectCluster { inner };
        // Catch up on configs and statuses first: old restart requests are not replayed.
        let mut cc = ConsumerConfig::default();
        cc.set("bootstrap.servers", bootstrap)?;
        let reader = Consumer::new(cc).await?;
        let tps = [TopicPartition::new(CONFIG_TOPIC, 0), TopicPartition::new(STATUS_TOPIC, 0)];
        let ends = admin.list_offsets(&tps, samsa_client::admin::OffsetSpec::Latest).await?;
        reader.assign(&tps)?;
        reader.seek_to_beginning(&tps)?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let mut behind = false;
            for tp in &tps {
                behind |= reader.position(tp).await? < ends.get(tp).map_or(0, |o| o.0);
            }
            if !behind {
                break;
            }
            if tokio::time::Instant::now() > deadline {
                return Err(Error::Task("reading Connect's internal topics timed out".into()));
            }
            let records = reader.poll(Duration::from_millis(200)).await?;
            cluster.apply(records, true);
        }
        tokio::spawn(cluster.clone().read_loop(reader));
        tokio::spawn(cluster.clone().status_loop(status_rx));
        tokio::spawn(cluster.clone().slots_loop(bootstrap.to_string()));
        tracing::info!(worker = %worker_id, "Connect worker started");
        Ok(cluster)
    }

    /// Applies records of the config and status topics; `catching_up`: restart requests
    /// are noted, not acted on.
    fn apply(&self, records: Vec<samsa_client::consumer::ConsumerRecord>, catching_up: bool) -> Vec<(String, Restart)> {
        let mut restarts = Vec::new();
        let mut st = self.inner.state.lock().unwrap();
        for r in records {
            let key = String::from_utf8_lossy(r.key.as_deref().unwrap_or_default()).into_owned();
            if r.topic == STATUS_TOPIC {
                let Some((name, id)) = key.strip_prefix("task-").and_then(|k| k.rsplit_once('-')).and_then(|(n, i)| Some((n.to_string(), i.parse().ok()?))) else { continue };
                match r.value.and_then(|v| serde_json::from_slice::<TaskStatus>(&v).ok()) {
                    Some(s) => st.statuses.insert((name, id), s),
                    None => st.statuses.remove(&(name, id)),
                };
                continue;
            }
            if let Some(name) = key.strip_prefix("connector-") {
                match r.value.and_then(|v| serde_json::from_slice::<Stored>(&v).ok()) {
                    Some(stored) => st.connectors.insert(name.to_string(), stored),
                    None => {
                        st.statuses.retain(|(n, _), _| n != name);
                        self.inner.metrics.remove(name);
                        st.connectors.remove(name)
                    }
                };
            } else if let Some(name) = key.strip_prefix("restart-") {
                if let Some(req) = r.value.and_then(|v| serde_json::from_slice::<Restart>(&v).ok()) {
                    if st.restarts_seen.insert(req.id.clone()) && !catching_up {
                        restarts.push((name.to_string(), req));
                    }
                }
            }
            self.inner.applied.send_replace(r.offset);
        }
        restarts
    }

    async fn read_loop(self, reader: Consumer) {
        loop {
            let records = match reader.poll(Duration::from_millis(500)).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(error = %e, "reading Connect's internal topics failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            if records.is_empty() {
                continue;
            }
            let configs_changed = records.iter().any(|r| r.topic == CONFIG_TOPIC);
            for (name, req) in self.apply(records, false) {
                self.restart_local(&name, &req);
            }
            if configs_changed {
                self.reconcile();
            }
        }
    }

    async fn status_loop(self, mut rx: tokio::sync::mpsc::UnboundedReceiver<Report>) {
        while let Some((name, id, run, state)) = rx.recv().await {
            let current = self.inner.state.lock().unwrap().running.get(&(name.clone(), id)).map(|r| r.run);
            if current.is_some_and(|c| c != run) {
                // An earlier run of a restarted task, ending after the new one started.
                continue;
            }
            if current.is_none() && state == TaskState::Unassigned {
                // A task that stopped here because it moved (or its connector stopped):
                // its new owner reports it.
                continue;
            }
            let status = TaskStatus {
                state: state.name().into(),
                worker_id: self.inner.worker_id.clone(),
                trace: match &state {
                    TaskState::Failed(why) => Some(why.clone()),
                    _ => None,
                },
            };
            if let TaskState::Failed(why) = &state {
                tracing::error!(connector = %name, task = id, error = %why, "task failed; restart it with POST /connectors/{name}/tasks/{id}/restart");
            }
            self.inner.state.lock().unwrap().statuses.insert((name.clone(), id), status.clone());
            let value = serde_json::to_vec(&status).expect("a status is JSON");
            let rec = ProducerRecord {
                topic: STATUS_TOPIC.into(),
                partition: Some(0),
                key: Some(Bytes::from(format!("task-{name}-{id}"))),
                value: Some(Bytes::from(value)),
                headers: Vec::new(),
                timestamp: None,
            };
            if let Ok(ack) = self.inner.producer.send(rec).await {
                let _ = ack.await;
            }
        }
    }

    /// Keeps this server in the workers' group and follows which slots it owns.
    async fn slots_loop(self, bootstrap: String) {
        let consumer = loop {
            let mut cc = ConsumerConfig::default();
            let made = async {
                cc.set("bootstrap.servers", &bootstrap)?;
                cc.set("group.id", WORKERS_GROUP)?;
                cc.set("session.timeout.ms", "10000")?;
                cc.set("heartbeat.interval.ms", "1000")?;
                cc.set("enable.auto.commit", "false")?;
                let c = Consumer::new(cc).await?;
                c.subscribe(&[SLOTS_TOPIC])?;
                Ok::<_, samsa_client::Error>(c)
            };
            match made.await {
                Ok(c) => break c,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot join the Connect workers' group; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        };
        loop {
            if let Err(e) = consumer.poll(Duration::from_millis(500)).await {
                tracing::warn!(error = %e, "the Connect workers' group failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            let slots: BTreeSet<i32> = consumer.assignment().into_iter().map(|tp| tp.partition).collect();
            let changed = {
                let mut st = self.inner.state.lock().unwrap();
                let changed = st.slots != slots;
                if changed {
                    tracing::info!(worker = %self.inner.worker_id, slots = slots.len(), "Connect task slots assigned");
                    st.slots = slots;
                }
                changed
            };
            if changed {
                self.reconcile();
            }
        }
    }

    /// Starts, stops, pauses and resumes this server's tasks to match the configs.
    fn reconcile(&self) {
        let mut st = self.inner.state.lock().unwrap();
        let mut desired: HashMap<(String, usize), (Props, u64, Target)> = HashMap::new();
        for (name, stored) in &st.connectors {
            if stored.target == Target::Stopped {
                continue;
            }
            let Some(p) = plugin(stored.config.get("connector.class").map(String::as_str).unwrap_or_default()) else { continue };
            let max = stored.config.get("tasks.max").and_then(|t| t.trim().parse::<usize>().ok()).unwrap_or(1);
            let configs = match &p {
                Plugin::Source(c) => c.task_configs(&stored.config, max),
                Plugin::Sink(c) => c.task_configs(&stored.config, max),
            };
            for (i, tc) in configs.into_iter().enumerate() {
                if st.slots.contains(&slot_of(name, i)) {
                    desired.insert((name.clone(), i), (tc, stored.generation, stored.target));
                }
            }
        }
        let stale: Vec<(String, usize)> = st.running.iter().filter(|(k, r)| desired.get(*k).is_none_or(|d| d.1 != r.generation)).map(|(k, _)| k.clone()).collect();
        for key in stale {
            if let Some(r) = st.running.remove(&key) {
                let _ = r.control.send(Control::Stop);
                tracing::info!(connector = %key.0, task = key.1, "stopping task");
            }
        }
        for (key, (tc, generation, target)) in desired {
            let control = if target == Target::Paused { Control::Pause } else { Control::Run };
            if let Some(r) = st.running.get(&key) {
                r.control.send_if_modified(|c| {
                    let changed = *c != control;
                    *c = control;
                    changed
                });
                continue;
            }
            let run = self.inner.runs.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            match self.spawn(&key.0, key.1, run, tc, control) {
                Ok((tx, handle)) => {
                    st.running.insert(key, Running { control: tx, generation, handle, run });
                }
                Err(e) => {
                    let _ = self.inner.reports.send((key.0.clone(), key.1, run, TaskState::Failed(e.to_string())));
                }
            }
        }
    }

    /// Starts one task.
    fn spawn(&self, name: &str, id: usize, run: u64, config: Props, control: Control) -> Result<(watch::Sender<Control>, tokio::task::JoinHandle<()>)> {
        let p = plugin(config.get("connector.class").map(String::as_str).unwrap_or_default()).ok_or_else(|| Error::Config("unknown connector class".into()))?;
        let kc: Arc<dyn crate::data::Converter> = Arc::from(converter(&config, "key.converter")?);
        let vc: Arc<dyn crate::data::Converter> = Arc::from(converter(&config, "value.converter")?);
        let chain = Arc::new(crate::transforms::chain(&config)?);
        let (tx, rx) = watch::channel(control);
        let reports = self.inner.reports.clone();
        let env = Arc::new(TaskEnv {
            bootstrap: self.inner.bootstrap.clone(),
            flush_interval: FLUSH_INTERVAL,
            producer: Vec::new(),
            consumer: Vec::new(),
            offsets: self.inner.offsets.clone(),
            offsets_topic: Some(OFFSETS_TOPIC.into()),
            status: Arc::new(move |name: &str, id: usize, state: TaskState| {
                let _ = reports.send((name.to_string(), id, run, state));
            }),
            metrics: self.inner.metrics.clone(),
        });
        tracing::info!(connector = %name, task = id, "starting task");
        let handle = match p {
            Plugin::Source(c) => {
                let run = SourceRun { name: name.to_string(), id, task: c.task(), config, kc, vc, chain };
                tokio::spawn(async move {
                    let (label, result) = run.run(env, rx).await;
                    tracing::info!(task = %label, ok = result.is_ok(), "task ended");
                })
            }
            Plugin::Sink(c) => {
                let run = SinkRun { name: name.to_string(), id, task: c.task(), config, kc, vc, chain };
                tokio::spawn(async move {
                    let (label, result) = run.run(env, rx).await;
                    tracing::info!(task = %label, ok = result.is_ok(), "task ended");
                })
            }
        };
        Ok((tx, handle))
    }

    /// Acts on a restart request for the tasks this server runs.
    fn restart_local(&self, name: &str, req: &Restart) {
        let mut st = self.inner.state.lock().unwrap();
        let failed = |st: &State, id: usize| st.statuses.get(&(name.to_string(), id)).is_some_and(|s| s.state == "FAILED");
        let picked: Vec<(String, usize)> =
            st.running.keys().filter(|(n, id)| n == name && req.task.is_none_or(|t| t == *id) && (!req.only_failed || failed(&st, *id))).cloned().collect();
        for key in picked {
            if let Some(r) = st.running.remove(&key) {
                let _ = r.control.send(Control::Stop);
                tracing::info!(connector = %key.0, task = key.1, "restarting task");
            }
        }
        drop(st);
        self.reconcile();
    }

    /// Writes a record to the config topic and waits until this server has read it.
    async fn write_config(&self, key: String, value: Option<Json>) -> std::result::Result<(), ApiError> {
        let rec = ProducerRecord {
            topic: CONFIG_TOPIC.into(),
            partition: Some(0),
            key: Some(Bytes::from(key)),
            value: value.map(|v| Bytes::from(v.to_string())),
            headers: Vec::new(),
            timestamp: None,
        };
        let meta = self.inner.producer.send(rec).await.map_err(Error::from)?.await.map_err(Error::from)?;
        let mut applied = self.inner.applied.subscribe();
        tokio::time::timeout(Duration::from_secs(30), applied.wait_for(|a| *a >= meta.offset))
            .await
            .map_err(|_| ApiError::new(500, "the config was written but not read back within 30 s"))?
            .map_err(|_| ApiError::new(500, "the config reader stopped"))?;
        Ok(())
    }

    /// Stops this server's tasks (their offsets stored, positions committed), waiting up
    /// to `timeout`.
    pub async fn shutdown(&self, timeout: Duration) {
        let running: Vec<Running> = {
            let mut st = self.inner.state.lock().unwrap();
            st.slots.clear();
            st.running.drain().map(|(_, r)| r).collect()
        };
        for r in &running {
            let _ = r.control.send(Control::Stop);
        }
        let all = futures_join(running.into_iter().map(|r| r.handle).collect());
        if tokio::time::timeout(timeout, all).await.is_err() {
            tracing::warn!("Connect tasks did not stop within {timeout:?}");
        }
    }

    /// The connectors' names.
    pub fn list(&self) -> Vec<String> {
        self.inner.state.lock().unwrap().connectors.keys().cloned().collect()
    }

    /// A connector's config.
    pub fn config(&self, name: &str) -> std::result::Result<Props, ApiError> {
        self.inner.state.lock().unwrap().connectors.get(name).map(|s| s.config.clone()).ok_or_else(|| ApiError::not_found(name))
    }

    /// A connector's task count and kind.
    pub fn tasks(&self, name: &str) -> std::result::Result<(usize, &'static str), ApiError> {
        let config = self.config(name)?;
        let max = config.get("tasks.max").and_then(|t| t.trim().parse::<usize>().ok()).unwrap_or(1);
        Ok(match plugin(config.get("connector.class").map(String::as_str).unwrap_or_default()) {
            Some(Plugin::Source(c)) => (c.task_configs(&config, max).len(), "source"),
            Some(Plugin::Sink(c)) => (c.task_configs(&config, max).len(), "sink"),
            None => (0, "unknown"),
        })
    }

    /// Creates or replaces a connector's config; `true` when it is new. An invalid config
    /// is refused (400, naming each bad setting) and nothing changes.
    pub async fn put_config(&self, name: &str, mut config: Props, must_be_new: bool) -> std::result::Result<bool, ApiError> {
        if name.is_empty() || name.contains('/') {
            return Err(ApiError::new(400, "a connector needs a name without '/'"));
        }
        match config.get("name") {
            Some(n) if n != name => return Err(ApiError::new(400, format!("the config's name ({n}) is not the connector's ({name})"))),
            _ => {
                config.insert("name".into(), name.into());
            }
        }
        if let Err(issues) = check_connector(config.clone()) {
            return Err(ApiError::invalid(&issues));
        }
        let old = self.inner.state.lock().unwrap().connectors.get(name).cloned();
        if must_be_new && old.is_some() {
            return Err(ApiError::new(409, format!("Connector {name} already exists")));
        }
        let stored = Stored { config, target: old.as_ref().map_or(Target::Running, |o| o.target), generation: old.as_ref().map_or(1, |o| o.generation + 1) };
        self.write_config(format!("connector-{name}"), Some(serde_json::to_value(&stored).expect("JSON"))).await?;
        Ok(old.is_none())
    }

    /// Sets a connector's target state.
    pub async fn set_target(&self, name: &str, target: Target) -> std::result::Result<(), ApiError> {
        let mut stored = self.inner.state.lock().unwrap().connectors.get(name).cloned().ok_or_else(|| ApiError::not_found(name))?;
        if stored.target == target {
            return Ok(());
        }
        stored.target = target;
        self.write_config(format!("connector-{name}"), Some(serde_json::to_value(&stored).expect("JSON"))).await
    }

    /// Deletes a connector (its tasks stop on every server).
    pub async fn delete(&self, name: &str) -> std::result::Result<(), ApiError> {
        self.config(name)?;
        self.write_config(format!("connector-{name}"), None).await
    }

    /// The counters of the tasks this server has run.
    pub fn metrics(&self) -> &crate::metrics::ConnectMetrics {
        &self.inner.metrics
    }

    /// Asks the servers running a connector's tasks to restart them (`task`: one of them;
    /// `only_failed`: only failed ones).
    pub async fn restart(&self, name: &str, task: Option<usize>, only_failed: bool) -> std::result::Result<(), ApiError> {
        let (count, _) = self.tasks(name)?;
        if let Some(t) = task.filter(|t| *t >= count) {
            return Err(ApiError::new(404, format!("Task {name}-{t} not found")));
        }
        let req = Restart { id: uuid_like(), task, only_failed };
        self.write_config(format!("restart-{name}"), Some(serde_json::to_value(&req).expect("JSON"))).await
    }

    /// A connector's status.
    pub fn status(&self, name: &str) -> std::result::Result<ConnectorStatus, ApiError> {
        let (count, kind) = self.tasks(name)?;
        let st = self.inner.state.lock().unwrap();
        let stored = st.connectors.get(name).ok_or_else(|| ApiError::not_found(name))?;
        let mut tasks = Vec::new();
        let mut worker = String::new();
        for id in 0..count {
            let s = st.statuses.get(&(name.to_string(), id)).cloned().unwrap_or(TaskStatus { state: "UNASSIGNED".into(), worker_id: String::new(), trace: None });
            if worker.is_empty() {
                worker = s.worker_id.clone();
            }
            let mut t = json!({"id": id, "state": s.state, "worker_id": s.worker_id});
            if let Some(trace) = s.trace {
                t["trace"] = json!(trace);
            }
            tasks.push(t);
        }
        let state = match stored.target {
            Target::Running => "RUNNING",
            Target::Paused => "PAUSED",
            Target::Stopped => "STOPPED",
        };
        if stored.target == Target::Stopped {
            tasks.clear();
        }
        Ok(ConnectorStatus { name: name.to_string(), connector: TaskStatus { state: state.into(), worker_id: worker, trace: None }, tasks, kind: kind.into() })
    }

    /// A connector's stored source offsets (sinks: none here; their positions are in
    /// their consumer group `connect-<name>`).
    pub async fn offsets(&self, name: &str) -> std::result::Result<Vec<(Json, Json)>, ApiError> {
        self.config(name)?;
        Ok(self.inner.offsets.all(name).await?)
    }

    /// Forgets a stopped source connector's offsets, so it starts over.
    pub async fn reset_offsets(&self, name: &str) -> std::result::Result<(), ApiError> {
        let target = self.inner.state.lock().unwrap().connectors.get(name).map(|s| s.target).ok_or_else(|| ApiError::not_found(name))?;
        if target != Target::Stopped {
            return Err(ApiError::new(400, format!("Connectors must be in the STOPPED state before their offsets can be modified; stop it first: PUT /connectors/{name}/stop")));
        }
        let all = self.inner.offsets.all(name).await?;
        self.inner.offsets.write(name, all.into_iter().map(|(p, _)| (p, None)).collect()).await?;
        Ok(())
    }
}

/// Waits for every handle.
async fn futures_join(handles: Vec<tokio::task::JoinHandle<()>>) {
    for h in handles {
        let _ = h.await;
    }
}

/// A unique enough id for a restart request.
fn uuid_like() -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    format!("{now:x}-{:x}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tasks_spread_over_the_slots() {
        let slots: BTreeSet<i32> = (0..100).map(|i| slot_of("orders", i)).collect();
        assert!(slots.len() > SLOTS as usize / 2, "{slots:?}");
        assert!(slots.iter().all(|s| (0..SLOTS).contains(s)));
        assert_eq!(slot_of("orders", 3), slot_of("orders", 3));
    }

    #[test]
    fn an_invalid_config_answers_400_naming_each_setting() {
        let e = ApiError::invalid(&[ConfigIssue { name: "topic".into(), message: "missing".into() }, ConfigIssue { name: "file".into(), message: "bad".into() }]);
        assert_eq!(e.status, 400);
        assert_eq!(e.message, "Connector configuration is invalid and contains the following 2 error(s):\ntopic: missing\nfile: bad");
    }
}
