//! Log compaction (`cleanup.policy=compact`): keep the last record per key.
//!
//! A pass builds a map key -> latest offset over the whole log, then rewrites each closed
//! segment old enough to clean (`min.compaction.lag.ms`), keeping only records that are
//! the latest for their key. Tombstones (null values) that are the latest for their key
//! survive until their timestamp is older than `delete.retention.ms`. Offsets are never
//! changed: a rewritten batch keeps each kept record's offset, so consumers reading
//! through a compaction see gaps but always increasing offsets.
//!
//! The rewritten segment is written to `<base>.log.cleaned`, fsynced, and renamed over the
//! original, so a crash leaves either the old or the new segment, never a mix.
//!
//! Transactions: records of aborted transactions never count as a key's latest value and
//! are removed; transaction markers are kept; and only segments wholly below the first
//! open transaction are cleaned, so an undecided record is never judged.

use std::collections::HashMap;
use std::io::{self, Write};

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions};

use samsa_client::wire::batch::BatchHeader;

use super::partition::PartitionLog;
use super::segment::{file_name, Segment};

/// What one compaction pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CleanStats {
    /// Segments rewritten.
    pub segments_cleaned: usize,
    /// Records removed because a newer value exists for their key.
    pub records_removed: u64,
    /// Tombstones removed after `delete.retention.ms`.
    pub tombstones_removed: u64,
    /// Tombstones kept because they are still within `delete.retention.ms`.
    pub tombstones_kept: u64,
}

fn invalid(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

/// Runs one compaction pass over the closed segments of `log`. `force` skips the dirty
/// ratio check (tests and tools).
pub fn compact(log: &mut PartitionLog, now_ms: i64, force: bool) -> io::Result<CleanStats> {
    let mut stats = CleanStats::default();
    let config = log.config().clone();
    if !config.compact || log.segment_count() < 2 {
        return Ok(stats);
    }
    let lag_horizon = now_ms - config.min_compaction_lag_ms;
    // Closed segments old enough to clean, in order; stop at the first too-young one.
    let mut cleanable: Vec<i64> = Vec::new();
    let count = log.segment_count();
    let first_unstable = log.first_unstable_offset().unwrap_or(i64::MAX);
    for (i, seg) in log.segments().enumerate() {
        if i + 1 == count || seg.max_timestamp() > lag_horizon || seg.next_offset() > first_unstable {
            break;
        }
        cleanable.push(seg.base_offset());
    }
    let aborted = log.aborted_between(0, i64::MAX);
    // A data batch of an aborted transaction: its records are dead.
    let is_aborted = |h: &BatchHeader| {
        h.is_transactional() && !h.is_control() && aborted.iter().any(|a| a.producer_id == h.producer_id && a.first_offset <= h.base_offset && h.last_offset() <= a.last_offset)
    };
    if cleanable.is_empty() {
        return Ok(stats);
    }
    let tombstone_horizon = now_ms - config.delete_retention_ms;
    // Latest record per key over the whole log (the active segment included): its offset,
    // and whether it is a tombstone old enough to drop.
    let mut latest: HashMap<Bytes, (i64, bool)> = HashMap::new();
    let mut total_records = 0u64;
    for seg in log.segments() {
        for (pos, h) in seg.batches()? {
            if h.is_control() || is_aborted(&h) {
                continue;
            }
            let mut raw = Bytes::from(seg.read_at(pos, h.total_len())?);
            let set = RecordBatchDecoder::decode(&mut raw).map_err(invalid)?;
            for r in set.records {
                total_records += 1;
                if let Some(k) = r.key {
                    latest.insert(k, (r.offset, r.value.is_none() && r.timestamp < tombstone_horizon));
                }
            }
        }
    }
    // Dirty = records a newer value replaced, plus expired tombstones in cleanable segments
    // (without the second term a tombstone would wait for an unrelated update forever).
    let cleanable_end = log.segments().map(|s| s.base_offset()).find(|b| !cleanable.contains(b)).unwrap_or(i64::MAX);
    let expired_tombstones = latest.values().filter(|(o, expired)| *expired && *o < cleanable_end).count() as u64;
    let dirty = total_records.saturating_sub(latest.len() as u64) + expired_tombstones;
    if !force && total_records > 0 && (dirty as f64 / total_records as f64) < config.min_cleanable_ratio && expired_tombstones == 0 {
        return Ok(stats);
    }
    let dir = log.dir().to_path_buf();
    for base in cleanable {
        let seg = &log.segments_mut()[&base];
        let mut out: Vec<u8> = Vec::with_capacity(seg.size() as usize);
        let mut changed = false;
        for (pos, h) in seg.batches()? {
            let raw = seg.read_at(pos, h.total_len())?;
            if h.is_control() {
                out.extend_from_slice(&raw);
                continue;
            }
            if is_aborted(&h) {
                stats.records_removed += u64::from(h.record_count.max(0) as u32);
                changed = true;
                continue;
            }
            let set = RecordBatchDecoder::decode(&mut Bytes::from(raw.clone())).map_err(invalid)?;
            let before = set.records.len();
            let mut kept = Vec::with_capacity(before);
            for r in set.records {
                let Some(k) = &r.key else {
                    kept.push(r);
                    continue;
                };
                if latest.get(k).map(|(o, _)| *o) != Some(r.offset) {
                    stats.records_removed += 1;
                    continue;
                }
                if r.value.is_none() {
                    if r.timestamp < tombstone_horizon {
                        stats.tombstones_removed += 1;
                        continue;
                    }
                    stats.tombstones_kept += 1;
                }
                kept.push(r);
            }
            if kept.len() == before {
                out.extend_from_slice(&raw);
                continue;
            }
            changed = true;
            if kept.is_empty() {
                continue;
            }
            let mut buf = BytesMut::new();
            RecordBatchEncoder::encode(&mut buf, &kept, &RecordEncodeOptions { version: 2, compression: set.compression })
                .map_err(invalid)?;
            out.extend_from_slice(&buf);
        }
        if !changed {
            continue;
        }
        let cleaned = dir.join(format!("{}.cleaned", file_name(base, "log")));
        {
            let mut f = std::fs::File::create(&cleaned)?;
            f.write_all(&out)?;
            f.sync_all()?;
        }
        // The old indexes point at old positions: remove them so the reopen rebuilds.
        let old = log.segments_mut().remove(&base).expect("segment present");
        drop(old);
        for ext in ["index", "timeindex"] {
            let _ = std::fs::remove_file(dir.join(file_name(base, ext)));
        }
        std::fs::rename(&cleaned, dir.join(file_name(base, "log")))?;
        let (seg, _) = Segment::open(&dir, base, config.index_interval_bytes)?;
        if seg.size() == 0 && log.segments_mut().keys().next().is_some_and(|&first| first < base) {
            seg.delete()?;
        } else {
            log.segments_mut().insert(base, seg);
        }
        stats.segments_cleaned += 1;
    }
    Ok(stats)
}
