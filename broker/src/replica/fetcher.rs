//! The follower side of replication: one task per leader broker fetches, over the Kafka
//! protocol with this broker's replica id (as Kafka's ReplicaFetcherThread does), every
//! partition this broker follows from that leader.
//!
//! Before fetching under a new leader epoch a follower truncates its log where it
//! diverges from the leader's (KIP-101): it asks the leader, with OffsetForLeaderEpoch,
//! where its latest epoch ends on the leader, and cuts its own log there.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::offset_for_leader_epoch_request::{OffsetForLeaderPartition, OffsetForLeaderTopic};
use kafka_protocol::messages::*;
use kafka_protocol::ResponseError;
use samsa_client::net::Connection;
use tokio::sync::watch;

use crate::meta::Image;
use crate::now_ms;
use crate::topics::{Partition, TopicManager};

/// Pause after an error before the next fetch from the same leader.
const BACKOFF: Duration = Duration::from_millis(200);

/// Settings of the follower fetchers.
#[derive(Debug, Clone)]
pub struct FetcherConfig {
    /// This broker's id, sent as the replica id.
    pub me: i32,
    /// `replica.fetch.wait.max.ms`.
    pub wait: Duration,
    /// `replica.fetch.max.bytes`.
    pub max_bytes: i32,
    /// How brokers reach each other (`inter.broker.*`).
    pub inter_broker: crate::server::InterBroker,
}

/// The running fetcher tasks, one per leader broker.
pub struct Fetchers {
    config: FetcherConfig,
    topics: Arc<TopicManager>,
    image: watch::Receiver<Arc<Image>>,
    shutdown: watch::Receiver<bool>,
    /// Followed partitions by leader; each task reads its list every round.
    assigned: Mutex<HashMap<i32, Vec<Arc<Partition>>>>,
}

impl Fetchers {
    /// Fetchers for the partitions of `topics`; nothing runs until [`Fetchers::refresh`].
    pub fn new(config: FetcherConfig, topics: Arc<TopicManager>, image: watch::Receiver<Arc<Image>>, shutdown: watch::Receiver<bool>) -> Arc<Self> {
        Arc::new(Self { config, topics, image, shutdown, assigned: Mutex::new(HashMap::new()) })
    }

    /// Regroups followed partitions by leader and starts a task for any new leader.
    pub fn refresh(self: &Arc<Self>) {
        let mut by_leader: HashMap<i32, Vec<Arc<Partition>>> = HashMap::new();
        for p in self.topics.all_partitions() {
            let leader = p.replica.lock().expect("replica lock").leader;
            if leader >= 0 && leader != self.config.me {
                by_leader.entry(leader).or_default().push(p);
            }
        }
        let mut assigned = self.assigned.lock().expect("assigned lock");
        for (leader, parts) in by_leader {
            if assigned.insert(leader, parts).is_none() {
                tokio::spawn(self.clone().run(leader));
            }
        }
        // Leaders no longer followed get an empty list; their task sees it and ends.
        for (_, parts) in assigned.iter_mut() {
            parts.retain(|p| p.replica.lock().expect("replica lock").leader != self.config.me);
        }
    }

    fn partitions_of(&self, leader: i32) -> Option<Vec<Arc<Partition>>> {
        let mut assigned = self.assigned.lock().expect("assigned lock");
        let parts: Vec<Arc<Partition>> = assigned.get(&leader)?.iter().filter(|p| p.replica.lock().expect("replica lock").leader == leader).cloned().collect();
        if parts.is_empty() {
            assigned.remove(&leader);
            return None;
        }
        Some(parts)
    }

