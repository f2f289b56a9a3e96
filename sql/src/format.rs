//! Column types, record formats, and the decoder that turns Kafka records into Arrow
//! batches (bounded scans and continuous queries share it) and the encoder that turns
//! rows back into record values.

use std::sync::Arc;

use bytes::Bytes;
use datafusion::arrow::array::{ArrayRef, Int32Array, Int64Array, RecordBatch, StringArray, TimestampMillisecondArray};
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::json::reader::ReaderBuilder;
use datafusion::arrow::json::writer::{LineDelimited, WriterBuilder};
use serde::{Deserialize, Serialize};

use crate::error::{Result, SqlError};

/// The metadata columns every stream and table has, after its declared columns.
pub const META_COLUMNS: [&str; 4] = ["_key", "_partition", "_offset", "_timestamp"];

/// How record values are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// One JSON object per record; fields by column name.
    Json,
    /// One CSV line per record; fields in column order.
    Csv,
    /// The whole value as the one declared column (text).
    Raw,
}

impl Format {
    /// Parses `json`, `csv` or `raw`.
    pub fn parse(s: &str) -> Result<Format> {
        match s.to_ascii_lowercase().as_str() {
            "json" => Ok(Format::Json),
            "csv" => Ok(Format::Csv),
            "raw" | "kafka" => Ok(Format::Raw),
            other => Err(SqlError::new(format!("unknown format '{other}'")).hint("format is one of 'json', 'csv', 'raw'")),
        }
    }

    /// The name used in DDL.
    pub fn name(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Csv => "csv",
            Format::Raw => "raw",
        }
    }
}

/// A declared column: name and SQL type name (as DESCRIBE shows it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Column {
    /// Column name (case as declared; unquoted names are lower-cased).
    pub name: String,
    /// Canonical SQL type, e.g. `BIGINT`.
    pub sql_type: String,
}

/// The SQL type names Samsa accepts for columns, canonical name first.
pub const SQL_TYPES: &[(&str, &[&str])] = &[
    ("VARCHAR", &["VARCHAR", "STRING", "TEXT", "CHAR", "CHARACTER VARYING", "CHARACTER"]),
    ("BIGINT", &["BIGINT", "INT8", "LONG"]),
    ("INT", &["INT", "INTEGER", "INT4"]),
    ("SMALLINT", &["SMALLINT", "INT2"]),
    ("DOUBLE", &["DOUBLE", "DOUBLE PRECISION", "FLOAT8"]),
    ("REAL", &["REAL", "FLOAT", "FLOAT4"]),
    ("BOOLEAN", &["BOOLEAN", "BOOL"]),
    ("TIMESTAMP", &["TIMESTAMP"]),
    ("DATE", &["DATE"]),
];

/// Canonical SQL type name for a declared type (`INTEGER` -> `INT`), or an error naming
/// the accepted ones.
pub fn canonical_type(declared: &str) -> Result<&'static str> {
    let upper = declared.trim().to_ascii_uppercase();
    let base = upper.split('(').next().unwrap_or("").trim().to_string();
    for (canon, names) in SQL_TYPES {
        if names.contains(&base.as_str()) {
            return Ok(canon);
        }
    }
    let accepted: Vec<&str> = SQL_TYPES.iter().map(|(c, _)| *c).collect();
    Err(SqlError::new(format!("unsupported column type {declared}")).hint(format!("use one of {}", accepted.join(", "))))
}

/// Arrow type of a canonical SQL type.
pub fn arrow_type(sql_type: &str) -> DataType {
    match sql_type {
        "BIGINT" => DataType::Int64,
        "INT" => DataType::Int32,
        "SMALLINT" => DataType::Int16,
        "DOUBLE" => DataType::Float64,
        "REAL" => DataType::Float32,
        "BOOLEAN" => DataType::Boolean,
        "TIMESTAMP" => DataType::Timestamp(TimeUnit::Millisecond, None),
        "DATE" => DataType::Date32,
        _ => DataType::Utf8,
    }
}

