//! The producer, consumer and admin client for Python: blocking facades over the async
//! Rust client (STYLE: a blocking facade wraps the async client), each call run through
//! [`crate::block`] so it releases the GIL and yields to Ctrl-C.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};
use samsa_client::{ConsumerConfig, ProducerConfig, ProducerRecord, TopicPartition};

use crate::{block, enter, errors, runtime, seconds, InRt};

/// Kafka properties from a `config` dict and keyword arguments (`linger_ms=5` is
/// `linger.ms=5`); booleans become `true`/`false`, numbers their text.
pub(crate) fn properties(config: Option<&Bound<'_, PyDict>>, kwargs: Option<&Bound<'_, PyDict>>) -> PyResult<Vec<(String, String)>> {
    let mut out = Vec::new();
    for (dict, underscores) in [(config, false), (kwargs, true)] {
        let Some(d) = dict else { continue };
        for (k, v) in d.iter() {
            let mut key = k.str()?.to_string();
            if underscores {
                key = key.replace('_', ".");
            }
            if v.is_none() {
                continue;
            }
            let value = if let Ok(b) = v.cast::<pyo3::types::PyBool>() { b.is_true().to_string() } else { v.str()?.to_string() };
            out.push((key, value));
        }
    }
    Ok(out)
}

/// Bytes of a key or value: `bytes`, `bytearray` or `str` (UTF-8); `None` stays null.
fn to_bytes(v: Option<&Bound<'_, PyAny>>, what: &str) -> PyResult<Option<Bytes>> {
    let Some(v) = v else { return Ok(None) };
    if v.is_none() {
        return Ok(None);
    }
    if let Ok(s) = v.cast::<PyString>() {
        return Ok(Some(Bytes::from(s.to_cow()?.into_owned())));
    }
    if let Ok(b) = v.extract::<Vec<u8>>() {
        if !v.is_instance_of::<PyList>() {
            return Ok(Some(Bytes::from(b)));
        }
    }
    Err(errors::config(format!("the {what} must be bytes or str, not {}", v.get_type().name()?)))
}

