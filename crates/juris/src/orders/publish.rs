//! Publishing and compaction: the policy the loader put in force ([`Published`]), replaced
//! policies freed on the loader's thread ([`reap`]), and the background compaction that folds
//! a large overlay into a new base ([`Compactor`]).

use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Instant;

use juris_policy::CompiledPolicy;
use juris_server::PolicyHandle;

use super::priority::lower_thread_priority;

/// The overlay (names added plus base names masked since the base was built) is folded into a
/// new base once it holds `clamp(base / 8, COMPACT_MIN, COMPACT_MAX)` entries: every
/// `with_changes` copies the overlay, so it must stay small for a one-name change to stay
/// sub-millisecond, and a small policy compacts in milliseconds anyway.
const COMPACT_MIN: usize = 1_024;
/// See [`COMPACT_MIN`].
const COMPACT_MAX: usize = 65_536;

/// The policy the loader last put in force, shared with the background compaction: both
/// publish under this lock, so a compaction never replaces a newer generation.
#[derive(Debug)]
pub(crate) struct Published {
    /// The very `Arc` the [`PolicyHandle`] holds (not a copy of the policy in another `Arc`),
    /// so that its strong count says whether a reader still holds it.
    pub(crate) current: Arc<CompiledPolicy>,
    /// Policies replaced since: each is kept here until no query, compaction or status reader
    /// holds it any more, and then dropped by the loader's thread ([`reap`]). Freeing a large
    /// overlay or index takes milliseconds: on a query worker (the last reader of a policy
    /// drops it) that would be a latency spike.
    pub(crate) retired: Vec<Arc<CompiledPolicy>>,
}

impl Published {
    /// Puts `policy` in force (caller holds the lock) and returns the handle's `Arc` of it.
    pub(crate) fn publish(
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
pub(crate) fn reap(published: &Mutex<Published>) -> usize {
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

/// Starts and tracks the background compaction.
#[derive(Debug)]
pub(crate) struct Compactor {
    pub(crate) published: Arc<Mutex<Published>>,
    pub(crate) handle: Arc<PolicyHandle>,
    compaction: Option<JoinHandle<()>>,
    /// Overrides the compaction threshold (tests).
    pub(crate) compact_at: Option<usize>,
}

impl Compactor {
    pub(crate) fn new(handle: Arc<PolicyHandle>) -> Compactor {
        let current = handle.current();
        Compactor {
            published: Arc::new(Mutex::new(Published {
                current,
                retired: Vec::new(),
            })),
            handle,
            compaction: None,
            compact_at: None,
        }
    }

    fn compact_threshold(&self, base_names: usize) -> usize {
        self.compact_at
            .unwrap_or_else(|| (base_names / 8).clamp(COMPACT_MIN, COMPACT_MAX))
    }

    /// Puts `policy` in force (`now`: the time of the change) and compacts it in the
    /// background if its overlay is large enough.
    pub(crate) fn publish(&mut self, policy: CompiledPolicy, now: u64) {
        let policy = self
            .published
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .publish(&self.handle, policy, now);
        self.maybe_compact(policy);
    }

    /// The policy the loader put in force last (or its compaction).
    pub(crate) fn current(&self) -> Arc<CompiledPolicy> {
        Arc::clone(
            &self
                .published
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .current,
        )
    }

    /// Starts folding the overlay of `policy` (just published) into a new base on a background
    /// thread once it is large enough, unless a compaction is still running (the next load
    /// checks again).
    pub(crate) fn maybe_compact(&mut self, policy: Arc<CompiledPolicy>) {
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
    pub(crate) fn wait_for_compaction(&mut self) {
        if let Some(thread) = self.compaction.take() {
            thread.join().unwrap();
        }
    }
}

/// Publishes `compacted` (made from `source`) unless the loader published something else since:
/// then the result is dropped (it would bring back an older generation). The time of the last
/// change is kept: a compaction changes no answer.
pub(crate) fn install_compacted(
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
