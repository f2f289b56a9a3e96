//! The task assignor (the group leader runs it for every member of the application's
//! consumer group). Tasks, not partitions, are placed: a task's input partitions always
//! go to one member together. Placement is sticky (a task stays with its previous owner
//! while that keeps processes balanced by thread count), then state-aware (a task goes
//! to a process that holds its state locally), then least-loaded; standby replicas of
//! stateful tasks go to other processes, preferring those with local state.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use samsa_client::consumer::assignor::{CustomAssignor, MemberAssignment, MemberSubscription};
use samsa_client::TopicPartition;
use serde::{Deserialize, Serialize};

use crate::topology::TaskId;

/// What the assignor knows about the topology: each sub-topology's input topics.
#[derive(Debug, Clone)]
pub(crate) struct TaskPlan {
    /// (sub-topology, resolved input topics, has logged state).
    pub subs: Vec<(u32, Vec<String>, bool)>,
}

impl TaskPlan {
    /// Every task and its input partitions, given topic partition counts.
    pub(crate) fn tasks(&self, counts: &HashMap<String, i32>) -> BTreeMap<TaskId, Vec<TopicPartition>> {
        let mut out = BTreeMap::new();
        for (sub, topics, _) in &self.subs {
            let n = topics.iter().filter_map(|t| counts.get(t)).copied().max().unwrap_or(0);
            for p in 0..n {
                let tps = topics.iter().filter(|t| counts.get(*t).is_some_and(|c| p < *c)).map(|t| TopicPartition::new(t.clone(), p)).collect();
                out.insert(TaskId { subtopology: *sub, partition: p }, tps);
            }
        }
        out
    }

    pub(crate) fn stateful(&self, sub: u32) -> bool {
        self.subs.iter().any(|(s, _, st)| *s == sub && *st)
    }

    pub(crate) fn task_of(&self, tp: &TopicPartition) -> Option<TaskId> {
        self.subs.iter().find(|(_, topics, _)| topics.contains(&tp.topic)).map(|(s, _, _)| TaskId { subtopology: *s, partition: tp.partition })
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct SubscriptionInfo {
    process: String,
    endpoint: Option<String>,
    active: Vec<TaskId>,
    standby: Vec<TaskId>,
    local: Vec<TaskId>,
}

/// What one member learns from an assignment.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub(crate) struct AssignmentInfo {
    pub active: Vec<TaskId>,
    pub standby: Vec<TaskId>,
    /// `application.server` endpoint -> active tasks there (for key lookups).
    pub hosts: BTreeMap<String, Vec<TaskId>>,
    /// Endpoint -> standby tasks there.
    pub standby_hosts: BTreeMap<String, Vec<TaskId>>,
}

impl Serialize for TaskId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for TaskId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<TaskId, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A thread's view of its assignments, shared between the assignor and the thread.
#[derive(Debug, Default)]
pub(crate) struct ThreadAssignment {
    /// The latest assignment and its generation.
    pub latest: Option<(i32, AssignmentInfo)>,
    /// Tasks this thread runs now (reported in the next subscription).
    pub active: Vec<TaskId>,
    pub standby: Vec<TaskId>,
}

/// The assignor of one stream thread.
pub(crate) struct StreamsAssignor {
    pub plan: Arc<TaskPlan>,
    pub process: String,
    pub endpoint: Option<String>,
    pub standbys: usize,
    pub shared: Arc<Mutex<ThreadAssignment>>,
    pub local_tasks: Arc<dyn Fn() -> Vec<TaskId> + Send + Sync>,
}

impl std::fmt::Debug for StreamsAssignor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamsAssignor").field("process", &self.process).finish_non_exhaustive()
    }
}

impl CustomAssignor for StreamsAssignor {
    fn name(&self) -> &str {
        "stream"
    }

    fn subscription_user_data(&self) -> Bytes {
        let sh = self.shared.lock().unwrap();
        let info = SubscriptionInfo {
            process: self.process.clone(),
            endpoint: self.endpoint.clone(),
            active: sh.active.clone(),
            standby: sh.standby.clone(),
            local: (self.local_tasks)(),
        };
        Bytes::from(serde_json::to_vec(&info).unwrap_or_default())
    }

