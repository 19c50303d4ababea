//! End-to-end tests of DNSSEC validation (issue 10, item 7): `juris serve --trust-anchor FILE`
//! resolving through a signed NSD hierarchy built by the testkit (`signed_world`: a test
//! root with its own key, a TLD signed with RSASHA256 + NSEC3, and second-level zones that
//! are secure, insecure, or broken on purpose), asked with `dig`, which shares no code
//! with juris. The expected outcome of every name lives in `signed_world::CASES`, which
//! the testkit's own tests also check against Unbound.
//!
//! Needs `nsd`, `dig` and `ldns-signzone` (`apt-get install nsd bind9-dnsutils ldnsutils`)
//! and root (NSD binds port 53 on 127.x addresses).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: a failed expectation is a test failure"
)]

use std::fs;
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::thread;

use juris_testkit::dig::{Lookup, Response};
use juris_testkit::hierarchy::Hierarchy;
use juris_testkit::juris::Juris;
use juris_testkit::signed_world::{
    self, case_for, check, check_checking_disabled, Case, Outcome, CASES,
};

const JURIS: &str = env!("CARGO_BIN_EXE_juris");

/// One signed hierarchy for the whole test binary (its NSD servers die with the process).
fn world() -> &'static Hierarchy {
    static WORLD: OnceLock<Hierarchy> = OnceLock::new();
    WORLD.get_or_init(signed_world::start)
}

/// juris validating with the test root's DS as its trust anchor, plus `extra` arguments.
fn juris_with(extra: &[&str]) -> Juris {
    let world = world();
    Juris::builder(JURIS)
        .root_hints(world.root_hints())
        .args(["--threads", "2"])
        .arg("--trust-anchor")
        .arg(world.trust_anchor())
        .args(extra)
        .env("RUST_LOG", "debug")
        .start()
}

/// juris started with `--config` only: a `[dnssec]` table with the test root's anchor file
/// and `more` keys, written into `directory`.
fn juris_with_config(directory: &tempfile::TempDir, more: &str) -> Juris {
    juris_with_config_and_log(directory, more, "info")
}

/// [`juris_with_config`] with `RUST_LOG=log`.
fn juris_with_config_and_log(directory: &tempfile::TempDir, more: &str, log: &str) -> Juris {
    let world = world();
    let config = directory.path().join("juris.toml");
    let text = format!(
        "[dnssec]\ntrust_anchors = [\"{}\"]\n{more}",
        world.trust_anchor().display()
    );
    fs::write(&config, text).unwrap();
    Juris::builder(JURIS)
        .root_hints(world.root_hints())
        .arg("--config")
        .arg(&config)
        .env("RUST_LOG", log)
        .start()
}

fn juris() -> Juris {
    juris_with(&[])
}

fn ask(lookup: &Lookup) -> Response {
    lookup
        .run()
        .unwrap_or_else(|failure| panic!("{}: {failure}", lookup.command_line()))
}

/// `dig +dnssec` (DO=1) plus `options`.
fn dig(server: SocketAddr, name: &str, options: &[&str]) -> Response {
    ask(&Lookup::dig(server, name, "A")
        .arg("+dnssec")
        .args(options.iter().copied())
        .timeout_seconds(5))
}

/// Asks for `name` with DO=1 and checks its outcome.
fn expect_outcome(server: SocketAddr, name: &str) -> Response {
    let case = case_for(name);
    let response = dig(server, name, &[]);
    check(case, &response).unwrap_or_else(|why| panic!("{why}"));
    response
}

fn assert_ede(response: &Response, code: u16) {
    assert!(
        response.extended_errors.iter().any(|ede| ede.code == code),
        "EDE {code} expected: {}",
        response.output
    );
}

/// Asks a bogus case and checks SERVFAIL with exactly its precise EDE code first, and the
/// zone named in EXTRA-TEXT.
fn expect_bogus(name: &str, code: u16, zone: &str) {
    let juris = juris();
    let response = expect_outcome(juris.address(), name);
    let first = response.extended_errors.first().expect("an EDE");
    assert_eq!(first.code, code, "{}", response.output);
    assert!(
        first.text.as_deref().is_some_and(|text| text
            .to_ascii_lowercase()
            .contains(zone.trim_end_matches('.'))),
        "EXTRA-TEXT names {zone}: {}",
        response.output
    );
}

