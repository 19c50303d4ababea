//! The signed hierarchy every DNSSEC test uses, and what a validating resolver must answer
//! for each of its names.
//!
//! ```text
//! .  (ECDSA P-256, NSEC; the trust anchor)
//! └─ test.  (RSASHA256, NSEC3)                www A
//!    ├─ secure.test.       ECDSA, NSEC        www A; *.wild A; to-insecure CNAME www.insecure.test.
//!    ├─ nsec3.test.        ECDSA, NSEC3       www A; *.wild A
//!    ├─ optout.test.       NSEC3 opt-out  ──  sub.optout.test. (unsigned, no DS, no NSEC3 of its own)
//!    │                                     ──  sub.ent.optout.test. (unsigned; ent.optout.test. is an empty non-terminal)
//!    ├─ twoservers.test.   ECDSA, NSEC; two servers, bad2.twoservers.test. serves wrong
//!    │                     signatures on www and *.any (not in CASES: tests ask it themselves)
//!    ├─ insecure.test.     unsigned           www A; back CNAME www.secure.test.
//!    ├─ nods.test.         signed, no DS      www A
//!    ├─ expired.test.      signatures expired 3 days ago
//!    ├─ future.test.       signatures valid from 10 days ahead
//!    ├─ missingkey.test.   DS names a key the zone does not publish
//!    ├─ stripped.test.     every RRSIG removed except the DNSKEY RRset's
//!    ├─ nonsec.test.       NSEC records removed: NXDOMAIN without proof
//!    ├─ keytrap.test.      16 zone keys with one key tag; the signatures of www and
//!    │                     *.trap all invalid
//!    │  (every zone from nods. down also has `*.trap A 192.0.2.48`)
//!    ├─ ed448.test.        Ed448 (algorithm 16)
//!    ├─ dsa.test.          DSA (algorithm 3, 1024-bit keys; not in CASES: validators differ — RFC 8624
//!    │                     forbids validating it, Unbound's answer carries neither AD nor EDE 1)
//!    ├─ rsa512.test.       RSASHA256 with 512-bit keys (shorter than ring accepts)
//!    └─ unknowndigest.test.  the only DS has digest type 250
//! ```
//!
//! ```no_run
//! use juris_testkit::signed_world::{self, CASES};
//! let world = signed_world::start();
//! let anchor = world.trust_anchor(); // `juris serve --trust-anchor FILE`
//! for case in CASES { /* ask for case.name / case.record_type, check case.outcome */ }
//! ```

use crate::dig::Response;
use crate::dnssec::{Algorithm, Signing};
use crate::hierarchy::{Hierarchy, Zone};

/// How many zone keys of `keytrap.test.` share one key tag.
pub const KEYTRAP_KEYS: usize = 16;

/// What a validating resolver must answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The answer validates: AD when the query has DO or AD.
    Secure,
    /// Provably insecure: the data, never AD.
    Insecure,
    /// Bogus: SERVFAIL with one of these RFC 8914 EDE codes (the first is the precise
    /// one); with CD=1 the data comes back, without AD.
    Bogus(&'static [u16]),
    /// Signed with an algorithm a validator may not implement: secure if it does,
    /// otherwise insecure (EDE 1, Unsupported DNSKEY Algorithm, informational).
    AlgorithmDependent,
}

/// A name of the signed world and its expected outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Case {
    pub name: &'static str,
    pub record_type: &'static str,
    /// `NOERROR` or `NXDOMAIN` when the data is returned (secure, insecure, or CD=1).
    pub rcode: &'static str,
    /// The A record (or the final A after CNAMEs); `None` for NXDOMAIN.
    pub address: Option<&'static str>,
    pub outcome: Outcome,
    /// What the case proves.
    pub what: &'static str,
}

const fn case(
    name: &'static str,
    rcode: &'static str,
    address: Option<&'static str>,
    outcome: Outcome,
    what: &'static str,
) -> Case {
    Case {
        name,
        record_type: "A",
        rcode,
        address,
        outcome,
        what,
    }
}

