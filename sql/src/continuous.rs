//! Continuous queries: a SELECT planned by DataFusion, run as a Samsa Streams topology.
//!
//! DataFusion parses, resolves and type-checks the query; this module walks its logical
//! plan and builds a topology:
//!
//! ```text
//! source topic ─▶ input stage ─────────────────────────────────────▶ sink
//!                 (decode, WHERE,                                    (topic, or the
//!                  SELECT list)                                       EMIT CHANGES stream)
//! source topic ─▶ input stage ─▶ repartition by group key ─▶ aggregate ─▶ output stage ─▶ sink
//!                 (decode, WHERE,                           (RocksDB,     (HAVING,
//!                  group key, args,                          windows)      SELECT list)
//!                  event time)
//! ```
//!
//! Expressions (WHERE, group keys, aggregate arguments, HAVING, the SELECT list) are
//! DataFusion physical expressions evaluated on one-row Arrow batches, so every scalar
//! function DataFusion has works. Aggregates are incremental (see `aggregate.rs`).
//! Windows are table-less group keys: `tumble(time, size [, grace])`,
//! `hop(time, size, advance [, grace])`, `session(time, gap [, grace])`; the window
//! column's value is the window start.
//!
//! A subquery in FROM is planned first and its topology built in front: its result rows
//! are the input of the level above (an aggregation's changes retract the rows they
//! replace). An OVER window becomes an aggregation grouped by its PARTITION BY columns.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use datafusion::arrow::array::{Array, ArrayRef, BooleanArray, RecordBatch, TimestampMillisecondArray};
use datafusion::arrow::compute::{cast, concat_batches};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::common::{DFSchema, DFSchemaRef, DataFusionError, ScalarValue};
use datafusion::logical_expr::execution_props::ExecutionProps;
use datafusion::logical_expr::expr::{AggregateFunction, ScalarFunction};
use datafusion::logical_expr::{Aggregate, ColumnarValue, Expr, LogicalPlan, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility};
use datafusion::physical_expr::{create_physical_expr, PhysicalExpr};
use datafusion::prelude::SessionContext;
use futures::stream::BoxStream;
use samsa_streams::{
    JoinWindows, Json, KStream, KafkaStreams, KvHandle, Materialized, Processor, ProcessorContext, Record, SessionWindows, StoreDef, StreamsBuilder, StreamsConfig, TimeWindows,
    Windowed,
};
use serde::{Deserialize, Serialize};

use crate::aggregate::{accumulate, merge_states, result, AccState, AggInput, AggKind, AggSpec, RowsOf};
use crate::catalog::{Catalog, SourceDef};
use crate::engine::Properties;
use crate::error::{Result, SqlError};
use crate::format::{rows_as_text, sql_type_of, Column, Decoder, Format, RawRecord};
use crate::provider::{Lookup, Stats};

type DfResult<T> = datafusion::common::Result<T>;

// ---------------------------------------------------------------------------------------
// Window functions (as DataFusion scalar UDFs)

/// A window function: `tumble`, `hop` or `session`.
#[derive(Debug, PartialEq, Eq, Hash)]
struct WindowFn {
    name: &'static str,
    signature: Signature,
}

impl ScalarUDFImpl for WindowFn {
    fn name(&self) -> &str {
        self.name
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _args: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Timestamp(TimeUnit::Millisecond, None))
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        if self.name != "tumble" {
            return Err(DataFusionError::Plan(format!(
                "{}() windows work in continuous queries only (EMIT CHANGES, CREATE TABLE ... AS SELECT); a bounded query can use tumble()",
                self.name
            )));
        }
        let size = match args.args.get(1) {
            Some(ColumnarValue::Scalar(s)) => interval_ms(s).map_err(|e| DataFusionError::Plan(e.message))?,
            _ => return Err(DataFusionError::Plan("tumble(time, INTERVAL '...') takes a constant interval".into())),
        };
        let time = args.args[0].to_array(args.number_rows)?;
        let ms = cast(&time, &DataType::Timestamp(TimeUnit::Millisecond, None))?;
        let ms = ms.as_any().downcast_ref::<TimestampMillisecondArray>().expect("cast to ms");
        let out: TimestampMillisecondArray = ms.iter().map(|v| v.map(|t| t - t.rem_euclid(size))).collect();
        Ok(ColumnarValue::Array(Arc::new(out)))
    }
}

/// `grace_period(INTERVAL ...)`: in a stream-stream join's ON clause, how late a record
/// may arrive and still join. Always true, so bounded queries ignore it.
#[derive(Debug, PartialEq, Eq, Hash)]
struct GracePeriod {
    signature: Signature,
}

impl ScalarUDFImpl for GracePeriod {
    fn name(&self) -> &str {
        "grace_period"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _args: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Boolean)
    }
    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        Ok(ColumnarValue::Scalar(ScalarValue::Boolean(Some(true))))
    }
}

/// Registers `tumble`, `hop`, `session` and `grace_period`.
pub fn register_functions(ctx: &SessionContext) {
    for name in ["tumble", "hop", "session"] {
        ctx.register_udf(ScalarUDF::new_from_impl(WindowFn { name, signature: Signature::variadic_any(Volatility::Immutable) }));
    }
    ctx.register_udf(ScalarUDF::new_from_impl(GracePeriod { signature: Signature::variadic_any(Volatility::Immutable) }));
}

/// Milliseconds of a constant interval.
fn interval_ms(v: &ScalarValue) -> Result<i64> {
    let ms = match v {
        ScalarValue::IntervalMonthDayNano(Some(i)) if i.months == 0 => i.days as i64 * 86_400_000 + i.nanoseconds / 1_000_000,
        ScalarValue::IntervalDayTime(Some(i)) => i.days as i64 * 86_400_000 + i.milliseconds as i64,
        ScalarValue::Int64(Some(n)) => *n,
        ScalarValue::Int32(Some(n)) => *n as i64,
        ScalarValue::IntervalMonthDayNano(Some(_)) | ScalarValue::IntervalYearMonth(Some(_)) => {
            return Err(SqlError::new("a window length in months or years is not a fixed length").hint("write lengths in days or less, e.g. INTERVAL '30' DAY"))
        }
        _ => return Err(SqlError::new(format!("{v} is not a window length")).hint("write lengths as INTERVAL '10' SECOND")),
    };
    if ms < 0 {
        return Err(SqlError::new("window lengths cannot be negative"));
    }
    Ok(ms)
}

fn const_interval(e: &Expr) -> Result<i64> {
    match strip(e) {
        Expr::Literal(v, _) => interval_ms(v),
        Expr::Cast(c) => const_interval(&c.expr),
        other => Err(SqlError::new(format!("window lengths are constants, not {other}")).hint("write INTERVAL '1' MINUTE")),
    }
}

fn strip(e: &Expr) -> &Expr {
    match e {
        Expr::Alias(a) => strip(&a.expr),
        other => other,
    }
}

/// A window of a windowed aggregation.
#[derive(Debug, Clone, Copy, PartialEq)]
enum WindowSpec {
    Tumble { size: i64, grace: i64 },
    Hop { size: i64, advance: i64, grace: i64 },
    Session { gap: i64, grace: i64 },
}

/// Default grace period, as ksqlDB: a day.
const DEFAULT_GRACE_MS: i64 = 24 * 3_600_000;

fn window_of(e: &Expr) -> Result<Option<(WindowSpec, Expr)>> {
    let Expr::ScalarFunction(ScalarFunction { func, args }) = strip(e) else {
        return Ok(None);
    };
    let name = func.name();
    let arg = |i: usize| args.get(i).map(const_interval).transpose();
    let spec = match name {
        "tumble" => {
            let size = arg(1)?.ok_or_else(|| SqlError::new("tumble(time, size [, grace]) needs a size"))?;
            WindowSpec::Tumble { size, grace: arg(2)?.unwrap_or(DEFAULT_GRACE_MS) }
        }
        "hop" => {
            let size = arg(1)?.ok_or_else(|| SqlError::new("hop(time, size, advance [, grace]) needs a size"))?;
            let advance = arg(2)?.ok_or_else(|| SqlError::new("hop(time, size, advance [, grace]) needs an advance"))?;
            if advance == 0 || advance > size {
                return Err(SqlError::new("a hop's advance must be above zero and at most its size"));
            }
            WindowSpec::Hop { size, advance, grace: arg(3)?.unwrap_or(DEFAULT_GRACE_MS) }
        }
        "session" => {
            let gap = arg(1)?.ok_or_else(|| SqlError::new("session(time, gap [, grace]) needs a gap"))?;
            WindowSpec::Session { gap, grace: arg(2)?.unwrap_or(DEFAULT_GRACE_MS) }
        }
        _ => return Ok(None),
    };
    if matches!(spec, WindowSpec::Tumble { size: 0, .. } | WindowSpec::Hop { size: 0, .. } | WindowSpec::Session { gap: 0, .. }) {
        return Err(SqlError::new(format!("{name}() needs a length above zero")));
    }
    Ok(Some((spec, args[0].clone())))
}

// ---------------------------------------------------------------------------------------
// Planning

/// A compiled continuous query.
pub struct QueryPlan {
    source: SourceDef,
    partitions: i32,
    input: Arc<InputShared>,
    agg: Option<AggPlan>,
    output_schema: SchemaRef,
    key_column: Option<String>,
    /// An aggregation in FROM whose result rows this query aggregates again.
    inner: Option<Box<QueryPlan>>,
}

struct AggPlan {
    window: Option<WindowSpec>,
    output: Arc<OutputShared>,
}

/// What the input stage evaluates.
struct InputShared {
    decoder: Decoder,
    filter: Option<Arc<dyn PhysicalExpr>>,
    /// Stateless: the SELECT list. Aggregating: group keys (without the window).
    exprs: Vec<Arc<dyn PhysicalExpr>>,
    /// Aggregating: the aggregate arguments (`None`: COUNT(*)).
    args: Vec<Option<Arc<dyn PhysicalExpr>>>,
    /// Aggregating: each aggregate's ORDER BY value, if it has one.
    orders: Vec<Option<Arc<dyn PhysicalExpr>>>,
    /// Event time: the window's time argument, or the stream's timestamp column.
    time: Option<Arc<dyn PhysicalExpr>>,
    /// Whether a window needs the event time (rows without one are dropped).
    windowed: bool,
    /// Stateless: the output schema (for encoding rows).
    output_schema: Option<SchemaRef>,
    /// Stateless: the output column whose text is the record key.
    key_index: Option<usize>,
    /// A stream-table join in front.
    join: Option<JoinPlan>,
    /// The schema expressions are evaluated on (the stream's, or the join's).
    scan_schema: SchemaRef,
    stats: Arc<Stats>,
    processed: Arc<AtomicU64>,
}

