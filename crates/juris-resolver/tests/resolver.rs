//! Resolver integration tests against in-process fake authoritative servers on 127.0.0.x.
//!
//! Each test uses its own port (all its servers share it, as `upstream_port` is global) so
//! tests can run in parallel; addresses are 127.0.0.2 and up.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

mod support;

use std::future::Future;
use std::sync::Arc;

use domain::base::iana::{Class, Rcode};
use domain::base::Rtype;
use juris_resolver::cache::{AnswerKind, CacheKeyRef, CachedAnswer};
use juris_resolver::{Limits, Mode, ResolveError, ResolverConfig};
use support::{
    question, recursive_config as config, resolver, sections, zone, FakeAuthority, Zone, NOW,
};

/// The usual root zone: `test.` on 127.0.0.3, `net.` on 127.0.0.5.
fn root_zone() -> Zone {
    zone(
        ".",
        &[
            "test. 86400 NS ns1.test.",
            "ns1.test. 86400 A 127.0.0.3",
            "net. 86400 NS ns1.net.",
            "ns1.net. 86400 A 127.0.0.5",
        ],
    )
}

/// `test.` delegating `example.test.` to 127.0.0.4 with glue.
fn test_zone(extra: &[&str]) -> Zone {
    let mut lines = vec![
        "example.test. 86400 NS ns1.example.test.",
        "ns1.example.test. 86400 A 127.0.0.4",
    ];
    lines.extend_from_slice(extra);
    zone("test.", &lines)
}

fn example_zone(extra: &[&str]) -> Zone {
    let mut lines = vec![
        "example.test. 3600 NS ns1.example.test.",
        "ns1.example.test. 3600 A 127.0.0.4",
        "www.example.test. 300 A 192.0.2.80",
        "mail.example.test. 300 A 192.0.2.25",
    ];
    lines.extend_from_slice(extra);
    zone("example.test.", &lines)
}

struct Hierarchy {
    root: FakeAuthority,
    tld: FakeAuthority,
    sld: FakeAuthority,
}

async fn hierarchy(port: u16, sld_extra: &[&str]) -> Hierarchy {
    Hierarchy {
        root: FakeAuthority::serve("127.0.0.2", port, vec![root_zone()]).await,
        tld: FakeAuthority::serve("127.0.0.3", port, vec![test_zone(&[])]).await,
        sld: FakeAuthority::serve("127.0.0.4", port, vec![example_zone(sld_extra)]).await,
    }
}

fn answer_lines(entry: &CachedAnswer) -> (Rcode, Vec<String>, Vec<String>) {
    sections(entry.wire())
}

#[tokio::test]
async fn multi_level_referral_with_glue_then_deepest_cut() {
    let port = 47_311;
    let h = hierarchy(port, &[]).await;
    let (resolver, _) = resolver(config(port));
    let entry = resolver
        .resolve(&question("WWW.Example.Test.", Rtype::A))
        .await
        .unwrap();
    let (rcode, answer, _) = answer_lines(&entry);
    assert_eq!(rcode, Rcode::NOERROR);
    assert_eq!(answer, vec!["www.example.test. A 192.0.2.80"]);
    assert_eq!(entry.kind(), AnswerKind::Positive);
    assert_eq!(&entry.wire()[13..16], b"www", "question lower-cased");
    assert_eq!(entry.wire()[3] & 0x80, 0x80, "RA set");
    // In the answer cache under the lower-cased key.
    let key = CacheKeyRef {
        name: b"\x03www\x07example\x04test\x00",
        qtype: 1,
        qclass: 1,
        dnssec_ok: false,
    };
    assert!(resolver.cache().get(&key, NOW).is_some());

    // A second name in the same zone starts at the cached cut: root and TLD are not asked.
    let (root_before, tld_before) = (h.root.count(), h.tld.count());
    let entry = resolver
        .resolve(&question("mail.example.test.", Rtype::A))
        .await
        .unwrap();
    assert_eq!(
        answer_lines(&entry).1,
        vec!["mail.example.test. A 192.0.2.25"]
    );
    assert_eq!(h.root.count(), root_before);
    assert_eq!(h.tld.count(), tld_before);
    assert_eq!(h.sld.count_for("mail.example.test."), 1);
}