/// Every case of [`start`]'s hierarchy.
pub const CASES: &[Case] = &[
    case(
        "www.secure.test.",
        "NOERROR",
        Some("192.0.2.1"),
        Outcome::Secure,
        "secure answer, ECDSA P-256 + NSEC",
    ),
    case(
        "www.test.",
        "NOERROR",
        Some("192.0.2.80"),
        Outcome::Secure,
        "secure answer signed with RSASHA256",
    ),
    case(
        "nx.secure.test.",
        "NXDOMAIN",
        None,
        Outcome::Secure,
        "NSEC proof of non-existence",
    ),
    case(
        "www.nsec3.test.",
        "NOERROR",
        Some("192.0.2.10"),
        Outcome::Secure,
        "secure answer in an NSEC3 zone",
    ),
    case(
        "nx.nsec3.test.",
        "NXDOMAIN",
        None,
        Outcome::Secure,
        "NSEC3 proof of non-existence",
    ),
    case(
        "a.wild.secure.test.",
        "NOERROR",
        Some("192.0.2.2"),
        Outcome::Secure,
        "wildcard expansion proven with NSEC",
    ),
    case(
        "a.wild.nsec3.test.",
        "NOERROR",
        Some("192.0.2.11"),
        Outcome::Secure,
        "wildcard expansion proven with NSEC3",
    ),
    case(
        "www.sub.optout.test.",
        "NOERROR",
        Some("192.0.2.21"),
        Outcome::Insecure,
        "NSEC3 opt-out span over an unsigned delegation",
    ),
    case(
        "ent.optout.test.",
        "NOERROR",
        None,
        Outcome::Insecure,
        "NODATA for an empty non-terminal above an unsigned delegation: its next closer name is in an NSEC3 opt-out span",
    ),
    case(
        "www.insecure.test.",
        "NOERROR",
        Some("192.0.2.30"),
        Outcome::Insecure,
        "insecure delegation (NSEC3 proof of no DS) to an unsigned zone",
    ),
    case(
        "www.nods.test.",
        "NOERROR",
        Some("192.0.2.31"),
        Outcome::Insecure,
        "insecure delegation to a signed zone",
    ),
    case(
        "to-insecure.secure.test.",
        "NOERROR",
        Some("192.0.2.30"),
        Outcome::Insecure,
        "CNAME from a secure zone into an insecure one",
    ),
    case(
        "back.insecure.test.",
        "NOERROR",
        Some("192.0.2.1"),
        Outcome::Insecure,
        "CNAME from an insecure zone into a secure one",
    ),
    case(
        "www.unknowndigest.test.",
        "NOERROR",
        Some("192.0.2.47"),
        Outcome::Insecure,
        "the only DS has an unknown digest type",
    ),
    case(
        "www.ed448.test.",
        "NOERROR",
        Some("192.0.2.46"),
        Outcome::AlgorithmDependent,
        "Ed448 (algorithm 16)",
    ),
    case(
        "www.rsa512.test.",
        "NOERROR",
        Some("192.0.2.50"),
        Outcome::AlgorithmDependent,
        "RSASHA256 with a 512-bit key",
    ),
    case(
        "www.expired.test.",
        "NOERROR",
        Some("192.0.2.40"),
        Outcome::Bogus(&[7, 6]),
        "signatures expired",
    ),
    case(
        "www.future.test.",
        "NOERROR",
        Some("192.0.2.41"),
        Outcome::Bogus(&[8, 6]),
        "signatures not yet valid",
    ),
    case(
        "www.missingkey.test.",
        "NOERROR",
        Some("192.0.2.42"),
        Outcome::Bogus(&[9, 6]),
        "the DS names a key the zone lacks",
    ),
    case(
        "www.stripped.test.",
        "NOERROR",
        Some("192.0.2.43"),
        Outcome::Bogus(&[10, 6]),
        "RRSIGs stripped",
    ),
    case(
        "nx.nonsec.test.",
        "NXDOMAIN",
        None,
        Outcome::Bogus(&[12, 6]),
        "forged NXDOMAIN without NSEC",
    ),
    case(
        "www.keytrap.test.",
        "NOERROR",
        Some("192.0.2.45"),
        Outcome::Bogus(&[6, 0]),
        "KeyTrap: colliding key tags, invalid signatures",
    ),
    case(
        "a.trap.keytrap.test.",
        "NOERROR",
        Some("192.0.2.48"),
        Outcome::Bogus(&[6, 0]),
        "KeyTrap through a wildcard (any name below trap.)",
    ),
];

/// The case for `name`.
///
/// # Panics
/// When there is none.
#[must_use]
pub fn case_for(name: &str) -> &'static Case {
    CASES
        .iter()
        .find(|case| case.name == name)
        .unwrap_or_else(|| panic!("no signed-world case for {name}"))
}

