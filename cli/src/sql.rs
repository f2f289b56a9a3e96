//! `samsa sql`: a SQL shell over a server's HTTP API (`POST /sql`, see `samsa_sql::http`).
//!
//! ```text
//!  -e SQL | -f FILE | stdin (not a terminal) | prompt (rustyline, ~/.samsa_sql_history)
//!      └─> samsa_sql::split_statements ─> one POST per statement ─> table | csv | json
//! ```
//!
//! A continuous result (EMIT CHANGES) prints rows as they arrive until Ctrl-C, which closes
//! the connection (the server then stops the query).

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use http_body_util::BodyExt;
use hyper::body::Incoming;
use crate::util::Reply;
use serde::Deserialize;
use serde_json::Value;

/// Arguments of `samsa sql`.
#[derive(clap::Args)]
pub struct SqlArgs {
    /// The server's SQL HTTP address (`samsa server --http-listen`).
    #[arg(long, default_value = "127.0.0.1:8083", value_name = "HOST:PORT")]
    server: String,
    /// Run these statements (separated by `;`) and exit; stops at the first error (exit
    /// code 1).
    #[arg(short = 'e', long = "execute", value_name = "SQL", conflicts_with = "file")]
    execute: Option<String>,
    /// Run the statements of a script file and exit; stops at the first error (exit code
    /// 1), naming the statement.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    file: Option<PathBuf>,
    /// How results are printed: an aligned table, CSV with a header line, or one JSON
    /// object per row. With csv and json, messages of DDL statements go to stderr.
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    format: OutputFormat,
    /// A property sent with every statement, e.g. -p auto.offset.reset=earliest for EMIT
    /// CHANGES from the beginning, or -p isolation.level=read_uncommitted (repeatable).
    #[arg(short = 'p', long = "property", value_name = "KEY=VALUE")]
    property: Vec<String>,
}

/// Output formats of `samsa sql`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// An aligned text table followed by the row count.
    Table,
    /// A header line, then one line per row (RFC 4180 quoting).
    Csv,
    /// One JSON object per row, column name to value.
    Json,
}

/// Runs `samsa sql`.
pub async fn run(args: SqlArgs) -> Result<(), String> {
    let mut properties = BTreeMap::new();
    for p in &args.property {
        let (k, v) = p.split_once('=').ok_or_else(|| format!("--property {p}: expected KEY=VALUE"))?;
        properties.insert(k.trim().to_string(), v.trim().to_string());
    }
    let shell = Shell { server: args.server.clone(), properties, format: args.format };
    let (text, source) = if let Some(sql) = &args.execute {
        (sql.clone(), "-e".to_string())
    } else if let Some(path) = &args.file {
        (std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?, path.display().to_string())
    } else if !std::io::stdin().is_terminal() {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text).map_err(|e| format!("cannot read stdin: {e}"))?;
        (text, "stdin".to_string())
    } else {
        return shell.interactive().await;
    };
    match shell.run_text(&text, &source, false).await? {
        Ended::Done | Ended::Stopped => Ok(()),
        Ended::Interrupted => Err("interrupted".into()),
    }
}

/// How a statement (or a run of them) ended.
#[derive(Debug, PartialEq)]
enum Ended {
    /// It ran to its end.
    Done,
    /// Ctrl-C stopped a continuous result: its normal end.
    Stopped,
    /// Ctrl-C cut a statement short.
    Interrupted,
}

type Sigint = tokio::signal::unix::Signal;

struct Shell {
    server: String,
    properties: BTreeMap<String, String>,
    format: OutputFormat,
}

/// An error as the server sends it (`samsa_sql::SqlError`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
struct ErrorJson {
    message: String,
    #[serde(default)]
    position: Option<PositionJson>,
    #[serde(default)]
    hint: Option<String>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq)]
struct PositionJson {
    line: u64,
    column: u64,
}

#[derive(Debug, Deserialize)]
struct ColumnJson {
    name: String,
}

