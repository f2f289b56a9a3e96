//! Python streams applications on Samsa's streams engine.
//!
//! Python values travel through the topology as [`Val`]: a plain-data mirror of `None`,
//! bool, int, float, str, bytes, list and dict. Sources read raw bytes and decode them by
//! the declared format (`str`, `json`, `bytes`, `int`); sinks encode the same way.
//! Inside the topology (repartition topics, state stores, changelogs) a `Val` is stored
//! self-describing, except that a `str` is its plain UTF-8 bytes, so that str keys
//! partition the same way as a producer's: a repartitioned stream and a table on an
//! external topic then meet on the same partition.
//!
//! Python callables run inside processors that return errors instead of panicking, so a
//! callable that raises fails the application (before its transaction commits), and
//! `run()` re-raises the callable's exception as the cause of a `StreamsError`. Each
//! application runs on its own Tokio runtime: a Python callable holding the GIL never
//! stalls the I/O of other clients in the process.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};
use samsa_streams::{Error as SError, KStream, KafkaStreams, Processor, ProcessorContext, Record, Serde, SerdeRef, StoreDef, StreamsBuilder, StreamsConfig, TimeWindows};
use serde::{Deserialize, Serialize};

use crate::{block, errors};

/// A Python value as it travels through a topology.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Val {
    /// `None`.
    Null,
    /// `bool`.
    Bool(bool),
    /// `int` (64-bit).
    Int(i64),
    /// `float`.
    Float(f64),
    /// `str`.
    Str(String),
    /// `bytes`.
    Bytes(Vec<u8>),
    /// `list` or `tuple` (tuples come back as lists).
    List(Vec<Val>),
    /// `dict` with str keys, in insertion order.
    Map(Vec<(String, Val)>),
}

impl Val {
    fn from_py(v: &Bound<'_, PyAny>) -> PyResult<Val> {
        if v.is_none() {
            return Ok(Val::Null);
        }
        if let Ok(b) = v.cast::<PyBool>() {
            return Ok(Val::Bool(b.is_true()));
        }
        if v.is_instance_of::<PyInt>() {
            return v.extract::<i64>().map(Val::Int).map_err(|_| errors::config(format!("the int {v} does not fit in 64 bits")));
        }
        if let Ok(f) = v.cast::<PyFloat>() {
            return Ok(Val::Float(f.value()));
        }
        if let Ok(s) = v.cast::<PyString>() {
            return Ok(Val::Str(s.to_cow()?.into_owned()));
        }
        if let Ok(b) = v.cast::<PyBytes>() {
            return Ok(Val::Bytes(b.as_bytes().to_vec()));
        }
        if v.is_instance_of::<PyList>() || v.is_instance_of::<PyTuple>() {
            return v.try_iter()?.map(|x| Val::from_py(&x?)).collect::<PyResult<_>>().map(Val::List);
        }
        if let Ok(d) = v.cast::<PyDict>() {
            let mut out = Vec::with_capacity(d.len());
            for (k, x) in d.iter() {
                let k = k
                    .cast::<PyString>()
                    .map_err(|_| {
                        errors::config(format!("dict keys must be str to travel through a topic, got {}", k.get_type().name().map(|n| n.to_string()).unwrap_or_default()))
                    })?
                    .to_cow()?
                    .into_owned();
                out.push((k, Val::from_py(&x)?));
            }
            return Ok(Val::Map(out));
        }
        Err(errors::config(format!("a {} cannot travel through a topic or state store; use None, bool, int, float, str, bytes, list or dict", v.get_type().name()?)))
    }

    fn to_py<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        Ok(match self {
            Val::Null => py.None().into_bound(py),
            Val::Bool(b) => PyBool::new(py, *b).to_owned().into_any(),
            Val::Int(i) => i.into_pyobject(py)?.into_any(),
            Val::Float(f) => PyFloat::new(py, *f).into_any(),
            Val::Str(s) => PyString::new(py, s).into_any(),
            Val::Bytes(b) => PyBytes::new(py, b).into_any(),
            Val::List(items) => PyList::new(py, items.iter().map(|x| x.to_py(py)).collect::<PyResult<Vec<_>>>()?)?.into_any(),
            Val::Map(entries) => {
                let d = PyDict::new(py);
                for (k, x) in entries {
                    d.set_item(k, x.to_py(py)?)?;
                }
                d.into_any()
            }
        })
    }

    fn from_json(j: serde_json::Value) -> Val {
        use serde_json::Value as J;
        match j {
            J::Null => Val::Null,
            J::Bool(b) => Val::Bool(b),
            J::Number(n) => n.as_i64().map(Val::Int).unwrap_or_else(|| Val::Float(n.as_f64().unwrap_or(f64::NAN))),
            J::String(s) => Val::Str(s),
            J::Array(a) => Val::List(a.into_iter().map(Val::from_json).collect()),
            J::Object(o) => Val::Map(o.into_iter().map(|(k, v)| (k, Val::from_json(v))).collect()),
        }
    }

    fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match self {
            Val::Null => J::Null,
            Val::Bool(b) => J::Bool(*b),
            Val::Int(i) => J::from(*i),
            Val::Float(f) => serde_json::Number::from_f64(*f).map(J::Number).unwrap_or(J::Null),
            Val::Str(s) => J::String(s.clone()),
            Val::Bytes(b) => J::String(String::from_utf8_lossy(b).into_owned()),
            Val::List(a) => J::Array(a.iter().map(Val::to_json).collect()),
            Val::Map(m) => J::Object(m.iter().map(|(k, v)| (k.clone(), v.to_json())).collect()),
        }
    }
}

