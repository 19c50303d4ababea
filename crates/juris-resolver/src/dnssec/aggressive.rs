//! Aggressive use of the DNSSEC-validated cache (RFC 8198): the NSEC and NSEC3 records
//! (with their RRSIGs) and the SOA of secure negative answers, and the wildcard expansions
//! of secure positive answers with the NSEC/NSEC3 that proved them, are kept per zone. A
//! later question they prove absent (NXDOMAIN, or NODATA) is answered from them without
//! asking (§5.1, §5.2), and so is a name the same wildcard covers (§5.3): the wildcard's
//! RRset under the new name, with the rest of the validated chain it led to.
//!
//! Filled only from answers the validator judged `Secure` (so every record kept was verified
//! with the zone's keys). NSEC3 records in an opt-out span never prove a name absent or
//! covered by a wildcard (it could be an unsigned delegation), and NSEC3 sets are used only
//! with the parameters and iteration limit the validator accepts. Consulted on a cache miss
//! before the engine runs, so cache hits cost nothing more.

use std::collections::HashMap;
use std::sync::Mutex;

use bytes::Bytes;
use domain::base::iana::Rcode;
use domain::base::{Name, Record, Rtype, ToName, Ttl};
use domain::rdata::AllRecordData;

use super::canonical::rrsig_labels;
use super::denial::{
    nsec3_next_closer_cover, nsec3_participants, nsec3_proof, nsec_closest_encloser, nsec_proof,
    Claim, Nsec3Rr, NsecRr, Proof,
};
use super::validator::lock;
use crate::cache::{is_at_or_below, FlushScope};
use crate::names::{lower, rrsig_covers, same_name, Rr};
use crate::recursor::Outcome;

/// Bound on zones remembered; past it expired zones are dropped, then everything.
pub(crate) const MAX_ZONES: usize = 10_000;
/// Default bound on NSEC/NSEC3 records kept per zone (the oldest go first;
/// `resolver.limits.aggressive_nsec_ranges`).
pub(crate) const MAX_NSECS_PER_ZONE: usize = 256;
/// Default bound on wildcard expansions kept per zone (the oldest go first;
/// `resolver.limits.aggressive_nsec_wildcards`).
pub(crate) const MAX_WILDCARDS_PER_ZONE: usize = 32;

#[derive(Debug, Default)]
struct ZoneNsecs {
    /// The SOA and its RRSIGs (empty until a negative answer brought one).
    soa: Vec<Rr>,
    /// Each NSEC or NSEC3 with its RRSIGs, and when it expires.
    nsecs: Vec<(Vec<Rr>, u64)>,
    /// Wildcard expansions seen in secure answers.
    wildcards: Vec<Wildcard>,
}

/// A secure wildcard expansion (RFC 8198 §5.3): the RRset as it came (with RRSIGs), the
/// wildcard's closest encloser, and the validated rest of the answer it led to.
#[derive(Debug)]
struct Wildcard {
    /// The closest encloser: the wildcard is `*.<encloser>`.
    encloser: Name<Bytes>,
    /// The expanded RRset's type (CNAME or the question's type).
    rtype: Rtype,
    /// The question type the chain answers.
    qtype: Rtype,
    /// The RRset and its RRSIGs, with the owner of the answer they came in.
    rrset: Vec<Rr>,
    /// The records of the answer after the RRset (the rest of a CNAME chain).
    tail: Vec<Rr>,
    until: u64,
}

/// The validated NSEC/NSEC3 ranges and wildcard expansions of each zone.
#[derive(Debug)]
pub(crate) struct AggressiveNsec {
    zones: Mutex<HashMap<Name<Bytes>, ZoneNsecs>>,
    /// Zones kept (`resolver.limits.aggressive_nsec_zones`).
    max_zones: usize,
    /// NSEC/NSEC3 record sets kept per zone (`resolver.limits.aggressive_nsec_ranges`).
    max_ranges: usize,
    /// Wildcard expansions kept per zone (`resolver.limits.aggressive_nsec_wildcards`).
    max_wildcards: usize,
}

