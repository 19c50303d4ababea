//! The delegation cache (zone cut → name server names) and the name server address cache
//! (name → A/AAAA addresses), both with TTLs read from the injected clock.
//!
//! The root delegation comes from the root hints and never expires. Glue and the results of
//! name server address lookups land in the address cache, so a second name in a known zone
//! starts at the deepest known cut with addresses ready. Each name's addresses are kept by
//! rank (RFC 2181 §5.4.1): the answer of the name's own zone outranks glue and is tried
//! first; glue never replaces it and stays, with its own TTL, as the parent-side fallback.

use std::collections::HashMap;

// The keys are zone and server names, which the zones juris is sent to choose: the hasher is
// seeded per process (foldhash, as the answer cache; SipHash cost ~6 % of a cold answer's
// instructions, docs/performance.md).
use foldhash::fast::RandomState;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use domain::base::{Name, Rtype};

use crate::cache::FlushScope;
use crate::names::lower;

/// Bound on entries in each map; past it expired entries are dropped, then everything.
pub(crate) const MAX_ENTRIES: usize = 200_000;

/// Default of `resolver.limits.max_ns_per_zone_cut`: the 13 of PowerDNS Recursor's
/// `max-ns-per-resolve` and BIND's `max-delegation-servers`, which is also the root's own NS
/// set (design 0051).
pub(crate) const MAX_NS_PER_CUT: usize = 13;

/// Default of `resolver.limits.max_addresses_per_ns` (per address type; design 0051).
pub(crate) const MAX_ADDRESSES_PER_NS: usize = 8;

/// The name servers of a zone cut to keep, at most `max` (at least 1), from `targets`
/// (lower-cased, in the referral's order, duplicates allowed): the names `glued` says have
/// usable glue first (they can be asked at once, without a lookup), then the others, each
/// group in the given order, so the same referral always keeps the same names. Returns the
/// names and whether any name was left out.
///
/// Each list it builds holds at most `max` names, so a referral of thousands of names costs
/// `O(names × max)` comparisons, not `O(names²)`.
pub(crate) fn keep_name_servers(
    targets: impl IntoIterator<Item = Name<Bytes>>,
    glued: impl Fn(&Name<Bytes>) -> bool,
    max: usize,
) -> (Vec<Name<Bytes>>, bool) {
    let max = max.max(1);
    let mut with_glue: Vec<Name<Bytes>> = Vec::new();
    let mut without: Vec<Name<Bytes>> = Vec::new();
    let mut dropped = false;
    for name in targets {
        if with_glue.contains(&name) || without.contains(&name) {
            continue;
        }
        if with_glue.len() == max {
            // A full glued list is what is kept: this name, and any after it, is not.
            dropped = true;
            break;
        }
        if glued(&name) {
            with_glue.push(name);
        } else if without.len() < max {
            without.push(name);
        } else {
            dropped = true;
        }
    }
    with_glue.append(&mut without);
    if with_glue.len() > max {
        with_glue.truncate(max);
        dropped = true;
    }
    (with_glue, dropped)
}

/// A zone cut and its name servers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Delegation {
    /// The zone (lower-cased).
    pub zone: Name<Bytes>,
    /// Its name servers (lower-cased); shared, so handing out a cached cut copies nothing.
    pub name_servers: Arc<[Name<Bytes>]>,
}

#[derive(Debug, Clone)]
struct DelegationEntry {
    zone: Name<Bytes>,
    name_servers: Arc<[Name<Bytes>]>,
    expires_at: u64,
}

#[derive(Debug, Clone)]
struct AddressEntry {
    addresses: Vec<IpAddr>,
    expires_at: u64,
}

/// Where a name server's addresses were learnt, by trust (RFC 2181 §5.4.1): glue from a
/// referral ranks below the answer of the name's own zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rank {
    /// The additional section of a referral (parent-side data).
    Glue,
    /// The answer to a lookup of the name (the child's authoritative data).
    Answer,
}

