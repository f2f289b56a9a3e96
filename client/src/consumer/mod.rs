//! The consumer: `assign` or `subscribe` (topics or a regex) with classic group
//! membership, prefetching fetcher, positions, seeks, pauses and commits.
//!
//! ```text
//!  group task ── FindCoordinator, JoinGroup/SyncGroup, Heartbeat, auto-commit
//!       │ sets the assignment, calls the RebalanceListener
//!       v
//!  State (assignment, positions, per-partition buffers)  <── poll() takes records
//!       ^
//!       │ fills buffers (one fetch in flight per leader, a buffer refills only when empty)
//!  fetcher task ── Fetch, ListOffsets / OffsetFetch to find starting positions
//! ```
//!
//! The background tasks keep heartbeating while application code is busy between polls;
//! a member that does not poll within `max.poll.interval.ms` leaves the group and rejoins
//! on its next poll, as in the Java client.

pub mod assignor;
pub mod config;
mod fetcher;
mod group;
pub mod offsets;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::Notify;

pub use self::assignor::{Assignor, CustomAssignor, MemberAssignment, MemberSubscription};
pub use self::config::{ConsumerConfig, IsolationLevel, OffsetReset};
use self::offsets::Committer;
use crate::error::{Error, Result};
use crate::net::{CachedCoordinator, Cluster};

/// A topic and partition.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TopicPartition {
    /// Topic name.
    pub topic: String,
    /// Partition index.
    pub partition: i32,
}

impl TopicPartition {
    /// Makes one.
    pub fn new(topic: impl Into<String>, partition: i32) -> Self {
        TopicPartition { topic: topic.into(), partition }
    }
}

impl std::fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

/// A record read from a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerRecord {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Timestamp in ms.
    pub timestamp: i64,
    /// Whether `timestamp` is the broker's append time (else the producer's create time).
    pub log_append_time: bool,
    /// Key.
    pub key: Option<Bytes>,
    /// Value (`None`: a tombstone).
    pub value: Option<Bytes>,
    /// Headers.
    pub headers: Vec<(String, Option<Bytes>)>,
}

/// Called around rebalances, on the consumer's background task: keep it short. The
/// consumer has already committed revoked partitions' positions when auto-commit is on.
pub trait RebalanceListener: Send + Sync {
    /// Partitions newly given to this member.
    fn on_partitions_assigned(&self, _partitions: &[TopicPartition]) {}
    /// Partitions taken away in an orderly rebalance.
    fn on_partitions_revoked(&self, _partitions: &[TopicPartition]) {}
    /// Partitions lost without a chance to commit (the member was fenced). Defaults to
    /// [`RebalanceListener::on_partitions_revoked`], as in the Java client.
    fn on_partitions_lost(&self, partitions: &[TopicPartition]) {
        self.on_partitions_revoked(partitions)
    }
}

/// The group identity to pass to a transactional producer (KIP-447).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMetadata {
    /// Group id.
    pub group_id: String,
    /// Generation.
    pub generation: i32,
    /// Member id.
    pub member_id: String,
    /// Static member id.
    pub instance_id: Option<String>,
}

#[derive(Debug, Default)]
pub(crate) struct PartState {
    /// Offset of the next record `poll` returns; `None` until looked up.
    pub position: Option<i64>,
    /// Where to look when `position` is `None` (seek_to_beginning/end override).
    pub reset: Option<OffsetReset>,
    pub paused: bool,
    /// Being revoked by a rebalance: `poll` hands out no more of its records, so the
    /// position committed on revocation covers everything the application received.
    pub revoking: bool,
    /// No committed offset and `auto.offset.reset=none`: `poll` fails naming this
    /// partition until a seek. A flag rather than a stored error, so that an error found
    /// before a seek is never reported after it.
    pub no_offset: bool,
    pub buffer: VecDeque<ConsumerRecord>,
    /// Bumped by seeks, so a fetch that started before one is discarded.
    pub epoch: u64,
    pub fetching: bool,
    pub high_watermark: i64,
}

#[derive(Debug, Clone)]
pub(crate) enum Subscription {
    None,
    Topics(BTreeSet<String>),
    Pattern(String),
}

