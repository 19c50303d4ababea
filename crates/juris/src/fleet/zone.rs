//! The zones a primary serves, built from the orders in force, and the orders rebuilt from the
//! metadata zone.
//!
//! # RPZ zones: `<cc>.<suffix>`, `global.<suffix>`
//! One per jurisdiction (`EU` is expanded into its members, as the policy does), `global` for
//! `"*"` orders; always present: `global`, and every zone published once stays (empty) when its
//! last order goes. Content: the triggers of the `active` orders in force now (`effective_from`,
//! `expires_at`, `windows`; an extension only while its parent is), exactly as `juris export rpz`
//! writes them (`juris_control::rpz::triggers`): `CNAME .` (NXDOMAIN; REFUSED is published as
//! NXDOMAIN, which RPZ can express), `CNAME *.` (NODATA), `rpz-ip` (with `block_addresses`),
//! `rpz-nsdname`, `rpz-nsip`. TTL 30 s.
//!
//! # The metadata zone: `orders.<suffix>`
//! Every order the primary enforces, as written (every state, every date and window):
//! - `<H>.orders.<suffix> TXT "juris-order=1" "<json>"...` — the order document without its
//!   targets, `H` = the first 16 bytes of SHA-256(id) in hex; the JSON is split into
//!   character-strings of at most 255 bytes (concatenated back in order);
//! - `<T>.<H>.orders.<suffix> TXT "<json>"...` — one record per target (`{"type", "value",
//!   "added_at", "added_by", "evidence"}`), `T` = the first 8 bytes of SHA-256(target JSON).
//!
//! One record per target keeps an IXFR of one changed name small. A follower rebuilds each
//! order from its header and its targets (in a canonical order: sorted by their JSON), and
//! puts them through the same validation as orders from files and the store.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use jiff::Timestamp;
use juris_control::rpz::{self, ExportOrder};
use juris_control::Psl;
use juris_policy::{
    Order, OrderInfo, OrderState, Target, TargetValue, TimeStatus, ValidatedOrder,
    ValidationOptions,
};
use sha2::{Digest, Sha256};

use super::snapshot::hex;

/// Record types used here.
pub mod rtype {
    /// NS.
    pub const NS: u16 = 2;
    /// CNAME.
    pub const CNAME: u16 = 5;
    /// SOA.
    pub const SOA: u16 = 6;
    /// TXT.
    pub const TXT: u16 = 16;
}

/// TTL of every record.
pub const TTL: u32 = 30;
/// The first character-string of an order's header record.
pub const ORDER_TAG: &[u8] = b"juris-order=1";

/// One resource record (the SOA is kept apart: it carries the serial).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Rr {
    /// Absolute, lower-case, trailing dot.
    pub owner: String,
    /// Record type.
    pub rtype: u16,
    /// Uncompressed wire-form data.
    pub rdata: Vec<u8>,
}

/// A zone's records but its SOA.
pub type Records = BTreeSet<Rr>;

/// The wire form of an absolute presentation name (`a.b.`; `.` is the root); `None` if a label
/// is empty or too long or the name is too long.
pub fn name_wire(name: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(name.len() + 1);
    let trimmed = name.strip_suffix('.').unwrap_or(name);
    if !trimmed.is_empty() {
        for label in trimmed.split('.') {
            if label.is_empty() || label.len() > 63 {
                return None;
            }
            out.push(label.len() as u8);
            out.extend_from_slice(label.as_bytes());
        }
    }
    out.push(0);
    (out.len() <= 255).then_some(out)
}

/// TXT data: `bytes` split into character-strings of at most 255 bytes (one empty string for
/// nothing); `None` beyond the 65535 bytes of one record.
fn txt_rdata(prefix: Option<&[u8]>, bytes: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(bytes.len() + bytes.len() / 255 + 16);
    if let Some(prefix) = prefix {
        out.push(prefix.len() as u8);
        out.extend_from_slice(prefix);
    }
    if bytes.is_empty() {
        out.push(0);
    }
    for chunk in bytes.chunks(255) {
        out.push(chunk.len() as u8);
        out.extend_from_slice(chunk);
    }
    (out.len() <= usize::from(u16::MAX)).then_some(out)
}