/// The addresses of one type of a name server, one entry per rank: glue never overrides an
/// answer, and is kept beside it as the parent-side fallback (Unbound's parent-side
/// addresses) for when the servers the answer names do not work.
#[derive(Debug, Clone, Default)]
struct RankedEntry {
    answer: Option<AddressEntry>,
    glue: Option<AddressEntry>,
}

impl RankedEntry {
    fn fresh(entry: &Option<AddressEntry>, now: u64) -> Option<&AddressEntry> {
        entry.as_ref().filter(|e| e.expires_at > now)
    }

    fn expired(&self, now: u64) -> bool {
        Self::fresh(&self.answer, now).is_none() && Self::fresh(&self.glue, now).is_none()
    }
}

/// The A and AAAA entries of one name server.
#[derive(Debug, Clone, Default)]
struct AddressPair {
    a: RankedEntry,
    aaaa: RankedEntry,
}

impl AddressPair {
    fn get(&self, rtype: Rtype) -> &RankedEntry {
        if rtype == Rtype::A {
            &self.a
        } else {
            &self.aaaa
        }
    }

    fn get_mut(&mut self, rtype: Rtype) -> &mut RankedEntry {
        if rtype == Rtype::A {
            &mut self.a
        } else {
            &mut self.aaaa
        }
    }

    fn expired(&self, now: u64) -> bool {
        self.a.expired(now) && self.aaaa.expired(now)
    }
}

/// Zone cuts and name server addresses.
///
/// The maps are keyed by the lower-cased wire form of the name: hashing it is one pass over
/// the bytes, where hashing a `Name` feeds the hasher one byte at a time.
#[derive(Debug)]
pub(crate) struct DelegationCache {
    root: Delegation,
    hint_addresses: HashMap<Bytes, Vec<IpAddr>, RandomState>,
    /// The root NS set a priming query returned (RFC 8109), while fresh; the hints otherwise.
    primed_root: Mutex<Option<DelegationEntry>>,
    zones: Mutex<HashMap<Bytes, DelegationEntry, RandomState>>,
    addresses: Mutex<HashMap<Bytes, AddressPair, RandomState>>,
    /// Entries kept in each map (`resolver.limits.delegation_entries`).
    max_entries: usize,
    /// Addresses kept per name and type (`resolver.limits.max_addresses_per_ns`).
    max_addresses: usize,
}

/// Calls `f` with the lower-cased wire form of `name` (without copying when it is lower-case
/// already, as the resolver's names are).
fn with_lower<R>(name: &Name<Bytes>, f: impl FnOnce(&[u8]) -> R) -> R {
    let slice = name.as_slice();
    if !crate::names::has_upper(slice) {
        return f(slice);
    }
    let mut buffer = [0u8; 255];
    let buffer = &mut buffer[..slice.len()];
    buffer.copy_from_slice(slice);
    // Length octets are < 64, below b'A': lower-casing leaves them alone.
    buffer.make_ascii_lowercase();
    f(buffer)
}

/// The owned key for `name`.
fn key_of(name: &Name<Bytes>) -> Bytes {
    lower(name).into_octets()
}

impl DelegationCache {
    /// A cache that knows only the root, from `hints`.
    pub(crate) fn new(hints: &[(Name<Bytes>, IpAddr)]) -> Self {
        let mut name_servers: Vec<Name<Bytes>> = Vec::new();
        let mut hint_addresses: HashMap<Bytes, Vec<IpAddr>, RandomState> = HashMap::default();
        for (name, address) in hints {
            let name = lower(name);
            if !name_servers.contains(&name) {
                name_servers.push(name.clone());
            }
            let list = hint_addresses.entry(name.into_octets()).or_default();
            if !list.contains(address) {
                list.push(*address);
            }
        }
        Self {
            root: Delegation {
                zone: Name::root_bytes(),
                name_servers: name_servers.into(),
            },
            hint_addresses,
            primed_root: Mutex::new(None),
            zones: Mutex::new(HashMap::default()),
            addresses: Mutex::new(HashMap::default()),
            max_entries: MAX_ENTRIES,
            max_addresses: MAX_ADDRESSES_PER_NS,
        }
    }

