//! Leader-epoch cache (Kafka's LeaderEpochFileCache, KIP-101): for each leader epoch the
//! first offset written in it. A follower asks the leader where its last epoch ended and
//! truncates there, which (unlike truncating to the high watermark) cannot lose acknowledged
//! records or leave replicas diverged after two quick leader changes.
//!
//! Not persisted: every batch carries the epoch that wrote it, so the partition log
//! rebuilds the cache from batch headers on open.

/// Ordered (epoch, start offset) entries, both strictly increasing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EpochCache {
    entries: Vec<(i32, i64)>,
}

impl EpochCache {
    /// Adds `(epoch, start_offset)` when `epoch` is newer than the latest entry; older or
    /// equal epochs (and the -1 of batches written without an epoch) change nothing.
    pub fn assign(&mut self, epoch: i32, start_offset: i64) {
        if epoch >= 0 && self.latest().is_none_or(|l| epoch > l) {
            self.entries.push((epoch, start_offset));
        }
    }

    /// The newest epoch, if any.
    pub fn latest(&self) -> Option<i32> {
        self.entries.last().map(|e| e.0)
    }

    /// The largest epoch <= `epoch` and the offset where it ended (the next epoch's start,
    /// or `log_end` for the latest); `None` when `epoch` predates every entry.
    pub fn end_offset_for(&self, epoch: i32, log_end: i64) -> Option<(i32, i64)> {
        let i = self.entries.partition_point(|e| e.0 <= epoch);
        let (found, _) = *self.entries.get(i.checked_sub(1)?)?;
        Some((found, self.entries.get(i).map_or(log_end, |e| e.1)))
    }

    /// Drops the entries starting at or after `offset` (the log was truncated there).
    pub fn truncate_from(&mut self, offset: i64) {
        self.entries.retain(|e| e.1 < offset);
    }

    /// Removes every entry.
    pub fn clear(&mut self) {
        self.entries.clear();
    }

    /// The entries, oldest first.
    pub fn entries(&self) -> &[(i32, i64)] {
        &self.entries
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_and_truncation() {
        let mut c = EpochCache::default();
        assert_eq!(c.end_offset_for(0, 5), None);
        c.assign(1, 0);
        c.assign(1, 4); // same epoch: ignored
        c.assign(3, 10);
        c.assign(2, 12); // older: ignored
        assert_eq!(c.entries(), &[(1, 0), (3, 10)]);
        assert_eq!(c.end_offset_for(0, 20), None);
        assert_eq!(c.end_offset_for(1, 20), Some((1, 10)));
        assert_eq!(c.end_offset_for(2, 20), Some((1, 10)));
        assert_eq!(c.end_offset_for(9, 20), Some((3, 20)));
        c.truncate_from(10);
        assert_eq!((c.latest(), c.end_offset_for(9, 8)), (Some(1), Some((1, 8))));
    }
}
