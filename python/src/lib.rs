//! The native half of the `samsa` Python package (`samsa._samsa`), built by maturin.
//!
//! Everything here wraps the Rust crates: [`broker::EmbeddedBroker`] runs a broker and the
//! SQL engine in-process, [`client`] holds the producer, consumer and admin client, and
//! [`streams`] runs Python callables on Samsa's streams engine. The Python side
//! (`python/samsa/`) adds the friendly surface: exceptions, `samsa.sql`, pyarrow results,
//! and the asyncio flavour.
//!
//! Two rules hold throughout: a blocking call never holds the GIL while it waits (it runs
//! on the shared Tokio runtime through [`block`], which also lets Ctrl-C interrupt it), and
//! no Rust error or panic reaches Python as anything but a `samsa.SamsaError`.

use std::future::Future;
use std::sync::OnceLock;
use std::time::Duration;

use pyo3::prelude::*;

mod broker;
mod client;
mod errors;
mod streams;

/// The Tokio runtime every client and embedded broker of this process runs on.
pub(crate) fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("samsa-io")
            .enable_all()
            .build()
            .expect("the Tokio runtime starts (threads and an epoll instance)")
    })
}

/// A value whose drop may touch Tokio (abort or spawn tasks): dropped inside the
/// runtime's context, since Python drops objects on its own threads. Its synchronous
/// methods that spawn tasks are called after [`enter`].
pub(crate) struct InRt<T>(Option<T>);

impl<T> InRt<T> {
    /// Wraps `value`.
    pub(crate) fn new(value: T) -> InRt<T> {
        InRt(Some(value))
    }
}

impl<T> std::ops::Deref for InRt<T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.0.as_ref().expect("present until dropped")
    }
}

/// Enters the runtime's context (for synchronous client calls that spawn tasks).
pub(crate) fn enter() -> tokio::runtime::EnterGuard<'static> {
    runtime().enter()
}

impl<T> Drop for InRt<T> {
    fn drop(&mut self) {
        let _g = runtime().enter();
        drop(self.0.take());
    }
}

/// How often a blocking call wakes up to look for Ctrl-C.
const SIGNAL_CHECK: Duration = Duration::from_millis(100);

/// Runs `fut` to completion without the GIL; every [`SIGNAL_CHECK`] it takes the GIL back
/// for a moment to let a pending Ctrl-C (or other signal handler) raise, which drops `fut`.
pub(crate) fn block<F, T>(py: Python<'_>, fut: F) -> PyResult<T>
where
    F: Future<Output = T> + Send,
    T: Send,
{
    if tokio::runtime::Handle::try_current().is_ok() {
        // Called from a callback running on a Samsa thread (a delivery callback, a
        // rebalance callback, a streams callable): waiting here would stall that thread.
        return Err(errors::other(
            "this Samsa call waits, and cannot run inside a callback on a Samsa thread (add_done_callback, on_assign/on_revoke, a streams callable); call it from your own thread",
        ));
    }
    let mut fut = std::pin::pin!(fut);
    loop {
        let slice = py.detach(|| runtime().block_on(async { tokio::time::timeout(SIGNAL_CHECK, fut.as_mut()).await }));
        match slice {
            Ok(v) => return Ok(v),
            Err(_) => py.check_signals()?,
        }
    }
}

/// Optional seconds (Python's convention for timeouts) as a duration; `None` is "forever".
pub(crate) fn seconds(timeout: Option<f64>) -> PyResult<Option<Duration>> {
    match timeout {
        None => Ok(None),
        Some(t) if t.is_finite() && t >= 0.0 => Ok(Some(Duration::from_secs_f64(t))),
        Some(t) => Err(errors::config(format!("timeout must be a number of seconds >= 0, got {t}"))),
    }
}

/// Sends Samsa's logs to stderr when `RUST_LOG` is set (e.g. `RUST_LOG=info`), as the
/// `samsa` binary does; silent otherwise.
fn init_logging() {
    if let Ok(filter) = tracing_subscriber::EnvFilter::try_from_default_env() {
        let _ = tracing_subscriber::fmt().with_writer(std::io::stderr).with_env_filter(filter).try_init();
    }
}

/// The `samsa._samsa` module.
#[pymodule]
fn _samsa(m: &Bound<'_, PyModule>) -> PyResult<()> {
    init_logging();
    m.add_class::<broker::EmbeddedBroker>()?;
    m.add_class::<broker::SqlStream>()?;
    m.add_class::<client::Producer>()?;
    m.add_class::<client::DeliveryFuture>()?;
    m.add_class::<client::RecordMetadata>()?;
    m.add_class::<client::Consumer>()?;
    m.add_class::<client::Message>()?;
    m.add_class::<client::Admin>()?;
    m.add_class::<streams::StreamsApp>()?;
    m.add_class::<streams::Stream>()?;
    m.add_class::<streams::Table>()?;
    m.add_class::<streams::GroupedStream>()?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
