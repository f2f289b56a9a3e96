//! A partition's log: an ordered set of segments, the log start offset, the next offset to
//! assign (the log end offset), and two caches rebuilt from batch headers on open: the
//! leader-epoch cache and the idempotent producer state.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use samsa_client::wire::batch::{self, BatchError, BatchHeader};
use tracing::{info, warn};

use super::epochs::EpochCache;
use super::producers::{encode_marker, parse_marker, AbortedTxn, Marker, MarkerError, ProducerState, SeqCheck, SeqError};
use super::segment::{file_name, Recovery, Segment};
use crate::config::LogConfig;

const LOG_START_FILE: &str = "log-start-offset";

/// The result of an append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    /// Offset given to the first record.
    pub base_offset: i64,
    /// Offset of the last record.
    pub last_offset: i64,
    /// Append time stamped on the batches, when the topic uses LogAppendTime.
    pub log_append_time: Option<i64>,
}

/// Why a follower could not append batches fetched from the leader.
#[derive(Debug, thiserror::Error)]
pub enum ReplicaAppendError {
    /// The disk failed.
    #[error("replica append failed: {0}")]
    Io(#[from] io::Error),
    /// The bytes are not batches that continue this log.
    #[error("invalid replicated batches: {0}")]
    Invalid(String),
}

/// Why a transaction marker was not written.
#[derive(Debug, thiserror::Error)]
pub enum MarkerAppendError {
    /// The marker is stale.
    #[error(transparent)]
    Refused(#[from] MarkerError),
    /// The disk failed.
    #[error("marker append failed: {0}")]
    Io(#[from] io::Error),
}

/// One partition's durable log.
#[derive(Debug)]
pub struct PartitionLog {
    dir: PathBuf,
    config: LogConfig,
    segments: BTreeMap<i64, Segment>,
    log_start_offset: i64,
    unflushed_records: i64,
    last_flush_ms: i64,
    epochs: EpochCache,
    producers: ProducerState,
}

impl PartitionLog {
    /// Opens (or creates) the log in `dir`, recovering each segment's tail.
    pub fn open(dir: &Path, config: LogConfig, now_ms: i64) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let mut bases: Vec<i64> = std::fs::read_dir(dir)?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                name.strip_suffix(".log")?.parse::<i64>().ok()
            })
            .collect();
        bases.sort_unstable();
        // Leftovers of an interrupted compaction swap: the original is still in place.
        for e in std::fs::read_dir(dir)?.filter_map(|e| e.ok()) {
            if e.file_name().to_string_lossy().ends_with(".cleaned") {
                let _ = std::fs::remove_file(e.path());
            }
        }
        let mut segments = BTreeMap::new();
        for base in bases {
            let (seg, Recovery { truncated_bytes, index_rebuilt }) = Segment::open(dir, base, config.index_interval_bytes)?;
            if truncated_bytes > 0 {
                warn!(dir = %dir.display(), segment = base, truncated_bytes, "recovered segment: dropped a torn or corrupt tail");
            } else if index_rebuilt {
                info!(dir = %dir.display(), segment = base, "rebuilt segment index");
            }
            segments.insert(base, seg);
        }
        if segments.is_empty() {
            segments.insert(0, Segment::create(dir, 0, now_ms)?);
        }
        let stored_start = std::fs::read_to_string(dir.join(LOG_START_FILE)).ok().and_then(|s| s.trim().parse::<i64>().ok());
        let first_base = *segments.keys().next().expect("at least one segment");
        let mut log = Self {
            dir: dir.to_path_buf(),
            config,
            segments,
            log_start_offset: stored_start.unwrap_or(first_base).max(first_base),
            unflushed_records: 0,
            last_flush_ms: now_ms,
            epochs: EpochCache::default(),
            producers: ProducerState::default(),
        };
        // An empty tail segment can follow a torn roll; the end offset comes from the
        // segment before it in that case.
        log.log_start_offset = log.log_start_offset.min(log.log_end_offset());
        log.rescan(true)?;
        Ok(log)
    }

    /// Rebuilds the producer state, and with `epochs` the epoch cache, from every stored
    /// batch header: both are derived data, so the log itself is their only record.
    fn rescan(&mut self, epochs: bool) -> io::Result<()> {
        self.producers = ProducerState::default();
        if epochs {
            self.epochs.clear();
        }
        for seg in self.segments.values() {
            for (pos, h) in seg.batches()? {
                if epochs {
                    self.epochs.assign(h.partition_leader_epoch, h.base_offset);
                }
                let marker = if h.is_control() && h.producer_id >= 0 { parse_marker(&seg.read_at(pos, h.total_len())?) } else { None };
                self.producers.record(&h, marker);
            }
        }
        self.producers.prune_aborted(self.log_start_offset);
        Ok(())
    }

