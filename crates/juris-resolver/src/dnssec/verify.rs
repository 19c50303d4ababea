//! RRSIG checks (RFC 4035 §5.3) and DS → DNSKEY matching (§5.2), with the KeyTrap limits.
//!
//! The cryptography is `domain`'s (`crypto::common`, ring backend): digests through
//! `DigestBuilder`, signatures through `PublicKey::from_dnskey` + `verify`. Algorithms the
//! backend lacks are verified by `legacy` (DSA, RSA keys under 1024 bits) or unsupported (Ed448,
//! GOST), never bogus.

use bytes::Bytes;
use domain::base::iana::{DigestAlgorithm, SecurityAlgorithm};
use domain::base::{Name, Rtype, ToName};
use domain::crypto::common::{DigestBuilder, DigestType, PublicKey};
use domain::rdata::{Dnskey, Ds};

use super::canonical::{canonical_name, signed_data, Sig};
use super::{BogusReason, Failure};
use crate::names::Rr;

/// Cap on keys sharing one RRSIG's key tag and algorithm that are tried (KeyTrap,
/// CVE-2023-50387): more colliding keys than this make the RRset bogus.
pub(crate) const MAX_KEY_COLLISIONS: usize = 4;
/// Cap on signature verifications for one RRset.
pub(crate) const MAX_VERIFICATIONS_PER_RRSET: u32 = 8;
/// Cap on signature verifications for one client query (every RRset and key set it needs).
pub(crate) const MAX_VERIFICATIONS_PER_QUERY: u32 = 64;
/// Cap on NSEC3 hash computations for one denial (CVE-2023-50868).
pub(crate) const MAX_NSEC3_HASHES_PER_DENIAL: u32 = 32;

/// Work spent validating one client query.
#[derive(Debug, Default)]
pub(crate) struct Budget {
    pub verifications: u32,
}

impl Budget {
    /// Whether the per-query verification cap is spent (no point validating again).
    pub(crate) fn exhausted(&self) -> bool {
        self.verifications >= MAX_VERIFICATIONS_PER_QUERY
    }
}

/// Whether juris verifies this algorithm: `domain`'s ring backend (RFC 8624 §3.1 MUSTs and
/// MAYs it has) or the RustCrypto fallback for DSA (`legacy`).
pub(crate) fn algorithm_supported(algorithm: SecurityAlgorithm) -> bool {
    matches!(algorithm.to_int(), 5 | 7 | 8 | 10 | 13 | 14 | 15)
        || super::legacy::algorithm_supported(algorithm.to_int())
}

/// Whether the DS digest type can be computed.
pub(crate) fn digest_supported(digest: DigestAlgorithm) -> bool {
    matches!(digest.to_int(), 1 | 2 | 4)
}

/// The DS digest of `key` at `owner` (RFC 4034 §5.1.4), if the digest type is supported.
pub(crate) fn ds_digest(
    owner: &Name<Bytes>,
    key: &Dnskey<Bytes>,
    digest: DigestAlgorithm,
) -> Option<Vec<u8>> {
    let kind = match digest.to_int() {
        1 => DigestType::Sha1,
        2 => DigestType::Sha256,
        4 => DigestType::Sha384,
        _ => return None,
    };
    let mut builder = DigestBuilder::new(kind);
    builder.update(&canonical_name(owner));
    builder.update(&key.flags().to_be_bytes());
    builder.update(&[key.protocol(), key.algorithm().to_int()]);
    builder.update(key.public_key().as_ref());
    Some(builder.finish().as_ref().to_vec())
}

/// Whether `key` (at `owner`) is the key `ds` describes.
pub(crate) fn ds_matches(owner: &Name<Bytes>, ds: &Ds<Bytes>, key: &Dnskey<Bytes>) -> bool {
    ds.key_tag() == key.key_tag()
        && ds.algorithm() == key.algorithm()
        && ds_digest(owner, key, ds.digest_type()).is_some_and(|d| d == ds.digest().as_ref())
}

