//! openraft storage for the metadata log: a file-backed Raft log and the state machine that
//! applies commands to the [`Image`].
//!
//! ```text
//! <data>/raft/vote.json      the last vote (replaced atomically)
//! <data>/raft/log            length-prefixed JSON entries since the last purge
//! <data>/raft/purged.json    id of the last purged entry
//! <data>/raft/snapshot.json  the last snapshot: meta + image
//! ```
//!
//! The metadata log is small (a few records per topic or broker change), so the whole
//! unpurged log lives in memory and the file is rewritten on truncate/purge. Appends are
//! fsynced before openraft is told they are durable. The state machine itself is kept in
//! memory and restored from the snapshot at start; openraft re-applies the committed
//! entries after it.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io::{Cursor, Write};
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage, RaftStateMachine, Snapshot};
use openraft::{
    BasicNode, Entry, EntryPayload, LogId, RaftLogReader, RaftSnapshotBuilder, SnapshotMeta, StorageError, StorageIOError,
    StoredMembership, Vote,
};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::image::{Image, Outcome};
use super::TypeConfig;

type NodeId = u64;
type StorageResult<T> = Result<T, StorageError<NodeId>>;

/// Largest log entry accepted when reading the file back (a corrupt length stops there).
const MAX_ENTRY_BYTES: usize = 64 << 20;

fn io_err(e: impl std::fmt::Display) -> StorageError<NodeId> {
    StorageIOError::write_logs(&std::io::Error::other(e.to_string())).into()
}

