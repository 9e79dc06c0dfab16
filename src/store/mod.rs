//! The durable store: one sled database in `<data-dir>/store`, one tree per concern, a versioned
//! schema with migrations. This is the only module that touches sled; callers see typed JSON
//! values, atomic multi-tree batches and an explicit `flush` that must precede every
//! acknowledgement (sled loses unflushed writes on kill -9).

mod migrations;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

pub use migrations::{version as schema_version, SCHEMA_VERSION};

/// sled's page cache; small, because the working set is a few lanes and their recent events.
const CACHE_CAPACITY_BYTES: u64 = 8 * 1024 * 1024;

/// sled's background flush is its only fsync; this bounds what a power loss can take.
const FLUSH_EVERY_MS: u64 = 500;

/// Named trees. Adding one is a schema change only if existing data moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tree {
    /// Schema version and small singletons.
    Meta,
    /// job id → job record.
    Jobs,
    /// lane id ‖ 0 ‖ order key → job id: what is waiting, in order.
    LaneQueue,
    /// lane id → lane record (runner session, settings).
    Lanes,
    /// job id ‖ 0 ‖ seq → cursor: each job's events in order.
    Events,
    /// cursor → event: every event of every job in emission order, so a sink can resume from
    /// the last cursor it saw (after lagging behind, or after a restart).
    EventLog,
    /// request id → pending permission or question.
    Interactions,
    /// workspace id → registered project directory.
    Workspaces,
    /// task id → scheduled task.
    Tasks,
    /// Adapter-owned durable maps (mesh outbox, Discord channel ↔ directory, …), keyed by a
    /// namespace prefix the adapter owns.
    Adapter,
}

impl Tree {
    pub const ALL: [Tree; 10] = [
        Tree::Meta,
        Tree::Jobs,
        Tree::LaneQueue,
        Tree::Lanes,
        Tree::Events,
        Tree::EventLog,
        Tree::Interactions,
        Tree::Workspaces,
        Tree::Tasks,
        Tree::Adapter,
    ];

