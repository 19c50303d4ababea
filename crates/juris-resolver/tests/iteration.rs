//! Iteration against misbehaving or inconsistent authorities (the situations of Deckard's
//! `iter_*` scenarios): scripted fake servers on 127.0.0.x, one port per test.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

mod support;

use std::sync::Arc;

use domain::base::iana::Rcode;
use domain::base::Rtype;
use juris_resolver::cache::AnswerKind;
use juris_resolver::{Resolver, ResolverConfig};
use support::{question, recursive_config, resolver, sections, zone, Canned, FakeAuthority};

fn config(port: u16, qname_minimisation: bool) -> ResolverConfig {
    ResolverConfig {
        qname_minimisation,
        ipv6: false,
        ..recursive_config(port)
    }
}

/// The root: `test.` on 127.0.0.3 (and whatever else `extra` delegates).
async fn root(port: u16, extra: &[&str]) -> FakeAuthority {
    let mut lines = vec!["test. 86400 NS ns1.test.", "ns1.test. 86400 A 127.0.0.3"];
    lines.extend_from_slice(extra);
    FakeAuthority::serve("127.0.0.2", port, vec![zone(".", &lines)]).await
}

/// `test.` on 127.0.0.3, delegating `example.test.` to 127.0.0.4 with glue.
async fn tld(port: u16) -> FakeAuthority {
    FakeAuthority::serve(
        "127.0.0.3",
        port,
        vec![zone(
            "test.",
            &[
                "example.test. 86400 NS ns1.example.test.",
                "ns1.example.test. 86400 A 127.0.0.4",
            ],
        )],
    )
    .await
}

/// A referral from a non-authoritative server: NS records and glue.
fn referral(ns: &[&str], glue: &[&str]) -> Option<Canned> {
    Some(
        Canned::new(Rcode::NOERROR, false)
            .authority(ns)
            .additional(glue),
    )
}

async fn ask(resolver: &Resolver, qname: &str, qtype: Rtype) -> (Rcode, Vec<String>, Vec<String>) {
    let entry = resolver.resolve(&question(qname, qtype)).await.unwrap();
    sections(entry.wire())
}

/// The queries `server` saw, as "QNAME QTYPE", in order.
fn queries_seen(server: &FakeAuthority) -> Vec<String> {
    server
        .queries()
        .into_iter()
        .map(|q| format!("{} {}", q.qname, q.qtype))
        .collect()
}

/// Asserts that the question fails for want of a server that answers it (`why` says why).
async fn unreachable(resolver: &Resolver, qname: &str, qtype: Rtype, why: &str) {
    let error = resolver
        .resolve(&question(qname, qtype))
        .await
        .expect_err(why);
    assert!(
        matches!(error, juris_resolver::ResolveError::NoReachableAuthority(_)),
        "{why}: {error:?}"
    );
}

/// RFC 7816 §2 / RFC 9156 §2.1: the minimised probes ask for NS, the one question every
/// delegating server answers with the referral (these servers answer nothing else).
#[tokio::test]
async fn minimisation_probes_ask_for_ns_of_the_next_label() {
    let port = 47_401;
    let only_ns = |rcode_other: Rcode| {
        move |qname: &str, qtype: Rtype| match (qname, qtype) {
            ("test.", Rtype::NS) => referral(
                &["test. 3600 NS ns1.test."],
                &["ns1.test. 3600 A 127.0.0.3"],
            ),
            ("example.test.", Rtype::NS) => referral(
                &["example.test. 3600 NS ns1.example.test."],
                &["ns1.example.test. 3600 A 127.0.0.4"],
            ),
            _ => Some(Canned::new(rcode_other, false)),
        }
    };
    let root = FakeAuthority::scripted("127.0.0.2", port, only_ns(Rcode::SERVFAIL)).await;
    let tld = FakeAuthority::scripted("127.0.0.3", port, only_ns(Rcode::SERVFAIL)).await;
    let _sld = FakeAuthority::serve(
        "127.0.0.4",
        port,
        vec![zone(
            "example.test.",
            &["www.example.test. 300 A 192.0.2.80"],
        )],
    )
    .await;
    let (resolver, _) = resolver(config(port, true));
    let (rcode, answer, _) = ask(&resolver, "www.example.test.", Rtype::A).await;
    assert_eq!(rcode, Rcode::NOERROR);
    assert_eq!(answer, vec!["www.example.test. A 192.0.2.80"]);
    let seen = |server: &FakeAuthority| -> Vec<(String, Rtype)> {
        server
            .queries()
            .into_iter()
            .map(|q| (q.qname, q.qtype))
            .collect()
    };
    assert_eq!(seen(&root), vec![("test.".to_string(), Rtype::NS)]);
    assert_eq!(seen(&tld), vec![("example.test.".to_string(), Rtype::NS)]);
}