/// SQL type name of an Arrow type (for DESCRIBE of query results and CREATE ... AS SELECT).
pub fn sql_type_of(dt: &DataType) -> &'static str {
    match dt {
        DataType::Int64 | DataType::UInt32 | DataType::UInt64 => "BIGINT",
        DataType::Int32 | DataType::UInt16 => "INT",
        DataType::Int16 | DataType::Int8 | DataType::UInt8 => "SMALLINT",
        DataType::Float64 | DataType::Decimal128(_, _) => "DOUBLE",
        DataType::Float32 | DataType::Float16 => "REAL",
        DataType::Boolean => "BOOLEAN",
        DataType::Timestamp(_, _) => "TIMESTAMP",
        DataType::Date32 | DataType::Date64 => "DATE",
        _ => "VARCHAR",
    }
}

/// The Arrow schema of declared columns (all nullable).
pub fn value_schema(columns: &[Column]) -> SchemaRef {
    Arc::new(Schema::new(columns.iter().map(|c| Field::new(&c.name, arrow_type(&c.sql_type), true)).collect::<Vec<_>>()))
}

/// The Arrow schema of declared columns followed by the metadata columns.
pub fn full_schema(columns: &[Column]) -> SchemaRef {
    let mut fields: Vec<Field> = value_schema(columns).fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.push(Field::new("_key", DataType::Utf8, true));
    // Nullable so that INSERT can leave them out and lookups have no offsets to give.
    fields.push(Field::new("_partition", DataType::Int32, true));
    fields.push(Field::new("_offset", DataType::Int64, true));
    fields.push(Field::new("_timestamp", DataType::Timestamp(TimeUnit::Millisecond, None), true));
    Arc::new(Schema::new(fields))
}

/// One Kafka record as the decoder takes it.
#[derive(Debug, Clone)]
pub struct RawRecord {
    /// Record key.
    pub key: Option<Bytes>,
    /// Record value (`None` for a tombstone).
    pub value: Option<Bytes>,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Record timestamp (ms).
    pub timestamp: i64,
}

/// Decodes records of one stream into batches of its full schema.
#[derive(Debug, Clone)]
pub struct Decoder {
    format: Format,
    value_schema: SchemaRef,
    schema: SchemaRef,
}

/// What a decode produced.
#[derive(Debug)]
pub struct Decoded {
    /// The rows, in the full schema.
    pub batch: RecordBatch,
    /// Records that could not be decoded (skipped), with the reason of the first.
    pub malformed: Vec<(i32, i64, String)>,
}

impl Decoder {
    /// A decoder for these declared columns.
    pub fn new(format: Format, columns: &[Column]) -> Result<Decoder> {
        if format == Format::Raw && (columns.len() != 1 || columns[0].sql_type != "VARCHAR") {
            return Err(SqlError::new("format 'raw' needs exactly one VARCHAR column (the whole value)"));
        }
        Ok(Decoder { format, value_schema: value_schema(columns), schema: full_schema(columns) })
    }

    /// The full schema (declared + metadata columns).
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Decodes records; tombstones are left out, malformed values are skipped and reported.
    pub fn decode(&self, records: &[RawRecord]) -> Result<Decoded> {
        let live: Vec<&RawRecord> = records.iter().filter(|r| r.value.is_some()).collect();
        let mut malformed = Vec::new();
        let (values, kept) = match self.format {
            Format::Raw => {
                let arr: StringArray = live.iter().map(|r| Some(String::from_utf8_lossy(r.value.as_ref().unwrap()).into_owned())).collect();
                (RecordBatch::try_new(self.value_schema.clone(), vec![Arc::new(arr) as ArrayRef])?, live)
            }
            Format::Json | Format::Csv => {
                let texts: Vec<std::borrow::Cow<'_, [u8]>> = live.iter().map(|r| self.as_json(r.value.as_ref().unwrap())).collect();
                match self.decode_json(texts.iter().map(|t| t.as_ref())) {
                    Ok(batch) => (batch, live),
                    Err(_) => {
                        // Find the bad ones one by one; keep the rest.
                        let mut parts = Vec::new();
                        let mut kept = Vec::new();
                        for (r, t) in live.iter().zip(&texts) {
                            match self.decode_json(std::iter::once(t.as_ref())) {
                                Ok(b) if b.num_rows() == 1 => {
                                    parts.push(b);
                                    kept.push(*r);
                                }
                                Ok(_) => malformed.push((r.partition, r.offset, "not a JSON object".to_string())),
                                Err(e) => malformed.push((r.partition, r.offset, e.to_string())),
                            }
                        }
                        (concat_batches(&self.value_schema, &parts)?, kept)
                    }
                }
            }
        };
        let key: StringArray = kept.iter().map(|r| r.key.as_ref().map(|k| String::from_utf8_lossy(k).into_owned())).collect();
        let partition: Int32Array = kept.iter().map(|r| r.partition).collect();
        let offset: Int64Array = kept.iter().map(|r| r.offset).collect();
        let ts = TimestampMillisecondArray::from(kept.iter().map(|r| r.timestamp).collect::<Vec<i64>>());
        let mut cols = values.columns().to_vec();
        cols.push(Arc::new(key));
        cols.push(Arc::new(partition));
        cols.push(Arc::new(offset));
        cols.push(Arc::new(ts));
        Ok(Decoded { batch: RecordBatch::try_new(self.schema.clone(), cols)?, malformed })
    }

