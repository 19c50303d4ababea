//! Small helpers on domain names and records shared by the engines.

use bytes::Bytes;
use domain::base::iana::Class;
use domain::base::{Name, Record, Rtype, Ttl};
use domain::rdata::AllRecordData;

/// Record data with uncompressed names, owned.
pub(crate) type Data = AllRecordData<Bytes, Name<Bytes>>;
/// One resource record read from (or destined for) the wire.
pub(crate) type Rr = Record<Name<Bytes>, Data>;

/// `records` with everything they hold copied into one buffer of their own, exactly their
/// size. A record read from an upstream answer shares that answer's buffer (its signature,
/// key, digest, bitmap or text octets are slices of it), so a table that keeps one record
/// keeps the whole message alive: up to 64 KiB for an answer read over TCP, of which the
/// record may be a few dozen bytes. The tables that keep records beyond the exchange (design
/// 0048: followed CNAME/DNAME, referral DS, aggressive NSEC ranges) store them detached, so
/// an entry costs its records, not the message they came in. Records that cannot be written
/// and read back (none that the parser accepted) are returned as they were.
pub(crate) fn detached(records: Vec<Rr>) -> Vec<Rr> {
    use domain::base::name::FlattenInto;
    use domain::base::{ParsedName, ParsedRecord};
    use domain::dep::octseq::Parser;

    if records.is_empty() {
        return records;
    }
    let mut wire: Vec<u8> = Vec::new();
    for record in &records {
        if record.compose(&mut wire).is_err() {
            return records;
        }
    }
    // Exactly the records' size: a `Vec` grown by doubling would keep up to twice that.
    let bytes = Bytes::from(wire.into_boxed_slice());
    let mut parser = Parser::from_ref(&bytes);
    let mut out = Vec::with_capacity(records.len());
    while parser.remaining() > 0 {
        let Ok(parsed) = ParsedRecord::parse(&mut parser) else {
            return records;
        };
        let Ok(record) = parsed.to_any_record::<AllRecordData<Bytes, ParsedName<Bytes>>>() else {
            return records;
        };
        let (class, ttl) = (record.class(), record.ttl());
        let (owner, data) = record.into_owner_and_data();
        out.push(Rr::new(
            owner.flatten_into(),
            class,
            ttl,
            data.flatten_into(),
        ));
    }
    if out.len() == records.len() {
        out
    } else {
        records
    }
}

/// The name lower-cased (ASCII), as used for every key in the resolver's caches.
pub(crate) fn lower(name: &Name<Bytes>) -> Name<Bytes> {
    let slice = name.as_slice();
    if !has_upper(slice) {
        return name.clone();
    }
    let mut bytes = slice.to_vec();
    // Lower-casing ASCII letters in labels cannot change length octets (they are < 64, below
    // b'A'), so the result is still a valid name.
    bytes.make_ascii_lowercase();
    Name::from_octets(Bytes::from(bytes)).unwrap_or_else(|_| name.clone())
}

/// Whether `bytes` holds an ASCII capital: a branch-free pass the compiler vectorises (an
/// early-exit `any` is not; names are almost always lower-case already).
pub(crate) fn has_upper(bytes: &[u8]) -> bool {
    bytes
        .iter()
        .fold(0u8, |seen, &b| seen | u8::from(b.is_ascii_uppercase()))
        != 0
}

/// Where `zone`'s octets start in `name` if `name` is `zone` or below it (case-insensitive).
/// Both are uncompressed wire names, whose length octets (< 64) ASCII case folding leaves
/// alone: `zone` must end `name` at a label boundary. One pass over the bytes, where
/// `domain`'s `ends_with` compares label by label.
fn zone_start(name: &[u8], zone: &[u8]) -> Option<usize> {
    let start = name.len().checked_sub(zone.len())?;
    let mut at = 0;
    while at < start {
        at += usize::from(name[at]) + 1;
    }
    (at == start && name[start..].eq_ignore_ascii_case(zone)).then_some(start)
}

/// Whether `name` is `zone` or below it (case-insensitive).
pub(crate) fn is_at_or_below(name: &Name<Bytes>, zone: &Name<Bytes>) -> bool {
    zone_start(name.as_slice(), zone.as_slice()).is_some()
}

/// Whether `name` is strictly below `zone`.
pub(crate) fn is_below(name: &Name<Bytes>, zone: &Name<Bytes>) -> bool {
    zone_start(name.as_slice(), zone.as_slice()).is_some_and(|start| start > 0)
}

