//! Per-task counters of a Connect worker for `GET /metrics`: records a task wrote (a
//! source: acknowledged by the brokers; a sink: put into its target) and records that
//! failed in a stage (each one the error policy handled, tolerated or not).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use samsa_client::prom::{Exposition, Kind};

/// The counters of one task.
#[derive(Debug, Default)]
pub struct TaskCounters {
    /// Records written (source: acknowledged; sink: put).
    pub records: AtomicU64,
    /// Records that failed in a stage.
    pub errors: AtomicU64,
}

/// A task's (connector, task number) and its (kind, counters).
type Tasks = BTreeMap<(String, usize), (&'static str, Arc<TaskCounters>)>;

/// The counters of every task this worker has run, by (connector, task, kind).
#[derive(Debug, Default)]
pub struct ConnectMetrics {
    tasks: Mutex<Tasks>,
}

impl ConnectMetrics {
    /// The counters of task `id` of `connector` (`kind`: "source" or "sink"); a restarted
    /// task goes on counting where it was.
    pub fn task(&self, connector: &str, id: usize, kind: &'static str) -> Arc<TaskCounters> {
        let mut tasks = self.tasks.lock().expect("metrics lock");
        tasks.entry((connector.to_string(), id)).or_insert_with(|| (kind, Arc::default())).1.clone()
    }

    /// Forgets a deleted connector's tasks.
    pub fn remove(&self, connector: &str) {
        self.tasks.lock().expect("metrics lock").retain(|(c, _), _| c != connector);
    }

    /// Writes the counters into `e`.
    pub fn write(&self, e: &mut Exposition) {
        e.family("samsa_connect_task_records_total", Kind::Counter, "Records a connector task wrote: a source's acknowledged by the brokers, a sink's put.");
        e.family("samsa_connect_task_errors_total", Kind::Counter, "Records that failed in a connector task's stage (converter, transform, put, produce).");
        for ((connector, id), (kind, c)) in self.tasks.lock().expect("metrics lock").iter() {
            let id = id.to_string();
            let labels = [("connector", connector.as_str()), ("task", id.as_str()), ("type", *kind)];
            e.counter("samsa_connect_task_records_total", "", &labels, c.records.load(Ordering::Relaxed) as f64);
            e.counter("samsa_connect_task_errors_total", "", &labels, c.errors.load(Ordering::Relaxed) as f64);
        }
    }
}
