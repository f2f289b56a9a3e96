//! Single message transforms and predicates, with Kafka Connect's names and options.
//!
//! A connector's `transforms=a,b` lists transforms applied in order to each record: after
//! a source task polls it, before a sink task takes it. Each has its class in
//! `transforms.<alias>.type` and its options as `transforms.<alias>.<option>`. A transform
//! may apply only to the records a predicate matches (`transforms.<alias>.predicate=<p>`,
//! inverted with `transforms.<alias>.negate=true`); predicates are listed in `predicates=p`
//! with `predicates.<p>.type` and `predicates.<p>.<option>`.
//!
//! Classes go by Kafka's full name (`org.apache.kafka.connect.transforms.InsertField$Value`)
//! or simple name (`InsertField$Value`). Transforms: `InsertField`, `ReplaceField`,
//! `MaskField`, `Cast`, `ExtractField`, `HoistField`, `Flatten` and `TimestampConverter`
//! (each `$Key` or `$Value`), and `ValueToKey`, `RegexRouter`, `TimestampRouter`,
//! `InsertHeader`, `DropHeaders` and `Filter`. Predicates: `TopicNameMatches`,
//! `HasHeaderKey` and `RecordIsTombstone`.
//!
//! A key or value with a schema gets its schema updated along with it (Kafka Connect's JSON
//! schema form); a schemaless struct is a map. Field transforms pass tombstones (null values)
//! through (`ValueToKey` fails on them: it needs a value), and fields a schemaless map lacks
//! are not masked, cast or converted (Kafka would add them as nulls).
//! Regular expressions (Rust's syntax, which matches Java's for common patterns) must match
//! the whole topic, as Java's `matches()`. Dates are UTC, written and read with a subset of
//! Java's `SimpleDateFormat`: `y M d H h a m s S E Z X` and `'quoted text'`. Dates, times
//! and timestamps are whole numbers: with a schema as Kafka's logical types (days, ms of the
//! day, ms since the epoch), without one as ms since the epoch.

use std::sync::Arc;

use bytes::Bytes;
use regex_lite::Regex;
use serde_json::{json, Map, Value as Json};

use crate::api::{SinkRecord, SourceRecord};
use crate::config::{ConfigIssue, Props};
use crate::data::{base64_encode, from_json, to_json, Data, Schema, Value};
use crate::{Error, Result};

const KAFKA_TRANSFORMS: &str = "org.apache.kafka.connect.transforms";
const KAFKA_PREDICATES: &str = "org.apache.kafka.connect.transforms.predicates";
/// Transforms with a `$Key` and a `$Value` variant.
const KEYED: [&str; 8] = ["Cast", "ExtractField", "Flatten", "HoistField", "InsertField", "MaskField", "ReplaceField", "TimestampConverter"];
/// Transforms of the whole record.
const UNKEYED: [&str; 6] = ["DropHeaders", "Filter", "InsertHeader", "RegexRouter", "TimestampRouter", "ValueToKey"];
const PREDICATES: [&str; 3] = ["HasHeaderKey", "RecordIsTombstone", "TopicNameMatches"];
const TIMESTAMP: &str = "org.apache.kafka.connect.data.Timestamp";
const DATE: &str = "org.apache.kafka.connect.data.Date";
const TIME: &str = "org.apache.kafka.connect.data.Time";
const DECIMAL: &str = "org.apache.kafka.connect.data.Decimal";
const DAY_MS: i64 = 86_400_000;

/// A transform's result: `Ok(false)` drops the record; errors are plain text.
type Res<T> = std::result::Result<T, String>;
/// A struct's fields (or a schemaless map's entries), in order.
type Fields = Vec<(String, Value)>;

/// A record as transforms see it: the parts source and sink records share.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// Topic.
    pub topic: String,
    /// Partition (`None`: a source record partitioned by key).
    pub partition: Option<i32>,
    /// Kafka offset (sink records only).
    pub offset: Option<i64>,
    /// Timestamp in ms (`None`: a source record stamped when written).
    pub timestamp: Option<i64>,
    /// Key.
    pub key: Data,
    /// Value.
    pub value: Data,
    /// Headers.
    pub headers: Vec<(String, Option<Bytes>)>,
}

impl From<SinkRecord> for Record {
    fn from(r: SinkRecord) -> Record {
        Record { topic: r.topic, partition: Some(r.partition), offset: Some(r.offset), timestamp: Some(r.timestamp), key: r.key, value: r.value, headers: r.headers }
    }
}

/// A transform, configured.
trait Transform: Send + Sync {
    /// Changes a record in place; `Ok(false)` drops it.
    fn apply(&self, record: &mut Record) -> Res<bool>;
}

/// A predicate, configured.
trait Predicate: Send + Sync {
    /// Whether the record matches.
    fn test(&self, record: &Record) -> bool;
}

struct Condition {
    alias: String,
    predicate: Arc<dyn Predicate>,
    negate: bool,
}

struct Step {
    alias: String,
    class: String,
    transform: Box<dyn Transform>,
    condition: Option<Condition>,
}

/// A connector's transforms, in order, each with its predicate.
#[derive(Default)]
pub struct Chain {
    steps: Vec<Step>,
}

impl std::fmt::Debug for Chain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.steps.iter().map(|s| match &s.condition {
                None => format!("{}={}", s.alias, s.class),
                Some(c) => format!("{}={} if {}{}", s.alias, s.class, if c.negate { "not " } else { "" }, c.alias),
            }))
            .finish()
    }
}

impl Chain {
    /// Whether there are no transforms.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// The number of transforms.
    pub fn len(&self) -> usize {
        self.steps.len()
    }

    /// The transforms' aliases, in order.
    pub fn aliases(&self) -> Vec<&str> {
        self.steps.iter().map(|s| s.alias.as_str()).collect()
    }

    /// Applies the transforms in order; `None`: one dropped the record. A failure is an
    /// `Error::Data` naming the transform's alias and class.
    pub fn apply(&self, mut record: Record) -> Result<Option<Record>> {
        for step in &self.steps {
            if let Some(c) = &step.condition {
                if c.predicate.test(&record) == c.negate {
                    continue;
                }
            }
            match step.transform.apply(&mut record) {
                Ok(true) => {}
                Ok(false) => return Ok(None),
                Err(e) => return Err(Error::Data(format!("transform {} ({}) failed on a record of topic {}: {e}", step.alias, step.class, record.topic))),
            }
        }
        Ok(Some(record))
    }

    /// Applies the transforms to a source record, keeping its source partition and offset;
    /// `None`: dropped (Kafka still commits a dropped record's source offset).
    pub fn apply_source(&self, r: SourceRecord) -> Result<Option<SourceRecord>> {
        if self.steps.is_empty() {
            return Ok(Some(r));
        }
        let SourceRecord { source_partition, source_offset, topic, partition, key, value, timestamp, headers } = r;
        let record = Record { topic, partition, offset: None, timestamp, key, value, headers };
        Ok(self.apply(record)?.map(|t| SourceRecord {
            source_partition,
            source_offset,
            topic: t.topic,
            partition: t.partition,
            key: t.key,
            value: t.value,
            timestamp: t.timestamp,
            headers: t.headers,
        }))
    }

    /// Applies the transforms to a sink record, keeping its offset; `None`: dropped. The
    /// topic may change (e.g. `RegexRouter`), so commit offsets by the record as received.
    pub fn apply_sink(&self, r: SinkRecord) -> Result<Option<SinkRecord>> {
        if self.steps.is_empty() {
            return Ok(Some(r));
        }
        let (partition, offset, timestamp) = (r.partition, r.offset, r.timestamp);
        Ok(self.apply(Record::from(r))?.map(|t| SinkRecord {
            topic: t.topic,
            partition: t.partition.unwrap_or(partition),
            offset,
            timestamp: t.timestamp.unwrap_or(timestamp),
            key: t.key,
            value: t.value,
            headers: t.headers,
        }))
    }
}

/// Builds a connector's transform chain from `transforms`, `predicates` and their options;
/// empty when `transforms` is not set. Bad settings fail with all of their issues.
pub fn chain(config: &Props) -> Result<Chain> {
    let (chain, issues) = build(config);
    if issues.is_empty() {
        Ok(chain)
    } else {
        Err(Error::Config(issues.into_iter().map(|i| i.message).collect::<Vec<_>>().join("; ")))
    }
}

/// Every bad transform or predicate setting of a connector config, each naming its full key.
pub fn issues(config: &Props) -> Vec<ConfigIssue> {
    build(config).1
}

/// The full class names of the transforms Samsa has.
pub fn transform_classes() -> Vec<String> {
    let mut out: Vec<String> = KEYED.iter().flat_map(|b| [format!("{KAFKA_TRANSFORMS}.{b}$Key"), format!("{KAFKA_TRANSFORMS}.{b}$Value")]).collect();
    out.extend(UNKEYED.iter().map(|b| format!("{KAFKA_TRANSFORMS}.{b}")));
    out.sort();
    out
}

/// The full class names of the predicates Samsa has.
pub fn predicate_classes() -> Vec<String> {
    PREDICATES.iter().map(|p| format!("{KAFKA_PREDICATES}.{p}")).collect()
}

// ---------------------------------------------------------------------------------------
// Configuration

/// One transform's or predicate's options, collecting what is wrong with them.
struct Opts<'a> {
    props: &'a Props,
    /// `transforms.<alias>.` or `predicates.<alias>.`.
    prefix: String,
    /// The class's simple name, for messages.
    class: String,
    issues: &'a mut Vec<ConfigIssue>,
    bad: bool,
}

impl Opts<'_> {
    fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// The trimmed setting, if present (as Kafka trims string settings).
    fn get(&self, name: &str) -> Option<String> {
        self.props.get(&self.key(name)).map(|v| v.trim().to_string())
    }

    /// The setting, if present and not empty.
    fn given(&self, name: &str) -> Option<String> {
        self.get(name).filter(|v| !v.is_empty())
    }

    /// Reports a problem with a setting; `message` follows the setting's full key.
    fn issue(&mut self, name: &str, message: impl std::fmt::Display) {
        let key = self.key(name);
        self.bad = true;
        self.issues.push(ConfigIssue { message: format!("{key} {message}"), name: key });
    }

    /// A setting that must be given; `what` says what it holds.
    fn required(&mut self, name: &str, what: &str) -> String {
        match self.given(name) {
            Some(v) => v,
            None => {
                let class = self.class.clone();
                self.issue(name, format!("is missing: {class} needs {what}"));
                String::new()
            }
        }
    }

    /// A comma-separated list (empty items dropped).
    fn list(&self, name: &str) -> Vec<String> {
        self.get(name).map(|v| v.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect()).unwrap_or_default()
    }

    /// A list that must hold at least one item.
    fn required_list(&mut self, name: &str, what: &str) -> Vec<String> {
        let list = self.list(name);
        if list.is_empty() {
            let class = self.class.clone();
            self.issue(name, format!("is missing or empty: {class} needs {what}"));
        }
        list
    }

    /// A regular expression that must match whole strings.
    fn regex(&mut self, name: &str, pattern: &str) -> Option<Regex> {
        match Regex::new(&format!("^(?:{pattern})$")) {
            Ok(r) => Some(r),
            Err(e) => {
                self.issue(name, format!("is '{pattern}', which is not a valid regular expression: {e}"));
                None
            }
        }
    }
}

/// The aliases listed in `transforms` or `predicates`, each once.
fn aliases(config: &Props, key: &str, kind: &str, issues: &mut Vec<ConfigIssue>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for alias in config.get(key).map(|v| v.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect::<Vec<_>>()).unwrap_or_default() {
        if out.contains(&alias) {
            issues.push(ConfigIssue { name: key.into(), message: format!("{key} lists '{alias}' twice; each {kind} needs its own alias") });
        } else {
            out.push(alias);
        }
    }
    out
}

/// The simple class name of `class` if it is in `package` or has none.
fn simple_name(class: &str, package: &str) -> Option<String> {
    match class.strip_prefix(package).and_then(|r| r.strip_prefix('.')) {
        Some(simple) if !simple.contains('.') => Some(simple.to_string()),
        Some(_) => None,
        None => (!class.contains('.')).then(|| class.to_string()),
    }
}

fn build(config: &Props) -> (Chain, Vec<ConfigIssue>) {
    let mut issues = Vec::new();
    let transform_aliases = aliases(config, "transforms", "transform", &mut issues);
    let predicate_aliases = aliases(config, "predicates", "predicate", &mut issues);
    let predicates: Vec<(String, Option<Arc<dyn Predicate>>)> = predicate_aliases.iter().map(|a| (a.clone(), build_predicate(config, a, &mut issues))).collect();
    let mut steps = Vec::new();
    for alias in &transform_aliases {
        let mut o = Opts { props: config, prefix: format!("transforms.{alias}."), class: String::new(), issues: &mut issues, bad: false };
        let transform = build_transform(&mut o);
        let predicate = o.given("predicate");
        let negate = match o.given("negate") {
            None => false,
            Some(v) => {
                if predicate.is_none() {
                    let key = o.key("predicate");
                    o.issue("negate", format!("is set but {key} is not: negate inverts a predicate, so name one"));
                }
                match v.to_ascii_lowercase().as_str() {
                    "true" => true,
                    "false" => false,
                    _ => {
                        o.issue("negate", format!("is '{v}'; it must be true or false"));
                        false
                    }
                }
            }
        };
        let condition = match predicate {
            None => None,
            Some(p) => match predicates.iter().find(|(a, _)| *a == p) {
                None => {
                    o.issue("predicate", format!("names predicate '{p}', which is not listed in predicates; add predicates={p} and predicates.{p}.type=<class>"));
                    None
                }
                // The predicate's own settings were reported with it.
                Some((_, None)) => {
                    o.bad = true;
                    None
                }
                Some((_, Some(pred))) => Some(Condition { alias: p, predicate: pred.clone(), negate }),
            },
        };
        if let (Some((class, transform)), false) = (transform, o.bad) {
            steps.push(Step { alias: alias.clone(), class, transform, condition });
        }
    }
    (Chain { steps }, issues)
}

