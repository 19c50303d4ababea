//! The delegation cache (zone cut → name server names) and the name server address cache
//! (name → A/AAAA addresses), both with TTLs read from the injected clock.
//!
//! The root delegation comes from the root hints and never expires. Glue and the results of
//! name server address lookups land in the address cache, so a second name in a known zone
//! starts at the deepest known cut with addresses ready.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use domain::base::{Name, Rtype};

use crate::cache::FlushScope;
use crate::names::lower;

/// Bound on entries in each map; past it expired entries are dropped, then everything.
const MAX_ENTRIES: usize = 200_000;

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

/// The A and AAAA entries of one name server.
#[derive(Debug, Clone, Default)]
struct AddressPair {
    a: Option<AddressEntry>,
    aaaa: Option<AddressEntry>,
}

impl AddressPair {
    fn get(&self, rtype: Rtype) -> Option<&AddressEntry> {
        if rtype == Rtype::A {
            self.a.as_ref()
        } else {
            self.aaaa.as_ref()
        }
    }

    fn expired(&self, now: u64) -> bool {
        [&self.a, &self.aaaa]
            .iter()
            .all(|entry| entry.as_ref().is_none_or(|e| e.expires_at <= now))
    }
}

/// Zone cuts and name server addresses.
///
/// The maps are keyed by the lower-cased wire form of the name: hashing it is one pass over
/// the bytes, where hashing a `Name` feeds the hasher one byte at a time.
#[derive(Debug)]
pub(crate) struct DelegationCache {
    root: Delegation,
    hint_addresses: HashMap<Bytes, Vec<IpAddr>>,
    zones: Mutex<HashMap<Bytes, DelegationEntry>>,
    addresses: Mutex<HashMap<Bytes, AddressPair>>,
}

/// Calls `f` with the lower-cased wire form of `name` (without copying when it is lower-case
/// already, as the resolver's names are).
fn with_lower<R>(name: &Name<Bytes>, f: impl FnOnce(&[u8]) -> R) -> R {
    let slice = name.as_slice();
    if !slice.iter().any(u8::is_ascii_uppercase) {
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
        let mut hint_addresses: HashMap<Bytes, Vec<IpAddr>> = HashMap::new();
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
            zones: Mutex::new(HashMap::new()),
            addresses: Mutex::new(HashMap::new()),
        }
    }

    /// The deepest known, unexpired zone cut at or above `name`.
    pub(crate) fn deepest(&self, name: &Name<Bytes>, now: u64) -> Delegation {
        let zones = match self.zones.lock() {
            Ok(zones) => zones,
            Err(poisoned) => poisoned.into_inner(),
        };
        if zones.is_empty() {
            return self.root.clone();
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
        found.unwrap_or_else(|| self.root.clone())
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
        if zones.len() >= MAX_ENTRIES {
            zones.retain(|_, entry| entry.expires_at > now);
            if zones.len() >= MAX_ENTRIES {
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

    /// Known addresses of a name server of type `rtype` (A or AAAA): `None` if unknown (or
    /// expired), `Some(empty)` if known to have none.
    pub(crate) fn addresses(
        &self,
        name: &Name<Bytes>,
        rtype: Rtype,
        now: u64,
    ) -> Option<Vec<IpAddr>> {
        let mut list = Vec::new();
        self.for_each_address(name, rtype, now, |address| list.push(address))
            .then_some(list)
    }

    /// Calls `f` with each known address of a name server of type `rtype` (A or AAAA);
    /// returns whether the addresses are known (`false`: unknown or expired). No copy of the
    /// address list is made.
    pub(crate) fn for_each_address(
        &self,
        name: &Name<Bytes>,
        rtype: Rtype,
        now: u64,
        mut f: impl FnMut(IpAddr),
    ) -> bool {
        with_lower(name, |wire| {
            if let Some(hints) = self.hint_addresses.get(wire) {
                // The hints are configuration: a family they do not list is known to be empty.
                hints
                    .iter()
                    .copied()
                    .filter(|a| a.is_ipv4() == (rtype == Rtype::A))
                    .for_each(&mut f);
                return true;
            }
            let addresses = match self.addresses.lock() {
                Ok(addresses) => addresses,
                Err(poisoned) => poisoned.into_inner(),
            };
            match addresses
                .get(wire)
                .and_then(|pair| pair.get(rtype))
                .filter(|entry| entry.expires_at > now)
            {
                Some(entry) => {
                    entry.addresses.iter().copied().for_each(&mut f);
                    true
                }
                None => false,
            }
        })
    }

    /// Stores the addresses of a name server (glue or a lookup result). An empty list with a
    /// TTL records that the name has no such addresses (negative entry).
    pub(crate) fn insert_addresses(
        &self,
        name: &Name<Bytes>,
        rtype: Rtype,
        addresses: Vec<IpAddr>,
        ttl: u32,
        now: u64,
    ) {
        if ttl == 0 || (rtype != Rtype::A && rtype != Rtype::AAAA) {
            return;
        }
        let key = key_of(name);
        let mut map = match self.addresses.lock() {
            Ok(map) => map,
            Err(poisoned) => poisoned.into_inner(),
        };
        if map.len() >= MAX_ENTRIES && !map.contains_key(&key) {
            map.retain(|_, pair| !pair.expired(now));
            if map.len() >= MAX_ENTRIES {
                map.clear();
            }
        }
        let entry = AddressEntry {
            addresses,
            expires_at: now + u64::from(ttl),
        };
        let pair = map.entry(key).or_default();
        if rtype == Rtype::A {
            pair.a = Some(entry);
        } else {
            pair.aaaa = Some(entry);
        }
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
        let cuts = before - zones.len();
        drop(zones);
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
        cache.insert_addresses(&n("ns.test."), Rtype::A, vec![], 30, 0);
        assert_eq!(cache.addresses(&n("ns.test."), Rtype::A, 29), Some(vec![]));
        assert_eq!(cache.addresses(&n("ns.test."), Rtype::A, 30), None);
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
            cache.insert_addresses(&n(&format!("ns.{zone}")), Rtype::A, address, 100, 0);
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
}