    /// Directory holding the segments.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Effective config.
    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    /// Replaces the config (after AlterConfigs).
    pub fn set_config(&mut self, config: LogConfig) {
        self.config = config;
    }

    fn active(&self) -> &Segment {
        self.segments.values().next_back().expect("a log always has an active segment")
    }

    /// First offset still readable.
    pub fn log_start_offset(&self) -> i64 {
        self.log_start_offset
    }

    /// Next offset to be assigned.
    pub fn log_end_offset(&self) -> i64 {
        let active = self.active();
        if active.size() == 0 {
            // A freshly rolled segment: its base is the next offset.
            active.base_offset().max(active.next_offset())
        } else {
            active.next_offset()
        }
    }

    /// Total bytes in all segments.
    pub fn size_bytes(&self) -> u64 {
        self.segments.values().map(Segment::size).sum()
    }

    /// Number of segments.
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// Records that this replica leads from `start_offset` in `epoch`; ignored unless
    /// `epoch` is newer than the latest cached one.
    pub fn assign_epoch(&mut self, epoch: i32, start_offset: i64) {
        self.epochs.assign(epoch, start_offset);
    }

    /// The newest leader epoch in the cache.
    pub fn latest_epoch(&self) -> Option<i32> {
        self.epochs.latest()
    }

    /// The largest cached epoch <= `epoch` and its end offset (the next epoch's start, or
    /// the log end offset for the latest), as OffsetForLeaderEpoch answers; `None` when the
    /// cache is empty or `epoch` predates it.
    pub fn end_offset_for_epoch(&self, epoch: i32) -> Option<(i32, i64)> {
        self.epochs.end_offset_for(epoch, self.log_end_offset())
    }

    /// The epoch cache's (epoch, start offset) entries, oldest first.
    pub fn epoch_entries(&self) -> &[(i32, i64)] {
        self.epochs.entries()
    }

    /// Judges a produce request's batches against the idempotent producer state: all new
    /// -> `Append`, a retry -> the original offsets, anything else an error.
    pub fn check_producer(&self, headers: &[BatchHeader]) -> Result<SeqCheck, SeqError> {
        self.producers.check_all(headers)
    }

    /// Number of producer ids with idempotence state in this partition.
    pub fn producer_count(&self) -> usize {
        self.producers.len()
    }

    /// The producer state (open transactions, aborted index, per-producer facts).
    pub fn producers(&self) -> &ProducerState {
        &self.producers
    }

    /// First offset of the oldest open transaction, if any.
    pub fn first_unstable_offset(&self) -> Option<i64> {
        self.producers.first_unstable_offset()
    }

    /// Aborted transactions overlapping `[from, to)`.
    pub fn aborted_between(&self, from: i64, to: i64) -> Vec<AbortedTxn> {
        self.producers.aborted_between(from, to)
    }

    /// Forgets producers idle since before `horizon` without an open transaction.
    pub fn expire_producers(&mut self, horizon: i64) -> usize {
        self.producers.expire(horizon)
    }

    /// Appends a transaction marker for `producer_id` as leader in `leader_epoch`, after
    /// checking it against the producer's epoch and the coordinator epoch.
    pub fn append_marker(&mut self, producer_id: i64, producer_epoch: i16, marker: Marker, leader_epoch: i32, now_ms: i64) -> Result<AppendInfo, MarkerAppendError> {
        self.producers.check_marker(producer_id, producer_epoch, marker.coordinator_epoch)?;
        let mut bytes = encode_marker(producer_id, producer_epoch, marker, now_ms);
        let header = batch::check_batch(&bytes).map_err(|e| MarkerAppendError::Io(io::Error::other(e.to_string())))?;
        Ok(self.append(&mut bytes, &[header], leader_epoch, now_ms)?)
    }

