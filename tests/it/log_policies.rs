//! Log policies through the real binary: retention by time and by size, compaction (last
//! value per key, tombstone expiry, consumers reading through a rewrite) and recovery of a
//! torn segment tail after a restart.
//!
//! Records are written by `log_produce.py` (one record batch per `flush` line) and read back
//! by `log_read.py`; the assertions on offsets, values and segment files are made here.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, ensure, Context, Result};
use samsa_tests::{python, wait_until, SamsaServer};

/// How long a background policy (retention, cleaner) may take to reach the wanted state.
const POLICY_WAIT: Duration = Duration::from_secs(25);
const CLIENT_LIMIT: Duration = Duration::from_secs(60);

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64
}

/// Input for `log_produce.py`.
#[derive(Debug, Default)]
struct Script {
    text: String,
    records: usize,
}

impl Script {
    /// A script that first creates the topic (1 partition) with these topic configs.
    fn create(configs: &[(&str, &str)]) -> Self {
        let mut s = Script::default();
        s.text.push_str("create");
        for (k, v) in configs {
            s.text.push_str(&format!(" {k}={v}"));
        }
        s.text.push('\n');
        s
    }

    /// One record; `None` is a null key or value (a null value is a tombstone), `ts` an
    /// explicit CreateTime.
    fn rec(&mut self, key: Option<&str>, value: Option<&str>, ts: Option<i64>) {
        let ts = ts.map(|t| format!(" {t}")).unwrap_or_default();
        self.text.push_str(&format!(
            "rec {} {}{ts}\n",
            key.unwrap_or("-"),
            value.unwrap_or("-")
        ));
        self.records += 1;
    }

    /// Ends the current record batch.
    fn flush(&mut self) {
        self.text.push_str("flush\n");
    }
}

/// Runs `script` against `topic`; returns each record's offset in script order.
fn produce(bootstrap: &str, topic: &str, script: &Script) -> Result<Vec<i64>> {
    let out = python("log_produce.py")?
        .args([bootstrap, topic])
        .stdin(script.text.clone())
        .timeout(CLIENT_LIMIT)
        .run()?;
    let mut offsets = Vec::new();
    for line in out.stdout.lines().filter_map(|l| l.strip_prefix("ACK ")) {
        let (index, offset) = line
            .split_once(' ')
            .ok_or_else(|| anyhow!("bad ACK line `{line}`"))?;
        ensure!(
            index.parse::<usize>()? == offsets.len(),
            "ACK lines out of order: `{line}`"
        );
        offsets.push(offset.parse::<i64>()?);
    }
    ensure!(
        offsets.len() == script.records,
        "{} acks for {} records",
        offsets.len(),
        script.records
    );
    Ok(offsets)
}

/// One record as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rec {
    offset: i64,
    key: Option<String>,
    value: Option<String>,
}

impl Rec {
    fn new(offset: i64, key: &str, value: Option<&str>) -> Self {
        Rec {
            offset,
            key: Some(key.to_string()),
            value: value.map(str::to_string),
        }
    }
}

/// Partition 0 as a consumer sees it: ListOffsets earliest/latest and the records read from
/// the beginning.
#[derive(Debug)]
struct View {
    low: i64,
    high: i64,
    records: Vec<Rec>,
}

fn read_partition(bootstrap: &str, topic: &str) -> Result<View> {
    let out = python("log_read.py")?
        .args([bootstrap, topic])
        .timeout(CLIENT_LIMIT)
        .run()?;
    let field = |s: &str| (s != "-").then(|| s.to_string());
    let mut records = Vec::new();
    for line in out.stdout.lines().filter_map(|l| l.strip_prefix("REC ")) {
        let parts: Vec<&str> = line.split(' ').collect();
        ensure!(parts.len() == 4, "bad REC line `{line}`");
        records.push(Rec {
            offset: parts[0].parse()?,
            key: field(parts[1]),
            value: field(parts[2]),
        });
    }
    ensure!(out.result_value::<usize>("count")? == records.len());
    Ok(View {
        low: out.result_value("low")?,
        high: out.result_value("high")?,
        records,
    })
}

/// Fails unless `got` equals `want`, naming the first difference.
fn ensure_records(got: &[Rec], want: &[Rec]) -> Result<()> {
    if got == want {
        return Ok(());
    }
    let at = got.iter().zip(want).take_while(|(g, w)| g == w).count();
    Err(anyhow!(
        "read {} records, want {}; first difference at index {at}: got {:?}, want {:?}",
        got.len(),
        want.len(),
        got.get(at),
        want.get(at)
    ))
}

