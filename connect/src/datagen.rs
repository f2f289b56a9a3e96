//! The `datagen` source: synthetic records at a set rate, for demos, tests and load, in the
//! manner of Confluent's kafka-connect-datagen (its setting names, quickstart names and
//! field names; `io.confluent.kafka.connect.datagen.DatagenConnector` is accepted as the
//! class).
//!
//! # Settings
//!
//! - `kafka.topic` (required): the topic to write.
//! - `quickstart`: a built-in data set: `pageviews` (`viewtime` 1, 11, 21, ..., `userid`,
//!   `pageid`; keyed by `viewtime`), `users` (`registertime`, `userid`, `regionid`, `gender`; keyed by
//!   `userid`), `orders` (`ordertime`, `orderid`, `itemid`, `orderunits`, `address`
//!   {`city`, `state`, `zipcode`}; keyed by `orderid`) or `stock_trades` (`side`,
//!   `quantity`, `symbol`, `price`, `account`, `userid`; keyed by `symbol`).
//! - `schema.string`: instead of a quickstart, a JSON template (below);
//!   `schema.filename`: the same, from a file. Exactly one of the three is given.
//! - `schema.keyfield`: the top-level field whose value, as text, is the record key
//!   (default: the quickstart's key; a template without it writes null keys).
//! - `rate`: records per second for the whole connector (fractions allowed); or
//!   `max.interval`: as Confluent's, one record per poll after a random wait of 0 to that
//!   many ms. Neither (or 0): as fast as possible, `batch.size` records per poll (default
//!   1000). `max.interval` has no default here (Confluent's is 500).
//! - `iterations`: how many records in all, across tasks and restarts; `-1` (or any
//!   number below 1, as Confluent's) or unset: no end. A task that has written its share
//!   idles.
//! - `random.seed`: makes the data repeatable: record number `n` is the same in every
//!   run, whatever `tasks.max` is and wherever a restart happened (except `${now}`).
//! - `key.space`: the ids `${id}` draws, `1..=N` (default: the quickstart's, 9 users as
//!   Confluent's, or 1000 for a template).
//! - `tasks.max`: the work is split: task `i` of `n` writes the records numbered `i`,
//!   `i + n`, `i + 2n`, ... (so `${seq}` stays unique), `1/n` of `iterations` and of `rate`.
//!
//! # Templates
//!
//! A template is a JSON object; each field is a record field, in the template's order:
//!
//! ```text
//! {"id": "${seq}", "user": "User_${int:1:9}", "amount": "${float:1:100:2}",
//!  "kind": "${choice:a|b|c}", "ts": "${now}", "shipped": true,
//!  "address": {"zip": "${int:10000:99999}"}}
//! ```
//!
//! A number or boolean is a constant; an object is a nested struct; a string is text in
//! which placeholders are replaced. A string that is exactly one placeholder takes the
//! placeholder's type (`"${seq}"` is an int64, `"User_${seq}"` a string). `$$` is a
//! literal `$`. The placeholders:
//!
//! | placeholder | value | type |
//! |---|---|---|
//! | `${seq}`, `${seq:START}`, `${seq:START:STEP}` | the record's number (0, 1, 2, ...), as `START + STEP * n` | int64 |
//! | `${int:MIN:MAX}` | a whole number from MIN to MAX, both included | int64 |
//! | `${float:MIN:MAX}`, `${float:MIN:MAX:DECIMALS}` | a number from MIN to MAX, rounded to DECIMALS places if given | float64 |
//! | `${choice:A\|B\|C}` | one of the options | string |
//! | `${bool}` | true or false | boolean |
//! | `${id}` | a whole number from 1 to `key.space` | int64 |
//! | `${uuid}` | a random (version 4) UUID | string |
//! | `${string:LEN}` | LEN random letters and digits | string |
//! | `${now}`, `${now:iso}` | the time of generation, in ms since the epoch or as ISO-8601 UTC | int64, string |
//!
//! # Records and offsets
//!
//! Values carry a struct schema (Kafka Connect's JSON form, so `JsonConverter` with
//! schemas writes the `{"schema", "payload"}` envelope); keys are strings. A task's source
//! partition is `{"task": i}` and its offset `{"seq": k}`, the records it has written; a
//! restarted task resumes there (after a change of `tasks.max`, task `i` still resumes at
//! its stored count, so record numbers may repeat or be skipped). Randomness comes from a small counter-based generator (SplitMix64 seeded
//! with the seed and the record number), so no record depends on the ones before it.

use std::fmt::Write as _;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value as Json};

use crate::api::{Connector, OffsetReader, SourceConnector, SourceRecord, SourceTask, TASK_COUNT, TASK_ID};
use crate::config::{ConfigIssue, Kind, Props, Setting};
use crate::data::{string_schema, Data, Schema, Value};
use crate::{Error, Result};

/// The full class name of the datagen source (Confluent's class name works too).
pub const CLASS: &str = "samsa.connect.datagen.DatagenSourceConnector";

/// How long a task that has written all its records waits per poll.
const IDLE_WAIT: Duration = Duration::from_millis(250);
/// The most records one poll returns, unless `batch.size` says otherwise.
const DEFAULT_BATCH: usize = 1000;
/// The ids `${id}` draws in a template, unless `key.space` says otherwise.
const DEFAULT_KEY_SPACE: u64 = 1000;
/// Mixed into the seed for the waits of `max.interval`, apart from the data.
const TIMING_STREAM: u64 = 0x7469_6d69_6e67_0001;
/// The placeholders, for error messages.
const PLACEHOLDERS: &str = "seq, seq:START, seq:START:STEP, int:MIN:MAX, float:MIN:MAX, float:MIN:MAX:DECIMALS, choice:A|B|..., bool, id, uuid, string:LEN, now, now:iso";

/// A built-in data set.
struct Quickstart {
    name: &'static str,
    /// The struct schema's name (Confluent's Avro record name).
    schema_name: &'static str,
    template: &'static str,
    key: &'static str,
    key_space: u64,
}

/// Confluent's quickstarts that Samsa has, with their field names and value shapes.
const QUICKSTARTS: [Quickstart; 4] = [
    Quickstart {
        name: "pageviews",
        schema_name: "ksql.pageviews",
        template: r#"{"viewtime": "${seq:1:10}", "userid": "User_${id}", "pageid": "Page_${int:1:99}"}"#,
        key: "viewtime",
        key_space: 9,
    },
    Quickstart {
        name: "users",
        schema_name: "ksql.users",
        template: r#"{"registertime": "${int:1487715775521:1519273364600}", "userid": "User_${id}", "regionid": "Region_${int:1:9}", "gender": "${choice:MALE|FEMALE|OTHER}"}"#,
        key: "userid",
        key_space: 9,
    },
    Quickstart {
        name: "orders",
        schema_name: "ksql.orders",
        template: r#"{"ordertime": "${int:1487715775521:1519273364600}", "orderid": "${seq}", "itemid": "Item_${int:1:999}", "orderunits": "${float:0.1:10}",
                      "address": {"city": "City_${int:1:99}", "state": "State_${int:1:99}", "zipcode": "${int:10000:99999}"}}"#,
        key: "orderid",
        key_space: 9,
    },
    Quickstart {
        name: "stock_trades",
        schema_name: "ksql.StockTrade",
        template: r#"{"side": "${choice:BUY|SELL}", "quantity": "${int:1:5000}", "symbol": "${choice:ZBZX|ZJZZT|ZTEST|ZVV|ZVZZT|ZWZZT|ZXZZT}", "price": "${int:5:1000}",
                      "account": "${choice:ABC123|LMN456|XYZ789}", "userid": "User_${id}"}"#,
        key: "symbol",
        key_space: 9,
    },
];