pub(crate) struct State {
    pub subscription: Subscription,
    /// True when `assign` (not a group) decides the partitions.
    pub manual: bool,
    pub parts: BTreeMap<TopicPartition, PartState>,
    pub generation: i32,
    pub member_id: String,
    /// The protocol of the current generation.
    pub protocol: Option<group::Protocol>,
    /// The group task must (re)join.
    pub rejoin: bool,
    /// Left for missing max.poll.interval.ms; rejoin on the next poll.
    pub left_for_poll_timeout: bool,
    /// A poll came in while a rebalance was pending: the records it handed out before
    /// are processed, so the member may now revoke and rejoin (as the Java client does
    /// inside poll()).
    pub poll_allows_rejoin: bool,
    pub last_poll: Instant,
    /// An error for the next `poll` to return.
    pub error: Option<Error>,
    /// Round-robin start for fairness across partitions.
    pub next_start: usize,
}

impl State {
    /// A consumer that has neither subscribed nor been assigned anything.
    pub(crate) fn new() -> State {
        State {
            subscription: Subscription::None,
            manual: false,
            parts: BTreeMap::new(),
            generation: -1,
            member_id: String::new(),
            protocol: None,
            rejoin: false,
            left_for_poll_timeout: false,
            poll_allows_rejoin: false,
            last_poll: Instant::now(),
            error: None,
            next_start: 0,
        }
    }
}

pub(crate) struct Inner {
    pub cluster: Arc<Cluster>,
    pub config: ConsumerConfig,
    pub state: Mutex<State>,
    /// Wakes `poll`: records arrived or an error is waiting.
    pub data: Notify,
    /// Wakes the fetcher: a buffer drained, or the assignment/positions changed.
    pub fetch_wake: Notify,
    /// Wakes the group task: subscription changed, poll after a poll timeout, close.
    pub group_wake: Notify,
    pub listener: Mutex<Option<Arc<dyn RebalanceListener>>>,
    pub closed: AtomicBool,
    /// The group coordinator, once found.
    pub coordinator: CachedCoordinator,
}

/// An async Kafka consumer.
pub struct Consumer {
    inner: Arc<Inner>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl Drop for Consumer {
    fn drop(&mut self) {
        for t in self.tasks.lock().unwrap().drain(..) {
            t.abort();
        }
    }
}

impl Consumer {
    /// Connects to the cluster. Fails at once when no bootstrap server answers.
    pub async fn new(config: ConsumerConfig) -> Result<Consumer> {
        if config.heartbeat_interval >= config.session_timeout {
            return Err(Error::Config("`heartbeat.interval.ms` must be lower than `session.timeout.ms`".into()));
        }
        let cluster = Cluster::connect(config.common.clone()).await?;
        let inner = Arc::new(Inner {
            cluster,
            config,
            state: Mutex::new(State::new()),
            data: Notify::new(),
            fetch_wake: Notify::new(),
            group_wake: Notify::new(),
            listener: Mutex::new(None),
            closed: AtomicBool::new(false),
            coordinator: CachedCoordinator::new(0),
        });
        let fetcher = tokio::spawn(fetcher::run(inner.clone()));
        Ok(Consumer { inner, tasks: Mutex::new(vec![fetcher]) })
    }

    /// Connects using Kafka property pairs.
    pub async fn from_properties<K: AsRef<str>, V: AsRef<str>>(props: impl IntoIterator<Item = (K, V)>) -> Result<Consumer> {
        Consumer::new(ConsumerConfig::from_properties(props)?).await
    }

    /// The configuration in use.
    pub fn config(&self) -> &ConsumerConfig {
        &self.inner.config
    }

    /// Sets the listener called when partitions are assigned, revoked or lost.
    pub fn set_rebalance_listener(&self, listener: Arc<dyn RebalanceListener>) {
        *self.inner.listener.lock().unwrap() = Some(listener);
    }

    fn group_id(&self) -> Result<String> {
        self.inner.config.group_id.clone().ok_or_else(|| Error::Config("this needs `group.id`; set it in the consumer config".into()))
    }

    fn start_group(&self) {
        let mut tasks = self.tasks.lock().unwrap();
        if tasks.len() == 1 {
            tasks.push(tokio::spawn(group::run(self.inner.clone())));
        }
    }

    /// Joins the group and consumes these topics; the group decides the partitions.
    pub fn subscribe<S: AsRef<str>>(&self, topics: &[S]) -> Result<()> {
        self.group_id()?;
        let topics: BTreeSet<String> = topics.iter().map(|t| t.as_ref().to_string()).collect();
        if topics.is_empty() {
            return Err(Error::Config("subscribe needs at least one topic; use unsubscribe to stop".into()));
        }
        self.set_subscription(Subscription::Topics(topics))
    }