/// The first byte of a self-describing (non-str) value inside a topology; it never starts
/// valid UTF-8, so plain str bytes and tagged values cannot be confused.
const TAG: u8 = 0xFF;

/// The serde of [`Val`] inside topologies (see the module docs).
struct ValSerde;

impl Serde<Val> for ValSerde {
    fn serialize(&self, value: &Val) -> Option<Vec<u8>> {
        match value {
            Val::Null => None,
            Val::Str(s) => Some(s.as_bytes().to_vec()),
            other => {
                let mut out = vec![TAG];
                serde_json::to_writer(&mut out, other).expect("plain data serializes");
                Some(out)
            }
        }
    }
    fn deserialize(&self, bytes: Option<&[u8]>) -> Result<Val, String> {
        let Some(b) = bytes else { return Ok(Val::Null) };
        if b.first() == Some(&TAG) {
            if let Ok(v) = serde_json::from_slice::<Val>(&b[1..]) {
                return Ok(v);
            }
        }
        Ok(match std::str::from_utf8(b) {
            Ok(s) => Val::Str(s.to_owned()),
            Err(_) => Val::Bytes(b.to_vec()),
        })
    }
}

impl samsa_streams::DefaultSerde for Val {
    fn serde() -> SerdeRef<Self> {
        Arc::new(ValSerde)
    }
}

/// How keys or values are encoded in a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Str,
    Json,
    Bytes,
    Int,
}

impl Format {
    fn parse(s: &str) -> PyResult<Format> {
        match s.to_ascii_lowercase().as_str() {
            "str" | "string" => Ok(Format::Str),
            "json" => Ok(Format::Json),
            "bytes" | "raw" => Ok(Format::Bytes),
            "int" | "long" => Ok(Format::Int),
            other => Err(errors::config(format!("unknown format `{other}`; use \"str\", \"json\", \"bytes\" or \"int\""))),
        }
    }

    fn decode(self, bytes: Option<&[u8]>) -> Result<Val, String> {
        let Some(b) = bytes else { return Ok(Val::Null) };
        match self {
            Format::Str => std::str::from_utf8(b).map(|s| Val::Str(s.to_owned())).map_err(|e| format!("not UTF-8 text ({e}); read it with \"bytes\"")),
            Format::Json => serde_json::from_slice(b).map(Val::from_json).map_err(|e| format!("not JSON ({e})")),
            Format::Bytes => Ok(Val::Bytes(b.to_vec())),
            Format::Int => match b.len() {
                8 => Ok(Val::Int(i64::from_be_bytes(b.try_into().expect("8 bytes")))),
                4 => Ok(Val::Int(i32::from_be_bytes(b.try_into().expect("4 bytes")) as i64)),
                n => Err(format!("{n} bytes are not a big-endian int (it takes 4 or 8)")),
            },
        }
    }

    fn encode(self, v: &Val) -> Result<Option<Vec<u8>>, String> {
        Ok(match (self, v) {
            (_, Val::Null) => None,
            (Format::Str | Format::Bytes, Val::Str(s)) => Some(s.as_bytes().to_vec()),
            (Format::Str | Format::Bytes, Val::Bytes(b)) => Some(b.clone()),
            (Format::Int, Val::Int(i)) => Some(i.to_be_bytes().to_vec()),
            (Format::Int, other) => return Err(format!("{other:?} is not an int; write it with \"json\" or \"str\"")),
            (_, other) => Some(serde_json::to_vec(&other.to_json()).expect("JSON values serialize")),
        })
    }
}

/// The first Python exception raised by a callable of the application.
type Failure = Arc<Mutex<Option<PyErr>>>;

fn failed(node: &str, slot: &Failure, e: PyErr) -> SError {
    let reason = Python::attach(|py| {
        let text = e.to_string();
        let tb = e.traceback(py).and_then(|t| t.format().ok()).unwrap_or_default();
        format!("{text}\n{tb}")
    });
    slot.lock().unwrap().get_or_insert(e);
    SError::Processor { node: node.to_string(), reason: format!("the Python callable raised {reason}") }
}

/// Decodes raw source records by format.
struct Decode {
    key: Format,
    value: Format,
    topic: String,
}

impl Processor<Option<Vec<u8>>, Option<Vec<u8>>, Val, Val> for Decode {
    fn process(&mut self, ctx: &mut ProcessorContext<'_, '_, Val, Val>, r: Record<Option<Vec<u8>>, Option<Vec<u8>>>) -> samsa_streams::Result<()> {
        let at = ctx.record_metadata().map(|m| format!("{}-{} at offset {}", m.topic, m.partition, m.offset)).unwrap_or_else(|| self.topic.clone());
        let key = self.key.decode(r.key.as_deref()).map_err(|e| SError::Processor { node: "decode".into(), reason: format!("the key of {at}: {e}") })?;
        let value = self.value.decode(r.value.as_deref()).map_err(|e| SError::Processor { node: "decode".into(), reason: format!("the value of {at}: {e}") })?;
        ctx.forward(Record { key, value, timestamp: r.timestamp, headers: r.headers });
        Ok(())
    }
}

