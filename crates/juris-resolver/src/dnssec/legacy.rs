//! Signature algorithms ring does not verify, through RustCrypto (design 0013): DSA
//! (algorithms 3 and 6, RFC 2536) and RSA keys shorter than 1024 bits (algorithms 5, 7, 8, 10,
//! RFC 3110 / 5702), which ring refuses. Verification only; no key or signature is made here.
//!
//! RFC 8624 §3.1 lists DSA as "MUST NOT" for signing and "MAY" for validation; Unbound and
//! BIND still validate it, and so does juris, so a zone signed with it is not silently insecure.

use domain::rdata::Dnskey;
use rsa::{BigUint, Pkcs1v15Sign, RsaPublicKey};
use sha1::{Digest, Sha1};
use sha2::{Sha256, Sha512};

/// The algorithms this module verifies, beyond what ring does.
pub(crate) fn algorithm_supported(algorithm: u8) -> bool {
    matches!(algorithm, 3 | 6)
}

/// Verifies `signature` over `data` with `key` when the algorithm or key is one ring refuses.
/// `None`: not a case for this module (the caller uses ring); `Some(verified)` otherwise.
pub(crate) fn verify(
    key: &Dnskey<impl AsRef<[u8]>>,
    data: &[u8],
    signature: &[u8],
) -> Option<bool> {
    let public = key.public_key().as_ref();
    match key.algorithm().to_int() {
        3 | 6 => Some(verify_dsa(public, data, signature).unwrap_or(false)),
        5 | 7 => small_rsa(public).map(|k| verify_rsa::<Sha1>(&k, data, signature)),
        8 => small_rsa(public).map(|k| verify_rsa::<Sha256>(&k, data, signature)),
        10 => small_rsa(public).map(|k| verify_rsa::<Sha512>(&k, data, signature)),
        _ => None,
    }
}

/// The RSA public key (RFC 3110 §2: exponent length, exponent, modulus) if its modulus is
/// shorter than 1024 bits (longer ones are ring's). A malformed key is `None` too: ring then
/// refuses it as well.
fn small_rsa(public: &[u8]) -> Option<RsaPublicKey> {
    let (&first, rest) = public.split_first()?;
    let (exp_len, rest) = if first == 0 {
        let (len, rest) = rest.split_first_chunk::<2>()?;
        (usize::from(u16::from_be_bytes(*len)), rest)
    } else {
        (usize::from(first), rest)
    };
    if exp_len == 0 || rest.len() <= exp_len {
        return None;
    }
    let (exponent, modulus) = rest.split_at(exp_len);
    let n = BigUint::from_bytes_be(modulus);
    if n.bits() >= 1024 {
        return None;
    }
    RsaPublicKey::new(n, BigUint::from_bytes_be(exponent)).ok()
}

fn verify_rsa<D: Digest + rsa::pkcs8::AssociatedOid>(
    key: &RsaPublicKey,
    data: &[u8],
    signature: &[u8],
) -> bool {
    key.verify(Pkcs1v15Sign::new::<D>(), &D::digest(data), signature)
        .is_ok()
}

