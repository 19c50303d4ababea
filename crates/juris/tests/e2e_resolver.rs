//! End-to-end tests of `juris serve` as a recursive resolver: real NSD servers on loopback
//! (root, TLDs and second-level zones each on their own address, so referrals are real),
//! queried with `dig`, `kdig` and a raw hickory-proto client, none of which shares code
//! with juris. What the authorities received comes from NSD's dnstap stream.
//!
//! Needs `nsd`, `dig` and `kdig` (`apt-get install nsd bind9-dnsutils knot-dnsutils`) and
//! root (NSD binds port 53 on 127.x addresses).
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

use std::net::SocketAddr;
use std::thread;
use std::time::Duration;

use hickory_proto::rr::RecordType;
use juris_testkit::dig::{Lookup, Response};
use juris_testkit::dnstap::Transport;
use juris_testkit::hierarchy::{Hierarchy, Zone};
use juris_testkit::juris::Juris;
use juris_testkit::raw::{self, TcpOutcome};

const JURIS: &str = env!("CARGO_BIN_EXE_juris");
const FORMERR: u8 = 1;

/// TXT strings in `big.alpha.test.`: about 900 bytes, more than 512, less than 1232.
const BIG_STRINGS: usize = 8;
/// TXT strings in `huge.alpha.test.`: about 3,300 bytes, more than any UDP answer here.
const HUGE_STRINGS: usize = 30;

/// ```text
/// .  ── test. ── alpha.test.        www A/AAAA, chain CNAME, a.b.c, big/huge TXT
///    │        ├─ gamma.test.        end A (end of the CNAME chain)
///    │        ├─ dns-provider.test. holds ns.dns-provider.test. A (glueless NS of beta.example.)
///    │        └─ multi.test.        1 live NS, 1 silent, 1 refusing; *.multi.test A
///    └─ example. ── beta.example.   NS ns.dns-provider.test. only (no glue anywhere)
/// ```
fn world() -> Hierarchy {
    let text = |index: usize| format!("\"{index:03}-{}\"", "x".repeat(96));
    let big: String = (0..BIG_STRINGS)
        .map(|i| format!("big TXT {}\n", text(i)))
        .collect();
    let huge: String = (0..HUGE_STRINGS)
        .map(|i| format!("huge TXT {}\n", text(i)))
        .collect();
    Hierarchy::builder()
        .zone(Zone::new("test."))
        .zone(
            Zone::new("alpha.test.")
                .records("www A 192.0.2.1\nwww AAAA 2001:db8::1")
                .records("chain CNAME step.beta.example.")
                .records("a.b.c A 192.0.2.9")
                .records(&big)
                .records(&huge),
        )
        .zone(Zone::new("gamma.test.").records("end A 192.0.2.3"))
        .zone(Zone::new("dns-provider.test."))
        .zone(
            Zone::new("multi.test.")
                .silent_name_server()
                .refusing_name_server()
                .records("* A 192.0.2.4"),
        )
        .zone(Zone::new("example."))
        .zone(
            Zone::new("beta.example.")
                .glueless_name_server("ns.dns-provider.test.")
                .records("www A 192.0.2.2\nstep CNAME end.gamma.test."),
        )
        .start()
}

fn juris(hierarchy: &Hierarchy) -> Juris {
    Juris::builder(JURIS)
        .root_hints(hierarchy.root_hints())
        .args(["--threads", "2"])
        .env("RUST_LOG", "debug")
        .start()
}

/// Runs a lookup and insists on a response.
fn ask(lookup: &Lookup) -> Response {
    lookup
        .run()
        .unwrap_or_else(|failure| panic!("{}: {failure}", lookup.command_line()))
}

fn dig(server: SocketAddr, name: &str, record_type: &str) -> Response {
    ask(&Lookup::dig(server, name, record_type).timeout_seconds(5))
}

