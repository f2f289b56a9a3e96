//! One log segment: `<base>.log` holds raw record batches back to back; `<base>.index`
//! maps relative offsets to file positions and `<base>.timeindex` maps the segment's running
//! max timestamp to a relative offset, both sparse (one entry per `index.interval.bytes`).
//!
//! Invariant: batches in a segment have strictly increasing offsets, and every index entry
//! points at the start of a batch whose base offset is `base + rel`. Both are asserted when
//! writing and checked again when a segment is reopened.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use samsa_client::wire::batch::{self, BatchHeader};

const INDEX_ENTRY: usize = 8;
const TIME_ENTRY: usize = 12;

/// File name of a segment file: the base offset zero-padded to 20 digits, as Kafka does.
pub fn file_name(base_offset: i64, ext: &str) -> String {
    format!("{base_offset:020}.{ext}")
}

/// A segment of a partition's log.
#[derive(Debug)]
pub struct Segment {
    base_offset: i64,
    dir: PathBuf,
    log: File,
    index_file: File,
    time_file: File,
    size: u64,
    /// Sparse (relative offset, file position) pairs, increasing in both.
    index: Vec<(u32, u32)>,
    /// Sparse (max timestamp so far, relative offset) pairs.
    time_index: Vec<(i64, u32)>,
    bytes_since_index: u64,
    next_offset: i64,
    max_timestamp: i64,
    /// Wall-clock ms when the first batch was appended (drives `segment.ms` rolls).
    created_ms: i64,
}

/// What [`Segment::open`] found while checking the segment's tail.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Recovery {
    /// Bytes of a torn or corrupt tail cut from the log file.
    pub truncated_bytes: u64,
    /// Whether the offset index had to be rebuilt from the log.
    pub index_rebuilt: bool,
}

fn open_rw(path: &Path) -> io::Result<File> {
    OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path)
}

impl Segment {
    /// Creates an empty segment starting at `base_offset`.
    pub fn create(dir: &Path, base_offset: i64, now_ms: i64) -> io::Result<Self> {
        let log = OpenOptions::new().read(true).write(true).create_new(true).open(dir.join(file_name(base_offset, "log")))?;
        // Append mode: a rollback that shrinks the file leaves no gap before the next entry.
        let append = |ext: &str| -> io::Result<File> {
            let path = dir.join(file_name(base_offset, ext));
            File::create(&path)?; // start empty
            OpenOptions::new().append(true).open(&path)
        };
        let index_file = append("index")?;
        let time_file = append("timeindex")?;
        Ok(Self {
            base_offset,
            dir: dir.to_path_buf(),
            log,
            index_file,
            time_file,
            size: 0,
            index: Vec::new(),
            time_index: Vec::new(),
            bytes_since_index: 0,
            next_offset: base_offset,
            max_timestamp: -1,
            created_ms: now_ms,
        })
    }

    /// Opens an existing segment, verifying every batch after the last trustworthy index
    /// entry (length and CRC) and cutting a torn tail. The indexes are rebuilt when they
    /// disagree with the log.
    pub fn open(dir: &Path, base_offset: i64, index_interval: u64) -> io::Result<(Self, Recovery)> {
        let log_path = dir.join(file_name(base_offset, "log"));
        let log = open_rw(&log_path)?;
        let meta = log.metadata()?;
        let file_size = meta.len();
        let created_ms = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        let index_file = open_rw(&dir.join(file_name(base_offset, "index")))?;
        let time_file = open_rw(&dir.join(file_name(base_offset, "timeindex")))?;
        let mut seg = Self {
            base_offset,
            dir: dir.to_path_buf(),
            log,
            index_file,
            time_file,
            size: file_size,
            index: read_index(&dir.join(file_name(base_offset, "index")))?,
            time_index: read_time_index(&dir.join(file_name(base_offset, "timeindex")))?,
            bytes_since_index: 0,
            next_offset: base_offset,
            max_timestamp: -1,
            created_ms,
        };
        let mut recovery = Recovery::default();
        // Drop index entries from the end that point past the file or not at a batch with
        // the right base offset (entries are monotonic, so the earlier ones stand).
        while let Some(&(rel, pos)) = seg.index.last() {
            let ok = (pos as u64) < file_size
                && seg.read_header_at(pos as u64).ok().flatten().map(|h| h.base_offset) == Some(base_offset + i64::from(rel));
            if ok {
                break;
            }
            seg.index.pop();
            recovery.index_rebuilt = true;
        }
        // Rescan from the last index entry: pop it (the scan re-adds it if that batch is
        // whole) and start counting offsets at its batch. Time entries are written in
        // pairs with index entries; the popped one's timestamp still bounds the batches
        // before it, so it seeds the segment's max timestamp.
        let mut pos = 0u64;
        if let Some((rel, p)) = seg.index.pop() {
            pos = u64::from(p);
            seg.next_offset = base_offset + i64::from(rel);
            seg.max_timestamp = seg.time_index.iter().filter(|&&(_, r)| r <= rel).map(|&(t, _)| t).max().unwrap_or(-1);
            seg.time_index.retain(|&(_, r)| r < rel);
        } else {
            seg.time_index.clear();
            if file_size > 0 {
                recovery.index_rebuilt = true;
            }
        }
        seg.bytes_since_index = index_interval; // the first scanned batch gets an entry
        while pos < file_size {
            match seg.read_checked_batch_at(pos, file_size) {
                Some(h) => {
                    let len = h.total_len() as u64;
                    seg.maybe_index(&h, pos, len, index_interval, true)?;
                    seg.next_offset = h.last_offset() + 1;
                    pos += len;
                }
                None => {
                    recovery.truncated_bytes = file_size - pos;
                    seg.log.set_len(pos)?;
                    seg.log.sync_all()?;
                    break;
                }
            }
        }
        seg.size = pos;
        // Rewrite both index files from memory so they match the verified log exactly
        // (they are small: one entry per index interval).
        seg.rewrite_indexes()?;
        Ok((seg, recovery))
    }

