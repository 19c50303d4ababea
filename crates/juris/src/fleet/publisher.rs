//! The primary: the zones of the orders in force, their serial and journal, the XFR listener
//! (TCP: SOA, AXFR, IXFR; UDP: SOA) and NOTIFY to the followers.
//!
//! ```text
//!  loader thread ── publish(orders) ──► build zones ─ differ? ─► serial = max(serial+1, now)
//!                                                     │          journal: one delta per zone
//!                                                     │          (the last JOURNAL_DEPTH)
//!                                                     └──► NOTIFY thread: every zone to every
//!                                                          `notify` address (3 tries, 1 s apart)
//!  XFR listener: TSIG (any configured key) or an `allow_unsigned` source; an `allow_transfer`
//!               source; else REFUSED. IXFR from a serial the journal reaches: the deltas;
//!               otherwise the whole zone (AXFR form, RFC 1995 §4).
//! ```

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr, TcpListener, UdpSocket};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::Context;
use domain::base::iana::{Opcode, Rcode};
use domain::base::message_builder::AnswerBuilder;
use domain::base::{Message, MessageBuilder, Name, Rtype};
use domain::rdata::tsig::Time48;
use domain::tsig::{Algorithm, Key, KeyName, ServerSequence};
use ipnet::IpNet;
use juris_policy::{Order, OrderInfo, ValidatedOrder};
use tracing::{debug, info, warn};

use super::proof::{normal_key_name, ProofFile, Saved, SavedOrder, Tracker};
use super::wire::{self, MESSAGE_TARGET};
use super::zone::{self, rtype, Rr};
use super::{unix_now, FleetSettings};

/// Deltas kept per zone for IXFR; an older serial gets the whole zone.
pub const JOURNAL_DEPTH: usize = 64;
/// Concurrent transfer connections at most.
const MAX_CONNECTIONS: usize = 64;
/// How often the zones are rebuilt for the time (dates, windows) without an order change.
const TIME_REFRESH: Duration = Duration::from_secs(30);
/// A connection idle this long is closed.
const IDLE: Duration = Duration::from_secs(10);
/// A signed request is remembered this long for replay detection: twice the TSIG fudge
/// (300 s), as a request is accepted while its time is within the fudge of ours.
const REPLAY_WINDOW: u64 = 600;
/// Signed requests remembered at most (beyond this, the oldest are forgotten early).
const REPLAY_MAX: usize = 100_000;

/// One publish's change to one zone.
use super::journal_file::{self, JournalFile, Restored, Step as Delta, ZoneDigest};

/// A zone's records, each with how many orders put it there (a trigger two orders share stays
/// while either does; the apex NS counts once).
type Zone = BTreeMap<Rr, u32>;

/// One order the primary publishes.
#[derive(Debug)]
struct Published {
    doc: Arc<Order>,
    /// Its facts when it is `active` and valid: it may put triggers in the RPZ zones.
    info: Option<Arc<OrderInfo>>,
    /// Whether its triggers are in the RPZ zones now.
    in_rpz: bool,
    /// Whether its records are in the metadata zone (not when its header is too large).
    in_meta: bool,
    /// The serial that first carried this version, and when.
    since: Option<(u32, u64)>,
    /// The document's content hash, kept on disk with `since` (with a data directory).
    hash: Option<u64>,
}

#[derive(Debug, Default)]
struct State {
    serial: u32,
    zones: BTreeMap<String, Arc<Zone>>,
    journal: BTreeMap<String, VecDeque<Delta>>,
    /// By id.
    orders: BTreeMap<String, Published>,
    published_at: u64,
    publishes: u64,
    /// The journal on disk (a primary with a data directory).
    file: Option<JournalFile>,
    /// What the journal on disk held at start (until the first publish).
    restored: Option<Restored>,
    /// Per zone, its digest (kept with a journal file).
    digests: BTreeMap<String, ZoneDigest>,
    /// What the proof file held of the orders at start (until the first publish).
    restored_orders: BTreeMap<String, SavedOrder>,
}

/// The proof of enforcement kept on disk (`fleet-followers.json`): written by its own thread
/// when told of a change (off the XFR answers and the publishes), or at once by
/// [`Publisher::save_proof`].
#[derive(Debug)]
struct ProofStore {
    file: ProofFile,
    tracker: Arc<Tracker>,
    /// Each published order's first serial and document hash.
    orders: Mutex<BTreeMap<String, SavedOrder>>,
    /// One write at a time.
    writing: Mutex<()>,
}

impl ProofStore {
    fn write(&self) {
        let _writing = self.writing.lock().unwrap_or_else(PoisonError::into_inner);
        let saved = Saved {
            nodes: self.tracker.saved(),
            orders: self
                .orders
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        };
        if let Err(e) = self.file.write(&saved) {
            warn!("fleet: the followers' state could not be written (a restart would show them once they ask again): {e}");
        }
    }
}

/// The changes of one publish to the zones, applied as they are made (counted per record)
/// and remembered (whether each touched record was there before) for the journal's deltas.
struct Edit<'a> {
    zones: &'a mut BTreeMap<String, Arc<Zone>>,
    suffix: &'a str,
    /// Per zone, each record touched and whether it was there before (`None`: not tracked,
    /// the first publish has no delta).
    touched: Option<BTreeMap<String, BTreeMap<Rr, bool>>>,
}

