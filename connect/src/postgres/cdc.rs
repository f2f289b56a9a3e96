//! `PostgresConnector`, with Debezium's class name and settings: change data capture from
//! a logical replication slot decoded by PostgreSQL's built-in `pgoutput` plugin.
//!
//! Each row change becomes a Debezium-style change event on topic
//! `{topic.prefix}.{schema}.{table}`: the key is a struct of the primary-key columns; the
//! value is the envelope `{before, after, source, op, ts_ms}` with `op` `c` (insert), `u`
//! (update), `d` (delete) or `r` (a row read by the initial snapshot). A delete is followed
//! by a tombstone (the key with a null value) unless `tombstones.on.delete=false`, so a
//! compacted topic forgets the row. `before` holds the old row when the table's replica
//! identity gives it (`REPLICA IDENTITY FULL`), else the key columns of a delete.
//!
//! Reading: the task peeks at the slot (`pg_logical_slot_peek_binary_changes`), which
//! returns whole committed transactions in commit order. The source offset of an event is
//! its transaction's commit LSN and its index in the transaction, so a restart skips what
//! was written and resumes mid-transaction if need be. Once the worker has stored the
//! offsets, the task advances the slot to the last transaction it finished, so PostgreSQL
//! can recycle the WAL. An acknowledged change is never lost; a change may be written
//! twice after a crash (at least once), as with Debezium.
//!
//! `snapshot.mode=initial` (the default) first writes every existing row of the captured
//! tables as `r` events (after creating the slot, so no change is missed; a row changed
//! while the snapshot runs may also arrive as a change).

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use regex_lite::Regex;
use serde_json::{json, Value as Json};
use tokio_postgres::Client;

use super::{connect, get, numeric_mode, pg_error, quote_ident, quote_literal, row_schema, table_columns, text_value, Column, ConnParams, NumericMode};
use crate::api::{Connector, OffsetReader, SourceConnector, SourceRecord, SourceTask};
use crate::config::{ConfigIssue, Kind, Props, Setting};
use crate::data::{Data, Schema, Value};
use crate::{Error, Result};

/// Debezium's PostgreSQL connector (pgoutput only).
pub struct PostgresCdc;

/// Microseconds between 1970-01-01 and 2000-01-01 (PostgreSQL's epoch).
const PG_EPOCH_MS: i64 = 946_684_800_000;

/// What Debezium writes for a TOASTed value an update did not change.
const UNAVAILABLE: &str = "__debezium_unavailable_value";

/// `topic.prefix`, or Debezium 1.x's `database.server.name`.
fn prefix(config: &Props) -> Option<&str> {
    get(config, "topic.prefix").or_else(|| get(config, "database.server.name"))
}

/// The include patterns of `table.include.list` (anchored, as Debezium's).
fn include_patterns(config: &Props) -> std::result::Result<Vec<Regex>, String> {
    get(config, "table.include.list")
        .map(|l| l.split(',').map(str::trim).filter(|p| !p.is_empty()).map(|p| Regex::new(&format!("^(?:{p})$")).map_err(|e| format!("'{p}' is not a pattern: {e}"))).collect())
        .unwrap_or(Ok(Vec::new()))
}

impl Connector for PostgresCdc {
    fn settings(&self) -> Vec<Setting> {
        let s = |name, kind, default, required, doc| Setting { name, kind, default, required, doc };
        vec![
            s("database.hostname", Kind::String, None, true, "the PostgreSQL server's host"),
            s("database.port", Kind::Int, Some("5432"), false, "its port"),
            s("database.user", Kind::String, Some("postgres"), false, "a user with the REPLICATION attribute"),
            s("database.password", Kind::String, None, false, "the user's password"),
            s("database.dbname", Kind::String, None, true, "the database to capture"),
            s("topic.prefix", Kind::String, None, false, "the topics' prefix: {prefix}.{schema}.{table}"),
            s("database.server.name", Kind::String, None, false, "the older name of topic.prefix"),
            s("plugin.name", Kind::String, Some("pgoutput"), false, "the logical decoding plugin (pgoutput)"),
            s("slot.name", Kind::String, Some("debezium"), false, "the replication slot"),
            s("slot.drop.on.stop", Kind::Bool, Some("false"), false, "drop the slot when the task stops"),
            s("publication.name", Kind::String, Some("dbz_publication"), false, "the publication the slot decodes"),
            s("publication.autocreate.mode", Kind::String, Some("all_tables"), false, "create a missing publication: all_tables, filtered or disabled"),
            s("table.include.list", Kind::String, None, false, "the tables to capture: schema.table patterns, comma-separated"),
            s("snapshot.mode", Kind::String, Some("initial"), false, "initial (existing rows first) or no_data (changes only)"),
            s("tombstones.on.delete", Kind::Bool, Some("true"), false, "follow a delete with a tombstone"),
            s("decimal.handling.mode", Kind::String, Some("string"), false, "numeric columns as string or double"),
            s("max.batch.size", Kind::Int, Some("2048"), false, "the most changes one poll reads"),
            s("poll.interval.ms", Kind::Int, Some("500"), false, "how long to wait when there is no change"),
        ]
    }

