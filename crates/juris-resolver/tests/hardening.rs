//! Resolver hardening against fake authorities on 127.0.0.x (one port per test): root
//! priming (RFC 8109), EDNS fallback, server selection by smoothed RTT, the NXNS limit,
//! prefetch (the delegation-loop test with its TsuNAME checks is in `resolver.rs`).
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

mod support;

use std::time::Duration;

use domain::base::iana::Rcode;
use domain::base::Rtype;
use juris_resolver::{Limit, Resolver, ResolverConfig};
use support::{
    question, recursive_config, resolver, sections, zone, Canned, EdnsReject, FakeAuthority,
};

fn config(port: u16) -> ResolverConfig {
    ResolverConfig {
        qname_minimisation: false,
        ipv6: false,
        ..recursive_config(port)
    }
}

/// The root zone: `test.` on 127.0.0.3.
fn root_zone() -> support::Zone {
    zone(
        ".",
        &["test. 86400 NS ns1.test.", "ns1.test. 86400 A 127.0.0.3"],
    )
}

/// The root zone: `test.` on 127.0.0.3 and `victim.` on 127.0.0.4.
fn root_with_victim() -> support::Zone {
    zone(
        ".",
        &[
            "test. 86400 NS ns1.test.",
            "ns1.test. 86400 A 127.0.0.3",
            "victim. 86400 NS ns.victim.",
            "ns.victim. 86400 A 127.0.0.4",
        ],
    )
}

/// `test.` with `www.test.` and whatever `extra` holds.
fn test_zone(extra: &[&str]) -> support::Zone {
    let mut lines = vec!["www.test. 300 A 192.0.2.1"];
    lines.extend_from_slice(extra);
    zone("test.", &lines)
}

async fn answer(resolver: &Resolver, qname: &str) -> Vec<String> {
    let entry = resolver
        .resolve(&question(qname, Rtype::A))
        .await
        .unwrap_or_else(|e| panic!("{qname}: {e}"));
    let (rcode, answer, _) = sections(entry.wire());
    assert_eq!(rcode, Rcode::NOERROR, "{qname}");
    answer
}

fn priming_queries(server: &FakeAuthority) -> usize {
    server
        .queries()
        .iter()
        .filter(|q| q.qname == "." && q.qtype == Rtype::NS)
        .count()
}

/// RFC 8109: the hints only say where to ask for the root NS set; the root servers the
/// priming answer names (with the addresses of its additional section) serve afterwards,
/// until the NS TTL runs out.
#[tokio::test]
async fn priming_replaces_the_hints_with_the_roots_own_ns_set() {
    let port = 47_501;
    // The hint answers the priming query only: everything else is refused.
    let hint = FakeAuthority::scripted("127.0.0.2", port, |qname, qtype| match (qname, qtype) {
        (".", Rtype::NS) => Some(
            Canned::new(Rcode::NOERROR, true)
                .answer(&[". 3600 NS ns2.root."])
                .additional(&["ns2.root. 3600 A 127.0.0.5"]),
        ),
        _ => Some(Canned::new(Rcode::REFUSED, false)),
    })
    .await;
    let primed_root = FakeAuthority::serve("127.0.0.5", port, vec![root_zone()]).await;
    let _tld = FakeAuthority::serve(
        "127.0.0.3",
        port,
        vec![test_zone(&["mail.test. 300 A 192.0.2.2"])],
    )
    .await;
    let (resolver, clock) = resolver(ResolverConfig {
        root_priming: true,
        ..config(port)
    });
    assert_eq!(
        answer(&resolver, "www.test.").await,
        vec!["www.test. A 192.0.2.1"]
    );
    assert_eq!(hint.count(), 1, "the hint is asked the priming query only");
    assert_eq!(priming_queries(&hint), 1);
    assert!(primed_root.count_for("www.test.") == 1);
    // The primed root NS set stays in force: no second priming query.
    resolver.flush(juris_resolver::cache::FlushScope::Subtree(b"\x04test\x00"));
    answer(&resolver, "mail.test.").await;
    assert_eq!(hint.count(), 1);
    // Expired, it is primed again.
    clock.advance(3601);
    resolver.flush(juris_resolver::cache::FlushScope::Subtree(b"\x04test\x00"));
    answer(&resolver, "www.test.").await;
    assert_eq!(priming_queries(&hint), 2);
}

