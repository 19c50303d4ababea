//! Caps on the upstream queries outstanding at once: per zone and in total.
//!
//! A random-subdomain flood (`nx-<random>.victim.example`) misses the cache with every query,
//! and every miss asks the victim zone's servers; when those slow down under the load, the
//! queries waiting for them pile up without bound (memory, sockets, timers). A [`Permit`] is
//! taken before each upstream query and given back when the exchange ends: when the zone
//! already has [`crate::Limits::max_outstanding_per_zone`] queries out (or the resolver
//! [`crate::Limits::max_outstanding`]), the client query fails at once with
//! [`Limit::OutstandingPerZone`] / [`Limit::OutstandingTotal`] (SERVFAIL + EDE, or a stale
//! answer) instead of queueing more work, as Unbound's `ratelimit` and PowerDNS's
//! `max-qperq`/`server-down` do in their way. Other zones keep being resolved.
//!
//! The per-zone map holds only zones with a query out: at most `max_outstanding` entries. It is
//! keyed by the zone's lower-cased wire form: a byte string hashes in one pass, where `Name`'s
//! case-insensitive `Hash` goes label by label (≈ 1,000 instructions per upstream query for
//! the take and the give-back together, `bench/instructions.sh`).

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;

use bytes::Bytes;
use domain::base::Name;

use crate::resolver::{lock, Limit};

/// The outstanding upstream queries of one resolver.
#[derive(Debug)]
pub(crate) struct Outstanding {
    max_total: u32,
    max_per_zone: u32,
    total: AtomicU32,
    per_zone: Mutex<HashMap<Bytes, u32, foldhash::fast::RandomState>>,
}

/// One upstream query out; dropping it gives its place back.
#[derive(Debug)]
pub(crate) struct Permit<'a> {
    owner: &'a Outstanding,
    /// The zone's key in the per-zone map.
    zone: Option<Bytes>,
}

impl Outstanding {
    /// Caps of `max_total` queries in all and `max_per_zone` per zone (0: no cap).
    pub(crate) fn new(max_total: u32, max_per_zone: u32) -> Self {
        Self {
            max_total,
            max_per_zone,
            total: AtomicU32::new(0),
            per_zone: Mutex::new(HashMap::default()),
        }
    }

    /// A place for one query to a server of `zone` (`None`: a forwarder, counted in the
    /// total only), or the limit that is full.
    pub(crate) fn acquire(&self, zone: Option<&Name<Bytes>>) -> Result<Permit<'_>, Limit> {
        let taken = self.total.fetch_add(1, Ordering::AcqRel);
        if self.max_total != 0 && taken >= self.max_total {
            self.total.fetch_sub(1, Ordering::AcqRel);
            return Err(Limit::OutstandingTotal);
        }
        let zone = match zone {
            Some(zone) if self.max_per_zone != 0 => {
                let key = crate::names::lower(zone).into_octets();
                let mut per_zone = lock(&self.per_zone);
                let count = per_zone.entry(key.clone()).or_insert(0);
                if *count >= self.max_per_zone {
                    drop(per_zone);
                    self.total.fetch_sub(1, Ordering::AcqRel);
                    return Err(Limit::OutstandingPerZone);
                }
                *count += 1;
                Some(key)
            }
            _ => None,
        };
        Ok(Permit { owner: self, zone })
    }

    /// Queries out now: in total, and for `zone`.
    #[cfg(test)]
    fn counts(&self, zone: &Name<Bytes>) -> (u32, u32) {
        (
            self.total.load(Ordering::Acquire),
            lock(&self.per_zone)
                .get(&crate::names::lower(zone).into_octets())
                .copied()
                .unwrap_or(0),
        )
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if let Some(zone) = self.zone.take() {
            let mut per_zone = lock(&self.owner.per_zone);
            if let Entry::Occupied(mut count) = per_zone.entry(zone) {
                *count.get_mut() -= 1;
                if *count.get() == 0 {
                    count.remove();
                }
            }
        }
        self.owner.total.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]
mod tests {
    use super::*;

    fn name(s: &str) -> Name<Bytes> {
        Name::bytes_from_str(s).unwrap()
    }

    #[test]
    fn a_full_zone_fails_at_once_other_zones_go_on_and_places_come_back() {
        let caps = Outstanding::new(5, 2);
        let victim = name("victim.example.");
        let other = name("other.example.");
        let a = caps.acquire(Some(&victim)).unwrap();
        let b = caps.acquire(Some(&victim)).unwrap();
        assert_eq!(
            caps.acquire(Some(&victim)).unwrap_err(),
            Limit::OutstandingPerZone
        );
        let c = caps.acquire(Some(&other)).unwrap();
        assert_eq!(caps.counts(&victim), (3, 2));
        drop(a);
        let d = caps.acquire(Some(&victim)).unwrap();
        let e = caps.acquire(None).unwrap();
        let f = caps.acquire(None).unwrap();
        assert_eq!(caps.acquire(None).unwrap_err(), Limit::OutstandingTotal);
        drop((b, c, d, e, f));
        assert_eq!(caps.counts(&victim), (0, 0));
        assert!(lock(&caps.per_zone).is_empty(), "no zone is kept when idle");
    }

    #[test]
    fn a_zone_spelt_in_another_case_is_the_same_zone() {
        let caps = Outstanding::new(0, 2);
        let a = caps.acquire(Some(&name("victim.example."))).unwrap();
        let b = caps.acquire(Some(&name("VICTIM.Example."))).unwrap();
        assert_eq!(
            caps.acquire(Some(&name("Victim.EXAMPLE."))).unwrap_err(),
            Limit::OutstandingPerZone
        );
        assert_eq!(caps.counts(&name("victim.example.")), (2, 2));
        drop((a, b));
        assert!(lock(&caps.per_zone).is_empty());
    }

    #[test]
    fn zero_means_no_cap() {
        let caps = Outstanding::new(0, 0);
        let zone = name("example.");
        let permits: Vec<_> = (0..1000)
            .map(|_| caps.acquire(Some(&zone)).unwrap())
            .collect();
        assert_eq!(caps.counts(&zone).0, 1000);
        drop(permits);
        assert_eq!(caps.counts(&zone).0, 0);
    }
}