    fn validate(&self, config: &Props) -> Vec<ConfigIssue> {
        let mut issues = crate::config::validate(&self.settings(), config);
        let issue = |name: &str, message: String| ConfigIssue { name: name.into(), message };
        if prefix(config).is_none() {
            issues.push(issue("topic.prefix", "missing required setting topic.prefix (the topics are {prefix}.{schema}.{table})".into()));
        }
        if let Err(e) = ConnParams::from_debezium(config) {
            issues.push(e);
        }
        if let Some(p) = get(config, "plugin.name").filter(|p| *p != "pgoutput") {
            issues.push(issue("plugin.name", format!("plugin.name '{p}' is not supported; Samsa decodes pgoutput, which PostgreSQL 10+ has built in")));
        }
        if let Some(m) = get(config, "publication.autocreate.mode").filter(|m| !["all_tables", "filtered", "disabled"].contains(m)) {
            issues.push(issue("publication.autocreate.mode", format!("publication.autocreate.mode '{m}' is not known; use all_tables, filtered or disabled")));
        }
        if let Some(m) = get(config, "snapshot.mode").filter(|m| !["initial", "never", "no_data"].contains(m)) {
            issues.push(issue("snapshot.mode", format!("snapshot.mode '{m}' is not supported; use initial or no_data")));
        }
        if let Err(e) = numeric_mode(config, "decimal.handling.mode") {
            issues.push(e);
        }
        if let Err(e) = include_patterns(config) {
            issues.push(issue("table.include.list", e));
        }
        if get(config, "publication.autocreate.mode") == Some("filtered") && get(config, "table.include.list").is_none() {
            issues.push(issue("table.include.list", "publication.autocreate.mode=filtered needs table.include.list".into()));
        }
        issues
    }

    fn task_configs(&self, config: &Props, _max_tasks: usize) -> Vec<Props> {
        // One slot, one reader: a single task, as Debezium's.
        vec![config.clone()]
    }
}

impl SourceConnector for PostgresCdc {
    fn task(&self) -> Box<dyn SourceTask> {
        Box::new(CdcTask::default())
    }
}

/// A table as the decoder saw it.
#[derive(Debug, Clone)]
struct Relation {
    schema: String,
    table: String,
    columns: Vec<Column>,
}

/// One column of a decoded row.
#[derive(Debug, Clone, PartialEq)]
enum Cell {
    Null,
    /// A TOASTed value the change did not touch.
    Unchanged,
    Text(String),
}

/// A pgoutput message (protocol version 1).
#[derive(Debug, Clone, PartialEq)]
enum Msg {
    Begin { xid: u32, commit_ts_ms: i64 },
    Commit { end_lsn: u64 },
    Relation { oid: u32, schema: String, table: String, columns: Vec<(String, u32, bool)> },
    Insert { rel: u32, new: Vec<Cell> },
    Update { rel: u32, old: Option<Vec<Cell>>, new: Vec<Cell> },
    Delete { rel: u32, old: Vec<Cell> },
    Other,
}

struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let s = self.b.get(self.pos..self.pos + n).ok_or_else(|| Error::Data("a pgoutput message ends early".into()))?;
        self.pos += n;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn i16(&mut self) -> Result<i16> {
        Ok(i16::from_be_bytes(self.take(2)?.try_into().expect("2 bytes")))
    }
    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_be_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }
    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_be_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }
    fn cstr(&mut self) -> Result<String> {
        let end = self.b[self.pos..].iter().position(|c| *c == 0).ok_or_else(|| Error::Data("a pgoutput string has no end".into()))?;
        let s = String::from_utf8_lossy(&self.b[self.pos..self.pos + end]).into_owned();
        self.pos += end + 1;
        Ok(s)
    }
    fn tuple(&mut self) -> Result<Vec<Cell>> {
        let n = self.i16()?.max(0) as usize;
        let mut cells = Vec::with_capacity(n);
        for _ in 0..n {
            cells.push(match self.u8()? {
                b'n' => Cell::Null,
                b'u' => Cell::Unchanged,
                b't' | b'b' => {
                    let len = self.u32()? as usize;
                    Cell::Text(String::from_utf8_lossy(self.take(len)?).into_owned())
                }
                k => return Err(Error::Data(format!("unknown pgoutput column kind '{}'", k as char))),
            });
        }
        Ok(cells)
    }
}

/// Decodes one pgoutput message.
fn decode(b: &[u8]) -> Result<Msg> {
    let mut r = Reader { b, pos: 1 };
    Ok(match b.first() {
        Some(b'B') => {
            let _final_lsn = r.u64()?;
            let ts = r.u64()? as i64;
            Msg::Begin { commit_ts_ms: ts / 1000 + PG_EPOCH_MS, xid: r.u32()? }
        }
        Some(b'C') => {
            let _flags = r.u8()?;
            let _commit_lsn = r.u64()?;
            Msg::Commit { end_lsn: r.u64()? }
        }
        Some(b'R') => {
            let oid = r.u32()?;
            let schema = r.cstr()?;
            let table = r.cstr()?;
            let _identity = r.u8()?;
            let n = r.i16()?.max(0);
            let mut columns = Vec::with_capacity(n as usize);
            for _ in 0..n {
                let flags = r.u8()?;
                let name = r.cstr()?;
                let type_oid = r.u32()?;
                let _typmod = r.u32()?;
                columns.push((name, type_oid, flags & 1 == 1));
            }
            Msg::Relation { oid, schema, table, columns }
        }
        Some(b'I') => {
            let rel = r.u32()?;
            let _n = r.u8()?;
            Msg::Insert { rel, new: r.tuple()? }
        }
        Some(b'U') => {
            let rel = r.u32()?;
            let (old, new) = match r.u8()? {
                b'K' | b'O' => {
                    let old = r.tuple()?;
                    let _n = r.u8()?;
                    (Some(old), r.tuple()?)
                }
                _ => (None, r.tuple()?),
            };
            Msg::Update { rel, old, new }
        }
        Some(b'D') => {
            let rel = r.u32()?;
            let _k = r.u8()?;
            Msg::Delete { rel, old: r.tuple()? }
        }
        _ => Msg::Other,
    })
}

/// A number as PostgreSQL's LSN text (`X/Y`).
fn lsn_text(lsn: u64) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xffff_ffff)
}

#[derive(Default)]
struct CdcTask {
    params: Option<ConnParams>,
    client: Option<Client>,
    prefix: String,
    slot: String,
    publication: String,
    include: Vec<Regex>,
    tombstones: bool,
    numeric: Option<NumericMode>,
    batch: usize,
    idle: Duration,
    drop_slot: bool,
    relations: HashMap<u32, Relation>,
    /// Primary-key columns by table OID.
    primary_keys: HashMap<u32, Vec<String>>,
    /// Snapshot records still to hand out.
    snapshot: VecDeque<SourceRecord>,
    /// The last event handed out: (commit LSN, index in its transaction).
    done: (u64, i64),
    /// The slot's position as last advanced.
    advanced: u64,
}

/// A transaction being decoded.
struct Tx {
    xid: u32,
    ts_ms: i64,
    /// Events: (topic, key, value).
    events: Vec<(String, Data, Data)>,
}

impl CdcTask {
    async fn client(&mut self) -> Result<&Client> {
        if self.client.as_ref().is_none_or(|c| c.is_closed()) {
            let params = self.params.as_ref().ok_or_else(|| Error::Task("the task was not started".into()))?;
            self.client = Some(connect(params).await?);
        }
        Ok(self.client.as_ref().expect("just connected"))
    }

    fn captured(&self, schema: &str, table: &str) -> bool {
        let name = format!("{schema}.{table}");
        self.include.is_empty() || self.include.iter().any(|p| p.is_match(&name))
    }

    fn partition(&self) -> Json {
        json!({"server": self.prefix})
    }

    fn numeric(&self) -> NumericMode {
        self.numeric.unwrap_or(NumericMode::String)
    }