#[test]
fn secure_answers_have_ad_with_do_and_with_ad_and_do_clients_get_the_rrsigs() {
    let juris = juris();
    for case in CASES.iter().filter(|case| case.outcome == Outcome::Secure) {
        let with_do = dig(juris.address(), case.name, &[]);
        check(case, &with_do).unwrap_or_else(|why| panic!("{why}"));
        let signatures = with_do
            .answer
            .iter()
            .chain(&with_do.authority)
            .filter(|record| record.record_type == "RRSIG")
            .count();
        assert!(signatures > 0, "DO=1 gets the RRSIGs: {}", with_do.output);

        // AD=1 without DO (RFC 6840 5.7): AD, and no DNSSEC records.
        let with_ad = ask(&Lookup::dig(juris.address(), case.name, "A")
            .args(["+adflag", "+nodnssec"])
            .timeout_seconds(5));
        assert!(with_ad.has_flag("ad"), "{}", with_ad.output);
        assert_eq!(with_ad.status, case.rcode, "{}", with_ad.output);
        assert!(
            with_ad
                .answer
                .iter()
                .chain(&with_ad.authority)
                .all(|record| record.record_type != "RRSIG"),
            "no RRSIG without DO: {}",
            with_ad.output
        );

        // Neither DO nor AD: no AD.
        let plain = ask(&Lookup::dig(juris.address(), case.name, "A")
            .args(["+noadflag", "+nodnssec"])
            .timeout_seconds(5));
        assert!(!plain.has_flag("ad"), "{}", plain.output);
    }
}

#[test]
fn the_dnskey_form_of_the_trust_anchor_works_too() {
    let world = world();
    let juris = Juris::builder(JURIS)
        .root_hints(world.root_hints())
        .arg("--trust-anchor")
        .arg(world.trust_anchor_dnskey())
        .start();
    expect_outcome(juris.address(), "www.secure.test.");
    expect_outcome(juris.address(), "www.expired.test.");
}

#[test]
fn an_insecure_delegation_gives_no_ad() {
    let juris = juris();
    expect_outcome(juris.address(), "www.insecure.test.");
    expect_outcome(juris.address(), "www.nods.test.");
}

#[test]
fn expired_signatures_give_servfail_with_ede_7() {
    expect_bogus("www.expired.test.", 7, "expired.test.");
}

#[test]
fn signatures_not_yet_valid_give_servfail_with_ede_8() {
    expect_bogus("www.future.test.", 8, "future.test.");
}

#[test]
fn a_ds_pointing_at_a_missing_key_gives_servfail_with_ede_9() {
    expect_bogus("www.missingkey.test.", 9, "missingkey.test.");
}

#[test]
fn stripped_rrsigs_give_servfail_with_ede_10() {
    expect_bogus("www.stripped.test.", 10, "stripped.test.");
}

#[test]
fn a_forged_nxdomain_without_nsec_gives_servfail_with_ede_12() {
    expect_bogus("nx.nonsec.test.", 12, "nonsec.test.");
}

#[test]
fn nsec_and_nsec3_denials_are_secure() {
    let juris = juris();
    expect_outcome(juris.address(), "nx.secure.test.");
    expect_outcome(juris.address(), "nx.nsec3.test.");
}

/// One of twoservers.test.'s two servers serves wrong signatures on www and *.any: juris
/// asks the other one before calling the answer bogus (as Unbound does), so every answer is
/// secure. Which server a fresh resolver asks first is a uniform choice (neither has an RTT
/// yet, design 0025); once one is measured it keeps the queries, and names under the wildcard
/// are then synthesised from the cache (design 0020), so a single resolver may never meet the
/// tampered server. Fresh resolvers are started until one asked it first (the log line proves
/// the re-query happened): every answer must be secure, whichever server was asked first.
#[test]
fn bogus_data_from_one_server_is_replaced_by_the_other_servers_secure_answer() {
    const RESOLVERS: usize = 24; // all choosing the good server first: probability 2^-24
    for _ in 0..RESOLVERS {
        let juris = juris();
        for name in ["www.twoservers.test.", "n0.any.twoservers.test."] {
            let response = dig(juris.address(), name, &[]);
            assert_eq!(response.status, "NOERROR", "{name}: {}", response.output);
            assert!(response.has_flag("ad"), "{name}: {}", response.output);
        }
        if juris.stderr().contains("bogus: asking other servers") {
            return;
        }
    }
    panic!("none of {RESOLVERS} fresh resolvers asked the tampered server first and retried");
}

