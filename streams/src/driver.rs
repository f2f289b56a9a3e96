//! [`TopologyTestDriver`]: runs a topology without a broker, for unit tests. Every topic
//! has one partition; records piped into an input topic are processed at once, records
//! written to repartition topics are fed straight to their readers, and records written
//! to other topics are collected for [`TestOutputTopic`]. Stores live in memory and are
//! committed after every input record, so store reads see everything processed.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::marker::PhantomData;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use samsa_client::ConsumerRecord;

use crate::error::{Error, Result};
use crate::processor::{PunctuationType, TaskMetrics};
use crate::record::{Headers, Record};
use crate::serde::DefaultSerde;
use crate::store::backend::KvBackend;
use crate::store::memory::InMemoryBackend;
use crate::stores::{ReadOnlyKv, ReadOnlyWindow, SharedBackend, StoreState};
use crate::task::{DeserializationHandler, Task, TaskEnv};
use crate::topology::{TaskId, Topology};

/// Runs a [`Topology`] in-process, without a broker.
pub struct TopologyTestDriver {
    topo: Arc<Topology>,
    app_id: String,
    tasks: BTreeMap<u32, Task>,
    backends: HashMap<String, SharedBackend>,
    globals: HashMap<String, (String, SharedBackend)>,
    outputs: Arc<Mutex<HashMap<String, VecDeque<ConsumerRecord>>>>,
    offsets: HashMap<String, i64>,
    clock: Arc<AtomicI64>,
}

impl TopologyTestDriver {
    /// A driver for `topology`, with the application id `test-app` and the wall clock at 0.
    pub fn new(topology: Topology) -> Result<TopologyTestDriver> {
        Self::with_app_id(topology, "test-app")
    }

    /// A driver with a given application id (it names internal topics).
    pub fn with_app_id(topology: Topology, app_id: &str) -> Result<TopologyTestDriver> {
        let topo = Arc::new(topology);
        let clock = Arc::new(AtomicI64::new(0));
        let mut globals = HashMap::new();
        let mut global_backends = HashMap::new();
        for g in &topo.globals {
            let b: SharedBackend = Arc::new(Mutex::new(Box::new(InMemoryBackend::new()) as Box<dyn KvBackend>));
            globals.insert(g.topic.clone(), (g.store.name.clone(), b.clone()));
            global_backends.insert(g.store.name.clone(), b);
        }
        let mut backends = HashMap::new();
        let mut tasks = BTreeMap::new();
        for sub in &topo.subs {
            let mut stores = Vec::new();
            for name in &sub.stores {
                let def = topo.stores[name].clone();
                let b: SharedBackend = Arc::new(Mutex::new(Box::new(InMemoryBackend::new()) as Box<dyn KvBackend>));
                backends.insert(name.clone(), b.clone());
                let changelog = def.logged.then(|| (Arc::from(def.changelog_topic(app_id).as_str()), 0));
                stores.push(StoreState::new(def, b, changelog));
            }
            let c = clock.clone();
            let task = Task::new(
                TaskId { subtopology: sub.id, partition: 0 },
                topo.clone(),
                app_id,
                stores,
                TaskEnv {
                    globals: global_backends.clone(),
                    // As Kafka's driver, which commits (flushing caches) after every record.
                    caching: false,
                    wall_clock: Arc::new(move || c.load(Ordering::Relaxed)),
                    extractor: Arc::new(|r: &ConsumerRecord| r.timestamp),
                    on_bad: DeserializationHandler::Fail,
                },
            )?;
            tasks.insert(sub.id, task);
        }
        Ok(TopologyTestDriver {
            topo,
            app_id: app_id.to_string(),
            tasks,
            backends,
            globals,
            outputs: Arc::new(Mutex::new(HashMap::new())),
            offsets: HashMap::new(),
            clock,
        })
    }

    /// An input topic to pipe records into, with the default serdes of `K` and `V`.
    pub fn input<K: DefaultSerde, V: DefaultSerde>(&self, topic: &str) -> TestInputTopic<K, V> {
        TestInputTopic { topic: topic.to_string(), time: 0, _p: PhantomData }
    }

