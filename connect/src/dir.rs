//! `DirectorySource`: the files of a directory into a topic, one record per line, as JSON
//! lines or CSV. It tails them, as `FileStreamSource` tails one file, and picks up new files
//! as they appear. Users of jcustenborder's kafka-connect-spooldir find its setting names,
//! and its CSV and JSON connector classes are accepted; unlike spooldir, files are never
//! moved (`finished.path`, `error.path` and the like are ignored): they are followed, as a
//! log shipper follows logs.
//!
//! # Settings
//!
//! - `input.path` (required): the directory. Only the files directly in it are read, not
//!   those of subdirectories (nor files whose names are not UTF-8); a symbolic link to a
//!   file counts as a file.
//! - `input.file.pattern`: a regular expression the whole file name must match (as Java's
//!   `matches`, so spooldir's patterns work), default `.*`; e.g. `orders-.*\.csv`.
//! - `format`: `json` (one JSON object per line, the default) or `csv`. With spooldir's
//!   `SpoolDirCsvSourceConnector` class the default is `csv`; with its
//!   `SpoolDirJsonSourceConnector` or `SpoolDirLineDelimitedJsonSourceConnector`, `json`
//!   (one object per line in both).
//! - `topic` (required): the topic to write.
//! - `csv.first.row.as.header` (default `true`; spooldir's default is `false`): the first
//!   line of each file names the columns and is not a record. Names are trimmed; an empty
//!   or repeated name becomes `column<N>` (`N` counting from 1).
//! - `csv.column.names`: the column names when the files have no header row; giving them
//!   makes `csv.first.row.as.header` default to `false` (it cannot be `true` with them).
//! - `csv.separator.char`: the field separator, default `,`: one character, or its code as
//!   spooldir writes it (`44` for `,`, `9` for tab; digits are always a code), or `\t`.
//!   The quote is always `"`.
//! - `key.fields` (or spooldir's `schema.generation.key.fields`): the fields that form the
//!   key, a struct of them with their schemas (as spooldir's key and `ValueToKey`'s); a field
//!   a record lacks is null. None (the default): null keys. For a plain key, add the
//!   `ExtractField$Key` transform.
//! - `schema.inference` (default `true`): CSV values are typed and JSON records get a
//!   schema, as below; `false`: CSV values are all text and JSON records go without a
//!   schema.
//! - `batch.size` (default 1000): the most records one poll returns.
//! - `poll.interval.ms` (default 1000): how often the directory is looked at for new files
//!   and new lines; the longest a new line waits.
//! - `halt.on.error` (spooldir's; default `false` here, `true` in spooldir): a line that does
//!   not parse fails the task (naming its file and line) instead of being skipped.
//! - `tasks.max`: the files are spread over the tasks by a hash of their names.
//!
//! # Reading
//!
//! Each matching file is read in name order, line by line (lines end with `\n` or `\r\n`;
//! a UTF-8 byte order mark starting a file is dropped; text that is not UTF-8 is read
//! lossily). Once a poll has read all it can, the task waits `poll.interval.ms`, then looks
//! at the directory again: lines appended to a file are read, and new files are read from
//! their start. A last line without its newline yet waits until the newline comes. Blank
//! lines are no records. A file that shrinks below what was read (truncated), or that is
//! replaced by another of the same name (a new inode, on Unix), is read again from its
//! start. A file that goes away is forgotten; a renamed file is a new file under its new
//! name (when it matches the pattern), read from its start: with logs rotated by renaming,
//! choose a pattern that matches the live files only.
//!
//! A line that does not parse (not JSON, not a JSON object, a CSV row with the wrong
//! number of fields, a quote left open) is skipped, with a warning naming its file and line
//! number and the count of lines skipped so far; with `halt.on.error=true` it fails the task
//! instead. (Kafka Connect's `errors.tolerance` covers converters, transforms and producing,
//! not what a source task reads.) A CSV file whose header row does not parse is skipped,
//! with an error logged, until it changes. A file that cannot be read (other than gone)
//! fails the task.
//!
//! # Records
//!
//! The value is a struct. JSON lines: each line is one JSON object, its fields in the
//! line's order (a repeated key keeps its last value); with `schema.inference`, the record
//! gets a schema inferred from that line alone: numbers without a fraction or exponent are
//! int64, others float64, `true`/`false` boolean, strings string, objects structs, arrays
//! arrays of their elements' schema (int64 and float64 elements make float64; objects
//! merge their fields), nulls optional string; every field is optional. A line whose array
//! mixes other types (e.g. `[1, "a"]`) has no schema; its record goes without one. CSV rows:
//! a struct of the columns, every field an optional string unless `schema.inference` types
//! it: a number in JSON's form is int64 when whole (and within 64 bits), else float64 (so
//! `007`, `1,5` or `0x1F` stay text), `true` and `false` (any case) are boolean, the rest
//! is text. An empty field is null, a quoted empty field (`""`) the empty string; quoted
//! fields may hold the separator and doubled quotes (`"say ""hi"""`), and are typed as
//! unquoted ones are. A record is one line: a quoted field cannot span lines. Types are
//! inferred per record, so a column's type can differ between records (an empty value is
//! an optional string).
//!
//! The timestamp is the time of writing; the record carries a `file` header, the file's
//! name. The source partition is `{"file": "<name>"}` and the offset `{"position": <bytes
//! after the record's line>, "line": <its line number>}`, so a restarted task resumes each
//! file after its last written record, reading a CSV header again from the file's first
//! line. A file that was not there when the task started is read from its start.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use regex_lite::Regex;
use serde_json::{json, Value as Json};

use crate::api::{Connector, OffsetReader, SourceConnector, SourceRecord, SourceTask, TASK_COUNT, TASK_ID};
use crate::config::{ConfigIssue, Kind, Props, Setting};
use crate::data::{Data, Schema, Value};
use crate::{Error, Result};

/// The full class name of the directory source.
pub const CLASS: &str = "samsa.connect.dir.DirectorySourceConnector";
/// spooldir's CSV class, accepted: `format` defaults to `csv`.
pub const SPOOLDIR_CSV: &str = "com.github.jcustenborder.kafka.connect.spooldir.SpoolDirCsvSourceConnector";
/// spooldir's JSON class, accepted: `format` defaults to `json`.
pub const SPOOLDIR_JSON: &str = "com.github.jcustenborder.kafka.connect.spooldir.SpoolDirJsonSourceConnector";
/// spooldir's line-delimited JSON class, accepted: `format` defaults to `json`.
pub const SPOOLDIR_LINE_JSON: &str = "com.github.jcustenborder.kafka.connect.spooldir.SpoolDirLineDelimitedJsonSourceConnector";

/// The most records one poll returns, unless `batch.size` says otherwise.
const DEFAULT_BATCH: usize = 1000;
/// How often the directory is looked at, unless `poll.interval.ms` says otherwise.
const DEFAULT_INTERVAL_MS: u64 = 1000;

/// How the lines of the files are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One JSON object per line.
    Json,
    /// Comma-separated values, one row per line.
    Csv,
}

/// Reads the files of `input.path` matching `input.file.pattern` into `topic`, line by line,
/// tailing them and picking up new ones.
#[derive(Debug, Clone, Copy)]
pub struct DirectorySource {
    /// The format when `format` is not set (from the class name).
    default_format: Format,
}

impl DirectorySource {
    /// A directory source whose `format` defaults to `default_format`.
    pub const fn new(default_format: Format) -> DirectorySource {
        DirectorySource { default_format }
    }

    fn new_task(&self) -> DirTask {
        DirTask { default_format: self.default_format, opts: None, state: State::default(), last_scan: None }
    }
}

impl Default for DirectorySource {
    fn default() -> DirectorySource {
        DirectorySource::new(Format::Json)
    }
}