    fn name(self) -> &'static str {
        match self {
            Tree::Meta => "meta",
            Tree::Jobs => "jobs",
            Tree::LaneQueue => "lane_queue",
            Tree::Lanes => "lanes",
            Tree::Events => "events",
            Tree::EventLog => "event_log",
            Tree::Interactions => "interactions",
            Tree::Workspaces => "workspaces",
            Tree::Tasks => "tasks",
            Tree::Adapter => "adapter",
        }
    }

    fn index(self) -> usize {
        match self {
            Tree::Meta => 0,
            Tree::Jobs => 1,
            Tree::LaneQueue => 2,
            Tree::Lanes => 3,
            Tree::Events => 4,
            Tree::EventLog => 5,
            Tree::Interactions => 6,
            Tree::Workspaces => 7,
            Tree::Tasks => 8,
            Tree::Adapter => 9,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the store at {path} is in use by another process (is kimaki already running for this data dir?)")]
    Locked { path: PathBuf },
    #[error("the store at {path} is corrupt or unreadable ({detail}). Move it aside (`mv {path} {path}.broken`) and start again; kimaki then starts with an empty queue")]
    Corrupt { path: PathBuf, detail: String },
    #[error("the store at {path} has schema version {found}, newer than this kimaki understands ({supported}); upgrade kimaki or use another --data-dir")]
    NewerSchema {
        path: PathBuf,
        found: u32,
        supported: u32,
    },
    #[error("store I/O error at {path}: {detail}")]
    Io { path: PathBuf, detail: String },
    /// A write failed (a full disk, most often); sled refuses every later write, so kimaki
    /// does too, at once, instead of hanging. What was acknowledged before is on disk.
    #[error("the store at {path} can no longer write ({detail}); work acknowledged before is safe on disk. Fix the cause (usually a full disk: free some space), then restart kimaki")]
    Unwritable { path: PathBuf, detail: String },
    #[error("cannot encode a value for tree {tree}: {detail}")]
    Encode { tree: &'static str, detail: String },
    #[error("cannot decode a value in tree {tree}: {detail}")]
    Decode { tree: &'static str, detail: String },
    #[error("migration to schema {to} failed: {detail}")]
    Migration { to: u32, detail: String },
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// One write in a batch.
#[derive(Debug, Clone)]
enum Op {
    Put(Tree, Vec<u8>, Vec<u8>),
    Delete(Tree, Vec<u8>),
}

/// Writes applied all together or not at all.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    ops: Vec<Op>,
}

impl Batch {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn put<V: Serialize>(
        &mut self,
        tree: Tree,
        key: impl AsRef<[u8]>,
        value: &V,
    ) -> Result<()> {
        let bytes = encode(tree, value)?;
        self.ops.push(Op::Put(tree, key.as_ref().to_vec(), bytes));
        Ok(())
    }

    pub fn put_raw(&mut self, tree: Tree, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) {
        self.ops.push(Op::Put(
            tree,
            key.as_ref().to_vec(),
            value.as_ref().to_vec(),
        ));
    }

    pub fn delete(&mut self, tree: Tree, key: impl AsRef<[u8]>) {
        self.ops.push(Op::Delete(tree, key.as_ref().to_vec()));
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    pub fn len(&self) -> usize {
        self.ops.len()
    }
}

/// A cheap-to-clone handle on the open database.
#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    trees: Vec<sled::Tree>,
    path: PathBuf,
    flush: Arc<FlushState>,
}

/// Group commit. Concurrent `flush_async` calls deadlock sled 0.34 (they fill its I/O thread pool
/// while the buffer writes they wait for queue behind them — reproduced with 16 writers), so
/// flushes are serialised here, and one flush covers every write applied before it began.
#[derive(Default)]
struct FlushState {
    /// Bumped after every applied batch.
    applied: AtomicU64,
    /// The `applied` value the last completed flush covered.
    flushed: AtomicU64,
    /// Flushes that reached the disk (tests check that a write is never skipped).
    #[cfg(test)]
    completed: AtomicU64,
    lock: tokio::sync::Mutex<()>,
    /// The first write failure. sled 0.34 keeps failing writes after one, and a flush waiting
    /// for a buffer that failed to write never returns, so every later write fails fast.
    failed: std::sync::OnceLock<String>,
}

/// A flush that takes this long is stuck (sled waits forever for a buffer whose write failed);
/// a healthy one takes milliseconds, a slow disk under load seconds.
const FLUSH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// sled flushes when its last handle drops, and after a failed write that flush waits forever
/// for the buffer that could not be written. A store that stopped writing therefore keeps its
/// handles alive to the end of the process; there is nothing left to flush.
impl Drop for Store {
    fn drop(&mut self) {
        if self.flush.failed.get().is_some() {
            std::mem::forget(self.db.clone());
            for tree in &self.trees {
                std::mem::forget(tree.clone());
            }
        }
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

impl Store {
    /// Opens (creating if needed) the store at `path` and runs pending migrations.
    pub fn open(path: &Path) -> Result<Self> {
        create_private_dir(path)?;
        let config = sled::Config::new()
            .path(path)
            .cache_capacity(CACHE_CAPACITY_BYTES)
            .flush_every_ms(Some(FLUSH_EVERY_MS));
        // sled can panic on some corrupt files instead of returning an error; a damaged store
        // must become a clear message, never a crash.
        let opened = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || config.open()));
        let db = match opened {
            Ok(Ok(db)) => db,
            Ok(Err(e)) => return Err(open_error(path, e)),
            Err(panic) => {
                return Err(StoreError::Corrupt {
                    path: path.to_owned(),
                    detail: panic_text(&panic),
                })
            }
        };
        let mut trees = Vec::with_capacity(Tree::ALL.len());
        for t in Tree::ALL {
            trees.push(db.open_tree(t.name()).map_err(|e| open_error(path, e))?);
        }
        let store = Self {
            db,
            trees,
            path: path.to_owned(),
            flush: Arc::new(FlushState::default()),
        };
        migrations::run(&store)?;
        Ok(store)
    }

    /// Whether a store exists at `path` (without creating one).
    pub fn exists(path: &Path) -> bool {
        path.join("conf").exists() || path.join("db").exists()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn tree(&self, t: Tree) -> &sled::Tree {
        &self.trees[t.index()]
    }

    pub fn get<V: DeserializeOwned>(&self, tree: Tree, key: impl AsRef<[u8]>) -> Result<Option<V>> {
        match self.tree(tree).get(key).map_err(|e| self.io(e))? {
            Some(bytes) => decode(tree, &bytes).map(Some),
            None => Ok(None),
        }
    }

    pub fn get_raw(&self, tree: Tree, key: impl AsRef<[u8]>) -> Result<Option<Vec<u8>>> {
        Ok(self
            .tree(tree)
            .get(key)
            .map_err(|e| self.io(e))?
            .map(|v| v.to_vec()))
    }

    pub fn contains(&self, tree: Tree, key: impl AsRef<[u8]>) -> Result<bool> {
        self.tree(tree).contains_key(key).map_err(|e| self.io(e))
    }

    /// Every entry whose key starts with `prefix`, in key order.
    pub fn scan_prefix<V: DeserializeOwned>(
        &self,
        tree: Tree,
        prefix: impl AsRef<[u8]>,
    ) -> Result<Vec<(Vec<u8>, V)>> {
        self.tree(tree)
            .scan_prefix(prefix)
            .map(|item| {
                let (k, v) = item.map_err(|e| self.io(e))?;
                Ok((k.to_vec(), decode(tree, &v)?))
            })
            .collect()
    }

    /// Raw entries whose key starts with `prefix`, in key order.
    pub fn scan_raw_prefix(
        &self,
        tree: Tree,
        prefix: impl AsRef<[u8]>,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.tree(tree)
            .scan_prefix(prefix)
            .map(|item| {
                let (k, v) = item.map_err(|e| self.io(e))?;
                Ok((k.to_vec(), v.to_vec()))
            })
            .collect()
    }

    /// Entries with `start <= key`, sharing `prefix`, at most `limit`, in key order.
    pub fn scan_from<V: DeserializeOwned>(
        &self,
        tree: Tree,
        prefix: &[u8],
        start: &[u8],
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, V)>> {
        self.tree(tree)
            .range(start.to_vec()..)
            .take_while(|item| item.as_ref().map_or(true, |(k, _)| k.starts_with(prefix)))
            .take(limit)
            .map(|item| {
                let (k, v) = item.map_err(|e| self.io(e))?;
                Ok((k.to_vec(), decode(tree, &v)?))
            })
            .collect()
    }

    /// The first raw entry with `key >= start`, if any.
    pub fn first_from(&self, tree: Tree, start: &[u8]) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
        match self.tree(tree).range(start.to_vec()..).next() {
            Some(item) => {
                let (k, v) = item.map_err(|e| self.io(e))?;
                Ok(Some((k.to_vec(), v.to_vec())))
            }
            None => Ok(None),
        }
    }

    /// Every value of a tree, in key order.
    pub fn scan_all<V: DeserializeOwned>(&self, tree: Tree) -> Result<Vec<(Vec<u8>, V)>> {
        self.scan_prefix(tree, [])
    }

    /// The first key with this prefix, if any.
    pub fn first_key(&self, tree: Tree, prefix: impl AsRef<[u8]>) -> Result<Option<Vec<u8>>> {
        match self.tree(tree).scan_prefix(prefix).next() {
            Some(item) => Ok(Some(item.map_err(|e| self.io(e))?.0.to_vec())),
            None => Ok(None),
        }
    }

    /// The last `n` entries of a tree, newest first.
    pub fn last_n<V: DeserializeOwned>(&self, tree: Tree, n: usize) -> Result<Vec<(Vec<u8>, V)>> {
        self.tree(tree)
            .iter()
            .rev()
            .take(n)
            .map(|item| {
                let (k, v) = item.map_err(|e| self.io(e))?;
                Ok((k.to_vec(), decode(tree, &v)?))
            })
            .collect()
    }

    /// The last entry with this prefix, if any.
    pub fn last_raw(
        &self,
        tree: Tree,
        prefix: impl AsRef<[u8]>,
    ) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
        match self.tree(tree).scan_prefix(prefix).next_back() {
            Some(item) => {
                let (k, v) = item.map_err(|e| self.io(e))?;
                Ok(Some((k.to_vec(), v.to_vec())))
            }
            None => Ok(None),
        }
    }

    pub fn count_prefix(&self, tree: Tree, prefix: impl AsRef<[u8]>) -> usize {
        self.tree(tree).scan_prefix(prefix).count()
    }

    /// How many keys lie in `from..to`, without copying them out.
    pub fn count_range(&self, tree: Tree, from: &[u8], to: &[u8]) -> Result<usize> {
        let mut n = 0;
        for item in self.tree(tree).range(from..to) {
            item.map_err(|e| self.io(e))?;
            n += 1;
        }
        Ok(n)
    }

    pub fn len(&self, tree: Tree) -> usize {
        self.tree(tree).len()
    }

    /// Applies a batch atomically across trees. Not yet durable: call `flush` before
    /// acknowledging anything the batch recorded.
    pub fn apply(&self, batch: Batch) -> Result<()> {
        if batch.ops.is_empty() {
            return Ok(());
        }
        self.writable()?;
        let mut involved: Vec<Tree> = Vec::new();
        for op in &batch.ops {
            let t = match op {
                Op::Put(t, ..) | Op::Delete(t, _) => *t,
            };
            if !involved.contains(&t) {
                involved.push(t);
            }
        }
        if involved.len() == 1 {
            let mut b = sled::Batch::default();
            for op in batch.ops {
                match op {
                    Op::Put(_, k, v) => b.insert(k, v),
                    Op::Delete(_, k) => b.remove(k),
                }
            }
            self.tree(involved[0])
                .apply_batch(b)
                .map_err(|e| self.write_failed(e))?;
            // Counted like any other write, so the next `flush` covers it.
            self.flush.applied.fetch_add(1, Ordering::SeqCst);
            return Ok(());
        }
        let trees: Vec<&sled::Tree> = involved.iter().map(|t| self.tree(*t)).collect();
        let slot = |t: Tree| involved.iter().position(|x| *x == t).unwrap_or(0);
        use sled::Transactional;
        let result: std::result::Result<(), sled::transaction::TransactionError<()>> =
            trees.as_slice().transaction(|views| {
                for op in &batch.ops {
                    match op {
                        Op::Put(t, k, v) => {
                            views[slot(*t)].insert(k.as_slice(), v.as_slice())?;
                        }
                        Op::Delete(t, k) => {
                            views[slot(*t)].remove(k.as_slice())?;
                        }
                    }
                }
                Ok(())
            });
        result.map_err(|e| match e {
            sled::transaction::TransactionError::Storage(e) => self.write_failed(e),
            sled::transaction::TransactionError::Abort(()) => StoreError::Io {
                path: self.path.clone(),
                detail: "transaction aborted".to_owned(),
            },
        })?;
        self.flush.applied.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    /// Applies a batch's writes one after another, without the all-or-nothing guarantee of
    /// [`Store::apply`]: after a crash, the writes that survive are a prefix of the batch (sled
    /// recovers its log up to the first tear, and these writes enter the log in order). For hot
    /// paths whose owner repairs a cut-off tail at start-up. The point is cost: every atomic
    /// batch makes sled seal and write out its log buffer, a synchronous disk write per call;
    /// plain writes wait for the next flush, which covers many of them at once.
    pub fn apply_in_order(&self, batch: Batch) -> Result<()> {
        if batch.ops.is_empty() {
            return Ok(());
        }
        self.writable()?;
        for op in batch.ops {
            match op {
                Op::Put(t, k, v) => self.tree(t).insert(k, v).map(drop),
                Op::Delete(t, k) => self.tree(t).remove(k).map(drop),
            }
            .map_err(|e| self.write_failed(e))?;
        }
        self.flush.applied.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    /// Makes every write applied so far durable against process death.
    pub async fn flush(&self) -> Result<()> {
        let needed = self.flush.applied.load(Ordering::SeqCst);
        if self.flush.flushed.load(Ordering::SeqCst) >= needed {
            return Ok(());
        }
        let _one_at_a_time = self.flush.lock.lock().await;
        // Someone else's flush, started after our writes, may have covered them meanwhile.
        if self.flush.flushed.load(Ordering::SeqCst) >= needed {
            return Ok(());
        }
        self.writable()?;
        let covers = self.flush.applied.load(Ordering::SeqCst);
        let db = self.db.clone();
        let flushed = tokio::time::timeout(
            FLUSH_TIMEOUT,
            tokio::task::spawn_blocking(move || db.flush()),
        )
        .await;
        match flushed {
            Ok(Ok(Ok(_))) => {}
            Ok(Ok(Err(e))) => return Err(self.write_failed(e)),
            Ok(Err(e)) => {
                return Err(StoreError::Io {
                    path: self.path.clone(),
                    detail: format!("flush task failed: {e}"),
                })
            }
            // The blocked thread is abandoned: sled will not wake it.
            Err(_) => {
                return Err(self.latch(format!(
                    "a flush to disk did not finish within {} s",
                    FLUSH_TIMEOUT.as_secs()
                )))
            }
        }
        self.flush.flushed.fetch_max(covers, Ordering::SeqCst);
        #[cfg(test)]
        self.flush.completed.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    /// The blocking form of `flush`, for shutdown paths and CLI commands without a runtime.
    pub fn flush_blocking(&self) -> Result<()> {
        self.writable()?;
        self.db
            .flush()
            .map(|_| ())
            .map_err(|e| self.write_failed(e))
    }

    /// `apply` then `flush`: the write is durable when this returns.
    pub async fn commit(&self, batch: Batch) -> Result<()> {
        self.apply(batch)?;
        self.flush().await
    }

    /// A monotonic id, unique for the life of the store (survives restarts).
    pub fn next_id(&self) -> Result<u64> {
        self.writable()?;
        self.db.generate_id().map_err(|e| self.write_failed(e))
    }

    /// Why the store stopped writing, if it did.
    pub fn write_failure(&self) -> Option<&str> {
        self.flush.failed.get().map(String::as_str)
    }

    fn writable(&self) -> Result<()> {
        match self.flush.failed.get() {
            Some(detail) => Err(StoreError::Unwritable {
                path: self.path.clone(),
                detail: detail.clone(),
            }),
            None => Ok(()),
        }
    }

    /// A write error: corruption stays corruption; anything else stops all further writes.
    fn write_failed(&self, e: sled::Error) -> StoreError {
        match e {
            sled::Error::Corruption { .. } => self.io(e),
            other => self.latch(other.to_string()),
        }
    }

    fn latch(&self, detail: String) -> StoreError {
        if self.flush.failed.set(detail.clone()).is_ok() {
            tracing::error!(path = %self.path.display(), error = %detail, "The store can no longer write; new work is refused until kimaki restarts.");
        }
        StoreError::Unwritable {
            path: self.path.clone(),
            detail: self.flush.failed.get().cloned().unwrap_or(detail),
        }
    }

    /// Bytes used on disk.
    pub fn size_on_disk(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0)
    }

    fn io(&self, e: sled::Error) -> StoreError {
        match e {
            sled::Error::Corruption { .. } => StoreError::Corrupt {
                path: self.path.clone(),
                detail: e.to_string(),
            },
            other => StoreError::Io {
                path: self.path.clone(),
                detail: other.to_string(),
            },
        }
    }
}

/// The store holds prompts and outputs: owner-only, like the data dir around it.
fn create_private_dir(path: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if path.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(|e| StoreError::Io {
            path: path.to_owned(),
            detail: e.to_string(),
        })
}

fn open_error(path: &Path, e: sled::Error) -> StoreError {
    let detail = e.to_string();
    match e {
        sled::Error::Io(ref io) if io.kind() == std::io::ErrorKind::WouldBlock => {
            StoreError::Locked {
                path: path.to_owned(),
            }
        }
        sled::Error::Io(ref io) if detail.contains("lock") || io.raw_os_error() == Some(11) => {
            StoreError::Locked {
                path: path.to_owned(),
            }
        }
        sled::Error::Io(ref io) if io.kind() == std::io::ErrorKind::PermissionDenied => {
            StoreError::Corrupt {
                path: path.to_owned(),
                detail: "permission denied".to_owned(),
            }
        }
        sled::Error::Corruption { .. } | sled::Error::Unsupported(_) => StoreError::Corrupt {
            path: path.to_owned(),
            detail,
        },
        sled::Error::Io(_) => StoreError::Corrupt {
            path: path.to_owned(),
            detail,
        },
        _ => StoreError::Io {
            path: path.to_owned(),
            detail,
        },
    }
}

fn panic_text(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "the storage engine crashed while reading it".to_owned()
    }
}

fn encode<V: Serialize>(tree: Tree, value: &V) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(|e| StoreError::Encode {
        tree: tree.name(),
        detail: e.to_string(),
    })
}

fn decode<V: DeserializeOwned>(tree: Tree, bytes: &[u8]) -> Result<V> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Decode {
        tree: tree.name(),
        detail: e.to_string(),
    })
}

/// Big-endian bytes keep numeric order under sled's byte-wise key order.
pub fn be(n: u64) -> [u8; 8] {
    n.to_be_bytes()
}

/// `prefix ‖ 0 ‖ suffix`: a composite key whose prefix is safe to scan.
pub fn key2(prefix: &str, suffix: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(prefix.len() + 1 + suffix.len());
    k.extend_from_slice(prefix.as_bytes());
    k.push(0);
    k.extend_from_slice(suffix);
    k
}

/// `prefix ‖ 0`, the scan prefix matching `key2(prefix, _)`.
pub fn prefix_of(prefix: &str) -> Vec<u8> {
    key2(prefix, &[])
}

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;
