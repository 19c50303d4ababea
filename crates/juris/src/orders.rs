//! Orders from files (one JSON order document per file, or a directory of `*.json` files) and
//! from the control plane's store. Startup and every change take the same path:
//!
//! ```text
//!  PATH ──read──► Order::from_json ──validate──► ValidatedOrder ──┐
//!  store ─Control::enforceable_orders()─validate (PSL)────────────┴─compile──► CompiledPolicy
//!   ▲                                                                          │ publish
//!   └── watch: poll mtimes/sizes/inodes every 200 ms, SIGHUP,      ──► PolicyHandle (atomic)
//!       or the store's change notification (at once)
//!                     any error ─► ERROR log naming the file and the field; the last good
//!                                  policy stays in force
//! ```

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use juris_policy::{
    CompileError, CompileOptions, CompiledPolicy, Order, ValidatedOrder, ValidationErrors,
    ValidationOptions,
};
use juris_server::PolicyHandle;

/// Why the orders could not be loaded. Each variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum OrdersError {
    /// The file or directory could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// Not an order document (JSON syntax, an unknown field, a wrong type).
    #[error("{path}: not a valid order document: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What serde reported (field, line and column).
        source: serde_json::Error,
    },
    /// An order that fails validation (each problem names its field).
    #[error("{path}: {source}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The problems.
        source: ValidationErrors,
    },
    /// The orders do not compile together (e.g. two files with the same order id).
    #[error("{path}: {source}")]
    Compile {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        source: CompileError,
    },
    /// The control plane's store could not be read, or holds an order that does not validate.
    #[error("control store: {0}")]
    Store(String),
}

/// Every `*.json` file under `path` (or `path` itself if it is a file), sorted by name.
pub fn order_files(path: &Path) -> Result<Vec<PathBuf>, OrdersError> {
    let read_error = |source| OrdersError::Read {
        path: path.to_owned(),
        source,
    };
    let metadata = fs::metadata(path).map_err(read_error)?;
    if !metadata.is_dir() {
        return Ok(vec![path.to_owned()]);
    }
    let mut files = Vec::new();
    for entry in fs::read_dir(path).map_err(read_error)? {
        let entry = entry.map_err(read_error)?;
        let file = entry.path();
        let hidden = file
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with('.'));
        if !hidden && file.extension().is_some_and(|e| e == "json") && file.is_file() {
            files.push(file);
        }
    }
    files.sort();
    Ok(files)
}

/// Reads and validates every order under `path`.
pub fn read_orders(path: &Path) -> Result<Vec<ValidatedOrder>, OrdersError> {
    let options = ValidationOptions::default();
    let mut orders = Vec::new();
    for file in order_files(path)? {
        let bytes = fs::read(&file).map_err(|source| OrdersError::Read {
            path: file.clone(),
            source,
        })?;
        let order = Order::from_json(&bytes).map_err(|source| OrdersError::Parse {
            path: file.clone(),
            source,
        })?;
        let order = order
            .validate(&options)
            .map_err(|source| OrdersError::Invalid {
                path: file.clone(),
                source,
            })?;
        orders.push(order);
    }
    Ok(orders)
}

/// What identifies a version of the files: name, size, modification time (ns) and inode of
/// each (an editor's atomic rename changes the inode), and for files modified in the last
/// [`RACY_SECONDS`] a hash of the content: a rewrite of the same size within one tick of the
/// file system's coarse clock keeps the modification time (git's "racy clean" problem).
#[derive(Debug, Clone, Default)]
struct Fingerprint(Vec<FileStamp>);

#[derive(Debug, Clone)]
struct FileStamp {
    path: PathBuf,
    size: u64,
    mtime: (i64, i64),
    inode: u64,
    hash: Option<u64>,
}

/// Files modified this recently are compared by content too.
const RACY_SECONDS: i64 = 2;

