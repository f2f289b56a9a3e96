//! Partition assignors of the classic consumer protocol, as pure functions: the group
//! leader (a client) runs one over every member's subscription. `range` matches the Java
//! client's RangeAssignor; `cooperative-sticky` keeps partitions where they are, balances
//! the rest, and withholds any partition that changes owner for one round (KIP-429), so
//! the old owner revokes it before the new owner gets it. An application can plug in its
//! own [`CustomAssignor`] (eager), which exchanges user data with every member, as Kafka
//! Streams' assignor does.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition as AssignedTp;
use kafka_protocol::messages::consumer_protocol_subscription::TopicPartition as OwnedTp;
use kafka_protocol::messages::{ConsumerProtocolAssignment, ConsumerProtocolSubscription, TopicName};
use kafka_protocol::protocol::{Decodable, Encodable, Message, StrBytes};

use super::TopicPartition;

/// An assignment strategy (`partition.assignment.strategy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Assignor {
    /// Contiguous ranges of each topic's partitions per member (eager rebalancing).
    Range,
    /// Sticky and incremental (cooperative rebalancing).
    CooperativeSticky,
}

impl Assignor {
    /// The protocol name on the wire.
    pub fn name(self) -> &'static str {
        match self {
            Assignor::Range => "range",
            Assignor::CooperativeSticky => "cooperative-sticky",
        }
    }

    /// Parses a protocol name (or the Java class name).
    pub fn parse(s: &str) -> Option<Assignor> {
        match s.trim() {
            "range" | "org.apache.kafka.clients.consumer.RangeAssignor" => Some(Assignor::Range),
            "cooperative-sticky" | "org.apache.kafka.clients.consumer.CooperativeStickyAssignor" => Some(Assignor::CooperativeSticky),
            _ => None,
        }
    }

    /// Whether members keep their partitions through a rebalance.
    pub fn is_cooperative(self) -> bool {
        self == Assignor::CooperativeSticky
    }
}

/// One member's subscription, as the leader sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberSubscription {
    /// Member id.
    pub member_id: String,
    /// Subscribed topics.
    pub topics: Vec<String>,
    /// Partitions the member owns now (cooperative protocols).
    pub owned: Vec<TopicPartition>,
    /// User data the member's assignor sent (empty for the built-in ones).
    pub user_data: Bytes,
}

/// What the leader gives one member: partitions plus assignor-specific user data.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemberAssignment {
    /// Partitions the member consumes in this generation.
    pub partitions: Vec<TopicPartition>,
    /// Data for the member's [`CustomAssignor::on_assignment`] (empty for the built-in ones).
    pub user_data: Bytes,
}

/// An application-supplied assignor, set with [`ConsumerConfig::custom_assignor`]; the
/// group then uses it alone. Eager protocol: every rebalance revokes all partitions
/// before joining, like `range`. Its methods run on the consumer's background task, so
/// keep them short.
///
/// [`ConsumerConfig::custom_assignor`]: super::ConsumerConfig::custom_assignor
pub trait CustomAssignor: Send + Sync + std::fmt::Debug {
    /// Protocol name on the wire, e.g. "stream".
    fn name(&self) -> &str;
    /// The user data this member puts in its subscription; called at every join.
    fn subscription_user_data(&self) -> Bytes;
    /// Runs on the group leader over every member's subscription; `partitions` gives each
    /// subscribed topic's partition count. Must return an entry for every member (a
    /// member left out gets an empty assignment).
    fn assign(&self, members: &[MemberSubscription], partitions: &HashMap<String, i32>) -> BTreeMap<String, MemberAssignment>;
    /// Called on every member with its own assignment and the new generation, after
    /// SyncGroup and before [`RebalanceListener::on_partitions_assigned`].
    ///
    /// [`RebalanceListener::on_partitions_assigned`]: super::RebalanceListener::on_partitions_assigned
    fn on_assignment(&self, assignment: &MemberAssignment, generation: i32);
}

