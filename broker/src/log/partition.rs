//! A partition's log: an ordered set of segments, the log start offset, and the next
//! offset to assign (the log end offset). On a single node the high watermark equals the
//! log end offset.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use samsa_client::wire::batch::{self, BatchHeader};
use tracing::{info, warn};

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

/// One partition's durable log.
#[derive(Debug)]
pub struct PartitionLog {
    dir: PathBuf,
    config: LogConfig,
    segments: BTreeMap<i64, Segment>,
    log_start_offset: i64,
    unflushed_records: i64,
    last_flush_ms: i64,
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
        };
        // An empty tail segment can follow a torn roll; the end offset comes from the
        // segment before it in that case.
        log.log_start_offset = log.log_start_offset.min(log.log_end_offset());
        Ok(log)
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

    /// Appends validated producer batches (`headers` describe `bytes` in order), assigning
    /// offsets from the log end offset. Rolls the active segment by size or age first.
    pub fn append(&mut self, bytes: &mut [u8], headers: &[BatchHeader], now_ms: i64) -> io::Result<AppendInfo> {
        let base_offset = self.log_end_offset();
        let mut next = base_offset;
        let mut pos = 0usize;
        let mut assigned = Vec::with_capacity(headers.len());
        let append_time = self.config.log_append_time.then_some(now_ms);
        for h in headers {
            let len = h.total_len();
            let b = &mut bytes[pos..pos + len];
            batch::set_base_offset(b, next);
            batch::set_partition_leader_epoch(b, 0);
            if let Some(t) = append_time {
                batch::set_log_append_time(b, t);
            }
            let mut h2 = *h;
            h2.base_offset = next;
            if let Some(t) = append_time {
                h2.max_timestamp = t;
            }
            assigned.push(h2);
            next += i64::from(h.last_offset_delta) + 1;
            pos += len;
        }
        self.maybe_roll(bytes.len() as u64, now_ms)?;
        let interval = self.config.index_interval_bytes;
        let active = self.segments.values_mut().next_back().expect("active segment");
        active.append(bytes, &assigned, interval, now_ms)?;
        self.unflushed_records += next - base_offset;
        if self.unflushed_records >= self.config.flush_messages {
            self.flush(now_ms)?;
        }
        Ok(AppendInfo { base_offset, last_offset: next - 1, log_append_time: append_time })
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
        let mut out = Vec::new();
        let start = offset.max(self.log_start_offset);
        for (_, seg) in self.segments.range(..=start).next_back().into_iter().chain(self.segments.range(start + 1..)) {
            if seg.next_offset() <= start {
                continue;
            }
            let budget = max_bytes.saturating_sub(out.len());
            let chunk = seg.read(start.max(seg.base_offset()), budget, min_one && out.is_empty())?;
            if chunk.is_empty() {
                break; // the next batch does not fit the budget
            }
            out.extend_from_slice(&chunk);
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