fn fingerprint(path: &Path) -> Fingerprint {
    use std::hash::{Hash, Hasher};
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let files = order_files(path).unwrap_or_default();
    Fingerprint(
        files
            .into_iter()
            .filter_map(|file| {
                let m = fs::metadata(&file).ok()?;
                let hash = (m.mtime() >= now - RACY_SECONDS).then(|| {
                    let mut hasher = std::collections::hash_map::DefaultHasher::new();
                    fs::read(&file).ok().hash(&mut hasher);
                    hasher.finish()
                });
                Some(FileStamp {
                    path: file,
                    size: m.size(),
                    mtime: (m.mtime(), m.mtime_nsec()),
                    inode: m.ino(),
                    hash,
                })
            })
            .collect(),
    )
}

impl Fingerprint {
    /// Same files, same metadata, and the same content where both sides hashed it.
    fn same_as(&self, other: &Fingerprint) -> bool {
        self.0.len() == other.0.len()
            && self.0.iter().zip(&other.0).all(|(a, b)| {
                a.path == b.path
                    && a.size == b.size
                    && a.mtime == b.mtime
                    && a.inode == b.inode
                    && match (a.hash, b.hash) {
                        (Some(x), Some(y)) => x == y,
                        _ => true,
                    }
            })
    }
}

/// Keeps the published policy in step with the files and the control plane's store.
#[derive(Debug)]
pub struct OrderLoader {
    path: Option<PathBuf>,
    store: Option<Arc<juris_control::Control>>,
    handle: Arc<PolicyHandle>,
    generation: u64,
    seen: Fingerprint,
    last_error: Option<String>,
}

/// What a load put in force.
#[derive(Debug, Clone, Copy)]
pub struct Loaded {
    /// The new policy's generation.
    pub generation: u64,
    /// Orders in it.
    pub orders: usize,
}

impl OrderLoader {
    /// A loader for `path` publishing to `handle`. Nothing is read yet.
    #[cfg(test)]
    pub fn new(path: PathBuf, handle: Arc<PolicyHandle>) -> Self {
        Self::with_sources(Some(path), None, handle)
    }

    /// A loader compiling the orders under `path` (if any) together with the enforceable
    /// orders of the control plane's `store` (if any).
    pub fn with_sources(
        path: Option<PathBuf>,
        store: Option<Arc<juris_control::Control>>,
        handle: Arc<PolicyHandle>,
    ) -> Self {
        Self {
            path,
            store,
            handle,
            generation: 0,
            seen: Fingerprint::default(),
            last_error: None,
        }
    }