/// An authoritative "answer" whose authority section points up to the root is a lame server
/// (it is not authoritative for the zone after all), not a NODATA.
#[tokio::test]
async fn upward_referral_marks_the_server_lame() {
    let port = 47_402;
    let _root = root(port, &[]).await;
    let _tld = tld(port).await;
    let _sld = FakeAuthority::scripted("127.0.0.4", port, |qname, qtype| match (qname, qtype) {
        ("example.test.", Rtype::A) => {
            Some(Canned::new(Rcode::NOERROR, true).answer(&["example.test. 120 A 192.0.2.1"]))
        }
        ("example.test.", Rtype::NS) => Some(
            Canned::new(Rcode::NOERROR, true).answer(&["example.test. 3600 NS ns1.example.test."]),
        ),
        _ => Some(
            Canned::new(Rcode::NOERROR, true)
                .authority(&[". 3600000 NS a.root-servers.net."])
                .additional(&["a.root-servers.net. 3600000 A 198.41.0.4"]),
        ),
    })
    .await;
    for minimise in [false, true] {
        let (resolver, _) = resolver(config(port, minimise));
        let (rcode, answer, _) = ask(&resolver, "example.test.", Rtype::A).await;
        assert_eq!(
            (rcode, answer),
            (
                Rcode::NOERROR,
                vec!["example.test. A 192.0.2.1".to_string()]
            )
        );
        unreachable(
            &resolver,
            "example.test.",
            Rtype::AAAA,
            "an upward referral is no NODATA",
        )
        .await;
    }
}

/// RFC 2308 §2.2 (NODATA type 3): an authoritative empty answer carrying the zone's own NS
/// RRset (no SOA) is a NODATA, not a referral to the zone itself.
#[tokio::test]
async fn nodata_with_the_zones_own_ns_set_is_an_answer() {
    let port = 47_403;
    let _root = root(port, &[]).await;
    let _tld = tld(port).await;
    let _sld = FakeAuthority::scripted("127.0.0.4", port, |qname, qtype| match (qname, qtype) {
        ("ns1.example.test.", Rtype::A) => Some(
            Canned::new(Rcode::NOERROR, true)
                .answer(&["ns1.example.test. 3600 A 127.0.0.4"])
                .authority(&["example.test. 3600 NS ns1.example.test."]),
        ),
        ("ns1.example.test.", Rtype::AAAA) => Some(
            Canned::new(Rcode::NOERROR, true)
                .authority(&["example.test. 3600 NS ns1.example.test."])
                .additional(&["ns1.example.test. 3600 A 127.0.0.4"]),
        ),
        (_, Rtype::NS) => Some(
            Canned::new(Rcode::NOERROR, true).answer(&["example.test. 3600 NS ns1.example.test."]),
        ),
        _ => Some(Canned::new(Rcode::REFUSED, false)),
    })
    .await;
    for minimise in [false, true] {
        let (resolver, _) = resolver(config(port, minimise));
        let entry = resolver
            .resolve(&question("ns1.example.test.", Rtype::AAAA))
            .await
            .unwrap();
        assert_eq!(entry.kind(), AnswerKind::NoData);
    }
}

/// A minimised probe answered (without AA) with the zone's own NS RRset says "no cut here":
/// the resolver goes one label deeper (as Knot Resolver does). The full question answered
/// the same way is a lame server's cached referral, not an answer.
#[tokio::test]
async fn minimised_probe_answered_with_the_zones_own_ns_set_goes_deeper() {
    let port = 47_404;
    let _root = root(port, &[]).await;
    let _tld = FakeAuthority::scripted("127.0.0.3", port, |qname, qtype| match (qname, qtype) {
        ("www.example.test.", Rtype::NS) => Some(
            Canned::new(Rcode::NOERROR, true)
                .answer(&["www.example.test. 3600 NS blackhole."])
                .authority(&["test. 3600 NS ns1.test."]),
        ),
        _ => referral(&["test. 3600 NS ns1.test."], &[]),
    })
    .await;
    let (resolver, _) = resolver(config(port, true));
    let (rcode, answer, _) = ask(&resolver, "www.example.test.", Rtype::NS).await;
    assert_eq!(rcode, Rcode::NOERROR);
    assert_eq!(answer, vec!["www.example.test. NS blackhole."]);
    unreachable(
        &resolver,
        "mail.example.test.",
        Rtype::A,
        "a non-authoritative NS RRset of the zone itself is no answer",
    )
    .await;
}