impl Default for AggressiveNsec {
    fn default() -> Self {
        Self::with_max(MAX_ZONES, MAX_NSECS_PER_ZONE, MAX_WILDCARDS_PER_ZONE)
    }
}

impl AggressiveNsec {
    /// A store of at most `max_zones` zones, each with at most `max_ranges` NSEC/NSEC3 record
    /// sets and `max_wildcards` wildcard expansions (every bound at least 1). A hostile
    /// signed zone can hand out any number of ranges; these bound what it costs us.
    pub(crate) fn with_max(max_zones: usize, max_ranges: usize, max_wildcards: usize) -> Self {
        Self {
            zones: Mutex::default(),
            max_zones: max_zones.max(1),
            max_ranges: max_ranges.max(1),
            max_wildcards: max_wildcards.max(1),
        }
    }

    /// Zones kept, NSEC/NSEC3 record sets and wildcard expansions in all (for the bound
    /// tests and the memory inventory, design 0048).
    #[cfg(test)]
    pub(crate) fn counts(&self) -> (usize, usize, usize) {
        let zones = lock(&self.zones);
        let ranges = zones.values().map(|z| z.nsecs.len()).sum();
        let wildcards = zones.values().map(|z| z.wildcards.len()).sum();
        (zones.len(), ranges, wildcards)
    }
}

fn soa_minimum(soa: &Rr) -> Option<u32> {
    match soa.data() {
        AllRecordData::Soa(s) => Some(s.minimum().as_secs().min(soa.ttl().as_secs())),
        _ => None,
    }
}

/// `records`' NSEC and NSEC3 records, split, as the proof code takes them.
fn split<'a>(sets: &[&'a Vec<Rr>]) -> (Vec<NsecRr<'a>>, Vec<Nsec3Rr<'a>>, Vec<usize>, Vec<usize>) {
    let mut nsecs = Vec::new();
    let mut nsec3s = Vec::new();
    let mut nsec_sets = Vec::new();
    let mut nsec3_sets = Vec::new();
    for (index, set) in sets.iter().enumerate() {
        for record in set.iter() {
            match record.data() {
                AllRecordData::Nsec(nsec) => {
                    nsecs.push((record.owner(), nsec));
                    nsec_sets.push(index);
                }
                AllRecordData::Nsec3(nsec3) => {
                    nsec3s.push((record.owner(), nsec3));
                    nsec3_sets.push(index);
                }
                _ => {}
            }
        }
    }
    (nsecs, nsec3s, nsec_sets, nsec3_sets)
}

