//! [`RocksBackend`]: a [`KvBackend`] on RocksDB, one DB instance per store directory.
//!
//! Memory is bounded per application instance, not per store (the idea of Kafka Streams'
//! `BoundedMemoryRocksDBConfig`): every DB opened with the same [`RocksResources`] shares
//! one LRU block cache, and one write buffer manager that charges memtable memory to that
//! cache. Index and filter blocks live in the cache too, so the cache's capacity caps
//! blocks + index/filter + memtables however many partitions and stores the app opens.
//!
//! ```text
//!   RocksResources ── Cache (block_cache_bytes) <── charged by ── WriteBufferManager
//!        │                  ▲                                     (write_buffer_bytes)
//!        ├── RocksBackend (task 0_0/store-a) ── DB: CF "default" (data), CF "samsa_meta"
//!        ├── RocksBackend (task 0_1/store-a) ── ...
//!        └── ...
//! ```
//!
//! Durability: the WAL is on and writes do not fsync. A killed process loses nothing (the
//! OS holds the WAL pages); a power loss can lose the tail, which the changelog restores
//! because the checkpoint lives in the same atomic batch as the data.

use std::fmt;
use std::path::{Path, PathBuf};

use rocksdb::properties::ESTIMATE_NUM_KEYS;
use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamily, ColumnFamilyDescriptor, DBCompressionType, FlushOptions,
    LruCacheOptions, Options, ReadOptions, WriteBatch, WriteBufferManager, WriteOptions, DB,
    DEFAULT_COLUMN_FAMILY_NAME,
};

use super::backend::{BatchEntry, KvBackend};
use crate::error::{Error, Result};

/// Column family holding Samsa's own metadata, apart from the data so scans never see it.
const META_CF: &str = "samsa_meta";
/// Key of the checkpoint (i64, big-endian) in [`META_CF`].
const CHECKPOINT_KEY: &[u8] = b"checkpoint";
/// Open SST files per DB: each costs a file handle and a table reader outside the cache.
const MAX_OPEN_FILES_PER_DB: i32 = 64;
/// Flush and compaction threads per DB; they come from the shared default `Env` pool.
const MAX_BACKGROUND_JOBS_PER_DB: i32 = 2;
/// Upper bound of one DB's data memtable, whatever the budget.
const WRITE_BUFFER_BYTES_PER_DB_MAX: usize = 16 << 20;
/// Lower bound of one DB's data memtable, so tiny budgets still make sane SST files.
const WRITE_BUFFER_BYTES_PER_DB_MIN: usize = 256 << 10;
/// Memtable arena block cap. RocksDB's default (1/8 of the memtable) makes every non-empty
/// memtable cost at least that much, and idle stores keep theirs: with many stores that
/// floor alone overshoots the write buffer budget.
const ARENA_BLOCK_BYTES_MAX: usize = 64 << 10;
/// Smallest block cache shard. Capacity is enforced per shard and the write buffer manager
/// reserves in pinned 256 KiB entries, so small shards overflow: with RocksDB's default
/// (512 KiB shards) a 16 MiB cache measured 19 MiB in use, with 4 MiB shards 16 MiB.
const CACHE_SHARD_BYTES_MIN: usize = 4 << 20;
/// Most block cache shards (RocksDB's own cap), for lock contention on big caches.
const CACHE_SHARD_BITS_MAX: u32 = 6;
/// Memtables per column family (one active, the rest flushing).
const MAX_WRITE_BUFFER_NUMBER: i32 = 2;
/// Memtable of the metadata family: it only ever holds the checkpoint.
const META_WRITE_BUFFER_BYTES: usize = 64 << 10;
/// RocksDB's info LOG files kept per DB, and their size, so logs cannot fill the disk.
const INFO_LOG_FILES_KEPT: usize = 2;
/// Size at which a DB's info LOG rolls over.
const INFO_LOG_BYTES_MAX: usize = 1 << 20;

/// Memory one application instance may give RocksDB, across all its stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RocksBudget {
    /// Capacity of the shared block cache; memtables are charged to it, so this is the total.
    pub block_cache_bytes: usize,
    /// The part of the total that memtables may use before RocksDB forces flushes.
    pub write_buffer_bytes: usize,
}

