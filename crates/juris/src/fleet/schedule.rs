//! When a zone is transferred again: the loop shared by the edge's follower
//! ([`Follower`](super::follower::Follower)) and the third-party RPZ feeds
//! ([`RpzFeed`](super::rpz_feed::RpzFeed)): at once (or after the refresh when something is
//! in force already), on a wake-up (NOTIFY), every refresh after a success, after the retry
//! delay after a failure.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use domain::tsig::Key;

use tracing::{error, info};

use super::snapshot;
use super::unix_now;
use super::wire;
use super::zone::{Diff, Records};

/// One transfer's network timeout.
const TIMEOUT: Duration = Duration::from_secs(5);

/// What wakes a transfer thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// A transfer now (NOTIFY).
    Transfer,
    /// Run the report hook (an edge: the loader put a new serial in force, tell the primary).
    Report,
}

/// The wake-ups of one transfer thread.
#[derive(Debug, Default)]
pub struct Wakes(Mutex<Option<mpsc::Sender<Wake>>>);

impl Wakes {
    /// Asks the thread for `wake` (nothing before it runs).
    pub fn send(&self, wake: Wake) {
        if let Some(tx) = self
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
        {
            let _ = tx.send(wake);
        }
    }

    /// Asks the thread for a transfer now (a NOTIFY).
    pub fn wake(&self) {
        self.send(Wake::Transfer);
    }

    /// The receiving end for the thread (replaces an earlier one).
    pub fn receiver(&self) -> mpsc::Receiver<Wake> {
        let (tx, rx) = mpsc::channel();
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(tx);
        rx
    }
}

/// How a transfer thread waits.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// Before the first transfer: zero when nothing is in force yet.
    pub first: Duration,
    /// After a success.
    pub refresh: Duration,
    /// After a failure.
    pub retry: Duration,
    /// When the snapshot hook runs after transfers (`None`: never; the transfer hook writes
    /// the snapshot itself).
    pub snapshot: Option<SnapshotDelay>,
}

/// The snapshot is written once no transfer came for `quiet` after a successful one, at
/// most `max` after the first it does not hold, and when the thread ends: it is not on the way
/// to enforcement, and a burst of changes does not write it once per change.
#[derive(Debug, Clone, Copy)]
pub struct SnapshotDelay {
    /// Without transfers this long.
    pub quiet: Duration,
    /// At most this long after the first transfer not written.
    pub max: Duration,
}

/// What a transfer thread does: `transfer` says whether what is in force changed (then
/// `changed` runs) or why it failed (`failed` gets the reason); `report` runs on a
/// [`Wake::Report`]; `snapshot` as [`Timing::snapshot`] says (it writes nothing when the
/// snapshot holds the serial in force already).
pub struct Hooks<T, C, F, R, S> {
    /// One transfer.
    pub transfer: T,
    /// What is in force changed.
    pub changed: C,
    /// A transfer failed.
    pub failed: F,
    /// A report was asked for.
    pub report: R,
    /// The snapshot is due.
    pub snapshot: S,
}

/// Runs transfers until `wakes` is disconnected: at `timing.first`, on a [`Wake::Transfer`]
/// (NOTIFY), `timing.refresh` after a success, `timing.retry` after a failure; a
/// [`Wake::Report`] runs the report hook without moving the next transfer; the snapshot hook
/// runs as `timing.snapshot` says.
pub fn run<T, C, F, R, S>(
    wakes: &mpsc::Receiver<Wake>,
    timing: Timing,
    mut hooks: Hooks<T, C, F, R, S>,
) where
    T: FnMut() -> Result<bool, String>,
    C: FnMut(),
    F: FnMut(&str),
    R: FnMut(),
    S: FnMut(),
{
    let mut next = Instant::now() + timing.first;
    // Successful transfers since the snapshot hook last ran: (first, last).
    let mut unsaved: Option<(Instant, Instant)> = None;
    loop {
        let due = timing.snapshot.and_then(|delay| {
            unsaved.map(|(first, last)| (last + delay.quiet).min(first + delay.max))
        });
        let until = due.map_or(next, |due| due.min(next));
        let (mut transfer, mut report) =
            match wakes.recv_timeout(until.saturating_duration_since(Instant::now())) {
                Ok(Wake::Transfer) => (true, false),
                Err(mpsc::RecvTimeoutError::Timeout) => (Instant::now() >= next, false),
                Ok(Wake::Report) => (false, true),
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    if unsaved.is_some() {
                        (hooks.snapshot)();
                    }
                    return;
                }
            };
        while let Ok(wake) = wakes.try_recv() {
            transfer |= wake == Wake::Transfer;
            report |= wake == Wake::Report;
        }
        if report {
            (hooks.report)();
        }
        if due.is_some_and(|due| Instant::now() >= due) {
            (hooks.snapshot)();
            unsaved = None;
        }
        if !transfer {
            continue;
        }
        let wait = match (hooks.transfer)() {
            Ok(changed) => {
                if changed {
                    (hooks.changed)();
                }
                if timing.snapshot.is_some() {
                    let now = Instant::now();
                    unsaved = Some((unsaved.map_or(now, |(first, _)| first), now));
                }
                timing.refresh
            }
            Err(e) => {
                (hooks.failed)(&e);
                timing.retry
            }
        };
        next = Instant::now() + wait;
    }
}