    /// At most `max` addresses kept per name server name and address type.
    pub(crate) fn with_max_addresses(mut self, max: usize) -> Self {
        self.max_addresses = max.max(1);
        self
    }

    /// At most `max_entries` zone cuts and as many name server addresses.
    pub(crate) fn with_max(mut self, max_entries: usize) -> Self {
        self.max_entries = max_entries.max(1);
        self
    }

    /// The root cut from the hints (what priming starts from).
    pub(crate) fn hints_root(&self) -> Delegation {
        self.root.clone()
    }

    /// The root cut in force: the primed NS set while fresh, else the hints.
    fn root_at(&self, now: u64) -> Delegation {
        let primed = match self.primed_root.lock() {
            Ok(primed) => primed,
            Err(poisoned) => poisoned.into_inner(),
        };
        match primed.as_ref().filter(|entry| entry.expires_at > now) {
            Some(entry) => Delegation {
                zone: entry.zone.clone(),
                name_servers: entry.name_servers.clone(),
            },
            None => self.root.clone(),
        }
    }

    /// Whether a priming answer is in force at `now`.
    pub(crate) fn root_primed(&self, now: u64) -> bool {
        match self.primed_root.lock() {
            Ok(primed) => primed.as_ref().is_some_and(|e| e.expires_at > now),
            Err(poisoned) => poisoned
                .into_inner()
                .as_ref()
                .is_some_and(|e| e.expires_at > now),
        }
    }

    /// Stores the root NS set of a priming answer for `ttl` seconds (RFC 8109 §3); the hints
    /// take over again when it expires.
    pub(crate) fn insert_root(&self, name_servers: Arc<[Name<Bytes>]>, ttl: u32, now: u64) {
        if ttl == 0 || name_servers.is_empty() {
            return;
        }
        let entry = DelegationEntry {
            zone: Name::root_bytes(),
            name_servers,
            expires_at: now + u64::from(ttl),
        };
        match self.primed_root.lock() {
            Ok(mut primed) => *primed = Some(entry),
            Err(poisoned) => *poisoned.into_inner() = Some(entry),
        }
    }

    /// The deepest known, unexpired zone cut at or above `name`.
    pub(crate) fn deepest(&self, name: &Name<Bytes>, now: u64) -> Delegation {
        let zones = match self.zones.lock() {
            Ok(zones) => zones,
            Err(poisoned) => poisoned.into_inner(),
        };
        if zones.is_empty() {
            drop(zones);
            return self.root_at(now);
        }
        let found = with_lower(name, |wire| {
            // Each suffix of a wire name starts at a label boundary: walk them, deepest first,
            // stopping before the root label.
            let mut pos = 0;
            while pos + 1 < wire.len() {
                if let Some(entry) = zones.get(&wire[pos..]) {
                    if entry.expires_at > now {
                        return Some(Delegation {
                            zone: entry.zone.clone(),
                            name_servers: entry.name_servers.clone(),
                        });
                    }
                }
                pos += 1 + usize::from(wire[pos]);
            }
            None
        });
        drop(zones);
        found.unwrap_or_else(|| self.root_at(now))
    }

    /// Zone cuts and name server address entries kept (design 0048's bound tests).
    #[cfg(test)]
    pub(crate) fn lens(&self) -> (usize, usize) {
        let zones = self.zones.lock().map_or(0, |z| z.len());
        let addresses = self.addresses.lock().map_or(0, |a| a.len());
        (zones, addresses)
    }

