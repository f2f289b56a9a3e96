//! A stream or table as a DataFusion table: scans read a snapshot of the topic (each
//! partition up to its high watermark, or last stable offset under read_committed, as of
//! planning), one DataFusion partition per Kafka partition, with filters on `_partition`,
//! `_offset` and `_timestamp` pushed into where each partition's read starts and stops.
//! Tables keep the latest record per key (a tombstone deletes it). `INSERT INTO ... VALUES`
//! writes rows to the topic.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use datafusion::arrow::array::{Array, RecordBatch};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::Session;
use datafusion::common::{DataFusionError, ScalarValue};
use datafusion::datasource::sink::{DataSink, DataSinkExec};
use datafusion::datasource::{TableProvider, TableType};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::{BinaryExpr, Expr, Operator, TableProviderFilterPushDown};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::{PartitionStream, StreamingTableExec};
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan};
use futures::StreamExt;
use samsa_client::admin::{Admin, OffsetSpec};
use samsa_client::{Consumer, ConsumerConfig, IsolationLevel, Producer, ProducerRecord, TopicPartition};

use crate::catalog::{SourceDef, SourceKind};
use crate::format::{encode_rows, rows_as_text, Decoder, RawRecord};

type DfResult<T> = datafusion::common::Result<T>;

/// Counters of what queries did (tests and metrics read them).
#[derive(Debug, Default)]
pub struct Stats {
    /// Records read by bounded scans.
    pub scanned_records: AtomicU64,
    /// Records skipped because their value could not be decoded.
    pub malformed_records: AtomicU64,
    /// Queries answered by a state-store lookup instead of a scan.
    pub lookups: AtomicU64,
}

/// What a table needs to reach the cluster.
pub struct ClusterAccess {
    /// Bootstrap servers.
    pub bootstrap: String,
    /// Admin client.
    pub admin: Admin,
    /// Producer for INSERT.
    pub producer: Producer,
    /// Counters.
    pub stats: Arc<Stats>,
}

/// A state-store lookup for point queries on a materialized table: the row of a key.
pub type Lookup = Arc<dyn Fn(&str) -> Option<DfResult<Option<RecordBatch>>> + Send + Sync>;

/// A stream or table as DataFusion sees it.
pub struct TopicTable {
    def: SourceDef,
    decoder: Decoder,
    cluster: Arc<ClusterAccess>,
    isolation: IsolationLevel,
    lookup: Option<Lookup>,
}

impl fmt::Debug for TopicTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TopicTable({})", self.def.name)
    }
}

impl TopicTable {
    /// A table over `def`'s topic.
    pub fn new(def: SourceDef, cluster: Arc<ClusterAccess>, isolation: IsolationLevel, lookup: Option<Lookup>) -> crate::Result<TopicTable> {
        let decoder = Decoder::new(def.format, &def.columns)?;
        Ok(TopicTable { def, decoder, cluster, isolation, lookup })
    }
}

/// Bounds pushed into a scan.
#[derive(Debug, Default, Clone)]
struct Bounds {
    partitions: Option<Vec<i32>>,
    offset_min: Option<i64>,
    offset_max: Option<i64>,
    ts_min: Option<i64>,
}

fn literal_i64(e: &Expr) -> Option<i64> {
    match e {
        Expr::Literal(v, _) => match v {
            ScalarValue::Int8(Some(x)) => Some(*x as i64),
            ScalarValue::Int16(Some(x)) => Some(*x as i64),
            ScalarValue::Int32(Some(x)) => Some(*x as i64),
            ScalarValue::Int64(Some(x)) => Some(*x),
            ScalarValue::UInt32(Some(x)) => Some(*x as i64),
            ScalarValue::UInt64(Some(x)) => i64::try_from(*x).ok(),
            ScalarValue::TimestampSecond(Some(x), _) => Some(x.saturating_mul(1000)),
            ScalarValue::TimestampMillisecond(Some(x), _) => Some(*x),
            ScalarValue::TimestampMicrosecond(Some(x), _) => Some(x.div_euclid(1000)),
            ScalarValue::TimestampNanosecond(Some(x), _) => Some(x.div_euclid(1_000_000)),
            _ => None,
        },
        Expr::Cast(c) => literal_i64(&c.expr),
        Expr::TryCast(c) => literal_i64(&c.expr),
        _ => None,
    }
}