/// The character-strings of TXT data; `None` if malformed.
pub fn txt_strings(rdata: &[u8]) -> Option<Vec<&[u8]>> {
    let mut strings = Vec::new();
    let mut rest = rdata;
    while let Some((&len, tail)) = rest.split_first() {
        let len = usize::from(len);
        strings.push(tail.get(..len)?);
        rest = tail.get(len..)?;
    }
    Some(strings)
}

/// SOA data: `ns.<suffix>`, `hostmaster.<suffix>`, the serial, refresh 60 s, retry 10 s,
/// expire 7 days, minimum 30 s.
pub fn soa_rdata(suffix: &str, serial: u32) -> Vec<u8> {
    let mut out = name_wire(&format!("ns.{suffix}")).unwrap_or_else(|| vec![0]);
    out.extend(name_wire(&format!("hostmaster.{suffix}")).unwrap_or_else(|| vec![0]));
    for value in [serial, REFRESH, 10, 604_800, TTL] {
        out.extend_from_slice(&value.to_be_bytes());
    }
    out
}

/// The SOA refresh interval: how often a follower asks without a NOTIFY.
pub const REFRESH: u32 = 60;

/// The serial of SOA data; `None` if malformed.
pub fn soa_serial(rdata: &[u8]) -> Option<u32> {
    let mut pos = 0;
    for _ in 0..2 {
        loop {
            let len = usize::from(*rdata.get(pos)?);
            if len & 0xc0 != 0 {
                // A compression pointer ends the name (two bytes).
                pos += 2;
                break;
            }
            pos += 1 + len;
            if len == 0 {
                break;
            }
        }
    }
    let bytes = rdata.get(pos..pos + 4)?;
    Some(u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
}

/// The owner label of an order: the first 16 bytes of SHA-256(id), hex.
pub fn order_label(id: &str) -> String {
    hex(&Sha256::digest(id.as_bytes())[..16])
}

fn target_label(json: &[u8]) -> String {
    hex(&Sha256::digest(json)[..8])
}

/// The apex of the metadata zone.
pub fn orders_apex(suffix: &str) -> String {
    format!("orders.{suffix}")
}

/// The apex of the RPZ zone of a jurisdiction label (`it`, `global`).
pub fn rpz_apex(label: &str, suffix: &str) -> String {
    format!("{label}.{suffix}")
}

/// `order` without its targets (they are not copied).
pub(super) fn header_of(order: &Order) -> Order {
    Order {
        id: order.id.clone(),
        kind: order.kind,
        authority: order.authority.clone(),
        reference: order.reference.clone(),
        legal_basis: order.legal_basis.clone(),
        requested_by: order.requested_by.clone(),
        jurisdictions: order.jurisdictions.clone(),
        targets: Vec::new(),
        action: order.action,
        block_addresses: order.block_addresses,
        state: order.state,
        effective_from: order.effective_from,
        comply_by: order.comply_by,
        expires_at: order.expires_at,
        windows: order.windows.clone(),
        notice: order.notice.clone(),
        parent: order.parent.clone(),
        overrides: order.overrides.clone(),
        transparency: order.transparency,
    }
}

/// The metadata zone's records of one order: its header and one record per target; `None`
/// when the header does not fit one record (65535 bytes).
pub fn order_records(apex: &str, order: &Order) -> Option<Vec<Rr>> {
    let owner = format!("{}.{apex}", order_label(&order.id));
    let rdata = serde_json::to_vec(&header_of(order))
        .ok()
        .and_then(|json| txt_rdata(Some(ORDER_TAG), &json))?;
    let mut records = Vec::with_capacity(order.targets.len() + 1);
    for target in &order.targets {
        let Some((json, rdata)) = serde_json::to_vec(target)
            .ok()
            .and_then(|json| txt_rdata(None, &json).map(|rdata| (json, rdata)))
        else {
            continue;
        };
        records.push(Rr {
            owner: format!("{}.{owner}", target_label(&json)),
            rtype: rtype::TXT,
            rdata,
        });
    }
    records.push(Rr {
        owner,
        rtype: rtype::TXT,
        rdata,
    });
    Some(records)
}

#[cfg(test)]
/// The metadata zone's records for `orders` (NS at the apex included). An order whose header
/// does not fit one record (65535 bytes) is left out and returned in the second value.
pub fn orders_zone(suffix: &str, orders: &[Arc<Order>]) -> (Records, Vec<String>) {
    let apex = orders_apex(suffix);
    let mut records = apex_records(&apex, suffix);
    let mut left_out = Vec::new();
    for order in orders {
        match order_records(&apex, order) {
            Some(rrs) => records.extend(rrs),
            None => left_out.push(order.id.clone()),
        }
    }
    (records, left_out)
}

/// The apex NS record of a zone.
pub fn apex_ns(apex: &str, suffix: &str) -> Rr {
    Rr {
        owner: apex.to_owned(),
        rtype: rtype::NS,
        rdata: name_wire(&format!("ns.{suffix}")).unwrap_or_else(|| vec![0]),
    }
}

#[cfg(test)]
fn apex_records(apex: &str, suffix: &str) -> Records {
    Records::from([apex_ns(apex, suffix)])
}

/// An order that can put triggers in the RPZ zones: `active` and valid (`None` otherwise).
pub fn rpz_candidate(order: &Order) -> Option<ValidatedOrder> {
    if order.state != OrderState::Active {
        return None;
    }
    let options = ValidationOptions {
        public_suffixes: &Psl,
        ..ValidationOptions::default()
    };
    order.validate(&options).ok()
}

/// Which of `orders` (by id: the facts of an [`rpz_candidate`]) have their triggers in the RPZ
/// zones at `now`: in force as far as time goes, and an extension only while its parent is.
pub fn in_rpz<'a>(
    orders: impl Iterator<Item = (&'a str, &'a OrderInfo)> + Clone,
    now: Timestamp,
) -> BTreeSet<&'a str> {
    let in_force: BTreeSet<&str> = orders
        .clone()
        .filter(|(_, info)| info.time_status(now) == TimeStatus::InForce)
        .map(|(id, _)| id)
        .collect();
    orders
        .filter(|(id, info)| {
            in_force.contains(id)
                && info
                    .parent
                    .as_deref()
                    .is_none_or(|parent| in_force.contains(parent))
        })
        .map(|(id, _)| id)
        .collect()
}