    /// Stores a zone cut learnt from a referral.
    pub(crate) fn insert_delegation(&self, delegation: &Delegation, ttl: u32, now: u64) {
        if delegation.zone.is_root() || ttl == 0 {
            return;
        }
        let zone = lower(&delegation.zone);
        let mut zones = match self.zones.lock() {
            Ok(zones) => zones,
            Err(poisoned) => poisoned.into_inner(),
        };
        if zones.len() >= self.max_entries {
            zones.retain(|_, entry| entry.expires_at > now);
            if zones.len() >= self.max_entries {
                zones.clear();
            }
        }
        zones.insert(
            zone.clone().into_octets(),
            DelegationEntry {
                zone,
                name_servers: delegation.name_servers.clone(),
                expires_at: now + u64::from(ttl),
            },
        );
    }

    /// Known addresses of a name server of type `rtype` (A or AAAA), every rank: `None` if
    /// unknown (or expired), `Some(empty)` if known to have none.
    pub(crate) fn addresses(
        &self,
        name: &Name<Bytes>,
        rtype: Rtype,
        now: u64,
    ) -> Option<Vec<IpAddr>> {
        let mut list = Vec::new();
        self.for_each_address(name, rtype, now, |address, _| {
            if !list.contains(&address) {
                list.push(address);
            }
        })
        .then_some(list)
    }

    /// Calls `f` with each known address of a name server of type `rtype` (A or AAAA) and
    /// whether it is only a fallback: the best-ranked addresses first (`false`), then glue
    /// that an answer for the name outranks (`true`). Returns whether any addresses are
    /// known (`false`: unknown or expired). No copy of the address lists is made.
    pub(crate) fn for_each_address(
        &self,
        name: &Name<Bytes>,
        rtype: Rtype,
        now: u64,
        mut f: impl FnMut(IpAddr, bool),
    ) -> bool {
        with_lower(name, |wire| {
            let hints = self.hint_addresses.get(wire);
            let learnt = {
                let addresses = match self.addresses.lock() {
                    Ok(addresses) => addresses,
                    Err(poisoned) => poisoned.into_inner(),
                };
                match addresses.get(wire).map(|pair| pair.get(rtype)) {
                    Some(ranked) => {
                        let answer = RankedEntry::fresh(&ranked.answer, now);
                        let glue = RankedEntry::fresh(&ranked.glue, now);
                        if let Some(entry) = answer {
                            entry.addresses.iter().for_each(|a| f(*a, false));
                        }
                        if let Some(entry) = glue {
                            entry.addresses.iter().for_each(|a| f(*a, answer.is_some()));
                        }
                        answer.is_some() || glue.is_some()
                    }
                    None => false,
                }
            };
            if let Some(hints) = hints {
                // The hints are configuration: a family they do not list is known to be
                // empty. Addresses learnt for the name (a priming answer's) come first, the
                // hints then stay as the fallback.
                hints
                    .iter()
                    .copied()
                    .filter(|a| a.is_ipv4() == (rtype == Rtype::A))
                    .for_each(|address| f(address, learnt));
                return true;
            }
            learnt
        })
    }

    /// Stores the addresses of a name server (glue or a lookup result), each rank in its own
    /// place. An empty list with a TTL records that the name has no such addresses (negative
    /// entry). Only the first `max_addresses` distinct addresses are kept: the upstream that
    /// sends them chooses how many there are (design 0051). Returns whether some were left
    /// out.
    pub(crate) fn insert_addresses(
        &self,
        name: &Name<Bytes>,
        rtype: Rtype,
        rank: Rank,
        mut addresses: Vec<IpAddr>,
        ttl: u32,
        now: u64,
    ) -> bool {
        if ttl == 0 || (rtype != Rtype::A && rtype != Rtype::AAAA) {
            return false;
        }
        let mut kept = 0;
        let mut capped = false;
        for at in 0..addresses.len() {
            let address = addresses[at];
            if addresses[..kept].contains(&address) {
                continue;
            }
            if kept == self.max_addresses {
                capped = true;
                break;
            }
            addresses[kept] = address;
            kept += 1;
        }
        addresses.truncate(kept);
        let key = key_of(name);
        let mut map = match self.addresses.lock() {
            Ok(map) => map,
            Err(poisoned) => poisoned.into_inner(),
        };
        if map.len() >= self.max_entries && !map.contains_key(&key) {
            map.retain(|_, pair| !pair.expired(now));
            if map.len() >= self.max_entries {
                map.clear();
            }
        }
        let entry = Some(AddressEntry {
            addresses,
            expires_at: now + u64::from(ttl),
        });
        let ranked = map.entry(key).or_default().get_mut(rtype);
        match rank {
            Rank::Answer => ranked.answer = entry,
            Rank::Glue => ranked.glue = entry,
        }
        capped
    }

