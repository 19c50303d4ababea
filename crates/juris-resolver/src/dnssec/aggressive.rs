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
//!
//! Bounded twice: by counts (zones, ranges and wildcard expansions per zone, design 0048)
//! and by bytes (`resolver.limits.aggressive_nsec_bytes`, design 0052): every kept set is
//! accounted by [`set_bytes`], and past the budget the zones least recently inserted into
//! or answered from are dropped whole.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
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

/// Bound on zones remembered; past it the least recently used zone is dropped.
pub(crate) const MAX_ZONES: usize = 10_000;
/// Default bound on NSEC/NSEC3 records kept per zone (the oldest go first;
/// `resolver.limits.aggressive_nsec_ranges`).
pub(crate) const MAX_NSECS_PER_ZONE: usize = 256;
/// Default bound on wildcard expansions kept per zone (the oldest go first;
/// `resolver.limits.aggressive_nsec_wildcards`).
pub(crate) const MAX_WILDCARDS_PER_ZONE: usize = 32;
/// Default bound on the bytes of the whole store (`resolver.limits.aggressive_nsec_bytes`):
/// half the default answer cache (`cache.size`, 64 MiB), ~38,000 typical ranges (design 0052).
pub(crate) const MAX_BYTES: usize = 32 << 20;

#[derive(Debug, Default)]
struct ZoneNsecs {
    /// The SOA and its RRSIGs (empty until a negative answer brought one).
    soa: Vec<Rr>,
    /// Each NSEC or NSEC3 with its RRSIGs, and when it expires.
    nsecs: Vec<(Vec<Rr>, u64)>,
    /// Wildcard expansions seen in secure answers.
    wildcards: Vec<Wildcard>,
    /// What the entry holds by [`set_bytes`]: [`ZONE_BYTES`], the SOA, every range and
    /// every wildcard expansion.
    bytes: usize,
    /// The last time (a [`Store::tick`]) it was inserted into or answered from: its key in
    /// [`Store::recency`].
    used: u64,
}

impl ZoneNsecs {
    /// The bytes of its records by [`set_bytes`] (all of [`ZoneNsecs::bytes`] but
    /// [`ZONE_BYTES`]): what taking them out frees.
    fn records_bytes(&self) -> usize {
        set_bytes(&self.soa)
            + self
                .nsecs
                .iter()
                .map(|(set, _)| set_bytes(set))
                .sum::<usize>()
            + self.wildcards.iter().map(Wildcard::bytes).sum::<usize>()
    }
}

/// The zones, their order of use and their bytes, under one lock.
#[derive(Debug, Default)]
struct Store {
    zones: HashMap<Name<Bytes>, ZoneNsecs>,
    /// The zones by [`ZoneNsecs::used`], least recently used first: the eviction order.
    recency: BTreeMap<u64, Name<Bytes>>,
    /// The sum of the zones' [`ZoneNsecs::bytes`].
    bytes: usize,
    /// A counter for [`ZoneNsecs::used`] (not a time: two uses in one second are ordered).
    tick: u64,
}

impl Store {
    /// Marks `zone` as just used: it goes last in the eviction order. O(log zones).
    fn touch(&mut self, zone: &Name<Bytes>) {
        let Some(entry) = self.zones.get_mut(zone) else {
            return;
        };
        self.recency.remove(&entry.used);
        self.tick += 1;
        entry.used = self.tick;
        self.recency.insert(self.tick, zone.clone());
    }

    /// Takes `zone` out, with its bytes.
    fn remove(&mut self, zone: &Name<Bytes>) -> Option<ZoneNsecs> {
        let entry = self.zones.remove(zone)?;
        self.recency.remove(&entry.used);
        self.bytes -= entry.bytes;
        Some(entry)
    }

    /// Takes out the least recently used zone, unless it is `keep`.
    fn remove_oldest(&mut self, keep: &Name<Bytes>) -> Option<ZoneNsecs> {
        let (_, oldest) = self.recency.first_key_value()?;
        if oldest == keep {
            return None;
        }
        let oldest = oldest.clone();
        self.remove(&oldest)
    }
}