/// Before the first transfer of a thread: at once when nothing is in force or the last attempt
/// failed (started from a snapshot), else after `refresh`.
pub fn first_wait(copy: &ZoneCopy, refresh: Duration) -> Duration {
    if copy.serial.is_none() || copy.last_error.is_some() {
        Duration::ZERO
    } else {
        refresh
    }
}

/// What a transfer thread keeps of the zone it copies.
#[derive(Debug, Default)]
pub struct ZoneCopy {
    /// The serial in force (`None`: nothing yet, the next transfer is an AXFR).
    pub serial: Option<u32>,
    /// The records in force.
    pub records: Arc<Records>,
    /// Unix time of the last applied transfer.
    pub last_transfer: Option<u64>,
    /// Unix time the primary last confirmed (or sent) what is in force.
    pub last_check: Option<u64>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// Applied transfers.
    pub transfers: u64,
    /// Of which whole zones.
    pub full_transfers: u64,
    /// Failed attempts.
    pub failures: u64,
    /// Why the last snapshot could not be written (cleared by the next good write).
    pub snapshot_error: Option<String>,
    /// The serial the snapshot file holds (written or loaded).
    pub snapshot_serial: Option<u32>,
}

impl ZoneCopy {
    /// A transfer's result is now in force.
    pub fn applied(&mut self, serial: u32, records: Records, full: bool) {
        self.serial = Some(serial);
        self.records = Arc::new(records);
        self.last_transfer = Some(unix_now());
        self.transfers += 1;
        self.full_transfers += u64::from(full);
    }

    /// An IXFR's difference is now in force (applied in place when no one else holds the
    /// records).
    pub fn patched(&mut self, serial: u32, diff: Diff) {
        diff.apply(Arc::make_mut(&mut self.records));
        self.serial = Some(serial);
        self.last_transfer = Some(unix_now());
        self.transfers += 1;
    }

    /// `status` with the copy's fields added: serial, last_transfer, last_check,
    /// `lag_seconds` (since the primary last confirmed what is in force), last_error,
    /// transfers, full_transfers, failures, snapshot_error, snapshot_ok.
    pub fn status(&self, mut status: serde_json::Value) -> serde_json::Value {
        let now = unix_now();
        if let Some(object) = status.as_object_mut() {
            let fields = serde_json::json!({
                "serial": self.serial,
                "last_transfer": self.last_transfer,
                "last_check": self.last_check,
                "lag_seconds": self.last_check.map(|t| now.saturating_sub(t)),
                "last_error": self.last_error,
                "transfers": self.transfers,
                "full_transfers": self.full_transfers,
                "failures": self.failures,
                "snapshot_error": self.snapshot_error,
                "snapshot_ok": u8::from(self.snapshot_error.is_none()),
            });
            if let serde_json::Value::Object(fields) = fields {
                object.extend(fields);
            }
        }
        status
    }
}

/// A transfer thread's state, holding its [`ZoneCopy`].
pub trait Copied {
    /// The copy.
    fn copy(&mut self) -> &mut ZoneCopy;
}

/// Where a zone comes from.
pub struct Origin {
    /// The primary.
    pub primary: SocketAddr,
    /// The zone (absolute, lower-case).
    pub zone: String,
    /// The SOA names of our IXFR request are made under it.
    pub suffix: String,
    /// Signs the request and checks the responses.
    pub key: Option<Key>,
}

impl std::fmt::Debug for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Origin")
            .field("primary", &self.primary)
            .field("zone", &self.zone)
            .finish_non_exhaustive()
    }
}

/// What a transfer brought.
#[derive(Debug)]
pub enum Received {
    /// The whole zone (AXFR, or an IXFR answered in AXFR form).
    Full(Records),
    /// The net difference (IXFR) to `base`, the records of the copy it was asked from (the
    /// `Arc` is shared with the copy: drop it before changing the copy in place).
    Diff {
        /// The copy's records when the transfer was asked.
        base: Arc<Records>,
        /// The difference.
        diff: Diff,
    },
}

