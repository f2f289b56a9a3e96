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

pub mod cleaner;
pub mod partition;
pub mod segment;

pub use partition::{AppendInfo, PartitionLog};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::LogConfig;
    use bytes::Bytes;
    use kafka_protocol::records::{Compression, RecordBatchDecoder};
    use samsa_client::wire::batch::{encode_plain, validate_produced};

    pub(crate) fn encode(records: &[(Option<&str>, Option<String>, i64)]) -> Vec<u8> {
        let plain: Vec<_> = records
            .iter()
            .map(|(k, v, ts)| (k.map(|k| Bytes::copy_from_slice(k.as_bytes())), v.as_ref().map(|v| Bytes::from(v.clone())), *ts))
            .collect();
        encode_plain(&plain, Compression::None).unwrap()
    }

    fn append(log: &mut PartitionLog, records: &[(Option<&str>, Option<String>, i64)], now: i64) -> AppendInfo {
        let mut b = encode(records);
        let hs: Vec<_> = validate_produced(&b).unwrap().into_iter().map(|(h, _)| h).collect();
        log.append(&mut b, &hs, now).unwrap()
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

    mod prop {
        use super::*;
        use proptest::prelude::*;

        #[derive(Debug, Clone)]
        enum Op {
            Append(Vec<u8>),
            /// Restart after cutting `n` bytes off the active segment (a torn write).
            CrashTear(usize),
            Restart,
        }

        fn op() -> impl Strategy<Value = Op> {
            prop_oneof![
                6 => proptest::collection::vec(1u8..20, 1..5).prop_map(Op::Append),
                1 => (1usize..200).prop_map(Op::CrashTear),
                1 => Just(Op::Restart),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(48))]
            #[test]
            fn log_matches_model_across_crashes(ops in proptest::collection::vec(op(), 1..40)) {
                let dir = tempfile::tempdir().unwrap();
                let cfg = LogConfig { segment_bytes: 700, index_interval_bytes: 150, ..LogConfig::default() };
                let mut log = PartitionLog::open(dir.path(), cfg.clone(), 0).unwrap();
                // Model: the values of every record, by offset.
                let mut model: Vec<String> = Vec::new();
                for op in ops {
                    match op {
                        Op::Append(sizes) => {
                            let recs: Vec<_> = sizes.iter().map(|s| (None, Some("v".repeat(*s as usize * 3) + &model.len().to_string()), 0)).collect();
                            let info = append(&mut log, &recs, 0);
                            prop_assert_eq!(info.base_offset, model.len() as i64);
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