/// A domain sold to a new operator (Deckard's iter_domain_sale): the old servers keep
/// answering with their NS RRset and addresses (long TTLs), which must not keep the old
/// delegation alive once the parent's expires. Their negative answers pass the zone's NS
/// RRset on beside the SOA.
#[tokio::test]
async fn redelegated_domain_moves_when_the_parents_delegation_expires() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let port = 47_405;
    let _root = root(port, &[]).await;
    let sold = Arc::new(AtomicBool::new(false));
    let _tld = {
        let sold = sold.clone();
        FakeAuthority::scripted("127.0.0.3", port, move |_, _| {
            let address = if sold.load(Ordering::SeqCst) {
                "127.0.0.5"
            } else {
                "127.0.0.4"
            };
            referral(
                &["example.test. 150 NS ns.example.test."],
                &[&format!("ns.example.test. 150 A {address}")],
            )
        })
        .await
    };
    let child = |www: &'static str| {
        move |qname: &str, qtype: Rtype| {
            let apex = ["example.test. 3600 NS ns.example.test."];
            let glue = ["ns.example.test. 3600 A 127.0.0.4"];
            match (qname, qtype) {
                ("www.example.test.", Rtype::A) => Some(
                    Canned::new(Rcode::NOERROR, true)
                        .answer(&[&format!("www.example.test. 100 A {www}")])
                        .authority(&apex)
                        .additional(&glue),
                ),
                _ => Some(
                    Canned::new(Rcode::NXDOMAIN, true)
                        .authority(&["example.test. 3600 SOA a. b. 1 2 3 4 5", apex[0]])
                        .additional(&glue),
                ),
            }
        }
    };
    let _old = FakeAuthority::scripted("127.0.0.4", port, child("192.0.2.4")).await;
    let _new = FakeAuthority::scripted("127.0.0.5", port, child("192.0.2.5")).await;
    for minimise in [false, true] {
        sold.store(false, Ordering::SeqCst);
        let (resolver, clock) = resolver(config(port, minimise));
        let (_, answer, _) = ask(&resolver, "www.example.test.", Rtype::A).await;
        assert_eq!(answer, vec!["www.example.test. A 192.0.2.4"]);
        sold.store(true, Ordering::SeqCst);
        clock.advance(50);
        let (rcode, answer, authority) = ask(&resolver, "nx1.example.test.", Rtype::A).await;
        assert_eq!(rcode, Rcode::NXDOMAIN);
        assert!(answer.is_empty());
        assert_eq!(
            authority,
            vec![
                "example.test. SOA a. b. 1 2 3 4 5",
                "example.test. NS ns.example.test."
            ]
        );
        clock.advance(110);
        let (_, answer, _) = ask(&resolver, "www.example.test.", Rtype::A).await;
        assert_eq!(
            answer,
            vec!["www.example.test. A 192.0.2.5"],
            "minimise: {minimise}"
        );
    }
}

/// RFC 2181 §5.4.1: the child's own answer for its name server's address outranks the
/// parent's glue and is tried first; the glue is kept as the fallback, and used when the
/// child's address does not work (Deckard's iter_pcdiff, iter_pcnamerec, iter_pcttl).
#[tokio::test]
async fn parent_side_glue_is_the_fallback_when_the_childs_address_fails() {
    let port = 47_406;
    let _root = root(
        port,
        &["net. 86400 NS ns1.net.", "ns1.net. 86400 A 127.0.0.6"],
    )
    .await;
    let _tld = FakeAuthority::serve(
        "127.0.0.3",
        port,
        vec![zone("test.", &["example.test. 86400 NS ns.example.net."])],
    )
    .await;
    let _net = FakeAuthority::serve(
        "127.0.0.6",
        port,
        vec![zone(
            "net.",
            &[
                "example.net. 86400 NS ns.example.net.",
                "ns.example.net. 200 A 127.0.0.4",
            ],
        )],
    )
    .await;
    // The child says its server is on .5, which fails; the parent's glue (.4) works.
    let child = FakeAuthority::scripted("127.0.0.4", port, |qname, qtype| match (qname, qtype) {
        ("ns.example.net.", Rtype::A) => {
            Some(Canned::new(Rcode::NOERROR, true).answer(&["ns.example.net. 100 A 127.0.0.5"]))
        }
        (name, _) if name.ends_with("example.test.") => {
            Some(Canned::new(Rcode::NOERROR, true).answer(&[&format!("{name} 300 A 192.0.2.80")]))
        }
        _ => Some(
            Canned::new(Rcode::NOERROR, true)
                .authority(&["example.net. 300 SOA a. b. 1 2 3 4 300"]),
        ),
    })
    .await;
    let wrong = FakeAuthority::failing("127.0.0.5", port, Rcode::SERVFAIL).await;
    let (resolver, clock) = resolver(config(port, false));
    let (rcode, answer, _) = ask(&resolver, "www.example.test.", Rtype::A).await;
    assert_eq!(rcode, Rcode::NOERROR);
    assert_eq!(answer, vec!["www.example.test. A 192.0.2.80"]);
    assert_eq!(wrong.count(), 1, "the child's own address is tried first");
    // Past the child's TTL the glue is all that is left, and it is still used.
    clock.advance(150);
    let (_, answer, _) = ask(&resolver, "mail.example.test.", Rtype::A).await;
    assert_eq!(answer, vec!["mail.example.test. A 192.0.2.80"]);
    assert!(child.count_for("mail.example.test.") > 0);
}

