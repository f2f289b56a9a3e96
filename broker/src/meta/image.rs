//! The cluster metadata image and the pure state machine that advances it.
//!
//! [`Image::apply`] is deterministic: no I/O, clocks or randomness, and only ordered maps,
//! so every node that applies the same committed [`Command`]s reaches the same [`Image`].
//! A rejected command leaves the image untouched. Semantics follow Kafka's KRaft
//! controller: leaders are only ever elected from the ISR (no unclean election), a
//! partition whose whole ISR is fenced keeps its last ISR member and has leader -1, any
//! leader change bumps `leader_epoch` and `partition_epoch`, an ISR-only change bumps
//! `partition_epoch`.

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::ResponseError;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Most partitions a topic may have.
pub const MAX_PARTITIONS: i32 = 100_000;
/// Largest block of producer ids one [`Command::AllocateProducerIds`] may take.
pub const MAX_PRODUCER_ID_BLOCK: i64 = 1_000_000;

/// A registered broker.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct BrokerInfo {
    /// Broker id (node id).
    pub id: i32,
    /// Advertised host.
    pub host: String,
    /// Advertised port.
    pub port: i32,
    /// Whether the broker is fenced (not alive); fenced brokers lead nothing.
    pub fenced: bool,
    /// Every client listener (the first is `host`/`port`), so Metadata can answer with the
    /// addresses of the listener a client came in on.
    #[serde(default)]
    pub endpoints: Vec<Endpoint>,
}

/// One client listener of a broker.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// Listener name (`PLAINTEXT`, `SASL_SSL`, ...).
    pub listener: String,
    /// Advertised host.
    pub host: String,
    /// Advertised port.
    pub port: i32,
}

impl BrokerInfo {
    /// The (host, port) of listener `name`, else of the first listener.
    pub fn address_for(&self, name: &str) -> (&str, i32) {
        self.endpoints.iter().find(|e| e.listener == name).map_or((self.host.as_str(), self.port), |e| (e.host.as_str(), e.port))
    }
}

/// Replication state of one partition.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct PartitionInfo {
    /// Assigned replicas, preferred leader first.
    pub replicas: Vec<i32>,
    /// In-sync replicas.
    pub isr: Vec<i32>,
    /// Current leader, or -1 when the partition is offline.
    pub leader: i32,
    /// Bumped on every leader change.
    pub leader_epoch: i32,
    /// Bumped on every leader or ISR change.
    pub partition_epoch: i32,
}

/// A topic and its partitions.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct TopicInfo {
    /// Topic name.
    pub name: String,
    /// Topic id.
    pub id: Uuid,
    /// Topic-level config overrides.
    pub configs: BTreeMap<String, String>,
    /// Partitions, indexed by partition number.
    pub partitions: Vec<PartitionInfo>,
}

/// The whole replicated cluster metadata.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct Image {
    /// Registered brokers by id.
    pub brokers: BTreeMap<i32, BrokerInfo>,
    /// Topics by name.
    pub topics: BTreeMap<String, TopicInfo>,
    /// First producer id of the next allocated block.
    pub next_producer_id: i64,
    /// Rotation of the round-robin replica assignment, advanced per created topic.
    pub next_assignment_start: u32,
    /// Raft index of the last applied command (set by the Raft layer, not by `apply`).
    pub applied_index: u64,
    /// ACL bindings.
    #[serde(default)]
    pub acls: BTreeSet<crate::security::acl::AclBinding>,
    /// SCRAM credentials by user and mechanism (salted keys; never passwords).
    #[serde(default)]
    pub scram: BTreeMap<String, BTreeMap<crate::security::scram::Mechanism, crate::security::scram::Credential>>,
}

