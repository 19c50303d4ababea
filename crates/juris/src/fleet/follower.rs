//! The edge: follows a primary's `orders.<suffix>` zone and hands the orders it carries to the
//! loader ([`FleetSource`](crate::orders::FleetSource)), through the same validation as
//! orders from files and the store.
//!
//! ```text
//!  start: AXFR (bounded wait) ─ok─► orders ─► snapshot (DATA_DIR/fleet-snapshot.json)
//!                             └fail─► the snapshot, if any (a restart during an outage still
//!                                     enforces the orders it had)
//!  thread juris-follow: waits for a NOTIFY (the DNS listeners), the SOA refresh (60 s) or the
//!         retry (10 s) ─► IXFR from our serial (AXFR when we have none; the primary answers
//!         an IXFR it cannot serve from its journal with the whole zone)
//!         ─► decode ─ok─► orders changed? ─► LoaderHandle::reload ─► validate, diff, publish
//!                  └corrupt─► ERROR, the last good orders stay in force
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use juris_policy::Order;
use serde::{Deserialize, Serialize};
use tracing::{error, info};

use super::schedule;
use super::wire;
use super::zone;
use super::{unix_now, FleetSettings};
use crate::orders::LoaderHandle;

/// The snapshot's file name in the data directory.
pub const SNAPSHOT_FILE: &str = "fleet-snapshot.json";
/// Wait after a failed transfer.
const RETRY: Duration = Duration::from_secs(10);
/// The snapshot is written once no transfer came for this long after a change…
const SNAPSHOT_QUIET: Duration = Duration::from_secs(1);
/// …or this long after the first change it does not hold, whichever comes first.
const SNAPSHOT_MAX: Duration = Duration::from_secs(30);
/// How long a report waits for the primary's answer (3 tries).
const REPORT_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Debug, Default)]
struct State {
    /// The zone as last transferred, and the transfers' bookkeeping (shared with the RPZ
    /// feeds: `schedule.rs`).
    copy: schedule::ZoneCopy,
    /// The orders of `copy`, by owner label (kept in step with each IXFR).
    decoded: zone::DecodedOrders,
    orders: Option<Arc<Vec<Arc<Order>>>>,
    /// Where the orders in force came from: `transfer`, `snapshot`.
    origin: Option<&'static str>,
    snapshot_error: Option<String>,
    /// The serial the snapshot file holds.
    snapshot_serial: Option<u32>,
    /// The serial of the orders the loader read last.
    handed: Option<u32>,
    /// The serial whose orders the loader put in force (a load that rejected none of them),
    /// and since when.
    in_force: Option<(u32, u64)>,
    /// Reports of the serial in force the primary acknowledged.
    reports: u64,
    last_report_error: Option<String>,
}

/// What wakes the follower's thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wake {
    /// A transfer now (NOTIFY).
    Transfer,
    /// The loader put a new serial in force: tell the primary.
    Report,
}

/// A follower of one primary.
pub struct Follower {
    /// The primary, the orders zone, the suffix and the key transfers are signed with.
    origin: schedule::Origin,
    key_name: Option<String>,
    data_dir: PathBuf,
    state: Mutex<State>,
    wake: Mutex<Option<mpsc::Sender<Wake>>>,
    /// One snapshot write at a time (the thread, shutdown).
    snapshot_lock: Mutex<()>,
}