/// A cached delegation whose in-zone name server's glue expired first cannot be reached
/// through itself (the address lookup would need the zone's own servers): the parent is
/// asked again and hands out fresh glue (Deckard's iter_ns_badip, iter_timeouted_ns).
#[tokio::test]
async fn cut_whose_glue_expired_is_asked_for_again_at_the_parent() {
    let port = 47_407;
    let _root = root(port, &[]).await;
    let tld = FakeAuthority::serve(
        "127.0.0.3",
        port,
        vec![zone(
            "test.",
            &[
                "example.test. 3600 NS ns1.example.test.",
                "ns1.example.test. 10 A 127.0.0.4",
            ],
        )],
    )
    .await;
    let _sld = FakeAuthority::serve(
        "127.0.0.4",
        port,
        vec![zone(
            "example.test.",
            &[
                "www.example.test. 5 A 192.0.2.80",
                "mail.example.test. 5 A 192.0.2.25",
            ],
        )],
    )
    .await;
    for minimise in [false, true] {
        let (resolver, clock) = resolver(config(port, minimise));
        let (_, answer, _) = ask(&resolver, "www.example.test.", Rtype::A).await;
        assert_eq!(answer, vec!["www.example.test. A 192.0.2.80"]);
        let before = tld.count();
        clock.advance(20);
        let (rcode, answer, _) = ask(&resolver, "mail.example.test.", Rtype::A).await;
        assert_eq!(rcode, Rcode::NOERROR);
        assert_eq!(answer, vec!["mail.example.test. A 192.0.2.25"]);
        assert!(tld.count() > before, "the parent was asked again");
    }
}