/// RFC 8198 (`dnssec.aggressive_nsec`, on by default): after the secure NXDOMAIN for
/// nx.secure.test., whose NSEC records cover secure.test. → to-insecure.secure.test. and so
/// the wildcard *.secure.test. too, another name in that range is denied from the cache.
#[test]
fn a_name_inside_a_validated_nsec_range_is_denied_from_the_cache() {
    const SYNTHESISED: &str = "answer synthesised from the validated cache";
    let juris = juris();
    expect_outcome(juris.address(), "nx.secure.test.");
    assert!(!juris.stderr().contains(SYNTHESISED), "{}", juris.stderr());
    let response = dig(juris.address(), "ny.secure.test.", &[]);
    assert_eq!(response.status, "NXDOMAIN", "{}", response.output);
    assert!(response.has_flag("ad"), "{}", response.output);
    assert!(juris.stderr().contains(SYNTHESISED), "{}", juris.stderr());
    // A name that exists, outside the range, is still resolved.
    expect_outcome(juris.address(), "www.secure.test.");
}

#[test]
fn nsec3_opt_out_over_an_unsigned_delegation_is_insecure() {
    let juris = juris();
    expect_outcome(juris.address(), "www.sub.optout.test.");
}

#[test]
fn wildcard_answers_are_proven_with_nsec_and_nsec3() {
    let juris = juris();
    expect_outcome(juris.address(), "a.wild.secure.test.");
    expect_outcome(juris.address(), "a.wild.nsec3.test.");
    // Another expansion of each wildcard, asked twice: resolved, then from the cache.
    for (wildcard, other) in [
        ("a.wild.secure.test.", "b.wild.secure.test."),
        ("a.wild.nsec3.test.", "b.wild.nsec3.test."),
    ] {
        let case = case_for(wildcard);
        for _ in 0..2 {
            let response = dig(juris.address(), other, &[]);
            check(case, &response).unwrap_or_else(|why| panic!("{other}: {why}"));
        }
    }
}

#[test]
fn a_cname_chain_across_secure_and_insecure_zones_has_no_ad() {
    let juris = juris();
    let into = expect_outcome(juris.address(), "to-insecure.secure.test.");
    assert_eq!(
        into.answer_data("CNAME"),
        ["www.insecure.test."],
        "{}",
        into.output
    );
    let back = expect_outcome(juris.address(), "back.insecure.test.");
    assert_eq!(
        back.answer_data("CNAME"),
        ["www.secure.test."],
        "{}",
        back.output
    );
    // The secure target alone still validates.
    expect_outcome(juris.address(), "www.secure.test.");
}

#[test]
fn unsupported_digest_or_algorithm_is_insecure_not_bogus() {
    let juris = juris();
    let digest = expect_outcome(juris.address(), "www.unknowndigest.test.");
    assert_ede(&digest, 2);
    // Ed448: secure if juris implements it, otherwise insecure with EDE 1 (RFC 8624).
    expect_outcome(juris.address(), "www.ed448.test.");
}

/// Asks `name` (its A record is `address`) and checks that it is secure (AD) and plain (no
/// EDE), or insecure with `ede`.
fn expect_security(server: SocketAddr, name: &str, address: &str, ede: Option<u16>) {
    let response = dig(server, name, &[]);
    assert_eq!(response.status, "NOERROR", "{name}: {}", response.output);
    assert_eq!(
        response.answer_data("A"),
        [address],
        "{name}: {}",
        response.output
    );
    let codes: Vec<u16> = response.extended_errors.iter().map(|e| e.code).collect();
    let wanted: Vec<u16> = ede.into_iter().collect();
    assert_eq!(
        response.has_flag("ad"),
        ede.is_none(),
        "{name}: {}",
        response.output
    );
    assert_eq!(codes, wanted, "{name}: {}", response.output);
}