/// What one zone entry costs besides its records: its slot in the map (key and value, with
/// the table's 8/7 load slack), its place in [`Store::recency`] (a B-tree entry, counted
/// twice for the nodes' slack) and its key's own buffer (a name, rounded up).
const ZONE_BYTES: usize =
    size_of::<(Name<Bytes>, ZoneNsecs)>() * 8 / 7 + 2 * size_of::<(u64, Name<Bytes>)>() + 64;

/// Allocator rounding and bookkeeping counted per heap block (glibc: 8–16 bytes a chunk;
/// mimalloc, design 0049: size classes about 1/8 apart, so a few bytes on these small blocks).
const BLOCK: usize = 16;

/// The heap bytes one kept record set costs, as [`crate::names::detached`] lays it out (the
/// one estimate every count of the store goes through, design 0052):
/// - per set: its `Vec` (a slot of `size_of::<Rr>()` per record) and its place in the
///   zone's own `Vec` (an `(Vec, u64)` slot, doubled for the growth slack), one block;
/// - the set's wire form, one buffer the records' octets (signature, bitmap, key, ...)
///   share: every record's owner, 10 bytes of type/class/TTL/length and its data; plus the
///   buffer's shared header (32 bytes), one block;
/// - each name again (the owner and the names in the data: next name, signer, target),
///   since a name is flattened into a buffer of its own, one block each.
pub(crate) fn set_bytes(records: &[Rr]) -> usize {
    use domain::base::rdata::ComposeRecordData;
    if records.is_empty() {
        return 0;
    }
    let mut bytes = size_of_val(records) + 2 * size_of::<(Vec<Rr>, u64)>() + BLOCK;
    bytes += 32 + BLOCK;
    for record in records {
        let owner = record.owner().as_slice().len();
        let data = usize::from(record.data().rdlen(false).unwrap_or(u16::MAX));
        bytes += owner + 10 + data;
        bytes += owner + BLOCK + data_names(record.data());
    }
    bytes
}