/// Encodes records for a sink by format.
struct Encode {
    key: Format,
    value: Format,
    topic: String,
}

impl Processor<Val, Val, Option<Vec<u8>>, Option<Vec<u8>>> for Encode {
    fn process(&mut self, ctx: &mut ProcessorContext<'_, '_, Option<Vec<u8>>, Option<Vec<u8>>>, r: Record<Val, Val>) -> samsa_streams::Result<()> {
        let bad = |part: &str, e: String| SError::Processor { node: format!("to {}", self.topic), reason: format!("the {part}: {e}") };
        let key = self.key.encode(&r.key).map_err(|e| bad("key", e))?;
        let value = self.value.encode(&r.value).map_err(|e| bad("value", e))?;
        ctx.forward(Record { key, value, timestamp: r.timestamp, headers: r.headers });
        Ok(())
    }
}

/// Which DSL operation a Python callable implements.
#[derive(Clone, Copy, Debug)]
enum Op {
    Filter,
    Map,
    MapValues,
    FlatMap,
    FlatMapValues,
    SelectKey,
    Peek,
}

/// Runs a Python callable on each record.
struct PyOp {
    op: Op,
    f: Arc<Py<PyAny>>,
    failure: Failure,
}

impl PyOp {
    fn call(&self, py: Python<'_>, key: &Val, value: &Val) -> PyResult<Vec<(Option<Val>, Val)>> {
        let (k, v) = (key.to_py(py)?, value.to_py(py)?);
        let pair = |x: Bound<'_, PyAny>| -> PyResult<(Option<Val>, Val)> {
            let (a, b): (Bound<'_, PyAny>, Bound<'_, PyAny>) = x.extract().map_err(|_| errors::config("the callable must return a (key, value) pair"))?;
            Ok((Some(Val::from_py(&a)?), Val::from_py(&b)?))
        };
        let f = self.f.bind(py);
        Ok(match self.op {
            Op::Filter => {
                if f.call1((k, v))?.is_truthy()? {
                    vec![(None, value.clone())]
                } else {
                    Vec::new()
                }
            }
            Op::Map => vec![pair(f.call1((k, v))?)?],
            Op::MapValues => vec![(None, Val::from_py(&f.call1((v,))?)?)],
            Op::FlatMap => f.call1((k, v))?.try_iter()?.map(|x| pair(x?)).collect::<PyResult<_>>()?,
            Op::FlatMapValues => f.call1((v,))?.try_iter()?.map(|x| Ok((None, Val::from_py(&x?)?))).collect::<PyResult<_>>()?,
            Op::SelectKey => vec![(Some(Val::from_py(&f.call1((k, v))?)?), value.clone())],
            Op::Peek => {
                f.call1((k, v))?;
                vec![(None, value.clone())]
            }
        })
    }
}

impl Processor<Val, Val, Val, Val> for PyOp {
    fn process(&mut self, ctx: &mut ProcessorContext<'_, '_, Val, Val>, r: Record<Val, Val>) -> samsa_streams::Result<()> {
        let out = Python::attach(|py| self.call(py, &r.key, &r.value)).map_err(|e| failed(&format!("{:?}", self.op).to_lowercase(), &self.failure, e))?;
        for (k, v) in out {
            ctx.forward(Record { key: k.unwrap_or_else(|| r.key.clone()), value: v, timestamp: r.timestamp, headers: r.headers.clone() });
        }
        Ok(())
    }
}

/// How an aggregation folds a record into its state.
#[derive(Clone)]
enum Fold {
    Count,
    Python { init: Arc<Py<PyAny>>, f: Arc<Py<PyAny>>, merge: Option<Arc<Py<PyAny>>> },
}

impl Fold {
    fn apply(&self, key: &Val, value: &Val, old: Option<Val>, failure: &Failure) -> samsa_streams::Result<Val> {
        match self {
            Fold::Count => Ok(Val::Int(match old {
                Some(Val::Int(n)) => n + 1,
                _ => 1,
            })),
            Fold::Python { init, f, .. } => Python::attach(|py| -> PyResult<Val> {
                let agg = match old {
                    Some(a) => a.to_py(py)?,
                    None => init.bind(py).call0()?,
                };
                Val::from_py(&f.bind(py).call1((key.to_py(py)?, value.to_py(py)?, agg))?)
            })
            .map_err(|e| failed("aggregate", failure, e)),
        }
    }
}

impl Fold {
    /// Two sessions' aggregates as one (when a record bridges them).
    fn merge(&self, key: &Val, a: Val, b: Val, failure: &Failure) -> samsa_streams::Result<Val> {
        match self {
            Fold::Count => match (a, b) {
                (Val::Int(x), Val::Int(y)) => Ok(Val::Int(x + y)),
                (x, y) => Err(SError::Processor { node: "session count".into(), reason: format!("counts {x:?} and {y:?} are not ints") }),
            },
            Fold::Python { merge: Some(m), .. } => {
                Python::attach(|py| Val::from_py(&m.bind(py).call1((key.to_py(py)?, a.to_py(py)?, b.to_py(py)?))?)).map_err(|e| failed("merge", failure, e))
            }
            Fold::Python { merge: None, .. } => Err(SError::Processor { node: "session aggregate".into(), reason: "sessions need a merge function".into() }),
        }
    }
}