/// The RPZ records of one order (`valid`, an [`rpz_candidate`]): (apex, record), one per
/// trigger and jurisdiction.
pub fn order_triggers(suffix: &str, valid: &ValidatedOrder) -> Vec<(String, Rr)> {
    let info = valid.info();
    let export = ExportOrder {
        id: info.id.clone(),
        description: String::new(),
        action: info.action,
        block_addresses: info.block_addresses,
        targets: valid
            .targets()
            .iter()
            .map(|t| {
                let value = match t.value() {
                    TargetValue::Name(name) => name.to_string(),
                    TargetValue::Prefix(net) => net.to_string(),
                };
                (t.kind(), value)
            })
            .collect(),
    };
    let triggers = rpz::triggers(&export);
    let mut labels: Vec<String> = info
        .countries
        .iter()
        .map(|c| c.as_str().to_ascii_lowercase())
        .collect();
    if info.countries.is_global() {
        labels.push("global".to_owned());
    }
    let mut out = Vec::with_capacity(triggers.len() * labels.len());
    for label in labels {
        let apex = rpz_apex(&label, suffix);
        for (trigger, target) in &triggers {
            let owner = format!("{trigger}.{apex}");
            if let (Some(_), Some(rdata)) = (name_wire(&owner), name_wire(target)) {
                out.push((
                    apex.clone(),
                    Rr {
                        owner,
                        rtype: rtype::CNAME,
                        rdata,
                    },
                ));
            }
        }
    }
    out
}

