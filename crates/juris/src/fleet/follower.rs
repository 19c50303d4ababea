//! The edge: follows a primary's `orders.<suffix>` zone and hands the orders it carries to the
//! loader ([`FleetSource`](crate::orders::FleetSource)), through the same validation as
//! orders from files and the store.
//!
//! ```text
//!  start: the snapshot's validated orders (same primary, same rules, checksum; design 0043)
//!           ─ok─► handed to the loader as validated (compile, enforce); the zone records are
//!                 read on the thread before its first transfer (an IXFR from that serial)
//!         otherwise: AXFR (bounded wait) ─ok─► orders ─► snapshot (DATA_DIR/fleet-snapshot.json)
//!                             └fail─► the snapshot's records, if any (a restart during an
//!                                     outage still enforces the orders it had)
//!  thread juris-follow (schedule::run, as the RPZ feeds; its report hook tells the primary the
//!         serial in force): waits for a NOTIFY (the DNS listeners), the SOA refresh (60 s) or the
//!         retry (10 s) ─► IXFR from our serial (AXFR when we have none; the primary answers
//!         an IXFR it cannot serve from its journal with the whole zone)
//!         ─► decode (AXFR: whole; IXFR: only the touched orders, the difference applied to
//!            the records in place) ─ok─► orders changed? ─► LoaderHandle::reload ─► validate,
//!                  │                    diff, publish
//!                  └corrupt─► ERROR, the last good orders stay in force
//!         snapshot (fleet/snapshot.rs): 1 s after the last transfer, 30 s at most after the
//!         first it lacks, and at shutdown (off the path to enforcement); with each order as
//!         validated (only orders whose document changed are validated again)
//! ```

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use juris_policy::{Order, ValidatedOrder};
use tracing::{error, info};

use super::schedule;
use super::snapshot;
use super::wire;
use super::zone;
use super::{unix_now, FleetSettings};
use crate::orders::{LoaderHandle, Safeguards, SourceId};

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
    /// The serial of the orders the loader read last.
    handed: Option<u32>,
    /// The serial whose orders the loader put in force (a load that rejected none of them),
    /// and since when.
    in_force: Option<(u32, u64)>,
    /// Reports of the serial in force the primary acknowledged.
    reports: u64,
    last_report_error: Option<String>,
    /// Started from the snapshot's validated orders (design 0043), whose documents are not
    /// decoded yet (or could not be): what the loader is handed meanwhile.
    from_snapshot: Option<SnapshotOrders>,
    /// The snapshot's records are still to be read ([`Follower::complete_snapshot`]).
    records_pending: bool,
    /// The content hashes of the decoded documents, from the snapshot: for the loader's
    /// source, once.
    seed: Option<HashMap<String, (Arc<Order>, u64)>>,
}

/// The orders of a start from the snapshot's validated orders.
#[derive(Debug)]
struct SnapshotOrders {
    /// (content hash, order): taken by the first load.
    validated: Option<Vec<(u64, ValidatedOrder)>>,
    /// Their ids: later loads are told they are unchanged.
    ids: Vec<String>,
}

/// What the follower hands to the loader ([`FleetSource`](crate::orders::FleetSource)).
#[derive(Debug)]
pub enum Handed {
    /// The orders as transferred, and (once, after a start from the snapshot's validated
    /// orders) the content hash of each document.
    Documents {
        /// The orders.
        orders: Arc<Vec<Arc<Order>>>,
        /// Content hashes of documents, by id.
        seed: Option<HashMap<String, (Arc<Order>, u64)>>,
    },
    /// The snapshot's orders, validated with the rules in force: (content hash, order).
    Validated(Vec<(u64, ValidatedOrder)>),
    /// The snapshot's orders handed before as validated, unchanged: their ids.
    Unchanged(Vec<String>),
}

/// One order as the snapshot last wrote it: its document, content hash and validated entry
/// (`None`: it does not validate, left out).
#[derive(Debug)]
struct Checked {
    document: Arc<Order>,
    entry: Option<Vec<u8>>,
}

