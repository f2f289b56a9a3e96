//! [`KafkaStreams`]: runs a topology against a cluster with stream threads, creates the
//! internal topics, loads global tables, and answers interactive queries.

pub(crate) mod assignor;
pub mod config;
pub(crate) mod state_dir;
pub(crate) mod thread;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use samsa_client::admin::NewTopic;
use samsa_client::consumer::offsets::{list_offsets, OffsetSpec};
use samsa_client::{Admin, AdminConfig, Consumer, TopicPartition};
use tokio::task::JoinHandle;

use self::assignor::TaskPlan;
pub use self::config::{ProcessingGuarantee, StreamsConfig};
use self::state_dir::StateDir;
use crate::error::{Error, Result};
use crate::processor::TaskMetrics;
use crate::serde::DefaultSerde;
use crate::store::backend::KvBackend;
use crate::store::memory::InMemoryBackend;
use crate::store::rocks::RocksResources;
use crate::stores::{ReadOnlyKv, ReadOnlyWindow, SharedBackend};
use crate::topology::{NodeKind, TaskId, TopicName, Topology};

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// Bytes of the files under `p` (0 if it cannot be read).
pub fn dir_size(p: &std::path::Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(p) else { return 0 };
    rd.filter_map(|e| e.ok())
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_size(&e.path()),
            Ok(_) => e.metadata().map(|m| m.len()).unwrap_or(0),
            Err(_) => 0,
        })
        .sum()
}

/// Counters of a running instance.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    pub commits: AtomicU64,
    /// Changelog records applied while restoring active tasks.
    pub restored: AtomicU64,
    /// Changelog records applied to standby tasks.
    pub standby_applied: AtomicU64,
    /// Assignments the threads have acted on.
    pub rebalances: AtomicU64,
    /// Times uncommitted work was dropped to be redone (aborts, rebalances mid-commit).
    pub redone: AtomicU64,
    /// How long commits took.
    pub commit_latency: samsa_client::prom::Histogram,
    /// Changelog offsets still to restore before the restoring tasks can run.
    pub restore_remaining: std::sync::atomic::AtomicI64,
    pub tasks: Mutex<BTreeMap<TaskId, TaskMetrics>>,
}

struct RegEntry {
    backend: SharedBackend,
    active: bool,
}

/// State shared by the instance and its threads.
pub(crate) struct Shared {
    pub config: StreamsConfig,
    pub topo: Arc<Topology>,
    pub plan: Arc<TaskPlan>,
    pub state_dir: Arc<StateDir>,
    pub rocks: RocksResources,
    pub globals: HashMap<String, SharedBackend>,
    pub closing: AtomicBool,
    pub metrics: Metrics,
    /// Open store backends by (store, partition).
    registry: Mutex<HashMap<(String, i32), (TaskId, RegEntry)>>,
    /// Partition count of each sub-topology.
    pub partitions: BTreeMap<u32, i32>,
    /// The latest assignment's host map (for key lookups).
    pub hosts: Mutex<Option<assignor::AssignmentInfo>>,
    /// The first thread failure.
    pub failure: Mutex<Option<String>>,
    /// Notified when the instance starts stopping.
    pub stopped: tokio::sync::Notify,
}

impl Shared {
    /// Records a thread failure and stops the instance.
    pub(crate) fn fail(&self, message: String) {
        let mut f = self.failure.lock().unwrap();
        if f.is_none() {
            *f = Some(message);
        }
        self.closing.store(true, Ordering::Release);
        self.stopped.notify_waiters();
    }
}

impl Shared {
    pub(crate) fn register(&self, store: &str, task: TaskId, backend: SharedBackend, active: bool) {
        self.registry.lock().unwrap().insert((store.to_string(), task.partition), (task, RegEntry { backend, active }));
    }

    pub(crate) fn unregister(&self, task: TaskId) {
        self.registry.lock().unwrap().retain(|_, (t, _)| *t != task);
    }