    async fn run(self: Arc<Self>, leader: i32) {
        let mut conn: Option<Arc<Connection>> = None;
        let mut shutdown = self.shutdown.clone();
        loop {
            if *shutdown.borrow() {
                return;
            }
            let Some(parts) = self.partitions_of(leader) else { return };
            let listener = &self.config.inter_broker.listener;
            let addr = self.image.borrow().brokers.get(&leader).filter(|b| !b.fenced).map(|b| {
                let (host, port) = b.address_for(listener);
                format!("{host}:{port}")
            });
            let Some(addr) = addr else {
                tokio::select! { _ = tokio::time::sleep(BACKOFF) => {}, _ = shutdown.changed() => return }
                continue;
            };
            if conn.as_ref().is_none_or(|c| c.is_closed() || c.addr() != addr) {
                let timeout = self.config.wait + Duration::from_secs(10);
                match Connection::connect_with(&addr, &format!("samsa-replica-{}", self.config.me), Duration::from_secs(3), timeout, &self.config.inter_broker.transport).await {
                    Ok(c) => conn = Some(c),
                    Err(e) => {
                        tracing::debug!(leader, %addr, "replica fetcher cannot connect: {e}");
                        tokio::select! { _ = tokio::time::sleep(BACKOFF) => {}, _ = shutdown.changed() => return }
                        continue;
                    }
                }
            }
            let c = conn.clone().expect("connected");
            let result = tokio::select! {
                r = self.round(&c, leader, parts) => r,
                _ = shutdown.changed() => return,
            };
            if let Err(e) = result {
                tracing::debug!(leader, "replica fetch failed: {e}");
                conn = None;
                tokio::select! { _ = tokio::time::sleep(BACKOFF) => {}, _ = shutdown.changed() => return }
            }
        }
    }

    /// One truncation check (where needed) and one fetch.
    async fn round(&self, conn: &Connection, leader: i32, parts: Vec<Arc<Partition>>) -> samsa_client::Result<()> {
        let (needs_truncation, ready): (Vec<_>, Vec<_>) = parts.into_iter().partition(|p| {
            let r = p.replica.lock().expect("replica lock");
            r.truncated_for != Some(r.leader_epoch)
        });
        if !needs_truncation.is_empty() {
            self.truncate(conn, &needs_truncation).await?;
        }
        if ready.is_empty() {
            if !needs_truncation.is_empty() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            return Ok(());
        }
        self.fetch(conn, leader, ready).await
    }