    fn assign(&self, members: &[MemberSubscription], partitions: &HashMap<String, i32>) -> BTreeMap<String, MemberAssignment> {
        let subs: Vec<(String, SubscriptionInfo)> = members
            .iter()
            .map(|m| {
                let info = serde_json::from_slice::<SubscriptionInfo>(&m.user_data).unwrap_or_else(|_| SubscriptionInfo { process: m.member_id.clone(), ..Default::default() });
                (m.member_id.clone(), info)
            })
            .collect();
        let tasks = self.plan.tasks(partitions);
        let plan = place(&subs, &tasks.keys().copied().collect::<Vec<_>>(), self.standbys, |t| self.plan.stateful(t.subtopology));
        let mut hosts: BTreeMap<String, Vec<TaskId>> = BTreeMap::new();
        let mut standby_hosts: BTreeMap<String, Vec<TaskId>> = BTreeMap::new();
        for (m, info) in &subs {
            if let Some(ep) = &info.endpoint {
                let (a, s) = plan.get(m).cloned().unwrap_or_default();
                hosts.entry(ep.clone()).or_default().extend(a);
                standby_hosts.entry(ep.clone()).or_default().extend(s);
            }
        }
        subs.iter()
            .map(|(m, _)| {
                let (active, standby) = plan.get(m).cloned().unwrap_or_default();
                let parts = active.iter().flat_map(|t| tasks.get(t).cloned().unwrap_or_default()).collect();
                let info = AssignmentInfo { active, standby, hosts: hosts.clone(), standby_hosts: standby_hosts.clone() };
                (m.clone(), MemberAssignment { partitions: parts, user_data: Bytes::from(serde_json::to_vec(&info).unwrap_or_default()) })
            })
            .collect()
    }

    fn on_assignment(&self, assignment: &MemberAssignment, generation: i32) {
        let mut info: AssignmentInfo = serde_json::from_slice(&assignment.user_data).unwrap_or_default();
        if info.active.is_empty() && !assignment.partitions.is_empty() {
            // A leader that sent no task list (should not happen): derive it.
            info.active = assignment.partitions.iter().filter_map(|tp| self.plan.task_of(tp)).collect::<BTreeSet<_>>().into_iter().collect();
        }
        self.shared.lock().unwrap().latest = Some((generation, info));
    }
}