fn assert_answer(response: &Response, record_type: &str, expected: &[&str]) {
    assert_eq!(response.status, "NOERROR", "{}", response.output);
    assert_eq!(
        response.answer_data(record_type),
        expected,
        "{}",
        response.output
    );
    assert!(
        response.has_flag("qr") && response.has_flag("ra"),
        "{}",
        response.output
    );
    assert!(
        !response.has_flag("aa"),
        "a resolver is not authoritative: {}",
        response.output
    );
}

fn label_count(name: &str) -> usize {
    name.split('.').filter(|label| !label.is_empty()).count()
}

#[test]
fn a_and_aaaa_are_resolved_through_root_tld_and_sld_referrals() {
    let hierarchy = world();
    let juris = juris(&hierarchy);

    assert_answer(
        &dig(juris.address(), "www.alpha.test.", "A"),
        "A",
        &["192.0.2.1"],
    );
    assert_answer(
        &dig(juris.address(), "www.alpha.test.", "AAAA"),
        "AAAA",
        &["2001:db8::1"],
    );

    // Each level of the hierarchy was really asked: the referrals were followed.
    for zone in [".", "test.", "alpha.test."] {
        assert!(
            hierarchy
                .wait_for_query(zone, Duration::from_secs(5), |_| true)
                .is_some(),
            "the {zone} server received no query"
        );
    }
    hierarchy.flush_query_logs();
    let sld = hierarchy.received("alpha.test.");
    assert!(
        sld.iter()
            .any(|q| q.name == "www.alpha.test." && q.record_type == RecordType::AAAA),
        "the alpha.test. server never got the AAAA question: {sld:?}"
    );
}

#[test]
fn a_glueless_delegation_is_resolved() {
    let hierarchy = world();
    let juris = juris(&hierarchy);

    assert_answer(
        &dig(juris.address(), "www.beta.example.", "A"),
        "A",
        &["192.0.2.2"],
    );
    // The name server's address had to be looked up in dns-provider.test. first.
    let lookup = hierarchy.wait_for_query("dns-provider.test.", Duration::from_secs(5), |q| {
        q.name == "ns.dns-provider.test."
    });
    assert!(
        lookup.is_some(),
        "nobody asked for ns.dns-provider.test.'s address"
    );
}

#[test]
fn a_cname_chain_across_zones_is_followed() {
    let hierarchy = world();
    let juris = juris(&hierarchy);

    let response = dig(juris.address(), "chain.alpha.test.", "A");
    assert_eq!(response.status, "NOERROR", "{}", response.output);
    let chain: Vec<(String, String, String)> = response
        .answer
        .iter()
        .map(|r| (r.name.clone(), r.record_type.clone(), r.data.clone()))
        .collect();
    let expected = [
        ("chain.alpha.test.", "CNAME", "step.beta.example."),
        ("step.beta.example.", "CNAME", "end.gamma.test."),
        ("end.gamma.test.", "A", "192.0.2.3"),
    ]
    .map(|(n, t, d)| (n.to_owned(), t.to_owned(), d.to_owned()));
    assert_eq!(chain, expected, "{}", response.output);
}

#[test]
fn nxdomain_carries_the_soa_and_is_cached() {
    let hierarchy = world();
    let juris = juris(&hierarchy);

    let first = dig(juris.address(), "nope.alpha.test.", "A");
    assert_eq!(first.status, "NXDOMAIN", "{}", first.output);
    assert!(first.answer.is_empty(), "{}", first.output);
    let soa = first.authority_soa();
    assert_eq!(
        soa.len(),
        1,
        "SOA in the authority section: {}",
        first.output
    );
    assert_eq!(soa[0].name, "alpha.test.", "{}", first.output);
    assert!(
        soa[0].ttl <= 300,
        "negative TTL bounded by the SOA: {}",
        first.output
    );

    hierarchy.stop_zone("alpha.test.");
    let second = dig(juris.address(), "nope.alpha.test.", "A");
    assert_eq!(
        second.status, "NXDOMAIN",
        "from the negative cache: {}",
        second.output
    );
    assert_eq!(second.authority_soa().len(), 1, "{}", second.output);
}