impl std::fmt::Debug for Follower {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Follower")
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

/// What the snapshot file says of itself (its first line, JSON).
#[derive(Debug, Serialize, Deserialize)]
struct SnapshotHeader {
    primary: String,
    zone: String,
    serial: u32,
    written_at: u64,
    /// How many records follow.
    records: usize,
}

impl Follower {
    /// A follower of `settings.follow` signing with the first configured key.
    pub fn new(settings: &FleetSettings, data_dir: &Path) -> anyhow::Result<Follower> {
        let primary = settings
            .follow
            .ok_or_else(|| anyhow::anyhow!("fleet.follow is not set"))?;
        let first = settings.tsig_keys.first();
        let key = first
            .map(|k| k.key())
            .transpose()
            .map_err(anyhow::Error::msg)?;
        Ok(Follower {
            origin: schedule::Origin {
                primary,
                zone: settings.orders_zone(),
                suffix: settings.zone_suffix.clone(),
                key,
            },
            key_name: first.map(|k| k.name.clone()),
            data_dir: data_dir.to_owned(),
            state: Mutex::new(State::default()),
            wake: Mutex::new(None),
            snapshot_lock: Mutex::new(()),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The primary.
    pub fn primary(&self) -> SocketAddr {
        self.origin.primary
    }

    /// The last good orders (`None` before any transfer or snapshot).
    #[cfg(test)]
    pub fn orders(&self) -> Option<Arc<Vec<Arc<Order>>>> {
        self.state().orders.clone()
    }

    /// The last good orders, for the loader ([`FleetSource`](crate::orders::FleetSource)):
    /// their serial is what [`loaded`](Self::loaded) then puts in force.
    pub fn hand_over(&self) -> Option<Arc<Vec<Arc<Order>>>> {
        let mut state = self.state();
        state.handed = state.copy.serial;
        state.orders.clone()
    }

    /// The loader finished a load that read what [`hand_over`](Self::hand_over) gave;
    /// `clean`: it rejected none of those orders. A new serial in force is reported to the
    /// primary (an authenticated IXFR query over UDP carrying it).
    pub fn loaded(&self, clean: bool) {
        let report = {
            let mut state = self.state();
            let Some(handed) = state.handed else { return };
            if !clean {
                tracing::warn!(
                    serial = handed,
                    "fleet: an order of this serial was rejected here; the serial is not reported as in force"
                );
                return;
            }
            let fresh = state.in_force.map(|(s, _)| s) != Some(handed);
            if fresh {
                state.in_force = Some((handed, unix_now()));
            }
            fresh
        };
        if report {
            self.send(Wake::Report);
        }
    }

    /// Whether this edge enforces the primary's orders yet (`/readyz`): after the first
    /// transfer or snapshot the loader put in force.
    pub fn readiness(&self) -> (bool, String) {
        let state = self.state();
        match (state.in_force, state.origin) {
            (Some((serial, _)), origin) => (
                true,
                format!(
                    "serial {serial} of {} in force (from a {})",
                    self.origin.primary,
                    origin.unwrap_or("transfer")
                ),
            ),
            (None, _) => (
                false,
                format!(
                    "no transfer from {} nor snapshot in force yet{}",
                    self.origin.primary,
                    state
                        .copy
                        .last_error
                        .as_deref()
                        .map(|e| format!(": {e}"))
                        .unwrap_or_default()
                ),
            ),
        }
    }

    /// Tells the primary the serial in force; `Err` when it did not answer.
    pub fn report(&self) -> Result<(), String> {
        let Some((serial, _)) = self.state().in_force else {
            return Ok(());
        };
        let outcome = wire::report(
            self.origin.primary,
            &self.origin.zone,
            &self.origin.suffix,
            self.origin.key.as_ref(),
            serial,
            REPORT_TIMEOUT,
        );
        let mut state = self.state();
        match &outcome {
            Ok(()) => {
                state.reports += 1;
                state.last_report_error = None;
            }
            Err(e) => state.last_report_error = Some(e.clone()),
        }
        outcome
    }

    /// One transfer (IXFR from our serial, AXFR without one), then the snapshot. `Ok(true)`
    /// when the orders changed. On `Err` nothing changes: the last good orders stay in force.
    pub fn transfer_once(&self) -> Result<bool, String> {
        let changed = self.fetch()?;
        self.write_snapshot();
        Ok(changed)
    }

    /// [`transfer_once`](Self::transfer_once) without the snapshot (the thread writes it after
    /// the loader put the change in force: it is not on the way to enforcement).
    fn fetch(&self) -> Result<bool, String> {
        schedule::attempt_received(&self.state, &self.origin, |serial, received| {
            self.apply(serial, received)
        })
    }

    fn apply(&self, serial: u32, received: schedule::Received) -> Result<bool, String> {
        let corrupt = |e: String| {
            format!(
                "corrupt transfer of {} serial {serial} from {}: {e}",
                self.origin.zone, self.origin.primary
            )
        };
        let full = matches!(received, schedule::Received::Full(_));
        let changed = match received {
            schedule::Received::Full(records) => {
                let decoded =
                    zone::DecodedOrders::decode(&self.origin.zone, &records).map_err(corrupt)?;
                let orders = decoded.orders();
                let mut state = self.state();
                let changed = state.orders.as_deref() != Some(&orders);
                state.copy.applied(serial, records, true);
                state.decoded = decoded;
                state.orders = Some(Arc::new(orders));
                changed
            }
            schedule::Received::Diff { base, diff } => {
                // The copy's records are changed in place: the transfer's reference goes first.
                drop(base);
                let mut state = self.state();
                let changes = state
                    .decoded
                    .patch(&self.origin.zone, &diff)
                    .map_err(corrupt)?;
                let changed = state.decoded.commit(changes) || state.orders.is_none();
                if changed {
                    state.orders = Some(Arc::new(state.decoded.orders()));
                }
                state.copy.patched(serial, diff);
                changed
            }
        };
        self.state().origin = Some("transfer");
        info!(
            primary = %self.origin.primary,
            zone = %self.origin.zone,
            serial,
            kind = if full { "AXFR" } else { "IXFR" },
            "fleet: transfer applied"
        );
        Ok(changed)
    }

    fn snapshot_path(&self) -> PathBuf {
        self.data_dir.join(SNAPSHOT_FILE)
    }

    /// Whether the snapshot file is older than the copy in force.
    fn snapshot_behind(&self) -> bool {
        let state = self.state();
        state.copy.serial.is_some() && state.copy.serial != state.snapshot_serial
    }

    /// Writes the snapshot now if it is behind (shutdown: the follower's thread waits for a
    /// quiet moment).
    pub fn flush_snapshot(&self) {
        self.write_snapshot();
    }

    /// Writes what is in force to the snapshot (a temporary file, then renamed), unless it
    /// holds that serial already. A failure (disk full) is logged and shown in the status; the
    /// follower keeps running.
    fn write_snapshot(&self) {
        let _writing = self
            .snapshot_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let (serial, records) = {
            let state = self.state();
            let Some(serial) = state.copy.serial else {
                return;
            };
            if state.snapshot_serial == Some(serial) {
                return;
            }
            (serial, Arc::clone(&state.copy.records))
        };
        let path = self.snapshot_path();
        let temporary = path.with_extension("json.tmp");
        let header = SnapshotHeader {
            primary: self.origin.primary.to_string(),
            zone: self.origin.zone.clone(),
            serial,
            written_at: unix_now(),
            records: records.len(),
        };
        let written = std::fs::File::create(&temporary)
            .and_then(|file| {
                let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
                snapshot::write(&mut out, &header, &records)?;
                out.into_inner()
                    .map_err(std::io::IntoInnerError::into_error)
            })
            .and_then(|_| std::fs::rename(&temporary, &path));
        drop(records);
        let mut state = self.state();
        match written {
            Ok(()) => {
                state.snapshot_error = None;
                state.snapshot_serial = Some(serial);
            }
            Err(e) => {
                let _ = std::fs::remove_file(&temporary);
                error!(path = %path.display(), "fleet: the snapshot could NOT be written (the policy in force is not affected; a restart while the primary is unreachable would start from an older snapshot): {e}");
                state.snapshot_error = Some(format!("{}: {e}", path.display()));
            }
        }
    }

    /// Starts from the snapshot in the data directory. `Ok(false)`: there is none.
    pub fn load_snapshot(&self) -> Result<bool, String> {
        let path = self.snapshot_path();
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        let (header, records) = snapshot::read(&bytes)
            .map_err(|e| format!("{}: not a snapshot: {e}", path.display()))?;
        drop(bytes);
        if header.zone != self.origin.zone {
            return Err(format!(
                "{}: a snapshot of {}, not of {}",
                path.display(),
                header.zone,
                self.origin.zone
            ));
        }
        let decoded = zone::DecodedOrders::decode(&self.origin.zone, &records)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let mut state = self.state();
        state.copy.serial = Some(header.serial);
        state.copy.records = Arc::new(records);
        state.orders = Some(Arc::new(decoded.orders()));
        state.decoded = decoded;
        state.origin = Some("snapshot");
        state.snapshot_serial = Some(header.serial);
        info!(
            path = %path.display(),
            serial = header.serial,
            written_at = header.written_at,
            "fleet: the primary is unreachable; enforcing the orders of the snapshot"
        );
        Ok(true)
    }

    /// A NOTIFY arrived on a DNS listener for `zone` (wire form) from `from`: a transfer is
    /// scheduled when it names our zone (the transfer itself is authenticated).
    pub fn notified(&self, zone: &[u8], from: std::net::IpAddr) -> bool {
        let ours = zone::name_wire(&self.origin.zone).unwrap_or_default();
        if !zone.eq_ignore_ascii_case(&ours) {
            return false;
        }
        tracing::debug!(%from, zone = %self.origin.zone, "fleet: NOTIFY received");
        self.wake();
        true
    }

    /// Asks the follower's thread for a transfer now.
    pub fn wake(&self) {
        self.send(Wake::Transfer);
    }

    fn send(&self, wake: Wake) {
        if let Some(tx) = self
            .wake
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
        {
            let _ = tx.send(wake);
        }
    }

    /// Starts the follower's thread: transfers on NOTIFY, refresh and retry; a change wakes
    /// `loader`.
    pub fn spawn(self: &Arc<Self>, loader: LoaderHandle) -> anyhow::Result<()> {
        let (tx, rx) = mpsc::channel();
        *self.wake.lock().unwrap_or_else(PoisonError::into_inner) = Some(tx);
        let follower = Arc::clone(self);
        std::thread::Builder::new()
            .name("juris-follow".into())
            .spawn(move || follower.run(&rx, &loader))
            .map_err(|e| anyhow::anyhow!("follower thread: {e}"))?;
        Ok(())
    }

    fn run(&self, wakes: &mpsc::Receiver<Wake>, loader: &LoaderHandle) {
        let refresh = Duration::from_secs(u64::from(zone::REFRESH));
        let mut wait =
            if self.state().copy.last_error.is_some() || self.state().copy.serial.is_none() {
                Duration::ZERO
            } else {
                refresh
            };
        // The first load (before this thread) may have put a serial in force.
        let mut report = self.state().in_force.is_some();
        let mut next = std::time::Instant::now() + wait;
        // Transfers applied since the snapshot was written: (first, last). The snapshot waits
        // for a quiet moment (it is not on the way to enforcement, and a burst of changes
        // would otherwise write it once per change), SNAPSHOT_MAX at most.
        let mut unsaved: Option<(std::time::Instant, std::time::Instant)> = None;
        loop {
            if report {
                if let Err(e) = self.report() {
                    tracing::warn!(primary = %self.origin.primary, "fleet: the primary did not take the report of the serial in force (it learns it at the next transfer): {e}");
                }
            }
            let due =
                unsaved.map(|(first, last)| (last + SNAPSHOT_QUIET).min(first + SNAPSHOT_MAX));
            let until = due.map_or(next, |due| due.min(next));
            let mut transfer = match wakes
                .recv_timeout(until.saturating_duration_since(std::time::Instant::now()))
            {
                Ok(wake) => {
                    report = wake == Wake::Report;
                    wake == Wake::Transfer
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    report = false;
                    std::time::Instant::now() >= next
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    self.write_snapshot();
                    return;
                }
            };
            while let Ok(wake) = wakes.try_recv() {
                report |= wake == Wake::Report;
                transfer |= wake == Wake::Transfer;
            }
            if due.is_some_and(|due| std::time::Instant::now() >= due) {
                self.write_snapshot();
                unsaved = None;
            }
            if !transfer {
                continue;
            }
            match self.fetch() {
                Ok(changed) => {
                    if changed {
                        loader.reload("zone transfer from the fleet primary");
                    }
                    if self.snapshot_behind() {
                        let now = std::time::Instant::now();
                        unsaved = Some((unsaved.map_or(now, |(first, _)| first), now));
                    }
                    wait = refresh;
                    next = std::time::Instant::now() + wait;
                }
                Err(e) => {
                    error!(
                        primary = %self.origin.primary,
                        "fleet: transfer FAILED; the last good orders stay in force: {e}"
                    );
                    wait = RETRY;
                    next = std::time::Instant::now() + wait;
                }
            }
        }
    }

    /// The status: primary, serial in force, last successful transfer, lag.
    pub fn status(&self) -> serde_json::Value {
        let state = self.state();
        // With serial, last_transfer, last_check, lag_seconds (since the primary last
        // confirmed or sent what is in force), last_error and the transfer counts.
        state.copy.status(serde_json::json!({
            "role": "edge",
            "primary": self.origin.primary.to_string(),
            "zone": self.origin.zone,
            "tsig_key": self.key_name,
            "orders": state.orders.as_ref().map(|o| o.len()),
            "origin": state.origin,
            "snapshot_error": state.snapshot_error,
            // What the loader put in force, and since when (reported to the primary).
            "in_force_serial": state.in_force.map(|(s, _)| s),
            "in_force_since": state.in_force.map(|(_, t)| t),
            "reports": state.reports,
            "last_report_error": state.last_report_error,
            "snapshot_ok": u8::from(state.snapshot_error.is_none()),
        }))
    }
}

/// The snapshot file: `JURIS-FLEET-SNAPSHOT 2`, a JSON header line ([`SnapshotHeader`]),
/// then the zone's records, binary: owner length (u8), owner, type (u16), data length (u16),
/// data (big-endian). Written and read in one pass, without text conversion: a follower
/// restarting with millions of names starts enforcing them soon. The first version (JSON with
/// hex data) is still read.
mod snapshot {
    use std::io::Write;

    use super::{decode_hex, SnapshotHeader};
    use crate::fleet::zone::{Records, Rr};

    const MAGIC: &[u8] = b"JURIS-FLEET-SNAPSHOT 2\n";

    pub(super) fn write(
        out: &mut impl Write,
        header: &SnapshotHeader,
        records: &Records,
    ) -> std::io::Result<()> {
        out.write_all(MAGIC)?;
        serde_json::to_writer(&mut *out, header).map_err(std::io::Error::other)?;
        out.write_all(b"\n")?;
        for rr in records {
            let owner = u8::try_from(rr.owner.len()).map_err(std::io::Error::other)?;
            let data = u16::try_from(rr.rdata.len()).map_err(std::io::Error::other)?;
            out.write_all(&[owner])?;
            out.write_all(rr.owner.as_bytes())?;
            out.write_all(&rr.rtype.to_be_bytes())?;
            out.write_all(&data.to_be_bytes())?;
            out.write_all(&rr.rdata)?;
        }
        Ok(())
    }

    pub(super) fn read(bytes: &[u8]) -> Result<(SnapshotHeader, Records), String> {
        let Some(rest) = bytes.strip_prefix(MAGIC) else {
            return read_v1(bytes);
        };
        let line = rest
            .iter()
            .position(|b| *b == b'\n')
            .ok_or("no header line")?;
        let header: SnapshotHeader =
            serde_json::from_slice(&rest[..line]).map_err(|e| e.to_string())?;
        let mut rest = &rest[line + 1..];
        let truncated = || "truncated".to_owned();
        let take = |n: usize, rest: &mut &[u8]| -> Result<Vec<u8>, String> {
            let (head, tail) = rest.split_at_checked(n).ok_or_else(truncated)?;
            *rest = tail;
            Ok(head.to_vec())
        };
        // Sorted already (written from a set): the set is built in one pass.
        let mut records = Vec::with_capacity(header.records);
        while !rest.is_empty() {
            let owner = usize::from(take(1, &mut rest)?[0]);
            let owner = String::from_utf8(take(owner, &mut rest)?)
                .map_err(|_| "an owner name that is not text".to_owned())?;
            let fixed = take(4, &mut rest)?;
            let rtype = u16::from_be_bytes([fixed[0], fixed[1]]);
            let data = usize::from(u16::from_be_bytes([fixed[2], fixed[3]]));
            let rdata = take(data, &mut rest)?;
            records.push(Rr {
                owner,
                rtype,
                rdata,
            });
        }
        if records.len() != header.records {
            return Err(format!(
                "{} records, the header says {}",
                records.len(),
                header.records
            ));
        }
        Ok((header, records.into_iter().collect()))
    }

    /// The first version: one JSON document, records as (owner, type, data in hex).
    fn read_v1(bytes: &[u8]) -> Result<(SnapshotHeader, Records), String> {
        #[derive(serde::Deserialize)]
        struct V1 {
            primary: String,
            zone: String,
            serial: u32,
            written_at: u64,
            records: Vec<(String, u16, String)>,
        }
        let v1: V1 = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        let mut records = Records::new();
        for (owner, rtype, hex) in v1.records {
            let rdata = decode_hex(&hex).ok_or_else(|| format!("record {owner}: bad data"))?;
            records.insert(Rr {
                owner,
                rtype,
                rdata,
            });
        }
        let header = SnapshotHeader {
            primary: v1.primary,
            zone: v1.zone,
            serial: v1.serial,
            written_at: v1.written_at,
            records: records.len(),
        };
        Ok((header, records))
    }
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

impl schedule::Copied for State {
    fn copy(&mut self) -> &mut schedule::ZoneCopy {
        &mut self.copy
    }
}
