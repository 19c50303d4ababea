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
use super::zone::{self, Records, Rr};
use super::{unix_now, FleetSettings};
use crate::orders::LoaderHandle;

/// The snapshot's file name in the data directory.
pub const SNAPSHOT_FILE: &str = "fleet-snapshot.json";
/// Wait after a failed transfer.
const RETRY: Duration = Duration::from_secs(10);

#[derive(Debug, Default)]
struct State {
    copy: schedule::ZoneCopy,
    orders: Option<Arc<Vec<Order>>>,
    /// Where the orders in force came from: `transfer`, `snapshot`.
    origin: Option<&'static str>,
    snapshot_error: Option<String>,
}

/// A follower of one primary.
pub struct Follower {
    primary: SocketAddr,
    zone: String,
    origin: schedule::Origin,
    key_name: Option<String>,
    data_dir: PathBuf,
    state: Mutex<State>,
    wake: schedule::Wakes,
}

impl std::fmt::Debug for Follower {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Follower")
            .field("primary", &self.primary)
            .field("zone", &self.zone)
            .finish_non_exhaustive()
    }
}

/// The snapshot file.
#[derive(Debug, Serialize, Deserialize)]
struct Snapshot {
    primary: String,
    zone: String,
    serial: u32,
    written_at: u64,
    /// (owner, type, data in hex).
    records: Vec<(String, u16, String)>,
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
        let origin = schedule::Origin {
            primary,
            zone: settings.orders_zone(),
            suffix: settings.zone_suffix.clone(),
            key,
        };
        Ok(Follower {
            primary,
            zone: settings.orders_zone(),
            origin,
            key_name: first.map(|k| k.name.clone()),
            data_dir: data_dir.to_owned(),
            state: Mutex::new(State::default()),
            wake: schedule::Wakes::default(),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The primary.
    pub fn primary(&self) -> SocketAddr {
        self.primary
    }

    /// The last good orders (`None` before any transfer or snapshot).
    pub fn orders(&self) -> Option<Arc<Vec<Order>>> {
        self.state().orders.clone()
    }

    /// One transfer (IXFR from our serial, AXFR without one). `Ok(true)` when the orders
    /// changed. On `Err` nothing changes: the last good orders stay in force.
    pub fn transfer_once(&self) -> Result<bool, String> {
        schedule::attempt(&self.state, &self.origin, |s, r, f| self.apply(s, r, f))
    }

    fn apply(&self, serial: u32, records: Records, full: bool) -> Result<bool, String> {
        let orders = zone::decode_orders(&self.zone, &records).map_err(|e| {
            format!(
                "corrupt transfer of {} serial {serial} from {}: {e}",
                self.zone, self.primary
            )
        })?;
        let changed = {
            let mut state = self.state();
            let changed = state.orders.as_deref() != Some(&orders);
            state.copy.applied(serial, records, full);
            state.orders = Some(Arc::new(orders));
            state.origin = Some("transfer");
            changed
        };
        info!(
            primary = %self.primary,
            zone = %self.zone,
            serial,
            kind = if full { "AXFR" } else { "IXFR" },
            "fleet: transfer applied"
        );
        self.write_snapshot();
        Ok(changed)
    }

    fn snapshot_path(&self) -> PathBuf {
        self.data_dir.join(SNAPSHOT_FILE)
    }

    /// Writes what is in force to the snapshot (a temporary file, then renamed). A failure
    /// (disk full) is logged and shown in the status; the follower keeps running.
    fn write_snapshot(&self) {
        let snapshot = {
            let state = self.state();
            let Some(serial) = state.copy.serial else {
                return;
            };
            Snapshot {
                primary: self.primary.to_string(),
                zone: self.zone.clone(),
                serial,
                written_at: unix_now(),
                records: state
                    .copy
                    .records
                    .iter()
                    .map(|rr| {
                        let hex: String = rr.rdata.iter().map(|b| format!("{b:02x}")).collect();
                        (rr.owner.clone(), rr.rtype, hex)
                    })
                    .collect(),
            }
        };
        let path = self.snapshot_path();
        let temporary = path.with_extension("json.tmp");
        let written = serde_json::to_vec(&snapshot)
            .map_err(std::io::Error::other)
            .and_then(|bytes| std::fs::write(&temporary, bytes))
            .and_then(|()| std::fs::rename(&temporary, &path));
        let mut state = self.state();
        match written {
            Ok(()) => state.snapshot_error = None,
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
        let snapshot: Snapshot = serde_json::from_slice(&bytes)
            .map_err(|e| format!("{}: not a snapshot: {e}", path.display()))?;
        if snapshot.zone != self.zone {
            return Err(format!(
                "{}: a snapshot of {}, not of {}",
                path.display(),
                snapshot.zone,
                self.zone
            ));
        }
        let mut records = Records::new();
        for (owner, rtype, hex) in snapshot.records {
            let rdata = decode_hex(&hex)
                .ok_or_else(|| format!("{}: record {owner}: bad data", path.display()))?;
            records.insert(Rr {
                owner,
                rtype,
                rdata,
            });
        }
        let orders = zone::decode_orders(&self.zone, &records)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let mut state = self.state();
        state.copy.serial = Some(snapshot.serial);
        state.copy.records = Arc::new(records);
        state.orders = Some(Arc::new(orders));
        state.origin = Some("snapshot");
        info!(
            path = %path.display(),
            serial = snapshot.serial,
            written_at = snapshot.written_at,
            "fleet: the primary is unreachable; enforcing the orders of the snapshot"
        );
        Ok(true)
    }

    /// A NOTIFY arrived on a DNS listener for `zone` (wire form) from `from`: a transfer is
    /// scheduled when it names our zone (the transfer itself is authenticated).
    pub fn notified(&self, zone: &[u8], from: std::net::IpAddr) -> bool {
        let ours = zone::name_wire(&self.zone).unwrap_or_default();
        if !zone.eq_ignore_ascii_case(&ours) {
            return false;
        }
        tracing::debug!(%from, zone = %self.zone, "fleet: NOTIFY received");
        self.wake();
        true
    }

    /// Asks the follower's thread for a transfer now.
    pub fn wake(&self) {
        self.wake.wake();
    }

    /// Starts the follower's thread: transfers on NOTIFY, refresh and retry; a change wakes
    /// `loader`.
    pub fn spawn(self: &Arc<Self>, loader: LoaderHandle) -> anyhow::Result<()> {
        let rx = self.wake.receiver();
        let follower = Arc::clone(self);
        std::thread::Builder::new()
            .name("juris-follow".into())
            .spawn(move || follower.run(&rx, &loader))
            .map_err(|e| anyhow::anyhow!("follower thread: {e}"))?;
        Ok(())
    }

    fn run(&self, wakes: &mpsc::Receiver<()>, loader: &LoaderHandle) {
        let refresh = Duration::from_secs(u64::from(zone::REFRESH));
        let first = if self.state().copy.last_error.is_some() || self.state().copy.serial.is_none()
        {
            Duration::ZERO
        } else {
            refresh
        };
        let timing = schedule::Timing {
            first,
            refresh,
            retry: RETRY,
        };
        schedule::run(
            wakes,
            timing,
            || self.transfer_once(),
            || loader.reload("zone transfer from the fleet primary"),
            |e| {
                error!(
                    primary = %self.primary,
                    "fleet: transfer FAILED; the last good orders stay in force: {e}"
                )
            },
        );
    }

    /// The status: primary, serial in force, last successful transfer, lag.
    pub fn status(&self) -> serde_json::Value {
        let state = self.state();
        // With serial, last_transfer, last_check, lag_seconds, last_error, transfer counts.
        state.copy.status(serde_json::json!({
            "role": "edge",
            "primary": self.primary.to_string(),
            "zone": self.zone,
            "tsig_key": self.key_name,
            "orders": state.orders.as_ref().map(|o| o.len()),
            "origin": state.origin,
            "snapshot_error": state.snapshot_error,
        }))
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