fn column_name(e: &Expr) -> Option<&str> {
    match e {
        Expr::Column(c) => Some(c.name.as_str()),
        Expr::Cast(c) => column_name(&c.expr),
        _ => None,
    }
}

/// A literal string compared to `column` in `e` (for key lookups).
fn equality_literal(e: &Expr, column: &str) -> Option<String> {
    if let Expr::BinaryExpr(BinaryExpr { left, op: Operator::Eq, right }) = e {
        let (c, l) = if column_name(left).is_some() { (left, right) } else { (right, left) };
        if column_name(c) == Some(column) {
            if let Expr::Literal(v, _) = l.as_ref() {
                if !v.is_null() {
                    return Some(match v {
                        ScalarValue::Utf8(Some(s)) | ScalarValue::LargeUtf8(Some(s)) | ScalarValue::Utf8View(Some(s)) => s.clone(),
                        other => other.to_string(),
                    });
                }
            }
        }
    }
    None
}

impl Bounds {
    fn from_filters(filters: &[Expr], kind: SourceKind) -> Bounds {
        let mut b = Bounds::default();
        for f in filters {
            b.add(f, kind);
        }
        b
    }

    fn add(&mut self, f: &Expr, kind: SourceKind) {
        match f {
            Expr::BinaryExpr(BinaryExpr { left, op: Operator::And, right }) => {
                self.add(left, kind);
                self.add(right, kind);
            }
            Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
                let (col, val, op) = match (column_name(left), literal_i64(right), column_name(right), literal_i64(left)) {
                    (Some(c), Some(v), _, _) => (c, v, *op),
                    (_, _, Some(c), Some(v)) => match op.swap() {
                        Some(op) => (c, v, op),
                        None => return,
                    },
                    _ => return,
                };
                self.bound(col, op, val, kind);
            }
            Expr::Between(bt) if !bt.negated => {
                if let (Some(c), Some(lo), Some(hi)) = (column_name(&bt.expr), literal_i64(&bt.low), literal_i64(&bt.high)) {
                    self.bound(c, Operator::GtEq, lo, kind);
                    self.bound(c, Operator::LtEq, hi, kind);
                }
            }
            Expr::InList(il) if !il.negated && column_name(&il.expr) == Some("_partition") => {
                let vals: Option<Vec<i32>> = il.list.iter().map(|e| literal_i64(e).map(|v| v as i32)).collect();
                if let Some(v) = vals {
                    self.restrict_partitions(v);
                }
            }
            _ => {}
        }
    }

    fn restrict_partitions(&mut self, allowed: Vec<i32>) {
        self.partitions = Some(match self.partitions.take() {
            Some(prev) => prev.into_iter().filter(|p| allowed.contains(p)).collect(),
            None => allowed,
        });
    }

    fn bound(&mut self, col: &str, op: Operator, v: i64, kind: SourceKind) {
        match col {
            "_partition" => match op {
                Operator::Eq => self.restrict_partitions(vec![v as i32]),
                Operator::Gt | Operator::GtEq | Operator::Lt | Operator::LtEq => {
                    let keep = move |p: i64| match op {
                        Operator::Gt => p > v,
                        Operator::GtEq => p >= v,
                        Operator::Lt => p < v,
                        _ => p <= v,
                    };
                    self.restrict_partitions((0..10_000).filter(|p| keep(*p)).map(|p| p as i32).collect());
                }
                _ => {}
            },
            // A table's latest row per key depends on every record: only partitions prune.
            _ if kind == SourceKind::Table => {}
            "_offset" => match op {
                Operator::Eq => {
                    self.offset_min = Some(self.offset_min.map_or(v, |m| m.max(v)));
                    self.offset_max = Some(self.offset_max.map_or(v, |m| m.min(v)));
                }
                Operator::Gt | Operator::GtEq => {
                    let lo = if op == Operator::Gt { v + 1 } else { v };
                    self.offset_min = Some(self.offset_min.map_or(lo, |m| m.max(lo)));
                }
                Operator::Lt | Operator::LtEq => {
                    let hi = if op == Operator::Lt { v - 1 } else { v };
                    self.offset_max = Some(self.offset_max.map_or(hi, |m| m.min(hi)));
                }
                _ => {}
            },
            // Only a lower bound: ListOffsets by time finds the first offset at or after it,
            // and every record before that offset is older. Records after an upper bound's
            // offset can still be older (timestamps need not grow), so it only filters.
            "_timestamp" => match op {
                Operator::Gt | Operator::GtEq | Operator::Eq => {
                    let lo = if op == Operator::Gt { v + 1 } else { v };
                    self.ts_min = Some(self.ts_min.map_or(lo, |m| m.max(lo)));
                }
                _ => {}
            },
            _ => {}
        }
    }
}