impl Edit<'_> {
    fn zone(&mut self, apex: &str) -> &mut Zone {
        if !self.zones.contains_key(apex) {
            let ns = zone::apex_ns(apex, self.suffix);
            if let Some(touched) = self.touched.as_mut() {
                touched
                    .entry(apex.to_owned())
                    .or_default()
                    .insert(ns.clone(), false);
            }
            self.zones
                .insert(apex.to_owned(), Arc::new(Zone::from([(ns, 1)])));
        }
        let zone = self.zones.get_mut(apex).map(Arc::make_mut);
        zone.unwrap_or_else(|| unreachable!("inserted above"))
    }

    fn add(&mut self, apex: &str, rr: Rr) {
        let tracked = self.touched.is_some();
        let zone = self.zone(apex);
        if let Some(count) = zone.get_mut(&rr) {
            *count += 1;
            return;
        }
        let key = tracked.then(|| rr.clone());
        zone.insert(rr, 1);
        if let (Some(rr), Some(touched)) = (key, self.touched.as_mut()) {
            touched
                .entry(apex.to_owned())
                .or_default()
                .entry(rr)
                .or_insert(false);
        }
    }

    fn remove(&mut self, apex: &str, rr: &Rr) {
        let Some(zone) = self.zones.get_mut(apex).map(Arc::make_mut) else {
            return;
        };
        let Some(count) = zone.get_mut(rr) else {
            return;
        };
        *count -= 1;
        if *count == 0 {
            zone.remove(rr);
            if let Some(touched) = self.touched.as_mut() {
                touched
                    .entry(apex.to_owned())
                    .or_default()
                    .entry(rr.clone())
                    .or_insert(true);
            }
        }
    }

    /// What changed, per zone: (removed, added); empty when nothing did (or not tracked).
    fn changes(self) -> BTreeMap<String, (Vec<Rr>, Vec<Rr>)> {
        let mut out = BTreeMap::new();
        for (apex, records) in self.touched.unwrap_or_default() {
            let zone = &self.zones[&apex];
            let (mut removed, mut added) = (Vec::new(), Vec::new());
            for (rr, before) in records {
                match (before, zone.contains_key(&rr)) {
                    (true, false) => removed.push(rr),
                    (false, true) => added.push(rr),
                    _ => {}
                }
            }
            if !removed.is_empty() || !added.is_empty() {
                out.insert(apex, (removed, added));
            }
        }
        out
    }
}

/// The publishing side of the fleet. Shared by the loader (which publishes), the XFR
/// listener, the NOTIFY sender and the status.
pub struct Publisher {
    suffix: String,
    allow_transfer: Vec<IpNet>,
    allow_unsigned: Vec<IpNet>,
    keys: HashMap<(KeyName, Algorithm), Key>,
    notify: Vec<SocketAddr>,
    /// The first key signs NOTIFY messages.
    notify_key: Option<Key>,
    state: Mutex<State>,
    notify_tx: Mutex<Option<mpsc::Sender<u32>>>,
    listen: Mutex<Option<SocketAddr>>,
    /// Which follower has which serial in force.
    tracker: Arc<Tracker>,
    /// Its copy on disk (with a data directory), and the thread's wake-up.
    proof: Mutex<Option<(Arc<ProofStore>, mpsc::Sender<()>)>>,
    /// The TSIG data (time, MAC) of the signed requests of the last [`REPLAY_WINDOW`]
    /// seconds, with when each was seen: an identical request again is a replay.
    replays: Mutex<HashMap<Vec<u8>, u64>>,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("suffix", &self.suffix)
            .finish_non_exhaustive()
    }
}

impl juris_control::FleetProof for Publisher {
    fn order(&self, id: &str) -> Option<juris_control::OrderFleet> {
        let published = self.state().orders.get(id).and_then(|p| p.since);
        Some(self.tracker.order(published))
    }
}