/// A keyed aggregation into a key-value store; forwards each new aggregate.
struct Aggregate {
    store: String,
    h: Option<samsa_streams::KvHandle<Val, Val>>,
    fold: Fold,
    failure: Failure,
}

impl Processor<Val, Val, Val, Val> for Aggregate {
    fn init(&mut self, ctx: &mut ProcessorContext<'_, '_, Val, Val>) -> samsa_streams::Result<()> {
        self.h = Some(ctx.kv_store(&self.store)?);
        Ok(())
    }
    fn process(&mut self, ctx: &mut ProcessorContext<'_, '_, Val, Val>, r: Record<Val, Val>) -> samsa_streams::Result<()> {
        if r.key == Val::Null {
            // As Kafka Streams: a record without a key has no group; it is skipped.
            return Ok(());
        }
        let h = self.h.clone().expect("init ran");
        let old = ctx.kv(&h).get(&r.key)?;
        let new = self.fold.apply(&r.key, &r.value, old, &self.failure)?;
        ctx.kv(&h).put(&r.key, &new)?;
        ctx.forward(Record { key: r.key, value: new, timestamp: r.timestamp, headers: r.headers });
        Ok(())
    }
}

/// A windowed aggregation into a window store; forwards `((key, start, end), aggregate)`.
struct WindowAggregate {
    store: String,
    h: Option<samsa_streams::WindowHandle<Val, Val>>,
    windows: TimeWindows,
    fold: Fold,
    failure: Failure,
}

impl Processor<Val, Val, Val, Val> for WindowAggregate {
    fn init(&mut self, ctx: &mut ProcessorContext<'_, '_, Val, Val>) -> samsa_streams::Result<()> {
        self.h = Some(ctx.window_store(&self.store)?);
        Ok(())
    }
    fn process(&mut self, ctx: &mut ProcessorContext<'_, '_, Val, Val>, r: Record<Val, Val>) -> samsa_streams::Result<()> {
        if r.key == Val::Null {
            return Ok(());
        }
        let h = self.h.clone().expect("init ran");
        let grace = self.windows.grace_ms();
        for w in self.windows.windows_for(r.timestamp) {
            if w.end + grace <= ctx.stream_time() {
                // Past the grace period: the window is closed (Kafka drops late records).
                continue;
            }
            let old = ctx.window(&h).fetch(&r.key, w.start)?;
            let new = self.fold.apply(&r.key, &r.value, old, &self.failure)?;
            ctx.window(&h).put(&r.key, Some(&new), w.start)?;
            let key = Val::List(vec![r.key.clone(), Val::Int(w.start), Val::Int(w.end)]);
            ctx.forward(Record { key, value: new, timestamp: r.timestamp, headers: r.headers.clone() });
        }
        Ok(())
    }
}

/// A stream of raw topic records (keys and values as bytes, `None` for nulls).
type RawStream = KStream<Option<Vec<u8>>, Option<Vec<u8>>>;

/// A session-windowed aggregation: a record joins (and bridges) the key's sessions within
/// `gap` of it; merged-away sessions are forwarded as `None` (a tombstone), then the
/// session's new aggregate under `[key, start_ms, end_ms]` (end = its last record's time).
struct SessionAggregate {
    store: String,
    h: Option<samsa_streams::SessionHandle<Val, Val>>,
    gap_ms: i64,
    grace_ms: i64,
    fold: Fold,
    failure: Failure,
}

impl Processor<Val, Val, Val, Val> for SessionAggregate {
    fn init(&mut self, ctx: &mut ProcessorContext<'_, '_, Val, Val>) -> samsa_streams::Result<()> {
        self.h = Some(ctx.session_store(&self.store)?);
        Ok(())
    }
    fn process(&mut self, ctx: &mut ProcessorContext<'_, '_, Val, Val>, r: Record<Val, Val>) -> samsa_streams::Result<()> {
        if r.key == Val::Null {
            return Ok(());
        }
        let h = self.h.clone().expect("init ran");
        let t = r.timestamp;
        let sessions = ctx.session(&h).find_sessions(&r.key, t - self.gap_ms, t + self.gap_ms)?;
        let (mut start, mut end, mut agg) = (t, t, None);
        for (w, v) in &sessions {
            agg = Some(match agg {
                None => v.clone(),
                Some(a) => self.fold.merge(&r.key, a, v.clone(), &self.failure)?,
            });
            (start, end) = (start.min(w.start), end.max(w.end));
        }
        if end + self.grace_ms < ctx.stream_time() {
            // The merged session closed more than the grace period ago: a late record.
            return Ok(());
        }
        let window_key = |s: i64, e: i64| Val::List(vec![r.key.clone(), Val::Int(s), Val::Int(e)]);
        for (w, _) in sessions {
            if (w.start, w.end) != (start, end) {
                ctx.session(&h).put(&r.key, w, None)?;
                ctx.forward(Record { key: window_key(w.start, w.end), value: Val::Null, timestamp: t, headers: r.headers.clone() });
            }
        }
        let new = self.fold.apply(&r.key, &r.value, agg, &self.failure)?;
        ctx.session(&h).put(&r.key, samsa_streams::SessionWindow { start, end }, Some(&new))?;
        ctx.forward(Record { key: window_key(start, end), value: new, timestamp: t, headers: r.headers });
        Ok(())
    }
}

/// How a grouped stream is windowed.
#[derive(Clone, Copy)]
enum Windows {
    Time(TimeWindows),
    Session { gap_ms: i64, grace_ms: i64 },
}