impl Received {
    /// The zone's records now, and whether they came whole.
    pub fn into_records(self) -> (Records, bool) {
        match self {
            Received::Full(records) => (records, true),
            Received::Diff { base, diff } => {
                let mut records = Arc::unwrap_or_clone(base);
                diff.apply(&mut records);
                (records, false)
            }
        }
    }
}

/// One transfer attempt (IXFR from the serial of the copy in `state`, AXFR without one); what it brought
/// (serial, records, whole zone) is handed to `apply`, which says whether what is in force
/// changed (nothing when up to date); the bookkeeping after it: a success
/// is a check of the primary (and clears the error), a failure is the last error.
pub fn attempt<S: Copied>(
    state: &Mutex<S>,
    origin: &Origin,
    apply: impl FnOnce(u32, Records, bool) -> Result<bool, String>,
) -> Result<bool, String> {
    attempt_received(state, origin, |serial, received| {
        let (records, full) = received.into_records();
        apply(serial, records, full)
    })
}

/// [`attempt`], handing over an IXFR as the difference it is ([`Received`]).
pub fn attempt_received<S: Copied>(
    state: &Mutex<S>,
    origin: &Origin,
    apply: impl FnOnce(u32, Received) -> Result<bool, String>,
) -> Result<bool, String> {
    let (serial, records) = {
        let mut guard = state.lock().unwrap_or_else(PoisonError::into_inner);
        let copy = guard.copy();
        (copy.serial, Arc::clone(&copy.records))
    };
    let outcome = wire::transfer(
        origin.primary,
        &origin.zone,
        &origin.suffix,
        origin.key.as_ref(),
        serial.map(|s| (s, &*records)),
        TIMEOUT,
    )
    .and_then(|transfer| match transfer {
        wire::Transfer::UpToDate => Ok(false),
        wire::Transfer::Full(serial, records) => apply(serial, Received::Full(records)),
        wire::Transfer::Incremental(serial, diff) => apply(
            serial,
            Received::Diff {
                base: records,
                diff,
            },
        ),
    });
    let mut guard = state.lock().unwrap_or_else(PoisonError::into_inner);
    let copy = guard.copy();
    match &outcome {
        Ok(_) => {
            copy.last_check = Some(unix_now());
            copy.last_error = None;
        }
        Err(error) => {
            copy.last_error = Some(error.clone());
            copy.failures += 1;
        }
    }
    outcome
}

/// Writes the copy in `state` to the snapshot at `path`, unless the file holds its serial
/// already. A failure (disk full) is logged and kept in the copy (`snapshot_error`); what is
/// in force is not affected. The caller runs one at a time per file.
pub fn save_snapshot<S: Copied>(state: &Mutex<S>, origin: &Origin, path: &Path) {
    let Some((serial, records, ())) = snapshot_due(state, |_| ()) else {
        return;
    };
    let written = snapshot::write(path, origin.primary, &origin.zone, serial, &records, None);
    // An IXFR meanwhile changes the copy in place (no copy of the zone) once this lets go.
    drop(records);
    snapshot_written(state, origin, serial, written);
}

/// What a snapshot write takes from `state`, under its lock: the serial in force, its records
/// and what `take` adds; `None` when nothing is in force or the file holds that serial already.
pub fn snapshot_due<S: Copied, P>(
    state: &Mutex<S>,
    take: impl FnOnce(&mut S) -> P,
) -> Option<(u32, Arc<Records>, P)> {
    let mut guard = state.lock().unwrap_or_else(PoisonError::into_inner);
    let copy = guard.copy();
    let serial = copy.serial?;
    if copy.snapshot_serial == Some(serial) {
        return None;
    }
    let records = Arc::clone(&copy.records);
    Some((serial, records, take(&mut guard)))
}

/// The bookkeeping after a snapshot write of `serial` (see [`save_snapshot`]).
pub fn snapshot_written<S: Copied>(
    state: &Mutex<S>,
    origin: &Origin,
    serial: u32,
    written: Result<(), String>,
) {
    let mut guard = state.lock().unwrap_or_else(PoisonError::into_inner);
    let copy = guard.copy();
    match written {
        Ok(()) => {
            copy.snapshot_error = None;
            copy.snapshot_serial = Some(serial);
        }
        Err(e) => {
            error!(zone = %origin.zone, "fleet: the snapshot could NOT be written (what is in force is not affected; a restart while the primary is unreachable would start from an older snapshot): {e}");
            copy.snapshot_error = Some(e);
        }
    }
}

