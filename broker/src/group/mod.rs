//! Group coordinator: the runtime shell around [`state::Group`] plus committed offsets.
//!
//! Every group's offsets are written to the compacted internal topic `__consumer_offsets`
//! (partition = abs(Java `String.hashCode(group)`) mod N, as Kafka places them) before the
//! commit is acknowledged, and reloaded from it on start. Keys and values follow Kafka's
//! OffsetCommitKey v1 / OffsetCommitValue v3 layouts; a delete is a tombstone.

pub mod state;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::records::{Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType};
use kafka_protocol::ResponseError;
use samsa_client::wire::batch::{encode_plain, PlainRecord};

pub use state::{Group, JoinRequest, JoinResult, Reply, State, SyncResult};

use crate::topics::{as_coordinator_error, Partition, TopicManager, OFFSETS_TOPIC};
use crate::now_ms;

/// How long an offset commit waits for the in-sync replicas.
const COMMIT_TIMEOUT: Duration = Duration::from_secs(10);

/// A committed offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    /// Next offset to consume.
    pub offset: i64,
    /// Leader epoch of the last consumed record, or -1.
    pub leader_epoch: i32,
    /// Client metadata string.
    pub metadata: String,
    /// When it was committed.
    pub commit_timestamp: i64,
}

/// (topic, partition) key of a committed offset.
pub type TopicPartition = (String, i32);

/// Offsets inside open transactions: group -> producer id -> offsets.
type PendingOffsets = HashMap<String, HashMap<i64, BTreeMap<TopicPartition, CommittedOffset>>>;

/// The group coordinator of this broker (it coordinates every group).
pub struct Coordinator {
    topics: Arc<TopicManager>,
    /// Offsets partitions this broker leads and has loaded: index -> (partition count, replica).
    loaded: Mutex<HashMap<i32, (i32, Arc<Partition>)>>,
    /// `std::sync::Mutex`: never held across an `.await`; waiting requests hold oneshot
    /// receivers instead.
    groups: Mutex<HashMap<String, Group>>,
    offsets: Mutex<HashMap<String, BTreeMap<TopicPartition, CommittedOffset>>>,
    /// Offsets committed inside open transactions (TxnOffsetCommit): group -> producer id ->
    /// offsets; they become committed offsets when the COMMIT marker reaches the group's
    /// offsets partition, and vanish on ABORT.
    pending: Mutex<PendingOffsets>,
    initial_delay: Duration,
    min_session: Duration,
    max_session: Duration,
}

/// Java's `String.hashCode` over UTF-16 code units.
pub fn java_string_hash(s: &str) -> i32 {
    s.encode_utf16().fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(i32::from(c)))
}

/// Partition of `__consumer_offsets` that holds `group`'s offsets.
pub fn offsets_partition(group: &str, partitions: i32) -> i32 {
    let h = java_string_hash(group);
    let abs = if h == i32::MIN { 0 } else { h.abs() };
    abs % partitions
}

fn put_str(b: &mut BytesMut, s: &str) {
    b.put_i16(s.len() as i16);
    b.put_slice(s.as_bytes());
}

fn get_str(b: &mut Bytes) -> Option<String> {
    if b.remaining() < 2 {
        return None;
    }
    let n = b.get_i16();
    if n < 0 || b.remaining() < n as usize {
        return None;
    }
    String::from_utf8(b.split_to(n as usize).to_vec()).ok()
}

fn offset_key(group: &str, topic: &str, partition: i32) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i16(1);
    put_str(&mut b, group);
    put_str(&mut b, topic);
    b.put_i32(partition);
    b.freeze()
}

fn offset_value(o: &CommittedOffset) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i16(3);
    b.put_i64(o.offset);
    b.put_i32(o.leader_epoch);
    put_str(&mut b, &o.metadata);
    b.put_i64(o.commit_timestamp);
    b.freeze()
}

fn decode_key(mut k: Bytes) -> Option<(String, String, i32)> {
    if k.remaining() < 2 || k.get_i16() > 1 {
        return None; // group metadata keys (v2) are not offsets
    }
    let group = get_str(&mut k)?;
    let topic = get_str(&mut k)?;
    (k.remaining() >= 4).then(|| (group, topic, k.get_i32()))
}