#[cfg(test)]
/// The RPZ zones (by apex) for the `active` orders of `orders` in force at `now`; every apex
/// of `keep` is there too (empty if no order binds it), and `global`. (A whole build: the
/// publisher keeps its zones up to date order by order with the same functions.)
pub fn rpz_zones(
    suffix: &str,
    orders: &[Arc<Order>],
    now: Timestamp,
    keep: &BTreeSet<String>,
) -> BTreeMap<String, Records> {
    let mut zones: BTreeMap<String, Records> = BTreeMap::new();
    for apex in keep.iter().cloned().chain([rpz_apex("global", suffix)]) {
        let records = apex_records(&apex, suffix);
        zones.insert(apex, records);
    }
    let candidates: BTreeMap<&str, ValidatedOrder> = orders
        .iter()
        .filter_map(|order| Some((order.id.as_str(), rpz_candidate(order)?)))
        .collect();
    let shown = in_rpz(
        candidates.iter().map(|(id, valid)| (*id, &**valid.info())),
        now,
    );
    for id in shown {
        for (apex, rr) in order_triggers(suffix, &candidates[id]) {
            zones
                .entry(apex.clone())
                .or_insert_with(|| apex_records(&apex, suffix))
                .insert(rr);
        }
    }
    zones
}

/// The net difference an IXFR makes to a zone: records gone, records new.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Diff {
    /// Records the zone had and no longer has.
    pub removed: Records,
    /// Records the zone has now and had not.
    pub added: Records,
}

impl Diff {
    /// Applies the difference to `records` (the zone it was made against).
    pub fn apply(self, records: &mut Records) {
        for rr in &self.removed {
            records.remove(rr);
        }
        records.extend(self.added);
    }
}

/// An order an IXFR changes: its owner label, and the order now (`None`: gone).
pub type OrderChange = (String, Option<Arc<Order>>);

/// One record of the metadata zone, read.
enum Item {
    /// The apex's own records (NS).
    Apex,
    /// An order's header record: its owner label and the order without its targets.
    Header(String, Box<Order>),
    /// A target record: its order's owner label, its JSON and the target.
    Target(String, Vec<u8>, Target),
}

fn read_record(apex: &str, rr: &Rr) -> Result<Item, String> {
    if rr.owner == apex {
        return Ok(Item::Apex);
    }
    let relative = rr
        .owner
        .strip_suffix(apex)
        .and_then(|r| r.strip_suffix('.'))
        .ok_or_else(|| format!("{} is outside the zone {apex}", rr.owner))?;
    if rr.rtype != rtype::TXT {
        return Err(format!("{}: unexpected record type {}", rr.owner, rr.rtype));
    }
    let strings =
        txt_strings(&rr.rdata).ok_or_else(|| format!("{}: malformed TXT data", rr.owner))?;
    let labels: Vec<&str> = relative.split('.').collect();
    match labels.as_slice() {
        [label] => {
            let Some((tag, json)) = strings.split_first() else {
                return Err(format!("{}: empty TXT record", rr.owner));
            };
            if *tag != ORDER_TAG {
                return Err(format!(
                    "{}: not a juris order record (first string is not juris-order=1)",
                    rr.owner
                ));
            }
            let json: Vec<u8> = json.concat();
            let order: Order = serde_json::from_slice(&json)
                .map_err(|e| format!("{}: not an order document: {e}", rr.owner))?;
            if order_label(&order.id) != *label {
                return Err(format!(
                    "{}: carries order {:?}, whose label differs",
                    rr.owner, order.id
                ));
            }
            Ok(Item::Header((*label).to_owned(), Box::new(order)))
        }
        [_, order] => {
            let json: Vec<u8> = strings.concat();
            let target: Target = serde_json::from_slice(&json)
                .map_err(|e| format!("{}: not a target: {e}", rr.owner))?;
            Ok(Item::Target((*order).to_owned(), json, target))
        }
        _ => Err(format!("{}: unexpected owner name", rr.owner)),
    }
}

/// The canonical order of an order's targets: by their JSON.
fn target_key(target: &Target) -> Vec<u8> {
    serde_json::to_vec(target).unwrap_or_default()
}

/// What one IXFR does to one order (by owner label).
#[derive(Default)]
struct OrderEdit {
    header_removed: bool,
    header_added: Option<Order>,
    targets_removed: Vec<Target>,
    targets_added: Vec<Target>,
}

/// The orders of the metadata zone, by owner label: decoded whole from an AXFR (or a
/// snapshot), then kept in step with each IXFR by re-reading only the records it changes.
#[derive(Debug, Default, Clone)]
pub struct DecodedOrders(BTreeMap<String, Arc<Order>>);