/// Starts from the snapshot at `path`: its records go to `apply` (which rebuilds what they
/// carry, or says why it cannot), then become the copy in force. `Ok(false)`: no snapshot.
pub fn load_snapshot<S: Copied>(
    state: &Mutex<S>,
    origin: &Origin,
    path: &Path,
    apply: impl FnOnce(&mut S, u32, &Records) -> Result<(), String>,
) -> Result<bool, String> {
    let Some(loaded) = snapshot::read(path, &origin.zone)? else {
        return Ok(false);
    };
    let mut guard = state.lock().unwrap_or_else(PoisonError::into_inner);
    apply(&mut guard, loaded.serial, &loaded.records)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let copy = guard.copy();
    copy.serial = Some(loaded.serial);
    copy.snapshot_serial = Some(loaded.serial);
    copy.records = Arc::new(loaded.records);
    info!(
        path = %path.display(),
        zone = %origin.zone,
        serial = loaded.serial,
        written_at = loaded.written_at,
        "fleet: starting from the snapshot (the primary is unreachable)"
    );
    Ok(true)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "test code")]
mod tests {
    use super::*;

    #[test]
    fn a_report_runs_its_hook_without_a_transfer_and_a_notify_transfers_at_once() {
        let (tx, rx) = mpsc::channel();
        let (events_tx, events) = mpsc::channel();
        let thread = std::thread::spawn(move || {
            let hour = Duration::from_secs(3600);
            let timing = Timing {
                first: Duration::ZERO,
                refresh: hour,
                retry: hour,
                snapshot: None,
            };
            let (t, c, f, r) = (
                events_tx.clone(),
                events_tx.clone(),
                events_tx.clone(),
                events_tx,
            );
            let mut attempts = 0;
            let hooks = Hooks {
                transfer: move || {
                    attempts += 1;
                    t.send("transfer").unwrap();
                    // The first changes what is in force, the second fails.
                    match attempts {
                        1 => Ok(true),
                        _ => Err("cut short".to_owned()),
                    }
                },
                changed: move || c.send("changed").unwrap(),
                failed: move |_: &str| f.send("failed").unwrap(),
                report: move || r.send("report").unwrap(),
                snapshot: || unreachable!("no snapshot timing"),
            };
            run(&rx, timing, hooks);
        });
        let next = || events.recv().unwrap();
        assert_eq!((next(), next()), ("transfer", "changed"));
        tx.send(Wake::Report).unwrap();
        assert_eq!(next(), "report");
        tx.send(Wake::Transfer).unwrap();
        assert_eq!((next(), next()), ("transfer", "failed"));
        drop(tx);
        thread.join().unwrap();
        // Nothing else ran: the refresh and the retry are an hour away.
        assert_eq!(events.try_iter().count(), 0);
    }

    #[test]
    fn the_snapshot_waits_for_quiet_transfers_and_is_written_when_the_thread_ends() {
        let (tx, rx) = mpsc::channel();
        let (events_tx, events) = mpsc::channel();
        let run_with = move |rx: mpsc::Receiver<Wake>, quiet: Duration| {
            let hour = Duration::from_secs(3600);
            let timing = Timing {
                first: Duration::ZERO,
                refresh: hour,
                retry: hour,
                snapshot: Some(SnapshotDelay { quiet, max: hour }),
            };
            let (t, s) = (events_tx.clone(), events_tx.clone());
            let hooks = Hooks {
                transfer: move || {
                    t.send("transfer").unwrap();
                    Ok(false)
                },
                changed: || {},
                failed: |_: &str| {},
                report: || {},
                snapshot: move || s.send("snapshot").unwrap(),
            };
            std::thread::spawn(move || run(&rx, timing, hooks))
        };
        // A quiet hour away: no snapshot after the transfers, one when the thread ends.
        let thread = run_with(rx, Duration::from_secs(3600));
        let next = || events.recv().unwrap();
        assert_eq!(next(), "transfer");
        tx.send(Wake::Transfer).unwrap();
        assert_eq!(next(), "transfer");
        drop(tx);
        thread.join().unwrap();
        assert_eq!(next(), "snapshot");
        assert_eq!(events.try_iter().count(), 0);
        // No quiet delay: the snapshot follows the transfer.
        let (tx, rx) = mpsc::channel();
        let thread = run_with(rx, Duration::ZERO);
        assert_eq!((next(), next()), ("transfer", "snapshot"));
        drop(tx);
        thread.join().unwrap();
        // Written already: not again at the end.
        assert_eq!(events.try_iter().count(), 0);
    }
}