impl Publisher {
    /// A publisher for `settings` (nothing is published or listened on yet).
    pub fn new(settings: &FleetSettings) -> anyhow::Result<Publisher> {
        let mut keys = HashMap::new();
        let mut notify_key = None;
        for key in &settings.tsig_keys {
            let key = key.key().map_err(anyhow::Error::msg)?;
            notify_key.get_or_insert_with(|| key.clone());
            keys.insert((key.name().clone(), key.algorithm()), key);
        }
        Ok(Publisher {
            suffix: settings.zone_suffix.clone(),
            allow_transfer: settings.allow_transfer.clone(),
            allow_unsigned: settings.allow_unsigned.clone(),
            keys,
            notify: settings.notify.clone(),
            notify_key,
            state: Mutex::new(State::default()),
            notify_tx: Mutex::new(None),
            listen: Mutex::new(None),
            tracker: Arc::new(Tracker::new(settings)),
            proof: Mutex::new(None),
            replays: Mutex::new(HashMap::new()),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Publishes `orders` (the orders the loader has in force, as written): the zones are
    /// rebuilt; if any differs, the serial moves on, the journal gets the deltas and the
    /// followers are notified. Returns the serial in force.
    pub fn publish(&self, orders: Vec<Arc<Order>>) -> u32 {
        self.rebuild(Some(orders))
    }

    /// Rebuilds the zones for the time now (orders entering or leaving their windows and
    /// dates change the RPZ zones without any order changing).
    pub fn refresh(&self) -> u32 {
        self.rebuild(None)
    }

    /// Keeps the journal in `data_dir` (`fleet-journal.jsonl`), and reads what it holds: a
    /// first publish of the same zones keeps their serial and the journal (followers behind
    /// then get deltas from before a restart).
    ///
    /// The proof of enforcement is kept there too (`fleet-followers.json`, design 0043): the
    /// followers' serials and each order's first serial, read now, so that a restarted primary
    /// still shows where each order is in force and since when.
    pub fn persist_to(&self, data_dir: &Path) {
        let file = JournalFile::new(data_dir, JOURNAL_DEPTH);
        let proof_file = ProofFile::new(data_dir);
        let saved = proof_file.read().unwrap_or_default();
        self.tracker.restore(saved.nodes);
        let store = Arc::new(ProofStore {
            file: proof_file,
            tracker: Arc::clone(&self.tracker),
            orders: Mutex::new(saved.orders.clone()),
            writing: Mutex::new(()),
        });
        let (tx, rx) = mpsc::channel::<()>();
        let writer = Arc::clone(&store);
        let spawned = std::thread::Builder::new()
            .name("juris-fleet-proof".into())
            .spawn(move || {
                while rx.recv().is_ok() {
                    while rx.try_recv().is_ok() {}
                    writer.write();
                }
            });
        if let Err(e) = spawned {
            warn!("fleet: no thread to keep the followers' state on disk: {e}");
        }
        *self.proof.lock().unwrap_or_else(PoisonError::into_inner) = Some((store, tx));
        let mut state = self.state();
        state.restored = file.read();
        state.file = Some(file);
        state.restored_orders = saved.orders;
    }

    /// Writes the proof of enforcement to the data directory now (shutdown, tests).
    pub fn save_proof(&self) {
        let store = self
            .proof
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map(|(store, _)| Arc::clone(store));
        if let Some(store) = store {
            store.write();
        }
    }

    /// Tells the proof's thread to write (nothing without a data directory).
    fn proof_changed(&self, orders: Option<BTreeMap<String, SavedOrder>>) {
        let proof = self.proof.lock().unwrap_or_else(PoisonError::into_inner);
        let Some((store, tx)) = proof.as_ref() else {
            return;
        };
        if let Some(orders) = orders {
            *store.orders.lock().unwrap_or_else(PoisonError::into_inner) = orders;
        }
        let _ = tx.send(());
    }

    /// Brings the zones up to date, order by order: the records of the orders that came, went
    /// or changed (`orders`: the orders in force now; `None`: the same as before) and of those
    /// whose triggers entered or left the RPZ zones with the time. A single-name change costs
    /// that order, not the policy.
    fn rebuild(&self, orders: Option<Vec<Arc<Order>>>) -> u32 {
        let mut guard = self.state();
        let state = &mut *guard;
        let first = state.publishes == 0;
        let restored = if first { state.restored.take() } else { None };
        let meta_apex = zone::orders_apex(&self.suffix);
        let mut edit = Edit {
            zones: &mut state.zones,
            suffix: &self.suffix,
            touched: (!first).then(BTreeMap::new),
        };
        edit.zone(&meta_apex);
        edit.zone(&zone::rpz_apex("global", &self.suffix));
        // Zones published once stay (0021), also those of before a restart.
        for apex in restored.iter().flat_map(|r| r.digests.keys()) {
            edit.zone(apex);
        }
        // The validated versions of the orders entering now (validated once here).
        let mut fresh: HashMap<String, ValidatedOrder> = HashMap::new();
        let mut entered: Vec<String> = Vec::new();
        if let Some(orders) = orders {
            let mut old = std::mem::take(&mut state.orders);
            for doc in orders {
                let kept = match old.remove(&doc.id) {
                    Some(p) if Arc::ptr_eq(&p.doc, &doc) || *p.doc == *doc => Some(p),
                    Some(p) => {
                        self.withdraw(&mut edit, &meta_apex, &p);
                        None
                    }
                    None => None,
                };
                let published = match kept {
                    Some(p) => Published { doc, ..p },
                    None => {
                        entered.push(doc.id.clone());
                        self.enter(&mut edit, &meta_apex, doc, &mut fresh)
                    }
                };
                state.orders.insert(published.doc.id.clone(), published);
            }
            for published in old.into_values() {
                self.withdraw(&mut edit, &meta_apex, &published);
            }
        }
        // The orders whose triggers are in the RPZ zones now.
        let now = jiff::Timestamp::now();
        let shown: BTreeSet<String> = zone::in_rpz(
            state
                .orders
                .iter()
                .filter_map(|(id, p)| Some((id.as_str(), &**p.info.as_ref()?))),
            now,
        )
        .into_iter()
        .map(str::to_owned)
        .collect();
        for (id, published) in &mut state.orders {
            let want = shown.contains(id);
            if want == published.in_rpz {
                continue;
            }
            let valid = fresh
                .remove(id)
                .or_else(|| zone::rpz_candidate(&published.doc));
            for (apex, rr) in valid
                .iter()
                .flat_map(|valid| zone::order_triggers(&self.suffix, valid))
            {
                if want {
                    edit.add(&apex, rr);
                } else {
                    edit.remove(&apex, &rr);
                }
            }
            published.in_rpz = want;
        }
        let mut changes = edit.changes();
        if !first && changes.is_empty() {
            return state.serial;
        }
        let mut serial = next_serial(
            restored.as_ref().map_or(state.serial, |r| r.serial),
            unix_now(),
        );
        let from = state.serial;
        let persist = state.file.is_some();
        if first && persist {
            // Whole once (O(zone)); then toggled per changed record.
            state.digests = state
                .zones
                .iter()
                .map(|(apex, zone)| (apex.clone(), journal_file::digest(zone.keys())))
                .collect();
        }
        if !first {
            for apex in state.zones.keys() {
                let (removed, added) = changes.remove(apex).unwrap_or_default();
                if persist {
                    let digest = state.digests.entry(apex.clone()).or_default();
                    for rr in removed.iter().chain(&added) {
                        journal_file::toggle(digest, rr);
                    }
                }
                let journal = state.journal.entry(apex.clone()).or_default();
                journal.push_back(Delta {
                    from,
                    to: serial,
                    removed,
                    added,
                });
                while journal.len() > JOURNAL_DEPTH {
                    journal.pop_front();
                }
            }
        }
        if let Some(restored) = restored {
            if restored.digests == state.digests {
                info!(
                    serial = restored.serial,
                    "fleet: the zones are those of the journal on disk: its serial and deltas stay"
                );
                serial = restored.serial;
                state.journal = restored.journal;
            } else {
                info!(
                    before = restored.serial,
                    "fleet: the zones changed since the journal on disk: a new serial, followers behind get the whole zone"
                );
            }
        }
        state.serial = serial;
        self.write_journal(state, first);
        // The orders whose version changed are first carried by this serial (a restart: the
        // serial on disk for the same version of an order).
        let published_at = unix_now();
        let persisting = state.file.is_some();
        let restored_orders = std::mem::take(&mut state.restored_orders);
        let changed_orders = !entered.is_empty() || first;
        for id in entered {
            if let Some(published) = state.orders.get_mut(&id) {
                published.since = published.in_meta.then_some((serial, published_at));
                if persisting {
                    published.hash = crate::orders::document_hash(&published.doc).ok();
                    let before = restored_orders
                        .get(&id)
                        .filter(|saved| published.in_meta && published.hash == Some(saved.hash));
                    if let Some(before) = before {
                        published.since = Some((before.serial, before.published_at));
                    }
                }
            }
        }
        let saved_orders = (persisting && changed_orders).then(|| {
            state
                .orders
                .iter()
                .filter_map(|(id, p)| {
                    let (serial, published_at) = p.since?;
                    let saved = SavedOrder {
                        hash: p.hash?,
                        serial,
                        published_at,
                    };
                    Some((id.clone(), saved))
                })
                .collect::<BTreeMap<_, _>>()
        });
        state.publishes += 1;
        state.published_at = published_at;
        let zones = state.zones.len();
        drop(guard);
        if saved_orders.is_some() {
            self.proof_changed(saved_orders);
        }
        info!(serial, zones, "fleet: zones published");
        if let Some(tx) = self
            .notify_tx
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
        {
            let _ = tx.send(serial);
        }
        serial
    }

    /// Writes the publish of `state.serial` to the journal file (rewritten when `rewrite`
    /// or grown long); a failure is logged (the journal in memory still serves).
    fn write_journal(&self, state: &mut State, rewrite: bool) {
        let State {
            file,
            serial,
            digests,
            journal,
            ..
        } = state;
        let Some(file) = file.as_mut() else { return };
        let written = if rewrite || file.wants_compaction() {
            file.rewrite(*serial, digests, journal)
        } else {
            let deltas: BTreeMap<String, &Delta> = journal
                .iter()
                .filter_map(|(apex, steps)| {
                    steps
                        .back()
                        .filter(|step| step.to == *serial)
                        .map(|step| (apex.clone(), step))
                })
                .collect();
            file.append(*serial, digests, &deltas)
        };
        if let Err(e) = written {
            warn!("fleet: the journal could not be written (a restart would serve the whole zone to followers behind): {e}");
        }
    }

    /// An order (a new one, or a new version) enters: its metadata records now, its triggers
    /// when the RPZ step finds it in force (its validated version is left in `fresh`).
    fn enter(
        &self,
        edit: &mut Edit<'_>,
        meta_apex: &str,
        doc: Arc<Order>,
        fresh: &mut HashMap<String, ValidatedOrder>,
    ) -> Published {
        let records = zone::order_records(meta_apex, &doc);
        let in_meta = records.is_some();
        match records {
            Some(records) => {
                for rr in records {
                    edit.add(meta_apex, rr);
                }
            }
            None => {
                warn!(order = %doc.id, "fleet: the order does not fit one TXT record (65535 bytes) and is NOT published to followers")
            }
        }
        let valid = zone::rpz_candidate(&doc);
        let info = valid.as_ref().map(|v| Arc::clone(v.info()));
        if let Some(valid) = valid {
            fresh.insert(doc.id.clone(), valid);
        }
        Published {
            doc,
            info,
            in_rpz: false,
            in_meta,
            since: None,
            hash: None,
        }
    }

    /// An order (gone, or an old version) leaves the zones.
    fn withdraw(&self, edit: &mut Edit<'_>, meta_apex: &str, published: &Published) {
        if published.in_meta {
            for rr in zone::order_records(meta_apex, &published.doc).unwrap_or_default() {
                edit.remove(meta_apex, &rr);
            }
        }
        if published.in_rpz {
            for (apex, rr) in zone::rpz_candidate(&published.doc)
                .iter()
                .flat_map(|valid| zone::order_triggers(&self.suffix, valid))
            {
                edit.remove(&apex, &rr);
            }
        }
    }

    /// The records of zone `apex` but its SOA (tests: compared with a whole build).
    #[cfg(test)]
    pub fn records(&self, apex: &str) -> Option<zone::Records> {
        self.state()
            .zones
            .get(apex)
            .map(|z| z.keys().cloned().collect())
    }

    /// The zones' digests (kept with a journal file).
    #[cfg(test)]
    pub fn digests(&self) -> BTreeMap<String, ZoneDigest> {
        self.state().digests.clone()
    }

    /// The zones' names.
    #[cfg(test)]
    pub fn zone_names(&self) -> Vec<String> {
        self.state().zones.keys().cloned().collect()
    }

    /// Drops the journal of every zone (tests: a follower then gets the whole zone).
    #[cfg(test)]
    pub fn forget_journal(&self) {
        self.state().journal.clear();
    }

    /// Adds `rr` to the zone `apex` as a publish would (tests: a corrupt record).
    #[cfg(test)]
    pub(crate) fn inject(&self, apex: &str, rr: Rr) {
        let mut state = self.state();
        let (from, to) = (state.serial, state.serial + 1);
        let mut records = state
            .zones
            .get(apex)
            .map(|z| (**z).clone())
            .unwrap_or_default();
        records.insert(rr.clone(), 1);
        state.zones.insert(apex.to_owned(), Arc::new(records));
        state
            .journal
            .entry(apex.to_owned())
            .or_default()
            .push_back(Delta {
                from,
                to,
                removed: Vec::new(),
                added: vec![rr],
            });
        state.serial = to;
    }

    /// The serial in force and the zones' names.
    pub fn status(&self) -> serde_json::Value {
        let state = self.state();
        serde_json::json!({
            "role": "primary",
            "xfr_listen": self.listen.lock().unwrap_or_else(PoisonError::into_inner).map(|a| a.to_string()),
            "serial": state.serial,
            "published_at": state.published_at,
            "zones": state.zones.keys().collect::<Vec<_>>(),
            "orders": state.orders.len(),
            "orders_not_published": state.orders.values().filter(|p| !p.in_meta).map(|p| &p.doc.id).collect::<Vec<_>>(),
            "notify": self.notify.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "followers": self.tracker.status(state.serial, unix_now()),
            "followers_behind": self.tracker.behind(state.serial),
        })
    }

    /// Whether `tsig` (a verified request's TSIG data) was seen in the replay window; records
    /// it otherwise.
    fn replayed(&self, tsig: Vec<u8>, now: u64) -> bool {
        let mut seen = self.replays.lock().unwrap_or_else(PoisonError::into_inner);
        if seen.len() >= REPLAY_MAX / 2 {
            seen.retain(|_, at| now.saturating_sub(*at) < REPLAY_WINDOW);
        }
        if seen.len() >= REPLAY_MAX {
            // Under a flood of distinct signed requests: forget the oldest half.
            let mut times: Vec<u64> = seen.values().copied().collect();
            times.sort_unstable();
            let cut = times[times.len() / 2];
            seen.retain(|_, at| *at > cut);
        }
        seen.insert(tsig, now).is_some()
    }

    /// The answer messages to one request from `source` (`tcp`: AXFR and IXFR allowed).
    /// Empty: send nothing.
    pub fn answer(&self, request: Vec<u8>, source: IpAddr, tcp: bool) -> Vec<Vec<u8>> {
        let mut streamed = Vec::new();
        let early = self.answer_into(request, source, tcp, &mut |message| {
            streamed.push(message);
            true
        });
        if early.is_empty() {
            streamed
        } else {
            early
        }
    }

    /// [`answer`](Self::answer), a transfer's messages handed to `out` as each is built (a
    /// large zone's first message goes out before the last is made; `out` says whether to go
    /// on). Returns the messages of an answer that is not a transfer (errors, refusals).
    fn answer_into(
        &self,
        request: Vec<u8>,
        source: IpAddr,
        tcp: bool,
        out: &mut dyn FnMut(Vec<u8>) -> bool,
    ) -> Vec<Vec<u8>> {
        let Ok(mut message) = Message::from_octets(request) else {
            return Vec::new();
        };
        if message.header().qr() {
            return Vec::new();
        }
        // TSIG first: the request's signature is checked (and removed) before anything else.
        let tsig = wire::tsig_rdata(&message);
        let signed = if self.keys.is_empty() {
            Ok(None)
        } else {
            ServerSequence::request(&self.keys, &mut message, Time48::now())
        };
        let mut sequence = match signed {
            Ok(sequence) => sequence,
            Err(error) => {
                warn!(%source, tsig = %error.error(), "fleet: transfer request with a bad TSIG refused");
                return error
                    .build_message(&message, MessageBuilder::new_vec())
                    .map(|m| vec![m.finish()])
                    .unwrap_or_default();
            }
        };
        let allowed = if sequence.is_some() {
            self.allow_transfer.iter().any(|net| net.contains(&source))
        } else {
            self.allow_unsigned.iter().any(|net| net.contains(&source))
        };
        // An identical signed request within the fudge window is a replay (domain::tsig
        // keeps no replay cache): refused and not taken as a sighting of its follower.
        let replay = sequence.is_some() && tsig.is_some_and(|tsig| self.replayed(tsig, unix_now()));
        let question = message.sole_question().ok();
        let reply = |sequence: &mut Option<ServerSequence<Key>>, rcode: Rcode| {
            MessageBuilder::new_vec()
                .start_answer(&message, rcode)
                .ok()
                .map(|builder| finish(builder, sequence))
                .into_iter()
                .collect::<Vec<_>>()
        };
        let Some(question) = question else {
            return reply(&mut sequence, Rcode::FORMERR);
        };
        if message.header().opcode() != Opcode::QUERY {
            return reply(&mut sequence, Rcode::NOTIMP);
        }
        if !allowed {
            info!(%source, signed = sequence.is_some(), "fleet: transfer request refused (source not allowed, or unsigned)");
            return reply(&mut sequence, Rcode::REFUSED);
        }
        if replay {
            warn!(%source, "fleet: a replayed signed request (identical TSIG within the fudge window) refused");
            return reply(&mut sequence, Rcode::REFUSED);
        }
        let key = sequence
            .as_ref()
            .map(|s| normal_key_name(&s.key().name().to_string()));
        let mut apex = question.qname().to_string().to_ascii_lowercase();
        if !apex.ends_with('.') {
            apex.push('.');
        }
        let state = self.state();
        let Some(records) = state.zones.get(&apex).cloned() else {
            drop(state);
            return reply(&mut sequence, Rcode::NOTAUTH);
        };
        let serial = state.serial;
        let soa = Rr {
            owner: apex.clone(),
            rtype: rtype::SOA,
            rdata: zone::soa_rdata(&self.suffix, serial),
        };
        let qtype = question.qtype();
        // The serial the follower has in force: the SOA of its IXFR request.
        let theirs = (qtype == Rtype::IXFR)
            .then(|| {
                message
                    .authority()
                    .ok()
                    .and_then(|section| wire::section_records(section).ok())
                    .and_then(|rrs| rrs.into_iter().find(|r| r.rtype == rtype::SOA))
                    .and_then(|r| zone::soa_serial(&r.rdata))
            })
            .flatten();
        if self
            .tracker
            .seen(key.as_deref(), source, theirs, unix_now())
        {
            self.proof_changed(None);
        }
        // The whole zone is streamed from the zone itself (design 0043): a copy of millions of
        // records before the first message outlasted the follower's read timeout at 10M names.
        let mut whole = false;
        let plan: Vec<Rr> = if qtype == Rtype::SOA {
            vec![soa.clone()]
        } else if qtype == Rtype::AXFR && tcp {
            whole = true;
            Vec::new()
        } else if qtype == Rtype::IXFR && tcp {
            match theirs {
                Some(theirs) if theirs == serial => vec![soa.clone()],
                Some(theirs) => match deltas(state.journal.get(&apex), theirs, serial) {
                    Some(deltas) => incremental(&soa, &apex, &self.suffix, &deltas),
                    None => {
                        whole = true;
                        Vec::new()
                    }
                },
                None => {
                    drop(state);
                    return reply(&mut sequence, Rcode::FORMERR);
                }
            }
        } else if (qtype == Rtype::AXFR || qtype == Rtype::IXFR) && !tcp {
            // Over UDP, an IXFR gets the SOA only (RFC 1995 §2: the client retries over TCP).
            vec![soa.clone()]
        } else {
            drop(state);
            return reply(&mut sequence, Rcode::REFUSED);
        };
        drop(state);
        // A publish meanwhile changes the zone in place (no copy) once no one holds it; while
        // a whole zone streams, a publish copies it instead.
        let zone = whole.then_some(records);
        let records_count = zone.as_ref().map_or(plan.len(), |z| z.len() + 2);
        debug!(%source, zone = %apex, %qtype, records = records_count, "fleet: transfer");
        let streamed: Box<dyn Iterator<Item = &Rr>> = match &zone {
            Some(zone) => Box::new(
                std::iter::once(&soa)
                    .chain(zone.keys())
                    .chain(std::iter::once(&soa)),
            ),
            None => Box::new(plan.iter()),
        };
        let mut builder = MessageBuilder::new_vec().start_answer(&message, Rcode::NOERROR);
        for rr in streamed {
            let Ok(answer) = builder.as_mut() else {
                return Vec::new();
            };
            answer.header_mut().set_aa(true);
            if let Err(error) = wire::push(answer, rr) {
                warn!("fleet: {error}");
                return reply(&mut sequence, Rcode::SERVFAIL);
            }
            if answer.as_slice().len() >= MESSAGE_TARGET {
                let full = std::mem::replace(
                    &mut builder,
                    MessageBuilder::new_vec().start_answer(&message, Rcode::NOERROR),
                );
                if let Ok(full) = full {
                    if !out(finish(full, &mut sequence)) {
                        return Vec::new();
                    }
                }
            }
        }
        if let Ok(mut last) = builder {
            if last.counts().ancount() > 0 {
                last.header_mut().set_aa(true);
                out(finish(last, &mut sequence));
            }
        }
        Vec::new()
    }

    /// Starts the XFR listener (TCP and UDP on `address`) and the NOTIFY sender; returns the
    /// address bound.
    pub fn start(self: &Arc<Self>, address: SocketAddr) -> anyhow::Result<SocketAddr> {
        let tcp = TcpListener::bind(address)
            .with_context(|| format!("fleet.xfr_listen: cannot listen on {address} (TCP)"))?;
        let bound = tcp.local_addr().context("fleet.xfr_listen")?;
        let udp = UdpSocket::bind(bound)
            .with_context(|| format!("fleet.xfr_listen: cannot listen on {bound} (UDP)"))?;
        *self.listen.lock().unwrap_or_else(PoisonError::into_inner) = Some(bound);
        let publisher = Arc::clone(self);
        std::thread::Builder::new()
            .name("juris-xfr-tcp".into())
            .spawn(move || publisher.serve_tcp(tcp))
            .context("XFR thread")?;
        let publisher = Arc::clone(self);
        std::thread::Builder::new()
            .name("juris-xfr-udp".into())
            .spawn(move || publisher.serve_udp(udp))
            .context("XFR thread")?;
        // Orders entering or leaving their dates and windows change the RPZ zones.
        let publisher = Arc::clone(self);
        std::thread::Builder::new()
            .name("juris-xfr-time".into())
            .spawn(move || loop {
                std::thread::sleep(TIME_REFRESH);
                publisher.refresh();
            })
            .context("XFR thread")?;
        if !self.notify.is_empty() {
            let (tx, rx) = mpsc::channel();
            *self
                .notify_tx
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(tx);
            let publisher = Arc::clone(self);
            std::thread::Builder::new()
                .name("juris-notify".into())
                .spawn(move || publisher.send_notifies(rx))
                .context("NOTIFY thread")?;
        }
        info!(addr = %bound, "fleet: XFR listening (zones under {})", self.suffix);
        Ok(bound)
    }

    fn serve_tcp(self: Arc<Self>, listener: TcpListener) {
        let open = Arc::new(AtomicUsize::new(0));
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            if open.load(Ordering::Relaxed) >= MAX_CONNECTIONS {
                continue;
            }
            let Ok(peer) = stream.peer_addr() else {
                continue;
            };
            let publisher = Arc::clone(&self);
            let open = Arc::clone(&open);
            open.fetch_add(1, Ordering::Relaxed);
            let spawned = std::thread::Builder::new()
                .name("juris-xfr-conn".into())
                .spawn(move || {
                    let _ = stream.set_read_timeout(Some(IDLE));
                    let _ = stream.set_write_timeout(Some(IDLE));
                    while let Ok(request) = wire::read_framed(&mut stream) {
                        let early = publisher.answer_into(request, peer.ip(), true, &mut |m| {
                            wire::write_framed(&mut stream, &m).is_ok()
                        });
                        for message in early {
                            if wire::write_framed(&mut stream, &message).is_err() {
                                break;
                            }
                        }
                    }
                    open.fetch_sub(1, Ordering::Relaxed);
                });
            if spawned.is_err() {
                warn!("fleet: cannot start a transfer thread");
            }
        }
    }

    fn serve_udp(self: Arc<Self>, socket: UdpSocket) {
        let mut buffer = vec![0u8; 65_535];
        loop {
            let Ok((len, peer)) = socket.recv_from(&mut buffer) else {
                continue;
            };
            let request = buffer[..len].to_vec();
            if let Some(message) = self.answer(request, peer.ip(), false).into_iter().next() {
                let _ = socket.send_to(&message, peer);
            }
        }
    }

    fn send_notifies(self: Arc<Self>, rx: mpsc::Receiver<u32>) {
        // From the XFR listener's address when it is a specific one of the targets' family:
        // secondaries (BIND, Knot, NSD) take a NOTIFY only from the address of their primary.
        let listen = *self.listen.lock().unwrap_or_else(PoisonError::into_inner);
        let all_v4 = self.notify.iter().all(|a| a.is_ipv4());
        let source = match listen.map(|a| a.ip()) {
            Some(ip) if !ip.is_unspecified() && ip.is_ipv4() == all_v4 => SocketAddr::new(ip, 0),
            _ if all_v4 => SocketAddr::from(([0, 0, 0, 0], 0)),
            _ => SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 0)),
        };
        let Ok(socket) = UdpSocket::bind(source) else {
            warn!("fleet: cannot open a socket for NOTIFY");
            return;
        };
        let _ = socket.set_read_timeout(Some(Duration::from_secs(1)));
        while let Ok(mut serial) = rx.recv() {
            // Only the newest serial matters.
            while let Ok(newer) = rx.try_recv() {
                serial = newer;
            }
            let zones: Vec<String> = self.state().zones.keys().cloned().collect();
            for target in &self.notify {
                for apex in &zones {
                    self.notify_one(&socket, *target, apex, serial);
                }
            }
        }
    }