fn ensure_increasing(records: &[Rec]) -> Result<()> {
    for w in records.windows(2) {
        ensure!(
            w[1].offset > w[0].offset,
            "offset {} read after {}",
            w[1].offset,
            w[0].offset
        );
    }
    Ok(())
}

fn partition_dir(server: &SamsaServer, topic: &str) -> PathBuf {
    server.data_dir().join(format!("{topic}-0"))
}

/// The partition's segments as (base offset, `.log` bytes), in offset order.
fn segments(dir: &Path) -> Result<Vec<(i64, u64)>> {
    let mut segs = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(base) = name.strip_suffix(".log") {
            // A file can vanish between the listing and the stat (retention).
            let Ok(meta) = entry.metadata() else { continue };
            segs.push((base.parse::<i64>()?, meta.len()));
        }
    }
    segs.sort_unstable();
    Ok(segs)
}

fn total_bytes(segs: &[(i64, u64)]) -> u64 {
    segs.iter().map(|&(_, len)| len).sum()
}

fn padded(prefix: &str, len: usize) -> String {
    format!("{prefix}-{}", "x".repeat(len))
}

/// Old records (CreateTime an hour ago) fill several 1 KiB segments, then current ones
/// follow; retention.ms=10 min. Retention must delete every closed segment holding only old
/// records, never one holding a current record, and move the log start offset with it.
#[test]
fn retention_by_time_deletes_old_segments() -> Result<()> {
    let mut server = SamsaServer::builder()
        .set("log.retention.check.interval.ms", 100)
        .start()?;
    let topic = "retention-time";
    let (n_old, n_new) = (120usize, 40usize);
    let old_ts = now_ms() - 3_600_000;
    let mut script = Script::create(&[("segment.bytes", "1024"), ("retention.ms", "600000")]);
    let mut values = Vec::new();
    for i in 0..n_old + n_new {
        let value = padded(&format!("v{i:04}"), 80);
        let ts = (i < n_old).then_some(old_ts + i as i64);
        script.rec(Some(&format!("k{i:04}")), Some(&value), ts);
        if i % 4 == 3 {
            script.flush();
        }
        values.push(value);
    }
    let offsets = produce(server.bootstrap(), topic, &script)?;
    ensure!(
        offsets == (0..(n_old + n_new) as i64).collect::<Vec<_>>(),
        "offsets {offsets:?}"
    );
    let first_new = n_old as i64;

    // Done when the first segment is the one holding the first current record (it may
    // start with old ones) and no segment before it is left.
    let dir = partition_dir(&server, topic);
    let mut segs = Vec::new();
    wait_until(
        POLICY_WAIT,
        "time retention to delete the old segments",
        || {
            segs = segments(&dir)?;
            let first_ok = segs.first().is_some_and(|&(b, _)| b > 0 && b <= first_new);
            let second_ok = segs.get(1).is_none_or(|&(b, _)| b > first_new);
            Ok(first_ok && second_ok)
        },
    )
    .with_context(|| format!("segments (base, bytes): {segs:?}"))?;
    let start = segs[0].0;
    ensure!(
        !dir.join(format!("{:020}.log", 0)).exists(),
        "the first old segment is still there"
    );

    let view = read_partition(server.bootstrap(), topic)?;
    ensure!(
        view.low == start,
        "low watermark {} but the first segment starts at {start}",
        view.low
    );
    ensure!(
        view.high == (n_old + n_new) as i64,
        "high watermark {}",
        view.high
    );
    ensure!(
        view.records.first().map(|r| r.offset) == Some(view.low),
        "reading from the beginning starts at {:?}, low watermark {}",
        view.records.first(),
        view.low
    );
    let want: Vec<Rec> = (start..(n_old + n_new) as i64)
        .map(|o| Rec::new(o, &format!("k{o:04}"), Some(&values[o as usize])))
        .collect();
    ensure_records(&view.records, &want)?;
    ensure!(
        segments(&dir)?.first().map(|s| s.0) == Some(start),
        "retention went further"
    );
    server.terminate()
}