impl Connector for DirectorySource {
    fn settings(&self) -> Vec<Setting> {
        let s = |name, kind, default, required, doc| Setting { name, kind, default, required, doc };
        vec![
            s("input.path", Kind::String, None, true, "the directory whose files are read"),
            s("input.file.pattern", Kind::String, Some(".*"), false, "a regular expression the whole file name must match"),
            s("format", Kind::String, None, false, "json (one object per line; the default) or csv (the default for spooldir's CSV class)"),
            s("topic", Kind::String, None, true, "the topic to write"),
            s("csv.first.row.as.header", Kind::Bool, Some("true"), false, "the first line of each CSV file names the columns"),
            s("csv.column.names", Kind::List, None, false, "the CSV column names, when the files have no header row"),
            s("csv.separator.char", Kind::String, Some(","), false, "the CSV field separator: a character or its code (44 for ',', 9 for tab)"),
            s("key.fields", Kind::List, None, false, "the fields that form the key, a struct of them (none: null keys)"),
            s("schema.generation.key.fields", Kind::List, None, false, "spooldir's name for key.fields"),
            s("schema.inference", Kind::Bool, Some("true"), false, "type CSV values and give JSON records a schema"),
            s("batch.size", Kind::Int, Some("1000"), false, "the most records one poll returns"),
            s("poll.interval.ms", Kind::Int, Some("1000"), false, "how often the directory is looked at for new files and lines"),
            s("halt.on.error", Kind::Bool, Some("false"), false, "a line that does not parse fails the task instead of being skipped"),
        ]
    }

    fn validate(&self, config: &Props) -> Vec<ConfigIssue> {
        let mut issues = crate::config::validate(&self.settings(), config);
        if let Err(more) = Options::new(config, self.default_format) {
            for issue in more {
                if !issues.iter().any(|i| i.name == issue.name) {
                    issues.push(issue);
                }
            }
        }
        if let Some(path) = setting(config, "input.path") {
            let problem = match std::fs::metadata(path) {
                Ok(m) if m.is_dir() => None,
                Ok(_) => Some(format!("input.path {path} is not a directory")),
                Err(e) => Some(format!("cannot read the directory input.path {path}: {e}")),
            };
            if let Some(message) = problem.filter(|_| !issues.iter().any(|i| i.name == "input.path")) {
                issues.push(ConfigIssue { name: "input.path".into(), message });
            }
        }
        issues
    }

    fn task_configs(&self, config: &Props, max_tasks: usize) -> Vec<Props> {
        let n = max_tasks.max(1);
        crate::api::numbered_tasks(config, n)
    }
}

impl SourceConnector for DirectorySource {
    fn task(&self) -> Box<dyn SourceTask> {
        Box::new(self.new_task())
    }
}

/// A set setting's trimmed value (`None` when unset or blank).
fn setting<'a>(config: &'a Props, name: &str) -> Option<&'a str> {
    config.get(name).map(|v| v.trim()).filter(|v| !v.is_empty())
}

/// A list setting's items, trimmed, blanks left out.
fn list(config: &Props, name: &str) -> Vec<String> {
    setting(config, name).map(|v| v.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect()).unwrap_or_default()
}

/// A checked connector (or task) config.
#[derive(Debug)]
struct Options {
    dir: PathBuf,
    /// `input.file.pattern`, anchored at both ends.
    pattern: Regex,
    format: Format,
    topic: String,
    /// CSV column names from the config (`None`: from each file's header row).
    columns: Option<Arc<[String]>>,
    separator: char,
    key_fields: Vec<String>,
    infer: bool,
    batch: usize,
    interval: Duration,
    halt: bool,
    /// This task's number and how many tasks share the files.
    task: u64,
    tasks: u64,
}

impl Options {
    /// Checks a config, reporting every bad setting by name.
    fn new(config: &Props, default_format: Format) -> std::result::Result<Options, Vec<ConfigIssue>> {
        let mut issues = Vec::new();
        let mut issue = |name: &str, message: String| issues.push(ConfigIssue { name: name.into(), message });

        let dir = setting(config, "input.path").map(PathBuf::from);
        if dir.is_none() {
            issue("input.path", "missing required setting input.path (the directory whose files are read)".into());
        }
        let text = setting(config, "input.file.pattern").unwrap_or(".*");
        let pattern = match Regex::new(&format!("^(?:{text})$")) {
            Ok(p) => Some(p),
            Err(e) => {
                issue("input.file.pattern", format!("input.file.pattern '{text}' is not a regular expression: {e}"));
                None
            }
        };
        let format = match setting(config, "format").map(str::to_ascii_lowercase).as_deref() {
            None => default_format,
            Some("json") => Format::Json,
            Some("csv") => Format::Csv,
            Some(other) => {
                issue("format", format!("format must be json (one object per line) or csv, not '{other}'"));
                default_format
            }
        };
        let topic = setting(config, "topic").unwrap_or_default().to_string();
        if topic.is_empty() {
            issue("topic", "missing required setting topic (the topic to write)".into());
        } else if topic.contains(',') {
            issue("topic", format!("the directory source writes one topic; topic holds a list ({topic})"));
        }

        let flag = |name: &str, default: bool, issue: &mut dyn FnMut(&str, String)| match setting(config, name) {
            None => Some(default),
            Some("true") => Some(true),
            Some("false") => Some(false),
            Some(v) => {
                issue(name, format!("{name} must be true or false, not '{v}'"));
                None
            }
        };
        let infer = flag("schema.inference", true, &mut issue).unwrap_or(true);
        let halt = flag("halt.on.error", false, &mut issue).unwrap_or(false);
        let names = list(config, "csv.column.names");
        let header = flag("csv.first.row.as.header", names.is_empty(), &mut issue);

        let mut key_fields = list(config, "key.fields");
        if key_fields.is_empty() {
            key_fields = list(config, "schema.generation.key.fields");
        }
        let mut columns = None;
        let mut separator = ',';
        if format == Format::Csv {
            match (header, names.is_empty()) {
                (Some(true), false) => {
                    issue("csv.column.names", "csv.column.names names the columns of files without a header row; set csv.first.row.as.header=false with it".into())
                }
                (Some(false), true) => issue("csv.column.names", "the files have no header row (csv.first.row.as.header=false): csv.column.names must name the columns".into()),
                (_, false) => {
                    if let Some(dup) = names.iter().enumerate().find(|(i, n)| names[..*i].contains(n)).map(|(_, n)| n) {
                        issue("csv.column.names", format!("csv.column.names names column {dup} twice"));
                    }
                    if let Some(k) = key_fields.iter().find(|k| !names.contains(k)) {
                        issue("key.fields", format!("key field {k} is not one of the columns {}", names.join(", ")));
                    }
                    columns = Some(names.into());
                }
                _ => {}
            }
            match parse_separator(config.get("csv.separator.char").map(String::as_str).unwrap_or("")) {
                Ok(c) => separator = c,
                Err(e) => issue("csv.separator.char", e),
            }
        }

        let positive = |name: &str, default: u64, issue: &mut dyn FnMut(&str, String)| match setting(config, name) {
            None => default,
            Some(v) => match v.parse::<i64>() {
                Ok(n) if n >= 1 => n as u64,
                Ok(n) => {
                    issue(name, format!("{name} must be at least 1, not {n}"));
                    default
                }
                Err(_) => {
                    issue(name, format!("{name} must be a whole number, not '{v}'"));
                    default
                }
            },
        };
        let batch = positive("batch.size", DEFAULT_BATCH as u64, &mut issue) as usize;
        let interval = Duration::from_millis(positive("poll.interval.ms", DEFAULT_INTERVAL_MS, &mut issue));
        let task = setting(config, TASK_ID).map_or(Ok(0), str::parse::<u64>);
        let tasks = setting(config, TASK_COUNT).map_or(Ok(1), str::parse::<u64>);
        let (task, tasks) = match (task, tasks) {
            (Ok(i), Ok(n)) if i < n => (i, n),
            _ => {
                issue(TASK_ID, format!("{TASK_ID} must be a whole number below {TASK_COUNT}"));
                (0, 1)
            }
        };
        match (dir, pattern) {
            (Some(dir), Some(pattern)) if issues.is_empty() => {
                Ok(Options { dir, pattern, format, topic, columns, separator, key_fields, infer, batch, interval, halt, task, tasks })
            }
            _ => Err(issues),
        }
    }

