//! A task: one sub-topology running on one input partition. It buffers input records per
//! topic, processes them in timestamp order, advances stream time, fires punctuators, and
//! collects output, repartition and changelog records for its thread to send. No I/O
//! here: the stream thread and the test driver both drive it.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use samsa_client::{ConsumerRecord, TopicPartition};

use crate::error::{Error, Result};
use crate::processor::{Node, NodeCtx, PunctuationType, TaskCtx, TaskMetrics};
use crate::record::{Rec, RecordMetadata};
use crate::stores::{OutRecord, SharedBackend, StoreState};
use crate::topology::{NodeKind, TaskId, Topology};

/// Picks a record's event time.
pub type TimestampExtractor = Arc<dyn Fn(&ConsumerRecord) -> i64 + Send + Sync>;

/// What to do with a record that does not deserialize.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeserializationHandler {
    /// Stop the application with an error naming the record (Kafka's LogAndFail).
    #[default]
    Fail,
    /// Log it, count it, skip it (Kafka's LogAndContinue).
    Continue,
}

/// What a task gets from its runtime (the stream thread or the test driver).
#[derive(Clone)]
pub(crate) struct TaskEnv {
    pub globals: HashMap<String, SharedBackend>,
    /// Record caching (see `TaskCtx::caching`).
    pub caching: bool,
    pub wall_clock: Arc<dyn Fn() -> i64 + Send + Sync>,
    pub extractor: TimestampExtractor,
    pub on_bad: DeserializationHandler,
}

pub(crate) struct Task {
    pub id: TaskId,
    pub topo: Arc<Topology>,
    nodes: Vec<Option<Box<dyn Node>>>,
    pub ctx: TaskCtx,
    /// Buffered input per resolved topic.
    queues: BTreeMap<String, VecDeque<ConsumerRecord>>,
    /// Resolved topic -> source node.
    sources: HashMap<String, usize>,
    /// Next offset to commit per input topic.
    pub consumed: BTreeMap<String, i64>,
    extractor: TimestampExtractor,
    on_bad: DeserializationHandler,
}

impl Task {
    pub(crate) fn new(
        id: TaskId,
        topo: Arc<Topology>,
        app_id: &str,
        stores: Vec<StoreState>,
        env: TaskEnv,
    ) -> Result<Task> {
        let TaskEnv { globals, caching, wall_clock, extractor, on_bad } = env;
        let mut stores = stores;
        if caching {
            for st in &mut stores {
                st.deferred_log = Some(BTreeMap::new());
            }
        }
        let sub = topo.subs.get(id.subtopology as usize).ok_or_else(|| Error::State(format!("task {id}: no such sub-topology")))?.clone();
        let store_index = stores.iter().enumerate().map(|(i, s)| (s.def.name.clone(), i)).collect();
        let mut nodes: Vec<Option<Box<dyn Node>>> = (0..topo.nodes.len()).map(|_| None).collect();
        let mut sources = HashMap::new();
        for &i in &sub.nodes {
            let def = &topo.nodes[i];
            if let Some(f) = &def.factory {
                nodes[i] = Some(f());
            }
            if let NodeKind::Source { topics, .. } = &def.kind {
                for t in topics {
                    sources.insert(t.resolve(app_id), i);
                }
            }
        }
        let ctx = TaskCtx {
            task: id,
            app_id: Arc::from(app_id),
            stores,
            store_index,
            stream_time: i64::MIN,
            meta: None,
            out: Vec::new(),
            punctuators: Vec::new(),
            wall_clock,
            seq: 0,
            metrics: TaskMetrics::default(),
            globals,
            caching,
        };
        let mut task = Task { id, topo: topo.clone(), nodes, ctx, queues: BTreeMap::new(), sources, consumed: BTreeMap::new(), extractor, on_bad };
        for &i in &sub.nodes {
            if let Some(mut node) = task.nodes[i].take() {
                let mut emitted = Vec::new();
                let r = node.init(&mut NodeCtx { task: &mut task.ctx, emitted: &mut emitted, node: i, name: &topo.nodes[i].name, ts: 0 });
                task.nodes[i] = Some(node);
                r?;
            }
        }
        Ok(task)
    }