impl Default for RocksBudget {
    fn default() -> Self {
        Self { block_cache_bytes: 64 << 20, write_buffer_bytes: 32 << 20 }
    }
}

/// The cache and write buffer manager shared by every [`RocksBackend`] of one application
/// instance. Cloning is cheap (reference counts); the DBs keep their own references, so the
/// resources may be dropped before the stores.
#[derive(Clone)]
pub struct RocksResources {
    cache: Cache,
    write_buffers: WriteBufferManager,
    budget: RocksBudget,
}

impl fmt::Debug for RocksResources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RocksResources")
            .field("budget", &self.budget)
            .field("usage", &self.approximate_usage())
            .finish()
    }
}

impl RocksResources {
    /// Creates the shared cache and write buffer manager for `budget`.
    pub fn new(budget: RocksBudget) -> Result<Self> {
        if budget.block_cache_bytes == 0 || budget.write_buffer_bytes == 0 {
            return Err(Error::Config(format!("RocksDB budget sizes must be positive: {budget:?}")));
        }
        if budget.write_buffer_bytes > budget.block_cache_bytes {
            return Err(Error::Config(format!(
                "RocksDB write_buffer_bytes ({}) must not exceed block_cache_bytes ({}): \
                 memtables are charged to the cache",
                budget.write_buffer_bytes, budget.block_cache_bytes
            )));
        }
        let mut lru = LruCacheOptions::default();
        lru.set_capacity(budget.block_cache_bytes);
        lru.set_num_shard_bits(cache_shard_bits(budget.block_cache_bytes));
        let cache = Cache::new_lru_cache_opts(&lru);
        // allow_stall = false, as Kafka Streams: over the limit RocksDB flushes only the DB
        // being written, so if idle stores' memtables alone exceeded the limit a stalled
        // writer would wait forever. The limit is soft; flushes keep usage near it.
        let write_buffers =
            WriteBufferManager::new_write_buffer_manager_with_cache(budget.write_buffer_bytes, false, cache.clone());
        Ok(Self { cache, write_buffers, budget })
    }

    /// The budget these resources were made for.
    pub fn budget(&self) -> RocksBudget {
        self.budget
    }

    /// Bytes in the shared cache: data, index and filter blocks plus memtable reservations.
    pub fn approximate_usage(&self) -> usize {
        self.cache.get_usage()
    }

    /// Bytes of memtables across all DBs (already included in [`Self::approximate_usage`]).
    pub fn write_buffer_usage(&self) -> usize {
        self.write_buffers.get_usage()
    }

    /// Data memtable size of one DB: a share of the budget, so a few busy stores cannot each
    /// hold a full-size memtable.
    fn write_buffer_bytes_per_db(&self) -> usize {
        (self.budget.write_buffer_bytes / 4).clamp(WRITE_BUFFER_BYTES_PER_DB_MIN, WRITE_BUFFER_BYTES_PER_DB_MAX)
    }

    /// Column family options: the shared cache, index/filter blocks charged to it.
    fn cf_options(&self, write_buffer_bytes: usize) -> Options {
        let mut table = BlockBasedOptions::default();
        table.set_block_cache(&self.cache);
        table.set_cache_index_and_filter_blocks(true);
        table.set_pin_l0_filter_and_index_blocks_in_cache(true);
        table.set_bloom_filter(10.0, false);
        let mut opts = Options::default();
        opts.set_block_based_table_factory(&table);
        opts.set_write_buffer_size(write_buffer_bytes);
        opts.set_arena_block_size((write_buffer_bytes / 8).min(ARENA_BLOCK_BYTES_MAX));
        opts.set_max_write_buffer_number(MAX_WRITE_BUFFER_NUMBER);
        opts.set_compression_type(DBCompressionType::Lz4);
        opts
    }

