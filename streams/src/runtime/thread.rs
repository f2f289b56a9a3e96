//! A stream thread: one group member (consumer), one producer (transactional under
//! exactly_once_v2), one restore consumer, and the tasks the assignor gave it.
//!
//! Loop: poll -> route records to tasks -> process -> send output, repartition and
//! changelog records -> every `commit.interval.ms` commit. A commit under exactly_once_v2
//! is `send_offsets_to_transaction` + `commit_transaction` (output, changelogs and input
//! offsets in one transaction), then each store's overlay goes to its backend with the
//! changelog offset reached. Anything that fails or spans a rebalance is aborted, the
//! overlays are dropped, and the inputs rewind to the committed offsets: so local state,
//! changelogs, outputs and offsets always agree.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use samsa_client::consumer::offsets::{list_offsets, OffsetSpec};
use samsa_client::{Consumer, DeliveryFuture, GroupMetadata, Producer, ProducerConfig, ProducerRecord, TopicPartition};

use crate::error::{Error, Result};
use crate::runtime::assignor::{StreamsAssignor, ThreadAssignment};
use crate::runtime::Shared;
use crate::store::backend::KvBackend;
use crate::store::memory::InMemoryBackend;
use crate::store::rocks::RocksBackend;
use crate::stores::{changelog_batch, SharedBackend, StoreState};
use crate::task::{Task, TaskEnv};
use crate::topology::TaskId;

/// A standby task: its stores, kept up to date from the changelogs.
struct Standby {
    stores: Vec<StoreState>,
}

pub(crate) struct StreamThread {
    idx: usize,
    shared: Arc<Shared>,
    consumer: Consumer,
    restore: Consumer,
    producer: Producer,
    assignment: Arc<Mutex<ThreadAssignment>>,
    tasks: BTreeMap<TaskId, Task>,
    standbys: BTreeMap<TaskId, Standby>,
    /// Generation whose assignment the tasks reflect.
    generation: i32,
    txn_open: bool,
    txn_group: Option<GroupMetadata>,
    /// Changelog deliveries since the last commit: (task, store index, delivery).
    changelog: Vec<(TaskId, usize, DeliveryFuture)>,
    outputs: Vec<DeliveryFuture>,
    dirty: bool,
    next_commit: Instant,
    /// Standby changelog partitions the restore consumer follows now.
    following: BTreeSet<TopicPartition>,
}

impl StreamThread {
    pub(crate) async fn new(idx: usize, shared: Arc<Shared>) -> Result<StreamThread> {
        let cfg = &shared.config;
        let assignment = Arc::new(Mutex::new(ThreadAssignment::default()));
        let sd = shared.state_dir.clone();
        let assignor = StreamsAssignor {
            plan: shared.plan.clone(),
            process: shared.state_dir.process_id.clone(),
            endpoint: cfg.application_server.clone(),
            standbys: cfg.num_standby_replicas,
            shared: assignment.clone(),
            local_tasks: Arc::new(move || sd.local_tasks()),
        };
        let mut cc = cfg.consumer_config(format!("{}-StreamThread-{}", cfg.application_id, idx + 1))?;
        cc.group_id = Some(cfg.application_id.clone());
        cc.allow_auto_create_topics = false;
        let consumer = Consumer::new(cc.custom_assignor(Arc::new(assignor))).await?;
        let rc = cfg.consumer_config(format!("{}-StreamThread-{}-restore-consumer", cfg.application_id, idx + 1))?;
        let restore = Consumer::new(rc).await?;
        let producer = Self::make_producer(&shared, idx).await?;
        let topics = shared.topo.source_topics(&cfg.application_id);
        consumer.subscribe(&topics)?;
        Ok(StreamThread {
            idx,
            shared: shared.clone(),
            consumer,
            restore,
            producer,
            assignment,
            tasks: BTreeMap::new(),
            standbys: BTreeMap::new(),
            generation: -1,
            txn_open: false,
            txn_group: None,
            changelog: Vec::new(),
            outputs: Vec::new(),
            dirty: false,
            next_commit: Instant::now() + shared.config.commit_interval,
            following: BTreeSet::new(),
        })
    }