#[test]
fn nodata_carries_the_soa_and_is_cached() {
    let hierarchy = world();
    let juris = juris(&hierarchy);

    let first = dig(juris.address(), "www.alpha.test.", "TXT");
    assert_eq!(first.status, "NOERROR", "{}", first.output);
    assert!(first.answer.is_empty(), "NODATA: {}", first.output);
    let soa = first.authority_soa();
    assert_eq!(
        soa.len(),
        1,
        "SOA in the authority section: {}",
        first.output
    );
    assert_eq!(soa[0].name, "alpha.test.", "{}", first.output);

    hierarchy.stop_zone("alpha.test.");
    let second = dig(juris.address(), "www.alpha.test.", "TXT");
    assert_eq!(
        second.status, "NOERROR",
        "from the negative cache: {}",
        second.output
    );
    assert!(second.answer.is_empty(), "{}", second.output);
    assert_eq!(second.authority_soa().len(), 1, "{}", second.output);
}

#[test]
fn a_repeated_query_is_answered_from_the_cache_with_a_decremented_ttl() {
    let hierarchy = world();
    let juris = juris(&hierarchy);

    let first = dig(juris.address(), "www.alpha.test.", "A");
    assert_answer(&first, "A", &["192.0.2.1"]);
    let first_ttl = first.answer[0].ttl;
    assert!(first_ttl <= 300, "{}", first.output);

    hierarchy.stop_zone("alpha.test.");
    thread::sleep(Duration::from_millis(2_100));
    let second = dig(juris.address(), "www.alpha.test.", "A");
    assert_answer(&second, "A", &["192.0.2.1"]);
    let second_ttl = second.answer[0].ttl;
    assert!(
        second_ttl < first_ttl && second_ttl + 5 >= first_ttl && second_ttl > 0,
        "TTL {first_ttl} then {second_ttl} two seconds later\n{}",
        second.output
    );
}

#[test]
fn a_cached_answer_sends_nothing_upstream() {
    let hierarchy = world();
    let juris = juris(&hierarchy);

    assert_answer(
        &dig(juris.address(), "www.alpha.test.", "A"),
        "A",
        &["192.0.2.1"],
    );
    hierarchy.flush_query_logs();
    let before = hierarchy.received("alpha.test.").len();
    for _ in 0..3 {
        assert_answer(
            &dig(juris.address(), "www.alpha.test.", "A"),
            "A",
            &["192.0.2.1"],
        );
    }
    hierarchy.flush_query_logs();
    let after = hierarchy.received("alpha.test.");
    assert_eq!(after.len(), before, "cache hits went upstream: {after:?}");
}

#[test]
fn a_large_txt_answer_is_truncated_over_udp_and_whole_over_tcp() {
    let hierarchy = world();
    let juris = juris(&hierarchy);
    let server = juris.address();

    let small = ask(&Lookup::dig(server, "big.alpha.test.", "TXT")
        .buffer_size(512)
        .ignore_truncation()
        .timeout_seconds(5));
    assert!(
        small.has_flag("tc"),
        "TC=1 for a 512-byte client: {}",
        small.output
    );
    assert!(small.answer.len() < BIG_STRINGS, "{}", small.output);

    let no_edns = ask(&Lookup::dig(server, "big.alpha.test.", "TXT")
        .arg("+noedns")
        .ignore_truncation()
        .timeout_seconds(5));
    assert!(
        no_edns.has_flag("tc"),
        "TC=1 without EDNS: {}",
        no_edns.output
    );

    let whole = ask(&Lookup::dig(server, "big.alpha.test.", "TXT")
        .tcp()
        .timeout_seconds(5));
    assert_eq!(whole.status, "NOERROR", "{}", whole.output);
    assert!(!whole.has_flag("tc"), "{}", whole.output);
    assert_eq!(
        whole.answer_data("TXT").len(),
        BIG_STRINGS,
        "{}",
        whole.output
    );

    let roomy = ask(&Lookup::dig(server, "big.alpha.test.", "TXT")
        .buffer_size(1232)
        .ignore_truncation());
    assert!(
        !roomy.has_flag("tc"),
        "900 bytes fit in 1232: {}",
        roomy.output
    );
    assert_eq!(
        roomy.answer_data("TXT").len(),
        BIG_STRINGS,
        "{}",
        roomy.output
    );
}

