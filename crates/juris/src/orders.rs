//! Orders from files (one JSON order document per file, or a directory of `*.json` files) and
//! from the control plane's store. Startup and every change take the same path, incrementally:
//!
//! ```text
//!  PATH: each *.json ─stat/read─► content unchanged? ── yes ─► keep its last good version
//!  store: each enforceable order ─serialise─┘  no
//!                                            ▼
//!                    Order::from_json ─► validate ─► ValidatedOrder ──► PolicyChange list
//!                       (only the changed sources)   (Put / Remove / between(old, new))
//!                                                                          │
//!   first load, or most names changed: CompiledPolicy::compile ◄───────────┤
//!   otherwise:                  current.with_changes(&changes) ◄───────────┘
//!                                            │ publish (atomic) ──► PolicyHandle
//!                                            └─ overlay too big ─► compact() on a background
//!                                               thread, published only if no newer generation
//!                                               went out meanwhile
//!   ▲ watch ([`spawn_watcher`], one thread at SCHED_IDLE that runs every load): inotify
//!     events on the directory (10 ms settle; up to 300 ms while a file is open for
//!     writing), a poll of mtimes/sizes/inodes every 200 ms as a fallback, SIGHUP, and the
//!     store's change notification (both handed to that thread)
//!
//!   an invalid source ─► ERROR log naming the file (or store order) and the field; that
//!                        source's last good version stays in force, the other changes apply
//! ```
//!
//! Memory: the loader keeps, per source, a content hash and the last good order; orders with
//! more than [`RETAIN_TARGETS`] targets keep only a digest of their target set, so the loader
//! does not hold a second copy of millions of names (`docs/design/0006-incremental-policy-updates.md`).
//! Replaced policies are dropped on the watcher thread once no query holds them, and the heap's
//! free pages are then given back (`malloc_trim`): the transient of a load is not kept in RSS.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::fs;
use std::hash::{Hash, Hasher};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex, PoisonError};
use std::thread::{JoinHandle, ThreadId};
use std::time::{Duration, Instant};

use juris_policy::{
    CompileError, CompileOptions, CompiledPolicy, Order, OrderInfo, OrderUpdate, PolicyChange,
    ValidatedOrder, ValidatedTarget, ValidationErrors, ValidationOptions,
};
use juris_server::PolicyHandle;

/// Orders with more targets than this keep only a digest of their target set in the loader's
/// state (not the targets themselves): a change of their metadata is still a cheap
/// [`PolicyChange::Update`], a change of their targets re-puts the whole order (overlay, then
/// compaction). Smaller orders keep their [`ValidatedOrder`] (≈ 80 B per target) for
/// [`PolicyChange::between`]. At this limit a retained order costs at most ≈ 1.3 MB.
pub const RETAIN_TARGETS: usize = 16_384;

/// The overlay (names added plus base names masked since the base was built) is folded into a
/// new base once it holds `clamp(base / 8, COMPACT_MIN, COMPACT_MAX)` entries: every
/// `with_changes` copies the overlay, so it must stay small for a one-name change to stay
/// sub-millisecond, and a small policy compacts in milliseconds anyway.
const COMPACT_MIN: usize = 1_024;
/// See [`COMPACT_MIN`].
const COMPACT_MAX: usize = 65_536;

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

/// Parses and validates one order file's bytes.
fn parse_order(file: &Path, bytes: &[u8]) -> Result<ValidatedOrder, OrdersError> {
    let order = Order::from_json(bytes).map_err(|source| OrdersError::Parse {
        path: file.to_owned(),
        source,
    })?;
    order
        .validate(&ValidationOptions::default())
        .map_err(|source| OrdersError::Invalid {
            path: file.to_owned(),
            source,
        })
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

impl FileStamp {
    fn of(path: &Path, m: &fs::Metadata) -> FileStamp {
        FileStamp {
            path: path.to_owned(),
            size: m.size(),
            mtime: (m.mtime(), m.mtime_nsec()),
            inode: m.ino(),
            hash: None,
        }
    }

    fn same_metadata(&self, other: &FileStamp) -> bool {
        self.path == other.path
            && self.size == other.size
            && self.mtime == other.mtime
            && self.inode == other.inode
    }
}

/// Files modified this recently are compared by content too.
const RACY_SECONDS: i64 = 2;

fn unix_seconds() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn fingerprint(path: &Path) -> Fingerprint {
    let now = unix_seconds();
    let files = order_files(path).unwrap_or_default();
    Fingerprint(
        files
            .into_iter()
            .filter_map(|file| {
                let m = fs::metadata(&file).ok()?;
                let hash = (m.mtime() >= now - RACY_SECONDS)
                    .then(|| fs::read(&file).map_or(0, |bytes| content_hash(&bytes)));
                Some(FileStamp {
                    hash,
                    ..FileStamp::of(&file, &m)
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
                a.same_metadata(b)
                    && match (a.hash, b.hash) {
                        (Some(x), Some(y)) => x == y,
                        _ => true,
                    }
            })
    }
}

/// The hash of a file's bytes (or a store order's serialisation), one SipHash-1-3 pass with
/// fixed keys, length included. Detects accidental changes (a change goes unnoticed with
/// probability 2^-64), not adversarial collisions: whoever can write order files can write any
/// order. Shared with [`fingerprint`] so that the watcher and the loader hash a file once each.
fn content_hash(bytes: &[u8]) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut hasher);
    hasher.finish()
}

/// A 128-bit digest (two SipHash-1-3 streams with fixed keys).
fn digest(write: impl Fn(&mut std::collections::hash_map::DefaultHasher)) -> u128 {
    let half = |seed: u8| {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        seed.hash(&mut hasher);
        write(&mut hasher);
        hasher.finish()
    };
    (u128::from(half(0x5a)) << 64) | u128::from(half(0xa5))
}

/// A digest of an order's target *set* (order of writing and duplicates do not matter).
fn target_digest(order: &ValidatedOrder) -> u128 {
    let mut targets: Vec<&ValidatedTarget> = order.targets().iter().collect();
    targets.sort_unstable();
    targets.dedup();
    digest(|h| targets.iter().for_each(|t| t.hash(h)))
}

/// Where one order comes from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum SourceKey {
    /// One order file.
    File(PathBuf),
    /// One order of the control plane's store, by id.
    Store(String),
}

impl SourceKey {
    /// For error messages: the file, or `control store order ID`.
    fn label(&self) -> PathBuf {
        match self {
            SourceKey::File(path) => path.clone(),
            SourceKey::Store(id) => PathBuf::from(format!("control store order {id}")),
        }
    }
}

impl fmt::Display for SourceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.label().display())
    }
}

/// The last good version of one source, as compiled into the policy in force.
#[derive(Debug, Clone)]
struct Known {
    /// Files: the metadata when read, and whether it can be trusted to show a change (the
    /// file was not modified within [`RACY_SECONDS`] of being read).
    stamp: Option<(FileStamp, bool)>,
    /// Hash of the file's bytes or of the store order's serialisation.
    content: u64,
    info: Arc<OrderInfo>,
    /// Targets, for the large-change decision.
    targets: usize,
    body: Body,
}

#[derive(Debug, Clone)]
enum Body {
    /// The order itself (at most [`RETAIN_TARGETS`] targets).
    Full(Arc<ValidatedOrder>),
    /// Only the digest of its target set ([`target_digest`]).
    Digest(u128),
}

impl Known {
    fn new(stamp: Option<(FileStamp, bool)>, content: u64, order: &ValidatedOrder) -> Known {
        let targets = order.targets().len();
        Known {
            stamp,
            content,
            info: Arc::clone(order.info()),
            targets,
            body: if targets <= RETAIN_TARGETS {
                Body::Full(Arc::new(order.clone()))
            } else {
                Body::Digest(target_digest(order))
            },
        }
    }

    fn id(&self) -> &str {
        &self.info.id
    }
}