    /// Whether this task reads the file: the files are spread over the tasks by a hash of
    /// their names (FNV-1a, the same in every process).
    fn mine(&self, name: &str) -> bool {
        let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
        hash % self.tasks == self.task
    }
}

/// `csv.separator.char`: one character, its code, or `\t`.
fn parse_separator(raw: &str) -> std::result::Result<char, String> {
    let mut chars = raw.chars();
    let c = match (chars.next(), chars.next()) {
        (None, _) => ',',
        (Some(c), None) if !c.is_ascii_digit() => c,
        _ => match raw.trim() {
            "" => ',',
            "\\t" => '\t',
            t if t.bytes().all(|b| b.is_ascii_digit()) => {
                t.parse::<u32>().ok().and_then(char::from_u32).ok_or_else(|| format!("csv.separator.char {t} is not a character code"))?
            }
            t if t.chars().count() == 1 => t.chars().next().unwrap_or(','),
            t => return Err(format!("csv.separator.char must be one character or its code (44 for ',', 9 for tab), not '{t}'")),
        },
    };
    if matches!(c, '"' | '\n' | '\r') {
        return Err(format!("csv.separator.char cannot be {c:?}"));
    }
    Ok(c)
}

/// What is known of one file.
#[derive(Debug, Clone, Default)]
struct FileState {
    /// Byte position after the last line read.
    position: u64,
    /// The number of that line (lines read so far).
    line: u64,
    /// How many bytes were looked at: `position` and a partial last line.
    seen: u64,
    /// The size at the last look at the directory.
    size: u64,
    /// The file's identity (its inode on Unix), to tell a replaced file.
    id: Option<u64>,
    /// The CSV columns read from its header row.
    columns: Option<Arc<[String]>>,
    /// Its header row does not parse: the file is skipped until it changes.
    broken: bool,
}

impl FileState {
    /// Starts the file again from its start.
    fn reset(&mut self) {
        *self = FileState { size: self.size, id: self.id, ..FileState::default() };
    }
}

/// A task's reading state; a poll works on a copy and keeps it once done, so a poll that is
/// cancelled loses nothing.
#[derive(Debug, Clone, Default)]
struct State {
    /// The files of the directory this task reads, by name.
    files: BTreeMap<String, FileState>,
    /// Lines skipped because they do not parse.
    skipped: u64,
    /// The directory was missing at the last look (so that is logged once).
    dir_missing: bool,
}

/// One task: reads its share of the files.
struct DirTask {
    default_format: Format,
    opts: Option<Arc<Options>>,
    state: State,
    /// When the directory was last looked at.
    last_scan: Option<Instant>,
}

#[async_trait::async_trait]
impl SourceTask for DirTask {
    async fn start(&mut self, config: &Props, offsets: &dyn OffsetReader) -> Result<()> {
        let opts = Arc::new(Options::new(config, self.default_format).map_err(|issues| Error::Config(issues.into_iter().map(|i| i.message).collect::<Vec<_>>().join("; ")))?);
        let listing = {
            let opts = opts.clone();
            tokio::task::spawn_blocking(move || list_dir(&opts)).await.map_err(|e| Error::Task(format!("listing the directory failed: {e}")))?
        };
        match listing {
            Ok(files) => {
                for (name, size, id) in files {
                    let mut f = FileState { size, id, ..FileState::default() };
                    if let Some(stored) = offsets.offset(&json!({"file": name})) {
                        f.position = stored.get("position").and_then(Json::as_u64).unwrap_or(0);
                        f.line = stored.get("line").and_then(Json::as_u64).unwrap_or(0);
                        f.seen = f.position;
                        tracing::info!(file = %name, position = f.position, line = f.line, "resuming the file where the stored offset says");
                    }
                    self.state.files.insert(name, f);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::Task(format!("cannot list the directory {}: {e}", opts.dir.display()))),
        }
        self.opts = Some(opts);
        Ok(())
    }

    async fn poll(&mut self) -> Result<Vec<SourceRecord>> {
        let opts = self.opts.clone().ok_or_else(|| Error::Task("the directory source task is not started".into()))?;
        let scan = self.last_scan.is_none_or(|t| t.elapsed() >= opts.interval);
        let began = Instant::now();
        let mut state = self.state.clone();
        let work_opts = opts.clone();
        let (state, result) = tokio::task::spawn_blocking(move || {
            let result = work(&work_opts, &mut state, scan);
            (state, result)
        })
        .await
        .map_err(|e| Error::Task(format!("reading the directory failed: {e}")))?;
        // No waiting between here and the state kept: a cancelled poll changes nothing.
        self.state = state;
        if scan {
            self.last_scan = Some(began);
        }
        let records = result?;
        if records.is_empty() {
            let next = self.last_scan.map_or(began, |t| t + opts.interval);
            tokio::time::sleep_until(next.into()).await;
        }
        Ok(records)
    }
}

/// Lists the directory: the regular files this task reads, with their sizes and identities.
fn list_dir(opts: &Options) -> std::io::Result<Vec<(String, u64, Option<u64>)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&opts.dir)? {
        let entry = entry?;
        let Ok(name) = entry.file_name().into_string() else { continue };
        if !opts.pattern.is_match(&name) || !opts.mine(&name) {
            continue;
        }
        // Follows symbolic links; a file that went away meanwhile is left out.
        match std::fs::metadata(entry.path()) {
            Ok(m) if m.is_file() => out.push((name, m.len(), file_id(&m))),
            _ => {}
        }
    }
    Ok(out)
}

#[cfg(unix)]
fn file_id(m: &std::fs::Metadata) -> Option<u64> {
    Some(std::os::unix::fs::MetadataExt::ino(m))
}

#[cfg(not(unix))]
fn file_id(_: &std::fs::Metadata) -> Option<u64> {
    None
}

/// One poll's work (blocking): a look at the directory when due, then up to a batch of
/// records from the files with unread bytes, in name order.
fn work(opts: &Options, state: &mut State, scan: bool) -> Result<Vec<SourceRecord>> {
    if scan {
        rescan(opts, state)?;
    }
    let mut out = Vec::new();
    let names: Vec<String> = state.files.iter().filter(|(_, f)| f.size > f.seen && !f.broken).map(|(n, _)| n.clone()).collect();
    for name in names {
        if out.len() >= opts.batch {
            break;
        }
        read_file(opts, state, &name, &mut out)?;
    }
    Ok(out)
}

/// Looks at the directory: new files, grown ones, truncated or replaced ones, gone ones.
fn rescan(opts: &Options, state: &mut State) -> Result<()> {
    let listed = match list_dir(opts) {
        Ok(l) => l,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if !state.dir_missing {
                tracing::warn!(dir = %opts.dir.display(), "the input.path directory does not exist; waiting for it");
                state.dir_missing = true;
            }
            return Ok(());
        }
        Err(e) => return Err(Error::Task(format!("cannot list the directory {}: {e}", opts.dir.display()))),
    };
    if std::mem::take(&mut state.dir_missing) {
        tracing::info!(dir = %opts.dir.display(), "the input.path directory is there");
    }
    let before = std::mem::take(&mut state.files);
    for (name, size, id) in listed {
        let mut f = before.get(&name).cloned().unwrap_or_default();
        if f.id.is_some() && id.is_some() && f.id != id {
            tracing::info!(file = %name, "the file was replaced; reading it from its start");
            f = FileState::default();
        } else if size < f.position {
            tracing::warn!(file = %name, size, position = f.position, "the file is shorter than what was read (truncated?); reading it again from its start");
            f = FileState::default();
        } else if size != f.size && f.broken {
            f = FileState::default();
        }
        f.size = size;
        f.id = id;
        state.files.insert(name, f);
    }
    for name in before.keys().filter(|n| !state.files.contains_key(*n)) {
        tracing::debug!(file = %name, "the file is gone");
    }
    Ok(())
}

