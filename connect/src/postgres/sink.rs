//! `JdbcSinkConnector`, with Confluent's settings: records of topics into PostgreSQL
//! tables (`table.name.format`, default the topic's name).
//!
//! - `insert.mode`: `insert` (plain inserts), `upsert` (insert or update by primary key,
//!   so a replayed record changes nothing: the sink is idempotent) or `update`.
//! - `pk.mode`: `none`, `record_key` (the key's fields, or the key itself named by
//!   `pk.fields`) or `record_value` (`pk.fields` of the value).
//! - `delete.enabled`: a tombstone (null value) deletes the row of its key.
//! - `auto.create`: a missing table is created from the record schema (or, for schemaless
//!   JSON, from the values), with the primary key; `auto.evolve` adds missing columns.
//! - Each `put` writes in one transaction, in statements of at most `batch.size` rows. When
//!   a statement fails on its data, the records are written one by one and only those
//!   that fail are reported (to the dead-letter topic under `errors.tolerance=all`).

use std::collections::HashMap;

use serde_json::Value as Json;
use tokio_postgres::Client;

use super::{connect, get, is_data_error, pg_error, quote_ident, quote_literal, sql_literal, sql_type, table_columns, ConnParams};
use crate::api::{Connector, PutFailure, SinkConnector, SinkRecord, SinkTask};
use crate::config::{ConfigIssue, Kind, Props, Setting};
use crate::data::{Schema, Value};
use crate::{Error, Result};

/// Confluent's JDBC sink, for PostgreSQL.
pub struct JdbcSink;