    /// Buffers a consumed record.
    pub(crate) fn add(&mut self, rec: ConsumerRecord) {
        self.queues.entry(rec.topic.clone()).or_default().push_back(rec);
    }

    /// Records buffered and not yet processed.
    pub(crate) fn buffered(&self) -> usize {
        self.queues.values().map(|q| q.len()).sum()
    }

    /// Processes the buffered record with the smallest timestamp; false when none is left.
    pub(crate) fn process_next(&mut self) -> Result<bool> {
        // The head with the smallest event time first (one queue per input topic).
        let Some((ts, rec)) = self
            .queues
            .values_mut()
            .filter_map(|q| {
                let ts = (self.extractor)(q.front()?);
                Some((ts, q))
            })
            .min_by_key(|(ts, _)| *ts)
            .map(|(ts, q)| (ts, q.pop_front().expect("a record is buffered")))
        else {
            return Ok(false);
        };
        match self.consumed.get_mut(&rec.topic) {
            Some(o) => *o = rec.offset + 1,
            None => {
                self.consumed.insert(rec.topic.clone(), rec.offset + 1);
            }
        }
        let Some(&source) = self.sources.get(&rec.topic) else {
            return Err(Error::State(format!("task {} got a record of `{}`, which it does not read", self.id, rec.topic)));
        };
        let NodeKind::Source { deser, .. } = &self.topo.nodes[source].kind else { unreachable!("sources are source nodes") };
        let erased = match deser(&rec) {
            Ok(r) => r,
            Err((part, reason)) => {
                let err = Error::Deserialize { part, topic: rec.topic.clone(), partition: rec.partition, offset: rec.offset, reason };
                match self.on_bad {
                    DeserializationHandler::Fail => return Err(err),
                    DeserializationHandler::Continue => {
                        tracing::warn!(task = %self.id, error = %err, "skipping a record that does not deserialize");
                        self.ctx.metrics.dropped_bad += 1;
                        return Ok(true);
                    }
                }
            }
        };
        let erased = Rec { ts, ..erased };
        if ts > self.ctx.stream_time {
            self.ctx.stream_time = ts;
        }
        self.ctx.meta = Some(RecordMetadata { topic: rec.topic, partition: rec.partition, offset: rec.offset });
        self.ctx.metrics.processed += 1;
        let r = self.forward(source, vec![(None, erased)]);
        self.ctx.meta = None;
        r?;
        self.punctuate(PunctuationType::StreamTime)?;
        Ok(true)
    }

    /// Runs node `idx` on `rec`, then forwards what it emitted (depth first).
    fn run(&mut self, idx: usize, rec: Rec) -> Result<()> {
        let mut node = self.nodes[idx].take().ok_or_else(|| Error::State(format!("internal: node {idx} is not in task {}", self.id)))?;
        let mut emitted = Vec::new();
        let ts = rec.ts;
        let r = node.process(&mut NodeCtx { task: &mut self.ctx, emitted: &mut emitted, node: idx, name: &self.topo.nodes[idx].name, ts }, rec);
        self.nodes[idx] = Some(node);
        r?;
        self.forward(idx, emitted)
    }

