//! Authenticated denial of existence: NSEC (RFC 4035 §5.4) and NSEC3 (RFC 5155 §8), run
//! over NSEC/NSEC3 records whose signatures were already checked.

use std::cmp::Ordering;

use bytes::Bytes;
use domain::base::iana::Nsec3HashAlgorithm;
use domain::base::{Name, Rtype, ToName};
use domain::dnssec::common::nsec3_hash;
use domain::rdata::dnssec::RtypeBitmap;
use domain::rdata::{AllRecordData, Nsec, Nsec3};

use super::canonical::name_order;
use super::verify::MAX_NSEC3_HASHES_PER_DENIAL;
use crate::names::Rr;

/// What the records prove.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Proof {
    /// The denial holds.
    Proven,
    /// Nothing can be proven, legitimately: NSEC3 opt-out, iterations above the limit, an
    /// unsupported hash (the answer is insecure).
    Insecure,
    /// The records do not prove the denial.
    Missing,
    /// Too many NSEC3 hashes needed (CVE-2023-50868 limit).
    Limit,
}

/// What is to be proven about `qname`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Claim {
    /// The name does not exist (NXDOMAIN).
    NoName,
    /// The name exists without this type (NODATA), possibly through a wildcard.
    NoData(Rtype),
    /// A wildcard answer: the name itself does not exist; the RRSIG had `labels` labels.
    Wildcard(u8),
}

/// A checked NSEC record.
pub(crate) type NsecRr<'a> = (&'a Name<Bytes>, &'a Nsec<Bytes, Name<Bytes>>);
/// A checked NSEC3 record.
pub(crate) type Nsec3Rr<'a> = (&'a Name<Bytes>, &'a Nsec3<Bytes>);

fn parent(name: &Name<Bytes>) -> Option<Name<Bytes>> {
    name.parent()
}

fn wildcard_at(name: &Name<Bytes>) -> Option<Name<Bytes>> {
    let mut bytes = vec![1, b'*'];
    bytes.extend_from_slice(name.as_slice());
    Name::from_octets(Bytes::from(bytes)).ok()
}

/// Whether the NSEC at `owner` with `next` covers `name` (owner < name < next, with the last
/// NSEC wrapping to the apex).
fn nsec_covers(owner: &Name<Bytes>, next: &Name<Bytes>, name: &Name<Bytes>) -> bool {
    let after_owner = name_order(owner, name) == Ordering::Less;
    let before_next = name_order(name, next) == Ordering::Less;
    match name_order(owner, next) {
        Ordering::Less => after_owner && before_next,
        // The last NSEC of the zone: next is the apex.
        _ => after_owner || before_next,
    }
}

/// An NSEC at a delegation (NS without SOA) or at a DNAME says nothing about names below it.
fn nsec_usable_for(
    owner: &Name<Bytes>,
    nsec: &Nsec<Bytes, Name<Bytes>>,
    name: &Name<Bytes>,
) -> bool {
    let below = name.label_count() > owner.label_count() && name.ends_with(owner);
    if !below {
        return true;
    }
    let types = nsec.types();
    !((types.contains(Rtype::NS) && !types.contains(Rtype::SOA)) || types.contains(Rtype::DNAME))
}

fn covering<'a>(nsecs: &[NsecRr<'a>], name: &Name<Bytes>) -> Option<NsecRr<'a>> {
    nsecs.iter().copied().find(|(owner, nsec)| {
        nsec_covers(owner, nsec.next_name(), name) && nsec_usable_for(owner, nsec, name)
    })
}

fn matching<'a>(nsecs: &[NsecRr<'a>], name: &Name<Bytes>) -> Option<NsecRr<'a>> {
    nsecs.iter().copied().find(|(owner, _)| owner.name_eq(name))
}