/// A metadata change, replicated through Raft and applied on every node.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub enum Command {
    /// Registers (or re-registers) a broker and unfences it.
    RegisterBroker {
        /// Broker id.
        id: i32,
        /// Advertised host.
        host: String,
        /// Advertised port.
        port: i32,
        /// Every client listener.
        #[serde(default)]
        endpoints: Vec<Endpoint>,
    },
    /// Fences a broker: drops it from ISRs and moves its leaderships.
    FenceBroker {
        /// Broker id.
        id: i32,
    },
    /// Creates a topic.
    CreateTopic {
        /// Topic name.
        name: String,
        /// Topic id chosen by the proposer (not nil, unused).
        id: Uuid,
        /// Partition count (ignored when `assignments` is non-empty).
        partitions: i32,
        /// Replication factor (ignored when `assignments` is non-empty).
        replication_factor: i16,
        /// Explicit replica lists, one per partition; empty for round robin.
        assignments: Vec<Vec<i32>>,
        /// Topic-level config overrides.
        configs: BTreeMap<String, String>,
    },
    /// Deletes a topic.
    DeleteTopic {
        /// Topic name.
        name: String,
    },
    /// Grows a topic to `total` partitions.
    CreatePartitions {
        /// Topic name.
        name: String,
        /// New total partition count.
        total: i32,
        /// Replica lists for the new partitions only; empty for round robin.
        assignments: Vec<Vec<i32>>,
    },
    /// Replaces a topic's config overrides.
    SetTopicConfigs {
        /// Topic name.
        name: String,
        /// The new override map.
        configs: BTreeMap<String, String>,
    },
    /// A partition leader's request to change the ISR.
    AlterPartition {
        /// Topic name.
        topic: String,
        /// Partition number.
        partition: i32,
        /// Sending broker (must be the leader).
        broker: i32,
        /// Leader epoch the sender knows.
        leader_epoch: i32,
        /// Partition epoch the sender knows.
        partition_epoch: i32,
        /// Proposed ISR.
        isr: Vec<i32>,
    },
    /// Moves leadership back to the preferred replica.
    ElectPreferred {
        /// Topic name.
        topic: String,
        /// Partition number.
        partition: i32,
    },
    /// Takes a block of `count` producer ids.
    AllocateProducerIds {
        /// Block size, 1..=[`MAX_PRODUCER_ID_BLOCK`].
        count: i64,
    },
    /// Sets a user's SCRAM credential for one mechanism.
    UpsertScram {
        /// User name.
        user: String,
        /// SCRAM-SHA-256 or -512.
        mechanism: crate::security::scram::Mechanism,
        /// Salt, iterations and keys.
        credential: crate::security::scram::Credential,
    },
    /// Adds ACL bindings (already there: no change).
    CreateAcls {
        /// The bindings.
        acls: Vec<crate::security::acl::AclBinding>,
    },
    /// Removes ACL bindings (absent ones are ignored).
    DeleteAcls {
        /// The bindings.
        acls: Vec<crate::security::acl::AclBinding>,
    },
    /// Removes a user's SCRAM credential for one mechanism.
    DeleteScram {
        /// User name.
        user: String,
        /// SCRAM-SHA-256 or -512.
        mechanism: crate::security::scram::Mechanism,
    },
}

/// The result of applying a [`Command`].
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub enum Outcome {
    /// Applied, nothing to report.
    Done,
    /// The topic was created with this id.
    TopicCreated {
        /// The new topic's id.
        id: Uuid,
    },
    /// A producer id block `first..first + count` was allocated.
    ProducerIds {
        /// First id of the block.
        first: i64,
    },
    /// The partition's state after an `AlterPartition`.
    Partition(PartitionInfo),
    /// Rejected; the image is unchanged.
    Rejected {
        /// Kafka error code.
        code: i16,
        /// Human-readable reason.
        message: String,
    },
}

type Rejection = (ResponseError, String);
type Res<T> = Result<T, Rejection>;

/// `return Err((ResponseError::$error, format!(...)))`.
macro_rules! bail {
    ($error:ident, $($fmt:tt)+) => {
        return Err((ResponseError::$error, format!($($fmt)+)))
    };
}

fn unknown_topic<T>(name: &str) -> Res<T> {
    bail!(UnknownTopicOrPartition, "unknown topic '{name}'")
}

fn live(brokers: &BTreeMap<i32, BrokerInfo>, id: i32) -> bool {
    brokers.get(&id).is_some_and(|b| !b.fenced)
}

fn partition_mut<'a>(topics: &'a mut BTreeMap<String, TopicInfo>, topic: &str, partition: i32) -> Res<&'a mut PartitionInfo> {
    let index = usize::try_from(partition).ok();
    match index.and_then(|i| topics.get_mut(topic)?.partitions.get_mut(i)) {
        Some(p) => Ok(p),
        None => bail!(UnknownTopicOrPartition, "unknown topic partition {topic}-{partition}"),
    }
}

/// Kafka's topic name rules: 1..=249 characters of `[a-zA-Z0-9._-]`, not `.` or `..`.
fn validate_topic_name(name: &str) -> Res<()> {
    let legal = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if name.is_empty() || name == "." || name == ".." || name.len() > 249 || !name.chars().all(legal) {
        bail!(InvalidTopicException, "invalid topic name '{name}'");
    }
    Ok(())
}

impl Image {
    /// Applies one command; a rejected command leaves the image unchanged.
    pub fn apply(&mut self, cmd: &Command) -> Outcome {
        let result = match cmd {
            Command::RegisterBroker { id, host, port, endpoints } => self.register_broker(*id, host, *port, endpoints),
            Command::UpsertScram { user, mechanism, credential } => self.upsert_scram(user, *mechanism, credential),
            Command::DeleteScram { user, mechanism } => self.delete_scram(user, *mechanism),
            Command::CreateAcls { acls } => {
                self.acls.extend(acls.iter().cloned());
                Ok(Outcome::Done)
            }
            Command::DeleteAcls { acls } => {
                for a in acls {
                    self.acls.remove(a);
                }
                Ok(Outcome::Done)
            }
            Command::FenceBroker { id } => self.fence_broker(*id),
            Command::CreateTopic { name, id, partitions, replication_factor, assignments, configs } => {
                self.create_topic(name, *id, *partitions, *replication_factor, assignments, configs)
            }
            Command::DeleteTopic { name } => match self.topics.remove(name) {
                Some(_) => Ok(Outcome::Done),
                None => unknown_topic(name),
            },
            Command::CreatePartitions { name, total, assignments } => {
                self.create_partitions(name, *total, assignments)
            }
            Command::SetTopicConfigs { name, configs } => match self.topics.get_mut(name) {
                Some(t) => {
                    t.configs = configs.clone();
                    Ok(Outcome::Done)
                }
                None => unknown_topic(name),
            },
            Command::AlterPartition { topic, partition, broker, leader_epoch, partition_epoch, isr } => {
                self.alter_partition(topic, *partition, *broker, *leader_epoch, *partition_epoch, isr)
            }
            Command::ElectPreferred { topic, partition } => self.elect_preferred(topic, *partition),
            Command::AllocateProducerIds { count } => self.allocate_producer_ids(*count),
        };
        result.unwrap_or_else(|(error, message)| Outcome::Rejected { code: error.code(), message })
    }