    fn read_header_at(&self, pos: u64) -> io::Result<Option<BatchHeader>> {
        let mut buf = [0u8; batch::HEADER_LEN];
        // `size` is exact: set from the file at open, advanced by every append.
        if pos + batch::HEADER_LEN as u64 > self.size {
            return Ok(None);
        }
        self.log.read_exact_at(&mut buf, pos)?;
        Ok(BatchHeader::parse(&buf).ok())
    }

    fn read_checked_batch_at(&self, pos: u64, file_size: u64) -> Option<BatchHeader> {
        let mut head = [0u8; batch::HEADER_LEN];
        if pos + batch::HEADER_LEN as u64 > file_size {
            return None;
        }
        self.log.read_exact_at(&mut head, pos).ok()?;
        let h = BatchHeader::parse(&head).ok()?;
        if pos + h.total_len() as u64 > file_size || h.base_offset < self.next_offset {
            return None;
        }
        let mut whole = vec![0u8; h.total_len()];
        self.log.read_exact_at(&mut whole, pos).ok()?;
        batch::check_batch(&whole).ok()
    }

    fn maybe_index(&mut self, h: &BatchHeader, pos: u64, len: u64, interval: u64, in_memory_only: bool) -> io::Result<()> {
        self.max_timestamp = self.max_timestamp.max(h.max_timestamp);
        if self.index.is_empty() || self.bytes_since_index >= interval {
            let rel = (h.base_offset - self.base_offset) as u32;
            self.index.push((rel, pos as u32));
            self.time_index.push((self.max_timestamp, rel));
            if !in_memory_only {
                let mut e = [0u8; INDEX_ENTRY];
                e[..4].copy_from_slice(&rel.to_be_bytes());
                e[4..].copy_from_slice(&(pos as u32).to_be_bytes());
                self.index_file.write_all(&e)?;
                let mut t = [0u8; TIME_ENTRY];
                t[..8].copy_from_slice(&self.max_timestamp.to_be_bytes());
                t[8..].copy_from_slice(&rel.to_be_bytes());
                self.time_file.write_all(&t)?;
            }
            self.bytes_since_index = 0;
        }
        self.bytes_since_index += len;
        Ok(())
    }

    fn rewrite_indexes(&mut self) -> io::Result<()> {
        let mut buf = Vec::with_capacity(self.index.len() * INDEX_ENTRY);
        for &(rel, pos) in &self.index {
            buf.extend_from_slice(&rel.to_be_bytes());
            buf.extend_from_slice(&pos.to_be_bytes());
        }
        self.index_file.set_len(0)?;
        self.index_file.write_all_at(&buf, 0)?;
        let mut tbuf = Vec::with_capacity(self.time_index.len() * TIME_ENTRY);
        for &(ts, rel) in &self.time_index {
            tbuf.extend_from_slice(&ts.to_be_bytes());
            tbuf.extend_from_slice(&rel.to_be_bytes());
        }
        self.time_file.set_len(0)?;
        self.time_file.write_all_at(&tbuf, 0)?;
        // Later appends go to the end of the index files.
        self.index_file = OpenOptions::new().append(true).open(self.dir.join(file_name(self.base_offset, "index")))?;
        self.time_file = OpenOptions::new().append(true).open(self.dir.join(file_name(self.base_offset, "timeindex")))?;
        Ok(())
    }