/// A priming query that gets no root NS set leaves the hints in force (and is not repeated
/// for every lookup); it is tried again a minute later.
#[tokio::test]
async fn priming_failure_falls_back_to_the_hints() {
    let port = 47_502;
    // The hint serves the root zone, which has no NS RRset at its apex: NODATA to priming.
    let hint = FakeAuthority::serve("127.0.0.2", port, vec![root_zone()]).await;
    let _tld = FakeAuthority::serve(
        "127.0.0.3",
        port,
        vec![test_zone(&[
            "mail.test. 300 A 192.0.2.2",
            "ftp.test. 300 A 192.0.2.3",
        ])],
    )
    .await;
    let (resolver, clock) = resolver(ResolverConfig {
        root_priming: true,
        ..config(port)
    });
    answer(&resolver, "www.test.").await;
    assert_eq!(priming_queries(&hint), 1);
    assert_eq!(
        hint.count_for("www.test."),
        1,
        "the hints serve as the root"
    );
    resolver.flush(juris_resolver::cache::FlushScope::Subtree(b"\x04test\x00"));
    answer(&resolver, "mail.test.").await;
    assert_eq!(priming_queries(&hint), 1, "no priming at every lookup");
    clock.advance(61);
    resolver.flush(juris_resolver::cache::FlushScope::Subtree(b"\x04test\x00"));
    answer(&resolver, "ftp.test.").await;
    assert_eq!(priming_queries(&hint), 2, "tried again after a minute");
}

/// A server that answers EDNS queries with FORMERR, NOTIMP or garbage, or drops them, is
/// asked without EDNS, and remembered as such: its next queries go without EDNS at once.
#[tokio::test]
async fn servers_that_reject_edns_are_asked_without_it_and_remembered() {
    let modes = [
        (EdnsReject::Formerr, 47_503),
        (EdnsReject::Notimp, 47_504),
        (EdnsReject::Garbage, 47_505),
        (EdnsReject::Drop, 47_506),
    ];
    for (mode, port) in modes {
        let _root = FakeAuthority::serve("127.0.0.2", port, vec![root_zone()]).await;
        let tld = FakeAuthority::without_edns(
            "127.0.0.3",
            port,
            vec![test_zone(&[
                "a.test. 300 A 192.0.2.10",
                "b.test. 300 A 192.0.2.11",
                "c.test. 300 A 192.0.2.12",
            ])],
            mode,
        )
        .await;
        let (resolver, _) = resolver(config(port));
        if mode == EdnsReject::Drop {
            // Dropped EDNS queries look like a dead server: after two timeouts, the next
            // query goes without EDNS.
            for qname in ["a.test.", "b.test."] {
                assert!(resolver.resolve(&question(qname, Rtype::A)).await.is_err());
            }
        }
        assert_eq!(
            answer(&resolver, "www.test.").await,
            vec!["www.test. A 192.0.2.1"],
            "{mode:?}"
        );
        answer(&resolver, "c.test.").await;
        let seen: Vec<(String, bool)> = tld
            .queries()
            .into_iter()
            .filter(|q| q.qname == "www.test." || q.qname == "c.test.")
            .map(|q| (q.qname, q.edns))
            .collect();
        let expected: Vec<(String, bool)> = match mode {
            // The answer to the probe without EDNS is what taught us.
            EdnsReject::Drop => vec![("www.test.".into(), false), ("c.test.".into(), false)],
            _ => vec![
                ("www.test.".into(), true),
                ("www.test.".into(), false),
                ("c.test.".into(), false),
            ],
        };
        assert_eq!(seen, expected, "{mode:?}");
    }
}