/// Reads complete lines of one file into records, until the batch is full or the file ends.
fn read_file(opts: &Options, state: &mut State, name: &str, out: &mut Vec<SourceRecord>) -> Result<()> {
    let path = opts.dir.join(name);
    let file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            state.files.remove(name);
            return Ok(());
        }
        Err(e) => return Err(Error::Task(format!("cannot open {}: {e}", path.display()))),
    };
    let io = |e: std::io::Error| Error::Task(format!("cannot read {}: {e}", path.display()));
    let mut reader = BufReader::with_capacity(64 * 1024, file);
    let Some(f) = state.files.get_mut(name) else { return Ok(()) };
    let header = opts.format == Format::Csv && opts.columns.is_none();
    let mut buf = Vec::new();
    if header && f.columns.is_none() && f.position > 0 {
        // Resuming: the columns come from the file's first line that is not blank.
        let (mut read, mut first) = (0u64, true);
        loop {
            buf.clear();
            read += reader.read_until(b'\n', &mut buf).map_err(io)? as u64;
            if !buf.ends_with(b"\n") || read >= f.position || !line_text(&buf, first).trim().is_empty() {
                break;
            }
            first = false;
        }
        if !buf.ends_with(b"\n") || read > f.position {
            tracing::warn!(file = %name, "the file no longer starts with the header row read before; reading it again from its start");
            f.reset();
        } else {
            match header_columns(&line_text(&buf, first), opts.separator) {
                Ok(columns) => f.columns = Some(columns),
                Err(why) => {
                    tracing::error!(file = %name, "the header row does not parse ({why}); the file is skipped until it changes");
                    f.broken = true;
                    return Ok(());
                }
            }
        }
    }
    reader.seek(SeekFrom::Start(f.position)).map_err(io)?;
    loop {
        if out.len() >= opts.batch {
            f.seen = f.seen.max(f.position);
            return Ok(());
        }
        buf.clear();
        let n = reader.read_until(b'\n', &mut buf).map_err(io)? as u64;
        if !buf.ends_with(b"\n") {
            // The end of the file, perhaps in a line still being written: it waits.
            f.seen = f.position + n;
            return Ok(());
        }
        f.position += n;
        f.line += 1;
        let text = line_text(&buf, f.line == 1);
        if text.trim().is_empty() {
            continue;
        }
        let parsed = match (opts.format, opts.columns.clone().or_else(|| f.columns.clone())) {
            (Format::Json, _) => parse_json(&text, opts.infer),
            (Format::Csv, None) => match header_columns(&text, opts.separator) {
                Ok(columns) => {
                    f.columns = Some(columns);
                    continue;
                }
                Err(why) => {
                    tracing::error!(file = %name, "the header row does not parse ({why}); the file is skipped until it changes");
                    f.broken = true;
                    return Ok(());
                }
            },
            (Format::Csv, Some(columns)) => parse_csv(&text, opts.separator, &columns, opts.infer),
        };
        match parsed {
            Ok(value) => out.push(SourceRecord {
                source_partition: json!({"file": name}),
                source_offset: json!({"position": f.position, "line": f.line}),
                topic: opts.topic.clone(),
                partition: None,
                key: key(&opts.key_fields, &value),
                value,
                timestamp: None,
                headers: vec![("file".into(), Some(Bytes::from(name.to_string())))],
            }),
            Err(why) if opts.halt => return Err(Error::Data(format!("{name} line {}: {why} (halt.on.error=true stops the task)", f.line))),
            Err(why) => {
                state.skipped += 1;
                tracing::warn!(file = %name, line = f.line, skipped = state.skipped, "skipping a line that does not parse: {why}");
            }
        }
    }
}

/// A line's text without its line end (and, on a file's first line, a byte order mark).
fn line_text(buf: &[u8], first: bool) -> String {
    let line = buf.strip_suffix(b"\n").unwrap_or(buf);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let line = if first { line.strip_prefix("\u{feff}".as_bytes()).unwrap_or(line) } else { line };
    String::from_utf8_lossy(line).into_owned()
}

/// A CSV field: its text, and whether it was quoted.
#[derive(Debug, PartialEq)]
struct Field {
    text: String,
    quoted: bool,
}

/// Splits a CSV line: fields may be double-quoted, holding the separator and doubled
/// quotes; a quote inside an unquoted field is text.
fn split_csv(line: &str, sep: char) -> std::result::Result<Vec<Field>, String> {
    let mut fields = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        let mut text = String::new();
        let quoted = chars.peek() == Some(&'"');
        let more = if quoted {
            chars.next();
            loop {
                match chars.next() {
                    None => return Err(format!("the quote of field {} is not closed on its line (a quoted field cannot span lines)", fields.len() + 1)),
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        text.push('"');
                    }
                    Some('"') => break,
                    Some(c) => text.push(c),
                }
            }
            match chars.next() {
                None => false,
                Some(c) if c == sep => true,
                Some(c) => return Err(format!("{c:?} after the closing quote of field {}", fields.len() + 1)),
            }
        } else {
            loop {
                match chars.next() {
                    None => break false,
                    Some(c) if c == sep => break true,
                    Some(c) => text.push(c),
                }
            }
        };
        fields.push(Field { text, quoted });
        if !more {
            return Ok(fields);
        }
    }
}

/// The column names of a header row: trimmed; an empty or repeated one becomes `column<N>`.
fn header_columns(line: &str, sep: char) -> std::result::Result<Arc<[String]>, String> {
    let mut names: Vec<String> = Vec::new();
    for (i, field) in split_csv(line, sep)?.into_iter().enumerate() {
        let mut name = field.text.trim().to_string();
        if name.is_empty() || names.contains(&name) {
            name = format!("column{}", i + 1);
            while names.contains(&name) {
                name.push('_');
            }
        }
        names.push(name);
    }
    Ok(names.into())
}

/// A CSV row as a struct of the columns.
fn parse_csv(line: &str, sep: char, columns: &[String], infer: bool) -> std::result::Result<Data, String> {
    let fields = split_csv(line, sep)?;
    if fields.len() != columns.len() {
        return Err(format!("{} fields where there are {} columns", fields.len(), columns.len()));
    }
    let value = Value::Struct(columns.iter().zip(fields).map(|(c, f)| (c.clone(), csv_value(f, infer))).collect());
    Ok(with_schema(value))
}

/// A CSV field's value: null when empty and unquoted; typed when `infer`.
fn csv_value(field: Field, infer: bool) -> Value {
    let text = field.text;
    if text.is_empty() && !field.quoted {
        return Value::Null;
    }
    if !infer {
        return Value::String(text);
    }
    if text.eq_ignore_ascii_case("true") || text.eq_ignore_ascii_case("false") {
        return Value::Bool(text.eq_ignore_ascii_case("true"));
    }
    match number_kind(&text) {
        Some(true) => text.parse::<i64>().map_or(Value::String(text), Value::Int),
        Some(false) => text.parse::<f64>().ok().filter(|x| x.is_finite()).map_or(Value::String(text), Value::Float),
        None => Value::String(text),
    }
}

/// Whether text is a number in JSON's form: `Some(true)` when whole (no fraction or
/// exponent), `Some(false)` when not, `None` when it is no such number.
fn number_kind(s: &str) -> Option<bool> {
    let b = s.as_bytes();
    let digits = |i: &mut usize| {
        let start = *i;
        while *i < b.len() && b[*i].is_ascii_digit() {
            *i += 1;
        }
        *i - start
    };
    let mut i = usize::from(b.first() == Some(&b'-'));
    let start = i;
    let n = digits(&mut i);
    if n == 0 || (n > 1 && b[start] == b'0') {
        return None;
    }
    let mut whole = true;
    if b.get(i) == Some(&b'.') {
        i += 1;
        if digits(&mut i) == 0 {
            return None;
        }
        whole = false;
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return None;
        }
        whole = false;
    }
    (i == b.len()).then_some(whole)
}