#[tokio::test]
async fn qname_minimisation_shows_only_the_next_label() {
    let port = 47_312;
    let h = hierarchy(port, &["a.b.c.example.test. 300 A 192.0.2.9"]).await;
    let (resolver, _) = resolver(config(port));
    let entry = resolver
        .resolve(&question("a.b.c.example.test.", Rtype::AAAA))
        .await
        .unwrap();
    assert_eq!(entry.kind(), AnswerKind::NoData);
    let root: Vec<_> = h
        .root
        .queries()
        .into_iter()
        .map(|q| (q.qname, q.qtype))
        .collect();
    assert_eq!(root, vec![("test.".to_string(), Rtype::NS)]);
    let tld: Vec<_> = h
        .tld
        .queries()
        .into_iter()
        .map(|q| (q.qname, q.qtype))
        .collect();
    assert_eq!(tld, vec![("example.test.".to_string(), Rtype::NS)]);
    // The SLD sees one label more at a time (empty non-terminals answer NODATA), then the
    // full name with the real type.
    let sld: Vec<_> = h
        .sld
        .queries()
        .into_iter()
        .map(|q| (q.qname, q.qtype))
        .collect();
    assert_eq!(
        sld,
        vec![
            ("c.example.test.".to_string(), Rtype::NS),
            ("b.c.example.test.".to_string(), Rtype::NS),
            ("a.b.c.example.test.".to_string(), Rtype::AAAA),
        ]
    );
}

#[tokio::test]
async fn without_minimisation_the_root_sees_the_full_name() {
    let port = 47_313;
    let h = hierarchy(port, &[]).await;
    let (resolver, _) = resolver(ResolverConfig {
        qname_minimisation: false,
        ..config(port)
    });
    resolver
        .resolve(&question("www.example.test.", Rtype::A))
        .await
        .unwrap();
    assert_eq!(h.root.queries()[0].qname, "www.example.test.");
    assert!(!h.root.queries()[0].rd, "iterative queries have RD=0");
}

#[tokio::test]
async fn glueless_delegation_resolves_name_server_address() {
    let port = 47_314;
    let root = FakeAuthority::serve("127.0.0.2", port, vec![root_zone()]).await;
    // test. delegates example.test. to a name server in net., without glue.
    let _tld = FakeAuthority::serve(
        "127.0.0.3",
        port,
        vec![zone("test.", &["example.test. 86400 NS ns.provider.net."])],
    )
    .await;
    let _net = FakeAuthority::serve(
        "127.0.0.5",
        port,
        vec![zone(
            "net.",
            &[
                "provider.net. 86400 NS ns1.provider.net.",
                "ns1.provider.net. 86400 A 127.0.0.6",
            ],
        )],
    )
    .await;
    let provider = FakeAuthority::serve(
        "127.0.0.6",
        port,
        vec![zone(
            "provider.net.",
            &[
                "ns1.provider.net. 3600 A 127.0.0.6",
                "ns.provider.net. 3600 A 127.0.0.4",
            ],
        )],
    )
    .await;
    let sld = FakeAuthority::serve("127.0.0.4", port, vec![example_zone(&[])]).await;
    let (resolver, _) = resolver(ResolverConfig {
        ipv6: false,
        ..config(port)
    });
    let entry = resolver
        .resolve(&question("www.example.test.", Rtype::A))
        .await
        .unwrap();
    assert_eq!(
        answer_lines(&entry).1,
        vec!["www.example.test. A 192.0.2.80"]
    );
    assert!(provider
        .queries()
        .iter()
        .any(|q| q.qname == "ns.provider.net." && q.qtype == Rtype::A));
    assert_eq!(sld.count_for("www.example.test."), 1);
    // IPv6 is off: no AAAA lookups for name servers anywhere.
    for server in [&root, &provider] {
        assert!(server.queries().iter().all(|q| q.qtype != Rtype::AAAA));
    }
}