    /// Appends already-validated batches whose offsets start at `next_offset`. On a write
    /// error (a full disk) the log and index files are cut back to their previous sizes,
    /// so the segment stays readable and holds no partial batch or dangling index entry.
    pub fn append(&mut self, bytes: &[u8], headers: &[BatchHeader], index_interval: u64, now_ms: i64) -> io::Result<()> {
        let before = (self.size, self.index.len(), self.time_index.len(), self.bytes_since_index, self.next_offset, self.max_timestamp);
        match self.append_inner(bytes, headers, index_interval, now_ms) {
            Ok(()) => Ok(()),
            Err(e) => {
                let (size, index_len, time_len, since, next, max_ts) = before;
                self.index.truncate(index_len);
                self.time_index.truncate(time_len);
                (self.size, self.bytes_since_index, self.next_offset, self.max_timestamp) = (size, since, next, max_ts);
                // Best effort: shrinking a file needs no new space.
                let _ = self.log.set_len(size);
                let _ = self.index_file.set_len((index_len * INDEX_ENTRY) as u64);
                let _ = self.time_file.set_len((time_len * TIME_ENTRY) as u64);
                Err(e)
            }
        }
    }

    fn append_inner(&mut self, bytes: &[u8], headers: &[BatchHeader], index_interval: u64, now_ms: i64) -> io::Result<()> {
        if self.size == 0 {
            self.created_ms = now_ms;
        }
        self.log.write_all_at(bytes, self.size)?;
        let mut pos = self.size;
        for h in headers {
            assert!(h.base_offset >= self.next_offset, "segment offsets must increase: {} < {}", h.base_offset, self.next_offset);
            let len = h.total_len() as u64;
            self.maybe_index(h, pos, len, index_interval, false)?;
            self.next_offset = h.last_offset() + 1;
            pos += len;
        }
        assert_eq!(pos, self.size + bytes.len() as u64, "batch lengths must add up to the bytes written");
        self.size = pos;
        Ok(())
    }

    /// File position of the batch holding `offset`, or of the first batch after it; `None`
    /// if the segment ends before `offset`.
    pub fn position_of(&self, offset: i64) -> io::Result<Option<u64>> {
        if offset >= self.next_offset {
            return Ok(None);
        }
        let rel = (offset - self.base_offset).max(0) as u32;
        let i = self.index.partition_point(|&(r, _)| r <= rel);
        let mut pos = if i == 0 { 0 } else { self.index[i - 1].1 as u64 };
        while pos < self.size {
            let h = self.read_header_at(pos)?.ok_or_else(|| corrupt(&self.dir, self.base_offset, pos))?;
            if h.last_offset() >= offset {
                return Ok(Some(pos));
            }
            pos += h.total_len() as u64;
        }
        Ok(None)
    }

    /// Reads whole batches starting with the one holding `offset`, up to `max_bytes` and
    /// before the first batch based at or past `end_offset`; with `min_one` the first batch
    /// is returned whole even when larger, so consumers always progress. The flag says
    /// whether the read stopped before the segment's end (a reader must not go on to the
    /// next segment then, or it would skip the batches left here).
    pub fn read(&self, offset: i64, end_offset: i64, max_bytes: usize, min_one: bool) -> io::Result<(Vec<u8>, bool)> {
        let Some(start) = self.position_of(offset)? else { return Ok((Vec::new(), false)) };
        let mut end = start;
        while end < self.size {
            let h = self.read_header_at(end)?.ok_or_else(|| corrupt(&self.dir, self.base_offset, end))?;
            if h.base_offset >= end_offset {
                break;
            }
            let len = h.total_len() as u64;
            if (end + len - start) as usize > max_bytes && !(end == start && min_one) {
                break;
            }
            end += len;
        }
        let mut buf = vec![0u8; (end - start) as usize];
        self.log.read_exact_at(&mut buf, start)?;
        Ok((buf, end < self.size))
    }