/// Writes `bytes` to `path` atomically: temp file, fsync, rename, fsync of the directory.
fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> std::io::Result<Option<T>> {
    match std::fs::read(path) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

#[derive(Default)]
struct LogInner {
    entries: BTreeMap<u64, Entry<TypeConfig>>,
    last_purged: Option<LogId<NodeId>>,
}

/// The Raft log: entries in memory, mirrored to `<dir>/log`.
#[derive(Clone)]
pub struct LogStore {
    dir: PathBuf,
    inner: Arc<Mutex<LogInner>>,
}

impl LogStore {
    /// Opens the log in `dir`, reading back every whole entry (a torn last entry is dropped).
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let mut inner = LogInner { last_purged: read_json(&dir.join("purged.json"))?, ..Default::default() };
        let bytes = match std::fs::read(dir.join("log")) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        let mut pos = 0;
        while pos + 4 <= bytes.len() {
            let len = u32::from_be_bytes(bytes[pos..pos + 4].try_into().expect("4 bytes")) as usize;
            if len > MAX_ENTRY_BYTES || pos + 4 + len > bytes.len() {
                break;
            }
            match serde_json::from_slice::<Entry<TypeConfig>>(&bytes[pos + 4..pos + 4 + len]) {
                Ok(e) => {
                    inner.entries.insert(e.log_id.index, e);
                }
                Err(_) => break,
            }
            pos += 4 + len;
        }
        if pos < bytes.len() {
            tracing::warn!(dir = %dir.display(), dropped_bytes = bytes.len() - pos, "metadata log: dropped a torn tail");
        }
        let store = Self { dir: dir.to_path_buf(), inner: Arc::new(Mutex::new(inner)) };
        if pos < bytes.len() {
            store.rewrite(&store.inner.lock().expect("log lock"))?;
        }
        Ok(store)
    }

    fn frame(e: &Entry<TypeConfig>) -> std::io::Result<Vec<u8>> {
        let json = serde_json::to_vec(e).map_err(std::io::Error::other)?;
        let mut out = Vec::with_capacity(json.len() + 4);
        out.extend_from_slice(&(json.len() as u32).to_be_bytes());
        out.extend_from_slice(&json);
        Ok(out)
    }

    fn rewrite(&self, inner: &LogInner) -> std::io::Result<()> {
        let mut all = Vec::new();
        for e in inner.entries.values() {
            all.extend_from_slice(&Self::frame(e)?);
        }
        write_atomic(&self.dir.join("log"), &all)
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(&mut self, range: RB) -> StorageResult<Vec<Entry<TypeConfig>>> {
        let inner = self.inner.lock().expect("log lock");
        Ok(inner.entries.range(range).map(|(_, e)| e.clone()).collect())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> StorageResult<LogState<TypeConfig>> {
        let inner = self.inner.lock().expect("log lock");
        let last = inner.entries.values().next_back().map(|e| e.log_id).or(inner.last_purged);
        Ok(LogState { last_purged_log_id: inner.last_purged, last_log_id: last })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> StorageResult<()> {
        let bytes = serde_json::to_vec(vote).map_err(io_err)?;
        write_atomic(&self.dir.join("vote.json"), &bytes).map_err(|e| StorageIOError::write_vote(&e).into())
    }

    async fn read_vote(&mut self) -> StorageResult<Option<Vote<NodeId>>> {
        read_json(&self.dir.join("vote.json")).map_err(|e| StorageIOError::read_vote(&e).into())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> StorageResult<()>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let result = (|| -> std::io::Result<()> {
            let mut inner = self.inner.lock().expect("log lock");
            let mut buf = Vec::new();
            for e in entries {
                buf.extend_from_slice(&Self::frame(&e)?);
                inner.entries.insert(e.log_id.index, e);
            }
            let mut f = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.join("log"))?;
            f.write_all(&buf)?;
            f.sync_data()
        })();
        let failed = result.as_ref().err().map(io_err);
        callback.log_io_completed(result);
        failed.map_or(Ok(()), Err)
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> StorageResult<()> {
        let mut inner = self.inner.lock().expect("log lock");
        inner.entries.split_off(&log_id.index);
        self.rewrite(&inner).map_err(io_err)
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> StorageResult<()> {
        let mut inner = self.inner.lock().expect("log lock");
        let keep = inner.entries.split_off(&(log_id.index + 1));
        inner.entries = keep;
        inner.last_purged = Some(log_id);
        let bytes = serde_json::to_vec(&log_id).map_err(io_err)?;
        write_atomic(&self.dir.join("purged.json"), &bytes).map_err(io_err)?;
        self.rewrite(&inner).map_err(io_err)
    }
}

/// What a snapshot file holds.
#[derive(Serialize, Deserialize, Clone)]
struct StoredSnapshot {
    meta: SnapshotMeta<NodeId, BasicNode>,
    image: Image,
}

struct MachineInner {
    image: Image,
    last_applied: Option<LogId<NodeId>>,
    membership: StoredMembership<NodeId, BasicNode>,
    snapshot: Option<StoredSnapshot>,
}

/// The metadata state machine: the [`Image`], published to the broker after every apply.
#[derive(Clone)]
pub struct StateMachine {
    dir: PathBuf,
    inner: Arc<Mutex<MachineInner>>,
    published: watch::Sender<Arc<Image>>,
}

impl StateMachine {
    /// Opens the state machine, restoring the last snapshot from `dir`.
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        let snapshot: Option<StoredSnapshot> = read_json(&dir.join("snapshot.json"))?;
        let (image, last_applied, membership) = match &snapshot {
            Some(s) => (s.image.clone(), s.meta.last_log_id, s.meta.last_membership.clone()),
            None => (Image::default(), None, StoredMembership::default()),
        };
        let (published, _) = watch::channel(Arc::new(image.clone()));
        Ok(Self { dir: dir.to_path_buf(), inner: Arc::new(Mutex::new(MachineInner { image, last_applied, membership, snapshot })), published })
    }

    /// A receiver of every new image.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Image>> {
        self.published.subscribe()
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> StorageResult<Snapshot<TypeConfig>> {
        let stored = {
            let inner = self.inner.lock().expect("sm lock");
            let id = inner.last_applied.map(|l| format!("{}-{}", l.leader_id, l.index)).unwrap_or_else(|| "empty".into());
            StoredSnapshot {
                meta: SnapshotMeta { last_log_id: inner.last_applied, last_membership: inner.membership.clone(), snapshot_id: id },
                image: inner.image.clone(),
            }
        };
        let bytes = serde_json::to_vec(&stored).map_err(io_err)?;
        write_atomic(&self.dir.join("snapshot.json"), &bytes).map_err(io_err)?;
        self.inner.lock().expect("sm lock").snapshot = Some(stored.clone());
        Ok(Snapshot { meta: stored.meta, snapshot: Box::new(Cursor::new(bytes)) })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> StorageResult<(Option<LogId<NodeId>>, StoredMembership<NodeId, BasicNode>)> {
        let inner = self.inner.lock().expect("sm lock");
        Ok((inner.last_applied, inner.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> StorageResult<Vec<Outcome>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let mut out = Vec::new();
        let image = {
            let mut inner = self.inner.lock().expect("sm lock");
            for e in entries {
                inner.last_applied = Some(e.log_id);
                out.push(match e.payload {
                    EntryPayload::Blank => Outcome::Done,
                    EntryPayload::Normal(cmd) => inner.image.apply(&cmd),
                    EntryPayload::Membership(m) => {
                        inner.membership = StoredMembership::new(Some(e.log_id), m);
                        Outcome::Done
                    }
                });
                inner.image.applied_index = e.log_id.index;
            }
            Arc::new(inner.image.clone())
        };
        self.published.send_replace(image);
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> StorageResult<Box<Cursor<Vec<u8>>>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(&mut self, meta: &SnapshotMeta<NodeId, BasicNode>, snapshot: Box<Cursor<Vec<u8>>>) -> StorageResult<()> {
        let bytes = snapshot.into_inner();
        let mut stored: StoredSnapshot = serde_json::from_slice(&bytes).map_err(io_err)?;
        stored.meta = meta.clone();
        write_atomic(&self.dir.join("snapshot.json"), &serde_json::to_vec(&stored).map_err(io_err)?).map_err(io_err)?;
        let image = {
            let mut inner = self.inner.lock().expect("sm lock");
            inner.image = stored.image.clone();
            inner.image.applied_index = meta.last_log_id.map(|l| l.index).unwrap_or(0);
            inner.last_applied = meta.last_log_id;
            inner.membership = meta.last_membership.clone();
            inner.snapshot = Some(stored);
            Arc::new(inner.image.clone())
        };
        self.published.send_replace(image);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> StorageResult<Option<Snapshot<TypeConfig>>> {
        let inner = self.inner.lock().expect("sm lock");
        let Some(s) = &inner.snapshot else { return Ok(None) };
        let bytes = serde_json::to_vec(s).map_err(io_err)?;
        Ok(Some(Snapshot { meta: s.meta.clone(), snapshot: Box::new(Cursor::new(bytes)) }))
    }
}