/// What the output stage evaluates on one aggregate row.
struct OutputShared {
    /// Aggregate's output (group values then aggregate values).
    agg_schema: SchemaRef,
    /// Index of the window column among group values.
    window_index: Option<usize>,
    /// Number of group expressions (including the window).
    groups: usize,
    /// The aggregates.
    specs: Vec<AggSpec>,
    having: Option<Arc<dyn PhysicalExpr>>,
    projection: Vec<Arc<dyn PhysicalExpr>>,
    output_schema: SchemaRef,
    /// Inputs may be retracted (an aggregation over an aggregation): a group whose rows
    /// are all retracted leaves the table.
    retracting: bool,
}

impl QueryPlan {
    /// The columns of the result.
    pub fn output_schema(&self) -> SchemaRef {
        self.output_schema.clone()
    }

    /// The result's columns as declared columns of a sink.
    pub fn output_columns(&self) -> Vec<Column> {
        self.output_schema.fields().iter().map(|f| Column { name: f.name().clone(), sql_type: sql_type_of(f.data_type()).to_string() }).collect()
    }

    /// Whether the query aggregates (its result is a table).
    pub fn is_aggregate(&self) -> bool {
        self.agg.is_some()
    }

    /// The output column that is the key (a single, non-windowed GROUP BY column).
    pub fn key_column(&self) -> Option<String> {
        self.key_column.clone()
    }

    /// Partitions of the input topic.
    pub fn input_partitions(&self) -> i32 {
        self.partitions
    }
}

fn unsupported(what: &str) -> SqlError {
    SqlError::new(format!("{what} is not supported in continuous queries yet"))
        .hint("continuous queries take SELECT ... FROM a stream [JOIN a table or stream ON ...] [WHERE ...] [GROUP BY ... [HAVING ...]]; run it without EMIT CHANGES for a bounded answer")
}

fn phys(e: &Expr, schema: &DFSchema) -> Result<Arc<dyn PhysicalExpr>> {
    Ok(create_physical_expr(e, schema, &ExecutionProps::new(), &Default::default())?)
}

/// Plans `select` as a continuous query over the catalog's streams.
pub async fn plan(ctx: &SessionContext, catalog: &Catalog, stats: Arc<Stats>, select: &str) -> Result<QueryPlan> {
    let df = ctx.sql(select).await?;
    let state = ctx.state();
    let plan = state.analyzer().execute_and_check(df.logical_plan().clone(), state.config_options(), |_, _| {})?;
    plan_logical(catalog, stats, &distinct_as_group_by(plan)?).await
}

/// `SELECT DISTINCT exprs FROM ...` is `SELECT exprs FROM ... GROUP BY exprs`: a table with
/// one row per distinct value.
fn distinct_as_group_by(plan: LogicalPlan) -> Result<LogicalPlan> {
    use datafusion::logical_expr::{Distinct, LogicalPlanBuilder};
    let LogicalPlan::Distinct(Distinct::All(input)) = &plan else { return Ok(plan) };
    let LogicalPlan::Projection(p) = input.as_ref() else { return Err(unsupported("this SELECT DISTINCT")) };
    let agg = LogicalPlanBuilder::from(p.input.as_ref().clone()).aggregate(p.expr.clone(), Vec::<Expr>::new())?.build()?;
    let columns: Vec<Expr> = agg.schema().columns().into_iter().map(Expr::Column).collect();
    Ok(LogicalPlanBuilder::from(agg).project(columns)?.build()?)
}

/// Plans one SELECT level (an aggregation in FROM is planned first, as the input).
async fn plan_logical(catalog: &Catalog, stats: Arc<Stats>, plan: &LogicalPlan) -> Result<QueryPlan> {
    if let LogicalPlan::Projection(p) = plan {
        if let LogicalPlan::Window(w) = p.input.as_ref() {
            let (rewritten, frames) = window_as_aggregate(p, w)?;
            return plan_level(catalog, stats, &rewritten, Some(&frames)).await;
        }
    }
    plan_level(catalog, stats, plan, None).await
}

/// An OVER window as a continuous query sees it: a table with one row per partition, the
/// window functions valued at its last row (in the window's order). That is an
/// aggregation grouped by the PARTITION BY columns whose aggregates keep their frame's
/// rows; this rewrites the window as that aggregation and gives each aggregate's frame
/// (`None`: UNBOUNDED PRECEDING).
fn window_as_aggregate(p: &datafusion::logical_expr::Projection, w: &datafusion::logical_expr::Window) -> Result<(LogicalPlan, Vec<Option<u64>>)> {
    use datafusion::common::tree_node::{Transformed, TreeNode};
    use datafusion::logical_expr::{Projection, WindowFrameBound, WindowFrameUnits, WindowFunctionDefinition};
    let shape_hint = "a continuous window query is SELECT <PARTITION BY columns>, AGG(x) OVER (PARTITION BY p ORDER BY t ROWS BETWEEN n PRECEDING AND CURRENT ROW) FROM ...";
    if matches!(w.input.as_ref(), LogicalPlan::Window(_)) {
        return Err(unsupported("window functions with different PARTITION BY or ORDER BY").hint(shape_hint));
    }
    let mut partition_by: Option<Vec<Expr>> = None;
    let (mut aggs, mut frames) = (Vec::new(), Vec::new());
    for e in &w.window_expr {
        let Expr::WindowFunction(wf) = strip(e) else { return Err(unsupported(&format!("the window expression {e}"))) };
        let WindowFunctionDefinition::AggregateUDF(udaf) = &wf.fun else {
            return Err(unsupported(&format!("the window function {}() (ranking and offset functions)", wf.fun))
                .hint("aggregates (COUNT, SUM, MIN, MAX, AVG) over a ROWS frame run continuously; for the top rows of a group use first_value(x ORDER BY y) in a GROUP BY"));
        };
        let params = &wf.params;
        if params.order_by.is_empty() {
            return Err(SqlError::new("a window function in a continuous query needs ORDER BY in its OVER clause")
                .hint("write OVER (PARTITION BY p ORDER BY t ROWS BETWEEN 9 PRECEDING AND CURRENT ROW)"));
        }
        match &partition_by {
            None => partition_by = Some(params.partition_by.clone()),
            Some(p) if *p != params.partition_by => return Err(unsupported("window functions with different PARTITION BY").hint(shape_hint)),
            Some(_) => {}
        }
        let frame = &params.window_frame;
        let unbounded = |b: &WindowFrameBound| matches!(b, WindowFrameBound::Preceding(v) if v.is_null());
        let preceding = match (&frame.units, &frame.start_bound, &frame.end_bound) {
            (_, start, WindowFrameBound::CurrentRow) if unbounded(start) => None,
            (WindowFrameUnits::Rows, WindowFrameBound::Preceding(n), WindowFrameBound::CurrentRow) => Some(match n {
                ScalarValue::UInt64(Some(n)) => *n,
                ScalarValue::Int64(Some(n)) if *n >= 0 => *n as u64,
                other => return Err(SqlError::new(format!("a window frame's length is a constant number of rows, not {other}"))),
            }),
            (WindowFrameUnits::Rows, WindowFrameBound::CurrentRow, WindowFrameBound::CurrentRow) => Some(0),
            _ => {
                return Err(
                    unsupported(&format!("the window frame {frame}")).hint("frames end at the current row: ROWS BETWEEN n PRECEDING AND CURRENT ROW, or UNBOUNDED PRECEDING")
                )
            }
        };
        let f =
            datafusion::logical_expr::expr::AggregateFunction::new_udf(udaf.clone(), params.args.clone(), params.distinct, params.filter.clone(), params.order_by.clone(), None);
        aggs.push(Expr::AggregateFunction(f));
        frames.push(preceding);
    }
    let agg = Aggregate::try_new(w.input.clone(), partition_by.unwrap_or_default(), aggs)?;
    let groups = agg.group_expr.len();
    // The window's output columns become the aggregate's.
    let inputs = w.input.schema().fields().len();
    let renamed: Vec<(String, String)> = (0..w.window_expr.len()).map(|k| (w.schema.field(inputs + k).name().clone(), agg.schema.field(groups + k).name().clone())).collect();
    // Other columns of the input have no single value in a partition's row.
    let partition_by = &agg.group_expr;
    for e in &p.expr {
        for c in e.column_refs() {
            let windowed = renamed.iter().any(|(from, _)| *from == c.name);
            if !windowed && !partition_by.iter().any(|g| g.column_refs().contains(c)) {
                return Err(SqlError::new(format!("column {} is neither in PARTITION BY nor in a window function", c.name))
                    .hint("a continuous window query's result is a table with one row per partition: show the PARTITION BY columns and window functions"));
            }
        }
    }
    let mut exprs = Vec::new();
    for (e, i) in p.expr.iter().zip(0..) {
        let out_name = p.schema.field(i).name().clone();
        let t = e.clone().transform(|e| {
            Ok(match &e {
                Expr::Column(c) => match renamed.iter().find(|(from, _)| *from == c.name) {
                    Some((_, to)) => Transformed::yes(Expr::Column(datafusion::common::Column::from_name(to))),
                    None => Transformed::no(e),
                },
                _ => Transformed::no(e),
            })
        })?;
        exprs.push(t.data.alias_if_changed(out_name)?);
    }
    let agg_plan = Arc::new(LogicalPlan::Aggregate(agg));
    let proj = Projection::try_new(exprs, agg_plan)?;
    Ok((LogicalPlan::Projection(proj), frames))
}