/// What the builder side of an application shares with its streams and tables.
struct AppInner {
    builder: Mutex<Option<StreamsBuilder>>,
    /// The raw source of each topic read so far: a topic has one source, shared by every
    /// `stream()` / `table()` of it.
    sources: Mutex<std::collections::BTreeMap<String, RawStream>>,
    failure: Failure,
    stores: Mutex<usize>,
}

impl AppInner {
    fn with_builder<T>(&self, f: impl FnOnce(&StreamsBuilder) -> T) -> PyResult<T> {
        let b = self.builder.lock().unwrap();
        let b = b.as_ref().ok_or_else(|| errors::make("StreamsError", "the application has started; define its topology before start() or run()".into(), None, None, false))?;
        Ok(f(b))
    }

    fn source(&self, topic: &str) -> PyResult<RawStream> {
        if let Some(s) = self.sources.lock().unwrap().get(topic) {
            return Ok(s.clone());
        }
        let s: RawStream = self.with_builder(|b| b.stream(topic))?;
        self.sources.lock().unwrap().insert(topic.to_string(), s.clone());
        Ok(s)
    }

    fn store_name(&self, what: &str) -> String {
        let mut n = self.stores.lock().unwrap();
        *n += 1;
        format!("py-{what}-{:04}", *n)
    }
}

fn callable(f: Py<PyAny>, py: Python<'_>, what: &str) -> PyResult<Arc<Py<PyAny>>> {
    if !f.bind(py).is_callable() {
        return Err(errors::config(format!("{what} needs a callable")));
    }
    Ok(Arc::new(f))
}

/// A record stream of a `StreamsApp` (from `app.stream(topic)` or an operation on one).
#[pyclass(module = "samsa._samsa", frozen)]
pub struct Stream {
    app: Arc<AppInner>,
    s: KStream<Val, Val>,
}

impl Stream {
    fn op(&self, py: Python<'_>, op: Op, f: Py<PyAny>) -> PyResult<Stream> {
        let f = callable(f, py, &format!("{op:?}").to_lowercase())?;
        let failure = self.app.failure.clone();
        let s = self.s.process(move || PyOp { op, f: f.clone(), failure: failure.clone() }, &[]);
        Ok(Stream { app: self.app.clone(), s })
    }
}

#[pymethods]
impl Stream {
    /// Keeps the records for which `predicate(key, value)` is true.
    fn filter(&self, py: Python<'_>, predicate: Py<PyAny>) -> PyResult<Stream> {
        self.op(py, Op::Filter, predicate)
    }
    /// Replaces each record by `fn(key, value)`, a `(key, value)` pair.
    fn map(&self, py: Python<'_>, f: Py<PyAny>) -> PyResult<Stream> {
        self.op(py, Op::Map, f)
    }
    /// Replaces each value by `fn(value)`.
    fn map_values(&self, py: Python<'_>, f: Py<PyAny>) -> PyResult<Stream> {
        self.op(py, Op::MapValues, f)
    }
    /// Replaces each record by the `(key, value)` pairs of the iterable `fn(key, value)`.
    fn flat_map(&self, py: Python<'_>, f: Py<PyAny>) -> PyResult<Stream> {
        self.op(py, Op::FlatMap, f)
    }
    /// Replaces each value by the values of the iterable `fn(value)` (same key).
    fn flat_map_values(&self, py: Python<'_>, f: Py<PyAny>) -> PyResult<Stream> {
        self.op(py, Op::FlatMapValues, f)
    }
    /// Sets each record's key to `fn(key, value)`.
    fn select_key(&self, py: Python<'_>, f: Py<PyAny>) -> PyResult<Stream> {
        self.op(py, Op::SelectKey, f)
    }
    /// Calls `fn(key, value)` on each record and passes it on unchanged.
    fn peek(&self, py: Python<'_>, f: Py<PyAny>) -> PyResult<Stream> {
        self.op(py, Op::Peek, f)
    }

    /// Groups by `fn(key, value)` (records are repartitioned by the new key).
    fn group_by(&self, py: Python<'_>, f: Py<PyAny>) -> PyResult<GroupedStream> {
        let keyed = self.op(py, Op::SelectKey, f)?;
        Ok(GroupedStream { app: self.app.clone(), s: keyed.s.repartition(), windows: None })
    }

    /// Groups by the current key (repartitioning first: Python operations may have
    /// changed it).
    fn group_by_key(&self) -> GroupedStream {
        GroupedStream { app: self.app.clone(), s: self.s.repartition(), windows: None }
    }

    /// Joins each record with the row of `table` under the same key:
    /// `fn(value, table_value)` gives the new value; records without a row are dropped
    /// (`left=True` keeps them, with `table_value=None`). Keys must be str on both sides.
    #[pyo3(signature = (table, f, left=false))]
    fn join(&self, py: Python<'_>, table: &Table, f: Py<PyAny>, left: bool) -> PyResult<Stream> {
        let f = callable(f, py, "join")?;
        let failure = self.app.failure.clone();
        let store = table.store.clone();
        let keyed = self.s.repartition();
        keyed.copartition_with(&table.updates);
        let joined = keyed.process(move || TableJoin { store: store.clone(), h: None, f: f.clone(), left, failure: failure.clone() }, &[&table.store]);
        Ok(Stream { app: self.app.clone(), s: joined })
    }

