//! PostgreSQL connectors.
//!
//! - [`source`]: `JdbcSourceConnector` (Confluent's class and settings): a table's new rows
//!   by an incrementing id and/or a timestamp column, or the whole table each poll.
//! - [`cdc`]: `PostgresConnector` (Debezium's class and settings): change data capture
//!   through a logical replication slot with the `pgoutput` plugin, as Debezium-style
//!   change events (`before`, `after`, `source`, `op`).
//! - [`sink`]: `JdbcSinkConnector` (Confluent's class and settings): insert or upsert by
//!   primary key, delete on tombstones, tables created from the record schema, batched.
//!
//! Values travel between Samsa and PostgreSQL as text (PostgreSQL's own input and output
//! functions), typed by the column's type: so every column type reads and writes, and no
//! client-side type codecs are needed. Sessions run with `TimeZone = UTC` and
//! `DateStyle = ISO`; timestamps are Connect `Timestamp`s (ms since the epoch).

pub mod cdc;
pub mod sink;
pub mod source;

use std::time::Duration;

use serde_json::{json, Value as Json};
use tokio_postgres::{Client, NoTls};

use crate::config::{ConfigIssue, Props};
use crate::data::{Schema, Value};
use crate::{Error, Result};

/// Where and as whom to connect.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnParams {
    /// Host name or address.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Database.
    pub dbname: String,
    /// User.
    pub user: String,
    /// Password, if any.
    pub password: Option<String>,
}

impl ConnParams {
    /// From Confluent's `connection.url` (`jdbc:postgresql://host[:port]/db[?user=&password=]`,
    /// or a `postgresql://user:password@host:port/db` URL), `connection.user` and
    /// `connection.password`.
    pub fn from_jdbc(config: &Props) -> std::result::Result<ConnParams, ConfigIssue> {
        let issue = |message: String| ConfigIssue { name: "connection.url".into(), message };
        let url = config.get("connection.url").map(|u| u.trim()).unwrap_or_default();
        let rest = url.strip_prefix("jdbc:postgresql://").or_else(|| url.strip_prefix("postgresql://")).or_else(|| url.strip_prefix("postgres://")).ok_or_else(|| {
            issue(format!("connection.url '{url}' is not a PostgreSQL URL; write jdbc:postgresql://HOST:PORT/DATABASE (Samsa's JDBC connectors speak to PostgreSQL)"))
        })?;
        let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (userinfo, rest) = match rest.rsplit_once('@') {
            Some((u, r)) => (Some(u), r),
            None => (None, rest),
        };
        let (hostport, dbname) = rest.split_once('/').unwrap_or((rest, ""));
        let (host, port) = split_host_port(hostport).map_err(issue)?;
        let mut p = ConnParams { host, port, dbname: dbname.to_string(), user: "postgres".into(), password: None };
        if let Some(u) = userinfo {
            let (user, pass) = u.split_once(':').map_or((u, None), |(a, b)| (a, Some(b)));
            p.user = user.to_string();
            p.password = pass.map(str::to_string);
        }
        for pair in query.split('&').filter(|s| !s.is_empty()) {
            match pair.split_once('=') {
                Some(("user", v)) => p.user = v.to_string(),
                Some(("password", v)) => p.password = Some(v.to_string()),
                _ => {}
            }
        }
        if let Some(u) = config.get("connection.user").map(|u| u.trim()).filter(|u| !u.is_empty()) {
            p.user = u.to_string();
        }
        if let Some(pw) = config.get("connection.password") {
            p.password = Some(pw.clone());
        }
        if p.dbname.is_empty() {
            return Err(issue(format!("connection.url '{url}' names no database; write jdbc:postgresql://HOST:PORT/DATABASE")));
        }
        Ok(p)
    }