fn decode_value(mut v: Bytes) -> Option<CommittedOffset> {
    if v.remaining() < 2 {
        return None;
    }
    let version = v.get_i16();
    if v.remaining() < 8 {
        return None;
    }
    let offset = v.get_i64();
    let leader_epoch = if version >= 3 && v.remaining() >= 4 { v.get_i32() } else { -1 };
    let metadata = get_str(&mut v)?;
    let commit_timestamp = if v.remaining() >= 8 { v.get_i64() } else { -1 };
    Some(CommittedOffset { offset, leader_epoch, metadata, commit_timestamp })
}

impl Coordinator {
    /// A coordinator that serves no group until it leads `__consumer_offsets` partitions.
    pub fn new(topics: Arc<TopicManager>) -> Self {
        let cfg = topics.config();
        Self {
            initial_delay: cfg.ms("group.initial.rebalance.delay.ms"),
            min_session: cfg.ms("group.min.session.timeout.ms"),
            max_session: cfg.ms("group.max.session.timeout.ms"),
            topics,
            groups: Mutex::new(HashMap::new()),
            offsets: Mutex::new(HashMap::new()),
            pending: Mutex::new(HashMap::new()),
            loaded: Mutex::new(HashMap::new()),
        }
    }

    /// Which `__consumer_offsets` partition holds `group`, if this broker coordinates it:
    /// `Err(NOT_COORDINATOR)` when another broker does (the client looks it up again).
    pub fn owner(&self, group: &str) -> std::result::Result<Arc<Partition>, ResponseError> {
        let loaded = self.loaded.lock().expect("loaded lock");
        let count = loaded.values().next().map_or(self.topics.config().int("offsets.topic.num.partitions") as i32, |(n, _)| *n);
        let index = offsets_partition(group, count);
        match loaded.get(&index) {
            Some((_, p)) if p.replica.lock().expect("replica lock").is_leader() => Ok(p.clone()),
            // Leading it but not loaded yet: the client retries here shortly.
            _ if self.topics.partition(OFFSETS_TOPIC, index).is_some_and(|p| p.replica.lock().expect("replica lock").is_leader()) => {
                Err(ResponseError::CoordinatorLoadInProgress)
            }
            _ => Err(ResponseError::NotCoordinator),
        }
    }

    /// Loads the groups of an offsets partition this broker now leads (`count`: how many
    /// partitions `__consumer_offsets` has).
    pub fn load_partition(&self, p: &Arc<Partition>, count: i32) {
        let mut found: HashMap<String, BTreeMap<TopicPartition, CommittedOffset>> = HashMap::new();
        let mut pending: PendingOffsets = HashMap::new();
        let result = (|| -> std::io::Result<usize> {
            let log = p.log.lock().expect("log lock");
            let mut next = log.log_start_offset();
            let mut loaded = 0usize;
            loop {
                let bytes = log.read(next, 1 << 20, true)?;
                if bytes.is_empty() {
                    break;
                }
                let mut buf = Bytes::from(bytes);
                let sets = RecordBatchDecoder::decode_all(&mut buf)
                    .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{OFFSETS_TOPIC}-{}: {e}", p.index)))?;
                for r in sets.into_iter().flat_map(|s| s.records) {
                    if r.offset < next {
                        continue;
                    }
                    next = r.offset + 1;
                    if r.control {
                        // A transaction marker: the producer's pending offsets land or vanish.
                        let commit = r.key.as_ref().is_some_and(|k| k.len() >= 4 && k[3] == 1);
                        for (group, by_producer) in pending.iter_mut() {
                            if let Some(offsets) = by_producer.remove(&r.producer_id) {
                                if commit {
                                    found.entry(group.clone()).or_default().extend(offsets);
                                }
                            }
                        }
                        continue;
                    }
                    let Some((group, t, part)) = r.key.and_then(decode_key) else { continue };
                    match r.value.and_then(decode_value) {
                        Some(v) if r.transactional => {
                            pending.entry(group).or_default().entry(r.producer_id).or_default().insert((t, part), v);
                        }
                        Some(v) => {
                            found.entry(group).or_default().insert((t, part), v);
                            loaded += 1;
                        }
                        None => {
                            if let Some(g) = found.get_mut(&group) {
                                g.remove(&(t, part));
                            }
                        }
                    }
                }
            }
            Ok(loaded)
        })();
        match result {
            Ok(records) => {
                found.retain(|_, m| !m.is_empty());
                pending.retain(|_, m| !m.is_empty());
                tracing::debug!(partition = p.index, groups = found.len(), records, "coordinating the groups of {OFFSETS_TOPIC}-{}", p.index);
                let mut offsets = self.offsets.lock().expect("offsets lock");
                offsets.retain(|g, _| offsets_partition(g, count) != p.index);
                offsets.extend(found);
                let mut all_pending = self.pending.lock().expect("pending lock");
                all_pending.retain(|g, _| offsets_partition(g, count) != p.index);
                all_pending.extend(pending);
                self.loaded.lock().expect("loaded lock").insert(p.index, (count, p.clone()));
            }
            Err(e) => tracing::error!(partition = p.index, "cannot load committed offsets: {e}"),
        }
    }