/// Plans one SELECT level; `frames` when its aggregates are rewritten OVER windows.
async fn plan_level(catalog: &Catalog, stats: Arc<Stats>, plan: &LogicalPlan, frames: Option<&[Option<u64>]>) -> Result<QueryPlan> {
    let output_schema: SchemaRef = Arc::new(plan.schema().as_arrow().clone());
    let LogicalPlan::Projection(proj) = plan else {
        return Err(unsupported(&format!("a query shaped as {}", plan.display())));
    };
    // Below the projection: [Filter(HAVING)] Aggregate, or [Filter(WHERE)] scan.
    let (having, below) = match proj.input.as_ref() {
        LogicalPlan::Filter(f) if matches!(f.input.as_ref(), LogicalPlan::Aggregate(_)) => (Some(f.predicate.clone()), f.input.as_ref()),
        other => (None, other),
    };
    let (agg, scan_side) = match below {
        LogicalPlan::Aggregate(a) => (Some(a), a.input.as_ref()),
        other => (None, other),
    };
    let (filter, scan_plan) = match scan_side {
        LogicalPlan::Filter(f) => (Some(f.predicate.clone()), f.input.as_ref()),
        other => (None, other),
    };
    let scan_schema: DFSchemaRef = scan_plan.schema().clone();
    let mut join = None;
    let mut filter = filter;
    let scan_plan = match scan_plan {
        LogicalPlan::Join(j) => {
            let (jp, residual) = plan_join(catalog, j)?;
            if catalog.topic_partitions(&jp.right_def.topic).await?.unwrap_or(0) == 0 {
                return Err(SqlError::new(format!("topic '{}' of {} does not exist", jp.right_def.topic, jp.right_def.name)));
            }
            join = Some(jp);
            // Conditions of an inner join's ON clause are checked with the WHERE clause.
            filter = match (filter, residual) {
                (Some(a), Some(b)) => Some(a.and(b)),
                (a, b) => a.or(b),
            };
            j.left.as_ref()
        }
        other => other,
    };
    // A subquery in FROM runs first; its result rows are this level's input. An
    // aggregation's rows change, so each update retracts the row it replaces.
    if let LogicalPlan::SubqueryAlias(sq) = scan_plan {
        if !matches!(sq.input.as_ref(), LogicalPlan::TableScan(_)) {
            let inner = Box::pin(plan_logical(catalog, stats.clone(), sq.input.as_ref())).await?;
            let decoder = Decoder::new(Format::Json, &inner.output_columns())?;
            let filter = filter.map(|f| phys(&f, &scan_schema)).transpose()?;
            let processed = inner.input.processed.clone();
            let (source, partitions) = (inner.source.clone(), inner.partitions);
            let mut outer = match agg {
                Some(a) => {
                    plan_aggregate(a, &scan_schema, source, partitions, decoder, filter, None, None, proj, having, output_schema, stats, processed, inner.is_aggregate(), frames)?
                }
                None if inner.is_aggregate() => {
                    return Err(unsupported("a query over a GROUP BY subquery without a GROUP BY of its own")
                        .hint("filter the groups with HAVING in the subquery, or make the subquery the table and query it"))
                }
                None => stateless(proj, &scan_schema, source, partitions, decoder, filter, None, None, None, output_schema, stats, processed)?,
            };
            outer.inner = Some(Box::new(inner));
            return Ok(outer);
        }
    }
    let table = match scan_plan {
        LogicalPlan::TableScan(t) => t.table_name.table().to_string(),
        LogicalPlan::SubqueryAlias(a) => match a.input.as_ref() {
            LogicalPlan::TableScan(t) => t.table_name.table().to_string(),
            other => return Err(unsupported(&format!("FROM {}", other.display()))),
        },
        LogicalPlan::Join(_) => return Err(unsupported("a join of more than two inputs")),
        LogicalPlan::Window(_) => return Err(unsupported("a window function (OVER)")),
        LogicalPlan::Distinct(_) => return Err(unsupported("SELECT DISTINCT")),
        other => return Err(unsupported(&format!("{}", other.display()))),
    };
    let source = catalog.source(&table).ok_or_else(|| SqlError::new(format!("no stream or table named {table}")))?;
    if source.kind == crate::catalog::SourceKind::Table {
        return Err(unsupported("a table as the input (read its changes as a stream over the same topic)"));
    }
    let partitions = catalog.topic_partitions(&source.topic).await?.unwrap_or(0);
    if partitions == 0 {
        return Err(SqlError::new(format!("topic '{}' of stream {} does not exist", source.topic, source.name)));
    }
    let decoder = Decoder::new(source.format, &source.columns)?;
    let filter = filter.map(|f| phys(&f, &scan_schema)).transpose()?;
    let ts_col = source.timestamp.as_ref().map(|c| phys(&Expr::Column(datafusion::common::Column::new(Some(scan_plan_qualifier(scan_plan)), c)), &scan_schema)).transpose()?;

    let processed = Arc::new(AtomicU64::new(0));
    match agg {
        None => {
            let key_index = source.key.as_ref().and_then(|k| output_schema.fields().iter().position(|f| f.name() == k));
            stateless(proj, &scan_schema, source, partitions, decoder, filter, ts_col, key_index, join, output_schema, stats, processed)
        }
        Some(a) => plan_aggregate(a, &scan_schema, source, partitions, decoder, filter, ts_col, join, proj, having, output_schema, stats, processed, false, frames),
    }
}

/// A query without GROUP BY: the input stage evaluates the SELECT list, which is the
/// output row (keyed by the `key_index` column, else by the input record's key).
#[allow(clippy::too_many_arguments)]
fn stateless(
    proj: &datafusion::logical_expr::Projection,
    scan_schema: &DFSchemaRef,
    source: SourceDef,
    partitions: i32,
    decoder: Decoder,
    filter: Option<Arc<dyn PhysicalExpr>>,
    time: Option<Arc<dyn PhysicalExpr>>,
    key_index: Option<usize>,
    join: Option<JoinPlan>,
    output_schema: SchemaRef,
    stats: Arc<Stats>,
    processed: Arc<AtomicU64>,
) -> Result<QueryPlan> {
    let exprs = proj.expr.iter().map(|e| phys(e, scan_schema)).collect::<Result<Vec<_>>>()?;
    let input = Arc::new(InputShared {
        decoder,
        filter,
        exprs,
        args: Vec::new(),
        orders: Vec::new(),
        time,
        windowed: false,
        output_schema: Some(output_schema.clone()),
        key_index,
        join,
        scan_schema: Arc::new(scan_schema.as_arrow().clone()),
        stats,
        processed,
    });
    Ok(QueryPlan { source, partitions, input, agg: None, output_schema, key_column: None, inner: None })
}

/// One input of a join: how its records are decoded, keyed and timed.
struct JoinSide {
    decoder: Decoder,
    /// The join key expressions (stream-table: one, on the stream; the table side has none).
    keys: Vec<Arc<dyn PhysicalExpr>>,
    /// Stream-stream: the event time the time bound compares.
    time: Option<Arc<dyn PhysicalExpr>>,
    /// Records of this side without a match are kept (LEFT / RIGHT / FULL).
    outer: bool,
    /// The key standing for a NULL join key on an outer side (it matches nothing).
    null_key: &'static str,
}

/// How the two inputs meet.
enum JoinKind {
    /// Stream-table: each stream record looks up the table's row of its key.
    Table,
    /// Stream-stream: records of equal key whose times fit the bound.
    Stream(JoinWindows),
}

/// A join of the query's stream with a table or a second stream.
struct JoinPlan {
    /// The right input.
    right_def: SourceDef,
    kind: JoinKind,
    left: Arc<JoinSide>,
    right: Arc<JoinSide>,
}

fn source_of(p: &LogicalPlan) -> Option<String> {
    match p {
        LogicalPlan::TableScan(t) => Some(t.table_name.table().to_string()),
        LogicalPlan::SubqueryAlias(a) => source_of(&a.input),
        _ => None,
    }
}

/// `time ± INTERVAL`: the time expression and the offset in ms (0 without one).
fn time_offset(e: &Expr) -> (&Expr, i64) {
    use datafusion::logical_expr::{BinaryExpr, Operator};
    let interval = |e: &Expr| match strip(e) {
        Expr::Literal(v @ (ScalarValue::IntervalMonthDayNano(_) | ScalarValue::IntervalDayTime(_)), _) => interval_ms(v).ok(),
        _ => None,
    };
    match strip(e) {
        Expr::BinaryExpr(BinaryExpr { left, op: Operator::Plus, right }) => match (interval(right), interval(left)) {
            (Some(ms), _) => (left, ms),
            (None, Some(ms)) => (right, ms),
            _ => (e, 0),
        },
        Expr::BinaryExpr(BinaryExpr { left, op: Operator::Minus, right }) => match interval(right) {
            Some(ms) => (left, -ms),
            None => (e, 0),
        },
        other => (other, 0),
    }
}

/// A time bound between the join's inputs: `right_time ∈ [left_time + lo, left_time + hi]`.
#[derive(Default)]
struct TimeBound {
    times: Option<(Expr, Expr)>,
    lo: Option<i64>,
    hi: Option<i64>,
}

/// `grace_period(INTERVAL ...)` in a join condition: how late records may be.
fn grace_of(e: &Expr) -> Result<Option<i64>> {
    match strip(e) {
        Expr::ScalarFunction(ScalarFunction { func, args }) if func.name() == "grace_period" => match args.as_slice() {
            [g] => Ok(Some(const_interval(g)?)),
            _ => Err(SqlError::new("grace_period takes one interval, e.g. grace_period(INTERVAL '1' MINUTE)")),
        },
        _ => Ok(None),
    }
}

