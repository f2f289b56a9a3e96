//! Splitting scripts into statements and recognising Samsa's own statements (stream and
//! table DDL, SHOW, DESCRIBE, DROP, TERMINATE, persistent queries, EMIT CHANGES). Anything
//! else is a query for DataFusion.

use std::collections::BTreeMap;

use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::tokenizer::{Location, Token, TokenWithSpan, Tokenizer};

use crate::catalog::SourceKind;
use crate::error::{Position, Result, SqlError};
use crate::format::{canonical_type, Column};

/// One statement of a script, with where it starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Piece {
    /// The statement text (no trailing semicolon).
    pub sql: String,
    /// Lines before the statement's first line in the script.
    pub line_offset: u64,
    /// Columns before the statement on its first line.
    pub column_offset: u64,
}

/// Splits a script on top-level semicolons (not inside strings or comments).
pub fn split_statements(script: &str) -> Result<Vec<Piece>> {
    let toks = tokenize(script)?;
    let mut out = Vec::new();
    let mut start: Option<Location> = None;
    for t in &toks {
        match t.token {
            Token::SemiColon => {
                if let Some(s) = start.take() {
                    let from = byte_offset(script, s);
                    let to = byte_offset(script, t.span.start);
                    out.push(Piece { sql: script[from..to].trim_end().to_string(), line_offset: s.line - 1, column_offset: s.column - 1 });
                }
            }
            Token::Whitespace(_) => {}
            _ if start.is_none() => start = Some(t.span.start),
            _ => {}
        }
    }
    if let Some(s) = start {
        let from = byte_offset(script, s);
        out.push(Piece { sql: script[from..].trim_end().to_string(), line_offset: s.line - 1, column_offset: s.column - 1 });
    }
    Ok(out)
}

/// A statement, as the engine runs it.
#[derive(Debug, Clone, PartialEq)]
pub enum Statement {
    /// `SHOW STREAMS | TABLES | TOPICS | QUERIES`.
    Show(String),
    /// `DESCRIBE name`.
    Describe(String),
    /// `DROP STREAM | TABLE [IF EXISTS] name [DELETE TOPIC]`.
    Drop {
        /// Stream or table.
        kind: SourceKind,
        /// Name.
        name: String,
        /// No error when it does not exist.
        if_exists: bool,
        /// Also delete the topic.
        delete_topic: bool,
    },
    /// `TERMINATE query_id`.
    Terminate(String),
    /// `CREATE SOURCE | SINK CONNECTOR [IF NOT EXISTS] name WITH ('key' = 'value', ...)`.
    CreateConnector {
        /// A source (else a sink).
        source: bool,
        /// Name.
        name: String,
        /// Its config, keys as written.
        config: BTreeMap<String, String>,
        /// No error when it exists.
        if_not_exists: bool,
    },
    /// `DESCRIBE CONNECTOR name`.
    DescribeConnector(String),
    /// `DROP CONNECTOR [IF EXISTS] name`.
    DropConnector {
        /// Name.
        name: String,
        /// No error when it does not exist.
        if_exists: bool,
    },
    /// `CREATE STREAM | TABLE name (columns) [PRIMARY KEY (col)] WITH (...)`.
    CreateSource {
        /// Stream or table.
        kind: SourceKind,
        /// Name.
        name: String,
        /// Declared columns.
        columns: Vec<Column>,
        /// Primary key column (tables).
        primary_key: Option<String>,
        /// WITH options, keys lower-cased.
        options: BTreeMap<String, String>,
        /// No error when it exists.
        if_not_exists: bool,
    },
    /// `CREATE STREAM | TABLE name [WITH (...)] AS SELECT ...`.
    CreateAs {
        /// Stream or table.
        kind: SourceKind,
        /// Name.
        name: String,
        /// WITH options.
        options: BTreeMap<String, String>,
        /// The SELECT.
        select: String,
        /// No error (and no new query) when a stream or table of that name exists.
        if_not_exists: bool,
        /// Lines/columns before the SELECT in the statement (for error positions).
        select_at: (u64, u64),
    },
    /// `INSERT INTO name SELECT ...` (a persistent query).
    InsertSelect {
        /// The stream written.
        sink: String,
        /// The SELECT.
        select: String,
        /// Where the SELECT starts.
        select_at: (u64, u64),
    },
    /// `INSERT INTO name VALUES ...` without a column list.
    InsertValues {
        /// The stream or table.
        table: String,
        /// `INSERT INTO name `.
        prefix: String,
        /// `VALUES ...`.
        values: String,
    },
    /// A query or DML for DataFusion; `emit_changes` for `... EMIT CHANGES`.
    Query {
        /// The SQL (without EMIT CHANGES).
        sql: String,
        /// Continuous.
        emit_changes: bool,
    },
}