    /// Stores offsets committed inside a transaction (TxnOffsetCommit): written to the
    /// group's offsets partition as part of the producer's transaction, and pending until
    /// its marker arrives.
    pub async fn txn_commit(&self, group_id: &str, producer_id: i64, producer_epoch: i16, offsets: Vec<(TopicPartition, CommittedOffset)>) -> std::result::Result<(), ResponseError> {
        if offsets.is_empty() {
            return Ok(());
        }
        let partition = self.owner(group_id)?;
        let now = now_ms();
        let records: Vec<Record> = offsets
            .iter()
            .enumerate()
            .map(|(i, ((t, p), o))| Record {
                transactional: true,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: 0,
                producer_id,
                producer_epoch,
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                sequence: i as i32,
                timestamp: now,
                key: Some(offset_key(group_id, t, *p)),
                value: Some(offset_value(o)),
                headers: Default::default(),
            })
            .collect();
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(&mut buf, &records, &RecordEncodeOptions { version: 2, compression: Compression::None }).map_err(|_| ResponseError::UnknownServerError)?;
        let (end, epoch) = {
            let mut pending = self.pending.lock().expect("pending lock");
            let written = self.topics.append_as_leader(&partition, buf.to_vec()).map_err(as_coordinator_error)?;
            pending.entry(group_id.to_string()).or_default().entry(producer_id).or_default().extend(offsets);
            written
        };
        self.topics.wait_replicated(&partition, end, epoch, COMMIT_TIMEOUT, None).await.map_err(as_coordinator_error)
    }

    /// A transaction marker for `producer_id` reached offsets partition `index`: its
    /// pending offsets there become committed (or are dropped on abort).
    pub fn complete_txn(&self, index: i32, producer_id: i64, commit: bool) {
        let Some(count) = self.loaded.lock().expect("loaded lock").get(&index).map(|(c, _)| *c) else { return };
        let mut pending = self.pending.lock().expect("pending lock");
        let mut offsets = self.offsets.lock().expect("offsets lock");
        for (group, by_producer) in pending.iter_mut().filter(|(g, _)| offsets_partition(g, count) == index) {
            if let Some(done) = by_producer.remove(&producer_id) {
                if commit {
                    offsets.entry(group.clone()).or_default().extend(done);
                }
            }
        }
        pending.retain(|_, m| !m.is_empty());
    }

    /// Whether a transaction still holds uncommitted offsets of this group for `tp`
    /// (OffsetFetch with require_stable answers UNSTABLE_OFFSET_COMMIT then).
    pub fn has_pending(&self, group_id: &str, tp: &TopicPartition) -> bool {
        self.pending.lock().expect("pending lock").get(group_id).is_some_and(|m| m.values().any(|o| o.contains_key(tp)))
    }

