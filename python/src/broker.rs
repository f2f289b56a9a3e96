//! `EmbeddedBroker`: a single-node broker and the SQL engine, running in this process.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use futures::stream::{BoxStream, StreamExt};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};
use samsa_broker::{Broker, BrokerConfig, BrokerOptions};
use samsa_sql::arrow::array::RecordBatch;
use samsa_sql::arrow::datatypes::SchemaRef;
use samsa_sql::http::{ipc_bytes, LazyEngine};
use samsa_sql::{EngineConfig, Output};

use crate::{block, errors};

struct Running {
    broker: Broker,
    engine: LazyEngine,
    /// The data dir when the broker made its own (removed on close).
    _temp: Option<tempfile::TempDir>,
}

/// A single-node Kafka-compatible broker running inside this Python process, with the SQL
/// engine beside it.
#[pyclass(module = "samsa._samsa")]
pub struct EmbeddedBroker {
    running: Mutex<Option<Running>>,
    bootstrap: String,
    data_dir: PathBuf,
}

#[pymethods]
impl EmbeddedBroker {
    /// Starts the broker on a free loopback port; `data_dir=None` uses a temporary
    /// directory removed by `close()`. `config` holds broker settings by their Kafka names.
    #[new]
    #[pyo3(signature = (data_dir=None, port=0, config=None))]
    fn new(py: Python<'_>, data_dir: Option<PathBuf>, port: u16, config: Option<&Bound<'_, PyDict>>) -> PyResult<Self> {
        let mut bc = BrokerConfig::default();
        if let Some(cfg) = config {
            for (k, v) in cfg.iter() {
                let (k, v) = (k.str()?.to_string(), v.str()?.to_string());
                bc.set(&k, &v).map_err(|e| errors::config(e.to_string()))?;
            }
        }
        let (dir, temp) = match data_dir {
            Some(d) => (d, None),
            None => {
                let t = tempfile::Builder::new().prefix("samsa-embedded-").tempdir().map_err(|e| errors::other(format!("cannot make a temporary data dir: {e}")))?;
                (t.path().to_path_buf(), Some(t))
            }
        };
        let opts = BrokerOptions { data_dir: dir.clone(), listen: format!("127.0.0.1:{port}"), node_id: 1, controller_listen: None, voters: Default::default(), config: bc };
        let broker = block(py, Broker::start(opts))?.map_err(|e| errors::other(format!("the embedded broker did not start in {}: {e}", dir.display())))?;
        let bootstrap = broker.local_addr().to_string();
        let engine = LazyEngine::new(EngineConfig { bootstrap: bootstrap.clone(), state_dir: dir.join("sql"), run_queries: true });
        Ok(EmbeddedBroker { running: Mutex::new(Some(Running { broker, engine, _temp: temp })), bootstrap, data_dir: dir })
    }

    /// `"127.0.0.1:PORT"`, for any Kafka client's `bootstrap.servers`.
    #[getter]
    fn bootstrap(&self) -> String {
        self.bootstrap.clone()
    }

    /// The directory holding the broker's logs and metadata.
    #[getter]
    fn data_dir(&self) -> String {
        self.data_dir.display().to_string()
    }

    /// Runs one SQL statement on the in-process engine. Returns `("rows", ipc_bytes)` for
    /// a bounded result or `("stream", SqlStream)` for `EMIT CHANGES`.
    fn _sql(&self, py: Python<'_>, query: &str) -> PyResult<(&'static str, Py<PyAny>)> {
        let engine = self.running.lock().unwrap().as_ref().map(|r| r.engine.clone()).ok_or_else(|| errors::other("the embedded broker is closed"))?;
        let out = block(py, async move {
            let engine = engine.start().await?;
            engine.execute(query).await
        })?
        .map_err(errors::sql)?;
        match out {
            Output::Rows { schema, batches, message } => {
                let bytes = ipc_bytes(&schema, &batches, message.as_deref()).map_err(errors::sql)?;
                Ok(("rows", PyBytes::new(py, &bytes).into_any().unbind()))
            }
            Output::Continuous { schema, stream } => {
                let s = SqlStream { schema, stream: Arc::new(tokio::sync::Mutex::new(Some(stream))), closed: tokio::sync::watch::channel(false).0 };
                Ok(("stream", Py::new(py, s)?.into_any()))
            }
        }
    }