/// Signs and starts the hierarchy (about 16 NSD servers).
///
/// # Panics
/// As [`crate::hierarchy::HierarchyBuilder::start`], or when ldns is missing.
#[must_use]
pub fn start() -> Hierarchy {
    let www = |address: &str| format!("www A {address}");
    let builder = Hierarchy::builder()
        .zone(Zone::new(".").signed(Signing::new()))
        .zone(
            Zone::new("test.")
                .signed(Signing::rsa_sha256().nsec3())
                .records(&www("192.0.2.80")),
        )
        .zone(
            Zone::new("secure.test.")
                .signed(Signing::new())
                .records(&www("192.0.2.1"))
                .records("*.wild A 192.0.2.2\nto-insecure CNAME www.insecure.test."),
        )
        .zone(
            Zone::new("nsec3.test.")
                .signed(Signing::new().nsec3())
                .records(&www("192.0.2.10"))
                .records("*.wild A 192.0.2.11"),
        )
        .zone(
            Zone::new("optout.test.")
                .signed(Signing::new().nsec3_opt_out())
                .records(&www("192.0.2.20")),
        )
        .zone(Zone::new("sub.optout.test.").records(&www("192.0.2.21")))
        .zone(Zone::new("sub.ent.optout.test.").records(&www("192.0.2.22")))
        .zone(
            Zone::new("twoservers.test.")
                .signed(Signing::new())
                .records(&www("192.0.2.51"))
                .records("*.any A 192.0.2.52")
                .tampered_name_server(&["www", "*.any"]),
        )
        .zone(
            Zone::new("insecure.test.")
                .records(&www("192.0.2.30"))
                .records("back CNAME www.secure.test."),
        );
    let broken = [
        ("nods.test.", Signing::new().without_ds(), "192.0.2.31"),
        ("expired.test.", Signing::new().expired(), "192.0.2.40"),
        ("future.test.", Signing::new().not_yet_valid(), "192.0.2.41"),
        (
            "missingkey.test.",
            Signing::new().ds_for_missing_key(),
            "192.0.2.42",
        ),
        (
            "stripped.test.",
            Signing::new().without_rrsigs(),
            "192.0.2.43",
        ),
        (
            "nonsec.test.",
            Signing::new().without_denial(),
            "192.0.2.44",
        ),
        (
            "keytrap.test.",
            Signing::new().colliding_keys(KEYTRAP_KEYS, &["www", "*.trap"]),
            "192.0.2.45",
        ),
        (
            "ed448.test.",
            Signing::new().algorithm(Algorithm::Ed448),
            "192.0.2.46",
        ),
        (
            "dsa.test.",
            Signing::new().algorithm(Algorithm::Dsa),
            "192.0.2.49",
        ),
        (
            "rsa512.test.",
            Signing::new().algorithm(Algorithm::RsaSha256Short),
            "192.0.2.50",
        ),
        (
            "unknowndigest.test.",
            Signing::new().ds_with_unknown_digest(),
            "192.0.2.47",
        ),
    ];
    broken
        .into_iter()
        .fold(builder, |builder, (zone, signing, address)| {
            let zone = Zone::new(zone).signed(signing).records(&www(address));
            // Any number of names whose signatures all fail: `N.trap.keytrap.test.`.
            builder.zone(zone.records("*.trap A 192.0.2.48"))
        })
        .start()
}

/// Checks a validating resolver's `response` to `case` asked with DO=1 (`dig +dnssec`)
/// against [`Case::outcome`]; `Err` says what is wrong.
///
/// # Errors
/// When the response does not have the case's outcome.
pub fn check(case: &Case, response: &Response) -> Result<(), String> {
    let ad = response.has_flag("ad");
    let codes: Vec<u16> = response.extended_errors.iter().map(|e| e.code).collect();
    let fail = |why: &str| {
        Err(format!(
            "{} ({}): {why}\n{}",
            case.name, case.what, response.output
        ))
    };
    match case.outcome {
        Outcome::Bogus(expected) => {
            if response.status != "SERVFAIL" {
                return fail("bogus data must give SERVFAIL");
            }
            if ad {
                return fail("AD on a SERVFAIL");
            }
            if codes.first() != expected.first() && !codes.iter().any(|c| expected.contains(c)) {
                return fail(&format!("EDE {codes:?}, expected one of {expected:?}"));
            }
            Ok(())
        }
        Outcome::Secure | Outcome::Insecure | Outcome::AlgorithmDependent => {
            check_data(case, response)?;
            match case.outcome {
                Outcome::Secure if !ad => fail("secure data without AD"),
                Outcome::Insecure if ad => fail("AD on insecure data"),
                Outcome::AlgorithmDependent if !ad && !codes.contains(&1) => {
                    fail("neither AD (algorithm supported) nor EDE 1 (unsupported)")
                }
                _ => Ok(()),
            }
        }
    }
}