fn plan_join(catalog: &Catalog, j: &datafusion::logical_expr::Join) -> Result<(JoinPlan, Option<Expr>)> {
    use crate::catalog::SourceKind::{Stream, Table};
    use datafusion::logical_expr::expr_schema::ExprSchemable;
    use datafusion::logical_expr::utils::{conjunction, split_conjunction};
    use datafusion::logical_expr::{Between, BinaryExpr, JoinType, Operator};
    let (Some(ln), Some(rn)) = (source_of(&j.left), source_of(&j.right)) else {
        return Err(unsupported("a join of more than two inputs"));
    };
    let (Some(l), Some(r)) = (catalog.source(&ln), catalog.source(&rn)) else {
        return Err(SqlError::new("a joined stream or table is missing"));
    };
    let table = match (l.kind, r.kind) {
        (Stream, Table) => true,
        (Stream, Stream) => false,
        (Table, Stream) => return Err(SqlError::new("put the stream on the left of the join: FROM stream JOIN table ON ...")),
        (Table, Table) => return Err(unsupported("a table-table join")),
    };
    let (left_outer, right_outer) = match j.join_type {
        JoinType::Inner => (false, false),
        JoinType::Left => (true, false),
        JoinType::Right if !table => (false, true),
        JoinType::Full if !table => (true, true),
        other if table => return Err(unsupported(&format!("a {other} join of a stream with a table (they are INNER or LEFT)"))),
        other => return Err(unsupported(&format!("a {other} join"))),
    };
    let (ls, rs) = (j.left.schema(), j.right.schema());
    // Which input an expression reads: Some(true) left only, Some(false) right only.
    let side = |e: &Expr| {
        let refs = e.column_refs();
        if refs.is_empty() {
            None
        } else if refs.iter().all(|c| ls.has_column(c)) {
            Some(true)
        } else if refs.iter().all(|c| rs.has_column(c)) {
            Some(false)
        } else {
            None
        }
    };
    let is_time = |e: &Expr, left: bool| {
        let t = e.get_type(if left { ls.as_ref() } else { rs.as_ref() });
        matches!(t, Ok(DataType::Timestamp(..) | DataType::Date32 | DataType::Date64))
    };
    let mut conjuncts: Vec<Expr> = j.on.iter().map(|(a, b)| a.clone().eq(b.clone())).collect();
    if let Some(f) = &j.filter {
        conjuncts.extend(split_conjunction(f).into_iter().cloned());
    }
    // Key equalities, the grace period, and the other conjuncts, each with its time
    // comparisons normalised as `right_time op left_time + d` when it is made of them.
    type Piece = (Expr, Expr, Operator, i64);
    let (mut keys, mut grace, mut others) = (Vec::new(), None, Vec::<(Expr, Option<Vec<Piece>>)>::new());
    for c in conjuncts {
        if let Some(g) = grace_of(&c)? {
            grace = Some(g);
            continue;
        }
        if let Expr::BinaryExpr(BinaryExpr { left: a, op: Operator::Eq, right: b }) = strip(&c) {
            match (side(a), side(b)) {
                (Some(true), Some(false)) => {
                    keys.push((a.as_ref().clone(), b.as_ref().clone()));
                    continue;
                }
                (Some(false), Some(true)) => {
                    keys.push((b.as_ref().clone(), a.as_ref().clone()));
                    continue;
                }
                _ => {}
            }
        }
        // A time bound: comparisons of a time of one input with a time of the other ± a
        // constant interval (BETWEEN is two of them).
        let pieces: Vec<(Operator, &Expr, &Expr)> = match strip(&c) {
            Expr::Between(Between { expr, negated: false, low, high }) => vec![(Operator::GtEq, expr, low), (Operator::LtEq, expr, high)],
            Expr::BinaryExpr(BinaryExpr { left, op: op @ (Operator::Lt | Operator::LtEq | Operator::Gt | Operator::GtEq), right }) => vec![(*op, left, right)],
            _ => Vec::new(),
        };
        let mut norm = Vec::new();
        for (op, x, y) in &pieces {
            let ((xb, xc), (yb, yc)) = (time_offset(x), time_offset(y));
            let (rt, lt, op, d) = match (side(xb), side(yb)) {
                (Some(false), Some(true)) => (xb, yb, *op, yc - xc),
                (Some(true), Some(false)) => (yb, xb, op.swap().unwrap_or(*op), xc - yc),
                _ => break,
            };
            if !is_time(rt, false) || !is_time(lt, true) {
                break;
            }
            norm.push((rt.clone(), lt.clone(), op, d));
        }
        let norm = (!table && !pieces.is_empty() && norm.len() == pieces.len()).then_some(norm);
        others.push((c, norm));
    }
    // The bound: the first pair of times compared both ways (e.g. `b.t >= a.t` and
    // `b.t <= a.t + INTERVAL ...`); comparisons of other times are plain conditions.
    let mut bound = TimeBound::default();
    let pieces = || others.iter().filter_map(|(_, n)| n.as_ref()).flatten();
    for (rt, lt, ..) in pieces() {
        let (mut lo, mut hi) = (None::<i64>, None::<i64>);
        for (_, _, op, d) in pieces().filter(|p| &p.0 == rt && &p.1 == lt) {
            match op {
                Operator::GtEq => lo = Some(lo.map_or(*d, |v| v.max(*d))),
                Operator::Gt => lo = Some(lo.map_or(d + 1, |v| v.max(d + 1))),
                Operator::LtEq => hi = Some(hi.map_or(*d, |v| v.min(*d))),
                _ => hi = Some(hi.map_or(d - 1, |v| v.min(d - 1))),
            }
        }
        if lo.is_some() && hi.is_some() {
            bound = TimeBound { times: Some((rt.clone(), lt.clone())), lo, hi };
            break;
        }
    }
    let mut residual = Vec::new();
    for (c, norm) in others {
        let exact = norm.is_some_and(|n| n.iter().all(|p| bound.times.as_ref().is_some_and(|(r0, l0)| *r0 == p.0 && *l0 == p.1)));
        // An inner join keeps checking the bound exactly after the join (the join's window
        // may be wider); an outer join's window is the bound itself.
        if !exact || !(left_outer || right_outer) {
            residual.push(c);
        }
    }
    let outer = left_outer || right_outer;
    if outer && !residual.is_empty() {
        return Err(unsupported("a condition other than key equalities and a time bound in the ON clause of an outer join").hint("put other conditions in WHERE"));
    }
    let left_decoder = Decoder::new(l.format, &l.columns)?;
    let right_decoder = Decoder::new(r.format, &r.columns)?;
    let left_keys = keys.iter().map(|(a, _)| phys(a, ls)).collect::<Result<Vec<_>>>()?;
    let (kind, right_keys, times) = if table {
        let key = r.key.clone().unwrap_or_default();
        let key_ok = |e: &Expr| matches!(strip(e), Expr::Column(c) if (c.name == key && rs.has_column(c)) || c.name == "_key");
        match keys.as_slice() {
            [(_, re)] if key_ok(re) => {}
            _ => return Err(SqlError::new(format!("a stream joins table {} on its primary key {key}", r.name)).hint(format!("write ON <stream expression> = {}.{key}", r.name))),
        }
        (JoinKind::Table, Vec::new(), None)
    } else {
        if keys.is_empty() {
            return Err(SqlError::new("a stream-stream join needs an equality of the two streams' keys")
                .hint("write ON a.id = b.id AND b.t BETWEEN a.t - INTERVAL '1' MINUTE AND a.t + INTERVAL '1' MINUTE"));
        }
        let (Some((rt, lt)), Some(lo), Some(hi)) = (bound.times, bound.lo, bound.hi) else {
            return Err(SqlError::new("a stream-stream join needs a time bound on both sides, so that its state stays finite")
                .hint("add to ON: b.t BETWEEN a.t - INTERVAL '1' MINUTE AND a.t + INTERVAL '1' MINUTE (a.t, b.t: the streams' TIMESTAMP columns)"));
        };
        let (before, after) = (-lo, hi);
        if before + after < 0 {
            return Err(SqlError::new("the join's time bound is empty: its lower end is above its upper end"));
        }
        if outer && (before < 0 || after < 0) {
            return Err(unsupported("an outer stream-stream join whose time bound excludes equal times")
                .hint("write a bound such as BETWEEN a.t - INTERVAL '1' MINUTE AND a.t + INTERVAL '1' MINUTE"));
        }
        let grace = grace.unwrap_or(DEFAULT_GRACE_MS);
        let w = JoinWindows::of_time_difference_and_grace(Duration::ZERO, Duration::from_millis(grace as u64))
            .before(Duration::from_millis(before.max(0) as u64))
            .after(Duration::from_millis(after.max(0) as u64));
        let right_keys = keys.iter().map(|(_, b)| phys(b, rs)).collect::<Result<Vec<_>>>()?;
        (JoinKind::Stream(w), right_keys, Some((phys(&lt, ls)?, phys(&rt, rs)?)))
    };
    if grace.is_some() && table {
        return Err(SqlError::new("grace_period() applies to stream-stream joins"));
    }
    let (lt, rt) = times.map_or((None, None), |(a, b)| (Some(a), Some(b)));
    let left = Arc::new(JoinSide { decoder: left_decoder, keys: left_keys, time: lt, outer: left_outer, null_key: "\u{0}" });
    let right = Arc::new(JoinSide { decoder: right_decoder, keys: right_keys, time: rt, outer: right_outer, null_key: "\u{1}" });
    Ok((JoinPlan { right_def: r, kind, left, right }, conjunction(residual)))
}

fn scan_plan_qualifier(p: &LogicalPlan) -> String {
    match p {
        LogicalPlan::TableScan(t) => t.table_name.table().to_string(),
        LogicalPlan::SubqueryAlias(a) => a.alias.table().to_string(),
        _ => String::new(),
    }
}