#[derive(Debug, Deserialize)]
struct RowsJson {
    #[serde(default)]
    columns: Vec<ColumnJson>,
    #[serde(default)]
    rows: Vec<Vec<Value>>,
    #[serde(default)]
    message: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ErrorBody {
    error: ErrorJson,
}

/// Why a statement failed.
enum Failure {
    /// The engine refused it.
    Sql(ErrorJson),
    /// The server could not be reached or answered nonsense.
    Other(String),
}

impl From<String> for Failure {
    fn from(s: String) -> Failure {
        Failure::Other(s)
    }
}

impl Shell {
    /// Runs every statement of `text` (from `source`: "-e", a file name, "stdin", the
    /// prompt's input), stopping at the first failure or Ctrl-C.
    async fn run_text(&self, text: &str, source: &str, interactive: bool) -> Result<Ended, String> {
        let pieces = match samsa_sql::split_statements(text) {
            Ok(p) => p,
            Err(e) => {
                let e = ErrorJson { message: e.message, position: e.position.map(|p| PositionJson { line: p.line, column: p.column }), hint: e.hint };
                print_error(&e, interactive.then_some(text));
                return Err(format!("cannot split the statements of {source}"));
            }
        };
        let count = pieces.len();
        for (i, piece) in pieces.iter().enumerate() {
            match self.run_statement(&piece.sql).await {
                Ok(Ended::Done) => {}
                Ok(ended) => return Ok(ended),
                Err(Failure::Sql(mut e)) => {
                    if let Some(p) = &mut e.position {
                        *p = shift(*p, piece.line_offset, piece.column_offset);
                    }
                    print_error(&e, interactive.then_some(text));
                    let first = piece.sql.lines().next().unwrap_or_default();
                    let first = if first.chars().count() > 60 { format!("{}...", first.chars().take(60).collect::<String>()) } else { first.to_string() };
                    let which = if count == 1 && interactive { "the statement".to_string() } else { format!("statement {} of {count} in {source}", i + 1) };
                    return Err(format!("{which} failed (line {}: {first})", piece.line_offset + 1));
                }
                Err(Failure::Other(msg)) => return Err(msg),
            }
        }
        Ok(Ended::Done)
    }

    /// Sends one statement and prints its result; Ctrl-C stops it.
    async fn run_statement(&self, sql: &str) -> Result<Ended, Failure> {
        let mut sigint = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()).map_err(|e| format!("cannot handle Ctrl-C: {e}"))?;
        let ended = self.execute(sql, &mut sigint).await;
        if matches!(ended, Ok(Ended::Interrupted)) {
            eprintln!();
        }
        ended
    }

    async fn execute(&self, sql: &str, sigint: &mut Sigint) -> Result<Ended, Failure> {
        let body = serde_json::json!({ "sql": sql, "properties": self.properties }).to_string();
        let mut resp = tokio::select! {
            r = post(&self.server, body) => r?,
            _ = sigint.recv() => return Ok(Ended::Interrupted),
        };
        let status = resp.response.status();
        let ndjson = resp
            .response
            .headers()
            .get(hyper::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with(samsa_sql::http::NDJSON));
        if status.is_success() && ndjson {
            return self.print_continuous(&mut resp, sigint).await;
        }
        let bytes = tokio::select! {
            b = resp.response.body_mut().collect() => b.map_err(|e| format!("reading the answer of {}: {e}", self.server))?.to_bytes(),
            _ = sigint.recv() => return Ok(Ended::Interrupted),
        };
        if !status.is_success() {
            return match serde_json::from_slice::<ErrorBody>(&bytes) {
                Ok(b) => Err(Failure::Sql(b.error)),
                Err(_) => Err(Failure::Other(format!("the server at {} answered {status}: {}", self.server, String::from_utf8_lossy(&bytes).trim()))),
            };
        }
        let rows: RowsJson = serde_json::from_slice(&bytes).map_err(|e| format!("the server at {} answered with bad JSON ({e})", self.server))?;
        let columns: Vec<String> = rows.columns.into_iter().map(|c| c.name).collect();
        let mut out = String::new();
        if !columns.is_empty() {
            out = match self.format {
                OutputFormat::Table => {
                    let cells: Vec<Vec<String>> = rows.rows.iter().map(|r| r.iter().map(table_cell).collect()).collect();
                    format!("{}{}\n", format_table(&columns, &cells), row_count(cells.len()))
                }
                OutputFormat::Csv => {
                    let mut s = csv_line(&columns.iter().map(|c| Value::String(c.clone())).collect::<Vec<_>>());
                    for r in &rows.rows {
                        s.push_str(&csv_line(r));
                    }
                    s
                }
                OutputFormat::Json => rows.rows.iter().map(|r| json_line(&columns, r)).collect(),
            };
        }
        if let Some(m) = &rows.message {
            match self.format {
                OutputFormat::Table => out.push_str(&format!("{m}\n")),
                _ => eprintln!("{m}"),
            }
        }
        write_out(&out);
        Ok(Ended::Done)
    }