fn tokenize(sql: &str) -> Result<Vec<TokenWithSpan>> {
    Tokenizer::new(&GenericDialect {}, sql).tokenize_with_location().map_err(|e| {
        let msg = e.to_string();
        SqlError::new(msg.split(" at Line").next().unwrap_or(&msg).to_string()).at(crate::error::parse_position(&msg))
    })
}

/// Byte offset of a (1-based line, 1-based char column) location.
fn byte_offset(sql: &str, loc: Location) -> usize {
    let mut line = 1u64;
    let mut col = 1u64;
    for (i, c) in sql.char_indices() {
        if line == loc.line && col == loc.column {
            return i;
        }
        if c == '\n' {
            line += 1;
            col = 1;
        } else {
            col += 1;
        }
    }
    sql.len()
}

fn pos(t: &TokenWithSpan) -> Option<Position> {
    Some(Position { line: t.span.start.line, column: t.span.start.column })
}

struct Cursor<'a> {
    sql: &'a str,
    toks: Vec<TokenWithSpan>,
    i: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<&TokenWithSpan> {
        self.toks.get(self.i)
    }
    fn word(&self, n: usize) -> Option<String> {
        match self.toks.get(self.i + n).map(|t| &t.token) {
            Some(Token::Word(w)) if w.quote_style.is_none() => Some(w.value.to_ascii_uppercase()),
            _ => None,
        }
    }
    fn is(&self, kw: &str) -> bool {
        self.word(0).as_deref() == Some(kw)
    }
    fn eat(&mut self, kw: &str) -> bool {
        let hit = self.is(kw);
        if hit {
            self.i += 1;
        }
        hit
    }
    fn err(&self, what: &str) -> SqlError {
        match self.peek() {
            Some(t) => SqlError::new(format!("expected {what}, found {}", t.token)).at(pos(t)),
            None => SqlError::new(format!("expected {what}, found the end of the statement")),
        }
    }
    fn expect(&mut self, kw: &str) -> Result<()> {
        if self.eat(kw) {
            Ok(())
        } else {
            Err(self.err(kw))
        }
    }
    fn expect_token(&mut self, tok: Token, what: &str) -> Result<()> {
        if self.peek().map(|t| &t.token) == Some(&tok) {
            self.i += 1;
            Ok(())
        } else {
            Err(self.err(what))
        }
    }
    /// An identifier: unquoted ones lower-cased (as DataFusion does), quoted kept.
    fn ident(&mut self, what: &str) -> Result<String> {
        match self.peek().map(|t| &t.token) {
            Some(Token::Word(w)) => {
                let v = if w.quote_style.is_some() { w.value.clone() } else { w.value.to_ascii_lowercase() };
                self.i += 1;
                Ok(v)
            }
            _ => Err(self.err(what)),
        }
    }
    fn done(&self) -> bool {
        self.i >= self.toks.len()
    }
    fn rest_from_here(&self) -> (String, (u64, u64)) {
        match self.peek() {
            Some(t) => {
                let at = byte_offset(self.sql, t.span.start);
                (self.sql[at..].to_string(), (t.span.start.line - 1, t.span.start.column - 1))
            }
            None => (String::new(), (0, 0)),
        }
    }
    /// `IF` followed by `words` (`IF EXISTS`, `IF NOT EXISTS`): whether it is there.
    fn if_words(&mut self, words: &[&str]) -> Result<bool> {
        if !self.eat("IF") {
            return Ok(false);
        }
        for w in words {
            self.expect(w)?;
        }
        Ok(true)
    }

    /// `PRIMARY KEY (col)`, at PRIMARY.
    fn primary_key(&mut self) -> Result<String> {
        self.expect("PRIMARY")?;
        self.expect("KEY")?;
        self.expect_token(Token::LParen, "(")?;
        let col = self.ident("a column")?;
        self.expect_token(Token::RParen, ") (one key column)")?;
        Ok(col)
    }

    fn options(&mut self) -> Result<BTreeMap<String, String>> {
        self.options_cased(true)
    }

    /// `WITH (...)` options; `lower`: keys lower-cased (connector configs keep theirs).
    fn options_cased(&mut self, lower: bool) -> Result<BTreeMap<String, String>> {
        let mut out = BTreeMap::new();
        self.expect_token(Token::LParen, "( after WITH")?;
        loop {
            let key = match self.peek().map(|t| &t.token) {
                Some(Token::Word(w)) if lower => w.value.to_ascii_lowercase(),
                Some(Token::SingleQuotedString(s)) if lower => s.to_ascii_lowercase(),
                Some(Token::Word(w)) => w.value.clone(),
                Some(Token::SingleQuotedString(s)) => s.clone(),
                _ => return Err(self.err("an option name")),
            };
            self.i += 1;
            // Dotted names (kafka.topic) come as several tokens.
            let mut key = key;
            while self.peek().map(|t| &t.token) == Some(&Token::Period) {
                self.i += 1;
                key.push('.');
                key.push_str(&self.ident("an option name")?);
            }
            self.expect_token(Token::Eq, "= after an option name")?;
            let value = match self.peek().map(|t| &t.token) {
                Some(Token::SingleQuotedString(s)) => s.clone(),
                Some(Token::Number(n, _)) => n.clone(),
                Some(Token::Word(w)) => w.value.clone(),
                _ => return Err(self.err("an option value")),
            };
            self.i += 1;
            out.insert(key, value);
            if self.peek().map(|t| &t.token) == Some(&Token::Comma) {
                self.i += 1;
                continue;
            }
            self.expect_token(Token::RParen, ", or )")?;
            return Ok(out);
        }
    }
}