#[tokio::test]
async fn cname_chain_across_zones() {
    let port = 47_315;
    let h = hierarchy(
        port,
        &[
            "alias.example.test. 300 CNAME hop.example.test.",
            "hop.example.test. 300 CNAME www.other.net.",
        ],
    )
    .await;
    let _net = FakeAuthority::serve(
        "127.0.0.5",
        port,
        vec![zone(
            "net.",
            &[
                "other.net. 86400 NS ns1.other.net.",
                "ns1.other.net. 86400 A 127.0.0.6",
            ],
        )],
    )
    .await;
    let _other = FakeAuthority::serve(
        "127.0.0.6",
        port,
        vec![zone("other.net.", &["www.other.net. 60 A 192.0.2.66"])],
    )
    .await;
    let (resolver, _) = resolver(config(port));
    let entry = resolver
        .resolve(&question("alias.example.test.", Rtype::A))
        .await
        .unwrap();
    let (rcode, answer, _) = answer_lines(&entry);
    assert_eq!(rcode, Rcode::NOERROR);
    assert_eq!(
        answer,
        vec![
            "alias.example.test. CNAME hop.example.test.",
            "hop.example.test. CNAME www.other.net.",
            "www.other.net. A 192.0.2.66",
        ]
    );
    assert_eq!(entry.cname_targets().len(), 2);
    assert_eq!(
        entry.addresses(),
        &["192.0.2.66".parse::<std::net::IpAddr>().unwrap()]
    );
    assert_eq!(
        entry.expires_at(),
        NOW + 60,
        "lifetime is the chain's minimum TTL"
    );
    drop(h);
}

#[tokio::test]
async fn dname_is_followed_with_a_synthesized_cname() {
    let port = 47_316;
    let _h = hierarchy(
        port,
        &[
            "old.example.test. 300 DNAME new.example.test.",
            "www.new.example.test. 300 A 192.0.2.7",
        ],
    )
    .await;
    let (resolver, _) = resolver(config(port));
    let entry = resolver
        .resolve(&question("www.old.example.test.", Rtype::A))
        .await
        .unwrap();
    let (_, answer, _) = answer_lines(&entry);
    assert_eq!(
        answer,
        vec![
            "old.example.test. DNAME new.example.test.",
            "www.old.example.test. CNAME www.new.example.test.",
            "www.new.example.test. A 192.0.2.7",
        ]
    );
}

#[tokio::test]
async fn nxdomain_and_nodata_carry_soa_and_are_cached() {
    let port = 47_317;
    let h = hierarchy(port, &[]).await;
    let (resolver, clock) = resolver(config(port));

    let entry = resolver
        .resolve(&question("nope.example.test.", Rtype::A))
        .await
        .unwrap();
    let (rcode, answer, authority) = answer_lines(&entry);
    assert_eq!(rcode, Rcode::NXDOMAIN);
    assert!(answer.is_empty());
    assert_eq!(authority.len(), 1);
    assert!(
        authority[0].starts_with("example.test. SOA "),
        "{authority:?}"
    );
    assert_eq!(entry.kind(), AnswerKind::NxDomain);
    assert_eq!(entry.expires_at(), NOW + 300, "negative TTL = SOA minimum");

    let entry = resolver
        .resolve(&question("www.example.test.", Rtype::AAAA))
        .await
        .unwrap();
    let (rcode, answer, authority) = answer_lines(&entry);
    assert_eq!(rcode, Rcode::NOERROR);
    assert!(answer.is_empty());
    assert!(authority[0].starts_with("example.test. SOA "));
    assert_eq!(entry.kind(), AnswerKind::NoData);

    // Asked again: answered from the cache, nothing goes upstream.
    let before = h.root.count() + h.tld.count() + h.sld.count();
    clock.advance(10);
    let again = resolver
        .resolve(&question("nope.example.test.", Rtype::A))
        .await
        .unwrap();
    assert_eq!(again.kind(), AnswerKind::NxDomain);
    resolver
        .resolve(&question("www.example.test.", Rtype::AAAA))
        .await
        .unwrap();
    assert_eq!(h.root.count() + h.tld.count() + h.sld.count(), before);
}