    fn decode_json<'a>(&self, texts: impl ExactSizeIterator<Item = &'a [u8]>) -> Result<RecordBatch, String> {
        let mut dec = ReaderBuilder::new(self.value_schema.clone())
            .with_coerce_primitive(true)
            .with_batch_size(texts.len().max(1))
            .build_decoder()
            .map_err(|e| e.to_string())?;
        let mut n = 0usize;
        for t in texts {
            let trimmed = t.trim_ascii();
            if !trimmed.starts_with(b"{") {
                return Err("not a JSON object".into());
            }
            let used = dec.decode(trimmed).map_err(|e| e.to_string())?;
            if used != trimmed.len() || dec.has_partial_record() {
                return Err("incomplete JSON object".into());
            }
            n += 1;
        }
        let batch = dec.flush().map_err(|e| e.to_string())?.unwrap_or_else(|| RecordBatch::new_empty(self.value_schema.clone()));
        if batch.num_rows() != n {
            return Err("a value held more or fewer than one JSON object".into());
        }
        Ok(batch)
    }

    /// A record value as JSON text: itself for JSON, an object built from the fields for CSV.
    fn as_json<'a>(&self, value: &'a Bytes) -> std::borrow::Cow<'a, [u8]> {
        match self.format {
            Format::Csv => {
                let line = String::from_utf8_lossy(value);
                let fields = split_csv(line.trim_end_matches(['\r', '\n']));
                let mut obj = serde_json::Map::new();
                for (f, field) in self.value_schema.fields().iter().zip(fields) {
                    if field.is_empty() {
                        continue;
                    }
                    let v = match f.data_type() {
                        DataType::Boolean => match field.to_ascii_lowercase().as_str() {
                            "true" => serde_json::Value::Bool(true),
                            "false" => serde_json::Value::Bool(false),
                            _ => serde_json::Value::String(field),
                        },
                        _ => serde_json::Value::String(field),
                    };
                    obj.insert(f.name().clone(), v);
                }
                std::borrow::Cow::Owned(serde_json::to_vec(&obj).unwrap_or_default())
            }
            _ => std::borrow::Cow::Borrowed(value.as_ref()),
        }
    }
}

/// Splits one CSV line (RFC 4180 quoting).
pub fn split_csv(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => out.push(std::mem::take(&mut cur)),
            (c, _) => cur.push(c),
        }
    }
    out.push(cur);
    out
}

/// Encodes each row of a batch as a record value in `format` (JSON objects without null
/// fields; CSV lines in column order; raw: the first column's text).
pub fn encode_rows(batch: &RecordBatch, format: Format) -> Result<Vec<Bytes>> {
    match format {
        Format::Json => {
            let mut buf = Vec::new();
            {
                let mut w = WriterBuilder::new().build::<_, LineDelimited>(&mut buf);
                w.write(batch)?;
                w.finish()?;
            }
            Ok(buf.split(|b| *b == b'\n').filter(|l| !l.is_empty()).map(Bytes::copy_from_slice).collect())
        }
        Format::Csv | Format::Raw => {
            let rows = rows_as_text(batch)?;
            Ok(rows
                .into_iter()
                .map(|row| {
                    if format == Format::Raw {
                        return Bytes::from(row.into_iter().next().flatten().unwrap_or_default());
                    }
                    let line: Vec<String> = row
                        .into_iter()
                        .map(|c| match c {
                            None => String::new(),
                            Some(s) if s.contains([',', '"', '\n']) => format!("\"{}\"", s.replace('"', "\"\"")),
                            Some(s) => s,
                        })
                        .collect();
                    Bytes::from(line.join(","))
                })
                .collect())
        }
    }
}