/// Empty user data goes on the wire as null, as the built-in assignors always sent it.
fn nullable(user_data: &[u8]) -> Option<Bytes> {
    (!user_data.is_empty()).then(|| Bytes::copy_from_slice(user_data))
}

/// Encodes a subscription (version 1: topics, user data, owned partitions); empty
/// `user_data` is sent as null.
pub fn encode_subscription(topics: &[String], owned: &[TopicPartition], user_data: &[u8]) -> Bytes {
    let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for tp in owned {
        by_topic.entry(&tp.topic).or_default().push(tp.partition);
    }
    let sub = ConsumerProtocolSubscription::default()
        .with_topics(topics.iter().map(|t| StrBytes::from_string(t.clone())).collect())
        .with_owned_partitions(
            by_topic
                .into_iter()
                .map(|(t, ps)| OwnedTp::default().with_topic(TopicName(StrBytes::from_string(t.to_string()))).with_partitions(ps))
                .collect(),
        )
        .with_user_data(nullable(user_data));
    let mut buf = BytesMut::new();
    buf.put_i16(1);
    sub.encode(&mut buf, 1).expect("a v1 subscription always encodes");
    buf.freeze()
}

/// Decodes a member's subscription; `None` when the bytes are not a consumer subscription.
pub fn decode_subscription(member_id: &str, mut bytes: Bytes) -> Option<MemberSubscription> {
    if bytes.remaining() < 2 {
        return None;
    }
    // Newer versions only add fields, so decode at most what this client knows.
    let version = bytes.get_i16().clamp(0, 3);
    let sub = ConsumerProtocolSubscription::decode(&mut bytes, version).ok()?;
    Some(MemberSubscription {
        member_id: member_id.to_string(),
        topics: sub.topics.iter().map(|t| t.to_string()).collect(),
        owned: sub
            .owned_partitions
            .iter()
            .flat_map(|o| o.partitions.iter().map(move |p| TopicPartition::new(o.topic.0.to_string(), *p)))
            .collect(),
        user_data: sub.user_data.unwrap_or_default(),
    })
}

/// Encodes an assignment without user data (version 0, which every client reads).
pub fn encode_assignment(partitions: &[TopicPartition]) -> Bytes {
    encode_member_assignment(partitions, &[])
}

/// Encodes an assignment with user data (version 0); empty `user_data` is sent as null,
/// so the bytes equal [`encode_assignment`]'s.
pub fn encode_member_assignment(partitions: &[TopicPartition], user_data: &[u8]) -> Bytes {
    let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for tp in partitions {
        by_topic.entry(&tp.topic).or_default().push(tp.partition);
    }
    let a = ConsumerProtocolAssignment::default()
        .with_assigned_partitions(
            by_topic
                .into_iter()
                .map(|(t, ps)| AssignedTp::default().with_topic(TopicName(StrBytes::from_string(t.to_string()))).with_partitions(ps))
                .collect(),
        )
        .with_user_data(nullable(user_data));
    let mut buf = BytesMut::new();
    buf.put_i16(0);
    a.encode(&mut buf, 0).expect("a v0 assignment always encodes");
    buf.freeze()
}

/// Decodes an assignment's partitions; empty bytes mean no partitions.
pub fn decode_assignment(bytes: Bytes) -> Option<Vec<TopicPartition>> {
    decode_member_assignment(bytes).map(|a| a.partitions)
}

/// Decodes an assignment with its user data (empty when null); empty bytes mean no
/// partitions; `None` when the bytes are not a consumer assignment.
pub fn decode_member_assignment(mut bytes: Bytes) -> Option<MemberAssignment> {
    if bytes.remaining() < 2 {
        return Some(MemberAssignment::default());
    }
    // Newer versions only add fields at the end: read them as the newest known one.
    let version = bytes.get_i16();
    if version < 0 {
        return None;
    }
    let a = ConsumerProtocolAssignment::decode(&mut bytes, version.min(ConsumerProtocolAssignment::VERSIONS.max)).ok()?;
    Some(MemberAssignment {
        partitions: a
            .assigned_partitions
            .iter()
            .flat_map(|t| t.partitions.iter().map(move |p| TopicPartition::new(t.topic.0.to_string(), *p)))
            .collect(),
        user_data: a.user_data.unwrap_or_default(),
    })
}