#[derive(Debug, Clone, Copy, PartialEq)]
enum InsertMode {
    Insert,
    Upsert,
    Update,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum PkMode {
    None,
    RecordKey,
    RecordValue,
}

fn list(config: &Props, key: &str) -> Vec<String> {
    get(config, key).map(|v| v.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect()).unwrap_or_default()
}

fn flag(config: &Props, key: &str) -> bool {
    get(config, key).is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

impl Connector for JdbcSink {
    fn settings(&self) -> Vec<Setting> {
        let s = |name, kind, default, required, doc| Setting { name, kind, default, required, doc };
        let mut all = super::jdbc_settings();
        all.extend([
            s("topics", Kind::String, None, false, "the topics to write, comma-separated"),
            s("topics.regex", Kind::String, None, false, "a pattern of topics to write"),
            s("insert.mode", Kind::String, Some("insert"), false, "insert, upsert or update"),
            s("pk.mode", Kind::String, Some("none"), false, "none, record_key or record_value"),
            s("pk.fields", Kind::String, None, false, "the primary key's fields, comma-separated"),
            s("table.name.format", Kind::String, Some("${topic}"), false, "the table of a topic; ${topic} is the topic's name"),
            s("batch.size", Kind::Int, Some("3000"), false, "the most rows one statement writes"),
            s("auto.create", Kind::Bool, Some("false"), false, "create missing tables from the record schema"),
            s("auto.evolve", Kind::Bool, Some("false"), false, "add missing columns from the record schema"),
            s("delete.enabled", Kind::Bool, Some("false"), false, "delete the row of a tombstone's key (needs pk.mode=record_key)"),
        ]);
        all
    }

    fn validate(&self, config: &Props) -> Vec<ConfigIssue> {
        let mut issues = super::jdbc_issues(&self.settings(), config);
        let issue = |name: &str, message: String| ConfigIssue { name: name.into(), message };
        if get(config, "topics").is_none() && get(config, "topics.regex").is_none() {
            issues.push(issue("topics", "name the topics to write (topics=a,b) or a pattern (topics.regex)".into()));
        }
        let insert = get(config, "insert.mode").unwrap_or("insert");
        if !["insert", "upsert", "update"].contains(&insert) {
            issues.push(issue("insert.mode", format!("insert.mode '{insert}' is not known; use insert, upsert or update")));
        }
        let pk = get(config, "pk.mode").unwrap_or("none");
        match pk {
            "none" if insert != "insert" => issues.push(issue("pk.mode", format!("insert.mode={insert} needs a primary key: set pk.mode to record_key or record_value"))),
            "none" | "record_key" => {}
            "record_value" if list(config, "pk.fields").is_empty() => issues.push(issue("pk.fields", "pk.mode=record_value needs pk.fields (the value's key fields)".into())),
            "record_value" => {}
            "kafka" => issues.push(issue("pk.mode", "pk.mode=kafka is not supported; use record_key or record_value".into())),
            other => issues.push(issue("pk.mode", format!("pk.mode '{other}' is not known; use none, record_key or record_value"))),
        }
        if flag(config, "delete.enabled") && pk != "record_key" {
            issues.push(issue("delete.enabled", "delete.enabled=true needs pk.mode=record_key (a tombstone has only its key)".into()));
        }
        if config.get("batch.size").and_then(|v| v.trim().parse::<i64>().ok()).is_some_and(|v| v < 1) {
            issues.push(issue("batch.size", "batch.size must be at least 1".into()));
        }
        issues
    }
}

impl SinkConnector for JdbcSink {
    fn task(&self) -> Box<dyn SinkTask> {
        Box::new(JdbcSinkTask {
            params: None,
            client: None,
            insert: InsertMode::Insert,
            pk: PkMode::None,
            pk_fields: Vec::new(),
            table_format: "${topic}".into(),
            batch: 3000,
            auto_create: false,
            auto_evolve: false,
            delete: false,
            known: HashMap::new(),
        })
    }
}

struct JdbcSinkTask {
    params: Option<ConnParams>,
    client: Option<Client>,
    insert: InsertMode,
    pk: PkMode,
    pk_fields: Vec<String>,
    table_format: String,
    batch: usize,
    auto_create: bool,
    auto_evolve: bool,
    delete: bool,
    /// The columns of each table seen so far.
    known: HashMap<String, Vec<String>>,
}

/// One record, ready to write: its table, primary key values and other columns.
#[derive(Debug, Clone)]
struct Row {
    index: usize,
    table: String,
    /// Primary-key columns (name, value, schema).
    pk: Vec<(String, Value, Option<Schema>)>,
    /// The other columns; `None` for a delete.
    cols: Option<Vec<(String, Value, Option<Schema>)>>,
}

impl Row {
    fn names(&self) -> Vec<&str> {
        self.pk.iter().chain(self.cols.iter().flatten()).map(|c| c.0.as_str()).collect()
    }
}

/// The fields of a struct value with each field's schema.
fn fields(v: &Value, schema: Option<&Schema>) -> Option<Vec<(String, Value, Option<Schema>)>> {
    let Value::Struct(fs) = v else { return None };
    let field_schema =
        |name: &str| schema.and_then(|s| s.get("fields")).and_then(Json::as_array).and_then(|fs| fs.iter().find(|f| f.get("field").and_then(Json::as_str) == Some(name))).cloned();
    Some(fs.iter().map(|(k, v)| (k.clone(), v.clone(), field_schema(k))).collect())
}

impl JdbcSinkTask {
    async fn client(&mut self) -> Result<&Client> {
        if self.client.as_ref().is_none_or(|c| c.is_closed()) {
            let params = self.params.as_ref().ok_or_else(|| Error::Task("the task was not started".into()))?;
            self.client = Some(connect(params).await?);
        }
        Ok(self.client.as_ref().expect("just connected"))
    }

    /// A record as a row, or why it cannot be one.
    fn row(&self, index: usize, r: &SinkRecord) -> Result<Row> {
        let table = self.table_format.replace("${topic}", &r.topic);
        let where_ = || format!("record {}-{}@{}", r.topic, r.partition, r.offset);
        let value_fields = || {
            fields(&r.value.value, r.value.schema.as_ref()).ok_or_else(|| {
                Error::Data(format!(
                    "{}: the value is not a struct ({}); the JDBC sink writes structs (use JsonConverter, or a HoistField transform for plain values)",
                    where_(),
                    r.value.value
                ))
            })
        };
        let key_fields = || -> Result<Vec<(String, Value, Option<Schema>)>> {
            match fields(&r.key.value, r.key.schema.as_ref()) {
                Some(fs) if self.pk_fields.is_empty() => Ok(fs),
                Some(fs) => self
                    .pk_fields
                    .iter()
                    .map(|n| fs.iter().find(|f| &f.0 == n).cloned().ok_or_else(|| Error::Data(format!("{}: the key has no field {n} (pk.fields)", where_()))))
                    .collect(),
                None if r.key.value == Value::Null => Err(Error::Data(format!("{}: the key is null, and pk.mode=record_key needs one", where_()))),
                None => match self.pk_fields.as_slice() {
                    [name] => Ok(vec![(name.clone(), r.key.value.clone(), r.key.schema.clone())]),
                    _ => Err(Error::Data(format!("{}: the key is a plain value; name its column with one pk.fields entry", where_()))),
                },
            }
        };
        if r.value.value == Value::Null {
            if self.delete {
                return Ok(Row { index, table, pk: key_fields()?, cols: None });
            }
            return Err(Error::Data(format!("{}: a tombstone (null value), and delete.enabled is false", where_())));
        }
        let mut cols = value_fields()?;
        let pk = match self.pk {
            PkMode::None => Vec::new(),
            PkMode::RecordKey => {
                let pk = key_fields()?;
                cols.retain(|c| !pk.iter().any(|p| p.0 == c.0));
                pk
            }
            PkMode::RecordValue => {
                let mut pk = Vec::new();
                for name in &self.pk_fields {
                    let i = cols.iter().position(|c| &c.0 == name).ok_or_else(|| Error::Data(format!("{}: the value has no field {name} (pk.fields)", where_())))?;
                    pk.push(cols.remove(i));
                }
                pk
            }
        };
        if let Some((name, _, _)) = pk.iter().find(|p| p.1 == Value::Null) {
            return Err(Error::Data(format!("{}: primary key field {name} is null", where_())));
        }
        Ok(Row { index, table, pk, cols: Some(cols) })
    }

    /// Makes sure a table has the row's columns: creates it (`auto.create`) or adds columns
    /// (`auto.evolve`) as allowed.
    async fn ensure_table(&mut self, row: &Row) -> Result<()> {
        if !self.known.contains_key(&row.table) {
            let exists: bool = {
                let c = self.client().await?;
                let q = format!("SELECT to_regclass({}) IS NOT NULL", quote_literal(&quote_ident(&row.table)));
                c.query_one(&q, &[]).await.map_err(|e| pg_error(e, "cannot look up a table"))?.get(0)
            };
            if !exists {
                if !self.auto_create {
                    return Err(Error::Task(format!("table {} does not exist; create it, or set auto.create=true to create it from the record schema", row.table)));
                }
                let mut defs: Vec<String> = row.pk.iter().map(|(n, v, s)| format!("{} {} NOT NULL", quote_ident(n), sql_type(s.as_ref(), v))).collect();
                defs.extend(row.cols.iter().flatten().map(|(n, v, s)| format!("{} {}", quote_ident(n), sql_type(s.as_ref(), v))));
                if !row.pk.is_empty() {
                    defs.push(format!("PRIMARY KEY ({})", row.pk.iter().map(|p| quote_ident(&p.0)).collect::<Vec<_>>().join(", ")));
                }
                let sql = format!("CREATE TABLE IF NOT EXISTS {} ({})", quote_ident(&row.table), defs.join(", "));
                self.client().await?.batch_execute(&sql).await.map_err(|e| pg_error(e, &format!("cannot create table {}", row.table)))?;
                tracing::info!(table = %row.table, "created the table from the record schema");
            }
            let cols = table_columns(self.client().await?, &row.table).await?.into_iter().map(|c| c.name).collect();
            self.known.insert(row.table.clone(), cols);
        }
        let known = &self.known[&row.table];
        let missing: Vec<(String, &'static str)> =
            row.pk.iter().chain(row.cols.iter().flatten()).filter(|c| !known.contains(&c.0)).map(|(n, v, s)| (n.clone(), sql_type(s.as_ref(), v))).collect();
        if missing.is_empty() {
            return Ok(());
        }
        if !self.auto_evolve {
            let names: Vec<&str> = missing.iter().map(|m| m.0.as_str()).collect();
            return Err(Error::Data(format!("table {} has no column {}; add it, or set auto.evolve=true", row.table, names.join(", "))));
        }
        let adds: Vec<String> = missing.iter().map(|(n, t)| format!("ADD COLUMN IF NOT EXISTS {} {t}", quote_ident(n))).collect();
        let sql = format!("ALTER TABLE {} {}", quote_ident(&row.table), adds.join(", "));
        self.client().await?.batch_execute(&sql).await.map_err(|e| pg_error(e, &format!("cannot add columns to table {}", row.table)))?;
        tracing::info!(table = %row.table, columns = ?missing, "added columns from the record schema");
        self.known.get_mut(&row.table).expect("known").extend(missing.into_iter().map(|m| m.0));
        Ok(())
    }

    /// The statements writing `rows` (all of one table and one column list), in order.
    fn statements(&self, rows: &[&Row]) -> Vec<String> {
        let Some(first) = rows.first() else { return Vec::new() };
        let table = quote_ident(&first.table);
        let eq = |cols: &[(String, Value, Option<Schema>)], sep: &str| {
            cols.iter().map(|(n, v, s)| format!("{} = {}", quote_ident(n), sql_literal(v, s.as_ref()))).collect::<Vec<_>>().join(sep)
        };
        if first.cols.is_none() {
            return rows.iter().map(|r| format!("DELETE FROM {table} WHERE {}", eq(&r.pk, " AND "))).collect();
        }
        if self.insert == InsertMode::Update {
            return rows.iter().map(|r| format!("UPDATE {table} SET {} WHERE {}", eq(r.cols.as_deref().unwrap_or_default(), ", "), eq(&r.pk, " AND "))).collect();
        }
        let names = first.names();
        let head = format!("INSERT INTO {table} ({})", names.iter().map(|n| quote_ident(n)).collect::<Vec<_>>().join(", "));
        let tail = match (self.insert, first.cols.as_deref().unwrap_or_default()) {
            (InsertMode::Upsert, []) => format!(" ON CONFLICT ({}) DO NOTHING", first.pk.iter().map(|p| quote_ident(&p.0)).collect::<Vec<_>>().join(", ")),
            (InsertMode::Upsert, cols) => format!(
                " ON CONFLICT ({}) DO UPDATE SET {}",
                first.pk.iter().map(|p| quote_ident(&p.0)).collect::<Vec<_>>().join(", "),
                cols.iter().map(|c| format!("{0} = EXCLUDED.{0}", quote_ident(&c.0))).collect::<Vec<_>>().join(", ")
            ),
            _ => String::new(),
        };
        rows.chunks(self.batch)
            .map(|chunk| {
                let values: Vec<String> = chunk
                    .iter()
                    .map(|r| format!("({})", r.pk.iter().chain(r.cols.iter().flatten()).map(|(_, v, s)| sql_literal(v, s.as_ref())).collect::<Vec<_>>().join(", ")))
                    .collect();
                format!("{head} VALUES {}{tail}", values.join(", "))
            })
            .collect()
    }

    /// Splits rows into runs writable by one statement kind: same table, same columns,
    /// same kind (write or delete); an upsert run holds one row per primary key (the last).
    fn runs<'a>(&self, rows: &'a [Row]) -> Vec<Vec<&'a Row>> {
        let mut runs: Vec<Vec<Option<&Row>>> = Vec::new();
        // Where each primary key sits in the current run.
        let mut at: HashMap<Vec<String>, usize> = HashMap::new();
        for r in rows {
            let fits =
                runs.last().and_then(|run| run.iter().rev().flatten().next()).is_some_and(|p| p.table == r.table && p.cols.is_some() == r.cols.is_some() && p.names() == r.names());
            if !fits {
                runs.push(Vec::new());
                at.clear();
            }
            let run = runs.last_mut().expect("pushed");
            if self.insert == InsertMode::Upsert && r.cols.is_some() {
                // One row per key in an upsert statement; the later record wins.
                let key = r.pk.iter().map(|p| sql_literal(&p.1, p.2.as_ref())).collect();
                if let Some(i) = at.insert(key, run.len()) {
                    run[i] = None;
                }
            }
            run.push(Some(r));
        }
        runs.into_iter().map(|run| run.into_iter().flatten().collect()).collect()
    }

    /// Runs statements in one transaction. A failure caused by the data is `Error::Data`.
    async fn execute(&mut self, statements: &[String]) -> Result<()> {
        let mut sql = String::from("BEGIN;\n");
        for s in statements {
            sql.push_str(s);
            sql.push_str(";\n");
        }
        sql.push_str("COMMIT;");
        let client = self.client().await?;
        let Err(e) = client.batch_execute(&sql).await else { return Ok(()) };
        // Leave no transaction open on the session.
        let _ = client.batch_execute("ROLLBACK").await;
        if is_data_error(&e) {
            return Err(Error::Data(pg_error(e, "PostgreSQL refused it").to_string()));
        }
        let err = pg_error(e, "cannot write to PostgreSQL");
        if matches!(err, Error::Retriable(_)) {
            self.client = None;
        }
        Err(err)
    }
}

#[async_trait::async_trait]
impl SinkTask for JdbcSinkTask {
    async fn start(&mut self, config: &Props) -> Result<()> {
        self.params = Some(ConnParams::from_jdbc(config).map_err(|e| Error::Config(e.message))?);
        self.insert = match get(config, "insert.mode").unwrap_or("insert") {
            "upsert" => InsertMode::Upsert,
            "update" => InsertMode::Update,
            _ => InsertMode::Insert,
        };
        self.pk = match get(config, "pk.mode").unwrap_or("none") {
            "record_key" => PkMode::RecordKey,
            "record_value" => PkMode::RecordValue,
            _ => PkMode::None,
        };
        self.pk_fields = list(config, "pk.fields");
        self.table_format = get(config, "table.name.format").unwrap_or("${topic}").to_string();
        self.batch = config.get("batch.size").and_then(|v| v.trim().parse().ok()).unwrap_or(3000).max(1);
        self.auto_create = flag(config, "auto.create");
        self.auto_evolve = flag(config, "auto.evolve");
        self.delete = flag(config, "delete.enabled");
        // Fail early when the database cannot be reached with these settings.
        self.client().await?;
        Ok(())
    }