    /// The topic named `name`.
    pub fn topic(&self, name: &str) -> Option<&TopicInfo> {
        self.topics.get(name)
    }

    /// The topic whose id is `id`.
    pub fn topic_by_id(&self, id: Uuid) -> Option<&TopicInfo> {
        self.topics.values().find(|t| t.id == id)
    }

    /// Partition `p` of `topic`.
    pub fn partition(&self, topic: &str, p: i32) -> Option<&PartitionInfo> {
        self.topics.get(topic)?.partitions.get(usize::try_from(p).ok()?)
    }

    /// Unfenced brokers, by id.
    pub fn live_brokers(&self) -> Vec<&BrokerInfo> {
        self.brokers.values().filter(|b| !b.fenced).collect()
    }

    /// Whether broker `id` is registered and unfenced.
    pub fn is_live(&self, id: i32) -> bool {
        live(&self.brokers, id)
    }

    /// Partitions whose preferred replica is unfenced, in the ISR and not the leader.
    pub fn preferred_elections(&self) -> Vec<(String, i32)> {
        let mut out = Vec::new();
        for t in self.topics.values() {
            for (i, p) in t.partitions.iter().enumerate() {
                let preferred = p.replicas[0];
                if p.leader != preferred && p.isr.contains(&preferred) && self.is_live(preferred) {
                    out.push((t.name.clone(), i as i32));
                }
            }
        }
        out
    }

    /// How many partitions broker `id` leads.
    pub fn partitions_led_by(&self, id: i32) -> usize {
        self.topics.values().flat_map(|t| &t.partitions).filter(|p| p.leader == id).count()
    }

    fn upsert_scram(&mut self, user: &str, mechanism: crate::security::scram::Mechanism, credential: &crate::security::scram::Credential) -> Res<Outcome> {
        if user.is_empty() {
            bail!(InvalidRequest, "a SCRAM user name cannot be empty");
        }
        self.scram.entry(user.to_string()).or_default().insert(mechanism, credential.clone());
        Ok(Outcome::Done)
    }

    fn delete_scram(&mut self, user: &str, mechanism: crate::security::scram::Mechanism) -> Res<Outcome> {
        let Some(mechs) = self.scram.get_mut(user) else { bail!(ResourceNotFound, "user {user} has no SCRAM credentials") };
        if mechs.remove(&mechanism).is_none() {
            bail!(ResourceNotFound, "user {user} has no {} credential", mechanism.name());
        }
        if mechs.is_empty() {
            self.scram.remove(user);
        }
        Ok(Outcome::Done)
    }

    fn register_broker(&mut self, id: i32, host: &str, port: i32, endpoints: &[Endpoint]) -> Res<Outcome> {
        if id < 0 {
            bail!(InvalidRequest, "invalid broker id {id}");
        }
        self.brokers.insert(id, BrokerInfo { id, host: host.to_owned(), port, fenced: false, endpoints: endpoints.to_vec() });
        for p in self.topics.values_mut().flat_map(|t| &mut t.partitions) {
            if p.leader == -1 && p.isr.contains(&id) {
                p.leader = id;
                p.leader_epoch += 1;
                p.partition_epoch += 1;
            }
        }
        Ok(Outcome::Done)
    }

    fn fence_broker(&mut self, id: i32) -> Res<Outcome> {
        match self.brokers.get_mut(&id) {
            None => bail!(BrokerNotAvailable, "broker {id} is not registered"),
            Some(b) if b.fenced => return Ok(Outcome::Done),
            Some(b) => b.fenced = true,
        }
        let brokers = &self.brokers;
        for p in self.topics.values_mut().flat_map(|t| &mut t.partitions) {
            let mut changed = false;
            if p.isr.len() > 1 && p.isr.contains(&id) {
                p.isr.retain(|&r| r != id);
                changed = true;
            }
            if p.leader == id {
                let isr = &p.isr;
                p.leader =
                    p.replicas.iter().copied().find(|&r| isr.contains(&r) && live(brokers, r)).unwrap_or(-1);
                p.leader_epoch += 1;
                changed = true;
            }
            if changed {
                p.partition_epoch += 1;
            }
        }
        Ok(Outcome::Done)
    }

