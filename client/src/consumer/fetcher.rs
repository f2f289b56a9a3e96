//! The fetcher task: finds starting positions, keeps one Fetch in flight per leader for
//! partitions whose buffer is empty (so prefetch is bounded by one response per
//! partition), and decodes record batches into per-partition buffers: transaction markers
//! never reach the application, and under read_committed neither do records of aborted
//! transactions (the broker stops such fetches at the last stable offset).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{BrokerId, FetchRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{RecordBatchDecoder, TimestampType};
use kafka_protocol::ResponseError;
use tokio::task::JoinSet;

use super::config::{IsolationLevel, OffsetReset};
use super::offsets::{self, OffsetSpec};
use super::{group, ConsumerRecord, Inner, TopicPartition};
use crate::error::{Error, Result};
use crate::wire::batch::BatchHeader;

pub(crate) async fn run(inner: Arc<Inner>) {
    let mut tasks: JoinSet<i32> = JoinSet::new();
    let mut busy: HashSet<i32> = HashSet::new();
    loop {
        if inner.closed.load(Ordering::Acquire) {
            return;
        }
        let wake = inner.fetch_wake.notified();
        tokio::pin!(wake);
        wake.as_mut().enable();
        if let Err(e) = resolve_positions(&inner).await {
            if e.is_retriable() {
                tracing::debug!(error = %e, "cannot look up positions yet");
            } else {
                inner.state.lock().unwrap().error = Some(e);
                inner.data.notify_waiters();
            }
            tokio::time::sleep(inner.config.common.retry_backoff).await;
        }
        let md = inner.cluster.metadata();
        let mut plan: BTreeMap<i32, Vec<(TopicPartition, i64, u64)>> = BTreeMap::new();
        let mut missing_leader = false;
        {
            let mut st = inner.state.lock().unwrap();
            for (tp, ps) in st.parts.iter_mut() {
                let Some(position) = ps.position else { continue };
                if ps.paused || ps.revoking || ps.fetching || !ps.buffer.is_empty() {
                    continue;
                }
                match md.leader(&tp.topic, tp.partition) {
                    Some(leader) if !busy.contains(&leader) => {
                        ps.fetching = true;
                        plan.entry(leader).or_default().push((tp.clone(), position, ps.epoch));
                    }
                    Some(_) => {}
                    None => missing_leader = true,
                }
            }
        }
        if missing_leader || inner.cluster.is_stale() {
            let topics: Vec<String> = inner.state.lock().unwrap().parts.keys().map(|tp| tp.topic.clone()).collect::<BTreeSet<_>>().into_iter().collect();
            if let Err(e) = inner.cluster.refresh(Some(&topics), false).await {
                tracing::debug!(error = %e, "consumer metadata refresh failed");
            }
        }
        for (leader, parts) in plan {
            busy.insert(leader);
            let inner = inner.clone();
            tasks.spawn(async move {
                fetch(&inner, leader, parts).await;
                leader
            });
        }
        let pause = if missing_leader { inner.config.common.retry_backoff } else { Duration::from_secs(1) };
        tokio::select! {
            _ = &mut wake => {}
            Some(done) = tasks.join_next() => {
                if let Ok(leader) = done {
                    busy.remove(&leader);
                }
            }
            _ = tokio::time::sleep(pause) => {}
        }
    }
}