fn build_transform(o: &mut Opts) -> Option<(String, Box<dyn Transform>)> {
    let Some(class) = o.given("type") else {
        o.issue("type", format!("is missing: name the transform's class, e.g. {KAFKA_TRANSFORMS}.InsertField$Value"));
        return None;
    };
    let unknown = |o: &mut Opts| {
        o.issue(
            "type",
            format!(
                "is '{class}', which is not a transform Samsa has; it has Kafka's {}$Key/$Value and {} (by simple name or under {KAFKA_TRANSFORMS})",
                KEYED.join("$Key/$Value, "),
                UNKEYED.join(", ")
            ),
        );
    };
    let Some(simple) = simple_name(&class, KAFKA_TRANSFORMS) else {
        unknown(o);
        return None;
    };
    let (base, part) = match simple.split_once('$') {
        None => (simple.as_str(), None),
        Some((b, "Key")) => (b, Some(Part::Key)),
        Some((b, "Value")) => (b, Some(Part::Value)),
        Some(_) => {
            unknown(o);
            return None;
        }
    };
    let keyed = KEYED.contains(&base);
    if !keyed && !UNKEYED.contains(&base) {
        unknown(o);
        return None;
    }
    o.class = simple.clone();
    match (keyed, part) {
        (true, None) => {
            o.issue("type", format!("is '{class}': {base} has a key and a value variant; use {base}$Key or {base}$Value"));
            return None;
        }
        (false, Some(_)) => {
            o.issue("type", format!("is '{class}': {base} works on the whole record and has no $Key or $Value variant; use {base}"));
            return None;
        }
        _ => {}
    }
    let part = part.unwrap_or(Part::Value);
    fn boxed<T: Transform + 'static>(t: Option<T>) -> Option<Box<dyn Transform>> {
        t.map(|t| Box::new(t) as Box<dyn Transform>)
    }
    let transform = match base {
        "Cast" => boxed(Cast::new(part, o)),
        "ExtractField" => boxed(ExtractField::new(part, o)),
        "Flatten" => boxed(Flatten::new(part, o)),
        "HoistField" => boxed(HoistField::new(part, o)),
        "InsertField" => boxed(InsertField::new(part, o)),
        "MaskField" => boxed(MaskField::new(part, o)),
        "ReplaceField" => boxed(ReplaceField::new(part, o)),
        "TimestampConverter" => boxed(TimestampConverter::new(part, o)),
        "DropHeaders" => boxed(DropHeaders::new(o)),
        "Filter" => boxed(Some(Filter)),
        "InsertHeader" => boxed(InsertHeader::new(o)),
        "RegexRouter" => boxed(RegexRouter::new(o)),
        "TimestampRouter" => boxed(TimestampRouter::new(o)),
        _ => boxed(ValueToKey::new(o)),
    };
    transform.map(|t| (simple, t))
}

fn build_predicate(config: &Props, alias: &str, issues: &mut Vec<ConfigIssue>) -> Option<Arc<dyn Predicate>> {
    let mut o = Opts { props: config, prefix: format!("predicates.{alias}."), class: String::new(), issues, bad: false };
    let Some(class) = o.given("type") else {
        o.issue("type", format!("is missing: name the predicate's class, e.g. {KAFKA_PREDICATES}.TopicNameMatches"));
        return None;
    };
    let simple = simple_name(&class, KAFKA_PREDICATES).filter(|s| PREDICATES.contains(&s.as_str()));
    let Some(simple) = simple else {
        o.issue("type", format!("is '{class}', which is not a predicate Samsa has; it has Kafka's {} (by simple name or under {KAFKA_PREDICATES})", PREDICATES.join(", ")));
        return None;
    };
    o.class = simple.clone();
    let predicate: Arc<dyn Predicate> = match simple.as_str() {
        "TopicNameMatches" => {
            let pattern = o.required("pattern", "a regular expression for the topic names to match, e.g. orders-.*");
            if pattern.is_empty() {
                return None;
            }
            Arc::new(TopicNameMatches(o.regex("pattern", &pattern)?))
        }
        "HasHeaderKey" => Arc::new(HasHeaderKey(o.required("name", "the header name to look for"))),
        _ => Arc::new(RecordIsTombstone),
    };
    (!o.bad).then_some(predicate)
}

// ---------------------------------------------------------------------------------------
// Predicates

struct TopicNameMatches(Regex);

impl Predicate for TopicNameMatches {
    fn test(&self, r: &Record) -> bool {
        self.0.is_match(&r.topic)
    }
}

struct HasHeaderKey(String);

impl Predicate for HasHeaderKey {
    fn test(&self, r: &Record) -> bool {
        r.headers.iter().any(|(k, _)| *k == self.0)
    }
}

struct RecordIsTombstone;

impl Predicate for RecordIsTombstone {
    fn test(&self, r: &Record) -> bool {
        r.value.value == Value::Null
    }
}

// ---------------------------------------------------------------------------------------
// Schema and struct helpers

/// Which part of the record a `$Key`/`$Value` transform works on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Key,
    Value,
}

impl Part {
    fn name(self) -> &'static str {
        match self {
            Part::Key => "key",
            Part::Value => "value",
        }
    }

    fn of(self, r: &mut Record) -> &mut Data {
        match self {
            Part::Key => &mut r.key,
            Part::Value => &mut r.value,
        }
    }
}

fn stype(s: &Schema) -> &str {
    s.get("type").and_then(Json::as_str).unwrap_or("")
}

fn sname(s: &Schema) -> &str {
    s.get("name").and_then(Json::as_str).unwrap_or("")
}

fn is_optional(s: &Schema) -> bool {
    s.get("optional").and_then(Json::as_bool).unwrap_or(false)
}

fn schema_fields(s: &Schema) -> &[Json] {
    s.get("fields").and_then(Json::as_array).map_or(&[], Vec::as_slice)
}

fn field_name(f: &Json) -> &str {
    f.get("field").and_then(Json::as_str).unwrap_or("")
}

fn find_field<'a>(s: &'a Schema, name: &str) -> Option<&'a Json> {
    schema_fields(s).iter().find(|f| field_name(f) == name)
}

/// A field entry's schema (the entry without its name).
fn field_schema(f: &Json) -> Schema {
    let mut s = f.clone();
    if let Json::Object(m) = &mut s {
        m.remove("field");
    }
    s
}

/// A struct schema's field entry: the field's schema with its name.
fn field_entry(name: &str, s: &Schema) -> Json {
    let mut f = s.clone();
    if let Json::Object(m) = &mut f {
        m.insert("field".into(), Json::String(name.into()));
    }
    f
}

/// `s` with other fields (its name, doc and optionality kept).
fn with_fields(s: &Schema, fields: Vec<Json>) -> Schema {
    let mut out = s.clone();
    if let Json::Object(m) = &mut out {
        m.insert("fields".into(), Json::Array(fields));
    }
    out
}

fn set_optional(s: &Schema, optional: bool) -> Schema {
    let mut out = s.clone();
    if let Json::Object(m) = &mut out {
        m.insert("optional".into(), Json::Bool(optional));
    }
    out
}

/// `s`'s field names, for messages.
fn field_list(s: &Schema) -> String {
    let names: Vec<&str> = schema_fields(s).iter().map(field_name).collect();
    if names.is_empty() {
        "no fields".into()
    } else {
        format!("fields {}", names.join(", "))
    }
}

fn get<'a>(fields: &'a [(String, Value)], name: &str) -> Option<&'a Value> {
    fields.iter().find(|(k, _)| k == name).map(|(_, v)| v)
}

fn get_mut<'a>(fields: &'a mut [(String, Value)], name: &str) -> Option<&'a mut Value> {
    fields.iter_mut().find(|(k, _)| k == name).map(|(_, v)| v)
}

/// Sets a field, replacing one of the same name (as a map does).
fn put(fields: &mut Vec<(String, Value)>, name: &str, v: Value) {
    match get_mut(fields, name) {
        Some(slot) => *slot = v,
        None => fields.push((name.to_string(), v)),
    }
}

/// What a value is, for messages.
fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Int(_) => "a whole number",
        Value::Float(_) => "a decimal number",
        Value::String(_) => "text",
        Value::Bytes(_) => "bytes",
        Value::Array(_) => "an array",
        Value::Struct(_) => "a struct",
    }
}

/// The struct (or schemaless map) a field transform works on, with its schema checked.
fn struct_parts<'a>(data: &'a mut Data, part: Part, purpose: &str) -> Res<(Option<&'a mut Schema>, &'a mut Fields)> {
    let Data { schema, value } = data;
    let p = part.name();
    if let Some(s) = schema.as_ref() {
        if stype(s) != "struct" {
            return Err(format!("{purpose} needs a struct {p}, but the {p}'s schema is of type {}", stype(s)));
        }
    }
    match value {
        Value::Struct(fields) => Ok((schema.as_mut(), fields)),
        other => Err(format!("{purpose} needs a struct or map {p}, but the {p} is {}", kind(other))),
    }
}

fn no_field(part: Part, name: &str, s: &Schema) -> String {
    format!("the {}'s schema has no field {name}; it has {}", part.name(), field_list(s))
}

// ---------------------------------------------------------------------------------------
// InsertField

struct InsertSpec {
    name: String,
    required: bool,
}

/// A field to insert: its name, ending in `!` when required or `?` (the default) when optional.
fn insert_spec(o: &mut Opts, option: &str) -> Option<InsertSpec> {
    let v = o.given(option)?;
    let (name, required) = match v.strip_suffix('!') {
        Some(n) => (n, true),
        None => (v.strip_suffix('?').unwrap_or(&v), false),
    };
    if name.is_empty() {
        o.issue(option, format!("is '{v}': give a field name, optionally ending in ! (required) or ? (optional, the default)"));
        return None;
    }
    Some(InsertSpec { name: name.to_string(), required })
}

/// Kafka's `InsertField`: adds the topic, partition, offset, timestamp or a fixed text.
struct InsertField {
    part: Part,
    topic: Option<InsertSpec>,
    partition: Option<InsertSpec>,
    offset: Option<InsertSpec>,
    timestamp: Option<InsertSpec>,
    static_field: Option<InsertSpec>,
    static_value: Option<String>,
}

impl InsertField {
    fn new(part: Part, o: &mut Opts) -> Option<InsertField> {
        let t = InsertField {
            part,
            topic: insert_spec(o, "topic.field"),
            partition: insert_spec(o, "partition.field"),
            offset: insert_spec(o, "offset.field"),
            timestamp: insert_spec(o, "timestamp.field"),
            static_field: insert_spec(o, "static.field"),
            static_value: o.get("static.value"),
        };
        let any = [&t.topic, &t.partition, &t.offset, &t.timestamp, &t.static_field].iter().any(|f| f.is_some());
        if t.static_field.is_none() && t.static_value.is_some() {
            o.issue("static.field", "is missing: static.value is set, so InsertField needs the name of the field to put it in");
        } else if !any && !o.bad {
            let class = o.class.clone();
            o.issue("type", format!("is {class}, which has nothing to insert: set topic.field, partition.field, offset.field, timestamp.field or static.field"));
        }
        Some(t)
    }
}

impl Transform for InsertField {
    fn apply(&self, r: &mut Record) -> Res<bool> {
        let (topic, partition, offset, timestamp) = (r.topic.clone(), r.partition, r.offset, r.timestamp);
        let part = self.part;
        let data = part.of(r);
        if data.value == Value::Null {
            return Ok(true);
        }
        let mut adds: Vec<(&InsertSpec, Value, Schema, &str)> = Vec::new();
        if let Some(f) = &self.topic {
            adds.push((f, Value::String(topic), json!({"type": "string"}), "topic"));
        }
        if let Some(f) = &self.partition {
            adds.push((f, partition.map_or(Value::Null, |p| Value::Int(p.into())), json!({"type": "int32"}), "partition"));
        }
        if let Some(f) = &self.offset {
            let Some(offset) = offset else {
                return Err("offset.field works only in sink connectors: a source record has no Kafka offset yet".into());
            };
            adds.push((f, Value::Int(offset), json!({"type": "int64"}), "offset"));
        }
        if let Some(f) = &self.timestamp {
            adds.push((f, timestamp.map_or(Value::Null, Value::Int), json!({"type": "int64", "name": TIMESTAMP, "version": 1}), "timestamp"));
        }
        if let Some(f) = &self.static_field {
            adds.push((f, self.static_value.clone().map_or(Value::Null, Value::String), json!({"type": "string"}), "static.value"));
        }
        let (schema, fields) = struct_parts(data, part, "InsertField")?;
        match schema {
            None => {
                for (f, v, _, _) in adds {
                    put(fields, &f.name, v);
                }
            }
            Some(s) => {
                let mut entries = schema_fields(s).to_vec();
                for (f, v, field_schema, what) in adds {
                    if entries.iter().any(|e| field_name(e) == f.name) {
                        return Err(format!("the {} already has a field named {}", part.name(), f.name));
                    }
                    if f.required && v == Value::Null {
                        return Err(format!("field {} is required (its name ends in !) but the record has no {what}", f.name));
                    }
                    entries.push(field_entry(&f.name, &set_optional(&field_schema, !f.required)));
                    put(fields, &f.name, v);
                }
                *s = with_fields(s, entries);
            }
        }
        Ok(true)
    }
}