/// Checks the response to `case` asked with CD=1: the data (bogus included) and no AD.
/// RFC 6840 5.9 lets a resolver set AD on data it did validate as secure (Unbound does):
/// `ad_on_secure` accepts that for cases that can be secure.
///
/// # Errors
/// When the data is missing or AD is set where it must not be.
pub fn check_checking_disabled(
    case: &Case,
    response: &Response,
    ad_on_secure: bool,
) -> Result<(), String> {
    check_data(case, response)?;
    let allowed =
        ad_on_secure && matches!(case.outcome, Outcome::Secure | Outcome::AlgorithmDependent);
    if response.has_flag("ad") && !allowed {
        return Err(format!("{}: AD with CD=1\n{}", case.name, response.output));
    }
    Ok(())
}

/// The RCODE and the final address of `case`.
fn check_data(case: &Case, response: &Response) -> Result<(), String> {
    if response.status != case.rcode {
        return Err(format!(
            "{} ({}): {} instead of {}\n{}",
            case.name, case.what, response.status, case.rcode, response.output
        ));
    }
    let addresses = response.answer_data(case.record_type);
    let expected: Vec<&str> = case.address.into_iter().collect();
    if addresses != expected {
        return Err(format!(
            "{} ({}): addresses {addresses:?}, expected {expected:?}\n{}",
            case.name, case.what, response.output
        ));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::expect_used, clippy::unwrap_used, reason = "tests fail loudly")]
mod tests {
    use std::collections::BTreeMap;
    use std::net::SocketAddr;
    use std::process::Command;
    use std::sync::OnceLock;

    use super::*;
    use crate::dig::{Lookup, Record};
    use crate::unbound::Unbound;

