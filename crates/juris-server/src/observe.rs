//! Resolved names handed to whoever mines them (mirror candidates, issue #14 item 3), off the
//! answer path: [`Pipeline::answer_pending`](crate::Pipeline::answer_pending) offers each name
//! it resolved with its answer to a bounded channel and drops it when the channel is full
//! (counted). Nothing about the client is passed on. The UDP hot answers and cache hits never
//! come here: only misses that went to the resolver.

use std::sync::atomic::{AtomicU64, Ordering};
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
}

/// The sending side: cheap to clone, never waits.
#[derive(Debug, Clone)]
pub struct ResolvedSink {
    sender: mpsc::Sender<Resolved>,
    dropped: Arc<AtomicU64>,
}

impl ResolvedSink {
    /// A sink holding at most `capacity` names not yet taken, and its receiving side.
    pub fn channel(capacity: usize) -> (ResolvedSink, mpsc::Receiver<Resolved>) {
        let (sender, receiver) = mpsc::channel(capacity.max(1));
        (
            ResolvedSink {
                sender,
                dropped: Arc::default(),
            },
            receiver,
        )
    }

    /// Offers a resolved name; dropped (and counted) when the channel is full or closed.
    pub fn offer(&self, name: &[u8], answer: &Arc<CachedAnswer>) {
        let resolved = Resolved {
            name: name.to_ascii_lowercase().into_boxed_slice(),
            answer: Arc::clone(answer),
        };
        if self.sender.try_send(resolved).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Names dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}
