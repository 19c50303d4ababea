//! Protocol codes, defined once: RCODEs (RFC 1035 §4.1.1, RFC 6891 §6.1.3), Extended DNS Error
//! INFO-CODEs (RFC 8914 §5.2 and the IANA registry), EDNS option codes, header flag bits and the
//! record types juris names.
//!
//! Everything that writes or prints these numbers reads them from here: the response writers
//! ([`crate::synth`], [`crate::block`]), the one failure map ([`crate::error_map`]: failures
//! and policy meanings → RCODE + EDE), the query parser, and in the binary the decoder `juris
//! explain` prints with and the API's counters per RCODE. Other crates return meanings, not
//! numbers (the policy crate a [`juris_policy::BlockMeaning`], the resolver a
//! `ResolveError`); the error map turns them into these codes.
//!
//! New codes (e.g. the DNSSEC EDEs 1, 2, 6–10, 12) are already listed in [`ede`] with their
//! names: use the constant, and add the mapping from the meaning in [`crate::error_map`].

use std::fmt;

/// A DNS RCODE, possibly extended to 12 bits through the OPT record (RFC 6891 §6.1.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rcode(pub u16);

impl Rcode {
    /// No error.
    pub const NOERROR: Rcode = Rcode(0);
    /// Format error.
    pub const FORMERR: Rcode = Rcode(1);
    /// Server failure.
    pub const SERVFAIL: Rcode = Rcode(2);
    /// Name error.
    pub const NXDOMAIN: Rcode = Rcode(3);
    /// Not implemented.
    pub const NOTIMP: Rcode = Rcode(4);
    /// Refused.
    pub const REFUSED: Rcode = Rcode(5);
    /// Bad EDNS version (extended: needs an OPT record).
    pub const BADVERS: Rcode = Rcode(16);
    /// Bad or missing server cookie (RFC 7873 §8; extended: needs an OPT record).
    pub const BADCOOKIE: Rcode = Rcode(23);

    /// The 4 bits that go into the header.
    pub fn header_bits(self) -> u16 {
        self.0 & 0x000F
    }

    /// The upper 8 bits that go into the OPT TTL.
    pub fn extended_bits(self) -> u8 {
        ((self.0 >> 4) & 0xFF) as u8
    }

    /// The IANA mnemonic (`NOERROR`, `NXDOMAIN`, `BADVERS`, ...), if the code has one.
    pub fn mnemonic(self) -> Option<&'static str> {
        Some(match self.0 {
            0 => "NOERROR",
            1 => "FORMERR",
            2 => "SERVFAIL",
            3 => "NXDOMAIN",
            4 => "NOTIMP",
            5 => "REFUSED",
            6 => "YXDOMAIN",
            7 => "YXRRSET",
            8 => "NXRRSET",
            9 => "NOTAUTH",
            10 => "NOTZONE",
            11 => "DSOTYPENI",
            16 => "BADVERS",
            23 => "BADCOOKIE",
            _ => return None,
        })
    }
}

/// The mnemonic, or `RCODE<n>` for codes without one.
impl fmt::Display for Rcode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.mnemonic() {
            Some(name) => f.write_str(name),
            None => write!(f, "RCODE{}", self.0),
        }
    }
}

/// Extended DNS Error INFO-CODEs (RFC 8914 §5.2; 25–30 from the IANA registry).
pub mod ede {
    /// Other error.
    pub const OTHER: u16 = 0;
    /// Unsupported DNSKEY algorithm.
    pub const UNSUPPORTED_DNSKEY_ALGORITHM: u16 = 1;
    /// Unsupported DS digest type.
    pub const UNSUPPORTED_DS_DIGEST_TYPE: u16 = 2;
    /// Stale answer (RFC 8767).
    pub const STALE_ANSWER: u16 = 3;
    /// Forged answer.
    pub const FORGED_ANSWER: u16 = 4;
    /// DNSSEC indeterminate.
    pub const DNSSEC_INDETERMINATE: u16 = 5;
    /// DNSSEC bogus.
    pub const DNSSEC_BOGUS: u16 = 6;
    /// Signature expired.
    pub const SIGNATURE_EXPIRED: u16 = 7;
    /// Signature not yet valid.
    pub const SIGNATURE_NOT_YET_VALID: u16 = 8;
    /// DNSKEY missing.
    pub const DNSKEY_MISSING: u16 = 9;
    /// RRSIGs missing.
    pub const RRSIGS_MISSING: u16 = 10;
    /// No zone key bit set.
    pub const NO_ZONE_KEY_BIT_SET: u16 = 11;
    /// NSEC missing.
    pub const NSEC_MISSING: u16 = 12;
    /// Cached error.
    pub const CACHED_ERROR: u16 = 13;
    /// Not ready.
    pub const NOT_READY: u16 = 14;
    /// Blocked (the operator's own security list).
    pub const BLOCKED: u16 = 15;
    /// Censored (a legal order).
    pub const CENSORED: u16 = 16;
    /// Filtered (the client asked for it).
    pub const FILTERED: u16 = 17;
    /// Prohibited (the client is not served).
    pub const PROHIBITED: u16 = 18;
    /// Stale NXDOMAIN answer.
    pub const STALE_NXDOMAIN_ANSWER: u16 = 19;
    /// Not authoritative.
    pub const NOT_AUTHORITATIVE: u16 = 20;
    /// Not supported.
    pub const NOT_SUPPORTED: u16 = 21;
    /// No reachable authority.
    pub const NO_REACHABLE_AUTHORITY: u16 = 22;
    /// Network error.
    pub const NETWORK_ERROR: u16 = 23;
    /// Invalid data.
    pub const INVALID_DATA: u16 = 24;