    /// Joins the group and consumes every topic whose whole name matches `pattern`.
    pub fn subscribe_pattern(&self, pattern: &str) -> Result<()> {
        self.group_id()?;
        regex_lite::Regex::new(&format!("^(?:{pattern})$")).map_err(|e| Error::Config(format!("bad topic pattern `{pattern}`: {e}")))?;
        self.set_subscription(Subscription::Pattern(pattern.to_string()))
    }

    fn set_subscription(&self, sub: Subscription) -> Result<()> {
        {
            let mut st = self.inner.state.lock().unwrap();
            if st.manual {
                return Err(Error::State("this consumer uses assign(); call unassign() before subscribe()".into()));
            }
            st.subscription = sub;
            st.rejoin = true;
            st.last_poll = Instant::now();
        }
        self.start_group();
        self.inner.group_wake.notify_one();
        Ok(())
    }

    /// Consumes exactly these partitions, without group membership (commits still go
    /// to `group.id` when set).
    pub fn assign(&self, partitions: &[TopicPartition]) -> Result<()> {
        let mut st = self.inner.state.lock().unwrap();
        if !matches!(st.subscription, Subscription::None) {
            return Err(Error::State("this consumer is subscribed; call unsubscribe() before assign()".into()));
        }
        st.manual = true;
        let wanted: BTreeSet<&TopicPartition> = partitions.iter().collect();
        st.parts.retain(|tp, _| wanted.contains(tp));
        for tp in partitions {
            st.parts.entry(tp.clone()).or_default();
        }
        drop(st);
        self.inner.fetch_wake.notify_one();
        Ok(())
    }

    /// Drops a manual assignment.
    pub fn unassign(&self) {
        let mut st = self.inner.state.lock().unwrap();
        st.manual = false;
        st.parts.clear();
    }

    /// Leaves the group (revoking all partitions) and stops consuming.
    pub async fn unsubscribe(&self) -> Result<()> {
        let was = {
            let mut st = self.inner.state.lock().unwrap();
            std::mem::replace(&mut st.subscription, Subscription::None)
        };
        if !matches!(was, Subscription::None) {
            group::leave(&self.inner, "the consumer unsubscribed").await;
        }
        Ok(())
    }

    /// The partitions this consumer owns now.
    pub fn assignment(&self) -> Vec<TopicPartition> {
        self.inner.state.lock().unwrap().parts.keys().cloned().collect()
    }

    /// Returns buffered records, waiting up to `timeout` for some. Surfaces background
    /// errors (e.g. no offset with `auto.offset.reset=none`).
    pub async fn poll(&self, timeout: Duration) -> Result<Vec<ConsumerRecord>> {
        self.poll_max(timeout, self.inner.config.max_poll_records, true).await
    }

    /// [`Consumer::poll`] returning at most `max` records (positions advance past exactly
    /// the records returned, so committing afterwards commits only what the caller got).
    pub async fn poll_records(&self, timeout: Duration, max: usize) -> Result<Vec<ConsumerRecord>> {
        self.poll_max(timeout, max.max(1), true).await
    }

    /// Like [`Consumer::poll`], but when a rebalance is pending it returns at once with
    /// nothing and does not let the rebalance start: the caller can commit its work
    /// first, then call `poll` (see [`Consumer::rebalance_pending`]).
    pub async fn poll_before_rebalance(&self, timeout: Duration) -> Result<Vec<ConsumerRecord>> {
        self.poll_max(timeout, self.inner.config.max_poll_records, false).await
    }

    /// Whether the group asked this member to rejoin (the next `poll` starts the
    /// rebalance, revoking partitions).
    pub fn rebalance_pending(&self) -> bool {
        let st = self.inner.state.lock().unwrap();
        st.rejoin && st.generation >= 0
    }