    /// Forgets the zone cuts and name server addresses `scope` covers (the root cut and the
    /// hints' addresses are configuration and stay). Returns (cuts, address entries) removed.
    pub(crate) fn flush(&self, scope: FlushScope<'_>) -> (usize, usize) {
        let mut zones = match self.zones.lock() {
            Ok(zones) => zones,
            Err(poisoned) => poisoned.into_inner(),
        };
        let before = zones.len();
        zones.retain(|key, _| !scope.covers(key));
        let mut cuts = before - zones.len();
        drop(zones);
        if scope.covers(&[0]) {
            let mut primed = match self.primed_root.lock() {
                Ok(primed) => primed,
                Err(poisoned) => poisoned.into_inner(),
            };
            cuts += usize::from(primed.take().is_some());
        }
        let mut addresses = match self.addresses.lock() {
            Ok(map) => map,
            Err(poisoned) => poisoned.into_inner(),
        };
        let before = addresses.len();
        addresses.retain(|key, _| !scope.covers(key));
        (cuts, before - addresses.len())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "test code")]
mod tests {
    use super::*;

    fn n(s: &str) -> Name<Bytes> {
        Name::bytes_from_str(s).unwrap()
    }

    #[test]
    fn deepest_cut_and_expiry() {
        let hints = vec![(n("A.ROOT."), "127.0.0.2".parse().unwrap())];
        let cache = DelegationCache::new(&hints);
        assert!(cache.deepest(&n("www.example.test."), 0).zone.is_root());
        assert_eq!(
            cache.addresses(&n("a.root."), Rtype::A, 0),
            Some(vec!["127.0.0.2".parse().unwrap()])
        );
        let test = Delegation {
            zone: n("test."),
            name_servers: vec![n("ns.test.")].into(),
        };
        let example = Delegation {
            zone: n("example.test."),
            name_servers: vec![n("ns.example.test.")].into(),
        };
        cache.insert_delegation(&test, 100, 0);
        cache.insert_delegation(&example, 10, 0);
        assert_eq!(
            cache.deepest(&n("WWW.Example.Test."), 5).zone,
            n("example.test.")
        );
        assert_eq!(cache.deepest(&n("www.example.test."), 10).zone, n("test."));
        assert!(cache.deepest(&n("www.example.test."), 100).zone.is_root());
        cache.insert_addresses(&n("ns.test."), Rtype::A, Rank::Answer, vec![], 30, 0);
        assert_eq!(cache.addresses(&n("ns.test."), Rtype::A, 29), Some(vec![]));
        assert_eq!(cache.addresses(&n("ns.test."), Rtype::A, 30), None);
    }

    #[test]
    fn glue_never_overrides_an_answer_and_stays_as_fallback() {
        let cache = DelegationCache::new(&[(n("a.root."), "127.0.0.2".parse().unwrap())]);
        let ns = n("ns.example.test.");
        let glue: IpAddr = "192.0.2.44".parse().unwrap();
        let answer: IpAddr = "192.0.2.55".parse().unwrap();
        let listed = |now| {
            let mut seen = Vec::new();
            cache.for_each_address(&ns, Rtype::A, now, |a, fallback| seen.push((a, fallback)));
            seen
        };
        cache.insert_addresses(&ns, Rtype::A, Rank::Glue, vec![glue], 200, 0);
        assert_eq!(
            listed(0),
            vec![(glue, false)],
            "glue alone is the best there is"
        );
        cache.insert_addresses(&ns, Rtype::A, Rank::Answer, vec![answer], 100, 0);
        // A later referral's glue does not replace the answer either.
        cache.insert_addresses(&ns, Rtype::A, Rank::Glue, vec![glue], 200, 10);
        assert_eq!(listed(10), vec![(answer, false), (glue, true)]);
        // Each rank keeps its own TTL.
        assert_eq!(listed(100), vec![(glue, false)]);
        assert_eq!(cache.addresses(&ns, Rtype::A, 210), None);
    }