/// `record` under another owner name.
fn renamed(record: &Rr, owner: &Name<Bytes>, ttl: u32) -> Rr {
    Record::new(
        owner.clone(),
        record.class(),
        Ttl::from_secs(record.ttl().as_secs().min(ttl)),
        record.data().clone(),
    )
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

    /// Keeps what a **secure** `outcome` (the answer to a `qtype` question) can prove later:
    /// the NSEC/NSEC3 records of a negative answer (with a signed SOA), each for min(its
    /// TTL, the SOA's negative TTL) (RFC 8198 §5.4); the wildcard expansions of a positive
    /// answer with the NSEC/NSEC3 records that proved them, for their TTL.
    pub(crate) fn remember(&self, qtype: Rtype, outcome: &Outcome, now: u64) {
        if outcome.rcode != Rcode::NXDOMAIN && outcome.rcode != Rcode::NOERROR {
            return;
        }
        let of = |records: &[Rr], owner: &Name<Bytes>, rtype: Rtype| -> Vec<Rr> {
            records
                .iter()
                .filter(|r| {
                    same_name(r.owner(), owner)
                        && (r.rtype() == rtype || rrsig_covers(r) == Some(rtype))
                })
                .cloned()
                .collect()
        };
        let soa = outcome.authority.iter().find(|r| r.rtype() == Rtype::SOA);
        // The zone: the SOA's owner, else the signer of the proof's signatures.
        let zone = match soa {
            Some(soa) => lower(soa.owner()),
            None => match outcome.authority.iter().find_map(|r| match r.data() {
                AllRecordData::Rrsig(sig)
                    if matches!(sig.type_covered(), Rtype::NSEC | Rtype::NSEC3) =>
                {
                    Some(lower(sig.signer_name()))
                }
                _ => None,
            }) {
                Some(zone) => zone,
                None => return,
            },
        };
        let negative_ttl = match soa {
            Some(soa) => match soa_minimum(soa) {
                Some(ttl) => ttl,
                None => return,
            },
            None => u32::MAX,
        };
        let mut nsecs: Vec<(Vec<Rr>, u64)> = Vec::new();
        for record in &outcome.authority {
            let in_zone = match record.rtype() {
                Rtype::NSEC => record.owner().ends_with(&zone),
                Rtype::NSEC3 => record.owner().parent().is_some_and(|p| p.name_eq(&zone)),
                _ => false,
            };
            if !in_zone {
                continue;
            }
            // Kept beyond the exchange: not as slices of the answer's message (design 0048).
            let set =
                crate::names::detached(of(&outcome.authority, record.owner(), record.rtype()));
            let ttl = record.ttl().as_secs().min(negative_ttl);
            if ttl > 0 {
                nsecs.push((set, now + u64::from(ttl)));
            }
        }
        let wildcard = if soa.is_none() {
            wildcard_of(qtype, outcome, &zone, now)
        } else {
            None
        };
        if nsecs.is_empty() && wildcard.is_none() {
            return;
        }
        let mut zones = lock(&self.zones);
        if zones.len() >= self.max_zones && !zones.contains_key(&zone) {
            zones.retain(|_, z| z.nsecs.iter().any(|(_, until)| *until > now));
            if zones.len() >= self.max_zones {
                zones.clear();
            }
        }
        let entry = zones.entry(zone).or_default();
        if let Some(soa) = soa {
            entry.soa = crate::names::detached(of(&outcome.authority, soa.owner(), Rtype::SOA));
        }
        entry.nsecs.retain(|(set, until)| {
            *until > now
                && !nsecs.iter().any(|(new, _)| {
                    same_name(new[0].owner(), set[0].owner()) && new[0].rtype() == set[0].rtype()
                })
        });
        entry.nsecs.extend(nsecs);
        let excess = entry.nsecs.len().saturating_sub(self.max_ranges);
        entry.nsecs.drain(..excess);
        if let Some(wildcard) = wildcard {
            entry.wildcards.retain(|w| {
                w.until > now
                    && !(w.encloser == wildcard.encloser
                        && w.rtype == wildcard.rtype
                        && w.qtype == wildcard.qtype)
            });
            entry.wildcards.push(wildcard);
            let excess = entry.wildcards.len().saturating_sub(self.max_wildcards);
            entry.wildcards.drain(..excess);
        }
    }

    /// A NXDOMAIN or NODATA answer for `qname`/`qtype` proven by the kept NSEC or NSEC3
    /// records of the closest zone above it, or a positive answer from a kept wildcard
    /// expansion whose closest encloser they prove to be the name's, if they do.
    pub(crate) fn synthesise(
        &self,
        qname: &Name<Bytes>,
        qtype: Rtype,
        now: u64,
        max_iterations: u16,
    ) -> Option<Outcome> {
        let zones = lock(&self.zones);
        // DS lives on the parent side of a cut: the child's own NSEC chain says nothing of it.
        let skip = usize::from(qtype == Rtype::DS);
        let (zone_name, zone) = qname.iter_suffixes().skip(skip).find_map(|suffix| {
            let suffix = suffix.to_name::<Bytes>();
            zones.get(&suffix).map(|z| (suffix, z))
        })?;
        let fresh: Vec<&Vec<Rr>> = zone
            .nsecs
            .iter()
            .filter(|(_, until)| *until > now)
            .map(|(set, _)| set)
            .collect();
        let (nsecs, nsec3s, nsec_sets, nsec3_sets) = split(&fresh);
        if !zone.soa.is_empty() {
            if let Some(outcome) = denial(
                qname,
                qtype,
                &zone.soa,
                &fresh,
                &nsecs,
                &nsec_sets,
                &nsec3s,
                &nsec3_sets,
                &zone_name,
                max_iterations,
            ) {
                return Some(outcome);
            }
        }
        // RFC 8198 §5.3: a kept wildcard expansion, if the name provably does not exist and
        // the wildcard's closest encloser is the name's.
        let nsec_encloser = nsec_closest_encloser(&nsecs, qname);
        let (wildcard, proof_set) = zone.wildcards.iter().find_map(|w| {
            if w.until <= now
                || !(w.rtype == qtype || (w.rtype == Rtype::CNAME && w.qtype == qtype))
            {
                return None;
            }
            let proof = match &nsec_encloser {
                Some((encloser, i)) if encloser.name_eq(&w.encloser) => Some(nsec_sets[*i]),
                Some(_) => None,
                None => {
                    nsec3_next_closer_cover(&nsec3s, &zone_name, qname, &w.encloser, max_iterations)
                        .map(|i| nsec3_sets[i])
                }
            };
            proof.map(|p| (w, p))
        })?;
        let left = u32::try_from(wildcard.until.saturating_sub(now)).unwrap_or(u32::MAX);
        let mut answer: Vec<Rr> = wildcard
            .rrset
            .iter()
            .map(|r| renamed(r, qname, left))
            .collect();
        answer.extend(wildcard.tail.iter().map(|r| {
            let owner = r.owner().clone();
            renamed(r, &owner, left)
        }));
        Some(Outcome {
            rcode: Rcode::NOERROR,
            answer,
            authority: fresh[proof_set].clone(),
            verbatim: None,
        })
    }
}