#[async_trait::async_trait]
impl TableProvider for TopicTable {
    fn schema(&self) -> SchemaRef {
        self.decoder.schema().clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> DfResult<Vec<TableProviderFilterPushDown>> {
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(&self, _state: &dyn Session, projection: Option<&Vec<usize>>, filters: &[Expr], limit: Option<usize>) -> DfResult<Arc<dyn ExecutionPlan>> {
        let schema = self.decoder.schema().clone();
        // A point query on a materialized table's key: answer from its state store.
        if let (Some(lookup), Some(key_col)) = (&self.lookup, &self.def.key) {
            if let Some(key) = filters.iter().find_map(|f| equality_literal(f, key_col)) {
                if let Some(found) = lookup(&key) {
                    self.cluster.stats.lookups.fetch_add(1, Ordering::Relaxed);
                    let batches: Vec<RecordBatch> = found?.into_iter().collect();
                    let part: Arc<dyn PartitionStream> = Arc::new(Fixed { schema: schema.clone(), batches });
                    return Ok(Arc::new(StreamingTableExec::try_new(schema, vec![part], projection, Vec::new(), false, limit)?));
                }
            }
        }
        let topic = &self.def.topic;
        let info = crate::catalog::describe_topic(&self.cluster.admin, topic).await.map_err(|e| DataFusionError::Execution(e.message))?;
        let Some(info) = info else {
            return Err(DataFusionError::Plan(format!(
                "topic '{topic}' of {} '{}' does not exist (was it deleted?); DROP {} {} removes the {}",
                self.def.kind.name().to_lowercase(),
                self.def.name,
                self.def.kind.name(),
                self.def.name,
                self.def.kind.name().to_lowercase()
            )));
        };
        let bounds = Bounds::from_filters(filters, self.def.kind);
        let tps: Vec<TopicPartition> = info
            .partitions
            .iter()
            .map(|p| p.partition)
            .filter(|p| bounds.partitions.as_ref().is_none_or(|ps| ps.contains(p)))
            .map(|p| TopicPartition::new(topic.clone(), p))
            .collect();
        let admin = &self.cluster.admin;
        let earliest = admin.list_offsets(&tps, OffsetSpec::Earliest).await.map_err(ext)?;
        let latest = admin.list_offsets_isolated(&tps, OffsetSpec::Latest, self.isolation).await.map_err(ext)?;
        let by_time = match bounds.ts_min {
            Some(ts) => Some(admin.list_offsets(&tps, OffsetSpec::Timestamp(ts)).await.map_err(ext)?),
            None => None,
        };
        let mut parts: Vec<Arc<dyn PartitionStream>> = Vec::new();
        for tp in tps {
            let end_hw = latest.get(&tp).map(|o| o.0).unwrap_or(0);
            let mut start = earliest.get(&tp).map(|o| o.0).unwrap_or(0).max(bounds.offset_min.unwrap_or(0));
            let mut end = end_hw.min(bounds.offset_max.map_or(i64::MAX, |m| m.saturating_add(1)));
            if let Some(bt) = &by_time {
                match bt.get(&tp).map(|o| o.0) {
                    Some(o) if o >= 0 => start = start.max(o),
                    _ => end = start, // nothing at or after the time
                }
            }
            if end < start {
                end = start;
            }
            parts.push(Arc::new(PartitionScan {
                schema: schema.clone(),
                job: ScanJob {
                    decoder: self.decoder.clone(),
                    kind: self.def.kind,
                    bootstrap: self.cluster.bootstrap.clone(),
                    isolation: self.isolation,
                    tp,
                    start,
                    end,
                    stats: self.cluster.stats.clone(),
                },
            }));
        }
        if parts.is_empty() {
            parts.push(Arc::new(Fixed { schema: schema.clone(), batches: Vec::new() }));
        }
        Ok(Arc::new(StreamingTableExec::try_new(schema, parts, projection, Vec::new(), false, limit)?))
    }

    async fn insert_into(&self, _state: &dyn Session, input: Arc<dyn ExecutionPlan>, op: InsertOp) -> DfResult<Arc<dyn ExecutionPlan>> {
        if op != InsertOp::Append {
            return Err(DataFusionError::Plan(format!("{op} is not supported on streams and tables; use INSERT INTO")));
        }
        let sink = TopicSink { def: self.def.clone(), schema: self.decoder.schema().clone(), producer: self.cluster.producer.clone() };
        Ok(Arc::new(DataSinkExec::new(input, Arc::new(sink), None)))
    }
}

fn ext(e: samsa_client::Error) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

/// Batches known at planning time (a lookup's answer, or nothing).
#[derive(Debug)]
struct Fixed {
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
}

impl PartitionStream for Fixed {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }
    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let batches: Vec<DfResult<RecordBatch>> = self.batches.iter().cloned().map(Ok).collect();
        Box::pin(RecordBatchStreamAdapter::new(self.schema.clone(), futures::stream::iter(batches)))
    }
}