    /// Appends validated producer batches (`headers` describe `bytes` in order) as leader in
    /// `leader_epoch`, assigning offsets from the log end offset. Rolls the active segment
    /// by size or age first. Sequence checks are the caller's ([`Self::check_producer`]).
    pub fn append(&mut self, bytes: &mut [u8], headers: &[BatchHeader], leader_epoch: i32, now_ms: i64) -> io::Result<AppendInfo> {
        let base_offset = self.log_end_offset();
        let mut next = base_offset;
        let mut pos = 0usize;
        let mut assigned = Vec::with_capacity(headers.len());
        let append_time = self.config.log_append_time.then_some(now_ms);
        for h in headers {
            let len = h.total_len();
            let b = &mut bytes[pos..pos + len];
            batch::set_base_offset(b, next);
            batch::set_partition_leader_epoch(b, leader_epoch);
            if let Some(t) = append_time {
                batch::set_log_append_time(b, t);
            }
            let mut h2 = *h;
            h2.base_offset = next;
            h2.partition_leader_epoch = leader_epoch;
            if let Some(t) = append_time {
                h2.max_timestamp = t;
            }
            assigned.push(h2);
            next += i64::from(h.last_offset_delta) + 1;
            pos += len;
        }
        self.store(bytes, &assigned, now_ms)?;
        Ok(AppendInfo { base_offset, last_offset: next - 1, log_append_time: append_time })
    }

    /// Appends batches fetched from the leader, which already carry their offsets and
    /// epochs, byte for byte. Offsets must start at or past the log end offset and
    /// increase (compaction leaves gaps); a partial batch at the end (a fetch response cut at its size limit,
    /// KIP-74) is left for the next fetch. With no whole batch nothing is written and
    /// `last_offset` is `base_offset - 1`.
    pub fn append_replicated(&mut self, bytes: &[u8], now_ms: i64) -> Result<AppendInfo, ReplicaAppendError> {
        let leo = self.log_end_offset();
        let mut headers: Vec<BatchHeader> = Vec::new();
        let mut pos = 0;
        let mut next = leo;
        while pos < bytes.len() {
            let h = match batch::check_batch(&bytes[pos..]) {
                Ok(h) => h,
                Err(BatchError::Truncated { .. }) => break,
                Err(e) => return Err(ReplicaAppendError::Invalid(format!("batch at byte {pos}: {e}"))),
            };
            // Compaction on the leader may leave gaps (also before the first batch), never overlaps.
            let ok = h.base_offset >= next;
            if !ok || h.last_offset_delta < 0 {
                return Err(ReplicaAppendError::Invalid(format!(
                    "expected a batch starting at or after offset {next}, got offsets {}..={}",
                    h.base_offset,
                    h.last_offset()
                )));
            }
            next = h.last_offset() + 1;
            pos += h.total_len();
            headers.push(h);
        }
        let Some(first) = headers.first() else {
            return Ok(AppendInfo { base_offset: leo, last_offset: leo - 1, log_append_time: None });
        };
        let base_offset = first.base_offset;
        self.store(&bytes[..pos], &headers, now_ms)?;
        Ok(AppendInfo { base_offset, last_offset: next - 1, log_append_time: None })
    }

    /// Writes batches with final offsets to the active segment (rolling first if due) and
    /// feeds them to the epoch cache and producer state.
    fn store(&mut self, bytes: &[u8], headers: &[BatchHeader], now_ms: i64) -> io::Result<()> {
        self.maybe_roll(bytes.len() as u64, now_ms)?;
        let interval = self.config.index_interval_bytes;
        let active = self.segments.values_mut().next_back().expect("active segment");
        active.append(bytes, headers, interval, now_ms)?;
        let mut pos = 0;
        for h in headers {
            let len = h.total_len();
            let marker = if h.is_control() && h.producer_id >= 0 { parse_marker(&bytes[pos..pos + len]) } else { None };
            pos += len;
            self.epochs.assign(h.partition_leader_epoch, h.base_offset);
            self.producers.record(h, marker);
            self.unflushed_records += i64::from(h.last_offset_delta) + 1;
        }
        if self.unflushed_records >= self.config.flush_messages {
            self.flush(now_ms)?;
        }
        Ok(())
    }