/// Case-insensitive name equality (uncompressed wire names: the octets, ASCII case folded).
pub(crate) fn same_name(a: &Name<Bytes>, b: &Name<Bytes>) -> bool {
    a.as_slice().eq_ignore_ascii_case(b.as_slice())
}

/// The suffix of `name` with `labels` labels (counting the root label), if `name` has that many.
pub(crate) fn suffix_with_labels(name: &Name<Bytes>, labels: usize) -> Option<Name<Bytes>> {
    name.iter_suffixes().find(|s| s.label_count() == labels)
}

/// The type an RRSIG record covers, if `record` is an RRSIG.
pub(crate) fn rrsig_covers(record: &Rr) -> Option<Rtype> {
    match record.data() {
        AllRecordData::Rrsig(sig) => Some(sig.type_covered()),
        _ => None,
    }
}

/// The NSEC and NSEC3 records of `records` with their RRSIGs (a denial or wildcard proof).
pub(crate) fn nsec_records(records: &[Rr]) -> Vec<Rr> {
    records
        .iter()
        .filter(|r| {
            matches!(r.rtype(), Rtype::NSEC | Rtype::NSEC3)
                || rrsig_covers(r).is_some_and(|t| matches!(t, Rtype::NSEC | Rtype::NSEC3))
        })
        .cloned()
        .collect()
}

/// Whether the record is DNSSEC material handed only to DO=1 clients.
pub(crate) fn is_dnssec_type(rtype: Rtype) -> bool {
    matches!(
        rtype,
        Rtype::RRSIG | Rtype::NSEC | Rtype::NSEC3 | Rtype::DNSKEY | Rtype::DS
    )
}

/// The CNAME target if the record is a CNAME.
pub(crate) fn cname_target(record: &Rr) -> Option<&Name<Bytes>> {
    match record.data() {
        AllRecordData::Cname(c) => Some(c.cname()),
        _ => None,
    }
}

/// The DNAME target if the record is a DNAME.
pub(crate) fn dname_target(record: &Rr) -> Option<&Name<Bytes>> {
    match record.data() {
        AllRecordData::Dname(d) => Some(d.dname()),
        _ => None,
    }
}

/// A CNAME record built by us (DNAME synthesis, RFC 6672 §3.4).
pub(crate) fn synthesized_cname(owner: Name<Bytes>, ttl: Ttl, target: Name<Bytes>) -> Rr {
    Record::new(
        owner,
        Class::IN,
        ttl,
        AllRecordData::Cname(domain::rdata::Cname::new(target)),
    )
}

/// `name` with the suffix `old` replaced by `new` (DNAME substitution); `None` if the result
/// would be longer than 255 octets or `name` is not below `old`.
pub(crate) fn replace_suffix(
    name: &Name<Bytes>,
    old: &Name<Bytes>,
    new: &Name<Bytes>,
) -> Option<Name<Bytes>> {
    if !is_below(name, old) {
        return None;
    }
    let keep = name.as_slice().len() - old.as_slice().len();
    let mut bytes = name.as_slice()[..keep].to_vec();
    bytes.extend_from_slice(new.as_slice());
    if bytes.len() > 255 {
        return None;
    }
    Name::from_octets(Bytes::from(bytes)).ok()
}

/// A name from its text, for unit tests.
#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "test code")]
pub(crate) fn test_name(text: &str) -> Name<Bytes> {
    Name::bytes_from_str(text).unwrap()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "test code")]
mod tests {
    use super::*;
    use domain::base::ToName;

    fn n(s: &str) -> Name<Bytes> {
        Name::bytes_from_str(s).unwrap()
    }

    #[test]
    fn suffix_helpers() {
        assert!(is_below(&n("a.b.test."), &n("test.")));
        assert!(!is_below(&n("test."), &n("test.")));
        assert!(is_at_or_below(&n("TEST."), &n("test.")));
        assert!(is_below(&n("test."), &Name::root_bytes()));
        assert_eq!(suffix_with_labels(&n("a.b.test."), 2), Some(n("test.")));
        assert_eq!(lower(&n("WwW.Test.")).as_slice(), b"\x03www\x04test\x00");
        assert_eq!(
            replace_suffix(&n("x.old.test."), &n("old.test."), &n("new.example.")),
            Some(n("x.new.example."))
        );
        assert_eq!(
            replace_suffix(&n("old.test."), &n("old.test."), &n("n.")),
            None
        );
    }