// ---------------------------------------------------------------------------------------
// ReplaceField

/// Kafka's `ReplaceField`: keeps, drops and renames fields.
struct ReplaceField {
    part: Part,
    exclude: Vec<String>,
    include: Vec<String>,
    renames: Vec<(String, String)>,
}

impl ReplaceField {
    fn new(part: Part, o: &mut Opts) -> Option<ReplaceField> {
        let exclude = if o.get("exclude").is_some() { o.list("exclude") } else { o.list("blacklist") };
        let include = if o.get("include").is_some() { o.list("include") } else { o.list("whitelist") };
        let mut renames = Vec::new();
        for item in o.list("renames") {
            match item.split_once(':') {
                Some((from, to)) if !from.trim().is_empty() && !to.trim().is_empty() && !to.contains(':') => renames.push((from.trim().to_string(), to.trim().to_string())),
                _ => o.issue("renames", format!("has '{item}', which is not a rename; write old:new pairs, e.g. a:b,c:d")),
            }
        }
        if exclude.is_empty() && include.is_empty() && renames.is_empty() && !o.bad {
            let class = o.class.clone();
            o.issue("type", format!("is {class}, which has nothing to do: set exclude, include or renames"));
        }
        Some(ReplaceField { part, exclude, include, renames })
    }

    fn keep(&self, name: &str) -> bool {
        !self.exclude.iter().any(|e| e == name) && (self.include.is_empty() || self.include.iter().any(|i| i == name))
    }

    fn renamed(&self, name: &str) -> String {
        self.renames.iter().find(|(from, _)| from == name).map_or(name, |(_, to)| to.as_str()).to_string()
    }
}

impl Transform for ReplaceField {
    fn apply(&self, r: &mut Record) -> Res<bool> {
        let data = self.part.of(r);
        if data.value == Value::Null {
            return Ok(true);
        }
        let (schema, fields) = struct_parts(data, self.part, "ReplaceField")?;
        if let Some(s) = schema {
            let entries = schema_fields(s).iter().filter(|f| self.keep(field_name(f))).map(|f| field_entry(&self.renamed(field_name(f)), &field_schema(f))).collect();
            *s = with_fields(s, entries);
        }
        let old = std::mem::take(fields);
        *fields = old.into_iter().filter(|(k, _)| self.keep(k)).map(|(k, v)| (self.renamed(&k), v)).collect();
        Ok(true)
    }
}

// ---------------------------------------------------------------------------------------
// MaskField

/// Kafka's `MaskField`: replaces field values with an empty value of their type, or a
/// replacement.
struct MaskField {
    part: Part,
    fields: Vec<String>,
    replacement: Option<String>,
}

impl MaskField {
    fn new(part: Part, o: &mut Opts) -> Option<MaskField> {
        let fields = o.required_list("fields", "the fields to mask, e.g. ssn,card_number");
        let replacement = match o.get("replacement") {
            Some(v) if v.is_empty() => {
                o.issue("replacement", "is empty: leave it out to mask with empty values (0, \"\", false), or give a replacement");
                None
            }
            other => other,
        };
        Some(MaskField { part, fields, replacement })
    }

    fn mask(&self, name: &str, v: &Value, schema: Option<&Schema>) -> Res<Value> {
        let t = schema.map_or("", stype);
        let logical = schema.map_or("", sname);
        let no_replacement = |what: &str| match &self.replacement {
            Some(r) => Err(format!("field {name} is {what}; a replacement ('{r}') can mask only numbers and text (leave replacement out to mask it with an empty value)")),
            None => Ok(()),
        };
        if *v == Value::Null {
            return Ok(Value::Null);
        }
        if matches!(logical, TIMESTAMP | DATE | TIME) {
            no_replacement("a date or time")?;
            return Ok(Value::Int(0));
        }
        if logical == DECIMAL {
            no_replacement("a Decimal")?;
            return Ok(Value::Bytes(Bytes::from_static(&[0])));
        }
        Ok(match (v, &self.replacement) {
            (Value::Int(_), None) => Value::Int(0),
            (Value::Int(_), Some(r)) => {
                let bits = int_bits(t).unwrap_or(64);
                Value::Int(parse_int(r, bits).ok_or_else(|| format!("replacement '{r}' is not a whole number that fits field {name} (int{bits})"))?)
            }
            (Value::Float(_), None) => Value::Float(0.0),
            (Value::Float(_), Some(r)) => {
                let x: f64 = r.trim().parse().map_err(|_| format!("replacement '{r}' is not a number, as field {name} needs"))?;
                Value::Float(if t == "float32" { f64::from(x as f32) } else { x })
            }
            (Value::String(_), None) => Value::String(String::new()),
            (Value::String(_), Some(r)) => Value::String(r.clone()),
            (Value::Struct(_), _) if t == "struct" => return Err(format!("field {name} is a struct; MaskField masks primitive values, arrays and maps")),
            (other, Some(_)) => {
                no_replacement(kind(other))?;
                Value::Null
            }
            (Value::Bool(_), None) => Value::Bool(false),
            (Value::Bytes(_), None) => Value::Bytes(Bytes::new()),
            (Value::Array(_), None) => Value::Array(Vec::new()),
            (Value::Struct(_), None) => Value::Struct(Vec::new()),
            (Value::Null, None) => Value::Null,
        })
    }
}

impl Transform for MaskField {
    fn apply(&self, r: &mut Record) -> Res<bool> {
        let data = self.part.of(r);
        if data.value == Value::Null {
            return Ok(true);
        }
        let (schema, fields) = struct_parts(data, self.part, "MaskField")?;
        for name in &self.fields {
            let field_schema = match schema.as_deref() {
                Some(s) => Some(field_schema(find_field(s, name).ok_or_else(|| no_field(self.part, name, s))?)),
                None => None,
            };
            if let Some(slot) = get_mut(fields, name) {
                *slot = self.mask(name, slot, field_schema.as_ref())?;
            }
        }
        Ok(true)
    }
}

// ---------------------------------------------------------------------------------------
// Cast

/// A type Cast makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CastType {
    Int8,
    Int16,
    Int32,
    Int64,
    Float32,
    Float64,
    Boolean,
    String,
}

const CAST_TYPES: &str = "int8, int16, int32, int64, float32, float64, boolean or string";

impl CastType {
    fn parse(s: &str) -> Option<CastType> {
        Some(match s.trim().to_ascii_lowercase().as_str() {
            "int8" => CastType::Int8,
            "int16" => CastType::Int16,
            "int32" => CastType::Int32,
            "int64" => CastType::Int64,
            "float32" => CastType::Float32,
            "float64" => CastType::Float64,
            "boolean" => CastType::Boolean,
            "string" => CastType::String,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            CastType::Int8 => "int8",
            CastType::Int16 => "int16",
            CastType::Int32 => "int32",
            CastType::Int64 => "int64",
            CastType::Float32 => "float32",
            CastType::Float64 => "float64",
            CastType::Boolean => "boolean",
            CastType::String => "string",
        }
    }
}

/// The width of an integer schema type.
fn int_bits(t: &str) -> Option<u32> {
    match t {
        "int8" => Some(8),
        "int16" => Some(16),
        "int32" => Some(32),
        "int64" => Some(64),
        _ => None,
    }
}

/// A whole number that fits `bits` bits.
fn parse_int(s: &str, bits: u32) -> Option<i64> {
    let n: i64 = s.trim().parse().ok()?;
    let max = if bits >= 64 { i64::MAX } else { (1i64 << (bits - 1)) - 1 };
    (-max - 1..=max).contains(&n).then_some(n)
}

/// `n` narrowed as Java narrows (wrapping).
fn wrap(n: i64, t: CastType) -> i64 {
    match t {
        CastType::Int8 => i64::from(n as i8),
        CastType::Int16 => i64::from(n as i16),
        CastType::Int32 => i64::from(n as i32),
        _ => n,
    }
}

/// A number as Java's `Double.toString` (or `Float.toString`) writes it.
fn java_double(x: f64, float32: bool) -> String {
    if x.is_nan() {
        return "NaN".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    let a = x.abs();
    if a == 0.0 || (1e-3..1e7).contains(&a) {
        let s = if float32 { format!("{}", x as f32) } else { format!("{x}") };
        if s.contains('.') {
            s
        } else {
            format!("{s}.0")
        }
    } else {
        let s = if float32 { format!("{:e}", x as f32) } else { format!("{x:e}") };
        let (mantissa, exp) = s.split_once('e').unwrap_or((&s, "0"));
        if mantissa.contains('.') {
            format!("{mantissa}E{exp}")
        } else {
            format!("{mantissa}.0E{exp}")
        }
    }
}

/// A value as text, as Kafka's Cast writes it (complex values as JSON, bytes as base64).
fn value_string(v: &Value, schema: Option<&Schema>) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Int(n) => n.to_string(),
        Value::Float(x) => java_double(*x, schema.is_some_and(|s| stype(s) == "float32")),
        Value::String(s) => s.clone(),
        Value::Bytes(b) => base64_encode(b),
        Value::Array(_) | Value::Struct(_) => to_json(v, schema).to_string(),
    }
}

/// Casts one value, as Kafka's Cast does (numbers narrow by wrapping; text is parsed).
fn cast_value(v: &Value, schema: Option<&Schema>, t: CastType) -> Res<Value> {
    if *v == Value::Null {
        return Ok(Value::Null);
    }
    let logical = schema.map_or("", sname);
    match logical {
        TIMESTAMP | DATE | TIME => {
            if t != CastType::String {
                return Err(format!(
                    "it is a {} (a logical type), which Cast turns only into a string; use TimestampConverter for numbers",
                    logical.rsplit('.').next().unwrap_or(logical)
                ));
            }
            let Value::Int(n) = v else { return Err(format!("expected a {logical} but found {}", kind(v))) };
            let (ms, pattern) = match logical {
                TIMESTAMP => (*n, "yyyy-MM-dd'T'HH:mm:ss.SSS'Z'"),
                DATE => (n.saturating_mul(DAY_MS), "yyyy-MM-dd"),
                _ => (*n, "HH:mm:ss.SSS'Z'"),
            };
            return Ok(Value::String(date_pattern(pattern).map(|p| format_millis(&p, ms)).unwrap_or_default()));
        }
        DECIMAL => return Err("it is a Decimal, which Cast cannot convert".into()),
        _ => {}
    }
    let bad_text = |s: &str| format!("'{s}' is not a {} value", t.name());
    Ok(match (v, t) {
        (_, CastType::String) => Value::String(value_string(v, schema)),
        (Value::Int(n), CastType::Int8 | CastType::Int16 | CastType::Int32 | CastType::Int64) => Value::Int(wrap(*n, t)),
        (Value::Float(x), CastType::Int64) => Value::Int(*x as i64),
        (Value::Float(x), CastType::Int8 | CastType::Int16 | CastType::Int32) => Value::Int(wrap(i64::from(*x as i32), t)),
        (Value::Bool(b), CastType::Int8 | CastType::Int16 | CastType::Int32 | CastType::Int64) => Value::Int(i64::from(*b)),
        (Value::String(s), CastType::Int8 | CastType::Int16 | CastType::Int32 | CastType::Int64) => {
            Value::Int(parse_int(s, int_bits(t.name()).unwrap_or(64)).ok_or_else(|| format!("'{s}' is not a whole number that fits {}", t.name()))?)
        }
        (Value::Int(n), CastType::Float32) => Value::Float(f64::from(*n as f32)),
        (Value::Int(n), CastType::Float64) => Value::Float(*n as f64),
        (Value::Float(x), CastType::Float32) => Value::Float(f64::from(*x as f32)),
        (Value::Float(x), CastType::Float64) => Value::Float(*x),
        (Value::Bool(b), CastType::Float32 | CastType::Float64) => Value::Float(if *b { 1.0 } else { 0.0 }),
        (Value::String(s), CastType::Float32) => Value::Float(f64::from(s.trim().parse::<f32>().map_err(|_| bad_text(s))?)),
        (Value::String(s), CastType::Float64) => Value::Float(s.trim().parse::<f64>().map_err(|_| bad_text(s))?),
        (Value::Int(n), CastType::Boolean) => Value::Bool(*n != 0),
        (Value::Float(x), CastType::Boolean) => Value::Bool((*x as i64) != 0),
        (Value::Bool(b), CastType::Boolean) => Value::Bool(*b),
        (Value::String(s), CastType::Boolean) => Value::Bool(s.trim().eq_ignore_ascii_case("true")),
        (other, _) => return Err(format!("it is {}, which Cast turns only into a string, not {}", kind(other), t.name())),
    })
}