    /// The registry's name of an INFO-CODE (`Censored`, `Stale Answer`, ...), if it has one.
    pub fn purpose(code: u16) -> Option<&'static str> {
        Some(match code {
            OTHER => "Other Error",
            UNSUPPORTED_DNSKEY_ALGORITHM => "Unsupported DNSKEY Algorithm",
            UNSUPPORTED_DS_DIGEST_TYPE => "Unsupported DS Digest Type",
            STALE_ANSWER => "Stale Answer",
            FORGED_ANSWER => "Forged Answer",
            DNSSEC_INDETERMINATE => "DNSSEC Indeterminate",
            DNSSEC_BOGUS => "DNSSEC Bogus",
            SIGNATURE_EXPIRED => "Signature Expired",
            SIGNATURE_NOT_YET_VALID => "Signature Not Yet Valid",
            DNSKEY_MISSING => "DNSKEY Missing",
            RRSIGS_MISSING => "RRSIGs Missing",
            NO_ZONE_KEY_BIT_SET => "No Zone Key Bit Set",
            NSEC_MISSING => "NSEC Missing",
            CACHED_ERROR => "Cached Error",
            NOT_READY => "Not Ready",
            BLOCKED => "Blocked",
            CENSORED => "Censored",
            FILTERED => "Filtered",
            PROHIBITED => "Prohibited",
            STALE_NXDOMAIN_ANSWER => "Stale NXDOMAIN Answer",
            NOT_AUTHORITATIVE => "Not Authoritative",
            NOT_SUPPORTED => "Not Supported",
            NO_REACHABLE_AUTHORITY => "No Reachable Authority",
            NETWORK_ERROR => "Network Error",
            INVALID_DATA => "Invalid Data",
            25 => "Signature Expired before Valid",
            26 => "Too Early",
            27 => "Unsupported NSEC3 Iterations Value",
            28 => "Unable to conform to policy",
            29 => "Synthesized",
            30 => "Invalid Query Type",
            _ => return None,
        })
    }
}

/// Header flag bits (RFC 1035 §4.1.1, RFC 4035 §3.2).
pub mod flags {
    /// Query (0) or response (1).
    pub const QR: u16 = 0x8000;
    /// Opcode mask.
    pub const OPCODE: u16 = 0x7800;
    /// Authoritative answer.
    pub const AA: u16 = 0x0400;
    /// Truncated.
    pub const TC: u16 = 0x0200;
    /// Recursion desired.
    pub const RD: u16 = 0x0100;
    /// Recursion available.
    pub const RA: u16 = 0x0080;
    /// Authentic data.
    pub const AD: u16 = 0x0020;
    /// Checking disabled.
    pub const CD: u16 = 0x0010;

    /// Every flag with its lower-case mnemonic, in header order (as dig prints them).
    pub const NAMES: [(u16, &str); 7] = [
        (QR, "qr"),
        (AA, "aa"),
        (TC, "tc"),
        (RD, "rd"),
        (RA, "ra"),
        (AD, "ad"),
        (CD, "cd"),
    ];
}