    /// Forgets the groups of an offsets partition this broker no longer leads; their
    /// members are told NOT_COORDINATOR and find the new coordinator.
    pub fn unload_partition(&self, index: i32) {
        let Some((count, _)) = self.loaded.lock().expect("loaded lock").remove(&index) else { return };
        self.offsets.lock().expect("offsets lock").retain(|g, _| offsets_partition(g, count) != index);
        self.pending.lock().expect("pending lock").retain(|g, _| offsets_partition(g, count) != index);
        let mut groups = self.groups.lock().expect("groups lock");
        let gone: Vec<String> = groups.keys().filter(|g| offsets_partition(g, count) == index).cloned().collect();
        for g in gone {
            if let Some(mut group) = groups.remove(&g) {
                group.kill();
            }
        }
        tracing::debug!(partition = index, "no longer coordinating the groups of {OFFSETS_TOPIC}-{index}");
    }

    /// Appends offset records to the group's offsets partition as its leader; returns the
    /// partition and the offset that must be replicated before the write is durable.
    fn write_offsets(&self, group: &str, records: Vec<(Bytes, Option<Bytes>)>) -> std::result::Result<Option<(Arc<Partition>, i64, i32)>, ResponseError> {
        if records.is_empty() {
            return Ok(None);
        }
        let partition = self.owner(group)?;
        let now = now_ms();
        let plain: Vec<PlainRecord> = records.into_iter().map(|(k, v)| (Some(k), v, now)).collect();
        let bytes = encode_plain(&plain, Compression::None).map_err(|_| ResponseError::UnknownServerError)?;
        let (end, epoch) = self.topics.append_as_leader(&partition, bytes).map_err(as_coordinator_error)?;
        Ok(Some((partition, end, epoch)))
    }

    fn with_group<T>(&self, id: &str, create: bool, f: impl FnOnce(&mut Group) -> T) -> Option<T> {
        let mut groups = self.groups.lock().expect("groups lock");
        if create && !groups.contains_key(id) {
            groups.insert(id.to_string(), Group::new(id, self.initial_delay));
        }
        groups.get_mut(id).map(f)
    }

    /// Handles JoinGroup.
    pub async fn join(&self, group_id: &str, req: JoinRequest) -> JoinResult {
        let err = |e| JoinResult { error: Some(e), generation: -1, protocol_type: None, protocol_name: None, leader: String::new(), member_id: req.member_id.clone(), members: Vec::new() };
        if group_id.is_empty() {
            return err(ResponseError::InvalidGroupId);
        }
        if let Err(e) = self.owner(group_id) {
            return err(e);
        }
        if req.session_timeout < self.min_session || req.session_timeout > self.max_session {
            return err(ResponseError::InvalidSessionTimeout);
        }
        let member = req.member_id.clone();
        let reply = self.with_group(group_id, true, |g| g.join(req, Instant::now())).expect("created");
        match reply {
            Reply::Now(r) => r,
            Reply::Later(rx) => rx.await.unwrap_or_else(|_| JoinResult { error: Some(ResponseError::RebalanceInProgress), generation: -1, protocol_type: None, protocol_name: None, leader: String::new(), member_id: member, members: Vec::new() }),
        }
    }

    /// Handles SyncGroup.
    pub async fn sync(&self, group_id: &str, member_id: &str, instance_id: Option<&str>, generation: i32, assignments: Vec<(String, Bytes)>) -> SyncResult {
        if let Err(e) = self.owner(group_id) {
            return SyncResult { error: Some(e), protocol_type: None, protocol_name: None, assignment: Bytes::new() };
        }
        let reply = self.with_group(group_id, false, |g| g.sync(member_id, instance_id, generation, assignments, Instant::now()));
        match reply {
            None => SyncResult { error: Some(ResponseError::UnknownMemberId), protocol_type: None, protocol_name: None, assignment: Bytes::new() },
            Some(Reply::Now(r)) => r,
            Some(Reply::Later(rx)) => rx.await.unwrap_or(SyncResult { error: Some(ResponseError::RebalanceInProgress), protocol_type: None, protocol_name: None, assignment: Bytes::new() }),
        }
    }

    /// Handles Heartbeat.
    pub fn heartbeat(&self, group_id: &str, member_id: &str, instance_id: Option<&str>, generation: i32) -> Option<ResponseError> {
        if let Err(e) = self.owner(group_id) {
            return Some(e);
        }
        self.with_group(group_id, false, |g| g.heartbeat(member_id, instance_id, generation, Instant::now()))
            .unwrap_or(Some(ResponseError::UnknownMemberId))
    }

