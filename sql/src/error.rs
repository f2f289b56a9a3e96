//! SQL errors: what went wrong, where in the statement, and what to do about it.

use std::fmt;

use datafusion::error::DataFusionError;
use serde::Serialize;

/// A position in a SQL text (1-based line and column).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Position {
    /// Line, from 1.
    pub line: u64,
    /// Column, from 1.
    pub column: u64,
}

/// An error from the SQL engine, meant for the person who typed the statement.
#[derive(Debug, Clone, Serialize)]
pub struct SqlError {
    /// What went wrong.
    pub message: String,
    /// Where in the statement, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<Position>,
    /// What to do about it, when there is something to say.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

/// Result type of the SQL engine.
pub type Result<T, E = SqlError> = std::result::Result<T, E>;

impl SqlError {
    /// An error with a message only.
    pub fn new(message: impl Into<String>) -> SqlError {
        SqlError { message: message.into(), position: None, hint: None }
    }

    /// Adds a hint.
    pub fn hint(mut self, hint: impl Into<String>) -> SqlError {
        self.hint = Some(hint.into());
        self
    }

    /// Adds a position.
    pub fn at(mut self, position: Option<Position>) -> SqlError {
        if self.position.is_none() {
            self.position = position;
        }
        self
    }

    /// Moves the position by a statement's place in a script (`line_offset` lines before
    /// it; `column_offset` columns before it on its first line).
    pub fn shifted(mut self, line_offset: u64, column_offset: u64) -> SqlError {
        if let Some(p) = &mut self.position {
            if p.line == 1 {
                p.column += column_offset;
            }
            p.line += line_offset;
        }
        self
    }
}

impl fmt::Display for SqlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(p) = self.position {
            write!(f, " (line {}, column {})", p.line, p.column)?;
        }
        if let Some(h) = &self.hint {
            write!(f, "\nhint: {h}")?;
        }
        Ok(())
    }
}

impl std::error::Error for SqlError {}

impl From<DataFusionError> for SqlError {
    fn from(e: DataFusionError) -> SqlError {
        from_datafusion(e)
    }
}

impl From<datafusion::arrow::error::ArrowError> for SqlError {
    fn from(e: datafusion::arrow::error::ArrowError) -> SqlError {
        SqlError::new(e.to_string())
    }
}

impl From<samsa_client::Error> for SqlError {
    fn from(e: samsa_client::Error) -> SqlError {
        SqlError::new(format!("cluster request failed: {e}"))
    }
}

/// SQL keywords a typo is most often a near miss of (for "did you mean" hints).
const KEYWORDS: &[&str] = &[
    "SELECT", "FROM", "WHERE", "GROUP", "ORDER", "BY", "HAVING", "LIMIT", "JOIN", "INNER", "LEFT", "RIGHT", "FULL", "OUTER",
    "ON", "AS", "AND", "OR", "NOT", "NULL", "INSERT", "INTO", "VALUES", "CREATE", "STREAM", "TABLE", "WITH", "DROP",
    "SHOW", "DESCRIBE", "EMIT", "CHANGES", "DISTINCT", "UNION", "BETWEEN", "INTERVAL", "CASE", "WHEN", "THEN", "ELSE",
    "END", "PRIMARY", "KEY", "TERMINATE", "STREAMS", "TABLES", "QUERIES", "TOPICS", "COUNT", "SUM", "AVG", "MIN", "MAX",
];

/// Turns a DataFusion error into one that names the position and, for typos, a hint.
pub fn from_datafusion(e: DataFusionError) -> SqlError {
    let span = e
        .diagnostic()
        .and_then(|d| d.span)
        .filter(|s| s.start.line > 0)
        .map(|s| Position { line: s.start.line, column: s.start.column });
    let e = e.find_root().to_string();
    let message = e.trim_start_matches("SQL error: ").trim_start_matches("Error during planning: ").to_string();
    let position = parse_position(&message).or(span);
    let mut message = clean_message(&message);
    if let Some(rest) = message.strip_prefix("table '") {
        // table 'datafusion.public.x' not found -> the name the user wrote.
        if let Some(name) = rest.strip_suffix("' not found") {
            message = format!("no stream or table named {}", name.rsplit('.').next().unwrap_or(name));
        }
    }
    if let Some(what) = message.strip_prefix("DDL not supported: ") {
        let err = SqlError::new(format!("{what} is not supported")).at(position);
        return err.hint("CREATE STREAM / CREATE TABLE declare topics; CREATE STREAM|TABLE name AS SELECT starts a persistent query");
    }
    let mut err = SqlError::new(message.clone()).at(position);
    if let Some(found) = found_token(&message) {
        if let Some(kw) = nearest_keyword(&found) {
            err = err.hint(format!("did you mean {kw} instead of {found}?"));
        } else if message.starts_with("Expected") && datafusion::sql::sqlparser::keywords::ALL_KEYWORDS.contains(&found.to_ascii_uppercase().as_str()) {
            // A reserved word where a name was meant (a column called `top`).
            err = err.hint(format!("if {found} is a name, quote it: \"{found}\""));
        }
    }
    if err.hint.is_none() && message.contains("No field named") {
        err = err.hint("column names are case-sensitive when quoted; DESCRIBE <name> lists a stream's columns");
    }
    if err.hint.is_none() && message.starts_with("no stream or table named") {
        err = err.hint("SHOW STREAMS and SHOW TABLES list what exists; CREATE STREAM maps a topic to a stream");
    }
    err
}