/// retention.bytes=3000 with 1 KiB segments and ~30 KB written: retention deletes the oldest
/// segments until the partition holds at most retention.bytes + one segment, but never
/// less than retention.bytes; what is left is readable in order from the new log start.
#[test]
fn retention_by_size_keeps_partition_bounded() -> Result<()> {
    let mut server = SamsaServer::builder()
        .set("log.retention.check.interval.ms", 100)
        .start()?;
    let topic = "retention-size";
    let (n, retention, segment) = (300usize, 3000u64, 1024u64);
    let mut script = Script::create(&[
        ("segment.bytes", &segment.to_string()),
        ("retention.bytes", &retention.to_string()),
    ]);
    let mut values = Vec::new();
    for i in 0..n {
        let value = padded(&format!("v{i:04}"), 60);
        script.rec(Some(&format!("k{i:04}")), Some(&value), None);
        if i % 4 == 3 {
            script.flush();
        }
        values.push(value);
    }
    let produced_bytes: usize = values.iter().map(String::len).sum();
    ensure!(
        produced_bytes as u64 > 5 * retention,
        "write well over retention.bytes"
    );
    let offsets = produce(server.bootstrap(), topic, &script)?;
    ensure!(
        offsets == (0..n as i64).collect::<Vec<_>>(),
        "offsets {offsets:?}"
    );

    let dir = partition_dir(&server, topic);
    let mut segs = Vec::new();
    wait_until(POLICY_WAIT, "size retention to bound the partition", || {
        segs = segments(&dir)?;
        Ok(total_bytes(&segs) <= retention + segment && segs.first().is_some_and(|s| s.0 > 0))
    })
    .with_context(|| format!("segments (base, bytes): {segs:?}"))?;
    ensure!(
        total_bytes(&segs) >= retention,
        "retention deleted below retention.bytes: {segs:?}"
    );
    let start = segs[0].0;

    let view = read_partition(server.bootstrap(), topic)?;
    ensure!(
        view.low == start && view.low > 0,
        "low watermark {}, first segment {start}",
        view.low
    );
    ensure!(view.high == n as i64, "high watermark {}", view.high);
    let want: Vec<Rec> = (start..n as i64)
        .map(|o| Rec::new(o, &format!("k{o:04}"), Some(&values[o as usize])))
        .collect();
    ensure_records(&view.records, &want)?;
    server.terminate()
}