impl DecodedOrders {
    /// Rebuilds the orders from the metadata zone's records. Any malformed record makes the
    /// whole zone unusable (a corrupt transfer: the last good orders stay in force).
    pub fn decode(apex: &str, records: &Records) -> Result<DecodedOrders, String> {
        let mut headers: BTreeMap<String, Order> = BTreeMap::new();
        let mut targets: BTreeMap<String, Vec<(Vec<u8>, Target)>> = BTreeMap::new();
        for rr in records {
            match read_record(apex, rr)? {
                Item::Apex => {}
                Item::Header(label, order) => {
                    if headers.insert(label, *order).is_some() {
                        return Err(format!("{}: two order records", rr.owner));
                    }
                }
                Item::Target(label, json, target) => {
                    targets.entry(label).or_default().push((json, target));
                }
            }
        }
        if let Some(label) = targets.keys().find(|label| !headers.contains_key(*label)) {
            return Err(format!(
                "targets of {label}.{apex} without their order record"
            ));
        }
        let mut orders = BTreeMap::new();
        for (label, mut order) in headers {
            let mut list = targets.remove(&label).unwrap_or_default();
            list.sort_by(|a, b| a.0.cmp(&b.0));
            order.targets = list.into_iter().map(|(_, t)| t).collect();
            orders.insert(label, Arc::new(order));
        }
        Ok(DecodedOrders(orders))
    }

    /// The orders, sorted by id.
    pub fn orders(&self) -> Vec<Arc<Order>> {
        let mut orders: Vec<Arc<Order>> = self.0.values().cloned().collect();
        orders.sort_by(|a, b| a.id.cmp(&b.id));
        orders
    }

    /// The orders an IXFR's net difference (`diff`, against the zone these orders were
    /// decoded from) changes: each as it is now (`None`: gone). Only the records in `diff`
    /// are read; nothing changes here (a corrupt difference leaves the orders as they are).
    pub fn patch(&self, apex: &str, diff: &Diff) -> Result<Vec<OrderChange>, String> {
        let mut edits: BTreeMap<String, OrderEdit> = BTreeMap::new();
        for (rr, removed) in diff
            .removed
            .iter()
            .map(|rr| (rr, true))
            .chain(diff.added.iter().map(|rr| (rr, false)))
        {
            match read_record(apex, rr)? {
                Item::Apex => {}
                Item::Header(label, order) => {
                    let edit = edits.entry(label).or_default();
                    if removed {
                        edit.header_removed = true;
                    } else if edit.header_added.replace(*order).is_some() {
                        return Err(format!("{}: two order records", rr.owner));
                    }
                }
                Item::Target(label, _, target) => {
                    let edit = edits.entry(label).or_default();
                    if removed {
                        edit.targets_removed.push(target);
                    } else {
                        edit.targets_added.push(target);
                    }
                }
            }
        }
        let mut changes = Vec::with_capacity(edits.len());
        for (label, edit) in edits {
            let old = self.0.get(&label);
            if edit.header_removed && old.is_none() {
                return Err(format!(
                    "{label}.{apex}: removes an order record we do not have"
                ));
            }
            if edit.header_added.is_some() && old.is_some() && !edit.header_removed {
                return Err(format!("{label}.{apex}: two order records"));
            }
            let mut targets = old.map(|o| o.targets.clone()).unwrap_or_default();
            for target in &edit.targets_removed {
                let key = target_key(target);
                let at = targets
                    .binary_search_by(|t| target_key(t).cmp(&key))
                    .ok()
                    .or_else(|| targets.iter().position(|t| t == target))
                    .ok_or_else(|| {
                        format!("{label}.{apex}: removes a target the order does not have")
                    })?;
                targets.remove(at);
            }
            for target in edit.targets_added {
                let key = target_key(&target);
                if let Err(at) = targets.binary_search_by(|t| target_key(t).cmp(&key)) {
                    targets.insert(at, target);
                }
            }
            let header = match (edit.header_added, old) {
                (Some(header), _) => Some(header),
                (None, Some(old)) if !edit.header_removed => Some(header_of(old)),
                (None, _) => None,
            };
            let order = match header {
                Some(mut order) => {
                    order.targets = targets;
                    Some(Arc::new(order))
                }
                None if targets.is_empty() => None,
                None => {
                    return Err(format!(
                        "targets of {label}.{apex} without their order record"
                    ))
                }
            };
            changes.push((label, order));
        }
        Ok(changes)
    }