    /// Round-robin replica lists for partitions `first..first + count` over the live brokers.
    fn round_robin(&self, first: usize, count: usize, rf: usize) -> Res<Vec<Vec<i32>>> {
        let ids: Vec<i32> = self.live_brokers().iter().map(|b| b.id).collect();
        if rf > ids.len() {
            let n = ids.len();
            bail!(InvalidReplicationFactor, "replication factor {rf} is larger than the number of available brokers ({n})");
        }
        let s = self.next_assignment_start as usize;
        Ok((first..first + count).map(|p| (0..rf).map(|k| ids[(s + p + k) % ids.len()]).collect()).collect())
    }

    /// Validates explicit replica lists (numbered from `first` in messages), all of length
    /// `rf` if given, else all as long as the first.
    fn check_assignments(&self, assignments: &[Vec<i32>], first: usize, rf: Option<usize>) -> Res<()> {
        let want = rf.unwrap_or(assignments[0].len());
        for (i, a) in assignments.iter().enumerate() {
            let p = first + i;
            if a.is_empty() {
                bail!(InvalidReplicaAssignment, "partition {p} has an empty replica assignment");
            }
            if a.len() != want {
                bail!(InvalidReplicaAssignment, "partition {p} has {} replicas, expected {want}", a.len());
            }
            if a.iter().collect::<BTreeSet<_>>().len() != a.len() {
                bail!(InvalidReplicaAssignment, "partition {p} has duplicate replicas {a:?}");
            }
            if let Some(b) = a.iter().find(|b| !self.brokers.contains_key(b)) {
                bail!(InvalidReplicaAssignment, "partition {p} is assigned to unregistered broker {b}");
            }
        }
        Ok(())
    }

    /// A new partition on `replicas`: the ISR is the live replicas, led by the first.
    fn new_partition(&self, p: usize, replicas: Vec<i32>) -> Res<PartitionInfo> {
        let isr: Vec<i32> = replicas.iter().copied().filter(|&r| self.is_live(r)).collect();
        let Some(&leader) = isr.first() else {
            bail!(InvalidReplicationFactor, "all brokers assigned to partition {p} are fenced");
        };
        Ok(PartitionInfo { replicas, isr, leader, leader_epoch: 0, partition_epoch: 0 })
    }

    /// Builds partitions `first..` from replica lists (all-or-nothing).
    fn new_partitions(&self, first: usize, lists: Vec<Vec<i32>>) -> Res<Vec<PartitionInfo>> {
        lists.into_iter().enumerate().map(|(i, r)| self.new_partition(first + i, r)).collect()
    }

    fn create_topic(
        &mut self,
        name: &str,
        id: Uuid,
        partitions: i32,
        rf: i16,
        assignments: &[Vec<i32>],
        configs: &BTreeMap<String, String>,
    ) -> Res<Outcome> {
        validate_topic_name(name)?;
        if self.topics.contains_key(name) {
            bail!(TopicAlreadyExists, "topic '{name}' already exists");
        }
        let norm = |s: &str| s.replace('.', "_");
        if let Some(other) = self.topics.keys().find(|t| norm(t) == norm(name)) {
            bail!(InvalidTopicException, "topic '{name}' collides with existing topic '{other}' ('.' and '_' collide)");
        }
        if id.is_nil() || self.topic_by_id(id).is_some() {
            bail!(InvalidRequest, "topic id {id} is nil or already in use");
        }
        let lists = if assignments.is_empty() {
            if !(1..=MAX_PARTITIONS).contains(&partitions) {
                bail!(InvalidPartitions, "number of partitions {partitions} must be between 1 and {MAX_PARTITIONS}");
            }
            if rf < 1 {
                bail!(InvalidReplicationFactor, "replication factor {rf} is below 1");
            }
            self.round_robin(0, partitions as usize, rf as usize)?
        } else {
            if assignments.len() > MAX_PARTITIONS as usize {
                bail!(InvalidPartitions, "more than {MAX_PARTITIONS} partitions");
            }
            self.check_assignments(assignments, 0, None)?;
            assignments.to_vec()
        };
        let partitions = self.new_partitions(0, lists)?;
        if assignments.is_empty() {
            self.next_assignment_start = self.next_assignment_start.wrapping_add(1);
        }
        let topic = TopicInfo { name: name.to_owned(), id, configs: configs.clone(), partitions };
        self.topics.insert(name.to_owned(), topic);
        Ok(Outcome::TopicCreated { id })
    }

