//! The bytes-level storage under every state store: RocksDB ([`super::rocks`]) or memory
//! ([`super::memory`]). Typed stores, the uncommitted overlay and changelogging live above it.

use crate::error::Result;

/// One write of a batch: `Some(value)` puts, `None` deletes.
pub type BatchEntry = (Vec<u8>, Option<Vec<u8>>);

/// Sorted bytes-to-bytes storage with a durable checkpoint. Implementations apply each
/// [`KvBackend::write`] atomically: after a crash the contents and the checkpoint always
/// belong to the same batch, so a restore from the checkpoint is exact.
pub trait KvBackend: Send {
    /// The value stored under `key`.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>>;
    /// Entries with `from <= key < to` (`None`: unbounded) in key order, at most `limit`.
    fn range(&self, from: Option<&[u8]>, to: Option<&[u8]>, limit: usize) -> Result<Vec<(Vec<u8>, Vec<u8>)>>;
    /// Applies `batch` in order and, when given, records `checkpoint` (the next changelog
    /// offset the contents reflect), all in one atomic write.
    fn write(&mut self, batch: &[BatchEntry], checkpoint: Option<i64>) -> Result<()>;
    /// The checkpoint last written; `None` when unknown (restore from the changelog start).
    fn checkpoint(&self) -> Result<Option<i64>>;
    /// Deletes every entry and the checkpoint.
    fn clear(&mut self) -> Result<()>;
    /// Number of entries (an estimate for RocksDB).
    fn approximate_len(&self) -> Result<u64>;
    /// Moves buffered writes to disk, freeing their memory (a no-op in memory).
    fn flush(&self) -> Result<()> {
        Ok(())
    }
}
