//! Watching: the loader actor. One thread owns the [`OrderLoader`] and runs every load after
//! startup, at the lowest scheduling priority. It wakes up for file-system events on the order
//! files (inotify, after a short settle so that a file is read once written), for its poll,
//! and for the wake-ups others send through a [`LoaderHandle`] (SIGHUP, the store's change
//! notification; next, the fleet follower). Status and the API read the outcome of its loads
//! from a `watch` channel ([`LoadStatus`]): nothing ever waits for a load.
//!
//! ```text
//!  SIGHUP ───────────────┐
//!  store changed (task) ─┼─ LoaderHandle::reload ─► mpsc ─► juris-orders thread (SCHED_IDLE)
//!  inotify (notify) ─────┘                                   owns OrderLoader: load, publish,
//!  poll every interval ──────────────────────────────────►  reap, malloc_trim
//!                                                              │ watch<LoadStatus>
//!  status.json writer, admin API ◄─────────────────────────────┘
//! ```

use std::collections::HashSet;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::files::is_order_file_name;
use super::loader::{Loaded, OrderLoader};
use super::priority::lower_thread_priority;
use super::publish::reap;

/// What wakes the loader's thread.
#[derive(Debug)]
enum Wake {
    /// A file-system event about the orders.
    Fs(FsChange),
    /// A reload asked for by another thread (SIGHUP, the control store), with the reason.
    Reload(String),
    /// Shut down: return after the load in progress, if any.
    Stop,
}

/// What the loader put in force last: read by status and the API without waiting for a load.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadStatus {
    /// The generation in force.
    pub generation: u64,
    /// The last load's errors (invalid or held orders), while they last.
    pub last_error: Option<String>,
    /// Loads run by the loader's thread so far (whatever their outcome).
    pub loads: u64,
    /// Whether the loader's thread is running.
    pub running: bool,
}

impl LoadStatus {
    fn of(loader: &OrderLoader, loads: u64, running: bool) -> LoadStatus {
        LoadStatus {
            generation: loader.generation(),
            last_error: loader.last_error().map(ToOwned::to_owned),
            loads,
            running,
        }
    }
}

/// How others reach the loader: send it a wake-up, read its status. Cheap to clone.
#[derive(Debug, Clone)]
pub struct LoaderHandle {
    wakes: mpsc::Sender<Wake>,
    status: watch::Receiver<LoadStatus>,
}

impl LoaderHandle {
    /// Asks for a load (`why` is logged with it). Returns at once; the load runs on the
    /// loader's thread. Nothing happens once the loader has stopped.
    pub fn reload(&self, why: &str) {
        let _ = self.wakes.send(Wake::Reload(why.to_owned()));
    }

    /// The status after the last load.
    pub fn status(&self) -> LoadStatus {
        self.status.borrow().clone()
    }
}

/// The loader's thread, for shutting it down.
#[derive(Debug)]
pub struct LoaderThread {
    thread: JoinHandle<()>,
    wakes: mpsc::Sender<Wake>,
}