    /// An output topic to read records from, with the default serdes of `K` and `V`.
    pub fn output<K: DefaultSerde, V: DefaultSerde>(&self, topic: &str) -> TestOutputTopic<K, V> {
        TestOutputTopic { topic: topic.to_string(), outputs: self.outputs.clone(), _p: PhantomData }
    }

    /// Processes one serialized record of `topic` and everything it causes.
    pub fn pipe_raw(&mut self, topic: &str, key: Option<Bytes>, value: Option<Bytes>, timestamp: i64, headers: Headers) -> Result<()> {
        let offset = self.offsets.entry(topic.to_string()).or_insert(0);
        let rec = ConsumerRecord { topic: topic.to_string(), partition: 0, offset: *offset, timestamp, log_append_time: false, key, value, headers };
        *offset += 1;
        if let Some((_, b)) = self.globals.get(topic) {
            let k = rec.key.as_deref().ok_or_else(|| Error::State(format!("a record of global table topic `{topic}` has a null key")))?.to_vec();
            b.lock().unwrap().write(&[(k, rec.value.as_ref().map(|v| v.to_vec()))], None)?;
            return Ok(());
        }
        self.run_pending(VecDeque::from([rec]))
    }

    /// Processes records (input, or fed back from repartition topics) until none is left.
    fn run_pending(&mut self, mut pending: VecDeque<ConsumerRecord>) -> Result<()> {
        while let Some(rec) = pending.pop_front() {
            let Some((sub, _)) = self.topo.source_of(&self.app_id, &rec.topic) else {
                return Err(Error::State(format!("no source of the topology reads topic `{}`", rec.topic)));
            };
            let task = self.tasks.get_mut(&sub).expect("a task per sub-topology");
            task.add(rec);
            while task.process_next()? {}
            self.drain(sub, &mut pending)?;
        }
        Ok(())
    }

    fn drain(&mut self, sub: u32, pending: &mut VecDeque<ConsumerRecord>) -> Result<()> {
        let task = self.tasks.get_mut(&sub).expect("a task per sub-topology");
        task.expire_windows()?;
        let out = task.take_output();
        task.commit_stores(&HashMap::new())?;
        for o in out {
            if o.changelog_of.is_some() {
                continue;
            }
            let topic = o.topic.to_string();
            let offset = self.offsets.entry(topic.clone()).or_insert(0);
            let rec = ConsumerRecord {
                topic: topic.clone(),
                partition: 0,
                offset: *offset,
                timestamp: o.ts,
                log_append_time: false,
                key: o.key.map(Bytes::from),
                value: o.value.map(Bytes::from),
                headers: o.headers,
            };
            *offset += 1;
            if self.topo.source_of(&self.app_id, &topic).is_some() {
                pending.push_back(rec);
            } else {
                self.outputs.lock().unwrap().entry(topic).or_default().push_back(rec);
            }
        }
        Ok(())
    }

    /// Moves the wall clock forward and fires wall-clock punctuators.
    pub fn advance_wall_clock(&mut self, by: Duration) -> Result<()> {
        self.clock.fetch_add(by.as_millis() as i64, Ordering::Relaxed);
        let subs: Vec<u32> = self.tasks.keys().copied().collect();
        for sub in subs {
            self.tasks.get_mut(&sub).expect("task").punctuate(PunctuationType::WallClockTime)?;
            let mut pending = VecDeque::new();
            self.drain(sub, &mut pending)?;
            self.run_pending(pending)?;
        }
        Ok(())
    }

    fn backend(&self, name: &str) -> Result<SharedBackend> {
        self.backends
            .get(name)
            .or_else(|| self.globals.values().find(|(n, _)| n == name).map(|(_, b)| b))
            .cloned()
            .ok_or_else(|| Error::State(format!("the topology has no state store `{name}` (it has: {})", self.topo.store_names().join(", "))))
    }

    /// A key-value store's contents.
    pub fn kv_store<K: DefaultSerde, V: DefaultSerde>(&self, name: &str) -> Result<ReadOnlyKv<K, V>> {
        let b = self.backend(name)?;
        let timestamped = self.topo.stores.get(name).is_some_and(|d| d.timestamped);
        Ok(ReadOnlyKv { backends: Arc::new(move || vec![(0, b.clone())]), timestamped, ks: K::serde(), vs: V::serde(), name: name.to_string(), _p: PhantomData })
    }

