//! Data-driven SQL tests: every `tests/sql/*.slt` file runs against a fresh single-node
//! broker and engine. A file is blocks separated by blank lines:
//!
//! ```text
//! # a comment
//! statement ok
//! CREATE STREAM s (a VARCHAR) WITH (partitions = 1)
//!
//! statement error
//! SELEC 1
//! ----
//! <the error as the engine prints it>
//!
//! query [rowsort] [eventually]
//! SELECT a FROM s
//! ----
//! a
//! x
//! ```
//!
//! Results print as a header line and one line per row, cells joined by ` | `, `NULL` for
//! null. `rowsort` sorts rows before comparing; `eventually` re-runs the query until it
//! matches (for continuous queries), for up to 60 s. `statement ok` may be followed by
//! `----` and the expected message.
//!
//! `SAMSA_SQL_REGENERATE=1 cargo test -p samsa-sql --test sqltest` rewrites the expected
//! sections with what the engine answers (an `eventually` block first waits for its old
//! answer, so regenerate only after checking a change is right). `SAMSA_SQL_FILE=name`
//! runs one file.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use samsa_broker::BrokerConfig;
use samsa_sql::{Engine, EngineConfig, Output};

#[derive(Debug, Clone)]
struct Block {
    head: String,
    sql: String,
    expected: Option<String>,
    comments: Vec<String>,
}

fn parse_file(text: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut comments = Vec::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        if line.trim().is_empty() {
            continue;
        }
        if line.starts_with('#') {
            comments.push(line.to_string());
            continue;
        }
        let head = line.trim().to_string();
        let mut sql = Vec::new();
        let mut expected = None;
        while let Some(l) = lines.peek() {
            if l.trim().is_empty() {
                break;
            }
            let l = lines.next().unwrap();
            if l == "----" {
                let mut exp = Vec::new();
                while let Some(e) = lines.peek() {
                    if e.trim().is_empty() {
                        break;
                    }
                    exp.push(lines.next().unwrap().to_string());
                }
                expected = Some(exp.join("\n"));
                break;
            }
            sql.push(l.to_string());
        }
        blocks.push(Block { head, sql: sql.join("\n"), expected, comments: std::mem::take(&mut comments) });
    }
    blocks
}

fn render_file(blocks: &[Block]) -> String {
    let mut out = String::new();
    for b in blocks {
        for c in &b.comments {
            out.push_str(c);
            out.push('\n');
        }
        out.push_str(&b.head);
        out.push('\n');
        out.push_str(&b.sql);
        out.push('\n');
        if let Some(e) = &b.expected {
            out.push_str("----\n");
            out.push_str(e);
            out.push('\n');
        }
        out.push('\n');
    }
    out.trim_end().to_string() + "\n"
}

fn render(output: &Output, sort: bool) -> String {
    match output {
        Output::Rows { schema, message, .. } if schema.fields().is_empty() => message.clone().unwrap_or_default(),
        Output::Rows { schema, .. } => {
            let batch = output.batch().unwrap();
            let mut rows: Vec<String> = samsa_sql::format::rows_as_text(&batch)
                .unwrap()
                .into_iter()
                .map(|r| r.into_iter().map(|c| c.unwrap_or_else(|| "NULL".into())).collect::<Vec<_>>().join(" | "))
                .collect();
            if sort {
                rows.sort();
            }
            let header: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
            std::iter::once(header.join(" | ")).chain(rows).collect::<Vec<_>>().join("\n")
        }
        Output::Continuous { .. } => "<continuous>".into(),
    }
}

async fn run_block(engine: &Engine, b: &Block) -> (bool, String) {
    let words: Vec<&str> = b.head.split_whitespace().collect();
    let sort = words.contains(&"rowsort");
    let eventually = words.contains(&"eventually");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let result = engine.execute(&b.sql).await;
        let (ok, actual) = match (words[0], result) {
            ("statement", Ok(o)) => (words.get(1) == Some(&"ok"), render(&o, false)),
            ("statement", Err(e)) => (words.get(1) == Some(&"error"), e.to_string()),
            ("query", Ok(o)) => (true, render(&o, sort)),
            ("query", Err(e)) => (false, e.to_string()),
            (other, _) => panic!("unknown block kind {other}"),
        };
        let matches = ok && b.expected.as_ref().is_none_or(|e| e.trim_end() == actual.trim_end());
        if matches || !eventually || Instant::now() > deadline {
            return (matches, actual);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn run_file(path: &Path, regenerate: bool) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let mut config = BrokerConfig::default();
    config.set_pair("num.partitions=1").unwrap();
    let broker = common::start_broker(&dir.path().join("broker"), config).await;
    let engine = Engine::start(EngineConfig { bootstrap: broker.local_addr().to_string(), state_dir: dir.path().join("sql"), run_queries: true }).await.unwrap();
    let text = std::fs::read_to_string(path).unwrap();
    let mut blocks = parse_file(&text);
    let mut failures = Vec::new();
    for b in blocks.iter_mut() {
        let (ok, actual) = run_block(&engine, b).await;
        let shows = b.head.starts_with("query") || b.head == "statement error" || b.expected.is_some();
        if regenerate {
            if !ok && b.head.starts_with("statement") && b.expected.is_none() {
                failures.push(format!("{}: `{}` failed: {actual}", path.display(), b.sql));
            }
            if shows {
                b.expected = Some(actual);
            }
        } else if !ok {
            failures.push(format!("{}:\n{}\n{}\n-- expected:\n{}\n-- got:\n{actual}\n", path.display(), b.head, b.sql, b.expected.clone().unwrap_or_default()));
        }
    }
    if regenerate {
        std::fs::write(path, render_file(&blocks)).unwrap();
    }
    engine.close().await;
    broker.shutdown().await;
    failures
}

fn files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sql");
    let only = std::env::var("SAMSA_SQL_FILE").ok();
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "slt"))
        .filter(|p| only.as_ref().is_none_or(|o| p.file_stem().is_some_and(|s| s.to_string_lossy() == *o)))
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_files() {
    let regenerate = std::env::var("SAMSA_SQL_REGENERATE").is_ok_and(|v| v == "1");
    let files = files();
    assert!(!files.is_empty(), "no .slt files found");
    let mut failures = Vec::new();
    for f in files {
        eprintln!("running {}", f.display());
        failures.extend(run_file(&f, regenerate).await);
    }
    assert!(failures.is_empty(), "{} block(s) failed:\n{}", failures.len(), failures.join("\n"));
}