    /// Stops the SQL engine's queries and the broker (flushing its logs); idempotent.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let Some(r) = self.running.lock().unwrap().take() else { return Ok(()) };
        block(py, async move {
            if let Some(engine) = r.engine.get() {
                let _ = tokio::time::timeout(std::time::Duration::from_secs(20), engine.close()).await;
            }
            r.broker.shutdown().await;
            drop(r._temp);
        })
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, py: Python<'_>, _args: &Bound<'_, pyo3::types::PyTuple>) -> PyResult<bool> {
        self.close(py)?;
        Ok(false)
    }

    fn __repr__(&self) -> String {
        format!("EmbeddedBroker(bootstrap='{}', data_dir='{}')", self.bootstrap, self.data_dir.display())
    }
}

impl Drop for EmbeddedBroker {
    /// A broker that was never closed stops with the process; its tasks are dropped
    /// inside the runtime's context.
    fn drop(&mut self) {
        if let Some(r) = self.running.lock().unwrap().take() {
            let _rt = crate::enter();
            drop(r);
        }
    }
}

/// The batches of a continuous (`EMIT CHANGES`) result as they arrive; each item is one
/// batch as Arrow IPC bytes. Dropping or closing it stops the query.
#[pyclass(module = "samsa._samsa")]
pub struct SqlStream {
    schema: SchemaRef,
    stream: Arc<tokio::sync::Mutex<Option<BoxStream<'static, samsa_sql::Result<RecordBatch>>>>>,
    /// Set by `close()`: a `_next` waiting in another thread (or starting later) ends.
    closed: tokio::sync::watch::Sender<bool>,
}

#[pymethods]
impl SqlStream {
    /// The result's schema as Arrow IPC bytes (a stream with no batches).
    fn _schema(&self, py: Python<'_>) -> PyResult<Py<PyBytes>> {
        let bytes = ipc_bytes(&self.schema, &[], None).map_err(errors::sql)?;
        Ok(PyBytes::new(py, &bytes).unbind())
    }

    /// The next non-empty batch as Arrow IPC bytes, waiting for it (`timeout` seconds at
    /// most: then `None`); raises `StopIteration` when the query ends.
    #[pyo3(signature = (timeout=None))]
    fn _next(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Option<Py<PyBytes>>> {
        let limit = crate::seconds(timeout)?;
        let stream = self.stream.clone();
        let (mut on_close, mut on_close2) = (self.closed.subscribe(), self.closed.subscribe());
        let got = block(py, async move {
            let mut guard = tokio::select! {
                g = stream.lock() => g,
                _ = on_close.wait_for(|c| *c) => return Ok(Err(())),
            };
            let Some(s) = guard.as_mut() else { return Ok(Err(())) };
            let next = async {
                loop {
                    match s.next().await {
                        Some(Ok(b)) if b.num_rows() == 0 => continue,
                        other => return other,
                    }
                }
            };
            let bounded = async {
                match limit {
                    Some(d) => tokio::time::timeout(d, next).await.ok(),
                    None => Some(next.await),
                }
            };
            let item = tokio::select! {
                i = bounded => match i {
                    Some(i) => i,
                    None => return Ok(Ok(None)),
                },
                _ = on_close2.wait_for(|c| *c) => None,
            };
            match item {
                None => {
                    *guard = None;
                    Ok(Err(()))
                }
                Some(Ok(b)) => Ok(Ok(Some(b))),
                Some(Err(e)) => {
                    *guard = None;
                    Err(e)
                }
            }
        })?
        .map_err(errors::sql)?;
        match got {
            Err(()) => Err(pyo3::exceptions::PyStopIteration::new_err(())),
            Ok(None) => Ok(None),
            Ok(Some(batch)) => {
                let bytes = ipc_bytes(&self.schema, &[batch], None).map_err(errors::sql)?;
                Ok(Some(PyBytes::new(py, &bytes).unbind()))
            }
        }
    }

    /// Stops the query (a `_next` waiting in another thread ends).
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        self.closed.send_replace(true);
        let stream = self.stream.clone();
        block(py, async move {
            stream.lock().await.take();
        })
    }
}