#[allow(clippy::too_many_arguments)]
fn plan_aggregate(
    a: &Aggregate,
    scan_schema: &DFSchemaRef,
    source: SourceDef,
    partitions: i32,
    decoder: Decoder,
    filter: Option<Arc<dyn PhysicalExpr>>,
    ts_col: Option<Arc<dyn PhysicalExpr>>,
    join: Option<JoinPlan>,
    proj: &datafusion::logical_expr::Projection,
    having: Option<Expr>,
    output_schema: SchemaRef,
    stats: Arc<Stats>,
    processed: Arc<AtomicU64>,
    retracting: bool,
    frames: Option<&[Option<u64>]>,
) -> Result<QueryPlan> {
    let mut window = None;
    let mut window_index = None;
    let mut time = ts_col;
    let mut exprs = Vec::new();
    for (i, g) in a.group_expr.iter().enumerate() {
        if let Some((spec, time_arg)) = window_of(g)? {
            if window.is_some() {
                return Err(SqlError::new("one window per query"));
            }
            window = Some(spec);
            window_index = Some(i);
            time = Some(phys(&time_arg, scan_schema)?);
        } else {
            if matches!(strip(g), Expr::GroupingSet(_)) {
                return Err(unsupported("GROUPING SETS / ROLLUP / CUBE"));
            }
            exprs.push(phys(g, scan_schema)?);
        }
    }
    use datafusion::logical_expr::expr_schema::ExprSchemable;
    let mut specs = Vec::new();
    let mut args = Vec::new();
    let mut orders = Vec::new();
    for (i, e) in a.aggr_expr.iter().enumerate() {
        let Expr::AggregateFunction(AggregateFunction { func, params }) = strip(e) else {
            return Err(unsupported(&format!("the aggregate {e}")));
        };
        if params.filter.is_some() {
            return Err(unsupported("FILTER inside an aggregate").hint("put the condition in WHERE, or in a CASE inside the aggregate"));
        }
        let name = func.name();
        let over = frames.map(|f| f[i]);
        let kind = match (name, over, params.distinct) {
            ("count", None, true) => AggKind::CountDistinct,
            (_, _, true) => return Err(unsupported(&format!("{}(DISTINCT ...)", name.to_uppercase())).hint("COUNT(DISTINCT x) is supported")),
            ("count", None, _) => AggKind::Count,
            ("sum", None, _) => AggKind::Sum,
            ("min", None, _) => AggKind::Min,
            ("max", None, _) => AggKind::Max,
            ("avg", None, _) => AggKind::Avg,
            ("first_value" | "last_value", None, _) => AggKind::First,
            (other, None, _) => {
                return Err(SqlError::new(format!("aggregate {other}() is not supported in continuous queries"))
                    .hint("use COUNT, COUNT(DISTINCT), SUM, MIN, MAX, AVG, or first_value/last_value(x ORDER BY y)"));
            }
            (f, Some(preceding), _) => {
                let of = match f {
                    "count" => RowsOf::Count,
                    "sum" => RowsOf::Sum,
                    "min" => RowsOf::Min,
                    "max" => RowsOf::Max,
                    "avg" => RowsOf::Avg,
                    other => return Err(unsupported(&format!("{other}() OVER (...)")).hint("COUNT, SUM, MIN, MAX and AVG work over a window frame")),
                };
                AggKind::Rows { preceding, of }
            }
        };
        let ordered = matches!(kind, AggKind::First | AggKind::Rows { .. });
        let (order, desc) = match (ordered, params.order_by.as_slice()) {
            (false, _) => (None, false),
            (true, [sort]) => (Some(sort), !sort.asc),
            (true, []) => return Err(SqlError::new(format!("{name} needs an order in a continuous query")).hint(format!("write {name}(x ORDER BY t)"))),
            (true, _) => return Err(unsupported("an ORDER BY of more than one expression in an aggregate or window")),
        };
        // last_value is the first in the reverse order.
        let desc = if name == "last_value" { !desc } else { desc };
        let order_type = order.map(|o| o.expr.get_type(scan_schema.as_ref())).transpose()?;
        specs.push(AggSpec { kind, out: a.schema.field(a.group_expr.len() + i).data_type().clone(), order: order_type, desc, retracting });
        orders.push(order.map(|o| phys(&o.expr, scan_schema)).transpose()?);
        args.push(match params.args.first() {
            None => None,
            Some(arg) => Some(phys(arg, scan_schema)?),
        });
    }
    let agg_schema: SchemaRef = Arc::new(a.schema.as_arrow().clone());
    let having = having.map(|h| phys(&h, &a.schema)).transpose()?;
    let projection = proj.expr.iter().map(|e| phys(e, &a.schema)).collect::<Result<Vec<_>>>()?;
    // The key column: the one non-window group expression, when the SELECT list shows it.
    let key_column = if a.group_expr.len() == 1 && window.is_none() {
        let g_name = a.schema.field(0).name().clone();
        proj.expr.iter().zip(output_schema.fields()).find(|(e, _)| matches!(strip(e), Expr::Column(c) if c.name == g_name)).map(|(_, f)| f.name().clone())
    } else {
        None
    };
    let input = Arc::new(InputShared {
        decoder,
        filter,
        exprs,
        args,
        orders,
        windowed: window.is_some(),
        time,
        output_schema: None,
        key_index: None,
        join,
        scan_schema: Arc::new(scan_schema.as_arrow().clone()),
        stats,
        processed,
    });
    let output = Arc::new(OutputShared { agg_schema, window_index, groups: a.group_expr.len(), specs, having, projection, output_schema: output_schema.clone(), retracting });
    Ok(QueryPlan { source, partitions, input, agg: Some(AggPlan { window, output }), output_schema, key_column, inner: None })
}

// ---------------------------------------------------------------------------------------
// Evaluation

fn eval_bool(e: &Arc<dyn PhysicalExpr>, batch: &RecordBatch) -> DfResult<bool> {
    let v = e.evaluate(batch)?.into_array(batch.num_rows())?;
    let b = v.as_any().downcast_ref::<BooleanArray>().ok_or_else(|| DataFusionError::Execution("a condition is not boolean".into()))?;
    Ok(b.len() == 1 && b.is_valid(0) && b.value(0))
}

fn eval_text(e: &Arc<dyn PhysicalExpr>, batch: &RecordBatch) -> DfResult<Option<String>> {
    let arr = e.evaluate(batch)?.into_array(batch.num_rows())?;
    let one = RecordBatch::try_new(Arc::new(Schema::new(vec![Field::new("v", arr.data_type().clone(), true)])), vec![arr])?;
    Ok(rows_as_text(&one).map_err(|e| DataFusionError::Execution(e.message))?.remove(0).remove(0))
}

fn eval_ms(e: &Arc<dyn PhysicalExpr>, batch: &RecordBatch) -> DfResult<Option<i64>> {
    let arr = e.evaluate(batch)?.into_array(batch.num_rows())?;
    let ms = cast(&arr, &DataType::Timestamp(TimeUnit::Millisecond, None)).or_else(|_| cast(&arr, &DataType::Int64))?;
    Ok(match ms.data_type() {
        DataType::Int64 => {
            let a = ms.as_any().downcast_ref::<datafusion::arrow::array::Int64Array>().expect("int64");
            a.is_valid(0).then(|| a.value(0))
        }
        _ => {
            let a = ms.as_any().downcast_ref::<TimestampMillisecondArray>().expect("ms");
            a.is_valid(0).then(|| a.value(0))
        }
    })
}

/// Decodes one input record; a malformed one is counted, logged and `None`.
fn decode_one(decoder: &Decoder, stats: &Stats, raw: &RawRecord) -> Option<RecordBatch> {
    match decoder.decode(std::slice::from_ref(raw)) {
        Ok(d) if d.batch.num_rows() == 1 => Some(d.batch),
        Ok(d) => {
            if let Some((p, o, why)) = d.malformed.first() {
                stats.malformed_records.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(partition = p, offset = o, "malformed record skipped: {why}");
            }
            None
        }
        Err(e) => {
            tracing::warn!(error = %e, "record skipped");
            None
        }
    }
}

struct InputStage {
    shared: Arc<InputShared>,
}

impl InputStage {
    fn decode(&self, ctx: &ProcessorContext<'_, '_, Option<String>, Option<Bytes>>, r: &Record<Option<Bytes>, Option<Bytes>>) -> Option<RecordBatch> {
        let (partition, offset) = ctx.record_metadata().map(|m| (m.partition, m.offset)).unwrap_or((-1, -1));
        let raw = RawRecord { key: r.key.clone(), value: r.value.clone(), partition, offset, timestamp: r.timestamp };
        decode_one(&self.shared.decoder, &self.shared.stats, &raw)
    }

    fn step(&mut self, ctx: &mut ProcessorContext<'_, '_, Option<String>, Option<Bytes>>, r: Record<Option<Bytes>, Option<Bytes>>) -> DfResult<()> {
        self.shared.processed.fetch_add(1, Ordering::Relaxed);
        let Some(batch) = self.decode(ctx, &r) else {
            return Ok(());
        };
        let key = r.key.as_ref().map(|k| String::from_utf8_lossy(k).into_owned());
        self.shared.evaluate(ctx, batch, key, r.timestamp, 1)
    }
}

impl InputShared {
    /// Filters, evaluates and forwards one input row (`batch`, in the scan schema).
    fn evaluate(&self, ctx: &mut ProcessorContext<'_, '_, Option<String>, Option<Bytes>>, batch: RecordBatch, in_key: Option<String>, in_ts: i64, sign: i64) -> DfResult<()> {
        if let Some(f) = &self.filter {
            if !eval_bool(f, &batch)? {
                return Ok(());
            }
        }
        let ts = match &self.time {
            Some(t) => match eval_ms(t, &batch)? {
                Some(ms) => ms,
                None if self.windowed => return Ok(()), // no event time: cannot be windowed
                None => in_ts,
            },
            None => in_ts,
        };
        if let Some(schema) = &self.output_schema {
            // Stateless: the SELECT list is the output row.
            let cols = self.exprs.iter().map(|e| e.evaluate(&batch).and_then(|v| v.into_array(1))).collect::<DfResult<Vec<ArrayRef>>>()?;
            let cols = cols.into_iter().zip(schema.fields()).map(|(c, f)| cast(&c, f.data_type())).collect::<Result<Vec<_>, _>>()?;
            let out = RecordBatch::try_new(schema.clone(), cols)?;
            let value = crate::format::encode_rows(&out, Format::Json).map_err(|e| DataFusionError::Execution(e.message))?.pop();
            let key = match self.key_index {
                Some(i) => rows_as_text(&out).map_err(|e| DataFusionError::Execution(e.message))?.remove(0).remove(i),
                None => in_key,
            };
            ctx.forward(Record::new(key, value, ts));
            return Ok(());
        }
        let g = self.exprs.iter().map(|e| eval_text(e, &batch)).collect::<DfResult<Vec<_>>>()?;
        let a = self.args.iter().map(|e| e.as_ref().map_or(Ok(Some("1".to_string())), |e| eval_text(e, &batch))).collect::<DfResult<Vec<_>>>()?;
        let o = if self.orders.iter().any(Option::is_some) {
            self.orders.iter().map(|e| e.as_ref().map_or(Ok(None), |e| eval_text(e, &batch))).collect::<DfResult<Vec<_>>>()?
        } else {
            Vec::new()
        };
        let key = serde_json::to_string(&g).unwrap_or_default();
        let v = serde_json::to_vec(&AggInput { g, a, o, s: sign }).unwrap_or_default();
        ctx.forward(Record::new(Some(key), Some(Bytes::from(v)), ts));
        Ok(())
    }
}

/// A stream record on its way to a join, keyed by its join key.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Carried {
    k: Option<String>,
    v: String,
    p: i32,
    o: i64,
    t: i64,
}

/// A pair of joined records (`None`: no match on that side, outer joins). A table's row
/// comes as a record with its key and value only.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Joined {
    l: Option<Carried>,
    r: Option<Carried>,
}

/// Keys the records of one join input by its join expressions and, for stream-stream
/// joins, times them by the time the bound compares (then they repartition by key).
struct KeyStage {
    shared: Arc<InputShared>,
    side: Arc<JoinSide>,
}