/// A server seen answering EDNS queries is not downgraded by a FORMERR (it may be forged):
/// the FORMERR counts as a failure of that server.
#[tokio::test]
async fn a_server_known_to_do_edns_is_not_downgraded() {
    let port = 47_507;
    let _root = FakeAuthority::serve("127.0.0.2", port, vec![root_zone()]).await;
    let tld = FakeAuthority::scripted("127.0.0.3", port, |qname, _| match qname {
        "www.test." => {
            Some(Canned::new(Rcode::NOERROR, true).answer(&["www.test. 300 A 192.0.2.1"]))
        }
        _ => Some(Canned::new(Rcode::FORMERR, false)),
    })
    .await;
    let (resolver, _) = resolver(config(port));
    answer(&resolver, "www.test.").await;
    assert!(resolver
        .resolve(&question("bad.test.", Rtype::A))
        .await
        .is_err());
    assert!(
        tld.queries().iter().all(|q| q.edns),
        "no query without EDNS: {:?}",
        tld.queries()
    );
}

/// Server selection by smoothed RTT: of a zone's three servers, a fast one gets most of the
/// queries, a slow one little more than the exploration share, a dead one only the few that
/// found it dead (then it rests).
#[tokio::test]
async fn the_fastest_server_gets_the_queries_and_a_dead_one_almost_none() {
    let port = 47_508;
    let _root = FakeAuthority::serve(
        "127.0.0.2",
        port,
        vec![zone(
            ".",
            &[
                "test. 86400 NS fast.test.",
                "test. 86400 NS slow.test.",
                "test. 86400 NS dead.test.",
                "fast.test. 86400 A 127.0.0.3",
                "slow.test. 86400 A 127.0.0.4",
                "dead.test. 86400 A 127.0.0.5",
            ],
        )],
    )
    .await;
    let zone_data = || vec![zone("test.", &[])];
    let fast = FakeAuthority::serve("127.0.0.3", port, zone_data()).await;
    let slow =
        FakeAuthority::slow("127.0.0.4", port, zone_data(), Duration::from_millis(150)).await;
    let dead = FakeAuthority::blackhole("127.0.0.5", port).await;
    let (resolver, _) = resolver(config(port));
    let rounds = 40;
    for i in 0..rounds {
        // Distinct names: every question goes to the servers of `test.`.
        let qname = format!("n{i}.test.");
        let _ = resolver.resolve(&question(&qname, Rtype::TXT)).await;
    }
    let (fast, slow, dead) = (fast.count(), slow.count(), dead.count());
    assert!(
        fast >= rounds * 3 / 4,
        "fast {fast}, slow {slow}, dead {dead} of {rounds}"
    );
    assert!(slow < rounds / 4, "fast {fast}, slow {slow}, dead {dead}");
    assert!(dead <= 4, "fast {fast}, slow {slow}, dead {dead}");
}

/// NXNS (CVE-2020-12662): a referral to many glueless name servers in a zone that does not
/// have them makes juris look up a few of them only, whatever the referral lists; the hits
/// are counted.
#[tokio::test]
async fn a_referral_to_many_glueless_name_servers_causes_few_lookups() {
    let port = 47_509;
    let _root = FakeAuthority::serve("127.0.0.2", port, vec![root_with_victim()]).await;
    // `attack.test.` is delegated to 30 names under `victim.`, none of which exists.
    let ns: Vec<String> = (0..30)
        .map(|i| format!("attack.test. 300 NS ns{i}.victim."))
        .collect();
    let ns: Vec<&str> = ns.iter().map(String::as_str).collect();
    let _tld = FakeAuthority::serve("127.0.0.3", port, vec![zone("test.", &ns)]).await;
    let victim = FakeAuthority::serve("127.0.0.4", port, vec![zone("victim.", &[])]).await;
    let (resolver, _) = resolver(config(port));
    let limits = resolver.config().limits.clone();
    let error = resolver
        .resolve(&question("www.attack.test.", Rtype::A))
        .await
        .expect_err("no name server of attack.test. exists");
    assert!(
        matches!(
            error,
            juris_resolver::ResolveError::LimitExceeded(Limit::NameServerLookupsPerZone)
        ),
        "{error:?}"
    );
    let names: std::collections::HashSet<String> =
        victim.queries().into_iter().map(|q| q.qname).collect();
    assert_eq!(names.len(), limits.max_ns_lookups_per_zone as usize);
    let hits = |limit: Limit| {
        resolver
            .limit_hits()
            .into_iter()
            .find(|(l, _)| *l == limit)
            .map(|(_, n)| n)
            .unwrap()
    };
    assert_eq!(hits(Limit::NameServerLookupsPerZone), 1);
}