#[test]
fn an_answer_too_large_for_udp_upstream_is_fetched_over_tcp() {
    let hierarchy = world();
    let juris = juris(&hierarchy);

    let whole = ask(&Lookup::dig(juris.address(), "huge.alpha.test.", "TXT")
        .tcp()
        .timeout_seconds(5));
    assert_eq!(whole.status, "NOERROR", "{}", whole.output);
    assert_eq!(
        whole.answer_data("TXT").len(),
        HUGE_STRINGS,
        "{}",
        whole.output
    );
    let over_tcp = hierarchy.wait_for_query("alpha.test.", Duration::from_secs(5), |q| {
        q.name == "huge.alpha.test." && q.transport == Transport::Tcp
    });
    assert!(
        over_tcp.is_some(),
        "the authority never saw a TCP query: {:?}",
        hierarchy.received("alpha.test.")
    );
}

#[test]
fn unreachable_name_servers_among_several_are_skipped() {
    let hierarchy = world();
    let juris = juris(&hierarchy);

    // multi.test. lists three name servers; only the first answers, the second never
    // replies, nothing listens on the third. The first lookup may have to time out on a
    // dead server: it gets what a stub resolver gives, three tries of four seconds.
    let first = ask(&Lookup::dig(juris.address(), "host0.multi.test.", "A")
        .timeout_seconds(4)
        .tries(3));
    assert_answer(&first, "A", &["192.0.2.4"]);
    // From then on the dead servers are known: every other name resolves promptly.
    for index in 1..6 {
        let name = format!("host{index}.multi.test.");
        let response = ask(&Lookup::dig(juris.address(), &name, "A").timeout_seconds(3));
        assert_answer(&response, "A", &["192.0.2.4"]);
    }
    let live = hierarchy.wait_for_query("multi.test.", Duration::from_secs(5), |q| {
        q.name.ends_with("multi.test.")
    });
    assert!(live.is_some(), "the live server was never asked");
}

#[test]
fn qname_minimisation_shows_in_what_the_authorities_received() {
    let hierarchy = world();
    let juris = juris(&hierarchy);

    assert_answer(
        &dig(juris.address(), "a.b.c.alpha.test.", "A"),
        "A",
        &["192.0.2.9"],
    );
    hierarchy.flush_query_logs();

    // Only names in the queried subtree count: the harness's own readiness probe
    // (`juris-testkit-probe.invalid.`) also goes through the root.
    let full = "a.b.c.alpha.test.";
    let in_subtree = |name: &str| name == "alpha.test." || name.ends_with(".alpha.test.");
    let names = |zone: &str| -> Vec<String> {
        hierarchy
            .received(zone)
            .into_iter()
            .map(|q| q.name)
            .collect()
    };
    let root = names(".");
    assert!(
        root.iter().any(|name| name == "test."),
        "the root was not asked for test.: {root:?}"
    );
    assert!(
        !root.iter().any(|name| in_subtree(name)),
        "the root saw more than the TLD: {root:?}"
    );
    let tld = names("test.");
    assert!(
        tld.iter().any(|name| name == "alpha.test."),
        "the test. server was not asked for alpha.test.: {tld:?}"
    );
    assert!(
        !tld.iter()
            .any(|name| in_subtree(name) && label_count(name) > 2),
        "the test. server saw more than the next label: {tld:?}"
    );
    let sld = hierarchy.received("alpha.test.");
    assert!(sld.iter().any(|q| q.name == full), "{sld:?}");
}

