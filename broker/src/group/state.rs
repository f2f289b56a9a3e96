//! The classic group protocol as a pure state machine (DESIGN §7).
//!
//! `Group` takes events (join, sync, heartbeat, leave, a clock tick) with the current
//! `Instant` and answers through the oneshot senders that waiting requests left behind.
//! No sockets and no tokio runtime are needed to drive it, so tests run in microseconds.
//!
//! ```text
//!  Empty ──join──> PreparingRebalance ──all joined / timeout──> CompletingRebalance
//!    ^                   ^      ^                                     │ leader syncs
//!    └── last member ────┘      └──── join, leave, expiry ─────── Stable <┘
//! ```

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use bytes::Bytes;
use indexmap::IndexMap;
use kafka_protocol::ResponseError;
use tokio::sync::oneshot;

/// The group's state, named as Kafka's DescribeGroups reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// No members (offsets may still exist).
    Empty,
    /// Waiting for members to (re)join.
    PreparingRebalance,
    /// Joined; waiting for the leader's assignment.
    CompletingRebalance,
    /// Assignment distributed.
    Stable,
    /// Deleted.
    Dead,
}

impl State {
    /// Kafka's name for the state.
    pub fn name(self) -> &'static str {
        match self {
            State::Empty => "Empty",
            State::PreparingRebalance => "PreparingRebalance",
            State::CompletingRebalance => "CompletingRebalance",
            State::Stable => "Stable",
            State::Dead => "Dead",
        }
    }
}

/// A JoinGroup request in domain terms.
#[derive(Debug, Clone)]
pub struct JoinRequest {
    /// Member id, empty on first join.
    pub member_id: String,
    /// Static membership id (KIP-345).
    pub instance_id: Option<String>,
    /// Client's `client.id`.
    pub client_id: String,
    /// Client's address.
    pub client_host: String,
    /// Session timeout.
    pub session_timeout: Duration,
    /// How long the group waits for this member to rejoin in a rebalance.
    pub rebalance_timeout: Duration,
    /// "consumer", "connect", ...
    pub protocol_type: String,
    /// (assignor name, metadata) in preference order.
    pub protocols: Vec<(String, Bytes)>,
    /// Whether the client understands MEMBER_ID_REQUIRED (JoinGroup v4+).
    pub require_known_member_id: bool,
}

/// A JoinGroup answer.
#[derive(Debug, Clone)]
pub struct JoinResult {
    /// Error, or `None` for success.
    pub error: Option<ResponseError>,
    /// Generation the member joined.
    pub generation: i32,
    /// Group protocol type.
    pub protocol_type: Option<String>,
    /// Selected assignor.
    pub protocol_name: Option<String>,
    /// Leader's member id.
    pub leader: String,
    /// The member's id.
    pub member_id: String,
    /// For the leader: every member's (id, instance id, metadata for the selected assignor).
    pub members: Vec<(String, Option<String>, Bytes)>,
}

impl JoinResult {
    fn error(error: ResponseError, member_id: &str) -> Self {
        Self { error: Some(error), generation: -1, protocol_type: None, protocol_name: None, leader: String::new(), member_id: member_id.to_string(), members: Vec::new() }
    }
}

/// A SyncGroup answer.
#[derive(Debug, Clone)]
pub struct SyncResult {
    /// Error, or `None` for success.
    pub error: Option<ResponseError>,
    /// Group protocol type.
    pub protocol_type: Option<String>,
    /// Selected assignor.
    pub protocol_name: Option<String>,
    /// The member's assignment.
    pub assignment: Bytes,
}

impl SyncResult {
    fn error(error: ResponseError) -> Self {
        Self { error: Some(error), protocol_type: None, protocol_name: None, assignment: Bytes::new() }
    }
}

/// What a join or sync call produced: an answer now, or a receiver for a later one.
pub enum Reply<T> {
    /// Answer at once.
    Now(T),
    /// Answer when the rebalance step completes.
    Later(oneshot::Receiver<T>),
}