    /// DB-wide options (on top of the data family's options, which also serve as defaults).
    fn db_options(&self) -> Options {
        let write_buffer_bytes = self.write_buffer_bytes_per_db();
        let mut opts = self.cf_options(write_buffer_bytes);
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_write_buffer_manager(&self.write_buffers);
        // When the manager is over its limit, RocksDB flushes the family whose active
        // memtable is oldest, which is always the tiny metadata family: memory is not
        // freed and L0 fills with tiny files (measured: 8 MiB of write buffers grew to
        // 12-30 MiB). Atomic flush flushes both families together; it also keeps the
        // metadata family from pinning old WAL files.
        opts.set_atomic_flush(true);
        opts.set_max_open_files(MAX_OPEN_FILES_PER_DB);
        opts.set_max_background_jobs(MAX_BACKGROUND_JOBS_PER_DB);
        opts.set_keep_log_file_num(INFO_LOG_FILES_KEPT);
        opts.set_max_log_file_size(INFO_LOG_BYTES_MAX);
        opts
    }
}

/// Shard bits giving shards of at least [`CACHE_SHARD_BYTES_MIN`] (one shard for small caches).
fn cache_shard_bits(capacity_bytes: usize) -> i32 {
    let shards = (capacity_bytes / CACHE_SHARD_BYTES_MIN).max(1);
    shards.ilog2().min(CACHE_SHARD_BITS_MAX) as i32
}

/// A state store's bytes in one RocksDB instance: data in the default column family, the
/// checkpoint in `samsa_meta`.
pub struct RocksBackend {
    db: DB,
    path: PathBuf,
    write_options: WriteOptions,
}

impl fmt::Debug for RocksBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RocksBackend").field("path", &self.path).finish()
    }
}

/// A store error naming the DB's path and the failed operation.
fn store_error(path: &Path, what: &str, e: impl fmt::Display) -> Error {
    Error::Store(format!("RocksDB at {}: {what}: {e}", path.display()))
}

impl RocksBackend {
    /// Opens (creating if needed) the store in directory `path`, drawing memory from `resources`.
    pub fn open(path: &Path, resources: &RocksResources) -> Result<RocksBackend> {
        std::fs::create_dir_all(path).map_err(|e| store_error(path, "create directory", e))?;
        let data = ColumnFamilyDescriptor::new(
            DEFAULT_COLUMN_FAMILY_NAME,
            resources.cf_options(resources.write_buffer_bytes_per_db()),
        );
        let meta = ColumnFamilyDescriptor::new(META_CF, resources.cf_options(META_WRITE_BUFFER_BYTES));
        let db = DB::open_cf_descriptors(&resources.db_options(), path, [data, meta])
            .map_err(|e| store_error(path, "open", e))?;
        let mut write_options = WriteOptions::default();
        write_options.set_sync(false);
        write_options.disable_wal(false);
        Ok(RocksBackend { db, path: path.to_path_buf(), write_options })
    }

    /// The store's directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Flushes memtables to SST files and closes the DB, so the next open replays no WAL.
    /// Dropping without `close` loses nothing either: the WAL is replayed on open.
    pub fn close(self) -> Result<()> {
        // Dropping `db` afterwards waits for running background jobs, then closes.
        self.flush()
    }

    /// Writes both memtables to SST files (one atomic flush, waited for), which releases
    /// their share of the write buffer budget and the WAL. RocksDB only flushes the DB being
    /// written when the budget is exceeded, so an idle store keeps its memtable until this.
    pub fn flush(&self) -> Result<()> {
        let data = self
            .db
            .cf_handle(DEFAULT_COLUMN_FAMILY_NAME)
            .ok_or_else(|| self.error("flush", "default column family missing"))?;
        // Both families in one atomic flush (waits for it to finish).
        self.db
            .flush_cfs_opt(&[data, self.meta()?], &FlushOptions::default())
            .map_err(|e| self.error("flush", e))
    }

    fn error(&self, what: &str, e: impl fmt::Display) -> Error {
        store_error(&self.path, what, e)
    }

    fn meta(&self) -> Result<&ColumnFamily> {
        self.db.cf_handle(META_CF).ok_or_else(|| self.error("open", format!("column family {META_CF} missing")))
    }
}