/// The name server names an answer was noted with (the last zone's cut), as text.
fn noted_name_servers(entry: &juris_resolver::cache::CachedAnswer) -> Vec<String> {
    entry
        .name_servers()
        .names()
        .iter()
        .map(|wire| {
            domain::base::Name::from_octets(bytes::Bytes::copy_from_slice(wire))
                .unwrap()
                .to_string()
        })
        .collect()
}

fn hits(resolver: &Resolver, limit: Limit) -> u64 {
    resolver
        .limit_hits()
        .into_iter()
        .find(|(l, _)| *l == limit)
        .map(|(_, n)| n)
        .unwrap()
}

/// Design 0051: a referral listing 200 name servers (over TCP) is stored with at most
/// `max_ns_per_zone_cut` of them: the ten with glue first, wherever they stand in the
/// referral, then the first glueless ones; the name resolves through a kept (glued) server,
/// and the cut-down NS set is counted once.
#[tokio::test]
async fn a_referral_to_200_name_servers_keeps_the_cap_glued_first_and_resolves() {
    let port = 47_513;
    let _root = FakeAuthority::serve("127.0.0.2", port, vec![root_zone()]).await;
    // `big.test.` is delegated to ns0..ns199.big.test.; only every 20th name from ns7 on has
    // glue (127.0.0.5, which serves the zone). The others would need `big.test.` itself.
    let mut lines: Vec<String> = (0..200)
        .map(|i| format!("big.test. 300 NS ns{i}.big.test."))
        .collect();
    lines.extend(
        (7..200)
            .step_by(20)
            .map(|i| format!("ns{i}.big.test. 300 A 127.0.0.5")),
    );
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    let tld = FakeAuthority::serve("127.0.0.3", port, vec![zone("test.", &lines)]).await;
    let child = FakeAuthority::serve(
        "127.0.0.5",
        port,
        vec![zone("big.test.", &["www.big.test. 300 A 192.0.2.7"])],
    )
    .await;
    let (resolver, _) = resolver(config(port));
    let entry = resolver
        .resolve(&question("www.big.test.", Rtype::A))
        .await
        .unwrap();
    let (rcode, answer, _) = sections(entry.wire());
    assert_eq!(rcode, Rcode::NOERROR);
    assert_eq!(answer, vec!["www.big.test. A 192.0.2.7"]);
    assert!(
        tld.queries().iter().any(|q| q.tcp),
        "the referral came over TCP"
    );
    assert_eq!(child.count_for("www.big.test."), 1);
    let mut expected: Vec<String> = (7..200)
        .step_by(20)
        .map(|i| format!("ns{i}.big.test"))
        .collect();
    expected.extend((0..3).map(|i| format!("ns{i}.big.test")));
    assert_eq!(
        resolver.config().limits.max_ns_per_zone_cut,
        13,
        "the default"
    );
    assert_eq!(noted_name_servers(&entry), expected);
    assert_eq!(hits(&resolver, Limit::NameServersPerZoneCut), 1);
    assert_eq!(hits(&resolver, Limit::AddressesPerNameServer), 0);
}