    pub(crate) fn lookup(&self, store: &str, task: TaskId) -> Option<SharedBackend> {
        self.registry.lock().unwrap().get(&(store.to_string(), task.partition)).filter(|(t, _)| *t == task).map(|(_, e)| e.backend.clone())
    }

    fn backends_of(&self, store: &str, include_standby: bool) -> Vec<(i32, SharedBackend)> {
        let reg = self.registry.lock().unwrap();
        let mut v: Vec<(i32, SharedBackend)> =
            reg.iter().filter(|((s, _), (_, e))| s == store && (e.active || include_standby)).map(|((_, p), (_, e))| (*p, e.backend.clone())).collect();
        v.sort_by_key(|(p, _)| *p);
        v
    }
}

/// Where a key of a store lives (see [`KafkaStreams::query_metadata_for_key`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyQueryMetadata {
    /// The partition (task) that holds the key.
    pub partition: i32,
    /// `application.server` of the instance running that task, if known.
    pub active_host: Option<String>,
    /// `application.server` of instances with a standby copy.
    pub standby_hosts: Vec<String>,
}

/// A running streams application instance.
pub struct KafkaStreams {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<Result<()>>>,
    global_task: Option<JoinHandle<()>>,
}

impl KafkaStreams {
    /// Validates the topology, creates missing internal topics (repartition and
    /// changelog), loads global tables, and starts `num.stream.threads` threads.
    pub async fn start(topology: Topology, config: StreamsConfig) -> Result<KafkaStreams> {
        let app = config.application_id.clone();
        if app.is_empty() || app.contains(['/', '\\', ' ']) {
            return Err(Error::Config(format!("`application.id` = `{app}` must be non-empty without spaces or slashes (it names topics and directories)")));
        }
        let state_dir = Arc::new(StateDir::open(&config.state_dir, &app)?);
        let mut ac = AdminConfig::default();
        ac.set("bootstrap.servers", &config.bootstrap_servers)?;
        let admin = Admin::new(ac).await?;
        let partitions = prepare_topics(&admin, &topology, &config).await?;
        let plan = Arc::new(TaskPlan {
            subs: topology
                .subs
                .iter()
                .map(|s| (s.id, s.sources.iter().map(|t| t.resolve(&app)).collect(), s.stores.iter().any(|n| topology.stores[n].logged)))
                .collect(),
        });
        let rocks = RocksResources::new(config.rocksdb)?;
        let (globals, global_task) = start_globals(&topology, &config).await?;
        let shared = Arc::new(Shared {
            config: config.clone(),
            topo: Arc::new(topology),
            plan,
            state_dir,
            rocks,
            globals,
            closing: AtomicBool::new(false),
            metrics: Metrics::default(),
            registry: Mutex::new(HashMap::new()),
            partitions,
            hosts: Mutex::new(None),
            failure: Mutex::new(None),
            stopped: tokio::sync::Notify::new(),
        });
        let mut threads = Vec::new();
        for i in 0..config.num_stream_threads {
            let t = thread::StreamThread::new(i, shared.clone()).await?;
            threads.push(tokio::spawn(t.run()));
        }
        tracing::info!(application = %app, threads = config.num_stream_threads, guarantee = ?config.processing_guarantee, process = %shared.state_dir.process_id, "streams application started");
        Ok(KafkaStreams { shared, threads, global_task })
    }

    /// Waits until the instance stops: `Err` when a thread failed (the whole instance
    /// then shuts down, as Kafka Streams' SHUTDOWN_CLIENT), `Ok` after a close.
    pub async fn wait(&self) -> Result<()> {
        loop {
            let stopped = self.shared.stopped.notified();
            tokio::pin!(stopped);
            stopped.as_mut().enable();
            if let Some(m) = self.shared.failure.lock().unwrap().clone() {
                return Err(Error::State(m));
            }
            if self.shared.closing.load(Ordering::Acquire) {
                return Ok(());
            }
            stopped.await;
        }
    }

