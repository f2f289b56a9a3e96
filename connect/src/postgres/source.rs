//! `JdbcSourceConnector`, with Confluent's settings: new rows of PostgreSQL tables (or of
//! one query) into topics named `topic.prefix` + table.
//!
//! Modes (`mode`): `incrementing` (rows whose `incrementing.column.name` is above the last
//! one read), `timestamp` (rows whose `timestamp.column.name` is after the last one read),
//! `timestamp+incrementing` (both: catches updates, never skips rows sharing a timestamp)
//! and `bulk` (the whole table every `poll.interval.ms`). The source offset of a table is
//! the last id and/or timestamp read, so a restart resumes after it. Records have no key
//! (as Confluent's; a `ValueToKey` transform sets one) and a struct value with the row's
//! schema.

use std::time::{Duration, Instant};

use serde_json::{json, Value as Json};
use tokio_postgres::Client;

use super::{connect, get, numeric_mode, pg_error, quote_ident, quote_literal, row_schema, table_columns, text_value, Column, ConnParams, NumericMode};
use crate::api::{Connector, OffsetReader, SourceConnector, SourceRecord, SourceTask};
use crate::config::{ConfigIssue, Kind, Props, Setting};
use crate::data::{Data, Value};
use crate::{Error, Result};

/// Confluent's JDBC source, for PostgreSQL.
pub struct JdbcSource;

/// How new rows are found.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    Bulk,
    Incrementing,
    Timestamp,
    TimestampIncrementing,
}

impl Mode {
    fn parse(s: &str) -> Option<Mode> {
        match s.trim() {
            "bulk" => Some(Mode::Bulk),
            "incrementing" => Some(Mode::Incrementing),
            "timestamp" => Some(Mode::Timestamp),
            "timestamp+incrementing" => Some(Mode::TimestampIncrementing),
            _ => None,
        }
    }
    fn incrementing(self) -> bool {
        matches!(self, Mode::Incrementing | Mode::TimestampIncrementing)
    }
    fn timestamp(self) -> bool {
        matches!(self, Mode::Timestamp | Mode::TimestampIncrementing)
    }
}

/// The tables a config names (`table.whitelist` or `table.include.list`, comma-separated).
fn tables(config: &Props) -> Vec<String> {
    config
        .get("table.include.list")
        .or_else(|| config.get("table.whitelist"))
        .map(|t| t.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect())
        .unwrap_or_default()
}

impl Connector for JdbcSource {
    fn settings(&self) -> Vec<Setting> {
        let s = |name, kind, default, required, doc| Setting { name, kind, default, required, doc };
        let mut all = super::jdbc_settings();
        all.extend([
            s("mode", Kind::String, None, true, "bulk, incrementing, timestamp or timestamp+incrementing"),
            s("table.whitelist", Kind::String, None, false, "the tables to read, comma-separated"),
            s("table.include.list", Kind::String, None, false, "the tables to read, comma-separated (newer name of table.whitelist)"),
            s("query", Kind::String, None, false, "a query to read instead of tables"),
            s("incrementing.column.name", Kind::String, None, false, "a strictly increasing column (incrementing modes)"),
            s("timestamp.column.name", Kind::String, None, false, "a last-modified timestamp column (timestamp modes)"),
            s("topic.prefix", Kind::String, None, true, "prefix of the topic names (the topic itself with query)"),
            s("poll.interval.ms", Kind::Int, Some("5000"), false, "how often to look for new rows"),
            s("batch.max.rows", Kind::Int, Some("100"), false, "the most rows one poll returns"),
            s("timestamp.delay.interval.ms", Kind::Int, Some("0"), false, "how long after its timestamp a row is read (lets slow transactions commit)"),
            s("numeric.mapping", Kind::String, Some("none"), false, "numeric columns as text (none) or float64 (best_fit)"),
        ]);
        all
    }