/// The names of the built-in quickstarts.
pub fn quickstart_names() -> Vec<&'static str> {
    QUICKSTARTS.iter().map(|q| q.name).collect()
}

/// Writes synthetic records to `kafka.topic`, from a quickstart or a JSON template.
pub struct DatagenSource;

impl Connector for DatagenSource {
    fn settings(&self) -> Vec<Setting> {
        vec![
            Setting { name: "kafka.topic", kind: Kind::String, default: None, required: true, doc: "the topic to write" },
            Setting { name: "quickstart", kind: Kind::String, default: None, required: false, doc: "a built-in data set: pageviews, users, orders or stock_trades" },
            Setting { name: "schema.string", kind: Kind::String, default: None, required: false, doc: "a JSON template of the records, instead of quickstart" },
            Setting { name: "schema.filename", kind: Kind::String, default: None, required: false, doc: "a file holding a JSON template, instead of quickstart" },
            Setting {
                name: "schema.keyfield",
                kind: Kind::String,
                default: None,
                required: false,
                doc: "the top-level field whose value, as text, is the key (default: the quickstart's; none: null keys)",
            },
            Setting { name: "rate", kind: Kind::String, default: Some("0"), required: false, doc: "records per second for the connector (0: as fast as possible)" },
            Setting { name: "max.interval", kind: Kind::Int, default: Some("0"), required: false, doc: "the most ms of the random wait before each record (0: no wait)" },
            Setting { name: "iterations", kind: Kind::Int, default: Some("-1"), required: false, doc: "how many records in all, across tasks and restarts (-1: no end)" },
            Setting { name: "random.seed", kind: Kind::Int, default: None, required: false, doc: "a seed that makes the records repeatable (default: a new one each start)" },
            Setting { name: "key.space", kind: Kind::Int, default: None, required: false, doc: "${id} draws 1 to this (default: the quickstart's, or 1000)" },
            Setting { name: "batch.size", kind: Kind::Int, default: Some("1000"), required: false, doc: "the most records one poll returns" },
        ]
    }

    fn validate(&self, config: &Props) -> Vec<ConfigIssue> {
        let mut issues = crate::config::validate(&self.settings(), config);
        if let Err(more) = Plan::new(config) {
            for issue in more {
                if !issues.iter().any(|i| i.name == issue.name) {
                    issues.push(issue);
                }
            }
        }
        issues
    }

    fn task_configs(&self, config: &Props, max_tasks: usize) -> Vec<Props> {
        let mut n = max_tasks.max(1) as u64;
        if let Some(total) = setting(config, "iterations").and_then(|i| i.parse::<i64>().ok()).filter(|i| *i > 0) {
            n = n.min(total as u64);
        }
        crate::api::numbered_tasks(config, n as usize)
    }
}

impl SourceConnector for DatagenSource {
    fn task(&self) -> Box<dyn SourceTask> {
        Box::new(DatagenTask { plan: None, id: 0, count: 1, share: None, seed: 0, done: 0, paced: None, idle_logged: false })
    }
}

/// A set setting's trimmed value (`None` when unset or blank).
fn setting<'a>(config: &'a Props, name: &str) -> Option<&'a str> {
    config.get(name).map(|v| v.trim()).filter(|v| !v.is_empty())
}

/// How a task spaces its records.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Pacing {
    /// As fast as possible, a batch per poll.
    Flat,
    /// Records per second (of the whole connector).
    Rate(f64),
    /// A random wait of 0 to this many ms before each record (Confluent's `max.interval`).
    MaxInterval(u64),
}

/// A checked connector config.
#[derive(Debug)]
struct Plan {
    topic: String,
    template: Template,
    /// The top-level field that is the key.
    key_index: Option<usize>,
    pacing: Pacing,
    /// Records in all (`None`: no end).
    iterations: Option<u64>,
    seed: Option<u64>,
    key_space: u64,
    batch: usize,
}

impl Plan {
    /// Checks a config, reporting every bad setting by name.
    fn new(config: &Props) -> std::result::Result<Plan, Vec<ConfigIssue>> {
        let mut issues = Vec::new();
        let mut issue = |name: &str, message: String| issues.push(ConfigIssue { name: name.into(), message });
        let int = |name: &str, issue: &mut dyn FnMut(&str, String)| -> Option<i64> {
            let v = setting(config, name)?;
            v.parse::<i64>().map_err(|_| issue(name, format!("{name} must be a whole number, not '{v}'"))).ok()
        };

        let topic = setting(config, "kafka.topic").unwrap_or_default().to_string();
        if topic.is_empty() {
            issue("kafka.topic", "missing required setting kafka.topic (the topic to write)".into());
        } else if topic.contains(',') {
            issue("kafka.topic", format!("datagen writes one topic; kafka.topic holds a list ({topic})"));
        }

        // The template: a quickstart, schema.string or schema.filename.
        let sources: Vec<&str> = ["quickstart", "schema.string", "schema.filename"].into_iter().filter(|s| setting(config, s).is_some()).collect();
        let mut template = None;
        let mut key = setting(config, "schema.keyfield").map(str::to_string);
        let mut key_space_default = DEFAULT_KEY_SPACE;
        match sources.as_slice() {
            [] => {
                issue("quickstart", format!("give quickstart (one of {}), schema.string (a JSON template) or schema.filename (a file holding one)", quickstart_names().join(", ")))
            }
            [source] => {
                let text = setting(config, source).unwrap_or_default();
                let compiled = match *source {
                    "quickstart" => match QUICKSTARTS.iter().find(|q| q.name.eq_ignore_ascii_case(text)) {
                        Some(q) => {
                            key.get_or_insert_with(|| q.key.to_string());
                            key_space_default = q.key_space;
                            Template::parse(q.template, Some(q.schema_name))
                        }
                        None => Err(format!("no quickstart '{text}'; Samsa has {} (for Confluent's others, write a schema.string template)", quickstart_names().join(", "))),
                    },
                    "schema.string" => Template::parse(text, None),
                    _ => std::fs::read_to_string(text).map_err(|e| format!("cannot read the template file {text}: {e}")).and_then(|t| Template::parse(&t, None)),
                };
                match compiled {
                    Ok(t) => template = Some(t),
                    Err(e) => issue(source, format!("{source}: {e}")),
                }
            }
            [first, rest @ ..] => {
                for other in rest {
                    issue(other, format!("{first} and {other} are both set; give one of quickstart, schema.string and schema.filename"));
                }
            }
        }
        let mut key_index = None;
        if let (Some(t), Some(k)) = (&template, &key) {
            match t.fields.iter().position(|(name, _)| name == k) {
                Some(i) if matches!(t.fields[i].1, Node::Struct(_)) => issue("schema.keyfield", format!("schema.keyfield: field {k} is a struct; the key is one plain field")),
                Some(i) => key_index = Some(i),
                None => issue(
                    "schema.keyfield",
                    format!("schema.keyfield: no field '{k}' in the template; its fields are {}", t.fields.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(", ")),
                ),
            }
        }

        let rate = match setting(config, "rate") {
            None => 0.0,
            Some(v) => match v.parse::<f64>() {
                Ok(r) if r.is_finite() && r >= 0.0 => r,
                _ => {
                    issue("rate", format!("rate must be a number of records per second, 0 or more (0: as fast as possible), not '{v}'"));
                    0.0
                }
            },
        };
        let max_interval = match int("max.interval", &mut issue) {
            Some(ms) if ms < 0 => {
                issue("max.interval", format!("max.interval must be 0 or more ms, not {ms}"));
                0
            }
            ms => ms.unwrap_or(0) as u64,
        };
        let pacing = match (rate > 0.0, max_interval > 0) {
            (true, true) => {
                issue("rate", "give rate (records per second) or max.interval (the most ms between records), not both".into());
                Pacing::Flat
            }
            (true, false) => Pacing::Rate(rate),
            (false, true) => Pacing::MaxInterval(max_interval),
            (false, false) => Pacing::Flat,
        };
        let iterations = int("iterations", &mut issue).filter(|i| *i > 0).map(|i| i as u64);
        let seed = int("random.seed", &mut issue).map(|s| s as u64);
        let key_space = match int("key.space", &mut issue) {
            Some(n) if n < 1 => {
                issue("key.space", format!("key.space must be at least 1, not {n}"));
                1
            }
            n => n.map_or(key_space_default, |n| n as u64),
        };
        let batch = match int("batch.size", &mut issue) {
            Some(n) if n < 1 => {
                issue("batch.size", format!("batch.size must be at least 1, not {n}"));
                1
            }
            n => n.map_or(DEFAULT_BATCH, |n| n as usize),
        };
        match template {
            Some(template) if issues.is_empty() => Ok(Plan { topic, template, key_index, pacing, iterations, seed, key_space, batch }),
            _ => Err(issues),
        }
    }
}