/// Looks up positions for partitions that have none: the committed offset (unless a
/// seek_to_beginning/end said otherwise), else `auto.offset.reset`.
pub(crate) async fn resolve_positions(inner: &Arc<Inner>) -> Result<()> {
    let wanted: Vec<(TopicPartition, Option<OffsetReset>, u64)> = {
        let st = inner.state.lock().unwrap();
        st.parts.iter().filter(|(_, ps)| ps.position.is_none()).map(|(tp, ps)| (tp.clone(), ps.reset, ps.epoch)).collect()
    };
    if wanted.is_empty() {
        return Ok(());
    }
    let mut found: BTreeMap<TopicPartition, i64> = BTreeMap::new();
    let ask_committed: Vec<TopicPartition> = wanted.iter().filter(|(_, r, _)| r.is_none()).map(|(tp, _, _)| tp.clone()).collect();
    if let (Some(group_id), false) = (&inner.config.group_id, ask_committed.is_empty()) {
        let committed = group::fetch_committed(inner, group_id, &ask_committed).await?;
        found.extend(committed.into_iter().filter_map(|(tp, o)| o.map(|o| (tp, o))));
    }
    let (mut earliest, mut latest) = (Vec::new(), Vec::new());
    let mut no_offset: Vec<TopicPartition> = Vec::new();
    for (tp, reset, _) in &wanted {
        if found.contains_key(tp) {
            continue;
        }
        match reset.unwrap_or(inner.config.auto_offset_reset) {
            OffsetReset::Earliest => earliest.push(tp.clone()),
            OffsetReset::Latest => latest.push(tp.clone()),
            OffsetReset::None => no_offset.push(tp.clone()),
        }
    }
    for (spec, tps) in [(OffsetSpec::Earliest, earliest), (OffsetSpec::Latest, latest)] {
        if tps.is_empty() {
            continue;
        }
        let listed = offsets::list_offsets(&inner.cluster, &tps, spec, inner.config.isolation_level.wire()).await?;
        found.extend(listed.into_iter().map(|(tp, (o, _))| (tp, o)));
    }
    let mut flagged = false;
    let mut st = inner.state.lock().unwrap();
    for (tp, _, epoch) in wanted {
        let Some(ps) = st.parts.get_mut(&tp) else { continue };
        if ps.epoch != epoch || ps.position.is_some() {
            continue; // a seek came in meanwhile and decides
        }
        if let Some(&o) = found.get(&tp) {
            ps.position = Some(o);
            ps.reset = None;
            ps.no_offset = false;
        } else if no_offset.contains(&tp) && !ps.no_offset {
            ps.no_offset = true;
            flagged = true;
        }
    }
    drop(st);
    if flagged {
        inner.data.notify_waiters();
    }
    Ok(())
}

/// The error `poll` and `position` give for a partition flagged `no_offset`.
pub(crate) fn no_offset_error(tp: &TopicPartition) -> Error {
    Error::State(format!("{tp} has no committed offset and auto.offset.reset is none; seek to an offset first"))
}

/// What one partition's fetch produced.
struct Fetched {
    records: Vec<ConsumerRecord>,
    /// Offset after the last complete batch (skips control batches and compacted gaps).
    next_offset: Option<i64>,
}