    fn notify_one(&self, socket: &UdpSocket, target: SocketAddr, apex: &str, serial: u32) {
        let Some(message) = notify_message(apex, serial, &self.suffix, self.notify_key.as_ref())
        else {
            return;
        };
        let id = u16::from_be_bytes([message[0], message[1]]);
        let mut buffer = [0u8; 4096];
        for _ in 0..3 {
            if socket.send_to(&message, target).is_err() {
                continue;
            }
            while let Ok((len, from)) = socket.recv_from(&mut buffer) {
                if from == target && len >= 2 && u16::from_be_bytes([buffer[0], buffer[1]]) == id {
                    debug!(%target, zone = apex, serial, "fleet: NOTIFY answered");
                    return;
                }
            }
        }
        debug!(%target, zone = apex, serial, "fleet: NOTIFY not answered");
    }
}

/// `max(serial + 1, now)`, in 32 bits: a restart (serial 0) starts from the clock, so the
/// serial moves on across restarts of the primary too.
fn next_serial(serial: u32, now: u64) -> u32 {
    let clock = u32::try_from(now).unwrap_or(u32::MAX);
    serial.wrapping_add(1).max(clock)
}

/// Signs (if a key is in use) and closes one message.
fn finish(builder: AnswerBuilder<Vec<u8>>, sequence: &mut Option<ServerSequence<Key>>) -> Vec<u8> {
    let mut additional = builder.additional();
    if let Some(sequence) = sequence.as_mut() {
        if let Err(error) = sequence.answer(&mut additional, Time48::now()) {
            warn!("fleet: cannot sign a response: {error}");
        }
    }
    additional.finish()
}