#[test]
fn short_rsa_keys_are_validated_and_dsa_only_when_asked() {
    // ring has neither DSA nor RSA keys under 1024 bits: RustCrypto verifies them (design 0013).
    let juris = juris();
    expect_security(juris.address(), "www.rsa512.test.", "192.0.2.50", None);
    // DSA: RFC 8624 says validators MUST NOT, so by default it is insecure with EDE 1 ...
    expect_security(juris.address(), "www.dsa.test.", "192.0.2.49", Some(1));
    // ... and secure with `dnssec.validate_dsa = true`, as Unbound and BIND have it.
    let directory = tempfile::tempdir().unwrap();
    let dsa = juris_with_config(&directory, "validate_dsa = true\n");
    expect_security(dsa.address(), "www.dsa.test.", "192.0.2.49", None);
}

#[test]
fn an_rrsig_question_is_answered_without_ad_not_refused() {
    // RRSIGs are not signed themselves (RFC 4035 §2.2): the data, never AD, never SERVFAIL.
    let juris = juris();
    let response = ask(&Lookup::dig(juris.address(), "www.secure.test.", "RRSIG")
        .arg("+dnssec")
        .timeout_seconds(5));
    assert_eq!(response.status, "NOERROR", "{}", response.output);
    assert!(
        !response.answer_data("RRSIG").is_empty(),
        "{}",
        response.output
    );
    assert!(!response.has_flag("ad"), "{}", response.output);
}

#[test]
fn cd_passes_bogus_data_without_ad_and_the_next_query_is_still_validated() {
    let juris = juris();
    let bogus = CASES
        .iter()
        .filter(|case| matches!(case.outcome, Outcome::Bogus(_)))
        .filter(|case| case.name != "www.keytrap.test.");
    for case in bogus {
        let unchecked = dig(juris.address(), case.name, &["+cd"]);
        check_checking_disabled(case, &unchecked, false).unwrap_or_else(|why| panic!("{why}"));
        let validated = dig(juris.address(), case.name, &[]);
        check(case, &validated).unwrap_or_else(|why| panic!("after CD=1: {why}"));
    }
    // And CD=1 on secure data: the data, no AD.
    let case = case_for("www.secure.test.");
    let response = dig(juris.address(), case.name, &["+cd"]);
    check_checking_disabled(case, &response, false).unwrap_or_else(|why| panic!("{why}"));
}

