//! CNAME and DNAME records met while chasing answers, kept by owner with their signatures: a
//! later question for the same name (CNAME) or for a name below the owner (DNAME, RFC 6672
//! §3.4 allows caching the synthesis) follows them without asking upstream; the rest of the
//! chain is resolved as usual. Only records a resolution followed are kept (in bailiwick of
//! the server that sent them, as every answer record is).

use std::collections::HashMap;
use std::sync::Mutex;

use bytes::Bytes;
use domain::base::{Name, Rtype, Ttl};

use crate::names::{cname_target, dname_target, lower, replace_suffix, synthesized_cname, Rr};
use crate::resolver::lock;

/// Bound on entries; past it expired entries are dropped, then everything.
pub(crate) const MAX_ENTRIES: usize = 100_000;

#[derive(Debug)]
struct Entry {
    /// The CNAME or DNAME record, then its RRSIGs.
    records: Vec<Rr>,
    /// For a record expanded from a wildcard: the NSEC/NSEC3 records (and RRSIGs) that came
    /// with it proving the owner does not exist (RFC 4035 §5.3.4), for the validator.
    proof: Vec<Rr>,
    expires_at: u64,
}

/// Cached CNAME and DNAME records, keyed by (lower-cased owner, type).
#[derive(Debug)]
pub(crate) struct Redirects {
    /// Seeded foldhash (owners are chosen by the zones answering, as the delegation cache's).
    map: Mutex<HashMap<(Bytes, Rtype), Entry, foldhash::fast::RandomState>>,
    /// Entries kept (`resolver.limits.redirect_entries`).
    max_entries: usize,
}

impl Default for Redirects {
    fn default() -> Self {
        Self::with_max(MAX_ENTRIES)
    }
}

/// A redirection found in the cache: the records to put in the answer and the name to go on
/// with.
pub(crate) struct Followed {
    pub records: Vec<Rr>,
    pub target: Name<Bytes>,
    /// The wildcard proof kept with a CNAME (empty otherwise).
    pub proof: Vec<Rr>,
}

impl Redirects {
    /// A store of at most `max_entries` records.
    pub(crate) fn with_max(max_entries: usize) -> Self {
        Self {
            map: Mutex::default(),
            max_entries: max_entries.max(1),
        }
    }

    /// Keeps `record` (a CNAME or DNAME), its signatures and `proof` (the NSEC/NSEC3 records
    /// of a wildcard expansion) for its TTL (at most `max_ttl`).
    pub(crate) fn remember(
        &self,
        record: &Rr,
        signatures: Vec<Rr>,
        proof: Vec<Rr>,
        max_ttl: u32,
        now: u64,
    ) {
        let rtype = record.rtype();
        if rtype != Rtype::CNAME && rtype != Rtype::DNAME {
            return;
        }
        let ttl = signatures
            .iter()
            .map(|r| r.ttl().as_secs())
            .fold(record.ttl().as_secs(), u32::min)
            .min(max_ttl);
        if ttl == 0 {
            return;
        }
        let mut records = Vec::with_capacity(1 + signatures.len());
        records.push(record.clone());
        records.extend(signatures);
        // Kept beyond the exchange: not as slices of the message they came in (design 0048).
        let records = crate::names::detached(records);
        let proof = crate::names::detached(proof);
        let mut map = lock(&self.map);
        if map.len() >= self.max_entries {
            map.retain(|_, entry| entry.expires_at > now);
            if map.len() >= self.max_entries {
                map.clear();
            }
        }
        map.insert(
            (lower(record.owner()).into_octets(), rtype),
            Entry {
                records,
                proof,
                expires_at: now + u64::from(ttl),
            },
        );
    }

    /// Forgets the redirections whose owner `scope` covers (`juris cache flush`).
    pub(crate) fn flush(&self, scope: crate::cache::FlushScope<'_>) -> usize {
        let mut map = lock(&self.map);
        let before = map.len();
        map.retain(|(owner, _), _| !scope.covers(owner));
        before - map.len()
    }