async fn fetch(inner: &Arc<Inner>, leader: i32, parts: Vec<(TopicPartition, i64, u64)>) {
    let config = &inner.config;
    let result = async {
        let conn = inner.cluster.broker(leader).await?;
        let version = conn.version::<FetchRequest>(4, 12)?;
        let mut topics: Vec<FetchTopic> = Vec::new();
        for (tp, offset, _) in &parts {
            let mut fp = FetchPartition::default().with_partition(tp.partition).with_fetch_offset(*offset).with_partition_max_bytes(config.max_partition_fetch_bytes);
            if version >= 5 {
                fp = fp.with_log_start_offset(-1);
            }
            if version >= 9 {
                fp = fp.with_current_leader_epoch(-1);
            }
            if version >= 12 {
                fp = fp.with_last_fetched_epoch(-1);
            }
            match topics.iter_mut().find(|t| *t.topic.0 == *tp.topic) {
                Some(t) => t.partitions.push(fp),
                None => topics.push(FetchTopic::default().with_topic(TopicName(StrBytes::from_string(tp.topic.clone()))).with_partitions(vec![fp])),
            }
        }
        let mut req = FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_wait_ms(config.fetch_max_wait.as_millis().min(i32::MAX as u128) as i32)
            .with_min_bytes(config.fetch_min_bytes)
            .with_max_bytes(config.fetch_max_bytes)
            .with_isolation_level(config.isolation_level.wire())
            .with_topics(topics);
        if version >= 7 {
            req = req.with_session_id(0).with_session_epoch(-1);
        }
        let timeout = config.common.request_timeout + config.fetch_max_wait;
        conn.send_with_timeout(&req, version, timeout).await
    }
    .await;
    let requested: BTreeMap<TopicPartition, (i64, u64)> = parts.into_iter().map(|(tp, o, e)| (tp, (o, e))).collect();
    let response = match result {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(leader, error = %e, "fetch failed");
            if matches!(e, Error::Disconnected { .. } | Error::Connect { .. } | Error::Timeout { .. }) {
                inner.cluster.drop_connection(leader);
            }
            release(inner, requested.keys());
            tokio::time::sleep(inner.config.common.retry_backoff).await;
            return;
        }
    };
    let read_committed = config.isolation_level == IsolationLevel::ReadCommitted;
    let mut decoded: Vec<(TopicPartition, i64, Result<Fetched, ResponseError>)> = Vec::new();
    let mut stale_metadata = false;
    for t in response.responses {
        for p in t.partitions {
            let tp = TopicPartition::new(t.topic.0.to_string(), p.partition_index);
            let Some(&(offset, _)) = requested.get(&tp) else { continue };
            let outcome = match ResponseError::try_from_code(p.error_code) {
                None => {
                    let aborted: Vec<(i64, i64)> = p.aborted_transactions.unwrap_or_default().iter().map(|a| (a.producer_id.0, a.first_offset)).collect();
                    Ok(decode(&tp, offset, p.records, read_committed.then_some(aborted)))
                }
                Some(e) => {
                    stale_metadata |= matches!(
                        e,
                        ResponseError::NotLeaderOrFollower
                            | ResponseError::UnknownTopicOrPartition
                            | ResponseError::LeaderNotAvailable
                            | ResponseError::FencedLeaderEpoch
                            | ResponseError::UnknownLeaderEpoch
                    );
                    Err(e)
                }
            };
            decoded.push((tp, p.high_watermark, outcome));
        }
    }
    let mut arrived = false;
    {
        let mut st = inner.state.lock().unwrap();
        for (tp, high_watermark, outcome) in decoded {
            let (offset, epoch) = requested[&tp];
            let Some(ps) = st.parts.get_mut(&tp) else { continue };
            if ps.epoch != epoch || ps.position != Some(offset) {
                continue; // a seek or poll moved on while this fetch was out
            }
            ps.high_watermark = high_watermark;
            match outcome {
                Ok(f) => {
                    if f.records.is_empty() {
                        if let Some(next) = f.next_offset.filter(|n| *n > offset) {
                            ps.position = Some(next);
                        }
                    } else {
                        arrived = true;
                        ps.buffer.extend(f.records);
                    }
                }
                Err(ResponseError::OffsetOutOfRange) => {
                    tracing::info!(%tp, offset, "offset out of range; resetting by auto.offset.reset");
                    ps.position = None;
                }
                Err(e) => tracing::debug!(%tp, error = %e, "fetch error"),
            }
        }
    }
    release(inner, requested.keys());
    if arrived {
        inner.data.notify_waiters();
    }
    if stale_metadata {
        let topics: Vec<String> = requested.keys().map(|tp| tp.topic.clone()).collect::<BTreeSet<_>>().into_iter().collect();
        let _ = inner.cluster.refresh(Some(&topics), false).await;
        tokio::time::sleep(inner.config.common.retry_backoff).await;
    }
}

fn release<'a>(inner: &Inner, tps: impl Iterator<Item = &'a TopicPartition>) {
    let mut st = inner.state.lock().unwrap();
    for tp in tps {
        if let Some(ps) = st.parts.get_mut(tp) {
            ps.fetching = false;
        }
    }
}

/// The control record type of a transaction marker (the key is version i16, type i16).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Marker {
    Abort,
    Commit,
    Other,
}

/// Reads the marker type of a control batch (its one record's key).
fn marker(batch: &Bytes) -> Marker {
    let mut buf = batch.clone();
    let key = RecordBatchDecoder::decode(&mut buf).ok().and_then(|set| set.records.into_iter().next()).and_then(|r| r.key);
    match key.as_deref() {
        Some([_, _, 0, 0, ..]) => Marker::Abort,
        Some([_, _, 0, 1, ..]) => Marker::Commit,
        _ => Marker::Other,
    }
}