    /// A row (columns and cells) as a struct value.
    fn row(&self, rel: &Relation, cells: &[Cell]) -> Result<Value> {
        let mut fields = Vec::with_capacity(rel.columns.len());
        for (c, cell) in rel.columns.iter().zip(cells) {
            let v = match cell {
                Cell::Null => Value::Null,
                Cell::Unchanged => match text_value(c, Some(""), self.numeric()) {
                    Ok(Value::String(_)) => Value::String(UNAVAILABLE.into()),
                    _ => Value::Null,
                },
                Cell::Text(t) => text_value(c, Some(t), self.numeric())?,
            };
            fields.push((c.name.clone(), v));
        }
        Ok(Value::Struct(fields))
    }

    fn key_schema(&self, rel: &Relation) -> Option<Schema> {
        let keys: Vec<Column> = rel.columns.iter().filter(|c| c.key).cloned().map(|c| Column { nullable: false, ..c }).collect();
        (!keys.is_empty()).then(|| row_schema(&format!("{}.{}.{}.Key", self.prefix, rel.schema, rel.table), &keys, self.numeric(), false))
    }

    /// The key of a row: its key columns (none: a null key).
    fn key(&self, rel: &Relation, row: &Value) -> Data {
        let Some(schema) = self.key_schema(rel) else { return Data::null() };
        let Value::Struct(fields) = row else { return Data::null() };
        let keys = fields.iter().zip(&rel.columns).filter(|(_, c)| c.key).map(|(f, _)| f.clone()).collect();
        Data { schema: Some(schema), value: Value::Struct(keys) }
    }

    fn envelope_schema(&self, rel: &Relation) -> Schema {
        let base = format!("{}.{}.{}", self.prefix, rel.schema, rel.table);
        let mut row = row_schema(&format!("{base}.Value"), &rel.columns, self.numeric(), true);
        let field = |mut s: Schema, name: &str| {
            s["field"] = json!(name);
            s
        };
        let source = json!({"type": "struct", "name": "io.debezium.connector.postgresql.Source", "optional": false, "field": "source", "fields": [
            {"field": "version", "type": "string", "optional": false},
            {"field": "connector", "type": "string", "optional": false},
            {"field": "name", "type": "string", "optional": false},
            {"field": "ts_ms", "type": "int64", "optional": false},
            {"field": "snapshot", "type": "string", "optional": true},
            {"field": "db", "type": "string", "optional": false},
            {"field": "schema", "type": "string", "optional": false},
            {"field": "table", "type": "string", "optional": false},
            {"field": "txId", "type": "int64", "optional": true},
            {"field": "lsn", "type": "int64", "optional": true},
        ]});
        row["optional"] = json!(true);
        json!({"type": "struct", "name": format!("{base}.Envelope"), "optional": false, "fields": [
            field(row.clone(), "before"),
            field(row, "after"),
            source,
            {"field": "op", "type": "string", "optional": false},
            {"field": "ts_ms", "type": "int64", "optional": true},
        ]})
    }

    /// A change event: (topic, key, value).
    fn event(&self, rel: &Relation, op: &str, before: Value, after: Value, source: (i64, Option<u32>, Option<u64>, &str)) -> (String, Data, Data) {
        let (ts_ms, xid, lsn, snapshot) = source;
        let key = self.key(rel, if after == Value::Null { &before } else { &after });
        let src = Value::Struct(vec![
            ("version".into(), Value::String(env!("CARGO_PKG_VERSION").into())),
            ("connector".into(), Value::String("postgresql".into())),
            ("name".into(), Value::String(self.prefix.clone())),
            ("ts_ms".into(), Value::Int(ts_ms)),
            ("snapshot".into(), Value::String(snapshot.into())),
            ("db".into(), Value::String(self.params.as_ref().map(|p| p.dbname.clone()).unwrap_or_default())),
            ("schema".into(), Value::String(rel.schema.clone())),
            ("table".into(), Value::String(rel.table.clone())),
            ("txId".into(), xid.map_or(Value::Null, |x| Value::Int(x.into()))),
            ("lsn".into(), lsn.map_or(Value::Null, |l| Value::Int(l as i64))),
        ]);
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
        let value = Value::Struct(vec![
            ("before".into(), before),
            ("after".into(), after),
            ("source".into(), src),
            ("op".into(), Value::String(op.into())),
            ("ts_ms".into(), Value::Int(now)),
        ]);
        (format!("{}.{}.{}", self.prefix, rel.schema, rel.table), key, Data { schema: Some(self.envelope_schema(rel)), value })
    }