/// A compiled template: the fields of one record and their struct schema.
#[derive(Debug)]
struct Template {
    fields: Vec<(String, Node)>,
    schema: Schema,
}

/// A template field.
#[derive(Debug)]
enum Node {
    /// A nested struct.
    Struct(Vec<(String, Node)>),
    /// A number or boolean.
    Const(Value),
    /// Text with placeholders.
    Text(Vec<Part>),
    /// Exactly one placeholder, with its type.
    One(Gen),
}

/// A piece of text.
#[derive(Debug)]
enum Part {
    Lit(String),
    Gen(Gen),
}

/// A placeholder.
#[derive(Debug, Clone, PartialEq)]
enum Gen {
    Seq { start: i64, step: i64 },
    Int { min: i64, max: i64 },
    Float { min: f64, max: f64, decimals: Option<i32> },
    Choice(Vec<String>),
    Bool,
    Id,
    Uuid,
    Str(usize),
    Now,
    NowIso,
}

/// What one record is generated with.
struct Cx {
    seq: u64,
    now_ms: i64,
    key_space: u64,
}

impl Template {
    /// Compiles a template (`name`: the struct schema's name).
    fn parse(text: &str, name: Option<&str>) -> std::result::Result<Template, String> {
        let tree = crate::data::parse_json_ordered(text).map_err(|e| format!("the template is not valid JSON: {e}"))?;
        let Value::Struct(fields) = tree else {
            return Err(r#"a template is a JSON object of fields, e.g. {"id": "${seq}", "user": "User_${int:1:9}"}"#.into());
        };
        let is = |k: &str, f: &dyn Fn(&Value) -> bool| fields.iter().any(|(n, v)| n == k && f(v));
        if is("type", &|v| matches!(v, Value::String(s) if s == "record")) && is("fields", &|v| matches!(v, Value::Array(_))) {
            return Err(format!(
                "this is an Avro schema (Confluent's avro-random-generator form); Samsa's datagen takes a JSON template of fields with placeholders, e.g. {}",
                r#"{"id": "${seq}", "user": "User_${int:1:9}", "amount": "${float:1:100:2}"}"#
            ));
        }
        let fields = compile_fields(fields, "")?;
        let mut schema = struct_schema(&fields);
        if let Some(n) = name {
            schema["name"] = json!(n);
        }
        Ok(Template { fields, schema })
    }

    /// One record's value.
    fn generate(&self, cx: &Cx, rng: &mut Rng) -> Value {
        generate_fields(&self.fields, cx, rng)
    }
}

fn compile_fields(fields: Vec<(String, Value)>, parent: &str) -> std::result::Result<Vec<(String, Node)>, String> {
    if fields.is_empty() {
        return Err(if parent.is_empty() { "the template has no fields".into() } else { format!("field {parent} is an empty object") });
    }
    let mut out: Vec<(String, Node)> = Vec::with_capacity(fields.len());
    for (name, tree) in fields {
        let path = if parent.is_empty() { name.clone() } else { format!("{parent}.{name}") };
        let node = match tree {
            Value::Null => return Err(format!(r#"field {path} is null; give a value or a placeholder such as "${{int:1:9}}""#)),
            Value::Array(_) | Value::Bytes(_) => return Err(format!("field {path} is an array; a template holds objects, strings, numbers and booleans")),
            v @ (Value::Bool(_) | Value::Int(_) | Value::Float(_)) => Node::Const(v),
            Value::Struct(inner) => Node::Struct(compile_fields(inner, &path)?),
            Value::String(s) => {
                let mut parts = parse_text(&s).map_err(|e| format!("field {path}: {e}"))?;
                match parts.as_slice() {
                    [Part::Gen(_)] => match parts.pop() {
                        Some(Part::Gen(g)) => Node::One(g),
                        _ => unreachable!("one placeholder"),
                    },
                    _ => Node::Text(parts),
                }
            }
        };
        out.push((name, node));
    }
    Ok(out)
}

/// Splits text into literals and placeholders.
fn parse_text(s: &str) -> std::result::Result<Vec<Part>, String> {
    let mut parts = Vec::new();
    let mut lit = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        lit.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(r) = after.strip_prefix('$') {
            lit.push('$');
            rest = r;
        } else if let Some(r) = after.strip_prefix('{') {
            let end = r.find('}').ok_or_else(|| format!("'${{' without a closing '}}' in \"{s}\""))?;
            let g = parse_gen(&r[..end])?;
            if !lit.is_empty() {
                parts.push(Part::Lit(std::mem::take(&mut lit)));
            }
            parts.push(Part::Gen(g));
            rest = &r[end + 1..];
        } else {
            lit.push('$');
            rest = after;
        }
    }
    lit.push_str(rest);
    if !lit.is_empty() || parts.is_empty() {
        parts.push(Part::Lit(lit));
    }
    Ok(parts)
}

/// Parses the inside of `${...}`.
fn parse_gen(spec: &str) -> std::result::Result<Gen, String> {
    let (name, args) = match spec.split_once(':') {
        Some((n, a)) => (n.trim(), Some(a)),
        None => (spec.trim(), None),
    };
    let bad = |why: &str| format!("${{{spec}}}: {why}");
    let args: Vec<&str> = args.map(|a| a.split(':').map(str::trim).collect()).unwrap_or_default();
    let int = |s: &str| s.parse::<i64>().map_err(|_| bad(&format!("'{s}' is not a whole number")));
    let float = |s: &str| s.parse::<f64>().ok().filter(|x| x.is_finite()).ok_or_else(|| bad(&format!("'{s}' is not a number")));
    let none = |g: Gen| if args.is_empty() { Ok(g) } else { Err(bad(&format!("{name} takes no arguments"))) };
    match name {
        "seq" => match args.as_slice() {
            [] => Ok(Gen::Seq { start: 0, step: 1 }),
            [start] => Ok(Gen::Seq { start: int(start)?, step: 1 }),
            [start, step] => Ok(Gen::Seq { start: int(start)?, step: int(step)? }),
            _ => Err(bad("use seq, seq:START or seq:START:STEP")),
        },
        "int" => match args.as_slice() {
            [min, max] => {
                let (min, max) = (int(min)?, int(max)?);
                if min > max {
                    return Err(bad("MIN is above MAX"));
                }
                Ok(Gen::Int { min, max })
            }
            _ => Err(bad("use int:MIN:MAX")),
        },
        "float" => {
            let (min, max, decimals) = match args.as_slice() {
                [min, max] => (float(min)?, float(max)?, None),
                [min, max, d] => (float(min)?, float(max)?, Some(d.parse::<i32>().ok().filter(|d| (0..=15).contains(d)).ok_or_else(|| bad("DECIMALS is 0 to 15"))?)),
                _ => return Err(bad("use float:MIN:MAX or float:MIN:MAX:DECIMALS")),
            };
            if min > max {
                return Err(bad("MIN is above MAX"));
            }
            Ok(Gen::Float { min, max, decimals })
        }
        "choice" => {
            let options: Vec<String> = spec.split_once(':').map(|(_, a)| a.split('|').map(str::to_string).collect()).unwrap_or_default();
            if options.is_empty() {
                return Err(bad("use choice:A|B|C"));
            }
            Ok(Gen::Choice(options))
        }
        "string" => match args.as_slice() {
            [len] => Ok(Gen::Str(len.parse::<usize>().ok().filter(|l| *l <= 65536).ok_or_else(|| bad("LEN is a length of 0 to 65536"))?)),
            _ => Err(bad("use string:LEN")),
        },
        "now" => match args.as_slice() {
            [] => Ok(Gen::Now),
            ["iso"] => Ok(Gen::NowIso),
            _ => Err(bad("use now (ms since the epoch) or now:iso")),
        },
        "bool" => none(Gen::Bool),
        "id" => none(Gen::Id),
        "uuid" => none(Gen::Uuid),
        _ => Err(format!("unknown placeholder ${{{spec}}}; Samsa has {PLACEHOLDERS} (and $$ for a literal $)")),
    }
}

impl Gen {
    /// The Connect type of its values.
    fn kind(&self) -> &'static str {
        match self {
            Gen::Seq { .. } | Gen::Int { .. } | Gen::Id | Gen::Now => "int64",
            Gen::Float { .. } => "float64",
            Gen::Bool => "boolean",
            Gen::Choice(_) | Gen::Uuid | Gen::Str(_) | Gen::NowIso => "string",
        }
    }

    fn eval(&self, cx: &Cx, rng: &mut Rng) -> Value {
        match self {
            Gen::Seq { start, step } => Value::Int(start.wrapping_add(step.wrapping_mul(cx.seq as i64))),
            Gen::Int { min, max } => Value::Int(rng.range(*min, *max)),
            Gen::Float { min, max, decimals } => {
                let x = min + (max - min) * rng.unit();
                Value::Float(match decimals {
                    Some(d) => {
                        let scale = 10f64.powi(*d);
                        ((x * scale).round() / scale).clamp(*min, *max)
                    }
                    None => x,
                })
            }
            Gen::Choice(options) => Value::String(options[rng.below(options.len() as u64) as usize].clone()),
            Gen::Bool => Value::Bool(rng.next() & 1 == 1),
            Gen::Id => Value::Int(rng.range(1, cx.key_space.min(i64::MAX as u64) as i64)),
            Gen::Uuid => Value::String(uuid(rng)),
            Gen::Str(len) => {
                const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
                Value::String((0..*len).map(|_| ALNUM[rng.below(ALNUM.len() as u64) as usize] as char).collect())
            }
            Gen::Now => Value::Int(cx.now_ms),
            Gen::NowIso => Value::String(iso(cx.now_ms)),
        }
    }
}

fn struct_schema(fields: &[(String, Node)]) -> Schema {
    let fields: Vec<Json> = fields
        .iter()
        .map(|(name, node)| {
            let mut s = match node {
                Node::Struct(inner) => struct_schema(inner),
                Node::Const(v) => json!({"type": match v { Value::Bool(_) => "boolean", Value::Float(_) => "float64", _ => "int64" }, "optional": false}),
                Node::Text(_) => string_schema(),
                Node::One(g) => json!({"type": g.kind(), "optional": false}),
            };
            s["field"] = json!(name);
            s
        })
        .collect();
    json!({"type": "struct", "fields": fields, "optional": false})
}

fn generate_fields(fields: &[(String, Node)], cx: &Cx, rng: &mut Rng) -> Value {
    Value::Struct(
        fields
            .iter()
            .map(|(name, node)| {
                let v = match node {
                    Node::Struct(inner) => generate_fields(inner, cx, rng),
                    Node::Const(v) => v.clone(),
                    Node::One(g) => g.eval(cx, rng),
                    Node::Text(parts) => {
                        let mut s = String::new();
                        for p in parts {
                            match p {
                                Part::Lit(l) => s.push_str(l),
                                Part::Gen(g) => {
                                    let _ = write!(s, "{}", g.eval(cx, rng));
                                }
                            }
                        }
                        Value::String(s)
                    }
                };
                (name.clone(), v)
            })
            .collect(),
    )
}

/// A version 4 UUID from the generator.
fn uuid(rng: &mut Rng) -> String {
    let (hi, lo) = (rng.next(), rng.next());
    let hi = (hi & !0xf000) | 0x4000;
    let lo = (lo & !(0b11 << 62)) | (0b10 << 62);
    format!("{:08x}-{:04x}-{:04x}-{:04x}-{:012x}", hi >> 32, (hi >> 16) & 0xffff, hi & 0xffff, lo >> 48, lo & 0xffff_ffff_ffff)
}

/// Ms since the epoch as ISO-8601 UTC, e.g. `2024-02-29T12:34:56.789Z`.
fn iso(ms: i64) -> String {
    let (secs, milli) = (ms.div_euclid(1000), ms.rem_euclid(1000));
    let (days, sod) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Days to a civil date (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let (era, doe) = (z.div_euclid(146_097), z.rem_euclid(146_097));
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{milli:03}Z", sod / 3600, sod % 3600 / 60, sod % 60)
}

/// SplitMix64's output function.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

const GOLDEN: u64 = 0x9e37_79b9_7f4a_7c15;

/// SplitMix64; each record has its own, seeded from the seed and the record's number.
struct Rng(u64);

impl Rng {
    fn for_record(seed: u64, seq: u64) -> Rng {
        Rng(mix(seed ^ mix(seq.wrapping_add(GOLDEN))))
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(GOLDEN);
        mix(self.0)
    }

    /// A number in `0..n` (`n` > 0).
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next()) * u128::from(n)) >> 64) as u64
    }

    /// A number in `min..=max`.
    fn range(&mut self, min: i64, max: i64) -> i64 {
        let span = (i128::from(max) - i128::from(min) + 1) as u128;
        (i128::from(min) + ((u128::from(self.next()) * span) >> 64) as i128) as i64
    }

    /// A number in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// One task: writes the records numbered `id`, `id + count`, ... (`done` of them so far).