    /// Writes the stream to `topic`, keys and values encoded by `key` and `value`
    /// ("str", "json", "bytes" or "int"; str and bytes values are written as they are,
    /// anything else as JSON under "str").
    #[pyo3(signature = (topic, key="str", value="json"))]
    fn to(&self, topic: &str, key: &str, value: &str) -> PyResult<()> {
        let (kf, vf) = (Format::parse(key)?, Format::parse(value)?);
        let t = topic.to_string();
        self.s.process(move || Encode { key: kf, value: vf, topic: t.clone() }, &[]).to(topic);
        Ok(())
    }
}

/// A stream grouped by key, ready to aggregate (optionally in windows).
#[pyclass(module = "samsa._samsa", frozen)]
pub struct GroupedStream {
    app: Arc<AppInner>,
    s: KStream<Val, Val>,
    windows: Option<Windows>,
}

impl GroupedStream {
    fn fold(&self, fold: Fold) -> PyResult<Table> {
        let failure = self.app.failure.clone();
        match self.windows {
            None => {
                let store = self.app.store_name("aggregate");
                self.app.with_builder(|b| b.add_state_store(StoreDef::key_value(store.clone())))?;
                let st = store.clone();
                let s = self.s.process(move || Aggregate { store: st.clone(), h: None, fold: fold.clone(), failure: failure.clone() }, &[&store]);
                Ok(Table { app: self.app.clone(), updates: s, store })
            }
            Some(Windows::Session { gap_ms, grace_ms }) => {
                if let Fold::Python { merge: None, .. } = fold {
                    return Err(errors::config("a session aggregate needs merge=fn(key, agg1, agg2) to combine two sessions a record bridges"));
                }
                let store = self.app.store_name("session");
                self.app.with_builder(|b| b.add_state_store(StoreDef::session(store.clone(), gap_ms + grace_ms)))?;
                let st = store.clone();
                let s = self.s.process(move || SessionAggregate { store: st.clone(), h: None, gap_ms, grace_ms, fold: fold.clone(), failure: failure.clone() }, &[&store]);
                Ok(Table { app: self.app.clone(), updates: s, store })
            }
            Some(Windows::Time(w)) => {
                let store = self.app.store_name("window");
                let def = StoreDef::window(store.clone(), w.size_ms(), w.size_ms() + w.grace_ms(), false);
                self.app.with_builder(|b| b.add_state_store(def))?;
                let st = store.clone();
                let s = self.s.process(move || WindowAggregate { store: st.clone(), h: None, windows: w, fold: fold.clone(), failure: failure.clone() }, &[&store]);
                Ok(Table { app: self.app.clone(), updates: s, store })
            }
        }
    }
}

#[pymethods]
impl GroupedStream {
    /// Aggregates per window: `window` is `samsa.Tumbling(size)`,
    /// `samsa.Hopping(size, advance)` or `samsa.Session(gap)` (seconds, optional
    /// `grace`); the table's keys become `[key, window_start_ms, window_end_ms]`.
    fn windowed_by(&self, window: &Bound<'_, PyAny>) -> PyResult<GroupedStream> {
        let secs = |what: &str, s: f64, zero_ok: bool| -> PyResult<Duration> {
            if s.is_finite() && (s > 0.0 || (zero_ok && s == 0.0)) {
                Ok(Duration::from_secs_f64(s))
            } else {
                Err(errors::config(format!("the window {what} must be a positive number of seconds, got {s}")))
            }
        };
        let grace = secs("grace", window.getattr("grace")?.extract()?, true)?;
        let windows = if window.hasattr("gap")? {
            let gap = secs("gap", window.getattr("gap")?.extract()?, false)?;
            Windows::Session { gap_ms: gap.as_millis() as i64, grace_ms: grace.as_millis() as i64 }
        } else {
            let size: f64 = window.getattr("size")?.extract()?;
            let mut w = TimeWindows::of_size_with_grace(secs("size", size, false)?, grace);
            if let Some(a) = window.getattr("advance")?.extract::<Option<f64>>()? {
                w = w.advance_by(secs("advance", a, false)?);
                if w.advance_ms() > w.size_ms() {
                    return Err(errors::config(format!("a hopping window's advance ({a}s) must be at most its size ({size}s)")));
                }
            }
            Windows::Time(w)
        };
        Ok(GroupedStream { app: self.app.clone(), s: self.s.clone(), windows: Some(windows) })
    }

    /// Counts records per key: a table of ints.
    fn count(&self) -> PyResult<Table> {
        self.fold(Fold::Count)
    }

    /// Folds records per key: the state starts as `init()` and becomes
    /// `fn(key, value, state)` on each record; session windows also need
    /// `merge(key, state1, state2)` for a record that bridges two sessions.
    #[pyo3(signature = (init, f, merge=None))]
    fn aggregate(&self, py: Python<'_>, init: Py<PyAny>, f: Py<PyAny>, merge: Option<Py<PyAny>>) -> PyResult<Table> {
        let merge = merge.map(|m| callable(m, py, "aggregate's merge")).transpose()?;
        self.fold(Fold::Python { init: callable(init, py, "aggregate's init")?, f: callable(f, py, "aggregate")?, merge })
    }
}

