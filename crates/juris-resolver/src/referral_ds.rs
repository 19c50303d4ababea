//! DS records, and NSEC/NSEC3 proofs that there is none, seen in referrals (RFC 4035 §3.1.4:
//! a signed parent sends them with the NS set), kept per child zone so the validator's DS
//! question is answered from the referral instead of a second query to the parent's servers
//! (as Unbound and Knot Resolver do; some servers do not answer DS queries as they should).
//!
//! Nothing here is trusted: the validator verifies the DS signatures (or the denial) with the
//! parent's keys exactly as for a DS answer.

use std::collections::HashMap;
use std::sync::Mutex;

use bytes::Bytes;
use domain::base::iana::Rcode;
use domain::base::{Name, Rtype};

use crate::names::{lower, rrsig_covers, same_name, Rr};
use crate::recursor::Outcome;

/// Bound on remembered zones; past it expired entries are dropped, then everything.
pub(crate) const MAX_ZONES: usize = 50_000;

#[derive(Debug)]
struct Entry {
    /// DS records at the child and their RRSIGs.
    ds: Vec<Rr>,
    /// Without DS: the NSEC/NSEC3 records and their RRSIGs proving there is none.
    denial: Vec<Rr>,
    expires_at: u64,
}

/// DS data from referrals, keyed by the child zone (lower-cased).
#[derive(Debug)]
pub(crate) struct ReferralDs {
    zones: Mutex<HashMap<Name<Bytes>, Entry>>,
    /// Zones kept (`resolver.limits.referral_ds_zones`).
    max_zones: usize,
}

impl Default for ReferralDs {
    fn default() -> Self {
        Self::with_max(MAX_ZONES)
    }
}

impl ReferralDs {
    /// A store of at most `max_zones` zones.
    pub(crate) fn with_max(max_zones: usize) -> Self {
        Self {
            zones: Mutex::default(),
            max_zones: max_zones.max(1),
        }
    }