/// A member of the group.
#[derive(Debug)]
pub struct Member {
    /// Member id.
    pub id: String,
    /// Static membership id.
    pub instance_id: Option<String>,
    /// Client id.
    pub client_id: String,
    /// Client host.
    pub client_host: String,
    /// Session timeout.
    pub session_timeout: Duration,
    /// Rebalance timeout.
    pub rebalance_timeout: Duration,
    /// Supported assignors with metadata.
    pub protocols: Vec<(String, Bytes)>,
    /// Assignment from the last sync.
    pub assignment: Bytes,
    last_heartbeat: Instant,
    join_waiter: Option<oneshot::Sender<JoinResult>>,
    sync_waiter: Option<oneshot::Sender<SyncResult>>,
}

impl Member {
    /// Metadata the member sent for `protocol`.
    pub fn metadata(&self, protocol: &str) -> Bytes {
        self.protocols.iter().find(|(n, _)| n == protocol).map(|(_, m)| m.clone()).unwrap_or_default()
    }
}

/// One consumer group's membership.
#[derive(Debug)]
pub struct Group {
    /// Group id.
    pub id: String,
    /// Current state.
    pub state: State,
    /// Generation (bumped by every completed join round).
    pub generation: i32,
    /// Protocol type of the members ("consumer").
    pub protocol_type: Option<String>,
    /// Selected assignor of the current generation.
    pub protocol: Option<String>,
    /// Leader's member id.
    pub leader: Option<String>,
    /// Members in join order.
    pub members: IndexMap<String, Member>,
    pending: HashMap<String, Instant>,
    static_ids: HashMap<String, String>,
    /// When the current join round gives up on members that have not rejoined.
    rebalance_deadline: Option<Instant>,
    /// Earliest completion of a join round that started from Empty (initial delay).
    initial_delay_until: Option<Instant>,
    initial_delay: Duration,
}

impl Group {
    /// A new, empty group.
    pub fn new(id: &str, initial_delay: Duration) -> Self {
        Self {
            id: id.to_string(),
            state: State::Empty,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: IndexMap::new(),
            pending: HashMap::new(),
            static_ids: HashMap::new(),
            rebalance_deadline: None,
            initial_delay_until: None,
            initial_delay,
        }
    }

    fn new_member_id(client_id: &str) -> String {
        format!("{client_id}-{}", uuid::Uuid::new_v4())
    }

    /// Handles JoinGroup.
    pub fn join(&mut self, req: JoinRequest, now: Instant) -> Reply<JoinResult> {
        if self.state == State::Dead {
            return Reply::Now(JoinResult::error(ResponseError::CoordinatorNotAvailable, &req.member_id));
        }
        if req.protocols.is_empty() || (self.protocol_type.is_some() && !self.members.is_empty() && self.protocol_type.as_deref() != Some(&req.protocol_type)) {
            return Reply::Now(JoinResult::error(ResponseError::InconsistentGroupProtocol, &req.member_id));
        }
        if !self.members.is_empty() && !self.members.values().all(|m| m.protocols.iter().any(|(p, _)| req.protocols.iter().any(|(q, _)| q == p))) {
            return Reply::Now(JoinResult::error(ResponseError::InconsistentGroupProtocol, &req.member_id));
        }
        let mut req = req;
        if req.member_id.is_empty() {
            let id = Self::new_member_id(&req.client_id);
            if let Some(instance) = req.instance_id.clone() {
                // A static member that comes back replaces its old member id (fencing it).
                if let Some(old) = self.static_ids.insert(instance, id.clone()) {
                    if let Some(mut m) = self.members.shift_remove(&old) {
                        if let Some(w) = m.join_waiter.take() {
                            let _ = w.send(JoinResult::error(ResponseError::FencedInstanceId, &old));
                        }
                        if let Some(w) = m.sync_waiter.take() {
                            let _ = w.send(SyncResult::error(ResponseError::FencedInstanceId));
                        }
                        let same_protocols = m.protocols == req.protocols;
                        m.id = id.clone();
                        m.last_heartbeat = now;
                        if self.leader.as_deref() == Some(old.as_str()) {
                            self.leader = Some(id.clone());
                        }
                        let was_leader = self.leader.as_deref() == Some(id.as_str());
                        self.members.insert(id.clone(), m);
                        // Stable group, same subscription, not the leader: no rebalance (KIP-345).
                        if self.state == State::Stable && same_protocols && !was_leader {
                            let protocol = self.protocol.clone().unwrap_or_default();
                            return Reply::Now(JoinResult {
                                error: None,
                                generation: self.generation,
                                protocol_type: self.protocol_type.clone(),
                                protocol_name: Some(protocol),
                                leader: self.leader.clone().unwrap_or_default(),
                                member_id: id,
                                members: Vec::new(),
                            });
                        }
                        req.member_id = id;
                        return self.add_and_wait(req, now);
                    }
                }
                req.member_id = id;
                return self.add_and_wait(req, now);
            }
            if req.require_known_member_id {
                self.pending.insert(id.clone(), now + req.session_timeout);
                return Reply::Now(JoinResult::error(ResponseError::MemberIdRequired, &id));
            }
            req.member_id = id;
            return self.add_and_wait(req, now);
        }
        if let Some(instance) = &req.instance_id {
            match self.static_ids.get(instance) {
                Some(known) if *known != req.member_id => {
                    return Reply::Now(JoinResult::error(ResponseError::FencedInstanceId, &req.member_id));
                }
                _ => {}
            }
        }
        if !self.members.contains_key(&req.member_id) && self.pending.remove(&req.member_id).is_none() {
            return Reply::Now(JoinResult::error(ResponseError::UnknownMemberId, &req.member_id));
        }
        self.add_and_wait(req, now)
    }