/// DNAME corner cases (RFC 6672, Deckard's iter_dname_insec): a substitution that would be too
/// long is the server's YXDOMAIN, passed on with the DNAME; a DNAME that maps a name onto
/// itself is a loop, SERVFAIL with the chain; a DNAME met twice on the way is listed once.
#[tokio::test]
async fn dname_yxdomain_loops_and_repeats() {
    let port = 47_408;
    let long = format!("{0}.{0}.{0}.{1}.", "x".repeat(63), "y".repeat(58));
    let _root = root(port, &["x. 86400 NS ns1.test.", "s. 3600 TXT end"]).await;
    let _tld = {
        let long = long.clone();
        FakeAuthority::scripted("127.0.0.3", port, move |qname, qtype| {
            let dname = format!("long.test. 3600 DNAME {long}");
            match (qname, qtype) {
                ("too.long.test.", _) => Some(Canned::new(Rcode::YXDOMAIN, true).answer(&[&dname])),
                ("cyc.test.", _) => Some(Canned::new(Rcode::NOERROR, true).answer(&[
                    "cyc.test. 3600 DNAME cyc.test.",
                    "a.cyc.test. 3600 CNAME a.cyc.test.",
                ])),
                ("a.cyc.test.", _) => Some(Canned::new(Rcode::NOERROR, true).answer(&[
                    "cyc.test. 3600 DNAME cyc.test.",
                    "a.cyc.test. 3600 CNAME a.cyc.test.",
                ])),
                // x. DNAME . (the root zone's server serves x. too, as in the scenario)
                ("s.x.x.", _) => Some(
                    Canned::new(Rcode::NOERROR, true)
                        .answer(&["x. 3600 DNAME .", "s.x.x. 3600 CNAME s.x."]),
                ),
                ("s.x.", _) => Some(
                    Canned::new(Rcode::NOERROR, true)
                        .answer(&["x. 3600 DNAME .", "s.x. 3600 CNAME s."]),
                ),
                // A signed DNAME with a CNAME that is not its synthesis (forged).
                ("forged.y.test.", _) => Some(Canned::new(Rcode::NOERROR, true).answer(&[
                    "y.test. 3600 DNAME test.",
                    "y.test. 3600 RRSIG DNAME test.",
                    "forged.y.test. 3600 CNAME elsewhere.test.",
                ])),
                (_, Rtype::NS) => Some(
                    Canned::new(Rcode::NOERROR, true)
                        .authority(&["test. 3600 SOA a. b. 1 2 3 4 5"]),
                ),
                _ => Some(Canned::new(Rcode::REFUSED, false)),
            }
        })
        .await
    };
    let (resolver, _) = resolver(config(port, false));
    // RFC 6672 §3.1, Deckard's val_dname_bogus: the server's CNAME must be the DNAME's
    // synthesis; a signed DNAME with another one is refused, not silently corrected.
    let forged = resolver
        .resolve(&question("forged.y.test.", Rtype::A))
        .await
        .expect_err("a CNAME contradicting a signed DNAME");
    assert!(
        matches!(forged, juris_resolver::ResolveError::InvalidData(_)),
        "{forged}"
    );
    let (rcode, answer, _) = ask(&resolver, "too.long.test.", Rtype::A).await;
    assert_eq!(rcode, Rcode::YXDOMAIN);
    assert_eq!(answer, vec![format!("long.test. DNAME {long}")]);
    let (rcode, answer, _) = ask(&resolver, "a.cyc.test.", Rtype::A).await;
    assert_eq!(rcode, Rcode::SERVFAIL);
    assert_eq!(
        answer,
        vec!["cyc.test. DNAME cyc.test.", "a.cyc.test. CNAME a.cyc.test."]
    );
    let (rcode, answer, _) = ask(&resolver, "s.x.x.", Rtype::TXT).await;
    assert_eq!(rcode, Rcode::NOERROR);
    assert_eq!(
        answer,
        vec![
            "x. DNAME .",
            "s.x.x. CNAME s.x.",
            "s.x. CNAME s.",
            "s. TXT \"end\""
        ]
    );
    // A CNAME question under a DNAME is answered by the synthesised CNAME, not followed
    // (RFC 6672 §3.1; Deckard's val_dname), both from the server's answer and from the cache.
    let (fresh, _) = support::resolver(config(port, false));
    for cached in [false, true] {
        let (rcode, answer, authority) = ask(&fresh, "s.x.", Rtype::CNAME).await;
        assert_eq!(rcode, Rcode::NOERROR, "cached DNAME: {cached}");
        assert_eq!(
            answer,
            vec!["x. DNAME .", "s.x. CNAME s."],
            "cached DNAME: {cached}"
        );
        assert!(
            authority.is_empty(),
            "cached DNAME: {cached}: {authority:?}"
        );
        fresh.cache().clear();
    }
}

/// CNAME and DNAME records a chain went through are followed from the cache while their TTL
/// lasts, even when the answers they led to expired (Deckard's iter_cname_cache; a DNAME
/// synthesises the CNAME for other names below its owner, RFC 6672 §3.4).
#[tokio::test]
async fn cached_cname_and_dname_are_followed_without_asking_again() {
    let port = 47_409;
    let _root = root(port, &[]).await;
    let _tld = tld(port).await;
    let sld = FakeAuthority::serve(
        "127.0.0.4",
        port,
        vec![zone(
            "example.test.",
            &[
                "www.example.test. 3600 CNAME web.example.test.",
                "web.example.test. 30 A 192.0.2.1",
                "old.example.test. 3600 DNAME example.test.",
                "a.example.test. 300 A 192.0.2.2",
                "b.example.test. 300 A 192.0.2.3",
            ],
        )],
    )
    .await;
    let (resolver, clock) = resolver(config(port, false));
    let (_, answer, _) = ask(&resolver, "www.example.test.", Rtype::A).await;
    assert_eq!(
        answer,
        vec![
            "www.example.test. CNAME web.example.test.",
            "web.example.test. A 192.0.2.1"
        ]
    );
    clock.advance(60);
    let (_, answer, _) = ask(&resolver, "www.example.test.", Rtype::A).await;
    assert_eq!(
        answer,
        vec![
            "www.example.test. CNAME web.example.test.",
            "web.example.test. A 192.0.2.1"
        ]
    );
    assert_eq!(
        sld.count_for("www.example.test."),
        1,
        "the CNAME came from the cache"
    );
    assert_eq!(sld.count_for("web.example.test."), 1);

    let (_, answer, _) = ask(&resolver, "a.old.example.test.", Rtype::A).await;
    assert_eq!(
        answer,
        vec![
            "old.example.test. DNAME example.test.",
            "a.old.example.test. CNAME a.example.test.",
            "a.example.test. A 192.0.2.2"
        ]
    );
    let (_, answer, _) = ask(&resolver, "b.old.example.test.", Rtype::A).await;
    assert_eq!(
        answer,
        vec![
            "old.example.test. DNAME example.test.",
            "b.old.example.test. CNAME b.example.test.",
            "b.example.test. A 192.0.2.3"
        ]
    );
    assert_eq!(
        sld.count_for("b.old.example.test."),
        0,
        "synthesised from the cached DNAME"
    );
}

