//! [`InMemoryBackend`]: a [`KvBackend`] on a `BTreeMap`, for tests and for stores declared
//! in-memory. Nothing survives the process; on restart the store is rebuilt from its
//! changelog, so the checkpoint is kept only to honour the trait's contract.

use std::collections::BTreeMap;
use std::ops::Bound;

use super::backend::{BatchEntry, KvBackend};
use crate::error::Result;

/// A sorted map in memory with the same contract as the RocksDB backend.
#[derive(Debug, Default, Clone)]
pub struct InMemoryBackend {
    entries: BTreeMap<Vec<u8>, Vec<u8>>,
    checkpoint: Option<i64>,
}

impl InMemoryBackend {
    /// An empty store with no checkpoint.
    pub fn new() -> Self {
        Self::default()
    }
}

impl KvBackend for InMemoryBackend {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.entries.get(key).cloned())
    }

    fn range(&self, from: Option<&[u8]>, to: Option<&[u8]>, limit: usize) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        // BTreeMap::range panics when start > end; an empty or inverted range is just empty.
        if let (Some(from), Some(to)) = (from, to) {
            if from >= to {
                return Ok(Vec::new());
            }
        }
        let lower = from.map_or(Bound::Unbounded, Bound::Included);
        let upper = to.map_or(Bound::Unbounded, Bound::Excluded);
        Ok(self
            .entries
            .range::<[u8], _>((lower, upper))
            .take(limit)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn write(&mut self, batch: &[BatchEntry], checkpoint: Option<i64>) -> Result<()> {
        // Nothing here can fail half-way, so applying in place is atomic.
        for (key, value) in batch {
            match value {
                Some(value) => self.entries.insert(key.clone(), value.clone()),
                None => self.entries.remove(key.as_slice()),
            };
        }
        if checkpoint.is_some() {
            self.checkpoint = checkpoint;
        }
        Ok(())
    }

    fn checkpoint(&self) -> Result<Option<i64>> {
        Ok(self.checkpoint)
    }

    fn clear(&mut self) -> Result<()> {
        self.entries.clear();
        self.checkpoint = None;
        Ok(())
    }

    fn approximate_len(&self) -> Result<u64> {
        Ok(self.entries.len() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::conformance;

    #[test]
    fn conformance_suite() {
        conformance::run_all(&mut InMemoryBackend::new());
    }

    #[test]
    fn inverted_and_empty_ranges_do_not_panic() {
        let mut b = InMemoryBackend::new();
        b.write(&[(b"a".to_vec(), Some(b"1".to_vec()))], None).unwrap();
        assert!(b.range(Some(b"b"), Some(b"a"), 10).unwrap().is_empty());
        assert!(b.range(Some(b"a"), Some(b"a"), 10).unwrap().is_empty());
        assert!(b.range(None, None, 0).unwrap().is_empty());
    }

    #[test]
    fn approximate_len_is_exact() {
        let mut b = InMemoryBackend::new();
        let batch: Vec<BatchEntry> = (0u32..100).map(|i| (i.to_be_bytes().to_vec(), Some(vec![0]))).collect();
        b.write(&batch, Some(7)).unwrap();
        b.write(&[(0u32.to_be_bytes().to_vec(), None)], None).unwrap();
        assert_eq!(b.approximate_len().unwrap(), 99);
    }
}
