//! When a zone is transferred again: the loop shared by the edge's follower
//! ([`Follower`](super::follower::Follower)) and the third-party RPZ feeds
//! ([`RpzFeed`](super::rpz_feed::RpzFeed)): at once (or after the refresh when something is
//! in force already), on a wake-up (NOTIFY), every refresh after a success, after the retry
//! delay after a failure.

use std::net::SocketAddr;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use domain::tsig::Key;

use super::unix_now;
use super::wire;
use super::zone::{Diff, Records};

/// One transfer's network timeout.
const TIMEOUT: Duration = Duration::from_secs(5);

/// The wake-ups of one transfer thread (a NOTIFY asks for a transfer now).
#[derive(Debug, Default)]
pub struct Wakes(Mutex<Option<mpsc::Sender<()>>>);

impl Wakes {
    /// Asks the thread for a transfer now (nothing before it runs).
    pub fn wake(&self) {
        if let Some(tx) = self
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
        {
            let _ = tx.send(());
        }
    }

    /// The receiving end for the thread (replaces an earlier one).
    pub fn receiver(&self) -> mpsc::Receiver<()> {
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
}

/// Runs transfers until `wakes` is disconnected: `transfer` says whether what is in force
/// changed (`changed` is called then) or why it failed (`failed` gets the reason).
pub fn run(
    wakes: &mpsc::Receiver<()>,
    timing: Timing,
    mut transfer: impl FnMut() -> Result<bool, String>,
    mut changed: impl FnMut(),
    mut failed: impl FnMut(&str),
) {
    let mut wait = timing.first;
    loop {
        match wakes.recv_timeout(wait) {
            Ok(()) | Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        }
        while wakes.try_recv().is_ok() {}
        match transfer() {
            Ok(true) => {
                changed();
                wait = timing.refresh;
            }
            Ok(false) => wait = timing.refresh,
            Err(e) => {
                failed(&e);
                wait = timing.retry;
            }
        }
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
    /// transfers, full_transfers.
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
        Err(error) => copy.last_error = Some(error.clone()),
    }
    outcome
}