/// Design 0019 (Deckard's val_dname and val_dname_bogus): the SOA after a chain that a
/// response followed proves the end of the question the server answered, not necessarily
/// the one the chain now asks: the target is asked itself. A DNAME asked for is remembered
/// like one met in a chain: names below it are synthesised without asking the server (which
/// could add a forged CNAME).
#[tokio::test]
async fn a_chain_ending_in_a_negative_answer_is_asked_again_at_its_target() {
    let port = 47_410;
    let _root = root(port, &["x. 86400 NS ns1.test.", "t. 3600 TXT other"]).await;
    let tld = FakeAuthority::scripted("127.0.0.3", port, move |qname, qtype| {
        match (qname, qtype) {
            // The answer the server has for `s.x. CNAME`, given to any question about s.x.:
            // the chain ends at end.x., in the zone, with a negative SOA that is about the CNAME
            // question.
            ("s.x.", _) => Some(
                Canned::new(Rcode::NOERROR, true)
                    .answer(&["s.x. 3600 CNAME end.x."])
                    .authority(&["x. 3600 SOA a. b. 1 2 3 4 5"]),
            ),
            ("end.x.", Rtype::TXT) => {
                Some(Canned::new(Rcode::NOERROR, true).answer(&["end.x. 3600 TXT end"]))
            }
            ("x.", Rtype::DNAME) => {
                Some(Canned::new(Rcode::NOERROR, true).answer(&["x. 3600 DNAME ."]))
            }
            ("t.x.", _) => Some(
                Canned::new(Rcode::NOERROR, true)
                    .answer(&["x. 3600 DNAME .", "t.x. 3600 CNAME elsewhere.test."]),
            ),
            (_, Rtype::NS) => Some(
                Canned::new(Rcode::NOERROR, true).authority(&["test. 3600 SOA a. b. 1 2 3 4 5"]),
            ),
            _ => Some(Canned::new(Rcode::REFUSED, false)),
        }
    })
    .await;
    let (resolver, _) = resolver(config(port, false));
    let (rcode, answer, _) = ask(&resolver, "s.x.", Rtype::TXT).await;
    assert_eq!(rcode, Rcode::NOERROR);
    assert_eq!(answer, vec!["s.x. CNAME end.x.", "end.x. TXT \"end\""]);

    let (fresh, _) = support::resolver(config(port, false));
    let (rcode, answer, _) = ask(&fresh, "x.", Rtype::DNAME).await;
    assert_eq!(
        (rcode, answer),
        (Rcode::NOERROR, vec!["x. DNAME .".to_owned()])
    );
    let (rcode, answer, _) = ask(&fresh, "t.x.", Rtype::TXT).await;
    assert_eq!(rcode, Rcode::NOERROR);
    assert_eq!(
        answer,
        vec!["x. DNAME .", "t.x. CNAME t.", "t. TXT \"other\""]
    );
    assert_eq!(
        tld.count_for("t.x."),
        0,
        "synthesised from the DNAME asked for"
    );
}

