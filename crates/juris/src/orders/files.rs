//! Orders from files: the listing (`*.json` in a directory, or one file), the fingerprints
//! that tell whether anything changed without reading the files, and [`FileSource`].

use std::collections::BTreeMap;
use std::fs;
use std::hash::{Hash, Hasher};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use juris_policy::Order;

use super::diff::Known;
use super::source::{OrderSource, SourceId, Version};
use super::OrdersError;

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
        if is_order_file_name(&file) && file.is_file() {
            files.push(file);
        }
    }
    files.sort();
    Ok(files)
}

/// `*.json`, not hidden: what [`order_files`] lists (and what the watcher's events concern).
pub(crate) fn is_order_file_name(file: &Path) -> bool {
    let hidden = file
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with('.'));
    !hidden && file.extension().is_some_and(|e| e == "json")
}

/// Parses one order file's bytes (the document only: validation and the safeguards are the
/// loader's, the same for every source).
pub(crate) fn parse_order(file: &Path, bytes: &[u8]) -> Result<Order, OrdersError> {
    Order::from_json(bytes).map_err(|source| OrdersError::Parse {
        path: file.to_owned(),
        source,
    })
}

/// What identifies a version of the files: name, size, modification time (ns) and inode of
/// each (an editor's atomic rename changes the inode), and for files modified in the last
/// [`RACY_SECONDS`] a hash of the content: a rewrite of the same size within one tick of the
/// file system's coarse clock keeps the modification time (git's "racy clean" problem).
#[derive(Debug, Clone, Default)]
pub(crate) struct Fingerprint(pub(crate) Vec<FileStamp>);

/// One file's metadata (and, when racy, content hash).
#[derive(Debug, Clone)]
pub struct FileStamp {
    path: PathBuf,
    size: u64,
    /// Modification time: seconds, nanoseconds.
    pub(crate) mtime: (i64, i64),
    inode: u64,
    pub(crate) hash: Option<u64>,
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
pub(crate) const RACY_SECONDS: i64 = 2;

pub(crate) fn unix_seconds() -> i64 {
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
pub(crate) fn content_hash(bytes: &[u8]) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut hasher);
    hasher.finish()
}

/// The order files under one path (a directory of `*.json`, or one file).
#[derive(Debug)]
pub struct FileSource {
    path: PathBuf,
    /// The files as the last read saw them: what [`OrderSource::changed`] compares with.
    seen: Fingerprint,
    /// Files read whole so far (by reads and by polls of recently modified files).
    reads: u64,
}

impl FileSource {
    /// The orders under `path`. Nothing is read yet.
    pub fn new(path: PathBuf) -> FileSource {
        FileSource {
            path,
            seen: Fingerprint::default(),
            reads: 0,
        }
    }

    /// Reads one file, unless its trusted stamp shows it unchanged.
    fn read_file(
        &mut self,
        file: PathBuf,
        now: i64,
        known: &BTreeMap<SourceId, Known>,
        seen: &mut Vec<FileStamp>,
        sink: &mut dyn FnMut(SourceId, Version),
    ) {
        let id = SourceId::File(file);
        let SourceId::File(file) = &id else {
            return;
        };
        let last_good = known.get(&id);
        let read_error = |source| OrdersError::Read {
            path: file.clone(),
            source,
        };
        let metadata = match fs::metadata(file) {
            Ok(metadata) => metadata,
            Err(error) => return sink(id.clone(), Version::Unreadable(read_error(error))),
        };
        let stamp = FileStamp::of(file, &metadata);
        let racy = metadata.mtime() >= now - RACY_SECONDS;
        // A trusted stamp is older than RACY_SECONDS, so the file is not racy now.
        if last_good.is_some_and(|k| {
            k.stamp
                .as_ref()
                .is_some_and(|(old, trusted)| *trusted && old.same_metadata(&stamp))
        }) {
            seen.push(stamp);
            return sink(id, Version::Unchanged(None));
        }
        self.reads += 1;
        let bytes = match fs::read(file) {
            Ok(bytes) => bytes,
            Err(error) => {
                seen.push(FileStamp {
                    hash: racy.then_some(0),
                    ..stamp
                });
                return sink(id.clone(), Version::Unreadable(read_error(error)));
            }
        };
        let content = content_hash(&bytes);
        seen.push(FileStamp {
            hash: racy.then_some(content),
            ..stamp.clone()
        });
        let stamp = Some((stamp, !racy));
        if last_good.is_some_and(|k| k.content == content) {
            return sink(id, Version::Unchanged(stamp));
        }
        let order = parse_order(file, &bytes);
        drop(bytes);
        sink(
            id,
            Version::Changed {
                content,
                stamp,
                order,
            },
        );
    }
}

impl OrderSource for FileSource {
    fn describe(&self) -> String {
        self.path.display().to_string()
    }

    /// Reads the order files whose metadata or content changed; the others keep their last
    /// good version without being read (metadata unchanged and not racy) or parsed (same
    /// content).
    fn read(
        &mut self,
        known: &BTreeMap<SourceId, Known>,
        sink: &mut dyn FnMut(SourceId, Version),
    ) -> Result<(), OrdersError> {
        let now = unix_seconds();
        let mut seen = Vec::new();
        let files = order_files(&self.path);
        for file in files.as_deref().unwrap_or_default() {
            self.read_file(file.clone(), now, known, &mut seen, sink);
        }
        // What the next poll compares with: the files as this read saw them.
        self.seen = Fingerprint(seen);
        files.map(drop)
    }

    fn changed(&mut self) -> bool {
        let now_seen = fingerprint(&self.path);
        self.reads += now_seen.0.iter().filter(|s| s.hash.is_some()).count() as u64;
        !now_seen.same_as(&self.seen)
    }

    fn reads(&self) -> u64 {
        self.reads
    }

    fn watch_path(&self) -> Option<&Path> {
        Some(&self.path)
    }

    fn reviews_protected_targets(&self) -> bool {
        false
    }
}