#[tokio::test]
async fn truncated_answer_is_retried_over_tcp() {
    let port = 47_318;
    let h = hierarchy(port, &["big.example.test. 300 TXT big:3000"]).await;
    let (resolver, _) = resolver(config(port));
    let entry = resolver
        .resolve(&question("big.example.test.", Rtype::TXT))
        .await
        .unwrap();
    assert_eq!(entry.kind(), AnswerKind::Positive);
    assert!(
        entry.len() > 3000,
        "the whole TXT record arrived: {}",
        entry.len()
    );
    let seen: Vec<_> = h
        .sld
        .queries()
        .into_iter()
        .filter(|q| q.qname == "big.example.test.")
        .map(|q| q.tcp)
        .collect();
    assert_eq!(seen, vec![false, true], "UDP first, then TCP");
}

#[tokio::test]
async fn truncated_answers_of_one_server_share_a_pipelined_tcp_connection() {
    let port = 47_339;
    let h = hierarchy(
        port,
        &[
            "big.example.test. 300 TXT big:3000",
            "big2.example.test. 300 TXT big:3000",
            "big3.example.test. 300 TXT big:3000",
        ],
    )
    .await;
    let (resolver, _) = resolver(config(port));
    let ask = |name: &'static str| {
        let resolver = resolver.clone();
        async move { resolver.resolve(&question(name, Rtype::TXT)).await }
    };
    // Two at once (pipelined on one connection), then one more (the connection reused).
    let (first, second) = tokio::join!(ask("big.example.test."), ask("big2.example.test."));
    let third = ask("big3.example.test.").await;
    for entry in [first, second, third] {
        let entry = entry.unwrap();
        assert_eq!(entry.kind(), AnswerKind::Positive);
        assert!(entry.len() > 3000, "the whole TXT record arrived");
    }
    let over_tcp = h.sld.queries().into_iter().filter(|q| q.tcp).count();
    assert_eq!(over_tcp, 3);
    assert_eq!(
        h.sld.tcp_connections(),
        1,
        "one connection carried all three"
    );
}

#[tokio::test]
async fn unreachable_server_among_several_is_avoided() {
    let port = 47_319;
    let _root = FakeAuthority::serve("127.0.0.2", port, vec![root_zone()]).await;
    let _tld = FakeAuthority::serve(
        "127.0.0.3",
        port,
        vec![zone(
            "test.",
            &[
                "example.test. 86400 NS ns1.example.test.",
                "example.test. 86400 NS ns2.example.test.",
                "ns1.example.test. 86400 A 127.0.0.4",
                "ns2.example.test. 86400 A 127.0.0.9",
            ],
        )],
    )
    .await;
    let _sld = FakeAuthority::serve("127.0.0.4", port, vec![example_zone(&[])]).await;
    let dead = FakeAuthority::blackhole("127.0.0.9", port).await;
    let (resolver, _) = resolver(config(port));
    // Unknown servers are picked at random among equals: with 20 names the dead one is
    // tried (and times out) with probability 1 - 2^-20, exercising the failover.
    for i in 0..20 {
        let result = resolver
            .resolve(&question(&format!("n{i}.example.test."), Rtype::A))
            .await;
        let entry = result.unwrap_or_else(|e| panic!("n{i}: {e:?}"));
        assert_eq!(entry.kind(), AnswerKind::NxDomain);
    }
    assert!(dead.count() >= 1, "the dead server was never tried");
    // After a timeout the dead server drops out of the fast band: at most two probes.
    assert!(
        dead.count() <= 2,
        "dead server asked {} times",
        dead.count()
    );
}