    fn add_and_wait(&mut self, req: JoinRequest, now: Instant) -> Reply<JoinResult> {
        let (tx, rx) = oneshot::channel();
        if let Some(instance) = &req.instance_id {
            self.static_ids.insert(instance.clone(), req.member_id.clone());
        }
        let member = self.members.entry(req.member_id.clone()).or_insert_with(|| Member {
            id: req.member_id.clone(),
            instance_id: req.instance_id.clone(),
            client_id: req.client_id.clone(),
            client_host: req.client_host.clone(),
            session_timeout: req.session_timeout,
            rebalance_timeout: req.rebalance_timeout,
            protocols: Vec::new(),
            assignment: Bytes::new(),
            last_heartbeat: now,
            join_waiter: None,
            sync_waiter: None,
        });
        member.protocols = req.protocols;
        member.session_timeout = req.session_timeout;
        member.rebalance_timeout = req.rebalance_timeout;
        member.last_heartbeat = now;
        if let Some(old) = member.join_waiter.replace(tx) {
            let _ = old.send(JoinResult::error(ResponseError::RebalanceInProgress, &req.member_id));
        }
        self.protocol_type = Some(req.protocol_type);
        if self.state != State::PreparingRebalance {
            self.prepare_rebalance(now);
        }
        self.try_complete_join(now);
        Reply::Later(rx)
    }

    fn prepare_rebalance(&mut self, now: Instant) {
        // Members waiting for a sync of the old generation must rejoin.
        for m in self.members.values_mut() {
            if let Some(w) = m.sync_waiter.take() {
                let _ = w.send(SyncResult::error(ResponseError::RebalanceInProgress));
            }
        }
        let timeout = self.members.values().map(|m| m.rebalance_timeout).max().unwrap_or(Duration::from_secs(60));
        if self.state == State::Empty {
            self.initial_delay_until = Some(now + self.initial_delay);
        }
        self.rebalance_deadline = Some(now + timeout);
        if self.state != State::PreparingRebalance {
            tracing::info!(group = %self.id, generation = self.generation, members = self.members.len(), "rebalance started");
        }
        self.state = State::PreparingRebalance;
    }