    /// Removes every batch whose last offset is at or past `offset`, so the log ends on a
    /// batch boundary at or below it (a follower dropping what diverged from its leader).
    /// Cutting below the log start, or into the batch holding it, empties the log as
    /// [`Self::reset_to`] does. A no-op when `offset` is at or past the log end.
    pub fn truncate_to(&mut self, offset: i64) -> io::Result<()> {
        if offset >= self.log_end_offset() {
            return Ok(());
        }
        let base = match self.segments.range(..=offset).next_back() {
            Some((&base, _)) if offset >= self.log_start_offset => base,
            _ => return self.reset_to(offset),
        };
        // The newest segments go first, so a crash part way leaves a shorter log, never one
        // with a hole in it.
        for (_, seg) in self.segments.split_off(&(base + 1)).into_iter().rev() {
            seg.delete()?;
        }
        self.segments.get_mut(&base).expect("segment at base").truncate_to_offset(offset)?;
        let leo = self.log_end_offset();
        if leo < self.log_start_offset {
            return self.reset_to(offset);
        }
        self.epochs.truncate_from(leo);
        self.rescan(false)
    }

    /// Deletes every segment and starts an empty log at `offset` (log start = log end =
    /// `offset`), forgetting epochs and producers: for a follower whose log lies wholly
    /// below the leader's log start.
    pub fn reset_to(&mut self, offset: i64) -> io::Result<()> {
        // Order for crashes: segments at or past `offset` go, then the new empty segment and
        // the new start are written, and only then the older segments, which a reopen
        // ignores once the start has moved past them.
        for (_, seg) in self.segments.split_off(&offset).into_iter().rev() {
            seg.delete()?;
        }
        let seg = Segment::create(&self.dir, offset, self.last_flush_ms)?;
        let older = std::mem::replace(&mut self.segments, BTreeMap::from([(offset, seg)]));
        self.log_start_offset = offset;
        self.write_log_start()?;
        for (_, seg) in older {
            seg.delete()?;
        }
        self.epochs.clear();
        self.producers = ProducerState::default();
        self.unflushed_records = 0;
        Ok(())
    }

    fn maybe_roll(&mut self, incoming: u64, now_ms: i64) -> io::Result<()> {
        let active = self.active();
        let too_big = active.size() > 0 && active.size() + incoming > self.config.segment_bytes;
        let too_old = active.size() > 0 && now_ms - active.created_ms() >= self.config.segment_ms;
        if too_big || too_old {
            self.roll(now_ms)?;
        }
        Ok(())
    }

    /// Closes the active segment and starts a new one at the log end offset.
    pub fn roll(&mut self, now_ms: i64) -> io::Result<()> {
        let next = self.log_end_offset();
        self.active().flush()?;
        if self.segments.contains_key(&next) {
            return Ok(());
        }
        let seg = Segment::create(&self.dir, next, now_ms)?;
        self.segments.insert(next, seg);
        Ok(())
    }

    /// Reads batches from `offset` (which must lie in `[log_start, log_end]`) up to
    /// `max_bytes`; with `min_one` the first batch comes whole even when larger.
    pub fn read(&self, offset: i64, max_bytes: usize, min_one: bool) -> io::Result<Vec<u8>> {
        self.read_upto(offset, self.log_end_offset(), max_bytes, min_one)
    }