#[tokio::test]
async fn cname_loop_is_servfail_with_the_chain() {
    let port = 47_320;
    let _h = hierarchy(
        port,
        &[
            "a.example.test. 300 CNAME b.example.test.",
            "b.example.test. 300 CNAME a.example.test.",
        ],
    )
    .await;
    let (resolver, _) = resolver(config(port));
    let entry = resolver
        .resolve(&question("a.example.test.", Rtype::A))
        .await
        .unwrap();
    // RFC 1034 §3.6.2: the loop is signalled as an error, the chain shows where it closes.
    let (rcode, answer, authority) = answer_lines(&entry);
    assert_eq!(rcode, Rcode::SERVFAIL);
    assert_eq!(
        answer,
        vec![
            "a.example.test. CNAME b.example.test.",
            "b.example.test. CNAME a.example.test."
        ]
    );
    assert!(authority.is_empty());
}

#[tokio::test]
async fn long_cname_chain_hits_the_limit() {
    let port = 47_321;
    let lines: Vec<String> = (0..6)
        .map(|i| format!("c{i}.example.test. 300 CNAME c{}.example.test.", i + 1))
        .chain(std::iter::once(
            "c6.example.test. 300 A 192.0.2.1".to_string(),
        ))
        .collect();
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    let _h = hierarchy(port, &lines).await;
    let (short, _) = resolver(ResolverConfig {
        limits: Limits {
            max_cname_chain: 3,
            ..Limits::default()
        },
        ..config(port)
    });
    let result = short.resolve(&question("c0.example.test.", Rtype::A)).await;
    assert!(
        matches!(result, Err(ResolveError::LimitExceeded(_))),
        "{result:?}"
    );
    let (long, _) = resolver(config(port));
    let entry = long
        .resolve(&question("c0.example.test.", Rtype::A))
        .await
        .unwrap();
    assert_eq!(answer_lines(&entry).1.len(), 7);
}

#[tokio::test]
async fn delegation_loop_hits_the_limit() {
    let port = 47_322;
    let _root = FakeAuthority::serve("127.0.0.2", port, vec![root_zone()]).await;
    // a.test. is served by ns.b.test. and b.test. by ns.a.test., neither with glue.
    let tld = FakeAuthority::serve(
        "127.0.0.3",
        port,
        vec![zone(
            "test.",
            &["a.test. 86400 NS ns.b.test.", "b.test. 86400 NS ns.a.test."],
        )],
    )
    .await;
    let (resolver, _) = resolver(config(port));
    let result = resolver.resolve(&question("www.a.test.", Rtype::A)).await;
    assert!(
        matches!(result, Err(ResolveError::LimitExceeded(_))),
        "{result:?}"
    );
    assert!(tld.count() < 20, "the loop stopped early: {}", tld.count());
    // TsuNAME: asking again sends nothing (RFC 9520), and the loop is counted (/metrics).
    let sent = tld.count();
    for _ in 0..5 {
        assert!(resolver
            .resolve(&question("www.a.test.", Rtype::A))
            .await
            .is_err());
    }
    assert_eq!(tld.count(), sent, "the failure is remembered");
    assert!(resolver
        .limit_hits()
        .into_iter()
        .any(|(limit, n)| limit == juris_resolver::Limit::DelegationLoop && n >= 1));
}