/// A table: the latest value per key, kept in a state store (backed by a changelog
/// topic). `to(topic)` writes its updates.
#[pyclass(module = "samsa._samsa", frozen)]
pub struct Table {
    app: Arc<AppInner>,
    /// Every change of the table, as (key, new value).
    updates: KStream<Val, Val>,
    store: String,
}

#[pymethods]
impl Table {
    /// The table's changes as a stream.
    fn to_stream(&self) -> Stream {
        Stream { app: self.app.clone(), s: self.updates.clone() }
    }

    /// Writes the table's changes to `topic` (see `Stream.to` for the formats).
    #[pyo3(signature = (topic, key="str", value="json"))]
    fn to(&self, topic: &str, key: &str, value: &str) -> PyResult<()> {
        self.to_stream().to(topic, key, value)
    }

    /// The name of the table's state store.
    #[getter]
    fn store_name(&self) -> String {
        self.store.clone()
    }
}

/// Keeps a table topic's rows in a store (the source side of `app.table`).
struct Materialize {
    store: String,
    h: Option<samsa_streams::KvHandle<Val, Val>>,
}

impl Processor<Val, Val, Val, Val> for Materialize {
    fn init(&mut self, ctx: &mut ProcessorContext<'_, '_, Val, Val>) -> samsa_streams::Result<()> {
        self.h = Some(ctx.kv_store(&self.store)?);
        Ok(())
    }
    fn process(&mut self, ctx: &mut ProcessorContext<'_, '_, Val, Val>, r: Record<Val, Val>) -> samsa_streams::Result<()> {
        if r.key == Val::Null {
            return Ok(());
        }
        let h = self.h.clone().expect("init ran");
        if r.value == Val::Null {
            ctx.kv(&h).delete(&r.key)?;
        } else {
            ctx.kv(&h).put(&r.key, &r.value)?;
        }
        ctx.forward(r);
        Ok(())
    }
}

/// Looks each stream record up in a table's store.
struct TableJoin {
    store: String,
    h: Option<samsa_streams::KvHandle<Val, Val>>,
    f: Arc<Py<PyAny>>,
    left: bool,
    failure: Failure,
}

impl Processor<Val, Val, Val, Val> for TableJoin {
    fn init(&mut self, ctx: &mut ProcessorContext<'_, '_, Val, Val>) -> samsa_streams::Result<()> {
        self.h = Some(ctx.kv_store(&self.store)?);
        Ok(())
    }
    fn process(&mut self, ctx: &mut ProcessorContext<'_, '_, Val, Val>, r: Record<Val, Val>) -> samsa_streams::Result<()> {
        let h = self.h.clone().expect("init ran");
        let row = if r.key == Val::Null { None } else { ctx.kv(&h).get(&r.key)? };
        if row.is_none() && !self.left {
            return Ok(());
        }
        let row = row.unwrap_or(Val::Null);
        let value = Python::attach(|py| Val::from_py(&self.f.bind(py).call1((r.value.to_py(py)?, row.to_py(py)?))?)).map_err(|e| failed("join", &self.failure, e))?;
        ctx.forward(Record { key: r.key, value, timestamp: r.timestamp, headers: r.headers });
        Ok(())
    }
}

struct Running {
    streams: KafkaStreams,
    rt: tokio::runtime::Runtime,
}

impl Running {
    /// Drops a running application that was never closed (its stream threads' tasks are
    /// dropped inside its runtime's context).
    fn abandon(self) {
        let Running { streams, rt } = self;
        let guard = rt.enter();
        drop(streams);
        drop(guard);
        rt.shutdown_background();
    }
}

impl Drop for StreamsApp {
    fn drop(&mut self) {
        if let Some(r) = self.running.lock().unwrap().take() {
            r.abandon();
        }
    }
}

/// A streams application: define streams and tables, then `run()` (until Ctrl-C or a
/// failure) or `start()` and later `close()`.
#[pyclass(module = "samsa._samsa", frozen)]
pub struct StreamsApp {
    inner: Arc<AppInner>,
    config: Mutex<StreamsConfig>,
    running: Mutex<Option<Running>>,
}

impl StreamsApp {
    fn raise(&self, py: Python<'_>, e: SError) -> PyErr {
        let err = errors::streams(e);
        if let Some(cause) = self.inner.failure.lock().unwrap().take() {
            err.set_cause(py, Some(cause));
        }
        err
    }
}

