//! juris-clock: the one injectable clock of the workspace.
//!
//! ```text
//!  Clock ── unix_seconds() ──► cache TTLs and expiry, the pipeline's policy time, order loads
//!        └─ now()          ──► the control store and the audit log (RFC 3339), order lifecycles
//!  SystemClock: the wall clock (production)      ManualClock: moves only when told (tests)
//! ```
//! Production reads the **wall clock** (`clock_gettime(CLOCK_REALTIME)` via `SystemTime`), so
//! conformance suites that fake the date with libfaketime work. Round-trip times and timeouts
//! are measured with a monotonic clock (`Instant`), never with this one.
//!
//! ```
//! use juris_clock::{Clock, ManualClock};
//! let clock = ManualClock::new(1_717_243_200);
//! clock.advance(60);
//! assert_eq!(clock.unix_seconds(), 1_717_243_260);
//! assert_eq!(clock.now().to_string(), "2024-06-01T12:01:00Z");
//! ```

#![forbid(unsafe_code)]

use std::fmt::Debug;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// Source of the current time.
pub trait Clock: Send + Sync + Debug {
    /// Seconds since 1970-01-01T00:00:00Z.
    fn unix_seconds(&self) -> u64;

    /// The current instant (by default [`Clock::unix_seconds`], whole seconds).
    fn now(&self) -> jiff::Timestamp {
        timestamp(self.unix_seconds())
    }
}

/// A clock shared by every part of the server.
pub type SharedClock = Arc<dyn Clock>;

/// The instant of `unix_seconds` (saturating at jiff's range).
pub fn timestamp(unix_seconds: u64) -> jiff::Timestamp {
    i64::try_from(unix_seconds)
        .ok()
        .and_then(|seconds| jiff::Timestamp::from_second(seconds).ok())
        .unwrap_or(jiff::Timestamp::MAX)
}

/// The wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn unix_seconds(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    }

    fn now(&self) -> jiff::Timestamp {
        jiff::Timestamp::now()
    }
}

/// A clock that moves only when told to (tests).
#[derive(Debug, Default)]
pub struct ManualClock(AtomicU64);

impl ManualClock {
    /// A clock standing at `unix_seconds`.
    pub fn new(unix_seconds: u64) -> Self {
        Self(AtomicU64::new(unix_seconds))
    }

    /// Moves the clock forward.
    pub fn advance(&self, seconds: u64) {
        self.0.fetch_add(seconds, Ordering::SeqCst);
    }

    /// Sets the clock.
    pub fn set(&self, unix_seconds: u64) {
        self.0.store(unix_seconds, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn unix_seconds(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_range_seconds_saturate() {
        assert_eq!(timestamp(u64::MAX), jiff::Timestamp::MAX);
        assert_eq!(timestamp(0), jiff::Timestamp::UNIX_EPOCH);
    }

    #[test]
    fn the_system_clock_agrees_with_itself() {
        let clock = SystemClock;
        let seconds = clock.unix_seconds();
        let now = clock.now().as_second();
        assert!(
            now >= i64::try_from(seconds).unwrap_or(i64::MAX) - 1,
            "{now} vs {seconds}"
        );
    }
}