#[tokio::test]
async fn out_of_bailiwick_glue_is_ignored() {
    let port = 47_323;
    let _root = FakeAuthority::serve("127.0.0.2", port, vec![root_zone()]).await;
    // The test. server hands out an address for a name in net.: not its to give.
    let _tld = FakeAuthority::serve(
        "127.0.0.3",
        port,
        vec![zone(
            "test.",
            &[
                "victim.test. 86400 NS ns.attacker.net.",
                "ns.attacker.net. 86400 A 127.0.0.66",
            ],
        )],
    )
    .await;
    let _net = FakeAuthority::serve(
        "127.0.0.5",
        port,
        vec![zone(
            "net.",
            &[
                "attacker.net. 86400 NS ns1.attacker.net.",
                "ns1.attacker.net. 86400 A 127.0.0.7",
            ],
        )],
    )
    .await;
    let _real = FakeAuthority::serve(
        "127.0.0.7",
        port,
        vec![
            zone(
                "attacker.net.",
                &[
                    "ns1.attacker.net. 3600 A 127.0.0.7",
                    "ns.attacker.net. 3600 A 127.0.0.7",
                ],
            ),
            zone("victim.test.", &["www.victim.test. 300 A 192.0.2.77"]),
        ],
    )
    .await;
    let bogus = FakeAuthority::serve(
        "127.0.0.66",
        port,
        vec![zone(
            "victim.test.",
            &["www.victim.test. 300 A 203.0.113.66"],
        )],
    )
    .await;
    let (resolver, _) = resolver(config(port));
    let entry = resolver
        .resolve(&question("www.victim.test.", Rtype::A))
        .await
        .unwrap();
    assert_eq!(
        answer_lines(&entry).1,
        vec!["www.victim.test. A 192.0.2.77"]
    );
    assert_eq!(
        bogus.count(),
        0,
        "the out-of-bailiwick glue address was used"
    );
}

#[tokio::test]
async fn out_of_bailiwick_answer_records_are_dropped() {
    let port = 47_324;
    // The example.test. server also claims to serve net. data in its answers: a CNAME target
    // in another zone must be resolved there, not taken from this server.
    let h = hierarchy(
        port,
        &[
            "alias.example.test. 300 CNAME www.other.net.",
            "www.other.net. 300 A 203.0.113.1",
        ],
    )
    .await;
    let _net = FakeAuthority::serve(
        "127.0.0.5",
        port,
        vec![zone(
            "net.",
            &[
                "other.net. 86400 NS ns1.other.net.",
                "ns1.other.net. 86400 A 127.0.0.6",
            ],
        )],
    )
    .await;
    let other = FakeAuthority::serve(
        "127.0.0.6",
        port,
        vec![zone("other.net.", &["www.other.net. 60 A 192.0.2.66"])],
    )
    .await;
    let (resolver, _) = resolver(config(port));
    let entry = resolver
        .resolve(&question("alias.example.test.", Rtype::A))
        .await
        .unwrap();
    assert_eq!(
        answer_lines(&entry).1.last().unwrap(),
        "www.other.net. A 192.0.2.66"
    );
    assert_eq!(other.count_for("www.other.net."), 1);
    assert_eq!(h.sld.count_for("alias.example.test."), 1);
}

#[tokio::test]
async fn concurrent_identical_questions_are_coalesced() {
    let port = 47_325;
    let h = hierarchy(port, &[]).await;
    let (resolver, _) = resolver(config(port));
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let resolver = resolver.clone();
        tasks.push(tokio::spawn(async move {
            resolver
                .resolve(&question("www.example.test.", Rtype::A))
                .await
        }));
    }
    let mut entries = Vec::new();
    for task in tasks {
        entries.push(task.await.unwrap().unwrap());
    }
    assert_eq!(h.sld.count_for("www.example.test."), 1);
    assert_eq!(h.root.count(), 1);
    assert!(entries.iter().all(|e| Arc::ptr_eq(e, &entries[0])));
}

#[tokio::test]
async fn servfail_everywhere_is_an_error_and_remembered() {
    let port = 47_326;
    let _root = FakeAuthority::serve("127.0.0.2", port, vec![root_zone()]).await;
    let _tld = FakeAuthority::serve("127.0.0.3", port, vec![test_zone(&[])]).await;
    let sld = FakeAuthority::failing("127.0.0.4", port, Rcode::SERVFAIL).await;
    let (resolver, clock) = resolver(config(port));
    let result = resolver
        .resolve(&question("www.example.test.", Rtype::A))
        .await;
    assert!(
        matches!(result, Err(ResolveError::NoReachableAuthority(_))),
        "{result:?}"
    );
    let asked = sld.count();
    assert!(asked >= 1);
    // Within servfail_ttl (5 s) the failure is answered from memory.
    let result = resolver
        .resolve(&question("www.example.test.", Rtype::A))
        .await;
    assert!(result.is_err());
    assert_eq!(sld.count(), asked);
    // A flush of the name forgets the failure (and the cut at example.test is kept: the name
    // is www.example.test): asked again at once.
    let report = resolver.flush(juris_resolver::cache::FlushScope::Name(
        b"\x03www\x07example\x04test\x00",
    ));
    assert_eq!((report.failures, report.delegations), (1, 0), "{report:?}");
    let _ = resolver
        .resolve(&question("www.example.test.", Rtype::A))
        .await;
    let asked_after_flush = sld.count();
    assert!(asked_after_flush > asked, "asked again after the flush");
    clock.advance(6);
    let _ = resolver
        .resolve(&question("www.example.test.", Rtype::A))
        .await;
    assert!(
        sld.count() > asked_after_flush,
        "asked again once the failure expired"
    );
}