    async fn put(&mut self, records: &[SinkRecord]) -> Result<Vec<PutFailure>> {
        let mut failures = Vec::new();
        let mut rows = Vec::with_capacity(records.len());
        for (i, r) in records.iter().enumerate() {
            match self.row(i, r) {
                Ok(row) => rows.push(row),
                Err(error) => failures.push(PutFailure { index: i, error }),
            }
        }
        // Tables and columns first: a record that does not fit is reported alone.
        let mut ready = Vec::with_capacity(rows.len());
        for row in rows {
            match self.ensure_table(&row).await {
                Ok(()) => ready.push(row),
                Err(error @ Error::Data(_)) => failures.push(PutFailure { index: row.index, error }),
                Err(e) => return Err(e),
            }
        }
        let statements: Vec<String> = self.runs(&ready).iter().flat_map(|run| self.statements(run)).collect();
        match self.execute(&statements).await {
            Ok(()) => {}
            Err(Error::Data(why)) => {
                // Find the records at fault: each alone, in order.
                tracing::debug!(error = %why, "a batch failed on its data; writing its records one by one");
                for row in &ready {
                    let one = self.statements(&[row]);
                    if let Err(e) = self.execute(&one).await {
                        let Error::Data(why) = e else { return Err(e) };
                        let r = &records[row.index];
                        let error = Error::Data(format!("record {}-{}@{} cannot be written to table {}: {why}", r.topic, r.partition, r.offset, row.table));
                        failures.push(PutFailure { index: row.index, error });
                    }
                }
            }
            // Retriable and other failures fail the whole put.
            Err(e) => return Err(e),
        }
        failures.sort_by_key(|f| f.index);
        Ok(failures)
    }