    #[test]
    fn byte_wise_suffix_and_equality_agree_with_domains_label_wise_ones() {
        let names = [
            ".",
            "test.",
            "TEST.",
            "a.test.",
            "A.Test.",
            "atest.",
            "b.atest.",
            "test.a.",
            "a.b.test.",
            "xa.b.test.",
            "b.test.",
            "B.TEST.",
            "\\.test.",
            "a\\.test.",
            "a.b.c.d.e.",
            "d.e.",
            "cd.e.",
            "@.test.",
            "`.test.",
            "[.test.",
            "{.test.",
        ];
        for a in names {
            for b in names {
                let (a, b) = (n(a), n(b));
                assert_eq!(is_at_or_below(&a, &b), a.ends_with(&b), "{a} under {b}");
                assert_eq!(
                    is_below(&a, &b),
                    a.label_count() > b.label_count() && a.ends_with(&b),
                    "{a} strictly under {b}"
                );
                assert_eq!(same_name(&a, &b), a.name_eq(&b), "{a} = {b}");
            }
            assert_eq!(
                has_upper(n(a).as_slice()),
                n(a).as_slice().iter().any(u8::is_ascii_uppercase)
            );
        }
    }

    /// Design 0048: a detached record holds nothing of the (large) message buffer its octets
    /// were sliced from, and is equal to the record it was.
    #[test]
    fn detached_records_own_their_octets_and_are_equal() {
        use domain::base::iana::SecurityAlgorithm;
        use domain::rdata::dnssec::Timestamp;
        use domain::rdata::Rrsig;

        // A 64 KiB "message" whose bytes 100..164 are a signature.
        let message = Bytes::from(vec![7u8; 65_535]);
        let signature = message.slice(100..164);
        let rrsig = Rrsig::new(
            Rtype::A,
            SecurityAlgorithm::ECDSAP256SHA256,
            2,
            Ttl::from_secs(300),
            Timestamp::from(2_000_000_000),
            Timestamp::from(900),
            1,
            n("example."),
            signature,
        )
        .unwrap();
        let txt = domain::rdata::Txt::from_octets(message.slice(1000..1008)).unwrap();
        let records = vec![
            Record::new(
                n("www.example."),
                Class::IN,
                Ttl::from_secs(300),
                AllRecordData::Rrsig(rrsig),
            ),
            Record::new(
                n("www.example."),
                Class::IN,
                Ttl::from_secs(60),
                AllRecordData::Txt(txt),
            ),
        ];
        let kept = detached(records.clone());
        assert_eq!(kept, records);
        let inside = |p: *const u8| message.as_ptr_range().contains(&p);
        match kept[0].data() {
            AllRecordData::Rrsig(sig) => assert!(!inside(sig.signature().as_ptr())),
            other => panic!("{other:?}"),
        }
        match (kept[1].data(), records[1].data()) {
            (AllRecordData::Txt(kept), AllRecordData::Txt(original)) => {
                assert!(inside(original.as_flat_slice().unwrap().as_ptr()));
                assert!(!inside(kept.as_flat_slice().unwrap().as_ptr()));
            }
            other => panic!("{other:?}"),
        }
        assert!(detached(Vec::new()).is_empty());
    }
}

/// Record builders for unit tests.
#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "test code")]
pub(crate) mod testing {
    use bytes::Bytes;
    use domain::base::iana::Class;
    use domain::base::{Name, Record, Ttl};
    use domain::rdata::AllRecordData;

    use super::Rr;

    /// A name from its text form.
    pub(crate) fn name(text: &str) -> Name<Bytes> {
        Name::bytes_from_str(text).unwrap()
    }

    /// An IN record.
    pub(crate) fn record(owner: &str, ttl: u32, data: AllRecordData<Bytes, Name<Bytes>>) -> Rr {
        Record::new(name(owner), Class::IN, Ttl::from_secs(ttl), data)
    }

    /// An SOA record at `zone` with TTL `ttl`, every timer and the negative TTL `minimum`.
    pub(crate) fn soa(zone: &str, ttl: u32, minimum: u32) -> Rr {
        let timer = domain::base::Ttl::from_secs(minimum);
        record(
            zone,
            ttl,
            AllRecordData::Soa(domain::rdata::Soa::new(
                name("ns.test."),
                name("h.test."),
                domain::base::Serial(1),
                timer,
                timer,
                timer,
                timer,
            )),
        )
    }
}