    /// Completes the join round when every member has rejoined (after the initial delay),
    /// or at the rebalance deadline, dropping members that did not rejoin.
    fn try_complete_join(&mut self, now: Instant) {
        if self.state != State::PreparingRebalance {
            return;
        }
        let all_joined = self.members.values().all(|m| m.join_waiter.is_some());
        let delay_over = self.initial_delay_until.is_none_or(|t| now >= t);
        let deadline_passed = self.rebalance_deadline.is_some_and(|d| now >= d);
        if !(deadline_passed || all_joined && delay_over) {
            return;
        }
        let absent: Vec<String> = self.members.values().filter(|m| m.join_waiter.is_none()).map(|m| m.id.clone()).collect();
        for id in absent {
            self.remove_member(&id);
        }
        self.initial_delay_until = None;
        self.rebalance_deadline = None;
        self.generation += 1;
        if self.members.is_empty() {
            tracing::info!(group = %self.id, generation = self.generation, "rebalance: no members left, group empty");
            self.state = State::Empty;
            self.protocol = None;
            self.leader = None;
            return;
        }
        self.protocol = Some(self.select_protocol());
        if !self.leader.as_ref().is_some_and(|l| self.members.contains_key(l)) {
            self.leader = self.members.keys().next().cloned();
        }
        self.state = State::CompletingRebalance;
        let protocol = self.protocol.clone().expect("selected");
        let leader = self.leader.clone().expect("chosen");
        tracing::info!(group = %self.id, generation = self.generation, members = self.members.len(), %leader, %protocol, "rebalance: new generation");
        let all: Vec<(String, Option<String>, Bytes)> =
            self.members.values().map(|m| (m.id.clone(), m.instance_id.clone(), m.metadata(&protocol))).collect();
        for m in self.members.values_mut() {
            m.assignment = Bytes::new();
            m.last_heartbeat = now;
            if let Some(w) = m.join_waiter.take() {
                let _ = w.send(JoinResult {
                    error: None,
                    generation: self.generation,
                    protocol_type: self.protocol_type.clone(),
                    protocol_name: Some(protocol.clone()),
                    leader: leader.clone(),
                    member_id: m.id.clone(),
                    members: if m.id == leader { all.clone() } else { Vec::new() },
                });
            }
        }
    }

    /// The assignor every member supports that most members list first (Kafka's vote).
    fn select_protocol(&self) -> String {
        let mut candidates: Vec<&str> = self.members[0].protocols.iter().map(|(p, _)| p.as_str()).collect();
        candidates.retain(|c| self.members.values().all(|m| m.protocols.iter().any(|(p, _)| p == c)));
        let mut votes: IndexMap<&str, usize> = candidates.iter().map(|c| (*c, 0)).collect();
        for m in self.members.values() {
            if let Some((p, _)) = m.protocols.iter().find(|(p, _)| votes.contains_key(p.as_str())) {
                *votes.get_mut(p.as_str()).expect("candidate") += 1;
            }
        }
        votes.iter().max_by_key(|(_, v)| **v).map(|(p, _)| p.to_string()).unwrap_or_default()
    }

    fn remove_member(&mut self, id: &str) {
        if let Some(mut m) = self.members.shift_remove(id) {
            if let Some(instance) = &m.instance_id {
                if self.static_ids.get(instance).map(String::as_str) == Some(id) {
                    self.static_ids.remove(instance);
                }
            }
            if let Some(w) = m.join_waiter.take() {
                let _ = w.send(JoinResult::error(ResponseError::UnknownMemberId, id));
            }
            if let Some(w) = m.sync_waiter.take() {
                let _ = w.send(SyncResult::error(ResponseError::UnknownMemberId));
            }
        }
        if self.leader.as_deref() == Some(id) {
            self.leader = None;
        }
    }

    fn check_member(&self, member_id: &str, instance_id: Option<&str>, generation: i32) -> Option<ResponseError> {
        if let Some(instance) = instance_id {
            if let Some(known) = self.static_ids.get(instance) {
                if known != member_id {
                    return Some(ResponseError::FencedInstanceId);
                }
            }
        }
        if !self.members.contains_key(member_id) {
            return Some(ResponseError::UnknownMemberId);
        }
        if generation != self.generation {
            return Some(ResponseError::IllegalGeneration);
        }
        None
    }