    async fn truncate(&self, conn: &Connection, parts: &[Arc<Partition>]) -> samsa_client::Result<()> {
        let version = conn.version::<OffsetForLeaderEpochRequest>(3, 4)?;
        let mut req = OffsetForLeaderEpochRequest::default();
        req.replica_id = BrokerId(self.config.me);
        let mut asked = Vec::new();
        for p in parts {
            let latest = p.log.lock().expect("log lock").latest_epoch();
            let epoch = p.replica.lock().expect("replica lock").leader_epoch;
            match latest {
                // An empty log has nothing that can diverge.
                None => p.replica.lock().expect("replica lock").truncated_for = Some(epoch),
                Some(last) => {
                    let mut op = OffsetForLeaderPartition::default();
                    op.partition = p.index;
                    op.current_leader_epoch = epoch;
                    op.leader_epoch = last;
                    let mut t = OffsetForLeaderTopic::default();
                    t.topic = TopicName(p.topic.clone().into());
                    t.partitions.push(op);
                    req.topics.push(t);
                    asked.push((p.clone(), epoch));
                }
            }
        }
        if asked.is_empty() {
            return Ok(());
        }
        let resp = conn.send(&req, version).await?;
        let answers: HashMap<(String, i32), (i16, i32, i64)> = resp
            .topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(move |e| ((t.topic.0.to_string(), e.partition), (e.error_code, e.leader_epoch, e.end_offset))))
            .collect();
        for (p, epoch) in asked {
            let Some(&(code, leader_epoch, end_offset)) = answers.get(&(p.topic.clone(), p.index)) else { continue };
            if code != 0 {
                tracing::debug!(partition = %p.name(), code, "leader refused OffsetForLeaderEpoch; retrying");
                continue;
            }
            let mut log = p.log.lock().expect("log lock");
            let before = log.log_end_offset();
            let cut = if leader_epoch < 0 || end_offset < 0 {
                // The leader knows none of our epochs: nothing we hold is known to be committed.
                log.log_start_offset()
            } else {
                let ours = log.end_offset_for_epoch(leader_epoch).map(|(_, end)| end).unwrap_or(log.log_start_offset());
                end_offset.min(ours)
            };
            if cut < before {
                if let Err(e) = log.truncate_to(cut) {
                    tracing::error!(partition = %p.name(), "truncation failed: {e}");
                    continue;
                }
                tracing::info!(partition = %p.name(), from = before, to = log.log_end_offset(), "truncated divergent log tail");
            }
            let leo = log.log_end_offset();
            let mut r = p.replica.lock().expect("replica lock");
            if r.leader_epoch == epoch {
                r.truncated_for = Some(epoch);
                r.hw = r.hw.min(leo);
            }
        }
        Ok(())
    }

    async fn fetch(&self, conn: &Connection, leader: i32, parts: Vec<Arc<Partition>>) -> samsa_client::Result<()> {
        let version = conn.version::<FetchRequest>(12, 12)?;
        let mut req = FetchRequest::default();
        req.replica_id = BrokerId(self.config.me);
        req.max_wait_ms = self.config.wait.as_millis() as i32;
        req.min_bytes = 1;
        req.max_bytes = self.config.max_bytes;
        req.session_epoch = -1;
        let mut by_topic: HashMap<String, FetchTopic> = HashMap::new();
        let mut sent: HashMap<(String, i32), (Arc<Partition>, i32)> = HashMap::new();
        for p in &parts {
            let (leo, start, last_epoch) = {
                let log = p.log.lock().expect("log lock");
                (log.log_end_offset(), log.log_start_offset(), log.latest_epoch().unwrap_or(-1))
            };
            let epoch = p.replica.lock().expect("replica lock").leader_epoch;
            let mut fp = FetchPartition::default();
            fp.partition = p.index;
            fp.current_leader_epoch = epoch;
            fp.fetch_offset = leo;
            fp.last_fetched_epoch = last_epoch;
            fp.log_start_offset = start;
            fp.partition_max_bytes = self.config.max_bytes;
            by_topic
                .entry(p.topic.clone())
                .or_insert_with(|| {
                    let mut t = FetchTopic::default();
                    t.topic = TopicName(p.topic.clone().into());
                    t
                })
                .partitions
                .push(fp);
            sent.insert((p.topic.clone(), p.index), (p.clone(), epoch));
        }
        req.topics = by_topic.into_values().collect();
        let resp = conn.send(&req, version).await?;
        if resp.error_code != 0 {
            tracing::debug!(leader, code = resp.error_code, "replica fetch refused");
            tokio::time::sleep(BACKOFF).await;
            return Ok(());
        }
        let mut progressed = false;
        let mut refused = 0;
        for t in resp.responses {
            for pd in t.partitions {
                let Some((p, epoch)) = sent.get(&(t.topic.0.to_string(), pd.partition_index)) else { continue };
                if p.replica.lock().expect("replica lock").leader_epoch != *epoch {
                    continue; // leadership moved while the fetch was out
                }
                match ResponseError::try_from_code(pd.error_code) {
                    None => {
                        let records = pd.records.unwrap_or_else(Bytes::new);
                        let mut log = p.log.lock().expect("log lock");
                        if !records.is_empty() {
                            if let Err(e) = log.append_replicated(&records, now_ms()) {
                                tracing::warn!(partition = %p.name(), "cannot append replicated data: {e}; truncating again");
                                p.replica.lock().expect("replica lock").truncated_for = None;
                                continue;
                            }
                            progressed = true;
                        }
                        let leo = log.log_end_offset();
                        let mut r = p.replica.lock().expect("replica lock");
                        let hw = pd.high_watermark.min(leo);
                        if hw != r.hw {
                            r.hw = hw;
                            progressed = true;
                        }
                    }
                    Some(ResponseError::OffsetOutOfRange) => {
                        let mut log = p.log.lock().expect("log lock");
                        if log.log_end_offset() < pd.log_start_offset {
                            tracing::info!(partition = %p.name(), start = pd.log_start_offset, "behind the leader's log start; restarting the replica there");
                            if let Err(e) = log.reset_to(pd.log_start_offset) {
                                tracing::error!(partition = %p.name(), "reset failed: {e}");
                            }
                        } else {
                            p.replica.lock().expect("replica lock").truncated_for = None;
                        }
                    }
                    Some(e) => {
                        tracing::debug!(partition = %p.name(), leader, "replica fetch error {e:?}");
                        refused += 1;
                    }
                }
            }
        }
        if progressed {
            self.topics.notify_append();
        }
        if refused > 0 && !progressed {
            tokio::time::sleep(BACKOFF).await;
        }
        Ok(())
    }
}