/// The schema of a value cast to `t` (optionality, doc and default kept).
fn cast_schema(s: &Schema, t: CastType) -> Res<Schema> {
    let from = stype(s);
    if t != CastType::String && (matches!(from, "bytes" | "array" | "map" | "struct") || matches!(sname(s), TIMESTAMP | DATE | TIME | DECIMAL)) {
        let what = if sname(s).is_empty() { from } else { sname(s).rsplit('.').next().unwrap_or(from) };
        return Err(format!("a {what} can be cast only to string, not {}", t.name()));
    }
    let mut m = Map::new();
    m.insert("type".into(), json!(t.name()));
    m.insert("optional".into(), json!(is_optional(s)));
    if let Some(doc) = s.get("doc") {
        m.insert("doc".into(), doc.clone());
    }
    if let Some(d) = s.get("default").filter(|d| !d.is_null()) {
        let v = from_json(d, Some(s)).map_err(|e| format!("its default: {e}"))?;
        m.insert("default".into(), to_json(&cast_value(&v, Some(s), t).map_err(|e| format!("its default: {e}"))?, None));
    }
    Ok(Json::Object(m))
}

/// Kafka's `Cast`: casts fields, or the whole key or value, to other primitive types.
struct Cast {
    part: Part,
    whole: Option<CastType>,
    fields: Vec<(String, CastType)>,
}

impl Cast {
    fn new(part: Part, o: &mut Opts) -> Option<Cast> {
        let spec = o.required_list("spec", "what to cast: field:type pairs (e.g. id:int64,score:float64) or one type for the whole key or value");
        let mut whole = None;
        let mut fields = Vec::new();
        for item in &spec {
            match item.split_once(':') {
                None => match CastType::parse(item) {
                    Some(_) if spec.len() > 1 => {
                        o.issue(
                            "spec",
                            format!("has '{item}', a type for the whole {}, with other items; cast either the whole {} or fields (field:type)", part.name(), part.name()),
                        );
                    }
                    Some(t) => whole = Some(t),
                    None => o.issue("spec", format!("has '{item}', which is neither a type ({CAST_TYPES}) nor a field:type pair")),
                },
                Some((field, t)) => match CastType::parse(t) {
                    Some(ty) if !field.trim().is_empty() => fields.push((field.trim().to_string(), ty)),
                    _ => o.issue("spec", format!("has '{item}'; write field:type with a type of {CAST_TYPES}")),
                },
            }
        }
        Some(Cast { part, whole, fields })
    }
}

impl Transform for Cast {
    fn apply(&self, r: &mut Record) -> Res<bool> {
        let p = self.part.name();
        let data = self.part.of(r);
        if let Some(t) = self.whole {
            let v = cast_value(&data.value, data.schema.as_ref(), t).map_err(|e| format!("cannot cast the {p} to {}: {e}", t.name()))?;
            if let Some(s) = &mut data.schema {
                *s = cast_schema(s, t).map_err(|e| format!("cannot cast the {p}: {e}"))?;
            }
            data.value = v;
            return Ok(true);
        }
        if data.value == Value::Null {
            return Ok(true);
        }
        let (schema, fields) = struct_parts(data, self.part, "Cast with field:type pairs")?;
        match schema {
            None => {
                for (name, t) in &self.fields {
                    if let Some(slot) = get_mut(fields, name) {
                        *slot = cast_value(slot, None, *t).map_err(|e| format!("cannot cast field {name} to {}: {e}", t.name()))?;
                    }
                }
            }
            Some(s) => {
                let mut entries = Vec::new();
                for f in schema_fields(s) {
                    let name = field_name(f);
                    let Some((_, t)) = self.fields.iter().find(|(n, _)| n == name) else {
                        entries.push(f.clone());
                        continue;
                    };
                    let fs = field_schema(f);
                    let err = |e: String| format!("cannot cast field {name} to {}: {e}", t.name());
                    entries.push(field_entry(name, &cast_schema(&fs, *t).map_err(err)?));
                    if let Some(slot) = get_mut(fields, name) {
                        *slot = cast_value(slot, Some(&fs), *t).map_err(err)?;
                    }
                }
                *s = with_fields(s, entries);
            }
        }
        Ok(true)
    }
}

// ---------------------------------------------------------------------------------------
// ValueToKey, ExtractField, HoistField

/// Kafka's `ValueToKey`: the key becomes a struct of some of the value's fields.
struct ValueToKey {
    fields: Vec<String>,
}

impl ValueToKey {
    fn new(o: &mut Opts) -> Option<ValueToKey> {
        Some(ValueToKey { fields: o.required_list("fields", "the value fields to copy into the key, e.g. id") })
    }
}

impl Transform for ValueToKey {
    fn apply(&self, r: &mut Record) -> Res<bool> {
        if r.value.value == Value::Null {
            return Err("the record has no value (a tombstone) to copy key fields from; skip tombstones with a RecordIsTombstone predicate and negate=true".into());
        }
        let (schema, fields) = struct_parts(&mut r.value, Part::Value, "ValueToKey")?;
        let key_value = Value::Struct(self.fields.iter().map(|f| (f.clone(), get(fields, f).cloned().unwrap_or(Value::Null))).collect());
        let key_schema = match schema {
            None => None,
            Some(s) => {
                let entries = self.fields.iter().map(|f| find_field(s, f).cloned().ok_or_else(|| no_field(Part::Value, f, s))).collect::<Res<Vec<_>>>()?;
                Some(json!({"type": "struct", "fields": entries, "optional": false}))
            }
        };
        r.key = Data { schema: key_schema, value: key_value };
        Ok(true)
    }
}

/// Kafka's `ExtractField`: the key or value becomes one of its fields.
struct ExtractField {
    part: Part,
    field: String,
}

impl ExtractField {
    fn new(part: Part, o: &mut Opts) -> Option<ExtractField> {
        Some(ExtractField { part, field: o.required("field", "the name of the field to extract") })
    }
}

impl Transform for ExtractField {
    fn apply(&self, r: &mut Record) -> Res<bool> {
        let p = self.part.name();
        let Data { schema, value } = self.part.of(r);
        let new_schema = match schema.as_ref() {
            None => None,
            Some(s) if stype(s) != "struct" => return Err(format!("ExtractField needs a struct {p}, but the {p}'s schema is of type {}", stype(s))),
            Some(s) => Some(field_schema(find_field(s, &self.field).ok_or_else(|| no_field(self.part, &self.field, s))?)),
        };
        let new_value = match value {
            Value::Null => Value::Null,
            Value::Struct(fields) => fields.iter().position(|(k, _)| *k == self.field).map_or(Value::Null, |i| fields.swap_remove(i).1),
            other => return Err(format!("ExtractField needs a struct or map {p}, but the {p} is {}", kind(other))),
        };
        *schema = new_schema;
        *value = new_value;
        Ok(true)
    }
}

/// Kafka's `HoistField`: wraps the key or value in a struct of one field.
struct HoistField {
    part: Part,
    field: String,
}

impl HoistField {
    fn new(part: Part, o: &mut Opts) -> Option<HoistField> {
        Some(HoistField { part, field: o.required("field", "the name of the field to wrap the data in") })
    }
}

impl Transform for HoistField {
    fn apply(&self, r: &mut Record) -> Res<bool> {
        let data = self.part.of(r);
        let old = std::mem::replace(data, Data::null());
        *data = Data {
            schema: old.schema.map(|s| json!({"type": "struct", "fields": [field_entry(&self.field, &s)], "optional": false})),
            value: Value::Struct(vec![(self.field.clone(), old.value)]),
        };
        Ok(true)
    }
}

// ---------------------------------------------------------------------------------------
// Flatten

/// Kafka's `Flatten`: nested structs become top-level fields named `outer.inner`.
struct Flatten {
    part: Part,
    delimiter: String,
}

impl Flatten {
    fn new(part: Part, o: &mut Opts) -> Option<Flatten> {
        Some(Flatten { part, delimiter: o.get("delimiter").unwrap_or_else(|| ".".into()) })
    }

    fn name(&self, prefix: &str, name: &str) -> String {
        if prefix.is_empty() {
            name.to_string()
        } else {
            format!("{prefix}{}{name}", self.delimiter)
        }
    }

    fn flatten_map(&self, prefix: &str, fields: Vec<(String, Value)>, out: &mut Vec<(String, Value)>) {
        for (k, v) in fields {
            let name = self.name(prefix, &k);
            match v {
                Value::Struct(inner) => self.flatten_map(&name, inner, out),
                other => put(out, &name, other),
            }
        }
    }

    fn flatten_schema(&self, prefix: &str, fields: &[Json], parent_optional: bool, out: &mut Vec<Json>) -> Res<()> {
        for f in fields {
            let name = self.name(prefix, field_name(f));
            let fs = field_schema(f);
            let optional = parent_optional || is_optional(&fs);
            if stype(&fs) == "struct" {
                self.flatten_schema(&name, schema_fields(&fs), optional, out)?;
            } else {
                if out.iter().any(|e| field_name(e) == name) {
                    return Err(format!("flattening makes two fields named {name}; set a delimiter that field names do not use"));
                }
                out.push(field_entry(&name, &set_optional(&fs, optional)));
            }
        }
        Ok(())
    }

    fn flatten_struct(&self, prefix: &str, schema: &[Json], value: Option<&[(String, Value)]>, out: &mut Vec<(String, Value)>) {
        for f in schema {
            let name = self.name(prefix, field_name(f));
            let v = value.and_then(|v| get(v, field_name(f)));
            if stype(&field_schema(f)) == "struct" {
                let inner = match v {
                    Some(Value::Struct(inner)) => Some(inner.as_slice()),
                    _ => None,
                };
                self.flatten_struct(&name, schema_fields(f), inner, out);
            } else {
                out.push((name, v.cloned().unwrap_or(Value::Null)));
            }
        }
    }
}

impl Transform for Flatten {
    fn apply(&self, r: &mut Record) -> Res<bool> {
        let data = self.part.of(r);
        if data.value == Value::Null {
            return Ok(true);
        }
        let (schema, fields) = struct_parts(data, self.part, "Flatten")?;
        let mut out = Vec::new();
        match schema {
            None => self.flatten_map("", std::mem::take(fields), &mut out),
            Some(s) => {
                let mut entries = Vec::new();
                self.flatten_schema("", schema_fields(s), false, &mut entries)?;
                self.flatten_struct("", schema_fields(s), Some(fields.as_slice()), &mut out);
                *s = with_fields(s, entries);
            }
        }
        *fields = out;
        Ok(true)
    }
}

// ---------------------------------------------------------------------------------------
// Routers and headers

/// Turns a Java replacement (`$1`, `${name}`, `\$`) into the regex crate's (`${1}`, `$$`).
fn java_replacement(replacement: &str, regex: &Regex) -> Res<String> {
    let groups = regex.captures_len().saturating_sub(1);
    let names: Vec<&str> = regex.capture_names().flatten().collect();
    let chars: Vec<char> = replacement.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '\\' => {
                let Some(c) = chars.get(i + 1) else { return Err("ends with a lone backslash; write \\\\ for a backslash".into()) };
                if *c == '$' {
                    out.push_str("$$");
                } else {
                    out.push(*c);
                }
                i += 2;
            }
            '$' => match chars.get(i + 1) {
                Some('{') => {
                    let Some(len) = chars[i + 2..].iter().position(|c| *c == '}') else { return Err("has a ${ without its closing }".into()) };
                    let name: String = chars[i + 2..i + 2 + len].iter().collect();
                    if !names.contains(&name.as_str()) {
                        return Err(format!("refers to group {name}, which the regex does not name"));
                    }
                    out.push_str(&format!("${{{name}}}"));
                    i += len + 3;
                }
                Some(d) if d.is_ascii_digit() => {
                    let mut n = d.to_digit(10).map_or(0, |d| d as usize);
                    if n > groups {
                        return Err(format!("refers to group {n}, but the regex has {groups} group(s)"));
                    }
                    i += 2;
                    // As Java: more digits belong to the number while such a group exists.
                    while let Some(next) = chars.get(i).and_then(|c| c.to_digit(10)) {
                        if n * 10 + next as usize > groups {
                            break;
                        }
                        n = n * 10 + next as usize;
                        i += 1;
                    }
                    out.push_str(&format!("${{{n}}}"));
                }
                _ => return Err("has a $ that is not a group reference ($1 or ${name}); write \\$ for a dollar sign".into()),
            },
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    Ok(out)
}

/// Kafka's `RegexRouter`: renames topics matching a regex.
struct RegexRouter {
    regex: Regex,
    replacement: String,
}

impl RegexRouter {
    fn new(o: &mut Opts) -> Option<RegexRouter> {
        let pattern = o.required("regex", "a regular expression matching whole topic names, e.g. (.*)-raw");
        let replacement = o.get("replacement");
        if replacement.is_none() {
            o.issue("replacement", "is missing: RegexRouter needs the new topic name, with $1 for the regex's first group, e.g. $1-clean");
        }
        let regex = if pattern.is_empty() { None } else { o.regex("regex", &pattern) }?;
        let replacement = replacement?;
        match java_replacement(&replacement, &regex) {
            Ok(r) => Some(RegexRouter { regex, replacement: r }),
            Err(e) => {
                o.issue("replacement", format!("is '{replacement}', which {e}"));
                None
            }
        }
    }
}