    fn validate(&self, config: &Props) -> Vec<ConfigIssue> {
        let mut issues = super::jdbc_issues(&self.settings(), config);
        let issue = |name: &str, message: String| ConfigIssue { name: name.into(), message };
        if let Err(e) = numeric_mode(config, "numeric.mapping") {
            issues.push(e);
        }
        let mode = get(config, "mode").map(|m| (m, Mode::parse(m)));
        match mode {
            Some((m, None)) => issues.push(issue("mode", format!("mode '{m}' is not known; use bulk, incrementing, timestamp or timestamp+incrementing"))),
            Some((_, Some(mode))) => {
                if mode.incrementing() && get(config, "incrementing.column.name").is_none() {
                    issues.push(issue("incrementing.column.name", "mode incrementing needs incrementing.column.name (e.g. id)".into()));
                }
                if mode.timestamp() && get(config, "timestamp.column.name").is_none() {
                    issues.push(issue("timestamp.column.name", "a timestamp mode needs timestamp.column.name (e.g. updated_at)".into()));
                }
            }
            None => {}
        }
        match (tables(config).is_empty(), get(config, "query").is_some()) {
            (true, false) => issues.push(issue("table.whitelist", "name the tables to read (table.whitelist=orders,customers) or a query".into())),
            (false, true) => issues.push(issue("query", "set either query or table.whitelist, not both".into())),
            _ => {}
        }
        for key in ["poll.interval.ms", "batch.max.rows"] {
            if config.get(key).and_then(|v| v.trim().parse::<i64>().ok()).is_some_and(|v| v < 1) {
                issues.push(issue(key, format!("{key} must be at least 1")));
            }
        }
        issues
    }

    fn task_configs(&self, config: &Props, max_tasks: usize) -> Vec<Props> {
        let all = tables(config);
        if all.is_empty() {
            return vec![config.clone()];
        }
        let n = max_tasks.clamp(1, all.len());
        (0..n)
            .map(|i| {
                let mut c = config.clone();
                c.insert("tables".into(), all.iter().skip(i).step_by(n).cloned().collect::<Vec<_>>().join(","));
                c
            })
            .collect()
    }
}

impl SourceConnector for JdbcSource {
    fn task(&self) -> Box<dyn SourceTask> {
        Box::new(JdbcSourceTask::default())
    }
}

/// What a task knows of one table (or of the query).
#[derive(Debug)]
struct Table {
    /// The table's name, or `None` for the query.
    name: Option<String>,
    topic: String,
    columns: Vec<Column>,
    /// The last id read.
    last_id: Option<i64>,
    /// The last timestamp read, as PostgreSQL printed it.
    last_ts: Option<String>,
    /// When to look again.
    due: Instant,
}

#[derive(Default)]
struct JdbcSourceTask {
    params: Option<ConnParams>,
    client: Option<Client>,
    mode: Option<Mode>,
    query: Option<String>,
    inc_col: String,
    ts_col: String,
    batch: usize,
    interval: Duration,
    delay_ms: i64,
    numeric: Option<NumericMode>,
    tables: Vec<Table>,
    next: usize,
}

impl JdbcSourceTask {
    async fn client(&mut self) -> Result<&Client> {
        if self.client.as_ref().is_none_or(|c| c.is_closed()) {
            let params = self.params.as_ref().ok_or_else(|| Error::Task("the task was not started".into()))?;
            self.client = Some(connect(params).await?);
        }
        Ok(self.client.as_ref().expect("just connected"))
    }

    fn partition(t: &Table, query: Option<&str>) -> Json {
        match &t.name {
            Some(n) => json!({"table": n}),
            None => json!({"query": query}),
        }
    }

