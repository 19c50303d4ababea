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
use juris_policy::{Order, OrderState, Target, TargetValue, TimeStatus, ValidationOptions};
use sha2::{Digest, Sha256};

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

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
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

/// The metadata zone's records for `orders` (NS at the apex included). An order whose header
/// does not fit one record (65535 bytes) is left out and returned in the second value.
pub fn orders_zone(suffix: &str, orders: &[Arc<Order>]) -> (Records, Vec<String>) {
    let apex = orders_apex(suffix);
    let mut records = apex_records(&apex, suffix);
    let mut left_out = Vec::new();
    for order in orders {
        let label = order_label(&order.id);
        let owner = format!("{label}.{apex}");
        let mut header = Order::clone(order);
        header.targets.clear();
        let Some(rdata) = serde_json::to_vec(&header)
            .ok()
            .and_then(|json| txt_rdata(Some(ORDER_TAG), &json))
        else {
            left_out.push(order.id.clone());
            continue;
        };
        let mut targets = Vec::with_capacity(order.targets.len());
        for target in &order.targets {
            let Some((json, rdata)) = serde_json::to_vec(target)
                .ok()
                .and_then(|json| txt_rdata(None, &json).map(|rdata| (json, rdata)))
            else {
                continue;
            };
            targets.push(Rr {
                owner: format!("{}.{owner}", target_label(&json)),
                rtype: rtype::TXT,
                rdata,
            });
        }
        records.insert(Rr {
            owner,
            rtype: rtype::TXT,
            rdata,
        });
        records.extend(targets);
    }
    (records, left_out)
}

fn apex_records(apex: &str, suffix: &str) -> Records {
    let mut records = Records::new();
    records.insert(Rr {
        owner: apex.to_owned(),
        rtype: rtype::NS,
        rdata: name_wire(&format!("ns.{suffix}")).unwrap_or_else(|| vec![0]),
    });
    records
}

/// The RPZ zones (by apex) for the `active` orders of `orders` in force at `now`; every apex
/// of `keep` is there too (empty if no order binds it), and `global`.
pub fn rpz_zones(
    suffix: &str,
    orders: &[Arc<Order>],
    now: Timestamp,
    keep: &BTreeSet<String>,
) -> BTreeMap<String, Records> {
    let options = ValidationOptions {
        public_suffixes: &Psl,
        ..ValidationOptions::default()
    };
    let mut zones: BTreeMap<String, Records> = BTreeMap::new();
    for apex in keep.iter().cloned().chain([rpz_apex("global", suffix)]) {
        let records = apex_records(&apex, suffix);
        zones.insert(apex, records);
    }
    let mut in_force = BTreeMap::new();
    for order in orders {
        if order.state != OrderState::Active {
            continue;
        }
        let Ok(valid) = order.validate(&options) else {
            continue;
        };
        if valid.info().time_status(now) != TimeStatus::InForce {
            continue;
        }
        in_force.insert(order.id.clone(), valid);
    }
    for valid in in_force.values() {
        let info = valid.info();
        // An extension is in force only while its parent is.
        if let Some(parent) = &info.parent {
            if !in_force.contains_key(parent) {
                continue;
            }
        }
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
        for label in labels {
            let apex = rpz_apex(&label, suffix);
            let zone = zones
                .entry(apex.clone())
                .or_insert_with(|| apex_records(&apex, suffix));
            for (trigger, target) in &triggers {
                let owner = format!("{trigger}.{apex}");
                if let (Some(_), Some(rdata)) = (name_wire(&owner), name_wire(target)) {
                    zone.insert(Rr {
                        owner,
                        rtype: rtype::CNAME,
                        rdata,
                    });
                }
            }
        }
    }
    zones
}

/// Rebuilds the orders from the metadata zone's records. Any malformed record makes the whole
/// zone unusable (a corrupt transfer: the last good orders stay in force).
pub fn decode_orders(apex: &str, records: &Records) -> Result<Vec<Order>, String> {
    let suffix = format!(".{apex}");
    let mut headers: BTreeMap<String, Order> = BTreeMap::new();
    let mut targets: BTreeMap<String, Vec<(Vec<u8>, Target)>> = BTreeMap::new();
    for rr in records {
        if rr.owner == apex {
            continue;
        }
        let Some(relative) = rr.owner.strip_suffix(&suffix) else {
            return Err(format!("{} is outside the zone {apex}", rr.owner));
        };
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
                if headers.insert((*label).to_owned(), order).is_some() {
                    return Err(format!("{}: two order records", rr.owner));
                }
            }
            [_, order] => {
                let json: Vec<u8> = strings.concat();
                let target: Target = serde_json::from_slice(&json)
                    .map_err(|e| format!("{}: not a target: {e}", rr.owner))?;
                targets
                    .entry((*order).to_owned())
                    .or_default()
                    .push((json, target));
            }
            _ => return Err(format!("{}: unexpected owner name", rr.owner)),
        }
    }
    for label in targets.keys() {
        if !headers.contains_key(label) {
            return Err(format!(
                "targets of {label}.{apex} without their order record"
            ));
        }
    }
    let mut orders = Vec::with_capacity(headers.len());
    for (label, mut order) in headers {
        let mut list = targets.remove(&label).unwrap_or_default();
        list.sort_by(|a, b| a.0.cmp(&b.0));
        order.targets = list.into_iter().map(|(_, t)| t).collect();
        orders.push(order);
    }
    orders.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(orders)
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

    #[test]
    fn soa_round_trips() {
        assert_eq!(
            soa_serial(&soa_rdata(SUFFIX, 4_000_000_001)),
            Some(4_000_000_001)
        );
        assert_eq!(txt_strings(&[3, b'a', b'b']), None);
    }
}
