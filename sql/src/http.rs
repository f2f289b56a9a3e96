//! The engine over HTTP: `POST /sql` runs one statement (what `samsa server` serves and
//! `samsa sql` talks to).
//!
//! ```text
//!  POST /sql {"sql": "...", "properties": {"auto.offset.reset": "earliest"}}
//!    bounded      200 {"columns":[{"name":"a","type":"VARCHAR"}],"rows":[["x"]],"message":"..."}
//!    EMIT CHANGES 200 application/x-ndjson, one line each, flushed as rows come:
//!                     {"columns":[...]}  {"row":[...]}  ...  {"error":{...}} (ends it)
//!    error        400 {"error":{"message":"...","position":{"line":1,"column":1},"hint":"..."}}
//!                 (a body that is not such JSON too; 503 when the engine cannot start)
//! ```
//!
//! Dropping a continuous response (the client went away) drops its stream, which stops the
//! query. The engine can be given ready ([`router`]) or started on first use
//! ([`LazyEngine`], what the server does: no catalog topic until someone uses SQL).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::Schema;
use futures::stream::{BoxStream, StreamExt};
use serde::Serialize;
use serde_json::Value;

use crate::engine::{Engine, EngineConfig, Output, Properties};
use crate::error::{Result, SqlError};
use crate::format::{rows_as_json, sql_type_of};

/// Content type of a continuous result.
pub const NDJSON: &str = "application/x-ndjson";

/// What a body that is not a statement request gets told.
const BODY_HINT: &str = "the body must be JSON like {\"sql\": \"SELECT 1\"}";

/// How long a request waits for the engine to start before giving up.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The routes (`POST /sql`) over a running engine.
pub fn router(engine: Engine) -> Router {
    let cell = tokio::sync::OnceCell::new_with(Some(engine));
    lazy_router(LazyEngine { inner: Arc::new(LazyInner { cell, config: None, connectors: None }) })
}

/// The routes (`POST /sql`) over an engine started by the first request (or by
/// [`LazyEngine::start`]).
pub fn lazy_router(engine: LazyEngine) -> Router {
    Router::new().route("/sql", post(handle)).with_state(engine)
}

/// An engine started when first needed; cheap to clone, clones share it.
#[derive(Clone)]
pub struct LazyEngine {
    inner: Arc<LazyInner>,
}

struct LazyInner {
    cell: tokio::sync::OnceCell<Engine>,
    config: Option<EngineConfig>,
    connectors: Option<Arc<dyn crate::connectors::Connectors>>,
}

impl LazyEngine {
    /// An engine that starts with `config` on first use.
    pub fn new(config: EngineConfig) -> LazyEngine {
        LazyEngine { inner: Arc::new(LazyInner { cell: tokio::sync::OnceCell::new(), config: Some(config), connectors: None }) }
    }

    /// An engine that starts with `config` on first use and manages connectors through
    /// `connectors` (`CREATE SOURCE CONNECTOR`...).
    pub fn with_connectors(config: EngineConfig, connectors: Arc<dyn crate::connectors::Connectors>) -> LazyEngine {
        LazyEngine { inner: Arc::new(LazyInner { cell: tokio::sync::OnceCell::new(), config: Some(config), connectors: Some(connectors) }) }
    }

    /// The engine, if it has started.
    pub fn get(&self) -> Option<Engine> {
        self.inner.cell.get().cloned()
    }

    /// The engine, starting it if needed (a failed start is retried by the next call).
    pub async fn start(&self) -> Result<Engine> {
        let start = self.inner.cell.get_or_try_init(|| async {
            let config = self.inner.config.clone().ok_or_else(|| SqlError::new("the SQL engine is not configured"))?;
            tracing::info!(bootstrap = %config.bootstrap, "starting the SQL engine");
            let engine = Engine::start(config).await?;
            if let Some(c) = &self.inner.connectors {
                engine.set_connectors(c.clone());
            }
            Ok::<_, SqlError>(engine)
        });
        match tokio::time::timeout(START_TIMEOUT, start).await {
            Ok(r) => r.cloned().map_err(|e| SqlError::new(format!("the SQL engine cannot start: {}", e.message))),
            Err(_) => Err(SqlError::new(format!("the SQL engine did not start within {START_TIMEOUT:?}")).hint("is the cluster up? `samsa cluster status` shows it")),
        }
    }