    /// Writes this instance's metrics (label `app`: its `application.id`) into `e`: per
    /// task records processed and dropped; commits and their latency; restoration
    /// progress; rebalances. (The state's size: [`dir_size`] of [`Self::state_dir`].)
    pub fn write_metrics(&self, e: &mut samsa_client::prom::Exposition) {
        use samsa_client::prom::Kind;
        let app = self.shared.config.application_id.as_str();
        let m = &self.shared.metrics;
        e.family("samsa_streams_task_records_processed_total", Kind::Counter, "Input records a streams task processed.");
        e.family("samsa_streams_task_records_dropped_total", Kind::Counter, "Input records a streams task dropped, by reason (late, bad, null_key).");
        for (task, t) in self.task_metrics() {
            let task = task.to_string();
            e.counter("samsa_streams_task_records_processed_total", "", &[("app", app), ("task", &task)], t.processed as f64);
            for (reason, n) in [("late", t.dropped_late), ("bad", t.dropped_bad), ("null_key", t.dropped_null_key)] {
                e.counter("samsa_streams_task_records_dropped_total", "", &[("app", app), ("task", &task), ("reason", reason)], n as f64);
            }
        }
        e.histogram("samsa_streams_commit_latency_seconds", "How long a streams thread's commit took (flush, produce, transaction commit).", &[("app", app)], &m.commit_latency.snapshot());
        e.counter("samsa_streams_restored_records_total", "Changelog records applied while restoring tasks.", &[("app", app)], m.restored.load(Ordering::Relaxed) as f64);
        e.gauge(
            "samsa_streams_restore_remaining_offsets",
            "Changelog offsets still to restore in the stores being restored now (0: none restoring).",
            &[("app", app)],
            m.restore_remaining.load(Ordering::Relaxed).max(0) as f64,
        );
        e.counter("samsa_streams_rebalances_total", "Assignments the streams threads acted on.", &[("app", app)], m.rebalances.load(Ordering::Relaxed) as f64);
    }

    /// This application's local state directory (`<state.dir>/<application.id>`); its size
    /// is [`dir_size`] (a walk of the disk: call it off the async threads).
    pub fn state_dir(&self) -> &std::path::Path {
        &self.shared.state_dir.root
    }

    /// Whether a thread failed (the instance is then shutting down).
    pub fn is_failed(&self) -> bool {
        self.shared.failure.lock().unwrap().is_some()
    }

    /// Commits, leaves the group and stops every thread.
    pub async fn close(mut self) -> Result<()> {
        self.shared.closing.store(true, Ordering::Release);
        self.shared.stopped.notify_waiters();
        let mut first = Ok(());
        for t in std::mem::take(&mut self.threads) {
            let r = t.await.map_err(|e| Error::State(format!("a stream thread panicked: {e}"))).and_then(|r| r);
            if first.is_ok() {
                first = r;
            }
        }
        if let Some(g) = self.global_task.take() {
            g.abort();
        }
        first
    }

    /// Committed contents of a key-value store, over this instance's active tasks.
    pub fn store<K: DefaultSerde, V: DefaultSerde>(&self, name: &str) -> Result<ReadOnlyKv<K, V>> {
        let global = self.shared.globals.get(name).cloned();
        if global.is_none() && !self.shared.topo.stores.contains_key(name) {
            return Err(Error::State(format!("no state store `{name}` in this topology (it has: {})", self.shared.topo.store_names().join(", "))));
        }
        let backends: crate::stores::BackendSource = match global {
            Some(b) => Arc::new(move || vec![(0, b.clone())]),
            None => {
                let (shared, name) = (self.shared.clone(), name.to_string());
                Arc::new(move || shared.backends_of(&name, false))
            }
        };
        let timestamped = self.shared.topo.stores.get(name).is_some_and(|d| d.timestamped);
        Ok(ReadOnlyKv { backends, timestamped, ks: K::serde(), vs: V::serde(), name: name.to_string(), _p: PhantomData })
    }