struct DatagenTask {
    plan: Option<Plan>,
    id: u64,
    count: u64,
    /// How many records this task writes in all (`None`: no end).
    share: Option<u64>,
    seed: u64,
    /// Records written (the offset).
    done: u64,
    /// When pacing by rate began, and `done` then.
    paced: Option<(Instant, u64)>,
    idle_logged: bool,
}

impl DatagenTask {
    /// The record this task writes as its `k`-th.
    fn record(&self, plan: &Plan, k: u64, now_ms: i64) -> SourceRecord {
        let seq = self.id + k * self.count;
        let mut rng = Rng::for_record(self.seed, seq);
        let value = plan.template.generate(&Cx { seq, now_ms, key_space: plan.key_space }, &mut rng);
        let key = match (&value, plan.key_index) {
            (Value::Struct(fields), Some(i)) => Data { schema: Some(string_schema()), value: Value::String(fields[i].1.to_string()) },
            _ => Data::null(),
        };
        SourceRecord {
            source_partition: json!({"task": self.id}),
            source_offset: json!({"seq": k + 1}),
            topic: plan.topic.clone(),
            partition: None,
            key,
            value: Data { schema: Some(plan.template.schema.clone()), value },
            timestamp: None,
            headers: Vec::new(),
        }
    }
}

