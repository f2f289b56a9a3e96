//! Partition replication, Kafka's ISR model (DESIGN §6).
//!
//! [`Replica`] is the pure state of one local replica: its role from the metadata image,
//! and on a leader the followers' progress, the high watermark and ISR changes to
//! propose. The follower side (fetching from leaders) is [`fetcher`].
//!
//! Architecture invariants:
//! - The high watermark is the minimum log end offset over the ISR, never decreases while
//!   a replica leads, and consumers never read past it.
//! - The ISR only changes through the controller (AlterPartition with the current
//!   partition epoch); a leader acts on the ISR it was given, not on the one it proposed.

pub mod fetcher;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::meta::PartitionInfo;

/// What the leader knows of one follower.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    /// The follower's log end offset (its last fetch offset), -1 until it fetches.
    pub leo: i64,
    /// Last time the follower had everything the leader had (Kafka's lastCaughtUpTime).
    pub caught_up: Instant,
    /// Leader log end offset when the follower last fetched, and when that was.
    last_fetch_leo: i64,
    last_fetch: Instant,
}

impl Progress {
    fn new(now: Instant) -> Self {
        Self { leo: -1, caught_up: now, last_fetch_leo: -1, last_fetch: now }
    }
}

/// One local replica of a partition.
#[derive(Debug, Clone)]
pub struct Replica {
    /// This broker's id.
    pub me: i32,
    /// Current leader (-1 none).
    pub leader: i32,
    /// Leader epoch from the image.
    pub leader_epoch: i32,
    /// Partition epoch from the image (ISR and assignment version).
    pub partition_epoch: i32,
    /// All replicas, preferred first.
    pub replicas: Vec<i32>,
    /// In-sync replicas.
    pub isr: Vec<i32>,
    /// The high watermark as this replica knows it.
    pub hw: i64,
    /// Leader only: followers' progress.
    pub followers: HashMap<i32, Progress>,
    /// Leader only: the ISR proposed to the controller and not yet seen in the image.
    pub pending_isr: Option<Vec<i32>>,
    /// Leader only: log end offset when this leadership began.
    pub epoch_start_offset: i64,
    /// Follower only: the leader epoch this replica has truncated its log for.
    pub truncated_for: Option<i32>,
}

impl Replica {
    /// A replica that leads nothing yet.
    pub fn new(me: i32) -> Self {
        Self {
            me,
            leader: -1,
            leader_epoch: -1,
            partition_epoch: -1,
            replicas: Vec::new(),
            isr: Vec::new(),
            hw: 0,
            followers: HashMap::new(),
            pending_isr: None,
            epoch_start_offset: 0,
            truncated_for: None,
        }
    }

    /// Whether this replica leads the partition.
    pub fn is_leader(&self) -> bool {
        self.leader == self.me
    }

    /// Applies the partition's record from a new image. Returns the role change, if any.
    pub fn apply(&mut self, info: &PartitionInfo, leo: i64, now: Instant) -> RoleChange {
        let was_leader = self.is_leader();
        let new_epoch = info.leader_epoch != self.leader_epoch;
        self.replicas = info.replicas.clone();
        self.isr = info.isr.clone();
        if info.partition_epoch != self.partition_epoch {
            self.pending_isr = None;
        }
        self.partition_epoch = info.partition_epoch;
        self.leader = info.leader;
        self.leader_epoch = info.leader_epoch;
        let change = if info.leader == self.me && (new_epoch || !was_leader) {
            self.followers = info.replicas.iter().filter(|r| **r != self.me).map(|r| (*r, Progress::new(now))).collect();
            self.epoch_start_offset = leo;
            self.truncated_for = None;
            RoleChange::BecameLeader
        } else if info.leader != self.me && (new_epoch || was_leader) {
            self.followers.clear();
            self.truncated_for = None;
            RoleChange::BecameFollower
        } else {
            RoleChange::None
        };
        if self.is_leader() {
            self.hw = self.hw.min(leo);
            self.advance_hw(leo);
        }
        change
    }

    /// Recomputes the high watermark from the ISR's log end offsets; true if it moved.
    pub fn advance_hw(&mut self, leader_leo: i64) -> bool {
        let mut min = leader_leo;
        for id in &self.isr {
            if *id == self.me {
                continue;
            }
            match self.followers.get(id) {
                Some(p) if p.leo >= 0 => min = min.min(p.leo),
                _ => return false, // a member that has not fetched yet holds the HW
            }
        }
        if min > self.hw {
            self.hw = min;
            true
        } else {
            false
        }
    }