    fn create_partitions(&mut self, name: &str, total: i32, assignments: &[Vec<i32>]) -> Res<Outcome> {
        let Some(topic) = self.topics.get(name) else {
            return unknown_topic(name);
        };
        let current = topic.partitions.len();
        if total <= current as i32 {
            bail!(InvalidPartitions, "topic '{name}' has {current} partitions; the new total {total} must be larger");
        }
        if total > MAX_PARTITIONS {
            bail!(InvalidPartitions, "partition count {total} exceeds the maximum {MAX_PARTITIONS}");
        }
        let rf = topic.partitions.first().map_or(0, |p| p.replicas.len());
        let count = total as usize - current;
        let lists = if assignments.is_empty() {
            self.round_robin(current, count, rf)?
        } else {
            if assignments.len() != count {
                bail!(InvalidReplicaAssignment, "{} assignments given for {count} new partitions", assignments.len());
            }
            self.check_assignments(assignments, current, Some(rf))?;
            assignments.to_vec()
        };
        let new = self.new_partitions(current, lists)?;
        if assignments.is_empty() {
            self.next_assignment_start = self.next_assignment_start.wrapping_add(1);
        }
        if let Some(t) = self.topics.get_mut(name) {
            t.partitions.extend(new);
        }
        Ok(Outcome::Done)
    }

    fn alter_partition(
        &mut self,
        topic: &str,
        partition: i32,
        broker: i32,
        leader_epoch: i32,
        partition_epoch: i32,
        isr: &[i32],
    ) -> Res<Outcome> {
        let brokers = &self.brokers;
        let p = partition_mut(&mut self.topics, topic, partition)?;
        let tp = format!("{topic}-{partition}");
        if p.leader < 0 || broker != p.leader {
            bail!(NotLeaderOrFollower, "broker {broker} is not the leader of {tp} (leader {})", p.leader);
        }
        if leader_epoch != p.leader_epoch {
            bail!(FencedLeaderEpoch, "leader epoch {leader_epoch} of {tp} is not the current {}", p.leader_epoch);
        }
        if partition_epoch != p.partition_epoch {
            bail!(InvalidUpdateVersion, "partition epoch {partition_epoch} of {tp} is not the current {}", p.partition_epoch);
        }
        let unique: BTreeSet<i32> = isr.iter().copied().collect();
        if isr.is_empty()
            || unique.len() != isr.len()
            || !isr.iter().all(|r| p.replicas.contains(r))
            || !isr.contains(&p.leader)
        {
            bail!(InvalidRequest, "ISR {isr:?} for {tp} must be distinct replicas of {:?} including the leader", p.replicas);
        }
        if let Some(r) = isr.iter().find(|&&r| !p.isr.contains(&r) && !live(brokers, r)) {
            bail!(IneligibleReplica, "replica {r} of {tp} is fenced");
        }
        if unique != p.isr.iter().copied().collect() {
            p.isr = isr.to_vec();
            p.partition_epoch += 1;
        }
        Ok(Outcome::Partition(p.clone()))
    }

    fn elect_preferred(&mut self, topic: &str, partition: i32) -> Res<Outcome> {
        let brokers = &self.brokers;
        let p = partition_mut(&mut self.topics, topic, partition)?;
        let preferred = p.replicas[0];
        if p.leader == preferred {
            bail!(ElectionNotNeeded, "preferred replica {preferred} already leads {topic}-{partition}");
        }
        if !live(brokers, preferred) || !p.isr.contains(&preferred) {
            bail!(PreferredLeaderNotAvailable, "preferred replica {preferred} of {topic}-{partition} is fenced or not in the ISR");
        }
        p.leader = preferred;
        p.leader_epoch += 1;
        p.partition_epoch += 1;
        Ok(Outcome::Done)
    }