/// 20 keys updated 15 times each; tombstones for k03, k07, k11 with a CreateTime an hour
/// old (past delete.retention.ms=60 s) and for k15 with the current time (within it); then
/// one more update of every live key, which closes the tombstones' segment. The cleaner
/// must leave exactly the last record of each key at its original offset: the live keys'
/// last values and k15's tombstone, nothing of k03/k07/k11.
#[test]
fn compaction_keeps_last_value_per_key_and_expires_tombstones() -> Result<()> {
    let mut server = SamsaServer::builder()
        .set("log.cleaner.backoff.ms", 100)
        .start()?;
    let topic = "compacted";
    let mut script = Script::create(&[
        ("cleanup.policy", "compact"),
        ("segment.bytes", "1024"),
        ("min.cleanable.dirty.ratio", "0.01"),
        ("delete.retention.ms", "60000"),
    ]);
    let key = |k: usize| format!("k{k:02}");
    let expired = [3usize, 7, 11];
    let fresh_tombstone = 15usize;
    let deleted = |k: usize| expired.contains(&k) || k == fresh_tombstone;
    // (key, value) in produce order; a None value is a tombstone.
    let mut sent: Vec<(String, Option<String>)> = Vec::new();
    let mut payload = 0usize;
    let mut push = |script: &mut Script, k: String, v: Option<String>, ts: Option<i64>| {
        payload += v.as_ref().map_or(0, String::len);
        script.rec(Some(&k), v.as_deref(), ts);
        sent.push((k, v));
    };
    for u in 0..15 {
        for k in 0..20 {
            push(
                &mut script,
                key(k),
                Some(padded(&format!("{}-u{u:02}", key(k)), 150)),
                None,
            );
            if k % 4 == 3 {
                script.flush();
            }
        }
    }
    let old_ts = now_ms() - 3_600_000;
    for &k in &expired {
        push(&mut script, key(k), None, Some(old_ts));
    }
    push(&mut script, key(fresh_tombstone), None, None);
    script.flush();
    // Updates (not new keys) close the tombstones' segment: the cleaner only runs when
    // the log holds superseded records, so new distinct keys alone would leave expired
    // tombstones in place (reported to the lead as a broker bug).
    for k in (0..20).filter(|&k| !deleted(k)) {
        push(
            &mut script,
            key(k),
            Some(padded(&format!("{}-u15", key(k)), 150)),
            None,
        );
        if k % 4 == 3 {
            script.flush();
        }
    }
    let offsets = produce(server.bootstrap(), topic, &script)?;
    ensure!(
        offsets == (0..sent.len() as i64).collect::<Vec<_>>(),
        "offsets {offsets:?}"
    );

    // The last record of each key, minus the expired tombstones, in offset order.
    let mut last: BTreeMap<&str, (i64, Option<&str>)> = BTreeMap::new();
    for (o, (k, v)) in sent.iter().enumerate() {
        last.insert(k, (o as i64, v.as_deref()));
    }
    let mut want: Vec<Rec> = last
        .iter()
        .filter(|(k, (_, v))| v.is_some() || **k == key(fresh_tombstone))
        .map(|(k, &(o, v))| Rec::new(o, k, v))
        .collect();
    want.sort_by_key(|r| r.offset);
    ensure!(
        want.len() == 17,
        "16 live keys and one fresh tombstone: {want:?}"
    );

    let mut view = None;
    wait_until(
        POLICY_WAIT,
        "compaction to leave one record per key",
        || {
            let v = read_partition(server.bootstrap(), topic)?;
            let done = v.records == want;
            view = Some(v);
            Ok(done)
        },
    )
    .with_context(|| {
        let diff = view.as_ref().map(|v| {
            ensure_records(&v.records, &want)
                .err()
                .map(|e| e.to_string())
        });
        format!("last view: {view:?}\n{diff:?}")
    })?;
    let view = view.expect("read at least once");
    ensure_increasing(&view.records)?;
    ensure!(
        view.low == 0 && view.high == sent.len() as i64,
        "watermarks {view:?}"
    );
    for &k in &expired {
        ensure!(
            view.records
                .iter()
                .all(|r| r.key.as_deref() != Some(key(k).as_str())),
            "deleted key {} still readable",
            key(k)
        );
    }

    let dir = partition_dir(&server, topic);
    let segs = segments(&dir)?;
    ensure!(
        total_bytes(&segs) < payload as u64 / 2,
        "compacted partition holds {} bytes of .log files for {payload} bytes of values \
         written: {segs:?}",
        total_bytes(&segs)
    );
    let leftovers: Vec<String> = std::fs::read_dir(&dir)?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".cleaned"))
        .collect();
    ensure!(leftovers.is_empty(), "cleaner left {leftovers:?}");
    ensure!(
        server.stderr().contains("compacted"),
        "the server never logged a compaction"
    );
    server.terminate()
}

/// A producer updates 200 keys 6000 times in 5-record batches while fresh consumers read the
/// partition from the beginning in 1 KiB fetches, again and again, and the cleaner rewrites
/// segments every 100 ms. Every pass sees increasing offsets, increasing values per key and
/// each record at its acknowledged offset; the last pass ends with every key's last value.
#[test]
fn consumer_reading_through_compaction_sees_increasing_offsets() -> Result<()> {
    let mut server = SamsaServer::builder()
        .set("log.cleaner.backoff.ms", 100)
        .start()?;
    let (keys, records) = (200usize, 6000usize);
    let out = python("log_compaction_passes.py")?
        .args([
            server.bootstrap().to_string(),
            "compacted-passes".to_string(),
            keys.to_string(),
            records.to_string(),
        ])
        .timeout(Duration::from_secs(120))
        .run()?;
    eprintln!("passes: {:?}", out.result()?);
    ensure!(out.result_value::<usize>("produced")? == records);
    ensure!(out.result_value::<usize>("final_keys")? == keys);
    let passes: usize = out.result_value("passes")?;
    ensure!(passes >= 4, "only {passes} passes");
    ensure!(
        out.result_value::<usize>("passes_during_produce")? >= 3,
        "fewer than 3 passes overlapped the producer"
    );
    ensure!(
        out.result_value::<usize>("passes_with_gaps")? >= 3,
        "fewer than 3 passes saw a compacted gap"
    );
    let final_records: usize = out.result_value("final_records")?;
    ensure!(
        final_records < records / 4,
        "the final pass read {final_records} of {records} records: little was compacted"
    );
    let compactions = server.stderr().matches("compacted").count();
    ensure!(
        compactions >= 2,
        "the server logged {compactions} compactions"
    );
    server.terminate()
}

/// A record batch as laid out in a segment file.
#[derive(Debug, Clone, Copy)]
struct FileBatch {
    pos: usize,
    len: usize,
    base_offset: i64,
    records: i32,
}