/// A JSON line as a struct, with its inferred schema when `infer`.
fn parse_json(line: &str, infer: bool) -> std::result::Result<Data, String> {
    let value = crate::data::parse_json_ordered(line).map_err(|e| format!("not valid JSON: {e}"))?;
    let what = match &value {
        Value::Struct(_) => return Ok(if infer { with_schema(value) } else { Data { schema: None, value } }),
        Value::Array(_) => "an array",
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Int(_) | Value::Float(_) => "a number",
        Value::String(_) | Value::Bytes(_) => "a string",
    };
    Err(format!("{what} where a JSON object was expected"))
}

/// A value with the schema its values make, when they make one.
fn with_schema(value: Value) -> Data {
    match ty_of(&value) {
        Some(ty) => Data { schema: Some(schema_of(&ty, false)), value: conform(value, &ty) },
        None => {
            tracing::debug!("a record whose arrays mix types goes without a schema");
            Data { schema: None, value }
        }
    }
}

/// A value's type, as inferred.
#[derive(Debug, Clone, PartialEq)]
enum Ty {
    /// Only nulls seen: an optional string.
    Null,
    Bool,
    Int,
    Float,
    Str,
    Array(Box<Ty>),
    Struct(Vec<(String, Ty)>),
}

/// The type of a value; `None` when an array mixes types that do not merge.
fn ty_of(v: &Value) -> Option<Ty> {
    Some(match v {
        Value::Null => Ty::Null,
        Value::Bool(_) => Ty::Bool,
        Value::Int(_) => Ty::Int,
        Value::Float(_) => Ty::Float,
        Value::String(_) | Value::Bytes(_) => Ty::Str,
        Value::Array(items) => {
            let mut t = Ty::Null;
            for item in items {
                t = unify(t, ty_of(item)?)?;
            }
            Ty::Array(Box::new(t))
        }
        Value::Struct(fields) => Ty::Struct(fields.iter().map(|(k, v)| Some((k.clone(), ty_of(v)?))).collect::<Option<_>>()?),
    })
}

/// The type both values fit: null fits all, int64 and float64 make float64, structs merge
/// their fields.
fn unify(a: Ty, b: Ty) -> Option<Ty> {
    Some(match (a, b) {
        (Ty::Null, t) | (t, Ty::Null) => t,
        (Ty::Int, Ty::Float) | (Ty::Float, Ty::Int) => Ty::Float,
        (Ty::Array(a), Ty::Array(b)) => Ty::Array(Box::new(unify(*a, *b)?)),
        (Ty::Struct(mut a), Ty::Struct(b)) => {
            for (name, t) in b {
                match a.iter_mut().find(|(n, _)| *n == name) {
                    Some((_, at)) => *at = unify(std::mem::replace(at, Ty::Null), t)?,
                    None => a.push((name, t)),
                }
            }
            Ty::Struct(a)
        }
        (a, b) if a == b => a,
        _ => return None,
    })
}

/// A type as a Connect schema (its fields and elements optional).
fn schema_of(t: &Ty, optional: bool) -> Schema {
    let mut s = match t {
        Ty::Null | Ty::Str => json!({"type": "string"}),
        Ty::Bool => json!({"type": "boolean"}),
        Ty::Int => json!({"type": "int64"}),
        Ty::Float => json!({"type": "float64"}),
        Ty::Array(items) => json!({"type": "array", "items": schema_of(items, true)}),
        Ty::Struct(fields) => json!({"type": "struct", "fields": fields.iter().map(|(name, t)| {
            let mut f = schema_of(t, true);
            f["field"] = json!(name);
            f
        }).collect::<Vec<_>>()}),
    };
    s["optional"] = json!(optional);
    s
}

/// A value made to fit its (merged) type: ints where floats are, struct fields in the
/// type's order with nulls for those missing.
fn conform(v: Value, t: &Ty) -> Value {
    match (v, t) {
        (Value::Int(n), Ty::Float) => Value::Float(n as f64),
        (Value::Array(items), Ty::Array(item)) => Value::Array(items.into_iter().map(|i| conform(i, item)).collect()),
        (Value::Struct(fields), Ty::Struct(types)) if fields.len() == types.len() && fields.iter().zip(types).all(|((a, _), (b, _))| a == b) => {
            Value::Struct(fields.into_iter().zip(types).map(|((name, v), (_, t))| (name, conform(v, t))).collect())
        }
        (Value::Struct(mut fields), Ty::Struct(types)) => Value::Struct(
            types
                .iter()
                .map(|(name, t)| {
                    let v = fields.iter_mut().find(|(n, _)| n == name).map_or(Value::Null, |(_, v)| std::mem::replace(v, Value::Null));
                    (name.clone(), conform(v, t))
                })
                .collect(),
        ),
        (v, _) => v,
    }
}