    /// The SQL that reads the next rows of a table: each column as text.
    fn sql(&self, t: &Table) -> String {
        let mode = self.mode.unwrap_or(Mode::Bulk);
        let select = t.columns.iter().map(|c| format!("{}::text", quote_ident(&c.name))).collect::<Vec<_>>().join(", ");
        // Columns are qualified: ORDER BY a bare name would sort by the text output column.
        let from = match (&t.name, &self.query) {
            (Some(n), _) => format!("{} AS samsa_t", quote_ident(n)),
            (None, Some(q)) => format!("({q}) AS samsa_t"),
            (None, None) => unreachable!("a table or a query"),
        };
        let (inc, ts) = (format!("samsa_t.{}", quote_ident(&self.inc_col)), format!("samsa_t.{}", quote_ident(&self.ts_col)));
        let mut conds = Vec::new();
        if mode.timestamp() {
            conds.push(format!("{ts} < now() - interval '{} milliseconds'", self.delay_ms));
        }
        let order = match mode {
            Mode::Bulk => return format!("SELECT {select} FROM {from}"),
            Mode::Incrementing => {
                if let Some(id) = t.last_id {
                    conds.push(format!("{inc} > {id}"));
                }
                inc.clone()
            }
            Mode::Timestamp => {
                if let Some(last) = &t.last_ts {
                    conds.push(format!("{ts} > {}", quote_literal(last)));
                }
                ts.clone()
            }
            Mode::TimestampIncrementing => {
                match (&t.last_ts, t.last_id) {
                    (Some(last), Some(id)) => conds.push(format!("({ts} > {l} OR ({ts} = {l} AND {inc} > {id}))", l = quote_literal(last))),
                    (Some(last), None) => conds.push(format!("{ts} > {}", quote_literal(last))),
                    _ => {}
                }
                format!("{ts}, {inc}")
            }
        };
        let filter = if conds.is_empty() { String::new() } else { format!(" WHERE {}", conds.join(" AND ")) };
        format!("SELECT {select} FROM {from}{filter} ORDER BY {order} LIMIT {}", self.batch)
    }

    /// Reads a table's next rows into records; `Ok(true)` when the batch was full.
    async fn read(&mut self, i: usize) -> Result<(Vec<SourceRecord>, bool)> {
        let sql = self.sql(&self.tables[i]);
        let what = self.tables[i].name.clone().unwrap_or_else(|| "the query".into());
        let rows = match self.client().await?.query(&sql, &[]).await {
            Ok(rows) => rows,
            Err(e) => {
                let err = pg_error(e, &format!("cannot read {what}"));
                if matches!(err, Error::Retriable(_)) {
                    self.client = None;
                }
                return Err(err);
            }
        };
        let mode = self.mode.unwrap_or(Mode::Bulk);
        let numeric = self.numeric.unwrap_or(NumericMode::String);
        let t = &mut self.tables[i];
        let full = mode != Mode::Bulk && rows.len() >= self.batch;
        let mut texts: Vec<Vec<Option<String>>> = rows.iter().map(|r| (0..t.columns.len()).map(|c| r.get::<_, Option<String>>(c)).collect()).collect();
        let ts_idx = t.columns.iter().position(|c| c.name == self.ts_col);
        let inc_idx = t.columns.iter().position(|c| c.name == self.inc_col);
        // Timestamp mode reads "after the last timestamp": a full batch whose last rows share
        // a timestamp with rows not read yet would skip those. Keep them for the next poll,
        // unless the whole batch has one timestamp.
        if mode == Mode::Timestamp && full {
            if let Some(ti) = ts_idx {
                let last = texts.last().and_then(|r| r[ti].clone());
                let keep = texts.iter().rposition(|r| r[ti] != last).map_or(texts.len(), |p| p + 1);
                texts.truncate(keep);
            }
        }
        let schema = row_schema(t.name.as_deref().unwrap_or("query"), &t.columns, numeric, false);
        let mut out = Vec::with_capacity(texts.len());
        for row in texts {
            let mut fields = Vec::with_capacity(row.len());
            for (c, text) in t.columns.iter().zip(&row) {
                fields.push((c.name.clone(), text_value(c, text.as_deref(), numeric)?));
            }
            if let Some(ii) = inc_idx.filter(|_| mode.incrementing()) {
                if let Some(Value::Int(id)) = fields.get(ii).map(|f| &f.1) {
                    t.last_id = Some(*id);
                }
            }
            if let Some(ti) = ts_idx.filter(|_| mode.timestamp()) {
                if let Some(ts) = &row[ti] {
                    t.last_ts = Some(ts.clone());
                }
            }
            let mut offset = serde_json::Map::new();
            if let Some(id) = t.last_id {
                offset.insert("incrementing".into(), json!(id));
            }
            if let Some(ts) = &t.last_ts {
                offset.insert("timestamp".into(), json!(ts));
            }
            out.push(SourceRecord {
                source_partition: Self::partition(t, self.query.as_deref()),
                source_offset: Json::Object(offset),
                topic: t.topic.clone(),
                partition: None,
                key: Data::null(),
                value: Data { schema: Some(schema.clone()), value: Value::Struct(fields) },
                timestamp: None,
                headers: Vec::new(),
            });
        }
        Ok((out, full))
    }
}