#[test]
fn kdig_gets_answers_over_udp_and_tcp() {
    let hierarchy = world();
    let juris = juris(&hierarchy);

    let udp = ask(&Lookup::kdig(juris.address(), "www.alpha.test.", "A").timeout_seconds(5));
    assert_answer(&udp, "A", &["192.0.2.1"]);
    let tcp = ask(&Lookup::kdig(juris.address(), "www.alpha.test.", "AAAA")
        .tcp()
        .timeout_seconds(5));
    assert_answer(&tcp, "AAAA", &["2001:db8::1"]);
    let dig_tcp = ask(&Lookup::dig(juris.address(), "www.beta.example.", "A")
        .tcp()
        .timeout_seconds(5));
    assert_answer(&dig_tcp, "A", &["192.0.2.2"]);
}

#[test]
fn malformed_udp_queries_get_formerr_or_nothing_and_service_continues() {
    let hierarchy = world();
    let juris = juris(&hierarchy);

    let mut wrong = Vec::new();
    for (what, packet) in raw::malformed_queries() {
        if let Some(reply) = raw::udp_exchange(juris.address(), &packet, raw::SHORT_WAIT) {
            let id_echoed = packet.len() < 2 || raw::id(&reply) == raw::id(&packet);
            if raw::rcode(&reply) != Some(FORMERR) || !id_echoed {
                wrong.push(format!("{what}: replied {reply:02x?}"));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "expected FORMERR or silence:\n{}",
        wrong.join("\n")
    );
    assert!(juris.is_running(), "juris died on garbage");
    assert!(
        !juris.stderr().contains("panicked"),
        "a task panicked on garbage"
    );
    assert_answer(
        &dig(juris.address(), "www.alpha.test.", "A"),
        "A",
        &["192.0.2.1"],
    );
}

#[test]
fn malformed_tcp_queries_get_formerr_or_nothing_and_service_continues() {
    let hierarchy = world();
    let juris = juris(&hierarchy);

    let mut wrong = Vec::new();
    for (what, packet) in raw::malformed_queries() {
        match raw::tcp_exchange(juris.address(), &raw::frame(&packet), raw::SHORT_WAIT) {
            TcpOutcome::Message(reply) if raw::rcode(&reply) != Some(FORMERR) => {
                wrong.push(format!("{what}: replied {reply:02x?}"));
            }
            TcpOutcome::Refused => wrong.push(format!("{what}: connection refused")),
            TcpOutcome::Message(_) | TcpOutcome::Closed | TcpOutcome::Silent => {}
        }
    }
    // Framing errors: a length longer than what follows, a zero length, half a prefix.
    let good = raw::query("www.alpha.test.", RecordType::A, 0x1234, false);
    let mut short = raw::frame(&good);
    short[1] = short[1].wrapping_add(40);
    for (what, bytes) in [
        ("length prefix longer than the message", short),
        ("zero length prefix", vec![0, 0]),
        ("one byte of length prefix", vec![0]),
    ] {
        if let TcpOutcome::Message(reply) =
            raw::tcp_exchange(juris.address(), &bytes, raw::SHORT_WAIT)
        {
            if raw::rcode(&reply) != Some(FORMERR) {
                wrong.push(format!("{what}: replied {reply:02x?}"));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "expected FORMERR or no answer:\n{}",
        wrong.join("\n")
    );
    assert!(juris.is_running(), "juris died on garbage");
    assert!(
        !juris.stderr().contains("panicked"),
        "a task panicked on garbage"
    );
    let tcp = ask(&Lookup::dig(juris.address(), "www.alpha.test.", "A")
        .tcp()
        .timeout_seconds(5));
    assert_answer(&tcp, "A", &["192.0.2.1"]);
}

#[test]
fn responses_sent_to_juris_are_not_answered() {
    let hierarchy = world();
    let juris = juris(&hierarchy);

    let mut response = raw::query("www.alpha.test.", RecordType::A, 0x4242, false);
    response[2] |= 0x80; // QR=1: a response, which a server must never answer (no loops)
    assert_eq!(
        raw::udp_exchange(juris.address(), &response, raw::SHORT_WAIT),
        None
    );
    assert_answer(
        &dig(juris.address(), "www.alpha.test.", "A"),
        "A",
        &["192.0.2.1"],
    );
}

#[test]
fn sigterm_stops_juris_cleanly() {
    let hierarchy = world();
    let juris = juris(&hierarchy);
    assert_answer(
        &dig(juris.address(), "www.alpha.test.", "A"),
        "A",
        &["192.0.2.1"],
    );
    let status = juris.stop().expect("it was running");
    assert!(
        status.success(),
        "exit status {status:?} after SIGTERM\n{}",
        juris.stderr()
    );
}

/// The COOKIE option dig printed (`; COOKIE: <hex>`), as hex: client cookie, then the
/// server cookie.
fn cookie_of(response: &Response) -> String {
    response
        .output
        .lines()
        .find_map(|line| line.trim().strip_prefix("; COOKIE: "))
        .map(|rest| {
            rest.split_whitespace()
                .next()
                .unwrap_or_default()
                .to_owned()
        })
        .unwrap_or_else(|| panic!("no COOKIE in the response:\n{}", response.output))
}

fn dig_with_cookie(server: SocketAddr, cookie: &str) -> Lookup {
    Lookup::dig(server, "www.alpha.test.", "A")
        .timeout_seconds(5)
        .args([format!("+cookie={cookie}").as_str(), "+nobadcookie"])
}

/// RFC 7873 §5.2 and RFC 9018 through `dig +cookie`: a client cookie gets an RFC 9018 server
/// cookie; sending it back is accepted; a server cookie that does not verify gets BADCOOKIE
/// with a fresh one over UDP and a normal answer over TCP.
#[test]
fn dns_cookies_are_answered_verified_and_bad_ones_get_badcookie_over_udp() {
    let hierarchy = world();
    let juris = juris(&hierarchy);
    let server = juris.address();

    // Only a client cookie: answered, with our server cookie (version 1, reserved 0).
    let client = "0123456789abcdef";
    let first = ask(&dig_with_cookie(server, client));
    assert_answer(&first, "A", &["192.0.2.1"]);
    let cookie = cookie_of(&first);
    assert_eq!(
        cookie.len(),
        48,
        "8-byte client + 16-byte server cookie: {cookie}"
    );
    assert!(cookie.starts_with(client), "client cookie echoed: {cookie}");
    assert!(
        cookie[16..].starts_with("01000000"),
        "RFC 9018 version 1: {cookie}"
    );

    // The server cookie sent back: accepted (and, being young, echoed unchanged).
    let again = ask(&dig_with_cookie(server, &cookie));
    assert_answer(&again, "A", &["192.0.2.1"]);
    assert_eq!(cookie_of(&again), cookie);

    // Tampered with (last hash byte): BADCOOKIE over UDP, with a fresh valid server cookie.
    let last = u8::from_str_radix(&cookie[46..], 16).unwrap() ^ 1;
    let bad = format!("{}{last:02x}", &cookie[..46]);
    let refused = ask(&dig_with_cookie(server, &bad));
    assert_eq!(refused.status, "BADCOOKIE", "{}", refused.output);
    assert!(refused.answer.is_empty(), "{}", refused.output);
    let fresh = cookie_of(&refused);
    assert_ne!(fresh, bad);
    assert!(fresh.starts_with(client));
    assert_answer(&ask(&dig_with_cookie(server, &fresh)), "A", &["192.0.2.1"]);

    // Over TCP the client's address is proven: the same bad cookie is simply answered.
    let tcp = ask(&dig_with_cookie(server, &bad).tcp());
    assert_answer(&tcp, "A", &["192.0.2.1"]);
    assert!(cookie_of(&tcp).starts_with(client));

    // A server cookie of a length RFC 9018 does not make is bad as well, never FORMERR.
    let odd = ask(&dig_with_cookie(
        server,
        &format!("{client}{}", "ab".repeat(8)),
    ));
    assert_eq!(odd.status, "BADCOOKIE", "{}", odd.output);
}

/// `[server.cookies] secret` changed and SIGHUP: new cookies are made with the new secret at
/// once, a cookie of the old secret stays valid through that one rotation, and is refused
/// (BADCOOKIE) after the next.
#[test]
fn a_cookie_secret_changed_by_sighup_takes_effect_and_the_old_one_lasts_one_rotation() {
    let hierarchy = world();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("juris.toml");
    let write = |secret: &str| {
        std::fs::write(
            &config,
            format!("[server.cookies]\nsecret = \"{secret}\"\nrotation_secs = 0\n"),
        )
        .unwrap()
    };
    let reloads = |juris: &Juris, n: usize| {
        juris.signal(libc::SIGHUP);
        let text = "SIGHUP: configuration reloaded";
        for _ in 0..500 {
            if juris.stderr().matches(text).count() >= n {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
        panic!("no reload #{n}:\n{}", juris.stderr());
    };
    write(&"11".repeat(16));
    let juris = Juris::builder(JURIS)
        .root_hints(hierarchy.root_hints())
        .arg("--config")
        .arg(&config)
        .start();
    let server = juris.address();
    let client = "0123456789abcdef";
    let status = |cookie: &str| ask(&dig_with_cookie(server, cookie)).status;
    let under_first = cookie_of(&ask(&dig_with_cookie(server, client)));
    assert_eq!(status(&under_first), "NOERROR");

    write(&"22".repeat(16));
    reloads(&juris, 1);
    // The old secret's cookie is still accepted (as the previous secret)...
    assert_eq!(status(&under_first), "NOERROR");
    // ...and a tampered one is not: cookies are still checked.
    let last = u8::from_str_radix(&under_first[46..], 16).unwrap() ^ 1;
    assert_eq!(
        status(&format!("{}{last:02x}", &under_first[..46])),
        "BADCOOKIE"
    );
    let under_second = cookie_of(&ask(&dig_with_cookie(server, client)));

    write(&"33".repeat(16));
    reloads(&juris, 2);
    // One rotation later the first secret is gone, the second is the previous one.
    assert_eq!(status(&under_first), "BADCOOKIE");
    assert_eq!(status(&under_second), "NOERROR");
}

/// RFC 1034 §4.3.1: a query with RD=0 is answered from the cache only. Before the name is
/// cached: REFUSED with EDE 20 and nothing sent upstream; once cached: the answer.
#[test]
fn rd0_queries_are_answered_from_the_cache_only() {
    let hierarchy = world();
    let juris = juris(&hierarchy);
    let server = juris.address();
    let norecurse = |name: &str| {
        ask(&Lookup::dig(server, name, "A")
            .timeout_seconds(5)
            .arg("+norecurse"))
    };

    let uncached = norecurse("www.alpha.test.");
    assert_eq!(uncached.status, "REFUSED", "{}", uncached.output);
    assert!(
        uncached.extended_errors.iter().any(|e| e.code == 20),
        "{}",
        uncached.output
    );
    hierarchy.flush_query_logs();
    // (The root has seen juris's own start-up queries: priming and its readiness probe.)
    let asked: Vec<_> = [".", "test.", "alpha.test."]
        .into_iter()
        .flat_map(|zone| hierarchy.received(zone))
        .filter(|query| query.name.contains("alpha"))
        .collect();
    assert!(asked.is_empty(), "an RD=0 query went upstream: {asked:?}");

    assert_answer(&dig(server, "www.alpha.test.", "A"), "A", &["192.0.2.1"]);
    let cached = norecurse("www.alpha.test.");
    assert_eq!(cached.status, "NOERROR", "{}", cached.output);
    assert_eq!(cached.answer_data("A"), ["192.0.2.1"], "{}", cached.output);
    assert!(
        !cached.has_flag("rd"),
        "RD echoed as sent: {}",
        cached.output
    );
}