    /// Prints the rows of a continuous result as they arrive, until the server ends it or
    /// Ctrl-C (the caller then drops the reply, closing the connection: the query stops).
    async fn print_continuous(&self, resp: &mut Reply, sigint: &mut Sigint) -> Result<Ended, Failure> {
        let mut lines = NdjsonLines { buf: Vec::new() };
        let mut columns: Vec<String> = Vec::new();
        let mut widths: Vec<usize> = Vec::new();
        let mut n = 0usize;
        let mut ended = Ended::Done;
        loop {
            let next = tokio::select! {
                l = lines.next(resp.response.body_mut()) => l,
                _ = sigint.recv() => {
                    ended = Ended::Stopped;
                    break;
                }
            };
            let line = match next {
                Ok(Some(l)) => l,
                Ok(None) => break,
                Err(e) => return Err(Failure::Other(format!("the continuous result from {} broke off: {e}", self.server))),
            };
            let v: Value = serde_json::from_str(&line).map_err(|e| format!("the server at {} sent a bad line ({e}): {line}", self.server))?;
            if let Some(cols) = v.get("columns").and_then(Value::as_array) {
                columns = cols.iter().map(|c| c.get("name").and_then(Value::as_str).unwrap_or_default().to_string()).collect();
                match self.format {
                    OutputFormat::Table => {
                        // Rows come one by one: columns are as wide as their names (at least 10).
                        widths = columns.iter().map(|c| c.chars().count().max(10)).collect();
                        write_out(&aligned_line(&widths, &columns));
                    }
                    OutputFormat::Csv => write_out(&csv_line(&columns.iter().map(|c| Value::String(c.clone())).collect::<Vec<_>>())),
                    OutputFormat::Json => {}
                }
            } else if let Some(row) = v.get("row").and_then(Value::as_array) {
                n += 1;
                let text = match self.format {
                    OutputFormat::Table => aligned_line(&widths, &row.iter().map(table_cell).collect::<Vec<_>>()),
                    OutputFormat::Csv => csv_line(row),
                    OutputFormat::Json => json_line(&columns, row),
                };
                write_out(&text);
            } else if let Some(err) = v.get("error") {
                let e: ErrorJson = serde_json::from_value(err.clone()).map_err(|_| format!("the server at {} sent a bad error line: {line}", self.server))?;
                return Err(Failure::Sql(e));
            }
        }
        if ended == Ended::Stopped {
            eprintln!();
        }
        if self.format == OutputFormat::Table {
            write_out(&format!("{}\n", row_count(n)));
        }
        Ok(ended)
    }

    /// The prompt: statements end at a `;` outside quotes and comments; Ctrl-C clears the
    /// input (or stops a running query), Ctrl-D leaves.
    async fn interactive(&self) -> Result<(), String> {
        use rustyline::error::ReadlineError;
        let config = rustyline::Config::builder().max_history_size(1000).map_err(|e| e.to_string())?.auto_add_history(false).build();
        let mut rl = rustyline::DefaultEditor::with_config(config).map_err(|e| format!("cannot start the line editor: {e}"))?;
        let history = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".samsa_sql_history"));
        if let Some(h) = &history {
            let _ = rl.load_history(h);
        }
        println!("samsa sql on {}: end statements with ;, Ctrl-D or quit leaves", self.server);
        let mut buf = String::new();
        loop {
            let prompt = if buf.is_empty() { "samsa> " } else { "    -> " };
            match tokio::task::block_in_place(|| rl.readline(prompt)) {
                Ok(line) => {
                    if buf.is_empty() && matches!(line.trim().trim_end_matches(';').trim(), "quit" | "exit" | "\\q") {
                        break;
                    }
                    if buf.is_empty() && line.trim().is_empty() {
                        continue;
                    }
                    buf.push_str(&line);
                    buf.push('\n');
                    if !statement_complete(&buf) {
                        continue;
                    }
                    let text = std::mem::take(&mut buf);
                    let _ = rl.add_history_entry(text.trim_end());
                    if let Err(msg) = self.run_text(&text, "the input", true).await {
                        if !msg.starts_with("the statement failed") {
                            eprintln!("{msg}");
                        }
                    }
                }
                Err(ReadlineError::Interrupted) => buf.clear(),
                Err(ReadlineError::Eof) => break,
                Err(e) => return Err(format!("reading input: {e}")),
            }
        }
        if let Some(h) = &history {
            let _ = rl.save_history(h);
        }
        Ok(())
    }
}