    /// Committed contents of a window store, over this instance's active tasks.
    pub fn window_store<K: DefaultSerde, V: DefaultSerde>(&self, name: &str) -> Result<ReadOnlyWindow<K, V>> {
        if !self.shared.topo.stores.contains_key(name) {
            return Err(Error::State(format!("no state store `{name}` in this topology")));
        }
        let (shared, store) = (self.shared.clone(), name.to_string());
        Ok(ReadOnlyWindow { backends: Arc::new(move || shared.backends_of(&store, false)), ks: K::serde(), vs: V::serde(), name: name.to_string() })
    }

    /// Which partition holds `key` in `store`, and which instance (by
    /// `application.server`) runs it, from the latest assignment.
    pub fn query_metadata_for_key<K: DefaultSerde>(&self, store: &str, key: &K) -> Result<KeyQueryMetadata> {
        let sub = self
            .shared
            .topo
            .subs
            .iter()
            .find(|s| s.stores.iter().any(|n| n == store))
            .ok_or_else(|| Error::State(format!("no state store `{store}` in this topology")))?;
        let n = self.shared.partitions.get(&sub.id).copied().unwrap_or(1);
        let bytes = K::serde().serialize(key).ok_or_else(|| Error::State("a null key has no partition".into()))?;
        let partition = samsa_client::producer::partitioner::partition_for_key(&bytes, n);
        let task = TaskId { subtopology: sub.id, partition };
        let hosts = self.shared.hosts.lock().unwrap().clone();
        let active_host = hosts.as_ref().and_then(|i| i.hosts.iter().find(|(_, ts)| ts.contains(&task)).map(|(h, _)| h.clone()));
        let standby_hosts = hosts.as_ref().map(|i| i.standby_hosts.iter().filter(|(_, ts)| ts.contains(&task)).map(|(h, _)| h.clone()).collect()).unwrap_or_default();
        Ok(KeyQueryMetadata { partition, active_host, standby_hosts })
    }

    /// Counters per active task of this instance.
    pub fn task_metrics(&self) -> BTreeMap<TaskId, TaskMetrics> {
        self.shared.metrics.tasks.lock().unwrap().clone()
    }

    /// Commits done so far by all threads.
    pub fn commits(&self) -> u64 {
        self.shared.metrics.commits.load(Ordering::Relaxed)
    }

    /// Changelog records applied while restoring active tasks (since start).
    pub fn restored_records(&self) -> u64 {
        self.shared.metrics.restored.load(Ordering::Relaxed)
    }

    /// Assignments this instance's threads have acted on (since start).
    pub fn rebalances(&self) -> u64 {
        self.shared.metrics.rebalances.load(Ordering::Relaxed)
    }

    /// Times this instance dropped uncommitted work to redo it from the last commit (a
    /// failed commit or send, or a rebalance it could not commit before).
    pub fn redone_work(&self) -> u64 {
        self.shared.metrics.redone.load(Ordering::Relaxed)
    }

    /// Changelog records applied to standby replicas (since start).
    pub fn standby_records(&self) -> u64 {
        self.shared.metrics.standby_applied.load(Ordering::Relaxed)
    }

    /// Active and standby tasks of this instance, from the open stores and task metrics.
    pub fn local_tasks(&self) -> (Vec<TaskId>, Vec<TaskId>) {
        let reg = self.shared.registry.lock().unwrap();
        let mut active: BTreeSet<TaskId> = self.shared.metrics.tasks.lock().unwrap().keys().copied().collect();
        let mut standby = BTreeSet::new();
        for (t, e) in reg.values() {
            if e.active {
                active.insert(*t);
            } else {
                standby.insert(*t);
            }
        }
        (active.into_iter().collect(), standby.into_iter().collect())
    }

    /// This instance's process id (stable across restarts with the same state directory).
    pub fn process_id(&self) -> &str {
        &self.shared.state_dir.process_id
    }

    /// Approximate RocksDB memory in use (block cache plus write buffers).
    pub fn rocksdb_memory_usage(&self) -> usize {
        self.shared.rocks.approximate_usage()
    }
}