    /// From Debezium's `database.hostname`, `database.port`, `database.user`,
    /// `database.password` and `database.dbname`.
    pub fn from_debezium(config: &Props) -> std::result::Result<ConnParams, ConfigIssue> {
        let get = |k: &str| config.get(k).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
        let port = match get("database.port") {
            None => 5432,
            Some(p) => p.parse().map_err(|_| ConfigIssue { name: "database.port".into(), message: format!("database.port must be a port number, not '{p}'") })?,
        };
        Ok(ConnParams {
            host: get("database.hostname").unwrap_or_default(),
            port,
            dbname: get("database.dbname").unwrap_or_default(),
            user: get("database.user").unwrap_or_else(|| "postgres".into()),
            password: config.get("database.password").cloned(),
        })
    }

    /// `host:port/db` for messages.
    pub fn describe(&self) -> String {
        format!("{}:{}/{}", self.host, self.port, self.dbname)
    }
}

fn split_host_port(hostport: &str) -> std::result::Result<(String, u16), String> {
    if hostport.is_empty() {
        return Err("connection.url names no host; write jdbc:postgresql://HOST:PORT/DATABASE".into());
    }
    match hostport.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || hostport.starts_with('[') => {
            let port = p.parse().map_err(|_| format!("'{p}' in connection.url is not a port number"))?;
            Ok((h.trim_matches(['[', ']']).to_string(), port))
        }
        _ => Ok((hostport.trim_matches(['[', ']']).to_string(), 5432)),
    }
}

/// The connection settings of the JDBC connectors (Confluent's names).
pub fn jdbc_settings() -> Vec<crate::config::Setting> {
    use crate::config::{Kind, Setting};
    vec![
        Setting { name: "connection.url", kind: Kind::String, default: None, required: true, doc: "jdbc:postgresql://HOST:PORT/DATABASE" },
        Setting { name: "connection.user", kind: Kind::String, default: None, required: false, doc: "the database user" },
        Setting { name: "connection.password", kind: Kind::String, default: None, required: false, doc: "the user's password" },
    ]
}

/// Checks `settings` plus the JDBC connection URL: each bad setting.
pub fn jdbc_issues(settings: &[crate::config::Setting], config: &Props) -> Vec<ConfigIssue> {
    let mut issues = crate::config::validate(settings, config);
    if config.contains_key("connection.url") {
        if let Err(e) = ConnParams::from_jdbc(config) {
            issues.push(e);
        }
    }
    issues
}

/// A setting's trimmed value, unless empty.
pub fn get<'a>(config: &'a Props, key: &str) -> Option<&'a str> {
    config.get(key).map(|v| v.trim()).filter(|v| !v.is_empty())
}

/// Opens a session (UTC, ISO dates). An unreachable server is a retriable error.
pub async fn connect(p: &ConnParams) -> Result<Client> {
    let mut cfg = tokio_postgres::Config::new();
    cfg.host(&p.host).port(p.port).dbname(&p.dbname).user(&p.user).application_name("samsa-connect").connect_timeout(Duration::from_secs(10));
    if let Some(pw) = &p.password {
        cfg.password(pw);
    }
    let (client, connection) = cfg.connect(NoTls).await.map_err(|e| pg_error(e, &format!("cannot connect to PostgreSQL at {} as {}", p.describe(), p.user)))?;
    let where_ = p.describe();
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(database = %where_, error = %e, "PostgreSQL connection ended");
        }
    });
    client
        .batch_execute("SET TimeZone = 'UTC'; SET DateStyle = 'ISO'; SET bytea_output = 'hex'; SET extra_float_digits = 3")
        .await
        .map_err(|e| pg_error(e, "cannot set up the session"))?;
    Ok(client)
}

/// A PostgreSQL error as a Connect error: connection trouble, lost transactions and
/// resource limits are retriable; the rest (bad SQL, bad data) are not.
pub fn pg_error(e: tokio_postgres::Error, context: &str) -> Error {
    match e.as_db_error() {
        Some(db) => {
            let code = db.code().code();
            let msg = format!("{context}: {} (SQLSTATE {code}){}", db.message(), db.hint().map(|h| format!("; hint: {h}")).unwrap_or_default());
            if ["08", "40", "53", "57"].iter().any(|c| code.starts_with(c)) {
                Error::Retriable(msg)
            } else {
                Error::Task(msg)
            }
        }
        None => Error::Retriable(format!("{context}: {e}")),
    }
}