    /// Handles SyncGroup; `assignments` is non-empty only from the leader.
    pub fn sync(&mut self, member_id: &str, instance_id: Option<&str>, generation: i32, assignments: Vec<(String, Bytes)>, now: Instant) -> Reply<SyncResult> {
        if let Some(e) = self.check_member(member_id, instance_id, generation) {
            return Reply::Now(SyncResult::error(e));
        }
        let ok = |g: &Group, assignment: Bytes| SyncResult { error: None, protocol_type: g.protocol_type.clone(), protocol_name: g.protocol.clone(), assignment };
        match self.state {
            State::PreparingRebalance => Reply::Now(SyncResult::error(ResponseError::RebalanceInProgress)),
            State::Stable => Reply::Now(ok(self, self.members[member_id].assignment.clone())),
            State::CompletingRebalance => {
                let (tx, rx) = oneshot::channel();
                let m = self.members.get_mut(member_id).expect("checked");
                m.last_heartbeat = now;
                m.sync_waiter = Some(tx);
                if self.leader.as_deref() == Some(member_id) {
                    let given: HashMap<String, Bytes> = assignments.into_iter().collect();
                    for m in self.members.values_mut() {
                        m.assignment = given.get(&m.id).cloned().unwrap_or_default();
                    }
                    self.state = State::Stable;
                    let (pt, pn) = (self.protocol_type.clone(), self.protocol.clone());
                    for m in self.members.values_mut() {
                        if let Some(w) = m.sync_waiter.take() {
                            let _ = w.send(SyncResult { error: None, protocol_type: pt.clone(), protocol_name: pn.clone(), assignment: m.assignment.clone() });
                        }
                    }
                }
                Reply::Later(rx)
            }
            State::Empty | State::Dead => Reply::Now(SyncResult::error(ResponseError::UnknownMemberId)),
        }
    }

    /// Handles Heartbeat.
    pub fn heartbeat(&mut self, member_id: &str, instance_id: Option<&str>, generation: i32, now: Instant) -> Option<ResponseError> {
        if matches!(self.state, State::Empty | State::Dead) {
            return Some(ResponseError::UnknownMemberId);
        }
        if let Some(e) = self.check_member(member_id, instance_id, generation) {
            // A member of the previous generation learns of the rebalance this way.
            if e == ResponseError::IllegalGeneration && self.state == State::PreparingRebalance {
                if let Some(m) = self.members.get_mut(member_id) {
                    m.last_heartbeat = now;
                }
                return Some(ResponseError::RebalanceInProgress);
            }
            return Some(e);
        }
        self.members.get_mut(member_id).expect("checked").last_heartbeat = now;
        match self.state {
            State::PreparingRebalance => Some(ResponseError::RebalanceInProgress),
            _ => None,
        }
    }

    /// Handles one member of a LeaveGroup; returns the member's error, if any.
    pub fn leave(&mut self, member_id: &str, instance_id: Option<&str>, now: Instant) -> Option<ResponseError> {
        let id = match (member_id.is_empty(), instance_id) {
            (true, Some(instance)) => match self.static_ids.get(instance) {
                Some(id) => id.clone(),
                None => return Some(ResponseError::UnknownMemberId),
            },
            _ => member_id.to_string(),
        };
        if let Some(instance) = instance_id {
            if self.static_ids.get(instance).is_some_and(|k| *k != id) {
                return Some(ResponseError::FencedInstanceId);
            }
        }
        if !self.members.contains_key(&id) {
            return if self.pending.remove(&id).is_some() { None } else { Some(ResponseError::UnknownMemberId) };
        }
        self.remove_member(&id);
        self.member_left(now);
        None
    }

    fn member_left(&mut self, now: Instant) {
        match self.state {
            State::Stable | State::CompletingRebalance => {
                if self.members.is_empty() {
                    self.state = State::Empty;
                    self.generation += 1;
                    self.protocol = None;
                    self.leader = None;
                } else {
                    self.prepare_rebalance(now);
                }
            }
            State::PreparingRebalance => self.try_complete_join(now),
            _ => {}
        }
    }