    /// Leader side of a follower's fetch at `fetch_offset`. Returns whether the HW moved
    /// and, when the follower has caught up and is outside the ISR, the ISR to propose.
    pub fn on_follower_fetch(&mut self, id: i32, fetch_offset: i64, leader_leo: i64, now: Instant) -> (bool, Option<Vec<i32>>) {
        let Some(p) = self.followers.get_mut(&id) else { return (false, None) };
        if fetch_offset >= leader_leo {
            p.caught_up = now;
        } else if fetch_offset >= p.last_fetch_leo && p.last_fetch_leo >= 0 {
            p.caught_up = p.caught_up.max(p.last_fetch);
        }
        p.leo = fetch_offset;
        p.last_fetch_leo = leader_leo;
        p.last_fetch = now;
        let moved = self.advance_hw(leader_leo);
        let expand = (!self.isr.contains(&id) && self.pending_isr.is_none() && fetch_offset >= self.hw && fetch_offset >= self.epoch_start_offset).then(|| {
            let mut isr = self.isr.clone();
            isr.push(id);
            isr
        });
        (moved, expand)
    }

    /// ISR members that have not caught up within `lag`; the ISR to propose without them.
    pub fn shrink(&self, now: Instant, lag: Duration) -> Option<Vec<i32>> {
        if !self.is_leader() || self.pending_isr.is_some() {
            return None;
        }
        let keep: Vec<i32> = self.isr.iter().copied().filter(|id| self.caught_up(*id, now, lag)).collect();
        (keep.len() < self.isr.len()).then_some(keep)
    }

    /// ISR members that have caught up within `lag` (this replica included): what
    /// `min.insync.replicas` is checked against, so that writes are refused as soon as
    /// followers go quiet, even before the controller can shrink the ISR.
    pub fn live_isr(&self, now: Instant, lag: Duration) -> usize {
        self.isr.iter().filter(|id| self.caught_up(**id, now, lag)).count()
    }

    /// Whether replica `id` (this one always) had everything within the last `lag`.
    fn caught_up(&self, id: i32, now: Instant, lag: Duration) -> bool {
        id == self.me || self.followers.get(&id).is_some_and(|p| now.duration_since(p.caught_up) <= lag)
    }
}

/// What [`Replica::apply`] changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoleChange {
    /// Nothing the runtime must act on.
    None,
    /// Start leading: the log gets the new epoch, followers fetch from here.
    BecameLeader,
    /// Start following (or follow a new leader epoch): truncate, then fetch.
    BecameFollower,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(leader: i32, epoch: i32, isr: &[i32]) -> PartitionInfo {
        PartitionInfo { replicas: vec![1, 2, 3], isr: isr.to_vec(), leader, leader_epoch: epoch, partition_epoch: epoch }
    }

    #[test]
    fn hw_is_min_leo_over_isr_and_waits_for_every_member() {
        let now = Instant::now();
        let mut r = Replica::new(1);
        assert_eq!(r.apply(&info(1, 1, &[1, 2, 3]), 10, now), RoleChange::BecameLeader);
        assert_eq!(r.hw, 0, "followers have not fetched yet");
        assert_eq!(r.on_follower_fetch(2, 10, 10, now), (false, None));
        assert_eq!(r.on_follower_fetch(3, 7, 10, now), (true, None));
        assert_eq!(r.hw, 7);
        assert!(r.on_follower_fetch(3, 10, 10, now).0);
        assert_eq!(r.hw, 10);
        // A later HW never goes back when a follower reports less.
        assert!(!r.on_follower_fetch(3, 9, 10, now).0);
        assert_eq!(r.hw, 10);
    }

    #[test]
    fn caught_up_follower_outside_isr_is_proposed_and_laggard_is_dropped() {
        let t0 = Instant::now();
        let mut r = Replica::new(1);
        r.apply(&info(1, 2, &[1, 2]), 5, t0);
        r.on_follower_fetch(2, 5, 5, t0);
        assert_eq!(r.on_follower_fetch(3, 5, 5, t0).1, Some(vec![1, 2, 3]));
        let lag = Duration::from_secs(10);
        let later = t0 + Duration::from_secs(11);
        assert_eq!(r.shrink(later, lag), Some(vec![1]));
        assert_eq!(r.live_isr(later, lag), 1);
        assert_eq!(r.live_isr(t0, lag), 2);
    }

    #[test]
    fn role_changes_follow_the_image() {
        let now = Instant::now();
        let mut r = Replica::new(2);
        assert_eq!(r.apply(&info(1, 1, &[1, 2, 3]), 0, now), RoleChange::BecameFollower);
        assert_eq!(r.apply(&info(1, 1, &[1, 2]), 0, now), RoleChange::None);
        assert_eq!(r.apply(&info(2, 2, &[2]), 0, now), RoleChange::BecameLeader);
        assert_eq!(r.hw, 0);
        assert_eq!(r.apply(&info(3, 3, &[2, 3]), 0, now), RoleChange::BecameFollower);
    }
}