/// The heap bytes of the names inside `data` that get buffers of their own (with a block
/// each), for the types the store keeps: NSEC, RRSIG, SOA and a wildcard's CNAME chain.
fn data_names(data: &crate::names::Data) -> usize {
    let name = |n: &Name<Bytes>| n.as_slice().len() + BLOCK;
    match data {
        AllRecordData::Nsec(nsec) => name(nsec.next_name()),
        AllRecordData::Rrsig(sig) => name(sig.signer_name()),
        AllRecordData::Soa(soa) => name(soa.mname()) + name(soa.rname()),
        AllRecordData::Cname(cname) => name(cname.cname()),
        AllRecordData::Dname(dname) => name(dname.dname()),
        AllRecordData::Ns(ns) => name(ns.nsdname()),
        AllRecordData::Ptr(ptr) => name(ptr.ptrdname()),
        AllRecordData::Mx(mx) => name(mx.exchange()),
        AllRecordData::Srv(srv) => name(srv.target()),
        _ => 0,
    }
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

impl Wildcard {
    /// Its heap bytes: the struct, the encloser's buffer and both record sets ([`set_bytes`]).
    fn bytes(&self) -> usize {
        size_of::<Self>()
            + self.encloser.as_slice().len()
            + BLOCK
            + set_bytes(&self.rrset)
            + set_bytes(&self.tail)
    }
}

/// The validated NSEC/NSEC3 ranges and wildcard expansions of each zone.
#[derive(Debug)]
pub(crate) struct AggressiveNsec {
    store: Mutex<Store>,
    /// Zones kept (`resolver.limits.aggressive_nsec_zones`).
    max_zones: usize,
    /// NSEC/NSEC3 record sets kept per zone (`resolver.limits.aggressive_nsec_ranges`).
    max_ranges: usize,
    /// Wildcard expansions kept per zone (`resolver.limits.aggressive_nsec_wildcards`).
    max_wildcards: usize,
    /// Bytes kept in all, by [`set_bytes`] (`resolver.limits.aggressive_nsec_bytes`).
    max_bytes: usize,
    /// Zones dropped, or cut down, to stay within `max_bytes`
    /// (`juris_resolver_limit_hits_total{limit="aggressive_nsec_bytes"}`).
    byte_evictions: AtomicU64,
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
            store: Mutex::default(),
            max_zones: max_zones.max(1),
            max_ranges: max_ranges.max(1),
            max_wildcards: max_wildcards.max(1),
            max_bytes: MAX_BYTES,
            byte_evictions: AtomicU64::new(0),
        }
    }

    /// The same store holding at most `max_bytes` bytes by [`set_bytes`].
    pub(crate) fn with_max_bytes(mut self, max_bytes: usize) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    /// Zones dropped, or cut down, to stay within the bytes since start.
    pub(crate) fn byte_evictions(&self) -> u64 {
        self.byte_evictions.load(Ordering::Relaxed)
    }

    /// Zones kept, NSEC/NSEC3 record sets and wildcard expansions in all (for the bound
    /// tests and the memory inventory, design 0048).
    #[cfg(test)]
    pub(crate) fn counts(&self) -> (usize, usize, usize) {
        let store = lock(&self.store);
        let ranges = store.zones.values().map(|z| z.nsecs.len()).sum();
        let wildcards = store.zones.values().map(|z| z.wildcards.len()).sum();
        (store.zones.len(), ranges, wildcards)
    }

    /// The bytes accounted, and the same summed again from every kept set (the two must
    /// agree: the tests check the bookkeeping with it).
    #[cfg(test)]
    pub(crate) fn bytes(&self) -> (usize, usize) {
        let store = lock(&self.store);
        let recount = store
            .zones
            .values()
            .map(|z| ZONE_BYTES + z.records_bytes())
            .sum();
        (store.bytes, recount)
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
        let mut store = lock(&self.store);
        match scope {
            FlushScope::All => *store = Store::default(),
            FlushScope::Name(name) | FlushScope::Subtree(name) => {
                let gone: Vec<Name<Bytes>> = store
                    .zones
                    .keys()
                    .filter(|zone| {
                        let zone = lower(zone);
                        scope.covers(zone.as_slice()) || is_at_or_below(name, zone.as_slice())
                    })
                    .cloned()
                    .collect();
                for zone in gone {
                    store.remove(&zone);
                }
            }
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
        let soa =
            soa.map(|soa| crate::names::detached(of(&outcome.authority, soa.owner(), Rtype::SOA)));
        // What leaves the store is dropped after the lock is released.
        let mut dropped: Vec<ZoneNsecs> = Vec::new();
        let mut guard = lock(&self.store);
        let store = &mut *guard;
        if store.zones.len() >= self.max_zones && !store.zones.contains_key(&zone) {
            dropped.extend(store.remove_oldest(&zone));
        }
        let entry = store
            .zones
            .entry(zone.clone())
            .or_insert_with(|| ZoneNsecs {
                bytes: ZONE_BYTES,
                ..ZoneNsecs::default()
            });
        // A new zone (never touched) is not in `store.bytes` yet: all its bytes are added below.
        let before = if entry.used == 0 { 0 } else { entry.bytes };
        let mut gone = ZoneNsecs::default();
        if let Some(soa) = soa {
            entry.bytes += set_bytes(&soa);
            gone.soa = std::mem::replace(&mut entry.soa, soa);
        }
        gone.nsecs = entry
            .nsecs
            .extract_if(.., |(set, until)| {
                *until <= now
                    || nsecs.iter().any(|(new, _)| {
                        same_name(new[0].owner(), set[0].owner())
                            && new[0].rtype() == set[0].rtype()
                    })
            })
            .collect();
        entry.bytes += nsecs.iter().map(|(set, _)| set_bytes(set)).sum::<usize>();
        entry.nsecs.extend(nsecs);
        let excess = entry.nsecs.len().saturating_sub(self.max_ranges);
        gone.nsecs.extend(entry.nsecs.drain(..excess));
        if let Some(wildcard) = wildcard {
            gone.wildcards = entry
                .wildcards
                .extract_if(.., |w| {
                    w.until <= now
                        || (w.encloser == wildcard.encloser
                            && w.rtype == wildcard.rtype
                            && w.qtype == wildcard.qtype)
                })
                .collect();
            entry.bytes += wildcard.bytes();
            entry.wildcards.push(wildcard);
            let excess = entry.wildcards.len().saturating_sub(self.max_wildcards);
            gone.wildcards.extend(entry.wildcards.drain(..excess));
        }
        entry.bytes -= gone.records_bytes();
        store.bytes = store.bytes - before + entry.bytes;
        dropped.push(gone);
        store.touch(&zone);
        // Over the budget: the least recently used zones go whole (each zone once, so the
        // work is amortised over the inserts that filled it)...
        let mut evictions = 0;
        while store.bytes > self.max_bytes {
            let Some(oldest) = store.remove_oldest(&zone) else {
                break;
            };
            dropped.push(oldest);
            evictions += 1;
        }
        // ...and when this zone alone is over it, its oldest ranges and expansions, or the
        // whole zone if even its SOA does not fit.
        if store.bytes > self.max_bytes {
            evictions += 1;
            if let Some(entry) = store.zones.get_mut(&zone) {
                let mut over = store.bytes - self.max_bytes;
                let mut gone = ZoneNsecs::default();
                let ranges = entry
                    .nsecs
                    .iter()
                    .take_while(|(set, _)| {
                        let fits = over == 0;
                        over = over.saturating_sub(set_bytes(set));
                        !fits
                    })
                    .count();
                gone.nsecs.extend(entry.nsecs.drain(..ranges));
                let wildcards = entry
                    .wildcards
                    .iter()
                    .take_while(|w| {
                        let fits = over == 0;
                        over = over.saturating_sub(w.bytes());
                        !fits
                    })
                    .count();
                gone.wildcards.extend(entry.wildcards.drain(..wildcards));
                let freed = gone.records_bytes();
                entry.bytes -= freed;
                store.bytes -= freed;
                dropped.push(gone);
            }
            if store.bytes > self.max_bytes {
                dropped.extend(store.remove(&zone));
            }
        }
        drop(guard);
        if evictions > 0 {
            self.byte_evictions.fetch_add(evictions, Ordering::Relaxed);
        }
        drop(dropped);
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
        let mut store = lock(&self.store);
        // DS lives on the parent side of a cut: the child's own NSEC chain says nothing of it.
        let skip = usize::from(qtype == Rtype::DS);
        let (zone_name, zone) = qname.iter_suffixes().skip(skip).find_map(|suffix| {
            let suffix = suffix.to_name::<Bytes>();
            store.zones.get(&suffix).map(|z| (suffix, z))
        })?;
        let outcome = Self::from_zone(zone, &zone_name, qname, qtype, now, max_iterations);
        if outcome.is_some() {
            // Answered from: it goes last in the eviction order.
            store.touch(&zone_name);
        }
        outcome
    }

    /// [`Self::synthesise`] from the records of `zone`, the closest zone above `qname` kept.
    fn from_zone(
        zone: &ZoneNsecs,
        zone_name: &Name<Bytes>,
        qname: &Name<Bytes>,
        qtype: Rtype,
        now: u64,
        max_iterations: u16,
    ) -> Option<Outcome> {
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
                zone_name,
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
                    nsec3_next_closer_cover(&nsec3s, zone_name, qname, &w.encloser, max_iterations)
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

    /// Design 0052: many zones, each handing out ranges, past `aggressive_nsec_bytes`. The
    /// accounted bytes never go over the budget (without eviction they would reach 200
    /// zones × 10 ranges ≈ 1.8 MB), the bookkeeping matches a recount of every kept set, the
    /// zones least recently inserted into go first, a zone answered from stays, and the zone
    /// just inserted into answers.
    #[test]
    fn many_zones_past_the_byte_budget_stay_within_it_least_recently_used_first() {
        let budget = 64 << 10;
        let store = AggressiveNsec::default().with_max_bytes(budget);
        let nodata = |store: &AggressiveNsec, qname: &str| {
            store
                .synthesise(&name(qname), Rtype::MX, 1010, 150)
                .is_some_and(|o| o.rcode == Rcode::NOERROR)
        };
        for i in 0..10 {
            store.remember(Rtype::A, &negative_from("used.test.", i), 1000);
        }
        for zone in 0..200 {
            let zone = format!("z{zone}.test.");
            for i in 0..10 {
                store.remember(Rtype::A, &negative_from(&zone, i), 1000);
                let (accounted, recount) = store.bytes();
                assert_eq!(accounted, recount, "the bookkeeping drifted at {zone} {i}");
                assert!(accounted <= budget, "{accounted} bytes at {zone} {i}");
            }
            // The zone just filled answers; so does the one its clients keep asking.
            assert!(nodata(&store, &format!("n9.{zone}")), "{zone}");
            assert!(nodata(&store, "n0.used.test."), "after {zone}");
        }
        assert!(!nodata(&store, "n9.z0.test."), "the oldest zone went first");
        let (zones, ranges, _) = store.counts();
        assert!(
            zones > 5 && ranges > 50,
            "{zones} zones, {ranges} ranges kept"
        );
        assert!(store.byte_evictions() >= 150, "{}", store.byte_evictions());
        // Replaced, expired and flushed ranges leave the count exact.
        store.remember(Rtype::A, &negative_from("z199.test.", 9), 1000);
        store.remember(Rtype::A, &negative_from("z199.test.", 10), 5000);
        store.flush(FlushScope::Name(
            &lower(&name("x.z198.test.")).into_octets(),
        ));
        let (accounted, recount) = store.bytes();
        assert_eq!(accounted, recount);
        store.flush(FlushScope::All);
        assert_eq!(store.bytes(), (0, 0));
    }

    /// Design 0052: one zone alone over the budget keeps its newest ranges within it; a
    /// budget below even one zone's SOA keeps nothing rather than going over.
    #[test]
    fn one_zone_over_the_byte_budget_keeps_its_newest_ranges() {
        let one = AggressiveNsec::default();
        one.remember(Rtype::A, &negative_from("example.", 0), 1000);
        let (first, _) = one.bytes();
        let budget = first * 4;
        let store = AggressiveNsec::default().with_max_bytes(budget);
        for i in 0..50 {
            store.remember(Rtype::A, &negative_from("example.", i), 1000);
            let (accounted, recount) = store.bytes();
            assert_eq!(accounted, recount);
            assert!(accounted <= budget, "{accounted} of {budget} at {i}");
        }
        let (_, ranges, _) = store.counts();
        assert!((2..50).contains(&ranges), "{ranges} ranges");
        assert!(store
            .synthesise(&name("n49.example."), Rtype::MX, 1010, 150)
            .is_some());
        assert!(store
            .synthesise(&name("n0.example."), Rtype::MX, 1010, 150)
            .is_none());
        let tiny = AggressiveNsec::default().with_max_bytes(100);
        tiny.remember(Rtype::A, &negative_from("example.", 0), 1000);
        assert_eq!(tiny.bytes(), (0, 0));
        assert_eq!(tiny.counts(), (0, 0, 0));
    }

    /// The estimate counts what a set holds: longer names and larger signatures cost more,
    /// and a typical NSEC with its RRSIG lands near the ~850 bytes design 0052 measured.
    #[test]
    fn the_byte_estimate_grows_with_names_and_signatures() {
        let short = vec![
            nsec("a.example.", "b.example.", &[Rtype::A, Rtype::NSEC]),
            rrsig("a.example.", Rtype::NSEC, 2),
        ];
        let long_name = format!("{}.example.", "x".repeat(60));
        let long = vec![
            nsec(&long_name, "b.example.", &[Rtype::A, Rtype::NSEC]),
            rrsig(&long_name, Rtype::NSEC, 2),
        ];
        assert_eq!(set_bytes(&[]), 0);
        assert!(set_bytes(&long) > set_bytes(&short) + 2 * 60);
        assert!(
            (700..1000).contains(&set_bytes(&short)),
            "{}",
            set_bytes(&short)
        );
    }

    /// Design 0052: the budget given to the validator (from `resolver.limits`) is the store's,
    /// and its evictions reach the count `Resolver::limit_hits` reports.
    #[test]
    fn the_validator_passes_the_byte_budget_on_and_reports_the_evictions() {
        use crate::dnssec::{Security, TrustAnchors, Validator, ValidatorConfig};
        let clock: crate::clock::SharedClock =
            std::sync::Arc::new(crate::clock::ManualClock::new(1000));
        let validator = Validator::new(ValidatorConfig::default(), TrustAnchors::default(), clock)
            .with_limits(100, (10_000, 256, 32, 64 << 10));
        assert_eq!(validator.aggressive_evictions(), 0);
        for zone in 0..100 {
            let zone = format!("z{zone}.test.");
            for i in 0..10 {
                validator.remember_denial(Rtype::A, &negative_from(&zone, i), &Security::Secure);
            }
        }
        assert!(
            validator.aggressive_evictions() >= 50,
            "{}",
            validator.aggressive_evictions()
        );
    }
}
