//! Source offsets of a standalone worker, in a local JSON file
//! (`offset.storage.file.filename`): per connector, each source partition's latest offset.
//! Written whole to a temporary file, synced, then renamed over the old one, so a crash
//! leaves either the old or the new offsets.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde_json::Value as Json;

use crate::api::OffsetReader;
use crate::{Error, Result};

/// Offsets by connector, then by source partition (its JSON text).
type Offsets = BTreeMap<String, BTreeMap<String, Json>>;

/// The offsets file.
pub struct FileOffsetStore {
    path: PathBuf,
    offsets: Mutex<Offsets>,
}

impl FileOffsetStore {
    /// Opens (or starts) the file at `path`.
    pub fn open(path: &Path) -> Result<FileOffsetStore> {
        let offsets = match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| Error::Config(format!("the offsets file {} is not Samsa's JSON offsets: {e}; move it away to start over", path.display())))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Offsets::new(),
            Err(e) => return Err(Error::Config(format!("cannot read the offsets file {}: {e}", path.display()))),
        };
        Ok(FileOffsetStore { path: path.to_path_buf(), offsets: Mutex::new(offsets) })
    }

    /// A connector's view, for its tasks to resume from.
    pub fn reader(&self, connector: &str) -> ConnectorOffsets {
        let map = self.offsets.lock().unwrap().get(connector).cloned().unwrap_or_default();
        ConnectorOffsets(map)
    }

    /// Records offsets of `connector` and writes the file.
    pub fn store(&self, connector: &str, offsets: impl IntoIterator<Item = (Json, Json)>) -> Result<()> {
        let snapshot = {
            let mut all = self.offsets.lock().unwrap();
            let mine = all.entry(connector.to_string()).or_default();
            for (partition, offset) in offsets {
                mine.insert(partition.to_string(), offset);
            }
            serde_json::to_vec_pretty(&*all).map_err(|e| Error::Task(e.to_string()))?
        };
        let tmp = self.path.with_extension("tmp");
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            std::io::Write::write_all(&mut f, &snapshot)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &self.path)
        };
        write().map_err(|e| Error::Task(format!("cannot write the offsets file {}: {e}", self.path.display())))
    }
}

#[async_trait::async_trait]
impl crate::runtime::OffsetStore for FileOffsetStore {
    async fn reader(&self, connector: &str) -> Result<Box<dyn OffsetReader>> {
        Ok(Box::new(FileOffsetStore::reader(self, connector)))
    }

    async fn store(&self, connector: &str, offsets: Vec<(Json, Json)>) -> Result<()> {
        FileOffsetStore::store(self, connector, offsets)
    }
}

/// One connector's stored offsets.
pub struct ConnectorOffsets(BTreeMap<String, Json>);

impl OffsetReader for ConnectorOffsets {
    fn offset(&self, partition: &Json) -> Option<Json> {
        self.0.get(&partition.to_string()).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn offsets_survive_reopening_and_stay_apart_per_connector() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("connect.offsets");
        let store = FileOffsetStore::open(&path).unwrap();
        store.store("a", [(json!({"filename": "x"}), json!({"position": 3}))]).unwrap();
        store.store("a", [(json!({"filename": "x"}), json!({"position": 9}))]).unwrap();
        store.store("b", [(json!({"filename": "x"}), json!({"position": 1}))]).unwrap();
        let again = FileOffsetStore::open(&path).unwrap();
        assert_eq!(again.reader("a").offset(&json!({"filename": "x"})), Some(json!({"position": 9})));
        assert_eq!(again.reader("b").offset(&json!({"filename": "x"})), Some(json!({"position": 1})));
        assert_eq!(again.reader("c").offset(&json!({"filename": "x"})), None);
        std::fs::write(&path, "garbage").unwrap();
        assert!(FileOffsetStore::open(&path).err().unwrap().to_string().contains("move it away"));
    }
}