/// Headers from a dict or a list of `(name, value)` pairs.
fn to_headers(h: Option<&Bound<'_, PyAny>>) -> PyResult<Vec<(String, Option<Bytes>)>> {
    let Some(h) = h else { return Ok(Vec::new()) };
    if h.is_none() {
        return Ok(Vec::new());
    }
    let pairs: Vec<(String, Option<Bound<'_, PyAny>>)> = if let Ok(d) = h.cast::<PyDict>() {
        d.iter().map(|(k, v)| Ok((k.extract::<String>()?, Some(v)))).collect::<PyResult<_>>()?
    } else {
        h.try_iter()?.map(|item| item?.extract::<(String, Option<Bound<'_, PyAny>>)>()).collect::<PyResult<_>>()?
    };
    pairs.into_iter().map(|(k, v)| Ok((k, to_bytes(v.as_ref(), "header value")?))).collect()
}

/// Where a record landed (returned by `DeliveryFuture.result()`).
#[pyclass(module = "samsa._samsa", frozen, get_all)]
#[derive(Clone)]
pub struct RecordMetadata {
    /// Topic.
    topic: String,
    /// Partition.
    partition: i32,
    /// Offset (-1 with `acks=0`).
    offset: i64,
    /// Timestamp in ms since the epoch.
    timestamp: i64,
}

#[pymethods]
impl RecordMetadata {
    fn __repr__(&self) -> String {
        format!("RecordMetadata(topic='{}', partition={}, offset={}, timestamp={})", self.topic, self.partition, self.offset, self.timestamp)
    }
}

type Delivery = Result<RecordMetadata, samsa_client::Error>;

struct FutureState {
    result: Option<Delivery>,
    callbacks: Vec<Py<PyAny>>,
}

/// The outcome of one `Producer.send`: `result(timeout)` waits for the acknowledgement
/// and returns a `RecordMetadata` or raises; `add_done_callback(fn)` calls `fn(future)`
/// once it is known (on a background thread).
#[pyclass(module = "samsa._samsa", frozen)]
pub struct DeliveryFuture {
    state: Mutex<FutureState>,
    done: tokio::sync::watch::Sender<bool>,
}

impl DeliveryFuture {
    fn spawn(py: Python<'_>, delivery: samsa_client::DeliveryFuture) -> PyResult<Py<DeliveryFuture>> {
        let fut = Py::new(py, DeliveryFuture { state: Mutex::new(FutureState { result: None, callbacks: Vec::new() }), done: tokio::sync::watch::channel(false).0 })?;
        let handle = fut.clone_ref(py);
        runtime().spawn(async move {
            let r = delivery.await.map(|m| RecordMetadata { topic: m.topic, partition: m.partition, offset: m.offset, timestamp: m.timestamp });
            let me = handle.get();
            let callbacks = {
                let mut st = me.state.lock().unwrap();
                st.result = Some(r);
                std::mem::take(&mut st.callbacks)
            };
            me.done.send_replace(true);
            if !callbacks.is_empty() {
                Python::attach(|py| {
                    for cb in callbacks {
                        if let Err(e) = cb.call1(py, (handle.clone_ref(py),)) {
                            e.print(py);
                        }
                    }
                });
            }
        });
        Ok(fut)
    }
}

#[pymethods]
impl DeliveryFuture {
    /// Waits (at most `timeout` seconds; `None`: until known) and returns where the
    /// record landed, or raises why it was not delivered.
    #[pyo3(signature = (timeout=None))]
    fn result(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<RecordMetadata> {
        let limit = seconds(timeout)?;
        let mut rx = self.done.subscribe();
        let waited = block(py, async move {
            let wait = rx.wait_for(|d| *d);
            match limit {
                Some(d) => tokio::time::timeout(d, wait).await.is_ok(),
                None => wait.await.is_ok(),
            }
        })?;
        if !waited {
            return Err(errors::make("SamsaTimeoutError", format!("the record was not acknowledged within {}s", timeout.unwrap_or_default()), None, None, true));
        }
        match self.state.lock().unwrap().result.clone().expect("done means a result") {
            Ok(m) => Ok(m),
            Err(e) => Err(errors::client(e)),
        }
    }

    /// Whether the outcome is known.
    fn done(&self) -> bool {
        self.state.lock().unwrap().result.is_some()
    }

    /// Calls `fn(self)` when the outcome is known (at once if it already is).
    fn add_done_callback(slf: &Bound<'_, Self>, f: Py<PyAny>) -> PyResult<()> {
        {
            let mut st = slf.get().state.lock().unwrap();
            if st.result.is_none() {
                st.callbacks.push(f);
                return Ok(());
            }
        }
        f.call1(slf.py(), (slf.clone(),))?;
        Ok(())
    }
}

/// A Kafka producer: `Producer("127.0.0.1:9092", acks="all", linger_ms=5)` or with a
/// `config={"linger.ms": 5}` dict of Kafka property names.
#[pyclass(module = "samsa._samsa", frozen)]
pub struct Producer {
    inner: InRt<samsa_client::Producer>,
}

impl Producer {
    fn record(
        topic: &str,
        value: Option<&Bound<'_, PyAny>>,
        key: Option<&Bound<'_, PyAny>>,
        headers: Option<&Bound<'_, PyAny>>,
        partition: Option<i32>,
        timestamp: Option<i64>,
    ) -> PyResult<ProducerRecord> {
        let mut r = ProducerRecord::new(topic, Bytes::new());
        r.value = to_bytes(value, "value")?;
        r.key = to_bytes(key, "key")?;
        r.headers = to_headers(headers)?;
        r.partition = partition;
        r.timestamp = timestamp;
        Ok(r)
    }
}

#[pymethods]
impl Producer {
    /// Connects to `bootstrap` ("HOST:PORT[,HOST:PORT...]").
    #[new]
    #[pyo3(signature = (bootstrap, config=None, **kwargs))]
    fn new(py: Python<'_>, bootstrap: &str, config: Option<&Bound<'_, PyDict>>, kwargs: Option<&Bound<'_, PyDict>>) -> PyResult<Self> {
        let mut pc = ProducerConfig::default();
        pc.set("bootstrap.servers", bootstrap).map_err(errors::client)?;
        for (k, v) in properties(config, kwargs)? {
            pc.set(&k, &v).map_err(errors::client)?;
        }
        let inner = block(py, samsa_client::Producer::new(pc))?.map_err(errors::client)?;
        Ok(Producer { inner: InRt::new(inner) })
    }

    /// Queues one record and returns its `DeliveryFuture`. `value` and `key` are bytes
    /// or str (None: null); `headers` a dict or list of pairs; `timestamp` in ms.
    #[pyo3(signature = (topic, value=None, key=None, headers=None, partition=None, timestamp=None))]
    #[allow(clippy::too_many_arguments)]
    fn send(
        &self,
        py: Python<'_>,
        topic: &str,
        value: Option<&Bound<'_, PyAny>>,
        key: Option<&Bound<'_, PyAny>>,
        headers: Option<&Bound<'_, PyAny>>,
        partition: Option<i32>,
        timestamp: Option<i64>,
    ) -> PyResult<Py<DeliveryFuture>> {
        let rec = Producer::record(topic, value, key, headers, partition, timestamp)?;
        let delivery = block(py, self.inner.send(rec))?.map_err(errors::client)?;
        DeliveryFuture::spawn(py, delivery)
    }

    /// Queues many records to `topic`: each item is a value, a `(key, value)` pair, or a
    /// dict with `value`, `key`, `headers`, `partition`, `timestamp`. Returns the futures.
    fn send_batch(&self, py: Python<'_>, topic: &str, records: &Bound<'_, PyAny>) -> PyResult<Vec<Py<DeliveryFuture>>> {
        let mut recs = Vec::new();
        for item in records.try_iter()? {
            let item = item?;
            let rec = if let Ok(d) = item.cast::<PyDict>() {
                let get = |k: &str| d.get_item(k);
                Producer::record(
                    topic,
                    get("value")?.as_ref(),
                    get("key")?.as_ref(),
                    get("headers")?.as_ref(),
                    get("partition")?.map(|p| p.extract()).transpose()?,
                    get("timestamp")?.map(|t| t.extract()).transpose()?,
                )?
            } else if let Ok(t) = item.cast::<PyTuple>() {
                if t.len() != 2 {
                    return Err(errors::config(format!("a record tuple must be (key, value), got {} items", t.len())));
                }
                Producer::record(topic, Some(&t.get_item(1)?), Some(&t.get_item(0)?), None, None, None)?
            } else {
                Producer::record(topic, Some(&item), None, None, None, None)?
            };
            recs.push(rec);
        }
        let producer = self.inner.clone();
        let deliveries = block(py, async move {
            let mut out = Vec::with_capacity(recs.len());
            for r in recs {
                out.push(producer.send(r).await?);
            }
            Ok::<_, samsa_client::Error>(out)
        })?
        .map_err(errors::client)?;
        deliveries.into_iter().map(|d| DeliveryFuture::spawn(py, d)).collect()
    }

    /// Sends everything queued and waits for the acknowledgements (`timeout` seconds at
    /// most; raises `SamsaTimeoutError` after that).
    #[pyo3(signature = (timeout=None))]
    fn flush(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<()> {
        let limit = seconds(timeout)?;
        let p = self.inner.clone();
        let done = block(py, async move {
            match limit {
                Some(d) => tokio::time::timeout(d, p.flush()).await.is_ok(),
                None => {
                    p.flush().await;
                    true
                }
            }
        })?;
        if done {
            Ok(())
        } else {
            Err(errors::make("SamsaTimeoutError", format!("flush did not finish within {}s", timeout.unwrap_or_default()), None, None, true))
        }
    }

    /// Registers the `transactional.id` with its coordinator (fencing older producers).
    fn init_transactions(&self, py: Python<'_>) -> PyResult<()> {
        block(py, self.inner.init_transactions())?.map_err(errors::client)
    }

    /// Starts a transaction.
    fn begin_transaction(&self) -> PyResult<()> {
        let _rt = enter();
        self.inner.begin_transaction().map_err(errors::client)
    }

    /// Commits the open transaction (flushing its records first).
    fn commit_transaction(&self, py: Python<'_>) -> PyResult<()> {
        block(py, self.inner.commit_transaction())?.map_err(errors::client)
    }

    /// Aborts the open transaction: read_committed consumers never see its records.
    fn abort_transaction(&self, py: Python<'_>) -> PyResult<()> {
        block(py, self.inner.abort_transaction())?.map_err(errors::client)
    }

    /// Adds `consumer`'s current positions (or `offsets`, `{(topic, partition): next
    /// offset}`) to the open transaction, so they commit with its records.
    #[pyo3(signature = (consumer, offsets=None))]
    fn send_offsets_to_transaction(&self, py: Python<'_>, consumer: &Consumer, offsets: Option<BTreeMap<(String, i32), i64>>) -> PyResult<()> {
        let group = consumer.inner.group_metadata().ok_or_else(|| errors::config("the consumer has no group.id; transactions commit offsets of a group"))?;
        let offsets: BTreeMap<TopicPartition, i64> = match offsets {
            Some(o) => o.into_iter().map(|((t, p), off)| (TopicPartition::new(t, p), off)).collect(),
            None => consumer.inner.positions(),
        };
        block(py, self.inner.send_offsets_to_transaction(&offsets, &group))?.map_err(errors::client)
    }

    /// Flushes and closes the producer.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let p = self.inner.clone();
        block(py, async move { p.close().await })
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

/// One record read by a `Consumer`.
#[pyclass(module = "samsa._samsa", frozen, get_all)]
pub struct Message {
    /// Topic.
    topic: String,
    /// Partition.
    partition: i32,
    /// Offset.
    offset: i64,
    /// Timestamp in ms since the epoch.
    timestamp: i64,
    /// Key bytes (None: null).
    key: Option<Py<PyBytes>>,
    /// Value bytes (None: a tombstone).
    value: Option<Py<PyBytes>>,
    /// Headers as `(name, bytes or None)` pairs.
    headers: Vec<(String, Option<Py<PyBytes>>)>,
}

impl Message {
    fn from_record(py: Python<'_>, r: samsa_client::ConsumerRecord) -> Message {
        let b = |x: Option<Bytes>| x.map(|x| PyBytes::new(py, &x).unbind());
        Message {
            topic: r.topic,
            partition: r.partition,
            offset: r.offset,
            timestamp: r.timestamp,
            key: b(r.key),
            value: b(r.value),
            headers: r.headers.into_iter().map(|(k, v)| (k, b(v))).collect(),
        }
    }
}

#[pymethods]
impl Message {
    fn __repr__(&self, py: Python<'_>) -> String {
        let show = |x: &Option<Py<PyBytes>>| x.as_ref().map(|b| format!("{:?}", String::from_utf8_lossy(b.as_bytes(py)))).unwrap_or_else(|| "None".into());
        format!("Message(topic='{}', partition={}, offset={}, key={}, value={})", self.topic, self.partition, self.offset, show(&self.key), show(&self.value))
    }
}

/// Calls Python's `on_assign` / `on_revoke` with lists of `(topic, partition)`.
struct PyListener {
    on_assign: Option<Py<PyAny>>,
    on_revoke: Option<Py<PyAny>>,
}

impl PyListener {
    fn call(f: &Option<Py<PyAny>>, parts: &[TopicPartition]) {
        let Some(f) = f else { return };
        Python::attach(|py| {
            let list: Vec<(String, i32)> = parts.iter().map(|tp| (tp.topic.clone(), tp.partition)).collect();
            if let Err(e) = f.call1(py, (list,)) {
                e.print(py);
            }
        });
    }
}

impl samsa_client::RebalanceListener for PyListener {
    fn on_partitions_assigned(&self, partitions: &[TopicPartition]) {
        PyListener::call(&self.on_assign, partitions);
    }
    fn on_partitions_revoked(&self, partitions: &[TopicPartition]) {
        PyListener::call(&self.on_revoke, partitions);
    }
}

/// A Kafka consumer: `Consumer(bootstrap, group_id="g", topics=["t"], auto_offset_reset="earliest")`.
/// `poll(timeout)` returns one `Message` or `None`; iterating yields messages as they
/// come. `on_assign(partitions)` / `on_revoke(partitions)` hear about rebalances.
#[pyclass(module = "samsa._samsa", frozen)]
pub struct Consumer {
    inner: InRt<Arc<samsa_client::Consumer>>,
}

#[pymethods]
impl Consumer {
    /// Connects and, when `topics` are given, subscribes to them.
    #[new]
    #[pyo3(signature = (bootstrap, group_id=None, topics=None, on_assign=None, on_revoke=None, config=None, **kwargs))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        bootstrap: &str,
        group_id: Option<&str>,
        topics: Option<Vec<String>>,
        on_assign: Option<Py<PyAny>>,
        on_revoke: Option<Py<PyAny>>,
        config: Option<&Bound<'_, PyDict>>,
        kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Self> {
        let mut cc = ConsumerConfig::default();
        cc.set("bootstrap.servers", bootstrap).map_err(errors::client)?;
        if let Some(g) = group_id {
            cc.set("group.id", g).map_err(errors::client)?;
        }
        for (k, v) in properties(config, kwargs)? {
            cc.set(&k, &v).map_err(errors::client)?;
        }
        let inner = Arc::new(block(py, samsa_client::Consumer::new(cc))?.map_err(errors::client)?);
        let _rt = enter();
        if on_assign.is_some() || on_revoke.is_some() {
            inner.set_rebalance_listener(Arc::new(PyListener { on_assign, on_revoke }));
        }
        let c = Consumer { inner: InRt::new(inner) };
        if let Some(t) = topics {
            c.subscribe(t)?;
        }
        Ok(c)
    }

    /// Subscribes to `topics` (replacing any earlier subscription).
    fn subscribe(&self, topics: Vec<String>) -> PyResult<()> {
        let _rt = enter();
        self.inner.subscribe(&topics).map_err(errors::client)
    }

    /// Reads exactly these `(topic, partition)`s, without a group rebalance.
    fn assign(&self, partitions: Vec<(String, i32)>) -> PyResult<()> {
        let _rt = enter();
        let tps: Vec<TopicPartition> = partitions.into_iter().map(|(t, p)| TopicPartition::new(t, p)).collect();
        self.inner.assign(&tps).map_err(errors::client)
    }

    /// The `(topic, partition)`s currently assigned.
    fn assignment(&self) -> Vec<(String, i32)> {
        let _rt = enter();
        self.inner.assignment().into_iter().map(|tp| (tp.topic, tp.partition)).collect()
    }

    /// The next message, waiting up to `timeout` seconds (`None`: until one comes);
    /// `None` when none came in time.
    #[pyo3(signature = (timeout=None))]
    fn poll(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Option<Message>> {
        let mut got = self.consume(py, 1, timeout)?;
        Ok(got.pop())
    }

    /// Up to `num_messages` messages, waiting up to `timeout` seconds for the first.
    #[pyo3(signature = (num_messages=500, timeout=None))]
    fn consume(&self, py: Python<'_>, num_messages: usize, timeout: Option<f64>) -> PyResult<Vec<Message>> {
        let limit = seconds(timeout)?;
        let c = self.inner.clone();
        let records = block(py, async move {
            loop {
                let wait = limit.unwrap_or(Duration::from_secs(1));
                let r = c.poll_records(wait, num_messages).await?;
                if !r.is_empty() || limit.is_some() {
                    return Ok::<_, samsa_client::Error>(r);
                }
            }
        })?
        .map_err(errors::client)?;
        Ok(records.into_iter().map(|r| Message::from_record(py, r)).collect())
    }

    fn __iter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Option<Message>> {
        self.poll(py, None)
    }

    /// Commits offsets: the positions after every message returned so far, or
    /// `offsets` (`{(topic, partition): next offset}`).
    #[pyo3(signature = (offsets=None))]
    fn commit(&self, py: Python<'_>, offsets: Option<BTreeMap<(String, i32), i64>>) -> PyResult<()> {
        let c = self.inner.clone();
        block(py, async move {
            match offsets {
                Some(o) => c.commit_offsets(&o.into_iter().map(|((t, p), off)| (TopicPartition::new(t, p), off)).collect()).await,
                None => c.commit().await,
            }
        })?
        .map_err(errors::client)
    }

    /// The group's committed offsets of these `(topic, partition)`s (None: none yet).
    fn committed(&self, py: Python<'_>, partitions: Vec<(String, i32)>) -> PyResult<BTreeMap<(String, i32), Option<i64>>> {
        let tps: Vec<TopicPartition> = partitions.into_iter().map(|(t, p)| TopicPartition::new(t, p)).collect();
        let c = self.inner.clone();
        let got = block(py, async move { c.committed(&tps).await })?.map_err(errors::client)?;
        Ok(got.into_iter().map(|(tp, o)| ((tp.topic, tp.partition), o)).collect())
    }

    /// Moves an assigned partition's position to `offset`.
    fn seek(&self, topic: String, partition: i32, offset: i64) -> PyResult<()> {
        let _rt = enter();
        self.inner.seek(&TopicPartition::new(topic, partition), offset).map_err(errors::client)
    }

    /// The offset of the next message this consumer will return from the partition.
    fn position(&self, py: Python<'_>, topic: String, partition: i32) -> PyResult<i64> {
        let c = self.inner.clone();
        block(py, async move { c.position(&TopicPartition::new(topic, partition)).await })?.map_err(errors::client)
    }

    /// Commits (with auto-commit on) and leaves the group.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let c = self.inner.clone();
        block(py, async move { c.close().await })?.map_err(errors::client)
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

/// Topic administration: `Admin(bootstrap).create_topic("t", partitions=3)`.
#[pyclass(module = "samsa._samsa", frozen)]
pub struct Admin {
    inner: InRt<Arc<samsa_client::Admin>>,
}

#[pymethods]
impl Admin {
    /// Connects to `bootstrap`.
    #[new]
    #[pyo3(signature = (bootstrap, config=None, **kwargs))]
    fn new(py: Python<'_>, bootstrap: &str, config: Option<&Bound<'_, PyDict>>, kwargs: Option<&Bound<'_, PyDict>>) -> PyResult<Self> {
        let mut ac = samsa_client::AdminConfig::default();
        ac.set("bootstrap.servers", bootstrap).map_err(errors::client)?;
        for (k, v) in properties(config, kwargs)? {
            ac.set(&k, &v).map_err(errors::client)?;
        }
        let inner = Arc::new(block(py, samsa_client::Admin::new(ac))?.map_err(errors::client)?);
        Ok(Admin { inner: InRt::new(inner) })
    }

    /// Creates a topic; `config` holds topic settings (`{"cleanup.policy": "compact"}`).
    #[pyo3(signature = (name, partitions=1, replication_factor=1, config=None))]
    fn create_topic(&self, py: Python<'_>, name: String, partitions: i32, replication_factor: i16, config: Option<BTreeMap<String, String>>) -> PyResult<()> {
        let mut t = samsa_client::admin::NewTopic::new(name, partitions, replication_factor);
        for (k, v) in config.unwrap_or_default() {
            t = t.config(k, v);
        }
        let a = self.inner.clone();
        block(py, async move { a.create_topics(&[t]).await })?.map_err(errors::client)
    }

    /// Deletes topics.
    fn delete_topics(&self, py: Python<'_>, names: Vec<String>) -> PyResult<()> {
        let a = self.inner.clone();
        block(py, async move { a.delete_topics(&names).await })?.map_err(errors::client)
    }

    /// The names of the cluster's topics (internal ones too with `internal=True`).
    #[pyo3(signature = (internal=false))]
    fn list_topics(&self, py: Python<'_>, internal: bool) -> PyResult<Vec<String>> {
        let a = self.inner.clone();
        block(py, async move { a.list_topics(internal).await })?.map_err(errors::client)
    }

    /// The number of partitions of each named topic.
    fn partitions(&self, py: Python<'_>, names: Vec<String>) -> PyResult<BTreeMap<String, usize>> {
        let a = self.inner.clone();
        let infos = block(py, async move { a.describe_topics(&names).await })?.map_err(errors::client)?;
        Ok(infos.into_iter().map(|t| (t.name.clone(), t.partitions.len())).collect())
    }

    /// Offsets of partitions, `{(topic, partition): offset}`: `spec` "latest" (the end; the
    /// last stable offset under `isolation_level="read_committed"`), "earliest", or a
    /// timestamp in ms (the first offset at or after it).
    #[pyo3(signature = (partitions, spec=None, isolation_level="read_uncommitted"))]
    fn list_offsets(&self, py: Python<'_>, partitions: Vec<(String, i32)>, spec: Option<&Bound<'_, PyAny>>, isolation_level: &str) -> PyResult<BTreeMap<(String, i32), i64>> {
        use samsa_client::admin::OffsetSpec;
        let spec = if let Some(ms) = spec.and_then(|s| s.extract::<i64>().ok()) {
            OffsetSpec::Timestamp(ms)
        } else if let Some(s) = spec {
            match s.extract::<String>()?.as_str() {
                "latest" => OffsetSpec::Latest,
                "earliest" => OffsetSpec::Earliest,
                other => return Err(errors::config(format!("offset spec `{other}`: use \"latest\", \"earliest\" or a timestamp in ms"))),
            }
        } else {
            OffsetSpec::Latest
        };
        let level = match isolation_level {
            "read_uncommitted" => samsa_client::IsolationLevel::ReadUncommitted,
            "read_committed" => samsa_client::IsolationLevel::ReadCommitted,
            other => return Err(errors::config(format!("isolation_level `{other}`: use \"read_uncommitted\" or \"read_committed\""))),
        };
        let tps: Vec<TopicPartition> = partitions.into_iter().map(|(t, p)| TopicPartition::new(t, p)).collect();
        let a = self.inner.clone();
        let got = block(py, async move { a.list_offsets_isolated(&tps, spec, level).await })?.map_err(errors::client)?;
        Ok(got.into_iter().map(|(tp, (off, _))| ((tp.topic, tp.partition), off)).collect())
    }

    /// The committed offsets of a consumer group, `{(topic, partition): offset}`.
    fn group_offsets(&self, py: Python<'_>, group: String) -> PyResult<BTreeMap<(String, i32), i64>> {
        let a = self.inner.clone();
        let got = block(py, async move { a.list_group_offsets(&group).await })?.map_err(errors::client)?;
        Ok(got.into_iter().map(|(tp, o)| ((tp.topic, tp.partition), o)).collect())
    }
}