/// The usable DS records of a set: supported algorithm and digest, and (RFC 4509 §3) only the
/// SHA-256 or stronger ones when those exist beside SHA-1.
pub(crate) fn usable_ds(set: &[Ds<Bytes>]) -> Vec<&Ds<Bytes>> {
    let usable: Vec<&Ds<Bytes>> = set
        .iter()
        .filter(|d| algorithm_supported(d.algorithm()) && digest_supported(d.digest_type()))
        .collect();
    if usable.iter().any(|d| d.digest_type().to_int() != 1) {
        usable
            .into_iter()
            .filter(|d| d.digest_type().to_int() != 1)
            .collect()
    } else {
        usable
    }
}

/// Serial-number comparison of RRSIG times (RFC 4034 §3.1.5, RFC 1982).
fn not_before(now: u32, time: u32) -> bool {
    (now.wrapping_sub(time) as i32) >= 0
}

/// Checks an RRset against its RRSIGs with the keys of `zone`: `Ok(labels)` with the LABELS of
/// the RRSIG that verified (less than the owner's labels for a wildcard expansion), or why
/// not.
pub(crate) fn verify_rrset(
    rrset: &[&Rr],
    sigs: &[&Sig],
    zone: &Name<Bytes>,
    keys: &[Dnskey<Bytes>],
    now: u32,
    budget: &mut Budget,
) -> Result<u8, Failure> {
    let Some(first) = rrset.first() else {
        return Err(Failure::bogus(BogusReason::Bogus, "empty RRset"));
    };
    let owner = first.owner();
    let rtype = first.rtype();
    let mut verifications = 0u32;
    // The most telling failure seen so far (a later, more specific one replaces a vaguer one).
    let mut failure: Option<Failure> = None;
    let note = |failure: &mut Option<Failure>, f: Failure| {
        if failure.as_ref().is_none_or(|old| f.rank() > old.rank()) {
            *failure = Some(f);
        }
    };
    if sigs.is_empty() {
        return Err(Failure::bogus(BogusReason::RrsigsMissing, "RRSIGs missing"));
    }
    for sig in sigs {
        if sig.type_covered() != rtype
            || !sig.signer_name().name_eq(zone)
            || !owner.ends_with(sig.signer_name())
            || usize::from(sig.labels()) > owner.label_count() - 1
        {
            note(
                &mut failure,
                Failure::bogus(BogusReason::Bogus, "RRSIG does not fit the RRset"),
            );
            continue;
        }
        if !algorithm_supported(sig.algorithm()) {
            note(
                &mut failure,
                Failure::bogus(BogusReason::Bogus, "RRSIG algorithm not supported"),
            );
            continue;
        }
        if !not_before(now, sig.inception().into_int()) {
            note(
                &mut failure,
                Failure::bogus(BogusReason::SignatureNotYetValid, "signature not yet valid"),
            );
            continue;
        }
        if !not_before(sig.expiration().into_int(), now) {
            note(
                &mut failure,
                Failure::bogus(BogusReason::SignatureExpired, "signature expired"),
            );
            continue;
        }
        let candidates: Vec<&Dnskey<Bytes>> = keys
            .iter()
            .filter(|k| {
                k.algorithm() == sig.algorithm()
                    && k.key_tag() == sig.key_tag()
                    && k.is_zone_key()
                    && !k.is_revoked()
                    && k.protocol() == 3
            })
            .collect();
        if candidates.is_empty() {
            note(
                &mut failure,
                Failure::bogus(BogusReason::DnskeyMissing, "no DNSKEY matches the RRSIG"),
            );
            continue;
        }
        if candidates.len() > MAX_KEY_COLLISIONS {
            return Err(Failure::limit(
                "too many DNSKEYs share a key tag (KeyTrap limit)",
            ));
        }
        let Some(data) = signed_data(sig, rrset) else {
            note(
                &mut failure,
                Failure::bogus(BogusReason::Bogus, "RRSIG labels do not fit the owner"),
            );
            continue;
        };
        for key in candidates {
            verifications += 1;
            budget.verifications += 1;
            if verifications > MAX_VERIFICATIONS_PER_RRSET
                || budget.verifications > MAX_VERIFICATIONS_PER_QUERY
            {
                return Err(Failure::limit(
                    "too many signature verifications (KeyTrap limit)",
                ));
            }
            let verified = match super::legacy::verify(key, &data, sig.signature().as_ref()) {
                Some(verified) => verified,
                None => {
                    let Ok(public) = PublicKey::from_dnskey(key) else {
                        note(
                            &mut failure,
                            Failure::bogus(BogusReason::Bogus, "unusable DNSKEY"),
                        );
                        continue;
                    };
                    public.verify(&data, sig.signature().as_ref()).is_ok()
                }
            };
            if verified {
                return Ok(sig.labels());
            }
            note(
                &mut failure,
                Failure::bogus(BogusReason::Bogus, "signature does not verify"),
            );
        }
    }
    Err(failure.unwrap_or_else(|| Failure::bogus(BogusReason::Bogus, "no valid signature")))
}

