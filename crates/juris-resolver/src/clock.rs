//! The workspace's one clock ([`juris_clock`]), re-exported where the cache and the resolver
//! have always found it.

pub use juris_clock::{timestamp, Clock, ManualClock, SharedClock, SystemClock};