/// The negative answer the kept records prove, with just the records of the proof.
#[allow(
    clippy::too_many_arguments,
    reason = "the split views of one zone's records"
)]
fn denial(
    qname: &Name<Bytes>,
    qtype: Rtype,
    soa: &[Rr],
    fresh: &[&Vec<Rr>],
    nsecs: &[NsecRr<'_>],
    nsec_sets: &[usize],
    nsec3s: &[Nsec3Rr<'_>],
    nsec3_sets: &[usize],
    zone: &Name<Bytes>,
    max_iterations: u16,
) -> Option<Outcome> {
    let proven = |claim: Claim| {
        if !nsecs.is_empty() {
            nsec_proof(nsecs, qname, claim) == Proof::Proven
        } else {
            !nsec3s.is_empty()
                && nsec3_proof(nsec3s, zone, qname, claim, max_iterations) == Proof::Proven
        }
    };
    let (rcode, claim) = if proven(Claim::NoName) {
        (Rcode::NXDOMAIN, Claim::NoName)
    } else if qtype != Rtype::ANY && proven(Claim::NoData(qtype)) {
        (Rcode::NOERROR, Claim::NoData(qtype))
    } else {
        return None;
    };
    let mut authority = soa.to_vec();
    let mut used: Vec<usize> = Vec::new();
    if nsecs.is_empty() {
        used = nsec3_participants(nsec3s, zone, qname, claim)
            .into_iter()
            .map(|i| nsec3_sets[i])
            .collect();
    } else if let Some(i) = nsecs
        .iter()
        .position(|(owner, _)| rcode == Rcode::NOERROR && owner.name_eq(qname))
    {
        // NODATA at an existing name: its own NSEC is the whole proof.
        used.push(nsec_sets[i]);
    } else {
        for (i, nsec) in nsecs.iter().enumerate() {
            if takes_part(std::slice::from_ref(nsec), qname) && !used.contains(&nsec_sets[i]) {
                used.push(nsec_sets[i]);
            }
        }
    }
    for set in used {
        authority.extend(fresh[set].iter().cloned());
    }
    Some(Outcome {
        rcode,
        answer: Vec::new(),
        authority,
        verbatim: None,
    })
}

/// The wildcard expansion in a secure positive `outcome` of `zone`, if there is one: the
/// first RRset whose RRSIG has fewer labels than its owner, with the rest of the answer after
/// it, kept as long as the shortest TTL among them.
fn wildcard_of(qtype: Rtype, outcome: &Outcome, zone: &Name<Bytes>, now: u64) -> Option<Wildcard> {
    let (owner, rtype, labels) = outcome.answer.iter().find_map(|r| match r.data() {
        AllRecordData::Rrsig(sig)
            if usize::from(sig.labels()) < rrsig_labels(r.owner())
                && sig.signer_name().name_eq(zone) =>
        {
            Some((r.owner().clone(), sig.type_covered(), sig.labels()))
        }
        _ => None,
    })?;
    let encloser = lower(&owner)
        .iter_suffixes()
        .find(|s| s.label_count() == usize::from(labels) + 1)?
        .to_name::<Bytes>();
    let part = |r: &Rr| {
        same_name(r.owner(), &owner) && (r.rtype() == rtype || rrsig_covers(r) == Some(rtype))
    };
    let last = outcome.answer.iter().rposition(part)?;
    let rrset: Vec<Rr> = outcome.answer.iter().filter(|r| part(r)).cloned().collect();
    let rrset = crate::names::detached(rrset);
    let tail = crate::names::detached(outcome.answer[last + 1..].to_vec());
    let ttl = rrset
        .iter()
        .chain(&tail)
        .map(|r| r.ttl().as_secs())
        .min()
        .unwrap_or(0);
    if ttl == 0 || (rtype != qtype && rtype != Rtype::CNAME) {
        return None;
    }
    Some(Wildcard {
        encloser,
        rtype,
        qtype,
        rrset,
        tail,
        until: now + u64::from(ttl),
    })
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
        store.remember(Rtype::A, &negative(), 1000);
        // c.example. lies in b..d, the wildcard *.example. in example..b.
        let nx = store
            .synthesise(&name("c.example."), Rtype::A, 1010, 150)
            .unwrap();
        assert_eq!(nx.rcode, Rcode::NXDOMAIN);
        assert_eq!(
            nx.authority.len(),
            3,
            "SOA and both NSEC: {:?}",
            nx.authority
        );
        let deeper = store
            .synthesise(&name("x.c.example."), Rtype::MX, 1010, 150)
            .unwrap();
        assert_eq!(deeper.rcode, Rcode::NXDOMAIN);
        // b.example. exists without MX, with A.
        let nodata = store
            .synthesise(&name("b.example."), Rtype::MX, 1010, 150)
            .unwrap();
        assert_eq!(nodata.rcode, Rcode::NOERROR);
        assert_eq!(
            nodata.authority.len(),
            2,
            "SOA and b's NSEC: {:?}",
            nodata.authority
        );
        assert!(store
            .synthesise(&name("b.example."), Rtype::A, 1010, 150)
            .is_none());
        // The apex NSEC lacks DS, but DS is the parent's: not from this zone's chain.
        assert!(store
            .synthesise(&name("example."), Rtype::DS, 1010, 150)
            .is_none());
        assert_eq!(
            store
                .synthesise(&name("example."), Rtype::MX, 1010, 150)
                .map(|o| o.rcode),
            Some(Rcode::NOERROR)
        );
        // Outside every range: asked upstream.
        assert!(store
            .synthesise(&name("e.example."), Rtype::A, 1010, 150)
            .is_none());
        assert!(store
            .synthesise(&name("c.example.org."), Rtype::A, 1010, 150)
            .is_none());
        // The SOA's negative TTL (60) bounds the NSEC's 300.
        assert!(store
            .synthesise(&name("c.example."), Rtype::A, 1060, 150)
            .is_none());
    }

    #[test]
    fn a_flush_of_a_name_in_the_zone_or_of_the_zone_forgets_its_ranges() {
        let denies = |store: &AggressiveNsec| {
            store
                .synthesise(&name("c.example."), Rtype::A, 1010, 150)
                .is_some()
        };
        let wire = |text: &str| lower(&name(text)).into_octets();
        let store = AggressiveNsec::default();
        store.remember(Rtype::A, &negative(), 1000);
        // A name elsewhere leaves the zone's ranges alone.
        store.flush(FlushScope::Name(&wire("c.example.org.")));
        assert!(denies(&store));
        // The flushed name lies in the zone: its chain could deny it, so it goes.
        store.flush(FlushScope::Name(&wire("c.example.")));
        assert!(!denies(&store));
        store.remember(Rtype::A, &negative(), 1000);
        store.flush(FlushScope::Subtree(&wire("example.")));
        assert!(!denies(&store));
        store.remember(Rtype::A, &negative(), 1000);
        store.flush(FlushScope::All);
        assert!(!denies(&store));
    }

    #[test]
    fn without_the_wildcard_range_no_nxdomain() {
        let store = AggressiveNsec::default();
        let mut outcome = negative();
        outcome.authority.remove(1);
        store.remember(Rtype::A, &outcome, 1000);
        assert!(store
            .synthesise(&name("c.example."), Rtype::A, 1010, 150)
            .is_none());
    }

    fn bitmap(types: &[Rtype]) -> RtypeBitmap<Bytes> {
        let mut builder = RtypeBitmap::<Bytes>::builder();
        for t in types {
            builder.add(*t).unwrap();
        }
        builder.finalize()
    }

    /// An RRSIG-shaped record over `covered` at `owner` with `labels` (nothing verifies it
    /// here: the store keeps what the validator already checked).
    fn rrsig(owner: &str, covered: Rtype, labels: u8) -> Rr {
        record(
            owner,
            300,
            AllRecordData::Rrsig(
                domain::rdata::Rrsig::new(
                    covered,
                    domain::base::iana::SecurityAlgorithm::ECDSAP256SHA256,
                    labels,
                    Ttl::from_secs(300),
                    domain::rdata::dnssec::Timestamp::from(2_000_000_000),
                    domain::rdata::dnssec::Timestamp::from(900),
                    1,
                    name("example."),
                    Bytes::from_static(&[0; 64]),
                )
                .unwrap(),
            ),
        )
    }

    fn nsec3_owner(owned: &str) -> (String, Vec<u8>) {
        let hash = domain::dnssec::common::nsec3_hash::<_, _, Vec<u8>>(
            name(owned),
            domain::base::iana::Nsec3HashAlgorithm::SHA1,
            0,
            &domain::rdata::nsec3::Nsec3Salt::<Bytes>::empty(),
        )
        .unwrap();
        let label = domain::utils::base32::encode_string_hex(hash.as_slice()).to_ascii_lowercase();
        (format!("{label}.example."), hash.as_slice().to_vec())
    }

    /// The NSEC3 chain of a zone with only its apex: the apex's record and one at the
    /// all-zero hash, whose two spans cover every other name's hash.
    fn nsec3_chain(opt_out: bool) -> Vec<Rr> {
        let (apex, apex_hash) = nsec3_owner("example.");
        let low = domain::utils::base32::encode_string_hex(&[0u8; 20]).to_ascii_lowercase();
        let nsec3 = |owner: &str, next: Vec<u8>, types: &[Rtype]| {
            record(
                owner,
                300,
                AllRecordData::Nsec3(domain::rdata::Nsec3::new(
                    domain::base::iana::Nsec3HashAlgorithm::SHA1,
                    u8::from(opt_out),
                    0,
                    domain::rdata::nsec3::Nsec3Salt::empty(),
                    domain::rdata::nsec3::OwnerHash::from_octets(Bytes::from(next)).unwrap(),
                    bitmap(types),
                )),
            )
        };
        vec![
            nsec3(&apex, vec![0; 20], &[Rtype::SOA, Rtype::NS, Rtype::RRSIG]),
            nsec3(&format!("{low}.example."), apex_hash, &[Rtype::A]),
        ]
    }

    #[test]
    fn nsec3_ranges_prove_nxdomain_and_nodata_but_an_opt_out_span_no_nxdomain() {
        for opt_out in [false, true] {
            let store = AggressiveNsec::default();
            let mut authority = vec![soa()];
            authority.extend(nsec3_chain(opt_out));
            let outcome = Outcome {
                rcode: Rcode::NXDOMAIN,
                answer: Vec::new(),
                authority,
                verbatim: None,
            };
            store.remember(Rtype::A, &outcome, 1000);
            let nx = store.synthesise(&name("x.example."), Rtype::A, 1010, 150);
            if opt_out {
                // x.example. could be an unsigned delegation inside the opt-out span.
                assert!(nx.is_none(), "opt-out proves no NXDOMAIN: {nx:?}");
            } else {
                let nx = nx.unwrap();
                assert_eq!(nx.rcode, Rcode::NXDOMAIN);
                // The apex's record (closest encloser) and the spans covering x and *: one
                // or both of the two records, each once.
                let proof: Vec<&Rr> = nx
                    .authority
                    .iter()
                    .filter(|r| r.rtype() == Rtype::NSEC3)
                    .collect();
                let apex = nsec3_owner("example.").0;
                assert!(
                    proof.iter().any(|r| r.owner().to_string() + "." == apex),
                    "{nx:?}"
                );
                assert!((1..=2).contains(&proof.len()), "{nx:?}");
            }
            // The apex exists without MX: its own record proves it, opt-out or not.
            let nodata = store
                .synthesise(&name("example."), Rtype::MX, 1010, 150)
                .unwrap();
            assert_eq!(nodata.rcode, Rcode::NOERROR);
            assert_eq!(
                nodata.authority.len(),
                2,
                "SOA and the apex's NSEC3: {nodata:?}"
            );
            assert!(store
                .synthesise(&name("example."), Rtype::NS, 1010, 150)
                .is_none());
        }
    }

    /// A secure answer for `a.wild.example.` A expanded from `*.wild.example.` (a CNAME to
    /// `target.example.`, then its A), proven by `proof`.
    fn wildcard_answer(proof: Vec<Rr>) -> Outcome {
        let cname = record(
            "a.wild.example.",
            300,
            AllRecordData::Cname(domain::rdata::Cname::new(name("target.example."))),
        );
        let address = record(
            "target.example.",
            300,
            AllRecordData::A(domain::rdata::A::new([192, 0, 2, 1].into())),
        );
        Outcome {
            rcode: Rcode::NOERROR,
            answer: vec![
                cname,
                rrsig("a.wild.example.", Rtype::CNAME, 2),
                address,
                rrsig("target.example.", Rtype::A, 2),
            ],
            authority: proof,
            verbatim: None,
        }
    }

    fn check_expansion(store: &AggressiveNsec, qname: &str) {
        let answer = store.synthesise(&name(qname), Rtype::A, 1010, 150).unwrap();
        assert_eq!(answer.rcode, Rcode::NOERROR);
        let owners: Vec<String> = answer
            .answer
            .iter()
            .map(|r| format!("{} {}", r.owner(), r.rtype()))
            .collect();
        let qname = qname.trim_end_matches('.');
        assert_eq!(
            owners,
            [
                format!("{qname} CNAME"),
                format!("{qname} RRSIG"),
                "target.example A".into(),
                "target.example RRSIG".into()
            ]
        );
        assert!(!answer.authority.is_empty(), "the proof goes with it");
    }

    /// The signed NSEC of `*.wild.example.` (a CNAME there): the proof of a wildcard expansion.
    fn wild_proof() -> Vec<Rr> {
        vec![
            nsec(
                "*.wild.example.",
                "z.example.",
                &[Rtype::CNAME, Rtype::RRSIG, Rtype::NSEC],
            ),
            rrsig("*.wild.example.", Rtype::NSEC, 2),
        ]
    }

    #[test]
    fn a_wildcard_expansion_answers_other_names_the_nsec_proves_under_it() {
        let store = AggressiveNsec::default();
        let proof = wild_proof();
        store.remember(Rtype::A, &wildcard_answer(proof), 1000);
        check_expansion(&store, "b.wild.example.");
        // Deeper: wild.example. is still the closest encloser.
        check_expansion(&store, "x.y.wild.example.");
        let unanswered = [
            // Another type than the chain answered: asked upstream.
            ("b.wild.example.", Rtype::MX, 1010),
            // Outside the NSEC's span (after z.example.) nothing is proven.
            ("zz.example.", Rtype::A, 1010),
            // Expired with the shortest TTL of the chain.
            ("b.wild.example.", Rtype::A, 1300),
        ];
        for (qname, qtype, now) in unanswered {
            let found = store.synthesise(&name(qname), qtype, now, 150);
            assert!(found.is_none(), "{qname} {qtype} at {now}: {found:?}");
        }
    }

    #[test]
    fn a_wildcard_expansion_needs_a_nsec3_cover_outside_opt_out_spans() {
        for opt_out in [false, true] {
            let store = AggressiveNsec::default();
            let mut proof = nsec3_chain(opt_out);
            proof.push(rrsig(
                proof[0].owner().to_string().as_str(),
                Rtype::NSEC3,
                2,
            ));
            store.remember(Rtype::A, &wildcard_answer(proof), 1000);
            if opt_out {
                assert!(store
                    .synthesise(&name("b.wild.example."), Rtype::A, 1010, 150)
                    .is_none());
            } else {
                check_expansion(&store, "b.wild.example.");
            }
        }
    }

    /// A secure NXDOMAIN from `zone`: its SOA and one NSEC `n<i>.<zone>` → `n<i>a.<zone>`.
    fn negative_from(zone: &str, i: usize) -> Outcome {
        let soa = record(
            zone,
            300,
            AllRecordData::Soa(Soa::new(
                name(&format!("ns.{zone}")),
                name(&format!("h.{zone}")),
                Serial(1),
                Ttl::from_secs(10),
                Ttl::from_secs(10),
                Ttl::from_secs(10),
                Ttl::from_secs(60),
            )),
        );
        Outcome {
            rcode: Rcode::NXDOMAIN,
            answer: Vec::new(),
            authority: vec![
                soa,
                nsec(
                    &format!("n{i}.{zone}"),
                    &format!("n{i}a.{zone}"),
                    &[Rtype::A, Rtype::NSEC],
                ),
            ],
            verbatim: None,
        }
    }

    /// Design 0048: a hostile signed zone hands out more ranges and wildcard expansions than
    /// `resolver.limits.aggressive_nsec_ranges`/`_wildcards` allow, and more zones than
    /// `aggressive_nsec_zones`: the store keeps each at its bound (the newest ranges).
    #[test]
    fn ranges_wildcards_and_zones_stay_at_their_configured_bounds() {
        let store = AggressiveNsec::with_max(2, 4, 3);
        for i in 0..20 {
            store.remember(Rtype::A, &negative_from("example.", i), 1000);
        }
        assert_eq!(store.counts(), (1, 4, 0));
        // The newest records are the ones kept: n19's NSEC still proves it has no MX, n0's is gone.
        assert!(store
            .synthesise(&name("n19.example."), Rtype::MX, 1010, 150)
            .is_some_and(|o| o.rcode == Rcode::NOERROR));
        assert!(store
            .synthesise(&name("n0.example."), Rtype::MX, 1010, 150)
            .is_none());
        let proof = wild_proof();
        // A CNAME expansion answers any question type: each type is an expansion of its own.
        for qtype in 1..=20 {
            store.remember(
                Rtype::from_int(qtype),
                &wildcard_answer(proof.clone()),
                1000,
            );
        }
        let (_, _, wildcards) = store.counts();
        assert_eq!(wildcards, 3);
        for zone in ["a.test.", "b.test.", "c.test.", "d.test."] {
            for i in 0..10 {
                store.remember(Rtype::A, &negative_from(zone, i), 1000);
            }
        }
        let (zones, ranges, wildcards) = store.counts();
        assert!(zones <= 2, "{zones} zones");
        assert!(ranges <= 2 * 4, "{ranges} ranges");
        assert!(wildcards <= 3, "{wildcards} wildcards");
    }
}