/// Runs `assignor` over the members. `partitions` gives each topic's partition count;
/// topics missing from it are skipped. Every member appears in the result.
pub fn assign(assignor: Assignor, members: &[MemberSubscription], partitions: &HashMap<String, i32>) -> BTreeMap<String, Vec<TopicPartition>> {
    match assignor {
        Assignor::Range => range(members, partitions),
        Assignor::CooperativeSticky => cooperative_sticky(members, partitions),
    }
}

fn range(members: &[MemberSubscription], partitions: &HashMap<String, i32>) -> BTreeMap<String, Vec<TopicPartition>> {
    let mut out: BTreeMap<String, Vec<TopicPartition>> = members.iter().map(|m| (m.member_id.clone(), Vec::new())).collect();
    let mut by_topic: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for m in members {
        for t in &m.topics {
            by_topic.entry(t).or_default().push(&m.member_id);
        }
    }
    for (topic, mut subscribers) in by_topic {
        let Some(&n) = partitions.get(topic) else { continue };
        subscribers.sort();
        subscribers.dedup();
        let per = n as usize / subscribers.len();
        let extra = n as usize % subscribers.len();
        let mut next = 0usize;
        for (i, member) in subscribers.iter().enumerate() {
            let count = per + usize::from(i < extra);
            let list = out.get_mut(*member).expect("every member has an entry");
            list.extend((next..next + count).map(|p| TopicPartition::new(topic.to_string(), p as i32)));
            next += count;
        }
    }
    out
}