#[async_trait::async_trait]
impl SourceTask for DatagenTask {
    async fn start(&mut self, config: &Props, offsets: &dyn OffsetReader) -> Result<()> {
        let plan = Plan::new(config).map_err(|issues| Error::Config(issues.into_iter().map(|i| i.message).collect::<Vec<_>>().join("; ")))?;
        let num = |name: &str, default: u64| {
            setting(config, name).map_or(Ok(default), |v| v.parse::<u64>().map_err(|_| Error::Config(format!("{name} must be a whole number, not '{v}'"))))
        };
        self.id = num(TASK_ID, 0)?;
        self.count = num(TASK_COUNT, 1)?.max(1);
        if self.id >= self.count {
            return Err(Error::Config(format!("{TASK_ID} {} is not below {TASK_COUNT} {}", self.id, self.count)));
        }
        // Task i writes the records i, i + n, ... below `iterations`.
        self.share = plan.iterations.map(|total| total.saturating_sub(self.id).div_ceil(self.count));
        self.seed = plan.seed.unwrap_or_else(|| mix(now_ms() as u64 ^ mix(std::process::id().into()) ^ self.id.wrapping_mul(GOLDEN)));
        if let Some(seq) = offsets.offset(&json!({"task": self.id})).and_then(|o| o.get("seq").and_then(Json::as_u64)) {
            tracing::info!(task = self.id, records = seq, "datagen resumes after the records its stored offset counts");
            self.done = seq;
        }
        if let Pacing::Rate(r) = &mut self.plan.insert(plan).pacing {
            *r /= self.count as f64;
        }
        Ok(())
    }

    async fn poll(&mut self) -> Result<Vec<SourceRecord>> {
        let plan = self.plan.as_ref().ok_or_else(|| Error::Task("the datagen task is not started".into()))?;
        let remaining = self.share.map_or(u64::MAX, |s| s.saturating_sub(self.done));
        if remaining == 0 {
            if !self.idle_logged {
                self.idle_logged = true;
                tracing::info!(task = self.id, records = self.done, "datagen task has written all its records; it idles");
            }
            tokio::time::sleep(IDLE_WAIT).await;
            return Ok(Vec::new());
        }
        // Nothing changes before the waits below, so a poll cancelled while waiting loses nothing.
        let n = match plan.pacing {
            Pacing::Flat => (plan.batch as u64).min(remaining),
            Pacing::MaxInterval(ms) => {
                let wait = Rng::for_record(self.seed ^ TIMING_STREAM, self.id + self.done * self.count).below(ms);
                tokio::time::sleep(Duration::from_millis(wait)).await;
                1
            }
            Pacing::Rate(rate) => {
                let (start, base) = *self.paced.get_or_insert((Instant::now(), self.done));
                let written = self.done - base;
                // Record `written` (counting from when pacing began) is due `written / rate` s in.
                let due_at = Duration::try_from_secs_f64(written as f64 / rate).ok().and_then(|d| start.checked_add(d));
                match due_at {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => tokio::time::sleep(Duration::from_secs(3600)).await,
                }
                let due = (start.elapsed().as_secs_f64() * rate).floor() as u64 + 1;
                due.saturating_sub(written).max(1).min(plan.batch as u64).min(remaining)
            }
        };
        let now = now_ms();
        let records = (self.done..self.done + n).map(|k| self.record(plan, k, now)).collect();
        self.done += n;
        Ok(records)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{Converter, JsonConverter};
    use std::collections::{BTreeMap, BTreeSet};

    fn props(pairs: &[(&str, &str)]) -> Props {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    /// Stored offsets by task number.
    struct Stored(BTreeMap<u64, u64>);
    impl OffsetReader for Stored {
        fn offset(&self, partition: &Json) -> Option<Json> {
            let task = partition.get("task")?.as_u64()?;
            self.0.get(&task).map(|seq| json!({"seq": seq}))
        }
    }
    fn none() -> Stored {
        Stored(BTreeMap::new())
    }

    /// Starts a task and polls until a poll returns nothing.
    async fn drain(config: &Props, offsets: &dyn OffsetReader) -> Vec<SourceRecord> {
        let mut task = DatagenSource.task();
        task.start(config, offsets).await.unwrap();
        let mut out = Vec::new();
        loop {
            let got = task.poll().await.unwrap();
            if got.is_empty() {
                return out;
            }
            assert!(got.len() <= config.get("batch.size").map_or(DEFAULT_BATCH, |b| b.parse().unwrap()));
            out.extend(got);
        }
    }

    fn field<'a>(r: &'a SourceRecord, name: &str) -> &'a Value {
        match &r.value.value {
            Value::Struct(fields) => &fields.iter().find(|(n, _)| n == name).unwrap_or_else(|| panic!("no field {name}")).1,
            other => panic!("not a struct: {other}"),
        }
    }
    fn int(v: &Value) -> i64 {
        match v {
            Value::Int(n) => *n,
            other => panic!("not an int: {other}"),
        }
    }
    fn text(v: &Value) -> &str {
        match v {
            Value::String(s) => s,
            other => panic!("not a string: {other}"),
        }
    }
    fn issues(config: &Props) -> Vec<(String, String)> {
        DatagenSource.validate(config).into_iter().map(|i| (i.name, i.message)).collect()
    }