/// Design 0051, without glue: a referral to 200 out-of-zone names keeps the first
/// `max_ns_per_zone_cut` (here set to 5); the addresses of one of them are looked up and the
/// name resolves; no name beyond the cap is ever looked up.
#[tokio::test]
async fn a_glueless_referral_to_200_name_servers_keeps_the_first_ones_and_resolves() {
    let port = 47_514;
    let _root = FakeAuthority::serve("127.0.0.2", port, vec![root_with_victim()]).await;
    let ns: Vec<String> = (0..200)
        .map(|i| format!("far.test. 300 NS ns{i}.victim."))
        .collect();
    let ns: Vec<&str> = ns.iter().map(String::as_str).collect();
    let _tld = FakeAuthority::serve("127.0.0.3", port, vec![zone("test.", &ns)]).await;
    let addresses: Vec<String> = (0..200)
        .map(|i| format!("ns{i}.victim. 300 A 127.0.0.5"))
        .collect();
    let addresses: Vec<&str> = addresses.iter().map(String::as_str).collect();
    let victim = FakeAuthority::serve("127.0.0.4", port, vec![zone("victim.", &addresses)]).await;
    let _child = FakeAuthority::serve(
        "127.0.0.5",
        port,
        vec![zone("far.test.", &["www.far.test. 300 A 192.0.2.8"])],
    )
    .await;
    let mut config = config(port);
    config.limits.max_ns_per_zone_cut = 5;
    let (resolver, _) = resolver(config);
    let entry = resolver
        .resolve(&question("www.far.test.", Rtype::A))
        .await
        .unwrap();
    let (rcode, answer, _) = sections(entry.wire());
    assert_eq!(rcode, Rcode::NOERROR);
    assert_eq!(answer, vec!["www.far.test. A 192.0.2.8"]);
    let kept: Vec<String> = (0..5).map(|i| format!("ns{i}.victim")).collect();
    assert_eq!(noted_name_servers(&entry), kept);
    let looked_up: Vec<String> = victim.queries().into_iter().map(|q| q.qname).collect();
    assert!(!looked_up.is_empty());
    assert!(
        looked_up
            .iter()
            .all(|name| kept.iter().any(|k| *name == format!("{k}."))),
        "{looked_up:?}"
    );
    assert_eq!(hits(&resolver, Limit::NameServersPerZoneCut), 1);
}