impl Transform for RegexRouter {
    fn apply(&self, r: &mut Record) -> Res<bool> {
        if let Some(c) = self.regex.captures(&r.topic) {
            let mut topic = String::new();
            c.expand(&self.replacement, &mut topic);
            if topic.is_empty() {
                return Err("the replacement made an empty topic name".into());
            }
            r.topic = topic;
        }
        Ok(true)
    }
}

/// Kafka's `TimestampRouter`: topic names from the topic and the record's timestamp.
struct TimestampRouter {
    topic_format: String,
    format: Vec<Tok>,
}

impl TimestampRouter {
    fn new(o: &mut Opts) -> Option<TimestampRouter> {
        let topic_format = o.given("topic.format").unwrap_or_else(|| "${topic}-${timestamp}".into());
        let pattern = o.given("timestamp.format").unwrap_or_else(|| "yyyyMMdd".into());
        match date_pattern(&pattern) {
            Ok(format) => Some(TimestampRouter { topic_format, format }),
            Err(e) => {
                o.issue("timestamp.format", format!("is '{pattern}', which {e}"));
                None
            }
        }
    }
}

impl Transform for TimestampRouter {
    fn apply(&self, r: &mut Record) -> Res<bool> {
        let ts = r.timestamp.ok_or("the record has no timestamp, which TimestampRouter needs to name the topic")?;
        r.topic = self.topic_format.replace("${topic}", &r.topic).replace("${timestamp}", &format_millis(&self.format, ts));
        Ok(true)
    }
}

/// Kafka's `InsertHeader`: adds a header with a fixed value.
struct InsertHeader {
    header: String,
    value: Bytes,
}

impl InsertHeader {
    fn new(o: &mut Opts) -> Option<InsertHeader> {
        let header = o.required("header", "the name of the header to add");
        let value = o.get("value.literal");
        if value.is_none() {
            o.issue("value.literal", "is missing: InsertHeader needs the header's value");
        }
        Some(InsertHeader { header, value: Bytes::from(value.unwrap_or_default()) })
    }
}

impl Transform for InsertHeader {
    fn apply(&self, r: &mut Record) -> Res<bool> {
        r.headers.push((self.header.clone(), Some(self.value.clone())));
        Ok(true)
    }
}

/// Kafka's `DropHeaders`: removes headers by name.
struct DropHeaders {
    headers: Vec<String>,
}

impl DropHeaders {
    fn new(o: &mut Opts) -> Option<DropHeaders> {
        Some(DropHeaders { headers: o.required_list("headers", "the names of the headers to remove, e.g. trace-id,debug") })
    }
}

impl Transform for DropHeaders {
    fn apply(&self, r: &mut Record) -> Res<bool> {
        r.headers.retain(|(k, _)| !self.headers.contains(k));
        Ok(true)
    }
}

/// Kafka's `Filter`: drops every record it applies to (pair it with a predicate).
struct Filter;

impl Transform for Filter {
    fn apply(&self, _r: &mut Record) -> Res<bool> {
        Ok(false)
    }
}

// ---------------------------------------------------------------------------------------
// TimestampConverter

/// What a timestamp is or becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TsType {
    String,
    Unix,
    Date,
    Time,
    Timestamp,
}

/// The unit of unix timestamps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Precision {
    Seconds,
    Millis,
    Micros,
    Nanos,
}

impl Precision {
    fn millis_of(self, n: i64) -> i64 {
        match self {
            Precision::Seconds => n.saturating_mul(1000),
            Precision::Millis => n,
            Precision::Micros => n / 1000,
            Precision::Nanos => n / 1_000_000,
        }
    }

    fn of_millis(self, ms: i64) -> i64 {
        match self {
            Precision::Seconds => ms / 1000,
            Precision::Millis => ms,
            Precision::Micros => ms.saturating_mul(1000),
            Precision::Nanos => ms.saturating_mul(1_000_000),
        }
    }
}

/// Kafka's `TimestampConverter`: converts between text, unix numbers and Connect's Date,
/// Time and Timestamp.
struct TimestampConverter {
    part: Part,
    field: Option<String>,
    target: TsType,
    pattern: String,
    format: Option<Vec<Tok>>,
    precision: Precision,
}

impl TimestampConverter {
    fn new(part: Part, o: &mut Opts) -> Option<TimestampConverter> {
        let class = o.class.clone();
        let target = match o.given("target.type") {
            None => {
                o.issue("target.type", format!("is missing: {class} needs the type to convert to: string, unix, Date, Time or Timestamp"));
                TsType::Timestamp
            }
            Some(t) => match t.to_ascii_lowercase().as_str() {
                "string" => TsType::String,
                "unix" => TsType::Unix,
                "date" => TsType::Date,
                "time" => TsType::Time,
                "timestamp" => TsType::Timestamp,
                _ => {
                    o.issue("target.type", format!("is '{t}'; use string, unix, Date, Time or Timestamp"));
                    TsType::Timestamp
                }
            },
        };
        let pattern = o.given("format").unwrap_or_default();
        let format = if pattern.is_empty() {
            if target == TsType::String {
                o.issue("format", "is missing: target.type=string needs a SimpleDateFormat pattern such as yyyy-MM-dd'T'HH:mm:ss");
            }
            None
        } else {
            match date_pattern(&pattern) {
                Ok(f) => Some(f),
                Err(e) => {
                    o.issue("format", format!("is '{pattern}', which {e}"));
                    None
                }
            }
        };
        let precision = match o.given("unix.precision").as_deref() {
            None | Some("milliseconds") => Precision::Millis,
            Some("seconds") => Precision::Seconds,
            Some("microseconds") => Precision::Micros,
            Some("nanoseconds") => Precision::Nanos,
            Some(p) => {
                o.issue("unix.precision", format!("is '{p}'; use seconds, milliseconds, microseconds or nanoseconds"));
                Precision::Millis
            }
        };
        Some(TimestampConverter { part, field: o.given("field"), target, pattern, format, precision })
    }

    /// The time `v` stands for, in ms since the epoch.
    fn read_millis(&self, v: &Value, schema: Option<&Schema>) -> Res<i64> {
        let from = match schema {
            Some(s) => match (sname(s), stype(s)) {
                (TIMESTAMP, _) => TsType::Timestamp,
                (DATE, _) => TsType::Date,
                (TIME, _) => TsType::Time,
                (_, "string") => TsType::String,
                (_, "int64") => TsType::Unix,
                (n, t) => {
                    let named = if n.is_empty() { String::new() } else { format!(" ({n})") };
                    return Err(format!("its schema type is {t}{named}; TimestampConverter reads Timestamp, Date, Time, int64 (unix) and string values"));
                }
            },
            None => match v {
                Value::Int(_) => TsType::Unix,
                Value::String(_) => TsType::String,
                other => return Err(format!("it is {}; TimestampConverter reads unix numbers and text without a schema", kind(other))),
            },
        };
        match (from, v) {
            (TsType::Timestamp | TsType::Time, Value::Int(n)) => Ok(*n),
            (TsType::Date, Value::Int(n)) => Ok(n.saturating_mul(DAY_MS)),
            (TsType::Unix, Value::Int(n)) => Ok(self.precision.millis_of(*n)),
            (TsType::String, Value::String(s)) => {
                let Some(format) = &self.format else { return Err(format!("it is text ('{s}'), so TimestampConverter needs format to read it")) };
                parse_millis(format, s).map_err(|e| format!("'{s}' does not match format {}: {e}", self.pattern))
            }
            (_, other) => Err(format!("expected a timestamp but found {}", kind(other))),
        }
    }

    /// `ms` as the target type (`typed`: with a schema).
    fn make(&self, ms: i64, typed: bool) -> Value {
        match self.target {
            TsType::String => Value::String(format_millis(self.format.as_deref().unwrap_or(&[]), ms)),
            TsType::Unix => Value::Int(self.precision.of_millis(ms)),
            TsType::Date if typed => Value::Int(ms.div_euclid(DAY_MS)),
            TsType::Date => Value::Int(ms - ms.rem_euclid(DAY_MS)),
            TsType::Time => Value::Int(ms.rem_euclid(DAY_MS)),
            TsType::Timestamp => Value::Int(ms),
        }
    }

    fn convert(&self, v: &Value, schema: Option<&Schema>) -> Res<Value> {
        if *v == Value::Null {
            return Ok(Value::Null);
        }
        Ok(self.make(self.read_millis(v, schema)?, schema.is_some()))
    }

    fn target_schema(&self, optional: bool) -> Schema {
        let s = match self.target {
            TsType::String => json!({"type": "string"}),
            TsType::Unix => json!({"type": "int64"}),
            TsType::Date => json!({"type": "int32", "name": DATE, "version": 1}),
            TsType::Time => json!({"type": "int32", "name": TIME, "version": 1}),
            TsType::Timestamp => json!({"type": "int64", "name": TIMESTAMP, "version": 1}),
        };
        set_optional(&s, optional)
    }
}

impl Transform for TimestampConverter {
    fn apply(&self, r: &mut Record) -> Res<bool> {
        let p = self.part.name();
        let data = self.part.of(r);
        let Some(name) = &self.field else {
            let v = self.convert(&data.value, data.schema.as_ref()).map_err(|e| format!("cannot convert the {p}: {e}"))?;
            if let Some(s) = &mut data.schema {
                *s = self.target_schema(is_optional(s));
            }
            data.value = v;
            return Ok(true);
        };
        if data.value == Value::Null {
            return Ok(true);
        }
        let (schema, fields) = struct_parts(data, self.part, "TimestampConverter with field")?;
        let err = |e: String| format!("cannot convert field {name}: {e}");
        match schema {
            None => {
                if let Some(slot) = get_mut(fields, name) {
                    *slot = self.convert(slot, None).map_err(err)?;
                }
            }
            Some(s) => {
                let fs = field_schema(find_field(s, name).ok_or_else(|| no_field(self.part, name, s))?);
                if let Some(slot) = get_mut(fields, name) {
                    *slot = self.convert(slot, Some(&fs)).map_err(err)?;
                }
                let target = field_entry(name, &self.target_schema(is_optional(&fs)));
                let entries = schema_fields(s).iter().map(|f| if field_name(f) == name { target.clone() } else { f.clone() }).collect();
                *s = with_fields(s, entries);
            }
        }
        Ok(true)
    }
}

// ---------------------------------------------------------------------------------------
// Dates: a subset of Java's SimpleDateFormat, in UTC

/// A piece of a date pattern: literal text, or a field letter repeated `n` times.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Lit(String),
    Field(char, usize),
}

const MONTHS: [&str; 12] = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"];
const DAYS: [&str; 7] = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"];
const DATE_LETTERS: &str = "yMdHhamsSEZX";

/// Parses a `SimpleDateFormat` pattern; the error says what is wrong with it.
fn date_pattern(p: &str) -> Res<Vec<Tok>> {
    let chars: Vec<char> = p.chars().collect();
    let mut toks = Vec::new();
    let mut lit = String::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\'' {
            if chars.get(i + 1) == Some(&'\'') {
                lit.push('\'');
                i += 2;
                continue;
            }
            i += 1;
            loop {
                match chars.get(i) {
                    None => return Err("has a quote (') that is not closed".into()),
                    Some('\'') if chars.get(i + 1) == Some(&'\'') => {
                        lit.push('\'');
                        i += 2;
                    }
                    Some('\'') => {
                        i += 1;
                        break;
                    }
                    Some(ch) => {
                        lit.push(*ch);
                        i += 1;
                    }
                }
            }
        } else if c.is_ascii_alphabetic() {
            if !DATE_LETTERS.contains(c) {
                return Err(format!("uses the letter {c}, which Samsa's date formats do not have (they have y M d H h a m s S E Z X, and 'quoted text')"));
            }
            let n = chars[i..].iter().take_while(|x| **x == c).count();
            if !lit.is_empty() {
                toks.push(Tok::Lit(std::mem::take(&mut lit)));
            }
            toks.push(Tok::Field(c, n));
            i += n;
        } else {
            lit.push(c);
            i += 1;
        }
    }
    if !lit.is_empty() {
        toks.push(Tok::Lit(lit));
    }
    Ok(toks)
}