    #[test]
    fn flush_forgets_cuts_and_addresses_at_or_below_a_name_but_never_the_hints() {
        let hints = vec![(n("a.root."), "127.0.0.2".parse().unwrap())];
        let cache = DelegationCache::new(&hints);
        for zone in ["test.", "example.test.", "sub.example.test."] {
            let delegation = Delegation {
                zone: n(zone),
                name_servers: vec![n(&format!("ns.{zone}"))].into(),
            };
            cache.insert_delegation(&delegation, 100, 0);
            let address = vec!["192.0.2.1".parse().unwrap()];
            cache.insert_addresses(
                &n(&format!("ns.{zone}")),
                Rtype::A,
                Rank::Answer,
                address,
                100,
                0,
            );
        }
        let wire = |name: &str| lower(&n(name)).into_octets();
        let deep = n("www.sub.example.test.");
        // A name: the cut at it only (and its own addresses: none here).
        let example = wire("example.test.");
        assert_eq!(cache.flush(FlushScope::Name(&example)), (1, 0));
        assert_eq!(cache.deepest(&deep, 1).zone, n("sub.example.test."));
        assert!(cache
            .addresses(&n("ns.example.test."), Rtype::A, 1)
            .is_some());
        // A subtree: every cut and address at or below it.
        assert_eq!(cache.flush(FlushScope::Subtree(&example)), (1, 2));
        assert_eq!(cache.deepest(&deep, 1).zone, n("test."));
        assert!(cache
            .addresses(&n("ns.sub.example.test."), Rtype::A, 1)
            .is_none());
        assert!(cache.addresses(&n("ns.test."), Rtype::A, 1).is_some());
        // Everything: the root hints stay.
        assert_eq!(cache.flush(FlushScope::All), (1, 1));
        assert!(cache.deepest(&deep, 1).zone.is_root());
        assert!(cache.addresses(&n("a.root."), Rtype::A, 1).is_some());
    }

    /// Design 0051: a cut keeps at most `max` names: the glued ones first, then the others,
    /// each in the referral's order, duplicates once; whether any was left out is reported.
    #[test]
    fn keep_name_servers_prefers_glue_then_order_and_says_what_it_dropped() {
        let names = |list: &[&str]| list.iter().map(|s| n(s)).collect::<Vec<_>>();
        let glued = |name: &Name<Bytes>| name.to_string().starts_with('g');
        // Under the cap: everything, glued first, duplicates once.
        let (kept, dropped) = keep_name_servers(
            names(&["a.x.", "g1.x.", "a.x.", "b.x.", "G1.X."]),
            glued,
            13,
        );
        assert_eq!(kept, names(&["g1.x.", "a.x.", "b.x."]));
        assert!(!dropped);
        // Exactly at the cap after duplicates: nothing dropped.
        let (kept, dropped) = keep_name_servers(names(&["a.x.", "b.x.", "a.x."]), glued, 2);
        assert_eq!(kept, names(&["a.x.", "b.x."]));
        assert!(!dropped);
        // 200 names, glue for every 20th (from the 7th on): the 10 glued, then 3 others.
        let many: Vec<String> = (0..200)
            .map(|i| {
                if i % 20 == 7 {
                    format!("g{i}.x.")
                } else {
                    format!("n{i}.x.")
                }
            })
            .collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        let (kept, dropped) = keep_name_servers(names(&many), glued, 13);
        let mut expected: Vec<String> = (0..10).map(|k| format!("g{}.x.", 20 * k + 7)).collect();
        expected.extend(["n0.x.", "n1.x.", "n2.x."].map(String::from));
        let expected: Vec<&str> = expected.iter().map(String::as_str).collect();
        assert_eq!(kept, names(&expected));
        assert!(dropped);
        // All glued: the first 13 in order; none glued: likewise.
        for prefix in ["g", "n"] {
            let list: Vec<String> = (0..200).map(|i| format!("{prefix}{i}.x.")).collect();
            let list: Vec<&str> = list.iter().map(String::as_str).collect();
            let (kept, dropped) = keep_name_servers(names(&list), glued, 13);
            assert_eq!(kept, names(&list[..13]));
            assert!(dropped);
        }
        // A full glued list with one more distinct name after it.
        let (kept, dropped) =
            keep_name_servers(names(&["g1.x.", "g2.x.", "g1.x.", "g3.x."]), glued, 2);
        assert_eq!(kept, names(&["g1.x.", "g2.x."]));
        assert!(dropped);
    }