/// RRSIGs in `records` over `owner`/`rtype`.
pub(crate) fn sigs_for<'a>(records: &'a [Rr], owner: &Name<Bytes>, rtype: Rtype) -> Vec<&'a Sig> {
    records
        .iter()
        .filter(|r| r.owner().name_eq(owner))
        .filter_map(|r| match r.data() {
            domain::rdata::AllRecordData::Rrsig(sig) if sig.type_covered() == rtype => Some(sig),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // reason: test code.
mod tests {
    use super::*;

    #[test]
    fn serial_time_comparison_wraps() {
        assert!(not_before(10, 5));
        assert!(!not_before(5, 10));
        assert!(not_before(5, u32::MAX - 5), "after the wrap");
        assert!(not_before(7, 7));
    }

    #[test]
    fn root_ksk_matches_its_ds() {
        // The IANA root KSKs (KSK-2017, KSK-2024) and their DS records.
        let anchors = super::super::TrustAnchors::parse(
            ". IN DNSKEY 257 3 8 AwEAAaz/tAm8yTn4Mfeh5eyI96WSVexTBAvkMgJzkKTOiW1vkIbzxeF3+/4RgWOq7HrxRixHlFlExOLAJr5emLvN7SWXgnLh4+B5xQlNVz8Og8kvArMtNROxVQuCaSnIDdD5LKyWbRd2n9WGe2R8PzgCmr3EgVLrjyBxWezF0jLHwVN8efS3rCj/EWgvIWgb9tarpVUDK/b58Da+sqqls3eNbuv7pr+eoZG+SrDK6nWeL3c6H5Apxz7LjVc1uTIdsIXxuOLYA4/ilBmSVIzuDWfdRUfhHdY6+cn8HFRm+2hM8AnXGXws9555KrUB5qihylGa8subX2Nn6UwNR1AkUTV74bU=\n. IN DNSKEY 257 3 8 AwEAAa96jeuknZlaeSrvyAJj6ZHv28hhOKkx3rLGXVaC6rXTsDc449/cidltpkyGwCJNnOAlFNKF2jBosZBU5eeHspaQWOmOElZsjICMQMC3aeHbGiShvZsx4wMYSjH8e7Vrhbu6irwCzVBApESjbUdpWWmEnhathWu1jo+siFUiRAAxm9qyJNg/wOZqqzL/dL/q8PkcRU5oUKEpUge71M3ej2/7CPqpdVwuMoTvoB+ZOT4YeGyxMvHmbrxlFzGOHOijtzN+u1TQNatX2XBuzZNQ1K+s2CXkPIZo7s6JgZyvaBevYtxPvYLw4z9mR7K2vaF18UYH9Z9GNUUeayffKC73PYc=\n",
            std::path::Path::new("root.key"),
        )
        .unwrap();
        let keys = &anchors.get(&Name::root_bytes()).unwrap().dnskeys;
        assert_eq!(keys[0].key_tag(), 20326);
        assert_eq!(keys[1].key_tag(), 38696);
        let builtin = super::super::TrustAnchors::builtin();
        let root = builtin.get(&Name::root_bytes()).unwrap();
        assert!(ds_matches(&Name::root_bytes(), &root.ds[0], &keys[0]));
        assert!(ds_matches(&Name::root_bytes(), &root.ds[1], &keys[1]));
        assert!(!ds_matches(&Name::root_bytes(), &root.ds[1], &keys[0]));
        assert_eq!(usable_ds(&root.ds).len(), 2);
    }
}