/// A CNAME expanded from a wildcard is followed from the cache later, for another type: the
/// NSEC proving the expansion (RRSIG with fewer labels than its owner, RFC 4035 §5.3.4) must
/// come with it, or a validator finds the chain unproven (Deckard's `nsec_aggr_cache` step
/// 504). DO=1 clients get it in the authority section.
#[tokio::test]
async fn a_wildcard_cname_followed_from_the_cache_keeps_its_nsec_proof() {
    use bytes::Bytes;
    use domain::base::iana::{Class, SecurityAlgorithm};
    use domain::base::{Name, Record, Ttl};
    use domain::rdata::dnssec::{RtypeBitmap, Timestamp};
    use domain::rdata::{AllRecordData, Nsec, Rrsig};

    let port = 47_411;
    let _root = root(port, &[]).await;
    let _tld = tld(port).await;
    let n = |s: &str| Name::<Bytes>::bytes_from_str(s).unwrap();
    let rrsig = move |owner: &str, covered: Rtype, labels: u8| -> support::Rr {
        Record::new(
            n(owner),
            Class::IN,
            Ttl::from_secs(300),
            AllRecordData::Rrsig(
                Rrsig::new(
                    covered,
                    SecurityAlgorithm::ECDSAP256SHA256,
                    labels,
                    Ttl::from_secs(300),
                    Timestamp::from(2_000_000_000),
                    Timestamp::from(1_600_000_000),
                    1,
                    n("example.test."),
                    Bytes::from_static(&[0; 64]),
                )
                .unwrap(),
            ),
        )
    };
    let mut types = RtypeBitmap::<Bytes>::builder();
    types.add(Rtype::CNAME).unwrap();
    types.add(Rtype::RRSIG).unwrap();
    let nsec: support::Rr = Record::new(
        n("*.wild.example.test."),
        Class::IN,
        Ttl::from_secs(300),
        AllRecordData::Nsec(Nsec::new(n("z.example.test."), types.finalize())),
    );
    let sld = FakeAuthority::scripted("127.0.0.4", port, move |qname, qtype| {
        let mut reply = Canned::new(Rcode::NOERROR, true);
        match (qname, qtype) {
            ("a.wild.example.test.", _) => {
                reply = reply.answer(&["a.wild.example.test. 300 CNAME web.example.test."]);
                reply
                    .answer
                    .push(rrsig("a.wild.example.test.", Rtype::CNAME, 3));
                reply.authority.push(nsec.clone());
                reply
                    .authority
                    .push(rrsig("*.wild.example.test.", Rtype::NSEC, 3));
            }
            ("web.example.test.", Rtype::A) => {
                reply = reply.answer(&["web.example.test. 300 A 192.0.2.1"]);
            }
            ("web.example.test.", Rtype::TXT) => {
                reply = reply.answer(&["web.example.test. 300 TXT hello"]);
            }
            _ => reply = reply.authority(&["example.test. 300 SOA ns h 1 3600 600 86400 300"]),
        }
        Some(reply)
    })
    .await;
    let (resolver, _clock) = resolver(config(port, false));
    let mut first = question("a.wild.example.test.", Rtype::A);
    first.dnssec_ok = true;
    resolver.resolve(&first).await.unwrap();
    let mut again = question("a.wild.example.test.", Rtype::TXT);
    again.dnssec_ok = true;
    let entry = resolver.resolve(&again).await.unwrap();
    let (_, answer, authority) = sections(entry.wire());
    assert_eq!(
        sld.count_for("a.wild.example.test."),
        1,
        "the CNAME came from the cache"
    );
    assert!(
        answer
            .iter()
            .any(|r| r.starts_with("web.example.test. TXT")),
        "{answer:?}"
    );
    assert!(
        authority
            .iter()
            .any(|r| r.starts_with("*.wild.example.test. NSEC")),
        "the wildcard proof goes with the cached CNAME: {authority:?}"
    );
}