/// One partition's records in `[start, end)`, as a DataFusion partition.
struct PartitionScan {
    schema: SchemaRef,
    job: ScanJob,
}

impl fmt::Debug for PartitionScan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PartitionScan({} [{}, {}))", self.job.tp, self.job.start, self.job.end)
    }
}

impl PartitionStream for PartitionScan {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let (tx, rx) = tokio::sync::mpsc::channel::<DfResult<RecordBatch>>(4);
        let job = self.job.clone();
        tokio::spawn(async move {
            let tx2 = tx.clone();
            if let Err(e) = job.run(tx).await {
                let _ = tx2.send(Err(e)).await;
            }
        });
        let stream = futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|b| (b, rx)) });
        Box::pin(RecordBatchStreamAdapter::new(self.schema.clone(), stream.boxed()))
    }
}

/// What reading one partition needs.
#[derive(Clone)]
struct ScanJob {
    decoder: Decoder,
    kind: SourceKind,
    bootstrap: String,
    isolation: IsolationLevel,
    tp: TopicPartition,
    start: i64,
    end: i64,
    stats: Arc<Stats>,
}

impl ScanJob {
    async fn run(self, tx: tokio::sync::mpsc::Sender<DfResult<RecordBatch>>) -> DfResult<()> {
        if self.start >= self.end {
            return Ok(());
        }
        let mut cc = ConsumerConfig::default();
        cc.set("bootstrap.servers", &self.bootstrap).map_err(ext)?;
        cc.isolation_level = self.isolation;
        cc.max_poll_records = 5000;
        let consumer = Consumer::new(cc).await.map_err(ext)?;
        consumer.assign(std::slice::from_ref(&self.tp)).map_err(ext)?;
        consumer.seek(&self.tp, self.start).map_err(ext)?;
        let mut latest: HashMap<Bytes, RawRecord> = HashMap::new();
        let mut null_key: Vec<RawRecord> = Vec::new();
        let mut stalled_since = tokio::time::Instant::now();
        let mut last_pos = self.start;
        loop {
            let pos = consumer.position(&self.tp).await.map_err(ext)?;
            if pos >= self.end {
                break;
            }
            if pos != last_pos {
                last_pos = pos;
                stalled_since = tokio::time::Instant::now();
            } else if stalled_since.elapsed() > Duration::from_secs(30) {
                return Err(DataFusionError::Execution(format!("reading {} stopped at offset {pos} (snapshot end {})", self.tp, self.end)));
            }
            let recs = consumer.poll(Duration::from_millis(200)).await.map_err(ext)?;
            let raw: Vec<RawRecord> = recs
                .into_iter()
                .filter(|r| r.offset < self.end)
                .map(|r| RawRecord { key: r.key, value: r.value, partition: r.partition, offset: r.offset, timestamp: r.timestamp })
                .collect();
            if raw.is_empty() {
                continue;
            }
            self.stats.scanned_records.fetch_add(raw.len() as u64, Ordering::Relaxed);
            match self.kind {
                SourceKind::Stream => {
                    if !self.emit(&raw, &tx).await? {
                        break;
                    }
                }
                SourceKind::Table => {
                    for r in raw {
                        match &r.key {
                            Some(k) if r.value.is_none() => {
                                latest.remove(k);
                            }
                            Some(k) => {
                                latest.insert(k.clone(), r);
                            }
                            None => null_key.push(r),
                        }
                    }
                }
            }
        }
        let _ = consumer.close().await;
        if self.kind == SourceKind::Table {
            // Records without a key cannot be updated or deleted: each is a row.
            let mut rows: Vec<RawRecord> = latest.into_values().chain(null_key).collect();
            rows.sort_by_key(|r| r.offset);
            for chunk in rows.chunks(8192) {
                if !self.emit(chunk, &tx).await? {
                    break;
                }
            }
        }
        Ok(())
    }