    /// Events for one decoded change.
    fn change(&self, msg: &Msg, tx: &Tx) -> Result<Vec<(String, Data, Data)>> {
        let rel_of = |oid: &u32| self.relations.get(oid).ok_or_else(|| Error::Data(format!("a change of relation {oid} came before its description")));
        let src = |lsn| (tx.ts_ms, Some(tx.xid), lsn, "false");
        let mut out = Vec::new();
        match msg {
            Msg::Insert { rel, new } => {
                let r = rel_of(rel)?;
                if self.captured(&r.schema, &r.table) {
                    out.push(self.event(r, "c", Value::Null, self.row(r, new)?, src(None)));
                }
            }
            Msg::Update { rel, old, new } => {
                let r = rel_of(rel)?;
                if self.captured(&r.schema, &r.table) {
                    let after = self.row(r, new)?;
                    let before = old.as_ref().map(|o| self.row(r, o)).transpose()?.unwrap_or(Value::Null);
                    let old_key = self.key(r, &before);
                    if before != Value::Null && old_key.value != Value::Null && old_key != self.key(r, &after) {
                        // The key changed: a delete of the old key, then a create (Debezium).
                        out.push(self.event(r, "d", before, Value::Null, src(None)));
                        if self.tombstones {
                            out.push((out[0].0.clone(), old_key, Data::null()));
                        }
                        out.push(self.event(r, "c", Value::Null, after, src(None)));
                    } else {
                        out.push(self.event(r, "u", before, after, src(None)));
                    }
                }
            }
            Msg::Delete { rel, old } => {
                let r = rel_of(rel)?;
                if self.captured(&r.schema, &r.table) {
                    let before = self.row(r, old)?;
                    let e = self.event(r, "d", before, Value::Null, src(None));
                    let tomb = (e.0.clone(), e.1.clone(), Data::null());
                    out.push(e);
                    if self.tombstones {
                        out.push(tomb);
                    }
                }
            }
            _ => {}
        }
        Ok(out)
    }

    /// Makes sure the publication and the slot exist; `true` when the slot is new.
    async fn prepare(&mut self, config: &Props) -> Result<bool> {
        let (slot, publication) = (self.slot.clone(), self.publication.clone());
        let c = self.client().await?;
        let wal: String = c.query_one("SHOW wal_level", &[]).await.map_err(|e| pg_error(e, "cannot read wal_level"))?.get(0);
        if wal != "logical" {
            return Err(Error::Config(format!(
                "PostgreSQL's wal_level is {wal}; change data capture needs wal_level = logical (set it in postgresql.conf and restart PostgreSQL)"
            )));
        }
        let has_pub = !c
            .query(&format!("SELECT 1 FROM pg_publication WHERE pubname = {}", quote_literal(&publication)), &[])
            .await
            .map_err(|e| pg_error(e, "cannot list publications"))?
            .is_empty();
        if !has_pub {
            let sql = match get(config, "publication.autocreate.mode").unwrap_or("all_tables") {
                "disabled" => {
                    return Err(Error::Config(format!(
                        "publication {publication} does not exist, and publication.autocreate.mode=disabled; create it (CREATE PUBLICATION {publication} FOR TABLE ...)"
                    )))
                }
                "filtered" => {
                    let rows = c.query("SELECT schemaname::text, tablename::text FROM pg_tables", &[]).await.map_err(|e| pg_error(e, "cannot list tables"))?;
                    let tables: Vec<String> = rows
                        .iter()
                        .map(|r| (r.get::<_, String>(0), r.get::<_, String>(1)))
                        .filter(|(s, t)| self.captured(s, t))
                        .map(|(s, t)| quote_ident(&format!("{s}.{t}")))
                        .collect();
                    if tables.is_empty() {
                        return Err(Error::Config("table.include.list matches no table; nothing to capture".into()));
                    }
                    format!("CREATE PUBLICATION {} FOR TABLE {}", quote_ident(&publication), tables.join(", "))
                }
                _ => format!("CREATE PUBLICATION {} FOR ALL TABLES", quote_ident(&publication)),
            };
            let c = self.client().await?;
            c.batch_execute(&sql).await.map_err(|e| pg_error(e, &format!("cannot create publication {publication}")))?;
            tracing::info!(publication = %publication, "created the publication");
        }
        let c = self.client().await?;
        let slots = c
            .query(&format!("SELECT plugin::text, database::text FROM pg_replication_slots WHERE slot_name = {}", quote_literal(&slot)), &[])
            .await
            .map_err(|e| pg_error(e, "cannot list replication slots"))?;
        if let Some(row) = slots.first() {
            let (plugin, db): (Option<String>, Option<String>) = (row.get(0), row.get(1));
            let want = self.params.as_ref().map(|p| p.dbname.clone());
            if plugin.as_deref() != Some("pgoutput") || db != want {
                return Err(Error::Config(format!(
                    "replication slot {slot} exists for plugin {} on database {}; choose another slot.name",
                    plugin.unwrap_or_default(),
                    db.unwrap_or_default()
                )));
            }
            return Ok(false);
        }
        c.query(&format!("SELECT pg_create_logical_replication_slot({}, 'pgoutput')", quote_literal(&slot)), &[])
            .await
            .map_err(|e| pg_error(e, &format!("cannot create replication slot {slot} (the user needs the REPLICATION attribute)")))?;
        tracing::info!(slot = %slot, "created the replication slot");
        Ok(true)
    }