fn cooperative_sticky(members: &[MemberSubscription], partitions: &HashMap<String, i32>) -> BTreeMap<String, Vec<TopicPartition>> {
    let subscribed: HashMap<&str, BTreeSet<&str>> =
        members.iter().map(|m| (m.member_id.as_str(), m.topics.iter().map(String::as_str).collect())).collect();
    let all: BTreeSet<TopicPartition> = members
        .iter()
        .flat_map(|m| m.topics.iter())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .flat_map(|t| (0..partitions.get(t).copied().unwrap_or(0)).map(move |p| TopicPartition::new(t.clone(), p)))
        .collect();
    // Who owns what now; a partition claimed twice (a stale member) counts as unowned.
    let mut claims: BTreeMap<&TopicPartition, Vec<&str>> = BTreeMap::new();
    for m in members {
        for tp in &m.owned {
            claims.entry(tp).or_default().push(&m.member_id);
        }
    }
    let previous_owner: BTreeMap<TopicPartition, &str> =
        claims.into_iter().filter(|(_, who)| who.len() == 1).map(|(tp, who)| (tp.clone(), who[0])).collect();

    let mut ids: Vec<&str> = members.iter().map(|m| m.member_id.as_str()).collect();
    ids.sort();
    let n = ids.len().max(1);
    let total = all.len();
    let (floor, mut extra_slots) = (total / n, total % n);
    let mut target: BTreeMap<&str, Vec<TopicPartition>> = ids.iter().map(|id| (*id, Vec::new())).collect();
    // Keep owned partitions, up to a fair share; members with more owned go first so
    // the extra slots go to those who already hold them.
    let mut by_owned: Vec<&MemberSubscription> = members.iter().collect();
    by_owned.sort_by_key(|m| (std::cmp::Reverse(m.owned.len()), m.member_id.clone()));
    for m in by_owned {
        let mut kept: Vec<TopicPartition> = m
            .owned
            .iter()
            .filter(|tp| all.contains(*tp) && previous_owner.get(*tp) == Some(&m.member_id.as_str()) && subscribed[m.member_id.as_str()].contains(tp.topic.as_str()))
            .cloned()
            .collect();
        kept.sort();
        let quota = if kept.len() > floor && extra_slots > 0 {
            extra_slots -= 1;
            floor + 1
        } else {
            floor
        };
        kept.truncate(quota);
        target.get_mut(m.member_id.as_str()).expect("member").extend(kept);
    }
    let taken: BTreeSet<TopicPartition> = target.values().flatten().cloned().collect();
    // Most constrained partitions (fewest subscribers) first, so balance stays possible.
    let mut unassigned: Vec<&TopicPartition> = all.iter().filter(|tp| !taken.contains(*tp)).collect();
    unassigned.sort_by_key(|tp| (ids.iter().filter(|id| subscribed[**id].contains(tp.topic.as_str())).count(), (*tp).clone()));
    for tp in unassigned {
        // The least-loaded member subscribed to the topic gets it.
        let best = ids
            .iter()
            .filter(|id| subscribed[**id].contains(tp.topic.as_str()))
            .min_by_key(|id| (target[**id].len(), **id));
        if let Some(id) = best {
            target.get_mut(*id).expect("member").push(tp.clone());
        }
    }
    // Cooperative: a partition moving between two members is withheld this round; its
    // owner drops it, rejoins, and the next round hands it over.
    target
        .into_iter()
        .map(|(id, tps)| {
            let mut kept: Vec<TopicPartition> =
                tps.into_iter().filter(|tp| previous_owner.get(tp).is_none_or(|owner| *owner == id)).collect();
            kept.sort();
            (id.to_string(), kept)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: &str, topics: &[&str], owned: &[(&str, i32)]) -> MemberSubscription {
        MemberSubscription {
            member_id: id.into(),
            topics: topics.iter().map(|t| t.to_string()).collect(),
            owned: owned.iter().map(|(t, p)| TopicPartition::new(*t, *p)).collect(),
            user_data: Bytes::new(),
        }
    }

    fn parts(list: &[TopicPartition]) -> Vec<(String, i32)> {
        list.iter().map(|tp| (tp.topic.clone(), tp.partition)).collect()
    }

    #[test]
    fn range_matches_the_java_layout() {
        let members = [member("a", &["t"], &[]), member("b", &["t"], &[]), member("c", &["t"], &[])];
        let out = assign(Assignor::Range, &members, &HashMap::from([("t".to_string(), 7)]));
        assert_eq!(parts(&out["a"]), vec![("t".into(), 0), ("t".into(), 1), ("t".into(), 2)]);
        assert_eq!(parts(&out["b"]), vec![("t".into(), 3), ("t".into(), 4)]);
        assert_eq!(parts(&out["c"]), vec![("t".into(), 5), ("t".into(), 6)]);
    }

    #[test]
    fn sticky_keeps_owned_and_withholds_moves() {
        // a owned everything; b joins: a keeps 3, the 3 that move to b are withheld.
        let owned: Vec<(&str, i32)> = (0..6).map(|p| ("t", p)).collect();
        let members = [member("a", &["t"], &owned), member("b", &["t"], &[])];
        let counts = HashMap::from([("t".to_string(), 6)]);
        let round1 = assign(Assignor::CooperativeSticky, &members, &counts);
        assert_eq!(round1["a"].len(), 3);
        assert!(round1["b"].is_empty(), "moves are withheld for one round: {round1:?}");
        // Round 2: a owns its 3; b gets the rest.
        let a_owned: Vec<(&str, i32)> = round1["a"].iter().map(|tp| ("t", tp.partition)).collect();
        let members = [member("a", &["t"], &a_owned), member("b", &["t"], &[])];
        let round2 = assign(Assignor::CooperativeSticky, &members, &counts);
        assert_eq!(round2["a"], round1["a"], "a keeps what it had");
        assert_eq!(round2["b"].len(), 3);
        let all: BTreeSet<_> = round2.values().flatten().collect();
        assert_eq!(all.len(), 6);
    }

    #[test]
    fn sticky_balances_uneven_counts_and_respects_subscriptions() {
        let members = [member("a", &["t", "u"], &[]), member("b", &["t"], &[]), member("c", &["t"], &[])];
        let counts = HashMap::from([("t".to_string(), 5), ("u".to_string(), 2)]);
        let out = assign(Assignor::CooperativeSticky, &members, &counts);
        let sizes: Vec<usize> = ["a", "b", "c"].iter().map(|m| out[*m].len()).collect();
        assert_eq!(sizes.iter().sum::<usize>(), 7);
        assert!(sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1, "{sizes:?}");
        assert!(out["b"].iter().chain(&out["c"]).all(|tp| tp.topic == "t"));
    }

    #[test]
    fn subscription_and_assignment_round_trip() {
        let owned = [TopicPartition::new("t", 2), TopicPartition::new("t", 0)];
        let sub = decode_subscription("m", encode_subscription(&["t".into(), "u".into()], &owned, &[])).unwrap();
        assert_eq!(sub.topics, vec!["t", "u"]);
        assert_eq!(sub.owned.len(), 2);
        let tps = vec![TopicPartition::new("t", 1), TopicPartition::new("u", 0)];
        assert_eq!(decode_assignment(encode_assignment(&tps)).unwrap(), tps);
        assert_eq!(decode_assignment(Bytes::new()).unwrap(), vec![]);
        assert!(decode_subscription("m", Bytes::from_static(&[0, 0, 0xff])).is_none());
    }

    #[test]
    fn user_data_round_trips() {
        let owned = [TopicPartition::new("t", 0)];
        let sub = decode_subscription("m", encode_subscription(&["t".into()], &owned, b"tasks: 0_1")).unwrap();
        assert_eq!(sub.user_data, Bytes::from_static(b"tasks: 0_1"));
        assert_eq!(sub.topics, vec!["t"]);
        assert_eq!(sub.owned, owned);
        let tps = vec![TopicPartition::new("t", 1), TopicPartition::new("u", 0)];
        let a = decode_member_assignment(encode_member_assignment(&tps, b"\x00\x01active")).unwrap();
        assert_eq!(a, MemberAssignment { partitions: tps.clone(), user_data: Bytes::from_static(b"\x00\x01active") });
        // The partitions-only decoder (admin's describe) still reads it.
        assert_eq!(decode_assignment(encode_member_assignment(&tps, b"x")).unwrap(), tps);
    }

    #[test]
    fn empty_user_data_is_null_on_the_wire_and_empty_when_decoded() {
        let tps = vec![TopicPartition::new("t", 1)];
        // Byte-for-byte what the built-in assignors sent before user data existed.
        assert_eq!(encode_member_assignment(&tps, &[]), encode_assignment(&tps));
        let with_null = ConsumerProtocolAssignment::default().with_assigned_partitions(vec![AssignedTp::default()
            .with_topic(TopicName(StrBytes::from_static_str("t")))
            .with_partitions(vec![1])]);
        let mut expected = BytesMut::new();
        expected.put_i16(0);
        with_null.encode(&mut expected, 0).unwrap();
        assert_eq!(encode_assignment(&tps), expected.freeze());
        let sub = encode_subscription(&["t".into()], &[], &[]);
        let raw = ConsumerProtocolSubscription::decode(&mut sub.slice(2..), 1).unwrap();
        assert_eq!(raw.user_data, None);
        assert_eq!(decode_subscription("m", sub).unwrap().user_data, Bytes::new());
        assert_eq!(decode_member_assignment(encode_assignment(&tps)).unwrap().user_data, Bytes::new());
        assert_eq!(decode_member_assignment(Bytes::new()).unwrap(), MemberAssignment::default());
        // A Java member's subscription at version 0 (no owned partitions) with user data.
        let mut v0 = BytesMut::new();
        v0.put_i16(0);
        ConsumerProtocolSubscription::default()
            .with_topics(vec![StrBytes::from_static_str("t")])
            .with_user_data(Some(Bytes::from_static(b"u")))
            .encode(&mut v0, 0)
            .unwrap();
        assert_eq!(decode_subscription("m", v0.freeze()).unwrap().user_data, Bytes::from_static(b"u"));
    }
}