/// The longest common ancestor of two names.
fn common_ancestor(a: &Name<Bytes>, b: &Name<Bytes>) -> Name<Bytes> {
    let mut candidate = a.clone();
    while !b.ends_with(&candidate) {
        match parent(&candidate) {
            Some(p) => candidate = p,
            None => return Name::root_bytes(),
        }
    }
    candidate
}

fn nodata_bitmap_ok(nsec_types: &impl Fn(Rtype) -> bool, qtype: Rtype) -> bool {
    !nsec_types(qtype) && !nsec_types(Rtype::CNAME)
}

/// NSEC proofs.
pub(crate) fn nsec_proof(nsecs: &[NsecRr<'_>], qname: &Name<Bytes>, claim: Claim) -> Proof {
    match claim {
        Claim::NoData(qtype) => {
            if let Some((_, nsec)) = matching(nsecs, qname) {
                let types = |t| nsec.types().contains(t);
                // DS is answered by the parent side of a cut, every other type by the child.
                if qtype != Rtype::DS && types(Rtype::NS) && !types(Rtype::SOA) {
                    return Proof::Missing;
                }
                return if nodata_bitmap_ok(&types, qtype) {
                    Proof::Proven
                } else {
                    Proof::Missing
                };
            }
            let Some((owner, nsec)) = covering(nsecs, qname) else {
                return Proof::Missing;
            };
            // An empty non-terminal: the next name is below qname.
            let next = nsec.next_name();
            if next.label_count() > qname.label_count() && next.ends_with(qname) {
                return Proof::Proven;
            }
            // Wildcard NODATA: the wildcard at the closest encloser lacks the type.
            let encloser = deeper(common_ancestor(qname, owner), common_ancestor(qname, next));
            let Some(wildcard) = wildcard_at(&encloser) else {
                return Proof::Missing;
            };
            match matching(nsecs, &wildcard) {
                Some((_, w)) if nodata_bitmap_ok(&|t| w.types().contains(t), qtype) => {
                    Proof::Proven
                }
                _ => Proof::Missing,
            }
        }
        Claim::NoName => {
            if matching(nsecs, qname).is_some() {
                return Proof::Missing;
            }
            let Some((owner, nsec)) = covering(nsecs, qname) else {
                return Proof::Missing;
            };
            let next = nsec.next_name();
            let encloser = deeper(common_ancestor(qname, owner), common_ancestor(qname, next));
            let Some(wildcard) = wildcard_at(&encloser) else {
                return Proof::Missing;
            };
            if covering(nsecs, &wildcard).is_some() && matching(nsecs, &wildcard).is_none() {
                Proof::Proven
            } else {
                Proof::Missing
            }
        }
        Claim::Wildcard(_) => match covering(nsecs, qname) {
            Some(_) if matching(nsecs, qname).is_none() => Proof::Proven,
            _ => Proof::Missing,
        },
    }
}

fn deeper(a: Name<Bytes>, b: Name<Bytes>) -> Name<Bytes> {
    if a.label_count() >= b.label_count() {
        a
    } else {
        b
    }
}

/// A closest encloser and the NSEC3 covering its next closer name.
type Encloser<'a> = (Name<Bytes>, &'a Nsec3<Bytes>);

/// NSEC3 records of one zone, hashed lazily under a budget.
struct Nsec3Set<'a> {
    /// Owner hash, record, index in the caller's slice.
    records: Vec<(Vec<u8>, &'a Nsec3<Bytes>, usize)>,
    zone: Name<Bytes>,
    hashes: u32,
    first: &'a Nsec3<Bytes>,
}