    /// Reads every row of the captured tables as `r` events.
    async fn take_snapshot(&mut self) -> Result<()> {
        let sql = format!("SELECT schemaname::text, tablename::text FROM pg_publication_tables WHERE pubname = {} ORDER BY 1, 2", quote_literal(&self.publication));
        let rows = self.client().await?.query(&sql, &[]).await.map_err(|e| pg_error(e, "cannot list the publication's tables"))?;
        let tables: Vec<(String, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).filter(|(s, t): &(String, String)| self.captured(s, t)).collect();
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
        for (schema, table) in tables {
            let full = format!("{schema}.{table}");
            let columns = table_columns(self.client().await?, &full).await?;
            let select = columns.iter().map(|c| format!("{}::text", quote_ident(&c.name))).collect::<Vec<_>>().join(", ");
            let rows =
                self.client().await?.query(&format!("SELECT {select} FROM {}", quote_ident(&full)), &[]).await.map_err(|e| pg_error(e, &format!("cannot read table {full}")))?;
            let rel = Relation { schema, table, columns };
            for row in rows {
                let cells: Vec<Cell> = (0..rel.columns.len()).map(|i| row.get::<_, Option<String>>(i).map_or(Cell::Null, Cell::Text)).collect();
                let after = self.row(&rel, &cells)?;
                let (topic, key, value) = self.event(&rel, "r", Value::Null, after, (now, None, None, "true"));
                self.snapshot.push_back(self.record(topic, key, value, json!({"snapshot": true}), None));
            }
            tracing::info!(table = %full, rows = self.snapshot.len(), "snapshot read");
        }
        // The last snapshot record's offset says the snapshot is complete.
        if let Some(last) = self.snapshot.back_mut() {
            last.source_offset = json!({"lsn": 0, "seq": -1});
        }
        Ok(())
    }

    fn record(&self, topic: String, key: Data, value: Data, offset: Json, ts: Option<i64>) -> SourceRecord {
        SourceRecord { source_partition: self.partition(), source_offset: offset, topic, partition: None, key, value, timestamp: ts, headers: Vec::new() }
    }

    /// The primary-key columns of a table (none when it has no primary key).
    async fn primary_key(&mut self, oid: u32) -> Result<Vec<String>> {
        if let Some(pk) = self.primary_keys.get(&oid) {
            return Ok(pk.clone());
        }
        let sql = format!(
            "SELECT a.attname::text FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) WHERE i.indrelid = {oid} AND i.indisprimary"
        );
        let rows = self.client().await?.query(&sql, &[]).await.map_err(|e| pg_error(e, "cannot read a table's primary key"))?;
        let pk: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
        self.primary_keys.insert(oid, pk.clone());
        Ok(pk)
    }