    /// Handles one member of LeaveGroup.
    pub fn leave(&self, group_id: &str, member_id: &str, instance_id: Option<&str>) -> Option<ResponseError> {
        if let Err(e) = self.owner(group_id) {
            return Some(e);
        }
        self.with_group(group_id, false, |g| g.leave(member_id, instance_id, Instant::now()))
            .unwrap_or(Some(ResponseError::UnknownMemberId))
    }

    /// Expires sessions and completes due join rounds; called periodically.
    pub fn tick(&self) {
        let now = Instant::now();
        for g in self.groups.lock().expect("groups lock").values_mut() {
            g.tick(now);
        }
    }

    /// Validates membership for an OffsetCommit; `None` means the commit may proceed.
    pub fn check_commit(&self, group_id: &str, generation: i32, member_id: &str, instance_id: Option<&str>) -> Option<ResponseError> {
        if group_id.is_empty() {
            return Some(ResponseError::InvalidGroupId);
        }
        if let Err(e) = self.owner(group_id) {
            return Some(e);
        }
        let groups = self.groups.lock().expect("groups lock");
        let Some(g) = groups.get(group_id) else {
            // Simple consumers (assign + commit) use generation -1 on an unknown group.
            return if generation < 0 { None } else { Some(ResponseError::IllegalGeneration) };
        };
        if generation < 0 && g.state == State::Empty {
            return None;
        }
        if g.state == State::CompletingRebalance {
            return Some(ResponseError::RebalanceInProgress);
        }
        if let Some(instance) = instance_id {
            if g.members.get(member_id).and_then(|m| m.instance_id.as_deref()) != Some(instance) && g.members.values().any(|m| m.instance_id.as_deref() == Some(instance)) {
                return Some(ResponseError::FencedInstanceId);
            }
        }
        if !g.members.contains_key(member_id) {
            return Some(ResponseError::UnknownMemberId);
        }
        if generation != g.generation {
            return Some(ResponseError::IllegalGeneration);
        }
        None
    }

    /// Stores committed offsets: appended to the offsets partition, then acknowledged once
    /// every in-sync replica has them (as Kafka commits with acks=all).
    pub async fn commit(&self, group_id: &str, offsets: Vec<(TopicPartition, CommittedOffset)>) -> std::result::Result<(), ResponseError> {
        let records = offsets.iter().map(|((t, p), o)| (offset_key(group_id, t, *p), Some(offset_value(o)))).collect();
        let written = {
            // The offsets lock orders one group's cache updates with their log appends.
            let mut all = self.offsets.lock().expect("offsets lock");
            let written = self.write_offsets(group_id, records)?;
            let entry = all.entry(group_id.to_string()).or_default();
            for (tp, o) in offsets {
                entry.insert(tp, o);
            }
            written
        };
        if let Some((p, end, epoch)) = written {
            self.topics.wait_replicated(&p, end, epoch, COMMIT_TIMEOUT, None).await.map_err(as_coordinator_error)?;
        }
        Ok(())
    }

    /// Committed offsets of a group: all, or those of the listed partitions.
    pub fn fetch(&self, group_id: &str, wanted: Option<&[TopicPartition]>) -> Vec<(TopicPartition, Option<CommittedOffset>)> {
        let all = self.offsets.lock().expect("offsets lock");
        let committed = all.get(group_id);
        match wanted {
            Some(list) => list.iter().map(|tp| (tp.clone(), committed.and_then(|c| c.get(tp)).cloned())).collect(),
            None => committed.map(|c| c.iter().map(|(tp, o)| (tp.clone(), Some(o.clone()))).collect()).unwrap_or_default(),
        }
    }

    /// Every committed offset of the groups this broker coordinates: (group, partition,
    /// offset), sorted.
    pub fn committed_offsets(&self) -> Vec<(String, TopicPartition, i64)> {
        let all = self.offsets.lock().expect("offsets lock");
        let mut out: Vec<_> = all.iter().flat_map(|(g, c)| c.iter().map(move |(tp, o)| (g.clone(), tp.clone(), o.offset))).collect();
        out.sort();
        out
    }