impl LoaderThread {
    /// Asks the loader to stop and waits for it at most `bound`. A load in progress is not
    /// waited for past that (it runs at the lowest priority and may not progress on a busy
    /// machine): the thread is left to end with the process, and `false` is returned. Nothing
    /// a load does needs to finish for a clean exit: it only publishes in memory.
    pub fn stop(self, bound: Duration) -> bool {
        let _ = self.wakes.send(Wake::Stop);
        let deadline = Instant::now() + bound;
        while !self.thread.is_finished() {
            if Instant::now() >= deadline {
                tracing::warn!(
                    "order loader: a load is still running; not waiting for it (nothing it \
                     does needs to finish)"
                );
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = self.thread.join();
        true
    }
}

/// Moves `loader` (after its startup load) to a thread of its own, at the lowest scheduling
/// priority ([`lower_thread_priority`]): it reacts to file-system events on the order files,
/// polls its sources every `interval` (file systems without events, lost events), runs the
/// loads asked for through the returned [`LoaderHandle`], and drops replaced policies and
/// returns freed memory to the system on its own CPU time.
pub fn spawn(
    loader: OrderLoader,
    now: impl Fn() -> u64 + Send + 'static,
    interval: Duration,
) -> io::Result<(LoaderHandle, LoaderThread)> {
    let (sender, wakes) = mpsc::channel();
    let (status, status_reader) = watch::channel(LoadStatus::of(&loader, 0, false));
    let events = sender.clone();
    let thread = std::thread::Builder::new()
        .name("juris-orders".into())
        .spawn(move || run(loader, &wakes, events, &status, &now, interval))?;
    Ok((
        LoaderHandle {
            wakes: sender.clone(),
            status: status_reader,
        },
        LoaderThread {
            thread,
            wakes: sender,
        },
    ))
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
            None => path.parent() == Some(self.dir.as_path()) && is_order_file_name(path),
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

fn run(
    mut loader: OrderLoader,
    wakes: &mpsc::Receiver<Wake>,
    sender: mpsc::Sender<Wake>,
    status: &watch::Sender<LoadStatus>,
    now: &dyn Fn() -> u64,
    interval: Duration,
) {
    let priority = lower_thread_priority();
    let path = loader.watch_paths().into_iter().next();
    let filter = path.as_deref().map(EventFilter::for_path);
    let mut events = filter
        .clone()
        .and_then(|filter| Events::start(filter, sender));
    let mut loads = 0_u64;
    // What changed between the startup load and the start of the watch.
    if loader.poll(now()).is_some() {
        loads += 1;
    }
    status.send_replace(LoadStatus::of(&loader, loads, true));
    // What the startup load parsed is freed by now.
    juris_server::release_free_heap_memory();
    tracing::info!(
        sources = loader.describe(),
        events = events.as_ref().is_some_and(|e| e.watching),
        poll_ms = interval.as_millis() as u64,
        priority,
        "watching the orders"
    );

    let published = std::sync::Arc::clone(&loader.compactor.published);
    let mut next_poll = Instant::now() + interval;
    // The first event not yet loaded, the last one, and the files open for writing.
    let mut first: Option<Instant> = None;
    let mut last = Instant::now();
    let mut writing: HashSet<PathBuf> = HashSet::new();
    let mut trimmed_after = loader.reads();
    loop {
        let settled = first.map(|first| {
            let quiet = if writing.is_empty() {
                SETTLE
            } else {
                WRITE_SETTLE
            };
            (last + quiet).min(first + MAX_SETTLE)
        });
        let wake_at = settled.map_or(next_poll, |at| at.min(next_poll));
        let timeout = wake_at.saturating_duration_since(Instant::now());
        let mut freed = false;
        match wakes.recv_timeout(timeout) {
            Ok(Wake::Stop) | Err(mpsc::RecvTimeoutError::Disconnected) => break,
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
                count(loader.reload(now(), &why, true), &mut freed, &mut loads);
                // That load saw the files as they are now.
                first = None;
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        let at = Instant::now();
        if settled.is_some_and(|settled| at >= settled) {
            count(
                loader.reload(now(), "orders changed", false),
                &mut freed,
                &mut loads,
            );
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
            let generation = loader.generation();
            if loader.poll(now()).is_some() {
                loads += 1;
            }
            freed |= loader.generation() != generation;
            if loader.has_settled_untrusted_files() {
                // Read them once more now, at this priority, rather than during the next change.
                let result = loader.reload(now(), "orders settled", false);
                freed |= result.as_ref().is_some_and(|l| l.published);
                loads += 1;
            }
        }
        freed |= reap(&published) > 0;
        status.send_if_modified(|old| {
            let new = LoadStatus::of(&loader, loads, true);
            let changed = *old != new;
            *old = new;
            changed
        });
        // Reading a large file leaves its buffer's pages in the allocator, too.
        let reads = loader.reads();
        if freed || reads != trimmed_after {
            trimmed_after = reads;
            juris_server::release_free_heap_memory();
        }
    }
    status.send_modify(|s| s.running = false);
}

/// Counts a load; `freed`: whether it left memory to give back.
fn count(result: Option<Loaded>, freed: &mut bool, loads: &mut u64) {
    *loads += 1;
    *freed |= result.is_some_and(|l| l.published || l.validated > 0);
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
