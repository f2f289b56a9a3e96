//! Record-batch (magic v2) header helpers for code that stores and serves batches as the
//! raw bytes a producer sent.
//!
//! Records themselves are encoded and decoded by `kafka_protocol::records`; this module
//! only reads the fixed 61-byte batch header, checks length, magic and CRC-32C, and
//! rewrites the two fields a broker owns: the base offset (bytes 0..8) and the partition
//! leader epoch (12..16). The CRC covers bytes 21.. so both rewrites keep it valid.
//!
//! ```text
//! 0 baseOffset i64 | 8 batchLength i32 | 12 leaderEpoch i32 | 16 magic i8 | 17 crc u32
//! 21 attributes i16 | 23 lastOffsetDelta i32 | 27 baseTimestamp i64 | 35 maxTimestamp i64
//! 43 producerId i64 | 51 producerEpoch i16 | 53 baseSequence i32 | 57 recordCount i32 | 61 records
//! ```

/// Size of the fixed batch header, up to and including the record count.
pub const HEADER_LEN: usize = 61;
/// Bytes before `batchLength` ends: the length field counts what follows byte 12.
pub const LOG_OVERHEAD: usize = 12;
const CRC_START: usize = 21;
/// Attribute bit: the timestamps are the broker's append time.
pub const ATTR_LOG_APPEND_TIME: i16 = 1 << 3;
/// Attribute bit: the batch belongs to a transaction.
pub const ATTR_TRANSACTIONAL: i16 = 1 << 4;
/// Attribute bit: the batch holds control records (transaction markers).
pub const ATTR_CONTROL: i16 = 1 << 5;

/// Why bytes are not a valid v2 record batch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// The buffer ends inside a batch.
    #[error("record batch truncated: {have} of {need} bytes present")]
    Truncated {
        /// Bytes present from the batch start.
        have: usize,
        /// Bytes the batch needs.
        need: usize,
    },
    /// The length field is smaller than a header or negative.
    #[error("record batch length {0} is invalid")]
    BadLength(i32),
    /// Only magic 2 (Kafka >= 0.11) batches are accepted.
    #[error("record batch magic {0} is not supported (only v2)")]
    BadMagic(i8),
    /// Stored and computed CRC-32C differ.
    #[error("record batch CRC mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    Crc {
        /// CRC in the batch header.
        stored: u32,
        /// CRC computed over the batch.
        computed: u32,
    },
    /// Record count and last offset delta disagree, or the count is not positive.
    #[error("record batch claims {count} records but last offset delta {delta}")]
    BadCount {
        /// recordCount field.
        count: i32,
        /// lastOffsetDelta field.
        delta: i32,
    },
}

/// The fixed header fields of a v2 record batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    /// Offset of the first record.
    pub base_offset: i64,
    /// Length of the batch after the first 12 bytes.
    pub batch_length: i32,
    /// Leader epoch that appended the batch.
    pub partition_leader_epoch: i32,
    /// Format version, always 2 after validation.
    pub magic: i8,
    /// CRC-32C of bytes 21.. of the batch.
    pub crc: u32,
    /// Compression, timestamp type, transactional and control bits.
    pub attributes: i16,
    /// Offset of the last record relative to `base_offset`.
    pub last_offset_delta: i32,
    /// Timestamp of the first record.
    pub base_timestamp: i64,
    /// Largest timestamp in the batch.
    pub max_timestamp: i64,
    /// Idempotent producer id, or -1.
    pub producer_id: i64,
    /// Producer epoch, or -1.
    pub producer_epoch: i16,
    /// Sequence of the first record, or -1.
    pub base_sequence: i32,
    /// Number of records in the batch.
    pub record_count: i32,
}

fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}
fn be_i32(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}
fn be_i64(b: &[u8], at: usize) -> i64 {
    i64::from_be_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

impl BatchHeader {
    /// Reads the fixed header from the front of `buf` without checking the CRC.
    pub fn parse(buf: &[u8]) -> Result<Self, BatchError> {
        if buf.len() < HEADER_LEN {
            return Err(BatchError::Truncated { have: buf.len(), need: HEADER_LEN });
        }
        let batch_length = be_i32(buf, 8);
        if batch_length < (HEADER_LEN - LOG_OVERHEAD) as i32 {
            return Err(BatchError::BadLength(batch_length));
        }
        let magic = buf[16] as i8;
        if magic != 2 {
            return Err(BatchError::BadMagic(magic));
        }
        Ok(Self {
            base_offset: be_i64(buf, 0),
            batch_length,
            partition_leader_epoch: be_i32(buf, 12),
            magic,
            crc: u32::from_be_bytes(buf[17..21].try_into().expect("4 bytes")),
            attributes: be_i16(buf, 21),
            last_offset_delta: be_i32(buf, 23),
            base_timestamp: be_i64(buf, 27),
            max_timestamp: be_i64(buf, 35),
            producer_id: be_i64(buf, 43),
            producer_epoch: be_i16(buf, 51),
            base_sequence: be_i32(buf, 53),
            record_count: be_i32(buf, 57),
        })
    }

    /// Total size of the batch in bytes, prefix fields included.
    pub fn total_len(&self) -> usize {
        LOG_OVERHEAD + self.batch_length as usize
    }

    /// Offset of the last record in the batch.
    pub fn last_offset(&self) -> i64 {
        self.base_offset + i64::from(self.last_offset_delta)
    }

    /// Whether this batch carries transaction control records.
    pub fn is_control(&self) -> bool {
        self.attributes & ATTR_CONTROL != 0
    }

    /// Whether this batch is part of a transaction.
    pub fn is_transactional(&self) -> bool {
        self.attributes & ATTR_TRANSACTIONAL != 0
    }

    /// Compression codec id (0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd).
    pub fn compression_id(&self) -> i16 {
        self.attributes & 0x07
    }
}

/// Parses the header of the batch at the front of `buf` and checks that the whole batch is
/// present and its CRC matches.
pub fn check_batch(buf: &[u8]) -> Result<BatchHeader, BatchError> {
    let header = BatchHeader::parse(buf)?;
    let need = header.total_len();
    if buf.len() < need {
        return Err(BatchError::Truncated { have: buf.len(), need });
    }
    let computed = crc32c::crc32c(&buf[CRC_START..need]);
    if computed != header.crc {
        return Err(BatchError::Crc { stored: header.crc, computed });
    }
    Ok(header)
}

/// Validates a producer's record set: one or more whole v2 batches, each with a good CRC
/// and a record count that matches its offset delta. Returns each batch's header and
/// byte range.
pub fn validate_produced(buf: &[u8]) -> Result<Vec<(BatchHeader, std::ops::Range<usize>)>, BatchError> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        let header = check_batch(&buf[pos..])?;
        if header.record_count <= 0 || header.last_offset_delta != header.record_count - 1 {
            return Err(BatchError::BadCount { count: header.record_count, delta: header.last_offset_delta });
        }
        let end = pos + header.total_len();
        out.push((header, pos..end));
        pos = end;
    }
    if out.is_empty() {
        return Err(BatchError::Truncated { have: 0, need: HEADER_LEN });
    }
    Ok(out)
}