    /// (group id, member count, state name) of every live group this broker coordinates.
    pub fn member_counts(&self) -> Vec<(String, usize, &'static str)> {
        let groups = self.groups.lock().expect("groups lock");
        let mut out: Vec<_> = groups.values().filter(|g| g.state != State::Dead).map(|g| (g.id.clone(), g.members.len(), g.state.name())).collect();
        out.sort();
        out
    }

    /// (group id, state name, protocol type) of every known group.
    pub fn list(&self) -> Vec<(String, &'static str, String)> {
        let groups = self.groups.lock().expect("groups lock");
        let offsets = self.offsets.lock().expect("offsets lock");
        let mut out: Vec<_> = groups
            .values()
            .filter(|g| g.state != State::Dead)
            .map(|g| (g.id.clone(), g.state.name(), g.protocol_type.clone().unwrap_or_default()))
            .collect();
        for id in offsets.keys() {
            if !groups.contains_key(id) {
                out.push((id.clone(), State::Empty.name(), "consumer".to_string()));
            }
        }
        out.sort();
        out
    }

    /// Runs `f` on a group's state for DescribeGroups; `None` if unknown.
    pub fn describe<T>(&self, group_id: &str, f: impl FnOnce(&Group) -> T) -> Option<T> {
        let groups = self.groups.lock().expect("groups lock");
        if let Some(g) = groups.get(group_id) {
            return Some(f(g));
        }
        let known = self.offsets.lock().expect("offsets lock").contains_key(group_id);
        known.then(|| f(&Group::new(group_id, self.initial_delay)))
    }

    /// Deletes a group that has no members, with its offsets.
    pub fn delete_group(&self, group_id: &str) -> Option<ResponseError> {
        if let Err(e) = self.owner(group_id) {
            return Some(e);
        }
        let mut groups = self.groups.lock().expect("groups lock");
        let has_offsets = self.offsets.lock().expect("offsets lock").contains_key(group_id);
        match groups.get(group_id) {
            Some(g) if !matches!(g.state, State::Empty | State::Dead) => return Some(ResponseError::NonEmptyGroup),
            None if !has_offsets => return Some(ResponseError::GroupIdNotFound),
            _ => {}
        }
        let tps: Vec<TopicPartition> = self.fetch(group_id, None).into_iter().map(|(tp, _)| tp).collect();
        if let Err(e) = self.delete_offsets_unchecked(group_id, &tps) {
            return Some(e);
        }
        if let Some(mut g) = groups.remove(group_id) {
            g.kill();
        }
        None
    }

    /// Deletes committed offsets of partitions whose topics the group does not consume.
    pub fn delete_offsets(&self, group_id: &str, tps: &[TopicPartition]) -> Result<Vec<(TopicPartition, Option<ResponseError>)>, ResponseError> {
        self.owner(group_id)?;
        let subscribed = {
            let groups = self.groups.lock().expect("groups lock");
            match groups.get(group_id) {
                Some(g) if g.protocol_type.is_some() && g.protocol_type.as_deref() != Some("consumer") && g.state != State::Empty => {
                    return Err(ResponseError::NonEmptyGroup)
                }
                Some(g) => g.subscribed_topics(),
                None if !self.offsets.lock().expect("offsets lock").contains_key(group_id) => return Err(ResponseError::GroupIdNotFound),
                None => Default::default(),
            }
        };
        let (blocked, free): (Vec<_>, Vec<_>) = tps.iter().cloned().partition(|(t, _)| subscribed.contains(t));
        self.delete_offsets_unchecked(group_id, &free)?;
        Ok(free
            .into_iter()
            .map(|tp| (tp, None))
            .chain(blocked.into_iter().map(|tp| (tp, Some(ResponseError::GroupSubscribedToTopic))))
            .collect())
    }

    fn delete_offsets_unchecked(&self, group_id: &str, tps: &[TopicPartition]) -> std::result::Result<(), ResponseError> {
        let mut all = self.offsets.lock().expect("offsets lock");
        let records = tps.iter().map(|(t, p)| (offset_key(group_id, t, *p), None)).collect();
        self.write_offsets(group_id, records)?;
        if let Some(g) = all.get_mut(group_id) {
            for tp in tps {
                g.remove(tp);
            }
            if g.is_empty() {
                all.remove(group_id);
            }
        }
        Ok(())
    }
}