impl KvBackend for RocksBackend {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.db.get(key).map_err(|e| self.error("get", e))
    }

    fn range(&self, from: Option<&[u8]>, to: Option<&[u8]>, limit: usize) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        if limit == 0 || matches!((from, to), (Some(f), Some(t)) if f >= t) {
            return Ok(Vec::new());
        }
        let mut read_options = ReadOptions::default();
        if let Some(from) = from {
            read_options.set_iterate_lower_bound(from);
        }
        if let Some(to) = to {
            // Bounds let RocksDB skip blocks (and range tombstones) past the end.
            read_options.set_iterate_upper_bound(to);
        }
        let mut iter = self.db.raw_iterator_opt(read_options);
        match from {
            Some(from) => iter.seek(from),
            None => iter.seek_to_first(),
        }
        let mut out = Vec::new();
        while out.len() < limit {
            match iter.item() {
                Some((k, v)) => out.push((k.to_vec(), v.to_vec())),
                None => break,
            }
            iter.next();
        }
        // An invalid iterator is either the end or an I/O error; only `status` tells.
        iter.status().map_err(|e| self.error("range scan", e))?;
        Ok(out)
    }

    fn write(&mut self, batch: &[BatchEntry], checkpoint: Option<i64>) -> Result<()> {
        if batch.is_empty() && checkpoint.is_none() {
            return Ok(());
        }
        // One WriteBatch across both families: RocksDB applies it atomically, and WAL
        // recovery replays it whole or not at all.
        let mut wb = WriteBatch::default();
        for (key, value) in batch {
            match value {
                Some(value) => wb.put(key, value),
                None => wb.delete(key),
            }
        }
        if let Some(checkpoint) = checkpoint {
            wb.put_cf(self.meta()?, CHECKPOINT_KEY, checkpoint.to_be_bytes());
        }
        self.db.write_opt(wb, &self.write_options).map_err(|e| self.error("write", e))
    }

    fn checkpoint(&self) -> Result<Option<i64>> {
        let Some(bytes) = self.db.get_cf(self.meta()?, CHECKPOINT_KEY).map_err(|e| self.error("read checkpoint", e))?
        else {
            return Ok(None);
        };
        let bytes: [u8; 8] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| self.error("read checkpoint", format!("corrupt value of {} bytes, expected 8", bytes.len())))?;
        Ok(Some(i64::from_be_bytes(bytes)))
    }

    fn clear(&mut self) -> Result<()> {
        // The default column family cannot be dropped, so delete its whole key range. Keys
        // are unbounded bytes, so the exclusive end is the last key followed by 0x00: the
        // smallest key after it.
        let end = {
            let mut iter = self.db.raw_iterator();
            iter.seek_to_last();
            let end = iter.key().map(|last| [last, &[0u8]].concat());
            iter.status().map_err(|e| self.error("clear", e))?;
            end
        };
        let mut wb = WriteBatch::default();
        if let Some(end) = &end {
            wb.delete_range(&b""[..], end.as_slice());
        }
        wb.delete_cf(self.meta()?, CHECKPOINT_KEY);
        // Data and checkpoint go together: a crash mid-clear leaves the old store whole.
        self.db.write_opt(wb, &self.write_options).map_err(|e| self.error("clear", e))?;
        if let Some(end) = end {
            // Reclaim the disk now: drop SST files wholly inside the range, then compact the
            // rest (L0 files, the tombstone itself), which also resets estimate-num-keys.
            self.db.delete_file_in_range(&b""[..], end.as_slice()).map_err(|e| self.error("clear", e))?;
            self.db.compact_range(None::<&[u8]>, None::<&[u8]>);
        }
        Ok(())
    }

    fn approximate_len(&self) -> Result<u64> {
        let n = self.db.property_int_value(ESTIMATE_NUM_KEYS).map_err(|e| self.error("estimate-num-keys", e))?;
        Ok(n.unwrap_or(0))
    }

    fn flush(&self) -> Result<()> {
        RocksBackend::flush(self)
    }
}

