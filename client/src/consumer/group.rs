//! The group task: finds the coordinator, joins and syncs (running the assignor when
//! this member leads), heartbeats, auto-commits, and handles rebalances, eager (`range`:
//! revoke everything first) or cooperative (`cooperative-sticky`: revoke only what moves).
//! An application's [`CustomAssignor`] is eager, and its user data travels with each
//! subscription and assignment.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{GroupId, HeartbeatRequest, JoinGroupRequest, LeaveGroupRequest, SyncGroupRequest};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::assignor::{self, Assignor, CustomAssignor, MemberAssignment, MemberSubscription};
use super::{committer, offsets, positions, Inner, PartState, State, Subscription, TopicPartition};
use crate::error::{Error, Result};
use crate::net::Connection;

/// The protocol of a generation: a built-in assignor or the application's.
#[derive(Debug, Clone)]
pub(crate) enum Protocol {
    Builtin(Assignor),
    Custom(Arc<dyn CustomAssignor>),
}

impl Protocol {
    fn name(&self) -> &str {
        match self {
            Protocol::Builtin(a) => a.name(),
            Protocol::Custom(c) => c.name(),
        }
    }

    /// Whether members keep their partitions through a rebalance (custom ones do not).
    fn is_cooperative(&self) -> bool {
        matches!(self, Protocol::Builtin(a) if a.is_cooperative())
    }
}

/// Completes a custom assignor's plan: a member it left out gets an empty assignment,
/// and an entry for a member not in the group is dropped.
fn complete_plan(name: &str, members: &[MemberSubscription], mut plan: BTreeMap<String, MemberAssignment>) -> BTreeMap<String, MemberAssignment> {
    let mut out = BTreeMap::new();
    for m in members {
        let a = plan.remove(&m.member_id).unwrap_or_else(|| {
            tracing::warn!(assignor = name, member = %m.member_id, "the custom assignor gave this member no entry; it gets an empty assignment");
            MemberAssignment::default()
        });
        out.insert(m.member_id.clone(), a);
    }
    if !plan.is_empty() {
        let unknown: Vec<&String> = plan.keys().collect();
        tracing::warn!(assignor = name, ?unknown, "the custom assignor assigned to members that are not in the group; dropped");
    }
    out
}