impl Checked {
    /// Validates `document` as the loader does for a fleet order and encodes it.
    fn of(document: &Arc<Order>) -> Checked {
        let id = SourceId::Fleet {
            order: document.id.clone(),
        };
        let entry = (|| {
            let content = crate::orders::document_hash(document).ok()?;
            let valid = Safeguards::validate_document(&id, document).ok()?;
            let header = serde_json::to_vec(&zone::header_of(document)).ok()?;
            snapshot::entry(content, &header, &valid)
        })();
        Checked {
            document: Arc::clone(document),
            entry,
        }
    }
}

/// A follower of one primary.
pub struct Follower {
    /// The primary, the orders zone, the suffix and the key transfers are signed with.
    origin: schedule::Origin,
    key_name: Option<String>,
    data_dir: PathBuf,
    state: Mutex<State>,
    wake: schedule::Wakes,
    /// Each order as the last snapshot wrote it, by id; locked by a write (one at a time:
    /// the thread, shutdown).
    checked: Mutex<HashMap<String, Checked>>,
}

impl std::fmt::Debug for Follower {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Follower")
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
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
            wake: schedule::Wakes::default(),
            checked: Mutex::new(HashMap::new()),
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
    pub fn hand_over(&self) -> Option<Handed> {
        let mut state = self.state();
        state.handed = state.copy.serial;
        if let Some(orders) = &state.orders {
            let orders = Arc::clone(orders);
            return Some(Handed::Documents {
                orders,
                seed: state.seed.take(),
            });
        }
        let from_snapshot = state.from_snapshot.as_mut()?;
        Some(match from_snapshot.validated.take() {
            Some(validated) => Handed::Validated(validated),
            None => Handed::Unchanged(from_snapshot.ids.clone()),
        })
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
            self.wake.send(schedule::Wake::Report);
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

    /// [`transfer_once`](Self::transfer_once) without the snapshot (the thread writes it once
    /// transfers are quiet: it is not on the way to enforcement).
    fn fetch(&self) -> Result<bool, String> {
        self.complete_snapshot();
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

    /// Writes the snapshot now if it is behind (shutdown: the follower's thread waits for a
    /// quiet moment).
    pub fn flush_snapshot(&self) {
        self.write_snapshot();
    }

    /// Writes what is in force to the snapshot, unless it holds that serial already. A
    /// failure (disk full) is logged and shown in the status; the follower keeps running.
    /// With each order as validated (design 0043): only the orders whose document changed
    /// since the last write are validated again.
    fn write_snapshot(&self) {
        let mut checked = self.checked.lock().unwrap_or_else(PoisonError::into_inner);
        let Some((serial, records, orders)) =
            schedule::snapshot_due(&self.state, |state| state.orders.clone())
        else {
            return;
        };
        let rules = snapshot::rules();
        let mut next = HashMap::new();
        let mut entries = Vec::new();
        if let (Some(_), Some(orders)) = (rules, &orders) {
            // Sorted by id.
            for document in orders.iter() {
                let done = match checked.remove(&document.id) {
                    Some(done) if Arc::ptr_eq(&done.document, document) => done,
                    _ => Checked::of(document),
                };
                next.insert(document.id.clone(), done);
            }
            entries = orders
                .iter()
                .filter_map(|o| next.get(&o.id).and_then(|c| c.entry.as_deref()))
                .collect();
        }
        let validated = rules.map(|rules| snapshot::Orders {
            rules,
            entries: std::mem::take(&mut entries),
        });
        let written = snapshot::write(
            &self.snapshot_path(),
            self.origin.primary,
            &self.origin.zone,
            serial,
            &records,
            validated.as_ref(),
        );
        drop(validated);
        // An IXFR meanwhile changes the copy in place once this lets go.
        drop(records);
        *checked = next;
        schedule::snapshot_written(&self.state, &self.origin, serial, written);
    }

    /// Starts from the snapshot's validated orders (design 0043): the loader compiles them
    /// without validating them again; the records are read later on the follower's thread
    /// ([`complete_snapshot`](Self::complete_snapshot)), before its first transfer.
    /// `Ok(false)`: no snapshot. `Err`: why its validated orders cannot be used (another
    /// primary or build, an older format, a failed checksum...): the caller falls back to a
    /// transfer or the records.
    pub fn start_from_snapshot(&self) -> Result<bool, String> {
        let path = self.snapshot_path();
        let Some(read) = snapshot::read_validated(&path, &self.origin.zone)? else {
            return Ok(false);
        };
        if read.primary != self.origin.primary.to_string() {
            return Err(format!(
                "{}: written for the primary {}, not {}",
                path.display(),
                read.primary,
                self.origin.primary
            ));
        }
        let bad = |e: String| format!("{}: not a snapshot: {e}", path.display());
        let mut validated = Vec::new();
        let mut ids = Vec::new();
        for entry in snapshot::entries(&read.section).map_err(bad)? {
            let header: Order = serde_json::from_slice(entry.header)
                .map_err(|e| bad(format!("an order document: {e}")))?;
            let id = SourceId::Fleet {
                order: header.id.clone(),
            };
            let valid =
                Safeguards::validate_document(&id, &header).map_err(|e| bad(e.to_string()))?;
            let targets = entry
                .targets()
                .map_err(|e| bad(format!("order {}: {e}", header.id)))?;
            ids.push(header.id);
            validated.push((entry.content, valid.with_targets(targets)));
        }
        drop(read.section);
        let orders = validated.len();
        let mut state = self.state();
        state.copy.serial = Some(read.serial);
        state.copy.snapshot_serial = Some(read.serial);
        state.origin = Some("snapshot");
        state.records_pending = true;
        state.from_snapshot = Some(SnapshotOrders {
            validated: Some(validated),
            ids,
        });
        drop(state);
        info!(
            primary = %self.origin.primary,
            path = %path.display(),
            serial = read.serial,
            written_at = read.written_at,
            orders,
            "fleet: enforcing the orders of the snapshot (validated when it was written); transfers resume from its serial"
        );
        Ok(true)
    }

    /// After [`start_from_snapshot`](Self::start_from_snapshot): reads the snapshot's records
    /// and decodes the documents, so that transfers resume by IXFR from its serial. On failure
    /// the orders in force stay and the next transfer is a whole zone.
    fn complete_snapshot(&self) {
        let serial = {
            let mut state = self.state();
            if !std::mem::take(&mut state.records_pending) {
                return;
            }
            state.copy.serial
        };
        let path = self.snapshot_path();
        let zone = &self.origin.zone;
        let read = snapshot::read(&path, zone).and_then(|loaded| {
            let loaded = loaded.ok_or_else(|| format!("{}: gone", path.display()))?;
            if Some(loaded.serial) != serial {
                return Err(format!(
                    "{}: now holds serial {}, not {serial:?}",
                    path.display(),
                    loaded.serial
                ));
            }
            let decoded = zone::DecodedOrders::decode(zone, &loaded.records)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            Ok((loaded, decoded))
        });
        let (loaded, decoded) = match read {
            Ok(read) => read,
            Err(e) => {
                error!(primary = %self.origin.primary, "fleet: the snapshot's zone records are unusable; the orders in force stay, the next transfer is a whole zone: {e}");
                let mut state = self.state();
                state.copy.serial = None;
                state.copy.snapshot_serial = None;
                return;
            }
        };
        let orders = decoded.orders();
        // The documents of the validated orders: their content hashes (for the loader's
        // source) and entries (for the next snapshot) are the file's.
        let mut seed = HashMap::new();
        let mut checked = HashMap::new();
        let entries = loaded.validated.as_deref().map(snapshot::entries);
        for entry in entries.into_iter().flatten().flatten() {
            let Ok(header) = serde_json::from_slice::<Order>(entry.header) else {
                continue;
            };
            let Ok(at) = orders.binary_search_by(|o| o.id.cmp(&header.id)) else {
                continue;
            };
            let document = Arc::clone(&orders[at]);
            seed.insert(header.id.clone(), (Arc::clone(&document), entry.content));
            checked.insert(
                header.id,
                Checked {
                    document,
                    entry: Some(entry.bytes.to_vec()),
                },
            );
        }
        drop(loaded.validated);
        *self.checked.lock().unwrap_or_else(PoisonError::into_inner) = checked;
        let mut state = self.state();
        state.copy.records = Arc::new(loaded.records);
        state.decoded = decoded;
        state.orders = Some(Arc::new(orders));
        state.seed = Some(seed);
        state.from_snapshot = None;
        info!(
            primary = %self.origin.primary,
            serial = loaded.serial,
            "fleet: the snapshot's zone records are read; transfers resume from its serial"
        );
    }

    /// Starts from the snapshot in the data directory. `Ok(false)`: there is none.
    pub fn load_snapshot(&self) -> Result<bool, String> {
        let zone = &self.origin.zone;
        let loaded = schedule::load_snapshot(
            &self.state,
            &self.origin,
            &self.snapshot_path(),
            |state, _, records| {
                state.enforce_snapshot(zone::DecodedOrders::decode(zone, records)?);
                Ok(())
            },
        )?;
        if loaded {
            info!(
                primary = %self.origin.primary,
                "fleet: the primary is unreachable; enforcing the orders of the snapshot"
            );
        }
        Ok(loaded)
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
        self.wake.wake();
    }

    /// Starts the follower's thread: transfers on NOTIFY, refresh and retry; a change wakes
    /// `loader`; a serial the loader put in force is reported to the primary.
    pub fn spawn(self: &Arc<Self>, loader: LoaderHandle) -> anyhow::Result<()> {
        let rx = self.wake.receiver();
        let follower = Arc::clone(self);
        std::thread::Builder::new()
            .name("juris-follow".into())
            .spawn(move || follower.run(&rx, &loader))
            .map_err(|e| anyhow::anyhow!("follower thread: {e}"))?;
        Ok(())
    }

    fn run(&self, wakes: &mpsc::Receiver<schedule::Wake>, loader: &LoaderHandle) {
        let refresh = Duration::from_secs(u64::from(zone::REFRESH));
        let first = {
            let state = self.state();
            // Started from the snapshot's validated orders: its records, then an IXFR at once.
            if state.records_pending {
                Duration::ZERO
            } else {
                schedule::first_wait(&state.copy, refresh)
            }
        };
        let timing = schedule::Timing {
            first,
            refresh,
            retry: RETRY,
            snapshot: Some(schedule::SnapshotDelay {
                quiet: SNAPSHOT_QUIET,
                max: SNAPSHOT_MAX,
            }),
        };
        let report = || {
            if let Err(e) = self.report() {
                tracing::warn!(primary = %self.origin.primary, "fleet: the primary did not take the report of the serial in force (it learns it at the next transfer): {e}");
            }
        };
        // The first load (before this thread) may have put a serial in force.
        if self.state().in_force.is_some() {
            report();
        }
        let hooks = schedule::Hooks {
            transfer: || self.fetch(),
            changed: || loader.reload("zone transfer from the fleet primary"),
            failed: |e: &str| {
                error!(
                    primary = %self.origin.primary,
                    "fleet: transfer FAILED; the last good orders stay in force: {e}"
                )
            },
            report,
            snapshot: || self.write_snapshot(),
        };
        schedule::run(wakes, timing, hooks);
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
            // What the loader put in force, and since when (reported to the primary).
            "in_force_serial": state.in_force.map(|(s, _)| s),
            "in_force_since": state.in_force.map(|(_, t)| t),
            "reports": state.reports,
            "last_report_error": state.last_report_error,
        }))
    }
}

impl State {
    /// The orders of a snapshot are those in force.
    fn enforce_snapshot(&mut self, decoded: zone::DecodedOrders) {
        self.orders = Some(Arc::new(decoded.orders()));
        self.decoded = decoded;
        self.origin = Some("snapshot");
    }
}

impl schedule::Copied for State {
    fn copy(&mut self) -> &mut schedule::ZoneCopy {
        &mut self.copy
    }
}
