//! Resolved names handed to whoever mines them (mirror candidates, issue #14 item 3), off the
//! answer path: [`Pipeline::answer_pending`](crate::Pipeline::answer_pending) (its synchronous
//! half, `write_pending`, which the UDP workers call themselves) offers each name it resolved
//! with its answer to a bounded channel and drops it when the channel is full
//! (counted). Nothing about the client is passed on. The UDP hot answers and cache hits never
//! come here: only misses that went to the resolver.
//!
//! A sink may carry a [`SeenFilter`]: a name whose key (the binary uses a hash of its
//! registrable domain) was already let through in the current window is only counted, not
//! copied or queued, so a burst of names under one domain costs the miss path a key and one
//! atomic load per name (issue #14 item 9, design 0042). Answers with a CNAME/DNAME chain always
//! go through: the chain is evidence about that name, not about its domain.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use juris_resolver::cache::CachedAnswer;
use tokio::sync::mpsc;

/// One resolved name: the query name (wire form, lower-case) and the answer it got.
#[derive(Debug)]
pub struct Resolved {
    /// The query name in wire form, lower-case.
    pub name: Box<[u8]>,
    /// The answer (shared with the cache).
    pub answer: Arc<CachedAnswer>,
    /// Names with the same filter key held back since the last one of that key was let through
    /// (0 without a filter). A lower bound: see [`SeenFilter`].
    pub repeats: u64,
}

/// The key of a name in wire form for a [`SeenFilter`]; `None`: never filtered.
pub type NameKey = Arc<dyn Fn(&[u8]) -> Option<u64> + Send + Sync>;

/// A fixed-size, lock-free "seen in this window" set of 64-bit keys: each slot holds the
/// upper 32 bits of a key and the window it was let through in. A key whose slot matches in
/// the current window is held back and counted in the slot; the next time it is let through
/// (a later window) the count goes with it. Two keys sharing a slot replace each other: the
/// held-back count of the replaced one is lost (counts are lower bounds), and it is let through
/// again the next time it comes. Races between threads only let a name through twice or lose
/// a count, never block one for longer than a window.
#[derive(Debug)]
pub struct SeenFilter {
    slots: Box<[AtomicU64]>,
    held: Box<[AtomicU32]>,
    window: AtomicU32,
}

impl SeenFilter {
    /// A filter of `slots` slots (rounded up to a power of two, at least 1).
    pub fn new(slots: usize) -> Self {
        let slots = slots.max(1).next_power_of_two();
        SeenFilter {
            slots: (0..slots).map(|_| AtomicU64::new(0)).collect(),
            held: (0..slots).map(|_| AtomicU32::new(0)).collect(),
            // Window 0 is what an empty slot holds: never current.
            window: AtomicU32::new(1),
        }
    }

    /// `None`: `key` was let through in this window (the name is counted in its slot);
    /// `Some(held)`: let it through, with the names of that key held back since last time.
    pub fn admit(&self, key: u64) -> Option<u64> {
        let index = key as usize & (self.slots.len() - 1);
        let window = u64::from(self.window.load(Ordering::Relaxed));
        let mark = (key >> 32) << 32 | window;
        let slot = &self.slots[index];
        let before = slot.load(Ordering::Relaxed);
        if before == mark {
            self.held[index].fetch_add(1, Ordering::Relaxed);
            return None;
        }
        slot.store(mark, Ordering::Relaxed);
        let held = self.held[index].swap(0, Ordering::Relaxed);
        Some(if before >> 32 == key >> 32 {
            u64::from(held)
        } else {
            0
        })
    }

    /// Starts a new window: every key is let through once more.
    pub fn next_window(&self) {
        let next = self.window.load(Ordering::Relaxed).wrapping_add(1).max(1);
        self.window.store(next, Ordering::Relaxed);
    }
}

/// The sending side: cheap to clone, never waits.
#[derive(Debug, Clone)]
pub struct ResolvedSink {
    sender: mpsc::Sender<Resolved>,
    dropped: Arc<AtomicU64>,
    filter: Option<Arc<Filter>>,
}

struct Filter {
    seen: SeenFilter,
    key: NameKey,
    held: AtomicU64,
}

impl std::fmt::Debug for Filter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Filter")
            .field("seen", &self.seen)
            .finish_non_exhaustive()
    }
}

impl ResolvedSink {
    /// A sink holding at most `capacity` names not yet taken, and its receiving side.
    pub fn channel(capacity: usize) -> (ResolvedSink, mpsc::Receiver<Resolved>) {
        let (sender, receiver) = mpsc::channel(capacity.max(1));
        (
            ResolvedSink {
                sender,
                dropped: Arc::default(),
                filter: None,
            },
            receiver,
        )
    }

    /// [`ResolvedSink::channel`] with a [`SeenFilter`] of `slots` slots keyed by `key`.
    pub fn filtered(
        capacity: usize,
        slots: usize,
        key: NameKey,
    ) -> (ResolvedSink, mpsc::Receiver<Resolved>) {
        let (mut sink, receiver) = Self::channel(capacity);
        sink.filter = Some(Arc::new(Filter {
            seen: SeenFilter::new(slots),
            key,
            held: AtomicU64::new(0),
        }));
        (sink, receiver)
    }