/// RFC 9156 §3 step 6b with RFC 6672 §2.4: below a DNAME owner nothing exists but the
/// redirection, so no zone cut can; when a minimised probe's answer shows a DNAME at or above
/// the probed name (a DNAME in the answer, or a NODATA whose NSEC lists DNAME), the next
/// question is the full one, to the same servers, which hold everything below the DNAME. A
/// plain NODATA (an empty non-terminal) still gets one more label, so the full name is not
/// sent early (Deckard's val_dname with QNAME minimisation).
#[tokio::test]
async fn minimisation_asks_the_full_name_below_a_dname() {
    let port = 47_427;
    let _root = root(port, &[]).await;
    let soa = "test. 3600 SOA a. b. 1 2 3 4 5";
    let tld = FakeAuthority::scripted("127.0.0.3", port, move |qname, qtype| {
        let nodata = |extra: &[&str]| {
            let mut lines = vec![soa];
            lines.extend_from_slice(extra);
            Some(Canned::new(Rcode::NOERROR, true).authority(&lines))
        };
        match (qname, qtype) {
            // d.test. owns a DNAME: its NS probe gets a NODATA whose NSEC says so.
            ("d.test.", Rtype::NS) => nodata(&[
                "d.test. 3600 NSEC e.test. DNAME RRSIG NSEC",
                "d.test. 3600 RRSIG NSEC test.",
            ]),
            ("a.b.d.test.", Rtype::TXT) => Some(Canned::new(Rcode::NOERROR, true).answer(&[
                "d.test. 3600 DNAME t.test.",
                "a.b.d.test. 3600 CNAME a.b.t.test.",
            ])),
            // u.test. owns a DNAME too, in an unsigned zone: the probe one label below it
            // gets the redirection itself.
            ("v.u.test.", Rtype::NS) => Some(Canned::new(Rcode::NOERROR, true).answer(&[
                "u.test. 3600 DNAME t.test.",
                "v.u.test. 3600 CNAME v.t.test.",
            ])),
            ("a.b.v.u.test.", Rtype::TXT) => Some(Canned::new(Rcode::NOERROR, true).answer(&[
                "u.test. 3600 DNAME t.test.",
                "a.b.v.u.test. 3600 CNAME a.b.v.t.test.",
            ])),
            ("a.b.t.test." | "a.b.v.t.test.", Rtype::TXT) => {
                Some(Canned::new(Rcode::NOERROR, true).answer(&[&format!("{qname} 3600 TXT end")]))
            }
            // Everything else is an empty non-terminal or an unsigned name without a DNAME.
            (_, Rtype::NS) => nodata(&[]),
            _ => Some(Canned::new(Rcode::REFUSED, false)),
        }
    })
    .await;
    let seen = queries_seen;

    let (signed, _) = resolver(config(port, true));
    let (rcode, answer, _) = ask(&signed, "a.b.d.test.", Rtype::TXT).await;
    assert_eq!(rcode, Rcode::NOERROR);
    assert_eq!(answer.last().unwrap(), "a.b.t.test. TXT \"end\"");
    assert_eq!(
        seen(&tld),
        vec![
            "d.test. NS",
            // not b.d.test. NS: the NSEC showed the DNAME at d.test.
            "a.b.d.test. TXT",
            // the target: plain NODATAs, one more label each time
            "t.test. NS",
            "b.t.test. NS",
            "a.b.t.test. TXT",
        ]
    );

    let (unsigned, _) = resolver(config(port, true));
    let before = tld.queries().len();
    let (rcode, answer, _) = ask(&unsigned, "a.b.v.u.test.", Rtype::TXT).await;
    assert_eq!(rcode, Rcode::NOERROR);
    assert_eq!(answer.last().unwrap(), "a.b.v.t.test. TXT \"end\"");
    assert_eq!(
        seen(&tld)[before..],
        [
            "u.test. NS",
            "v.u.test. NS",
            // not b.v.u.test. NS: the probe's answer was the DNAME's redirection
            "a.b.v.u.test. TXT",
            "t.test. NS",
            "v.t.test. NS",
            "b.v.t.test. NS",
            "a.b.v.t.test. TXT",
        ]
    );
}

/// A server of `example.test.` that drops the NS probe for `a.example.test.`, answers the one
/// for `b.example.test.` with an upward referral (lame), and answers the full questions.
fn chokes_on_probes(qname: &str, qtype: Rtype) -> Option<Canned> {
    match (qname, qtype) {
        ("a.example.test.", Rtype::NS) => None,
        ("b.example.test.", Rtype::NS) => referral(&[". 3600 NS ns.root."], &[]),
        ("www.a.example.test." | "www.b.example.test.", Rtype::A) => {
            Some(Canned::new(Rcode::NOERROR, true).answer(&[&format!("{qname} 300 A 192.0.2.7")]))
        }
        _ => Some(Canned::new(Rcode::REFUSED, false)),
    }
}

/// RFC 9156 §3 (relaxed mode): a minimised probe that every server of the zone leaves
/// unanswered, or answers lamely, is followed by the full question to the same servers, as
/// Unbound does (`MAX_MINIMISE_TIMEOUT_COUNT`, non-strict; Knot Resolver for lame answers):
/// the servers may answer it even if they choke on NS queries.
#[tokio::test]
async fn a_probe_unanswered_or_lame_at_every_server_is_followed_by_the_full_name() {
    let port = 47_428;
    let (_root, _tld) = (root(port, &[]).await, tld(port).await);
    let sld = FakeAuthority::scripted("127.0.0.4", port, chokes_on_probes).await;
    let seen = |server: &FakeAuthority| -> Vec<String> {
        let mut seen = queries_seen(server);
        // A probe that times out may be sent again (another EDNS attempt): once is enough here.
        seen.dedup();
        seen
    };

    let (resolver, _) = resolver(config(port, true));
    for label in ["a", "b"] {
        let before = sld.queries().len();
        let qname = format!("www.{label}.example.test.");
        let (rcode, answer, _) = ask(&resolver, &qname, Rtype::A).await;
        assert_eq!(rcode, Rcode::NOERROR, "{qname}");
        assert_eq!(answer, vec![format!("{qname} A 192.0.2.7")]);
        let mut queries = seen(&sld);
        queries.drain(..before.min(queries.len()));
        assert_eq!(
            queries.last().map(String::as_str),
            Some(format!("{qname} A").as_str()),
            "{queries:?}"
        );
        assert!(
            queries.contains(&format!("{label}.example.test. NS")),
            "{queries:?}"
        );
    }
}