/// The policy the loader last put in force, shared with the background compaction: both
/// publish under this lock, so a compaction never replaces a newer generation.
#[derive(Debug)]
struct Published {
    /// The very `Arc` the [`PolicyHandle`] holds (not a copy of the policy in another `Arc`),
    /// so that its strong count says whether a reader still holds it.
    current: Arc<CompiledPolicy>,
    /// Policies replaced since: each is kept here until no query, compaction or status reader
    /// holds it any more, and then dropped by the loader's thread ([`reap`]). Freeing a large
    /// overlay or index takes milliseconds: on a query worker (the last reader of a policy
    /// drops it) that would be a latency spike.
    retired: Vec<Arc<CompiledPolicy>>,
}

impl Published {
    /// Puts `policy` in force (caller holds the lock) and returns the handle's `Arc` of it.
    fn publish(
        &mut self,
        handle: &PolicyHandle,
        policy: CompiledPolicy,
        changed_at: u64,
    ) -> Arc<CompiledPolicy> {
        handle.publish(policy, changed_at);
        // Only the loader and its compaction publish, both under this lock: this is ours.
        let current = handle.current();
        let old = std::mem::replace(&mut self.current, Arc::clone(&current));
        self.retired.push(old);
        current
    }
}

/// Drops the retired policies nobody else holds any more, on the calling (loader) thread, and
/// returns how many. Once only the retired list holds one, nothing can get it again: the
/// handle no longer has it.
fn reap(published: &Mutex<Published>) -> usize {
    let free: Vec<Arc<CompiledPolicy>> = {
        let mut shared = published.lock().unwrap_or_else(PoisonError::into_inner);
        let (free, keep) = std::mem::take(&mut shared.retired)
            .into_iter()
            .partition(|policy| Arc::strong_count(policy) == 1);
        shared.retired = keep;
        free
    };
    // Outside the lock: a compaction may want to publish meanwhile.
    let count = free.len();
    drop(free);
    count
}

/// The loader's last error ([`OrderLoader::error_cell`]).
pub type ErrorCell = Arc<Mutex<Option<String>>>;

/// Keeps the published policy in step with the files and the control plane's store.
#[derive(Debug)]
pub struct OrderLoader {
    path: Option<PathBuf>,
    store: Option<Arc<juris_control::Control>>,
    handle: Arc<PolicyHandle>,
    generation: u64,
    seen: Fingerprint,
    last_error: Option<String>,
    /// The same, readable without this loader's lock (held for a whole load, at the lowest
    /// priority): the status writer and the admin API read it there.
    error_cell: ErrorCell,
    /// The last good version of every source compiled into the policy in force.
    known: BTreeMap<SourceKey, Known>,
    published: Arc<Mutex<Published>>,
    compaction: Option<JoinHandle<()>>,
    /// Orders parsed and validated since the start (tests, logs).
    validations: u64,
    /// Overrides the compaction threshold (tests).
    compact_at: Option<usize>,
    /// Successful loads so far (the first one compiles from scratch).
    loads: u64,
    /// The watcher thread, and where to hand it reload requests ([`OrderLoader::reload`]).
    watcher: Option<(ThreadId, mpsc::Sender<Wake>)>,
    /// Files read whole so far (by loads and by polls of recently modified files): each read
    /// leaves its buffer's memory to be given back ([`spawn_watcher`]).
    reads: u64,
}

/// What a load put in force.
#[derive(Debug)]
pub struct Loaded {
    /// The generation in force after the load.
    pub generation: u64,
    /// Orders in it.
    pub orders: usize,
    /// Whether a new policy was published (nothing is when nothing valid changed).
    pub published: bool,
    /// Whether it was compiled from scratch rather than changed incrementally.
    pub full: bool,
    /// Sources parsed and validated by this load (the changed ones).
    pub validated: usize,
    /// Sources that are invalid and were not applied: the last good version of each (if any)
    /// stays in force.
    pub rejected: Vec<OrdersError>,
}

/// One load's reading of the sources.
#[derive(Default)]
struct Reading {
    /// Every source, each at its new version if valid, else at its last good one.
    next: BTreeMap<SourceKey, Known>,
    /// The sources validated anew (their new version is in `next`).
    fresh: BTreeMap<SourceKey, ValidatedOrder>,
    rejected: Vec<(SourceKey, OrdersError)>,
    validated: usize,
    /// Files read whole.
    read: u64,
}

impl Reading {
    fn reject(&mut self, known: &BTreeMap<SourceKey, Known>, key: SourceKey, error: OrdersError) {
        self.fresh.remove(&key);
        match known.get(&key) {
            Some(last_good) => {
                self.next.insert(key.clone(), last_good.clone());
            }
            None => {
                self.next.remove(&key);
            }
        }
        self.rejected.push((key, error));
    }

    fn accept(&mut self, key: SourceKey, known: Known, fresh: Option<ValidatedOrder>) {
        if let Some(order) = fresh {
            self.fresh.insert(key.clone(), order);
        }
        self.next.insert(key, known);
    }