#[pymethods]
impl StreamsApp {
    /// An application `app_id` (it names the consumer group, internal topics and the
    /// state directory) on the cluster at `bootstrap`. `guarantee` is
    /// "at_least_once" or "exactly_once_v2"; other Kafka Streams properties go in
    /// `config` or as keyword arguments (`commit_interval_ms=100`).
    #[new]
    #[pyo3(signature = (app_id, bootstrap, state_dir=None, guarantee="at_least_once", config=None, **kwargs))]
    fn new(
        app_id: &str,
        bootstrap: &str,
        state_dir: Option<std::path::PathBuf>,
        guarantee: &str,
        config: Option<&Bound<'_, PyDict>>,
        kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Self> {
        let mut c = StreamsConfig::new(app_id, bootstrap);
        if let Some(d) = state_dir {
            c.set("state.dir", &d.display().to_string()).map_err(errors::streams)?;
        }
        c.set("processing.guarantee", guarantee).map_err(errors::streams)?;
        for (k, v) in crate::client::properties(config, kwargs)? {
            c.set(&k, &v).map_err(errors::streams)?;
        }
        Ok(StreamsApp {
            inner: Arc::new(AppInner { builder: Mutex::new(Some(StreamsBuilder::new())), sources: Default::default(), failure: Arc::new(Mutex::new(None)), stores: Mutex::new(0) }),
            config: Mutex::new(c),
            running: Mutex::new(None),
        })
    }

    /// A stream of `topic`'s records, keys and values decoded by `key` and `value`
    /// ("str", "json", "bytes" or "int"; a record that does not decode fails the app).
    #[pyo3(signature = (topic, key="str", value="json"))]
    fn stream(&self, topic: &str, key: &str, value: &str) -> PyResult<Stream> {
        let (kf, vf) = (Format::parse(key)?, Format::parse(value)?);
        let raw = self.inner.source(topic)?;
        let t = topic.to_string();
        let s = raw.process(move || Decode { key: kf, value: vf, topic: t.clone() }, &[]);
        Ok(Stream { app: self.inner.clone(), s })
    }

    /// A table of `topic`: the latest value per key (a null value deletes the key), for
    /// `Stream.join`. Its keys must be str (as produced with a string key serializer).
    #[pyo3(signature = (topic, value="json"))]
    fn table(&self, topic: &str, value: &str) -> PyResult<Table> {
        let vf = Format::parse(value)?;
        let store = self.inner.store_name("table");
        self.inner.with_builder(|b| b.add_state_store(StoreDef::key_value(store.clone())))?;
        let raw = self.inner.source(topic)?;
        let t = topic.to_string();
        let st = store.clone();
        let decoded = raw.process(move || Decode { key: Format::Str, value: vf, topic: t.clone() }, &[]);
        let updates = decoded.process(move || Materialize { store: st.clone(), h: None }, &[&store]);
        Ok(Table { app: self.inner.clone(), updates, store })
    }

    /// Starts the application in the background.
    fn start(&self, py: Python<'_>) -> PyResult<()> {
        let builder = self.inner.builder.lock().unwrap().take().ok_or_else(|| errors::make("StreamsError", "the application was already started".into(), None, None, false))?;
        let topology = builder.build().map_err(errors::streams)?;
        let config = self.config.lock().unwrap().clone();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("samsa-streams")
            .enable_all()
            .build()
            .map_err(|e| errors::other(format!("cannot start the application's threads: {e}")))?;
        let handle = rt.handle().clone();
        let started = block(py, async move { handle.spawn(KafkaStreams::start(topology, config)).await })?;
        let streams = match started {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(self.raise(py, e)),
            Err(e) => return Err(errors::other(format!("the application's start panicked: {e}"))),
        };
        *self.running.lock().unwrap() = Some(Running { streams, rt });
        Ok(())
    }

    /// Starts (if needed) and runs until Ctrl-C (then closes and re-raises
    /// KeyboardInterrupt) or until the application fails (raises `StreamsError`, with
    /// the Python exception that caused it as `__cause__`).
    fn run(&self, py: Python<'_>) -> PyResult<()> {
        if self.running.lock().unwrap().is_none() {
            self.start(py)?;
        }
        let waited = self.wait(py, None);
        match waited {
            Ok(_) => self.close(py),
            Err(e) => {
                let _ = self.close(py);
                Err(e)
            }
        }
    }

    /// Waits until the application stops (`timeout` seconds at most: returns False);
    /// raises `StreamsError` if it failed.
    #[pyo3(signature = (timeout=None))]
    fn wait(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<bool> {
        let limit = crate::seconds(timeout)?;
        let deadline = limit.map(|d| std::time::Instant::now() + d);
        loop {
            let outcome = {
                let guard = self.running.lock().unwrap();
                let Some(r) = guard.as_ref() else { return Ok(true) };
                if r.streams.is_failed() {
                    Some(r.rt.block_on(r.streams.wait()))
                } else {
                    None
                }
            };
            if let Some(res) = outcome {
                return match res {
                    Ok(()) => Ok(true),
                    Err(e) => Err(self.raise(py, e)),
                };
            }
            if deadline.is_some_and(|d| std::time::Instant::now() >= d) {
                return Ok(false);
            }
            py.detach(|| std::thread::sleep(Duration::from_millis(50)));
            py.check_signals()?;
        }
    }

    /// Commits, leaves the group and stops; raises `StreamsError` if the application
    /// had failed.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let Some(Running { streams, rt }) = self.running.lock().unwrap().take() else { return Ok(()) };
        let failed = streams.is_failed();
        let handle = rt.handle().clone();
        let closed = block(py, async move { handle.spawn(streams.close()).await })?;
        py.detach(|| rt.shutdown_timeout(Duration::from_secs(5)));
        match closed {
            Ok(Ok(())) if !failed => Ok(()),
            Ok(Ok(())) => Err(self.raise(py, SError::State("the application failed".into()))),
            Ok(Err(e)) => Err(self.raise(py, e)),
            Err(e) => Err(errors::other(format!("closing the application panicked: {e}"))),
        }
    }

    /// Whether the application is running.
    #[getter]
    fn running(&self) -> bool {
        self.running.lock().unwrap().as_ref().is_some_and(|r| !r.streams.is_failed())
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, py: Python<'_>, _args: &Bound<'_, PyTuple>) -> PyResult<bool> {
        self.close(py)?;
        Ok(false)
    }
}