/// Every cell of a batch as display text (`None` for null).
pub fn rows_as_text(batch: &RecordBatch) -> Result<Vec<Vec<Option<String>>>> {
    use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
    let opts = FormatOptions::default();
    let fmts = batch.columns().iter().map(|c| ArrayFormatter::try_new(c.as_ref(), &opts)).collect::<Result<Vec<_>, _>>()?;
    Ok((0..batch.num_rows())
        .map(|i| batch.columns().iter().zip(&fmts).map(|(c, f)| (!c.is_null(i)).then(|| f.value(i).to_string())).collect())
        .collect())
}

/// Every row of a batch as a JSON array of values (numbers and booleans as JSON values,
/// everything else as text, null as null).
pub fn rows_as_json(batch: &RecordBatch) -> Result<Vec<serde_json::Value>> {
    let text = rows_as_text(batch)?;
    let schema = batch.schema();
    Ok(text
        .into_iter()
        .map(|row| {
            serde_json::Value::Array(
                row.into_iter()
                    .zip(schema.fields())
                    .map(|(cell, f)| match cell {
                        None => serde_json::Value::Null,
                        Some(s) => json_cell(f.data_type(), s),
                    })
                    .collect(),
            )
        })
        .collect())
}

fn json_cell(dt: &DataType, s: String) -> serde_json::Value {
    if dt.is_integer() {
        if let Ok(n) = s.parse::<i64>() {
            return n.into();
        }
    }
    if dt.is_floating() || matches!(dt, DataType::Decimal128(..)) {
        if let Some(n) = s.parse::<f64>().ok().and_then(serde_json::Number::from_f64) {
            return serde_json::Value::Number(n);
        }
    }
    if *dt == DataType::Boolean {
        return serde_json::Value::Bool(s == "true");
    }
    serde_json::Value::String(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cols() -> Vec<Column> {
        vec![Column { name: "page".into(), sql_type: "VARCHAR".into() }, Column { name: "n".into(), sql_type: "BIGINT".into() }]
    }

    fn rec(offset: i64, value: &str) -> RawRecord {
        RawRecord { key: Some(Bytes::from("k")), value: Some(Bytes::copy_from_slice(value.as_bytes())), partition: 0, offset, timestamp: 1000 + offset }
    }

    #[test]
    fn json_decoding_skips_malformed_records_and_keeps_the_rest() {
        let d = Decoder::new(Format::Json, &cols()).unwrap();
        let out = d.decode(&[rec(0, r#"{"page":"a","n":1}"#), rec(1, "{not json"), rec(2, r#"{"page":"b","n":"x"}"#), rec(3, r#"{"page":"c"}"#)]).unwrap();
        assert_eq!(out.batch.num_rows(), 2);
        assert_eq!(out.malformed.iter().map(|m| m.1).collect::<Vec<_>>(), vec![1, 2]);
        let text = rows_as_text(&out.batch).unwrap();
        assert_eq!(text[0], vec![Some("a".into()), Some("1".into()), Some("k".into()), Some("0".into()), Some("0".into()), Some("1970-01-01T00:00:01".into())]);
        assert_eq!(text[1][0..3], [Some("c".into()), None, Some("k".into())]);
    }

    #[test]
    fn csv_and_raw_decode_and_encode_round_trip() {
        let d = Decoder::new(Format::Csv, &cols()).unwrap();
        let out = d.decode(&[rec(0, "\"a,b\",7"), rec(1, "plain,")]).unwrap();
        assert_eq!(out.batch.num_rows(), 2);
        let values = encode_rows(&out.batch.project(&[0, 1]).unwrap(), Format::Csv).unwrap();
        assert_eq!(values, vec![Bytes::from("\"a,b\",7"), Bytes::from("plain,")]);
        let json = encode_rows(&out.batch.project(&[0, 1]).unwrap(), Format::Json).unwrap();
        assert_eq!(json[0], Bytes::from(r#"{"page":"a,b","n":7}"#));
        assert!(Decoder::new(Format::Raw, &cols()).is_err());
    }

    #[test]
    fn types_have_canonical_names() {
        assert_eq!(canonical_type("integer").unwrap(), "INT");
        assert_eq!(canonical_type("varchar(20)").unwrap(), "VARCHAR");
        let e = canonical_type("BLOB").unwrap_err();
        assert!(e.hint.unwrap().contains("BIGINT"));
    }
}