    /// Two sources with one id: every *new* version involved is rejected (its last good
    /// version, if any, stays), until the ids are unique. The versions that are not new come
    /// from the last good state, whose ids were unique, so this ends.
    fn reject_duplicate_ids(&mut self, known: &BTreeMap<SourceKey, Known>) {
        loop {
            let mut holders: HashMap<&str, Vec<&SourceKey>> = HashMap::new();
            for (key, entry) in &self.next {
                holders.entry(entry.id()).or_default().push(key);
            }
            let clashing: Vec<(String, SourceKey)> = holders
                .iter()
                .filter(|(_, keys)| keys.len() > 1)
                .flat_map(|(id, keys)| {
                    keys.iter()
                        .filter(|key| self.fresh.contains_key(**key))
                        .map(|key| ((*id).to_owned(), (*key).clone()))
                })
                .collect();
            if clashing.is_empty() {
                return;
            }
            for (id, key) in clashing {
                let error = OrdersError::Compile {
                    path: key.label(),
                    source: CompileError::DuplicateOrder(id),
                };
                self.reject(known, key, error);
            }
        }
    }
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
        let current = handle.current();
        Self {
            path,
            store,
            generation: current.generation(),
            handle,
            seen: Fingerprint::default(),
            last_error: None,
            error_cell: Arc::default(),
            known: BTreeMap::new(),
            published: Arc::new(Mutex::new(Published {
                current,
                retired: Vec::new(),
            })),
            compaction: None,
            validations: 0,
            compact_at: None,
            loads: 0,
            watcher: None,
            reads: 0,
        }
    }

    /// The watched path, if orders come from files.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The last load error, while it lasts (cleared by the next load without one). Outside
    /// tests, read through [`error_cell`](Self::error_cell).
    #[cfg(test)]
    pub fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }

    /// [`last_error`](Self::last_error), kept up to date in a cell of its own: reading it
    /// never waits for a load.
    pub fn error_cell(&self) -> ErrorCell {
        Arc::clone(&self.error_cell)
    }

    /// Reads the sources, validates the changed ones and publishes the result: at startup
    /// (a full compile), on every change and on SIGHUP (the changes on top of the policy in
    /// force). An invalid source is reported in [`Loaded::rejected`] and its last good version
    /// stays in force; on `Err` (a source could not be listed, the changes do not compile)
    /// nothing changes at all.
    pub fn load(&mut self, now: u64) -> Result<Loaded, OrdersError> {
        let started = Instant::now();
        reap(&self.published);
        // The store's revision is read before its orders: a change after this point triggers
        // another load, so the revision reported applied is never newer than what was read.
        let revision = self.store.as_ref().map(|store| *store.subscribe().borrow());
        let mut reading = Reading::default();
        let mut seen = Vec::new();
        let files = self.read_files(&mut reading, &mut seen);
        if self.path.is_some() {
            // What the watcher compares with: the files as this load saw them.
            self.seen = Fingerprint(seen);
        }
        files?;
        self.read_store(&mut reading)?;
        reading.reject_duplicate_ids(&self.known);
        self.validations += reading.validated as u64;
        self.reads += reading.read;

        let current = Arc::clone(
            &self
                .published
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .current,
        );
        // The first load compiles from scratch: no change list (it would copy every order).
        let (changes, changed_names) = if self.loads == 0 {
            (Vec::new(), 0)
        } else {
            self.changes(&mut reading)
        };
        let total_names: usize = reading.next.values().map(|k| k.targets).sum();
        let complete = reading
            .next
            .iter()
            .all(|(key, k)| reading.fresh.contains_key(key) || matches!(k.body, Body::Full(_)));
        // A full compile at the first load, or when most names changed and every order is at
        // hand: one sort of all names then beats an overlay of most of them plus a compaction.
        let full =
            self.loads == 0 || (complete && changed_names > 0 && changed_names > total_names / 2);
        let source = self
            .path
            .clone()
            .unwrap_or_else(|| PathBuf::from("control store"));
        let compile_error = |source_error| OrdersError::Compile {
            path: source.clone(),
            source: source_error,
        };
        let policy = if full {
            let generation = self.generation + 1;
            let mut orders = Vec::with_capacity(reading.next.len());
            for (key, k) in &reading.next {
                match (reading.fresh.remove(key), &k.body) {
                    (Some(order), _) => orders.push(order),
                    (None, Body::Full(order)) => orders.push(ValidatedOrder::clone(order)),
                    // `complete` (or the first load: every source is fresh).
                    (None, Body::Digest(_)) => {
                        return Err(compile_error(CompileError::UnknownOrder(k.id().to_owned())))
                    }
                }
            }
            Some(
                CompiledPolicy::compile(&orders, &CompileOptions { generation })
                    .map_err(compile_error)?,
            )
        } else if changes.is_empty() {
            None
        } else {
            Some(current.with_changes(&changes).map_err(compile_error)?)
        };
        // The new orders (and their copies in the change list) are in the policy now.
        let change_count = changes.len();
        drop(changes);
        drop(reading.fresh);
        drop(current);

        let published = policy.is_some();
        let (generation, orders) = match policy {
            Some(policy) => {
                let generation = policy.generation();
                let orders = policy.stats().orders;
                let policy = self
                    .published
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .publish(&self.handle, policy, now);
                self.generation = generation;
                self.maybe_compact(policy);
                (generation, orders)
            }
            None => (
                self.generation,
                self.published
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .current
                    .stats()
                    .orders,
            ),
        };
        self.known = reading.next;
        self.loads += 1;
        let store_rejected = reading
            .rejected
            .iter()
            .any(|(key, _)| matches!(key, SourceKey::Store(_)));
        if let (Some(store), Some(revision), false) = (&self.store, revision, store_rejected) {
            store.mark_applied(revision);
        }
        let rejected: Vec<OrdersError> = reading.rejected.into_iter().map(|(_, e)| e).collect();
        self.last_error = (!rejected.is_empty()).then(|| {
            rejected
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        });
        self.error_cell
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone_from(&self.last_error);
        tracing::debug!(
            generation,
            full,
            changes = change_count,
            changed_names,
            validated = reading.validated,
            elapsed_us = started.elapsed().as_micros() as u64,
            "orders loaded"
        );
        Ok(Loaded {
            generation,
            orders,
            published,
            full,
            validated: reading.validated,
            rejected,
        })
    }

    /// The changes that turn the policy in force into `reading.next`: removals first, then
    /// updates, then additions (so that an id moving from one file to another is removed
    /// before it is added again). Also returns the number of targets they touch.
    fn changes(&self, reading: &mut Reading) -> (Vec<PolicyChange>, usize) {
        let mut removes = Vec::new();
        let mut updates = Vec::new();
        let mut puts = Vec::new();
        let mut names = 0;
        for (key, old) in &self.known {
            if !reading.next.contains_key(key) {
                removes.push(PolicyChange::Remove(old.id().to_owned()));
                names += old.targets;
            }
        }
        for (key, new) in &reading.fresh {
            let Some(old) = self.known.get(key) else {
                names += new.targets().len();
                puts.push(PolicyChange::Put(new.clone()));
                continue;
            };
            match &old.body {
                Body::Full(old) => {
                    for change in PolicyChange::between(old, new) {
                        match change {
                            PolicyChange::Remove(_) => {
                                names += old.targets().len();
                                removes.push(change);
                            }
                            PolicyChange::Put(_) => {
                                names += new.targets().len();
                                puts.push(change);
                            }
                            PolicyChange::Update(ref update) => {
                                names += update.added.len() + update.removed.len();
                                updates.push(change);
                            }
                        }
                    }
                }
                Body::Digest(digest) if old.id() == new.id() && *digest == target_digest(new) => {
                    updates.push(PolicyChange::Update(OrderUpdate {
                        order: Arc::clone(new.info()),
                        added: Vec::new(),
                        removed: Vec::new(),
                    }));
                }
                Body::Digest(_) => {
                    // The old targets are not kept: replace the whole order.
                    if old.id() != new.id() {
                        removes.push(PolicyChange::Remove(old.id().to_owned()));
                    }
                    names += old.targets + new.targets().len();
                    puts.push(PolicyChange::Put(new.clone()));
                }
            }
        }
        removes.append(&mut updates);
        removes.append(&mut puts);
        (removes, names)
    }

    /// Reads the order files whose metadata or content changed; the others keep their last
    /// good version without being read (metadata unchanged and not racy) or parsed (same
    /// content).
    /// `seen` receives each file's stamp as [`fingerprint`] gives it.
    fn read_files(
        &self,
        reading: &mut Reading,
        seen: &mut Vec<FileStamp>,
    ) -> Result<(), OrdersError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let now = unix_seconds();
        for file in order_files(path)? {
            let key = SourceKey::File(file);
            let SourceKey::File(file) = &key else {
                continue;
            };
            let last_good = self.known.get(&key);
            let read_error = |source| OrdersError::Read {
                path: file.clone(),
                source,
            };
            let metadata = match fs::metadata(file) {
                Ok(metadata) => metadata,
                Err(error) => {
                    let error = read_error(error);
                    reading.reject(&self.known, key, error);
                    continue;
                }
            };
            let stamp = FileStamp::of(file, &metadata);
            let racy = metadata.mtime() >= now - RACY_SECONDS;
            if let Some(k) = last_good {
                // A trusted stamp is older than RACY_SECONDS, so the file is not racy now.
                if k.stamp
                    .as_ref()
                    .is_some_and(|(old, trusted)| *trusted && old.same_metadata(&stamp))
                {
                    seen.push(stamp);
                    reading.accept(key, k.clone(), None);
                    continue;
                }
            }
            reading.read += 1;
            let bytes = match fs::read(file) {
                Ok(bytes) => bytes,
                Err(error) => {
                    seen.push(FileStamp {
                        hash: racy.then_some(0),
                        ..stamp
                    });
                    let error = read_error(error);
                    reading.reject(&self.known, key, error);
                    continue;
                }
            };
            let content = content_hash(&bytes);
            seen.push(FileStamp {
                hash: racy.then_some(content),
                ..stamp.clone()
            });
            let stamp = Some((stamp, !racy));
            if let Some(k) = last_good.filter(|k| k.content == content) {
                let k = Known { stamp, ..k.clone() };
                reading.accept(key, k, None);
                continue;
            }
            reading.validated += 1;
            match parse_order(file, &bytes) {
                Ok(order) => {
                    let k = Known::new(stamp, content, &order);
                    reading.accept(key, k, Some(order));
                }
                Err(error) => reading.reject(&self.known, key, error),
            }
        }
        Ok(())
    }

    /// Reads the store's enforceable orders and validates the changed ones (with the Public
    /// Suffix List). The store is read whole: it has no per-order change feed yet.
    fn read_store(&self, reading: &mut Reading) -> Result<(), OrdersError> {
        let Some(store) = &self.store else {
            return Ok(());
        };
        let psl = juris_control::Psl;
        let options = ValidationOptions {
            public_suffixes: &psl,
            ..ValidationOptions::default()
        };
        for order in store
            .enforceable_orders()
            .map_err(|e| OrdersError::Store(e.to_string()))?
        {
            let key = SourceKey::Store(order.id.clone());
            let content = match serde_json::to_vec(&order) {
                Ok(bytes) => content_hash(&bytes),
                Err(e) => {
                    let error = OrdersError::Store(format!("order {}: {e}", order.id));
                    reading.reject(&self.known, key, error);
                    continue;
                }
            };
            if let Some(k) = self.known.get(&key).filter(|k| k.content == content) {
                reading.accept(key, k.clone(), None);
                continue;
            }
            reading.validated += 1;
            match order.validate(&options) {
                Ok(order) => {
                    let k = Known::new(None, content, &order);
                    reading.accept(key, k, Some(order));
                }
                Err(e) => {
                    let error = OrdersError::Store(format!("order {}: {e}", order.id));
                    reading.reject(&self.known, key, error);
                }
            }
        }
        Ok(())
    }

    fn compact_threshold(&self, base_names: usize) -> usize {
        self.compact_at
            .unwrap_or_else(|| (base_names / 8).clamp(COMPACT_MIN, COMPACT_MAX))
    }

    /// Starts folding the overlay of `policy` (just published) into a new base on a background
    /// thread once it is large enough, unless a compaction is still running (the next load
    /// checks again).
    fn maybe_compact(&mut self, policy: Arc<CompiledPolicy>) {
        let stats = policy.stats();
        let pending = stats.overlay_names + stats.masked_names;
        if pending == 0 || pending < self.compact_threshold(stats.base_names) {
            return;
        }
        if self.compaction.as_ref().is_some_and(|h| !h.is_finished()) {
            return;
        }
        let published = Arc::clone(&self.published);
        let handle = Arc::clone(&self.handle);
        let spawned = std::thread::Builder::new()
            .name("juris-compact".into())
            .spawn(move || {
                // Inherited from the loader's thread anyway; said again for the record.
                lower_thread_priority();
                let started = Instant::now();
                match policy.compact() {
                    Ok(compacted) => {
                        let installed = install_compacted(&published, &handle, &policy, compacted);
                        tracing::info!(
                            generation = policy.generation(),
                            names = stats.base_names + stats.overlay_names,
                            overlay = pending,
                            elapsed_ms = started.elapsed().as_millis() as u64,
                            installed,
                            "policy overlay compacted{}",
                            if installed { "" } else { " (discarded: a newer generation is in force)" }
                        );
                    }
                    Err(error) => tracing::error!(
                        generation = policy.generation(),
                        "policy compaction failed (the overlay stays, answers are unaffected): {error}"
                    ),
                }
            });
        match spawned {
            Ok(thread) => self.compaction = Some(thread),
            Err(error) => tracing::error!(
                "policy compaction thread not started (answers are unaffected): {error}"
            ),
        }
    }

    /// Waits for a running compaction (tests).
    #[cfg(test)]
    fn wait_for_compaction(&mut self) {
        if let Some(thread) = self.compaction.take() {
            thread.join().unwrap();
        }
    }

    /// Loads again if the files changed since the last load, logging the outcome.
    pub fn poll(&mut self, now: u64) {
        if let Some(path) = &self.path {
            let now_seen = fingerprint(path);
            self.reads += now_seen.0.iter().filter(|s| s.hash.is_some()).count() as u64;
            if !now_seen.same_as(&self.seen) {
                self.reload_here(now, "orders changed", true);
            }
        }
    }

    /// [`load`](Self::load) with logging (`why` says what triggered it). While a watcher
    /// thread runs ([`spawn_watcher`]), a call from any other thread (SIGHUP, the store's
    /// change notification) is handed to the watcher and returns at once: every load then runs
    /// on that thread, at the lowest scheduling priority, and frees what it replaced there.
    pub fn reload(&mut self, now: u64, why: &str) {
        if let Some((thread, requests)) = &self.watcher {
            if *thread != std::thread::current().id()
                && requests.send(Wake::Reload(why.to_owned())).is_ok()
            {
                return;
            }
        }
        self.reload_here(now, why, true);
    }

    /// [`reload`](Self::reload) on this thread; `log_unchanged`: say so at INFO when nothing
    /// changed (DEBUG otherwise: a file-system event that changed no order).
    fn reload_here(&mut self, now: u64, why: &str, log_unchanged: bool) -> Option<Loaded> {
        let started = Instant::now();
        match self.load(now) {
            Ok(loaded) => {
                for error in &loaded.rejected {
                    tracing::error!(
                        path = ?self.path,
                        generation = loaded.generation,
                        "{why}: an order is INVALID and was NOT applied; its last good version \
                         (if any) stays in force: {error}"
                    );
                }
                if loaded.published {
                    tracing::info!(
                        path = ?self.path,
                        generation = loaded.generation,
                        orders = loaded.orders,
                        validated = loaded.validated,
                        full = loaded.full,
                        elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
                        "{why}: new policy in force"
                    );
                } else if loaded.rejected.is_empty() && log_unchanged {
                    tracing::info!(
                        path = ?self.path,
                        generation = loaded.generation,
                        "{why}: no order changed; generation {} stays in force",
                        loaded.generation
                    );
                } else if loaded.rejected.is_empty() {
                    tracing::debug!(
                        path = ?self.path,
                        generation = loaded.generation,
                        "{why}: no order changed"
                    );
                }
                Some(loaded)
            }
            Err(error) => {
                tracing::error!(
                    path = ?self.path,
                    generation = self.generation,
                    "{why}: the orders are INVALID and were NOT applied; the last good policy \
                     (generation {}) stays in force: {error}",
                    self.generation
                );
                None
            }
        }
    }

    /// Whether a file was read while it was being modified (its stamp is not trusted, so every
    /// load reads and hashes it again) and has been left alone since for longer than
    /// [`RACY_SECONDS`]: one more load then trusts its stamp, and later loads need not open it.
    fn has_settled_untrusted_files(&self) -> bool {
        let now = unix_seconds();
        self.known.values().any(|k| {
            k.stamp
                .as_ref()
                .is_some_and(|(stamp, trusted)| !trusted && stamp.mtime.0 < now - RACY_SECONDS)
        })
    }
}