    fn forward(&mut self, from: usize, emitted: Vec<(Option<usize>, Rec)>) -> Result<()> {
        if emitted.is_empty() {
            return Ok(());
        }
        let topo = self.topo.clone();
        let def = &topo.nodes[from];
        for (slot, rec) in emitted {
            match slot {
                Some(i) => {
                    if let Some(&c) = def.children.get(i) {
                        self.run(c, rec)?;
                    }
                }
                None => {
                    let n = def.children.len();
                    let mut rec = Some(rec);
                    for (j, &c) in def.children.iter().enumerate() {
                        let r = if j + 1 < n { (def.cloner)(rec.as_ref().expect("kept for the last child")) } else { rec.take().expect("moved once") };
                        self.run(c, r)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Fires due punctuators of `kind`.
    pub(crate) fn punctuate(&mut self, kind: PunctuationType) -> Result<()> {
        if self.ctx.punctuators.is_empty() {
            return Ok(());
        }
        let now = match kind {
            PunctuationType::StreamTime => self.ctx.stream_time,
            PunctuationType::WallClockTime => (self.ctx.wall_clock)(),
        };
        if now == i64::MIN {
            return Ok(());
        }
        for k in 0..self.ctx.punctuators.len() {
            let p = self.ctx.punctuators[k].clone();
            if p.kind != kind {
                continue;
            }
            let due = match p.next {
                None => {
                    // The first stream time seen starts the schedule.
                    self.ctx.punctuators[k].next = Some(now + p.interval);
                    true
                }
                Some(next) => now >= next,
            };
            if !due {
                continue;
            }
            if p.next.is_some() {
                // Next firing: the first interval boundary after now (missed ones are skipped).
                let next = p.next.unwrap_or(now);
                let skips = (now - next) / p.interval + 1;
                self.ctx.punctuators[k].next = Some(next + skips * p.interval);
            }
            let mut node = self.nodes[p.node].take().ok_or_else(|| Error::State("internal: punctuator of a missing node".into()))?;
            let mut emitted = Vec::new();
            let r = node.punctuate(&mut NodeCtx { task: &mut self.ctx, emitted: &mut emitted, node: p.node, name: &self.topo.nodes[p.node].name, ts: now }, p.id, now);
            self.nodes[p.node] = Some(node);
            r?;
            self.forward(p.node, emitted)?;
        }
        Ok(())
    }

    /// Forwards what nodes held back for the record cache (parents before children, so
    /// one flush carries updates through chained aggregations), then the deferred
    /// changelog records.
    pub(crate) fn flush(&mut self) -> Result<()> {
        if !self.ctx.caching {
            return Ok(());
        }
        let topo = self.topo.clone();
        let sub = &topo.subs[self.id.subtopology as usize];
        for &i in &sub.nodes {
            let Some(mut node) = self.nodes[i].take() else { continue };
            let mut emitted = Vec::new();
            let ts = self.ctx.stream_time;
            let r = node.flush(&mut NodeCtx { task: &mut self.ctx, emitted: &mut emitted, node: i, name: &topo.nodes[i].name, ts });
            self.nodes[i] = Some(node);
            r?;
            self.forward(i, emitted)?;
        }
        let TaskCtx { stores, out, .. } = &mut self.ctx;
        for (i, st) in stores.iter_mut().enumerate() {
            st.flush_log(i, out);
        }
        Ok(())
    }

    /// Output, repartition and changelog records produced so far.
    pub(crate) fn take_output(&mut self) -> Vec<OutRecord> {
        std::mem::take(&mut self.ctx.out)
    }

    /// Writes each store's overlay to its backend with its checkpoint.
    pub(crate) fn commit_stores(&mut self, checkpoints: &HashMap<usize, i64>) -> Result<()> {
        for (i, st) in self.ctx.stores.iter_mut().enumerate() {
            st.commit(checkpoints.get(&i).copied())?;
        }
        Ok(())
    }

    /// Flushes every store's backend to disk (frees write buffers).
    pub(crate) fn flush_stores(&self) -> Result<()> {
        for st in &self.ctx.stores {
            st.backend.lock().unwrap_or_else(|p| p.into_inner()).flush()?;
        }
        Ok(())
    }

    /// Expires old windows of window/session stores (writes go through the changelog).
    pub(crate) fn expire_windows(&mut self) -> Result<()> {
        let t = self.ctx.stream_time;
        if t == i64::MIN {
            return Ok(());
        }
        let TaskCtx { stores, out, .. } = &mut self.ctx;
        for (i, st) in stores.iter_mut().enumerate() {
            crate::stores::expire(st, i, t, out)?;
        }
        Ok(())
    }

    /// Forgets uncommitted state and buffered input (its transaction aborted).
    pub(crate) fn abort(&mut self) {
        for st in &mut self.ctx.stores {
            st.abort();
        }
        for n in self.nodes.iter_mut().flatten() {
            n.abort();
        }
        self.queues.clear();
        self.ctx.out.clear();
        self.consumed.clear();
    }

    /// Bytes of uncommitted store writes.
    pub(crate) fn uncommitted_bytes(&self) -> usize {
        self.ctx.stores.iter().map(|s| s.overlay_bytes).sum()
    }

    /// Input offsets to commit.
    pub(crate) fn offsets(&self) -> BTreeMap<TopicPartition, i64> {
        self.consumed.iter().map(|(t, o)| (TopicPartition::new(t.clone(), self.id.partition), *o)).collect()
    }
}
