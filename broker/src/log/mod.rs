//! The durable log (DESIGN §4): per partition a directory of segments holding record
//! batches exactly as producers sent them (only base offset and leader epoch rewritten).
//!
//! ```text
//! <data>/<topic>-<partition>/
//!     00000000000000000000.log        raw batches
//!     00000000000000000000.index      sparse relative offset -> file position
//!     00000000000000000000.timeindex  sparse max timestamp -> relative offset
//!     log-start-offset                moved by DeleteRecords and retention
//! ```
//!
//! The leader-epoch cache ([`epochs`]) and idempotent producer state ([`producers`]) have
//! no files: both are rebuilt from the batch headers when the log opens.

pub mod cleaner;
pub mod epochs;
pub mod partition;
pub mod producers;
pub mod segment;

pub use partition::{AppendInfo, MarkerAppendError, PartitionLog, ReplicaAppendError};
pub use producers::{AbortedTxn, Marker, MarkerError, ProducerState, SeqCheck, SeqError};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::LogConfig;
    use bytes::Bytes;
    use kafka_protocol::records::{Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType};
    use samsa_client::wire::batch::{check_batch, encode_plain, validate_produced, BatchHeader};

    pub(crate) fn encode(records: &[(Option<&str>, Option<String>, i64)]) -> Vec<u8> {
        let plain: Vec<_> = records
            .iter()
            .map(|(k, v, ts)| (k.map(|k| Bytes::copy_from_slice(k.as_bytes())), v.as_ref().map(|v| Bytes::from(v.clone())), *ts))
            .collect();
        encode_plain(&plain, Compression::None).unwrap()
    }

    fn append(log: &mut PartitionLog, records: &[(Option<&str>, Option<String>, i64)], now: i64) -> AppendInfo {
        let mut b = encode(records);
        let hs = headers(&b);
        log.append(&mut b, &hs, 0, now).unwrap()
    }

    fn headers(b: &[u8]) -> Vec<BatchHeader> {
        validate_produced(b).unwrap().into_iter().map(|(h, _)| h).collect()
    }

    /// Appends encoded batches as leader in `epoch`.
    fn append_bytes(log: &mut PartitionLog, mut b: Vec<u8>, epoch: i32) -> AppendInfo {
        let hs = headers(&b);
        log.append(&mut b, &hs, epoch, 0).unwrap()
    }

    /// `n` single-byte records in one batch.
    fn batch_of(n: usize) -> Vec<u8> {
        encode(&vec![(None, Some("r".to_string()), 0); n])
    }

    /// One batch of `n` records from idempotent producer `pid`, first sequence `seq`.
    fn idem(pid: i64, epoch: i16, seq: i32, n: i32) -> Vec<u8> {
        let records: Vec<Record> = (0..n)
            .map(|i| Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: 0,
                producer_id: pid,
                producer_epoch: epoch,
                timestamp_type: TimestampType::Creation,
                offset: i64::from(i),
                sequence: seq.wrapping_add(i),
                timestamp: 0,
                key: None,
                value: Some(Bytes::from_static(b"idem")),
                headers: Default::default(),
            })
            .collect();
        let mut buf = bytes::BytesMut::new();
        RecordBatchEncoder::encode(&mut buf, &records, &RecordEncodeOptions { version: 2, compression: Compression::None }).unwrap();
        buf.to_vec()
    }

    fn offsets(log: &PartitionLog) -> Vec<i64> {
        read_all(log, 0).into_iter().map(|r| r.0).collect()
    }

    /// Every (offset, key, value) readable from `from`.
    fn read_all(log: &PartitionLog, from: i64) -> Vec<(i64, Option<Bytes>, Option<Bytes>)> {
        let mut out = Vec::new();
        let mut next = from;
        loop {
            let bytes = log.read(next, 1 << 20, true).unwrap();
            if bytes.is_empty() {
                break;
            }
            let mut b = Bytes::from(bytes);
            for set in RecordBatchDecoder::decode_all(&mut b).unwrap() {
                for r in set.records {
                    if r.offset >= next {
                        next = r.offset + 1;
                        out.push((r.offset, r.key, r.value));
                    }
                }
            }
        }
        out
    }

    fn small_config() -> LogConfig {
        LogConfig { segment_bytes: 1024, index_interval_bytes: 100, ..LogConfig::default() }
    }

    #[test]
    fn append_roll_read_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = PartitionLog::open(dir.path(), small_config(), 0).unwrap();
        for i in 0..50 {
            let info = append(&mut log, &[(Some("k"), Some(format!("value-{i:04}-{}", "x".repeat(60))), i)], 0);
            assert_eq!(info.base_offset, i);
        }
        assert!(log.segment_count() > 3, "rolled by size");
        let all = read_all(&log, 0);
        assert_eq!(all.len(), 50);
        assert_eq!(read_all(&log, 37)[0].0, 37);
        drop(log);
        let log = PartitionLog::open(dir.path(), small_config(), 0).unwrap();
        assert_eq!(log.log_end_offset(), 50);
        assert_eq!(read_all(&log, 0), all);
        let (_, h) = log.batch_for_timestamp(20).unwrap().unwrap();
        assert_eq!(h.base_offset, 20);
    }

    #[test]
    fn torn_tail_is_cut_to_last_whole_batch() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = PartitionLog::open(dir.path(), LogConfig::default(), 0).unwrap();
        for i in 0..10 {
            append(&mut log, &[(None, Some(format!("v{i}")), i)], 0);
        }
        let path = log.segment_path(0);
        drop(log);
        let len = std::fs::metadata(&path).unwrap().len();
        // Cut in the middle of the last batch.
        let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len(len - 5).unwrap();
        let log = PartitionLog::open(dir.path(), LogConfig::default(), 0).unwrap();
        assert_eq!(log.log_end_offset(), 9);
        assert_eq!(read_all(&log, 0).len(), 9);
    }

    #[test]
    fn retention_by_size_and_time() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = LogConfig { retention_bytes: 3000, ..small_config() };
        let mut log = PartitionLog::open(dir.path(), cfg, 0).unwrap();
        for i in 0..60 {
            append(&mut log, &[(None, Some("x".repeat(100)), i)], 0);
        }
        let before = log.segment_count();
        assert!(log.apply_retention(0).unwrap() > 0);
        assert!(log.segment_count() < before);
        assert!(log.size_bytes() <= 3000 + 1024);
        let start = log.log_start_offset();
        assert!(start > 0);
        assert_eq!(read_all(&log, 0)[0].0, start, "reads below the start begin at the start");

        let cfg = LogConfig { retention_ms: 1000, ..small_config() };
        log.set_config(cfg);
        // Records have timestamps 0..60 (timestamp == offset); at now=1055 the segments
        // whose newest record is older than 55 go, the active one stays.
        log.apply_retention(1055).unwrap();
        assert!(log.log_start_offset() > start);
        let left = read_all(&log, 0);
        assert!(left.len() < 12 && left.iter().all(|(o, _, _)| *o >= 45), "{:?}", left.iter().map(|r| r.0).collect::<Vec<_>>());
        assert_eq!(left.last().unwrap().0, 59);
    }

    #[test]
    fn compaction_keeps_latest_and_expires_tombstones() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = LogConfig { compact: true, delete: false, delete_retention_ms: 100, ..small_config() };
        let mut log = PartitionLog::open(dir.path(), cfg, 0).unwrap();
        for i in 0..40i64 {
            let key = format!("k{}", i % 4);
            append(&mut log, &[(Some(key.as_str()), Some(format!("{i}-{}", "p".repeat(50))), i)], 0);
        }
        append(&mut log, &[(Some("k0"), None, 40)], 0);
        log.roll(0).unwrap();
        append(&mut log, &[(Some("z"), Some("last".into()), 41)], 0);
        let stats = cleaner::compact(&mut log, 50, true).unwrap();
        assert!(stats.records_removed >= 36, "{stats:?}");
        assert_eq!(stats.tombstones_kept, 1);
        let after = read_all(&log, 0);
        let offsets: Vec<i64> = after.iter().map(|r| r.0).collect();
        assert!(offsets.windows(2).all(|w| w[0] < w[1]), "offsets increase: {offsets:?}");
        assert_eq!(offsets, vec![37, 38, 39, 40, 41]);
        // After delete.retention.ms the tombstone goes too.
        let stats = cleaner::compact(&mut log, 1000, true).unwrap();
        assert_eq!(stats.tombstones_removed, 1);
        let offsets: Vec<i64> = read_all(&log, 0).iter().map(|r| r.0).collect();
        assert_eq!(offsets, vec![37, 38, 39, 41]);
        assert_eq!(log.log_end_offset(), 42);
        // Survives a reopen.
        let cfg = log.config().clone();
        drop(log);
        let log = PartitionLog::open(dir.path(), cfg, 0).unwrap();
        assert_eq!(read_all(&log, 0).iter().map(|r| r.0).collect::<Vec<_>>(), vec![37, 38, 39, 41]);
    }

    /// One transactional batch of keyed records from `pid`.
    fn txn_batch(pid: i64, seq: i32, records: &[(&str, &str)]) -> Vec<u8> {
        let records: Vec<Record> = records
            .iter()
            .enumerate()
            .map(|(i, (k, v))| Record {
                transactional: true,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: 0,
                producer_id: pid,
                producer_epoch: 0,
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                sequence: seq + i as i32,
                timestamp: 0,
                key: Some(Bytes::copy_from_slice(k.as_bytes())),
                value: Some(Bytes::copy_from_slice(v.as_bytes())),
                headers: Default::default(),
            })
            .collect();
        let mut buf = bytes::BytesMut::new();
        RecordBatchEncoder::encode(&mut buf, &records, &RecordEncodeOptions { version: 2, compression: Compression::None }).unwrap();
        buf.to_vec()
    }

    #[test]
    fn compaction_drops_aborted_records_and_waits_for_open_transactions() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = LogConfig { compact: true, delete: false, ..small_config() };
        let mut log = PartitionLog::open(dir.path(), cfg, 0).unwrap();
        append(&mut log, &[(Some("k"), Some("committed".into()), 0)], 0); // 0
        append_bytes(&mut log, txn_batch(7, 0, &[("k", "aborted")]), 0); // 1
        log.append_marker(7, 0, producers::Marker { commit: false, coordinator_epoch: 0 }, 0, 0).unwrap(); // 2
        append_bytes(&mut log, txn_batch(8, 0, &[("j", "open")]), 0); // 3, never decided
        log.roll(0).unwrap();
        append(&mut log, &[(Some("z"), Some("x".into()), 0)], 0); // 4
        assert_eq!(log.first_unstable_offset(), Some(3));
        // The segment holds the open transaction: nothing may be cleaned yet.
        assert_eq!(cleaner::compact(&mut log, 0, true).unwrap().segments_cleaned, 0);
        log.append_marker(8, 0, producers::Marker { commit: true, coordinator_epoch: 0 }, 0, 0).unwrap(); // 5
        log.roll(0).unwrap();
        append(&mut log, &[(Some("y"), Some("x".into()), 0)], 0);
        let stats = cleaner::compact(&mut log, 0, true).unwrap();
        assert_eq!(stats.records_removed, 1, "{stats:?}");
        let left: Vec<(i64, Option<Bytes>)> = read_all(&log, 0).into_iter().map(|(o, _, v)| (o, v)).collect();
        assert_eq!(left.iter().map(|r| r.0).collect::<Vec<_>>(), vec![0, 2, 3, 4, 5, 6], "the aborted record went; markers and the committed value stayed");
        assert_eq!(left[0].1.as_deref(), Some(&b"committed"[..]));
    }

    #[test]
    fn expired_tombstones_alone_trigger_compaction() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = LogConfig { compact: true, delete: false, delete_retention_ms: 100, min_cleanable_ratio: 0.5, ..small_config() };
        let mut log = PartitionLog::open(dir.path(), cfg, 0).unwrap();
        for i in 0..10i64 {
            let key = format!("k{i}");
            append(&mut log, &[(Some(key.as_str()), Some("v".repeat(80)), i)], 0);
        }
        append(&mut log, &[(Some("k3"), None, 10)], 0);
        log.roll(0).unwrap();
        append(&mut log, &[(Some("new"), Some("x".into()), 11)], 0);
        // 12 records, 1 replaced: far under the 0.5 ratio, but the tombstone has expired.
        let stats = cleaner::compact(&mut log, 1000, false).unwrap();
        assert_eq!((stats.records_removed, stats.tombstones_removed), (1, 1), "{stats:?}");
        assert!(read_all(&log, 0).iter().all(|(_, k, _)| k.as_deref() != Some(&b"k3"[..])));
    }

    #[test]
    fn expired_active_segment_is_rolled_and_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = LogConfig { retention_ms: 1000, ..LogConfig::default() };
        let mut log = PartitionLog::open(dir.path(), cfg, 0).unwrap();
        append(&mut log, &[(None, Some("old".into()), 5)], 0);
        assert_eq!(log.apply_retention(5000).unwrap(), 1);
        assert_eq!((log.log_start_offset(), log.log_end_offset()), (1, 1));
        assert!(read_all(&log, 0).is_empty());
        assert_eq!(append(&mut log, &[(None, Some("new".into()), 6000)], 6000).base_offset, 1);
    }

    #[test]
    fn delete_records_moves_start() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = PartitionLog::open(dir.path(), small_config(), 0).unwrap();
        for i in 0..30 {
            append(&mut log, &[(None, Some("y".repeat(80)), i)], 0);
        }
        assert_eq!(log.delete_records_before(17).unwrap(), 17);
        assert_eq!(read_all(&log, 0)[0].0, 17);
        drop(log);
        let log = PartitionLog::open(dir.path(), small_config(), 0).unwrap();
        assert_eq!(log.log_start_offset(), 17);
    }

    #[test]
    fn epoch_cache_from_appends_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = PartitionLog::open(dir.path(), small_config(), 0).unwrap();
        assert_eq!((log.latest_epoch(), log.end_offset_for_epoch(0)), (None, None));
        // Offsets: epoch 0 -> 0..=2, epoch 2 -> 3..=5, epoch 5 -> 6.
        for (n, epoch) in [(2, 0), (1, 0), (1, 2), (2, 2), (1, 5)] {
            append_bytes(&mut log, batch_of(n), epoch);
        }
        let expect = [(-1, None), (0, Some((0, 3))), (1, Some((0, 3))), (2, Some((2, 6))), (3, Some((2, 6))), (5, Some((5, 7))), (7, Some((5, 7)))];
        let check = |log: &PartitionLog| {
            assert_eq!(log.epoch_entries(), &[(0, 0), (2, 3), (5, 6)]);
            assert_eq!(log.latest_epoch(), Some(5));
            for (e, want) in expect {
                assert_eq!(log.end_offset_for_epoch(e), want, "epoch {e}");
            }
        };
        check(&log);
        // The stamped epoch is in the stored bytes.
        assert_eq!(check_batch(&log.read(3, 1, true).unwrap()).unwrap().partition_leader_epoch, 2);
        drop(log);
        let mut log = PartitionLog::open(dir.path(), small_config(), 0).unwrap();
        check(&log);
        log.assign_epoch(4, 7); // not newer: ignored
        log.assign_epoch(6, 7);
        assert_eq!((log.end_offset_for_epoch(5), log.end_offset_for_epoch(6)), (Some((5, 7)), Some((6, 7))));
        assert_eq!(append_bytes(&mut log, batch_of(1), 6).base_offset, 7);
        assert_eq!(log.epoch_entries(), &[(0, 0), (2, 3), (5, 6), (6, 7)]);
    }

    /// A follower of `leader` fetching `max_bytes` at a time until caught up.
    fn replicate(leader: &PartitionLog, follower: &mut PartitionLog, max_bytes: usize) {
        while follower.log_end_offset() < leader.log_end_offset() {
            let bytes = leader.read(follower.log_end_offset(), max_bytes, true).unwrap();
            let info = follower.append_replicated(&bytes, 0).unwrap();
            assert_eq!(info.base_offset, check_batch(&bytes).unwrap().base_offset);
        }
    }

    #[test]
    fn append_replicated_copies_the_leader_exactly() {
        let (ld, fd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let mut leader = PartitionLog::open(ld.path(), small_config(), 0).unwrap();
        for i in 0..30 {
            let epoch = i / 10;
            if i % 3 == 0 {
                append_bytes(&mut leader, idem(9, 0, i / 3 * 2, 2), epoch);
            } else {
                append_bytes(&mut leader, encode(&[(None, Some(format!("{i}-{}", "z".repeat(40))), i64::from(i)), (None, None, 0)]), epoch);
            }
        }
        let mut follower = PartitionLog::open(fd.path(), small_config(), 0).unwrap();
        replicate(&leader, &mut follower, 300);
        let same = |f: &PartitionLog| {
            assert_eq!(f.log_end_offset(), leader.log_end_offset());
            assert!(f.read(0, 1 << 20, true).unwrap() == leader.read(0, 1 << 20, true).unwrap(), "byte-equal");
            assert_eq!(f.epoch_entries(), leader.epoch_entries());
            assert_eq!(f.producer_count(), 1);
            // The follower can take over as leader and still spot a retry.
            let last = idem(9, 0, 18, 2);
            assert_eq!(f.check_producer(&headers(&last)), leader.check_producer(&headers(&last)));
            assert!(matches!(f.check_producer(&headers(&last)), Ok(SeqCheck::Duplicate { .. })));
        };
        same(&follower);
        assert!(follower.segment_count() > 2, "rolled like the leader");
        drop(follower);
        let mut follower = PartitionLog::open(fd.path(), small_config(), 0).unwrap();
        same(&follower);

        // A trailing partial batch is left for the next fetch.
        append_bytes(&mut leader, batch_of(3), 4);
        append_bytes(&mut leader, batch_of(2), 4);
        let leo = follower.log_end_offset();
        let two = leader.read(leo, 1 << 20, true).unwrap();
        let first_len = check_batch(&two).unwrap().total_len();
        for cut in [first_len + 10, two.len() - 1] {
            let d2 = tempfile::tempdir().unwrap();
            let mut f2 = PartitionLog::open(d2.path(), small_config(), 0).unwrap();
            f2.reset_to(leo).unwrap();
            let info = f2.append_replicated(&two[..cut], 0).unwrap();
            assert_eq!((info.base_offset, info.last_offset, f2.log_end_offset()), (leo, leo + 2, leo + 3));
        }
        let info = follower.append_replicated(&two[..5], 0).unwrap();
        assert_eq!((info.base_offset, info.last_offset, follower.log_end_offset()), (leo, leo - 1, leo));

        // An overlap and a corrupt batch are refused and leave the log alone (a gap is not:
        // compaction on the leader leaves gaps).
        let older = leader.read(leo - 2, 1 << 20, true).unwrap();
        assert!(matches!(follower.append_replicated(&older, 0), Err(ReplicaAppendError::Invalid(_))));
        let mut bad = two.clone();
        bad[first_len - 1] ^= 1;
        assert!(matches!(follower.append_replicated(&bad, 0), Err(ReplicaAppendError::Invalid(_))));
        let backwards = [two[..first_len].to_vec(), two[..first_len].to_vec()].concat();
        assert!(matches!(follower.append_replicated(&backwards, 0), Err(ReplicaAppendError::Invalid(_))));
        assert_eq!(follower.log_end_offset(), leo);
        follower.append_replicated(&two, 0).unwrap();
        assert_eq!(follower.read(0, 1 << 20, true).unwrap(), leader.read(0, 1 << 20, true).unwrap());
        assert_eq!(follower.latest_epoch(), Some(4));
    }

    #[test]
    fn truncate_across_segments_then_append() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = PartitionLog::open(dir.path(), small_config(), 0).unwrap();
        for i in 0..40 {
            append_bytes(&mut log, encode(&[(None, Some(format!("{i}-{}", "t".repeat(60))), i)]), if i < 20 { 1 } else { 3 });
        }
        let segments = log.segment_count();
        assert!(segments > 4);
        log.truncate_to(41).unwrap();
        assert_eq!(log.log_end_offset(), 40, "past the end: no-op");
        log.truncate_to(23).unwrap();
        assert!(log.segment_count() < segments);
        assert_eq!(log.log_end_offset(), 23);
        assert_eq!(offsets(&log), (0..23).collect::<Vec<_>>());
        assert_eq!(log.max_timestamp(), 22);
        assert!(log.batch_for_timestamp(30).unwrap().is_none());
        log.truncate_to(15).unwrap();
        assert_eq!(log.epoch_entries(), &[(1, 0)], "epoch 3 began past the cut");
        assert_eq!(append_bytes(&mut log, batch_of(1), 4).base_offset, 15);
        for i in 0..20 {
            append_bytes(&mut log, encode(&[(None, Some("a".repeat(90)), 100 + i)]), 4);
        }
        assert_eq!(offsets(&log), (0..36).collect::<Vec<_>>());
        drop(log);
        let log = PartitionLog::open(dir.path(), small_config(), 0).unwrap();
        assert_eq!(log.log_end_offset(), 36);
        assert_eq!(offsets(&log), (0..36).collect::<Vec<_>>());
        assert_eq!(log.epoch_entries(), &[(1, 0), (4, 15)]);
        assert_eq!(log.max_timestamp(), 119);
    }

    #[test]
    fn truncate_inside_a_batch_cuts_the_whole_batch() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = PartitionLog::open(dir.path(), LogConfig { index_interval_bytes: 1, ..LogConfig::default() }, 0).unwrap();
        for _ in 0..3 {
            append_bytes(&mut log, batch_of(5), 0);
        }
        log.truncate_to(7).unwrap();
        assert_eq!(log.log_end_offset(), 5);
        assert_eq!(offsets(&log), (0..5).collect::<Vec<_>>());
        log.truncate_to(5).unwrap();
        assert_eq!(log.log_end_offset(), 5);
        assert_eq!(append_bytes(&mut log, batch_of(2), 0).base_offset, 5);
        let cfg = log.config().clone();
        drop(log);
        let log = PartitionLog::open(dir.path(), cfg, 0).unwrap();
        assert_eq!(offsets(&log), (0..7).collect::<Vec<_>>());
    }

    #[test]
    fn reset_to_starts_an_empty_log() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = PartitionLog::open(dir.path(), small_config(), 0).unwrap();
        for i in 0..20 {
            append_bytes(&mut log, idem(1, 0, i, 1), 2);
        }
        log.reset_to(100).unwrap();
        let check = |log: &PartitionLog| {
            assert_eq!((log.log_start_offset(), log.log_end_offset(), log.segment_count()), (100, 100, 1));
            assert!(log.read(0, 1 << 20, true).unwrap().is_empty());
            assert_eq!((log.latest_epoch(), log.producer_count()), (None, 0));
        };
        check(&log);
        drop(log);
        let mut log = PartitionLog::open(dir.path(), small_config(), 0).unwrap();
        check(&log);
        assert_eq!(append_bytes(&mut log, batch_of(2), 3).base_offset, 100);
        // Truncating below the log start empties the log too.
        log.delete_records_before(101).unwrap();
        log.truncate_to(100).unwrap();
        assert_eq!((log.log_start_offset(), log.log_end_offset()), (100, 100));
        // And so does truncating into the batch that holds the log start.
        append_bytes(&mut log, batch_of(4), 3);
        log.delete_records_before(102).unwrap();
        log.truncate_to(103).unwrap();
        assert_eq!((log.log_start_offset(), log.log_end_offset()), (103, 103));
        drop(log);
        let log = PartitionLog::open(dir.path(), small_config(), 0).unwrap();
        assert_eq!((log.log_start_offset(), log.log_end_offset()), (103, 103));
    }

    #[test]
    fn read_upto_stops_at_a_batch_boundary() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = PartitionLog::open(dir.path(), LogConfig { segment_bytes: 200, ..small_config() }, 0).unwrap();
        for _ in 0..6 {
            append_bytes(&mut log, batch_of(3), 0); // 0-2, 3-5, ..., 15-17
        }
        assert!(log.segment_count() > 1);
        let bases = |b: Vec<u8>| validate_produced(&b).map(|v| v.iter().map(|(h, _)| h.base_offset).collect::<Vec<_>>()).unwrap_or_default();
        assert_eq!(bases(log.read_upto(0, 9, 1 << 20, true).unwrap()), vec![0, 3, 6]);
        assert_eq!(bases(log.read_upto(4, 9, 1 << 20, true).unwrap()), vec![3, 6]);
        assert_eq!(bases(log.read_upto(9, 9, 1 << 20, true).unwrap()), Vec::<i64>::new());
        assert_eq!(bases(log.read_upto(0, 9, 1, true).unwrap()), vec![0]);
        assert_eq!(bases(log.read_upto(7, 15, 1 << 20, true).unwrap()), vec![6, 9, 12]);
        assert_eq!(bases(log.read(7, 1 << 20, true).unwrap()), vec![6, 9, 12, 15]);
    }

    #[test]
    fn read_never_skips_the_rest_of_a_segment() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = PartitionLog::open(dir.path(), small_config(), 0).unwrap();
        let big = encode(&[(None, Some("b".repeat(300)), 0)]);
        append_bytes(&mut log, big.clone(), 0);
        append_bytes(&mut log, big.clone(), 0);
        log.roll(0).unwrap();
        append_bytes(&mut log, batch_of(1), 0);
        // The second big batch does not fit what is left of the budget, the small one
        // after it would: the read must stop rather than return offsets 0 and 2.
        let got = log.read(0, big.len() + 100, true).unwrap();
        assert_eq!(validate_produced(&got).unwrap().iter().map(|(h, _)| h.base_offset).collect::<Vec<_>>(), vec![0]);
    }

    #[test]
    fn idempotent_producer_state() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = PartitionLog::open(dir.path(), small_config(), 0).unwrap();
        let check = |log: &PartitionLog, b: Vec<u8>| log.check_producer(&headers(&b));
        append(&mut log, &[(None, Some("plain".into()), 0)], 0);
        assert_eq!(check(&log, idem(5, 0, 0, 3)), Ok(SeqCheck::Append));
        assert_eq!(append_bytes(&mut log, idem(5, 0, 0, 3), 0).base_offset, 1);
        assert_eq!(append_bytes(&mut log, idem(5, 0, 3, 2), 0).base_offset, 4);
        assert_eq!(check(&log, idem(5, 0, 0, 3)), Ok(SeqCheck::Duplicate { base_offset: 1, last_offset: 3 }));
        assert_eq!(check(&log, idem(5, 0, 3, 2)), Ok(SeqCheck::Duplicate { base_offset: 4, last_offset: 5 }));
        assert_eq!(check(&log, idem(5, 0, 6, 1)), Err(SeqError::OutOfOrder { expected: 5, got: 6 }));
        assert_eq!(check(&log, idem(6, 0, 3, 1)), Err(SeqError::UnknownProducerId));
        assert_eq!(check(&log, idem(5, 1, 0, 1)), Ok(SeqCheck::Append));
        assert_eq!(check(&log, idem(5, 1, 2, 1)), Err(SeqError::OutOfOrder { expected: 0, got: 2 }));
        assert_eq!(check(&log, [idem(5, 0, 5, 1), idem(5, 0, 6, 2)].concat()), Ok(SeqCheck::Append));
        append_bytes(&mut log, idem(7, 2, 0, 1), 0);
        append_bytes(&mut log, idem(7, 3, 0, 1), 0);
        assert_eq!(check(&log, idem(7, 2, 1, 1)), Err(SeqError::InvalidEpoch));
        assert_eq!(log.producer_count(), 2);
        drop(log);
        let mut log = PartitionLog::open(dir.path(), small_config(), 0).unwrap();
        assert_eq!(log.producer_count(), 2);
        assert_eq!(check(&log, idem(5, 0, 3, 2)), Ok(SeqCheck::Duplicate { base_offset: 4, last_offset: 5 }));
        assert_eq!(check(&log, idem(7, 2, 1, 1)), Err(SeqError::InvalidEpoch));
        // Truncation forgets the cut batches: their sequences may come again.
        log.truncate_to(4).unwrap();
        assert_eq!(log.producer_count(), 1);
        assert_eq!(check(&log, idem(5, 0, 3, 2)), Ok(SeqCheck::Append));
        assert_eq!(append_bytes(&mut log, idem(5, 0, 3, 2), 0).base_offset, 4);
        assert_eq!(check(&log, idem(5, 0, 3, 2)), Ok(SeqCheck::Duplicate { base_offset: 4, last_offset: 5 }));
    }

    mod prop {
        use super::*;
        use proptest::prelude::*;

        #[derive(Debug, Clone)]
        enum Op {
            Append(Vec<u8>),
            /// Restart after cutting `n` bytes off the active segment (a torn write).
            CrashTear(usize),
            Restart,
            /// Truncate to offset `n % (log end + 1)`, which may fall inside a batch.
            Truncate(usize),
        }

        fn op() -> impl Strategy<Value = Op> {
            prop_oneof![
                6 => proptest::collection::vec(1u8..20, 1..5).prop_map(Op::Append),
                1 => (1usize..200).prop_map(Op::CrashTear),
                1 => Just(Op::Restart),
                1 => any::<usize>().prop_map(Op::Truncate),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(48))]
            #[test]
            fn log_matches_model_across_crashes(ops in proptest::collection::vec(op(), 1..40)) {
                let dir = tempfile::tempdir().unwrap();
                let cfg = LogConfig { segment_bytes: 700, index_interval_bytes: 150, ..LogConfig::default() };
                let mut log = PartitionLog::open(dir.path(), cfg.clone(), 0).unwrap();
                // Model: the values of every record, by offset, and each batch's base offset.
                let mut model: Vec<String> = Vec::new();
                let mut bases: Vec<usize> = Vec::new();
                for op in ops {
                    match op {
                        Op::Append(sizes) => {
                            let recs: Vec<_> = sizes.iter().map(|s| (None, Some("v".repeat(*s as usize * 3) + &model.len().to_string()), 0)).collect();
                            let info = append(&mut log, &recs, 0);
                            prop_assert_eq!(info.base_offset, model.len() as i64);
                            bases.push(model.len());
                            for r in &recs { model.push(r.1.clone().unwrap()); }
                        }
                        Op::CrashTear(n) => {
                            let last = *log.segment_bases().last().unwrap();
                            let path = log.segment_path(last);
                            drop(log);
                            let len = std::fs::metadata(&path).unwrap().len();
                            let cut = (n as u64).min(len);
                            std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(len - cut).unwrap();
                            log = PartitionLog::open(dir.path(), cfg.clone(), 0).unwrap();
                            // Whole batches before the cut survive; the model loses the rest.
                            let leo = log.log_end_offset() as usize;
                            prop_assert!(leo <= model.len());
                            model.truncate(leo);
                            bases.retain(|&b| b < leo);
                        }
                        Op::Truncate(n) => {
                            let to = n % (model.len() + 1);
                            log.truncate_to(to as i64).unwrap();
                            // The batch holding `to` goes whole: the log ends at its base.
                            if to < model.len() {
                                let cut = *bases.iter().rev().find(|&&b| b <= to).unwrap();
                                model.truncate(cut);
                                bases.retain(|&b| b < cut);
                            }
                            prop_assert_eq!(log.log_end_offset(), model.len() as i64);
                        }
                        Op::Restart => {
                            drop(log);
                            log = PartitionLog::open(dir.path(), cfg.clone(), 0).unwrap();
                            prop_assert_eq!(log.log_end_offset(), model.len() as i64);
                        }
                    }
                    let got: Vec<String> = read_all(&log, 0).into_iter().map(|(_, _, v)| String::from_utf8(v.unwrap().to_vec()).unwrap()).collect();
                    prop_assert_eq!(&got, &model);
                }
            }
        }
    }
}