/// Publishes `compacted` (made from `source`) unless the loader published something else since:
/// then the result is dropped (it would bring back an older generation). The time of the last
/// change is kept: a compaction changes no answer.
fn install_compacted(
    published: &Mutex<Published>,
    handle: &PolicyHandle,
    source: &Arc<CompiledPolicy>,
    compacted: CompiledPolicy,
) -> bool {
    let mut shared = published.lock().unwrap_or_else(PoisonError::into_inner);
    if !Arc::ptr_eq(&shared.current, source) {
        return false;
    }
    shared.publish(handle, compacted, handle.changed_at().unwrap_or(0));
    true
}

/// Puts the calling thread at the lowest scheduling priority: `SCHED_IDLE` on Linux (it runs
/// only when no normal thread wants the CPU, and any of them preempts it at once), else nice 19.
/// The loader and its compaction parse, validate and sort millions of names; on a server pinned
/// to one CPU that must never delay a query. Threads started from here inherit it.
pub(crate) fn lower_thread_priority() -> &'static str {
    use thread_priority::{
        set_thread_priority_and_policy, thread_native_id, thread_schedule_policy,
        NormalThreadSchedulePolicy, ThreadPriority, ThreadSchedulePolicy,
    };
    let thread = thread_native_id();
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        let idle = ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle);
        // The crate also resets the nice value (to 0, meaningless under SCHED_IDLE), which
        // may fail when it was higher: the policy is what counts.
        let _ = set_thread_priority_and_policy(thread, ThreadPriority::Min, idle);
        if thread_schedule_policy().is_ok_and(|policy| policy == idle) {
            return "SCHED_IDLE";
        }
    }
    let other = ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Other);
    match set_thread_priority_and_policy(thread, ThreadPriority::Min, other) {
        Ok(()) => "nice 19",
        Err(error) => {
            tracing::warn!(
                "order loader: cannot lower its thread's priority ({error:?}); loads compete \
                 with the query workers for the CPU"
            );
            "normal"
        }
    }
}