#[async_trait::async_trait]
impl SourceTask for JdbcSourceTask {
    async fn start(&mut self, config: &Props, offsets: &dyn OffsetReader) -> Result<()> {
        // A start may be tried again (the database was not reachable): begin afresh.
        self.tables.clear();
        self.params = Some(ConnParams::from_jdbc(config).map_err(|e| Error::Config(e.message))?);
        self.mode = Some(get(config, "mode").and_then(Mode::parse).ok_or_else(|| Error::Config("mode is not set".into()))?);
        self.query = get(config, "query").map(str::to_string);
        self.inc_col = get(config, "incrementing.column.name").unwrap_or_default().to_string();
        self.ts_col = get(config, "timestamp.column.name").unwrap_or_default().to_string();
        let num = |k: &str, d: u64| config.get(k).and_then(|v| v.trim().parse::<u64>().ok()).unwrap_or(d);
        self.batch = num("batch.max.rows", 100).max(1) as usize;
        self.interval = Duration::from_millis(num("poll.interval.ms", 5000).max(1));
        self.delay_ms = num("timestamp.delay.interval.ms", 0) as i64;
        self.numeric = Some(numeric_mode(config, "numeric.mapping").map_err(|e| Error::Config(e.message))?);
        let prefix = get(config, "topic.prefix").unwrap_or_default().to_string();
        let names: Vec<Option<String>> = match get(config, "tables") {
            Some(t) => t.split(',').map(|s| Some(s.trim().to_string())).collect(),
            None if self.query.is_some() => vec![None],
            None => tables(config).into_iter().map(Some).collect(),
        };
        for name in names {
            let columns = match &name {
                Some(n) => table_columns(self.client().await?, n).await?,
                None => {
                    let q = format!("SELECT * FROM ({}) AS samsa_query LIMIT 0", self.query.as_deref().unwrap_or_default());
                    let stmt = self.client().await?.prepare(&q).await.map_err(|e| pg_error(e, "the query does not run"))?;
                    stmt.columns().iter().map(|c| Column { name: c.name().to_string(), type_oid: c.type_().oid(), nullable: true, key: false }).collect()
                }
            };
            if columns.is_empty() {
                return Err(Error::Config(format!("table {} has no columns", name.as_deref().unwrap_or("(query)"))));
            }
            let mode = self.mode.unwrap_or(Mode::Bulk);
            for (needed, col, key) in [(mode.incrementing(), &self.inc_col, "incrementing.column.name"), (mode.timestamp(), &self.ts_col, "timestamp.column.name")] {
                if needed && !columns.iter().any(|c| &c.name == col) {
                    let names: Vec<&str> = columns.iter().map(|c| c.name.as_str()).collect();
                    return Err(Error::Config(format!("{key}={col}, but {} has no such column; it has {}", name.as_deref().unwrap_or("the query"), names.join(", "))));
                }
            }
            let topic = match &name {
                Some(n) => format!("{prefix}{}", n.rsplit('.').next().unwrap_or(n)),
                None => prefix.clone(),
            };
            let mut t = Table { name, topic, columns, last_id: None, last_ts: None, due: Instant::now() };
            if let Some(off) = offsets.offset(&Self::partition(&t, self.query.as_deref())) {
                t.last_id = off.get("incrementing").and_then(Json::as_i64);
                t.last_ts = off.get("timestamp").and_then(Json::as_str).map(str::to_string);
                tracing::info!(table = ?t.name, offset = %off, "resuming after the stored offset");
            }
            self.tables.push(t);
        }
        Ok(())
    }