/// Deletes the store at `path` and its directory; fails if a DB there is open.
pub fn destroy(path: &Path) -> Result<()> {
    if !path.exists() {
        return Ok(());
    }
    // DB::destroy takes the DB's lock first, so an open store is refused, not wiped.
    DB::destroy(&Options::default(), path).map_err(|e| store_error(path, "destroy", e))?;
    match std::fs::remove_dir_all(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(store_error(path, "remove directory", e)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::conformance;

    fn small() -> RocksResources {
        RocksResources::new(RocksBudget { block_cache_bytes: 8 << 20, write_buffer_bytes: 4 << 20 }).unwrap()
    }

    #[test]
    fn conformance_suite() {
        let dir = tempfile::tempdir().unwrap();
        let mut b = RocksBackend::open(&dir.path().join("s"), &small()).unwrap();
        conformance::run_all(&mut b);
    }

    #[test]
    fn data_and_checkpoint_survive_reopen_together() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store");
        let resources = small();
        {
            let mut b = RocksBackend::open(&path, &resources).unwrap();
            b.write(&[(b"a".to_vec(), Some(b"1".to_vec())), (b"b".to_vec(), Some(b"2".to_vec()))], Some(5)).unwrap();
            // Dropped without close: the WAL must carry both families.
        }
        {
            let mut b = RocksBackend::open(&path, &resources).unwrap();
            assert_eq!(b.checkpoint().unwrap(), Some(5));
            assert_eq!(b.get(b"b").unwrap().as_deref(), Some(&b"2"[..]));
            let batch: Vec<BatchEntry> =
                (0u32..5000).map(|i| (i.to_be_bytes().to_vec(), Some(vec![i as u8; 100]))).collect();
            b.write(&batch, Some(6)).unwrap();
            b.write(&[(b"a".to_vec(), None)], Some(7)).unwrap();
            b.close().unwrap();
        }
        let b = RocksBackend::open(&path, &resources).unwrap();
        assert_eq!(b.checkpoint().unwrap(), Some(7));
        assert_eq!(b.get(b"a").unwrap(), None);
        assert_eq!(b.get(&4999u32.to_be_bytes()).unwrap(), Some(vec![4999u32 as u8; 100]));
        assert_eq!(b.range(None, None, usize::MAX).unwrap().len(), 5001);
    }

    /// A batch and its checkpoint become visible together, even when the process dies right
    /// after the write: a child process writes and aborts (no destructors, no flush).
    #[test]
    fn batch_and_checkpoint_atomic_across_abort() {
        const CHILD_ENV: &str = "SAMSA_ROCKS_ABORT_CHILD_DIR";
        if let Ok(dir) = std::env::var(CHILD_ENV) {
            let mut b = RocksBackend::open(Path::new(&dir), &small()).unwrap();
            for round in 0..20i64 {
                let batch: Vec<BatchEntry> =
                    (0..500).map(|i| (format!("k{i:04}").into_bytes(), Some(round.to_be_bytes().to_vec()))).collect();
                b.write(&batch, Some(round)).unwrap();
            }
            std::process::abort();
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store");
        let status = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "store::rocks::tests::batch_and_checkpoint_atomic_across_abort", "--nocapture"])
            .env(CHILD_ENV, &path)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(!status.success(), "the child must die by abort");
        let b = RocksBackend::open(&path, &small()).unwrap();
        let checkpoint = b.checkpoint().unwrap().expect("checkpoint after the child's writes");
        assert_eq!(checkpoint, 19);
        let entries = b.range(None, None, usize::MAX).unwrap();
        assert_eq!(entries.len(), 500);
        for (_, v) in entries {
            assert_eq!(v, checkpoint.to_be_bytes().to_vec(), "data from another batch than the checkpoint");
        }
    }

    #[test]
    fn second_open_of_same_path_fails_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("locked");
        let _b = RocksBackend::open(&path, &small()).unwrap();
        let err = RocksBackend::open(&path, &small()).unwrap_err().to_string();
        assert!(err.contains(&path.display().to_string()), "{err}");
        // destroy refuses an open store too.
        let err = destroy(&path).unwrap_err().to_string();
        assert!(err.contains("destroy"), "{err}");
        assert!(path.join("CURRENT").exists());
    }

    #[test]
    fn destroy_wipes_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gone");
        {
            let mut b = RocksBackend::open(&path, &small()).unwrap();
            b.write(&[(b"k".to_vec(), Some(b"v".to_vec()))], Some(1)).unwrap();
        }
        destroy(&path).unwrap();
        assert!(!path.exists());
        destroy(&path).unwrap();
        let b = RocksBackend::open(&path, &small()).unwrap();
        assert_eq!(b.get(b"k").unwrap(), None);
        assert_eq!(b.checkpoint().unwrap(), None);
    }

    #[test]
    fn cache_shards_are_at_least_4_mib() {
        assert_eq!(cache_shard_bits(1 << 20), 0);
        assert_eq!(cache_shard_bits(16 << 20), 2);
        assert_eq!(cache_shard_bits(64 << 20), 4);
        assert_eq!(cache_shard_bits(1 << 40), 6);
    }

    #[test]
    fn budget_is_validated() {
        assert!(RocksResources::new(RocksBudget { block_cache_bytes: 1 << 20, write_buffer_bytes: 2 << 20 }).is_err());
        assert!(RocksResources::new(RocksBudget { block_cache_bytes: 0, write_buffer_bytes: 0 }).is_err());
        assert!(RocksResources::new(RocksBudget::default()).is_ok());
    }

    /// Many stores on one small budget: usage stays near the cache capacity, not N times it.
    #[test]
    fn many_stores_share_one_bounded_budget() {
        const STORES: usize = 24;
        const BYTES_PER_STORE: usize = 2 << 20;
        const VALUE_BYTES: usize = 200;
        let budget = RocksBudget { block_cache_bytes: 16 << 20, write_buffer_bytes: 8 << 20 };
        let resources = RocksResources::new(budget).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut stores: Vec<RocksBackend> =
            (0..STORES).map(|i| RocksBackend::open(&dir.path().join(format!("s{i}")), &resources).unwrap()).collect();

        let mut peak = 0;
        let keys_per_store = BYTES_PER_STORE / VALUE_BYTES;
        for (s, store) in stores.iter_mut().enumerate() {
            for chunk in (0..keys_per_store).collect::<Vec<_>>().chunks(1000) {
                let batch: Vec<BatchEntry> = chunk
                    .iter()
                    .map(|&i| {
                        // Varied bytes so lz4 cannot shrink the data to nothing.
                        let v: Vec<u8> = (0..VALUE_BYTES).map(|j| ((i * 31 + j * 7 + s) % 251) as u8).collect();
                        (format!("key-{i:08}").into_bytes(), Some(v))
                    })
                    .collect();
                store.write(&batch, Some(chunk[0] as i64)).unwrap();
                peak = peak.max(resources.approximate_usage());
            }
        }
        // Read everything back so data, index and filter blocks compete for the cache.
        for store in &stores {
            for i in (0..keys_per_store).step_by(7) {
                assert!(store.get(format!("key-{i:08}").as_bytes()).unwrap().is_some());
            }
            assert_eq!(store.range(None, None, usize::MAX).unwrap().len(), keys_per_store);
            peak = peak.max(resources.approximate_usage());
        }
        let end = resources.approximate_usage();
        println!(
            "{STORES} stores x {} MiB written, budget {} MiB cache / {} MiB write buffers: \
             usage at end {:.1} MiB (write buffers {:.1} MiB), peak {:.1} MiB",
            BYTES_PER_STORE >> 20,
            budget.block_cache_bytes >> 20,
            budget.write_buffer_bytes >> 20,
            end as f64 / (1 << 20) as f64,
            resources.write_buffer_usage() as f64 / (1 << 20) as f64,
            peak as f64 / (1 << 20) as f64,
        );
        // Only pinned entries (memtable reservations, L0 index/filter blocks) can push the
        // cache past its capacity; measured: exactly at capacity.
        let slack = budget.block_cache_bytes / 8;
        assert!(end <= budget.block_cache_bytes + slack, "usage {end} over budget");
        assert!(peak <= budget.block_cache_bytes + slack, "peak {peak} over budget");
        // Idle stores keep their last memtable (RocksDB flushes only the DB being written
        // when the manager is over its limit), so write buffers overshoot a little.
        let write_buffers = resources.write_buffer_usage();
        assert!(write_buffers <= budget.write_buffer_bytes * 5 / 4, "write buffers {write_buffers} over budget");
        // Flushing hands the idle stores' memtable memory back.
        for store in &stores {
            store.flush().unwrap();
        }
        let flushed = resources.write_buffer_usage();
        println!("after flushing every store: write buffers {:.2} MiB", flushed as f64 / (1 << 20) as f64);
        assert!(flushed <= budget.write_buffer_bytes / 8, "write buffers {flushed} after flush");
    }
}