/// Checks input topics, sizes repartition topics, creates missing internal topics;
/// returns each sub-topology's partition count.
async fn prepare_topics(admin: &Admin, topo: &Topology, config: &StreamsConfig) -> Result<BTreeMap<u32, i32>> {
    let app = &config.application_id;
    let user: BTreeSet<String> = topo
        .subs
        .iter()
        .flat_map(|s| s.sources.iter())
        .filter_map(|t| if let TopicName::User(n) = t { Some(n.clone()) } else { None })
        .chain(topo.globals.iter().map(|g| g.topic.clone()))
        .collect();
    let user_list: Vec<String> = user.iter().cloned().collect();
    let described = admin.describe_topics(&user_list).await?;
    let mut counts: HashMap<TopicName, i32> = HashMap::new();
    for t in &described {
        if t.partitions.is_empty() {
            continue;
        }
        counts.insert(TopicName::User(t.name.clone()), t.partitions.len() as i32);
    }
    let missing: Vec<&String> = user.iter().filter(|t| !counts.contains_key(&TopicName::User((*t).clone()))).collect();
    if !missing.is_empty() {
        return Err(Error::Topology(format!(
            "input topic(s) {} do not exist; create them first (e.g. `samsa topic create NAME --partitions N`)",
            missing.iter().map(|t| format!("`{t}`")).collect::<Vec<_>>().join(", ")
        )));
    }
    // Repartition topics that feed a join take the partition count of the input topics
    // they join with (as Kafka's CopartitionedTopicsEnforcer); the others are fixed, or
    // as many partitions as the sub-topology writing them.
    for group in &topo.copartition {
        let users: Vec<i32> = group.iter().filter(|t| matches!(t, TopicName::User(_))).filter_map(|t| counts.get(t).copied()).collect();
        if let Some(n) = users.iter().copied().max() {
            for t in group {
                if let TopicName::Repartition(name) = t {
                    if topo.repartitions.get(name).is_some_and(|d| d.partitions.is_none()) {
                        counts.insert(t.clone(), n);
                    }
                }
            }
        }
    }
    let writer_of = |name: &str| -> Option<u32> {
        topo.subs.iter().find(|s| s.nodes.iter().any(|&i| matches!(&topo.nodes[i].kind, NodeKind::Sink { topic: TopicName::Repartition(n) } if n == name))).map(|s| s.id)
    };
    for _ in 0..=topo.subs.len() {
        for (name, def) in &topo.repartitions {
            let key = TopicName::Repartition(name.clone());
            if counts.contains_key(&key) {
                continue;
            }
            if let Some(n) = def.partitions {
                counts.insert(key, n);
                continue;
            }
            if let Some(w) = writer_of(name) {
                let srcs = &topo.subs[w as usize].sources;
                if srcs.iter().all(|t| counts.contains_key(t)) {
                    let n = srcs.iter().map(|t| counts[t]).max().unwrap_or(1);
                    counts.insert(key, n);
                }
            }
        }
    }
    let mut sub_counts = BTreeMap::new();
    for s in &topo.subs {
        let ns: Vec<i32> = s.sources.iter().filter_map(|t| counts.get(t).copied()).collect();
        let n = ns.iter().copied().max().ok_or_else(|| Error::Topology(format!("cannot size the inputs of sub-topology {}", s.id)))?;
        sub_counts.insert(s.id, n);
    }
    for group in &topo.copartition {
        let ns: BTreeSet<i32> = group.iter().filter_map(|t| counts.get(t).copied()).collect();
        if ns.len() > 1 {
            let names: Vec<String> = group.iter().map(|t| format!("`{}` ({} partitions)", t.resolve(app), counts.get(t).copied().unwrap_or(0))).collect();
            return Err(Error::Topology(format!(
                "join inputs must be co-partitioned (the same number of partitions): {}; repartition one side first",
                names.join(", ")
            )));
        }
    }
    let mut wanted: Vec<NewTopic> = Vec::new();
    for name in topo.repartitions.keys() {
        let key = TopicName::Repartition(name.clone());
        let n = counts.get(&key).copied().unwrap_or(1);
        wanted.push(NewTopic::new(key.resolve(app), n, config.replication_factor).config("cleanup.policy", "delete"));
    }
    for s in &topo.subs {
        for store in &s.stores {
            let def = &topo.stores[store];
            if !def.logged {
                continue;
            }
            let mut t = NewTopic::new(def.changelog_topic(app), sub_counts[&s.id], config.replication_factor);
            for (k, v) in def.changelog_configs() {
                t = t.config(k, v);
            }
            wanted.push(t);
        }
    }
    let existing: BTreeSet<String> = admin.list_topics(true).await?.into_iter().collect();
    let create: Vec<NewTopic> = wanted.into_iter().filter(|t| !existing.contains(&t.name)).collect();
    if !create.is_empty() {
        tracing::info!(topics = ?create.iter().map(|t| t.name.clone()).collect::<Vec<_>>(), "creating internal topics");
        match admin.create_topics(&create).await {
            Ok(()) => {}
            // Another instance created them at the same moment.
            Err(samsa_client::Error::Broker { error: samsa_client::error::ResponseError::TopicAlreadyExists, .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(sub_counts)
}

/// Reads every global table to its end, then keeps following it in the background.
async fn start_globals(topo: &Topology, config: &StreamsConfig) -> Result<(HashMap<String, SharedBackend>, Option<JoinHandle<()>>)> {
    if topo.globals.is_empty() {
        return Ok((HashMap::new(), None));
    }
    let cc = config.consumer_config(format!("{}-global-consumer", config.application_id))?;
    let consumer = Consumer::new(cc).await?;
    let mut stores: HashMap<String, SharedBackend> = HashMap::new();
    let mut by_topic: HashMap<String, SharedBackend> = HashMap::new();
    let mut tps = Vec::new();
    for g in &topo.globals {
        let b: SharedBackend = Arc::new(Mutex::new(Box::new(InMemoryBackend::new()) as Box<dyn KvBackend>));
        stores.insert(g.store.name.clone(), b.clone());
        by_topic.insert(g.topic.clone(), b);
        let md = consumer.cluster().refresh(Some(std::slice::from_ref(&g.topic)), false).await?;
        let n = md.topics.get(&g.topic).map(|t| t.partitions.len()).unwrap_or(0);
        tps.extend((0..n as i32).map(|p| TopicPartition::new(g.topic.clone(), p)));
    }
    consumer.assign(&tps)?;
    consumer.seek_to_beginning(&tps)?;
    let iso = if config.exactly_once() { 1 } else { 0 };
    let ends = list_offsets(consumer.cluster(), &tps, OffsetSpec::Latest, iso).await?;
    let apply = |recs: Vec<samsa_client::ConsumerRecord>, by_topic: &HashMap<String, SharedBackend>| -> Result<()> {
        for (topic, b) in by_topic {
            let batch = crate::stores::changelog_batch(recs.iter().filter(|r| &r.topic == topic));
            if !batch.is_empty() {
                b.lock().unwrap().write(&batch, None)?;
            }
        }
        Ok(())
    };
    // Bootstrap: read up to the end offsets seen at start.
    loop {
        let mut done = true;
        for (tp, (end, _)) in &ends {
            if consumer.position(tp).await? < *end {
                done = false;
            }
        }
        if done {
            break;
        }
        let recs = consumer.poll(Duration::from_millis(200)).await?;
        apply(recs, &by_topic)?;
    }
    tracing::info!(tables = topo.globals.len(), "global tables loaded");
    let handle = tokio::spawn(async move {
        loop {
            match consumer.poll(Duration::from_millis(500)).await {
                Ok(recs) => {
                    if let Err(e) = apply(recs, &by_topic) {
                        tracing::error!(error = %e, "global table update failed");
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "global table consumer failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    });
    Ok((stores, Some(handle)))
}