    /// Decodes and sends; false when the reader went away (LIMIT reached).
    async fn emit(&self, raw: &[RawRecord], tx: &tokio::sync::mpsc::Sender<DfResult<RecordBatch>>) -> DfResult<bool> {
        let decoded = self.decoder.decode(raw).map_err(|e| DataFusionError::Execution(e.to_string()))?;
        if !decoded.malformed.is_empty() {
            self.stats.malformed_records.fetch_add(decoded.malformed.len() as u64, Ordering::Relaxed);
            let (p, o, why) = &decoded.malformed[0];
            tracing::warn!(topic = %self.tp.topic, partition = p, offset = o, skipped = decoded.malformed.len(), "malformed records skipped: {why}");
        }
        if decoded.batch.num_rows() == 0 {
            return Ok(true);
        }
        Ok(tx.send(Ok(decoded.batch)).await.is_ok())
    }
}

/// Writes inserted rows to a topic.
struct TopicSink {
    def: SourceDef,
    schema: SchemaRef,
    producer: Producer,
}

impl fmt::Debug for TopicSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TopicSink({})", self.def.topic)
    }
}

impl DisplayAs for TopicSink {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TopicSink: topic={}", self.def.topic)
    }
}

#[async_trait::async_trait]
impl DataSink for TopicSink {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    async fn write_all(&self, mut data: SendableRecordBatchStream, _ctx: &Arc<TaskContext>) -> DfResult<u64> {
        let n_cols = self.def.columns.len();
        let key_idx = self.def.key.as_ref().and_then(|k| self.def.columns.iter().position(|c| &c.name == k));
        let mut pending = Vec::new();
        let mut count = 0u64;
        while let Some(batch) = data.next().await {
            let batch = batch?;
            let values = encode_rows(&batch.project(&(0..n_cols).collect::<Vec<_>>())?, self.def.format).map_err(|e| DataFusionError::Execution(e.to_string()))?;
            let text = rows_as_text(&batch).map_err(|e| DataFusionError::Execution(e.to_string()))?;
            let ts_col = batch.column(n_cols + 3);
            for (i, value) in values.into_iter().enumerate() {
                let mut rec = ProducerRecord::new(self.def.topic.clone(), value);
                let key = match key_idx {
                    Some(k) => text[i][k].clone(),
                    None => text[i][n_cols].clone(),
                };
                if let Some(k) = key {
                    rec = rec.key(k);
                }
                if !ts_col.is_null(i) {
                    if let Some(ts) = batch.column(n_cols + 3).as_any().downcast_ref::<datafusion::arrow::array::TimestampMillisecondArray>() {
                        rec = rec.timestamp(ts.value(i));
                    }
                }
                pending.push(self.producer.send(rec).await.map_err(ext)?);
                count += 1;
            }
        }
        for p in pending {
            p.await.map_err(ext)?;
        }
        Ok(count)
    }
}