/// DSA (RFC 2536 §2–3): key = T, Q (20 octets), P, G, Y (64 + 8T octets each); signature =
/// T, R (20), S (20); the hash is SHA-1. `None` for a malformed key or signature.
fn verify_dsa(public: &[u8], data: &[u8], signature: &[u8]) -> Option<bool> {
    use dsa::signature::hazmat::PrehashVerifier;
    let (&t, rest) = public.split_first()?;
    if t > 8 {
        return None;
    }
    let len = 64 + usize::from(t) * 8;
    if rest.len() != 20 + 3 * len {
        return None;
    }
    let (q, rest) = rest.split_at(20);
    let (p, rest) = rest.split_at(len);
    let (g, y) = rest.split_at(len);
    let big = dsa::BigUint::from_bytes_be;
    let components = dsa::Components::from_components(big(p), big(q), big(g)).ok()?;
    let key = dsa::VerifyingKey::from_components(components, big(y)).ok()?;
    if signature.len() != 41 {
        return None;
    }
    let sig =
        dsa::Signature::from_components(big(&signature[1..21]), big(&signature[21..])).ok()?;
    Some(key.verify_prehash(&Sha1::digest(data), &sig).is_ok())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // reason: test code.
mod tests {
    use base64::Engine as _;
    use bytes::Bytes;
    use domain::base::iana::{Class, SecurityAlgorithm};
    use domain::base::{Name, Record, Rtype, Ttl};
    use domain::rdata::dnssec::Timestamp;
    use domain::rdata::{AllRecordData, Dnskey, Rrsig, A};

    use super::super::canonical::Sig;
    use super::super::verify::{algorithm_supported, verify_rrset, Budget};
    use crate::names::Rr;

    // Made with `ldns-keygen -a DSA -b 1024` / `-a RSASHA256 -b 512` and `ldns-signzone`
    // (ldns on OpenSSL): an independent implementation signed these.
    const DSA_KEY: &str = "CKHFC1CL4Ohc2Ndw4oQXNJGLdUvvqpx+4UDx7Z5TaXsUUU7SoCgUUd0MRgdcRuMdEss4Oza9vqTjKFaq+YQiCvZEAR6UPtSys8/zpQ2gkEjNMW5HmbrHAfmaZ61a3t2OuwGbpAbq+bY9QKvYWTUQMiZpO/vjYP2/lCiC9HHxC22lPyDGO6hwcl0disJGF7MYU7gm531VyftM+CaWT8lbwL6Wi3BHj1JYwzLmsssQR+dKhrLK5uHNzdjRLqnyoQ4kDDaNrk+G3BjQjDgsEMqFs4R+bDNRkb/G8PxckVEhcDLGe+BNUgHw7l1QK6d7e47gFm+YPq/H8ySJ9K+MIY8xDuZGaKQnI5YMjmkVMPtI4fzF+a/ZgA1ItivBvPG6en5FRcoHC4awJKCkg/qKziHuQQ5SU/Xc3YK+VobLLzXJlU8rMmHMSSvM1UQD35C2ls0pXqZFukbgbtTW07MffIsXmXL9LKOKupSl6olk99SifTeiRpD068h6m85dJH6safc6IeaMIDonWMmLJ5jQakhlX++woiMW";
    const DSA_SIG: &str = "AJtKfNuFbsZPj8TND0ELHUjijCFJXGSLONM+4Ox42+SpuAcnQD8nZpc=";
    const RSA512_KEY: &str =
        "AwEAAdY+L0ep5F6ub3h5HqUYuNNWwM5oS3PyYiXB3OOqGGavsqy1R+WlEJna6gv8o3J+YkRiu2rTkay4aR+8gxL/P3c=";
    const RSA512_SIG: &str =
        "srh/MO/0b4Melc5TsmLm8bxT2LqYM7XzkOlXS6h/1zF25VPXzjSQJISmayuiEOaS1vrTd1PDyIx9/yl4RqvenA==";
    /// Between the signatures' inception (2025-01-01) and expiration (2035-01-01).
    const NOW: u32 = 1_800_000_000;

    fn b64(text: &str) -> Bytes {
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .unwrap()
            .into()
    }

    fn name(text: &str) -> Name<Bytes> {
        Name::bytes_from_str(text).unwrap()
    }

    fn key(algorithm: u8, text: &str) -> Dnskey<Bytes> {
        Dnskey::new(256, 3, SecurityAlgorithm::from_int(algorithm), b64(text)).unwrap()
    }

    fn sig(algorithm: u8, key_tag: u16, text: &str) -> Sig {
        Rrsig::new(
            Rtype::A,
            SecurityAlgorithm::from_int(algorithm),
            3,
            Ttl::from_secs(3600),
            Timestamp::from(2_051_222_400),
            Timestamp::from(1_735_689_600),
            key_tag,
            name("example.test."),
            b64(text),
        )
        .unwrap()
    }

    fn address(last: u8) -> Rr {
        Record::new(
            name("www.example.test."),
            Class::IN,
            Ttl::from_secs(3600),
            AllRecordData::A(A::new([192, 0, 2, last].into())),
        )
    }

    fn check(key: &Dnskey<Bytes>, sig: &Sig, record: &Rr) -> bool {
        let zone = name("example.test.");
        verify_rrset(
            &[record],
            &[sig],
            &zone,
            std::slice::from_ref(key),
            NOW,
            &mut Budget::default(),
        )
        .is_ok()
    }

    #[test]
    fn dsa_signatures_verify_and_tampered_data_does_not() {
        let key = key(3, DSA_KEY);
        assert_eq!(key.key_tag(), 35545);
        assert!(algorithm_supported(key.algorithm()));
        let sig = sig(3, 35545, DSA_SIG);
        assert!(check(&key, &sig, &address(1)));
        assert!(
            !check(&key, &sig, &address(2)),
            "other data, same signature"
        );
    }

    #[test]
    fn rsa_keys_under_1024_bits_verify_and_tampered_data_does_not() {
        let key = key(8, RSA512_KEY);
        assert_eq!(key.key_tag(), 12595);
        let sig = sig(8, 12595, RSA512_SIG);
        assert!(check(&key, &sig, &address(1)));
        assert!(
            !check(&key, &sig, &address(2)),
            "other data, same signature"
        );
    }

    #[test]
    fn malformed_dsa_material_is_refused_not_a_panic() {
        let data = b"data";
        for public in [
            &[][..],
            &[9u8][..],
            &[0u8; 20][..],
            &[0u8; 1 + 20 + 3 * 64][..],
        ] {
            assert_eq!(
                super::verify_dsa(public, data, &[0u8; 41]).unwrap_or(false),
                false
            );
        }
        let key = b64(DSA_KEY);
        assert!(
            super::verify_dsa(&key, data, &[0u8; 40]).is_none(),
            "short signature"
        );
        assert!(super::small_rsa(&[0, 0]).is_none());
        assert!(super::small_rsa(&[3, 1, 0, 1]).is_none(), "no modulus");
    }
}
