//! The delegation cache (zone cut → name server names) and the name server address cache
//! (name → A/AAAA addresses), both with TTLs read from the injected clock.
//!
//! The root delegation comes from the root hints and never expires. Glue and the results of
//! name server address lookups land in the address cache, so a second name in a known zone
//! starts at the deepest known cut with addresses ready.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

use bytes::Bytes;
use domain::base::{Name, Rtype};

use crate::names::lower;

/// Bound on entries in each map; past it expired entries are dropped, then everything.
const MAX_ENTRIES: usize = 200_000;

/// A zone cut and its name servers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Delegation {
    /// The zone (lower-cased).
    pub zone: Name<Bytes>,
    /// Its name servers (lower-cased).
    pub name_servers: Vec<Name<Bytes>>,
}

#[derive(Debug, Clone)]
struct DelegationEntry {
    name_servers: Vec<Name<Bytes>>,
    expires_at: u64,
}

#[derive(Debug, Clone)]
struct AddressEntry {
    addresses: Vec<IpAddr>,
    expires_at: u64,
}

/// Zone cuts and name server addresses.
#[derive(Debug)]
pub(crate) struct DelegationCache {
    root: Delegation,
    hint_addresses: HashMap<Name<Bytes>, Vec<IpAddr>>,
    zones: Mutex<HashMap<Name<Bytes>, DelegationEntry>>,
    addresses: Mutex<HashMap<(Name<Bytes>, Rtype), AddressEntry>>,
}

impl DelegationCache {
    /// A cache that knows only the root, from `hints`.
    pub(crate) fn new(hints: &[(Name<Bytes>, IpAddr)]) -> Self {
        let mut name_servers: Vec<Name<Bytes>> = Vec::new();
        let mut hint_addresses: HashMap<Name<Bytes>, Vec<IpAddr>> = HashMap::new();
        for (name, address) in hints {
            let name = lower(name);
            if !name_servers.contains(&name) {
                name_servers.push(name.clone());
            }
            let list = hint_addresses.entry(name).or_default();
            if !list.contains(address) {
                list.push(*address);
            }
        }
        Self {
            root: Delegation {
                zone: Name::root_bytes(),
                name_servers,
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
        for suffix in name.iter_suffixes() {
            if suffix.is_root() {
                break;
            }
            let key = lower(&suffix);
            if let Some(entry) = zones.get(&key) {
                if entry.expires_at > now {
                    return Delegation {
                        zone: key,
                        name_servers: entry.name_servers.clone(),
                    };
                }
            }
        }
        self.root.clone()
    }

    /// Stores a zone cut learnt from a referral.
    pub(crate) fn insert_delegation(&self, delegation: &Delegation, ttl: u32, now: u64) {
        if delegation.zone.is_root() || ttl == 0 {
            return;
        }
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
            lower(&delegation.zone),
            DelegationEntry {
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
        let name = lower(name);
        if let Some(hints) = self.hint_addresses.get(&name) {
            // The hints are configuration: a family they do not list is known to be empty.
            return Some(
                hints
                    .iter()
                    .copied()
                    .filter(|a| a.is_ipv4() == (rtype == Rtype::A))
                    .collect(),
            );
        }
        let addresses = match self.addresses.lock() {
            Ok(addresses) => addresses,
            Err(poisoned) => poisoned.into_inner(),
        };
        addresses
            .get(&(name, rtype))
            .filter(|entry| entry.expires_at > now)
            .map(|entry| entry.addresses.clone())
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
        if ttl == 0 {
            return;
        }
        let mut map = match self.addresses.lock() {
            Ok(map) => map,
            Err(poisoned) => poisoned.into_inner(),
        };
        if map.len() >= MAX_ENTRIES {
            map.retain(|_, entry| entry.expires_at > now);
            if map.len() >= MAX_ENTRIES {
                map.clear();
            }
        }
        map.insert(
            (lower(name), rtype),
            AddressEntry {
                addresses,
                expires_at: now + u64::from(ttl),
            },
        );
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // reason: test code.
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
            name_servers: vec![n("ns.test.")],
        };
        let example = Delegation {
            zone: n("example.test."),
            name_servers: vec![n("ns.example.test.")],
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
}