/// POSTs `body` to `http://server/sql` over a fresh connection.
async fn post(server: &str, body: String) -> Result<Reply, String> {
    crate::util::http_send(server, hyper::Method::POST, "/sql", Some(body)).await
}

/// Splits a streamed body into lines.
struct NdjsonLines {
    buf: Vec<u8>,
}

impl NdjsonLines {
    /// The next non-empty line, or `None` at the end of the body.
    async fn next(&mut self, body: &mut Incoming) -> Result<Option<String>, String> {
        loop {
            if let Some(at) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=at).collect();
                let line = String::from_utf8_lossy(&line).trim().to_string();
                if line.is_empty() {
                    continue;
                }
                return Ok(Some(line));
            }
            match body.frame().await {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.buf.extend_from_slice(&data);
                    }
                }
                Some(Err(e)) => return Err(e.to_string()),
                None => {
                    let rest = String::from_utf8_lossy(&std::mem::take(&mut self.buf)).trim().to_string();
                    return Ok((!rest.is_empty()).then_some(rest));
                }
            }
        }
    }
}

/// Moves a statement-relative position to the script (as `SqlError::shifted`).
fn shift(p: PositionJson, line_offset: u64, column_offset: u64) -> PositionJson {
    PositionJson { line: p.line + line_offset, column: if p.line == 1 { p.column + column_offset } else { p.column } }
}

/// Prints an error on stderr; with the statement text, a caret under the position.
fn print_error(e: &ErrorJson, text: Option<&str>) {
    eprint!("{}", error_text(e, text));
}

fn error_text(e: &ErrorJson, text: Option<&str>) -> String {
    let mut out = format!("error: {}\n", e.message);
    if let Some(p) = e.position {
        if let Some(line) = text.and_then(|t| t.lines().nth(p.line.saturating_sub(1) as usize)) {
            let pad: String = line.chars().take(p.column.saturating_sub(1) as usize).map(|c| if c == '\t' { '\t' } else { ' ' }).collect();
            out.push_str(&format!("  {line}\n  {pad}^\n"));
        }
        out.push_str(&format!("  at line {}, column {}\n", p.line, p.column));
    }
    if let Some(h) = &e.hint {
        out.push_str(&format!("  hint: {h}\n"));
    }
    out
}

/// Whether `text` ends with a complete statement: its last character outside quotes and
/// comments is `;`.
fn statement_complete(text: &str) -> bool {
    #[derive(PartialEq)]
    enum S {
        Code,
        Quote(char),
        LineComment,
        BlockComment,
    }
    let mut state = S::Code;
    let mut last = None;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match state {
            S::Code => match c {
                '\'' | '"' | '`' => {
                    state = S::Quote(c);
                    last = Some(c);
                }
                '-' if chars.peek() == Some(&'-') => {
                    chars.next();
                    state = S::LineComment;
                }
                '/' if chars.peek() == Some(&'*') => {
                    chars.next();
                    state = S::BlockComment;
                }
                c if c.is_whitespace() => {}
                c => last = Some(c),
            },
            S::Quote(q) => {
                if c == q {
                    state = S::Code;
                }
            }
            S::LineComment => {
                if c == '\n' {
                    state = S::Code;
                }
            }
            S::BlockComment => {
                if c == '*' && chars.peek() == Some(&'/') {
                    chars.next();
                    state = S::Code;
                }
            }
        }
    }
    matches!(state, S::Code | S::LineComment) && last == Some(';')
}

fn row_count(n: usize) -> String {
    if n == 1 {
        "(1 row)".to_string()
    } else {
        format!("({n} rows)")
    }
}