    /// Like [`Self::read`], but stops before the first batch based at or past `end_offset`
    /// (the high watermark, which always falls on a batch boundary).
    pub fn read_upto(&self, offset: i64, end_offset: i64, max_bytes: usize, min_one: bool) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        let start = offset.max(self.log_start_offset);
        for (_, seg) in self.segments.range(..=start).next_back().into_iter().chain(self.segments.range(start + 1..end_offset.max(start + 1))) {
            if seg.next_offset() <= start {
                continue;
            }
            let budget = max_bytes.saturating_sub(out.len());
            let (chunk, stopped) = seg.read(start.max(seg.base_offset()), end_offset, budget, min_one && out.is_empty())?;
            out.extend_from_slice(&chunk);
            if stopped {
                break; // the next batch is past the budget or the end offset
            }
        }
        Ok(out)
    }

    /// The first offset whose batch's max timestamp is at or after `ts`, with that batch's
    /// header (the caller can decode it to find the exact record).
    pub fn batch_for_timestamp(&self, ts: i64) -> io::Result<Option<(Vec<u8>, BatchHeader)>> {
        for seg in self.segments.values() {
            if let Some((pos, h)) = seg.first_batch_at_or_after(ts)? {
                if h.last_offset() < self.log_start_offset {
                    continue;
                }
                return Ok(Some((seg.read_at(pos, h.total_len())?, h)));
            }
        }
        Ok(None)
    }

    /// Largest record timestamp in the log, -1 when empty (for ListOffsets MAX_TIMESTAMP).
    pub fn max_timestamp(&self) -> i64 {
        self.segments.values().map(Segment::max_timestamp).max().unwrap_or(-1)
    }

    /// Moves the log start offset forward (DeleteRecords), deleting whole segments below it.
    pub fn delete_records_before(&mut self, offset: i64) -> io::Result<i64> {
        let offset = offset.min(self.log_end_offset());
        if offset > self.log_start_offset {
            self.log_start_offset = offset;
            self.write_log_start()?;
            self.delete_segments_below_start()?;
            self.producers.prune_aborted(self.log_start_offset);
        }
        Ok(self.log_start_offset)
    }

    fn write_log_start(&self) -> io::Result<()> {
        let tmp = self.dir.join(format!("{LOG_START_FILE}.tmp"));
        std::fs::write(&tmp, self.log_start_offset.to_string())?;
        std::fs::rename(&tmp, self.dir.join(LOG_START_FILE))
    }

    fn delete_segments_below_start(&mut self) -> io::Result<()> {
        let doomed: Vec<i64> = self
            .segments
            .iter()
            .rev()
            .skip(1) // never the active segment
            .filter(|(_, s)| s.next_offset() <= self.log_start_offset)
            .map(|(b, _)| *b)
            .collect();
        for b in doomed {
            if let Some(s) = self.segments.remove(&b) {
                s.delete()?;
            }
        }
        Ok(())
    }

    /// Applies time and size retention (when the topic's policy includes `delete`),
    /// deleting whole closed segments. Returns how many were deleted.
    pub fn apply_retention(&mut self, now_ms: i64) -> io::Result<usize> {
        if !self.config.delete {
            return Ok(0);
        }
        // An active segment entirely past time retention is rolled so that it can be
        // deleted below, as Kafka does; the new active segment starts empty.
        let active = self.active();
        if self.config.retention_ms >= 0 && active.size() > 0 && active.max_timestamp() >= 0 && now_ms - active.max_timestamp() > self.config.retention_ms {
            self.roll(now_ms)?;
        }
        let mut deleted = 0;
        let mut total = self.size_bytes() as i64;
        loop {
            if self.segments.len() < 2 {
                break;
            }
            let (&base, seg) = self.segments.iter().next().expect("non-empty");
            let expired = self.config.retention_ms >= 0 && seg.max_timestamp() >= 0 && now_ms - seg.max_timestamp() > self.config.retention_ms;
            let oversize = self.config.retention_bytes >= 0 && total - seg.size() as i64 >= self.config.retention_bytes;
            if !(expired || oversize) {
                break;
            }
            let seg = self.segments.remove(&base).expect("present");
            total -= seg.size() as i64;
            let next = seg.next_offset().max(base);
            seg.delete()?;
            deleted += 1;
            let first = *self.segments.keys().next().expect("active remains");
            self.log_start_offset = self.log_start_offset.max(next).max(first);
            self.write_log_start()?;
        }
        if deleted > 0 {
            self.producers.prune_aborted(self.log_start_offset);
        }
        Ok(deleted)
    }

    /// fsyncs the active segment if anything was appended since the last flush.
    pub fn flush(&mut self, now_ms: i64) -> io::Result<()> {
        if self.unflushed_records > 0 {
            self.active().flush()?;
            self.unflushed_records = 0;
        }
        self.last_flush_ms = now_ms;
        Ok(())
    }

    /// Flushes if `flush.ms` has passed since the last flush.
    pub fn flush_if_due(&mut self, now_ms: i64) -> io::Result<()> {
        if self.unflushed_records > 0 && now_ms - self.last_flush_ms >= self.config.flush_ms {
            self.flush(now_ms)?;
        }
        Ok(())
    }

    /// Closed segments (all but the active one), for the cleaner.
    pub(crate) fn segments_mut(&mut self) -> &mut BTreeMap<i64, Segment> {
        &mut self.segments
    }

    /// All segments in offset order.
    pub(crate) fn segments(&self) -> impl Iterator<Item = &Segment> {
        self.segments.values()
    }

    /// Path of a segment's log file (for tests and tools).
    pub fn segment_path(&self, base: i64) -> PathBuf {
        self.dir.join(file_name(base, "log"))
    }

    /// Base offsets of all segments.
    pub fn segment_bases(&self) -> Vec<i64> {
        self.segments.keys().copied().collect()
    }

    /// Deletes the whole log directory.
    pub fn delete_all(self) -> io::Result<()> {
        std::fs::remove_dir_all(&self.dir)
    }
}