    async fn poll_max(&self, timeout: Duration, max: usize, allow_rejoin: bool) -> Result<Vec<ConsumerRecord>> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let arrived = self.inner.data.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            {
                let mut st = self.inner.state.lock().unwrap();
                st.last_poll = Instant::now();
                if st.left_for_poll_timeout {
                    st.left_for_poll_timeout = false;
                    st.rejoin = true;
                    self.inner.group_wake.notify_one();
                }
                if let Some(e) = st.error.take() {
                    return Err(e);
                }
                if let Some(tp) = st.parts.iter().find(|(_, ps)| ps.no_offset).map(|(tp, _)| tp) {
                    return Err(fetcher::no_offset_error(tp));
                }
                if st.rejoin && st.generation >= 0 {
                    if !allow_rejoin {
                        return Ok(Vec::new());
                    }
                    // A rebalance is pending: hand out nothing until it is done, so no
                    // record is processed by this member after its partitions move.
                    st.poll_allows_rejoin = true;
                    self.inner.group_wake.notify_one();
                } else {
                    let records = take_records(&mut st, max);
                    if !records.is_empty() {
                        drop(st);
                        self.inner.fetch_wake.notify_one();
                        return Ok(records);
                    }
                }
            }
            if self.inner.closed.load(Ordering::Acquire) {
                return Err(Error::State("the consumer is closed".into()));
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                return Ok(Vec::new());
            }
        }
    }

    /// Waits for the next record (for loops that handle one at a time).
    pub async fn recv(&self) -> Result<ConsumerRecord> {
        loop {
            if let Some(r) = self.poll_max(Duration::from_secs(1), 1, true).await?.pop() {
                return Ok(r);
            }
        }
    }

    /// Moves a partition's position (the next `poll` returns `offset`).
    pub fn seek(&self, tp: &TopicPartition, offset: i64) -> Result<()> {
        self.update_part(tp, |ps| {
            ps.position = Some(offset);
            ps.reset = None;
        })
    }

    /// Moves partitions to their first retained offset.
    pub fn seek_to_beginning(&self, tps: &[TopicPartition]) -> Result<()> {
        for tp in tps {
            self.update_part(tp, |ps| {
                ps.position = None;
                ps.reset = Some(OffsetReset::Earliest);
            })?;
        }
        Ok(())
    }

    /// Moves partitions to their log end.
    pub fn seek_to_end(&self, tps: &[TopicPartition]) -> Result<()> {
        for tp in tps {
            self.update_part(tp, |ps| {
                ps.position = None;
                ps.reset = Some(OffsetReset::Latest);
            })?;
        }
        Ok(())
    }

    fn update_part(&self, tp: &TopicPartition, f: impl FnOnce(&mut PartState)) -> Result<()> {
        let mut st = self.inner.state.lock().unwrap();
        let ps = st.parts.get_mut(tp).ok_or_else(|| Error::State(format!("{tp} is not assigned to this consumer")))?;
        f(ps);
        ps.no_offset = false;
        ps.buffer.clear();
        ps.epoch += 1;
        drop(st);
        self.inner.fetch_wake.notify_one();
        Ok(())
    }

    /// Stops fetching these partitions until resumed (the group still owns them).
    pub fn pause(&self, tps: &[TopicPartition]) -> Result<()> {
        let mut st = self.inner.state.lock().unwrap();
        for tp in tps {
            st.parts.get_mut(tp).ok_or_else(|| Error::State(format!("{tp} is not assigned to this consumer")))?.paused = true;
        }
        Ok(())
    }

    /// Resumes paused partitions.
    pub fn resume(&self, tps: &[TopicPartition]) -> Result<()> {
        let mut st = self.inner.state.lock().unwrap();
        for tp in tps {
            st.parts.get_mut(tp).ok_or_else(|| Error::State(format!("{tp} is not assigned to this consumer")))?.paused = false;
        }
        drop(st);
        self.inner.fetch_wake.notify_one();
        Ok(())
    }

    /// The paused partitions.
    pub fn paused(&self) -> Vec<TopicPartition> {
        self.inner.state.lock().unwrap().parts.iter().filter(|(_, ps)| ps.paused).map(|(tp, _)| tp.clone()).collect()
    }

    /// The offset of the next record `poll` returns for `tp`, looking it up (committed
    /// offset, else `auto.offset.reset`) when not known yet.
    pub async fn position(&self, tp: &TopicPartition) -> Result<i64> {
        let deadline = Instant::now() + self.inner.config.common.request_timeout;
        loop {
            {
                let st = self.inner.state.lock().unwrap();
                let ps = st.parts.get(tp).ok_or_else(|| Error::State(format!("{tp} is not assigned to this consumer")))?;
                if let Some(p) = ps.position {
                    return Ok(p);
                }
                if ps.no_offset {
                    return Err(fetcher::no_offset_error(tp));
                }
            }
            fetcher::resolve_positions(&self.inner).await?;
            if Instant::now() >= deadline {
                return Err(Error::Timeout { what: format!("finding the position of {tp}"), after: self.inner.config.common.request_timeout });
            }
            // Not found yet (e.g. no leader): pause before asking again.
            if self.inner.state.lock().unwrap().parts.get(tp).is_some_and(|ps| ps.position.is_none()) {
                tokio::time::sleep(self.inner.config.common.retry_backoff).await;
            }
        }
    }

    /// The group's committed offsets for these partitions.
    pub async fn committed(&self, tps: &[TopicPartition]) -> Result<BTreeMap<TopicPartition, Option<i64>>> {
        let group = self.group_id()?;
        group::fetch_committed(&self.inner, &group, tps).await
    }

    /// Commits the positions of every owned partition and waits for the answer.
    pub async fn commit(&self) -> Result<()> {
        let offsets = self.positions();
        self.commit_offsets(&offsets).await
    }

    /// Commits these offsets (the next offset to read, as Kafka expects).
    pub async fn commit_offsets(&self, offsets: &BTreeMap<TopicPartition, i64>) -> Result<()> {
        group::commit(&self.inner, offsets).await
    }

    /// Commits the current positions in the background; the handle gives the outcome.
    pub fn commit_async(&self) -> tokio::task::JoinHandle<Result<()>> {
        let offsets = self.positions();
        let inner = self.inner.clone();
        tokio::spawn(async move { group::commit(&inner, &offsets).await })
    }

    /// Positions of owned partitions that have one.
    pub fn positions(&self) -> BTreeMap<TopicPartition, i64> {
        positions(&self.inner.state.lock().unwrap())
    }

    /// This member's group identity, for `send_offsets_to_transaction`.
    pub fn group_metadata(&self) -> Option<GroupMetadata> {
        let st = self.inner.state.lock().unwrap();
        self.inner.config.group_id.clone().map(|group_id| GroupMetadata {
            group_id,
            generation: st.generation,
            member_id: st.member_id.clone(),
            instance_id: self.inner.config.group_instance_id.clone(),
        })
    }

    /// Commits (with auto-commit on), leaves the group and stops the background tasks.
    pub async fn close(&self) -> Result<()> {
        // Background tasks stop first, so no heartbeat races the LeaveGroup.
        self.inner.closed.store(true, Ordering::Release);
        for t in self.tasks.lock().unwrap().drain(..) {
            t.abort();
        }
        let result = if self.inner.config.enable_auto_commit && self.inner.config.group_id.is_some() {
            let offsets = self.positions();
            group::commit(&self.inner, &offsets).await
        } else {
            Ok(())
        };
        let subscribed = !matches!(self.inner.state.lock().unwrap().subscription, Subscription::None);
        if subscribed {
            group::leave(&self.inner, "the consumer is closing").await;
        }
        self.inner.data.notify_waiters();
        result
    }

    /// The cluster view this consumer uses.
    pub fn cluster(&self) -> &Arc<Cluster> {
        &self.inner.cluster
    }
}

pub(crate) fn positions(st: &State) -> BTreeMap<TopicPartition, i64> {
    st.parts.iter().filter_map(|(tp, ps)| ps.position.map(|p| (tp.clone(), p))).collect()
}

pub(crate) fn committer(st: &State, config: &ConsumerConfig) -> Committer {
    Committer { generation: st.generation, member_id: st.member_id.clone(), instance_id: config.group_instance_id.clone() }
}

/// Takes up to `max` buffered records, round-robin over partitions, advancing positions.
fn take_records(st: &mut State, max: usize) -> Vec<ConsumerRecord> {
    let mut out = Vec::new();
    let n = st.parts.len();
    if n == 0 {
        return out;
    }
    let start = st.next_start % n;
    st.next_start = st.next_start.wrapping_add(1);
    let keys: Vec<TopicPartition> = st.parts.keys().cloned().collect();
    for i in 0..n {
        if out.len() >= max {
            break;
        }
        let ps = st.parts.get_mut(&keys[(start + i) % n]).expect("key from the map");
        if ps.paused || ps.revoking {
            continue;
        }
        while out.len() < max {
            let Some(r) = ps.buffer.pop_front() else { break };
            ps.position = Some(r.offset + 1);
            out.push(r);
        }
    }
    out
}