    /// The cached redirection for a question for `name` of type `qtype`: a CNAME at `name`
    /// (unless CNAMEs are asked for), else a DNAME at the closest owner above it (unless
    /// DNAMEs are asked for), with the CNAME synthesised from it. TTLs are what is left.
    pub(crate) fn follow(&self, name: &Name<Bytes>, qtype: Rtype, now: u64) -> Option<Followed> {
        let map = lock(&self.map);
        if map.is_empty() {
            return None;
        }
        let fresh = |owner: &Name<Bytes>, rtype: Rtype| {
            map.get(&(lower(owner).into_octets(), rtype))
                .filter(|entry| entry.expires_at > now)
                .map(|entry| {
                    let left =
                        Ttl::from_secs(u32::try_from(entry.expires_at - now).unwrap_or(u32::MAX));
                    let mut records = entry.records.clone();
                    for record in &mut records {
                        record.set_ttl(left.min(record.ttl()));
                    }
                    (records, entry.proof.clone())
                })
        };
        if qtype != Rtype::CNAME {
            if let Some((records, proof)) = fresh(name, Rtype::CNAME) {
                let target = lower(cname_target(&records[0])?);
                return Some(Followed {
                    records,
                    target,
                    proof,
                });
            }
        }
        if qtype == Rtype::DNAME {
            return None;
        }
        let (owner, mut records) = name
            .iter_suffixes()
            .skip(1)
            .find_map(|owner| fresh(&owner, Rtype::DNAME).map(|(records, _)| (owner, records)))?;
        let target = lower(&replace_suffix(name, &owner, dname_target(&records[0])?)?);
        let ttl = records[0].ttl();
        records.push(synthesized_cname(name.clone(), ttl, target.clone()));
        Some(Followed {
            records,
            target,
            proof: Vec::new(),
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "test code")]
mod tests {
    use domain::base::iana::Class;
    use domain::base::Record;
    use domain::rdata::{AllRecordData, Cname, Dname};

    use super::*;
    use crate::names::test_name as n;

    #[test]
    fn cnames_and_dnames_are_followed_until_they_expire() {
        let redirects = Redirects::default();
        let cname = Record::new(
            n("www.example.test."),
            Class::IN,
            Ttl::from_secs(300),
            AllRecordData::Cname(Cname::new(n("web.example.net."))),
        );
        let dname = Record::new(
            n("example.com."),
            Class::IN,
            Ttl::from_secs(100),
            AllRecordData::Dname(Dname::new(n("example.net."))),
        );
        redirects.remember(&cname, Vec::new(), Vec::new(), 86_400, 1000);
        redirects.remember(&dname, Vec::new(), Vec::new(), 50, 1000);
        let found = redirects
            .follow(&n("WWW.example.test."), Rtype::A, 1100)
            .unwrap();
        assert_eq!(found.target, n("web.example.net."));
        assert_eq!(found.records[0].ttl().as_secs(), 200);
        assert!(redirects
            .follow(&n("www.example.test."), Rtype::CNAME, 1100)
            .is_none());
        let found = redirects
            .follow(&n("a.b.example.com."), Rtype::A, 1010)
            .unwrap();
        assert_eq!(found.target, n("a.b.example.net."));
        assert_eq!(
            found.records.len(),
            2,
            "the DNAME and the synthesised CNAME"
        );
        assert!(
            redirects
                .follow(&n("example.com."), Rtype::A, 1010)
                .is_none(),
            "not at the owner"
        );
        assert!(
            redirects
                .follow(&n("a.example.com."), Rtype::A, 1050)
                .is_none(),
            "max_ttl"
        );
        assert!(redirects
            .follow(&n("www.example.test."), Rtype::A, 1300)
            .is_none());
    }

    #[test]
    fn the_store_holds_at_most_its_configured_entries() {
        let redirects = Redirects::with_max(3);
        for i in 0..10 {
            let cname = Record::new(
                n(&format!("w{i}.example.test.")),
                Class::IN,
                Ttl::from_secs(300),
                AllRecordData::Cname(Cname::new(n("web.example.net."))),
            );
            redirects.remember(&cname, Vec::new(), Vec::new(), 86_400, 1000);
            assert!(redirects.map.lock().unwrap().len() <= 3);
        }
        // The newest is always kept.
        assert!(redirects
            .follow(&n("w9.example.test."), Rtype::A, 1001)
            .is_some());
    }

    #[test]
    fn a_flush_forgets_the_redirections_it_covers() {
        use crate::cache::FlushScope;
        let redirects = Redirects::default();
        for (owner, target) in [
            ("www.example.test.", "web.example.net."),
            ("a.www.example.test.", "web.example.net."),
            ("www.other.test.", "web.example.net."),
        ] {
            let cname = Record::new(
                n(owner),
                Class::IN,
                Ttl::from_secs(300),
                AllRecordData::Cname(Cname::new(n(target))),
            );
            redirects.remember(&cname, Vec::new(), Vec::new(), 86_400, 1000);
        }
        let follows = |name: &str| redirects.follow(&n(name), Rtype::A, 1001).is_some();
        let apex = lower(&n("www.example.test.")).into_octets();
        assert_eq!(redirects.flush(FlushScope::Name(&apex)), 1);
        assert!(!follows("www.example.test.") && follows("a.www.example.test."));
        assert_eq!(redirects.flush(FlushScope::Subtree(&apex)), 1);
        assert!(!follows("a.www.example.test.") && follows("www.other.test."));
        assert_eq!(redirects.flush(FlushScope::All), 1);
        assert!(!follows("www.other.test."));
    }
}