fn sb(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

fn group_id(inner: &Inner) -> Result<&str> {
    inner.config.group_id.as_deref().ok_or_else(|| Error::Config("this needs `group.id`; set it in the consumer config".into()))
}

/// The group coordinator's connection (cached node id).
pub(crate) async fn coordinator(inner: &Inner) -> Result<Arc<Connection>> {
    inner.coordinator.connection(&inner.cluster, group_id(inner)?).await
}

/// Forgets the coordinator when an error says it moved or went away.
pub(crate) fn on_coordinator_error(inner: &Inner, e: &Error) {
    inner.coordinator.on_error(e);
}

/// The group's committed offsets, retrying while the coordinator moves or loads (as
/// Java's consumer does), for at most `request.timeout.ms`.
pub(crate) async fn fetch_committed(inner: &Inner, group: &str, tps: &[TopicPartition]) -> Result<BTreeMap<TopicPartition, Option<i64>>> {
    let deadline = tokio::time::Instant::now() + inner.config.common.request_timeout;
    loop {
        let result = match coordinator(inner).await {
            Ok(conn) => offsets::fetch_committed(&conn, group, tps, true).await,
            Err(e) => Err(e),
        };
        match result {
            Err(e) if e.is_retriable() && tokio::time::Instant::now() < deadline => {
                on_coordinator_error(inner, &e);
                tokio::time::sleep(inner.config.common.retry_backoff).await;
            }
            Err(e) => {
                on_coordinator_error(inner, &e);
                return Err(e);
            }
            ok => return ok,
        }
    }
}

/// Commits offsets as the current member (or as a simple client outside a group).
pub(crate) async fn commit(inner: &Inner, offsets: &BTreeMap<TopicPartition, i64>) -> Result<()> {
    let group = group_id(inner)?;
    if offsets.is_empty() {
        return Ok(());
    }
    let who = {
        let st = inner.state.lock().unwrap();
        if !st.manual && !matches!(st.subscription, Subscription::None) {
            if let Some(tp) = offsets.keys().find(|tp| !st.parts.contains_key(*tp)) {
                // Kafka's CommitFailedException: the partition moved in a rebalance, and
                // its new owner reads on from the last commit.
                return Err(Error::State(format!(
                    "cannot commit {tp}: this member no longer owns it (it moved in a rebalance); its new owner reads on from the last committed offset"
                )));
            }
        }
        committer(&st, &inner.config)
    };
    let conn = coordinator(inner).await?;
    offsets::commit(&conn, group, &who, offsets).await.inspect_err(|e| on_coordinator_error(inner, e))
}

fn listener(inner: &Inner) -> Option<Arc<dyn super::RebalanceListener>> {
    inner.listener.lock().unwrap().clone()
}

/// Sends LeaveGroup (best effort) and drops every partition as revoked.
pub(crate) async fn leave(inner: &Inner, reason: &str) {
    let (member_id, owned) = {
        let st = inner.state.lock().unwrap();
        (st.member_id.clone(), st.parts.keys().cloned().collect::<Vec<_>>())
    };
    if !owned.is_empty() {
        if let Some(l) = listener(inner) {
            l.on_partitions_revoked(&owned);
        }
    }
    if !member_id.is_empty() {
        if let Ok(group) = group_id(inner) {
            if let Ok(conn) = coordinator(inner).await {
                if let Ok(version) = conn.version::<LeaveGroupRequest>(1, 4) {
                    let mut req = LeaveGroupRequest::default().with_group_id(GroupId(sb(group)));
                    if version >= 3 {
                        req = req.with_members(vec![MemberIdentity::default()
                            .with_member_id(sb(&member_id))
                            .with_group_instance_id(inner.config.group_instance_id.as_deref().map(sb))]);
                    } else {
                        req = req.with_member_id(sb(&member_id));
                    }
                    if let Err(e) = conn.send(&req, version).await {
                        tracing::debug!(error = %e, "LeaveGroup failed");
                    }
                }
            }
        }
    }
    tracing::info!(group = ?inner.config.group_id, reason, "left the group");
    let mut st = inner.state.lock().unwrap();
    st.parts.clear();
    st.member_id.clear();
    st.generation = -1;
    st.protocol = None;
}

/// Marks partitions as being revoked, so `poll` returns no more of their records, and
/// returns their positions: in one critical section, so the positions a revocation
/// commits cover every record the application was given.
fn freeze(st: &mut State, tps: &[TopicPartition]) -> BTreeMap<TopicPartition, i64> {
    let mut out = BTreeMap::new();
    for tp in tps {
        if let Some(ps) = st.parts.get_mut(tp) {
            ps.revoking = true;
            if let Some(p) = ps.position {
                out.insert(tp.clone(), p);
            }
        }
    }
    out
}

/// Drops every partition as lost (the member was fenced) and resets the membership.
fn lose(inner: &Inner, forget_member: bool) {
    let owned: Vec<TopicPartition> = {
        let mut st = inner.state.lock().unwrap();
        st.generation = -1;
        st.protocol = None;
        st.rejoin = true;
        if forget_member {
            st.member_id.clear();
        }
        std::mem::take(&mut st.parts).into_keys().collect()
    };
    if !owned.is_empty() {
        tracing::warn!(group = ?inner.config.group_id, partitions = owned.len(), "lost partitions: this member was fenced from the group");
        if let Some(l) = listener(inner) {
            l.on_partitions_lost(&owned);
        }
    }
}

pub(crate) async fn run(inner: Arc<Inner>) {
    let config = &inner.config;
    let mut next_heartbeat = Instant::now();
    let mut next_commit = Instant::now() + config.auto_commit_interval;
    let mut known_topics: BTreeSet<String> = BTreeSet::new();
    let mut next_pattern_check = Instant::now() + config.common.metadata_max_age;
    loop {
        if inner.closed.load(Ordering::Acquire) {
            return;
        }
        let wake = inner.group_wake.notified();
        tokio::pin!(wake);
        wake.as_mut().enable();
        let (subscription, rejoin, left, last_poll) = {
            let mut st = inner.state.lock().unwrap();
            // A member of a generation rebalances only once the application has polled
            // again (its earlier records are then processed), as Java does inside poll().
            let rejoin = st.generation < 0 || (st.rejoin && st.poll_allows_rejoin);
            if rejoin {
                st.poll_allows_rejoin = false;
            }
            (st.subscription.clone(), rejoin, st.left_for_poll_timeout, st.last_poll)
        };
        if matches!(subscription, Subscription::None) || left {
            wake.await;
            continue;
        }
        if last_poll.elapsed() > config.max_poll_interval {
            tracing::warn!(
                group = ?config.group_id,
                "no poll() for longer than max.poll.interval.ms ({} ms): leaving the group; the next poll rejoins",
                config.max_poll_interval.as_millis()
            );
            leave(&inner, "max.poll.interval.ms exceeded").await;
            inner.state.lock().unwrap().left_for_poll_timeout = true;
            continue;
        }
        if rejoin {
            match join_and_sync(&inner, &subscription).await {
                Ok(topics) => {
                    known_topics = topics;
                    next_heartbeat = Instant::now() + config.heartbeat_interval;
                    inner.fetch_wake.notify_one();
                    // A poll waiting out the rebalance may hand out records again.
                    inner.data.notify_waiters();
                }
                Err(e) => {
                    tracing::info!(group = ?config.group_id, error = %e, "join failed; retrying");
                    inner.state.lock().unwrap().poll_allows_rejoin = true;
                    on_coordinator_error(&inner, &e);
                    if !e.is_retriable() && !matches!(e, Error::Broker { .. }) {
                        inner.state.lock().unwrap().error = Some(e);
                        inner.data.notify_waiters();
                    }
                    tokio::time::sleep(config.common.retry_backoff).await;
                }
            }
            continue;
        }
        let now = Instant::now();
        if now >= next_heartbeat {
            heartbeat(&inner).await;
            next_heartbeat = Instant::now() + config.heartbeat_interval;
        }
        if config.enable_auto_commit && now >= next_commit {
            let offsets = positions(&inner.state.lock().unwrap());
            if let Err(e) = commit(&inner, &offsets).await {
                tracing::info!(error = %e, "auto-commit failed");
            }
            next_commit = Instant::now() + config.auto_commit_interval;
        }
        if let Subscription::Pattern(p) = &subscription {
            if now >= next_pattern_check {
                next_pattern_check = now + config.common.metadata_max_age;
                if let Ok(topics) = matching_topics(&inner, p).await {
                    if topics != known_topics {
                        inner.state.lock().unwrap().rejoin = true;
                        continue;
                    }
                }
            }
        }
        let mut until = next_heartbeat;
        if config.enable_auto_commit {
            until = until.min(next_commit);
        }
        tokio::select! {
            _ = &mut wake => {}
            _ = tokio::time::sleep_until(until.into()) => {}
        }
    }
}

async fn matching_topics(inner: &Inner, pattern: &str) -> Result<BTreeSet<String>> {
    let re = regex_lite::Regex::new(&format!("^(?:{pattern})$")).map_err(|e| Error::Config(format!("bad topic pattern: {e}")))?;
    let md = inner.cluster.refresh(None, false).await?;
    Ok(md.topics.values().filter(|t| !t.internal && re.is_match(&t.name)).map(|t| t.name.clone()).collect())
}

async fn heartbeat(inner: &Inner) {
    let Ok(group) = group_id(inner) else { return };
    let (generation, member_id) = {
        let st = inner.state.lock().unwrap();
        (st.generation, st.member_id.clone())
    };
    let result = async {
        let conn = coordinator(inner).await?;
        let version = conn.version::<HeartbeatRequest>(1, 4)?;
        let mut req = HeartbeatRequest::default().with_group_id(GroupId(sb(group))).with_generation_id(generation).with_member_id(sb(&member_id));
        if version >= 3 {
            req = req.with_group_instance_id(inner.config.group_instance_id.as_deref().map(sb));
        }
        conn.send(&req, version).await
    }
    .await;
    match result {
        Ok(resp) => match ResponseError::try_from_code(resp.error_code) {
            None => {}
            Some(ResponseError::RebalanceInProgress) => {
                tracing::debug!("rebalance in progress; rejoining");
                inner.state.lock().unwrap().rejoin = true;
                // A poll waiting for records learns of it now (and lets the rebalance start).
                inner.data.notify_waiters();
            }
            Some(ResponseError::UnknownMemberId) | Some(ResponseError::FencedInstanceId) => lose(inner, true),
            Some(ResponseError::IllegalGeneration) => lose(inner, false),
            Some(e) => {
                let err = Error::Broker { error: e, context: "heartbeat".into() };
                on_coordinator_error(inner, &err);
                tracing::debug!(error = %err, "heartbeat failed");
            }
        },
        Err(e) => {
            on_coordinator_error(inner, &e);
            tracing::debug!(error = %e, "heartbeat failed");
        }
    }
}

/// One JoinGroup + SyncGroup round; applies the assignment. Returns the subscribed topics.
async fn join_and_sync(inner: &Inner, subscription: &Subscription) -> Result<BTreeSet<String>> {
    let config = &inner.config;
    let group = group_id(inner)?;
    let topics: BTreeSet<String> = match subscription {
        Subscription::Topics(t) => t.clone(),
        Subscription::Pattern(p) => matching_topics(inner, p).await?,
        Subscription::None => return Ok(BTreeSet::new()),
    };
    let topic_list: Vec<String> = topics.iter().cloned().collect();
    // Eager protocols give everything back before joining.
    let (eager_before, owned): (bool, Vec<TopicPartition>) = {
        let st = inner.state.lock().unwrap();
        (st.protocol.as_ref().is_none_or(|p| !p.is_cooperative()), st.parts.keys().cloned().collect())
    };
    let owned = if eager_before && !owned.is_empty() {
        // Freeze first: `poll` could otherwise hand out records while the commit below is
        // in flight, and the next owner would read them again from the committed offset.
        let offsets = freeze(&mut inner.state.lock().unwrap(), &owned);
        if config.enable_auto_commit {
            if let Err(e) = commit(inner, &offsets).await {
                tracing::info!(error = %e, "commit before rebalance failed");
            }
        }
        if let Some(l) = listener(inner) {
            l.on_partitions_revoked(&owned);
        }
        inner.state.lock().unwrap().parts.clear();
        Vec::new()
    } else {
        owned
    };

    let conn = coordinator(inner).await?;
    let join_version = conn.version::<JoinGroupRequest>(2, 7)?;
    // A custom assignor is offered alone; its user data is asked for afresh at every join.
    let offered: Vec<Protocol> = match &config.custom_assignor {
        Some(c) => vec![Protocol::Custom(c.clone())],
        None => config.assignors.iter().map(|a| Protocol::Builtin(*a)).collect(),
    };
    let protocols: Vec<JoinGroupRequestProtocol> = offered
        .iter()
        .map(|p| {
            let owned_here: &[TopicPartition] = if p.is_cooperative() { &owned } else { &[] };
            let user_data = match p {
                Protocol::Builtin(_) => Bytes::new(),
                Protocol::Custom(c) => c.subscription_user_data(),
            };
            JoinGroupRequestProtocol::default().with_name(sb(p.name())).with_metadata(assignor::encode_subscription(&topic_list, owned_here, &user_data))
        })
        .collect();
    let join = loop {
        let member_id = inner.state.lock().unwrap().member_id.clone();
        let mut req = JoinGroupRequest::default()
            .with_group_id(GroupId(sb(group)))
            .with_session_timeout_ms(config.session_timeout.as_millis() as i32)
            .with_rebalance_timeout_ms(config.max_poll_interval.as_millis().min(i32::MAX as u128) as i32)
            .with_member_id(sb(&member_id))
            .with_protocol_type(sb("consumer"))
            .with_protocols(protocols.clone());
        if join_version >= 5 {
            req = req.with_group_instance_id(config.group_instance_id.as_deref().map(sb));
        }
        let resp = conn
            .send_with_timeout(&req, join_version, config.max_poll_interval + config.common.request_timeout)
            .await?;
        match ResponseError::try_from_code(resp.error_code) {
            None => break resp,
            Some(ResponseError::MemberIdRequired) => inner.state.lock().unwrap().member_id = resp.member_id.to_string(),
            Some(ResponseError::UnknownMemberId) => lose(inner, true),
            Some(error) => return Err(Error::Broker { error, context: format!("join group `{group}`") }),
        }
    };
    let member_id = join.member_id.to_string();
    let protocol_name = join.protocol_name.as_ref().map(|s| s.to_string()).unwrap_or_default();
    let chosen = match &config.custom_assignor {
        Some(c) => (c.name() == protocol_name).then(|| Protocol::Custom(c.clone())),
        None => Assignor::parse(&protocol_name).map(Protocol::Builtin),
    };
    let protocol = chosen.ok_or_else(|| Error::Protocol {
        addr: conn.addr().to_string(),
        reason: format!(
            "the group chose assignor `{protocol_name}`, which this member did not offer (it offered {:?}); give every member of the group the same assignors",
            offered.iter().map(Protocol::name).collect::<Vec<_>>()
        ),
    })?;
    {
        let mut st = inner.state.lock().unwrap();
        st.member_id = member_id.clone();
        st.generation = join.generation_id;
    }
    let assignments: Vec<SyncGroupRequestAssignment> = if join.leader.as_str() == member_id {
        let members: Vec<MemberSubscription> =
            join.members.iter().filter_map(|m| assignor::decode_subscription(m.member_id.as_str(), m.metadata.clone())).collect();
        let all_topics: Vec<String> = members.iter().flat_map(|m| m.topics.iter().cloned()).collect::<BTreeSet<_>>().into_iter().collect();
        let md = inner.cluster.refresh(Some(&all_topics), config.allow_auto_create_topics).await?;
        let counts: HashMap<String, i32> = md.topics.iter().filter(|(t, _)| all_topics.contains(t)).map(|(t, i)| (t.clone(), i.partitions.len() as i32)).collect();
        let plan: BTreeMap<String, MemberAssignment> = match &protocol {
            Protocol::Builtin(a) => assignor::assign(*a, &members, &counts)
                .into_iter()
                .map(|(m, partitions)| (m, MemberAssignment { partitions, user_data: Bytes::new() }))
                .collect(),
            Protocol::Custom(c) => complete_plan(c.name(), &members, c.assign(&members, &counts)),
        };
        tracing::debug!(generation = join.generation_id, ?plan, "leader assigned partitions");
        plan.into_iter()
            .map(|(m, a)| {
                SyncGroupRequestAssignment::default().with_member_id(sb(&m)).with_assignment(assignor::encode_member_assignment(&a.partitions, &a.user_data))
            })
            .collect()
    } else {
        Vec::new()
    };
    let sync_version = conn.version::<SyncGroupRequest>(1, 5)?;
    let mut req = SyncGroupRequest::default()
        .with_group_id(GroupId(sb(group)))
        .with_generation_id(join.generation_id)
        .with_member_id(sb(&member_id))
        .with_assignments(assignments);
    if sync_version >= 3 {
        req = req.with_group_instance_id(config.group_instance_id.as_deref().map(sb));
    }
    if sync_version >= 5 {
        req = req.with_protocol_type(Some(sb("consumer"))).with_protocol_name(Some(sb(protocol.name())));
    }
    let sync = conn.send_with_timeout(&req, sync_version, config.max_poll_interval + config.common.request_timeout).await?;
    match ResponseError::try_from_code(sync.error_code) {
        None => {}
        Some(ResponseError::UnknownMemberId) => {
            lose(inner, true);
            return Err(Error::Broker { error: ResponseError::UnknownMemberId, context: format!("sync group `{group}`") });
        }
        Some(ResponseError::IllegalGeneration) => {
            lose(inner, false);
            return Err(Error::Broker { error: ResponseError::IllegalGeneration, context: format!("sync group `{group}`") });
        }
        Some(error) => return Err(Error::Broker { error, context: format!("sync group `{group}`") }),
    }
    let assignment = assignor::decode_member_assignment(sync.assignment.clone())
        .ok_or_else(|| Error::Protocol { addr: conn.addr().to_string(), reason: "the group leader sent an assignment that does not decode".into() })?;
    // The custom assignor learns its tasks before the listener hears of the partitions.
    if let Protocol::Custom(c) = &protocol {
        c.on_assignment(&assignment, join.generation_id);
    }
    apply(inner, protocol, assignment.partitions.into_iter().collect()).await;
    Ok(topics)
}

async fn apply(inner: &Inner, protocol: Protocol, assigned: BTreeSet<TopicPartition>) {
    let owned: BTreeSet<TopicPartition> = inner.state.lock().unwrap().parts.keys().cloned().collect();
    let revoked: Vec<TopicPartition> = owned.difference(&assigned).cloned().collect();
    let added: Vec<TopicPartition> = assigned.difference(&owned).cloned().collect();
    if !revoked.is_empty() {
        // Frozen before committing, as in the eager case of `join_and_sync`.
        let offsets = freeze(&mut inner.state.lock().unwrap(), &revoked);
        if inner.config.enable_auto_commit {
            if let Err(e) = commit(inner, &offsets).await {
                tracing::info!(error = %e, "commit of revoked partitions failed");
            }
        }
        if let Some(l) = listener(inner) {
            l.on_partitions_revoked(&revoked);
        }
    }
    {
        let mut st = inner.state.lock().unwrap();
        for tp in &revoked {
            st.parts.remove(tp);
        }
        for tp in &added {
            st.parts.insert(tp.clone(), PartState::default());
        }
        // Cooperative: what was revoked can now go to its new owner in another round.
        st.rejoin = protocol.is_cooperative() && !revoked.is_empty();
        st.protocol = Some(protocol);
    }
    tracing::info!(group = ?inner.config.group_id, assigned = assigned.len(), added = added.len(), revoked = revoked.len(), "joined the group");
    if let Some(l) = listener(inner) {
        l.on_partitions_assigned(&added);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use std::collections::HashMap;
    use std::sync::Arc;

    use bytes::Bytes;

    use super::super::assignor::{Assignor, CustomAssignor, MemberAssignment, MemberSubscription};
    use super::super::{take_records, ConsumerConfig, ConsumerRecord, PartState, State, TopicPartition};
    use super::{complete_plan, freeze, Protocol};

    fn record(tp: &TopicPartition, offset: i64) -> ConsumerRecord {
        ConsumerRecord {
            topic: tp.topic.clone(),
            partition: tp.partition,
            offset,
            timestamp: 0,
            log_append_time: false,
            key: None,
            value: None,
            headers: Vec::new(),
        }
    }

    /// Two partitions at position 10, each with records 10..13 buffered.
    fn state(tps: &[TopicPartition]) -> State {
        let parts = tps
            .iter()
            .map(|tp| {
                let ps = PartState { position: Some(10), buffer: (10..13).map(|o| record(tp, o)).collect(), ..PartState::default() };
                (tp.clone(), ps)
            })
            .collect();
        State { parts, generation: 1, member_id: "m".into(), ..State::new() }
    }

    /// What a revocation commits must cover every record poll handed out: once frozen, a
    /// partition's buffered records are no longer returned, so its position stays put
    /// while the commit is in flight.
    #[test]
    fn frozen_partitions_give_no_more_records() {
        let (a, b) = (TopicPartition::new("t", 0), TopicPartition::new("t", 1));
        let mut st = state(&[a.clone(), b.clone()]);
        let committed = freeze(&mut st, std::slice::from_ref(&a));
        assert_eq!(committed, BTreeMap::from([(a.clone(), 10)]));
        let got = take_records(&mut st, 100);
        assert!(got.iter().all(|r| r.partition == 1), "records of the frozen partition: {got:?}");
        assert_eq!(got.len(), 3);
        assert_eq!(st.parts[&a].position, Some(10), "the committed position is still the position");
        assert_eq!(st.parts[&b].position, Some(13));
    }

    /// Gives every partition to the member with the smallest id, echoing each member's
    /// user data back in its assignment.
    #[derive(Debug)]
    struct FirstTakesAll;

    impl CustomAssignor for FirstTakesAll {
        fn name(&self) -> &str {
            "first"
        }
        fn subscription_user_data(&self) -> Bytes {
            Bytes::from_static(b"hi")
        }
        fn assign(&self, members: &[MemberSubscription], partitions: &HashMap<String, i32>) -> BTreeMap<String, MemberAssignment> {
            let first = members.iter().map(|m| &m.member_id).min().expect("a member");
            let m = members.iter().find(|m| &m.member_id == first).expect("the first member");
            let tps = m.topics.iter().flat_map(|t| (0..partitions[t]).map(move |p| TopicPartition::new(t.clone(), p))).collect();
            BTreeMap::from([(first.clone(), MemberAssignment { partitions: tps, user_data: m.user_data.clone() })])
        }
        fn on_assignment(&self, _assignment: &MemberAssignment, _generation: i32) {}
    }

    fn sub(id: &str) -> MemberSubscription {
        MemberSubscription { member_id: id.into(), topics: vec!["t".into()], owned: Vec::new(), user_data: Bytes::from(id.to_string()) }
    }

    #[test]
    fn custom_plan_covers_every_member_and_only_members() {
        let members = [sub("a"), sub("b")];
        let c = FirstTakesAll;
        let mut plan = c.assign(&members, &HashMap::from([("t".to_string(), 2)]));
        plan.insert("ghost".into(), MemberAssignment::default());
        let plan = complete_plan(c.name(), &members, plan);
        assert_eq!(plan.keys().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(plan["a"].partitions, [TopicPartition::new("t", 0), TopicPartition::new("t", 1)]);
        assert_eq!(plan["a"].user_data, Bytes::from_static(b"a"));
        assert_eq!(plan["b"], MemberAssignment::default());
    }

    #[test]
    fn a_custom_assignor_is_eager_and_cloned_with_the_config() {
        let config = ConsumerConfig::default().custom_assignor(Arc::new(FirstTakesAll));
        let copy = config.clone();
        assert!(format!("{copy:?}").contains("FirstTakesAll"));
        let p = Protocol::Custom(copy.custom_assignor.expect("set"));
        assert_eq!(p.name(), "first");
        assert!(!p.is_cooperative());
        assert!(Protocol::Builtin(Assignor::CooperativeSticky).is_cooperative());
        assert!(ConsumerConfig::default().custom_assignor.is_none());
    }
}