/// Sets the base offset of the batch at the front of `batch` (the CRC stays valid).
pub fn set_base_offset(batch: &mut [u8], base_offset: i64) {
    batch[0..8].copy_from_slice(&base_offset.to_be_bytes());
}

/// Sets the partition leader epoch of the batch at the front of `batch` (the CRC stays valid).
pub fn set_partition_leader_epoch(batch: &mut [u8], epoch: i32) {
    batch[12..16].copy_from_slice(&epoch.to_be_bytes());
}

/// Marks the batch as log-append-time with `now_ms` as its max timestamp, as a broker does
/// for topics with `message.timestamp.type=LogAppendTime`, and recomputes the CRC.
pub fn set_log_append_time(batch: &mut [u8], now_ms: i64) {
    let attrs = be_i16(batch, 21) | ATTR_LOG_APPEND_TIME;
    batch[21..23].copy_from_slice(&attrs.to_be_bytes());
    batch[35..43].copy_from_slice(&now_ms.to_be_bytes());
    let len = LOG_OVERHEAD + be_i32(batch, 8) as usize;
    let crc = crc32c::crc32c(&batch[CRC_START..len]);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
}

/// A record for [`encode_plain`]: key, value and timestamp.
pub type PlainRecord = (Option<bytes::Bytes>, Option<bytes::Bytes>, i64);

/// Encodes records as one v2 batch of a plain (non-idempotent, non-transactional)
/// producer, with relative offsets from 0 (the broker assigns real ones).
pub fn encode_plain(records: &[PlainRecord], compression: kafka_protocol::records::Compression) -> Result<Vec<u8>, String> {
    use kafka_protocol::records::{Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};
    let records: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, (key, value, timestamp))| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // The encoder keeps records in one batch while offset - sequence is constant;
            // the first sequence is -1, as for a producer without idempotence.
            sequence: i as i32 - 1,
            timestamp: *timestamp,
            key: key.clone(),
            value: value.clone(),
            headers: Default::default(),
        })
        .collect();
    let mut buf = bytes::BytesMut::new();
    RecordBatchEncoder::encode(&mut buf, &records, &RecordEncodeOptions { version: 2, compression }).map_err(|e| e.to_string())?;
    Ok(buf.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::records::Compression;

    fn batch(n: i64, compression: Compression) -> Vec<u8> {
        let records: Vec<PlainRecord> =
            (0..n).map(|i| (Some(bytes::Bytes::from(format!("k{i}"))), Some(bytes::Bytes::from(format!("v{i}"))), 1000 + i)).collect();
        encode_plain(&records, compression).unwrap()
    }

    #[test]
    fn parse_and_rewrite_keep_crc_valid() {
        for c in [Compression::None, Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd] {
            let mut b = batch(5, c);
            let h = check_batch(&b).unwrap();
            assert_eq!((h.record_count, h.last_offset_delta, h.max_timestamp), (5, 4, 1004));
            set_base_offset(&mut b, 77);
            set_partition_leader_epoch(&mut b, 3);
            let h = check_batch(&b).unwrap();
            assert_eq!((h.base_offset, h.last_offset(), h.partition_leader_epoch), (77, 81, 3));
            set_log_append_time(&mut b, 5555);
            let h = check_batch(&b).unwrap();
            assert_eq!(h.max_timestamp, 5555);
            assert!(h.attributes & ATTR_LOG_APPEND_TIME != 0);
        }
    }

    #[test]
    fn corruption_is_detected() {
        let mut b = batch(2, Compression::None);
        let last = b.len() - 1;
        b[last] ^= 0xff;
        assert!(matches!(check_batch(&b), Err(BatchError::Crc { .. })));
        let mut b = batch(2, Compression::None);
        b[16] = 1;
        assert_eq!(check_batch(&b), Err(BatchError::BadMagic(1)));
        let b = batch(2, Compression::None);
        assert!(matches!(check_batch(&b[..b.len() - 3]), Err(BatchError::Truncated { .. })));
        let two: Vec<u8> = [batch(1, Compression::None), batch(3, Compression::Lz4)].concat();
        assert_eq!(validate_produced(&two).unwrap().len(), 2);
        assert!(validate_produced(&[]).is_err());
    }
}