/// Decodes the complete batches in `records`, skipping control batches and records before
/// `from`. With `aborted` (read_committed: the response's aborted transactions as
/// `(producer_id, first_offset)`), batches of aborted transactions are dropped as Java's
/// `CompletedFetch` does: walking batches in order, a producer becomes aborted once a
/// batch reaches its transaction's first offset, its transactional batches are skipped,
/// and its ABORT marker ends that.
fn decode(tp: &TopicPartition, from: i64, records: Option<Bytes>, aborted: Option<Vec<(i64, i64)>>) -> Fetched {
    let mut out = Fetched { records: Vec::new(), next_offset: None };
    let Some(bytes) = records else { return out };
    let read_committed = aborted.is_some();
    let mut aborted: Vec<(i64, i64)> = aborted.unwrap_or_default();
    aborted.sort_by_key(|(_, first)| *first);
    let mut aborted = aborted.into_iter().peekable();
    let mut aborted_producers: HashSet<i64> = HashSet::new();
    let mut pos = 0usize;
    while pos < bytes.len() {
        let Ok(header) = BatchHeader::parse(&bytes[pos..]) else { break };
        let len = header.total_len();
        if pos + len > bytes.len() {
            break; // a partial batch at the end of the response
        }
        let batch = bytes.slice(pos..pos + len);
        pos += len;
        out.next_offset = Some(header.last_offset() + 1);
        if read_committed && header.producer_id >= 0 {
            while let Some(&(pid, _)) = aborted.peek().filter(|(_, first)| *first <= header.last_offset()) {
                aborted_producers.insert(pid);
                aborted.next();
            }
            if header.is_control() {
                if marker(&batch) == Marker::Abort {
                    aborted_producers.remove(&header.producer_id);
                }
            } else if header.is_transactional() && aborted_producers.contains(&header.producer_id) {
                continue;
            }
        }
        if header.is_control() {
            continue; // transaction markers are never the application's
        }
        let mut buf = batch;
        let set = match RecordBatchDecoder::decode(&mut buf) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(%tp, error = %e, "skipping a batch that does not decode");
                continue;
            }
        };
        for r in set.records {
            if r.offset < from {
                continue;
            }
            out.records.push(ConsumerRecord {
                topic: tp.topic.clone(),
                partition: tp.partition,
                offset: r.offset,
                timestamp: r.timestamp,
                log_append_time: r.timestamp_type == TimestampType::LogAppend,
                key: r.key,
                value: r.value,
                headers: r.headers.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use bytes::{BufMut, BytesMut};
    use kafka_protocol::records::{Compression, Record, RecordBatchEncoder, RecordEncodeOptions};

    use super::*;

    /// A v2 batch at `base` of `n` records of producer `pid` (-1: none), transactional or
    /// not; values are the offsets.
    fn batch(out: &mut BytesMut, base: i64, n: i64, pid: i64, transactional: bool) {
        let records: Vec<Record> = (0..n)
            .map(|i| Record {
                transactional,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: 0,
                producer_id: pid,
                producer_epoch: if pid >= 0 { 0 } else { -1 },
                timestamp_type: TimestampType::Creation,
                offset: base + i,
                sequence: if pid >= 0 { (base + i) as i32 } else { -1 },
                timestamp: 1,
                key: None,
                value: Some(Bytes::from((base + i).to_string())),
                headers: Default::default(),
            })
            .collect();
        RecordBatchEncoder::encode(out, &records, &RecordEncodeOptions { version: 2, compression: Compression::None }).unwrap();
    }

    /// A transaction marker at `offset` for `pid`: type 0 aborts, 1 commits.
    fn marker_batch(out: &mut BytesMut, offset: i64, pid: i64, kind: i16) {
        let mut key = BytesMut::new();
        key.put_i16(0);
        key.put_i16(kind);
        let mut value = BytesMut::new();
        value.put_i16(0);
        value.put_i32(0);
        let record = Record {
            transactional: true,
            control: true,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: pid,
            producer_epoch: 0,
            timestamp_type: TimestampType::Creation,
            offset,
            sequence: -1,
            timestamp: 1,
            key: Some(key.freeze()),
            value: Some(value.freeze()),
            headers: Default::default(),
        };
        RecordBatchEncoder::encode(out, [&record], &RecordEncodeOptions { version: 2, compression: Compression::None }).unwrap();
    }

    fn offsets(f: &Fetched) -> Vec<i64> {
        f.records.iter().map(|r| r.offset).collect()
    }

    /// 0-1 plain; 2-3 pid 1 (aborted); 4-5 pid 2 (committed); 6 pid 1 ABORT; 7 pid 2
    /// COMMIT; 8-9 pid 1 again (a later transaction, committed); 10 pid 1 COMMIT.
    fn log() -> Bytes {
        let mut b = BytesMut::new();
        batch(&mut b, 0, 2, -1, false);
        batch(&mut b, 2, 2, 1, true);
        batch(&mut b, 4, 2, 2, true);
        marker_batch(&mut b, 6, 1, 0);
        marker_batch(&mut b, 7, 2, 1);
        batch(&mut b, 8, 2, 1, true);
        marker_batch(&mut b, 10, 1, 1);
        b.freeze()
    }

    #[test]
    fn markers_are_read_from_control_batches() {
        let mut b = BytesMut::new();
        marker_batch(&mut b, 0, 1, 0);
        assert_eq!(marker(&b.split().freeze()), Marker::Abort);
        marker_batch(&mut b, 0, 1, 1);
        assert_eq!(marker(&b.freeze()), Marker::Commit);
    }

    #[test]
    fn read_uncommitted_returns_everything_but_markers() {
        let tp = TopicPartition::new("t", 0);
        let f = decode(&tp, 0, Some(log()), None);
        assert_eq!(offsets(&f), vec![0, 1, 2, 3, 4, 5, 8, 9]);
        assert_eq!(f.next_offset, Some(11));
    }

    #[test]
    fn read_committed_drops_aborted_transactions() {
        let tp = TopicPartition::new("t", 0);
        let f = decode(&tp, 0, Some(log()), Some(vec![(1, 2)]));
        assert_eq!(offsets(&f), vec![0, 1, 4, 5, 8, 9], "pid 1's later transaction is not aborted");
        assert_eq!(f.next_offset, Some(11));
        // Unsorted input, and a fetch that starts inside the log.
        let f = decode(&tp, 3, Some(log()), Some(vec![(2, 100), (1, 2)]));
        assert_eq!(offsets(&f), vec![4, 5, 8, 9]);
    }

    #[test]
    fn an_aborted_transaction_without_its_marker_in_this_fetch_stays_aborted() {
        let tp = TopicPartition::new("t", 0);
        let mut b = BytesMut::new();
        batch(&mut b, 0, 2, 1, true);
        batch(&mut b, 2, 2, 2, true);
        batch(&mut b, 4, 2, 1, true);
        let f = decode(&tp, 0, Some(b.freeze()), Some(vec![(1, 0)]));
        assert_eq!(offsets(&f), vec![2, 3]);
        assert_eq!(f.next_offset, Some(6), "skipped batches still advance the position");
    }

    #[test]
    fn a_commit_marker_does_not_end_an_abort() {
        // pid 1 aborts a transaction starting at 2; a COMMIT marker of another producer in
        // between changes nothing for it.
        let tp = TopicPartition::new("t", 0);
        let mut b = BytesMut::new();
        batch(&mut b, 2, 1, 1, true);
        marker_batch(&mut b, 3, 2, 1);
        batch(&mut b, 4, 1, 1, true);
        marker_batch(&mut b, 5, 1, 0);
        batch(&mut b, 6, 1, 3, false);
        let f = decode(&tp, 0, Some(b.freeze()), Some(vec![(1, 2)]));
        assert_eq!(offsets(&f), vec![6]);
    }
}