#[tokio::test]
async fn loopback_servers_are_refused_unless_allowed() {
    let port = 47_327;
    let h = hierarchy(port, &[]).await;
    let (resolver, _) = resolver(ResolverConfig {
        allow_loopback_upstreams: false,
        ..config(port)
    });
    let result = resolver
        .resolve(&question("www.example.test.", Rtype::A))
        .await;
    assert!(
        matches!(result, Err(ResolveError::NoReachableAuthority(_))),
        "{result:?}"
    );
    assert_eq!(h.root.count(), 0);
}

#[tokio::test]
async fn referral_limit_stops_deep_delegation_chains() {
    let port = 47_328;
    let h = hierarchy(port, &[]).await;
    let (resolver, _) = resolver(ResolverConfig {
        limits: Limits {
            max_referrals: 1,
            ..Limits::default()
        },
        ..config(port)
    });
    let result = resolver
        .resolve(&question("www.example.test.", Rtype::A))
        .await;
    assert!(
        matches!(result, Err(ResolveError::LimitExceeded(_))),
        "{result:?}"
    );
    assert_eq!(h.sld.count(), 0);
}

#[tokio::test]
async fn dnssec_records_only_for_do_clients() {
    // The fake servers do not sign, so check the DO bit upstream and separate cache keys.
    let port = 47_329;
    let h = hierarchy(port, &[]).await;
    let (resolver, _) = resolver(config(port));
    let plain = resolver
        .resolve(&question("www.example.test.", Rtype::A))
        .await
        .unwrap();
    let mut with_do = question("www.example.test.", Rtype::A);
    with_do.dnssec_ok = true;
    let signed = resolver.resolve(&with_do).await.unwrap();
    assert!(
        !Arc::ptr_eq(&plain, &signed),
        "DO=1 has its own cache entry"
    );
    assert_eq!(h.sld.count_for("www.example.test."), 2);
}

#[tokio::test]
async fn forward_mode_skips_a_dead_upstream() {
    let port = 47_330;
    let dead = FakeAuthority::blackhole("127.0.0.2", port).await;
    let live = FakeAuthority::serve(
        "127.0.0.3",
        port,
        vec![zone(
            "example.test.",
            &[
                "www.example.test. 300 A 192.0.2.80",
                "mail.example.test. 300 A 192.0.2.25",
                "ftp.example.test. 300 A 192.0.2.21",
                "web.example.test. 300 A 192.0.2.22",
            ],
        )],
    )
    .await;
    let (resolver, _) = resolver(ResolverConfig {
        mode: Mode::Forward {
            upstreams: vec![dead.addr, live.addr],
        },
        ..config(port)
    });
    for label in ["www", "mail", "ftp", "web"] {
        let entry = resolver
            .resolve(&question(&format!("{label}.example.test."), Rtype::A))
            .await
            .unwrap();
        assert_eq!(answer_lines(&entry).1.len(), 1);
    }
    // Among equally unknown upstreams the order is random: with 16 more questions the dead
    // one is tried with probability 1 - 2^-20 overall.
    for i in 0..16 {
        let nx = resolver
            .resolve(&question(&format!("n{i}.example.test."), Rtype::A))
            .await
            .unwrap();
        assert_eq!(nx.kind(), AnswerKind::NxDomain);
    }
    assert!(dead.count() >= 1, "the dead upstream was never tried");
    assert!(
        live.queries().iter().all(|q| q.rd),
        "forwarded queries have RD=1"
    );
    assert!(
        dead.count() <= 2,
        "dead upstream asked {} times",
        dead.count()
    );
}