    /// Starts the engine as soon as the cluster has a SQL catalog topic (SQL was used here
    /// or on another node), so that persistent queries run without waiting for a request;
    /// checks every `every` until then. Runs until the engine has started.
    pub async fn start_when_catalog_exists(&self, every: Duration) {
        let Some(config) = self.inner.config.clone() else { return };
        let mut admin = None;
        loop {
            if self.get().is_some() {
                return;
            }
            if admin.is_none() {
                admin = samsa_client::Admin::connect(&config.bootstrap).await.ok();
            }
            if let Some(a) = &admin {
                match a.list_topics(true).await {
                    Ok(topics) if topics.iter().any(|t| t == crate::catalog::CATALOG_TOPIC) => match self.start().await {
                        Ok(_) => return,
                        Err(e) => tracing::warn!(error = %e, "SQL engine start failed; retrying"),
                    },
                    Ok(_) => {}
                    Err(_) => admin = None,
                }
            }
            tokio::time::sleep(every).await;
        }
    }
}

/// How a response carries its rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ResultFormat {
    /// JSON (bounded) or newline-delimited JSON (continuous); the default.
    #[default]
    Json,
    /// An Arrow IPC stream (`application/vnd.apache.arrow.stream`): the schema, then the
    /// batches as they come. A continuous result that fails ends with the IPC end marker
    /// followed by the JSON error body.
    Arrow,
}

/// A parsed request body.
#[derive(Debug, PartialEq)]
pub struct Request {
    /// The statement.
    pub sql: String,
    /// Per-request properties.
    pub properties: Properties,
    /// How the rows come back (`"format": "json" | "arrow"`).
    pub format: ResultFormat,
}

/// Parses a request body: `{"sql": "...", "properties": {"k": "v"}, "format": "json"}`
/// (properties and format optional; numbers and booleans are taken as their text).
pub fn parse_request(body: &[u8]) -> Result<Request> {
    let bad = |why: &str| SqlError::new(format!("{why}: {BODY_HINT}"));
    let value: Value = serde_json::from_slice(body).map_err(|e| bad(&format!("the body is not JSON ({e})")))?;
    let Value::Object(mut obj) = value else { return Err(bad("the body is not a JSON object")) };
    let sql = match obj.remove("sql") {
        Some(Value::String(s)) => s,
        Some(_) => return Err(bad("\"sql\" is not a string")),
        None => return Err(bad("the body has no \"sql\"")),
    };
    let mut properties = BTreeMap::new();
    match obj.remove("properties") {
        None | Some(Value::Null) => {}
        Some(Value::Object(props)) => {
            for (k, v) in props {
                let v = match v {
                    Value::String(s) => s,
                    Value::Number(n) => n.to_string(),
                    Value::Bool(b) => b.to_string(),
                    other => return Err(SqlError::new(format!("property {k} is {other}; give a string, number or boolean"))),
                };
                properties.insert(k, v);
            }
        }
        Some(_) => return Err(bad("\"properties\" is not an object of strings")),
    }
    let format = match obj.remove("format") {
        None | Some(Value::Null) => ResultFormat::Json,
        Some(Value::String(f)) if f.eq_ignore_ascii_case("json") => ResultFormat::Json,
        Some(Value::String(f)) if f.eq_ignore_ascii_case("arrow") => ResultFormat::Arrow,
        Some(other) => return Err(SqlError::new(format!("\"format\" is {other}; give \"json\" or \"arrow\""))),
    };
    if let Some(k) = obj.keys().next() {
        return Err(bad(&format!("unknown field \"{k}\"")));
    }
    Ok(Request { sql, properties, format })
}