    /// Zones kept (design 0048's bound tests).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        lock(&self.zones).len()
    }

    /// Keeps the DS (or no-DS proof) a referral to `child` carried in `authority` (already
    /// limited to the parent's bailiwick). A referral with neither is not remembered.
    pub(crate) fn store(&self, child: &Name<Bytes>, authority: &[Rr], max_ttl: u32, now: u64) {
        let at_child = |r: &Rr| same_name(r.owner(), child);
        let ds: Vec<Rr> = authority
            .iter()
            .filter(|r| {
                at_child(r) && (r.rtype() == Rtype::DS || rrsig_covers(r) == Some(Rtype::DS))
            })
            .cloned()
            .collect();
        let denial: Vec<Rr> = if ds.iter().any(|r| r.rtype() == Rtype::DS) {
            Vec::new()
        } else {
            crate::names::nsec_records(authority)
        };
        let kept = if denial.is_empty() { &ds } else { &denial };
        if !kept.iter().any(|r| r.rtype() != Rtype::RRSIG) {
            return;
        }
        // The shortest TTL of what is kept, at most `max_ttl`.
        let ttl = kept
            .iter()
            .map(|r| r.ttl().as_secs())
            .fold(max_ttl, u32::min);
        if ttl == 0 {
            return;
        }
        let mut zones = lock(&self.zones);
        if zones.len() >= self.max_zones {
            zones.retain(|_, e| e.expires_at > now);
            if zones.len() >= self.max_zones {
                zones.clear();
            }
        }
        // Kept beyond the exchange: not as slices of the referral's message (design 0048).
        let ds = if denial.is_empty() {
            crate::names::detached(ds)
        } else {
            Vec::new()
        };
        let denial = crate::names::detached(denial);
        zones.insert(
            lower(child),
            Entry {
                ds,
                denial,
                expires_at: now + u64::from(ttl),
            },
        );
    }

    /// Forgets the DS data of the zones `scope` covers (`juris cache flush`).
    pub(crate) fn flush(&self, scope: crate::cache::FlushScope<'_>) {
        lock(&self.zones).retain(|zone, _| !scope.covers(zone.as_slice()));
    }

    /// The DS answer for `zone` as a referral gave it, if one is remembered.
    pub(crate) fn outcome(&self, zone: &Name<Bytes>, now: u64) -> Option<Outcome> {
        let zones = lock(&self.zones);
        let entry = zones.get(zone).filter(|e| e.expires_at > now)?;
        Some(Outcome {
            rcode: Rcode::NOERROR,
            answer: entry.ds.clone(),
            authority: entry.denial.clone(),
            verbatim: None,
        })
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match mutex.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // reason: test code.
mod tests {
    use super::*;
    use domain::base::iana::{Class, DigestAlgorithm, SecurityAlgorithm};
    use domain::base::{Record, Ttl};
    use domain::rdata::dnssec::RtypeBitmap;
    use domain::rdata::{AllRecordData, Ds, Ns, Nsec};

    fn name(text: &str) -> Name<Bytes> {
        Name::bytes_from_str(text).unwrap()
    }

    fn record(owner: &str, ttl: u32, data: AllRecordData<Bytes, Name<Bytes>>) -> Rr {
        Record::new(name(owner), Class::IN, Ttl::from_secs(ttl), data)
    }

    /// A DS record's data (RSASHA1, SHA-1).
    fn ds() -> Ds<Bytes> {
        Ds::new(
            58437,
            SecurityAlgorithm::RSASHA1,
            DigestAlgorithm::SHA1,
            Bytes::from_static(&[0xca; 20]),
        )
        .unwrap()
    }

    fn ns() -> Rr {
        record(
            "sub.example.",
            3600,
            AllRecordData::Ns(Ns::new(name("ns.sub.example."))),
        )
    }

    #[test]
    fn a_referral_ds_answers_the_ds_question_until_it_expires() {
        let cache = ReferralDs::default();
        let child = name("sub.example.");
        let authority = [ns(), record("sub.example.", 600, AllRecordData::Ds(ds()))];
        cache.store(&child, &authority, 86_400, 1000);
        let outcome = cache.outcome(&child, 1000).unwrap();
        assert_eq!(outcome.answer.len(), 1);
        assert_eq!(outcome.answer[0].rtype(), Rtype::DS);
        assert!(
            cache.outcome(&child, 1600).is_none(),
            "expired with the DS TTL"
        );
    }

    #[test]
    fn a_referral_without_ds_or_proof_is_not_remembered() {
        let cache = ReferralDs::default();
        let child = name("sub.example.");
        cache.store(&child, &[ns()], 86_400, 0);
        assert!(cache.outcome(&child, 0).is_none());
    }

    #[test]
    fn an_nsec_proof_of_no_ds_is_kept_as_the_denial() {
        let cache = ReferralDs::default();
        let child = name("sub.example.");
        let mut bitmap = RtypeBitmap::<Bytes>::builder();
        bitmap.add(Rtype::NS).unwrap();
        bitmap.add(Rtype::NSEC).unwrap();
        let nsec = Nsec::new(name("z.example."), bitmap.finalize());
        let authority = [ns(), record("sub.example.", 300, AllRecordData::Nsec(nsec))];
        cache.store(&child, &authority, 86_400, 0);
        let outcome = cache.outcome(&child, 0).unwrap();
        assert!(outcome.answer.is_empty());
        assert_eq!(outcome.authority.len(), 1);
    }

    /// Design 0048: DS data of ever new child zones stays at `resolver.limits.referral_ds_zones`.
    #[test]
    fn zones_stay_at_the_configured_bound() {
        let cache = ReferralDs::with_max(30);
        for i in 0..1000 {
            let child = name(&format!("c{i}.example."));
            let authority = [record(
                &format!("c{i}.example."),
                600,
                AllRecordData::Ds(ds()),
            )];
            cache.store(&child, &authority, 86_400, 1000);
            assert!(cache.len() <= 30, "{} zones", cache.len());
        }
        assert!(cache.len() > 0);
    }
}