    async fn make_producer(shared: &Shared, idx: usize) -> Result<Producer> {
        let cfg = &shared.config;
        let mut pc = ProducerConfig::default();
        pc.set("linger.ms", "10")?;
        pc.set("bootstrap.servers", &cfg.bootstrap_servers)?;
        for (k, v) in &cfg.producer {
            pc.set(k, v)?;
        }
        pc.common.client_id = format!("{}-StreamThread-{}-producer", cfg.application_id, idx + 1);
        if cfg.exactly_once() {
            // Stable across restarts (the process id lives in the state directory), so a
            // restarted instance fences its former self and aborts what it left open.
            let id = format!("{}-{}-{}", cfg.application_id, shared.state_dir.process_id, idx + 1);
            pc = pc.transactional_id(id);
            if !cfg.producer.iter().any(|(k, _)| k == "transaction.timeout.ms") {
                pc = pc.transaction_timeout(std::time::Duration::from_secs(10));
            }
        }
        let producer = Producer::new(pc).await?;
        if cfg.exactly_once() {
            producer.init_transactions().await?;
        }
        Ok(producer)
    }

    /// Runs until the instance shuts down or a fatal error.
    pub(crate) async fn run(mut self) -> Result<()> {
        let result = self.run_loop().await;
        if let Err(e) = &result {
            tracing::error!(thread = self.idx + 1, error = %e, "stream thread failed; stopping the instance");
            self.shared.fail(format!("stream thread {} failed: {e}", self.idx + 1));
        }
        self.shutdown(result.is_ok()).await;
        result
    }