    /// Design 0051: a name server keeps at most `max_addresses_per_ns` distinct addresses
    /// per type, the first ones given; an empty list (a negative entry) stays possible.
    #[test]
    fn addresses_per_name_server_are_capped() {
        let cache = DelegationCache::new(&[(n("a.root."), "127.0.0.2".parse().unwrap())])
            .with_max_addresses(3);
        let ns = n("ns.example.test.");
        let many: Vec<IpAddr> = (0..=255u8)
            .cycle()
            .take(4000)
            .map(|i| IpAddr::from([192, 0, 2, i]))
            .collect();
        assert!(cache.insert_addresses(&ns, Rtype::A, Rank::Glue, many, 300, 0));
        assert_eq!(
            cache.addresses(&ns, Rtype::A, 0).unwrap(),
            ["192.0.2.0", "192.0.2.1", "192.0.2.2"]
                .map(|a| a.parse::<IpAddr>().unwrap())
                .to_vec()
        );
        // Duplicates do not count against the cap.
        let twice: Vec<IpAddr> = ["192.0.2.9", "192.0.2.9", "192.0.2.8", "192.0.2.7"]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect();
        assert!(!cache.insert_addresses(&ns, Rtype::A, Rank::Answer, twice, 300, 0));
        assert!(!cache.insert_addresses(&ns, Rtype::AAAA, Rank::Answer, vec![], 300, 0));
        assert_eq!(cache.addresses(&ns, Rtype::AAAA, 0), Some(vec![]));
    }

    /// Design 0048: referrals to ever new zones and name servers (a client asking random
    /// names under zones it controls) never keep more than `resolver.limits.delegation_entries`
    /// zone cuts, nor as many name server address entries.
    #[test]
    fn cuts_and_addresses_stay_at_the_configured_bound() {
        let cache =
            DelegationCache::new(&[(n("a.root."), "127.0.0.2".parse().unwrap())]).with_max(40);
        for i in 0..1000 {
            let zone = n(&format!("z{i}.example."));
            let server = n(&format!("ns.z{i}.example."));
            cache.insert_delegation(
                &Delegation {
                    zone,
                    name_servers: vec![server.clone()].into(),
                },
                3600,
                0,
            );
            let address = IpAddr::from([192, 0, 2, (i % 250) as u8]);
            cache.insert_addresses(&server, Rtype::A, Rank::Glue, vec![address], 3600, 0);
            cache.insert_addresses(&server, Rtype::AAAA, Rank::Answer, vec![], 3600, 0);
            let (zones, addresses) = cache.lens();
            assert!(
                zones <= 40 && addresses <= 40,
                "{zones} cuts, {addresses} addresses"
            );
        }
        assert!(cache.lens().0 > 0 && cache.lens().1 > 0);
    }
}