    async fn flush(&mut self) -> Result<()> {
        // Every put commits its own transaction.
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Data;
    use serde_json::json;

    fn task(insert: InsertMode, pk: PkMode, pk_fields: &[&str]) -> JdbcSinkTask {
        JdbcSinkTask {
            params: None,
            client: None,
            insert,
            pk,
            pk_fields: pk_fields.iter().map(|s| s.to_string()).collect(),
            table_format: "${topic}".into(),
            batch: 2,
            auto_create: false,
            auto_evolve: false,
            delete: true,
            known: HashMap::new(),
        }
    }

    fn rec(key: Value, value: Value) -> SinkRecord {
        SinkRecord { topic: "orders".into(), partition: 0, offset: 7, timestamp: 0, key: Data { schema: None, value: key }, value: Data { schema: None, value }, headers: vec![] }
    }

    fn st(pairs: &[(&str, Value)]) -> Value {
        Value::Struct(pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect())
    }

    #[test]
    fn upserts_keep_the_last_row_per_key_and_batch() {
        let t = task(InsertMode::Upsert, PkMode::RecordValue, &["id"]);
        let recs = [
            rec(Value::Null, st(&[("id", Value::Int(1)), ("n", Value::String("a".into()))])),
            rec(Value::Null, st(&[("id", Value::Int(2)), ("n", Value::String("b".into()))])),
            rec(Value::Null, st(&[("id", Value::Int(1)), ("n", Value::String("c'd".into()))])),
            rec(Value::Null, st(&[("id", Value::Int(3)), ("n", Value::Null)])),
        ];
        let rows: Vec<Row> = recs.iter().enumerate().map(|(i, r)| t.row(i, r).unwrap()).collect();
        assert_eq!(rows[0].names(), vec!["id", "n"]);
        let runs = t.runs(&rows);
        assert_eq!(runs.len(), 1);
        let sql = t.statements(&runs[0]);
        assert_eq!(
            sql,
            vec![
                "INSERT INTO \"orders\" (\"id\", \"n\") VALUES (2, 'b'), (1, 'c''d') ON CONFLICT (\"id\") DO UPDATE SET \"n\" = EXCLUDED.\"n\"",
                "INSERT INTO \"orders\" (\"id\", \"n\") VALUES (3, NULL) ON CONFLICT (\"id\") DO UPDATE SET \"n\" = EXCLUDED.\"n\"",
            ]
        );
    }

    #[test]
    fn keys_tombstones_and_bad_records() {
        let t = task(InsertMode::Upsert, PkMode::RecordKey, &[]);
        let del = t.row(0, &rec(st(&[("id", Value::Int(5))]), Value::Null)).unwrap();
        assert_eq!(t.statements(&[&del]), vec!["DELETE FROM \"orders\" WHERE \"id\" = 5"]);
        let e = t.row(0, &rec(Value::Null, st(&[("id", Value::Int(1))]))).unwrap_err().to_string();
        assert!(e.contains("record orders-0@7: the key is null"), "{e}");
        let e = t.row(0, &rec(st(&[("id", Value::Int(1))]), Value::String("plain".into()))).unwrap_err().to_string();
        assert!(e.contains("the value is not a struct (plain)"), "{e}");
        let t = task(InsertMode::Insert, PkMode::RecordKey, &["sku"]);
        let row = t.row(0, &rec(Value::String("A-1".into()), st(&[("qty", Value::Int(2))]))).unwrap();
        assert_eq!(row.names(), vec!["sku", "qty"]);
        assert_eq!(t.statements(&[&row]), vec!["INSERT INTO \"orders\" (\"sku\", \"qty\") VALUES ('A-1', 2)"]);
        let ts = Some(json!({"type": "struct", "fields": [{"field": "at", "type": "int64", "name": "org.apache.kafka.connect.data.Timestamp"}]}));
        let r = SinkRecord { value: Data { schema: ts, value: st(&[("at", Value::Int(1000))]) }, ..rec(Value::String("B".into()), Value::Null) };
        let row = t.row(0, &r).unwrap();
        assert_eq!(t.statements(&[&row]), vec!["INSERT INTO \"orders\" (\"sku\", \"at\") VALUES ('B', (TIMESTAMPTZ 'epoch' + 1000 * INTERVAL '1 millisecond'))"]);
    }

    #[test]
    fn config_errors_name_each_setting() {
        let p: Props = [("connection.url", "jdbc:postgresql://h/db"), ("insert.mode", "upsert"), ("delete.enabled", "true"), ("pk.mode", "record_value")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let names: Vec<String> = JdbcSink.validate(&p).into_iter().map(|i| i.name).collect();
        assert_eq!(names, vec!["topics", "pk.fields", "delete.enabled"]);
    }
}