/// Finds "Line: L, Column: C" in a parser message.
pub fn parse_position(message: &str) -> Option<Position> {
    let at = message.find("Line: ")?;
    let rest = &message[at + 6..];
    let line: u64 = rest.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()?;
    let col_at = rest.find("Column: ")?;
    let column: u64 = rest[col_at + 8..].split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()?;
    Some(Position { line, column })
}

fn clean_message(message: &str) -> String {
    // ParserError("Expected: ..., found: X at Line: 1, Column: 8") -> Expected: ..., found: X
    let mut m = message.to_string();
    for prefix in ["ParserError(\"", "TokenizerError(\""] {
        if let Some(rest) = m.strip_prefix(prefix) {
            m = rest.trim_end_matches("\")").to_string();
        }
    }
    if let Some(at) = m.find(" at Line: ") {
        m.truncate(at);
    }
    m.replace("\\\"", "\"")
}

fn found_token(message: &str) -> Option<String> {
    let at = message.find("found: ")?;
    let tok: String = message[at + 7..].chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
    (!tok.is_empty()).then_some(tok)
}

/// Adds a "did you mean" hint for a parse error caused by a misspelt keyword anywhere in
/// `sql` (`SELECT a FORM t` parses FORM as an alias and fails later, at `t`).
pub fn typo_hint(err: SqlError, sql: &str) -> SqlError {
    if err.hint.is_some() || !err.message.starts_with("Expected") {
        return err;
    }
    let mut in_quote = false;
    for word in sql.split(|c: char| {
        if c == '\'' {
            in_quote = !in_quote;
        }
        in_quote || !(c.is_alphanumeric() || c == '_')
    }) {
        if word.len() >= 4 && word.chars().all(|c| c.is_ascii_alphabetic()) {
            if let Some(kw) = nearest_keyword(word) {
                return err.hint(format!("did you mean {kw} instead of {word}?"));
            }
        }
    }
    err
}

fn is_transposition(a: &str, b: &str) -> bool {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    if a.len() != b.len() {
        return false;
    }
    let diff: Vec<usize> = (0..a.len()).filter(|i| a[*i] != b[*i]).collect();
    diff.len() == 2 && diff[1] == diff[0] + 1 && a[diff[0]] == b[diff[1]] && a[diff[1]] == b[diff[0]]
}

/// The keyword within edit distance 2 of `word` (and not equal to it), if any.
pub fn nearest_keyword(word: &str) -> Option<&'static str> {
    let upper = word.to_ascii_uppercase();
    if upper.len() < 3 || KEYWORDS.contains(&upper.as_str()) {
        return None;
    }
    // One edit, or two neighbours swapped (FORM): more finds words that were meant.
    KEYWORDS
        .iter()
        .map(|k| (edit_distance(&upper, k), *k))
        .filter(|(d, k)| (*d <= 1 && upper.len() >= 4) || is_transposition(&upper, k))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_positions_and_typo_hints() {
        let e = from_datafusion(DataFusionError::SQL(
            Box::new(datafusion::sql::sqlparser::parser::ParserError::ParserError(
                "Expected: end of statement, found: FORM at Line: 1, Column: 10".into(),
            )),
            None,
        ));
        assert_eq!(e.position, Some(Position { line: 1, column: 10 }));
        assert_eq!(e.hint.as_deref(), Some("did you mean FROM instead of FORM?"));
        assert_eq!(e.message, "Expected: end of statement, found: FORM");
        assert_eq!(nearest_keyword("SELEC"), Some("SELECT"));
        assert_eq!(nearest_keyword("pageviews"), None);
        assert_eq!(nearest_keyword("FROM"), None);
    }
}