    #[tokio::test]
    async fn a_seed_makes_the_records_repeatable_and_another_seed_changes_them() {
        let config = props(&[("kafka.topic", "users"), ("quickstart", "users"), ("random.seed", "42"), ("iterations", "50")]);
        let a = drain(&config, &none()).await;
        assert_eq!(a.len(), 50);
        assert_eq!(a, drain(&config, &none()).await);
        let mut other = config.clone();
        other.insert("random.seed".into(), "43".into());
        let b = drain(&other, &none()).await;
        assert_ne!(a.iter().map(|r| &r.value).collect::<Vec<_>>(), b.iter().map(|r| &r.value).collect::<Vec<_>>());
        let unseeded = props(&[("kafka.topic", "users"), ("quickstart", "users"), ("iterations", "50")]);
        assert_ne!(drain(&unseeded, &none()).await.iter().map(|r| r.value.clone()).collect::<Vec<_>>(), a.iter().map(|r| r.value.clone()).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn quickstarts_have_confluents_fields_shapes_and_keys() {
        let config = props(&[("kafka.topic", "pv"), ("quickstart", "PageViews"), ("random.seed", "1"), ("iterations", "300")]);
        let records = drain(&config, &none()).await;
        assert_eq!(records[0].value.schema.as_ref().unwrap()["name"], "ksql.pageviews");
        let (mut users, mut pages) = (BTreeSet::new(), BTreeSet::new());
        for (i, r) in records.iter().enumerate() {
            assert_eq!(r.topic, "pv");
            assert_eq!(int(field(r, "viewtime")), 1 + 10 * i as i64);
            assert_eq!(r.key, Data { schema: Some(string_schema()), value: Value::String((1 + 10 * i).to_string()) });
            users.insert(text(field(r, "userid")).to_string());
            let page: u32 = text(field(r, "pageid")).strip_prefix("Page_").unwrap().parse().unwrap();
            assert!((1..=99).contains(&page));
            pages.insert(page);
        }
        assert_eq!(users, (1..=9).map(|n| format!("User_{n}")).collect());
        assert!(pages.len() > 80, "pages spread over 1..=99: {}", pages.len());

        let users = drain(&props(&[("kafka.topic", "u"), ("quickstart", "users"), ("iterations", "100"), ("key.space", "3")]), &none()).await;
        for r in &users {
            assert_eq!(r.key.value, field(r, "userid").clone());
            assert!(["User_1", "User_2", "User_3"].contains(&text(field(r, "userid"))), "key.space 3");
            assert!(["MALE", "FEMALE", "OTHER"].contains(&text(field(r, "gender"))));
            assert!(text(field(r, "regionid")).starts_with("Region_"));
            assert!((1487715775521..=1519273364600).contains(&int(field(r, "registertime"))));
        }

        // Each quickstart compiles and writes JsonConverter's schema envelope.
        for q in quickstart_names() {
            let r = &drain(&props(&[("kafka.topic", "t"), ("quickstart", q), ("iterations", "1")]), &none()).await[0];
            let bytes = JsonConverter { schemas: true }.to_bytes("t", &r.value).unwrap().unwrap();
            let json: Json = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(json["schema"]["type"], "struct", "{q}");
            for f in json["schema"]["fields"].as_array().unwrap() {
                let name = f["field"].as_str().unwrap();
                assert!(!json["payload"][name].is_null(), "{q}: {name}");
            }
            assert_ne!(r.key, Data::null(), "{q} is keyed");
        }
        let order = &drain(&props(&[("kafka.topic", "t"), ("quickstart", "orders"), ("iterations", "1")]), &none()).await[0];
        let schema = order.value.schema.as_ref().unwrap();
        let names: Vec<&str> = schema["fields"].as_array().unwrap().iter().map(|f| f["field"].as_str().unwrap()).collect();
        assert_eq!(names, ["ordertime", "orderid", "itemid", "orderunits", "address"]);
        assert_eq!(schema["fields"][4]["type"], "struct");
        assert_eq!(schema["fields"][4]["fields"][2], json!({"field": "zipcode", "type": "int64", "optional": false}));
        assert_eq!(order.key.value, Value::String("0".into()));
    }

    #[tokio::test]
    async fn template_placeholders_make_typed_values_in_their_ranges() {
        let template = r#"{"id": "${seq:100:2}", "user": "User_${int:1:9}", "amount": "${float:1:100:2}", "kind": "${choice:a|b|c}", "ok": "${bool}",
            "uid": "${uuid}", "code": "${string:6}", "cust": "${id}", "price": "$$${int:1:5} or $5", "n": 7, "x": 1.5, "flag": true, "label": "plain",
            "at": "${now}", "when": "${now:iso}", "nested": {"a": "${int:-3:-1}", "s": "${seq}"}}"#;
        let config = props(&[("kafka.topic", "t"), ("schema.string", template), ("random.seed", "5"), ("iterations", "300"), ("key.space", "3")]);
        let before = now_ms();
        let records = drain(&config, &none()).await;
        let after = now_ms();
        assert_eq!(records.len(), 300);
        let schema = records[0].value.schema.as_ref().unwrap();
        let types: Vec<(String, String)> = schema["fields"].as_array().unwrap().iter().map(|f| (f["field"].as_str().unwrap().into(), f["type"].as_str().unwrap().into())).collect();
        let expected = [
            ("id", "int64"),
            ("user", "string"),
            ("amount", "float64"),
            ("kind", "string"),
            ("ok", "boolean"),
            ("uid", "string"),
            ("code", "string"),
            ("cust", "int64"),
            ("price", "string"),
            ("n", "int64"),
            ("x", "float64"),
            ("flag", "boolean"),
            ("label", "string"),
            ("at", "int64"),
            ("when", "string"),
            ("nested", "struct"),
        ];
        assert_eq!(types, expected.map(|(a, b)| (a.to_string(), b.to_string())));
        assert_eq!(schema["fields"][15]["fields"], json!([{"field": "a", "type": "int64", "optional": false}, {"field": "s", "type": "int64", "optional": false}]));
        assert_eq!(records[0].key, Data::null(), "no key field: null keys");
        let (mut users, mut kinds, mut oks, mut custs) = (BTreeSet::new(), BTreeSet::new(), BTreeSet::new(), BTreeSet::new());
        for (i, r) in records.iter().enumerate() {
            assert_eq!(int(field(r, "id")), 100 + 2 * i as i64);
            users.insert(text(field(r, "user")).to_string());
            let Value::Float(amount) = field(r, "amount") else { panic!("amount is a float") };
            assert!((1.0..=100.0).contains(amount) && ((amount * 100.0).round() - amount * 100.0).abs() < 1e-6, "{amount}");
            kinds.insert(text(field(r, "kind")).to_string());
            let Value::Bool(ok) = field(r, "ok") else { panic!("ok is a bool") };
            oks.insert(*ok);
            let uid = text(field(r, "uid"));
            assert_eq!(uid.len(), 36);
            assert!(uid.char_indices().all(|(i, c)| if [8, 13, 18, 23].contains(&i) { c == '-' } else { c.is_ascii_hexdigit() }), "{uid}");
            assert_eq!(&uid[14..15], "4");
            assert!(["8", "9", "a", "b"].contains(&&uid[19..20]), "{uid}");
            let code = text(field(r, "code"));
            assert!(code.len() == 6 && code.chars().all(|c| c.is_ascii_alphanumeric()), "{code}");
            custs.insert(int(field(r, "cust")));
            let price = text(field(r, "price"));
            assert!(price.starts_with('$') && price.ends_with(" or $5") && (1..=5).contains(&price[1..2].parse::<i32>().unwrap()), "{price}");
            assert_eq!(field(r, "n"), &Value::Int(7));
            assert_eq!(field(r, "x"), &Value::Float(1.5));
            assert_eq!(field(r, "flag"), &Value::Bool(true));
            assert_eq!(field(r, "label"), &Value::String("plain".into()));
            assert!((before..=after).contains(&int(field(r, "at"))));
            let when = text(field(r, "when"));
            assert!(when.len() == 24 && when.ends_with('Z') && when.starts_with("20"), "{when}");
            let Value::Struct(nested) = field(r, "nested") else { panic!("nested is a struct") };
            assert!((-3..=-1).contains(&int(&nested[0].1)));
            assert_eq!(int(&nested[1].1), i as i64);
        }
        assert_eq!(users, (1..=9).map(|n| format!("User_{n}")).collect());
        assert_eq!(kinds, ["a", "b", "c"].map(String::from).into());
        assert_eq!(oks, [false, true].into());
        assert_eq!(custs, [1, 2, 3].into(), "${{id}} draws 1..=key.space");
    }

    #[test]
    fn iso_times_and_text_parsing() {
        assert_eq!(iso(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(iso(1_709_210_096_789), "2024-02-29T12:34:56.789Z");
        assert_eq!(iso(-86_400_000 + 1), "1969-12-31T00:00:00.001Z");
        let parts = parse_text("a$$b${bool}$c").unwrap();
        assert!(matches!(parts.as_slice(), [Part::Lit(a), Part::Gen(Gen::Bool), Part::Lit(c)] if a == "a$b" && c == "$c"));
        assert_eq!(parse_gen("choice:x y|z").unwrap(), Gen::Choice(vec!["x y".into(), "z".into()]));
        assert_eq!(parse_gen("float:0.5:1:3").unwrap(), Gen::Float { min: 0.5, max: 1.0, decimals: Some(3) });
    }

    #[tokio::test]
    async fn the_key_field_is_the_key_as_text() {
        let template = r#"{"id": "${seq}", "user": "User_${int:1:9}", "amount": "${float:1:2}"}"#;
        let base = [("kafka.topic", "t"), ("schema.string", template), ("iterations", "20")];
        for (keyfield, expect) in [("user", None), ("id", Some(0)), ("amount", None)] {
            let config = props(&[base.as_slice(), &[("schema.keyfield", keyfield)]].concat());
            for (i, r) in drain(&config, &none()).await.iter().enumerate() {
                assert_eq!(r.key.schema, Some(string_schema()));
                assert_eq!(r.key.value, Value::String(field(r, keyfield).to_string()));
                if let Some(start) = expect {
                    assert_eq!(r.key.value, Value::String((start + i).to_string()));
                }
            }
        }
        // schema.keyfield overrides a quickstart's key.
        let config = props(&[("kafka.topic", "t"), ("quickstart", "pageviews"), ("schema.keyfield", "pageid"), ("iterations", "5")]);
        for r in drain(&config, &none()).await {
            assert!(text(&r.key.value).starts_with("Page_"));
            assert_eq!(&r.key.value, field(&r, "pageid"));
        }
    }

    #[tokio::test]
    async fn iterations_and_rate_are_kept() {
        let config = props(&[("kafka.topic", "t"), ("quickstart", "users"), ("iterations", "2500"), ("batch.size", "1000")]);
        let mut task = DatagenSource.task();
        task.start(&config, &none()).await.unwrap();
        let mut got = Vec::new();
        for _ in 0..4 {
            got.push(task.poll().await.unwrap().len());
        }
        assert_eq!(got, [1000, 1000, 500, 0], "batches of batch.size, then nothing once iterations are written");

        // 20 records at 100 a second: the last is due 190 ms after the first.
        let config = props(&[("kafka.topic", "t"), ("quickstart", "users"), ("iterations", "20"), ("rate", "100")]);
        let mut task = DatagenSource.task();
        task.start(&config, &none()).await.unwrap();
        let start = Instant::now();
        let mut n = 0;
        while n < 20 {
            let got = task.poll().await.unwrap().len();
            assert!(got >= 1);
            n += got;
            // Never ahead of the schedule: record k is due k / 100 s in.
            assert!(start.elapsed().as_secs_f64() * 100.0 + 1.0 >= (n as f64) - 0.01, "{n} records after {:?}", start.elapsed());
        }
        assert_eq!(n, 20);
        assert!(start.elapsed() >= Duration::from_millis(185), "{:?}", start.elapsed());
        assert!(task.poll().await.unwrap().is_empty());

        // max.interval: one record a poll, after a wait below it.
        let config = props(&[("kafka.topic", "t"), ("quickstart", "users"), ("iterations", "5"), ("max.interval", "20")]);
        let start = Instant::now();
        let records = drain(&config, &none()).await;
        assert_eq!(records.len(), 5);
        assert!(start.elapsed() < Duration::from_millis(5 * 20 + IDLE_WAIT.as_millis() as u64 + 500));
    }

    #[tokio::test]
    async fn a_restarted_task_resumes_after_its_stored_offset() {
        let config = props(&[("kafka.topic", "t"), ("schema.string", r#"{"n": "${seq}", "r": "${int:0:1000000}"}"#), ("random.seed", "9"), ("iterations", "10")]);
        let all = drain(&config, &none()).await;
        assert_eq!(all[3].source_partition, json!({"task": 0}));
        assert_eq!(all[3].source_offset, json!({"seq": 4}));
        let resumed = drain(&config, &Stored([(0, 4)].into())).await;
        assert_eq!(resumed, all[4..], "the same records, from the fifth on");
        assert!(drain(&config, &Stored([(0, 10)].into())).await.is_empty(), "iterations count across restarts");
    }

    #[tokio::test]
    async fn tasks_split_the_records_and_the_rate() {
        let config = props(&[("kafka.topic", "t"), ("schema.string", r#"{"n": "${seq}", "r": "${int:0:1000000}"}"#), ("random.seed", "3"), ("iterations", "10"), ("rate", "30")]);
        let tasks = DatagenSource.task_configs(&config, 3);
        assert_eq!(tasks.len(), 3);
        assert_eq!(tasks.iter().map(|t| (t[TASK_ID].as_str(), t[TASK_COUNT].as_str())).collect::<Vec<_>>(), [("0", "3"), ("1", "3"), ("2", "3")]);
        let mut single = config.clone();
        single.remove("rate");
        let expected = drain(&single, &none()).await;
        let start = Instant::now();
        let handles: Vec<_> = tasks.into_iter().map(|t| tokio::spawn(async move { drain(&t, &NO_OFFSETS).await })).collect();
        let mut runs = Vec::new();
        for h in handles {
            runs.push(h.await.unwrap());
        }
        // 10 records at 30 a second in all, 10 a second per task: task 0's fourth is due 300 ms in.
        assert!(start.elapsed() >= Duration::from_millis(290), "{:?}", start.elapsed());
        assert_eq!(runs.iter().map(Vec::len).collect::<Vec<_>>(), [4, 3, 3]);
        let mut values: Vec<(i64, Value)> = runs.iter().flatten().map(|r| (int(field(r, "n")), r.value.value.clone())).collect();
        values.sort_by_key(|(n, _)| *n);
        assert_eq!(values, expected.iter().map(|r| (int(field(r, "n")), r.value.value.clone())).collect::<Vec<_>>(), "the same records as one task writes");
        assert_eq!(runs[1][0].source_partition, json!({"task": 1}));

        assert_eq!(DatagenSource.task_configs(&props(&[("iterations", "2")]), 4).len(), 2, "no more tasks than records");
        assert_eq!(DatagenSource.task_configs(&props(&[]), 4).len(), 4);
        assert_eq!(DatagenSource.task_configs(&props(&[("iterations", "-1")]), 0).len(), 1);
    }

    static NO_OFFSETS: Stored = Stored(BTreeMap::new());

    #[test]
    fn config_errors_name_each_bad_setting() {
        let names = |c: &Props| issues(c).into_iter().map(|(n, _)| n).collect::<Vec<_>>();
        let message = |c: &Props, name: &str| issues(c).into_iter().find(|(n, _)| n == name).unwrap_or_else(|| panic!("no issue for {name}: {:?}", issues(c))).1;

        assert!(issues(&props(&[("kafka.topic", "t"), ("quickstart", "users")])).is_empty());
        assert_eq!(names(&props(&[])), ["kafka.topic", "quickstart"]);
        let m = message(&props(&[("kafka.topic", "t"), ("quickstart", "clicks")]), "quickstart");
        assert!(m.contains("no quickstart 'clicks'") && m.contains("pageviews, users, orders, stock_trades"), "{m}");
        let m = message(&props(&[("kafka.topic", "t"), ("quickstart", "users"), ("schema.string", r#"{"a": 1}"#)]), "schema.string");
        assert!(m.contains("quickstart and schema.string are both set"), "{m}");
        let m = message(&props(&[("kafka.topic", "t"), ("schema.string", r#"{"a": "x${flot:1:2}"}"#)]), "schema.string");
        assert!(m.contains("field a: unknown placeholder ${flot:1:2}") && m.contains("float:MIN:MAX"), "{m}");
        for (template, expect) in [
            (r#"{"a": "${int:9:1}"}"#, "${int:9:1}: MIN is above MAX"),
            (r#"{"a": "${int:1}"}"#, "use int:MIN:MAX"),
            (r#"{"a": "${int:1:x}"}"#, "'x' is not a whole number"),
            (r#"{"a": "${seq"}"#, "without a closing"),
            (r#"{"a": {"b": null}}"#, "field a.b is null"),
            (r#"{"a": [1]}"#, "field a is an array"),
            (r#"{"a": "${bool:1}"}"#, "bool takes no arguments"),
            (r#"{"a": "${float:1:2:99}"}"#, "DECIMALS is 0 to 15"),
            (r#"{}"#, "no fields"),
            (r#"[1]"#, "a template is a JSON object"),
            (r#"{"a": 1"#, "not valid JSON"),
            (r#"{"type": "record", "name": "x", "fields": [{"name": "a", "type": "long"}]}"#, "this is an Avro schema"),
        ] {
            let m = message(&props(&[("kafka.topic", "t"), ("schema.string", template)]), "schema.string");
            assert!(m.contains(expect), "{template}: {m}");
        }
        let m = message(&props(&[("kafka.topic", "t"), ("schema.string", r#"{"a": 1, "b": {"c": 2}}"#), ("schema.keyfield", "z")]), "schema.keyfield");
        assert!(m.contains("no field 'z'") && m.contains("its fields are a, b"), "{m}");
        let m = message(&props(&[("kafka.topic", "t"), ("schema.string", r#"{"a": 1, "b": {"c": 2}}"#), ("schema.keyfield", "b")]), "schema.keyfield");
        assert!(m.contains("is a struct"), "{m}");
        let m = message(&props(&[("kafka.topic", "t"), ("quickstart", "users"), ("rate", "-5")]), "rate");
        assert!(m.contains("0 or more") && m.contains("'-5'"), "{m}");
        let m = message(&props(&[("kafka.topic", "t"), ("quickstart", "users"), ("rate", "10"), ("max.interval", "100")]), "rate");
        assert!(m.contains("not both"), "{m}");
        let bad = props(&[("kafka.topic", "a,b"), ("quickstart", "users"), ("max.interval", "-1"), ("key.space", "0"), ("batch.size", "0"), ("iterations", "many")]);
        assert_eq!(names(&bad), ["iterations", "kafka.topic", "max.interval", "key.space", "batch.size"]);
        assert!(message(&bad, "iterations").contains("whole number"));
        let m = message(&props(&[("kafka.topic", "t"), ("schema.filename", "/nonexistent/datagen.json")]), "schema.filename");
        assert!(m.contains("cannot read the template file /nonexistent/datagen.json"), "{m}");
    }

    #[tokio::test]
    async fn a_template_file_works_and_a_bad_config_fails_the_task_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.json");
        std::fs::write(&path, r#"{"b": "${seq}", "a": "x"}"#).unwrap();
        let records = drain(&props(&[("kafka.topic", "t"), ("schema.filename", path.to_str().unwrap()), ("iterations", "2")]), &none()).await;
        assert_eq!(records[1].value.value, Value::Struct(vec![("b".into(), Value::Int(1)), ("a".into(), Value::String("x".into()))]), "the template's field order");
        let err = DatagenSource.task().start(&props(&[("kafka.topic", "t"), ("quickstart", "nope")]), &none()).await.err().unwrap();
        assert!(err.to_string().contains("no quickstart 'nope'"), "{err}");
    }

    #[test]
    fn the_class_resolves_by_samsas_and_confluents_names() {
        for class in [CLASS, "DatagenSourceConnector", "DatagenSource", "io.confluent.kafka.connect.datagen.DatagenConnector", "DatagenConnector"] {
            assert!(matches!(crate::api::plugin(class), Some(crate::api::Plugin::Source(_))), "{class}");
        }
        assert!(crate::api::PLUGINS.contains(&CLASS));
    }
}