    /// Decodes the slot's next transactions into records.
    async fn changes(&mut self) -> Result<Vec<SourceRecord>> {
        let sql = format!(
            "SELECT data FROM pg_logical_slot_peek_binary_changes({}, NULL, {}, 'proto_version', '1', 'publication_names', {})",
            quote_literal(&self.slot),
            self.batch,
            quote_literal(&self.publication)
        );
        let rows = match self.client().await?.query(&sql, &[]).await {
            Ok(rows) => rows,
            Err(e) => {
                let err = pg_error(e, &format!("cannot read replication slot {}", self.slot));
                if matches!(err, Error::Retriable(_)) {
                    self.client = None;
                }
                return Err(err);
            }
        };
        let mut out = Vec::new();
        let mut tx: Option<Tx> = None;
        for row in rows {
            let data: Vec<u8> = row.get(0);
            let msg = decode(&data)?;
            match msg {
                Msg::Begin { xid, commit_ts_ms } => tx = Some(Tx { xid, ts_ms: commit_ts_ms, events: Vec::new() }),
                Msg::Relation { oid, schema, table, columns } => {
                    // The key is the primary key; pgoutput flags the replica identity,
                    // which is every column under REPLICA IDENTITY FULL.
                    let pk = self.primary_key(oid).await?;
                    let columns = columns
                        .into_iter()
                        .map(|(name, type_oid, identity)| {
                            let key = if pk.is_empty() { identity } else { pk.contains(&name) };
                            Column { name, type_oid, nullable: !key, key }
                        })
                        .collect();
                    self.relations.insert(oid, Relation { schema, table, columns });
                }
                Msg::Commit { end_lsn } => {
                    let Some(t) = tx.take() else { continue };
                    for (seq, (topic, key, mut value)) in t.events.into_iter().enumerate() {
                        let seq = seq as i64;
                        if (end_lsn, seq) <= self.done {
                            continue;
                        }
                        if let Value::Struct(fields) = &mut value.value {
                            if let Some((_, Value::Struct(src))) = fields.iter_mut().find(|f| f.0 == "source") {
                                if let Some(l) = src.iter_mut().find(|f| f.0 == "lsn") {
                                    l.1 = Value::Int(end_lsn as i64);
                                }
                            }
                        }
                        out.push(self.record(topic, key, value, json!({"lsn": end_lsn, "seq": seq, "txId": t.xid}), Some(t.ts_ms)));
                        self.done = (end_lsn, seq);
                    }
                }
                Msg::Other => {}
                change => {
                    if let Some(t) = &tx {
                        let events = self.change(&change, t)?;
                        tx.as_mut().expect("in a transaction").events.extend(events);
                    }
                }
            }
        }
        Ok(out)
    }
}

#[async_trait::async_trait]
impl SourceTask for CdcTask {
    async fn start(&mut self, config: &Props, offsets: &dyn OffsetReader) -> Result<()> {
        // A start may be tried again (the database was not reachable): begin afresh.
        self.snapshot.clear();
        self.relations.clear();
        self.params = Some(ConnParams::from_debezium(config).map_err(|e| Error::Config(e.message))?);
        self.prefix = prefix(config).unwrap_or_default().to_string();
        self.slot = get(config, "slot.name").unwrap_or("debezium").to_string();
        self.publication = get(config, "publication.name").unwrap_or("dbz_publication").to_string();
        self.include = include_patterns(config).map_err(Error::Config)?;
        self.tombstones = get(config, "tombstones.on.delete").is_none_or(|v| v.eq_ignore_ascii_case("true"));
        self.numeric = Some(numeric_mode(config, "decimal.handling.mode").map_err(|e| Error::Config(e.message))?);
        self.batch = get(config, "max.batch.size").and_then(|v| v.parse().ok()).unwrap_or(2048).max(1);
        self.idle = Duration::from_millis(get(config, "poll.interval.ms").and_then(|v| v.parse().ok()).unwrap_or(500));
        self.drop_slot = get(config, "slot.drop.on.stop").is_some_and(|v| v.eq_ignore_ascii_case("true"));
        let created = self.prepare(config).await?;
        let stored = offsets.offset(&self.partition());
        let resume = stored.as_ref().filter(|o| o.get("snapshot").is_none()).and_then(|o| Some((o.get("lsn")?.as_u64()?, o.get("seq")?.as_i64()?)));
        match resume {
            Some(done) => {
                self.done = done;
                tracing::info!(slot = %self.slot, lsn = %lsn_text(done.0), "resuming after the stored offset");
            }
            None if get(config, "snapshot.mode").unwrap_or("initial") == "initial" => {
                if !created && stored.is_none() {
                    tracing::warn!(slot = %self.slot, "the slot exists but no offset is stored; taking a new snapshot");
                }
                self.take_snapshot().await?;
            }
            None => {}
        }
        Ok(())
    }