/// Whether a PostgreSQL error is about the data of a statement (so another record may
/// still write): data exceptions (22), integrity violations (23), undefined or mistyped
/// columns (42703, 42804).
pub fn is_data_error(e: &tokio_postgres::Error) -> bool {
    e.as_db_error().is_some_and(|db| {
        let c = db.code().code();
        c.starts_with("22") || c.starts_with("23") || c == "42703" || c == "42804"
    })
}

/// `name` as an SQL identifier, quoted; `schema.table` quotes each part.
pub fn quote_ident(name: &str) -> String {
    name.split('.').map(|part| format!("\"{}\"", part.replace('"', "\"\""))).collect::<Vec<_>>().join(".")
}

/// `s` as an SQL string literal.
pub fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// How `numeric` columns become Connect values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum NumericMode {
    /// Text, every digit kept.
    String,
    /// A float64 (may round).
    Double,
}

/// A table column: name, type OID, whether it may be null, whether it is a key column.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    /// Name.
    pub name: String,
    /// PostgreSQL type OID.
    pub type_oid: u32,
    /// Whether it may be null.
    pub nullable: bool,
    /// Whether it is part of the primary key (or replica identity).
    pub key: bool,
}

/// Type OIDs Samsa maps to Connect types (the rest travel as text).
mod oid {
    pub const BOOL: u32 = 16;
    pub const BYTEA: u32 = 17;
    pub const INT8: u32 = 20;
    pub const INT2: u32 = 21;
    pub const INT4: u32 = 23;
    pub const OID: u32 = 26;
    pub const FLOAT4: u32 = 700;
    pub const FLOAT8: u32 = 701;
    pub const DATE: u32 = 1082;
    pub const TIMESTAMP: u32 = 1114;
    pub const TIMESTAMPTZ: u32 = 1184;
    pub const NUMERIC: u32 = 1700;
}

/// The Connect schema of a column.
pub fn column_schema(c: &Column, numeric: NumericMode) -> Schema {
    let (t, name) = match c.type_oid {
        oid::BOOL => ("boolean", None),
        oid::INT2 => ("int16", None),
        oid::INT4 => ("int32", None),
        oid::INT8 | oid::OID => ("int64", None),
        oid::FLOAT4 => ("float", None),
        oid::FLOAT8 => ("double", None),
        oid::NUMERIC if numeric == NumericMode::Double => ("double", None),
        oid::BYTEA => ("bytes", None),
        oid::DATE => ("int32", Some("org.apache.kafka.connect.data.Date")),
        oid::TIMESTAMP | oid::TIMESTAMPTZ => ("int64", Some("org.apache.kafka.connect.data.Timestamp")),
        _ => ("string", None),
    };
    let mut s = json!({"type": t, "optional": c.nullable, "field": c.name});
    if let Some(n) = name {
        s["name"] = json!(n);
        s["version"] = json!(1);
    }
    s
}

/// The Connect struct schema of a row.
pub fn row_schema(name: &str, columns: &[Column], numeric: NumericMode, optional: bool) -> Schema {
    json!({"type": "struct", "name": name, "optional": optional, "fields": columns.iter().map(|c| column_schema(c, numeric)).collect::<Vec<_>>()})
}