impl Processor<Option<Bytes>, Option<Bytes>, String, Json<Carried>> for KeyStage {
    fn process(&mut self, ctx: &mut ProcessorContext<'_, '_, String, Json<Carried>>, r: Record<Option<Bytes>, Option<Bytes>>) -> samsa_streams::Result<()> {
        let Some(value) = &r.value else { return Ok(()) };
        let (shared, side) = (&self.shared, &self.side);
        shared.processed.fetch_add(1, Ordering::Relaxed);
        let (p, o) = ctx.record_metadata().map(|m| (m.partition, m.offset)).unwrap_or((-1, -1));
        let raw = RawRecord { key: r.key.clone(), value: Some(value.clone()), partition: p, offset: o, timestamp: r.timestamp };
        let Some(batch) = decode_one(&side.decoder, &shared.stats, &raw) else { return Ok(()) };
        let texts: DfResult<Vec<Option<String>>> = side.keys.iter().map(|k| eval_text(k, &batch)).collect();
        let key = match texts {
            Ok(t) if t.iter().all(Option::is_some) => match t.as_slice() {
                [one] => one.clone(),
                many => Some(serde_json::to_string(many).unwrap_or_default()),
            },
            Ok(_) => None,
            Err(e) => {
                tracing::warn!(error = %e, "record skipped: the join key cannot be evaluated");
                return Ok(());
            }
        };
        // No join key: no match (an outer side still keeps the row).
        let key = match key {
            Some(k) => k,
            None if side.outer => side.null_key.to_string(),
            None => return Ok(()),
        };
        let ts = match side.time.as_ref().map(|t| eval_ms(t, &batch)) {
            None => r.timestamp,
            Some(Ok(Some(ms))) => ms,
            // No time: it cannot fall in a time bound.
            Some(_) if side.outer => r.timestamp,
            Some(_) => return Ok(()),
        };
        let carried = Carried { k: r.key.as_ref().map(|k| String::from_utf8_lossy(k).into_owned()), v: String::from_utf8_lossy(value).into_owned(), p, o, t: r.timestamp };
        ctx.forward(Record::new(key, Json(carried), ts));
        Ok(())
    }
}

/// Evaluates the query on a joined row.
struct JoinedStage {
    shared: Arc<InputShared>,
}

/// The columns of one side of a joined row: its record decoded, or NULLs when the other
/// side is outer (`nullable`).
fn side_columns(side: &JoinSide, c: Option<Carried>, nullable: bool) -> Option<Vec<ArrayRef>> {
    let decoded = c.and_then(|c| {
        let raw = RawRecord { key: c.k.map(Bytes::from), value: Some(Bytes::from(c.v)), partition: c.p, offset: c.o, timestamp: c.t };
        side.decoder.decode(std::slice::from_ref(&raw)).ok().filter(|d| d.batch.num_rows() == 1).map(|d| d.batch.columns().to_vec())
    });
    match decoded {
        Some(cols) => Some(cols),
        None if nullable => Some(side.decoder.schema().fields().iter().map(|f| datafusion::arrow::array::new_null_array(f.data_type(), 1)).collect()),
        None => None,
    }
}

impl Processor<String, Json<Joined>, Option<String>, Option<Bytes>> for JoinedStage {
    fn process(&mut self, ctx: &mut ProcessorContext<'_, '_, Option<String>, Option<Bytes>>, r: Record<String, Json<Joined>>) -> samsa_streams::Result<()> {
        let shared = self.shared.clone();
        let j = shared.join.as_ref().expect("a join");
        let Joined { l, r: mut right } = r.value.0;
        let key = match j.kind {
            JoinKind::Table => {
                if let Some(row) = right.as_mut() {
                    row.k = Some(r.key.clone());
                }
                l.as_ref().and_then(|c| c.k.clone())
            }
            JoinKind::Stream(_) => l.as_ref().and_then(|c| c.k.clone()).or_else(|| right.as_ref().and_then(|c| c.k.clone())),
        };
        let (Some(mut cols), Some(right_cols)) = (side_columns(&j.left, l, j.right.outer), side_columns(&j.right, right, j.left.outer)) else {
            return Ok(());
        };
        cols.extend(right_cols);
        let batch = match RecordBatch::try_new(shared.scan_schema.clone(), cols) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, "joined row skipped");
                return Ok(());
            }
        };
        if let Err(e) = shared.evaluate(ctx, batch, key, r.timestamp, 1) {
            shared.stats.malformed_records.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(error = %e, "record skipped: the query cannot evaluate it");
        }
        Ok(())
    }
}

impl Processor<Option<Bytes>, Option<Bytes>, Option<String>, Option<Bytes>> for InputStage {
    fn process(&mut self, ctx: &mut ProcessorContext<'_, '_, Option<String>, Option<Bytes>>, r: Record<Option<Bytes>, Option<Bytes>>) -> samsa_streams::Result<()> {
        if r.value.is_none() {
            return Ok(());
        }
        if let Err(e) = self.step(ctx, r) {
            // A record the query cannot evaluate (e.g. a cast of bad text) is skipped, not fatal.
            self.shared.stats.malformed_records.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(error = %e, "record skipped: the query cannot evaluate it");
        }
        Ok(())
    }
}

impl OutputShared {
    /// The output row of a group (None when HAVING rejects it).
    fn row(&self, st: &AccState, window_start: Option<i64>) -> DfResult<Option<RecordBatch>> {
        let mut cols: Vec<ArrayRef> = Vec::new();
        let mut g = st.g.iter();
        for (i, f) in self.agg_schema.fields().iter().enumerate() {
            let value = if i < self.groups {
                if Some(i) == self.window_index {
                    ScalarValue::TimestampMillisecond(window_start, None)
                } else {
                    match g.next().cloned().flatten() {
                        Some(text) => ScalarValue::try_from_string(text, f.data_type())?,
                        None => ScalarValue::try_from(f.data_type())?,
                    }
                }
            } else {
                result(&self.specs[i - self.groups], &st.acc[i - self.groups])?
            };
            cols.push(cast(&value.to_array_of_size(1)?, f.data_type())?);
        }
        let batch = RecordBatch::try_new(self.agg_schema.clone(), cols)?;
        if let Some(h) = &self.having {
            if !eval_bool(h, &batch)? {
                return Ok(None);
            }
        }
        let cols = self.projection.iter().map(|e| e.evaluate(&batch).and_then(|v| v.into_array(1))).collect::<DfResult<Vec<_>>>()?;
        let cols = cols.into_iter().zip(self.output_schema.fields()).map(|(c, f)| cast(&c, f.data_type())).collect::<Result<Vec<_>, _>>()?;
        Ok(Some(RecordBatch::try_new(self.output_schema.clone(), cols)?))
    }
}

/// The key text of a group: the one group value, or a JSON array of them (with the window
/// start when windowed).
fn key_text(g: &[Option<String>], window_start: Option<i64>, window_end: Option<i64>) -> String {
    match (g, window_start) {
        ([one], None) => one.clone().unwrap_or_default(),
        _ => {
            let mut parts: Vec<serde_json::Value> = g.iter().map(|v| v.clone().map_or(serde_json::Value::Null, serde_json::Value::String)).collect();
            if let Some(w) = window_start {
                parts.push(w.into());
            }
            if let Some(w) = window_end {
                parts.push(w.into());
            }
            serde_json::Value::Array(parts).to_string()
        }
    }
}

/// A group key as the output stage sees it.
trait GroupKey: Clone + Send + 'static {
    fn window_start(&self) -> Option<i64>;
    /// The key text of the output record.
    fn text(&self, g: &[Option<String>], session: bool) -> String;
    /// The group values as the JSON array the input stage keyed by.
    fn group_json(&self) -> &str;
}

impl GroupKey for String {
    fn window_start(&self) -> Option<i64> {
        None
    }
    fn text(&self, g: &[Option<String>], _session: bool) -> String {
        key_text(g, None, None)
    }
    fn group_json(&self) -> &str {
        self
    }
}

impl GroupKey for Windowed<String> {
    fn window_start(&self) -> Option<i64> {
        Some(self.window.start)
    }
    fn text(&self, g: &[Option<String>], session: bool) -> String {
        // A session is known by its start and end (merged sessions share a start).
        key_text(g, Some(self.window.start), session.then_some(self.window.end))
    }
    fn group_json(&self) -> &str {
        &self.key
    }
}

struct OutputStage {
    shared: Arc<OutputShared>,
    session: bool,
}