    /// Expires members whose session timed out and completes join rounds that are due.
    pub fn tick(&mut self, now: Instant) {
        self.pending.retain(|_, deadline| *deadline > now);
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|m| m.join_waiter.is_none() && now.duration_since(m.last_heartbeat) > m.session_timeout)
            .map(|m| m.id.clone())
            .collect();
        for id in &expired {
            tracing::info!(group = %self.id, member = %id, "member session expired");
            self.remove_member(id);
        }
        if !expired.is_empty() {
            self.member_left(now);
        }
        self.try_complete_join(now);
    }

    /// Removes every member (DeleteGroups) and marks the group dead.
    pub fn kill(&mut self) {
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in ids {
            self.remove_member(&id);
        }
        self.state = State::Dead;
    }

    /// Topics the members subscribed to (consumer protocol), for OffsetDelete checks.
    pub fn subscribed_topics(&self) -> HashSet<String> {
        use kafka_protocol::messages::ConsumerProtocolSubscription;
        use kafka_protocol::protocol::Decodable;
        let mut out = HashSet::new();
        if self.protocol_type.as_deref() != Some("consumer") {
            return out;
        }
        let Some(protocol) = &self.protocol else { return out };
        for m in self.members.values() {
            let mut meta = m.metadata(protocol);
            if meta.len() < 2 {
                continue;
            }
            let version = i16::from_be_bytes([meta[0], meta[1]]);
            bytes::Buf::advance(&mut meta, 2);
            if let Ok(sub) = ConsumerProtocolSubscription::decode(&mut meta, version.clamp(0, 3)) {
                out.extend(sub.topics.iter().map(|t| t.to_string()));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SESSION: Duration = Duration::from_secs(10);

    fn req(member_id: &str, instance: Option<&str>) -> JoinRequest {
        JoinRequest {
            member_id: member_id.into(),
            instance_id: instance.map(Into::into),
            client_id: "c".into(),
            client_host: "/127.0.0.1".into(),
            session_timeout: SESSION,
            rebalance_timeout: Duration::from_secs(30),
            protocol_type: "consumer".into(),
            protocols: vec![("range".into(), Bytes::from_static(b"meta")), ("roundrobin".into(), Bytes::new())],
            require_known_member_id: true,
        }
    }

    fn now_result<T>(r: Reply<T>) -> T {
        match r {
            Reply::Now(t) => t,
            Reply::Later(_) => panic!("expected an immediate answer"),
        }
    }

    fn later<T>(r: Reply<T>) -> oneshot::Receiver<T> {
        match r {
            Reply::Later(rx) => rx,
            Reply::Now(_) => panic!("expected to wait"),
        }
    }

    /// Joins a new dynamic member through MEMBER_ID_REQUIRED; returns its id and receiver.
    fn join_new(g: &mut Group, t: Instant) -> (String, oneshot::Receiver<JoinResult>) {
        let first = now_result(g.join(req("", None), t));
        assert_eq!(first.error, Some(ResponseError::MemberIdRequired));
        let id = first.member_id.clone();
        (id.clone(), later(g.join(req(&id, None), t)))
    }

    #[test]
    fn two_members_join_sync_and_rebalance_on_leave() {
        let t = Instant::now();
        let mut g = Group::new("g", Duration::ZERO);
        let (a, mut ra) = join_new(&mut g, t);
        // Round completes at once (no initial delay): a alone, generation 1.
        let ja = ra.try_recv().unwrap();
        assert_eq!((ja.generation, ja.leader.as_str(), ja.members.len()), (1, a.as_str(), 1));
        assert_eq!(ja.protocol_name.as_deref(), Some("range"));
        let mut sa = later(g.sync(&a, None, 1, vec![(a.clone(), Bytes::from_static(b"A1"))], t));
        assert_eq!(sa.try_recv().unwrap().assignment, Bytes::from_static(b"A1"));
        assert_eq!(g.state, State::Stable);
        // b joins: a learns of the rebalance from its heartbeat and rejoins.
        let (b, mut rb) = join_new(&mut g, t);
        assert_eq!(g.state, State::PreparingRebalance);
        assert_eq!(g.heartbeat(&a, None, 1, t), Some(ResponseError::RebalanceInProgress));
        let mut ra = later(g.join(req(&a, None), t));
        let (ja, jb) = (ra.try_recv().unwrap(), rb.try_recv().unwrap());
        assert_eq!((ja.generation, jb.generation), (2, 2));
        assert_eq!((ja.members.len(), jb.members.len()), (2, 0), "only the leader gets the member list");
        // Follower syncs first and waits; the leader's assignment releases it.
        let mut sb = later(g.sync(&b, None, 2, vec![], t));
        let sa = later(g.sync(&a, None, 2, vec![(a.clone(), Bytes::from_static(b"A")), (b.clone(), Bytes::from_static(b"B"))], t));
        assert_eq!(sb.try_recv().unwrap().assignment, Bytes::from_static(b"B"));
        drop(sa);
        assert_eq!(g.state, State::Stable);
        assert_eq!(g.heartbeat(&b, None, 2, t), None);
        assert_eq!(g.heartbeat(&b, None, 1, t), Some(ResponseError::IllegalGeneration));
        // a leaves: b must rejoin; the group completes generation 3 with b as leader.
        assert_eq!(g.leave(&a, None, t), None);
        assert_eq!(g.heartbeat(&b, None, 2, t), Some(ResponseError::RebalanceInProgress));
        let jb = later(g.join(req(&b, None), t)).try_recv().unwrap();
        assert_eq!((jb.generation, jb.leader.as_str()), (3, b.as_str()));
        assert_eq!(g.leave("nobody", None, t), Some(ResponseError::UnknownMemberId));
    }

    #[test]
    fn unknown_member_and_session_expiry() {
        let t = Instant::now();
        let mut g = Group::new("g", Duration::ZERO);
        assert_eq!(now_result(g.join(req("made-up", None), t)).error, Some(ResponseError::UnknownMemberId));
        let (a, mut ra) = join_new(&mut g, t);
        ra.try_recv().unwrap();
        later(g.sync(&a, None, 1, vec![(a.clone(), Bytes::new())], t));
        g.tick(t + SESSION / 2);
        assert_eq!(g.members.len(), 1);
        g.tick(t + SESSION + Duration::from_millis(1));
        assert!(g.members.is_empty(), "silent member expires");
        assert_eq!(g.state, State::Empty);
        assert_eq!(g.heartbeat(&a, None, 1, t), Some(ResponseError::UnknownMemberId));
    }

    #[test]
    fn initial_delay_waits_for_more_members() {
        let t = Instant::now();
        let mut g = Group::new("g", Duration::from_secs(3));
        let (_, mut ra) = join_new(&mut g, t);
        let (_, mut rb) = join_new(&mut g, t + Duration::from_secs(1));
        assert!(ra.try_recv().is_err(), "still inside the initial delay");
        g.tick(t + Duration::from_secs(3));
        assert_eq!(ra.try_recv().unwrap().generation, 1);
        assert_eq!(rb.try_recv().unwrap().generation, 1);
    }

    #[test]
    fn static_member_rejoins_without_rebalance_and_fences_old_id() {
        let t = Instant::now();
        let mut g = Group::new("g", Duration::ZERO);
        // Static members skip MEMBER_ID_REQUIRED.
        let id1 = later(g.join(req("", Some("i1")), t)).try_recv().unwrap().member_id;
        let mut r2 = later(g.join(req("", Some("i2")), t));
        let mut r1 = later(g.join(req(&id1, Some("i1")), t));
        let (j1, j2) = (r1.try_recv().unwrap(), r2.try_recv().unwrap());
        assert_eq!((j1.generation, j2.generation), (2, 2));
        assert_eq!(j1.leader, id1, "the existing leader stays leader");
        let id2 = j2.member_id;
        later(g.sync(&id1, Some("i1"), 2, vec![(id1.clone(), Bytes::from_static(b"L")), (id2.clone(), Bytes::from_static(b"F"))], t));
        assert_eq!(g.state, State::Stable);
        // i2 restarts with an empty member id: same generation, no rebalance, same assignment.
        let again = now_result(g.join(req("", Some("i2")), t));
        assert_eq!((again.error, again.generation), (None, 2));
        assert_ne!(again.member_id, id2);
        assert_eq!(g.state, State::Stable);
        assert_eq!(now_result(g.sync(&again.member_id, Some("i2"), 2, vec![], t)).assignment, Bytes::from_static(b"F"));
        // The old incarnation is fenced; the leader was not disturbed.
        assert_eq!(g.heartbeat(&id2, Some("i2"), 2, t), Some(ResponseError::FencedInstanceId));
        assert_eq!(g.heartbeat(&id1, Some("i1"), 2, t), None);
    }
}