/// A column's text (PostgreSQL's output form) as a Connect value.
pub fn text_value(c: &Column, text: Option<&str>, numeric: NumericMode) -> Result<Value> {
    let Some(t) = text else { return Ok(Value::Null) };
    let bad = |what: &str| Error::Data(format!("column {} holds '{t}', which is not {what}", c.name));
    Ok(match c.type_oid {
        oid::BOOL => Value::Bool(matches!(t, "t" | "true")),
        oid::INT2 | oid::INT4 | oid::INT8 | oid::OID => Value::Int(t.parse().map_err(|_| bad("a whole number"))?),
        oid::FLOAT4 | oid::FLOAT8 => Value::Float(parse_float(t).ok_or_else(|| bad("a number"))?),
        oid::NUMERIC if numeric == NumericMode::Double => Value::Float(parse_float(t).ok_or_else(|| bad("a number"))?),
        oid::BYTEA => Value::Bytes(bytes::Bytes::from(decode_hex(t.strip_prefix("\\x").unwrap_or(t)).ok_or_else(|| bad("hex bytes"))?)),
        oid::DATE => Value::Int(parse_date(t).ok_or_else(|| bad("a date"))?),
        oid::TIMESTAMP | oid::TIMESTAMPTZ => Value::Int(parse_timestamp_ms(t).ok_or_else(|| bad("a timestamp"))?),
        _ => Value::String(t.to_string()),
    })
}