impl<K: GroupKey> Processor<K, Option<Json<AccState>>, Option<String>, Option<Bytes>> for OutputStage {
    fn process(&mut self, ctx: &mut ProcessorContext<'_, '_, Option<String>, Option<Bytes>>, r: Record<K, Option<Json<AccState>>>) -> samsa_streams::Result<()> {
        let ws = r.key.window_start();
        let Some(Json(state)) = r.value else {
            // A session merged into a longer one: its row goes away.
            let g: Vec<Option<String>> = serde_json::from_str(r.key.group_json()).unwrap_or_default();
            ctx.forward(Record::new(Some(r.key.text(&g, self.session)), None, r.timestamp));
            return Ok(());
        };
        let key = r.key.text(&state.g, self.session);
        if self.shared.retracting && state.rows <= 0 {
            ctx.forward(Record::new(Some(key), None, r.timestamp));
            return Ok(());
        }
        match self.shared.row(&state, ws) {
            Ok(Some(row)) => {
                let v = crate::format::encode_rows(&row, Format::Json).ok().and_then(|mut v| v.pop());
                ctx.forward(Record::new(Some(key), v, r.timestamp));
            }
            // HAVING no longer holds: the row leaves the table.
            Ok(None) => ctx.forward(Record::new(Some(key), None, r.timestamp)),
            Err(e) => {
                tracing::warn!(error = %e, "result row skipped: the query cannot evaluate it")
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// Running

/// Where results go.
pub enum Target {
    /// A stream or table's topic (persistent queries), and the dead-letter topic for input
    /// records the query cannot read, if any.
    Topic {
        /// The stream or table written.
        sink: SourceDef,
        /// The dead-letter topic.
        dead_letter: Option<String>,
    },
    /// A channel (EMIT CHANGES).
    Channel(tokio::sync::mpsc::UnboundedSender<(Option<String>, Option<Bytes>)>),
}

/// A running query's counters and streams instance, for `GET /metrics`.
pub struct QueryMetrics {
    processed: Arc<AtomicU64>,
    rows_out: Arc<AtomicU64>,
    streams: Arc<tokio::sync::Mutex<Option<KafkaStreams>>>,
}

impl QueryMetrics {
    /// Writes the query's metrics (label `query`) and its streams instance's into `e`. A
    /// query that is stopping (its instance locked) reports only its counters.
    pub async fn write(&self, query: &str, e: &mut samsa_client::prom::Exposition) {
        let labels = [("query", query)];
        e.counter("samsa_sql_query_rows_in_total", "Input rows a persistent query read.", &labels, self.processed.load(Ordering::Relaxed) as f64);
        e.counter("samsa_sql_query_rows_out_total", "Result rows a persistent query wrote to its sink topic (changes of a table included).", &labels, self.rows_out.load(Ordering::Relaxed) as f64);
        let dir = match self.streams.try_lock() {
            Ok(guard) => guard.as_ref().map(|s| {
                s.write_metrics(e);
                s.state_dir().to_path_buf()
            }),
            Err(_) => None,
        };
        if let Some(dir) = dir {
            let bytes = tokio::task::spawn_blocking(move || samsa_streams::runtime::dir_size(&dir)).await.unwrap_or(0);
            e.gauge("samsa_sql_query_state_bytes", "Bytes of a persistent query's local state on this server (RocksDB files, checkpoints).", &labels, bytes as f64);
        }
    }
}

/// A running continuous query.
pub struct Running {
    streams: Arc<tokio::sync::Mutex<Option<KafkaStreams>>>,
    processed: Arc<AtomicU64>,
    rows_out: Arc<AtomicU64>,
    lookup: Option<Lookup>,
}

impl Running {
    /// Stops it.
    pub async fn close(&self) {
        if let Some(s) = self.streams.lock().await.take() {
            if let Err(e) = s.close().await {
                tracing::warn!(error = %e, "continuous query closed with an error");
            }
        }
    }

    /// Whether its streams instance failed (the engine then restarts it).
    pub fn is_failed(&self) -> bool {
        self.streams.try_lock().map(|s| s.as_ref().is_some_and(|s| s.is_failed())).unwrap_or(false)
    }

    /// Input records processed so far (this instance).
    pub fn processed(&self) -> u64 {
        self.processed.load(Ordering::Relaxed)
    }

    /// What a scrape reads of it, taken without holding the engine's locks.
    pub fn metrics_source(&self) -> QueryMetrics {
        QueryMetrics { processed: self.processed.clone(), rows_out: self.rows_out.clone(), streams: self.streams.clone() }
    }

    /// The state-store lookup of a materialized table (non-windowed aggregations).
    pub fn lookup(&self) -> Option<Lookup> {
        self.lookup.clone()
    }
}

/// Turns the result rows of a subquery into inputs of the query over it. The changes of
/// an aggregation's table (`store`: the rows, by key) retract the row they replace, and a
/// deletion retracts only; a stateless subquery's rows are added as they come.
struct SubqueryStage {
    shared: Arc<InputShared>,
    store: Option<String>,
    h: Option<KvHandle<String, String>>,
}

impl SubqueryStage {
    /// An inner result row (JSON) as a batch of the outer query's input schema.
    fn row_batch(&self, row: &str) -> DfResult<RecordBatch> {
        let raw = RawRecord { key: None, value: Some(Bytes::from(row.to_string())), partition: -1, offset: -1, timestamp: 0 };
        let decoded = self.shared.decoder.decode(std::slice::from_ref(&raw)).map_err(|e| DataFusionError::Execution(e.message))?;
        if decoded.batch.num_rows() != 1 {
            return Err(DataFusionError::Execution(format!("an inner result row does not decode: {row}")));
        }
        let schema = &self.shared.scan_schema;
        let cols = decoded.batch.columns().iter().zip(schema.fields()).map(|(c, f)| cast(c, f.data_type())).collect::<Result<Vec<_>, _>>()?;
        Ok(RecordBatch::try_new(schema.clone(), cols)?)
    }
}

impl Processor<Option<String>, Option<Bytes>, Option<String>, Option<Bytes>> for SubqueryStage {
    fn init(&mut self, ctx: &mut ProcessorContext<'_, '_, Option<String>, Option<Bytes>>) -> samsa_streams::Result<()> {
        if let Some(store) = &self.store {
            self.h = Some(ctx.kv_store(store)?);
        }
        Ok(())
    }

    fn process(&mut self, ctx: &mut ProcessorContext<'_, '_, Option<String>, Option<Bytes>>, r: Record<Option<String>, Option<Bytes>>) -> samsa_streams::Result<()> {
        let new = r.value.map(|v| String::from_utf8_lossy(&v).into_owned());
        let (old, key) = match self.h.clone() {
            Some(h) => {
                let key = r.key.unwrap_or_default();
                let old = ctx.kv(&h).get(&key)?;
                match &new {
                    Some(v) => ctx.kv(&h).put(&key, v)?,
                    None => {
                        ctx.kv(&h).delete(&key)?;
                    }
                }
                (old, None)
            }
            None => (None, r.key),
        };
        for (row, sign) in [(old, -1), (new, 1)] {
            let Some(row) = row else { continue };
            if let Err(e) = self.row_batch(&row).and_then(|batch| self.shared.evaluate(ctx, batch, key.clone(), r.timestamp, sign)) {
                self.shared.stats.malformed_records.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "a subquery's result row skipped: the query cannot evaluate it");
            }
        }
        Ok(())
    }
}

/// Copies the input records that do not decode to a dead-letter topic, as they were, with
/// headers saying where they came from and why (the input stage skips and counts them).
struct DeadLetterStage {
    decoder: Decoder,
    query: Bytes,
}

impl Processor<Option<Bytes>, Option<Bytes>, Option<Bytes>, Option<Bytes>> for DeadLetterStage {
    fn process(&mut self, ctx: &mut ProcessorContext<'_, '_, Option<Bytes>, Option<Bytes>>, r: Record<Option<Bytes>, Option<Bytes>>) -> samsa_streams::Result<()> {
        if r.value.is_none() {
            return Ok(());
        }
        let meta = ctx.record_metadata().cloned().unwrap_or_default();
        let raw = RawRecord { key: r.key.clone(), value: r.value.clone(), partition: meta.partition, offset: meta.offset, timestamp: r.timestamp };
        let why = match self.decoder.decode(std::slice::from_ref(&raw)) {
            Ok(d) if d.batch.num_rows() == 1 => return Ok(()),
            Ok(d) => d.malformed.into_iter().next().map(|m| m.2).unwrap_or_else(|| "the record does not decode".into()),
            Err(e) => e.to_string(),
        };
        let mut out = Record::new(r.key, r.value, r.timestamp);
        out.headers = r.headers;
        for (name, value) in [
            ("samsa.sql.error.topic", Bytes::from(meta.topic)),
            ("samsa.sql.error.partition", Bytes::from(meta.partition.to_string())),
            ("samsa.sql.error.offset", Bytes::from(meta.offset.to_string())),
            ("samsa.sql.error.message", Bytes::from(why)),
            ("samsa.sql.error.query", self.query.clone()),
        ] {
            out.headers.push((name.to_string(), Some(value)));
        }
        ctx.forward(out);
        Ok(())
    }
}

/// Sends the records of `src` that do not decode with `decoder` to `dead_letter`.
fn dead_letters(src: &KStream<Option<Bytes>, Option<Bytes>>, decoder: &Decoder, dead_letter: Option<(&str, &str)>) {
    if let Some((topic, app)) = dead_letter {
        let (decoder, query) = (decoder.clone(), Bytes::from(app.trim_start_matches("_samsa_sql_").to_string()));
        src.process(move || DeadLetterStage { decoder: decoder.clone(), query: query.clone() }, &[]).to(topic);
    }
}

fn build(plan: &QueryPlan, b: &StreamsBuilder, store: &str, dead_letter: Option<(&str, &str)>) -> KStream<Option<String>, Option<Bytes>> {
    let input = plan.input.clone();
    let staged: KStream<Option<String>, Option<Bytes>> = if let Some(inner) = &plan.inner {
        let rows = build(inner, b, &format!("{store}-inner"), dead_letter);
        if inner.is_aggregate() {
            let previous = format!("{store}-previous");
            b.add_state_store(StoreDef::key_value(previous.clone()));
            let (i2, p2) = (input.clone(), previous.clone());
            rows.process(move || SubqueryStage { shared: i2.clone(), store: Some(p2.clone()), h: None }, &[previous.as_str()])
        } else {
            rows.process(move || SubqueryStage { shared: input.clone(), store: None, h: None }, &[])
        }
    } else {
        let src = b.stream::<Option<Bytes>, Option<Bytes>>(&plan.source.topic);
        dead_letters(&src, &plan.input.decoder, dead_letter);
        match &plan.input.join {
            None => src.process(move || InputStage { shared: input.clone() }, &[]),
            Some(j) => {
                let (i2, side) = (input.clone(), j.left.clone());
                let keyed: KStream<String, Json<Carried>> = src.process(move || KeyStage { shared: i2.clone(), side: side.clone() }, &[]);
                let joined: KStream<String, Json<Joined>> = match &j.kind {
                    JoinKind::Table => {
                        let table = b.table::<String, Bytes>(&j.right_def.topic);
                        // The row's key is the joined record's key (the join stage fills it in).
                        let row = |t: &Bytes| Carried { k: None, v: String::from_utf8_lossy(t).into_owned(), p: -1, o: -1, t: 0 };
                        if j.left.outer {
                            keyed.left_join_table(&table, move |c: &Json<Carried>, t: Option<&Bytes>| Json(Joined { l: Some(c.0.clone()), r: t.map(row) }))
                        } else {
                            keyed.join_table(&table, move |c: &Json<Carried>, t: &Bytes| Json(Joined { l: Some(c.0.clone()), r: Some(row(t)) }))
                        }
                    }
                    JoinKind::Stream(w) => {
                        let right_src = if j.right_def.topic == plan.source.topic {
                            src.clone()
                        } else {
                            let s = b.stream::<Option<Bytes>, Option<Bytes>>(&j.right_def.topic);
                            dead_letters(&s, &j.right.decoder, dead_letter);
                            s
                        };
                        let (i3, side) = (input.clone(), j.right.clone());
                        let other: KStream<String, Json<Carried>> = right_src.process(move || KeyStage { shared: i3.clone(), side: side.clone() }, &[]);
                        let pair = |l: Option<&Json<Carried>>, r: Option<&Json<Carried>>| Json(Joined { l: l.map(|c| c.0.clone()), r: r.map(|c| c.0.clone()) });
                        match (j.left.outer, j.right.outer) {
                            (false, false) => keyed.join(&other, move |l, r| pair(Some(l), Some(r)), *w),
                            (true, false) => keyed.left_join(&other, move |l, r| pair(Some(l), r), *w),
                            // RIGHT: the right stream's left join, the time bound seen from its side.
                            (false, true) => {
                                let swapped = JoinWindows::of_time_difference_and_grace(Duration::ZERO, Duration::from_millis(w.grace_ms() as u64))
                                    .before(Duration::from_millis(w.after_ms() as u64))
                                    .after(Duration::from_millis(w.before_ms() as u64));
                                other.left_join(&keyed, move |r, l| pair(l, Some(r)), swapped)
                            }
                            (true, true) => keyed.outer_join(&other, pair, *w),
                        }
                    }
                };
                joined.process(move || JoinedStage { shared: input.clone() }, &[])
            }
        }
    };
    let Some(agg) = &plan.agg else { return staged };
    let specs = Arc::new(agg.output.specs.clone());
    // The input stage's JSON goes through the repartition topic as it is and is parsed
    // once, in the aggregate step.
    let grouped = staged.map(|k: Option<String>, v: Option<Bytes>| (k.unwrap_or_default(), v.unwrap_or_default())).group_by_key();
    let out = agg.output.clone();
    let step = {
        let specs = specs.clone();
        move |_k: &_, v: Bytes, st: Json<AccState>| match serde_json::from_slice::<AggInput>(&v) {
            Ok(input) => Json(accumulate(&specs, input, st.0)),
            Err(_) => st,
        }
    };
    match agg.window {
        None => grouped
            .aggregate_with(|| Json(AccState::default()), move |k: &String, v, st| step(k, v, st), Materialized::named(store))
            .to_changelog_stream()
            .process(move || OutputStage { shared: out.clone(), session: false }, &[]),
        Some(WindowSpec::Tumble { size, grace }) | Some(WindowSpec::Hop { size, grace, .. }) => {
            let mut w = TimeWindows::of_size_with_grace(Duration::from_millis(size as u64), Duration::from_millis(grace as u64));
            if let Some(WindowSpec::Hop { advance, .. }) = agg.window {
                w = w.advance_by(Duration::from_millis(advance as u64));
            }
            grouped
                .windowed_by(w)
                .aggregate_with(|| Json(AccState::default()), move |k: &String, v, st| step(k, v, st), Materialized::named(store))
                .to_changelog_stream()
                .process(move || OutputStage { shared: out.clone(), session: false }, &[])
        }
        Some(WindowSpec::Session { gap, grace }) => {
            let w = SessionWindows::of_inactivity_gap_and_grace(Duration::from_millis(gap as u64), Duration::from_millis(grace as u64));
            let specs2 = specs.clone();
            grouped
                .windowed_by_session(w)
                .aggregate_with(
                    || Json(AccState::default()),
                    move |k: &String, v, st| step(k, v, st),
                    move |_k: &String, a: Json<AccState>, b: Json<AccState>| Json(merge_states(&specs2, a.0, b.0)),
                    Materialized::named(store),
                )
                .to_changelog_stream()
                .process(move || OutputStage { shared: out.clone(), session: true }, &[])
        }
    }
}

/// Starts a continuous query as a streams application `app_id`.
pub async fn start(plan: QueryPlan, target: Target, app_id: &str, bootstrap: &str, state_dir: PathBuf, props: &Properties) -> Result<Running> {
    let b = StreamsBuilder::new();
    let store = format!("{app_id}-store");
    let dead_letter = match &target {
        Target::Topic { dead_letter: Some(t), .. } => Some((t.as_str(), app_id)),
        _ => None,
    };
    let out = build(&plan, &b, &store, dead_letter);
    let transient = matches!(target, Target::Channel(_));
    let rows_out = Arc::new(AtomicU64::new(0));
    match target {
        Target::Topic { sink, .. } => {
            let counted = rows_out.clone();
            out.peek(move |_, _| {
                counted.fetch_add(1, Ordering::Relaxed);
            })
            .to(&sink.topic)
        }
        Target::Channel(tx) => out.foreach(move |k, v| {
            let _ = tx.send((k.clone(), v.clone()));
        }),
    }
    let topology = b.build().map_err(|e| SqlError::new(format!("cannot build the query's topology: {e}")))?;
    let mut cfg = StreamsConfig::new(app_id, bootstrap);
    cfg.state_dir = state_dir;
    let set = |cfg: &mut StreamsConfig, k: &str, v: &str| cfg.set(k, v).map(|_| ()).map_err(|e| SqlError::new(e.to_string()));
    if transient {
        set(&mut cfg, "processing.guarantee", "at_least_once")?;
        set(&mut cfg, "commit.interval.ms", "1000")?;
        set(&mut cfg, "statestore.cache.max.bytes", "0")?;
        let reset = props.get("auto.offset.reset").map(String::as_str).unwrap_or("latest");
        set(&mut cfg, "consumer.auto.offset.reset", reset)?;
    } else {
        set(&mut cfg, "processing.guarantee", "exactly_once_v2")?;
    }
    set(&mut cfg, "poll.ms", "100")?;
    // A record the query cannot read (e.g. a keyless table record) is skipped, not fatal.
    set(&mut cfg, "default.deserialization.exception.handler", "continue")?;
    let streams = KafkaStreams::start(topology, cfg).await.map_err(|e| SqlError::new(format!("cannot start the query: {e}")))?;
    let lookup = match (&plan.agg, transient) {
        (Some(agg), false) if agg.window.is_none() => Some(make_lookup(&streams, &store, agg.output.clone(), &plan)?),
        _ => None,
    };
    let streams = Arc::new(tokio::sync::Mutex::new(Some(streams)));
    Ok(Running { streams, processed: plan.input.processed.clone(), rows_out, lookup })
}

fn make_lookup(streams: &KafkaStreams, store: &str, out: Arc<OutputShared>, plan: &QueryPlan) -> Result<Lookup> {
    let kv = streams.store::<String, Json<AccState>>(store).map_err(|e| SqlError::new(e.to_string()))?;
    let sink_columns = plan.output_columns();
    let sink_schema = crate::format::full_schema(&sink_columns);
    Ok(Arc::new(move |key: &str| {
        let store_key = serde_json::to_string(&[Some(key)]).unwrap_or_default();
        let state = match kv.get(&store_key) {
            Ok(s) => s,
            // Not (yet) served here: let the scan answer.
            Err(_) => return None,
        };
        Some((|| {
            let Some(Json(st)) = state else {
                return Ok(None);
            };
            if out.retracting && st.rows <= 0 {
                return Ok(None);
            }
            let Some(row) = out.row(&st, None)? else {
                return Ok(None);
            };
            let mut cols: Vec<ArrayRef> = row.columns().iter().zip(sink_schema.fields()).map(|(c, f)| cast(c, f.data_type())).collect::<Result<_, _>>()?;
            cols.push(Arc::new(datafusion::arrow::array::StringArray::from(vec![Some(key.to_string())])));
            cols.push(Arc::new(datafusion::arrow::array::Int32Array::from(vec![None::<i32>])));
            cols.push(Arc::new(datafusion::arrow::array::Int64Array::from(vec![None::<i64>])));
            cols.push(Arc::new(TimestampMillisecondArray::from(vec![None::<i64>])));
            Ok(Some(RecordBatch::try_new(sink_schema.clone(), cols)?))
        })())
    }))
}

/// Runs `plan` as a transient query (EMIT CHANGES): a temporary application whose results
/// stream out until the returned stream is dropped; then its internal topics go too.
pub async fn transient(plan: QueryPlan, bootstrap: &str, props: &Properties) -> Result<BoxStream<'static, Result<RecordBatch>>> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let app_id = format!("_samsa_sql_transient_{}", uuid_like());
    let dir = std::env::temp_dir().join(&app_id);
    let out_schema = plan.output_schema();
    let decoder = Decoder::new(Format::Json, &plan.output_columns())?;
    let running = start(plan, Target::Channel(tx), &app_id, bootstrap, dir.clone(), props).await?;
    let guard = TransientGuard { running: Some(running), app_id, bootstrap: bootstrap.to_string(), dir };
    let stream = futures::stream::unfold((rx, guard, decoder, out_schema), |(mut rx, guard, decoder, schema)| async move {
        let first = rx.recv().await?;
        let mut recs = vec![first];
        while let Ok(r) = rx.try_recv() {
            recs.push(r);
        }
        let raw: Vec<RawRecord> = recs.into_iter().map(|(k, v)| RawRecord { key: k.map(Bytes::from), value: v, partition: 0, offset: 0, timestamp: 0 }).collect();
        let item = decoder.decode(&raw).and_then(|d| Ok(d.batch.project(&(0..schema.fields().len()).collect::<Vec<_>>())?)).and_then(|b| Ok(concat_batches(&schema, &[b])?));
        Some((item, (rx, guard, decoder, schema)))
    });
    Ok(Box::pin(stream))
}

fn uuid_like() -> String {
    use std::time::{SystemTime, UNIX_EPOCH};
    let n = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("{:x}{:04x}", n, std::process::id() & 0xffff)
}

/// Stops a transient query and removes its topics and state when its stream is dropped.
struct TransientGuard {
    running: Option<Running>,
    app_id: String,
    bootstrap: String,
    dir: PathBuf,
}

impl Drop for TransientGuard {
    fn drop(&mut self) {
        let Some(running) = self.running.take() else {
            return;
        };
        let (app, bootstrap, dir) = (self.app_id.clone(), self.bootstrap.clone(), self.dir.clone());
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                running.close().await;
                if let Ok(admin) = samsa_client::Admin::connect(&bootstrap).await {
                    if let Ok(topics) = admin.list_topics(true).await {
                        let mine: Vec<String> = topics.into_iter().filter(|t| t.starts_with(&app)).collect();
                        let _ = admin.delete_topics(&mine).await;
                    }
                    let _ = admin.delete_groups(std::slice::from_ref(&app)).await;
                }
                let _ = std::fs::remove_dir_all(dir);
            });
        }
    }
}