/// What wakes the watcher thread.
#[derive(Debug)]
enum Wake {
    /// A file-system event about the orders.
    Fs(FsChange),
    /// A reload asked for by another thread (SIGHUP, the control store), with the reason.
    Reload(String),
}

/// One file-system event that may concern an order file.
#[derive(Debug)]
enum FsChange {
    /// The file is being written (created or modified, not yet closed): wait for its close.
    Writing(PathBuf),
    /// Done with the file: closed after writing, renamed into place, removed.
    Done(PathBuf),
    /// Something changed (attributes, a rename out, the directory itself).
    Changed,
    /// The watch on the directory itself is gone (directory removed or renamed), or events
    /// were lost: watch again, and load.
    Lost,
}

/// After the last event, how long nothing more must happen before the files are read.
const SETTLE: Duration = Duration::from_millis(10);
/// The same while a file is open for writing (created or modified, not closed): a writer
/// that writes in place is given this long between two writes before the file is read anyway.
const WRITE_SETTLE: Duration = Duration::from_millis(300);
/// Events never postpone a load for longer than this after the first one.
const MAX_SETTLE: Duration = Duration::from_secs(2);

/// Which events matter for `path` (a directory of orders, or one order file).
#[derive(Debug, Clone)]
struct EventFilter {
    /// The directory watched.
    dir: PathBuf,
    /// `Some`: only this file (the orders are one file).
    file: Option<PathBuf>,
}

impl EventFilter {
    fn for_path(path: &Path) -> EventFilter {
        if path.is_dir() {
            EventFilter {
                dir: path.to_owned(),
                file: None,
            }
        } else {
            let dir = match path.parent() {
                Some(parent) if !parent.as_os_str().is_empty() => parent.to_owned(),
                _ => PathBuf::from("."),
            };
            EventFilter {
                dir,
                file: Some(path.to_owned()),
            }
        }
    }

    /// An order file as `order_files` would list it (or the one file).
    fn concerns(&self, path: &Path) -> bool {
        match &self.file {
            Some(file) => path == file,
            None => {
                path.parent() == Some(self.dir.as_path())
                    && path.extension().is_some_and(|e| e == "json")
                    && !path
                        .file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with('.'))
            }
        }
    }

    /// What `event` means for the orders, if anything. Opening and reading files (the
    /// loader's own reads among them) mean nothing.
    fn classify(&self, event: notify::Result<notify::Event>) -> Option<FsChange> {
        use notify::event::{AccessKind, AccessMode, EventKind, ModifyKind, RenameMode};
        let event = match event {
            Ok(event) => event,
            Err(_) => return Some(FsChange::Lost),
        };
        if event.need_rescan() {
            return Some(FsChange::Lost);
        }
        if event.paths.contains(&self.dir) {
            return match event.kind {
                EventKind::Remove(_) | EventKind::Modify(ModifyKind::Name(_)) => {
                    Some(FsChange::Lost)
                }
                _ => None,
            };
        }
        let path = event.paths.iter().find(|p| self.concerns(p))?.clone();
        match event.kind {
            EventKind::Access(AccessKind::Close(AccessMode::Write)) => Some(FsChange::Done(path)),
            EventKind::Access(_) => None,
            EventKind::Create(_) | EventKind::Modify(ModifyKind::Data(_)) => {
                Some(FsChange::Writing(path))
            }
            EventKind::Modify(ModifyKind::Name(RenameMode::To))
            | EventKind::Modify(ModifyKind::Name(RenameMode::Both))
            | EventKind::Remove(_) => Some(FsChange::Done(path)),
            _ => Some(FsChange::Changed),
        }
    }
}

/// Starts the thread that keeps the policy in step with the orders, at the lowest scheduling
/// priority ([`lower_thread_priority`]): it reacts to file-system events on the orders (inotify,
/// after a short settle so that a file is read once written), polls the files every
/// `interval` as well (file systems without events, lost events), runs the reloads other
/// threads ask for ([`OrderLoader::reload`]), and drops replaced policies and returns freed
/// memory to the system on its own CPU time.
pub fn spawn_watcher(
    loader: Arc<Mutex<OrderLoader>>,
    now: impl Fn() -> u64 + Send + 'static,
    interval: Duration,
    stop: Arc<AtomicBool>,
) -> io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("juris-orders".into())
        .spawn(move || watch(&loader, &now, interval, &stop))
}

fn watch(
    loader: &Mutex<OrderLoader>,
    now: &dyn Fn() -> u64,
    interval: Duration,
    stop: &AtomicBool,
) {
    let priority = lower_thread_priority();
    let lock = || loader.lock().unwrap_or_else(PoisonError::into_inner);
    let (sender, wakes) = mpsc::channel();
    let (path, published) = {
        let loader = lock();
        (loader.path.clone(), Arc::clone(&loader.published))
    };
    let filter = path.as_deref().map(EventFilter::for_path);
    let mut events = filter
        .clone()
        .and_then(|filter| Events::start(filter, sender.clone()));
    {
        let mut loader = lock();
        loader.watcher = Some((std::thread::current().id(), sender));
        // What changed between the last load and the start of the watch.
        loader.poll(now());
    }
    // What the startup load parsed is freed by now.
    juris_server::release_free_heap_memory();
    tracing::info!(
        path = ?path,
        events = events.as_ref().is_some_and(|e| e.watching),
        poll_ms = interval.as_millis() as u64,
        priority,
        "watching the orders"
    );

    let mut next_poll = Instant::now() + interval;
    // The first event not yet loaded, the last one, and the files open for writing.
    let mut first: Option<Instant> = None;
    let mut last = Instant::now();
    let mut writing: HashSet<PathBuf> = HashSet::new();
    let mut trimmed_after = lock().reads;
    while !stop.load(Ordering::Relaxed) {
        let settled = first.map(|first| {
            let quiet = if writing.is_empty() {
                SETTLE
            } else {
                WRITE_SETTLE
            };
            (last + quiet).min(first + MAX_SETTLE)
        });
        let wake_at = settled.map_or(next_poll, |at| at.min(next_poll));
        // Capped, so that `stop` is seen soon whatever the poll interval.
        let timeout = wake_at
            .saturating_duration_since(Instant::now())
            .min(Duration::from_millis(100));
        let mut freed = false;
        match wakes.recv_timeout(timeout) {
            Ok(Wake::Fs(change)) => {
                match change {
                    FsChange::Writing(path) => {
                        writing.insert(path);
                    }
                    FsChange::Done(path) => {
                        writing.remove(&path);
                    }
                    FsChange::Changed => {}
                    FsChange::Lost => {
                        if let Some(events) = &mut events {
                            events.watching = false;
                        }
                    }
                }
                last = Instant::now();
                first.get_or_insert(last);
                continue;
            }
            Ok(Wake::Reload(why)) => {
                let loaded = lock().reload_here(now(), &why, true);
                freed |= loaded.is_some_and(|l| l.published || l.validated > 0);
                // That load saw the files as they are now.
                first = None;
            }
            Err(mpsc::RecvTimeoutError::Timeout | mpsc::RecvTimeoutError::Disconnected) => {}
        }
        let at = Instant::now();
        if settled.is_some_and(|settled| at >= settled) {
            let loaded = lock().reload_here(now(), "orders changed", false);
            freed |= loaded.is_some_and(|l| l.published || l.validated > 0);
            first = None;
            writing.clear();
        }
        if at >= next_poll {
            next_poll = at + interval;
            if let (Some(events), Some(filter)) = (&mut events, &filter) {
                if !events.watching {
                    events.rewatch(filter);
                }
            }
            let mut loader = lock();
            let generation = loader.generation;
            loader.poll(now());
            freed |= loader.generation != generation;
            if loader.has_settled_untrusted_files() {
                // Read them once more now, at this priority, rather than during the next change.
                freed |= loader
                    .reload_here(now(), "orders settled", false)
                    .is_some_and(|l| l.published);
            }
        }
        freed |= reap(&published) > 0;
        // Reading a large file leaves its buffer's pages in the allocator, too.
        let reads = lock().reads;
        if freed || reads != trimmed_after {
            trimmed_after = reads;
            juris_server::release_free_heap_memory();
        }
    }
    lock().watcher = None;
}