/// Recognises one statement.
pub fn parse(sql: &str) -> Result<Statement> {
    let toks: Vec<TokenWithSpan> = tokenize(sql)?.into_iter().filter(|t| !matches!(t.token, Token::Whitespace(_) | Token::SemiColon)).collect();
    // EMIT CHANGES at the end makes any query continuous.
    let n = toks.len();
    let is_word = |t: &TokenWithSpan, kw: &str| matches!(&t.token, Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(kw));
    let emit_changes = n >= 2 && is_word(&toks[n - 2], "EMIT") && is_word(&toks[n - 1], "CHANGES");
    let (sql, toks) = if emit_changes {
        let cut = byte_offset(sql, toks[n - 2].span.start);
        (sql[..cut].trim_end(), toks[..n - 2].to_vec())
    } else {
        (sql, toks)
    };
    let mut c = Cursor { sql, toks, i: 0 };
    let query = || Ok(Statement::Query { sql: sql.to_string(), emit_changes });
    let stmt = match c.word(0).as_deref() {
        Some("SHOW") if matches!(c.word(1).as_deref(), Some("STREAMS" | "TABLES" | "TOPICS" | "QUERIES" | "CONNECTORS")) => {
            let what = c.word(1).unwrap();
            c.i += 2;
            Statement::Show(what)
        }
        Some("DESCRIBE") | Some("DESC") if c.word(1).as_deref() == Some("CONNECTOR") => {
            c.i += 2;
            Statement::DescribeConnector(c.ident("a connector name")?)
        }
        Some("DROP") if c.word(1).as_deref() == Some("CONNECTOR") => {
            c.i += 2;
            let if_exists = c.if_words(&["EXISTS"])?;
            Statement::DropConnector { name: c.ident("a connector name")?, if_exists }
        }
        Some("CREATE") if matches!(c.word(1).as_deref(), Some("SOURCE" | "SINK")) && c.word(2).as_deref() == Some("CONNECTOR") => {
            let source = c.word(1).as_deref() == Some("SOURCE");
            c.i += 3;
            let if_not_exists = c.if_words(&["NOT", "EXISTS"])?;
            let name = c.ident("a connector name")?;
            c.expect("WITH")?;
            Statement::CreateConnector { source, name, config: c.options_cased(false)?, if_not_exists }
        }
        Some("DESCRIBE") | Some("DESC") => {
            c.i += 1;
            Statement::Describe(c.ident("a stream or table name")?)
        }
        Some("TERMINATE") => {
            c.i += 1;
            // Query ids are upper-case; accept them in any case.
            Statement::Terminate(c.ident("a query id (SHOW QUERIES lists them)")?.to_ascii_uppercase())
        }
        Some("DROP") if matches!(c.word(1).as_deref(), Some("STREAM" | "TABLE")) => {
            let kind = if c.word(1).as_deref() == Some("STREAM") { SourceKind::Stream } else { SourceKind::Table };
            c.i += 2;
            let if_exists = c.if_words(&["EXISTS"])?;
            let name = c.ident("a name")?;
            let delete_topic = if c.eat("DELETE") {
                c.expect("TOPIC")?;
                true
            } else {
                false
            };
            Statement::Drop { kind, name, if_exists, delete_topic }
        }
        Some("CREATE") if matches!(c.word(1).as_deref(), Some("STREAM" | "TABLE")) => {
            let kind = if c.word(1).as_deref() == Some("STREAM") { SourceKind::Stream } else { SourceKind::Table };
            c.i += 2;
            let if_not_exists = c.if_words(&["NOT", "EXISTS"])?;
            let name = c.ident("a name")?;
            if c.is("WITH") || c.is("AS") {
                let options = if c.eat("WITH") { c.options()? } else { BTreeMap::new() };
                c.expect("AS")?;
                let (select, select_at) = c.rest_from_here();
                if select.is_empty() {
                    return Err(c.err("a SELECT after AS"));
                }
                return Ok(Statement::CreateAs { kind, name, options, select, select_at, if_not_exists });
            }
            c.expect_token(Token::LParen, "( and the column list, or AS SELECT")?;
            let mut columns = Vec::new();
            let mut primary_key = None;
            loop {
                if c.is("PRIMARY") {
                    primary_key = Some(c.primary_key()?);
                } else {
                    let col_tok = c.peek().cloned();
                    let col = c.ident("a column name")?;
                    // The type: words up to , ) or PRIMARY, with (n) parts.
                    let mut ty = String::new();
                    while let Some(t) = c.peek() {
                        match &t.token {
                            Token::Comma | Token::RParen => break,
                            Token::Word(w) if w.value.eq_ignore_ascii_case("PRIMARY") || w.value.eq_ignore_ascii_case("WITH") => break,
                            Token::LParen => {
                                while let Some(t) = c.peek() {
                                    let close = t.token == Token::RParen;
                                    c.i += 1;
                                    if close {
                                        break;
                                    }
                                }
                            }
                            other => {
                                if !ty.is_empty() {
                                    ty.push(' ');
                                }
                                ty.push_str(&other.to_string());
                                c.i += 1;
                            }
                        }
                    }
                    if ty.is_empty() {
                        return Err(c.err(&format!("a type for column {col}")));
                    }
                    let sql_type = canonical_type(&ty).map_err(|e| e.at(col_tok.as_ref().and_then(pos)))?;
                    if c.eat("PRIMARY") {
                        c.expect("KEY")?;
                        primary_key = Some(col.clone());
                    }
                    if columns.iter().any(|x: &Column| x.name == col) {
                        return Err(SqlError::new(format!("column {col} is declared twice")).at(col_tok.as_ref().and_then(pos)));
                    }
                    columns.push(Column { name: col, sql_type: sql_type.to_string() });
                }
                if c.peek().map(|t| &t.token) == Some(&Token::Comma) {
                    c.i += 1;
                    continue;
                }
                c.expect_token(Token::RParen, ", or ) in the column list")?;
                break;
            }
            if c.is("PRIMARY") {
                primary_key = Some(c.primary_key()?);
            }
            let options = if c.eat("WITH") { c.options()? } else { BTreeMap::new() };
            Statement::CreateSource { kind, name, columns, primary_key, options, if_not_exists }
        }
        Some("INSERT") if c.word(1).as_deref() == Some("INTO") => {
            let save = c.i;
            c.i += 2;
            let sink = c.ident("a stream name")?;
            if c.is("SELECT") || c.is("WITH") {
                let (select, select_at) = c.rest_from_here();
                return Ok(Statement::InsertSelect { sink, select, select_at });
            }
            if !c.is("VALUES") {
                c.i = save;
                return query();
            }
            // Without a column list, VALUES give the declared columns (not the metadata ones).
            let at = c.peek().map(|t| byte_offset(sql, t.span.start)).unwrap_or(sql.len());
            return Ok(Statement::InsertValues { table: sink, prefix: sql[..at].to_string(), values: sql[at..].to_string() });
        }
        _ => return query(),
    };
    if !c.done() {
        return Err(c.err("the end of the statement"));
    }
    if emit_changes {
        return Err(SqlError::new("EMIT CHANGES goes at the end of a SELECT"));
    }
    Ok(stmt)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_scripts_on_top_level_semicolons() {
        let p = split_statements("SELECT 'a;b';\n  SELECT 2 -- c;\n;").unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].sql, "SELECT 'a;b'");
        assert_eq!((p[1].line_offset, p[1].column_offset), (1, 2));
        assert_eq!(p[1].sql, "SELECT 2 -- c;");
    }

    #[test]
    fn parses_create_stream_and_table() {
        let s = parse("CREATE STREAM pv (page VARCHAR, \"userId\" BIGINT, ts TIMESTAMP) WITH (topic = 'pageviews', format = 'json', partitions = 3)").unwrap();
        let Statement::CreateSource { kind, name, columns, options, .. } = s else { panic!() };
        assert_eq!((kind, name.as_str()), (SourceKind::Stream, "pv"));
        assert_eq!(columns[1], Column { name: "userId".into(), sql_type: "BIGINT".into() });
        assert_eq!(options.get("partitions").map(String::as_str), Some("3"));
        let s = parse("create table users (id varchar, name text) primary key (id) with (topic='users')").unwrap();
        let Statement::CreateSource { kind, primary_key, .. } = s else { panic!() };
        assert_eq!((kind, primary_key.as_deref()), (SourceKind::Table, Some("id")));
        let e = parse("CREATE STREAM s (a BLOB)").unwrap_err();
        assert_eq!(e.position, Some(Position { line: 1, column: 18 }));
    }

    #[test]
    fn recognises_persistent_and_continuous_queries() {
        let s = parse("CREATE TABLE c WITH (partitions = 2) AS SELECT page, COUNT(*) FROM pv GROUP BY page").unwrap();
        let Statement::CreateAs { select, select_at, .. } = s else { panic!() };
        assert!(select.starts_with("SELECT page"));
        assert_eq!(select_at, (0, 40));
        let s = parse("CREATE TABLE IF NOT EXISTS c AS SELECT page, COUNT(*) FROM pv GROUP BY page").unwrap();
        let Statement::CreateAs { name, if_not_exists, .. } = s else { panic!() };
        assert_eq!((name.as_str(), if_not_exists), ("c", true));
        assert!(matches!(parse("INSERT INTO s SELECT * FROM t").unwrap(), Statement::InsertSelect { .. }));
        assert!(matches!(parse("INSERT INTO s VALUES (1)").unwrap(), Statement::InsertValues { .. }));
        assert!(matches!(parse("INSERT INTO s (a) VALUES (1)").unwrap(), Statement::Query { emit_changes: false, .. }));
        assert_eq!(parse("SELECT * FROM pv EMIT CHANGES;").unwrap(), Statement::Query { sql: "SELECT * FROM pv".into(), emit_changes: true });
        assert_eq!(parse("show queries").unwrap(), Statement::Show("QUERIES".into()));
        assert_eq!(parse("TERMINATE ctas_c").unwrap(), Statement::Terminate("CTAS_C".into()));
        assert!(parse("DROP TABLE c DELETE TOPIC extra").is_err());
    }
}
