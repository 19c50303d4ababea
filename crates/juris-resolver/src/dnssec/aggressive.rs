//! Aggressive use of the DNSSEC-validated cache (RFC 8198), NSEC only: the NSEC records
//! (with their RRSIGs) and the SOA of secure negative answers are kept per zone, and a later
//! question they prove absent (NXDOMAIN, or NODATA) is answered from them without asking.
//!
//! Filled only from answers the validator judged `Secure` (so every NSEC kept was verified
//! with the zone's keys); NSEC3 is not used (hashes would need the zone's parameters and
//! opt-out spans must never be used). Consulted on a cache miss before the engine runs, so
//! cache hits cost nothing more.

use std::collections::HashMap;
use std::sync::Mutex;

use bytes::Bytes;
use domain::base::iana::Rcode;
use domain::base::{Name, Rtype, ToName};
use domain::rdata::AllRecordData;

use super::denial::{nsec_proof, Claim, NsecRr, Proof};
use super::validator::lock;
use crate::cache::{is_at_or_below, FlushScope};
use crate::names::{lower, rrsig_covers, same_name, Rr};
use crate::recursor::Outcome;

/// Bound on zones remembered; past it expired zones are dropped, then everything.
const MAX_ZONES: usize = 10_000;
/// Bound on NSEC records kept per zone (the oldest go first).
const MAX_NSECS_PER_ZONE: usize = 256;

#[derive(Debug)]
struct ZoneNsecs {
    /// The SOA and its RRSIGs.
    soa: Vec<Rr>,
    /// Each NSEC with its RRSIGs, and when it expires.
    nsecs: Vec<(Vec<Rr>, u64)>,
}

/// The validated NSEC ranges of each zone.
#[derive(Debug, Default)]
pub(crate) struct AggressiveNsec {
    zones: Mutex<HashMap<Name<Bytes>, ZoneNsecs>>,
}

fn soa_minimum(soa: &Rr) -> Option<u32> {
    match soa.data() {
        AllRecordData::Soa(s) => Some(s.minimum().as_secs().min(soa.ttl().as_secs())),
        _ => None,
    }
}

impl AggressiveNsec {
    /// Forgets the ranges that could deny a name `scope` covers (`juris cache flush`): those
    /// of the zones at or below the flushed name, and of the zones the flushed name lies in
    /// (their NSEC chain may deny it). A flush of everything forgets every range.
    pub(crate) fn flush(&self, scope: FlushScope<'_>) {
        let mut zones = lock(&self.zones);
        match scope {
            FlushScope::All => zones.clear(),
            FlushScope::Name(name) | FlushScope::Subtree(name) => zones.retain(|zone, _| {
                let zone = lower(zone);
                !scope.covers(zone.as_slice()) && !is_at_or_below(name, zone.as_slice())
            }),
        }
    }

    /// Keeps the NSEC records of a **secure** negative `outcome` (NXDOMAIN or NODATA with a
    /// signed SOA), each for min(its TTL, the SOA's negative TTL) (RFC 8198 §5.4).
    pub(crate) fn remember(&self, outcome: &Outcome, now: u64) {
        if outcome.rcode != Rcode::NXDOMAIN && outcome.rcode != Rcode::NOERROR {
            return;
        }
        let Some(soa) = outcome.authority.iter().find(|r| r.rtype() == Rtype::SOA) else {
            return;
        };
        let Some(negative_ttl) = soa_minimum(soa) else {
            return;
        };
        let zone = lower(soa.owner());
        let of = |owner: &Name<Bytes>, rtype: Rtype| -> Vec<Rr> {
            outcome
                .authority
                .iter()
                .filter(|r| {
                    same_name(r.owner(), owner)
                        && (r.rtype() == rtype || rrsig_covers(r) == Some(rtype))
                })
                .cloned()
                .collect()
        };
        let mut nsecs: Vec<(Vec<Rr>, u64)> = Vec::new();
        for record in &outcome.authority {
            if record.rtype() != Rtype::NSEC || !record.owner().ends_with(&zone) {
                continue;
            }
            let set = of(record.owner(), Rtype::NSEC);
            let ttl = record.ttl().as_secs().min(negative_ttl);
            if ttl > 0 {
                nsecs.push((set, now + u64::from(ttl)));
            }
        }
        if nsecs.is_empty() {
            return;
        }
        let soa_set = of(soa.owner(), Rtype::SOA);
        let mut zones = lock(&self.zones);
        if zones.len() >= MAX_ZONES && !zones.contains_key(&zone) {
            zones.retain(|_, z| z.nsecs.iter().any(|(_, until)| *until > now));
            if zones.len() >= MAX_ZONES {
                zones.clear();
            }
        }
        let entry = zones.entry(zone).or_insert_with(|| ZoneNsecs {
            soa: Vec::new(),
            nsecs: Vec::new(),
        });
        entry.soa = soa_set;
        entry.nsecs.retain(|(set, until)| {
            *until > now
                && !nsecs
                    .iter()
                    .any(|(new, _)| same_name(new[0].owner(), set[0].owner()))
        });
        entry.nsecs.extend(nsecs);
        let excess = entry.nsecs.len().saturating_sub(MAX_NSECS_PER_ZONE);
        entry.nsecs.drain(..excess);
    }