    /// One signed world for every test of this module (the servers live as long as the
    /// test process: the spawner thread holds their parent-death signal).
    fn world() -> &'static Hierarchy {
        static WORLD: OnceLock<Hierarchy> = OnceLock::new();
        WORLD.get_or_init(start)
    }

    fn at(hierarchy: &Hierarchy, zone: &str) -> SocketAddr {
        SocketAddr::from((hierarchy.server(zone).address(), 53))
    }

    /// `dig +dnssec +norecurse` straight at a zone's NSD.
    fn authoritative(hierarchy: &Hierarchy, zone: &str, name: &str, kind: &str) -> Response {
        Lookup::dig(at(hierarchy, zone), name, kind)
            .args(["+dnssec", "+norecurse"])
            .timeout_seconds(5)
            .run()
            .expect("NSD answers")
    }

    fn of_type<'a>(records: &'a [Record], kind: &str) -> Vec<&'a Record> {
        records.iter().filter(|r| r.record_type == kind).collect()
    }

    fn covering<'a>(records: &'a [Record], kind: &str) -> Vec<&'a Record> {
        records
            .iter()
            .filter(|r| r.record_type == "RRSIG" && r.data.split_whitespace().next() == Some(kind))
            .collect()
    }

    fn utc_now() -> String {
        let output = Command::new("date")
            .args(["-u", "+%Y%m%d%H%M%S"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    /// Expiration and inception (YYYYMMDDhhmmss) of an RRSIG's data.
    fn window(rrsig: &Record) -> (String, String) {
        let fields: Vec<&str> = rrsig.data.split_whitespace().collect();
        (fields[4].to_owned(), fields[5].to_owned())
    }

    /// DS records (tag alg digest-type digest, lower case) that `ldns-key2ds` computes for
    /// each DNSKEY record.
    fn ds_of(dnskeys: &[&Record]) -> Vec<String> {
        let directory = tempfile::tempdir().unwrap();
        dnskeys
            .iter()
            .enumerate()
            .map(|(index, key)| {
                let file = directory.path().join(format!("k{index}.key"));
                std::fs::write(&file, format!("{} IN DNSKEY {}\n", key.name, key.data)).unwrap();
                let output = Command::new(crate::tools::require_ldns("ldns-key2ds"))
                    .args(["-n", "-f", "-2"])
                    .arg(&file)
                    .output()
                    .unwrap();
                let text = String::from_utf8_lossy(&output.stdout).into_owned();
                normalise_ds(text.split("DS").nth(1).unwrap_or_default())
            })
            .collect()
    }

    /// `tag algorithm digest-type digest`, the digest in one piece, lower case.
    fn normalise_ds(data: &str) -> String {
        let fields: Vec<&str> = data.split_whitespace().collect();
        let split = fields.len().min(3);
        format!("{} {}", fields[..split].join(" "), fields[split..].concat()).to_ascii_lowercase()
    }

    #[test]
    fn the_servers_publish_signatures_and_proofs_only_where_intended() {
        let h = world();
        let secure = authoritative(h, "secure.test.", "www.secure.test.", "A");
        assert_eq!(covering(&secure.answer, "A").len(), 1, "{}", secure.output);

        let stripped = authoritative(h, "stripped.test.", "www.stripped.test.", "A");
        assert_eq!(
            stripped.answer_data("A"),
            ["192.0.2.43"],
            "{}",
            stripped.output
        );
        assert!(
            of_type(&stripped.answer, "RRSIG").is_empty(),
            "{}",
            stripped.output
        );
        let keys = authoritative(h, "stripped.test.", "stripped.test.", "DNSKEY");
        assert_eq!(covering(&keys.answer, "DNSKEY").len(), 1, "{}", keys.output);

        let proven = authoritative(h, "secure.test.", "nx.secure.test.", "A");
        assert_eq!(proven.status, "NXDOMAIN");
        assert!(
            !of_type(&proven.authority, "NSEC").is_empty(),
            "{}",
            proven.output
        );
        let proven3 = authoritative(h, "nsec3.test.", "nx.nsec3.test.", "A");
        assert_eq!(proven3.status, "NXDOMAIN");
        assert!(
            !of_type(&proven3.authority, "NSEC3").is_empty(),
            "{}",
            proven3.output
        );
        let forged = authoritative(h, "nonsec.test.", "nx.nonsec.test.", "A");
        assert_eq!(forged.status, "NXDOMAIN", "{}", forged.output);
        assert_eq!(
            covering(&forged.authority, "SOA").len(),
            1,
            "{}",
            forged.output
        );
        assert!(
            forged.authority.iter().all(|r| r.record_type != "NSEC"
                && r.record_type != "NSEC3"
                && covering(std::slice::from_ref(r), "NSEC").is_empty()),
            "no denial records: {}",
            forged.output
        );

        // Opt-out: the referral to the unsigned child is covered by an opt-out NSEC3,
        // and no NSEC3 owner is the child's own hash.
        let referral = authoritative(h, "optout.test.", "www.sub.optout.test.", "A");
        assert!(
            of_type(&referral.authority, "DS").is_empty(),
            "{}",
            referral.output
        );
        let nsec3 = of_type(&referral.authority, "NSEC3");
        assert!(!nsec3.is_empty(), "{}", referral.output);
        assert!(
            nsec3
                .iter()
                .all(|r| r.data.split_whitespace().nth(1) == Some("1")),
            "opt-out flag set: {}",
            referral.output
        );
        let param = authoritative(h, "nsec3.test.", "nsec3.test.", "NSEC3PARAM");
        assert_eq!(
            param.answer_data("NSEC3PARAM"),
            ["1 0 0 -"],
            "RFC 9276: {}",
            param.output
        );

        // Windows relative to the real clock.
        let now = utc_now();
        let expired = authoritative(h, "expired.test.", "www.expired.test.", "A");
        let (expiration, _) = window(covering(&expired.answer, "A")[0]);
        assert!(expiration < now, "{expiration} < {now}: {}", expired.output);
        let future = authoritative(h, "future.test.", "www.future.test.", "A");
        let (_, inception) = window(covering(&future.answer, "A")[0]);
        assert!(inception > now, "{inception} > {now}: {}", future.output);
        let (expiration, inception) = window(covering(&secure.answer, "A")[0]);
        assert!(inception < now && now < expiration, "{}", secure.output);
    }

    #[test]
    fn the_keytrap_zone_has_many_keys_with_one_tag_and_only_bad_signatures_on_www() {
        let h = world();
        // dig computes the key ids itself (+multi prints them).
        let keys = Lookup::dig(at(h, "keytrap.test."), "keytrap.test.", "DNSKEY")
            .args(["+norecurse", "+multi"])
            .run()
            .unwrap();
        let mut ids: BTreeMap<u32, usize> = BTreeMap::new();
        for piece in keys.output.split("key id = ").skip(1) {
            let id: String = piece.chars().take_while(char::is_ascii_digit).collect();
            *ids.entry(id.parse().unwrap()).or_default() += 1;
        }
        assert_eq!(
            ids.values().sum::<usize>(),
            KEYTRAP_KEYS + 1,
            "{}",
            keys.output
        );
        assert_eq!(
            ids.values().max(),
            Some(&KEYTRAP_KEYS),
            "one tag shared: {}",
            keys.output
        );
        for name in ["www.keytrap.test.", "x.trap.keytrap.test."] {
            let www = authoritative(h, "keytrap.test.", name, "A");
            let signatures = covering(&www.answer, "A").len();
            assert_eq!(signatures, KEYTRAP_KEYS, "{}", www.output);
        }
    }

    #[test]
    fn each_parent_ds_matches_or_mismatches_the_child_keys_as_intended() {
        let h = world();
        let parent_ds = |zone: &str, parent: &str| -> Vec<String> {
            let response = authoritative(h, parent, zone, "DS");
            of_type(&response.answer, "DS")
                .iter()
                .map(|r| normalise_ds(&r.data))
                .collect()
        };
        let child_ds = |zone: &str| -> Vec<String> {
            let response = authoritative(h, zone, zone, "DNSKEY");
            ds_of(&of_type(&response.answer, "DNSKEY"))
        };
        for zone in [
            "test.",
            "secure.test.",
            "nsec3.test.",
            "optout.test.",
            "expired.test.",
            "future.test.",
            "stripped.test.",
            "nonsec.test.",
            "keytrap.test.",
            "ed448.test.",
        ] {
            let parent = if zone == "test." { "." } else { "test." };
            let published = parent_ds(zone, parent);
            assert_eq!(published.len(), 1, "{zone}: {published:?}");
            assert!(
                child_ds(zone).contains(&published[0]),
                "{zone}: {published:?}"
            );
        }
        let anchor = std::fs::read_to_string(h.trust_anchor()).unwrap();
        assert!(
            child_ds(".").contains(&normalise_ds(anchor.split("DS").nth(1).unwrap())),
            "{anchor}"
        );

        let missing = parent_ds("missingkey.test.", "test.");
        assert_eq!(missing.len(), 1);
        let keys = child_ds("missingkey.test.");
        let tag = |ds: &str| ds.split_whitespace().next().unwrap().to_owned();
        assert!(
            !keys.iter().any(|k| tag(k) == tag(&missing[0])),
            "no child key has the DS's tag: {missing:?} {keys:?}"
        );
        let unknown = parent_ds("unknowndigest.test.", "test.");
        assert_eq!(unknown.len(), 1);
        assert_eq!(
            unknown[0].split_whitespace().nth(2),
            Some("250"),
            "{unknown:?}"
        );
        assert!(parent_ds("nods.test.", "test.").is_empty());
        assert!(parent_ds("insecure.test.", "test.").is_empty());
        assert!(!child_ds("nods.test.").is_empty(), "nods.test. is signed");
    }

    #[test]
    fn unbound_agrees_with_every_expected_outcome() {
        let h = world();
        let Some(unbound) = Unbound::start(h.root_hints(), h.trust_anchor()) else {
            return;
        };
        let mut failures = Vec::new();
        for case in CASES {
            let ask = |flag: &str| {
                Lookup::dig(unbound.address(), case.name, case.record_type)
                    .args(["+dnssec", flag])
                    .timeout_seconds(5)
                    .run()
                    .expect("unbound answers")
            };
            if let Err(why) = check(case, &ask("+nocd")) {
                failures.push(why);
            }
            if let Err(why) = check_checking_disabled(case, &ask("+cd"), true) {
                failures.push(why);
            }
        }
        assert!(
            failures.is_empty(),
            "{}\n--- unbound log ---\n{}",
            failures.join("\n"),
            unbound.log()
        );

        // The same anchor as a DNSKEY record.
        let Some(unbound) = Unbound::start(h.root_hints(), h.trust_anchor_dnskey()) else {
            return;
        };
        let case = case_for("www.secure.test.");
        let response = Lookup::dig(unbound.address(), case.name, "A")
            .arg("+dnssec")
            .run()
            .unwrap();
        check(case, &response).unwrap();
    }
}
