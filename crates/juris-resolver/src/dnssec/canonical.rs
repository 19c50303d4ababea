//! Canonical forms (RFC 4034 §6): names, RDATA and the signed data of an RRset.
//!
//! The RRset is ordered by its canonical RDATA as left-justified octet strings and
//! duplicates are removed (§6.3); owner names are lower-cased, and an RRset expanded from a
//! wildcard is signed under `*.` plus the RRSIG's LABELS rightmost labels (RFC 4035 §5.3.2).

use std::cmp::Ordering;

use bytes::Bytes;
use domain::base::rdata::ComposeRecordData;
use domain::base::{Name, ToName};
use domain::rdata::Rrsig;

use crate::names::{Data, Rr};

/// An RRSIG's data, owned.
pub(crate) type Sig = Rrsig<Bytes, Name<Bytes>>;

/// Labels of `name` not counting the root (RRSIG LABELS semantics), without a leading `*`.
pub(crate) fn rrsig_labels(name: &Name<Bytes>) -> usize {
    let count = name.label_count().saturating_sub(1);
    match name.first().as_slice() {
        b"*" => count.saturating_sub(1),
        _ => count,
    }
}

/// The canonical wire form of a name: uncompressed, lower-cased.
pub(crate) fn canonical_name(name: &impl ToName) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    let _ = name.compose_canonical(&mut out);
    out
}

/// The canonical RDATA of one record (names lower-cased where RFC 4034 §6.2 / RFC 6840 §5.1
/// say so).
pub(crate) fn canonical_rdata(data: &Data) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    let _ = data.compose_canonical_rdata(&mut out);
    out
}

/// RFC 4034 §6.1 canonical order of names.
pub(crate) fn name_order(a: &Name<Bytes>, b: &Name<Bytes>) -> Ordering {
    a.name_cmp(b)
}

/// The owner as signed: the owner itself, or `*.` plus its `labels` rightmost labels when
/// the RRset was expanded from a wildcard. `None` when LABELS exceeds the owner's labels.
pub(crate) fn signed_owner(owner: &Name<Bytes>, labels: u8) -> Option<Vec<u8>> {
    let owner_labels = owner.label_count() - 1;
    let labels = usize::from(labels);
    match labels.cmp(&owner_labels) {
        Ordering::Greater => None,
        Ordering::Equal => Some(canonical_name(owner)),
        Ordering::Less => {
            let suffix = owner
                .iter_suffixes()
                .find(|s| s.label_count() - 1 == labels)?;
            let mut out = vec![1, b'*'];
            out.extend_from_slice(&canonical_name(&suffix));
            Some(out)
        }
    }
}