#[tokio::test]
async fn forward_mode_all_failing_is_an_error() {
    let port = 47_331;
    let one = FakeAuthority::failing("127.0.0.2", port, Rcode::REFUSED).await;
    let two = FakeAuthority::failing("127.0.0.3", port, Rcode::SERVFAIL).await;
    let (resolver, _) = resolver(ResolverConfig {
        mode: Mode::Forward {
            upstreams: vec![one.addr, two.addr],
        },
        ..config(port)
    });
    let result = resolver
        .resolve(&question("www.example.test.", Rtype::A))
        .await;
    assert!(
        matches!(result, Err(ResolveError::NoReachableAuthority(_))),
        "{result:?}"
    );
    assert_eq!(one.count() + two.count(), 2);
}

#[tokio::test]
async fn lame_server_is_marked_and_skipped() {
    let port = 47_332;
    let _root = FakeAuthority::serve("127.0.0.2", port, vec![root_zone()]).await;
    let _tld = FakeAuthority::serve(
        "127.0.0.3",
        port,
        vec![zone(
            "test.",
            &[
                "example.test. 86400 NS ns1.example.test.",
                "example.test. 86400 NS ns2.example.test.",
                "ns1.example.test. 86400 A 127.0.0.4",
                "ns2.example.test. 86400 A 127.0.0.8",
            ],
        )],
    )
    .await;
    let _sld = FakeAuthority::serve("127.0.0.4", port, vec![example_zone(&[])]).await;
    // ns2 does not serve example.test.: it answers with the parent's referral (lame).
    let lame = FakeAuthority::serve("127.0.0.8", port, vec![test_zone(&[])]).await;
    let (resolver, _) = resolver(config(port));
    for i in 0..20 {
        let entry = resolver
            .resolve(&question(&format!("n{i}.example.test."), Rtype::A))
            .await
            .unwrap_or_else(|e| panic!("n{i}: {e:?}"));
        assert_eq!(entry.kind(), AnswerKind::NxDomain);
    }
    // Tried (almost surely, picks are random among unknown servers), then never again.
    assert_eq!(lame.count(), 1, "lame server asked {} times", lame.count());
}

#[tokio::test]
async fn a_resolution_goes_on_when_its_first_asker_gives_up() {
    let port = 47_341;
    let h = hierarchy(port, &[]).await;
    let (resolver, _) = resolver(config(port));
    let q = question("www.example.test.", Rtype::A);
    // The first asker starts the resolution (it runs inside its future): polled once, it
    // waits for the root's answer; then it gives up.
    let mut first = Box::pin(resolver.resolve(&q));
    let polled = std::future::poll_fn(|cx| std::task::Poll::Ready(first.as_mut().poll(cx))).await;
    assert!(polled.is_pending(), "the resolution needs the network");
    drop(first);
    // A second asker joins the resolution still under way (or finds its answer cached).
    let entry = resolver.resolve(&q).await.unwrap();
    assert_eq!(
        answer_lines(&entry).1,
        vec!["www.example.test. A 192.0.2.80"]
    );
    assert_eq!(
        h.sld.count_for("www.example.test."),
        1,
        "asked upstream once"
    );
    // Not started again: the root was asked once, by the first asker's resolution.
    assert_eq!(h.root.count(), 1);
    let key = CacheKeyRef {
        name: b"\x03www\x07example\x04test\x00",
        qtype: Rtype::A.to_int(),
        qclass: Class::IN.to_int(),
        dnssec_ok: false,
    };
    assert!(resolver.cache().get(&key, NOW).is_some(), "and cached");
}
