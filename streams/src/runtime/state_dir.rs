//! The local state directory: `<state.dir>/<application.id>/` holds this instance's
//! process id (stable across restarts, so a restarted instance reuses its transactional
//! ids and fences its former self), a lock against two instances sharing it, and one
//! directory per task with one subdirectory per store.

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::topology::TaskId;

/// An application's state directory, locked for this process.
pub(crate) struct StateDir {
    pub root: PathBuf,
    pub process_id: String,
    _lock: File,
}

impl StateDir {
    pub(crate) fn open(state_dir: &Path, app_id: &str) -> Result<StateDir> {
        let root = state_dir.join(app_id);
        fs::create_dir_all(&root).map_err(|e| Error::io(format!("creating the state directory {}", root.display()), e))?;
        let lock_path = root.join(".lock");
        let lock = File::create(&lock_path).map_err(|e| Error::io(format!("creating {}", lock_path.display()), e))?;
        lock.try_lock().map_err(|_| {
            Error::State(format!(
                "the state directory {} is in use by another instance of `{app_id}`; give each instance its own `state.dir`",
                root.display()
            ))
        })?;
        let id_path = root.join("process-id");
        let process_id = match fs::read_to_string(&id_path) {
            Ok(s) if !s.trim().is_empty() => s.trim().to_string(),
            _ => {
                let id = uuid::Uuid::new_v4().to_string();
                let tmp = root.join("process-id.tmp");
                fs::write(&tmp, &id).and_then(|_| fs::rename(&tmp, &id_path)).map_err(|e| Error::io(format!("writing {}", id_path.display()), e))?;
                id
            }
        };
        Ok(StateDir { root, process_id, _lock: lock })
    }

    /// The directory of one store of one task.
    pub(crate) fn store_dir(&self, task: TaskId, store: &str) -> PathBuf {
        self.root.join(task.to_string()).join(store)
    }

    /// Tasks that have a directory here (state that may be reused).
    pub(crate) fn local_tasks(&self) -> Vec<TaskId> {
        let Ok(rd) = fs::read_dir(&self.root) else { return Vec::new() };
        rd.filter_map(|e| e.ok()).filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok())).collect()
    }
}