/// The deltas from `theirs` to `ours`, if the journal reaches back to `theirs`.
fn deltas(journal: Option<&VecDeque<Delta>>, theirs: u32, ours: u32) -> Option<Vec<Delta>> {
    let journal = journal?;
    let start = journal.iter().position(|d| d.from == theirs)?;
    let chain: Vec<Delta> = journal.iter().skip(start).cloned().collect();
    (chain.last()?.to == ours).then_some(chain)
}

/// RFC 1995 §4: SOA(new), then per delta SOA(old), removed, SOA(new), added; SOA(new).
fn incremental(soa: &Rr, apex: &str, suffix: &str, deltas: &[Delta]) -> Vec<Rr> {
    let soa_of = |serial| Rr {
        owner: apex.to_owned(),
        rtype: rtype::SOA,
        rdata: zone::soa_rdata(suffix, serial),
    };
    let mut plan = vec![soa.clone()];
    for delta in deltas {
        plan.push(soa_of(delta.from));
        plan.extend(delta.removed.iter().cloned());
        plan.push(soa_of(delta.to));
        plan.extend(delta.added.iter().cloned());
    }
    plan.push(soa.clone());
    plan
}

/// A NOTIFY for `apex` at `serial` (the SOA in the answer section, RFC 1996 §3.7).
fn notify_message(apex: &str, serial: u32, suffix: &str, key: Option<&Key>) -> Option<Vec<u8>> {
    use std::str::FromStr;
    let name: Name<Vec<u8>> = Name::from_str(apex).ok()?;
    let mut builder = MessageBuilder::new_vec();
    builder.header_mut().set_id(rand::random());
    builder.header_mut().set_opcode(Opcode::NOTIFY);
    builder.header_mut().set_aa(true);
    let mut question = builder.question();
    question.push((name, Rtype::SOA)).ok()?;
    let mut answer = question.answer();
    wire::push(
        &mut answer,
        &Rr {
            owner: apex.to_owned(),
            rtype: rtype::SOA,
            rdata: zone::soa_rdata(suffix, serial),
        },
    )
    .ok()?;
    let mut additional = answer.additional();
    if let Some(key) = key {
        domain::tsig::ClientTransaction::request(key.clone(), &mut additional, Time48::now())
            .ok()?;
    }
    Some(additional.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_serial_moves_on_and_follows_the_clock() {
        assert_eq!(next_serial(0, 1_700_000_000), 1_700_000_000);
        assert_eq!(next_serial(1_700_000_000, 1_700_000_000), 1_700_000_001);
        assert_eq!(next_serial(1_800_000_000, 1_700_000_000), 1_800_000_001);
    }
}