    /// Starts a new window of the filter (nothing without one).
    pub fn next_window(&self) {
        if let Some(filter) = &self.filter {
            filter.seen.next_window();
        }
    }

    /// Offers a resolved name; held back (counted) when the filter has seen its key in this
    /// window, dropped (and counted) when the channel is full or closed.
    pub fn offer(&self, name: &[u8], answer: &Arc<CachedAnswer>) {
        let mut repeats = 0;
        if let Some(filter) = &self.filter {
            if answer.cname_targets().is_empty() {
                if let Some(key) = (filter.key)(name) {
                    match filter.seen.admit(key) {
                        Some(held) => repeats = held,
                        None => {
                            filter.held.fetch_add(1, Ordering::Relaxed);
                            return;
                        }
                    }
                }
            }
        }
        let resolved = Resolved {
            name: name.to_ascii_lowercase().into_boxed_slice(),
            answer: Arc::clone(answer),
            repeats,
        };
        if self.sender.try_send(resolved).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Names dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Names held back by the filter so far (their domain was let through in the same window).
    pub fn held(&self) -> u64 {
        self.filter
            .as_ref()
            .map_or(0, |filter| filter.held.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "test code")]
mod tests {
    use super::*;
    use juris_resolver::cache::CacheConfig;

    /// An answer for `name` (wire form): an A record, or a CNAME to `t.x.` and its A record.
    fn answer(name: &[u8], cname: bool) -> Arc<CachedAnswer> {
        let mut m = vec![0, 0, 0x81, 0x80, 0, 1, 0, 1 + u8::from(cname), 0, 0, 0, 0];
        m.extend_from_slice(name);
        m.extend_from_slice(&[0, 1, 0, 1]);
        if cname {
            m.extend_from_slice(&[0xC0, 12, 0, 5, 0, 1, 0, 0, 0, 60, 0, 5]);
            m.extend_from_slice(b"\x01t\x01x\x00\x01t\x01x\x00");
        } else {
            m.extend_from_slice(&[0xC0, 12]);
        }
        m.extend_from_slice(&[0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 1]);
        Arc::new(CachedAnswer::from_message(&m, 100, &CacheConfig::default()).unwrap())
    }

    #[test]
    fn a_filtered_sink_holds_back_names_of_a_key_seen_but_never_a_cname_chain() {
        // The key: the last label's first byte (a stand-in for the registrable domain).
        let key: NameKey = Arc::new(|wire: &[u8]| wire.get(3).map(|b| u64::from(*b)));
        let (sink, mut receiver) = ResolvedSink::filtered(16, 64, key);
        let (a, b, c) = (b"\x01a\x01x\x00", b"\x01b\x01x\x00", b"\x01c\x01x\x00");
        sink.offer(a, &answer(a, false));
        sink.offer(b, &answer(b, false));
        let chained = answer(c, true);
        assert!(!chained.cname_targets().is_empty());
        sink.offer(c, &chained);
        assert_eq!(sink.held(), 1);
        let first = receiver.try_recv().unwrap();
        assert_eq!((&first.name[..], first.repeats), (&a[..], 0));
        let second = receiver.try_recv().unwrap();
        assert_eq!(&second.name[..], &c[..]);
        assert!(receiver.try_recv().is_err());
        // The next window lets the key through again, with the name it held back.
        sink.next_window();
        sink.offer(b, &answer(b, false));
        let third = receiver.try_recv().unwrap();
        assert_eq!((&third.name[..], third.repeats), (&b[..], 1));
    }

    #[test]
    fn a_key_is_let_through_once_per_window_with_the_count_it_held_back() {
        let filter = SeenFilter::new(64);
        let key = 0xdead_beef_0000_0005;
        assert_eq!(filter.admit(key), Some(0));
        assert_eq!(filter.admit(key), None);
        assert_eq!(filter.admit(key), None);
        filter.next_window();
        assert_eq!(filter.admit(key), Some(2));
        assert_eq!(filter.admit(key), None);
        filter.next_window();
        assert_eq!(filter.admit(key), Some(1));
    }

    #[test]
    fn keys_sharing_a_slot_replace_each_other_and_are_let_through_again() {
        let filter = SeenFilter::new(1);
        let (a, b) = (0x0000_0001_0000_0000, 0x0000_0002_0000_0000);
        assert_eq!(filter.admit(a), Some(0));
        assert_eq!(filter.admit(a), None);
        // b takes the slot; a's held-back count is lost, not credited to b.
        assert_eq!(filter.admit(b), Some(0));
        assert_eq!(filter.admit(a), Some(0));
        assert_eq!(filter.admit(a), None);
    }

    #[test]
    fn an_empty_slot_never_matches_even_for_key_zero() {
        let filter = SeenFilter::new(8);
        assert_eq!(filter.admit(0), Some(0));
        assert_eq!(filter.admit(0), None);
    }
}