/// Places tasks on members: `member -> (active, standby)`. Pure, for unit tests.
fn place(
    members: &[(String, SubscriptionInfo)],
    tasks: &[TaskId],
    standbys: usize,
    stateful: impl Fn(&TaskId) -> bool,
) -> BTreeMap<String, (Vec<TaskId>, Vec<TaskId>)> {
    let mut procs: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (m, info) in members {
        procs.entry(info.process.as_str()).or_default().push(m.as_str());
    }
    let info_of: HashMap<&str, &SubscriptionInfo> = members.iter().map(|(m, i)| (m.as_str(), i)).collect();
    let total_cap = members.len().max(1);
    let quota = |p: &str| -> usize { (tasks.len() * procs[p].len()).div_ceil(total_cap) };
    let local: HashMap<&str, BTreeSet<TaskId>> = procs
        .iter()
        .map(|(p, ms)| (*p, ms.iter().flat_map(|m| info_of[m].local.iter().chain(&info_of[m].standby).chain(&info_of[m].active).copied()).collect()))
        .collect();
    let task_set: BTreeSet<TaskId> = tasks.iter().copied().collect();
    let mut owner: BTreeMap<TaskId, &str> = BTreeMap::new();
    let mut load: BTreeMap<&str, usize> = procs.keys().map(|p| (*p, 0)).collect();
    // 1. Sticky: previous owners keep their tasks up to their quota.
    for (m, info) in members {
        let _ = m;
        for t in &info.active {
            if task_set.contains(t) && !owner.contains_key(t) && load[info.process.as_str()] < quota(&info.process) {
                owner.insert(*t, info.process.as_str());
                *load.get_mut(info.process.as_str()).expect("process") += 1;
            }
        }
    }
    // 2. State-aware, 3. least loaded (relative to thread count).
    for t in tasks {
        if owner.contains_key(t) {
            continue;
        }
        let pick = procs
            .keys()
            .filter(|p| load[*p] < quota(p))
            .max_by(|a, b| {
                let la = local[*a].contains(t);
                let lb = local[*b].contains(t);
                la.cmp(&lb).then_with(|| (load[*b] * procs[*a].len()).cmp(&(load[*a] * procs[*b].len()))).then_with(|| b.cmp(a))
            })
            .or_else(|| procs.keys().min_by_key(|p| load[*p] * total_cap / procs[*p].len()))
            .copied()
            .expect("at least one process");
        owner.insert(*t, pick);
        *load.get_mut(pick).expect("process") += 1;
    }
    // Within a process: sticky to the previous thread, then the least loaded one.
    let mut out: BTreeMap<String, (Vec<TaskId>, Vec<TaskId>)> = members.iter().map(|(m, _)| (m.clone(), Default::default())).collect();
    for (p, ms) in &procs {
        let mine: Vec<TaskId> = owner.iter().filter(|(_, o)| *o == p).map(|(t, _)| *t).collect();
        let cap = mine.len().div_ceil(ms.len().max(1));
        let mut given: BTreeSet<TaskId> = BTreeSet::new();
        for m in ms {
            for t in &info_of[m].active {
                if mine.contains(t) && !given.contains(t) && out[*m].0.len() < cap {
                    out.get_mut(*m).expect("member").0.push(*t);
                    given.insert(*t);
                }
            }
        }
        for t in &mine {
            if given.contains(t) {
                continue;
            }
            let m = ms.iter().min_by_key(|m| (out[**m].0.len(), **m)).expect("a member");
            out.get_mut(*m).expect("member").0.push(*t);
        }
    }
    // Standbys on other processes.
    let mut standby_load: BTreeMap<&str, usize> = procs.keys().map(|p| (*p, 0)).collect();
    for t in tasks.iter().filter(|t| stateful(t)) {
        let mut holders: BTreeSet<&str> = BTreeSet::from([owner[t]]);
        for _ in 0..standbys {
            let pick = procs
                .keys()
                .filter(|p| !holders.contains(*p))
                .max_by(|a, b| {
                    local[*a].contains(t).cmp(&local[*b].contains(t)).then_with(|| (standby_load[*b] + load[*b]).cmp(&(standby_load[*a] + load[*a]))).then_with(|| b.cmp(a))
                })
                .copied();
            let Some(p) = pick else { break };
            holders.insert(p);
            *standby_load.get_mut(p).expect("process") += 1;
            let m = procs[p].iter().min_by_key(|m| (out[**m].0.len() + out[**m].1.len(), **m)).expect("a member");
            out.get_mut(*m).expect("member").1.push(*t);
        }
    }
    for (a, s) in out.values_mut() {
        a.sort();
        s.sort();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: u32, p: i32) -> TaskId {
        TaskId { subtopology: s, partition: p }
    }

    fn member(process: &str, active: &[TaskId], local: &[TaskId]) -> SubscriptionInfo {
        SubscriptionInfo { process: process.into(), endpoint: None, active: active.to_vec(), standby: Vec::new(), local: local.to_vec() }
    }

    fn all_tasks(n: i32) -> Vec<TaskId> {
        (0..n).map(|p| t(0, p)).collect()
    }

    #[test]
    fn every_task_once_and_balanced_by_threads() {
        let members = vec![("a1".to_string(), member("A", &[], &[])), ("a2".to_string(), member("A", &[], &[])), ("b1".to_string(), member("B", &[], &[]))];
        let out = place(&members, &all_tasks(6), 0, |_| true);
        let mut seen: Vec<TaskId> = out.values().flat_map(|(a, _)| a.clone()).collect();
        seen.sort();
        assert_eq!(seen, all_tasks(6));
        for (m, (a, _)) in &out {
            assert_eq!(a.len(), 2, "{m}: {a:?}");
        }
    }

    #[test]
    fn sticky_and_state_aware() {
        // B held 0..3 before; A is back with local state for 3..6 (it was restarted).
        let members = vec![
            ("a".to_string(), member("A", &[], &[t(0, 3), t(0, 4), t(0, 5)])),
            ("b".to_string(), member("B", &all_tasks(6), &[])),
        ];
        let out = place(&members, &all_tasks(6), 0, |_| true);
        assert_eq!(out["a"].0, vec![t(0, 3), t(0, 4), t(0, 5)]);
        assert_eq!(out["b"].0, vec![t(0, 0), t(0, 1), t(0, 2)]);
    }

    #[test]
    fn standbys_go_to_other_processes() {
        let members = vec![("a".to_string(), member("A", &[], &[])), ("b".to_string(), member("B", &[], &[]))];
        let out = place(&members, &all_tasks(4), 1, |_| true);
        for (m, (a, s)) in &out {
            assert!(a.iter().all(|t| !s.contains(t)), "{m} has a task both active and standby");
            assert_eq!(s.len(), 2);
        }
        // Stateless tasks get no standbys.
        let out = place(&members, &all_tasks(4), 1, |_| false);
        assert!(out.values().all(|(_, s)| s.is_empty()));
    }
}