    fn allocate_producer_ids(&mut self, count: i64) -> Res<Outcome> {
        if !(1..=MAX_PRODUCER_ID_BLOCK).contains(&count) {
            bail!(InvalidRequest, "producer id block size {count} must be between 1 and {MAX_PRODUCER_ID_BLOCK}");
        }
        let first = self.next_producer_id;
        let Some(next) = first.checked_add(count) else {
            bail!(InvalidRequest, "producer id space exhausted");
        };
        self.next_producer_id = next;
        Ok(Outcome::ProducerIds { first })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn register(img: &mut Image, id: i32) -> Outcome {
        img.apply(&Command::RegisterBroker { id, host: format!("h{id}"), port: 9092, endpoints: Vec::new() })
    }

    fn cluster(n: i32) -> Image {
        let mut img = Image::default();
        (1..=n).for_each(|id| assert_eq!(register(&mut img, id), Outcome::Done));
        img
    }

    fn create_cmd(name: &str, partitions: i32, rf: i16) -> Command {
        let id = Uuid::from_u128(name.bytes().fold(1, |h, b| h * 31 + b as u128));
        Command::CreateTopic {
            name: name.into(),
            id,
            partitions,
            replication_factor: rf,
            assignments: vec![],
            configs: BTreeMap::new(),
        }
    }

    fn create(img: &mut Image, name: &str, partitions: i32, rf: i16) -> Outcome {
        img.apply(&create_cmd(name, partitions, rf))
    }

    fn fence(img: &mut Image, id: i32) -> Outcome {
        img.apply(&Command::FenceBroker { id })
    }

    fn alter(img: &mut Image, broker: i32, le: i32, pe: i32, isr: &[i32]) -> Outcome {
        let (topic, partition, isr) = ("t".into(), 0, isr.to_vec());
        img.apply(&Command::AlterPartition { topic, partition, broker, leader_epoch: le, partition_epoch: pe, isr })
    }

    fn elect(img: &mut Image) -> Outcome {
        img.apply(&Command::ElectPreferred { topic: "t".into(), partition: 0 })
    }

    fn code(outcome: &Outcome) -> Option<ResponseError> {
        match outcome {
            Outcome::Rejected { code, .. } => ResponseError::try_from_code(*code),
            _ => None,
        }
    }

    fn p0(img: &Image) -> PartitionInfo {
        img.partition("t", 0).unwrap().clone()
    }

    #[test]
    fn creation_spreads_leaders_round_robin() {
        let mut img = cluster(3);
        assert!(matches!(create(&mut img, "t", 6, 3), Outcome::TopicCreated { .. }));
        for b in 1..=3 {
            assert_eq!(img.partitions_led_by(b), 2);
        }
        for p in &img.topic("t").unwrap().partitions {
            assert_eq!(p.replicas.iter().collect::<BTreeSet<_>>().len(), 3);
            assert_eq!((&p.isr, p.leader, p.leader_epoch, p.partition_epoch), (&p.replicas, p.replicas[0], 0, 0));
        }
        // The next topic's rotation starts one broker further on.
        create(&mut img, "u", 1, 1);
        assert_eq!(img.partition("t", 0).unwrap().leader, 1);
        assert_eq!(img.partition("u", 0).unwrap().leader, 2);
        let id = img.topic("u").unwrap().id;
        assert_eq!(img.topic_by_id(id).unwrap().name, "u");
    }

    #[test]
    fn create_topic_validation() {
        let mut img = cluster(2);
        let out = create(&mut img, "t", 1, 3);
        assert_eq!(code(&out), Some(ResponseError::InvalidReplicationFactor));
        assert!(matches!(&out, Outcome::Rejected { message, .. } if message.contains("available brokers (2)")));
        fence(&mut img, 2);
        assert_eq!(code(&create(&mut img, "t", 1, 2)), Some(ResponseError::InvalidReplicationFactor));
        assert_eq!(code(&create(&mut img, "t", 1, 0)), Some(ResponseError::InvalidReplicationFactor));
        assert_eq!(code(&create(&mut img, "t", 0, 1)), Some(ResponseError::InvalidPartitions));
        assert_eq!(code(&create(&mut img, "a/b", 1, 1)), Some(ResponseError::InvalidTopicException));
        assert!(matches!(create(&mut img, "a.b", 1, 1), Outcome::TopicCreated { .. }));
        assert_eq!(code(&create(&mut img, "a.b", 1, 1)), Some(ResponseError::TopicAlreadyExists));
        let out = create(&mut img, "a_b", 1, 1);
        assert!(matches!(&out, Outcome::Rejected { message, .. } if message.contains("'a.b'")));
        let mut same_id = create_cmd("other", 1, 1);
        if let Command::CreateTopic { id, .. } = &mut same_id {
            *id = img.topic("a.b").unwrap().id;
        }
        assert_eq!(code(&img.apply(&same_id)), Some(ResponseError::InvalidRequest));
        // Explicit assignments: validated; the ISR is the unfenced replicas.
        let with = |a: Vec<Vec<i32>>| match create_cmd("x", -1, -1) {
            Command::CreateTopic { name, id, partitions, replication_factor, configs, .. } => {
                Command::CreateTopic { name, id, partitions, replication_factor, assignments: a, configs }
            }
            _ => unreachable!(),
        };
        for bad in [vec![vec![1, 1]], vec![vec![1, 2], vec![1]], vec![vec![1, 9]], vec![vec![]]] {
            assert_eq!(code(&img.apply(&with(bad))), Some(ResponseError::InvalidReplicaAssignment));
        }
        assert_eq!(code(&img.apply(&with(vec![vec![2]]))), Some(ResponseError::InvalidReplicationFactor));
        assert!(matches!(img.apply(&with(vec![vec![2, 1], vec![1, 2]])), Outcome::TopicCreated { .. }));
        let x = &img.topic("x").unwrap().partitions;
        assert_eq!((x.len(), x[0].leader, x[0].isr.clone()), (2, 1, vec![1]));
        assert_eq!(img.topics.len(), 2);
    }

    #[test]
    fn topic_lifecycle_partitions_configs_delete() {
        let mut img = cluster(3);
        create(&mut img, "t", 2, 2);
        let grow = |total, assignments| Command::CreatePartitions { name: "t".into(), total, assignments };
        assert_eq!(code(&img.apply(&grow(2, vec![]))), Some(ResponseError::InvalidPartitions));
        assert_eq!(code(&img.apply(&grow(100_001, vec![]))), Some(ResponseError::InvalidPartitions));
        assert_eq!(code(&img.apply(&grow(3, vec![vec![1]]))), Some(ResponseError::InvalidReplicaAssignment));
        assert_eq!(code(&img.apply(&grow(4, vec![vec![1, 2]]))), Some(ResponseError::InvalidReplicaAssignment));
        assert_eq!(img.apply(&grow(3, vec![vec![3, 1]])), Outcome::Done);
        assert_eq!(img.apply(&grow(5, vec![])), Outcome::Done);
        let parts = &img.topic("t").unwrap().partitions;
        assert_eq!(parts.len(), 5);
        assert_eq!(parts[2].replicas, vec![3, 1]);
        assert!(parts.iter().all(|p| p.replicas.len() == 2 && p.leader == p.replicas[0]));
        let configs = BTreeMap::from([("cleanup.policy".to_string(), "compact".to_string())]);
        let set = |name: &str| Command::SetTopicConfigs { name: name.into(), configs: configs.clone() };
        assert_eq!(img.apply(&set("t")), Outcome::Done);
        assert_eq!(img.topic("t").unwrap().configs, configs);
        assert_eq!(code(&img.apply(&set("nope"))), Some(ResponseError::UnknownTopicOrPartition));
        assert_eq!(img.apply(&Command::DeleteTopic { name: "t".into() }), Outcome::Done);
        assert_eq!(code(&img.apply(&Command::DeleteTopic { name: "t".into() })), Some(ResponseError::UnknownTopicOrPartition));
        assert_eq!(code(&img.apply(&grow(9, vec![]))), Some(ResponseError::UnknownTopicOrPartition));
    }

    #[test]
    fn fencing_leader_elects_next_isr_replica() {
        let mut img = cluster(3);
        create(&mut img, "t", 3, 3); // replicas [1,2,3], [2,3,1], [3,1,2]
        assert_eq!(fence(&mut img, 1), Outcome::Done);
        let parts = img.topic("t").unwrap().partitions.clone();
        assert_eq!((parts[0].leader, parts[0].leader_epoch, parts[0].partition_epoch), (2, 1, 1));
        assert_eq!((parts[1].leader, parts[1].leader_epoch, parts[1].partition_epoch), (2, 0, 1));
        assert_eq!((parts[2].leader, parts[2].leader_epoch, parts[2].partition_epoch), (3, 0, 1));
        assert_eq!((&parts[0].isr, &parts[1].isr, &parts[2].isr), (&vec![2, 3], &vec![2, 3], &vec![3, 2]));
        assert_eq!(img.partitions_led_by(1), 0);
        assert!(!img.is_live(1) && img.live_brokers().iter().map(|b| b.id).eq([2, 3]));
        let before = img.clone();
        assert_eq!(fence(&mut img, 1), Outcome::Done);
        assert_eq!(img, before);
        assert_eq!(code(&fence(&mut img, 7)), Some(ResponseError::BrokerNotAvailable));
    }

    #[test]
    fn fencing_all_replicas_goes_offline_without_unclean_election() {
        let mut img = cluster(3);
        create(&mut img, "t", 1, 2); // replicas [1, 2]
        fence(&mut img, 1);
        assert_eq!((p0(&img).leader, p0(&img).isr), (2, vec![2]));
        fence(&mut img, 2);
        let offline = p0(&img);
        assert_eq!((offline.leader, offline.isr.clone(), offline.leader_epoch, offline.partition_epoch), (-1, vec![2], 2, 2));
        register(&mut img, 1); // not in the ISR: must not become leader
        assert_eq!(p0(&img), offline);
        register(&mut img, 2);
        let back = p0(&img);
        assert_eq!((back.leader, back.isr, back.leader_epoch, back.partition_epoch), (2, vec![2], 3, 3));
    }

    #[test]
    fn alter_partition_validates_and_bumps_partition_epoch() {
        let mut img = cluster(3);
        create(&mut img, "t", 1, 3); // replicas [1,2,3], leader 1
        assert_eq!(code(&alter(&mut img, 2, 0, 0, &[1, 2])), Some(ResponseError::NotLeaderOrFollower));
        assert_eq!(code(&alter(&mut img, 1, 1, 0, &[1, 2])), Some(ResponseError::FencedLeaderEpoch));
        assert_eq!(code(&alter(&mut img, 1, 0, 5, &[1, 2])), Some(ResponseError::InvalidUpdateVersion));
        for bad in [&[][..], &[2, 3], &[1, 4], &[1, 1]] {
            assert_eq!(code(&alter(&mut img, 1, 0, 0, bad)), Some(ResponseError::InvalidRequest));
        }
        let shrunk = alter(&mut img, 1, 0, 0, &[1, 2]);
        assert!(matches!(&shrunk, Outcome::Partition(p) if p.isr == [1, 2] && p.partition_epoch == 1));
        assert_eq!(Outcome::Partition(p0(&img)), shrunk);
        assert_eq!(code(&alter(&mut img, 1, 0, 0, &[1])), Some(ResponseError::InvalidUpdateVersion));
        fence(&mut img, 3); // not in the ISR, not leader: nothing changes
        assert_eq!(p0(&img).partition_epoch, 1);
        assert_eq!(code(&alter(&mut img, 1, 0, 1, &[1, 2, 3])), Some(ResponseError::IneligibleReplica));
        register(&mut img, 3);
        let expanded = alter(&mut img, 1, 0, 1, &[1, 2, 3]);
        assert!(matches!(&expanded, Outcome::Partition(p) if p.isr == [1, 2, 3] && p.partition_epoch == 2));
        assert_eq!(alter(&mut img, 1, 0, 2, &[3, 2, 1]), expanded); // same set: no bump
        let missing = Command::AlterPartition { topic: "t".into(), partition: 1, broker: 1, leader_epoch: 0, partition_epoch: 2, isr: vec![1] };
        assert_eq!(code(&img.apply(&missing)), Some(ResponseError::UnknownTopicOrPartition));
    }

    #[test]
    fn elect_preferred_after_preferred_rejoins_isr() {
        let mut img = cluster(2);
        create(&mut img, "t", 1, 2); // replicas [1, 2]
        assert_eq!(code(&elect(&mut img)), Some(ResponseError::ElectionNotNeeded));
        fence(&mut img, 1);
        assert_eq!(code(&elect(&mut img)), Some(ResponseError::PreferredLeaderNotAvailable));
        register(&mut img, 1);
        assert_eq!(p0(&img).leader, 2);
        assert!(img.preferred_elections().is_empty());
        assert_eq!(code(&elect(&mut img)), Some(ResponseError::PreferredLeaderNotAvailable));
        assert!(matches!(alter(&mut img, 2, 1, 1, &[2, 1]), Outcome::Partition(_)));
        assert_eq!(img.preferred_elections(), vec![("t".to_string(), 0)]);
        assert_eq!(elect(&mut img), Outcome::Done);
        let p = p0(&img);
        assert_eq!((p.leader, p.leader_epoch, p.partition_epoch), (1, 2, 3));
        assert!(img.preferred_elections().is_empty());
    }

    #[test]
    fn producer_id_blocks_are_disjoint_and_increasing() {
        let mut img = Image::default();
        let alloc = |img: &mut Image, count| img.apply(&Command::AllocateProducerIds { count });
        assert_eq!(alloc(&mut img, 10), Outcome::ProducerIds { first: 0 });
        assert_eq!(alloc(&mut img, 5), Outcome::ProducerIds { first: 10 });
        assert_eq!(code(&alloc(&mut img, 0)), Some(ResponseError::InvalidRequest));
        assert_eq!(code(&alloc(&mut img, 1_000_001)), Some(ResponseError::InvalidRequest));
        assert_eq!(alloc(&mut img, 1_000_000), Outcome::ProducerIds { first: 15 });
        assert_eq!(img.next_producer_id, 1_000_015);
    }

    fn script() -> Vec<Command> {
        let configs = BTreeMap::from([("retention.ms".to_string(), "1000".to_string())]);
        vec![
            Command::RegisterBroker { id: 1, host: "a".into(), port: 1, endpoints: Vec::new() },
            Command::RegisterBroker { id: 2, host: "b".into(), port: 2, endpoints: Vec::new() },
            Command::RegisterBroker { id: 3, host: "c".into(), port: 3, endpoints: Vec::new() },
            create_cmd("t", 4, 2),
            Command::CreateTopic {
                name: "x".into(),
                id: Uuid::from_u128(7),
                partitions: -1,
                replication_factor: -1,
                assignments: vec![vec![3, 2]],
                configs: configs.clone(),
            },
            Command::CreatePartitions { name: "t".into(), total: 6, assignments: vec![] },
            Command::SetTopicConfigs { name: "t".into(), configs },
            Command::FenceBroker { id: 1 },
            Command::RegisterBroker { id: 1, host: "a2".into(), port: 1, endpoints: Vec::new() },
            Command::AlterPartition { topic: "t".into(), partition: 0, broker: 2, leader_epoch: 1, partition_epoch: 1, isr: vec![2, 1] },
            Command::ElectPreferred { topic: "t".into(), partition: 0 },
            Command::AllocateProducerIds { count: 1000 },
            Command::DeleteTopic { name: "x".into() },
        ]
    }

    #[test]
    fn apply_is_deterministic() {
        let (mut a, mut b) = (Image::default(), Image::default());
        let outs_a: Vec<Outcome> = script().iter().map(|c| a.apply(c)).collect();
        let outs_b: Vec<Outcome> = script().iter().map(|c| b.apply(c)).collect();
        assert_eq!(outs_a, outs_b);
        assert_eq!(a, b);
        assert!(outs_a.iter().all(|o| code(o).is_none()), "{outs_a:?}");
        assert_eq!((a.topics.len(), a.topic("t").unwrap().partitions.len(), a.next_producer_id), (1, 6, 1000));
    }

    #[test]
    fn serde_round_trips() {
        let mut img = Image { applied_index: 42, ..Image::default() };
        for cmd in script() {
            img.apply(&cmd);
            let json = serde_json::to_string(&cmd).unwrap();
            assert_eq!(serde_json::from_str::<Command>(&json).unwrap(), cmd);
        }
        let json = serde_json::to_string(&img).unwrap();
        assert_eq!(serde_json::from_str::<Image>(&json).unwrap(), img);
        let out = Outcome::Partition(p0(&img));
        assert_eq!(serde_json::from_str::<Outcome>(&serde_json::to_string(&out).unwrap()).unwrap(), out);
    }
}