/// The inotify watch on the orders' directory (through `notify`).
struct Events {
    watcher: notify::RecommendedWatcher,
    /// Whether the directory is watched now (false after it was removed, until it is again).
    watching: bool,
}

impl Events {
    fn start(filter: EventFilter, sender: mpsc::Sender<Wake>) -> Option<Events> {
        let dir = filter.dir.clone();
        let handler = move |event: notify::Result<notify::Event>| {
            if let Some(change) = filter.classify(event) {
                let _ = sender.send(Wake::Fs(change));
            }
        };
        let watcher = match notify::recommended_watcher(handler) {
            Ok(watcher) => watcher,
            Err(error) => {
                tracing::warn!(
                    "orders: no file-system events ({error}); changes are seen by polling only"
                );
                return None;
            }
        };
        let mut events = Events {
            watcher,
            watching: false,
        };
        events.rewatch(&EventFilter { dir, file: None });
        Some(events)
    }

    fn rewatch(&mut self, filter: &EventFilter) {
        use notify::Watcher;
        let _ = self.watcher.unwatch(&filter.dir);
        match self
            .watcher
            .watch(&filter.dir, notify::RecursiveMode::NonRecursive)
        {
            Ok(()) => self.watching = true,
            Err(error) => tracing::debug!(
                dir = %filter.dir.display(),
                "orders: cannot watch for file-system events ({error}); polling"
            ),
        }
    }
}

impl fmt::Debug for Events {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Events")
            .field("watching", &self.watching)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use juris_policy::{name_to_wire, Country, Timestamp, Verdict};