    async fn poll(&mut self) -> Result<Vec<SourceRecord>> {
        if !self.snapshot.is_empty() {
            let n = self.snapshot.len().min(self.batch);
            return Ok(self.snapshot.drain(..n).collect());
        }
        loop {
            let records = self.changes().await?;
            if !records.is_empty() {
                return Ok(records);
            }
            tokio::time::sleep(self.idle).await;
        }
    }

    async fn commit(&mut self) -> Result<()> {
        // Every record handed out has its offset stored: the slot may forget what came
        // before the last finished transaction.
        let upto = self.done.0;
        if upto <= self.advanced || !self.snapshot.is_empty() {
            return Ok(());
        }
        let sql = format!("SELECT pg_replication_slot_advance({}, {}::pg_lsn)", quote_literal(&self.slot), quote_literal(&lsn_text(upto)));
        match self.client().await?.query(&sql, &[]).await {
            Ok(_) => self.advanced = upto,
            // The slot may already be past it (e.g. after a restart); nothing to do then.
            Err(e) => tracing::debug!(slot = %self.slot, error = %e, "the slot was not advanced"),
        }
        Ok(())
    }

    async fn stop(&mut self) -> Result<()> {
        if self.drop_slot {
            let sql = format!("SELECT pg_drop_replication_slot({})", quote_literal(&self.slot));
            if let Err(e) = self.client().await?.query(&sql, &[]).await {
                tracing::warn!(slot = %self.slot, error = %e, "cannot drop the replication slot");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tuple(cells: &[Option<&str>]) -> Vec<u8> {
        let mut b = (cells.len() as i16).to_be_bytes().to_vec();
        for c in cells {
            match c {
                None => b.push(b'n'),
                Some(t) => {
                    b.push(b't');
                    b.extend((t.len() as u32).to_be_bytes());
                    b.extend(t.as_bytes());
                }
            }
        }
        b
    }

    #[test]
    fn pgoutput_messages_decode() {
        let mut rel = vec![b'R'];
        rel.extend(16384u32.to_be_bytes());
        rel.extend(b"public\0orders\0d");
        rel.extend(2i16.to_be_bytes());
        for (flags, name, oid) in [(1u8, "id", 23u32), (0, "note", 25)] {
            rel.push(flags);
            rel.extend(name.as_bytes());
            rel.push(0);
            rel.extend(oid.to_be_bytes());
            rel.extend((-1i32).to_be_bytes());
        }
        assert_eq!(
            decode(&rel).unwrap(),
            Msg::Relation { oid: 16384, schema: "public".into(), table: "orders".into(), columns: vec![("id".into(), 23, true), ("note".into(), 25, false)] }
        );
        let mut ins = vec![b'I'];
        ins.extend(16384u32.to_be_bytes());
        ins.push(b'N');
        ins.extend(tuple(&[Some("7"), None]));
        assert_eq!(decode(&ins).unwrap(), Msg::Insert { rel: 16384, new: vec![Cell::Text("7".into()), Cell::Null] });
        let mut upd = vec![b'U'];
        upd.extend(16384u32.to_be_bytes());
        upd.push(b'O');
        upd.extend(tuple(&[Some("7"), Some("a")]));
        upd.push(b'N');
        upd.extend(tuple(&[Some("7"), Some("b")]));
        assert_eq!(
            decode(&upd).unwrap(),
            Msg::Update { rel: 16384, old: Some(vec![Cell::Text("7".into()), Cell::Text("a".into())]), new: vec![Cell::Text("7".into()), Cell::Text("b".into())] }
        );
        let mut commit = vec![b'C', 0];
        commit.extend(5u64.to_be_bytes());
        commit.extend(0x1_0000_0010u64.to_be_bytes());
        commit.extend(0u64.to_be_bytes());
        assert_eq!(decode(&commit).unwrap(), Msg::Commit { end_lsn: 0x1_0000_0010 });
        assert!(decode(&ins[..8]).unwrap_err().to_string().contains("ends early"));
        assert_eq!(lsn_text(0x1_0000_0010), "1/10");
    }

    #[test]
    fn config_errors_name_each_setting() {
        let p: Props = [("database.hostname", "h"), ("plugin.name", "decoderbufs"), ("snapshot.mode", "always"), ("table.include.list", "public.(")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let names: Vec<String> = PostgresCdc.validate(&p).into_iter().map(|i| i.name).collect();
        assert_eq!(names, vec!["database.dbname", "topic.prefix", "plugin.name", "snapshot.mode", "table.include.list"]);
    }
}