    /// Puts what [`patch`](Self::patch) returned in force; `true` if an order changed.
    pub fn commit(&mut self, changes: Vec<OrderChange>) -> bool {
        let mut changed = false;
        for (label, order) in changes {
            match order {
                Some(order) => {
                    if self.0.get(&label).is_some_and(|old| **old == *order) {
                        continue;
                    }
                    self.0.insert(label, order);
                    changed = true;
                }
                None => changed |= self.0.remove(&label).is_some(),
            }
        }
        changed
    }
}

#[cfg(test)]
/// Rebuilds the orders from the metadata zone's records ([`DecodedOrders::decode`]), sorted
/// by id.
pub fn decode_orders(apex: &str, records: &Records) -> Result<Vec<Order>, String> {
    Ok(DecodedOrders::decode(apex, records)?
        .orders()
        .into_iter()
        .map(Arc::unwrap_or_clone)
        .collect())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "test code")]
mod tests {
    use super::*;

    const SUFFIX: &str = "rpz.juris.invalid.";

    fn order(json: &str) -> Arc<Order> {
        Arc::new(Order::from_json(json.as_bytes()).unwrap())
    }

    fn italian() -> Arc<Order> {
        order(
            r#"{"id": "IT-1", "kind": "court_order", "authority": "Tribunale di Milano",
            "jurisdictions": ["IT"], "action": "nxdomain", "state": "active",
            "notice": {"text": "Blocked by order of the court", "lang": "en", "url": ""},
            "windows": [{"start": "2020-01-01T00:00:00Z", "end": "2200-01-01T00:00:00Z"}],
            "targets": [{"type": "subtree", "value": "kickasstorrents.to"},
                        {"type": "domain", "value": "www.mirror.test", "evidence": "report 7"},
                        {"type": "nsdname", "value": "ns1.bad-dns.example"}]}"#,
        )
    }

    #[test]
    fn the_metadata_zone_rebuilds_the_exact_orders() {
        let global = order(
            r#"{"id": "SEC 1", "kind": "operator_security", "authority": "NOC",
            "jurisdictions": ["*"], "action": "nodata", "state": "shadow", "targets": []}"#,
        );
        let (records, left_out) = orders_zone(SUFFIX, &[italian(), global.clone()]);
        assert!(left_out.is_empty());
        let decoded = decode_orders(&orders_apex(SUFFIX), &records).unwrap();
        assert_eq!(decoded.len(), 2);
        let mut want = Order::clone(&italian());
        let mut got = decoded[0].clone();
        let key = |t: &Target| serde_json::to_vec(t).unwrap();
        want.targets.sort_by_key(key);
        got.targets.sort_by_key(key);
        assert_eq!(got, want);
        assert_eq!(decoded[1], *global);
    }

    #[test]
    fn a_corrupt_record_makes_the_zone_unusable() {
        let apex = orders_apex(SUFFIX);
        let (mut records, _) = orders_zone(SUFFIX, &[italian()]);
        let header = records
            .iter()
            .find(|r| r.owner.matches('.').count() == 5 && r.rtype == rtype::TXT)
            .unwrap()
            .clone();
        records.remove(&header);
        let mut broken = header.clone();
        let last = broken.rdata.len() - 3;
        broken.rdata[last] = b'{';
        records.insert(broken);
        let error = decode_orders(&apex, &records).unwrap_err();
        assert!(error.contains("not an order document"), "{error}");
        // Targets without their order.
        let (mut records, _) = orders_zone(SUFFIX, &[italian()]);
        records.remove(&header);
        assert!(decode_orders(&apex, &records)
            .unwrap_err()
            .contains("without their order record"));
    }

    #[test]
    fn rpz_zones_hold_the_orders_in_force_per_jurisdiction() {
        let now: Timestamp = "2025-06-01T00:00:00Z".parse().unwrap();
        let lifted = order(
            r#"{"id": "IT-2", "kind": "court_order", "authority": "T",
            "jurisdictions": ["IT"], "action": "nxdomain", "state": "lifted",
            "targets": [{"type": "domain", "value": "lifted.example"}]}"#,
        );
        let zones = rpz_zones(SUFFIX, &[italian(), lifted], now, &BTreeSet::new());
        let it = &zones["it.rpz.juris.invalid."];
        let owners: Vec<&str> = it
            .iter()
            .filter(|r| r.rtype == rtype::CNAME)
            .map(|r| r.owner.as_str())
            .collect();
        assert_eq!(
            owners,
            [
                "*.kickasstorrents.to.it.rpz.juris.invalid.",
                "kickasstorrents.to.it.rpz.juris.invalid.",
                "ns1.bad-dns.example.rpz-nsdname.it.rpz.juris.invalid.",
                "www.mirror.test.it.rpz.juris.invalid.",
            ]
        );
        assert!(it.iter().all(|r| r.rtype != rtype::CNAME || r.rdata == [0]));
        assert!(zones.contains_key("global.rpz.juris.invalid."));
        assert!(!zones.contains_key("de.rpz.juris.invalid."));
        // Outside its window: not in the zone.
        let later: Timestamp = "2201-01-01T00:00:00Z".parse().unwrap();
        let zones = rpz_zones(SUFFIX, &[italian()], later, &BTreeSet::new());
        assert!(!zones.contains_key("it.rpz.juris.invalid."));
    }

    /// A patch by an IXFR's difference gives the orders a whole decode of the new zone gives.
    #[test]
    fn an_ixfr_difference_patches_the_decoded_orders_as_a_whole_decode_would() {
        let apex = orders_apex(SUFFIX);
        let doc = |id: &str, state: &str, names: &[&str]| {
            let targets: Vec<String> = names
                .iter()
                .map(|n| format!(r#"{{"type": "domain", "value": "{n}"}}"#))
                .collect();
            order(&format!(
                r#"{{"id": "{id}", "kind": "court_order", "authority": "T",
                "jurisdictions": ["IT"], "action": "nxdomain", "state": "{state}",
                "targets": [{}]}}"#,
                targets.join(",")
            ))
        };
        let versions = [
            vec![
                doc("A", "active", &["a.test", "b.test"]),
                doc("B", "active", &["x.test"]),
            ],
            // A name added and one removed; B's header changes (state); C comes.
            vec![
                doc("A", "active", &["b.test", "c.test", "0.test"]),
                doc("B", "lifted", &["x.test"]),
                doc("C", "active", &[]),
            ],
            // A goes; C gets names.
            vec![
                doc("B", "lifted", &["x.test"]),
                doc("C", "active", &["z.test", "y.test"]),
            ],
        ];
        let (mut have, _) = orders_zone(SUFFIX, &versions[0]);
        let mut decoded = DecodedOrders::decode(&apex, &have).unwrap();
        for next in &versions[1..] {
            let (records, _) = orders_zone(SUFFIX, next);
            let diff = Diff {
                removed: have.difference(&records).cloned().collect(),
                added: records.difference(&have).cloned().collect(),
            };
            let changes = decoded.patch(&apex, &diff).unwrap();
            assert!(decoded.commit(changes));
            diff.apply(&mut have);
            assert_eq!(have, records);
            let whole = DecodedOrders::decode(&apex, &records).unwrap();
            assert_eq!(decoded.orders(), whole.orders());
        }
        // A difference that leaves targets without their order is refused, and changes nothing.
        let header = have
            .iter()
            .find(|r| r.owner.starts_with(&order_label("C")))
            .unwrap()
            .clone();
        let bad = Diff {
            removed: [header].into(),
            added: Records::new(),
        };
        let before = decoded.orders();
        assert!(decoded
            .patch(&apex, &bad)
            .unwrap_err()
            .contains("without their order record"));
        assert_eq!(decoded.orders(), before);
    }

    #[test]
    fn soa_round_trips() {
        assert_eq!(
            soa_serial(&soa_rdata(SUFFIX, 4_000_000_001)),
            Some(4_000_000_001)
        );
        assert_eq!(txt_strings(&[3, b'a', b'b']), None);
    }
}