    /// Cuts the segment before the batch holding `offset` (or the first batch after it),
    /// so it ends on a batch boundary at or below `offset`; the indexes lose the entries
    /// past the cut and are rewritten.
    pub fn truncate_to_offset(&mut self, offset: i64) -> io::Result<()> {
        let Some(cut) = self.position_of(offset)? else { return Ok(()) };
        let cut_base = self.read_header_at(cut)?.ok_or_else(|| corrupt(&self.dir, self.base_offset, cut))?.base_offset;
        // Index and time entries come in pairs naming the same batch.
        let keep = |rel: u32| self.base_offset + i64::from(rel) < cut_base;
        self.index.retain(|&(rel, _)| keep(rel));
        self.time_index.retain(|&(_, rel)| keep(rel));
        self.log.set_len(cut)?;
        self.log.sync_all()?;
        self.size = cut;
        // Recount the tail from the last surviving index entry, as `open` does; the time
        // entry paired with it holds the running max timestamp up to that batch (without a
        // pair, rescan the whole segment).
        let (mut pos, mut next, mut max_ts) = match (self.index.last(), self.time_index.last()) {
            (Some(&(rel, p)), Some(&(ts, trel))) if rel == trel => (u64::from(p), self.base_offset + i64::from(rel), ts),
            _ => (0, self.base_offset, -1),
        };
        let indexed_at = pos;
        while pos < cut {
            let h = self.read_header_at(pos)?.ok_or_else(|| corrupt(&self.dir, self.base_offset, pos))?;
            max_ts = max_ts.max(h.max_timestamp);
            next = h.last_offset() + 1;
            pos += h.total_len() as u64;
        }
        (self.next_offset, self.max_timestamp, self.bytes_since_index) = (next, max_ts, cut - indexed_at);
        self.rewrite_indexes()
    }

    /// Headers of every batch, in order, with their positions (for scans and compaction).
    pub fn batches(&self) -> io::Result<Vec<(u64, BatchHeader)>> {
        let mut out = Vec::new();
        let mut pos = 0;
        while pos < self.size {
            let h = self.read_header_at(pos)?.ok_or_else(|| corrupt(&self.dir, self.base_offset, pos))?;
            out.push((pos, h));
            pos += h.total_len() as u64;
        }
        Ok(out)
    }

    /// Raw bytes of the batch at `pos` with length `len`.
    pub fn read_at(&self, pos: u64, len: usize) -> io::Result<Vec<u8>> {
        let mut buf = vec![0u8; len];
        self.log.read_exact_at(&mut buf, pos)?;
        Ok(buf)
    }

    /// Offset of the first batch whose max timestamp is at or after `ts`, scanning from the
    /// time index's best starting point.
    pub fn first_batch_at_or_after(&self, ts: i64) -> io::Result<Option<(u64, BatchHeader)>> {
        if self.max_timestamp < ts {
            return Ok(None);
        }
        let i = self.time_index.partition_point(|&(t, _)| t < ts);
        let start_rel = if i == 0 { 0 } else { self.time_index[i - 1].1 };
        let mut pos = self.position_of(self.base_offset + i64::from(start_rel))?.unwrap_or(0);
        while pos < self.size {
            let h = self.read_header_at(pos)?.ok_or_else(|| corrupt(&self.dir, self.base_offset, pos))?;
            if h.max_timestamp >= ts {
                return Ok(Some((pos, h)));
            }
            pos += h.total_len() as u64;
        }
        Ok(None)
    }

    /// fsyncs the log file and indexes.
    pub fn flush(&self) -> io::Result<()> {
        self.log.sync_data()?;
        self.index_file.sync_data()?;
        self.time_file.sync_data()
    }

    /// Removes the segment's files.
    pub fn delete(self) -> io::Result<()> {
        for ext in ["log", "index", "timeindex"] {
            match std::fs::remove_file(self.dir.join(file_name(self.base_offset, ext))) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }

    /// First offset this segment may hold.
    pub fn base_offset(&self) -> i64 {
        self.base_offset
    }
    /// One past the last offset in the segment.
    pub fn next_offset(&self) -> i64 {
        self.next_offset
    }
    /// Size of the log file in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }
    /// Largest record timestamp in the segment (-1 when empty).
    pub fn max_timestamp(&self) -> i64 {
        self.max_timestamp
    }
    /// Wall-clock ms of the segment's first append.
    pub fn created_ms(&self) -> i64 {
        self.created_ms
    }
}

fn corrupt(dir: &Path, base: i64, pos: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("corrupt batch header in {} at byte {pos}", dir.join(file_name(base, "log")).display()),
    )
}

fn read_index(path: &Path) -> io::Result<Vec<(u32, u32)>> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out: Vec<(u32, u32)> = Vec::new();
    for c in bytes.chunks_exact(INDEX_ENTRY) {
        let e = (u32::from_be_bytes(c[..4].try_into().expect("4")), u32::from_be_bytes(c[4..].try_into().expect("4")));
        // Entries must increase in both columns; stop at the first that does not.
        if out.last().is_some_and(|l| e.0 <= l.0 || e.1 <= l.1) {
            break;
        }
        out.push(e);
    }
    Ok(out)
}

fn read_time_index(path: &Path) -> io::Result<Vec<(i64, u32)>> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    Ok(bytes
        .chunks_exact(TIME_ENTRY)
        .map(|c| (i64::from_be_bytes(c[..8].try_into().expect("8")), u32::from_be_bytes(c[8..].try_into().expect("4"))))
        .collect())
}