    /// A window store's contents.
    pub fn window_store<K: DefaultSerde, V: DefaultSerde>(&self, name: &str) -> Result<ReadOnlyWindow<K, V>> {
        let b = self.backend(name)?;
        Ok(ReadOnlyWindow { backends: Arc::new(move || vec![(0, b.clone())]), ks: K::serde(), vs: V::serde(), name: name.to_string() })
    }

    /// Counters summed over every task.
    pub fn metrics(&self) -> TaskMetrics {
        let mut m = TaskMetrics::default();
        for t in self.tasks.values() {
            m += &t.ctx.metrics;
        }
        m
    }

    /// The topology being driven.
    pub fn topology(&self) -> &Topology {
        &self.topo
    }
}

/// Pipes typed records into a topic of a [`TopologyTestDriver`].
pub struct TestInputTopic<K, V> {
    topic: String,
    time: i64,
    _p: PhantomData<fn(K, V)>,
}

impl<K: DefaultSerde, V: DefaultSerde> TestInputTopic<K, V> {
    /// Pipes a record at the topic's current time (the last explicit timestamp, else 0).
    pub fn pipe(&mut self, driver: &mut TopologyTestDriver, key: K, value: V) -> Result<()> {
        let t = self.time;
        self.pipe_at(driver, key, value, t)
    }

    /// Pipes a record with event time `timestamp`.
    pub fn pipe_at(&mut self, driver: &mut TopologyTestDriver, key: K, value: V, timestamp: i64) -> Result<()> {
        self.time = timestamp;
        let k = K::serde().serialize(&key).map(Bytes::from);
        let v = V::serde().serialize(&value).map(Bytes::from);
        driver.pipe_raw(&self.topic, k, v, timestamp, Vec::new())
    }

    /// Pipes a tombstone (null value) for `key`.
    pub fn pipe_tombstone(&mut self, driver: &mut TopologyTestDriver, key: K, timestamp: i64) -> Result<()> {
        self.time = timestamp;
        let k = K::serde().serialize(&key).map(Bytes::from);
        driver.pipe_raw(&self.topic, k, None, timestamp, Vec::new())
    }
}

/// Reads typed records a topology wrote to a topic.
pub struct TestOutputTopic<K, V> {
    topic: String,
    outputs: Arc<Mutex<HashMap<String, VecDeque<ConsumerRecord>>>>,
    _p: PhantomData<fn() -> (K, V)>,
}

impl<K: DefaultSerde, V: DefaultSerde> TestOutputTopic<K, V> {
    /// The next record, or `None` when every record was read.
    pub fn read_record(&self) -> Result<Option<Record<K, V>>> {
        let Some(r) = self.outputs.lock().unwrap().get_mut(&self.topic).and_then(|q| q.pop_front()) else { return Ok(None) };
        let key = K::serde().deserialize(r.key.as_deref()).map_err(|e| Error::State(format!("output key of `{}`: {e}", self.topic)))?;
        let value = V::serde().deserialize(r.value.as_deref()).map_err(|e| Error::State(format!("output value of `{}`: {e}", self.topic)))?;
        Ok(Some(Record { key, value, timestamp: r.timestamp, headers: r.headers }))
    }

    /// Every unread record as `(key, value)`.
    pub fn read_key_values(&self) -> Result<Vec<(K, V)>> {
        Ok(self.read_records()?.into_iter().map(|r| (r.key, r.value)).collect())
    }

    /// Every unread record.
    pub fn read_records(&self) -> Result<Vec<Record<K, V>>> {
        let mut out = Vec::new();
        while let Some(r) = self.read_record()? {
            out.push(r);
        }
        Ok(out)
    }

    /// The last value per key of every unread record (a table's final state).
    pub fn read_key_value_map(&self) -> Result<BTreeMap<K, V>>
    where
        K: Ord,
    {
        Ok(self.read_key_values()?.into_iter().collect())
    }

    /// Whether every record was read.
    pub fn is_empty(&self) -> bool {
        self.outputs.lock().unwrap().get(&self.topic).is_none_or(|q| q.is_empty())
    }
}