    async fn poll(&mut self) -> Result<Vec<SourceRecord>> {
        loop {
            let now = Instant::now();
            let n = self.tables.len();
            for k in 0..n {
                let i = (self.next + k) % n;
                if self.tables[i].due > now {
                    continue;
                }
                let (records, full) = self.read(i).await?;
                self.tables[i].due = if full { now } else { now + self.interval };
                self.next = (i + 1) % n;
                if !records.is_empty() {
                    return Ok(records);
                }
            }
            let wake = self.tables.iter().map(|t| t.due).min().unwrap_or(now + self.interval);
            tokio::time::sleep_until(wake.into()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(mode: Mode) -> (JdbcSourceTask, Table) {
        let col = |name: &str, type_oid| Column { name: name.into(), type_oid, nullable: false, key: false };
        let t = JdbcSourceTask { mode: Some(mode), inc_col: "id".into(), ts_col: "updated".into(), batch: 100, ..Default::default() };
        let table =
            Table { name: Some("orders".into()), topic: "pg-orders".into(), columns: vec![col("id", 20), col("updated", 1184)], last_id: None, last_ts: None, due: Instant::now() };
        (t, table)
    }

    #[test]
    fn queries_order_by_the_typed_columns_and_resume_after_the_offset() {
        let (t, mut table) = task(Mode::Incrementing);
        assert_eq!(t.sql(&table), r#"SELECT "id"::text, "updated"::text FROM "orders" AS samsa_t ORDER BY samsa_t."id" LIMIT 100"#);
        table.last_id = Some(41);
        assert!(t.sql(&table).contains(r#"WHERE samsa_t."id" > 41 ORDER BY samsa_t."id""#), "{}", t.sql(&table));
        let (t, mut table) = task(Mode::TimestampIncrementing);
        table.last_id = Some(7);
        table.last_ts = Some("2026-01-01 00:00:00+00".into());
        let sql = t.sql(&table);
        assert!(
            sql.contains(r#"(samsa_t."updated" > '2026-01-01 00:00:00+00' OR (samsa_t."updated" = '2026-01-01 00:00:00+00' AND samsa_t."id" > 7))"#)
                && sql.contains(r#"samsa_t."updated" < now() - interval '0 milliseconds'"#)
                && sql.ends_with(r#"ORDER BY samsa_t."updated", samsa_t."id" LIMIT 100"#),
            "{sql}"
        );
        let (t, table) = task(Mode::Bulk);
        assert_eq!(t.sql(&table), r#"SELECT "id"::text, "updated"::text FROM "orders" AS samsa_t"#);
    }

    #[test]
    fn config_errors_name_each_setting() {
        let p: Props = [("connection.url", "jdbc:postgresql://h/db"), ("mode", "timestamp+incrementing"), ("topic.prefix", "pg-")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let names: Vec<String> = JdbcSource.validate(&p).into_iter().map(|i| i.name).collect();
        assert_eq!(names, vec!["incrementing.column.name", "timestamp.column.name", "table.whitelist"]);
        let mut p = p;
        p.insert("table.whitelist".into(), "a, b, c".into());
        let split = JdbcSource.task_configs(&p, 2);
        assert_eq!(split.iter().map(|c| c["tables"].as_str()).collect::<Vec<_>>(), vec!["a,c", "b"]);
    }
}