fn parse_float(t: &str) -> Option<f64> {
    match t {
        "NaN" => Some(f64::NAN),
        "Infinity" => Some(f64::INFINITY),
        "-Infinity" => Some(f64::NEG_INFINITY),
        _ => t.parse().ok(),
    }
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

/// Days since 1970-01-01 of a civil date (proleptic Gregorian).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `YYYY-MM-DD` as days since the epoch.
fn parse_date(t: &str) -> Option<i64> {
    let mut it = t.get(..10)?.split('-');
    let (y, m, d) = (it.next()?.parse().ok()?, it.next()?.parse().ok()?, it.next()?.parse().ok()?);
    Some(days_from_civil(y, m, d))
}

/// PostgreSQL's ISO timestamp text (`2024-05-01 12:30:00.123456`, optionally with a zone
/// offset such as `+00` or `-05:30`) as ms since the epoch.
pub fn parse_timestamp_ms(t: &str) -> Option<i64> {
    let days = parse_date(t)?;
    let rest = t.get(11..)?;
    let (clock, zone) = match rest.find(['+', '-']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let mut hms = clock.split(':');
    let (h, m): (i64, i64) = (hms.next()?.parse().ok()?, hms.next()?.parse().ok()?);
    let sec = hms.next()?;
    let (s, frac) = sec.split_once('.').unwrap_or((sec, ""));
    let s: i64 = s.parse().ok()?;
    let ms: i64 = if frac.is_empty() { 0 } else { format!("{:0<3}", &frac[..frac.len().min(3)]).parse().ok()? };
    let offset_s = if zone.is_empty() {
        0
    } else {
        let sign = if zone.starts_with('-') { -1 } else { 1 };
        let mut parts = zone[1..].split(':');
        let zh: i64 = parts.next()?.parse().ok()?;
        let zm: i64 = parts.next().map_or(Some(0), |p| p.parse().ok())?;
        sign * (zh * 3600 + zm * 60)
    };
    Some(((days * 86_400 + h * 3600 + m * 60 + s) - offset_s) * 1000 + ms)
}

/// The columns of a table, in order, with their key flags (primary key).
pub async fn table_columns(client: &Client, table: &str) -> Result<Vec<Column>> {
    let sql = format!(
        "SELECT a.attname::text, a.atttypid::int8, NOT a.attnotnull, COALESCE(a.attnum = ANY(i.indkey), false) \
         FROM pg_attribute a LEFT JOIN pg_index i ON i.indrelid = a.attrelid AND i.indisprimary \
         WHERE a.attrelid = {}::regclass AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
        quote_literal(&quote_ident(table))
    );
    let rows = client.query(&sql, &[]).await.map_err(|e| pg_error(e, &format!("cannot read the columns of table {table}")))?;
    Ok(rows.iter().map(|r| Column { name: r.get(0), type_oid: r.get::<_, i64>(1) as u32, nullable: r.get(2), key: r.get(3) }).collect())
}

/// A Connect value as an SQL literal for a column (NULL, numbers, booleans, quoted text,
/// `'\x..'` bytes, JSON text for structs and arrays; a `Timestamp` as the epoch plus its ms).
pub fn sql_literal(v: &Value, schema: Option<&Schema>) -> String {
    let logical = schema.and_then(|s| s.get("name")).and_then(Json::as_str);
    match v {
        Value::Null => "NULL".into(),
        Value::Bool(b) => if *b { "TRUE" } else { "FALSE" }.into(),
        Value::Int(n) if logical == Some("org.apache.kafka.connect.data.Timestamp") => format!("(TIMESTAMPTZ 'epoch' + {n} * INTERVAL '1 millisecond')"),
        Value::Int(n) if logical == Some("org.apache.kafka.connect.data.Date") => format!("(DATE '1970-01-01' + {n})"),
        Value::Int(n) => n.to_string(),
        Value::Float(x) if x.is_finite() => format!("{x:?}"),
        Value::Float(x) => quote_literal(if x.is_nan() {
            "NaN"
        } else if *x > 0.0 {
            "Infinity"
        } else {
            "-Infinity"
        }),
        Value::String(s) => quote_literal(s),
        Value::Bytes(b) => format!("'\\x{}'::bytea", b.iter().map(|x| format!("{x:02x}")).collect::<String>()),
        Value::Array(_) | Value::Struct(_) => quote_literal(&crate::data::to_json(v, schema).to_string()),
    }
}

/// The PostgreSQL column type for a Connect schema (or, without one, for a value).
pub fn sql_type(schema: Option<&Schema>, sample: &Value) -> &'static str {
    let logical = schema.and_then(|s| s.get("name")).and_then(Json::as_str);
    match (schema.and_then(|s| s.get("type")).and_then(Json::as_str), logical) {
        (_, Some("org.apache.kafka.connect.data.Timestamp")) => "TIMESTAMP",
        (_, Some("org.apache.kafka.connect.data.Date")) => "DATE",
        (Some("int8" | "int16"), _) => "SMALLINT",
        (Some("int32"), _) => "INTEGER",
        (Some("int64"), _) => "BIGINT",
        (Some("float" | "float32"), _) => "REAL",
        (Some("double" | "float64"), _) => "DOUBLE PRECISION",
        (Some("boolean"), _) => "BOOLEAN",
        (Some("string"), _) => "TEXT",
        (Some("bytes"), _) => "BYTEA",
        (Some("struct" | "map" | "array"), _) => "JSONB",
        _ => match sample {
            Value::Bool(_) => "BOOLEAN",
            Value::Int(_) => "BIGINT",
            Value::Float(_) => "DOUBLE PRECISION",
            Value::Bytes(_) => "BYTEA",
            Value::Array(_) | Value::Struct(_) => "JSONB",
            Value::String(_) | Value::Null => "TEXT",
        },
    }
}

/// Reads `numeric.mapping` (Confluent) or `decimal.handling.mode` (Debezium).
pub fn numeric_mode(config: &Props, key: &str) -> std::result::Result<NumericMode, ConfigIssue> {
    match config.get(key).map(|v| v.trim().to_ascii_lowercase()).as_deref() {
        None | Some("" | "none" | "string" | "precise") => Ok(NumericMode::String),
        Some("best_fit" | "double") => Ok(NumericMode::Double),
        Some(other) => Err(ConfigIssue {
            name: key.into(),
            message: format!("{key} '{other}' is not known; use string (every digit, as text) or double ({})", if key == "numeric.mapping" { "best_fit" } else { "double" }),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props(pairs: &[(&str, &str)]) -> Props {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn connection_urls_parse_as_jdbc_and_libpq_forms() {
        let p = ConnParams::from_jdbc(&props(&[("connection.url", "jdbc:postgresql://127.0.0.1:5433/shop?user=app&password=s3"), ("connection.user", "")])).unwrap();
        assert_eq!(p, ConnParams { host: "127.0.0.1".into(), port: 5433, dbname: "shop".into(), user: "app".into(), password: Some("s3".into()) });
        let p = ConnParams::from_jdbc(&props(&[("connection.url", "postgresql://u:pw@db/x"), ("connection.password", "other")])).unwrap();
        assert_eq!((p.host.as_str(), p.port, p.user.as_str(), p.password.as_deref()), ("db", 5432, "u", Some("other")));
        let e = ConnParams::from_jdbc(&props(&[("connection.url", "jdbc:mysql://h/db")])).unwrap_err();
        assert_eq!(e.name, "connection.url");
        assert!(e.message.contains("jdbc:postgresql://HOST:PORT/DATABASE"), "{}", e.message);
        assert!(ConnParams::from_jdbc(&props(&[("connection.url", "jdbc:postgresql://h:5432/")])).unwrap_err().message.contains("no database"));
        assert!(ConnParams::from_jdbc(&props(&[("connection.url", "jdbc:postgresql://h:x/db")])).unwrap_err().message.contains("not a port"));
    }

    #[test]
    fn text_values_follow_column_types() {
        let col = |oid| Column { name: "c".into(), type_oid: oid, nullable: true, key: false };
        let s = NumericMode::String;
        assert_eq!(text_value(&col(oid::INT4), Some("-42"), s).unwrap(), Value::Int(-42));
        assert_eq!(text_value(&col(oid::BOOL), Some("t"), s).unwrap(), Value::Bool(true));
        assert_eq!(text_value(&col(oid::BOOL), Some("false"), s).unwrap(), Value::Bool(false));
        assert_eq!(text_value(&col(oid::FLOAT8), Some("NaN"), s).unwrap().to_string(), "NaN");
        assert_eq!(text_value(&col(oid::NUMERIC), Some("12.50"), s).unwrap(), Value::String("12.50".into()));
        assert_eq!(text_value(&col(oid::NUMERIC), Some("12.50"), NumericMode::Double).unwrap(), Value::Float(12.5));
        assert_eq!(text_value(&col(oid::BYTEA), Some("\\x00ff"), s).unwrap(), Value::Bytes(bytes::Bytes::from_static(&[0, 255])));
        assert_eq!(text_value(&col(oid::DATE), Some("1970-01-02"), s).unwrap(), Value::Int(1));
        assert_eq!(text_value(&col(oid::TIMESTAMP), Some("2024-05-01 12:30:00.25"), s).unwrap(), Value::Int(1_714_566_600_250));
        assert_eq!(text_value(&col(oid::TIMESTAMPTZ), Some("2024-05-01 14:30:00+02"), s).unwrap(), Value::Int(1_714_566_600_000));
        assert_eq!(text_value(&col(oid::TIMESTAMPTZ), Some("1969-12-31 19:00:00-05"), s).unwrap(), Value::Int(0));
        assert_eq!(text_value(&col(oid::INT4), None, s).unwrap(), Value::Null);
        let e = text_value(&col(oid::INT8), Some("x"), s).unwrap_err().to_string();
        assert!(e.contains("column c holds 'x'"), "{e}");
    }

    #[test]
    fn literals_are_quoted_and_typed() {
        assert_eq!(quote_literal("it's"), "'it''s'");
        assert_eq!(quote_ident("public.Odd\"Name"), "\"public\".\"Odd\"\"Name\"");
        assert_eq!(sql_literal(&Value::Float(1.0), None), "1.0");
        assert_eq!(sql_literal(&Value::Bytes(bytes::Bytes::from_static(&[1, 171])), None), "'\\x01ab'::bytea");
        let ts = json!({"type": "int64", "name": "org.apache.kafka.connect.data.Timestamp"});
        assert_eq!(sql_literal(&Value::Int(1500), Some(&ts)), "(TIMESTAMPTZ 'epoch' + 1500 * INTERVAL '1 millisecond')");
        assert_eq!(sql_literal(&Value::Struct(vec![("a".into(), Value::Int(1))]), None), "'{\"a\":1}'");
        assert_eq!(sql_type(Some(&ts), &Value::Null), "TIMESTAMP");
        assert_eq!(sql_type(None, &Value::Float(1.0)), "DOUBLE PRECISION");
    }
}
