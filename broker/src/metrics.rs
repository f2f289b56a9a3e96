//! The broker's numbers for `GET /metrics`: counters kept as requests pass (request
//! latency by API, network bytes, records and bytes produced per topic, ISR changes), and
//! gauges read from the live state at scrape time (partitions, logs, the controller, and
//! each consumer group's committed offsets and lag).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use kafka_protocol::messages::ApiKey;
use samsa_client::prom::{Exposition, Histogram, Kind};

use crate::server::BrokerState;
use crate::topics::is_internal;

/// API keys below this are counted (Kafka's keys run to about 75).
const API_SLOTS: usize = 128;

/// Counters the broker keeps as requests pass.
#[derive(Debug)]
pub struct BrokerMetrics {
    requests: Vec<Histogram>,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    connections: AtomicU64,
    isr_shrinks: AtomicU64,
    isr_expands: AtomicU64,
    /// Records and bytes appended by producers, per topic.
    produced: Mutex<HashMap<String, (u64, u64)>>,
}

impl Default for BrokerMetrics {
    fn default() -> Self {
        Self {
            requests: (0..API_SLOTS).map(|_| Histogram::default()).collect(),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            isr_shrinks: AtomicU64::new(0),
            isr_expands: AtomicU64::new(0),
            produced: Mutex::new(HashMap::new()),
        }
    }
}

/// Subtracts one from a gauge when dropped (an open connection).
pub struct ConnectionGuard<'a>(&'a AtomicU64);

impl Drop for ConnectionGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl BrokerMetrics {
    /// Counts a request of API `key` that took `took`, with its frame sizes (the size
    /// prefix included).
    pub fn request(&self, key: i16, took: Duration, bytes_in: usize, bytes_out: usize) {
        if let Some(h) = usize::try_from(key).ok().and_then(|k| self.requests.get(k)) {
            h.observe(took);
        }
        self.bytes_in.fetch_add(bytes_in as u64, Ordering::Relaxed);
        self.bytes_out.fetch_add(bytes_out as u64, Ordering::Relaxed);
    }