    /// The watched path, if orders come from files.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The last load error, while it lasts (cleared by the next good load).
    pub fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }

    /// Reads, validates and compiles the files and publishes the result: at startup, on every
    /// change and on SIGHUP. On error nothing is published (the last good policy stays).
    pub fn load(&mut self, now: u64) -> Result<Loaded, OrdersError> {
        if let Some(path) = &self.path {
            self.seen = fingerprint(path);
        }
        let generation = self.generation + 1;
        // The store's revision is read before its orders: a change after this point triggers
        // another load, so the revision reported applied is never newer than what was read.
        let revision = self.store.as_ref().map(|store| *store.subscribe().borrow());
        match self.compile(generation) {
            Ok(policy) => {
                let orders = policy.stats().orders;
                self.handle.publish(policy, now);
                self.generation = generation;
                self.last_error = None;
                if let (Some(store), Some(revision)) = (&self.store, revision) {
                    store.mark_applied(revision);
                }
                Ok(Loaded { generation, orders })
            }
            Err(error) => {
                self.last_error = Some(error.to_string());
                Err(error)
            }
        }
    }

    fn compile(&self, generation: u64) -> Result<CompiledPolicy, OrdersError> {
        let mut orders = match &self.path {
            Some(path) => read_orders(path)?,
            None => Vec::new(),
        };
        if let Some(store) = &self.store {
            let psl = juris_control::Psl;
            let options = ValidationOptions {
                public_suffixes: &psl,
                ..ValidationOptions::default()
            };
            for order in store
                .enforceable_orders()
                .map_err(|e| OrdersError::Store(e.to_string()))?
            {
                orders.push(
                    order
                        .validate(&options)
                        .map_err(|e| OrdersError::Store(e.to_string()))?,
                );
            }
        }
        let source = self
            .path
            .clone()
            .unwrap_or_else(|| PathBuf::from("control store"));
        CompiledPolicy::compile(&orders, &CompileOptions { generation }).map_err(|source_error| {
            OrdersError::Compile {
                path: source,
                source: source_error,
            }
        })
    }

    /// Loads again if the files changed since the last load, logging the outcome.
    pub fn poll(&mut self, now: u64) {
        if let Some(path) = &self.path {
            if !fingerprint(path).same_as(&self.seen) {
                self.reload(now, "orders changed");
            }
        }
    }

    /// [`load`](Self::load) with logging (`why` says what triggered it).
    pub fn reload(&mut self, now: u64, why: &str) {
        match self.load(now) {
            Ok(loaded) => tracing::info!(
                path = ?self.path,
                generation = loaded.generation,
                orders = loaded.orders,
                "{why}: new policy in force"
            ),
            Err(error) => tracing::error!(
                path = ?self.path,
                generation = self.generation,
                "{why}: the orders are INVALID and were NOT applied; the last good policy \
                 (generation {}) stays in force: {error}",
                self.generation
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORDER: &str = r#"{"id": "IT-1", "kind": "court_order", "authority": "Tribunale di Milano",
        "jurisdictions": ["IT"], "action": "nxdomain", "state": "active",
        "targets": [{"type": "subtree", "value": "kickasstorrents.to"}]}"#;

    #[test]
    fn a_directory_of_orders_loads_and_a_bad_change_keeps_the_last_good_policy() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("it-1.json"), ORDER).unwrap();
        fs::write(dir.path().join("notes.txt"), "not an order").unwrap();
        let handle = Arc::new(PolicyHandle::default());
        let mut loader = OrderLoader::new(dir.path().to_owned(), Arc::clone(&handle));
        let loaded = loader.load(1).unwrap();
        assert_eq!((loaded.generation, loaded.orders), (1, 1));
        assert_eq!(handle.load().generation(), 1);

        // A bad target: the error names the file and the field; generation 1 stays.
        let bad = ORDER.replace("kickasstorrents.to", "to");
        fs::write(dir.path().join("it-2.json"), bad.replace("IT-1", "IT-2")).unwrap();
        let error = loader.load(2).unwrap_err().to_string();
        assert!(
            error.contains("it-2.json") && error.contains("targets[0].value"),
            "{error}"
        );
        assert_eq!(handle.load().generation(), 1);
        assert!(loader.last_error().is_some());

        // A duplicate id across files.
        fs::write(dir.path().join("it-2.json"), ORDER).unwrap();
        let error = loader.load(3).unwrap_err().to_string();
        assert!(error.contains("more than once"), "{error}");

        // Syntax errors name the file and the place.
        fs::write(dir.path().join("it-2.json"), "{").unwrap();
        let error = loader.load(4).unwrap_err().to_string();
        assert!(
            error.contains("it-2.json") && error.contains("line 1"),
            "{error}"
        );

        fs::remove_file(dir.path().join("it-2.json")).unwrap();
        assert_eq!(loader.load(5).unwrap().generation, 2);
        assert_eq!(handle.changed_at(), Some(5));
    }

    #[test]
    fn poll_notices_changes() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("order.json");
        fs::write(&file, ORDER).unwrap();
        let handle = Arc::new(PolicyHandle::default());
        let mut loader = OrderLoader::new(file.clone(), Arc::clone(&handle));
        loader.load(1).unwrap();
        loader.poll(2);
        assert_eq!(handle.load().generation(), 1, "no change, no reload");
        fs::write(&file, ORDER.replace("\"active\"", "\"lifted\"")).unwrap();
        loader.poll(3);
        assert_eq!(handle.load().generation(), 2);
    }
}