/// Walks the v2 record batches of a segment file (base offset at 0, length at 8, record
/// count at 57 of the 61-byte header).
fn file_batches(bytes: &[u8]) -> Result<Vec<FileBatch>> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        ensure!(pos + 61 <= bytes.len(), "partial batch header at {pos}");
        let be4 = |at: usize| i32::from_be_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
        let base_offset = i64::from_be_bytes(bytes[pos..pos + 8].try_into().expect("8 bytes"));
        let len = 12 + usize::try_from(be4(pos + 8))?;
        ensure!(
            pos + len <= bytes.len(),
            "batch at {pos} runs past the file"
        );
        out.push(FileBatch {
            pos,
            len,
            base_offset,
            records: be4(pos + 57),
        });
        pos += len;
    }
    Ok(out)
}

/// Ten 5-record batches, SIGTERM, the segment cut in the middle of its last batch, restart:
/// the broker drops the torn batch (and says so), serves exactly the 45 whole records, and
/// appends the next record at offset 45.
#[test]
fn torn_segment_recovers_to_last_whole_batch() -> Result<()> {
    let data = tempfile::Builder::new().prefix("samsa-torn-").tempdir()?;
    let mut server = SamsaServer::builder().data_dir(data.path()).start()?;
    let topic = "torn";
    let (batches, per_batch) = (10usize, 5usize);
    let mut script = Script::create(&[]);
    let mut values = Vec::new();
    for i in 0..batches * per_batch {
        let value = padded(&format!("v{i:03}"), 20);
        script.rec(Some(&format!("k{i:03}")), Some(&value), None);
        if i % per_batch == per_batch - 1 {
            script.flush();
        }
        values.push(value);
    }
    let offsets = produce(server.bootstrap(), topic, &script)?;
    ensure!(
        offsets == (0..values.len() as i64).collect::<Vec<_>>(),
        "offsets {offsets:?}"
    );
    server.terminate()?;

    let seg = data
        .path()
        .join(format!("{topic}-0"))
        .join(format!("{:020}.log", 0));
    let bytes = std::fs::read(&seg).with_context(|| format!("reading {}", seg.display()))?;
    let on_disk = file_batches(&bytes)?;
    ensure!(
        on_disk.len() == batches && on_disk.iter().all(|b| b.records == per_batch as i32),
        "want {batches} batches of {per_batch} records on disk, got {on_disk:?}"
    );
    let last = *on_disk.last().expect("batches");
    ensure!(
        last.base_offset == ((batches - 1) * per_batch) as i64,
        "last batch {last:?}"
    );
    let cut = last.pos + last.len / 2;
    let dropped = cut - last.pos; // the torn batch's bytes left in the file
    std::fs::OpenOptions::new()
        .write(true)
        .open(&seg)?
        .set_len(cut as u64)?;

    let mut server = server.restart_builder().start()?;
    let stderr = server.stderr();
    ensure!(
        stderr.contains("torn") && stderr.contains(&format!("truncated_bytes={dropped}")),
        "the restarted server does not report dropping {dropped} bytes; stderr:\n{stderr}"
    );
    let whole = (batches - 1) * per_batch;
    let view = read_partition(server.bootstrap(), topic)?;
    ensure!(
        view.low == 0 && view.high == whole as i64,
        "watermarks {} {}",
        view.low,
        view.high
    );
    let mut want: Vec<Rec> = (0..whole)
        .map(|i| Rec::new(i as i64, &format!("k{i:03}"), Some(&values[i])))
        .collect();
    ensure_records(&view.records, &want)?;
    let cut_back = std::fs::metadata(&seg)?.len();
    ensure!(
        cut_back == last.pos as u64,
        "segment is {cut_back} bytes after recovery, want {} (the end of the last whole batch)",
        last.pos
    );

    let mut after = Script::default();
    after.rec(Some("after"), Some("after-restart"), None);
    let offsets = produce(server.bootstrap(), topic, &after)?;
    ensure!(
        offsets == [whole as i64],
        "record after restart landed at {offsets:?}, want {whole}"
    );
    let view = read_partition(server.bootstrap(), topic)?;
    want.push(Rec::new(whole as i64, "after", Some("after-restart")));
    ensure!(
        view.high == whole as i64 + 1,
        "high watermark {}",
        view.high
    );
    ensure_records(&view.records, &want)?;
    server.terminate()
}
