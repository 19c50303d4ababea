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
//!   ▲ watch: poll mtimes/sizes/inodes every 200 ms, SIGHUP, or the store's change notification
//!
//!   an invalid source ─► ERROR log naming the file (or store order) and the field; that
//!                        source's last good version stays in force, the other changes apply
//! ```
//!
//! Memory: the loader keeps, per source, a content hash and the last good order; orders with
//! more than [`RETAIN_TARGETS`] targets keep only a digest of their target set, so the loader
//! does not hold a second copy of millions of names (`docs/design/0006-incremental-policy-updates.md`).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::fs;
use std::hash::{Hash, Hasher};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Instant;

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
    current: Arc<CompiledPolicy>,
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
            known: BTreeMap::new(),
            published: Arc::new(Mutex::new(Published { current })),
            compaction: None,
            validations: 0,
            compact_at: None,
            loads: 0,
        }
    }

    /// The watched path, if orders come from files.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The last load error, while it lasts (cleared by the next load without one).
    pub fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }

    /// Reads the sources, validates the changed ones and publishes the result: at startup
    /// (a full compile), on every change and on SIGHUP (the changes on top of the policy in
    /// force). An invalid source is reported in [`Loaded::rejected`] and its last good version
    /// stays in force; on `Err` (a source could not be listed, the changes do not compile)
    /// nothing changes at all.
    pub fn load(&mut self, now: u64) -> Result<Loaded, OrdersError> {
        let started = Instant::now();
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

        let current = Arc::clone(
            &self
                .published
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .current,
        );
        let (changes, changed_names) = self.changes(&mut reading);
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
        drop(reading.fresh);

        let published = policy.is_some();
        let (generation, orders) = match policy {
            Some(policy) => {
                let generation = policy.generation();
                let orders = policy.stats().orders;
                let policy = Arc::new(policy);
                {
                    let mut shared = self
                        .published
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner);
                    shared.current = Arc::clone(&policy);
                    self.handle.publish(CompiledPolicy::clone(&policy), now);
                }
                self.generation = generation;
                self.maybe_compact(policy);
                (generation, orders)
            }
            None => (self.generation, current.stats().orders),
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
        tracing::debug!(
            generation,
            full,
            changes = changes.len(),
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
            if !fingerprint(path).same_as(&self.seen) {
                self.reload(now, "orders changed");
            }
        }
    }

    /// [`load`](Self::load) with logging (`why` says what triggered it).
    pub fn reload(&mut self, now: u64, why: &str) {
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
                } else if loaded.rejected.is_empty() {
                    tracing::info!(
                        path = ?self.path,
                        generation = loaded.generation,
                        "{why}: no order changed; generation {} stays in force",
                        loaded.generation
                    );
                }
            }
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
    shared.current = Arc::new(compacted.clone());
    handle.publish(compacted, handle.changed_at().unwrap_or(0));
    true
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
}