/// Year, month (1-12) and day of a day count since 1970-01-01.
fn civil(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Days since 1970-01-01 of a date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn pad(v: i64, n: usize) -> String {
    format!("{v:0n$}")
}

/// Formats ms since the epoch (UTC).
fn format_millis(toks: &[Tok], ms: i64) -> String {
    let days = ms.div_euclid(DAY_MS);
    let in_day = ms.rem_euclid(DAY_MS);
    let (y, m, d) = civil(days);
    let (h, mi, s, milli) = (in_day / 3_600_000, in_day / 60_000 % 60, in_day / 1000 % 60, in_day % 1000);
    let month = MONTHS[(m - 1).clamp(0, 11) as usize];
    let weekday = DAYS[(days + 4).rem_euclid(7) as usize];
    let mut out = String::new();
    for tok in toks {
        match tok {
            Tok::Lit(l) => out.push_str(l),
            Tok::Field('y', 2) => out.push_str(&pad(y.rem_euclid(100), 2)),
            Tok::Field('y', n) => out.push_str(&pad(y, *n)),
            Tok::Field('M', n) if *n <= 2 => out.push_str(&pad(m, *n)),
            Tok::Field('M', 3) => out.push_str(&month[..3]),
            Tok::Field('M', _) => out.push_str(month),
            Tok::Field('d', n) => out.push_str(&pad(d, *n)),
            Tok::Field('H', n) => out.push_str(&pad(h, *n)),
            Tok::Field('h', n) => out.push_str(&pad(if h % 12 == 0 { 12 } else { h % 12 }, *n)),
            Tok::Field('a', _) => out.push_str(if h < 12 { "AM" } else { "PM" }),
            Tok::Field('m', n) => out.push_str(&pad(mi, *n)),
            Tok::Field('s', n) => out.push_str(&pad(s, *n)),
            Tok::Field('S', n) => out.push_str(&pad(milli, *n)),
            Tok::Field('E', n) if *n <= 3 => out.push_str(&weekday[..3]),
            Tok::Field('E', _) => out.push_str(weekday),
            Tok::Field('Z', _) => out.push_str("+0000"),
            Tok::Field(_, _) => out.push('Z'),
        }
    }
    out
}

fn is_numeric(c: char, n: usize) -> bool {
    matches!(c, 'y' | 'd' | 'H' | 'h' | 'm' | 's' | 'S') || (c == 'M' && n <= 2)
}

/// The name at the start of `s` (full names first, then their first three letters):
/// its index and length.
fn match_name(s: &[char], names: &[&str]) -> Option<(usize, usize)> {
    let starts = |name: &str| {
        let n: Vec<char> = name.chars().collect();
        s.len() >= n.len() && s[..n.len()].iter().zip(&n).all(|(a, b)| a.eq_ignore_ascii_case(b))
    };
    names
        .iter()
        .position(|n| starts(n))
        .map(|i| (i, names[i].chars().count()))
        .or_else(|| names.iter().position(|n| starts(&n[..3.min(n.len())])).map(|i| (i, 3.min(names[i].len()))))
}

/// A two-digit year in the century Java picks: from 80 years ago to 20 years ahead.
fn two_digit_year(yy: i64) -> i64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
    let start = civil(now.div_euclid(DAY_MS)).0 - 80;
    let y = start - start.rem_euclid(100) + yy;
    if y < start {
        y + 100
    } else {
        y
    }
}