/// A cell for the table: text as is, NULL for null.
fn table_cell(v: &Value) -> String {
    match v {
        Value::Null => "NULL".to_string(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Columns padded to the widest cell, two spaces apart (as the other samsa tools print).
fn format_table(header: &[String], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = aligned_line(&widths, header);
    for row in rows {
        out.push_str(&aligned_line(&widths, row));
    }
    out
}

fn aligned_line(widths: &[usize], cells: &[String]) -> String {
    let parts: Vec<String> = cells.iter().enumerate().map(|(i, c)| format!("{:<w$}", c, w = widths.get(i).copied().unwrap_or(0))).collect();
    format!("{}\n", parts.join("  ").trim_end())
}

/// One CSV line (null as an empty field; quotes when needed).
fn csv_line(cells: &[Value]) -> String {
    let fields: Vec<String> = cells
        .iter()
        .map(|v| {
            let s = match v {
                Value::Null => String::new(),
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            if s.contains([',', '"', '\n', '\r']) {
                format!("\"{}\"", s.replace('"', "\"\""))
            } else {
                s
            }
        })
        .collect();
    format!("{}\n", fields.join(","))
}

/// One row as a JSON object, keys in column order.
fn json_line(columns: &[String], row: &[Value]) -> String {
    let fields: Vec<String> = columns.iter().zip(row).map(|(c, v)| format!("{}:{}", Value::String(c.clone()), v)).collect();
    format!("{{{}}}\n", fields.join(","))
}

/// Writes to stdout and flushes; a closed stdout (`| head`) ends the program quietly.
fn write_out(s: &str) {
    if s.is_empty() {
        return;
    }
    let mut out = std::io::stdout().lock();
    if out.write_all(s.as_bytes()).and_then(|_| out.flush()).is_err() {
        std::process::exit(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn statements_end_at_a_semicolon_outside_quotes_and_comments() {
        assert!(statement_complete("SELECT 1;"));
        assert!(statement_complete("SELECT 1;\n"));
        assert!(statement_complete("SELECT 1; -- done\n"));
        assert!(statement_complete("SELECT 1; SELECT 2;"));
        assert!(!statement_complete("SELECT 1"));
        assert!(!statement_complete("SELECT 1; SELECT 2"));
        assert!(!statement_complete("SELECT ';"));
        assert!(statement_complete("SELECT ';';"));
        assert!(statement_complete("SELECT 'it''s';"));
        assert!(!statement_complete("SELECT 1 -- ;\n"));
        assert!(!statement_complete("SELECT 1 /* ; */"));
        assert!(statement_complete("SELECT \"a;\" FROM t /* x */;"));
    }

    #[test]
    fn formats_rows() {
        let cols = vec!["a".to_string(), "n".to_string()];
        let rows = vec![vec!["x".to_string(), "1".to_string()], vec!["longer".to_string(), "NULL".to_string()]];
        assert_eq!(format_table(&cols, &rows), "a       n\nx       1\nlonger  NULL\n");
        assert_eq!(csv_line(&[json!("a,b"), json!("say \"hi\""), Value::Null, json!(2.5), json!(true)]), "\"a,b\",\"say \"\"hi\"\"\",,2.5,true\n");
        assert_eq!(json_line(&cols, &[json!("x"), json!(1)]), "{\"a\":\"x\",\"n\":1}\n");
        assert_eq!(json_line(&["z".into(), "a".into()], &[Value::Null, json!("q")]), "{\"z\":null,\"a\":\"q\"}\n");
        assert_eq!(row_count(1), "(1 row)");
        assert_eq!(row_count(0), "(0 rows)");
    }

    #[test]
    fn errors_show_position_caret_and_hint() {
        let e = ErrorJson {
            message: "Expected: an SQL statement, found: SELEC".into(),
            position: Some(PositionJson { line: 2, column: 3 }),
            hint: Some("did you mean SELECT instead of SELEC?".into()),
        };
        assert_eq!(
            error_text(&e, Some("SELECT 1;\n  SELEC 1;\n")),
            "error: Expected: an SQL statement, found: SELEC\n    SELEC 1;\n    ^\n  at line 2, column 3\n  hint: did you mean SELECT instead of SELEC?\n"
        );
        assert_eq!(error_text(&ErrorJson { message: "boom".into(), position: None, hint: None }, None), "error: boom\n");
        assert_eq!(shift(PositionJson { line: 1, column: 3 }, 2, 4), PositionJson { line: 3, column: 7 });
        assert_eq!(shift(PositionJson { line: 2, column: 3 }, 2, 4), PositionJson { line: 4, column: 3 });
    }
}