/// EDNS option codes juris reads or writes.
pub mod option_code {
    /// EDNS Client Subnet (RFC 7871).
    pub const CLIENT_SUBNET: u16 = 8;
    /// DNS cookie (RFC 7873).
    pub const COOKIE: u16 = 10;
    /// Padding (RFC 7830).
    pub const PADDING: u16 = 12;
    /// Extended DNS Error (RFC 8914).
    pub const EXTENDED_ERROR: u16 = 15;
}

/// Record types juris names (RFC 1035 and later), and the classes it serves.
pub mod rtype {
    /// A.
    pub const A: u16 = 1;
    /// NS.
    pub const NS: u16 = 2;
    /// CNAME.
    pub const CNAME: u16 = 5;
    /// SOA.
    pub const SOA: u16 = 6;
    /// PTR.
    pub const PTR: u16 = 12;
    /// HINFO (RFC 8482 answers to ANY).
    pub const HINFO: u16 = 13;
    /// AAAA.
    pub const AAAA: u16 = 28;
    /// OPT (EDNS pseudo-record).
    pub const OPT: u16 = 41;
    /// TKEY (RFC 2930; a meta-type, never asked of a resolver).
    pub const TKEY: u16 = 249;
    /// TSIG (RFC 8945; a meta-type).
    pub const TSIG: u16 = 250;
    /// MAILB (obsolete QTYPE).
    pub const MAILB: u16 = 253;
    /// MAILA (obsolete QTYPE).
    pub const MAILA: u16 = 254;
    /// First of the types reserved for meta-types (RFC 6895 §3.1).
    pub const META_FIRST: u16 = 128;
    /// Last of the types reserved for meta-types (RFC 6895 §3.1).
    pub const META_LAST: u16 = 248;
    /// IXFR.
    pub const IXFR: u16 = 251;
    /// AXFR.
    pub const AXFR: u16 = 252;
    /// ANY (`*`).
    pub const ANY: u16 = 255;
    /// Class IN.
    pub const CLASS_IN: u16 = 1;

    /// Mnemonics `juris explain` reads and prints; other types are `TYPE<n>` (RFC 3597).
    pub const MNEMONICS: [(&str, u16); 17] = [
        ("A", A),
        ("NS", NS),
        ("CNAME", CNAME),
        ("SOA", SOA),
        ("PTR", PTR),
        ("HINFO", HINFO),
        ("MX", 15),
        ("TXT", 16),
        ("AAAA", AAAA),
        ("SRV", 33),
        ("OPT", OPT),
        ("DS", 43),
        ("DNSKEY", 48),
        ("SVCB", 64),
        ("HTTPS", 65),
        ("CAA", 257),
        ("ANY", ANY),
    ];

    /// The mnemonic of `code`, or `TYPE<n>`.
    pub fn name(code: u16) -> String {
        MNEMONICS
            .iter()
            .find(|(_, c)| *c == code)
            .map_or_else(|| format!("TYPE{code}"), |(name, _)| (*name).to_owned())
    }

    /// A type from its mnemonic (any case), `TYPE<n>` or a number.
    pub fn parse(text: &str) -> Option<u16> {
        let upper = text.to_ascii_uppercase();
        if let Some((_, code)) = MNEMONICS.iter().find(|(name, _)| *name == upper) {
            return Some(*code);
        }
        upper.strip_prefix("TYPE").unwrap_or(&upper).parse().ok()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "test code")]
mod tests {
    use super::*;

    #[test]
    fn rcodes_print_their_mnemonic_or_number() {
        assert_eq!(Rcode::NXDOMAIN.to_string(), "NXDOMAIN");
        assert_eq!(Rcode::BADVERS.to_string(), "BADVERS");
        assert_eq!(Rcode(12).to_string(), "RCODE12");
        assert_eq!(Rcode::BADVERS.header_bits(), 0);
        assert_eq!(Rcode::BADVERS.extended_bits(), 1);
    }

    #[test]
    fn every_named_ede_code_is_in_the_table() {
        for code in 0..=30 {
            assert!(ede::purpose(code).is_some(), "{code}");
        }
        assert_eq!(ede::purpose(ede::CENSORED), Some("Censored"));
        assert_eq!(ede::purpose(31), None);
    }

    #[test]
    fn record_types_round_trip() {
        assert_eq!(rtype::parse("aaaa"), Some(28));
        assert_eq!(rtype::parse("TYPE65"), Some(65));
        assert_eq!(rtype::parse("28"), Some(28));
        assert_eq!(rtype::parse("nonsense"), None);
        assert_eq!(rtype::name(65), "HTTPS");
        assert_eq!(rtype::name(999), "TYPE999");
    }
}