    /// Counts an open connection until the guard drops.
    pub fn connection(&self) -> ConnectionGuard<'_> {
        self.connections.fetch_add(1, Ordering::Relaxed);
        ConnectionGuard(&self.connections)
    }

    /// Counts an ISR change this broker made as a leader.
    pub fn isr_changed(&self, before: usize, after: usize) {
        if after < before {
            self.isr_shrinks.fetch_add(1, Ordering::Relaxed);
        } else if after > before {
            self.isr_expands.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts records a producer appended to `topic`.
    pub fn produced(&self, topic: &str, records: u64, bytes: u64) {
        let mut m = self.produced.lock().expect("metrics lock");
        match m.get_mut(topic) {
            Some(e) => {
                e.0 += records;
                e.1 += bytes;
            }
            None => {
                m.insert(topic.to_string(), (records, bytes));
            }
        }
    }
}

/// Writes the broker's metrics, its partitions' and its groups' into `e`.
pub fn write(state: &BrokerState, e: &mut Exposition) {
    let m = &state.metrics;
    let node = state.node_id.to_string();
    let node = [("node", node.as_str())];
    for (key, h) in m.requests.iter().enumerate() {
        let snap = h.snapshot();
        if snap.count == 0 {
            continue;
        }
        let api = ApiKey::try_from(key as i16).map(|k| format!("{k:?}")).unwrap_or_else(|_| key.to_string());
        e.histogram("samsa_broker_request_duration_seconds", "Requests by API: how long the broker took to answer.", &[("api", &api)], &snap);
    }
    e.counter("samsa_broker_network_bytes_in_total", "Bytes of request frames received.", &node, m.bytes_in.load(Ordering::Relaxed) as f64);
    e.counter("samsa_broker_network_bytes_out_total", "Bytes of response frames sent.", &node, m.bytes_out.load(Ordering::Relaxed) as f64);
    e.gauge("samsa_broker_connections", "Open client connections.", &node, m.connections.load(Ordering::Relaxed) as f64);
    e.counter("samsa_broker_isr_shrinks_total", "ISR shrinks this broker made as a leader.", &node, m.isr_shrinks.load(Ordering::Relaxed) as f64);
    e.counter("samsa_broker_isr_expands_total", "ISR expansions this broker made as a leader.", &node, m.isr_expands.load(Ordering::Relaxed) as f64);
    e.gauge("samsa_broker_active_controller", "1 if this node is the active controller (the metadata quorum's leader).", &node, f64::from(u8::from(state.controller.is_leader())));
    let produced: BTreeMap<String, (u64, u64)> = m.produced.lock().expect("metrics lock").iter().map(|(k, v)| (k.clone(), *v)).collect();
    e.family("samsa_topic_records_in_total", Kind::Counter, "Records producers appended to a topic's partitions led here.");
    e.family("samsa_topic_bytes_in_total", Kind::Counter, "Bytes of record batches producers appended to a topic's partitions led here.");
    for (topic, (records, bytes)) in &produced {
        e.counter("samsa_topic_records_in_total", "", &[("topic", topic)], *records as f64);
        e.counter("samsa_topic_bytes_in_total", "", &[("topic", topic)], *bytes as f64);
    }

    // Partitions: a leader reports under-replication; every replica its log.
    let mut partitions = state.topics.all_partitions();
    partitions.sort_by(|a, b| (&a.topic, a.index).cmp(&(&b.topic, b.index)));
    let mut under = 0;
    let mut leading = 0;
    let mut hw_of: HashMap<(String, i32), i64> = HashMap::new();
    e.family("samsa_log_size_bytes", Kind::Gauge, "Bytes of a partition's log on this broker.");
    e.family("samsa_log_end_offset", Kind::Gauge, "A partition's log end offset on this broker.");
    e.family("samsa_partition_high_watermark", Kind::Gauge, "A partition's high watermark as this broker knows it.");
    for p in &partitions {
        let (size, leo) = {
            let log = p.log.lock().expect("log lock");
            (log.size_bytes(), log.log_end_offset())
        };
        let (hw, is_leader, isr, replicas) = {
            let r = p.replica.lock().expect("replica lock");
            (r.hw, r.is_leader(), r.isr.len(), r.replicas.len())
        };
        if is_leader {
            leading += 1;
            if isr < replicas {
                under += 1;
            }
        }
        hw_of.insert((p.topic.clone(), p.index), hw);
        if is_internal(&p.topic) {
            continue;
        }
        let index = p.index.to_string();
        let labels = [("topic", p.topic.as_str()), ("partition", index.as_str())];
        e.gauge("samsa_log_size_bytes", "", &labels, size as f64);
        e.gauge("samsa_log_end_offset", "", &labels, leo as f64);
        e.gauge("samsa_partition_high_watermark", "", &labels, hw as f64);
    }
    e.gauge("samsa_broker_leader_partitions", "Partitions this broker leads.", &node, f64::from(leading));
    e.gauge("samsa_broker_under_replicated_partitions", "Partitions led here whose ISR is smaller than their replica set.", &node, f64::from(under));

    // Consumer groups this broker coordinates: committed offset and lag per partition
    // (lag = high watermark - committed offset, for partitions this broker has a replica of).
    e.family("samsa_consumer_group_committed_offset", Kind::Gauge, "A group's committed offset of a partition.");
    e.family("samsa_consumer_group_lag", Kind::Gauge, "Records of a partition a group has not committed yet: high watermark minus committed offset.");
    for (group, (topic, partition), offset) in state.groups.committed_offsets() {
        let index = partition.to_string();
        let labels = [("group", group.as_str()), ("topic", topic.as_str()), ("partition", index.as_str())];
        e.gauge("samsa_consumer_group_committed_offset", "", &labels, offset as f64);
        if let Some(hw) = hw_of.get(&(topic.clone(), partition)) {
            e.gauge("samsa_consumer_group_lag", "", &labels, (hw - offset).max(0) as f64);
        }
    }
    e.family("samsa_consumer_group_members", Kind::Gauge, "Members of a group this broker coordinates.");
    for (group, members, state_name) in state.groups.member_counts() {
        e.gauge("samsa_consumer_group_members", "", &[("group", group.as_str()), ("state", state_name)], members as f64);
    }
}