    /// A NXDOMAIN or NODATA answer for `qname`/`qtype` proven by the kept NSEC records of the
    /// closest zone above it, if they prove it.
    pub(crate) fn synthesise(
        &self,
        qname: &Name<Bytes>,
        qtype: Rtype,
        now: u64,
    ) -> Option<Outcome> {
        let zones = lock(&self.zones);
        // DS lives on the parent side of a cut: the child's own NSEC chain says nothing of it.
        let skip = usize::from(qtype == Rtype::DS);
        let zone = qname
            .iter_suffixes()
            .skip(skip)
            .find_map(|suffix| zones.get(&suffix.to_name::<Bytes>()))?;
        let fresh: Vec<&Vec<Rr>> = zone
            .nsecs
            .iter()
            .filter(|(_, until)| *until > now)
            .map(|(set, _)| set)
            .collect();
        let records: Vec<NsecRr<'_>> = fresh
            .iter()
            .filter_map(|set| {
                set.iter().find_map(|r| match r.data() {
                    AllRecordData::Nsec(nsec) => Some((r.owner(), nsec)),
                    _ => None,
                })
            })
            .collect();
        let rcode = if nsec_proof(&records, qname, Claim::NoName) == Proof::Proven {
            Rcode::NXDOMAIN
        } else if qtype != Rtype::ANY
            && nsec_proof(&records, qname, Claim::NoData(qtype)) == Proof::Proven
        {
            Rcode::NOERROR
        } else {
            return None;
        };
        // The NSEC records that take part: those matching or covering the name or the
        // wildcards of its ancestors (a superset of the proof is harmless).
        let mut authority = zone.soa.clone();
        // NODATA at an existing name: its own NSEC is the whole proof.
        let exact = fresh.iter().find(|set| {
            rcode == Rcode::NOERROR && set.first().is_some_and(|r| r.owner().name_eq(qname))
        });
        if let Some(set) = exact {
            authority.extend(set.iter().cloned());
            return Some(Outcome {
                rcode,
                answer: Vec::new(),
                authority,
                verbatim: None,
            });
        }
        for set in &fresh {
            let single: Vec<NsecRr<'_>> = set
                .iter()
                .filter_map(|r| match r.data() {
                    AllRecordData::Nsec(nsec) => Some((r.owner(), nsec)),
                    _ => None,
                })
                .collect();
            if takes_part(&single, qname) {
                authority.extend(set.iter().cloned());
            }
        }
        Some(Outcome {
            rcode,
            answer: Vec::new(),
            authority,
            verbatim: None,
        })
    }
}