/// One column of a result, as the JSON shows it.
#[derive(Debug, Serialize)]
pub struct ColumnJson {
    /// Column name.
    pub name: String,
    /// SQL type name (VARCHAR, BIGINT, ...).
    #[serde(rename = "type")]
    pub sql_type: &'static str,
}

/// The columns of a schema.
pub fn columns_json(schema: &Schema) -> Vec<ColumnJson> {
    schema.fields().iter().map(|f| ColumnJson { name: f.name().clone(), sql_type: sql_type_of(f.data_type()) }).collect()
}

#[derive(Serialize)]
struct RowsBody<'a> {
    columns: Vec<ColumnJson>,
    rows: Vec<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<&'a str>,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a SqlError,
}

#[derive(Serialize)]
struct HeaderLine {
    columns: Vec<ColumnJson>,
}

#[derive(Serialize)]
struct RowLine {
    row: Value,
}

fn to_json(v: &impl Serialize) -> String {
    serde_json::to_string(v).expect("JSON of plain data")
}

/// The body of a bounded result: `{"columns":[...],"rows":[[...]],"message":"..."}`
/// (message only when there is one).
pub fn rows_body(schema: &Schema, batches: &[RecordBatch], message: Option<&str>) -> Result<String> {
    let mut rows = Vec::new();
    for b in batches {
        rows.extend(rows_as_json(b)?);
    }
    Ok(to_json(&RowsBody { columns: columns_json(schema), rows, message }))
}

/// The body of an error: `{"error":{"message":...,"position":{...},"hint":...}}`.
pub fn error_body(e: &SqlError) -> String {
    to_json(&ErrorBody { error: e })
}

/// The NDJSON lines of one batch of a continuous result (`{"row":[...]}\n` each).
pub fn row_lines(batch: &RecordBatch) -> Result<String> {
    let mut out = String::new();
    for row in rows_as_json(batch)? {
        out.push_str(&to_json(&RowLine { row }));
        out.push('\n');
    }
    Ok(out)
}

/// The first NDJSON line of a continuous result (`{"columns":[...]}\n`).
pub fn header_line(schema: &Schema) -> String {
    format!("{}\n", to_json(&HeaderLine { columns: columns_json(schema) }))
}

/// The NDJSON line that ends a continuous result that failed.
pub fn error_line(e: &SqlError) -> String {
    format!("{}\n", error_body(e))
}