#[test]
fn the_keytrap_zone_is_refused_while_other_queries_keep_being_answered() {
    let juris = juris();
    let server = juris.address();
    let trap = case_for("a.trap.keytrap.test.");
    let good = case_for("a.wild.nsec3.test.");
    thread::scope(|scope| {
        let attackers: Vec<_> = (0..2)
            .map(|worker| {
                scope.spawn(move || {
                    (0..15)
                        .map(|index| {
                            let name = format!("t{worker}-{index}.trap.keytrap.test.");
                            // Checked as the case it expands (the output names the query).
                            check(trap, &dig(server, &name, &[]))
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        // Meanwhile, fresh secure names (each needs its own NSEC3 wildcard proof).
        for index in 0..20 {
            let name = format!("g{index}.wild.nsec3.test.");
            check(good, &dig(server, &name, &[]))
                .unwrap_or_else(|why| panic!("a good query during the attack: {why}"));
        }
        for attacker in attackers {
            for result in attacker.join().unwrap() {
                result.unwrap_or_else(|why| panic!("KeyTrap query: {why}"));
            }
        }
    });
    expect_outcome(server, "www.keytrap.test.");
    assert!(juris.is_running());
}

#[test]
fn a_blocked_secure_name_has_no_ad_and_ede_16() {
    let orders = tempfile::tempdir().unwrap();
    fs::write(
        orders.path().join("block.json"),
        r#"{"id": "TEST-DNSSEC-1", "kind": "court_order", "authority": "Tribunale di Prova",
            "reference": "RG 1/2026", "jurisdictions": ["*"], "action": "nxdomain",
            "state": "active", "targets": [{"type": "domain", "value": "www.secure.test"}]}"#,
    )
    .unwrap();
    let juris = juris_with(&["--orders", &orders.path().display().to_string()]);
    for options in [&["+dnssec"][..], &["+adflag"][..]] {
        let response = ask(&Lookup::dig(juris.address(), "www.secure.test.", "A")
            .args(options.iter().copied())
            .timeout_seconds(5));
        assert_eq!(response.status, "NXDOMAIN", "{}", response.output);
        assert!(
            !response.has_flag("ad"),
            "a synthesised answer is never AD: {}",
            response.output
        );
        assert_ede(&response, 16);
    }
    // The name next to it is still secure.
    expect_outcome(juris.address(), "a.wild.secure.test.");
}

#[test]
fn no_dnssec_turns_validation_off() {
    // No trust anchor either: the built-in root anchor would make the test root bogus.
    let juris = Juris::builder(JURIS)
        .root_hints(world().root_hints())
        .arg("--no-dnssec")
        .start();
    for name in ["www.secure.test.", "www.expired.test."] {
        let response = dig(juris.address(), name, &["+adflag"]);
        assert_eq!(response.status, "NOERROR", "{}", response.output);
        assert_eq!(
            response.answer_data("A"),
            [case_for(name).address.unwrap()],
            "{}",
            response.output
        );
        assert!(!response.has_flag("ad"), "{}", response.output);
    }
}

#[test]
fn a_negative_trust_anchor_makes_a_bogus_zone_insecure() {
    let juris = juris_with(&["--negative-trust-anchor", "expired.test"]);
    let case = case_for("www.expired.test.");
    let response = dig(juris.address(), case.name, &[]);
    check(
        &Case {
            outcome: Outcome::Insecure,
            ..*case
        },
        &response,
    )
    .unwrap_or_else(|why| panic!("{why}"));
    // Other bogus zones stay bogus.
    expect_outcome(juris.address(), "www.future.test.");
}

#[test]
fn every_case_of_the_signed_world_has_its_outcome() {
    let juris = juris();
    let failures: Vec<String> = CASES
        .iter()
        .filter_map(|case| check(case, &dig(juris.address(), case.name, &[])).err())
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// `juris check-config FILE` on `text`: (success, stdout + stderr).
fn check_config(directory: &std::path::Path, text: &str) -> (bool, String) {
    let file = directory.join("juris.toml");
    fs::write(&file, text).unwrap();
    let output = std::process::Command::new(JURIS)
        .arg("check-config")
        .arg(&file)
        .output()
        .unwrap();
    let mut all = String::from_utf8_lossy(&output.stdout).into_owned();
    all.push_str(&String::from_utf8_lossy(&output.stderr));
    (output.status.success(), all)
}

#[test]
fn check_config_validates_the_trust_anchor_files() {
    let world = world();
    let directory = tempfile::tempdir().unwrap();
    for anchor in [world.trust_anchor(), world.trust_anchor_dnskey()] {
        let (ok, output) = check_config(
            directory.path(),
            &format!(
                "[dnssec]\nenabled = true\ntrust_anchors = [\"{}\"]\nnegative_trust_anchors = [\"expired.test\"]\n",
                anchor.display()
            ),
        );
        assert!(ok, "{output}");
    }
    let garbage = directory.path().join("garbage.ds");
    fs::write(&garbage, ". IN DS this-is-not-a-key-tag 13 2 00\n").unwrap();
    let missing = directory.path().join("missing.ds");
    for bad in [&garbage, &missing] {
        let (ok, output) = check_config(
            directory.path(),
            &format!("[dnssec]\ntrust_anchors = [\"{}\"]\n", bad.display()),
        );
        assert!(!ok, "{} must be refused: {output}", bad.display());
        assert!(
            output.contains(&bad.display().to_string()),
            "the error names the file: {output}"
        );
        assert!(!output.contains("panicked"), "{output}");
    }
}

#[test]
fn the_config_keys_carry_the_anchors_like_the_flags() {
    let world = world();
    let directory = tempfile::tempdir().unwrap();
    let juris = juris_with_config(&directory, "negative_trust_anchors = [\"future.test\"]\n");
    let config = directory.path().join("juris.toml");
    expect_outcome(juris.address(), "www.secure.test.");
    expect_outcome(juris.address(), "www.expired.test.");
    let case = case_for("www.future.test.");
    let insecure = Case {
        outcome: Outcome::Insecure,
        ..*case
    };
    check(&insecure, &dig(juris.address(), case.name, &[])).unwrap_or_else(|why| panic!("{why}"));

    fs::write(&config, "[dnssec]\nenabled = false\n").unwrap();
    let off = Juris::builder(JURIS)
        .root_hints(world.root_hints())
        .arg("--config")
        .arg(&config)
        .start();
    let response = dig(off.address(), "www.secure.test.", &["+adflag"]);
    assert_eq!(response.status, "NOERROR", "{}", response.output);
    assert!(!response.has_flag("ad"), "{}", response.output);
    // Validation is really off: an expired signature does not make the answer bogus.
    let response = dig(off.address(), "www.expired.test.", &[]);
    assert_eq!(response.status, "NOERROR", "{}", response.output);
}

/// With a 512-byte EDNS buffer upstream, the RSA-signed `test.` zone's DNSKEY RRset (and the
/// referrals carrying DS and RRSIGs) come back truncated: the chain of trust is built from
/// the answers juris fetches again over TCP, and the answers below stay secure.
#[test]
fn a_dnskey_rrset_too_large_for_udp_is_validated_over_tcp() {
    let directory = tempfile::tempdir().unwrap();
    let juris = juris_with_config_and_log(
        &directory,
        "[resolver]\nedns_buffer_size = 512\n",
        "info,juris_resolver::upstream=debug",
    );
    expect_outcome(juris.address(), "www.secure.test.");
    expect_outcome(juris.address(), "www.nsec3.test.");
    expect_outcome(juris.address(), "www.test.");
    let log = juris.stderr();
    assert!(
        log.lines()
            .any(|line| line.contains("upstream query (tcp") && line.contains("DNSKEY")),
        "a DNSKEY query went over TCP: {log}"
    );
}

/// The key tags of the test root's trust anchor (the DS lines juris is given).
fn root_anchor_key_tags() -> Vec<u16> {
    let text = fs::read_to_string(world().trust_anchor()).unwrap();
    let tags: Vec<u16> = text
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let at = fields.iter().position(|f| f.eq_ignore_ascii_case("DS"))?;
            fields.get(at + 1)?.parse().ok()
        })
        .collect();
    assert!(!tags.is_empty(), "a DS line in the anchor file: {text}");
    tags
}

/// RFC 8509 root-key-sentinel: secure answers to `root-key-sentinel-is-ta-<tag>` and
/// `root-key-sentinel-not-ta-<tag>` names (here through the signed wildcard
/// `*.wild.secure.test.`) are SERVFAIL exactly when the label contradicts the root trust
/// anchor's key tags; CD=1 gets the data, and insecure answers are never touched.
#[test]
fn root_key_sentinel_answers_by_the_root_trust_anchor_key_tags() {
    let tags = root_anchor_key_tags();
    let right = tags[0];
    let wrong = (0..=u16::MAX)
        .map(|t| right.wrapping_add(t).wrapping_add(1))
        .find(|t| !tags.contains(t))
        .unwrap();
    let juris = juris();
    let name =
        |kind: &str, tag: u16, zone: &str| format!("root-key-sentinel-{kind}-ta-{tag:05}.{zone}");
    let secure = "wild.secure.test.";
    for (kind, tag, refused) in [
        ("is", right, false),
        ("not", right, true),
        ("is", wrong, true),
        ("not", wrong, false),
    ] {
        let qname = name(kind, tag, secure);
        let response = dig(juris.address(), &qname, &["+adflag"]);
        if refused {
            assert_eq!(response.status, "SERVFAIL", "{}", response.output);
            assert!(response.answer.is_empty(), "{}", response.output);
            // CD=1 disables the sentinel as it disables validation.
            let unchecked = dig(juris.address(), &qname, &["+cdflag"]);
            assert_eq!(unchecked.status, "NOERROR", "{}", unchecked.output);
            assert_eq!(
                unchecked.answer_data("A"),
                ["192.0.2.2"],
                "{}",
                unchecked.output
            );
            assert!(!unchecked.has_flag("ad"), "{}", unchecked.output);
        } else {
            assert_eq!(response.status, "NOERROR", "{}", response.output);
            assert!(response.has_flag("ad"), "{}", response.output);
            assert_eq!(
                response.answer_data("A"),
                ["192.0.2.2"],
                "{}",
                response.output
            );
        }
        // Only A and AAAA are sentinel queries: the TXT question gets the normal NODATA.
        let txt = ask(&Lookup::dig(juris.address(), &qname, "TXT")
            .arg("+dnssec")
            .timeout_seconds(5));
        assert_eq!(txt.status, "NOERROR", "{}", txt.output);
    }
    // An insecure answer (nods.test. is signed but has no DS) is never refused.
    let insecure = dig(juris.address(), &name("is", wrong, "trap.nods.test."), &[]);
    assert_eq!(insecure.status, "NOERROR", "{}", insecure.output);
    assert!(!insecure.has_flag("ad"), "{}", insecure.output);
    assert_eq!(
        insecure.answer_data("A"),
        ["192.0.2.48"],
        "{}",
        insecure.output
    );
}

/// Runs `juris ARGS` to completion; its stdout (the command must succeed).
fn run_juris(args: &[&std::ffi::OsStr]) -> String {
    let output = std::process::Command::new(JURIS)
        .args(args)
        .env_remove("JURIS_TOKEN")
        .env_remove("JURIS_API")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "juris {args:?}: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// `state` and `ede` of the `validation` object of an explain JSON document.
fn validation_of(json: &serde_json::Value) -> (Option<String>, Option<u64>) {
    let validation = &json["validation"];
    (
        validation["state"].as_str().map(str::to_owned),
        validation["ede"].as_u64(),
    )
}

/// Issue 10 item 6: explain shows the DNSSEC validation state of the live answer — the admin
/// API's `/v1/explain` on the running server after real queries (secure, insecure, bogus with
/// its EDE, none before the name was asked), and `juris explain --resolve` on the command line.
#[test]
fn explain_shows_the_validation_state_of_the_live_answer() {
    let world = world();
    let directory = tempfile::tempdir().unwrap();
    let data = directory.path().join("data");
    fs::create_dir(&data).unwrap();
    let token = run_juris(&[
        "token".as_ref(),
        "create".as_ref(),
        "--role".as_ref(),
        "viewer".as_ref(),
        "--name".as_ref(),
        "reader".as_ref(),
        "--data-dir".as_ref(),
        data.as_os_str(),
    ])
    .trim()
    .to_owned();
    let api = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let juris = juris_with(&[
        "--data-dir",
        data.to_str().unwrap(),
        "--api-listen",
        &api.to_string(),
    ]);
    let explain = |name: &str| -> serde_json::Value {
        let output = std::process::Command::new("curl")
            .args(["-sS", "--fail", "--max-time", "10", "-H"])
            .arg(format!("Authorization: Bearer {token}"))
            .arg(format!("http://{api}/v1/explain?name={name}"))
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "curl: {}{}",
            String::from_utf8_lossy(&output.stderr),
            juris.stderr()
        );
        serde_json::from_slice(&output.stdout).unwrap()
    };
    // Not asked yet: no live answer, no validation state.
    let before = explain("www.secure.test.");
    assert!(before["validation"].is_null(), "{before}");
    assert_eq!(before["verdict"], "allow", "{before}");
    let cases = [
        ("www.secure.test.", "secure", None),
        ("www.insecure.test.", "insecure", None),
        ("www.expired.test.", "bogus", Some(7)),
    ];
    for (name, state, ede) in cases {
        expect_outcome(juris.address(), name);
        let view = explain(name);
        assert_eq!(
            validation_of(&view),
            (Some(state.to_owned()), ede),
            "{name}: {view}"
        );
    }
    let bogus = explain("www.expired.test.");
    assert!(
        bogus["validation"]["text"]
            .as_str()
            .is_some_and(|text| text.contains("expired.test")),
        "{bogus}"
    );

    // The command line: a config with the hierarchy's hints and anchor, --resolve.
    let config = directory.path().join("juris.toml");
    fs::write(
        &config,
        format!(
            "[resolver]\nroot_hints = \"{}\"\n[dnssec]\ntrust_anchors = [\"{}\"]\n",
            world.root_hints().display(),
            world.trust_anchor().display()
        ),
    )
    .unwrap();
    let cli = |name: &str, extra: &[&str]| -> String {
        let mut args: Vec<&std::ffi::OsStr> = vec![
            "explain".as_ref(),
            name.as_ref(),
            "--client".as_ref(),
            "127.0.0.1".as_ref(),
            "--config".as_ref(),
            config.as_os_str(),
        ];
        args.extend(extra.iter().map(|arg| std::ffi::OsStr::new(*arg)));
        run_juris(&args)
    };
    let secure: serde_json::Value =
        serde_json::from_str(&cli("www.secure.test.", &["--resolve", "--json"])).unwrap();
    assert_eq!(
        validation_of(&secure),
        (Some("secure".to_owned()), None),
        "{secure}"
    );
    let bogus = cli("www.missingkey.test.", &["--resolve"]);
    assert!(bogus.contains("dnssec:       bogus (EDE 9"), "{bogus}");
    // Without --resolve nothing is resolved: no live answer to judge.
    let offline = cli("www.secure.test.", &[]);
    assert!(offline.contains("no live answer"), "{offline}");
}

/// Issue 10 item 5: forwarding mode validates what it gets. juris forwards to an upstream
/// that does not validate (a second juris with `--no-dnssec`, recursing over the signed
/// hierarchy: it passes the DNSSEC records on, sets no AD, refuses nothing): AD on a secure
/// answer, none on an insecure one, SERVFAIL with the precise EDE on bogus data. Listed in
/// `dnssec.forwarders_without_dnssec`, the same upstream is trusted for nothing: no AD, and
/// the bogus data is passed on as insecure.
#[test]
fn forwarding_mode_validates_the_answers_of_a_non_validating_upstream() {
    let world = world();
    let upstream = juris_with(&["--no-dnssec"]);
    // The upstream really does not validate: bogus data comes back, without AD.
    let unvalidated = dig(upstream.address(), "www.expired.test.", &[]);
    assert_eq!(unvalidated.status, "NOERROR", "{}", unvalidated.output);
    assert!(!unvalidated.has_flag("ad"), "{}", unvalidated.output);

    let forwarder = Juris::builder(JURIS)
        .arg("--forward")
        .arg(upstream.address().to_string())
        .arg("--trust-anchor")
        .arg(world.trust_anchor())
        .start();
    for name in [
        "www.secure.test.",
        "nx.nsec3.test.",
        "a.wild.secure.test.",
        "www.insecure.test.",
        "to-insecure.secure.test.",
        "www.expired.test.",
        "www.missingkey.test.",
        "www.stripped.test.",
    ] {
        expect_outcome(forwarder.address(), name);
    }

    let directory = tempfile::tempdir().unwrap();
    let config = directory.path().join("juris.toml");
    fs::write(
        &config,
        format!(
            "[resolver]\nforward = [\"{upstream}\"]\n[dnssec]\ntrust_anchors = [\"{}\"]\n\
             forwarders_without_dnssec = [\"{upstream}\"]\n",
            world.trust_anchor().display(),
            upstream = upstream.address()
        ),
    )
    .unwrap();
    let stripped = Juris::builder(JURIS).arg("--config").arg(&config).start();
    for name in ["www.secure.test.", "www.expired.test."] {
        let response = dig(stripped.address(), name, &[]);
        assert_eq!(response.status, "NOERROR", "{name}: {}", response.output);
        assert!(!response.has_flag("ad"), "{name}: {}", response.output);
        assert_eq!(
            response.answer_data("A"),
            [case_for(name).address.unwrap()],
            "{name}: {}",
            response.output
        );
    }
}