/// The data an RRSIG signs (RFC 4034 §3.1.8.1): its RDATA without the signature, then every
/// record of the RRset in canonical form and order. `None` when the RRSIG's LABELS does not
/// fit the owner.
pub(crate) fn signed_data(sig: &Sig, rrset: &[&Rr]) -> Option<Vec<u8>> {
    let first = rrset.first()?;
    let owner = signed_owner(first.owner(), sig.labels())?;
    let mut rdatas: Vec<Vec<u8>> = rrset.iter().map(|r| canonical_rdata(r.data())).collect();
    rdatas.sort();
    rdatas.dedup();
    let mut out = Vec::with_capacity(
        64 + rdatas
            .iter()
            .map(|r| r.len() + owner.len() + 10)
            .sum::<usize>(),
    );
    out.extend_from_slice(&sig.type_covered().to_int().to_be_bytes());
    out.push(sig.algorithm().to_int());
    out.push(sig.labels());
    out.extend_from_slice(&sig.original_ttl().as_secs().to_be_bytes());
    out.extend_from_slice(&sig.expiration().into_int().to_be_bytes());
    out.extend_from_slice(&sig.inception().into_int().to_be_bytes());
    out.extend_from_slice(&sig.key_tag().to_be_bytes());
    out.extend_from_slice(&canonical_name(sig.signer_name()));
    let rtype = first.rtype().to_int().to_be_bytes();
    let class = first.class().to_int().to_be_bytes();
    let ttl = sig.original_ttl().as_secs().to_be_bytes();
    for rdata in rdatas {
        let len = u16::try_from(rdata.len()).ok()?;
        out.extend_from_slice(&owner);
        out.extend_from_slice(&rtype);
        out.extend_from_slice(&class);
        out.extend_from_slice(&ttl);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&rdata);
    }
    Some(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // reason: test code.
mod tests {
    use super::*;
    use domain::base::iana::{Class, SecurityAlgorithm};
    use domain::base::{Record, Rtype, Ttl};
    use domain::rdata::dnssec::Timestamp;
    use domain::rdata::{AllRecordData, Mx, A};
    use proptest::prelude::*;

    fn name(text: &str) -> Name<Bytes> {
        Name::bytes_from_str(text).unwrap()
    }

    fn sig(labels: u8) -> Sig {
        Rrsig::new(
            Rtype::MX,
            SecurityAlgorithm::ECDSAP256SHA256,
            labels,
            Ttl::from_secs(3600),
            Timestamp::from(2_000_000_000),
            Timestamp::from(1_600_000_000),
            1,
            name("Example.test."),
            Bytes::new(),
        )
        .unwrap()
    }

    fn mx(owner: &str, ttl: u32, preference: u16, exchange: &str) -> Rr {
        Record::new(
            name(owner),
            Class::IN,
            Ttl::from_secs(ttl),
            AllRecordData::Mx(Mx::new(preference, name(exchange))),
        )
    }

    #[test]
    fn wildcard_owner_is_rebuilt() {
        let owner = name("a.b.example.test.");
        assert_eq!(signed_owner(&owner, 4).unwrap(), canonical_name(&owner));
        assert_eq!(
            signed_owner(&owner, 2).unwrap(),
            canonical_name(&name("*.example.test."))
        );
        assert!(signed_owner(&owner, 5).is_none());
        assert_eq!(rrsig_labels(&name("*.example.test.")), 2);
        assert_eq!(rrsig_labels(&Name::root_bytes()), 0);
    }

    #[test]
    fn rfc4034_canonical_name_order() {
        // RFC 4034 §6.1's example, in order.
        let ordered = [
            "example.",
            "a.example.",
            "yljkjljk.a.example.",
            "Z.a.example.",
            "zABC.a.EXAMPLE.",
            "z.example.",
            "\\001.z.example.",
            "*.z.example.",
            "\\200.z.example.",
        ];
        for pair in ordered.windows(2) {
            assert_eq!(
                name_order(&name(pair[0]), &name(pair[1])),
                Ordering::Less,
                "{} < {}",
                pair[0],
                pair[1]
            );
        }
    }

    prop_compose! {
        fn label()(text in "[a-zA-Z0-9-]{1,10}") -> String { text }
    }

    prop_compose! {
        fn exchange()(labels in proptest::collection::vec(label(), 1..4)) -> String {
            format!("{}.", labels.join("."))
        }
    }

    proptest! {
        /// The signed data does not depend on the order, case, TTL or duplication of the
        /// records received, and it lists each distinct record once, in RDATA order.
        #[test]
        fn rrset_canonical_form(
            records in proptest::collection::vec((any::<u16>(), exchange()), 1..6),
            ttl in any::<u32>(),
            seed in any::<u64>(),
        ) {
            let sig = sig(3);
            let forward: Vec<Rr> = records
                .iter()
                .map(|(p, x)| mx("WWW.example.test.", 300, *p, x))
                .collect();
            let mut shuffled: Vec<Rr> = records
                .iter()
                .map(|(p, x)| mx("www.EXAMPLE.test.", ttl, *p, &x.to_ascii_uppercase()))
                .collect();
            // A duplicate, and a reordering derived from the seed.
            shuffled.push(shuffled[0].clone());
            let n = shuffled.len();
            shuffled.rotate_left((seed as usize) % n);
            if seed & 1 == 1 {
                shuffled.reverse();
            }
            let a: Vec<&Rr> = forward.iter().collect();
            let b: Vec<&Rr> = shuffled.iter().collect();
            let data = signed_data(&sig, &a).unwrap();
            prop_assert_eq!(&data, &signed_data(&sig, &b).unwrap());
            // Records: each distinct RDATA once, ascending.
            let mut distinct: Vec<Vec<u8>> = a.iter().map(|r| canonical_rdata(r.data())).collect();
            distinct.sort();
            distinct.dedup();
            let header = 18 + canonical_name(sig.signer_name()).len();
            let owner = canonical_name(&name("www.example.test."));
            let mut at = header;
            for rdata in &distinct {
                prop_assert_eq!(&data[at..at + owner.len()], &owner[..]);
                at += owner.len();
                prop_assert_eq!(&data[at..at + 2], &15u16.to_be_bytes()[..]);
                prop_assert_eq!(&data[at + 4..at + 8], &3600u32.to_be_bytes()[..], "original TTL");
                let len = usize::from(u16::from_be_bytes([data[at + 8], data[at + 9]]));
                at += 10;
                prop_assert_eq!(&data[at..at + len], &rdata[..]);
                at += len;
            }
            prop_assert_eq!(at, data.len());
        }

        /// Canonical name order is a total order that ignores ASCII case and sorts a name
        /// before every name below it.
        #[test]
        fn canonical_order_is_consistent(
            a in proptest::collection::vec(label(), 0..4),
            b in proptest::collection::vec(label(), 0..4),
            child in label(),
        ) {
            let to_name = |labels: &[String]| {
                if labels.is_empty() { Name::root_bytes() } else { name(&format!("{}.", labels.join("."))) }
            };
            let (x, y) = (to_name(&a), to_name(&b));
            prop_assert_eq!(name_order(&x, &y), name_order(&y, &x).reverse());
            let upper: Vec<String> = a.iter().map(|l| l.to_ascii_uppercase()).collect();
            prop_assert_eq!(name_order(&x, &to_name(&upper)), Ordering::Equal);
            let mut below = vec![child];
            below.extend(a.iter().cloned());
            prop_assert_eq!(name_order(&x, &to_name(&below)), Ordering::Less);
            // Lower-cased canonical wire form agrees on equality.
            prop_assert_eq!(
                name_order(&x, &y) == Ordering::Equal,
                canonical_name(&x) == canonical_name(&y)
            );
        }
    }

    #[test]
    fn a_records_sort_by_address_bytes() {
        let a = |address: &str| -> Rr {
            Record::new(
                name("x.example.test."),
                Class::IN,
                Ttl::from_secs(1),
                AllRecordData::A(A::new(address.parse().unwrap())),
            )
        };
        let records = [a("192.0.2.10"), a("192.0.2.9")];
        let refs: Vec<&Rr> = records.iter().collect();
        let mut sig = sig(3);
        sig = Rrsig::new(
            Rtype::A,
            sig.algorithm(),
            3,
            sig.original_ttl(),
            sig.expiration(),
            sig.inception(),
            1,
            sig.signer_name().clone(),
            Bytes::new(),
        )
        .unwrap();
        let data = signed_data(&sig, &refs).unwrap();
        let tail = &data[data.len() - 4..];
        assert_eq!(
            tail,
            &[192, 0, 2, 10],
            "9 < 10 numerically, but the RDATA bytes 0x09 < 0x0a"
        );
    }
}