impl<'a> Nsec3Set<'a> {
    fn new(records: &[Nsec3Rr<'a>], zone: &Name<Bytes>) -> Option<Self> {
        let first = records.first()?.1;
        let mut decoded = Vec::new();
        for (index, (owner, nsec3)) in records.iter().enumerate() {
            // The owner is <base32hex hash>.<zone>, with the set's parameters.
            let Some(parent) = owner.parent() else {
                continue;
            };
            if !parent.name_eq(zone)
                || nsec3.hash_algorithm() != first.hash_algorithm()
                || nsec3.iterations() != first.iterations()
                || nsec3.salt().as_slice() != first.salt().as_slice()
            {
                continue;
            }
            let label = String::from_utf8_lossy(owner.first().as_slice()).to_ascii_uppercase();
            let Ok(hash) = domain::utils::base32::decode_hex::<Vec<u8>>(&label) else {
                continue;
            };
            decoded.push((hash, *nsec3, index));
        }
        Some(Self {
            records: decoded,
            zone: zone.clone(),
            hashes: 0,
            first,
        })
    }

    fn hash(&mut self, name: &Name<Bytes>) -> Option<Vec<u8>> {
        self.hashes += 1;
        if self.hashes > MAX_NSEC3_HASHES_PER_DENIAL {
            return None;
        }
        nsec3_hash::<_, _, Vec<u8>>(
            name,
            self.first.hash_algorithm(),
            self.first.iterations(),
            self.first.salt(),
        )
        .ok()
        .map(|h| h.as_slice().to_vec())
    }

    fn matching(&self, hash: &[u8]) -> Option<&'a Nsec3<Bytes>> {
        self.matching_at(hash).map(|(n, _)| n)
    }

    fn covering(&self, hash: &[u8]) -> Option<&'a Nsec3<Bytes>> {
        self.covering_at(hash).map(|(n, _)| n)
    }

    /// The record whose owner hash is `hash`, with its index.
    fn matching_at(&self, hash: &[u8]) -> Option<(&'a Nsec3<Bytes>, usize)> {
        self.records
            .iter()
            .find(|(h, _, _)| h == hash)
            .map(|(_, n, i)| (*n, *i))
    }

    /// The record whose span covers `hash`, with its index.
    fn covering_at(&self, hash: &[u8]) -> Option<(&'a Nsec3<Bytes>, usize)> {
        self.records
            .iter()
            .find(|(owner, nsec3, _)| {
                let next = nsec3.next_owner().as_slice();
                let owner = owner.as_slice();
                if owner < next {
                    owner < hash && hash < next
                } else {
                    owner < hash || hash < next
                }
            })
            .map(|(_, n, i)| (*n, *i))
    }

    /// The closest encloser proof (RFC 5155 §8.3): the closest encloser, the next closer
    /// name's covering NSEC3. `Err` when out of budget.
    fn closest_encloser(&mut self, qname: &Name<Bytes>) -> Result<Option<Encloser<'a>>, ()> {
        let mut next_closer: Option<Name<Bytes>> = None;
        let mut candidate = qname.clone();
        loop {
            if !candidate.ends_with(&self.zone) {
                return Ok(None);
            }
            let hash = self.hash(&candidate).ok_or(())?;
            if let Some(nsec3) = self.matching(&hash) {
                let types = nsec3.types();
                // A delegation's or DNAME's NSEC3 cannot be the closest encloser of names below.
                if ((types.contains(Rtype::NS) && !types.contains(Rtype::SOA))
                    || types.contains(Rtype::DNAME))
                    && next_closer.is_some()
                {
                    return Ok(None);
                }
                let Some(next) = next_closer else {
                    return Ok(None);
                };
                let hash = self.hash(&next).ok_or(())?;
                return Ok(self.covering(&hash).map(|c| (candidate, c)));
            }
            if candidate.name_eq(&self.zone) {
                return Ok(None);
            }
            next_closer = Some(candidate.clone());
            match candidate.parent() {
                Some(p) => candidate = p,
                None => return Ok(None),
            }
        }
    }
}