/// Reads a date with a pattern (UTC unless it has an offset); text after the pattern is
/// ignored, as Java's `DateFormat.parse` does.
fn parse_millis(toks: &[Tok], text: &str) -> Res<i64> {
    let s: Vec<char> = text.chars().collect();
    let mut pos = 0;
    let (mut year, mut month, mut day, mut hour, mut minute, mut second, mut milli) = (1970, 1, 1, 0, 0, 0, 0);
    let (mut hour12, mut pm, mut offset) = (false, false, 0);
    let at = |pos: usize| format!("at character {}", pos + 1);
    for (i, tok) in toks.iter().enumerate() {
        match tok {
            Tok::Lit(l) => {
                for c in l.chars() {
                    if s.get(pos) != Some(&c) {
                        return Err(format!("expected '{l}' {}", at(pos)));
                    }
                    pos += 1;
                }
            }
            Tok::Field(c, n) if is_numeric(*c, *n) => {
                // A number right before another one has exactly its pattern's width.
                let fixed = matches!(toks.get(i + 1), Some(Tok::Field(c2, n2)) if is_numeric(*c2, *n2));
                let start = pos;
                while pos < s.len() && s[pos].is_ascii_digit() && (!fixed || pos - start < *n) {
                    pos += 1;
                }
                if pos == start {
                    return Err(format!("expected a number {}", at(start)));
                }
                let digits: String = s[start..pos].iter().collect();
                let v: i64 = digits.parse().map_err(|_| format!("{digits} is too large"))?;
                match c {
                    'y' if *n == 2 && pos - start == 2 => year = two_digit_year(v),
                    'y' => year = v,
                    'M' => month = v,
                    'd' => day = v,
                    'H' => hour = v,
                    'h' => {
                        hour = v;
                        hour12 = true;
                    }
                    'm' => minute = v,
                    's' => second = v,
                    _ => milli = v,
                }
            }
            Tok::Field('M', _) => {
                let (m, len) = match_name(&s[pos..], &MONTHS).ok_or_else(|| format!("expected a month name {}", at(pos)))?;
                month = m as i64 + 1;
                pos += len;
            }
            Tok::Field('E', _) => {
                let (_, len) = match_name(&s[pos..], &DAYS).ok_or_else(|| format!("expected a day name {}", at(pos)))?;
                pos += len;
            }
            Tok::Field('a', _) => {
                let (i, len) = match_name(&s[pos..], &["AM", "PM"]).ok_or_else(|| format!("expected AM or PM {}", at(pos)))?;
                pm = i == 1;
                pos += len;
            }
            Tok::Field(_, _) => {
                if s.get(pos) == Some(&'Z') {
                    pos += 1;
                    continue;
                }
                let sign = match s.get(pos) {
                    Some('+') => 1,
                    Some('-') => -1,
                    _ => return Err(format!("expected a time zone offset such as +0100 or Z {}", at(pos))),
                };
                pos += 1;
                let two = |pos: &mut usize| -> Option<i64> {
                    let d: String = s.get(*pos..*pos + 2)?.iter().collect();
                    let v = d.parse().ok().filter(|_| d.chars().all(|c| c.is_ascii_digit()))?;
                    *pos += 2;
                    Some(v)
                };
                let hh = two(&mut pos).ok_or_else(|| format!("expected offset hours {}", at(pos)))?;
                if s.get(pos) == Some(&':') {
                    pos += 1;
                }
                let mm = two(&mut pos).unwrap_or(0);
                offset = sign * (hh * 60 + mm) * 60_000;
            }
        }
    }
    if hour12 {
        if !(1..=12).contains(&hour) {
            return Err(format!("hour {hour} is not between 1 and 12"));
        }
        hour = hour % 12 + if pm { 12 } else { 0 };
    }
    let month_days = if (1..=12).contains(&month) {
        let (ny, nm) = if month == 12 { (year + 1, 1) } else { (year, month + 1) };
        days_from_civil(ny, nm, 1) - days_from_civil(year, month, 1)
    } else {
        return Err(format!("month {month} is not between 1 and 12"));
    };
    for (what, v, max) in [("day", day, month_days), ("hour", hour, 23), ("minute", minute, 59), ("second", second, 59), ("millisecond", milli, 999)] {
        let min = i64::from(what == "day");
        if !(min..=max).contains(&v) {
            return Err(format!("{what} {v} is not between {min} and {max}"));
        }
    }
    Ok(days_from_civil(year, month, day) * DAY_MS + hour * 3_600_000 + minute * 60_000 + second * 1000 + milli - offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props(pairs: &[(&str, &str)]) -> Props {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    /// The config of one transform aliased `t`.
    fn one_props(class: &str, opts: &[(&str, &str)]) -> Props {
        let mut p = props(&[("transforms", "t"), ("transforms.t.type", class)]);
        for (k, v) in opts {
            p.insert(format!("transforms.t.{k}"), v.to_string());
        }
        p
    }

    fn one(class: &str, opts: &[(&str, &str)]) -> Chain {
        chain(&one_props(class, opts)).unwrap()
    }

    /// The issues of one transform's config, as (key, message).
    fn bad(class: &str, opts: &[(&str, &str)]) -> Vec<(String, String)> {
        issues(&one_props(class, opts)).into_iter().map(|i| (i.name, i.message)).collect()
    }

    fn s(x: &str) -> Value {
        Value::String(x.into())
    }

    fn obj(pairs: Vec<(&str, Value)>) -> Value {
        Value::Struct(pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
    }

    fn plain(v: Value) -> Data {
        Data { schema: None, value: v }
    }

    fn typed(schema: Json, v: Value) -> Data {
        Data { schema: Some(schema), value: v }
    }

    const TS: i64 = 1_700_000_000_000; // 2023-11-14T22:13:20Z

    fn record(value: Data) -> Record {
        Record { topic: "orders".into(), partition: Some(3), offset: Some(42), timestamp: Some(TS), key: Data::null(), value, headers: vec![] }
    }

    fn run(c: &Chain, r: Record) -> Record {
        c.apply(r).unwrap().expect("the record was dropped")
    }

    fn fail(c: &Chain, r: Record) -> String {
        c.apply(r).unwrap_err().to_string()
    }

    fn order_schema() -> Json {
        json!({"type": "struct", "name": "Order", "optional": false, "fields": [
            {"field": "id", "type": "int64", "optional": false},
            {"field": "name", "type": "string", "optional": true},
        ]})
    }

    fn order() -> Value {
        obj(vec![("id", Value::Int(7)), ("name", s("ann"))])
    }

    #[test]
    fn insert_field_adds_record_metadata_schemaless_and_with_schema() {
        let opts = [("topic.field", "t"), ("partition.field", "p"), ("offset.field", "o"), ("timestamp.field", "ts"), ("static.field", "dc"), ("static.value", "eu-1")];
        let c = one("org.apache.kafka.connect.transforms.InsertField$Value", &opts);
        let out = run(&c, record(plain(obj(vec![("id", Value::Int(1))]))));
        let want = obj(vec![("id", Value::Int(1)), ("t", s("orders")), ("p", Value::Int(3)), ("o", Value::Int(42)), ("ts", Value::Int(TS)), ("dc", s("eu-1"))]);
        assert_eq!(out.value.value, want);
        assert_eq!(out.value.schema, None);

        let out = run(&c, record(typed(order_schema(), order())));
        let schema = out.value.schema.unwrap();
        assert_eq!(schema["name"], "Order");
        assert_eq!(
            schema["fields"],
            json!([
                {"field": "id", "type": "int64", "optional": false},
                {"field": "name", "type": "string", "optional": true},
                {"field": "t", "type": "string", "optional": true},
                {"field": "p", "type": "int32", "optional": true},
                {"field": "o", "type": "int64", "optional": true},
                {"field": "ts", "type": "int64", "name": TIMESTAMP, "version": 1, "optional": true},
                {"field": "dc", "type": "string", "optional": true},
            ])
        );
        let Value::Struct(fields) = &out.value.value else { panic!() };
        assert_eq!(get(fields, "ts"), Some(&Value::Int(TS)));

        // `!` makes a field required; the key variant works on the key.
        let c = one("InsertField$Key", &[("topic.field", "t!")]);
        let mut r = record(plain(s("v")));
        r.key = typed(json!({"type": "struct", "fields": [], "optional": false}), obj(vec![]));
        let out = run(&c, r);
        assert_eq!(out.key.schema.unwrap()["fields"], json!([{"field": "t", "type": "string", "optional": false}]));
        assert_eq!(out.key.value, obj(vec![("t", s("orders"))]));
        assert_eq!(out.value.value, s("v"));

        // A required timestamp the record lacks is an error; tombstones pass.
        let c = one("InsertField$Value", &[("timestamp.field", "ts!")]);
        let mut r = record(typed(order_schema(), order()));
        r.timestamp = None;
        assert!(fail(&c, r).contains("field ts is required"));
        let tomb = record(typed(order_schema(), Value::Null));
        assert_eq!(run(&c, tomb.clone()), tomb);
    }

    #[test]
    fn insert_field_errors_name_the_transform_and_the_problem() {
        let c = one("InsertField$Value", &[("offset.field", "o")]);
        let mut r = record(plain(obj(vec![])));
        r.offset = None;
        let err = fail(&c, r);
        assert!(err.contains("transform t (InsertField$Value)") && err.contains("offset.field works only in sink connectors"), "{err}");
        let c = one("InsertField$Value", &[("topic.field", "name")]);
        assert!(fail(&c, record(typed(order_schema(), order()))).contains("already has a field named name"));
        let err = fail(&c, record(plain(s("text"))));
        assert!(err.contains("needs a struct or map value, but the value is text"), "{err}");
        let err = fail(&c, record(typed(json!({"type": "string"}), s("x"))));
        assert!(err.contains("schema is of type string"), "{err}");
        assert_eq!(bad("InsertField$Value", &[("static.value", "x")])[0].0, "transforms.t.static.field");
        assert_eq!(bad("InsertField$Value", &[])[0].0, "transforms.t.type");
        assert_eq!(bad("InsertField$Value", &[("topic.field", "!")])[0].0, "transforms.t.topic.field");
    }

    #[test]
    fn replace_field_filters_and_renames() {
        let c = one("ReplaceField$Value", &[("exclude", "secret"), ("renames", "id:order_id, name:customer")]);
        let v = obj(vec![("id", Value::Int(7)), ("name", s("ann")), ("secret", s("x"))]);
        let out = run(&c, record(plain(v)));
        assert_eq!(out.value.value, obj(vec![("order_id", Value::Int(7)), ("customer", s("ann"))]));

        let c = one("ReplaceField$Value", &[("include", "id")]);
        let out = run(&c, record(typed(order_schema(), order())));
        assert_eq!(out.value.value, obj(vec![("id", Value::Int(7))]));
        assert_eq!(out.value.schema.as_ref().unwrap()["fields"], json!([{"field": "id", "type": "int64", "optional": false}]));
        assert_eq!(out.value.schema.unwrap()["name"], "Order");

        // Kafka's old names, and renames in the schema.
        let c = one("ReplaceField$Value", &[("blacklist", "name"), ("renames", "id:key")]);
        let out = run(&c, record(typed(order_schema(), order())));
        assert_eq!(out.value.schema.unwrap()["fields"], json!([{"field": "key", "type": "int64", "optional": false}]));
        let c = one("ReplaceField$Value", &[("whitelist", "name")]);
        assert_eq!(run(&c, record(plain(order()))).value.value, obj(vec![("name", s("ann"))]));

        let issues = bad("ReplaceField$Value", &[("renames", "a:b,oops")]);
        assert_eq!(issues.len(), 1);
        assert_eq!(issues[0].0, "transforms.t.renames");
        assert!(issues[0].1.contains("'oops'") && issues[0].1.contains("old:new"), "{}", issues[0].1);
        assert_eq!(bad("ReplaceField$Key", &[])[0].0, "transforms.t.type");
    }

    #[test]
    fn mask_field_empties_values_or_uses_a_replacement() {
        let c = one("MaskField$Value", &[("fields", "id,name,ok,tags,missing")]);
        let v = obj(vec![("id", Value::Int(7)), ("name", s("ann")), ("ok", Value::Bool(true)), ("tags", Value::Array(vec![s("a")])), ("n", Value::Null)]);
        let out = run(&c, record(plain(v)));
        assert_eq!(out.value.value, obj(vec![("id", Value::Int(0)), ("name", s("")), ("ok", Value::Bool(false)), ("tags", Value::Array(vec![])), ("n", Value::Null)]));

        let c = one("MaskField$Value", &[("fields", "name"), ("replacement", "****")]);
        let out = run(&c, record(typed(order_schema(), order())));
        assert_eq!(out.value.value, obj(vec![("id", Value::Int(7)), ("name", s("****"))]));
        assert_eq!(out.value.schema, Some(order_schema()));

        let c = one("MaskField$Value", &[("fields", "id"), ("replacement", "-1")]);
        assert_eq!(run(&c, record(typed(order_schema(), order()))).value.value, obj(vec![("id", Value::Int(-1)), ("name", s("ann"))]));
        let c = one("MaskField$Value", &[("fields", "id"), ("replacement", "x")]);
        assert!(fail(&c, record(typed(order_schema(), order()))).contains("replacement 'x' is not a whole number"));
        let c = one("MaskField$Value", &[("fields", "ok"), ("replacement", "x")]);
        assert!(fail(&c, record(plain(obj(vec![("ok", Value::Bool(true))])))).contains("can mask only numbers and text"));
        let c = one("MaskField$Value", &[("fields", "ssn")]);
        let err = fail(&c, record(typed(order_schema(), order())));
        assert!(err.contains("has no field ssn; it has fields id, name"), "{err}");

        assert_eq!(bad("MaskField$Value", &[])[0].0, "transforms.t.fields");
        assert_eq!(bad("MaskField$Value", &[("fields", "a"), ("replacement", " ")])[0].0, "transforms.t.replacement");
    }

    #[test]
    fn cast_changes_field_types_and_schemas() {
        let c = one("Cast$Value", &[("spec", "id:string, score:int32, flag:boolean, price:float32")]);
        let schema = json!({"type": "struct", "optional": false, "fields": [
            {"field": "id", "type": "int64", "optional": false},
            {"field": "score", "type": "float64", "optional": true, "default": 1.5},
            {"field": "flag", "type": "string", "optional": false},
            {"field": "price", "type": "string", "optional": false},
            {"field": "other", "type": "string", "optional": false},
        ]});
        let v = obj(vec![("id", Value::Int(7)), ("score", Value::Float(-2.9)), ("flag", s("TRUE")), ("price", s("1.25")), ("other", s("x"))]);
        let out = run(&c, record(typed(schema, v)));
        assert_eq!(out.value.value, obj(vec![("id", s("7")), ("score", Value::Int(-2)), ("flag", Value::Bool(true)), ("price", Value::Float(1.25)), ("other", s("x"))]));
        assert_eq!(
            out.value.schema.unwrap()["fields"],
            json!([
                {"field": "id", "type": "string", "optional": false},
                {"field": "score", "type": "int32", "optional": true, "default": 1},
                {"field": "flag", "type": "boolean", "optional": false},
                {"field": "price", "type": "float32", "optional": false},
                {"field": "other", "type": "string", "optional": false},
            ])
        );

        // Schemaless fields, Java's number text and narrowing.
        let c = one("Cast$Value", &[("spec", "a:string,b:string,c:int8,d:float64,e:string")]);
        let v = obj(vec![("a", Value::Float(1.0)), ("b", Value::Float(1e10)), ("c", Value::Int(300)), ("d", Value::Bool(true)), ("e", obj(vec![("x", Value::Int(1))]))]);
        let out = run(&c, record(plain(v)));
        assert_eq!(out.value.value, obj(vec![("a", s("1.0")), ("b", s("1.0E10")), ("c", Value::Int(44)), ("d", Value::Float(1.0)), ("e", s(r#"{"x":1}"#))]));

        // The whole key.
        let c = one("org.apache.kafka.connect.transforms.Cast$Key", &[("spec", "int32")]);
        let mut r = record(plain(s("v")));
        r.key = typed(json!({"type": "string", "optional": true}), s("42"));
        let out = run(&c, r);
        assert_eq!(out.key, typed(json!({"type": "int32", "optional": true}), Value::Int(42)));

        let c = one("Cast$Value", &[("spec", "id:int16")]);
        let err = fail(&c, record(plain(obj(vec![("id", s("99999"))]))));
        assert!(err.contains("cannot cast field id to int16: '99999' is not a whole number that fits int16"), "{err}");
        let c = one("Cast$Value", &[("spec", "id:int64")]);
        let err = fail(&c, record(plain(obj(vec![("id", Value::Bytes(Bytes::from_static(b"x")))]))));
        assert!(err.contains("bytes, which Cast turns only into a string"), "{err}");
    }

    #[test]
    fn cast_config_errors() {
        let issues = bad("Cast$Value", &[("spec", "a:int33,b,int32")]);
        assert_eq!(issues.len(), 3, "{issues:?}");
        assert!(issues.iter().all(|(k, _)| k == "transforms.t.spec"));
        assert!(issues[0].1.contains("'a:int33'") && issues[0].1.contains("int8, int16"));
        assert!(issues[1].1.contains("neither a type"));
        assert!(issues[2].1.contains("cast either the whole value or fields"));
        assert!(bad("Cast$Value", &[])[0].1.contains("is missing or empty: Cast$Value needs what to cast"));
    }

    #[test]
    fn value_to_key_copies_fields_into_the_key() {
        let c = one("ValueToKey", &[("fields", "id")]);
        let out = run(&c, record(plain(order())));
        assert_eq!(out.key, plain(obj(vec![("id", Value::Int(7))])));
        let out = run(&c, record(typed(order_schema(), order())));
        assert_eq!(out.key.schema, Some(json!({"type": "struct", "optional": false, "fields": [{"field": "id", "type": "int64", "optional": false}]})));
        assert_eq!(out.key.value, obj(vec![("id", Value::Int(7))]));
        assert_eq!(out.value.value, order());

        let c = one("ValueToKey", &[("fields", "id,zip")]);
        assert!(fail(&c, record(typed(order_schema(), order()))).contains("has no field zip"));
        assert!(fail(&c, record(plain(Value::Null))).contains("tombstone"));
        assert!(bad("ValueToKey$Key", &[("fields", "id")])[0].1.contains("has no $Key or $Value variant; use ValueToKey"));
    }

    #[test]
    fn extract_and_hoist_field() {
        let c = one("ExtractField$Value", &[("field", "name")]);
        let out = run(&c, record(typed(order_schema(), order())));
        assert_eq!(out.value, typed(json!({"type": "string", "optional": true}), s("ann")));
        assert_eq!(run(&c, record(plain(obj(vec![("id", Value::Int(1))])))).value, plain(Value::Null));
        assert!(fail(&c, record(typed(json!({"type": "struct", "fields": []}), obj(vec![])))).contains("has no field name"));
        let mut r = record(plain(s("v")));
        r.key = plain(obj(vec![("id", Value::Int(5))]));
        assert_eq!(run(&one("ExtractField$Key", &[("field", "id")]), r).key.value, Value::Int(5));

        let c = one("HoistField$Value", &[("field", "line")]);
        let out = run(&c, record(typed(json!({"type": "string", "optional": false}), s("hello"))));
        assert_eq!(out.value.schema, Some(json!({"type": "struct", "optional": false, "fields": [{"field": "line", "type": "string", "optional": false}]})));
        assert_eq!(out.value.value, obj(vec![("line", s("hello"))]));
        assert_eq!(run(&c, record(plain(Value::Int(1)))).value, plain(obj(vec![("line", Value::Int(1))])));
        assert_eq!(bad("HoistField$Value", &[])[0].0, "transforms.t.field");
    }

    #[test]
    fn flatten_nested_structs_and_their_schemas() {
        let c = one("Flatten$Value", &[]);
        let v = obj(vec![("id", Value::Int(1)), ("addr", obj(vec![("city", s("Oslo")), ("geo", obj(vec![("lat", Value::Float(59.9))]))])), ("tags", Value::Array(vec![s("a")]))]);
        let out = run(&c, record(plain(v)));
        assert_eq!(out.value.value, obj(vec![("id", Value::Int(1)), ("addr.city", s("Oslo")), ("addr.geo.lat", Value::Float(59.9)), ("tags", Value::Array(vec![s("a")]))]));

        let schema = json!({"type": "struct", "name": "Customer", "optional": false, "fields": [
            {"field": "id", "type": "int64", "optional": false},
            {"field": "addr", "type": "struct", "optional": true, "fields": [
                {"field": "city", "type": "string", "optional": false},
                {"field": "zip", "type": "string", "optional": false},
            ]},
        ]});
        let c = one("Flatten$Value", &[("delimiter", "_")]);
        let out = run(&c, record(typed(schema.clone(), obj(vec![("id", Value::Int(1)), ("addr", obj(vec![("city", s("Oslo")), ("zip", s("0150"))]))]))));
        let out_schema = out.value.schema.unwrap();
        assert_eq!(out_schema["name"], "Customer");
        // Fields of an optional struct become optional.
        assert_eq!(
            out_schema["fields"],
            json!([
                {"field": "id", "type": "int64", "optional": false},
                {"field": "addr_city", "type": "string", "optional": true},
                {"field": "addr_zip", "type": "string", "optional": true},
            ])
        );
        assert_eq!(out.value.value, obj(vec![("id", Value::Int(1)), ("addr_city", s("Oslo")), ("addr_zip", s("0150"))]));
        // A null nested struct gives null fields.
        let out = run(&c, record(typed(schema, obj(vec![("id", Value::Int(2)), ("addr", Value::Null)]))));
        assert_eq!(out.value.value, obj(vec![("id", Value::Int(2)), ("addr_city", Value::Null), ("addr_zip", Value::Null)]));
        assert!(fail(&c, record(plain(s("x")))).contains("Flatten needs a struct or map value"));
    }

    #[test]
    fn regex_router_renames_matching_topics() {
        let c = one("org.apache.kafka.connect.transforms.RegexRouter", &[("regex", "(.*)-(raw|dirty)"), ("replacement", "$1-clean")]);
        let mut r = record(plain(Value::Null));
        r.topic = "orders-raw".into();
        assert_eq!(run(&c, r).topic, "orders-clean");
        // The regex must match the whole topic.
        assert_eq!(run(&c, record(plain(Value::Null))).topic, "orders");
        let mut r = record(plain(Value::Null));
        r.topic = "x-raw-y".into();
        assert_eq!(run(&c, r).topic, "x-raw-y");

        let c = one("RegexRouter", &[("regex", "(?P<base>[a-z]+)s"), ("replacement", "\\$${base}_$10")]);
        assert_eq!(run(&c, record(plain(Value::Null))).topic, "$order_order0");

        let issues = bad("RegexRouter", &[("regex", "(a"), ("replacement", "$1")]);
        assert_eq!(issues[0].0, "transforms.t.regex");
        let issues = bad("RegexRouter", &[("regex", "(a)"), ("replacement", "$2")]);
        assert_eq!(issues[0].0, "transforms.t.replacement");
        assert!(issues[0].1.contains("refers to group 2, but the regex has 1 group(s)"), "{}", issues[0].1);
        let issues = bad("RegexRouter", &[]);
        assert_eq!(issues.iter().map(|i| i.0.as_str()).collect::<Vec<_>>(), vec!["transforms.t.regex", "transforms.t.replacement"]);
    }

    #[test]
    fn timestamp_router_names_topics_by_date() {
        let c = one("TimestampRouter", &[]);
        assert_eq!(run(&c, record(plain(Value::Null))).topic, "orders-20231114");
        let c = one("TimestampRouter", &[("topic.format", "${timestamp}.${topic}"), ("timestamp.format", "yyyy-MM-dd'T'HH")]);
        assert_eq!(run(&c, record(plain(Value::Null))).topic, "2023-11-14T22.orders");
        let mut r = record(plain(Value::Null));
        r.timestamp = None;
        assert!(fail(&c, r).contains("has no timestamp"));
        let issues = bad("TimestampRouter", &[("timestamp.format", "yyyyQQ")]);
        assert_eq!(issues[0].0, "transforms.t.timestamp.format");
        assert!(issues[0].1.contains("letter Q"));
    }

    #[test]
    fn timestamp_converter_between_text_numbers_and_logical_types() {
        let c = one("TimestampConverter$Value", &[("target.type", "unix"), ("format", "yyyy-MM-dd HH:mm:ss")]);
        let out = run(&c, record(typed(json!({"type": "string", "optional": true}), s("2023-11-14 22:13:20"))));
        assert_eq!(out.value, typed(json!({"type": "int64", "optional": true}), Value::Int(TS)));

        let c = one("TimestampConverter$Value", &[("target.type", "string"), ("format", "yyyy-MM-dd'T'HH:mm:ss.SSSX"), ("field", "at")]);
        let schema = json!({"type": "struct", "optional": false, "fields": [
            {"field": "id", "type": "int64", "optional": false},
            {"field": "at", "type": "int64", "name": TIMESTAMP, "version": 1, "optional": false},
        ]});
        let out = run(&c, record(typed(schema, obj(vec![("id", Value::Int(1)), ("at", Value::Int(TS + 5))]))));
        assert_eq!(out.value.value, obj(vec![("id", Value::Int(1)), ("at", s("2023-11-14T22:13:20.005Z"))]));
        assert_eq!(out.value.schema.unwrap()["fields"][1], json!({"field": "at", "type": "string", "optional": false}));

        // Unix seconds to Date and Time, with and without a schema.
        let c = one("TimestampConverter$Value", &[("target.type", "Date"), ("unix.precision", "seconds")]);
        let out = run(&c, record(typed(json!({"type": "int64"}), Value::Int(TS / 1000))));
        assert_eq!(out.value, typed(json!({"type": "int32", "name": DATE, "version": 1, "optional": false}), Value::Int(19675)));
        assert_eq!(run(&c, record(plain(Value::Int(TS / 1000)))).value.value, Value::Int(19675 * DAY_MS));
        let c = one("TimestampConverter$Value", &[("target.type", "Time")]);
        assert_eq!(run(&c, record(plain(Value::Int(TS)))).value.value, Value::Int((22 * 3600 + 13 * 60 + 20) * 1000));
        let c = one("TimestampConverter$Value", &[("target.type", "Timestamp"), ("field", "d")]);
        let schema = json!({"type": "struct", "fields": [{"field": "d", "type": "int32", "name": DATE, "version": 1, "optional": true}]});
        let out = run(&c, record(typed(schema, obj(vec![("d", Value::Int(1))]))));
        assert_eq!(out.value.value, obj(vec![("d", Value::Int(DAY_MS))]));
        assert_eq!(out.value.schema.unwrap()["fields"][0], json!({"field": "d", "type": "int64", "name": TIMESTAMP, "version": 1, "optional": true}));
        let c = one("TimestampConverter$Value", &[("target.type", "unix"), ("unix.precision", "microseconds"), ("format", "dd/MM/yyyy")]);
        assert_eq!(run(&c, record(plain(s("02/01/1970")))).value.value, Value::Int(DAY_MS * 1000));
        assert!(fail(&c, record(plain(s("1970-01-02")))).contains("'1970-01-02' does not match format dd/MM/yyyy"));

        let issues = bad("TimestampConverter$Value", &[("target.type", "string"), ("unix.precision", "hours")]);
        assert_eq!(issues.iter().map(|i| i.0.as_str()).collect::<Vec<_>>(), vec!["transforms.t.format", "transforms.t.unix.precision"]);
        assert!(bad("TimestampConverter$Key", &[("target.type", "epoch")])[0].1.contains("use string, unix, Date, Time or Timestamp"));
    }

    #[test]
    fn headers_are_added_and_dropped() {
        let c = one("InsertHeader", &[("header", "source"), ("value.literal", "samsa")]);
        let out = run(&c, record(plain(Value::Null)));
        assert_eq!(out.headers, vec![("source".to_string(), Some(Bytes::from_static(b"samsa")))]);
        let c = one("DropHeaders", &[("headers", "a, c")]);
        let mut r = record(plain(Value::Null));
        r.headers = vec![("a".into(), None), ("b".into(), Some(Bytes::from_static(b"1"))), ("c".into(), None), ("a".into(), None)];
        assert_eq!(run(&c, r).headers, vec![("b".to_string(), Some(Bytes::from_static(b"1")))]);
        assert_eq!(bad("DropHeaders", &[("headers", " , ")])[0].0, "transforms.t.headers");
        let keys: Vec<String> = bad("InsertHeader", &[]).into_iter().map(|i| i.0).collect();
        assert_eq!(keys, vec!["transforms.t.header", "transforms.t.value.literal"]);
    }

    #[test]
    fn filter_with_predicates_and_negate() {
        let mut p = props(&[
            ("transforms", "dropTest, keepTagged, noTombstones"),
            ("transforms.dropTest.type", "Filter"),
            ("transforms.dropTest.predicate", "isTest"),
            ("transforms.keepTagged.type", "org.apache.kafka.connect.transforms.Filter"),
            ("transforms.keepTagged.predicate", "tagged"),
            ("transforms.keepTagged.negate", "true"),
            ("transforms.noTombstones.type", "Filter"),
            ("transforms.noTombstones.predicate", "tomb"),
            ("predicates", "isTest,tagged,tomb"),
            ("predicates.isTest.type", "org.apache.kafka.connect.transforms.predicates.TopicNameMatches"),
            ("predicates.isTest.pattern", "test-.*"),
            ("predicates.tagged.type", "HasHeaderKey"),
            ("predicates.tagged.name", "keep"),
            ("predicates.tomb.type", "RecordIsTombstone"),
        ]);
        let c = chain(&p).unwrap();
        assert_eq!(c.aliases(), vec!["dropTest", "keepTagged", "noTombstones"]);
        let tagged = |topic: &str, value: Value| {
            let mut r = record(plain(value));
            r.topic = topic.into();
            r.headers.push(("keep".into(), None));
            r
        };
        assert!(c.apply(tagged("orders", s("x"))).unwrap().is_some());
        assert!(c.apply(tagged("test-orders", s("x"))).unwrap().is_none());
        assert!(c.apply(tagged("orders", Value::Null)).unwrap().is_none());
        // Not tagged: negate drops it.
        assert!(c.apply(record(plain(s("x")))).unwrap().is_none());
        // A predicate only applies its transform: "orders-test" is not a whole match.
        assert!(c.apply(tagged("orders-test", s("x"))).unwrap().is_some());

        p.insert("transforms.keepTagged.negate".into(), "false".into());
        let c = chain(&p).unwrap();
        assert!(c.apply(tagged("orders", s("x"))).unwrap().is_none());
        assert!(c.apply(record(plain(s("x")))).unwrap().is_some());
    }

    #[test]
    fn config_issues_are_all_reported_with_their_keys() {
        let p = props(&[
            ("transforms", "a,b,c,d,e,a"),
            ("transforms.b.type", "com.example.Custom"),
            ("transforms.c.type", "InsertField"),
            ("transforms.c.topic.field", "t"),
            ("transforms.d.type", "Filter"),
            ("transforms.d.negate", "true"),
            ("transforms.e.type", "Filter"),
            ("transforms.e.predicate", "nope"),
            ("predicates", "p1,p2"),
            ("predicates.p2.type", "TopicNameMatches"),
            ("predicates.p2.pattern", "(unclosed"),
        ]);
        let found = issues(&p);
        let keys: Vec<&str> = found.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(
            keys,
            vec![
                "transforms",
                "predicates.p1.type",
                "predicates.p2.pattern",
                "transforms.a.type",
                "transforms.b.type",
                "transforms.c.type",
                "transforms.d.negate",
                "transforms.e.predicate"
            ]
        );
        for i in &found {
            assert!(i.message.starts_with(&i.name), "{i:?}");
        }
        assert!(found[0].message.contains("lists 'a' twice"));
        assert!(found[4].message.contains("not a transform Samsa has"));
        assert!(found[5].message.contains("use InsertField$Key or InsertField$Value"));
        assert!(found[6].message.contains("transforms.d.predicate is not"));
        assert!(found[7].message.contains("not listed in predicates"));
        let err = chain(&p).unwrap_err().to_string();
        assert!(err.contains("transforms.b.type") && err.contains("transforms.e.predicate"), "{err}");

        let p = props(&[
            ("transforms", "x"),
            ("transforms.x.type", "Filter"),
            ("transforms.x.predicate", "p"),
            ("transforms.x.negate", "maybe"),
            ("predicates", "p"),
            ("predicates.p.type", "Nope"),
        ]);
        let keys: Vec<String> = issues(&p).into_iter().map(|i| i.name).collect();
        assert_eq!(keys, vec!["predicates.p.type", "transforms.x.negate"]);
        assert!(issues(&props(&[("predicates", "p"), ("predicates.p.type", "HasHeaderKey")]))[0].message.contains("predicates.p.name is missing"));
    }

    #[test]
    fn empty_chains_and_record_conversions() {
        let c = chain(&Props::new()).unwrap();
        assert!(c.is_empty());
        assert!(issues(&props(&[("transforms", " ")])).is_empty());
        let source = SourceRecord {
            source_partition: json!({"filename": "a.txt"}),
            source_offset: json!({"position": 9}),
            topic: "lines".into(),
            partition: None,
            key: Data::null(),
            value: plain(s("hi")),
            timestamp: None,
            headers: vec![],
        };
        assert_eq!(c.apply_source(source.clone()).unwrap(), Some(source.clone()));

        let c = one("HoistField$Value", &[("field", "line")]);
        assert_eq!(c.len(), 1);
        let out = c.apply_source(source.clone()).unwrap().unwrap();
        assert_eq!((out.source_partition, out.source_offset, out.partition), (json!({"filename": "a.txt"}), json!({"position": 9}), None));
        assert_eq!(out.value.value, obj(vec![("line", s("hi"))]));

        let sink = SinkRecord { topic: "lines".into(), partition: 4, offset: 17, timestamp: TS, key: Data::null(), value: plain(s("hi")), headers: vec![] };
        let out = c.apply_sink(sink.clone()).unwrap().unwrap();
        assert_eq!((out.topic.as_str(), out.partition, out.offset, out.timestamp), ("lines", 4, 17, TS));
        assert_eq!(out.value.value, obj(vec![("line", s("hi"))]));
        assert_eq!(one("Filter", &[]).apply_sink(sink).unwrap(), None);
        let offset_field = one("InsertField$Value", &[("offset.field", "o")]);
        let sink = SinkRecord {
            value: plain(obj(vec![])),
            ..SinkRecord { topic: "t".into(), partition: 0, offset: 5, timestamp: 0, key: Data::null(), value: Data::null(), headers: vec![] }
        };
        assert_eq!(offset_field.apply_sink(sink).unwrap().unwrap().value.value, obj(vec![("o", Value::Int(5))]));
        assert!(transform_classes().contains(&"org.apache.kafka.connect.transforms.Cast$Key".to_string()));
        assert_eq!(predicate_classes().len(), 3);
    }

    #[test]
    fn dates_format_and_parse_as_java() {
        let p = date_pattern("EEE, d MMM yyyy hh:mm:ss a Z").unwrap();
        assert_eq!(format_millis(&p, TS), "Tue, 14 Nov 2023 10:13:20 PM +0000");
        assert_eq!(parse_millis(&p, "Tue, 14 Nov 2023 10:13:20 PM +0000").unwrap(), TS);
        let p = date_pattern("yyyyMMddHHmmss").unwrap();
        assert_eq!(format_millis(&p, TS), "20231114221320");
        assert_eq!(parse_millis(&p, "20231114221320").unwrap(), TS);
        let p = date_pattern("yyyy-MM-dd'T'HH:mm:ssXXX").unwrap();
        assert_eq!(parse_millis(&p, "2023-11-15T00:13:20+02:00").unwrap(), TS);
        assert_eq!(parse_millis(&p, "2023-11-14T22:13:20Z and more").unwrap(), TS);
        assert_eq!(format_millis(&date_pattern("yyyy-MM-dd HH:mm:ss.SSS").unwrap(), -1), "1969-12-31 23:59:59.999");
        assert_eq!(format_millis(&date_pattern("MMMM d, ''yy").unwrap(), 0), "January 1, '70");
        assert_eq!(parse_millis(&date_pattern("yy-M-d").unwrap(), "24-2-29").unwrap(), days_from_civil(2024, 2, 29) * DAY_MS);
        assert!(parse_millis(&date_pattern("yyyy-MM-dd").unwrap(), "2023-02-29").unwrap_err().contains("day 29 is not between 1 and 28"));
        assert!(parse_millis(&date_pattern("yyyy-MM-dd").unwrap(), "2023/02/01").unwrap_err().contains("expected '-' at character 5"));
        assert!(date_pattern("'open").is_err());
        for days in [-800_000, -1, 0, 59, 10_956, 19_675, 2_932_896] {
            let (y, m, d) = civil(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(civil(19_675), (2023, 11, 14));
        assert_eq!(java_double(0.1, false), "0.1");
        assert_eq!(java_double(1.5e-5, false), "1.5E-5");
        assert_eq!(java_double(f64::from(0.1f32), true), "0.1");
        assert_eq!(java_double(-3.0, false), "-3.0");
    }
}