/// Whether one NSEC record is part of the proof: it matches or covers the name, or covers
/// or matches a wildcard at one of its ancestors.
fn takes_part(single: &[NsecRr<'_>], qname: &Name<Bytes>) -> bool {
    let Some((owner, _)) = single.first() else {
        return false;
    };
    if owner.name_eq(qname) {
        return true;
    }
    // Covering the name (a name-error proof of the name itself holds without the wildcard).
    if nsec_proof(single, qname, Claim::Wildcard(0)) == Proof::Proven {
        return true;
    }
    qname.iter_suffixes().skip(1).any(|suffix| {
        let mut bytes = vec![1, b'*'];
        bytes.extend_from_slice(suffix.as_slice());
        Name::from_octets(Bytes::from(bytes)).is_ok_and(|wildcard| {
            owner.name_eq(&wildcard)
                || nsec_proof(single, &wildcard, Claim::Wildcard(0)) == Proof::Proven
        })
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "test code")]
mod tests {
    use super::*;
    use crate::names::testing::{name, record};
    use domain::base::{Serial, Ttl};
    use domain::rdata::dnssec::RtypeBitmap;
    use domain::rdata::{Nsec, Soa};

    fn nsec(owner: &str, next: &str, types: &[Rtype]) -> Rr {
        let mut builder = RtypeBitmap::<Bytes>::builder();
        for t in types {
            builder.add(*t).unwrap();
        }
        record(
            owner,
            300,
            AllRecordData::Nsec(Nsec::new(name(next), builder.finalize())),
        )
    }

    fn soa() -> Rr {
        record(
            "example.",
            300,
            AllRecordData::Soa(Soa::new(
                name("ns.example."),
                name("h.example."),
                Serial(1),
                Ttl::from_secs(10),
                Ttl::from_secs(10),
                Ttl::from_secs(10),
                Ttl::from_secs(60),
            )),
        )
    }

    /// The negative answer for `b.example.`: example. → b.example. (apex), c.example. → example.
    fn negative() -> Outcome {
        Outcome {
            rcode: Rcode::NXDOMAIN,
            answer: Vec::new(),
            authority: vec![
                soa(),
                nsec(
                    "example.",
                    "b.example.",
                    &[Rtype::SOA, Rtype::NS, Rtype::NSEC],
                ),
                nsec("b.example.", "d.example.", &[Rtype::A, Rtype::NSEC]),
            ],
            verbatim: None,
        }
    }

    #[test]
    fn nxdomain_and_nodata_come_from_remembered_ranges_until_they_expire() {
        let store = AggressiveNsec::default();
        store.remember(&negative(), 1000);
        // c.example. lies in b..d, the wildcard *.example. in example..b.
        let nx = store
            .synthesise(&name("c.example."), Rtype::A, 1010)
            .unwrap();
        assert_eq!(nx.rcode, Rcode::NXDOMAIN);
        assert_eq!(
            nx.authority.len(),
            3,
            "SOA and both NSEC: {:?}",
            nx.authority
        );
        let deeper = store
            .synthesise(&name("x.c.example."), Rtype::MX, 1010)
            .unwrap();
        assert_eq!(deeper.rcode, Rcode::NXDOMAIN);
        // b.example. exists without MX, with A.
        let nodata = store
            .synthesise(&name("b.example."), Rtype::MX, 1010)
            .unwrap();
        assert_eq!(nodata.rcode, Rcode::NOERROR);
        assert_eq!(
            nodata.authority.len(),
            2,
            "SOA and b's NSEC: {:?}",
            nodata.authority
        );
        assert!(store
            .synthesise(&name("b.example."), Rtype::A, 1010)
            .is_none());
        // The apex NSEC lacks DS, but DS is the parent's: not from this zone's chain.
        assert!(store
            .synthesise(&name("example."), Rtype::DS, 1010)
            .is_none());
        assert_eq!(
            store
                .synthesise(&name("example."), Rtype::MX, 1010)
                .map(|o| o.rcode),
            Some(Rcode::NOERROR)
        );
        // Outside every range: asked upstream.
        assert!(store
            .synthesise(&name("e.example."), Rtype::A, 1010)
            .is_none());
        assert!(store
            .synthesise(&name("c.example.org."), Rtype::A, 1010)
            .is_none());
        // The SOA's negative TTL (60) bounds the NSEC's 300.
        assert!(store
            .synthesise(&name("c.example."), Rtype::A, 1060)
            .is_none());
    }

    #[test]
    fn a_flush_of_a_name_in_the_zone_or_of_the_zone_forgets_its_ranges() {
        let denies = |store: &AggressiveNsec| {
            store
                .synthesise(&name("c.example."), Rtype::A, 1010)
                .is_some()
        };
        let wire = |text: &str| lower(&name(text)).into_octets();
        let store = AggressiveNsec::default();
        store.remember(&negative(), 1000);
        // A name elsewhere leaves the zone's ranges alone.
        store.flush(FlushScope::Name(&wire("c.example.org.")));
        assert!(denies(&store));
        // The flushed name lies in the zone: its chain could deny it, so it goes.
        store.flush(FlushScope::Name(&wire("c.example.")));
        assert!(!denies(&store));
        store.remember(&negative(), 1000);
        store.flush(FlushScope::Subtree(&wire("example.")));
        assert!(!denies(&store));
        store.remember(&negative(), 1000);
        store.flush(FlushScope::All);
        assert!(!denies(&store));
    }

    #[test]
    fn without_the_wildcard_range_no_nxdomain() {
        let store = AggressiveNsec::default();
        let mut outcome = negative();
        outcome.authority.remove(1);
        store.remember(&outcome, 1000);
        assert!(store
            .synthesise(&name("c.example."), Rtype::A, 1010)
            .is_none());
    }
}