    async fn run_loop(&mut self) -> Result<()> {
        let poll = self.shared.config.poll;
        while !self.shared.closing.load(Ordering::Acquire) {
            let rebalancing = self.consumer.rebalance_pending();
            if rebalancing {
                // Commit before the rebalance revokes the tasks (as Kafka Streams does on
                // revocation), so nothing processed is dropped and redone; this poll then
                // lets the rebalance start.
                self.commit().await?;
                self.next_commit = Instant::now() + self.shared.config.commit_interval;
            }
            let polled = if rebalancing { self.consumer.poll(poll).await } else { self.consumer.poll_before_rebalance(poll).await };
            let records = match polled {
                Ok(r) => r,
                Err(e) if e.is_retriable() => {
                    tracing::debug!(error = %e, "poll failed; retrying");
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            let latest = self.assignment.lock().unwrap().latest.as_ref().map(|(g, _)| *g);
            if latest.is_some_and(|g| g != self.generation) {
                self.on_rebalance().await?;
                continue;
            }
            if !records.is_empty() {
                self.begin_if_needed()?;
                for r in records {
                    let Some(task) = self.shared.plan.task_of(&TopicPartition::new(r.topic.clone(), r.partition)) else { continue };
                    if let Some(t) = self.tasks.get_mut(&task) {
                        t.add(r);
                    }
                }
                for t in self.tasks.values_mut() {
                    if t.buffered() > 0 {
                        self.dirty = true;
                    }
                    while t.process_next()? {}
                }
            }
            if !self.tasks.is_empty() {
                for t in self.tasks.values_mut() {
                    t.punctuate(crate::processor::PunctuationType::WallClockTime)?;
                }
            }
            if let Err(e) = self.send_output().await {
                match e {
                    // The transaction cannot go on (e.g. it timed out, or this producer was
                    // fenced): redo the work since the last commit in a new one.
                    Error::Client(ce) if self.shared.config.exactly_once() => {
                        tracing::warn!(thread = self.idx + 1, error = %ce, "sending failed; aborting and going back to the last commit");
                        self.abort_and_rewind(matches!(ce, samsa_client::Error::Fenced { .. })).await?;
                        continue;
                    }
                    other => return Err(other),
                }
            }
            self.follow_standbys().await?;
            let uncommitted: usize = self.tasks.values().map(|t| t.uncommitted_bytes()).sum();
            // Without a record cache, uncommitted writes are still bounded (64 MiB).
            let limit = match self.shared.config.max_uncommitted_bytes {
                0 => 64 << 20,
                n => n,
            };
            if Instant::now() >= self.next_commit || uncommitted > limit {
                self.commit().await?;
                self.next_commit = Instant::now() + self.shared.config.commit_interval;
            }
            self.publish_metrics();
        }
        self.commit().await
    }

    fn begin_if_needed(&mut self) -> Result<()> {
        if self.shared.config.exactly_once() && !self.txn_open {
            self.producer.begin_transaction()?;
            self.txn_open = true;
            self.txn_group = self.consumer.group_metadata();
        }
        Ok(())
    }

    async fn send_output(&mut self) -> Result<()> {
        let outputs: Vec<(TaskId, Vec<crate::stores::OutRecord>)> = self.tasks.iter_mut().map(|(id, t)| (*id, t.take_output())).filter(|(_, o)| !o.is_empty()).collect();
        if outputs.is_empty() {
            return Ok(());
        }
        self.begin_if_needed()?;
        self.dirty = true;
        for (id, out) in outputs {
            for o in out {
                let rec = ProducerRecord {
                    topic: o.topic.to_string(),
                    partition: o.partition,
                    key: o.key.map(Bytes::from),
                    value: o.value.map(Bytes::from),
                    headers: o.headers,
                    timestamp: Some(o.ts),
                };
                let fut = self.producer.send(rec).await?;
                match o.changelog_of {
                    Some(store) => self.changelog.push((id, store, fut)),
                    None => self.outputs.push(fut),
                }
            }
        }
        Ok(())
    }

    /// Commits everything processed since the last commit.
    async fn commit(&mut self) -> Result<()> {
        if !self.dirty {
            return Ok(());
        }
        for t in self.tasks.values_mut() {
            t.flush()?;
            t.expire_windows()?;
            t.flush()?;
        }
        self.send_output().await?;
        let offsets: BTreeMap<TopicPartition, i64> = self.tasks.values().flat_map(|t| t.offsets()).collect();
        let started = Instant::now();
        if self.shared.config.exactly_once() {
            if !self.txn_open {
                self.begin_if_needed()?;
            }
            let group = self.txn_group.clone().ok_or_else(|| Error::State("no group membership to commit offsets with".into()))?;
            let result = async {
                if !offsets.is_empty() {
                    self.producer.send_offsets_to_transaction(&offsets, &group).await?;
                }
                self.producer.commit_transaction().await
            }
            .await;
            self.txn_open = false;
            if let Err(e) = result {
                tracing::warn!(thread = self.idx + 1, error = %e, "commit failed; aborting and going back to the last commit");
                self.abort_and_rewind(matches!(e, samsa_client::Error::Fenced { .. })).await?;
                return Ok(());
            }
        } else {
            self.producer.flush().await;
        }
        // Every record is acknowledged now: learn the changelog offsets.
        let mut checkpoints: HashMap<(TaskId, usize), i64> = HashMap::new();
        for (task, store, fut) in std::mem::take(&mut self.changelog) {
            let md = fut.await?;
            let e = checkpoints.entry((task, store)).or_insert(md.offset + 1);
            *e = (*e).max(md.offset + 1);
        }
        for fut in std::mem::take(&mut self.outputs) {
            fut.await?;
        }
        if !self.shared.config.exactly_once() && !offsets.is_empty() {
            if let Err(e) = self.consumer.commit_offsets(&offsets).await {
                // At-least-once: the records are reprocessed by whoever owns them next.
                tracing::warn!(thread = self.idx + 1, error = %e, "offset commit failed");
            }
        }
        for (id, task) in self.tasks.iter_mut() {
            let cps: HashMap<usize, i64> = checkpoints.iter().filter(|((t, _), _)| t == id).map(|((_, s), o)| (*s, *o)).collect();
            task.commit_stores(&cps)?;
        }
        // RocksDB frees write buffers only in the store being written: when they near the
        // budget, flush this thread's stores (idle ones would otherwise hold theirs).
        let budget = self.shared.config.rocksdb.write_buffer_bytes;
        if self.shared.rocks.write_buffer_usage() > budget / 4 * 3 {
            for t in self.tasks.values() {
                t.flush_stores()?;
            }
        }
        self.dirty = false;
        tracing::debug!(thread = self.idx + 1, ms = started.elapsed().as_millis() as u64, partitions = offsets.len(), "committed");
        self.shared.metrics.commits.fetch_add(1, Ordering::Relaxed);
        self.shared.metrics.commit_latency.observe(started.elapsed());
        Ok(())
    }

    /// Drops uncommitted work everywhere and rewinds inputs to the committed offsets.
    async fn abort_and_rewind(&mut self, fenced: bool) -> Result<()> {
        self.shared.metrics.redone.fetch_add(1, Ordering::Relaxed);
        self.drop_uncommitted(fenced, true).await?;
        self.rewind().await
    }

    /// Aborts the open transaction (`abort_txn`; a fenced producer is replaced instead)
    /// and drops every task's uncommitted state and pending deliveries.
    async fn drop_uncommitted(&mut self, fenced: bool, abort_txn: bool) -> Result<()> {
        if self.shared.config.exactly_once() {
            if fenced {
                self.producer = Self::make_producer(&self.shared, self.idx).await?;
            } else if abort_txn {
                if let Err(e) = self.producer.abort_transaction().await {
                    tracing::warn!(error = %e, "abort failed; starting a new producer");
                    self.producer = Self::make_producer(&self.shared, self.idx).await?;
                }
            }
        }
        self.txn_open = false;
        self.changelog.clear();
        self.outputs.clear();
        for t in self.tasks.values_mut() {
            t.abort();
        }
        self.dirty = false;
        Ok(())
    }

    /// Seeks every owned partition to its committed offset (or the beginning).
    async fn rewind(&mut self) -> Result<()> {
        let tps = self.consumer.assignment();
        if tps.is_empty() {
            return Ok(());
        }
        let committed = self.consumer.committed(&tps).await?;
        for tp in &tps {
            match committed.get(tp).copied().flatten() {
                Some(o) => self.consumer.seek(tp, o)?,
                None => self.consumer.seek_to_beginning(std::slice::from_ref(tp))?,
            }
        }
        Ok(())
    }

    /// A new assignment: drop the old generation's uncommitted work, close tasks that
    /// moved, create and restore new ones, update standbys, rewind inputs.
    async fn on_rebalance(&mut self) -> Result<()> {
        let (generation, info) = self.assignment.lock().unwrap().latest.clone().expect("a new assignment");
        self.shared.metrics.rebalances.fetch_add(1, Ordering::Relaxed);
        *self.shared.hosts.lock().unwrap() = Some(info.clone());
        if self.dirty || self.txn_open {
            tracing::info!(thread = self.idx + 1, "rebalance: dropping work not yet committed (it is redone from the last commit)");
            self.shared.metrics.redone.fetch_add(1, Ordering::Relaxed);
            self.drop_uncommitted(false, self.txn_open).await?;
        }
        let active: BTreeSet<TaskId> = info.active.iter().copied().collect();
        let standby: BTreeSet<TaskId> = info.standby.iter().copied().collect();
        let gone: Vec<TaskId> = self.tasks.keys().filter(|t| !active.contains(t)).copied().collect();
        for t in gone {
            self.tasks.remove(&t);
            self.shared.unregister(t);
            self.shared.metrics.tasks.lock().unwrap().remove(&t);
            tracing::info!(app = %self.shared.config.application_id, thread = self.idx + 1, task = %t, "task moved away");
        }
        let gone: Vec<TaskId> = self.standbys.keys().filter(|t| !standby.contains(t)).copied().collect();
        for t in gone {
            self.standbys.remove(&t);
            self.shared.unregister(t);
        }
        for t in &active {
            if self.tasks.contains_key(t) {
                continue;
            }
            // A standby promoted to active keeps its stores (already nearly up to date).
            let stores = match self.standbys.remove(t) {
                Some(s) => s.stores,
                None => Self::open_stores(&self.shared, *t).await?,
            };
            let stores = self.restore_stores(*t, stores).await?;
            let task = Task::new(
                *t,
                self.shared.topo.clone(),
                &self.shared.config.application_id,
                stores,
                TaskEnv {
                    globals: self.shared.globals.clone(),
                    caching: self.shared.config.max_uncommitted_bytes > 0,
                    wall_clock: Arc::new(crate::runtime::now_ms),
                    extractor: self.shared.config.timestamp_extractor.clone(),
                    on_bad: self.shared.config.deserialization_handler,
                },
            )?;
            for st in &task.ctx.stores {
                self.shared.register(&st.def.name, *t, st.backend.clone(), true);
            }
            self.tasks.insert(*t, task);
            tracing::info!(app = %self.shared.config.application_id, thread = self.idx + 1, task = %t, "task running");
        }
        for t in &standby {
            if self.standbys.contains_key(t) || active.contains(t) {
                continue;
            }
            let stores = Self::open_stores(&self.shared, *t).await?;
            for st in &stores {
                self.shared.register(&st.def.name, *t, st.backend.clone(), false);
            }
            self.standbys.insert(*t, Standby { stores });
        }
        self.following.clear();
        {
            let mut a = self.assignment.lock().unwrap();
            a.active = active.iter().copied().collect();
            a.standby = standby.iter().copied().collect();
        }
        self.generation = generation;
        self.rewind().await?;
        self.next_commit = Instant::now() + self.shared.config.commit_interval;
        Ok(())
    }

    /// Opens (or reuses) the backends of a task's stores.
    async fn open_stores(shared: &Shared, t: TaskId) -> Result<Vec<StoreState>> {
        let sub = &shared.topo.subs[t.subtopology as usize];
        let app = &shared.config.application_id;
        let mut out = Vec::new();
        for name in &sub.stores {
            let def = shared.topo.stores[name].clone();
            let backend: SharedBackend = match shared.lookup(name, t) {
                Some(b) => b,
                None if def.in_memory => Arc::new(Mutex::new(Box::new(InMemoryBackend::new()) as Box<dyn KvBackend>)),
                None => {
                    let dir = shared.state_dir.store_dir(t, name);
                    let rocks = shared.rocks.clone();
                    // The previous owner thread may still be closing it: retry briefly.
                    let mut tries = 0;
                    loop {
                        match RocksBackend::open(&dir, &rocks) {
                            Ok(b) => break Arc::new(Mutex::new(Box::new(b) as Box<dyn KvBackend>)),
                            Err(e) if tries < 50 => {
                                tries += 1;
                                tracing::debug!(error = %e, "store busy; retrying");
                                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                            }
                            Err(e) => return Err(e),
                        }
                    }
                }
            };
            let changelog = def.logged.then(|| (Arc::from(def.changelog_topic(app).as_str()), t.partition));
            out.push(StoreState::new(def, backend, changelog));
        }
        Ok(out)
    }

    /// Brings every logged store of a task up to the end of its changelog.
    async fn restore_stores(&mut self, t: TaskId, mut stores: Vec<StoreState>) -> Result<Vec<StoreState>> {
        // The group member stays alive through a long restore: its partitions are paused
        // and each restore batch is followed by a poll that returns nothing, so
        // max.poll.interval.ms counts from the last batch, not from the restore's start.
        // One partition at a time: a rebalance may take some away meanwhile.
        let owned = self.consumer.assignment();
        for tp in &owned {
            let _ = self.consumer.pause(std::slice::from_ref(tp));
        }
        let restored = self.restore_stores_paused(t, &mut stores).await;
        for tp in &owned {
            let _ = self.consumer.resume(std::slice::from_ref(tp));
        }
        restored.map(|()| stores)
    }

    async fn restore_stores_paused(&mut self, t: TaskId, stores: &mut [StoreState]) -> Result<()> {
        let iso = if self.shared.config.exactly_once() { 1 } else { 0 };
        for st in stores.iter_mut() {
            let Some((topic, partition)) = st.changelog.clone() else { continue };
            let tp = TopicPartition::new(topic.to_string(), partition);
            let end = list_offsets(self.restore.cluster(), std::slice::from_ref(&tp), OffsetSpec::Latest, iso).await?.get(&tp).map(|(o, _)| *o).unwrap_or(0);
            let from = st.checkpoint()?.unwrap_or(0);
            if from >= end {
                continue;
            }
            let started = Instant::now();
            tracing::info!(app = %self.shared.config.application_id, task = %t, store = %st.def.name, from, to = end, "restoring from the changelog");
            self.following.clear();
            self.restore.assign(std::slice::from_ref(&tp))?;
            self.restore.seek(&tp, from)?;
            let mut remaining = Remaining::new(&self.shared.metrics.restore_remaining, end - from);
            let mut at = from;
            let mut restored = 0u64;
            let mut last_log = Instant::now();
            let mut last_poll = Instant::now();
            loop {
                let recs = self.restore.poll(std::time::Duration::from_millis(200)).await?;
                let pos = self.restore.position(&tp).await?;
                let batch = changelog_batch(&recs);
                restored += batch.len() as u64;
                self.shared.metrics.restored.fetch_add(batch.len() as u64, Ordering::Relaxed);
                st.restore_batch(&batch, pos)?;
                let step = (pos.min(end) - at).max(0);
                remaining.done(step);
                at += step;
                if pos >= end {
                    break;
                }
                // Paused: nothing comes back, unless a rebalance added partitions, whose
                // records the rewind after that rebalance reads again.
                if last_poll.elapsed() >= std::time::Duration::from_millis(100) {
                    last_poll = Instant::now();
                    let _ = self.consumer.poll(std::time::Duration::ZERO).await;
                }
                if last_log.elapsed().as_secs() >= 5 {
                    last_log = Instant::now();
                    tracing::info!(app = %self.shared.config.application_id, task = %t, store = %st.def.name, at = pos, to = end, "restoring");
                }
                if self.shared.closing.load(Ordering::Acquire) {
                    return Err(Error::State("closing".into()));
                }
            }
            self.restore.unassign();
            tracing::info!(app = %self.shared.config.application_id, task = %t, store = %st.def.name, records = restored, ms = started.elapsed().as_millis() as u64, "restored");
        }
        Ok(())
    }

    /// Applies new changelog records to standby stores.
    async fn follow_standbys(&mut self) -> Result<()> {
        if self.standbys.is_empty() {
            return Ok(());
        }
        let wanted: BTreeMap<TopicPartition, (TaskId, usize)> = self
            .standbys
            .iter()
            .flat_map(|(t, s)| s.stores.iter().enumerate().filter_map(move |(i, st)| st.changelog.as_ref().map(|(topic, p)| (TopicPartition::new(topic.to_string(), *p), (*t, i)))))
            .collect();
        let keys: BTreeSet<TopicPartition> = wanted.keys().cloned().collect();
        if keys != self.following {
            let tps: Vec<TopicPartition> = keys.iter().cloned().collect();
            self.restore.assign(&tps)?;
            for (tp, (t, i)) in &wanted {
                let cp = self.standbys[t].stores[*i].checkpoint()?.unwrap_or(0);
                self.restore.seek(tp, cp)?;
            }
            self.following = keys;
        }
        let recs = self.restore.poll(std::time::Duration::ZERO).await?;
        let mut by_tp: BTreeMap<TopicPartition, Vec<&samsa_client::ConsumerRecord>> = BTreeMap::new();
        for r in &recs {
            by_tp.entry(TopicPartition::new(r.topic.clone(), r.partition)).or_default().push(r);
        }
        for (tp, rs) in by_tp {
            let Some((t, i)) = wanted.get(&tp) else { continue };
            let batch = changelog_batch(rs.iter().copied());
            let next = rs.last().map(|r| r.offset + 1).unwrap_or(0);
            if let Some(sb) = self.standbys.get_mut(t) {
                sb.stores[*i].restore_batch(&batch, next)?;
                self.shared.metrics.standby_applied.fetch_add(batch.len() as u64, Ordering::Relaxed);
            }
        }
        Ok(())
    }

    fn publish_metrics(&self) {
        let mut m = self.shared.metrics.tasks.lock().unwrap();
        for (id, t) in &self.tasks {
            m.insert(*id, t.ctx.metrics.clone());
        }
    }

    async fn shutdown(&mut self, clean: bool) {
        if !clean && self.txn_open {
            let _ = self.producer.abort_transaction().await;
        }
        for t in self.tasks.keys().chain(self.standbys.keys()) {
            self.shared.unregister(*t);
        }
        self.tasks.clear();
        self.standbys.clear();
        let _ = self.consumer.close().await;
        let _ = self.restore.close().await;
        self.producer.close().await;
        tracing::info!(thread = self.idx + 1, "stream thread stopped");
    }
}

/// A restore's share of the `restore_remaining` gauge: added when it starts, taken back
/// as offsets are restored, and whatever is left when it ends (done, failed or dropped).
struct Remaining<'a> {
    gauge: &'a std::sync::atomic::AtomicI64,
    left: i64,
}

impl<'a> Remaining<'a> {
    fn new(gauge: &'a std::sync::atomic::AtomicI64, left: i64) -> Self {
        gauge.fetch_add(left, Ordering::Relaxed);
        Remaining { gauge, left }
    }

    fn done(&mut self, step: i64) {
        let step = step.min(self.left);
        self.gauge.fetch_sub(step, Ordering::Relaxed);
        self.left -= step;
    }
}

impl Drop for Remaining<'_> {
    fn drop(&mut self) {
        self.gauge.fetch_sub(self.left, Ordering::Relaxed);
    }
}