/// NSEC3 proofs for names in `zone`.
pub(crate) fn nsec3_proof(
    records: &[Nsec3Rr<'_>],
    zone: &Name<Bytes>,
    qname: &Name<Bytes>,
    claim: Claim,
    max_iterations: u16,
) -> Proof {
    let Some(mut set) = Nsec3Set::new(records, zone) else {
        return Proof::Missing;
    };
    if set.first.hash_algorithm() != Nsec3HashAlgorithm::SHA1
        || set.first.iterations() > max_iterations
    {
        return Proof::Insecure;
    }
    let result = (|| -> Result<Proof, ()> {
        match claim {
            Claim::NoData(qtype) => {
                let hash = set.hash(qname).ok_or(())?;
                if let Some(nsec3) = set.matching(&hash) {
                    let types = nsec3.types();
                    if qtype != Rtype::DS
                        && types.contains(Rtype::NS)
                        && !types.contains(Rtype::SOA)
                    {
                        return Ok(Proof::Missing);
                    }
                    return Ok(if !types.contains(qtype) && !types.contains(Rtype::CNAME) {
                        Proof::Proven
                    } else {
                        Proof::Missing
                    });
                }
                let Some((encloser, next_closer)) = set.closest_encloser(qname)? else {
                    return Ok(Proof::Missing);
                };
                // RFC 5155 §8.6: DS NODATA under opt-out, the delegation is insecure.
                if qtype == Rtype::DS && next_closer.opt_out() {
                    return Ok(Proof::Insecure);
                }
                // Wildcard NODATA (§8.7).
                let Some(wildcard) = wildcard_at(&encloser) else {
                    return Ok(Proof::Missing);
                };
                let hash = set.hash(&wildcard).ok_or(())?;
                let wildcard_nodata = set.matching(&hash).is_some_and(|w| {
                    !w.types().contains(qtype) && !w.types().contains(Rtype::CNAME)
                });
                Ok(if next_closer.opt_out() {
                    // RFC 5155 §9.2 (as Unbound): the next closer name lies in an opt-out
                    // span, so it may be an unsigned delegation (hiding the wildcard too):
                    // nothing is proven either way and the answer is insecure.
                    Proof::Insecure
                } else if wildcard_nodata {
                    Proof::Proven
                } else {
                    Proof::Missing
                })
            }
            Claim::NoName => {
                let Some((encloser, next_closer)) = set.closest_encloser(qname)? else {
                    return Ok(Proof::Missing);
                };
                let Some(wildcard) = wildcard_at(&encloser) else {
                    return Ok(Proof::Missing);
                };
                let hash = set.hash(&wildcard).ok_or(())?;
                if set.covering(&hash).is_none() {
                    return Ok(Proof::Missing);
                }
                // An opt-out span may hide an unsigned delegation: not provably absent.
                Ok(if next_closer.opt_out() {
                    Proof::Insecure
                } else {
                    Proof::Proven
                })
            }
            Claim::Wildcard(labels) => {
                // §8.8: the next closer name (one label below the wildcard's parent) is covered.
                let wanted = usize::from(labels) + 2;
                let Some(next_closer) = qname.iter_suffixes().find(|s| s.label_count() == wanted)
                else {
                    return Ok(Proof::Missing);
                };
                let hash = set.hash(&next_closer).ok_or(())?;
                Ok(match set.covering(&hash) {
                    Some(c) if c.opt_out() => Proof::Insecure,
                    Some(_) => Proof::Proven,
                    None => Proof::Missing,
                })
            }
        }
    })();
    result.unwrap_or(Proof::Limit)
}

/// The indices of the NSEC3 records of `zone` that take part in proving `claim` for
/// `qname` (RFC 5155 §7.2: the closest encloser's record, the next closer name's cover, the
/// wildcard's cover or match; for a NODATA at an existing name, its own record). Used to
/// answer from the aggressive cache with just the proof (RFC 8198 §5.1). Empty when the
/// hashing budget runs out.
pub(crate) fn nsec3_participants(
    records: &[Nsec3Rr<'_>],
    zone: &Name<Bytes>,
    qname: &Name<Bytes>,
    claim: Claim,
) -> Vec<usize> {
    let Some(mut set) = Nsec3Set::new(records, zone) else {
        return Vec::new();
    };
    let mut used = Vec::new();
    let mut add = |index: usize| {
        if !used.contains(&index) {
            used.push(index);
        }
    };
    let Some(hash) = set.hash(qname) else {
        return Vec::new();
    };
    if let (Claim::NoData(_), Some((_, index))) = (claim, set.matching_at(&hash)) {
        add(index);
        return used;
    }
    // The closest encloser, walking up from qname.
    let mut next_closer: Name<Bytes>;
    let mut candidate = qname.clone();
    let encloser = loop {
        let Some(parent) = candidate.parent() else {
            return Vec::new();
        };
        if !parent.ends_with(zone) {
            return Vec::new();
        }
        next_closer = candidate;
        candidate = parent;
        let Some(hash) = set.hash(&candidate) else {
            return Vec::new();
        };
        if let Some((_, index)) = set.matching_at(&hash) {
            add(index);
            break candidate;
        }
    };
    let Some(hash) = set.hash(&next_closer) else {
        return Vec::new();
    };
    if let Some((_, index)) = set.covering_at(&hash) {
        add(index);
    }
    if matches!(claim, Claim::Wildcard(_)) {
        return used;
    }
    let Some(hash) = wildcard_at(&encloser).and_then(|w| set.hash(&w)) else {
        return Vec::new();
    };
    if let Some((_, index)) = set.matching_at(&hash).or_else(|| set.covering_at(&hash)) {
        add(index);
    }
    used
}

/// The closest encloser of a name that does not exist, from the NSEC covering it: the
/// deeper of its common ancestors with the NSEC's owner and next name (RFC 4035 §5.4).
pub(crate) fn nsec_closest_encloser(
    nsecs: &[NsecRr<'_>],
    qname: &Name<Bytes>,
) -> Option<(Name<Bytes>, usize)> {
    if matching(nsecs, qname).is_some() {
        return None;
    }
    let index = nsecs.iter().position(|(owner, nsec)| {
        nsec_covers(owner, nsec.next_name(), qname) && nsec_usable_for(owner, nsec, qname)
    })?;
    let (owner, nsec) = nsecs[index];
    let encloser = deeper(
        common_ancestor(qname, owner),
        common_ancestor(qname, nsec.next_name()),
    );
    Some((encloser, index))
}

/// For a wildcard at `encloser` (known from a verified RRSIG's label count): the index of
/// the NSEC3 record covering `qname`'s next closer name, proving the expansion applies to
/// `qname` (RFC 5155 §8.8), when that record is not opt-out (an opt-out span may hide an
/// unsigned delegation, so it proves nothing about the name).
pub(crate) fn nsec3_next_closer_cover(
    records: &[Nsec3Rr<'_>],
    zone: &Name<Bytes>,
    qname: &Name<Bytes>,
    encloser: &Name<Bytes>,
    max_iterations: u16,
) -> Option<usize> {
    let mut set = Nsec3Set::new(records, zone)?;
    if set.first.hash_algorithm() != Nsec3HashAlgorithm::SHA1
        || set.first.iterations() > max_iterations
        || !qname.ends_with(encloser)
    {
        return None;
    }
    let next_closer = qname
        .iter_suffixes()
        .find(|s| s.label_count() == encloser.label_count() + 1)?;
    let hash = set.hash(&next_closer)?;
    match set.covering_at(&hash)? {
        (cover, _) if cover.opt_out() => None,
        (_, index) => Some(index),
    }
}

/// Whether the (verified) NSEC or NSEC3 records of `zone` show a delegation at `name`: the
/// record matching it lists NS without SOA. Used by the validator's DS walk, after the
/// absence of DS at `name` was proven: a delegation without DS is an insecure child zone,
/// any other name is no zone cut at all.
pub(crate) fn delegation_at(zone: &Name<Bytes>, name: &Name<Bytes>, records: &[Rr]) -> bool {
    let (nsecs, nsec3s) = split(records, zone);
    // The denial check already held the NSEC3 set to the iteration limit.
    types_at(&nsecs, &nsec3s, zone, name, u16::MAX)
        .is_some_and(|types| types.contains(Rtype::NS) && !types.contains(Rtype::SOA))
}

/// Whether the NSEC or NSEC3 records of `zone` among `records` list a DNAME at `name`, so
/// that nothing exists below `name` but the DNAME's redirection (RFC 6672 §2.4): no zone
/// cut, nothing for a QNAME-minimisation probe to find. The records are not verified here;
/// the recursor takes this only as a hint for its next question (the answer it then gets is
/// validated as any other). An NSEC3 set above `max_iterations` is not hashed.
pub(crate) fn dname_at(
    zone: &Name<Bytes>,
    name: &Name<Bytes>,
    records: &[Rr],
    max_iterations: u16,
) -> bool {
    let (nsecs, nsec3s) = split(records, zone);
    types_at(&nsecs, &nsec3s, zone, name, max_iterations)
        .is_some_and(|types| types.contains(Rtype::DNAME))
}

/// The NSEC records and the NSEC3 records of `zone` (owners at or below it) in `records`.
fn split<'a>(records: &'a [Rr], zone: &Name<Bytes>) -> (Vec<NsecRr<'a>>, Vec<Nsec3Rr<'a>>) {
    let mut nsecs = Vec::new();
    let mut nsec3s = Vec::new();
    for record in records.iter().filter(|r| r.owner().ends_with(zone)) {
        match record.data() {
            AllRecordData::Nsec(nsec) => nsecs.push((record.owner(), nsec)),
            AllRecordData::Nsec3(nsec3) => nsec3s.push((record.owner(), nsec3)),
            _ => {}
        }
    }
    (nsecs, nsec3s)
}

/// The types listed by the record matching `name`: the NSEC owned by `name`, else the NSEC3
/// of `zone` whose owner hash is H(`name`) (not looked for when the set's iterations exceed
/// `max_iterations`).
fn types_at<'a>(
    nsecs: &[NsecRr<'a>],
    nsec3s: &[Nsec3Rr<'a>],
    zone: &Name<Bytes>,
    name: &Name<Bytes>,
    max_iterations: u16,
) -> Option<&'a RtypeBitmap<Bytes>> {
    if let Some((_, nsec)) = matching(nsecs, name) {
        return Some(nsec.types());
    }
    let mut set = Nsec3Set::new(nsec3s, zone)?;
    if set.first.iterations() > max_iterations {
        return None;
    }
    let hash = set.hash(name)?;
    set.matching(&hash).map(|nsec3| nsec3.types())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // reason: test code.
mod tests {
    use super::*;
    use domain::rdata::nsec3::{Nsec3Salt, OwnerHash};

    fn name(text: &str) -> Name<Bytes> {
        Name::bytes_from_str(text).unwrap()
    }

    fn bitmap(types: &[Rtype]) -> RtypeBitmap<Bytes> {
        let mut builder = RtypeBitmap::<Bytes>::builder();
        for t in types {
            builder.add(*t).unwrap();
        }
        builder.finalize()
    }

    fn nsec(next: &str, types: &[Rtype]) -> Nsec<Bytes, Name<Bytes>> {
        Nsec::new(name(next), bitmap(types))
    }

    /// Checks each (records, name, claim, expected proof).
    fn expect(set: &[NsecRr<'_>], cases: &[(&str, Claim, Proof)]) {
        for (qname, claim, expected) in cases {
            assert_eq!(
                nsec_proof(set, &name(qname), *claim),
                *expected,
                "{qname} {claim:?}"
            );
        }
    }

    #[test]
    fn nsec_nxdomain_needs_name_and_wildcard_cover() {
        let (o1, o2) = (name("example."), name("b.example."));
        let n1 = nsec("b.example.", &[Rtype::SOA, Rtype::NS, Rtype::NSEC]);
        let n2 = nsec("example.", &[Rtype::A, Rtype::NSEC]);
        let set = [(&o1, &n1), (&o2, &n2)];
        expect(
            &set,
            &[
                ("a.example.", Claim::NoName, Proof::Proven),
                // The last NSEC wraps to the apex.
                ("c.example.", Claim::NoName, Proof::Proven),
                // The name exists.
                ("b.example.", Claim::NoName, Proof::Missing),
                ("b.example.", Claim::NoData(Rtype::MX), Proof::Proven),
                ("b.example.", Claim::NoData(Rtype::A), Proof::Missing),
            ],
        );
        // Without the NSEC covering *.example. the wildcard might exist.
        expect(
            &[(&o2, &n2)],
            &[("c.example.", Claim::NoName, Proof::Missing)],
        );
        expect(
            &[],
            &[("b.example.", Claim::NoData(Rtype::A), Proof::Missing)],
        );
    }

    #[test]
    fn nsec_at_delegation_proves_nothing_below() {
        let o = name("sub.example.");
        let n = nsec("z.example.", &[Rtype::NS, Rtype::NSEC]);
        expect(
            &[(&o, &n)],
            &[
                ("www.sub.example.", Claim::Wildcard(2), Proof::Missing),
                ("sub.example.", Claim::NoData(Rtype::DS), Proof::Proven),
                ("sub.example.", Claim::NoData(Rtype::A), Proof::Missing),
            ],
        );
    }

    fn hashed(owner: &Name<Bytes>, zone: &Name<Bytes>) -> (Name<Bytes>, Vec<u8>) {
        let h = nsec3_hash::<_, _, Vec<u8>>(
            owner,
            Nsec3HashAlgorithm::SHA1,
            0,
            &Nsec3Salt::<Bytes>::empty(),
        )
        .unwrap();
        let label = domain::utils::base32::encode_string_hex(h.as_slice()).to_ascii_lowercase();
        (name(&format!("{label}.{zone}")), h.as_slice().to_vec())
    }

    #[test]
    fn nsec3_nodata_and_limits() {
        let zone = name("example.");
        let (owner, hash) = hashed(&name("www.example."), &zone);
        let mut next = hash.clone();
        *next.last_mut().unwrap() ^= 1;
        let record = Nsec3::new(
            Nsec3HashAlgorithm::SHA1,
            0,
            0,
            Nsec3Salt::empty(),
            OwnerHash::from_octets(Bytes::from(next)).unwrap(),
            bitmap(&[Rtype::A, Rtype::RRSIG]),
        );
        let set = [(&owner, &record)];
        let proof = |claim| nsec3_proof(&set, &zone, &name("www.example."), claim, 150);
        assert_eq!(proof(Claim::NoData(Rtype::MX)), Proof::Proven);
        assert_eq!(proof(Claim::NoData(Rtype::A)), Proof::Missing);
        let costly = Nsec3::new(
            Nsec3HashAlgorithm::SHA1,
            0,
            151,
            Nsec3Salt::empty(),
            record.next_owner().clone(),
            bitmap(&[Rtype::A]),
        );
        let set = [(&owner, &costly)];
        assert_eq!(
            nsec3_proof(
                &set,
                &zone,
                &name("www.example."),
                Claim::NoData(Rtype::MX),
                150
            ),
            Proof::Insecure,
            "RFC 9276: iterations above the limit"
        );
    }

    /// The recursor's hint for QNAME minimisation: the NSEC owned by the name, or the NSEC3
    /// matching its hash, lists DNAME; a covering record, another name's record or an NSEC3
    /// set above the iteration limit says nothing.
    #[test]
    fn dname_at_reads_the_matching_nsec_or_nsec3() {
        use crate::names::testing::record;
        let zone = name("example.");
        let nsec_rr = |owner: &str, next: &str, types: &[Rtype]| {
            record(owner, 300, AllRecordData::Nsec(nsec(next, types)))
        };
        let records = [
            nsec_rr(
                "d.example.",
                "f.example.",
                &[Rtype::DNAME, Rtype::RRSIG, Rtype::NSEC],
            ),
            nsec_rr("f.example.", "example.", &[Rtype::A, Rtype::NSEC]),
        ];
        assert!(dname_at(&zone, &name("d.example."), &records, 150));
        assert!(!dname_at(&zone, &name("f.example."), &records, 150));
        // e.example. is only covered by the record of d.example.
        assert!(!dname_at(&zone, &name("e.example."), &records, 150));

        let nsec3_at = |owner: &str, iterations: u16, types: &[Rtype]| {
            let hash = nsec3_hash::<_, _, Vec<u8>>(
                &name(owner),
                Nsec3HashAlgorithm::SHA1,
                iterations,
                &Nsec3Salt::<Bytes>::empty(),
            )
            .unwrap()
            .as_slice()
            .to_vec();
            let label = domain::utils::base32::encode_string_hex(&hash).to_ascii_lowercase();
            let mut next = hash;
            *next.last_mut().unwrap() ^= 1;
            let nsec3 = Nsec3::new(
                Nsec3HashAlgorithm::SHA1,
                0,
                iterations,
                Nsec3Salt::empty(),
                OwnerHash::from_octets(Bytes::from(next)).unwrap(),
                bitmap(types),
            );
            record(
                &format!("{label}.example."),
                300,
                AllRecordData::Nsec3(nsec3),
            )
        };
        let set = [nsec3_at("d.example.", 5, &[Rtype::DNAME, Rtype::RRSIG])];
        assert!(dname_at(&zone, &name("d.example."), &set, 150));
        assert!(!dname_at(&zone, &name("e.example."), &set, 150));
        assert!(
            !dname_at(&zone, &name("d.example."), &set, 4),
            "RFC 9276: a set above the iteration limit is not hashed"
        );
        let other = [nsec3_at("d.example.", 0, &[Rtype::A, Rtype::RRSIG])];
        assert!(!dname_at(&zone, &name("d.example."), &other, 150));
    }

    /// A two-record NSEC3 chain (the apex and the all-zero hash) whose spans cover every
    /// other hash, with the opt-out flag as given.
    fn optout_zone(zone: &Name<Bytes>, opt_out: bool) -> Vec<(Name<Bytes>, Nsec3<Bytes>)> {
        let (apex_owner, apex_hash) = hashed(zone, zone);
        let record = |next: Vec<u8>, types: &[Rtype]| {
            Nsec3::new(
                Nsec3HashAlgorithm::SHA1,
                u8::from(opt_out),
                0,
                Nsec3Salt::empty(),
                OwnerHash::from_octets(Bytes::from(next)).unwrap(),
                bitmap(types),
            )
        };
        let low = domain::utils::base32::encode_string_hex(&[0u8; 20]).to_ascii_lowercase();
        vec![
            (
                apex_owner,
                record(vec![0u8; 20], &[Rtype::SOA, Rtype::NS, Rtype::RRSIG]),
            ),
            (
                name(&format!("{low}.{zone}")),
                record(apex_hash, &[Rtype::NS]),
            ),
        ]
    }

    #[test]
    fn nsec3_nodata_in_opt_out_span_is_insecure() {
        let zone = name("example.");
        for (opt_out, expected) in [(true, Proof::Insecure), (false, Proof::Missing)] {
            let records = optout_zone(&zone, opt_out);
            let set: Vec<Nsec3Rr<'_>> = records.iter().map(|(o, n)| (o, n)).collect();
            let proof = nsec3_proof(
                &set,
                &zone,
                &name("sub.example."),
                Claim::NoData(Rtype::MX),
                150,
            );
            assert_eq!(proof, expected, "opt-out {opt_out}");
        }
    }
}