fn json_response(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn bad_request(e: &SqlError) -> Response {
    json_response(StatusCode::BAD_REQUEST, error_body(e))
}

async fn handle(State(engine): State<LazyEngine>, body: Bytes) -> Response {
    let req = match parse_request(&body) {
        Ok(r) => r,
        Err(e) => return bad_request(&e),
    };
    let engine = match engine.start().await {
        Ok(e) => e,
        Err(e) => return json_response(StatusCode::SERVICE_UNAVAILABLE, error_body(&e)),
    };
    match (engine.execute_with(&req.sql, &req.properties).await, req.format) {
        (Ok(Output::Rows { schema, batches, message }), ResultFormat::Arrow) => match ipc_bytes(&schema, &batches, message.as_deref()) {
            Ok(body) => ([(header::CONTENT_TYPE, ARROW_STREAM), (header::HeaderName::from_static(RESULT_HEADER), "rows")], body).into_response(),
            Err(e) => bad_request(&e),
        },
        (Ok(Output::Continuous { schema, stream }), ResultFormat::Arrow) => {
            let chunks = continuous_ipc(schema, stream).map(Ok::<_, Infallible>);
            ([(header::CONTENT_TYPE, ARROW_STREAM), (header::CACHE_CONTROL, "no-cache"), (header::HeaderName::from_static(RESULT_HEADER), "continuous")], Body::from_stream(chunks)).into_response()
        }
        (Ok(Output::Rows { schema, batches, message }), ResultFormat::Json) => match rows_body(&schema, &batches, message.as_deref()) {
            Ok(body) => json_response(StatusCode::OK, body),
            Err(e) => bad_request(&e),
        },
        (Ok(Output::Continuous { schema, stream }), ResultFormat::Json) => {
            let lines = continuous_lines(&schema, stream).map(|s| Ok::<_, Infallible>(Bytes::from(s)));
            ([(header::CONTENT_TYPE, NDJSON), (header::CACHE_CONTROL, "no-cache")], Body::from_stream(lines)).into_response()
        }
        (Err(e), _) => bad_request(&e),
    }
}

/// The response header that says whether an Arrow result is bounded (`rows`) or
/// continuous (`continuous`).
pub const RESULT_HEADER: &str = "x-samsa-result";

/// The content type of Arrow IPC streams.
pub const ARROW_STREAM: &str = "application/vnd.apache.arrow.stream";

/// The schema-metadata key under which an Arrow result carries the engine's message (for
/// DDL: "created stream orders").
pub const MESSAGE_METADATA: &str = "samsa.message";

/// Arrow IPC stream writing into a buffer that is drained after every message.
struct IpcChunks(datafusion::arrow::ipc::writer::StreamWriter<Vec<u8>>);

impl IpcChunks {
    fn new(schema: &Schema) -> Result<IpcChunks> {
        Ok(IpcChunks(datafusion::arrow::ipc::writer::StreamWriter::try_new(Vec::new(), schema)?))
    }
    fn batch(&mut self, batch: &RecordBatch) -> Result<Bytes> {
        self.0.write(batch)?;
        Ok(self.take())
    }
    fn finish(&mut self) -> Result<Bytes> {
        self.0.finish()?;
        Ok(self.take())
    }
    fn take(&mut self) -> Bytes {
        Bytes::from(std::mem::take(self.0.get_mut()))
    }
}

/// A bounded result as one Arrow IPC stream; `message` (if any) goes into the schema's
/// metadata under [`MESSAGE_METADATA`].
pub fn ipc_bytes(schema: &Schema, batches: &[RecordBatch], message: Option<&str>) -> Result<Vec<u8>> {
    let mut schema = schema.clone();
    if let Some(m) = message {
        schema.metadata.insert(MESSAGE_METADATA.to_string(), m.to_string());
    }
    let schema = Arc::new(schema);
    let mut w = IpcChunks::new(&schema)?;
    let mut out = w.take().to_vec();
    for b in batches {
        // The batches carry the schema without the message; only the metadata differs.
        let b = b.clone().with_schema(schema.clone()).map_err(|e| SqlError::new(format!("internal: result batch: {e}")))?;
        out.extend_from_slice(&w.batch(&b)?);
    }
    out.extend_from_slice(&w.finish()?);
    Ok(out)
}

/// A continuous result as Arrow IPC chunks: the schema, then one message per non-empty
/// batch. An error ends the IPC stream and is followed by the JSON error body.
pub fn continuous_ipc(schema: Arc<Schema>, stream: BoxStream<'static, Result<RecordBatch>>) -> BoxStream<'static, Bytes> {
    let start = IpcChunks::new(&schema);
    futures::stream::unfold(Some((start, stream, true)), |state| async move {
        let (w, mut stream, first) = state?;
        let mut w = match w {
            Ok(w) => w,
            Err(e) => return Some((Bytes::from(error_body(&e)), None)),
        };
        if first {
            let head = w.take();
            return Some((head, Some((Ok(w), stream, false))));
        }
        loop {
            let failed = match stream.next().await {
                None => return None,
                Some(Ok(b)) if b.num_rows() == 0 => continue,
                Some(Ok(b)) => match w.batch(&b) {
                    Ok(chunk) => return Some((chunk, Some((Ok(w), stream, false)))),
                    Err(e) => e,
                },
                Some(Err(e)) => e,
            };
            let mut tail = w.finish().map(|b| b.to_vec()).unwrap_or_default();
            tail.extend_from_slice(error_body(&failed).as_bytes());
            return Some((Bytes::from(tail), None));
        }
    })
    .boxed()
}

/// A continuous result as NDJSON text: the header line, then the rows of each batch; an
/// error becomes a last `{"error":...}` line.
pub fn continuous_lines(schema: &Schema, stream: BoxStream<'static, Result<RecordBatch>>) -> BoxStream<'static, String> {
    let head = futures::stream::once(futures::future::ready(header_line(schema)));
    let rows = futures::stream::unfold(Some(stream), |state| async move {
        let mut stream = state?;
        loop {
            return match stream.next().await {
                None => None,
                Some(Ok(batch)) => match row_lines(&batch) {
                    Ok(lines) if lines.is_empty() => continue,
                    Ok(lines) => Some((lines, Some(stream))),
                    Err(e) => Some((error_line(&e), None)),
                },
                Some(Err(e)) => Some((error_line(&e), None)),
            };
        }
    });
    head.chain(rows).boxed()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Position;
    use datafusion::arrow::array::{ArrayRef, BooleanArray, Float64Array, Int64Array, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field};
    use serde_json::json;

    fn parse(s: &str) -> Value {
        serde_json::from_str(s).unwrap()
    }

    fn batch() -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("a", DataType::Utf8, true),
            Field::new("n", DataType::Int64, true),
            Field::new("x", DataType::Float64, true),
            Field::new("ok", DataType::Boolean, true),
        ]));
        let cols: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(vec![Some("x"), None])),
            Arc::new(Int64Array::from(vec![Some(1), Some(2)])),
            Arc::new(Float64Array::from(vec![Some(1.5), None])),
            Arc::new(BooleanArray::from(vec![Some(true), Some(false)])),
        ];
        RecordBatch::try_new(schema, cols).unwrap()
    }

    #[test]
    fn parses_requests() {
        let r = parse_request(br#"{"sql": "SELECT 1"}"#).unwrap();
        assert_eq!(r, Request { sql: "SELECT 1".into(), properties: Properties::new(), format: ResultFormat::Json });
        let r = parse_request(br#"{"sql": "SELECT 1", "properties": {"auto.offset.reset": "earliest", "n": 3, "b": true}}"#).unwrap();
        assert_eq!(r.properties.get("auto.offset.reset").map(String::as_str), Some("earliest"));
        assert_eq!(r.properties.get("n").map(String::as_str), Some("3"));
        assert_eq!(r.properties.get("b").map(String::as_str), Some("true"));
        for (body, why) in [
            (&b"SELECT 1"[..], "not JSON"),
            (b"[1]", "not a JSON object"),
            (b"{}", "has no \"sql\""),
            (b"{\"sql\": 1}", "not a string"),
            (b"{\"sql\": \"x\", \"properties\": 1}", "\"properties\""),
            (b"{\"sql\": \"x\", \"query\": 1}", "unknown field \"query\""),
        ] {
            let e = parse_request(body).unwrap_err();
            assert!(e.message.contains(why), "{}: {}", String::from_utf8_lossy(body), e.message);
            assert!(e.message.ends_with(BODY_HINT), "{}", e.message);
        }
        assert!(parse_request(br#"{"sql": "x", "properties": {"k": [1]}}"#).unwrap_err().message.contains("property k"));
    }

    #[test]
    fn shapes_bounded_results() {
        let b = batch();
        let body = rows_body(&b.schema(), &[b.clone(), b.slice(0, 1)], None).unwrap();
        assert!(body.starts_with("{\"columns\":[{\"name\":\"a\",\"type\":\"VARCHAR\"},"), "{body}");
        assert_eq!(
            parse(&body),
            json!({
                "columns": [
                    {"name": "a", "type": "VARCHAR"}, {"name": "n", "type": "BIGINT"},
                    {"name": "x", "type": "DOUBLE"}, {"name": "ok", "type": "BOOLEAN"}
                ],
                "rows": [["x", 1, 1.5, true], [null, 2, null, false], ["x", 1, 1.5, true]]
            })
        );
        let ddl = rows_body(&Schema::empty(), &[], Some("Stream t created")).unwrap();
        assert_eq!(ddl, r#"{"columns":[],"rows":[],"message":"Stream t created"}"#);
    }

    #[test]
    fn shapes_errors() {
        let e = SqlError::new("Expected: an SQL statement, found: SELEC").at(Some(Position { line: 1, column: 1 })).hint("did you mean SELECT instead of SELEC?");
        assert_eq!(
            error_body(&e),
            r#"{"error":{"message":"Expected: an SQL statement, found: SELEC","position":{"line":1,"column":1},"hint":"did you mean SELECT instead of SELEC?"}}"#
        );
        assert_eq!(error_body(&SqlError::new("boom")), r#"{"error":{"message":"boom"}}"#);
        assert_eq!(error_line(&SqlError::new("boom")), "{\"error\":{\"message\":\"boom\"}}\n");
    }

    #[tokio::test]
    async fn streams_ndjson_lines() {
        let b = batch();
        let schema = b.schema();
        let empty = RecordBatch::new_empty(schema.clone());
        let items: Vec<Result<RecordBatch>> = vec![Ok(b.slice(0, 1)), Ok(empty), Ok(b.slice(1, 1)), Err(SqlError::new("lost")), Ok(b.clone())];
        let lines: Vec<String> = continuous_lines(&schema, futures::stream::iter(items).boxed()).collect().await;
        assert_eq!(
            lines.concat(),
            concat!(
                "{\"columns\":[{\"name\":\"a\",\"type\":\"VARCHAR\"},{\"name\":\"n\",\"type\":\"BIGINT\"},{\"name\":\"x\",\"type\":\"DOUBLE\"},{\"name\":\"ok\",\"type\":\"BOOLEAN\"}]}\n",
                "{\"row\":[\"x\",1,1.5,true]}\n",
                "{\"row\":[null,2,null,false]}\n",
                "{\"error\":{\"message\":\"lost\"}}\n",
            )
        );
    }

    #[tokio::test]
    async fn arrow_results_are_ipc_streams() {
        use datafusion::arrow::ipc::reader::StreamReader;
        let r = parse_request(br#"{"sql": "SELECT 1", "format": "arrow"}"#).unwrap();
        assert_eq!(r.format, ResultFormat::Arrow);
        assert!(parse_request(br#"{"sql": "SELECT 1", "format": "xml"}"#).unwrap_err().message.contains("\"arrow\""));

        let b = batch();
        let bytes = ipc_bytes(&b.schema(), &[b.slice(0, 1), b.slice(1, 1)], Some("done")).unwrap();
        let reader = StreamReader::try_new(std::io::Cursor::new(bytes), None).unwrap();
        assert_eq!(reader.schema().metadata.get(MESSAGE_METADATA).map(String::as_str), Some("done"));
        let got: Vec<RecordBatch> = reader.collect::<std::result::Result<_, _>>().unwrap();
        assert_eq!(got.iter().map(|b| b.num_rows()).sum::<usize>(), 2);
        assert_eq!(got[1].column(1), b.slice(1, 1).column(1));

        // A continuous result: schema, one message per non-empty batch, then on an error
        // the end marker and the JSON error.
        let schema = b.schema();
        let items: Vec<Result<RecordBatch>> = vec![Ok(b.slice(0, 1)), Ok(RecordBatch::new_empty(schema.clone())), Ok(b.slice(1, 1)), Err(SqlError::new("lost")), Ok(b.clone())];
        let chunks: Vec<Bytes> = continuous_ipc(schema, futures::stream::iter(items).boxed()).collect().await;
        assert_eq!(chunks.len(), 4, "schema, two batches, end + error");
        let all: Vec<u8> = chunks.concat();
        let mut cursor = std::io::Cursor::new(all);
        let rows: usize = StreamReader::try_new(&mut cursor, None).unwrap().map(|b| b.unwrap().num_rows()).sum();
        assert_eq!(rows, 2);
        let rest = &cursor.get_ref()[cursor.position() as usize..];
        assert_eq!(std::str::from_utf8(rest).unwrap(), "{\"error\":{\"message\":\"lost\"}}");
    }
}