/// The key: a struct of the key fields (null for those the value lacks), with their schemas.
fn key(key_fields: &[String], value: &Data) -> Data {
    let Value::Struct(fields) = &value.value else { return Data::null() };
    if key_fields.is_empty() {
        return Data::null();
    }
    let values = key_fields.iter().map(|k| (k.clone(), fields.iter().find(|(n, _)| n == k).map_or(Value::Null, |(_, v)| v.clone()))).collect();
    let schema = value.schema.as_ref().map(|s| {
        let known = s.get("fields").and_then(Json::as_array);
        let fields: Vec<Json> = key_fields
            .iter()
            .map(|k| {
                known
                    .and_then(|fs| fs.iter().find(|f| f.get("field").and_then(Json::as_str) == Some(k)))
                    .cloned()
                    .unwrap_or_else(|| json!({"field": k, "type": "string", "optional": true}))
            })
            .collect();
        json!({"type": "struct", "fields": fields, "optional": false})
    });
    Data { schema, value: Value::Struct(values) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{Converter, JsonConverter};
    use std::collections::BTreeSet;
    use std::io::Write as _;
    use std::path::Path;

    fn props(pairs: &[(&str, &str)]) -> Props {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    /// A source config for `dir`, polling every 10 ms, with more settings.
    fn config(dir: &Path, more: &[(&str, &str)]) -> Props {
        let mut c = props(&[("input.path", dir.to_str().unwrap()), ("topic", "t"), ("poll.interval.ms", "10")]);
        c.extend(props(more));
        c
    }

    /// Stored offsets by file name.
    #[derive(Default)]
    struct Stored(BTreeMap<String, Json>);
    impl OffsetReader for Stored {
        fn offset(&self, partition: &Json) -> Option<Json> {
            self.0.get(partition.get("file")?.as_str()?).cloned()
        }
    }
    impl Stored {
        /// The offsets of the last record of each file, as the runtime keeps them.
        fn of(records: &[SourceRecord]) -> Stored {
            Stored(records.iter().map(|r| (r.source_partition["file"].as_str().unwrap().to_string(), r.source_offset.clone())).collect())
        }
    }

    async fn started(config: &Props, offsets: &dyn OffsetReader) -> DirTask {
        let mut task = DirectorySource::default().new_task();
        task.start(config, offsets).await.unwrap();
        task
    }

    /// Polls until two polls in a row return nothing (the second one looked at the directory).
    async fn drain(task: &mut DirTask) -> Vec<SourceRecord> {
        let mut out = Vec::new();
        let mut empty = 0;
        while empty < 2 {
            let got = task.poll().await.unwrap();
            empty = if got.is_empty() { empty + 1 } else { 0 };
            out.extend(got);
        }
        out
    }

    fn append(path: &Path, text: &str) {
        std::fs::OpenOptions::new().create(true).append(true).open(path).unwrap().write_all(text.as_bytes()).unwrap();
    }

    fn field<'a>(r: &'a SourceRecord, name: &str) -> &'a Value {
        match &r.value.value {
            Value::Struct(fields) => &fields.iter().find(|(n, _)| n == name).unwrap_or_else(|| panic!("no field {name} in {}", r.value.value)).1,
            other => panic!("not a struct: {other}"),
        }
    }

    fn texts(records: &[SourceRecord]) -> Vec<String> {
        records.iter().map(|r| r.value.value.to_string()).collect()
    }

    fn issues(source: DirectorySource, config: &Props) -> Vec<(String, String)> {
        source.validate(config).into_iter().map(|i| (i.name, i.message)).collect()
    }

    #[tokio::test]
    async fn json_lines_become_structs_with_an_inferred_schema_a_key_and_a_file_header() {
        let dir = tempfile::tempdir().unwrap();
        let first = "{\"id\": 7, \"name\": \"x\", \"score\": 1.5, \"ok\": true, \"tags\": [\"a\"], \"addr\": {\"zip\": \"1\"}, \"none\": null}\r\n";
        let second = "{\"name\": \"y\", \"id\": 8}\n";
        std::fs::write(dir.path().join("a.json"), [first, second].concat()).unwrap();
        let mut task = started(&config(dir.path(), &[("key.fields", "id")]), &Stored::default()).await;
        let got = drain(&mut task).await;
        assert_eq!(texts(&got), ["Struct{id=7,name=x,score=1.5,ok=true,tags=[a],addr=Struct{zip=1},none=null}", "Struct{name=y,id=8}"], "fields in the line's order");
        let r = &got[0];
        assert_eq!((r.topic.as_str(), r.partition, r.timestamp), ("t", None, None));
        assert_eq!(r.headers, vec![("file".to_string(), Some(Bytes::from("a.json")))]);
        assert_eq!(r.source_partition, json!({"file": "a.json"}));
        assert_eq!(r.source_offset, json!({"position": first.len(), "line": 1}));
        assert_eq!(got[1].source_offset, json!({"position": first.len() + second.len(), "line": 2}));
        let opt = |t: &str| json!({"type": t, "optional": true});
        assert_eq!(
            r.value.schema,
            Some(json!({"type": "struct", "optional": false, "fields": [
                {"field": "id", "type": "int64", "optional": true},
                {"field": "name", "type": "string", "optional": true},
                {"field": "score", "type": "float64", "optional": true},
                {"field": "ok", "type": "boolean", "optional": true},
                {"field": "tags", "type": "array", "items": opt("string"), "optional": true},
                {"field": "addr", "type": "struct", "fields": [{"field": "zip", "type": "string", "optional": true}], "optional": true},
                {"field": "none", "type": "string", "optional": true},
            ]}))
        );
        assert_eq!(
            r.key,
            Data {
                schema: Some(json!({"type": "struct", "fields": [{"field": "id", "type": "int64", "optional": true}], "optional": false})),
                value: Value::Struct(vec![("id".into(), Value::Int(7))])
            }
        );
        // JsonConverter with schemas writes Kafka's envelope.
        let bytes = JsonConverter { schemas: true }.to_bytes("t", &got[1].value).unwrap().unwrap();
        let written: Json = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(written["payload"], json!({"name": "y", "id": 8}));
        assert_eq!(written["schema"]["fields"][1], json!({"field": "id", "type": "int64", "optional": true}));
        assert_eq!(task.state.skipped, 0);
    }

    #[test]
    fn json_arrays_merge_their_elements_types_or_go_without_a_schema() {
        let d = parse_json(r#"{"xs": [1, 2.5, null], "os": [{"a": 1}, {"b": "x", "a": 2.5}], "e": []}"#, true).unwrap();
        assert_eq!(
            d.value,
            Value::Struct(vec![
                ("xs".into(), Value::Array(vec![Value::Float(1.0), Value::Float(2.5), Value::Null])),
                (
                    "os".into(),
                    Value::Array(vec![
                        Value::Struct(vec![("a".into(), Value::Float(1.0)), ("b".into(), Value::Null)]),
                        Value::Struct(vec![("a".into(), Value::Float(2.5)), ("b".into(), Value::String("x".into()))]),
                    ])
                ),
                ("e".into(), Value::Array(vec![])),
            ])
        );
        let schema = d.schema.unwrap();
        assert_eq!(schema["fields"][0]["items"], json!({"type": "float64", "optional": true}));
        assert_eq!(schema["fields"][1]["items"]["fields"], json!([{"field": "a", "type": "float64", "optional": true}, {"field": "b", "type": "string", "optional": true}]));
        assert_eq!(schema["fields"][2]["items"], json!({"type": "string", "optional": true}));
        let mixed = parse_json(r#"{"xs": [1, "a"], "n": 18446744073709551615}"#, true).unwrap();
        assert_eq!(mixed.schema, None, "an array mixing types: no schema");
        assert_eq!(mixed.value, Value::Struct(vec![("xs".into(), Value::Array(vec![Value::Int(1), Value::String("a".into())])), ("n".into(), Value::Float(u64::MAX as f64))]));
        assert_eq!(parse_json(r#"{"a": 1, "a": 2, "b": 3}"#, true).unwrap().value.to_string(), "Struct{a=2,b=3}", "a repeated key keeps its place and last value");
        let plain = parse_json(r#"{"a": 1}"#, false).unwrap();
        assert_eq!(plain, Data { schema: None, value: Value::Struct(vec![("a".into(), Value::Int(1))]) }, "schema.inference=false: schemaless");
        for (line, why) in [("[1]", "an array where"), ("3", "a number where"), ("{\"a\": 1", "not valid JSON"), ("{\"a\": 1} {}", "not valid JSON")] {
            let e = parse_json(line, true).unwrap_err();
            assert!(e.contains(why), "{line}: {e}");
        }
    }

    #[tokio::test]
    async fn csv_rows_with_a_header_quoting_and_inferred_types() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("a.csv"),
            "\u{feff}id, name ,price,active,zip,note,empty,blank,big\n1,\"Smith, J\",9.99,TRUE,02134,\"say \"\"hi\"\"\",,\"\",99999999999999999999\n-2,x\"y,1e3,false,0,\"12\",,,-0.5\n",
        )
        .unwrap();
        let mut task = started(&config(dir.path(), &[("format", "csv"), ("key.fields", "id,missing")]), &Stored::default()).await;
        let got = drain(&mut task).await;
        assert_eq!(got.len(), 2, "the header row is no record");
        let s = |t: &str| Value::String(t.into());
        let row = |r: &SourceRecord| ["id", "name", "price", "active", "zip", "note", "empty", "blank", "big"].map(|c| field(r, c).clone());
        assert_eq!(row(&got[0]), [Value::Int(1), s("Smith, J"), Value::Float(9.99), Value::Bool(true), s("02134"), s("say \"hi\""), Value::Null, s(""), s("99999999999999999999")]);
        assert_eq!(
            row(&got[1]),
            [Value::Int(-2), s("x\"y"), Value::Float(1000.0), Value::Bool(false), Value::Int(0), Value::Int(12), Value::Null, Value::Null, Value::Float(-0.5)]
        );
        let types: Vec<&str> = got[0].value.schema.as_ref().unwrap()["fields"].as_array().unwrap().iter().map(|f| f["type"].as_str().unwrap()).collect();
        assert_eq!(types, ["int64", "string", "float64", "boolean", "string", "string", "string", "string", "string"]);
        assert_eq!(got[1].source_offset["line"], 3);
        assert_eq!(got[0].key.value, Value::Struct(vec![("id".into(), Value::Int(1)), ("missing".into(), Value::Null)]));
        assert_eq!(got[0].key.schema.as_ref().unwrap()["fields"][1], json!({"field": "missing", "type": "string", "optional": true}));

        // schema.inference=false: all text, still with a schema; empty unquoted fields are null.
        let mut task = started(&config(dir.path(), &[("format", "csv"), ("schema.inference", "false")]), &Stored::default()).await;
        let got = drain(&mut task).await;
        assert_eq!(row(&got[0])[..4], [s("1"), s("Smith, J"), s("9.99"), s("TRUE")]);
        assert_eq!(row(&got[0])[6], Value::Null);
        assert!(got[0].value.schema.as_ref().unwrap()["fields"].as_array().unwrap().iter().all(|f| f["type"] == "string" && f["optional"] == true));
    }

    #[tokio::test]
    async fn csv_separators_column_names_and_header_names() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("semi.csv"), "a;b\n1;\"x;y\"\n").unwrap();
        let got = drain(&mut started(&config(dir.path(), &[("format", "csv"), ("csv.separator.char", ";")]), &Stored::default()).await).await;
        assert_eq!(texts(&got), ["Struct{a=1,b=x;y}"]);

        std::fs::remove_file(dir.path().join("semi.csv")).unwrap();
        std::fs::write(dir.path().join("tabs.tsv"), "1\tx, y\n2\t\"z\"\n").unwrap();
        for sep in ["9", "\t", "\\t"] {
            let c = config(dir.path(), &[("format", "csv"), ("csv.separator.char", sep), ("csv.column.names", "n, s")]);
            let got = drain(&mut started(&c, &Stored::default()).await).await;
            assert_eq!(texts(&got), ["Struct{n=1,s=x, y}", "Struct{n=2,s=z}"], "separator {sep:?}; no header row with csv.column.names");
        }

        assert_eq!(&*header_columns("a,,a, b ,column3", ',').unwrap(), ["a", "column2", "column3", "b", "column5"]);
        assert_eq!(&*header_columns("column2,", ',').unwrap(), ["column2", "column2_"]);
        let fields = split_csv(r#""",a,"b,""c""",,"#, ',').unwrap();
        assert_eq!(fields.iter().map(|f| (f.text.as_str(), f.quoted)).collect::<Vec<_>>(), [("", true), ("a", false), ("b,\"c\"", true), ("", false), ("", false)]);
        assert!(split_csv("a,\"b", ',').unwrap_err().contains("cannot span lines"));
        assert!(split_csv("\"a\"b,c", ',').unwrap_err().contains("'b' after the closing quote of field 1"));
        for (text, kind) in [
            ("0", Some(true)),
            ("-12", Some(true)),
            ("1.5", Some(false)),
            ("2E-3", Some(false)),
            ("007", None),
            ("1.", None),
            (".5", None),
            ("-", None),
            ("1e", None),
            ("0x1F", None),
            ("1,5", None),
            ("", None),
        ] {
            assert_eq!(number_kind(text), kind, "{text}");
        }
    }

    #[tokio::test]
    async fn it_tails_appended_lines_waits_for_partial_ones_and_picks_up_new_files_in_name_order() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.json"), dir.path().join("b.json"));
        std::fs::write(&b, "{\"f\": \"b\", \"n\": 1}\n").unwrap();
        std::fs::write(&a, "{\"f\": \"a\", \"n\": 1}\n{\"f\": \"a\", \"n\": 2}\n{\"f\": \"a\", \"n\"").unwrap();
        std::fs::write(dir.path().join("c.txt"), "{\"f\": \"c\"}\n").unwrap();
        let mut task = started(&config(dir.path(), &[("input.file.pattern", ".*\\.json")]), &Stored::default()).await;
        let got = drain(&mut task).await;
        assert_eq!(texts(&got), ["Struct{f=a,n=1}", "Struct{f=a,n=2}", "Struct{f=b,n=1}"], "name order; c.txt does not match; a partial line waits");
        assert!(task.poll().await.unwrap().is_empty(), "still partial");

        append(&a, ": 3}\n");
        append(&b, "{\"f\": \"b\", \"n\": 2}\n");
        let got = task.poll().await.unwrap();
        assert_eq!(texts(&got), ["Struct{f=a,n=3}", "Struct{f=b,n=2}"]);
        assert_eq!(got[0].source_offset, json!({"position": std::fs::metadata(&a).unwrap().len(), "line": 3}));

        std::fs::write(dir.path().join("0.json"), "{\"f\": \"0\"}\n").unwrap();
        std::fs::write(dir.path().join("d.json"), "{\"f\": \"d\"}\n").unwrap();
        assert_eq!(texts(&drain(&mut task).await), ["Struct{f=0}", "Struct{f=d}"], "new files, from their start");
    }

    #[tokio::test]
    async fn batches_are_at_most_batch_size() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.json"), (0..5).map(|n| format!("{{\"n\": {n}}}\n")).collect::<String>()).unwrap();
        std::fs::write(dir.path().join("b.json"), "{\"n\": 5}\n").unwrap();
        let mut task = started(&config(dir.path(), &[("batch.size", "2")]), &Stored::default()).await;
        let mut sizes = Vec::new();
        let mut all = Vec::new();
        loop {
            let got = task.poll().await.unwrap();
            if got.is_empty() {
                break;
            }
            sizes.push(got.len());
            all.extend(got);
        }
        assert_eq!(sizes, [2, 2, 2]);
        assert_eq!(all.iter().map(|r| field(r, "n").clone()).collect::<Vec<_>>(), (0..6).map(Value::Int).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn a_restarted_task_resumes_each_file_after_its_stored_offset_rereading_the_csv_header() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.csv"), dir.path().join("b.csv"));
        std::fs::write(&a, "\nid,v\n1,x\n2,y\n").unwrap();
        std::fs::write(&b, "id,v\n10,p\n").unwrap();
        let c = config(dir.path(), &[("format", "csv")]);
        let first = drain(&mut started(&c, &Stored::default()).await).await;
        assert_eq!(first.len(), 3);
        // Only a's first record was stored when the task stopped.
        let stored = Stored::of(&first[..1]);
        assert_eq!(stored.0["a.csv"], json!({"position": 10, "line": 3}));
        append(&a, "3,z\n");
        let mut again = started(&c, &stored).await;
        let got = drain(&mut again).await;
        assert_eq!(
            texts(&got),
            ["Struct{id=2,v=y}", "Struct{id=3,v=z}", "Struct{id=10,v=p}"],
            "a resumes after its stored line with its header's names; b, with no offset, from its start"
        );
        assert_eq!(got[1].source_offset, json!({"position": 18, "line": 5}));

        // Stored at the end of every file: nothing again, then only what is appended.
        let mut third = started(&c, &Stored::of(&[first, got].concat())).await;
        assert!(drain(&mut third).await.is_empty());
        append(&b, "11,q\n");
        assert_eq!(texts(&drain(&mut third).await), ["Struct{id=11,v=q}"]);

        // A file shorter than its stored offset (truncated meanwhile) is read from its start.
        std::fs::write(&a, "id,v\n9,w\n").unwrap();
        let mut fourth = started(&c, &Stored(BTreeMap::from([("a.csv".to_string(), json!({"position": 18, "line": 5}))]))).await;
        assert_eq!(texts(&drain(&mut fourth).await), ["Struct{id=9,v=w}", "Struct{id=10,v=p}", "Struct{id=11,v=q}"]);
    }

    #[tokio::test]
    async fn truncated_and_replaced_files_are_read_again_from_their_start() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.json");
        std::fs::write(&a, "{\"n\": 1}\n{\"n\": 2}\n").unwrap();
        let mut task = started(&config(dir.path(), &[]), &Stored::default()).await;
        assert_eq!(drain(&mut task).await.len(), 2);
        std::fs::OpenOptions::new().write(true).open(&a).unwrap().set_len(0).unwrap();
        append(&a, "{\"n\": 3}\n");
        assert_eq!(texts(&drain(&mut task).await), ["Struct{n=3}"], "truncated (copytruncate rotation)");
        if cfg!(unix) {
            let tmp = dir.path().join("a.tmp");
            std::fs::write(&tmp, "{\"n\": 4}\n{\"n\": 5}\n").unwrap();
            std::fs::rename(&tmp, &a).unwrap();
            assert_eq!(texts(&drain(&mut task).await), ["Struct{n=4}", "Struct{n=5}"], "replaced by a longer file");
        }
        std::fs::remove_file(&a).unwrap();
        assert!(drain(&mut task).await.is_empty());
        assert!(task.state.files.is_empty(), "a file that is gone is forgotten");
    }

    #[tokio::test]
    async fn bad_lines_are_skipped_with_a_count_or_stop_the_task_with_halt_on_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.json"), "{\"n\": 1}\nnot json\n[1, 2]\n\n   \n{\"n\": 2}\n").unwrap();
        let mut task = started(&config(dir.path(), &[]), &Stored::default()).await;
        let got = drain(&mut task).await;
        assert_eq!(texts(&got), ["Struct{n=1}", "Struct{n=2}"]);
        assert_eq!(got[1].source_offset["line"], 6, "skipped and blank lines count as lines");
        assert_eq!(task.state.skipped, 2, "blank lines are not counted as bad");

        let csv = tempfile::tempdir().unwrap();
        std::fs::write(csv.path().join("a.csv"), "a,b\n1,2\n1,2,3\n\"1,2\n\"1\"x,2\n3,4\n").unwrap();
        let mut task = started(&config(csv.path(), &[("format", "csv")]), &Stored::default()).await;
        assert_eq!(texts(&drain(&mut task).await), ["Struct{a=1,b=2}", "Struct{a=3,b=4}"]);
        assert_eq!(task.state.skipped, 3);

        let mut task = started(&config(csv.path(), &[("format", "csv"), ("halt.on.error", "true")]), &Stored::default()).await;
        let err = task.poll().await.unwrap_err();
        assert!(matches!(&err, Error::Data(m) if m.contains("a.csv line 3: 3 fields where there are 2 columns")), "{err}");

        // A header row that does not parse: the file is skipped until it changes.
        let bad = tempfile::tempdir().unwrap();
        std::fs::write(bad.path().join("a.csv"), "\"a,b\n1,2\n").unwrap();
        let mut task = started(&config(bad.path(), &[("format", "csv")]), &Stored::default()).await;
        assert!(drain(&mut task).await.is_empty());
        assert!(task.state.files["a.csv"].broken);
        std::fs::write(bad.path().join("a.csv"), "a,b\n1,2\n").unwrap();
        assert_eq!(texts(&drain(&mut task).await), ["Struct{a=1,b=2}"]);
    }

    #[tokio::test]
    async fn a_missing_directory_is_waited_for() {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("later");
        let mut task = started(&config(&dir, &[]), &Stored::default()).await;
        assert!(task.poll().await.unwrap().is_empty());
        assert!(task.state.dir_missing);
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("a.json"), "{\"n\": 1}\n").unwrap();
        assert_eq!(drain(&mut task).await.len(), 1);
        assert!(!task.state.dir_missing);
    }

    #[tokio::test]
    async fn tasks_share_the_files_by_name() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..20 {
            std::fs::write(dir.path().join(format!("f{i:02}.json")), format!("{{\"i\": {i}}}\n")).unwrap();
        }
        let configs = DirectorySource::default().task_configs(&config(dir.path(), &[]), 3);
        assert_eq!(configs.iter().map(|c| (c[TASK_ID].as_str(), c[TASK_COUNT].as_str())).collect::<Vec<_>>(), [("0", "3"), ("1", "3"), ("2", "3")]);
        let mut seen = BTreeSet::new();
        for c in &configs {
            let got = drain(&mut started(c, &Stored::default()).await).await;
            assert!(!got.is_empty() && got.len() < 20, "each task reads some: {}", got.len());
            for r in got {
                assert!(seen.insert(r.source_partition["file"].as_str().unwrap().to_string()), "a file read by two tasks");
            }
        }
        assert_eq!(seen.len(), 20);
    }

    #[test]
    fn config_errors_name_each_bad_setting() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_str().unwrap();
        let json = DirectorySource::default();
        let names = |c: &Props| issues(json, c).into_iter().map(|(n, _)| n).collect::<Vec<_>>();
        let message = |c: &Props, name: &str| issues(json, c).into_iter().find(|(n, _)| n == name).unwrap_or_else(|| panic!("no issue for {name}: {:?}", issues(json, c))).1;

        assert!(issues(json, &props(&[("input.path", path), ("topic", "t")])).is_empty());
        assert_eq!(names(&props(&[])), ["input.path", "topic"]);
        assert!(message(&props(&[("topic", "t")]), "input.path").contains("missing required setting input.path"));
        let m = message(&props(&[("input.path", "/nonexistent/samsa-dir"), ("topic", "t")]), "input.path");
        assert!(m.contains("cannot read the directory input.path /nonexistent/samsa-dir"), "{m}");
        let file = dir.path().join("f");
        std::fs::write(&file, "").unwrap();
        assert!(message(&props(&[("input.path", file.to_str().unwrap()), ("topic", "t")]), "input.path").contains("is not a directory"));
        let m = message(&props(&[("input.path", path), ("topic", "t"), ("input.file.pattern", "*.csv")]), "input.file.pattern");
        assert!(m.contains("'*.csv' is not a regular expression"), "{m}");
        let m = message(&props(&[("input.path", path), ("topic", "t"), ("format", "xml")]), "format");
        assert!(m.contains("json") && m.contains("csv") && m.contains("'xml'"), "{m}");
        assert!(message(&props(&[("input.path", path), ("topic", "a,b")]), "topic").contains("one topic"));

        let csv = |more: &[(&str, &str)]| {
            let mut c = props(&[("input.path", path), ("topic", "t"), ("format", "csv")]);
            c.extend(props(more));
            c
        };
        assert!(message(&csv(&[("csv.first.row.as.header", "false")]), "csv.column.names").contains("must name the columns"));
        assert!(message(&csv(&[("csv.first.row.as.header", "true"), ("csv.column.names", "a")]), "csv.column.names").contains("set csv.first.row.as.header=false"));
        assert!(issues(json, &csv(&[("csv.column.names", "a,b")])).is_empty(), "column names imply no header row");
        assert!(message(&csv(&[("csv.column.names", "a,b,a")]), "csv.column.names").contains("column a twice"));
        assert!(message(&csv(&[("csv.column.names", "a,b"), ("key.fields", "c")]), "key.fields").contains("key field c is not one of the columns a, b"));
        assert!(message(&csv(&[("csv.separator.char", "ab")]), "csv.separator.char").contains("one character or its code"));
        assert!(message(&csv(&[("csv.separator.char", "\"")]), "csv.separator.char").contains("cannot be"));
        assert!(issues(json, &props(&[("input.path", path), ("topic", "t"), ("csv.separator.char", "ab")])).is_empty(), "CSV settings do not matter for JSON");

        let bad = props(&[("input.path", path), ("topic", "t"), ("batch.size", "0"), ("poll.interval.ms", "soon"), ("schema.inference", "yes"), ("halt.on.error", "1")]);
        let mut got = names(&bad);
        got.sort();
        assert_eq!(got, ["batch.size", "halt.on.error", "poll.interval.ms", "schema.inference"]);
        assert!(message(&bad, "batch.size").contains("at least 1"));
    }

    #[tokio::test]
    async fn a_bad_config_fails_the_task_start() {
        let err = DirectorySource::default().task().start(&props(&[("topic", "t"), ("format", "xml")]), &Stored::default()).await.err().unwrap();
        assert!(matches!(&err, Error::Config(m) if m.contains("input.path") && m.contains("'xml'")), "{err}");
    }

    #[tokio::test]
    async fn the_class_resolves_by_samsas_and_spooldirs_names_and_spooldirs_csv_class_reads_csv() {
        for class in [CLASS, "DirectorySourceConnector", "DirectorySource", SPOOLDIR_CSV, SPOOLDIR_JSON, SPOOLDIR_LINE_JSON] {
            assert!(matches!(crate::api::plugin(class), Some(crate::api::Plugin::Source(_))), "{class}");
        }
        assert!(crate::api::PLUGINS.contains(&CLASS));
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.csv"), "a,b\n1,2\n").unwrap();
        let Some(crate::api::Plugin::Source(spooldir)) = crate::api::plugin(SPOOLDIR_CSV) else { panic!("a source") };
        let c = config(dir.path(), &[]);
        assert!(spooldir.validate(&c).is_empty());
        let mut task = spooldir.task();
        task.start(&c, &Stored::default()).await.unwrap();
        assert_eq!(texts(&task.poll().await.unwrap()), ["Struct{a=1,b=2}"], "csv by the class");
        let c = config(dir.path(), &[("format", "json")]);
        let mut task = spooldir.task();
        task.start(&c, &Stored::default()).await.unwrap();
        assert!(task.poll().await.unwrap().is_empty(), "format=json overrides the class: both lines are bad JSON");
    }
}