/// Prefetch (Unbound's `prefetch`): an entry in the last tenth of its lifetime is refreshed
/// in the background, once, while the old answer stays in the cache until the new one lands.
#[tokio::test]
async fn prefetch_refreshes_an_entry_near_its_expiry() {
    use juris_resolver::cache::{AnswerCache, CacheConfig, CacheKeyRef};
    use juris_resolver::clock::ManualClock;
    let port = 47_511;
    let _root = FakeAuthority::serve("127.0.0.2", port, vec![root_zone()]).await;
    let tld = FakeAuthority::serve("127.0.0.3", port, vec![test_zone(&[])]).await;
    let clock = std::sync::Arc::new(ManualClock::new(support::NOW));
    let cache = std::sync::Arc::new(AnswerCache::new(CacheConfig {
        prefetch: true,
        ..CacheConfig::default()
    }));
    let resolver = Resolver::new(config(port), cache.clone(), clock.clone()).unwrap();
    let q = question("www.test.", Rtype::A);
    let first = resolver.resolve(&q).await.unwrap();
    assert_eq!(tld.count_for("www.test."), 1);
    // TTL 300: not due before its last 30 seconds.
    assert!(!first.prefetch_due(support::NOW + 269));
    assert!(first.prefetch_due(support::NOW + 271));
    clock.advance(271);
    assert!(resolver.prefetch(&q));
    // While the refresh is under way, another hit starts none.
    assert!(!resolver.prefetch(&q));
    let key = CacheKeyRef {
        name: b"\x03www\x04test\x00",
        qtype: Rtype::A.to_int(),
        qclass: 1,
        dnssec_ok: false,
    };
    // Wait for the refreshed entry (polling; a refresh that never lands fails the test).
    let mut refreshed = None;
    for _ in 0..2000 {
        let (entry, _) = cache.get(&key, support::NOW + 271).unwrap();
        if entry.stored_at() != support::NOW {
            refreshed = Some(entry);
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let refreshed = refreshed.expect("the entry is refreshed");
    assert_eq!(refreshed.stored_at(), support::NOW + 271);
    assert!(!refreshed.prefetch_due(support::NOW + 271));
    assert_eq!(tld.count_for("www.test."), 2);
    assert_eq!(resolver.prefetches(), 1);
}

/// A random-subdomain flood against a zone whose server never answers: the queries out to
/// that zone stop at `max_outstanding_per_zone`, the next client query needing it fails at
/// once (counted), and another zone keeps resolving (the total cap is unit-tested in
/// `outstanding.rs`).
#[tokio::test]
async fn a_flood_of_one_zone_hits_its_outstanding_cap_and_other_zones_resolve() {
    let port = 47_512;
    let _root = FakeAuthority::serve("127.0.0.2", port, vec![root_with_victim()]).await;
    let _tld = FakeAuthority::serve("127.0.0.3", port, vec![test_zone(&[])]).await;
    let victim = FakeAuthority::blackhole("127.0.0.4", port).await;
    let (resolver, _) = resolver(ResolverConfig {
        // Long enough that the flood's queries are still out when the checks below run.
        query_timeout: Duration::from_secs(20),
        resolution_deadline: Duration::from_secs(30),
        limits: juris_resolver::Limits {
            max_outstanding_per_zone: 3,
            max_outstanding: 4,
            ..juris_resolver::Limits::default()
        },
        ..config(port)
    });
    let flood: Vec<_> = (0..3)
        .map(|i| {
            let resolver = resolver.clone();
            tokio::spawn(async move {
                resolver
                    .resolve(&question(&format!("nx-{i}.victim."), Rtype::A))
                    .await
            })
        })
        .collect();
    // Wait (no time limit asserted) until the three queries are out at the victim.
    while victim.count() < 3 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let error = resolver
        .resolve(&question("nx-3.victim.", Rtype::A))
        .await
        .expect_err("the victim zone is at its cap");
    assert!(
        matches!(
            error,
            juris_resolver::ResolveError::LimitExceeded(Limit::OutstandingPerZone)
        ),
        "{error}"
    );
    assert_eq!(victim.count(), 3, "nothing more was sent to the victim");
    // Another zone resolves meanwhile (the 4th place of the total).
    assert_eq!(
        answer(&resolver, "www.test.").await,
        ["www.test. A 192.0.2.1"]
    );
    let hits = |limit| {
        resolver
            .limit_hits()
            .into_iter()
            .find(|(l, _)| *l == limit)
            .map_or(0, |(_, n)| n)
    };
    assert_eq!(hits(Limit::OutstandingPerZone), 1);
    assert_eq!(hits(Limit::OutstandingTotal), 0);
    // The flood is still out: the victim stays closed to new questions.
    assert!(resolver
        .resolve(&question("nx-4.victim.", Rtype::A))
        .await
        .is_err());
    assert_eq!(hits(Limit::OutstandingPerZone), 2);
    for task in flood {
        task.abort();
    }
}

/// RFC 7873 §5.1 and §5.3 as a client: every EDNS query carries our client cookie for the
/// server (the same one each time), the server cookie it gave is sent back from then on, a
/// BADCOOKIE after the server changed its secret is answered by asking once more with the new
/// server cookie, and a server without cookies (the root here) is asked as before.
#[tokio::test]
async fn upstream_cookies_are_sent_learnt_and_renewed_after_badcookie() {
    let port = 47_520;
    let root = FakeAuthority::serve("127.0.0.2", port, vec![root_zone()]).await;
    let tld = FakeAuthority::with_cookies(
        "127.0.0.3",
        port,
        vec![test_zone(&[
            "a.test. 300 A 192.0.2.10",
            "b.test. 300 A 192.0.2.11",
        ])],
    )
    .await;
    let (resolver, _) = resolver(config(port));
    assert_eq!(
        answer(&resolver, "www.test.").await,
        ["www.test. A 192.0.2.1"]
    );
    assert_eq!(answer(&resolver, "a.test.").await, ["a.test. A 192.0.2.10"]);
    tld.rotate_cookie_secret();
    assert_eq!(answer(&resolver, "b.test.").await, ["b.test. A 192.0.2.11"]);

    let cookies: Vec<(String, Vec<u8>)> = tld
        .queries()
        .into_iter()
        .map(|q| (q.qname, q.cookie.expect("every EDNS query has a cookie")))
        .collect();
    let names: Vec<&str> = cookies.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(
        names,
        ["www.test.", "a.test.", "b.test.", "b.test."],
        "{cookies:?}"
    );
    let client = &cookies[0].1[..8];
    assert!(
        cookies.iter().all(|(_, c)| &c[..8] == client),
        "one client cookie per server"
    );
    // First contact: the client cookie alone. Then the server cookie of generation 1; after
    // the rotation, the stale one (BADCOOKIE), then the new one.
    assert_eq!(cookies[0].1.len(), 8);
    assert_eq!(cookies[1].1[8..], [1; 8]);
    assert_eq!(cookies[2].1[8..], [1; 8]);
    assert_eq!(cookies[3].1[8..], [2; 8]);
    // The root does no cookies: it got our client cookie and answered without one.
    assert!(root
        .queries()
        .iter()
        .all(|q| q.cookie.as_ref().is_some_and(|c| c.len() == 8)));
}

/// RFC 7873 §5.3: a response that echoes another client cookie is not an answer to our query
/// (an off-path forgery that guessed the ID and port): it is ignored and the genuine answer
/// that follows is used.
#[tokio::test]
async fn an_upstream_answer_echoing_another_client_cookie_is_dropped_as_spoofed() {
    let port = 47_521;
    let _root = FakeAuthority::serve("127.0.0.2", port, vec![root_zone()]).await;
    let _tld = FakeAuthority::spoofing_cookies("127.0.0.3", port, vec![test_zone(&[])]).await;
    let (resolver, _) = resolver(config(port));
    assert_eq!(
        answer(&resolver, "www.test.").await,
        ["www.test. A 192.0.2.1"]
    );
}

/// Design 0048: a client asking ever new names (the answers of a zone it may control, here
/// 4 KiB TXT records) never makes the answer cache weigh more than `cache.size`, and ever
/// new failing questions never keep more than `resolver.limits.remembered_failures`.
#[tokio::test]
async fn the_answer_cache_and_the_remembered_failures_stay_at_their_bounds() {
    use juris_resolver::cache::FlushScope;
    use juris_resolver::cache::{AnswerCache, CacheConfig};
    use juris_resolver::clock::ManualClock;
    use juris_resolver::Mode;
    use std::sync::Arc;

    let port = 47_530;
    let records: Vec<String> = (0..300)
        .map(|i| format!("t{i}.test. 300 TXT big:4000"))
        .collect();
    let lines: Vec<&str> = records.iter().map(String::as_str).collect();
    let upstream = FakeAuthority::serve("127.0.0.2", port, vec![zone("test.", &lines)]).await;
    let failing = FakeAuthority::failing("127.0.0.3", port, Rcode::SERVFAIL).await;
    let bound = 256 * 1024;
    let forward = |upstream: std::net::SocketAddr, limits| ResolverConfig {
        mode: Mode::Forward {
            upstreams: vec![upstream],
        },
        limits,
        ..config(port)
    };
    let cache = Arc::new(AnswerCache::new(CacheConfig {
        max_bytes: bound,
        ..CacheConfig::default()
    }));
    let clock = Arc::new(ManualClock::new(support::NOW));
    let filler = Resolver::new(
        forward(upstream.addr, juris_resolver::Limits::default()),
        Arc::clone(&cache),
        clock,
    )
    .unwrap();
    for i in 0..300 {
        filler
            .resolve(&question(&format!("t{i}.test."), Rtype::TXT))
            .await
            .unwrap();
        assert!(cache.weight() <= bound, "{} > {bound}", cache.weight());
    }
    // Full: 300 answers of ~4 KiB would be ~1.2 MiB.
    assert!(cache.weight() > bound / 2, "{}", cache.weight());
    assert!(cache.len() < 300);

    let (resolver, _) = resolver(forward(
        failing.addr,
        juris_resolver::Limits {
            remembered_failures: 10,
            ..juris_resolver::Limits::default()
        },
    ));
    for i in 0..100 {
        let result = resolver
            .resolve(&question(&format!("f{i}.test."), Rtype::A))
            .await;
        assert!(result.is_err());
    }
    let report = resolver.flush(FlushScope::All);
    assert!(
        (1..=10).contains(&report.failures),
        "{} failures kept",
        report.failures
    );
}