    const ORDER: &str = r#"{"id": "IT-1", "kind": "court_order", "authority": "Tribunale di Milano",
        "jurisdictions": ["IT"], "action": "nxdomain", "state": "active",
        "targets": [{"type": "subtree", "value": "kickasstorrents.to"}]}"#;

    /// An order document: `targets` are `(type, value)`.
    fn order(id: &str, jurisdiction: &str, state: &str, targets: &[(&str, &str)]) -> String {
        let targets: Vec<String> = targets
            .iter()
            .map(|(kind, value)| format!(r#"{{"type": "{kind}", "value": "{value}"}}"#))
            .collect();
        format!(
            r#"{{"id": "{id}", "kind": "court_order", "authority": "Court {id}",
            "jurisdictions": ["{jurisdiction}"], "action": "nxdomain", "state": "{state}",
            "targets": [{}]}}"#,
            targets.join(", ")
        )
    }

    /// Writes like an editor: a temporary file, then a rename (new inode).
    fn write(dir: &Path, name: &str, text: &str) {
        let temp = dir.join(format!(".{name}.tmp"));
        fs::write(&temp, text).unwrap();
        fs::rename(&temp, dir.join(name)).unwrap();
    }

    /// What a full compile of the files under `dir` gives (the reference).
    fn compiled_from_scratch(dir: &Path) -> CompiledPolicy {
        let orders: Vec<ValidatedOrder> = order_files(dir)
            .unwrap()
            .iter()
            .map(|file| parse_order(file, &fs::read(file).unwrap()).unwrap())
            .collect();
        CompiledPolicy::compile(&orders, &CompileOptions::default()).unwrap()
    }

    const NAMES: &[&str] = &[
        "kickasstorrents.to",
        "www.kickasstorrents.to",
        "notkickasstorrents.to",
        "a.example",
        "www.a.example",
        "b.example",
        "www.b.example",
        "c.example",
        "x.c.example",
        "d.example",
        "new.example",
        "www.new.example",
        "big-7.example",
        "www.big-7.example",
        "big-19999.example",
        "big-20000.example",
        "www.big-20001.example",
        "unrelated.org",
    ];

    fn verdicts(policy: &CompiledPolicy) -> Vec<(String, Option<&'static str>, Verdict)> {
        let now: Timestamp = "2025-01-01T00:00:00Z".parse().unwrap();
        let mut out = Vec::new();
        for name in NAMES {
            let wire = name_to_wire(name).unwrap();
            for country in [Some("IT"), Some("DE"), None] {
                let client = country.map(|c| c.parse::<Country>().unwrap());
                out.push((
                    (*name).to_owned(),
                    country,
                    policy.check_name(&wire, client, now),
                ));
            }
        }
        out
    }

    /// The published policy answers exactly like a full compile of the same files.
    fn assert_same_answers(handle: &PolicyHandle, dir: &Path) {
        let published = handle.current();
        let reference = compiled_from_scratch(dir);
        assert_eq!(verdicts(&published), verdicts(&reference));
        assert_eq!(published.stats().orders, reference.stats().orders);
    }

    fn blocks(handle: &PolicyHandle, name: &str, country: &str) -> Option<String> {
        let now: Timestamp = "2025-01-01T00:00:00Z".parse().unwrap();
        handle
            .current()
            .check_name(
                &name_to_wire(name).unwrap(),
                Some(country.parse().unwrap()),
                now,
            )
            .block()
            .map(|b| b.order().id.clone())
    }

    /// Three small orders in a directory, loaded.
    fn three_orders() -> (tempfile::TempDir, Arc<PolicyHandle>, OrderLoader) {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "a.json",
            &order("A", "IT", "active", &[("domain", "a.example")]),
        );
        write(
            dir.path(),
            "b.json",
            &order("B", "IT", "active", &[("subtree", "b.example")]),
        );
        write(
            dir.path(),
            "c.json",
            &order("C", "DE", "active", &[("subtree", "c.example")]),
        );
        let handle = Arc::new(PolicyHandle::default());
        let mut loader = OrderLoader::new(dir.path().to_owned(), Arc::clone(&handle));
        let loaded = loader.load(1).unwrap();
        assert!(loaded.full && loaded.published && loaded.rejected.is_empty());
        assert_eq!(
            (loaded.generation, loaded.orders, loaded.validated),
            (1, 3, 3)
        );
        (dir, handle, loader)
    }

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
        let loaded = loader.load(2).unwrap();
        assert!(!loaded.published);
        let error = loaded.rejected[0].to_string();
        assert!(
            error.contains("it-2.json") && error.contains("targets[0].value"),
            "{error}"
        );
        assert_eq!(handle.load().generation(), 1);
        assert!(loader.last_error().is_some());

        // A duplicate id across files.
        fs::write(dir.path().join("it-2.json"), ORDER).unwrap();
        let error = loader.load(3).unwrap().rejected[0].to_string();
        assert!(
            error.contains("more than once") && error.contains("it-2.json"),
            "{error}"
        );

        // Syntax errors name the file and the place.
        fs::write(dir.path().join("it-2.json"), "{").unwrap();
        let error = loader.load(4).unwrap().rejected[0].to_string();
        assert!(
            error.contains("it-2.json") && error.contains("line 1"),
            "{error}"
        );
        assert_eq!(handle.load().generation(), 1);

        // Nothing changed that was in force: no new generation, and the error is gone.
        fs::remove_file(dir.path().join("it-2.json")).unwrap();
        let loaded = loader.load(5).unwrap();
        assert!(!loaded.published && loaded.rejected.is_empty());
        assert_eq!(loaded.generation, 1);
        assert!(loader.last_error().is_none());
        assert_eq!(handle.changed_at(), Some(1));
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
        assert_eq!(blocks(&handle, "www.kickasstorrents.to", "IT"), None);
    }

    #[test]
    fn one_added_target_revalidates_only_its_order_and_answers_like_a_full_compile() {
        let (dir, handle, mut loader) = three_orders();
        assert_same_answers(&handle, dir.path());
        let before = loader.validations;

        write(
            dir.path(),
            "b.json",
            &order(
                "B",
                "IT",
                "active",
                &[("subtree", "b.example"), ("subtree", "new.example")],
            ),
        );
        let loaded = loader.load(2).unwrap();
        assert!(loaded.published && !loaded.full, "{loaded:?}");
        assert_eq!((loaded.generation, loaded.validated), (2, 1));
        assert_eq!(loader.validations, before + 1, "only b.json was validated");
        assert_eq!(
            handle.current().stats().overlay_names,
            1,
            "one name in the overlay"
        );
        assert_eq!(
            blocks(&handle, "www.new.example", "IT").as_deref(),
            Some("B")
        );
        assert_same_answers(&handle, dir.path());

        // Touching a file without changing it re-reads it but validates nothing.
        let text = fs::read_to_string(dir.path().join("a.json")).unwrap();
        write(dir.path(), "a.json", &text);
        let loaded = loader.load(3).unwrap();
        assert!(!loaded.published && loaded.validated == 0, "{loaded:?}");
        assert_eq!(handle.current().generation(), 2);

        // A new file, and a metadata-only change (lift), in one load.
        write(
            dir.path(),
            "d.json",
            &order("D", "IT", "active", &[("domain", "d.example")]),
        );
        write(
            dir.path(),
            "c.json",
            &order("C", "DE", "lifted", &[("subtree", "c.example")]),
        );
        let loaded = loader.load(4).unwrap();
        assert_eq!((loaded.generation, loaded.validated), (3, 2));
        assert_eq!(blocks(&handle, "x.c.example", "DE"), None);
        assert_eq!(blocks(&handle, "d.example", "IT").as_deref(), Some("D"));
        assert_same_answers(&handle, dir.path());
    }

    #[test]
    fn an_invalid_edit_keeps_that_orders_last_good_version_and_other_edits_still_apply() {
        let (dir, handle, mut loader) = three_orders();
        // B broken (a TLD target): B's last good version keeps blocking.
        write(
            dir.path(),
            "b.json",
            &order("B", "IT", "lifted", &[("subtree", "example")]),
        );
        let loaded = loader.load(2).unwrap();
        assert!(!loaded.published);
        let error = loaded.rejected[0].to_string();
        assert!(
            error.contains("b.json") && error.contains("targets[0].value"),
            "{error}"
        );
        assert_eq!(blocks(&handle, "www.b.example", "IT").as_deref(), Some("B"));
        assert!(loader.last_error().unwrap().contains("b.json"));

        // A later edit of another order applies while B is still broken.
        write(
            dir.path(),
            "a.json",
            &order(
                "A",
                "IT",
                "active",
                &[("domain", "a.example"), ("domain", "new.example")],
            ),
        );
        let loaded = loader.load(3).unwrap();
        assert!(loaded.published, "{loaded:?}");
        assert_eq!(loaded.rejected.len(), 1, "b.json is still reported");
        assert_eq!(loaded.validated, 2, "a.json, and b.json again");
        assert_eq!(blocks(&handle, "new.example", "IT").as_deref(), Some("A"));
        assert_eq!(blocks(&handle, "www.b.example", "IT").as_deref(), Some("B"));

        // A file moving its id to another file's id is refused; the other file's order stays.
        write(
            dir.path(),
            "d.json",
            &order("C", "IT", "active", &[("domain", "d.example")]),
        );
        let loaded = loader.load(4).unwrap();
        assert!(loaded
            .rejected
            .iter()
            .any(|e| e.to_string().contains("d.json") && e.to_string().contains("more than once")));
        assert_eq!(blocks(&handle, "x.c.example", "DE").as_deref(), Some("C"));
        fs::remove_file(dir.path().join("d.json")).unwrap();

        // Fixing B applies it, and the error is cleared.
        write(
            dir.path(),
            "b.json",
            &order("B", "IT", "lifted", &[("subtree", "b.example")]),
        );
        let loaded = loader.load(5).unwrap();
        assert!(loaded.published && loaded.rejected.is_empty());
        assert!(loader.last_error().is_none());
        assert_eq!(blocks(&handle, "www.b.example", "IT"), None);
        assert_same_answers(&handle, dir.path());
    }

    #[test]
    fn removing_a_file_removes_its_order_and_ids_may_move_between_files() {
        let (dir, handle, mut loader) = three_orders();
        fs::remove_file(dir.path().join("b.json")).unwrap();
        let loaded = loader.load(2).unwrap();
        assert!(loaded.published && !loaded.full && loaded.validated == 0);
        assert_eq!(loaded.orders, 2);
        assert_eq!(blocks(&handle, "www.b.example", "IT"), None);
        assert!(handle.current().order_by_id("B").is_none());
        assert_same_answers(&handle, dir.path());

        // Two files swap their ids (and targets) in one change.
        write(
            dir.path(),
            "a.json",
            &order("C", "DE", "active", &[("subtree", "c.example")]),
        );
        write(
            dir.path(),
            "c.json",
            &order("A", "IT", "active", &[("domain", "a.example")]),
        );
        let loaded = loader.load(3).unwrap();
        assert!(loaded.rejected.is_empty(), "{loaded:?}");
        assert_eq!(loaded.orders, 2);
        assert_same_answers(&handle, dir.path());

        // Every file removed: an empty policy.
        fs::remove_file(dir.path().join("a.json")).unwrap();
        fs::remove_file(dir.path().join("c.json")).unwrap();
        let loaded = loader.load(4).unwrap();
        assert_eq!(loaded.orders, 0);
        assert_eq!(blocks(&handle, "a.example", "IT"), None);
        assert_same_answers(&handle, dir.path());
    }

    #[test]
    fn compaction_folds_the_overlay_and_keeps_answers_and_generation() {
        let (dir, handle, mut loader) = three_orders();
        loader.compact_at = Some(2);
        write(
            dir.path(),
            "a.json",
            &order("A", "IT", "active", &[("domain", "new.example")]),
        );
        let loaded = loader.load(2).unwrap();
        assert_eq!(loaded.generation, 2);
        loader.wait_for_compaction();
        let compacted = handle.current();
        assert_eq!(compacted.generation(), 2, "compaction keeps the generation");
        let stats = compacted.stats();
        assert_eq!(
            (stats.overlay_names, stats.masked_names),
            (0, 0),
            "{stats:?}"
        );
        assert_eq!(handle.changed_at(), Some(2));
        assert_same_answers(&handle, dir.path());

        // The next change builds on the compacted base.
        write(
            dir.path(),
            "c.json",
            &order(
                "C",
                "DE",
                "active",
                &[("subtree", "c.example"), ("domain", "d.example")],
            ),
        );
        loader.load(3).unwrap();
        assert_eq!(handle.current().stats().overlay_names, 1);
        assert_same_answers(&handle, dir.path());
    }

    #[test]
    fn a_compaction_of_an_old_generation_is_not_published() {
        let (dir, handle, mut loader) = three_orders();
        write(
            dir.path(),
            "a.json",
            &order("A", "IT", "active", &[("domain", "new.example")]),
        );
        loader.load(2).unwrap();
        let old = Arc::clone(&loader.published.lock().unwrap().current);
        let compacted = old.compact().unwrap();
        write(
            dir.path(),
            "a.json",
            &order("A", "IT", "lifted", &[("domain", "new.example")]),
        );
        loader.load(3).unwrap();
        assert!(!install_compacted(
            &loader.published,
            &handle,
            &old,
            compacted
        ));
        assert_eq!(handle.current().generation(), 3);
        assert_same_answers(&handle, dir.path());
    }

    #[test]
    fn large_orders_keep_a_digest_and_still_update_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let names: Vec<String> = (0..=RETAIN_TARGETS + 20_000)
            .map(|i| format!("big-{i}.example"))
            .collect();
        let big = |state: &str, names: &[String]| {
            let targets: Vec<(&str, &str)> = names.iter().map(|n| ("domain", n.as_str())).collect();
            order("BIG", "IT", state, &targets)
        };
        write(dir.path(), "big.json", &big("active", &names));
        let others: Vec<(&str, &str)> = names.iter().map(|n| ("subtree", n.as_str())).collect();
        write(
            dir.path(),
            "big2.json",
            &order("BIG2", "DE", "active", &others),
        );
        write(
            dir.path(),
            "a.json",
            &order("A", "IT", "active", &[("domain", "a.example")]),
        );
        let handle = Arc::new(PolicyHandle::default());
        let mut loader = OrderLoader::new(dir.path().to_owned(), Arc::clone(&handle));
        loader.load(1).unwrap();
        let key = SourceKey::File(dir.path().join("big.json"));
        assert!(matches!(loader.known[&key].body, Body::Digest(_)));
        assert_same_answers(&handle, dir.path());

        // Metadata only: an update without touching the index.
        write(dir.path(), "big.json", &big("shadow", &names));
        let loaded = loader.load(2).unwrap();
        assert!(loaded.published && !loaded.full);
        assert_eq!(handle.current().stats().overlay_names, 0);
        assert_eq!(blocks(&handle, "big-7.example", "IT"), None);
        assert_same_answers(&handle, dir.path());

        // A target removed: the whole order is put again (overlay, as BIG2's targets are not
        // at hand for a full compile), answers exact.
        write(dir.path(), "big.json", &big("active", &names[8..]));
        loader.compact_at = Some(usize::MAX);
        let loaded = loader.load(3).unwrap();
        assert!(loaded.published && !loaded.full);
        assert_eq!(blocks(&handle, "big-7.example", "IT"), None);
        assert_eq!(
            blocks(&handle, "big-8.example", "IT").as_deref(),
            Some("BIG")
        );
        assert_same_answers(&handle, dir.path());
    }

    /// Waits (bounded) until `check` holds; the watcher works in the background.
    fn eventually(what: &str, check: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !check() {
            assert!(Instant::now() < deadline, "never happened: {what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// A watcher whose poll interval is an hour: whatever it picks up, it got from events.
    /// `dir` is the loader's path: a directory or one order file.
    fn watched(
        dir: &Path,
    ) -> (
        Arc<PolicyHandle>,
        Arc<Mutex<OrderLoader>>,
        Arc<AtomicBool>,
        JoinHandle<()>,
    ) {
        let handle = Arc::new(PolicyHandle::default());
        let mut loader = OrderLoader::new(dir.to_owned(), Arc::clone(&handle));
        loader.load(1).unwrap();
        let loader = Arc::new(Mutex::new(loader));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = spawn_watcher(
            Arc::clone(&loader),
            || 2,
            Duration::from_secs(3600),
            Arc::clone(&stop),
        )
        .unwrap();
        eventually("the watcher runs", || {
            loader.lock().unwrap().watcher.is_some()
        });
        (handle, loader, stop, thread)
    }

    #[test]
    fn a_new_file_is_enforced_on_its_event_without_waiting_for_the_poll() {
        let (dir, _, _) = three_orders();
        let (handle, loader, stop, thread) = watched(dir.path());
        assert_eq!(blocks(&handle, "new.example", "IT"), None);

        // Renamed into place (what editors and the benchmark do).
        write(
            dir.path(),
            "new.json",
            &order("NEW", "IT", "active", &[("domain", "new.example")]),
        );
        eventually("the renamed file is enforced", || {
            blocks(&handle, "new.example", "IT").as_deref() == Some("NEW")
        });

        // Written in place, in two writes with a pause: read once complete (or, at worst, read
        // half-written, rejected, and read again on its close): the order ends up in force.
        {
            use std::io::Write;
            let text = order("INPLACE", "DE", "active", &[("subtree", "inplace.example")]);
            let (head, tail) = text.split_at(text.len() / 2);
            let mut file = fs::File::create(dir.path().join("inplace.json")).unwrap();
            file.write_all(head.as_bytes()).unwrap();
            file.flush().unwrap();
            std::thread::sleep(Duration::from_millis(50));
            file.write_all(tail.as_bytes()).unwrap();
        }
        eventually("the file written in place is enforced", || {
            blocks(&handle, "www.inplace.example", "DE").as_deref() == Some("INPLACE")
        });

        // Removed.
        fs::remove_file(dir.path().join("new.json")).unwrap();
        eventually("the removed file is lifted", || {
            blocks(&handle, "new.example", "IT").is_none()
        });
        // Files that are not orders (hidden, other extensions) are left alone.
        let generation = handle.current().generation();
        fs::write(dir.path().join("notes.txt"), "x").unwrap();
        fs::write(dir.path().join(".hidden.json"), "{").unwrap();
        assert_eq!(loader.lock().unwrap().last_error(), None);
        assert_same_answers(&handle, dir.path());

        stop.store(true, Ordering::Relaxed);
        thread.join().unwrap();
        assert!(loader.lock().unwrap().watcher.is_none());
        assert!(handle.current().generation() >= generation);
    }

    #[test]
    fn reloads_asked_from_other_threads_run_on_the_watcher() {
        let (dir, _, _) = three_orders();
        // One order file (not a directory): its events come from its parent directory.
        let file = dir.path().join("a.json");
        let (handle, loader, stop, thread) = watched(&file);
        assert_eq!(blocks(&handle, "a.example", "IT").as_deref(), Some("A"));

        // A change of another file in the directory is not this loader's business.
        write(
            dir.path(),
            "b.json",
            &order("B", "IT", "lifted", &[("subtree", "b.example")]),
        );
        // The one file, rewritten in place (its mtime may stay within one clock tick: the
        // content hash tells).
        fs::write(
            &file,
            order("A", "IT", "active", &[("domain", "a2.example")]),
        )
        .unwrap();
        eventually("the file's event is seen", || {
            blocks(&handle, "a2.example", "IT").as_deref() == Some("A")
        });
        assert_eq!(handle.current().stats().orders, 1);

        // SIGHUP-like: from this thread, handed to the watcher.
        let generation = handle.current().generation();
        loader.lock().unwrap().reload(3, "test");
        stop.store(true, Ordering::Relaxed);
        thread.join().unwrap();
        assert_eq!(handle.current().generation(), generation, "nothing changed");
        // Without a watcher, reload runs on the caller's thread again.
        fs::write(
            &file,
            order("A", "IT", "lifted", &[("domain", "a2.example")]),
        )
        .unwrap();
        loader.lock().unwrap().reload(4, "test");
        assert_eq!(blocks(&handle, "a2.example", "IT"), None);
    }

    #[test]
    fn a_replaced_policy_is_dropped_by_the_loader_once_no_reader_holds_it() {
        let (dir, handle, mut loader) = three_orders();
        let reader = handle.load();
        write(
            dir.path(),
            "a.json",
            &order("A", "IT", "active", &[("domain", "new.example")]),
        );
        loader.load(2).unwrap();
        // A query still holds generation 1: it is not freed (by anyone) yet.
        assert_eq!(reap(&loader.published), 0);
        assert_eq!(loader.published.lock().unwrap().retired.len(), 1);
        assert_eq!(reader.generation(), 1);
        drop(reader);
        // The reader let go without freeing it; the loader frees it.
        assert_eq!(reap(&loader.published), 1);
        assert!(loader.published.lock().unwrap().retired.is_empty());
        assert!(Arc::ptr_eq(
            &loader.published.lock().unwrap().current,
            &handle.current()
        ));
    }

    #[test]
    fn the_loader_thread_runs_at_the_lowest_priority() {
        let priority = std::thread::spawn(lower_thread_priority).join().unwrap();
        assert!(["SCHED_IDLE", "nice 19"].contains(&priority), "{priority}");
    }
}
